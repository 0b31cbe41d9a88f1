//! tandem's commands on DPDK's telemetry socket, asked with Debian's `dpdk-telemetry.py`
//! (the client operators use for `/ethdev/stats`): `/tandem/info`, `/tandem/stats`,
//! `/tandem/backends`, `/tandem/nodes` answer what `show node`, `show stats`, `show
//! backends` and `show nodes` do, flattened to telemetry's one level of containers.

mod common;

use common::*;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Asks the telemetry socket of the node with EAL file prefix `prefix` each of `cmds`,
/// through `dpdk-telemetry.py`; one JSON answer per command.
fn telemetry(prefix: &str, cmds: &[&str]) -> Vec<Value> {
    let mut c = Command::new("dpdk-telemetry.py")
        .args(["-f", prefix])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("dpdk-telemetry.py (Debian's dpdk package)");
    {
        let mut input = c.stdin.take().unwrap();
        for cmd in cmds {
            writeln!(input, "{cmd}").unwrap();
            // The script reads a line, asks, prints; one at a time.
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    let status = wait_child(&mut c, Duration::from_secs(20), "dpdk-telemetry.py");
    assert!(status.success(), "dpdk-telemetry.py: {status}");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut c.stdout.take().unwrap(), &mut out).unwrap();
    // Its answers follow each other on one line, each a JSON object.
    serde_json::Deserializer::from_str(&out)
        .into_iter::<Value>()
        .map(|v| v.expect("a JSON answer"))
        .collect()
}

#[test]
fn dpdk_telemetry_answers_tandems_commands() {
    let s = Scratch::new("telemetry");
    let prefix = unique("ttel");
    let pcap = s.path("flows.pcap");
    write_pcap(&pcap, &dns_queries(&["198.51.100.7"], 32));
    let sock = s.path("ctl.sock");
    let cfg = s.path("tandem.toml");
    let sections = "[workers]\ncores = [1]\nidle_sleep = \"100us\"";
    let body = dns_node(&pcap, "", sections, &sock);
    std::fs::write(&cfg, node_header(1, 256, &prefix) + &body).unwrap();
    let node = Node::start(&cfg, &sock, None);
    // The pcap's 32 frames, once: every one forwarded, then published (once a second).
    node.wait_stats("the pcap forwarded", Duration::from_secs(20), |st| {
        st["workers"][0]["tx"].as_u64() == Some(32)
    });
    std::thread::sleep(Duration::from_millis(1500));
    let got = telemetry(
        &prefix,
        &[
            "/tandem/info",
            "/tandem/stats",
            "/tandem/backends",
            "/tandem/nodes",
            "/ethdev/list",
        ],
    );
    assert_eq!(got.len(), 5, "{got:?}");
    let info = &got[0]["/tandem/info"];
    assert_eq!(info["file_prefix"], prefix.as_str(), "{info}");
    assert_eq!(info["pid"], node.pid(), "{info}");
    assert_eq!(info["ports"]["front_dpdk_port"], 0, "{info}");
    let stats = &got[1]["/tandem/stats"];
    assert_eq!(stats["ports"]["front_rx"], 32, "{stats}");
    assert_eq!(stats["ports"]["back_tx"], 32, "{stats}");
    assert_eq!(stats["workers"]["0_tx"], 32, "{stats}");
    let backends = &got[2]["/tandem/backends"];
    let flat = backends.to_string();
    assert!(
        flat.contains("10.1.0.11"),
        "backend a's address: {backends}"
    );
    // Not a cluster: the same refusal `show nodes` gives.
    let nodes = &got[3]["/tandem/nodes"];
    assert_eq!(nodes["ok"], "false", "{nodes}");
    // DPDK's own commands still answer beside tandem's.
    assert_eq!(got[4]["/ethdev/list"], serde_json::json!([0, 1]));
}
