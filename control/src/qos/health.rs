//! Health from probes: a path goes down after `down_after` failures in a row and up after
//! `up_after` successes in a row; a backend is up while any of its paths is. And the probe
//! schedule: which (backend, path) is due, which probes are still out, which timed out.

use std::time::{Duration, Instant};

/// One path's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub up: bool,
    fails: u32,
    oks: u32,
}

impl Default for Health {
    fn default() -> Self {
        // Up until probes say otherwise: a node that starts serves at once, as one without
        // probes would; a dead backend is found within `down_after` intervals.
        Health {
            up: true,
            fails: 0,
            oks: 0,
        }
    }
}

impl Health {
    /// One probe's result; returns the new state when it changed.
    pub fn observe(&mut self, ok: bool, down_after: u32, up_after: u32) -> Option<bool> {
        if ok {
            self.fails = 0;
            self.oks = self.oks.saturating_add(1);
            if !self.up && self.oks >= up_after {
                self.up = true;
                return Some(true);
            }
        } else {
            self.oks = 0;
            self.fails = self.fails.saturating_add(1);
            if self.up && self.fails >= down_after {
                self.up = false;
                return Some(false);
            }
        }
        None
    }

    /// Failures in a row (for `show backends`).
    pub fn failures(&self) -> u32 {
        self.fails
    }
}

/// A probe that went out and has not come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Out {
    round: u8,
    sent: Instant,
}

/// The schedule of one (backend, path).
#[derive(Debug, Clone)]
pub struct Schedule {
    next: Instant,
    round: u8,
    out: Vec<Out>,
}

impl Schedule {
    /// First probes spread over one interval, so a node with many backends does not send
    /// them all at once.
    pub fn new(now: Instant, interval: Duration, index: usize, count: usize) -> Schedule {
        let offset = interval.mul_f64(index as f64 / count.max(1) as f64);
        Schedule {
            next: now + offset,
            round: 0,
            out: Vec::new(),
        }
    }

    /// The round of the probe to send now, if one is due.
    pub fn due(&mut self, now: Instant, interval: Duration) -> Option<u8> {
        if now < self.next {
            return None;
        }
        self.next = now + interval;
        self.round = self.round.wrapping_add(1);
        self.out.retain(|o| o.round != self.round);
        self.out.push(Out {
            round: self.round,
            sent: now,
        });
        Some(self.round)
    }

    /// A reply for `round`: true when that probe was still out (late, duplicate or forged
    /// replies are not counted twice).
    pub fn answered(&mut self, round: u8) -> bool {
        let before = self.out.len();
        self.out.retain(|o| o.round != round);
        self.out.len() != before
    }

    /// Probes out longer than `timeout`, removed; returns how many.
    pub fn timed_out(&mut self, now: Instant, timeout: Duration) -> usize {
        let before = self.out.len();
        self.out.retain(|o| now.duration_since(o.sent) <= timeout);
        before - self.out.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_after_n_failures_up_after_m_successes() {
        let mut h = Health::default();
        assert!(h.up);
        assert_eq!(h.observe(false, 3, 2), None);
        assert_eq!(h.observe(false, 3, 2), None);
        // A success in between starts the count again.
        assert_eq!(h.observe(true, 3, 2), None);
        assert_eq!(h.observe(false, 3, 2), None);
        assert_eq!(h.observe(false, 3, 2), None);
        assert_eq!(h.observe(false, 3, 2), Some(false));
        assert_eq!(h.observe(false, 3, 2), None);
        assert_eq!(h.failures(), 4);
        assert_eq!(h.observe(true, 3, 2), None);
        assert_eq!(h.observe(true, 3, 2), Some(true));
        assert_eq!(h.observe(true, 3, 2), None);
    }

    #[test]
    fn schedule_with_a_fake_clock() {
        let t0 = Instant::now();
        let iv = Duration::from_millis(500);
        let to = Duration::from_millis(1000);
        let mut s = Schedule::new(t0, iv, 1, 2);
        assert_eq!(s.due(t0, iv), None);
        let r1 = s.due(t0 + Duration::from_millis(250), iv).unwrap();
        assert_eq!(s.due(t0 + Duration::from_millis(300), iv), None);
        let r2 = s.due(t0 + Duration::from_millis(750), iv).unwrap();
        assert_ne!(r1, r2);
        assert!(s.answered(r2));
        assert!(!s.answered(r2), "a duplicate reply counts once");
        assert_eq!(s.timed_out(t0 + Duration::from_millis(1200), to), 0);
        assert_eq!(s.timed_out(t0 + Duration::from_millis(1251), to), 1);
        assert!(
            !s.answered(r1),
            "a reply after its timeout is not a success"
        );
    }
}
