//! IPv6 headers (RFC 8200): the fixed header, and the walk over extension headers
//! (hop-by-hop, routing, fragment, destination options) to the transport header, bounded
//! in number and length. AH, ESP and headers this walk does not know end it with their
//! name, for the pipeline to count.

use super::{get_u16, set_u16, WireError};
use std::net::Ipv6Addr;

pub const HEADER_LEN: usize = 40;

pub const NH_HOP_BY_HOP: u8 = 0;
pub const NH_ROUTING: u8 = 43;
pub const NH_FRAGMENT: u8 = 44;
pub const NH_ESP: u8 = 50;
pub const NH_AH: u8 = 51;
pub const NH_NONE: u8 = 59;
pub const NH_DEST_OPTS: u8 = 60;

/// Extension headers walked at most before the transport header (a real chain has two or
/// three; RFC 8504 lets a node set its own limit).
pub const MAX_EXT_HEADERS: usize = 6;
/// Bytes of extension headers walked at most.
pub const MAX_EXT_LEN: usize = 256;
const FRAGMENT_HEADER_LEN: usize = 8;

/// Where a packet's transport header is, once the extension headers are walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upper {
    /// The transport protocol (the last next-header value).
    pub proto: u8,
    /// Offset of the transport header from the start of the IPv6 header.
    pub offset: usize,
    /// The fragment header, when the packet is a fragment (an atomic fragment, offset 0 and
    /// no more to come, is not one: RFC 6946).
    pub fragment: Option<Fragment>,
}

/// What a fragment header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    pub ident: u32,
    /// Where this fragment's data starts in the datagram, in bytes.
    pub offset: usize,
    pub more: bool,
}

/// Why the walk stopped before a transport header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtError {
    Wire(WireError),
    /// Authentication header: what it authenticates cannot be read past by a balancer that
    /// does not hold the keys, and rewriting under it breaks it.
    Ah,
    /// Encapsulating security payload: the transport header is encrypted.
    Esp,
    /// No next header, or an extension header this walk does not know (mobility, HIP,
    /// shim6, experimental).
    Unknown,
    /// More than `MAX_EXT_HEADERS` headers or `MAX_EXT_LEN` bytes, or hop-by-hop options
    /// anywhere but first.
    Chain,
    /// A routing header with segments left: the destination is not the packet's last.
    Routing,
}

/// Walks the extension headers after the fixed header: `first` is the fixed header's next
/// header, `after` the bytes that follow it (the payload, or as much of it as an ICMP
/// error quotes). A fragment that is not the first ends the walk at its fragment header
/// (what follows is data).
#[inline]
pub fn upper_layer(first: u8, after: &[u8]) -> Result<Upper, ExtError> {
    let mut nh = first;
    let mut at = 0usize;
    let mut fragment = None;
    let mut fragment_headers = 0;
    for n in 0..=MAX_EXT_HEADERS {
        let len = match nh {
            NH_HOP_BY_HOP | NH_ROUTING | NH_DEST_OPTS | NH_FRAGMENT if n == MAX_EXT_HEADERS => {
                return Err(ExtError::Chain)
            }
            NH_HOP_BY_HOP if n != 0 => return Err(ExtError::Chain),
            NH_HOP_BY_HOP | NH_ROUTING | NH_DEST_OPTS => {
                let h = after
                    .get(at..at + 8)
                    .ok_or(ExtError::Wire(WireError::Truncated))?;
                if nh == NH_ROUTING && h[3] != 0 {
                    return Err(ExtError::Routing);
                }
                (usize::from(h[1]) + 1) * 8
            }
            // One fragment header at most (RFC 8200 4.1: it appears once).
            NH_FRAGMENT if fragment_headers > 0 => return Err(ExtError::Chain),
            NH_FRAGMENT => {
                fragment_headers += 1;
                let h = after
                    .get(at..at + FRAGMENT_HEADER_LEN)
                    .ok_or(ExtError::Wire(WireError::Truncated))?;
                let word = get_u16(h, 2);
                let f = Fragment {
                    ident: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                    offset: usize::from(word & 0xfff8),
                    more: word & 1 != 0,
                };
                if f.offset != 0 || f.more {
                    fragment = Some(f);
                }
                if f.offset != 0 {
                    return Ok(Upper {
                        proto: h[0],
                        offset: HEADER_LEN + at + FRAGMENT_HEADER_LEN,
                        fragment,
                    });
                }
                FRAGMENT_HEADER_LEN
            }
            NH_AH => return Err(ExtError::Ah),
            NH_ESP => return Err(ExtError::Esp),
            NH_NONE | 135 | 139 | 140 | 253 | 254 => return Err(ExtError::Unknown),
            proto => {
                return Ok(Upper {
                    proto,
                    offset: HEADER_LEN + at,
                    fragment,
                })
            }
        };
        if at + len > MAX_EXT_LEN {
            return Err(ExtError::Chain);
        }
        if at + len > after.len() {
            return Err(ExtError::Wire(WireError::Truncated));
        }
        nh = after[at];
        at += len;
    }
    Err(ExtError::Chain)
}

