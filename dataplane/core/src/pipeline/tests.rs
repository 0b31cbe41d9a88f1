//! The packet core driven with crafted frames: every mode's rewrite checked field by field
//! and against fully recomputed checksums, the node's own answers (ARP, ICMP, ND), and every
//! drop reason.

use super::*;
use crate::counters::DropReason;
use crate::flow::{FlowKey, FlowState};
use crate::messages::{FromWorker, ToWorker};
use crate::services::Services;
use crate::testkit;
use crate::wire::ethernet::Mac;
use crate::wire::l4::PROTO_UDP;
use crate::wire::l4::{ACK, FIN, SYN};
use crate::wire::{arp, icmp, ipv4, ipv6};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use tandem_config::{BackendState, Config};

const FRONT_MAC: Mac = [2, 0, 0, 0, 0, 1];
const BACK_MAC: Mac = [2, 0, 0, 0, 0, 2];
const BACK2_MAC: Mac = [2, 0, 0, 0, 0, 3];
const CLIENT_MAC: Mac = [2, 0, 0, 0, 0xc, 1];
const GW_MAC: Mac = [2, 0, 0, 0, 0xfe, 0xfe];
const A_MAC: Mac = [2, 0, 0, 0, 1, 0x11];
const B_MAC: Mac = [2, 0, 0, 0, 1, 0x12];

pub(crate) const CONFIG: &str = r#"
[node]
id = 1
[eal]
args = []
[[port]]
name = "front"
devargs = "net_null0"
ipv4 = "10.0.0.1/24"
ipv6 = "fd00::1/64"
gateway = "10.0.0.254"
[[port]]
name = "back"
devargs = "net_null1"
ipv4 = "10.1.0.1/24"
ipv6 = "fd01::1/64"
[[port]]
name = "back2"
devargs = "net_null2"
ipv4 = "10.2.0.1/24"
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
paths = [{ port = "back", mac = "02:00:00:00:01:11" }, { port = "back2", mac = "02:00:00:00:02:11" }]
[[service]]
name = "dsr"
vip = "192.0.2.20"
port = 80
protocol = "tcp"
mode = "dsr"
[[service.backend]]
name = "b"
address = "10.1.0.12"
paths = [{ port = "back", mac = "02:00:00:00:01:12" }]
[[service]]
name = "gue"
vip = "192.0.2.30"
port = 53
protocol = "udp"
mode = "gue"
[[service.backend]]
name = "c"
address = "10.1.0.13"
port = 6080
paths = [{ port = "back" }]
[[service]]
name = "web6"
vip = "fd00::10"
port = 80
protocol = "tcp"
mode = "nat"
[[service.backend]]
name = "a6"
address = "fd01::11"
port = 8080
paths = [{ port = "back", mac = "02:00:00:00:01:11" }]
"#;

pub(crate) fn services() -> Arc<Services> {
    static S: std::sync::OnceLock<Arc<Services>> = std::sync::OnceLock::new();
    Arc::clone(S.get_or_init(|| {
        let cfg = Config::from_toml(CONFIG).unwrap();
        Arc::new(Services::from_config(
            &cfg,
            &[FRONT_MAC, BACK_MAC, BACK2_MAC],
        ))
    }))
}

