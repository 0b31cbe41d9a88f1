//! Two and three nodes' sync endpoints against each other through a simulated network
//! (no sockets), driven with a fake clock; and the socket loop's throughput on loopback.

use super::codec::*;
use super::*;
use tandem_config::Config;
use tandem_dataplane::flow::{FlowKey, FlowState};
use tandem_dataplane::services::{PortInfo, Services};

const SECRET: &[u8] = b"0123456789abcdef-test-secret";

/// The nodes' sync ports: nothing is bound, the endpoints' datagrams go through `deliver`.
fn ports(n: usize) -> Vec<u16> {
    (0..n).map(|i| 7100 + i as u16).collect()
}

/// Free loopback ports, for the socket loop.
fn free_ports(n: usize) -> Vec<u16> {
    let socks: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    socks
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect()
}

fn config(id: u16, ports: &[u16]) -> Config {
    let mut t = format!(
        r#"
[node]
id = {id}
[eal]
args = []
[[port]]
name = "front"
devargs = "net_null0"
ipv4 = "10.0.0.{id}/24"
[[service]]
name = "web"
vip = "192.0.2.10"
port = 80
protocol = "tcp"
mode = "dsr"
[[service.backend]]
name = "a"
address = "10.0.0.11"
paths = [{{ port = "front" }}]
[cluster]
secret_file = "/dev/null"
heartbeat = "100ms"
dead_after = "300ms"
"#
    );
    for (i, p) in ports.iter().enumerate() {
        t += &format!(
            "[[cluster.node]]\nid = {}\naddress = \"10.0.0.{}\"\nsync = \"127.0.0.1:{p}\"\n",
            i + 1,
            i + 1
        );
    }
    Config::from_toml(&t).unwrap()
}

fn view_of(id: u16, cfg: &Config) -> ClusterView {
    let infos: Vec<PortInfo> = cfg
        .ports
        .iter()
        .map(|p| PortInfo::from_config(p, [2, 0, 0, 0, 0, id as u8]))
        .collect();
    let view = ClusterView::new(cfg.cluster.as_ref().unwrap(), id, &infos).unwrap();
    let _ = Services::build(1, infos, &cfg.services);
    view
}

fn node(id: u16, ports: &[u16], epoch: u64, now: Instant) -> Endpoint {
    let cfg = config(id, ports);
    let cl = cfg.cluster.as_ref().unwrap();
    Endpoint::new(
        cl,
        id,
        view_of(id, &cfg),
        SECRET,
        42,
        epoch,
        now,
        new_epoch(),
    )
    .unwrap()
}

/// A node's sync channel on a real socket.
fn socket_node(id: u16, ports: &[u16], now: Instant) -> Cluster {
    let cfg = config(id, ports);
    let cl = cfg.cluster.as_ref().unwrap();
    Cluster::new(cl, id, view_of(id, &cfg), SECRET, 42, 1, now).unwrap()
}

/// The network: every datagram the endpoints have to send reaches the endpoint at its
/// address (one not among them is lost). Returns what each endpoint must apply.
fn deliver(nodes: &mut [&mut Endpoint], now: Instant) -> Vec<Vec<Inbound>> {
    let mut flying = Vec::new();
    for n in nodes.iter_mut() {
        while let Some(t) = n.poll_transmit() {
            n.sent(&t);
            flying.push((n.addr, t));
        }
    }
    let mut out: Vec<Vec<Inbound>> = nodes.iter().map(|_| Vec::new()).collect();
    for (from, t) in flying {
        if let Some(i) = nodes.iter().position(|n| n.addr == t.to) {
            out[i].extend(nodes[i].handle(&t.data, from, now));
        }
    }
    out
}

/// Ticks every node at `now`, then lets their datagrams cross.
fn step(nodes: &mut [&mut Endpoint], now: Instant) -> Vec<Vec<Inbound>> {
    for n in nodes.iter_mut() {
        n.tick(now);
    }
    deliver(nodes, now)
}

fn record(i: u32) -> WireRecord {
    WireRecord {
        key: FlowKey::v4(
            [198, 51, 100, 7],
            [192, 0, 2, 10],
            (i % 60_000) as u16,
            80,
            6,
        ),
        backend: 0,
        primary_path: 0,
        backup_path: 0,
        state: FlowState::Established,
        ingress_port: 0,
        primary_node: 1,
        backup_node: 2,
        client_mac: [2, 0, 0, 0, 0xc, 1],
    }
}

