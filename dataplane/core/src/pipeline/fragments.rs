//! Fragments: every fragment of a datagram goes where its flow's packets go. The first
//! fragment carries the transport header, so it is served as any packet of its flow (and
//! binds a new one), and its ports are kept in the worker's fragment table
//! (`flow::fragments`) under the datagram's (source, destination, protocol, identification).
//! A later fragment takes the ports from there and is served as a packet of that flow with
//! nothing after its IP header touched (nat rewrites only its addresses: the first
//! fragment's transport checksum covers the whole datagram). A later fragment that comes
//! before its first is parked, as an early nat reply is (`parking`): bounded in number and
//! time, retried when its first fragment arrives, dropped as `fragment_timeout` otherwise.
//!
//! With several workers, every fragment of a datagram reaches the same one: NICs hash
//! fragments by their addresses alone (they cannot see the ports of the later ones), and so
//! do the first fragments.

use super::context::{Part, Rx, Segment};
use super::{PacketBuf, State, Verdict, Wait};
use crate::counters::DropReason;
use crate::flow::fragments::{FragmentKey, Put};
use crate::flow::FlowKey;
use crate::parking;
use crate::services::Services;
use crate::wire::l4::{self, PROTO_TCP, PROTO_UDP};

/// What the IP stage read of a fragment.
pub(super) struct Datagram {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub proto: u8,
    pub ident: u32,
    /// Where this fragment's data starts in the datagram, in bytes.
    pub offset: usize,
    /// Offset of this fragment's data from the IP header (after its extension headers).
    pub l4_at: usize,
    /// Where the IP packet ends, from the IP header.
    pub end: usize,
    pub v6: bool,
    /// Addressed to the receiving port itself.
    pub to_port: bool,
}

/// The longest datagram fragments may make: IPv4's total length field (IPv6's payload
/// length is as wide, jumbograms aside, which are never fragmented).
const MAX_DATAGRAM: usize = 65_535;

/// Most first fragments noted between two looks of the port layer (`Core::take_arrivals`):
/// a burst and the parked frames retried in a loop.
pub(super) const MAX_ARRIVALS: usize = 128;

/// First fragments that came since the port layer last looked, by parking hint, so the
/// later fragments parked before them are retried.
pub(super) struct Arrivals {
    hints: [u16; MAX_ARRIVALS],
    n: usize,
}

impl Default for Arrivals {
    fn default() -> Self {
        Arrivals {
            hints: [0; MAX_ARRIVALS],
            n: 0,
        }
    }
}

impl Arrivals {
    fn note(&mut self, hint: u16) {
        if self.n < MAX_ARRIVALS {
            self.hints[self.n] = hint;
            self.n += 1;
        }
    }

    pub(super) fn take(&mut self, mut f: impl FnMut(u16)) {
        for &h in &self.hints[..self.n] {
            f(h);
        }
        self.n = 0;
    }
}

/// The hint a parked fragment waits under: its datagram's source, identification and
/// protocol.
fn hint(d: &Datagram) -> u16 {
    parking::hint(&d.src, (d.ident ^ d.ident >> 16) as u16, d.proto)
}

impl State {
    /// A fragment of an IPv4 or IPv6 datagram.
    #[cold]
    #[inline(never)]
    pub(super) fn fragment(
        &mut self,
        s: &Services,
        rx: &Rx,
        pkt: &mut PacketBuf,
        d: &Datagram,
    ) -> Verdict {
        if d.to_port || (d.proto != PROTO_TCP && d.proto != PROTO_UDP) {
            return Verdict::Drop(DropReason::FragmentUnsupported);
        }
        // No datagram is longer than 65,535 bytes (a "ping of death" fragment says it is).
        if d.offset + d.end.saturating_sub(d.l4_at) > MAX_DATAGRAM {
            return Verdict::Drop(DropReason::FragmentOversize);
        }
        let key = FragmentKey::new(d.src, d.dst, d.proto, d.ident, d.v6);
        let now_ms = self.now.ms;
        let (ports, part) = if d.offset == 0 {
            let l3 = rx.l3();
            let data = &pkt.frame()[l3 + d.l4_at..l3 + d.end];
            let Ok(p) = l4::parse_first_fragment(d.proto, data) else {
                return Verdict::Drop(DropReason::FragmentTiny);
            };
            if self.fragments.insert(key, p.src, p.dst, now_ms) == Put::Evicted {
                self.counters.fragments_evicted.inc();
            }
            self.arrivals.note(hint(d));
            (p, Part::First)
        } else {
            // Data that starts inside the TCP header would rewrite what the first
            // fragment's header said (its flags, say) after the balancer read it.
            if d.proto == PROTO_TCP && d.offset < l4::TCP_MIN_LEN {
                return Verdict::Drop(DropReason::FragmentOverlap);
            }
            let Some((sport, dport)) = self.fragments.get(&key, now_ms) else {
                if !self.again {
                    self.counters.fragments_early.inc();
                }
                return Verdict::Defer(Wait {
                    lot: parking::Lot::Fragments,
                    hint: hint(d),
                    expired: DropReason::FragmentTimeout,
                });
            };
            let p = l4::Ports {
                src: sport,
                dst: dport,
                flags: 0,
                payload_len: 0,
            };
            (p, Part::Later)
        };
        let seg = Segment {
            rx: *rx,
            ip_len: d.l4_at,
            key: FlowKey {
                src: d.src,
                dst: d.dst,
                sport: ports.src,
                dport: ports.dst,
                proto: d.proto,
                v6: d.v6,
            },
            l4: ports,
            part,
        };
        let v = self.segment(s, &seg, pkt);
        if let Verdict::Tx(_) = v {
            match part {
                Part::Later => self.counters.fragments_later.inc(),
                _ => self.counters.fragments_first.inc(),
            }
        }
        v
    }
}
