//! Active health probes as bytes: a TCP SYN to the backend's port (the SYN-ACK's round trip,
//! then a reset so the backend keeps no half-open connection) or an ICMP echo, sent out of
//! one path's port from the node's own address on it.
//!
//! A probe carries everything needed to score its reply on whichever worker receives it:
//! the (backend, path) series in the TCP source port or the echo sequence number, and the
//! probe's round and send time in the TCP sequence number or the echo payload. Workers share
//! one clock (the TSC since the node started), so the round trip is `now - sent`.

use crate::wire::ethernet::{self, Mac};
use crate::wire::l4::{self, ACK, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, RST, SYN};
use crate::wire::{checksum, get_u16, ipv4, ipv6, set_u16};

/// TCP probes leave from port `PORT_BASE + series`.
pub const PORT_BASE: u16 = 61440;
/// Most (backend, path) series that can be probed.
pub const MAX_SERIES: usize = 4096;
/// Identifier of tandem's echo probes.
pub const ECHO_ID: u16 = 0x7464;
/// Round trips are measured modulo 2^24 microseconds (16.7 s, well above any timeout).
const STAMP_MASK: u32 = 0x00ff_ffff;
const TCP_PROBE_LEN: usize = 24; // header with an MSS option
const ECHO_LEN: usize = 8 + 4;
const MIN_FRAME: usize = 60;

/// How a probe goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Tcp,
    Icmp,
}

/// One probe to send.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub method: Method,
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub v6: bool,
    pub series: u16,
    /// The backend's port (TCP probes).
    pub dport: u16,
    pub round: u8,
}

/// What came back for a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered in this many microseconds.
    Answered(u32),
    /// The backend refused (a TCP reset: nothing listens on the port).
    Refused,
}

/// A probe reply recognised in a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub series: u16,
    pub round: u8,
    pub outcome: Outcome,
    /// The address that answered (checked against the series' backend by the caller).
    pub from: [u8; 16],
}

/// The stamp a probe carries: its round in the top byte, the send time below.
#[inline]
pub fn stamp(round: u8, now_us: u64) -> u32 {
    (u32::from(round) << 24) | (now_us as u32 & STAMP_MASK)
}

/// The round and round trip of a returned stamp.
#[inline]
pub fn elapsed(stamp: u32, now_us: u64) -> (u8, u32) {
    let rtt = (now_us as u32).wrapping_sub(stamp) & STAMP_MASK;
    ((stamp >> 24) as u8, rtt)
}

/// Writes the probe frame into `buf`; returns its length, or None when `buf` is too small.
pub fn write(buf: &mut [u8], p: &Probe, now_us: u64) -> Option<usize> {
    let ip_len = if p.v6 {
        ipv6::HEADER_LEN
    } else {
        ipv4::MIN_HEADER_LEN
    };
    let (proto, body_len) = match (p.method, p.v6) {
        (Method::Tcp, _) => (PROTO_TCP, TCP_PROBE_LEN),
        (Method::Icmp, false) => (PROTO_ICMP, ECHO_LEN),
        (Method::Icmp, true) => (PROTO_ICMPV6, ECHO_LEN),
    };
    let len = ethernet::HEADER_LEN + ip_len + body_len;
    let frame_len = len.max(MIN_FRAME);
    if buf.len() < frame_len {
        return None;
    }
    buf[..frame_len].fill(0);
    let ethertype = if p.v6 {
        ethernet::ETHERTYPE_IPV6
    } else {
        ethernet::ETHERTYPE_IPV4
    };
    ethernet::write_header(buf, &p.dst_mac, &p.src_mac, ethertype);
    let l3 = ethernet::HEADER_LEN;
    if p.v6 {
        ipv6::emit(&mut buf[l3..], p.src, p.dst, proto, body_len, 64);
    } else {
        let (s, d) = (v4(&p.src), v4(&p.dst));
        ipv4::emit(&mut buf[l3..], s, d, proto, body_len, 64);
    }
    let b = &mut buf[l3 + ip_len..len];
    let st = stamp(p.round, now_us);
    match p.method {
        Method::Tcp => {
            set_u16(b, 0, PORT_BASE + p.series);
            set_u16(b, 2, p.dport);
            b[4..8].copy_from_slice(&st.to_be_bytes());
            b[12] = ((TCP_PROBE_LEN / 4) as u8) << 4;
            b[13] = SYN;
            set_u16(b, 14, 64240);
            // MSS option: kind 2, length 4.
            b[20..24].copy_from_slice(&[2, 4, 0x05, 0xb4]);
            fill_l4(PROTO_TCP, p, b);
        }
        Method::Icmp => {
            b[0] = if p.v6 { 128 } else { 8 };
            set_u16(b, 4, ECHO_ID);
            set_u16(b, 6, p.series);
            b[8..12].copy_from_slice(&st.to_be_bytes());
            if p.v6 {
                fill_l4(PROTO_ICMPV6, p, b);
            } else {
                set_u16(b, 2, 0);
                let c = checksum::checksum(b);
                set_u16(b, 2, c);
            }
        }
    }
    Some(frame_len)
}

