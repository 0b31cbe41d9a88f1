//! A three-node cluster end to end: separate `tandem run` processes on af_packet ports in
//! network namespaces, each with kernel twins and its own BIRD 2, behind a router namespace
//! whose BIRD learns the VIPs by BGP with BFD and routes them by ECMP (see
//! scripts/cluster-topology); no route is edited by the test. Twenty rate-limited downloads
//! through a VIP while one node is killed with SIGKILL, then started again: every download
//! completes with the right bytes, new connections succeed all along, the surviving nodes
//! agree on every flow, and the restarted node snapshots and rejoins. Run in nat and in dsr
//! mode. A second test attacks one node's sync channel with a replayed, a forged and a
//! stranger's datagram.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NAT_VIP: &str = "192.0.2.10";

/// The tests that load three (or two) nodes, their BIRDs and the router at once take it in
/// turn: two of them side by side on a two-core machine starve each other's nodes.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}
const DSR_VIP: &str = "192.0.2.20";
const DOWNLOADS: u16 = 20;
/// 1.6 MB at 130 kB/s: about 12 s per download.
const BLOB: &str = "/blob?size=1600000&rate=130000";

/// The `[cluster]` section shared by every node. Node 3's MAC is left out: its peers
/// resolve it by ARP.
fn cluster_section(secret: &Path, sync: &[String], addr: impl Fn(u16) -> String) -> String {
    let mut c = format!(
        "[cluster]\nsecret_file = \"{}\"\nheartbeat = \"100ms\"\ndead_after = \"300ms\"\n",
        secret.display()
    );
    for (i, sync) in sync.iter().enumerate() {
        let id = i as u16 + 1;
        c += &format!(
            "[[cluster.node]]\nid = {id}\nweight = 1\naddress = \"{}\"\nsync = \"{sync}\"\n",
            addr(id)
        );
        if id != 3 {
            c += &format!("mac = \"02:00:00:00:01:0{id}\"\n");
        }
    }
    c
}

fn node_config(s: &Scratch, t: &Testbed, id: u16, prefix: &str, cluster: &str) -> String {
    let bed = bed_dir(t);
    let mut backends = String::new();
    for i in 1..=2 {
        backends += &format!(
            "[[service.backend]]\nname = \"b{i}\"\naddress = \"10.1.0.1{i}\"\nport = 8080\npaths = [{{ port = \"back\" }}]\n"
        );
    }
    let mut dsr = String::new();
    for i in 1..=2 {
        dsr += &format!(
            "[[service.backend]]\nname = \"d{i}\"\naddress = \"10.1.0.1{i}\"\npaths = [{{ port = \"back\" }}]\n"
        );
    }
    format!(
        r#"{header}[[port]]
name = "front"
devargs = "net_af_packet0,iface=n{id}f"
ipv4 = "10.0.0.{id}/24"
gateway = "10.0.0.254"
mac = "02:00:00:00:01:0{id}"
mtu = 1600
kernel = "tdm-front"
[[port]]
name = "back"
devargs = "net_af_packet1,iface=n{id}b"
ipv4 = "10.1.0.{id}/24"
mac = "02:00:00:00:02:0{id}"
mtu = 1600
kernel = "tdm-back"
[bgp]
bird_socket = "{bed}/n{id}.ctl"
routes4 = "{bed}/n{id}-vips4.conf"
routes6 = "{bed}/n{id}-vips6.conf"
withdraw_grace = "300ms"
[health]
probe = "tcp"
interval = "200ms"
timeout = "400ms"
down_after = 3
up_after = 2
[mempool]
mbufs = 8191
[workers]
cores = [1]
idle_sleep = "100us"
[flows]
capacity = 16384
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
name = "webdsr"
vip = "{DSR_VIP}"
port = 80
protocol = "tcp"
mode = "dsr"
{dsr}
{cluster}"#,
        header = node_header(id, 256, &format!("{prefix}{id}")),
        sock = s.path(&format!("ctl{id}.sock")).display(),
        bed = bed.display(),
    )
}

/// Where the test bed keeps the BIRDs' sockets and the nodes' routes files.
fn bed_dir(t: &Testbed) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/tmp/tandem-cluster-topology-{}", t.suffix))
}

/// The nodes the router's table sends `dest` to (`ip route show`: one `via`, or a
/// `nexthop via` per path), from its BIRD's ECMP routes; `table` 200 is the backends' side.
fn router_hops(t: &Testbed, dest: &str, table: &str) -> Vec<u8> {
    let out = Command::new("ip")
        .args(["-n", &t.ns("kr"), "route", "show", "table", table, dest])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut hops: Vec<u8> = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "via")
        .filter_map(|w| w[1].rsplit('.').next()?.parse().ok())
        .collect();
    hops.sort_unstable();
    hops
}

