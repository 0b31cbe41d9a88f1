//! Path MTU through encapsulation. gue to a backend and forwarding between nodes put 28 to
//! 56 bytes in front of the client's packet, so a packet that fits the client's path may
//! not fit the egress port's MTU (`[[port]] mtu`). Such a packet is answered as a router
//! answers one it cannot forward: fragmentation needed (IPv4 with DF) or packet too big
//! (IPv6), naming the inner size that fits, so the sender's path MTU discovery shrinks its
//! packets instead of losing them in a black hole. Answers are rate-limited per worker.
//!
//! So that TCP never needs the answers, the MSS of the SYNs tandem carries encapsulated is
//! lowered to what fits (and, in a cluster, that of a nat backend's SYN-ACK, which sets
//! the size of the client's segments that cross between nodes); `clamp_mss = false` on a
//! service turns it off.

use super::bucket::Bucket;
use super::context::{Part, Segment, Via};
use super::xmit::overhead;
use super::{PacketBuf, State, Verdict};
use crate::counters::DropReason;
use crate::services::Services;
use crate::wire::l4::{self, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, SYN};
use crate::wire::{ethernet, icmp, ipv4, ipv6};

/// Answers a worker may send at once, then one a millisecond (Linux's `icmp_msgs_burst`
/// and `icmp_msgs_per_sec`).
const ANSWERS_BURST: u32 = 50;

/// The most an IPv4 error may be (RFC 1812: 576 bytes), and an IPv6 one (RFC 4443: the
/// minimum MTU, 1280): the quote is cut to fit.
const MAX_ERROR_V4: usize = 576;
const MAX_ERROR_V6: usize = 1280;

/// The "too big" answers' bucket: `ANSWERS_BURST` at once, then one a millisecond.
pub(super) fn answers() -> Bucket {
    Bucket::new(1, ANSWERS_BURST)
}

/// True when the service `id` has its SYNs' MSS clamped (`clamp_mss`).
#[inline]
pub(super) fn clamps_mss(s: &Services, id: u16) -> bool {
    s.services.get(usize::from(id)).is_some_and(|v| v.clamp_mss)
}

/// The largest inner IP packet the links to the other nodes carry (the smallest over
/// them), or None on a node on its own.
pub(super) fn node_fit(s: &Services) -> Option<usize> {
    let cl = s.cluster.as_ref()?;
    cl.nodes
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != usize::from(cl.me))
        .filter_map(|(_, n)| {
            let mtu = usize::from(s.ports.get(usize::from(n.port))?.mtu);
            Some(mtu.saturating_sub(overhead(n.v6, true)))
        })
        .min()
}

impl State {
    /// The verdict of an encapsulating transmit, with a packet too big for it answered.
    /// `fits` is the largest inner IP packet the egress port carries.
    #[inline(always)]
    pub(super) fn after_encap(
        &mut self,
        v: Verdict,
        s: &Services,
        seg: &Segment,
        pkt: &mut PacketBuf,
        fits: usize,
    ) -> Verdict {
        if v == Verdict::Drop(DropReason::TooBig) {
            return self.too_big(s, seg, pkt, fits);
        }
        v
    }

    /// Lowers a TCP SYN's MSS so its peer's segments fit in `fits` bytes of IP packet.
    #[inline]
    pub(super) fn clamp_syn(&mut self, seg: &Segment, pkt: &mut PacketBuf, fits: usize) {
        if seg.key.proto != PROTO_TCP || seg.l4.flags & SYN == 0 || seg.part == Part::Later {
            return;
        }
        let max = fits.saturating_sub(seg.ip_len + l4::TCP_MIN_LEN);
        let max = max.min(usize::from(u16::MAX)) as u16;
        let at = seg.l3() + seg.ip_len;
        if l4::clamp_mss(&mut pkt.frame_mut()[at..], max) {
            self.counters.mss_clamped.inc();
        }
    }

