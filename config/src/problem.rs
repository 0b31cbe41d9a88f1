//! What a config check reports: a `Problem` names the key and says why; a `Checker`
//! collects them while values are read, so one run lists every problem of a file.

use crate::units::{format_duration, parse_duration};
use std::fmt;
use std::time::Duration;

/// One thing wrong with a config: the key it concerns and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub why: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.why)
    }
}

/// Collects problems while values are read: a bad value is recorded with its key and the
/// default is used, so checking goes on and every problem is listed.
pub(crate) struct Checker<'a> {
    pub(crate) problems: &'a mut Vec<Problem>,
}

impl Checker<'_> {
    pub(crate) fn bad(&mut self, key: impl Into<String>, why: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            why: why.into(),
        });
    }
    /// A duration that may be left out (then `dflt`) and must lie from `lo` to `hi`. A bad
    /// or out-of-range value is reported and `dflt` used, so whatever is computed from the
    /// result later (sums, products, deadlines) stays in range.
    pub(crate) fn duration_in(
        &mut self,
        key: &str,
        s: Option<&str>,
        dflt: Duration,
        (lo, hi): (Duration, Duration),
    ) -> Duration {
        match s.map(parse_duration) {
            None => dflt,
            Some(Ok(d)) if d >= lo && d <= hi => d,
            Some(Ok(_)) => {
                self.bad(
                    key,
                    format!(
                        "\"{}\" is out of range: must be from {} to {}",
                        s.unwrap_or_default().trim(),
                        format_duration(lo),
                        format_duration(hi)
                    ),
                );
                dflt
            }
            Some(Err(e)) => {
                self.bad(key, e);
                dflt
            }
        }
    }
    /// A number from `lo` to `hi` that may be left out (then `dflt`).
    pub(crate) fn fraction(
        &mut self,
        key: &str,
        v: Option<f64>,
        lo: f64,
        hi: f64,
        dflt: f64,
    ) -> f64 {
        match v {
            None => dflt,
            Some(x) if x.is_finite() && x >= lo && x <= hi => x,
            Some(x) => {
                self.bad(key, format!("{x} is not from {lo} to {hi}"));
                dflt
            }
        }
    }
}
