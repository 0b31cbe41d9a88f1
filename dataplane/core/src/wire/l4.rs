//! TCP and UDP: only what a load balancer reads (ports, TCP flags) and writes (ports,
//! checksums). Both start with source and destination port, which is what lets one view
//! serve both.

use super::checksum;
use super::{get_u16, set_u16, WireError};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

pub const TCP_MIN_LEN: usize = 20;
pub const UDP_LEN: usize = 8;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

/// Ports and flags of a TCP or UDP header, after its length was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub src: u16,
    pub dst: u16,
    /// TCP flags; 0 for UDP.
    pub flags: u8,
    /// Bytes of payload after the header (what passive response timing watches for).
    pub payload_len: u16,
}

/// A checked view of a TCP or UDP header: the TCP header with its options, or the UDP
/// header and the length it states, is known to be present.
pub struct Segment<T: AsRef<[u8]>> {
    buf: T,
    proto: u8,
}

impl<T: AsRef<[u8]>> Segment<T> {
    /// Proves the header of protocol `proto` (TCP or UDP) is complete.
    #[inline(always)]
    pub fn new_checked(proto: u8, buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        match proto {
            PROTO_TCP => {
                if b.len() < TCP_MIN_LEN {
                    return Err(WireError::Truncated);
                }
                let off = usize::from(b[12] >> 4) * 4;
                if off < TCP_MIN_LEN {
                    return Err(WireError::Malformed);
                }
                if b.len() < off {
                    return Err(WireError::Truncated);
                }
            }
            PROTO_UDP => {
                if b.len() < UDP_LEN {
                    return Err(WireError::Truncated);
                }
                let len = usize::from(get_u16(b, 4));
                if len < UDP_LEN || len > b.len() {
                    return Err(WireError::Malformed);
                }
            }
            _ => return Err(WireError::Malformed),
        }
        Ok(Segment { buf, proto })
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        get_u16(self.buf.as_ref(), 0)
    }
    #[inline]
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buf.as_ref(), 2)
    }
    /// TCP flags; 0 for UDP.
    #[inline]
    pub fn flags(&self) -> u8 {
        if self.proto == PROTO_TCP {
            self.buf.as_ref()[13]
        } else {
            0
        }
    }
    /// Bytes after the header: to the end of the buffer for TCP (the IP layer bounds it),
    /// to the stated length for UDP.
    #[inline]
    pub fn payload_len(&self) -> usize {
        let b = self.buf.as_ref();
        if self.proto == PROTO_TCP {
            b.len() - usize::from(b[12] >> 4) * 4
        } else {
            usize::from(get_u16(b, 4)) - UDP_LEN
        }
    }
}

impl Ports {
    /// What a checked header says (the protocol looked at once).
    #[inline(always)]
    pub fn parse<T: AsRef<[u8]>>(s: &Segment<T>) -> Ports {
        let b = s.buf.as_ref();
        let (flags, payload_len) = if s.proto == PROTO_TCP {
            (b[13], b.len() - usize::from(b[12] >> 4) * 4)
        } else {
            (0, usize::from(get_u16(b, 4)) - UDP_LEN)
        };
        Ports {
            src: get_u16(b, 0),
            dst: get_u16(b, 2),
            flags,
            payload_len: payload_len.min(usize::from(u16::MAX)) as u16,
        }
    }

    /// Writes a header of protocol `proto` with these ports and flags (TCP: no options;
    /// UDP: its length covers `payload_len` bytes after it), checksum zero.
    pub fn emit(&self, proto: u8, b: &mut [u8]) {
        if proto == PROTO_TCP {
            set_u16(b, 0, self.src);
            set_u16(b, 2, self.dst);
            b[4..TCP_MIN_LEN].fill(0);
            b[12] = 5 << 4;
            b[13] = self.flags;
        } else {
            emit_udp_header(b, self.src, self.dst, UDP_LEN as u16 + self.payload_len);
        }
    }
}

/// Checks the L4 header is complete and reads its ports (and TCP flags).
#[inline(always)]
pub fn parse(proto: u8, b: &[u8]) -> Result<Ports, WireError> {
    Segment::new_checked(proto, b).map(|s| Ports::parse(&s))
}

