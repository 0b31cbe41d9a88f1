//! Standby backends: when a pool's quality stays bad for `for` (its p99 above `p99_above`, or
//! fewer healthy active backends than `healthy_below`), one standby is activated; when it
//! stays good for `recover_for`, the last one activated is released (it drains: no new
//! flows, its flows stay). "Good" means below 80% of the threshold, so a pool hovering at
//! the threshold changes nothing (hysteresis), and `cooldown` separates any two changes.

use std::time::{Duration, Instant};
use tandem_config::StandbyConfig;

/// How the pool is doing now.
#[derive(Debug, Clone, Copy)]
pub struct PoolState {
    /// The pool's p99 over the window, when it has samples.
    pub p99: Option<Duration>,
    /// Healthy backends taking new flows (activated standbys included).
    pub healthy: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Activate(u16),
    Release(u16),
}

#[derive(Debug)]
pub struct Standby {
    pub cfg: StandbyConfig,
    bad_since: Option<Instant>,
    good_since: Option<Instant>,
    last_change: Option<Instant>,
    /// Activated standbys, most recent last.
    pub active: Vec<u16>,
}

impl Standby {
    pub fn new(cfg: StandbyConfig) -> Standby {
        Standby {
            cfg,
            bad_since: None,
            good_since: None,
            last_change: None,
            active: Vec::new(),
        }
    }

    fn bad(&self, s: &PoolState) -> bool {
        self.cfg
            .p99_above
            .is_some_and(|t| s.p99.is_some_and(|p| p > t))
            || s.healthy < self.cfg.healthy_below
    }

    fn good(&self, s: &PoolState) -> bool {
        let p99_ok = match (self.cfg.p99_above, s.p99) {
            (Some(t), Some(p)) => p <= t.mul_f64(0.8),
            _ => true,
        };
        p99_ok && s.healthy >= self.cfg.healthy_below
    }

    /// One step: `candidates` are the healthy standbys not active yet, in config order.
    pub fn step(&mut self, now: Instant, s: &PoolState, candidates: &[u16]) -> Option<Action> {
        let cooled = self
            .last_change
            .is_none_or(|t| now.duration_since(t) >= self.cfg.cooldown);
        if self.bad(s) {
            self.good_since = None;
            let since = *self.bad_since.get_or_insert(now);
            if now.duration_since(since) >= self.cfg.for_ && cooled {
                if let Some(&b) = candidates.first() {
                    self.active.push(b);
                    self.last_change = Some(now);
                    self.bad_since = Some(now);
                    return Some(Action::Activate(b));
                }
            }
        } else if self.good(s) {
            self.bad_since = None;
            let since = *self.good_since.get_or_insert(now);
            if now.duration_since(since) >= self.cfg.recover_for && cooled {
                if let Some(b) = self.active.pop() {
                    self.last_change = Some(now);
                    self.good_since = Some(now);
                    return Some(Action::Release(b));
                }
            }
        } else {
            self.bad_since = None;
            self.good_since = None;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> StandbyConfig {
        StandbyConfig {
            p99_above: Some(Duration::from_millis(50)),
            healthy_below: 0,
            for_: Duration::from_secs(5),
            recover_for: Duration::from_secs(30),
            cooldown: Duration::from_secs(5),
            hook: None,
        }
    }

    fn pool(ms: u64) -> PoolState {
        PoolState {
            p99: Some(Duration::from_millis(ms)),
            healthy: 3,
        }
    }

    #[test]
    fn activates_after_for_and_releases_after_recovery() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut sb = Standby::new(cfg());
        assert_eq!(sb.step(at(0), &pool(80), &[7, 8]), None);
        assert_eq!(sb.step(at(4), &pool(80), &[7, 8]), None);
        // A dip in between restarts the clock.
        assert_eq!(sb.step(at(4), &pool(45), &[7, 8]), None);
        assert_eq!(sb.step(at(5), &pool(80), &[7, 8]), None);
        assert_eq!(
            sb.step(at(10), &pool(80), &[7, 8]),
            Some(Action::Activate(7))
        );
        // Still bad: the next one only after another `for` (and the cooldown).
        assert_eq!(sb.step(at(12), &pool(80), &[8]), None);
        assert_eq!(sb.step(at(15), &pool(80), &[8]), Some(Action::Activate(8)));
        assert_eq!(sb.step(at(21), &pool(80), &[]), None, "no candidate left");
        // Hovering just under the threshold is neither bad nor good: nothing changes.
        assert_eq!(sb.step(at(22), &pool(45), &[]), None);
        assert_eq!(sb.step(at(60), &pool(45), &[]), None);
        // Good for recover_for: released one at a time, the last activated first.
        assert_eq!(sb.step(at(61), &pool(10), &[]), None);
        assert_eq!(sb.step(at(91), &pool(10), &[]), Some(Action::Release(8)));
        assert_eq!(sb.step(at(100), &pool(10), &[]), None);
        assert_eq!(sb.step(at(121), &pool(10), &[]), Some(Action::Release(7)));
        assert!(sb.active.is_empty());
    }

    #[test]
    fn too_few_healthy_backends_activate_too() {
        let t0 = Instant::now();
        let mut c = cfg();
        c.p99_above = None;
        c.healthy_below = 2;
        let mut sb = Standby::new(c);
        let one = PoolState {
            p99: None,
            healthy: 1,
        };
        assert_eq!(sb.step(t0, &one, &[3]), None);
        assert_eq!(
            sb.step(t0 + Duration::from_secs(5), &one, &[3]),
            Some(Action::Activate(3))
        );
    }
}
