//! Changing a live node with real packet cores on its channels: backends added and removed
//! under flows, reloads applied or refused, the running configuration printed and read back.

use super::tests::{exchange, node, reset_worker_ends, CONFIG, MACS};
use super::*;
use crate::commands::execute;
use std::net::IpAddr;
use std::time::Duration;
use tandem_dataplane::pipeline::{Core, Verdict};
use tandem_dataplane::testkit::{self, run};
use tandem_dataplane::wire::ethernet::Mac;
use tandem_dataplane::wire::l4::{ACK, RST, SYN};

const CLIENT_MAC: Mac = [2, 0, 0, 0, 0xc, 1];

/// A client packet to the VIP from 198.51.100.7:`sport`.
fn to_vip(sport: u16, flags: u8) -> Vec<u8> {
    testkit::tcp(
        MACS[0],
        CLIENT_MAC,
        "198.51.100.7".parse().unwrap(),
        sport,
        "192.0.2.10".parse().unwrap(),
        80,
        flags,
        b"",
    )
}

/// Where the core sent a client packet: the backend address it was rewritten to.
fn sent_to(core: &mut Core, frame: &[u8], now_ms: u32) -> Option<IpAddr> {
    let (v, out) = run(core, 0, frame, now_ms);
    if v != Verdict::Tx(1) {
        return None;
    }
    let p = tandem_dataplane::wire::ipv4::Packet::new_checked(&out[14..]).ok()?;
    Some(IpAddr::V4(p.dst()))
}

fn backend_row(ctl: &mut Control, name: &str) -> Option<serde_json::Value> {
    let v = execute(ctl, "show backends web");
    v["backends"]
        .as_array()?
        .iter()
        .find(|b| b["backend"] == name)
        .cloned()
}

/// Teaches the core backend b's MAC (its path has none).
fn learn_b(ctl: &mut Control, cores: &mut [Core]) {
    ctl.refresh_neighbors(Instant::now());
    exchange(ctl, cores, 1);
    let arp = testkit::arp_request(
        [2, 0, 0, 0, 1, 0x12],
        "10.1.0.12".parse().unwrap(),
        "10.1.0.1".parse().unwrap(),
    );
    run(&mut cores[0], 1, &arp, 1);
    exchange(ctl, cores, 1);
}

#[test]
fn a_removed_backend_keeps_its_flows_takes_no_new_ones_and_is_gone_when_they_end() {
    reset_worker_ends();
    let (mut ctl, mut cores) = node(1);
    learn_b(&mut ctl, &mut cores);
    // Flows on each backend, established.
    let a: IpAddr = "10.1.0.11".parse().unwrap();
    let b: IpAddr = "10.1.0.12".parse().unwrap();
    let mut on: std::collections::HashMap<IpAddr, Vec<u16>> = Default::default();
    for sport in 40000..40020 {
        let to = sent_to(&mut cores[0], &to_vip(sport, SYN), 2).unwrap();
        assert_eq!(sent_to(&mut cores[0], &to_vip(sport, ACK), 2), Some(to));
        on.entry(to).or_default().push(sport);
    }
    exchange(&mut ctl, &mut cores, 2);
    let (on_a, on_b) = (on[&a][0], on[&b][0]);
    let gen = ctl.snapshot().generation;
    let v = execute(&mut ctl, "backend remove web a");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["changes"][0], "backend web/a removed (draining)", "{v}");
    assert_eq!(ctl.snapshot().generation, gen + 1);
    exchange(&mut ctl, &mut cores, 3);
    assert_eq!(backend_row(&mut ctl, "a").unwrap()["state"], "removing");
    // Its flow goes on; new flows all go to b.
    assert_eq!(sent_to(&mut cores[0], &to_vip(on_a, ACK), 4), Some(a));
    assert_eq!(sent_to(&mut cores[0], &to_vip(on_b, ACK), 4), Some(b));
    for sport in 41000..41050 {
        assert_eq!(sent_to(&mut cores[0], &to_vip(sport, SYN), 5), Some(b));
    }
    exchange(&mut ctl, &mut cores, 5);
    // While it drains, its name cannot come back at another address.
    let v = execute(&mut ctl, "backend add web a 10.1.0.14:8080 path back");
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("is still draining at 10.1.0.11"),
        "{v}"
    );
    let later = Instant::now() + Duration::from_secs(120);
    assert!(!ctl.reap_removed(later), "a flow still holds it");
    assert!(backend_row(&mut ctl, "a").is_some());
    // Its flows end: long enough after, the backend is gone.
    for &p in &on[&a] {
        assert_eq!(sent_to(&mut cores[0], &to_vip(p, RST), 6), Some(a));
    }
    exchange(&mut ctl, &mut cores, 6);
    assert!(!ctl.reap_removed(Instant::now()), "not before the grace");
    assert!(ctl.reap_removed(later));
    exchange(&mut ctl, &mut cores, 7);
    assert!(backend_row(&mut ctl, "a").is_none());
    assert!(ctl.snapshot().backends[0].is_vacant());
    // b kept its id, its flows and its place in the config.
    assert_eq!(sent_to(&mut cores[0], &to_vip(on_b, ACK), 8), Some(b));
    let cfg = Config::from_toml(&ctl.running_config().to_toml()).unwrap();
    assert_eq!(cfg.services[0].backends.len(), 1);
    assert_eq!(cfg.services[0].backends[0].name, "b");
}

