//! The page against the commands' answers, and the endpoint's answers to good, bad and slow
//! clients.

use super::*;
use crate::commands::execute;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// The value of the series `name{labels}` on a page (labels as written, in order).
fn value(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn the_page_says_what_the_commands_say() {
    let (mut ctl, mut cores) = crate::state::test_node(1);
    crate::state::test_traffic(&mut ctl, &mut cores);
    let page = render(&ctl);
    let stats = execute(&mut ctl, "show stats");
    let port = &stats["ports"][0];
    assert_eq!(
        value(&page, "tandem_port_received_packets_total{port=\"front\"}"),
        port["rx"].as_f64(),
        "{page}"
    );
    assert_eq!(
        value(&page, "tandem_port_sent_packets_total{port=\"back\"}"),
        stats["ports"][1]["tx"].as_f64()
    );
    let w = &stats["workers"][0];
    assert_eq!(
        value(&page, "tandem_worker_flows_created_total{worker=\"0\"}"),
        w["flows_created"].as_f64()
    );
    for (reason, n) in w["drops"].as_object().unwrap() {
        let series = format!("tandem_dropped_packets_total{{worker=\"0\",reason=\"{reason}\"}}");
        assert_eq!(value(&page, &series), n.as_f64(), "{series}");
    }
    let backends = execute(&mut ctl, "show backends");
    for b in backends["backends"].as_array().unwrap() {
        let l = format!(
            "{{service=\"{}\",backend=\"{}\"}}",
            b["service"].as_str().unwrap(),
            b["backend"].as_str().unwrap()
        );
        assert_eq!(
            value(&page, &format!("tandem_backend_new_flows_total{l}")),
            b["total_flows"].as_f64()
        );
        assert_eq!(
            value(&page, &format!("tandem_backend_weight{l}")),
            b["weight"].as_f64()
        );
        assert_eq!(
            value(&page, &format!("tandem_backend_flows{l}")),
            b["active_flows"].as_f64()
        );
    }
    assert!(page.contains("# TYPE tandem_backend_new_flows_total counter"));
    assert!(page.contains("# TYPE tandem_worker_flows gauge"));
    // Every worker counter `show stats` lists is on the page, with its value.
    let mut listed = 0;
    for (name, n) in w.as_object().unwrap() {
        if !n.is_u64() || ["worker", "rx", "tx"].contains(&name.as_str()) {
            continue;
        }
        let series = match name.as_str() {
            "flows_in_table" => "tandem_worker_flows{worker=\"0\"}".to_string(),
            "waiting" => "tandem_worker_waiting{worker=\"0\"}".to_string(),
            _ => format!("tandem_worker_{name}_total{{worker=\"0\"}}"),
        };
        assert_eq!(value(&page, &series), n.as_f64(), "{series}\n{page}");
        listed += 1;
    }
    let mut names = 0;
    cores[0].state.counters.each(|_, _| names += 1);
    assert_eq!(listed, names, "every counter of the list, and nothing else");
}

fn ask(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(request).unwrap();
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out
}

#[test]
fn the_endpoint_answers_get_metrics_and_nothing_else_and_slow_clients_do_not_hold_it() {
    let page = Arc::new(Page::default());
    page.set("tandem_up 1\n".into());
    assert!(!page.wanted(), "just rendered, not scraped");
    let srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), Arc::clone(&page)).unwrap();
    let addr = srv.local_addr();
    let ok = ask(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    assert!(
        ok.contains("Content-Type: text/plain; version=0.0.4"),
        "{ok}"
    );
    assert!(ok.ends_with("\r\n\r\ntandem_up 1\n"), "{ok}");
    // A stale page: the scrape asks for a fresh one, and gets it when it comes in time.
    std::thread::sleep(Duration::from_millis(1100));
    let renderer = {
        let page = Arc::clone(&page);
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while !page.wanted() {
                assert!(t0.elapsed() < Duration::from_secs(5), "never asked");
                std::thread::sleep(Duration::from_millis(5));
            }
            page.set("tandem_up 2\n".into());
        })
    };
    let fresh = ask(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    renderer.join().unwrap();
    assert!(fresh.ends_with("\r\n\r\ntandem_up 2\n"), "{fresh}");
    // Stale and nobody renders: the old page, after at most half a second.
    std::thread::sleep(Duration::from_millis(1100));
    let t0 = Instant::now();
    let stale = ask(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(stale.ends_with("tandem_up 2\n"), "{stale}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert!(page.wanted(), "the scrape asked");
    let q = ask(addr, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n");
    assert!(q.starts_with("HTTP/1.1 200"), "{q}");
    let post = ask(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    assert!(post.contains("Allow: GET"), "{post}");
    let other = ask(addr, b"GET / HTTP/1.1\r\n\r\n");
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    let junk = ask(addr, b"\x00\x01 not http\r\n\r\n");
    assert!(junk.starts_with("HTTP/1.1 400"), "{junk}");
    // Slow clients: many connections that send half a request and wait.
    let slow: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"GET /metr").unwrap();
            c
        })
        .collect();
    let t0 = Instant::now();
    let ok = ask(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    // Each slow client holds only its own thread: the scrape is answered beside them.
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    // Past the limit the slowest still sending its head makes room: the scrape is served.
    let more: Vec<TcpStream> = (0..30)
        .map(|_| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"GET /metr").unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let ok = ask(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    drop(more);
    drop(slow);
    let ok = ask(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    drop(srv);
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err(),
        "stopped"
    );
}

#[test]
fn a_cluster_node_pages_its_peers_and_the_records_it_refused() {
    let (n1, _n2) =
        crate::state::test_cluster_pair(crate::state::TEST_CONFIG, crate::state::TEST_CONFIG);
    let page = render(&n1);
    assert_eq!(
        value(&page, "tandem_node_alive{node=\"1\"}"),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        value(&page, "tandem_node_alive{node=\"2\"}"),
        Some(0.0),
        "{page}"
    );
    assert_eq!(value(&page, "tandem_node_ready"), Some(0.0), "{page}");
    assert_eq!(
        value(&page, "tandem_sync_records_received_total{node=\"2\"}"),
        Some(0.0)
    );
    for r in crate::cluster::RecordRefusal::ALL {
        let series = format!(
            "tandem_sync_refused_records_total{{reason=\"{}\"}}",
            r.name()
        );
        assert_eq!(value(&page, &series), Some(0.0), "{series}");
    }
    assert!(page.contains("# TYPE tandem_sync_lag_seconds gauge"));
}

/// The second hostile campaign: 300 slowloris connections (each sends a byte of its head
/// every 300 ms, and reconnects when closed) left a scraper 15 answers of 55. Now the
/// slowest make room and the scraper gets at least 90% of its answers.
#[test]
fn a_slowloris_crowd_leaves_a_scraper_its_answers() {
    let page = Arc::new(Page::default());
    page.set("tandem_up 1\n".into());
    let srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), Arc::clone(&page)).unwrap();
    let addr = srv.local_addr();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loris: Vec<_> = (0..4)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut conns: Vec<Option<TcpStream>> = (0..75).map(|_| None).collect();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for c in conns.iter_mut() {
                        let alive = c.as_mut().is_some_and(|s| s.write_all(b"G").is_ok());
                        if !alive {
                            *c = TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                                .ok()
                                .inspect(|s| {
                                    let _ = s.set_nodelay(true);
                                });
                        }
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            })
        })
        .collect();
    let renderer = {
        let (page, stop) = (Arc::clone(&page), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                page.set("tandem_up 1\n".into());
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let mut answered = 0;
    for _ in 0..55 {
        let a = ask(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        answered += usize::from(a.starts_with("HTTP/1.1 200"));
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in loris {
        t.join().unwrap();
    }
    renderer.join().unwrap();
    println!("scraper: {answered} of 55 answered among 300 slowloris connections");
    assert!(answered * 10 >= 55 * 9, "{answered} of 55");
}

/// Every family name this module can page: its literals, and a worker counter's
/// `tandem_worker_NAME_total`.
fn exported(name: &str) -> bool {
    let base = ["_bucket", "_count", "_sum"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    let literal = |n: &str| include_str!("mod.rs").contains(&format!("\"{n}\""));
    let mut counter = false;
    tandem_dataplane::counters::WorkerCounters::default().each(|c, _| {
        counter |= base == format!("tandem_worker_{c}_total");
    });
    literal(name) || literal(base) || counter
}

/// The Grafana dashboard in packaging/ asks only for series a node exports (a renamed
/// family would leave a panel empty without a word).
#[test]
fn every_dashboard_query_names_a_series_the_node_exports() {
    let d: serde_json::Value = serde_json::from_str(include_str!(
        "../../../packaging/grafana/tandem-dashboard.json"
    ))
    .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    let mut walk = vec![&d];
    while let Some(v) = walk.pop() {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(e) = m.get("expr").and_then(|e| e.as_str()) {
                    exprs.push(e.to_string());
                }
                walk.extend(m.values());
            }
            serde_json::Value::Array(a) => walk.extend(a),
            _ => {}
        }
    }
    assert!(exprs.len() >= 10, "{exprs:?}");
    let mut names = 0;
    for e in &exprs {
        let mut rest = e.as_str();
        while let Some(at) = rest.find("tandem_") {
            let n: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                exported(&n),
                "{n} (in {e}) is not a series the node exports"
            );
            names += 1;
            rest = &rest[at + n.len()..];
        }
    }
    assert!(names >= exprs.len(), "every query names a tandem series");
    // The check itself tells a wrong name.
    assert!(!exported("tandem_backend_latency_histogram_seconds_bucket"));
    assert!(exported("tandem_worker_flows_created_total"));
}
