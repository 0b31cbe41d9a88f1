//! Control socket commands: parse one line, run it against the control state, answer one
//! JSON document. A bad command gets `{"ok": false, "error": ...}`, never a dropped
//! connection.

use crate::state::Control;
use serde_json::{json, Map, Value};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use tandem_config::units::format_mac;
use tandem_config::BackendState;
use tandem_dataplane::counters::DropReason;
use tandem_dataplane::flow::key::bytes_addr;
use tandem_dataplane::flow::FlowKey;

pub const HELP: &[(&str, &str)] = &[
    ("help", "this list"),
    (
        "show stats",
        "per port and per worker: rx, tx, drops by reason, Mpps",
    ),
    (
        "show services",
        "services: VIP, port, protocol, mode, backends, admission queue; recent QoS events",
    ),
    (
        "show backends [SERVICE]",
        "backends: state, health, weight, QoS factor, latency, admitted/max flows, new flows/s",
    ),
    (
        "show latency BACKEND [PATH]",
        "latency windows of a backend (SERVICE/BACKEND, or a unique name), all paths or one \
         (index or port name): p50, p90, p99, p99.9, max, count, timeouts, resets",
    ),
    (
        "show flows [--limit N] [--after NEXT]",
        "flows this node knows, most recent first: N of them (default 100, at most 1000); \
         an answer's \"next\" pages on",
    ),
    (
        "show flow PROTO SRC:PORT DST:PORT",
        "one flow's record (client to VIP, or a nat reply's 5-tuple)",
    ),
    ("show neighbors", "resolved next hops per port"),
    (
        "show nodes",
        "cluster nodes: alive, heartbeat age, readiness, flows, sync traffic, lag",
    ),
    (
        "node drain [DURATION]",
        "this node takes no new flows; serves its own until they end or DURATION passes",
    ),
    ("node enable", "this node takes new flows again"),
    (
        "backend drain SERVICE BACKEND",
        "no new flows to the backend; existing flows stay",
    ),
    (
        "backend enable SERVICE BACKEND",
        "make the backend active again",
    ),
    (
        "backend weight SERVICE BACKEND W",
        "set the backend's weight (0 takes no new flows)",
    ),
];

fn err(msg: impl Into<String>) -> Value {
    json!({"ok": false, "error": msg.into()})
}

fn ok(command: &str, mut body: Map<String, Value>) -> Value {
    body.insert("ok".into(), Value::Bool(true));
    body.insert("command".into(), Value::String(command.into()));
    Value::Object(body)
}