#[test]
fn backend_add_is_checked_like_a_config_and_a_bad_one_changes_nothing() {
    reset_worker_ends();
    let (mut ctl, mut cores) = node(1);
    learn_b(&mut ctl, &mut cores);
    let gen = ctl.snapshot().generation;
    for (line, says) in [
        (
            "backend add nosuch c 10.1.0.13",
            "no service named \"nosuch\"",
        ),
        (
            "backend add web a 10.1.0.14",
            "already has a backend named \"a\"",
        ),
        ("backend add web c 10.1.0.300:8080", "is not ADDRESS"),
        ("backend add web c 10.1.0.13 path nowhere", "nowhere"),
        ("backend add web c 10.1.0.13 weight lots", "whole number"),
        ("backend add web c 10.1.0.13 weight 20000", "weight"),
        ("backend add web c 10.0.0.1 path back", "own address"),
        ("backend add web c fd01::13 path back", "address family"),
        ("backend add web c 10.1.0.13 path back/02:00:00", "mac"),
        // Names reach logs and JSON: a documented set of characters only.
        ("backend add web c\u{1b}[2J 10.1.0.13 path back", "U+001B"),
        ("backend add web c\0 10.1.0.13 path back", "U+0000"),
        ("backend add web \u{202e}c 10.1.0.13 path back", "U+202E"),
        ("backend add web c/d 10.1.0.13 path back", "'/'"),
        ("backend add web c\"d 10.1.0.13 path back", "'\"'"),
        ("backend add web -c 10.1.0.13 path back", "start with"),
        (
            &format!("backend add web {} 10.1.0.13 path back", "c".repeat(64)),
            "longer",
        ),
        // Off the back port's subnet, and the port has no gateway.
        ("backend add web c 10.9.0.13 path back", "no gateway"),
        ("backend add web c 10.9.0.13", "no port reaches"),
        ("backend add web c 192.0.2.10 path back", "VIP"),
    ] {
        let v = execute(&mut ctl, line);
        assert_eq!(v["ok"], false, "{line}: {v}");
        let mut text = v["error"].as_str().unwrap().to_string();
        for p in v["problems"].as_array().into_iter().flatten() {
            text += &format!(
                "; {}: {}",
                p["key"].as_str().unwrap(),
                p["why"].as_str().unwrap()
            );
        }
        assert!(text.contains(says), "{line}: {text}");
    }
    assert_eq!(ctl.snapshot().generation, gen, "nothing changed");
    assert_eq!(ctl.snapshot().backends.len(), 2);
    let v = execute(
        &mut ctl,
        "backend add web c 10.1.0.13:8080 weight 2 path back/02:00:00:00:01:13",
    );
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["changes"][0], "backend web/c added", "{v}");
    exchange(&mut ctl, &mut cores, 2);
    let row = backend_row(&mut ctl, "c").unwrap();
    assert_eq!(row["weight"], 2);
    assert_eq!(row["state"], "active");
    // New flows reach it, about half of them (weights 1, 1, 2).
    let c: IpAddr = "10.1.0.13".parse().unwrap();
    let n = (42000..42400)
        .filter(|&p| sent_to(&mut cores[0], &to_vip(p, SYN), 3) == Some(c))
        .count();
    assert!((120..280).contains(&n), "{n} of 400 to c");
    // The running configuration has it, and reads back.
    let shown = execute(&mut ctl, "show config");
    let cfg = Config::from_toml(shown["toml"].as_str().unwrap()).unwrap();
    assert_eq!(cfg.services[0].backends[2].name, "c");
    assert_eq!(cfg.services[0].backends[2].weight, 2);
    // Without a path: every port that reaches it (here the back port, whose subnet it is
    // on; the front port has no gateway).
    let v = execute(&mut ctl, "backend add web d 10.1.0.14:8080");
    assert_eq!(v["ok"], true, "{v}");
    let shown = execute(&mut ctl, "show config");
    let cfg = Config::from_toml(shown["toml"].as_str().unwrap()).unwrap();
    let d = &cfg.services[0].backends[3];
    assert_eq!(
        (d.name.as_str(), d.paths.len(), d.paths[0].port),
        ("d", 1, 1)
    );
}

