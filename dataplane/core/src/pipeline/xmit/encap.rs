//! UDP encapsulation, shared by GUE to backends and forwarding between nodes: the IP packet
//! moves into the headroom behind fresh Ethernet + IP + UDP headers; nothing is copied.

use super::Egress;
use crate::counters::DropReason;
use crate::pipeline::{PacketBuf, Verdict};
use crate::wire::l4::{self, PROTO_UDP};
use crate::wire::{ethernet, ipv4, ipv6, tunnel};

/// Bytes an encapsulation puts in front of the inner IP packet, past the link header: the
/// outer IP header, UDP, and the node header when going to another node (28 bytes to a
/// backend over IPv4, 48 over IPv6; 36 or 56 to a node).
#[inline(always)]
pub fn overhead(outer_v6: bool, to_node: bool) -> usize {
    let ip = if outer_v6 {
        ipv6::HEADER_LEN
    } else {
        ipv4::MIN_HEADER_LEN
    };
    ip + l4::UDP_LEN + if to_node { tunnel::HEADER_LEN } else { 0 }
}

/// The outer UDP header's source port, and the node header when going to a node.
pub(super) struct Outer<'a> {
    pub sport: u16,
    pub node_header: Option<&'a tunnel::Header>,
}

/// Puts the IP packet at `l3` inside Ethernet + IP + UDP (+ the node header) to `to`,
/// from the egress port's own address of `to`'s family. An outer packet past the egress
/// port's MTU is `too_big` (nothing changed: the caller answers the sender).
pub(super) fn udp(
    pkt: &mut PacketBuf,
    l3: usize,
    inner_v6: bool,
    to: &Egress,
    outer: &Outer,
) -> Verdict {
    let outer_v6 = to.v6;
    // The inner packet is the IP packet alone (no Ethernet padding).
    // (Its header was checked by the IP stage.)
    let inner_len = {
        let f = &pkt.frame()[l3..];
        if inner_v6 {
            ipv6::HEADER_LEN + ipv6::Packet::new_unchecked(f).payload_len()
        } else {
            ipv4::Packet::new_unchecked(f).total_len()
        }
    };
    let ip_hdr = if outer_v6 {
        ipv6::HEADER_LEN
    } else {
        ipv4::MIN_HEADER_LEN
    };
    let over = overhead(outer_v6, outer.node_header.is_some());
    let head = ethernet::HEADER_LEN + over;
    if over + inner_len > usize::from(to.out.mtu) {
        return Verdict::Drop(DropReason::TooBig);
    }
    let inner_start = pkt.start + l3;
    if inner_start < head || inner_start + inner_len > pkt.buf.len() {
        return Verdict::Drop(DropReason::NoHeadroom);
    }
    let start = inner_start - head;
    let b = &mut pkt.buf[start..inner_start + inner_len];
    let ethertype = if outer_v6 {
        ethernet::ETHERTYPE_IPV6
    } else {
        ethernet::ETHERTYPE_IPV4
    };
    ethernet::write_header(b, &to.next_mac, &to.out.mac, ethertype);
    let udp_len = (over - ip_hdr + inner_len) as u16;
    let u = ethernet::HEADER_LEN + ip_hdr;
    l4::emit_udp_header(&mut b[u..], outer.sport, to.dport, udp_len);
    if let Some(h) = outer.node_header {
        tunnel::emit(&mut b[u + l4::UDP_LEN..], h);
    }
    if outer_v6 {
        let Some((src, _)) = to.out.ipv6 else {
            return Verdict::Drop(DropReason::NoPath);
        };
        ipv6::emit(
            &mut b[ethernet::HEADER_LEN..],
            src,
            to.addr,
            PROTO_UDP,
            usize::from(udp_len),
            64,
        );
        // IPv6 requires a UDP checksum.
        l4::fill_checksum(PROTO_UDP, &src, &to.addr, &mut b[u..]);
    } else {
        let Some((src, _)) = to.out.ipv4 else {
            return Verdict::Drop(DropReason::NoPath);
        };
        let mut d = [0u8; 4];
        d.copy_from_slice(&to.addr[..4]);
        ipv4::emit(
            &mut b[ethernet::HEADER_LEN..],
            src,
            d,
            PROTO_UDP,
            usize::from(udp_len),
            64,
        );
    }
    pkt.start = start;
    pkt.len = head + inner_len;
    Verdict::Tx(to.port)
}
