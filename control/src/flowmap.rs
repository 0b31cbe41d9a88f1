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

/// [`with_capacity`], with every page of its room touched now.
///
/// An allocation this big comes from the kernel untouched, so the node's memory would grow
/// by the map's whole size (112 bytes a slot) the first time a flood fills it, well after
/// start. Filled once and cleared here, the map is resident from the start: the node's memory
/// at start is its memory at capacity, which is what an operator sizes a machine by, and
/// the control thread takes no page faults in the middle of a flood. `clear` keeps the
/// allocation, and its pages stay resident.
pub fn resident<V: Clone>(n: usize, filler: V) -> FlowMap<V> {
    let mut map = with_capacity(n);
    // Distinct keys up to 2^32 flows; `n` is at most a million.
    for i in 0..u32::try_from(n).unwrap_or(u32::MAX) {
        map.insert(
            FlowKey::v4(i.to_be_bytes(), [0; 4], 0, 0, 0),
            filler.clone(),
        );
    }
    map.clear();
    map
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

    #[test]
    fn a_resident_map_is_empty_and_keeps_its_room() {
        let n = 50_000;
        let mut map = resident(n, 7u64);
        assert!(map.is_empty());
        let room = map.capacity();
        assert!(room >= n);
        for i in 0..n as u32 {
            map.insert(FlowKey::v4([1, 2, 3, 4], i.to_be_bytes(), 1, 2, 6), 1);
        }
        assert_eq!(map.capacity(), room, "filling it to n grew it");
    }
}
