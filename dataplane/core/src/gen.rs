//! The load generator's packets, as bytes: frames of N flows (established: TCP ACK or UDP;
//! new: a TCP SYN of a fresh 5-tuple), each carrying a stamp — a magic, a sequence number and
//! the send time — in its payload; and the receive side's accounting (loss, reordering,
//! latency into an HDR histogram). A nat rewrite by the device under test changes headers,
//! not the payload, so the stamp survives it. The DPDK loop (`tandem gen`) only moves mbufs.

use crate::wire::ethernet::{self, Mac};
use crate::wire::l4::{self, ACK, PROTO_TCP, PROTO_UDP, SYN};
use crate::wire::{checksum, ipv4};
use hdrhistogram::Histogram;

/// The stamp: "tg", sequence number (u32), send time in ns (u32, wrapping every 4.29 s:
/// latencies are measured modulo that).
pub const MAGIC: [u8; 2] = *b"tg";
pub const STAMP_LEN: usize = 10;
const L3: usize = ethernet::HEADER_LEN;
const L4: usize = L3 + ipv4::MIN_HEADER_LEN;

/// What to send.
#[derive(Debug, Clone)]
pub struct Spec {
    pub proto: u8,
    /// Frame length without the FCS (64 is the usual "64-byte packet").
    pub size: usize,
    pub src_mac: Mac,
    pub dst_mac: Mac,
    /// Flow n comes from `src_ip + n / 60000`, port `1024 + n % 60000`.
    pub src_ip: [u8; 4],
    pub dst_ip: [u8; 4],
    pub dst_port: u16,
}

impl Spec {
    fn l4_len(&self) -> usize {
        if self.proto == PROTO_TCP {
            l4::TCP_MIN_LEN
        } else {
            l4::UDP_LEN
        }
    }

    /// The smallest frame that holds the headers and the stamp.
    pub fn min_size(&self) -> usize {
        L4 + self.l4_len() + STAMP_LEN
    }

    /// Where the stamp sits in every frame.
    pub fn stamp_at(&self) -> usize {
        L4 + self.l4_len()
    }

    /// Flow n's source address and port.
    pub fn source(&self, n: u64) -> ([u8; 4], u16) {
        let ip = u32::from_be_bytes(self.src_ip).wrapping_add((n / 60_000) as u32);
        (ip.to_be_bytes(), 1024 + (n % 60_000) as u16)
    }
}

/// Writes flow `n`'s frame (a SYN when `syn`, else an ACK; UDP ignores it) with an empty
/// stamp; returns its length, or None when `buf` is too small or `size` below the minimum.
pub fn write_frame(buf: &mut [u8], spec: &Spec, n: u64, syn: bool) -> Option<usize> {
    let len = spec.size;
    if len < spec.min_size() || buf.len() < len {
        return None;
    }
    let b = &mut buf[..len];
    b.fill(0);
    ethernet::write_header(b, &spec.dst_mac, &spec.src_mac, ethernet::ETHERTYPE_IPV4);
    let (src, sport) = spec.source(n);
    let l4_len = len - L4;
    ipv4::emit(&mut b[L3..], src, spec.dst_ip, spec.proto, l4_len, 64);
    let t = &mut b[L4..];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&spec.dst_port.to_be_bytes());
    if spec.proto == PROTO_TCP {
        t[4..8].copy_from_slice(&(n as u32).to_be_bytes());
        t[12] = 5 << 4;
        t[13] = if syn { SYN } else { ACK };
        t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    } else {
        t[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
    }
    let at = spec.stamp_at() - L4;
    t[at..at + 2].copy_from_slice(&MAGIC);
    l4::fill_checksum(spec.proto, &src, &spec.dst_ip, &mut b[L4..]);
    Some(len)
}

/// Writes the sequence number and send time into a frame from `write_frame` (whose stamp
/// holds zeros or an earlier stamp), patching the L4 checksum.
#[inline]
pub fn stamp(frame: &mut [u8], spec: &Spec, seq: u32, ns: u32) {
    let at = spec.stamp_at();
    let mut old = [0u8; 8];
    old.copy_from_slice(&frame[at + 2..at + 10]);
    let mut new = [0u8; 8];
    new[..4].copy_from_slice(&seq.to_be_bytes());
    new[4..].copy_from_slice(&ns.to_be_bytes());
    frame[at + 2..at + 10].copy_from_slice(&new);
    let co = L4 + l4::checksum_offset(spec.proto);
    let c = u16::from_be_bytes([frame[co], frame[co + 1]]);
    let mut c = checksum::update_bytes(c, &old, &new);
    if spec.proto == PROTO_UDP && c == 0 {
        c = 0xffff;
    }
    frame[co..co + 2].copy_from_slice(&c.to_be_bytes());
}

/// The stamp of a received frame (IPv4 TCP or UDP, any header rewrite), if it carries one.
pub fn read_stamp(frame: &[u8]) -> Option<(u32, u32)> {
    let l2 = ethernet::parse(frame).ok()?;
    if l2.ethertype != ethernet::ETHERTYPE_IPV4 {
        return None;
    }
    let ip = ipv4::Packet::new_checked(frame.get(l2.l3_offset..)?).ok()?;
    let p = ip.payload();
    let hl = match ip.protocol() {
        PROTO_TCP => usize::from(*p.get(12)? >> 4) * 4,
        PROTO_UDP => l4::UDP_LEN,
        _ => return None,
    };
    let s = p.get(hl..hl + STAMP_LEN)?;
    if s[..2] != MAGIC {
        return None;
    }
    Some((
        u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
        u32::from_be_bytes([s[6], s[7], s[8], s[9]]),
    ))
}

