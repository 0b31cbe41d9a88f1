//! The decisions and the files, from a real snapshot: each reason, the health gate, two
//! services on one VIP, IPv6, and the file lines BIRD reads.

use super::*;
use tandem_config::Config;

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
[[service]]
name = "web"
vip = "192.0.2.10"
port = 80
protocol = "tcp"
mode = "dsr"
[[service.backend]]
name = "a"
address = "10.0.0.11"
paths = [{ port = "front", mac = "02:00:00:00:00:99" }]
[[service.backend]]
name = "b"
address = "10.0.0.12"
paths = [{ port = "front", mac = "02:00:00:00:00:99" }]
[[service]]
name = "tls"
vip = "192.0.2.10"
port = 443
protocol = "tcp"
mode = "dsr"
[[service.backend]]
name = "c"
address = "10.0.0.13"
paths = [{ port = "front", mac = "02:00:00:00:00:99" }]
[[service]]
name = "web6"
vip = "fd00::10"
port = 80
protocol = "tcp"
mode = "dsr"
[[service.backend]]
name = "a6"
address = "fd00::11"
paths = [{ port = "front", mac = "02:00:00:00:00:99" }]
"#;

fn snapshot() -> Services {
    let cfg = Config::from_toml(CONFIG).unwrap();
    let mut s = Services::from_config(&cfg, &[[2, 0, 0, 0, 0, 1]]);
    for b in s.backends.iter_mut() {
        b.up = true;
    }
    s
}

fn set_up(s: &mut Services, name: &str, up: bool) {
    s.backends.iter_mut().find(|b| b.name == name).unwrap().up = up;
}

fn why(d: &[Decision], vip: &str) -> (bool, Why, u32) {
    let d = d.iter().find(|d| d.vip.to_string() == vip).unwrap();
    (d.announce, d.why, d.healthy)
}

#[test]
fn a_vip_is_announced_while_the_node_serves_and_a_service_has_enough_healthy() {
    let mut s = snapshot();
    let d = decide(&s, NodeState::Ready, 2);
    assert_eq!(why(&d, "192.0.2.10"), (true, Why::Ready, 2));
    assert_eq!(why(&d, "fd00::10"), (false, Why::TooFewHealthy, 1));
    assert_eq!(d[0].services, vec!["web", "tls"]);
    // One of web's two down: neither service of the VIP has two.
    set_up(&mut s, "a", false);
    assert_eq!(
        why(&decide(&s, NodeState::Ready, 2), "192.0.2.10"),
        (false, Why::TooFewHealthy, 1)
    );
    // With min_healthy 1, tls alone keeps the VIP, even with web's backends all down.
    set_up(&mut s, "b", false);
    assert_eq!(
        why(&decide(&s, NodeState::Ready, 1), "192.0.2.10"),
        (true, Why::Ready, 1)
    );
    set_up(&mut s, "c", false);
    assert_eq!(
        why(&decide(&s, NodeState::Ready, 1), "192.0.2.10"),
        (false, Why::TooFewHealthy, 0)
    );
    // A draining or removed backend is not healthy.
    let mut s = snapshot();
    s.backends
        .iter_mut()
        .find(|b| b.name == "a6")
        .unwrap()
        .state = BackendState::Draining;
    assert_eq!(
        why(&decide(&s, NodeState::Ready, 1), "fd00::10").1,
        Why::TooFewHealthy
    );
    let mut s = snapshot();
    s.backends
        .iter_mut()
        .find(|b| b.name == "a6")
        .unwrap()
        .removing = true;
    assert_eq!(
        why(&decide(&s, NodeState::Ready, 1), "fd00::10").1,
        Why::TooFewHealthy
    );
}

#[test]
fn the_node_state_comes_before_health() {
    let s = snapshot();
    for (node, w) in [
        (NodeState::Snapshotting, Why::Snapshotting),
        (NodeState::Draining, Why::Draining),
        (NodeState::Stopping, Why::Stopping),
    ] {
        for d in decide(&s, node, 1) {
            assert_eq!((d.announce, d.why), (false, w), "{node:?}");
        }
    }
}

#[test]
fn the_files_hold_a_route_line_per_announced_vip_by_family() {
    let s = snapshot();
    let f = files(&decide(&s, NodeState::Ready, 1));
    assert_eq!(f.v4, "route 192.0.2.10/32 blackhole;\n");
    assert_eq!(f.v6, "route fd00::10/128 blackhole;\n");
    assert_eq!(files(&decide(&s, NodeState::Draining, 1)), Files::default());
}

#[test]
fn an_unwritable_routes_file_is_an_error_naming_its_key_and_bird_down_is_not() {
    let dir = std::env::temp_dir().join(format!("tandem-bgp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let blocker = dir.join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let mut cfg = BgpConfig {
        bird_socket: dir.join("no-bird.ctl"),
        routes4: dir.join("v4.conf"),
        routes6: blocker.join("v6.conf"),
        min_healthy: 1,
        withdraw_grace: Duration::from_secs(1),
    };
    let e = Announcer::start(&cfg).err().unwrap().to_string();
    assert!(e.starts_with("bgp.routes6: cannot write"), "{e}");
    cfg.routes6 = dir.join("v6.conf");
    let mut a = Announcer::start(&cfg).unwrap();
    // No BIRD: the node goes on, and says so.
    let s = snapshot();
    a.tick(&s, NodeState::Ready, Instant::now());
    let shown = a.show(Instant::now());
    assert_eq!(shown["bird"]["state"], "bird_unreachable", "{shown}");
    assert_eq!(shown["vips"][0]["wanted"], true);
    assert_eq!(shown["vips"][0]["announced"], false, "{shown}");
    // The files are written all the same, whole.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&cfg.routes4)
        .unwrap_or_default()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the routes file was never written"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        std::fs::read_to_string(&cfg.routes4).unwrap(),
        "route 192.0.2.10/32 blackhole;\n"
    );
    drop(a);
    std::fs::remove_dir_all(&dir).unwrap();
}
