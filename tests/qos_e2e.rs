//! QoS end to end in network namespaces (scripts/topology, four backends): real kernel TCP
//! through `tandem run` on af_packet ports to the project's HTTP backends, whose response
//! delay the test sets at run time (tests/e2e/backend.py --delay-file).
//!
//! - a backend turned 10x slower loses most new flows within 5 s and wins them back when it
//!   recovers; the clients' request times against the same run with plain weights;
//! - a backend limited to 4 flows with 20 clients at once: never more than 4 at the server,
//!   all 20 finish, and the queue counters show the waits;
//! - a pool whose p99 crosses the threshold activates its standby (the hook runs) and
//!   releases it after recovery;
//! - a path whose probes fail moves its flows to the backup path without breaking them.

mod common;

use common::*;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const VIP: &str = "192.0.2.10";

struct Bed {
    s: Scratch,
    t: Testbed,
    _backends: Procs,
}

impl Bed {
    fn new() -> Bed {
        let s = Scratch::new("qos");
        let suffix = unique("q");
        let t = Testbed::up("scripts/topology", &suffix, "4");
        let cmds: Vec<(String, String)> = (1..=4)
            .map(|i| {
                std::fs::write(s.path(&format!("b{i}.delay")), "10").unwrap();
                let cmd = format!(
                    "exec python3 {} --name b{i} --port 8080 --delay-file {}",
                    script("tests/e2e/backend.py").display(),
                    s.path(&format!("b{i}.delay")).display()
                );
                (t.ns(&format!("tb{i}")), cmd)
            })
            .collect();
        let backends = start_ready(&cmds);
        Bed {
            s,
            t,
            _backends: backends,
        }
    }

    fn delay(&self, backend: usize, ms: u64) {
        let tmp = self.s.path(&format!("b{backend}.delay.tmp"));
        std::fs::write(&tmp, ms.to_string()).unwrap();
        std::fs::rename(&tmp, self.s.path(&format!("b{backend}.delay"))).unwrap();
    }

    /// The backend's own counters (read over its loopback, not through tandem).
    fn backend_stats(&self, backend: usize, reset: bool) -> serde_json::Value {
        let q = if reset { "?reset=1" } else { "" };
        let o = in_ns(
            &self.t.ns(&format!("tb{backend}")),
            &format!("curl -s -m 5 'http://127.0.0.1:8080/stats{q}'"),
        )
        .output()
        .unwrap();
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("backend stats: {e}"))
    }

    /// A tandem node with these extra sections and services.
    fn node(&self, name: &str, sections: &str, services: &str) -> Node {
        let sx = &self.t.suffix;
        let sock = self.s.path(&format!("{name}.sock"));
        let cfg = format!(
            r#"{header}[[port]]
name = "front"
devargs = "net_af_packet0,iface=lf-{sx}"
ipv4 = "10.0.0.1/24"
[[port]]
name = "back"
devargs = "net_af_packet1,iface=lb-{sx}"
ipv4 = "10.1.0.1/24"
[[port]]
name = "back2"
devargs = "net_af_packet2,iface=lc-{sx}"
ipv4 = "10.2.0.1/24"
[workers]
cores = [1]
idle_sleep = "20us"
[control]
socket = "{sock}"
{sections}
{services}"#,
            header = node_header(1, 512, &unique(&format!("tq{name}"))),
            sock = sock.display(),
        );
        let path = self.s.path(&format!("{name}.toml"));
        std::fs::write(&path, cfg).unwrap();
        Node::start(&path, &sock, Some(&self.t.ns("tl")))
    }

    /// Open-loop load from the client: RATE connections per second for SECS seconds.
    fn load(&self, rate: u32, secs: u32, timeout_s: f64) -> Child {
        in_ns(
            &self.t.ns("tc"),
            &format!(
                "exec python3 {} http://{VIP}/id {rate} {secs} {timeout_s}",
                script("tests/e2e/load.py").display()
            ),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
    }
}

/// One request: when it started (s), how long it took (ms), which backend answered.
#[derive(Debug, Clone)]
struct Req {
    at: f64,
    ms: f64,
    backend: String,
}

fn results(c: Child) -> Vec<Req> {
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success(), "load client failed");
    let v: Vec<(f64, f64, String)> = serde_json::from_slice(&o.stdout).unwrap();
    v.into_iter()
        .map(|(at, ms, backend)| Req { at, ms, backend })
        .collect()
}

