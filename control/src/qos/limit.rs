//! Admission limits learned from latency (`[service.admission] limit = "adaptive"`), after
//! Envoy's adaptive concurrency filter and Netflix's gradient limiters: a backend's limit is
//! the number of flows it may serve at once, found from how its latency answers the flows it
//! already has. Sans-IO: the control thread hands each period's latency sample and the
//! backend's flows in, and applies the limit `step` returns.
//!
//! Each period, with the sampled latency `s` (the period's `quantile` of the kind that
//! measures the backend, see `Qos::limit_samples`) and the minimum latency `m`:
//!
//! ```text
//!  s <= m x (1 + tolerance)  the backend answers as fast as it can: the limit grows
//!                            (doubling until the first queueing is seen; then as below),
//!                            while the backend is busy enough to tell (flows >= half the
//!                            limit)
//!  s >  m x (1 + tolerance)  flows queue at the backend: the limit applied is scaled by
//!                            g = m x (1 + tolerance) / s (at least x 0.5): Little's law's
//!                            estimate of the flows it serves at its fastest, with headroom;
//!                            an estimate within a flow and a half is one flow too many, and
//!                            the limit goes back by one. After a cut the limit holds for
//!                            four periods, then grows by one flow a period for ten (near
//!                            the capacity just found), by the tolerance after.
//! ```
//!
//! The minimum is measured again every `min_interval` (and at first): the limit is held at
//! `min_limit` for `MEASURE_PERIODS` periods (at first, periods with samples: until traffic
//! comes, the limit stays there), so the backend's own queue drains, and the
//! lowest sample then is the new minimum (between two measurements a lower sample lowers it
//! at once). Without one, the minimum would creep up with the load it allows. The limit is
//! bounded by `min_limit`, `max_limit` and the backend's `max_flows` when set; the flows it
//! applies are its whole part (a limit of 2.7 admits 2).

use std::time::{Duration, Instant};
use tandem_config::AdmissionConfig;

/// Periods the limit is held at `min_limit` to measure the minimum latency.
pub const MEASURE_PERIODS: u8 = 2;
/// Least growth per period, in flows, so a small limit grows at all.
const MIN_GROWTH: f64 = 0.25;
/// Largest cut per period.
const MIN_GRADIENT: f64 = 0.5;
/// Periods after a cut during which the limit grows by one flow a period (near the
/// capacity just found); later by the tolerance (far from it, the capacity may have grown).
const NEAR_PERIODS: u32 = 10;
/// Periods a cut holds the limit before it may grow again: the probe one flow past the
/// capacity, which costs that flow's share of latency, comes every few seconds, not every
/// other period.
const HOLD_PERIODS: u8 = 4;

/// Why the limit last changed (`show backends`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Held at `min_limit` while the minimum latency is measured.
    Measuring,
    /// Latency at the minimum: grown.
    Growing,
    /// Latency above the minimum: cut.
    Queueing,
    /// A bound (`min_limit`, `max_limit`, `max_flows`) set it.
    Bound,
}

impl Why {
    pub fn name(self) -> &'static str {
        match self {
            Why::Measuring => "measuring the minimum latency",
            Why::Growing => "latency at its minimum: growing",
            Why::Queueing => "latency above its minimum: cut",
            Why::Bound => "held by min_limit, max_limit or max_flows",
        }
    }
}

/// One backend's learned limit.
#[derive(Debug, Clone)]
pub struct Limit {
    /// The limit before its whole part is taken.
    value: f64,
    /// The minimum latency, microseconds (None until measured).
    pub min_us: Option<u64>,
    /// The last period's sampled latency.
    pub sample_us: Option<u64>,
    /// Periods left held at `min_limit`, and the lowest sample in them.
    measuring: u8,
    measured: Option<u64>,
    next_measure: Instant,
    /// No queueing seen yet: the limit doubles while the latency stays at its minimum (as
    /// TCP's slow start), so a fresh limit finds a large backend in seconds.
    slow_start: bool,
    /// Periods left before the limit may grow after a cut, and periods since it.
    hold: u8,
    since_cut: u32,
    /// The limit applied, when it last changed and why.
    pub applied: u32,
    pub changed: Option<(Instant, Why)>,
}

