//! The control thread's state, in small units: fan-out to the workers (`fanout`), the master
//! flow view (`flows`), neighbors and links (`neighbors`), rates (`rates`), QoS duties
//! (`qos`) and the cluster (`cluster`); here, what ties them: the running services and their
//! snapshot. Owns no DPDK handle, so it is tested without an EAL. Commands read it through
//! the accessors below and change it through its methods.

mod bgp;
mod changes;
mod cluster;
mod fanout;
mod flows;
mod limits;
mod neighbors;
mod qos;
mod rates;
mod trace;

pub use changes::{restart_only, Changes};
pub use fanout::WorkerLink;
pub use flows::MasterFlow;
pub use neighbors::{
    Known, NeighborCounts, Why, GIVE_UP_AFTER, NEIGHBOR_REFRESH, SOLICIT_INTERVAL,
};
pub use rates::{DeviceStats, Rates};

use crate::cluster::Cluster;
use crate::flowmap::{self, FlowMap};
use crate::qos::Qos;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tandem_config::{BackendState, Config};
use tandem_dataplane::cluster::ClusterView;
use tandem_dataplane::flow::Timeouts;
use tandem_dataplane::messages::ToWorker;
use tandem_dataplane::neighbor::NeighborKey;
use tandem_dataplane::qos::admission::Load;
use tandem_dataplane::services::{BackendLive, Layout, Options, PortInfo, Services};

pub struct Control {
    cfg: Config,
    /// The services as they stand now (changed at run time and by reloads), at their ids.
    layout: Layout,
    ports: Vec<PortInfo>,
    snapshot: Arc<Services>,
    started: Instant,
    timeouts: Timeouts,
    /// Flows admitted per backend (shared with the workers).
    load: Arc<Load>,
    workers: Vec<WorkerLink>,
    flows: flows::FlowView,
    net: neighbors::Neighborhood,
    meter: rates::RateMeter,
    /// Health, latency windows, QoS factors, standbys.
    qos: Qos,
    measure: qos::Measuring,
    /// Membership and the sync channel, when this node is part of a cluster.
    cluster: Option<Cluster>,
    /// Per backend id, the workers' new-flow count when its id was last vacated: what a
    /// backend that takes the id next counts from.
    new_flows_base: Vec<u64>,
    /// The file `reload` reads (none for a node started from text).
    config_path: Option<std::path::PathBuf>,
    /// What the node's BIRD announces (`[bgp]`), when it announces.
    bgp: Option<crate::bgp::Announcer>,
    /// Which worker `poll_workers` starts with next.
    poll_turn: usize,
    /// What an operator's DPDK tools need to reach this process (`show node`).
    process: Process,
    /// The packet tracer (`trace add`, `show trace`).
    tracing: trace::Tracing,
    /// Admission limits learned from latency (adaptive services).
    limits: limits::Learning,
    /// The workers' clock (`pipeline::Now`, µs) read now, when the node gives it: what
    /// dates a traced frame by this host's time of day.
    node_clock: Option<Box<dyn Fn() -> u64 + Send>>,
}

/// What an operator's DPDK tools (dpdk-dumpcap, dpdk-telemetry.py) need to reach a
/// node's process, as `show node` tells them.
#[derive(Debug, Clone, Default)]
pub struct Process {
    pub pid: u32,
    /// The EAL's file prefix.
    pub file_prefix: String,
    /// Why a capture cannot attach (no hugepages, or the capture server did not
    /// register); None when it can.
    pub no_capture: Option<String>,
    /// Each port's DPDK device name and port id, in the config's order.
    pub devices: Vec<(String, u16)>,
}

/// The services snapshot, with what QoS has learned of each backend (`live`, empty at
/// start: all healthy at full share) and the cluster's nodes when there is a cluster.
pub fn build_snapshot(
    generation: u64,
    cfg: &Config,
    ports: &[PortInfo],
    layout: &Layout,
    live: &[BackendLive],
) -> Services {
    let view = cfg
        .cluster
        .as_ref()
        .and_then(|c| ClusterView::new(c, cfg.node_id as u16, ports));
    Services::build_placed(
        generation,
        ports.to_vec(),
        layout,
        live,
        Options::from_config(cfg),
    )
    .with_cluster(view)
}

impl Control {
    pub fn new(cfg: Config, ports: Vec<PortInfo>, workers: Vec<WorkerLink>) -> Control {
        let layout = Layout::new(&cfg.services);
        let snapshot = Arc::new(build_snapshot(1, &cfg, &ports, &layout, &[]));
        let now = Instant::now();
        let qos = Qos::new(&cfg, &layout, now);
        let f = &cfg.flows;
        let timeouts = Timeouts::of(f);
        let nports = ports.len();
        let room = ((f.capacity + f.capacity_v6) as usize).min(1 << 20);
        Control {
            cfg,
            layout,
            ports,
            snapshot,
            workers,
            flows: flows::FlowView {
                // Room for a million before the first rehash (a pause for the control
                // thread), resident from the start.
                map: flowmap::resident(room, flows::MasterFlow::idle(now)),
            },
            net: neighbors::Neighborhood::new(nports),
            meter: rates::RateMeter::new(nports),
            started: Instant::now(),
            timeouts,
            cluster: None,
            measure: qos::Measuring {
                spare: Vec::new(),
                outstanding: 0,
                last_period: now,
                published_live: qos.live.clone(),
                hooks: Vec::new(),
                batching: false,
                publish_due: false,
            },
            qos,
            load: Arc::new(Load::default()),
            new_flows_base: vec![0; tandem_dataplane::counters::MAX_BACKENDS],
            config_path: None,
            bgp: None,
            poll_turn: 0,
            process: Process::default(),
            tracing: trace::Tracing::new(Instant::now()),
            limits: limits::Learning::default(),
            node_clock: None,
        }
    }

