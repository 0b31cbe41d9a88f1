//! A burst at a time, as DPDK's l3fwd and VPP's nodes work: a first pass over the burst
//! parses each frame once and hashes the key its flow-table lookup will use, so the port
//! layer can prefetch the table lines while the pass goes on; a second pass runs each frame
//! on from what the first found, looking up with that hash and rewriting in place; what
//! every frame counts is added once for the burst.
//!
//! The first look serves the common case only: a TCP or UDP segment from the wire, not a
//! fragment, not to the port's own address (the node's own traffic, probes, packets from
//! other nodes). There the full demultiplexing (`demux`) would do nothing but build the
//! same segment and hand it to the same stage. Every other frame (ARP, ICMP, fragments,
//! extension headers, malformed ones) takes the full path, which parses it afresh.

use super::context::{Part, Rx, Segment, Via};
use super::demux::{toward, Toward};
use super::plain::Plain;
use super::{Core, PacketBuf, State, Verdict};
use crate::flow::table::Lookahead;
use crate::services::Services;
use crate::wire::ethernet;
use crate::wire::ipv4;
use crate::wire::ipv6;
use crate::wire::l4::{self, PROTO_TCP, PROTO_UDP};

/// Most frames a burst holds (what the port layer reads at once).
pub const MAX_BURST: usize = 32;
/// How many frames ahead of the one parsed the first pass prefetches frame data.
const FRAMES_AHEAD: usize = 4;

/// What the first look found in a frame: the segment, its stage, and the hash of the key
/// that stage looks up in the flow table (the segment's own, or for a nat reply its flow's).
#[derive(Clone, Copy)]
pub(super) struct Look<'s> {
    seg: Segment,
    to: Toward<'s>,
    la: Option<Lookahead>,
}

impl State {
    /// The first look at a frame from `in_port`: Some for a TCP or UDP segment the full
    /// path would hand straight to its stage; None for anything else (see the module's
    /// doc), which the full path serves.
    #[inline(always)]
    pub(super) fn first_look<'s>(
        &self,
        s: &'s Services,
        in_port: u8,
        frame: &[u8],
    ) -> Option<Look<'s>> {
        let l2 = ethernet::parse(frame).ok()?;
        let port = s.ports.get(usize::from(in_port))?;
        if l2.dst != port.mac {
            return None;
        }
        let l3 = frame.get(l2.l3_offset..)?;
        let (ip_len, key, ports) = match l2.ethertype {
            ethernet::ETHERTYPE_IPV4 => {
                let ip = ipv4::Packet::new_checked(l3).ok()?;
                let proto = ip.protocol();
                let dst = ip.dst_bytes();
                if ip.is_fragment()
                    || (proto != PROTO_TCP && proto != PROTO_UDP)
                    || port.ipv4.is_some_and(|(a, _)| a == dst)
                {
                    return None;
                }
                let p = l4::parse(proto, ip.payload()).ok()?;
                let key = crate::flow::FlowKey::v4(ip.src_bytes(), dst, p.src, p.dst, proto);
                (ip.header_len(), key, p)
            }
            ethernet::ETHERTYPE_IPV6 => {
                let ip = ipv6::Packet::new_checked(l3).ok()?;
                let nh = ip.next_header();
                let dst = ip.dst_bytes();
                if (nh != PROTO_TCP && nh != PROTO_UDP) || port.ipv6.is_some_and(|(a, _)| a == dst)
                {
                    return None;
                }
                let p = l4::parse(nh, ip.payload()).ok()?;
                let key = crate::flow::FlowKey::v6(ip.src_bytes(), dst, p.src, p.dst, nh);
                (ipv6::HEADER_LEN, key, p)
            }
            _ => return None,
        };
        let to = toward(s, &key);
        let la = match &to {
            Toward::Service(_) => Some(self.table.lookahead(&key)),
            Toward::Reply(id) => {
                super::flows::reply_key(s, *id, &key).map(|fk| self.table.lookahead(&fk))
            }
            Toward::Replies(_) | Toward::Drop(_) => None,
        };
        let seg = Segment {
            rx: Rx {
                in_port,
                l2,
                via: Via::Direct,
            },
            ip_len,
            key,
            l4: ports,
            part: Part::Whole,
        };
        Some(Look { seg, to, la })
    }

    /// A frame from `in_port`, all the way: the plain lane's when it takes it, else on
    /// from its first look.
    #[inline(always)]
    pub(super) fn frame_in(&mut self, s: &Services, in_port: u8, pkt: &mut PacketBuf) -> Verdict {
        if let Some(p) = self.plain_look(s, in_port, pkt.frame()) {
            if let Some(v) = self.plain_run(s, &p, pkt) {
                return v;
            }
        }
        let look = self.first_look(s, in_port, pkt.frame());
        self.run(s, in_port, &look, pkt)
    }

    /// A frame on from its first look, or the full path when there was none.
    #[inline(always)]
    pub(super) fn run(
        &mut self,
        s: &Services,
        in_port: u8,
        look: &Option<Look>,
        pkt: &mut PacketBuf,
    ) -> Verdict {
        match look {
            Some(l) => match l.to {
                Toward::Service(svc) => self.serve(s, svc, &l.seg, l.la, pkt),
                to => self.segment_toward(s, &l.seg, to, l.la, pkt),
            },
            None => self.frame(s, in_port, pkt),
        }
    }
}