/// What a period saw of a backend.
#[derive(Debug, Clone, Copy)]
pub struct Period {
    /// The period's sampled latency (None: no samples).
    pub sample_us: Option<u64>,
    /// Enough samples (`qos.min_samples`) to move the limit by; the minimum is measured
    /// from any.
    pub enough: bool,
    /// Flows it serves now.
    pub in_flight: u32,
    pub now: Instant,
}

impl Limit {
    /// A backend's limit at start: the minimum is measured first.
    pub fn new(cfg: &AdmissionConfig, now: Instant) -> Limit {
        Limit {
            value: f64::from(cfg.min_limit),
            min_us: None,
            sample_us: None,
            measuring: MEASURE_PERIODS,
            measured: None,
            next_measure: now,
            slow_start: true,
            hold: 0,
            since_cut: NEAR_PERIODS,
            applied: cfg.min_limit,
            changed: None,
        }
    }

    /// The limit between `min_limit` and the ceiling (`max_limit`, and `max_flows` when
    /// not 0).
    fn bounds(cfg: &AdmissionConfig, max_flows: u32) -> (f64, f64) {
        let hi = match max_flows {
            0 => cfg.max_limit,
            m => m.min(cfg.max_limit),
        };
        let lo = cfg.min_limit.min(hi);
        (f64::from(lo), f64::from(hi))
    }

    /// One period: the limit to apply from now on.
    pub fn step(&mut self, cfg: &AdmissionConfig, max_flows: u32, p: Period) -> u32 {
        let (lo, hi) = Limit::bounds(cfg, max_flows);
        self.sample_us = p.sample_us;
        if self.measuring == 0 && p.now >= self.next_measure {
            self.measuring = MEASURE_PERIODS;
            self.measured = None;
        }
        let why = if self.measuring > 0 {
            // Only periods with samples count: a backend with no traffic yet stays at
            // min_limit until its minimum has been seen (the first minimum, taken under
            // load, would be the latency of whatever the load had made of it).
            if let Some(s) = p.sample_us {
                self.measured = Some(self.measured.map_or(s, |m| m.min(s)));
                self.measuring -= 1;
            } else if self.min_us.is_some() {
                self.measuring -= 1;
            }
            if self.measuring == 0 {
                self.min_us = self.measured.or(self.min_us);
                self.next_measure = p.now + cfg.min_interval;
            }
            Why::Measuring
        } else {
            match (p.sample_us.filter(|_| p.enough), self.min_us) {
                (Some(s), m) => {
                    let m = m.map_or(s, |m| m.min(s)).max(1);
                    self.min_us = Some(m);
                    let target = m as f64 * (1.0 + cfg.tolerance);
                    if (s as f64) <= target {
                        // Grows only while the limit is what holds the backend back.
                        if self.hold > 0 {
                            self.hold -= 1;
                        } else if f64::from(p.in_flight) * 2.0 >= self.value.floor() {
                            let grow = if self.slow_start {
                                self.value
                            } else if self.since_cut < NEAR_PERIODS {
                                1.0
                            } else {
                                self.value * cfg.tolerance
                            };
                            self.since_cut = self.since_cut.saturating_add(1);
                            self.value += grow.max(MIN_GROWTH);
                        }
                        Why::Growing
                    } else {
                        self.slow_start = false;
                        self.hold = HOLD_PERIODS;
                        self.since_cut = 0;
                        let applied = f64::from(self.applied);
                        // Little's law: the flows it serves at its fastest, with headroom.
                        let estimate = applied * (target / s as f64).max(MIN_GRADIENT);
                        self.value = if estimate >= applied - 1.5 {
                            // One flow too many (a thrashing backend slows faster than its
                            // flows grow: the estimate would undershoot): back by one.
                            (applied - 1.0).max(1.0) + 0.99
                        } else {
                            estimate
                        };
                        Why::Queueing
                    }
                }
                // No samples this period: nothing to learn from.
                (None, _) => return self.apply(lo, hi, p.now, None),
            }
        };
        self.value = self.value.clamp(lo, hi);
        if why == Why::Measuring {
            return self.apply(lo, hi, p.now, Some(why));
        }
        let bounded = self.value <= lo || self.value >= hi;
        self.apply(lo, hi, p.now, Some(if bounded { Why::Bound } else { why }))
    }

