//! QUIC services (`protocol = "quic"`): a short-header packet goes to the backend whose
//! server ID its destination connection ID carries (QUIC-LB), whatever 4-tuple it comes
//! from, so a client that changes address keeps its server, and any node routes it with no
//! record at all (in a cluster, a nat service's new 4-tuple is routed by its primary node,
//! where its replies go: see `serve_by_id`). A long-header packet (a new connection's
//! Initial, 0-RTT, Handshake) is balanced and recorded as any UDP flow; a short header whose ID does not decode (another
//! config rotation codepoint, no such server) falls back to its 4-tuple's record.

use super::context::{Part, Segment};
use super::flows::{for_peers, touch};
use super::{PacketBuf, State, Verdict};
use crate::counters::DropReason;
use crate::flow::table::Lookahead;
use crate::flow::FlowRecord;
use crate::services::{QuicRoute, Service, Services};
use crate::wire::l4::udp_payload;

/// QUIC's long-header form bit (RFC 8999: version-independent).
const LONG_HEADER: u8 = 0x80;

/// What a QUIC datagram's first octets say about routing it.
enum Route {
    /// A short header whose connection ID names this backend.
    Id(u16),
    /// A short header whose ID names none.
    Unroutable,
    /// A long header, an empty datagram, or a fragment: a flow like any other.
    Flow,
}

impl State {
    /// A packet to a quic service (see the module's doc).
    #[inline(never)]
    pub(super) fn serve_quic(
        &mut self,
        s: &Services,
        svc: &Service,
        q: &QuicRoute,
        seg: &Segment,
        la: Option<Lookahead>,
        pkt: &mut PacketBuf,
    ) -> Verdict {
        match route(q, seg, pkt) {
            Route::Id(b) => {
                self.counters.quic_by_cid.inc();
                self.serve_by_id(s, svc, seg, la, pkt, b)
            }
            Route::Unroutable
                if self
                    .table
                    .get_mut_hashed(&seg.key, la, self.now.ms)
                    .is_none() =>
            {
                self.counters.quic_unroutable.inc();
                Verdict::Drop(DropReason::NoFlow)
            }
            Route::Unroutable | Route::Flow => {
                self.counters.quic_by_flow.inc();
                self.serve_by_flow(s, svc, seg, la, pkt)
            }
        }
    }

    /// Out to backend `b`, the connection ID's: the 4-tuple's record made or bound to it
    /// (so a nat backend's replies find their way back, and other nodes learn of it), with
    /// no admission or selection: the connection is the backend's.
    ///
    /// In a cluster, a nat service's 4-tuple is served by its primary node, as any flow's
    /// is: its backend's replies may come back through any node, and one with no record
    /// goes to the primary ranked by the client side. A 4-tuple this node served itself (a
    /// client that moved to a new address reaching a node that is not its primary) would
    /// have its replies wait for replication at the primary, and dropped when that is
    /// slow: the soak lost a QUIC connection so, its client moving during a burst. A dsr
    /// service's replies bypass the nodes: its packets are served where they arrive.
    fn serve_by_id(
        &mut self,
        s: &Services,
        svc: &Service,
        seg: &Segment,
        la: Option<Lookahead>,
        pkt: &mut PacketBuf,
        b: u16,
    ) -> Verdict {
        let key = seg.key;
        let now = self.now;
        let timeouts = *self.table.timeouts();
        let (mut rec, mut announce) = match self.table.get_mut_hashed(&key, la, now.ms) {
            Some(r) => {
                let announce = touch(r, seg.l4.flags, now.ms, &timeouts);
                (*r, announce)
            }
            None => match self.new_by_id(s, svc, seg, la, pkt, b) {
                Ok(rec) => (rec, true),
                Err(v) => return v,
            },
        };
        if let Some(n) = self.primary_elsewhere(s, svc, seg, &rec) {
            if announce {
                self.announce(key, rec, false, true);
            }
            return self.send_to_node(s, pkt, seg, n, &rec, 0);
        }
        if rec.backend != b {
            // The record names another backend (the 4-tuple reused, or a ranking-only record
            // of another node's flow): the connection is b's.
            if rec.admitted {
                self.load.release(rec.backend);
                rec.admitted = false;
            }
            rec.backend = b;
            (rec.primary_path, rec.backup_path) =
                self.paths_to(s, b, key.hash(crate::services::SELECTION_SEED));
            self.store(key, rec);
            announce = true;
        }
        if announce {
            self.announce(key, rec, for_peers(&rec), svc.mode.translates());
        }
        self.forward(s, svc, seg, &rec, pkt)
    }

    /// A record for a 4-tuple first seen with a routable ID: bound to `b`, ranked among
    /// nodes as any flow (so replies and later long headers find it), stored. Err: sent on
    /// to its primary (a nat service's, in a cluster: see `serve_by_id`), with the ranking
    /// kept here so its next packets follow; or dropped.
    fn new_by_id(
        &mut self,
        s: &Services,
        svc: &Service,
        seg: &Segment,
        la: Option<Lookahead>,
        pkt: &mut PacketBuf,
        b: u16,
    ) -> Result<FlowRecord, Verdict> {
        let key = seg.key;
        if super::martian::is_martian(s, &key.src, key.v6) {
            return Err(Verdict::Drop(DropReason::MartianSource));
        }
        let mut rec = self.fresh_record(svc, seg);
        if let Some(cl) = s.cluster.as_ref() {
            let primary = self.rank_new(cl, seg, &mut rec)?;
            if let Some(n) = primary.filter(|_| svc.mode.translates()) {
                return Err(self.send_on_new(s, svc, seg, pkt, &rec, n));
            }
        }
        rec.backend = b;
        (rec.primary_path, rec.backup_path) =
            self.paths_to(s, b, key.hash(crate::services::SELECTION_SEED));
        self.keep_new(svc, seg, la, &mut rec)?;
        Ok(rec)
    }

    /// The node a nat service's 4-tuple is sent on to: its primary (or backup) when this
    /// node holds only its ranking and that node is another.
    #[inline]
    fn primary_elsewhere(
        &self,
        s: &Services,
        svc: &Service,
        seg: &Segment,
        rec: &FlowRecord,
    ) -> Option<u8> {
        if rec.bound() || !svc.mode.translates() {
            return None;
        }
        self.owner_elsewhere(s.cluster.as_ref()?, seg, rec)
    }
}

/// The route a quic datagram's header gives.
#[inline]
fn route(q: &QuicRoute, seg: &Segment, pkt: &PacketBuf) -> Route {
    if seg.part != Part::Whole {
        return Route::Flow;
    }
    let Some(payload) = udp_payload(pkt.frame(), seg.l3() + seg.ip_len) else {
        return Route::Flow;
    };
    match payload.first() {
        Some(&first) if first & LONG_HEADER == 0 => match q.backend(&payload[1..]) {
            Some(b) => Route::Id(b),
            None => Route::Unroutable,
        },
        _ => Route::Flow,
    }
}