    /// The file `reload` and SIGHUP read again.
    pub fn with_config_path(mut self, path: std::path::PathBuf) -> Control {
        self.config_path = Some(path);
        self
    }

    pub fn config_path(&self) -> Option<&std::path::Path> {
        self.config_path.as_deref()
    }

    /// New flows at a backend id since the node started, over every worker.
    fn new_flows_at(&self, id: u16) -> u64 {
        self.workers
            .iter()
            .filter_map(|w| w.counters.backend_new_flows.get(usize::from(id)))
            .map(|c| c.get())
            .sum()
    }

    /// New flows a backend id has taken since its backend got it (over every worker).
    pub fn backend_new_flows(&self, id: u16) -> u64 {
        let base = self.new_flows_base.get(usize::from(id)).copied();
        self.new_flows_at(id).saturating_sub(base.unwrap_or(0))
    }

    /// A quic service's backend's server ID as hex (null for any other backend).
    pub fn backend_server_id(&self, id: u16) -> serde_json::Value {
        self.layout
            .services
            .iter()
            .flat_map(|p| p.seats.iter())
            .find(|seat| seat.id == id && !seat.cfg.server_id.is_empty())
            .map_or(serde_json::Value::Null, |seat| {
                tandem_config::units::format_hex(&seat.cfg.server_id).into()
            })
    }

    /// One count of a service's admission queue, over every worker.
    pub fn queue_total(
        &self,
        service: u16,
        count: fn(&tandem_dataplane::counters::QueueCounters) -> u64,
    ) -> u64 {
        self.workers
            .iter()
            .filter_map(|w| w.counters.queues.get(usize::from(service)))
            .map(count)
            .sum()
    }

    /// Shares the node's admission counts (the workers' cores hold the same).
    pub fn with_load(mut self, load: Arc<Load>) -> Control {
        self.load = load;
        self
    }

    /// Reads the workers' clock (`pipeline::Now` in µs) for the control thread.
    pub fn with_node_clock(mut self, now_us: Box<dyn Fn() -> u64 + Send>) -> Control {
        self.node_clock = Some(now_us);
        self
    }

    pub fn with_process(mut self, process: Process) -> Control {
        self.process = process;
        self
    }

    pub fn process(&self) -> &Process {
        &self.process
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
            .layout
            .service_mut(service)
            .filter(|s| s.removed.is_none())
            .ok_or_else(|| format!("no service named \"{service}\""))?;
        let seat = svc
            .seats
            .iter_mut()
            .find(|b| b.cfg.name == backend)
            .ok_or_else(|| format!("service \"{service}\" has no backend named \"{backend}\""))?;
        if seat.removed.is_some() {
            return Err(format!(
                "backend \"{backend}\" of service \"{service}\" is being removed"
            ));
        }
        let b = &mut seat.cfg;
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

    pub(crate) fn publish_services(&mut self) {
        let gen = self.snapshot.generation + 1;
        let snap = Arc::new(build_snapshot(
            gen,
            &self.cfg,
            &self.ports,
            &self.layout,
            &self.qos.live,
        ));
        self.snapshot = Arc::clone(&snap);
        self.broadcast(None, || ToWorker::Services(Arc::clone(&snap)));
    }

    /// The configuration the node started from, with every change since (`show config`
    /// prints it; the services as they stand now).
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The services at their ids, removed ones included until vacated.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn ports(&self) -> &[PortInfo] {
        &self.ports
    }

    /// The services snapshot the workers run.
    pub fn snapshot(&self) -> &Arc<Services> {
        &self.snapshot
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// Flows admitted per backend.
    pub fn load(&self) -> &Load {
        &self.load
    }

    pub fn workers(&self) -> &[WorkerLink] {
        &self.workers
    }

    /// The master flow view.
    pub fn flows(&self) -> &FlowMap<MasterFlow> {
        &self.flows.map
    }

    /// Records handed from one worker to the others (the workers count them).
    pub fn flows_replicated(&self) -> u64 {
        self.workers
            .iter()
            .map(|w| w.counters.flows_replicated_out.get())
            .sum()
    }

    /// The neighbor table (`neighbors`).
    pub fn neighbors(&self) -> &HashMap<NeighborKey, Known> {
        &self.net.table
    }

    /// What the neighbor table refused or dropped.
    pub fn neighbor_counts(&self) -> NeighborCounts {
        self.net.counts
    }

    pub fn link_up(&self) -> &[bool] {
        &self.net.link_up
    }

    pub fn rates(&self) -> &Rates {
        &self.meter.rates
    }

    pub fn device_stats(&self) -> &[DeviceStats] {
        &self.meter.device_stats
    }

    /// The port layer's latest reading of port `i`'s device counters.
    pub fn set_device_stats(&mut self, i: usize, d: DeviceStats) {
        if let Some(s) = self.meter.device_stats.get_mut(i) {
            *s = d;
        }
    }

    pub fn qos(&self) -> &Qos {
        &self.qos
    }

    /// Serving: on its own from the start; in a cluster once its snapshot is complete.
    pub fn is_ready(&self) -> bool {
        self.cluster
            .as_ref()
            .is_none_or(|c| c.sync.readiness == crate::cluster::Readiness::Ready)
    }

    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    pub fn cluster_mut(&mut self) -> Option<&mut Cluster> {
        self.cluster.as_mut()
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) use tests::{
    cluster_pair as test_cluster_pair, node as test_node, traffic as test_traffic,
    CONFIG as TEST_CONFIG,
};

#[cfg(test)]
mod change_tests;

#[cfg(test)]
mod limit_tests;

#[cfg(test)]
mod neighbor_tests;
#[cfg(test)]
mod reload_reference_tests;