/// Runs one command line.
pub fn execute(ctl: &mut Control, line: &str) -> Value {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [] => err("empty command; try \"help\""),
        ["help"] => {
            let cmds: Vec<Value> = HELP
                .iter()
                .map(|(c, d)| json!({"command": c, "description": d}))
                .collect();
            ok(
                "help",
                Map::from_iter([("commands".into(), Value::Array(cmds))]),
            )
        }
        ["show", "stats"] => show_stats(ctl),
        ["show", "services"] => show_services(ctl),
        ["show", "backends"] => show_backends(ctl, None),
        ["show", "backends", s] => show_backends(ctl, Some(s)),
        ["show", "latency", b] => show_latency(ctl, b, None),
        ["show", "latency", b, p] => show_latency(ctl, b, Some(p)),
        ["show", "flows", rest @ ..] => show_flows(ctl, rest),
        ["show", "flow", proto, src, dst] => show_flow(ctl, proto, src, dst),
        ["show", "neighbors"] => show_neighbors(ctl),
        ["show", "nodes"] => show_nodes(ctl),
        ["node", "drain"] => node_drain(ctl, None),
        ["node", "drain", d] => match tandem_config::units::parse_duration(d) {
            Ok(d) => node_drain(ctl, Some(d)),
            Err(e) => err(format!("node drain: {e}")),
        },
        ["node", "enable"] => match ctl.cluster.as_mut() {
            Some(c) => {
                c.undrain();
                ok("node enable", Map::new())
            }
            None => err("this node is not part of a cluster (no [cluster] in its config)"),
        },
        ["node", ..] => err("usage: node drain [DURATION], or node enable"),
        ["backend", verb @ ("drain" | "enable"), svc, b] => {
            let st = if *verb == "drain" {
                BackendState::Draining
            } else {
                BackendState::Active
            };
            match ctl.update_backend(svc, b, Some(st), None) {
                Ok(()) => ok(
                    &format!("backend {verb}"),
                    Map::from_iter([
                        ("service".into(), json!(svc)),
                        ("backend".into(), json!(b)),
                        ("state".into(), json!(st.name())),
                    ]),
                ),
                Err(e) => err(e),
            }
        }
        ["backend", "weight", svc, b, w] => match w.parse::<u32>() {
            Ok(w) => match ctl.update_backend(svc, b, None, Some(w)) {
                Ok(()) => ok(
                    "backend weight",
                    Map::from_iter([
                        ("service".into(), json!(svc)),
                        ("backend".into(), json!(b)),
                        ("weight".into(), json!(w)),
                    ]),
                ),
                Err(e) => err(e),
            },
            Err(_) => err(format!("weight must be a whole number, not \"{w}\"")),
        },
        ["backend", ..] => {
            err("usage: backend drain|enable SERVICE BACKEND, or backend weight SERVICE BACKEND W")
        }
        ["show", ..] => err(format!("unknown command \"{line}\"; try \"help\"")),
        _ => err(format!("unknown command \"{}\"; try \"help\"", line.trim())),
    }
}

fn show_stats(ctl: &Control) -> Value {
    let r = &ctl.rates;
    let ports: Vec<Value> = ctl
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let rx: u64 = ctl
                .workers
                .iter()
                .map(|w| w.counters.ports[i].rx_packets.get())
                .sum();
            let tx: u64 = ctl
                .workers
                .iter()
                .map(|w| w.counters.ports[i].tx_packets.get())
                .sum();
            let d = ctl.device_stats.get(i).copied().unwrap_or_default();
            let bytes = |f: fn(&tandem_dataplane::counters::PortCounters) -> u64| -> u64 {
                ctl.workers.iter().map(|w| f(&w.counters.ports[i])).sum()
            };
            json!({
                "port": p.name,
                "mac": format_mac(&p.mac),
                "link": if ctl.link_up.get(i).copied().unwrap_or(true) { "up" } else { "down" },
                "rx": rx,
                "tx": tx,
                "rx_bytes": bytes(|c| c.rx_bytes.get()),
                "tx_bytes": bytes(|c| c.tx_bytes.get()),
                "rx_mpps": r.port_rx_pps.get(i).copied().unwrap_or(0.0) / 1e6,
                "tx_mpps": r.port_tx_pps.get(i).copied().unwrap_or(0.0) / 1e6,
                "rx_missed": d.imissed,
                "rx_errors": d.ierrors,
                "tx_errors": d.oerrors,
                "rx_nombuf": d.rx_nombuf,
                "kernel_drops": d.kernel_drops,
            })
        })
        .collect();
    let mut total_drops = Map::new();
    let workers: Vec<Value> = ctl
        .workers
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let c = &w.counters;
            let rx: u64 = (0..ctl.ports.len())
                .map(|p| c.ports[p].rx_packets.get())
                .sum();
            let tx: u64 = (0..ctl.ports.len())
                .map(|p| c.ports[p].tx_packets.get())
                .sum();
            let mut drops = Map::new();
            for r in DropReason::ALL {
                let n = c.dropped(*r);
                if n > 0 {
                    drops.insert(r.name().into(), json!(n));
                    let t = total_drops.entry(r.name()).or_insert(json!(0));
                    *t = json!(t.as_u64().unwrap_or(0) + n);
                }
            }
            json!({
                "worker": i,
                "rx": rx,
                "tx": tx,
                "rx_mpps": r.worker_rx_pps.get(i).copied().unwrap_or(0.0) / 1e6,
                "tx_mpps": r.worker_tx_pps.get(i).copied().unwrap_or(0.0) / 1e6,
                "drops": drops,
                "arp_replies": c.arp_replies.get(),
                "icmp_replies": c.icmp_replies.get(),
                "nd_replies": c.nd_replies.get(),
                "deferred": c.deferred.get(),
                "loops": c.bursts.get(),
                "idle_loops": c.idle_polls.get(),
                "probes_sent": c.probes_sent.get(),
                "probe_replies": c.probe_replies.get(),
                "flows_in_table": c.flows_in_table.get(),
                "flows_created": c.flows_created.get(),
                "flows_replicated_in": c.flows_replicated_in.get(),
                "flows_evicted": c.flows_evicted.get(),
                "flows_refused": c.flows_refused.get(),
                "flows_expired": c.flows_expired.get(),
                "path_failovers": c.path_failovers.get(),
                "node_forwarded": c.node_forwarded.get(),
                "node_received": c.node_received.get(),
                "node_failovers": c.node_failovers.get(),
                "outbox_overflow": c.outbox_overflow.get(),
                "flows_unlisted": c.flows_unlisted.get(),
            })
        })
        .collect();
    ok(
        "show stats",
        Map::from_iter([
            ("node".into(), json!(ctl.cfg.node_id)),
            ("uptime_s".into(), json!(ctl.started.elapsed().as_secs())),
            ("ports".into(), Value::Array(ports)),
            ("workers".into(), Value::Array(workers)),
            ("drops".into(), Value::Object(total_drops)),
            ("accounting".into(), accounting(ctl)),
            ("flows".into(), json!(ctl.flows.len())),
            ("replicated_to_workers".into(), json!(ctl.flows_replicated)),
        ]),
    )
}

