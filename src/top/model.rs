//! What `tandem top` shows, read from the control socket once a second: the node's answers
//! to `show services`, `show backends`, `show latency`, `show stats` and `show nodes`, and a
//! minute of each backend's latency for the sparklines. No terminal here: the view reads
//! this, and the tests fill it from JSON.

use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::path::Path;

/// Seconds of latency history a sparkline shows.
pub const HISTORY: usize = 60;

/// One backend's row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendRow {
    pub service: String,
    pub backend: String,
    pub state: String,
    pub health: String,
    pub qos_factor: f64,
    pub new_per_s: f64,
    pub active: u64,
    pub admitted: u64,
    /// The admission limit (learned or `max_flows`; "-": none).
    pub limit: String,
    /// Window medians and 99th percentiles, milliseconds, of the kind QoS compares (or the
    /// first kind with samples); None without samples.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub latency_kind: String,
}

/// One service's admission queue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceRow {
    pub name: String,
    pub vip: String,
    pub mode: String,
    pub backends: String,
    pub queue_len: u64,
    pub queue_full: u64,
    pub queue_timed_out: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PortRow {
    pub name: String,
    pub link: String,
    pub rx_mpps: f64,
    pub tx_mpps: f64,
    pub rx: u64,
    pub tx: u64,
    pub missed: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeRow {
    pub id: String,
    pub status: String,
    pub alive: String,
    pub flows: u64,
    pub lag: String,
}

/// Which way the backends are sorted (`s` cycles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    #[default]
    Name,
    NewFlows,
    Active,
    P99,
}

impl Sort {
    pub fn next(self) -> Sort {
        match self {
            Sort::Name => Sort::NewFlows,
            Sort::NewFlows => Sort::Active,
            Sort::Active => Sort::P99,
            Sort::P99 => Sort::Name,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Sort::Name => "name",
            Sort::NewFlows => "new flows/s",
            Sort::Active => "active flows",
            Sort::P99 => "p99",
        }
    }
}

/// Everything on screen.
#[derive(Debug, Default)]
pub struct Model {
    pub node: String,
    pub uptime_s: u64,
    pub flows: u64,
    pub services: Vec<ServiceRow>,
    pub backends: Vec<BackendRow>,
    pub ports: Vec<PortRow>,
    /// Drops by reason over every worker, largest first.
    pub drops: Vec<(String, u64)>,
    pub nodes: Vec<NodeRow>,
    pub clustered: bool,
    /// Per "service/backend": the last minute of p50 and p99, microseconds (0: none).
    pub p50_history: HashMap<String, VecDeque<u64>>,
    pub p99_history: HashMap<String, VecDeque<u64>>,
    /// The last refresh's error (the node stopped, say); the screen keeps the last data.
    pub error: Option<String>,
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}
fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}
fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

impl Model {
    /// Reads every answer from the node at `socket`.
    pub fn refresh(&mut self, socket: &Path) {
        let ask = |line: &str| tandem_control::client::request(socket, line);
        let answers = (|| -> anyhow::Result<[Value; 4]> {
            Ok([
                ask("show stats")?,
                ask("show services")?,
                ask("show backends")?,
                ask("show nodes")?,
            ])
        })();
        match answers {
            Ok([stats, services, backends, nodes]) => {
                self.error = None;
                self.take_stats(&stats);
                self.take_services(&services);
                self.take_backends(&backends, |key| ask(&format!("show latency {key}")).ok());
                self.take_nodes(&nodes);
            }
            Err(e) => self.error = Some(format!("{e:#}")),
        }
    }