    /// The limit applied: `min_limit` while measuring, else the value's whole part.
    fn apply(&mut self, lo: f64, hi: f64, now: Instant, why: Option<Why>) -> u32 {
        let limit = if self.measuring > 0 || why == Some(Why::Measuring) {
            lo
        } else {
            self.value.clamp(lo, hi).floor()
        } as u32;
        if limit != self.applied {
            self.applied = limit;
            if let Some(w) = why {
                self.changed = Some((now, w));
            }
        }
        limit
    }

    /// The limit before its whole part is taken (for `show backends`).
    pub fn value(&self) -> f64 {
        self.value
    }

    /// Seconds since the last change.
    pub fn changed_ago(&self, now: Instant) -> Option<(Duration, Why)> {
        self.changed
            .map(|(t, w)| (now.saturating_duration_since(t), w))
    }
}

#[cfg(test)]
mod tests {
    //! The controller against simulated backends: `k` flows served at full speed, the rest
    //! queued inside the backend (latency grows with flows / k), under more demand than all
    //! backends can serve.
    use super::*;

    const PERIOD: Duration = Duration::from_millis(500);

    /// A period's median latency at `n` flows for a backend serving `k` at once, `base`
    /// µs each; a little deterministic noise.
    fn latency(n: u32, k: u32, base: u64, i: u64) -> u64 {
        let q = (f64::from(n) / f64::from(k)).max(1.0);
        let noise = 1.0 + ((i * 7919) % 7) as f64 / 100.0 - 0.03;
        (base as f64 * q * noise) as u64
    }

    /// Runs `periods` periods against a backend of capacity `k(i)`; the applied limits.
    fn run(
        l: &mut Limit,
        cfg: &AdmissionConfig,
        t0: Instant,
        from: u64,
        periods: u64,
        k: impl Fn(u64) -> u32,
    ) -> Vec<u32> {
        let mut out = Vec::new();
        for i in from..from + periods {
            let now = t0 + PERIOD * i as u32;
            let n = l.applied; // demand exceeds every limit: flows = the limit
            let p = Period {
                sample_us: Some(latency(n, k(i), 20_000, i)),
                enough: true,
                in_flight: n,
                now,
            };
            out.push(l.step(cfg, 0, p));
        }
        out
    }

    fn median(v: &[u32]) -> u32 {
        let mut v = v.to_vec();
        v.sort_unstable();
        v[v.len() / 2]
    }

    fn cfg() -> AdmissionConfig {
        AdmissionConfig {
            limit: tandem_config::LimitMode::Adaptive,
            ..AdmissionConfig::default()
        }
    }

    #[test]
    fn finds_the_capacity_and_follows_it_down_within_ten_seconds() {
        for k in [2u32, 3, 8, 20, 50] {
            let c = cfg();
            let t0 = Instant::now();
            let mut l = Limit::new(&c, t0);
            // 20 s from cold, then the capacity drops to k / 4 (at least 1 flow).
            let before = run(&mut l, &c, t0, 0, 40, |_| k);
            let settled = median(&before[30..]);
            let lo = f64::from(k) * 0.75;
            let hi = f64::from(k) * 1.25 + 0.5;
            assert!(
                (lo..=hi).contains(&f64::from(settled)),
                "k {k}: settled at {settled}: {before:?}"
            );
            let k2 = (k / 4).max(1);
            let after = run(&mut l, &c, t0, 40, 20, |_| k2);
            println!("k {k}: {before:?}\n  then k {k2}: {after:?}");
            // Within 10 s (20 periods) of the drop, its median over the last 2 s.
            let late = median(&after[16..]);
            assert!(
                f64::from(late) <= f64::from(k2) * 1.25 + 0.5 && late >= 1,
                "k {k} -> {k2}: {late}: {after:?}"
            );
        }
    }

