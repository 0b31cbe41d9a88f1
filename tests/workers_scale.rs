//! Two workers on a real node (net_pcap with one RX queue per worker, into net_null): a
//! flood of new flows reaches both workers' tables whole, and established flows go nearly
//! twice as fast on two workers as on one.

mod common;

use common::*;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};
use tandem_dataplane::testkit;
use tandem_dataplane::wire::l4::{ACK, SYN};

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
const NODE_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

/// Frames to the VIP of flows `first..first + n` (testkit::bench_client's numbering).
fn frames(first: u32, n: u32, flags: u8) -> Vec<Vec<u8>> {
    (first..first + n)
        .map(|i| {
            let (src, sport) = testkit::bench_client(i);
            testkit::tcp(
                NODE_MAC,
                [2, 0, 0, 0, 0xc, 1],
                src,
                sport,
                VIP,
                80,
                flags,
                b"",
            )
        })
        .collect()
}

/// A node whose front port reads `pcaps` (one RX queue and worker each; `infinite` replays
/// them from memory for ever).
fn config(s: &Scratch, pcaps: &[&Path], infinite: bool, capacity: u32, mbufs: u32) -> String {
    let rx: Vec<String> = pcaps
        .iter()
        .map(|p| format!("rx_pcap={}", p.display()))
        .collect();
    let cores: Vec<String> = (0..pcaps.len()).map(|i| i.to_string()).collect();
    format!(
        r#"{header}[[port]]
name = "front"
devargs = "net_pcap0,{rx}{inf}"
mac = "02:00:00:00:00:01"
ipv4 = "10.0.0.1/24"
[[port]]
name = "back"
devargs = "net_null0,no-rx=1"
ipv4 = "10.1.0.1/24"
[mempool]
mbufs = {mbufs}
[workers]
cores = [{cores}]
idle_sleep = "0us"
[flows]
capacity = {capacity}
tcp_syn_timeout = "5m"
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
weight = 2
paths = [{{ port = "back", mac = "02:00:00:00:01:11" }}]
[[service.backend]]
name = "b"
address = "10.1.0.12"
port = 8080
paths = [{{ port = "back", mac = "02:00:00:00:01:12" }}]
"#,
        header = node_header(1, 2048, &unique("tscale")),
        rx = rx.join(","),
        inf = if infinite { ",infinite_rx=1" } else { "" },
        cores = cores.join(", "),
        sock = s.path("ctl.sock").display(),
    )
}

fn worker(st: &serde_json::Value, w: usize, key: &str) -> u64 {
    st["workers"][w][key].as_u64().unwrap_or(0)
}

/// 400 000 distinct SYNs, half on each worker's queue, as fast as the pcap PMD reads them:
/// each worker creates its half and stores the other worker's, so both tables end with all
/// 400 000 flows, and no record was dropped between them or to the control thread. (The
/// half-open flows get a long timeout: they must still be there when the test looks, on a
/// slow machine too. The queues fall quiet before the last records are handed on: they
/// must go all the same.)
#[test]
fn a_flood_of_new_flows_over_two_workers_is_known_to_both() {
    const EACH: u32 = 200_000;
    let s = Scratch::new("scale-new");
    let (a, b) = (s.path("a.pcap"), s.path("b.pcap"));
    write_pcap(&a, &frames(0, EACH, SYN));
    write_pcap(&b, &frames(EACH, EACH, SYN));
    let cfg = s.path("tandem.toml");
    std::fs::write(&cfg, config(&s, &[&a, &b], false, 1 << 20, 65535)).unwrap();
    let mut node = Node::start(&cfg, &s.path("ctl.sock"), None);
    node.wait_stats("every SYN read", Duration::from_secs(60), |st| {
        st["ports"][0]["rx"].as_u64() == Some(u64::from(2 * EACH))
    });
    // Both workers' tables fill to every flow once the last records are taken.
    let st = node.wait_stats("both tables whole", Duration::from_secs(20), |st| {
        (0..2).all(|w| worker(st, w, "flows_in_table") == u64::from(2 * EACH))
    });
    let fin = node.stop();
    println!(
        "{} SYNs; per worker: created {:?}, stored from the other {:?}, waits {:?}",
        2 * EACH,
        (0..2)
            .map(|w| worker(&st, w, "flows_created"))
            .collect::<Vec<_>>(),
        (0..2)
            .map(|w| worker(&st, w, "flows_replicated_in"))
            .collect::<Vec<_>>(),
        (0..2)
            .map(|w| worker(&st, w, "replication_waits"))
            .collect::<Vec<_>>(),
    );
    for w in 0..2 {
        assert_eq!(worker(&st, w, "flows_created"), u64::from(EACH), "{st}");
        assert_eq!(
            worker(&st, w, "flows_replicated_in"),
            u64::from(EACH),
            "{st}"
        );
        assert_eq!(worker(&fin, w, "outbox_overflow"), 0, "{fin}");
        assert_eq!(worker(&fin, w, "flows_refused"), 0, "{fin}");
    }
    assert_eq!(
        st["replicated_to_workers"].as_u64(),
        Some(u64::from(2 * EACH))
    );
}

