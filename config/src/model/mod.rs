//! The validated configuration: what a node runs from, every value checked and every
//! default filled in (`crate::load` makes one from a file).

mod cluster;
mod qos;
mod quic;

pub use cluster::*;
pub use qos::*;
pub use quic::*;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    /// UDP whose short-header packets are routed by the server ID in their connection ID
    /// (`[service.quic]`).
    Quic,
}

impl Protocol {
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp | Protocol::Quic => 17,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Quic => "quic",
        }
    }
    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            "quic" => Some(Protocol::Quic),
            _ => None,
        }
    }
}

/// Every forwarding mode: the name a service's `mode` gives it, the packet core's file that
/// implements it (`dataplane/core/src/pipeline/xmit/FILE.rs`, a `Transmit`), and what the
/// rest of tandem asks of a mode, each a property here (the macro takes every one, so a
/// mode cannot leave one out):
///
/// - `translates`: the flow's addresses are rewritten, so its replies come back through the
///   node (to be rewritten back, timed, and looked up by their backend) and the node's
///   other workers need the flow from its first packet; ICMP errors about it are rewritten
///   too;
/// - `encapsulates`: the packet travels inside another, so it must fit the egress port's
///   MTU less the encapsulation;
/// - `port`: a backend's port when the config gives none: `vip` (the VIP's), or a number;
///   `keeps_vip_port`: the backend is reached at the VIP's port, so no other may be given
///   (and `show config` writes none);
/// - `tcp_probe`: a TCP health probe goes to the backend's port (false: the port is not a
///   TCP service, so the probe is an ICMP echo).
///
/// The one list of them: this crate makes the `Mode` enum of it, the packet core its
/// dispatch, so adding a mode is a line here and its file.
#[macro_export]
macro_rules! for_each_mode {
    ($then:ident) => {
        $then! {
            /// The destination rewritten to the backend; replies come back through the node.
            Nat => "nat" => nat::Nat {
                translates: true, encapsulates: false, port: vip, keeps_vip_port: false,
                tcp_probe: true,
            },
            /// Direct server return: the frame to the backend's MAC, unchanged at L3.
            Dsr => "dsr" => dsr::Dsr {
                translates: false, encapsulates: false, port: vip, keeps_vip_port: true,
                tcp_probe: true,
            },
            /// The client's packet inside UDP to the backend, which answers the client itself.
            Gue => "gue" => gue::Gue {
                translates: false, encapsulates: true, port: 6080, keeps_vip_port: false,
                tcp_probe: false,
            },
        }
    };
}

/// A mode's default backend port (`port:` in `for_each_mode!`): None for the VIP's.
macro_rules! default_port {
    (vip) => {
        None
    };
    ($n:literal) => {
        Some($n)
    };
}

macro_rules! mode_enum {
    ($($(#[doc = $doc:literal])* $v:ident => $name:literal => $m:ident :: $t:ident {
        translates: $translates:literal, encapsulates: $encapsulates:literal,
        port: $port:tt, keeps_vip_port: $keeps:literal, tcp_probe: $tcp_probe:literal $(,)?
    },)*) => {
        /// How a service's packets reach its backends.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Mode { $($(#[doc = $doc])* $v,)* }

        impl Mode {
            pub const ALL: &'static [Mode] = &[$(Mode::$v,)*];
            pub fn name(self) -> &'static str {
                match self { $(Mode::$v => $name,)* }
            }
            pub fn parse(s: &str) -> Option<Mode> {
                match s { $($name => Some(Mode::$v),)* _ => None }
            }
            /// The flow's addresses are rewritten and its replies come back through the node
            /// (see `for_each_mode!`).
            #[inline(always)]
            pub const fn translates(self) -> bool {
                match self { $(Mode::$v => $translates,)* }
            }
            /// The packet travels inside another (see `for_each_mode!`).
            #[inline(always)]
            pub const fn encapsulates(self) -> bool {
                match self { $(Mode::$v => $encapsulates,)* }
            }
            /// A backend's port when the config gives none; None: the VIP's.
            pub const fn default_port(self) -> Option<u16> {
                match self { $(Mode::$v => default_port!($port),)* }
            }
            /// The backend is reached at the VIP's port; no other may be given.
            pub const fn keeps_vip_port(self) -> bool {
                match self { $(Mode::$v => $keeps,)* }
            }
            /// A TCP health probe goes to the backend's port (else an ICMP echo).
            pub const fn tcp_probe(self) -> bool {
                match self { $(Mode::$v => $tcp_probe,)* }
            }
        }
    };
}

