//! The node's own traffic: ARP and neighbor discovery (answered, and learned from), ICMP
//! echo to the node's addresses and VIPs, replies to its health probes; and the frames it
//! writes itself (ARP requests and neighbor solicitations, probes).

use super::context::Rx;
use super::demux::wire_drop;
use super::martian::is_martian;
use super::xmit::swap_l2;
use super::{Core, PacketBuf, State, Verdict, OUTBOX_CAP};
use crate::counters::{Absorbed, DropReason};
use crate::messages::FromWorker;
use crate::neighbor::{Heard, NeighborKey};
use crate::qos::hist::Kind;
use crate::qos::probe;
use crate::services::{PortInfo, Services};
use crate::wire::ethernet::{self, Mac};
use crate::wire::l4::{PROTO_ICMPV6, PROTO_TCP};
use crate::wire::{arp, icmp, ipv4, ipv6, scope};
use std::sync::Arc;

impl State {
    /// A MAC heard on the wire for a neighbor (an ARP sender, an advertisement's target, a
    /// solicitation's source): fills in or refreshes an entry the node holds, never
    /// creates one (`neighbor`); news goes to the control thread, which shares it.
    fn heard(&mut self, key: NeighborKey, mac: Mac) {
        if key.ip == [0; 16] || ethernet::is_multicast(&mac) {
            return;
        }
        match self.neighbors.heard(&key, mac, self.now.ms) {
            Heard::Report => {
                // The entry may have changed: ready egresses are made again (`fast`).
                self.epoch = self.epoch.wrapping_add(1);
                // Flow records come first: neighbor news takes no more than half the
                // outbox, and what is left out is reported on the next answer.
                if self.outbox.len() < OUTBOX_CAP / 2 {
                    self.outbox.push(FromWorker::Neighbor { key, mac });
                    self.neighbors.reported(&key, self.now.ms);
                } else {
                    self.counters.neighbor_reports_deferred.inc();
                }
            }
            Heard::Same => {}
            Heard::Unknown => self.counters.neighbors_unwanted.inc(),
            Heard::Fixed => self.counters.neighbors_fixed_kept.inc(),
        }
    }

    /// The MAC of the next hop toward `addr` out of `port`, asking the control thread to
    /// resolve it when unknown (at most once per millisecond per worker).
    pub(super) fn resolve(
        &mut self,
        port: u8,
        info: &PortInfo,
        addr: &[u8; 16],
        v6: bool,
    ) -> Option<Mac> {
        let hop = NeighborKey::new(port, v6, info.next_hop(addr, v6)?);
        if let Some(m) = self.neighbors.get(&hop) {
            return Some(m);
        }
        if self.last_need_ms != self.now.ms {
            self.last_need_ms = self.now.ms;
            self.emit(FromWorker::NeedNeighbor(hop));
        }
        None
    }

    pub(super) fn arp(&mut self, s: &Services, rx: &Rx, pkt: &mut PacketBuf) -> Verdict {
        let l2 = &rx.l2;
        let a = match arp::parse(&pkt.frame()[l2.l3_offset..]) {
            Ok(a) => a,
            Err(e) => return Verdict::Drop(wire_drop(e)),
        };
        let port = &s.ports[usize::from(rx.in_port)];
        let port_mac = port.mac;
        let sender = a.sender_ip.octets();
        let mut sender16 = [0u8; 16];
        sender16[..4].copy_from_slice(&sender);
        let on_link = port.on_link(&sender);
        let target = a.target_ip.octets();
        let mut target16 = [0u8; 16];
        target16[..4].copy_from_slice(&target);
        let to_port = port.ipv4.is_some_and(|(ip, _)| ip == target);
        let ours = to_port || s.is_vip(&target16);
        if on_link {
            self.heard(NeighborKey::new(rx.in_port, false, sender16), a.sender_mac);
        }
        if a.op == arp::OP_REQUEST && ours {
            if to_port {
                self.copy_to_kernel(s, rx.in_port, pkt.frame());
            }
            let reply = arp::Arp {
                op: arp::OP_REPLY,
                sender_mac: port_mac,
                sender_ip: a.target_ip,
                target_mac: a.sender_mac,
                target_ip: a.sender_ip,
            };
            let f = pkt.frame_mut();
            ethernet::Frame::new_unchecked(&mut *f).reply_from(&port_mac);
            reply.emit(&mut f[l2.l3_offset..]);
            self.counters.arp_replies.inc();
            return Verdict::Tx(rx.in_port);
        }
        if on_link && port.kernel {
            self.for_kernel(true)
        } else if on_link {
            Verdict::Consumed(Absorbed::Arp)
        } else {
            Verdict::Drop(DropReason::NotForUs)
        }
    }