fn share(reqs: &[Req], backend: &str, from: f64, to: f64) -> (f64, usize) {
    let w: Vec<&Req> = reqs.iter().filter(|r| r.at >= from && r.at < to).collect();
    let n = w.iter().filter(|r| r.backend == backend).count();
    (n as f64 / w.len().max(1) as f64, w.len())
}

fn quantile(reqs: &[Req], q: f64) -> f64 {
    let mut ms: Vec<f64> = reqs.iter().map(|r| r.ms).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1]
}

fn backends(names: &[(&str, &str)], extra: &str) -> String {
    names
        .iter()
        .map(|(name, more)| {
            let i = &name[1..];
            format!(
                "[[service.backend]]\nname = \"{name}\"\naddress = \"10.1.0.1{i}\"\nport = 8080\n{extra}{more}\n"
            )
        })
        .collect()
}

const SLOW_AT: f64 = 4.0;
const FAST_AT: f64 = 14.0;
const RUN_S: u32 = 28;

/// A node with one nat service over backends b1..b3 (20 ms each, probed), the given
/// selection and extra `[qos]` keys, a 5 s window of 250 ms periods.
fn three_backends(bed: &Bed, name: &str, selection: &str, qos: &str) -> Node {
    for i in 1..=3 {
        bed.delay(i, 20);
    }
    let sections = format!(
        "[health]\nprobe = \"tcp\"\ninterval = \"500ms\"\ntimeout = \"1s\"\n\
         [qos]\nselection = \"{selection}\"\nwindow = \"5s\"\nperiod = \"250ms\"\n{qos}"
    );
    let services = format!(
        "[[service]]\nname = \"web\"\nvip = \"{VIP}\"\nport = 80\nprotocol = \"tcp\"\nmode = \"nat\"\n{}",
        backends(
            &[("b1", ""), ("b2", ""), ("b3", "")],
            "paths = [{ port = \"back\" }]\n"
        )
    );
    bed.node(name, &sections, &services)
}

/// One run of the slow-backend scenario with a selection; returns the requests.
fn slow_backend_run(bed: &Bed, selection: &str) -> (Vec<Req>, serde_json::Value) {
    let mut node = three_backends(
        bed,
        &format!("slow-{selection}"),
        selection,
        "probation = \"10s\"\n",
    );
    let load = bed.load(30, RUN_S, 3.0);
    let t0 = Instant::now();
    let at = |s: f64| t0 + Duration::from_secs_f64(s);
    std::thread::sleep(at(SLOW_AT).saturating_duration_since(Instant::now()));
    bed.delay(2, 200);
    std::thread::sleep(at(SLOW_AT + 5.0).saturating_duration_since(Instant::now()));
    let during = node.ctl("show backends web").unwrap();
    std::thread::sleep(at(FAST_AT).saturating_duration_since(Instant::now()));
    bed.delay(2, 20);
    let reqs = results(load);
    // When the node itself changed b2's factor, from its event log.
    let svc = node.ctl("show services").unwrap();
    let now = t0.elapsed().as_secs_f64();
    let dropped = svc["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["event"]
                .as_str()
                .is_some_and(|x| x.starts_with("backend b2 qos factor 1.000 ->"))
        })
        .map(|e| now - e["age_s"].as_f64().unwrap())
        .find(|t| *t > SLOW_AT);
    if let Some(t) = dropped {
        println!(
            "b2's factor fell {:.2} s after its slowdown ({selection})",
            t - SLOW_AT
        );
    }
    let lat = node.ctl("show latency web/b2").unwrap();
    assert_eq!(lat["ok"], true, "{lat}");
    println!(
        "show latency web/b2 after the run ({selection}):\n{}",
        tandem_render(&lat)
    );
    node.stop();
    (reqs, during)
}

fn tandem_render(v: &serde_json::Value) -> String {
    let mut out = String::new();
    for r in v["latency"].as_array().into_iter().flatten() {
        out += &format!("  {r}\n");
    }
    out
}

