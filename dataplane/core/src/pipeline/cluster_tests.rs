//! The packet core as one node of three: new flows ranked and sent on to their primary,
//! served there from the node header's ranking, replies during the handshake sent to the
//! flow's primary, failover to the backup with a replicated record, and the hop limit.

use super::*;
use crate::cluster::{rank, Membership, MAX_HOPS};
use crate::counters::DropReason;
use crate::flow::{FlowKey, FlowRecord, FlowState};
use crate::messages::{FromWorker, ToWorker};
use crate::services::Services;
use crate::testkit;
use crate::wire::ethernet::{self, Mac};
use crate::wire::l4::PROTO_UDP;
use crate::wire::l4::{ACK, SYN};
use crate::wire::{ipv4, ipv6, tunnel};
use std::net::IpAddr;
use tandem_config::Config;

fn node_mac(id: u16) -> Mac {
    [2, 0, 0, 0, 0, id as u8]
}
fn back_mac(id: u16) -> Mac {
    [2, 0, 0, 0, 1, id as u8]
}
const ROUTER_MAC: Mac = [2, 0, 0, 0, 0xfe, 0xfe];
const A_MAC: Mac = [2, 0, 0, 0, 1, 0x11];

fn config(id: u16) -> String {
    format!(
        r#"
[node]
id = {id}
[eal]
args = []
[[port]]
name = "front"
devargs = "net_null0"
ipv4 = "10.0.0.{id}/24"
gateway = "10.0.0.254"
[[port]]
name = "back"
devargs = "net_null1"
ipv4 = "10.1.0.{id}/24"
[[service]]
name = "web"
vip = "192.0.2.10"
port = 80
protocol = "tcp"
mode = "nat"
[[service.backend]]
name = "a"
address = "10.1.0.11"
port = 8080
paths = [{{ port = "back", mac = "02:00:00:00:01:11" }}]
[cluster]
secret_file = "/dev/null"
[[cluster.node]]
id = 1
address = "10.0.0.1"
mac = "02:00:00:00:00:01"
sync = "127.0.0.1:7001"
[[cluster.node]]
id = 2
address = "10.0.0.2"
mac = "02:00:00:00:00:02"
sync = "127.0.0.1:7002"
[[cluster.node]]
id = 3
address = "10.0.0.3"
mac = "02:00:00:00:00:03"
sync = "127.0.0.1:7003"
"#
    )
}

const ALL: Membership = Membership {
    serving: 0b111,
    eligible: 0b111,
};

fn node(id: u16) -> Core {
    let cfg = Config::from_toml(&config(id)).unwrap();
    let s = Services::from_config(&cfg, &[node_mac(id), back_mac(id)]);
    let view = crate::cluster::ClusterView::new(cfg.cluster.as_ref().unwrap(), id, &s.ports);
    let mut c = testkit::core_of(Arc::new(s.with_cluster(view)), 1024, 7);
    testkit::apply_at(&mut c, ToWorker::Nodes(ALL), 0);
    c
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn client(to: u16, sport: u16, flags: u8) -> Vec<u8> {
    testkit::tcp(
        node_mac(to),
        ROUTER_MAC,
        ip("198.51.100.7"),
        sport,
        ip("192.0.2.10"),
        80,
        flags,
        b"",
    )
}

/// Backend a's segment to the client's port, reaching node `to` on its back port.
fn backend_reply(to: u16, sport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    testkit::tcp(
        back_mac(to),
        A_MAC,
        ip("10.1.0.11"),
        8080,
        ip("198.51.100.7"),
        sport,
        flags,
        payload,
    )
}

/// The primary and backup node ids the ranking gives a client port (all three serving).
fn ranking(sport: u16) -> (u16, u16) {
    let c = node(1);
    let cl = c.services.cluster.as_ref().unwrap();
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[198, 51, 100, 7]);
    let (p, b) = rank::top2(rank::client_hash(&a, sport, 6), &cl.nodes, 0b111);
    (cl.id_of(p.unwrap()), cl.id_of(b.unwrap()))
}

/// A client port whose flow ranks `primary` first and `backup` second.
fn port_ranked(primary: u16, backup: u16) -> u16 {
    (30_000..40_000)
        .find(|&p| ranking(p) == (primary, backup))
        .unwrap()
}

fn outer_header(frame: &[u8]) -> tunnel::Header {
    tunnel::parse(&frame[14 + 20 + 8..]).unwrap()
}

fn flows_out(c: &mut Core) -> Vec<(FlowRecord, bool)> {
    c.state
        .outbox
        .drain(..)
        .filter_map(|m| match m {
            FromWorker::Flow { rec, peers, .. } => Some((rec, peers)),
            _ => None,
        })
        .collect()
}

