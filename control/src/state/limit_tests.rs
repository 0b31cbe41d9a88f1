//! Learned limits on the control thread, with a real packet core reading them: a period's
//! latency in, a limit out where the workers admit by it; the limit near each backend's
//! hidden capacity; the queue holding flows past it; `show backends`, `/metrics`; a reload
//! back to static limits.

use super::tests::{exchange, node_from, reset_worker_ends, CONFIG, MACS};
use super::*;
use std::time::Duration;
use tandem_dataplane::pipeline::Verdict;
use tandem_dataplane::qos::hist::Kind;
use tandem_dataplane::testkit::{self, run};
use tandem_dataplane::wire::l4::SYN;

fn adaptive() -> String {
    format!("{CONFIG}[service.admission]\nlimit = \"adaptive\"\nmin_interval = \"60s\"\n")
}

/// One period of a simulated load: each backend (`caps`: its hidden capacity) serves as
/// many flows as its limit allows (more demand than all can take), 20 responses timed at
/// 20 ms x flows / capacity once flows pass it.
fn period(ctl: &mut Control, caps: &[(u16, u32)], now: Instant) {
    ctl.qos.windows.roll();
    let mut h = tandem_dataplane::pipeline::hist_for(&ctl.snapshot);
    for &(b, k) in caps {
        let n = ctl.load.learned(b).max(1);
        while ctl.load.active(b) < n {
            ctl.load.try_take(b, 0);
        }
        while ctl.load.active(b) > n {
            ctl.load.release(b);
        }
        let us = (20_000.0 * (f64::from(n) / f64::from(k)).max(1.0)) as u64;
        for i in 0..20 {
            h.record(b, 0, Kind::Response, us + i * 50);
        }
    }
    ctl.qos.windows.merge(&h);
    ctl.learn_limits(now);
}

#[test]
fn limits_learned_from_latency_hold_new_flows_past_them() {
    reset_worker_ends();
    let (mut ctl, mut cores) = node_from(&adaptive(), 1);
    cores[0].state.load = Arc::clone(&ctl.load);
    let t0 = Instant::now();
    let caps = [(0u16, 6u32), (1, 2)];
    let mut seen = [Vec::new(), Vec::new()];
    for i in 0..60u32 {
        period(&mut ctl, &caps, t0 + Duration::from_millis(500) * i);
        for (j, &(b, _)) in caps.iter().enumerate() {
            seen[j].push(ctl.load.learned(b));
        }
    }
    let median = |v: &[u32]| {
        let mut v = v[v.len() - 10..].to_vec();
        v.sort_unstable();
        v[5]
    };
    assert!((5..=8).contains(&median(&seen[0])), "{:?}", seen[0]);
    assert!((2..=3).contains(&median(&seen[1])), "{:?}", seen[1]);

    // show backends and /metrics say so.
    let v = crate::commands::execute(&mut ctl, "show backends");
    let a = &v["backends"][0];
    assert_eq!(a["limit_from"], "learned", "{a}");
    assert_eq!(a["limit"], ctl.load.learned(0), "{a}");
    assert_eq!(a["in_flight"], ctl.load.active(0), "{a}");
    assert!(
        a["min_latency_ms"]
            .as_f64()
            .is_some_and(|m| (19.0..=21.5).contains(&m)),
        "{a}"
    );
    assert!(a["limit_changed"].is_string(), "{a}");
    let s = crate::commands::execute(&mut ctl, "show services");
    assert_eq!(s["services"][0]["limits"], "adaptive");
    let page = crate::metrics::render(&ctl);
    assert!(
        page.contains("tandem_backend_limit{service=\"web\",backend=\"a\"}"),
        "{page}"
    );
    assert!(page.contains("tandem_backend_in_flight{service=\"web\",backend=\"a\"}"));
    assert!(page.contains("tandem_backend_limit_min_latency_seconds{"));

    // Every backend at its learned limit: a new flow waits in the queue; a slot freed, it
    // goes to that backend.
    let syn = testkit::tcp(
        MACS[0],
        [2, 0, 0, 0, 0xc, 1],
        "198.51.100.9".parse().unwrap(),
        41_000,
        "192.0.2.10".parse().unwrap(),
        80,
        SYN,
        b"",
    );
    for &(b, _) in &caps {
        while ctl.load.active(b) < ctl.load.learned(b) {
            ctl.load.try_take(b, 0);
        }
        while ctl.load.active(b) > ctl.load.learned(b) {
            ctl.load.release(b);
        }
    }
    let (v, _) = run(&mut cores[0], 0, &syn, 5);
    assert_eq!(v, Verdict::Hold(0), "held past the learned limits");
    ctl.load.release(0);
    let mut sent = 0;
    cores[0].release_queued(
        |c, w| {
            let (v, _) = run(c, w.port, &syn, 6);
            sent += usize::from(v == Verdict::Tx(1));
            !matches!(v, Verdict::Hold(_))
        },
        |_| {},
    );
    assert_eq!(sent, 1, "the freed slot admits the waiting flow");
    assert_eq!(ctl.load.active(0), ctl.load.learned(0));

    // Back to static limits by a reload: nothing learned is applied any more.
    exchange(&mut ctl, &mut cores, 7);
    let cfg = Config::from_toml(CONFIG).unwrap();
    let changes = ctl.apply(cfg, Instant::now()).unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c.contains("admission changed (limit static)")),
        "{changes:?}"
    );
    ctl.learn_limits(Instant::now());
    assert_eq!(ctl.load.learned(0), 0);
    assert!(ctl.learned_limit(0).is_none());
    let v = crate::commands::execute(&mut ctl, "show backends");
    assert_eq!(v["backends"][0]["limit"], "-");
}
