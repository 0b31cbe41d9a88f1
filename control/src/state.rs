//! The control thread's state and its duties between ticks: fan worker events out to the
//! other workers (flow replication, learned neighbors), keep the node's master view of its
//! flows for the control socket, resolve next hops, watch links, and turn counters into
//! rates. Owns no DPDK handle, so it is tested without an EAL.

use crate::cluster::codec::WireRecord;
use crate::cluster::{Cluster, Inbound, RecordRefusal};
use crate::flowmap::{self, FlowMap};
use crate::qos::{HookRun, Qos};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::collections::{HashMap, VecDeque};
#[cfg(test)]
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem_config::{BackendState, Config, Mode, ServiceConfig};
use tandem_dataplane::cluster::{ClusterView, NO_NODE};
use tandem_dataplane::counters::{WorkerCounters, MAX_PORTS};
use tandem_dataplane::flow::{FlowRecord, FlowState, Mark, Timeouts};
use tandem_dataplane::messages::{FromWorker, ToWorker};
use tandem_dataplane::qos::admission::Load;
use tandem_dataplane::qos::hist::HistSet;
use tandem_dataplane::services::{BackendLive, Options, PortInfo, Services};
use tandem_dataplane::wire::ethernet::Mac;

/// The control thread's end of one worker's channels.
pub struct WorkerLink {
    pub tx: Sender<ToWorker>,
    pub rx: Receiver<FromWorker>,
    pub counters: Arc<WorkerCounters>,
    /// Messages that found the worker's inbox full, sent first on the next tick.
    pending: VecDeque<ToWorker>,
}

impl WorkerLink {
    pub fn new(
        tx: Sender<ToWorker>,
        rx: Receiver<FromWorker>,
        counters: Arc<WorkerCounters>,
    ) -> Self {
        WorkerLink {
            tx,
            rx,
            counters,
            pending: VecDeque::new(),
        }
    }

    fn send(&mut self, m: ToWorker) {
        if !self.pending.is_empty() {
            self.pending.push_back(m);
            return;
        }
        match self.tx.try_send(m) {
            Ok(()) => {}
            Err(TrySendError::Full(m)) => self.pending.push_back(m),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    fn flush(&mut self) {
        while let Some(m) = self.pending.pop_front() {
            match self.tx.try_send(m) {
                Ok(()) => {}
                Err(TrySendError::Full(m)) => {
                    self.pending.push_front(m);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.pending.clear();
                    return;
                }
            }
        }
    }
}

/// The node's view of one flow, fed by the workers' announcements.
#[derive(Debug, Clone, Copy)]
pub struct MasterFlow {
    pub rec: FlowRecord,
    /// The worker that last announced it.
    pub worker: u16,
    /// The node that last told us of it: 0 for this node's own workers, else a peer's id.
    pub node: u16,
    pub created: Instant,
    pub updated: Instant,
}

/// Device counters read from DPDK by the daemon.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeviceStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
    /// Frames the kernel dropped on a net_af_packet port's rings (its RX ring full).
    pub kernel_drops: u64,
}

#[derive(Default, Clone)]
struct Sample {
    port_rx: Vec<u64>,
    port_tx: Vec<u64>,
    worker_rx: Vec<u64>,
    worker_tx: Vec<u64>,
    backend_new: Vec<u64>,
}

/// Per-second rates from the last two samples.
#[derive(Default, Clone, Debug)]
pub struct Rates {
    pub port_rx_pps: Vec<f64>,
    pub port_tx_pps: Vec<f64>,
    pub worker_rx_pps: Vec<f64>,
    pub worker_tx_pps: Vec<f64>,
    pub backend_new_per_s: Vec<f64>,
}

/// How long a resolved neighbor is trusted before it is asked again.
pub const NEIGHBOR_REFRESH: Duration = Duration::from_secs(30);
/// Least time between two solicitations of the same next hop.
pub const SOLICIT_INTERVAL: Duration = Duration::from_secs(1);

pub struct Control {
    pub cfg: Config,
    /// The services as they stand now (states and weights changed at run time).
    pub services_cfg: Vec<ServiceConfig>,
    pub ports: Vec<PortInfo>,
    pub snapshot: Arc<Services>,
    pub workers: Vec<WorkerLink>,
    pub flows: FlowMap<MasterFlow>,
    pub neighbors: HashMap<(u8, [u8; 16]), (Mac, Instant)>,
    solicited: HashMap<(u8, [u8; 16]), Instant>,
    pub link_up: Vec<bool>,
    pub device_stats: Vec<DeviceStats>,
    pub rates: Rates,
    last_sample: Option<(Instant, Sample)>,
    pub started: Instant,
    pub timeouts: Timeouts,
    pub flows_replicated: u64,
    /// Membership and the sync channel, when this node is part of a cluster.
    pub cluster: Option<Cluster>,
    /// Health, latency windows, QoS factors, standbys.
    pub qos: Qos,
    /// Flows admitted per backend (shared with the workers).
    pub load: Arc<Load>,
    /// Emptied histogram sets, handed to the workers next period (boxed: they travel
    /// through the channels as boxes and stay so, with no copy).
    #[allow(clippy::vec_box)]
    spare: Vec<Box<HistSet>>,
    /// Workers whose histograms of the last period have not come back yet.
    measuring: usize,
    last_period: Instant,
    /// What the workers' snapshot was last built from.
    published_live: Vec<BackendLive>,
    /// Hook commands still running (reaped on the next ticks).
    hooks: Vec<std::process::Child>,
}

/// The services snapshot, with what QoS has learned of each backend (`live`, empty at
/// start: all healthy at full share) and the cluster's nodes when there is a cluster.
pub fn build_snapshot(
    generation: u64,
    cfg: &Config,
    ports: &[PortInfo],
    services: &[ServiceConfig],
    live: &[BackendLive],
) -> Services {
    let view = cfg
        .cluster
        .as_ref()
        .and_then(|c| ClusterView::new(c, cfg.node_id as u16, ports));
    Services::build_with(
        generation,
        ports.to_vec(),
        services,
        live,
        Options::from_config(cfg),
    )
    .with_cluster(view)
}

impl Control {
    pub fn new(cfg: Config, ports: Vec<PortInfo>, workers: Vec<WorkerLink>) -> Control {
        let services_cfg = cfg.services.clone();
        let snapshot = Arc::new(build_snapshot(1, &cfg, &ports, &services_cfg, &[]));
        let now = Instant::now();
        let qos = Qos::new(&cfg, now);
        let f = &cfg.flows;
        let timeouts = Timeouts::new(
            f.tcp_syn_timeout,
            f.tcp_established_timeout,
            f.tcp_closing_timeout,
            f.udp_timeout,
        );
        let nports = ports.len();
        let room = ((f.capacity + f.capacity_v6) as usize).min(1 << 20);
        Control {
            cfg,
            services_cfg,
            ports,
            snapshot,
            workers,
            // Room for a million before the first rehash (a pause for the control thread).
            flows: flowmap::with_capacity(room),
            neighbors: HashMap::new(),
            solicited: HashMap::new(),
            link_up: vec![true; nports],
            device_stats: vec![DeviceStats::default(); nports],
            rates: Rates::default(),
            last_sample: None,
            started: Instant::now(),
            timeouts,
            flows_replicated: 0,
            cluster: None,
            published_live: qos.live.clone(),
            qos,
            load: Arc::new(Load::default()),
            spare: Vec::new(),
            measuring: 0,
            last_period: now,
            hooks: Vec::new(),
        }
    }