/// Where every frame received went, summed over workers: `received = forwarded + replies +
/// absorbed + dropped + waiting`, and `unaccounted` is what that leaves (0 when all is well;
/// read apart from a moving node, the parts are read at slightly different moments).
/// `tx_full` frames had been forwarded or sent as replies before the TX ring refused them,
/// so they are among `forwarded`, `replies` (and probes), not in `dropped`.
fn accounting(ctl: &Control) -> Value {
    let (mut received, mut sent, mut replies, mut dropped, mut waiting) = (0u64, 0, 0, 0, 0);
    let mut absorbed = [0u64; tandem_dataplane::counters::NUM_ABSORBED];
    for w in &ctl.workers {
        let c = &w.counters;
        received += (0..ctl.ports.len())
            .map(|p| c.ports[p].rx_packets.get())
            .sum::<u64>();
        sent += c.sent.get();
        replies += c.replies();
        dropped += c.total_drops() - c.dropped(DropReason::TxFull);
        waiting += c.waiting.get();
        for (a, n) in absorbed.iter_mut().zip(&c.absorbed) {
            *a += n.get();
        }
    }
    let mut by_kind = Map::new();
    for (k, n) in tandem_dataplane::counters::Absorbed::ALL
        .iter()
        .zip(absorbed)
    {
        by_kind.insert(k.name().into(), json!(n));
    }
    let total_absorbed: u64 = absorbed.iter().sum();
    let forwarded = sent.saturating_sub(replies);
    let parts = forwarded + replies + total_absorbed + dropped + waiting;
    json!({
        "received": received,
        "forwarded": forwarded,
        "replies": replies,
        "absorbed": total_absorbed,
        "absorbed_by_kind": by_kind,
        "dropped": dropped,
        "waiting": waiting,
        "unaccounted": received as i64 - parts as i64,
    })
}