/// Front-port packets per second over `secs`, read from two `show stats` apart.
fn rx_rate(node: &Node, secs: u64) -> f64 {
    let rx = |st: &serde_json::Value| st["ports"][0]["rx"].as_u64().unwrap_or(0);
    let a = node.ctl("show stats").unwrap();
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let b = node.ctl("show stats").unwrap();
    (rx(&b) - rx(&a)) as f64 / t.elapsed().as_secs_f64()
}

/// Established flows replayed from memory: the same 20 000 flows per queue, one worker and
/// then two (each on its own CPU). Two workers share nothing on this path, so they go
/// nearly twice as fast (1.81x and 1.95x measured here; the bound asked is 1.6, to leave
/// room for a busy machine).
#[test]
fn two_workers_forward_established_flows_nearly_twice_as_fast_as_one() {
    const EACH: u32 = 20_000;
    let s = Scratch::new("scale-est");
    let (a, b) = (s.path("a.pcap"), s.path("b.pcap"));
    let rounds = |first| {
        let f = frames(first, EACH, ACK);
        (0..4).flat_map(|_| f.clone()).collect::<Vec<_>>()
    };
    write_pcap(&a, &rounds(0));
    write_pcap(&b, &rounds(EACH));
    let mut rates = Vec::new();
    for pcaps in [vec![a.as_path()], vec![a.as_path(), b.as_path()]] {
        let cfg = s.path("tandem.toml");
        std::fs::write(&cfg, config(&s, &pcaps, true, 262_144, 200_000)).unwrap();
        let mut node = Node::start(&cfg, &s.path("ctl.sock"), None);
        node.wait_stats("replay under way", Duration::from_secs(30), |st| {
            st["ports"][0]["rx"].as_u64().unwrap_or(0) > 1_000_000
        });
        rates.push(rx_rate(&node, 3));
        node.stop();
    }
    let ratio = rates[1] / rates[0];
    println!(
        "established flows: one worker {:.2} Mpps, two {:.2} Mpps: {ratio:.2}x",
        rates[0] / 1e6,
        rates[1] / 1e6
    );
    assert!(ratio >= 1.6, "two workers only {ratio:.2}x one");
}

