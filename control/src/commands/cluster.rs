//! The cluster: `show nodes`, and `node drain|enable` for this node.

use super::{err, no_args, ok, Command, Spec};
use crate::cluster::PeerStats;
use crate::state::Control;
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};
use tandem_dataplane::flow::key::bytes_addr;

#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    Nodes,
    Drain { deadline: Option<Duration> },
    Enable,
}

pub(super) const COMMANDS: &[Spec] = &[
    Spec {
        name: "show nodes",
        example: "show nodes",
        args: "",
        about: "cluster nodes: alive, heartbeat age, readiness, flows, sync traffic, lag",
        parse: |a| no_args(a, Command::Cluster(Cmd::Nodes)),
    },
    Spec {
        name: "node drain",
        example: "node drain 10s",
        args: "[DURATION]",
        about: "this node takes no new flows; serves its own until they end or DURATION passes",
        parse: |a| match a {
            [] => Ok(Command::Cluster(Cmd::Drain { deadline: None })),
            [d] => tandem_config::units::parse_duration(d)
                .map(|d| Command::Cluster(Cmd::Drain { deadline: Some(d) }))
                .map_err(|e| format!("node drain: {e}")),
            _ => Err("usage: node drain [DURATION]".into()),
        },
    },
    Spec {
        name: "node enable",
        example: "node enable",
        args: "",
        about: "this node takes new flows again",
        parse: |a| no_args(a, Command::Cluster(Cmd::Enable)),
    },
];

const NOT_CLUSTERED: &str = "this node is not part of a cluster (no [cluster] in its config)";

pub(super) fn run(ctl: &mut Control, c: Cmd) -> Value {
    match c {
        Cmd::Nodes => show_nodes(ctl),
        Cmd::Drain { deadline } => node_drain(ctl, deadline),
        Cmd::Enable => match ctl.cluster_mut() {
            Some(c) => {
                c.sync.undrain();
                ok("node enable", Map::new())
            }
            None => err(NOT_CLUSTERED),
        },
    }
}

fn node_drain(ctl: &mut Control, deadline: Option<Duration>) -> Value {
    let Some(c) = ctl.cluster_mut() else {
        return err(NOT_CLUSTERED);
    };
    let now = Instant::now();
    let until = c.sync.drain(deadline, now);
    ok(
        "node drain",
        Map::from_iter([(
            "serves_own_flows_for_s".into(),
            json!(until.duration_since(now).as_secs_f64()),
        )]),
    )
}

fn show_nodes(ctl: &Control) -> Value {
    let Some(c) = ctl.cluster() else {
        return err(NOT_CLUSTERED);
    };
    let now = Instant::now();
    let mut nodes = Vec::new();
    for (i, n) in c.sync.view.nodes.iter().enumerate() {
        let addr = bytes_addr(&n.addr, n.v6).to_string();
        if i == usize::from(c.sync.view.me) {
            nodes.push(self_entry(ctl, n.id, addr, now));
            continue;
        }
        let Some(p) = c.sync.peers.iter().find(|p| p.cfg.id == n.id) else {
            continue;
        };
        nodes.push(json!({
            "id": n.id,
            "self": false,
            "address": addr,
            "alive": p.alive,
            "heartbeat_age_ms": p.last_heard.map(|t| now.duration_since(t).as_millis() as u64),
            "status": crate::cluster::Endpoint::peer_status(p),
            "serving": c.sync.membership.serves(p.index),
            "flows": p.flows,
            "datagrams_in": p.stats.datagrams_in,
            "datagrams_out": p.stats.datagrams_out + c.heartbeats_sent(p.cfg.id),
            "records_in": p.stats.records_in,
            "records_out": p.stats.records_out,
            "records_unsent": p.stats.records_unsent,
            "auth_failures": p.stats.auth_failures,
            "replays": p.stats.replays,
            "snapshot_requests_refused": p.stats.snapshot_requests_refused,
            "lag_ms": c.sync.lag(p, now).as_millis() as u64,
        }));
    }
    let mut refused = Map::new();
    for (r, n) in crate::cluster::REFUSALS.iter().zip(c.sync.refused) {
        refused.insert(r.name().into(), json!(n));
    }
    // Records from authentic datagrams that were not applied, in all and by reason.
    refused.insert(
        "invalid_records".into(),
        json!(c.sync.records_invalid.iter().sum::<u64>()),
    );
    let mut invalid = Map::new();
    for (r, n) in crate::cluster::RecordRefusal::ALL
        .iter()
        .zip(c.sync.records_invalid)
    {
        invalid.insert(r.name().into(), json!(n));
    }
    refused.insert("invalid_records_by_reason".into(), Value::Object(invalid));
    ok(
        "show nodes",
        Map::from_iter([
            ("node".into(), json!(c.sync.me)),
            ("status".into(), json!(c.sync.status(now))),
            ("sync".into(), json!(c.local_addr().to_string())),
            ("snapshot_records".into(), json!(c.sync.snapshot_records)),
            ("refused".into(), Value::Object(refused)),
            ("nodes".into(), Value::Array(nodes)),
        ]),
    )
}

/// `show nodes`' line for this node: its sync counters summed over its peers.
fn self_entry(ctl: &Control, id: u16, addr: String, now: Instant) -> Value {
    let Some(c) = ctl.cluster() else {
        return Value::Null;
    };
    let sum = |f: fn(&PeerStats) -> u64| c.sync.peers.iter().map(|p| f(&p.stats)).sum::<u64>();
    json!({
        "id": id,
        "self": true,
        "address": addr,
        "alive": true,
        "heartbeat_age_ms": Value::Null,
        "status": c.sync.status(now),
        "serving": c.sync.membership.serves(c.sync.view.me),
        "flows": ctl.flows().len(),
        "datagrams_in": sum(|s| s.datagrams_in),
        "datagrams_out": sum(|s| s.datagrams_out),
        "records_in": sum(|s| s.records_in),
        "records_out": sum(|s| s.records_out),
        "records_unsent": sum(|s| s.records_unsent),
        "auth_failures": sum(|s| s.auth_failures),
        "replays": sum(|s| s.replays),
        "lag_ms": Value::Null,
    })
}
