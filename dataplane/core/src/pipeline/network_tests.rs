//! What real networks carry besides clean 5-tuples, through the packet core: ICMP errors
//! steered by their quote in every mode (and back to clients from the backend side),
//! fragments in and out of order, IPv6 extension-header chains, packets too big to
//! encapsulate, clamped SYNs, and the malformed variants of each, dropped by reason.

use super::*;
use crate::counters::DropReason;
use crate::testkit;
use crate::wire::ethernet::Mac;
use crate::wire::icmp;
use crate::wire::ipv6::{NH_AH, NH_DEST_OPTS, NH_ESP, NH_HOP_BY_HOP, NH_ROUTING};
use crate::wire::l4::{self, ACK, PROTO_ICMP, PROTO_TCP, PROTO_UDP, SYN};
use crate::wire::{ipv4, ipv6};
use std::net::IpAddr;

const FRONT_MAC: Mac = [2, 0, 0, 0, 0, 1];
const BACK_MAC: Mac = [2, 0, 0, 0, 0, 2];
const CLIENT_MAC: Mac = [2, 0, 0, 0, 0xc, 1];
const A_MAC: Mac = [2, 0, 0, 0, 1, 0x11];
const B_MAC: Mac = [2, 0, 0, 0, 1, 0x12];
const C_MAC: Mac = [2, 0, 0, 0, 1, 0x13];
const D_MAC: Mac = [2, 0, 0, 0, 1, 0x14];
const CLIENT: &str = "198.51.100.7";
const CLIENT6: &str = "fd00::77";

const CONFIG: &str = r#"
[node]
id = 1
[eal]
args = []
[[port]]
name = "front"
devargs = "net_null0"
ipv4 = "10.0.0.1/24"
ipv6 = "fd00::1/64"
[[port]]
name = "back"
devargs = "net_null1"
ipv4 = "10.1.0.1/24"
ipv6 = "fd01::1/64"
mtu = 1500
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
paths = [{ port = "back", mac = "02:00:00:00:01:11" }]
[[service]]
name = "direct"
vip = "192.0.2.20"
port = 80
protocol = "tcp"
mode = "dsr"
[[service.backend]]
name = "b"
address = "10.1.0.12"
paths = [{ port = "back", mac = "02:00:00:00:01:12" }]
[[service]]
name = "tunnel"
vip = "192.0.2.30"
port = 53
protocol = "udp"
mode = "gue"
[[service.backend]]
name = "c"
address = "10.1.0.13"
port = 6080
paths = [{ port = "back", mac = "02:00:00:00:01:13" }]
[[service]]
name = "tunnel-tcp"
vip = "192.0.2.30"
port = 443
protocol = "tcp"
mode = "gue"
[[service.backend]]
name = "c2"
address = "10.1.0.13"
port = 6080
paths = [{ port = "back", mac = "02:00:00:00:01:13" }]
[[service]]
name = "tunnel-raw"
vip = "192.0.2.30"
port = 444
protocol = "tcp"
mode = "gue"
clamp_mss = false
[[service.backend]]
name = "c3"
address = "10.1.0.13"
port = 6080
paths = [{ port = "back", mac = "02:00:00:00:01:13" }]
[[service]]
name = "dns"
vip = "192.0.2.40"
port = 53
protocol = "udp"
mode = "nat"
[[service.backend]]
name = "d"
address = "10.1.0.14"
port = 5300
paths = [{ port = "back", mac = "02:00:00:00:01:14" }]
[[service]]
name = "tunnel6"
vip = "fd00::30"
port = 53
protocol = "udp"
mode = "gue"
[[service.backend]]
name = "c6"
address = "fd01::13"
port = 6080
paths = [{ port = "back", mac = "02:00:00:00:01:13" }]
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