/// A clustered node (its one peer absent: it serves alone) fed a flood of flows that
/// complete their handshake (SYN, then ACK, to a dsr service), replayed from memory over and
/// over: every established flow is a record for the peers, and each goes through the
/// control thread. Past its pace, the worker must wait rather than drop one: no
/// `outbox_overflow`, and the control thread knows every flow.
#[test]
fn a_flood_of_established_flows_reaches_the_control_thread_whole() {
    const FLOWS: u32 = 100_000;
    let s = Scratch::new("scale-announce");
    let a = s.path("a.pcap");
    let syns = frames(0, FLOWS, SYN);
    let acks = frames(0, FLOWS, ACK);
    let both: Vec<Vec<u8>> = syns
        .into_iter()
        .zip(acks)
        .flat_map(|(x, y)| [x, y])
        .collect();
    write_pcap(&a, &both);
    let secret = write_secret(&s);
    let sync = loopback_sync(2);
    let cfg = config(&s, &[&a], true, 1 << 20, 262_143)
        .replace("mode = \"nat\"", "mode = \"dsr\"")
        .replace("port = 8080\n", "")
        + &format!(
            "[cluster]\nsecret_file = \"{}\"\n[[cluster.node]]\nid = 1\naddress = \"10.0.0.1\"\n\
             sync = \"{}\"\n[[cluster.node]]\nid = 2\naddress = \"10.0.0.2\"\n\
             mac = \"02:00:00:00:00:02\"\nsync = \"{}\"\n",
            secret.display(),
            sync[0],
            sync[1]
        );
    let path = s.path("tandem.toml");
    std::fs::write(&path, cfg).unwrap();
    let mut node = Node::start(&path, &s.path("ctl.sock"), None);
    // Serving alone once no peer answers; then the replay's passes make and refresh flows.
    let st = node.wait_stats("every flow known", Duration::from_secs(60), |st| {
        st["flows"].as_u64().unwrap_or(0) >= u64::from(FLOWS)
            && worker(st, 0, "flows_in_table") >= u64::from(FLOWS)
    });
    std::thread::sleep(Duration::from_secs(2));
    let fin = node.stop();
    println!(
        "{FLOWS} flows SYN+ACK, replayed: rx {}, created {}, control thread's flows {}, \
         outbox_overflow {}, control_waits {}",
        st["ports"][0]["rx"],
        worker(&st, 0, "flows_created"),
        st["flows"],
        worker(&fin, 0, "outbox_overflow"),
        worker(&fin, 0, "control_waits"),
    );
    assert_eq!(worker(&fin, 0, "outbox_overflow"), 0, "{fin}");
}

