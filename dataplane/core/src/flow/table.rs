//! A fixed-capacity, set-associative flow table: the key's hash picks a bucket of `WAYS`
//! slots; a slot holds a 32-bit tag (0 = empty) beside its key and record, so a lookup
//! touches one bucket's tags and compares a full key only on a tag match. A key whose bucket
//! is full goes to an alternate bucket (other bits of its hash), looked in only on a miss in
//! the first; an insert that finds both full moves an entry (up to two steps) to its own
//! alternate, so the table fills to capacity (89% of its slots) without refusing a flow.
//!
//! Size is what makes a table fast at a million flows: every lookup is a cache miss, and
//! the fewer bytes per flow, the more of the table the caches and the TLB cover. IPv4 and
//! IPv6 flows are kept apart, IPv4 keys in 14 bytes and IPv6 keys in 38, so an IPv4 entry
//! (key and 32-byte record) takes 48 bytes, about 58 per flow of capacity with the tags
//! and headroom. Bucket counts need not be powers of two (a multiply maps the hash onto
//! them), so capacity is not rounded up by as much as 2x.
//!
//! All memory is allocated by `new`; insert, lookup and remove never allocate. When both of
//! a key's buckets are full, an expired entry is reused, else the oldest entry still in its
//! handshake (`SynSeen`) is evicted, else the insert is refused: established flows are never
//! pushed out, so a SYN flood can only churn its own half-open entries.

use super::key::{FlowKey, Tuple4};
use super::record::{FlowRecord, FlowState, Timeouts};
use std::sync::OnceLock;

pub const WAYS: usize = 8;

/// What to do with a table's memory before it is first touched: the port layer hands in its
/// huge-page hint (`tandem_port::memory::advise_huge_pages`), keeping this module free of
/// syscalls and `unsafe`.
static ON_ALLOCATE: OnceLock<fn(*mut u8, usize)> = OnceLock::new();

/// Sets the hook every table created after this call runs on its fresh memory (once per
/// process; later calls are ignored).
pub fn on_allocate(hook: fn(*mut u8, usize)) {
    let _ = ON_ALLOCATE.set(hook);
}

/// How many flows of each family a table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub v4: usize,
    pub v6: usize,
}

/// `v4` IPv4 flows and as many IPv6 ones as `flows.capacity_v6` defaults to.
impl From<usize> for Capacity {
    fn from(v4: usize) -> Self {
        let v6 = tandem_config::default_capacity_v6(u32::try_from(v4).unwrap_or(u32::MAX));
        Capacity {
            v4,
            v6: v6 as usize,
        }
    }
}

/// A key as a slot stores it: only the bytes its family has.
trait SlotKey: Copy + Default + PartialEq {
    fn pack(k: &FlowKey) -> Self;
    fn unpack(&self) -> FlowKey;
}

/// An IPv4 key in the words the plain lane reads from a frame (`Tuple4`): three compares.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct V4Key {
    addrs: u64,
    ports: u32,
    proto: u8,
}

impl V4Key {
    #[inline(always)]
    fn of(t: &Tuple4) -> Self {
        V4Key {
            addrs: t.addrs,
            ports: t.ports,
            proto: t.proto,
        }
    }
}

