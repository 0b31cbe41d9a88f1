//! The packet core: one frame in, a verdict out, with every rewrite done in place. No DPDK,
//! no clock, no allocation: the port layer hands in the bytes, the input port and `now`, and
//! carries out the verdict. Everything the control thread must hear about (new flows,
//! learned neighbors) goes into a preallocated outbox drained after each burst.

use crate::cluster::{self, rank, Membership, MAX_HOPS, NO_NODE};
use crate::counters::{Absorbed, DropReason, WorkerCounters, MAX_PORTS};
use crate::flow::table::Lookahead;
use crate::flow::Mark;
use crate::flow::{Capacity, FlowKey, FlowRecord, FlowState, FlowTable, Insert, Timeouts, UNBOUND};
use crate::messages::{FromWorker, ToWorker};
use crate::neighbor::Neighbors;
use crate::qos::admission::{Load, Queue, Refused, Waiting};
use crate::qos::hist::{HistSet, Kind};
use crate::qos::probe;
use crate::select::{p2c, path};
use crate::services::{PortInfo, Service, Services, SELECTION_SEED};
use crate::wire::ethernet::{self, Mac, L2};
use crate::wire::icmp;
use crate::wire::ipv4::{self, Ipv4Error};
use crate::wire::ipv6;
use crate::wire::l4::{self, ACK, FIN, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, RST, SYN};
use crate::wire::tunnel;
use crate::wire::{arp, WireError};
use std::sync::Arc;
use tandem_config::{Mode, OnBackendDown, Selection};

/// A frame inside its buffer: `buf` is the whole data room (headroom included) so a verdict
/// may move `start` back to prepend headers, or forward to strip a VLAN tag.
pub struct PacketBuf<'a> {
    pub buf: &'a mut [u8],
    pub start: usize,
    pub len: usize,
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
    /// created on another worker a moment ago): park the frame and process it again when a
    /// record with this hint of its client side (`parking::hint`) arrives. Nothing in the
    /// frame was changed.
    Defer(u16),
    /// A new flow of this service found every backend at its limit (or others waiting
    /// before it): the port layer puts the frame in the service's queue (`Core::hold`).
    /// Nothing in the frame was changed.
    Hold(u16),
    Drop(DropReason),
}

/// Largest outer IP packet a GUE encapsulation may produce (the backend link's MTU).
pub const GUE_MAX_IP_LEN: usize = 1500;

/// Largest outer IP packet sent to another node. Links between nodes need an MTU above
/// the clients' by the 36 (IPv4) or 56 (IPv6) bytes of encapsulation, as with GLB or Katran.
pub const NODE_MAX_IP_LEN: usize = 9000;

/// Capacity of the outbox to the control thread, per burst.
pub const OUTBOX_CAP: usize = 8192;
/// Flows a one-worker node lists per millisecond when only the listing needs them (100 000
/// a second, well within the control thread's means); beyond, a flood, they are served but
/// not listed.
pub const LISTED_PER_MS: u32 = 100;

/// One worker's packet core: the services snapshot it reads and the state it changes.
///
/// The two are separate fields so the packet path can borrow the snapshot while it changes
/// the state, without touching the `Arc`'s reference count per packet. `Core` derefs to its
/// `State` (`core.table`, `core.counters`, ...).
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
    pub counters: Arc<WorkerCounters>,
    pub outbox: Vec<FromWorker>,
    last_need_ms: u32,
    /// Flows admitted per backend, shared by the node's workers.
    pub load: Arc<Load>,
    /// This period's latency histograms.
    pub hist: Box<HistSet>,
    /// The node's clock in microseconds (set by the port layer per burst).
    pub now_us: u64,
    /// Per service: new flows waiting for a slot (sized at start; see `hold`).
    pub queues: Vec<Queue>,
    /// The service whose queue's head is being run again (it must not queue behind itself).
    releasing: Option<u16>,
    /// The flow of the last frame given `Verdict::Hold`.
    held_key: FlowKey,
    /// Other workers on this node (`Options::siblings`), fixed at start.
    siblings: bool,
    /// Part of a cluster (peers get flows once their handshake completes).
    clustered: bool,
    /// Half-open flows still to be listed in millisecond `listing_ms` (see `announce`).
    listing_left: u32,
    listing_ms: u32,
    /// The frame being processed was processed before (see `Core::process_again`).
    again: bool,
}

impl std::ops::Deref for Core {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}

impl std::ops::DerefMut for Core {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.state
    }
}

/// The ports of a TCP or UDP packet to `dst`; any other protocol is not one tandem balances
/// (and a VIP's, or someone else's, is said apart in the counters).
#[inline]
fn transport(
    s: &Services,
    dst: &[u8; 16],
    proto: u8,
    payload: &[u8],
) -> Result<l4::Ports, Verdict> {
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return Err(Verdict::Drop(if s.is_vip(dst) {
            DropReason::UnsupportedProtocol
        } else {
            DropReason::NotForUs
        }));
    }
    l4::parse(proto, payload).map_err(|e| Verdict::Drop(wire_drop(e)))
}

fn wire_drop(e: WireError) -> DropReason {
    match e {
        WireError::Truncated => DropReason::Truncated,
        WireError::Malformed => DropReason::Malformed,
    }
}

/// How often a live flow is re-announced to the control thread: a quarter of its timeout,
/// within [250ms, 30s].
#[inline]
fn sync_interval(t: &Timeouts, s: FlowState) -> u32 {
    (t.for_state(s) / 4).clamp(250, 30_000)
}

/// A packet of a known flow was seen: advance its state and liveness. True when the control
/// thread should hear of it (the state changed, or it is due for a refresh).
#[inline]
fn touch(r: &mut FlowRecord, flags: u8, now_ms: u32, t: &Timeouts) -> bool {
    let before = r.state;
    r.state = r.state.next(flags);
    r.last_seen_ms = now_ms;
    let announce =
        r.state != before || now_ms.wrapping_sub(r.last_sync_ms) >= sync_interval(t, r.state);
    if announce {
        r.last_sync_ms = now_ms;
    }
    announce
}

/// Passive timing, request side (nat): client payload starts a response timing when none
/// is under way. A timing pending past `timeout_us` is recorded as a timeout. A client that
/// gives up (FIN or RST) while waiting records how long it waited: a timeout when that
/// reached `timeout_us`, else a plain sample (the response took at least that long), so a
/// client that half-closes right after its request does not make a backend look slow.
#[inline]
fn mark_request(r: &mut FlowRecord, seg: l4::Ports, now_us: u64, h: &mut HistSet, timeout_us: u64) {
    if r.mark != Mark::None {
        let waited = u64::from((now_us as u32).wrapping_sub(r.mark_us));
        let kind = mark_kind(r.mark);
        if waited >= timeout_us {
            h.record_timeout(r.backend, r.primary_path, kind, timeout_us);
            r.mark = Mark::None;
        } else if seg.flags & (FIN | RST) != 0 {
            h.record(r.backend, r.primary_path, kind, waited);
            r.mark = Mark::None;
        }
    }
    if r.mark == Mark::None && seg.payload_len > 0 && seg.flags & RST == 0 {
        r.mark = Mark::Response;
        r.mark_us = now_us as u32;
    }
}

/// Passive timing, reply side (nat): the SYN-ACK ends a handshake timing, the first server
/// payload a response timing; a server reset ends either as a reset. True when a sample was
/// recorded.
#[inline]
fn mark_reply(
    r: &mut FlowRecord,
    seg: l4::Ports,
    now_us: u64,
    h: &mut HistSet,
    timeout_us: u64,
) -> bool {
    let kind = match r.mark {
        Mark::None => return false,
        m => mark_kind(m),
    };
    let took = u64::from((now_us as u32).wrapping_sub(r.mark_us));
    if seg.flags & RST != 0 {
        h.record_reset(r.backend, r.primary_path, kind, timeout_us);
    } else if (r.mark == Mark::Handshake && seg.flags & (SYN | ACK) == SYN | ACK)
        || (r.mark == Mark::Response && seg.payload_len > 0)
    {
        if took > timeout_us {
            h.record_timeout(r.backend, r.primary_path, kind, timeout_us);
        } else {
            h.record(r.backend, r.primary_path, kind, took);
        }
    } else {
        return false;
    }
    r.mark = Mark::None;
    true
}

/// The flow closed: the copy that holds its backend's admission slot gives it back.
#[inline]
fn release_if_closed(load: &Load, r: &mut FlowRecord) {
    if r.admitted && r.state == FlowState::Closing {
        load.release(r.backend);
        r.admitted = false;
    }
}

