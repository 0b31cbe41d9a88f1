//! Per-worker counters. Each worker is the only writer of its own counters, so an increment
//! is a relaxed load and store (a plain add, no locked instruction); the control thread reads
//! them whenever it likes and sums over workers.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A counter with a single writer.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline(always)]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }
    #[inline(always)]
    pub fn inc(&self) {
        self.add(1)
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed)
    }
}

macro_rules! drop_reasons {
    ($($variant:ident => $name:literal,)*) => {
        /// Why a packet was dropped; each has its own counter.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u8)]
        pub enum DropReason { $($variant,)* }
        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }
        }
    };
}

drop_reasons! {
    NotForUs => "not_for_us",
    Malformed => "malformed",
    Truncated => "truncated",
    BadIhl => "bad_ihl",
    UnsupportedEthertype => "unsupported_ethertype",
    UnsupportedProtocol => "unsupported_protocol",
    UnknownService => "unknown_service",
    NoBackend => "no_backend",
    NoFlow => "no_flow",
    TtlExpired => "ttl_expired",
    NoNeighbor => "no_neighbor",
    NoPath => "no_path",
    TableFull => "flow_table_full",
    NoHeadroom => "no_headroom",
    TooBig => "too_big",
    TxFull => "tx_full",
    HopLimit => "hop_limit",
    NoNode => "no_node",
    NotFromNode => "not_from_node",
    BadNodeHeader => "bad_node_header",
    QueueFull => "queue_full",
    QueueTimeout => "queue_timeout",
    QueueDuplicate => "queue_duplicate",
    // A first fragment without the whole transport header (RFC 1858's tiny fragment).
    FragmentTiny => "fragment_tiny",
    // A later TCP fragment whose data starts inside the TCP header (RFC 1858's overlap).
    FragmentOverlap => "fragment_overlap",
    // A later fragment whose first did not come within `parking::MAX_WAIT_MS`.
    FragmentTimeout => "fragment_timeout",
    // A fragment of the node's own traffic, or of a protocol other than TCP and UDP.
    FragmentUnsupported => "fragment_unsupported",
    Ipv6Ah => "ipv6_ah",
    Ipv6Esp => "ipv6_esp",
    // No next header, or an extension header tandem does not walk.
    Ipv6UnknownHeader => "ipv6_unknown_header",
    // Too many extension headers, too long, hop-by-hop options out of place, or two
    // fragment headers.
    Ipv6HeaderChain => "ipv6_header_chain",
    // A routing header with segments left.
    Ipv6Routing => "ipv6_routing",
    // An ICMP error whose quote is truncated, of the wrong version, or names no TCP/UDP.
    IcmpBadQuote => "icmp_bad_quote",
    // An ICMP error about an ICMP message (an error about an error, or about an echo).
    IcmpAboutIcmp => "icmp_about_icmp",
    // An ICMP error whose quote names no flow this node knows.
    IcmpNoFlow => "icmp_no_flow",
    // Too big to encapsulate and the sender not answered: IPv4 without DF, or past the
    // rate limit of the answers.
    TooBigUnanswered => "too_big_unanswered",
    // For a port's kernel twin past the worker's budget (`pipeline::KERNEL_PER_MS`).
    KernelLimit => "kernel_limit",
    // Handed to a kernel twin whose queue did not take it (counted by the port layer;
    // the frame is among `absorbed.kernel` too, as `tx_full` among the sent).
    KernelFull => "kernel_full",
    // A routing protocol's frame (ARP, ND, BGP or BFD on the port's link) for a kernel
    // twin past its reserved share and the rest of the budget.
    KernelLimitRouting => "kernel_limit_routing",
    // Neighbor discovery (RS, RA, NS, NA, redirect) with a hop limit below 255: routed
    // from off the link (RFC 4861).
    NdHopLimit => "nd_hop_limit",
    // Neighbor discovery from a source, or an advertisement for a target, off the port's
    // link.
    NdOffLink => "nd_off_link",
    // A source no client may have (loopback, unspecified, multicast, broadcast,
    // link-local, the node's own, a VIP, v4-mapped): no flow, no answer.
    MartianSource => "martian_source",
    // A "fragmentation needed" with a next-hop MTU below 68, or a "packet too big" below
    // 1280: no link has them (RFC 791, RFC 8200), so they only shrink segments.
    IcmpBadMtu => "icmp_bad_mtu",
    // An ICMP error about a flow that came from the other side of it (an error about a
    // nat request from the client's side, say).
    IcmpWrongSide => "icmp_wrong_side",
    // A fragment whose data would end past 65,535 bytes (no datagram is that long).
    FragmentOversize => "fragment_oversize",
}

pub const NUM_DROP_REASONS: usize = DropReason::ALL.len();

