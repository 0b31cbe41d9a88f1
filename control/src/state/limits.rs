//! Learned admission limits on the control thread (`[service.admission] limit =
//! "adaptive"`; the controller is `qos::limit`): once a period, each adaptive service's
//! backends get a limit from the period's latency, written where the workers read it
//! (`Load::set_learned`); a backend of a static service has none (its `max_flows` holds).
//!
//! What each mode learns from: nat times every flow's response (the request's data to the
//! backend's first data back: the backend's own queue shows in it), so nat's limits follow
//! the application; dsr and gue see no reply, so they learn from the health probes'
//! latency, which shows a backend's host and its accept queue but not its application.

use super::Control;
use crate::qos::limit::{Limit, Period};
use std::time::Instant;
use tandem_dataplane::qos::hist::Kind;
use tandem_dataplane::services::name_identity;

/// Each backend id's learned limit, with the identity of the backend it was learned of (a
/// new backend at the id starts afresh).
#[derive(Default)]
pub(super) struct Learning {
    by_id: Vec<Option<(u64, Limit)>>,
}

impl Learning {
    pub(super) fn of(&self, backend: u16) -> Option<&Limit> {
        self.by_id
            .get(usize::from(backend))
            .and_then(|x| x.as_ref())
            .map(|(_, l)| l)
    }
}

impl Control {
    /// One period's step of every adaptive service's backends' limits.
    pub(super) fn learn_limits(&mut self, now: Instant) {
        let n = self.layout.backend_slots();
        let learning = &mut self.limits.by_id;
        learning.resize_with(n.max(learning.len()), || None);
        let min_samples = u64::from(self.qos.cfg.min_samples);
        let mut seen = vec![false; learning.len()];
        for (placed, seat) in self.layout.seats() {
            let id = usize::from(seat.id);
            let cfg = &placed.cfg.admission;
            if !cfg.adaptive() {
                continue;
            }
            seen[id] = true;
            let identity = name_identity(&placed.cfg.name, &seat.cfg.name);
            let slot = &mut learning[id];
            if slot.as_ref().is_none_or(|(i, _)| *i != identity) {
                *slot = Some((identity, Limit::new(cfg, now)));
            }
            let Some((_, limit)) = slot.as_mut() else {
                continue;
            };
            let kind = if placed.cfg.mode.translates() {
                Kind::Response
            } else {
                Kind::Probe
            };
            let (count, q) = self
                .qos
                .windows
                .quantile(seat.id, None, kind, 1, cfg.quantile);
            let period = Period {
                sample_us: (count > 0).then_some(q),
                enough: count >= min_samples.max(1),
                in_flight: self.load.active(seat.id),
                now,
            };
            let applied = limit.step(cfg, seat.cfg.max_flows, period);
            self.load.set_learned(seat.id, applied.max(1));
        }
        // Backends no adaptive service holds: their max_flows applies again.
        for (id, s) in seen.iter().enumerate() {
            if !s && learning[id].take().is_some() {
                self.load.set_learned(id as u16, 0);
            }
        }
    }

    /// A backend's learned limit, when its service learns one.
    pub fn learned_limit(&self, backend: u16) -> Option<&Limit> {
        self.limits.of(backend)
    }
}
