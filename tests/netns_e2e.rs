//! End to end in network namespaces: real kernel TCP clients (curl) and servers (a Python
//! HTTP backend) through `tandem run` on net_af_packet ports, two workers, in nat and dsr
//! mode. See scripts/topology for the test bed.

mod common;

use common::*;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;
use tandem_dataplane::flow::FlowKey;
use tandem_dataplane::select::path;
use tandem_dataplane::services::SELECTION_SEED;

const NAT_VIP: &str = "192.0.2.10";
const DSR_VIP: &str = "192.0.2.20";
const NAT6_VIP: &str = "fd00::10";
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);

fn config(s: &Scratch, t: &Testbed, prefix: &str) -> String {
    let sx = &t.suffix;
    let mut backends = String::new();
    for (i, w) in [(1, 3), (2, 2), (3, 1)] {
        backends += &format!(
            "[[service.backend]]\nname = \"b{i}\"\naddress = \"10.1.0.1{i}\"\nport = 8080\nweight = {w}\n\
             paths = [{{ port = \"back\" }}, {{ port = \"back2\", mac = \"02:00:00:00:02:1{i}\" }}]\n"
        );
    }
    let mut dsr = String::new();
    for i in 1..=3 {
        dsr += &format!("[[service.backend]]\nname = \"d{i}\"\naddress = \"10.1.0.1{i}\"\npaths = [{{ port = \"back\" }}]\n");
    }
    let mut v6 = String::new();
    for i in 1..=3 {
        v6 += &format!(
            "[[service.backend]]\nname = \"v{i}\"\naddress = \"fd01::1{i}\"\nport = 8080\npaths = [{{ port = \"back\" }}]\n"
        );
    }
    let mut udp = String::new();
    for i in 1..=3 {
        udp += &format!(
            "[[service.backend]]\nname = \"u{i}\"\naddress = \"10.1.0.1{i}\"\nport = 5353\npaths = [{{ port = \"back\" }}]\n"
        );
    }
    format!(
        r#"{header}[[port]]
name = "front"
devargs = "net_af_packet0,iface=lf-{sx},qpairs=2"
ipv4 = "10.0.0.1/24"
ipv6 = "fd00::1/64"
[[port]]
name = "back"
devargs = "net_af_packet1,iface=lb-{sx},qpairs=2"
ipv4 = "10.1.0.1/24"
ipv6 = "fd01::1/64"
[[port]]
name = "back2"
devargs = "net_af_packet2,iface=lc-{sx},qpairs=2"
ipv4 = "10.2.0.1/24"
ipv6 = "fd02::1/64"
[mempool]
mbufs = 16383
[workers]
cores = [1, 1]
idle_sleep = "20us"
[flows]
capacity = 65536
[control]
socket = "{sock}"
[[service]]
name = "web"
vip = "{NAT_VIP}"
port = 80
protocol = "tcp"
mode = "nat"
{backends}
[[service]]
name = "dns"
vip = "{NAT_VIP}"
port = 53
protocol = "udp"
mode = "nat"
{udp}
[[service]]
name = "web6"
vip = "{NAT6_VIP}"
port = 80
protocol = "tcp"
mode = "nat"
{v6}
[[service]]
name = "webdsr"
vip = "{DSR_VIP}"
port = 80
protocol = "tcp"
mode = "dsr"
{dsr}"#,
        header = node_header(1, 512, prefix),
        sock = s.path("ctl.sock").display(),
    )
}

/// `n` requests to `vip`/id from the client, each its own TCP connection (the backend
/// speaks HTTP/1.0); returns how many each backend answered.
fn spread(t: &Testbed, vip: &str, n: usize) -> HashMap<String, usize> {
    let urls: Vec<String> = (0..n).map(|_| format!("http://{vip}/id")).collect();
    let out = in_ns(&t.ns("tc"), &format!("curl -g -s -m 60 {}", urls.join(" ")))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut counts = HashMap::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        *counts.entry(l.to_string()).or_insert(0) += 1;
    }
    assert_eq!(
        counts.values().sum::<usize>(),
        n,
        "every request answered: {counts:?}"
    );
    counts
}

