//! `tandem gen` against `tandem run` over net_memif, two processes on one machine: the
//! generator's TX port is tandem's front, tandem's back port is the generator's RX, so every
//! stamped frame goes through tandem (nat rewrite) and back. At a modest rate nothing may be
//! lost, every frame comes back in order with a latency; in new-flow mode every packet is a
//! SYN of a fresh flow, and tandem creates them all.

mod common;

use common::*;
use std::process::{Command, Stdio};

fn gen(s: &Scratch, args: &[&str]) -> serde_json::Value {
    let m0 = s.path("m0.sock");
    let m1 = s.path("m1.sock");
    let prefix = unique("tgen");
    let o = Command::new(tandem_bin())
        .args([
            "gen",
            "--tx",
            &format!("net_memif0,role=client,socket={},id=0", m0.display()),
            "--rx",
            &format!("net_memif1,role=client,socket={},id=0", m1.display()),
            "--core",
            "0",
            "--json",
        ])
        .args(args)
        .args([
            "--",
            "--no-huge",
            "-m",
            "512",
            "--no-pci",
            "--file-prefix",
            &prefix,
            "--log-level",
            "lib.eal:warning",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "tandem gen failed:\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let last = out
        .lines()
        .rfind(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no report:\n{out}"));
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["final"], true, "{out}");
    println!("tandem gen {}: {v}", args.join(" "));
    v
}

#[test]
fn generator_through_tandem_over_memif() {
    let s = Scratch::new("gen");
    let cfg = s.path("t.toml");
    let sock = s.path("t.sock");
    std::fs::write(
        &cfg,
        format!(
            r#"{header}[[port]]
name = "front"
devargs = "net_memif0,role=server,socket={m0},id=0"
mac = "02:00:00:00:00:01"
ipv4 = "10.0.0.1/24"
[[port]]
name = "back"
devargs = "net_memif1,role=server,socket={m1},id=0"
ipv4 = "10.1.0.1/24"
[workers]
cores = [1]
idle_sleep = "20us"
[flows]
capacity = 262144
[control]
socket = "{sock}"
[[service]]
name = "udp"
vip = "192.0.2.10"
port = 80
protocol = "udp"
mode = "nat"
[[service.backend]]
name = "a"
address = "10.1.0.11"
port = 8080
paths = [{{ port = "back", mac = "02:00:00:00:01:11" }}]
[[service]]
name = "tcp"
vip = "192.0.2.10"
port = 80
protocol = "tcp"
mode = "nat"
[[service.backend]]
name = "t"
address = "10.1.0.12"
port = 8080
paths = [{{ port = "back", mac = "02:00:00:00:01:12" }}]
"#,
            header = node_header(1, 512, &unique("tgent")),
            m0 = s.path("m0.sock").display(),
            m1 = s.path("m1.sock").display(),
            sock = sock.display(),
        ),
    )
    .unwrap();
    let mut node = Node::start(&cfg, &sock, None);

    // Established UDP flows at 100 kpps for 2 s: every frame back, in order.
    let v = gen(
        &s,
        &["--rate", "100000", "--duration", "2s", "--flows", "1000"],
    );
    let tx = v["tx"].as_u64().unwrap();
    assert!((190_000..=210_000).contains(&tx), "{v}");
    assert_eq!(v["rx"], tx, "{v}");
    assert_eq!(v["lost"], 0, "{v}");
    assert_eq!(v["reordered"], 0, "{v}");
    let p50 = v["p50_us"].as_f64().unwrap();
    let p99 = v["p99_us"].as_f64().unwrap();
    assert!(p50 > 0.0 && p99 >= p50, "{v}");

    // New flows: every packet a SYN of a fresh 5-tuple, by count. (A single-backend service
    // once cost a full scan of its selection table per new flow: this caught it.)
    let v = gen(
        &s,
        &[
            "--mode", "new", "--rate", "50000", "--count", "20000", "--warmup", "200ms",
        ],
    );
    assert_eq!(v["tx"], 20_000, "{v}");
    assert_eq!(v["lost"], 0, "{v}");
    assert!(v["p50_us"].as_f64().unwrap() < 5_000.0, "{v}");
    let st = node.stop();
    let created = st["workers"][0]["flows_created"].as_u64().unwrap();
    // The warm-ups' flows and the measured ones, UDP and TCP.
    assert!(created >= 1000 + 20_000, "flows created {created}: {st}");
}
