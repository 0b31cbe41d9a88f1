//! ARP for IPv4 over Ethernet (RFC 826): the 28-byte body after the Ethernet header.

use super::{get_u16, WireError};
use std::net::Ipv4Addr;

pub const LEN: usize = 28;
pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    pub op: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_mac: [u8; 6],
    pub target_ip: Ipv4Addr,
}

/// A checked view of an ARP body: 28 bytes of Ethernet/IPv4 ARP.
pub struct Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_unchecked(buf: T) -> Self {
        Packet { buf }
    }

    /// Proves the body is there and is ARP for IPv4 over Ethernet (hardware type 1,
    /// protocol 0x0800, lengths 6 and 4).
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < LEN {
            return Err(WireError::Truncated);
        }
        if get_u16(b, 0) != 1 || get_u16(b, 2) != 0x0800 || b[4] != 6 || b[5] != 4 {
            return Err(WireError::Malformed);
        }
        Ok(Packet { buf })
    }

    pub fn op(&self) -> u16 {
        get_u16(self.buf.as_ref(), 6)
    }
    fn mac_at(&self, at: usize) -> [u8; 6] {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.buf.as_ref()[at..at + 6]);
        m
    }
    fn ip_at(&self, at: usize) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
    }
    pub fn sender_mac(&self) -> [u8; 6] {
        self.mac_at(8)
    }
    pub fn sender_ip(&self) -> Ipv4Addr {
        self.ip_at(14)
    }
    pub fn target_mac(&self) -> [u8; 6] {
        self.mac_at(18)
    }
    pub fn target_ip(&self) -> Ipv4Addr {
        self.ip_at(24)
    }
}

impl Arp {
    /// The message a checked body carries.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Arp {
        Arp {
            op: p.op(),
            sender_mac: p.sender_mac(),
            sender_ip: p.sender_ip(),
            target_mac: p.target_mac(),
            target_ip: p.target_ip(),
        }
    }

    /// Writes the body into `b` (28 bytes).
    pub fn emit(&self, b: &mut [u8]) {
        b[0..2].copy_from_slice(&1u16.to_be_bytes());
        b[2..4].copy_from_slice(&0x0800u16.to_be_bytes());
        b[4] = 6;
        b[5] = 4;
        b[6..8].copy_from_slice(&self.op.to_be_bytes());
        b[8..14].copy_from_slice(&self.sender_mac);
        b[14..18].copy_from_slice(&self.sender_ip.octets());
        b[18..24].copy_from_slice(&self.target_mac);
        b[24..28].copy_from_slice(&self.target_ip.octets());
    }
}

/// The message of an ARP body, checked.
pub fn parse(b: &[u8]) -> Result<Arp, WireError> {
    Packet::new_checked(b).map(|p| Arp::parse(&p))
}

/// Writes an ARP body into `b` (28 bytes).
pub fn emit(b: &mut [u8], a: &Arp) {
    a.emit(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(op in any::<u16>(), sm in any::<[u8; 6]>(), si in any::<[u8; 4]>(), tm in any::<[u8; 6]>(), ti in any::<[u8; 4]>()) {
            let a = Arp { op, sender_mac: sm, sender_ip: si.into(), target_mac: tm, target_ip: ti.into() };
            let mut b = [0u8; LEN];
            a.emit(&mut b);
            prop_assert_eq!(parse(&b), Ok(a));
        }
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse(&b);
        }
    }
}
