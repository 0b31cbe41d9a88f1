//! The cluster's sync channel on a socket: a thin loop around the sans-IO `Endpoint`
//! (membership, heartbeats, records, snapshots; see `endpoint`), reading datagrams into it,
//! sending what it has to send, and sending heartbeats from a thread of their own
//! (`Pulse`) so that nothing on the control thread can delay them.

pub mod codec;
mod endpoint;

pub use endpoint::{
    Endpoint, Inbound, Peer, PeerStats, Readiness, RecordRefusal, Transmit, EPOCH_TOLERANCE,
    REFUSALS,
};

use codec::{Heartbeat, Kind, WireRecord};
use endpoint::{heartbeat_datagram, next_header};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem_config::ClusterConfig;
use tandem_dataplane::cluster::{ClusterView, Membership};

/// Socket buffers: a snapshot burst must fit.
const SOCKET_BUFFER: usize = 8 << 20;
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

/// The sync channel: the endpoint, its socket, and the heartbeat thread's state.
pub struct Cluster {
    pub sync: Endpoint,
    socket: UdpSocket,
    /// Set when heartbeats go out from their own thread (see [`Pulse`]).
    pulse: Option<Arc<Pulse>>,
}

/// Reads the cluster secret, refusing a file that others may read.
pub fn read_secret(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let s = tandem_config::read_owner_only(path)
        .map_err(|why| anyhow::anyhow!("cluster.secret_file {why}"))?;
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
        let sync = Endpoint::new(
            cfg,
            me,
            view,
            secret,
            fingerprint,
            epoch,
            now,
            wall_clock_epoch(),
        )?;
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(sync.addr),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
        sock.bind(&sync.addr.into())
            .map_err(|e| anyhow::anyhow!("cluster sync address {}: {e}", sync.addr))?;
        sock.set_nonblocking(true)?;
        Ok(Cluster {
            sync,
            socket: sock.into(),
            pulse: None,
        })
    }

    /// New node weights (a reload): the same nodes, as the config's checks ensure.
    pub fn set_weights(&mut self, cfg: &ClusterConfig) {
        for n in &mut self.sync.view.nodes {
            if let Some(c) = cfg.nodes.iter().find(|c| c.id == n.id) {
                n.weight = c.weight;
            }
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Sends what the endpoint has to send.
    fn transmit(&mut self) {
        while let Some(t) = self.sync.poll_transmit() {
            match self.socket.send_to(&t.data, t.to) {
                Ok(_) => self.sync.sent(&t),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.sync.hold(t);
                    break;
                }
                Err(_) => self.sync.unsent(&t),
            }
        }
    }

    /// Reads up to `max` datagrams into the endpoint; returns what the control thread must
    /// apply.
    pub fn receive(&mut self, now: Instant, max: usize) -> Vec<Inbound> {
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        let mut waiting = true;
        for _ in 0..max {
            let Ok((n, from)) = self.socket.recv_from(&mut buf) else {
                waiting = false;
                break;
            };
            out.extend(self.sync.handle(&buf[..n], from, now));
        }
        self.sync.set_backlog(waiting);
        out
    }

    /// The endpoint's timers, then what they sent; keeps the heartbeat thread current.
    /// Returns the membership when it changed.
    pub fn tick(&mut self, now: Instant) -> Option<Membership> {
        if let Some(pulse) = &self.pulse {
            let s = &self.sync;
            pulse.flags.store(s.my_flags(now), Ordering::Relaxed);
            pulse.flows.store(s.local_flows, Ordering::Relaxed);
            for (a, p) in pulse.acks.iter().zip(&s.peers) {
                a.store(p.window.top, Ordering::Relaxed);
            }
            let ms = now.saturating_duration_since(pulse.born).as_millis() as u64;
            pulse.ticked_ms.store(ms, Ordering::Relaxed);
        }
        let m = self.sync.tick(now);
        self.transmit();
        m
    }

    /// A heartbeat to every peer now, from this thread: the last word of a node that
    /// stops, so its peers hear its flags (drained: no longer serving) before it goes.
    pub fn farewell(&mut self, now: Instant) {
        // The heartbeat thread falls silent first: a heartbeat of its from before would
        // say the node serves.
        if let Some(pulse) = &self.pulse {
            pulse
                .flags
                .store(self.sync.my_flags(now), Ordering::Relaxed);
            pulse.stop.store(true, Ordering::Relaxed);
        }
        self.sync.send_heartbeats(now);
        self.transmit();
    }

    /// Queues a record for every peer; full datagrams go out at once.
    pub fn queue_record(&mut self, r: &WireRecord, now: Instant) {
        self.sync.queue_record(r, now);
        self.transmit();
    }

    /// Sends a trace message to every peer.
    pub fn send_trace(&mut self, m: &codec::TraceMsg) {
        self.sync.queue_trace(m);
        self.transmit();
    }

    /// Sends the records batched so far to every peer.
    pub fn flush(&mut self, now: Instant) {
        self.sync.flush(now);
        self.transmit();
    }

    /// Sends heartbeats from a thread of their own from now on (see [`Pulse`]); `tick`
    /// then only keeps what they say current.
    pub fn start_heartbeat_thread(&mut self, now: Instant) -> std::io::Result<()> {
        let pulse = Arc::new(Pulse {
            flags: AtomicU8::new(self.sync.my_flags(now)),
            flows: AtomicU32::new(self.sync.local_flows),
            acks: self
                .sync
                .peers
                .iter()
                .map(|p| AtomicU64::new(p.window.top))
                .collect(),
            sent: self.sync.peers.iter().map(|_| AtomicU64::new(0)).collect(),
            ticked_ms: AtomicU64::new(0),
            born: now,
            stop: AtomicBool::new(false),
        });
        let socket = self.socket.try_clone()?;
        let key = self.sync.key.clone();
        let seq = Arc::clone(&self.sync.seq);
        let s = &self.sync;
        let (me, epoch, fingerprint, every) = (s.me, s.epoch, s.fingerprint, s.heartbeat);
        let to: Vec<SocketAddr> = s.peers.iter().map(|p| p.cfg.sync).collect();
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
        self.sync.heartbeats_elsewhere = true;
        Ok(())
    }

    /// Heartbeats sent to the peer with this id by the heartbeat thread.
    pub fn heartbeats_sent(&self, id: u16) -> u64 {
        let i = self.sync.peers.iter().position(|p| p.cfg.id == id);
        self.pulse
            .as_ref()
            .zip(i)
            .and_then(|(p, i)| p.sent.get(i))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests;

/// A fingerprint of what flow records refer to by index: the ports, by name in order (a
/// record's ingress port and paths are port indices). Services and backends are not in it:
/// records name them by VIP and by name (`WireRecord::backend`), so nodes whose services
/// differ (a rolling reload) go on sharing the records of the services both have.
pub fn fingerprint(cfg: &tandem_config::Config) -> u64 {
    let mut h = blake3::Hasher::new();
    for p in &cfg.ports {
        h.update(format!("port {}\n", p.name).as_bytes());
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
