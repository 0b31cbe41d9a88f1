//! The control thread with real packet cores on its channels: replication between
//! workers, the master flow view, records from peers, commands.

use super::*;
use crossbeam_channel::{Receiver, Sender};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::Duration;
use tandem_dataplane::counters::WorkerCounters;
use tandem_dataplane::flow::{FlowRecord, FlowState};
use tandem_dataplane::messages::FromWorker;
use tandem_dataplane::pipeline::{Core, Verdict};
use tandem_dataplane::testkit::{self, run};
use tandem_dataplane::wire::ethernet::Mac;
use tandem_dataplane::wire::l4::{ACK, SYN};

pub(crate) const CONFIG: &str = r#"
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
paths = [{ port = "back", mac = "02:00:00:00:01:11" }]
[[service.backend]]
name = "b"
address = "10.1.0.12"
port = 8080
paths = [{ port = "back" }]
"#;
pub(super) const MACS: [Mac; 2] = [[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]];

pub(crate) fn node(workers: usize) -> (Control, Vec<Core>) {
    node_from(CONFIG, workers)
}

/// A node of config `toml` (two ports, their MACs `MACS`) with `workers` packet cores.
pub(crate) fn node_from(toml: &str, workers: usize) -> (Control, Vec<Core>) {
    let cfg = Config::from_toml(toml).unwrap();
    let ports: Vec<PortInfo> = cfg
        .ports
        .iter()
        .zip(MACS)
        .map(|(p, m)| PortInfo::from_config(p, m))
        .collect();
    let mut links = Vec::new();
    let mut cores = Vec::new();
    let snap = Arc::new(Services::build(1, ports.clone(), &cfg.services));
    for i in 0..workers {
        let (to_tx, to_rx) = crossbeam_channel::bounded(1024);
        let (from_tx, from_rx) = crossbeam_channel::bounded(1024);
        let counters = Arc::new(WorkerCounters::default());
        let core = Core::new(
            i as u16,
            1024,
            Timeouts::default(),
            Arc::clone(&snap),
            Arc::clone(&counters),
            5,
        );
        cores.push(core);
        links.push(WorkerLink::new(to_tx, from_rx, counters));
        // The test moves messages itself: keep the worker ends alive in a side list.
        WORKER_ENDS.with(|w| w.borrow_mut().push((to_rx, from_tx)));
    }
    (Control::new(cfg, ports, links), cores)
}

/// Some traffic through worker 0: backend b learned by ARP, 20 flows opened, one frame that
/// is dropped; every event handed to the control thread.
pub(crate) fn traffic(ctl: &mut Control, cores: &mut [Core]) {
    ctl.refresh_neighbors(Instant::now());
    exchange(ctl, cores, 1);
    let arp = testkit::arp_request(
        [2, 0, 0, 0, 1, 0x12],
        "10.1.0.12".parse().unwrap(),
        "10.1.0.1".parse().unwrap(),
    );
    run(&mut cores[0], 1, &arp, 1);
    exchange(ctl, cores, 1);
    for sport in 30000..30020 {
        for flags in [SYN, ACK] {
            let f = testkit::tcp(
                MACS[0],
                [2, 0, 0, 0, 0xc, 1],
                "198.51.100.9".parse().unwrap(),
                sport,
                "192.0.2.10".parse().unwrap(),
                80,
                flags,
                b"",
            );
            run(&mut cores[0], 0, &f, 2);
        }
    }
    run(&mut cores[0], 0, &[0u8; 20], 2);
    exchange(ctl, cores, 2);
    ctl.sample_rates(Instant::now());
}

pub(super) fn reset_worker_ends() {
    WORKER_ENDS.with(|w| w.borrow_mut().clear());
}