    /// A reply to one of this node's health probes: recorded, reported to the control
    /// thread, and a SYN-ACK answered with the reset that closes the half-open connection.
    pub(super) fn probe_reply(
        &mut self,
        s: &Services,
        rx: &Rx,
        pkt: &mut PacketBuf,
        l4_at: usize,
        proto: u8,
        r: probe::Reply,
    ) -> Verdict {
        let v6 = rx.l2.ethertype == ethernet::ETHERTYPE_IPV6;
        let Some(&(backend, path)) = s.series.get(usize::from(r.series)) else {
            return Verdict::Drop(DropReason::NotForUs);
        };
        let b = &s.backends[usize::from(backend)];
        if b.addr != r.from || b.v6 != v6 {
            return Verdict::Drop(DropReason::NotForUs);
        }
        self.counters.probe_replies.inc();
        match r.outcome {
            probe::Outcome::Answered(us) => {
                self.hist.record(backend, path, Kind::Probe, u64::from(us))
            }
            probe::Outcome::Refused => {
                self.hist
                    .record_reset(backend, path, Kind::Probe, s.options.probe_timeout_us)
            }
        }
        self.emit(FromWorker::Probe {
            backend,
            path,
            round: r.round,
            outcome: r.outcome,
        });
        if proto == PROTO_TCP && matches!(r.outcome, probe::Outcome::Answered(_)) {
            let mac = s.ports[usize::from(rx.in_port)].mac;
            let room = pkt.buf.len() - pkt.start;
            let f = &mut pkt.buf[pkt.start..pkt.start + room];
            pkt.len = probe::synack_to_rst(f, rx.l3(), l4_at, v6, &mac);
            self.counters.probe_resets.inc();
            return Verdict::Tx(rx.in_port);
        }
        Verdict::Consumed(Absorbed::ProbeReply)
    }

    pub(super) fn icmp4_echo(
        &mut self,
        s: &Services,
        rx: &Rx,
        pkt: &mut PacketBuf,
        hl: usize,
    ) -> Verdict {
        let l3 = rx.l3();
        let port_mac = s.ports[usize::from(rx.in_port)].mac;
        let f = pkt.frame_mut();
        // Checked by the IPv4 stage.
        let (total, dst, src) = {
            let ip = ipv4::Packet::new_unchecked(&f[l3..]);
            (ip.total_len(), ip.dst_bytes(), ip.src_bytes())
        };
        let mut src16 = [0u8; 16];
        src16[..4].copy_from_slice(&src);
        if is_martian(s, &src16, false) {
            return Verdict::Drop(DropReason::MartianSource);
        }
        let body = &mut f[l3 + hl..l3 + total];
        match icmp::message_type(body) {
            Ok(icmp::ECHO_REQUEST) => {}
            Ok(_) => {
                let mut dst16 = [0u8; 16];
                dst16[..4].copy_from_slice(&dst);
                return self.unclaimed(s, rx, pkt.frame(), &dst16, false);
            }
            Err(e) => return Verdict::Drop(wire_drop(e)),
        }
        icmp::echo_to_reply_v4(body);
        let mut ip = ipv4::Packet::new_unchecked(&mut f[l3..]);
        ip.swap_addresses();
        ip.set_ttl(64);
        // From scratch: a request whose header sum was wrong gets a reply whose sum is right.
        ipv4::fill_checksum(&mut f[l3..]);
        swap_l2(f, &port_mac);
        self.counters.icmp_replies.inc();
        Verdict::Tx(rx.in_port)
    }

    /// An ICMPv6 message at `at` (from the IP header: after any extension headers) that is
    /// not an error: echo requests to the node and its VIPs, neighbor discovery.
    pub(super) fn icmp6(
        &mut self,
        s: &Services,
        rx: &Rx,
        pkt: &mut PacketBuf,
        at: usize,
    ) -> Verdict {
        let m = {
            let l3 = rx.l3();
            let ip = ipv6::Packet::new_unchecked(&pkt.frame()[l3..]);
            Icmp6 {
                src: ip.src_bytes(),
                dst: ip.dst_bytes(),
                hop_limit: ip.hop_limit(),
                l3,
                body: l3 + at..l3 + ipv6::HEADER_LEN + ip.payload_len(),
            }
        };
        let kind = match icmp::message_type(&pkt.frame()[m.body.clone()]) {
            Ok(k) => k,
            Err(e) => return Verdict::Drop(wire_drop(e)),
        };
        match kind {
            icmp::V6_ECHO_REQUEST if ours6(s, rx.in_port, &m.dst) => {
                if is_martian(s, &m.src, true) {
                    return Verdict::Drop(DropReason::MartianSource);
                }
                let port = &s.ports[usize::from(rx.in_port)];
                let f = pkt.frame_mut();
                icmp::echo_to_reply_v6(&mut f[m.body.clone()]);
                let mut ip = ipv6::Packet::new_unchecked(&mut f[m.l3..]);
                ip.set_src(m.dst);
                ip.set_dst(m.src);
                ip.set_hop_limit(64);
                swap_l2(f, &port.mac);
                self.counters.icmp_replies.inc();
                Verdict::Tx(rx.in_port)
            }
            icmp::V6_ROUTER_SOLICIT..=icmp::V6_REDIRECT => self.nd(s, rx, pkt, &m, kind),
            _ => self.unclaimed(s, rx, pkt.frame(), &m.dst, true),
        }
    }