#[test]
fn cold_start_then_death_and_return() {
    let ports = ports(2);
    let t0 = Instant::now();
    let mut a = node(1, &ports, 100, t0);
    let mut b = node(2, &ports, 100, t0);
    let mut t = t0;
    for _ in 0..10 {
        t += Duration::from_millis(100);
        step(&mut [&mut a, &mut b], t);
    }
    // Neither had a ready peer: both ready on their own after the grace period.
    assert_eq!(a.readiness, Readiness::Ready);
    assert_eq!(b.readiness, Readiness::Ready);
    assert_eq!(a.membership.eligible, 0b11);
    assert_eq!(b.membership.serving, 0b11);
    // Node 2 goes silent: dead on node 1 once dead_after has passed, not before.
    t += Duration::from_millis(250);
    a.tick(t);
    assert_eq!(a.membership.serving, 0b11);
    t += Duration::from_millis(100);
    let m = a.tick(t).expect("membership changed");
    assert_eq!(m.serving, 0b01);
    // What node 1 sent meanwhile went to a node that no longer reads.
    while a.poll_transmit().is_some() {}
    // Node 2 restarts (a later epoch): it asks node 1 for a snapshot before it is ready.
    drop(b);
    let mut b = node(2, &ports, 200, t);
    a.queue_record(&record(1), t);
    for i in 0..3 {
        t += Duration::from_millis(100);
        let inb = step(&mut [&mut a, &mut b], t);
        if let Some(Inbound::SnapshotRequest { from }) = inb[0].first() {
            assert_eq!(*from, 2);
            let recs: Vec<WireRecord> = (0..100).map(record).collect();
            a.answer_snapshot(2, &recs);
        }
        if i == 0 {
            assert_eq!(b.readiness, Readiness::Snapshotting);
        }
    }
    for _ in 0..3 {
        t += Duration::from_millis(100);
        step(&mut [&mut a, &mut b], t);
    }
    assert_eq!(b.readiness, Readiness::Ready);
    assert_eq!(b.snapshot_records, 100);
    assert_eq!(b.membership.eligible, 0b11);
    assert_eq!(a.membership.eligible, 0b11);
}

#[test]
fn records_reach_every_peer_batched() {
    let ports = ports(3);
    let t = Instant::now();
    let mut a = node(1, &ports, 1, t);
    let mut b = node(2, &ports, 1, t);
    let mut c = node(3, &ports, 1, t);
    for i in 0..100 {
        a.queue_record(&record(i), t);
    }
    a.flush(t);
    let mut inbound = deliver(&mut [&mut a, &mut b, &mut c], t)
        .into_iter()
        .skip(1);
    for n in [&mut b, &mut c] {
        let got: Vec<WireRecord> = inbound
            .next()
            .unwrap()
            .into_iter()
            .flat_map(|i| match i {
                Inbound::Records { from: 1, records } => records,
                _ => vec![],
            })
            .collect();
        assert_eq!(got, (0..100).map(record).collect::<Vec<_>>());
        // 100 records of 32 bytes: three datagrams (44 to a datagram).
        assert_eq!(n.peers[0].stats.datagrams_in, 3);
    }
    assert_eq!(a.peers[0].stats.records_out, 100);
}

#[test]
fn forged_replayed_and_unknown_datagrams_are_refused_and_counted() {
    let ports = ports(2);
    let t = Instant::now();
    let mut b = node(2, &ports, 1, t);
    let a_addr: SocketAddr = format!("127.0.0.1:{}", ports[0]).parse().unwrap();
    let datagram = |key: &Key, sender: u16, seq: u64| {
        let mut w = Writer::new(&Header {
            kind: Kind::Records,
            sender,
            epoch: 5,
            seq,
            count: 0,
            fingerprint: 42,
        });
        w.record(&record(7));
        w.finish(key)
    };
    let good = Key::derive(SECRET);
    let d = datagram(&good, 1, 1);
    assert!(matches!(
        b.accept(&d, a_addr, t),
        Ok(Some(Inbound::Records { .. }))
    ));
    assert_eq!(b.accept(&d, a_addr, t).unwrap_err(), Refusal::Replay);
    let forged = datagram(&Key::derive(b"not the cluster secret"), 1, 2);
    assert_eq!(b.accept(&forged, a_addr, t).unwrap_err(), Refusal::Auth);
    let stranger = datagram(&good, 9, 3);
    assert_eq!(
        b.accept(&stranger, a_addr, t).unwrap_err(),
        Refusal::UnknownNode
    );
    let elsewhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    assert_eq!(
        b.accept(&datagram(&good, 1, 4), elsewhere, t).unwrap_err(),
        Refusal::UnknownNode
    );
    // An earlier life of node 1 (lower epoch) replayed after it restarted.
    let mut w = Writer::new(&Header {
        kind: Kind::Heartbeat,
        sender: 1,
        epoch: 4,
        seq: 100,
        count: 0,
        fingerprint: 42,
    });
    w.heartbeat(&Heartbeat::default());
    assert_eq!(
        b.accept(&w.finish(&good), a_addr, t).unwrap_err(),
        Refusal::Replay
    );
    assert_eq!(b.peers[0].stats.replays, 2);
    assert_eq!(b.peers[0].stats.auth_failures, 1);
    assert_eq!(b.peers[0].stats.records_in, 1);
}

