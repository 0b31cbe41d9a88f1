//! ICMP errors about flows: destination unreachable (fragmentation needed among them), time
//! exceeded, and their ICMPv6 kin (packet too big). An error quotes the start of the
//! packet that caused it, and the quote names the flow (GLB Director steers by it too).
//!
//! - An error to a VIP is about a packet the VIP sent a client (a nat reply, or a dsr or
//!   gue backend's answer): it goes where that flow's packets go, to its backend over its
//!   path in the service's mode (nat rewrites the outer destination and the quote as it
//!   rewrites the flow's packets), or to the flow's node in a cluster. So path MTU
//!   discovery works for the backend: its router's "fragmentation needed" reaches it.
//! - An error to a client from the backend side (the backend, or a router before it, about
//!   a nat request it could not take) goes to the client rewritten back to the VIP, as
//!   conntrack does for related ICMP.
//!
//! Errors are counted by kind. What is refused, and counted by reason:
//!
//! - a quote that is malformed or quotes ICMP (errors about errors);
//! - an MTU no link has (below 68 for IPv4, 1280 for IPv6): it would only shrink the
//!   backend's segments (Linux clamps such values to its floor instead; dropping keeps the
//!   backend's own floor in charge);
//! - an error from the wrong side of its flow: one to a VIP that comes in by a port of the
//!   flow's backend side (and not the client's), one toward a client that comes in by a
//!   port that is not the flow's backend side;
//! - an error naming no flow here. In a cluster it may be about a flow still in its
//!   handshake on its primary node (such flows are not replicated): it is sent on only
//!   when it may be (TCP, its quote a SYN-ACK to the client or a SYN to the backend when
//!   the quote reaches the flags), and at most `RELAYS_PER_MS` a millisecond per worker.

use super::bucket::Bucket;
use super::context::{Part, Rx, Segment, Via};
use super::xmit::{self, nat};
use super::{PacketBuf, State, Verdict};
use crate::counters::DropReason;
use crate::flow::{FlowKey, FlowRecord};
use crate::services::Services;
use crate::wire::icmp::{self, ErrorKind, QuoteError};
use crate::wire::l4::{ACK, SYN};
use crate::wire::{ipv4, ipv6, l4};

/// Errors naming no flow here that a worker sends on to a peer, per millisecond (and saved
/// up to `RELAYS_BURST`): more than a cluster's handshakes draw, less than a flood.
pub const RELAYS_PER_MS: u32 = 1;
const RELAYS_BURST: u32 = 32;

pub(super) fn relays() -> Bucket {
    Bucket::new(RELAYS_PER_MS, RELAYS_BURST)
}

/// True when `port` carries the flow's packets to its backend (its primary or backup
/// path's port): the backend side of the flow.
fn backend_side(s: &Services, rec: &FlowRecord, port: u8) -> bool {
    s.backends.get(usize::from(rec.backend)).is_some_and(|b| {
        [rec.primary_path, rec.backup_path]
            .iter()
            .any(|&i| b.paths.get(usize::from(i)).is_some_and(|p| p.port == port))
    })
}

/// What the IP stage read of an ICMP error.
pub(super) struct Error {
    /// Offset of the ICMP message from the IP header, and of the IP packet's end.
    pub at: usize,
    pub end: usize,
    pub kind: ErrorKind,
    /// Addressed to the receiving port itself (about the node's own packets: not a flow's).
    pub to_port: bool,
}

