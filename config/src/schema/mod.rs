//! The TOML file as written: serde structs whose field names are the config keys. Addresses,
//! MACs and durations stay strings here so that validation can name the key of each bad one
//! and report every problem at once, not just the first.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct File {
    pub node: Option<Node>,
    pub eal: Option<Eal>,
    #[serde(default)]
    pub port: Vec<Port>,
    #[serde(default)]
    pub mempool: Mempool,
    #[serde(default)]
    pub workers: Workers,
    #[serde(default)]
    pub flows: Flows,
    #[serde(default)]
    pub control: Control,
    #[serde(default)]
    pub service: Vec<Service>,
    pub cluster: Option<Cluster>,
    pub health: Option<HealthFile>,
    pub qos: Option<QosFile>,
    pub metrics: Option<Metrics>,
    pub bgp: Option<Bgp>,
}

/// `[bgp]`: what tandem tells the node's BIRD 2 to announce.
#[derive(Debug, Deserialize)]
pub struct Bgp {
    pub bird_socket: Option<String>,
    pub routes4: Option<String>,
    pub routes6: Option<String>,
    pub min_healthy: Option<u32>,
    pub withdraw_grace: Option<String>,
}

/// `[metrics]`: the Prometheus endpoint, when wanted.
#[derive(Debug, Deserialize)]
pub struct Metrics {
    pub listen: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Node {
    pub id: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub struct Eal {
    #[serde(default)]
    pub args: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct Port {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub devargs: String,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    pub gateway: Option<String>,
    pub gateway6: Option<String>,
    pub mac: Option<String>,
    pub rx_descriptors: Option<u16>,
    pub tx_descriptors: Option<u16>,
    pub mtu: Option<u16>,
    pub kernel: Option<String>,
    pub max_neighbors: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct Mempool {
    pub mbufs: u32,
    pub cache: u32,
}

impl Default for Mempool {
    fn default() -> Self {
        Mempool {
            mbufs: 16383,
            cache: 256,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct Workers {
    pub cores: Vec<usize>,
    pub burst: usize,
    pub idle_sleep: String,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            cores: vec![1],
            burst: 32,
            idle_sleep: "50us".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct Flows {
    pub capacity: u32,
    pub capacity_v6: Option<u32>,
    pub tcp_syn_timeout: String,
    pub tcp_established_timeout: String,
    pub tcp_closing_timeout: String,
    pub udp_timeout: String,
    pub huge_pages: bool,
}

impl Default for Flows {
    fn default() -> Self {
        Flows {
            capacity: 65536,
            capacity_v6: None,
            tcp_syn_timeout: "10s".into(),
            tcp_established_timeout: "15m".into(),
            tcp_closing_timeout: "10s".into(),
            udp_timeout: "5m".into(),
            huge_pages: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct Control {
    pub socket: String,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            socket: "/run/tandem/tandem.sock".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Service {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub vip: String,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub mode: String,
    pub queue: Option<QueueFile>,
    pub admission: Option<AdmissionFile>,
    pub standby: Option<StandbyFile>,
    pub clamp_mss: Option<bool>,
    pub quic: Option<QuicFile>,
    #[serde(default)]
    pub backend: Vec<Backend>,
}

#[derive(Debug, Deserialize)]
pub struct Backend {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub address: String,
    pub port: Option<u16>,
    #[serde(default = "one")]
    pub weight: u32,
    pub state: Option<String>,
    pub max_flows: Option<u32>,
    pub standby: Option<bool>,
    pub server_id: Option<String>,
    #[serde(default)]
    pub paths: Vec<Path>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
pub struct Path {
    #[serde(default)]
    pub port: String,
    pub mac: Option<String>,
}

/// `[cluster]`: present only when this node is one of several.
#[derive(Debug, Deserialize)]
pub struct Cluster {
    pub secret_file: Option<String>,
    pub heartbeat: Option<String>,
    pub dead_after: Option<String>,
    pub forward_port: Option<u16>,
    pub drain_deadline: Option<String>,
    #[serde(default)]
    pub node: Vec<ClusterNode>,
}

#[derive(Debug, Deserialize)]
pub struct ClusterNode {
    #[serde(default)]
    pub id: u32,
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default)]
    pub address: String,
    pub mac: Option<String>,
    #[serde(default)]
    pub sync: String,
}

/// `[health]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct HealthFile {
    pub probe: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub down_after: Option<u32>,
    pub up_after: Option<u32>,
    pub on_backend_down: Option<String>,
}

/// `[qos]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct QosFile {
    pub window: Option<String>,
    pub period: Option<String>,
    pub selection: Option<String>,
    pub quantile: Option<f64>,
    pub exponent: Option<f64>,
    pub tolerance: Option<f64>,
    pub slack: Option<String>,
    pub min_factor: Option<f64>,
    pub min_samples: Option<u32>,
    pub timeout: Option<String>,
    pub slow_start: Option<String>,
    pub decay: Option<String>,
    pub probation: Option<String>,
}

/// A service's `queue = { ... }` as written.
#[derive(Debug, Deserialize)]
pub struct QueueFile {
    pub max_len: Option<u32>,
    pub max_wait: Option<String>,
}

/// A service's `[service.admission]` as written.
#[derive(Debug, Deserialize)]
pub struct AdmissionFile {
    pub limit: Option<String>,
    pub min_limit: Option<u32>,
    pub max_limit: Option<u32>,
    pub tolerance: Option<f64>,
    pub quantile: Option<f64>,
    pub min_interval: Option<String>,
}

/// A service's `standby = { ... }` as written.
#[derive(Debug, Deserialize)]
pub struct StandbyFile {
    pub p99_above: Option<String>,
    #[serde(rename = "for")]
    pub for_: Option<String>,
    pub recover_for: Option<String>,
    pub cooldown: Option<String>,
    pub healthy_below: Option<u32>,
    pub hook: Option<String>,
}

/// A service's `[service.quic]` as written.
#[derive(Debug, Deserialize)]
pub struct QuicFile {
    pub config_id: Option<u8>,
    pub server_id_len: Option<u8>,
    pub nonce_len: Option<u8>,
    pub key_file: Option<String>,
}