fn core() -> Core {
    testkit::core_of(
        testkit::services_of(CONFIG, &[FRONT_MAC, BACK_MAC]),
        1024,
        5,
    )
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

use testkit::run;

/// A TCP segment from the client to `vip:port`.
fn to_vip(vip: &str, port: u16, sport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let client = if vip.contains(':') { CLIENT6 } else { CLIENT };
    testkit::tcp(
        FRONT_MAC,
        CLIENT_MAC,
        ip(client),
        sport,
        ip(vip),
        port,
        flags,
        payload,
    )
}

/// What a router on the client's side sends the VIP when the packet `quoted` (the VIP's
/// answer to the client) does not fit its next hop: fragmentation needed, or packet too big.
fn too_big_from_router(quoted: &[u8], mtu: u32) -> Vec<u8> {
    let q = testkit::ip_of(quoted);
    if q[0] >> 4 == 6 {
        let dst = ipv6::Packet::new_checked(&q[..]).unwrap().src();
        testkit::icmp_error(
            FRONT_MAC,
            CLIENT_MAC,
            ip("fd00::fe"),
            IpAddr::V6(dst),
            icmp::V6_PACKET_TOO_BIG,
            0,
            mtu,
            &q,
        )
    } else {
        let dst = ipv4::Packet::new_checked(&q[..]).unwrap().src();
        testkit::icmp_error(
            FRONT_MAC,
            CLIENT_MAC,
            ip("203.0.113.1"),
            IpAddr::V4(dst),
            icmp::DEST_UNREACHABLE,
            icmp::CODE_FRAG_NEEDED,
            mtu,
            &q,
        )
    }
}

/// The quote of an ICMP error frame: the quoted IP packet (as far as it goes).
fn quote_of(frame: &[u8]) -> Vec<u8> {
    let ip = testkit::ip_of(frame);
    let at = if ip[0] >> 4 == 6 { 40 } else { 20 };
    ip[at + icmp::ERROR_HEADER_LEN..].to_vec()
}

#[test]
fn frag_needed_for_a_nat_reply_reaches_its_backend_rewritten() {
    let mut c = core();
    assert_eq!(
        run(&mut c, 0, &to_vip("192.0.2.10", 80, 40000, SYN, b""), 1).0,
        Verdict::Tx(1)
    );
    // The backend's answer, as the client saw it (from the VIP), with data: too big for a
    // router on the way.
    let reply = testkit::tcp(
        CLIENT_MAC,
        FRONT_MAC,
        ip("192.0.2.10"),
        80,
        ip(CLIENT),
        40000,
        ACK,
        &[7u8; 200],
    );
    let err = too_big_from_router(&reply, 1280);
    let (v, out) = run(&mut c, 0, &err, 2);
    assert_eq!(v, Verdict::Tx(1));
    assert_eq!((&out[0..6], &out[6..12]), (&A_MAC[..], &BACK_MAC[..]));
    testkit::verify_checksums(&out).unwrap();
    let outer = ipv4::Packet::new_checked(&out[14..]).unwrap();
    assert_eq!(
        outer.src_bytes(),
        [203, 0, 113, 1],
        "the router's own address stays"
    );
    assert_eq!(outer.dst_bytes(), [10, 1, 0, 11]);
    assert_eq!(outer.ttl(), 63);
    let msg = outer.payload();
    assert_eq!(
        (msg[0], msg[1]),
        (icmp::DEST_UNREACHABLE, icmp::CODE_FRAG_NEEDED)
    );
    assert_eq!(
        &msg[6..8],
        &1280u16.to_be_bytes(),
        "the MTU is the router's"
    );
    // The quote is the packet as the backend sent it: from 10.1.0.11:8080, its IP and TCP
    // checksums right for those addresses.
    let q = quote_of(&out);
    let qip = ipv4::Packet::new_checked(&q[..]).unwrap();
    assert!(qip.verify_checksum());
    assert_eq!(
        (qip.src_bytes(), qip.dst_bytes()),
        ([10, 1, 0, 11], [198, 51, 100, 7])
    );
    assert_eq!(&qip.payload()[0..4], &[0x1f, 0x90, 0x9c, 0x40]);
    assert!(l4::verify_checksum(
        PROTO_TCP,
        &qip.src_bytes(),
        &qip.dst_bytes(),
        qip.payload()
    ));
    assert_eq!(c.state.counters.icmp_frag_needed.get(), 1);
}

#[test]
fn icmp_errors_follow_dsr_and_gue_flows_unchanged() {
    let mut c = core();
    // dsr: the error goes to the backend's MAC with its IP packet untouched.
    assert_eq!(
        run(&mut c, 0, &to_vip("192.0.2.20", 80, 40001, SYN, b""), 1).0,
        Verdict::Tx(1)
    );
    let reply = testkit::tcp(
        CLIENT_MAC,
        B_MAC,
        ip("192.0.2.20"),
        80,
        ip(CLIENT),
        40001,
        ACK,
        &[1u8; 100],
    );
    let err = too_big_from_router(&reply, 1400);
    let (v, out) = run(&mut c, 0, &err, 2);
    assert_eq!(v, Verdict::Tx(1));
    assert_eq!(&out[0..6], &B_MAC);
    assert_eq!(testkit::ip_of(&out), testkit::ip_of(&err));
    // gue: inside UDP to the backend's port, the error whole.
    let q = testkit::udp(
        FRONT_MAC,
        CLIENT_MAC,
        ip(CLIENT),
        5353,
        ip("192.0.2.30"),
        53,
        b"q",
    );
    assert_eq!(run(&mut c, 0, &q, 3).0, Verdict::Tx(1));
    let answer = testkit::udp(
        CLIENT_MAC,
        C_MAC,
        ip("192.0.2.30"),
        53,
        ip(CLIENT),
        5353,
        b"a",
    );
    let err = testkit::icmp_error(
        FRONT_MAC,
        CLIENT_MAC,
        ip(CLIENT),
        ip("192.0.2.30"),
        icmp::DEST_UNREACHABLE,
        3,
        0,
        &testkit::ip_of(&answer),
    );
    let (v, out) = run(&mut c, 0, &err, 4);
    assert_eq!(v, Verdict::Tx(1));
    assert_eq!(&out[0..6], &C_MAC);
    let outer = ipv4::Packet::new_checked(&out[14..]).unwrap();
    assert_eq!(
        (outer.dst_bytes(), outer.protocol()),
        ([10, 1, 0, 13], PROTO_UDP)
    );
    assert_eq!(&outer.payload()[2..4], &6080u16.to_be_bytes());
    assert_eq!(&outer.payload()[8..], &testkit::ip_of(&err)[..]);
    assert_eq!(c.state.counters.icmp_unreachable.get(), 1);
    assert_eq!(c.state.counters.icmp_frag_needed.get(), 1);
}

#[test]
fn packet_too_big_for_a_nat6_reply_reaches_its_backend() {
    let mut c = core();
    assert_eq!(
        run(&mut c, 0, &to_vip("fd00::10", 80, 40002, SYN, b""), 1).0,
        Verdict::Tx(1)
    );
    let reply = testkit::tcp(
        CLIENT_MAC,
        FRONT_MAC,
        ip("fd00::10"),
        80,
        ip(CLIENT6),
        40002,
        ACK,
        &[9u8; 300],
    );
    let (v, out) = run(&mut c, 0, &too_big_from_router(&reply, 1280), 2);
    assert_eq!(v, Verdict::Tx(1));
    testkit::verify_checksums(&out).unwrap();
    let outer = ipv6::Packet::new_checked(&out[14..]).unwrap();
    assert_eq!(outer.dst().to_string(), "fd01::11");
    let q = quote_of(&out);
    let qip = ipv6::Packet::new_checked(&q[..]).unwrap();
    assert_eq!(qip.src().to_string(), "fd01::11");
    assert_eq!(&qip.payload()[0..2], &8080u16.to_be_bytes());
    assert!(l4::verify_checksum(
        PROTO_TCP,
        &qip.src_bytes(),
        &qip.dst_bytes(),
        qip.payload()
    ));
    assert_eq!(c.state.counters.icmp6_too_big.get(), 1);
}

#[test]
fn a_backends_error_about_a_nat_request_reaches_the_client_as_from_the_vip() {
    let mut c = core();
    let syn = to_vip("192.0.2.10", 80, 40003, SYN, b"");
    let (v, to_backend) = run(&mut c, 0, &syn, 1);
    assert_eq!(v, Verdict::Tx(1));
    // The backend refuses (port unreachable), quoting the request as it received it.
    for (from, rewritten) in [
        ("10.1.0.11", [192, 0, 2, 10]),
        ("10.1.0.254", [10, 1, 0, 254]),
    ] {
        let err = testkit::icmp_error(
            BACK_MAC,
            A_MAC,
            ip(from),
            ip(CLIENT),
            icmp::DEST_UNREACHABLE,
            3,
            0,
            &testkit::ip_of(&to_backend),
        );
        let (v, out) = run(&mut c, 1, &err, 2);
        assert_eq!(v, Verdict::Tx(0), "from {from}");
        assert_eq!((&out[0..6], &out[6..12]), (&CLIENT_MAC[..], &FRONT_MAC[..]));
        testkit::verify_checksums(&out).unwrap();
        let outer = ipv4::Packet::new_checked(&out[14..]).unwrap();
        assert_eq!(
            (outer.src_bytes(), outer.dst_bytes()),
            (rewritten, [198, 51, 100, 7])
        );
        let q = quote_of(&out);
        let qip = ipv4::Packet::new_checked(&q[..]).unwrap();
        assert_eq!(qip.dst_bytes(), [192, 0, 2, 10]);
        assert_eq!(&qip.payload()[2..4], &80u16.to_be_bytes());
        // The client's own packet quoted back (but for the TTL nat took off, and its sum).
        assert_eq!(testkit::ip_of(&syn)[12..], q[12..]);
    }
    assert_eq!(c.state.counters.icmp_to_clients.get(), 2);
}

#[test]
fn errors_that_name_no_flow_are_dropped_by_reason() {
    let mut c = core();
    assert_eq!(
        run(&mut c, 0, &to_vip("192.0.2.10", 80, 40004, SYN, b""), 1).0,
        Verdict::Tx(1)
    );
    let reply = |sport: u16| {
        testkit::ip_of(&testkit::tcp(
            CLIENT_MAC,
            FRONT_MAC,
            ip("192.0.2.10"),
            80,
            ip(CLIENT),
            sport,
            ACK,
            b"",
        ))
    };
    let error = |quoted: &[u8]| {
        testkit::icmp_error(
            FRONT_MAC,
            CLIENT_MAC,
            ip("203.0.113.1"),
            ip("192.0.2.10"),
            icmp::TIME_EXCEEDED,
            0,
            0,
            quoted,
        )
    };
    let mut v6_quote = testkit::ip_of(&to_vip("fd00::10", 80, 1, SYN, b""));
    v6_quote.truncate(48);
    let echo = testkit::ip_of(&testkit::icmp_echo(
        CLIENT_MAC,
        FRONT_MAC,
        ip("192.0.2.10"),
        ip(CLIENT),
        1,
        1,
    ));
    let mut quoted_error = error(&reply(40004));
    quoted_error.drain(..14);
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (error(&reply(1)), DropReason::IcmpNoFlow),
        (error(&reply(40004)[..27]), DropReason::IcmpBadQuote),
        (error(&v6_quote), DropReason::IcmpBadQuote),
        (error(&echo), DropReason::IcmpAboutIcmp),
        (error(&quoted_error[..36]), DropReason::IcmpAboutIcmp),
        (error(&[]), DropReason::IcmpBadQuote),
    ];
    for (i, (f, why)) in cases.iter().enumerate() {
        assert_eq!(run(&mut c, 0, f, 2).0, Verdict::Drop(*why), "case {i}");
    }
    assert_eq!(
        c.state.counters.icmp_time_exceeded.get(),
        cases.len() as u64
    );
}

