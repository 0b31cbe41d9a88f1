//! The packet core alone, no DPDK: established nat flows (bare ACKs, or with PAYLOAD bytes of
//! data, which the response timing watches) run through `Core::process` in a counted loop,
//! each frame copied into a buffer first as the port layer's mbuf would hold it. Prints
//! nanoseconds and packets per second per core.
//!
//! cargo run --release --example corebench -- FLOWS PAYLOAD SECONDS
//!
//! With `--mix ROUNDS` it runs a fixed packet mix instead, on a fake clock, so the work per
//! packet is the same on every run: the instruction count `scripts/instructions` checks in
//! CI. A round is, for each of 1 000 established nat flows, a bare ACK and a request with 64
//! bytes of data, then an ARP request for the node and a runt frame, all from the client
//! side in bursts of 32 (`Core::process_burst`, as a worker runs them); then the backends'
//! 64-byte answers (so response timing runs), in bursts of 32 from the backend side.
//!
//! With `--established ROUNDS` it runs established IPv4 UDP nat packets alone (1 000 flows,
//! 18 bytes of payload: 64-byte frames), in bursts of 32, on the same fake clock: the
//! fast path's own count (`instructions per established packet` in `scripts/instructions`).
//!
//! With `--quic ROUNDS [plain|keyed]` it runs the same shape of traffic to a quic service:
//! 64-byte short-header datagrams of 1 000 clients, each connection ID naming one of two
//! backends (plaintext, or encrypted: three AES passes), routed by ID (what a QUIC packet
//! costs; not in the CI budget).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem_config::Config;
use tandem_dataplane::counters::WorkerCounters;
use tandem_dataplane::flow::Timeouts;
use tandem_dataplane::pipeline::{Core, Now, PacketBuf, Verdict, MAX_BURST};
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
[[service]]
name = "dns"
vip = "192.0.2.10"
port = 53
protocol = "udp"
mode = "nat"
[[service.backend]]
name = "u1"
address = "10.1.0.11"
port = 5353
paths = [{ port = "back", mac = "02:00:00:00:01:11" }]
[[service.backend]]
name = "u2"
address = "10.1.0.12"
port = 5353
paths = [{ port = "back", mac = "02:00:00:00:01:12" }]
"#;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.get(1).map(String::as_str) == Some("--mix") {
        let rounds = a.get(2).map_or(10, |s| s.parse().expect("ROUNDS"));
        return mix(rounds);
    }
    if a.get(1).map(String::as_str) == Some("--established") {
        let rounds = a.get(2).map_or(10, |s| s.parse().expect("ROUNDS"));
        return established(rounds);
    }
    if a.get(1).map(String::as_str) == Some("--quic") {
        let rounds = a.get(2).map_or(10, |s| s.parse().expect("ROUNDS"));
        return quic(rounds, a.get(3).map(String::as_str) == Some("keyed"));
    }
    // The daemon's huge-page hint for the table, unless THP=0 (to measure what it buys).
    if std::env::var("THP").as_deref() != Ok("0") {
        tandem_dataplane::flow::table::on_allocate(tandem_port::memory::advise_huge_pages);
    }
    let flows: u32 = a.get(1).map_or(1000, |s| s.parse().expect("FLOWS"));
    let payload = vec![b'x'; a.get(2).map_or(0, |s| s.parse().expect("PAYLOAD"))];
    let secs: f64 = a.get(3).map_or(3.0, |s| s.parse().expect("SECONDS"));
    let cfg = Config::from_toml(CONFIG).expect("config");
    let mac = [2, 0, 0, 0, 0, 1];
    let services = Arc::new(Services::from_config(&cfg, &[mac, [2, 0, 0, 0, 0, 2]]));
    let mut core = Core::new(
        0,
        (flows as usize * 2).max(1024),
        Timeouts::default(),
        services,
        Arc::new(WorkerCounters::default()),
        1,
    );
    let frame = |i: u32, flags, data: &[u8]| {
        let (src, sport) = testkit::bench_client(i);
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
            core.set_now(Now::from_us(now.as_micros() as u64));
        }
        k = k.wrapping_add(1);
        buf[128..128 + f.len()].copy_from_slice(f);
        let mut p = PacketBuf {
            buf: &mut buf,
            start: 128,
            len: f.len(),
            handle: 0,
        };
        core.process(0, &mut p)
    };
    // The flows' SYNs, built first so the timing is of the core alone: each one a new flow
    // (lookup miss, backend and path choice, insert, announcement to the control thread,
    // whose queue nobody drains here: past its bound they are counted, not queued).
    let syns: Vec<Vec<u8>> = (0..flows).map(|i| frame(i, SYN, b"")).collect();
    let t_new = Instant::now();
    for f in &syns {
        run(&mut core, f);
    }
    let new_ns = t_new.elapsed().as_secs_f64() * 1e9 / f64::from(flows.max(1));
    drop(syns);
    println!(
        "new flows: {new_ns:.1} ns each, {:.2} M/s",
        1e3 / new_ns.max(1e-9)
    );
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
    let (v4, v6) = tandem_dataplane::flow::FlowTable::bytes_per_flow(1_000_000);
    println!("table: {v4} bytes per IPv4 flow of capacity ({v6} per IPv6 flow)");
    println!(
        "{flows} flows, payload {}: {:.1} ns/packet, {:.2} Mpps, {:.3}% not forwarded",
        payload.len(),
        el * 1e9 / n as f64,
        n as f64 / el / 1e6,
        dropped as f64 * 100.0 / n as f64
    );
}

