//! Services and their backends: `show services`, `show backends`, `show latency`, and the
//! run-time changes `backend drain|enable|weight`.

use super::{err, no_args, ok, round3, Command, Spec};
use crate::state::Control;
use serde_json::{json, Map, Value};
use std::time::Instant;
use tandem_config::units::format_mac;
use tandem_config::BackendState;
use tandem_dataplane::flow::key::bytes_addr;

#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    Services,
    Backends {
        service: Option<String>,
    },
    Latency {
        backend: String,
        path: Option<String>,
    },
    SetState {
        service: String,
        backend: String,
        state: BackendState,
    },
    SetWeight {
        service: String,
        backend: String,
        weight: u32,
    },
}

pub(super) const COMMANDS: &[Spec] = &[
    Spec {
        name: "show services",
        example: "show services",
        args: "",
        about: "services: VIP, port, protocol, mode, backends, admission queue; recent QoS events",
        parse: |a| no_args(a, Command::Services(Cmd::Services)),
    },
    Spec {
        name: "show backends",
        example: "show backends web",
        args: "[SERVICE]",
        about:
            "backends: state, health, weight, QoS factor, latency, admitted/max flows, new flows/s",
        parse: |a| match a {
            [] => Ok(Command::Services(Cmd::Backends { service: None })),
            [s] => Ok(Command::Services(Cmd::Backends {
                service: Some(s.to_string()),
            })),
            _ => Err("usage: show backends [SERVICE]".into()),
        },
    },
    Spec {
        name: "show latency",
        example: "show latency web/a 0",
        args: "BACKEND [PATH]",
        about:
            "latency windows of a backend (SERVICE/BACKEND, or a unique name), all paths or one \
                (index or port name): p50, p90, p99, p99.9, max, count, timeouts, resets",
        parse: |a| match a {
            [b] => Ok(Command::Services(Cmd::Latency {
                backend: b.to_string(),
                path: None,
            })),
            [b, p] => Ok(Command::Services(Cmd::Latency {
                backend: b.to_string(),
                path: Some(p.to_string()),
            })),
            _ => Err("usage: show latency BACKEND [PATH]".into()),
        },
    },
    Spec {
        name: "backend drain",
        example: "backend drain web a",
        args: "SERVICE BACKEND",
        about: "no new flows to the backend; existing flows stay",
        parse: |a| set_state(a, BackendState::Draining, "drain"),
    },
    Spec {
        name: "backend enable",
        example: "backend enable web a",
        args: "SERVICE BACKEND",
        about: "make the backend active again",
        parse: |a| set_state(a, BackendState::Active, "enable"),
    },
    Spec {
        name: "backend weight",
        example: "backend weight web a 3",
        args: "SERVICE BACKEND W",
        about: "set the backend's weight (0 takes no new flows)",
        parse: |a| match a {
            [s, b, w] => match w.parse::<u32>() {
                Ok(weight) => Ok(Command::Services(Cmd::SetWeight {
                    service: s.to_string(),
                    backend: b.to_string(),
                    weight,
                })),
                Err(_) => Err(format!("weight must be a whole number, not \"{w}\"")),
            },
            _ => Err("usage: backend weight SERVICE BACKEND W".into()),
        },
    },
];

fn set_state(a: &[&str], state: BackendState, verb: &str) -> Result<Command, String> {
    match a {
        [s, b] => Ok(Command::Services(Cmd::SetState {
            service: s.to_string(),
            backend: b.to_string(),
            state,
        })),
        _ => Err(format!("usage: backend {verb} SERVICE BACKEND")),
    }
}