    /// Shares the node's admission counts (the workers' cores hold the same).
    pub fn with_load(mut self, load: Arc<Load>) -> Control {
        self.load = load;
        self
    }

    /// QoS duties between ticks: probes due and timed out, and once per period the
    /// workers' histograms (a fresh set out, the filled one back), then new factors.
    pub fn qos_tick(&mut self, now: Instant) {
        let (orders, health_changed) = self.qos.probes(now, &self.services_cfg);
        let n = self.workers.len().max(1);
        for o in orders {
            let w = usize::from(o.backend) % n;
            if let Some(link) = self.workers.get_mut(w) {
                link.send(ToWorker::Probe {
                    backend: o.backend,
                    path: o.path,
                    round: o.round,
                    method: o.method,
                });
            }
        }
        if health_changed {
            self.recompute_qos(now);
        }
        if now.duration_since(self.last_period) >= self.qos.cfg.period {
            self.last_period = now;
            if self.measuring > 0 {
                // A worker did not answer last period (busy, or stopping): go on without it.
                self.recompute_qos(now);
            }
            self.qos.windows.roll();
            for i in 0..self.workers.len() {
                let fresh = self.spare.pop().unwrap_or_else(|| {
                    Box::new(tandem_dataplane::pipeline::hist_for(&self.snapshot))
                });
                self.workers[i].send(ToWorker::Measure(fresh));
            }
            self.measuring = self.workers.len();
        }
        self.hooks.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
    }

    /// New factors, health and standbys into a new snapshot when anything changed.
    fn recompute_qos(&mut self, now: Instant) {
        self.measuring = 0;
        for h in self.qos.recompute(now, &self.services_cfg) {
            self.run_hook(&h);
        }
        let changed = self.qos.live.len() != self.published_live.len()
            || self
                .qos
                .live
                .iter()
                .zip(&self.published_live)
                .any(|(a, b)| live_differs(a, b, self.cfg.qos.selection));
        if changed {
            self.published_live = self.qos.live.clone();
            self.publish_services();
        }
    }

