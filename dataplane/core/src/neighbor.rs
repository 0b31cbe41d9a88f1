//! A worker's neighbor table: (port, family, IP) to MAC. The control thread decides which
//! entries exist (the next hops the node needs, the addresses it is resolving, the MACs the
//! config fixes) and hands them to every worker; what a worker hears on the wire (ARP, ND)
//! only fills in or refreshes an entry that exists, never creates one, and never touches a
//! fixed one. So a stranger's ARP or neighbor advertisement cannot grow the table nor
//! redirect a next hop the node does not already resolve, and IPv4 and IPv6 entries never
//! share a key (`NeighborKey::v6`).
//!
//! Fixed size (sized from the ports' `max_neighbors` at start), open addressing with a
//! short probe and tombstones for removed entries; when a probe run is full, the stalest
//! entry that is not fixed is replaced (the control thread's table is the authority: a
//! worker that lost an entry asks again, `FromWorker::NeedNeighbor`).

use crate::flow::key::fmix;
use crate::wire::ethernet::Mac;

const PROBE: usize = 16;
/// How often a worker tells the control thread that a neighbor still answers with the MAC
/// it knows (the control thread drops the neighbors it resolves that stop answering).
pub const CONFIRM_EVERY_MS: u32 = 10_000;
/// Fewest slots a table has.
const MIN_SLOTS: usize = 1024;

/// Which neighbor: the port it is reached on, its address family, and its address (IPv4
/// in the first four bytes, the rest zero).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NeighborKey {
    pub port: u8,
    pub v6: bool,
    pub ip: [u8; 16],
}

impl NeighborKey {
    pub fn new(port: u8, v6: bool, ip: [u8; 16]) -> Self {
        NeighborKey { port, v6, ip }
    }

    /// An IPv4 neighbor.
    pub fn v4(port: u8, ip: [u8; 4]) -> Self {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&ip);
        NeighborKey::new(port, false, b)
    }
}

/// What a worker knows of a neighbor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Entry {
    /// Wanted, being resolved: an answer fills it in.
    #[default]
    Incomplete,
    /// Learned from an answer (ARP or ND).
    Learned(Mac),
    /// Set by the config: nothing heard on the wire changes it.
    Fixed(Mac),
}

impl Entry {
    pub fn mac(&self) -> Option<Mac> {
        match *self {
            Entry::Incomplete => None,
            Entry::Learned(m) | Entry::Fixed(m) => Some(m),
        }
    }
}

/// What a worker made of a neighbor's MAC it heard on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// Filled in or changed an entry, one the control thread has not heard of yet, or a
    /// confirmation due (`CONFIRM_EVERY_MS`): report it (`Neighbors::reported` once the
    /// report is sent).
    Report,
    /// Confirmed what the entry already said.
    Same,
    /// No such entry: the node does not need this neighbor, so nothing is created.
    Unknown,
    /// A fixed entry: kept as the config says.
    Fixed,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    /// 0 empty, 1 used, 2 removed (a tombstone: probes go on past it); `key` and `entry`
    /// mean something only while used.
    state: u8,
    key: NeighborKey,
    entry: Entry,
    /// The control thread has heard of this entry's MAC, last at `reported_ms`.
    reported: bool,
    reported_ms: u32,
    updated_ms: u32,
}

const EMPTY: u8 = 0;
const USED: u8 = 1;
const REMOVED: u8 = 2;

pub struct Neighbors {
    slots: Box<[Slot]>,
    mask: usize,
}

impl Default for Neighbors {
    fn default() -> Self {
        Neighbors::with_capacity(MIN_SLOTS / 2)
    }
}

fn index(k: &NeighborKey, mask: usize) -> usize {
    let a = u64::from_le_bytes(k.ip[..8].try_into().unwrap_or([0; 8]));
    let b = u64::from_le_bytes(k.ip[8..].try_into().unwrap_or([0; 8]));
    let tag = u64::from(k.port) << 56 | u64::from(k.v6) << 48;
    (fmix(a ^ b.rotate_left(7) ^ tag) as usize) & mask
}

impl Neighbors {
    /// A table for about `entries` neighbors (twice as many slots, at least `MIN_SLOTS`).
    pub fn with_capacity(entries: usize) -> Self {
        let slots = (entries.saturating_mul(2))
            .max(MIN_SLOTS)
            .next_power_of_two();
        Neighbors {
            slots: vec![Slot::default(); slots].into_boxed_slice(),
            mask: slots - 1,
        }
    }

    fn find(&self, k: &NeighborKey) -> Option<usize> {
        let start = index(k, self.mask);
        for i in 0..PROBE {
            let at = (start + i) & self.mask;
            let s = &self.slots[at];
            match s.state {
                EMPTY => return None,
                USED if s.key == *k => return Some(at),
                _ => {}
            }
        }
        None
    }

    /// The MAC of a resolved (learned or fixed) neighbor.
    #[inline]
    pub fn get(&self, k: &NeighborKey) -> Option<Mac> {
        self.slots[self.find(k)?].entry.mac()
    }

