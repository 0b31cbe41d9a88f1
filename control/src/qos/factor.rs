//! The selection formula: how a backend's (or a path's) measured latency becomes the share of
//! its weight it gets.
//!
//! ```text
//! L_b   = latency of b: the q-quantile of its window, or of its latest min_samples samples
//!         when that is higher (a slowdown counts at once, however little traffic the backend
//!         gets by then; a recovery counts as the slow samples leave the window)
//! L_ref = the median of L over the pool's backends that have one
//! R     = max(L_ref × (1 + tolerance), L_ref + slack)
//! f_b   = clamp( (R / L_b) ^ exponent, min_factor, 1 )
//!         rounded to a power of two in log space (1, 1/2, 1/4, ...), so small differences do
//!         not rebuild tables, and nodes that measure alike build identical ones
//! share = weight × f_b × ramp_b     (ramp: slow start, 0.1 → 1 over qos.slow_start)
//! ```
//!
//! A backend without `min_samples` samples keeps f = 1, unless it is penalised already: then
//! whatever samples it has count, and its estimate is kept through periods with none for
//! `qos.probation` after its last sample; then it is tried again at full share.
//!
//! A new flow's backend: two candidates drawn by the flow's hash from a Maglev table built
//! from the shares (so candidates come in proportion to weight x factor), and the one with
//! fewer active flows per unit of weight x factor wins (power of two choices). The draw
//! keeps shares proportional, so no new flow herds onto the momentarily fastest backend;
//! the comparison steers away from a backend whose flows pile up before its slowness has
//! been measured (its requests have not finished yet), as peak EWMA's (active + 1) does.
//! Timeouts and resets are in the windows at the timeout value, so a backend that fails
//! fast never looks fast.

/// The knobs, from `[qos]`.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub exponent: f64,
    pub tolerance: f64,
    /// Microseconds above the reference that still count as equal: on shared hosts a
    /// sub-millisecond backend's p90 doubles on scheduling noise alone, which is no reason
    /// to halve its share.
    pub slack_us: f64,
    pub min_factor: f64,
}

/// Factors in (0, 1] for latencies `l` (None: not enough samples, factor 1).
pub fn factors(l: &[Option<f64>], p: &Params) -> Vec<f64> {
    let mut known: Vec<f64> = l.iter().flatten().copied().filter(|x| *x > 0.0).collect();
    if known.len() < 2 {
        return vec![1.0; l.len()];
    }
    known.sort_by(|a, b| a.total_cmp(b));
    let n = known.len();
    let median = if n % 2 == 1 {
        known[n / 2]
    } else {
        (known[n / 2 - 1] + known[n / 2]) / 2.0
    };
    let reference = (median * (1.0 + p.tolerance)).max(median + p.slack_us);
    l.iter()
        .map(|x| match x {
            Some(x) if *x > reference => quantize((reference / x).powf(p.exponent), p.min_factor),
            _ => 1.0,
        })
        .collect()
}

/// Rounds to the nearest power of two (in log space), at least `min`.
pub fn quantize(f: f64, min: f64) -> f64 {
    if !f.is_finite() || f <= 0.0 {
        return min;
    }
    let r = 2f64.powf(f.log2().round());
    r.clamp(min, 1.0)
}

/// Slow start: the fraction of its share a backend gets `elapsed` after it came up.
pub fn ramp(elapsed_s: f64, slow_start_s: f64) -> f64 {
    if slow_start_s <= 0.0 || elapsed_s >= slow_start_s {
        1.0
    } else {
        (0.1 + 0.9 * elapsed_s / slow_start_s).clamp(0.1, 1.0)
    }
}

/// Peak EWMA (Finagle): a new sample above the average replaces it; one below pulls it down
/// with time constant `tau_s` over `dt_s`.
pub fn peak_ewma(prev: f64, sample: f64, dt_s: f64, tau_s: f64) -> f64 {
    if sample > prev {
        return sample;
    }
    let w = (-dt_s / tau_s.max(1e-3)).exp();
    prev * w + sample * (1.0 - w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P: Params = Params {
        exponent: 2.0,
        tolerance: 0.25,
        slack_us: 0.0,
        min_factor: 0.01,
    };

    #[test]
    fn a_ten_times_slower_backend_keeps_about_one_percent() {
        let f = factors(&[Some(10_000.0), Some(11_000.0), Some(100_000.0)], &P);
        assert_eq!(f[0], 1.0);
        assert_eq!(f[1], 1.0, "within the tolerance");
        // (12.5 / 100)^2 = 0.0156 -> 1/64 = 0.0156
        assert!((f[2] - 1.0 / 64.0).abs() < 1e-9, "{f:?}");
        // Twice as slow: (1.25/2)^2 = 0.39 -> 1/2.
        let f = factors(&[Some(10.0), Some(10.0), Some(20.0)], &P);
        assert_eq!(f[2], 0.5);
        // Not enough to compare, or unknown: full share.
        assert_eq!(factors(&[Some(10.0), None], &P), vec![1.0, 1.0]);
        assert_eq!(factors(&[None, None, Some(1e9)], &P), vec![1.0; 3]);
    }

    #[test]
    fn differences_within_the_slack_are_noise() {
        let p = Params {
            slack_us: 1000.0,
            ..P
        };
        // 200 µs against 500 µs: twice as slow, but by less than the slack.
        let f = factors(&[Some(200.0), Some(200.0), Some(500.0)], &p);
        assert_eq!(f, vec![1.0; 3]);
        // 200 µs against 2.4 ms: (1.2 / 2.4)^2 = 1/4.
        let f = factors(&[Some(200.0), Some(200.0), Some(2400.0)], &p);
        assert_eq!(f[2], 0.25, "{f:?}");
        // Above the slack, the relative tolerance rules: 20 ms against 40 ms -> 1/2.
        let f = factors(&[Some(20_000.0), Some(20_000.0), Some(40_000.0)], &p);
        assert_eq!(f[2], 0.5, "{f:?}");
    }

    #[test]
    fn slow_start_and_peak_ewma() {
        assert_eq!(ramp(0.0, 10.0), 0.1);
        assert!((ramp(5.0, 10.0) - 0.55).abs() < 1e-9);
        assert_eq!(ramp(11.0, 10.0), 1.0);
        assert_eq!(ramp(1.0, 0.0), 1.0);
        assert_eq!(peak_ewma(10.0, 50.0, 0.5, 10.0), 50.0);
        let down = peak_ewma(50.0, 10.0, 0.5, 10.0);
        assert!(down < 50.0 && down > 45.0, "{down}");
    }

    proptest! {
        /// Factors are in [min, 1], the fastest backend always gets 1, and a slower backend
        /// never gets more than a faster one.
        #[test]
        fn factors_are_bounded_and_monotone(ls in proptest::collection::vec(1.0f64..1e7, 2..12)) {
            let l: Vec<Option<f64>> = ls.iter().map(|x| Some(*x)).collect();
            let f = factors(&l, &P);
            for x in &f {
                prop_assert!(*x >= P.min_factor && *x <= 1.0);
            }
            let fastest = ls.iter().cloned().fold(f64::MAX, f64::min);
            for (i, x) in ls.iter().enumerate() {
                if *x == fastest { prop_assert_eq!(f[i], 1.0); }
                for (j, y) in ls.iter().enumerate() {
                    if x < y { prop_assert!(f[i] >= f[j]); }
                }
            }
        }
    }
}
