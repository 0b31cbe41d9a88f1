//! net_memif with an independent peer: DPDK's own testpmd (txonly, as the memif client)
//! sends UDP to a nat VIP; tandem (the memif server) forwards every packet, rewritten, to a
//! net_pcap port whose output is checked.

mod common;

use common::*;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;
use tandem_dataplane::wire::ipv4;

#[test]
fn memif_traffic_from_testpmd_is_forwarded() {
    let s = Scratch::new("memif");
    let sock = s.path("memif.sock");
    let out = s.path("back.pcap");
    let cfg = s.path("tandem.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"{header}[[port]]
name = "front"
devargs = "net_memif0,role=server,socket={sock},id=0"
mac = "02:00:00:00:00:01"
ipv4 = "10.0.0.1/24"
[[port]]
name = "back"
devargs = "net_pcap1,tx_pcap={out}"
ipv4 = "10.1.0.1/24"
[workers]
cores = [1]
idle_sleep = "10us"
[control]
socket = "{ctl}"
[[service]]
name = "dns"
vip = "192.0.2.30"
port = 53
protocol = "udp"
mode = "nat"
[[service.backend]]
name = "a"
address = "10.1.0.11"
port = 5353
paths = [{{ port = "back", mac = "02:00:00:00:01:11" }}]
"#,
            header = node_header(1, 512, &unique("tmemif")),
            sock = sock.display(),
            out = out.display(),
            ctl = s.path("ctl.sock").display(),
        ),
    )
    .unwrap();
    let mut node = Node::start(&cfg, &s.path("ctl.sock"), None);

    // testpmd as the memif client: start, send for a second, stop, quit.
    let mut tp = Command::new("dpdk-testpmd")
        .args([
            "--no-huge",
            "-m",
            "512",
            "--no-pci",
            "--lcores=0@0,1@1",
            "--file-prefix",
        ])
        .arg(unique("tpmd"))
        .arg(format!(
            "--vdev=net_memif0,role=client,socket={},id=0",
            sock.display()
        ))
        .args([
            "--",
            "-i",
            "--forward-mode=txonly",
            "--tx-ip=198.51.100.7,192.0.2.30",
            "--tx-udp=4000,53",
            "--eth-peer=0,02:00:00:00:00:01",
            "--nb-cores=1",
            "--txpkts=64",
            "--total-num-mbufs=16384",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dpdk-testpmd (Debian package dpdk) runs");
    let mut stdin = tp.stdin.take().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    writeln!(stdin, "start").unwrap();
    std::thread::sleep(Duration::from_secs(1));
    writeln!(stdin, "stop").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    writeln!(stdin, "quit").unwrap();
    drop(stdin);
    let o = tp.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let sent: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("TX-packets:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no testpmd TX count in:\n{text}"));
    assert!(sent > 1000, "testpmd sent only {sent}");

    let st = node.wait_stats("every packet forwarded", Duration::from_secs(10), |st| {
        st["ports"][0]["rx"].as_u64() == Some(sent) && st["ports"][1]["tx"].as_u64() == Some(sent)
    });
    println!(
        "testpmd sent {sent}; tandem rx {} tx {}",
        st["ports"][0]["rx"], st["ports"][1]["tx"]
    );
    node.stop();

    // The first frames out: rewritten to the backend, checksums right.
    let f = std::fs::File::open(&out).unwrap();
    let mut r = pcap_file::pcap::PcapReader::new(f).unwrap();
    for _ in 0..10 {
        let p = r.next_packet().unwrap().unwrap();
        let ip = ipv4::Packet::new_checked(&p.data[14..]).unwrap();
        assert_eq!(ip.dst(), Ipv4Addr::new(10, 1, 0, 11));
        assert_eq!(ip.src(), Ipv4Addr::new(198, 51, 100, 7));
        assert_eq!(&ip.payload()[0..4], &[0x0f, 0xa0, 0x14, 0xe9]);
        assert_eq!(&p.data[0..6], &[2, 0, 0, 0, 1, 0x11]);
        tandem_dataplane::testkit::verify_checksums(&p.data).unwrap();
    }
}
