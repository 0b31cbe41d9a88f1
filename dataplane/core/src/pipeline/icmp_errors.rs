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
//! Errors are not rate-limited here (the peers that sent them were), only counted by kind.
//! A quote that names no flow, is malformed, or quotes ICMP (errors about errors) is dropped
//! and counted by reason.

use super::context::{Part, Rx, Segment};
use super::xmit::{self, nat};
use super::{PacketBuf, State, Verdict};
use crate::counters::DropReason;
use crate::flow::{FlowKey, FlowRecord};
use crate::services::Services;
use crate::wire::icmp::{self, ErrorKind, QuoteError};
use crate::wire::{ipv4, ipv6, l4};
use tandem_config::Mode;

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
        let (outer_src, outer_dst) = outer_addresses(&pkt.frame()[l3..], v6);
        if e.to_port {
            // About the node's own traffic: its kernel's, when the port has a twin.
            return self.unclaimed(s, rx, &outer_dst, v6);
        }
        let q = match icmp::quote(&pkt.frame()[l3 + e.at..l3 + e.end], v6) {
            Ok(q) => q,
            Err(QuoteError::Bad) => return Verdict::Drop(DropReason::IcmpBadQuote),
            Err(QuoteError::AboutIcmp) => return Verdict::Drop(DropReason::IcmpAboutIcmp),
        };
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
            self.error_to_flow(s, &seg, pkt, &q)
        } else {
            self.error_to_client(s, &seg, pkt, &q, &outer_src)
        }
    }

    /// An error to a VIP, about the flow `seg.key`: where the flow's packets go.
    fn error_to_flow(
        &mut self,
        s: &Services,
        seg: &Segment,
        pkt: &mut PacketBuf,
        q: &icmp::Quote,
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
            // Not here: the flow's primary may hold it (a flow still in its handshake is
            // not replicated).
            if let Some(cl) = cl {
                let mut rec = FlowRecord::default();
                if let Ok(Some(p)) = self.rank_new(cl, seg, &mut rec) {
                    return self.send_to_node(s, pkt, seg, p, &rec, 0);
                }
            }
            return Verdict::Drop(DropReason::IcmpNoFlow);
        };
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
        match svc.mode {
            Mode::Nat => nat::error_to_backend(pkt, seg, q, &to),
            mode => xmit::to_backend(mode, pkt, seg, &to),
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
        outer_src: &[u8; 16],
    ) -> Verdict {
        let reply = seg.key;
        let from = s.nat_services_of(&reply.src, reply.sport, reply.proto);
        if from.is_empty() {
            return Verdict::Drop(DropReason::NotForUs);
        }
        let Some(fkey) = self.reply_flow(s, from, &reply) else {
            return self
                .reply_to_owner(s, seg, pkt)
                .unwrap_or(Verdict::Drop(DropReason::IcmpNoFlow));
        };
        let Some(rec) = self.table.peek_live(&fkey, self.now.ms).copied() else {
            return Verdict::Drop(DropReason::IcmpNoFlow);
        };
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