#[test]
fn fragments_of_a_nat_udp_datagram_follow_the_first_in_and_out_of_order() {
    let mut c = core();
    let big = testkit::udp(
        FRONT_MAC,
        CLIENT_MAC,
        ip(CLIENT),
        5000,
        ip("192.0.2.40"),
        53,
        &[3u8; 4000],
    );
    let frags = testkit::fragment(&big, 1480, 0x1234);
    assert_eq!(frags.len(), 3);
    // In order: each to backend d, addresses rewritten; the first's port and checksum too,
    // so the reassembled datagram's checksum is right for the new addresses.
    let mut sent = Vec::new();
    for f in &frags {
        let (v, out) = run(&mut c, 0, f, 1);
        assert_eq!(v, Verdict::Tx(1));
        assert_eq!(&out[0..6], &D_MAC);
        testkit::verify_checksums(&out).unwrap();
        assert_eq!(
            ipv4::Packet::new_checked(&out[14..]).unwrap().dst_bytes(),
            [10, 1, 0, 14]
        );
        sent.push(out);
    }
    let whole = testkit::reassemble(&sent);
    testkit::verify_ip_checksums(&whole).unwrap();
    let p = ipv4::Packet::new_checked(&whole[..]).unwrap();
    assert_eq!(&p.payload()[2..4], &5300u16.to_be_bytes());
    assert_eq!(p.payload().len(), 4008);
    assert_eq!(c.state.counters.fragments_first.get(), 1);
    assert_eq!(c.state.counters.fragments_later.get(), 2);

    // Out of order: the last fragment first waits for the first, then follows it.
    c.take_arrivals(|_| {});
    let frags = testkit::fragment(&big, 1480, 0x1235);
    let (v, _) = run(&mut c, 0, &frags[2], 2);
    let Verdict::Defer(wait) = v else {
        panic!("{v:?}")
    };
    assert_eq!(wait.expired, DropReason::FragmentTimeout);
    assert_eq!(run(&mut c, 0, &frags[0], 2).0, Verdict::Tx(1));
    let mut hints = Vec::new();
    c.take_arrivals(|h| hints.push(h));
    assert_eq!(
        hints,
        vec![wait.hint],
        "the first fragment wakes what waits for it"
    );
    let mut buf = vec![0u8; 2048];
    buf[128..128 + frags[2].len()].copy_from_slice(&frags[2]);
    let mut p = PacketBuf {
        buf: &mut buf,
        start: 128,
        len: frags[2].len(),
        handle: 0,
    };
    assert_eq!(c.process_again(0, &mut p), Verdict::Tx(1));
    assert_eq!(c.state.counters.fragments_early.get(), 1);
    // Its first never came: it waits, and (the port layer's clock) expires.
    let lone = testkit::fragment(&big, 1480, 0x1236);
    assert!(matches!(run(&mut c, 0, &lone[1], 3).0, Verdict::Defer(_)));
    // Past the table's timeout the first's ports are forgotten.
    let t = 3 + crate::flow::fragments::TIMEOUT_MS;
    assert!(matches!(run(&mut c, 0, &frags[1], t).0, Verdict::Defer(_)));
}

