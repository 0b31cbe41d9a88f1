//! The cluster as the control thread sees it: the sync channel read each tick (peers'
//! records checked and stored on every worker, snapshot requests answered from the master
//! view), membership changes handed to the workers.

use super::flows::MasterFlow;
use super::Control;
use crate::cluster::codec::WireRecord;
use crate::cluster::{Cluster, Inbound, RecordRefusal};
use crate::flowmap::FlowMap;
use std::time::{Duration, Instant};
use tandem_dataplane::cluster::{ClusterView, NO_NODE};
use tandem_dataplane::flow::{FlowRecord, FlowState, Mark};
use tandem_dataplane::messages::ToWorker;
use tandem_dataplane::services::Services;

/// Half-open flows a node that stops taking new flows sends its peers, at most: a real
/// client's handshake is among them unless a SYN flood of more than this many is under way,
/// which then costs each peer no more.
const HALF_OPEN_SHARED_MAX: usize = 65_536;

impl Control {
    /// Joins the cluster: records go to peers from now on.
    pub fn attach_cluster(&mut self, c: Cluster) {
        self.cluster = Some(c);
    }

    /// SIGTERM in a cluster: the node drains for `grace` (its peers rank it out of new
    /// flows at its next heartbeat, while it serves its own); past it, it serves nothing.
    /// Returns how long to run on (`grace`), None outside a cluster. `farewell` then tells
    /// the peers, so they move its flows to their backup nodes at once rather than finding
    /// it dead `dead_after` later (a connection opened on it in that window was lost).
    pub fn leave_cluster(&mut self, grace: Duration, now: Instant) -> Option<Duration> {
        let c = self.cluster.as_mut()?;
        c.sync.drain(Some(grace), now);
        Some(grace)
    }

    /// The last heartbeats of a node that stops (see `leave_cluster`).
    pub fn farewell(&mut self, now: Instant) {
        if let Some(c) = self.cluster.as_mut() {
            c.farewell(now);
        }
    }

    /// Reads the sync channel and runs the cluster's timers; tells the workers when the
    /// membership changes. Returns how many datagrams were handled.
    pub fn poll_cluster(&mut self, now: Instant) -> usize {
        let Some(c) = self.cluster.as_mut() else {
            return 0;
        };
        let inbound = c.receive(now, 4096);
        let n = inbound.len();
        for i in inbound {
            match i {
                Inbound::Records { from, records } => {
                    for w in &records {
                        self.take_peer_record(from, w, now);
                    }
                }
                Inbound::Trace { from, msg } => self.peer_trace(from, msg, now),
                Inbound::SnapshotRequest { from } => {
                    let Some(c) = self.cluster.as_mut() else {
                        break;
                    };
                    if !c.sync.may_answer_snapshot(from, now) {
                        continue;
                    }
                    let recs = wire_records(
                        &self.flows.map,
                        &self.snapshot,
                        &c.sync.view,
                        usize::MAX,
                        |f| f.rec.bound(),
                    );
                    if let Some(c) = self.cluster.as_mut() {
                        c.sync.answer_snapshot(from, &recs);
                    }
                }
            }
        }
        let flows = self.flows.map.len() as u32;
        let reach = self.reaches_a_backend();
        let behind = self.workers.iter().any(|w| w.behind());
        let Some(c) = self.cluster.as_mut() else {
            return n;
        };
        c.sync.local_flows = flows;
        c.sync.set_reach(reach);
        c.sync.workers_behind = behind;
        let me = c.sync.view.me;
        let was_eligible = c.sync.membership.eligible & (1 << me) != 0;
        if let Some(m) = c.tick(now) {
            self.broadcast(None, || ToWorker::Nodes(m));
            if was_eligible && m.eligible & (1 << me) == 0 {
                self.share_half_open(now);
            }
        }
        n
    }

    /// Sends the peers the flows this node bound that are still in their handshake, when
    /// it stops taking new flows (drained, stopping, cut off).
    ///
    /// A half-open flow is held only by its receiving and primary nodes (a SYN flood so
    /// fills no other table). That is safe while the nodes that take new flows stay the
    /// same: a packet of the flow that reaches a third node (the backend's SYN-ACK, or the
    /// client's ACK once the router moved the flow) is sent to the primary the SYN was
    /// ranked to. When the primary leaves that set mid-handshake, the third node ranks it
    /// elsewhere, where it was bound afresh, perhaps to another backend (nodes mid-reload
    /// differ), which resets it: the 60-minute soak lost a connection so. With the records
    /// shared, every node knows the flow's primary, and a node rewrites its nat replies
    /// itself. Only the node that leaves shares: when every node shared at every change
    /// of membership, the soak's bursts of new flows (tens of thousands half-open for
    /// `tcp_syn_timeout`) went to every peer 378 times an hour, 3.5 million records, and
    /// memory grew past the soak's bound.
    fn share_half_open(&mut self, now: Instant) {
        let syn_timeout = Duration::from_millis(u64::from(self.timeouts.syn_ms));
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let half_open = wire_records(
            &self.flows.map,
            &self.snapshot,
            &c.sync.view,
            HALF_OPEN_SHARED_MAX,
            |f| {
                f.node == 0
                    && f.rec.state == FlowState::SynSeen
                    && f.rec.bound()
                    && now.saturating_duration_since(f.updated) <= syn_timeout
            },
        );
        if half_open.is_empty() {
            return;
        }
        for w in &half_open {
            c.queue_record(w, now);
        }
        c.flush(now);
        tracing::info!(
            records = half_open.len(),
            "no longer taking new flows: half-open flows sent to the peers"
        );
    }

