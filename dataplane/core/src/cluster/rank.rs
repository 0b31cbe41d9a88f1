//! Weighted rendezvous (highest-random-weight) hashing: every node gets a score per flow,
//! the highest is the flow's primary, the next its backup. Adding or removing one node of N
//! moves only the flows whose top two included it (about 1/N of them), and every node
//! computes the same ranking from the same node list whatever its order.
//!
//! The score is `weight / -ln(u)` with `u` uniform in (0,1) from a hash of the flow and the
//! node id (Schindelhauer & Schomaker's logarithmic method): the node with the largest
//! score wins with probability weight / total weight.

use super::Node;
use crate::flow::key::fmix;
use crate::flow::FlowKey;

/// The flow's side of the ranking hash: the client's address, port and protocol. Both
/// directions of a flow, before and after nat, rank alike: a request carries the client as
/// its source, a backend's reply as its destination.
#[inline]
pub fn client_hash(addr: &[u8; 16], port: u16, proto: u8) -> u64 {
    let w = |b: &[u8]| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    let mut h = fmix(w(&addr[..8]) ^ 0x5bd1_e995_2f4a_7c15);
    h = fmix(h ^ w(&addr[8..]));
    fmix(h ^ (u64::from(port) | u64::from(proto) << 16))
}

/// The ranking hash of a client's packet to a VIP (the client is the source).
#[inline]
pub fn of_request(k: &FlowKey) -> u64 {
    client_hash(&k.src, k.sport, k.proto)
}

/// The ranking hash of a nat backend's reply (the client is the destination).
#[inline]
pub fn of_reply(k: &FlowKey) -> u64 {
    client_hash(&k.dst, k.dport, k.proto)
}

/// The node's score for a flow.
#[inline]
pub fn score(h: u64, id: u16, weight: u32) -> f64 {
    let x = fmix(h ^ fmix(u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15)));
    // 53 random bits, centred in their interval: u is in (0, 1), never 0 or 1.
    let u = ((x >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64);
    f64::from(weight) / -u.ln()
}