#[test]
fn new_flow_is_sent_to_its_primary_and_served_there() {
    let sport = port_ranked(2, 3);
    let (mut n1, mut n2) = (node(1), node(2));
    // Node 1 receives the SYN: not its flow, so on to node 2 in UDP with the ranking.
    let (v, out) = testkit::run(&mut n1, 0, &client(1, sport, SYN), 1);
    assert_eq!(v, Verdict::Tx(0));
    assert_eq!(&out[0..12], &[node_mac(2), node_mac(1)].concat()[..]);
    let outer = ipv4::Packet::new_checked(&out[14..]).unwrap();
    assert_eq!(outer.dst_bytes(), [10, 0, 0, 2]);
    assert_eq!(outer.src_bytes(), [10, 0, 0, 1]);
    assert_eq!(&outer.payload()[2..4], &6070u16.to_be_bytes());
    let h = outer_header(&out);
    assert_eq!((h.primary, h.backup, h.hops), (2, 3, 1));
    testkit::verify_checksums(&out).unwrap();
    assert_eq!(n1.state.counters.node_forwarded.get(), 1);
    // Node 1 remembers the ranking (no backend yet) and tells only its own workers.
    let k = FlowKey::v4([198, 51, 100, 7], [192, 0, 2, 10], sport, 80, 6);
    assert!(n1.state.table.peek(&k).is_some_and(|r| !r.bound()));
    let f = flows_out(&mut n1);
    assert_eq!(f.len(), 1);
    assert!(!f[0].0.bound() && !f[0].1);

    // Node 2 serves it: nat to the backend, its record naming itself primary and 3 backup.
    let (v, to_backend) = testkit::run(&mut n2, 0, &out, 2);
    assert_eq!(v, Verdict::Tx(1));
    assert_eq!(&to_backend[0..6], &A_MAC);
    let p = ipv4::Packet::new_checked(&to_backend[14..]).unwrap();
    assert_eq!(p.dst_bytes(), [10, 1, 0, 11]);
    assert_eq!(p.src_bytes(), [198, 51, 100, 7]);
    testkit::verify_checksums(&to_backend).unwrap();
    let f = flows_out(&mut n2);
    assert_eq!((f[0].0.primary_node, f[0].0.backup_node), (1, 2));
    assert!(!f[0].1, "a half-open flow stays off the other nodes");

    // The client's first ACK goes the same way and completes the handshake on node 2:
    // now the record is for every node.
    let (v, out) = testkit::run(&mut n1, 0, &client(1, sport, ACK), 3);
    assert_eq!(v, Verdict::Tx(0));
    let (v, _) = testkit::run(&mut n2, 0, &out, 4);
    assert_eq!(v, Verdict::Tx(1));
    let f = flows_out(&mut n2);
    assert!(f.iter().any(|(r, peers)| *peers
        && r.state == FlowState::Established
        && (r.primary_node, r.backup_node) == (1, 2)));
}

#[test]
fn reply_during_handshake_goes_to_the_primary_and_ranks_like_its_request() {
    let sport = port_ranked(2, 1);
    let (mut n2, mut n3) = (node(2), node(3));
    let (v, _) = testkit::run(&mut n2, 0, &client(2, sport, SYN), 1);
    assert_eq!(v, Verdict::Tx(1), "node 2 is the primary: served at once");
    // The backend's SYN-ACK leaves by a multipath route through node 3, which has no record.
    let reply = backend_reply(3, sport, SYN | ACK, b"");
    let (v, out) = testkit::run(&mut n3, 1, &reply, 2);
    assert_eq!(v, Verdict::Tx(0), "sent on to the primary (front port)");
    let h = outer_header(&out);
    assert_eq!((h.primary, h.flags), (2, tunnel::FLAG_REPLY));
    // Node 2 rewrites it back to the VIP and sends it to the client's router.
    testkit::apply_at(
        &mut n2,
        testkit::neighbor(0, "10.0.0.254".parse().unwrap(), ROUTER_MAC),
        2,
    );
    let (v, back) = testkit::run(&mut n2, 0, &out, 3);
    assert_eq!(v, Verdict::Tx(0));
    assert_eq!(&back[0..6], &ROUTER_MAC);
    let p = ipv4::Packet::new_checked(&back[14..]).unwrap();
    assert_eq!(p.src_bytes(), [192, 0, 2, 10]);
    assert_eq!(&p.payload()[0..2], &80u16.to_be_bytes());
    testkit::verify_checksums(&back).unwrap();
}

/// Client ports whose flows rank `primary` first and `backup` second, as many as asked.
fn ports_ranked(primary: u16, backup: u16, n: usize) -> Vec<u16> {
    (30_000..40_000)
        .filter(|&p| ranking(p) == (primary, backup))
        .take(n)
        .collect()
}