#[inline]
fn mark_kind(m: Mark) -> Kind {
    if m == Mark::Handshake {
        Kind::Handshake
    } else {
        Kind::Response
    }
}

/// How a packet reached this node: straight from the network, or from another node that
/// received it and sent it on (with the flow's primary and backup as it ranked them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Direct,
    Node(tunnel::Header),
}

/// True when other nodes should store this record: the flow is bound to a backend and past
/// its handshake (a SYN flood fills only the receiving and primary nodes' tables).
#[inline]
fn for_peers(r: &FlowRecord) -> bool {
    r.bound() && r.state != FlowState::SynSeen
}

/// A histogram set shaped for these services' backends and paths.
pub fn hist_for(s: &Services) -> HistSet {
    let paths: Vec<usize> = s.backends.iter().map(|b| b.paths.len()).collect();
    HistSet::new(&paths)
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
        let queues = services
            .services
            .iter()
            .map(|svc| {
                let len = if svc.admission { svc.queue_max_len } else { 0 };
                Queue::new(len, svc.queue_max_wait_us)
            })
            .collect();
        Core {
            services,
            state: State {
                worker,
                table: FlowTable::new(capacity, timeouts, table_seed),
                neighbors: Neighbors::default(),
                link_up: [true; MAX_PORTS],
                membership: Membership::default(),
                counters,
                outbox: Vec::with_capacity(OUTBOX_CAP),
                last_need_ms: u32::MAX,
                load: Arc::new(Load::default()),
                hist,
                now_us: 0,
                queues,
                releasing: None,
                held_key: FlowKey::default(),
                siblings,
                clustered,
                listing_left: LISTED_PER_MS,
                listing_ms: 0,
                again: false,
            },
        }
    }

    /// Hands an event to the control thread (after the burst, like the core's own).
    pub fn report(&mut self, m: FromWorker) {
        self.state.emit(m);
    }

    /// Shares the node's admission counts with this core (every worker gets the same).
    pub fn with_load(mut self, load: Arc<Load>) -> Core {
        self.state.load = load;
        self
    }

    /// The node's clock for the next frames, in microseconds.
    #[inline]
    pub fn set_now_us(&mut self, us: u64) {
        self.state.now_us = us;
    }

    /// Applies one message from the control thread. `Solicit` is the port layer's to
    /// carry out (it needs a fresh buffer); it is handed back.
    pub fn apply(&mut self, msg: ToWorker, now_ms: u32) -> Option<ToWorker> {
        match msg {
            ToWorker::Flow { key, mut rec } => {
                self.counters.flows_replicated_in.inc();
                self.state.merge_local(&key, &mut rec);
                self.state.store(key, rec, now_ms);
                self.state.give_back_released();
            }
            ToWorker::Measure(fresh) => {
                let old = std::mem::replace(&mut self.hist, fresh);
                let worker = self.worker;
                self.emit(FromWorker::Measured { worker, hist: old });
            }
            ToWorker::Services(s) => {
                let old = std::mem::replace(&mut self.services, s);
                self.emit(FromWorker::Retired(old));
            }
            ToWorker::Neighbor { port, ip, mac } => {
                self.neighbors.set(port, ip, mac, now_ms);
            }
            ToWorker::Nodes(m) => self.membership = m,
            ToWorker::Link { port, up } => {
                if let Some(l) = self.link_up.get_mut(usize::from(port)) {
                    *l = up;
                }
            }
            m @ (ToWorker::Solicit { .. } | ToWorker::Probe { .. }) => return Some(m),
        }
        None
    }

    /// Writes a health probe for (backend, path) into `buf`: returns the port to send it on
    /// and its length, or None when it cannot go (no address of the backend's family on the
    /// port, the next hop not resolved yet, or no such series).
    pub fn build_probe(
        &mut self,
        backend: u16,
        path: u8,
        round: u8,
        method: probe::Method,
        buf: &mut [u8],
    ) -> Option<(u8, usize)> {
        let s = Arc::clone(&self.services);
        let b = s.backends.get(usize::from(backend))?;
        let p = *b.paths.get(usize::from(path))?;
        let series = b.series.checked_add(u16::from(path))?;
        if usize::from(series) >= probe::MAX_SERIES {
            return None;
        }
        let out = s.ports.get(usize::from(p.port))?;
        let src = if b.v6 {
            out.ipv6?.0
        } else {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&out.ipv4?.0);
            a
        };
        let now_ms = (self.now_us / 1000) as u32;
        let dst_mac = match p.mac {
            Some(m) => m,
            None => self.state.resolve(p.port, out, &b.addr, b.v6, now_ms)?,
        };
        let pr = probe::Probe {
            method,
            src_mac: out.mac,
            dst_mac,
            src,
            dst: b.addr,
            v6: b.v6,
            series,
            dport: b.port,
            round,
        };
        let len = probe::write(buf, &pr, self.now_us)?;
        self.counters.probes_sent.inc();
        Some((p.port, len))
    }

    /// Puts the frame just given `Verdict::Hold(service)` at the back of the service's
    /// queue. On refusal the caller frees the frame (counted here).
    pub fn hold(&mut self, service: u16, handle: usize, port: u8) -> Result<(), DropReason> {
        let st = &mut self.state;
        let w = Waiting {
            handle,
            port,
            key: st.held_key,
            since_us: st.now_us,
        };
        let r = match st.queues.get_mut(usize::from(service)) {
            Some(q) => q.push(w).map(|()| q.len()),
            None => Err(Refused::Full),
        };
        match r {
            Ok(len) => {
                if let Some(c) = st.counters.queues.get(usize::from(service)) {
                    c.queued.inc();
                    c.length.set(len as u64);
                }
                Ok(())
            }
            Err(e) => {
                let why = match e {
                    Refused::Full => {
                        if let Some(c) = st.counters.queues.get(usize::from(service)) {
                            c.full.inc();
                        }
                        DropReason::QueueFull
                    }
                    Refused::Duplicate => DropReason::QueueDuplicate,
                };
                st.counters.count_drop(why);
                Err(why)
            }
        }
    }

    /// True when some service has packets waiting.
    #[inline]
    pub fn has_queued(&self) -> bool {
        self.state.queues.iter().any(|q| !q.is_empty())
    }

    /// Frames waiting in the admission queues.
    pub fn queued_len(&self) -> usize {
        self.state.queues.iter().map(|q| q.len()).sum()
    }

    /// Lets waiting packets go, in order, as slots free. For each service: heads that
    /// waited past `max_wait` go to `expire` (counted `queue_timeout`); then the head is run
    /// again through `rerun` (which calls `process` and carries out the verdict, returning
    /// false when the verdict was `Hold` again: no slot yet, the head keeps its place).
    pub fn release_queued(
        &mut self,
        mut rerun: impl FnMut(&mut Core, &Waiting) -> bool,
        mut expire: impl FnMut(Waiting),
    ) {
        // Its own handle on the counters: `rerun` needs the core mutably meanwhile.
        let counters = Arc::clone(&self.counters);
        for si in 0..self.state.queues.len() {
            let Some(qc) = counters.queues.get(si) else {
                break;
            };
            loop {
                let now_us = self.now_us;
                if let Some(w) = self.state.queues[si].pop_expired(now_us) {
                    self.counters.count_drop(DropReason::QueueTimeout);
                    qc.timed_out.inc();
                    qc.length.set(self.state.queues[si].len() as u64);
                    expire(w);
                    continue;
                }
                let Some(w) = self.state.queues[si].head().copied() else {
                    break;
                };
                self.state.releasing = Some(si as u16);
                let went = rerun(self, &w);
                self.state.releasing = None;
                if !went {
                    break;
                }
                self.state.queues[si].pop();
                let waited = now_us.saturating_sub(w.since_us);
                qc.released.inc();
                qc.wait_us.add(waited);
                if waited > qc.max_wait_us.get() {
                    qc.max_wait_us.set(waited);
                }
                qc.length.set(self.state.queues[si].len() as u64);
            }
        }
    }

    /// Every waiting packet, handed back (when the worker stops).
    pub fn drain_queued(&mut self) -> Vec<Waiting> {
        self.state
            .queues
            .iter_mut()
            .flat_map(|q| q.drain().collect::<Vec<_>>())
            .collect()
    }

    /// Removes expired flows from a slice of the table; call between bursts.
    pub fn housekeeping(&mut self, now_ms: u32, buckets: usize) {
        let n = self.table.sweep(now_ms, buckets);
        self.swept(n);
    }

    /// Removes expired flows at the table's own pace (`FlowTable::sweep_paced`); call
    /// between bursts, as often as you like.
    pub fn housekeeping_paced(&mut self, now_ms: u32) {
        let n = self.table.sweep_paced(now_ms);
        self.swept(n);
    }

    fn swept(&mut self, n: usize) {
        if n > 0 {
            self.counters.flows_expired.add(n as u64);
            self.counters.flows_in_table.set(self.table.len() as u64);
        }
        self.state.give_back_released();
    }

    /// Where in the flow table this frame's lookup will land, for the port layer to
    /// prefetch in passes over a burst before processing it (l3fwd's prefetch-ahead,
    /// applied to the table, whose lines are the cache misses that dominate once flows
    /// outgrow the cache): [`Core::tags_addr`] first, then [`Core::entry_addr`].
    #[inline]
    pub fn lookahead(&self, frame: &[u8]) -> Option<Lookahead> {
        let l2 = ethernet::parse(frame).ok()?;
        let l3 = frame.get(l2.l3_offset..)?;
        let key = match l2.ethertype {
            ethernet::ETHERTYPE_IPV4 => {
                let ip = ipv4::Packet::new_checked(l3).ok()?;
                let p = l4::parse(ip.protocol(), ip.payload()).ok()?;
                FlowKey::v4(ip.src_bytes(), ip.dst_bytes(), p.src, p.dst, ip.protocol())
            }
            ethernet::ETHERTYPE_IPV6 => {
                let ip = ipv6::Packet::new_checked(l3).ok()?;
                let p = l4::parse(ip.next_header(), ip.payload()).ok()?;
                FlowKey::v6(
                    ip.src_bytes(),
                    ip.dst_bytes(),
                    p.src,
                    p.dst,
                    ip.next_header(),
                )
            }
            _ => return None,
        };
        Some(self.state.table.lookahead(&key))
    }

    /// The first line a lookup reads (its bucket's tags).
    #[inline]
    pub fn tags_addr(&self, la: Lookahead) -> *const u8 {
        self.state.table.tags_addr(la)
    }

    /// The entry a lookup will find, once its tags are in cache.
    #[inline]
    pub fn entry_addr(&self, la: Lookahead) -> Option<*const u8> {
        self.state.table.entry_addr(la)
    }

    /// Processes one frame that arrived on `in_port`.
    pub fn process(&mut self, in_port: u8, pkt: &mut PacketBuf, now_ms: u32) -> Verdict {
        let v = self
            .state
            .process_inner(&self.services, in_port, pkt, now_ms);
        match v {
            Verdict::Tx(_) => self.counters.sent.inc(),
            Verdict::Drop(r) => self.counters.count_drop(r),
            Verdict::Consumed(k) => self.counters.count_absorbed(k),
            Verdict::Defer(_) | Verdict::Hold(_) => {}
        }
        self.state.give_back_released();
        v
    }

    /// Processes a frame again: one that was parked (Defer) or queued (Hold) the first
    /// time. What counts a frame once on arrival (`node_received`) is not counted again.
    pub fn process_again(&mut self, in_port: u8, pkt: &mut PacketBuf, now_ms: u32) -> Verdict {
        self.state.again = true;
        let v = self.process(in_port, pkt, now_ms);
        self.state.again = false;
        v
    }

    /// Writes an ARP request or neighbor solicitation for `ip` out of `port` into `buf`;
    /// returns its length, or None when the port has no address of that family.
    pub fn build_solicit(
        &self,
        port: u8,
        ip: &[u8; 16],
        v6: bool,
        buf: &mut [u8],
    ) -> Option<usize> {
        let info = self.services.ports.get(usize::from(port))?;
        if v6 {
            let (src, _) = info.ipv6?;
            let len = ethernet::HEADER_LEN + ipv6::HEADER_LEN + icmp::ND_LEN;
            if buf.len() < len {
                return None;
            }
            let mut dst = [0u8; 16];
            dst[0] = 0xff;
            dst[1] = 0x02;
            dst[11] = 1;
            dst[12] = 0xff;
            dst[13..].copy_from_slice(&ip[13..]);
            let mac = [0x33, 0x33, dst[12], dst[13], dst[14], dst[15]];
            ethernet::write_header(buf, &mac, &info.mac, ethernet::ETHERTYPE_IPV6);
            ipv6::emit(&mut buf[14..], src, dst, PROTO_ICMPV6, icmp::ND_LEN, 255);
            let b = &mut buf[54..54 + icmp::ND_LEN];
            icmp::emit_nd(b, icmp::V6_NEIGHBOR_SOLICIT, ip, &info.mac);
            icmp::fill_checksum_v6(&src, &dst, b);
            Some(len)
        } else {
            let (src, _) = info.ipv4?;
            let len = 60; // 42 bytes padded to the Ethernet minimum
            if buf.len() < len {
                return None;
            }
            buf[..len].fill(0);
            ethernet::write_header(
                buf,
                &ethernet::BROADCAST,
                &info.mac,
                ethernet::ETHERTYPE_ARP,
            );
            let a = arp::Arp {
                op: arp::OP_REQUEST,
                sender_mac: info.mac,
                sender_ip: src.into(),
                target_mac: [0; 6],
                target_ip: [ip[0], ip[1], ip[2], ip[3]].into(),
            };
            arp::emit(&mut buf[14..], &a);
            Some(len)
        }
    }
}

