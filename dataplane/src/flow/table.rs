//! A fixed-capacity, set-associative flow table: the key's hash picks a bucket of `WAYS`
//! slots; a slot holds a 32-bit tag (0 = empty) beside its key and record, so a lookup
//! touches one bucket and compares full keys only on a tag match.
//!
//! All memory is allocated by `new`; insert, lookup and remove never allocate. When a bucket
//! is full, an expired entry is reused, else the oldest entry still in its handshake
//! (`SynSeen`) is evicted, else the insert is refused: established flows are never pushed
//! out, so a SYN flood can only churn its own half-open entries.

use super::key::FlowKey;
use super::record::{FlowRecord, FlowState, Timeouts};

pub const WAYS: usize = 8;

#[derive(Clone, Copy, Default)]
struct Entry {
    key: FlowKey,
    rec: FlowRecord,
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    tags: [u32; WAYS],
    entries: [Entry; WAYS],
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket {
            tags: [0; WAYS],
            entries: [Entry::default(); WAYS],
        }
    }
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    New,
    Updated,
    /// A new entry took the place of an expired one.
    ReusedExpired,
    /// A new entry pushed out a half-open one.
    Evicted,
    /// No room without pushing out an established flow.
    Refused,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct TableStats {
    pub evicted: u64,
    pub refused: u64,
    pub expired: u64,
}

pub struct FlowTable {
    buckets: Box<[Bucket]>,
    mask: usize,
    len: usize,
    capacity: usize,
    seed: u64,
    timeouts: Timeouts,
    sweep_cursor: usize,
    pub stats: TableStats,
    /// Backends of admitted records the table dropped (expired or evicted): their slots are
    /// the caller's to give back (`take_released`). Preallocated; see `RELEASED_CAP`.
    released: Vec<u16>,
}

/// Room for dropped admitted records between two `take_released` calls: a sweep drops at
/// most `max_buckets * WAYS`, a lookup or insert one.
const RELEASED_CAP: usize = 4096;

#[inline(always)]
fn tag_of(h: u64) -> u32 {
    ((h >> 32) as u32) | 1
}

impl FlowTable {
    /// Buckets for `capacity` flows: a load factor near 0.8 at capacity, so full buckets
    /// are rare before the table itself is full.
    fn buckets_for(capacity: usize) -> usize {
        (capacity * 5 / 4).div_ceil(WAYS).max(2).next_power_of_two()
    }

    /// Bytes a table for `capacity` flows allocates.
    pub fn bytes_for(capacity: usize) -> usize {
        Self::buckets_for(capacity) * std::mem::size_of::<Bucket>()
    }

    /// A table for `capacity` flows (rounded up to whole buckets, at least two).
    pub fn new(capacity: usize, timeouts: Timeouts, seed: u64) -> Self {
        let n = Self::buckets_for(capacity);
        FlowTable {
            buckets: vec![Bucket::default(); n].into_boxed_slice(),
            mask: n - 1,
            len: 0,
            capacity,
            seed,
            timeouts,
            sweep_cursor: 0,
            stats: TableStats::default(),
            released: Vec::with_capacity(RELEASED_CAP),
        }
    }

    #[inline]
    fn dropped(released: &mut Vec<u16>, rec: &FlowRecord) {
        if rec.admitted && released.len() < RELEASED_CAP {
            released.push(rec.backend);
        }
    }

