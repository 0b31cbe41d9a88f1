//! Direct server return: the frame goes to the backend's MAC unchanged at L3 (the backend
//! holds the VIP on a loopback and answers the client itself).

use super::{set_l2, Egress, Transmit};
use crate::pipeline::context::Segment;
use crate::pipeline::{PacketBuf, Verdict};

pub(in crate::pipeline) struct Dsr;

impl Transmit for Dsr {
    #[inline(always)]
    fn transmit(&self, pkt: &mut PacketBuf, seg: &Segment, to: &Egress) -> Verdict {
        set_l2(pkt, seg.l3(), &to.next_mac, &to.out.mac, seg.key.v6);
        Verdict::Tx(to.port)
    }
}
