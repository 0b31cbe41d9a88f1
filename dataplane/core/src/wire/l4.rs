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
    #[inline]
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
    #[inline]
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
#[inline]
pub fn parse(proto: u8, b: &[u8]) -> Result<Ports, WireError> {
    Segment::new_checked(proto, b).map(|s| Ports::parse(&s))
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
    let co = checksum_offset(proto);
    let old_csum = get_u16(l4, co);
    let old_port = get_u16(l4, port_at);
    set_u16(l4, port_at, new_port);
    if proto == PROTO_UDP && old_csum == 0 {
        return;
    }
    let mut c = checksum::update_bytes(old_csum, old_addr, new_addr);
    c = checksum::update16(c, old_port, new_port);
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
        fn never_panics(proto in any::<u8>(), b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(proto, &b);
        }
    }
}
