//! Writes a pcap of traffic for benchmarks: `flows` distinct 5-tuples to a VIP, cycled
//! `rounds` times. KIND says what each packet is: `ack` (the default: a TCP ACK, 60-byte
//! frames; or with PAYLOAD bytes of data, which nat's response timing watches), `udp` (a
//! datagram of PAYLOAD bytes: 22 make a 64-byte frame) or `syn` (a TCP SYN: with one round,
//! every packet a new flow). FIRST is the first flow's number (two pcaps with different
//! FIRST hold different flows), STRIDE the step between flows' numbers (a pcap of every
//! tenth flow of another's ten million touches their whole table).
//!
//! cargo run --release --example mkpcap -- OUT.pcap FLOWS ROUNDS [VIP] [DST_MAC] [PAYLOAD]
//!     [KIND] [FIRST] [STRIDE]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use tandem_dataplane::testkit;
use tandem_dataplane::wire::l4::{ACK, SYN};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 4 {
        eprintln!(
            "usage: mkpcap OUT.pcap FLOWS ROUNDS [VIP] [DST_MAC] [PAYLOAD] [ack|udp|syn] [FIRST]"
        );
        std::process::exit(2);
    }
    let flows: u32 = a[2].parse().expect("FLOWS");
    let rounds: u32 = a[3].parse().expect("ROUNDS");
    let vip: IpAddr = a
        .get(4)
        .map(|s| s.parse().expect("VIP"))
        .unwrap_or(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)));
    let mac = a
        .get(5)
        .map(|s| tandem_config::units::parse_mac(s).expect("DST_MAC"))
        .unwrap_or([2, 0, 0, 0, 0, 1]);
    let payload = vec![b'x'; a.get(6).map_or(0, |s| s.parse().expect("PAYLOAD"))];
    let kind = a.get(7).map_or("ack", String::as_str);
    assert!(
        matches!(kind, "ack" | "udp" | "syn"),
        "KIND: ack, udp or syn"
    );
    let first: u32 = a.get(8).map_or(0, |s| s.parse().expect("FIRST"));
    let stride: u32 = a.get(9).map_or(1, |s| s.parse().expect("STRIDE"));
    let f = std::fs::File::create(&a[1]).expect("create");
    let header = pcap_file::pcap::PcapHeader {
        datalink: pcap_file::DataLink::ETHERNET,
        ..Default::default()
    };
    let mut w =
        pcap_file::pcap::PcapWriter::with_header(std::io::BufWriter::new(f), header).expect("pcap");
    for _ in 0..rounds {
        for i in (0..flows).map(|k| first + k * stride) {
            let (src, sport) = testkit::bench_client(i);
            let client = [2, 0, 0, 0, 0xc, 1];
            let frame = match kind {
                "udp" => testkit::udp(mac, client, src, sport, vip, 80, &payload),
                "syn" => testkit::tcp(mac, client, src, sport, vip, 80, SYN, b""),
                _ => testkit::tcp(mac, client, src, sport, vip, 80, ACK, &payload),
            };
            w.write_packet(&pcap_file::pcap::PcapPacket::new(
                Duration::ZERO,
                frame.len() as u32,
                &frame,
            ))
            .expect("write");
        }
    }
}
