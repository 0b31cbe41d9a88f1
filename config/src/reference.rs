//! Every key a node's file takes, with its default, its range, whether a reload changes it
//! and what it does: the source of the tables in `docs/configuration.md`. The tables are
//! written from this list (`reference_tests` compares them and rewrites them with
//! `TANDEM_BLESS=1`), and tests hold the list to the code: its keys are the schema's, its
//! defaults are what `to_toml` writes when a key is left out, its ranges are where
//! validation starts and stops refusing, and (in `tandem-control`) its reload column is what
//! a reload does.

/// What a key is when it is left out.
#[derive(Debug, Clone, Copy)]
pub enum Absent {
    /// This value, as `show config` writes it (TOML).
    Is(&'static str),
    /// The key must be given.
    Required,
    /// Left out, the thing is not there: what that means.
    Unset(&'static str),
    /// Follows from another key: how.
    From(&'static str),
}

/// The values a key takes.
#[derive(Debug, Clone, Copy)]
pub enum Range {
    /// Whole numbers from..=to.
    Int(i64, i64),
    /// Powers of two from..=to.
    Pow2(i64, i64),
    /// Numbers from..=to.
    Float(f64, f64),
    /// Durations from..=to, in the file's notation.
    Dur(&'static str, &'static str),
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// Said in words (a bound that depends on another key, an address, a path).
    Words(&'static str),
}

/// What a reload does with a changed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// Applied by `reload` without a flow lost.
    Live,
    /// `reload` refuses it, naming the key: it takes a restart.
    Restart,
    /// What a running service or backend is: `reload` refuses a change; add a new one
    /// under another name and remove this one.
    Fixed,
    /// Services and backends are matched by name: a new name is a new one, the old one
    /// drains.
    Name,
}

/// One key of the file.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The section and key, dotted: `service.backend.weight`.
    pub path: &'static str,
    pub default: Absent,
    pub range: Range,
    pub reload: Reload,
    /// What it does, one sentence or two (Markdown).
    pub about: &'static str,
}

impl Key {
    /// The section part of the path: `service.backend`.
    pub fn section(&self) -> &'static str {
        self.path.rsplit_once('.').map_or("", |(s, _)| s)
    }

    /// The key's own name: `weight`.
    pub fn name(&self) -> &'static str {
        self.path.rsplit_once('.').map_or(self.path, |(_, k)| k)
    }
}

use Absent::*;
use Range::*;
use Reload::*;

const fn key(
    path: &'static str,
    default: Absent,
    range: Range,
    reload: Reload,
    about: &'static str,
) -> Key {
    Key {
        path,
        default,
        range,
        reload,
        about,
    }
}

const TIMEOUT: Range = Dur("100ms", "24d");
const DAY: Range = Dur("0us", "1d");
const NAME: Range =
    Words("1–63 ASCII letters, digits, `-`, `_`, `.`; starts with a letter or digit; unique");
const ABS_PATH: Range = Words("an absolute path");

