//! Changing a live node: a new configuration (from `reload`, or made by `backend add` and
//! `backend remove` from the running one) checked against what needs a restart, then its
//! difference applied with no flow lost. Services and backends are matched by name: one
//! that is gone drains (no new flows, its flows go on) and is vacated once its flows end
//! (`reap_removed`); one that is new gets a fresh id; one that changed keeps its id, so its
//! flows keep naming it. Everything is checked first and then applied, so a change with any
//! problem changes nothing.

use super::Control;
use std::time::{Duration, Instant};
use tandem_config::{BackendConfig, Config, Problem, ServiceConfig};
use tandem_dataplane::flow::FlowState;
use tandem_dataplane::services::{Layout, Placed, Seat};

fn problem(key: impl Into<String>, why: impl Into<String>) -> Problem {
    Problem {
        key: key.into(),
        why: why.into(),
    }
}

const RESTART: &str = "takes a restart to change (the running value is kept)";

/// The keys whose change needs a restart, each named.
pub fn restart_only(old: &Config, new: &Config) -> Vec<Problem> {
    // Each key with its value in the old and the new config, written out to compare.
    let show = |c: &Config| -> Vec<(String, String)> {
        let mut v = vec![
            ("node.id".into(), c.node_id.to_string()),
            ("eal.args".into(), format!("{:?}", c.eal_args)),
            ("port".into(), c.ports.len().to_string()),
        ];
        for (i, p) in c.ports.iter().enumerate() {
            v.push((format!("port[{i}]"), format!("{p:?}")));
        }
        v.extend([
            ("mempool.mbufs".into(), c.mempool_mbufs.to_string()),
            ("mempool.cache".into(), c.mempool_cache.to_string()),
            ("workers.cores".into(), format!("{:?}", c.workers.cores)),
            ("workers.burst".into(), c.workers.burst.to_string()),
            (
                "workers.idle_sleep".into(),
                format!("{:?}", c.workers.idle_sleep),
            ),
            ("flows.capacity".into(), c.flows.capacity.to_string()),
            ("flows.capacity_v6".into(), c.flows.capacity_v6.to_string()),
            ("flows.huge_pages".into(), c.flows.huge_pages.to_string()),
            (
                "control.socket".into(),
                c.control_socket.display().to_string(),
            ),
            ("metrics.listen".into(), format!("{:?}", c.metrics)),
            ("bgp".into(), format!("{:?}", c.bgp)),
            ("cluster".into(), c.cluster.is_some().to_string()),
        ]);
        if let Some(cl) = &c.cluster {
            v.extend([
                (
                    "cluster.secret_file".into(),
                    cl.secret_file.display().to_string(),
                ),
                ("cluster.heartbeat".into(), format!("{:?}", cl.heartbeat)),
                ("cluster.dead_after".into(), format!("{:?}", cl.dead_after)),
                ("cluster.forward_port".into(), cl.forward_port.to_string()),
                (
                    "cluster.drain_deadline".into(),
                    format!("{:?}", cl.drain_deadline),
                ),
            ]);
            // Nodes by id: only their weights may change.
            let who: Vec<String> = cl
                .nodes
                .iter()
                .map(|n| format!("{} {} {:?} {}", n.id, n.address, n.mac, n.sync))
                .collect();
            v.push(("cluster.node".into(), format!("{who:?}")));
        }
        v
    };
    let (a, b) = (show(old), show(new));
    let keys = a.iter().chain(&b).map(|(k, _)| k);
    let mut seen = std::collections::HashSet::new();
    let value = |list: &[(String, String)], k: &String| {
        list.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone())
    };
    let mut p = Vec::new();
    for k in keys {
        if seen.insert(k.clone()) && value(&a, k) != value(&b, k) {
            // A different number of ports, or a cluster added or taken away, is named once.
            let under_whole = (k.starts_with("port[")
                && value(&a, &"port".into()) != value(&b, &"port".into()))
                || (k.starts_with("cluster.") && old.cluster.is_some() != new.cluster.is_some());
            if !under_whole {
                p.push(problem(k.as_str(), RESTART));
            }
        }
    }
    p
}

/// What a change did, one line each.
pub type Changes = Vec<String>;