impl State {
    #[cold]
    #[inline(never)]
    pub(super) fn icmp_error(
        &mut self,
        s: &Services,
        rx: &Rx,
        pkt: &mut PacketBuf,
        e: &Error,
    ) -> Verdict {
        if !self.again {
            let c = &self.counters;
            match e.kind {
                ErrorKind::Unreachable => c.icmp_unreachable.inc(),
                ErrorKind::FragNeeded => c.icmp_frag_needed.inc(),
                ErrorKind::TimeExceeded => c.icmp_time_exceeded.inc(),
                ErrorKind::V6Unreachable => c.icmp6_unreachable.inc(),
                ErrorKind::V6TooBig => c.icmp6_too_big.inc(),
                ErrorKind::V6TimeExceeded => c.icmp6_time_exceeded.inc(),
            }
        }
        let l3 = rx.l3();
        let v6 = matches!(
            e.kind,
            ErrorKind::V6Unreachable | ErrorKind::V6TooBig | ErrorKind::V6TimeExceeded
        );
        let msg = &pkt.frame()[l3 + e.at..l3 + e.end];
        if icmp::names_impossible_mtu(msg, e.kind) {
            return Verdict::Drop(DropReason::IcmpBadMtu);
        }
        let (outer_src, outer_dst) = outer_addresses(&pkt.frame()[l3..], v6);
        if e.to_port {
            // About the node's own traffic: its kernel's, when the port has a twin.
            return self.unclaimed(s, rx, pkt.frame(), &outer_dst, v6);
        }
        let msg = &pkt.frame()[l3 + e.at..l3 + e.end];
        let q = match icmp::quote(msg, v6) {
            Ok(q) => q,
            Err(QuoteError::Bad) => return Verdict::Drop(DropReason::IcmpBadQuote),
            Err(QuoteError::AboutIcmp) => return Verdict::Drop(DropReason::IcmpAboutIcmp),
        };
        let flags = icmp::quoted_tcp_flags(msg, &q);
        // An error goes to the source of the packet it quotes.
        if q.src != outer_dst {
            return Verdict::Drop(DropReason::IcmpBadQuote);
        }
        // The quoted packet's reverse: the flow's key as its client's packets name it (for
        // an error to a VIP), or the nat reply's (for an error to a client).
        let key = FlowKey {
            src: q.dst,
            dst: q.src,
            sport: q.dport,
            dport: q.sport,
            proto: q.proto,
            v6,
        };
        let seg = Segment {
            rx: *rx,
            ip_len: e.at,
            key,
            l4: l4::Ports {
                src: key.sport,
                dst: key.dport,
                flags: 0,
                payload_len: 0,
            },
            part: Part::Whole,
        };
        if s.is_vip(&outer_dst) {
            self.error_to_flow(s, &seg, pkt, &q, flags)
        } else {
            self.error_to_client(s, &seg, pkt, &q, flags, &outer_src)
        }
    }

    /// An error to a VIP, about the flow `seg.key`: where the flow's packets go.
    fn error_to_flow(
        &mut self,
        s: &Services,
        seg: &Segment,
        pkt: &mut PacketBuf,
        q: &icmp::Quote,
        flags: Option<u8>,
    ) -> Verdict {
        let key = seg.key;
        let Some(svc) = s.lookup(&key.dst, key.dport, key.proto) else {
            return Verdict::Drop(DropReason::IcmpNoFlow);
        };
        if svc.v6 != key.v6 {
            return Verdict::Drop(DropReason::IcmpNoFlow);
        }
        let cl = s.cluster.as_ref();
        let Some(rec) = self.table.peek_live(&key, self.now.ms).copied() else {
            // Not here: the flow's primary may hold it, if it is a TCP flow still in its
            // handshake (not replicated): the quote a SYN-ACK to its client.
            if let Some(cl) = cl {
                if self.may_relay(q, flags, SYN | ACK) {
                    let mut rec = FlowRecord::default();
                    if let Ok(Some(p)) = self.rank_new(cl, seg, &mut rec) {
                        return self.send_to_node(s, pkt, seg, p, &rec, 0);
                    }
                }
            }
            return Verdict::Drop(DropReason::IcmpNoFlow);
        };
        if seg.rx.via == Via::Direct
            && seg.rx.in_port != rec.ingress_port
            && backend_side(s, &rec, seg.rx.in_port)
        {
            return Verdict::Drop(DropReason::IcmpWrongSide);
        }
        if let Some(n) = cl.and_then(|cl| self.owner_elsewhere(cl, seg, &rec)) {
            return self.send_to_node(s, pkt, seg, n, &rec, 0);
        }
        if !rec.bound() {
            return Verdict::Drop(DropReason::IcmpNoFlow);
        }
        let to = match self.egress(s, &rec) {
            Ok(to) => to,
            Err(v) => return v,
        };
        // A translating mode rewrote the packet the error quotes: the quote is rewritten
        // back as its packets are.
        if svc.mode.translates() {
            nat::error_to_backend(pkt, seg, q, &to)
        } else {
            xmit::to_backend(svc.mode, pkt, seg, &to)
        }
    }