    fn run_hook(&mut self, h: &HookRun) {
        let r = std::process::Command::new(&h.hook)
            .arg(&h.backend)
            .env("TANDEM_EVENT", h.event)
            .env("TANDEM_SERVICE", &h.service)
            .env("TANDEM_BACKEND", &h.backend)
            .stdin(std::process::Stdio::null())
            .spawn();
        match r {
            Ok(c) => {
                tracing::info!(hook = %h.hook.display(), event = h.event, backend = %h.backend, "standby hook started");
                self.hooks.push(c);
            }
            Err(e) => {
                tracing::error!(hook = %h.hook.display(), error = %e, "standby hook failed to start")
            }
        }
    }

    /// Joins the cluster: records go to peers from now on.
    pub fn attach_cluster(&mut self, c: Cluster) {
        self.cluster = Some(c);
    }

    /// Reads the sync channel and runs the cluster's timers; tells the workers when the
    /// membership changes. Returns how many datagrams were handled.
    pub fn poll_cluster(&mut self, now: Instant) -> usize {
        let Some(c) = self.cluster.as_mut() else {
            return 0;
        };
        let inbound = c.receive(now, 4096);
        let n = inbound.len();
        for i in inbound {
            match i {
                Inbound::Records { from, records } => {
                    for w in &records {
                        self.take_peer_record(from, w, now);
                    }
                }
                Inbound::SnapshotRequest { from } => {
                    let Some(c) = self.cluster.as_mut() else {
                        break;
                    };
                    if !c.may_answer_snapshot(from, now) {
                        continue;
                    }
                    let view = &c.view;
                    let recs: Vec<WireRecord> = self
                        .flows
                        .iter()
                        .filter(|(_, f)| f.rec.bound())
                        .map(|(k, f)| WireRecord::from_record(*k, &f.rec, |i| view.id_of(i)))
                        .collect();
                    if let Some(c) = self.cluster.as_mut() {
                        c.answer_snapshot(from, &recs);
                    }
                }
            }
        }
        let flows = self.flows.len() as u32;
        let Some(c) = self.cluster.as_mut() else {
            return n;
        };
        c.local_flows = flows;
        if let Some(m) = c.tick(now) {
            self.broadcast(None, || ToWorker::Nodes(m));
        }
        n
    }

    /// A record from a peer: checked against our services, then stored on every worker.
    fn take_peer_record(&mut self, from: u16, w: &WireRecord, now: Instant) {
        let rec = match self.record_from_wire(w) {
            Ok(rec) => rec,
            Err(why) => {
                if let Some(c) = self.cluster.as_mut() {
                    c.records_invalid[why.index()] += 1;
                }
                return;
            }
        };
        let key = w.key;
        let e = self.flows.entry(key).or_insert(MasterFlow {
            rec,
            worker: 0,
            node: from,
            created: now,
            updated: now,
        });
        e.rec = rec;
        e.node = from;
        e.updated = now;
        self.broadcast(None, || ToWorker::Flow { key, rec });
    }

    /// A wire record as this node stores it, or why not: it names a service, backend, path,
    /// port or node this node does not have, or holds what no node would send.
    pub fn record_from_wire(&self, w: &WireRecord) -> Result<FlowRecord, RecordRefusal> {
        let s = &self.snapshot;
        let view = &self
            .cluster
            .as_ref()
            .ok_or(RecordRefusal::UnknownService)?
            .view;
        let svc = s
            .services
            .get(usize::from(w.service))
            .ok_or(RecordRefusal::UnknownService)?;
        let b = s
            .backends
            .get(usize::from(w.backend))
            .ok_or(RecordRefusal::BadIndex)?;
        let k = &w.key;
        if k.proto != svc.proto || k.dst != svc.vip || k.dport != svc.port || k.v6 != svc.v6 {
            return Err(RecordRefusal::KeyMismatch);
        }
        if b.service != svc.id
            || usize::from(w.primary_path) >= b.paths.len()
            || usize::from(w.backup_path) >= b.paths.len()
            || usize::from(w.ingress_port) >= self.ports.len()
        {
            return Err(RecordRefusal::BadIndex);
        }
        let udp_state = w.state == FlowState::Udp;
        if udp_state != (k.proto == 17) {
            return Err(RecordRefusal::StateForProtocol);
        }
        let primary_node = view
            .index_of(w.primary_node)
            .ok_or(RecordRefusal::BadNodes)?;
        let backup_node = match w.backup_node {
            0 => NO_NODE,
            id => view.index_of(id).ok_or(RecordRefusal::BadNodes)?,
        };
        if backup_node == primary_node {
            return Err(RecordRefusal::BadNodes);
        }
        let now_ms = 0;
        Ok(FlowRecord {
            service: w.service,
            backend: w.backend,
            primary_path: w.primary_path,
            backup_path: w.backup_path,
            state: w.state,
            ingress_port: w.ingress_port,
            primary_node,
            backup_node,
            client_mac: w.client_mac,
            last_seen_ms: now_ms,
            last_sync_ms: now_ms,
            admitted: false,
            mark: Mark::None,
            mark_us: 0,
        })
    }

