//! Flows this node knows: `show flows` (paged, most recent first) and `show flow` (one).

use super::{err, ok, Command, Spec};
use crate::state::{Control, MasterFlow};
use serde_json::{json, Map, Value};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use tandem_dataplane::flow::key::bytes_addr;
use tandem_dataplane::flow::FlowKey;

#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    List {
        limit: usize,
        after: Option<ListPos>,
    },
    One {
        key: FlowKey,
    },
}

pub(super) const COMMANDS: &[Spec] = &[
    Spec {
        name: "show flows",
        example: "show flows --limit 5 --after 1f.2a",
        args: "[--limit N] [--after NEXT]",
        about: "flows this node knows, most recent first: N of them (default 100, at most 1000); \
                an answer's \"next\" pages on",
        parse: parse_list,
    },
    Spec {
        name: "show flow",
        example: "show flow tcp 198.51.100.7:40000 192.0.2.10:80",
        args: "PROTO SRC:PORT DST:PORT",
        about: "one flow's record (client to VIP, or a nat reply's 5-tuple)",
        parse: parse_one,
    },
];

pub(super) fn run(ctl: &mut Control, c: Cmd) -> Value {
    match c {
        Cmd::List { limit, after } => show_flows(ctl, limit, after),
        Cmd::One { key } => show_flow(ctl, &key),
    }
}

fn parse_list(args: &[&str]) -> Result<Command, String> {
    let mut limit = 100;
    let mut after: Option<ListPos> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (*a, it.next()) {
            ("--limit", Some(n)) => match n.parse::<usize>() {
                Ok(n) if (1..=MAX_FLOWS_LISTED).contains(&n) => limit = n,
                _ => {
                    return Err(format!(
                        "--limit takes a number from 1 to {MAX_FLOWS_LISTED}, not \"{n}\" \
                         (page on with --after NEXT)"
                    ))
                }
            },
            ("--after", Some(c)) => match parse_cursor(c) {
                Some(p) => after = Some(p),
                None => {
                    return Err(format!(
                        "--after takes the \"next\" of an answer, not \"{c}\""
                    ))
                }
            },
            (a, _) => {
                return Err(format!(
                    "show flows takes --limit N and --after CURSOR, not \"{a}\""
                ))
            }
        }
    }
    Ok(Command::Flows(Cmd::List { limit, after }))
}

fn parse_one(args: &[&str]) -> Result<Command, String> {
    let [proto, src, dst] = args else {
        return Err("usage: show flow PROTO SRC:PORT DST:PORT".into());
    };
    let p = match *proto {
        "tcp" => 6,
        "udp" => 17,
        _ => return Err(format!("protocol must be tcp or udp, not \"{proto}\"")),
    };
    let (s, d) = (parse_endpoint(src)?, parse_endpoint(dst)?);
    if s.0.is_ipv4() != d.0.is_ipv4() {
        return Err("source and destination must be of one address family".into());
    }
    Ok(Command::Flows(Cmd::One {
        key: FlowKey::new(s.0, s.1, d.0, d.1, p),
    }))
}

fn flow_json(ctl: &Control, key: &FlowKey, f: &MasterFlow, now: Instant) -> Value {
    let s = &ctl.snapshot();
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
            .map(|p| json!(ctl.ports()[usize::from(p.port)].name))
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
        "ingress_port": ctl.ports().get(usize::from(f.rec.ingress_port)).map(|p| p.name.clone()),
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
pub type ListPos = (u64, u64);

fn list_pos(ctl: &Control, k: &FlowKey, f: &MasterFlow) -> ListPos {
    use std::hash::BuildHasher;
    let us = f
        .updated
        .saturating_duration_since(ctl.started())
        .as_micros() as u64;
    (us, ctl.flows().hasher().hash_one(k))
}

/// `show flows [--limit N] [--after CURSOR]`: the N most recently updated flows, or the N
/// after a cursor a previous page gave as `next`. One pass over the flows keeping the best
/// N in a heap, so a page costs the same whatever the table holds and never a list of all.
/// A flow updated while an operator pages moves to the front and is not listed again.
fn show_flows(ctl: &Control, limit: usize, after: Option<ListPos>) -> Value {
    let now = Instant::now();
    let mut best: std::collections::BinaryHeap<std::cmp::Reverse<Ranked>> =
        std::collections::BinaryHeap::with_capacity(limit + 1);
    let mut eligible = 0usize;
    for (k, f) in ctl.flows() {
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
        .filter_map(|(_, k)| ctl.flows().get(*k).map(|f| flow_json(ctl, k, f, now)))
        .collect();
    ok(
        "show flows",
        Map::from_iter([
            ("total".into(), json!(ctl.flows().len())),
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

fn show_flow(ctl: &Control, key: &FlowKey) -> Value {
    let (key, p) = (*key, key.proto);
    let now = Instant::now();
    if let Some(f) = ctl.flows().get(&key) {
        return ok(
            "show flow",
            flow_json(ctl, &key, f, now)
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
    }
    // A nat reply's 5-tuple (backend to client): find the flow it belongs to.
    for (k, f) in ctl.flows() {
        let Some(b) = ctl.snapshot().backends.get(usize::from(f.rec.backend)) else {
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