/// The receive side's accounting.
pub struct Rx {
    /// Latency over the whole run, and over the current report interval (ns).
    pub total: Histogram<u64>,
    pub interval: Histogram<u64>,
    /// Frames received, and those carrying our stamp.
    pub frames: u64,
    pub ours: u64,
    /// Stamped frames that arrived after one with a higher sequence number.
    pub reordered: u64,
    /// Frames stamped before this sequence number (a warm-up's) are not counted.
    pub start_seq: Option<u32>,
    last: Option<u32>,
}

impl Default for Rx {
    fn default() -> Self {
        // 1 ns to 10 s at 3 significant figures: constants within hdrhistogram's rules.
        let h = || Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("histogram bounds");
        Rx {
            total: h(),
            interval: h(),
            frames: 0,
            ours: 0,
            reordered: 0,
            start_seq: None,
            last: None,
        }
    }
}

impl Rx {
    /// Accounts one received frame at `now_ns` (the same wrapping clock as the stamps).
    #[inline]
    pub fn on_frame(&mut self, frame: &[u8], now_ns: u32) {
        self.frames += 1;
        let Some((seq, sent)) = read_stamp(frame) else {
            return;
        };
        if self
            .start_seq
            .is_some_and(|s| (seq.wrapping_sub(s) as i32) < 0)
        {
            return;
        }
        self.ours += 1;
        match self.last {
            Some(l) if (seq.wrapping_sub(l) as i32) < 0 => self.reordered += 1,
            _ => self.last = Some(seq),
        }
        let lat = u64::from(now_ns.wrapping_sub(sent)).max(1);
        self.total.saturating_record(lat);
        self.interval.saturating_record(lat);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;

    fn spec(proto: u8, size: usize) -> Spec {
        Spec {
            proto,
            size,
            src_mac: [2, 0, 0, 0, 0, 0x10],
            dst_mac: [2, 0, 0, 0, 0, 1],
            src_ip: [10, 100, 0, 0],
            dst_ip: [192, 0, 2, 10],
            dst_port: 80,
        }
    }

    #[test]
    fn frames_are_valid_and_stamps_survive_a_nat_rewrite() {
        for (proto, size) in [(PROTO_UDP, 64), (PROTO_TCP, 64), (PROTO_TCP, 1500)] {
            let s = spec(proto, size);
            assert!(s.min_size() <= 64);
            let mut buf = [0u8; 2048];
            let n = write_frame(&mut buf, &s, 123_456, false).unwrap();
            assert_eq!(n, size);
            stamp(&mut buf[..n], &s, 7, 1000);
            stamp(&mut buf[..n], &s, 8, 2000);
            testkit::verify_checksums(&buf[..n]).unwrap();
            assert_eq!(read_stamp(&buf[..n]), Some((8, 2000)));
            let (src, sport) = s.source(123_456);
            assert_eq!(src, [10, 100, 0, 2]);
            assert_eq!(&buf[26..30], &src);
            assert_eq!(u16::from_be_bytes([buf[34], buf[35]]), sport);
            // A nat rewrite of the destination leaves the stamp readable.
            buf[30..34].copy_from_slice(&[10, 1, 0, 11]);
            assert_eq!(read_stamp(&buf[..n]), Some((8, 2000)));
        }
        let s = spec(PROTO_TCP, 64);
        let mut buf = [0u8; 64];
        write_frame(&mut buf, &s, 1, true).unwrap();
        assert_eq!(buf[47], SYN);
        assert!(write_frame(&mut [0u8; 32], &s, 1, true).is_none());
        assert!(write_frame(&mut buf, &spec(PROTO_TCP, 60), 1, true).is_none());
    }

    #[test]
    fn rx_counts_latency_and_reordering() {
        let s = spec(PROTO_UDP, 64);
        let mut rx = Rx::default();
        let mut buf = [0u8; 64];
        write_frame(&mut buf, &s, 0, false).unwrap();
        for (seq, sent, now) in [(1u32, 100u32, 600u32), (3, 200, 900), (2, 150, 950)] {
            stamp(&mut buf, &s, seq, sent);
            rx.on_frame(&buf, now);
        }
        rx.on_frame(&[0u8; 20], 1000);
        assert_eq!((rx.frames, rx.ours, rx.reordered), (4, 3, 1));
        // A warm-up's frames (stamped before start_seq) are not counted.
        rx.start_seq = Some(3);
        stamp(&mut buf, &s, 2, 10);
        rx.on_frame(&buf, 20);
        assert_eq!((rx.frames, rx.ours), (5, 3));
        assert_eq!(rx.total.len(), 3);
        assert_eq!(rx.total.max(), 800);
        // The clock wrapping between send and receive.
        stamp(&mut buf, &s, 4, u32::MAX - 10);
        rx.on_frame(&buf, 20);
        assert_eq!(rx.total.max(), 800);
        assert_eq!(rx.total.min(), 31);
        assert_eq!(rx.ours, 4);
    }
}
