//! QoS duties of the control thread: probes out, the workers' histograms swapped each
//! period, new factors, health and standbys into a new snapshot when they change, and the
//! standby hooks run.

use super::Control;
use crate::qos::HookRun;
use std::time::Instant;
use tandem_dataplane::messages::ToWorker;
use tandem_dataplane::qos::hist::HistSet;
use tandem_dataplane::services::BackendLive;

/// The measuring cycle's state.
pub(super) struct Measuring {
    /// Emptied histogram sets, handed to the workers next period (boxed: they travel
    /// through the channels as boxes and stay so, with no copy).
    #[allow(clippy::vec_box)]
    pub spare: Vec<Box<HistSet>>,
    /// Workers whose histograms of the last period have not come back yet.
    pub outstanding: usize,
    pub last_period: Instant,
    /// What the workers' snapshot was last built from.
    pub published_live: Vec<BackendLive>,
    /// Hook commands still running (reaped on the next ticks).
    pub hooks: Vec<std::process::Child>,
    /// While the workers' events are drained (`poll_workers`): a changed health or factor
    /// marks the snapshot due instead of building it, and it is built once at the end. A
    /// backend of five services coming up gives five probe results in one round; five
    /// snapshots (every Maglev table each) held the control thread 700 ms in a debug build.
    pub batching: bool,
    pub publish_due: bool,
}

impl Control {
    /// QoS duties between ticks: probes due and timed out, and once per period the
    /// workers' histograms (a fresh set out, the filled one back), then new factors.
    pub fn qos_tick(&mut self, now: Instant) {
        let (orders, health_changed) = self.qos.probes(now, &self.layout);
        let n = self.workers.len().max(1);
        for o in orders {
            let w = usize::from(o.backend) % n;
            if let Some(link) = self.workers.get_mut(w) {
                link.send(ToWorker::Probe {
                    backend: o.backend,
                    path: o.path,
                    round: o.round,
                    method: o.method,
                });
            }
        }
        if health_changed {
            self.recompute_qos(now);
        }
        if now.duration_since(self.measure.last_period) >= self.qos.cfg.period {
            self.measure.last_period = now;
            if self.measure.outstanding > 0 {
                // A worker did not answer last period (busy, or stopping): go on without it.
                self.learn_limits(now);
                self.recompute_qos(now);
            }
            self.qos.windows.roll();
            for i in 0..self.workers.len() {
                let fresh = self.measure.spare.pop().unwrap_or_else(|| {
                    Box::new(tandem_dataplane::pipeline::hist_for(&self.snapshot))
                });
                self.workers[i].send(ToWorker::Measure(fresh));
            }
            self.measure.outstanding = self.workers.len();
        }
        self.measure
            .hooks
            .retain_mut(|c| matches!(c.try_wait(), Ok(None)));
    }

    /// New factors, health and standbys into a new snapshot when anything changed.
    pub(super) fn recompute_qos(&mut self, now: Instant) {
        self.measure.outstanding = 0;
        for h in self.qos.recompute(now, &self.layout) {
            self.run_hook(&h);
        }
        let changed = self.qos.live.len() != self.measure.published_live.len()
            || self
                .qos
                .live
                .iter()
                .zip(&self.measure.published_live)
                .any(|(a, b)| live_differs(a, b, self.cfg.qos.selection));
        if changed {
            self.measure.published_live = self.qos.live.clone();
            if self.measure.batching {
                self.measure.publish_due = true;
            } else {
                self.publish_services();
            }
        }
    }

    /// Starts holding snapshot builds back (`Measuring::batching`).
    pub(super) fn batch_publishes(&mut self) {
        self.measure.batching = true;
    }

    /// Stops holding them back, and builds the one due.
    pub(super) fn publish_batched(&mut self) {
        self.measure.batching = false;
        if std::mem::take(&mut self.measure.publish_due) {
            self.publish_services();
        }
    }

    fn run_hook(&mut self, h: &HookRun) {
        let r = std::process::Command::new(&h.hook)
            .arg(&h.backend)
            .env("TANDEM_EVENT", h.event)
            .env("TANDEM_SERVICE", &h.service)
            .env("TANDEM_BACKEND", &h.backend)
            .stdin(std::process::Stdio::null())
            .spawn();
        match r {
            Ok(c) => {
                tracing::info!(hook = %h.hook.display(), event = h.event, backend = %h.backend, "standby hook started");
                self.measure.hooks.push(c);
            }
            Err(e) => {
                tracing::error!(hook = %h.hook.display(), error = %e, "standby hook failed to start")
            }
        }
    }
}

/// True when the workers should get a new snapshot for this change.
fn live_differs(a: &BackendLive, b: &BackendLive, sel: tandem_config::Selection) -> bool {
    a.up != b.up
        || a.standby_active != b.standby_active
        || a.path_up != b.path_up
        || a.path_share != b.path_share
        || tandem_dataplane::select::algorithm(sel).reads_live(a, b)
}
