//! Sliding windows over the workers' histograms: per (backend, path) and kind, a ring of one
//! histogram per period. Each period the workers' sets are merged into the current slot;
//! then the ring turns and the oldest slot is cleared for the next period. A window query
//! adds up the slots it needs on demand (the control thread's time, not the packet path's).

use hdrhistogram::Histogram;
use tandem_dataplane::qos::hist::{new_histogram, HistSet, Kind, KINDS};

/// One period's measurements of one series and kind.
#[derive(Default)]
struct Slot {
    /// Allocated on the first sample, kept (cleared) afterwards.
    hist: Option<Box<Histogram<u32>>>,
    timeouts: u64,
    resets: u64,
}

impl Slot {
    fn clear(&mut self) {
        if let Some(h) = &mut self.hist {
            h.reset();
        }
        self.timeouts = 0;
        self.resets = 0;
    }
}

/// Upper bounds (µs) of the buckets `/metrics` exports latency in as a Prometheus histogram:
/// fixed, so the series of every node and every scrape add up (`sum by (le)`).
pub const BUCKET_BOUNDS_US: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Every sample of a series since its backend took its id, in `BUCKET_BOUNDS_US` (the last
/// bucket past them): cumulative, as a Prometheus histogram wants, where the windows slide.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Samples per bucket (not cumulative); `[BUCKET_BOUNDS_US.len()]` above the last bound.
    pub buckets: [u64; BUCKET_BOUNDS_US.len() + 1],
    pub count: u64,
    pub sum_us: u64,
}

impl Totals {
    fn record(&mut self, us: u64, n: u64) {
        let i = BUCKET_BOUNDS_US.partition_point(|&b| b < us);
        self.buckets[i] += n;
        self.count += n;
        self.sum_us = self.sum_us.saturating_add(us.saturating_mul(n));
    }

    /// Adds a period's histogram (each value at its HDR bucket's highest equivalent).
    fn add(&mut self, h: &Histogram<u32>) {
        for v in h.iter_recorded() {
            self.record(v.value_iterated_to(), u64::from(v.count_at_value()));
        }
    }

    fn absorb(&mut self, o: &Totals) {
        for (a, b) in self.buckets.iter_mut().zip(o.buckets) {
            *a += b;
        }
        self.count += o.count;
        self.sum_us = self.sum_us.saturating_add(o.sum_us);
    }
}

/// What a window says about a series (or several, merged).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
    pub timeouts: u64,
    pub resets: u64,
}

impl Summary {
    fn of(h: &Histogram<u32>, timeouts: u64, resets: u64) -> Summary {
        if h.is_empty() {
            return Summary {
                timeouts,
                resets,
                ..Summary::default()
            };
        }
        Summary {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
            timeouts,
            resets,
        }
    }
}

/// Every series' ring of slots.
pub struct Windows {
    slots: usize,
    /// Index of the slot being filled.
    current: usize,
    /// Backend id to its first series.
    first: Vec<usize>,
    paths: Vec<usize>,
    /// [series][kind][slot]
    rings: Vec<[Vec<Slot>; KINDS]>,
    /// [series][kind]: every sample since the series began.
    totals: Vec<[Totals; KINDS]>,
}

