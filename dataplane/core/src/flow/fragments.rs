//! Where the later fragments of a datagram find their flow. Only the first fragment carries
//! the transport header, so the ports it names are kept here, by (source, destination,
//! protocol, IP identification), for the fragments that follow (as Cilium's fragment map
//! does). A small table per worker, preallocated: 4-way buckets, entries live
//! `TIMEOUT_MS`; when a bucket is full of live entries the oldest makes room (counted by the
//! caller), so a flood of first fragments pushes out only other fragments' entries and
//! never touches a flow's record.

use super::FlowKey;

/// How long the first fragment's ports are kept: the fragments of one datagram leave their
/// sender back to back, so a second is far more than they need (Linux waits 30 s, but to
/// reassemble, which needs them all).
pub const TIMEOUT_MS: u32 = 1000;
/// Entries per worker.
pub const CAPACITY: usize = 4096;
const WAYS: usize = 4;

/// A datagram's name among fragments: its addresses, protocol and identification (16
/// bits in IPv4, 32 in an IPv6 fragment header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentKey(FlowKey);

impl FragmentKey {
    pub fn new(src: [u8; 16], dst: [u8; 16], proto: u8, ident: u32, v6: bool) -> FragmentKey {
        FragmentKey(FlowKey {
            src,
            dst,
            sport: (ident >> 16) as u16,
            dport: ident as u16,
            proto,
            v6,
        })
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    key: FlowKey,
    sport: u16,
    dport: u16,
    since_ms: u32,
    used: bool,
}

/// What `insert` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// Stored (new, or the same datagram's first fragment again).
    Stored,
    /// Stored in place of another datagram's live entry (the bucket was full).
    Evicted,
}

pub struct Fragments {
    slots: Box<[Slot]>,
    mask: usize,
    seed: u64,
}

impl Fragments {
    pub fn new(seed: u64) -> Fragments {
        Fragments {
            slots: vec![Slot::default(); CAPACITY].into_boxed_slice(),
            mask: CAPACITY / WAYS - 1,
            seed,
        }
    }

    fn bucket(&self, k: &FragmentKey) -> usize {
        (k.0.hash(self.seed) as usize & self.mask) * WAYS
    }

    fn live(s: &Slot, now_ms: u32) -> bool {
        s.used && now_ms.wrapping_sub(s.since_ms) < TIMEOUT_MS
    }

    /// Keeps the ports of a datagram's first fragment.
    pub fn insert(&mut self, k: FragmentKey, sport: u16, dport: u16, now_ms: u32) -> Put {
        let b = self.bucket(&k);
        let ways = &mut self.slots[b..b + WAYS];
        let at = ways
            .iter()
            .position(|s| s.used && s.key == k.0)
            .or_else(|| ways.iter().position(|s| !Self::live(s, now_ms)));
        let (at, put) = match at {
            Some(i) => (i, Put::Stored),
            None => {
                let oldest = (0..WAYS)
                    .max_by_key(|&i| now_ms.wrapping_sub(ways[i].since_ms))
                    .unwrap_or(0);
                (oldest, Put::Evicted)
            }
        };
        ways[at] = Slot {
            key: k.0,
            sport,
            dport,
            since_ms: now_ms,
            used: true,
        };
        put
    }

    /// The ports a later fragment's datagram has, when its first fragment came within
    /// `TIMEOUT_MS`.
    pub fn get(&self, k: &FragmentKey, now_ms: u32) -> Option<(u16, u16)> {
        let b = self.bucket(k);
        self.slots[b..b + WAYS]
            .iter()
            .find(|s| s.key == k.0 && Self::live(s, now_ms))
            .map(|s| (s.sport, s.dport))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> FragmentKey {
        FragmentKey::new([1; 16], [2; 16], 17, i, false)
    }

    #[test]
    fn later_fragments_find_the_first_until_the_timeout() {
        let mut f = Fragments::new(7);
        assert_eq!(f.insert(key(9), 1000, 53, 10), Put::Stored);
        assert_eq!(f.get(&key(9), 10 + TIMEOUT_MS - 1), Some((1000, 53)));
        assert_eq!(f.get(&key(9), 10 + TIMEOUT_MS), None);
        assert_eq!(f.get(&key(10), 10), None);
        // The same identification from another protocol is another datagram.
        let other = FragmentKey::new([1; 16], [2; 16], 6, 9, false);
        assert_eq!(f.get(&other, 10), None);
    }

    #[test]
    fn a_flood_evicts_the_oldest_and_stays_bounded() {
        let mut f = Fragments::new(7);
        let mut evicted = 0;
        for i in 0..(CAPACITY as u32 * 4) {
            if f.insert(key(i), i as u16, 1, 100) == Put::Evicted {
                evicted += 1;
            }
        }
        assert!(evicted >= CAPACITY * 3, "{evicted}");
        // The newest are there; the table never grew.
        let last = CAPACITY as u32 * 4 - 1;
        assert_eq!(f.get(&key(last), 100), Some((last as u16, 1)));
        assert_eq!(f.slots.len(), CAPACITY);
        // Expired entries are reused without eviction.
        assert_eq!(f.insert(key(1 << 30), 5, 5, 100 + TIMEOUT_MS), Put::Stored);
    }
}
