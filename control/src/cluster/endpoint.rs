//! This node's end of the sync channel as a state machine, as quinn-proto's `Endpoint` is:
//! datagrams and `now` in (`handle`, `tick`, `queue_record`, ...), datagrams out
//! (`poll_transmit`), no socket and no clock, so two or three endpoints are tested against
//! each other through a simulated network. The socket loop around it is `super::Cluster`.
//!
//! It keeps the membership: heartbeats, who is alive, ready and draining; flow records
//! batched out to every peer and taken in from them; and the snapshot a (re)starting node
//! asks for before it takes the primary role for new flows.

use super::codec::{
    self, Body, Header, Heartbeat, Key, Kind, Refusal, ReplayWindow, WireRecord, Writer,
};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem_config::{ClusterConfig, NodeConfig};
use tandem_dataplane::cluster::{ClusterView, Membership};

/// Datagrams of a snapshot answer sent per control tick (1 ms): 44 IPv4 records each, so
/// a million flows take about 1.5 s, at a pace a peer whose socket buffer is capped by the
/// default net.core.rmem_max (208 KiB, about 90 datagrams) keeps up with.
const SNAPSHOT_DATAGRAMS_PER_TICK: usize = 16;
/// Snapshot requests before a node settles for an incomplete snapshot.
const SNAPSHOT_ATTEMPTS: u32 = 3;
/// A snapshot request with no answer after this long is sent again (to a ready peer).
const SNAPSHOT_RETRY: Duration = Duration::from_secs(3);
/// How long a record datagram is remembered for the replication lag.
const LAG_LOG: Duration = Duration::from_secs(10);
/// Least time between two snapshot answers to one peer. A starting node asks at most every
/// SNAPSHOT_RETRY; faster requests (a peer in a restart loop, or a key holder abusing the
/// channel: 10 KB of requests made 5.4 MB of answers) are refused and counted.
const SNAPSHOT_ANSWER_INTERVAL: Duration = Duration::from_secs(1);
/// How far ahead of this node's clock a peer's epoch (its start time, in microseconds since
/// 1970) may be. An epoch from further ahead is refused: accepting it would make every
/// later datagram of that peer's real epoch look like a replay until it restarts.
pub const EPOCH_TOLERANCE: Duration = Duration::from_secs(300);
/// A datagram to send: to whom, what, and what it counts for once sent (`Endpoint::sent`).
#[derive(Debug, Clone)]
pub struct Transmit {
    pub to: SocketAddr,
    pub data: Vec<u8>,
    /// The peer it goes to (its index in `Endpoint::peers`).
    pub peer: usize,
    /// Flow records in it (a record batch), counted as sent to that peer.
    pub records: u64,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct PeerStats {
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    pub records_in: u64,
    pub records_out: u64,
    /// Records in datagrams to this peer, while it was alive, that the kernel refused to
    /// send (an error other than a full socket buffer, which holds them for the next tick).
    pub records_unsent: u64,
    pub auth_failures: u64,
    pub replays: u64,
    pub config_mismatches: u64,
    /// Snapshot requests refused: one came sooner than SNAPSHOT_ANSWER_INTERVAL after the last.
    pub snapshot_requests_refused: u64,
}

pub struct Peer {
    pub cfg: NodeConfig,
    pub index: u8,
    pub(super) window: ReplayWindow,
    pub last_heard: Option<Instant>,
    pub flags: u8,
    pub flows: u32,
    /// Highest sequence number of ours this peer says it accepted.
    pub ack: u64,
    pub alive: bool,
    pub stats: PeerStats,
    /// When this node last started answering a snapshot request of this peer.
    last_snapshot_answer: Option<Instant>,
}

/// Where this node stands in taking new flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Waiting for a peer's snapshot of the cluster's flows.
    Snapshotting,
    /// The snapshot is complete; the workers are still taking its records (a packet of a
    /// flow a worker does not hold yet would be bound afresh, perhaps to another backend).
    Applying,
    Ready,
}