    /// Sends a message to every worker but `except`.
    fn broadcast(&mut self, except: Option<u16>, make: impl Fn() -> ToWorker) {
        for (i, w) in self.workers.iter_mut().enumerate() {
            if Some(i as u16) != except {
                w.send(make());
            }
        }
    }

    /// Drains every worker's events and acts on them. Returns how many were handled.
    pub fn poll_workers(&mut self, now: Instant) -> usize {
        let mut handled = 0;
        for w in &mut self.workers {
            w.flush();
        }
        for wi in 0..self.workers.len() {
            // Bounded per tick so one busy worker cannot starve the socket.
            for _ in 0..65_536 {
                let Ok(ev) = self.workers[wi].rx.try_recv() else {
                    break;
                };
                handled += 1;
                self.handle(ev, now);
            }
        }
        handled
    }

    fn handle(&mut self, ev: FromWorker, now: Instant) {
        match ev {
            FromWorker::Flow {
                worker,
                key,
                rec,
                peers,
            } => {
                let e = self.flows.entry(key).or_insert(MasterFlow {
                    rec,
                    worker,
                    node: 0,
                    created: now,
                    updated: now,
                });
                e.rec = rec;
                e.worker = worker;
                e.node = 0;
                e.updated = now;
                if peers {
                    if let Some(c) = self.cluster.as_mut() {
                        let view = &c.view;
                        let w = WireRecord::from_record(key, &rec, |i| view.id_of(i));
                        c.queue_record(&w, now);
                    }
                }
                if self.workers.len() > 1 {
                    self.flows_replicated += 1;
                    self.broadcast(Some(worker), || ToWorker::Flow { key, rec });
                }
            }
            FromWorker::Neighbor { port, ip, mac } => {
                self.neighbors.insert((port, ip), (mac, now));
                self.broadcast(None, || ToWorker::Neighbor { port, ip, mac });
            }
            FromWorker::NeedNeighbor { port, ip, v6 } => self.solicit(port, ip, v6, now),
            FromWorker::Retired(old) => drop(old),
            FromWorker::Measured { hist, .. } => {
                self.qos.windows.merge(&hist);
                let mut hist = hist;
                hist.clear();
                self.spare.push(hist);
                if self.measuring > 0 {
                    self.measuring -= 1;
                    if self.measuring == 0 {
                        self.recompute_qos(now);
                    }
                }
            }
            FromWorker::Probe {
                backend,
                path,
                round,
                outcome,
            } => {
                let cfgs = &self.services_cfg;
                if self
                    .qos
                    .probe_result(now, cfgs, backend, path, round, Some(outcome))
                {
                    self.recompute_qos(now);
                }
            }
            FromWorker::ProbeUnsent {
                backend,
                path,
                round,
            } => {
                let cfgs = &self.services_cfg;
                if self.qos.probe_result(now, cfgs, backend, path, round, None) {
                    self.recompute_qos(now);
                }
            }
        }
    }

    /// Asks a worker to send an ARP request / neighbor solicitation, at most once per
    /// interval per next hop.
    fn solicit(&mut self, port: u8, ip: [u8; 16], v6: bool, now: Instant) {
        if self
            .solicited
            .get(&(port, ip))
            .is_some_and(|t| now.duration_since(*t) < SOLICIT_INTERVAL)
        {
            return;
        }
        self.solicited.insert((port, ip), now);
        if let Some(w) = self.workers.first_mut() {
            w.send(ToWorker::Solicit { port, ip, v6 });
        }
    }

