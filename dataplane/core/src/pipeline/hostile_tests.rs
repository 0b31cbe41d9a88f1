//! The second hostile campaign's findings, each with frames of its own: neighbor tables
//! strangers cannot write, martian sources, ICMP errors with impossible MTUs or from the
//! wrong side of their flow, and fragments no datagram can have.

use super::*;
use crate::counters::DropReason;
use crate::messages::{FromWorker, ToWorker};
use crate::neighbor::NeighborKey;
use crate::testkit::{self, run};
use crate::wire::ethernet::Mac;
use crate::wire::l4::{ACK, PROTO_UDP, SYN};
use crate::wire::{icmp, ipv4, ipv6};
use std::net::{IpAddr, Ipv6Addr};

const FRONT_MAC: Mac = [2, 0, 0, 0, 0, 1];
const BACK_MAC: Mac = [2, 0, 0, 0, 0, 2];
const ROUTER_MAC: Mac = [2, 0, 0, 0, 0xfe, 0xfe];
const ATTACKER_MAC: Mac = [2, 0x66, 0x66, 0x66, 0x66, 0x66];
const B_MAC: Mac = [2, 0, 0, 0, 1, 0x12];

const CONFIG: &str = r#"
[node]
id = 1
[eal]
args = []
[[port]]
name = "front"
devargs = "net_null0"
ipv4 = "10.0.0.1/24"
gateway = "10.0.0.254"
ipv6 = "fd00::1/64"
gateway6 = "fd00::fe"
[[port]]
name = "back"
devargs = "net_null1"
ipv4 = "10.1.0.1/24"
ipv6 = "fd01::1/64"
[[service]]
name = "web"
vip = "192.0.2.10"
port = 80
protocol = "tcp"
mode = "nat"
[[service.backend]]
name = "b"
address = "10.1.0.12"
port = 8080
paths = [{ port = "back", mac = "02:00:00:00:01:12" }]
[[service]]
name = "web6"
vip = "2001:db8::10"
port = 80
protocol = "tcp"
mode = "dsr"
[[service.backend]]
name = "b6"
address = "fd01::12"
paths = [{ port = "back", mac = "02:00:00:00:01:12" }]
"#;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// A node whose gateways (IPv4 and IPv6) the control thread wants and has resolved.
fn core() -> Core {
    let mut c = testkit::core_of(
        testkit::services_of(CONFIG, &[FRONT_MAC, BACK_MAC]),
        1024,
        5,
    );
    testkit::apply_at(
        &mut c,
        testkit::neighbor(0, ip("10.0.0.254"), ROUTER_MAC),
        0,
    );
    testkit::apply_at(&mut c, testkit::neighbor(0, ip("fd00::fe"), ROUTER_MAC), 0);
    c
}

fn gw4() -> NeighborKey {
    NeighborKey::v4(0, [10, 0, 0, 254])
}

fn gw6() -> NeighborKey {
    NeighborKey::new(0, true, v6("fd00::fe").octets())
}

/// A neighbor advertisement to the front port from `mac` at `from`, to `to`, for `target`
/// at `mac`, with hop limit `hop_limit`.
fn na(from: &str, to: &str, target: Ipv6Addr, mac: Mac, hop_limit: u8) -> Vec<u8> {
    testkit::neighbor_advert(FRONT_MAC, mac, (v6(from), v6(to)), target, mac, hop_limit)
}

fn neighbor_news(c: &Core) -> usize {
    c.state
        .outbox
        .iter()
        .filter(|m| matches!(m, FromWorker::Neighbor { .. }))
        .count()
}

