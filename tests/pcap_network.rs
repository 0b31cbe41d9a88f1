//! Golden tests, through real DPDK ports (net_pcap), of what real networks carry besides
//! clean 5-tuples: ICMP errors steered to the flow's backend in nat, dsr and gue mode and
//! back to the client from a nat backend; IPv4 and IPv6 fragments in order and out of
//! order (the later ones parked by the worker until their first comes); extension-header
//! chains; a packet too big to encapsulate answered with fragmentation needed; a SYN's MSS
//! clamped; and the hostile variants, each dropped under its reason. Checked field by field,
//! checksums recomputed.

mod common;

use common::*;
use std::net::IpAddr;
use std::time::Duration;
use tandem_dataplane::testkit;
use tandem_dataplane::wire::ipv6::{NH_AH, NH_DEST_OPTS, NH_ESP, NH_HOP_BY_HOP};
use tandem_dataplane::wire::l4::{self, ACK, PROTO_ICMP, PROTO_TCP, PROTO_UDP, SYN};
use tandem_dataplane::wire::{icmp, ipv4, ipv6};

const FRONT: [u8; 6] = [2, 0, 0, 0, 0, 1];
const BACK: [u8; 6] = [2, 0, 0, 0, 0, 2];
const CLIENT: [u8; 6] = [2, 0, 0, 0, 0xc, 1];
const A: [u8; 6] = [2, 0, 0, 0, 1, 0x11];
const B: [u8; 6] = [2, 0, 0, 0, 1, 0x12];
const C: [u8; 6] = [2, 0, 0, 0, 1, 0x13];
const D: [u8; 6] = [2, 0, 0, 0, 1, 0x14];
const CL: &str = "198.51.100.7";
const CL6: &str = "fd00::77";
const ROUTER: &str = "203.0.113.1";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn config(s: &Scratch, prefix: &str) -> String {
    format!(
        r#"
{header}[[port]]
name = "front"
devargs = "net_pcap0,rx_pcap={fin},tx_pcap={fout}"
mac = "02:00:00:00:00:01"
ipv4 = "10.0.0.1/24"
ipv6 = "fd00::1/64"
[[port]]
name = "back"
devargs = "net_pcap1,rx_pcap={bin},tx_pcap={bout}"
mac = "02:00:00:00:00:02"
ipv4 = "10.1.0.1/24"
ipv6 = "fd01::1/64"
mtu = 1500
[mempool]
mbufs = 4095
[workers]
cores = [1]
idle_sleep = "100us"
[flows]
capacity = 1024
[control]
socket = "{sock}"
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
[[service]]
name = "direct"
vip = "192.0.2.20"
port = 80
protocol = "tcp"
mode = "dsr"
[[service.backend]]
name = "b"
address = "10.1.0.12"
paths = [{{ port = "back", mac = "02:00:00:00:01:12" }}]
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
paths = [{{ port = "back", mac = "02:00:00:00:01:13" }}]
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
paths = [{{ port = "back", mac = "02:00:00:00:01:13" }}]
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
paths = [{{ port = "back", mac = "02:00:00:00:01:14" }}]
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
paths = [{{ port = "back", mac = "02:00:00:00:01:11" }}]
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
paths = [{{ port = "back", mac = "02:00:00:00:01:13" }}]
"#,
        header = node_header(1, 256, prefix),
        fin = s.path("front-in.pcap").display(),
        fout = s.path("front-out.pcap").display(),
        bin = s.path("back-in.pcap").display(),
        bout = s.path("back-out.pcap").display(),
        sock = s.path("ctl.sock").display(),
    )
}

fn tcp_to(vip: &str, port: u16, sport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let src = if vip.contains(':') { CL6 } else { CL };
    testkit::tcp(FRONT, CLIENT, ip(src), sport, ip(vip), port, flags, payload)
}

/// The VIP's answer to the client, as a router past the node saw it.
fn answer(vip: &str, port: u16, dport: u16, proto: u8, len: usize) -> Vec<u8> {
    let dst = if vip.contains(':') { CL6 } else { CL };
    testkit::ip_of(&if proto == PROTO_TCP {
        testkit::tcp(
            CLIENT,
            FRONT,
            ip(vip),
            port,
            ip(dst),
            dport,
            ACK,
            &vec![7; len],
        )
    } else {
        testkit::udp(CLIENT, FRONT, ip(vip), port, ip(dst), dport, &vec![7; len])
    })
}