    /// Sets an entry as the control thread says (creating it when absent).
    pub fn install(&mut self, k: NeighborKey, e: Entry, now_ms: u32) {
        let slot = Slot {
            state: USED,
            key: k,
            entry: e,
            reported: true,
            reported_ms: now_ms,
            updated_ms: now_ms,
        };
        if let Some(at) = self.find(&k) {
            self.slots[at] = slot;
            return;
        }
        let start = index(&k, self.mask);
        let mut stalest: Option<(usize, u32)> = None;
        for i in 0..PROBE {
            let at = (start + i) & self.mask;
            let s = &self.slots[at];
            if s.state != USED {
                self.slots[at] = slot;
                return;
            }
            let age = now_ms.wrapping_sub(s.updated_ms);
            let fixed = matches!(s.entry, Entry::Fixed(_));
            if !fixed && stalest.is_none_or(|(_, a)| age >= a) {
                stalest = Some((at, age));
            }
        }
        if let Some((at, _)) = stalest {
            self.slots[at] = slot;
        }
    }

    /// Removes an entry (the control thread aged it out or no longer needs it).
    pub fn forget(&mut self, k: &NeighborKey) {
        if let Some(at) = self.find(k) {
            self.slots[at] = Slot {
                state: REMOVED,
                ..Slot::default()
            };
        }
    }

    /// A MAC heard on the wire for `k` (an ARP sender, an advertisement's target, a
    /// solicitation's source): fills in or refreshes an entry that exists, never creates
    /// one, and never changes a fixed one.
    pub fn heard(&mut self, k: &NeighborKey, mac: Mac, now_ms: u32) -> Heard {
        let Some(at) = self.find(k) else {
            return Heard::Unknown;
        };
        let s = &mut self.slots[at];
        match s.entry {
            Entry::Fixed(_) => Heard::Fixed,
            Entry::Learned(m)
                if m == mac
                    && s.reported
                    && now_ms.wrapping_sub(s.reported_ms) < CONFIRM_EVERY_MS =>
            {
                s.updated_ms = now_ms;
                Heard::Same
            }
            _ => {
                let changed = s.entry != Entry::Learned(mac);
                s.entry = Entry::Learned(mac);
                s.updated_ms = now_ms;
                if changed {
                    s.reported = false;
                }
                Heard::Report
            }
        }
    }

    /// The control thread has been told of `k`'s MAC.
    pub fn reported(&mut self, k: &NeighborKey, now_ms: u32) {
        if let Some(at) = self.find(k) {
            self.slots[at].reported = true;
            self.slots[at].reported_ms = now_ms;
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (NeighborKey, Entry)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.state == USED)
            .map(|s| (s.key, s.entry))
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Mac = [2, 0, 0, 0, 0, 5];
    const B: Mac = [2, 0, 0, 0, 0, 6];

    #[test]
    fn heard_fills_and_refreshes_only_what_exists() {
        let mut n = Neighbors::default();
        let k = NeighborKey::v4(0, [10, 0, 0, 5]);
        assert_eq!(n.heard(&k, A, 1), Heard::Unknown);
        assert!(n.is_empty(), "nothing heard creates an entry");
        n.install(k, Entry::Incomplete, 1);
        assert_eq!(n.get(&k), None);
        assert_eq!(n.heard(&k, A, 2), Heard::Report);
        assert_eq!(n.get(&k), Some(A));
        // Until reported, each answer asks again to be reported.
        assert_eq!(n.heard(&k, A, 3), Heard::Report);
        n.reported(&k, 3);
        assert_eq!(n.heard(&k, A, 4), Heard::Same);
        // Still answering: confirmed to the control thread now and then.
        assert_eq!(n.heard(&k, A, 3 + CONFIRM_EVERY_MS), Heard::Report);
        assert_eq!(n.heard(&k, B, 5), Heard::Report);
        assert_eq!(n.get(&k), Some(B));
    }

    #[test]
    fn fixed_entries_are_never_overwritten() {
        let mut n = Neighbors::default();
        let k = NeighborKey::v4(1, [10, 1, 0, 11]);
        n.install(k, Entry::Fixed(A), 0);
        assert_eq!(n.heard(&k, B, 1), Heard::Fixed);
        assert_eq!(n.get(&k), Some(A));
        // A full probe run replaces the stalest entry that is not fixed.
        for i in 0..100_000u32 {
            let mut ip = [0u8; 16];
            ip[..4].copy_from_slice(&i.to_be_bytes());
            n.install(NeighborKey::new(1, false, ip), Entry::Incomplete, i);
        }
        assert_eq!(n.get(&k), Some(A));
    }

    #[test]
    fn ipv4_and_ipv6_keys_never_collide() {
        let mut n = Neighbors::default();
        // 10.0.0.254 and a00:fe:: share their first bytes.
        let v4 = NeighborKey::v4(0, [10, 0, 0, 254]);
        let v6 = NeighborKey::new(0, true, v4.ip);
        n.install(v4, Entry::Learned(A), 0);
        assert_eq!(n.heard(&v6, B, 1), Heard::Unknown);
        assert_eq!(n.get(&v4), Some(A));
        assert_eq!(n.get(&v6), None);
    }

    #[test]
    fn forget_leaves_probe_runs_whole() {
        let mut n = Neighbors::with_capacity(4);
        let keys: Vec<NeighborKey> = (0..600u32)
            .map(|i| {
                let mut ip = [0u8; 16];
                ip[..4].copy_from_slice(&i.to_be_bytes());
                NeighborKey::new(0, false, ip)
            })
            .collect();
        for k in &keys {
            n.install(*k, Entry::Learned(A), 0);
        }
        let held: Vec<_> = keys.iter().filter(|k| n.get(k).is_some()).collect();
        for k in held.iter().step_by(2) {
            n.forget(k);
        }
        for (i, k) in held.iter().enumerate() {
            assert_eq!(n.get(k).is_some(), i % 2 == 1, "{k:?}");
        }
    }
}