    pub fn take_stats(&mut self, v: &Value) {
        self.node = s(&v["node"]);
        self.uptime_s = u(&v["uptime_s"]);
        self.flows = u(&v["flows"]);
        self.ports = v["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| PortRow {
                name: s(&p["port"]),
                link: s(&p["link"]),
                rx_mpps: f(&p["rx_mpps"]),
                tx_mpps: f(&p["tx_mpps"]),
                rx: u(&p["rx"]),
                tx: u(&p["tx"]),
                missed: u(&p["rx_missed"]),
            })
            .collect();
        let mut drops: Vec<(String, u64)> = v["drops"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, n)| (k.clone(), u(n)))
            .filter(|(_, n)| *n > 0)
            .collect();
        drops.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        self.drops = drops;
    }

    pub fn take_services(&mut self, v: &Value) {
        self.services = v["services"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| {
                // "len N of M, waited .., full F, timed out T" (or "-": no admission).
                let q = s(&x["queue"]);
                let after = |word: &str| -> u64 {
                    q.split(", ")
                        .find_map(|part| part.strip_prefix(word))
                        .and_then(|rest| rest.split(' ').next())
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0)
                };
                ServiceRow {
                    name: s(&x["service"]),
                    vip: format!("{}:{}", s(&x["vip"]), s(&x["port"])),
                    mode: s(&x["mode"]),
                    backends: format!(
                        "{}/{}",
                        s(&x["eligible_backends"]),
                        s(&x["active_backends"])
                    ),
                    queue_len: after("len "),
                    queue_full: after("full "),
                    queue_timed_out: after("timed out "),
                }
            })
            .collect();
    }

    /// The backends, and their latency from `latency(SERVICE/BACKEND)` (`show latency`).
    pub fn take_backends(&mut self, v: &Value, latency: impl Fn(&str) -> Option<Value>) {
        let mut rows = Vec::new();
        for b in v["backends"].as_array().into_iter().flatten() {
            let mut r = BackendRow {
                service: s(&b["service"]),
                backend: s(&b["backend"]),
                state: s(&b["state"]),
                health: s(&b["health"]),
                qos_factor: f(&b["qos_factor"]),
                new_per_s: f(&b["new_flows_per_s"]),
                active: u(&b["active_flows"]),
                admitted: u(&b["admitted"]),
                limit: s(&b["limit"]),
                latency_kind: s(&b["latency_of"]),
                ..BackendRow::default()
            };
            let key = format!("{}/{}", r.service, r.backend);
            if let Some(l) = latency(&key) {
                let windows: Vec<&Value> = l["latency"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|w| w["span"] == "window" && u(&w["count"]) > 0)
                    .collect();
                let w = windows
                    .iter()
                    .find(|w| w["kind"] == b["latency_of"])
                    .or(windows.first());
                if let Some(w) = w {
                    r.p50_ms = w["p50_ms"].as_f64();
                    r.p99_ms = w["p99_ms"].as_f64();
                    if r.latency_kind == "-" {
                        r.latency_kind = s(&w["kind"]);
                    }
                }
            }
            let push = |h: &mut HashMap<String, VecDeque<u64>>, x: Option<f64>| {
                let q = h.entry(key.clone()).or_default();
                if q.len() == HISTORY {
                    q.pop_front();
                }
                q.push_back(x.map_or(0, |ms| (ms * 1000.0) as u64));
            };
            push(&mut self.p50_history, r.p50_ms);
            push(&mut self.p99_history, r.p99_ms);
            rows.push(r);
        }
        self.backends = rows;
    }

    pub fn take_nodes(&mut self, v: &Value) {
        self.clustered = v["ok"] == true && v["nodes"].is_array();
        self.nodes = v["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| NodeRow {
                id: s(&n["id"]),
                status: s(&n["status"]),
                alive: s(&n["alive"]),
                flows: u(&n["flows"]),
                lag: n["lag_ms"]
                    .as_u64()
                    .map_or("-".into(), |l| format!("{l} ms")),
            })
            .collect();
    }

    /// The backends in `sort` order (largest first for the numbers).
    pub fn sorted_backends(&self, sort: Sort) -> Vec<&BackendRow> {
        let mut v: Vec<&BackendRow> = self.backends.iter().collect();
        let by = |x: f64, y: f64| y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal);
        match sort {
            Sort::Name => v.sort_by(|a, b| (&a.service, &a.backend).cmp(&(&b.service, &b.backend))),
            Sort::NewFlows => v.sort_by(|a, b| by(a.new_per_s, b.new_per_s)),
            Sort::Active => v.sort_by_key(|b| std::cmp::Reverse(b.active)),
            Sort::P99 => v.sort_by(|a, b| by(a.p99_ms.unwrap_or(0.0), b.p99_ms.unwrap_or(0.0))),
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_fill_the_rows_and_history_keeps_a_minute() {
        let mut m = Model::default();
        let backends = json!({"ok": true, "backends": [
            {"service": "web", "backend": "a", "state": "active", "health": "up",
             "qos_factor": 0.9, "new_flows_per_s": 12.5, "active_flows": 3, "admitted": 3,
             "latency_of": "handshake"},
            {"service": "web", "backend": "b", "state": "active", "health": "down",
             "qos_factor": 1.0, "new_flows_per_s": 40.0, "active_flows": 1, "admitted": 1,
             "latency_of": "-"}]});
        let latency = |key: &str| {
            (key == "web/a").then(|| json!({"latency": [
                {"kind": "probe", "span": "window", "count": 5, "p50_ms": 0.2, "p99_ms": 0.4},
                {"kind": "handshake", "span": "window", "count": 9, "p50_ms": 1.5, "p99_ms": 7.0},
                {"kind": "handshake", "span": "last period", "count": 1, "p50_ms": 9.0, "p99_ms": 9.0}]}))
        };
        for _ in 0..HISTORY + 5 {
            m.take_backends(&backends, latency);
        }
        let a = &m.backends[0];
        assert_eq!(
            (a.p50_ms, a.p99_ms),
            (Some(1.5), Some(7.0)),
            "the kind QoS compares"
        );
        assert_eq!(m.backends[1].p99_ms, None);
        assert_eq!(m.p99_history["web/a"].len(), HISTORY);
        assert_eq!(m.p99_history["web/a"][0], 7000);
        let names = |s: Sort| -> Vec<String> {
            m.sorted_backends(s)
                .iter()
                .map(|b| b.backend.clone())
                .collect()
        };
        assert_eq!(names(Sort::Name), ["a", "b"]);
        assert_eq!(names(Sort::NewFlows), ["b", "a"]);
        assert_eq!(names(Sort::Active), ["a", "b"]);
        assert_eq!(names(Sort::P99), ["a", "b"]);

        m.take_stats(&json!({"node": 1, "uptime_s": 5, "flows": 7,
            "ports": [{"port": "front", "link": "up", "rx": 10, "tx": 9, "rx_mpps": 0.5, "tx_mpps": 0.4, "rx_missed": 0}],
            "drops": {"no_backend": 3, "malformed": 0, "queue_full": 8}}));
        assert_eq!(
            m.drops,
            [("queue_full".to_string(), 8), ("no_backend".to_string(), 3)]
        );
        assert_eq!(m.ports[0].name, "front");
        m.take_services(&json!({"services": [{"service": "web", "vip": "192.0.2.10", "port": 80,
            "mode": "nat", "eligible_backends": 2, "active_backends": 2,
            "queue": "len 4 of 64, waited 9, released 5, mean wait 1.0ms, max wait 2.0ms, full 1, timed out 2"}]}));
        let w = &m.services[0];
        assert_eq!((w.queue_len, w.queue_full, w.queue_timed_out), (4, 1, 2));
        m.take_nodes(&json!({"ok": true, "nodes": [
            {"id": 1, "self": true, "alive": true, "status": "ready", "flows": 9},
            {"id": 2, "alive": false, "status": "dead", "flows": 0, "lag_ms": 1200}]}));
        assert!(m.clustered);
        assert_eq!(m.nodes[1].status, "dead");
        assert_eq!(m.nodes[1].lag, "1200 ms");
        m.take_nodes(&json!({"ok": false, "error": "not part of a cluster"}));
        assert!(!m.clustered && m.nodes.is_empty());
    }
}