    /// An error from the backend side to a client, about a nat request (`seg.key` is the
    /// flow's reply direction): back to the client as from the VIP.
    fn error_to_client(
        &mut self,
        s: &Services,
        seg: &Segment,
        pkt: &mut PacketBuf,
        q: &icmp::Quote,
        flags: Option<u8>,
        outer_src: &[u8; 16],
    ) -> Verdict {
        let reply = seg.key;
        let from = s.nat_services_of(&reply.src, reply.sport, reply.proto);
        if from.is_empty() {
            return Verdict::Drop(DropReason::NotForUs);
        }
        let Some(fkey) = self.reply_flow(s, from, &reply) else {
            // The flow's primary may hold it, if it is still in its handshake: the quote
            // the SYN the node sent the backend.
            if !self.may_relay(q, flags, SYN) {
                return Verdict::Drop(DropReason::IcmpNoFlow);
            }
            return self
                .reply_to_owner(s, seg, pkt)
                .unwrap_or(Verdict::Drop(DropReason::IcmpNoFlow));
        };
        let Some(rec) = self.table.peek_live(&fkey, self.now.ms).copied() else {
            return Verdict::Drop(DropReason::IcmpNoFlow);
        };
        if seg.rx.via == Via::Direct && !backend_side(s, &rec, seg.rx.in_port) {
            return Verdict::Drop(DropReason::IcmpWrongSide);
        }
        let egress = rec.ingress_port;
        let Some(out) = self.client_port(s, &rec) else {
            return Verdict::Drop(DropReason::NoPath);
        };
        let next_mac = self
            .resolve(egress, out, &reply.dst, reply.v6)
            .unwrap_or(rec.client_mac);
        let to = nat::ToClient {
            vip: fkey.dst,
            vport: fkey.dport,
            // The backend's own error comes from the backend's address, which clients know
            // as the VIP; a router's keeps its own.
            from_backend: *outer_src == reply.src,
            port: egress,
            port_mac: out.mac,
            next_mac,
        };
        let v = nat::error_to_client(pkt, seg, q, &to);
        if let Verdict::Tx(_) = v {
            self.counters.icmp_to_clients.inc();
        }
        v
    }
}

impl State {
    /// True when an error naming no flow here may be about a flow in its handshake on
    /// another node, and the relay budget has room: TCP, with the quoted segment's flags
    /// (when quoted) those of the handshake packet `handshake`.
    fn may_relay(&mut self, q: &icmp::Quote, flags: Option<u8>, handshake: u8) -> bool {
        q.proto == l4::PROTO_TCP
            && flags.is_none_or(|f| f & (SYN | ACK) == handshake)
            && self.relays.take(self.now.ms)
    }
}

/// The source and destination of the IP header at the start of `ip` (checked by the IP
/// stage).
fn outer_addresses(ip: &[u8], v6: bool) -> ([u8; 16], [u8; 16]) {
    if v6 {
        let p = ipv6::Packet::new_unchecked(ip);
        (p.src_bytes(), p.dst_bytes())
    } else {
        let p = ipv4::Packet::new_unchecked(ip);
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        a[..4].copy_from_slice(&p.src_bytes());
        b[..4].copy_from_slice(&p.dst_bytes());
        (a, b)
    }
}
