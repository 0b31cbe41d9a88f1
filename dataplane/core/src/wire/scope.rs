//! What an address is by its value alone (RFC 1122, RFC 3927, RFC 4291, RFC 5735): the
//! classes no client may send from, and IPv6's link-local and multicast scopes, which
//! neighbor discovery checks. What an address is to this node (its own, a VIP, a port's
//! subnet broadcast) is `pipeline::martian`'s.

/// An IPv4 source no packet from the network may carry: "this network" (0/8), loopback
/// (127/8), link-local (169.254/16: never routed, so never from behind a router),
/// multicast (224/4), and the reserved block with the limited broadcast (240/4).
#[inline]
pub fn v4_martian(a: [u8; 4]) -> bool {
    a[0] == 0 || a[0] == 127 || (a[0] == 169 && a[1] == 254) || a[0] >= 224
}

/// IPv6 link-local unicast (fe80::/10).
#[inline]
pub fn v6_link_local(a: &[u8; 16]) -> bool {
    a[0] == 0xfe && a[1] & 0xc0 == 0x80
}

/// IPv6 multicast (ff00::/8).
#[inline]
pub fn v6_multicast(a: &[u8; 16]) -> bool {
    a[0] == 0xff
}

/// An IPv6 source no packet from the network may carry: unspecified (::), loopback (::1),
/// multicast, link-local (fe80::/10: never routed), and v4-mapped (::ffff:0:0/96, which
/// RFC 4291 reserves for a host's own API, never the wire).
#[inline]
pub fn v6_martian(a: &[u8; 16]) -> bool {
    let head_zero = a[..10] == [0; 10];
    let unspecified_or_loopback = head_zero && a[10..15] == [0; 5] && a[15] <= 1;
    let mapped = head_zero && a[10] == 0xff && a[11] == 0xff;
    unspecified_or_loopback || mapped || v6_multicast(a) || v6_link_local(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn classes() {
        for a in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.0.9",
            "169.254.1.1",
            "224.0.0.5",
            "239.1.1.1",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(v4_martian(a.parse::<Ipv4Addr>().unwrap().octets()), "{a}");
        }
        for a in [
            "1.1.1.1",
            "10.0.0.1",
            "169.253.1.1",
            "198.51.100.9",
            "223.255.255.254",
        ] {
            assert!(!v4_martian(a.parse::<Ipv4Addr>().unwrap().octets()), "{a}");
        }
        for a in [
            "::",
            "::1",
            "ff02::1",
            "ff0e::9",
            "fe80::1",
            "febf::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(v6_martian(&a.parse::<Ipv6Addr>().unwrap().octets()), "{a}");
        }
        for a in [
            "2001:db8::1",
            "fd00::1",
            "fec0::1",
            "::2",
            "64:ff9b::1.2.3.4",
        ] {
            assert!(!v6_martian(&a.parse::<Ipv6Addr>().unwrap().octets()), "{a}");
        }
    }
}
