//! Parsing and demultiplexing: the link layer, then IPv4 or IPv6 (with its extension
//! headers walked), then by destination and protocol to the stage that serves the packet
//! (the node's own traffic, a packet from another node, an ICMP error about a flow, a
//! fragment, or a flow of a service).

use super::context::{Part, Rx, Segment, Via};
use super::fragments::Datagram;
use super::icmp_errors::Error;
use super::{State, Verdict};
use crate::counters::DropReason;
use crate::flow::table::Lookahead;
use crate::flow::FlowKey;
use crate::qos::probe;
use crate::services::{Service, Services};
use crate::wire::ethernet;
use crate::wire::icmp;
use crate::wire::ipv4::{self, Ipv4Error};
use crate::wire::ipv6::{self, ExtError};
use crate::wire::l4::{self, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use crate::wire::WireError;

/// The drop a malformed header earns.
#[inline]
pub(super) fn wire_drop(e: WireError) -> DropReason {
    match e {
        WireError::Truncated => DropReason::Truncated,
        WireError::Malformed => DropReason::Malformed,
    }
}

/// The drop an IPv6 header chain the walk refuses earns.
fn ext_drop(e: ExtError) -> DropReason {
    match e {
        ExtError::Wire(w) => wire_drop(w),
        ExtError::Ah => DropReason::Ipv6Ah,
        ExtError::Esp => DropReason::Ipv6Esp,
        ExtError::Unknown => DropReason::Ipv6UnknownHeader,
        ExtError::Chain => DropReason::Ipv6HeaderChain,
        ExtError::Routing => DropReason::Ipv6Routing,
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

impl State {
    /// A frame from the wire: for this port's MAC (or multicast), then by ethertype.
    pub(super) fn frame(
        &mut self,
        s: &Services,
        in_port: u8,
        pkt: &mut super::PacketBuf,
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
        let rx = Rx {
            in_port,
            l2,
            via: Via::Direct,
        };
        match l2.ethertype {
            ethernet::ETHERTYPE_ARP => self.arp(s, &rx, pkt),
            ethernet::ETHERTYPE_IPV4 => self.ipv4(s, &rx, pkt),
            ethernet::ETHERTYPE_IPV6 => self.ipv6(s, &rx, pkt),
            _ => Verdict::Drop(DropReason::UnsupportedEthertype),
        }
    }

    pub(super) fn ipv4(&mut self, s: &Services, rx: &Rx, pkt: &mut super::PacketBuf) -> Verdict {
        let l3 = rx.l3();
        let ip = match ipv4::Packet::new_checked(&pkt.frame()[l3..]) {
            Ok(p) => p,
            Err(Ipv4Error::Wire(e)) => return Verdict::Drop(wire_drop(e)),
            Err(Ipv4Error::BadIhl) => return Verdict::Drop(DropReason::BadIhl),
        };
        let proto = ip.protocol();
        let (src4, dst4) = (ip.src_bytes(), ip.dst_bytes());
        let hl = ip.header_len();
        let mut dst16 = [0u8; 16];
        dst16[..4].copy_from_slice(&dst4);
        let to_port = s.ports[usize::from(rx.in_port)]
            .ipv4
            .is_some_and(|(a, _)| a == dst4);
        if ip.is_fragment() {
            let mut src16 = [0u8; 16];
            src16[..4].copy_from_slice(&src4);
            let d = Datagram {
                src: src16,
                dst: dst16,
                proto,
                ident: u32::from(ip.ident()),
                offset: ip.frag_offset(),
                l4_at: hl,
                end: ip.total_len(),
                v6: false,
                to_port,
            };
            return self.fragment(s, rx, pkt, &d);
        }
        if to_port && proto == PROTO_UDP {
            if let Some(cl) = &s.cluster {
                if l4::parse(proto, ip.payload()).is_ok_and(|p| p.dst == cl.forward_port) {
                    return self.take_from_node(s, rx, pkt, l3 + hl);
                }
            }
        }
        if to_port && rx.via == Via::Direct {
            let mut src16 = [0u8; 16];
            src16[..4].copy_from_slice(&src4);
            let reply = match proto {
                PROTO_TCP => probe::tcp_reply(ip.payload(), src16, self.now.us),
                PROTO_ICMP => probe::echo_reply(ip.payload(), false, src16, self.now.us),
                _ => None,
            };
            if let Some(r) = reply {
                return self.probe_reply(s, rx, pkt, l3 + hl, proto, r);
            }
        }
        if proto == PROTO_ICMP {
            return self.icmp4(s, rx, pkt, hl, to_port);
        }
        let ports = match transport(s, &dst16, proto, ip.payload()) {
            Ok(p) => p,
            Err(Verdict::Drop(DropReason::NotForUs)) => {
                return self.unclaimed(s, rx, pkt.frame(), &dst16, false)
            }
            Err(v) => return v,
        };
        let seg = Segment {
            rx: *rx,
            ip_len: hl,
            key: FlowKey::v4(src4, dst4, ports.src, ports.dst, proto),
            l4: ports,
            part: Part::Whole,
        };
        self.segment(s, &seg, pkt)
    }

    /// ICMP: an error about a flow, or an echo request to the node or a VIP (off the
    /// TCP/UDP path, out of line).
    #[inline(never)]
    fn icmp4(
        &mut self,
        s: &Services,
        rx: &Rx,
        pkt: &mut super::PacketBuf,
        hl: usize,
        to_port: bool,
    ) -> Verdict {
        // Checked by the IPv4 stage.
        let ip = ipv4::Packet::new_unchecked(&pkt.frame()[rx.l3()..]);
        let (end, dst4) = (ip.total_len(), ip.dst_bytes());
        if let Some(v) = self.if_icmp_error(s, rx, pkt, (hl, end), false, to_port) {
            return v;
        }
        let mut dst16 = [0u8; 16];
        dst16[..4].copy_from_slice(&dst4);
        if rx.via == Via::Direct && (to_port || s.is_vip(&dst16)) {
            return self.icmp4_echo(s, rx, pkt, hl);
        }
        self.unclaimed(s, rx, pkt.frame(), &dst16, false)
    }

    /// The ICMP (`v6` false) or ICMPv6 message from `at` to `end` (offsets from the IP
    /// header): when it is an error about a flow (or too short to say), its verdict; None
    /// for the others (echo, neighbor discovery), which the caller serves. (`v6` is the
    /// packet's own family: a packet from another node may differ from the outer frame's.)
    fn if_icmp_error(
        &mut self,
        s: &Services,
        rx: &Rx,
        pkt: &mut super::PacketBuf,
        (at, end): (usize, usize),
        v6: bool,
        to_port: bool,
    ) -> Option<Verdict> {
        let l3 = rx.l3();
        let m = match icmp::Packet::new_checked(&pkt.frame()[l3 + at..l3 + end]) {
            Ok(m) => m,
            Err(e) => return Some(Verdict::Drop(wire_drop(e))),
        };
        let kind = icmp::error_kind(m.msg_type(), m.code(), v6)?;
        let e = Error {
            at,
            end,
            kind,
            to_port,
        };
        Some(self.icmp_error(s, rx, pkt, &e))
    }

    /// An IPv6 packet: its extension headers walked to the upper layer, then as `ipv4`.
    pub(super) fn ipv6(&mut self, s: &Services, rx: &Rx, pkt: &mut super::PacketBuf) -> Verdict {
        let l3 = rx.l3();
        let ip = match ipv6::Packet::new_checked(&pkt.frame()[l3..]) {
            Ok(p) => p,
            Err(e) => return Verdict::Drop(wire_drop(e)),
        };
        let up = match upper_v6(&ip) {
            Ok(u) => u,
            Err(e) => return Verdict::Drop(ext_drop(e)),
        };
        let nh = up.proto;
        let (src, dst) = (ip.src_bytes(), ip.dst_bytes());
        let end = ipv6::HEADER_LEN + ip.payload_len();
        let to_port = s.ports[usize::from(rx.in_port)]
            .ipv6
            .is_some_and(|(a, _)| a == dst);
        if let Some(f) = up.fragment {
            let d = Datagram {
                src,
                dst,
                proto: nh,
                ident: f.ident,
                offset: f.offset,
                l4_at: up.offset,
                end,
                v6: true,
                to_port,
            };
            return self.fragment(s, rx, pkt, &d);
        }
        let l4b = &pkt.frame()[l3 + up.offset..l3 + end];
        if to_port && rx.via == Via::Direct {
            let reply = match nh {
                PROTO_TCP => probe::tcp_reply(l4b, src, self.now.us),
                PROTO_ICMPV6 => probe::echo_reply(l4b, true, src, self.now.us),
                _ => None,
            };
            if let Some(r) = reply {
                return self.probe_reply(s, rx, pkt, l3 + up.offset, nh, r);
            }
        }
        if nh == PROTO_ICMPV6 {
            if let Some(v) = self.if_icmp_error(s, rx, pkt, (up.offset, end), true, to_port) {
                return v;
            }
            if rx.via == Via::Direct {
                return self.icmp6(s, rx, pkt, up.offset);
            }
            return Verdict::Drop(DropReason::NotForUs);
        }
        if nh == PROTO_UDP && to_port {
            if let Some(cl) = &s.cluster {
                if l4::parse(nh, l4b).is_ok_and(|p| p.dst == cl.forward_port) {
                    return self.take_from_node(s, rx, pkt, l3 + up.offset);
                }
            }
        }
        let ports = match transport(s, &dst, nh, l4b) {
            Ok(p) => p,
            Err(Verdict::Drop(DropReason::NotForUs)) => {
                return self.unclaimed(s, rx, pkt.frame(), &dst, true)
            }
            Err(v) => return v,
        };
        let seg = Segment {
            rx: *rx,
            ip_len: up.offset,
            key: FlowKey::v6(src, dst, ports.src, ports.dst, nh),
            l4: ports,
            part: Part::Whole,
        };
        self.segment(s, &seg, pkt)
    }

    /// TCP or UDP: to a service, or a nat reply from a backend.
    #[inline]
    pub(super) fn segment(
        &mut self,
        s: &Services,
        seg: &Segment,
        pkt: &mut super::PacketBuf,
    ) -> Verdict {
        self.segment_toward(s, seg, toward(s, &seg.key), None, pkt)
    }

    /// A segment whose stage is known (`to`), with the hash of the key that stage looks up
    /// when a burst's first pass computed it.
    #[inline(always)]
    pub(super) fn segment_toward(
        &mut self,
        s: &Services,
        seg: &Segment,
        to: Toward,
        la: Option<Lookahead>,
        pkt: &mut super::PacketBuf,
    ) -> Verdict {
        match to {
            Toward::Service(svc) => self.serve(s, svc, seg, la, pkt),
            Toward::Reply(id) => {
                let fkey = super::flows::reply_key(s, id, &seg.key);
                self.backend_reply(s, seg, fkey, la, pkt)
            }
            Toward::Replies(from) => {
                let fkey = self.reply_flow(s, from, &seg.key);
                self.backend_reply(s, seg, fkey, None, pkt)
            }
            Toward::Drop(DropReason::NotForUs) => {
                self.unclaimed(s, &seg.rx, pkt.frame(), &seg.key.dst, seg.key.v6)
            }
            Toward::Drop(r) => Verdict::Drop(r),
        }
    }
}

/// Where a TCP or UDP segment goes: to a service, or, from a nat backend, back toward the
/// client of the flow it answers; or nowhere.
#[derive(Clone, Copy)]
pub(super) enum Toward<'s> {
    Service(&'s Service),
    /// A reply from the backend of one nat service (its id): the flow it answers is that
    /// service's from the reply's client side (`flows::reply_key`).
    Reply(u16),
    /// A reply from a backend of several nat services: which flow it answers takes a
    /// lookup per service.
    Replies(&'s [u16]),
    Drop(DropReason),
}

/// The stage for a segment with `key` (as the packet names it).
#[inline(always)]
pub(super) fn toward<'s>(s: &'s Services, key: &FlowKey) -> Toward<'s> {
    if let Some(svc) = s.lookup(&key.dst, key.dport, key.proto) {
        if svc.v6 != key.v6 {
            return Toward::Drop(DropReason::UnknownService);
        }
        return Toward::Service(svc);
    }
    if s.is_vip(&key.dst) {
        return Toward::Drop(DropReason::UnknownService);
    }
    match s.nat_services_of(&key.src, key.sport, key.proto) {
        [] => Toward::Drop(DropReason::NotForUs),
        // One service (the usual case): its flow's key is known without a lookup.
        [id] if s.services.get(usize::from(*id)).is_some() => Toward::Reply(*id),
        [_] => Toward::Replies(&[]),
        from => Toward::Replies(from),
    }
}

/// Where an IPv6 packet's upper layer starts: at once for TCP, UDP and ICMPv6 (the common
/// case, no walk), else after its extension headers.
#[inline]
fn upper_v6(ip: &ipv6::Packet<&[u8]>) -> Result<ipv6::Upper, ipv6::ExtError> {
    let first = ip.next_header();
    if first == PROTO_TCP || first == PROTO_UDP || first == PROTO_ICMPV6 {
        return Ok(ipv6::Upper {
            proto: first,
            offset: ipv6::HEADER_LEN,
            fragment: None,
        });
    }
    ipv6::upper_layer(first, ip.payload())
}