pub(crate) fn core() -> Core {
    testkit::core_of(services(), 1024, 99)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

use testkit::run;

fn client_syn(sport: u16) -> Vec<u8> {
    client_segment(sport, SYN)
}

/// A segment with no payload from nat backend "a" to the client's port `dport`.
fn backend_segment(dport: u16, flags: u8) -> Vec<u8> {
    testkit::tcp(
        BACK_MAC,
        A_MAC,
        ip("10.1.0.11"),
        8080,
        ip("198.51.100.7"),
        dport,
        flags,
        b"",
    )
}

/// A segment with no payload from the client to the nat VIP.
fn client_segment(sport: u16, flags: u8) -> Vec<u8> {
    testkit::tcp(
        FRONT_MAC,
        CLIENT_MAC,
        ip("198.51.100.7"),
        sport,
        ip("192.0.2.10"),
        80,
        flags,
        b"",
    )
}

#[test]
fn nat_rewrites_request_and_reply() {
    let mut c = core();
    let (v, out) = run(&mut c, 0, &client_syn(40000), 1);
    // Backend "a" has two paths; the flow's hash picks one.
    match v {
        Verdict::Tx(1) => assert_eq!((&out[0..6], &out[6..12]), (&A_MAC[..], &BACK_MAC[..])),
        Verdict::Tx(2) => assert_eq!(
            (&out[0..6], &out[6..12]),
            (&[2, 0, 0, 0, 2, 0x11][..], &BACK2_MAC[..])
        ),
        v => panic!("{v:?}"),
    }
    let p = ipv4::Packet::new_checked(&out[14..]).unwrap();
    assert_eq!(p.dst(), Ipv4Addr::new(10, 1, 0, 11));
    assert_eq!(p.src(), Ipv4Addr::new(198, 51, 100, 7));
    assert_eq!(p.ttl(), 63);
    assert_eq!(&p.payload()[2..4], &8080u16.to_be_bytes());
    testkit::verify_checksums(&out).unwrap();
    // The record is announced to the control thread (listed; not yet for peers).
    assert!(matches!(
        c.state.outbox[0],
        FromWorker::Flow { peers: false, .. }
    ));

    // The backend's SYN-ACK comes back on "back" and leaves by "front" as the VIP. The
    // client is off-link and the gateway unresolved: the request's L2 source is used.
    let reply = backend_segment(40000, SYN | ACK);
    let (v, out) = run(&mut c, 1, &reply, 2);
    assert_eq!(v, Verdict::Tx(0));
    assert_eq!(&out[0..6], &CLIENT_MAC);
    assert_eq!(&out[6..12], &FRONT_MAC);
    let p = ipv4::Packet::new_checked(&out[14..]).unwrap();
    assert_eq!(p.src(), Ipv4Addr::new(192, 0, 2, 10));
    assert_eq!(&p.payload()[0..2], &80u16.to_be_bytes());
    testkit::verify_checksums(&out).unwrap();

    // Once the gateway is known (the control thread wants it resolved, and an ARP from it
    // answers), replies go to it.
    testkit::apply_at(
        &mut c,
        testkit::wanted_neighbor(0, "10.0.0.254".parse().unwrap()),
        3,
    );
    let arp = testkit::arp_request(
        GW_MAC,
        Ipv4Addr::new(10, 0, 0, 254),
        Ipv4Addr::new(10, 0, 0, 1),
    );
    assert_eq!(run(&mut c, 0, &arp, 3).0, Verdict::Tx(0));
    let (_, out) = run(&mut c, 1, &reply, 4);
    assert_eq!(&out[0..6], &GW_MAC);

    // The client's ACK completes the handshake.
    let ack = testkit::tcp(
        FRONT_MAC,
        CLIENT_MAC,
        ip("198.51.100.7"),
        40000,
        ip("192.0.2.10"),
        80,
        ACK,
        b"hello",
    );
    run(&mut c, 0, &ack, 5);
    let key = FlowKey::v4([198, 51, 100, 7], [192, 0, 2, 10], 40000, 80, 6);
    assert_eq!(
        c.state.table.peek(&key).unwrap().state,
        FlowState::Established
    );
    // Established now: announced, for the peers too.
    assert!(c.state.outbox.iter().any(|m| matches!(
        m,
        FromWorker::Flow { key: k, rec, peers: true, .. }
            if *k == key && rec.state == FlowState::Established
    )));
}

/// A nat reply whose flow record has expired here is treated as one with no record (held
/// for a record another worker may be about to store, or sent to the flow's primary node
/// in a cluster), not dropped as not ours.
#[test]
fn a_reply_to_an_expired_flow_is_not_dropped_as_not_ours() {
    let mut c = core();
    let (v, _) = run(&mut c, 0, &client_syn(40002), 1);
    assert!(matches!(v, Verdict::Tx(_)), "{v:?}");
    let reply = backend_segment(40002, SYN | ACK);
    // Past the handshake timeout (10 s).
    let (v, _) = run(&mut c, 1, &reply, 20_000);
    assert!(matches!(v, Verdict::Defer(_)), "{v:?}");
}

/// A lone node with one worker lists at most `LISTED_PER_MS` new flows a millisecond; the
/// rest of a flood is served, counted, and kept off the control thread.
#[test]
fn a_syn_flood_is_kept_off_the_control_thread() {
    let mut c = core();
    let n = crate::pipeline::LISTED_PER_MS as u16 + 50;
    for i in 0..n {
        let (v, _) = run(&mut c, 0, &client_syn(20_000 + i), 1);
        assert!(matches!(v, Verdict::Tx(_)), "{v:?}");
    }
    let listed = |c: &Core| {
        c.state
            .outbox
            .iter()
            .filter(|m| matches!(m, FromWorker::Flow { .. }))
            .count()
    };
    assert_eq!(listed(&c), crate::pipeline::LISTED_PER_MS as usize);
    assert_eq!(c.state.counters.flows_unlisted.get(), 50);
    assert_eq!(c.state.table.len(), usize::from(n), "every one served");
    // The next millisecond lists again: the handshake completing announces its flow.
    c.set_now(Now::from_us(2_000));
    run(&mut c, 0, &client_segment(20_000 + n - 1, ACK), 2);
    assert_eq!(listed(&c), crate::pipeline::LISTED_PER_MS as usize + 1);
}

/// With other workers on the node, every flow goes to them from its SYN (a nat reply may
/// reach any of them before the handshake completes), straight through `replicas`, however
/// many come in a millisecond; the control thread's listing is limited as on one worker.
#[test]
fn half_open_flows_reach_sibling_workers() {
    let cfg = Config::from_toml(&CONFIG.replace(
        "[[service]]\nname = \"web\"",
        "[workers]\ncores = [1, 1]\n[[service]]\nname = \"web\"",
    ))
    .unwrap();
    assert!(cfg.workers.cores.len() == 2);
    let s = Arc::new(Services::from_config(
        &cfg,
        &[FRONT_MAC, BACK_MAC, BACK2_MAC],
    ));
    assert!(s.options.siblings);
    let mut c = testkit::core_of(s, 1024, 99);
    let n = crate::pipeline::LISTED_PER_MS as u16 + 50;
    for i in 0..n {
        run(&mut c, 0, &client_syn(20_000 + i), 1);
    }
    assert_eq!(c.state.replicas.len(), usize::from(n));
    assert!(c
        .state
        .replicas
        .iter()
        .all(|r| r.rec.state == FlowState::SynSeen));
    assert_eq!(
        c.replica_room(),
        crate::pipeline::REPLICA_CAP - usize::from(n)
    );
    assert_eq!(c.state.counters.flows_unlisted.get(), 50);
    let listed = c
        .state
        .outbox
        .iter()
        .filter(|m| matches!(m, FromWorker::Flow { .. }))
        .count();
    assert_eq!(listed, crate::pipeline::LISTED_PER_MS as usize);
}

/// A half-open flow of a dsr service has its next packets on the worker that made it (no
/// reply comes back through the node): the others hear of it only once it is established.
/// A nat flow's SYN goes to them at once (the previous test).
#[test]
fn half_open_dsr_flows_reach_sibling_workers_once_established() {
    let cfg = Config::from_toml(&CONFIG.replace(
        "[[service]]\nname = \"web\"",
        "[workers]\ncores = [1, 1]\n[[service]]\nname = \"web\"",
    ))
    .unwrap();
    let s = Arc::new(Services::from_config(
        &cfg,
        &[FRONT_MAC, BACK_MAC, BACK2_MAC],
    ));
    let mut c = testkit::core_of(s, 1024, 99);
    let dsr = |flags| {
        testkit::tcp(
            FRONT_MAC,
            CLIENT_MAC,
            ip("198.51.100.7"),
            31_000,
            ip("192.0.2.20"),
            80,
            flags,
            b"",
        )
    };
    let (v, _) = run(&mut c, 0, &dsr(SYN), 1);
    assert!(matches!(v, Verdict::Tx(_)), "{v:?}");
    assert_eq!(c.state.table.len(), 1);
    assert!(
        c.state.replicas.is_empty(),
        "a half-open dsr flow is this worker's alone"
    );
    let (v, _) = run(&mut c, 0, &dsr(ACK), 2);
    assert!(matches!(v, Verdict::Tx(_)), "{v:?}");
    assert_eq!(c.state.replicas.len(), 1);
    assert_eq!(c.state.replicas[0].rec.state, FlowState::Established);
    run(&mut c, 0, &client_syn(31_001), 3);
    assert_eq!(
        c.state.replicas.len(),
        2,
        "a nat SYN goes to the siblings at once"
    );
}

#[test]
fn nat_udp_and_payload_checksums_follow_rewrite() {
    let mut c = core();
    for (i, payload) in [&b""[..], b"x", b"odd-length payload!", &[0xffu8; 999]]
        .iter()
        .enumerate()
    {
        let f = testkit::tcp(
            FRONT_MAC,
            CLIENT_MAC,
            ip("198.51.100.9"),
            1000 + i as u16,
            ip("192.0.2.10"),
            80,
            ACK,
            payload,
        );
        let (v, out) = run(&mut c, 0, &f, 1);
        assert!(matches!(v, Verdict::Tx(1 | 2)), "{v:?}");
        testkit::verify_checksums(&out).unwrap();
    }
}

#[test]
fn nat_ipv6_both_ways() {
    let mut c = core();
    let syn = testkit::tcp(
        FRONT_MAC,
        CLIENT_MAC,
        ip("fd00::77"),
        5555,
        ip("fd00::10"),
        80,
        SYN,
        b"",
    );
    let (v, out) = run(&mut c, 0, &syn, 1);
    assert_eq!(v, Verdict::Tx(1));
    let p = ipv6::Packet::new_checked(&out[14..]).unwrap();
    assert_eq!(p.dst(), "fd01::11".parse::<Ipv6Addr>().unwrap());
    assert_eq!(p.hop_limit(), 63);
    testkit::verify_checksums(&out).unwrap();
    let reply = testkit::tcp(
        BACK_MAC,
        A_MAC,
        ip("fd01::11"),
        8080,
        ip("fd00::77"),
        5555,
        SYN | ACK,
        b"",
    );
    let (v, out) = run(&mut c, 1, &reply, 2);
    assert_eq!(v, Verdict::Tx(0));
    let p = ipv6::Packet::new_checked(&out[14..]).unwrap();
    assert_eq!(p.src(), "fd00::10".parse::<Ipv6Addr>().unwrap());
    testkit::verify_checksums(&out).unwrap();
}

#[test]
fn dsr_rewrites_only_the_macs() {
    let mut c = core();
    let f = testkit::tcp(
        FRONT_MAC,
        CLIENT_MAC,
        ip("198.51.100.7"),
        40001,
        ip("192.0.2.20"),
        80,
        SYN,
        b"",
    );
    let (v, out) = run(&mut c, 0, &f, 1);
    assert_eq!(v, Verdict::Tx(1));
    assert_eq!(&out[0..6], &B_MAC);
    assert_eq!(&out[6..12], &BACK_MAC);
    assert_eq!(&out[12..], &f[12..]);
}

#[test]
fn vlan_tagged_requests_leave_untagged() {
    let mut c = core();
    let f = testkit::tag(
        &testkit::tcp(
            FRONT_MAC,
            CLIENT_MAC,
            ip("198.51.100.7"),
            40002,
            ip("192.0.2.20"),
            80,
            SYN,
            b"",
        ),
        7,
    );
    let (v, out) = run(&mut c, 0, &f, 1);
    assert_eq!(v, Verdict::Tx(1));
    assert_eq!(&out[12..14], &[0x08, 0x00]);
    assert_eq!(&out[14..], &f[18..]);
}

#[test]
fn gue_wraps_the_ip_packet_in_udp() {
    let mut c = core();
    // The backend's path has no MAC: first the core asks for it and drops.
    let f = testkit::udp(
        FRONT_MAC,
        CLIENT_MAC,
        ip("198.51.100.7"),
        3333,
        ip("192.0.2.30"),
        53,
        b"query",
    );
    let (v, _) = run(&mut c, 0, &f, 1);
    assert_eq!(v, Verdict::Drop(DropReason::NoNeighbor));
    assert!(c
        .state
        .outbox
        .iter()
        .any(|m| matches!(m, FromWorker::NeedNeighbor(k) if k.port == 1)));
    testkit::apply_at(
        &mut c,
        testkit::neighbor(1, ip("10.1.0.13"), [2, 0, 0, 0, 1, 0x13]),
        1,
    );
    let (v, out) = run(&mut c, 0, &f, 2);
    assert_eq!(v, Verdict::Tx(1));
    assert_eq!(&out[0..6], &[2, 0, 0, 0, 1, 0x13]);
    let outer = ipv4::Packet::new_checked(&out[14..]).unwrap();
    assert_eq!(outer.protocol(), PROTO_UDP);
    assert_eq!(outer.src(), Ipv4Addr::new(10, 1, 0, 1));
    assert_eq!(outer.dst(), Ipv4Addr::new(10, 1, 0, 13));
    assert!(outer.verify_checksum());
    let udp = outer.payload();
    assert_eq!(&udp[2..4], &6080u16.to_be_bytes());
    let inner_len = usize::from(u16::from_be_bytes([f[16], f[17]]));
    assert_eq!(
        usize::from(u16::from_be_bytes([udp[4], udp[5]])),
        8 + inner_len
    );
    // GUE variant 1: the UDP payload is the original IP packet, byte for byte.
    assert_eq!(&udp[8..], &f[14..14 + inner_len]);
}

#[test]
fn answers_arp_and_icmp_for_ports_and_vips() {
    let mut c = core();
    for target in ["10.0.0.1", "192.0.2.10"] {
        let req = testkit::arp_request(
            CLIENT_MAC,
            Ipv4Addr::new(10, 0, 0, 9),
            target.parse().unwrap(),
        );
        let (v, out) = run(&mut c, 0, &req, 1);
        assert_eq!(v, Verdict::Tx(0));
        let a = arp::parse(&out[14..]).unwrap();
        assert_eq!(a.op, arp::OP_REPLY);
        assert_eq!(a.sender_mac, FRONT_MAC);
        assert_eq!(a.sender_ip.to_string(), target);
        assert_eq!(a.target_mac, CLIENT_MAC);
        assert_eq!(&out[0..6], &CLIENT_MAC);
    }
    let other = testkit::arp_request(
        CLIENT_MAC,
        Ipv4Addr::new(10, 0, 0, 9),
        Ipv4Addr::new(10, 0, 0, 77),
    );
    assert_eq!(
        run(&mut c, 0, &other, 1).0,
        Verdict::Consumed(crate::counters::Absorbed::Arp)
    );

    for dst in ["10.0.0.1", "192.0.2.10", "fd00::1", "fd00::10"] {
        let src = if dst.contains(':') {
            "fd00::9"
        } else {
            "10.0.0.9"
        };
        let echo = testkit::icmp_echo(FRONT_MAC, CLIENT_MAC, ip(src), ip(dst), 7, 1);
        let (v, out) = run(&mut c, 0, &echo, 1);
        assert_eq!(v, Verdict::Tx(0), "{dst}");
        assert_eq!(&out[0..6], &CLIENT_MAC);
        testkit::verify_checksums(&out).unwrap();
    }
    let ns = testkit::neighbor_solicit(
        CLIENT_MAC,
        "fd00::9".parse().unwrap(),
        "fd00::10".parse().unwrap(),
    );
    let (v, out) = run(&mut c, 0, &ns, 1);
    assert_eq!(v, Verdict::Tx(0));
    let nd = icmp::parse_nd(&out[54..]).unwrap();
    assert_eq!(nd.kind, icmp::V6_NEIGHBOR_ADVERT);
    assert_eq!(nd.lladdr, Some(FRONT_MAC));
    testkit::verify_checksums(&out).unwrap();
    assert_eq!(c.state.counters.icmp_replies.get(), 4);
}

#[test]
fn bad_frames_are_dropped_by_reason() {
    let mut c = core();
    let good = client_syn(40010);
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (good[..10].to_vec(), DropReason::Truncated),
        (
            {
                let mut f = good.clone();
                f[14] = 0x44;
                f
            },
            DropReason::BadIhl,
        ),
        (
            {
                let mut f = good.clone();
                f[21] = 0x01; // a later fragment, its data 8 bytes into the TCP header
                f
            },
            DropReason::FragmentOverlap,
        ),
        (
            {
                let mut f = good.clone();
                f[16..18].copy_from_slice(&2000u16.to_be_bytes());
                f
            },
            DropReason::Truncated,
        ),
        (
            {
                let mut f = good.clone();
                f[14] = 0x65;
                f
            },
            DropReason::Malformed,
        ),
        (
            testkit::tcp(
                FRONT_MAC,
                CLIENT_MAC,
                ip("198.51.100.7"),
                1,
                ip("192.0.2.10"),
                81,
                SYN,
                b"",
            ),
            DropReason::UnknownService,
        ),
        (
            testkit::tcp(
                FRONT_MAC,
                CLIENT_MAC,
                ip("198.51.100.7"),
                1,
                ip("203.0.113.1"),
                80,
                SYN,
                b"",
            ),
            DropReason::NotForUs,
        ),
        (
            testkit::tcp(
                [2, 9, 9, 9, 9, 9],
                CLIENT_MAC,
                ip("198.51.100.7"),
                1,
                ip("192.0.2.10"),
                80,
                SYN,
                b"",
            ),
            DropReason::NotForUs,
        ),
        (
            testkit::eth(FRONT_MAC, CLIENT_MAC, 0x88cc, &[0; 40]),
            DropReason::UnsupportedEthertype,
        ),
    ];
    for (f, reason) in cases {
        assert_eq!(run(&mut c, 0, &f, 1).0, Verdict::Drop(reason), "{reason:?}");
        assert!(c.state.counters.dropped(reason) > 0);
    }
}

