//! Zero-copy views over packet bytes, one file per protocol (after smoltcp's `wire`): each
//! view proves its length once in `new_checked`, then reads and writes fixed byte ranges.
//! Nothing here allocates or panics on any input.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod l4;
pub mod scope;
pub mod tunnel;

/// Why a view could not be made over some bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than the header (or its stated length) needs.
    Truncated,
    /// The bytes are there but a field is impossible (bad version, IHL below 5, ...).
    Malformed,
}

#[inline(always)]
pub(crate) fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
pub(crate) fn set_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}