#[test]
fn a_node_back_from_a_drain_sends_older_flows_to_the_node_that_took_them() {
    // Flows ranked 1 first, 2 second, begun while node 1 was drained: node 2 took them.
    let ports = ports_ranked(1, 2, 4);
    let mut n1 = node(1);
    let drained = Membership {
        serving: 0b111,
        eligible: 0b110,
    };
    testkit::apply_at(&mut n1, ToWorker::Nodes(drained), 10);
    testkit::apply_at(&mut n1, ToWorker::Nodes(ALL), 1_000);
    // Node 1 takes new flows again and the router moves a flow to it before node 2's record
    // got here: its ACK goes on to node 2, ranked as the flow began, not bound here.
    let (v, out) = testkit::run(&mut n1, 0, &client(1, ports[0], ACK), 1_100);
    assert_eq!(v, Verdict::Tx(0));
    assert_eq!(&out[0..6], &node_mac(2));
    let h = outer_header(&out);
    assert_eq!((h.primary, h.backup), (2, 3));
    // Its next packets follow, with the ranking kept here.
    let (v, out) = testkit::run(&mut n1, 0, &client(1, ports[0], ACK), 1_200);
    assert_eq!((v, &out[0..6]), (Verdict::Tx(0), &node_mac(2)[..]));
    // A backend's reply with no record here goes to node 2 as well.
    let reply = backend_reply(1, ports[1], ACK, b"");
    let (v, out) = testkit::run(&mut n1, 1, &reply, 1_300);
    assert_eq!(v, Verdict::Tx(0));
    assert_eq!(&out[0..6], &node_mac(2));
    assert_eq!(outer_header(&out).flags, tunnel::FLAG_REPLY);
    // A new flow is node 1's as the ranking says: served here.
    let (v, _) = testkit::run(&mut n1, 0, &client(1, ports[2], SYN), 1_400);
    assert_eq!(v, Verdict::Tx(1));
    // Past tcp_syn_timeout (10 s) back, a flow it has no record of is bound here.
    let (v, _) = testkit::run(&mut n1, 0, &client(1, ports[3], ACK), 11_001);
    assert_eq!(v, Verdict::Tx(1));
}

#[test]
fn a_nodes_first_membership_is_no_coming_back() {
    // A node that starts (its workers' first membership) has no older flows to pass on.
    let ports = ports_ranked(1, 2, 1);
    let mut n1 = node(1);
    let (v, _) = testkit::run(&mut n1, 0, &client(1, ports[0], ACK), 100);
    assert_eq!(v, Verdict::Tx(1));
}

#[test]
fn dead_primary_fails_over_to_the_backup_with_the_replicated_record() {
    let sport = port_ranked(2, 1);
    let (mut n1, mut n2, mut n3) = (node(1), node(2), node(3));
    testkit::run(&mut n2, 0, &client(2, sport, SYN), 1);
    let (v, _) = testkit::run(&mut n2, 0, &client(2, sport, ACK), 2);
    assert_eq!(v, Verdict::Tx(1));
    // Replicate node 2's records to nodes 1 and 3 as the sync channel would.
    for (rec, peers) in flows_out(&mut n2) {
        if peers {
            let key = FlowKey::v4([198, 51, 100, 7], [192, 0, 2, 10], sport, 80, 6);
            testkit::apply_at(&mut n1, ToWorker::Flow { key, rec }, 3);
            testkit::apply_at(&mut n3, ToWorker::Flow { key, rec }, 3);
        }
    }
    // While node 2 serves, node 3 (receiving) sends the flow's packets to it.
    let (v, out) = testkit::run(&mut n3, 0, &client(3, sport, ACK), 4);
    assert_eq!(v, Verdict::Tx(0));
    assert_eq!(&out[0..6], &node_mac(2));
    // Node 2 dies. Node 3 now sends them to the backup, node 1...
    let without2 = Membership {
        serving: 0b101,
        eligible: 0b101,
    };
    testkit::apply_at(&mut n3, ToWorker::Nodes(without2), 5);
    testkit::apply_at(&mut n1, ToWorker::Nodes(without2), 5);
    let (v, out) = testkit::run(&mut n3, 0, &client(3, sport, ACK), 6);
    assert_eq!(v, Verdict::Tx(0));
    assert_eq!(&out[0..6], &node_mac(1));
    // ...which serves it with the record: same backend, nat as before.
    let (v, to_backend) = testkit::run(&mut n1, 0, &out, 7);
    assert_eq!(v, Verdict::Tx(1));
    let p = ipv4::Packet::new_checked(&to_backend[14..]).unwrap();
    assert_eq!(p.dst_bytes(), [10, 1, 0, 11]);
    assert_eq!(n1.state.counters.node_failovers.get(), 1);
    // Node 1 also rewrites the backend's replies from the replicated record.
    let reply = backend_reply(1, sport, ACK, b"data");
    let (v, _) = testkit::run(&mut n1, 1, &reply, 8);
    assert_eq!(v, Verdict::Tx(0));
    // Backup dead too: the next-ranked serving node (3, the only one left) serves it itself.
    let only3 = Membership {
        serving: 0b100,
        eligible: 0b100,
    };
    testkit::apply_at(&mut n3, ToWorker::Nodes(only3), 9);
    let (v, _) = testkit::run(&mut n3, 0, &client(3, sport, ACK), 10);
    assert_eq!(v, Verdict::Tx(1));
}