    /// Neighbor discovery (RS, RA, NS, NA, redirect): checked to come from the link; an NA
    /// or NS teaches its sender's MAC to an entry that exists; an NS for one of our
    /// addresses is answered.
    fn nd(&mut self, s: &Services, rx: &Rx, pkt: &mut PacketBuf, m: &Icmp6, kind: u8) -> Verdict {
        let in_port = rx.in_port;
        let port = &s.ports[usize::from(in_port)];
        // RFC 4861: a router forwarding a message lowers its hop limit, so 255 says it was
        // sent on this link; and its sender must be on the link.
        if m.hop_limit != 255 {
            return Verdict::Drop(DropReason::NdHopLimit);
        }
        let on_link = |a: &[u8; 16]| port.on_the_link(a, true);
        let source_ok = match kind {
            icmp::V6_ROUTER_SOLICIT | icmp::V6_NEIGHBOR_SOLICIT => {
                m.src == [0; 16] || on_link(&m.src)
            }
            icmp::V6_NEIGHBOR_ADVERT => on_link(&m.src),
            _ => scope::v6_link_local(&m.src),
        };
        if !source_ok {
            return Verdict::Drop(DropReason::NdOffLink);
        }
        if kind != icmp::V6_NEIGHBOR_SOLICIT && kind != icmp::V6_NEIGHBOR_ADVERT {
            return self.unclaimed(s, rx, pkt.frame(), &m.dst, true);
        }
        let nd = match icmp::parse_nd(&pkt.frame()[m.body.clone()]) {
            Ok(n) => n,
            Err(e) => return Verdict::Drop(wire_drop(e)),
        };
        if kind == icmp::V6_NEIGHBOR_ADVERT {
            if !on_link(&nd.target) || scope::v6_multicast(&nd.target) {
                return Verdict::Drop(DropReason::NdOffLink);
            }
            if let Some(mac) = nd.lladdr {
                self.heard(NeighborKey::new(in_port, true, nd.target), mac);
            }
            if port.kernel {
                return self.for_kernel(true);
            }
            return Verdict::Consumed(Absorbed::NeighborAdvert);
        }
        if let Some(mac) = nd.lladdr {
            if m.src != [0; 16] {
                self.heard(NeighborKey::new(in_port, true, m.src), mac);
            }
        }
        if !ours6(s, in_port, &nd.target) {
            return self.unclaimed(s, rx, pkt.frame(), &m.dst, true);
        }
        if port.ipv6.is_some_and(|(x, _)| x == nd.target) {
            self.copy_to_kernel(s, in_port, pkt.frame());
        }
        self.advertise(s, in_port, pkt, m, &nd.target)
    }

    /// Turns the neighbor solicitation `m` for `target` into our advertisement, sent back
    /// to its sender (to all nodes when it came from the unspecified address).
    fn advertise(
        &mut self,
        s: &Services,
        in_port: u8,
        pkt: &mut PacketBuf,
        m: &Icmp6,
        target: &[u8; 16],
    ) -> Verdict {
        let port = &s.ports[usize::from(in_port)];
        let reply_dst = if m.src == [0; 16] {
            let mut all = [0u8; 16];
            all[0] = 0xff;
            all[1] = 0x02;
            all[15] = 1;
            all
        } else {
            m.src
        };
        let need = m.l3 + ipv6::HEADER_LEN + icmp::ND_LEN;
        if pkt.start + need > pkt.buf.len() {
            return Verdict::Drop(DropReason::NoHeadroom);
        }
        pkt.len = need;
        let f = pkt.frame_mut();
        swap_l2(f, &port.mac);
        ipv6::emit(
            &mut f[m.l3..],
            *target,
            reply_dst,
            PROTO_ICMPV6,
            icmp::ND_LEN,
            255,
        );
        // A fresh header, without the request's extension headers.
        let nd_at = m.l3 + ipv6::HEADER_LEN;
        let b = &mut f[nd_at..nd_at + icmp::ND_LEN];
        icmp::emit_nd(b, icmp::V6_NEIGHBOR_ADVERT, target, &port.mac);
        icmp::fill_checksum_v6(target, &reply_dst, b);
        self.counters.nd_replies.inc();
        Verdict::Tx(in_port)
    }
}

