//! Nat: the destination rewritten to the backend's address and port (requests), the source
//! back to the VIP's (replies), checksums patched incrementally, TTL decremented; the
//! replies come back through the node, which sends them out of the port the flow came in on.

use super::{set_l2, Egress, Transmit};
use crate::counters::DropReason;
use crate::pipeline::context::{Part, Segment};
use crate::pipeline::{PacketBuf, Verdict};
use crate::wire::ethernet::Mac;
use crate::wire::{checksum, icmp, ipv4, ipv6, l4, set_u16};

pub(in crate::pipeline) struct Nat;

impl Transmit for Nat {
    #[inline(always)]
    fn transmit(&self, pkt: &mut PacketBuf, seg: &Segment, to: &Egress) -> Verdict {
        let l3 = seg.l3();
        let f = pkt.frame_mut();
        let k = &seg.key;
        if let Err(r) = rewrite(
            &mut f[l3..],
            k.v6,
            seg.ip_len,
            transport(seg),
            Rewrite::Dst,
            &to.addr,
            to.dport,
        ) {
            return Verdict::Drop(r);
        }
        set_l2(pkt, l3, &to.next_mac, &to.out.mac, k.v6);
        Verdict::Tx(to.port)
    }
}

/// The transport protocol whose header the packet holds, or None for a later fragment
/// (only its IP header is rewritten: the first fragment's checksum covers the datagram).
#[inline(always)]
fn transport(seg: &Segment) -> Option<u8> {
    (seg.part != Part::Later).then_some(seg.key.proto)
}

/// A backend's reply of a nat flow: from VIP:port again, out of `port` (the flow's ingress
/// port, whose MAC is `port_mac`) to the next hop `next_mac`.
#[inline(always)]
pub(in crate::pipeline) fn reply(
    pkt: &mut PacketBuf,
    seg: &Segment,
    vip: &[u8; 16],
    vport: u16,
    port: u8,
    port_mac: &Mac,
    next_mac: &Mac,
) -> Verdict {
    let l3 = seg.l3();
    let k = &seg.key;
    let f = pkt.frame_mut();
    if let Err(r) = rewrite(
        &mut f[l3..],
        k.v6,
        seg.ip_len,
        transport(seg),
        Rewrite::Src,
        vip,
        vport,
    ) {
        return Verdict::Drop(r);
    }
    set_l2(pkt, l3, next_mac, port_mac, k.v6);
    Verdict::Tx(port)
}

#[derive(Clone, Copy)]
enum Rewrite {
    Src,
    Dst,
}

/// Rewrites the source or destination address and port of an IP packet in place, patching
/// the checksums incrementally, and decrements the TTL (nat routes the packet). `proto` is
/// None when there is no transport header to rewrite.
fn rewrite(
    ipb: &mut [u8],
    v6: bool,
    hl: usize,
    proto: Option<u8>,
    which: Rewrite,
    addr: &[u8; 16],
    port: u16,
) -> Result<(), DropReason> {
    let port_at = match which {
        Rewrite::Src => 0,
        Rewrite::Dst => 2,
    };
    if v6 {
        let mut ip = ipv6::Packet::new_unchecked(&mut *ipb);
        if ip.hop_limit() <= 1 {
            return Err(DropReason::TtlExpired);
        }
        ip.decrement_hop_limit();
        let old = match which {
            Rewrite::Src => {
                let o = ip.src_bytes();
                ip.set_src(*addr);
                o
            }
            Rewrite::Dst => {
                let o = ip.dst_bytes();
                ip.set_dst(*addr);
                o
            }
        };
        if let Some(proto) = proto {
            l4::rewrite(proto, &mut ipb[hl..], &old, addr, port_at, port);
        }
    } else {
        // One change term for the address serves the header checksum and the transport's
        // (its pseudo header); the TTL's joins the header's: one fold each.
        let mut ip = ipv4::Packet::new_unchecked(&mut *ipb);
        if ip.ttl() <= 1 {
            return Err(DropReason::TtlExpired);
        }
        let new = [addr[0], addr[1], addr[2], addr[3]];
        let old = match which {
            Rewrite::Src => ip.src_bytes(),
            Rewrite::Dst => ip.dst_bytes(),
        };
        let addr_delta = checksum::delta_bytes(&old, &new);
        ip.rewrite_routed(matches!(which, Rewrite::Src), new, addr_delta);
        let total = ip.total_len();
        if let Some(proto) = proto {
            l4::rewrite_with(proto, &mut ipb[hl..total], addr_delta, port_at, port);
        }
    }
    Ok(())
}

/// An ICMP error to a VIP about a nat flow (`seg.key`), on to its backend `to`: the outer
/// destination and, in the quote (the reply the VIP sent), the source become the backend's
/// address and port, as the backend sent it.
pub(in crate::pipeline) fn error_to_backend(
    pkt: &mut PacketBuf,
    seg: &Segment,
    q: &icmp::Quote,
    to: &Egress,
) -> Verdict {
    let l3 = seg.l3();
    let v6 = seg.key.v6;
    let f = pkt.frame_mut();
    let e = ErrorRewrite {
        outer: Some(Rewrite::Dst),
        quote: Rewrite::Src,
        addr: &to.addr,
        port: to.dport,
    };
    if let Err(r) = rewrite_error(&mut f[l3..], v6, seg.ip_len, q, &e) {
        return Verdict::Drop(r);
    }
    set_l2(pkt, l3, &to.next_mac, &to.out.mac, v6);
    Verdict::Tx(to.port)
}

