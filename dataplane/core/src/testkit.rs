//! Frame builders and checkers for tests (unit, pcap golden and fuzz seeds): whole,
//! correctly checksummed Ethernet frames from a few parameters, and a full recomputation of
//! every checksum in a frame to compare incremental updates against.

use crate::messages::ToWorker;
use crate::neighbor::{Entry, NeighborKey};
use crate::pipeline::{Core, Now, PacketBuf, Verdict};
use crate::services::Services;
use crate::wire::ethernet::{self, Mac};
use crate::wire::l4::{self, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use crate::wire::{arp, checksum, icmp, ipv4, ipv6};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

pub fn eth(dst: Mac, src: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    ethernet::write_header(&mut f, &dst, &src, ethertype);
    f.extend_from_slice(payload);
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// Inserts an 802.1Q tag with `vid` after the MAC addresses.
pub fn tag(frame: &[u8], vid: u16) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&0x8100u16.to_be_bytes());
    f.extend_from_slice(&vid.to_be_bytes());
    f.extend_from_slice(&frame[12..]);
    f
}

fn l4_header(proto: u8, sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = if proto == PROTO_TCP {
        let mut t = vec![0u8; 20];
        t[12] = 5 << 4;
        t[13] = flags;
        t[14..16].copy_from_slice(&65535u16.to_be_bytes());
        t[4..8].copy_from_slice(&1000u32.to_be_bytes());
        t
    } else {
        let mut u = vec![0u8; 8];
        u[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        u
    };
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// An IP packet (no Ethernet) carrying TCP or UDP, checksums filled.
pub fn ip_l4(
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    sport: u16,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut seg = l4_header(proto, sport, dport, flags, payload);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            l4::fill_checksum(proto, &s.octets(), &d.octets(), &mut seg);
            let mut p = vec![0u8; 20];
            ipv4::emit(&mut p, s.octets(), d.octets(), proto, seg.len(), 64);
            p.extend_from_slice(&seg);
            p
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            l4::fill_checksum(proto, &s.octets(), &d.octets(), &mut seg);
            let mut p = vec![0u8; 40];
            ipv6::emit(&mut p, s.octets(), d.octets(), proto, seg.len(), 64);
            p.extend_from_slice(&seg);
            p
        }
        _ => panic!("mixed address families"),
    }
}

pub fn ethertype_of(a: IpAddr) -> u16 {
    if a.is_ipv4() {
        ethernet::ETHERTYPE_IPV4
    } else {
        ethernet::ETHERTYPE_IPV6
    }
}

/// A TCP segment in an Ethernet frame.
#[allow(clippy::too_many_arguments)]
pub fn tcp(
    dst_mac: Mac,
    src_mac: Mac,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    eth(
        dst_mac,
        src_mac,
        ethertype_of(src),
        &ip_l4(src, dst, PROTO_TCP, sport, dport, flags, payload),
    )
}

/// A UDP datagram in an Ethernet frame.
pub fn udp(
    dst_mac: Mac,
    src_mac: Mac,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    eth(
        dst_mac,
        src_mac,
        ethertype_of(src),
        &ip_l4(src, dst, PROTO_UDP, sport, dport, 0, payload),
    )
}

pub fn arp_request(src_mac: Mac, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut body = vec![0u8; 28];
    arp::emit(
        &mut body,
        &arp::Arp {
            op: arp::OP_REQUEST,
            sender_mac: src_mac,
            sender_ip: sender,
            target_mac: [0; 6],
            target_ip: target,
        },
    );
    eth(ethernet::BROADCAST, src_mac, ethernet::ETHERTYPE_ARP, &body)
}

pub fn icmp_echo(
    dst_mac: Mac,
    src_mac: Mac,
    src: IpAddr,
    dst: IpAddr,
    id: u16,
    seq: u16,
) -> Vec<u8> {
    let mut m = vec![0u8; 8 + 16];
    m[4..6].copy_from_slice(&id.to_be_bytes());
    m[6..8].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in m[8..].iter_mut().enumerate() {
        *b = i as u8;
    }
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            m[0] = icmp::ECHO_REQUEST;
            let c = checksum::checksum(&m);
            m[2..4].copy_from_slice(&c.to_be_bytes());
            let mut p = vec![0u8; 20];
            ipv4::emit(&mut p, s.octets(), d.octets(), PROTO_ICMP, m.len(), 64);
            p.extend_from_slice(&m);
            eth(dst_mac, src_mac, ethernet::ETHERTYPE_IPV4, &p)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            m[0] = icmp::V6_ECHO_REQUEST;
            icmp::fill_checksum_v6(&s.octets(), &d.octets(), &mut m);
            let mut p = vec![0u8; 40];
            ipv6::emit(&mut p, s.octets(), d.octets(), PROTO_ICMPV6, m.len(), 64);
            p.extend_from_slice(&m);
            eth(dst_mac, src_mac, ethernet::ETHERTYPE_IPV6, &p)
        }
        _ => panic!("mixed address families"),
    }
}