#[test]
fn a_node_not_eligible_takes_no_new_flows_and_none_at_all_drops() {
    let sport = port_ranked(1, 2);
    let mut n1 = node(1);
    // Node 1 is draining (or still taking its snapshot): its flow goes to the next, node 2.
    testkit::apply_at(
        &mut n1,
        ToWorker::Nodes(Membership {
            serving: 0b111,
            eligible: 0b110,
        }),
        0,
    );
    let (v, out) = testkit::run(&mut n1, 0, &client(1, sport, SYN), 1);
    assert_eq!(v, Verdict::Tx(0));
    assert_eq!(outer_header(&out).primary, 2);
    testkit::apply_at(&mut n1, ToWorker::Nodes(Membership::default()), 2);
    let (v, _) = testkit::run(&mut n1, 0, &client(1, sport + 1, SYN), 3);
    assert_eq!(v, Verdict::Drop(DropReason::NoNode));
}

#[test]
fn forwarded_packets_are_never_forwarded_again() {
    let sport = port_ranked(2, 3);
    let mut n1 = node(1);
    let (_, out) = testkit::run(&mut n1, 0, &client(1, sport, SYN), 1);
    let mut n2 = node(2);
    // Over the hop limit.
    let mut bad = out.clone();
    bad[14 + 20 + 8 + 2] = MAX_HOPS + 1;
    let (v, _) = testkit::run(&mut n2, 0, &bad, 2);
    assert_eq!(v, Verdict::Drop(DropReason::HopLimit));
    // Encapsulated twice.
    let inner_ip = out[14..].to_vec();
    let twice = testkit::eth(
        node_mac(2),
        node_mac(1),
        ethernet::ETHERTYPE_IPV4,
        &testkit::ip_l4(
            ip("10.0.0.1"),
            ip("10.0.0.2"),
            PROTO_UDP,
            50000,
            6070,
            0,
            &[&out[14 + 20 + 8..14 + 20 + 16], &inner_ip[..]].concat(),
        ),
    );
    let (v, _) = testkit::run(&mut n2, 0, &twice, 3);
    assert_eq!(v, Verdict::Drop(DropReason::HopLimit));
    // A bad version is malformed.
    let mut bad = out.clone();
    bad[14 + 20 + 8] = 9;
    let (v, _) = testkit::run(&mut n2, 0, &bad, 4);
    assert_eq!(v, Verdict::Drop(DropReason::Malformed));
    // Even when node 2's own view would rank the flow elsewhere, a forwarded packet is
    // served where it lands.
    testkit::apply_at(
        &mut n2,
        ToWorker::Nodes(Membership {
            serving: 0b101,
            eligible: 0b101,
        }),
        5,
    );
    let (v, _) = testkit::run(&mut n2, 0, &out, 6);
    assert_eq!(v, Verdict::Tx(1));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

    /// Node-to-node packets with bytes flipped or cut short never panic a node, whatever
    /// it knows: sent out, or dropped and counted.
    #[test]
    fn mutated_node_packets_never_panic(
        flips in proptest::collection::vec((0usize..120, proptest::prelude::any::<u8>()), 1..6),
        cut in 14usize..130,
        reply in proptest::prelude::any::<bool>(),
    ) {
        let sport = 33_333;
        let mut n1 = node(1);
        let mut n2 = node(2);
        let frame = if reply {
            backend_reply(1, sport, SYN | ACK, b"")
        } else {
            client(1, sport, SYN)
        };
        // Node 1 forwards to whichever node ranks first; feed the result to node 2.
        testkit::apply_at(&mut n1, ToWorker::Nodes(Membership { serving: 0b111, eligible: 0b110 }), 0);
        let (_, out) = testkit::run(&mut n1, if reply { 1 } else { 0 }, &frame, 1);
        let mut f = out.clone();
        for (at, b) in flips {
            if at < f.len() {
                f[at] = b;
            }
        }
        f.truncate(cut);
        let _ = testkit::run(&mut n2, 0, &f, 2);
        let _ = testkit::run(&mut n2, 0, &out, 3);
    }
}

