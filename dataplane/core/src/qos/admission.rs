//! Admission: how many flows each backend serves right now, against its limit, and the FIFO
//! where a new flow's first packet waits when every backend of its service is full.
//!
//! The counts are shared by the node's workers (one atomic per backend: a flow is admitted
//! by a compare-and-swap below the limit, so two workers can never both take the last
//! slot). The worker that admitted a flow is the one that gives its slot back, exactly once:
//! when its copy of the record closes, expires or is evicted (see `FlowRecord::admitted`).
//! The queues are per worker and hold opaque handles (the port layer's mbufs), so this
//! module stays free of DPDK and is tested with plain numbers and a fake clock.

use crate::counters::MAX_BACKENDS;
use crate::flow::FlowKey;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};

/// Flows admitted per backend, on this node, and the limits the control thread learned
/// (`[service.admission] limit = "adaptive"`).
pub struct Load {
    active: Box<[AtomicU32]>,
    /// Per backend: the learned limit, or 0 where the snapshot's `max_flows` applies.
    learned: Box<[AtomicU32]>,
}

impl Default for Load {
    fn default() -> Self {
        Load {
            active: (0..MAX_BACKENDS).map(|_| AtomicU32::new(0)).collect(),
            learned: (0..MAX_BACKENDS).map(|_| AtomicU32::new(0)).collect(),
        }
    }
}

impl std::fmt::Debug for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Load")
    }
}

impl Load {
    /// Flows backend `b` serves now (admitted and not yet released).
    #[inline]
    pub fn active(&self, b: u16) -> u32 {
        self.active
            .get(usize::from(b))
            .map_or(0, |a| a.load(Ordering::Relaxed))
    }

    /// Takes a slot on backend `b` if it has fewer than `max` flows (0: no limit).
    #[inline]
    pub fn try_take(&self, b: u16, max: u32) -> bool {
        let Some(a) = self.active.get(usize::from(b)) else {
            return false;
        };
        if max == 0 {
            a.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        a.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
    }

    /// Backend `b`'s learned limit (0: none learned; its `max_flows` applies). Set by the
    /// control thread once a period, read by the workers for each new flow: an atomic, so
    /// a new limit needs no new snapshot.
    #[inline]
    pub fn learned(&self, b: u16) -> u32 {
        self.learned
            .get(usize::from(b))
            .map_or(0, |a| a.load(Ordering::Relaxed))
    }

    pub fn set_learned(&self, b: u16, limit: u32) {
        if let Some(a) = self.learned.get(usize::from(b)) {
            a.store(limit, Ordering::Relaxed);
        }
    }

    /// Gives a slot back (never below zero).
    #[inline]
    pub fn release(&self, b: u16) {
        if let Some(a) = self.active.get(usize::from(b)) {
            let _ = a.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }
}

/// A packet waiting for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    /// The port layer's handle for the packet (an mbuf pointer).
    pub handle: usize,
    pub port: u8,
    pub key: FlowKey,
    pub since_us: u64,
}

/// Why a packet could not wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds `max_len` packets already.
    Full,
    /// The flow's first packet is waiting already (a retransmitted SYN): the earlier copy
    /// keeps its place, this one is not needed.
    Duplicate,
}

/// One service's FIFO on one worker: bounded length, bounded wait. Its storage is allocated
/// once, when the worker starts; pushing and popping never allocate.
#[derive(Debug)]
pub struct Queue {
    items: VecDeque<Waiting>,
    max_len: usize,
    max_wait_us: u64,
}

impl Queue {
    pub fn new(max_len: usize, max_wait_us: u64) -> Queue {
        Queue {
            items: VecDeque::with_capacity(max_len),
            max_len,
            max_wait_us,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Puts a packet at the back of the queue.
    pub fn push(&mut self, w: Waiting) -> Result<(), Refused> {
        if self.items.iter().any(|x| x.key == w.key) {
            return Err(Refused::Duplicate);
        }
        if self.items.len() >= self.max_len {
            return Err(Refused::Full);
        }
        self.items.push_back(w);
        Ok(())
    }

    /// The packet at the front, unless it has waited longer than allowed.
    pub fn head(&self) -> Option<&Waiting> {
        self.items.front()
    }

    pub fn pop(&mut self) -> Option<Waiting> {
        self.items.pop_front()
    }

    /// Takes the front packet off when it has waited past `max_wait` at `now_us`.
    pub fn pop_expired(&mut self, now_us: u64) -> Option<Waiting> {
        let h = self.items.front()?;
        if now_us.saturating_sub(h.since_us) > self.max_wait_us {
            self.items.pop_front()
        } else {
            None
        }
    }

    /// Empties the queue (at shutdown), handing every waiting packet back.
    pub fn drain(&mut self) -> impl Iterator<Item = Waiting> + '_ {
        self.items.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(i: u16, since_us: u64) -> Waiting {
        Waiting {
            handle: usize::from(i),
            port: 0,
            key: FlowKey::v4([10, 0, 0, 1], [192, 0, 2, 1], i, 80, 6),
            since_us,
        }
    }

    #[test]
    fn limits_are_never_exceeded_by_racing_threads() {
        let load = std::sync::Arc::new(Load::default());
        let taken: u32 = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let l = &load;
                    s.spawn(move || (0..1000).filter(|_| l.try_take(3, 4)).count() as u32)
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(taken, 4);
        assert_eq!(load.active(3), 4);
        load.release(3);
        assert!(load.try_take(3, 4));
        assert!(!load.try_take(3, 4));
        // Unlimited backends only count.
        for _ in 0..10 {
            assert!(load.try_take(5, 0));
        }
        assert_eq!(load.active(5), 10);
        // Releasing never goes below zero; unknown backends are refused.
        for _ in 0..20 {
            load.release(5);
        }
        assert_eq!(load.active(5), 0);
        assert!(!load.try_take(u16::MAX, 0));
    }

    #[test]
    fn queue_is_a_bounded_fifo_with_a_deadline() {
        let mut q = Queue::new(3, 1000);
        assert_eq!(q.push(w(1, 0)), Ok(()));
        assert_eq!(q.push(w(2, 10)), Ok(()));
        assert_eq!(q.push(w(1, 20)), Err(Refused::Duplicate));
        assert_eq!(q.push(w(3, 30)), Ok(()));
        assert_eq!(q.push(w(4, 40)), Err(Refused::Full));
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop_expired(1000), None);
        assert_eq!(q.pop_expired(1001).map(|x| x.handle), Some(1));
        assert_eq!(q.head().map(|x| x.handle), Some(2));
        assert_eq!(q.pop().map(|x| x.handle), Some(2));
        assert_eq!(q.drain().count(), 1);
        assert!(q.is_empty());
    }
}