/// Reads the ports (and TCP flags) of a datagram's first fragment, which holds the
/// transport header but not the whole datagram: the TCP header with its options must be
/// there, or UDP's 8 bytes (whose length field counts the whole datagram, not this part).
#[inline]
pub fn parse_first_fragment(proto: u8, b: &[u8]) -> Result<Ports, WireError> {
    let need = match proto {
        PROTO_TCP if b.len() >= TCP_MIN_LEN => usize::from(b[12] >> 4) * 4,
        PROTO_TCP => return Err(WireError::Truncated),
        PROTO_UDP => UDP_LEN,
        _ => return Err(WireError::Malformed),
    };
    if need
        < if proto == PROTO_TCP {
            TCP_MIN_LEN
        } else {
            UDP_LEN
        }
    {
        return Err(WireError::Malformed);
    }
    if b.len() < need {
        return Err(WireError::Truncated);
    }
    let (flags, payload_len) = if proto == PROTO_TCP {
        (b[13], b.len() - need)
    } else {
        (0, usize::from(get_u16(b, 4)).saturating_sub(UDP_LEN))
    };
    Ok(Ports {
        src: get_u16(b, 0),
        dst: get_u16(b, 2),
        flags,
        payload_len: payload_len.min(usize::from(u16::MAX)) as u16,
    })
}

/// TCP option kinds.
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;

/// Lowers the MSS option of a TCP header `b` (its options included) to `max`, patching
/// the checksum; true when it changed. A header with no MSS option, or a smaller one, is
/// left as it is (a SYN without the option means 536 to the peer, RFC 9293, less than any
/// clamp here).
pub fn clamp_mss(b: &mut [u8], max: u16) -> bool {
    if b.len() < TCP_MIN_LEN {
        return false;
    }
    let end = (usize::from(b[12] >> 4) * 4).min(b.len());
    let mut at = TCP_MIN_LEN;
    while at < end {
        match b[at] {
            OPT_END => return false,
            OPT_NOP => at += 1,
            kind => {
                let Some(&len) = b.get(at + 1) else {
                    return false;
                };
                let len = usize::from(len);
                if len < 2 || at + len > end {
                    return false;
                }
                if kind == OPT_MSS && len == 4 {
                    let mss = get_u16(b, at + 2);
                    if mss <= max {
                        return false;
                    }
                    // The checksum covers 16-bit words from the header's start: the
                    // value's two bytes lie in one word, or across two when `at` is odd.
                    let (w0, w1) = ((at + 2) & !1, (at + 5) & !1);
                    if w1 > b.len() {
                        return false;
                    }
                    let mut old = [0u8; 4];
                    let n = w1 - w0;
                    old[..n].copy_from_slice(&b[w0..w1]);
                    set_u16(b, at + 2, max);
                    let c = checksum::update_bytes(get_u16(b, 16), &old[..n], &b[w0..w1]);
                    set_u16(b, 16, c);
                    return true;
                }
                at += len;
            }
        }
    }
    false
}

/// Writes a UDP header with a zero checksum (IPv4's "none"; `fill_checksum` after it for
/// IPv6, which requires one).
#[inline]
pub fn emit_udp_header(b: &mut [u8], sport: u16, dport: u16, len: u16) {
    set_u16(b, 0, sport);
    set_u16(b, 2, dport);
    set_u16(b, 4, len);
    set_u16(b, 6, 0);
}

/// Offset of the checksum field in the L4 header.
pub fn checksum_offset(proto: u8) -> usize {
    if proto == PROTO_TCP {
        16
    } else {
        6
    }
}

/// Patches the L4 checksum for an address change in the pseudo header and a port change in
/// the header itself. A UDP checksum of zero means "none" (IPv4) and stays zero.
#[inline]
pub fn rewrite(
    proto: u8,
    l4: &mut [u8],
    old_addr: &[u8],
    new_addr: &[u8],
    port_at: usize,
    new_port: u16,
) {
    rewrite_with(
        proto,
        l4,
        checksum::delta_bytes(old_addr, new_addr),
        port_at,
        new_port,
    )
}

/// `rewrite`, with the address change given as its checksum change term
/// (`checksum::delta_bytes`), already computed for the IP header.
#[inline(always)]
pub fn rewrite_with(proto: u8, l4: &mut [u8], addr_delta: u32, port_at: usize, new_port: u16) {
    let co = checksum_offset(proto);
    let old_csum = get_u16(l4, co);
    let old_port = get_u16(l4, port_at);
    set_u16(l4, port_at, new_port);
    if proto == PROTO_UDP && old_csum == 0 {
        return;
    }
    let mut c = checksum::apply(old_csum, addr_delta + checksum::delta16(old_port, new_port));
    if proto == PROTO_UDP && c == 0 {
        c = 0xffff;
    }
    set_u16(l4, co, c);
}