    /// Flows a second a backend of capacity `k` answers with `n` flows, when it thrashes
    /// past `k` (tests/e2e/capacity.py's curve).
    fn throughput(n: u32, k: u32) -> f64 {
        let (n, k) = (f64::from(n), f64::from(k));
        let lat = if n <= k {
            1.0
        } else {
            (n / k) * (1.0 + 0.15 * (n - k))
        };
        n / lat
    }

    #[test]
    fn a_thrashing_backend_is_kept_near_its_best_throughput() {
        for k in [2u32, 3, 8, 20] {
            let c = cfg();
            let t0 = Instant::now();
            let mut l = Limit::new(&c, t0);
            let mut limits = Vec::new();
            for i in 0..120u64 {
                let n = l.applied;
                let lat = (20_000.0 / throughput(n, k) * f64::from(n)) as u64;
                let p = Period {
                    sample_us: Some(lat),
                    enough: true,
                    in_flight: n,
                    now: t0 + PERIOD * i as u32,
                };
                limits.push(l.step(&c, 0, p));
            }
            let got: f64 = limits[20..].iter().map(|&n| throughput(n, k)).sum::<f64>()
                / limits[20..].len() as f64;
            let best = throughput(k, k);
            assert!(
                got >= 0.9 * best,
                "k {k}: {:.2} of the best: {limits:?}",
                got / best
            );
        }
    }

    #[test]
    fn measures_the_minimum_at_first_and_again_every_interval() {
        let c = AdmissionConfig {
            min_limit: 2,
            min_interval: Duration::from_secs(10),
            ..cfg()
        };
        let t0 = Instant::now();
        let mut l = Limit::new(&c, t0);
        let limits = run(&mut l, &c, t0, 0, 60, |_| 8);
        assert_eq!(&limits[..2], &[2, 2], "held at min_limit to measure");
        assert!(l.min_us.is_some_and(|m| (19_000..=21_000).contains(&m)));
        // Measured again 10 s after the first: two periods at min_limit around period 22.
        assert!(
            limits[20..26].iter().filter(|&&x| x == 2).count() >= 2,
            "{limits:?}"
        );
        assert!(limits[10..20].iter().all(|&x| x > 2), "{limits:?}");
    }

    #[test]
    fn bounds_hold_and_an_idle_backend_does_not_grow() {
        let c = AdmissionConfig {
            min_limit: 3,
            max_limit: 40,
            ..cfg()
        };
        let t0 = Instant::now();
        let mut l = Limit::new(&c, t0);
        // A fast backend that could take 1000: max_limit, then max_flows, cap it.
        let limits = run(&mut l, &c, t0, 0, 80, |_| 1000);
        assert_eq!(*limits.last().unwrap(), 40);
        assert_eq!(l.changed.map(|c| c.1), Some(Why::Bound));
        let now = t0 + PERIOD * 81;
        let p = Period {
            sample_us: Some(20_000),
            enough: true,
            in_flight: 40,
            now,
        };
        assert_eq!(l.step(&c, 12, p), 12, "max_flows is a ceiling too");
        // Few flows and fast answers: the limit stays where it is.
        let mut l = Limit::new(&c, t0);
        run(&mut l, &c, t0, 0, 2, |_| 1000);
        let before = l.value();
        for i in 2..40 {
            let p = Period {
                sample_us: Some(20_000),
                enough: true,
                in_flight: 1,
                now: t0 + PERIOD * i,
            };
            l.step(&c, 0, p);
        }
        assert!(l.value() <= before + 1.0, "{} from {before}", l.value());
        // No samples: held.
        let held = l.applied;
        let p = Period {
            sample_us: None,
            enough: false,
            in_flight: 0,
            now: t0 + PERIOD * 41,
        };
        assert_eq!(l.step(&c, 0, p), held);
    }
}
