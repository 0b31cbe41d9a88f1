//! Ethernet II frames with at most one 802.1Q tag.

use super::{get_u16, WireError};

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const HEADER_LEN: usize = 14;
pub const BROADCAST: [u8; 6] = [0xff; 6];

pub type Mac = [u8; 6];

/// What the link layer says about a frame: where the L3 header starts and its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2 {
    pub dst: Mac,
    pub src: Mac,
    /// The 802.1Q tag control info, if the frame was tagged.
    pub vlan: Option<u16>,
    pub ethertype: u16,
    /// Offset of the L3 header from the start of the frame (14 or 18).
    pub l3_offset: usize,
}

pub fn parse(frame: &[u8]) -> Result<L2, WireError> {
    if frame.len() < HEADER_LEN {
        return Err(WireError::Truncated);
    }
    let mut dst = [0u8; 6];
    let mut src = [0u8; 6];
    dst.copy_from_slice(&frame[0..6]);
    src.copy_from_slice(&frame[6..12]);
    let t = get_u16(frame, 12);
    if t == ETHERTYPE_VLAN {
        if frame.len() < HEADER_LEN + 4 {
            return Err(WireError::Truncated);
        }
        let inner = get_u16(frame, 16);
        if inner == ETHERTYPE_VLAN || inner == 0x88a8 {
            // A second tag (QinQ) is not supported.
            return Err(WireError::Malformed);
        }
        return Ok(L2 {
            dst,
            src,
            vlan: Some(get_u16(frame, 14)),
            ethertype: inner,
            l3_offset: 18,
        });
    }
    Ok(L2 {
        dst,
        src,
        vlan: None,
        ethertype: t,
        l3_offset: HEADER_LEN,
    })
}

/// Writes an untagged Ethernet header at the start of `buf` (which must hold 14 bytes).
#[inline]
pub fn write_header(buf: &mut [u8], dst: &Mac, src: &Mac, ethertype: u16) {
    buf[0..6].copy_from_slice(dst);
    buf[6..12].copy_from_slice(src);
    buf[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

pub fn is_multicast(mac: &Mac) -> bool {
    mac[0] & 1 == 1
}