fn scenario_slow_backend(bed: &Bed) {
    let (qos, during) = slow_backend_run(bed, "qos");
    let errors = qos.iter().filter(|r| r.backend == "ERR").count();
    assert_eq!(errors, 0, "no request fails");
    println!("b2 turned 10x slower at {SLOW_AT} s, fast again at {FAST_AT} s; b2's share of new requests (qos):");
    let mut t = 0.0;
    let mut row = String::new();
    while t < f64::from(RUN_S) {
        let (sh, n) = share(&qos, "b2", t, t + 2.0);
        row += &format!(" [{t:>2.0}s {:>3.0}% of {n}]", sh * 100.0);
        t += 2.0;
    }
    println!("{row}");
    // The time from the slowdown until b2's share over the next second stays below 10%.
    let mut fell = None;
    let mut t = SLOW_AT;
    while t < FAST_AT - 1.0 {
        let below = (0..((FAST_AT - 1.0 - t) / 0.25) as usize)
            .all(|k| share(&qos, "b2", t + k as f64 * 0.25, t + k as f64 * 0.25 + 1.0).0 < 0.10);
        if below {
            fell = Some(t - SLOW_AT);
            break;
        }
        t += 0.25;
    }
    let fell = fell.expect("b2's share never fell below 10%");
    println!("b2's share fell below 10% {fell:.2} s after its slowdown");
    assert!(fell <= 5.0, "took {fell} s");
    let (slow_share, _) = share(&qos, "b2", SLOW_AT + 5.0, FAST_AT);
    assert!(slow_share < 0.10, "b2 kept {slow_share} while slow");
    let row = during["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["backend"] == "b2")
        .unwrap()
        .clone();
    println!("show backends during the slowdown, b2: {row}");
    assert!(row["qos_factor"].as_f64().unwrap() <= 0.05, "{row}");
    // Recovered: it gets no flows while penalised, so it is tried again `probation` (10 s)
    // after its last sample, and wins its share back.
    let (back, n) = share(&qos, "b2", FAST_AT + 8.0, f64::from(RUN_S));
    println!(
        "b2's share {:.0}% of {n} requests from {} s",
        back * 100.0,
        FAST_AT + 8.0
    );
    assert!(back > 0.18, "b2 won back only {back}");

    let (plain, _) = slow_backend_run(bed, "weights");
    let (plain_slow, _) = share(&plain, "b2", SLOW_AT + 5.0, FAST_AT);
    assert!(plain_slow > 0.2, "plain weights do not adapt: {plain_slow}");
    println!("client request times over the same {RUN_S} s run (ms):");
    for (name, r) in [("qos", &qos), ("weights", &plain)] {
        println!(
            "  {name:>8}: p50 {:.1}  p95 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  ({} requests)",
            quantile(r, 0.5),
            quantile(r, 0.95),
            quantile(r, 0.99),
            quantile(r, 0.999),
            quantile(r, 1.0),
            r.len()
        );
    }
    assert!(
        quantile(&qos, 0.95) * 2.0 < quantile(&plain, 0.95),
        "QoS selection beats plain weights at p95"
    );
}

fn scenario_admission(bed: &Bed) {
    bed.delay(1, 300);
    bed.backend_stats(1, true);
    let services = format!(
        "[[service]]\nname = \"web\"\nvip = \"{VIP}\"\nport = 80\nprotocol = \"tcp\"\nmode = \"nat\"\n\
         queue = {{ max_len = 64, max_wait = \"20s\" }}\n{}",
        backends(&[("b1", "max_flows = 4\n")], "paths = [{ port = \"back\" }]\n")
    );
    let mut node = bed.node("admission", "", &services);
    let started = Instant::now();
    let out = in_ns(
        &bed.t.ns("tc"),
        &format!(
            "for i in $(seq 20); do curl -s -m 30 http://{VIP}/id > {}/adm.$i & done; wait",
            bed.s.dir.display()
        ),
    )
    .output()
    .unwrap();
    let took = started.elapsed();
    assert!(out.status.success());
    for i in 1..=20 {
        let body = std::fs::read_to_string(bed.s.path(&format!("adm.{i}"))).unwrap();
        assert_eq!(body.trim(), "b1", "request {i} answered");
    }
    let st = bed.backend_stats(1, false);
    println!("20 clients at once, max_flows 4, 300 ms each: done in {took:?}; backend saw {st}");
    assert_eq!(st["served"], 20);
    let most = st["max_connections"].as_u64().unwrap();
    assert!((1..=4).contains(&most), "the backend saw {most} at once");
    assert!(took >= Duration::from_millis(1400), "20 / 4 x 300 ms");
    let svc = node.ctl("show services").unwrap();
    let q = svc["services"][0]["queue"].as_str().unwrap().to_string();
    println!("show services queue: {q}");
    let waited: u64 = q
        .split("waited ")
        .nth(1)
        .and_then(|x| x.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(waited >= 16, "{q}");
    assert!(q.contains(&format!("released {waited}")), "{q}");
    node.stop();
    bed.delay(1, 10);
}

fn scenario_standby(bed: &Bed) {
    for i in 1..=3 {
        bed.delay(i, 10);
    }
    let hook = bed.s.path("hook.sh");
    let log = bed.s.path("hook.log");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"$TANDEM_EVENT $1\" >> {}\n",
            log.display()
        ),
    )
    .unwrap();
    sh(&format!("chmod +x {}", hook.display()));
    let services = format!(
        "[[service]]\nname = \"web\"\nvip = \"{VIP}\"\nport = 80\nprotocol = \"tcp\"\nmode = \"nat\"\n\
         standby = {{ p99_above = \"100ms\", for = \"2s\", recover_for = \"4s\", cooldown = \"2s\", hook = \"{}\" }}\n{}",
        hook.display(),
        backends(
            &[("b1", ""), ("b2", ""), ("b3", "standby = true\n")],
            "paths = [{ port = \"back\" }]\n"
        )
    );
    let mut node = bed.node(
        "standby",
        "[qos]\nwindow = \"4s\"\nperiod = \"250ms\"\n",
        &services,
    );
    let load = bed.load(20, 30, 3.0);
    let t0 = Instant::now();
    let at = |s: f64| t0 + Duration::from_secs_f64(s);
    let mut seen: Vec<(f64, String)> = Vec::new();
    let poll_until = |until: f64, seen: &mut Vec<(f64, String)>| {
        while Instant::now() < at(until) {
            let lines = std::fs::read_to_string(&log).unwrap_or_default();
            for l in lines.lines().skip(seen.len()) {
                seen.push((t0.elapsed().as_secs_f64(), l.to_string()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    poll_until(2.0, &mut seen);
    bed.delay(1, 250);
    bed.delay(2, 250);
    poll_until(12.0, &mut seen);
    bed.delay(1, 10);
    bed.delay(2, 10);
    poll_until(30.0, &mut seen);
    let reqs = results(load);
    let svc = node.ctl("show services").unwrap();
    println!(
        "standby events: {seen:?}\nshow services events: {}",
        svc["events"]
    );
    node.stop();
    let events: Vec<&str> = seen.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(events, ["activate b3", "release b3"], "{seen:?}");
    let (on, off) = (seen[0].0, seen[1].0);
    // Not before the slowdown, and within `for` plus a window of it. A slow start-up
    // request (a SYN retransmission on a loaded machine) inside the 4 s window can start
    // the `for` clock before 2 s, so the lower bound is the slowdown itself; `for`'s own
    // timing is checked exactly in control/src/qos/tests.rs (simulated clock).
    assert!(on > 2.0 && on < 2.0 + 6.0, "activated at {on}");
    assert!(off > 12.0 + 4.0, "released at {off}");
    let (sh_on, n) = share(&reqs, "b3", on + 1.0, 12.0);
    println!(
        "pool slowed at 2 s; standby activated at {on:.1} s, released at {off:.1} s; \
         b3 took {:.0}% of {n} requests while active",
        sh_on * 100.0
    );
    assert!(sh_on > 0.1, "the activated standby takes flows");
    assert_eq!(share(&reqs, "b3", 0.0, on - 0.5).0, 0.0, "no flows before");
    assert_eq!(
        share(&reqs, "b3", off + 0.5, 30.0).0,
        0.0,
        "none after release"
    );
}

fn scenario_path_probes(bed: &Bed) {
    bed.delay(1, 10);
    let sections = "[health]\nprobe = \"tcp\"\ninterval = \"200ms\"\ntimeout = \"400ms\"\ndown_after = 3\nup_after = 2\n";
    let services = format!(
        "[[service]]\nname = \"web\"\nvip = \"{VIP}\"\nport = 80\nprotocol = \"tcp\"\nmode = \"nat\"\n{}",
        backends(
            &[("b1", "")],
            "paths = [{ port = \"back\" }, { port = \"back2\", mac = \"02:00:00:00:02:11\" }]\n"
        )
    );
    let mut node = bed.node("paths", sections, &services);
    let size = 2_000_000;
    let file = bed.s.path("path.bin");
    // A download whose primary path is "back" (the flow's record says which).
    let mut found = None;
    for port in 47000u16..47040 {
        let dl = in_ns(
            &bed.t.ns("tc"),
            &format!(
                "exec curl -s -m 60 --local-port {port} -o {} 'http://{VIP}/blob?size={size}&rate=400000'",
                file.display()
            ),
        )
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
        let flow = wait_ok(&node, &format!("show flow tcp 10.0.0.100:{port} {VIP}:80"));
        if flow["primary_path"] == "back" {
            found = Some(dl);
            break;
        }
        let mut dl = dl;
        let _ = dl.kill();
        let _ = dl.wait();
    }
    let dl = found.expect("a flow on path back");
    std::thread::sleep(Duration::from_millis(1000));
    // The backend's leg on the "back" bridge fails; tandem's own link stays up, so only the
    // probes can tell.
    sh(&format!(
        "ip -n {} link set s1a-{} down",
        bed.t.ns("ts"),
        bed.t.suffix
    ));
    let down_at = Instant::now();
    let row = wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        let b = node.ctl("show backends web").unwrap();
        let row = b["backends"][0].clone();
        if row["paths"].as_str().unwrap().contains("back/arp down") {
            Ok(row)
        } else {
            Err(format!("path never went down: {row}"))
        }
    });
    println!(
        "path back of b1 down {:?} after its leg failed: {row}",
        down_at.elapsed()
    );
    assert_eq!(row["health"], "up", "the backend is still up over back2");
    let mut dl = dl;
    let status = dl.wait().unwrap();
    assert!(status.success(), "download finished");
    let data = std::fs::read(&file).unwrap();
    assert_eq!(data.len(), size);
    assert!(data
        .iter()
        .enumerate()
        .all(|(i, b)| usize::from(*b) == i % 251));
    let st = node.stop();
    let failovers: u64 = st["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["path_failovers"].as_u64().unwrap_or(0))
        .sum();
    println!("download intact over the backup path; path failovers {failovers}");
    assert!(failovers > 0);
    sh(&format!(
        "ip -n {} link set s1a-{} up",
        bed.t.ns("ts"),
        bed.t.suffix
    ));
}

fn wait_ok(node: &Node, cmd: &str) -> serde_json::Value {
    wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        let v = node.ctl(cmd).unwrap();
        if v["ok"] == true {
            Ok(v)
        } else {
            Err(format!("{cmd}: {v}"))
        }
    })
}

/// Linkerd's published scenario, scaled to this machine: one backend of three turns 2 s slow
/// for 15 s and clients give up after 1 s. The success rate of each selection on the same
/// run (Linkerd reports 95% / 99% / 99.9% for round robin / least loaded / peak EWMA).
fn scenario_anchors(bed: &Bed) {
    let mut table = Vec::new();
    for selection in ["qos", "weights", "least_flows", "peak_ewma"] {
        let mut node = three_backends(bed, &format!("anchor-{selection}"), selection, "");
        let load = bed.load(20, 22, 1.0);
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs(3));
        bed.delay(2, 2000);
        std::thread::sleep(
            (t0 + Duration::from_secs(18)).saturating_duration_since(Instant::now()),
        );
        bed.delay(2, 20);
        let reqs = results(load);
        node.stop();
        let ok = reqs.iter().filter(|r| r.backend != "ERR").count();
        let rate = ok as f64 / reqs.len() as f64;
        table.push((selection, rate, reqs.len(), quantile(&reqs, 0.99)));
    }
    println!("one backend of three 2 s slow for 15 s, 1 s client timeout, 20 requests/s:");
    for (sel, rate, n, p99) in &table {
        println!(
            "  {sel:>11}: {:.2}% success of {n} requests, p99 {p99:.1} ms",
            rate * 100.0
        );
    }
    let (qos, plain, least, ewma) = (table[0].1, table[1].1, table[2].1, table[3].1);
    assert!(
        qos > plain && qos > least,
        "QoS beats weights and least flows: {table:?}"
    );
    // Peak EWMA is close on this run. QoS keeps sending the slow backend a trickle
    // (min_factor) so it sees the recovery, and each of those requests times out: about
    // 1/64 of a third of the 300 requests of the slow period, one or two. Allow that
    // and a request of luck (runs measured: 98.9-99.8% against 99.5%).
    assert!(
        qos + 0.01 >= ewma,
        "QoS is not worse than peak EWMA: {table:?}"
    );
    assert!(qos >= 0.985, "{table:?}");
}

#[test]
fn qos_end_to_end() {
    let bed = Bed::new();
    scenario_admission(&bed);
    scenario_path_probes(&bed);
    scenario_standby(&bed);
    scenario_slow_backend(&bed);
    scenario_anchors(&bed);
}