impl Core {
    /// Processes a burst of frames that arrived on `in_port`, each verdict in `verdicts`
    /// at the frame's index (see the module's doc). `prefetch` is the port layer's
    /// prefetch of one cache line (a hint: the address need not be valid memory); the
    /// core prefetches frames a few ahead of the one it parses and, once the table
    /// outgrows the cache (`prefetch_pays`), the table lines of every frame of the burst
    /// before it runs the first.
    pub fn process_burst(
        &mut self,
        in_port: u8,
        pkts: &mut [PacketBuf],
        verdicts: &mut [Verdict],
        prefetch: impl Fn(*const u8),
    ) {
        if self.state.trace.is_some() {
            // A trace is on: this burst's one test of it (see `crate::trace`).
            let n = pkts.len().min(verdicts.len()).min(MAX_BURST);
            self.traced_burst(in_port, &mut pkts[..n], verdicts);
        } else {
            self.untraced_burst(in_port, pkts, verdicts, prefetch);
        }
    }

    /// `process_burst` with no trace on: compiled on its own, so the trace's test costs the
    /// burst no more than itself.
    #[inline(never)]
    fn untraced_burst(
        &mut self,
        in_port: u8,
        pkts: &mut [PacketBuf],
        verdicts: &mut [Verdict],
        prefetch: impl Fn(*const u8),
    ) {
        let n = pkts.len().min(verdicts.len()).min(MAX_BURST);
        let pays = self.prefetch_pays();
        let s = &*self.services;
        let st = &mut self.state;
        for p in pkts.iter().take(n.min(FRAMES_AHEAD)) {
            prefetch(p.frame().as_ptr());
        }
        let mut sent = 0u64;
        let mut finish = |st: &mut State, i: usize, v: Verdict| {
            match v {
                Verdict::Tx(_) => sent += 1,
                v => st.count(v),
            }
            st.give_back_released();
            verdicts[i] = v;
        };
        if !pays {
            // The table is in cache: each frame runs on from its look at once.
            for i in 0..n {
                if let Some(p) = pkts.get(i + FRAMES_AHEAD) {
                    prefetch(p.buf.as_ptr().wrapping_add(p.start));
                }
                let v = st.frame_in(s, in_port, &mut pkts[i]);
                finish(st, i, v);
            }
        } else {
            // Past the cache: every frame's first bucket is prefetched as it is looked at;
            // then, those lines in cache, the entries they point at; then the frames run.
            let mut plains: [Option<Plain>; MAX_BURST] = [None; MAX_BURST];
            let mut looks: [Option<Look>; MAX_BURST] = [None; MAX_BURST];
            let mut ahead: [Option<Lookahead>; MAX_BURST] = [None; MAX_BURST];
            for i in 0..n {
                if let Some(p) = pkts.get(i + FRAMES_AHEAD) {
                    prefetch(p.buf.as_ptr().wrapping_add(p.start));
                }
                plains[i] = st.plain_look(s, in_port, pkts[i].frame());
                ahead[i] = match plains[i] {
                    Some(p) => Some(p.la),
                    None => {
                        looks[i] = st.first_look(s, in_port, pkts[i].frame());
                        looks[i].and_then(|l| l.la)
                    }
                };
                if let Some(la) = ahead[i] {
                    prefetch(st.table.tags_addr(la));
                }
            }
            for &la in ahead[..n].iter().flatten() {
                for line in st.table.entry_lines(la).into_iter().flatten() {
                    prefetch(line);
                }
            }
            for i in 0..n {
                if let Some(p) = plains[i] {
                    if let Some(v) = st.plain_run(s, &p, &mut pkts[i]) {
                        finish(st, i, v);
                        continue;
                    }
                    looks[i] = st.first_look(s, in_port, pkts[i].frame());
                }
                let v = st.run(s, in_port, &looks[i], &mut pkts[i]);
                finish(st, i, v);
            }
        }
        st.counters.sent.add(sent);
    }