/// A neighbor solicitation for `target` from `src` (with a source lladdr option).
pub fn neighbor_solicit(
    src_mac: Mac,
    src: std::net::Ipv6Addr,
    target: std::net::Ipv6Addr,
) -> Vec<u8> {
    let t = target.octets();
    let mut dst = [0u8; 16];
    dst[0] = 0xff;
    dst[1] = 0x02;
    dst[11] = 1;
    dst[12] = 0xff;
    dst[13..].copy_from_slice(&t[13..]);
    let mut m = vec![0u8; icmp::ND_LEN];
    icmp::emit_nd(&mut m, icmp::V6_NEIGHBOR_SOLICIT, &t, &src_mac);
    icmp::fill_checksum_v6(&src.octets(), &dst, &mut m);
    let mut p = vec![0u8; 40];
    ipv6::emit(&mut p, src.octets(), dst, PROTO_ICMPV6, m.len(), 255);
    p.extend_from_slice(&m);
    eth(
        [0x33, 0x33, 0xff, t[13], t[14], t[15]],
        src_mac,
        ethernet::ETHERTYPE_IPV6,
        &p,
    )
}

/// A neighbor advertisement from `src` to `dst` (IPv6 addresses) for `target` at `lladdr`,
/// sent with hop limit `hop_limit` (255 on the link; less when routed), in a frame to
/// `dst_mac` from `src_mac`.
pub fn neighbor_advert(
    dst_mac: Mac,
    src_mac: Mac,
    (src, dst): (std::net::Ipv6Addr, std::net::Ipv6Addr),
    target: std::net::Ipv6Addr,
    lladdr: Mac,
    hop_limit: u8,
) -> Vec<u8> {
    let mut m = vec![0u8; icmp::ND_LEN];
    icmp::emit_nd(&mut m, icmp::V6_NEIGHBOR_ADVERT, &target.octets(), &lladdr);
    icmp::fill_checksum_v6(&src.octets(), &dst.octets(), &mut m);
    let mut p = vec![0u8; 40];
    ipv6::emit(
        &mut p,
        src.octets(),
        dst.octets(),
        PROTO_ICMPV6,
        m.len(),
        hop_limit,
    );
    p.extend_from_slice(&m);
    eth(dst_mac, src_mac, ethernet::ETHERTYPE_IPV6, &p)
}

/// Recomputes every checksum of the IP packet in `frame` (IPv4 header, TCP/UDP/ICMP, and
/// the IPv4 header an ICMP error quotes) and says whether each stored one is right. Errors
/// name the first wrong one. A fragment's transport checksum covers the whole datagram:
/// only its IP header is checked here (see `reassemble`).
pub fn verify_checksums(frame: &[u8]) -> Result<(), String> {
    let l2 = ethernet::parse(frame).map_err(|e| format!("{e:?}"))?;
    verify_ip_checksums(&frame[l2.l3_offset..])
}