    /// Answers the sender of a packet too big to encapsulate, in place: the frame becomes
    /// the error, quoting the packet's start, from the packet's destination back out of the
    /// port it came in on.
    #[cold]
    #[inline(never)]
    fn too_big(
        &mut self,
        s: &Services,
        seg: &Segment,
        pkt: &mut PacketBuf,
        fits: usize,
    ) -> Verdict {
        let unanswered = Verdict::Drop(DropReason::TooBigUnanswered);
        // From another node, the sender is not on this port's side.
        if seg.rx.via != Via::Direct {
            return unanswered;
        }
        let l3 = seg.l3();
        let v6 = seg.key.v6;
        let f = pkt.frame();
        let (src, dst, total, about_icmp) = if v6 {
            let ip = ipv6::Packet::new_unchecked(&f[l3..]);
            let proto = ipv6::upper_layer(ip.next_header(), ip.payload()).map(|u| u.proto);
            let about_icmp = proto.map_or(true, |p| p == PROTO_ICMPV6);
            let total = ipv6::HEADER_LEN + ip.payload_len();
            (ip.src_bytes(), ip.dst_bytes(), total, about_icmp)
        } else {
            let ip = ipv4::Packet::new_unchecked(&f[l3..]);
            // Without DF the sender expects routers to fragment, which tandem does not.
            if !ip.dont_fragment() {
                return unanswered;
            }
            let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
            a[..4].copy_from_slice(&ip.src_bytes());
            b[..4].copy_from_slice(&ip.dst_bytes());
            (a, b, ip.total_len(), ip.protocol() == PROTO_ICMP)
        };
        // Never an error about an error, nor one to a source no host has.
        if about_icmp || super::martian::is_martian(s, &src, v6) {
            return unanswered;
        }
        if !self.answers.take(self.now.ms) {
            return unanswered;
        }
        let Some(port) = s.ports.get(usize::from(seg.rx.in_port)) else {
            return unanswered;
        };
        let (ip_hdr, max, ethertype) = if v6 {
            (ipv6::HEADER_LEN, MAX_ERROR_V6, ethernet::ETHERTYPE_IPV6)
        } else {
            (ipv4::MIN_HEADER_LEN, MAX_ERROR_V4, ethernet::ETHERTYPE_IPV4)
        };
        let head = ethernet::HEADER_LEN + ip_hdr + icmp::ERROR_HEADER_LEN;
        let quote_len = total.min(max - ip_hdr - icmp::ERROR_HEADER_LEN);
        let quote_at = pkt.start + l3;
        if quote_at < head {
            return Verdict::Drop(DropReason::NoHeadroom);
        }
        let start = quote_at - head;
        let b = &mut pkt.buf[start..quote_at + quote_len];
        ethernet::write_header(b, &seg.rx.l2.src, &port.mac, ethertype);
        let ipb = &mut b[ethernet::HEADER_LEN..];
        let msg_len = icmp::ERROR_HEADER_LEN + quote_len;
        if v6 {
            ipv6::emit(ipb, dst, src, PROTO_ICMPV6, msg_len, 64);
            let m = &mut ipb[ip_hdr..ip_hdr + msg_len];
            m[..4].copy_from_slice(&[icmp::V6_PACKET_TOO_BIG, 0, 0, 0]);
            m[4..8].copy_from_slice(&(fits as u32).to_be_bytes());
            icmp::fill_checksum_v6(&dst, &src, m);
        } else {
            let (mut d4, mut s4) = ([0u8; 4], [0u8; 4]);
            d4.copy_from_slice(&dst[..4]);
            s4.copy_from_slice(&src[..4]);
            ipv4::emit(ipb, d4, s4, PROTO_ICMP, msg_len, 64);
            let m = &mut ipb[ip_hdr..ip_hdr + msg_len];
            m[..6].copy_from_slice(&[icmp::DEST_UNREACHABLE, icmp::CODE_FRAG_NEEDED, 0, 0, 0, 0]);
            m[6..8].copy_from_slice(&(fits.min(usize::from(u16::MAX)) as u16).to_be_bytes());
            icmp::fill_checksum_v4(m);
        }
        pkt.start = start;
        pkt.len = head + quote_len;
        self.counters.too_big_answered.inc();
        Verdict::Tx(seg.rx.in_port)
    }
}