    /// A burst while a trace is on: frame by frame, each the tracer wants between its two
    /// looks (`traced_frame`); no prefetching, as a traced node need not be fast. Kept out
    /// of line, so the untraced burst's code is as it was.
    #[cold]
    #[inline(never)]
    fn traced_burst(&mut self, in_port: u8, pkts: &mut [PacketBuf], verdicts: &mut [Verdict]) {
        let Some(mut t) = self.state.trace.take() else {
            return;
        };
        let s = &*self.services;
        let st = &mut self.state;
        for (pkt, out) in pkts.iter_mut().zip(verdicts.iter_mut()) {
            *out = st.traced_frame(&mut t, s, in_port, pkt);
        }
        st.trace = Some(t);
    }
}

#[cfg(test)]
mod tests {
    //! A burst must come out as the same frames run one at a time: every verdict, every
    //! byte sent, every counter and every record alike, whatever the mix and the cut.
    use super::super::tests::core;
    use super::super::Now;
    use super::*;
    use crate::counters::DropReason;
    use crate::testkit;
    use crate::wire::l4::{ACK, FIN, SYN};
    use proptest::prelude::*;
    use std::net::IpAddr;

    const FRONT: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const BACK: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const CLIENT: [u8; 6] = [2, 0, 0, 0, 0xc, 1];
    const A: [u8; 6] = [2, 0, 0, 0, 1, 0x11];

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Frame `kind` of client `c` (and the port it arrives on): the services of the shared
    /// test config, the backends' replies, and what takes the full path.
    fn frame(kind: u8, c: u16) -> (u8, Vec<u8>) {
        let sport = 40_000 + c;
        let flags = [SYN, ACK, ACK | FIN, 0x18][usize::from(c % 4)];
        let client = ip("198.51.100.7");
        let to = |mac, vip, flags, data: &[u8]| {
            testkit::tcp(mac, CLIENT, client, sport, ip(vip), 80, flags, data)
        };
        let from_a = |flags, data: &[u8]| {
            testkit::tcp(BACK, A, ip("10.1.0.11"), 8080, client, sport, flags, data)
        };
        match kind % 12 {
            0 => (0, to(FRONT, "192.0.2.10", SYN, b"")),
            1 => (0, to(FRONT, "192.0.2.10", flags, b"x")),
            2 => (1, from_a(SYN | ACK, b"")),
            3 => (1, from_a(flags, b"y")),
            4 => (0, to(FRONT, "192.0.2.20", flags, b"")),
            5 => (
                0,
                testkit::udp(FRONT, CLIENT, client, sport, ip("192.0.2.30"), 53, b"q"),
            ),
            6 => {
                let c6 = ip("2001:db8::7");
                (
                    0,
                    testkit::tcp(FRONT, CLIENT, c6, sport, ip("fd00::10"), 80, flags, b""),
                )
            }
            7 => {
                let (sender, target) = ("10.0.0.9".parse().unwrap(), "10.0.0.1".parse().unwrap());
                (0, testkit::arp_request(CLIENT, sender, target))
            }
            8 => (
                0,
                testkit::icmp_echo(FRONT, CLIENT, client, ip("192.0.2.10"), c, 1),
            ),
            9 => {
                let f = to(FRONT, "192.0.2.10", ACK, &[7; 64]);
                (
                    0,
                    testkit::fragment(&f, 32, u32::from(c)).swap_remove(usize::from(c % 2)),
                )
            }
            // For another MAC: not this node's.
            10 => (0, to([2, 9, 9, 9, 9, 9], "192.0.2.10", ACK, b"")),
            _ => (0, vec![0u8; usize::from(c % 40)]),
        }
    }