/// The backends' fields a change may touch (a backend's address and port are what it is).
fn backend_changes(svc: &str, old: &BackendConfig, new: &BackendConfig, out: &mut Changes) {
    let name = format!("backend {svc}/{}", new.name);
    if old.weight != new.weight {
        out.push(format!("{name}: weight {} -> {}", old.weight, new.weight));
    }
    if old.state != new.state {
        out.push(format!(
            "{name}: state {} -> {}",
            old.state.name(),
            new.state.name()
        ));
    }
    if old.max_flows != new.max_flows {
        out.push(format!(
            "{name}: max_flows {} -> {}",
            old.max_flows, new.max_flows
        ));
    }
    if format!("{:?}", old.paths) != format!("{:?}", new.paths) {
        out.push(format!("{name}: paths changed"));
    }
    if old.server_id != new.server_id {
        out.push(format!("{name}: server_id changed"));
    }
}

fn service_changes(old: &ServiceConfig, new: &ServiceConfig, out: &mut Changes) {
    let name = format!("service {}", new.name);
    if old.queue != new.queue {
        out.push(format!("{name}: queue changed"));
    }
    if old.admission != new.admission {
        out.push(format!(
            "{name}: admission changed (limit {})",
            new.admission.limit.name()
        ));
    }
    if old.standby != new.standby {
        out.push(format!("{name}: standby changed"));
    }
    if old.clamp_mss != new.clamp_mss {
        out.push(format!("{name}: clamp_mss {}", new.clamp_mss));
    }
    if old.quic != new.quic {
        out.push(format!("{name}: quic changed"));
    }
}

/// What placing a config over the running layout found: the changes it makes, and the
/// problems (each naming a key) that refuse it.
#[derive(Default)]
struct Placing {
    changes: Changes,
    problems: Vec<Problem>,
}

/// The new services placed over the running ones: matched by name, kept ids for those that
/// stay, fresh ids for new ones, the rest draining. Problems name what cannot change live.
fn place(
    running: &Layout,
    new: &[ServiceConfig],
    now: Instant,
) -> Result<(Layout, Changes), Vec<Problem>> {
    let mut l = running.clone();
    let mut out = Placing::default();
    // Gone from the new list: drain.
    for p in &mut l.services {
        if p.removed.is_none() && !new.iter().any(|s| s.name == p.cfg.name) {
            p.removed = Some(now);
            out.changes
                .push(format!("service {} removed (draining)", p.cfg.name));
        }
    }
    for (si, s) in new.iter().enumerate() {
        let key = format!("service[{si}]");
        let fresh = match l.service_mut(&s.name) {
            Some(p) => place_service(p, &key, s, now, &mut out),
            None => {
                add_service(&mut l, &key, s, &mut out);
                continue;
            }
        };
        for b in fresh {
            let name = b.name.clone();
            match l.add_backend(&s.name, b) {
                Ok(_) => out.changes.push(format!("backend {}/{name} added", s.name)),
                Err(why) => out.problems.push(problem(format!("{key}.backend"), why)),
            }
        }
    }
    // The running order follows the new list; removed services go last.
    let order = |p: &Placed| {
        new.iter()
            .position(|s| s.name == p.cfg.name)
            .unwrap_or(usize::MAX)
    };
    l.services.sort_by_key(order);
    if out.problems.is_empty() {
        Ok((l, out.changes))
    } else {
        Err(out.problems)
    }
}

/// A service the running layout does not have, added (`key` names it in problems).
fn add_service(l: &mut Layout, key: &str, s: &ServiceConfig, out: &mut Placing) {
    // A new service must not take a VIP:port a draining one still serves.
    if let Some(d) = l.services.iter().find(|p| {
        p.cfg.vip == s.vip && p.cfg.port == s.port && p.cfg.protocol.number() == s.protocol.number()
    }) {
        out.problems.push(problem(
            format!("{key}.vip"),
            format!(
                "{}:{} is still served by service \"{}\" while its flows drain",
                s.vip, s.port, d.cfg.name
            ),
        ));
        return;
    }
    match l.add_service(s.clone()) {
        Ok(_) => out.changes.push(format!(
            "service {} added ({} backends)",
            s.name,
            s.backends.len()
        )),
        Err(why) => out.problems.push(problem("service", why)),
    }
}

