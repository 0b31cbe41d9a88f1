//! IPv4 headers (RFC 791). The view checks version, IHL and total length once; the rest
//! reads fixed offsets. A fragment is a packet like any other here: what it belongs to is
//! the pipeline's question (`pipeline::fragments`).

use super::checksum;
use super::{get_u16, set_u16, WireError};
use std::net::Ipv4Addr;

pub const MIN_HEADER_LEN: usize = 20;

mod field {
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTO: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4Error {
    Wire(super::WireError),
    BadIhl,
}

/// The flags-and-offset word: more fragments follow, and the offset (in 8-byte units).
const MORE_FRAGMENTS: u16 = 0x2000;
const DONT_FRAGMENT: u16 = 0x4000;
const OFFSET_MASK: u16 = 0x1fff;

/// The version and IHL of the header at the start of `b`, checked: its length.
#[inline(always)]
fn header_len_checked(b: &[u8]) -> Result<usize, Ipv4Error> {
    if b.len() < MIN_HEADER_LEN {
        return Err(Ipv4Error::Wire(WireError::Truncated));
    }
    if b[field::VER_IHL] >> 4 != 4 {
        return Err(Ipv4Error::Wire(WireError::Malformed));
    }
    let ihl = usize::from(b[field::VER_IHL] & 0x0f) * 4;
    if ihl < MIN_HEADER_LEN {
        return Err(Ipv4Error::BadIhl);
    }
    Ok(ihl)
}

/// A checked view: `header_len()` and `total_len()` bytes are known to be present.
pub struct Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    #[inline(always)]
    pub fn new_unchecked(buf: T) -> Self {
        Packet { buf }
    }

    /// Proves the header and the stated total length fit in the buffer.
    #[inline(always)]
    pub fn new_checked(buf: T) -> Result<Self, Ipv4Error> {
        let b = buf.as_ref();
        let ihl = header_len_checked(b)?;
        let total = usize::from(get_u16(b, field::TOTAL_LEN));
        if total < ihl {
            return Err(Ipv4Error::Wire(WireError::Malformed));
        }
        if b.len() < total || b.len() < ihl {
            return Err(Ipv4Error::Wire(WireError::Truncated));
        }
        Ok(Packet { buf })
    }

    /// Proves only the header is there: the packet quoted in an ICMP error, of which the
    /// error carries the header and the first bytes after it, whatever its total length says.
    pub fn new_quoted(buf: T) -> Result<Self, Ipv4Error> {
        let b = buf.as_ref();
        let ihl = header_len_checked(b)?;
        if b.len() < ihl {
            return Err(Ipv4Error::Wire(WireError::Truncated));
        }
        Ok(Packet { buf })
    }