impl State {
    /// Slots of admitted flows the table dropped (expired, evicted) go back to their
    /// backends.
    #[inline]
    fn give_back_released(&mut self) {
        if self.table.has_released() {
            for b in self.table.take_released() {
                self.load.release(b);
            }
        }
    }

    /// A record from another worker replaces this worker's copy: the copy's admission slot
    /// and its passive measurement under way are this worker's and stay with it (the slot is
    /// given back if the flow closed or moved to another backend).
    fn merge_local(&mut self, key: &FlowKey, rec: &mut FlowRecord) {
        rec.admitted = false;
        let Some(old) = self.table.peek(key).copied() else {
            rec.mark = Mark::None;
            return;
        };
        if old.admitted {
            if rec.state == FlowState::Closing || old.backend != rec.backend {
                self.load.release(old.backend);
            } else {
                rec.admitted = true;
            }
        }
        if old.backend == rec.backend {
            rec.mark = old.mark;
            rec.mark_us = old.mark_us;
        } else {
            rec.mark = Mark::None;
        }
    }

    #[inline]
    fn emit(&mut self, m: FromWorker) {
        if self.outbox.len() < OUTBOX_CAP {
            self.outbox.push(m);
        } else {
            self.counters.outbox_overflow.inc();
        }
    }

    /// Tells the control thread of a flow: it hands the record to this node's other workers
    /// and (`peers`) to the other nodes, and lists it (`show flow`). When only the listing
    /// needs it (one worker, and either no cluster or a flow the peers do not get yet: a
    /// half-open one), at most `LISTED_PER_MS` go a millisecond and the rest are counted:
    /// a flood of new flows then costs the control thread next to nothing, where a message
    /// and a map insert per flow saturated it near a million a second.
    #[inline]
    fn announce(&mut self, key: FlowKey, rec: FlowRecord, peers: bool) {
        if !self.siblings && (!peers || !self.clustered) {
            let ms = (self.now_us / 1000) as u32;
            if ms != self.listing_ms {
                self.listing_ms = ms;
                self.listing_left = LISTED_PER_MS;
            }
            if self.listing_left == 0 {
                self.counters.flows_unlisted.inc();
                return;
            }
            self.listing_left -= 1;
        }
        self.emit(FromWorker::Flow {
            worker: self.worker,
            key,
            rec,
            peers,
        });
    }

    /// Sends the packet (its IP packet, unchanged) on to cluster node `node`, in UDP with
    /// the node header naming the flow's primary and backup.
    #[allow(clippy::too_many_arguments)]
    fn send_to_node(
        &mut self,
        s: &Services,
        pkt: &mut PacketBuf,
        l2: &L2,
        key: &FlowKey,
        node: u8,
        rec: &FlowRecord,
        flags: u8,
        now_ms: u32,
    ) -> Verdict {
        let Some(cl) = s.cluster.as_ref() else {
            return Verdict::Drop(DropReason::NoNode);
        };
        let Some(n) = cl.nodes.get(usize::from(node)) else {
            return Verdict::Drop(DropReason::NoNode);
        };
        let Some(out) = s.ports.get(usize::from(n.port)) else {
            return Verdict::Drop(DropReason::NoPath);
        };
        if !self.link_up[usize::from(n.port)] {
            return Verdict::Drop(DropReason::NoPath);
        }
        let next_mac = match n.mac {
            Some(m) => m,
            None => match self.resolve(n.port, out, &n.addr, n.v6, now_ms) {
                Some(m) => m,
                None => return Verdict::Drop(DropReason::NoNeighbor),
            },
        };
        let hdr = tunnel::Header {
            flags,
            hops: 1,
            primary: cl.id_of(rec.primary_node),
            backup: cl.id_of(rec.backup_node),
        };
        // Entropy for the fabric's ECMP, from the flow's client side.
        let sport = 0xc000 | (key.hash(SELECTION_SEED) as u16 & 0x3fff);
        let v = encap_udp(
            pkt,
            l2.l3_offset,
            key.v6,
            n.v6,
            out,
            &next_mac,
            n.addr,
            sport,
            cl.forward_port,
            Some(&hdr),
            n.port,
        );
        if let Verdict::Tx(_) = v {
            self.counters.node_forwarded.inc();
        }
        v
    }

