//! `[health]`, `[qos]`, and a service's `queue` and `standby`: each duration in its range,
//! each fraction in its bounds, names tandem knows.

use crate::model::*;
use crate::problem::{Checker, Problem};
use crate::schema::{AdmissionFile, HealthFile, QosFile, QueueFile, StandbyFile};
use std::path::PathBuf;
use std::time::Duration;

pub(super) fn health(f: Option<&HealthFile>, problems: &mut Vec<Problem>) -> HealthConfig {
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

pub(super) fn qos(f: Option<&QosFile>, problems: &mut Vec<Problem>) -> QosConfig {
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
                format!("\"{s}\" is not {}", Selection::names()),
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

pub(super) fn queue(k: &str, f: &QueueFile, problems: &mut Vec<Problem>) -> QueueConfig {
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

/// Most flows a learned limit may reach (`max_limit`).
pub const MAX_LEARNED_LIMIT: u32 = 1_000_000;

pub(super) fn admission(
    k: &str,
    f: &AdmissionFile,
    problems: &mut Vec<Problem>,
) -> AdmissionConfig {
    let d = AdmissionConfig::default();
    let mut c = Checker { problems };
    let limit = match f.limit.as_deref() {
        None => d.limit,
        Some(s) => LimitMode::parse(s).unwrap_or_else(|| {
            c.bad(
                format!("{k}.admission.limit"),
                format!("\"{s}\" is not static or adaptive"),
            );
            d.limit
        }),
    };
    let min_limit = f.min_limit.unwrap_or(d.min_limit);
    let max_limit = f.max_limit.unwrap_or(d.max_limit);
    if !(1..=MAX_LEARNED_LIMIT).contains(&max_limit) {
        c.bad(
            format!("{k}.admission.max_limit"),
            format!("must be from 1 to {MAX_LEARNED_LIMIT}"),
        );
    }
    if min_limit == 0 || min_limit > max_limit {
        c.bad(
            format!("{k}.admission.min_limit"),
            "must be from 1 to max_limit",
        );
    }
    let tolerance = c.fraction(
        &format!("{k}.admission.tolerance"),
        f.tolerance,
        0.0,
        2.0,
        d.tolerance,
    );
    let quantile = c.fraction(
        &format!("{k}.admission.quantile"),
        f.quantile,
        0.1,
        0.99,
        d.quantile,
    );
    let min_interval = c.duration_in(
        &format!("{k}.admission.min_interval"),
        f.min_interval.as_deref(),
        d.min_interval,
        (secs(1), hours(1)),
    );
    AdmissionConfig {
        limit,
        min_limit,
        max_limit,
        tolerance,
        quantile,
        min_interval,
    }
}

pub(super) fn standby(k: &str, f: &StandbyFile, problems: &mut Vec<Problem>) -> StandbyConfig {
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