/// The fixed mix on a fake clock (1 us per packet); prints how many packets it ran.
fn mix(rounds: u32) {
    let cfg = Config::from_toml(CONFIG).expect("config");
    let mac = [2, 0, 0, 0, 0, 1];
    let back = [2, 0, 0, 0, 0, 2];
    let services = Arc::new(Services::from_config(&cfg, &[mac, back]));
    let mut core = Core::new(
        0,
        8192,
        Timeouts::default(),
        services,
        Arc::new(WorkerCounters::default()),
        1,
    );
    let client = [2, 0, 0, 0, 0xc, 1];
    let vip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
    let flows = 1000u32;
    let cip = |i: u32| IpAddr::V4(Ipv4Addr::new(10, 100, (i >> 8) as u8, i as u8));
    let sport = |i: u32| 20_000 + i as u16;
    let data = [b'x'; 64];
    // Backend `be`'s segment to flow `i`'s client.
    let from_backend = |be: IpAddr, i: u32, flags: u8, data: &[u8]| {
        testkit::tcp(
            back,
            [2, 0, 0, 0, 1, 0x11],
            be,
            8080,
            cip(i),
            sport(i),
            flags,
            data,
        )
    };
    let mut us = 0u64;
    let mut buf = vec![0u8; 2048];
    let mut run = |core: &mut Core, port: u8, f: &[u8]| -> Verdict {
        us += 1;
        core.set_now(Now::from_us(us));
        buf[128..128 + f.len()].copy_from_slice(f);
        let mut p = PacketBuf {
            buf: &mut buf,
            start: 128,
            len: f.len(),
            handle: 0,
        };
        core.process(port, &mut p)
    };
    // Handshakes first: each flow's backend, learned from where its SYN went.
    let mut backend_of = Vec::new();
    for i in 0..flows {
        let syn = testkit::tcp(mac, client, cip(i), sport(i), vip, 80, SYN, b"");
        backend_of.push(backend_of_syn(&mut run, &mut core, &syn));
    }
    // A round's frames in the order the port layer hands them over: bursts of one port.
    let mut front = Vec::new();
    let mut back = Vec::new();
    for i in 0..flows {
        let be = backend_of[i as usize];
        run(&mut core, 1, &from_backend(be, i, SYN | ACK, b""));
        let to_vip =
            |payload: &[u8]| testkit::tcp(mac, client, cip(i), sport(i), vip, 80, ACK, payload);
        front.push(to_vip(b""));
        front.push(to_vip(&data));
        back.push(from_backend(be, i, ACK, &data));
    }
    front.push(testkit::arp_request(
        client,
        Ipv4Addr::new(10, 0, 0, 9),
        Ipv4Addr::new(10, 0, 0, 1),
    ));
    front.push(vec![0u8; 7]);
    core.state.outbox.clear();
    let mut bufs = vec![vec![0u8; 2048]; MAX_BURST];
    let mut n = 0u64;
    let mut sent = 0u64;
    for _ in 0..rounds {
        for (port, frames) in [(0u8, &front), (1u8, &back)] {
            for burst in frames.chunks(MAX_BURST) {
                us += burst.len() as u64;
                sent += run_burst(&mut core, port, burst, &mut bufs, us);
                n += burst.len() as u64;
            }
        }
        core.state.outbox.clear();
        core.housekeeping(32);
    }
    println!("mix: {rounds} rounds, {n} packets, {sent} sent");
}

/// Runs `burst` (frames of one port) through the core at `us` microseconds, each copied
/// into one of `bufs` as the port layer's mbufs hold them; how many were sent. (No
/// allocation per burst: the harness's own instructions count too.)
fn run_burst(core: &mut Core, port: u8, burst: &[Vec<u8>], bufs: &mut [Vec<u8>], us: u64) -> u64 {
    core.set_now(Now::from_us(us));
    let mut room = bufs.iter_mut();
    let mut pkts: [PacketBuf; MAX_BURST] = std::array::from_fn(|_| PacketBuf {
        buf: room.next().expect("a buffer per frame"),
        start: 128,
        len: 0,
        handle: 0,
    });
    for (p, f) in pkts.iter_mut().zip(burst) {
        p.buf[128..128 + f.len()].copy_from_slice(f);
        p.len = f.len();
    }
    let mut verdicts = [Verdict::Hold(0); MAX_BURST];
    let k = burst.len();
    core.process_burst(port, &mut pkts[..k], &mut verdicts[..k], |_| {});
    verdicts[..k]
        .iter()
        .filter(|v| matches!(v, Verdict::Tx(_)))
        .count() as u64
}