fn show_services(ctl: &Control) -> Value {
    let s = &ctl.snapshot;
    let list: Vec<Value> = s
        .services
        .iter()
        .map(|svc| {
            json!({
                "service": svc.name,
                "vip": s.vip_addr(svc).to_string(),
                "port": svc.port,
                "protocol": if svc.proto == 6 { "tcp" } else { "udp" },
                "mode": svc.mode.name(),
                "backends": svc.backends.len(),
                "active_backends": svc.backends.iter()
                    .filter(|&&b| s.backends[usize::from(b)].state == BackendState::Active).count(),
                "eligible_backends": svc.backends.iter()
                    .filter(|&&b| s.backends[usize::from(b)].eligible).count(),
                "selection": s.options.selection.name(),
                "queue": queue_json(ctl, svc),
            })
        })
        .collect();
    let now = Instant::now();
    let events: Vec<Value> = ctl
        .qos
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

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A service's admission queue, summed over workers.
fn queue_json(ctl: &Control, svc: &tandem_dataplane::services::Service) -> Value {
    if !svc.admission {
        return Value::String("-".into());
    }
    let i = usize::from(svc.id);
    let sum = |f: fn(&tandem_dataplane::counters::QueueCounters) -> u64| -> u64 {
        ctl.workers
            .iter()
            .filter_map(|w| w.counters.queues.get(i))
            .map(f)
            .sum()
    };
    let released = sum(|q| q.released.get());
    let wait = sum(|q| q.wait_us.get());
    let max_wait = ctl
        .workers
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
    let s = &ctl.snapshot;
    if let Some(name) = only {
        if !s.services.iter().any(|x| x.name == name) {
            return err(format!("no service named \"{name}\""));
        }
    }
    let active = ctl.active_flows_by_backend();
    let mut total_new = vec![0u64; s.backends.len()];
    for w in &ctl.workers {
        for (i, t) in total_new.iter_mut().enumerate() {
            *t += w.counters.backend_new_flows[i].get();
        }
    }
    let list: Vec<Value> = s
        .backends
        .iter()
        .filter(|b| only.is_none_or(|n| s.services[usize::from(b.service)].name == n))
        .map(|b| {
            let i = usize::from(b.id);
            let paths: Vec<String> = b
                .paths
                .iter()
                .map(|p| {
                    let port = &ctl.ports[usize::from(p.port)].name;
                    let hop = match p.mac {
                        Some(m) => format!("{port}/{}", format_mac(&m)),
                        None => format!("{port}/arp"),
                    };
                    let up = if p.up { "up" } else { "down" };
                    format!("{hop} {up} {:.2}", f64::from(p.share) / 1000.0)
                })
                .collect();
            let live = ctl.qos.live.get(i);
            let est = ctl.qos.estimates.get(i);
            let state = match (b.state, live.is_some_and(|l| l.standby_active)) {
                (BackendState::Standby, true) => "standby (active)",
                (st, _) => st.name(),
            };
            json!({
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
                "admitted": ctl.load.active(b.id),
                "max_flows": if b.max_flows == 0 { json!("-") } else { json!(b.max_flows) },
                "active_flows": active.get(i).copied().unwrap_or(0),
                "new_flows_per_s": ctl.rates.backend_new_per_s.get(i).copied().unwrap_or(0.0),
                "total_flows": total_new[i],
                "paths": paths.join(","),
            })
        })
        .collect();
    ok(
        "show backends",
        Map::from_iter([("backends".into(), Value::Array(list))]),
    )
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
    let mut found = s.backends.iter().filter(|b| b.name == name);
    match (found.next(), found.next()) {
        (Some(b), None) => Ok(b),
        (Some(_), Some(_)) => Err(format!(
            "several services have a backend \"{name}\": name it SERVICE/{name}"
        )),
        (None, _) => Err(format!("no backend named \"{name}\"")),
    }
}

fn show_latency(ctl: &Control, name: &str, path: Option<&str>) -> Value {
    let s = &ctl.snapshot;
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
                .position(|x| ctl.ports[usize::from(x.port)].name == p);
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
    let w = &ctl.qos.windows;
    let period = ctl.qos.cfg.period;
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
                        ctl.ports[usize::from(b.paths[p].port)].name
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

fn flow_json(ctl: &Control, key: &FlowKey, f: &crate::state::MasterFlow, now: Instant) -> Value {
    let s = &ctl.snapshot;
    let svc = s.services.get(usize::from(f.rec.service));
    let b = s.backends.get(usize::from(f.rec.backend));
    let node_id = |i: u8| -> Value {
        match (&s.cluster, i) {
            (Some(c), i) if i != tandem_dataplane::cluster::NO_NODE => json!(c.id_of(i)),
            _ => Value::Null,
        }
    };
    let path = |i: u8| -> Value {
        b.and_then(|b| b.paths.get(usize::from(i)))
            .map(|p| json!(ctl.ports[usize::from(p.port)].name))
            .unwrap_or(Value::Null)
    };
    json!({
        "flow": key.to_string(),
        "protocol": if key.proto == 6 { "tcp" } else { "udp" },
        "client": SocketAddr::new(key.src_ip(), key.sport).to_string(),
        "vip": SocketAddr::new(key.dst_ip(), key.dport).to_string(),
        "service": svc.map(|s| s.name.clone()),
        "backend": b.map(|b| b.name.clone()),
        "backend_address": b.map(|b| SocketAddr::new(bytes_addr(&b.addr, b.v6), b.port).to_string()),
        "primary_path": path(f.rec.primary_path),
        "backup_path": path(f.rec.backup_path),
        "state": f.rec.state.name(),
        "ingress_port": ctl.ports.get(usize::from(f.rec.ingress_port)).map(|p| p.name.clone()),
        "primary_node": node_id(f.rec.primary_node),
        "backup_node": node_id(f.rec.backup_node),
        "learned_from": if f.node == 0 { json!("local") } else { json!(f.node) },
        "worker": f.worker,
        "age_s": now.duration_since(f.created).as_secs_f64(),
        "idle_s": now.duration_since(f.updated).as_secs_f64(),
    })
}

/// Most flows one `show flows` answers; more are read page by page with `--after`.
pub const MAX_FLOWS_LISTED: usize = 1_000;

/// A flow's place in `show flows` order (most recently updated first): microseconds since
/// the node started, then a hash of its key to order flows updated in the same microsecond.
type ListPos = (u64, u64);

fn list_pos(ctl: &Control, k: &FlowKey, f: &crate::state::MasterFlow) -> ListPos {
    use std::hash::BuildHasher;
    let us = f.updated.saturating_duration_since(ctl.started).as_micros() as u64;
    (us, ctl.flows.hasher().hash_one(k))
}

/// `show flows [--limit N] [--after CURSOR]`: the N most recently updated flows, or the N
/// after a cursor a previous page gave as `next`. One pass over the flows keeping the best
/// N in a heap, so a page costs the same whatever the table holds and never a list of all.
/// A flow updated while an operator pages moves to the front and is not listed again.
fn show_flows(ctl: &Control, args: &[&str]) -> Value {
    let mut limit = 100;
    let mut after: Option<ListPos> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (*a, it.next()) {
            ("--limit", Some(n)) => match n.parse::<usize>() {
                Ok(n) if (1..=MAX_FLOWS_LISTED).contains(&n) => limit = n,
                _ => {
                    return err(format!(
                        "--limit takes a number from 1 to {MAX_FLOWS_LISTED}, not \"{n}\" \
                         (page on with --after NEXT)"
                    ))
                }
            },
            ("--after", Some(c)) => match parse_cursor(c) {
                Some(p) => after = Some(p),
                None => {
                    return err(format!(
                        "--after takes the \"next\" of an answer, not \"{c}\""
                    ))
                }
            },
            (a, _) => {
                return err(format!(
                    "show flows takes --limit N and --after CURSOR, not \"{a}\""
                ))
            }
        }
    }
    let now = Instant::now();
    let mut best: std::collections::BinaryHeap<std::cmp::Reverse<Ranked>> =
        std::collections::BinaryHeap::with_capacity(limit + 1);
    let mut eligible = 0usize;
    for (k, f) in &ctl.flows {
        let pos = list_pos(ctl, k, f);
        if after.is_some_and(|a| pos >= a) {
            continue;
        }
        eligible += 1;
        if best.len() < limit {
            best.push(std::cmp::Reverse(Ranked(pos, k)));
        } else if best.peek().is_some_and(|m| pos > m.0 .0) {
            best.pop();
            best.push(std::cmp::Reverse(Ranked(pos, k)));
        }
    }
    let mut page: Vec<(ListPos, &FlowKey)> = best.into_iter().map(|r| (r.0 .0, r.0 .1)).collect();
    page.sort_by_key(|p| std::cmp::Reverse(p.0));
    let next = match page.last() {
        Some((pos, _)) if eligible > page.len() => json!(format!("{:x}.{:x}", pos.0, pos.1)),
        _ => Value::Null,
    };
    let list: Vec<Value> = page
        .iter()
        .filter_map(|(_, k)| ctl.flows.get(*k).map(|f| flow_json(ctl, k, f, now)))
        .collect();
    ok(
        "show flows",
        Map::from_iter([
            ("total".into(), json!(ctl.flows.len())),
            ("flows".into(), Value::Array(list)),
            ("next".into(), next),
        ]),
    )
}

/// A flow in the heap of `show flows`, ordered by its place alone.
struct Ranked<'a>(ListPos, &'a FlowKey);