    /// The next hops this node must know: backends' (or their gateways') on paths without a
    /// fixed MAC, and every port's gateway.
    pub fn wanted_next_hops(&self) -> Vec<(u8, [u8; 16], bool)> {
        let mut out = Vec::new();
        for (pi, p) in self.ports.iter().enumerate() {
            if let Some(g) = p.gateway {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&g);
                out.push((pi as u8, b, false));
            }
            if let Some(g) = p.gateway6 {
                out.push((pi as u8, g, true));
            }
        }
        if let Some(view) = &self.snapshot.cluster {
            for (i, n) in view.nodes.iter().enumerate() {
                if i != usize::from(view.me) && n.mac.is_none() {
                    if let Some(hop) = self.ports[usize::from(n.port)].next_hop(&n.addr, n.v6) {
                        out.push((n.port, hop, n.v6));
                    }
                }
            }
        }
        for b in &self.snapshot.backends {
            for path in b.paths.iter().filter(|p| p.mac.is_none()) {
                if let Some(hop) = self.ports[usize::from(path.port)].next_hop(&b.addr, b.v6) {
                    out.push((path.port, hop, b.v6));
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Resolves next hops that are unknown or due for a refresh.
    pub fn refresh_neighbors(&mut self, now: Instant) {
        for (port, ip, v6) in self.wanted_next_hops() {
            let fresh = self
                .neighbors
                .get(&(port, ip))
                .is_some_and(|(_, t)| now.duration_since(*t) < NEIGHBOR_REFRESH);
            if !fresh {
                self.solicit(port, ip, v6, now);
            }
        }
    }

    /// A port's link changed: tell the workers, which move flows to their backup paths.
    pub fn set_link(&mut self, port: usize, up: bool) {
        if port < self.link_up.len() && port < MAX_PORTS && self.link_up[port] != up {
            self.link_up[port] = up;
            tracing::warn!(port = %self.ports[port].name, up, "link changed");
            self.broadcast(None, || ToWorker::Link {
                port: port as u8,
                up,
            });
        }
    }

    /// Forgets flows no worker has announced for longer than their timeout allows.
    pub fn expire_flows(&mut self, now: Instant) {
        let t = self.timeouts;
        self.flows.retain(|_, f| {
            let limit = Duration::from_millis(u64::from(t.for_state(f.rec.state)))
                + Duration::from_secs(31);
            now.duration_since(f.updated) <= limit
        });
    }

    /// Samples counters and computes per-second rates.
    pub fn sample_rates(&mut self, now: Instant) {
        let nports = self.ports.len();
        let mut s = Sample {
            port_rx: vec![0; nports],
            port_tx: vec![0; nports],
            worker_rx: vec![0; self.workers.len()],
            worker_tx: vec![0; self.workers.len()],
            backend_new: vec![0; self.snapshot.backends.len()],
        };
        for (wi, w) in self.workers.iter().enumerate() {
            for p in 0..nports {
                let rx = w.counters.ports[p].rx_packets.get();
                let tx = w.counters.ports[p].tx_packets.get();
                s.port_rx[p] += rx;
                s.port_tx[p] += tx;
                s.worker_rx[wi] += rx;
                s.worker_tx[wi] += tx;
            }
            for (b, n) in s.backend_new.iter_mut().enumerate() {
                *n += w.counters.backend_new_flows[b].get();
            }
        }
        if let Some((t0, prev)) = &self.last_sample {
            let dt = now.duration_since(*t0).as_secs_f64().max(1e-3);
            let rate = |a: &[u64], b: &[u64]| -> Vec<f64> {
                a.iter()
                    .zip(b.iter().chain(std::iter::repeat(&0)))
                    .map(|(x, y)| x.saturating_sub(*y) as f64 / dt)
                    .collect()
            };
            self.rates = Rates {
                port_rx_pps: rate(&s.port_rx, &prev.port_rx),
                port_tx_pps: rate(&s.port_tx, &prev.port_tx),
                worker_rx_pps: rate(&s.worker_rx, &prev.worker_rx),
                worker_tx_pps: rate(&s.worker_tx, &prev.worker_tx),
                backend_new_per_s: rate(&s.backend_new, &prev.backend_new),
            };
        }
        self.last_sample = Some((now, s));
    }

    /// Changes a backend's state or weight and hands every worker a new snapshot.
    pub fn update_backend(
        &mut self,
        service: &str,
        backend: &str,
        state: Option<BackendState>,
        weight: Option<u32>,
    ) -> Result<(), String> {
        let svc = self
            .services_cfg
            .iter_mut()
            .find(|s| s.name == service)
            .ok_or_else(|| format!("no service named \"{service}\""))?;
        let b = svc
            .backends
            .iter_mut()
            .find(|b| b.name == backend)
            .ok_or_else(|| format!("service \"{service}\" has no backend named \"{backend}\""))?;
        if let Some(s) = state {
            b.state = s;
        }
        if let Some(w) = weight {
            if w > tandem_config::MAX_WEIGHT {
                return Err(format!(
                    "weight {w} is above the maximum {}",
                    tandem_config::MAX_WEIGHT
                ));
            }
            b.weight = w;
        }
        self.publish_services();
        Ok(())
    }

    fn publish_services(&mut self) {
        let gen = self.snapshot.generation + 1;
        let snap = Arc::new(build_snapshot(
            gen,
            &self.cfg,
            &self.ports,
            &self.services_cfg,
            &self.qos.live,
        ));
        self.snapshot = Arc::clone(&snap);
        self.broadcast(None, || ToWorker::Services(Arc::clone(&snap)));
    }

    /// Live flows per backend id (from the master view).
    pub fn active_flows_by_backend(&self) -> Vec<u64> {
        let mut v = vec![0u64; self.snapshot.backends.len()];
        for f in self.flows.values() {
            if f.rec.state != FlowState::Closing {
                if let Some(x) = v.get_mut(usize::from(f.rec.backend)) {
                    *x += 1;
                }
            }
        }
        v
    }

    pub fn service_mode(&self, service: u16) -> Option<Mode> {
        self.snapshot
            .services
            .get(usize::from(service))
            .map(|s| s.mode)
    }

    /// Pending messages to workers (for tests and `show stats`).
    pub fn pending_to_workers(&self) -> usize {
        self.workers.iter().map(|w| w.pending.len()).sum()
    }
}

/// True when the workers should get a new snapshot for this change.
fn live_differs(a: &BackendLive, b: &BackendLive, sel: tandem_config::Selection) -> bool {
    a.up != b.up
        || a.standby_active != b.standby_active
        || a.path_up != b.path_up
        || a.path_share != b.path_share
        || tandem_dataplane::select::algorithm(sel).reads_live(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_dataplane::pipeline::{Core, Verdict};
    use tandem_dataplane::testkit::{self, run};
    use tandem_dataplane::wire::l4::{ACK, SYN};

    const CONFIG: &str = r#"
[node]
id = 1
[eal]
args = []
[[port]]
name = "front"
devargs = "net_null0"
ipv4 = "10.0.0.1/24"
[[port]]
name = "back"
devargs = "net_null1"
ipv4 = "10.1.0.1/24"
[[service]]
name = "web"
vip = "192.0.2.10"
port = 80
protocol = "tcp"
mode = "nat"
[[service.backend]]
name = "a"
address = "10.1.0.11"
port = 8080
paths = [{ port = "back", mac = "02:00:00:00:01:11" }]
[[service.backend]]
name = "b"
address = "10.1.0.12"
port = 8080
paths = [{ port = "back" }]
"#;
    const MACS: [Mac; 2] = [[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]];

    fn node(workers: usize) -> (Control, Vec<Core>) {
        let cfg = Config::from_toml(CONFIG).unwrap();
        let ports: Vec<PortInfo> = cfg
            .ports
            .iter()
            .zip(MACS)
            .map(|(p, m)| PortInfo::from_config(p, m))
            .collect();
        let mut links = Vec::new();
        let mut cores = Vec::new();
        let snap = Arc::new(Services::build(1, ports.clone(), &cfg.services));
        for i in 0..workers {
            let (to_tx, to_rx) = crossbeam_channel::bounded(1024);
            let (from_tx, from_rx) = crossbeam_channel::bounded(1024);
            let counters = Arc::new(WorkerCounters::default());
            let core = Core::new(
                i as u16,
                1024,
                Timeouts::default(),
                Arc::clone(&snap),
                Arc::clone(&counters),
                5,
            );
            cores.push(core);
            links.push(WorkerLink::new(to_tx, from_rx, counters));
            // The test moves messages itself: keep the worker ends alive in a side list.
            WORKER_ENDS.with(|w| w.borrow_mut().push((to_rx, from_tx)));
        }
        (Control::new(cfg, ports, links), cores)
    }

    thread_local! {
        static WORKER_ENDS: std::cell::RefCell<Vec<(Receiver<ToWorker>, Sender<FromWorker>)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }

    /// What the port layer does between bursts: outbox to control, inbox into the core.
    fn exchange(ctl: &mut Control, cores: &mut [Core], now_ms: u32) {
        for (i, c) in cores.iter_mut().enumerate() {
            WORKER_ENDS.with(|w| {
                for ev in c.state.outbox.drain(..) {
                    w.borrow()[i].1.send(ev).unwrap();
                }
            });
        }
        ctl.poll_workers(Instant::now());
        for (i, c) in cores.iter_mut().enumerate() {
            WORKER_ENDS.with(|w| {
                while let Ok(m) = w.borrow()[i].0.try_recv() {
                    c.set_now(tandem_dataplane::pipeline::Now::from_ms(now_ms));
                    c.apply(m);
                }
            });
        }
    }

    /// A nat flow created on worker 0 whose reply arrives on worker 1: the record reaches
    /// worker 1 through the control thread and the reply is rewritten to the VIP.
    #[test]
    fn nat_reply_on_another_worker_finds_the_record() {
        WORKER_ENDS.with(|w| w.borrow_mut().clear());
        let (mut ctl, mut cores) = node(2);
        let client: IpAddr = "198.51.100.7".parse().unwrap();
        let vip: IpAddr = "192.0.2.10".parse().unwrap();
        // Backend b has no MAC: teach both workers its neighbor first.
        let arp = testkit::arp_request(
            [2, 0, 0, 0, 1, 0x12],
            "10.1.0.12".parse().unwrap(),
            "10.1.0.1".parse().unwrap(),
        );
        run(&mut cores[0], 1, &arp, 1);
        exchange(&mut ctl, &mut cores, 1);
        let syn = testkit::tcp(
            MACS[0],
            [2, 0, 0, 0, 0xc, 1],
            client,
            40000,
            vip,
            80,
            SYN,
            b"",
        );
        let (v, out) = run(&mut cores[0], 0, &syn, 2);
        assert_eq!(v, Verdict::Tx(1));
        let backend = tandem_dataplane::wire::ipv4::Packet::new_checked(&out[14..])
            .unwrap()
            .dst();
        // Before replication worker 1 does not know the flow.
        let reply = testkit::tcp(
            MACS[1],
            [2, 0, 0, 0, 1, 0x11],
            IpAddr::V4(backend),
            8080,
            client,
            40000,
            SYN | ACK,
            b"",
        );
        // (the port layer holds such a reply back for a moment instead of dropping it).
        assert!(matches!(
            run(&mut cores[1], 1, &reply, 3).0,
            Verdict::Defer(_)
        ));
        exchange(&mut ctl, &mut cores, 3);
        let (v, out) = run(&mut cores[1], 1, &reply, 4);
        assert_eq!(v, Verdict::Tx(0));
        let p = tandem_dataplane::wire::ipv4::Packet::new_checked(&out[14..]).unwrap();
        assert_eq!(IpAddr::V4(p.src()), vip);
        testkit::verify_checksums(&out).unwrap();
        // The control thread's master view has it, for show flow.
        assert_eq!(ctl.flows.len(), 1);
        let shown =
            crate::commands::execute(&mut ctl, "show flow tcp 198.51.100.7:40000 192.0.2.10:80");
        assert_eq!(shown["ok"], true, "{shown}");
        let by_reply = crate::commands::execute(
            &mut ctl,
            &format!("show flow tcp {backend}:8080 198.51.100.7:40000"),
        );
        assert_eq!(by_reply["flow"], shown["flow"]);
        // The client's ACK on worker 1 finds the replicated forward record too.
        let ack = testkit::tcp(
            MACS[0],
            [2, 0, 0, 0, 0xc, 1],
            client,
            40000,
            vip,
            80,
            ACK,
            b"",
        );
        assert_eq!(run(&mut cores[1], 0, &ack, 5).0, Verdict::Tx(1));
        assert_eq!(cores[1].state.counters.flows_created.get(), 0);
    }

    #[test]
    fn records_no_node_would_send_are_refused_by_reason() {
        use crate::cluster::codec::WireRecord;
        use crate::cluster::RecordRefusal as R;
        let sync: Vec<u16> = (0..2)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect::<Vec<_>>()
            .iter()
            .map(|u| u.local_addr().unwrap().port())
            .collect();
        let text = format!(
            "{CONFIG}[cluster]\nsecret_file = \"/dev/null\"\n\
             [[cluster.node]]\nid = 1\naddress = \"10.0.0.1\"\nsync = \"127.0.0.1:{}\"\n\
             [[cluster.node]]\nid = 2\naddress = \"10.0.0.2\"\nsync = \"127.0.0.1:{}\"\n",
            sync[0], sync[1]
        );
        let cfg = Config::from_toml(&text).unwrap();
        let ports: Vec<PortInfo> = cfg
            .ports
            .iter()
            .zip(MACS)
            .map(|(p, m)| PortInfo::from_config(p, m))
            .collect();
        let mut ctl = Control::new(cfg.clone(), ports, Vec::new());
        let view = ctl.snapshot.cluster.clone().unwrap();
        let cluster = Cluster::new(
            cfg.cluster.as_ref().unwrap(),
            1,
            view,
            b"0123456789abcdef-secret",
            1,
            1,
            Instant::now(),
        )
        .unwrap();
        ctl.attach_cluster(cluster);
        let good = WireRecord {
            key: tandem_dataplane::flow::FlowKey::v4(
                [198, 51, 100, 7],
                [192, 0, 2, 10],
                4000,
                80,
                6,
            ),
            service: 0,
            backend: 1,
            primary_path: 0,
            backup_path: 0,
            state: FlowState::Established,
            ingress_port: 0,
            primary_node: 2,
            backup_node: 1,
            client_mac: [2, 0, 0, 0, 0xc, 1],
        };
        assert!(ctl.record_from_wire(&good).is_ok());
        let no_backup = WireRecord {
            backup_node: 0,
            ..good
        };
        assert!(ctl.record_from_wire(&no_backup).is_ok());
        let mut udp_key = good.key;
        udp_key.proto = 17;
        for (bad, why) in [
            (WireRecord { service: 9, ..good }, R::UnknownService),
            (
                WireRecord {
                    backend: 99,
                    ..good
                },
                R::BadIndex,
            ),
            (
                WireRecord {
                    primary_path: 3,
                    ..good
                },
                R::BadIndex,
            ),
            (
                WireRecord {
                    ingress_port: 7,
                    ..good
                },
                R::BadIndex,
            ),
            (
                WireRecord {
                    key: tandem_dataplane::flow::FlowKey {
                        dport: 81,
                        ..good.key
                    },
                    ..good
                },
                R::KeyMismatch,
            ),
            (
                WireRecord {
                    key: udp_key,
                    ..good
                },
                R::KeyMismatch,
            ),
            (
                WireRecord {
                    state: FlowState::Udp,
                    ..good
                },
                R::StateForProtocol,
            ),
            (
                WireRecord {
                    primary_node: 7,
                    ..good
                },
                R::BadNodes,
            ),
            (
                WireRecord {
                    backup_node: 7,
                    ..good
                },
                R::BadNodes,
            ),
            (
                WireRecord {
                    backup_node: 2,
                    ..good
                },
                R::BadNodes,
            ),
        ] {
            assert_eq!(ctl.record_from_wire(&bad).err(), Some(why), "{bad:?}");
            ctl.take_peer_record(2, &bad, Instant::now());
        }
        let c = ctl.cluster.as_ref().unwrap();
        assert_eq!(c.records_invalid[R::BadIndex.index()], 3);
        assert_eq!(c.records_invalid[R::BadNodes.index()], 3);
        assert_eq!(c.records_invalid.iter().sum::<u64>(), 10);
        assert!(ctl.flows.is_empty(), "nothing refused was stored");
    }

    #[test]
    fn show_flows_pages_through_every_flow_once_and_caps_a_page() {
        WORKER_ENDS.with(|w| w.borrow_mut().clear());
        let (mut ctl, _cores) = node(1);
        let t0 = Instant::now();
        let n = 25_000u32;
        for i in 0..n {
            let key = tandem_dataplane::flow::FlowKey::v4(
                (0x0a00_0000 + i).to_be_bytes(),
                [192, 0, 2, 10],
                1024 + (i % 50_000) as u16,
                80,
                6,
            );
            // Some flows share an update time: the cursor orders them by key hash.
            let at = t0 + Duration::from_micros(u64::from(i / 3));
            ctl.flows.insert(
                key,
                MasterFlow {
                    rec: FlowRecord::default(),
                    worker: 0,
                    node: 0,
                    created: at,
                    updated: at,
                },
            );
        }
        let mut seen = std::collections::HashSet::new();
        let mut cmd = "show flows --limit 1000".to_string();
        let mut pages = 0;
        loop {
            let started = Instant::now();
            let v = crate::commands::execute(&mut ctl, &cmd);
            let took = started.elapsed();
            pages += 1;
            assert_eq!(v["ok"], true, "{v}");
            let flows = v["flows"].as_array().unwrap();
            assert!(flows.len() <= 1_000);
            for f in flows {
                let id = format!("{}:{}", f["client"], f["client_port"]);
                assert!(seen.insert(format!("{f}")), "listed twice: {id}");
            }
            if pages == 1 {
                println!("a page of {} flows of {n} in {took:?}", flows.len());
            }
            match v["next"].as_str() {
                Some(next) => cmd = format!("show flows --after {next} --limit 1000"),
                None => break,
            }
        }
        assert_eq!(pages, 25);
        assert_eq!(seen.len(), n as usize);
        // The newest first.
        let v = crate::commands::execute(&mut ctl, "show flows --limit 1");
        let newest = ctl
            .flows
            .values()
            .map(|f| f.updated)
            .max()
            .unwrap()
            .duration_since(t0);
        assert!(newest.as_micros() >= u128::from(n / 3 - 1), "{v}");
        for bad in [
            "show flows --limit 100000000",
            "show flows --limit 1001",
            "show flows --limit 0",
            "show flows --after x",
            "show flows --what 1",
        ] {
            let v = crate::commands::execute(&mut ctl, bad);
            assert_eq!(v["ok"], false, "{bad}: {v}");
        }
    }

    #[test]
    fn commands_answer_errors_and_change_backends() {
        WORKER_ENDS.with(|w| w.borrow_mut().clear());
        let (mut ctl, _cores) = node(1);
        for bad in [
            "",
            "show",
            "show nothing",
            "backend drain web",
            "backend drain web zz",
            "backend weight web a x",
            "show flows --limit x",
            "show flow tcp 1.2.3.4 5.6.7.8:80",
            "\u{0}\u{1}",
        ] {
            let v = crate::commands::execute(&mut ctl, bad);
            assert_eq!(v["ok"], false, "{bad:?} -> {v}");
            assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()));
        }
        let v = crate::commands::execute(&mut ctl, "backend drain web a");
        assert_eq!(v["ok"], true);
        assert_eq!(
            ctl.snapshot.backend_by_name("web", "a").unwrap().state,
            BackendState::Draining
        );
        let v = crate::commands::execute(&mut ctl, "backend weight web b 7");
        assert_eq!(v["ok"], true);
        let v = crate::commands::execute(&mut ctl, "show backends web");
        assert_eq!(v["backends"][1]["weight"], 7);
        assert_eq!(v["backends"][0]["state"], "draining");
        let help = crate::commands::execute(&mut ctl, "help");
        assert!(help["commands"].as_array().unwrap().len() >= 8);
        // Every snapshot change reaches the worker.
        WORKER_ENDS.with(|w| assert_eq!(w.borrow()[0].0.len(), 2));
    }

    #[test]
    fn next_hops_wanted_include_arp_paths() {
        WORKER_ENDS.with(|w| w.borrow_mut().clear());
        let (ctl, _c) = node(1);
        let hops = ctl.wanted_next_hops();
        assert_eq!(hops.len(), 1);
        assert_eq!(&hops[0].1[..4], &[10, 1, 0, 12]);
    }
}