impl Windows {
    /// Windows of `slots` periods for backends with these numbers of paths.
    pub fn new(slots: usize, paths_per_backend: &[usize]) -> Windows {
        let slots = slots.max(1);
        let mut first = Vec::new();
        let mut n = 0;
        for &p in paths_per_backend {
            first.push(n);
            n += p;
        }
        let ring = || (0..slots).map(|_| Slot::default()).collect::<Vec<_>>();
        Windows {
            slots,
            current: 0,
            first,
            paths: paths_per_backend.to_vec(),
            rings: (0..n).map(|_| [ring(), ring(), ring()]).collect(),
            totals: vec![Default::default(); n],
        }
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The windows for a new set of backends (paths per id): a backend `fresh` at its id, or
    /// whose number of paths changed, starts empty; the others keep their rings.
    pub fn reshape(&mut self, paths_per_backend: &[usize], fresh: &[bool]) {
        let mut next = Windows::new(self.slots, paths_per_backend);
        next.current = self.current;
        for (b, &np) in paths_per_backend.iter().enumerate() {
            let kept =
                !fresh.get(b).copied().unwrap_or(true) && self.paths.get(b).copied() == Some(np);
            if !kept {
                continue;
            }
            for p in 0..np {
                let (Some(from), Some(to)) = (self.index(b as u16, p), next.index(b as u16, p))
                else {
                    continue;
                };
                next.rings[to] = std::mem::take(&mut self.rings[from]);
                next.totals[to] = std::mem::take(&mut self.totals[from]);
            }
        }
        *self = next;
    }

    fn index(&self, backend: u16, path: usize) -> Option<usize> {
        let b = usize::from(backend);
        (path < *self.paths.get(b)?).then(|| self.first[b] + path)
    }

    /// Adds a worker's period into the current slot.
    pub fn merge(&mut self, set: &HistSet) {
        for (b, np) in set.shape() {
            for p in 0..np {
                let Some(i) = self.index(b, usize::from(p)) else {
                    continue;
                };
                for kind in Kind::ALL {
                    let Some(s) = set.series(b, p, kind) else {
                        continue;
                    };
                    if s.is_empty() {
                        continue;
                    }
                    let slot = &mut self.rings[i][kind as usize][self.current];
                    let h = slot.hist.get_or_insert_with(|| Box::new(new_histogram()));
                    // Same bounds on both sides: add cannot fail or resize.
                    let _ = h.add(&s.hist);
                    self.totals[i][kind as usize].add(&s.hist);
                    slot.timeouts += u64::from(s.timeouts);
                    slot.resets += u64::from(s.resets);
                }
            }
        }
    }

    /// A measurement the control thread makes itself (a probe that timed out), into the
    /// current slot at `us`.
    pub fn record_timeout(&mut self, backend: u16, path: usize, kind: Kind, us: u64) {
        let Some(i) = self.index(backend, path) else {
            return;
        };
        let slot = &mut self.rings[i][kind as usize][self.current];
        let h = slot.hist.get_or_insert_with(|| Box::new(new_histogram()));
        h.saturating_record(us.max(1));
        slot.timeouts += 1;
        self.totals[i][kind as usize].record(us.max(1), 1);
    }

    /// Ends the period: the next slot (the oldest) is cleared and becomes current.
    pub fn roll(&mut self) {
        self.current = (self.current + 1) % self.slots;
        let c = self.current;
        for series in &mut self.rings {
            for ring in series.iter_mut() {
                ring[c].clear();
            }
        }
    }

    /// The slots of the periods `back` before the current one (0: the one being filled) of
    /// a backend's `path`, or of all its paths when None.
    fn slots_of(
        &self,
        backend: u16,
        path: Option<usize>,
        kind: Kind,
        back: std::ops::Range<usize>,
    ) -> impl Iterator<Item = &Slot> + '_ {
        let b = usize::from(backend);
        let np = self.paths.get(b).copied().unwrap_or(0);
        let range = match path {
            Some(p) if p < np => p..p + 1,
            Some(_) => 0..0,
            None => 0..np,
        };
        let back = back.start.min(self.slots)..back.end.min(self.slots);
        let (first, current, slots) = (
            self.first.get(b).copied().unwrap_or(0),
            self.current,
            self.slots,
        );
        range.flat_map(move |p| {
            let ring = &self.rings[first + p][kind as usize];
            back.clone()
                .map(move |k| &ring[(current + slots - k) % slots])
        })
    }

    fn merged(
        &self,
        backend: u16,
        path: Option<usize>,
        kind: Kind,
        back: std::ops::Range<usize>,
    ) -> Histogram<u32> {
        let mut acc = new_histogram();
        for h in self
            .slots_of(backend, path, kind, back)
            .filter_map(|s| s.hist.as_ref())
        {
            let _ = acc.add(h.as_ref());
        }
        acc
    }

    /// Every sample of a backend (all its paths) of `kind` since it took its id.
    pub fn totals(&self, backend: u16, kind: Kind) -> Totals {
        let mut t = Totals::default();
        let b = usize::from(backend);
        let (first, np) = (
            self.first.get(b).copied().unwrap_or(0),
            self.paths.get(b).copied().unwrap_or(0),
        );
        for series in self.totals.iter().skip(first).take(np) {
            t.absorb(&series[kind as usize]);
        }
        t
    }

    /// The last `periods` periods of a backend's `path` (or all its paths when None).
    pub fn summary(
        &self,
        backend: u16,
        path: Option<usize>,
        kind: Kind,
        periods: usize,
    ) -> Summary {
        let acc = self.merged(backend, path, kind, 0..periods.max(1));
        let (timeouts, resets) = self
            .slots_of(backend, path, kind, 0..periods.max(1))
            .fold((0, 0), |(t, r), s| (t + s.timeouts, r + s.resets));
        Summary::of(&acc, timeouts, resets)
    }

    /// (samples, q-quantile) over the last `periods` of a backend's path (or all paths).
    pub fn quantile(
        &self,
        backend: u16,
        path: Option<usize>,
        kind: Kind,
        periods: usize,
        q: f64,
    ) -> (u64, u64) {
        let h = self.merged(backend, path, kind, 0..periods.max(1));
        if h.is_empty() {
            (0, 0)
        } else {
            (h.len(), h.value_at_quantile(q))
        }
    }

