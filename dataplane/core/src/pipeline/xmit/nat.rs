//! Nat: the destination rewritten to the backend's address and port (requests), the source
//! back to the VIP's (replies), checksums patched incrementally, TTL decremented; the
//! replies come back through the node, which sends them out of the port the flow came in on.

use super::{set_l2, Egress, Transmit};
use crate::counters::DropReason;
use crate::pipeline::context::Segment;
use crate::pipeline::{PacketBuf, Verdict};
use crate::wire::ethernet::Mac;
use crate::wire::{ipv4, ipv6, l4};

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
            k.proto,
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
        k.proto,
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
/// the checksums incrementally, and decrements the TTL (nat routes the packet).
fn rewrite(
    ipb: &mut [u8],
    v6: bool,
    hl: usize,
    proto: u8,
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
        l4::rewrite(proto, &mut ipb[hl..], &old, addr, port_at, port);
    } else {
        let mut ip = ipv4::Packet::new_unchecked(&mut *ipb);
        if ip.ttl() <= 1 {
            return Err(DropReason::TtlExpired);
        }
        ip.decrement_ttl();
        let mut new = [0u8; 4];
        new.copy_from_slice(&addr[..4]);
        let old = match which {
            Rewrite::Src => {
                let o = ip.src_bytes();
                ip.set_src(new);
                o
            }
            Rewrite::Dst => {
                let o = ip.dst_bytes();
                ip.set_dst(new);
                o
            }
        };
        let total = ip.total_len();
        l4::rewrite(proto, &mut ipb[hl..total], &old, &new, port_at, port);
    }
    Ok(())
}
