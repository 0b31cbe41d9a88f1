//! The node-to-node header. A receiving node that is not a flow's primary sends the packet
//! on inside UDP (to the cluster's `forward_port`) with these 8 bytes in front of the
//! original IP packet:
//!
//! ```text
//!  0        1        2        3        4               6               8
//! +--------+--------+--------+--------+---------------+---------------+
//! |version | flags  |  hops  |   0    |  primary id   |   backup id   |
//! +--------+--------+--------+--------+---------------+---------------+
//! ```
//!
//! The node ids are the ranking the receiving node made (or found in its record), so the
//! node that serves a new flow records the same primary and backup. `hops` counts
//! forwardings; a node never forwards a packet that arrived encapsulated.

use super::{get_u16, set_u16, WireError};

pub const HEADER_LEN: usize = 8;
pub const VERSION: u8 = 1;
/// The inner packet is a nat backend's reply, not a client's request.
pub const FLAG_REPLY: u8 = 0x01;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub flags: u8,
    pub hops: u8,
    pub primary: u16,
    pub backup: u16,
}

pub fn parse(b: &[u8]) -> Result<Header, WireError> {
    if b.len() < HEADER_LEN {
        return Err(WireError::Truncated);
    }
    if b[0] != VERSION || b[3] != 0 {
        return Err(WireError::Malformed);
    }
    Ok(Header {
        flags: b[1],
        hops: b[2],
        primary: get_u16(b, 4),
        backup: get_u16(b, 6),
    })
}

pub fn emit(b: &mut [u8], h: &Header) {
    b[0] = VERSION;
    b[1] = h.flags;
    b[2] = h.hops;
    b[3] = 0;
    set_u16(b, 4, h.primary);
    set_u16(b, 6, h.backup);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(flags in any::<u8>(), hops in any::<u8>(), p in any::<u16>(), b in any::<u16>()) {
            let h = Header { flags, hops, primary: p, backup: b };
            let mut buf = [0u8; HEADER_LEN];
            emit(&mut buf, &h);
            prop_assert_eq!(parse(&buf), Ok(h));
        }
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = parse(&b);
        }
    }
}
