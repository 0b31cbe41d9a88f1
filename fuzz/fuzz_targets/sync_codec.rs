//! The cluster sync channel against arbitrary datagrams: the codec's header and body
//! readers, then the endpoint itself (replay window, readiness, snapshot handling) with the
//! datagram as from a known peer, signed with the cluster key and not. Nothing may panic; a
//! datagram that is not authentic must be refused.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Instant;
use tandem_control::cluster::codec::{self, Key};
use tandem_control::cluster::Endpoint;

const SECRET: &[u8] = b"0123456789abcdef-fuzz-secret";

fn endpoint() -> Endpoint {
    let cfg = tandem_fuzz::config(true);
    let cl = cfg.cluster.as_ref().unwrap();
    let ports: Vec<_> = cfg
        .ports
        .iter()
        .zip(tandem_fuzz::PORT_MACS)
        .map(|(p, m)| tandem_dataplane::services::PortInfo::from_config(p, m))
        .collect();
    let view = tandem_dataplane::cluster::ClusterView::new(cl, 1, &ports).unwrap();
    Endpoint::new(
        cl,
        1,
        view,
        SECRET,
        42,
        1,
        Instant::now(),
        1_700_000_000_000_000,
    )
    .unwrap()
}

thread_local! {
    static NODE: RefCell<(Endpoint, Instant)> = RefCell::new((endpoint(), Instant::now()));
}

fuzz_target!(|data: &[u8]| {
    let key = Key::derive(SECRET);
    let _ = codec::peek(data);
    let authentic = codec::open(data, &key).is_ok();
    NODE.with(|n| {
        let (node, t0) = &mut *n.borrow_mut();
        let peer: SocketAddr = "127.0.0.1:7202".parse().unwrap();
        let now = *t0 + std::time::Duration::from_millis(u64::from(data.len() as u16));
        let before = node.refused.iter().sum::<u64>();
        let got = node.handle(data, peer, now);
        if !authentic {
            assert!(got.is_none());
            assert!(node.refused.iter().sum::<u64>() > before);
        }
        node.tick(now);
        while node.poll_transmit().is_some() {}
    });
});
