//! The plain lane: the burst's first try at a frame, for the frame most of a busy node's
//! traffic is: untagged Ethernet, IPv4 without options, a whole TCP or UDP segment to an
//! IPv4 service that does not encapsulate, of a flow the fast path serves (`fast`). It
//! reads the header words at their fixed offsets, hashes the 5-tuple as it lies in the
//! frame (`Tuple4`), looks the flow up once and rewrites in place: no `FlowKey`, no
//! `Segment`, no demultiplexing.
//!
//! It only ever says yes or "not mine": a frame it does not take (anything else, a new
//! flow, a record the full stage must see) goes the usual way from its first byte, and
//! what that does is what the node did before the lane was there. The checks below are
//! the ones the first look and the full stage make, in the lane's terms; the proptests in
//! `fast` run the same frames with the lane and without it.

use super::fast::{self, Plain4, Side, PLAIN_HEAD};
use super::{timing, PacketBuf, State, Verdict};
use crate::flow::table::Lookahead;
use crate::flow::{FlowState, Tuple4};
use crate::services::{Service, Services};
use crate::wire::l4::{self, FIN, PROTO_TCP, PROTO_UDP, RST, SYN};
use crate::wire::{checksum, ethernet};

/// What the lane read of a frame it may take.
#[derive(Clone, Copy)]
pub(super) struct Plain {
    /// The flow's key: the frame's own tuple for a request; for a nat reply, its client
    /// side to the service's VIP and port.
    t: Tuple4,
    /// A nat reply: the backend's address and port it comes from (its client side is
    /// the key's).
    reply: Option<([u8; 4], u16)>,
    /// Where its lookup starts (what the burst prefetches).
    pub(super) la: Lookahead,
    svc: u16,
    flags: u8,
    payload_len: u16,
}

// Offsets in an untagged frame with a 20-byte IPv4 header.
const ETHERTYPE: usize = 12;
const VER_IHL: usize = 14;
const TOTAL_LEN: usize = 16;
const FLAGS_FRAG: usize = 20;
const PROTO: usize = 23;
const ADDRS: usize = 26;
const L4: usize = 34;
/// The shortest frame the lane takes: a TCP header's 20 bytes after the IP header (a UDP
/// datagram shorter than that, unpadded, takes the usual way).
const MIN_FRAME: usize = L4 + 20;

