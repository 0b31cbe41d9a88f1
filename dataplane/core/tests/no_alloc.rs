//! The packet path never allocates: a counting global allocator watches the packet core
//! process a mix of frames (new nat, dsr and gue flows, replies, ARP, ICMP, drops, latency
//! samples, a health probe and its reply, new flows held in an admission queue and
//! released) after warm-up, and must see no allocation at all; then the same with a packet
//! trace on.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use tandem_config::Config;
use tandem_dataplane::counters::WorkerCounters;
use tandem_dataplane::flow::Timeouts;
use tandem_dataplane::messages::ToWorker;
use tandem_dataplane::pipeline::{Core, Now, PacketBuf, Verdict};
use tandem_dataplane::services::Services;
use tandem_dataplane::testkit;
use tandem_dataplane::trace::{Filter, Tracer};
use tandem_dataplane::wire::l4::{ACK, SYN};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const CONFIG: &str = r#"
[node]
id = 1
[eal]
args = []
[[port]]
name = "front"
devargs = "net_null0"
ipv4 = "10.0.0.1/24"
ipv6 = "fd00::1/64"
gateway = "10.0.0.254"
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
paths = [{ port = "back" }]
[[service.backend]]
name = "b"
address = "10.1.0.12"
port = 8080
paths = [{ port = "back", mac = "02:00:00:00:01:12" }]
[[service]]
name = "d"
vip = "192.0.2.20"
port = 80
protocol = "tcp"
mode = "dsr"
[[service.backend]]
name = "d1"
address = "10.1.0.21"
paths = [{ port = "back", mac = "02:00:00:00:01:21" }]
[[service]]
name = "g"
vip = "192.0.2.30"
port = 53
protocol = "udp"
mode = "gue"
[[service.backend]]
name = "g1"
address = "10.1.0.31"
paths = [{ port = "back", mac = "02:00:00:00:01:31" }]
[[service]]
name = "lim"
vip = "192.0.2.40"
port = 80
protocol = "tcp"
mode = "nat"
queue = { max_len = 16, max_wait = "2s" }
[[service.backend]]
name = "l1"
address = "10.1.0.41"
port = 8080
max_flows = 1
paths = [{ port = "back", mac = "02:00:00:00:01:41" }]
"#;

/// A SYN-ACK from backend b (10.1.0.12:8080) to the node's back port (10.1.0.1); the test
/// fills in the probe's port and acknowledgement number.
const PROBE_REPLY_TEMPLATE: [u8; 54] = [
    2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 1, 0x12, 0x08, 0x00, // Ethernet
    0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 1, 0, 12, 10, 1, 0, 1, // IPv4
    0x1f, 0x90, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x12, 0xff, 0xff, 0, 0, 0, 0, // TCP
];