/// Nodes that reach each other over IPv6: the IPv4 client packet travels in IPv6 + UDP
/// (with the checksum IPv6 requires) and is served on the other side.
#[test]
fn nodes_over_ipv6_carry_ipv4_flows() {
    let cfg = |id: u16| {
        config(id)
            .replace(
                "gateway = \"10.0.0.254\"",
                &format!("gateway = \"10.0.0.254\"\nipv6 = \"fd00::{id}/64\""),
            )
            .replace("address = \"10.0.0.1\"", "address = \"fd00::1\"")
            .replace("address = \"10.0.0.2\"", "address = \"fd00::2\"")
            .replace("address = \"10.0.0.3\"", "address = \"fd00::3\"")
    };
    let make = |id: u16| {
        let c = Config::from_toml(&cfg(id)).unwrap();
        let s = Services::from_config(&c, &[node_mac(id), back_mac(id)]);
        let view = crate::cluster::ClusterView::new(c.cluster.as_ref().unwrap(), id, &s.ports);
        let mut core = Core::new(
            0,
            1024,
            Timeouts::default(),
            Arc::new(s.with_cluster(view)),
            Arc::new(WorkerCounters::default()),
            7,
        );
        testkit::apply_at(&mut core, ToWorker::Nodes(ALL), 0);
        core
    };
    let sport = port_ranked(2, 3);
    let (mut n1, mut n2) = (make(1), make(2));
    let (v, out) = testkit::run(&mut n1, 0, &client(1, sport, SYN), 1);
    assert_eq!(v, Verdict::Tx(0));
    assert_eq!(&out[12..14], &ethernet::ETHERTYPE_IPV6.to_be_bytes());
    let outer = ipv6::Packet::new_checked(&out[14..]).unwrap();
    assert_eq!(
        outer.dst_bytes(),
        "fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets()
    );
    testkit::verify_checksums(&out).unwrap();
    let h = tunnel::parse(&out[14 + 40 + 8..]).unwrap();
    assert_eq!((h.primary, h.backup), (2, 3));
    let (v, to_backend) = testkit::run(&mut n2, 0, &out, 2);
    assert_eq!(v, Verdict::Tx(1));
    let p = ipv4::Packet::new_checked(&to_backend[14..]).unwrap();
    assert_eq!(p.dst_bytes(), [10, 1, 0, 11]);
    testkit::verify_checksums(&to_backend).unwrap();
}

#[test]
fn the_tunnel_port_takes_packets_only_from_cluster_nodes_naming_real_nodes() {
    let sport = port_ranked(2, 3);
    let (mut n1, mut n2) = (node(1), node(2));
    let (_, good) = testkit::run(&mut n1, 0, &client(1, sport, SYN), 1);
    // The same packet from an address that is no node's (outer source 10.0.0.66): the
    // outer IPv4 checksum is not what the core checks, the source is.
    let mut stranger = good.clone();
    stranger[14 + 15] = 66;
    let (v, _) = testkit::run(&mut n2, 0, &stranger, 2);
    assert_eq!(v, Verdict::Drop(DropReason::NotFromNode));
    // From node 2's own address: not a peer either.
    let mut own = good.clone();
    own[14 + 15] = 2;
    assert_eq!(
        testkit::run(&mut n2, 0, &own, 2).0,
        Verdict::Drop(DropReason::NotFromNode)
    );
    // From node 1, but claiming roles for nodes that do not exist, or the same node twice.
    for (primary, backup) in [(9u16, 3u16), (2, 9), (2, 2)] {
        let mut forged = good.clone();
        let at = 14 + 20 + 8;
        forged[at + 4..at + 6].copy_from_slice(&primary.to_be_bytes());
        forged[at + 6..at + 8].copy_from_slice(&backup.to_be_bytes());
        assert_eq!(
            testkit::run(&mut n2, 0, &forged, 2).0,
            Verdict::Drop(DropReason::BadNodeHeader),
            "{primary}/{backup}"
        );
    }
    assert_eq!(n2.state.counters.dropped(DropReason::NotFromNode), 2);
    assert_eq!(n2.state.counters.node_received.get(), 0);
    // The genuine one is served.
    assert_eq!(testkit::run(&mut n2, 0, &good, 3).0, Verdict::Tx(1));
    assert_eq!(n2.state.counters.node_received.get(), 1);
}