pub(super) fn run(ctl: &mut Control, c: Cmd) -> Value {
    match c {
        Cmd::Services => show_services(ctl),
        Cmd::Backends { service } => show_backends(ctl, service.as_deref()),
        Cmd::Latency { backend, path } => show_latency(ctl, &backend, path.as_deref()),
        Cmd::SetState {
            service,
            backend,
            state,
        } => match ctl.update_backend(&service, &backend, Some(state), None) {
            Ok(()) => {
                let verb = if state == BackendState::Draining {
                    "drain"
                } else {
                    "enable"
                };
                ok(
                    &format!("backend {verb}"),
                    Map::from_iter([
                        ("service".into(), json!(service)),
                        ("backend".into(), json!(backend)),
                        ("state".into(), json!(state.name())),
                    ]),
                )
            }
            Err(e) => err(e),
        },
        Cmd::SetWeight {
            service,
            backend,
            weight,
        } => match ctl.update_backend(&service, &backend, None, Some(weight)) {
            Ok(()) => ok(
                "backend weight",
                Map::from_iter([
                    ("service".into(), json!(service)),
                    ("backend".into(), json!(backend)),
                    ("weight".into(), json!(weight)),
                ]),
            ),
            Err(e) => err(e),
        },
    }
}

fn show_services(ctl: &Control) -> Value {
    let s = &ctl.snapshot();
    let list: Vec<Value> = s
        .services
        .iter()
        .filter(|svc| !svc.is_vacant())
        .map(|svc| {
            json!({
                "service": if svc.removing { format!("{} (removing)", svc.name) } else { svc.name.clone() },
                "vip": s.vip_addr(svc).to_string(),
                "port": svc.port,
                "protocol": match (svc.proto, &svc.quic) { (6, _) => "tcp", (_, Some(_)) => "quic", _ => "udp" },
                "quic": svc.quic.as_ref().map_or(Value::Null, |q| {
                    let c = q.config();
                    json!({"config_id": c.config_id(), "server_id_len": c.server_id_len(),
                           "nonce_len": c.nonce_len(), "encrypted": c.encrypted()})
                }),
                "mode": svc.mode.name(),
                "backends": svc.backends.len(),
                "active_backends": svc.backends.iter()
                    .filter(|&&b| s.backends[usize::from(b)].state == BackendState::Active).count(),
                "eligible_backends": svc.backends.iter()
                    .filter(|&&b| s.backends[usize::from(b)].eligible).count(),
                "selection": s.options.selection.name(),
                "limits": admission_mode(ctl, svc),
                "queue": queue_json(ctl, svc),
            })
        })
        .collect();
    let now = Instant::now();
    let events: Vec<Value> = ctl
        .qos()
        .events
        .iter()
        .rev()
        .map(|(t, e)| json!({"age_s": round3(now.duration_since(*t).as_secs_f64()), "event": e}))
        .collect();
    ok(
        "show services",
        Map::from_iter([
            ("services".into(), Value::Array(list)),
            ("events".into(), Value::Array(events)),
        ]),
    )
}

/// Where a service's backends' limits come from: learned, `max_flows`, or none.
fn admission_mode(ctl: &Control, svc: &tandem_dataplane::services::Service) -> &'static str {
    let placed = ctl.layout().services.iter().find(|p| p.id == svc.id);
    match placed.map(|p| &p.cfg.admission) {
        Some(a) if a.adaptive() => "adaptive",
        _ if svc.admission => "static (max_flows)",
        _ => "none",
    }
}

/// A service's admission queue, summed over workers.
fn queue_json(ctl: &Control, svc: &tandem_dataplane::services::Service) -> Value {
    if !svc.admission {
        return Value::String("-".into());
    }
    let i = usize::from(svc.id);
    let sum = |f| ctl.queue_total(svc.id, f);
    let released = sum(|q| q.released.get());
    let wait = sum(|q| q.wait_us.get());
    let max_wait = ctl
        .workers()
        .iter()
        .filter_map(|w| w.counters.queues.get(i))
        .map(|q| q.max_wait_us.get())
        .max()
        .unwrap_or(0);
    json!(format!(
        "len {} of {}, waited {}, released {}, mean wait {:.1}ms, max wait {:.1}ms, full {}, timed out {}",
        sum(|q| q.length.get()),
        svc.queue_max_len,
        sum(|q| q.queued.get()),
        released,
        if released > 0 { wait as f64 / released as f64 / 1000.0 } else { 0.0 },
        max_wait as f64 / 1000.0,
        sum(|q| q.full.get()),
        sum(|q| q.timed_out.get()),
    ))
}

