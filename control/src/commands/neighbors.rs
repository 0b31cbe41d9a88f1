//! `show neighbors`: the node's neighbor table, paged like `show flows` (ordered by port,
//! family and address; an answer's "next" pages on), with each port's count and limit and
//! what the table refused.

use super::{ok, Command, Spec};
use crate::state::Control;
use serde_json::{json, Map, Value};
use std::net::IpAddr;
use std::time::Instant;
use tandem_config::units::format_mac;
use tandem_dataplane::flow::key::{addr_bytes, bytes_addr};
use tandem_dataplane::neighbor::NeighborKey;

/// Most neighbors one answer lists.
pub const MAX_NEIGHBORS_LISTED: usize = 1_000;

#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    List {
        limit: usize,
        after: Option<(String, IpAddr)>,
    },
}

pub(super) const COMMANDS: &[Spec] = &[Spec {
    name: "show neighbors",
    example: "show neighbors --limit 10 --after back/10.1.0.12",
    args: "[--limit N] [--after PORT/ADDRESS]",
    about: "the neighbor table by port and address: N entries (default 100, at most 1000); \
            an answer's \"next\" pages on",
    parse: parse_list,
}];

pub(super) fn run(ctl: &mut Control, c: Cmd) -> Value {
    match c {
        Cmd::List { limit, after } => show_neighbors(ctl, limit, after),
    }
}

fn parse_list(args: &[&str]) -> Result<Command, String> {
    let mut limit = 100;
    let mut after = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (*a, it.next()) {
            ("--limit", Some(n)) => match n.parse::<usize>() {
                Ok(n) if (1..=MAX_NEIGHBORS_LISTED).contains(&n) => limit = n,
                _ => {
                    return Err(format!(
                        "--limit takes a number from 1 to {MAX_NEIGHBORS_LISTED}, not \"{n}\""
                    ))
                }
            },
            ("--after", Some(c)) => match c.split_once('/') {
                Some((port, addr)) if addr.parse::<IpAddr>().is_ok() => {
                    after = Some((
                        port.to_string(),
                        addr.parse().unwrap_or(IpAddr::from([0; 4])),
                    ))
                }
                _ => {
                    return Err(format!(
                        "--after takes PORT/ADDRESS (an answer's \"next\"), not \"{c}\""
                    ))
                }
            },
            (a, _) => {
                return Err(format!(
                    "show neighbors takes --limit N and --after PORT/ADDRESS, not \"{a}\""
                ))
            }
        }
    }
    Ok(Command::Neighbors(Cmd::List { limit, after }))
}

fn show_neighbors(ctl: &Control, limit: usize, after: Option<(String, IpAddr)>) -> Value {
    let now = Instant::now();
    let from = match after {
        Some((port, addr)) => {
            let Some(p) = ctl.ports().iter().position(|p| p.name == port) else {
                return super::err(format!("--after: no port \"{port}\""));
            };
            Some(NeighborKey::new(p as u8, addr.is_ipv6(), addr_bytes(addr)))
        }
        None => None,
    };
    let mut keys: Vec<&NeighborKey> = ctl
        .neighbors()
        .keys()
        .filter(|k| from.is_none_or(|f| **k > f))
        .collect();
    keys.sort_unstable();
    let more = keys.len() > limit;
    keys.truncate(limit);
    let port_name = |p: u8| ctl.ports().get(usize::from(p)).map(|p| p.name.clone());
    let name = |k: &NeighborKey| {
        format!(
            "{}/{}",
            port_name(k.port).unwrap_or_default(),
            bytes_addr(&k.ip, k.v6)
        )
    };
    let list: Vec<Value> = keys
        .iter()
        .map(|k| {
            let n = &ctl.neighbors()[*k];
            json!({
                "port": port_name(k.port),
                "address": bytes_addr(&k.ip, k.v6).to_string(),
                "mac": n.mac.map(|m| format_mac(&m)),
                "kind": n.why.name(),
                "confirmed_s_ago": n.confirmed.map(|t| now.saturating_duration_since(t).as_secs()),
            })
        })
        .collect();
    let next = match (more, keys.last()) {
        (true, Some(k)) => json!(name(k)),
        _ => Value::Null,
    };
    let per_port: Vec<Value> = ctl
        .ports()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let n = ctl
                .neighbors()
                .keys()
                .filter(|k| usize::from(k.port) == i)
                .count();
            json!({"port": p.name, "entries": n, "max_neighbors": p.max_neighbors})
        })
        .collect();
    let c = ctl.neighbor_counts();
    ok(
        "show neighbors",
        Map::from_iter([
            ("neighbors".into(), Value::Array(list)),
            ("next".into(), next),
            ("ports".into(), Value::Array(per_port)),
            (
                "refused".into(),
                json!({
                    "evicted": c.evicted,
                    "expired": c.expired,
                    "refused_full": c.refused_full,
                    "stale_reports": c.stale_reports,
                    "unwanted": ctl.workers().iter().map(|w| w.counters.neighbors_unwanted.get()).sum::<u64>(),
                    "fixed_kept": ctl.workers().iter().map(|w| w.counters.neighbors_fixed_kept.get()).sum::<u64>(),
                }),
            ),
        ]),
    )
}