/// An ICMPv6 message as `icmp6` read it: the IPv6 header's addresses and hop limit, where
/// that header starts, and the message's bytes (after any extension headers).
struct Icmp6 {
    src: [u8; 16],
    dst: [u8; 16],
    hop_limit: u8,
    l3: usize,
    body: std::ops::Range<usize>,
}

/// Whether `a` is the address of port `in_port` or a VIP: what the node answers for.
fn ours6(s: &Services, in_port: u8, a: &[u8; 16]) -> bool {
    s.ports[usize::from(in_port)]
        .ipv6
        .is_some_and(|(x, _)| x == *a)
        || s.is_vip(a)
}

impl Core {
    /// Writes a health probe for (backend, path) into `buf`: returns the port to send it on
    /// and its length, or None when it cannot go (no address of the backend's family on the
    /// port, the next hop not resolved yet, or no such series).
    pub fn build_probe(
        &mut self,
        backend: u16,
        path: u8,
        round: u8,
        method: probe::Method,
        buf: &mut [u8],
    ) -> Option<(u8, usize)> {
        let s = Arc::clone(&self.services);
        let b = s.backends.get(usize::from(backend))?;
        let p = *b.paths.get(usize::from(path))?;
        let series = b.series.checked_add(u16::from(path))?;
        if usize::from(series) >= probe::MAX_SERIES {
            return None;
        }
        let out = s.ports.get(usize::from(p.port))?;
        let src = if b.v6 {
            out.ipv6?.0
        } else {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&out.ipv4?.0);
            a
        };
        let dst_mac = match p.mac {
            Some(m) => m,
            None => self.state.resolve(p.port, out, &b.addr, b.v6)?,
        };
        let pr = probe::Probe {
            method,
            src_mac: out.mac,
            dst_mac,
            src,
            dst: b.addr,
            v6: b.v6,
            series,
            dport: b.port,
            round,
        };
        let len = probe::write(buf, &pr, self.state.now.us)?;
        self.state.counters.probes_sent.inc();
        Some((p.port, len))
    }

    /// Writes an ARP request or neighbor solicitation for `ip` out of `port` into `buf`;
    /// returns its length, or None when the port has no address of that family.
    pub fn build_solicit(
        &self,
        port: u8,
        ip: &[u8; 16],
        v6: bool,
        buf: &mut [u8],
    ) -> Option<usize> {
        let info = self.services.ports.get(usize::from(port))?;
        if v6 {
            let (src, _) = info.ipv6?;
            let len = ethernet::HEADER_LEN + ipv6::HEADER_LEN + icmp::ND_LEN;
            if buf.len() < len {
                return None;
            }
            let mut dst = [0u8; 16];
            dst[0] = 0xff;
            dst[1] = 0x02;
            dst[11] = 1;
            dst[12] = 0xff;
            dst[13..].copy_from_slice(&ip[13..]);
            let mac = [0x33, 0x33, dst[12], dst[13], dst[14], dst[15]];
            ethernet::write_header(buf, &mac, &info.mac, ethernet::ETHERTYPE_IPV6);
            ipv6::emit(&mut buf[14..], src, dst, PROTO_ICMPV6, icmp::ND_LEN, 255);
            let b = &mut buf[54..54 + icmp::ND_LEN];
            icmp::emit_nd(b, icmp::V6_NEIGHBOR_SOLICIT, ip, &info.mac);
            icmp::fill_checksum_v6(&src, &dst, b);
            Some(len)
        } else {
            let (src, _) = info.ipv4?;
            let len = 60; // 42 bytes padded to the Ethernet minimum
            if buf.len() < len {
                return None;
            }
            buf[..len].fill(0);
            ethernet::write_header(
                buf,
                &ethernet::BROADCAST,
                &info.mac,
                ethernet::ETHERTYPE_ARP,
            );
            let a = arp::Arp {
                op: arp::OP_REQUEST,
                sender_mac: info.mac,
                sender_ip: src.into(),
                target_mac: [0; 6],
                target_ip: [ip[0], ip[1], ip[2], ip[3]].into(),
            };
            arp::emit(&mut buf[14..], &a);
            Some(len)
        }
    }
}