/// Every key, section by section in the order the reference gives them.
#[rustfmt::skip]
pub const KEYS: &[Key] = &[
    key("node.id", Required, Words("a number; in a cluster, 1–65535"), Restart,
        "This node's number; in a cluster, its `[[cluster.node]]` entry."),
    key("eal.args", Required, Words("DPDK EAL arguments; no core lists"), Restart,
        "Passed to the EAL as given. tandem adds `--lcores` (the control thread on a CPU no worker uses, one lcore per worker) and a `--vdev` per `net_*` port itself."),
    key("port.name", Required, NAME, Restart,
        "What services, paths and commands call the port."),
    key("port.devargs", Required, Words("a DPDK vdev or a PCI address"), Restart,
        "The device: `net_af_packet0,iface=X`, `net_pcap0,rx_pcap=...`, `net_memif0,...`, `net_null0`, or a PCI address. A vdev is checked as DPDK 22.11 would check it (its driver, keys and their kinds), a PCI device's keys for syntax only. A port needs one queue per worker (`net_af_packet` takes `qpairs=N`)."),
    key("port.ipv4", Unset("no IPv4"), Words("address/prefix, not /0"), Restart,
        "The port's own address and subnet; the node answers ARP and ICMP echo for it."),
    key("port.ipv6", Unset("no IPv6"), Words("address/prefix, not /0"), Restart,
        "The port's own address and subnet; the node answers neighbor solicitations and ICMPv6 echo for it."),
    key("port.gateway", Unset("none: off-subnet addresses unreachable"), Words("another host on the port's IPv4 subnet"), Restart,
        "The next hop for IPv4 addresses off the port's subnet."),
    key("port.gateway6", Unset("none: off-subnet addresses unreachable"), Words("another host on the port's IPv6 subnet"), Restart,
        "The next hop for IPv6 addresses off the port's subnet."),
    key("port.mac", Unset("the device's"), Words("a unicast MAC, not all zeros"), Restart,
        "Sets the port's MAC."),
    key("port.rx_descriptors", Is("1024"), Pow2(64, 16384), Restart,
        "Receive ring size per queue."),
    key("port.tx_descriptors", Is("1024"), Pow2(64, 16384), Restart,
        "Transmit ring size per queue."),
    key("port.mtu", Is("1500"), Int(1280, 2000), Restart,
        "The largest IP packet the port sends: what gue and node-to-node encapsulation must fit in. tandem does not set the device's MTU: give the link the same."),
    key("port.kernel", Unset("no kernel twin"), Words("1–15 characters, free at start"), Restart,
        "The port's kernel twin: a TAP interface with its MAC, MTU and addresses (see [The network in front](cluster.md#the-network-in-front))."),
    key("port.max_neighbors", Is("1024"), Int(16, 65536), Restart,
        "Most neighbors the node keeps on the port (see [Neighbors](real-networks.md#neighbors))."),
    key("mempool.mbufs", Is("16383"), Int(1024, 16777216), Restart,
        "Packet buffers in the one pool all ports share."),
    key("mempool.cache", Is("256"), Int(0, 512), Restart,
        "Buffers each lcore keeps to itself (DPDK's per-lcore cache)."),
    key("workers.cores", Is("[1]"), Words("1–64 CPUs, each below 128"), Restart,
        "One poll loop per entry, pinned to that CPU; the same CPU may appear twice (two workers sharing it)."),
    key("workers.burst", Is("32"), Int(1, 512), Restart,
        "Most frames a worker reads from a queue at once."),
    key("workers.idle_sleep", Is("\"50us\""), Dur("0us", "100ms"), Restart,
        "The back-off after a round of empty bursts; `\"0us\"` spins."),
    key("flows.capacity", Is("65536"), Int(16, 268435456), Restart,
        "IPv4 flows per worker. One entry per flow in every mode; the memory is taken and touched at start, with the control thread's map of every flow (room for `capacity` + `capacity_v6`, at most a million), so a node's memory at start is its memory at capacity."),
    key("flows.capacity_v6", From("a quarter of `capacity`"), Int(16, 268435456), Restart,
        "IPv6 flows per worker, in a table of their own (IPv6 keys are 24 bytes longer)."),
    key("flows.tcp_syn_timeout", Is("\"10s\""), TIMEOUT, Live,
        "How long a half-open TCP flow is kept."),
    key("flows.tcp_established_timeout", Is("\"15m\""), TIMEOUT, Live,
        "How long an established TCP flow is kept without a packet."),
    key("flows.tcp_closing_timeout", Is("\"10s\""), TIMEOUT, Live,
        "How long a TCP flow is kept after its FIN or RST."),
    key("flows.udp_timeout", Is("\"5m\""), TIMEOUT, Live,
        "How long a UDP flow is kept without a packet."),
    key("flows.huge_pages", Is("true"), OneOf(&["true", "false"]), Restart,
        "The flow tables on transparent huge pages (`madvise`); `false` keeps them on 4 KiB pages."),
    key("control.socket", Is("\"/run/tandem/tandem.sock\""), Words("a path"), Restart,
        "The control socket: a Unix stream socket, mode 0600."),
    key("metrics.listen", Required, Words("ip:port"), Restart,
        "Where `/metrics` is served (see [Operations](operations.md))."),
    key("bgp.bird_socket", Is("\"/run/bird/bird.ctl\""), ABS_PATH, Restart,
        "BIRD's control socket, told to reconfigure when the routes change."),
    key("bgp.routes4", Is("\"/run/tandem/bird-vips4.conf\""), ABS_PATH, Restart,
        "The file of IPv4 VIP routes BIRD includes; its directory is made if missing; a file that cannot be written stops the start."),
    key("bgp.routes6", Is("\"/run/tandem/bird-vips6.conf\""), Words("an absolute path, not `routes4`'s"), Restart,
        "The file of IPv6 VIP routes BIRD includes."),
    key("bgp.min_healthy", Is("1"), Int(0, 1024), Restart,
        "A VIP is announced while one of its services has this many healthy backends."),
    key("bgp.withdraw_grace", Is("\"2s\""), Dur("0us", "10m"), Restart,
        "How long a stopping node serves after withdrawing its VIPs."),
    key("health.probe", Is("\"tcp\""), OneOf(&["tcp", "icmp", "none"]), Live,
        "How backends are probed. A gue backend, and a quic service's (a UDP-only server), is probed by ICMP echo where `tcp` is asked."),
    key("health.interval", Is("\"500ms\""), Dur("10ms", "1h"), Live,
        "Time between probes of one backend."),
    key("health.timeout", Is("\"1s\""), Dur("1ms", "16s"), Live,
        "A probe not answered within it failed."),
    key("health.down_after", Is("3"), Int(1, 100), Live,
        "Failed probes in a row that take a backend down."),
    key("health.up_after", Is("2"), Int(1, 100), Live,
        "Answered probes in a row that bring it back."),
    key("health.on_backend_down", Is("\"keep\""), OneOf(&["keep", "move"]), Live,
        "`move`: UDP flows of a down backend move to another. TCP flows always stay."),
    key("qos.window", Is("\"10s\""), Words("one `period` to 600 periods, at most 1h"), Live,
        "How far back the latency windows reach."),
    key("qos.period", Is("\"500ms\""), Dur("50ms", "1m"), Live,
        "How often weights, limits and standby are worked out again."),
    key("qos.selection", Is("\"qos\""), OneOf(&["qos", "weights", "least_flows", "peak_ewma"]), Live,
        "How a new flow's backend is chosen; `weights`, `least_flows` and `peak_ewma` are the anchors QoS selection is measured against."),
    key("qos.quantile", Is("0.9"), Float(0.5, 0.9999), Live,
        "The latency quantile QoS compares backends by."),
    key("qos.exponent", Is("2.0"), Float(0.1, 10.0), Live,
        "How steeply a slower backend's share falls."),
    key("qos.tolerance", Is("0.25"), Float(0.0, 10.0), Live,
        "How much slower than the best a backend may be before its share falls."),
    key("qos.slack", Is("\"1ms\""), Dur("0us", "10s"), Live,
        "Latency differences below it do not count."),
    key("qos.min_factor", Is("0.01"), Float(0.001, 1.0), Live,
        "The smallest share factor a slow backend keeps."),
    key("qos.min_samples", Is("5"), Int(1, 1000000), Live,
        "Samples a window needs before its latency counts."),
    key("qos.timeout", Is("\"1s\""), Dur("1ms", "1h"), Live,
        "A reply slower than it counts as a timeout."),
    key("qos.slow_start", Is("\"10s\""), Dur("0us", "1h"), Live,
        "How long a backend that comes up takes to reach its full share."),
    key("qos.decay", Is("\"10s\""), Dur("1ms", "1h"), Live,
        "How fast peak EWMA forgets."),
    key("qos.probation", Is("\"30s\""), Dur("1ms", "1d"), Live,
        "How long a backend that recovered is watched before its share is whole."),
    key("cluster.secret_file", Required, Words("a file of at least 16 bytes, owner-only (`chmod 600`)"), Restart,
        "The key that authenticates sync datagrams and forwarded packets; `run` refuses a file others can read."),
    key("cluster.heartbeat", Is("\"100ms\""), Dur("10ms", "10s"), Restart,
        "Time between heartbeats to every peer."),
    key("cluster.dead_after", From("3 heartbeats"), Words("two heartbeats to 10m"), Restart,
        "A peer silent this long is dead."),
    key("cluster.forward_port", Is("6070"), Int(1, 65535), Restart,
        "The UDP port of node-to-node encapsulated packets."),
    key("cluster.drain_deadline", Is("\"5m\""), Dur("0us", "7d"), Restart,
        "Longest a draining node waits for its flows."),
    key("cluster.node.id", Required, Int(1, 65535), Restart,
        "The node's number; this node's entry is the one with `[node].id`."),
    key("cluster.node.weight", Is("1"), Int(1, 1000), Live,
        "The node's share of primaries and backups."),
    key("cluster.node.address", Required, Words("one of that node's port addresses"), Restart,
        "The node's data-plane address, where peers send encapsulated packets."),
    key("cluster.node.mac", Unset("resolved by ARP or ND"), Words("a unicast MAC"), Restart,
        "The node's MAC on the shared link."),
    key("cluster.node.sync", Required, Words("ip:port"), Restart,
        "The control thread's UDP endpoint for sync datagrams."),
    key("service.name", Required, NAME, Name,
        "What commands, metrics and logs call the service. A renamed service is a new one, and may not take the old one's VIP and port while the old one drains."),
    key("service.vip", Required, Words("an IPv4 or IPv6 host address"), Fixed,
        "The address clients connect to."),
    key("service.port", Required, Int(1, 65535), Fixed,
        "The port clients connect to."),
    key("service.protocol", Required, OneOf(&["tcp", "udp", "quic"]), Fixed,
        "The transport. `quic` is UDP whose short-header packets are routed by the server ID in their destination connection ID (`[service.quic]`), whatever address they come from."),
    key("service.mode", Required, OneOf(&["nat", "dsr", "gue"]), Fixed,
        "How packets reach backends: `nat` rewrites addresses (replies come back through the node), `dsr` rewrites the MAC only, `gue` encapsulates."),
    key("service.clamp_mss", Is("true"), OneOf(&["true", "false"]), Live,
        "Lower the MSS of TCP SYNs this service's packets carry encapsulated (see [Real networks](real-networks.md))."),
    key("service.queue.max_len", Is("1024"), Int(1, 65536), Live,
        "Most new flows waiting when every backend is at its limit."),
    key("service.queue.max_wait", Is("\"2s\""), Dur("1ms", "10m"), Live,
        "Longest a new flow waits in the queue (see [QoS and admission](qos.md))."),
    key("service.admission.limit", Is("\"static\""), OneOf(&["static", "adaptive"]), Live,
        "Where backends' admission limits come from: `static`, each backend's `max_flows`; `adaptive`, learned from its latency, bounded by `min_limit`, `max_limit` and `max_flows` (see [Learned limits](qos.md#learned-limits))."),
    key("service.admission.min_limit", Is("1"), Words("1 to `max_limit`"), Live,
        "The least a learned limit falls to."),
    key("service.admission.max_limit", Is("10000"), Int(1, 1000000), Live,
        "The most a learned limit grows to."),
    key("service.admission.tolerance", Is("0.1"), Float(0.0, 2.0), Live,
        "How far a period's sampled latency may exceed the minimum before the limit is cut."),
    key("service.admission.quantile", Is("0.5"), Float(0.1, 0.99), Live,
        "The quantile a period's latency is sampled at."),
    key("service.admission.min_interval", Is("\"30s\""), Dur("1s", "1h"), Live,
        "How often the minimum latency is measured again (the limit held at `min_limit` for two periods)."),
    key("service.standby.p99_above", Unset("not a trigger"), Dur("1us", "1h"), Live,
        "Activate a standby when the active backends' p99 is above it for `for`."),
    key("service.standby.healthy_below", Is("0"), Words("a count; 0: not a trigger"), Live,
        "Activate a standby when fewer than this many backends are healthy for `for`. One of it or `p99_above` is required."),
    key("service.standby.for", Is("\"5s\""), DAY, Live,
        "How long a trigger must hold."),
    key("service.standby.recover_for", Is("\"30s\""), DAY, Live,
        "How long QoS must be good before a standby is released."),
    key("service.standby.cooldown", From("`for`"), DAY, Live,
        "Least time between two changes."),
    key("service.standby.hook", Unset("none"), Words("a command's path"), Live,
        "Run as `hook BACKEND` with `TANDEM_EVENT` (activate, release), `TANDEM_SERVICE` and `TANDEM_BACKEND` set."),
    key("service.quic.config_id", Is("0"), Int(0, 6), Live,
        "The config rotation codepoint in the IDs' first three bits; IDs with another are routed by their flow record."),
    key("service.quic.server_id_len", Is("2"), Words("1–15, at most 19 with `nonce_len`"), Live,
        "Octets of server ID in each connection ID."),
    key("service.quic.nonce_len", Is("6"), Words("4–18, at most 19 with `server_id_len`"), Live,
        "Octets of nonce after the server ID."),
    key("service.quic.key_file", Unset("server IDs in plaintext"), Words("an absolute path; 16 octets or 32 hex digits, owner-only"), Live,
        "The AES-128 key the backends encrypt server IDs with (one pass for 16 octets of server ID and nonce, the four-pass Feistel network otherwise). Read at start, by `check-config` and by `reload`."),
    key("service.backend.name", Required, NAME, Name,
        "What commands, metrics and logs call the backend."),
    key("service.backend.address", Required, Words("a host address of the VIP's family, not a VIP nor the node's"), Fixed,
        "The backend's address."),
    key("service.backend.port", From("nat: the VIP's; gue: 6080; dsr keeps the VIP's"), Int(1, 65535), Fixed,
        "nat: where the backend listens; gue: its GUE receive port."),
    key("service.backend.weight", Is("1"), Int(0, 10000), Live,
        "The backend's share of new flows; 0 takes none."),
    key("service.backend.state", Is("\"active\""), OneOf(&["active", "draining", "standby", "down"]), Live,
        "`draining` takes no new flows; `standby` waits for the service's standby trigger; `down` takes nothing."),
    key("service.backend.standby", Unset("the `state` says"), Words("`true` or `false`, agreeing with `state`"), Live,
        "`true` is `state = \"standby\"`; `show config` writes it as the state."),
    key("service.backend.max_flows", Unset("no limit"), Int(1, 4294967295), Live,
        "Most flows at once on this node: the admission limit (see [QoS and admission](qos.md))."),
    key("service.backend.server_id", Unset("none; a quic service's backends need one"), Words("`server_id_len` octets in hex (`\"0a01\"`), unique in the service"), Live,
        "The server ID this backend writes into its connection IDs."),
    key("service.backend.paths.port", Required, Words("a port's name"), Live,
        "The port a path leaves by."),
    key("service.backend.paths.mac", Unset("resolved by ARP or ND, refreshed every 30 s"), Words("a unicast MAC"), Live,
        "The next hop's MAC: the backend's, or the port's gateway's when the backend is off-link."),
];

