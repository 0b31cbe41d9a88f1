//! `[health]`, `[qos]` and each service's `queue` and `standby`: how the node measures its
//! backends, how measurements turn into selection, how many flows a backend takes at once,
//! and when standby backends join.

use crate::validate::Checker;
use crate::Problem;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `[health]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct HealthFile {
    pub probe: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub down_after: Option<u32>,
    pub up_after: Option<u32>,
    pub on_backend_down: Option<String>,
}

/// `[qos]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct QosFile {
    pub window: Option<String>,
    pub period: Option<String>,
    pub selection: Option<String>,
    pub quantile: Option<f64>,
    pub exponent: Option<f64>,
    pub tolerance: Option<f64>,
    pub slack: Option<String>,
    pub min_factor: Option<f64>,
    pub min_samples: Option<u32>,
    pub timeout: Option<String>,
    pub slow_start: Option<String>,
    pub decay: Option<String>,
    pub probation: Option<String>,
}

/// A service's `queue = { ... }` as written.
#[derive(Debug, Deserialize)]
pub struct QueueFile {
    pub max_len: Option<u32>,
    pub max_wait: Option<String>,
}

/// A service's `standby = { ... }` as written.
#[derive(Debug, Deserialize)]
pub struct StandbyFile {
    pub p99_above: Option<String>,
    #[serde(rename = "for")]
    pub for_: Option<String>,
    pub recover_for: Option<String>,
    pub cooldown: Option<String>,
    pub healthy_below: Option<u32>,
    pub hook: Option<String>,
}

/// How backends are probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeMethod {
    /// A TCP SYN to the backend's port: the SYN-ACK's round trip, then a reset.
    Tcp,
    /// An ICMP (or ICMPv6) echo.
    Icmp,
    /// No active probes: backends are always up, QoS comes from passive measurements.
    None,
}

/// What happens to a down backend's established flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBackendDown {
    /// They stay (TCP connections would break if moved; the backend may still answer them).
    Keep,
    /// UDP flows move to another backend; TCP flows stay.
    Move,
}

#[derive(Debug, Clone)]
pub struct HealthConfig {
    pub probe: ProbeMethod,
    pub interval: Duration,
    pub timeout: Duration,
    pub down_after: u32,
    pub up_after: u32,
    pub on_backend_down: OnBackendDown,
}

/// Without a `[health]` section no probes are sent (as with HAProxy's opt-in `check`): a
/// node added to an existing set-up does not start knocking on backends unasked.
impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            probe: ProbeMethod::None,
            interval: Duration::from_millis(500),
            timeout: Duration::from_secs(1),
            down_after: 3,
            up_after: 2,
            on_backend_down: OnBackendDown::Keep,
        }
    }
}

/// How a new flow's backend is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Two candidates drawn by weight times a QoS factor from the measured latency, the one
    /// with fewer active flows per unit of that wins (the default; see README).
    Qos,
    /// Plain weights (Maglev), no feedback.
    Weights,
    /// Power of two choices on active flows per unit of weight.
    LeastFlows,
    /// Power of two choices on peak-EWMA latency times (active flows + 1) (Finagle/Linkerd).
    PeakEwma,
}

impl Selection {
    pub fn name(self) -> &'static str {
        match self {
            Selection::Qos => "qos",
            Selection::Weights => "weights",
            Selection::LeastFlows => "least_flows",
            Selection::PeakEwma => "peak_ewma",
        }
    }
    pub fn parse(s: &str) -> Option<Selection> {
        Some(match s {
            "qos" => Selection::Qos,
            "weights" => Selection::Weights,
            "least_flows" => Selection::LeastFlows,
            "peak_ewma" => Selection::PeakEwma,
            _ => return None,
        })
    }
    /// True when selection reads live flow counts (so every new flow is counted).
    pub fn counts_flows(self) -> bool {
        !matches!(self, Selection::Weights)
    }
}

