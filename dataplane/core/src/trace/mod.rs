//! The packet tracer (`tandem ctl trace add FILTER [COUNT]`, `show trace`), after VPP's
//! `trace add` and the tracer of Maglev's paper: what a node did with the frames an
//! operator names, stage by stage.
//!
//! A worker traces only while the control thread has handed it a [`Tracer`]: with none, the
//! cost is the one test of `State::trace` per burst (`pipeline::burst`). With one, each
//! frame of the burst is matched against the [`Filter`] (or, from another node, carries the
//! trace mark, `tunnel::FLAG_TRACE`) and a matching frame is run as any other, between two
//! looks: before, what the stages will read (the frame, its service, the flow table's
//! record, the selection's candidates, the cluster's ranking, the queue, every counter);
//! after, what they changed (the record, the rewritten frame, the counters that moved, the
//! verdict). No stage is instrumented, so the trace shows exactly what ran, and the stages
//! pay nothing for it. A frame a traced frame sends on to another node carries the mark,
//! so that node traces it too.
//!
//! A [`Record`] has a fixed size and the tracer's records a fixed capacity, so the packet
//! path allocates nothing; the control thread swaps in an empty tracer and reads the full
//! one (`explain` turns it into stages and words, with the names the snapshot gives).

pub mod explain;
mod filter;

pub use filter::{Filter, FilterError};

use crate::counters::{Absorbed, DropReason, WorkerCounters, NUM_ABSORBED, NUM_DROP_REASONS};
use crate::flow::{FlowKey, FlowRecord};
use crate::parking::Lot;
use crate::wire::{ethernet, ipv4, ipv6, l4, tunnel};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Bytes of a frame kept, before and after its run: every header tandem reads or writes
/// (an IPv6 packet inside the node header inside IPv6 and UDP takes 150).
pub const KEPT_BYTES: usize = 160;
/// Backends of a new flow's selection listed (a service's first ones).
pub const MAX_CANDIDATES: usize = 16;
/// Counters a traced frame moved, listed.
pub const MAX_COUNTED: usize = 12;
/// Records a worker's tracer holds until the control thread swaps it (every 100 ms).
pub const RECORDS_PER_TRACER: usize = 64;
/// Frames a `trace add` traces when its COUNT is not given.
pub const DEFAULT_COUNT: u32 = 50;

/// The first bytes of a frame.
#[derive(Clone, Copy)]
pub struct Kept {
    /// The frame's whole length.
    pub len: u16,
    pub kept: u16,
    pub bytes: [u8; KEPT_BYTES],
}

impl Kept {
    pub const EMPTY: Kept = Kept {
        len: 0,
        kept: 0,
        bytes: [0; KEPT_BYTES],
    };

    pub fn of(frame: &[u8]) -> Kept {
        let mut k = Kept::EMPTY;
        let n = frame.len().min(KEPT_BYTES);
        k.bytes[..n].copy_from_slice(&frame[..n]);
        k.len = frame.len().min(usize::from(u16::MAX)) as u16;
        k.kept = n as u16;
        k
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.kept)]
    }
}

/// One backend as a new flow's selection saw it.
#[derive(Clone, Copy, Default, Debug, PartialEq)]
pub struct Candidate {
    pub backend: u16,
    /// The configured weight, and the weight QoS made of it (weight x factor x ramp).
    pub weight: u32,
    pub qos_weight: f32,
    /// Peak-EWMA latency estimate, microseconds.
    pub ewma_us: u32,
    /// Flows admitted now, and the backend's limit (0: none).
    pub active: u32,
    pub max_flows: u32,
    /// Takes new flows (active or an activated standby, and up).
    pub eligible: bool,
    pub up: bool,
}

/// Where the frame's stage sent it, as the demultiplexer saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aim {
    /// Not a TCP or UDP segment tandem balances (ARP, ICMP, the node's own, malformed...).
    Other,
    /// A request to this service.
    Service(u16),
    /// A nat backend's reply, of this service's flow.
    Reply(u16),
    /// A nat backend's reply that may belong to several services.
    Replies,
    /// Refused before any flow: this reason.
    Refused(DropReason),
}

/// What became of a traced frame (the pipeline's verdict, as the trace keeps it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Sent out of this port.
    Sent(u8),
    Absorbed(Absorbed),
    /// Parked in this lot until what it waits for comes.
    Parked(Lot),
    /// Held in this service's admission queue.
    Held(u16),
    Dropped(DropReason),
}

/// Which way the frame ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// The plain lane: an established IPv4 flow rewritten at fixed offsets.
    Plain,
    /// The stages (demux and on).
    Stages,
}

/// The cluster's ranking of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ranking {
    /// Primary and backup by rendezvous score among the nodes that take new flows
    /// (indices into the cluster's node list).
    pub primary: Option<u8>,
    pub backup: Option<u8>,
    /// This node's index.
    pub me: u8,
    /// Nodes taking new flows, and nodes serving (bit per index).
    pub eligible: u64,
    pub serving: u64,
}