#[test]
fn a_routed_advertisement_changes_no_next_hop() {
    let mut c = core();
    // Sent from anywhere to the IPv6 VIP, naming the gateway: routed, so its hop limit is
    // below 255.
    let adv = na(
        "2001:db8:666::1",
        "2001:db8::10",
        v6("fd00::fe"),
        ATTACKER_MAC,
        57,
    );
    assert_eq!(
        run(&mut c, 0, &adv, 1).0,
        Verdict::Drop(DropReason::NdHopLimit)
    );
    // The same with hop limit 255 (a forger's), from off the link.
    let adv = na(
        "2001:db8:666::1",
        "fd00::1",
        v6("fd00::fe"),
        ATTACKER_MAC,
        255,
    );
    assert_eq!(
        run(&mut c, 0, &adv, 2).0,
        Verdict::Drop(DropReason::NdOffLink)
    );
    assert_eq!(c.state.neighbors.get(&gw6()), Some(ROUTER_MAC));
    assert_eq!(neighbor_news(&c), 0);
    // The gateway's own advertisement, on the link, is heard.
    let adv = na(
        "fe80::fe",
        "fd00::1",
        v6("fd00::fe"),
        [2, 0, 0, 0, 0xfe, 0xff],
        255,
    );
    run(&mut c, 0, &adv, 3);
    assert_eq!(
        c.state.neighbors.get(&gw6()),
        Some([2, 0, 0, 0, 0xfe, 0xff])
    );
    assert_eq!(neighbor_news(&c), 1);
}

#[test]
fn an_ipv6_target_is_never_an_ipv4_next_hop() {
    let mut c = core();
    // a00:fe:: has the bytes of 10.0.0.254 first; it is off the port's IPv6 link.
    let adv = na("fe80::66", "fd00::1", v6("a00:fe::"), ATTACKER_MAC, 255);
    assert_eq!(
        run(&mut c, 0, &adv, 1).0,
        Verdict::Drop(DropReason::NdOffLink)
    );
    assert_eq!(c.state.neighbors.get(&gw4()), Some(ROUTER_MAC));
    // Keyed by family, an IPv6 entry with those bytes would not be the IPv4 one either.
    assert_eq!(
        c.state.neighbors.get(&NeighborKey::new(0, true, gw4().ip)),
        None
    );
}

#[test]
fn strangers_on_the_link_create_no_neighbors() {
    let mut c = core();
    let before = c.state.neighbors.len();
    for i in 0..5000u32 {
        let mut t = v6("fd00::1:0:0").octets();
        t[12..].copy_from_slice(&i.to_be_bytes());
        let adv = na("fe80::66", "fd00::1", Ipv6Addr::from(t), ATTACKER_MAC, 255);
        run(&mut c, 0, &adv, 1 + i / 100);
        // Gratuitous ARP from an on-link address the node does not need.
        let a = std::net::Ipv4Addr::from(0x0a00_0000 + (i % 200) + 2);
        let garp = testkit::arp_request(ATTACKER_MAC, a, a);
        run(&mut c, 0, &garp, 1 + i / 100);
    }
    assert_eq!(c.state.neighbors.len(), before);
    assert_eq!(c.state.counters.neighbors_unwanted.get(), 10_000);
    assert_eq!(neighbor_news(&c), 0, "nothing for the control thread");
    assert_eq!(c.state.neighbors.get(&gw4()), Some(ROUTER_MAC));
}

#[test]
fn fixed_macs_are_never_overwritten() {
    let mut c = core();
    let k = NeighborKey::v4(1, [10, 1, 0, 12]);
    testkit::apply_at(
        &mut c,
        ToWorker::Neighbor {
            key: k,
            entry: crate::neighbor::Entry::Fixed(B_MAC),
        },
        0,
    );
    let garp = testkit::arp_request(
        ATTACKER_MAC,
        "10.1.0.12".parse().unwrap(),
        "10.1.0.1".parse().unwrap(),
    );
    run(&mut c, 1, &garp, 1);
    assert_eq!(c.state.neighbors.get(&k), Some(B_MAC));
    assert_eq!(c.state.counters.neighbors_fixed_kept.get(), 1);
}