#[inline(always)]
fn word(f: &[u8; MIN_FRAME], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

/// True when the frame is to `mac`: two word compares.
#[inline(always)]
fn to_mac(f: &[u8; MIN_FRAME], mac: &[u8; 6]) -> bool {
    let w = |m: &[u8]| {
        (
            u32::from_ne_bytes([m[0], m[1], m[2], m[3]]),
            u16::from_ne_bytes([m[4], m[5]]),
        )
    };
    w(&f[..6]) == w(mac)
}

impl State {
    /// A frame from `in_port` the lane may take, read: None sends it the usual way.
    #[inline(always)]
    pub(super) fn plain_look(&self, s: &Services, in_port: u8, frame: &[u8]) -> Option<Plain> {
        let f: &[u8; MIN_FRAME] = frame.get(..MIN_FRAME)?.try_into().ok()?;
        let port = s.ports.get(usize::from(in_port))?;
        // Untagged IPv4 to this port's MAC, no options, not a fragment.
        if !to_mac(f, &port.mac)
            || word(f, ETHERTYPE) != ethernet::ETHERTYPE_IPV4
            || f[VER_IHL] != 0x45
            || word(f, FLAGS_FRAG) & 0x3fff != 0
        {
            return None;
        }
        // The datagram the header states is all in the frame.
        let total = usize::from(word(f, TOTAL_LEN));
        let room = total.checked_sub(20)?;
        if frame.len() - ethernet::HEADER_LEN < total {
            return None;
        }
        let proto = f[PROTO];
        let (flags, payload_len) = match proto {
            PROTO_TCP => {
                let off = usize::from(f[L4 + 12] >> 4) * 4;
                if room < 20 || off < 20 || room < off {
                    return None;
                }
                (f[L4 + 13], room - off)
            }
            PROTO_UDP => {
                let len = usize::from(word(f, L4 + 4));
                if room < 8 || len < 8 || len > room {
                    return None;
                }
                (0, len - 8)
            }
            _ => return None,
        };
        let a = &f[ADDRS..ADDRS + 8];
        let t = Tuple4 {
            addrs: u64::from_le_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]),
            ports: u32::from(word(f, L4)) | u32::from(word(f, L4 + 2)) << 16,
            proto,
        };
        let dst = t.dst();
        // Not to the port's own address (the node's own traffic).
        if port.ipv4.is_some_and(|(a, _)| a == dst) {
            return None;
        }
        let (t, reply, svc) = match s.plain(dst, t.dport(), proto) {
            Some(svc) => (t, None, svc),
            None => {
                let svc = s.plain_reply(dst, t.src(), t.sport(), proto)?;
                let vip = [svc.vip[0], svc.vip[1], svc.vip[2], svc.vip[3]];
                let from = (t.src(), t.sport());
                (
                    Tuple4::new(dst, vip, t.dport(), svc.port, proto),
                    Some(from),
                    svc,
                )
            }
        };
        Some(Plain {
            t,
            reply,
            la: self.table.lookahead4(&t),
            svc: svc.id,
            flags,
            payload_len: payload_len.min(usize::from(u16::MAX)) as u16,
        })
    }

    /// The frame `p` was read from, sent on by the lane; None when the usual way must take
    /// it (nothing in the frame or the state changed then).
    #[inline(always)]
    pub(super) fn plain_run(
        &mut self,
        s: &Services,
        p: &Plain,
        pkt: &mut PacketBuf,
    ) -> Option<Verdict> {
        let svc = s.services.get(usize::from(p.svc))?;
        if !self.fast_path || (p.t.proto == PROTO_TCP && p.flags & (SYN | FIN | RST) != 0) {
            return None;
        }
        if let Some(from) = p.reply {
            return self.plain_reply(s, svc, p, from, pkt);
        }
        let head: &mut [u8; PLAIN_HEAD] = pkt.frame_mut().get_mut(..PLAIN_HEAD)?.try_into().ok()?;
        let now = self.now;
        let timeouts = *self.table.timeouts();
        let r = self.table.get_mut4(&p.t, p.la, now.ms)?;
        let b = fast::settled(r, s, now.ms, &timeouts, &self.membership, p.t.proto)?;
        let which = (b, r.primary_path);
        let ready = self
            .ready
            .get(s, &self.link_up, &self.neighbors, self.epoch, which)?;
        r.last_seen_ms = now.ms;
        if svc.mode.translates() {
            let ports = l4::Ports {
                src: p.t.sport(),
                dst: p.t.dport(),
                flags: p.flags,
                payload_len: p.payload_len,
            };
            timing::request(r, ports, now.us, &mut self.hist, s.options.qos_timeout_us);
            return Some(fast::plain_nat_v4(head, p.t.proto, ready, b.port));
        }
        ethernet::write_header(
            head,
            &ready.next_mac,
            &ready.out_mac,
            ethernet::ETHERTYPE_IPV4,
        );
        Some(Verdict::Tx(ready.port))
    }

    /// A nat reply by the lane: what `flows::backend_reply` does to a reply that changes no
    /// state of its flow (no SYN, FIN or RST; established or UDP; not due for its
    /// announcement), toward a client whose port is up. The checks come first: a reply
    /// that fails one takes the usual way with nothing changed.
    #[inline(always)]
    fn plain_reply(
        &mut self,
        s: &Services,
        svc: &Service,
        p: &Plain,
        (src, sport): ([u8; 4], u16),
        pkt: &mut PacketBuf,
    ) -> Option<Verdict> {
        let head: &mut [u8; PLAIN_HEAD] = pkt.frame_mut().get_mut(..PLAIN_HEAD)?.try_into().ok()?;
        let now = self.now;
        let timeouts = *self.table.timeouts();
        let r = self.table.get_mut4(&p.t, p.la, now.ms)?;
        let b = s.backends.get(usize::from(r.backend))?;
        if b.addr[..4] != src || b.addr[4..] != [0; 12] || b.port != sport {
            return None;
        }
        if !matches!(r.state, FlowState::Established | FlowState::Udp)
            || now.ms.wrapping_sub(r.last_sync_ms) >= timeouts.sync_interval(r.state)
        {
            return None;
        }
        let egress = r.ingress_port;
        let out = s.ports.get(usize::from(egress))?;
        if !self
            .link_up
            .get(usize::from(egress))
            .copied()
            .unwrap_or(false)
        {
            return None;
        }
        // What `touch`, `release_if_closed` and `timing::reply` do to such a record.
        r.last_seen_ms = now.ms;
        let ports = l4::Ports {
            src: sport,
            dst: p.t.sport(),
            flags: p.flags,
            payload_len: p.payload_len,
        };
        if timing::reply(r, ports, now.us, &mut self.hist, s.options.qos_timeout_us) {
            self.counters.passive_samples.inc();
        }
        let client_mac = r.client_mac;
        let mut client = [0u8; 16];
        client[..4].copy_from_slice(&p.t.src());
        let next_mac = self
            .resolve(egress, out, &client, false)
            .unwrap_or(client_mac);
        let vip = [svc.vip[0], svc.vip[1], svc.vip[2], svc.vip[3]];
        let to = Plain4 {
            side: Side::Src,
            addr: vip,
            addr_delta: checksum::delta_bytes(&src, &vip),
            port: svc.port,
        };
        Some(fast::plain_rewrite_v4(
            head,
            p.t.proto,
            &to,
            (&next_mac, &out.mac),
            egress,
        ))
    }
}