/// `verify_checksums` on an IP packet.
pub fn verify_ip_checksums(ip: &[u8]) -> Result<(), String> {
    match ip.first().map(|b| b >> 4) {
        Some(4) => {
            let p = ipv4::Packet::new_checked(ip).map_err(|e| format!("{e:?}"))?;
            if !p.verify_checksum() {
                return Err("IPv4 header checksum".into());
            }
            if p.is_fragment() {
                return Ok(());
            }
            let (s, d) = (p.src_bytes(), p.dst_bytes());
            let body = p.payload();
            match p.protocol() {
                PROTO_TCP | PROTO_UDP if !l4::verify_checksum(p.protocol(), &s, &d, body) => {
                    Err(format!("L4 checksum (proto {})", p.protocol()))
                }
                PROTO_ICMP if checksum::checksum(body) != 0 => Err("ICMP checksum".into()),
                PROTO_ICMP => verify_quoted_header(body),
                _ => Ok(()),
            }
        }
        Some(6) => {
            let p = ipv6::Packet::new_checked(ip).map_err(|e| format!("{e:?}"))?;
            let (s, d) = (p.src_bytes(), p.dst_bytes());
            let up = ipv6::upper_layer(p.next_header(), p.payload())
                .map_err(|e| format!("extension headers: {e:?}"))?;
            if up.fragment.is_some() {
                return Ok(());
            }
            let nh = up.proto;
            let body = &ip[up.offset..ipv6::HEADER_LEN + p.payload_len()];
            let ok = match nh {
                PROTO_TCP | PROTO_UDP => l4::verify_checksum(nh, &s, &d, body),
                PROTO_ICMPV6 => {
                    let sum = checksum::pseudo_header_sum(&s, &d, nh, body.len() as u32);
                    checksum::fold(checksum::sum_words(sum, body)) == 0xffff
                }
                _ => true,
            };
            if ok {
                Ok(())
            } else {
                Err(format!("IPv6 L4 checksum (next header {nh})"))
            }
        }
        _ => Err("not an IP packet".into()),
    }
}

/// The quoted IPv4 header of an ICMP error message, when there is one, has a right sum.
fn verify_quoted_header(msg: &[u8]) -> Result<(), String> {
    if icmp::error_kind(msg[0], msg[1], false).is_none() {
        return Ok(());
    }
    let q = &msg[icmp::ERROR_HEADER_LEN..];
    match ipv4::Packet::new_quoted(q) {
        Ok(p) if !p.verify_checksum() => Err("quoted IPv4 header checksum".into()),
        _ => Ok(()),
    }
}

/// Splits the IP packet of an Ethernet frame into fragments carrying at most `size` bytes
/// of data each (a multiple of 8), as a sender does: IPv4 fragments with identification
/// `ident`, or IPv6 ones with a fragment header (the packet must have no extension
/// headers). Returned in order.
pub fn fragment(frame: &[u8], size: usize, ident: u32) -> Vec<Vec<u8>> {
    assert!(size.is_multiple_of(8) && size > 0);
    let l2 = ethernet::parse(frame).unwrap();
    let (mac, ip) = (&frame[..l2.l3_offset], &frame[l2.l3_offset..]);
    let v6 = ip[0] >> 4 == 6;
    let (hl, total) = if v6 {
        let p = ipv6::Packet::new_checked(ip).unwrap();
        (ipv6::HEADER_LEN, ipv6::HEADER_LEN + p.payload_len())
    } else {
        let p = ipv4::Packet::new_checked(ip).unwrap();
        (p.header_len(), p.total_len())
    };
    let data = &ip[hl..total];
    let mut out = Vec::new();
    for (i, chunk) in data.chunks(size).enumerate() {
        let offset = i * size;
        let more = offset + chunk.len() < data.len();
        let mut f = mac.to_vec();
        if v6 {
            let mut h = ip[..ipv6::HEADER_LEN].to_vec();
            let nh = h[6];
            h[6] = ipv6::NH_FRAGMENT;
            h[4..6].copy_from_slice(&((8 + chunk.len()) as u16).to_be_bytes());
            f.extend_from_slice(&h);
            f.extend_from_slice(&[nh, 0]);
            f.extend_from_slice(&((offset as u16) | u16::from(more)).to_be_bytes());
            f.extend_from_slice(&ident.to_be_bytes());
        } else {
            let mut h = ip[..hl].to_vec();
            h[2..4].copy_from_slice(&((hl + chunk.len()) as u16).to_be_bytes());
            h[4..6].copy_from_slice(&(ident as u16).to_be_bytes());
            let word = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
            h[6..8].copy_from_slice(&word.to_be_bytes());
            ipv4::fill_checksum(&mut h);
            f.extend_from_slice(&h);
        }
        f.extend_from_slice(chunk);
        if f.len() < 60 {
            f.resize(60, 0);
        }
        out.push(f);
    }
    out
}