#[test]
fn an_icmp_error_reaches_the_flows_primary_and_its_backend() {
    let sport = port_ranked(2, 3);
    let (mut n1, mut n2) = (node(1), node(2));
    let (_, out) = testkit::run(&mut n1, 0, &client(1, sport, SYN), 1);
    assert_eq!(testkit::run(&mut n2, 0, &out, 2).0, Verdict::Tx(1));
    // A router's fragmentation needed for the VIP's answer to the client reaches node 1.
    let answer = testkit::tcp(
        ROUTER_MAC,
        node_mac(2),
        ip("192.0.2.10"),
        80,
        ip("198.51.100.7"),
        sport,
        ACK,
        &[0u8; 64],
    );
    let err = testkit::icmp_error(
        node_mac(1),
        ROUTER_MAC,
        ip("10.0.0.254"),
        ip("192.0.2.10"),
        crate::wire::icmp::DEST_UNREACHABLE,
        crate::wire::icmp::CODE_FRAG_NEEDED,
        1400,
        &testkit::ip_of(&answer),
    );
    let (v, out) = testkit::run(&mut n1, 0, &err, 3);
    assert_eq!(v, Verdict::Tx(0), "on to the flow's primary");
    assert_eq!(&out[0..6], &node_mac(2));
    assert_eq!(outer_header(&out).primary, 2);
    // The primary sends it to the backend, rewritten as the flow's packets are.
    let (v, out) = testkit::run(&mut n2, 0, &out, 4);
    assert_eq!(v, Verdict::Tx(1));
    assert_eq!(&out[0..6], &A_MAC);
    testkit::verify_checksums(&out).unwrap();
    let p = ipv4::Packet::new_checked(&out[14..]).unwrap();
    assert_eq!(p.dst_bytes(), [10, 1, 0, 11]);
    let q = ipv4::Packet::new_checked(&p.payload()[8..]).unwrap();
    assert_eq!(q.src_bytes(), [10, 1, 0, 11]);
    assert_eq!(n2.state.counters.icmp_frag_needed.get(), 1);
}

/// A tracer for `filter` with `count` frames to trace, as the control thread arms it.
fn arm(c: &mut Core, filter: &str, count: u32) {
    let f = crate::trace::Filter::parse(filter).unwrap();
    let left = Arc::new(std::sync::atomic::AtomicU32::new(count));
    let t = crate::trace::Tracer::new(1, f, left);
    assert!(c.apply(ToWorker::Trace(Some(Box::new(t)))).is_none());
}

fn told(c: &Core) -> Vec<crate::trace::explain::Told> {
    let t = c.state.trace.as_ref().unwrap();
    t.records()
        .iter()
        .map(|r| crate::trace::explain::tell(r, &c.services))
        .collect()
}

fn stage<'a>(t: &'a crate::trace::explain::Told, name: &str) -> &'a str {
    t.stages
        .iter()
        .find(|(s, _)| *s == name)
        .map(|(_, d)| d.as_str())
        .unwrap_or_else(|| panic!("no stage {name} in {t:?}"))
}

#[test]
fn a_traced_frame_sent_on_carries_the_mark_and_the_next_node_traces_it() {
    let sport = port_ranked(2, 3);
    let (mut n1, mut n2) = (node(1), node(2));
    arm(&mut n1, "host 198.51.100.7 and port 80", 5);
    // Node 2's own filter names another client: only the mark makes it trace.
    arm(&mut n2, "host 203.0.113.99", 5);
    let (v, out) = testkit::run(&mut n1, 0, &client(1, sport, SYN), 1);
    assert_eq!(v, Verdict::Tx(0));
    let h = outer_header(&out);
    assert_eq!(
        h.flags,
        tunnel::FLAG_TRACE,
        "the forwarded frame carries the mark"
    );
    let t1 = told(&n1);
    assert_eq!(t1.len(), 1);
    let t = &t1[0];
    assert_eq!(t.port, "front");
    assert!(stage(t, "parse").contains("198.51.100.7:"), "{t:?}");
    assert!(stage(t, "service").starts_with("web: 192.0.2.10:80 tcp, mode nat"));
    assert!(stage(t, "flow").starts_with("miss: a new flow"), "{t:?}");
    assert!(stage(t, "selection").contains("chose none here"), "{t:?}");
    assert!(
        stage(t, "nodes").contains("primary node 2, backup node 3"),
        "{t:?}"
    );
    assert!(stage(t, "rewrite").contains("sent on to another node"));
    assert!(stage(t, "counted").contains("node_forwarded +1"), "{t:?}");
    assert_eq!(t.verdict, "sent out of port front");

    // Node 2 serves it, traced for the mark: the selection, the path and the rewrite.
    let (v, _) = testkit::run(&mut n2, 0, &out, 2);
    assert_eq!(v, Verdict::Tx(1));
    let t2 = told(&n2);
    assert_eq!(t2.len(), 1);
    let t = &t2[0];
    assert!(stage(t, "rx").contains("trace mark"));
    assert!(stage(t, "parse").contains("sent on by another node"));
    assert!(stage(t, "selection").contains("chose a"), "{t:?}");
    assert!(
        stage(t, "nodes").contains("this node 2 is the flow's primary"),
        "{t:?}"
    );
    assert!(stage(t, "path").contains("out by port back"), "{t:?}");
    assert!(
        stage(t, "rewrite").contains("-> 198.51.100.7:")
            && stage(t, "rewrite").contains("10.1.0.11:8080"),
        "{t:?}"
    );
    assert_eq!(t.verdict, "sent out of port back");

    // Not marked and not matching: node 2 leaves it alone; node 1 stops at its count.
    let other = testkit::tcp(
        node_mac(2),
        ROUTER_MAC,
        ip("203.0.113.7"),
        sport,
        ip("192.0.2.10"),
        80,
        SYN,
        b"",
    );
    testkit::run(&mut n2, 0, &other, 3);
    assert_eq!(told(&n2).len(), 1);
}