/// A file of its own for each test: tests run in parallel.
fn temp_config(tag: &str, text: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("tandem-reload-{}-{tag}.toml", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn reload_applies_the_difference_and_refuses_what_needs_a_restart() {
    reset_worker_ends();
    let (ctl, mut cores) = node(1);
    let path = temp_config("apply", CONFIG);
    let mut ctl = ctl.with_config_path(path.clone());
    learn_b(&mut ctl, &mut cores);
    let v = execute(&mut ctl, "reload");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["changes"].as_array().unwrap().len(), 0, "{v}");
    // a weighs 5, b goes, c comes, probes slow down, UDP flows idle out sooner.
    let next = CONFIG
        .replace(
            "name = \"b\"\naddress = \"10.1.0.12\"",
            "name = \"c\"\naddress = \"10.1.0.13\"",
        )
        .replace(
            "name = \"a\"\naddress = \"10.1.0.11\"\nport = 8080\n",
            "name = \"a\"\naddress = \"10.1.0.11\"\nport = 8080\nweight = 5\n",
        )
        + "[health]\ninterval = \"2s\"\n[flows]\nudp_timeout = \"1m\"\n";
    std::fs::write(&path, &next).unwrap();
    let v = execute(&mut ctl, "reload");
    assert_eq!(v["ok"], true, "{v}");
    let changes: Vec<String> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    for want in [
        "backend web/b removed (draining)",
        "backend web/a: weight 1 -> 5",
        "backend web/c added",
        "[health] changed",
        "flows.udp_timeout: 300s -> 60s",
    ] {
        assert!(changes.iter().any(|c| c == want), "{want} in {changes:?}");
    }
    exchange(&mut ctl, &mut cores, 2);
    assert_eq!(backend_row(&mut ctl, "b").unwrap()["state"], "removing");
    assert_eq!(backend_row(&mut ctl, "a").unwrap()["weight"], 5);
    assert_eq!(cores[0].state.table.timeouts().udp_ms, 60_000);
    let gen = ctl.snapshot().generation;
    // Restart-only keys, each named; nothing changes.
    let restart = next
        .replace("devargs = \"net_null1\"", "devargs = \"net_null7\"")
        .replace("id = 1\n[eal]", "id = 1\n[workers]\ncores = [3]\n[eal]")
        .replace("weight = 5", "weight = 6");
    std::fs::write(&path, &restart).unwrap();
    let v = execute(&mut ctl, "reload");
    assert_eq!(v["ok"], false, "{v}");
    let keys: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["port[1]", "workers.cores"], "{v}");
    // A broken file: every problem named, nothing changes.
    let broken = next
        .replace("weight = 5", "weight = 50000")
        .replace("address = \"10.1.0.13\"", "address = \"10.1.0.300\"");
    std::fs::write(&path, &broken).unwrap();
    let v = execute(&mut ctl, "reload");
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["problems"].as_array().unwrap().len(), 2, "{v}");
    // A running service's VIP cannot move.
    let moved = next.replace("vip = \"192.0.2.10\"", "vip = \"192.0.2.11\"");
    std::fs::write(&path, &moved).unwrap();
    let v = execute(&mut ctl, "reload");
    assert_eq!(v["problems"][0]["key"], "service[0].vip", "{v}");
    assert_eq!(ctl.snapshot().generation, gen, "nothing changed");
    assert_eq!(backend_row(&mut ctl, "a").unwrap()["weight"], 5);
    // What runs prints as a file that reads back to itself.
    let text = ctl.running_config().to_toml();
    assert_eq!(Config::from_toml(&text).unwrap().to_toml(), text);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn reload_with_no_file_says_so() {
    reset_worker_ends();
    let (mut ctl, _cores) = node(1);
    let v = execute(&mut ctl, "reload");
    assert_eq!(v["ok"], false);
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("not started from a file"));
}

