//! Flows: a service's packet finds its flow's record or makes one (choosing the backend and
//! paths, `select`), keeps it current (state, liveness, replication), and leaves by the
//! service's mode; a nat backend's reply finds the flow it answers and goes back to the
//! client. The cluster, admission and timing stages are called from here.

use super::admission::release_if_closed;
use super::context::Segment;
use super::fast::Fast;
use super::martian;
use super::xmit::{self, nat, Egress};
use super::{timing, PacketBuf, State, Verdict, LISTED_PER_MS};
use crate::counters::DropReason;
use crate::flow::table::Lookahead;
use crate::flow::{FlowKey, FlowRecord, FlowState, Insert, Mark, Timeouts, UNBOUND};
use crate::messages::FromWorker;
use crate::select::{self, path};
use crate::services::{self, PortInfo, Service, Services, SELECTION_SEED};
use crate::wire::l4::{ACK, FIN, PROTO_TCP, PROTO_UDP, RST, SYN};
use crate::wire::tunnel;
use tandem_config::OnBackendDown;

/// A packet of a known flow was seen: advance its state and liveness. True when the control
/// thread should hear of it (the state changed, or it is due for a refresh).
#[inline]
pub(super) fn touch(r: &mut FlowRecord, flags: u8, now_ms: u32, t: &Timeouts) -> bool {
    let before = r.state;
    r.state = r.state.next(flags);
    r.last_seen_ms = now_ms;
    let announce =
        r.state != before || now_ms.wrapping_sub(r.last_sync_ms) >= t.sync_interval(r.state);
    if announce {
        r.last_sync_ms = now_ms;
    }
    announce
}

/// True when other nodes should store this record: the flow is bound to a backend and past
/// its handshake (a SYN flood fills only the receiving and primary nodes' tables).
#[inline]
pub(super) fn for_peers(r: &FlowRecord) -> bool {
    r.bound() && r.state != FlowState::SynSeen
}

/// The key of the flow of nat service `id` that a reply `key` would answer: the reply's
/// client side to the service's VIP and port.
#[inline(always)]
pub(super) fn reply_key(s: &Services, id: u16, key: &FlowKey) -> Option<FlowKey> {
    let svc = s.services.get(usize::from(id))?;
    Some(FlowKey {
        src: key.dst,
        dst: svc.vip,
        sport: key.dport,
        dport: svc.port,
        proto: key.proto,
        v6: key.v6,
    })
}

/// True when `rec` names the backend a reply `key` comes from.
#[inline(always)]
fn answers(s: &Services, rec: &FlowRecord, key: &FlowKey) -> bool {
    s.backends
        .get(usize::from(rec.backend))
        .is_some_and(|b| b.addr == key.src && b.port == key.sport)
}

/// A nat reply with no record yet: parked with the hint of its client side (off the hot
/// path: kept out of line so the established-flow path stays as the compiler had it).
#[cold]
#[inline(never)]
fn defer(reply: &FlowKey) -> Verdict {
    Verdict::Defer(super::Wait {
        lot: crate::parking::Lot::Replies,
        hint: crate::parking::hint(&reply.dst, reply.dport, reply.proto),
        expired: DropReason::NoFlow,
    })
}

impl State {
    /// A packet to a service's VIP:port: by the fast path when it may take it, else its
    /// flow's record (found, or made), then out to the backend by the service's mode. `la`
    /// is the hash of the segment's key when a burst's first pass computed it.
    #[inline(always)]
    pub(super) fn serve(
        &mut self,
        s: &Services,
        svc: &Service,
        seg: &Segment,
        la: Option<Lookahead>,
        pkt: &mut PacketBuf,
    ) -> Verdict {
        if let Some(q) = svc.quic.as_deref() {
            return self.serve_quic(s, svc, q, seg, la, pkt);
        }
        self.serve_by_flow(s, svc, seg, la, pkt)
    }

    /// `serve` by the flow's record: the fast path, or the full stage.
    #[inline(always)]
    pub(super) fn serve_by_flow(
        &mut self,
        s: &Services,
        svc: &Service,
        seg: &Segment,
        la: Option<Lookahead>,
        pkt: &mut PacketBuf,
    ) -> Verdict {
        match self.fast(s, svc, seg, la, pkt) {
            Fast::Done(v) => v,
            Fast::Miss => self.serve_flow(s, svc, seg, la, pkt, false),
            Fast::Full => self.serve_flow(s, svc, seg, la, pkt, true),
        }
    }