    /// Stores a flow's record (nat replies find it too: see `reply_flow`).
    fn store(&mut self, key: FlowKey, rec: FlowRecord, now_ms: u32) -> Insert {
        self.store_as(key, rec, now_ms, false)
    }

    /// Stores the record of a flow the table was just asked for and does not hold, without
    /// looking for it again.
    fn store_new(&mut self, key: FlowKey, rec: FlowRecord, now_ms: u32) -> Insert {
        self.store_as(key, rec, now_ms, true)
    }

    #[inline(always)]
    fn store_as(&mut self, key: FlowKey, mut rec: FlowRecord, now_ms: u32, absent: bool) -> Insert {
        // Replicated records carry the sender's clock fields; ours restart them.
        rec.last_seen_ms = now_ms;
        rec.last_sync_ms = now_ms;
        let r = if absent {
            self.table.insert_absent(key, rec, now_ms)
        } else {
            self.table.insert(key, rec, now_ms)
        };
        match r {
            Insert::Refused => self.counters.flows_refused.inc(),
            Insert::Evicted => self.counters.flows_evicted.inc(),
            _ => {}
        }
        self.counters.flows_in_table.set(self.table.len() as u64);
        r
    }

    fn process_inner(
        &mut self,
        s: &Services,
        in_port: u8,
        pkt: &mut PacketBuf,
        now_ms: u32,
    ) -> Verdict {
        let l2 = match ethernet::parse(pkt.frame()) {
            Ok(l2) => l2,
            Err(e) => return Verdict::Drop(wire_drop(e)),
        };
        let Some(port) = s.ports.get(usize::from(in_port)) else {
            return Verdict::Drop(DropReason::NotForUs);
        };
        if l2.dst != port.mac && !ethernet::is_multicast(&l2.dst) {
            return Verdict::Drop(DropReason::NotForUs);
        }
        match l2.ethertype {
            ethernet::ETHERTYPE_ARP => self.arp(s, in_port, pkt, &l2, now_ms),
            ethernet::ETHERTYPE_IPV4 => self.ipv4(s, in_port, pkt, &l2, now_ms, Via::Direct),
            ethernet::ETHERTYPE_IPV6 => self.ipv6(s, in_port, pkt, &l2, now_ms, Via::Direct),
            _ => Verdict::Drop(DropReason::UnsupportedEthertype),
        }
    }

    fn learn(&mut self, port: u8, ip: [u8; 16], mac: Mac, now_ms: u32) {
        if ip == [0; 16] || ethernet::is_multicast(&mac) {
            return;
        }
        if self.neighbors.set(port, ip, mac, now_ms) {
            self.emit(FromWorker::Neighbor { port, ip, mac });
        }
    }

    fn arp(
        &mut self,
        s: &Services,
        in_port: u8,
        pkt: &mut PacketBuf,
        l2: &L2,
        now_ms: u32,
    ) -> Verdict {
        let a = match arp::parse(&pkt.frame()[l2.l3_offset..]) {
            Ok(a) => a,
            Err(e) => return Verdict::Drop(wire_drop(e)),
        };
        let port = &s.ports[usize::from(in_port)];
        let port_mac = port.mac;
        let sender = a.sender_ip.octets();
        let mut sender16 = [0u8; 16];
        sender16[..4].copy_from_slice(&sender);
        let on_link = port.on_link(&sender);
        let target = a.target_ip.octets();
        let mut target16 = [0u8; 16];
        target16[..4].copy_from_slice(&target);
        let ours = port.ipv4.is_some_and(|(ip, _)| ip == target) || s.is_vip(&target16);
        if on_link {
            self.learn(in_port, sender16, a.sender_mac, now_ms);
        }
        if a.op == arp::OP_REQUEST && ours {
            let reply = arp::Arp {
                op: arp::OP_REPLY,
                sender_mac: port_mac,
                sender_ip: a.target_ip,
                target_mac: a.sender_mac,
                target_ip: a.sender_ip,
            };
            let f = pkt.frame_mut();
            f[0..6].copy_from_slice(&l2.src);
            f[6..12].copy_from_slice(&port_mac);
            arp::emit(&mut f[l2.l3_offset..], &reply);
            self.counters.arp_replies.inc();
            return Verdict::Tx(in_port);
        }
        if on_link {
            Verdict::Consumed(Absorbed::Arp)
        } else {
            Verdict::Drop(DropReason::NotForUs)
        }
    }

    fn ipv4(
        &mut self,
        s: &Services,
        in_port: u8,
        pkt: &mut PacketBuf,
        l2: &L2,
        now_ms: u32,
        via: Via,
    ) -> Verdict {
        let l3 = l2.l3_offset;
        let ip = match ipv4::Packet::new_checked(&pkt.frame()[l3..]) {
            Ok(p) => p,
            Err(Ipv4Error::Wire(e)) => return Verdict::Drop(wire_drop(e)),
            Err(Ipv4Error::BadIhl) => return Verdict::Drop(DropReason::BadIhl),
            Err(Ipv4Error::Fragment) => return Verdict::Drop(DropReason::Ipv4Fragment),
        };
        let proto = ip.protocol();
        let (src4, dst4) = (ip.src_bytes(), ip.dst_bytes());
        let hl = ip.header_len();
        let mut dst16 = [0u8; 16];
        dst16[..4].copy_from_slice(&dst4);
        let to_port = s.ports[usize::from(in_port)]
            .ipv4
            .is_some_and(|(a, _)| a == dst4);
        if to_port && proto == PROTO_UDP {
            if let Some(cl) = &s.cluster {
                if l4::parse(proto, ip.payload()).is_ok_and(|p| p.dst == cl.forward_port) {
                    return self.take_from_node(s, in_port, pkt, l2, l3 + hl, now_ms, via);
                }
            }
        }
        if to_port && via == Via::Direct {
            let mut src16 = [0u8; 16];
            src16[..4].copy_from_slice(&src4);
            let reply = match proto {
                PROTO_TCP => probe::tcp_reply(ip.payload(), src16, self.now_us),
                PROTO_ICMP => probe::echo_reply(ip.payload(), false, src16, self.now_us),
                _ => None,
            };
            if let Some(r) = reply {
                return self.probe_reply(s, in_port, pkt, l2, l3 + hl, proto, false, r);
            }
        }
        if proto == PROTO_ICMP && via == Via::Direct {
            if to_port || s.is_vip(&dst16) {
                return self.icmp4_echo(s, in_port, pkt, l2, hl);
            }
            return Verdict::Drop(DropReason::NotForUs);
        }
        let ports = match transport(s, &dst16, proto, ip.payload()) {
            Ok(p) => p,
            Err(v) => return v,
        };
        let key = FlowKey::v4(src4, dst4, ports.src, ports.dst, proto);
        self.l4(s, in_port, pkt, l2, hl, key, ports, now_ms, via)
    }

