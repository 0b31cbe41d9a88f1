//! The control thread's map of every flow (for `show flow`, snapshots to peers and expiry).
//!
//! It takes an insert per flow announced, so its hash matters; keys come from the network,
//! so it is seeded at random per process (`tandem_dataplane::fasthash`).

use std::collections::HashMap;
use tandem_dataplane::fasthash::SeededHash;
use tandem_dataplane::flow::FlowKey;

/// A map keyed by flow.
pub type FlowMap<V> = HashMap<FlowKey, V, SeededHash>;

/// A new, empty flow map with room for `n` flows before it first grows.
pub fn with_capacity<V>(n: usize) -> FlowMap<V> {
    HashMap::with_capacity_and_hasher(n, SeededHash::random())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn keys_that_differ_anywhere_hash_apart() {
        let b = SeededHash::random();
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
        assert_ne!(SeededHash::random().hash_one(k), b.hash_one(k));
    }
}
