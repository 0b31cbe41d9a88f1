//! The packet core's QoS duties, with crafted frames and a fake clock: passive timing of
//! handshakes and responses, probe replies, admission limits with the queue, path health,
//! and the two-choice selections.

use super::*;
use crate::counters::DropReason;
use crate::flow::FlowKey;
use crate::messages::{FromWorker, ToWorker};
use crate::qos::admission::Waiting;
use crate::qos::hist::Kind;
use crate::qos::probe;
use crate::services::{BackendLive, Options};
use crate::services::{PortInfo, Services};
use crate::testkit::{self, run};
use crate::wire::ethernet::Mac;
use crate::wire::ipv4;
use crate::wire::l4::{ACK, FIN, RST, SYN};
use std::net::{IpAddr, Ipv4Addr};
use tandem_config::{Config, Selection};

const FRONT_MAC: Mac = [2, 0, 0, 0, 0, 1];
const BACK_MAC: Mac = [2, 0, 0, 0, 0, 2];
const CLIENT_MAC: Mac = [2, 0, 0, 0, 0xc, 1];
const A_MAC: Mac = [2, 0, 0, 0, 1, 0x11];

const CONFIG: &str = r#"
[node]
id = 1
[eal]
args = []
[qos]
timeout = "1s"
[health]
timeout = "1s"
[[port]]
name = "front"
devargs = "net_null0"
ipv4 = "10.0.0.1/24"
[[port]]
name = "back"
devargs = "net_null1"
ipv4 = "10.1.0.1/24"
[[port]]
name = "back2"
devargs = "net_null2"
ipv4 = "10.2.0.1/24"
[[service]]
name = "web"
vip = "192.0.2.10"
port = 80
protocol = "tcp"
mode = "nat"
queue = { max_len = 2, max_wait = "1s" }
[[service.backend]]
name = "a"
address = "10.1.0.11"
port = 8080
max_flows = 1
paths = [{ port = "back", mac = "02:00:00:00:01:11" }, { port = "back2", mac = "02:00:00:00:02:11" }]
[[service.backend]]
name = "b"
address = "10.1.0.12"
port = 8080
max_flows = 1
paths = [{ port = "back", mac = "02:00:00:00:01:12" }]
[[service]]
name = "dns"
vip = "192.0.2.53"
port = 53
protocol = "udp"
mode = "nat"
[[service.backend]]
name = "u1"
address = "10.1.0.21"
port = 53
paths = [{ port = "back", mac = "02:00:00:00:01:21" }]
[[service.backend]]
name = "u2"
address = "10.1.0.22"
port = 53
paths = [{ port = "back", mac = "02:00:00:00:01:22" }]
"#;

fn cfg() -> Config {
    Config::from_toml(CONFIG).unwrap()
}

fn snapshot(cfg: &Config, live: &[BackendLive], options: Options) -> Arc<Services> {
    let ports = cfg
        .ports
        .iter()
        .zip([FRONT_MAC, BACK_MAC, [2, 0, 0, 0, 0, 3]])
        .map(|(p, m)| PortInfo::from_config(p, m))
        .collect();
    Arc::new(Services::build_with(1, ports, &cfg.services, live, options))
}

fn core_with(live: &[BackendLive], options: Options) -> Core {
    let c = cfg();
    testkit::core_of(snapshot(&c, live, options), 1024, 7)
}