#[test]
fn packet_path_does_not_allocate() {
    let cfg = Config::from_toml(CONFIG).unwrap();
    let macs = [[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]];
    let services = Arc::new(Services::from_config(&cfg, &macs));
    let mut core = Core::new(
        0,
        100_000,
        Timeouts::default(),
        services,
        Arc::new(WorkerCounters::default()),
        1,
    );
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let client = [2, 0, 0, 0, 0xc, 1];
    let mut frames = Vec::new();
    for i in 0..2000u16 {
        frames.push(testkit::tcp(
            macs[0],
            client,
            ip("198.51.100.7"),
            1024 + i,
            ip("192.0.2.10"),
            80,
            SYN,
            b"",
        ));
        frames.push(testkit::tcp(
            macs[0],
            client,
            ip("198.51.100.7"),
            1024 + i,
            ip("192.0.2.10"),
            80,
            ACK,
            b"data",
        ));
        frames.push(testkit::tcp(
            macs[0],
            client,
            ip("198.51.100.8"),
            1024 + i,
            ip("192.0.2.20"),
            80,
            SYN,
            b"",
        ));
        frames.push(testkit::udp(
            macs[0],
            client,
            ip("198.51.100.9"),
            1024 + i,
            ip("192.0.2.30"),
            53,
            b"q",
        ));
        for b in ["10.1.0.11", "10.1.0.12"] {
            for (flags, data) in [(SYN | ACK, &b""[..]), (ACK, &b"HTTP/1.0 200 OK"[..])] {
                frames.push(testkit::tcp(
                    macs[1],
                    [2, 0, 0, 0, 1, 0x11],
                    ip(b),
                    8080,
                    ip("198.51.100.7"),
                    1024 + i,
                    flags,
                    data,
                ));
            }
        }
    }
    frames.push(testkit::arp_request(
        client,
        Ipv4Addr::new(10, 0, 0, 254),
        Ipv4Addr::new(10, 0, 0, 1),
    ));
    frames.push(testkit::icmp_echo(
        macs[0],
        client,
        ip("10.0.0.9"),
        ip("192.0.2.10"),
        1,
        1,
    ));
    frames.push(testkit::icmp_echo(
        macs[0],
        client,
        ip("fd00::9"),
        ip("fd00::1"),
        1,
        1,
    ));
    frames.push(testkit::neighbor_solicit(
        client,
        "fd00::9".parse().unwrap(),
        "fd00::1".parse().unwrap(),
    ));
    frames.push(vec![0u8; 7]);
    let mut buf = vec![0u8; 2048];
    let mut run = |core: &mut Core, frames: &[Vec<u8>], now: u32| -> usize {
        let mut sent = 0;
        for f in frames {
            buf[128..128 + f.len()].copy_from_slice(f);
            let mut p = PacketBuf {
                buf: &mut buf,
                start: 128,
                len: f.len(),
                handle: 0,
            };
            let port = if f.get(6..12) == Some(&client[..]) {
                0
            } else {
                1
            };
            core.set_now(Now::from_ms(now));
            if let Verdict::Tx(_) = core.process(port, &mut p) {
                sent += 1;
            }
        }
        sent
    };
    // New flows to a backend that takes one at a time: the rest wait in the queue.
    let lim: Vec<Vec<u8>> = (0..8u16)
        .map(|i| {
            testkit::tcp(
                macs[0],
                client,
                ip("198.51.100.77"),
                3000 + i,
                ip("192.0.2.40"),
                80,
                SYN,
                b"",
            )
        })
        .collect();
    let mut qbuf = vec![0u8; 2048];
    let mut synack = vec![0u8; 60];
    // Warm up on a few frames, hand the events off as the port layer would, then count.
    run(&mut core, &frames[..16], 1);
    core.state.outbox.clear();
    COUNTING.with(|c| c.set(true));
    core.set_now(Now::from_us(2_000));
    let sent = run(&mut core, &frames, 2);
    // A probe to backend b over its path, and the backend's SYN-ACK to it.
    let mut probe = [0u8; 128];
    let (_, n) = core
        .build_probe(
            1,
            0,
            1,
            tandem_dataplane::qos::probe::Method::Tcp,
            &mut probe,
        )
        .expect("probe");
    let sport = u16::from_be_bytes([probe[34], probe[35]]);
    let seq = u32::from_be_bytes([probe[38], probe[39], probe[40], probe[41]]);
    assert!(n > 0);
    synack[..54].copy_from_slice(&PROBE_REPLY_TEMPLATE);
    synack[36..38].copy_from_slice(&sport.to_be_bytes());
    synack[42..46].copy_from_slice(&seq.wrapping_add(1).to_be_bytes());
    let replies = std::slice::from_ref(&synack);
    assert_eq!(run(&mut core, replies, 2), 1, "the reset goes out");
    let mut held = 0;
    for (h, f) in lim.iter().enumerate() {
        qbuf[128..128 + f.len()].copy_from_slice(f);
        let mut p = PacketBuf {
            buf: &mut qbuf,
            start: 128,
            len: f.len(),
            handle: h,
        };
        if let Verdict::Hold(_) = core.process(0, &mut p) {
            held += 1;
        }
    }
    assert_eq!(held, 7);
    core.release_queued(|_, _| false, |_| {});
    core.set_now(Now::from_ms(3));
    core.housekeeping(1 << 20);
    COUNTING.with(|c| c.set(false));
    let allocs = ALLOCS.with(Cell::get);
    println!(
        "{} frames, {sent} sent, {} events queued, {allocs} allocations",
        frames.len(),
        core.state.outbox.len()
    );
    assert!(sent > frames.len() / 2);
    assert_eq!(allocs, 0, "the packet path allocated");

    // A trace on (its tracer made off the packet path, as the control thread makes it):
    // tracing allocates nothing either, its records full or not.
    let f = Filter::parse("host 198.51.100.7").unwrap();
    let t = Tracer::new(1, f, Arc::new(AtomicU32::new(10_000)));
    core.apply(ToWorker::Trace(Some(Box::new(t))));
    core.state.outbox.clear();
    COUNTING.with(|c| c.set(true));
    let traced_sent = run(&mut core, &frames, 4);
    COUNTING.with(|c| c.set(false));
    let t = core.state.trace.as_ref().unwrap();
    assert_eq!(
        t.records().len(),
        tandem_dataplane::trace::RECORDS_PER_TRACER
    );
    assert!(t.missed > 0);
    assert!(traced_sent > frames.len() / 2);
    assert_eq!(
        ALLOCS.with(Cell::get),
        0,
        "the traced packet path allocated"
    );
}