#[test]
fn martian_sources_make_no_flow_and_get_no_answer() {
    let mut c = core();
    let v4 = [
        "127.0.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "255.255.255.255",
        "10.0.0.255",
        "10.1.0.255",
        "169.254.7.7",
        "10.0.0.1",
        "10.1.0.1",
        "192.0.2.10",
        "240.0.0.1",
    ];
    let v6s = [
        "::1",
        "::",
        "ff02::1",
        "ff0e::5",
        "fe80::1",
        "::ffff:198.51.100.7",
        "fd00::1",
        "2001:db8::10",
    ];
    for (i, src) in v4.iter().enumerate() {
        let syn = testkit::tcp(
            FRONT_MAC,
            ROUTER_MAC,
            ip(src),
            40000 + i as u16,
            ip("192.0.2.10"),
            80,
            SYN,
            b"",
        );
        assert_eq!(
            run(&mut c, 0, &syn, 1).0,
            Verdict::Drop(DropReason::MartianSource),
            "{src}"
        );
        let echo = testkit::icmp_echo(FRONT_MAC, ROUTER_MAC, ip(src), ip("10.0.0.1"), 1, 1);
        assert_eq!(
            run(&mut c, 0, &echo, 1).0,
            Verdict::Drop(DropReason::MartianSource),
            "{src}"
        );
    }
    for (i, src) in v6s.iter().enumerate() {
        let syn = testkit::tcp(
            FRONT_MAC,
            ROUTER_MAC,
            ip(src),
            41000 + i as u16,
            ip("2001:db8::10"),
            80,
            SYN,
            b"",
        );
        assert_eq!(
            run(&mut c, 0, &syn, 1).0,
            Verdict::Drop(DropReason::MartianSource),
            "{src}"
        );
        let echo = testkit::icmp_echo(FRONT_MAC, ROUTER_MAC, ip(src), ip("2001:db8::10"), 1, 1);
        assert_eq!(
            run(&mut c, 0, &echo, 1).0,
            Verdict::Drop(DropReason::MartianSource),
            "{src}"
        );
    }
    assert_eq!(c.state.table.len(), 0);
    assert_eq!(c.state.counters.flows_created.get(), 0);
    // A client with a routable address is served (the check is the new flows' only).
    for (src, vip) in [
        ("198.51.100.7", "192.0.2.10"),
        ("2001:db8:1::7", "2001:db8::10"),
    ] {
        let syn = testkit::tcp(FRONT_MAC, ROUTER_MAC, ip(src), 42000, ip(vip), 80, SYN, b"");
        assert_eq!(run(&mut c, 0, &syn, 2).0, Verdict::Tx(1), "{src}");
    }
}

/// A nat flow from 198.51.100.7:40000 to the VIP, established; its SYN to the backend.
fn nat_flow(c: &mut Core) -> Vec<u8> {
    let syn = testkit::tcp(
        FRONT_MAC,
        ROUTER_MAC,
        ip("198.51.100.7"),
        40000,
        ip("192.0.2.10"),
        80,
        SYN,
        b"",
    );
    let (v, to_backend) = run(c, 0, &syn, 1);
    assert_eq!(v, Verdict::Tx(1));
    let ack = testkit::tcp(
        FRONT_MAC,
        ROUTER_MAC,
        ip("198.51.100.7"),
        40000,
        ip("192.0.2.10"),
        80,
        ACK,
        b"",
    );
    assert_eq!(run(c, 0, &ack, 1).0, Verdict::Tx(1));
    to_backend
}

/// What the VIP sent the client (a nat reply), as a router on the client's side quotes it.
fn vip_to_client() -> Vec<u8> {
    testkit::ip_l4(
        ip("192.0.2.10"),
        ip("198.51.100.7"),
        crate::wire::l4::PROTO_TCP,
        80,
        40000,
        SYN | ACK,
        b"",
    )
}

#[test]
fn impossible_mtus_are_dropped() {
    let mut c = core();
    nat_flow(&mut c);
    let q = vip_to_client();
    for mtu in [0u32, 40, 67] {
        let e = testkit::icmp_error(
            FRONT_MAC,
            ROUTER_MAC,
            ip("203.0.113.1"),
            ip("192.0.2.10"),
            icmp::DEST_UNREACHABLE,
            icmp::CODE_FRAG_NEEDED,
            mtu,
            &q,
        );
        assert_eq!(
            run(&mut c, 0, &e, 2).0,
            Verdict::Drop(DropReason::IcmpBadMtu),
            "{mtu}"
        );
    }
    let e = testkit::icmp_error(
        FRONT_MAC,
        ROUTER_MAC,
        ip("203.0.113.1"),
        ip("192.0.2.10"),
        icmp::DEST_UNREACHABLE,
        icmp::CODE_FRAG_NEEDED,
        68,
        &q,
    );
    assert_eq!(
        run(&mut c, 0, &e, 2).0,
        Verdict::Tx(1),
        "68 is every link's"
    );
    let q6 = testkit::ip_l4(
        ip("2001:db8::10"),
        ip("2001:db8:1::7"),
        crate::wire::l4::PROTO_TCP,
        80,
        40000,
        SYN | ACK,
        b"",
    );
    let e = testkit::icmp_error(
        FRONT_MAC,
        ROUTER_MAC,
        ip("2001:db8:ff::1"),
        ip("2001:db8::10"),
        icmp::V6_PACKET_TOO_BIG,
        0,
        1279,
        &q6,
    );
    assert_eq!(
        run(&mut c, 0, &e, 2).0,
        Verdict::Drop(DropReason::IcmpBadMtu)
    );
}

