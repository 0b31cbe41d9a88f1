//! The node's master view of its flows: every record a worker or a peer announced, for
//! `show flows`, snapshots to peers and per-backend counts; expired on its own clock.

use super::Control;
use crate::flowmap::FlowMap;
use std::time::{Duration, Instant};
use tandem_dataplane::flow::{FlowRecord, FlowState};

/// The node's view of one flow, fed by the workers' announcements.
#[derive(Debug, Clone, Copy)]
pub struct MasterFlow {
    pub rec: FlowRecord,
    /// The worker that last announced it.
    pub worker: u16,
    /// The node that last told us of it: 0 for this node's own workers, else a peer's id.
    pub node: u16,
    pub created: Instant,
    pub updated: Instant,
}

impl MasterFlow {
    /// A placeholder (what fills the map once at start: `flowmap::resident`).
    pub(super) fn idle(now: Instant) -> MasterFlow {
        MasterFlow {
            rec: FlowRecord::default(),
            worker: 0,
            node: 0,
            created: now,
            updated: now,
        }
    }
}

/// The master view.
pub(super) struct FlowView {
    pub map: FlowMap<MasterFlow>,
}

impl Control {
    /// Forgets flows no worker has announced for longer than their timeout allows.
    pub fn expire_flows(&mut self, now: Instant) {
        let t = self.timeouts;
        self.flows.map.retain(|_, f| {
            let limit = Duration::from_millis(u64::from(t.for_state(f.rec.state)))
                + Duration::from_secs(31);
            now.duration_since(f.updated) <= limit
        });
    }

    /// Live flows per backend id (from the master view).
    pub fn active_flows_by_backend(&self) -> Vec<u64> {
        let mut v = vec![0u64; self.snapshot.backends.len()];
        for f in self.flows.map.values() {
            if f.rec.state != FlowState::Closing {
                if let Some(x) = v.get_mut(usize::from(f.rec.backend)) {
                    *x += 1;
                }
            }
        }
        v
    }
}
