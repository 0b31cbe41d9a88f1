//! A fixed-capacity, set-associative flow table: the key's hash picks a bucket of `WAYS`
//! slots; a slot holds a 32-bit tag (0 = empty) beside its key and record, so a lookup
//! touches one bucket and compares full keys only on a tag match. A key whose bucket is full
//! goes to an alternate bucket (other bits of its hash), looked in only on a miss in the
//! first: with one bucket, 0.3% of 100 000 flows were refused at 38% occupancy.
//!
//! All memory is allocated by `new`; insert, lookup and remove never allocate. When a bucket
//! is full, an expired entry is reused, else the oldest entry still in its handshake
//! (`SynSeen`) is evicted, else the insert is refused: established flows are never pushed
//! out, so a SYN flood can only churn its own half-open entries.

use super::key::FlowKey;
use super::record::{FlowRecord, FlowState, Timeouts};
use std::sync::OnceLock;

/// What to do with a table's memory before it is first touched: the daemon hands in the
/// port layer's huge-page hint (`port::memory::advise_huge_pages`), keeping this module free
/// of syscalls and `unsafe`.
static ON_ALLOCATE: OnceLock<fn(*mut u8, usize)> = OnceLock::new();

/// Sets the hook every table created after this call runs on its fresh memory (once per
/// process; later calls are ignored).
pub fn on_allocate(hook: fn(*mut u8, usize)) {
    let _ = ON_ALLOCATE.set(hook);
}

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
    /// Entries moved to their alternate bucket to make room.
    pub relocated: u64,
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
        let mut buckets: Vec<Bucket> = Vec::with_capacity(n);
        if let Some(hook) = ON_ALLOCATE.get() {
            hook(
                buckets.as_mut_ptr().cast(),
                n * std::mem::size_of::<Bucket>(),
            );
        }
        buckets.resize(n, Bucket::default());
        FlowTable {
            buckets: buckets.into_boxed_slice(),
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

    /// A key's two buckets (its first, and the alternate it overflows to) and its tag.
    #[inline]
    fn locate(&self, key: &FlowKey) -> (usize, usize, u32) {
        let h = key.hash(self.seed);
        let b1 = (h as usize) & self.mask;
        (b1, self.alternate(h, b1), tag_of(h))
    }

    /// The alternate bucket, from other bits of the hash; never the first bucket itself.
    #[inline]
    fn alternate(&self, h: u64, b1: usize) -> usize {
        let b2 = ((h >> 24) as usize ^ (h >> 45) as usize) & self.mask;
        if b2 == b1 {
            b1 ^ 1
        } else {
            b2
        }
    }

    #[inline(always)]
    fn slot_in(&self, b: usize, tag: u32, key: &FlowKey) -> Option<usize> {
        let bucket = &self.buckets[b];
        (0..WAYS).find(|&i| bucket.tags[i] == tag && bucket.entries[i].key == *key)
    }

    /// Where `key` is stored: (bucket, slot). The first bucket is looked in first; the
    /// alternate (computed only then) on a miss there: most keys live in their first bucket.
    #[inline]
    fn find(&self, key: &FlowKey) -> Option<(usize, usize)> {
        let h = key.hash(self.seed);
        let b1 = (h as usize) & self.mask;
        let tag = tag_of(h);
        if let Some(i) = self.slot_in(b1, tag, key) {
            return Some((b1, i));
        }
        let b2 = self.alternate(h, b1);
        self.slot_in(b2, tag, key).map(|i| (b2, i))
    }

    /// Prefetch hint: the bucket a key falls in first (for batching lookups over a burst).
    #[inline]
    pub fn bucket_addr(&self, key: &FlowKey) -> *const u8 {
        let b = (key.hash(self.seed) as usize) & self.mask;
        &self.buckets[b] as *const Bucket as *const u8
    }

    /// The live record for `key`; an expired one is removed and not returned.
    #[inline]
    pub fn get_mut(&mut self, key: &FlowKey, now_ms: u32) -> Option<&mut FlowRecord> {
        let (b, i) = self.find(key)?;
        let bucket = &mut self.buckets[b];
        if bucket.entries[i].rec.expired(now_ms, &self.timeouts) {
            bucket.tags[i] = 0;
            self.len -= 1;
            self.stats.expired += 1;
            Self::dropped(&mut self.released, &bucket.entries[i].rec);
            return None;
        }
        Some(&mut bucket.entries[i].rec)
    }

    /// Looks without expiring (for the control path and tests).
    pub fn peek(&self, key: &FlowKey) -> Option<&FlowRecord> {
        self.find(key).map(|(b, i)| &self.buckets[b].entries[i].rec)
    }

    /// Inserts or replaces the record for `key`. A new key takes a free slot of its first
    /// bucket, else of its alternate; when both are full, an expired entry of either is
    /// reused, else the oldest half-open one is evicted, else the insert is refused. Two
    /// buckets make a refusal while the table has room rare (both must be full).
    pub fn insert(&mut self, key: FlowKey, rec: FlowRecord, now_ms: u32) -> Insert {
        if let Some((b, i)) = self.find(&key) {
            self.buckets[b].entries[i].rec = rec;
            return Insert::Updated;
        }
        let (b1, b2, tag) = self.locate(&key);
        let t = self.timeouts;
        let full = self.len >= self.capacity;
        let mut empty = None;
        let mut expired = None;
        let mut oldest_syn: Option<(usize, usize, u32)> = None;
        for b in [b1, b2] {
            let bucket = &self.buckets[b];
            for i in 0..WAYS {
                if bucket.tags[i] == 0 {
                    if empty.is_none() {
                        empty = Some((b, i));
                    }
                    continue;
                }
                let e = &bucket.entries[i].rec;
                if e.expired(now_ms, &t) {
                    if expired.is_none() {
                        expired = Some((b, i));
                    }
                } else if e.state == FlowState::SynSeen {
                    let age = now_ms.wrapping_sub(e.last_seen_ms);
                    if oldest_syn.is_none_or(|(_, _, a)| age > a) {
                        oldest_syn = Some((b, i, age));
                    }
                }
            }
            if empty.is_some() && !full {
                break;
            }
        }
        // Both buckets full: move one of their entries to its own alternate bucket.
        if empty.is_none() && expired.is_none() && !full {
            empty = self.make_room(b1).or_else(|| self.make_room(b2));
        }
        let ((b, slot), result) = match (empty, expired, oldest_syn) {
            (Some(at), _, _) if !full => (at, Insert::New),
            (_, Some(at), _) => (at, Insert::ReusedExpired),
            (_, _, Some((b, i, _))) => ((b, i), Insert::Evicted),
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
        let bucket = &mut self.buckets[b];
        if result != Insert::New {
            Self::dropped(&mut self.released, &bucket.entries[slot].rec);
        }
        bucket.tags[slot] = tag;
        bucket.entries[slot] = Entry { key, rec };
        result
    }

    /// One cuckoo step: moves an entry of bucket `b` to its other bucket when that one has
    /// a free slot; returns the slot freed in `b`.
    fn make_room(&mut self, b: usize) -> Option<(usize, usize)> {
        for i in 0..WAYS {
            let key = self.buckets[b].entries[i].key;
            let (x1, x2, tag) = self.locate(&key);
            let alt = if b == x1 { x2 } else { x1 };
            if let Some(j) = (0..WAYS).find(|&j| self.buckets[alt].tags[j] == 0) {
                self.buckets[alt].entries[j] = self.buckets[b].entries[i];
                self.buckets[alt].tags[j] = tag;
                self.buckets[b].tags[i] = 0;
                self.stats.relocated += 1;
                return Some((b, i));
            }
        }
        None
    }

    pub fn remove(&mut self, key: &FlowKey) -> Option<FlowRecord> {
        let (b, i) = self.find(key)?;
        let bucket = &mut self.buckets[b];
        bucket.tags[i] = 0;
        self.len -= 1;
        Some(bucket.entries[i].rec)
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

    /// The bench's case: 200 000 entries (100 000 nat flows) in a table for 365 536 are all
    /// taken; with one bucket per key 0.3% of them were refused (their bucket full).
    #[test]
    fn no_refusal_while_the_table_has_room() {
        let mut t = FlowTable::new(365_536, Timeouts::default(), 11);
        for i in 0..200_000 {
            let r = t.insert(key(i), rec(FlowState::Udp, 0), 0);
            assert_eq!(r, Insert::New, "entry {i}");
        }
        assert_eq!(t.len(), 200_000);
        assert_eq!(t.stats.refused, 0);
        for i in (0..200_000).step_by(997) {
            assert!(t.peek(&key(i)).is_some());
            assert!(t.get_mut(&key(i), 1).is_some());
        }
        assert!(t.remove(&key(5)).is_some());
        assert!(t.peek(&key(5)).is_none());
        assert_eq!(t.len(), 199_999);
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