/// Computes the L4 checksum from scratch over the pseudo header and `l4` (its checksum field
/// zeroed first). For tests and for freshly built packets.
pub fn fill_checksum(proto: u8, src: &[u8], dst: &[u8], l4: &mut [u8]) {
    let co = checksum_offset(proto);
    set_u16(l4, co, 0);
    let sum = checksum::pseudo_header_sum(src, dst, proto, l4.len() as u32);
    let mut c = !checksum::fold(checksum::sum_words(sum, l4));
    if proto == PROTO_UDP && c == 0 {
        c = 0xffff;
    }
    set_u16(l4, co, c);
}

/// True when the L4 checksum over the pseudo header verifies (UDP zero counts as valid).
pub fn verify_checksum(proto: u8, src: &[u8], dst: &[u8], l4: &[u8]) -> bool {
    if proto == PROTO_UDP && get_u16(l4, 6) == 0 {
        return true;
    }
    let sum = checksum::pseudo_header_sum(src, dst, proto, l4.len() as u32);
    checksum::fold(checksum::sum_words(sum, l4)) == 0xffff
}

/// The payload of the UDP datagram whose header starts at `l4` in `frame`, as its length
/// field states it (cut to what the frame holds); None when there is no whole header.
#[inline]
pub fn udp_payload(frame: &[u8], l4: usize) -> Option<&[u8]> {
    let h = frame.get(l4..l4 + 8)?;
    let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let end = (l4 + len.max(8)).min(frame.len());
    frame.get(l4 + 8..end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(src in any::<u16>(), dst in any::<u16>(), flags in any::<u8>(), tcp in any::<bool>(), payload_len in 0u16..1400) {
            let proto = if tcp { PROTO_TCP } else { PROTO_UDP };
            let p = Ports { src, dst, flags: if tcp { flags } else { 0 }, payload_len };
            let hl = if tcp { TCP_MIN_LEN } else { UDP_LEN };
            let mut b = vec![0u8; hl + usize::from(payload_len)];
            p.emit(proto, &mut b);
            prop_assert_eq!(parse(proto, &b), Ok(p));
            let v = Segment::new_checked(proto, &b[..]).unwrap();
            prop_assert_eq!((v.src_port(), v.dst_port(), v.flags()), (src, dst, p.flags));
            prop_assert_eq!(v.payload_len(), usize::from(payload_len));
        }
        #[test]
        fn never_panics(proto in any::<u8>(), b in proptest::collection::vec(any::<u8>(), 0..64), max in any::<u16>()) {
            let _ = parse(proto, &b);
            let _ = parse_first_fragment(proto, &b);
            let mut b = b;
            let _ = clamp_mss(&mut b, max);
        }
        #[test]
        fn a_clamped_mss_keeps_the_checksum_right(nops in 0usize..3, mss in any::<u16>(), max in any::<u16>()) {
            // A SYN with `nops` NOPs, then MSS, padded to a multiple of 4.
            let opts_len = (nops + 4).div_ceil(4) * 4;
            let mut b = vec![0u8; TCP_MIN_LEN + opts_len + 5];
            Ports { src: 1, dst: 2, flags: SYN, payload_len: 0 }.emit(PROTO_TCP, &mut b);
            b[12] = (((TCP_MIN_LEN + opts_len) / 4) as u8) << 4;
            for i in 0..nops { b[TCP_MIN_LEN + i] = OPT_NOP; }
            let at = TCP_MIN_LEN + nops;
            b[at..at + 4].copy_from_slice(&[OPT_MSS, 4, (mss >> 8) as u8, mss as u8]);
            b[TCP_MIN_LEN + opts_len..].copy_from_slice(b"hello");
            let (src, dst) = ([10, 0, 0, 1], [10, 0, 0, 2]);
            fill_checksum(PROTO_TCP, &src, &dst, &mut b);
            let changed = clamp_mss(&mut b, max);
            prop_assert_eq!(changed, mss > max);
            prop_assert_eq!(get_u16(&b, at + 2), mss.min(max));
            prop_assert!(verify_checksum(PROTO_TCP, &src, &dst, &b));
        }
        #[test]
        fn a_first_fragment_needs_only_its_header(tcp in any::<bool>(), sport in any::<u16>(), dport in any::<u16>(), stated in 0u16..9000) {
            let proto = if tcp { PROTO_TCP } else { PROTO_UDP };
            let hl = if tcp { TCP_MIN_LEN } else { UDP_LEN };
            let mut b = vec![0u8; hl + 16];
            Ports { src: sport, dst: dport, flags: 0, payload_len: stated }.emit(proto, &mut b);
            let p = parse_first_fragment(proto, &b).unwrap();
            prop_assert_eq!((p.src, p.dst), (sport, dport));
            prop_assert!(parse_first_fragment(proto, &b[..hl - 1]).is_err());
        }
    }
}