/// Something the control thread must act on.
#[derive(Debug)]
pub enum Inbound {
    /// Records from a peer, to store on every worker.
    Records { from: u16, records: Vec<WireRecord> },
    /// A peer wants every flow this node holds.
    SnapshotRequest { from: u16 },
    /// The packet tracer's news from a peer.
    Trace { from: u16, msg: codec::TraceMsg },
}

pub struct Endpoint {
    pub view: ClusterView,
    pub me: u16,
    /// This node's sync address (where its datagrams come from).
    pub addr: SocketAddr,
    pub(super) key: Key,
    pub epoch: u64,
    /// Shared with the heartbeat thread: both number their datagrams from it.
    pub(super) seq: Arc<AtomicU64>,
    pub fingerprint: u64,
    pub heartbeat: Duration,
    pub dead_after: Duration,
    pub drain_default: Duration,
    pub peers: Vec<Peer>,
    pub readiness: Readiness,
    started: Instant,
    /// The wall clock at `started`, microseconds since 1970 (for the epoch check).
    wall_at_start: u64,
    /// `node drain`: the deadline after which this node stops serving even its own flows.
    pub draining: Option<Instant>,
    /// This node reaches no backend while a peer serves (`set_cut_off`): its flows go to
    /// their backup nodes, as when it is dead, until it reaches one again.
    pub cut_off: bool,
    /// The control thread's view, each tick: records it handed the workers wait in their
    /// queues. A complete snapshot makes the node ready only once they are taken.
    pub workers_behind: bool,
    snapshot_asked: Option<(u16, Instant)>,
    snapshot_attempts: u32,
    /// Records received in snapshots (all attempts) and in the current attempt.
    pub snapshot_records: u64,
    attempt_records: u64,
    batch: Option<Writer>,
    /// Snapshot answers in progress: the peer and the datagrams still to send.
    snapshot_out: VecDeque<(usize, VecDeque<Vec<u8>>)>,
    /// (sequence number, sent at) of recent record datagrams, for the replication lag.
    sent_log: VecDeque<(u64, Instant)>,
    last_heartbeat: Option<Instant>,
    /// Heartbeats go out from a thread of the socket loop's (`super::Pulse`), not `tick`.
    pub(super) heartbeats_elsewhere: bool,
    pub membership: Membership,
    /// Refusals by reason (see [`Refusal`]), from known and unknown senders alike.
    pub refused: [u64; 6],
    /// Records refused by reason (see [`RecordRefusal`]).
    pub records_invalid: [u64; RecordRefusal::ALL.len()],
    pub local_flows: u32,
    /// Datagrams wait unread (the socket loop says so): no peer is declared dead until
    /// they are read (its heartbeat may be among them).
    backlog: bool,
    /// Datagrams to send (`poll_transmit`).
    outbox: VecDeque<Transmit>,
}

/// Why a record from a peer (authentic, from a known node) was not applied: contents no
/// node would send, or that name what this node does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordRefusal {
    /// No service here serves the flow's VIP, port and protocol (a rolling reload where
    /// the sender has a service this node does not, or not yet).
    UnknownService,
    /// The flow's key is not of the service's address family.
    KeyMismatch,
    /// The service here has no backend of the name the record gives.
    UnknownBackend,
    /// The ingress port is out of range.
    BadIndex,
    /// The primary or backup node is not in the cluster, or they are the same node.
    BadNodes,
    /// A TCP state for a UDP flow, or the UDP state for a TCP flow.
    StateForProtocol,
}

