//! The flow key: a 5-tuple, IPv4 or IPv6, in one fixed-size shape.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Addresses are stored as 16 bytes; an IPv4 address fills the first 4 and `v6` is false.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
#[repr(C)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub v6: bool,
}

pub fn addr_bytes(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            b
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

pub fn bytes_addr(b: &[u8; 16], v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(*b))
    } else {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    }
}

impl FlowKey {
    #[inline(always)]
    pub fn v4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, proto: u8) -> Self {
        let mut k = FlowKey {
            sport,
            dport,
            proto,
            ..Default::default()
        };
        k.src[..4].copy_from_slice(&src);
        k.dst[..4].copy_from_slice(&dst);
        k
    }
    #[inline(always)]
    pub fn v6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, proto: u8) -> Self {
        FlowKey {
            src,
            dst,
            sport,
            dport,
            proto,
            v6: true,
        }
    }
    pub fn new(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, proto: u8) -> Self {
        FlowKey {
            src: addr_bytes(src),
            dst: addr_bytes(dst),
            sport,
            dport,
            proto,
            v6: src.is_ipv6(),
        }
    }
    pub fn src_ip(&self) -> IpAddr {
        bytes_addr(&self.src, self.v6)
    }
    pub fn dst_ip(&self) -> IpAddr {
        bytes_addr(&self.dst, self.v6)
    }
    /// The address length on the wire (4 or 16).
    pub fn addr_len(&self) -> usize {
        if self.v6 {
            16
        } else {
            4
        }
    }
    /// A well-mixed 64-bit hash with a seed. Deterministic for a seed, so the same flow
    /// hashes the same on every worker (and, with the cluster's seed, every node).
    #[inline(always)]
    pub fn hash(&self, seed: u64) -> u64 {
        let w = |b: &[u8]| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
        let ports = u64::from(self.sport)
            | u64::from(self.dport) << 16
            | u64::from(self.proto) << 32
            | u64::from(self.v6) << 40;
        if self.v6 {
            for x in [
                w(&self.src[..8]),
                w(&self.src[8..]),
                w(&self.dst[..8]),
                w(&self.dst[8..]),
            ] {
                h = mix(h ^ x);
            }
        } else {
            let addrs = (w(&self.src[..8]) & 0xffff_ffff) ^ (w(&self.dst[..8]) << 32);
            return hash_v4(seed, addrs, ports);
        }
        fmix(mix(h ^ ports))
    }
}

/// An IPv4 key's hash from its two addresses as they lie in the header (source then
/// destination, read as one little-endian word) and its ports word: `FlowKey::hash`'s, so
/// the plain lane, which reads the words from the frame, finds what the full stage stored.
#[inline(always)]
fn hash_v4(seed: u64, addrs: u64, ports: u64) -> u64 {
    let h = mix((seed ^ 0x9e37_79b9_7f4a_7c15) ^ addrs);
    fmix(mix(h ^ ports))
}

/// An IPv4 TCP or UDP 5-tuple as a packet carries it, in words: what the plain lane
/// reads from a frame and looks up by, without the 40-byte `FlowKey`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Tuple4 {
    /// Source then destination address, in wire order, read as one little-endian word.
    pub addrs: u64,
    /// Source port in the low half, destination port in the high one.
    pub ports: u32,
    pub proto: u8,
}

impl Tuple4 {
    #[inline(always)]
    pub fn new(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, proto: u8) -> Self {
        let a = [
            src[0], src[1], src[2], src[3], dst[0], dst[1], dst[2], dst[3],
        ];
        Tuple4 {
            addrs: u64::from_le_bytes(a),
            ports: u32::from(sport) | u32::from(dport) << 16,
            proto,
        }
    }
    #[inline(always)]
    pub fn src(&self) -> [u8; 4] {
        (self.addrs as u32).to_le_bytes()
    }
    #[inline(always)]
    pub fn dst(&self) -> [u8; 4] {
        ((self.addrs >> 32) as u32).to_le_bytes()
    }
    #[inline(always)]
    pub fn sport(&self) -> u16 {
        self.ports as u16
    }
    #[inline(always)]
    pub fn dport(&self) -> u16 {
        (self.ports >> 16) as u16
    }
    /// `FlowKey::hash` of the same key.
    #[inline(always)]
    pub fn hash(&self, seed: u64) -> u64 {
        hash_v4(
            seed,
            self.addrs,
            u64::from(self.ports) | u64::from(self.proto) << 32,
        )
    }
    pub fn key(&self) -> FlowKey {
        FlowKey::v4(
            self.src(),
            self.dst(),
            self.sport(),
            self.dport(),
            self.proto,
        )
    }
}

#[inline(always)]
fn mix(x: u64) -> u64 {
    let m = u128::from(x).wrapping_mul(0xa076_1d64_78bd_642f);
    (m as u64) ^ ((m >> 64) as u64)
}

/// MurmurHash3's 64-bit finaliser.
#[inline(always)]
pub fn fmix(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = match self.proto {
            6 => "tcp",
            17 => "udp",
            _ => "ip",
        };
        let (s, d) = (self.src_ip(), self.dst_ip());
        if self.v6 {
            write!(f, "{p} [{s}]:{} -> [{d}]:{}", self.sport, self.dport)
        } else {
            write!(f, "{p} {s}:{} -> {d}:{}", self.sport, self.dport)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The plain lane finds what the full stage stored only if both hash alike.
        #[test]
        fn a_tuple_hashes_as_its_key(
            addrs in any::<[u8; 8]>(), sport in any::<u16>(), dport in any::<u16>(),
            proto in any::<u8>(), seed in any::<u64>(),
        ) {
            let [a, b, c, d, e, f, g, h] = addrs;
            let t = Tuple4::new([a, b, c, d], [e, f, g, h], sport, dport, proto);
            prop_assert_eq!(t.hash(seed), t.key().hash(seed));
            prop_assert_eq!(&t.key().src[..4], &t.src()[..]);
            prop_assert_eq!(&t.key().dst[..4], &t.dst()[..]);
            prop_assert_eq!((t.sport(), t.dport(), t.key().proto), (sport, dport, proto));
        }
    }
}