/// Established IPv4 UDP nat packets alone on a fake clock: the flows made by a first pass,
/// then `rounds` passes over them in bursts of 32.
/// A core over `cfg` with room for 8192 flows, as the fixed-count rows run it.
fn counted_core(cfg: &Config) -> Core {
    let services = Arc::new(Services::from_config(cfg, &[NODE_MAC, [2, 0, 0, 0, 0, 2]]));
    Core::new(
        0,
        8192,
        Timeouts::default(),
        services,
        Arc::new(WorkerCounters::default()),
        1,
    )
}

/// `frames` in bursts of 32, `rounds` + 1 times on the fake clock (the first pass makes the
/// flows; every later one finds them). Returns (packets, sent).
fn run_rounds(core: &mut Core, frames: &[Vec<u8>], rounds: u32) -> (u64, u64) {
    let mut bufs = vec![vec![0u8; 2048]; MAX_BURST];
    let mut us = 0u64;
    let (mut n, mut sent) = (0u64, 0u64);
    for _ in 0..=rounds {
        for burst in frames.chunks(MAX_BURST) {
            us += burst.len() as u64;
            sent += run_burst(core, 0, burst, &mut bufs, us);
            n += burst.len() as u64;
        }
        core.state.outbox.clear();
    }
    (n, sent)
}

const NODE_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

fn established(rounds: u32) {
    let mut core = counted_core(&Config::from_toml(CONFIG).expect("config"));
    let mac = NODE_MAC;
    let client = [2, 0, 0, 0, 0xc, 1];
    let vip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
    let frames: Vec<Vec<u8>> = (0..1000u32)
        .map(|i| {
            let src = IpAddr::V4(Ipv4Addr::new(10, 100, (i >> 8) as u8, i as u8));
            testkit::udp(mac, client, src, 20_000 + i as u16, vip, 53, &[b'q'; 18])
        })
        .collect();
    let (n, sent) = run_rounds(&mut core, &frames, rounds);
    assert_eq!(sent, n, "every established packet is forwarded");
    println!("established: {rounds} rounds, {n} packets, {sent} sent");
}

fn quic(rounds: u32, keyed: bool) {
    let quic = "[[service]]\nname = \"h3\"\nvip = \"192.0.2.10\"\nport = 443\nprotocol = \"quic\"\n\
                mode = \"nat\"\n[[service.backend]]\nname = \"q1\"\naddress = \"10.1.0.11\"\n\
                port = 4433\nserver_id = \"0a01\"\npaths = [{ port = \"back\", mac = \"02:00:00:00:01:11\" }]\n\
                [[service.backend]]\nname = \"q2\"\naddress = \"10.1.0.12\"\nport = 4433\n\
                server_id = \"0a02\"\npaths = [{ port = \"back\", mac = \"02:00:00:00:01:12\" }]\n";
    let mut cfg = Config::from_toml(&format!("{CONFIG}{quic}")).expect("config");
    let key = keyed.then_some([7u8; 16]);
    cfg.services[2].quic.as_mut().expect("quic").key = key;
    let lb = quic_lb::Config::new(0, 2, 6, key).expect("lb");
    let mut core = counted_core(&cfg);
    let mac = NODE_MAC;
    let client = [2, 0, 0, 0, 0xc, 1];
    let vip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
    let frames: Vec<Vec<u8>> = (0..1000u32)
        .map(|i| {
            let src = IpAddr::V4(Ipv4Addr::new(10, 100, (i >> 8) as u8, i as u8));
            let mut cid = [0u8; quic_lb::MAX_CID_LEN];
            let n = lb.encode(
                &[0x0a, 1 + (i % 2) as u8],
                &i.to_be_bytes()[..].repeat(2)[..6],
                &mut cid,
            );
            let payload = [&[0x40][..], &cid[..n.expect("cid")], &[0u8; 8]].concat();
            testkit::udp(mac, client, src, 20_000 + i as u16, vip, 443, &payload)
        })
        .collect();
    let (n, sent) = run_rounds(&mut core, &frames, rounds);
    assert_eq!(sent, n, "every quic packet is forwarded");
    println!("quic: {rounds} rounds, {n} packets, {sent} sent");
}

/// Runs a SYN; returns the address of the backend its flow was bound to (from the table).
fn backend_of_syn(
    run: &mut impl FnMut(&mut Core, u8, &[u8]) -> Verdict,
    core: &mut Core,
    syn: &[u8],
) -> IpAddr {
    let v = run(core, 0, syn);
    assert!(matches!(v, Verdict::Tx(_)), "{v:?}");
    let key = tandem_dataplane::flow::FlowKey::v4(
        [syn[26], syn[27], syn[28], syn[29]],
        [192, 0, 2, 10],
        u16::from_be_bytes([syn[34], syn[35]]),
        80,
        6,
    );
    let rec = core.state.table.peek(&key).expect("flow stored");
    let addr = &core.services.backends[usize::from(rec.backend)].addr;
    IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
}
