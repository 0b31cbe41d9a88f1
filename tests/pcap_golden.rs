//! Golden tests through real DPDK ports: frames crafted here are written to pcap files,
//! `tandem run` reads them through the net_pcap PMD and writes what it sends to output pcaps,
//! which are checked field by field.

mod common;

use common::*;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use tandem_dataplane::testkit;
use tandem_dataplane::wire::l4::{ACK, SYN};
use tandem_dataplane::wire::{arp, ipv4, ipv6};

const FRONT: [u8; 6] = [2, 0, 0, 0, 0, 1];
const BACK: [u8; 6] = [2, 0, 0, 0, 0, 2];
const CLIENT: [u8; 6] = [2, 0, 0, 0, 0xc, 1];
const A: [u8; 6] = [2, 0, 0, 0, 1, 0x11];
const B: [u8; 6] = [2, 0, 0, 0, 1, 0x12];
const C: [u8; 6] = [2, 0, 0, 0, 1, 0x13];

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
gateway = "10.0.0.254"
[[port]]
name = "back"
devargs = "net_pcap1,rx_pcap={bin},tx_pcap={bout}"
mac = "02:00:00:00:00:02"
ipv4 = "10.1.0.1/24"
ipv6 = "fd01::1/64"
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
name = "dns"
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
"#,
        header = node_header(1, 256, prefix),
        fin = s.path("front-in.pcap").display(),
        fout = s.path("front-out.pcap").display(),
        bin = s.path("back-in.pcap").display(),
        bout = s.path("back-out.pcap").display(),
        sock = s.path("ctl.sock").display(),
    )
}

