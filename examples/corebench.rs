//! The packet core alone, no DPDK: established nat flows (bare ACKs, or with PAYLOAD bytes of
//! data, which the response timing watches) run through `Core::process` in a counted loop,
//! each frame copied into a buffer first as the port layer's mbuf would hold it. Prints
//! nanoseconds and packets per second per core.
//!
//! cargo run --release --example corebench -- FLOWS PAYLOAD SECONDS

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem_config::Config;
use tandem_dataplane::counters::WorkerCounters;
use tandem_dataplane::flow::Timeouts;
use tandem_dataplane::pipeline::{Core, PacketBuf, Verdict};
use tandem_dataplane::services::Services;
use tandem_dataplane::testkit;
use tandem_dataplane::wire::l4::{ACK, SYN};

const CONFIG: &str = r#"
[node]
id = 1
[eal]
args = []
[[port]]
name = "front"
devargs = "net_null0"
ipv4 = "10.0.0.1/24"
[[port]]
name = "back"
devargs = "net_null1"
ipv4 = "10.1.0.1/24"
[[service]]
name = "web"
vip = "192.0.2.10"
port = 80
protocol = "tcp"
mode = "nat"
[[service.backend]]
name = "a"
address = "10.1.0.11"
port = 8080
weight = 2
paths = [{ port = "back", mac = "02:00:00:00:01:11" }]
[[service.backend]]
name = "b"
address = "10.1.0.12"
port = 8080
paths = [{ port = "back", mac = "02:00:00:00:01:12" }]
"#;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let flows: u32 = a.get(1).map_or(1000, |s| s.parse().expect("FLOWS"));
    let payload = vec![b'x'; a.get(2).map_or(0, |s| s.parse().expect("PAYLOAD"))];
    let secs: f64 = a.get(3).map_or(3.0, |s| s.parse().expect("SECONDS"));
    let cfg = Config::from_toml(CONFIG).expect("config");
    let mac = [2, 0, 0, 0, 0, 1];
    let services = Arc::new(Services::from_config(&cfg, &[mac, [2, 0, 0, 0, 0, 2]]));
    let mut core = Core::new(
        0,
        (flows as usize * 8).max(1024),
        Timeouts::default(),
        services,
        Arc::new(WorkerCounters::default()),
        1,
    );
    let frame = |i: u32, flags, data: &[u8]| {
        let src = IpAddr::V4(Ipv4Addr::new(
            10,
            100 + (i >> 24) as u8,
            (i >> 16) as u8,
            (i >> 8) as u8,
        ));
        let sport = 1024 + (i & 0xff) as u16 * 200 + (i >> 8) as u16 % 200;
        testkit::tcp(
            mac,
            [2, 0, 0, 0, 0xc, 1],
            src,
            sport,
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            80,
            flags,
            data,
        )
    };
    let mut buf = vec![0u8; 2048];
    let t0 = Instant::now();
    let mut now = Duration::ZERO;
    let mut k = 0u32;
    // The clock is read once per 32 packets, as the port layer reads it once per burst.
    let mut run = |core: &mut Core, f: &[u8]| -> Verdict {
        if k.is_multiple_of(32) {
            now = t0.elapsed();
            core.set_now_us(now.as_micros() as u64);
        }
        k = k.wrapping_add(1);
        buf[128..128 + f.len()].copy_from_slice(f);
        let mut p = PacketBuf {
            buf: &mut buf,
            start: 128,
            len: f.len(),
        };
        core.process(0, &mut p, now.as_millis() as u32)
    };
    for i in 0..flows {
        run(&mut core, &frame(i, SYN, b""));
    }
    let frames: Vec<Vec<u8>> = (0..flows).map(|i| frame(i, ACK, &payload)).collect();
    let mut n = 0u64;
    let mut dropped = 0u64;
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    while Instant::now() < until {
        for f in &frames {
            if !matches!(run(&mut core, f), Verdict::Tx(_)) {
                dropped += 1;
            }
        }
        n += frames.len() as u64;
    }
    let el = start.elapsed().as_secs_f64();
    let cap = 1_000_000;
    println!(
        "table: {} bytes per flow of capacity",
        tandem_dataplane::flow::FlowTable::bytes_for(cap) / cap
    );
    println!(
        "{flows} flows, payload {}: {:.1} ns/packet, {:.2} Mpps, {:.3}% not forwarded",
        payload.len(),
        el * 1e9 / n as f64,
        n as f64 / el / 1e6,
        dropped as f64 * 100.0 / n as f64
    );
}