    #[inline(always)]
    pub fn header_len(&self) -> usize {
        usize::from(self.buf.as_ref()[field::VER_IHL] & 0x0f) * 4
    }
    #[inline(always)]
    pub fn total_len(&self) -> usize {
        usize::from(get_u16(self.buf.as_ref(), field::TOTAL_LEN))
    }
    /// The identification shared by the fragments of one datagram.
    pub fn ident(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::IDENT)
    }
    /// True for any fragment: more follow, or this one is not the first.
    #[inline(always)]
    pub fn is_fragment(&self) -> bool {
        get_u16(self.buf.as_ref(), field::FLAGS_FRAG) & (MORE_FRAGMENTS | OFFSET_MASK) != 0
    }
    /// Where this fragment's data starts in the datagram, in bytes.
    pub fn frag_offset(&self) -> usize {
        usize::from(get_u16(self.buf.as_ref(), field::FLAGS_FRAG) & OFFSET_MASK) * 8
    }
    pub fn more_fragments(&self) -> bool {
        get_u16(self.buf.as_ref(), field::FLAGS_FRAG) & MORE_FRAGMENTS != 0
    }
    pub fn dont_fragment(&self) -> bool {
        get_u16(self.buf.as_ref(), field::FLAGS_FRAG) & DONT_FRAGMENT != 0
    }
    #[inline(always)]
    pub fn ttl(&self) -> u8 {
        self.buf.as_ref()[field::TTL]
    }
    #[inline(always)]
    pub fn protocol(&self) -> u8 {
        self.buf.as_ref()[field::PROTO]
    }
    pub fn checksum(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::CHECKSUM)
    }
    pub fn src(&self) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }
    pub fn dst(&self) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }
    #[inline(always)]
    pub fn src_bytes(&self) -> [u8; 4] {
        let b = self.buf.as_ref();
        [b[12], b[13], b[14], b[15]]
    }
    #[inline(always)]
    pub fn dst_bytes(&self) -> [u8; 4] {
        let b = self.buf.as_ref();
        [b[16], b[17], b[18], b[19]]
    }
    /// The L4 bytes (after the options, up to the total length).
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len()..self.total_len()]
    }
    /// What follows the header of a quoted packet: as much as the quote holds, up to the
    /// total length.
    pub fn quoted_payload(&self) -> &[u8] {
        let b = self.buf.as_ref();
        let end = self.total_len().clamp(self.header_len(), b.len());
        &b[self.header_len()..end]
    }
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(&self.buf.as_ref()[..self.header_len()]) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Decrements the TTL and patches the checksum (RFC 1624).
    #[inline]
    pub fn decrement_ttl(&mut self) {
        let b = self.buf.as_mut();
        let old = get_u16(b, field::TTL);
        b[field::TTL] = b[field::TTL].wrapping_sub(1);
        let new = get_u16(b, field::TTL);
        let c = checksum::update16(get_u16(b, field::CHECKSUM), old, new);
        set_u16(b, field::CHECKSUM, c);
    }
    /// Routes a nat packet: the TTL decremented and the source (`src`) or destination
    /// address set to `a`, whose checksum change term is `addr_delta`; the header checksum
    /// patched once for both. The caller has checked the TTL is above 1.
    #[inline(always)]
    pub fn rewrite_routed(&mut self, src: bool, a: [u8; 4], addr_delta: u32) {
        let b = self.buf.as_mut();
        let old_ttl = get_u16(b, field::TTL);
        b[field::TTL] = b[field::TTL].wrapping_sub(1);
        let at = if src { field::SRC } else { field::DST };
        b[at..at + 4].copy_from_slice(&a);
        let delta = addr_delta + checksum::delta16(old_ttl, old_ttl.wrapping_sub(0x100));
        let c = checksum::apply(get_u16(b, field::CHECKSUM), delta);
        set_u16(b, field::CHECKSUM, c);
    }
    /// Rewrites the source address and patches the header checksum.
    #[inline]
    pub fn set_src(&mut self, a: [u8; 4]) {
        self.set_addr(field::SRC, a)
    }
    #[inline]
    pub fn set_dst(&mut self, a: [u8; 4]) {
        self.set_addr(field::DST, a)
    }
    #[inline]
    fn set_addr(&mut self, at: usize, a: [u8; 4]) {
        let b = self.buf.as_mut();
        let mut old = [0u8; 4];
        old.copy_from_slice(&b[at..at + 4]);
        b[at..at + 4].copy_from_slice(&a);
        let c = checksum::update_bytes(get_u16(b, field::CHECKSUM), &old, &a);
        set_u16(b, field::CHECKSUM, c);
    }
    /// Sets the TTL and patches the checksum.
    pub fn set_ttl(&mut self, ttl: u8) {
        let b = self.buf.as_mut();
        let old = get_u16(b, field::TTL);
        b[field::TTL] = ttl;
        let new = get_u16(b, field::TTL);
        let c = checksum::update16(get_u16(b, field::CHECKSUM), old, new);
        set_u16(b, field::CHECKSUM, c);
    }
    /// Swaps source and destination (the checksum does not change: the same words, moved).
    pub fn swap_addresses(&mut self) {
        let b = self.buf.as_mut();
        for i in 0..4 {
            b.swap(field::SRC + i, field::DST + i);
        }
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (h, t) = (self.header_len(), self.total_len());
        &mut self.buf.as_mut()[h..t]
    }
}

