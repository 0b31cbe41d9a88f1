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
/// The packet is being traced (`tandem ctl trace add`): the receiving node traces it too.
pub const FLAG_TRACE: u8 = 0x02;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub flags: u8,
    pub hops: u8,
    pub primary: u16,
    pub backup: u16,
}

/// A checked view of the node header: 8 bytes of the version tandem speaks.
pub struct Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_unchecked(buf: T) -> Self {
        Packet { buf }
    }
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[0] != VERSION || b[3] != 0 {
            return Err(WireError::Malformed);
        }
        Ok(Packet { buf })
    }
    pub fn flags(&self) -> u8 {
        self.buf.as_ref()[1]
    }
    pub fn hops(&self) -> u8 {
        self.buf.as_ref()[2]
    }
    pub fn primary(&self) -> u16 {
        get_u16(self.buf.as_ref(), 4)
    }
    pub fn backup(&self) -> u16 {
        get_u16(self.buf.as_ref(), 6)
    }
}

impl Header {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Header {
        Header {
            flags: p.flags(),
            hops: p.hops(),
            primary: p.primary(),
            backup: p.backup(),
        }
    }
    pub fn emit(&self, b: &mut [u8]) {
        b[0] = VERSION;
        b[1] = self.flags;
        b[2] = self.hops;
        b[3] = 0;
        set_u16(b, 4, self.primary);
        set_u16(b, 6, self.backup);
    }
}

/// The header at the start of `b`, checked.
pub fn parse(b: &[u8]) -> Result<Header, WireError> {
    Packet::new_checked(b).map(|p| Header::parse(&p))
}

pub fn emit(b: &mut [u8], h: &Header) {
    h.emit(b)
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
