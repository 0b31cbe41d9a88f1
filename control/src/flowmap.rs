//! The control thread's map of every flow (for `show flow`, snapshots to peers and expiry).
//!
//! It takes an insert per new flow on the node, so its hash matters: SipHash was a tenth of
//! the control thread's time at a million new flows per second. Keys come from the network,
//! so the hash is seeded at random per process (an attacker who cannot see the seed cannot
//! aim flows at one probe sequence); within that, it is a multiply-rotate mix over the
//! key's few words.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use tandem_dataplane::flow::FlowKey;

/// A map keyed by flow, with [`FlowHash`].
pub type FlowMap<V> = HashMap<FlowKey, V, FlowHash>;

/// A new, empty flow map with room for `n` flows before it first grows.
pub fn with_capacity<V>(n: usize) -> FlowMap<V> {
    HashMap::with_capacity_and_hasher(n, FlowHash::random())
}

/// Builds [`Mix`] hashers from one per-process random seed.
#[derive(Clone, Copy)]
pub struct FlowHash {
    seed: u64,
}

impl FlowHash {
    pub fn random() -> Self {
        // The std hasher's keys are random per process: borrow them for our seed.
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x7a6e_6465_6d00u64);
        FlowHash { seed }
    }
}

impl BuildHasher for FlowHash {
    type Hasher = Mix;
    fn build_hasher(&self) -> Mix {
        Mix(self.seed)
    }
}

pub struct Mix(u64);

impl Mix {
    #[inline]
    fn word(&mut self, w: u64) {
        self.0 = (self.0 ^ w)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
}

impl Hasher for Mix {
    fn finish(&self) -> u64 {
        tandem_dataplane::flow::key::fmix(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.word(u64::from_le_bytes(w));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.word(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.word(u64::from(i));
    }
    fn write_usize(&mut self, i: usize) {
        self.word(i as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_differ_anywhere_hash_apart() {
        let b = FlowHash::random();
        let k = FlowKey::v4([10, 0, 0, 1], [192, 0, 2, 1], 1000, 80, 6);
        let mut seen = std::collections::HashSet::new();
        seen.insert(b.hash_one(k));
        for (i, v) in [
            FlowKey { sport: 1001, ..k },
            FlowKey { dport: 81, ..k },
            FlowKey { proto: 17, ..k },
            FlowKey { v6: true, ..k },
            FlowKey::v4([10, 0, 0, 2], [192, 0, 2, 1], 1000, 80, 6),
            FlowKey::v4([10, 0, 0, 1], [192, 0, 2, 2], 1000, 80, 6),
        ]
        .into_iter()
        .enumerate()
        {
            assert!(seen.insert(b.hash_one(v)), "variant {i} collides");
        }
        // Another process (another seed) hashes the same key elsewhere.
        assert_ne!(FlowHash::random().hash_one(k), b.hash_one(k));
    }
}