#[derive(Debug, Clone)]
pub struct QosConfig {
    /// How far back the sliding windows reach.
    pub window: Duration,
    /// How often windows roll and factors are recomputed.
    pub period: Duration,
    pub selection: Selection,
    /// The latency quantile compared between backends.
    pub quantile: f64,
    /// How steeply a slower backend loses share: factor = (reference / latency)^exponent.
    pub exponent: f64,
    /// Latencies within this fraction above the reference count as equal (no penalty).
    pub tolerance: f64,
    /// Latencies within this much above the reference count as equal too (absolute, for
    /// sub-millisecond services whose quantiles move with scheduling noise).
    pub slack: Duration,
    /// The smallest factor: a slow backend keeps this share of its weight, so it is still
    /// measured and can win its share back.
    pub min_factor: f64,
    /// Samples a window needs before it is trusted.
    pub min_samples: u32,
    /// A response not seen within this counts as a timeout, recorded at this value.
    pub timeout: Duration,
    /// How long a backend that comes up (or a standby that is activated) takes to ramp
    /// from a tenth of its share to all of it.
    pub slow_start: Duration,
    /// peak_ewma: the EWMA's time constant.
    pub decay: Duration,
    /// A penalised backend gets no flows, so no new samples: it keeps its estimate this
    /// long after its last sample, then is tried again at full share.
    pub probation: Duration,
}

impl Default for QosConfig {
    fn default() -> Self {
        QosConfig {
            window: Duration::from_secs(10),
            period: Duration::from_millis(500),
            selection: Selection::Qos,
            quantile: 0.9,
            exponent: 2.0,
            tolerance: 0.25,
            slack: Duration::from_millis(1),
            min_factor: 0.01,
            min_samples: 5,
            timeout: Duration::from_secs(1),
            slow_start: Duration::from_secs(10),
            decay: Duration::from_secs(10),
            probation: Duration::from_secs(30),
        }
    }
}