/// A counter a traced frame moved, by how much.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    /// One of `WorkerCounters::NAMES`.
    Single(u8, u32),
    Drop(DropReason, u32),
    Absorbed(u8, u32),
}

/// Every counter a frame may move, as they stood before it (a traced frame's only).
pub struct Counters {
    single: [u64; WorkerCounters::NAMES.len()],
    drops: [u64; NUM_DROP_REASONS],
    absorbed: [u64; NUM_ABSORBED],
}

impl Counters {
    pub fn read(c: &WorkerCounters) -> Counters {
        let mut single = [0; WorkerCounters::NAMES.len()];
        let mut i = 0;
        c.each(|_, v| {
            single[i] = v;
            i += 1;
        });
        Counters {
            single,
            drops: std::array::from_fn(|i| c.drops[i].get()),
            absorbed: std::array::from_fn(|i| c.absorbed[i].get()),
        }
    }

    /// The counters that moved since `self` (up to `MAX_COUNTED`), into `out`.
    pub fn moved(&self, now: &Counters, out: &mut [Option<Counted>; MAX_COUNTED]) {
        let mut n = 0;
        let mut put = |c: Counted| {
            if n < MAX_COUNTED {
                out[n] = Some(c);
                n += 1;
            }
        };
        let d = |a: u64, b: u64| b.wrapping_sub(a).min(u64::from(u32::MAX)) as u32;
        for (i, (a, b)) in self.drops.iter().zip(&now.drops).enumerate() {
            if a != b {
                put(Counted::Drop(DropReason::ALL[i], d(*a, *b)));
            }
        }
        for (i, (a, b)) in self.absorbed.iter().zip(&now.absorbed).enumerate() {
            if a != b {
                put(Counted::Absorbed(i as u8, d(*a, *b)));
            }
        }
        for (i, (a, b)) in self.single.iter().zip(&now.single).enumerate() {
            // Gauges the worker sets each loop say nothing of the frame.
            let name = WorkerCounters::NAMES[i];
            if a != b && name != "waiting" && name != "flows_in_table" {
                put(Counted::Single(i as u8, d(*a, *b)));
            }
        }
    }
}

/// One traced frame on one worker: what the stages read before it ran, what they changed.
#[derive(Clone, Copy)]
pub struct Record {
    pub worker: u16,
    pub port: u8,
    /// The node's clock when its burst began, microseconds.
    pub us: u64,
    /// It came from another node with the trace mark.
    pub marked: bool,
    pub before: Kept,
    pub after: Kept,
    pub lane: Lane,
    pub aim: Aim,
    /// The flow table key the stage looked up (for a nat reply, its flow's).
    pub key: Option<FlowKey>,
    /// The flow's record before the frame ran, and after.
    pub found: Option<FlowRecord>,
    pub kept: Option<FlowRecord>,
    /// A new flow's candidates (none when the table had the flow).
    pub candidates: [Candidate; MAX_CANDIDATES],
    pub n_candidates: u8,
    /// The service's backends past `MAX_CANDIDATES`, not listed.
    pub more_candidates: u16,
    pub ranking: Option<Ranking>,
    /// The service's admission queue length before and after.
    pub queue: Option<(u16, u32, u32)>,
    pub counted: [Option<Counted>; MAX_COUNTED],
    pub verdict: Outcome,
}

impl Record {
    pub fn new(worker: u16, port: u8, us: u64, frame: &[u8]) -> Record {
        Record {
            worker,
            port,
            us,
            marked: false,
            before: Kept::of(frame),
            after: Kept::EMPTY,
            lane: Lane::Stages,
            aim: Aim::Other,
            key: None,
            found: None,
            kept: None,
            candidates: [Candidate::default(); MAX_CANDIDATES],
            n_candidates: 0,
            more_candidates: 0,
            ranking: None,
            queue: None,
            counted: [None; MAX_COUNTED],
            verdict: Outcome::Dropped(DropReason::Malformed),
        }
    }

    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates[..usize::from(self.n_candidates)]
    }
}

/// What a worker traces, and what it has traced since the control thread last swapped it.
pub struct Tracer {
    /// Which `trace add` this is (a tracer of an earlier one, handed back late, is
    /// discarded).
    pub id: u64,
    pub filter: Filter,
    /// Frames the filter may still pick on this node, shared by its workers.
    pub left: Arc<AtomicU32>,
    records: Vec<Record>,
    /// Frames that matched when the records were full (picked up at the next swap: none
    /// is lost unless a worker traces more than `RECORDS_PER_TRACER` frames in 100 ms).
    pub missed: u32,
}

impl Tracer {
    /// An empty tracer, its records' room allocated now (off the packet path).
    pub fn new(id: u64, filter: Filter, left: Arc<AtomicU32>) -> Tracer {
        Tracer {
            id,
            filter,
            left,
            records: Vec::with_capacity(RECORDS_PER_TRACER),
            missed: 0,
        }
    }

