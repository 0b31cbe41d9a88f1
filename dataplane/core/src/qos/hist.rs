//! A worker's latency histograms: one HDR histogram per (backend, path) and measurement kind,
//! plus counts of timeouts and resets. The worker records into its own set with no lock and
//! no allocation; once per period the control thread hands it a fresh set and takes the
//! filled one back (a double buffer over the channels), merges it into its sliding windows,
//! clears it and hands it out again next period.

use hdrhistogram::Histogram;

/// Largest value a histogram holds, in microseconds (larger ones are recorded as this).
pub const MAX_US: u64 = 60_000_000;
/// Significant figures: values are kept to within 1%.
pub const SIGFIGS: u8 = 2;

/// What a sample measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// An active probe's round trip (TCP SYN to SYN-ACK, or ICMP echo).
    Probe = 0,
    /// A client's handshake through the node: SYN forwarded to SYN-ACK seen (nat).
    Handshake = 1,
    /// Client payload forwarded to the first server payload after it (nat).
    Response = 2,
}

pub const KINDS: usize = 3;

impl Kind {
    pub const ALL: [Kind; KINDS] = [Kind::Probe, Kind::Handshake, Kind::Response];
    pub fn name(self) -> &'static str {
        match self {
            Kind::Probe => "probe",
            Kind::Handshake => "handshake",
            Kind::Response => "response",
        }
    }
}

/// A new empty histogram with the bounds every set and window uses (so `add` never
/// resizes, and never allocates).
pub fn new_histogram() -> Histogram<u32> {
    // The bounds are constants that satisfy hdrhistogram's rules (low >= 1, high >= 2 * low,
    // sigfigs <= 5), so this cannot fail.
    Histogram::new_with_bounds(1, MAX_US, SIGFIGS).expect("constant histogram bounds")
}

/// One (backend, path)'s measurements of one kind.
pub struct Series {
    pub hist: Histogram<u32>,
    pub timeouts: u32,
    pub resets: u32,
}

impl Series {
    fn new() -> Series {
        Series {
            hist: new_histogram(),
            timeouts: 0,
            resets: 0,
        }
    }

    pub fn clear(&mut self) {
        self.hist.reset();
        self.timeouts = 0;
        self.resets = 0;
    }

    pub fn is_empty(&self) -> bool {
        self.hist.is_empty() && self.timeouts == 0 && self.resets == 0
    }
}

/// Every series of one worker for one period.
pub struct HistSet {
    /// Backend id to its first series (its paths follow).
    first: Vec<u32>,
    paths: Vec<u8>,
    series: Vec<[Series; KINDS]>,
}

impl std::fmt::Debug for HistSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HistSet({} series)", self.series.len())
    }
}

impl HistSet {
    /// A set for backends with these numbers of paths (indexed by backend id).
    pub fn new(paths_per_backend: &[usize]) -> HistSet {
        let mut first = Vec::with_capacity(paths_per_backend.len());
        let mut paths = Vec::with_capacity(paths_per_backend.len());
        let mut n = 0u32;
        for &p in paths_per_backend {
            first.push(n);
            paths.push(p.min(usize::from(u8::MAX)) as u8);
            n += p as u32;
        }
        let series = (0..n)
            .map(|_| [Series::new(), Series::new(), Series::new()])
            .collect();
        HistSet {
            first,
            paths,
            series,
        }
    }

    /// The same shape as `self`, empty: for the control thread's double buffer.
    pub fn same_shape(&self) -> HistSet {
        let paths: Vec<usize> = self.paths.iter().map(|&p| usize::from(p)).collect();
        HistSet::new(&paths)
    }

    #[inline]
    fn index(&self, backend: u16, path: u8) -> Option<usize> {
        let b = usize::from(backend);
        if path >= *self.paths.get(b)? {
            return None;
        }
        Some(self.first[b] as usize + usize::from(path))
    }

    /// Records one sample in microseconds (clamped to [1, MAX_US]). Unknown series (a
    /// backend added after this set was shaped) are skipped.
    #[inline]
    pub fn record(&mut self, backend: u16, path: u8, kind: Kind, us: u64) {
        if let Some(i) = self.index(backend, path) {
            self.series[i][kind as usize]
                .hist
                .saturating_record(us.clamp(1, MAX_US));
        }
    }

    /// A measurement that never completed: counted, and recorded at `timeout_us` so a
    /// backend that fails never looks fast.
    #[inline]
    pub fn record_timeout(&mut self, backend: u16, path: u8, kind: Kind, timeout_us: u64) {
        if let Some(i) = self.index(backend, path) {
            let s = &mut self.series[i][kind as usize];
            s.timeouts = s.timeouts.saturating_add(1);
            s.hist.saturating_record(timeout_us.clamp(1, MAX_US));
        }
    }

    /// A measurement the server cut short with a reset: counted, recorded at `timeout_us`.
    #[inline]
    pub fn record_reset(&mut self, backend: u16, path: u8, kind: Kind, timeout_us: u64) {
        if let Some(i) = self.index(backend, path) {
            let s = &mut self.series[i][kind as usize];
            s.resets = s.resets.saturating_add(1);
            s.hist.saturating_record(timeout_us.clamp(1, MAX_US));
        }
    }

    pub fn series(&self, backend: u16, path: u8, kind: Kind) -> Option<&Series> {
        self.index(backend, path)
            .map(|i| &self.series[i][kind as usize])
    }

    /// Number of backends and of each one's paths.
    pub fn shape(&self) -> impl Iterator<Item = (u16, u8)> + '_ {
        self.paths.iter().enumerate().map(|(b, &p)| (b as u16, p))
    }

    pub fn clear(&mut self) {
        for s in self.series.iter_mut().flatten() {
            if !s.is_empty() {
                s.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_by_backend_and_path() {
        let mut h = HistSet::new(&[2, 1]);
        h.record(0, 1, Kind::Response, 5000);
        h.record(1, 0, Kind::Probe, 200);
        h.record(1, 1, Kind::Probe, 200); // backend 1 has one path: skipped
        h.record(7, 0, Kind::Probe, 200); // no such backend: skipped
        h.record_timeout(0, 0, Kind::Probe, 1_000_000);
        assert_eq!(h.series(0, 1, Kind::Response).unwrap().hist.len(), 1);
        assert_eq!(h.series(1, 0, Kind::Probe).unwrap().hist.len(), 1);
        let t = h.series(0, 0, Kind::Probe).unwrap();
        assert_eq!(t.timeouts, 1);
        assert!(t.hist.value_at_quantile(0.5) >= 990_000);
        assert!(h.series(1, 1, Kind::Probe).is_none());
        h.clear();
        assert!(h.series(0, 1, Kind::Response).unwrap().is_empty());
        assert_eq!(h.same_shape().shape().count(), 2);
    }

    #[test]
    fn values_beyond_the_range_are_clamped() {
        let mut h = HistSet::new(&[1]);
        h.record(0, 0, Kind::Probe, 0);
        h.record(0, 0, Kind::Probe, u64::MAX);
        let s = h.series(0, 0, Kind::Probe).unwrap();
        assert_eq!(s.hist.len(), 2);
        assert!(s.hist.max() >= MAX_US * 99 / 100);
    }
}