    /// (samples, q-quantile) of the most recent periods that hold at least `min` samples
    /// (fewer when the whole window holds fewer): the latest behaviour of a backend however
    /// little traffic it gets now.
    pub fn latest(
        &self,
        backend: u16,
        path: Option<usize>,
        kind: Kind,
        min: u64,
        q: f64,
    ) -> (u64, u64) {
        let mut acc = new_histogram();
        for back in 0..self.slots {
            let _ = acc.add(self.merged(backend, path, kind, back..back + 1));
            if acc.len() >= min {
                break;
            }
        }
        if acc.is_empty() {
            (0, 0)
        } else {
            (acc.len(), acc.value_at_quantile(q))
        }
    }

    /// The whole window.
    pub fn window(&self, backend: u16, path: Option<usize>, kind: Kind) -> Summary {
        self.summary(backend, path, kind, self.slots)
    }

    /// (samples, q-quantile) over the whole window of several backends at once (a pool).
    pub fn pool_quantile(&self, backends: &[u16], kind: Kind, q: f64) -> (u64, u64) {
        let mut acc = new_histogram();
        for &b in backends {
            let _ = acc.add(self.merged(b, None, kind, 0..self.slots));
        }
        if acc.is_empty() {
            (0, 0)
        } else {
            (acc.len(), acc.value_at_quantile(q))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(samples: &[(u16, u8, Kind, u64)]) -> HistSet {
        let mut h = HistSet::new(&[2, 1]);
        for &(b, p, k, v) in samples {
            h.record(b, p, k, v);
        }
        h
    }

    #[test]
    fn merges_rolls_and_forgets_after_the_window() {
        let mut w = Windows::new(3, &[2, 1]);
        w.merge(&set(&[
            (0, 0, Kind::Response, 1000),
            (0, 1, Kind::Response, 3000),
        ]));
        w.merge(&set(&[(0, 0, Kind::Response, 1000)]));
        let s = w.window(0, None, Kind::Response);
        assert_eq!(s.count, 3);
        assert!((995..=1005).contains(&s.p50_us), "{s:?}");
        assert!((2980..=3020).contains(&s.max_us), "{s:?}");
        assert_eq!(w.window(0, Some(1), Kind::Response).count, 1);
        assert_eq!(w.window(1, None, Kind::Response).count, 0);
        w.record_timeout(1, 0, Kind::Probe, 1_000_000);
        assert_eq!(w.window(1, None, Kind::Probe).timeouts, 1);
        // Two more periods: still inside the 3-period window.
        w.roll();
        w.merge(&set(&[(0, 0, Kind::Response, 50_000)]));
        assert_eq!(w.summary(0, None, Kind::Response, 1).count, 1);
        assert_eq!(w.window(0, None, Kind::Response).count, 4);
        w.roll();
        assert_eq!(w.window(0, None, Kind::Response).count, 4);
        // The third roll clears the first period.
        w.roll();
        assert_eq!(w.window(0, None, Kind::Response).count, 1);
        assert_eq!(w.window(1, None, Kind::Probe).timeouts, 0);
        let (n, p99) = w.pool_quantile(&[0, 1], Kind::Response, 0.99);
        assert_eq!(n, 1);
        assert!(p99 >= 49_000);
    }
}

#[cfg(test)]
mod totals {
    use super::*;

    #[test]
    fn every_sample_stays_in_its_fixed_bucket_while_the_window_slides_on() {
        let mut w = Windows::new(2, &[2, 1]);
        let mut set = HistSet::new(&[2, 1]);
        set.record(0, 0, Kind::Response, 80); // le 100 us
        set.record(0, 1, Kind::Response, 3_000); // le 5 ms, on the other path
        set.record(0, 0, Kind::Response, 20_000_000); // past 10 s
        set.record(1, 0, Kind::Response, 40); // another backend
        w.merge(&set);
        w.record_timeout(0, 1, Kind::Probe, 400_000); // le 500 ms
        for _ in 0..3 {
            w.roll();
        }
        assert_eq!(
            w.summary(0, None, Kind::Response, 2).count,
            0,
            "the window moved on"
        );
        let t = w.totals(0, Kind::Response);
        assert_eq!(t.count, 3);
        let at = |us: u64| BUCKET_BOUNDS_US.iter().position(|&b| b == us).unwrap();
        assert_eq!(t.buckets[at(100)], 1);
        assert_eq!(t.buckets[at(5_000)], 1);
        assert_eq!(t.buckets[BUCKET_BOUNDS_US.len()], 1, "above the last bound");
        assert_eq!(t.buckets.iter().sum::<u64>(), 3);
        assert!(t.sum_us >= 20_003_080, "{}", t.sum_us);
        assert_eq!(w.totals(0, Kind::Probe).buckets[at(500_000)], 1);
        assert_eq!(w.totals(1, Kind::Response).buckets[at(50)], 1);
        // A backend new at its id starts from nothing; a kept one keeps its totals.
        w.reshape(&[2, 1], &[false, true]);
        assert_eq!(w.totals(0, Kind::Response).count, 3);
        assert_eq!(w.totals(1, Kind::Response).count, 0);
    }
}