    /// Whether a frame is traced: it carries the mark of a peer's trace, or it matches the
    /// filter while the count lasts (taking one from it). `forward_port`: the cluster's
    /// tunnel port, if any.
    pub fn wants(&mut self, frame: &[u8], forward_port: Option<u16>) -> Option<bool> {
        let seen = Seen::of(frame, forward_port);
        let marked = seen.node.is_some_and(|h| h.flags & tunnel::FLAG_TRACE != 0);
        if !marked && !self.filter.matches(&seen) {
            return None;
        }
        if self.records.len() == self.records.capacity() {
            self.missed += 1;
            return None;
        }
        if !marked {
            let took = self
                .left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            if took.is_err() {
                return None;
            }
        }
        Some(marked)
    }

    /// Keeps a record (room was checked by `wants`).
    pub fn push(&mut self, r: Record) {
        if self.records.len() < self.records.capacity() {
            self.records.push(r);
        }
    }

    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Empties the tracer for its next turn on a worker, keeping its room.
    pub fn clear(&mut self) {
        self.records.clear();
        self.missed = 0;
    }
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tracer({}, {} records)", self.id, self.records.len())
    }
}

/// An IP packet's addresses and ports, as the filter and the trace read them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tuple {
    pub v6: bool,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub proto: u8,
    /// Ports for TCP and UDP (0 otherwise, and for a later fragment).
    pub sport: u16,
    pub dport: u16,
    /// TCP flags.
    pub flags: u8,
    pub fragment: bool,
}

/// What a trace reads of a frame: its link header, its IP packet, and when that is a
/// packet another node sent on, the node header and the packet inside.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen {
    pub l2: Option<ethernet::L2>,
    pub outer: Option<Tuple>,
    pub node: Option<tunnel::Header>,
    pub inner: Option<Tuple>,
}

impl Seen {
    /// Reads `frame` (never panics, whatever the bytes).
    pub fn of(frame: &[u8], forward_port: Option<u16>) -> Seen {
        let mut s = Seen::default();
        let Ok(l2) = ethernet::parse(frame) else {
            return s;
        };
        s.l2 = Some(l2);
        let Some(l3) = frame.get(l2.l3_offset..) else {
            return s;
        };
        let Some((outer, payload)) = ip_tuple(l2.ethertype, l3) else {
            return s;
        };
        s.outer = Some(outer);
        if outer.proto == l4::PROTO_UDP
            && !outer.fragment
            && forward_port.is_some_and(|p| p == outer.dport)
        {
            let after = payload.get(l4::UDP_LEN..).unwrap_or(&[]);
            if let Ok(h) = tunnel::parse(after) {
                s.node = Some(h);
                let inner = after.get(tunnel::HEADER_LEN..).unwrap_or(&[]);
                let et = match inner.first().map(|b| b >> 4) {
                    Some(4) => ethernet::ETHERTYPE_IPV4,
                    _ => ethernet::ETHERTYPE_IPV6,
                };
                s.inner = ip_tuple(et, inner).map(|(t, _)| t);
            }
        }
        s
    }

    /// The packet the stages serve: the one inside the node header, else the frame's.
    pub fn innermost(&self) -> Option<Tuple> {
        self.inner.or(self.outer)
    }
}

/// An IP packet's tuple and its payload (the transport header on).
fn ip_tuple(ethertype: u16, l3: &[u8]) -> Option<(Tuple, &[u8])> {
    let mut t = Tuple::default();
    let payload = match ethertype {
        ethernet::ETHERTYPE_IPV4 => {
            // The header only: a kept frame may end inside the packet.
            let ip = ipv4::Packet::new_quoted(l3).ok()?;
            t.src[..4].copy_from_slice(&ip.src_bytes());
            t.dst[..4].copy_from_slice(&ip.dst_bytes());
            t.proto = ip.protocol();
            t.fragment = ip.is_fragment();
            let later = ip.frag_offset() != 0;
            let hl = ip.header_len();
            let end = ip.total_len().min(l3.len());
            let p = l3.get(hl..end.max(hl)).unwrap_or(&[]);
            if later {
                return Some((t, p));
            }
            p
        }
        ethernet::ETHERTYPE_IPV6 => {
            if l3.len() < ipv6::HEADER_LEN || l3[0] >> 4 != 6 {
                return None;
            }
            let ip = ipv6::Packet::new_unchecked(l3);
            t.v6 = true;
            t.src = ip.src_bytes();
            t.dst = ip.dst_bytes();
            t.proto = ip.next_header();
            l3.get(ipv6::HEADER_LEN..).unwrap_or(&[])
        }
        _ => return None,
    };
    if t.proto == l4::PROTO_TCP || t.proto == l4::PROTO_UDP {
        if let Ok(p) = l4::parse_first_fragment(t.proto, payload) {
            t.sport = p.src;
            t.dport = p.dst;
            t.flags = p.flags;
        }
    }
    Some((t, payload))
}

#[cfg(test)]
mod tests;