    fn ipv6(
        &mut self,
        s: &Services,
        in_port: u8,
        pkt: &mut PacketBuf,
        l2: &L2,
        now_ms: u32,
        via: Via,
    ) -> Verdict {
        let l3 = l2.l3_offset;
        let ip = match ipv6::Packet::new_checked(&pkt.frame()[l3..]) {
            Ok(p) => p,
            Err(e) => return Verdict::Drop(wire_drop(e)),
        };
        let nh = ip.next_header();
        let (src, dst) = (ip.src_bytes(), ip.dst_bytes());
        let to_port = s.ports[usize::from(in_port)]
            .ipv6
            .is_some_and(|(a, _)| a == dst);
        if to_port && via == Via::Direct {
            let reply = match nh {
                PROTO_TCP => probe::tcp_reply(ip.payload(), src, self.now_us),
                PROTO_ICMPV6 => probe::echo_reply(ip.payload(), true, src, self.now_us),
                _ => None,
            };
            if let Some(r) = reply {
                let at = l3 + ipv6::HEADER_LEN;
                return self.probe_reply(s, in_port, pkt, l2, at, nh, true, r);
            }
        }
        if nh == PROTO_ICMPV6 && via == Via::Direct {
            return self.icmp6(s, in_port, pkt, l2, now_ms);
        }
        if nh == PROTO_UDP {
            if let Some(cl) = &s.cluster {
                let to_port = s.ports[usize::from(in_port)]
                    .ipv6
                    .is_some_and(|(a, _)| a == dst);
                if to_port && l4::parse(nh, ip.payload()).is_ok_and(|p| p.dst == cl.forward_port) {
                    let at = l3 + ipv6::HEADER_LEN;
                    return self.take_from_node(s, in_port, pkt, l2, at, now_ms, via);
                }
            }
        }
        let ports = match transport(s, &dst, nh, ip.payload()) {
            Ok(p) => p,
            Err(v) => return v,
        };
        let key = FlowKey::v6(src, dst, ports.src, ports.dst, nh);
        self.l4(
            s,
            in_port,
            pkt,
            l2,
            ipv6::HEADER_LEN,
            key,
            ports,
            now_ms,
            via,
        )
    }

    /// A reply to one of this node's health probes: recorded, reported to the control
    /// thread, and a SYN-ACK answered with the reset that closes the half-open connection.
    #[allow(clippy::too_many_arguments)]
    fn probe_reply(
        &mut self,
        s: &Services,
        in_port: u8,
        pkt: &mut PacketBuf,
        l2: &L2,
        l4_at: usize,
        proto: u8,
        v6: bool,
        r: probe::Reply,
    ) -> Verdict {
        let Some(&(backend, path)) = s.series.get(usize::from(r.series)) else {
            return Verdict::Drop(DropReason::NotForUs);
        };
        let b = &s.backends[usize::from(backend)];
        if b.addr != r.from || b.v6 != v6 {
            return Verdict::Drop(DropReason::NotForUs);
        }
        self.counters.probe_replies.inc();
        match r.outcome {
            probe::Outcome::Answered(us) => {
                self.hist.record(backend, path, Kind::Probe, u64::from(us))
            }
            probe::Outcome::Refused => {
                self.hist
                    .record_reset(backend, path, Kind::Probe, s.options.probe_timeout_us)
            }
        }
        self.emit(FromWorker::Probe {
            backend,
            path,
            round: r.round,
            outcome: r.outcome,
        });
        if proto == PROTO_TCP && matches!(r.outcome, probe::Outcome::Answered(_)) {
            let mac = s.ports[usize::from(in_port)].mac;
            let room = pkt.buf.len() - pkt.start;
            let l3 = l2.l3_offset;
            let f = &mut pkt.buf[pkt.start..pkt.start + room];
            pkt.len = probe::synack_to_rst(f, l3, l4_at, v6, &mac);
            self.counters.probe_resets.inc();
            return Verdict::Tx(in_port);
        }
        Verdict::Consumed(Absorbed::ProbeReply)
    }

    /// A packet another node sent on: check the node header and serve the packet inside.
    #[allow(clippy::too_many_arguments)]
    fn take_from_node(
        &mut self,
        s: &Services,
        in_port: u8,
        pkt: &mut PacketBuf,
        l2: &L2,
        udp_at: usize,
        now_ms: u32,
        via: Via,
    ) -> Verdict {
        if via != Via::Direct {
            return Verdict::Drop(DropReason::HopLimit);
        }
        let at = udp_at + l4::UDP_LEN;
        let h = match tunnel::parse(pkt.frame().get(at..).unwrap_or(&[])) {
            Ok(h) => h,
            Err(e) => return Verdict::Drop(wire_drop(e)),
        };
        if h.hops > MAX_HOPS {
            return Verdict::Drop(DropReason::HopLimit);
        }
        // Only the cluster's nodes send on the tunnel port, and name nodes that exist:
        // anyone else could otherwise reach a backend with whatever roles they claim.
        let Some(cl) = s.cluster.as_ref() else {
            return Verdict::Drop(DropReason::NotFromNode);
        };
        let l3 = l2.l3_offset;
        let f = pkt.frame();
        let src: &[u8] = match f.get(l3).map(|b| b >> 4) {
            Some(4) => f.get(l3 + 12..l3 + 16).unwrap_or(&[]),
            Some(6) => f.get(l3 + 8..l3 + 24).unwrap_or(&[]),
            _ => &[],
        };
        let from = cl.nodes.iter().position(|n| {
            let a: &[u8] = if n.v6 { &n.addr } else { &n.addr[..4] };
            a == src
        });
        match from {
            Some(i) if i != usize::from(cl.me) => {}
            _ => return Verdict::Drop(DropReason::NotFromNode),
        }
        let known = |id: u16| cl.nodes.iter().any(|n| n.id == id);
        if !known(h.primary) || (h.backup != 0 && (!known(h.backup) || h.backup == h.primary)) {
            return Verdict::Drop(DropReason::BadNodeHeader);
        }
        let inner = at + tunnel::HEADER_LEN;
        let Some(&first) = pkt.frame().get(inner) else {
            return Verdict::Drop(DropReason::Truncated);
        };
        if !self.again {
            self.counters.node_received.inc();
        }
        let il2 = L2 {
            l3_offset: inner,
            ..*l2
        };
        match first >> 4 {
            4 => self.ipv4(s, in_port, pkt, &il2, now_ms, Via::Node(h)),
            6 => self.ipv6(s, in_port, pkt, &il2, now_ms, Via::Node(h)),
            _ => Verdict::Drop(DropReason::Malformed),
        }
    }

    /// TCP or UDP: to a service, or a nat reply from a backend.
    #[allow(clippy::too_many_arguments)]
    fn l4(
        &mut self,
        s: &Services,
        in_port: u8,
        pkt: &mut PacketBuf,
        l2: &L2,
        hl: usize,
        key: FlowKey,
        seg: l4::Ports,
        now_ms: u32,
        via: Via,
    ) -> Verdict {
        let services = s;
        if let Some(svc) = services.lookup(&key.dst, key.dport, key.proto) {
            if svc.v6 != key.v6 {
                return Verdict::Drop(DropReason::UnknownService);
            }
            return self.forward_to_backend(s, in_port, pkt, l2, hl, key, seg, svc, now_ms, via);
        }
        if services.is_vip(&key.dst) {
            return Verdict::Drop(DropReason::UnknownService);
        }
        self.nat_reply(s, pkt, l2, hl, key, seg, now_ms, via)
    }