for_each_mode!(mode_enum);

impl Mode {
    /// "nat, dsr or gue".
    pub fn names() -> String {
        one_of(Mode::ALL.iter().map(|m| m.name()))
    }
}

/// "a, b or c".
pub(crate) fn one_of<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendState {
    Active,
    Draining,
    Standby,
    Down,
}

impl BackendState {
    pub fn name(self) -> &'static str {
        match self {
            BackendState::Active => "active",
            BackendState::Draining => "draining",
            BackendState::Standby => "standby",
            BackendState::Down => "down",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => BackendState::Active,
            "draining" => BackendState::Draining,
            "standby" => BackendState::Standby,
            "down" => BackendState::Down,
            _ => return None,
        })
    }
}

/// The UDP port a GUE backend listens on when its `port` is left out.
pub const DEFAULT_GUE_PORT: u16 = match Mode::Gue.default_port() {
    Some(p) => p,
    None => 0,
};

#[derive(Debug, Clone)]
pub struct Config {
    pub node_id: u32,
    pub eal_args: Vec<String>,
    pub ports: Vec<PortConfig>,
    pub mempool_mbufs: u32,
    pub mempool_cache: u32,
    pub workers: WorkersConfig,
    pub flows: FlowsConfig,
    pub control_socket: PathBuf,
    pub services: Vec<ServiceConfig>,
    /// `None` for a node on its own.
    pub cluster: Option<ClusterConfig>,
    pub health: HealthConfig,
    pub qos: QosConfig,
    /// Where Prometheus scrapes `/metrics` (`[metrics] listen`), when it does.
    pub metrics: Option<SocketAddr>,
    /// What the node's BIRD announces (`[bgp]`), when it announces.
    pub bgp: Option<BgpConfig>,
}

/// `[bgp]`: tandem speaks no BGP; it writes the VIPs to announce into BIRD's include files
/// and asks BIRD, over its control socket, to read them again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpConfig {
    pub bird_socket: PathBuf,
    /// `route VIP/32 blackhole;` per announced IPv4 VIP.
    pub routes4: PathBuf,
    /// The same for IPv6 VIPs (/128).
    pub routes6: PathBuf,
    /// A VIP is announced while its service has at least this many healthy backends.
    pub min_healthy: u32,
    /// On SIGTERM: withdraw, keep serving this long, then stop.
    pub withdraw_grace: Duration,
}

pub const DEFAULT_BIRD_SOCKET: &str = "/run/bird/bird.ctl";
pub const DEFAULT_ROUTES4: &str = "/run/tandem/bird-vips4.conf";
pub const DEFAULT_ROUTES6: &str = "/run/tandem/bird-vips6.conf";

#[derive(Debug, Clone)]
pub struct PortConfig {
    pub name: String,
    pub devargs: String,
    pub ipv4: Option<(Ipv4Addr, u8)>,
    pub ipv6: Option<(Ipv6Addr, u8)>,
    pub gateway: Option<Ipv4Addr>,
    pub gateway6: Option<Ipv6Addr>,
    pub mac: Option<[u8; 6]>,
    pub rx_descriptors: u16,
    pub tx_descriptors: u16,
    /// The largest IP packet the port sends: what encapsulation must fit in, and the MTU
    /// tandem's "too big" answers name.
    pub mtu: u16,
    /// The port's kernel twin (`kernel = "IFNAME"`): a TAP interface with the port's MAC and
    /// addresses through which the node's own traffic reaches the kernel (BGP, BFD, SSH).
    pub kernel: Option<String>,
    /// Most neighbors the node keeps on this port (next hops it needs, addresses it is
    /// resolving); past it, the oldest it is only resolving make room.
    pub max_neighbors: u32,
}

/// Neighbors per port unless configured: a small node's next hops and on-link clients,
/// about 100 KiB per port and worker.
pub const DEFAULT_MAX_NEIGHBORS: u32 = 1024;
/// The bounds of `max_neighbors`: room for a port's gateway, backends and peers, and no
/// more than a worker's table should hold per port.
pub const MIN_MAX_NEIGHBORS: u32 = 16;
pub const MAX_MAX_NEIGHBORS: u32 = 65_536;