impl RecordRefusal {
    pub const ALL: [RecordRefusal; 6] = [
        RecordRefusal::UnknownService,
        RecordRefusal::KeyMismatch,
        RecordRefusal::UnknownBackend,
        RecordRefusal::BadIndex,
        RecordRefusal::BadNodes,
        RecordRefusal::StateForProtocol,
    ];
    pub fn name(self) -> &'static str {
        match self {
            RecordRefusal::UnknownService => "unknown_service",
            RecordRefusal::KeyMismatch => "key_mismatch",
            RecordRefusal::UnknownBackend => "unknown_backend",
            RecordRefusal::BadIndex => "bad_index",
            RecordRefusal::BadNodes => "bad_nodes",
            RecordRefusal::StateForProtocol => "state_for_protocol",
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

fn refusal_index(r: Refusal) -> usize {
    match r {
        Refusal::Malformed => 0,
        Refusal::Auth => 1,
        Refusal::Replay => 2,
        Refusal::UnknownNode => 3,
        Refusal::ConfigMismatch => 4,
        Refusal::FutureEpoch => 5,
    }
}

pub const REFUSALS: [Refusal; 6] = [
    Refusal::Malformed,
    Refusal::Auth,
    Refusal::Replay,
    Refusal::UnknownNode,
    Refusal::ConfigMismatch,
    Refusal::FutureEpoch,
];

/// The header of this node's next datagram: numbered from the sequence the control thread
/// and the heartbeat thread share.
pub(super) fn next_header(
    kind: Kind,
    sender: u16,
    epoch: u64,
    fingerprint: u64,
    seq: &AtomicU64,
) -> Header {
    Header {
        kind,
        sender,
        epoch,
        seq: seq.fetch_add(1, Ordering::Relaxed) + 1,
        count: 0,
        fingerprint,
    }
}

/// A heartbeat datagram, signed.
pub(super) fn heartbeat_datagram(h: Header, hb: &Heartbeat, key: &Key) -> Vec<u8> {
    let mut w = Writer::new(&h);
    w.heartbeat(hb);
    w.finish(key)
}

impl Endpoint {
    /// This node's endpoint. `epoch` must grow across restarts (a start time); `wall_us`
    /// is the wall clock at `now` (microseconds since 1970).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: &ClusterConfig,
        me: u16,
        view: ClusterView,
        secret: &[u8],
        fingerprint: u64,
        epoch: u64,
        now: Instant,
        wall_us: u64,
    ) -> anyhow::Result<Endpoint> {
        let my = cfg
            .nodes
            .iter()
            .find(|n| n.id == me)
            .ok_or_else(|| anyhow::anyhow!("cluster.node: no entry for node {me}"))?;
        let peers = cfg
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.id != me)
            .map(|(i, n)| Peer {
                cfg: n.clone(),
                index: i as u8,
                window: ReplayWindow::default(),
                last_heard: None,
                flags: 0,
                flows: 0,
                ack: 0,
                alive: false,
                stats: PeerStats::default(),
                last_snapshot_answer: None,
            })
            .collect();
        Ok(Endpoint {
            view,
            me,
            addr: my.sync,
            key: Key::derive(secret),
            epoch,
            seq: Arc::new(AtomicU64::new(0)),
            fingerprint,
            heartbeat: cfg.heartbeat,
            dead_after: cfg.dead_after,
            drain_default: cfg.drain_deadline,
            peers,
            readiness: Readiness::Snapshotting,
            cut_off: false,
            workers_behind: false,
            started: now,
            wall_at_start: wall_us,
            draining: None,
            snapshot_asked: None,
            snapshot_attempts: 0,
            snapshot_records: 0,
            attempt_records: 0,
            batch: None,
            snapshot_out: VecDeque::new(),
            sent_log: VecDeque::new(),
            last_heartbeat: None,
            heartbeats_elsewhere: false,
            membership: Membership::default(),
            refused: [0; 6],
            records_invalid: [0; RecordRefusal::ALL.len()],
            local_flows: 0,
            backlog: false,
            outbox: VecDeque::new(),
        })
    }

    /// The next datagram to send, if any. Once the socket took it, hand it to `sent`.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    /// A datagram from `poll_transmit` went out: counted for its peer.
    pub fn sent(&mut self, t: &Transmit) {
        if let Some(p) = self.peers.get_mut(t.peer) {
            p.stats.datagrams_out += 1;
            p.stats.records_out += t.records;
        }
    }

    /// The socket's buffer was full: `t` goes first next time (records to a peer wait;
    /// they are not dropped).
    pub fn hold(&mut self, t: Transmit) {
        self.outbox.push_front(t);
    }

    /// The kernel refused `t` (the peer unreachable, say): counted for its peer while it
    /// is alive (a dead peer asks for a snapshot when it comes back).
    pub fn unsent(&mut self, t: &Transmit) {
        if let Some(p) = self.peers.get_mut(t.peer) {
            if p.alive {
                p.stats.records_unsent += t.records;
            }
        }
    }