    #[allow(clippy::too_many_arguments)]
    fn forward_to_backend(
        &mut self,
        s: &Services,
        in_port: u8,
        pkt: &mut PacketBuf,
        l2: &L2,
        hl: usize,
        key: FlowKey,
        seg: l4::Ports,
        svc: &Service,
        now_ms: u32,
        via: Via,
    ) -> Verdict {
        let flags = seg.flags;
        let timeouts = *self.table.timeouts();
        let cl = s.cluster.as_ref();
        let nat = svc.mode == Mode::Nat;
        let timeout_us = s.options.qos_timeout_us;
        let syn_only = key.proto == PROTO_TCP && flags & (SYN | ACK | RST | FIN) == SYN;
        let found = match self.table.get_mut(&key, now_ms) {
            // A client's SYN on a flow that has closed: the client reused its port for a
            // new connection (HTTP/1.0 servers close first, so clients keep no TIME_WAIT
            // and reuse ports at once). The old record goes, and the SYN starts a new flow,
            // chosen afresh, as IPVS's `conn_reuse_mode` does; otherwise it would follow
            // the old flow to a backend that may be draining or gone.
            Some(r) if syn_only && r.state == FlowState::Closing => {
                self.table.remove(&key);
                None
            }
            found => found,
        };
        let rec = match found {
            Some(r) => {
                let mut announce = touch(r, flags, now_ms, &timeouts);
                release_if_closed(&self.load, r);
                if nat && r.bound() {
                    mark_request(r, seg, self.now_us, &mut self.hist, timeout_us);
                }
                let mut rec = *r;
                if let (Some(cl), Via::Direct) = (cl, via) {
                    let h = rank::of_request(&key);
                    let m = self.membership;
                    match cluster::owner(cl, &m, rec.primary_node, rec.backup_node, h) {
                        Some(n) if n != cl.me => {
                            if announce {
                                self.announce(key, rec, false);
                            }
                            return self.send_to_node(s, pkt, l2, &key, n, &rec, 0, now_ms);
                        }
                        _ => {}
                    }
                }
                let moved = rec.bound()
                    && key.proto == PROTO_UDP
                    && s.options.on_backend_down == OnBackendDown::Move
                    && s.backends
                        .get(usize::from(rec.backend))
                        .is_some_and(|b| !b.up);
                if !rec.bound() || moved {
                    // Served here although its primary took the first packet (that node
                    // died during the handshake): chosen by the same hash (with `weights`,
                    // the same backend; with two choices, possibly the other candidate).
                    // Or a UDP flow whose backend went down, moved as configured.
                    if rec.admitted {
                        self.load.release(rec.backend);
                        rec.admitted = false;
                    }
                    rec.mark = Mark::None;
                    if let Err(v) = self.bind(s, svc, &key, &mut rec) {
                        return self.hold_or(v, key);
                    }
                    self.store(key, rec, now_ms);
                    announce = true;
                }
                if cl.is_some_and(|c| rec.primary_node != c.me) {
                    self.counters.node_failovers.inc();
                }
                if announce {
                    self.announce(key, rec, for_peers(&rec));
                }
                rec
            }
            None => {
                let mut rec = FlowRecord {
                    service: svc.id,
                    backend: UNBOUND,
                    state: FlowState::initial(key.proto, flags),
                    ingress_port: in_port,
                    client_mac: l2.src,
                    last_seen_ms: now_ms,
                    last_sync_ms: now_ms,
                    ..FlowRecord::default()
                };
                match (cl, via) {
                    (None, _) => {}
                    (Some(cl), Via::Node(h)) => {
                        rec.primary_node = cl.index_of(h.primary).unwrap_or(cl.me);
                        rec.backup_node = cl.index_of(h.backup).unwrap_or(NO_NODE);
                    }
                    (Some(cl), Via::Direct) => {
                        let h = rank::of_request(&key);
                        let (p, b) = rank::top2(h, &cl.nodes, self.membership.eligible);
                        let Some(p) = p else {
                            return Verdict::Drop(DropReason::NoNode);
                        };
                        rec.primary_node = p;
                        rec.backup_node = b.unwrap_or(NO_NODE);
                        if p != cl.me {
                            // Remember the ranking, so the flow's next packets go to the
                            // same node whatever joins or leaves meanwhile.
                            if self.store(key, rec, now_ms) == Insert::Refused {
                                return Verdict::Drop(DropReason::TableFull);
                            }
                            self.announce(key, rec, false);
                            return self.send_to_node(s, pkt, l2, &key, p, &rec, 0, now_ms);
                        }
                    }
                }
                // First come, first served: while others wait, a new flow waits behind them.
                if svc.admission
                    && self.releasing != Some(svc.id)
                    && self
                        .queues
                        .get(usize::from(svc.id))
                        .is_some_and(|q| !q.is_empty())
                {
                    return self.hold_or(Verdict::Hold(svc.id), key);
                }
                if let Err(v) = self.bind(s, svc, &key, &mut rec) {
                    return self.hold_or(v, key);
                }
                if nat {
                    if rec.state == FlowState::SynSeen {
                        rec.mark = Mark::Handshake;
                        rec.mark_us = self.now_us as u32;
                    } else if seg.payload_len > 0 {
                        rec.mark = Mark::Response;
                        rec.mark_us = self.now_us as u32;
                    }
                }
                if self.store_new(key, rec, now_ms) == Insert::Refused {
                    if rec.admitted {
                        self.load.release(rec.backend);
                    }
                    return Verdict::Drop(DropReason::TableFull);
                }
                self.counters.flows_created.inc();
                self.counters.backend_new_flows[usize::from(rec.backend)].inc();
                self.announce(key, rec, for_peers(&rec));
                rec
            }
        };
        let services = s;
        let Some(backend) = services.backends.get(usize::from(rec.backend)) else {
            return Verdict::Drop(DropReason::NoBackend);
        };
        // The primary path, or the backup when the primary's port is down or its probes
        // fail; a path whose probes fail is still used when it is the only one left.
        let link = &self.link_up;
        let usable = |p: &&crate::services::Path| link[usize::from(p.port)] && p.up;
        let linked = |p: &&crate::services::Path| link[usize::from(p.port)];
        let primary = backend.paths.get(usize::from(rec.primary_path));
        let backup = backend.paths.get(usize::from(rec.backup_path));
        let p = if primary.filter(usable).is_some() {
            primary
        } else if let Some(b) = backup.filter(usable) {
            self.counters.path_failovers.inc();
            Some(b)
        } else if primary.filter(linked).is_some() {
            primary
        } else {
            self.counters.path_failovers.inc();
            backup.filter(linked)
        };
        let Some(path) = p.copied() else {
            return Verdict::Drop(DropReason::NoPath);
        };
        let out = &services.ports[usize::from(path.port)];
        let next_mac = match path.mac {
            Some(m) => m,
            None => match self.resolve(path.port, out, &backend.addr, backend.v6, now_ms) {
                Some(m) => m,
                None => return Verdict::Drop(DropReason::NoNeighbor),
            },
        };
        let l3 = l2.l3_offset;
        match svc.mode {
            Mode::Dsr => {}
            Mode::Nat => {
                let f = pkt.frame_mut();
                if let Err(r) = rewrite_l3(
                    &mut f[l3..],
                    key.v6,
                    hl,
                    key.proto,
                    Rewrite::Dst,
                    &backend.addr,
                    backend.port,
                ) {
                    return Verdict::Drop(r);
                }
            }
            Mode::Gue => {
                // Entropy for the fabric's ECMP: the flow's hash in the UDP source port.
                let sport = 0xc000 | (key.hash(SELECTION_SEED) as u16 & 0x3fff);
                return encap_udp(
                    pkt,
                    l3,
                    key.v6,
                    key.v6,
                    out,
                    &next_mac,
                    backend.addr,
                    sport,
                    backend.port,
                    None,
                    path.port,
                );
            }
        }
        set_l2(pkt, l3, &next_mac, &out.mac, key.v6);
        Verdict::Tx(path.port)
    }

    /// Remembers which flow a `Hold` verdict is for (the port layer's `hold` queues it).
    #[inline]
    fn hold_or(&mut self, v: Verdict, key: FlowKey) -> Verdict {
        if let Verdict::Hold(_) = v {
            self.held_key = key;
        }
        v
    }

    /// Picks a new flow's backend and paths. The backend: two candidates drawn from the
    /// service's table (weight x QoS factor), the one with fewer active flows per unit of
    /// weight x factor winning (`qos`); or by plain weights; or the anchors' two choices.
    /// Then, when the service counts flows, a slot on it below its
    /// `max_flows` — else on whichever eligible backend has one (late binding), else the
    /// flow waits (`Hold`). The paths: a primary by share among the backend's healthy
    /// paths, the best other one as backup.
    #[inline]
    fn bind(
        &self,
        s: &Services,
        svc: &Service,
        key: &FlowKey,
        rec: &mut FlowRecord,
    ) -> Result<(), Verdict> {
        let h = key.hash(SELECTION_SEED);
        let load = &self.load;
        // Load per unit of weight: with no flows anywhere both candidates tie and the first
        // draw (already in proportion to the weights) wins, so shares follow the weights at
        // low load; an (active + 1) numerator would hand every tie to the heavier backend.
        let weight = |b: u16| f64::from(s.backends[usize::from(b)].weight.max(1));
        let chosen = match s.options.selection {
            Selection::Weights => svc.maglev.lookup(h),
            Selection::Qos => p2c::pick(&svc.maglev, h, |b| {
                f64::from(load.active(b)) / s.backends[usize::from(b)].qos_weight.max(1e-6)
            }),
            Selection::LeastFlows => {
                p2c::pick(&svc.maglev, h, |b| f64::from(load.active(b)) / weight(b))
            }
            // Finagle's cost, as the anchor: latency x (outstanding + 1), per weight.
            Selection::PeakEwma => p2c::pick(&svc.maglev, h, |b| {
                let ewma = f64::from(s.backends[usize::from(b)].ewma_us.max(1));
                ewma * f64::from(load.active(b) + 1) / weight(b)
            }),
        };
        let Some(mut backend) = chosen else {
            return Err(Verdict::Drop(DropReason::NoBackend));
        };
        if svc.counts_flows {
            let max = |b: u16| s.backends[usize::from(b)].max_flows;
            if !load.try_take(backend, max(backend)) {
                let n = svc.backends.len();
                let start = (h >> 32) as usize % n.max(1);
                let other = (0..n)
                    .map(|i| svc.backends[(start + i) % n])
                    .find(|&b| s.backends[usize::from(b)].eligible && load.try_take(b, max(b)));
                match other {
                    Some(b) => backend = b,
                    None if svc.admission => return Err(Verdict::Hold(svc.id)),
                    None => return Err(Verdict::Drop(DropReason::NoBackend)),
                }
            }
            rec.admitted = true;
        }
        let paths = &s.backends[usize::from(backend)].paths;
        let mut avail = [(false, 0u16); path::MAX_PATHS];
        let n = paths.len().min(path::MAX_PATHS);
        for (a, p) in avail.iter_mut().zip(paths.iter()) {
            *a = (p.up && self.link_up[usize::from(p.port)], p.share);
        }
        let (primary_path, backup_path) = path::choose(h, &avail[..n]);
        rec.backend = backend;
        rec.primary_path = primary_path;
        rec.backup_path = backup_path;
        Ok(())
    }

