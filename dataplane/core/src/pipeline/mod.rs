//! The packet core: one frame in, a verdict out, with every rewrite done in place. No DPDK,
//! no clock, no allocation: the port layer hands in the bytes, the input port and the node's
//! clock (`Now`, once per burst), and carries out the verdict. Everything the control thread
//! must hear about (new flows, learned neighbors) goes into a preallocated outbox drained
//! after each burst; flow records the node's other workers must hold go into a second one,
//! `replicas`, which the port layer hands to them directly (no control thread between).
//!
//! A frame goes through the stages in this order, one file each:
//!
//! ```text
//!  burst      a burst at a time: each frame's first look (the common TCP/UDP case parsed
//!             and its lookup key hashed once, table lines prefetched), then each run on
//!  demux      (the frames the first look leaves) Ethernet, ARP / IPv4 / IPv6, then by
//!             destination and protocol:
//!   ├─ local      the node's own traffic: ARP, ND, ICMP echo, probe replies
//!   ├─ cluster    a packet another node sent on (node header checked, then served)
//!   └─ flows      TCP/UDP to a service: flow lookup or binding (select/), admission
//!       │         (admission), passive timing (timing), cluster routing (cluster)
//!       └─ xmit   out by the service's forwarding mode: nat, dsr, gue, or to a node
//! ```
//!
//! `Core` is what the port layer holds: the services snapshot it reads and the `State` it
//! changes. They are separate fields so the packet path can borrow the snapshot while it
//! changes the state, without touching the `Arc`'s reference count per packet.

mod admission;
mod bucket;
mod burst;
mod cluster;
mod context;
mod control;
mod demux;
mod fast;
mod flows;
mod fragments;
mod icmp_errors;
mod kernel;
mod local;
mod martian;
mod mtu;
mod plain;
mod quic;
mod timing;
mod trace;
mod xmit;

pub use crate::parking::Wait;
pub use burst::MAX_BURST;
pub use kernel::{KERNEL_PER_MS, ROUTING_PER_MS};
pub use timing::hist_for;

use crate::cluster::Membership;
use crate::counters::{Absorbed, DropReason, WorkerCounters, MAX_PORTS};
use crate::flow::fragments::Fragments as FragmentTable;
use crate::flow::{Capacity, FlowKey, FlowRecord, FlowTable, Timeouts};
use crate::messages::FromWorker;
use crate::neighbor::Neighbors;
use crate::qos::admission::{Load, Queue};
use crate::qos::hist::HistSet;
use crate::services::Services;
use std::sync::Arc;

/// A frame inside its buffer: `buf` is the whole data room (headroom included) so a verdict
/// may move `start` back to prepend headers, or forward to strip a VLAN tag. `handle` is
/// the port layer's name for the buffer (an mbuf's address): a frame the core holds in an
/// admission queue is handed back by it.
pub struct PacketBuf<'a> {
    pub buf: &'a mut [u8],
    pub start: usize,
    pub len: usize,
    pub handle: usize,
}

impl PacketBuf<'_> {
    #[inline]
    pub fn frame(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
    #[inline]
    pub fn frame_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the (rewritten) frame out of this port.
    Tx(u8),
    /// Absorbed by the node (an ARP reply it learned from, say); free it, not a drop.
    Consumed(Absorbed),
    /// A nat backend's reply whose flow record has not reached this worker yet (it was
    /// created on another worker a moment ago), or a fragment that came before its first:
    /// park the frame and process it again when what it waits for arrives (a record with
    /// this hint of its client side, `parking::hint`; or its first fragment, announced by
    /// `Core::take_arrivals`). Nothing in the frame was changed.
    Defer(Wait),
    /// A new flow of this service found every backend at its limit (or others waiting
    /// before it): the core holds the frame (its `handle`) in the service's queue, and
    /// hands it back through `Core::release_queued` or `Core::drain_queued`. The port layer
    /// neither sends nor frees it. Nothing in the frame was changed.
    Hold(u16),
    Drop(DropReason),
}

/// The node's clock as the core reads it, handed in once per burst (`Core::set_now`):
/// milliseconds for the flow tables, microseconds for latency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Now {
    pub ms: u32,
    pub us: u64,
}

impl Now {
    /// The clock at `us` microseconds since the node started.
    #[inline]
    pub fn from_us(us: u64) -> Now {
        Now {
            ms: (us / 1000) as u32,
            us,
        }
    }

    /// The clock at the start of millisecond `ms`.
    #[inline]
    pub fn from_ms(ms: u32) -> Now {
        Now {
            ms,
            us: u64::from(ms) * 1000,
        }
    }
}

