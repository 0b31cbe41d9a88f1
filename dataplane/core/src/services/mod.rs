//! The services snapshot: everything a worker needs to place a new flow (VIPs, backends,
//! their paths and selection tables, the node's own ports). The control thread builds a new
//! snapshot on every change (drain, weight, add, remove, reload) and hands it to each
//! worker, which swaps it in between bursts and hands the old one back to be freed off the
//! packet path. Services and backends sit at the ids their `Layout` gives them; an id with
//! nothing at it (vacated) holds a placeholder that matches no packet and takes no flow.

mod layout;
mod quic;

pub use layout::{Layout, Placed, Seat};
pub use quic::QuicRoute;

pub use crate::ports::PortInfo;
pub use crate::qos::live::BackendLive;

use crate::cluster::ClusterView;
use crate::fasthash::{FastHasher, FastMap};
use crate::flow::key::addr_bytes;
use crate::select::maglev::{Candidate, Maglev};
use crate::select::Inputs;
use crate::wire::ethernet::Mac;
use std::hash::Hasher;
use std::net::IpAddr;
use tandem_config::{
    BackendConfig, BackendState, Config, Mode, OnBackendDown, Selection, ServiceConfig,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path {
    pub port: u8,
    /// A fixed next-hop MAC; `None` means resolve the backend (or gateway) by ARP/ND.
    pub mac: Option<Mac>,
    /// Health from the probes: a down path's flows go over their backup path.
    pub up: bool,
    /// Relative share of the backend's new flows (QoS against its other paths).
    pub share: u16,
}

#[derive(Debug, Clone)]
pub struct Backend {
    pub id: u16,
    pub service: u16,
    pub name: String,
    pub addr: [u8; 16],
    pub v6: bool,
    pub port: u16,
    pub weight: u32,
    pub state: BackendState,
    pub paths: Vec<Path>,
    /// Health from the probes (any path up).
    pub up: bool,
    /// Takes new flows: active (or an activated standby) and up.
    pub eligible: bool,
    /// Admission limit (0: none).
    pub max_flows: u32,
    /// Probe series number of the first path (the others follow).
    pub series: u16,
    /// Removed: draining until its flows end, then vacated.
    pub removing: bool,
    /// Names the backend to other nodes (whose ids may differ): from the service's and the
    /// backend's names.
    pub tag: u32,
}

impl Backend {
    /// The placeholder at a vacated id.
    fn vacant(id: u16) -> Backend {
        Backend {
            id,
            service: u16::MAX,
            name: String::new(),
            addr: [0; 16],
            v6: false,
            port: 0,
            weight: 0,
            state: BackendState::Down,
            paths: Vec::new(),
            up: false,
            eligible: false,
            max_flows: 0,
            series: 0,
            removing: false,
            tag: 0,
        }
    }

    /// Backend `b` at `id` of service `sid` with what the control thread learned of it
    /// (`lv`: up, and each path's state and share); not yet eligible, nor removing.
    fn placed(id: u16, sid: u16, b: &BackendConfig, lv: &BackendLive, tag: u32) -> Backend {
        Backend {
            id,
            service: sid,
            name: b.name.clone(),
            addr: addr_bytes(b.address),
            v6: b.address.is_ipv6(),
            port: b.port,
            weight: b.weight,
            state: b.state,
            paths: b
                .paths
                .iter()
                .enumerate()
                .map(|(pi, p)| Path {
                    port: p.port as u8,
                    mac: p.mac,
                    up: lv.path_up.get(pi).copied().unwrap_or(true),
                    share: lv.path_share.get(pi).copied().unwrap_or(1000),
                })
                .collect(),
            up: lv.up,
            eligible: false,
            max_flows: b.max_flows,
            series: 0,
            removing: false,
            tag,
        }
    }

    /// A placeholder at an id nothing holds.
    pub fn is_vacant(&self) -> bool {
        self.service == u16::MAX
    }
}

/// Node-wide settings the packet path needs.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub selection: Selection,
    /// A passive measurement pending longer than this is a timeout (recorded at this).
    pub qos_timeout_us: u64,
    /// A probe that is refused is recorded at this (the probe timeout).
    pub probe_timeout_us: u64,
    pub on_backend_down: OnBackendDown,
    /// Other workers on this node, which need every flow from its first packet (a nat
    /// reply may reach any of them). A node with one worker keeps half-open flows to
    /// itself: see `State::announce`.
    pub siblings: bool,
    /// The flow table's idle timeouts (`[flows]`): a worker takes them with the snapshot,
    /// so a reload changes them.
    pub timeouts: crate::flow::Timeouts,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            selection: Selection::Qos,
            qos_timeout_us: 1_000_000,
            probe_timeout_us: 1_000_000,
            on_backend_down: OnBackendDown::Keep,
            siblings: true,
            timeouts: crate::flow::Timeouts::default(),
        }
    }
}

