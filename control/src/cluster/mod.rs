//! Cluster membership and the sync channel: heartbeats, who is alive, ready and draining,
//! flow records batched out to every peer and taken in from them, and the snapshot a
//! (re)starting node asks for before it takes the primary role for new flows.
//!
//! Sans-clock: every method takes `now`, so the membership rules are tested with a fake
//! clock. The socket is a plain non-blocking UDP socket polled by the control loop.

pub mod codec;

use codec::{Body, Header, Heartbeat, Key, Kind, Refusal, ReplayWindow, WireRecord, Writer};
use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
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
/// Socket buffers: a snapshot burst must fit.
const SOCKET_BUFFER: usize = 8 << 20;
/// Least time between two snapshot answers to one peer. A starting node asks at most every
/// SNAPSHOT_RETRY; faster requests (a peer in a restart loop, or a key holder abusing the
/// channel: 10 KB of requests made 5.4 MB of answers) are refused and counted.
const SNAPSHOT_ANSWER_INTERVAL: Duration = Duration::from_secs(1);
/// How far ahead of this node's clock a peer's epoch (its start time, in microseconds since
/// 1970) may be. An epoch from further ahead is refused: accepting it would make every
/// later datagram of that peer's real epoch look like a replay until it restarts.
pub const EPOCH_TOLERANCE: Duration = Duration::from_secs(300);
/// The heartbeat thread stops speaking for this node when the control loop has not ticked
/// for this long: a stalled command must not get the node declared dead, a hung control
/// thread must.
const PULSE_STALL: Duration = Duration::from_secs(5);

/// What the heartbeat thread says about this node, kept current by the control loop each
/// tick. Heartbeats leave from a thread of their own so that no command, snapshot or
/// expiry pass on the control thread can delay them past a peer's `dead_after`.
pub struct Pulse {
    flags: AtomicU8,
    flows: AtomicU32,
    /// Per peer (in `Cluster::peers` order): the highest sequence number accepted from it.
    acks: Vec<AtomicU64>,
    /// Per peer: heartbeats sent by the thread.
    pub sent: Vec<AtomicU64>,
    /// Milliseconds since `born` at the control loop's last tick.
    ticked_ms: AtomicU64,
    born: Instant,
    stop: AtomicBool,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct PeerStats {
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    pub records_in: u64,
    pub records_out: u64,
    pub auth_failures: u64,
    pub replays: u64,
    pub config_mismatches: u64,
    /// Snapshot requests refused: one came sooner than SNAPSHOT_ANSWER_INTERVAL after the last.
    pub snapshot_requests_refused: u64,
}

pub struct Peer {
    pub cfg: NodeConfig,
    pub index: u8,
    window: ReplayWindow,
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
    Ready,
}

/// Something the control thread must act on.
#[derive(Debug)]
pub enum Inbound {
    /// Records from a peer, to store on every worker.
    Records { from: u16, records: Vec<WireRecord> },
    /// A peer wants every flow this node holds.
    SnapshotRequest { from: u16 },
}

pub struct Cluster {
    pub view: ClusterView,
    pub me: u16,
    key: Key,
    socket: UdpSocket,
    pub epoch: u64,
    /// Shared with the heartbeat thread: both number their datagrams from it.
    seq: Arc<AtomicU64>,
    pub fingerprint: u64,
    pub heartbeat: Duration,
    pub dead_after: Duration,
    pub drain_default: Duration,
    pub peers: Vec<Peer>,
    pub readiness: Readiness,
    started: Instant,
    /// `node drain`: the deadline after which this node stops serving even its own flows.
    pub draining: Option<Instant>,
    snapshot_asked: Option<(u16, Instant)>,
    snapshot_attempts: u32,
    /// Records received in snapshots (all attempts) and in the current attempt.
    pub snapshot_records: u64,
    attempt_records: u64,
    batch: Option<Writer>,
    /// Snapshot answers in progress: destination and the datagrams still to send.
    snapshot_out: VecDeque<(SocketAddr, VecDeque<Vec<u8>>)>,
    /// (sequence number, sent at) of recent record datagrams, for the replication lag.
    sent_log: VecDeque<(u64, Instant)>,
    last_heartbeat: Option<Instant>,
    /// Set when heartbeats go out from their own thread (see [`Pulse`]).
    pulse: Option<Arc<Pulse>>,
    pub membership: Membership,
    /// Refusals by reason (see [`Refusal`]), from known and unknown senders alike.
    pub refused: [u64; 6],
    /// Records refused by reason (see [`RecordRefusal`]).
    pub records_invalid: [u64; RecordRefusal::ALL.len()],
    pub local_flows: u32,
    /// Set by `receive` when it stopped with datagrams still waiting: no peer is declared
    /// dead until they are read (its heartbeat may be among them).
    backlog: bool,
}

/// Why a record from a peer (authentic, from a known node) was not applied: contents no
/// node would send, or that name what this node does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordRefusal {
    /// The service index, or the backend or path indexes within it, do not exist here.
    UnknownService,
    /// The flow's key is not the service's VIP, port, protocol or address family.
    KeyMismatch,
    /// The backend is not one of the service's, or a path or ingress port is out of range.
    BadIndex,
    /// The primary or backup node is not in the cluster, or they are the same node.
    BadNodes,
    /// A TCP state for a UDP flow, or the UDP state for a TCP flow.
    StateForProtocol,
}