/// Capacity of the outbox to the control thread. What the control thread has no room for
/// waits here, and the worker reads no packets while fewer than a burst's
/// `EVENTS_PER_FRAME` remain.
pub const OUTBOX_CAP: usize = 8192;
/// Most events one frame adds to the outbox to the control thread (a flow's record, a
/// neighbor to resolve, an admission slot's news), with room to spare.
pub const EVENTS_PER_FRAME: usize = 4;
/// Flows from which the table's lines outgrow a core's L2 cache (64 bytes a flow, about a
/// MiB): the port layer prefetches a burst's table lines from here on (`prefetch_pays`).
pub const PREFETCH_FROM_FLOWS: usize = 16_384;
/// Capacity of the outbox to the node's other workers. The port layer empties it after every
/// burst and makes room before the next (`Core::replica_room`): a worker waits for its
/// siblings rather than lose a record.
pub const REPLICA_CAP: usize = 8192;
/// Flows a one-worker node lists per millisecond when only the listing needs them (100 000
/// a second, well within the control thread's means); beyond, a flood, they are served but
/// not listed.
pub const LISTED_PER_MS: u32 = 100;

/// A flow record created or changed on one worker, for the node's others.
#[derive(Debug, Clone, Copy)]
pub struct Replica {
    pub key: FlowKey,
    pub rec: FlowRecord,
}

/// One worker's packet core: the services snapshot it reads and the state it changes.
pub struct Core {
    pub services: Arc<Services>,
    pub state: State,
}

/// Everything a worker's packet path changes.
pub struct State {
    pub worker: u16,
    pub table: FlowTable,
    pub neighbors: Neighbors,
    pub link_up: [bool; MAX_PORTS],
    /// Which cluster nodes serve and take new flows (unused on a node on its own).
    pub membership: Membership,
    /// When this node last came back to taking new flows (`Membership::came_back`): for
    /// `tcp_syn_timeout` after, what it has no record of may be an older flow's (see
    /// `State::ranked_before_me`).
    pub back_since_ms: Option<u32>,
    pub counters: Arc<WorkerCounters>,
    pub outbox: Vec<FromWorker>,
    /// Records for this node's other workers (see `REPLICA_CAP`).
    pub replicas: Vec<Replica>,
    /// Flows admitted per backend, shared by the node's workers.
    pub load: Arc<Load>,
    /// This period's latency histograms.
    pub hist: Box<HistSet>,
    /// The node's clock (set by the port layer per burst).
    pub now: Now,
    /// Per service: new flows waiting for a slot (sized at start; see `admission`).
    pub queues: Vec<Queue>,
    /// The service whose queue's head is being run again (it must not queue behind itself).
    releasing: Option<u16>,
    /// The millisecond this worker last asked the control thread to resolve a neighbor.
    last_need_ms: u32,
    /// Other workers on this node (`Options::siblings`), fixed at start.
    siblings: bool,
    /// Part of a cluster (peers get flows once their handshake completes).
    clustered: bool,
    /// Half-open flows still to be listed in millisecond `listing_ms` (see `announce`).
    listing_left: u32,
    listing_ms: u32,
    /// The frame being processed was processed before (see `Core::process_again`).
    again: bool,
    /// First fragments' ports, for the later fragments (`fragments`).
    fragments: FragmentTable,
    /// First fragments that came since the port layer last looked.
    arrivals: fragments::Arrivals,
    /// "Too big" answers left (`mtu`).
    answers: bucket::Bucket,
    /// ICMP errors naming no flow here that may still go to a peer (`icmp_errors`).
    relays: bucket::Bucket,
    /// Frames to the kernel twins left this millisecond, and copies waiting for them
    /// (`kernel`).
    kernel_budget: bucket::Bucket,
    routing_budget: bucket::Bucket,
    kernel_copies: kernel::Copies,
    /// Counts what makes an established flow's ready egress stale (`fast`): a new services
    /// snapshot, a link, the membership or a neighbor entry changed.
    epoch: u32,
    /// Each backend path's ready egress (`fast`).
    ready: fast::ReadyTable,
    /// False: every packet takes the full flow stage (to test the fast path against it).
    fast_path: bool,
    /// The trace the control thread armed (`crate::trace`); None: no trace, and no cost
    /// but one test per burst.
    pub trace: Option<Box<crate::trace::Tracer>>,
    /// Node-header flags a traced frame sent on to another node carries
    /// (`tunnel::FLAG_TRACE` while one runs, else 0).
    trace_mark: u8,
}