fn core() -> Core {
    core_with(&[], Options::from_config(&cfg()))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn client(sport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    testkit::tcp(
        FRONT_MAC,
        CLIENT_MAC,
        ip("198.51.100.7"),
        sport,
        ip("192.0.2.10"),
        80,
        flags,
        payload,
    )
}

fn server(backend: Ipv4Addr, sport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    testkit::tcp(
        BACK_MAC,
        A_MAC,
        IpAddr::V4(backend),
        8080,
        ip("198.51.100.7"),
        sport,
        flags,
        payload,
    )
}

fn dst_of(out: &[u8]) -> Ipv4Addr {
    ipv4::Packet::new_checked(&out[14..]).unwrap().dst()
}

/// Samples of `kind` recorded for backend `b` over all its paths, and their largest value.
fn samples(c: &Core, b: u16, kind: Kind) -> (u64, u64, u32, u32) {
    let mut n = 0;
    let mut max = 0;
    let (mut t, mut r) = (0, 0);
    for p in 0..4 {
        if let Some(s) = c.state.hist.series(b, p, kind) {
            n += s.hist.len();
            max = max.max(s.hist.max());
            t += s.timeouts;
            r += s.resets;
        }
    }
    (n, max, t, r)
}

#[test]
fn nat_handshakes_and_responses_are_timed_on_the_packet_path() {
    let mut c = core();
    let (v, out) = run(&mut c, 0, &client(40000, SYN, b""), 1);
    assert!(matches!(v, Verdict::Tx(_)), "{v:?}");
    let be = dst_of(&out);
    let b = c
        .services
        .backends
        .iter()
        .find(|x| x.addr[..4] == be.octets())
        .unwrap()
        .id;
    // SYN-ACK 2 ms after the SYN.
    assert_eq!(
        run(&mut c, 1, &server(be, 40000, SYN | ACK, b""), 3).0,
        Verdict::Tx(0)
    );
    let (n, max, _, _) = samples(&c, b, Kind::Handshake);
    assert_eq!(n, 1);
    assert!((1990..=2010).contains(&max), "{max}");
    run(&mut c, 0, &client(40000, ACK, b""), 4);
    // A request at 10 ms, the first response bytes at 60 ms: 50 ms; more bytes of the same
    // response time nothing.
    run(
        &mut c,
        0,
        &client(40000, ACK, b"GET / HTTP/1.0\r\n\r\n"),
        10,
    );
    run(
        &mut c,
        1,
        &server(be, 40000, ACK, b"HTTP/1.0 200 OK\r\n"),
        60,
    );
    run(&mut c, 1, &server(be, 40000, ACK, b"more"), 70);
    let (n, max, _, _) = samples(&c, b, Kind::Response);
    assert_eq!(n, 1);
    assert!((49_500..=50_500).contains(&max), "{max}");
    assert_eq!(c.state.counters.passive_samples.get(), 2);
    // A request left unanswered past qos.timeout counts as a timeout at the timeout value.
    run(
        &mut c,
        0,
        &client(40000, ACK, b"GET /slow HTTP/1.0\r\n\r\n"),
        100,
    );
    run(&mut c, 0, &client(40000, ACK, b""), 1200);
    let (n, max, timeouts, _) = samples(&c, b, Kind::Response);
    assert_eq!((n, timeouts), (2, 1));
    assert!(max >= 990_000, "{max}");
    // A client giving up after 1 s (its own timeout) counts as a timeout at once; one that
    // half-closes right after its request records only what it waited.
    run(
        &mut c,
        0,
        &client(40000, ACK, b"GET /slow HTTP/1.0\r\n\r\n"),
        1210,
    );
    run(&mut c, 0, &client(40000, FIN | ACK, b""), 2210);
    let (n, _, timeouts, _) = samples(&c, b, Kind::Response);
    assert_eq!((n, timeouts), (3, 2));
    run(
        &mut c,
        0,
        &client(40000, ACK, b"GET /half HTTP/1.0\r\n\r\n"),
        2220,
    );
    run(&mut c, 0, &client(40000, FIN | ACK, b""), 2221);
    let (n, _, timeouts, _) = samples(&c, b, Kind::Response);
    assert_eq!((n, timeouts), (4, 2));
    // A server reset during a request counts as a reset, also at the timeout value.
    run(
        &mut c,
        0,
        &client(40000, ACK, b"GET /x HTTP/1.0\r\n\r\n"),
        1300,
    );
    run(&mut c, 1, &server(be, 40000, RST | ACK, b""), 1301);
    let (_, _, _, resets) = samples(&c, b, Kind::Response);
    assert_eq!(resets, 1);
}

#[test]
fn probes_go_out_of_their_path_and_synacks_are_answered_with_a_reset() {
    let mut c = core();
    let a = c.services.backend_by_name("web", "a").unwrap().clone();
    let mut buf = [0u8; 256];
    c.set_now(Now::from_us(5_000));
    let (port, len) = c
        .build_probe(a.id, 1, 3, probe::Method::Tcp, &mut buf)
        .unwrap();
    assert_eq!(port, 2, "path 1 of backend a leaves by back2");
    let syn = &buf[..len];
    testkit::verify_checksums(syn).unwrap();
    assert_eq!(&syn[0..6], &[2, 0, 0, 0, 2, 0x11]);
    let p = ipv4::Packet::new_checked(&syn[14..]).unwrap();
    assert_eq!(p.src(), Ipv4Addr::new(10, 2, 0, 1));
    assert_eq!(p.dst(), Ipv4Addr::new(10, 1, 0, 11));
    let sport = u16::from_be_bytes([syn[34], syn[35]]);
    let seq = u32::from_be_bytes([syn[38], syn[39], syn[40], syn[41]]);
    // The backend's kernel answers; 700 us later the reply reaches a worker.
    let mut synack = testkit::tcp(
        [2, 0, 0, 0, 0, 3],
        [2, 0, 0, 0, 2, 0x11],
        ip("10.1.0.11"),
        8080,
        ip("10.2.0.1"),
        sport,
        SYN | ACK,
        b"",
    );
    synack[42..46].copy_from_slice(&seq.wrapping_add(1).to_be_bytes());
    let mut frame = vec![0u8; 2048];
    frame[128..128 + synack.len()].copy_from_slice(&synack);
    let mut pkt = PacketBuf {
        buf: &mut frame,
        start: 128,
        len: synack.len(),
        handle: 0,
    };
    c.set_now(Now::from_us(5_700));
    assert_eq!(c.process(2, &mut pkt), Verdict::Tx(2));
    let rst = pkt.frame().to_vec();
    testkit::verify_checksums(&rst).unwrap();
    assert_eq!(rst[47], RST);
    let s = c.state.hist.series(a.id, 1, Kind::Probe).unwrap();
    assert_eq!(s.hist.len(), 1);
    assert!((690..=710).contains(&s.hist.max()), "{}", s.hist.max());
    assert!(c.state.outbox.iter().any(|m| matches!(
        m,
        FromWorker::Probe { backend, path: 1, round: 3, outcome: probe::Outcome::Answered(700) } if *backend == a.id
    )));
    // The same reply from an address that is not the backend's is not taken for one.
    let mut forged = testkit::tcp(
        [2, 0, 0, 0, 0, 3],
        [2, 0, 0, 0, 2, 0x11],
        ip("10.2.0.99"),
        8080,
        ip("10.2.0.1"),
        sport,
        SYN | ACK,
        b"",
    );
    forged[42..46].copy_from_slice(&seq.wrapping_add(1).to_be_bytes());
    assert_eq!(
        run(&mut c, 2, &forged, 6).0,
        Verdict::Drop(DropReason::NotForUs)
    );
}

#[test]
fn full_backends_queue_new_flows_and_release_them_in_order() {
    let mut c = core();
    let frames: Vec<Vec<u8>> = (0..5).map(|i| client(41000 + i, SYN, b"")).collect();
    let mut out = Vec::new();
    for f in &frames[..2] {
        let (v, o) = run(&mut c, 0, f, 1);
        assert!(matches!(v, Verdict::Tx(_)), "{v:?}");
        out.push(dst_of(&o));
    }
    // Both backends took one flow each (the second by late binding when its pick was full).
    assert_ne!(out[0], out[1]);
    let a = c.services.backend_by_name("web", "a").unwrap().id;
    let b = c.services.backend_by_name("web", "b").unwrap().id;
    assert_eq!((c.state.load.active(a), c.state.load.active(b)), (1, 1));
    // The next two wait; the fifth finds the queue full; a retransmitted SYN of a waiting
    // flow is not queued twice.
    for (i, f) in frames.iter().enumerate().skip(2) {
        let (v, _) = testkit::run_as(&mut c, 0, f, 2, i);
        let want = if i < 4 {
            Verdict::Hold(0)
        } else {
            Verdict::Drop(DropReason::QueueFull)
        };
        assert_eq!(v, want, "flow {i}");
    }
    assert_eq!(
        testkit::run_as(&mut c, 0, &frames[2], 3, 2).0,
        Verdict::Drop(DropReason::QueueDuplicate)
    );
    assert_eq!(c.state.counters.dropped(DropReason::QueueFull), 1);
    fn rerun(
        c: &mut Core,
        w: &Waiting,
        now: u32,
        frames: &[Vec<u8>],
        released: &mut Vec<(usize, Ipv4Addr)>,
    ) -> bool {
        let (v, o) = run(c, w.port, &frames[w.handle], now);
        match v {
            Verdict::Hold(_) => false,
            Verdict::Tx(_) => {
                released.push((w.handle, dst_of(&o)));
                true
            }
            v => panic!("{v:?}"),
        }
    }
    let mut released = Vec::new();
    c.set_now(Now::from_us(4_000));
    c.release_queued(
        |c, w| rerun(c, w, 4, &frames, &mut released),
        |_| panic!("none expired"),
    );
    assert!(released.is_empty(), "no slot is free yet");
    // The first flow ends: its slot goes to the head of the queue, on that backend.
    run(&mut c, 0, &client(41000, FIN | ACK, b""), 5);
    assert_eq!(c.state.load.active(a) + c.state.load.active(b), 1);
    c.set_now(Now::from_us(5_000));
    c.release_queued(
        |c, w| rerun(c, w, 5, &frames, &mut released),
        |_| panic!("none expired"),
    );
    assert_eq!(released, vec![(2, out[0])]);
    let qc = &c.state.counters.queues[0];
    assert_eq!(
        (qc.queued.get(), qc.released.get(), qc.length.get()),
        (2, 1, 1)
    );
    assert_eq!(qc.max_wait_us.get(), 3_000);
    // The other waits past max_wait and is dropped.
    let mut expired = Vec::new();
    c.set_now(Now::from_us(1_002_001));
    c.release_queued(
        |c, w| rerun(c, w, 1002, &frames, &mut released),
        |w| expired.push(w.handle),
    );
    assert_eq!(expired, vec![3]);
    assert_eq!(c.state.counters.dropped(DropReason::QueueTimeout), 1);
    assert!(!c.has_queued());
}

#[test]
fn admitted_slots_come_back_when_flows_expire() {
    let mut c = core();
    run(&mut c, 0, &client(42000, SYN, b""), 1);
    run(&mut c, 0, &client(42001, SYN, b""), 1);
    let total = |c: &Core| {
        c.services
            .backends
            .iter()
            .map(|b| c.state.load.active(b.id))
            .sum::<u32>()
    };
    assert_eq!(total(&c), 2);
    // Half-open flows expire after tcp_syn_timeout (10 s); the sweep gives their slots back.
    for _ in 0..64 {
        c.set_now(Now::from_ms(20_000));
        c.housekeeping(1 << 12);
    }
    assert_eq!(total(&c), 0);
}

#[test]
fn a_path_whose_probes_fail_sends_its_flows_over_the_backup() {
    let c0 = cfg();
    let opts = Options::from_config(&c0);
    let mut c = core();
    // Find a flow to backend a whose primary path is 0.
    let mut sport = 43000;
    let (rec, key) = loop {
        let f = client(sport, SYN, b"");
        let (_, o) = run(&mut c, 0, &f, 1);
        let k = FlowKey::v4([198, 51, 100, 7], [192, 0, 2, 10], sport, 80, 6);
        let r = *c.state.table.peek(&k).unwrap();
        if dst_of(&o) == Ipv4Addr::new(10, 1, 0, 11) && r.primary_path == 0 {
            break (r, k);
        }
        run(&mut c, 0, &client(sport, RST, b""), 1);
        sport += 1;
    };
    assert_eq!(rec.backup_path, 1);
    let _ = key;
    let mut live = vec![BackendLive::default(); 4];
    live[0].path_up = vec![false, true];
    testkit::apply_at(&mut c, ToWorker::Services(snapshot(&c0, &live, opts)), 2);
    let (v, o) = run(&mut c, 0, &client(sport, ACK, b""), 3);
    assert_eq!(v, Verdict::Tx(2), "over back2");
    assert_eq!(&o[0..6], &[2, 0, 0, 0, 2, 0x11]);
    assert_eq!(c.state.counters.path_failovers.get(), 1);
}

#[test]
fn udp_flows_move_off_a_down_backend_when_configured() {
    let mut c0 = cfg();
    c0.health.on_backend_down = tandem_config::OnBackendDown::Move;
    let opts = Options::from_config(&c0);
    let mut c = core_with(&[], opts);
    let q = |sport| {
        testkit::udp(
            FRONT_MAC,
            CLIENT_MAC,
            ip("198.51.100.7"),
            sport,
            ip("192.0.2.53"),
            53,
            b"q",
        )
    };
    let (_, o) = run(&mut c, 0, &q(5000), 1);
    let first = dst_of(&o);
    let down = c
        .services
        .backends
        .iter()
        .find(|b| b.addr[..4] == first.octets())
        .unwrap()
        .id;
    let mut live = vec![BackendLive::default(); 4];
    live[usize::from(down)].up = false;
    live[usize::from(down)].path_up = vec![false];
    testkit::apply_at(&mut c, ToWorker::Services(snapshot(&c0, &live, opts)), 2);
    let (_, o) = run(&mut c, 0, &q(5000), 3);
    assert_ne!(dst_of(&o), first, "moved to the other backend");
    // With `keep` (the default) the flow stays on its backend.
    let keep = Options::from_config(&cfg());
    let mut c = core_with(&[], keep);
    let (_, o) = run(&mut c, 0, &q(5000), 1);
    assert_eq!(dst_of(&o), first, "the same hash picks the same backend");
    testkit::apply_at(&mut c, ToWorker::Services(snapshot(&cfg(), &live, keep)), 2);
    let (_, o) = run(&mut c, 0, &q(5000), 3);
    assert_eq!(dst_of(&o), first);
}

#[test]
fn least_flows_picks_the_less_loaded_of_two() {
    let mut c0 = cfg();
    for s in &mut c0.services {
        s.queue = tandem_config::QueueConfig::default();
        for b in &mut s.backends {
            b.max_flows = 0;
        }
    }
    let opts = Options {
        selection: Selection::LeastFlows,
        ..Options::from_config(&c0)
    };
    let mut c = testkit::core_of(snapshot(&c0, &[], opts), 4096, 7);
    // 200 new flows over two backends of equal weight: least-flows keeps them within one.
    for i in 0..200 {
        let (v, _) = run(&mut c, 0, &client(44000 + i, SYN, b""), 1);
        assert!(matches!(v, Verdict::Tx(_)));
    }
    let (a, b) = (c.state.load.active(0), c.state.load.active(1));
    assert_eq!(a + b, 200);
    assert!(a.abs_diff(b) <= 1, "{a} vs {b}");
}

/// At low load (each flow over before the next starts, so every backend has no active flow)
/// QoS selection follows the weights: ties go to the first, weight-proportional draw.
#[test]
fn qos_selection_follows_weights_at_low_load() {
    let mut c0 = cfg();
    c0.services[0].queue = tandem_config::QueueConfig::default();
    for (b, w) in c0.services[0].backends.iter_mut().zip([3, 1]) {
        b.max_flows = 0;
        b.weight = w;
    }
    let opts = Options::from_config(&c0);
    assert_eq!(opts.selection, Selection::Qos);
    let mut c = testkit::core_of(snapshot(&c0, &[], opts), 65536, 7);
    let mut to_a = 0;
    let n = 4000;
    for i in 0..n {
        let sport = 10_000 + i as u16;
        let (_, o) = run(&mut c, 0, &client(sport, SYN, b""), 1);
        if dst_of(&o) == Ipv4Addr::new(10, 1, 0, 11) {
            to_a += 1;
        }
        run(&mut c, 0, &client(sport, RST, b""), 1);
    }
    let share = f64::from(to_a) / f64::from(n);
    assert!((share - 0.75).abs() < 0.03, "a took {share}");
    assert_eq!(
        c.state.load.active(0) + c.state.load.active(1),
        0,
        "every slot given back"
    );
}