/// Waits until the router sends `dest` to exactly `want`; how long that took.
fn wait_hops(t: &Testbed, dest: &str, table: &str, want: &[u8], timeout: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let hops = router_hops(t, dest, table);
        if hops == want {
            return start.elapsed();
        }
        if start.elapsed() > timeout {
            let log = std::fs::read_to_string(bed_dir(t).join("router.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "the router sends {dest} (table {table}) to nodes {hops:?}, not {want:?}, after {timeout:?}\nrouter.log (newest first):\n{}",
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn nodes_doc(n: &Node) -> Value {
    n.ctl("show nodes").unwrap_or_default()
}

/// Waits until `node` sees `want` nodes serving (alive and ready, itself included).
fn wait_serving(n: &Node, want: usize, timeout: Duration) -> Value {
    wait_for(timeout, Duration::from_millis(100), || {
        let d = nodes_doc(n);
        let serving = d["nodes"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|x| x["serving"] == true).count());
        if serving == want {
            return Ok(d);
        }
        Err(format!("{want} serving nodes: {d}\n{}", n.logs()))
    })
}

fn start_node(s: &Scratch, t: &Testbed, id: u16, cfg: &str) -> Node {
    let path = s.path(&format!("node{id}.toml"));
    std::fs::write(&path, cfg).unwrap();
    Node::start(
        &path,
        &s.path(&format!("ctl{id}.sock")),
        Some(&t.ns(&format!("kn{id}"))),
    )
}

fn flow_on(n: &Node, client_port: u16, vip: &str) -> Option<Value> {
    let d = n
        .ctl(&format!("show flow tcp 10.9.0.100:{client_port} {vip}:80"))
        .ok()?;
    (d["ok"] == true).then_some(d)
}

/// Every download's record on node `n` (ports from `port_base`), waiting up to 20 s for
/// them: a half-open flow is known only to its receiving and primary nodes, and on a loaded
/// machine a connection can take a SYN retransmission or two to open.
fn wait_records(n: &Node, port_base: u16, vip: &str) -> Vec<Value> {
    let settle = Instant::now() + Duration::from_secs(20);
    (0..DOWNLOADS)
        .map(|i| {
            let left = settle.saturating_duration_since(Instant::now());
            wait_for(left, Duration::from_millis(200), || {
                flow_on(n, port_base + i, vip)
                    .ok_or_else(|| format!("the node has no record of download {i}\n{}", n.logs()))
            })
        })
        .collect()
}

/// The load of the failover tests: `DOWNLOADS` downloads from ports `port_base`.. and a new
/// connection every 100 ms for `probe_secs`, all from the client namespace.
fn start_load(t: &Testbed, vip: &str, port_base: u16, probe_secs: u32) -> (Procs, Procs) {
    let fetch = script("tests/e2e/fetch.py");
    let mut downloads = Procs(Vec::new());
    for i in 0..DOWNLOADS {
        let c = in_ns(
            &t.ns("kc"),
            &format!(
                "python3 {} download {vip} '{BLOB}' {}",
                fetch.display(),
                port_base + i
            ),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        downloads.0.push(c);
    }
    let probe = in_ns(
        &t.ns("kc"),
        &format!("python3 {} probe {vip} /id {probe_secs}", fetch.display()),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    (downloads, Procs(vec![probe]))
}

/// Every download's result (each must be whole and intact) and the probe's: the longest
/// pause a download saw, and the probe's report.
fn finish_load(mut downloads: Procs, mut probe: Procs) -> (f64, Value) {
    let mut worst_gap = 0.0f64;
    for (i, c) in downloads.0.drain(..).enumerate() {
        let out = wait_output(c, Duration::from_secs(60));
        let v: Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("download {i}: {e}: {out:?}"));
        assert_eq!(v["ok"], true, "download {i} failed: {v}");
        worst_gap = worst_gap.max(v["max_gap_ms"].as_f64().unwrap_or(0.0));
    }
    let p = wait_output(probe.0.remove(0), Duration::from_secs(40));
    (worst_gap, serde_json::from_str(p.trim()).unwrap())
}

fn failover(t: &Testbed, s: &Scratch, mode: &str, vip: &str, port_base: u16) {
    println!("== {mode}: three nodes, {DOWNLOADS} downloads, node 2 killed and restarted");
    // Each node in its own namespace, the sync channel on the management network.
    let sync: Vec<String> = (1..=3).map(|id| format!("10.255.0.{id}:7001")).collect();
    let secret = write_secret(s);
    let cluster = cluster_section(&secret, &sync, |id| format!("10.0.0.{id}"));
    let prefix = unique(&format!("tcl{mode}"));
    let cfgs: Vec<String> = (1..=3)
        .map(|id| node_config(s, t, id, &prefix, &cluster))
        .collect();
    let mut nodes: Vec<Option<Node>> = (1..=3)
        .map(|id| Some(start_node(s, t, id, &cfgs[usize::from(id) - 1])))
        .collect();
    for n in nodes.iter().flatten() {
        wait_serving(n, 3, Duration::from_secs(20));
    }
    // Each node's BIRD announces its VIPs and the route toward clients over its twins.
    let took = wait_hops(t, vip, "main", &[1, 2, 3], Duration::from_secs(30));
    wait_hops(t, "default", "200", &[1, 2, 3], Duration::from_secs(30));
    println!(
        "  the router has {vip} via nodes 1, 2, 3 ({} ms after all served)",
        took.as_millis()
    );
    // A first connection resolves every next hop.
    let warm = in_ns(
        &t.ns("kc"),
        &format!("curl -s -m 10 --retry 3 http://{vip}/id"),
    )
    .output()
    .unwrap();
    assert!(warm.status.success(), "first request through {vip} failed");

    let (downloads, probe) = start_load(t, vip, port_base, 16);

    // Let the downloads settle (on a loaded machine a connection can take a SYN
    // retransmission or two to open), then see who serves what.
    std::thread::sleep(Duration::from_secs(3));
    let n1 = nodes[0].as_ref().unwrap();
    let mut primaries = [0usize; 4];
    for f in wait_records(n1, port_base, vip) {
        primaries[f["primary_node"].as_u64().unwrap_or(0) as usize] += 1;
    }
    println!(
        "  primaries of the downloads: node1 {} node2 {} node3 {}",
        primaries[1], primaries[2], primaries[3]
    );
    assert!(primaries[2] > 0, "node 2 is the primary of no download");

    // kill -9 node 2: nothing else is done; BFD tells the router.
    let killed_at = Instant::now();
    let mut victim = nodes[1].take().unwrap();
    let mut child = victim.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let reaped = killed_at.elapsed();
    wait_hops(t, vip, "main", &[1, 3], Duration::from_secs(5));
    let front = killed_at.elapsed();
    wait_hops(t, "default", "200", &[1, 3], Duration::from_secs(5));
    let back = killed_at.elapsed();
    println!(
        "  node 2 killed (reaped after {} ms); the router dropped it (BFD 100 ms x 3) from {vip} {} ms after the kill, from the backends' side after {} ms",
        reaped.as_millis(),
        front.as_millis(),
        back.as_millis()
    );
    assert!(front < Duration::from_secs(1), "withdrawal took {front:?}");

    // The survivors see it dead and agree on every flow.
    for n in [0, 2] {
        wait_serving(nodes[n].as_ref().unwrap(), 2, Duration::from_secs(5));
    }
    std::thread::sleep(Duration::from_secs(2));
    let (a, b) = (nodes[0].as_ref().unwrap(), nodes[2].as_ref().unwrap());
    for i in 0..DOWNLOADS {
        let fa = flow_on(a, port_base + i, vip).expect("node 1 lost a flow");
        let fb = flow_on(b, port_base + i, vip).expect("node 3 lost a flow");
        for k in [
            "backend",
            "primary_node",
            "backup_node",
            "primary_path",
            "service",
        ] {
            assert_eq!(
                fa[k], fb[k],
                "nodes 1 and 3 disagree on {k} of download {i}: {fa} {fb}"
            );
        }
    }
    println!("  nodes 1 and 3 agree on all {DOWNLOADS} flows (backend, primary, backup, path)");

    // Node 2 starts again: it asks for a snapshot, then serves, and only then announces.
    let restarted = start_node(s, t, 2, &cfgs[1]);
    let mut early = 0;
    wait_for(Duration::from_secs(20), Duration::from_millis(20), || {
        let d = nodes_doc(&restarted);
        let me = d["nodes"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["self"] == true).cloned());
        let ready = me.as_ref().is_some_and(|m| m["status"] == "ready");
        if router_hops(t, vip, "main").contains(&2) && !ready {
            early += 1;
        }
        if ready {
            Ok(())
        } else {
            Err(format!("node 2 never became ready: {d}"))
        }
    });
    assert_eq!(
        early, 0,
        "the router had node 2 for {vip} before its snapshot was complete"
    );
    let d = wait_serving(&restarted, 3, Duration::from_secs(20));
    println!(
        "  node 2 restarted: status {}, {} records from the snapshot, after {} ms",
        d["status"],
        d["snapshot_records"],
        killed_at.elapsed().as_millis()
    );
    assert_eq!(d["status"], "ready");
    assert!(d["snapshot_records"].as_u64().unwrap_or(0) >= u64::from(DOWNLOADS));
    assert!(
        flow_on(&restarted, port_base, vip).is_some(),
        "no record after the snapshot"
    );
    for n in [0, 2] {
        wait_serving(nodes[n].as_ref().unwrap(), 3, Duration::from_secs(5));
    }
    let back_in = wait_hops(t, vip, "main", &[1, 2, 3], Duration::from_secs(20));
    wait_hops(t, "default", "200", &[1, 2, 3], Duration::from_secs(20));
    println!(
        "  node 2 announced again {} ms after it was ready",
        back_in.as_millis()
    );
    nodes[1] = Some(restarted);

    // `node drain` on node 3: the others rank it out of new flows while it keeps serving
    // its downloads. Thirty new connections from known ports: none may have node 3 as
    // primary.
    let n3 = nodes[2].as_ref().unwrap();
    let d = n3.ctl("node drain 60s").unwrap();
    assert_eq!(d["ok"], true, "{d}");
    let gone = wait_hops(t, vip, "main", &[1, 2], Duration::from_secs(5));
    println!(
        "  node 3 drains: the router has {vip} via two nodes {} ms after `node drain`",
        gone.as_millis()
    );
    assert!(
        gone < Duration::from_secs(1),
        "drain withdrawal took {gone:?}"
    );
    let bgp = n3.ctl("show bgp").unwrap();
    assert_eq!(bgp["vips"][0]["announced"], false, "{bgp}");
    assert_eq!(bgp["vips"][0]["why"], "draining", "{bgp}");
    for n in [0, 1] {
        wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
            let status = &nodes_doc(nodes[n].as_ref().unwrap())["nodes"][2]["status"];
            if status == "draining" {
                Ok(())
            } else {
                Err(format!("node {} never saw node 3 draining", n + 1))
            }
        });
    }
    let drain_ports = port_base + 500;
    let out = in_ns(
        &t.ns("kc"),
        &format!(
            "for p in $(seq {drain_ports} {}); do curl -s -m 20 --local-port $p http://{vip}/id || exit 1; done",
            drain_ports + 29
        ),
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "requests failed while node 3 drained");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 30);
    let mut seen = 0;
    for p in drain_ports..drain_ports + 30 {
        if let Some(f) = flow_on(nodes[0].as_ref().unwrap(), p, vip) {
            seen += 1;
            assert_ne!(f["primary_node"], 3, "a draining node took a new flow: {f}");
        }
    }
    println!(
        "  node 3 draining: 30 new connections, {seen} seen on node 1, none with node 3 as primary"
    );
    assert!(
        seen >= 25,
        "only {seen} of 30 drain-time flows known to node 1"
    );
    assert_eq!(n3.ctl("node enable").unwrap()["ok"], true);
    wait_hops(t, vip, "main", &[1, 2, 3], Duration::from_secs(5));

    // Every download completes with the right bytes.
    let (worst_gap, pv) = finish_load(downloads, probe);
    println!(
        "  all {DOWNLOADS} downloads complete and intact; longest pause seen by a client {worst_gap:.0} ms; new connections: {} ok, {} failed, slowest {} ms",
        pv["ok"], pv["failed"], pv["slowest_ms"]
    );
    assert_eq!(pv["failed"], 0, "new connections failed: {pv}");
    assert!(pv["ok"].as_u64().unwrap_or(0) > 50, "{pv}");
    // Detection, from the survivors' logs.
    for n in [0, 2] {
        let logs = nodes[n].as_ref().unwrap().logs();
        if let Some(l) = logs.lines().find(|l| l.contains("node dead")) {
            println!("  node {}: {}", n + 1, l.trim());
        }
    }
    let failovers: u64 = [0, 2]
        .iter()
        .map(|&n| {
            let st = nodes[n].as_ref().unwrap().ctl("show stats").unwrap();
            st["workers"][0]["node_failovers"].as_u64().unwrap_or(0)
        })
        .sum();
    println!("  packets served by a backup while their primary was away: {failovers}");
    assert!(failovers > 0);
    if mode == "nat" {
        health_gates_the_announcement(t);
    }
    for n in nodes.iter_mut().flatten() {
        n.stop_with(libc::SIGTERM);
    }
    drop(victim);
}