#[test]
fn ipv6_fragments_and_extension_headers_are_walked_to_the_flow() {
    let mut c = core();
    let seg = to_vip("fd00::10", 80, 40005, ACK, &[5u8; 2000]);
    let frags = testkit::fragment(&seg, 1232, 0xdead_beef);
    let mut sent = Vec::new();
    for f in &frags {
        let (v, out) = run(&mut c, 0, f, 1);
        assert_eq!(v, Verdict::Tx(1));
        assert_eq!(
            ipv6::Packet::new_checked(&out[14..])
                .unwrap()
                .dst()
                .to_string(),
            "fd01::11"
        );
        sent.push(out);
    }
    let whole = testkit::reassemble(&sent);
    testkit::verify_ip_checksums(&whole).unwrap();
    assert_eq!(&whole[42..44], &8080u16.to_be_bytes());
    // A SYN behind hop-by-hop and destination options: served, its checksum right.
    let syn = to_vip("fd00::10", 80, 40006, SYN, b"");
    let chained = testkit::with_ext_headers(&syn, &[(NH_HOP_BY_HOP, 8), (NH_DEST_OPTS, 16)]);
    let (v, out) = run(&mut c, 0, &chained, 2);
    assert_eq!(v, Verdict::Tx(1));
    testkit::verify_checksums(&out).unwrap();
    assert_eq!(
        &out[14 + 40 + 24 + 2..14 + 40 + 24 + 4],
        &8080u16.to_be_bytes()
    );
    // What the walk will not cross, by name.
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (
            testkit::with_ext_headers(&syn, &[(NH_DEST_OPTS, 8)])
                .into_iter()
                .enumerate()
                .map(|(i, b)| if i == 54 { NH_AH } else { b })
                .collect(),
            DropReason::Ipv6Ah,
        ),
        (
            testkit::with_ext_headers(&syn, &[(NH_DEST_OPTS, 8)])
                .into_iter()
                .enumerate()
                .map(|(i, b)| if i == 54 { NH_ESP } else { b })
                .collect(),
            DropReason::Ipv6Esp,
        ),
        (
            testkit::with_ext_headers(&syn, &[(NH_DEST_OPTS, 8)])
                .into_iter()
                .enumerate()
                .map(|(i, b)| if i == 54 { 135 } else { b })
                .collect(),
            DropReason::Ipv6UnknownHeader,
        ),
        (
            testkit::with_ext_headers(&syn, &[(NH_DEST_OPTS, 8); 7]),
            DropReason::Ipv6HeaderChain,
        ),
        (
            testkit::with_ext_headers(&syn, &[(NH_DEST_OPTS, 8), (NH_HOP_BY_HOP, 8)]),
            DropReason::Ipv6HeaderChain,
        ),
        (
            testkit::with_ext_headers(&syn, &[(NH_ROUTING, 24)])
                .into_iter()
                .enumerate()
                .map(|(i, b)| if i == 57 { 1 } else { b })
                .collect(),
            DropReason::Ipv6Routing,
        ),
    ];
    for (i, (f, why)) in cases.iter().enumerate() {
        assert_eq!(run(&mut c, 0, f, 3).0, Verdict::Drop(*why), "case {i}");
    }
}

