//! net_null ports: a node starts, polls, answers on its control socket and stops cleanly on
//! SIGTERM, printing its final counters.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn null_ports_run_and_stop_on_sigterm() {
    let s = Scratch::new("null");
    let cfg = s.path("tandem.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"{header}[[port]]
name = "a"
devargs = "net_null0"
ipv4 = "10.0.0.1/24"
[[port]]
name = "b"
devargs = "net_null1,no-rx=1"
ipv4 = "10.1.0.1/24"
[workers]
cores = [1]
[control]
socket = "{sock}"
[[service]]
name = "web"
vip = "192.0.2.10"
port = 80
protocol = "tcp"
mode = "dsr"
[[service.backend]]
name = "x"
address = "10.1.0.11"
paths = [{{ port = "b", mac = "02:00:00:00:01:11" }}]
"#,
            header = node_header(7, 256, &unique("tnull")),
            sock = s.path("ctl.sock").display(),
        ),
    )
    .unwrap();
    let mut node = Node::start(&cfg, &s.path("ctl.sock"), None);
    // net_null's RX makes zero-filled frames: received, and dropped as not for us.
    node.wait_stats("frames from net_null", Duration::from_secs(10), |st| {
        st["ports"][0]["rx"].as_u64().unwrap_or(0) > 1000
    });
    let sock_mode = std::fs::metadata(s.path("ctl.sock")).map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o777
    });
    assert_eq!(sock_mode.unwrap(), 0o600, "control socket mode");
    let fin = node.stop_with(libc::SIGTERM);
    assert_eq!(fin["node"], 7);
    let rx = fin["ports"][0]["rx"].as_u64().unwrap();
    assert_eq!(fin["drops"]["not_for_us"].as_u64(), Some(rx), "{fin}");
    // Every frame received is in exactly one counter.
    assert_eq!(fin["accounting"]["received"].as_u64(), Some(rx), "{fin}");
    assert_eq!(fin["accounting"]["unaccounted"], 0, "{fin}");
    assert!(!s.path("ctl.sock").exists(), "socket removed on exit");
}