    /// The full flow stage: the record found (when `known` may be) or made, then out.
    #[inline(never)]
    fn serve_flow(
        &mut self,
        s: &Services,
        svc: &Service,
        seg: &Segment,
        la: Option<Lookahead>,
        pkt: &mut PacketBuf,
        known: bool,
    ) -> Verdict {
        let found = if known {
            self.known_flow(s, svc, seg, la, pkt)
        } else {
            None
        };
        let rec = match found {
            Some(Ok(rec)) => rec,
            Some(Err(v)) => return v,
            None => match self.new_flow(s, svc, seg, la, pkt) {
                Ok(rec) => rec,
                Err(v) => return v,
            },
        };
        self.forward(s, svc, seg, &rec, pkt)
    }

    /// The record of a flow the table holds, brought up to date (None: no such flow). Err
    /// when the packet goes no further here: sent on to the node that serves it, waiting
    /// for a slot, or dropped.
    #[inline(always)]
    fn known_flow(
        &mut self,
        s: &Services,
        svc: &Service,
        seg: &Segment,
        la: Option<Lookahead>,
        pkt: &mut PacketBuf,
    ) -> Option<Result<FlowRecord, Verdict>> {
        let key = seg.key;
        let flags = seg.l4.flags;
        let now = self.now;
        let timeouts = *self.table.timeouts();
        let syn_only = key.proto == PROTO_TCP && flags & (SYN | ACK | RST | FIN) == SYN;
        let r = match self.table.get_mut_hashed(&key, la, now.ms) {
            // A client's SYN on a flow that has closed: the client reused its port for a
            // new connection (HTTP/1.0 servers close first, so clients keep no TIME_WAIT
            // and reuse ports at once). The old record goes, and the SYN starts a new flow,
            // chosen afresh, as IPVS's `conn_reuse_mode` does; otherwise it would follow
            // the old flow to a backend that may be draining or gone.
            Some(r) if syn_only && r.state == FlowState::Closing => {
                self.table.remove(&key);
                return None;
            }
            Some(r) => r,
            None => return None,
        };
        let mut announce = touch(r, flags, now.ms, &timeouts);
        release_if_closed(&self.load, r);
        if svc.mode.translates() && r.bound() {
            timing::request(r, seg.l4, now.us, &mut self.hist, s.options.qos_timeout_us);
        }
        let mut rec = *r;
        let cl = s.cluster.as_ref();
        if let Some(n) = cl.and_then(|cl| self.owner_elsewhere(cl, seg, &rec)) {
            if announce {
                self.announce(key, rec, false, svc.mode.translates());
            }
            return Some(Err(self.send_to_node(s, pkt, seg, n, &rec, 0)));
        }
        let moved = rec.bound()
            && key.proto == PROTO_UDP
            && s.options.on_backend_down == OnBackendDown::Move
            && s.backends
                .get(usize::from(rec.backend))
                .is_some_and(|b| !b.up);
        if !rec.bound() || moved {
            // Served here although its primary took the first packet (that node died
            // during the handshake): chosen by the same hash (with `weights`, the same
            // backend; with two choices, possibly the other candidate). Or a UDP flow whose
            // backend went down, moved as configured.
            if rec.admitted {
                self.load.release(rec.backend);
                rec.admitted = false;
            }
            rec.mark = Mark::None;
            if let Err(v) = self.bind(s, svc, &key, &mut rec) {
                return Some(Err(self.held_or(v, seg, pkt)));
            }
            self.store(key, rec);
            announce = true;
        }
        if cl.is_some_and(|c| rec.primary_node != c.me) {
            self.counters.node_failovers.inc();
        }
        if announce {
            self.announce(key, rec, for_peers(&rec), svc.mode.translates());
        }
        Some(Ok(rec))
    }

    /// A flow the table does not hold: ranked (in a cluster, and sent on when another node
    /// is its primary), admitted, bound to a backend and paths, timed, stored, announced.
    #[inline(always)]
    fn new_flow(
        &mut self,
        s: &Services,
        svc: &Service,
        seg: &Segment,
        la: Option<Lookahead>,
        pkt: &mut PacketBuf,
    ) -> Result<FlowRecord, Verdict> {
        let key = seg.key;
        if martian::is_martian(s, &key.src, key.v6) {
            return Err(Verdict::Drop(DropReason::MartianSource));
        }
        let mut rec = self.fresh_record(svc, seg);
        if let Some(cl) = s.cluster.as_ref() {
            if let Some(primary) = self.rank_new(cl, seg, &mut rec)? {
                return Err(self.send_on_new(s, svc, seg, pkt, &rec, primary));
            }
        }
        // First come, first served: while others wait, a new flow waits behind them.
        if self.must_wait(svc) {
            return Err(self.hold(svc.id, seg, pkt));
        }
        if let Err(v) = self.bind(s, svc, &key, &mut rec) {
            return Err(self.held_or(v, seg, pkt));
        }
        self.keep_new(svc, seg, la, &mut rec)?;
        self.announce(key, rec, for_peers(&rec), svc.mode.translates());
        Ok(rec)
    }