/// The IP datagram the fragment frames `frames` (any order, IPv4 or IPv6 with a fragment
/// header right after the fixed one) make whole, as the receiver reassembles it.
pub fn reassemble(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut parts: Vec<(usize, Vec<u8>, Vec<u8>)> = frames
        .iter()
        .map(|f| {
            let l2 = ethernet::parse(f).unwrap();
            let ip = &f[l2.l3_offset..];
            if ip[0] >> 4 == 6 {
                let p = ipv6::Packet::new_checked(ip).unwrap();
                let up = ipv6::upper_layer(p.next_header(), p.payload()).unwrap();
                let fr = up.fragment.expect("an IPv6 fragment");
                let mut h = ip[..ipv6::HEADER_LEN].to_vec();
                h[6] = ip[ipv6::HEADER_LEN];
                let end = ipv6::HEADER_LEN + p.payload_len();
                (fr.offset, h, ip[up.offset..end].to_vec())
            } else {
                let p = ipv4::Packet::new_checked(ip).unwrap();
                let h = ip[..p.header_len()].to_vec();
                (p.frag_offset(), h, p.payload().to_vec())
            }
        })
        .collect();
    parts.sort_by_key(|p| p.0);
    let mut ip = parts[0].1.clone();
    let data: Vec<u8> = parts.iter().flat_map(|p| p.2.clone()).collect();
    if ip[0] >> 4 == 6 {
        ip[4..6].copy_from_slice(&(data.len() as u16).to_be_bytes());
    } else {
        let hl = ip.len();
        ip[2..4].copy_from_slice(&((hl + data.len()) as u16).to_be_bytes());
        ip[6..8].copy_from_slice(&[0, 0]);
        ipv4::fill_checksum(&mut ip);
    }
    ip.extend_from_slice(&data);
    ip
}

/// Inserts IPv6 extension headers before the transport header of an IPv6 frame (without
/// extension headers): each `(kind, length)` a hop-by-hop, routing (segments left 0) or
/// destination options header of `length` bytes (a multiple of 8), padded with PadN.
pub fn with_ext_headers(frame: &[u8], headers: &[(u8, usize)]) -> Vec<u8> {
    let l3 = ethernet::parse(frame).unwrap().l3_offset;
    let ip = &frame[l3..];
    let p = ipv6::Packet::new_checked(ip).unwrap();
    let upper = p.next_header();
    let rest = &ip[ipv6::HEADER_LEN..ipv6::HEADER_LEN + p.payload_len()];
    let mut ext = Vec::new();
    for (i, &(kind, len)) in headers.iter().enumerate() {
        assert!(len.is_multiple_of(8) && len >= 8);
        let next = headers.get(i + 1).map_or(upper, |h| h.0);
        let mut h = vec![0u8; len];
        h[0] = next;
        h[1] = (len / 8 - 1) as u8;
        if kind == ipv6::NH_ROUTING {
            h[2] = 4; // segment routing; segments left (h[3]) 0
        } else {
            h[2] = 1; // PadN over the rest
            h[3] = (len - 4) as u8;
        }
        ext.extend_from_slice(&h);
    }
    let mut out = frame[..l3].to_vec();
    let mut fixed = ip[..ipv6::HEADER_LEN].to_vec();
    fixed[6] = headers.first().map_or(upper, |h| h.0);
    fixed[4..6].copy_from_slice(&((ext.len() + rest.len()) as u16).to_be_bytes());
    out.extend_from_slice(&fixed);
    out.extend_from_slice(&ext);
    out.extend_from_slice(rest);
    out
}

/// An ICMP error from `from` to `to` (ICMP for IPv4 addresses, ICMPv6 for IPv6), of
/// `msg_type` and `code`, with `info` in its second word (the MTU of fragmentation needed
/// or packet too big), quoting the IP packet `quoted` (cut by the caller to what it
/// quotes), checksum filled.
#[allow(clippy::too_many_arguments)]
pub fn icmp_error(
    dst_mac: Mac,
    src_mac: Mac,
    from: IpAddr,
    to: IpAddr,
    msg_type: u8,
    code: u8,
    info: u32,
    quoted: &[u8],
) -> Vec<u8> {
    let mut m = vec![msg_type, code, 0, 0];
    m.extend_from_slice(&info.to_be_bytes());
    m.extend_from_slice(quoted);
    let ip = match (from, to) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            icmp::fill_checksum_v4(&mut m);
            let mut p = vec![0u8; 20];
            ipv4::emit(&mut p, s.octets(), d.octets(), PROTO_ICMP, m.len(), 64);
            p.extend_from_slice(&m);
            p
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            icmp::fill_checksum_v6(&s.octets(), &d.octets(), &mut m);
            let mut p = vec![0u8; 40];
            ipv6::emit(&mut p, s.octets(), d.octets(), PROTO_ICMPV6, m.len(), 64);
            p.extend_from_slice(&m);
            p
        }
        _ => panic!("mixed address families"),
    };
    eth(dst_mac, src_mac, ethertype_of(from), &ip)
}

