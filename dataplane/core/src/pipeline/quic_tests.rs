//! QUIC services through the packet core: a new connection balanced and recorded, a
//! client that changes address kept on its backend by its connection ID, an ID that names
//! no backend falling back to the record or dropped, and the same with an encrypted
//! configuration; the counters say which way each packet went.

use super::*;
use crate::counters::DropReason;
use crate::testkit::{self, core_of, run, services_of};
use crate::wire::ethernet::Mac;
use crate::wire::ipv4;
use std::net::IpAddr;

const FRONT_MAC: Mac = [2, 0, 0, 0, 0, 1];
const BACK_MAC: Mac = [2, 0, 0, 0, 0, 2];
const CLIENT_MAC: Mac = [2, 0, 0, 0, 0xc, 1];
const KEY: [u8; 16] = *b"0123456789abcdef";

/// Three quic backends (server IDs 0a01, 0a02, 0a03) behind 192.0.2.30:443 in nat mode.
fn config(key_file: bool) -> String {
    config_in("nat", key_file)
}

/// The same in `mode` (dsr keeps the VIP's port; gue sends to the backend's GUE port).
fn config_in(mode: &str, key_file: bool) -> String {
    let port = if mode == "nat" { "port = 4433\n" } else { "" };
    let quic = if key_file {
        "quic = { config_id = 1, server_id_len = 2, nonce_len = 6, key_file = \"/k\" }"
    } else {
        "quic = { config_id = 1, server_id_len = 2, nonce_len = 6 }"
    };
    let mut c = format!(
        "[node]\nid = 1\n[eal]\nargs = []\n[[port]]\nname = \"front\"\ndevargs = \"net_null0\"\n\
         ipv4 = \"10.0.0.1/24\"\ngateway = \"10.0.0.254\"\n[[port]]\nname = \"back\"\n\
         devargs = \"net_null1\"\nipv4 = \"10.1.0.1/24\"\n[[service]]\nname = \"h3\"\n\
         vip = \"192.0.2.30\"\nport = 443\nprotocol = \"quic\"\nmode = \"{mode}\"\n{quic}\n"
    );
    for i in 1..=3 {
        c += &format!(
            "[[service.backend]]\nname = \"s{i}\"\naddress = \"10.1.0.2{i}\"\n{port}\
             server_id = \"0a0{i}\"\npaths = [{{ port = \"back\", mac = \"02:00:00:00:01:2{i}\" }}]\n"
        );
    }
    c
}

fn core(encrypted: bool) -> Core {
    let mut cfg = tandem_config::Config::from_toml(&config(encrypted)).unwrap();
    if encrypted {
        cfg.services[0].quic.as_mut().unwrap().key = Some(KEY);
    }
    let s = std::sync::Arc::new(crate::services::Services::from_config(
        &cfg,
        &[FRONT_MAC, BACK_MAC],
    ));
    core_of(s, 1024, 7)
}

fn lb(encrypted: bool) -> quic_lb::Config {
    quic_lb::Config::new(1, 2, 6, encrypted.then_some(KEY)).unwrap()
}

/// A short-header datagram to the VIP whose destination connection ID names `server`.
fn short(from: (&str, u16), lb: &quic_lb::Config, server: [u8; 2], nonce: u8) -> Vec<u8> {
    let mut cid = [0u8; quic_lb::MAX_CID_LEN];
    let n = lb.encode(&server, &[nonce; 6], &mut cid).unwrap();
    let mut payload = vec![0x40];
    payload.extend_from_slice(&cid[..n]);
    payload.extend_from_slice(b"protected payload");
    udp(from, &payload)
}

/// A long-header (Initial-like) datagram: form bit set, a client-chosen ID.
fn long(from: (&str, u16)) -> Vec<u8> {
    let mut payload = vec![0xc0, 0, 0, 0, 1, 8];
    payload.extend_from_slice(&[0x77; 8]);
    payload.extend_from_slice(&[0; 40]);
    udp(from, &payload)
}