#[test]
fn hostile_fragments_are_dropped_by_reason_and_a_flood_harms_no_flow() {
    let mut c = core();
    let est = to_vip("192.0.2.10", 80, 40007, SYN, b"");
    assert_eq!(run(&mut c, 0, &est, 1).0, Verdict::Tx(1));
    let big = to_vip("192.0.2.10", 80, 40008, ACK, &[1u8; 100]);
    // A first fragment of 8 bytes: short of TCP's header.
    let tiny = testkit::fragment(&big, 8, 1);
    assert_eq!(
        run(&mut c, 0, &tiny[0], 2).0,
        Verdict::Drop(DropReason::FragmentTiny)
    );
    // A later fragment whose data starts inside TCP's header.
    assert_eq!(
        run(&mut c, 0, &tiny[1], 2).0,
        Verdict::Drop(DropReason::FragmentOverlap)
    );
    // Fragments of ICMP are not a flow's.
    let ping = testkit::icmp_echo(FRONT_MAC, CLIENT_MAC, ip(CLIENT), ip("192.0.2.10"), 1, 1);
    let pf = testkit::fragment(&ping, 8, 2);
    assert_eq!(
        run(&mut c, 0, &pf[0], 2).0,
        Verdict::Drop(DropReason::FragmentUnsupported)
    );
    // A flood of first fragments: the table stays bounded, the oldest entries go, and
    // the established flow is untouched.
    let n = crate::flow::fragments::CAPACITY as u32 * 2;
    for i in 0..n {
        let f = testkit::fragment(&big, 64, 1000 + i);
        let _ = run(&mut c, 0, &f[0], 3);
    }
    assert!(c.state.counters.fragments_evicted.get() >= u64::from(n) / 2);
    let (v, out) = run(&mut c, 0, &to_vip("192.0.2.10", 80, 40007, ACK, b"x"), 4);
    assert_eq!(v, Verdict::Tx(1));
    testkit::verify_checksums(&out).unwrap();
}