/// Every backend of the nat service fails its probes (its port filtered in the backends'
/// namespaces): every node withdraws the nat VIP and keeps the dsr one; the filter lifted,
/// every node announces it again.
fn health_gates_the_announcement(t: &Testbed) {
    for i in 1..=2 {
        nft_drop_port(&t.ns(&format!("kb{i}")), 8080);
    }
    let gone = wait_hops(t, NAT_VIP, "main", &[], Duration::from_secs(10));
    assert_eq!(
        router_hops(t, DSR_VIP, "main"),
        vec![1, 2, 3],
        "the dsr VIP went too"
    );
    println!("  the nat service's backends fail their probes: {NAT_VIP} withdrawn by every node {} ms later, {DSR_VIP} kept", gone.as_millis());
    for i in 1..=2 {
        nft(&t.ns(&format!("kb{i}")), "delete table inet tandem_test");
    }
    let back = wait_hops(t, NAT_VIP, "main", &[1, 2, 3], Duration::from_secs(10));
    println!(
        "  the backends recover: {NAT_VIP} announced by every node again {} ms later",
        back.as_millis()
    );
}

/// Reads a child's stdout to the end, killing it past the timeout.
fn wait_output(mut c: Child, timeout: Duration) -> String {
    wait_child(&mut c, timeout, "a client");
    let mut s = String::new();
    use std::io::Read;
    c.stdout.take().unwrap().read_to_string(&mut s).unwrap();
    s
}

