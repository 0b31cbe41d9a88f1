//! From the parsed file to a checked [`Config`]. Every problem found is collected with the
//! key it concerns (`service[0].backend[1].paths[0].port`) so `check-config` can list them
//! all in one run.

use crate::cluster::ClusterConfig;
use crate::schema;
use crate::units::*;
use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

/// One thing wrong with a config: the key it concerns and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub why: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.why)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Nat,
    Dsr,
    Gue,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Nat => "nat",
            Mode::Dsr => "dsr",
            Mode::Gue => "gue",
        }
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
pub const DEFAULT_GUE_PORT: u16 = 6080;

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
    pub health: crate::HealthConfig,
    pub qos: crate::QosConfig,
}

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
}

impl PortConfig {
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
}

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub name: String,
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub mode: Mode,
    pub backends: Vec<BackendConfig>,
    /// Where new flows wait when every backend is at its `max_flows`.
    pub queue: crate::QueueConfig,
    pub standby: Option<crate::StandbyConfig>,
}

impl ServiceConfig {
    /// True when some backend has an admission limit (so flows are counted and may wait).
    pub fn admission(&self) -> bool {
        self.backends.iter().any(|b| b.max_flows > 0)
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

impl Config {
    /// Parses and validates TOML text; on failure, every problem found.
    pub fn from_toml(text: &str) -> Result<Config, Vec<Problem>> {
        let mut problems = Vec::new();
        let table: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                // A syntax error: nothing after it can be read. toml's message says where.
                problems.push(Problem {
                    key: "(file)".into(),
                    why: e.to_string().trim().replace('\n', " "),
                });
                return Err(problems);
            }
        };
        let (file, unknown) = read_schema(toml::Value::Table(table), &mut problems);
        let typed: HashSet<String> = problems.iter().map(|p| p.key.clone()).collect();
        for key in unknown {
            problems.push(Problem {
                key,
                why: "unknown key".into(),
            });
        }
        let Some(file) = file else {
            return Err(problems);
        };
        // A value of the wrong type was taken out and validation then sees it missing:
        // the type error already says what is wrong with that key.
        let mut checked = Vec::new();
        let cfg = validate(file, &mut checked);
        problems.extend(checked.into_iter().filter(|p| !typed.contains(&p.key)));
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(problems)
        }
    }

    pub fn from_path(path: &std::path::Path) -> Result<Config, Vec<Problem>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![Problem {
                key: path.display().to_string(),
                why: format!("cannot read: {e}"),
            }]
        })?;
        Config::from_toml(&text)
    }

    pub fn port_index(&self, name: &str) -> Option<usize> {
        self.ports.iter().position(|p| p.name == name)
    }
}

/// Most type errors reported from one file before reading stops.
const MAX_TYPE_ERRORS: usize = 100;

/// Reads the parsed file into the schema, reporting every value of the wrong type with its
/// key: each one found is taken out of the tree and the tree read again (serde stops at the
/// first error), so the rest of the file is still read and validated. Returns the schema (None
/// when a bad value could not be taken out) and the unknown keys.
fn read_schema(
    mut value: toml::Value,
    problems: &mut Vec<Problem>,
) -> (Option<schema::File>, Vec<String>) {
    let mut reported = HashSet::new();
    let mut file = None;
    for _ in 0..MAX_TYPE_ERRORS * 2 {
        match serde_path_to_error::deserialize::<_, schema::File>(value.clone()) {
            Ok(f) => {
                file = Some(f);
                break;
            }
            Err(e) => {
                let key = key_of(e.path());
                if reported.insert(key.clone()) {
                    let why = e.inner().to_string().trim().replace('\n', " ");
                    // toml appends its own (index-less) path: the key already says where.
                    let why = why.split(" in `").next().unwrap_or(&why).to_string();
                    problems.push(Problem { key, why });
                }
                if reported.len() > MAX_TYPE_ERRORS || !take_out(&mut value, e.path()) {
                    break;
                }
            }
        }
    }
    let mut unknown = Vec::new();
    let _: Result<schema::File, _> =
        serde_ignored::deserialize(value, |path| unknown.push(dotted_key(&path.to_string())));
    (file, unknown)
}

