//! Live capture of a running node: `tandem ctl capture` runs Debian's `dpdk-dumpcap`
//! against a node on hugepages (dumpcap is a DPDK secondary process: it maps the node's
//! memory), with a filter for one client of two, and the pcapng it writes holds exactly
//! that client's frames: as received on the front port, and as sent on the back port,
//! rewritten to the backend `show flow` names.

mod common;

use common::*;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

/// 2 MiB pages the node's EAL takes (`-m`), and room for dumpcap's ring and pool besides.
const NODE_MB: u32 = 192;
const PAGES: u64 = 160;

fn meminfo(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Enough free hugepages on a mounted /dev/hugepages for this test, as `scripts/setup
/// --hugepages` would reserve them; what it added is given back on drop, and the map files
/// the node's prefix left behind are removed.
struct Hugepages {
    before: u64,
    mounted_here: bool,
    prefix: String,
}

impl Hugepages {
    fn reserve(prefix: &str) -> Hugepages {
        let before = meminfo("HugePages_Total:");
        let free = meminfo("HugePages_Free:");
        if free < PAGES {
            std::fs::write(
                "/proc/sys/vm/nr_hugepages",
                (before + PAGES - free).to_string(),
            )
            .expect("reserve hugepages");
        }
        assert!(
            meminfo("HugePages_Free:") >= PAGES,
            "this host grants too few hugepages"
        );
        std::fs::create_dir_all("/dev/hugepages").unwrap();
        let mounted = sh_quiet_ok("mountpoint -q /dev/hugepages");
        if !mounted {
            sh("mount -t hugetlbfs nodev /dev/hugepages");
        }
        Hugepages {
            before,
            mounted_here: !mounted,
            prefix: prefix.to_string(),
        }
    }
}

fn sh_quiet_ok(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .is_ok_and(|s| s.success())
}

impl Drop for Hugepages {
    fn drop(&mut self) {
        if let Ok(d) = std::fs::read_dir("/dev/hugepages") {
            for e in d.flatten() {
                if e.file_name().to_string_lossy().starts_with(&self.prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        if self.mounted_here {
            sh_quiet("umount /dev/hugepages");
        }
        let _ = std::fs::write("/proc/sys/vm/nr_hugepages", self.before.to_string());
    }
}

/// The (interface, frame) of each Enhanced Packet Block of a pcapng file (a little-endian
/// one, as dumpcap writes here), walked by the block lengths the format gives: the pcap
/// crate refuses the options DPDK's pcapng writer adds to its blocks.
fn enhanced_packets(b: &[u8]) -> Vec<(u32, Vec<u8>)> {
    let word = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    assert_eq!(word(0), 0x0a0d_0d0a, "a pcapng section header");
    assert_eq!(word(8), 0x1a2b_3c4d, "a little-endian section");
    let mut out = Vec::new();
    let mut at = 0;
    while at + 12 <= b.len() {
        let (kind, len) = (word(at), word(at + 4) as usize);
        assert!(
            len >= 12 && at + len <= b.len(),
            "a block of {len} bytes at {at}"
        );
        if kind == 6 {
            let caught = word(at + 20) as usize;
            out.push((word(at + 8), b[at + 28..at + 28 + caught].to_vec()));
        }
        at += len;
    }
    out
}

const CLIENT: &str = "198.51.100.7";
const OTHER: &str = "198.51.100.8";

#[test]
fn dumpcap_through_tandem_ctl_capture_sees_one_clients_frames_both_ways() {
    let s = Scratch::new("capture");
    let prefix = unique("tcap");
    let _pages = Hugepages::reserve(&prefix);
    // Two clients' UDP flows to the nat service, replayed from memory forever.
    let pcap = s.path("flows.pcap");
    write_pcap(&pcap, &dns_queries(&[CLIENT, OTHER], 64));
    let sock = s.path("ctl.sock");
    let cfg = s.path("tandem.toml");
    let header = format!(
        "[node]\nid = 1\n[eal]\nargs = [\"-m\", \"{NODE_MB}\", \"--no-pci\", \"--file-prefix\", \
         \"{prefix}\", \"--log-level\", \"lib.eal:warning\"]\n"
    );
    let sections = "[mempool]\nmbufs = 8191\n[workers]\ncores = [1]\nidle_sleep = \"50us\"\n\
                    [flows]\ncapacity = 4096";
    let body = dns_node(&pcap, ",infinite_rx=1", sections, &sock);
    std::fs::write(&cfg, header + &body).unwrap();
    let node = Node::start(&cfg, &sock, None);
    let shown = node.ctl("show node").unwrap();
    assert_eq!(shown["file_prefix"], prefix.as_str(), "{shown}");
    assert_eq!(shown["capture"], true, "{shown}\n{}", node.logs());
    node.wait_stats("traffic", Duration::from_secs(30), |st| {
        st["workers"][0]["tx"].as_u64().unwrap_or(0) > 1000
    });

    // One capture a port (DPDK 22.11's dumpcap captures only the last of several), both
    // at once: the client's frames as received on front and as sent on back.
    let capture = |port: &str| {
        let out = s.path(&format!("{port}.pcapng"));
        let child = Command::new(tandem_bin())
            .args(["ctl", "--socket"])
            .arg(&sock)
            .args(["capture", port, "--count", "200", "--seconds", "20"])
            .args(["--filter", &format!("host {CLIENT}"), "--out"])
            .arg(&out)
            .spawn()
            .unwrap();
        (child, out)
    };
    let (mut front, front_out) = capture("front");
    let (mut back, back_out) = capture("back");
    for (c, what) in [(&mut front, "capture front"), (&mut back, "capture back")] {
        let status = wait_child(c, Duration::from_secs(60), what);
        assert!(status.success(), "{what}: {status}\n{}", node.logs());
    }

    // The flow of the client's first port, as the node explains it.
    let why = node
        .ctl(&format!("show flow udp {CLIENT}:30000 192.0.2.10:53"))
        .unwrap();
    let backend: std::net::SocketAddr = why["backend_address"]
        .as_str()
        .unwrap_or_else(|| panic!("show flow names no backend: {why}"))
        .parse()
        .unwrap();
    assert_eq!(why["backend"], "a", "{why}");

    let mut seen = [0usize; 2];
    for (side, file) in [(0, &front_out), (1, &back_out)] {
        for (interface, f) in enhanced_packets(&std::fs::read(file).unwrap()) {
            // dumpcap numbers its interfaces by DPDK port id.
            assert_eq!(u64::from(interface), shown["ports"][side]["dpdk_port"]);
            assert_eq!(&f[12..14], &[0x08, 0x00], "IPv4 only");
            let src = Ipv4Addr::new(f[26], f[27], f[28], f[29]);
            let dst = Ipv4Addr::new(f[30], f[31], f[32], f[33]);
            assert_eq!(
                src,
                CLIENT.parse::<Ipv4Addr>().unwrap(),
                "a frame of another client"
            );
            let dport = u16::from_be_bytes([f[36], f[37]]);
            if side == 0 {
                // Received on front: to the VIP, untouched.
                assert_eq!((dst, dport), (Ipv4Addr::new(192, 0, 2, 10), 53));
            } else {
                // Sent on back: rewritten to the flow's backend, to its MAC.
                let to = (std::net::IpAddr::V4(dst), dport);
                assert_eq!(to, (backend.ip(), backend.port()));
                assert_eq!(&f[..6], &[2, 0, 0, 0, 1, 0x11]);
            }
            seen[side] += 1;
        }
    }
    let [received, sent] = seen;
    println!("captured {received} received and {sent} sent frames of {CLIENT}");
    // dumpcap stops once a burst brings it to --count (so a few past it).
    for n in seen {
        assert!(
            (200..200 + 64).contains(&n),
            "--count 200: {received} in, {sent} out"
        );
    }
}