#[test]
fn draining_backend_keeps_its_flows_and_gets_no_new_ones() {
    let mut c = core();
    let (v, _) = run(&mut c, 0, &client_syn(40020), 1);
    assert_eq!(v, Verdict::Tx(1));
    let mut cfg = Config::from_toml(CONFIG).unwrap();
    cfg.services[0].backends[0].state = BackendState::Draining;
    let drained = Arc::new(Services::from_config(
        &cfg,
        &[FRONT_MAC, BACK_MAC, BACK2_MAC],
    ));
    testkit::apply_at(&mut c, ToWorker::Services(drained), 2);
    // The existing flow still goes to its backend.
    let ack = testkit::tcp(
        FRONT_MAC,
        CLIENT_MAC,
        ip("198.51.100.7"),
        40020,
        ip("192.0.2.10"),
        80,
        ACK,
        b"",
    );
    assert_eq!(run(&mut c, 0, &ack, 3).0, Verdict::Tx(1));
    // A new one finds no active backend.
    assert_eq!(
        run(&mut c, 0, &client_syn(40021), 3).0,
        Verdict::Drop(DropReason::NoBackend)
    );
}

/// A client that reuses the source port of a closed flow starts a new flow: it is placed
/// afresh (here: away from a backend drained meanwhile), not sent after the old one.
#[test]
fn a_syn_on_a_closed_flow_starts_a_new_flow() {
    let mut cfg = Config::from_toml(CONFIG).unwrap();
    let mut b2 = cfg.services[0].backends[0].clone();
    b2.name = "a2".into();
    b2.address = ip("10.1.0.21");
    cfg.services[0].backends.push(b2);
    let macs = [FRONT_MAC, BACK_MAC, BACK2_MAC];
    let two = Arc::new(Services::from_config(&cfg, &macs));
    let mut c = core();
    testkit::apply_at(&mut c, ToWorker::Services(two), 0);
    // Find a port whose flow lands on backend a (id 0).
    let mut sport = 41000;
    loop {
        let (v, out) = run(&mut c, 0, &client_syn(sport), 1);
        assert!(matches!(v, Verdict::Tx(_)));
        if ipv4::Packet::new_checked(&out[14..]).unwrap().dst() == Ipv4Addr::new(10, 1, 0, 11) {
            break;
        }
        sport += 1;
    }
    let seg = |flags| client_segment(sport, flags);
    // A retransmitted SYN during the handshake stays with its flow.
    let (_, out) = run(&mut c, 0, &seg(SYN), 2);
    assert_eq!(
        ipv4::Packet::new_checked(&out[14..]).unwrap().dst(),
        Ipv4Addr::new(10, 1, 0, 11)
    );
    run(&mut c, 0, &seg(ACK), 3);
    run(&mut c, 0, &seg(FIN | ACK), 4);
    cfg.services[0].backends[0].state = BackendState::Draining;
    let drained = Arc::new(Services::from_config(&cfg, &macs));
    testkit::apply_at(&mut c, ToWorker::Services(drained), 5);
    // Closing, a late ACK still goes to the old backend...
    let (_, out) = run(&mut c, 0, &seg(ACK), 6);
    assert_eq!(
        ipv4::Packet::new_checked(&out[14..]).unwrap().dst(),
        Ipv4Addr::new(10, 1, 0, 11)
    );
    // ...but a new SYN on the same port is a new connection, placed on an active backend.
    let (v, out) = run(&mut c, 0, &seg(SYN), 7);
    assert!(matches!(v, Verdict::Tx(_)), "{v:?}");
    assert_eq!(
        ipv4::Packet::new_checked(&out[14..]).unwrap().dst(),
        Ipv4Addr::new(10, 1, 0, 21)
    );
}