    /// Whether this node reaches a backend: one healthy (as the announcement counts it)
    /// with a path up over a port whose link is up. The link is read at once; the probes
    /// take `down_after` intervals. A node with no backend at all is not cut off.
    fn reaches_a_backend(&self) -> bool {
        let s = &self.snapshot;
        let link_up = |port: u8| {
            self.net
                .link_up
                .get(usize::from(port))
                .copied()
                .unwrap_or(true)
        };
        let mut backends = s
            .services
            .iter()
            .filter(|svc| !svc.removing)
            .flat_map(|svc| svc.backends.iter())
            .filter_map(|&b| s.backends.get(usize::from(b)))
            .peekable();
        if backends.peek().is_none() {
            return true;
        }
        backends.any(|b| crate::bgp::healthy(b) && b.paths.iter().any(|p| p.up && link_up(p.port)))
    }

    /// A record from a peer: checked against our services, then stored on every worker.
    pub(super) fn take_peer_record(&mut self, from: u16, w: &WireRecord, now: Instant) {
        let rec = match self.record_from_wire(w) {
            Ok(rec) => rec,
            Err(why) => {
                if let Some(c) = self.cluster.as_mut() {
                    c.sync.records_invalid[why.index()] += 1;
                }
                return;
            }
        };
        let key = w.key;
        let e = self.flows.map.entry(key).or_insert(MasterFlow {
            rec,
            worker: 0,
            node: from,
            created: now,
            updated: now,
        });
        e.rec = rec;
        e.node = from;
        e.updated = now;
        self.broadcast(None, || ToWorker::Flow { key, rec });
    }

    /// A wire record as this node stores it, or why not: it names a service, backend, path,
    /// port or node this node does not have, or holds what no node would send.
    pub fn record_from_wire(&self, w: &WireRecord) -> Result<FlowRecord, RecordRefusal> {
        let s = &self.snapshot;
        let view = &self
            .cluster
            .as_ref()
            .ok_or(RecordRefusal::UnknownService)?
            .sync
            .view;
        let k = &w.key;
        let svc = s
            .lookup(&k.dst, k.dport, k.proto)
            .ok_or(RecordRefusal::UnknownService)?;
        if k.v6 != svc.v6 {
            return Err(RecordRefusal::KeyMismatch);
        }
        let b = svc
            .backends
            .iter()
            .map(|&id| &s.backends[usize::from(id)])
            .find(|b| b.tag == w.backend)
            .ok_or(RecordRefusal::UnknownBackend)?;
        if usize::from(w.ingress_port) >= self.ports.len() {
            return Err(RecordRefusal::BadIndex);
        }
        // The sender's path list may differ from ours (a reload between): a path we do not
        // have is our first.
        let path = |p: u8| if usize::from(p) < b.paths.len() { p } else { 0 };
        let udp_state = w.state == FlowState::Udp;
        if udp_state != (k.proto == 17) {
            return Err(RecordRefusal::StateForProtocol);
        }
        let primary_node = view
            .index_of(w.primary_node)
            .ok_or(RecordRefusal::BadNodes)?;
        let backup_node = match w.backup_node {
            0 => NO_NODE,
            id => view.index_of(id).ok_or(RecordRefusal::BadNodes)?,
        };
        if backup_node == primary_node {
            return Err(RecordRefusal::BadNodes);
        }
        let now_ms = 0;
        Ok(FlowRecord {
            service: svc.id,
            backend: b.id,
            primary_path: path(w.primary_path),
            backup_path: path(w.backup_path),
            state: w.state,
            ingress_port: w.ingress_port,
            primary_node,
            backup_node,
            client_mac: w.client_mac,
            last_seen_ms: now_ms,
            last_sync_ms: now_ms,
            admitted: false,
            mark: Mark::None,
            mark_us: 0,
        })
    }
}

/// The flows of the master view that `keep` picks (the first `max`), as the sync channel
/// carries them.
fn wire_records(
    flows: &FlowMap<MasterFlow>,
    snap: &Services,
    view: &ClusterView,
    max: usize,
    keep: impl Fn(&MasterFlow) -> bool,
) -> Vec<WireRecord> {
    flows
        .iter()
        .filter(|(_, f)| keep(f))
        .take(max)
        .map(|(k, f)| {
            let tag = snap.tag_of(f.rec.backend);
            WireRecord::from_record(*k, &f.rec, tag, |i| view.id_of(i))
        })
        .collect()
}