fn udp(from: (&str, u16), payload: &[u8]) -> Vec<u8> {
    let src: IpAddr = from.0.parse().unwrap();
    testkit::udp(
        FRONT_MAC,
        CLIENT_MAC,
        src,
        from.1,
        "192.0.2.30".parse().unwrap(),
        443,
        payload,
    )
}

/// Where a datagram was sent: the backend address it was rewritten to.
fn sent_to(c: &mut Core, f: &[u8], now: u32) -> Result<IpAddr, Verdict> {
    let (v, out) = run(c, 0, f, now);
    if v != Verdict::Tx(1) {
        return Err(v);
    }
    testkit::verify_checksums(&out).unwrap();
    Ok(IpAddr::V4(
        ipv4::Packet::new_checked(&out[14..]).unwrap().dst(),
    ))
}

fn count(c: &Core) -> (u64, u64, u64) {
    let k = &c.state.counters;
    (
        k.quic_by_cid.get(),
        k.quic_by_flow.get(),
        k.quic_unroutable.get(),
    )
}

#[test]
fn a_client_that_changes_address_keeps_its_backend_by_connection_id() {
    for encrypted in [false, true] {
        let mut c = core(encrypted);
        let lb = lb(encrypted);
        // The handshake: balanced as any flow, and recorded.
        let first = sent_to(&mut c, &long(("198.51.100.7", 5000)), 1).unwrap();
        let n: u8 = match first.to_string().as_str() {
            "10.1.0.21" => 1,
            "10.1.0.22" => 2,
            "10.1.0.23" => 3,
            other => panic!("{other}"),
        };
        // The server's IDs name it: the same 4-tuple, then three new ones (a NAT
        // rebinding, a new port, a new address), all to the same backend.
        for (i, from) in [
            ("198.51.100.7", 5000),
            ("198.51.100.7", 6001),
            ("203.0.113.9", 6001),
            ("203.0.113.9", 7002),
        ]
        .into_iter()
        .enumerate()
        {
            let got = sent_to(&mut c, &short(from, &lb, [0x0a, n], i as u8), 2 + i as u32);
            assert_eq!(got, Ok(first), "{from:?} encrypted={encrypted}");
        }
        assert_eq!(count(&c), (4, 1, 0));
        // Each new 4-tuple has a record bound to the backend (a nat reply needs one).
        assert!(c.state.table.len() >= 4);
    }
}

#[test]
fn an_id_names_its_server_even_against_the_record() {
    let mut c = core(false);
    let lb = lb(false);
    let from = ("198.51.100.8", 5000);
    let first = sent_to(&mut c, &long(from), 1).unwrap();
    // Another server's ID on the same 4-tuple (the client's port reused for a new
    // connection after a server restart, say): the ID wins, and the record follows it.
    let other = (1..=3u8)
        .find(|n| first.to_string() != format!("10.1.0.2{n}"))
        .unwrap();
    let want: IpAddr = format!("10.1.0.2{other}").parse().unwrap();
    assert_eq!(
        sent_to(&mut c, &short(from, &lb, [0x0a, other], 1), 2),
        Ok(want)
    );
    // A long header of that 4-tuple now follows the rebound record.
    assert_eq!(sent_to(&mut c, &long(from), 3), Ok(want));
}

#[test]
fn an_id_that_names_no_backend_falls_back_to_the_record_or_is_dropped() {
    let mut c = core(true);
    let lb = lb(true);
    let from = ("198.51.100.9", 5000);
    let first = sent_to(&mut c, &long(from), 1).unwrap();
    // No such server, another config rotation codepoint, a plaintext ID under the key:
    // none decodes to a backend; the record routes them.
    let other_config = quic_lb::Config::new(2, 2, 6, Some(KEY)).unwrap();
    let plain = quic_lb::Config::new(1, 2, 6, None).unwrap();
    for f in [
        short(from, &lb, [0x0b, 0x01], 1),
        short(from, &other_config, [0x0a, 0x01], 2),
        short(from, &plain, [0x99, 0x99], 3),
        udp(from, &[0x40]),
    ] {
        assert_eq!(sent_to(&mut c, &f, 2), Ok(first));
    }
    assert_eq!(count(&c), (0, 5, 0));
    // With no record, such a packet goes nowhere: counted and dropped as no_flow.
    let stranger = short(("192.0.2.200", 9), &lb, [0x0b, 0x01], 4);
    assert_eq!(
        sent_to(&mut c, &stranger, 3),
        Err(Verdict::Drop(DropReason::NoFlow))
    );
    assert_eq!(count(&c), (0, 5, 1));
}

