//! The control thread's neighbor table with real packet cores on its channels: bounded per
//! port, entries only for what the node needs, unanswered ones aged out, a flood of
//! neighbor messages costing the flow records nothing, `show neighbors` paged.

use super::tests::{exchange, node_from, reset_worker_ends, CONFIG, MACS};
use super::*;
use crate::commands::execute;
use std::time::Duration;
use tandem_dataplane::counters::DropReason;
use tandem_dataplane::messages::FromWorker;
use tandem_dataplane::neighbor::NeighborKey;
use tandem_dataplane::testkit::{self, run};
use tandem_dataplane::wire::l4::{ACK, SYN};

/// The test node with a /16 on the back port and room for 16 neighbors there.
fn config() -> String {
    CONFIG.replace(
        "ipv4 = \"10.1.0.1/24\"",
        "ipv4 = \"10.1.0.1/16\"\nmax_neighbors = 16",
    )
}

fn key(i: u32) -> NeighborKey {
    NeighborKey::v4(1, (0x0a01_0100 + i).to_be_bytes())
}

#[test]
fn the_table_holds_what_the_node_needs_within_the_port_limit_and_ages() {
    reset_worker_ends();
    let (mut ctl, mut cores) = node_from(&config(), 1);
    let t0 = Instant::now();
    ctl.refresh_neighbors(t0);
    exchange(&mut ctl, &mut cores, 1);
    let b = NeighborKey::v4(1, [10, 1, 0, 12]);
    let a = NeighborKey::v4(1, [10, 1, 0, 11]);
    assert_eq!(ctl.neighbors()[&b].why, Why::Wanted);
    assert_eq!(
        ctl.neighbors()[&a].why,
        Why::Fixed,
        "a's path fixes its MAC"
    );
    // Workers ask for 100 addresses (clients' next hops, say): the port keeps 16.
    for i in 0..100 {
        ctl.handle_for_test(FromWorker::NeedNeighbor(key(i)), t0);
    }
    let on_back = ctl.neighbors().keys().filter(|k| k.port == 1).count();
    assert_eq!(on_back, 16);
    assert!(ctl.neighbors().contains_key(&b) && ctl.neighbors().contains_key(&a));
    assert_eq!(ctl.neighbor_counts().evicted, 100 - 14);
    exchange(&mut ctl, &mut cores, 2);
    assert_eq!(cores[0].state.neighbors.len(), ctl.neighbors().len());
    // One answers; the rest do not and are dropped, here and in the workers.
    let answering = key(99);
    let ip4: [u8; 4] = [
        answering.ip[0],
        answering.ip[1],
        answering.ip[2],
        answering.ip[3],
    ];
    let arp = testkit::arp_request([2, 0, 0, 0, 7, 7], ip4.into(), "10.1.0.1".parse().unwrap());
    run(&mut cores[0], 1, &arp, 3);
    exchange(&mut ctl, &mut cores, 3);
    assert_eq!(ctl.neighbors()[&answering].mac, Some([2, 0, 0, 0, 7, 7]));
    ctl.refresh_neighbors(t0 + GIVE_UP_AFTER + Duration::from_millis(10));
    exchange(&mut ctl, &mut cores, 4);
    assert_eq!(ctl.neighbor_counts().expired, 13);
    let mut left: Vec<_> = ctl.neighbors().keys().copied().collect();
    left.sort();
    assert_eq!(left.len(), 3, "a, b and the one that answered: {left:?}");
    assert!(ctl.neighbors().contains_key(&answering));
    assert_eq!(cores[0].state.neighbors.len(), 3);
    // Past the refresh and the give-up time without an answer, it goes too; the next hop
    // the config names stays, unresolved.
    ctl.refresh_neighbors(t0 + NEIGHBOR_REFRESH + GIVE_UP_AFTER + Duration::from_secs(1));
    assert!(!ctl.neighbors().contains_key(&answering));
    assert!(ctl.neighbors().contains_key(&b));
}