pub struct Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    #[inline(always)]
    pub fn new_unchecked(buf: T) -> Self {
        Packet { buf }
    }
    /// Proves the fixed header and the stated payload length fit.
    #[inline(always)]
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(WireError::Malformed);
        }
        let plen = usize::from(get_u16(b, 4));
        if b.len() < HEADER_LEN + plen {
            return Err(WireError::Truncated);
        }
        Ok(Packet { buf })
    }
    pub fn payload_len(&self) -> usize {
        usize::from(get_u16(self.buf.as_ref(), 4))
    }
    #[inline(always)]
    pub fn next_header(&self) -> u8 {
        self.buf.as_ref()[6]
    }
    pub fn hop_limit(&self) -> u8 {
        self.buf.as_ref()[7]
    }
    #[inline(always)]
    pub fn src_bytes(&self) -> [u8; 16] {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buf.as_ref()[8..24]);
        a
    }
    #[inline(always)]
    pub fn dst_bytes(&self) -> [u8; 16] {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buf.as_ref()[24..40]);
        a
    }
    pub fn src(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.src_bytes())
    }
    pub fn dst(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.dst_bytes())
    }
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..HEADER_LEN + self.payload_len()]
    }
    /// What follows the fixed header of a quoted packet: as much as the quote holds, up to
    /// the stated payload length.
    pub fn quoted_payload(&self) -> &[u8] {
        let b = self.buf.as_ref();
        let end = (HEADER_LEN + self.payload_len()).min(b.len());
        &b[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Proves only the fixed header is there (a packet quoted in an ICMPv6 error).
    pub fn new_quoted(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(WireError::Malformed);
        }
        Ok(Packet { buf })
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn decrement_hop_limit(&mut self) {
        let b = self.buf.as_mut();
        b[7] = b[7].wrapping_sub(1);
    }
    pub fn set_hop_limit(&mut self, h: u8) {
        self.buf.as_mut()[7] = h;
    }
    pub fn set_src(&mut self, a: [u8; 16]) {
        self.buf.as_mut()[8..24].copy_from_slice(&a);
    }
    pub fn set_dst(&mut self, a: [u8; 16]) {
        self.buf.as_mut()[24..40].copy_from_slice(&a);
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let n = self.payload_len();
        &mut self.buf.as_mut()[HEADER_LEN..HEADER_LEN + n]
    }
}

/// What an IPv6 fixed header says (the owned form of a `Packet`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub next_header: u8,
    pub hop_limit: u8,
    pub payload_len: usize,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Repr {
        Repr {
            src: p.src_bytes(),
            dst: p.dst_bytes(),
            next_header: p.next_header(),
            hop_limit: p.hop_limit(),
            payload_len: p.payload_len(),
        }
    }

    pub fn emit(&self, b: &mut [u8]) {
        emit(
            b,
            self.src,
            self.dst,
            self.next_header,
            self.payload_len,
            self.hop_limit,
        )
    }
}