/// Shares within 4 standard deviations of the weights.
fn assert_follows_weights(counts: &HashMap<String, usize>, weights: &[(&str, f64)], n: usize) {
    let total: f64 = weights.iter().map(|w| w.1).sum();
    for (name, w) in weights {
        let p = w / total;
        let want = p * n as f64;
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        let got = *counts.get(*name).unwrap_or(&0) as f64;
        println!(
            "  {name}: {got} of {n} (weight share {want:.0} ± {:.0})",
            4.0 * sd
        );
        assert!(
            (got - want).abs() <= 4.0 * sd,
            "{name}: got {got}, want {want:.0} ± {:.0}: {counts:?}",
            4.0 * sd
        );
    }
}

fn wait_flow(node: &Node, local_port: u16) -> serde_json::Value {
    wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        let f = node
            .ctl(&format!("show flow tcp {CLIENT}:{local_port} {NAT_VIP}:80"))
            .unwrap();
        if f["ok"] == true {
            Ok(f)
        } else {
            Err(format!("flow from port {local_port} never appeared: {f}"))
        }
    })
}

#[test]
fn namespace_end_to_end_nat_and_dsr() {
    let s = Scratch::new("e2e");
    let suffix = unique("e");
    let t = Testbed::up("scripts/topology", &suffix, "3");
    let mut procs = Procs(Vec::new());
    for i in 1..=3 {
        let log = std::fs::File::create(s.path(&format!("b{i}.log"))).unwrap();
        procs.0.push(
            in_ns(
                &t.ns(&format!("tb{i}")),
                &format!(
                    "exec python3 {} --name b{i} --port 8080 --port 80 --udp 5353",
                    script("tests/e2e/backend.py").display()
                ),
            )
            .stdout(log)
            .spawn()
            .unwrap(),
        );
    }
    let cfg = s.path("tandem.toml");
    std::fs::write(&cfg, config(&s, &t, &unique("te2e"))).unwrap();
    let mut node = Node::start(&cfg, &s.path("ctl.sock"), Some(&t.ns("tl")));
    // Backends up and reachable through the VIP.
    wait_for_answer(&t.ns("tc"), &format!("http://{NAT_VIP}/id"), &node);

    println!("nat spread over weights 3:2:1:");
    let n = 600;
    assert_follows_weights(
        &spread(&t, NAT_VIP, n),
        &[("b1", 3.0), ("b2", 2.0), ("b3", 1.0)],
        n,
    );
    println!("dsr spread over weights 1:1:1:");
    assert_follows_weights(
        &spread(&t, DSR_VIP, n),
        &[("b1", 1.0), ("b2", 1.0), ("b3", 1.0)],
        n,
    );

    println!("IPv6 nat spread over weights 1:1:1 (next hops found by neighbor discovery):");
    assert_follows_weights(
        &spread(&t, &format!("[{NAT6_VIP}]"), n),
        &[("b1", 1.0), ("b2", 1.0), ("b3", 1.0)],
        n,
    );

    // UDP through the nat VIP: each datagram from its own socket; every answer comes back
    // from VIP:53 (the reply rewritten), and the flows spread evenly.
    let udp = in_ns(
        &t.ns("tc"),
        &format!(
            "timeout 120 python3 -c '
import socket, collections
c = collections.Counter()
for i in range({n}):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(b\"q%d\" % i, (\"{NAT_VIP}\", 53))
    try:
        data, peer = s.recvfrom(2048)
    except Exception:
        print(\"LOST\", i, s.getsockname())
        continue
    assert peer == (\"{NAT_VIP}\", 53), peer
    name, echo = data.split(b\" \", 1)
    assert echo == b\"q%d\" % i, data
    c[name.decode()] += 1
    s.close()
for k, v in sorted(c.items()):
    print(k, v)
'"
        ),
    )
    .output()
    .unwrap();
    assert!(
        udp.status.success(),
        "udp client: {}\n{}",
        String::from_utf8_lossy(&udp.stderr),
        node.ctl("show stats").unwrap_or_default()
    );
    let mut counts = HashMap::new();
    let udp_out = String::from_utf8_lossy(&udp.stdout);
    assert!(
        !udp_out.contains("LOST"),
        "{udp_out}\n{}",
        node.ctl("show stats").unwrap_or_default()
    );
    for l in udp_out.lines() {
        let (k, v) = l.split_once(' ').unwrap();
        counts.insert(k.to_string(), v.parse::<usize>().unwrap());
    }
    println!("udp nat spread over weights 1:1:1:");
    assert_follows_weights(&counts, &[("b1", 1.0), ("b2", 1.0), ("b3", 1.0)], n);

    // Drain: the backend of a long download gets no new flows; the download completes.
    let size = 3_000_000;
    let file = s.path("drain.bin");
    let dl = start_download(&t.ns("tc"), NAT_VIP, &file, 45001, size, 600_000);
    let flow = wait_flow(&node, 45001);
    let busy = flow["backend"].as_str().unwrap().to_string();
    let r = node.ctl(&format!("backend drain web {busy}")).unwrap();
    assert_eq!(r["ok"], true, "{r}");
    let during = spread(&t, NAT_VIP, 120);
    println!("while {busy} drains: {during:?}");
    assert!(
        !during.contains_key(&busy),
        "drained backend {busy} took new connections: {during:?}"
    );
    let b = node.ctl("show backends web").unwrap();
    let row = b["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["backend"] == busy.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["state"], "draining");
    finish_download(dl, &file, size, Duration::from_secs(60));
    assert_eq!(
        node.ctl(&format!("backend enable web {busy}")).unwrap()["ok"],
        true
    );

    // Path down mid-download: pick a client port whose flow's primary path is "back", take
    // that link down, and the download finishes over "back2".
    let port = (46000u16..47000)
        .find(|p| {
            let k = FlowKey::v4(
                CLIENT.octets(),
                NAT_VIP.parse::<Ipv4Addr>().unwrap().octets(),
                *p,
                80,
                6,
            );
            // Both paths healthy at full share, as the node starts.
            path::choose(k.hash(SELECTION_SEED), &[(true, 1000), (true, 1000)]).0 == 0
        })
        .unwrap();
    let file = s.path("path.bin");
    let dl = start_download(&t.ns("tc"), NAT_VIP, &file, port, size, 600_000);
    let flow = wait_flow(&node, port);
    assert_eq!(flow["primary_path"], "back", "{flow}");
    assert_eq!(flow["backup_path"], "back2", "{flow}");
    std::thread::sleep(Duration::from_millis(1000));
    sh(&format!(
        "ip -n {} link set lb-{} down",
        t.ns("tl"),
        t.suffix
    ));
    node.wait_stats("link down seen", Duration::from_secs(5), |st| {
        st["ports"][1]["link"] == "down"
    });
    finish_download(dl, &file, size, Duration::from_secs(60));
    let st = node.ctl("show stats").unwrap();
    let failovers: u64 = st["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["path_failovers"].as_u64().unwrap())
        .sum();
    assert!(failovers > 0, "no packet took the backup path: {st}");
    sh(&format!("ip -n {} link set lb-{} up", t.ns("tl"), t.suffix));

    // Two workers: flows were replicated between them.
    let created: Vec<u64> = st["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["flows_created"].as_u64().unwrap())
        .collect();
    println!(
        "flows created per worker: {created:?}; replicated: {}",
        st["replicated_to_workers"]
    );
    assert!(st["replicated_to_workers"].as_u64().unwrap() > 0);

    // The human view of the control socket.
    let out = Command::new(tandem_bin())
        .args(["ctl", "--socket"])
        .arg(s.path("ctl.sock"))
        .args(["show", "backends"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("SERVICE") && text.contains("b3") && text.contains("webdsr"),
        "{text}"
    );

    let fin = node.stop();
    println!("final drops: {}", fin["drops"]);
    drop(procs);
}