/// A running service `p` given its new config `s`: what may change live changes, its
/// backends are placed over its seats. The backends it does not have yet, to add.
fn place_service(
    p: &mut Placed,
    key: &str,
    s: &ServiceConfig,
    now: Instant,
    out: &mut Placing,
) -> Vec<BackendConfig> {
    let c = &p.cfg;
    for (what, same) in [
        ("vip", c.vip == s.vip),
        ("port", c.port == s.port),
        ("protocol", c.protocol == s.protocol),
        ("mode", c.mode == s.mode),
    ] {
        if !same {
            out.problems.push(problem(
                format!("{key}.{what}"),
                "a running service's VIP, port, protocol and mode stay as they are: \
                 add the new one under another name and remove this one",
            ));
        }
    }
    if p.removed.take().is_some() {
        out.changes
            .push(format!("service {} kept (no longer draining)", s.name));
    }
    service_changes(&p.cfg, s, &mut out.changes);
    let keep = std::mem::take(&mut p.cfg.backends);
    p.cfg = ServiceConfig {
        backends: keep,
        ..s.clone()
    };
    for seat in &mut p.seats {
        if seat.removed.is_none() && !s.backends.iter().any(|b| b.name == seat.cfg.name) {
            seat.removed = Some(now);
            out.changes.push(format!(
                "backend {}/{} removed (draining)",
                s.name, seat.cfg.name
            ));
        }
    }
    let fresh = s
        .backends
        .iter()
        .enumerate()
        .filter(|(bi, b)| !place_backend(&mut p.seats, &format!("{key}.backend[{bi}]"), s, b, out))
        .map(|(_, b)| b.clone())
        .collect();
    // The seats follow the new order; removed ones go last.
    let order = |seat: &Seat| {
        s.backends
            .iter()
            .position(|b| b.name == seat.cfg.name)
            .unwrap_or(usize::MAX)
    };
    p.seats.sort_by_key(order);
    fresh
}

/// Backend `b` of service `s` placed over the seat of the same name: whether there is one
/// (a seat whose address or port would change is a problem named by `bkey`).
fn place_backend(
    seats: &mut [Seat],
    bkey: &str,
    s: &ServiceConfig,
    b: &BackendConfig,
    out: &mut Placing,
) -> bool {
    let Some(seat) = seats.iter_mut().find(|x| x.cfg.name == b.name) else {
        return false;
    };
    if seat.cfg.address != b.address || seat.cfg.port != b.port {
        let why = match seat.removed {
            Some(_) => format!(
                "backend \"{}\" of service \"{}\" is still draining at {}: \
                 wait until it is gone, or add this one under another name",
                b.name, s.name, seat.cfg.address
            ),
            None => "a running backend's address and port stay as they are: \
                     add the new one under another name and remove this one"
                .into(),
        };
        out.problems.push(problem(format!("{bkey}.address"), why));
        return true;
    }
    if seat.removed.take().is_some() {
        out.changes.push(format!(
            "backend {}/{} kept (no longer draining)",
            s.name, b.name
        ));
    }
    backend_changes(&s.name, &seat.cfg, b, &mut out.changes);
    seat.cfg = b.clone();
    true
}

fn settings_changes(old: &Config, new: &Config, out: &mut Changes) {
    if format!("{:?}", old.health) != format!("{:?}", new.health) {
        out.push("[health] changed".into());
    }
    if format!("{:?}", old.qos) != format!("{:?}", new.qos) {
        out.push("[qos] changed".into());
    }
    let (a, b) = (&old.flows, &new.flows);
    for (k, x, y) in [
        ("tcp_syn_timeout", a.tcp_syn_timeout, b.tcp_syn_timeout),
        (
            "tcp_established_timeout",
            a.tcp_established_timeout,
            b.tcp_established_timeout,
        ),
        (
            "tcp_closing_timeout",
            a.tcp_closing_timeout,
            b.tcp_closing_timeout,
        ),
        ("udp_timeout", a.udp_timeout, b.udp_timeout),
    ] {
        if x != y {
            out.push(format!("flows.{k}: {x:?} -> {y:?}"));
        }
    }
    if let (Some(a), Some(b)) = (&old.cluster, &new.cluster) {
        for (x, y) in a.nodes.iter().zip(&b.nodes) {
            if x.weight != y.weight {
                out.push(format!(
                    "cluster node {}: weight {} -> {}",
                    x.id, x.weight, y.weight
                ));
            }
        }
    }
}

impl Control {
    /// The configuration as it runs now: the file's, with every change made since.
    pub fn running_config(&self) -> Config {
        let mut c = self.cfg.clone();
        c.services = self.layout.config();
        c
    }

