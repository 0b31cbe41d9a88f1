//! Node to node: the client's IP packet, unchanged, inside UDP to another cluster node's
//! forwarding port, with the node header naming the flow's primary and backup (as the
//! receiving node ranked them), so the far node serves it as its own.

use super::encap::{self, Outer};
use super::{entropy_port, Egress, Transmit};
use crate::pipeline::context::Segment;
use crate::pipeline::{PacketBuf, Verdict};
use crate::wire::tunnel;

pub(in crate::pipeline) struct ToNode {
    pub header: tunnel::Header,
}

impl Transmit for ToNode {
    #[inline]
    fn transmit(&self, pkt: &mut PacketBuf, seg: &Segment, to: &Egress) -> Verdict {
        let outer = Outer {
            sport: entropy_port(seg),
            node_header: Some(&self.header),
        };
        encap::udp(pkt, seg.l3(), seg.key.v6, to, &outer)
    }
}
