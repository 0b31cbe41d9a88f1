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
    Ipv4Fragment => "ipv4_fragment",
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
/// `worker_counters!` below, which `show stats` lists by name (`WorkerCounters::each`).
/// Adding a counter is one line there and the place that counts it.
macro_rules! worker_counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
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
                    drops: Default::default(),
                    absorbed: Default::default(),
                    backend_new_flows: (0..MAX_BACKENDS).map(|_| Counter::default()).collect(),
                    queues: (0..MAX_SERVICES).map(|_| QueueCounters::default()).collect(),
                    $($name: Counter::default(),)*
                }
            }
        }

        impl WorkerCounters {
            /// Every single counter with its name, in the order listed.
            pub fn each(&self, mut f: impl FnMut(&'static str, u64)) {
                $(f(stringify!($name), self.$name.get());)*
            }
        }
    };
}

worker_counters! {
    /// Frames the core handed back to be sent: forwarded packets and the node's replies
    /// (ARP, ICMP echo, neighbor advertisements, resets to probe answers). Every frame
    /// received is, once, either sent, absorbed, dropped, or waiting (parked or queued).
    sent,
    /// Nat replies parked until their flow record arrives (each at most once).
    deferred,
    /// Frames parked or queued now (set by the worker each loop).
    waiting,
    arp_replies,
    icmp_replies,
    nd_replies,
    flows_created,
    flows_replicated_in,
    flows_evicted,
    flows_refused,
    flows_expired,
    flows_in_table,
    path_failovers,
    /// Packets sent on to another node (encapsulated).
    node_forwarded,
    /// Encapsulated packets received from other nodes.
    node_received,
    /// Packets of flows served here because their primary node does not serve.
    node_failovers,
    outbox_overflow,
    /// Announcements past `pipeline::LISTED_PER_MS` that only the control thread's listing
    /// needed, left out (a flood of new flows): this worker serves those flows all the
    /// same; `show flow` lists them when they next change or are refreshed.
    flows_unlisted,
    /// Poll loops run, and those that found every RX queue empty (how busy the worker is).
    loops,
    idle_loops,
    probes_sent,
    probe_replies,
    /// Resets sent to close the handshake a TCP probe's answer opened (replies, in `sent`).
    probe_resets,
    /// Passive samples recorded (handshakes and responses timed).
    passive_samples,
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
    /// The node's own replies among the frames sent.
    pub fn replies(&self) -> u64 {
        self.arp_replies.get()
            + self.icmp_replies.get()
            + self.nd_replies.get()
            + self.probe_resets.get()
    }
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().map(Counter::get).sum()
    }
}
