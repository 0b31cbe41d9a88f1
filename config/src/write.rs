//! From a [`Config`] back to TOML: what `show config` prints, so a change made at run time
//! can be saved and read again. Every key is written, defaults included, in the notation the
//! file takes (durations as "250ms", MACs as colon hex, paths by port name), so the text
//! reads back to the same configuration (`Config::from_toml(c.to_toml())` is `c`).

use crate::model::*;
use crate::units::{format_duration, format_hex, format_mac};
use std::time::Duration;
use toml::{Table, Value};

fn dur(d: Duration) -> Value {
    Value::String(format_duration(d))
}

fn s(x: impl ToString) -> Value {
    Value::String(x.to_string())
}

fn int(x: impl Into<i64>) -> Value {
    Value::Integer(x.into())
}

fn table(entries: impl IntoIterator<Item = (&'static str, Value)>) -> Table {
    entries
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

impl Config {
    /// The configuration as a TOML document that `check-config` accepts.
    pub fn to_toml(&self) -> String {
        let mut t = Table::new();
        t.insert(
            "node".into(),
            Value::Table(table([("id", int(self.node_id))])),
        );
        t.insert(
            "eal".into(),
            Value::Table(table([(
                "args",
                Value::Array(self.eal_args.iter().map(s).collect()),
            )])),
        );
        t.insert(
            "port".into(),
            Value::Array(self.ports.iter().map(|p| Value::Table(port(p))).collect()),
        );
        t.insert(
            "mempool".into(),
            Value::Table(table([
                ("mbufs", int(self.mempool_mbufs)),
                ("cache", int(self.mempool_cache)),
            ])),
        );
        t.insert("workers".into(), Value::Table(workers(&self.workers)));
        t.insert("flows".into(), Value::Table(flows(&self.flows)));
        t.insert(
            "control".into(),
            Value::Table(table([("socket", s(self.control_socket.display()))])),
        );
        if let Some(m) = self.metrics {
            t.insert("metrics".into(), Value::Table(table([("listen", s(m))])));
        }
        if let Some(b) = &self.bgp {
            t.insert("bgp".into(), Value::Table(bgp(b)));
        }
        t.insert("health".into(), Value::Table(health(&self.health)));
        t.insert("qos".into(), Value::Table(qos(&self.qos)));
        if let Some(c) = &self.cluster {
            t.insert("cluster".into(), Value::Table(cluster(c)));
        }
        t.insert(
            "service".into(),
            Value::Array(
                self.services
                    .iter()
                    .map(|x| Value::Table(service(x, &self.ports)))
                    .collect(),
            ),
        );
        toml::to_string(&t).unwrap_or_default()
    }
}

fn workers(w: &WorkersConfig) -> Table {
    table([
        (
            "cores",
            Value::Array(w.cores.iter().map(|&c| int(c as i64)).collect()),
        ),
        ("burst", int(w.burst as i64)),
        ("idle_sleep", dur(w.idle_sleep)),
    ])
}

fn flows(f: &FlowsConfig) -> Table {
    table([
        ("capacity", int(f.capacity)),
        ("capacity_v6", int(f.capacity_v6)),
        ("tcp_syn_timeout", dur(f.tcp_syn_timeout)),
        ("tcp_established_timeout", dur(f.tcp_established_timeout)),
        ("tcp_closing_timeout", dur(f.tcp_closing_timeout)),
        ("udp_timeout", dur(f.udp_timeout)),
        ("huge_pages", Value::Boolean(f.huge_pages)),
    ])
}

fn bgp(b: &BgpConfig) -> Table {
    table([
        ("bird_socket", s(b.bird_socket.display())),
        ("routes4", s(b.routes4.display())),
        ("routes6", s(b.routes6.display())),
        ("min_healthy", int(b.min_healthy)),
        ("withdraw_grace", dur(b.withdraw_grace)),
    ])
}

fn port(p: &PortConfig) -> Table {
    let mut t = table([("name", s(&p.name)), ("devargs", s(&p.devargs))]);
    if let Some((a, len)) = p.ipv4 {
        t.insert("ipv4".into(), s(format!("{a}/{len}")));
    }
    if let Some((a, len)) = p.ipv6 {
        t.insert("ipv6".into(), s(format!("{a}/{len}")));
    }
    if let Some(g) = p.gateway {
        t.insert("gateway".into(), s(g));
    }
    if let Some(g) = p.gateway6 {
        t.insert("gateway6".into(), s(g));
    }
    if let Some(m) = &p.mac {
        t.insert("mac".into(), s(format_mac(m)));
    }
    t.insert("rx_descriptors".into(), int(p.rx_descriptors));
    t.insert("tx_descriptors".into(), int(p.tx_descriptors));
    t.insert("mtu".into(), int(p.mtu));
    t.insert("max_neighbors".into(), int(p.max_neighbors));
    if let Some(k) = &p.kernel {
        t.insert("kernel".into(), s(k));
    }
    t
}

fn health(h: &HealthConfig) -> Table {
    table([
        (
            "probe",
            s(match h.probe {
                ProbeMethod::Tcp => "tcp",
                ProbeMethod::Icmp => "icmp",
                ProbeMethod::None => "none",
            }),
        ),
        ("interval", dur(h.interval)),
        ("timeout", dur(h.timeout)),
        ("down_after", int(h.down_after)),
        ("up_after", int(h.up_after)),
        (
            "on_backend_down",
            s(match h.on_backend_down {
                OnBackendDown::Keep => "keep",
                OnBackendDown::Move => "move",
            }),
        ),
    ])
}

fn qos(q: &QosConfig) -> Table {
    table([
        ("window", dur(q.window)),
        ("period", dur(q.period)),
        ("selection", s(q.selection.name())),
        ("quantile", Value::Float(q.quantile)),
        ("exponent", Value::Float(q.exponent)),
        ("tolerance", Value::Float(q.tolerance)),
        ("slack", dur(q.slack)),
        ("min_factor", Value::Float(q.min_factor)),
        ("min_samples", int(q.min_samples)),
        ("timeout", dur(q.timeout)),
        ("slow_start", dur(q.slow_start)),
        ("decay", dur(q.decay)),
        ("probation", dur(q.probation)),
    ])
}

fn cluster(c: &ClusterConfig) -> Table {
    let nodes = c
        .nodes
        .iter()
        .map(|n| {
            let mut t = table([
                ("id", int(n.id)),
                ("weight", int(n.weight)),
                ("address", s(n.address)),
                ("sync", s(n.sync)),
            ]);
            if let Some(m) = &n.mac {
                t.insert("mac".into(), s(format_mac(m)));
            }
            Value::Table(t)
        })
        .collect();
    table([
        ("secret_file", s(c.secret_file.display())),
        ("heartbeat", dur(c.heartbeat)),
        ("dead_after", dur(c.dead_after)),
        ("forward_port", int(c.forward_port)),
        ("drain_deadline", dur(c.drain_deadline)),
        ("node", Value::Array(nodes)),
    ])
}

fn service(x: &ServiceConfig, ports: &[PortConfig]) -> Table {
    let mut t = table([
        ("name", s(&x.name)),
        ("vip", s(x.vip)),
        ("port", int(x.port)),
        ("protocol", s(x.protocol.name())),
        ("mode", s(x.mode.name())),
        ("clamp_mss", Value::Boolean(x.clamp_mss)),
        (
            "queue",
            Value::Table(table([
                ("max_len", int(x.queue.max_len)),
                ("max_wait", dur(x.queue.max_wait)),
            ])),
        ),
    ]);
    let a = &x.admission;
    t.insert(
        "admission".into(),
        Value::Table(table([
            ("limit", s(a.limit.name())),
            ("min_limit", int(a.min_limit)),
            ("max_limit", int(a.max_limit)),
            ("tolerance", Value::Float(a.tolerance)),
            ("quantile", Value::Float(a.quantile)),
            ("min_interval", dur(a.min_interval)),
        ])),
    );
    if let Some(sb) = &x.standby {
        let mut st = table([
            ("for", dur(sb.for_)),
            ("recover_for", dur(sb.recover_for)),
            ("cooldown", dur(sb.cooldown)),
            ("healthy_below", int(sb.healthy_below)),
        ]);
        if let Some(p) = sb.p99_above {
            st.insert("p99_above".into(), dur(p));
        }
        if let Some(h) = &sb.hook {
            st.insert("hook".into(), s(h.display()));
        }
        t.insert("standby".into(), Value::Table(st));
    }
    if let Some(q) = &x.quic {
        t.insert("quic".into(), Value::Table(quic(q)));
    }
    t.insert(
        "backend".into(),
        Value::Array(
            x.backends
                .iter()
                .map(|b| Value::Table(backend(b, x.mode, ports)))
                .collect(),
        ),
    );
    t
}

/// `[service.quic]`: the key file's path, never the key.
fn quic(q: &QuicConfig) -> Table {
    let mut t = table([
        ("config_id", int(q.config_id)),
        ("server_id_len", int(q.server_id_len)),
        ("nonce_len", int(q.nonce_len)),
    ]);
    if let Some(k) = &q.key_file {
        t.insert("key_file".into(), s(k.display()));
    }
    t
}

/// A backend as its TOML table: the form `backend add` builds too.
pub fn backend(b: &BackendConfig, mode: Mode, ports: &[PortConfig]) -> Table {
    let mut t = table([
        ("name", s(&b.name)),
        ("address", s(b.address)),
        ("weight", int(b.weight)),
        ("state", s(b.state.name())),
    ]);
    // dsr keeps the VIP's port: the key must be left out.
    if !mode.keeps_vip_port() {
        t.insert("port".into(), int(b.port));
    }
    if b.max_flows > 0 {
        t.insert("max_flows".into(), int(b.max_flows));
    }
    if !b.server_id.is_empty() {
        t.insert("server_id".into(), s(format_hex(&b.server_id)));
    }
    let paths = b
        .paths
        .iter()
        .map(|p| {
            let name = ports.get(p.port).map_or("", |x| x.name.as_str());
            let mut pt = table([("port", s(name))]);
            if let Some(m) = &p.mac {
                pt.insert("mac".into(), s(format_mac(m)));
            }
            Value::Table(pt)
        })
        .collect();
    t.insert("paths".into(), Value::Array(paths));
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every example config and the test configs of this crate read back the same.
    #[test]
    fn configs_read_back_the_same() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_none_or(|x| x != "toml") {
                continue;
            }
            let Ok(cfg) = Config::from_path(&path) else {
                continue;
            };
            let text = cfg.to_toml();
            let again = Config::from_toml(&text)
                .unwrap_or_else(|p| panic!("{}: {p:?}\n{text}", path.display()));
            assert_eq!(again.to_toml(), text, "{}", path.display());
            assert_eq!(
                format!("{again:?}"),
                format!("{cfg:?}"),
                "{}",
                path.display()
            );
            n += 1;
        }
        assert!(n >= 3, "{n} examples read");
    }
}