/// serde_ignored's `service.0.backend.1.colour` as validation writes keys.
fn dotted_key(path: &str) -> String {
    let mut key = String::new();
    for part in path.split('.') {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            key.push_str(&format!("[{part}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(part);
        }
    }
    key
}

/// A serde path as validation writes keys: `service[0].backend[1].port`.
fn key_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut key = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => key.push_str(&format!("[{index}]")),
            Segment::Map { key: k } | Segment::Enum { variant: k } => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(k);
            }
            Segment::Unknown => {}
        }
    }
    if key.is_empty() {
        key.push_str("(file)");
    }
    key
}

/// Takes the value at `path` out of the tree: a table's key is removed (the schema then uses
/// its default, and validation says what is missing); an array's element is first replaced
/// by an empty table (so later elements keep their indexes), and removed if that is wrong
/// too. False when there is nothing there to take out.
fn take_out(value: &mut toml::Value, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;
    let segs: Vec<&Segment> = path.iter().collect();
    let Some((last, parents)) = segs.split_last() else {
        return false;
    };
    let mut v = value;
    for seg in parents {
        v = match (seg, v) {
            (Segment::Seq { index }, toml::Value::Array(a)) => match a.get_mut(*index) {
                Some(x) => x,
                None => return false,
            },
            (Segment::Map { key }, toml::Value::Table(t)) => match t.get_mut(key.as_str()) {
                Some(x) => x,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, v) {
        (Segment::Map { key }, toml::Value::Table(t)) => t.remove(key.as_str()).is_some(),
        (Segment::Seq { index }, toml::Value::Array(a)) if *index < a.len() => {
            let empty = matches!(&a[*index], toml::Value::Table(t) if t.is_empty());
            if empty {
                a.remove(*index);
            } else {
                a[*index] = toml::Value::Table(toml::Table::new());
            }
            true
        }
        _ => false,
    }
}

/// Collects problems while values are read: a bad value is recorded with its key and the
/// default is used, so checking goes on and every problem is listed.
pub(crate) struct Checker<'a> {
    pub(crate) problems: &'a mut Vec<Problem>,
}

impl Checker<'_> {
    pub(crate) fn bad(&mut self, key: impl Into<String>, why: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            why: why.into(),
        });
    }
    /// A duration that may be left out (then `dflt`) and must lie from `lo` to `hi`. A bad
    /// or out-of-range value is reported and `dflt` used, so whatever is computed from the
    /// result later (sums, products, deadlines) stays in range.
    pub(crate) fn duration_in(
        &mut self,
        key: &str,
        s: Option<&str>,
        dflt: Duration,
        (lo, hi): (Duration, Duration),
    ) -> Duration {
        match s.map(parse_duration) {
            None => dflt,
            Some(Ok(d)) if d >= lo && d <= hi => d,
            Some(Ok(_)) => {
                self.bad(
                    key,
                    format!(
                        "\"{}\" is out of range: must be from {} to {}",
                        s.unwrap_or_default().trim(),
                        format_duration(lo),
                        format_duration(hi)
                    ),
                );
                dflt
            }
            Some(Err(e)) => {
                self.bad(key, e);
                dflt
            }
        }
    }
    /// A number from `lo` to `hi` that may be left out (then `dflt`).
    pub(crate) fn fraction(
        &mut self,
        key: &str,
        v: Option<f64>,
        lo: f64,
        hi: f64,
        dflt: f64,
    ) -> f64 {
        match v {
            None => dflt,
            Some(x) if x.is_finite() && x >= lo && x <= hi => x,
            Some(x) => {
                self.bad(key, format!("{x} is not from {lo} to {hi}"));
                dflt
            }
        }
    }
}

