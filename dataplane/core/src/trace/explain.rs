//! A traced frame in words, stage by stage, with the names the services snapshot gives
//! (ports, services, backends, nodes). Runs on the control thread, never on a worker.

use super::{Aim, Counted, Lane, Outcome, Record, Seen, Tuple};
use crate::counters::{Absorbed, WorkerCounters};
use crate::flow::key::bytes_addr;
use crate::flow::{FlowRecord, UNBOUND};
use crate::parking::Lot;
use crate::services::Services;
use crate::wire::ethernet::Mac;
use crate::wire::l4::{ACK, FIN, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, RST, SYN};
use crate::wire::tunnel;
use std::fmt::Write;

/// One traced frame, told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Told {
    pub worker: u16,
    pub port: String,
    /// The node's clock at the frame's burst, microseconds since it started.
    pub us: u64,
    /// (stage, what it found or did), in the order the frame met them.
    pub stages: Vec<(&'static str, String)>,
    pub verdict: String,
}

/// Tells a record, naming what `s` names (the snapshot the worker ran with, or the one
/// after it: ids of services and backends stay put across snapshots).
pub fn tell(r: &Record, s: &Services) -> Told {
    let fwd = s.cluster.as_ref().map(|c| c.forward_port);
    let before = Seen::of(r.before.bytes(), fwd);
    let after = Seen::of(r.after.bytes(), fwd);
    let port = port_name(s, r.port);
    let mut st: Vec<(&'static str, String)> = Vec::new();

    let mut rx = format!("port {port}, worker {}, {} bytes", r.worker, r.before.len);
    if r.marked {
        rx.push_str(", with the trace mark of the node that sent it on");
    }
    st.push(("rx", rx));
    st.push(("parse", parsed(&before, s)));
    st.push(("service", service(r, s)));
    if let Some(f) = flow(r, s) {
        st.push(("flow", f));
    }
    if r.n_candidates > 0 {
        st.push(("selection", selection(r, s)));
    }
    if let Some(n) = nodes(r, &before, s) {
        st.push(("nodes", n));
    }
    if let Some(p) = path(r, s) {
        st.push(("path", p));
    }
    if let Some(a) = admission(r, s) {
        st.push(("admission", a));
    }
    if r.lane == Lane::Plain {
        st.push((
            "lane",
            "plain lane: an established IPv4 flow, rewritten at fixed offsets".into(),
        ));
    }
    if let Outcome::Sent(_) = r.verdict {
        st.push(("rewrite", rewrite(&before, &after, s)));
    }
    st.push(("counted", counted(r)));
    Told {
        worker: r.worker,
        port,
        us: r.us,
        stages: st,
        verdict: verdict(r.verdict, s),
    }
}

fn port_name(s: &Services, p: u8) -> String {
    s.ports
        .get(usize::from(p))
        .map_or_else(|| format!("#{p}"), |p| p.name.clone())
}

fn backend_name(s: &Services, b: u16) -> String {
    if b == UNBOUND {
        return "(not bound yet: the primary node picks it)".into();
    }
    s.backends
        .get(usize::from(b))
        .map_or_else(|| format!("#{b}"), |b| b.name.clone())
}

fn service_name(s: &Services, id: u16) -> String {
    s.services
        .get(usize::from(id))
        .map_or_else(|| format!("#{id}"), |v| v.name.clone())
}

fn node_id(s: &Services, index: u8) -> String {
    match s.cluster.as_ref() {
        Some(c) if usize::from(index) < c.nodes.len() => format!("node {}", c.id_of(index)),
        _ => "none".into(),
    }
}

fn mac(m: &Mac) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn flags(f: u8) -> String {
    let mut s = String::new();
    for (bit, c) in [(SYN, 'S'), (FIN, 'F'), (RST, 'R'), (0x08, 'P'), (ACK, '.')] {
        if f & bit != 0 {
            s.push(c);
        }
    }
    s
}

/// `198.51.100.7:40001 > 192.0.2.10:80 tcp [S]`
pub fn tuple(t: &Tuple) -> String {
    let a = |b: &[u8; 16]| bytes_addr(b, t.v6);
    let ep = |b: &[u8; 16], p: u16| {
        if t.v6 {
            format!("[{}]:{p}", a(b))
        } else {
            format!("{}:{p}", a(b))
        }
    };
    match t.proto {
        PROTO_TCP => format!(
            "{} > {} tcp [{}]",
            ep(&t.src, t.sport),
            ep(&t.dst, t.dport),
            flags(t.flags)
        ),
        PROTO_UDP => format!("{} > {} udp", ep(&t.src, t.sport), ep(&t.dst, t.dport)),
        PROTO_ICMP | PROTO_ICMPV6 => format!("{} > {} icmp", a(&t.src), a(&t.dst)),
        p => format!("{} > {} protocol {p}", a(&t.src), a(&t.dst)),
    }
}

fn node_header(h: &tunnel::Header, s: &Services) -> String {
    let id = |n: u16| {
        if n == 0 {
            "none".to_string()
        } else {
            format!("node {n}")
        }
    };
    let _ = s;
    let mut f = Vec::new();
    if h.flags & tunnel::FLAG_REPLY != 0 {
        f.push("reply");
    }
    if h.flags & tunnel::FLAG_TRACE != 0 {
        f.push("trace");
    }
    format!(
        "node header: primary {}, backup {}, hops {}{}",
        id(h.primary),
        id(h.backup),
        h.hops,
        if f.is_empty() {
            String::new()
        } else {
            format!(", flags {}", f.join(" "))
        }
    )
}

fn parsed(seen: &Seen, s: &Services) -> String {
    let Some(l2) = seen.l2 else {
        return "not an Ethernet frame".into();
    };
    let mut out = format!("{} > {}", mac(&l2.src), mac(&l2.dst));
    if let Some(v) = l2.vlan {
        let _ = write!(out, " vlan {}", v & 0xfff);
    }
    match (seen.outer, seen.node, seen.inner) {
        (Some(o), Some(h), inner) => {
            let _ = write!(
                out,
                ", sent on by another node: {} ({}), inside: {}",
                tuple(&o),
                node_header(&h, s),
                inner.map_or_else(|| "not an IP packet".into(), |t| tuple(&t))
            );
        }
        (Some(o), None, _) => {
            let _ = write!(
                out,
                ", {} {}",
                if o.v6 { "ipv6" } else { "ipv4" },
                tuple(&o)
            );
            if o.fragment {
                out.push_str(", a fragment");
            }
        }
        (None, _, _) => {
            let _ = write!(out, ", ethertype {:#06x}", l2.ethertype);
        }
    }
    out
}

fn service(r: &Record, s: &Services) -> String {
    match r.aim {
        Aim::Service(id) => match s.services.get(usize::from(id)) {
            Some(v) => format!(
                "{}: {}:{} {}, mode {}, selection {}",
                v.name,
                bytes_addr(&v.vip, v.v6),
                v.port,
                if v.proto == PROTO_TCP { "tcp" } else { "udp" },
                v.mode.name(),
                s.options.selection.name(),
            ),
            None => format!("#{id}"),
        },
        Aim::Reply(id) => format!(
            "a reply from a backend of nat service {}",
            service_name(s, id)
        ),
        Aim::Replies => "a reply from a backend several nat services share".into(),
        Aim::Refused(why) => format!("none ({})", why.name()),
        Aim::Other => {
            "no service: the node's own traffic (ARP, ND, ICMP, probes) or not TCP/UDP".into()
        }
    }
}

fn record(rec: &FlowRecord, s: &Services) -> String {
    let mut out = format!(
        "{}, backend {}, paths {}/{}",
        rec.state.name(),
        backend_name(s, rec.backend),
        rec.primary_path,
        rec.backup_path,
    );
    if s.cluster.is_some() {
        let _ = write!(
            out,
            ", nodes {} / {}",
            node_id(s, rec.primary_node),
            node_id(s, rec.backup_node)
        );
    }
    if rec.admitted {
        out.push_str(", holds an admission slot");
    }
    out
}

fn flow(r: &Record, s: &Services) -> Option<String> {
    r.key?;
    Some(match (r.found, r.kept) {
        (Some(f), Some(k)) if f.state != k.state || f.backend != k.backend => {
            format!("hit: {} (now {})", record(&f, s), record(&k, s))
        }
        (Some(f), _) => format!("hit: {}", record(&f, s)),
        (None, Some(k)) => format!("miss: a new flow, recorded as {}", record(&k, s)),
        (None, None) => "miss: no record, none made".into(),
    })
}

fn selection(r: &Record, s: &Services) -> String {
    let mut out = String::new();
    for c in r.candidates() {
        let _ = write!(
            out,
            "{} (weight {}, qos {:.1}, ewma {} us, flows {}{}, {}); ",
            backend_name(s, c.backend),
            c.weight,
            c.qos_weight,
            c.ewma_us,
            c.active,
            if c.max_flows > 0 {
                format!("/{}", c.max_flows)
            } else {
                String::new()
            },
            match (c.eligible, c.up) {
                (true, _) => "eligible",
                (false, true) => "not taking new flows",
                (false, false) => "down",
            }
        );
    }
    if r.more_candidates > 0 {
        let _ = write!(out, "and {} more; ", r.more_candidates);
    }
    match r.kept {
        Some(k) if k.backend != UNBOUND => {
            let _ = write!(out, "chose {}", backend_name(s, k.backend));
        }
        Some(_) => out.push_str("chose none here: the flow's primary node selects"),
        None => out.push_str("chose none"),
    }
    out
}

fn nodes(r: &Record, before: &Seen, s: &Services) -> Option<String> {
    let rk = r.ranking?;
    let mut out = format!(
        "rendezvous ranking: primary {}, backup {}",
        rk.primary.map_or("none".into(), |i| node_id(s, i)),
        rk.backup.map_or("none".into(), |i| node_id(s, i)),
    );
    if let Some(h) = before.node {
        let _ = write!(out, "; roles from the {}", node_header(&h, s));
    }
    if let Some(k) = r.kept.or(r.found) {
        let me = rk.me;
        let role = if k.primary_node == me {
            "primary"
        } else if k.backup_node == me {
            "backup"
        } else {
            "neither primary nor backup"
        };
        let serving = |i: u8| i < 64 && rk.serving & (1 << i) != 0;
        let _ = write!(
            out,
            "; this {} is the flow's {role}; its primary {} {}",
            node_id(s, me),
            node_id(s, k.primary_node),
            if serving(k.primary_node) {
                "serves"
            } else {
                "does not serve"
            }
        );
    }
    Some(out)
}

fn path(r: &Record, s: &Services) -> Option<String> {
    let k = r.kept?;
    let b = s.backends.get(usize::from(k.backend))?;
    let one = |i: u8| match b.paths.get(usize::from(i)) {
        Some(p) => format!(
            "path {i} by port {} ({})",
            port_name(s, p.port),
            if p.up { "up" } else { "down" }
        ),
        None => format!("path {i} (none)"),
    };
    let mut out = format!(
        "primary {}, backup {}",
        one(k.primary_path),
        one(k.backup_path)
    );
    if let Outcome::Sent(p) = r.verdict {
        let _ = write!(out, "; out by port {}", port_name(s, p));
    }
    Some(out)
}

fn admission(r: &Record, s: &Services) -> Option<String> {
    let (id, before, after) = r.queue?;
    let svc = s.services.get(usize::from(id))?;
    if let Outcome::Held(_) = r.verdict {
        return Some(format!(
            "every backend at its limit: waits in the queue ({before} -> {after} waiting, at most {})",
            svc.queue_max_len
        ));
    }
    let took = r.kept.is_some_and(|k| k.admitted) && !r.found.is_some_and(|f| f.admitted);
    Some(if took {
        let k = r.kept?;
        let limit = s
            .backends
            .get(usize::from(k.backend))
            .map_or(0, |b| b.max_flows);
        format!(
            "admitted: took a slot of {}{}",
            backend_name(s, k.backend),
            if limit > 0 {
                format!(" (limit {limit})")
            } else {
                String::new()
            }
        )
    } else if !svc.admission {
        "no limit on this service".into()
    } else {
        format!("no new slot taken ({before} waiting)")
    })
}

fn rewrite(before: &Seen, after: &Seen, s: &Services) -> String {
    let mut out = String::new();
    if let (Some(a), Some(b)) = (before.l2, after.l2) {
        let _ = write!(
            out,
            "{} > {} -> {} > {}",
            mac(&a.src),
            mac(&a.dst),
            mac(&b.src),
            mac(&b.dst)
        );
    }
    let served = before.innermost();
    match (after.outer, after.node) {
        (Some(o), Some(h)) => {
            let _ = write!(
                out,
                "; sent on to another node in {} ({})",
                tuple(&o),
                node_header(&h, s)
            );
        }
        (Some(o), None) => {
            let was = served.map(|t| tuple(&t)).unwrap_or_default();
            let now = tuple(&o);
            if before.node.is_some() {
                let _ = write!(out, "; unwrapped from the node header: {was} -> {now}");
            } else if was == now {
                let _ = write!(out, "; addresses and ports unchanged: {now}");
            } else {
                let _ = write!(out, "; {was} -> {now}");
            }
        }
        (None, _) => out.push_str("; not an IP packet"),
    }
    out
}

fn counted(r: &Record) -> String {
    let mut v = Vec::new();
    for c in r.counted.iter().flatten() {
        v.push(match *c {
            Counted::Single(i, n) => format!(
                "{} +{n}",
                WorkerCounters::NAMES.get(usize::from(i)).unwrap_or(&"?")
            ),
            Counted::Drop(why, n) => format!("drop {} +{n}", why.name()),
            Counted::Absorbed(i, n) => format!(
                "absorbed {} +{n}",
                Absorbed::ALL.get(usize::from(i)).map_or("?", |a| a.name())
            ),
        });
    }
    if v.is_empty() {
        "nothing".into()
    } else {
        v.join(", ")
    }
}

/// The verdict in words.
pub fn verdict(v: Outcome, s: &Services) -> String {
    match v {
        Outcome::Sent(p) => format!("sent out of port {}", port_name(s, p)),
        Outcome::Dropped(why) => format!("dropped: {}", why.name()),
        Outcome::Absorbed(k) => format!("absorbed by the node: {}", k.name()),
        Outcome::Parked(Lot::Replies) => "parked: a nat reply waiting for its flow's record".into(),
        Outcome::Parked(Lot::Fragments) => {
            "parked: a fragment waiting for its first fragment".into()
        }
        Outcome::Held(id) => format!(
            "held in the admission queue of {} until a backend has room",
            service_name(s, id)
        ),
    }
}