/// The indices of the two best-scoring nodes among those in `mask` (ties go to the larger
/// id, so the order of the list never matters).
#[inline]
pub fn top2(h: u64, nodes: &[Node], mask: u64) -> (Option<u8>, Option<u8>) {
    let mut best: Option<(f64, u16, u8)> = None;
    let mut second: Option<(f64, u16, u8)> = None;
    for (i, n) in nodes.iter().enumerate().take(64) {
        if mask & (1 << i) == 0 {
            continue;
        }
        let c = (score(h, n.id, n.weight), n.id, i as u8);
        let better = |a: &(f64, u16, u8), b: &Option<(f64, u16, u8)>| match b {
            None => true,
            Some(b) => a.0 > b.0 || (a.0 == b.0 && a.1 > b.1),
        };
        if better(&c, &best) {
            second = best;
            best = Some(c);
        } else if better(&c, &second) {
            second = Some(c);
        }
    }
    (best.map(|b| b.2), second.map(|s| s.2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nodes(spec: &[(u16, u32)]) -> Vec<Node> {
        spec.iter()
            .map(|&(id, weight)| Node {
                id,
                weight,
                addr: [0; 16],
                v6: false,
                mac: None,
                port: 0,
            })
            .collect()
    }

    fn all(n: usize) -> u64 {
        if n >= 64 {
            u64::MAX
        } else {
            (1u64 << n) - 1
        }
    }

    fn ids(ns: &[Node], r: (Option<u8>, Option<u8>)) -> (u16, u16) {
        (
            r.0.map_or(0, |i| ns[usize::from(i)].id),
            r.1.map_or(0, |i| ns[usize::from(i)].id),
        )
    }

    proptest! {
        /// Same flow, same nodes in any order: same primary and backup.
        #[test]
        fn order_of_the_node_list_does_not_matter(
            addr in any::<[u8; 16]>(), port in any::<u16>(),
            spec in proptest::collection::btree_map(1u16..500, 1u32..5, 2..10),
            rot in 0usize..10,
        ) {
            let spec: Vec<(u16, u32)> = spec.into_iter().collect();
            let a = nodes(&spec);
            let mut shuffled = spec.clone();
            let len = shuffled.len();
            shuffled.rotate_left(rot % len);
            shuffled.reverse();
            let b = nodes(&shuffled);
            let h = client_hash(&addr, port, 6);
            prop_assert_eq!(ids(&a, top2(h, &a, all(a.len()))), ids(&b, top2(h, &b, all(b.len()))));
            let (p, s) = top2(h, &a, all(a.len()));
            prop_assert!(p.is_some() && s.is_some() && p != s);
        }
    }

    proptest! {
        /// A request, the same request after nat, and the backend's reply all rank alike,
        /// on any node list: a reply that reaches a node with no record goes to the node
        /// that served its request.
        #[test]
        fn direction_and_nat_do_not_change_the_ranking(
            client in any::<[u8; 4]>(), cport in any::<u16>(), vip in any::<[u8; 4]>(),
            backend in any::<[u8; 4]>(), bport in any::<u16>(), udp in any::<bool>(),
            spec in proptest::collection::btree_map(1u16..100, 1u32..4, 2..8),
        ) {
            let proto = if udp { 17 } else { 6 };
            let request = FlowKey::v4(client, vip, cport, 80, proto);
            let natted = FlowKey::v4(client, backend, cport, bport, proto);
            let reply = FlowKey::v4(backend, client, bport, cport, proto);
            prop_assert_eq!(of_request(&request), of_reply(&reply));
            prop_assert_eq!(of_request(&request), of_request(&natted));
            let spec: Vec<(u16, u32)> = spec.into_iter().collect();
            let ns = nodes(&spec);
            let m = all(ns.len());
            prop_assert_eq!(top2(of_request(&request), &ns, m), top2(of_reply(&reply), &ns, m));
        }
    }

    /// The share of flows each node is primary for follows its weight within 2%.
    #[test]
    fn weights_are_honoured_within_two_percent() {
        let ns = nodes(&[(1, 1), (2, 2), (3, 1), (7, 4)]);
        let total: u32 = ns.iter().map(|n| n.weight).sum();
        let mut won = [0u32; 4];
        let n = 200_000u32;
        for i in 0..n {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&(0x0a00_0000 + i / 7).to_be_bytes());
            let h = client_hash(&a, (i % 7 * 9000) as u16, 6);
            won[usize::from(top2(h, &ns, all(4)).0.unwrap())] += 1;
        }
        for (k, node) in ns.iter().enumerate() {
            let want = f64::from(node.weight) / f64::from(total);
            let got = f64::from(won[k]) / f64::from(n);
            println!(
                "node {} weight {}: {:.4} of flows (want {:.4})",
                node.id, node.weight, got, want
            );
            assert!(
                (got - want).abs() / want < 0.02,
                "node {}: {got} vs {want}",
                node.id
            );
        }
    }

    /// Adding a fifth node to four moves about 1/5 of primaries, all of them to the new
    /// node; removing one of five moves only that node's flows.
    #[test]
    fn one_node_more_or_less_moves_about_one_nth() {
        let four = nodes(&[(1, 1), (2, 1), (3, 1), (4, 1)]);
        let five = nodes(&[(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]);
        let n = 100_000u32;
        let (mut moved_add, mut moved_remove) = (0u32, 0u32);
        for i in 0..n {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
            let h = client_hash(&a, 40_000, 6);
            let before = ids(&four, top2(h, &four, all(4))).0;
            let after = ids(&five, top2(h, &five, all(5))).0;
            if before != after {
                assert_eq!(after, 5, "a flow moved between old nodes");
                moved_add += 1;
            }
            // Node 3 (index 2) dies: only its flows move.
            let with3 = ids(&five, top2(h, &five, all(5))).0;
            let without3 = ids(&five, top2(h, &five, all(5) & !(1 << 2))).0;
            if with3 != without3 {
                assert_eq!(with3, 3, "a flow of a live node moved");
                moved_remove += 1;
            }
        }
        let fa = f64::from(moved_add) / f64::from(n);
        let fr = f64::from(moved_remove) / f64::from(n);
        println!("add a 5th node: {fa:.4} of flows moved (ideal 0.2000); remove one of 5: {fr:.4} (ideal 0.2000)");
        assert!((fa - 0.2).abs() < 0.01 && (fr - 0.2).abs() < 0.01);
    }

    /// When the primary dies, its backup becomes the primary: failover lands where the
    /// replicated record says.
    #[test]
    fn backup_is_the_next_primary() {
        let ns = nodes(&[(1, 1), (2, 3), (3, 1), (4, 2)]);
        for i in 0..10_000u32 {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&i.to_be_bytes());
            let h = client_hash(&a, 1000, 17);
            let (p, b) = top2(h, &ns, all(4));
            let (p2, _) = top2(h, &ns, all(4) & !(1 << p.unwrap()));
            assert_eq!(p2, b);
        }
    }
}
