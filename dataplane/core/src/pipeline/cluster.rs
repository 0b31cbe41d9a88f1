//! Cluster routing: which node serves a flow (its primary, or its backup when the primary
//! is gone, ranked by rendezvous hashing), sending a packet on to that node, and taking
//! the packets other nodes send on.

use super::context::{Rx, Segment, Via};
use super::demux::wire_drop;
use super::xmit::node::ToNode;
use super::xmit::{self, Egress, Transmit};
use super::{PacketBuf, State, Verdict};
use crate::cluster::{self, rank, ClusterView, MAX_HOPS, NO_NODE};
use crate::counters::DropReason;
use crate::flow::FlowRecord;
use crate::services::Services;
use crate::wire::{ethernet, ipv4, ipv6, l4, tunnel};

impl State {
    /// The node that serves a known flow arriving from the network, when it is not this
    /// one (its primary, or its backup while the primary is not serving).
    #[inline]
    pub(super) fn owner_elsewhere(
        &self,
        cl: &ClusterView,
        seg: &Segment,
        rec: &FlowRecord,
    ) -> Option<u8> {
        if seg.rx.via != Via::Direct {
            return None;
        }
        let h = rank::of_request(&seg.key);
        match cluster::owner(cl, &self.membership, rec.primary_node, rec.backup_node, h) {
            Some(n) if n != cl.me => Some(n),
            _ => None,
        }
    }

    /// Ranks a new flow's nodes into `rec`: as the node that sent it on ranked them, or
    /// afresh (the top two eligible nodes by rendezvous score) when it came from the
    /// network; then the node to send it on to, when that is its primary and not this one.
    /// No eligible node: dropped.
    #[inline]
    pub(super) fn rank_new(
        &self,
        cl: &ClusterView,
        seg: &Segment,
        rec: &mut FlowRecord,
    ) -> Result<Option<u8>, Verdict> {
        match seg.rx.via {
            Via::Node(h) => {
                rec.primary_node = cl.index_of(h.primary).unwrap_or(cl.me);
                rec.backup_node = cl.index_of(h.backup).unwrap_or(NO_NODE);
                Ok(None)
            }
            Via::Direct => {
                let h = rank::of_request(&seg.key);
                let (p, b) = match rank::top2(h, &cl.nodes, self.membership.eligible) {
                    (Some(p), _) if p == cl.me && starts_no_flow(seg) => {
                        self.ranked_before_me(cl, h)
                    }
                    ranked => ranked,
                };
                let Some(p) = p else {
                    return Err(Verdict::Drop(DropReason::NoNode));
                };
                rec.primary_node = p;
                rec.backup_node = b.unwrap_or(NO_NODE);
                Ok((p != cl.me).then_some(p))
            }
        }
    }

    /// A nat reply this node has no record for, from the network: the roles of the node
    /// that has it (its flow's primary, ranked by the reply's client side) when that is
    /// another node.
    pub(super) fn reply_owner(&self, cl: &ClusterView, seg: &Segment) -> Option<FlowRecord> {
        if seg.rx.via != Via::Direct {
            return None;
        }
        let h = rank::of_reply(&seg.key);
        let ranked = match rank::top2(h, &cl.nodes, self.membership.eligible) {
            (Some(p), _) if p == cl.me => self.ranked_before_me(cl, h),
            ranked => ranked,
        };
        match ranked {
            (Some(p), b) if p != cl.me => Some(FlowRecord {
                primary_node: p,
                backup_node: b.unwrap_or(NO_NODE),
                ..FlowRecord::default()
            }),
            _ => None,
        }
    }