    /// Backends whose admitted records the table dropped since the last call.
    #[inline]
    pub fn take_released(&mut self) -> std::vec::Drain<'_, u16> {
        self.released.drain(..)
    }

    #[inline]
    pub fn has_released(&self) -> bool {
        !self.released.is_empty()
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }
    /// Bytes of table memory per flow of capacity.
    pub fn bytes_per_flow(&self) -> usize {
        std::mem::size_of_val(&*self.buckets) / self.capacity.max(1)
    }

    #[inline]
    fn locate(&self, key: &FlowKey) -> (usize, u32) {
        let h = key.hash(self.seed);
        ((h as usize) & self.mask, tag_of(h))
    }

    /// Prefetch hint: the bucket a key falls in (for batching lookups over a burst).
    #[inline]
    pub fn bucket_addr(&self, key: &FlowKey) -> *const u8 {
        let (b, _) = self.locate(key);
        &self.buckets[b] as *const Bucket as *const u8
    }

    /// The live record for `key`; an expired one is removed and not returned.
    #[inline]
    pub fn get_mut(&mut self, key: &FlowKey, now_ms: u32) -> Option<&mut FlowRecord> {
        let (b, tag) = self.locate(key);
        let bucket = &mut self.buckets[b];
        for i in 0..WAYS {
            if bucket.tags[i] == tag && bucket.entries[i].key == *key {
                if bucket.entries[i].rec.expired(now_ms, &self.timeouts) {
                    bucket.tags[i] = 0;
                    self.len -= 1;
                    self.stats.expired += 1;
                    Self::dropped(&mut self.released, &bucket.entries[i].rec);
                    return None;
                }
                return Some(&mut self.buckets[b].entries[i].rec);
            }
        }
        None
    }

    /// Looks without expiring (for the control path and tests).
    pub fn peek(&self, key: &FlowKey) -> Option<&FlowRecord> {
        let (b, tag) = self.locate(key);
        let bucket = &self.buckets[b];
        (0..WAYS)
            .find(|&i| bucket.tags[i] == tag && bucket.entries[i].key == *key)
            .map(|i| &bucket.entries[i].rec)
    }

    /// Inserts or replaces the record for `key`.
    pub fn insert(&mut self, key: FlowKey, rec: FlowRecord, now_ms: u32) -> Insert {
        let (b, tag) = self.locate(&key);
        let t = self.timeouts;
        let full = self.len >= self.capacity;
        let bucket = &mut self.buckets[b];
        let mut empty = None;
        let mut expired = None;
        let mut oldest_syn: Option<(usize, u32)> = None;
        for i in 0..WAYS {
            let bt = bucket.tags[i];
            if bt == 0 {
                if empty.is_none() {
                    empty = Some(i);
                }
                continue;
            }
            let e = &bucket.entries[i];
            if bt == tag && e.key == key {
                bucket.entries[i].rec = rec;
                return Insert::Updated;
            }
            if e.rec.expired(now_ms, &t) {
                if expired.is_none() {
                    expired = Some(i);
                }
            } else if e.rec.state == FlowState::SynSeen {
                let age = now_ms.wrapping_sub(e.rec.last_seen_ms);
                if oldest_syn.is_none_or(|(_, a)| age > a) {
                    oldest_syn = Some((i, age));
                }
            }
        }
        let (slot, result) = match (empty, expired, oldest_syn) {
            (Some(i), _, _) if !full => (i, Insert::New),
            (_, Some(i), _) => (i, Insert::ReusedExpired),
            (_, _, Some((i, _))) => (i, Insert::Evicted),
            _ => {
                self.stats.refused += 1;
                return Insert::Refused;
            }
        };
        match result {
            Insert::New => self.len += 1,
            Insert::ReusedExpired => self.stats.expired += 1,
            Insert::Evicted => self.stats.evicted += 1,
            _ => {}
        }
        if result != Insert::New {
            Self::dropped(&mut self.released, &bucket.entries[slot].rec);
        }
        bucket.tags[slot] = tag;
        bucket.entries[slot] = Entry { key, rec };
        result
    }

    pub fn remove(&mut self, key: &FlowKey) -> Option<FlowRecord> {
        let (b, tag) = self.locate(key);
        let bucket = &mut self.buckets[b];
        for i in 0..WAYS {
            if bucket.tags[i] == tag && bucket.entries[i].key == *key {
                bucket.tags[i] = 0;
                self.len -= 1;
                return Some(bucket.entries[i].rec);
            }
        }
        None
    }

    /// Removes expired entries from the next `max_buckets` buckets (round robin), so the
    /// table is swept a little between bursts instead of all at once. Returns how many.
    pub fn sweep(&mut self, now_ms: u32, max_buckets: usize) -> usize {
        let mut removed = 0;
        for _ in 0..max_buckets.min(self.buckets.len()) {
            let b = self.sweep_cursor;
            self.sweep_cursor = (self.sweep_cursor + 1) & self.mask;
            let bucket = &mut self.buckets[b];
            for i in 0..WAYS {
                if bucket.tags[i] != 0 && bucket.entries[i].rec.expired(now_ms, &self.timeouts) {
                    bucket.tags[i] = 0;
                    removed += 1;
                    Self::dropped(&mut self.released, &bucket.entries[i].rec);
                }
            }
        }
        self.len -= removed;
        self.stats.expired += removed as u64;
        removed
    }

    /// Every entry (for the control path and tests; not for the packet path).
    pub fn iter(&self) -> impl Iterator<Item = (&FlowKey, &FlowRecord)> {
        self.buckets.iter().flat_map(|b| {
            (0..WAYS)
                .filter(move |&i| b.tags[i] != 0)
                .map(move |i| (&b.entries[i].key, &b.entries[i].rec))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(i: u32) -> FlowKey {
        FlowKey::v4(
            i.to_be_bytes(),
            [192, 0, 2, 10],
            (i % 60000) as u16 + 1,
            80,
            6,
        )
    }

    fn rec(state: FlowState, now: u32) -> FlowRecord {
        FlowRecord {
            state,
            last_seen_ms: now,
            created_ms: now,
            ..Default::default()
        }
    }

    #[test]
    fn insert_get_remove() {
        let mut t = FlowTable::new(100, Timeouts::default(), 7);
        assert_eq!(
            t.insert(key(1), rec(FlowState::Established, 0), 0),
            Insert::New
        );
        assert_eq!(
            t.insert(key(1), rec(FlowState::Closing, 0), 0),
            Insert::Updated
        );
        assert_eq!(t.get_mut(&key(1), 5).unwrap().state, FlowState::Closing);
        assert!(t.get_mut(&key(2), 5).is_none());
        assert!(t.remove(&key(1)).is_some());
        assert!(t.is_empty());
    }

    #[test]
    fn expired_entries_are_not_returned() {
        let mut t = FlowTable::new(100, Timeouts::default(), 7);
        t.insert(key(1), rec(FlowState::SynSeen, 0), 0);
        assert!(t.get_mut(&key(1), 10_001).is_none());
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn syn_flood_does_not_push_out_established_flows() {
        let cap = 1000;
        let mut t = FlowTable::new(cap, Timeouts::default(), 3);
        let mut established = Vec::new();
        for i in 0..cap as u32 {
            if t.insert(key(i), rec(FlowState::Established, 0), 0) != Insert::Refused {
                established.push(key(i));
            }
        }
        assert!(established.len() >= cap * 9 / 10, "{}", established.len());
        // A flood of new half-open flows.
        for i in 0..100_000u32 {
            t.insert(key(1_000_000 + i), rec(FlowState::SynSeen, 1), 1);
        }
        for k in &established {
            assert!(t.peek(k).is_some(), "established flow {k} was pushed out");
        }
        assert!(t.len() <= cap);
        assert!(t.stats.refused > 0);
    }

    #[test]
    fn sweep_removes_expired() {
        let mut t = FlowTable::new(64, Timeouts::default(), 1);
        for i in 0..40 {
            t.insert(key(i), rec(FlowState::SynSeen, 0), 0);
        }
        t.insert(key(100), rec(FlowState::Established, 0), 0);
        let n = t.sweep(20_000, usize::MAX);
        assert_eq!(n, 40);
        assert_eq!(t.len(), 1);
    }

    proptest! {
        /// Invariants under any mix of operations: len never exceeds capacity, len equals the
        /// number of stored entries, every inserted key is found until removed, evicted,
        /// refused or expired, and an established live entry is never evicted.
        #[test]
        fn invariants(ops in proptest::collection::vec((0u8..4, 0u32..400, 0u8..3), 1..2000)) {
            let cap = 64;
            let mut t = FlowTable::new(cap, Timeouts::default(), 11);
            let mut now = 0u32;
            for (op, k, st) in ops {
                now += 1;
                let state = [FlowState::SynSeen, FlowState::Established, FlowState::Udp][st as usize];
                match op {
                    0 | 1 => {
                        let before_est: Vec<FlowKey> = t.iter()
                            .filter(|(_, r)| r.state == FlowState::Established && !r.expired(now, t.timeouts()))
                            .map(|(k, _)| *k).collect();
                        t.insert(key(k), rec(state, now), now);
                        for e in before_est {
                            prop_assert!(t.peek(&e).is_some() || e == key(k));
                        }
                    }
                    2 => { t.remove(&key(k)); }
                    _ => { t.get_mut(&key(k), now); }
                }
                prop_assert!(t.len() <= cap);
                prop_assert_eq!(t.len(), t.iter().count());
            }
        }
    }
}