/// A rolling reload: two nodes whose services differ share the records of the service both
/// have, whatever ids each gave its backends; a record of a service one lacks is refused.
#[test]
fn records_name_backends_by_name_across_nodes_whose_services_differ() {
    use crate::cluster::codec::WireRecord;
    use crate::cluster::RecordRefusal as R;
    let extra =
        "[[service]]\nname = \"dns\"\nvip = \"192.0.2.53\"\nport = 53\nprotocol = \"udp\"\n\
                 mode = \"nat\"\n[[service.backend]]\nname = \"d\"\naddress = \"10.1.0.20\"\n\
                 paths = [{ port = \"back\" }]\n";
    // Node 1 has web with a, b and dns; node 2 has dns first, then web with c, b, a.
    let one = format!("{CONFIG}{extra}");
    let web2 = CONFIG
        .split("[[service]]")
        .nth(1)
        .unwrap()
        .replace("name = \"a\"", "name = \"c\"")
        .replace("address = \"10.1.0.11\"", "address = \"10.1.0.13\"");
    let head = CONFIG.split("[[service]]").next().unwrap();
    let two = format!(
        "{head}{extra}[[service]]{web2}[[service.backend]]\nname = \"a\"\naddress = \"10.1.0.11\"\n\
         port = 8080\npaths = [{{ port = \"back\" }}]\n"
    );
    let nodes = super::tests::cluster_pair(&one, &two);
    let (n1, n2) = (&nodes.0, &nodes.1);
    let a1 = n1.snapshot().backend_by_name("web", "a").unwrap();
    let a2 = n2.snapshot().backend_by_name("web", "a").unwrap();
    assert_ne!(a1.id, a2.id, "the ids differ between the nodes");
    let key = tandem_dataplane::flow::FlowKey::v4([198, 51, 100, 7], [192, 0, 2, 10], 4000, 80, 6);
    let rec = WireRecord {
        key,
        backend: a1.tag,
        primary_path: 0,
        backup_path: 0,
        state: tandem_dataplane::flow::FlowState::Established,
        ingress_port: 0,
        primary_node: 1,
        backup_node: 2,
        client_mac: CLIENT_MAC,
    };
    let got = n2.record_from_wire(&rec).unwrap();
    assert_eq!(got.backend, a2.id);
    assert_eq!(usize::from(got.service), usize::from(a2.service));
    // b is at index 1 on node 1 and 1 in its service on node 2, but not the same id.
    let b1 = n1.snapshot().backend_by_name("web", "b").unwrap();
    let b2 = n2.snapshot().backend_by_name("web", "b").unwrap();
    let rec_b = WireRecord {
        backend: b1.tag,
        ..rec
    };
    assert_eq!(n2.record_from_wire(&rec_b).unwrap().backend, b2.id);
    // c is node 2's alone: a record of it is refused on node 1, by name.
    let c2 = n2.snapshot().backend_by_name("web", "c").unwrap();
    let rec_c = WireRecord {
        backend: c2.tag,
        ..rec
    };
    assert_eq!(n1.record_from_wire(&rec_c).err(), Some(R::UnknownBackend));
    // A service node 2 lacks (once node 1 adds one) is refused as unknown.
    let rec_x = WireRecord {
        key: tandem_dataplane::flow::FlowKey::v4([198, 51, 100, 7], [192, 0, 2, 99], 4000, 80, 6),
        ..rec
    };
    assert_eq!(n2.record_from_wire(&rec_x).err(), Some(R::UnknownService));
}

