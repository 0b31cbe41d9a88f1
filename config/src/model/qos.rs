//! `[health]`, `[qos]` and each service's `queue` and `standby`, validated: how the node
//! measures its backends, how measurements turn into selection, how many flows a backend
//! takes at once, and when standby backends join.

use std::path::PathBuf;
use std::time::Duration;

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

/// Every backend selection: the name `[qos] selection` gives it, and the packet core's file
/// that implements it (`dataplane/core/src/select/FILE.rs`, an `Algorithm`). The one list
/// of them: this crate makes the `Selection` enum of it, the packet core its registry, so
/// adding an algorithm is a line here and its file.
#[macro_export]
macro_rules! for_each_selection {
    ($then:ident) => {
        $then! {
            /// Two candidates drawn by weight times a QoS factor from the measured latency,
            /// the one with fewer active flows per unit of that wins (the default; README).
            Qos => "qos" => qos::Qos,
            /// Plain weights (Maglev), no feedback.
            Weights => "weights" => weights::Weights,
            /// Power of two choices on active flows per unit of weight.
            LeastFlows => "least_flows" => least_flows::LeastFlows,
            /// Power of two choices on peak-EWMA latency times (active flows + 1)
            /// (Finagle/Linkerd).
            PeakEwma => "peak_ewma" => peak_ewma::PeakEwma,
        }
    };
}

macro_rules! selection_enum {
    ($($(#[doc = $doc:literal])* $v:ident => $name:literal => $m:ident :: $t:ident,)*) => {
        /// How a new flow's backend is chosen.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Selection { $($(#[doc = $doc])* $v,)* }

        impl Selection {
            pub const ALL: &'static [Selection] = &[$(Selection::$v,)*];
            pub fn name(self) -> &'static str {
                match self { $(Selection::$v => $name,)* }
            }
            pub fn parse(s: &str) -> Option<Selection> {
                match s { $($name => Some(Selection::$v),)* _ => None }
            }
        }
    };
}

for_each_selection!(selection_enum);

impl Selection {
    /// "qos, weights, least_flows or peak_ewma".
    pub fn names() -> String {
        super::one_of(Selection::ALL.iter().map(|s| s.name()))
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

/// Where a service's backends' admission limits come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LimitMode {
    /// Each backend's `max_flows` (0: none).
    #[default]
    Static,
    /// Learned from each backend's latency (`AdmissionConfig`), `max_flows` a ceiling.
    Adaptive,
}

impl LimitMode {
    pub fn name(self) -> &'static str {
        match self {
            LimitMode::Static => "static",
            LimitMode::Adaptive => "adaptive",
        }
    }
    pub fn parse(s: &str) -> Option<LimitMode> {
        match s {
            "static" => Some(LimitMode::Static),
            "adaptive" => Some(LimitMode::Adaptive),
            _ => None,
        }
    }
}

/// A service's `[service.admission]`: how many flows each backend may serve at once.
/// Adaptive limits follow Envoy's adaptive concurrency: each period the limit is scaled by
/// (minimum latency x (1 + `tolerance`)) / sampled latency, plus a headroom of its square
/// root while the latency is near the minimum; the minimum is measured again every
/// `min_interval` with the limit held at `min_limit`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionConfig {
    pub limit: LimitMode,
    pub min_limit: u32,
    pub max_limit: u32,
    /// How far the sampled latency may exceed the minimum before the limit shrinks.
    pub tolerance: f64,
    /// The quantile of a period's latency samples the controller compares.
    pub quantile: f64,
    /// How often the minimum latency is measured again.
    pub min_interval: Duration,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            limit: LimitMode::Static,
            min_limit: 1,
            max_limit: 10_000,
            tolerance: 0.1,
            quantile: 0.5,
            min_interval: Duration::from_secs(30),
        }
    }
}

impl AdmissionConfig {
    pub fn adaptive(&self) -> bool {
        self.limit == LimitMode::Adaptive
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