impl Core {
    pub fn new(
        worker: u16,
        capacity: impl Into<Capacity>,
        timeouts: Timeouts,
        services: Arc<Services>,
        counters: Arc<WorkerCounters>,
        table_seed: u64,
    ) -> Core {
        let hist = Box::new(hist_for(&services));
        let siblings = services.options.siblings;
        let clustered = services.cluster.is_some();
        let queues = admission::queues_for(&services);
        let mut ready = fast::ReadyTable::default();
        ready.fit(&services);
        let neighbor_room = services
            .ports
            .iter()
            .map(|p| p.max_neighbors as usize)
            .sum();
        Core {
            services,
            state: State {
                worker,
                table: FlowTable::new(capacity, timeouts, table_seed),
                neighbors: Neighbors::with_capacity(neighbor_room),
                link_up: [true; MAX_PORTS],
                membership: Membership::default(),
                back_since_ms: None,
                counters,
                outbox: Vec::with_capacity(OUTBOX_CAP),
                replicas: Vec::with_capacity(if siblings { REPLICA_CAP } else { 0 }),
                load: Arc::new(Load::default()),
                hist,
                now: Now::default(),
                queues,
                releasing: None,
                last_need_ms: u32::MAX,
                siblings,
                clustered,
                listing_left: LISTED_PER_MS,
                listing_ms: 0,
                again: false,
                fragments: FragmentTable::new(table_seed ^ 0x6672_6167),
                arrivals: fragments::Arrivals::default(),
                answers: mtu::answers(),
                relays: icmp_errors::relays(),
                kernel_budget: kernel::budget(),
                routing_budget: kernel::routing_budget(),
                kernel_copies: kernel::Copies::default(),
                epoch: 1,
                ready,
                fast_path: true,
                trace: None,
                trace_mark: 0,
            },
        }
    }

    /// The same core with the established-flow fast path off: every packet takes the full
    /// flow stage (the reference the fast path is tested against).
    #[cfg(any(test, feature = "testkit"))]
    pub fn full_stage_only(mut self) -> Core {
        self.state.fast_path = false;
        self
    }

    /// Shares the node's admission counts with this core (every worker gets the same).
    pub fn with_load(mut self, load: Arc<Load>) -> Core {
        self.state.load = load;
        self
    }

    /// The node's clock for what follows (the next burst, messages, housekeeping).
    #[inline]
    pub fn set_now(&mut self, now: Now) {
        self.state.now = now;
    }

    /// Hands `f` the parking hints of the first fragments that came since it was last
    /// called (the port layer retries the later fragments parked under them).
    pub fn take_arrivals(&mut self, f: impl FnMut(u16)) {
        self.state.arrivals.take(f);
    }

    /// Room left in the outbox to the other workers: a frame adds at most one record, so the
    /// port layer runs no more frames than this before handing the records on.
    #[inline]
    pub fn replica_room(&self) -> usize {
        REPLICA_CAP.saturating_sub(self.state.replicas.len())
    }

    /// Hands an event to the control thread (after the burst, like the core's own).
    pub fn report(&mut self, m: FromWorker) {
        self.state.emit(m);
    }

    /// Processes one frame that arrived on `in_port` (a burst's frames: `process_burst`).
    pub fn process(&mut self, in_port: u8, pkt: &mut PacketBuf) -> Verdict {
        let Some(mut t) = self.state.trace.take() else {
            let v = self.state.frame_in(&self.services, in_port, pkt);
            self.state.count(v);
            self.state.give_back_released();
            return v;
        };
        let v = self
            .state
            .traced_frame(&mut t, &self.services, in_port, pkt);
        self.state.trace = Some(t);
        v
    }

    /// Processes a frame again: one that was parked (Defer) or queued (Hold) the first
    /// time. What counts a frame once on arrival (`node_received`) is not counted again.
    pub fn process_again(&mut self, in_port: u8, pkt: &mut PacketBuf) -> Verdict {
        self.state.again = true;
        let v = self.process(in_port, pkt);
        self.state.again = false;
        v
    }

    /// True when the table holds enough flows that its lines miss the cache, so a burst's
    /// table prefetches pay for the instructions they take; below, the lines are in cache
    /// and the prefetches are pure cost.
    #[inline]
    pub fn prefetch_pays(&self) -> bool {
        self.state.table.len() >= PREFETCH_FROM_FLOWS
    }
}

impl State {
    /// Counts a frame's verdict.
    #[inline(always)]
    fn count(&self, v: Verdict) {
        let c = &self.counters;
        match v {
            Verdict::Tx(_) => c.sent.inc(),
            Verdict::Drop(r) => c.count_drop(r),
            Verdict::Consumed(k) => c.count_absorbed(k),
            Verdict::Defer(_) | Verdict::Hold(_) => {}
        }
    }

    /// Queues an event for the control thread; counted and lost when the outbox is full
    /// (the port layer keeps room for a burst's events before reading one, so only events
    /// made between bursts in a flood can be).
    #[inline]
    fn emit(&mut self, m: FromWorker) {
        if self.outbox.len() < OUTBOX_CAP {
            self.outbox.push(m);
        } else {
            self.counters.outbox_overflow.inc();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod cluster_tests;

#[cfg(test)]
mod qos_tests;

#[cfg(test)]
mod network_tests;

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod quic_tests;