    /// The ranking of a packet this node ranks first and has no record of (a TCP segment
    /// that starts no flow, or a nat reply), in its first `tcp_syn_timeout` back at taking
    /// new flows: ranked without this node, the way the flow was ranked if it began while
    /// this node was away (drained, cut off, restarting). Its record is on that node, and
    /// may not have reached this one yet (a handshake's never does), while the router
    /// already sends the flow here; bound here afresh, it could go to another backend,
    /// which would reset it. So it goes to that node, as Beamer's daisy chaining sends a
    /// new server's unknown packets to the previous one. Otherwise (or with no other node
    /// taking new flows), this node first.
    pub(super) fn ranked_before_me(&self, cl: &ClusterView, h: u64) -> (Option<u8>, Option<u8>) {
        let eligible = self.membership.eligible;
        let back = self
            .back_since_ms
            .is_some_and(|t| self.now.ms.wrapping_sub(t) < self.table.timeouts().syn_ms);
        if back {
            if let ranked @ (Some(_), _) = rank::top2(h, &cl.nodes, eligible & !(1 << cl.me)) {
                return ranked;
            }
        }
        rank::top2(h, &cl.nodes, eligible)
    }

    /// Sends the packet (its IP packet, unchanged) on to cluster node `node`, in UDP with
    /// the node header naming the flow's primary and backup.
    pub(super) fn send_to_node(
        &mut self,
        s: &Services,
        pkt: &mut PacketBuf,
        seg: &Segment,
        node: u8,
        rec: &FlowRecord,
        flags: u8,
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
            None => match self.resolve(n.port, out, &n.addr, n.v6) {
                Some(m) => m,
                None => return Verdict::Drop(DropReason::NoNeighbor),
            },
        };
        let mode = ToNode {
            header: tunnel::Header {
                flags: flags | self.trace_mark,
                hops: 1,
                primary: cl.id_of(rec.primary_node),
                backup: cl.id_of(rec.backup_node),
            },
        };
        let to = Egress {
            port: n.port,
            out,
            next_mac,
            addr: n.addr,
            v6: n.v6,
            dport: cl.forward_port,
        };
        let fits = usize::from(out.mtu).saturating_sub(xmit::overhead(n.v6, true));
        if flags == 0 && super::mtu::clamps_mss(s, rec.service) {
            self.clamp_syn(seg, pkt, fits);
        }
        let v = mode.transmit(pkt, seg, &to);
        let v = self.after_encap(v, s, seg, pkt, fits);
        if let Verdict::Tx(_) = v {
            self.counters.node_forwarded.inc();
        }
        v
    }

    /// A packet another node sent on (UDP to the forwarding port at `udp_at`): check the
    /// node header and serve the packet inside.
    pub(super) fn take_from_node(
        &mut self,
        s: &Services,
        rx: &Rx,
        pkt: &mut PacketBuf,
        udp_at: usize,
    ) -> Verdict {
        if rx.via != Via::Direct {
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
        // The outer IP header, checked by the IP stage that called this one.
        let ip = &pkt.frame()[rx.l3()..];
        let v6 = rx.l2.ethertype == ethernet::ETHERTYPE_IPV6;
        let src = if v6 {
            ipv6::Packet::new_unchecked(ip).src_bytes()
        } else {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&ipv4::Packet::new_unchecked(ip).src_bytes());
            a
        };
        let from = cl.nodes.iter().position(|n| n.v6 == v6 && n.addr == src);
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
        let inner_rx = Rx {
            in_port: rx.in_port,
            // The outer frame's link header, with the inner IP header's offset.
            l2: ethernet::L2 {
                l3_offset: inner,
                ..rx.l2
            },
            via: Via::Node(h),
        };
        match first >> 4 {
            4 => self.ipv4(s, &inner_rx, pkt),
            6 => self.ipv6(s, &inner_rx, pkt),
            _ => Verdict::Drop(DropReason::Malformed),
        }
    }
}

/// A TCP segment without SYN: part of a flow that began before, wherever it began.
#[inline]
fn starts_no_flow(seg: &Segment) -> bool {
    seg.key.proto == l4::PROTO_TCP && seg.l4.flags & l4::SYN == 0
}
