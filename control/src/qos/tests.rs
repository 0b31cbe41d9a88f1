//! The QoS glue under a fake clock: workers' histograms in, factors, health and standbys out.

use super::*;
use tandem_config::Config;
use tandem_dataplane::qos::hist::HistSet;

const CONFIG: &str = r#"
[node]
id = 1
[eal]
args = []
[health]
probe = "tcp"
interval = "500ms"
timeout = "1s"
down_after = 3
up_after = 2
[qos]
window = "10s"
period = "500ms"
[[port]]
name = "back"
devargs = "net_null0"
ipv4 = "10.1.0.1/24"
[[service]]
name = "web"
vip = "192.0.2.10"
port = 80
protocol = "tcp"
mode = "nat"
standby = { p99_above = "50ms", for = "5s", recover_for = "10s", hook = "/bin/true" }
[[service.backend]]
name = "a"
address = "10.1.0.11"
paths = [{ port = "back", mac = "02:00:00:00:01:11" }]
[[service.backend]]
name = "b"
address = "10.1.0.12"
paths = [{ port = "back", mac = "02:00:00:00:01:12" }]
[[service.backend]]
name = "c"
address = "10.1.0.13"
paths = [{ port = "back", mac = "02:00:00:00:01:13" }]
[[service.backend]]
name = "spare"
address = "10.1.0.14"
standby = true
paths = [{ port = "back", mac = "02:00:00:00:01:14" }]
"#;

struct Sim {
    layout: Layout,
    qos: Qos,
    t0: Instant,
    now: Instant,
}

impl Sim {
    fn new() -> Sim {
        let cfg = Config::from_toml(CONFIG).unwrap();
        let t0 = Instant::now();
        let layout = Layout::new(&cfg.services);
        Sim {
            qos: Qos::new(&cfg, &layout, t0),
            layout,
            t0,
            now: t0,
        }
    }

    /// One period: each backend answers `n` responses of `ms[b]` milliseconds.
    fn period(&mut self, ms: [u64; 4], n: u32) -> Vec<HookRun> {
        self.now += Duration::from_millis(500);
        self.qos.windows.roll();
        let mut h = HistSet::new(&[1, 1, 1, 1]);
        for (b, &m) in ms.iter().enumerate() {
            for _ in 0..n {
                if m > 0 {
                    h.record(b as u16, 0, Kind::Response, m * 1000);
                }
            }
        }
        self.qos.windows.merge(&h);
        self.qos.recompute(self.now, &self.layout)
    }

    fn secs(&self) -> f64 {
        self.now.duration_since(self.t0).as_secs_f64()
    }
}

#[test]
fn a_slow_backend_loses_its_share_within_a_period_and_wins_it_back() {
    let mut s = Sim::new();
    for _ in 0..10 {
        s.period([10, 10, 10, 0], 20);
    }
    assert!(s.qos.live[..3].iter().all(|l| l.factor == 1.0));
    // Backend b turns ten times slower: one period of its slow samples is enough.
    s.period([10, 100, 10, 0], 6);
    assert!(s.qos.live[1].factor <= 0.02, "{}", s.qos.live[1].factor);
    assert_eq!(s.qos.live[0].factor, 1.0);
    assert_eq!(s.qos.estimates[1].kind, Some(Kind::Response));
    // It stays slow for 10 s, taking only a trickle of flows (min_factor), so it is still
    // measured.
    for _ in 0..20 {
        s.period([10, 100, 10, 0], 1);
        assert!(s.qos.live[1].factor <= 0.02);
    }
    // When it recovers, its slow samples leave the 10 s window and it gets its share back.
    let slow_until = s.secs();
    let mut back = None;
    for _ in 0..40 {
        s.period([10, 10, 10, 0], 1);
        if back.is_none() && s.qos.live[1].factor == 1.0 {
            back = Some(s.secs() - slow_until);
        }
    }
    let back = back.expect("factor recovered");
    assert!((8.0..=10.5).contains(&back), "recovered after {back} s");
    assert!(s
        .qos
        .events
        .iter()
        .any(|(_, e)| e.contains("backend b qos factor")));
    // A one-period blip, by contrast, is forgiven as soon as it leaves the last two periods.
    s.period([10, 100, 10, 0], 6);
    assert!(s.qos.live[1].factor < 1.0);
    s.period([10, 10, 10, 0], 20);
    s.period([10, 10, 10, 0], 20);
    assert_eq!(s.qos.live[1].factor, 1.0);
}

#[test]
fn timeouts_and_resets_make_a_backend_look_slow() {
    let mut s = Sim::new();
    for _ in 0..4 {
        s.now += Duration::from_millis(500);
        s.qos.windows.roll();
        let mut h = HistSet::new(&[1, 1, 1, 1]);
        for _ in 0..10 {
            h.record(0, 0, Kind::Response, 5_000);
            h.record(1, 0, Kind::Response, 5_000);
            // Backend c answers fast when it answers, but half its requests time out.
            h.record(2, 0, Kind::Response, 1_000);
            h.record_timeout(2, 0, Kind::Response, 1_000_000);
        }
        s.qos.windows.merge(&h);
        s.qos.recompute(s.now, &s.layout);
    }
    assert!(s.qos.live[2].factor <= 0.02, "{}", s.qos.live[2].factor);
}