#[test]
fn three_nodes_survive_a_killed_node_nat_and_dsr() {
    let _turn = heavy();
    let sx = unique("c");
    let t = Testbed::up("scripts/cluster-topology", &sx, "");
    let s = Scratch::new("cluster");
    let mut backends = Procs(Vec::new());
    for i in 1..=2 {
        let c = in_ns(
            &t.ns(&format!("kb{i}")),
            &format!(
                "exec python3 {} --name b{i} --port 8080 --port 80",
                script("tests/e2e/backend.py").display()
            ),
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
        backends.0.push(c);
    }
    std::thread::sleep(Duration::from_millis(500));
    failover(&t, &s, "nat", NAT_VIP, 42000);
    failover(&t, &s, "dsr", DSR_VIP, 43000);
    drop(backends);
}

/// A rolling reload under load: node 1 reloads (b1's weight up, a dsr backend removed, a
/// new service), then node 2 is killed while the nodes' configurations differ, then node 3
/// reloads by SIGHUP. Records of the services both sides know keep flowing, the survivors
/// take over node 2's flows, and no download or new connection is lost.
#[test]
fn a_rolling_reload_under_load_loses_no_connection() {
    let _turn = heavy();
    let sx = unique("r");
    let t = Testbed::up("scripts/cluster-topology", &sx, "");
    let s = Scratch::new("rolling");
    let mut backends = Procs(Vec::new());
    for i in 1..=2 {
        backends.0.push(
            in_ns(
                &t.ns(&format!("kb{i}")),
                &format!(
                    "exec python3 {} --name b{i} --port 8080 --port 80",
                    script("tests/e2e/backend.py").display()
                ),
            )
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
        );
    }
    let sync: Vec<String> = (1..=3).map(|id| format!("10.255.0.{id}:7001")).collect();
    let secret = write_secret(&s);
    let cluster = cluster_section(&secret, &sync, |id| format!("10.0.0.{id}"));
    let prefix = unique("tclr");
    // Metrics on each node's sync address, for the Prometheus server in node 1's namespace;
    // latency windows long enough to hold every sample of the run (`show latency` against
    // the histogram Prometheus sums).
    let cfgs: Vec<String> = (1..=3)
        .map(|id| {
            node_config(&s, &t, id, &prefix, &cluster).replace(
                "[control]",
                &format!(
                    "[metrics]\nlisten = \"10.255.0.{id}:9100\"\n[qos]\nwindow = \"5m\"\n[control]"
                ),
            )
        })
        .collect();
    let next = |c: &str| {
        c.replace(
            "name = \"b1\"\naddress = \"10.1.0.11\"\nport = 8080\n",
            "name = \"b1\"\naddress = \"10.1.0.11\"\nport = 8080\nweight = 3\n",
        )
        .replace(
            "[[service.backend]]\nname = \"d2\"\naddress = \"10.1.0.12\"\npaths = [{ port = \"back\" }]\n",
            "",
        )
        .replace(
            "[cluster]",
            &format!(
                "[[service]]\nname = \"alt\"\nvip = \"{NAT_VIP}\"\nport = 8080\nprotocol = \"tcp\"\n\
                 mode = \"nat\"\n[[service.backend]]\nname = \"b1\"\naddress = \"10.1.0.11\"\n\
                 port = 80\npaths = [{{ port = \"back\" }}]\n[cluster]"
            ),
        )
    };
    let mut nodes: Vec<Option<Node>> = (1..=3)
        .map(|id| Some(start_node(&s, &t, id, &cfgs[usize::from(id) - 1])))
        .collect();
    for n in nodes.iter().flatten() {
        wait_serving(n, 3, Duration::from_secs(20));
    }
    wait_hops(&t, NAT_VIP, "main", &[1, 2, 3], Duration::from_secs(30));
    wait_hops(&t, "default", "200", &[1, 2, 3], Duration::from_secs(30));
    let _prometheus = start_prometheus(&t, &s);
    let warm = in_ns(
        &t.ns("kc"),
        &format!("curl -s -m 10 --retry 3 http://{NAT_VIP}/id"),
    )
    .output()
    .unwrap();
    assert!(warm.status.success(), "first request failed");
    trace_one_connection(&t, &nodes);
    let (downloads, probe) = start_load(&t, NAT_VIP, 44000, 12);
    std::thread::sleep(Duration::from_secs(2));
    // Every download open (and so known to every node) before the nodes change.
    wait_records(nodes[0].as_ref().unwrap(), 44000, NAT_VIP);

    // Node 1 first.
    std::fs::write(s.path("node1.toml"), next(&cfgs[0])).unwrap();
    let r = nodes[0].as_ref().unwrap().ctl("reload").unwrap();
    assert_eq!(r["ok"], true, "{r}");
    println!("  node 1 reloaded: {}", r["changes"]);
    std::thread::sleep(Duration::from_secs(2));

    // Node 2 dies while node 1's services differ from node 3's.
    let mut victim = nodes[1].take().unwrap();
    let mut child = victim.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    wait_hops(&t, NAT_VIP, "main", &[1, 3], Duration::from_secs(5));
    for n in [0, 2] {
        wait_serving(nodes[n].as_ref().unwrap(), 2, Duration::from_secs(5));
    }
    println!("  node 2 killed, and gone from the router by BFD");
    std::thread::sleep(Duration::from_secs(2));
    let (a, b) = (nodes[0].as_ref().unwrap(), nodes[2].as_ref().unwrap());
    for i in 0..DOWNLOADS {
        let fa = flow_on(a, 44000 + i, NAT_VIP).expect("node 1 lost a flow");
        let fb = flow_on(b, 44000 + i, NAT_VIP).expect("node 3 lost a flow");
        assert_eq!(fa["backend"], fb["backend"], "{fa} {fb}");
    }
    println!("  nodes 1 and 3 agree on every download's backend");

    // Node 3 by SIGHUP; then the new service answers through both.
    std::fs::write(s.path("node3.toml"), next(&cfgs[2])).unwrap();
    let n3 = nodes[2].as_ref().unwrap();
    unsafe_kill(n3.pid(), libc::SIGHUP);
    wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        let services = n3.ctl("show services").unwrap().to_string();
        if services.contains("\"alt\"") {
            Ok(())
        } else {
            Err(format!("SIGHUP did not reload node 3\n{}", n3.logs()))
        }
    });
    let alt = in_ns(
        &t.ns("kc"),
        &format!("curl -s -m 10 --retry 2 http://{NAT_VIP}:8080/id"),
    )
    .output()
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&alt.stdout).trim(),
        "b1",
        "the new service"
    );

    let (worst_gap, pv) = finish_load(downloads, probe);
    for (i, n) in [(1, 0), (3, 2)] {
        let d = nodes_doc(nodes[n].as_ref().unwrap());
        println!(
            "  node {i} refused records: {}",
            d["refused"]["invalid_records_by_reason"]
        );
        assert_eq!(
            d["refused"]["invalid_records_by_reason"]["unknown_backend"], 0,
            "{d}"
        );
    }
    println!(
        "  all {DOWNLOADS} downloads intact; longest pause {worst_gap:.0} ms; new connections: {} ok, {} failed",
        pv["ok"], pv["failed"]
    );
    assert_eq!(pv["failed"], 0, "new connections failed: {pv}");
    latency_sums_over_nodes(&t, &nodes);
    for n in nodes.iter_mut().flatten() {
        n.stop_with(libc::SIGTERM);
    }
    drop(victim);
    drop(backends);
}