    /// The key of the flow a nat reply `key` belongs to: the reply's client side to the VIP
    /// of one of the nat services (`from`) its source serves, whose record names that very
    /// backend. None when this node has no such record (yet).
    fn reply_flow(
        &self,
        s: &Services,
        from: &[u16],
        key: &FlowKey,
        now_ms: u32,
    ) -> Option<FlowKey> {
        from.iter().find_map(|&id| {
            let svc = s.services.get(usize::from(id))?;
            let fkey = FlowKey {
                src: key.dst,
                dst: svc.vip,
                sport: key.dport,
                dport: svc.port,
                proto: key.proto,
                v6: key.v6,
            };
            // An expired record is as good as none: the reply goes where a reply without
            // a record here goes (the flow's primary node), not to the bin.
            let rec = self.table.peek_live(&fkey, now_ms)?;
            let b = s.backends.get(usize::from(rec.backend))?;
            (b.addr == key.src && b.port == key.sport).then_some(fkey)
        })
    }

    /// A reply from a nat backend: back to VIP:port, out of the port the request came in on.
    #[allow(clippy::too_many_arguments)]
    fn nat_reply(
        &mut self,
        s: &Services,
        pkt: &mut PacketBuf,
        l2: &L2,
        hl: usize,
        key: FlowKey,
        seg: l4::Ports,
        now_ms: u32,
        via: Via,
    ) -> Verdict {
        let flags = seg.flags;
        let from = s.nat_services_of(&key.src, key.sport, key.proto);
        if from.is_empty() {
            return Verdict::Drop(DropReason::NotForUs);
        }
        let Some(fkey) = self.reply_flow(s, from, &key, now_ms) else {
            // No record here yet. In a cluster, the flow's primary node has it (a reply
            // during the handshake, before the record is replicated); on this node, another
            // worker may have made it a moment ago.
            if let (Some(cl), Via::Direct) = (s.cluster.as_ref(), via) {
                let h = rank::of_reply(&key);
                if let (Some(p), b) = rank::top2(h, &cl.nodes, self.membership.eligible) {
                    if p != cl.me {
                        let rec = FlowRecord {
                            primary_node: p,
                            backup_node: b.unwrap_or(NO_NODE),
                            ..FlowRecord::default()
                        };
                        return self.send_to_node(
                            s,
                            pkt,
                            l2,
                            &key,
                            p,
                            &rec,
                            tunnel::FLAG_REPLY,
                            now_ms,
                        );
                    }
                }
            }
            return defer(&key);
        };
        let timeouts = *self.table.timeouts();
        let Some(fwd) = self.table.get_mut(&fkey, now_ms) else {
            return Verdict::Drop(DropReason::NotForUs); // reply_flow found it live
        };
        let announce = touch(fwd, flags, now_ms, &timeouts);
        release_if_closed(&self.load, fwd);
        if mark_reply(
            fwd,
            seg,
            self.now_us,
            &mut self.hist,
            s.options.qos_timeout_us,
        ) {
            self.counters.passive_samples.inc();
        }
        let rec = *fwd;
        if announce {
            self.announce(fkey, rec, for_peers(&rec));
        }
        let egress = rec.ingress_port;
        let Some(out) = s.ports.get(usize::from(egress)) else {
            return Verdict::Drop(DropReason::NoPath);
        };
        if !self.link_up[usize::from(egress)] {
            return Verdict::Drop(DropReason::NoPath);
        }
        let next_mac = self
            .resolve(egress, out, &key.dst, key.v6, now_ms)
            .unwrap_or(rec.client_mac);
        let l3 = l2.l3_offset;
        let f = pkt.frame_mut();
        if let Err(r) = rewrite_l3(
            &mut f[l3..],
            key.v6,
            hl,
            key.proto,
            Rewrite::Src,
            &fkey.dst,
            fkey.dport,
        ) {
            return Verdict::Drop(r);
        }
        set_l2(pkt, l3, &next_mac, &out.mac, key.v6);
        Verdict::Tx(egress)
    }

    /// The MAC of the next hop toward `addr` out of `port`, asking the control thread to
    /// resolve it when unknown (at most once per millisecond per worker).
    fn resolve(
        &mut self,
        port: u8,
        info: &PortInfo,
        addr: &[u8; 16],
        v6: bool,
        now_ms: u32,
    ) -> Option<Mac> {
        let hop = info.next_hop(addr, v6)?;
        if let Some(m) = self.neighbors.get(port, &hop) {
            return Some(m);
        }
        if self.last_need_ms != now_ms {
            self.last_need_ms = now_ms;
            self.emit(FromWorker::NeedNeighbor { port, ip: hop, v6 });
        }
        None
    }

    fn icmp4_echo(
        &mut self,
        s: &Services,
        in_port: u8,
        pkt: &mut PacketBuf,
        l2: &L2,
        hl: usize,
    ) -> Verdict {
        let l3 = l2.l3_offset;
        let port_mac = s.ports[usize::from(in_port)].mac;
        let f = pkt.frame_mut();
        let total = usize::from(u16::from_be_bytes([f[l3 + 2], f[l3 + 3]]));
        let body = &mut f[l3 + hl..l3 + total];
        match icmp::message_type(body) {
            Ok(icmp::ECHO_REQUEST) => {}
            Ok(_) => return Verdict::Drop(DropReason::NotForUs),
            Err(e) => return Verdict::Drop(wire_drop(e)),
        }
        icmp::echo_to_reply_v4(body);
        let mut ip = ipv4::Packet::new_unchecked(&mut f[l3..]);
        ip.swap_addresses();
        f[l3 + 8] = 64;
        ipv4::fill_checksum(&mut f[l3..]);
        swap_l2(f, &port_mac);
        self.counters.icmp_replies.inc();
        Verdict::Tx(in_port)
    }

    fn icmp6(
        &mut self,
        s: &Services,
        in_port: u8,
        pkt: &mut PacketBuf,
        l2: &L2,
        now_ms: u32,
    ) -> Verdict {
        let l3 = l2.l3_offset;
        let port = &s.ports[usize::from(in_port)];
        let (src, dst, plen) = {
            let ip = ipv6::Packet::new_unchecked(&pkt.frame()[l3..]);
            (ip.src_bytes(), ip.dst_bytes(), ip.payload_len())
        };
        let body_at = l3 + ipv6::HEADER_LEN;
        let kind = match icmp::message_type(&pkt.frame()[body_at..body_at + plen]) {
            Ok(k) => k,
            Err(e) => return Verdict::Drop(wire_drop(e)),
        };
        let ours =
            |a: &[u8; 16], s: &Services| port.ipv6.is_some_and(|(x, _)| x == *a) || s.is_vip(a);
        match kind {
            icmp::V6_ECHO_REQUEST if ours(&dst, s) => {
                let f = pkt.frame_mut();
                icmp::echo_to_reply_v6(&mut f[body_at..body_at + plen]);
                let mut ip = ipv6::Packet::new_unchecked(&mut f[l3..]);
                ip.set_src(dst);
                ip.set_dst(src);
                ip.set_hop_limit(64);
                swap_l2(f, &port.mac);
                self.counters.icmp_replies.inc();
                Verdict::Tx(in_port)
            }
            icmp::V6_NEIGHBOR_SOLICIT | icmp::V6_NEIGHBOR_ADVERT => {
                let nd = match icmp::parse_nd(&pkt.frame()[body_at..body_at + plen]) {
                    Ok(n) => n,
                    Err(e) => return Verdict::Drop(wire_drop(e)),
                };
                if kind == icmp::V6_NEIGHBOR_ADVERT {
                    if let Some(m) = nd.lladdr {
                        self.learn(in_port, nd.target, m, now_ms);
                    }
                    return Verdict::Consumed(Absorbed::NeighborAdvert);
                }
                if let Some(m) = nd.lladdr {
                    if port.on_link(&src) {
                        self.learn(in_port, src, m, now_ms);
                    }
                }
                if !ours(&nd.target, s) {
                    return Verdict::Drop(DropReason::NotForUs);
                }
                let reply_dst = if src == [0; 16] {
                    let mut all = [0u8; 16];
                    all[0] = 0xff;
                    all[1] = 0x02;
                    all[15] = 1;
                    all
                } else {
                    src
                };
                let need = l3 + ipv6::HEADER_LEN + icmp::ND_LEN;
                if pkt.start + need > pkt.buf.len() {
                    return Verdict::Drop(DropReason::NoHeadroom);
                }
                pkt.len = need;
                let f = pkt.frame_mut();
                swap_l2(f, &port.mac);
                ipv6::emit(
                    &mut f[l3..],
                    nd.target,
                    reply_dst,
                    PROTO_ICMPV6,
                    icmp::ND_LEN,
                    255,
                );
                let b = &mut f[body_at..body_at + icmp::ND_LEN];
                icmp::emit_nd(b, icmp::V6_NEIGHBOR_ADVERT, &nd.target, &port.mac);
                icmp::fill_checksum_v6(&nd.target, &reply_dst, b);
                self.counters.nd_replies.inc();
                Verdict::Tx(in_port)
            }
            _ => Verdict::Drop(DropReason::NotForUs),
        }
    }
}