impl PartialEq for Ranked<'_> {
    fn eq(&self, o: &Self) -> bool {
        self.0 == o.0
    }
}
impl Eq for Ranked<'_> {}
impl PartialOrd for Ranked<'_> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ranked<'_> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.cmp(&o.0)
    }
}

fn parse_cursor(c: &str) -> Option<ListPos> {
    let (a, b) = c.split_once('.')?;
    Some((
        u64::from_str_radix(a, 16).ok()?,
        u64::from_str_radix(b, 16).ok()?,
    ))
}

/// Parses "1.2.3.4:80" or "[fd00::1]:80".
fn parse_endpoint(s: &str) -> Result<(IpAddr, u16), String> {
    s.parse::<SocketAddr>()
        .map(|a| (a.ip(), a.port()))
        .map_err(|_| format!("\"{s}\" is not ADDRESS:PORT (IPv6 as [ADDRESS]:PORT)"))
}

fn show_flow(ctl: &Control, proto: &str, src: &str, dst: &str) -> Value {
    let p = match proto {
        "tcp" => 6,
        "udp" => 17,
        _ => return err(format!("protocol must be tcp or udp, not \"{proto}\"")),
    };
    let (s, d) = match (parse_endpoint(src), parse_endpoint(dst)) {
        (Ok(s), Ok(d)) => (s, d),
        (Err(e), _) | (_, Err(e)) => return err(e),
    };
    if s.0.is_ipv4() != d.0.is_ipv4() {
        return err("source and destination must be of one address family");
    }
    let key = FlowKey::new(s.0, s.1, d.0, d.1, p);
    let now = Instant::now();
    if let Some(f) = ctl.flows.get(&key) {
        return ok(
            "show flow",
            flow_json(ctl, &key, f, now)
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
    }
    // A nat reply's 5-tuple (backend to client): find the flow it belongs to.
    for (k, f) in &ctl.flows {
        let Some(b) = ctl.snapshot.backends.get(usize::from(f.rec.backend)) else {
            continue;
        };
        if k.proto == p
            && k.src == key.dst
            && k.sport == key.dport
            && b.addr == key.src
            && b.port == key.sport
        {
            return ok(
                "show flow",
                flow_json(ctl, k, f, now)
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            );
        }
    }
    err(format!("no flow {key}"))
}

fn node_drain(ctl: &mut Control, deadline: Option<std::time::Duration>) -> Value {
    let Some(c) = ctl.cluster.as_mut() else {
        return err("this node is not part of a cluster (no [cluster] in its config)");
    };
    let now = Instant::now();
    let until = c.drain(deadline, now);
    ok(
        "node drain",
        Map::from_iter([(
            "serves_own_flows_for_s".into(),
            json!(until.duration_since(now).as_secs_f64()),
        )]),
    )
}

fn show_nodes(ctl: &Control) -> Value {
    let Some(c) = ctl.cluster.as_ref() else {
        return err("this node is not part of a cluster (no [cluster] in its config)");
    };
    let now = Instant::now();
    let mut nodes = Vec::new();
    for (i, n) in c.view.nodes.iter().enumerate() {
        let addr = bytes_addr(&n.addr, n.v6).to_string();
        if i == usize::from(c.view.me) {
            nodes.push(json!({
                "id": n.id,
                "self": true,
                "address": addr,
                "alive": true,
                "heartbeat_age_ms": Value::Null,
                "status": c.status(now),
                "serving": c.membership.serves(c.view.me),
                "flows": ctl.flows.len(),
                "datagrams_in": c.peers.iter().map(|p| p.stats.datagrams_in).sum::<u64>(),
                "datagrams_out": c.peers.iter().map(|p| p.stats.datagrams_out).sum::<u64>(),
                "records_in": c.peers.iter().map(|p| p.stats.records_in).sum::<u64>(),
                "records_out": c.peers.iter().map(|p| p.stats.records_out).sum::<u64>(),
                "auth_failures": c.peers.iter().map(|p| p.stats.auth_failures).sum::<u64>(),
                "replays": c.peers.iter().map(|p| p.stats.replays).sum::<u64>(),
                "lag_ms": Value::Null,
            }));
            continue;
        }
        let Some(p) = c.peers.iter().find(|p| p.cfg.id == n.id) else {
            continue;
        };
        nodes.push(json!({
            "id": n.id,
            "self": false,
            "address": addr,
            "alive": p.alive,
            "heartbeat_age_ms": p.last_heard.map(|t| now.duration_since(t).as_millis() as u64),
            "status": crate::cluster::Cluster::peer_status(p),
            "serving": c.membership.serves(p.index),
            "flows": p.flows,
            "datagrams_in": p.stats.datagrams_in,
            "datagrams_out": p.stats.datagrams_out + c.heartbeats_sent(p.cfg.id),
            "records_in": p.stats.records_in,
            "records_out": p.stats.records_out,
            "auth_failures": p.stats.auth_failures,
            "replays": p.stats.replays,
            "snapshot_requests_refused": p.stats.snapshot_requests_refused,
            "lag_ms": c.lag(p, now).as_millis() as u64,
        }));
    }
    let mut refused = Map::new();
    for (r, n) in crate::cluster::REFUSALS.iter().zip(c.refused) {
        refused.insert(r.name().into(), json!(n));
    }
    // Records from authentic datagrams that were not applied, in all and by reason.
    refused.insert(
        "invalid_records".into(),
        json!(c.records_invalid.iter().sum::<u64>()),
    );
    let mut invalid = Map::new();
    for (r, n) in crate::cluster::RecordRefusal::ALL
        .iter()
        .zip(c.records_invalid)
    {
        invalid.insert(r.name().into(), json!(n));
    }
    refused.insert("invalid_records_by_reason".into(), Value::Object(invalid));
    ok(
        "show nodes",
        Map::from_iter([
            ("node".into(), json!(c.me)),
            ("status".into(), json!(c.status(now))),
            ("sync".into(), json!(c.local_addr().to_string())),
            ("snapshot_records".into(), json!(c.snapshot_records)),
            ("refused".into(), Value::Object(refused)),
            ("nodes".into(), Value::Array(nodes)),
        ]),
    )
}

fn show_neighbors(ctl: &Control) -> Value {
    let now = Instant::now();
    let mut list: Vec<Value> = ctl
        .neighbors
        .iter()
        .map(|((port, ip), (mac, t))| {
            let v6 = ip[4..] != [0; 12];
            json!({
                "port": ctl.ports.get(usize::from(*port)).map(|p| p.name.clone()),
                "address": bytes_addr(ip, v6).to_string(),
                "mac": format_mac(mac),
                "age_s": now.duration_since(*t).as_secs(),
            })
        })
        .collect();
    list.sort_by(|a, b| a["address"].as_str().cmp(&b["address"].as_str()));
    ok(
        "show neighbors",
        Map::from_iter([("neighbors".into(), Value::Array(list))]),
    )
}