impl SlotKey for V4Key {
    #[inline(always)]
    fn pack(k: &FlowKey) -> Self {
        let s = [k.src[0], k.src[1], k.src[2], k.src[3]];
        let d = [k.dst[0], k.dst[1], k.dst[2], k.dst[3]];
        V4Key::of(&Tuple4::new(s, d, k.sport, k.dport, k.proto))
    }
    fn unpack(&self) -> FlowKey {
        Tuple4 {
            addrs: self.addrs,
            ports: self.ports,
            proto: self.proto,
        }
        .key()
    }
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct V6Key {
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    proto: u8,
}

impl SlotKey for V6Key {
    #[inline(always)]
    fn pack(k: &FlowKey) -> Self {
        V6Key {
            src: k.src,
            dst: k.dst,
            sport: k.sport,
            dport: k.dport,
            proto: k.proto,
        }
    }
    fn unpack(&self) -> FlowKey {
        FlowKey::v6(self.src, self.dst, self.sport, self.dport, self.proto)
    }
}

#[derive(Clone, Copy, Default)]
struct Entry<K> {
    key: K,
    rec: FlowRecord,
}

const _: () = assert!(std::mem::size_of::<Entry<V4Key>>() == 48);

/// Aligned to 32 bytes so the tags never straddle two cache lines (a lookup's first touch).
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Bucket<K> {
    tags: [u32; WAYS],
    entries: [Entry<K>; WAYS],
}

impl<K: SlotKey> Default for Bucket<K> {
    fn default() -> Self {
        Bucket {
            tags: [0; WAYS],
            entries: [Entry::default(); WAYS],
        }
    }
}

/// A key's hash and family, kept between the prefetch stages of a burst.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lookahead {
    h: u64,
    v6: bool,
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

/// What both families' stores share: the hash seed, the timeouts, the counts, and the
/// admitted records dropped (see `FlowTable::take_released`).
struct Shared {
    seed: u64,
    timeouts: Timeouts,
    stats: TableStats,
    released: Vec<u16>,
}

impl Shared {
    #[inline]
    fn dropped(&mut self, rec: &FlowRecord) {
        if rec.admitted && self.released.len() < RELEASED_CAP {
            self.released.push(rec.backend);
        }
    }
}

/// Room for dropped admitted records between two `take_released` calls: a sweep drops at
/// most `max_buckets * WAYS` per family, a lookup or insert one. Past it a slot would be
/// lost, so a paced sweep takes at most `SWEEP_MAX_BUCKETS` per family per call.
const RELEASED_CAP: usize = 8192;
const SWEEP_MAX_BUCKETS: usize = RELEASED_CAP / WAYS / 2;

#[inline(always)]
fn tag_of(h: u64) -> u32 {
    ((h >> 32) as u32) | 1
}

/// Maps 32 hash bits onto `0..n` with a multiply (Lemire's reduction): no power-of-two
/// bucket count needed, no division.
#[inline(always)]
fn reduce(x: u32, n: usize) -> usize {
    ((u64::from(x) * n as u64) >> 32) as usize
}

/// One family's buckets.
struct Store<K> {
    buckets: Box<[Bucket<K>]>,
    len: usize,
    capacity: usize,
    sweep_cursor: usize,
}

impl<K: SlotKey> Store<K> {
    /// Buckets for `capacity` flows: 12.5% more slots than flows.
    fn buckets_for(capacity: usize) -> usize {
        (capacity * 9 / 8).div_ceil(WAYS).max(2)
    }

    fn bytes_for(capacity: usize) -> usize {
        Self::buckets_for(capacity) * std::mem::size_of::<Bucket<K>>()
    }

    fn new(capacity: usize) -> Self {
        let n = Self::buckets_for(capacity);
        let mut buckets: Vec<Bucket<K>> = Vec::with_capacity(n);
        if let Some(hook) = ON_ALLOCATE.get() {
            hook(
                buckets.as_mut_ptr().cast(),
                n * std::mem::size_of::<Bucket<K>>(),
            );
        }
        buckets.resize(n, Bucket::default());
        Store {
            buckets: buckets.into_boxed_slice(),
            len: 0,
            capacity,
            sweep_cursor: 0,
        }
    }

    #[inline(always)]
    fn first(&self, h: u64) -> usize {
        reduce(h as u32, self.buckets.len())
    }