#[test]
fn a_trace_stops_at_its_count_and_an_untraced_node_sends_no_mark() {
    let sport = port_ranked(2, 3);
    let mut n1 = node(1);
    arm(&mut n1, "198.51.100.7", 2);
    for (i, f) in [SYN, ACK, ACK, ACK].into_iter().enumerate() {
        testkit::run(&mut n1, 0, &client(1, sport, f), i as u32 + 1);
    }
    assert_eq!(told(&n1).len(), 2);
    let (_, out) = testkit::run(&mut node(1), 0, &client(1, sport, SYN), 1);
    assert_eq!(outer_header(&out).flags, 0);
}

/// A node of the three with a quic service too (`mode` nat or dsr): backends q1 and q2
/// (server IDs 0a01, 0a02).
fn quic_node(id: u16, mode: &str) -> Core {
    let quic = format!(
        r#"[[service]]
name = "h3"
vip = "192.0.2.40"
port = 443
protocol = "quic"
mode = "{mode}"
[[service.backend]]
name = "q1"
address = "10.1.0.21"
server_id = "0a01"
paths = [{{ port = "back", mac = "02:00:00:00:01:21" }}]
[[service.backend]]
name = "q2"
address = "10.1.0.22"
server_id = "0a02"
paths = [{{ port = "back", mac = "02:00:00:00:01:22" }}]
[cluster]"#
    );
    let cfg = Config::from_toml(&config(id).replace("[cluster]", &quic)).unwrap();
    let s = Services::from_config(&cfg, &[node_mac(id), back_mac(id)]);
    let view = crate::cluster::ClusterView::new(cfg.cluster.as_ref().unwrap(), id, &s.ports);
    let mut c = testkit::core_of(Arc::new(s.with_cluster(view)), 1024, 7);
    testkit::apply_at(&mut c, ToWorker::Nodes(ALL), 0);
    c
}

/// A QUIC datagram from the client's `sport` to node `to`: a short header naming server
/// `sid`, or (None) a long header.
fn quic_packet(to: u16, sport: u16, sid: Option<u8>) -> Vec<u8> {
    let mut payload = match sid {
        Some(n) => {
            let lb = quic_lb::Config::new(0, 2, 6, None).unwrap();
            let mut cid = [0u8; quic_lb::MAX_CID_LEN];
            let len = lb.encode(&[0x0a, n], &[5; 6], &mut cid).unwrap();
            [&[0x41][..], &cid[..len]].concat()
        }
        None => vec![0xc3, 0, 0, 0, 1, 8, 9, 9, 9, 9, 9, 9, 9, 9],
    };
    payload.extend_from_slice(&[0u8; 32]);
    testkit::udp(
        node_mac(to),
        ROUTER_MAC,
        ip("198.51.100.7"),
        sport,
        ip("192.0.2.40"),
        443,
        &payload,
    )
}

/// A client UDP port whose flow ranks node 2 first (all three serving).
fn udp_port_ranked_to_2() -> u16 {
    (30_000..40_000)
        .find(|&p| {
            let c = node(1);
            let cl = c.services.cluster.as_ref().unwrap();
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&[198, 51, 100, 7]);
            let (p1, _) = rank::top2(rank::client_hash(&a, p, PROTO_UDP), &cl.nodes, 0b111);
            cl.id_of(p1.unwrap()) == 2
        })
        .unwrap()
}

#[test]
fn any_node_routes_a_dsr_quic_id_with_no_record_and_sends_new_connections_to_their_primary() {
    // Ranked to node 2 first: node 1 and node 3 hold no record of it.
    let sport = udp_port_ranked_to_2();
    for id in [1, 3, 2] {
        let mut n = quic_node(id, "dsr");
        // A short header naming q2: out to q2 from here, whichever node this is.
        let (v, out) = testkit::run(&mut n, 0, &quic_packet(id, sport, Some(2)), 1);
        assert_eq!(v, Verdict::Tx(1), "node {id}");
        assert_eq!(out[..6], [2, 0, 0, 0, 1, 0x22], "node {id}");
        assert_eq!(n.state.counters.quic_by_cid.get(), 1);
        assert_eq!(n.state.counters.node_forwarded.get(), 0);
        // The record made for the 4-tuple names q2 and is offered to the peers.
        let f = flows_out(&mut n);
        assert!(f.iter().any(|(r, peers)| r.bound() && *peers), "node {id}");
    }
    // A long header (a new connection) at node 1 goes to its primary, node 2.
    let mut n1 = quic_node(1, "dsr");
    let (v, out) = testkit::run(&mut n1, 0, &quic_packet(1, sport, None), 1);
    assert_eq!(v, Verdict::Tx(0));
    assert_eq!(outer_header(&out).primary, 2);
    assert_eq!(n1.state.counters.quic_by_flow.get(), 1);
}