fn show_backends(ctl: &Control, only: Option<&str>) -> Value {
    let s = &ctl.snapshot();
    if let Some(name) = only {
        if !s.services.iter().any(|x| x.name == name) {
            return err(format!("no service named \"{name}\""));
        }
    }
    let active = ctl.active_flows_by_backend();
    let list: Vec<Value> = s
        .backends
        .iter()
        .filter(|b| !b.is_vacant())
        .filter(|b| only.is_none_or(|n| s.services[usize::from(b.service)].name == n))
        .map(|b| {
            let i = usize::from(b.id);
            let paths: Vec<String> = b
                .paths
                .iter()
                .map(|p| {
                    let port = &ctl.ports()[usize::from(p.port)].name;
                    let hop = match p.mac {
                        Some(m) => format!("{port}/{}", format_mac(&m)),
                        None => format!("{port}/arp"),
                    };
                    let up = if p.up { "up" } else { "down" };
                    format!("{hop} {up} {:.2}", f64::from(p.share) / 1000.0)
                })
                .collect();
            let live = ctl.qos().live.get(i);
            let est = ctl.qos().estimates.get(i);
            let state = match (b.state, live.is_some_and(|l| l.standby_active)) {
                _ if b.removing => "removing",
                (BackendState::Standby, true) => "standby (active)",
                (st, _) => st.name(),
            };
            let mut row = json!({
                "service": s.services[usize::from(b.service)].name,
                "backend": b.name,
                "address": bytes_addr(&b.addr, b.v6).to_string(),
                "port": b.port,
                "state": state,
                "health": if b.up { "up" } else { "down" },
                "weight": b.weight,
                "qos_factor": live.map_or(1.0, |l| round3(l.factor)),
                "ramp": live.map_or(1.0, |l| round3(l.ramp)),
                "latency_ms": est.and_then(|e| e.latency_us).map_or(Value::Null, |us| json!(round3(us as f64 / 1000.0))),
                "latency_of": est.and_then(|e| e.kind).map_or("-", |k| k.name()),
                "admitted": ctl.load().active(b.id),
                "max_flows": if b.max_flows == 0 { json!("-") } else { json!(b.max_flows) },
                "active_flows": active.get(i).copied().unwrap_or(0),
                "new_flows_per_s": ctl.rates().backend_new_per_s.get(i).copied().unwrap_or(0.0),
                "total_flows": ctl.backend_new_flows(b.id),
                "paths": paths.join(","),
                "server_id": ctl.backend_server_id(b.id),
            });
            if let Value::Object(m) = &mut row {
                m.extend(limit_fields(ctl, b));
            }
            row
        })
        .collect();
    ok(
        "show backends",
        Map::from_iter([("backends".into(), Value::Array(list))]),
    )
}

/// A backend's admission limit as it stands: `limit` (what new flows are held to: learned,
/// or `max_flows`, or none), `in_flight` (flows holding a slot), and for a learned limit
/// its minimum and sampled latency and its last change.
fn limit_fields(ctl: &Control, b: &tandem_dataplane::services::Backend) -> Map<String, Value> {
    let ms = |us: Option<u64>| us.map_or(Value::Null, |u| json!(round3(u as f64 / 1000.0)));
    let mut m = Map::new();
    m.insert("in_flight".into(), json!(ctl.load().active(b.id)));
    match ctl.learned_limit(b.id) {
        Some(l) => {
            let now = std::time::Instant::now();
            m.insert("limit".into(), json!(ctl.load().learned(b.id)));
            m.insert("limit_from".into(), json!("learned"));
            m.insert("limit_value".into(), json!(round3(l.value())));
            m.insert("min_latency_ms".into(), ms(l.min_us));
            m.insert("sampled_latency_ms".into(), ms(l.sample_us));
            m.insert(
                "limit_changed".into(),
                l.changed_ago(now).map_or(Value::Null, |(ago, why)| {
                    json!(format!("{:.1} s ago: {}", ago.as_secs_f64(), why.name()))
                }),
            );
        }
        None if b.max_flows > 0 => {
            m.insert("limit".into(), json!(b.max_flows));
            m.insert("limit_from".into(), json!("max_flows"));
        }
        None => {
            m.insert("limit".into(), json!("-"));
            m.insert("limit_from".into(), json!("-"));
        }
    }
    m
}