#[test]
fn pcap_golden_all_modes_answers_and_drops() {
    let s = Scratch::new("pcap");
    let client = ip("198.51.100.7");
    let nat_syn = testkit::tcp(FRONT, CLIENT, client, 40000, ip("192.0.2.10"), 80, SYN, b"");
    let dsr_syn = testkit::tcp(FRONT, CLIENT, client, 40001, ip("192.0.2.20"), 80, SYN, b"");
    let gue_q = testkit::udp(
        FRONT,
        CLIENT,
        client,
        5353,
        ip("192.0.2.30"),
        53,
        b"a dns query",
    );
    let nat6 = testkit::tcp(
        FRONT,
        CLIENT,
        ip("fd00::77"),
        40002,
        ip("fd00::10"),
        80,
        SYN,
        b"",
    );
    let tagged = testkit::tag(
        &testkit::tcp(
            FRONT,
            CLIENT,
            client,
            40003,
            ip("192.0.2.20"),
            80,
            ACK,
            b"tagged",
        ),
        100,
    );
    let mut bad_ihl = nat_syn.clone();
    bad_ihl[14] = 0x43;
    // A later fragment whose data would start inside the TCP header (RFC 1858).
    let mut frag = nat_syn.clone();
    frag[21] = 0x01;
    ipv4::fill_checksum(&mut frag[14..]);
    let front_in = vec![
        testkit::arp_request(
            CLIENT,
            Ipv4Addr::new(10, 0, 0, 9),
            Ipv4Addr::new(10, 0, 0, 1),
        ), // 0: ARP port
        testkit::arp_request(
            CLIENT,
            Ipv4Addr::new(10, 0, 0, 9),
            Ipv4Addr::new(192, 0, 2, 10),
        ), // 1: ARP VIP
        testkit::icmp_echo(FRONT, CLIENT, ip("10.0.0.9"), ip("192.0.2.10"), 1, 1), // 2: ping VIP
        nat_syn.clone(),                                                           // 3
        nat_syn[..30].to_vec(),                                                    // 4: truncated
        bad_ihl,                                                                   // 5
        frag,                                                                      // 6
        vec![0xde, 0xad],                                                          // 7: runt
        testkit::tcp(FRONT, CLIENT, client, 1, ip("192.0.2.10"), 443, SYN, b""), // 8: unknown service
        dsr_syn.clone(),                                                         // 9
        gue_q.clone(),                                                           // 10
        nat6.clone(),                                                            // 11
        tagged.clone(),                                                          // 12
        testkit::icmp_echo(FRONT, CLIENT, ip("fd00::9"), ip("fd00::1"), 2, 1),   // 13: ping6 port
    ];
    write_pcap(&s.path("front-in.pcap"), &front_in);
    // The backend's SYN-ACK for the nat flow (read after the front burst).
    let synack = testkit::tcp(
        BACK,
        A,
        ip("10.1.0.11"),
        8080,
        client,
        40000,
        SYN | ACK,
        b"",
    );
    write_pcap(&s.path("back-in.pcap"), &[synack]);
    let cfg = s.path("tandem.toml");
    std::fs::write(&cfg, config(&s, &unique("tpcap"))).unwrap();

    let mut node = Node::start(&cfg, &s.path("ctl.sock"), None);
    node.wait_stats("all frames read", Duration::from_secs(30), |st| {
        st["ports"][0]["rx"].as_u64() == Some(front_in.len() as u64)
            && st["ports"][1]["rx"].as_u64() == Some(1)
    });
    // The flows are visible on the control socket.
    let flow = node
        .ctl("show flow tcp 198.51.100.7:40000 192.0.2.10:80")
        .unwrap();
    assert_eq!(flow["backend"], "a", "{flow}");
    let bad = node.ctl("show flow tcp nonsense").unwrap();
    assert_eq!(bad["ok"], false);
    // One connection: a bad command, an over-long line and garbage each get an error
    // document, and the connection still answers the next command.
    {
        use std::io::{BufRead, BufReader, Write};
        let mut c = std::os::unix::net::UnixStream::connect(s.path("ctl.sock")).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = BufReader::new(c.try_clone().unwrap());
        let long = "x".repeat(10_000);
        for line in [
            "frobnicate",
            long.as_str(),
            "\u{1}\u{2}\u{3}",
            "show services",
        ] {
            writeln!(c, "{line}").unwrap();
            let mut answer = String::new();
            r.read_line(&mut answer).unwrap();
            let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
            if line == "show services" {
                assert_eq!(v["ok"], true, "{v}");
                assert_eq!(v["services"].as_array().unwrap().len(), 4);
            } else {
                assert_eq!(v["ok"], false, "{v}");
            }
        }
        c.write_all(&[0xff, 0xfe, b'\n']).unwrap();
        let mut answer = String::new();
        r.read_line(&mut answer).unwrap();
        assert!(answer.contains("not UTF-8"), "{answer}");
    }
    let stats = node.stop();

    let front_out = read_pcap(&s.path("front-out.pcap"));
    let back_out = read_pcap(&s.path("back-out.pcap"));

    // Front: ARP reply (port), ARP reply (VIP), echo reply, echo6 reply, then the nat SYN-ACK.
    let all_arps: Vec<arp::Arp> = front_out
        .iter()
        .filter(|f| f[12..14] == [8, 6])
        .map(|f| arp::parse(&f[14..]).unwrap())
        .collect();
    // The node also asks for its front gateway's MAC on its own.
    let (arps, asks): (Vec<arp::Arp>, Vec<arp::Arp>) =
        all_arps.into_iter().partition(|a| a.op == arp::OP_REPLY);
    assert!(asks
        .iter()
        .all(|a| a.target_ip == Ipv4Addr::new(10, 0, 0, 254)
            && a.sender_ip == Ipv4Addr::new(10, 0, 0, 1)));
    assert!(!asks.is_empty(), "gateway ARP request");
    assert_eq!(arps.len(), 2);
    assert_eq!(arps[0].sender_ip, Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(arps[1].sender_ip, Ipv4Addr::new(192, 0, 2, 10));
    assert!(arps
        .iter()
        .all(|a| a.op == arp::OP_REPLY && a.sender_mac == FRONT && a.target_mac == CLIENT));
    let v4: Vec<&Vec<u8>> = front_out.iter().filter(|f| f[12..14] == [8, 0]).collect();
    assert_eq!(v4.len(), 2, "echo reply and nat reply: {:02x?}", v4);
    let echo = ipv4::Packet::new_checked(&v4[0][14..]).unwrap();
    assert_eq!(
        (echo.src(), echo.dst(), echo.protocol()),
        (Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(10, 0, 0, 9), 1)
    );
    assert_eq!(echo.payload()[0], 0, "echo reply type");
    testkit::verify_checksums(v4[0]).unwrap();
    let natr = ipv4::Packet::new_checked(&v4[1][14..]).unwrap();
    assert_eq!(natr.src(), Ipv4Addr::new(192, 0, 2, 10));
    assert_eq!(natr.dst(), Ipv4Addr::new(198, 51, 100, 7));
    assert_eq!(&natr.payload()[0..4], &[0, 80, 0x9c, 0x40]);
    assert_eq!(
        &v4[1][0..6],
        &CLIENT,
        "off-link client, gateway unknown: the request's L2 source"
    );
    assert_eq!(&v4[1][6..12], &FRONT);
    testkit::verify_checksums(v4[1]).unwrap();
    let v6: Vec<&Vec<u8>> = front_out
        .iter()
        .filter(|f| f[12..14] == [0x86, 0xdd])
        .collect();
    assert!(v6.iter().any(|f| f[54] == 129), "ICMPv6 echo reply");

    // Back: nat SYN, dsr SYN, GUE, nat6 SYN, tagged dsr (in input order), plus any ARP
    // requests for the port's gateway-less next hops (none here: every path has a MAC).
    let data: Vec<&Vec<u8>> = back_out.iter().filter(|f| f[12..14] != [8, 6]).collect();
    assert_eq!(data.len(), 5, "{} frames on back", back_out.len());
    // nat: destination rewritten, TTL down one, checksums right.
    let n = ipv4::Packet::new_checked(&data[0][14..]).unwrap();
    assert_eq!(&data[0][0..6], &A);
    assert_eq!(&data[0][6..12], &BACK);
    assert_eq!(n.dst(), Ipv4Addr::new(10, 1, 0, 11));
    assert_eq!(n.src(), Ipv4Addr::new(198, 51, 100, 7));
    assert_eq!(n.ttl(), 63);
    assert_eq!(&n.payload()[0..4], &[0x9c, 0x40, 0x1f, 0x90]);
    testkit::verify_checksums(data[0]).unwrap();
    // dsr: only the MACs.
    assert_eq!(&data[1][0..6], &B);
    assert_eq!(&data[1][12..], &dsr_syn[12..]);
    // gue: IPv4/UDP to the backend's port 6080 around the original IP packet.
    assert_eq!(&data[2][0..6], &C);
    let outer = ipv4::Packet::new_checked(&data[2][14..]).unwrap();
    assert_eq!(
        (outer.src(), outer.dst(), outer.protocol()),
        (Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 1, 0, 13), 17)
    );
    assert!(outer.verify_checksum());
    let inner_len = usize::from(u16::from_be_bytes([gue_q[16], gue_q[17]]));
    assert_eq!(&outer.payload()[2..4], &6080u16.to_be_bytes());
    assert_eq!(&outer.payload()[8..], &gue_q[14..14 + inner_len]);
    // nat over IPv6.
    let n6 = ipv6::Packet::new_checked(&data[3][14..]).unwrap();
    assert_eq!(n6.dst().to_string(), "fd01::11");
    testkit::verify_checksums(data[3]).unwrap();
    // The tagged frame leaves untagged with its IP packet intact.
    assert_eq!(&data[4][12..14], &[8, 0]);
    assert_eq!(&data[4][14..], &tagged[18..]);

    // Every bad frame was dropped and counted under its reason.
    let drops = &stats["drops"];
    for (reason, n) in [
        ("truncated", 2),
        ("bad_ihl", 1),
        ("fragment_overlap", 1),
        ("unknown_service", 1),
    ] {
        assert_eq!(drops[reason].as_u64(), Some(n), "{reason}: {drops}");
    }
    assert_eq!(stats["workers"][0]["arp_replies"], 2);
    assert_eq!(stats["workers"][0]["icmp_replies"], 2);
}

