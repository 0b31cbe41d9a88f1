//! Operating a live node, end to end in network namespaces (scripts/topology): real kernel
//! TCP clients and backends through `tandem run`, changed while a download runs: a backend
//! removed (its download completes byte for byte, no new connection reaches it, then it is
//! gone), one added, a weight changed, a reload by SIGHUP and a broken one refused; the
//! running configuration saved and checked; the systemd notify protocol read from a socket;
//! the metrics endpoint checked by promtool and scraped by a real Prometheus server, whose
//! values agree with `show stats`.

mod common;

use common::*;
use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::Duration;

const VIP: &str = "192.0.2.10";
const METRICS: &str = "127.0.0.1:9191";
const PROMETHEUS: &str = "127.0.0.1:9190";

fn config(s: &Scratch, t: &Testbed, prefix: &str, backends: &[(&str, u32)]) -> String {
    let sx = &t.suffix;
    let mut b = String::new();
    for (name, w) in backends {
        let i = &name[1..];
        b += &format!(
            "[[service.backend]]\nname = \"{name}\"\naddress = \"10.1.0.1{i}\"\nport = 8080\n\
             weight = {w}\npaths = [{{ port = \"back\" }}]\n"
        );
    }
    format!(
        r#"{header}[[port]]
name = "front"
devargs = "net_af_packet0,iface=lf-{sx},framecnt=8192"
ipv4 = "10.0.0.1/24"
[[port]]
name = "back"
devargs = "net_af_packet1,iface=lb-{sx},framecnt=8192"
ipv4 = "10.1.0.1/24"
[[port]]
name = "back2"
devargs = "net_af_packet2,iface=lc-{sx},framecnt=8192"
ipv4 = "10.2.0.1/24"
[workers]
cores = [1]
idle_sleep = "20us"
[flows]
capacity = 65536
tcp_established_timeout = "8s"
udp_timeout = "8s"
[control]
socket = "{sock}"
[metrics]
listen = "{METRICS}"
[[service]]
name = "web"
vip = "{VIP}"
port = 80
protocol = "tcp"
mode = "nat"
{b}"#,
        header = node_header(1, 512, prefix),
        sock = s.path("ctl.sock").display(),
    )
}

/// `n` requests, each its own connection; how many each backend answered.
fn spread(t: &Testbed, n: usize) -> HashMap<String, usize> {
    let urls: Vec<String> = (0..n).map(|_| format!("http://{VIP}/id")).collect();
    let out = in_ns(&t.ns("tc"), &format!("curl -s -m 30 {}", urls.join(" ")))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut counts = HashMap::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        *counts.entry(l.to_string()).or_insert(0) += 1;
    }
    assert_eq!(counts.values().sum::<usize>(), n, "{counts:?}");
    counts
}

fn backends(node: &Node) -> HashMap<String, serde_json::Value> {
    let v = node.ctl("show backends web").unwrap();
    v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["backend"].as_str().unwrap().to_string(), b.clone()))
        .collect()
}

/// Every notify message received so far, in order.
fn notified(sock: &UnixDatagram, seen: &mut Vec<String>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
}

fn wait_notified(sock: &UnixDatagram, seen: &mut Vec<String>, what: &str, since: usize) {
    wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
        notified(sock, seen);
        let said = seen[since.min(seen.len())..]
            .iter()
            .any(|m| m.lines().any(|l| l == what));
        if said {
            Ok(())
        } else {
            Err(format!("no {what} in {seen:?}"))
        }
    })
}