/// Writes a 40-byte IPv6 header.
pub fn emit(b: &mut [u8], src: [u8; 16], dst: [u8; 16], next: u8, payload_len: usize, hop: u8) {
    b[0] = 0x60;
    b[1] = 0;
    b[2] = 0;
    b[3] = 0;
    set_u16(b, 4, payload_len as u16);
    b[6] = next;
    b[7] = hop;
    b[8..24].copy_from_slice(&src);
    b[24..40].copy_from_slice(&dst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn repr_round_trip(src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), next_header in any::<u8>(), hop_limit in any::<u8>(), payload_len in 0usize..1460) {
            let r = Repr { src, dst, next_header, hop_limit, payload_len };
            let mut b = vec![0u8; HEADER_LEN + payload_len];
            r.emit(&mut b);
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&b[..]).unwrap()), r);
        }
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = Packet::new_checked(&b[..]);
            if let Ok(p) = Packet::new_quoted(&b[..]) {
                let _ = p.quoted_payload();
            }
        }
        #[test]
        fn the_walk_never_panics_and_stays_inside(first in any::<u8>(), b in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(u) = upper_layer(first, &b) {
                prop_assert!(u.offset <= HEADER_LEN + b.len());
                prop_assert!(u.offset <= HEADER_LEN + MAX_EXT_LEN);
            }
        }
        #[test]
        fn a_chain_walks_to_its_transport(opts in proptest::collection::vec(0usize..4, 0..3), frag_offset8 in 0u16..0x2000, more in any::<bool>(), ident in any::<u32>()) {
            // Destination options of 8, 16, 24, 32 bytes, then a fragment header, then UDP.
            let mut b = Vec::new();
            let mut kinds = vec![];
            for n in &opts { kinds.push((NH_DEST_OPTS, (n + 1) * 8)); }
            kinds.push((NH_FRAGMENT, 8));
            let first = kinds[0].0;
            for (i, (kind, len)) in kinds.iter().enumerate() {
                let next = kinds.get(i + 1).map_or(17, |k| k.0);
                let mut h = vec![0u8; *len];
                h[0] = next;
                if *kind == NH_FRAGMENT {
                    set_u16(&mut h, 2, frag_offset8 << 3 | u16::from(more));
                    h[4..8].copy_from_slice(&ident.to_be_bytes());
                } else {
                    h[1] = (len / 8 - 1) as u8;
                }
                b.extend(h);
            }
            b.extend([0u8; 8]);
            let u = upper_layer(first, &b).unwrap();
            prop_assert_eq!(u.proto, 17);
            prop_assert_eq!(u.offset, HEADER_LEN + b.len() - 8);
            let is_frag = frag_offset8 != 0 || more;
            prop_assert_eq!(u.fragment, is_frag.then_some(Fragment { ident, offset: usize::from(frag_offset8) * 8, more }));
        }
    }

    #[test]
    fn the_walk_names_what_it_will_not_cross() {
        let dest = |next: u8| [next, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(upper_layer(NH_AH, &[0; 16]), Err(ExtError::Ah));
        assert_eq!(upper_layer(NH_DEST_OPTS, &dest(NH_ESP)), Err(ExtError::Esp));
        assert_eq!(upper_layer(NH_NONE, &[]), Err(ExtError::Unknown));
        assert_eq!(
            upper_layer(NH_DEST_OPTS, &dest(NH_HOP_BY_HOP)),
            Err(ExtError::Chain)
        );
        let routing = [17, 0, 0, 1, 0, 0, 0, 0];
        assert_eq!(upper_layer(NH_ROUTING, &routing), Err(ExtError::Routing));
        let chain: Vec<u8> = (0..7).flat_map(|_| dest(NH_DEST_OPTS)).collect();
        assert_eq!(upper_layer(NH_DEST_OPTS, &chain), Err(ExtError::Chain));
        let long = [17, 32, 0, 0, 0, 0, 0, 0];
        assert_eq!(upper_layer(NH_DEST_OPTS, &long), Err(ExtError::Chain));
        assert_eq!(
            upper_layer(NH_DEST_OPTS, &dest(17)[..4]),
            Err(ExtError::Wire(WireError::Truncated))
        );
    }
}
