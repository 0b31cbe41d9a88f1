//! IPv6 fixed headers (RFC 8200). Extension headers are not walked: a packet whose next
//! header is not TCP, UDP or ICMPv6 is not one tandem balances.

use super::{get_u16, set_u16, WireError};
use std::net::Ipv6Addr;

pub const HEADER_LEN: usize = 40;

pub struct Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_unchecked(buf: T) -> Self {
        Packet { buf }
    }
    /// Proves the fixed header and the stated payload length fit.
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
    pub fn next_header(&self) -> u8 {
        self.buf.as_ref()[6]
    }
    pub fn hop_limit(&self) -> u8 {
        self.buf.as_ref()[7]
    }
    pub fn src_bytes(&self) -> [u8; 16] {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buf.as_ref()[8..24]);
        a
    }
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
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..HEADER_LEN + self.payload_len()]
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
        }
    }
}