/// Where a backend-side error about a nat flow goes: to the client, as from the flow's VIP.
pub(in crate::pipeline) struct ToClient {
    pub vip: [u8; 16],
    pub vport: u16,
    /// The error's source is the backend itself (it becomes the VIP); a router's stays.
    pub from_backend: bool,
    pub port: u8,
    pub port_mac: Mac,
    pub next_mac: Mac,
}

/// An ICMP error from the backend side about a nat flow's request (the quote: client to
/// backend), to the client: the quote's destination becomes the VIP and port again, and
/// the outer source too when the backend sent it.
pub(in crate::pipeline) fn error_to_client(
    pkt: &mut PacketBuf,
    seg: &Segment,
    q: &icmp::Quote,
    to: &ToClient,
) -> Verdict {
    let l3 = seg.l3();
    let v6 = seg.key.v6;
    let f = pkt.frame_mut();
    let e = ErrorRewrite {
        outer: to.from_backend.then_some(Rewrite::Src),
        quote: Rewrite::Dst,
        addr: &to.vip,
        port: to.vport,
    };
    if let Err(r) = rewrite_error(&mut f[l3..], v6, seg.ip_len, q, &e) {
        return Verdict::Drop(r);
    }
    set_l2(pkt, l3, &to.next_mac, &to.port_mac, v6);
    Verdict::Tx(to.port)
}

/// What an ICMP error's nat rewrite changes: the outer header's address (`outer`, when it
/// changes), the quote's on the `quote` side, both to `addr`, and the quote's port there.
struct ErrorRewrite<'a> {
    outer: Option<Rewrite>,
    quote: Rewrite,
    addr: &'a [u8; 16],
    port: u16,
}

/// Rewrites an ICMP error at `at` in the IP packet `ipb`: the outer address (checksum
/// patched, TTL decremented), the quoted IP header's address (its checksum patched) and
/// transport port (its checksum patched when the quote holds it), then the ICMP checksum
/// over the whole message (an ICMPv6 one over the new pseudo header).
fn rewrite_error(
    ipb: &mut [u8],
    v6: bool,
    at: usize,
    q: &icmp::Quote,
    e: &ErrorRewrite,
) -> Result<(), DropReason> {
    let port_at = match e.quote {
        Rewrite::Src => 0,
        Rewrite::Dst => 2,
    };
    if v6 {
        let mut ip = ipv6::Packet::new_unchecked(&mut *ipb);
        if ip.hop_limit() <= 1 {
            return Err(DropReason::TtlExpired);
        }
        ip.decrement_hop_limit();
        match e.outer {
            Some(Rewrite::Src) => ip.set_src(*e.addr),
            Some(Rewrite::Dst) => ip.set_dst(*e.addr),
            None => {}
        }
        let (src, dst) = (ip.src_bytes(), ip.dst_bytes());
        let end = ipv6::HEADER_LEN + ip.payload_len();
        let msg = &mut ipb[at..end];
        let mut quoted = ipv6::Packet::new_unchecked(&mut msg[icmp::ERROR_HEADER_LEN..]);
        let old = match e.quote {
            Rewrite::Src => {
                let o = quoted.src_bytes();
                quoted.set_src(*e.addr);
                o
            }
            Rewrite::Dst => {
                let o = quoted.dst_bytes();
                quoted.set_dst(*e.addr);
                o
            }
        };
        rewrite_quoted_l4(&mut msg[q.l4_at..], q.proto, &old, e.addr, port_at, e.port);
        icmp::fill_checksum_v6(&src, &dst, msg);
    } else {
        let mut new = [0u8; 4];
        new.copy_from_slice(&e.addr[..4]);
        let mut ip = ipv4::Packet::new_unchecked(&mut *ipb);
        if ip.ttl() <= 1 {
            return Err(DropReason::TtlExpired);
        }
        ip.decrement_ttl();
        match e.outer {
            Some(Rewrite::Src) => ip.set_src(new),
            Some(Rewrite::Dst) => ip.set_dst(new),
            None => {}
        }
        let end = ip.total_len();
        let msg = &mut ipb[at..end];
        let mut quoted = ipv4::Packet::new_unchecked(&mut msg[icmp::ERROR_HEADER_LEN..]);
        let old = match e.quote {
            Rewrite::Src => {
                let o = quoted.src_bytes();
                quoted.set_src(new);
                o
            }
            Rewrite::Dst => {
                let o = quoted.dst_bytes();
                quoted.set_dst(new);
                o
            }
        };
        rewrite_quoted_l4(&mut msg[q.l4_at..], q.proto, &old, &new, port_at, e.port);
        icmp::fill_checksum_v4(msg);
    }
    Ok(())
}

/// The quoted transport header's port, and its checksum when the quote reaches it (a quote
/// may stop after the 8 bytes RFC 792 promises, short of TCP's checksum).
fn rewrite_quoted_l4(
    l4b: &mut [u8],
    proto: u8,
    old: &[u8],
    new: &[u8],
    port_at: usize,
    port: u16,
) {
    if l4b.len() >= l4::checksum_offset(proto) + 2 {
        l4::rewrite(proto, l4b, old, new, port_at, port);
    } else if l4b.len() >= port_at + 2 {
        set_u16(l4b, port_at, port);
    }
}
