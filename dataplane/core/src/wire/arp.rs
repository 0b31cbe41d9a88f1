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

pub fn parse(b: &[u8]) -> Result<Arp, WireError> {
    if b.len() < LEN {
        return Err(WireError::Truncated);
    }
    // Ethernet (1), IPv4 (0x0800), hlen 6, plen 4.
    if get_u16(b, 0) != 1 || get_u16(b, 2) != 0x0800 || b[4] != 6 || b[5] != 4 {
        return Err(WireError::Malformed);
    }
    let mut sender_mac = [0u8; 6];
    let mut target_mac = [0u8; 6];
    sender_mac.copy_from_slice(&b[8..14]);
    target_mac.copy_from_slice(&b[18..24]);
    Ok(Arp {
        op: get_u16(b, 6),
        sender_mac,
        sender_ip: Ipv4Addr::new(b[14], b[15], b[16], b[17]),
        target_mac,
        target_ip: Ipv4Addr::new(b[24], b[25], b[26], b[27]),
    })
}

/// Writes an ARP body into `b` (28 bytes).
pub fn emit(b: &mut [u8], a: &Arp) {
    b[0..2].copy_from_slice(&1u16.to_be_bytes());
    b[2..4].copy_from_slice(&0x0800u16.to_be_bytes());
    b[4] = 6;
    b[5] = 4;
    b[6..8].copy_from_slice(&a.op.to_be_bytes());
    b[8..14].copy_from_slice(&a.sender_mac);
    b[14..18].copy_from_slice(&a.sender_ip.octets());
    b[18..24].copy_from_slice(&a.target_mac);
    b[24..28].copy_from_slice(&a.target_ip.octets());
}