#[test]
fn link_down_moves_flows_to_their_backup_path() {
    let mut c = core();
    // Find a flow whose primary path is "back" (port 1).
    let mut sport = 41000;
    let key = loop {
        let (v, _) = run(&mut c, 0, &client_syn(sport), 1);
        let k = FlowKey::v4([198, 51, 100, 7], [192, 0, 2, 10], sport, 80, 6);
        if v == Verdict::Tx(1) {
            break k;
        }
        sport += 1;
    };
    let rec = *c.state.table.peek(&key).unwrap();
    assert_eq!((rec.primary_path, rec.backup_path), (0, 1));
    testkit::apply_at(&mut c, ToWorker::Link { port: 1, up: false }, 2);
    let ack = testkit::tcp(
        FRONT_MAC,
        CLIENT_MAC,
        ip("198.51.100.7"),
        sport,
        ip("192.0.2.10"),
        80,
        ACK,
        b"",
    );
    let (v, out) = run(&mut c, 0, &ack, 3);
    assert_eq!(v, Verdict::Tx(2));
    assert_eq!(&out[0..6], &[2, 0, 0, 0, 2, 0x11]);
    // Same backend, same rewrite.
    assert_eq!(
        ipv4::Packet::new_checked(&out[14..]).unwrap().dst(),
        Ipv4Addr::new(10, 1, 0, 11)
    );
    testkit::apply_at(&mut c, ToWorker::Link { port: 2, up: false }, 4);
    assert_eq!(run(&mut c, 0, &ack, 5).0, Verdict::Drop(DropReason::NoPath));
}