/// Where the Prometheus server of the rolling test listens, in node 1's namespace.
const PROMETHEUS: &str = "127.0.0.1:9190";

/// A real Prometheus server in node 1's namespace scraping every node's `/metrics` each
/// second.
fn start_prometheus(t: &Testbed, s: &Scratch) -> Procs {
    let cfg = s.path("prometheus.yml");
    std::fs::write(
        &cfg,
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tandem\n    \
         static_configs:\n      - targets: ['10.255.0.1:9100', '10.255.0.2:9100', '10.255.0.3:9100']\n",
    )
    .unwrap();
    let p = in_ns(
        &t.ns("kn1"),
        &format!(
            "exec prometheus --config.file={} --storage.tsdb.path={} --web.listen-address={PROMETHEUS} --log.level=warn",
            cfg.display(),
            s.path("tsdb").display()
        ),
    )
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(s.path("prometheus.log")).unwrap())
    .spawn()
    .unwrap();
    let procs = Procs(vec![p]);
    wait_for(
        Duration::from_secs(60),
        Duration::from_millis(500),
        || match prom_query(t, "count(up{job=\"tandem\"} == 1)") {
            Some(3.0) => Ok(()),
            other => Err(format!(
                "Prometheus scrapes {other:?} of 3 nodes: {}",
                std::fs::read_to_string(s.path("prometheus.log")).unwrap_or_default()
            )),
        },
    );
    procs
}

