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
    let v4 = [src[0], src[1], src[2], src[3]];
    let by_class = if v6 {
        scope::v6_martian(src)
    } else {
        scope::v4_martian(v4)
    };
    by_class
        || s.ports
            .iter()
            .any(|p| p.has_address(src, v6) || (!v6 && p.is_subnet_broadcast(v4)))
        || s.is_vip(src)
}