/// Two nodes of one cluster (ids 1 and 2, sync on loopback), each from its own services
/// (`one` and `two`: configs without `[cluster]`), with no workers.
pub(crate) fn cluster_pair(one: &str, two: &str) -> (Control, Control) {
    let sync: Vec<u16> = (0..2)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|u| u.local_addr().unwrap().port())
        .collect();
    let make = |text: &str, id: u16| {
        let text = format!(
            "{text}[cluster]\nsecret_file = \"/dev/null\"\n\
             [[cluster.node]]\nid = 1\naddress = \"10.0.0.1\"\nsync = \"127.0.0.1:{}\"\n\
             [[cluster.node]]\nid = 2\naddress = \"10.0.0.2\"\nsync = \"127.0.0.1:{}\"\n",
            sync[0], sync[1]
        )
        .replace("[node]\nid = 1", &format!("[node]\nid = {id}"))
        .replace(
            "ipv4 = \"10.0.0.1/24\"",
            &format!("ipv4 = \"10.0.0.{id}/24\""),
        );
        let cfg = Config::from_toml(&text).unwrap();
        let ports: Vec<PortInfo> = cfg
            .ports
            .iter()
            .zip(MACS)
            .map(|(p, m)| PortInfo::from_config(p, m))
            .collect();
        let mut ctl = Control::new(cfg.clone(), ports, Vec::new());
        let view = ctl.snapshot.cluster.clone().unwrap();
        let cluster = Cluster::new(
            cfg.cluster.as_ref().unwrap(),
            id,
            view,
            b"0123456789abcdef-secret",
            1,
            1,
            Instant::now(),
        )
        .unwrap();
        ctl.attach_cluster(cluster);
        ctl
    };
    (make(one, 1), make(two, 2))
}