#[test]
fn icmp_errors_only_from_their_flows_side() {
    let mut c = core();
    let to_backend = nat_flow(&mut c);
    // About what the VIP sent the client, from the backend's side: not the client's router.
    let q = vip_to_client();
    let e = testkit::icmp_error(
        BACK_MAC,
        B_MAC,
        ip("10.1.0.99"),
        ip("192.0.2.10"),
        icmp::DEST_UNREACHABLE,
        1,
        0,
        &q,
    );
    assert_eq!(
        run(&mut c, 1, &e, 2).0,
        Verdict::Drop(DropReason::IcmpWrongSide)
    );
    // About the nat request to the backend, toward the client, from the client's side.
    let q = testkit::ip_of(&to_backend);
    let e = testkit::icmp_error(
        FRONT_MAC,
        ROUTER_MAC,
        ip("10.1.0.12"),
        ip("198.51.100.7"),
        icmp::DEST_UNREACHABLE,
        3,
        0,
        &q,
    );
    assert_eq!(
        run(&mut c, 0, &e, 2).0,
        Verdict::Drop(DropReason::IcmpWrongSide)
    );
    // The same from the backend's side reaches the client.
    let e = testkit::icmp_error(
        BACK_MAC,
        B_MAC,
        ip("10.1.0.12"),
        ip("198.51.100.7"),
        icmp::DEST_UNREACHABLE,
        3,
        0,
        &q,
    );
    assert_eq!(run(&mut c, 1, &e, 2).0, Verdict::Tx(0));
    assert_eq!(c.state.counters.icmp_to_clients.get(), 1);
}

#[test]
fn fragments_past_the_longest_datagram_and_two_fragment_headers_are_dropped() {
    let mut c = core();
    // IPv4: the last fragment at offset 65,528 with 100 bytes of data.
    let udp = testkit::udp(
        FRONT_MAC,
        ROUTER_MAC,
        ip("198.51.100.7"),
        5000,
        ip("192.0.2.10"),
        80,
        &[7u8; 92],
    );
    let mut f = udp.clone();
    {
        let ip4 = &mut f[14..];
        ip4[6..8].copy_from_slice(&(65_528u16 / 8).to_be_bytes());
        ipv4::fill_checksum(ip4);
    }
    assert_eq!(
        run(&mut c, 0, &f, 1).0,
        Verdict::Drop(DropReason::FragmentOversize)
    );
    // IPv6: two (atomic) fragment headers.
    let u6 = testkit::tcp(
        FRONT_MAC,
        ROUTER_MAC,
        ip("2001:db8:1::7"),
        5000,
        ip("2001:db8::10"),
        80,
        SYN,
        b"",
    );
    let mut f = testkit::with_ext_headers(&u6, &[(ipv6::NH_FRAGMENT, 8), (ipv6::NH_FRAGMENT, 8)]);
    for at in [14 + 40 + 2, 14 + 48 + 2] {
        f[at] = 0;
        f[at + 1] = 0;
    }
    assert_eq!(
        run(&mut c, 0, &f, 1).0,
        Verdict::Drop(DropReason::Ipv6HeaderChain)
    );
    // One atomic fragment header is fine.
    let mut f = testkit::with_ext_headers(&u6, &[(ipv6::NH_FRAGMENT, 8)]);
    f[14 + 40 + 2] = 0;
    f[14 + 40 + 3] = 0;
    assert_eq!(run(&mut c, 0, &f, 1).0, Verdict::Tx(1));
    let _ = PROTO_UDP;
}
