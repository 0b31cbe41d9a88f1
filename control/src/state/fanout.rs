//! Fan-out to the workers: each worker's channels with a backlog for when its inbox is
//! full, and the worker events the control thread acts on (flows listed and sent to the
//! peers, neighbors shared, histograms and probe results to QoS). The workers hand flow
//! records to each other themselves (the port layer's sibling rings).

use super::flows::MasterFlow;
use super::Control;
use crate::cluster::codec::WireRecord;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem_dataplane::counters::WorkerCounters;
use tandem_dataplane::messages::{FromWorker, ToWorker};

/// Longest the control thread spends on the workers' events in one tick.
pub const POLL_BUDGET: Duration = Duration::from_millis(5);
/// Most events taken from one worker in one tick.
const POLL_MAX: usize = 65_536;

/// The control thread's end of one worker's channels.
pub struct WorkerLink {
    pub tx: Sender<ToWorker>,
    pub rx: Receiver<FromWorker>,
    pub counters: Arc<WorkerCounters>,
    /// Messages that found the worker's inbox full, sent first on the next tick.
    pub(super) pending: VecDeque<ToWorker>,
}

impl WorkerLink {
    pub fn new(
        tx: Sender<ToWorker>,
        rx: Receiver<FromWorker>,
        counters: Arc<WorkerCounters>,
    ) -> Self {
        WorkerLink {
            tx,
            rx,
            counters,
            pending: VecDeque::new(),
        }
    }

    /// Messages for the worker wait: queued here, or in its channel.
    pub(super) fn behind(&self) -> bool {
        !self.pending.is_empty() || !self.tx.is_empty()
    }

    pub(super) fn send(&mut self, m: ToWorker) {
        if !self.pending.is_empty() {
            self.pending.push_back(m);
            return;
        }
        match self.tx.try_send(m) {
            Ok(()) => {}
            Err(TrySendError::Full(m)) => self.pending.push_back(m),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    fn flush(&mut self) {
        while let Some(m) = self.pending.pop_front() {
            match self.tx.try_send(m) {
                Ok(()) => {}
                Err(TrySendError::Full(m)) => {
                    self.pending.push_front(m);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.pending.clear();
                    return;
                }
            }
        }
    }
}

impl Control {
    /// Sends a message to every worker but `except`.
    pub(super) fn broadcast(&mut self, except: Option<u16>, make: impl Fn() -> ToWorker) {
        for (i, w) in self.workers.iter_mut().enumerate() {
            if Some(i as u16) != except {
                w.send(make());
            }
        }
    }

    /// Drains the workers' events and acts on them, within `POLL_BUDGET` (and at most
    /// `POLL_MAX` events a worker) a tick, so that no flood of events of any kind delays
    /// the cluster's heartbeats or the control socket: what is left waits in the channels
    /// (bounded: a worker that finds its channel full counts `outbox_overflow`). Returns how
    /// many were handled.
    pub fn poll_workers(&mut self, now: Instant) -> usize {
        let mut handled = 0;
        for w in &mut self.workers {
            w.flush();
        }
        let started = Instant::now();
        let n = self.workers.len();
        // Start with a different worker each tick, so a cut-off budget is shared fairly.
        let first = self.poll_turn % n.max(1);
        self.poll_turn = self.poll_turn.wrapping_add(1);
        self.batch_publishes();
        'workers: for k in 0..n {
            let wi = (first + k) % n;
            for i in 0..POLL_MAX {
                if i % 256 == 255 && started.elapsed() >= POLL_BUDGET {
                    break 'workers;
                }
                let Ok(ev) = self.workers[wi].rx.try_recv() else {
                    break;
                };
                handled += 1;
                self.handle(ev, now);
            }
        }
        self.publish_batched();
        handled
    }

    /// Acts on one worker event as `poll_workers` does (tests hand events in directly).
    #[cfg(test)]
    pub(super) fn handle_for_test(&mut self, ev: FromWorker, now: Instant) {
        self.handle(ev, now)
    }

    fn handle(&mut self, ev: FromWorker, now: Instant) {
        match ev {
            FromWorker::Flow {
                worker,
                key,
                rec,
                peers,
            } => {
                let e = self.flows.map.entry(key).or_insert(MasterFlow {
                    rec,
                    worker,
                    node: 0,
                    created: now,
                    updated: now,
                });
                e.rec = rec;
                e.worker = worker;
                e.node = 0;
                e.updated = now;
                if peers {
                    if let Some(c) = self.cluster.as_mut() {
                        let view = &c.sync.view;
                        let tag = self.snapshot.tag_of(rec.backend);
                        let w = WireRecord::from_record(key, &rec, tag, |i| view.id_of(i));
                        c.queue_record(&w, now);
                    }
                }
            }
            FromWorker::Neighbor { key, mac } => self.neighbor_heard(key, mac, now),
            FromWorker::NeedNeighbor(key) => self.need_neighbor(key, now),
            FromWorker::Retired(old) => drop(old),
            FromWorker::Traced(t) => self.traced(t),
            FromWorker::Measured { hist, .. } => {
                self.qos.windows.merge(&hist);
                let mut hist = hist;
                hist.clear();
                self.measure.spare.push(hist);
                if self.measure.outstanding > 0 {
                    self.measure.outstanding -= 1;
                    if self.measure.outstanding == 0 {
                        self.learn_limits(now);
                        self.recompute_qos(now);
                    }
                }
            }
            FromWorker::Probe {
                backend,
                path,
                round,
                outcome,
            } => {
                let cfgs = &self.layout;
                if self
                    .qos
                    .probe_result(now, cfgs, backend, path, round, Some(outcome))
                {
                    self.recompute_qos(now);
                }
            }
            FromWorker::ProbeUnsent {
                backend,
                path,
                round,
            } => {
                let cfgs = &self.layout;
                if self.qos.probe_result(now, cfgs, backend, path, round, None) {
                    self.recompute_qos(now);
                }
            }
        }
    }
}