    /// Whether datagrams wait unread (from the socket loop, after each read).
    pub fn set_backlog(&mut self, waiting: bool) {
        self.backlog = waiting;
    }

    /// A datagram that arrived from `from`: what the control thread must apply, if
    /// anything; a refusal is counted by reason.
    pub fn handle(&mut self, d: &[u8], from: SocketAddr, now: Instant) -> Option<Inbound> {
        match self.accept(d, from, now) {
            Ok(i) => i,
            Err(r) => {
                self.refused[refusal_index(r)] += 1;
                tracing::debug!(%from, reason = r.name(), "sync datagram refused");
                None
            }
        }
    }

    /// Queues a datagram to peer `peer`.
    fn send(&mut self, peer: usize, data: Vec<u8>, records: u64) {
        let to = self.peers[peer].cfg.sync;
        self.outbox.push_back(Transmit {
            to,
            data,
            peer,
            records,
        });
    }

    fn header(&mut self, kind: Kind) -> Header {
        next_header(kind, self.me, self.epoch, self.fingerprint, &self.seq)
    }

    pub(super) fn my_flags(&self, now: Instant) -> u8 {
        let mut f = 0;
        if self.serving_self(now) {
            f |= codec::HB_READY;
        }
        if self.draining.is_some() {
            f |= codec::HB_DRAINING;
        }
        if self.cut_off {
            f |= codec::HB_CUT_OFF;
        }
        f
    }

    /// Whether a peer serves flows: alive, holding the cluster's flows, not cut off.
    fn peer_serves(p: &Peer) -> bool {
        p.alive && p.flags & codec::HB_READY != 0 && p.flags & codec::HB_CUT_OFF == 0
    }

    /// The control thread's view of this node's reach, each tick: with no backend
    /// reachable, and a peer serving, the node stops serving (its peers send its flows to
    /// their backup nodes rather than to a node that can only drop them). With no peer
    /// serving it goes on, as a lone node would: the probes may be what is wrong.
    pub fn set_reach(&mut self, reaches_a_backend: bool) {
        let cut = !reaches_a_backend && (self.cut_off || self.peers.iter().any(Self::peer_serves));
        if cut != self.cut_off {
            if cut {
                tracing::warn!(
                    "node cut off: it reaches no backend; its flows go to their backup nodes"
                );
            } else {
                tracing::info!("node reaches a backend again: it serves");
            }
            self.cut_off = cut;
        }
    }

    /// This node serves flows: it has the cluster's flows and is not past a drain deadline.
    fn serving_self(&self, now: Instant) -> bool {
        self.readiness == Readiness::Ready && self.draining.is_none_or(|d| now < d)
    }

    pub(super) fn send_heartbeats(&mut self, now: Instant) {
        let flags = self.my_flags(now);
        for i in 0..self.peers.len() {
            let hb = Heartbeat {
                flags,
                flows: self.local_flows,
                ack: self.peers[i].window.top,
                total: 0,
            };
            let d = heartbeat_datagram(self.header(Kind::Heartbeat), &hb, &self.key);
            self.send(i, d, 0);
        }
    }

    /// Queues a trace message for every peer.
    pub fn queue_trace(&mut self, m: &codec::TraceMsg) {
        for i in 0..self.peers.len() {
            let mut w = Writer::new(&self.header(Kind::Trace));
            w.trace(m);
            let d = w.finish(&self.key);
            self.send(i, d, 0);
        }
    }

    /// Queues a record for every peer; full datagrams go out at once, the rest on `flush`.
    pub fn queue_record(&mut self, r: &WireRecord, now: Instant) {
        if self.batch.is_none() {
            let h = self.header(Kind::Records);
            self.batch = Some(Writer::new(&h));
        }
        let full = !self.batch.as_mut().is_some_and(|w| w.record(r));
        if full {
            self.flush(now);
            let h = self.header(Kind::Records);
            let mut w = Writer::new(&h);
            w.record(r);
            self.batch = Some(w);
        }
    }