/// A port's MTU unless configured.
pub const DEFAULT_MTU: u16 = 1500;
/// The smallest MTU a port may have: IPv6's minimum link MTU (RFC 8200), so every port can
/// carry either family.
pub const MIN_MTU: u16 = 1280;
/// The largest: what one mbuf holds (2048 bytes of data room) with the link header and a
/// VLAN tag; a frame in more than one mbuf is dropped (`too_big`).
pub const MAX_MTU: u16 = 2000;

impl PortConfig {
    /// True when the port reaches `a` with no fixed MAC: `a` is on its subnet, or the port
    /// has a gateway of `a`'s family.
    pub fn reaches(&self, a: IpAddr) -> bool {
        match a {
            IpAddr::V4(a) => {
                self.gateway.is_some()
                    || self.ipv4.is_some_and(|(x, len)| {
                        let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                        u32::from(a) & m == u32::from(x) & m
                    })
            }
            IpAddr::V6(a) => {
                self.gateway6.is_some()
                    || self.ipv6.is_some_and(|(x, len)| {
                        let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                        u128::from(a) & m == u128::from(x) & m
                    })
            }
        }
    }

    /// The DPDK device name: the devargs up to the first comma (`net_pcap0`).
    pub fn device_name(&self) -> &str {
        self.devargs.split(',').next().unwrap_or("")
    }
}

#[derive(Debug, Clone)]
pub struct WorkersConfig {
    pub cores: Vec<usize>,
    pub burst: usize,
    pub idle_sleep: Duration,
}

/// `flows.capacity_v6` when not given: a quarter of `flows.capacity` (at least 16).
pub fn default_capacity_v6(capacity: u32) -> u32 {
    (capacity / 4).max(16)
}

#[derive(Debug, Clone)]
pub struct FlowsConfig {
    /// IPv4 flows per worker.
    pub capacity: u32,
    /// IPv6 flows per worker (kept apart: their keys are 24 bytes longer).
    pub capacity_v6: u32,
    pub tcp_syn_timeout: Duration,
    pub tcp_established_timeout: Duration,
    pub tcp_closing_timeout: Duration,
    pub udp_timeout: Duration,
    /// Back the flow tables with transparent huge pages (one TLB entry per 2 MiB of table
    /// instead of per 4 KiB); false asks the kernel for small pages.
    pub huge_pages: bool,
}

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub name: String,
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub mode: Mode,
    pub backends: Vec<BackendConfig>,
    /// Where new flows wait when every backend is at its limit.
    pub queue: QueueConfig,
    /// Where the backends' limits come from (`max_flows`, or learned).
    pub admission: AdmissionConfig,
    pub standby: Option<StandbyConfig>,
    /// Lower the MSS of TCP SYNs this service's packets carry encapsulated (gue mode, or
    /// between cluster nodes) so the segments fit the encapsulation.
    pub clamp_mss: bool,
    /// QUIC-LB routing (`protocol = "quic"` only).
    pub quic: Option<QuicConfig>,
}

impl ServiceConfig {
    /// True when some backend has an admission limit, set or learned (so flows are counted
    /// and may wait).
    pub fn admission(&self) -> bool {
        self.admission.adaptive() || self.backends.iter().any(|b| b.max_flows > 0)
    }
}

#[derive(Debug, Clone)]
pub struct BackendConfig {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub weight: u32,
    pub state: BackendState,
    /// Most flows at once (0: no limit).
    pub max_flows: u32,
    pub paths: Vec<PathConfig>,
    /// The QUIC-LB server ID its connection IDs carry (a quic service's backends only).
    pub server_id: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct PathConfig {
    /// Index into [`Config::ports`].
    pub port: usize,
    pub mac: Option<[u8; 6]>,
}

/// Largest weight a backend may have (selection tables are built from weights).
pub const MAX_WEIGHT: u32 = 10_000;
/// CPU ids a worker may name (the system DPDK's RTE_MAX_LCORE).
pub const MAX_CPU: usize = 128;
/// Longest flow timeout: the flow table's clock is in milliseconds and wraps at 2^31.
pub const MAX_FLOW_TIMEOUT: Duration = Duration::from_secs(24 * 24 * 3600);
/// Most mbufs a mempool may be asked for.
pub const MAX_MBUFS: u32 = 1 << 24;
/// Most backends a node can hold over all services.
pub const MAX_BACKENDS: usize = 1024;
/// Most services a node can hold.
pub const MAX_SERVICES: usize = 256;
/// Most paths one backend may have.
pub const MAX_PATHS: usize = 8;
