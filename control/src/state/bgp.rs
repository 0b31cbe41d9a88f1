//! The control thread's part in the announcement (`crate::bgp`): the node's state and the
//! services snapshot handed to the announcer each tick, and SIGTERM's withdrawal.

use super::Control;
use crate::bgp::{Announcer, NodeState};
use crate::cluster::Readiness;
use std::time::{Duration, Instant};

impl Control {
    pub fn attach_bgp(&mut self, a: Announcer) {
        self.bgp = Some(a);
    }

    pub fn bgp(&self) -> Option<&Announcer> {
        self.bgp.as_ref()
    }

    /// The node as the announcement sees it: snapshotting until its snapshot is complete,
    /// draining from `node drain` on.
    fn announce_state(&self) -> NodeState {
        match &self.cluster {
            None => NodeState::Ready,
            Some(c) if c.sync.readiness != Readiness::Ready => NodeState::Snapshotting,
            // Draining, or drained past its deadline: no longer announced either way.
            Some(c) if c.sync.draining.is_some() => NodeState::Draining,
            Some(c) if c.sync.cut_off => NodeState::CutOff,
            Some(_) => NodeState::Ready,
        }
    }

    /// Decides the announcement again (the announcer paces itself).
    pub fn bgp_tick(&mut self, now: Instant) {
        let node = self.announce_state();
        if let Some(a) = &mut self.bgp {
            a.tick(&self.snapshot, node, now);
        }
    }

    /// SIGTERM: every VIP withdrawn; how long to go on serving (`withdraw_grace`), or None
    /// without `[bgp]`.
    pub fn bgp_stop(&mut self, now: Instant) -> Option<Duration> {
        let a = self.bgp.as_mut()?;
        a.stop(&self.snapshot, now);
        Some(a.cfg.withdraw_grace)
    }
}