#[test]
fn check_config_names_every_bad_key() {
    let s = Scratch::new("cc");
    let good = config(&s, "unused");
    let p = s.path("good.toml");
    std::fs::write(&p, &good).unwrap();
    let o = std::process::Command::new(tandem_bin())
        .arg("check-config")
        .arg(&p)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let bad = good
        .replace("[flows]\n", "[flows]\ncolour = \"blue\"\n")
        .replace("vip = \"192.0.2.20\"", "vip = \"192.0.2.10\"")
        .replace("address = \"10.1.0.13\"", "address = \"10.1.0.300\"")
        .replace("paths = [{ port = \"back\", mac = \"02:00:00:00:01:12\" }]", "paths = [{ port = \"nowhere\" }]")
        .replace("name = \"a6\"\naddress = \"fd01::11\"\nport = 8080\npaths = [{ port = \"back\", mac = \"02:00:00:00:01:11\" }]", "name = \"a6\"\naddress = \"fd01::11\"")
        .replace("idle_sleep = \"100us\"", "idle_sleep = \"soon\"");
    let p = s.path("bad.toml");
    std::fs::write(&p, &bad).unwrap();
    let o = std::process::Command::new(tandem_bin())
        .arg("check-config")
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    for key in [
        "flows.colour: unknown key",
        "service[1].vip: duplicate VIP",
        "service[2].backend[0].address",
        "service[1].backend[0].paths[0].port: no [[port]] is named \"nowhere\"",
        "service[3].backend[0].paths: a backend needs at least one path",
        "workers.idle_sleep",
    ] {
        assert!(err.contains(key), "missing {key:?} in:\n{err}");
    }
    // `run` refuses the same config the same way, before touching DPDK.
    let o = std::process::Command::new(tandem_bin())
        .args(["run", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("flows.colour: unknown key"));
}