thread_local! {
    static WORKER_ENDS: std::cell::RefCell<Vec<(Receiver<ToWorker>, Sender<FromWorker>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// What the port layer does between bursts: outbox to control, inbox into the core.
pub(super) fn exchange(ctl: &mut Control, cores: &mut [Core], now_ms: u32) {
    // What the port layer's sibling rings carry: each worker's records to every other.
    for i in 0..cores.len() {
        let out: Vec<_> = cores[i].state.replicas.drain(..).collect();
        for (j, c) in cores.iter_mut().enumerate() {
            if j != i {
                c.set_now(tandem_dataplane::pipeline::Now::from_ms(now_ms));
                for r in &out {
                    c.apply_replica(r.key, r.rec);
                }
            }
        }
    }
    for (i, c) in cores.iter_mut().enumerate() {
        WORKER_ENDS.with(|w| {
            for ev in c.state.outbox.drain(..) {
                w.borrow()[i].1.send(ev).unwrap();
            }
        });
    }
    ctl.poll_workers(Instant::now());
    for (i, c) in cores.iter_mut().enumerate() {
        WORKER_ENDS.with(|w| {
            while let Ok(m) = w.borrow()[i].0.try_recv() {
                c.set_now(tandem_dataplane::pipeline::Now::from_ms(now_ms));
                c.apply(m);
            }
        });
    }
}

/// A nat flow created on worker 0 whose reply arrives on worker 1: the record reaches
/// worker 1 from worker 0 and the reply is rewritten to the VIP.
#[test]
fn nat_reply_on_another_worker_finds_the_record() {
    WORKER_ENDS.with(|w| w.borrow_mut().clear());
    let (mut ctl, mut cores) = node(2);
    let client: IpAddr = "198.51.100.7".parse().unwrap();
    let vip: IpAddr = "192.0.2.10".parse().unwrap();
    // Backend b has no MAC: teach both workers its neighbor first (the control thread
    // wants it resolved; an ARP from it answers).
    ctl.refresh_neighbors(Instant::now());
    exchange(&mut ctl, &mut cores, 1);
    let arp = testkit::arp_request(
        [2, 0, 0, 0, 1, 0x12],
        "10.1.0.12".parse().unwrap(),
        "10.1.0.1".parse().unwrap(),
    );
    run(&mut cores[0], 1, &arp, 1);
    exchange(&mut ctl, &mut cores, 1);
    let syn = testkit::tcp(
        MACS[0],
        [2, 0, 0, 0, 0xc, 1],
        client,
        40000,
        vip,
        80,
        SYN,
        b"",
    );
    let (v, out) = run(&mut cores[0], 0, &syn, 2);
    assert_eq!(v, Verdict::Tx(1));
    let backend = tandem_dataplane::wire::ipv4::Packet::new_checked(&out[14..])
        .unwrap()
        .dst();
    // Before replication worker 1 does not know the flow.
    let reply = testkit::tcp(
        MACS[1],
        [2, 0, 0, 0, 1, 0x11],
        IpAddr::V4(backend),
        8080,
        client,
        40000,
        SYN | ACK,
        b"",
    );
    // (the port layer holds such a reply back for a moment instead of dropping it).
    assert!(matches!(
        run(&mut cores[1], 1, &reply, 3).0,
        Verdict::Defer(_)
    ));
    exchange(&mut ctl, &mut cores, 3);
    let (v, out) = run(&mut cores[1], 1, &reply, 4);
    assert_eq!(v, Verdict::Tx(0));
    let p = tandem_dataplane::wire::ipv4::Packet::new_checked(&out[14..]).unwrap();
    assert_eq!(IpAddr::V4(p.src()), vip);
    testkit::verify_checksums(&out).unwrap();
    // The control thread's master view has it, for show flow.
    assert_eq!(ctl.flows.map.len(), 1);
    let shown =
        crate::commands::execute(&mut ctl, "show flow tcp 198.51.100.7:40000 192.0.2.10:80");
    assert_eq!(shown["ok"], true, "{shown}");
    let by_reply = crate::commands::execute(
        &mut ctl,
        &format!("show flow tcp {backend}:8080 198.51.100.7:40000"),
    );
    assert_eq!(by_reply["flow"], shown["flow"]);
    // The client's ACK on worker 1 finds the replicated forward record too.
    let ack = testkit::tcp(
        MACS[0],
        [2, 0, 0, 0, 0xc, 1],
        client,
        40000,
        vip,
        80,
        ACK,
        b"",
    );
    assert_eq!(run(&mut cores[1], 0, &ack, 5).0, Verdict::Tx(1));
    assert_eq!(cores[1].state.counters.flows_created.get(), 0);
}

#[test]
fn records_no_node_would_send_are_refused_by_reason() {
    use crate::cluster::codec::WireRecord;
    use crate::cluster::RecordRefusal as R;
    let (mut ctl, _peer) = cluster_pair(CONFIG, CONFIG);
    let good = WireRecord {
        key: tandem_dataplane::flow::FlowKey::v4([198, 51, 100, 7], [192, 0, 2, 10], 4000, 80, 6),
        backend: ctl.snapshot.tag_of(1),
        primary_path: 0,
        backup_path: 0,
        state: FlowState::Established,
        ingress_port: 0,
        primary_node: 2,
        backup_node: 1,
        client_mac: [2, 0, 0, 0, 0xc, 1],
    };
    assert!(ctl.record_from_wire(&good).is_ok());
    let no_backup = WireRecord {
        backup_node: 0,
        ..good
    };
    assert!(ctl.record_from_wire(&no_backup).is_ok());
    // A path the sender has and we do not: our first.
    let far_path = WireRecord {
        primary_path: 3,
        ..good
    };
    assert_eq!(ctl.record_from_wire(&far_path).unwrap().primary_path, 0);
    assert_eq!(ctl.record_from_wire(&good).unwrap().backend, 1);
    let mut udp_key = good.key;
    udp_key.proto = 17;
    for (bad, why) in [
        (
            WireRecord {
                backend: good.backend ^ 1,
                ..good
            },
            R::UnknownBackend,
        ),
        (
            WireRecord {
                ingress_port: 7,
                ..good
            },
            R::BadIndex,
        ),
        (
            WireRecord {
                key: tandem_dataplane::flow::FlowKey {
                    dport: 81,
                    ..good.key
                },
                ..good
            },
            R::UnknownService,
        ),
        (
            WireRecord {
                key: udp_key,
                ..good
            },
            R::UnknownService,
        ),
        (
            WireRecord {
                state: FlowState::Udp,
                ..good
            },
            R::StateForProtocol,
        ),
        (
            WireRecord {
                primary_node: 7,
                ..good
            },
            R::BadNodes,
        ),
        (
            WireRecord {
                backup_node: 7,
                ..good
            },
            R::BadNodes,
        ),
        (
            WireRecord {
                backup_node: 2,
                ..good
            },
            R::BadNodes,
        ),
    ] {
        assert_eq!(ctl.record_from_wire(&bad).err(), Some(why), "{bad:?}");
        ctl.take_peer_record(2, &bad, Instant::now());
    }
    let c = ctl.cluster.as_ref().unwrap();
    assert_eq!(c.sync.records_invalid[R::BadIndex.index()], 1);
    assert_eq!(c.sync.records_invalid[R::UnknownService.index()], 2);
    assert_eq!(c.sync.records_invalid[R::BadNodes.index()], 3);
    assert_eq!(c.sync.records_invalid.iter().sum::<u64>(), 8);
    assert!(ctl.flows.map.is_empty(), "nothing refused was stored");
}

#[test]
fn show_flows_pages_through_every_flow_once_and_caps_a_page() {
    WORKER_ENDS.with(|w| w.borrow_mut().clear());
    let (mut ctl, _cores) = node(1);
    let t0 = Instant::now();
    let n = 25_000u32;
    for i in 0..n {
        let key = tandem_dataplane::flow::FlowKey::v4(
            (0x0a00_0000 + i).to_be_bytes(),
            [192, 0, 2, 10],
            1024 + (i % 50_000) as u16,
            80,
            6,
        );
        // Some flows share an update time: the cursor orders them by key hash.
        let at = t0 + Duration::from_micros(u64::from(i / 3));
        ctl.flows.map.insert(
            key,
            MasterFlow {
                rec: FlowRecord::default(),
                worker: 0,
                node: 0,
                created: at,
                updated: at,
            },
        );
    }
    let mut seen = std::collections::HashSet::new();
    let mut cmd = "show flows --limit 1000".to_string();
    let mut pages = 0;
    loop {
        let started = Instant::now();
        let v = crate::commands::execute(&mut ctl, &cmd);
        let took = started.elapsed();
        pages += 1;
        assert_eq!(v["ok"], true, "{v}");
        let flows = v["flows"].as_array().unwrap();
        assert!(flows.len() <= 1_000);
        for f in flows {
            let id = format!("{}:{}", f["client"], f["client_port"]);
            assert!(seen.insert(format!("{f}")), "listed twice: {id}");
        }
        if pages == 1 {
            println!("a page of {} flows of {n} in {took:?}", flows.len());
        }
        match v["next"].as_str() {
            Some(next) => cmd = format!("show flows --after {next} --limit 1000"),
            None => break,
        }
    }
    assert_eq!(pages, 25);
    assert_eq!(seen.len(), n as usize);
    // The newest first.
    let v = crate::commands::execute(&mut ctl, "show flows --limit 1");
    let newest = ctl
        .flows
        .map
        .values()
        .map(|f| f.updated)
        .max()
        .unwrap()
        .duration_since(t0);
    assert!(newest.as_micros() >= u128::from(n / 3 - 1), "{v}");
    for bad in [
        "show flows --limit 100000000",
        "show flows --limit 1001",
        "show flows --limit 0",
        "show flows --after x",
        "show flows --what 1",
    ] {
        let v = crate::commands::execute(&mut ctl, bad);
        assert_eq!(v["ok"], false, "{bad}: {v}");
    }
}

#[test]
fn commands_answer_errors_and_change_backends() {
    WORKER_ENDS.with(|w| w.borrow_mut().clear());
    let (mut ctl, _cores) = node(1);
    for bad in [
        "",
        "show",
        "show nothing",
        "backend drain web",
        "backend drain web zz",
        "backend weight web a x",
        "show flows --limit x",
        "show flow tcp 1.2.3.4 5.6.7.8:80",
        "\u{0}\u{1}",
    ] {
        let v = crate::commands::execute(&mut ctl, bad);
        assert_eq!(v["ok"], false, "{bad:?} -> {v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let v = crate::commands::execute(&mut ctl, "backend drain web a");
    assert_eq!(v["ok"], true);
    assert_eq!(
        ctl.snapshot.backend_by_name("web", "a").unwrap().state,
        BackendState::Draining
    );
    let v = crate::commands::execute(&mut ctl, "backend weight web b 7");
    assert_eq!(v["ok"], true);
    let v = crate::commands::execute(&mut ctl, "show backends web");
    assert_eq!(v["backends"][1]["weight"], 7);
    assert_eq!(v["backends"][0]["state"], "draining");
    let help = crate::commands::execute(&mut ctl, "help");
    assert!(help["commands"].as_array().unwrap().len() >= 8);
    // Every snapshot change reaches the worker.
    WORKER_ENDS.with(|w| assert_eq!(w.borrow()[0].0.len(), 2));
}

#[test]
fn next_hops_wanted_include_arp_paths() {
    WORKER_ENDS.with(|w| w.borrow_mut().clear());
    let (ctl, _c) = node(1);
    let hops = ctl.wanted_next_hops();
    assert_eq!(hops.len(), 1);
    assert_eq!(&hops[0].ip[..4], &[10, 1, 0, 12]);
}

#[test]
fn a_trace_reaches_the_workers_and_its_frames_are_told_in_show_trace() {
    reset_worker_ends();
    let (mut ctl, mut cores) = node(2);
    // Backend b's MAC learned, so every flow is sent.
    ctl.refresh_neighbors(Instant::now());
    exchange(&mut ctl, &mut cores, 1);
    let arp = testkit::arp_request(
        [2, 0, 0, 0, 1, 0x12],
        "10.1.0.12".parse().unwrap(),
        "10.1.0.1".parse().unwrap(),
    );
    run(&mut cores[0], 1, &arp, 1);
    exchange(&mut ctl, &mut cores, 1);
    exchange(&mut ctl, &mut cores, 1);
    let a = crate::commands::execute(&mut ctl, "trace add host 198.51.100.9 and port 80 3");
    assert_eq!(a["ok"], true, "{a}");
    exchange(&mut ctl, &mut cores, 1);
    assert!(cores.iter().all(|c| c.state.trace.is_some()));
    for sport in 31000..31005 {
        let f = testkit::tcp(
            MACS[0],
            [2, 0, 0, 0, 0xc, 1],
            "198.51.100.9".parse().unwrap(),
            sport,
            "192.0.2.10".parse().unwrap(),
            80,
            SYN,
            b"",
        );
        run(&mut cores[0], 0, &f, 2);
    }
    // The next swap brings worker 0's records home.
    ctl.tracing.last_swap = Instant::now() - Duration::from_secs(1);
    ctl.trace_tick(Instant::now());
    exchange(&mut ctl, &mut cores, 3);
    exchange(&mut ctl, &mut cores, 3);
    let v = crate::commands::execute(&mut ctl, "show trace");
    let packets = v["packets"].as_array().unwrap();
    assert_eq!(packets.len(), 3, "the count is 3: {v}");
    let p = &packets[0];
    assert_eq!(
        (p["node"].clone(), p["port"].clone()),
        (json!(1), json!("front"))
    );
    let stages: Vec<&str> = p["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    for s in [
        "rx",
        "parse",
        "service",
        "flow",
        "selection",
        "path",
        "rewrite",
        "counted",
    ] {
        assert!(stages.contains(&s), "{s} missing from {stages:?}: {p}");
    }
    assert_eq!(p["verdict"], "sent out of port back");
    assert_eq!(v["running"]["left_here"], 0);
    let text = crate::client::render(&v);
    assert!(text.contains("  selection  a (weight"), "{text}");
    // Clear: the workers stop, the accounts go.
    crate::commands::execute(&mut ctl, "trace clear");
    exchange(&mut ctl, &mut cores, 4);
    assert!(cores.iter().all(|c| c.state.trace.is_none()));
    let v = crate::commands::execute(&mut ctl, "show trace");
    assert_eq!(v["packets"], json!([]));
    assert_eq!(v["running"], Value::Null);
}

#[test]
fn a_trace_added_on_one_node_runs_on_its_peer_and_accounts_cross_in_parts() {
    let (mut one, mut two) = cluster_pair(CONFIG, CONFIG);
    crate::commands::execute(&mut one, "trace add proto tcp 5");
    let deadline = Instant::now() + Duration::from_secs(5);
    while two.tracing.armed.is_none() && Instant::now() < deadline {
        two.poll_cluster(Instant::now());
        std::thread::sleep(Duration::from_millis(5));
    }
    let running = two.trace_view()["running"].clone();
    assert_eq!(running["filter"], "proto tcp");
    assert_eq!(running["added_on_node"], 1);
    // Node 2 traced a frame: its account (long: past one datagram) reaches node 1.
    let id = two.tracing.armed.as_ref().unwrap().id;
    let f = tandem_dataplane::trace::Filter::parse("tcp").unwrap();
    let mut t = tandem_dataplane::trace::Tracer::new(id, f, Arc::new(0.into()));
    let frame = testkit::tcp(
        MACS[0],
        [2, 0, 0, 0, 0xc, 1],
        "198.51.100.9".parse().unwrap(),
        40000,
        "192.0.2.10".parse().unwrap(),
        80,
        SYN,
        b"",
    );
    let mut r = tandem_dataplane::trace::Record::new(0, 0, 5, &frame);
    r.after = r.before;
    r.verdict = tandem_dataplane::trace::Outcome::Sent(1);
    r.aim = tandem_dataplane::trace::Aim::Service(0);
    r.n_candidates = 16;
    t.push(r);
    two.traced(Box::new(t));
    let mine = two.trace_view()["packets"][0].clone();
    assert!(mine.to_string().len() > crate::cluster::codec::TRACE_PART_BYTES);
    let deadline = Instant::now() + Duration::from_secs(5);
    while one.trace_view()["packets"] == json!([]) && Instant::now() < deadline {
        one.poll_cluster(Instant::now());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(one.trace_view()["packets"][0], mine);
    // Clear on node 1 clears node 2.
    crate::commands::execute(&mut one, "trace clear");
    let deadline = Instant::now() + Duration::from_secs(5);
    while two.tracing.armed.is_some() && Instant::now() < deadline {
        two.poll_cluster(Instant::now());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(two.tracing.armed.is_none());
    assert_eq!(two.trace_view()["packets"], json!([]));
}

/// Polls both nodes of a pair until `done`, for at most `within`.
fn poll_pair_until(
    one: &mut Control,
    two: &mut Control,
    within: Duration,
    done: impl Fn(&Control, &Control) -> bool,
) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        one.poll_cluster(Instant::now());
        two.poll_cluster(Instant::now());
        if done(one, two) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// A handshake that spans its primary's drain survives it: the flows a node bound that are
/// still half-open go to its peers when it stops taking new flows (they hold no half-open
/// record otherwise), and nothing else does: a ranking-only record, a peer's record, the
/// flows of a node that stays, or a half-open flow while the membership stands.
#[test]
fn half_open_flows_reach_the_peers_when_their_primary_drains() {
    const LONG: Duration = Duration::from_secs(10);
    const SHORT: Duration = Duration::from_millis(500);
    let (mut one, mut two) = cluster_pair(CONFIG, CONFIG);
    let serving = |c: &Control| c.cluster.as_ref().unwrap().sync.membership.serving;
    assert!(
        poll_pair_until(&mut one, &mut two, LONG, |a, b| serving(a) == 0b11
            && serving(b) == 0b11),
        "both nodes serve"
    );
    let now = Instant::now();
    let key = |port: u16| {
        tandem_dataplane::flow::FlowKey::v4([198, 51, 100, 7], [192, 0, 2, 10], port, 80, 6)
    };
    let half_open = FlowRecord {
        backend: 1,
        state: FlowState::SynSeen,
        primary_node: 0,
        backup_node: 1,
        ..FlowRecord::default()
    };
    let ranked_only = FlowRecord {
        backend: tandem_dataplane::flow::UNBOUND,
        primary_node: 1,
        backup_node: 0,
        ..FlowRecord::default()
    };
    assert!(!ranked_only.bound());
    for (port, rec) in [(4000, half_open), (4001, ranked_only)] {
        one.handle_for_test(
            FromWorker::Flow {
                worker: 0,
                key: key(port),
                rec,
                peers: false,
            },
            now,
        );
    }
    // A half-open flow node 1 heard of from node 2 (its own) is node 2's to share.
    let w = crate::cluster::codec::WireRecord::from_record(
        key(4002),
        &FlowRecord {
            primary_node: 1,
            backup_node: 0,
            ..half_open
        },
        one.snapshot.tag_of(1),
        |i| one.cluster.as_ref().unwrap().sync.view.id_of(i),
    );
    one.take_peer_record(2, &w, now);
    // Node 2's own half-open flow stays node 2's: node 1 leaving is no reason to share it.
    two.handle_for_test(
        FromWorker::Flow {
            worker: 0,
            key: key(4003),
            rec: FlowRecord {
                primary_node: 1,
                backup_node: 0,
                ..half_open
            },
            peers: false,
        },
        now,
    );
    // While the membership stands, node 2 hears of none of them.
    assert!(!poll_pair_until(&mut one, &mut two, SHORT, |_, b| b
        .flows
        .map
        .len()
        > 1));
    // Node 1 drains: node 2 gets its half-open flow, and only that.
    let r = crate::commands::execute(&mut one, "node drain 30s");
    assert_eq!(r["ok"], true, "{r}");
    assert!(
        poll_pair_until(&mut one, &mut two, LONG, |_, b| b.flows.map.len() > 1),
        "node 2 heard of the half-open flow"
    );
    poll_pair_until(&mut one, &mut two, SHORT, |_, _| false);
    assert!(
        !one.flows.map.contains_key(&key(4003)),
        "node 2 shared nothing"
    );
    let got: Vec<_> = two
        .flows
        .map
        .iter()
        .filter(|(_, f)| f.node != 0)
        .map(|(k, f)| (*k, f.node, f.rec))
        .collect();
    assert_eq!(got.len(), 1, "{got:?}");
    let (k, from, rec) = got[0];
    assert_eq!((k, from), (key(4000), 1));
    assert_eq!(rec.state, FlowState::SynSeen);
    assert_eq!(rec.backend, 1);
    // Node 2 stores node 1 (its index 0) as the flow's primary, as node 1 does.
    assert_eq!((rec.primary_node, rec.backup_node), (0, 1));
}
