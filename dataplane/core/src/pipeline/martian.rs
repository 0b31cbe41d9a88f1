//! Martian sources (RFC 1812 5.3.7, and Linux's `rp_filter` martians): addresses no client
//! can have. A packet from one makes no flow and gets no answer: its replies, and any ICMP
//! error or echo reply about it, would go to loopback, to a broadcast or multicast group,
//! to the node itself or to a VIP. The check runs where a flow would be made and before
//! the node answers (echo, "too big"), never on an established flow's packets.

use crate::services::Services;
use crate::wire::scope;

/// True when no packet from the network may come from `src`: a class no host may send from
/// (`wire::scope`), any port's subnet broadcast, one of the node's own addresses, or a VIP.
#[cold]
pub(super) fn is_martian(s: &Services, src: &[u8; 16], v6: bool) -> bool {
    if v6 {
        if scope::v6_martian(src) {
            return true;
        }
        if s.ports
            .iter()
            .any(|p| p.ipv6.is_some_and(|(a, _)| a == *src))
        {
            return true;
        }
    } else {
        let a = [src[0], src[1], src[2], src[3]];
        if scope::v4_martian(a) {
            return true;
        }
        let x = u32::from_be_bytes(a);
        let own_or_broadcast = s.ports.iter().any(|p| {
            p.ipv4.is_some_and(|(ip, len)| {
                let host = if len >= 31 { 0 } else { u32::MAX >> len };
                let net = u32::from_be_bytes(ip) & !host;
                ip == a || (host != 0 && x == net | host)
            })
        });
        if own_or_broadcast {
            return true;
        }
    }
    s.is_vip(src)
}