    /// Applies a new configuration: the keys that need a restart must be as they run, the
    /// services are placed over the running ones (see the module's doc), then the new
    /// settings and services go to the workers in one snapshot. On any problem nothing
    /// changes. Returns what changed.
    pub fn apply(&mut self, new: Config, now: Instant) -> Result<Changes, Vec<Problem>> {
        let mut problems = restart_only(&self.cfg, &new);
        let placed = place(&self.layout, &new.services, now);
        let (layout, mut changes) = match placed {
            Ok(x) if problems.is_empty() => x,
            Ok(_) => return Err(problems),
            Err(p) => {
                problems.extend(p);
                return Err(problems);
            }
        };
        settings_changes(&self.cfg, &new, &mut changes);
        self.layout = layout;
        self.timeouts = tandem_dataplane::flow::Timeouts::of(&new.flows);
        self.qos
            .set_config(new.health.clone(), new.qos.clone(), &self.layout, now);
        if let (Some(c), Some(n)) = (self.cluster.as_mut(), new.cluster.as_ref()) {
            c.set_weights(n);
        }
        self.cfg = new;
        // Histogram sets of the old shape are not handed out again.
        self.measure.spare.clear();
        self.publish_services();
        Ok(changes)
    }

    /// How long a removed backend must have had no flow before it is vacated: longer than
    /// a live flow goes without being re-announced (a quarter of its timeout, at most 30 s),
    /// so a flow the master view has not heard of yet still holds it.
    fn vacate_after(&self) -> Duration {
        let longest = self.timeouts.longest_sync_interval();
        Duration::from_millis(u64::from(longest)) + Duration::from_secs(1)
    }

    /// Flows per backend id that still hold it: live ones, and closing ones seen within
    /// their closing timeout (their last segments may still come).
    pub fn holding_flows_by_backend(&self, now: Instant) -> Vec<u64> {
        let mut v = vec![0u64; self.snapshot.backends.len()];
        let closing = Duration::from_millis(u64::from(self.timeouts.closing_ms));
        for f in self.flows.map.values() {
            if f.rec.state == FlowState::Closing && now.duration_since(f.updated) > closing {
                continue;
            }
            if let Some(x) = v.get_mut(usize::from(f.rec.backend)) {
                *x += 1;
            }
        }
        v
    }

    /// Vacates removed backends and services whose flows have ended; returns whether any
    /// was (and the workers got a snapshot without it).
    pub fn reap_removed(&mut self, now: Instant) -> bool {
        let draining = self
            .layout
            .services
            .iter()
            .any(|p| p.removed.is_some() || p.seats.iter().any(|s| s.removed.is_some()));
        if !draining {
            return false;
        }
        let after = self.vacate_after();
        let holding = self.holding_flows_by_backend(now);
        let held = |id: u16| holding.get(usize::from(id)).copied().unwrap_or(0) > 0;
        let due = |t: Option<Instant>| t.is_some_and(|t| now.duration_since(t) >= after);
        let mut gone_backends = Vec::new();
        let mut gone_services = Vec::new();
        for p in &self.layout.services {
            if due(p.removed) && p.seats.iter().all(|s| !held(s.id)) {
                gone_services.push((p.id, p.cfg.name.clone()));
                continue;
            }
            for s in &p.seats {
                let removed = s.removed.or(p.removed);
                if due(removed) && !held(s.id) {
                    gone_backends.push((s.id, format!("{}/{}", p.cfg.name, s.cfg.name)));
                }
            }
        }
        if gone_backends.is_empty() && gone_services.is_empty() {
            return false;
        }
        for (id, name) in gone_backends {
            tracing::info!(backend = %name, "removed backend has no flows left: gone");
            self.layout.vacate_backend(id);
            self.reset_backend_counts(id);
        }
        for (id, name) in gone_services {
            tracing::info!(service = %name, "removed service has no flows left: gone");
            if let Some(p) = self.layout.by_id(id) {
                let ids: Vec<u16> = p.seats.iter().map(|s| s.id).collect();
                for b in ids {
                    self.reset_backend_counts(b);
                }
            }
            self.layout.vacate_service(id);
        }
        self.qos.reshape(&self.layout, now);
        self.measure.spare.clear();
        self.publish_services();
        true
    }

    /// A vacated id's counts start again from zero for whatever takes it next.
    fn reset_backend_counts(&mut self, id: u16) {
        let total = self.new_flows_at(id);
        if let Some(b) = self.new_flows_base.get_mut(usize::from(id)) {
            *b = total;
        }
    }
}
