//! Transmit: the packet leaves toward a backend (or another node) by the service's
//! forwarding mode, one file per mode behind one interface, as IPVS keeps its transmit
//! methods side by side in `ip_vs_xmit.c`. The modes are the ones config's
//! `for_each_mode!` lists, each with the file here that implements it and the properties the
//! rest of tandem asks of it (`Mode::translates`, `encapsulates`, ...): adding a mode is its
//! line there and its file here (a `Transmit`). `node` (to another cluster node) is the
//! same interface, used by the cluster stage.

mod encap;
pub(super) mod node;

pub(super) use encap::overhead;

use super::context::Segment;
use super::{PacketBuf, Verdict};
use crate::services::PortInfo;
use crate::wire::ethernet::{self, Mac};
use tandem_config::Mode;

/// Where a packet goes: out of `port` (described by `out`) to the next hop `next_mac`,
/// for the far end `addr`:`dport` (a backend, or another node's forwarding port).
pub(super) struct Egress<'a> {
    pub port: u8,
    pub out: &'a PortInfo,
    pub next_mac: Mac,
    pub addr: [u8; 16],
    /// The far end's address family.
    pub v6: bool,
    pub dport: u16,
}

/// A forwarding mode: what it does to the packet of `seg` in `pkt` so it reaches `to`.
/// Returns `Tx(to.port)` or why it cannot go.
pub(super) trait Transmit {
    fn transmit(&self, pkt: &mut PacketBuf, seg: &Segment, to: &Egress) -> Verdict;
}

/// Declares each mode's file and dispatches to it.
macro_rules! modes {
    ($($(#[doc = $doc:literal])* $v:ident => $name:literal => $m:ident :: $t:ident {
        $($props:tt)*
    },)*) => {
        $(pub(super) mod $m;)*

        /// The packet of a flow of a service in `mode`, to its backend.
        #[inline(always)]
        pub(super) fn to_backend(
            mode: Mode,
            pkt: &mut PacketBuf,
            seg: &Segment,
            to: &Egress,
        ) -> Verdict {
            match mode {
                $(Mode::$v => $m::$t.transmit(pkt, seg, to),)*
            }
        }
    };
}

tandem_config::for_each_mode!(modes);

/// Writes a fresh untagged Ethernet header in front of the L3 header at `l3` (stripping a
/// VLAN tag if there was one).
#[inline(always)]
pub(super) fn set_l2(pkt: &mut PacketBuf, l3: usize, dst: &Mac, src: &Mac, v6: bool) {
    let strip = l3 - ethernet::HEADER_LEN;
    pkt.start += strip;
    pkt.len -= strip;
    let t = if v6 {
        ethernet::ETHERTYPE_IPV6
    } else {
        ethernet::ETHERTYPE_IPV4
    };
    ethernet::write_header(pkt.frame_mut(), dst, src, t);
}

/// Turns the frame around: the sender becomes the destination, the port the source.
pub(super) fn swap_l2(f: &mut [u8], port_mac: &Mac) {
    ethernet::Frame::new_unchecked(f).reply_from(port_mac);
}

/// Entropy for the fabric's ECMP in an encapsulation's UDP source port: the flow's hash.
#[inline]
fn entropy_port(seg: &Segment) -> u16 {
    0xc000 | (seg.key.hash(crate::services::SELECTION_SEED) as u16 & 0x3fff)
}
