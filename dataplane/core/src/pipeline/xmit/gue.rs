//! GUE-style encapsulation: the client's IP packet, unchanged, inside UDP to the backend's
//! address and port (the backend decapsulates and answers the client itself, as with DSR,
//! across routed networks).

use super::encap::{self, Outer};
use super::{entropy_port, Egress, Transmit};
use crate::pipeline::context::Segment;
use crate::pipeline::{PacketBuf, Verdict};

pub(in crate::pipeline) struct Gue;

impl Transmit for Gue {
    #[inline(always)]
    fn transmit(&self, pkt: &mut PacketBuf, seg: &Segment, to: &Egress) -> Verdict {
        let outer = Outer {
            sport: entropy_port(seg),
            node_header: None,
        };
        encap::udp(pkt, seg.l3(), seg.key.v6, to, &outer)
    }
}