impl Options {
    pub fn from_config(cfg: &Config) -> Options {
        Options {
            selection: cfg.qos.selection,
            qos_timeout_us: cfg.qos.timeout.as_micros().min(u128::from(u64::MAX)) as u64,
            probe_timeout_us: cfg.health.timeout.as_micros().min(u128::from(u64::MAX)) as u64,
            on_backend_down: cfg.health.on_backend_down,
            siblings: cfg.workers.cores.len() > 1,
            timeouts: crate::flow::Timeouts::of(&cfg.flows),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Service {
    pub id: u16,
    pub name: String,
    pub vip: [u8; 16],
    pub v6: bool,
    pub port: u16,
    pub proto: u8,
    pub mode: Mode,
    /// Global ids of this service's backends.
    pub backends: Vec<u16>,
    /// New flows by hash over the eligible backends: weights times QoS factors (`qos`
    /// selection) or plain weights (the others, whose two-choice draws come from it too).
    pub maglev: Maglev,
    /// Some backend has `max_flows`: new flows are counted and may wait in the queue.
    pub admission: bool,
    /// New flows are counted per backend (admission, or a selection that reads counts).
    pub counts_flows: bool,
    pub queue_max_len: usize,
    pub queue_max_wait_us: u64,
    /// Lower the MSS of SYNs carried encapsulated (`ServiceConfig::clamp_mss`).
    pub clamp_mss: bool,
    /// Removed: no new flows, vacated when its flows end.
    pub removing: bool,
    /// A quic service's routing by connection ID (boxed: the key schedule is large, and
    /// most services have none).
    pub quic: Option<Box<QuicRoute>>,
}

impl Service {
    /// The placeholder at a vacated id: protocol 0 matches no packet.
    fn vacant(id: u16) -> Service {
        Service {
            id,
            name: String::new(),
            vip: [0; 16],
            v6: false,
            port: 0,
            proto: 0,
            mode: Mode::Nat,
            backends: Vec::new(),
            maglev: Maglev::build(&[]),
            admission: false,
            counts_flows: false,
            queue_max_len: 0,
            queue_max_wait_us: 0,
            clamp_mss: false,
            removing: false,
            quic: None,
        }
    }

    pub fn is_vacant(&self) -> bool {
        self.proto == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ServiceKey {
    vip: [u8; 16],
    port: u16,
    proto: u8,
}

/// Seed of the hash that selects backends and paths: fixed, so every worker (and every
/// node) places the same flow the same way.
pub const SELECTION_SEED: u64 = 0x7461_6e64_656d_0001;

pub struct Services {
    pub generation: u64,
    pub ports: Vec<PortInfo>,
    pub services: Vec<Service>,
    /// Indexed by global backend id.
    pub backends: Vec<Backend>,
    /// What selection reads of each backend, by the same ids (kept apart so that `select`
    /// needs nothing of the snapshot).
    pub inputs: Vec<Inputs>,
    by_key: FastMap<ServiceKey, u16>,
    vips: FastMap<[u8; 16], ()>,
    /// (address, port, protocol) of every nat backend: where nat replies come from, and
    /// the nat services it serves (a reply's flow is keyed by one of their VIPs).
    nat_sources: FastMap<ServiceKey, Vec<u16>>,
    /// The IPv4 services the plain lane serves (those whose mode rewrites no more than
    /// addresses: not encapsulating), by `plain_key`: scanned when few, else the map.
    plain: Vec<(u64, u16)>,
    plain_map: FastMap<u64, u16>,
    /// The plain lane's nat replies: (backend address, port, protocol) to the one IPv4 nat
    /// service whose backend sends from there (`Toward::Reply` in `demux`), and every
    /// address a service holds that may be IPv4 (a reply to one is not a reply).
    plain_replies: FastMap<u64, u16>,
    vip_words: FastMap<[u8; 4], ()>,
    /// The other nodes, when this one is part of a cluster.
    pub cluster: Option<ClusterView>,
    pub options: Options,
    /// Probe series number to (backend, path).
    pub series: Vec<(u16, u8)>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Services(gen {}, {} services)",
            self.generation,
            self.services.len()
        )
    }
}

/// Up to this many plain services are scanned (one compare each) rather than hashed.
const PLAIN_SCAN: usize = 8;

/// An IPv4 service's (address, port, protocol) in one word.
#[inline(always)]
fn plain_key(vip: [u8; 4], port: u16, proto: u8) -> u64 {
    u64::from(u32::from_ne_bytes(vip)) | u64::from(port) << 32 | u64::from(proto) << 48
}

/// A backend's identity from its names: where Maglev places it, and (its low half) how
/// nodes name it to each other (`Backend::tag`).
pub fn name_identity(service: &str, backend: &str) -> u64 {
    let mut h = FastHasher::with_seed(0x1234_5678);
    h.write(service.as_bytes());
    h.write(&[0xff]);
    h.write(backend.as_bytes());
    h.finish()
}

impl Services {
    /// Builds a snapshot from the services as they stand now (state and weight included)
    /// and the ports with their MACs, every backend healthy at full share.
    pub fn build(generation: u64, ports: Vec<PortInfo>, services: &[ServiceConfig]) -> Services {
        Services::build_with(generation, ports, services, &[], Options::default())
    }

    /// Builds a snapshot with what the control thread has learned of each backend (`live`,
    /// indexed by global backend id; missing entries are healthy at full share), ids in
    /// order (`Layout::new`).
    pub fn build_with(
        generation: u64,
        ports: Vec<PortInfo>,
        services: &[ServiceConfig],
        live: &[BackendLive],
        options: Options,
    ) -> Services {
        Services::build_placed(generation, ports, &Layout::new(services), live, options)
    }

    /// Builds a snapshot of the services at the ids `layout` gives them.
    pub fn build_placed(
        generation: u64,
        ports: Vec<PortInfo>,
        layout: &Layout,
        live: &[BackendLive],
        options: Options,
    ) -> Services {
        let mut out = Services {
            generation,
            ports,
            services: (0..layout.service_slots() as u16)
                .map(Service::vacant)
                .collect(),
            backends: (0..layout.backend_slots() as u16)
                .map(Backend::vacant)
                .collect(),
            inputs: vec![Inputs::default(); layout.backend_slots()],
            by_key: FastMap::default(),
            vips: FastMap::default(),
            nat_sources: FastMap::default(),
            plain: Vec::new(),
            plain_map: FastMap::default(),
            plain_replies: FastMap::default(),
            vip_words: FastMap::default(),
            cluster: None,
            options,
            series: Vec::new(),
        };
        for placed in &layout.services {
            out.place_service(placed, live);
        }
        out.index_plain();
        out
    }

    /// Fills the plain lane's index: each IPv4 service that `lookup` gives for its own
    /// key (so the lane and the full stage never name two services for one packet).
    fn index_plain(&mut self) {
        let mut plain = Vec::new();
        for svc in &self.services {
            let v4 = [svc.vip[0], svc.vip[1], svc.vip[2], svc.vip[3]];
            let found = self.lookup(&svc.vip, svc.port, svc.proto).map(|x| x.id);
            // A quic service's packets are routed by connection ID: the full stage's.
            let lane = !svc.mode.encapsulates() && svc.quic.is_none();
            if !svc.is_vacant() && !svc.v6 && lane && found == Some(svc.id) {
                plain.push((plain_key(v4, svc.port, svc.proto), svc.id));
            }
        }
        if plain.len() > PLAIN_SCAN {
            self.plain_map = plain.iter().copied().collect();
        }
        self.plain = plain;
        let v4ish = |a: &[u8; 16]| a[4..] == [0; 12];
        let first4 = |a: &[u8; 16]| [a[0], a[1], a[2], a[3]];
        self.vip_words = self
            .services
            .iter()
            .filter(|x| v4ish(&x.vip))
            .map(|x| (first4(&x.vip), ()))
            .collect();
        self.plain_replies = self
            .nat_sources
            .iter()
            .filter_map(|(k, from)| {
                let [id] = from.as_slice() else { return None };
                let svc = self.services.get(usize::from(*id))?;
                (v4ish(&k.vip) && !svc.v6 && !svc.is_vacant())
                    .then(|| (plain_key(first4(&k.vip), k.port, k.proto), *id))
            })
            .collect();
    }

    /// The nat service a plain IPv4 frame from `src`:`sport` to `dst` is a reply of: what
    /// `demux::toward` gives (`Toward::Reply`) when it is an IPv4 service's.
    #[inline(always)]
    pub fn plain_reply(
        &self,
        dst: [u8; 4],
        src: [u8; 4],
        sport: u16,
        proto: u8,
    ) -> Option<&Service> {
        if self.plain_replies.is_empty() || self.vip_words.contains_key(&dst) {
            return None;
        }
        let id = *self.plain_replies.get(&plain_key(src, sport, proto))?;
        self.services.get(usize::from(id))
    }

    /// The plain lane's service for an IPv4 destination: what `lookup` gives, when it is
    /// an IPv4 service the lane may serve.
    #[inline(always)]
    pub fn plain(&self, vip: [u8; 4], port: u16, proto: u8) -> Option<&Service> {
        let k = plain_key(vip, port, proto);
        let id = if self.plain.len() <= PLAIN_SCAN {
            self.plain.iter().find(|e| e.0 == k).map(|e| e.1)
        } else {
            self.plain_map.get(&k).copied()
        }?;
        self.services.get(usize::from(id))
    }

    /// Service `placed` and its running backends, with what the control thread has
    /// learned of each (`live`).
    fn place_service(&mut self, placed: &Placed, live: &[BackendLive]) {
        let dflt = BackendLive::default();
        let algorithm = crate::select::algorithm(self.options.selection);
        let s = &placed.cfg;
        let sid = placed.id;
        let mut ids = Vec::new();
        let mut cands = Vec::new();
        for (id, b, removing) in placed.running() {
            ids.push(id);
            let lv = live.get(usize::from(id)).unwrap_or(&dflt);
            let taking = match b.state {
                BackendState::Active => true,
                BackendState::Standby => lv.standby_active,
                BackendState::Draining | BackendState::Down => false,
            };
            let eligible = taking && lv.up;
            let weight = if eligible {
                algorithm.table_weight(b.weight, lv)
            } else {
                0
            };
            if s.mode.translates() {
                self.answers_for(sid, s.protocol.number(), &b);
            }
            let identity = name_identity(&s.name, &b.name);
            cands.push(Candidate {
                id,
                weight,
                identity,
            });
            self.inputs[usize::from(id)] = Inputs {
                weight: b.weight,
                qos_weight: f64::from(b.weight) * (lv.factor * lv.ramp).clamp(0.0, 1.0),
                ewma_us: lv.ewma_us,
            };
            let mut backend = Backend::placed(id, sid, &b, lv, identity as u32);
            backend.eligible = eligible;
            backend.removing = removing;
            backend.series = self.series.len() as u16;
            for pi in 0..b.paths.len() {
                self.series.push((id, pi as u8));
            }
            self.backends[usize::from(id)] = backend;
        }
        let vip = addr_bytes(s.vip);
        let key = ServiceKey {
            vip,
            port: s.port,
            proto: s.protocol.number(),
        };
        self.by_key.insert(key, sid);
        self.vips.insert(vip, ());
        let admission =
            placed.cfg.admission.adaptive() || placed.seats.iter().any(|x| x.cfg.max_flows > 0);
        self.services[usize::from(sid)] = Service {
            id: sid,
            name: s.name.clone(),
            vip,
            v6: s.vip.is_ipv6(),
            port: s.port,
            proto: s.protocol.number(),
            mode: s.mode,
            backends: ids,
            maglev: Maglev::build(&cands),
            admission,
            counts_flows: admission || algorithm.counts_flows(),
            queue_max_len: s.queue.max_len as usize,
            queue_max_wait_us: s.queue.max_wait.as_micros().min(u128::from(u64::MAX)) as u64,
            clamp_mss: s.clamp_mss,
            removing: placed.removed.is_some(),
            quic: s
                .quic
                .as_ref()
                .and_then(|q| QuicRoute::of(q, placed))
                .map(Box::new),
        };
    }

    /// Notes that service `sid` (a translating mode) answers for what backend `b` sends
    /// from its address and port: a reply from there is one of its flows'.
    fn answers_for(&mut self, sid: u16, proto: u8, b: &BackendConfig) {
        let of = self
            .nat_sources
            .entry(ServiceKey {
                vip: addr_bytes(b.address),
                port: b.port,
                proto,
            })
            .or_default();
        if !of.contains(&sid) {
            of.push(sid);
        }
    }

    /// The same snapshot, part of a cluster.
    pub fn with_cluster(mut self, cluster: Option<ClusterView>) -> Services {
        self.cluster = cluster;
        self
    }

    /// Convenience for tests and the demo: ports from the config with the given MACs.
    pub fn from_config(cfg: &Config, macs: &[Mac]) -> Services {
        let ports = cfg
            .ports
            .iter()
            .zip(macs)
            .map(|(p, m)| PortInfo::from_config(p, *m))
            .collect();
        Services::build_with(1, ports, &cfg.services, &[], Options::from_config(cfg))
    }

    /// The service for a destination. With a handful of services a scan beats hashing the
    /// 16-byte key (1k-flow pcap replay: 7.88 Mpps scanning vs 7.53 Mpps hashing, 3 runs
    /// each), so small tables scan and larger ones use the map. Inlined into the packet
    /// path whatever the inliner's budget says of its callers.
    #[inline(always)]
    pub fn lookup(&self, vip: &[u8; 16], port: u16, proto: u8) -> Option<&Service> {
        if self.services.len() <= 4 {
            return self
                .services
                .iter()
                .find(|s| s.vip == *vip && s.port == port && s.proto == proto);
        }
        self.by_key
            .get(&ServiceKey {
                vip: *vip,
                port,
                proto,
            })
            .map(|&i| &self.services[usize::from(i)])
    }

    #[inline]
    pub fn is_vip(&self, addr: &[u8; 16]) -> bool {
        if self.services.len() <= 4 {
            return self
                .services
                .iter()
                .any(|s| s.vip == *addr && !s.is_vacant());
        }
        self.vips.contains_key(addr)
    }

    /// The nat services whose backends include `addr`:`port` over `proto` (empty if none).
    #[inline]
    pub fn nat_services_of(&self, addr: &[u8; 16], port: u16, proto: u8) -> &[u16] {
        if self.nat_sources.is_empty() {
            return &[];
        }
        self.nat_sources
            .get(&ServiceKey {
                vip: *addr,
                port,
                proto,
            })
            .map_or(&[], Vec::as_slice)
    }

    pub fn backend_by_name(&self, service: &str, backend: &str) -> Option<&Backend> {
        let s = self.services.iter().find(|s| s.name == service)?;
        s.backends
            .iter()
            .map(|&id| &self.backends[usize::from(id)])
            .find(|b| b.name == backend)
    }

    /// How other nodes know backend `id` (0 for none).
    pub fn tag_of(&self, id: u16) -> u32 {
        self.backends.get(usize::from(id)).map_or(0, |b| b.tag)
    }

    pub fn vip_addr(&self, s: &Service) -> IpAddr {
        crate::flow::key::bytes_addr(&s.vip, s.v6)
    }
}
