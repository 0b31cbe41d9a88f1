//! The node's own sections: `[node]`, `[eal]`, `[mempool]`, `[workers]`, `[flows]` and
//! `[control]`.

use crate::model::*;
use crate::problem::Checker;
use crate::schema;
use std::time::Duration;

/// `[node] id` (0 when missing, reported).
pub(super) fn node_id(c: &mut Checker, node: &Option<schema::Node>) -> u32 {
    match node {
        Some(schema::Node { id: Some(id) }) => *id,
        Some(_) => {
            c.bad("node.id", "is required: this node's number in the cluster");
            0
        }
        None => {
            c.bad("node", "missing section [node] (needs id)");
            0
        }
    }
}

/// `[eal] args`: the operator's own; the core list is tandem's.
pub(super) fn eal_args(c: &mut Checker, eal: Option<schema::Eal>) -> Vec<String> {
    let eal_args = match eal {
        Some(e) => e.args,
        None => {
            c.bad("eal", "missing section [eal] (needs args)");
            Vec::new()
        }
    };
    for (i, a) in eal_args.iter().enumerate() {
        if a.starts_with("-l") || a.starts_with("--lcores") || a == "-c" {
            c.bad(
                format!("eal.args[{i}]"),
                "core lists come from [workers].cores; tandem adds --lcores itself",
            );
        }
    }
    eal_args
}

pub(super) fn mempool(c: &mut Checker, m: &schema::Mempool) {
    if !(1024..=MAX_MBUFS).contains(&m.mbufs) {
        c.bad("mempool.mbufs", format!("must be from 1024 to {MAX_MBUFS}"));
    }
    if m.cache > 512 {
        c.bad(
            "mempool.cache",
            "must be at most 512 (DPDK's per-lcore cache limit)",
        );
    }
}

pub(super) fn workers(c: &mut Checker, w: &schema::Workers) -> WorkersConfig {
    if w.cores.is_empty() {
        c.bad("workers.cores", "needs at least one CPU");
    }
    if w.cores.len() > 64 {
        c.bad("workers.cores", "at most 64 workers");
    }
    // Whether the CPU exists is checked by `run` on the machine itself; a config may be
    // checked elsewhere. Here only DPDK's own limit applies.
    for (i, core) in w.cores.iter().enumerate() {
        if *core >= MAX_CPU {
            c.bad(
                format!("workers.cores[{i}]"),
                format!("CPU {core} is beyond DPDK's limit of {MAX_CPU} (RTE_MAX_LCORE)"),
            );
        }
    }
    if !(1..=512).contains(&w.burst) {
        c.bad("workers.burst", "must be from 1 to 512");
    }
    let idle_sleep = c.duration_in(
        "workers.idle_sleep",
        Some(&w.idle_sleep),
        Duration::from_micros(50),
        (Duration::ZERO, Duration::from_millis(100)),
    );

    WorkersConfig {
        cores: w.cores.clone(),
        burst: w.burst,
        idle_sleep,
    }
}

pub(super) fn flows(c: &mut Checker, f: &schema::Flows) -> FlowsConfig {
    if f.capacity < 16 {
        c.bad("flows.capacity", "must be at least 16");
    }
    if f.capacity > 1 << 28 {
        c.bad("flows.capacity", "at most 268435456");
    }
    let capacity_v6 = f
        .capacity_v6
        .unwrap_or_else(|| default_capacity_v6(f.capacity));
    if capacity_v6 < 16 {
        c.bad("flows.capacity_v6", "must be at least 16");
    }
    if capacity_v6 > 1 << 28 {
        c.bad("flows.capacity_v6", "at most 268435456");
    }
    // The flow table keeps times in milliseconds that wrap at 2^31 (24.8 days).
    let timeout_range = (Duration::from_millis(100), MAX_FLOW_TIMEOUT);
    let mut timeout = |key: &str, s: &str, dflt: u64| {
        c.duration_in(
            &format!("flows.{key}"),
            Some(s),
            Duration::from_secs(dflt),
            timeout_range,
        )
    };
    FlowsConfig {
        capacity: f.capacity,
        capacity_v6,
        tcp_syn_timeout: timeout("tcp_syn_timeout", &f.tcp_syn_timeout, 10),
        tcp_established_timeout: timeout(
            "tcp_established_timeout",
            &f.tcp_established_timeout,
            900,
        ),
        tcp_closing_timeout: timeout("tcp_closing_timeout", &f.tcp_closing_timeout, 10),
        udp_timeout: timeout("udp_timeout", &f.udp_timeout, 300),
        huge_pages: f.huge_pages,
    }
}

pub(super) fn control(c: &mut Checker, ctl: &schema::Control) {
    if ctl.socket.is_empty() {
        c.bad("control.socket", "must be a path");
    }
}

/// `[metrics]`: the address the Prometheus endpoint listens on.
pub(super) fn metrics(c: &mut Checker, m: &schema::Metrics) -> Option<std::net::SocketAddr> {
    match m.listen.as_deref() {
        None => {
            c.bad(
                "metrics.listen",
                "is required: ADDRESS:PORT to serve /metrics on (leave [metrics] out for none)",
            );
            None
        }
        Some(s) => match s.parse::<std::net::SocketAddr>() {
            Ok(a) if a.port() == 0 => {
                c.bad("metrics.listen", "needs a port other than 0");
                None
            }
            Ok(a) => Some(a),
            Err(_) => {
                c.bad(
                    "metrics.listen",
                    format!("\"{s}\" is not ADDRESS:PORT (\"127.0.0.1:9091\", \"[::1]:9091\")"),
                );
                None
            }
        },
    }
}