#[test]
fn too_big_to_encapsulate_is_answered_with_the_mtu_that_fits() {
    let mut c = core();
    // 1472 bytes of UDP payload: a 1500-byte packet, 1528 once in GUE.
    let mut big = testkit::udp(
        FRONT_MAC,
        CLIENT_MAC,
        ip(CLIENT),
        5353,
        ip("192.0.2.30"),
        53,
        &[0u8; 1472],
    );
    let (v, out) = run(&mut c, 0, &big, 1);
    assert_eq!(v, Verdict::Tx(0), "answered out of the port it came in on");
    assert_eq!((&out[0..6], &out[6..12]), (&CLIENT_MAC[..], &FRONT_MAC[..]));
    testkit::verify_checksums(&out).unwrap();
    let ans = ipv4::Packet::new_checked(&out[14..]).unwrap();
    assert_eq!(
        (ans.src_bytes(), ans.dst_bytes()),
        ([192, 0, 2, 30], [198, 51, 100, 7])
    );
    assert_eq!(ans.protocol(), PROTO_ICMP);
    assert_eq!(ans.total_len(), 576, "an IPv4 error is at most 576 bytes");
    let m = ans.payload();
    assert_eq!(
        (m[0], m[1]),
        (icmp::DEST_UNREACHABLE, icmp::CODE_FRAG_NEEDED)
    );
    assert_eq!(&m[6..8], &1472u16.to_be_bytes(), "1500 less GUE's 28 bytes");
    assert_eq!(
        &m[8..28],
        &testkit::ip_of(&big)[..20],
        "the quote starts with its header"
    );
    // One that fits goes.
    let fits = testkit::udp(
        FRONT_MAC,
        CLIENT_MAC,
        ip(CLIENT),
        5353,
        ip("192.0.2.30"),
        53,
        &[0u8; 1444],
    );
    assert_eq!(run(&mut c, 0, &fits, 1).0, Verdict::Tx(1));
    // Without DF it may not be answered (tandem does not fragment).
    big[20] &= !0x40;
    ipv4::fill_checksum(&mut big[14..]);
    assert_eq!(
        run(&mut c, 0, &big, 1).0,
        Verdict::Drop(DropReason::TooBigUnanswered)
    );
    big[20] |= 0x40;
    ipv4::fill_checksum(&mut big[14..]);
    // Rate-limited: a burst of 50 a worker, then one a millisecond.
    let answered = (0..100)
        .filter(|_| matches!(run(&mut c, 0, &big, 1).0, Verdict::Tx(0)))
        .count();
    assert_eq!(answered, 49, "the burst, less the first answer");
    assert_eq!(run(&mut c, 0, &big, 2).0, Verdict::Tx(0));
    assert_eq!(c.state.counters.too_big_answered.get(), 51);
}