#[test]
fn drain_takes_the_node_out_of_new_flows_then_out_of_serving() {
    let ports = ports(2);
    let t0 = Instant::now();
    let mut a = node(1, &ports, 1, t0);
    let mut b = node(2, &ports, 1, t0);
    let mut t = t0;
    for _ in 0..8 {
        t += Duration::from_millis(100);
        step(&mut [&mut a, &mut b], t);
    }
    a.drain(Some(Duration::from_secs(1)), t);
    for _ in 0..2 {
        t += Duration::from_millis(100);
        step(&mut [&mut a, &mut b], t);
    }
    assert_eq!(a.status(t), "draining");
    assert_eq!(
        a.membership,
        Membership {
            serving: 0b11,
            eligible: 0b10
        }
    );
    assert_eq!(
        b.membership,
        Membership {
            serving: 0b11,
            eligible: 0b10
        }
    );
    for _ in 0..10 {
        t += Duration::from_millis(100);
        step(&mut [&mut a, &mut b], t);
    }
    assert_eq!(a.status(t), "drained");
    assert_eq!(
        b.membership,
        Membership {
            serving: 0b10,
            eligible: 0b10
        }
    );
    a.undrain();
    t += Duration::from_millis(100);
    step(&mut [&mut a, &mut b], t);
    t += Duration::from_millis(100);
    step(&mut [&mut a, &mut b], t);
    assert_eq!(b.membership.eligible, 0b11);
}