fn v4(a: &[u8; 16]) -> [u8; 4] {
    [a[0], a[1], a[2], a[3]]
}

fn fill_l4(proto: u8, p: &Probe, b: &mut [u8]) {
    if p.v6 {
        icmp_or_l4_checksum(proto, &p.src, &p.dst, b);
    } else {
        icmp_or_l4_checksum(proto, &p.src[..4], &p.dst[..4], b);
    }
}

fn icmp_or_l4_checksum(proto: u8, src: &[u8], dst: &[u8], b: &mut [u8]) {
    let at = if proto == PROTO_TCP { 16 } else { 2 };
    set_u16(b, at, 0);
    let sum = checksum::pseudo_header_sum(src, dst, proto, b.len() as u32);
    let c = !checksum::fold(checksum::sum_words(sum, b));
    set_u16(b, at, c);
}

/// Recognises a reply to a TCP probe: a SYN-ACK or a reset to one of the probe ports.
/// `l4` is the TCP header and payload, `src` the sender's address.
pub fn tcp_reply(l4b: &[u8], src: [u8; 16], now_us: u64) -> Option<Reply> {
    let ports = l4::parse(PROTO_TCP, l4b).ok()?;
    let series = ports.dst.checked_sub(PORT_BASE)?;
    if usize::from(series) >= MAX_SERIES || l4b.len() < 12 {
        return None;
    }
    let ack = u32::from_be_bytes([l4b[8], l4b[9], l4b[10], l4b[11]]);
    if ports.flags & ACK == 0 {
        return None;
    }
    let (round, rtt) = elapsed(ack.wrapping_sub(1), now_us);
    let outcome = if ports.flags & RST != 0 {
        Outcome::Refused
    } else if ports.flags & SYN != 0 {
        Outcome::Answered(rtt)
    } else {
        return None;
    };
    Some(Reply {
        series,
        round,
        outcome,
        from: src,
    })
}

/// Recognises an echo reply to one of our probes (`b`: the ICMP or ICMPv6 message).
pub fn echo_reply(b: &[u8], v6: bool, src: [u8; 16], now_us: u64) -> Option<Reply> {
    if b.len() < ECHO_LEN {
        return None;
    }
    let reply_type = if v6 { 129 } else { 0 };
    if b[0] != reply_type || get_u16(b, 4) != ECHO_ID {
        return None;
    }
    let series = get_u16(b, 6);
    if usize::from(series) >= MAX_SERIES {
        return None;
    }
    let st = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
    let (round, rtt) = elapsed(st, now_us);
    Some(Reply {
        series,
        round,
        outcome: Outcome::Answered(rtt),
        from: src,
    })
}