/// What an IPv4 header says (the owned form of a `Packet`; options are not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub protocol: u8,
    pub ttl: u8,
    pub payload_len: usize,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Repr {
        Repr {
            src: p.src_bytes(),
            dst: p.dst_bytes(),
            protocol: p.protocol(),
            ttl: p.ttl(),
            payload_len: p.total_len() - p.header_len(),
        }
    }

    /// Writes a 20-byte header (no options, don't fragment) with its checksum.
    pub fn emit(&self, b: &mut [u8]) {
        emit(
            b,
            self.src,
            self.dst,
            self.protocol,
            self.payload_len,
            self.ttl,
        )
    }
}

/// Writes a 20-byte IPv4 header (no options) with its checksum.
pub fn emit(b: &mut [u8], src: [u8; 4], dst: [u8; 4], proto: u8, payload_len: usize, ttl: u8) {
    b[0] = 0x45;
    b[1] = 0;
    set_u16(b, field::TOTAL_LEN, (MIN_HEADER_LEN + payload_len) as u16);
    set_u16(b, 4, 0);
    set_u16(b, field::FLAGS_FRAG, DONT_FRAGMENT);
    b[field::TTL] = ttl;
    b[field::PROTO] = proto;
    set_u16(b, field::CHECKSUM, 0);
    b[field::SRC..field::SRC + 4].copy_from_slice(&src);
    b[field::DST..field::DST + 4].copy_from_slice(&dst);
    let c = checksum::checksum(&b[..MIN_HEADER_LEN]);
    set_u16(b, field::CHECKSUM, c);
}

/// Recomputes the header checksum from scratch (tests and freshly built headers).
pub fn fill_checksum(b: &mut [u8]) {
    let hl = usize::from(b[0] & 0x0f) * 4;
    set_u16(b, field::CHECKSUM, 0);
    let c = checksum::checksum(&b[..hl]);
    set_u16(b, field::CHECKSUM, c);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn repr_round_trip(src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), protocol in any::<u8>(), ttl in any::<u8>(), payload_len in 0usize..1480) {
            let r = Repr { src, dst, protocol, ttl, payload_len };
            let mut b = vec![0u8; 20 + payload_len];
            r.emit(&mut b);
            let mut p = Packet::new_checked(&mut b[..]).unwrap();
            prop_assert!(p.verify_checksum());
            prop_assert_eq!(Repr::parse(&p), r);
            p.set_ttl(ttl.wrapping_add(1));
            prop_assert!(p.verify_checksum());
        }
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = Packet::new_checked(&b[..]) {
                let _ = (p.payload(), p.frag_offset(), p.is_fragment());
            }
            if let Ok(p) = Packet::new_quoted(&b[..]) {
                let _ = p.quoted_payload();
            }
        }
        #[test]
        fn fragment_fields(ident in any::<u16>(), offset8 in 0u16..0x2000, more in any::<bool>()) {
            let mut b = [0u8; 28];
            emit(&mut b, [1; 4], [2; 4], 17, 8, 64);
            set_u16(&mut b, field::IDENT, ident);
            set_u16(&mut b, field::FLAGS_FRAG, offset8 | if more { MORE_FRAGMENTS } else { 0 });
            let p = Packet::new_checked(&b[..]).unwrap();
            prop_assert_eq!(p.ident(), ident);
            prop_assert_eq!(p.frag_offset(), usize::from(offset8) * 8);
            prop_assert_eq!(p.more_fragments(), more);
            prop_assert_eq!(p.is_fragment(), more || offset8 != 0);
        }
    }
}