/// A router's error about `quoted` to its source.
fn error_to(to: &str, msg_type: u8, code: u8, mtu: u32, quoted: &[u8]) -> Vec<u8> {
    let from = if to.contains(':') { "fd00::fe" } else { ROUTER };
    testkit::icmp_error(FRONT, CLIENT, ip(from), ip(to), msg_type, code, mtu, quoted)
}

/// `frame` with the byte at `at` set to `v`.
fn with(frame: &[u8], at: usize, v: u8) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[at] = v;
    f
}

fn syn_with_mss(sport: u16, mss: u16) -> Vec<u8> {
    let mut p = testkit::ip_l4(ip(CL), ip("192.0.2.30"), PROTO_TCP, sport, 443, SYN, &[]);
    p.extend_from_slice(&[2, 4, (mss >> 8) as u8, mss as u8]);
    p[2..4].copy_from_slice(&44u16.to_be_bytes());
    p[32] = 6 << 4;
    ipv4::fill_checksum(&mut p);
    l4::fill_checksum(
        PROTO_TCP,
        &[198, 51, 100, 7],
        &[192, 0, 2, 30],
        &mut p[20..],
    );
    testkit::eth(FRONT, CLIENT, 0x0800, &p)
}

/// The outgoing frames whose IP packet passes `f`.
fn select(frames: &[Vec<u8>], f: impl Fn(&[u8]) -> bool) -> Vec<&Vec<u8>> {
    frames
        .iter()
        .filter(|fr| fr[12..14] != [8, 6] && f(&testkit::ip_of(fr)))
        .collect()
}

fn v4_dst(p: &[u8]) -> Option<[u8; 4]> {
    (p[0] >> 4 == 4).then(|| ipv4::Packet::new_checked(p).unwrap().dst_bytes())
}