/// Two nodes (each its own process; node 1 weighs 1000, so it is the primary of nearly
/// every flow): node 1 is fed a flood of flows that complete their handshake, from memory
/// at its full rate, and is killed (SIGKILL) a stated second after its last new flow. Node
/// 2 must hold every flow node 1 served: none of the records for the peers was lost on the
/// way, however fast they came. All through the flood node 1's control socket answers and
/// node 2 never sees it dead (its heartbeats leave from their own thread).
#[test]
fn a_node_killed_after_a_flood_leaves_every_flow_with_its_peer() {
    const FLOWS: u32 = 100_000;
    const BOUND: Duration = Duration::from_secs(1);
    let s = Scratch::new("scale-kill");
    let a = s.path("a.pcap");
    let pairs: Vec<Vec<u8>> = frames(0, FLOWS, SYN)
        .into_iter()
        .zip(frames(0, FLOWS, ACK))
        .flat_map(|(x, y)| [x, y])
        .collect();
    write_pcap(&a, &pairs);
    let secret = write_secret(&s);
    let sync = loopback_sync(2);
    let cluster = format!(
        "[cluster]\nsecret_file = \"{}\"\n[[cluster.node]]\nid = 1\nweight = 1000\n\
         address = \"10.0.0.1\"\nsync = \"{}\"\n[[cluster.node]]\nid = 2\nweight = 1\n\
         address = \"10.0.0.2\"\nmac = \"02:00:00:00:00:02\"\nsync = \"{}\"\n",
        secret.display(),
        sync[0],
        sync[1]
    );
    let dsr = |c: String| {
        c.replace("mode = \"nat\"", "mode = \"dsr\"")
            .replace("port = 8080\n", "")
            + &cluster
    };
    // Node 2 reads nothing; it learns every flow from node 1.
    let cfg2 = dsr(config(&s, &[&a], false, 1 << 20, 8191))
        .replace(
            &format!("net_pcap0,rx_pcap={}", a.display()),
            "net_null1,no-rx=1",
        )
        .replace("[node]\nid = 1", "[node]\nid = 2")
        .replace("10.0.0.1/24", "10.0.0.2/24")
        .replace("02:00:00:00:00:01", "02:00:00:00:00:02")
        .replace("ctl.sock", "ctl2.sock")
        .replace("cores = [0]", "cores = [1]");
    let cfg1 = dsr(config(&s, &[&a], true, 1 << 20, 262_143));
    let (p1, p2) = (s.path("node1.toml"), s.path("node2.toml"));
    std::fs::write(&p1, cfg1).unwrap();
    std::fs::write(&p2, cfg2).unwrap();
    let n2 = Node::start(&p2, &s.path("ctl2.sock"), None);
    let mut n1 = Node::start(&p1, &s.path("ctl.sock"), None);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let asking = keep_asking(n1.socket.clone(), n2.socket.clone(), stop.clone());
    // Node 1 serves what it is primary of; once no new flow has come for half a second,
    // the flood is over: its count is what node 2 must hold.
    let mut last = 0;
    let served = wait_for(Duration::from_secs(60), Duration::from_millis(500), || {
        let st = n1.ctl("show stats").unwrap_or_default();
        let now = worker(&st, 0, "flows_created");
        let settled = now > 0 && now == last;
        last = now;
        if settled {
            Ok(st)
        } else {
            Err(format!("node 1's flows still growing: {now}"))
        }
    });
    let created = worker(&served, 0, "flows_created");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (answers, slowest, unanswered, seen_dead) = asking.join().unwrap();
    println!(
        "during the flood: node 1 answered {answers} commands (slowest {} ms, {unanswered} \
         unanswered); node 2 saw node 1 dead {seen_dead} times",
        slowest.as_millis()
    );
    assert_eq!(unanswered, 0);
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    assert_eq!(seen_dead, 0, "{}", n2.logs());
    assert!(!n2.logs().contains("node dead"), "{}", n2.logs());
    std::thread::sleep(BOUND);
    let mut c = n1.child.take().unwrap();
    c.kill().unwrap();
    c.wait().unwrap();
    let st2 = n2.ctl("show stats").unwrap();
    let held = worker(&st2, 0, "flows_in_table");
    println!(
        "node 1 served {created} of {FLOWS} flows (control_waits {}, outbox_overflow {}), was \
         killed {} ms after its last; node 2 holds {held}",
        worker(&served, 0, "control_waits"),
        worker(&served, 0, "outbox_overflow"),
        BOUND.as_millis()
    );
    assert!(created > u64::from(FLOWS) * 9 / 10, "{served}");
    assert_eq!(worker(&served, 0, "outbox_overflow"), 0, "{served}");
    assert!(held >= created, "node 2 holds {held} of {created}: {st2}");
}

/// Until `stop`: node 1 asked `show stats` and node 2 `show nodes`, in turn, each as soon
/// as the last answered. Returns node 1's answers, its slowest, the questions it left
/// unanswered, and the times node 2 said node 1 was not alive.
fn keep_asking(
    one: std::path::PathBuf,
    two: std::path::PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(u32, Duration, u32, u32)> {
    std::thread::spawn(move || {
        let (mut answers, mut slowest, mut unanswered, mut seen_dead) = (0, Duration::ZERO, 0, 0);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let t = Instant::now();
            match ctl_at(&one, "show stats") {
                Ok(v) if v["ok"] != false => answers += 1,
                _ => unanswered += 1,
            }
            slowest = slowest.max(t.elapsed());
            if let Ok(d) = ctl_at(&two, "show nodes") {
                let dead = d["nodes"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|n| n["id"] == 1 && n["alive"] == false));
                seen_dead += u32::from(dead);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (answers, slowest, unanswered, seen_dead)
    })
}
