//! Writes the seed corpus: `cargo run --bin seeds` in fuzz/ (scripts/fuzz --seeds). Each
//! target gets inputs that reach its interesting paths at once: frames of every kind the
//! core serves, signed datagrams of every kind, every command in help, the example configs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use tandem_control::cluster::codec::{Header, Heartbeat, Key, Kind, WireRecord, Writer};
use tandem_dataplane::flow::{FlowKey, FlowState};
use tandem_dataplane::testkit;
use tandem_dataplane::wire::l4::{ACK, FIN, SYN};

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), data).unwrap();
}

fn ip4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse::<Ipv4Addr>().unwrap())
}

fn ip6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
}

/// Frames as the packet_core target reads them: `[port][flags][len lo][len hi]` + frame.
fn frames(list: &[(u8, u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (port, flags, f) in list {
        out.push(*port);
        out.push(*flags);
        out.extend_from_slice(&(f.len() as u16).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

fn packet_core() {
    let [front, back] = tandem_fuzz::PORT_MACS;
    let client = [2, 0, 0, 0, 0xc, 1];
    let router = [2, 0, 0, 0, 0, 0xfe];
    let be = [2, 0, 0, 0, 1, 0x11];
    let (c4, vip) = (ip4("198.51.100.7"), ip4("192.0.2.10"));
    let syn = testkit::tcp(front, router, c4, 40000, vip, 80, SYN, b"");
    let ack = testkit::tcp(
        front,
        router,
        c4,
        40000,
        vip,
        80,
        ACK,
        b"GET / HTTP/1.0\r\n\r\n",
    );
    let fin = testkit::tcp(front, router, c4, 40000, vip, 80, FIN | ACK, b"");
    let reply = testkit::tcp(back, be, ip4("10.1.0.11"), 8080, c4, 40000, SYN | ACK, b"");
    let dns = testkit::udp(front, router, c4, 5353, ip4("192.0.2.20"), 53, b"query");
    let v6 = testkit::tcp(
        front,
        router,
        ip6("2001:db8::77"),
        40001,
        ip6("2001:db8::10"),
        443,
        SYN,
        b"",
    );
    let arp = testkit::arp_request(
        client,
        "10.0.0.9".parse().unwrap(),
        "10.0.0.1".parse().unwrap(),
    );
    let ping = testkit::icmp_echo(front, client, ip4("10.0.0.9"), vip, 7, 1);
    let ns = testkit::neighbor_solicit(
        client,
        "fd00::9".parse().unwrap(),
        "fd00::1".parse().unwrap(),
    );
    let tagged = testkit::tag(&syn, 7);
    // A packet another node sent on: UDP to the forwarding port with the node header.
    let mut tunnel = vec![0u8; 8];
    tandem_dataplane::wire::tunnel::emit(
        &mut tunnel,
        &tandem_dataplane::wire::tunnel::Header {
            flags: 0,
            hops: 1,
            primary: 1,
            backup: 3,
        },
    );
    tunnel.truncate(tandem_dataplane::wire::tunnel::HEADER_LEN);
    tunnel.extend_from_slice(&syn[14..]);
    let from_node = testkit::udp(
        front,
        [2, 0, 0, 0, 0, 0x22],
        ip4("10.0.0.2"),
        49152,
        ip4("10.0.0.1"),
        6070,
        &tunnel,
    );
    write(
        "packet_core",
        "handshake",
        &frames(&[(0, 0, syn.clone()), (1, 2, reply), (0, 2, ack), (0, 2, fin)]),
    );
    write("packet_core", "udp_dsr", &frames(&[(0, 0, dns)]));
    // QUIC: a new connection's long header, then short headers naming q1 from the same
    // and from a moved client, and one naming no server.
    let lb = quic_lb::Config::new(1, 2, 6, Some(tandem_fuzz::QUIC_KEY)).unwrap();
    let short = |sport: u16, sid: [u8; 2]| {
        let mut cid = [0u8; quic_lb::MAX_CID_LEN];
        let n = lb.encode(&sid, &[3; 6], &mut cid).unwrap();
        let payload = [&[0x42][..], &cid[..n], &[0u8; 24]].concat();
        testkit::udp(front, router, c4, sport, ip4("192.0.2.30"), 443, &payload)
    };
    let long = testkit::udp(
        front,
        router,
        c4,
        5000,
        ip4("192.0.2.30"),
        443,
        &[0xc1, 0, 0, 0, 1, 4, 1, 2, 3, 4, 0],
    );
    write(
        "packet_core",
        "quic",
        &frames(&[
            (0, 0, long),
            (0, 1, short(5000, [0x0a, 1])),
            (0, 2, short(6000, [0x0a, 1])),
            (0, 3, short(6001, [0x0b, 7])),
        ]),
    );
    write("packet_core", "gue_v6", &frames(&[(0, 0, v6.clone())]));
    write(
        "packet_core",
        "own_traffic",
        &frames(&[(0, 0, arp), (0, 0, ping), (0, 0, ns)]),
    );
    write("packet_core", "vlan", &frames(&[(0, 0, tagged)]));
    // What strangers send: an advertisement routed from afar and one from the link for the
    // gateway, a gratuitous ARP, a SYN from a martian source.
    let na = |src: &str, hop_limit: u8| {
        testkit::neighbor_advert(
            front,
            client,
            (src.parse().unwrap(), "fd00::1".parse().unwrap()),
            "fd00::fe".parse().unwrap(),
            client,
            hop_limit,
        )
    };
    let garp = testkit::arp_request(
        client,
        "10.0.0.254".parse().unwrap(),
        "10.0.0.254".parse().unwrap(),
    );
    let martian = testkit::tcp(front, router, ip4("127.0.0.1"), 40002, vip, 80, SYN, b"");
    write(
        "packet_core",
        "strangers",
        &frames(&[
            (0, 0, na("2001:db8:666::1", 57)),
            (0, 0, na("fe80::fe", 255)),
            (0, 0, garp),
            (0, 0, martian),
        ]),
    );
    write(
        "packet_core",
        "cluster",
        &frames(&[(0, 1, syn.clone()), (0, 1, from_node)]),
    );
    write(
        "packet_core",
        "truncated",
        &frames(&[(0, 0, syn[..40].to_vec())]),
    );
    // Fragments of a datagram, in order and last first.
    let big = testkit::udp(front, router, c4, 5354, ip4("192.0.2.20"), 53, &[9u8; 3000]);
    let frags = testkit::fragment(&big, 1480, 77);
    let mut reversed = frags.clone();
    reversed.reverse();
    let list: Vec<(u8, u8, Vec<u8>)> = frags
        .iter()
        .chain(&reversed)
        .map(|f| (0, 0, f.clone()))
        .collect();
    write("packet_core", "fragments", &frames(&list));
    // ICMP errors: a router's fragmentation needed about the VIP's answer, a backend's
    // refusal of a nat request, packet too big for an IPv6 VIP.
    let answer = testkit::tcp(router, front, vip, 80, c4, 40000, ACK, &[1u8; 100]);
    let frag_needed = testkit::icmp_error(
        front,
        router,
        ip4("203.0.113.1"),
        vip,
        3,
        4,
        1280,
        &testkit::ip_of(&answer),
    );
    let request = testkit::tcp(be, back, c4, 40000, ip4("10.1.0.11"), 8080, SYN, b"");
    let refusal = testkit::icmp_error(
        back,
        be,
        ip4("10.1.0.11"),
        c4,
        3,
        3,
        0,
        &testkit::ip_of(&request),
    );
    let answer6 = testkit::tcp(
        router,
        front,
        ip6("2001:db8::10"),
        443,
        ip6("2001:db8::77"),
        40001,
        ACK,
        &[2u8; 200],
    );
    let too_big6 = testkit::icmp_error(
        front,
        router,
        ip6("2001:db8::fe"),
        ip6("2001:db8::10"),
        2,
        0,
        1280,
        &testkit::ip_of(&answer6),
    );
    write(
        "packet_core",
        "icmp_errors",
        &frames(&[
            (0, 0, syn.clone()),
            (0, 0, frag_needed),
            (1, 0, refusal),
            (0, 0, too_big6),
        ]),
    );
    // IPv6 extension headers before the transport header; a packet too big for GUE.
    let chained = testkit::with_ext_headers(&v6, &[(0, 8), (60, 16), (43, 24)]);
    let oversize = testkit::tcp(
        front,
        router,
        ip6("2001:db8::77"),
        40002,
        ip6("2001:db8::10"),
        443,
        ACK,
        &[3u8; 1440],
    );
    write(
        "packet_core",
        "ipv6_chains_and_mtu",
        &frames(&[(0, 0, chained), (0, 0, oversize)]),
    );
}

fn sync_codec() {
    let key = Key::derive(b"0123456789abcdef-fuzz-secret");
    let header = |kind, seq| Header {
        kind,
        sender: 2,
        epoch: 5,
        seq,
        count: 0,
        fingerprint: 42,
    };
    let rec = WireRecord {
        key: FlowKey::v4([198, 51, 100, 7], [192, 0, 2, 10], 40000, 80, 6),
        backend: 0,
        primary_path: 0,
        backup_path: 0,
        state: FlowState::Established,
        ingress_port: 0,
        primary_node: 2,
        backup_node: 1,
        client_mac: [2, 0, 0, 0, 0xc, 1],
    };
    let mut w = Writer::new(&header(Kind::Heartbeat, 1));
    w.heartbeat(&Heartbeat {
        flags: 1,
        flows: 3,
        ack: 0,
        total: 0,
    });
    write("sync_codec", "heartbeat", &w.finish(&key));
    let mut w = Writer::new(&header(Kind::Records, 2));
    w.record(&rec);
    w.record(&WireRecord {
        key: FlowKey::v4([198, 51, 100, 8], [192, 0, 2, 10], 40001, 80, 6),
        ..rec
    });
    write("sync_codec", "records", &w.finish(&key));
    write(
        "sync_codec",
        "snapshot_request",
        &Writer::new(&header(Kind::SnapshotRequest, 3)).finish(&key),
    );
    let mut w = Writer::new(&header(Kind::SnapshotRecords, 4));
    w.record(&rec);
    write("sync_codec", "snapshot_records", &w.finish(&key));
    let mut w = Writer::new(&header(Kind::SnapshotEnd, 5));
    w.heartbeat(&Heartbeat {
        flags: 0,
        flows: 0,
        ack: 0,
        total: 1,
    });
    write("sync_codec", "snapshot_end", &w.finish(&key));
}

fn command_parser() {
    for (i, l) in tandem_control::commands::examples().enumerate() {
        write("command_parser", &format!("cmd{i:02}"), l.as_bytes());
    }
}

fn config_loader() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples");
    for e in std::fs::read_dir(examples).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        write("config_loader", &name, &std::fs::read(&p).unwrap());
    }
    write("config_loader", "fuzz_node", tandem_fuzz::NODE.as_bytes());
    write(
        "config_loader",
        "fuzz_cluster",
        format!("{}{}", tandem_fuzz::NODE, tandem_fuzz::CLUSTER).as_bytes(),
    );
}

/// The draft's vectors as the target reads them: a configuration head, then the ID.
fn quic_lb() {
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    };
    let key = hex("8f95f09245765f80256934e50c66207f");
    for (name, cr, sid, nonce, keyed, cid) in [
        ("plain", 0u8, 3u8, 4u8, 0u8, "07c4605e4504cc4f"),
        ("four_pass_odd", 0, 3, 4, 1, "0720b1d07b359d3c"),
        (
            "four_pass_long_sid",
            1,
            10,
            5,
            1,
            "2fcc381bc74cb4fbad2823a3d1f8fed2",
        ),
        (
            "single_pass",
            2,
            8,
            8,
            1,
            "504dd2d05a7b0de9b2b9907afb5ecf8cc3",
        ),
        (
            "four_pass_even",
            0,
            9,
            9,
            1,
            "125779c9cc86beb3a3a4a3ca96fce4bfe0cdbc",
        ),
    ] {
        // The target reads lengths as 1 + x % 15 and 4 + x % room.
        let mut data = vec![cr, sid - 1, nonce - 4, keyed];
        data.extend_from_slice(&key);
        data.extend_from_slice(&hex(cid));
        write("quic_lb", name, &data);
    }
}

fn main() {
    quic_lb();
    packet_core();
    sync_codec();
    command_parser();
    config_loader();
    println!("seed corpus written to fuzz/corpus/");
}