macro_rules! absorbed_kinds {
    ($($variant:ident => $name:literal,)*) => {
        /// What a frame the node took in without answering or forwarding was: not a drop
        /// (nothing was wrong with it), but counted, so that every frame received lands in
        /// exactly one counter and a flood of them shows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u8)]
        pub enum Absorbed { $($variant,)* }
        impl Absorbed {
            pub const ALL: &'static [Absorbed] = &[$(Absorbed::$variant,)*];
            pub fn name(self) -> &'static str {
                match self { $(Absorbed::$variant => $name,)* }
            }
        }
    };
}

absorbed_kinds! {
    // ARP from an on-link sender (learned from), not a request for one of our addresses.
    Arp => "arp",
    // An IPv6 neighbor advertisement (learned from).
    NeighborAdvert => "neighbor_advert",
    // The answer to one of our health probes (timed).
    ProbeReply => "probe_reply",
    // Handed to the port's kernel twin (the node's own traffic: BGP, BFD, SSH, ...).
    Kernel => "kernel",
}

pub const NUM_ABSORBED: usize = Absorbed::ALL.len();
/// Most ports a node drives.
pub const MAX_PORTS: usize = 16;
/// Most backends over all services (selection and counters are sized by it).
pub const MAX_BACKENDS: usize = 1024;
/// Most services a node holds (queue counters are sized by it).
pub const MAX_SERVICES: usize = 256;

/// One service's admission queue on one worker.
#[derive(Default, Debug)]
pub struct QueueCounters {
    /// Packets that waited.
    pub queued: Counter,
    /// Waiting packets that got a slot and went on.
    pub released: Counter,
    /// Total microseconds the released packets waited.
    pub wait_us: Counter,
    /// The longest wait, in microseconds.
    pub max_wait_us: Counter,
    /// Waiting now.
    pub length: Counter,
    /// Refused: the queue was full.
    pub full: Counter,
    /// Dropped after waiting `max_wait`.
    pub timed_out: Counter,
}

#[derive(Default, Debug)]
pub struct PortCounters {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    pub tx_packets: Counter,
    pub tx_bytes: Counter,
}