#[test]
fn probes_time_out_into_health_and_answers_bring_it_back() {
    let mut s = Sim::new();
    let services = s.layout.clone();
    let mut sent = Vec::new();
    // Five seconds of probes that never come back.
    for _ in 0..100 {
        s.now += Duration::from_millis(50);
        let (orders, _) = s.qos.probes(s.now, &services);
        sent.extend(orders);
    }
    assert!(sent.iter().all(|o| o.method == Method::Tcp));
    assert!(sent.iter().filter(|o| o.backend == 0).count() >= 9);
    s.qos.recompute(s.now, &services);
    assert!(s.qos.live.iter().all(|l| !l.up), "every backend down");
    assert!(s.qos.probes_timed_out >= 3 * 4);
    assert!(s.qos.windows.window(0, None, Kind::Probe).timeouts >= 3);
    // Backend a answers every probe from now on: once the probes still out from before
    // have timed out, two answers in a row bring it up, ramping up from a tenth.
    let mut answered = 0;
    for _ in 0..60 {
        s.now += Duration::from_millis(50);
        let (orders, _) = s.qos.probes(s.now, &services);
        for o in orders.into_iter().filter(|o| o.backend == 0) {
            let r = Some(Outcome::Answered(300));
            s.qos.probe_result(s.now, &services, 0, 0, o.round, r);
            // A duplicate answer changes nothing.
            assert!(!s.qos.probe_result(s.now, &services, 0, 0, o.round, r));
            answered += 1;
        }
    }
    assert!(answered >= 5);
    s.qos.recompute(s.now, &services);
    assert!(s.qos.live[0].up);
    assert!(s.qos.live[0].ramp < 0.2, "{}", s.qos.live[0].ramp);
    s.now += Duration::from_secs(10);
    s.qos.recompute(s.now, &services);
    assert_eq!(s.qos.live[0].ramp, 1.0);
    assert!(s
        .qos
        .events
        .iter()
        .any(|(_, e)| e.contains("path 0 of backend web/a is down")));
}

#[test]
fn a_slow_pool_brings_its_standby_in_and_lets_it_go_after_recovery() {
    let mut s = Sim::new();
    for _ in 0..4 {
        assert!(s.period([10, 10, 10, 0], 10).is_empty());
    }
    assert!(!s.qos.live[3].standby_active);
    // The whole pool slows past 50 ms: after `for` (5 s) the standby is activated and the
    // hook runs with its name.
    let mut hooks = Vec::new();
    let start = s.secs();
    while hooks.is_empty() && s.secs() - start < 20.0 {
        hooks = s.period([80, 80, 80, 0], 10);
    }
    let took = s.secs() - start;
    assert!((5.0..=6.0).contains(&took), "activated after {took} s");
    assert_eq!(
        hooks,
        vec![HookRun {
            hook: "/bin/true".into(),
            event: "activate",
            service: "web".into(),
            backend: "spare".into(),
        }]
    );
    assert!(s.qos.live[3].standby_active);
    assert!(s.qos.live[3].ramp < 0.2, "slow start");
    // Fast again: once the slow samples leave the window and the pool stays good for
    // recover_for (10 s), the standby is released.
    let mut released = Vec::new();
    let start = s.secs();
    while released.is_empty() && s.secs() - start < 60.0 {
        released = s.period([10, 10, 10, 10], 10);
    }
    let took = s.secs() - start;
    assert_eq!(released[0].event, "release");
    assert!((19.0..=22.0).contains(&took), "released after {took} s");
    assert!(!s.qos.live[3].standby_active);
}

#[test]
fn a_penalised_backend_with_no_samples_keeps_its_estimate_for_its_probation() {
    let mut s = Sim::new();
    for _ in 0..10 {
        s.period([10, 10, 10, 0], 20);
    }
    s.period([10, 100, 10, 0], 6);
    assert!(s.qos.live[1].factor < 0.05);
    // It gets no flows now: its slow samples leave the 10 s window, and it stays penalised
    // on the estimate it had...
    let since = s.secs();
    let mut retried = None;
    for _ in 0..80 {
        s.period([10, 0, 10, 0], 20);
        if retried.is_none() && s.qos.live[1].factor == 1.0 {
            retried = Some(s.secs() - since);
        }
    }
    // ...until qos.probation (30 s) after its last sample, when it is tried at full share.
    let retried = retried.expect("retried");
    assert!(
        (29.0..=31.0).contains(&retried),
        "retried after {retried} s"
    );
}

#[test]
fn quic_and_gue_backends_are_pinged_where_tcp_probes_are_asked() {
    let tcp = HealthConfig {
        probe: ProbeMethod::Tcp,
        ..HealthConfig::default()
    };
    use tandem_config::Protocol;
    assert_eq!(
        probe_method(&tcp, Mode::Nat, Protocol::Tcp),
        Some(Method::Tcp)
    );
    assert_eq!(
        probe_method(&tcp, Mode::Nat, Protocol::Udp),
        Some(Method::Tcp)
    );
    assert_eq!(
        probe_method(&tcp, Mode::Nat, Protocol::Quic),
        Some(Method::Icmp)
    );
    assert_eq!(
        probe_method(&tcp, Mode::Gue, Protocol::Tcp),
        Some(Method::Icmp)
    );
}