fn prom_query(t: &Testbed, q: &str) -> Option<f64> {
    let out = in_ns(
        &t.ns("kn1"),
        &format!("curl -s -G 'http://{PROMETHEUS}/api/v1/query' --data-urlencode 'query={q}'"),
    )
    .output()
    .ok()?;
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// Latency histograms that aggregate: b1's probe latency on nodes 1 and 3, summed by
/// Prometheus over both nodes' `_bucket` series, against each node's `show latency` (HDR
/// histograms): the counts agree, and the median Prometheus reads from the summed buckets
/// lies within a bucket of the nodes' own medians (a mixture's median lies between its
/// parts').
fn latency_sums_over_nodes(t: &Testbed, nodes: &[Option<Node>]) {
    const BOUNDS_S: [f64; 17] = [
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
        1.0, 2.5, 5.0, 10.0,
    ];
    let series = "backend=\"b1\",service=\"web\",kind=\"probe\",\
                  instance=~\"10.255.0.(1|3):9100\"";
    let read = || -> Vec<(f64, f64)> {
        [0, 2]
            .iter()
            .map(|&i| {
                let v = nodes[i]
                    .as_ref()
                    .unwrap()
                    .ctl("show latency web/b1")
                    .unwrap();
                let w = v["latency"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|r| r["kind"] == "probe" && r["span"] == "window")
                    .unwrap()
                    .clone();
                (
                    w["count"].as_f64().unwrap(),
                    w["p50_ms"].as_f64().unwrap() / 1000.0,
                )
            })
            .collect()
    };
    let mut shown = Vec::new();
    // Probes go on (5 a second per node): Prometheus's last scrape, at most a second or
    // two old, holds what the nodes had then.
    wait_for(Duration::from_secs(20), Duration::from_secs(2), || {
        let before: f64 = read().iter().map(|x| x.0).sum();
        let prom = prom_query(
            t,
            &format!("sum(tandem_backend_latency_bucketed_seconds_count{{{series}}})"),
        );
        shown = read();
        let after: f64 = shown.iter().map(|x| x.0).sum();
        match prom {
            Some(p) if before > 0.0 && p <= after && p >= before - 30.0 => Ok(()),
            _ => Err(format!(
                "probe samples: Prometheus {prom:?}, show latency {before} then {after}"
            )),
        }
    });
    let p50 = prom_query(
        t,
        &format!(
            "histogram_quantile(0.5, sum by (le) (tandem_backend_latency_bucketed_seconds_bucket{{{series}}}))"
        ),
    )
    .expect("a median from the summed buckets");
    let lo = shown.iter().map(|x| x.1).fold(f64::MAX, f64::min);
    let hi = shown.iter().map(|x| x.1).fold(0.0, f64::max);
    // The bucket holding each end: (its lower bound, its upper bound].
    let lower = BOUNDS_S
        .iter()
        .rev()
        .find(|&&b| b < lo)
        .copied()
        .unwrap_or(0.0);
    let upper = BOUNDS_S
        .iter()
        .find(|&&b| b >= hi)
        .copied()
        .unwrap_or(f64::MAX);
    println!(
        "  b1 probe latency over nodes 1 and 3: Prometheus median {:.3} ms; show latency medians {:?} ms; within ({:.3}, {:.3}] ms",
        p50 * 1000.0,
        shown.iter().map(|x| x.1 * 1000.0).collect::<Vec<_>>(),
        lower * 1000.0,
        upper * 1000.0
    );
    assert!(
        p50 > lower && p50 <= upper,
        "Prometheus median {p50} s outside ({lower}, {upper}] around the nodes' {shown:?}"
    );
}

/// Client connections traced through the cluster: `trace add` on node 2 arms every node;
/// the router's ECMP picks each connection's receiving node, which sends the flow on to its
/// primary with the trace mark when that is another node; `show trace` on each node holds
/// every node's accounts: each SYN ranked, sent on (and then traced by its primary for the
/// mark) or served, the backend chosen, the rewrite. Four connections, so that one of them
/// almost surely (1 - 1/81) arrives at a node that is not its primary.
fn trace_one_connection(t: &Testbed, nodes: &[Option<Node>]) {
    const CPORTS: std::ops::Range<u16> = 45_555..45_559;
    let n = |i: usize| nodes[i].as_ref().unwrap();
    let a = n(1)
        .ctl("trace add host 10.9.0.100 and proto tcp 200")
        .unwrap();
    assert_eq!(a["ok"], true, "{a}");
    wait_for(
        Duration::from_secs(5),
        Duration::from_millis(50),
        || match (0..3).all(|i| n(i).ctl("show trace").unwrap()["running"]["count"] == 200) {
            true => Ok(()),
            false => Err("the trace did not reach every node".to_string()),
        },
    );
    for cport in CPORTS {
        let got = in_ns(
            &t.ns("kc"),
            &format!("curl -s -m 10 --local-port {cport} http://{NAT_VIP}/id"),
        )
        .output()
        .unwrap();
        assert!(got.status.success(), "a traced request failed");
    }
    // Every node's accounts on every node (swapped every 100 ms, then sent on).
    let mut views = Vec::new();
    wait_for(Duration::from_secs(5), Duration::from_millis(200), || {
        views = (0..3).map(|i| n(i).ctl("show trace").unwrap()).collect();
        let counts: Vec<usize> = views
            .iter()
            .map(|v| v["packets"].as_array().map_or(0, Vec::len))
            .collect();
        // Each connection's SYN and its client's FIN told, on every node alike.
        let all = views[0]["packets"].to_string();
        let missing: Vec<u16> = CPORTS
            .filter(|p| {
                !all.contains(&format!("10.9.0.100:{p} > {NAT_VIP}:80 tcp [S]"))
                    || !all.contains(&format!("10.9.0.100:{p} > {NAT_VIP}:80 tcp [F"))
            })
            .collect();
        if missing.is_empty() && counts.iter().all(|c| *c == counts[0]) {
            Ok(())
        } else {
            Err(format!(
                "accounts per node: {counts:?}; not all told of ports {missing:?}"
            ))
        }
    });
    let text = Command::new(tandem_bin())
        .args(["ctl", "--socket"])
        .arg(&n(2).socket)
        .args(["show", "trace"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    println!("  show trace on node 3 (first 60 lines):");
    for l in text.lines().take(60) {
        println!("    {l}");
    }
    let packets = views[2]["packets"].as_array().unwrap().clone();
    let detail = |p: &Value, stage: &str| -> String {
        p["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stage"] == stage)
            .map(|s| s["detail"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let mut sent_on = 0;
    for cport in CPORTS {
        let syn = format!("10.9.0.100:{cport} > {NAT_VIP}:80 tcp [S]");
        let syns: Vec<&Value> = packets
            .iter()
            .filter(|p| detail(p, "parse").contains(&syn))
            .collect();
        let first = syns
            .iter()
            .find(|p| !detail(p, "rx").contains("trace mark"))
            .unwrap_or_else(|| panic!("no SYN of port {cport} traced: {packets:?}"));
        assert!(
            detail(first, "nodes").contains("rendezvous ranking: primary node"),
            "{first}"
        );
        if detail(first, "rewrite").contains("sent on to another node") {
            sent_on += 1;
            // Its primary traced it for the mark, and chose the backend.
            assert!(
                syns.iter().any(|p| p["node"] != first["node"]
                    && detail(p, "rx").contains("trace mark")
                    && detail(p, "selection").contains("chose b")
                    && detail(p, "rewrite").contains("10.1.0.1")),
                "the primary did not trace the marked SYN: {syns:?}"
            );
        } else {
            assert!(detail(first, "selection").contains("chose b"), "{first}");
            assert!(detail(first, "rewrite").contains("10.1.0.1"), "{first}");
        }
    }
    println!(
        "  traced: {} frames; {sent_on} of 4 SYNs sent on to their primary",
        packets.len()
    );
    assert_eq!(n(0).ctl("trace clear").unwrap()["ok"], true);
    wait_for(
        Duration::from_secs(5),
        Duration::from_millis(50),
        || match (0..3).all(|i| n(i).ctl("show trace").unwrap()["running"].is_null()) {
            true => Ok(()),
            false => Err("trace clear did not reach every node".to_string()),
        },
    );
}

#[test]
fn sync_channel_refuses_replayed_forged_and_stranger_datagrams() {
    let s = Scratch::new("sync");
    let sync = loopback_sync(2);
    let ports: Vec<String> = sync
        .iter()
        .map(|a| a.rsplit(':').next().unwrap().to_string())
        .collect();
    let secret = write_secret(&s);
    let cluster = cluster_section(&secret, &sync, |id| format!("10.0.0.{id}"));
    let prefix = unique("tsy");
    let mut nodes = Vec::new();
    for id in 1..=2u16 {
        let cfg = format!(
            r#"{header}[[port]]
name = "front"
devargs = "net_null{id},no-rx=1"
ipv4 = "10.0.0.{id}/24"
[workers]
cores = [1]
idle_sleep = "1ms"
[flows]
capacity = 1024
[control]
socket = "{sock}"
[[service]]
name = "web"
vip = "192.0.2.10"
port = 80
protocol = "tcp"
mode = "dsr"
[[service.backend]]
name = "a"
address = "10.0.0.11"
paths = [{{ port = "front", mac = "02:00:00:00:00:11" }}]
{cluster}"#,
            header = node_header(id, 128, &format!("{prefix}{id}")),
            sock = s.path(&format!("ctl{id}.sock")).display()
        );
        let p = s.path(&format!("n{id}.toml"));
        std::fs::write(&p, cfg).unwrap();
        nodes.push(Node::start(&p, &s.path(&format!("ctl{id}.sock")), None));
    }
    wait_serving(&nodes[1], 2, Duration::from_secs(20));
    let out = Command::new("python3")
        .arg(script("tests/e2e/sync_attack.py"))
        .arg(&ports[0])
        .arg(&ports[1])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "attack script: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("attack: {}", String::from_utf8_lossy(&out.stdout).trim());
    let d = wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        let d = nodes_doc(&nodes[1]);
        let peer = &d["nodes"][0];
        let all = peer["replays"].as_u64().unwrap_or(0) >= 1
            && peer["auth_failures"].as_u64().unwrap_or(0) >= 1
            && d["refused"]["unknown_node"].as_u64().unwrap_or(0) >= 1;
        if all {
            Ok(d)
        } else {
            Err(format!("node 2 did not count every kind of attack: {d}"))
        }
    });
    println!(
        "node 2 after the attack: refused {} ; node 1 as seen: {}",
        d["refused"], d["nodes"][0]
    );
    assert!(d["nodes"][0]["replays"].as_u64().unwrap() >= 1, "{d}");
    assert!(d["nodes"][0]["auth_failures"].as_u64().unwrap() >= 1, "{d}");
    assert!(d["refused"]["unknown_node"].as_u64().unwrap() >= 1, "{d}");
    // Nothing was applied and node 1 is still a live, serving peer.
    assert_eq!(d["nodes"][0]["serving"], true);
    assert_eq!(d["refused"]["invalid_records"], 0);
    for n in &mut nodes {
        n.stop_with(libc::SIGTERM);
    }
}

#[test]
fn a_secret_others_can_read_is_refused() {
    let s = Scratch::new("secret");
    let secret = s.path("cluster.key");
    std::fs::write(&secret, "tandem test cluster secret 0123456789\n").unwrap();
    sh(&format!("chmod 644 {}", secret.display()));
    let cluster = cluster_section(&secret, &loopback_sync(2), |id| format!("10.0.0.{id}"));
    let cfg = format!(
        r#"{header}[[port]]
name = "front"
devargs = "net_null0"
ipv4 = "10.0.0.1/24"
[control]
socket = "{}"
[[service]]
name = "web"
vip = "192.0.2.10"
port = 80
protocol = "tcp"
mode = "dsr"
[[service.backend]]
name = "a"
address = "10.0.0.11"
paths = [{{ port = "front" }}]
{cluster}"#,
        s.path("ctl.sock").display(),
        header = node_header(1, 128, &unique("tse")),
    );
    let p = s.path("n.toml");
    std::fs::write(&p, cfg).unwrap();
    let o = Command::new(tandem_bin())
        .args(["run", "--config"])
        .arg(&p)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("cluster.secret_file") && err.contains("chmod 600"),
        "{err}"
    );
}

/// Learned limits in a cluster of two: each node learns its own limit of each backend from
/// the latency it sees, which both nodes' flows make. The backends' capacity is hidden
/// (tests/e2e/capacity.py: K = 6 and 3); 40 closed-loop clients through the router's ECMP
/// over both nodes. Each node's limits stay within what it admits, their sum near each K
/// (a backend sees up to the sum: each node probes one flow past it now and then), and the
/// clients get at least half of what the backends can give.
#[test]
fn two_nodes_learn_limits_that_add_up_to_each_backends_capacity() {
    let _turn = heavy();
    const KS: [u32; 2] = [6, 3];
    let sx = unique("l");
    let t = Testbed::up("scripts/cluster-topology", &sx, "");
    let s = Scratch::new("cluster-limits");
    let mut backends = Procs(Vec::new());
    for (i, k) in KS.iter().enumerate() {
        let i = i + 1;
        backends.0.push(
            in_ns(
                &t.ns(&format!("kb{i}")),
                &format!(
                    "exec python3 {} --name b{i} --port 8080 --k {k}",
                    script("tests/e2e/capacity.py").display()
                ),
            )
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
        );
    }
    let sync: Vec<String> = (1..=2).map(|id| format!("10.255.0.{id}:7001")).collect();
    let secret = write_secret(&s);
    let cluster = cluster_section(&secret, &sync, |id| format!("10.0.0.{id}"));
    let prefix = unique("tcll");
    let nodes: Vec<Node> = (1..=2)
        .map(|id| {
            let cfg = node_config(&s, &t, id, &prefix, &cluster).replace(
                "[[service]]\nname = \"webdsr\"",
                "[service.admission]\nlimit = \"adaptive\"\n[[service]]\nname = \"webdsr\"",
            );
            start_node(&s, &t, id, &cfg)
        })
        .collect();
    for n in &nodes {
        wait_serving(n, 2, Duration::from_secs(20));
    }
    wait_hops(&t, NAT_VIP, "main", &[1, 2], Duration::from_secs(30));
    wait_hops(&t, "default", "200", &[1, 2], Duration::from_secs(30));
    const SECS: u32 = 16;
    let load = in_ns(
        &t.ns("kc"),
        &format!(
            "exec python3 {} http://{NAT_VIP}/work 40 {SECS} 1.0",
            script("tests/e2e/closed_load.py").display()
        ),
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    // Each node's learned limits and in-flight flows, and the backends' own count, every
    // 250 ms over the last 6 s.
    std::thread::sleep(Duration::from_secs(u64::from(SECS) - 6));
    let mut sums = [Vec::new(), Vec::new()];
    let mut seen_at_backend = [0u64; 2];
    let mut per_node = Vec::new();
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let mut sum = [0u64; 2];
        per_node.clear();
        for n in &nodes {
            let v = n.ctl("show backends").unwrap();
            for b in v["backends"].as_array().unwrap() {
                let i = match b["backend"].as_str() {
                    Some("b1") => 0,
                    Some("b2") => 1,
                    _ => continue,
                };
                assert_eq!(b["limit_from"], "learned", "{b}");
                // (Flows in flight may exceed a limit just cut: it holds new flows only.)
                let l = b["limit"].as_u64().unwrap();
                sum[i] += l;
                per_node.push(format!("{}:{l}", b["backend"]));
            }
        }
        for i in 0..2 {
            sums[i].push(sum[i]);
            let o = in_ns(
                &t.ns(&format!("kb{}", i + 1)),
                "curl -s -m 2 http://127.0.0.1:8080/stats",
            )
            .output()
            .unwrap();
            let st: Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
            seen_at_backend[i] = seen_at_backend[i].max(st["in_flight"].as_u64().unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let o = load.wait_with_output().unwrap();
    let reqs: Vec<(f64, f64, String)> = serde_json::from_slice(&o.stdout).unwrap();
    let ok =
        reqs.iter().filter(|r| r.0 >= 6.0 && r.2 != "ERR").count() as f64 / f64::from(SECS - 6);
    let errors = reqs.iter().filter(|r| r.0 >= 6.0 && r.2 == "ERR").count();
    let mut ms: Vec<f64> = reqs
        .iter()
        .filter(|r| r.0 >= 6.0 && r.2 != "ERR")
        .map(|r| r.1)
        .collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "  answers: p50 {:.0} ms, p99 {:.0} ms, errors {errors}",
        ms[ms.len() / 2],
        ms[ms.len() * 99 / 100]
    );
    let median = |v: &mut Vec<u64>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let (s1, s2) = (median(&mut sums[0]), median(&mut sums[1]));
    println!(
        "  learned limits (last reading, node 1 then node 2): {}; summed over the nodes (median): \
         b1 {s1} (K {}), b2 {s2} (K {}); most in flight at the backends: {seen_at_backend:?}; \
         goodput {ok:.1}/s (best {:.0}/s)",
        per_node.join(" "),
        KS[0],
        KS[1],
        f64::from(KS[0] + KS[1]) / 0.1
    );
    // Measured 5-6 and 3; once, in a full suite on a loaded machine, 4 and 3 (the nodes
    // undershoot when the machine's own delays look like queueing: the safe side).
    for (sum, k) in [(s1, KS[0]), (s2, KS[1])] {
        let k = u64::from(k);
        assert!(
            sum * 3 >= k * 2 && sum <= k + 2,
            "the nodes' limits add up to {sum} for a capacity of {k}"
        );
    }
    // Measured: 61-62 answers a second of the 90 the backends give at best (with no limit,
    // tried by hand, none within the deadline: past K the backends thrash).
    assert!(ok >= 0.5 * f64::from(KS[0] + KS[1]) / 0.1, "goodput {ok}/s");
    drop(nodes);
    drop(backends);
}

const QUIC_VIP: &str = "192.0.2.30";

/// A QUIC download's outcome line from `quic_client` (see quic-lb/examples).
fn quic_downloads(t: &Testbed, n: usize) -> Procs {
    let client = example_bin("quic_client");
    Procs(
        (0..n)
            .map(|_| {
                in_ns(
                    &t.ns("kc"),
                    &format!(
                        "exec {} --connect {QUIC_VIP}:443 --bind 10.9.0.100:0 --bytes 3000000 \
                         --rate 100000 --rebind-at 400000=10.9.0.100:0 --timeout-s 90",
                        client.display()
                    ),
                )
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
            })
            .collect(),
    )
}

fn quic_counter(n: &Node, name: &str) -> u64 {
    worker_total(&n.ctl("show stats").unwrap_or_default(), name)
}

/// QUIC connections through three nodes outlive them all: node 1 is killed, then node 2
/// (two nodes dead; each had records of every connection), then node 3, while node 1 starts
/// again alone, with no peer to give it a snapshot: an empty flow table. Every download goes
/// on, routed by the server ID in its connection ID.
#[test]
fn quic_downloads_outlive_every_node_and_every_record() {
    let _turn = heavy();
    let t = Testbed::up("scripts/cluster-topology", &unique("cq"), "");
    let s = Scratch::new("cluster-quic");
    let server = example_bin("quic_server");
    let _servers = start_ready(
        &(1..=2)
            .map(|i| {
                (
                    t.ns(&format!("kb{i}")),
                    format!(
                        "exec {} --listen 10.1.0.1{i}:4433 --name b{i} --server-id 0a0{i}",
                        server.display()
                    ),
                )
            })
            .collect::<Vec<_>>(),
    );
    let sync: Vec<String> = (1..=3).map(|id| format!("10.255.0.{id}:7001")).collect();
    let cluster = cluster_section(&write_secret(&s), &sync, |id| format!("10.0.0.{id}"));
    let quic = format!(
        "[[service]]\nname = \"h3\"\nvip = \"{QUIC_VIP}\"\nport = 443\nprotocol = \"quic\"\n\
         mode = \"nat\"\n{}[cluster]",
        (1..=2)
            .map(|i| format!(
                "[[service.backend]]\nname = \"q{i}\"\naddress = \"10.1.0.1{i}\"\nport = 4433\n\
                 server_id = \"0a0{i}\"\npaths = [{{ port = \"back\" }}]\n"
            ))
            .collect::<String>()
    );
    let prefix = unique("tcq");
    let cfgs: Vec<String> = (1..=3)
        // `probe = "tcp"` as for the others: a quic service's backends are pinged.
        .map(|id| node_config(&s, &t, id, &prefix, &cluster).replace("[cluster]", &quic))
        .collect();
    let mut nodes: Vec<Option<Node>> = (1..=3)
        .map(|id| Some(start_node(&s, &t, id, &cfgs[usize::from(id) - 1])))
        .collect();
    for n in nodes.iter().flatten() {
        wait_serving(n, 3, Duration::from_secs(20));
    }
    wait_hops(&t, QUIC_VIP, "main", &[1, 2, 3], Duration::from_secs(30));
    wait_hops(&t, "default", "200", &[1, 2, 3], Duration::from_secs(30));

    let clients = 4;
    let mut downloads = quic_downloads(&t, clients);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(6));
    let by_cid: Vec<u64> = nodes
        .iter()
        .map(|n| quic_counter(n.as_ref().unwrap(), "quic_by_cid"))
        .collect();
    println!("  quic_by_cid per node after 6 s: {by_cid:?}");
    let kill = |nodes: &mut Vec<Option<Node>>, i: usize| {
        let mut n = nodes[i].take().unwrap();
        let mut c = n.child.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    };
    kill(&mut nodes, 0);
    wait_hops(&t, QUIC_VIP, "main", &[2, 3], Duration::from_secs(5));
    println!("  node 1 killed at {} ms", started.elapsed().as_millis());
    std::thread::sleep(Duration::from_secs(4));
    kill(&mut nodes, 1);
    wait_hops(&t, QUIC_VIP, "main", &[3], Duration::from_secs(5));
    println!("  node 2 killed at {} ms", started.elapsed().as_millis());
    std::thread::sleep(Duration::from_secs(4));
    // The last node goes, and node 1 comes back alone: no peer holds a record for it.
    kill(&mut nodes, 2);
    let back = start_node(&s, &t, 1, &cfgs[0]);
    let d = wait_serving(&back, 1, Duration::from_secs(20));
    let gap = wait_hops(&t, QUIC_VIP, "main", &[1], Duration::from_secs(20));
    println!(
        "  node 3 killed and node 1 started alone at {} ms: ready with {} snapshot records, \
         announced {} ms later",
        started.elapsed().as_millis(),
        d["snapshot_records"],
        gap.as_millis()
    );
    assert_eq!(d["snapshot_records"].as_u64().unwrap_or(0), 0, "{d}");
    let mut intact = 0;
    for (i, c) in downloads.0.drain(..).enumerate() {
        let out = wait_output(c, Duration::from_secs(100));
        println!("  download {i}: {}", out.trim());
        let v: Value = serde_json::from_str(out.trim()).unwrap_or_default();
        if v["ok"] == true {
            intact += 1;
        }
    }
    let cid = quic_counter(&back, "quic_by_cid");
    println!(
        "  {intact} of {clients} downloads intact; the restarted node routed {cid} packets by ID, \
         {} unroutable",
        quic_counter(&back, "quic_unroutable")
    );
    assert_eq!(intact, clients, "a download broke:\n{}", back.logs());
    assert!(cid > 0);
    assert_eq!(quic_counter(&back, "quic_unroutable"), 0);
}