/// The sections in the order the reference gives them.
pub fn sections() -> Vec<&'static str> {
    let mut v: Vec<&str> = Vec::new();
    for k in KEYS {
        if !v.contains(&k.section()) {
            v.push(k.section());
        }
    }
    v
}

fn number(x: i64) -> String {
    let s = x.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) && s.len() > 5 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0 {
        format!("-{out}")
    } else {
        out
    }
}

impl Absent {
    fn cell(&self) -> String {
        match self {
            Is(v) => format!("`{v}`"),
            Required => "required".into(),
            Unset(s) | From(s) => (*s).into(),
        }
    }
}

impl Range {
    fn cell(&self) -> String {
        match self {
            Int(a, b) => format!("{}–{}", number(*a), number(*b)),
            Pow2(a, b) => format!("a power of two, {}–{}", number(*a), number(*b)),
            Float(a, b) => format!("{a}–{b}"),
            Dur(a, b) => format!("`\"{a}\"`–`\"{b}\"`"),
            OneOf(v) => v
                .iter()
                .map(|x| format!("`{x}`"))
                .collect::<Vec<_>>()
                .join(", "),
            Words(s) => (*s).into(),
        }
    }
}

impl Reload {
    fn cell(&self) -> &'static str {
        match self {
            Live => "live",
            Restart => "restart",
            Fixed => "fixed: add a new one",
            Name => "a new name is a new one",
        }
    }
}

/// The Markdown table of one section's keys.
pub fn table(section: &str) -> String {
    let mut out =
        String::from("| key | default | range | reload | what it does |\n|---|---|---|---|---|\n");
    for k in KEYS.iter().filter(|k| k.section() == section) {
        out += &format!(
            "| `{}` | {} | {} | {} | {} |\n",
            k.name(),
            k.default.cell(),
            k.range.cell(),
            k.reload.cell(),
            k.about
        );
    }
    out
}