#[test]
fn flows_spread_over_paths() {
    let mut c = core();
    let mut per_port = [0u32; 3];
    for sport in 0..2000u16 {
        if let (Verdict::Tx(p), _) = run(&mut c, 0, &client_syn(10_000 + sport), 1) {
            per_port[usize::from(p)] += 1;
        }
    }
    assert!(per_port[1] > 800 && per_port[2] > 800, "{per_port:?}");
}

#[test]
fn solicitations_are_well_formed() {
    let c = core();
    let mut buf = [0u8; 128];
    let n = c
        .build_solicit(
            1,
            &crate::flow::key::addr_bytes(ip("10.1.0.13")),
            false,
            &mut buf,
        )
        .unwrap();
    let a = arp::parse(&buf[14..n]).unwrap();
    assert_eq!(a.op, arp::OP_REQUEST);
    assert_eq!(a.sender_ip, Ipv4Addr::new(10, 1, 0, 1));
    let n = c
        .build_solicit(
            1,
            &crate::flow::key::addr_bytes(ip("fd01::11")),
            true,
            &mut buf,
        )
        .unwrap();
    testkit::verify_checksums(&buf[..n]).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// No bytes make the core panic, on any port, with or without flows around.
    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300), port in 0u8..4) {
        let mut c = core();
        run(&mut c, 0, &client_syn(1), 1);
        let _ = run(&mut c, port.min(2), &bytes, 2);
    }

    /// Valid frames with a few bytes flipped: never a panic, and whatever is sent out has
    /// the lengths it claims.
    #[test]
    fn never_panics_on_mutated_frames(seed in 0usize..6, flips in proptest::collection::vec((0usize..120, any::<u8>()), 1..6), cut in 0usize..130) {
        let frames = [
            client_syn(2),
            testkit::tcp(FRONT_MAC, CLIENT_MAC, ip("fd00::77"), 5555, ip("fd00::10"), 80, SYN, b"abc"),
            testkit::udp(FRONT_MAC, CLIENT_MAC, ip("198.51.100.7"), 3333, ip("192.0.2.30"), 53, b"query"),
            testkit::arp_request(CLIENT_MAC, Ipv4Addr::new(10, 0, 0, 9), Ipv4Addr::new(10, 0, 0, 1)),
            testkit::icmp_echo(FRONT_MAC, CLIENT_MAC, ip("fd00::9"), ip("fd00::1"), 1, 1),
            testkit::neighbor_solicit(CLIENT_MAC, "fd00::9".parse().unwrap(), "fd00::10".parse().unwrap()),
        ];
        let mut f = frames[seed].clone();
        for (at, b) in flips {
            if at < f.len() {
                f[at] = b;
            }
        }
        f.truncate(cut.max(1));
        let mut c = core();
        testkit::apply_at(&mut c, testkit::neighbor(1, ip("10.1.0.13"), [2, 0, 0, 0, 1, 0x13]), 0);
        let _ = run(&mut c, 0, &f, 1);
        let _ = run(&mut c, 1, &f, 1);
    }
}