    /// Sends the records batched so far to every peer.
    pub fn flush(&mut self, now: Instant) {
        let Some(w) = self.batch.take() else {
            return;
        };
        let n = u64::from(w.count());
        if n == 0 {
            return;
        }
        let seq = self.seq_of(&w);
        let d = w.finish(&self.key);
        // The same datagram to every peer: copies for all but the last, which takes it.
        if let Some(last) = self.peers.len().checked_sub(1) {
            for i in 0..last {
                self.send(i, d.clone(), n);
            }
            self.send(last, d, n);
        }
        self.sent_log.push_back((seq, now));
        while self
            .sent_log
            .front()
            .is_some_and(|(_, t)| now.duration_since(*t) > LAG_LOG)
        {
            self.sent_log.pop_front();
        }
    }

    fn seq_of(&self, w: &Writer) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&w.buf[16..24]);
        u64::from_be_bytes(b)
    }

    /// Whether a snapshot request from `from` is answered now: at most one answer per peer
    /// in SNAPSHOT_ANSWER_INTERVAL, and none while one to it is still going out. A refused
    /// request is counted; the asker retries (after SNAPSHOT_RETRY) on its own.
    pub fn may_answer_snapshot(&mut self, from: u16, now: Instant) -> bool {
        let Some(p) = self.peers.iter().position(|p| p.cfg.id == from) else {
            return false;
        };
        let sending = self.snapshot_out.iter().any(|(to, _)| *to == p);
        let peer = &mut self.peers[p];
        let recent = peer
            .last_snapshot_answer
            .is_some_and(|t| now.duration_since(t) < SNAPSHOT_ANSWER_INTERVAL);
        if sending || recent {
            peer.stats.snapshot_requests_refused += 1;
            return false;
        }
        peer.last_snapshot_answer = Some(now);
        true
    }

    /// Queues a snapshot answer (every record given) to a peer, sent a slice per tick.
    pub fn answer_snapshot(&mut self, to: u16, records: &[WireRecord]) {
        let Some(p) = self.peers.iter().position(|p| p.cfg.id == to) else {
            return;
        };
        let mut out = VecDeque::new();
        let mut w = Writer::new(&self.header(Kind::SnapshotRecords));
        for r in records {
            if !w.record(r) {
                out.push_back(w.finish(&self.key));
                w = Writer::new(&self.header(Kind::SnapshotRecords));
                w.record(r);
            }
        }
        if w.count() > 0 {
            out.push_back(w.finish(&self.key));
        }
        let mut end = Writer::new(&self.header(Kind::SnapshotEnd));
        end.heartbeat(&Heartbeat {
            flags: 0,
            flows: 0,
            ack: 0,
            total: records.len() as u64,
        });
        out.push_back(end.finish(&self.key));
        self.peers[p].stats.records_out += records.len() as u64;
        tracing::info!(
            peer = to,
            records = records.len(),
            datagrams = out.len(),
            "sending a snapshot"
        );
        self.snapshot_out.push_back((p, out));
    }

    /// Checks one datagram: known sender at its address, MAC, replay window, services.
    pub fn accept(
        &mut self,
        d: &[u8],
        from: SocketAddr,
        now: Instant,
    ) -> Result<Option<Inbound>, Refusal> {
        let h = codec::peek(d)?;
        let Some(pi) = self
            .peers
            .iter()
            .position(|p| p.cfg.id == h.sender && p.cfg.sync == from)
        else {
            return Err(Refusal::UnknownNode);
        };
        let (h, body) = match codec::open(d, &self.key) {
            Ok(x) => x,
            Err(Refusal::Auth) => {
                self.peers[pi].stats.auth_failures += 1;
                return Err(Refusal::Auth);
            }
            Err(e) => return Err(e),
        };
        let p = &mut self.peers[pi];
        let wall =
            self.wall_at_start + now.saturating_duration_since(self.started).as_micros() as u64;
        if h.epoch > wall.saturating_add(EPOCH_TOLERANCE.as_micros() as u64) {
            return Err(Refusal::FutureEpoch);
        }
        if !p.window.check(h.epoch, h.seq) {
            p.stats.replays += 1;
            return Err(Refusal::Replay);
        }
        p.window.accept(h.epoch, h.seq);
        p.stats.datagrams_in += 1;
        p.last_heard = Some(now);
        if h.fingerprint != self.fingerprint {
            p.stats.config_mismatches += 1;
            return Err(Refusal::ConfigMismatch);
        }
        let id = p.cfg.id;
        Ok(match (h.kind, body) {
            (Kind::Heartbeat, Body::Heartbeat(hb)) => {
                p.flags = hb.flags;
                p.flows = hb.flows;
                p.ack = hb.ack;
                None
            }
            (Kind::SnapshotEnd, Body::Heartbeat(hb)) => {
                self.snapshot_ended(id, hb.total);
                None
            }
            (Kind::SnapshotRequest, Body::SnapshotRequest) => {
                Some(Inbound::SnapshotRequest { from: id })
            }
            (Kind::Trace, Body::Trace(msg)) => Some(Inbound::Trace { from: id, msg }),
            (Kind::Records | Kind::SnapshotRecords, Body::Records(records)) => {
                p.stats.records_in += records.len() as u64;
                if h.kind == Kind::SnapshotRecords {
                    self.snapshot_records += records.len() as u64;
                    self.attempt_records += records.len() as u64;
                }
                Some(Inbound::Records { from: id, records })
            }
            _ => return Err(Refusal::Malformed),
        })
    }

    /// Peer `from` says the snapshot it sent held `total` records: complete (ready for new
    /// flows), or asked again while attempts remain when datagrams were lost.
    fn snapshot_ended(&mut self, from: u16, total: u64) {
        if self.readiness != Readiness::Snapshotting {
            return;
        }
        if self.attempt_records < total && self.snapshot_attempts < SNAPSHOT_ATTEMPTS {
            tracing::warn!(
                from,
                records = total,
                received = self.attempt_records,
                "snapshot incomplete (datagrams lost): asking again"
            );
            self.snapshot_asked = None;
        } else {
            tracing::info!(
                from,
                records = total,
                received = self.attempt_records,
                "snapshot complete: the workers take it"
            );
            self.readiness = Readiness::Applying;
        }
    }

    /// Timers: heartbeats, liveness, snapshot requests and answers, the drain deadline.
    /// Returns the membership when it changed (to be sent to the workers).
    pub fn tick(&mut self, now: Instant) -> Option<Membership> {
        if self.readiness == Readiness::Applying && !self.workers_behind {
            tracing::info!("snapshot taken by every worker: ready for new flows");
            self.readiness = Readiness::Ready;
        }
        if !self.heartbeats_elsewhere
            && self
                .last_heartbeat
                .is_none_or(|t| now.duration_since(t) >= self.heartbeat)
        {
            self.last_heartbeat = Some(now);
            self.send_heartbeats(now);
        }
        self.flush(now);
        let backlog = self.backlog;
        for p in &mut self.peers {
            let alive = p
                .last_heard
                .is_some_and(|t| now.saturating_duration_since(t) <= self.dead_after);
            if !alive && backlog {
                continue; // its heartbeat may be waiting unread
            }
            if alive != p.alive {
                let age = p.last_heard.map(|t| now.duration_since(t).as_millis());
                if alive {
                    tracing::info!(node = p.cfg.id, "node alive");
                } else {
                    tracing::warn!(node = p.cfg.id, last_heard_ms_ago = ?age, "node dead");
                }
                p.alive = alive;
            }
        }
        if self.readiness == Readiness::Snapshotting {
            self.seek_snapshot(now);
        }
        for _ in 0..SNAPSHOT_DATAGRAMS_PER_TICK {
            let Some((to, q)) = self.snapshot_out.front_mut() else {
                break;
            };
            let to = *to;
            match q.pop_front() {
                Some(d) => self.send(to, d, 0),
                None => {
                    self.snapshot_out.pop_front();
                }
            }
        }
        let m = self.compute_membership(now);
        if m != self.membership {
            tracing::info!(
                serving = format!("{:#b}", m.serving),
                eligible = format!("{:#b}", m.eligible),
                "membership changed"
            );
            self.membership = m;
            return Some(m);
        }
        None
    }

    /// Asks a ready peer for the cluster's flows; with none ready once every live peer has
    /// had time to be heard from, this node is the first and is ready on its own.
    fn seek_snapshot(&mut self, now: Instant) {
        let ready_peer = self
            .peers
            .iter()
            .filter(|p| p.alive && p.flags & codec::HB_READY != 0)
            .map(|p| p.cfg.id)
            .min();
        match ready_peer {
            Some(id) => {
                let due = self
                    .snapshot_asked
                    .is_none_or(|(_, t)| now.duration_since(t) >= SNAPSHOT_RETRY);
                if due {
                    self.snapshot_asked = Some((id, now));
                    self.snapshot_attempts += 1;
                    self.attempt_records = 0;
                    let h = self.header(Kind::SnapshotRequest);
                    let d = Writer::new(&h).finish(&self.key);
                    if let Some(p) = self.peers.iter().position(|p| p.cfg.id == id) {
                        tracing::info!(peer = id, "asking for a snapshot");
                        self.send(p, d, 0);
                    }
                }
            }
            None => {
                let grace = self.dead_after * 2 + self.heartbeat;
                // (Also when the peer asked has died since, and none else holds flows.)
                let quiet = self
                    .snapshot_asked
                    .is_none_or(|(_, t)| now.duration_since(t) >= SNAPSHOT_RETRY);
                if now.duration_since(self.started) >= grace && quiet {
                    tracing::info!("no peer holds flows: ready on its own");
                    self.readiness = Readiness::Ready;
                }
            }
        }
    }

    pub fn compute_membership(&self, now: Instant) -> Membership {
        let mut m = Membership::default();
        let me = self.view.me;
        if self.serving_self(now) && !self.cut_off {
            m.serving |= 1 << me;
            if self.draining.is_none() {
                m.eligible |= 1 << me;
            }
        }
        for p in &self.peers {
            if Self::peer_serves(p) {
                m.serving |= 1 << p.index;
                if p.flags & codec::HB_DRAINING == 0 {
                    m.eligible |= 1 << p.index;
                }
            }
        }
        m
    }

    /// The replication lag to a peer: how long the oldest record datagram it has not yet
    /// acknowledged has been out (0 when it has them all).
    pub fn lag(&self, peer: &Peer, now: Instant) -> Duration {
        self.sent_log
            .iter()
            .find(|(seq, _)| *seq > peer.ack)
            .map_or(Duration::ZERO, |(_, t)| now.duration_since(*t))
    }

    pub fn drain(&mut self, deadline: Option<Duration>, now: Instant) -> Instant {
        let d = now + deadline.unwrap_or(self.drain_default);
        self.draining = Some(d);
        tracing::warn!(
            deadline_s = d.duration_since(now).as_secs(),
            "node draining"
        );
        d
    }

    pub fn undrain(&mut self) {
        self.draining = None;
        tracing::info!("node takes new flows again");
    }

    pub fn status(&self, now: Instant) -> &'static str {
        match (self.readiness, self.draining) {
            (Readiness::Snapshotting | Readiness::Applying, _) => "snapshotting",
            (Readiness::Ready, _) if self.cut_off => "cut_off",
            (Readiness::Ready, None) => "ready",
            (Readiness::Ready, Some(d)) if now < d => "draining",
            (Readiness::Ready, Some(_)) => "drained",
        }
    }

    /// A peer's role readiness as its heartbeats say.
    pub fn peer_status(p: &Peer) -> &'static str {
        if !p.alive {
            "dead"
        } else if p.flags & codec::HB_CUT_OFF != 0 && p.flags & codec::HB_READY != 0 {
            "cut_off"
        } else if p.flags & codec::HB_READY == 0 {
            if p.flags & codec::HB_DRAINING != 0 {
                "drained"
            } else {
                "snapshotting"
            }
        } else if p.flags & codec::HB_DRAINING != 0 {
            "draining"
        } else {
            "ready"
        }
    }
}
