//! `tandem ctl capture PORT [--count N] [--seconds S] [--filter BPF] --out FILE.pcapng`:
//! a live capture of a running node's port (its received and sent frames) by tandem's port
//! name. One port a capture: DPDK 22.11's dumpcap given several captures only the last. It asks the node
//! (`show node`) for its EAL file prefix and each port's DPDK port id, then runs Debian's
//! `dpdk-dumpcap` against it, so an operator needs to know nothing of the EAL.

use clap::Parser;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

#[derive(Parser, Debug)]
#[command(
    name = "tandem ctl capture",
    about = "Capture a running node's ports (received and sent frames) into a pcapng file"
)]
struct Args {
    /// The port, by the name the config gives it.
    port: String,
    /// Stop after this many frames.
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this many seconds (else at --count, or Ctrl-C).
    #[arg(long)]
    seconds: Option<u64>,
    /// Only frames that match this libpcap filter ("host 198.51.100.7 and udp").
    #[arg(long)]
    filter: Option<String>,
    /// The pcapng file to write.
    #[arg(long)]
    out: PathBuf,
}

/// The dumpcap that captures `port` of the node `show node` described (`node`).
fn dumpcap(node: &Value, a: &Args) -> Result<Command, String> {
    if node["capture"] != Value::Bool(true) {
        let why = node["capture_unavailable"].as_str().unwrap_or("unknown");
        return Err(format!("the node cannot be captured: {why}"));
    }
    let prefix = node["file_prefix"]
        .as_str()
        .ok_or("the node gave no file prefix")?;
    let known = node["ports"].as_array().cloned().unwrap_or_default();
    let mut cmd = Command::new("dpdk-dumpcap");
    cmd.arg(format!("--file-prefix={prefix}"));
    let name = &a.port;
    let id = known
        .iter()
        .find(|p| p["port"] == name.as_str())
        .and_then(|p| p["dpdk_port"].as_u64())
        .ok_or_else(|| {
            let names: Vec<&str> = known.iter().filter_map(|p| p["port"].as_str()).collect();
            format!("no port named {name:?} (the node has {})", names.join(", "))
        })?;
    cmd.arg("-i").arg(id.to_string());
    cmd.arg("-w").arg(&a.out);
    if let Some(n) = a.count {
        cmd.arg("-c").arg(n.to_string());
    }
    if let Some(s) = a.seconds {
        cmd.arg("-a").arg(format!("duration:{s}"));
    }
    if let Some(f) = &a.filter {
        cmd.arg("-f").arg(f);
    }
    Ok(cmd)
}

/// Runs `tandem ctl capture` with the words after `capture`.
pub fn run(socket: &Path, words: &[String]) -> ExitCode {
    let args = match Args::try_parse_from(
        std::iter::once("capture".to_string()).chain(words.iter().cloned()),
    ) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let node = match tandem_control::client::request(socket, "show node") {
        Ok(v) if v["ok"] == Value::Bool(true) => v,
        Ok(v) => {
            eprintln!("tandem ctl capture: show node: {}", v["error"]);
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("tandem ctl capture: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut cmd = match dumpcap(&node, &args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tandem ctl capture: {e}");
            return ExitCode::from(1);
        }
    };
    match cmd.status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("tandem ctl capture: dpdk-dumpcap {s}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("tandem ctl capture: dpdk-dumpcap: {e} (Debian's dpdk package has it)");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(words: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("capture").chain(words.iter().copied())).unwrap()
    }

    fn node() -> Value {
        json!({"ok": true, "capture": true, "file_prefix": "tandem1", "ports": [
            {"port": "front", "device": "net_pcap0", "dpdk_port": 0},
            {"port": "back", "device": "net_null1", "dpdk_port": 1}]})
    }

    #[test]
    fn a_port_by_name_becomes_dumpcaps_port_id() {
        let a = args(&[
            "back",
            "--count",
            "5",
            "--seconds",
            "3",
            "--filter",
            "udp",
            "--out",
            "/tmp/x.pcapng",
        ]);
        let c = dumpcap(&node(), &a).unwrap();
        let got: Vec<String> = c.get_args().map(|x| x.to_string_lossy().into()).collect();
        assert_eq!(
            got,
            [
                "--file-prefix=tandem1",
                "-i",
                "1",
                "-w",
                "/tmp/x.pcapng",
                "-c",
                "5",
                "-a",
                "duration:3",
                "-f",
                "udp"
            ]
        );
    }

    #[test]
    fn an_unknown_port_or_a_node_without_hugepages_is_refused_with_the_reason() {
        let e = dumpcap(&node(), &args(&["side", "--out", "x"])).unwrap_err();
        assert!(
            e.contains("no port named \"side\"") && e.contains("front, back"),
            "{e}"
        );
        let mut n = node();
        n["capture"] = json!(false);
        n["capture_unavailable"] = json!("the EAL runs without hugepages");
        let e = dumpcap(&n, &args(&["front", "--out", "x"])).unwrap_err();
        assert!(e.contains("without hugepages"), "{e}");
    }
}