#[test]
fn what_needs_a_restart_is_named_once_by_its_key() {
    let old = Config::from_toml(CONFIG).unwrap();
    let keys = |text: &str| -> Vec<String> {
        let new = Config::from_toml(text).unwrap();
        restart_only(&old, &new)
            .into_iter()
            .map(|p| p.key)
            .collect()
    };
    assert!(keys(CONFIG).is_empty());
    let third_port = CONFIG.replace(
        "[[service]]",
        "[[port]]\nname = \"extra\"\ndevargs = \"net_null2\"\nipv4 = \"10.2.0.1/24\"\n[[service]]",
    );
    assert_eq!(keys(&third_port), ["port"]);
    let moved = CONFIG.replace("ipv4 = \"10.1.0.1/24\"", "ipv4 = \"10.1.0.2/24\"");
    assert_eq!(keys(&moved), ["port[1]"]);
    let more = CONFIG.replace("[eal]\nargs = []", "[eal]\nargs = [\"--no-huge\"]\n[mempool]\nmbufs = 4095\n[control]\nsocket = \"/tmp/x.sock\"\n[metrics]\nlisten = \"127.0.0.1:9999\"");
    assert_eq!(
        keys(&more),
        [
            "eal.args",
            "mempool.mbufs",
            "control.socket",
            "metrics.listen"
        ]
    );
    let (one, _) = super::tests::cluster_pair(CONFIG, CONFIG);
    assert_eq!(
        restart_only(&old, one.config())
            .into_iter()
            .map(|p| p.key)
            .collect::<Vec<_>>(),
        ["cluster"]
    );
}

#[test]
fn a_quic_backend_is_added_with_its_server_id_and_shown_with_it() {
    reset_worker_ends();
    let quic = CONFIG.to_string()
        + "[[service]]\nname = \"h3\"\nvip = \"192.0.2.30\"\nport = 443\nprotocol = \"quic\"\n\
           mode = \"nat\"\n[[service.backend]]\nname = \"q1\"\naddress = \"10.1.0.21\"\n\
           server_id = \"0a01\"\npaths = [{ port = \"back\", mac = \"02:00:00:00:01:21\" }]\n";
    let (mut ctl, _cores) = super::tests::node_from(&quic, 1);
    for (line, says) in [
        ("backend add h3 q2 10.1.0.22 path back", "server_id"),
        (
            "backend add h3 q2 10.1.0.22 server_id 0a01 path back",
            "\"q1\"",
        ),
        (
            "backend add h3 q2 10.1.0.22 server_id 0a path back",
            "octets",
        ),
        (
            "backend add web c 10.1.0.13 server_id 0a02 path back",
            "quic",
        ),
        ("backend add h3 q2 10.1.0.22 server_id", "needs"),
    ] {
        let v = execute(&mut ctl, line);
        assert_eq!(v["ok"], false, "{line}: {v}");
        let error = v["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{line}: {v}");
    }
    let v = execute(
        &mut ctl,
        "backend add h3 q2 10.1.0.22 server_id 0A02 path back",
    );
    assert_eq!(v["ok"], true, "{v}");
    let v = execute(&mut ctl, "show backends h3");
    let ids: Vec<&str> = v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["server_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["0a01", "0a02"]);
    let v = execute(&mut ctl, "show services");
    let h3 = &v["services"][1];
    assert_eq!(h3["protocol"], "quic");
    assert_eq!(h3["quic"]["server_id_len"], 2);
    assert_eq!(h3["quic"]["encrypted"], false);
    // Written back, the service and its IDs read again.
    let cfg = execute(&mut ctl, "show config");
    let text = cfg["toml"].as_str().unwrap_or_default();
    assert!(text.contains("server_id = \"0a02\""), "{cfg}");
}