impl QosConfig {
    /// Periods in a window.
    pub fn slots(&self) -> usize {
        let p = self.period.as_micros().max(1);
        (self.window.as_micros() / p).clamp(1, 600) as usize
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    pub max_len: u32,
    pub max_wait: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_len: 1024,
            max_wait: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandbyConfig {
    /// Activate a standby when the pool's p99 stays above this...
    pub p99_above: Option<Duration>,
    /// ...or when fewer than this many active backends are healthy...
    pub healthy_below: u32,
    /// ...for this long.
    pub for_: Duration,
    /// Release it when QoS stays good for this long.
    pub recover_for: Duration,
    /// Least time between two changes.
    pub cooldown: Duration,
    /// Run with the backend's name when one is activated or released.
    pub hook: Option<PathBuf>,
}

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
pub(crate) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
pub(crate) fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

pub(crate) fn health(f: Option<&HealthFile>, problems: &mut Vec<Problem>) -> HealthConfig {
    let d = HealthConfig::default();
    let Some(f) = f else { return d };
    let d = HealthConfig {
        probe: ProbeMethod::Tcp,
        ..d
    };
    let mut c = Checker { problems };
    let probe = match f.probe.as_deref() {
        None | Some("tcp") => ProbeMethod::Tcp,
        Some("icmp") => ProbeMethod::Icmp,
        Some("none") => ProbeMethod::None,
        Some(x) => {
            c.bad("health.probe", format!("\"{x}\" is not tcp, icmp or none"));
            ProbeMethod::Tcp
        }
    };
    let interval = c.duration_in(
        "health.interval",
        f.interval.as_deref(),
        d.interval,
        (ms(10), hours(1)),
    );
    // Probe round trips are timed modulo 16.7 s.
    let timeout = c.duration_in(
        "health.timeout",
        f.timeout.as_deref(),
        d.timeout,
        (ms(1), secs(16)),
    );
    let down_after = f.down_after.unwrap_or(d.down_after);
    let up_after = f.up_after.unwrap_or(d.up_after);
    if !(1..=100).contains(&down_after) {
        c.bad("health.down_after", "must be from 1 to 100 probes");
    }
    if !(1..=100).contains(&up_after) {
        c.bad("health.up_after", "must be from 1 to 100 probes");
    }
    let on_backend_down = match f.on_backend_down.as_deref() {
        None | Some("keep") => OnBackendDown::Keep,
        Some("move") => OnBackendDown::Move,
        Some(x) => {
            c.bad(
                "health.on_backend_down",
                format!("\"{x}\" is not keep or move"),
            );
            OnBackendDown::Keep
        }
    };
    HealthConfig {
        probe,
        interval,
        timeout,
        down_after,
        up_after,
        on_backend_down,
    }
}

pub(crate) fn qos(f: Option<&QosFile>, problems: &mut Vec<Problem>) -> QosConfig {
    let d = QosConfig::default();
    let Some(f) = f else { return d };
    let mut c = Checker { problems };
    let period = c.duration_in(
        "qos.period",
        f.period.as_deref(),
        d.period,
        (ms(50), secs(60)),
    );
    let window = c.duration_in(
        "qos.window",
        f.window.as_deref(),
        d.window,
        (ms(50), hours(1)),
    );
    if window < period {
        c.bad("qos.window", "must be at least one qos.period");
    } else if window.as_micros() / period.as_micros().max(1) > 600 {
        c.bad("qos.window", "at most 600 periods (raise qos.period)");
    }
    let selection = match f.selection.as_deref() {
        None => d.selection,
        Some(s) => Selection::parse(s).unwrap_or_else(|| {
            c.bad(
                "qos.selection",
                format!("\"{s}\" is not qos, weights, least_flows or peak_ewma"),
            );
            d.selection
        }),
    };
    let quantile = c.fraction("qos.quantile", f.quantile, 0.5, 0.9999, d.quantile);
    let exponent = c.fraction("qos.exponent", f.exponent, 0.1, 10.0, d.exponent);
    let tolerance = c.fraction("qos.tolerance", f.tolerance, 0.0, 10.0, d.tolerance);
    let slack = c.duration_in(
        "qos.slack",
        f.slack.as_deref(),
        d.slack,
        (Duration::ZERO, secs(10)),
    );
    let min_factor = c.fraction("qos.min_factor", f.min_factor, 0.001, 1.0, d.min_factor);
    let min_samples = f.min_samples.unwrap_or(d.min_samples);
    if !(1..=1_000_000).contains(&min_samples) {
        c.bad("qos.min_samples", "must be from 1 to 1000000");
    }
    let timeout = c.duration_in(
        "qos.timeout",
        f.timeout.as_deref(),
        d.timeout,
        (ms(1), hours(1)),
    );
    let slow_start = c.duration_in(
        "qos.slow_start",
        f.slow_start.as_deref(),
        d.slow_start,
        (Duration::ZERO, hours(1)),
    );
    let decay = c.duration_in("qos.decay", f.decay.as_deref(), d.decay, (ms(1), hours(1)));
    let probation = c.duration_in(
        "qos.probation",
        f.probation.as_deref(),
        d.probation,
        (ms(1), hours(24)),
    );
    QosConfig {
        window,
        period,
        selection,
        quantile,
        exponent,
        tolerance,
        slack,
        min_factor,
        min_samples,
        timeout,
        slow_start,
        decay,
        probation,
    }
}

pub(crate) fn queue(k: &str, f: &QueueFile, problems: &mut Vec<Problem>) -> QueueConfig {
    let d = QueueConfig::default();
    let mut c = Checker { problems };
    let max_len = f.max_len.unwrap_or(d.max_len);
    if !(1..=65536).contains(&max_len) {
        c.bad(format!("{k}.queue.max_len"), "must be from 1 to 65536");
    }
    let max_wait = c.duration_in(
        &format!("{k}.queue.max_wait"),
        f.max_wait.as_deref(),
        d.max_wait,
        (ms(1), secs(600)),
    );
    QueueConfig { max_len, max_wait }
}

pub(crate) fn standby(k: &str, f: &StandbyFile, problems: &mut Vec<Problem>) -> StandbyConfig {
    let mut c = Checker { problems };
    let p99_above = f.p99_above.as_deref().map(|s| {
        c.duration_in(
            &format!("{k}.standby.p99_above"),
            Some(s),
            Duration::ZERO,
            (Duration::from_micros(1), hours(1)),
        )
    });
    let day = (Duration::ZERO, hours(24));
    let for_ = c.duration_in(&format!("{k}.standby.for"), f.for_.as_deref(), secs(5), day);
    let recover_for = c.duration_in(
        &format!("{k}.standby.recover_for"),
        f.recover_for.as_deref(),
        secs(30),
        day,
    );
    let cooldown = c.duration_in(
        &format!("{k}.standby.cooldown"),
        f.cooldown.as_deref(),
        for_,
        day,
    );
    let healthy_below = f.healthy_below.unwrap_or(0);
    if p99_above.is_none() && healthy_below == 0 {
        c.bad(
            format!("{k}.standby"),
            "needs p99_above or healthy_below: when to activate a standby",
        );
    }
    let hook = match f.hook.as_deref() {
        None => None,
        Some("") => {
            c.bad(format!("{k}.standby.hook"), "must be a command's path");
            None
        }
        Some(h) => Some(PathBuf::from(h)),
    };
    StandbyConfig {
        p99_above,
        healthy_below,
        for_,
        recover_for,
        cooldown,
        hook,
    }
}