/// Every counter a frame can land in, summed: what `show stats` adds up as `accounting`.
fn landed(c: &WorkerCounters) -> u64 {
    let absorbed: u64 = c.absorbed.iter().map(|a| a.get()).sum();
    c.sent.get() + absorbed + c.total_drops()
}

/// A mixed capture: the node's own traffic (ARP and ND asked, answered, overheard, off
/// link), echo, clients' flows, backends' replies with and without a flow, and what no one
/// should send.
fn mixed_capture() -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut back = Vec::new();
    let on_link = Ipv4Addr::new(10, 0, 0, 9);
    frames.push(testkit::arp_request(
        CLIENT_MAC,
        on_link,
        Ipv4Addr::new(10, 0, 0, 1),
    ));
    frames.push(testkit::arp_request(
        CLIENT_MAC,
        on_link,
        Ipv4Addr::new(192, 0, 2, 10),
    ));
    // Overheard: an on-link sender asking for someone else (absorbed), and an ARP reply.
    frames.push(testkit::arp_request(
        CLIENT_MAC,
        on_link,
        Ipv4Addr::new(10, 0, 0, 77),
    ));
    let mut reply = testkit::arp_request(CLIENT_MAC, on_link, Ipv4Addr::new(10, 0, 0, 1));
    reply[21] = 2;
    frames.push(reply);
    // From off the link: not ours.
    frames.push(testkit::arp_request(
        CLIENT_MAC,
        Ipv4Addr::new(10, 9, 9, 9),
        Ipv4Addr::new(10, 0, 0, 77),
    ));
    frames.push(testkit::neighbor_solicit(
        CLIENT_MAC,
        "fd00::9".parse().unwrap(),
        "fd00::1".parse().unwrap(),
    ));
    frames.push(testkit::neighbor_solicit(
        CLIENT_MAC,
        "fd00::9".parse().unwrap(),
        "fd00::77".parse().unwrap(),
    ));
    // A neighbor advertisement: the solicitation with its type changed (checksum aside,
    // the core reads the type and the target).
    let mut na = testkit::neighbor_solicit(
        CLIENT_MAC,
        "fd00::9".parse().unwrap(),
        "fd00::9".parse().unwrap(),
    );
    na[54] = 136;
    frames.push(na);
    frames.push(testkit::icmp_echo(
        FRONT_MAC,
        CLIENT_MAC,
        ip("198.51.100.7"),
        ip("192.0.2.10"),
        1,
        1,
    ));
    frames.push(testkit::icmp_echo(
        FRONT_MAC,
        CLIENT_MAC,
        ip("198.51.100.7"),
        ip("203.0.113.1"),
        1,
        1,
    ));
    for sport in 1000..1010 {
        frames.push(client_syn(sport));
        back.push(backend_segment(sport, SYN | ACK));
        frames.push(client_segment(sport, ACK));
    }
    // Replies with no flow (spoofed): deferred, not dropped, by the core.
    for dport in 5000..5005 {
        back.push(backend_segment(dport, ACK));
    }
    frames.push(testkit::udp(
        FRONT_MAC,
        CLIENT_MAC,
        ip("198.51.100.7"),
        999,
        ip("192.0.2.30"),
        53,
        b"q",
    ));
    frames.push(testkit::udp(
        FRONT_MAC,
        CLIENT_MAC,
        ip("198.51.100.7"),
        999,
        ip("192.0.2.30"),
        54,
        b"q",
    ));
    let mut frag = client_syn(2000);
    frag[20] = 0x20;
    frames.push(frag);
    frames.push(testkit::eth(FRONT_MAC, CLIENT_MAC, 0x88cc, &[0u8; 46]));
    frames.push(vec![0u8; 10]);
    frames.push(client_syn(3000)[..30].to_vec());
    let mut out: Vec<(u8, Vec<u8>)> = frames.into_iter().map(|f| (0, f)).collect();
    out.extend(back.into_iter().map(|f| (1, f)));
    out
}