    /// The alternate bucket, from all of the hash's bits; never the first bucket itself.
    #[inline]
    fn alternate(&self, h: u64, b1: usize) -> usize {
        let n = self.buckets.len();
        let b2 = reduce((h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32, n);
        if b2 == b1 {
            (b1 + 1) % n
        } else {
            b2
        }
    }

    #[inline(always)]
    fn slot_in(&self, b: usize, tag: u32, key: &K) -> Option<usize> {
        let bucket = &self.buckets[b];
        (0..WAYS).find(|&i| bucket.tags[i] == tag && bucket.entries[i].key == *key)
    }

    /// Where `key` (hash `h`) is stored: (bucket, slot).
    #[inline(always)]
    fn find(&self, h: u64, key: &K) -> Option<(usize, usize)> {
        let b1 = self.first(h);
        let tag = tag_of(h);
        if let Some(i) = self.slot_in(b1, tag, key) {
            return Some((b1, i));
        }
        let b2 = self.alternate(h, b1);
        self.slot_in(b2, tag, key).map(|i| (b2, i))
    }

    #[inline(always)]
    fn get_mut(
        &mut self,
        sh: &mut Shared,
        h: u64,
        key: &K,
        now_ms: u32,
    ) -> Option<&mut FlowRecord> {
        let (b, i) = self.find(h, key)?;
        let bucket = &mut self.buckets[b];
        if bucket.entries[i].rec.expired(now_ms, &sh.timeouts) {
            bucket.tags[i] = 0;
            self.len -= 1;
            sh.stats.expired += 1;
            sh.dropped(&bucket.entries[i].rec);
            return None;
        }
        Some(&mut bucket.entries[i].rec)
    }

    fn insert(&mut self, sh: &mut Shared, h: u64, key: K, rec: FlowRecord, now_ms: u32) -> Insert {
        if let Some((b, i)) = self.find(h, &key) {
            self.buckets[b].entries[i].rec = rec;
            return Insert::Updated;
        }
        self.insert_absent(sh, h, key, rec, now_ms)
    }

    fn insert_absent(
        &mut self,
        sh: &mut Shared,
        h: u64,
        key: K,
        rec: FlowRecord,
        now_ms: u32,
    ) -> Insert {
        debug_assert!(self.find(h, &key).is_none());
        let b1 = self.first(h);
        let b2 = self.alternate(h, b1);
        let tag = tag_of(h);
        let full = self.len >= self.capacity;
        // The common case reads only tags: a free slot in either bucket.
        if !full {
            let free = self
                .free_slot(b1)
                .map(|i| (b1, i))
                .or_else(|| self.free_slot(b2).map(|i| (b2, i)));
            if let Some(at) = free {
                self.len += 1;
                self.place(at, tag, key, rec);
                return Insert::New;
            }
        }
        // Both buckets are full, or the table is: an expired entry of either, else (room
        // left in the table) a slot freed by moving entries on, else the oldest half-open.
        let t = sh.timeouts;
        let mut expired = None;
        let mut oldest_syn: Option<(usize, usize, u32)> = None;
        for b in [b1, b2] {
            let bucket = &self.buckets[b];
            for i in 0..WAYS {
                if bucket.tags[i] == 0 {
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
        }
        let moved = if expired.is_none() && !full {
            self.make_room(sh, b1).or_else(|| self.make_room(sh, b2))
        } else {
            None
        };
        let (at, result) = match (moved, expired, oldest_syn) {
            (Some(at), _, _) => (at, Insert::New),
            (_, Some(at), _) => (at, Insert::ReusedExpired),
            (_, _, Some((b, i, _))) => ((b, i), Insert::Evicted),
            _ => {
                sh.stats.refused += 1;
                return Insert::Refused;
            }
        };
        match result {
            Insert::New => self.len += 1,
            Insert::ReusedExpired => sh.stats.expired += 1,
            Insert::Evicted => sh.stats.evicted += 1,
            _ => {}
        }
        if result != Insert::New {
            sh.dropped(&self.buckets[at.0].entries[at.1].rec);
        }
        self.place(at, tag, key, rec);
        result
    }

    #[inline]
    fn place(&mut self, (b, i): (usize, usize), tag: u32, key: K, rec: FlowRecord) {
        let bucket = &mut self.buckets[b];
        bucket.tags[i] = tag;
        bucket.entries[i] = Entry { key, rec };
    }

    /// The bucket other than `b` that the entry in `b`'s slot `i` may live in, and its tag.
    fn other_home(&self, sh: &Shared, b: usize, i: usize) -> (usize, u32) {
        let h = self.buckets[b].entries[i].key.unpack().hash(sh.seed);
        let x1 = self.first(h);
        let x2 = self.alternate(h, x1);
        (if b == x1 { x2 } else { x1 }, tag_of(h))
    }

    fn free_slot(&self, b: usize) -> Option<usize> {
        (0..WAYS).find(|&j| self.buckets[b].tags[j] == 0)
    }

    fn relocate(&mut self, sh: &mut Shared, from: (usize, usize), to: (usize, usize), tag: u32) {
        self.buckets[to.0].entries[to.1] = self.buckets[from.0].entries[from.1];
        self.buckets[to.0].tags[to.1] = tag;
        self.buckets[from.0].tags[from.1] = 0;
        sh.stats.relocated += 1;
    }

    /// Frees a slot of full bucket `b` by moving one of its entries to its other bucket, or
    /// (two steps) by first moving an entry out of that other bucket to its own other one.
    /// Two steps take a 2-choice, 8-way table to its 89% load without refusals.
    fn make_room(&mut self, sh: &mut Shared, b: usize) -> Option<(usize, usize)> {
        for i in 0..WAYS {
            let (alt, tag) = self.other_home(sh, b, i);
            if let Some(j) = self.free_slot(alt) {
                self.relocate(sh, (b, i), (alt, j), tag);
                return Some((b, i));
            }
        }
        for i in 0..WAYS {
            let (alt, tag) = self.other_home(sh, b, i);
            for j in 0..WAYS {
                let (alt2, tag2) = self.other_home(sh, alt, j);
                if alt2 == b {
                    continue;
                }
                if let Some(k) = self.free_slot(alt2) {
                    self.relocate(sh, (alt, j), (alt2, k), tag2);
                    self.relocate(sh, (b, i), (alt, j), tag);
                    return Some((b, i));
                }
            }
        }
        None
    }

    fn remove(&mut self, h: u64, key: &K) -> Option<FlowRecord> {
        let (b, i) = self.find(h, key)?;
        let bucket = &mut self.buckets[b];
        bucket.tags[i] = 0;
        self.len -= 1;
        Some(bucket.entries[i].rec)
    }

    fn sweep(&mut self, sh: &mut Shared, now_ms: u32, max_buckets: usize) -> usize {
        let mut removed = 0;
        let n = self.buckets.len();
        for _ in 0..max_buckets.min(n) {
            let b = self.sweep_cursor;
            self.sweep_cursor = (self.sweep_cursor + 1) % n;
            let bucket = &mut self.buckets[b];
            for i in 0..WAYS {
                if bucket.tags[i] != 0 && bucket.entries[i].rec.expired(now_ms, &sh.timeouts) {
                    bucket.tags[i] = 0;
                    removed += 1;
                    sh.dropped(&bucket.entries[i].rec);
                }
            }
        }
        self.len -= removed;
        sh.stats.expired += removed as u64;
        removed
    }

    fn iter(&self) -> impl Iterator<Item = (FlowKey, &FlowRecord)> {
        self.buckets.iter().flat_map(|b| {
            (0..WAYS)
                .filter(move |&i| b.tags[i] != 0)
                .map(move |i| (b.entries[i].key.unpack(), &b.entries[i].rec))
        })
    }
}

pub struct FlowTable {
    v4: Store<V4Key>,
    v6: Store<V6Key>,
    sh: Shared,
    last_sweep_ms: u32,
}

/// How long `sweep_paced` takes over a whole pass of the table.
pub const SWEEP_PASS_MS: usize = 4000;

impl FlowTable {
    /// Bytes a table for `capacity` flows allocates.
    pub fn bytes_for(capacity: impl Into<Capacity>) -> usize {
        let c = capacity.into();
        Store::<V4Key>::bytes_for(c.v4) + Store::<V6Key>::bytes_for(c.v6)
    }

    /// Bytes per flow of capacity, for each family: (IPv4, IPv6).
    pub fn bytes_per_flow(capacity: impl Into<Capacity>) -> (usize, usize) {
        let c = capacity.into();
        (
            Store::<V4Key>::bytes_for(c.v4) / c.v4.max(1),
            Store::<V6Key>::bytes_for(c.v6) / c.v6.max(1),
        )
    }

    /// A table for `capacity` flows of each family.
    pub fn new(capacity: impl Into<Capacity>, timeouts: Timeouts, seed: u64) -> Self {
        let c = capacity.into();
        FlowTable {
            v4: Store::new(c.v4),
            v6: Store::new(c.v6),
            sh: Shared {
                seed,
                timeouts,
                stats: TableStats::default(),
                released: Vec::with_capacity(RELEASED_CAP),
            },
            last_sweep_ms: 0,
        }
    }

    /// Backends whose admitted records the table dropped since the last call.
    #[inline]
    pub fn take_released(&mut self) -> std::vec::Drain<'_, u16> {
        self.sh.released.drain(..)
    }

    #[inline]
    pub fn has_released(&self) -> bool {
        !self.sh.released.is_empty()
    }

    pub fn stats(&self) -> TableStats {
        self.sh.stats
    }

    pub fn len(&self) -> usize {
        self.v4.len + self.v6.len
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn capacity(&self) -> Capacity {
        Capacity {
            v4: self.v4.capacity,
            v6: self.v6.capacity,
        }
    }
    pub fn timeouts(&self) -> &Timeouts {
        &self.sh.timeouts
    }

    /// New idle timeouts (a reload): every flow's expiry is judged by them from now on.
    pub fn set_timeouts(&mut self, t: Timeouts) {
        self.sh.timeouts = t;
    }

    /// Where `key`'s lookup starts, for prefetching over a burst before the lookups run
    /// (DPDK's bulk cuckoo lookup does the same in stages): see [`Lookahead`].
    #[inline]
    pub fn lookahead(&self, key: &FlowKey) -> Lookahead {
        let h = key.hash(self.sh.seed);
        Lookahead { h, v6: key.v6 }
    }

    /// `key`'s hash: the one `la` carries, or computed.
    #[inline(always)]
    fn hash_of(&self, key: &FlowKey, la: Option<Lookahead>) -> u64 {
        match la {
            Some(la) => {
                debug_assert_eq!(la.h, key.hash(self.sh.seed), "a lookahead of another key");
                la.h
            }
            None => key.hash(self.sh.seed),
        }
    }

    /// Stage one: the first bucket's tags (the line every lookup reads first).
    #[inline]
    pub fn tags_addr(&self, la: Lookahead) -> *const u8 {
        if la.v6 {
            &self.v6.buckets[self.v6.first(la.h)] as *const Bucket<V6Key> as *const u8
        } else {
            &self.v4.buckets[self.v4.first(la.h)] as *const Bucket<V4Key> as *const u8
        }
    }

    /// Stage two, once the tags are in cache: the lines of the entry whose tag matches,
    /// so its key and record are in cache too when the lookup runs (its first byte and its
    /// last: a 48-byte entry straddles two lines half the time). None on no match (a new
    /// flow, or one in its alternate bucket).
    #[inline]
    pub fn entry_lines(&self, la: Lookahead) -> Option<[*const u8; 2]> {
        fn ends<E>(e: &E) -> [*const u8; 2] {
            let p = e as *const E as *const u8;
            [p, p.wrapping_add(std::mem::size_of::<E>() - 1)]
        }
        let tag = tag_of(la.h);
        if la.v6 {
            let b = &self.v6.buckets[self.v6.first(la.h)];
            let i = b.tags.iter().position(|&t| t == tag)?;
            Some(ends(&b.entries[i]))
        } else {
            let b = &self.v4.buckets[self.v4.first(la.h)];
            let i = b.tags.iter().position(|&t| t == tag)?;
            Some(ends(&b.entries[i]))
        }
    }

    /// The live record for `key`; an expired one is removed and not returned.
    #[inline]
    pub fn get_mut(&mut self, key: &FlowKey, now_ms: u32) -> Option<&mut FlowRecord> {
        self.get_mut_hashed(key, None, now_ms)
    }

    /// `get_mut` with the key's hash when it is known already (`la`, from `lookahead`: a
    /// burst's first pass hashed the key to prefetch by, and the lookup need not again).
    #[inline]
    pub fn get_mut_hashed(
        &mut self,
        key: &FlowKey,
        la: Option<Lookahead>,
        now_ms: u32,
    ) -> Option<&mut FlowRecord> {
        let h = self.hash_of(key, la);
        if key.v6 {
            self.v6.get_mut(&mut self.sh, h, &V6Key::pack(key), now_ms)
        } else {
            self.v4.get_mut(&mut self.sh, h, &V4Key::pack(key), now_ms)
        }
    }

    /// Where an IPv4 tuple's lookup starts (`lookahead` of its key, from the wire words).
    #[inline(always)]
    pub fn lookahead4(&self, t: &Tuple4) -> Lookahead {
        Lookahead {
            h: t.hash(self.sh.seed),
            v6: false,
        }
    }

    /// `get_mut_hashed` for an IPv4 tuple, with its `lookahead4`.
    #[inline(always)]
    pub fn get_mut4(&mut self, t: &Tuple4, la: Lookahead, now_ms: u32) -> Option<&mut FlowRecord> {
        debug_assert!(
            !la.v6 && la.h == t.hash(self.sh.seed),
            "a lookahead of another key"
        );
        self.v4.get_mut(&mut self.sh, la.h, &V4Key::of(t), now_ms)
    }

    /// The record for `key` unless it has expired, without removing anything.
    #[inline]
    pub fn peek_live(&self, key: &FlowKey, now_ms: u32) -> Option<&FlowRecord> {
        self.peek(key)
            .filter(|r| !r.expired(now_ms, &self.sh.timeouts))
    }

    /// Looks without expiring (for the control path and tests).
    pub fn peek(&self, key: &FlowKey) -> Option<&FlowRecord> {
        self.peek_hashed(key, None)
    }

    /// `peek` with the key's hash when it is known already (see `get_mut_hashed`).
    #[inline]
    pub fn peek_hashed(&self, key: &FlowKey, la: Option<Lookahead>) -> Option<&FlowRecord> {
        let h = self.hash_of(key, la);
        if key.v6 {
            let (b, i) = self.v6.find(h, &V6Key::pack(key))?;
            Some(&self.v6.buckets[b].entries[i].rec)
        } else {
            let (b, i) = self.v4.find(h, &V4Key::pack(key))?;
            Some(&self.v4.buckets[b].entries[i].rec)
        }
    }

    /// Inserts or replaces the record for `key`. A new key takes a free slot of its first
    /// bucket, else of its alternate, else one freed by moving entries on; when that fails
    /// too, an expired entry of either bucket is reused, else the oldest half-open one is
    /// evicted, else the insert is refused.
    pub fn insert(&mut self, key: FlowKey, rec: FlowRecord, now_ms: u32) -> Insert {
        self.insert_hashed(key, None, rec, now_ms)
    }

    /// `insert` with the key's hash when it is known already (see `get_mut_hashed`).
    pub fn insert_hashed(
        &mut self,
        key: FlowKey,
        la: Option<Lookahead>,
        rec: FlowRecord,
        now_ms: u32,
    ) -> Insert {
        let h = self.hash_of(&key, la);
        if key.v6 {
            self.v6
                .insert(&mut self.sh, h, V6Key::pack(&key), rec, now_ms)
        } else {
            self.v4
                .insert(&mut self.sh, h, V4Key::pack(&key), rec, now_ms)
        }
    }

    /// `insert` for a key the caller has just looked up and not found (a new flow's first
    /// packet): it skips looking again.
    pub fn insert_absent(&mut self, key: FlowKey, rec: FlowRecord, now_ms: u32) -> Insert {
        self.insert_absent_hashed(key, None, rec, now_ms)
    }

    /// `insert_absent` with the key's hash when it is known already (see `get_mut_hashed`).
    pub fn insert_absent_hashed(
        &mut self,
        key: FlowKey,
        la: Option<Lookahead>,
        rec: FlowRecord,
        now_ms: u32,
    ) -> Insert {
        let h = self.hash_of(&key, la);
        if key.v6 {
            self.v6
                .insert_absent(&mut self.sh, h, V6Key::pack(&key), rec, now_ms)
        } else {
            self.v4
                .insert_absent(&mut self.sh, h, V4Key::pack(&key), rec, now_ms)
        }
    }

    pub fn remove(&mut self, key: &FlowKey) -> Option<FlowRecord> {
        let h = key.hash(self.sh.seed);
        if key.v6 {
            self.v6.remove(h, &V6Key::pack(key))
        } else {
            self.v4.remove(h, &V4Key::pack(key))
        }
    }

    /// Removes expired entries from the next `max_buckets` buckets of each family (round
    /// robin), so the table is swept a little between bursts instead of all at once.
    /// Returns how many.
    pub fn sweep(&mut self, now_ms: u32, max_buckets: usize) -> usize {
        self.v4.sweep(&mut self.sh, now_ms, max_buckets)
            + self.v6.sweep(&mut self.sh, now_ms, max_buckets)
    }

    /// Sweeps the share of the table due since the last call, so a whole pass takes
    /// `SWEEP_PASS_MS` whatever the burst rate. Lookups and inserts deal with expired
    /// entries themselves; the sweep only counts them and gives back their admission
    /// slots, so it need not be fast, only cheap: sweeping 64 buckets per burst took 5% of
    /// a worker at 1 000 flows.
    pub fn sweep_paced(&mut self, now_ms: u32) -> usize {
        let elapsed = now_ms.wrapping_sub(self.last_sweep_ms) as usize;
        if elapsed == 0 {
            return 0;
        }
        self.last_sweep_ms = now_ms;
        let ms = elapsed.min(SWEEP_PASS_MS);
        let due = |n: usize| (n.div_ceil(SWEEP_PASS_MS) * ms).min(SWEEP_MAX_BUCKETS);
        let (n4, n6) = (due(self.v4.buckets.len()), due(self.v6.buckets.len()));
        self.v4.sweep(&mut self.sh, now_ms, n4) + self.v6.sweep(&mut self.sh, now_ms, n6)
    }

    /// Every entry (for the control path and tests; not for the packet path).
    pub fn iter(&self) -> impl Iterator<Item = (FlowKey, &FlowRecord)> {
        self.v4.iter().chain(self.v6.iter())
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
            ..Default::default()
        }
    }

    /// Filled to its capacity (89% of its slots) with IPv4 and IPv6 flows, the table
    /// refuses none and finds them all; an IPv4 flow costs at most 64 bytes.
    #[test]
    fn no_refusal_up_to_capacity() {
        let cap = Capacity {
            v4: 200_000,
            v6: 50_000,
        };
        let mut t = FlowTable::new(cap, Timeouts::default(), 11);
        for i in 0..200_000 {
            let r = t.insert(key(i), rec(FlowState::Udp, 0), 0);
            assert!(matches!(r, Insert::New), "entry {i}: {r:?}");
        }
        let k6 = |i: u32| {
            let mut a = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            a[12..].copy_from_slice(&i.to_be_bytes());
            FlowKey::v6(a, [0xfd; 16], (i % 60000) as u16 + 1, 443, 6)
        };
        for i in 0..50_000 {
            assert_eq!(t.insert(k6(i), rec(FlowState::Udp, 0), 0), Insert::New);
        }
        assert_eq!(t.len(), 250_000);
        assert_eq!(t.stats().refused, 0);
        println!("relocated {} entries to fill", t.stats().relocated);
        // Full: the next one is refused (nothing expired, nothing half-open).
        assert_eq!(
            t.insert(key(999_999), rec(FlowState::Udp, 0), 0),
            Insert::Refused
        );
        for i in (0..200_000).step_by(97) {
            assert!(t.peek(&key(i)).is_some());
            assert!(t.get_mut(&key(i), 1).is_some());
        }
        for i in (0..50_000).step_by(31) {
            assert_eq!(t.get_mut(&k6(i), 1).map(|r| r.state), Some(FlowState::Udp));
        }
        assert!(t.remove(&key(5)).is_some());
        assert!(t.peek(&key(5)).is_none());
        assert_eq!(t.len(), 249_999);
        assert_eq!(t.iter().count(), 249_999);
        assert!(t.iter().any(|(k, _)| k == k6(7)));
        let (v4, v6) = FlowTable::bytes_per_flow(cap);
        println!("bytes per flow of capacity: IPv4 {v4}, IPv6 {v6}");
        assert!(v4 <= 64, "IPv4: {v4} bytes per flow");
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
        assert!(t.stats().refused > 0);
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

    /// A paced sweep covers the whole table in `SWEEP_PASS_MS`, a little every millisecond,
    /// nothing more when called twice in the same millisecond, and after a long pause no
    /// more than `SWEEP_MAX_BUCKETS` at once.
    #[test]
    fn paced_sweep_takes_one_pass_per_period() {
        let mut t = FlowTable::new(100_000, Timeouts::default(), 5);
        for i in 0..50_000 {
            t.insert(key(i), rec(FlowState::SynSeen, 0), 0);
        }
        let start = 20_000u32;
        // The first call is 20 s late: it catches up, but only so far.
        let mut removed = t.sweep_paced(start);
        assert!(
            removed <= SWEEP_MAX_BUCKETS * WAYS,
            "{removed} swept at once"
        );
        assert_eq!(t.sweep_paced(start), 0, "same millisecond");
        let mut ms = start;
        while !t.is_empty() {
            ms += 1;
            removed += t.sweep_paced(ms);
            assert!(
                ms - start <= SWEEP_PASS_MS as u32 + 1,
                "not one pass: {}",
                t.len()
            );
        }
        assert_eq!(removed, 50_000);
        assert!(
            ms - start >= SWEEP_PASS_MS as u32 / 2,
            "too fast: {} ms",
            ms - start
        );
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
                            .map(|(k, _)| k).collect();
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