/// A nat QUIC 4-tuple new to the cluster (a client that moved) is routed by its primary,
/// which decodes the ID with no record and holds the 4-tuple's record when the backend's
/// reply comes back through a third node: no reply waits for replication.
#[test]
fn a_nat_quic_id_is_routed_by_its_primary_where_its_replies_go() {
    let sport = udp_port_ranked_to_2();
    let (mut n1, mut n2, mut n3) = (
        quic_node(1, "nat"),
        quic_node(2, "nat"),
        quic_node(3, "nat"),
    );
    // Node 1 sends it on to node 2, remembering only the ranking; its next packet follows.
    let (v, fwd) = testkit::run(&mut n1, 0, &quic_packet(1, sport, Some(2)), 1);
    assert_eq!(v, Verdict::Tx(0), "to node 2, out of the front port");
    assert_eq!(outer_header(&fwd).primary, 2);
    assert_eq!(n1.state.counters.quic_by_cid.get(), 1);
    let f = flows_out(&mut n1);
    assert!(f.iter().all(|(r, peers)| !r.bound() && !*peers), "{f:?}");
    let (v, again) = testkit::run(&mut n1, 0, &quic_packet(1, sport, Some(2)), 2);
    assert_eq!(v, Verdict::Tx(0));
    assert_eq!(outer_header(&again).primary, 2);
    assert_eq!(n1.state.counters.node_forwarded.get(), 2);
    // Node 2 decodes the ID (it has no record either) and sends it to q2, nat'ed.
    let (v, out) = testkit::run(&mut n2, 0, &fwd, 3);
    assert_eq!(v, Verdict::Tx(1), "out to q2");
    assert_eq!(out[..6], [2, 0, 0, 0, 1, 0x22]);
    let p = ipv4::Packet::new_checked(&out[14..]).unwrap();
    assert_eq!(p.dst_bytes(), [10, 1, 0, 22]);
    assert!(flows_out(&mut n2)
        .iter()
        .any(|(r, peers)| r.bound() && *peers));
    // q2's reply leaves by a multipath route through node 3, which has no record: on to
    // node 2, which has it and rewrites it to the VIP.
    let reply = testkit::udp(
        back_mac(3),
        [2, 0, 0, 0, 1, 0x22],
        ip("10.1.0.22"),
        443,
        ip("198.51.100.7"),
        sport,
        &[0x41, 1, 2, 3, 4, 5, 6, 7, 8],
    );
    let (v, to2) = testkit::run(&mut n3, 1, &reply, 4);
    assert_eq!(v, Verdict::Tx(0), "sent on to the primary");
    assert_eq!(outer_header(&to2).primary, 2);
    testkit::apply_at(
        &mut n2,
        testkit::neighbor(0, "10.0.0.254".parse().unwrap(), ROUTER_MAC),
        4,
    );
    let (v, back) = testkit::run(&mut n2, 0, &to2, 5);
    assert_eq!(v, Verdict::Tx(0), "to the client's router");
    let p = ipv4::Packet::new_checked(&back[14..]).unwrap();
    assert_eq!(p.src_bytes(), [192, 0, 2, 40]);
    assert_eq!(&p.payload()[0..2], &443u16.to_be_bytes());
    testkit::verify_checksums(&back).unwrap();
    // With node 2 gone, node 1 serves the 4-tuple itself when it is the backup, or sends
    // it on to the backup: either way, by the ID.
    testkit::apply_at(
        &mut n1,
        ToWorker::Nodes(Membership {
            serving: 0b101,
            eligible: 0b101,
        }),
        6,
    );
    let (v, out) = testkit::run(&mut n1, 0, &quic_packet(1, sport, Some(2)), 7);
    match v {
        Verdict::Tx(1) => assert_eq!(out[..6], [2, 0, 0, 0, 1, 0x22]),
        Verdict::Tx(0) => {
            let outer = ipv4::Packet::new_checked(&out[14..]).unwrap();
            assert_eq!(outer.dst_bytes(), [10, 0, 0, 3], "to the backup, node 3");
        }
        v => panic!("{v:?}"),
    }
}