/// The IP packet of an Ethernet frame (without its link header or padding).
pub fn ip_of(frame: &[u8]) -> Vec<u8> {
    let l3 = ethernet::parse(frame).unwrap().l3_offset;
    let ip = &frame[l3..];
    let len = if ip[0] >> 4 == 6 {
        ipv6::HEADER_LEN + ipv6::Packet::new_checked(ip).unwrap().payload_len()
    } else {
        ipv4::Packet::new_checked(ip).unwrap().total_len()
    };
    ip[..len].to_vec()
}

/// Runs a frame through a core with headroom in front of it, as an mbuf has; returns the
/// verdict and the frame as it would leave.
pub fn run(core: &mut Core, port: u8, frame: &[u8], now_ms: u32) -> (Verdict, Vec<u8>) {
    run_as(core, port, frame, now_ms, 0)
}

/// `run`, the buffer named `handle` (what an admission queue holds and hands back).
pub fn run_as(
    core: &mut Core,
    port: u8,
    frame: &[u8],
    now_ms: u32,
    handle: usize,
) -> (Verdict, Vec<u8>) {
    let mut buf = vec![0u8; 2048];
    buf[128..128 + frame.len()].copy_from_slice(frame);
    let mut p = PacketBuf {
        buf: &mut buf,
        start: 128,
        len: frame.len(),
        handle,
    };
    core.set_now(Now::from_ms(now_ms));
    let v = core.process(port, &mut p);
    (v, p.frame().to_vec())
}

/// The client side of flow `i` in the benches' flow sets (corebench, mkpcap): distinct
/// addresses and ports for up to 2^24 flows, spread over the hash.
pub fn bench_client(i: u32) -> (IpAddr, u16) {
    let src = IpAddr::V4(Ipv4Addr::new(
        10,
        100 + (i >> 24) as u8,
        (i >> 16) as u8,
        (i >> 8) as u8,
    ));
    (src, 1024 + (i & 0xff) as u16 * 200 + (i >> 8) as u16 % 200)
}

/// Applies a control message to a core with its clock at millisecond `now_ms`.
pub fn apply_at(core: &mut Core, msg: ToWorker, now_ms: u32) -> Option<ToWorker> {
    core.set_now(Now::from_ms(now_ms));
    core.apply(msg)
}

/// The control thread's message that `ip` is reached at `mac` on `port` (a learned entry).
pub fn neighbor(port: u8, ip: IpAddr, mac: Mac) -> ToWorker {
    ToWorker::Neighbor {
        key: NeighborKey::new(port, ip.is_ipv6(), crate::flow::key::addr_bytes(ip)),
        entry: Entry::Learned(mac),
    }
}

/// The control thread's message that the node wants `ip` on `port` resolved (an
/// incomplete entry, which what a worker hears fills in).
pub fn wanted_neighbor(port: u8, ip: IpAddr) -> ToWorker {
    ToWorker::Neighbor {
        key: NeighborKey::new(port, ip.is_ipv6(), crate::flow::key::addr_bytes(ip)),
        entry: Entry::Incomplete,
    }
}

/// The services of config text `toml`, its ports given the MACs `macs` in order.
pub fn services_of(toml: &str, macs: &[Mac]) -> Arc<Services> {
    let cfg = tandem_config::Config::from_toml(toml).expect("a test config that parses");
    Arc::new(Services::from_config(&cfg, macs))
}

/// A packet core as worker 0 over `services`: a table of `capacity` flows seeded with
/// `seed` (the seed places flows in the table: a test that expects a placement keeps its
/// own), default timeouts, fresh counters.
pub fn core_of(services: Arc<Services>, capacity: usize, seed: u64) -> Core {
    Core::new(
        0,
        capacity,
        crate::flow::Timeouts::default(),
        services,
        Arc::new(crate::counters::WorkerCounters::default()),
        seed,
    )
}