fn curl_in(t: &Testbed, ns: &str, args: &str) -> String {
    let out = in_ns(&t.ns(ns), &format!("curl -s -m 10 {args}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One value from the Prometheus server's query API.
fn prom_query(t: &Testbed, q: &str) -> Option<f64> {
    let body = curl_in(
        t,
        "tl",
        &format!("-G 'http://{PROMETHEUS}/api/v1/query' --data-urlencode 'query={q}'"),
    );
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn a_live_node_changed_reloaded_and_watched() {
    let s = Scratch::new("ops");
    let suffix = unique("o");
    let t = Testbed::up("scripts/topology", &suffix, "3");
    let mut procs = Procs(Vec::new());
    for i in 1..=3 {
        procs.0.push(
            in_ns(
                &t.ns(&format!("tb{i}")),
                &format!(
                    "exec python3 {} --name b{i} --port 8080",
                    script("tests/e2e/backend.py").display()
                ),
            )
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
        );
    }
    let prefix = unique("tops");
    let cfg = s.path("tandem.toml");
    std::fs::write(&cfg, config(&s, &t, &prefix, &[("b1", 1), ("b2", 1)])).unwrap();
    let notify_path = s.path("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_nonblocking(true).unwrap();
    let mut seen = Vec::new();
    let mut node = Node::start_env(
        &cfg,
        &s.path("ctl.sock"),
        Some(&t.ns("tl")),
        &[("NOTIFY_SOCKET", notify_path.to_str().unwrap())],
    );
    wait_notified(&notify, &mut seen, "READY=1", 0);
    println!("notify: {seen:?}");
    wait_for(Duration::from_secs(20), Duration::from_millis(200), || {
        let answered = in_ns(&t.ns("tc"), &format!("curl -s -m 2 http://{VIP}/id"))
            .output()
            .unwrap()
            .status
            .success();
        if answered {
            Ok(())
        } else {
            Err(format!("no answer through the VIP:\n{}", node.logs()))
        }
    });
    let first = spread(&t, 20);
    assert!(!first.contains_key("b3"), "{first:?}");

    // A download of 1.5 MB at 300 kB/s: it outlives the changes below.
    let size = 1_500_000;
    let file = s.path("download");
    let dl = start_download(&t.ns("tc"), VIP, &file, 45001, size, 300_000);
    let on = wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        let f = node
            .ctl(&format!("show flow tcp 10.0.0.100:45001 {VIP}:80"))
            .unwrap();
        match f["backend"].as_str() {
            Some(b) if f["ok"] == true => Ok(b.to_string()),
            _ => Err(format!("no flow for the download: {f}")),
        }
    });
    let other = if on == "b1" { "b2" } else { "b1" };
    println!("download on {on}");

    // Remove its backend: the download goes on, new connections go elsewhere.
    let v = node.ctl(&format!("backend remove web {on}")).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(backends(&node)[&on]["state"], "removing");
    let after = spread(&t, 20);
    assert_eq!(after.get(other), Some(&20), "{after:?}");

    // Add b3 at weight 2, and the other at weight 2: new connections split evenly.
    let v = node
        .ctl("backend add web b3 10.1.0.13:8080 weight 2 path back")
        .unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let v = node.ctl(&format!("backend weight web {other} 2")).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let bad = node.ctl("backend add web b4 10.1.0.300 path back").unwrap();
    assert_eq!(bad["ok"], false, "{bad}");
    let bad = node
        .ctl("backend add web b4 10.1.0.14 path nowhere")
        .unwrap();
    assert_eq!(bad["ok"], false, "{bad}");
    let mixed = spread(&t, 60);
    println!("after add: {mixed:?}");
    assert!(!mixed.contains_key(on.as_str()), "{mixed:?}");
    assert!(mixed.get("b3").copied().unwrap_or(0) >= 15, "{mixed:?}");
    assert!(mixed.get(other).copied().unwrap_or(0) >= 15, "{mixed:?}");

    finish_download(dl, &file, size, Duration::from_secs(60));
    println!("the download on the removed backend completed intact");
    // Its last flow ended: within a few seconds the backend is gone.
    wait_for(Duration::from_secs(30), Duration::from_millis(250), || {
        let b = backends(&node);
        if b.contains_key(&on) {
            Err(format!("{on} never went: {b:?}"))
        } else {
            Ok(())
        }
    });

    // The running configuration, saved, is one check-config accepts.
    let shown = node.ctl("show config").unwrap();
    let saved = s.path("saved.toml");
    std::fs::write(&saved, shown["toml"].as_str().unwrap()).unwrap();
    let out = std::process::Command::new(tandem_bin())
        .arg("check-config")
        .arg(&saved)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&saved).unwrap();
    assert!(text.contains("name = \"b3\""), "{text}");
    assert!(!text.contains(&format!("name = \"{on}\"")), "{text}");

    // A broken file: nothing changes, every problem named.
    std::fs::write(
        &cfg,
        config(&s, &t, &prefix, &[("b1", 70000), ("b3", 1)]).replace("port = 80\n", "port = 0\n"),
    )
    .unwrap();
    let v = node.ctl("reload").unwrap();
    assert_eq!(v["ok"], false, "{v}");
    let keys: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&"service[0].port"), "{v}");
    assert!(keys.contains(&"service[0].backend[0].weight"), "{v}");
    assert_eq!(node.ctl("show config").unwrap()["toml"], shown["toml"]);
    // A restart-only change is refused by key.
    std::fs::write(
        &cfg,
        config(&s, &t, &prefix, &[("b3", 1)]).replace("cores = [1]", "cores = [0]"),
    )
    .unwrap();
    let v = node.ctl("reload").unwrap();
    assert_eq!(v["problems"][0]["key"], "workers.cores", "{v}");
    // SIGHUP reloads the saved file as edited: b1 back at weight 1, b2 and b3 gone.
    let before = seen.len();
    std::fs::write(&cfg, config(&s, &t, &prefix, &[("b1", 1)])).unwrap();
    unsafe_kill(node.pid(), libc::SIGHUP);
    wait_notified(&notify, &mut seen, "RELOADING=1", before);
    wait_notified(&notify, &mut seen, "READY=1", before);
    wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        let b = backends(&node);
        let draining = |n: &str| b.get(n).is_none_or(|x| x["state"] == "removing");
        if b.contains_key("b1") && draining("b2") && draining("b3") {
            Ok(())
        } else {
            Err(format!("SIGHUP did not reload: {b:?}"))
        }
    });
    let last = spread(&t, 10);
    assert_eq!(last.get("b1"), Some(&10), "{last:?}");

    // Metrics: the text format promtool accepts; 404 and 405 for anything else.
    let page = curl_in(&t, "tl", &format!("http://{METRICS}/metrics"));
    assert!(
        page.contains("tandem_backend_new_flows_total{service=\"web\",backend=\"b1\"}"),
        "{page}"
    );
    std::fs::write(s.path("metrics.txt"), &page).unwrap();
    let lint = sh(&format!(
        "promtool check metrics < {} 2>&1; echo rc=$?",
        s.path("metrics.txt").display()
    ));
    assert!(lint.trim_end().ends_with("rc=0"), "promtool: {lint}");
    // Latency also as a histogram in fixed buckets (what Prometheus can sum over nodes).
    assert!(
        page.contains("# TYPE tandem_backend_latency_bucketed_seconds histogram")
            && page.contains("tandem_backend_latency_bucketed_seconds_bucket{service=\"web\",backend=\"b1\",kind=\"handshake\",le=\"0.00005\"}"),
        "{page}"
    );
    let code = |args: &str| {
        curl_in(
            &t,
            "tl",
            &format!("-o /dev/null -w '%{{http_code}}' {args}"),
        )
    };
    assert_eq!(code(&format!("http://{METRICS}/")), "404");
    assert_eq!(code(&format!("-X POST http://{METRICS}/metrics")), "405");

    // A real Prometheus server scraping the node every second.
    let prom_cfg = s.path("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tandem\n    \
             static_configs:\n      - targets: ['{METRICS}']\n"
        ),
    )
    .unwrap();
    procs.0.push(
        in_ns(
            &t.ns("tl"),
            &format!(
                "exec prometheus --config.file={} --storage.tsdb.path={} --web.listen-address={PROMETHEUS} --log.level=warn",
                prom_cfg.display(),
                s.path("tsdb").display()
            ),
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(s.path("prometheus.log")).unwrap())
        .spawn()
        .unwrap(),
    );
    wait_for(Duration::from_secs(60), Duration::from_millis(500), || {
        if prom_query(&t, "up{job=\"tandem\"}") == Some(1.0) {
            Ok(())
        } else {
            Err(format!(
                "Prometheus never scraped the node: {}",
                std::fs::read_to_string(s.path("prometheus.log")).unwrap_or_default()
            ))
        }
    });
    // Quiet now: a few scrapes later the server holds what show stats says (the odd ARP
    // may move a port's count between two readings: read again until both stand still).
    wait_for(Duration::from_secs(30), Duration::from_secs(3), || {
        let stats = node.ctl("show stats").unwrap();
        let want = (
            stats["workers"][0]["flows_created"].as_f64(),
            stats["ports"][0]["rx"].as_f64(),
            backends(&node)["b1"]["total_flows"].as_f64(),
        );
        let got = (
            prom_query(&t, "tandem_worker_flows_created_total{worker=\"0\"}"),
            prom_query(&t, "tandem_port_received_packets_total{port=\"front\"}"),
            prom_query(
                &t,
                "tandem_backend_new_flows_total{service=\"web\",backend=\"b1\"}",
            ),
        );
        println!("Prometheus (flows created, front rx, b1 new flows): {got:?}; show: {want:?}");
        if got == want && want.0.is_some() {
            Ok(())
        } else {
            Err(format!("Prometheus {got:?} against show {want:?}"))
        }
    });

    // The histogram as Prometheus reads it: a quantile of the handshakes, from the buckets.
    let q = "histogram_quantile(0.5, sum by (le) \
             (tandem_backend_latency_bucketed_seconds_bucket{kind=\"handshake\"}))";
    let p50 = prom_query(&t, q).expect("a handshake median from the histogram");
    println!("Prometheus: handshake p50 from the histogram {p50} s");
    assert!(p50 > 0.0 && p50 <= 10.0, "{p50}");

    let before = seen.len();
    node.stop_with(libc::SIGTERM);
    wait_notified(&notify, &mut seen, "STOPPING=1", before);
}
