//! Ethernet II frames with at most one 802.1Q tag.

use super::{get_u16, WireError};

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const HEADER_LEN: usize = 14;
pub const BROADCAST: [u8; 6] = [0xff; 6];

pub type Mac = [u8; 6];

/// What the link layer says about a frame (the owned form of a `Frame`): where the L3
/// header starts and its type.
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

/// A checked view of a frame's link-layer header: the untagged header, or the tagged one
/// with its single 802.1Q tag, is known to be present.
pub struct Frame<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    #[inline(always)]
    pub fn new_unchecked(buf: T) -> Self {
        Frame { buf }
    }

    /// Proves the header (and the tag, when there is one) is there; a second tag (QinQ) is
    /// refused.
    #[inline(always)]
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if get_u16(b, 12) == ETHERTYPE_VLAN {
            if b.len() < HEADER_LEN + 4 {
                return Err(WireError::Truncated);
            }
            let inner = get_u16(b, 16);
            if inner == ETHERTYPE_VLAN || inner == 0x88a8 {
                return Err(WireError::Malformed);
            }
        }
        Ok(Frame { buf })
    }

    pub fn dst(&self) -> Mac {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.buf.as_ref()[0..6]);
        m
    }
    pub fn src(&self) -> Mac {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.buf.as_ref()[6..12]);
        m
    }
    fn tagged(&self) -> bool {
        get_u16(self.buf.as_ref(), 12) == ETHERTYPE_VLAN
    }
    /// The 802.1Q tag control info, if the frame is tagged.
    pub fn vlan(&self) -> Option<u16> {
        self.tagged().then(|| get_u16(self.buf.as_ref(), 14))
    }
    /// The payload's ethertype (inside the tag, if any).
    pub fn ethertype(&self) -> u16 {
        get_u16(self.buf.as_ref(), if self.tagged() { 16 } else { 12 })
    }
    /// Offset of the L3 header from the start of the frame (14 or 18).
    pub fn l3_offset(&self) -> usize {
        if self.tagged() {
            HEADER_LEN + 4
        } else {
            HEADER_LEN
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    pub fn set_dst(&mut self, m: &Mac) {
        self.buf.as_mut()[0..6].copy_from_slice(m);
    }
    pub fn set_src(&mut self, m: &Mac) {
        self.buf.as_mut()[6..12].copy_from_slice(m);
    }
    /// Turns the frame around: the sender becomes the destination, `mac` the source.
    pub fn reply_from(&mut self, mac: &Mac) {
        let src = self.src();
        self.set_dst(&src);
        self.set_src(mac);
    }
}

impl L2 {
    /// The header a checked frame carries (the tag read once).
    #[inline(always)]
    pub fn parse<T: AsRef<[u8]>>(f: &Frame<T>) -> L2 {
        let b = f.buf.as_ref();
        let (vlan, ethertype, l3_offset) = if get_u16(b, 12) == ETHERTYPE_VLAN {
            (Some(get_u16(b, 14)), get_u16(b, 16), HEADER_LEN + 4)
        } else {
            (None, get_u16(b, 12), HEADER_LEN)
        };
        L2 {
            dst: f.dst(),
            src: f.src(),
            vlan,
            ethertype,
            l3_offset,
        }
    }

    /// Writes this header (tagged when `vlan` is set) at the start of `buf`; returns its
    /// length (`l3_offset` is not read: it follows from the tag).
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        match self.vlan {
            Some(tci) => {
                buf[0..6].copy_from_slice(&self.dst);
                buf[6..12].copy_from_slice(&self.src);
                buf[12..14].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
                buf[14..16].copy_from_slice(&tci.to_be_bytes());
                buf[16..18].copy_from_slice(&self.ethertype.to_be_bytes());
                HEADER_LEN + 4
            }
            None => {
                write_header(buf, &self.dst, &self.src, self.ethertype);
                HEADER_LEN
            }
        }
    }
}

/// The header of a frame, checked.
#[inline(always)]
pub fn parse(frame: &[u8]) -> Result<L2, WireError> {
    Frame::new_checked(frame).map(|f| L2::parse(&f))
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(dst in any::<Mac>(), src in any::<Mac>(), vlan in any::<Option<u16>>(), t in any::<u16>()) {
            prop_assume!(t != ETHERTYPE_VLAN && t != 0x88a8);
            let l2 = L2 { dst, src, vlan, ethertype: t, l3_offset: if vlan.is_some() { 18 } else { 14 } };
            let mut buf = [0u8; 18];
            let n = l2.emit(&mut buf);
            prop_assert_eq!(n, l2.l3_offset);
            prop_assert_eq!(parse(&buf[..n]), Ok(l2));
            let f = Frame::new_checked(&buf[..n]).unwrap();
            prop_assert_eq!((f.dst(), f.src(), f.vlan(), f.ethertype()), (dst, src, vlan, t));
        }
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..24)) {
            let _ = parse(&b);
        }
    }

    #[test]
    fn short_and_double_tagged_frames_are_refused() {
        assert_eq!(parse(&[0; 13]), Err(WireError::Truncated));
        let mut f = [0u8; 22];
        f[12..14].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        assert_eq!(parse(&f[..17]), Err(WireError::Truncated));
        f[16..18].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        assert_eq!(parse(&f), Err(WireError::Malformed));
    }
}