#[test]
fn pcap_network_icmp_fragments_extension_headers_and_mtu() {
    let s = Scratch::new("pcapnet");
    let dgram = testkit::udp(
        FRONT,
        CLIENT,
        ip(CL),
        5000,
        ip("192.0.2.40"),
        53,
        &[3u8; 4000],
    );
    let in_order = testkit::fragment(&dgram, 1480, 0x1111);
    let out_of_order = testkit::fragment(&dgram, 1480, 0x2222);
    let seg6 = tcp_to("fd00::10", 80, 40006, ACK, &[5u8; 2000]);
    let frags6 = testkit::fragment(&seg6, 1232, 0xabcd_0001);
    let syn6 = tcp_to("fd00::10", 80, 40007, SYN, b"");
    let chain6 = testkit::with_ext_headers(&syn6, &[(NH_HOP_BY_HOP, 8), (NH_DEST_OPTS, 16)]);
    let one_opt = testkit::with_ext_headers(&syn6, &[(NH_DEST_OPTS, 8)]);
    let mut oversize = testkit::udp(
        FRONT,
        CLIENT,
        ip(CL),
        5353,
        ip("192.0.2.30"),
        53,
        &[0; 1472],
    );
    oversize[20] |= 0x40; // DF (already set by the builder; said for the reader)
    let oversize6 = testkit::udp(FRONT, CLIENT, ip(CL6), 5353, ip("fd00::30"), 53, &[0; 1452]);
    let tiny = testkit::fragment(&tcp_to("192.0.2.10", 80, 40009, ACK, &[1; 100]), 8, 0x3333);
    let nat_answer = answer("192.0.2.10", 80, 40000, PROTO_TCP, 200);
    let front_in: Vec<Vec<u8>> = vec![
        tcp_to("192.0.2.10", 80, 40000, SYN, b""), // 0: nat flow
        tcp_to("192.0.2.20", 80, 40001, SYN, b""), // 1: dsr flow
        testkit::udp(FRONT, CLIENT, ip(CL), 5353, ip("192.0.2.30"), 53, b"q"), // 2: gue flow
        tcp_to("fd00::10", 80, 40002, SYN, b""),   // 3: nat6 flow
        error_to(
            "192.0.2.10",
            icmp::DEST_UNREACHABLE,
            icmp::CODE_FRAG_NEEDED,
            1280,
            &nat_answer,
        ), // 4
        error_to(
            "192.0.2.20",
            icmp::DEST_UNREACHABLE,
            icmp::CODE_FRAG_NEEDED,
            1400,
            &answer("192.0.2.20", 80, 40001, PROTO_TCP, 100),
        ), // 5
        error_to(
            "192.0.2.30",
            icmp::TIME_EXCEEDED,
            0,
            0,
            &answer("192.0.2.30", 53, 5353, PROTO_UDP, 20),
        ), // 6
        error_to(
            "fd00::10",
            icmp::V6_PACKET_TOO_BIG,
            0,
            1280,
            &answer("fd00::10", 80, 40002, PROTO_TCP, 300),
        ), // 7
        in_order[0].clone(),                       // 8..10: in order
        in_order[1].clone(),
        in_order[2].clone(),
        out_of_order[2].clone(), // 11..13: last first
        out_of_order[1].clone(),
        out_of_order[0].clone(),
        frags6[0].clone(), // 14, 15
        frags6[1].clone(),
        chain6,                    // 16
        oversize.clone(),          // 17: too big for GUE
        syn_with_mss(40008, 1460), // 18: clamped
        oversize6.clone(),         // 19: too big for GUE over IPv6
        // Hostile: 20 on.
        with(&one_opt, 54, NH_AH),
        with(&one_opt, 54, NH_ESP),
        with(&one_opt, 54, 135),
        testkit::with_ext_headers(&syn6, &[(NH_DEST_OPTS, 8); 7]),
        tiny[0].clone(),
        tiny[1].clone(),
        error_to(
            "192.0.2.10",
            icmp::TIME_EXCEEDED,
            0,
            0,
            &answer("192.0.2.10", 80, 1, PROTO_TCP, 0),
        ),
        error_to("192.0.2.10", icmp::TIME_EXCEEDED, 0, 0, &nat_answer[..27]),
    ];
    assert!(
        front_in.len() <= 32,
        "one burst: the back port's frame comes after"
    );
    write_pcap(&s.path("front-in.pcap"), &front_in);
    // Read after the front burst: backend a refuses the nat flow's SYN (as it received it).
    let mut syn_at_backend = testkit::ip_of(&front_in[0]);
    syn_at_backend[16..20].copy_from_slice(&[10, 1, 0, 11]);
    syn_at_backend[8] = 63;
    syn_at_backend[22..24].copy_from_slice(&8080u16.to_be_bytes());
    ipv4::fill_checksum(&mut syn_at_backend);
    l4::fill_checksum(
        PROTO_TCP,
        &[198, 51, 100, 7],
        &[10, 1, 0, 11],
        &mut syn_at_backend[20..],
    );
    let refusal = testkit::icmp_error(
        BACK,
        A,
        ip("10.1.0.11"),
        ip(CL),
        icmp::DEST_UNREACHABLE,
        3,
        0,
        &syn_at_backend,
    );
    write_pcap(&s.path("back-in.pcap"), &[refusal]);
    let cfg = s.path("tandem.toml");
    std::fs::write(&cfg, config(&s, &unique("tpnet"))).unwrap();
    let mut node = Node::start(&cfg, &s.path("ctl.sock"), None);
    node.wait_stats(
        "every frame served or dropped",
        Duration::from_secs(30),
        |st| {
            st["ports"][0]["rx"].as_u64() == Some(front_in.len() as u64)
                && st["ports"][1]["rx"].as_u64() == Some(1)
                && st["workers"][0]["waiting"].as_u64() == Some(0)
        },
    );
    let stats = node.stop();
    let front_out = read_pcap(&s.path("front-out.pcap"));
    let back_out = read_pcap(&s.path("back-out.pcap"));
    for f in front_out
        .iter()
        .chain(&back_out)
        .filter(|f| f[12..14] != [8, 6])
    {
        testkit::verify_checksums(f).unwrap();
    }

    // ICMP, nat: the error to backend a, its outer destination and quote rewritten.
    let to_a = select(&back_out, |p| {
        v4_dst(p) == Some([10, 1, 0, 11]) && p[9] == PROTO_ICMP
    });
    assert_eq!(to_a.len(), 1);
    let e = ipv4::Packet::new_checked(&to_a[0][14..]).unwrap();
    assert_eq!(&to_a[0][0..6], &A);
    assert_eq!(e.src_bytes(), [203, 0, 113, 1]);
    let m = e.payload();
    assert_eq!((m[0], m[1], &m[6..8]), (3, 4, &1280u16.to_be_bytes()[..]));
    let q = ipv4::Packet::new_checked(&m[8..]).unwrap();
    assert!(q.verify_checksum());
    assert_eq!(
        (q.src_bytes(), &q.payload()[0..2]),
        ([10, 1, 0, 11], &8080u16.to_be_bytes()[..])
    );
    assert!(l4::verify_checksum(
        PROTO_TCP,
        &q.src_bytes(),
        &q.dst_bytes(),
        q.payload()
    ));
    // dsr: to b's MAC, the IP packet as it came.
    let to_b = select(&back_out, |p| {
        p[9] == PROTO_ICMP && v4_dst(p) == Some([192, 0, 2, 20])
    });
    assert_eq!(to_b.len(), 1);
    assert_eq!(&to_b[0][0..6], &B);
    assert_eq!(testkit::ip_of(to_b[0]), testkit::ip_of(&front_in[5]));
    // gue: inside UDP to c:6080.
    let to_c: Vec<_> = select(&back_out, |p| v4_dst(p) == Some([10, 1, 0, 13]))
        .into_iter()
        .filter(|f| f[14 + 28 + 9] == PROTO_ICMP)
        .collect();
    assert_eq!(to_c.len(), 1);
    assert_eq!(&to_c[0][0..6], &C);
    assert_eq!(&to_c[0][14 + 28..], &testkit::ip_of(&front_in[6])[..]);
    // nat6: packet too big to a6, ICMPv6 checksum over the new pseudo header.
    let to_a6 = select(&back_out, |p| p[0] >> 4 == 6 && p[6] == 58);
    assert_eq!(to_a6.len(), 1);
    let e6 = ipv6::Packet::new_checked(&to_a6[0][14..]).unwrap();
    assert_eq!(e6.dst().to_string(), "fd01::11");
    assert_eq!(e6.payload()[0], icmp::V6_PACKET_TOO_BIG);
    assert_eq!(
        ipv6::Packet::new_checked(&e6.payload()[8..])
            .unwrap()
            .src()
            .to_string(),
        "fd01::11"
    );

    // Backend a's refusal reaches the client from the VIP, quoting the client's packet.
    let to_client = select(&front_out, |p| {
        p[9] == PROTO_ICMP && p[20] == 3 && p[21] == 3
    });
    assert_eq!(to_client.len(), 1);
    let r = ipv4::Packet::new_checked(&to_client[0][14..]).unwrap();
    assert_eq!(
        (r.src_bytes(), r.dst_bytes()),
        ([192, 0, 2, 10], [198, 51, 100, 7])
    );
    let rq = ipv4::Packet::new_checked(&r.payload()[8..]).unwrap();
    assert_eq!(
        (rq.dst_bytes(), &rq.payload()[2..4]),
        ([192, 0, 2, 10], &80u16.to_be_bytes()[..])
    );

    // Fragments: both datagrams whole at d (the second's last fragment waited for its
    // first), each reassembled with a right checksum to d's address and port.
    for ident in [0x1111u16, 0x2222] {
        let frags: Vec<Vec<u8>> = select(&back_out, |p| {
            v4_dst(p) == Some([10, 1, 0, 14]) && p[4..6] == ident.to_be_bytes()
        })
        .into_iter()
        .cloned()
        .collect();
        assert_eq!(frags.len(), 3, "ident {ident:#x}");
        assert!(frags.iter().all(|f| f[0..6] == D));
        let whole = testkit::reassemble(&frags);
        testkit::verify_ip_checksums(&whole).unwrap();
        assert_eq!(&whole[22..24], &5300u16.to_be_bytes());
        assert_eq!(whole.len(), 20 + 8 + 4000);
    }
    // IPv6 fragments whole at a6; the SYN behind two extension headers too.
    let v6_to_a6: Vec<Vec<u8>> = select(&back_out, |p| p[0] >> 4 == 6 && p[6] == 44)
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(v6_to_a6.len(), 2);
    let whole6 = testkit::reassemble(&v6_to_a6);
    testkit::verify_ip_checksums(&whole6).unwrap();
    assert_eq!(&whole6[42..44], &8080u16.to_be_bytes());
    let chained = select(&back_out, |p| p[0] >> 4 == 6 && p[6] == NH_HOP_BY_HOP);
    assert_eq!(chained.len(), 1);
    assert_eq!(
        &chained[0][14 + 40 + 24 + 2..14 + 40 + 24 + 4],
        &8080u16.to_be_bytes()
    );

    // Too big for GUE: fragmentation needed back to the client, naming 1500 - 28.
    let ptb = select(&front_out, |p| {
        p[9] == PROTO_ICMP && p[20] == 3 && p[21] == 4
    });
    assert_eq!(ptb.len(), 1);
    let a = ipv4::Packet::new_checked(&ptb[0][14..]).unwrap();
    assert_eq!(
        (a.src_bytes(), a.dst_bytes()),
        ([192, 0, 2, 30], [198, 51, 100, 7])
    );
    assert_eq!(&a.payload()[6..8], &1472u16.to_be_bytes());
    assert_eq!(&a.payload()[8..28], &testkit::ip_of(&oversize)[..20]);
    assert_eq!(a.total_len(), 576);
    // Over IPv6: packet too big, naming 1500 - 48, the error 1280 bytes.
    let ptb6 = select(&front_out, |p| p[0] >> 4 == 6 && p[6] == 58 && p[40] == 2);
    assert_eq!(ptb6.len(), 1);
    let a6 = ipv6::Packet::new_checked(&ptb6[0][14..]).unwrap();
    assert_eq!(a6.src().to_string(), "fd00::30");
    assert_eq!(&a6.payload()[4..8], &1452u32.to_be_bytes());
    assert_eq!(40 + a6.payload_len(), 1280);
    // The SYN carried in GUE, its MSS lowered to 1432.
    let syn = select(&back_out, |p| v4_dst(p) == Some([10, 1, 0, 13]))
        .into_iter()
        .find(|f| f[14 + 28 + 9] == PROTO_TCP)
        .expect("the gue SYN");
    let inner = &syn[14 + 28..];
    testkit::verify_ip_checksums(inner).unwrap();
    assert_eq!(&inner[42..44], &1432u16.to_be_bytes());

    // Counted: each kind, and every hostile frame under its reason.
    let w = &stats["workers"][0];
    for (counter, n) in [
        ("icmp_frag_needed", 2),
        ("icmp_time_exceeded", 3),
        ("icmp6_too_big", 1),
        ("icmp_unreachable", 1),
        ("icmp_to_clients", 1),
        ("fragments_first", 3),
        ("fragments_later", 5),
        ("fragments_early", 2),
        ("too_big_answered", 2),
        ("mss_clamped", 1),
    ] {
        assert_eq!(w[counter].as_u64(), Some(n), "{counter}: {w}");
    }
    let drops = &stats["drops"];
    for (reason, n) in [
        ("ipv6_ah", 1),
        ("ipv6_esp", 1),
        ("ipv6_unknown_header", 1),
        ("ipv6_header_chain", 1),
        ("fragment_tiny", 1),
        ("fragment_overlap", 1),
        ("icmp_no_flow", 1),
        ("icmp_bad_quote", 1),
    ] {
        assert_eq!(drops[reason].as_u64(), Some(n), "{reason}: {drops}");
    }
}