#[test]
fn a_quic_service_takes_neither_the_plain_lane_nor_a_stale_record() {
    // The lane serves established flows by their record alone: a quic service is not in it.
    let s = services_of(&config(false), &[FRONT_MAC, BACK_MAC]);
    assert!(s.plain([192, 0, 2, 30], 443, 17).is_none());
    let mut c = core(false);
    let lb = lb(false);
    for i in 0..40u16 {
        let from = ("198.51.100.10", 1000 + i);
        sent_to(&mut c, &long(from), 1).unwrap();
        let want: IpAddr = "10.1.0.23".parse().unwrap();
        assert_eq!(
            sent_to(&mut c, &short(from, &lb, [0x0a, 3], 0), 2),
            Ok(want)
        );
    }
}

#[test]
fn dsr_and_gue_quic_services_route_by_id_too() {
    for mode in ["dsr", "gue"] {
        let cfg = tandem_config::Config::from_toml(&config_in(mode, false)).unwrap();
        let s = std::sync::Arc::new(crate::services::Services::from_config(
            &cfg,
            &[FRONT_MAC, BACK_MAC],
        ));
        let mut c = core_of(s, 1024, 7);
        let lb = lb(false);
        for (i, from) in [("198.51.100.7", 5000), ("203.0.113.9", 7002)]
            .into_iter()
            .enumerate()
        {
            for n in 1..=3u8 {
                let (v, out) = run(&mut c, 0, &short(from, &lb, [0x0a, n], i as u8), 1);
                assert_eq!(v, Verdict::Tx(1), "{mode}");
                // To backend n's next hop, whatever the client's address.
                assert_eq!(out[..6], [2, 0, 0, 0, 1, 0x20 + n], "{mode} {from:?}");
            }
        }
        assert_eq!(count(&c), (6, 0, 0), "{mode}");
    }
}

#[test]
fn an_ipv6_quic_service_routes_by_id_too() {
    let cfg = config(false)
        .replace(
            "ipv4 = \"10.0.0.1/24\"",
            "ipv4 = \"10.0.0.1/24\"\nipv6 = \"fd00::1/64\"",
        )
        .replace(
            "ipv4 = \"10.1.0.1/24\"",
            "ipv4 = \"10.1.0.1/24\"\nipv6 = \"fd01::1/64\"",
        )
        .replace("vip = \"192.0.2.30\"", "vip = \"fd00::30\"")
        .replace("address = \"10.1.0.2", "address = \"fd01::2");
    let s = services_of(&cfg, &[FRONT_MAC, BACK_MAC]);
    let mut c = core_of(s, 1024, 7);
    let lb = lb(false);
    let dg = |src: &str, sport: u16, payload: &[u8]| {
        testkit::udp(
            FRONT_MAC,
            CLIENT_MAC,
            src.parse().unwrap(),
            sport,
            "fd00::30".parse().unwrap(),
            443,
            payload,
        )
    };
    let mut cid = [0u8; quic_lb::MAX_CID_LEN];
    let n = lb.encode(&[0x0a, 2], &[1; 6], &mut cid).unwrap();
    let short = [&[0x40][..], &cid[..n], b"payload"].concat();
    for (src, sport) in [("fd00::77", 5000), ("fd00::78", 6000)] {
        let (v, out) = run(&mut c, 0, &dg(src, sport, &short), 1);
        assert_eq!(v, Verdict::Tx(1));
        testkit::verify_checksums(&out).unwrap();
        // To s2 (fd01::22), rewritten in the IPv6 header's destination.
        let dst = crate::wire::ipv6::Packet::new_checked(&out[14..])
            .unwrap()
            .dst();
        assert_eq!(dst, "fd01::22".parse::<std::net::Ipv6Addr>().unwrap());
    }
    assert_eq!(count(&c), (2, 0, 0));
}
