//! Weighted backend choice for new flows: a Maglev lookup table (Eisenbud et al., NSDI '16).
//! Each backend fills table slots in the order of its own permutation, taking turns in
//! proportion to its weight, so a flow hash maps to a backend in O(1), shares follow the
//! weights to within 1/M, and adding or removing a backend moves few flows. Built by the
//! control thread; workers only read it.

use crate::flow::key::fmix;

/// Table size: a prime well above backends × weight granularity.
pub const TABLE_SIZE: usize = 65_537;

/// One candidate: its global backend id, weight, and a stable identity (its name's hash) so
/// the permutation does not depend on list order.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub id: u16,
    pub weight: u32,
    pub identity: u64,
}

#[derive(Clone)]
pub struct Maglev {
    table: Box<[u16]>,
    /// How many backends hold slots.
    backends: usize,
}

/// Slots after a flow's own that `next_other` looks through for a second backend: with two
/// backends or more, Maglev interleaves them, so one turns up within a few slots unless
/// the weights are extremely skewed (then the first backend is compared with itself).
const NEIGHBOURS: usize = 256;

impl std::fmt::Debug for Maglev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Maglev({} slots)", self.table.len())
    }
}

impl Maglev {
    /// Builds the table; candidates with weight 0 get no slots. An empty table (no
    /// candidate with weight) makes every lookup return `None`.
    pub fn build(cands: &[Candidate]) -> Maglev {
        let live: Vec<&Candidate> = cands.iter().filter(|c| c.weight > 0).collect();
        if live.is_empty() {
            return Maglev {
                table: Box::new([]),
                backends: 0,
            };
        }
        let m = TABLE_SIZE as u64;
        let perms: Vec<(u64, u64)> = live
            .iter()
            .map(|c| {
                let offset = fmix(c.identity ^ 0x5bd1_e995) % m;
                let skip = fmix(c.identity.rotate_left(17) ^ 0x1b87_3593) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let max_w = live.iter().map(|c| c.weight).max().unwrap_or(1);
        let mut next = vec![0u64; live.len()];
        let mut credit = vec![0u64; live.len()];
        let mut table = vec![u16::MAX; TABLE_SIZE];
        let mut filled = 0;
        'fill: loop {
            for (i, c) in live.iter().enumerate() {
                credit[i] += u64::from(c.weight);
                while credit[i] >= u64::from(max_w) {
                    credit[i] -= u64::from(max_w);
                    let (offset, skip) = perms[i];
                    loop {
                        let slot = ((offset + next[i] * skip) % m) as usize;
                        next[i] += 1;
                        if table[slot] == u16::MAX {
                            table[slot] = c.id;
                            filled += 1;
                            break;
                        }
                    }
                    if filled == TABLE_SIZE {
                        break 'fill;
                    }
                }
            }
        }
        Maglev {
            table: table.into_boxed_slice(),
            backends: live.len(),
        }
    }

    #[inline]
    pub fn lookup(&self, hash: u64) -> Option<u16> {
        if self.table.is_empty() {
            return None;
        }
        Some(self.table[(hash % TABLE_SIZE as u64) as usize])
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The first backend other than `other` in the few slots after `hash`'s, or None
    /// (two-choice selection's second candidate). A table of one backend answers at once.
    #[inline]
    pub fn next_other(&self, hash: u64, other: u16) -> Option<u16> {
        if self.backends < 2 {
            return None;
        }
        let n = self.table.len();
        let start = (hash % TABLE_SIZE as u64) as usize;
        (1..NEIGHBOURS.min(n))
            .map(|i| self.table[(start + i) % n])
            .find(|&b| b != other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::FlowKey;

    fn cands(ws: &[u32]) -> Vec<Candidate> {
        ws.iter()
            .enumerate()
            .map(|(i, &w)| Candidate {
                id: i as u16,
                weight: w,
                identity: fmix(i as u64 + 1000),
            })
            .collect()
    }

    /// Over 100k flows each backend's share is within 2% (relative) of its weight's share.
    #[test]
    fn shares_follow_weights_over_100k_flows() {
        for ws in [&[2u32, 1, 1][..], &[1, 1, 1, 1, 1], &[5, 3, 2], &[100, 1]] {
            let m = Maglev::build(&cands(ws));
            let mut counts = vec![0u32; ws.len()];
            let n = 100_000u32;
            for i in 0..n {
                let k = FlowKey::v4(
                    [10, (i >> 16) as u8, (i >> 8) as u8, i as u8],
                    [192, 0, 2, 10],
                    (i % 50000) as u16 + 1024,
                    80,
                    6,
                );
                counts[m.lookup(k.hash(42)).unwrap() as usize] += 1;
            }
            let total: u32 = ws.iter().sum();
            for (i, &w) in ws.iter().enumerate() {
                let want = f64::from(w) / f64::from(total);
                let got = f64::from(counts[i]) / f64::from(n);
                let tol = (want * 0.02).max(3.0 * (want * (1.0 - want) / f64::from(n)).sqrt());
                assert!(
                    (got - want).abs() <= tol,
                    "weights {ws:?}: backend {i} got {got:.4}, want {want:.4}"
                );
            }
        }
    }

    #[test]
    fn zero_weights_and_empty() {
        assert!(Maglev::build(&cands(&[0, 0])).lookup(1).is_none());
        let m = Maglev::build(&cands(&[0, 3]));
        assert!((0..1000).all(|h| m.lookup(h) == Some(1)));
    }

    #[test]
    fn removing_a_backend_moves_few_flows() {
        let a = Maglev::build(&cands(&[1, 1, 1, 1]));
        let mut c = cands(&[1, 1, 1, 1]);
        c[3].weight = 0;
        let b = Maglev::build(&c);
        let moved = (0..TABLE_SIZE as u64)
            .filter(|&h| a.lookup(h) != Some(3) && a.lookup(h) != b.lookup(h))
            .count();
        // Only the removed backend's slots should move, plus a little Maglev disruption.
        assert!(moved < TABLE_SIZE / 20, "{moved}");
    }
}