/// Replication throughput between two nodes' sockets on loopback (printed; asserted only
/// to be well above what a node's flow rate needs).
#[test]
fn sync_throughput() {
    let ports = free_ports(2);
    let t = Instant::now();
    let mut a = socket_node(1, &ports, t);
    let mut b = socket_node(2, &ports, t);
    let total = 200_000u32;
    let start = Instant::now();
    let mut got = 0usize;
    let mut i = 0u32;
    while i < total {
        // A few datagrams at a time, as the control loop would between reads.
        for _ in 0..44 * 16 {
            if i < total {
                a.queue_record(&record(i), t);
                i += 1;
            }
        }
        a.flush(t);
        for inb in b.receive(t, 1000) {
            if let Inbound::Records { records, .. } = inb {
                got += records.len();
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while got < total as usize && Instant::now() < deadline {
        for inb in b.receive(t, 1000) {
            if let Inbound::Records { records, .. } = inb {
                got += records.len();
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sync: {got} of {total} records in {secs:.3} s = {:.0} records/s ({} bytes per IPv4 record on the wire)",
        got as f64 / secs,
        record_len(false)
    );
    assert!(
        got as f64 >= total as f64 * 0.95,
        "lost {} records",
        total as usize - got
    );
}

#[test]
fn an_epoch_from_the_future_is_refused_and_does_not_lock_out_the_real_one() {
    let ports = ports(2);
    let t = Instant::now();
    let mut b = node(2, &ports, 1, t);
    let a_addr: SocketAddr = format!("127.0.0.1:{}", ports[0]).parse().unwrap();
    let key = Key::derive(SECRET);
    let hb = |epoch: u64, seq: u64| {
        let mut w = Writer::new(&Header {
            kind: Kind::Heartbeat,
            sender: 1,
            epoch,
            seq,
            count: 0,
            fingerprint: 42,
        });
        w.heartbeat(&Heartbeat::default());
        w.finish(&key)
    };
    assert_eq!(
        b.accept(&hb(u64::MAX, 1), a_addr, t).unwrap_err(),
        Refusal::FutureEpoch
    );
    let soon = new_epoch() + EPOCH_TOLERANCE.as_micros() as u64 * 2;
    assert_eq!(
        b.accept(&hb(soon, 1), a_addr, t).unwrap_err(),
        Refusal::FutureEpoch
    );
    // The node's real epoch (its start time) is still taken.
    let real = new_epoch();
    assert!(b.accept(&hb(real, 1), a_addr, t).is_ok());
    assert!(b.accept(&hb(real, 2), a_addr, t).is_ok());
}

#[test]
fn snapshot_requests_are_answered_at_most_once_a_second_per_peer() {
    let ports = ports(2);
    let t = Instant::now();
    let mut a = node(1, &ports, 1, t);
    assert!(a.may_answer_snapshot(2, t));
    a.answer_snapshot(2, &[record(1), record(2)]);
    // A flood of requests while the answer goes out, and within the second after: refused.
    for i in 0..1000 {
        assert!(!a.may_answer_snapshot(2, t + Duration::from_micros(i)));
    }
    // Drain what was queued (a tick sends a slice), then a request a second later is taken.
    for i in 0..5 {
        a.tick(t + Duration::from_millis(i));
    }
    assert!(!a.may_answer_snapshot(2, t + Duration::from_millis(900)));
    assert!(a.may_answer_snapshot(2, t + Duration::from_millis(1001)));
    assert_eq!(a.peers[0].stats.snapshot_requests_refused, 1001);
    // A stranger's request is not answered.
    assert!(!a.may_answer_snapshot(9, t + Duration::from_secs(5)));
}

/// A node that reaches no backend (its back link down, every path failing) stops serving
/// while a peer serves, so the peers send its flows to their backup nodes; it serves again
/// once it reaches one. Two nodes both cut off do not both stop: the last one serving goes
/// on, as a lone node would.
#[test]
fn a_node_that_reaches_no_backend_serves_nothing_while_a_peer_does() {
    let ports = ports(2);
    let t0 = Instant::now();
    let mut a = node(1, &ports, 1, t0);
    let mut b = node(2, &ports, 1, t0);
    let mut t = t0;
    fn run(a: &mut Endpoint, b: &mut Endpoint, reach: (bool, bool), t: &mut Instant) {
        for _ in 0..3 {
            *t += Duration::from_millis(100);
            a.set_reach(reach.0);
            b.set_reach(reach.1);
            step(&mut [a, b], *t);
        }
    }
    for _ in 0..3 {
        run(&mut a, &mut b, (true, true), &mut t);
    }
    let both = Membership {
        serving: 0b11,
        eligible: 0b11,
    };
    assert_eq!(b.membership, both);

    run(&mut a, &mut b, (false, true), &mut t);
    assert_eq!(a.status(t), "cut_off");
    let only_b = Membership {
        serving: 0b10,
        eligible: 0b10,
    };
    assert_eq!(a.membership, only_b);
    assert_eq!(b.membership, only_b);
    assert_eq!(Endpoint::peer_status(&b.peers[0]), "cut_off");
    assert_eq!(
        a.my_flags(t) & HB_READY,
        HB_READY,
        "it still holds the flows"
    );

    // Both cut off: b, the last one serving, goes on.
    run(&mut a, &mut b, (false, false), &mut t);
    assert!(a.cut_off);
    assert!(!b.cut_off);
    assert_eq!(b.membership, only_b);

    run(&mut a, &mut b, (true, true), &mut t);
    assert_eq!(a.status(t), "ready");
    assert_eq!(b.membership, both);
}

/// A complete snapshot makes a node ready only once its workers have taken the records:
/// until then it serves nothing (a packet of a flow its worker does not hold yet would be
/// bound afresh, perhaps to another backend: the soak saw a download reset so).
#[test]
fn a_snapshot_makes_the_node_ready_once_its_workers_took_it() {
    let ports = ports(2);
    let t0 = Instant::now();
    let mut a = node(1, &ports, 100, t0);
    let mut t = t0;
    for _ in 0..10 {
        t += Duration::from_millis(100);
        step(&mut [&mut a], t);
    }
    assert_eq!(a.readiness, Readiness::Ready);
    let mut b = node(2, &ports, 200, t);
    b.workers_behind = true;
    for _ in 0..6 {
        t += Duration::from_millis(100);
        let inb = step(&mut [&mut a, &mut b], t);
        if let Some(Inbound::SnapshotRequest { from }) = inb[0].first() {
            a.answer_snapshot(*from, &(0..100).map(record).collect::<Vec<_>>());
        }
    }
    assert_eq!(b.snapshot_records, 100);
    assert_eq!(b.readiness, Readiness::Applying);
    assert_eq!(b.status(t), "snapshotting");
    assert_eq!(a.membership.serving, 0b01);
    b.workers_behind = false;
    for _ in 0..2 {
        t += Duration::from_millis(100);
        step(&mut [&mut a, &mut b], t);
    }
    assert_eq!(b.readiness, Readiness::Ready);
    assert_eq!(a.membership.serving, 0b11);
}
