//! Writes a pcap of established-flow traffic for benchmarks: `flows` distinct TCP 5-tuples
//! (ACK, 60-byte frames; or with PAYLOAD bytes of data, which nat's response timing watches)
//! to a VIP, cycled `rounds` times.
//!
//! cargo run --release --example mkpcap -- OUT.pcap FLOWS ROUNDS [VIP] [DST_MAC] [PAYLOAD]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use tandem_dataplane::testkit;
use tandem_dataplane::wire::l4::ACK;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 4 {
        eprintln!("usage: mkpcap OUT.pcap FLOWS ROUNDS [VIP] [DST_MAC] [PAYLOAD]");
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
    let f = std::fs::File::create(&a[1]).expect("create");
    let header = pcap_file::pcap::PcapHeader {
        datalink: pcap_file::DataLink::ETHERNET,
        ..Default::default()
    };
    let mut w =
        pcap_file::pcap::PcapWriter::with_header(std::io::BufWriter::new(f), header).expect("pcap");
    for _ in 0..rounds {
        for i in 0..flows {
            let (src, sport) = testkit::bench_client(i);
            let frame = testkit::tcp(
                mac,
                [2, 0, 0, 0, 0xc, 1],
                src,
                sport,
                vip,
                80,
                ACK,
                &payload,
            );
            w.write_packet(&pcap_file::pcap::PcapPacket::new(
                Duration::ZERO,
                frame.len() as u32,
                &frame,
            ))
            .expect("write");
        }
    }
}