/// A nat reply with no record yet: parked with the hint of its client side (off the hot
/// path: kept out of line so the established-flow path stays as the compiler had it).
#[cold]
#[inline(never)]
fn defer(reply: &FlowKey) -> Verdict {
    Verdict::Defer(crate::parking::hint(&reply.dst, reply.dport, reply.proto))
}

/// Puts the IP packet at `l3` inside Ethernet + IP + UDP (+ the node header when given) to
/// `dst`, from `out`'s own address of the outer family. Used for GUE to backends and for
/// forwarding between nodes. The packet moves into the headroom; nothing is copied.
#[allow(clippy::too_many_arguments)]
fn encap_udp(
    pkt: &mut PacketBuf,
    l3: usize,
    inner_v6: bool,
    outer_v6: bool,
    out: &PortInfo,
    next_mac: &Mac,
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    node_hdr: Option<&tunnel::Header>,
    out_port: u8,
) -> Verdict {
    // The inner packet is the IP packet alone (no Ethernet padding).
    let inner_len = {
        let f = &pkt.frame()[l3..];
        if inner_v6 {
            ipv6::HEADER_LEN + usize::from(u16::from_be_bytes([f[4], f[5]]))
        } else {
            usize::from(u16::from_be_bytes([f[2], f[3]]))
        }
    };
    let ip_hdr = if outer_v6 {
        ipv6::HEADER_LEN
    } else {
        ipv4::MIN_HEADER_LEN
    };
    let extra = if node_hdr.is_some() {
        tunnel::HEADER_LEN
    } else {
        0
    };
    let outer = ethernet::HEADER_LEN + ip_hdr + l4::UDP_LEN + extra;
    let outer_ip_len = ip_hdr + l4::UDP_LEN + extra + inner_len;
    let max = if node_hdr.is_some() {
        NODE_MAX_IP_LEN
    } else {
        GUE_MAX_IP_LEN
    };
    if outer_ip_len > max {
        return Verdict::Drop(DropReason::TooBig);
    }
    let inner_start = pkt.start + l3;
    if inner_start < outer || inner_start + inner_len > pkt.buf.len() {
        return Verdict::Drop(DropReason::NoHeadroom);
    }
    let start = inner_start - outer;
    let b = &mut pkt.buf[start..inner_start + inner_len];
    let ethertype = if outer_v6 {
        ethernet::ETHERTYPE_IPV6
    } else {
        ethernet::ETHERTYPE_IPV4
    };
    ethernet::write_header(b, next_mac, &out.mac, ethertype);
    let udp_len = (l4::UDP_LEN + extra + inner_len) as u16;
    let u = ethernet::HEADER_LEN + ip_hdr;
    b[u..u + 2].copy_from_slice(&sport.to_be_bytes());
    b[u + 2..u + 4].copy_from_slice(&dport.to_be_bytes());
    b[u + 4..u + 6].copy_from_slice(&udp_len.to_be_bytes());
    b[u + 6..u + 8].copy_from_slice(&[0, 0]);
    if let Some(h) = node_hdr {
        tunnel::emit(&mut b[u + l4::UDP_LEN..], h);
    }
    if outer_v6 {
        let Some((src, _)) = out.ipv6 else {
            return Verdict::Drop(DropReason::NoPath);
        };
        ipv6::emit(
            &mut b[ethernet::HEADER_LEN..],
            src,
            dst,
            PROTO_UDP,
            usize::from(udp_len),
            64,
        );
        // IPv6 requires a UDP checksum.
        l4::fill_checksum(PROTO_UDP, &src, &dst, &mut b[u..]);
    } else {
        let Some((src, _)) = out.ipv4 else {
            return Verdict::Drop(DropReason::NoPath);
        };
        let mut d = [0u8; 4];
        d.copy_from_slice(&dst[..4]);
        ipv4::emit(
            &mut b[ethernet::HEADER_LEN..],
            src,
            d,
            PROTO_UDP,
            usize::from(udp_len),
            64,
        );
    }
    pkt.start = start;
    pkt.len = outer + inner_len;
    Verdict::Tx(out_port)
}

#[derive(Clone, Copy)]
enum Rewrite {
    Src,
    Dst,
}

/// Rewrites the source or destination address and port of an IP packet in place, patching
/// the checksums incrementally, and decrements the TTL (nat routes the packet).
fn rewrite_l3(
    ipb: &mut [u8],
    v6: bool,
    hl: usize,
    proto: u8,
    which: Rewrite,
    addr: &[u8; 16],
    port: u16,
) -> Result<(), DropReason> {
    let port_at = match which {
        Rewrite::Src => 0,
        Rewrite::Dst => 2,
    };
    if v6 {
        let mut ip = ipv6::Packet::new_unchecked(&mut *ipb);
        if ip.hop_limit() <= 1 {
            return Err(DropReason::TtlExpired);
        }
        ip.decrement_hop_limit();
        let (old, at) = match which {
            Rewrite::Src => (ip.src_bytes(), 8),
            Rewrite::Dst => (ip.dst_bytes(), 24),
        };
        ipb[at..at + 16].copy_from_slice(addr);
        l4::rewrite(proto, &mut ipb[hl..], &old, addr, port_at, port);
    } else {
        let mut ip = ipv4::Packet::new_unchecked(&mut *ipb);
        if ip.ttl() <= 1 {
            return Err(DropReason::TtlExpired);
        }
        ip.decrement_ttl();
        let mut new = [0u8; 4];
        new.copy_from_slice(&addr[..4]);
        let old = match which {
            Rewrite::Src => {
                let o = ip.src_bytes();
                ip.set_src(new);
                o
            }
            Rewrite::Dst => {
                let o = ip.dst_bytes();
                ip.set_dst(new);
                o
            }
        };
        let total = ip.total_len();
        l4::rewrite(proto, &mut ipb[hl..total], &old, &new, port_at, port);
    }
    Ok(())
}

/// Writes a fresh untagged Ethernet header in front of the L3 header at `l3` (stripping a
/// VLAN tag if there was one).
#[inline(always)]
fn set_l2(pkt: &mut PacketBuf, l3: usize, dst: &Mac, src: &Mac, v6: bool) {
    let strip = l3 - ethernet::HEADER_LEN;
    pkt.start += strip;
    pkt.len -= strip;
    let t = if v6 {
        ethernet::ETHERTYPE_IPV6
    } else {
        ethernet::ETHERTYPE_IPV4
    };
    ethernet::write_header(pkt.frame_mut(), dst, src, t);
}

/// Turns the frame around: the sender becomes the destination, the port the source.
fn swap_l2(f: &mut [u8], port_mac: &Mac) {
    let mut src = [0u8; 6];
    src.copy_from_slice(&f[6..12]);
    f[0..6].copy_from_slice(&src);
    f[6..12].copy_from_slice(port_mac);
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "pipeline_cluster_tests.rs"]
mod cluster_tests;

#[cfg(test)]
#[path = "pipeline_qos_tests.rs"]
mod qos_tests;