/// The far side of "across two nodes": node 1 (not running here) took a flow's SYN and a
/// router's fragmentation needed for it, and sent both on to the flow's primary, node 2,
/// encapsulated with the node header. Node 2, on net_pcap, serves the SYN and steers the
/// error to the flow's backend, rewritten as in nat. (Node 1's side, sending the error on
/// to the primary, is `an_icmp_error_reaches_the_flows_primary_and_its_backend` in the
/// packet core: through net_pcap, a node ranks peers only once their heartbeats come,
/// after the capture has been read.)
#[test]
fn pcap_network_an_icmp_error_sent_on_by_another_node() {
    use tandem_dataplane::wire::tunnel;
    let s = Scratch::new("pcapnet2");
    let secret = write_secret(&s);
    let sync = loopback_sync(2);
    let node1 = [2, 0, 0, 0, 1, 1];
    let node2 = [2, 0, 0, 0, 1, 2];
    let from_node1 = |inner: &[u8]| {
        let mut body = vec![0u8; tunnel::HEADER_LEN];
        tunnel::emit(
            &mut body,
            &tunnel::Header {
                flags: 0,
                hops: 1,
                primary: 2,
                backup: 1,
            },
        );
        body.extend_from_slice(inner);
        testkit::udp(
            node2,
            node1,
            ip("10.0.0.1"),
            49152,
            ip("10.0.0.2"),
            6070,
            &body,
        )
    };
    let syn = testkit::ip_of(&tcp_to("192.0.2.10", 80, 40000, SYN, b""));
    let err = testkit::ip_of(&error_to(
        "192.0.2.10",
        icmp::DEST_UNREACHABLE,
        icmp::CODE_FRAG_NEEDED,
        1280,
        &answer("192.0.2.10", 80, 40000, PROTO_TCP, 200),
    ));
    write_pcap(
        &s.path("front-in.pcap"),
        &[from_node1(&syn), from_node1(&err)],
    );
    write_pcap(&s.path("back-in.pcap"), &[]);
    let cfg = format!(
        r#"
{header}[[port]]
name = "front"
devargs = "net_pcap0,rx_pcap={fin},tx_pcap={fout}"
mac = "02:00:00:00:01:02"
ipv4 = "10.0.0.2/24"
mtu = 1600
[[port]]
name = "back"
devargs = "net_pcap1,rx_pcap={bin},tx_pcap={bout}"
mac = "02:00:00:00:02:02"
ipv4 = "10.1.0.2/24"
[workers]
cores = [1]
idle_sleep = "100us"
[control]
socket = "{sock}"
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
secret_file = "{secret}"
[[cluster.node]]
id = 1
address = "10.0.0.1"
mac = "02:00:00:00:01:01"
sync = "{sync1}"
[[cluster.node]]
id = 2
address = "10.0.0.2"
mac = "02:00:00:00:01:02"
sync = "{sync2}"
"#,
        header = node_header(2, 256, &unique("tpnet2")),
        fin = s.path("front-in.pcap").display(),
        fout = s.path("front-out.pcap").display(),
        bin = s.path("back-in.pcap").display(),
        bout = s.path("back-out.pcap").display(),
        sock = s.path("ctl.sock").display(),
        secret = secret.display(),
        sync1 = sync[0],
        sync2 = sync[1],
    );
    let path = s.path("tandem.toml");
    std::fs::write(&path, cfg).unwrap();
    let mut node = Node::start(&path, &s.path("ctl.sock"), None);
    node.wait_stats("both frames read", Duration::from_secs(30), |st| {
        st["ports"][0]["rx"].as_u64() == Some(2)
    });
    let stats = node.stop();
    let back_out = read_pcap(&s.path("back-out.pcap"));
    let to_a: Vec<&Vec<u8>> = back_out.iter().filter(|f| f[0..6] == A).collect();
    assert_eq!(to_a.len(), 2, "the SYN and the error to backend a: {stats}");
    for f in &to_a {
        testkit::verify_checksums(f).unwrap();
    }
    let e = ipv4::Packet::new_checked(&to_a[1][14..]).unwrap();
    assert_eq!((e.protocol(), e.dst_bytes()), (PROTO_ICMP, [10, 1, 0, 11]));
    let q = ipv4::Packet::new_checked(&e.payload()[8..]).unwrap();
    assert!(q.verify_checksum());
    assert_eq!(
        (q.src_bytes(), &q.payload()[0..2]),
        ([10, 1, 0, 11], &8080u16.to_be_bytes()[..])
    );
    assert!(l4::verify_checksum(
        PROTO_TCP,
        &q.src_bytes(),
        &q.dst_bytes(),
        q.payload()
    ));
    let w = &stats["workers"][0];
    assert_eq!(w["node_received"].as_u64(), Some(2), "{w}");
    assert_eq!(w["icmp_frag_needed"].as_u64(), Some(1), "{w}");
}
