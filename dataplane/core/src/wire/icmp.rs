//! ICMP echo (RFC 792) and ICMPv6 echo and neighbor discovery (RFC 4443, RFC 4861): the
//! messages a node answers for its own addresses and VIPs.

use super::{checksum, get_u16, set_u16, WireError};

pub const ECHO_REQUEST: u8 = 8;
pub const ECHO_REPLY: u8 = 0;
pub const V6_ECHO_REQUEST: u8 = 128;
pub const V6_ECHO_REPLY: u8 = 129;
pub const V6_NEIGHBOR_SOLICIT: u8 = 135;
pub const V6_NEIGHBOR_ADVERT: u8 = 136;

/// The message type, after checking the 8-byte header is there.
pub fn message_type(b: &[u8]) -> Result<u8, WireError> {
    if b.len() < 8 {
        return Err(WireError::Truncated);
    }
    Ok(b[0])
}

/// Turns an ICMPv4 echo request into its reply in place (type 8 -> 0), checksum patched.
pub fn echo_to_reply_v4(b: &mut [u8]) {
    let old = get_u16(b, 0);
    b[0] = ECHO_REPLY;
    let new = get_u16(b, 0);
    let c = checksum::update16(get_u16(b, 2), old, new);
    set_u16(b, 2, c);
}

/// Turns an ICMPv6 echo request into its reply in place; the pseudo header is unchanged
/// when the addresses are swapped, so only the type word changes the sum.
pub fn echo_to_reply_v6(b: &mut [u8]) {
    let old = get_u16(b, 0);
    b[0] = V6_ECHO_REPLY;
    let new = get_u16(b, 0);
    let c = checksum::update16(get_u16(b, 2), old, new);
    set_u16(b, 2, c);
}

/// A neighbor solicitation or advertisement: its target and the link-layer address option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nd {
    pub kind: u8,
    pub target: [u8; 16],
    /// Source (in an NS) or target (in an NA) link-layer address option.
    pub lladdr: Option<[u8; 6]>,
}

pub fn parse_nd(b: &[u8]) -> Result<Nd, WireError> {
    if b.len() < 24 {
        return Err(WireError::Truncated);
    }
    let mut target = [0u8; 16];
    target.copy_from_slice(&b[8..24]);
    let mut lladdr = None;
    let mut opts = &b[24..];
    while opts.len() >= 8 {
        let len = usize::from(opts[1]) * 8;
        if len == 0 || len > opts.len() {
            return Err(WireError::Malformed);
        }
        if (opts[0] == 1 || opts[0] == 2) && len >= 8 {
            let mut m = [0u8; 6];
            m.copy_from_slice(&opts[2..8]);
            lladdr = Some(m);
        }
        opts = &opts[len..];
    }
    Ok(Nd {
        kind: b[0],
        target,
        lladdr,
    })
}

/// Length of an NS or NA with one link-layer address option.
pub const ND_LEN: usize = 32;

/// Writes an NS (kind 135, source lladdr option) or NA (136, solicited+override, target
/// lladdr option) into `b` (32 bytes); the checksum is filled by the caller with the
/// pseudo header.
pub fn emit_nd(b: &mut [u8], kind: u8, target: &[u8; 16], lladdr: &[u8; 6]) {
    b[0] = kind;
    b[1] = 0;
    set_u16(b, 2, 0);
    b[4..8].copy_from_slice(&if kind == V6_NEIGHBOR_ADVERT {
        [0x60, 0, 0, 0]
    } else {
        [0; 4]
    });
    b[8..24].copy_from_slice(target);
    b[24] = if kind == V6_NEIGHBOR_ADVERT { 2 } else { 1 };
    b[25] = 1;
    b[26..32].copy_from_slice(lladdr);
}

/// Fills the ICMPv6 checksum over the pseudo header.
pub fn fill_checksum_v6(src: &[u8; 16], dst: &[u8; 16], b: &mut [u8]) {
    set_u16(b, 2, 0);
    let sum = checksum::pseudo_header_sum(src, dst, super::l4::PROTO_ICMPV6, b.len() as u32);
    let c = !checksum::fold(checksum::sum_words(sum, b));
    set_u16(b, 2, c);
}