    /// A new flow whose primary is node `primary`, another: its ranking stored, so the
    /// flow's next packets go to the same node whatever joins or leaves meanwhile, and the
    /// packet sent on there.
    pub(super) fn send_on_new(
        &mut self,
        s: &Services,
        svc: &Service,
        seg: &Segment,
        pkt: &mut PacketBuf,
        rec: &FlowRecord,
        primary: u8,
    ) -> Verdict {
        if self.store(seg.key, *rec) == Insert::Refused {
            return Verdict::Drop(DropReason::TableFull);
        }
        self.announce(seg.key, *rec, false, svc.mode.translates());
        self.send_to_node(s, pkt, seg, primary, rec, 0)
    }

    /// The record a new flow of `svc` starts from, as `seg` begins it: bound to no backend.
    #[inline(always)]
    pub(super) fn fresh_record(&self, svc: &Service, seg: &Segment) -> FlowRecord {
        FlowRecord {
            service: svc.id,
            backend: UNBOUND,
            state: FlowState::initial(seg.key.proto, seg.l4.flags),
            ingress_port: seg.rx.in_port,
            client_mac: seg.rx.l2.src,
            last_seen_ms: self.now.ms,
            last_sync_ms: self.now.ms,
            ..FlowRecord::default()
        }
    }

    /// A new flow, bound: timed (when its mode sees replies), stored and counted. A table
    /// that refuses it drops the packet, and the admission slot it held goes back.
    #[inline(always)]
    pub(super) fn keep_new(
        &mut self,
        svc: &Service,
        seg: &Segment,
        la: Option<Lookahead>,
        rec: &mut FlowRecord,
    ) -> Result<(), Verdict> {
        if svc.mode.translates() {
            timing::start(rec, seg, self.now);
        }
        if self.store_new(seg.key, la, *rec) == Insert::Refused {
            if rec.admitted {
                self.load.release(rec.backend);
            }
            return Err(Verdict::Drop(DropReason::TableFull));
        }
        self.counters.flows_created.inc();
        self.counters.backend_new_flows[usize::from(rec.backend)].inc();
        Ok(())
    }

    /// A `Hold` from binding puts the frame in its service's queue; other verdicts pass.
    #[inline]
    fn held_or(&mut self, v: Verdict, seg: &Segment, pkt: &PacketBuf) -> Verdict {
        match v {
            Verdict::Hold(service) => self.hold(service, seg, pkt),
            v => v,
        }
    }

    /// Out to the flow's backend, by the service's mode (an encapsulating mode's SYNs
    /// clamped, its packets too big for the egress port answered: `mtu`).
    #[inline(always)]
    pub(super) fn forward(
        &mut self,
        s: &Services,
        svc: &Service,
        seg: &Segment,
        rec: &FlowRecord,
        pkt: &mut PacketBuf,
    ) -> Verdict {
        let to = match self.egress(s, rec) {
            Ok(to) => to,
            Err(v) => return v,
        };
        if !svc.mode.encapsulates() {
            return xmit::to_backend(svc.mode, pkt, seg, &to);
        }
        let fits = usize::from(to.out.mtu).saturating_sub(xmit::overhead(to.v6, false));
        if svc.clamp_mss {
            self.clamp_syn(seg, pkt, fits);
        }
        let v = xmit::to_backend(svc.mode, pkt, seg, &to);
        self.after_encap(v, s, seg, pkt, fits)
    }