/// 200,000 gratuitous ARPs from distinct addresses on the back port's link among 1,000 new
/// flows: the neighbor table does not grow, the control thread hears nothing of them, and
/// every flow's record reaches it.
#[test]
fn a_flood_of_neighbor_messages_costs_the_flow_records_nothing() {
    reset_worker_ends();
    let (mut ctl, mut cores) = node_from(&config(), 1);
    ctl.refresh_neighbors(Instant::now());
    exchange(&mut ctl, &mut cores, 1);
    // Backend b answers (the node wants its MAC).
    let arp = testkit::arp_request(
        [2, 0, 0, 0, 1, 0x12],
        "10.1.0.12".parse().unwrap(),
        "10.1.0.1".parse().unwrap(),
    );
    run(&mut cores[0], 1, &arp, 1);
    exchange(&mut ctl, &mut cores, 1);
    let before = ctl.neighbors().len();
    let mut flows = 0;
    for i in 0..200_000u32 {
        let from = std::net::Ipv4Addr::from(0x0a01_0000 + 0x100 + (i % 60_000));
        let garp = testkit::arp_request([2, 0, 0, 9, (i >> 8) as u8, i as u8], from, from);
        run(&mut cores[0], 1, &garp, 2 + i / 1000);
        if i % 200 == 0 {
            for flags in [SYN, ACK] {
                let f = testkit::tcp(
                    MACS[0],
                    [2, 0, 0, 0, 0xc, 1],
                    "198.51.100.9".parse().unwrap(),
                    20_000 + flows,
                    "192.0.2.10".parse().unwrap(),
                    80,
                    flags,
                    b"",
                );
                run(&mut cores[0], 0, &f, 2 + i / 1000);
            }
            flows += 1;
        }
        if i % 1000 == 999 {
            exchange(&mut ctl, &mut cores, 2 + i / 1000);
        }
    }
    exchange(&mut ctl, &mut cores, 300);
    let c = &cores[0].state.counters;
    assert_eq!(flows, 1000);
    assert_eq!(c.flows_created.get(), 1000);
    assert_eq!(
        ctl.flows().len(),
        1000,
        "every record reached the control thread"
    );
    assert_eq!(c.outbox_overflow.get(), 0);
    assert_eq!(c.dropped(DropReason::NoNeighbor), 0);
    assert_eq!(ctl.neighbors().len(), before);
    assert_eq!(cores[0].state.neighbors.len(), before);
    assert!(c.neighbors_unwanted.get() >= 199_000);
}

#[test]
fn show_neighbors_pages() {
    reset_worker_ends();
    let (mut ctl, mut cores) = node_from(&config(), 1);
    let t0 = Instant::now();
    ctl.refresh_neighbors(t0);
    for i in 0..5 {
        ctl.handle_for_test(FromWorker::NeedNeighbor(key(i)), t0);
    }
    exchange(&mut ctl, &mut cores, 1);
    let total = ctl.neighbors().len();
    assert_eq!(total, 7);
    let mut seen = Vec::new();
    let mut line = "show neighbors --limit 3".to_string();
    loop {
        let v = execute(&mut ctl, &line);
        assert_eq!(v["ok"], true, "{v}");
        for n in v["neighbors"].as_array().unwrap() {
            seen.push(format!(
                "{}/{}",
                n["port"].as_str().unwrap(),
                n["address"].as_str().unwrap()
            ));
        }
        match v["next"].as_str() {
            Some(next) => line = format!("show neighbors --limit 3 --after {next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), total, "{seen:?}");
    let mut sorted = seen.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), total);
    let v = execute(&mut ctl, "show neighbors --limit 0");
    assert_eq!(v["ok"], false);
    let v = execute(&mut ctl, "show neighbors --after nowhere/10.0.0.1");
    assert_eq!(v["ok"], false);
    let v = execute(&mut ctl, "show neighbors");
    assert_eq!(v["ports"][1]["max_neighbors"], 16);
}