impl RecordRefusal {
    pub const ALL: [RecordRefusal; 5] = [
        RecordRefusal::UnknownService,
        RecordRefusal::KeyMismatch,
        RecordRefusal::BadIndex,
        RecordRefusal::BadNodes,
        RecordRefusal::StateForProtocol,
    ];
    pub fn name(self) -> &'static str {
        match self {
            RecordRefusal::UnknownService => "unknown_service",
            RecordRefusal::KeyMismatch => "key_mismatch",
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
fn next_header(kind: Kind, sender: u16, epoch: u64, fingerprint: u64, seq: &AtomicU64) -> Header {
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
fn heartbeat_datagram(h: Header, hb: &Heartbeat, key: &Key) -> Vec<u8> {
    let mut w = Writer::new(&h);
    w.heartbeat(hb);
    w.finish(key)
}

/// Reads the cluster secret, refusing a file that others may read.
pub fn read_secret(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("cluster.secret_file {}: {e}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "cluster.secret_file {}: mode {:o} lets others read it; chmod 600 it",
            path.display(),
            mode & 0o777
        );
    }
    let s = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cluster.secret_file {}: {e}", path.display()))?;
    let trimmed = s.trim_ascii();
    if trimmed.len() < 16 {
        anyhow::bail!(
            "cluster.secret_file {}: the secret must be at least 16 bytes",
            path.display()
        );
    }
    Ok(trimmed.to_vec())
}

impl Cluster {
    /// Binds this node's sync socket. `epoch` must grow across restarts (a start time).
    pub fn new(
        cfg: &ClusterConfig,
        me: u16,
        view: ClusterView,
        secret: &[u8],
        fingerprint: u64,
        epoch: u64,
        now: Instant,
    ) -> anyhow::Result<Cluster> {
        let my = cfg
            .nodes
            .iter()
            .find(|n| n.id == me)
            .ok_or_else(|| anyhow::anyhow!("cluster.node: no entry for node {me}"))?;
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(my.sync),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
        sock.bind(&my.sync.into())
            .map_err(|e| anyhow::anyhow!("cluster sync address {}: {e}", my.sync))?;
        sock.set_nonblocking(true)?;
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
        Ok(Cluster {
            view,
            me,
            key: Key::derive(secret),
            socket: sock.into(),
            epoch,
            seq: Arc::new(AtomicU64::new(0)),
            fingerprint,
            heartbeat: cfg.heartbeat,
            dead_after: cfg.dead_after,
            drain_default: cfg.drain_deadline,
            peers,
            readiness: Readiness::Snapshotting,
            started: now,
            draining: None,
            snapshot_asked: None,
            snapshot_attempts: 0,
            snapshot_records: 0,
            attempt_records: 0,
            batch: None,
            snapshot_out: VecDeque::new(),
            sent_log: VecDeque::new(),
            last_heartbeat: None,
            pulse: None,
            membership: Membership::default(),
            refused: [0; 6],
            records_invalid: [0; RecordRefusal::ALL.len()],
            local_flows: 0,
            backlog: false,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    fn header(&mut self, kind: Kind) -> Header {
        next_header(kind, self.me, self.epoch, self.fingerprint, &self.seq)
    }

    fn my_flags(&self, now: Instant) -> u8 {
        let mut f = 0;
        if self.serving_self(now) {
            f |= codec::HB_READY;
        }
        if self.draining.is_some() {
            f |= codec::HB_DRAINING;
        }
        f
    }

    /// This node serves flows: it has the cluster's flows and is not past a drain deadline.
    fn serving_self(&self, now: Instant) -> bool {
        self.readiness == Readiness::Ready && self.draining.is_none_or(|d| now < d)
    }

    fn send_to(&mut self, d: &[u8], to: SocketAddr) -> bool {
        self.socket.send_to(d, to).is_ok()
    }

    fn send_heartbeats(&mut self, now: Instant) {
        let flags = self.my_flags(now);
        for i in 0..self.peers.len() {
            let hb = Heartbeat {
                flags,
                flows: self.local_flows,
                ack: self.peers[i].window.top,
                total: 0,
            };
            let d = heartbeat_datagram(self.header(Kind::Heartbeat), &hb, &self.key);
            let to = self.peers[i].cfg.sync;
            if self.send_to(&d, to) {
                self.peers[i].stats.datagrams_out += 1;
            }
        }
    }

    /// Sends heartbeats from a thread of their own from now on (see [`Pulse`]); `tick`
    /// then only keeps what they say current.
    pub fn start_heartbeat_thread(&mut self, now: Instant) -> std::io::Result<()> {
        let pulse = Arc::new(Pulse {
            flags: AtomicU8::new(self.my_flags(now)),
            flows: AtomicU32::new(self.local_flows),
            acks: self
                .peers
                .iter()
                .map(|p| AtomicU64::new(p.window.top))
                .collect(),
            sent: self.peers.iter().map(|_| AtomicU64::new(0)).collect(),
            ticked_ms: AtomicU64::new(0),
            born: now,
            stop: AtomicBool::new(false),
        });
        let socket = self.socket.try_clone()?;
        let key = self.key.clone();
        let seq = Arc::clone(&self.seq);
        let (me, epoch, fingerprint, every) =
            (self.me, self.epoch, self.fingerprint, self.heartbeat);
        let to: Vec<SocketAddr> = self.peers.iter().map(|p| p.cfg.sync).collect();
        let p = Arc::clone(&pulse);
        std::thread::Builder::new()
            .name("tandem-heartbeat".into())
            .spawn(move || {
                while !p.stop.load(Ordering::Relaxed) {
                    let stalled = p.born.elapsed().as_millis() as u64
                        > p.ticked_ms.load(Ordering::Relaxed) + PULSE_STALL.as_millis() as u64;
                    if !stalled {
                        for (i, addr) in to.iter().enumerate() {
                            let h = next_header(Kind::Heartbeat, me, epoch, fingerprint, &seq);
                            let hb = Heartbeat {
                                flags: p.flags.load(Ordering::Relaxed),
                                flows: p.flows.load(Ordering::Relaxed),
                                ack: p.acks[i].load(Ordering::Relaxed),
                                total: 0,
                            };
                            if socket
                                .send_to(&heartbeat_datagram(h, &hb, &key), addr)
                                .is_ok()
                            {
                                p.sent[i].fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    std::thread::sleep(every);
                }
            })?;
        self.pulse = Some(pulse);
        Ok(())
    }

    /// Heartbeats sent to the peer with this id by the heartbeat thread.
    pub fn heartbeats_sent(&self, id: u16) -> u64 {
        let i = self.peers.iter().position(|p| p.cfg.id == id);
        self.pulse
            .as_ref()
            .zip(i)
            .and_then(|(p, i)| p.sent.get(i))
            .map_or(0, |c| c.load(Ordering::Relaxed))
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
        for i in 0..self.peers.len() {
            let to = self.peers[i].cfg.sync;
            if self.send_to(&d, to) {
                self.peers[i].stats.datagrams_out += 1;
                self.peers[i].stats.records_out += n;
            }
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
        let addr = self.peers[p].cfg.sync;
        let sending = self.snapshot_out.iter().any(|(a, _)| *a == addr);
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
        let addr = self.peers[p].cfg.sync;
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
        self.snapshot_out.push_back((addr, out));
    }

    /// Reads what has arrived; returns what the control thread must apply.
    pub fn receive(&mut self, now: Instant, max: usize) -> Vec<Inbound> {
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        self.backlog = true;
        for _ in 0..max {
            let (n, from) = match self.socket.recv_from(&mut buf) {
                Ok(x) => x,
                Err(_) => {
                    self.backlog = false;
                    break;
                }
            };
            match self.accept(&buf[..n], from, now) {
                Ok(Some(i)) => out.push(i),
                Ok(None) => {}
                Err(r) => {
                    self.refused[refusal_index(r)] += 1;
                    tracing::debug!(%from, reason = r.name(), "sync datagram refused");
                }
            }
        }
        out
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
        if h.epoch > wall_clock_epoch().saturating_add(EPOCH_TOLERANCE.as_micros() as u64) {
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
                if self.readiness == Readiness::Snapshotting {
                    if self.attempt_records < hb.total && self.snapshot_attempts < SNAPSHOT_ATTEMPTS
                    {
                        tracing::warn!(
                            from = id,
                            records = hb.total,
                            received = self.attempt_records,
                            "snapshot incomplete (datagrams lost): asking again"
                        );
                        self.snapshot_asked = None;
                    } else {
                        tracing::info!(
                            from = id,
                            records = hb.total,
                            received = self.attempt_records,
                            "snapshot complete: ready for new flows"
                        );
                        self.readiness = Readiness::Ready;
                    }
                }
                None
            }
            (Kind::SnapshotRequest, Body::SnapshotRequest) => {
                Some(Inbound::SnapshotRequest { from: id })
            }
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

    /// Timers: heartbeats, liveness, snapshot requests and answers, the drain deadline.
    /// Returns the membership when it changed (to be sent to the workers).
    pub fn tick(&mut self, now: Instant) -> Option<Membership> {
        if let Some(pulse) = &self.pulse {
            pulse.flags.store(self.my_flags(now), Ordering::Relaxed);
            pulse.flows.store(self.local_flows, Ordering::Relaxed);
            for (a, p) in pulse.acks.iter().zip(&self.peers) {
                a.store(p.window.top, Ordering::Relaxed);
            }
            let ms = now.saturating_duration_since(pulse.born).as_millis() as u64;
            pulse.ticked_ms.store(ms, Ordering::Relaxed);
        } else if self
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
                Some(d) => {
                    if let Some(p) = self.peers.iter_mut().find(|p| p.cfg.sync == to) {
                        p.stats.datagrams_out += 1;
                    }
                    let _ = self.socket.send_to(&d, to);
                }
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
                    if let Some(p) = self.peers.iter_mut().find(|p| p.cfg.id == id) {
                        p.stats.datagrams_out += 1;
                        let to = p.cfg.sync;
                        tracing::info!(peer = id, "asking for a snapshot");
                        let _ = self.socket.send_to(&d, to);
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
        if self.serving_self(now) {
            m.serving |= 1 << me;
            if self.draining.is_none() {
                m.eligible |= 1 << me;
            }
        }
        for p in &self.peers {
            if p.alive && p.flags & codec::HB_READY != 0 {
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
            (Readiness::Snapshotting, _) => "snapshotting",
            (Readiness::Ready, None) => "ready",
            (Readiness::Ready, Some(d)) if now < d => "draining",
            (Readiness::Ready, Some(_)) => "drained",
        }
    }

    /// A peer's role readiness as its heartbeats say.
    pub fn peer_status(p: &Peer) -> &'static str {
        if !p.alive {
            "dead"
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

#[cfg(test)]
mod tests;

/// A fingerprint of what flow records refer to by index (ports, services, backends, paths):
/// nodes whose fingerprints differ must not share records. Weights and states are left
/// out, so draining a backend on one node does not cut it off from the others.
pub fn fingerprint(cfg: &tandem_config::Config) -> u64 {
    let mut h = blake3::Hasher::new();
    for p in &cfg.ports {
        h.update(format!("port {}\n", p.name).as_bytes());
    }
    for s in &cfg.services {
        h.update(
            format!(
                "service {} {} {} {} {}\n",
                s.name,
                s.vip,
                s.port,
                s.protocol.name(),
                s.mode.name()
            )
            .as_bytes(),
        );
        for b in &s.backends {
            let paths: Vec<usize> = b.paths.iter().map(|p| p.port).collect();
            h.update(format!("backend {} {} {} {paths:?}\n", b.name, b.address, b.port).as_bytes());
        }
    }
    let mut x = [0u8; 8];
    x.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_be_bytes(x)
}

/// A start time that grows across restarts: the sync channel's epoch.
pub fn new_epoch() -> u64 {
    wall_clock_epoch().max(1)
}

/// Microseconds since 1970 by this host's clock.
fn wall_clock_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(p) = &self.pulse {
            p.stop.store(true, Ordering::Relaxed);
        }
    }
}