/// A backend named `SERVICE/BACKEND`, or by its name alone when no other service has one
/// so named.
fn find_backend<'a>(
    s: &'a tandem_dataplane::services::Services,
    name: &str,
) -> Result<&'a tandem_dataplane::services::Backend, String> {
    if let Some((svc, b)) = name.split_once('/') {
        return s
            .backend_by_name(svc, b)
            .ok_or_else(|| format!("no backend \"{b}\" in service \"{svc}\""));
    }
    let mut found = s
        .backends
        .iter()
        .filter(|b| !b.is_vacant() && b.name == name);
    match (found.next(), found.next()) {
        (Some(b), None) => Ok(b),
        (Some(_), Some(_)) => Err(format!(
            "several services have a backend \"{name}\": name it SERVICE/{name}"
        )),
        (None, _) => Err(format!("no backend named \"{name}\"")),
    }
}

fn show_latency(ctl: &Control, name: &str, path: Option<&str>) -> Value {
    let s = &ctl.snapshot();
    let b = match find_backend(s, name) {
        Ok(b) => b,
        Err(e) => return err(e),
    };
    let path = match path {
        None => None,
        Some(p) => {
            let by_index = p.parse::<usize>().ok().filter(|i| *i < b.paths.len());
            let by_port = b
                .paths
                .iter()
                .position(|x| ctl.ports()[usize::from(x.port)].name == p);
            match by_index.or(by_port) {
                Some(i) => Some(i),
                None => {
                    return err(format!(
                        "backend {} has no path \"{p}\" (give an index below {} or a port name)",
                        b.name,
                        b.paths.len()
                    ))
                }
            }
        }
    };
    let w = &ctl.qos().windows;
    let period = ctl.qos().cfg.period;
    let ms = |us: u64| round3(us as f64 / 1000.0);
    let mut rows = Vec::new();
    for kind in tandem_dataplane::qos::hist::Kind::ALL {
        for (label, periods) in [("window", w.slots()), ("last period", 1)] {
            let x = w.summary(b.id, path, kind, periods);
            rows.push(json!({
                "kind": kind.name(),
                "span": label,
                "count": x.count,
                "p50_ms": ms(x.p50_us),
                "p90_ms": ms(x.p90_us),
                "p99_ms": ms(x.p99_us),
                "p99.9_ms": ms(x.p999_us),
                "max_ms": ms(x.max_us),
                "timeouts": x.timeouts,
                "resets": x.resets,
            }));
        }
    }
    let svc = &s.services[usize::from(b.service)];
    ok(
        "show latency",
        Map::from_iter([
            ("service".into(), json!(svc.name)),
            ("backend".into(), json!(b.name)),
            (
                "path".into(),
                match path {
                    Some(p) => json!(format!(
                        "{} ({})",
                        p,
                        ctl.ports()[usize::from(b.paths[p].port)].name
                    )),
                    None => json!("all"),
                },
            ),
            (
                "window".into(),
                json!(format!(
                    "{:?} ({} periods of {:?})",
                    period * w.slots() as u32,
                    w.slots(),
                    period
                )),
            ),
            ("latency".into(), Value::Array(rows)),
        ]),
    )
}