/// Everything one worker counts, shared (read-only) with the control thread: the counters
/// by port, reason, kind, backend and service, then the single ones listed in
/// `worker_counters!` below, which `show stats` lists by name (`WorkerCounters::each`) and
/// `/metrics` pages with its doc comment as help (`WorkerCounters::each_with_help`). Adding
/// a counter is its doc comment and line there, and the place that counts it.
macro_rules! worker_counters {
    ($($(#[doc = $doc:literal])+ $name:ident,)*) => {
        #[derive(Debug)]
        pub struct WorkerCounters {
            pub ports: [PortCounters; MAX_PORTS],
            pub drops: [Counter; NUM_DROP_REASONS],
            pub absorbed: [Counter; NUM_ABSORBED],
            /// New flows per backend id, for the control thread's rate and totals.
            pub backend_new_flows: Box<[Counter]>,
            pub queues: Box<[QueueCounters]>,
            $($(#[doc = $doc])* pub $name: Counter,)*
        }

        impl Default for WorkerCounters {
            fn default() -> Self {
                WorkerCounters {
                    ports: Default::default(),
                    drops: std::array::from_fn(|_| Counter::default()),
                    absorbed: std::array::from_fn(|_| Counter::default()),
                    backend_new_flows: (0..MAX_BACKENDS).map(|_| Counter::default()).collect(),
                    queues: (0..MAX_SERVICES).map(|_| QueueCounters::default()).collect(),
                    $($name: Counter::default(),)*
                }
            }
        }

        impl WorkerCounters {
            /// The single counters' names, in the order listed.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($name),)*];

            /// Every single counter with its name, in the order listed.
            pub fn each(&self, mut f: impl FnMut(&'static str, u64)) {
                $(f(stringify!($name), self.$name.get());)*
            }

            /// Every single counter with its name and its doc comment (the help text of
            /// its Prometheus series), in the order listed.
            pub fn each_with_help(&self, mut f: impl FnMut(&'static str, &'static str, u64)) {
                $(f(stringify!($name), concat!($($doc, " "),+), self.$name.get());)*
            }
        }
    };
}

worker_counters! {
    /// Frames the core handed back to be sent: forwarded packets and the node's replies
    /// (ARP, ICMP echo, neighbor advertisements, resets to probe answers, "too big"). Every frame
    /// received is, once, either sent, absorbed, dropped, or waiting (parked or queued).
    sent,
    /// Nat replies parked until their flow record arrives (each at most once).
    deferred,
    /// Frames parked or queued now (set by the worker each loop).
    waiting,
    /// ARP requests for the node's addresses and VIPs answered.
    arp_replies,
    /// ICMP and ICMPv6 echo requests answered.
    icmp_replies,
    /// Copies of answered ARP and ND frames given to a kernel twin too.
    kernel_copies,
    /// Copies of answered ARP and ND frames left out (the copies' ring full, or too long to copy).
    kernel_copies_lost,
    /// Frames a kernel twin sent out of its port.
    from_kernel,
    /// Neighbor solicitations for the node's addresses and VIPs answered.
    nd_replies,
    /// Flows this worker created.
    flows_created,
    /// Records stored that another worker (or, through the control thread, another node)
    /// made or changed.
    flows_replicated_in,
    /// Records handed to this node's other workers (one per record and worker).
    flows_replicated_out,
    /// Times this worker waited for another worker to take its records before reading
    /// more packets (it never drops one): a sibling that falls behind slows it down.
    replication_waits,
    /// Flows evicted to make room.
    flows_evicted,
    /// New flows refused: the table was full.
    flows_refused,
    /// Flows that timed out.
    flows_expired,
    /// Flows in the worker's table (a gauge).
    flows_in_table,
    /// Packets sent over a flow's backup path because its primary path's port was down.
    path_failovers,
    /// Packets sent on to another node (encapsulated).
    node_forwarded,
    /// Encapsulated packets received from other nodes.
    node_received,
    /// Packets of flows served here because their primary node does not serve.
    node_failovers,
    /// QUIC short-header packets routed by the server ID their connection ID carries.
    quic_by_cid,
    /// QUIC packets routed by their flow's record: long headers (a new connection's are
    /// balanced as any flow), and short headers whose connection ID names no backend.
    quic_by_flow,
    /// QUIC short-header packets neither their connection ID nor a record routes: dropped
    /// (as `no_flow`).
    quic_unroutable,
    /// Events for the control thread lost: its outbox was full between bursts, or the
    /// control thread is gone. (In a flood, reading packets waits instead: `control_waits`.)
    outbox_overflow,
    /// Times the worker waited to read packets because the control thread had fallen
    /// behind its events (flow records for the peers are never dropped).
    control_waits,
    /// Neighbor news held back because the outbox to the control thread was half full
    /// (flow records first); reported on the neighbor's next answer.
    neighbor_reports_deferred,
    /// ARP and ND naming an address the node neither needs nor resolves: not learned.
    neighbors_unwanted,
    /// ARP and ND that would have changed a MAC the config fixes: ignored.
    neighbors_fixed_kept,
    /// Announcements past `pipeline::LISTED_PER_MS` that only the control thread's listing
    /// needed, left out (a flood of new flows): this worker serves those flows all the
    /// same; `show flow` lists them when they next change or are refreshed.
    flows_unlisted,
    /// Poll loops run (with `idle_loops`: how busy the worker is).
    loops,
    /// Poll loops that found every RX queue empty.
    idle_loops,
    /// Health probes sent.
    probes_sent,
    /// Answers to health probes received.
    probe_replies,
    /// Resets sent to close the handshake a TCP probe's answer opened (replies, in `sent`).
    probe_resets,
    /// Passive samples recorded (handshakes and responses timed).
    passive_samples,
    /// First fragments served (they carry the ports).
    fragments_first,
    /// Later fragments served, with their first fragment's ports.
    fragments_later,
    /// Later fragments that came before their first, and waited for it.
    fragments_early,
    /// First fragments' entries pushed out of a full bucket of the fragment table.
    fragments_evicted,
    /// ICMP destination unreachable errors about a flow, sent where the flow's packets go.
    icmp_unreachable,
    /// ICMP fragmentation needed errors about a flow, sent where the flow's packets go.
    icmp_frag_needed,
    /// ICMP time exceeded errors about a flow, sent where the flow's packets go.
    icmp_time_exceeded,
    /// ICMPv6 destination unreachable errors about a flow, sent where the flow's packets go.
    icmp6_unreachable,
    /// ICMPv6 packet too big errors about a flow, sent where the flow's packets go.
    icmp6_too_big,
    /// ICMPv6 time exceeded errors about a flow, sent where the flow's packets go.
    icmp6_time_exceeded,
    /// ICMP errors from the backend side about nat flows, rewritten and sent to the client.
    icmp_to_clients,
    /// Packets too big to encapsulate, answered with fragmentation needed / packet too big.
    too_big_answered,
    /// TCP SYNs whose MSS was lowered to fit an encapsulation.
    mss_clamped,
}

impl WorkerCounters {
    #[inline(always)]
    pub fn count_drop(&self, r: DropReason) {
        self.drops[r as usize].inc();
    }
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops[r as usize].get()
    }
    #[inline(always)]
    pub fn count_absorbed(&self, k: Absorbed) {
        self.absorbed[k as usize].inc();
    }
    /// The node's own replies among the frames sent (a "too big" answer is one).
    pub fn replies(&self) -> u64 {
        self.arp_replies.get()
            + self.icmp_replies.get()
            + self.nd_replies.get()
            + self.probe_resets.get()
            + self.too_big_answered.get()
    }
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().map(Counter::get).sum()
    }
}