/// Turns a probe's SYN-ACK (an IP packet at `l3` in `frame`, TCP at `l4_at`) into the reset
/// that closes the half-open connection, in place, addressed back to its sender. Returns
/// the new frame length.
pub fn synack_to_rst(frame: &mut [u8], l3: usize, l4_at: usize, v6: bool, port_mac: &Mac) -> usize {
    let mut src_mac = [0u8; 6];
    src_mac.copy_from_slice(&frame[6..12]);
    let (sport, dport) = (get_u16(&frame[l4_at..], 0), get_u16(&frame[l4_at..], 2));
    let ack = [
        frame[l4_at + 8],
        frame[l4_at + 9],
        frame[l4_at + 10],
        frame[l4_at + 11],
    ];
    let (src, dst) = if v6 {
        let ip = ipv6::Packet::new_unchecked(&frame[l3..]);
        (ip.src_bytes(), ip.dst_bytes())
    } else {
        let ip = ipv4::Packet::new_unchecked(&frame[l3..]);
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s[..4].copy_from_slice(&ip.src_bytes());
        d[..4].copy_from_slice(&ip.dst_bytes());
        (s, d)
    };
    // Ethernet header at the front of the frame; the IP packet follows it directly (a VLAN
    // tag, if there was one, is dropped with the old header).
    let ethertype = if v6 {
        ethernet::ETHERTYPE_IPV6
    } else {
        ethernet::ETHERTYPE_IPV4
    };
    ethernet::write_header(frame, &src_mac, port_mac, ethertype);
    let l3 = ethernet::HEADER_LEN;
    let ip_len = if v6 {
        ipv6::emit(&mut frame[l3..], dst, src, PROTO_TCP, l4::TCP_MIN_LEN, 64);
        ipv6::HEADER_LEN
    } else {
        ipv4::emit(
            &mut frame[l3..],
            v4(&dst),
            v4(&src),
            PROTO_TCP,
            l4::TCP_MIN_LEN,
            64,
        );
        ipv4::MIN_HEADER_LEN
    };
    let t = l3 + ip_len;
    let b = &mut frame[t..t + l4::TCP_MIN_LEN];
    b.fill(0);
    set_u16(b, 0, dport);
    set_u16(b, 2, sport);
    b[4..8].copy_from_slice(&ack);
    b[12] = 5 << 4;
    b[13] = RST;
    if v6 {
        icmp_or_l4_checksum(PROTO_TCP, &dst, &src, b);
    } else {
        icmp_or_l4_checksum(PROTO_TCP, &dst[..4], &src[..4], b);
    }
    let len = t + l4::TCP_MIN_LEN;
    if frame.len() >= MIN_FRAME && len < MIN_FRAME {
        frame[len..MIN_FRAME].fill(0);
        return MIN_FRAME;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;

    fn probe(method: Method, v6: bool) -> Probe {
        let (src, dst) = if v6 {
            (
                "fd01::1".parse::<std::net::Ipv6Addr>().unwrap().octets(),
                "fd01::11".parse::<std::net::Ipv6Addr>().unwrap().octets(),
            )
        } else {
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s[..4].copy_from_slice(&[10, 1, 0, 1]);
            d[..4].copy_from_slice(&[10, 1, 0, 11]);
            (s, d)
        };
        Probe {
            method,
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: [2, 0, 0, 0, 1, 0x11],
            src,
            dst,
            v6,
            series: 7,
            dport: 8080,
            round: 200,
        }
    }

    #[test]
    fn stamps_survive_the_round_trip_and_wrap() {
        let (r, rtt) = elapsed(stamp(9, 1_000_000), 1_000_250);
        assert_eq!((r, rtt), (9, 250));
        // The clock's low 24 bits wrapping between send and reply.
        let sent = (1u64 << 24) - 10;
        let (r, rtt) = elapsed(stamp(255, sent), sent + 30);
        assert_eq!((r, rtt), (255, 30));
    }

    #[test]
    fn syn_probes_are_valid_and_their_synack_becomes_a_reset() {
        for v6 in [false, true] {
            let p = probe(Method::Tcp, v6);
            let mut buf = [0u8; 128];
            let n = write(&mut buf, &p, 5_000).unwrap();
            testkit::verify_checksums(&buf[..n]).unwrap();
            // The backend's kernel answers SYN-ACK with ack = seq + 1.
            let l3 = 14;
            let ipl = if v6 { 40 } else { 20 };
            let seq = u32::from_be_bytes(buf[l3 + ipl + 4..l3 + ipl + 8].try_into().unwrap());
            let from = std::net::IpAddr::from(if v6 {
                p.dst
            } else {
                let mut a = [0u8; 16];
                a[..4].copy_from_slice(&p.dst[..4]);
                a
            });
            let from = match from {
                std::net::IpAddr::V6(a) if !v6 => std::net::IpAddr::V4(std::net::Ipv4Addr::new(
                    a.octets()[0],
                    a.octets()[1],
                    a.octets()[2],
                    a.octets()[3],
                )),
                x => x,
            };
            let to = if v6 {
                std::net::IpAddr::from(p.src)
            } else {
                std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 0, 1))
            };
            let mut synack = testkit::tcp(
                p.src_mac,
                p.dst_mac,
                from,
                8080,
                to,
                PORT_BASE + 7,
                SYN | ACK,
                b"",
            );
            let t = 14 + ipl;
            synack[t + 8..t + 12].copy_from_slice(&seq.wrapping_add(1).to_be_bytes());
            let r = tcp_reply(&synack[t..], p.dst, 5_420).unwrap();
            assert_eq!(r.series, 7);
            assert_eq!(r.round, 200);
            assert_eq!(r.outcome, Outcome::Answered(420));
            let n = synack_to_rst(&mut synack, 14, t, v6, &p.src_mac);
            let rst = &synack[..n];
            testkit::verify_checksums(rst).unwrap();
            assert_eq!(&rst[0..6], &p.dst_mac);
            assert_eq!(rst[t + 13], RST);
            assert_eq!(get_u16(&rst[t..], 2), 8080);
            assert_eq!(&rst[t + 4..t + 8], &seq.wrapping_add(1).to_be_bytes());
        }
    }

    #[test]
    fn echo_probes_and_their_replies() {
        for v6 in [false, true] {
            let p = probe(Method::Icmp, v6);
            let mut buf = [0u8; 128];
            let n = write(&mut buf, &p, 77).unwrap();
            testkit::verify_checksums(&buf[..n]).unwrap();
            let at = 14 + if v6 { 40 } else { 20 };
            let mut msg = buf[at..at + ECHO_LEN].to_vec();
            msg[0] = if v6 { 129 } else { 0 };
            let r = echo_reply(&msg, v6, p.dst, 1077).unwrap();
            assert_eq!((r.series, r.round), (7, 200));
            assert_eq!(r.outcome, Outcome::Answered(1000));
            // Someone else's echo reply is not ours.
            msg[4] ^= 1;
            assert!(echo_reply(&msg, v6, p.dst, 1077).is_none());
        }
    }

    #[test]
    fn other_tcp_is_not_a_probe_reply() {
        let mut tcp = [0u8; 20];
        tcp[12] = 5 << 4;
        set_u16(&mut tcp, 2, 80);
        tcp[13] = SYN | ACK;
        assert!(tcp_reply(&tcp, [0; 16], 0).is_none());
        set_u16(&mut tcp, 2, PORT_BASE + 3);
        tcp[13] = ACK;
        assert!(tcp_reply(&tcp, [0; 16], 0).is_none());
        tcp[13] = RST | ACK;
        assert_eq!(
            tcp_reply(&tcp, [0; 16], 0).map(|r| r.outcome),
            Some(Outcome::Refused)
        );
        assert!(tcp_reply(&tcp[..10], [0; 16], 0).is_none());
    }
}