fn validate(file: schema::File, problems: &mut Vec<Problem>) -> Config {
    let mut c = Checker { problems };
    let node_id = match &file.node {
        Some(schema::Node { id: Some(id) }) => *id,
        Some(_) => {
            c.bad("node.id", "is required: this node's number in the cluster");
            0
        }
        None => {
            c.bad("node", "missing section [node] (needs id)");
            0
        }
    };
    let eal_args = match file.eal {
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
    if file.port.is_empty() {
        c.bad("port", "at least one [[port]] is needed");
    }

    let mut ports = Vec::new();
    let mut names = HashSet::new();
    let mut devs = HashSet::new();
    for (i, p) in file.port.iter().enumerate() {
        let k = format!("port[{i}]");
        if p.name.is_empty() {
            c.bad(format!("{k}.name"), "must not be empty");
        }
        if !names.insert(p.name.clone()) {
            c.bad(
                format!("{k}.name"),
                format!("duplicate port name \"{}\"", p.name),
            );
        }
        let dev = p.devargs.split(',').next().unwrap_or("").to_string();
        if dev.is_empty() {
            c.bad(
                format!("{k}.devargs"),
                "must name a device, like net_pcap0,rx_pcap=...",
            );
        } else if !devs.insert(dev.clone()) {
            c.bad(
                format!("{k}.devargs"),
                format!("device \"{dev}\" is used by two ports"),
            );
        }
        let ipv4 = p.ipv4.as_deref().and_then(|s| match parse_cidr4(s) {
            Ok((a, _)) if not_a_host(a.into()).is_some() => {
                c.bad(
                    format!("{k}.ipv4"),
                    not_a_host(a.into()).unwrap_or_default(),
                );
                None
            }
            Ok((_, 0)) => {
                c.bad(
                    format!("{k}.ipv4"),
                    "a /0 subnet puts every address on this port's link; give the real prefix",
                );
                None
            }
            Ok(v) => Some(v),
            Err(e) => {
                c.bad(format!("{k}.ipv4"), e);
                None
            }
        });
        let ipv6 = p.ipv6.as_deref().and_then(|s| match parse_cidr6(s) {
            Ok((a, _)) if not_a_host(a.into()).is_some() => {
                c.bad(
                    format!("{k}.ipv6"),
                    not_a_host(a.into()).unwrap_or_default(),
                );
                None
            }
            Ok((_, 0)) => {
                c.bad(
                    format!("{k}.ipv6"),
                    "a /0 subnet puts every address on this port's link; give the real prefix",
                );
                None
            }
            Ok(v) => Some(v),
            Err(e) => {
                c.bad(format!("{k}.ipv6"), e);
                None
            }
        });
        let gateway = p
            .gateway
            .as_deref()
            .and_then(|s| match s.parse::<Ipv4Addr>() {
                Ok(g) => {
                    match ipv4 {
                        Some((a, _)) if a == g => {
                            c.bad(format!("{k}.gateway"), "is the port's own address")
                        }
                        Some((a, l)) if in_subnet4(g, a, l) => {}
                        Some(_) => {
                            c.bad(format!("{k}.gateway"), "is not on the port's ipv4 subnet")
                        }
                        None => c.bad(format!("{k}.gateway"), "needs the port's ipv4 address"),
                    }
                    Some(g)
                }
                Err(_) => {
                    c.bad(
                        format!("{k}.gateway"),
                        format!("\"{s}\" is not an IPv4 address"),
                    );
                    None
                }
            });
        let gateway6 = p
            .gateway6
            .as_deref()
            .and_then(|s| match s.parse::<Ipv6Addr>() {
                Ok(g) => {
                    match ipv6 {
                        Some((a, _)) if a == g => {
                            c.bad(format!("{k}.gateway6"), "is the port's own address")
                        }
                        Some((a, l)) if in_subnet6(g, a, l) => {}
                        Some(_) => {
                            c.bad(format!("{k}.gateway6"), "is not on the port's ipv6 subnet")
                        }
                        None => c.bad(format!("{k}.gateway6"), "needs the port's ipv6 address"),
                    }
                    Some(g)
                }
                Err(_) => {
                    c.bad(
                        format!("{k}.gateway6"),
                        format!("\"{s}\" is not an IPv6 address"),
                    );
                    None
                }
            });
        let mac = p.mac.as_deref().and_then(|s| match parse_mac(s) {
            Ok(m) if not_a_station(&m).is_some() => {
                c.bad(format!("{k}.mac"), not_a_station(&m).unwrap_or_default());
                None
            }
            Ok(m) => Some(m),
            Err(e) => {
                c.bad(format!("{k}.mac"), e);
                None
            }
        });
        let desc = |c: &mut Checker, key: &str, v: Option<u16>| -> u16 {
            let v = v.unwrap_or(1024);
            if !(64..=16384).contains(&v) || !v.is_power_of_two() {
                c.bad(
                    format!("{k}.{key}"),
                    "must be a power of two from 64 to 16384",
                );
            }
            v
        };
        let rx_descriptors = desc(&mut c, "rx_descriptors", p.rx_descriptors);
        let tx_descriptors = desc(&mut c, "tx_descriptors", p.tx_descriptors);
        ports.push(PortConfig {
            name: p.name.clone(),
            devargs: p.devargs.clone(),
            ipv4,
            ipv6,
            gateway,
            gateway6,
            mac,
            rx_descriptors,
            tx_descriptors,
        });
    }

    if !(1024..=MAX_MBUFS).contains(&file.mempool.mbufs) {
        c.bad("mempool.mbufs", format!("must be from 1024 to {MAX_MBUFS}"));
    }
    if file.mempool.cache > 512 {
        c.bad(
            "mempool.cache",
            "must be at most 512 (DPDK's per-lcore cache limit)",
        );
    }

    let w = &file.workers;
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

    let f = &file.flows;
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
    let flows = FlowsConfig {
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
    };

    if file.control.socket.is_empty() {
        c.bad("control.socket", "must be a path");
    }

    let mut services = Vec::new();
    let mut svc_names = HashSet::new();
    let mut vips = HashSet::new();
    let mut total_backends = 0;
    for (i, s) in file.service.iter().enumerate() {
        let k = format!("service[{i}]");
        if s.name.is_empty() || s.name.contains(char::is_whitespace) {
            c.bad(format!("{k}.name"), "must be a non-empty word");
        }
        if !svc_names.insert(s.name.clone()) {
            c.bad(
                format!("{k}.name"),
                format!("duplicate service name \"{}\"", s.name),
            );
        }
        let vip = match parse_ip(&s.vip) {
            Ok(v) => {
                if let Some(why) = not_a_host(v) {
                    c.bad(format!("{k}.vip"), why);
                }
                Some(v)
            }
            Err(e) => {
                c.bad(format!("{k}.vip"), e);
                None
            }
        };
        let protocol = match s.protocol.as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => {
                c.bad(
                    format!("{k}.protocol"),
                    format!("\"{other}\" is not tcp or udp"),
                );
                Protocol::Tcp
            }
        };
        let mode = match s.mode.as_str() {
            "nat" => Mode::Nat,
            "dsr" => Mode::Dsr,
            "gue" => Mode::Gue,
            other => {
                c.bad(
                    format!("{k}.mode"),
                    format!("\"{other}\" is not nat, dsr or gue"),
                );
                Mode::Nat
            }
        };
        if s.port == 0 {
            c.bad(format!("{k}.port"), "must be from 1 to 65535");
        }
        if let Some(v) = vip {
            if !vips.insert((v, s.port, protocol)) {
                c.bad(
                    format!("{k}.vip"),
                    format!(
                        "duplicate VIP: {v} port {} {} is already a service",
                        s.port,
                        protocol.name()
                    ),
                );
            }
            for (pi, p) in ports.iter().enumerate() {
                let clash = match v {
                    IpAddr::V4(a) => p.ipv4.map(|x| x.0) == Some(a),
                    IpAddr::V6(a) => p.ipv6.map(|x| x.0) == Some(a),
                };
                if clash {
                    c.bad(format!("{k}.vip"), format!("is port[{pi}]'s own address"));
                }
            }
        }
        if s.backend.is_empty() {
            c.bad(
                format!("{k}.backend"),
                "a service needs at least one [[service.backend]]",
            );
        }
        let mut backends = Vec::new();
        let mut bnames = HashSet::new();
        for (j, b) in s.backend.iter().enumerate() {
            let bk = format!("{k}.backend[{j}]");
            total_backends += 1;
            if b.name.is_empty() || b.name.contains(char::is_whitespace) {
                c.bad(format!("{bk}.name"), "must be a non-empty word");
            }
            if !bnames.insert(b.name.clone()) {
                c.bad(
                    format!("{bk}.name"),
                    format!("duplicate backend name \"{}\" in service", b.name),
                );
            }
            let address = match parse_ip(&b.address) {
                Ok(a) => {
                    if let Some(why) = not_a_host(a) {
                        c.bad(format!("{bk}.address"), why);
                    } else if let Some(pi) = ports.iter().position(|p| {
                        p.ipv4.map(|x| IpAddr::V4(x.0)) == Some(a)
                            || p.ipv6.map(|x| IpAddr::V6(x.0)) == Some(a)
                    }) {
                        c.bad(
                            format!("{bk}.address"),
                            format!("is port[{pi}]'s own address (this node, not a backend)"),
                        );
                    }
                    if let Some(v) = vip {
                        if a.is_ipv4() != v.is_ipv4() {
                            c.bad(
                                format!("{bk}.address"),
                                "must be of the VIP's address family",
                            );
                        }
                    }
                    a
                }
                Err(e) => {
                    c.bad(format!("{bk}.address"), e);
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                }
            };
            let port = match (mode, b.port) {
                (Mode::Dsr, Some(p)) if p != s.port => {
                    c.bad(
                        format!("{bk}.port"),
                        "dsr keeps the VIP's port; leave port out",
                    );
                    s.port
                }
                (Mode::Dsr, _) => s.port,
                (Mode::Nat, p) => p.unwrap_or(s.port),
                (Mode::Gue, p) => p.unwrap_or(DEFAULT_GUE_PORT),
            };
            if port == 0 {
                c.bad(format!("{bk}.port"), "must be from 1 to 65535");
            }
            if b.weight > MAX_WEIGHT {
                c.bad(format!("{bk}.weight"), format!("at most {MAX_WEIGHT}"));
            }
            let state = match b.state.as_deref() {
                None if b.standby == Some(true) => BackendState::Standby,
                None => BackendState::Active,
                Some(st) => BackendState::parse(st).unwrap_or_else(|| {
                    c.bad(
                        format!("{bk}.state"),
                        format!("\"{st}\" is not active, draining, standby or down"),
                    );
                    BackendState::Active
                }),
            };
            if b.standby == Some(true) && state != BackendState::Standby {
                c.bad(
                    format!("{bk}.standby"),
                    format!("contradicts state = \"{}\"", state.name()),
                );
            }
            let max_flows = b.max_flows.unwrap_or(0);
            if b.max_flows == Some(0) {
                c.bad(
                    format!("{bk}.max_flows"),
                    "must be at least 1 (leave it out for no limit)",
                );
            }
            if b.paths.is_empty() {
                c.bad(format!("{bk}.paths"), "a backend needs at least one path");
            }
            if b.paths.len() > MAX_PATHS {
                c.bad(format!("{bk}.paths"), format!("at most {MAX_PATHS} paths"));
            }
            let mut paths = Vec::new();
            for (pi, p) in b.paths.iter().enumerate() {
                let pk = format!("{bk}.paths[{pi}]");
                let Some(idx) = ports.iter().position(|x| x.name == p.port) else {
                    c.bad(
                        format!("{pk}.port"),
                        format!("no [[port]] is named \"{}\"", p.port),
                    );
                    continue;
                };
                let mac = p.mac.as_deref().and_then(|m| match parse_mac(m) {
                    Ok(m) if not_a_station(&m).is_some() => {
                        c.bad(format!("{pk}.mac"), not_a_station(&m).unwrap_or_default());
                        None
                    }
                    Ok(m) => Some(m),
                    Err(e) => {
                        c.bad(format!("{pk}.mac"), e);
                        None
                    }
                });
                let port_cfg = &ports[idx];
                let has_family = match address {
                    IpAddr::V4(_) => port_cfg.ipv4.is_some(),
                    IpAddr::V6(_) => port_cfg.ipv6.is_some(),
                };
                if !has_family && (mac.is_none() || mode != Mode::Dsr) {
                    c.bad(
                        format!("{pk}.port"),
                        format!(
                            "port \"{}\" has no {} address to reach the backend from",
                            p.port,
                            if address.is_ipv4() { "ipv4" } else { "ipv6" }
                        ),
                    );
                }
                if paths
                    .iter()
                    .any(|x: &PathConfig| x.port == idx && x.mac == mac)
                {
                    c.bad(pk, "duplicate path");
                    continue;
                }
                paths.push(PathConfig { port: idx, mac });
            }
            backends.push(BackendConfig {
                name: b.name.clone(),
                address,
                port,
                weight: b.weight,
                state,
                max_flows,
                paths,
            });
        }
        let queue = s
            .queue
            .as_ref()
            .map(|q| crate::qos::queue(&k, q, c.problems))
            .unwrap_or_default();
        let standby = s
            .standby
            .as_ref()
            .map(|sb| crate::qos::standby(&k, sb, c.problems));
        if standby.is_some() && !backends.iter().any(|b| b.state == BackendState::Standby) {
            c.bad(
                format!("{k}.standby"),
                "no backend of this service is a standby (standby = true)",
            );
        }
        services.push(ServiceConfig {
            name: s.name.clone(),
            vip: vip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            port: s.port,
            protocol,
            mode,
            backends,
            queue,
            standby,
        });
    }
    // A backend at a VIP (its own service's or another's) would send its flows back into
    // this node.
    for (i, svc) in services.iter().enumerate() {
        for (j, b) in svc.backends.iter().enumerate() {
            let why = if b.address.is_unspecified() {
                continue; // unparsed, or refused above
            } else if b.address == svc.vip {
                "is the service's own VIP".to_string()
            } else if let Some(o) = services.iter().position(|x| x.vip == b.address) {
                format!("is service[{o}]'s VIP (this node, not a backend)")
            } else {
                continue;
            };
            c.bad(format!("service[{i}].backend[{j}].address"), why);
        }
    }
    if file.service.len() > MAX_SERVICES {
        c.bad("service", format!("at most {MAX_SERVICES} services"));
    }
    if total_backends > MAX_BACKENDS {
        c.bad(
            "service",
            format!("at most {MAX_BACKENDS} backends over all services"),
        );
    }

    let cluster = file
        .cluster
        .as_ref()
        .map(|cl| crate::cluster::validate(cl, node_id, &ports, c.problems));
    let health = crate::qos::health(file.health.as_ref(), c.problems);
    let qos = crate::qos::qos(file.qos.as_ref(), c.problems);
    Config {
        node_id,
        eal_args,
        ports,
        mempool_mbufs: file.mempool.mbufs,
        mempool_cache: file.mempool.cache,
        workers: WorkersConfig {
            cores: w.cores.clone(),
            burst: w.burst,
            idle_sleep,
        },
        flows,
        control_socket: PathBuf::from(&file.control.socket),
        services,
        cluster,
        health,
        qos,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[node]
id = 1
[eal]
args = ["--no-huge"]
[[port]]
name = "front"
devargs = "net_null0"
ipv4 = "10.0.0.1/24"
gateway = "10.0.0.254"
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
weight = 2
paths = [{ port = "back", mac = "02:00:00:00:01:11" }]
"#;

    #[test]
    fn good_config_parses_with_defaults() {
        let c = Config::from_toml(GOOD).unwrap();
        assert_eq!(c.workers.burst, 32);
        assert_eq!(c.services[0].backends[0].paths[0].port, 1);
        assert_eq!(c.flows.udp_timeout, Duration::from_secs(300));
    }

    fn problems(text: &str) -> Vec<Problem> {
        Config::from_toml(text).unwrap_err()
    }

    #[test]
    fn every_problem_is_listed_with_its_key() {
        let bad = GOOD
            .replace(
                "gateway = \"10.0.0.254\"",
                "gateway = \"10.0.0.254\"\ncolour = \"red\"",
            )
            .replace("vip = \"192.0.2.10\"", "vip = \"192.0.2.300\"")
            .replace("{ port = \"back\", mac", "{ port = \"nowhere\", mac");
        let p = problems(&bad);
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"port[0].colour"), "{p:?}");
        assert!(keys.contains(&"service[0].vip"), "{p:?}");
        assert!(
            keys.contains(&"service[0].backend[0].paths[0].port"),
            "{p:?}"
        );
    }

    #[test]
    fn duplicate_vip_and_pathless_backend() {
        let mut text = GOOD.to_string();
        text.push_str(
            r#"
[[service]]
name = "web2"
vip = "192.0.2.10"
port = 80
protocol = "tcp"
mode = "dsr"
[[service.backend]]
name = "b"
address = "10.1.0.12"
"#,
        );
        let p = problems(&text);
        assert!(
            p.iter()
                .any(|p| p.key == "service[1].vip" && p.why.contains("duplicate VIP")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|p| p.key == "service[1].backend[0].paths"),
            "{p:?}"
        );
    }

    #[test]
    fn qos_sections_as_written_and_their_problems() {
        let text = GOOD.to_string()
            + r#"
[health]
probe = "tcp"
interval = "500ms"
timeout = "1s"
down_after = 3
up_after = 2
[qos]
window = "10s"
"#;
        let text = text.replace(
            "mode = \"nat\"\n",
            "mode = \"nat\"\nqueue = { max_len = 1024, max_wait = \"2s\" }\n\
             standby = { p99_above = \"50ms\", for = \"5s\", recover_for = \"30s\", hook = \"/usr/local/bin/provision\" }\n",
        ) + r#"
[[service.backend]]
name = "spare"
address = "10.1.0.19"
max_flows = 4
standby = true
paths = [{ port = "back" }]
"#;
        let c = Config::from_toml(&text).unwrap();
        assert_eq!(c.health.probe, crate::ProbeMethod::Tcp);
        assert_eq!(c.health.down_after, 3);
        assert_eq!(c.qos.window, Duration::from_secs(10));
        assert_eq!(c.qos.slots(), 20);
        let s = &c.services[0];
        assert_eq!(s.queue.max_len, 1024);
        assert_eq!(s.queue.max_wait, Duration::from_secs(2));
        let sb = s.standby.as_ref().unwrap();
        assert_eq!(sb.p99_above, Some(Duration::from_millis(50)));
        assert_eq!(sb.recover_for, Duration::from_secs(30));
        assert_eq!(s.backends[1].state, BackendState::Standby);
        assert_eq!(s.backends[1].max_flows, 4);
        assert!(s.admission());
        // No [health]: no probes.
        assert_eq!(
            Config::from_toml(GOOD).unwrap().health.probe,
            crate::ProbeMethod::None
        );
        let bad = text
            .replace("probe = \"tcp\"", "probe = \"udp\"")
            .replace(
                "window = \"10s\"",
                "window = \"10s\"\nselection = \"random\"\nquantile = 2.0",
            )
            .replace("max_len = 1024", "max_len = 0")
            .replace("max_flows = 4", "max_flows = 0")
            .replace("for = \"5s\"", "for = \"soon\"");
        let p = problems(&bad);
        for key in [
            "health.probe",
            "qos.selection",
            "qos.quantile",
            "service[0].queue.max_len",
            "service[0].standby.for",
            "service[0].backend[1].max_flows",
        ] {
            assert!(p.iter().any(|x| x.key == key), "{key}: {p:?}");
        }
        // A standby section with no standby backend says so.
        let lonely = text.replace("standby = true\n", "");
        assert!(problems(&lonely)
            .iter()
            .any(|x| x.key == "service[0].standby" && x.why.contains("no backend")));
    }

    #[test]
    fn type_errors_are_each_reported_with_the_rest_of_the_file() {
        let bad = GOOD
            .replace("id = 1", "id = \"one\"")
            .replace("port = 80\n", "port = \"http\"\n")
            .replace("weight = 2", "weight = -2\nflavour = 1")
            .replace("vip = \"192.0.2.10\"", "vip = \"192.0.2.300\"");
        let p = problems(&bad);
        for key in [
            "node.id",
            "service[0].port",
            "service[0].backend[0].weight",
            "service[0].backend[0].flavour",
            "service[0].vip",
        ] {
            assert!(p.iter().any(|x| x.key == key), "{key} missing from {p:?}");
        }
        assert!(p.iter().all(|x| x.key != "(file)"), "{p:?}");
        // An element of the wrong type in an array keeps the indexes of the others.
        let bad = GOOD.replace(
            "paths = [{ port = \"back\", mac = \"02:00:00:00:01:11\" }]",
            "paths = [7, { port = \"nowhere\" }]",
        );
        let p = problems(&bad);
        assert!(
            p.iter().any(|x| x.key == "service[0].backend[0].paths[0]"),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|x| x.key == "service[0].backend[0].paths[1].port"),
            "{p:?}"
        );
    }

    #[test]
    fn missing_keys_are_named() {
        let bad = GOOD
            .replace("id = 1\n", "")
            .replace("address = \"10.1.0.11\"\n", "")
            .replace("devargs = \"net_null1\"\n", "");
        let p = problems(&bad);
        for key in [
            "node.id",
            "service[0].backend[0].address",
            "port[1].devargs",
        ] {
            assert!(p.iter().any(|x| x.key == key), "{key} missing from {p:?}");
        }
    }

    #[test]
    fn huge_and_tiny_values_are_refused_with_their_range() {
        for (from, to, key) in [
            (
                "[[port]]\nname = \"front\"",
                "[flows]\ntcp_established_timeout = \"99999999h\"\n[[port]]\nname = \"front\"",
                "flows.tcp_established_timeout",
            ),
            (
                "[[port]]\nname = \"front\"",
                "[flows]\nudp_timeout = \"25d\"\n[[port]]\nname = \"front\"",
                "flows.udp_timeout",
            ),
            (
                "[[port]]\nname = \"front\"",
                "[health]\ninterval = \"99999999999999999h\"\n[[port]]\nname = \"front\"",
                "health.interval",
            ),
            (
                "[[port]]\nname = \"front\"",
                "[workers]\nidle_sleep = \"2h\"\n[[port]]\nname = \"front\"",
                "workers.idle_sleep",
            ),
            (
                "[[port]]\nname = \"front\"",
                "[qos]\nperiod = \"18446744073709551615s\"\n[[port]]\nname = \"front\"",
                "qos.period",
            ),
        ] {
            let p = problems(&GOOD.replacen(from, to, 1));
            assert!(p.iter().any(|x| x.key == key), "{key}: {p:?}");
        }
        let p = problems(&GOOD.replacen(
            "[[port]]\nname = \"front\"",
            "[flows]\nudp_timeout = \"30d\"\n[[port]]\nname = \"front\"",
            1,
        ));
        let why = &p.iter().find(|x| x.key == "flows.udp_timeout").unwrap().why;
        assert!(why.contains("from 100ms to 24d"), "{why}");
    }

    #[test]
    fn nonsense_addresses_are_refused() {
        for (from, to, key) in [
            (
                "address = \"10.1.0.11\"",
                "address = \"0.0.0.0\"",
                "service[0].backend[0].address",
            ),
            (
                "address = \"10.1.0.11\"",
                "address = \"127.0.0.1\"",
                "service[0].backend[0].address",
            ),
            (
                "address = \"10.1.0.11\"",
                "address = \"192.0.2.10\"",
                "service[0].backend[0].address",
            ),
            (
                "address = \"10.1.0.11\"",
                "address = \"10.1.0.1\"",
                "service[0].backend[0].address",
            ),
            (
                "ipv4 = \"10.1.0.1/24\"",
                "ipv4 = \"10.1.0.1/0\"",
                "port[1].ipv4",
            ),
            (
                "mac = \"02:00:00:00:01:11\"",
                "mac = \"00:00:00:00:00:00\"",
                "service[0].backend[0].paths[0].mac",
            ),
            (
                "mac = \"02:00:00:00:01:11\"",
                "mac = \"ff:ff:ff:ff:ff:ff\"",
                "service[0].backend[0].paths[0].mac",
            ),
            (
                "vip = \"192.0.2.10\"",
                "vip = \"127.0.0.5\"",
                "service[0].vip",
            ),
        ] {
            let p = problems(&GOOD.replace(from, to));
            assert!(p.iter().any(|x| x.key == key), "{to}: {p:?}");
        }
    }

    #[test]
    fn syntax_errors_are_reported() {
        let p = problems("[node\nid = 1");
        assert_eq!(p.len(), 1);
    }

    use proptest::prelude::*;

    /// Values a careless operator or a fuzzer puts where a config value goes.
    fn wild_value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("\"18446744073709551615s\"".to_string()),
            Just("\"99999999999999999h\"".to_string()),
            Just("\"0us\"".to_string()),
            Just("\"1us\"".to_string()),
            Just("18446744073709551615".to_string()),
            Just("-1".to_string()),
            Just("0".to_string()),
            Just("4294967296".to_string()),
            Just("\"\"".to_string()),
            Just("[]".to_string()),
            Just("{}".to_string()),
            Just("1e308".to_string()),
            Just("nan".to_string()),
            Just("\"0.0.0.0\"".to_string()),
            Just("\"::/0\"".to_string()),
            Just("\"00:00:00:00:00:00\"".to_string()),
            (0u64..u64::MAX).prop_map(|n| n.to_string()),
            (
                0u64..100_000,
                prop_oneof![Just("us"), Just("ms"), Just("s"), Just("m"), Just("h")]
            )
                .prop_map(|(n, u)| format!("\"{n}{u}\"")),
            "[ -~]{0,12}".prop_map(|s| format!("{s:?}")),
        ]
    }

    fn example(name: &str) -> String {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/");
        std::fs::read_to_string(format!("{dir}{name}")).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any value in place of any value of an example config, or a line dropped: the
        /// checker answers (Ok or keyed problems), never panics.
        #[test]
        fn mutated_example_configs_never_panic(
            which in 0usize..5,
            line in 0usize..200,
            value in wild_value(),
            drop_line in any::<bool>(),
        ) {
            let names = ["design-brief.toml", "cluster-node1.toml", "dsr-gue-ipv6.toml",
                "pcap-replay.toml", "qos.toml"];
            let text = example(names[which]);
            let lines: Vec<&str> = text.lines().collect();
            let i = line % lines.len().max(1);
            let mut out = Vec::new();
            for (j, l) in lines.iter().enumerate() {
                if j != i {
                    out.push(l.to_string());
                } else if !drop_line {
                    match l.split_once('=') {
                        Some((k, _)) if !l.trim_start().starts_with('#') => {
                            out.push(format!("{k}= {value}"))
                        }
                        _ => out.push(l.to_string()),
                    }
                }
            }
            let text = out.join("\n");
            if let Err(p) = Config::from_toml(&text) {
                prop_assert!(!p.is_empty());
                for x in p {
                    prop_assert!(!x.key.is_empty() && !x.why.is_empty());
                }
            }
        }
    }
}