    /// Where a flow's packets leave for its backend: over its primary path, or the backup
    /// when the primary's port is down or its probes fail (a path whose probes fail is
    /// still used when it is the only one left), to the next hop.
    #[inline(always)]
    pub(super) fn egress<'s>(
        &mut self,
        s: &'s Services,
        rec: &FlowRecord,
    ) -> Result<Egress<'s>, Verdict> {
        let Some(backend) = s.backends.get(usize::from(rec.backend)) else {
            return Err(Verdict::Drop(DropReason::NoBackend));
        };
        let link = &self.link_up;
        let usable = |p: &&services::Path| link[usize::from(p.port)] && p.up;
        let linked = |p: &&services::Path| link[usize::from(p.port)];
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
            return Err(Verdict::Drop(DropReason::NoPath));
        };
        let out = &s.ports[usize::from(path.port)];
        let next_mac = match path.mac {
            Some(m) => m,
            None => match self.resolve(path.port, out, &backend.addr, backend.v6) {
                Some(m) => m,
                None => return Err(Verdict::Drop(DropReason::NoNeighbor)),
            },
        };
        Ok(Egress {
            port: path.port,
            out,
            next_mac,
            addr: backend.addr,
            v6: backend.v6,
            dport: backend.port,
        })
    }

    /// Picks a new flow's backend (by the configured selection, `select`), takes its slot
    /// when the service counts flows (`admission`), and picks the paths: a primary by share
    /// among the backend's healthy paths, the best other one as backup.
    #[inline]
    fn bind(
        &self,
        s: &Services,
        svc: &Service,
        key: &FlowKey,
        rec: &mut FlowRecord,
    ) -> Result<(), Verdict> {
        let h = key.hash(SELECTION_SEED);
        let chosen = select::pick(s.options.selection, &svc.maglev, &s.inputs, &self.load, h);
        let Some(mut backend) = chosen else {
            return Err(Verdict::Drop(DropReason::NoBackend));
        };
        if svc.counts_flows {
            backend = self.admit(s, svc, backend, h)?;
            rec.admitted = true;
        }
        rec.backend = backend;
        (rec.primary_path, rec.backup_path) = self.paths_to(s, backend, h);
        Ok(())
    }

    /// A flow's primary and backup path to `backend`, drawn by the flow's hash `h` among
    /// the paths that are up, by their shares.
    pub(super) fn paths_to(&self, s: &Services, backend: u16, h: u64) -> (u8, u8) {
        let paths = &s.backends[usize::from(backend)].paths;
        let mut avail = [(false, 0u16); path::MAX_PATHS];
        let n = paths.len().min(path::MAX_PATHS);
        for (a, p) in avail.iter_mut().zip(paths.iter()) {
            *a = (p.up && self.link_up[usize::from(p.port)], p.share);
        }
        path::choose(h, &avail[..n])
    }

    /// A reply from a nat backend: back to VIP:port, out of the port the request came in on.
    /// `fkey` is the key of the flow it answers, when there is one (`demux::toward`), and
    /// `la` its hash when known.
    pub(super) fn backend_reply(
        &mut self,
        s: &Services,
        seg: &Segment,
        fkey: Option<FlowKey>,
        la: Option<Lookahead>,
        pkt: &mut PacketBuf,
    ) -> Verdict {
        let key = seg.key;
        let now = self.now;
        let timeouts = *self.table.timeouts();
        let found = fkey.and_then(|fk| {
            let r = self.table.get_mut_hashed(&fk, la, now.ms)?;
            answers(s, r, &key).then_some((fk, r))
        });
        let Some((fkey, fwd)) = found else {
            // No record here yet: on this node, another worker may have made it a moment
            // ago.
            return self
                .reply_to_owner(s, seg, pkt)
                .unwrap_or_else(|| defer(&key));
        };
        let announce = touch(fwd, seg.l4.flags, now.ms, &timeouts);
        release_if_closed(&self.load, fwd);
        if timing::reply(
            fwd,
            seg.l4,
            now.us,
            &mut self.hist,
            s.options.qos_timeout_us,
        ) {
            self.counters.passive_samples.inc();
        }
        let rec = *fwd;
        if announce {
            self.announce(fkey, rec, for_peers(&rec), true);
        }
        let egress = rec.ingress_port;
        let Some(out) = self.client_port(s, &rec) else {
            return Verdict::Drop(DropReason::NoPath);
        };
        // Until the next hop toward the client is resolved, the client's own MAC as the
        // flow's first packet gave it.
        let next_mac = self
            .resolve(egress, out, &key.dst, key.v6)
            .unwrap_or(rec.client_mac);
        // In a cluster the client's segments may cross to another node encapsulated: its
        // SYN-ACK's MSS is lowered to fit.
        if seg.l4.flags & (SYN | ACK) == SYN | ACK && super::mtu::clamps_mss(s, rec.service) {
            if let Some(fits) = super::mtu::node_fit(s) {
                self.clamp_syn(seg, pkt, fits);
            }
        }
        nat::reply(pkt, seg, &fkey.dst, fkey.dport, egress, &out.mac, &next_mac)
    }

    /// A nat reply (or an error about a nat request) with no record here, from the network,
    /// in a cluster: on to the flow's primary node, which has it (a reply during the
    /// handshake, before the record is replicated). None when this node is that primary,
    /// or on its own.
    pub(super) fn reply_to_owner(
        &mut self,
        s: &Services,
        seg: &Segment,
        pkt: &mut PacketBuf,
    ) -> Option<Verdict> {
        let roles = self.reply_owner(s.cluster.as_ref()?, seg)?;
        let p = roles.primary_node;
        Some(self.send_to_node(s, pkt, seg, p, &roles, tunnel::FLAG_REPLY))
    }

    /// The port a nat flow's packets toward its client leave by (the one the flow came in
    /// on), while its link is up.
    #[inline(always)]
    pub(super) fn client_port<'s>(
        &self,
        s: &'s Services,
        rec: &FlowRecord,
    ) -> Option<&'s PortInfo> {
        let out = s.ports.get(usize::from(rec.ingress_port))?;
        self.link_up[usize::from(rec.ingress_port)].then_some(out)
    }

    /// The key of the flow a nat reply `key` belongs to: the reply's client side to the VIP
    /// of one of the nat services (`from`) its source serves, whose record names that very
    /// backend. None when this node has no such record (yet).
    pub(super) fn reply_flow(&self, s: &Services, from: &[u16], key: &FlowKey) -> Option<FlowKey> {
        from.iter().find_map(|&id| {
            let fkey = reply_key(s, id, key)?;
            // An expired record is as good as none: the reply goes where a reply without
            // a record here goes (the flow's primary node), not to the bin.
            let rec = self.table.peek_live(&fkey, self.now.ms)?;
            answers(s, rec, key).then_some(fkey)
        })
    }

    /// Stores a flow's record (nat replies find it too: see `reply_flow`).
    pub(super) fn store(&mut self, key: FlowKey, rec: FlowRecord) -> Insert {
        self.store_as(key, rec, None, false)
    }

    /// `store` with the key's hash when it is known already.
    pub(super) fn store_hashed(
        &mut self,
        key: FlowKey,
        la: Option<Lookahead>,
        rec: FlowRecord,
    ) -> Insert {
        self.store_as(key, rec, la, false)
    }

    /// Stores the record of a flow the table was just asked for and does not hold, without
    /// looking for it again (nor hashing its key again, with `la`).
    pub(super) fn store_new(
        &mut self,
        key: FlowKey,
        la: Option<Lookahead>,
        rec: FlowRecord,
    ) -> Insert {
        self.store_as(key, rec, la, true)
    }

    /// `la`: the key's hash, if known; `absent`: the key was just looked up and not found.
    #[inline(always)]
    fn store_as(
        &mut self,
        key: FlowKey,
        mut rec: FlowRecord,
        la: Option<Lookahead>,
        absent: bool,
    ) -> Insert {
        let now_ms = self.now.ms;
        // Replicated records carry the sender's clock fields; ours restart them.
        rec.last_seen_ms = now_ms;
        rec.last_sync_ms = now_ms;
        let r = if absent {
            self.table.insert_absent_hashed(key, la, rec, now_ms)
        } else {
            self.table.insert_hashed(key, la, rec, now_ms)
        };
        match r {
            Insert::Refused => self.counters.flows_refused.inc(),
            Insert::Evicted => self.counters.flows_evicted.inc(),
            _ => {}
        }
        self.counters.flows_in_table.set(self.table.len() as u64);
        r
    }

    /// Tells the node's other workers of a flow (straight through `replicas`), the other
    /// nodes when `peers` (through the control thread), and the control thread's listing
    /// (`show flow`). When only the listing needs the message, at most `LISTED_PER_MS` go a
    /// millisecond and the rest are counted: a flood of new flows then costs the control
    /// thread next to nothing, where a message and a map insert per flow saturated it near
    /// a million a second.
    ///
    /// The other workers hear at once of what may reach them: a nat flow (its backend's
    /// replies come in on any queue, the SYN-ACK first) and any flow past its handshake
    /// (for failover). A half-open flow of another mode has its next packets on this
    /// worker's queue: they hear of it once it is established (its state change announces
    /// it again), so a SYN flood on a dsr or gue service costs each other worker nothing.
    #[inline]
    pub(super) fn announce(
        &mut self,
        key: FlowKey,
        rec: FlowRecord,
        peers: bool,
        translated: bool,
    ) {
        if self.siblings && (translated || rec.state != FlowState::SynSeen) {
            self.replicas.push(super::Replica { key, rec });
        }
        if !(peers && self.clustered) {
            let ms = self.now.ms;
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
}