#[test]
fn too_big_for_gue_over_ipv6_is_answered_with_packet_too_big() {
    let mut c = core();
    // 1452 bytes of UDP payload: a 1500-byte IPv6 packet, 1548 in GUE over IPv6.
    let big = testkit::udp(
        FRONT_MAC,
        CLIENT_MAC,
        ip(CLIENT6),
        5353,
        ip("fd00::30"),
        53,
        &[0u8; 1452],
    );
    let (v, out) = run(&mut c, 0, &big, 1);
    assert_eq!(v, Verdict::Tx(0));
    testkit::verify_checksums(&out).unwrap();
    let ans = ipv6::Packet::new_checked(&out[14..]).unwrap();
    assert_eq!(
        (ans.src().to_string(), ans.dst().to_string()),
        ("fd00::30".into(), CLIENT6.into())
    );
    assert_eq!(ans.next_header(), crate::wire::l4::PROTO_ICMPV6);
    assert_eq!(
        40 + ans.payload_len(),
        1280,
        "an IPv6 error is at most 1280 bytes"
    );
    let m = ans.payload();
    assert_eq!(m[0], icmp::V6_PACKET_TOO_BIG);
    assert_eq!(
        &m[4..8],
        &1452u32.to_be_bytes(),
        "1500 less 48 bytes of GUE over IPv6"
    );
    assert_eq!(&m[8..48], &testkit::ip_of(&big)[..40]);
    let fits = testkit::udp(
        FRONT_MAC,
        CLIENT_MAC,
        ip(CLIENT6),
        5353,
        ip("fd00::30"),
        53,
        &[0u8; 1404],
    );
    assert_eq!(run(&mut c, 0, &fits, 1).0, Verdict::Tx(1));
}

/// A SYN with an MSS option of `mss` from the client to `vip:port`.
fn syn_with_mss(port: u16, sport: u16, mss: u16) -> Vec<u8> {
    let mut ipb = testkit::ip_l4(
        ip(CLIENT),
        ip("192.0.2.30"),
        PROTO_TCP,
        sport,
        port,
        SYN,
        &[],
    );
    ipb.extend_from_slice(&[2, 4, (mss >> 8) as u8, mss as u8]);
    ipb[2..4].copy_from_slice(&44u16.to_be_bytes());
    ipb[32] = 6 << 4;
    ipv4::fill_checksum(&mut ipb);
    let (s, d) = ([198, 51, 100, 7], [192, 0, 2, 30]);
    l4::fill_checksum(PROTO_TCP, &s, &d, &mut ipb[20..]);
    testkit::eth(FRONT_MAC, CLIENT_MAC, 0x0800, &ipb)
}

#[test]
fn syns_carried_in_gue_have_their_mss_clamped_unless_turned_off() {
    let mut c = core();
    let (v, out) = run(&mut c, 0, &syn_with_mss(443, 40009, 1460), 1);
    assert_eq!(v, Verdict::Tx(1));
    let inner = &out[14 + 28..];
    testkit::verify_ip_checksums(inner).unwrap();
    // 1500 less GUE's 28, the inner IP and TCP headers: 1432.
    assert_eq!(&inner[40 + 2..40 + 4], &1432u16.to_be_bytes());
    assert_eq!(c.state.counters.mss_clamped.get(), 1);
    // A smaller MSS stays; a service with clamp_mss = false is left alone.
    let (_, out) = run(&mut c, 0, &syn_with_mss(443, 40010, 1200), 1);
    assert_eq!(&out[14 + 28 + 42..14 + 28 + 44], &1200u16.to_be_bytes());
    let (_, out) = run(&mut c, 0, &syn_with_mss(444, 40011, 1460), 1);
    assert_eq!(&out[14 + 28 + 42..14 + 28 + 44], &1460u16.to_be_bytes());
    assert_eq!(c.state.counters.mss_clamped.get(), 1);
}