#[test]
fn every_frame_lands_in_exactly_one_counter() {
    let mut c = core();
    let mut deferred = 0u64;
    let frames = mixed_capture();
    for (i, (port, f)) in frames.iter().enumerate() {
        let before = landed(&c.state.counters);
        let (v, _) = run(&mut c, *port, f, 1);
        let moved = landed(&c.state.counters) - before;
        match v {
            Verdict::Defer(_) | Verdict::Hold(_) => {
                assert_eq!(moved, 0, "frame {i}: {v:?} counted");
                deferred += 1;
            }
            _ => assert_eq!(moved, 1, "frame {i} ({v:?}) moved {moved} counters"),
        }
    }
    let cs = &c.state.counters;
    assert_eq!(frames.len() as u64, landed(cs) + deferred);
    assert_eq!(deferred, 5, "the replies with no flow");
    assert!(cs.absorbed[crate::counters::Absorbed::Arp as usize].get() >= 2);
    assert_eq!(
        cs.absorbed[crate::counters::Absorbed::NeighborAdvert as usize].get(),
        1
    );
    assert!(cs.replies() >= 4, "ARP x2, ND, echo");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Mutated frames of the mixed capture: whatever the bytes, a frame lands in one
    /// counter (or waits), never none and never two.
    #[test]
    fn mutated_frames_land_in_exactly_one_counter(
        which in 0usize..64,
        flips in proptest::collection::vec((0usize..128, any::<u8>()), 1..6),
        cut in proptest::option::of(0usize..128),
    ) {
        let frames = mixed_capture();
        let (port, mut f) = frames[which % frames.len()].clone();
        for (at, b) in flips {
            if let Some(x) = f.get_mut(at) {
                *x = b;
            }
        }
        if let Some(n) = cut {
            f.truncate(n);
        }
        let mut c = core();
        // Flows for the backends' replies to find.
        for sport in 1000..1010 {
            run(&mut c, 0, &client_syn(sport), 1);
        }
        let before = landed(&c.state.counters);
        let (v, _) = run(&mut c, port, &f, 1);
        let moved = landed(&c.state.counters) - before;
        let want = u64::from(!matches!(v, Verdict::Defer(_) | Verdict::Hold(_)));
        prop_assert_eq!(moved, want, "{:?}", v);
    }
}