    fn counters(c: &Core) -> Vec<u64> {
        let k = &c.state.counters;
        let mut v = vec![
            k.sent.get(),
            k.flows_created.get(),
            k.total_drops(),
            k.replies(),
        ];
        v.extend(DropReason::ALL.iter().map(|&r| k.dropped(r)));
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn a_burst_is_its_frames_one_at_a_time(
            frames in proptest::collection::vec((0u8..12, 0u16..24), 1..120),
            cuts in proptest::collection::vec(1usize..=MAX_BURST, 1..40),
            traced in any::<bool>(),
        ) {
            let (mut one, mut burst) = (core(), core());
            // A trace on (of most of these frames) changes nothing a frame gets.
            if traced {
                let f = crate::trace::Filter::parse("host 198.51.100.7").unwrap();
                let left = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(40));
                let t = crate::trace::Tracer::new(1, f, left);
                burst.apply(crate::messages::ToWorker::Trace(Some(Box::new(t))));
            }
            let frames: Vec<(u8, Vec<u8>)> = frames.iter().map(|&(k, c)| frame(k, c)).collect();
            let mut expect = Vec::new();
            for (port, f) in &frames {
                expect.push(testkit::run(&mut one, *port, f, 5));
            }
            let mut got = Vec::new();
            let mut at = 0;
            let mut cut = cuts.iter().cycle();
            burst.set_now(Now::from_ms(5));
            while at < frames.len() {
                // A burst is of one port: cut where the port changes, too.
                let port = frames[at].0;
                let mut end = (at + cut.next().unwrap()).min(frames.len());
                end = at + frames[at..end].iter().take_while(|f| f.0 == port).count();
                let mut bufs: Vec<Vec<u8>> = frames[at..end]
                    .iter()
                    .map(|(_, f)| {
                        let mut b = vec![0u8; 2048];
                        b[128..128 + f.len()].copy_from_slice(f);
                        b
                    })
                    .collect();
                let mut pkts: Vec<PacketBuf> = bufs
                    .iter_mut()
                    .zip(&frames[at..end])
                    .map(|(b, (_, f))| PacketBuf { buf: b, start: 128, len: f.len(), handle: 0 })
                    .collect();
                let mut verdicts = vec![Verdict::Hold(0); pkts.len()];
                burst.process_burst(port, &mut pkts, &mut verdicts, |_| {});
                for (p, v) in pkts.iter().zip(verdicts) {
                    got.push((v, p.frame().to_vec()));
                }
                at = end;
            }
            prop_assert_eq!(&got, &expect);
            prop_assert_eq!(counters(&burst), counters(&one));
            prop_assert_eq!(burst.state.table.len(), one.state.table.len());
            if let Some(t) = &burst.state.trace {
                prop_assert_eq!(t.records().len() + t.missed as usize, frames.iter().filter(|(_, f)| {
                    crate::trace::Filter::parse("host 198.51.100.7").unwrap()
                        .matches(&crate::trace::Seen::of(f, None))
                }).count().min(40));
            }
        }
    }
}
