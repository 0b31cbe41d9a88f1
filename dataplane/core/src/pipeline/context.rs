//! The per-packet context: what the stages know of the frame in hand, handed from one to
//! the next as one value instead of a list of arguments.

use crate::flow::FlowKey;
use crate::wire::ethernet::L2;
use crate::wire::l4;
use crate::wire::tunnel;

/// How a packet reached this node: straight from the network, or from another node that
/// received it and sent it on (with the flow's primary and backup as it ranked them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    Direct,
    Node(tunnel::Header),
}

/// A frame as it arrived: its port, its link-layer header (for a packet from another node,
/// `l2.l3_offset` is the inner IP header's) and how it reached the node.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rx {
    pub in_port: u8,
    pub l2: L2,
    pub via: Via,
}

impl Rx {
    /// Offset of the IP header from the start of the frame.
    #[inline(always)]
    pub fn l3(&self) -> usize {
        self.l2.l3_offset
    }
}

/// Which part of its IP datagram a packet is. Only a whole datagram or its first fragment
/// holds the transport header; a later fragment's ports come from the first's
/// (`pipeline::fragments`), and nothing after its IP header may be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    Whole,
    First,
    Later,
}

/// A TCP or UDP packet of some flow (or an ICMP error about one): the arrival, the length of
/// the IP header and its extension headers (where the transport header, a later fragment's
/// data or the ICMP message starts), the flow's key (as the packet names it: a nat reply's
/// is the backend-to-client direction), the transport header's ports and flags, and the
/// part of the datagram it is.
#[derive(Debug, Clone, Copy)]
pub(super) struct Segment {
    pub rx: Rx,
    pub ip_len: usize,
    pub key: FlowKey,
    pub l4: l4::Ports,
    pub part: Part,
}

impl Segment {
    /// Offset of the IP header from the start of the frame.
    #[inline(always)]
    pub fn l3(&self) -> usize {
        self.rx.l2.l3_offset
    }
}
