//! `show stats`: ports, workers, drops by reason, where every frame went.

use super::{no_args, ok, Command, Spec};
use crate::state::Control;
use serde_json::{json, Map, Value};
use tandem_config::units::format_mac;
use tandem_dataplane::counters::{Absorbed, DropReason, NUM_ABSORBED};

#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    Stats,
    Node,
}

pub(super) const COMMANDS: &[Spec] = &[
    Spec {
        name: "show stats",
        example: "show stats",
        args: "",
        about: "per port and per worker: rx, tx, drops by reason, Mpps; where every frame went",
        parse: |a| no_args(a, Command::Stats(Cmd::Stats)),
    },
    Spec {
        name: "show node",
        example: "show node",
        args: "",
        about: "this node's process: pid, EAL file prefix, each port's DPDK device and id, \
                whether a capture can attach (what `tandem ctl capture` reads)",
        parse: |a| no_args(a, Command::Stats(Cmd::Node)),
    },
];

pub(super) fn run(ctl: &mut Control, c: Cmd) -> Value {
    match c {
        Cmd::Stats => show_stats(ctl),
        Cmd::Node => show_node(ctl),
    }
}

fn show_node(ctl: &Control) -> Value {
    let p = ctl.process();
    let ports: Vec<Value> = ctl
        .ports()
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let (device, id) = p.devices.get(i).cloned().unzip();
            json!({ "port": port.name, "device": device, "dpdk_port": id })
        })
        .collect();
    ok(
        "show node",
        Map::from_iter([
            ("node".into(), json!(ctl.config().node_id)),
            ("pid".into(), json!(p.pid)),
            ("version".into(), json!(env!("CARGO_PKG_VERSION"))),
            ("file_prefix".into(), json!(p.file_prefix)),
            ("capture".into(), json!(p.no_capture.is_none())),
            ("capture_unavailable".into(), json!(p.no_capture)),
            ("ports".into(), Value::Array(ports)),
        ]),
    )
}

fn show_stats(ctl: &Control) -> Value {
    let mut total_drops = Map::new();
    let workers: Vec<Value> = (0..ctl.workers().len())
        .map(|i| worker_stats(ctl, i, &mut total_drops))
        .collect();
    ok(
        "show stats",
        Map::from_iter([
            ("node".into(), json!(ctl.config().node_id)),
            ("uptime_s".into(), json!(ctl.started().elapsed().as_secs())),
            ("ports".into(), Value::Array(port_stats(ctl))),
            ("workers".into(), Value::Array(workers)),
            ("drops".into(), Value::Object(total_drops)),
            ("accounting".into(), accounting(ctl)),
            ("flows".into(), json!(ctl.flows().len())),
            (
                "replicated_to_workers".into(),
                json!(ctl.flows_replicated()),
            ),
        ]),
    )
}

/// Each port: its workers' counters summed, its rates and the device's own counters.
fn port_stats(ctl: &Control) -> Vec<Value> {
    let r = &ctl.rates();
    ctl.ports()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let d = ctl.device_stats().get(i).copied().unwrap_or_default();
            let sum = |f: fn(&tandem_dataplane::counters::PortCounters) -> u64| -> u64 {
                ctl.workers().iter().map(|w| f(&w.counters.ports[i])).sum()
            };
            json!({
                "port": p.name,
                "mac": format_mac(&p.mac),
                "link": if ctl.link_up().get(i).copied().unwrap_or(true) { "up" } else { "down" },
                "rx": sum(|c| c.rx_packets.get()),
                "tx": sum(|c| c.tx_packets.get()),
                "rx_bytes": sum(|c| c.rx_bytes.get()),
                "tx_bytes": sum(|c| c.tx_bytes.get()),
                "rx_mpps": r.port_rx_pps.get(i).copied().unwrap_or(0.0) / 1e6,
                "tx_mpps": r.port_tx_pps.get(i).copied().unwrap_or(0.0) / 1e6,
                "rx_missed": d.imissed,
                "rx_errors": d.ierrors,
                "tx_errors": d.oerrors,
                "rx_nombuf": d.rx_nombuf,
                "kernel_drops": d.kernel_drops,
            })
        })
        .collect()
}

/// Worker `i`: its packets, rates, drops by reason (also added to `total_drops`) and every
/// counter of the list.
fn worker_stats(ctl: &Control, i: usize, total_drops: &mut Map<String, Value>) -> Value {
    let r = &ctl.rates();
    let c = &ctl.workers()[i].counters;
    let rx: u64 = (0..ctl.ports().len())
        .map(|p| c.ports[p].rx_packets.get())
        .sum();
    let tx: u64 = (0..ctl.ports().len())
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
    let mut o = Map::from_iter([
        ("worker".into(), json!(i)),
        ("rx".into(), json!(rx)),
        ("tx".into(), json!(tx)),
        (
            "rx_mpps".into(),
            json!(r.worker_rx_pps.get(i).copied().unwrap_or(0.0) / 1e6),
        ),
        (
            "tx_mpps".into(),
            json!(r.worker_tx_pps.get(i).copied().unwrap_or(0.0) / 1e6),
        ),
        ("drops".into(), Value::Object(drops)),
    ]);
    c.each(|name, v| {
        o.insert(name.into(), json!(v));
    });
    Value::Object(o)
}

/// Where every frame received went, summed over workers: `received = forwarded + replies +
/// absorbed + dropped + waiting`, and `unaccounted` is what that leaves (0 when all is well;
/// read apart from a moving node, the parts are read at slightly different moments).
/// `tx_full` frames had been forwarded or sent as replies before the TX ring refused them,
/// so they are among `forwarded`, `replies` (and probes), not in `dropped`; `kernel_full`
/// frames likewise among `absorbed` (`kernel`).
fn accounting(ctl: &Control) -> Value {
    let (mut received, mut sent, mut replies, mut dropped, mut waiting) = (0u64, 0, 0, 0, 0);
    let mut absorbed = [0u64; NUM_ABSORBED];
    for w in ctl.workers() {
        let c = &w.counters;
        received += (0..ctl.ports().len())
            .map(|p| c.ports[p].rx_packets.get())
            .sum::<u64>();
        sent += c.sent.get();
        replies += c.replies();
        dropped +=
            c.total_drops() - c.dropped(DropReason::TxFull) - c.dropped(DropReason::KernelFull);
        waiting += c.waiting.get();
        for (a, n) in absorbed.iter_mut().zip(&c.absorbed) {
            *a += n.get();
        }
    }
    let mut by_kind = Map::new();
    for (k, n) in Absorbed::ALL.iter().zip(absorbed) {
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
