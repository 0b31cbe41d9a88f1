//! Quality of service, the control thread's half: it schedules the workers' probes and
//! turns their answers into health (`health`), merges the workers' histograms into sliding
//! windows (`window`), turns the windows into QoS factors and path shares (`factor`), brings
//! standby backends in and out (`standby`), and hands the result to the workers as the
//! `BackendLive` part of a new services snapshot. Time is passed in, so all of it runs under
//! a fake clock in tests.

pub mod factor;
pub mod health;
pub mod limit;
pub mod standby;
pub mod window;

use health::{Health, Schedule};
use standby::{Action, PoolState, Standby};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tandem_config::{
    BackendState, Config, HealthConfig, Mode, ProbeMethod, Protocol, QosConfig, Selection,
    ServiceConfig, StandbyConfig,
};
use tandem_dataplane::qos::hist::Kind;
use tandem_dataplane::qos::probe::{self, Method, Outcome};
use tandem_dataplane::services::{name_identity, BackendLive, Layout};
use window::Windows;

/// How many changes `show services` keeps.
const EVENTS_KEPT: usize = 32;

/// A probe to send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeOrder {
    pub backend: u16,
    pub path: u8,
    pub round: u8,
    pub method: Method,
}

/// A standby change the daemon carries out (the hook).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRun {
    pub hook: std::path::PathBuf,
    pub event: &'static str,
    pub service: String,
    pub backend: String,
}

/// Per backend, what selection was last computed from.
#[derive(Debug, Clone, Default)]
pub struct Estimate {
    /// The latency compared (microseconds), and of which kind.
    pub latency_us: Option<u64>,
    pub kind: Option<Kind>,
    /// When its backend last had samples (in the period then ending).
    pub at: Option<Instant>,
}

pub struct Qos {
    pub health_cfg: HealthConfig,
    pub cfg: QosConfig,
    pub windows: Windows,
    /// [backend][path]
    pub health: Vec<Vec<Health>>,
    schedules: Vec<Vec<Schedule>>,
    /// What the workers get (via the services snapshot).
    pub live: Vec<BackendLive>,
    pub estimates: Vec<Estimate>,
    /// When a backend last started taking flows (for slow start).
    came_up: Vec<Option<Instant>>,
    /// By service id.
    pub standby: Vec<Option<Standby>>,
    /// What each service's standby pool was made from.
    standby_cfg: Vec<Option<StandbyConfig>>,
    /// By backend id: the backend there (its name's identity) and its number of paths.
    shape: Vec<Option<(u64, usize)>>,
    pub events: VecDeque<(Instant, String)>,
    pub probes_timed_out: u64,
    last_recompute: Option<Instant>,
}

fn probe_method(cfg: &HealthConfig, mode: Mode, protocol: Protocol) -> Option<Method> {
    match cfg.probe {
        ProbeMethod::None => None,
        // A gue backend's port is its GUE receive port, not a TCP service; a QUIC server
        // listens on UDP only: ping them.
        ProbeMethod::Tcp if !mode.tcp_probe() || protocol == Protocol::Quic => Some(Method::Icmp),
        ProbeMethod::Tcp => Some(Method::Tcp),
        ProbeMethod::Icmp => Some(Method::Icmp),
    }
}

impl Qos {
    pub fn new(cfg: &Config, layout: &Layout, now: Instant) -> Qos {
        let mut q = Qos {
            health_cfg: cfg.health.clone(),
            cfg: cfg.qos.clone(),
            windows: Windows::new(cfg.qos.slots(), &[]),
            health: Vec::new(),
            schedules: Vec::new(),
            live: Vec::new(),
            estimates: Vec::new(),
            came_up: Vec::new(),
            standby: Vec::new(),
            standby_cfg: Vec::new(),
            shape: Vec::new(),
            events: VecDeque::new(),
            probes_timed_out: 0,
            last_recompute: None,
        };
        q.reshape(layout, now);
        q
    }

    /// Follows a change of the services: a backend new at its id (or whose number of paths
    /// changed) starts afresh, healthy at full share with empty windows; the others keep
    /// what was learned of them. A service whose standby settings changed starts its
    /// standby pool afresh.
    pub fn reshape(&mut self, layout: &Layout, now: Instant) {
        let n = layout.backend_slots();
        let mut want: Vec<Option<(u64, usize)>> = vec![None; n];
        for (p, seat) in layout.seats() {
            want[usize::from(seat.id)] = Some((
                name_identity(&p.cfg.name, &seat.cfg.name),
                seat.cfg.paths.len(),
            ));
        }
        self.health.resize_with(n, Vec::new);
        self.schedules.resize_with(n, Vec::new);
        self.live.resize_with(n, BackendLive::default);
        self.estimates.resize_with(n, Estimate::default);
        self.came_up.resize(n, None);
        self.shape.resize(n, None);
        let total: usize = want.iter().flatten().map(|w| w.1).sum();
        let interval = self.health_cfg.interval;
        let mut fresh = vec![false; n];
        let mut k = 0;
        for id in 0..n {
            let np = want[id].map_or(0, |w| w.1);
            if want[id] != self.shape[id] {
                fresh[id] = true;
                self.health[id] = vec![Health::default(); np];
                self.schedules[id] = (0..np)
                    .map(|j| Schedule::new(now, interval, k + j, total))
                    .collect();
                self.live[id] = BackendLive {
                    path_up: vec![true; np],
                    path_share: vec![1000; np],
                    ..BackendLive::default()
                };
                self.estimates[id] = Estimate::default();
                self.came_up[id] = None;
                self.shape[id] = want[id];
            }
            k += np;
        }
        let paths: Vec<usize> = want.iter().map(|w| w.map_or(0, |w| w.1)).collect();
        self.windows.reshape(&paths, &fresh);
        let ns = layout.service_slots();
        self.standby.resize_with(ns, || None);
        self.standby_cfg.resize(ns, None);
        let mut seen = vec![false; ns];
        for p in &layout.services {
            let i = usize::from(p.id);
            seen[i] = true;
            if self.standby_cfg[i] != p.cfg.standby {
                self.standby_cfg[i] = p.cfg.standby.clone();
                self.standby[i] = p.cfg.standby.clone().map(Standby::new);
            }
        }
        for (i, s) in seen.iter().enumerate() {
            if !s {
                self.standby[i] = None;
                self.standby_cfg[i] = None;
            }
        }
    }

    /// New `[health]` and `[qos]` settings (a reload): probe schedules restart at the new
    /// interval; the latency windows restart when their number of periods changes.
    pub fn set_config(
        &mut self,
        health: HealthConfig,
        qos: QosConfig,
        layout: &Layout,
        now: Instant,
    ) {
        let slots = qos.slots();
        let restart_schedules = health.interval != self.health_cfg.interval;
        self.health_cfg = health;
        if slots != self.windows.slots() {
            let paths: Vec<usize> = self.shape.iter().map(|w| w.map_or(0, |w| w.1)).collect();
            self.windows = Windows::new(slots, &paths);
        }
        self.cfg = qos;
        if restart_schedules {
            let interval = self.health_cfg.interval;
            let total: usize = self.schedules.iter().map(Vec::len).sum();
            let mut k = 0;
            for s in &mut self.schedules {
                let np = s.len();
                *s = (0..np)
                    .map(|j| Schedule::new(now, interval, k + j, total))
                    .collect();
                k += np;
            }
        }
        self.reshape(layout, now);
    }

    fn event(&mut self, now: Instant, what: String) {
        tracing::warn!("{what}");
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back((now, what));
    }

    /// Probes due now; probes out past the timeout count as failures. Returns the orders
    /// and whether health changed.
    pub fn probes(&mut self, now: Instant, layout: &Layout) -> (Vec<ProbeOrder>, bool) {
        let mut orders = Vec::new();
        let mut changed = false;
        let hc = self.health_cfg.clone();
        // Series are numbered over every backend's paths in order, as the workers number
        // them (`Services::series`).
        let mut series = 0usize;
        for s in &layout.services {
            let method = probe_method(&hc, s.cfg.mode, s.cfg.protocol);
            for seat in &s.seats {
                let b = usize::from(seat.id);
                for p in 0..seat.cfg.paths.len() {
                    series += 1;
                    let (Some(m), true) = (method, series <= probe::MAX_SERIES) else {
                        continue;
                    };
                    let Some(sched) = self.schedules.get_mut(b).and_then(|v| v.get_mut(p)) else {
                        continue;
                    };
                    let lost = sched.timed_out(now, hc.timeout);
                    for _ in 0..lost {
                        self.probes_timed_out += 1;
                        let us = hc.timeout.as_micros() as u64;
                        self.windows.record_timeout(b as u16, p, Kind::Probe, us);
                        changed |= self.observe(now, layout, b, p, false);
                    }
                    if let Some(round) = self.schedules[b][p].due(now, hc.interval) {
                        orders.push(ProbeOrder {
                            backend: b as u16,
                            path: p as u8,
                            round,
                            method: m,
                        });
                    }
                }
            }
        }
        (orders, changed)
    }

    /// A worker's answer to a probe (or its report that it could not send one).
    pub fn probe_result(
        &mut self,
        now: Instant,
        layout: &Layout,
        backend: u16,
        path: u8,
        round: u8,
        outcome: Option<Outcome>,
    ) -> bool {
        let (b, p) = (usize::from(backend), usize::from(path));
        let Some(s) = self.schedules.get_mut(b).and_then(|v| v.get_mut(p)) else {
            return false;
        };
        if !s.answered(round) {
            return false;
        }
        let ok = matches!(outcome, Some(Outcome::Answered(_)));
        self.observe(now, layout, b, p, ok)
    }

    fn observe(&mut self, now: Instant, layout: &Layout, b: usize, p: usize, ok: bool) -> bool {
        let (down, up) = (self.health_cfg.down_after, self.health_cfg.up_after);
        let Some(h) = self.health.get_mut(b).and_then(|v| v.get_mut(p)) else {
            return false;
        };
        let Some(change) = h.observe(ok, down, up) else {
            return false;
        };
        let name = backend_name(layout, b);
        self.event(
            now,
            format!(
                "path {p} of backend {name} is {}",
                if change { "up" } else { "down" }
            ),
        );
        true
    }

    /// Recomputes health, factors, path shares, ramps and standbys from the windows (after
    /// the workers' histograms of the period that just ended were merged). Returns the hook
    /// runs to carry out; `self.live` holds the result.
    pub fn recompute(&mut self, now: Instant, layout: &Layout) -> Vec<HookRun> {
        let dt = self
            .last_recompute
            .map_or(self.cfg.period, |t| now.duration_since(t))
            .as_secs_f64();
        self.last_recompute = Some(now);
        let params = factor::Params {
            exponent: self.cfg.exponent,
            tolerance: self.cfg.tolerance,
            slack_us: self.cfg.slack.as_secs_f64() * 1e6,
            min_factor: self.cfg.min_factor,
        };
        let mut hooks = Vec::new();
        for placed in &layout.services {
            let si = usize::from(placed.id);
            // Removed backends as the snapshot runs them: draining.
            let mut s = placed.cfg.clone();
            s.backends = placed.running().map(|(_, b, _)| b).collect();
            let s = &s;
            let ids: Vec<usize> = placed.seats.iter().map(|x| usize::from(x.id)).collect();
            if ids.iter().any(|&b| b >= self.live.len()) {
                continue;
            }
            self.update_health(&ids, now);
            let (taking, kind) = self.pool_kind(s, &ids);
            let lat = self.latencies(&ids, kind, now);
            let f = factor::factors(&lat, &params);
            for (i, &b) in ids.iter().enumerate() {
                self.set_factor(s, i, b, (f[i], lat[i]), kind, now);
                self.update_backend(b, kind, dt, &params, now);
            }
            hooks.extend(self.step_standby(si, s, &ids, &taking, kind, now));
        }
        hooks
    }

    /// Health, per path and per backend; slow start for one that comes back.
    fn update_health(&mut self, ids: &[usize], now: Instant) {
        for &b in ids {
            let up_paths: Vec<bool> = self.health[b].iter().map(|h| h.up).collect();
            let up = up_paths.iter().any(|u| *u);
            let lv = &mut self.live[b];
            if up && !lv.up {
                self.came_up[b] = Some(now);
            }
            lv.up = up;
            lv.path_up = up_paths;
        }
    }

    /// The pool's backends taking flows, and the kind of latency compared in it: the most
    /// direct one that has samples.
    fn pool_kind(&self, s: &ServiceConfig, ids: &[usize]) -> (Vec<usize>, Kind) {
        let (q, min) = (self.cfg.quantile, u64::from(self.cfg.min_samples));
        let taking: Vec<usize> = ids
            .iter()
            .enumerate()
            .filter(|&(i, &b)| self.live[b].up && self.takes_flows(s, i, b))
            .map(|(_, &b)| b)
            .collect();
        let kind = [Kind::Response, Kind::Handshake, Kind::Probe]
            .into_iter()
            .find(|k| {
                taking
                    .iter()
                    .any(|&b| self.windows.quantile(b as u16, None, *k, usize::MAX, q).0 >= min)
            })
            .unwrap_or(Kind::Probe);
        (taking, kind)
    }

    /// Each backend's latency of `kind` (None: too few samples to judge).
    fn latencies(&self, ids: &[usize], kind: Kind, now: Instant) -> Vec<Option<f64>> {
        let (q, min) = (self.cfg.quantile, u64::from(self.cfg.min_samples));
        let keep_for = self.cfg.probation;
        ids.iter()
            .map(|&b| {
                let (n, whole) = self.windows.quantile(b as u16, None, kind, usize::MAX, q);
                // A backend already penalised gets few flows or none: judge it on
                // whatever samples it has, and keep its estimate through windows with
                // none for `probation`; then it is tried again at full share.
                let penalised = self.live[b].factor < 1.0;
                let prev = &self.estimates[b];
                if n >= min || (penalised && n > 0) {
                    let (_, recent) = self.windows.latest(b as u16, None, kind, min, q);
                    return Some(whole.max(recent) as f64);
                }
                match (penalised, prev.latency_us, prev.at) {
                    (true, Some(l), Some(at)) if now.duration_since(at) < keep_for => {
                        Some(l as f64)
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// Backend `b` (the `i`th of `s`) gets its new factor and estimate (the factor and the
    /// latency estimate); a change is an event.
    fn set_factor(
        &mut self,
        s: &ServiceConfig,
        i: usize,
        b: usize,
        (f, lat): (f64, Option<f64>),
        kind: Kind,
        now: Instant,
    ) {
        let q = self.cfg.quantile;
        let old = self.live[b].factor;
        self.live[b].factor = f;
        // Samples in the period just ended: the estimate rests on fresh data.
        let fresh = self.windows.quantile(b as u16, None, kind, 1, q).0 > 0;
        let at = if fresh {
            Some(now)
        } else {
            self.estimates[b].at
        };
        self.estimates[b] = Estimate {
            latency_us: lat.map(|x| x as u64),
            kind: Some(kind),
            at: lat.and(at),
        };
        if (old - f).abs() > f64::EPSILON && self.cfg.selection == Selection::Qos {
            let name = &s.backends[i].name;
            self.event(now, format!("backend {name} qos factor {old:.3} -> {f:.3}"));
        }
    }

    /// The rest of what selection reads of backend `b`: its peak EWMA, its path shares,
    /// its slow-start ramp.
    fn update_backend(
        &mut self,
        b: usize,
        kind: Kind,
        dt: f64,
        params: &factor::Params,
        now: Instant,
    ) {
        let (q, min) = (self.cfg.quantile, u64::from(self.cfg.min_samples));
        // peak EWMA of the period's mean (the anchor selection reads it).
        // With no sample the cost decays toward zero, as Finagle's does when read.
        let last = self.windows.summary(b as u16, None, kind, 1);
        let sample = if last.count > 0 { last.mean_us } else { 0.0 };
        let e = factor::peak_ewma(
            f64::from(self.live[b].ewma_us),
            sample,
            dt,
            self.cfg.decay.as_secs_f64(),
        );
        self.live[b].ewma_us = e.clamp(1.0, f64::from(u32::MAX)) as u32;
        // Path shares from each path's probe round trips.
        let np = self.health[b].len();
        if np > 1 {
            let pl: Vec<Option<f64>> = (0..np)
                .map(|p| {
                    let (n, v) =
                        self.windows
                            .quantile(b as u16, Some(p), Kind::Probe, usize::MAX, q);
                    (n >= min).then_some(v as f64)
                })
                .collect();
            let pf = factor::factors(&pl, params);
            self.live[b].path_share = pf
                .iter()
                .map(|x| (x * 1000.0).round().max(1.0) as u16)
                .collect();
        }
        self.live[b].ramp = match self.came_up[b] {
            Some(t) => factor::ramp(
                now.duration_since(t).as_secs_f64(),
                self.cfg.slow_start.as_secs_f64(),
            ),
            None => 1.0,
        };
    }

    /// The service's standby machine, one step: a standby activated or released (an event,
    /// and its hook to run).
    fn step_standby(
        &mut self,
        si: usize,
        s: &ServiceConfig,
        ids: &[usize],
        taking: &[usize],
        kind: Kind,
        now: Instant,
    ) -> Option<HookRun> {
        let mut sb = self.standby.get_mut(si)?.take()?;
        let min = u64::from(self.cfg.min_samples);
        let pool: Vec<u16> = taking.iter().map(|&b| b as u16).collect();
        let (n, p99) = self.windows.pool_quantile(&pool, kind, 0.99);
        let state = PoolState {
            p99: (n >= min).then(|| Duration::from_micros(p99)),
            healthy: taking.len() as u32,
        };
        let candidates: Vec<u16> = ids
            .iter()
            .enumerate()
            .filter(|(i, &b)| {
                s.backends[*i].state == BackendState::Standby
                    && !self.live[b].standby_active
                    && self.live[b].up
            })
            .map(|(_, &b)| b as u16)
            .collect();
        let mut hook = None;
        if let Some(a) = sb.step(now, &state, &candidates) {
            let (b, active, event) = match a {
                Action::Activate(b) => (b, true, "activate"),
                Action::Release(b) => (b, false, "release"),
            };
            let bi = usize::from(b);
            self.live[bi].standby_active = active;
            if active {
                self.came_up[bi] = Some(now);
                self.live[bi].ramp = 0.1;
            }
            let at = ids.iter().position(|&x| x == bi).unwrap_or(0);
            let name = s
                .backends
                .get(at)
                .map_or_else(String::new, |b| b.name.clone());
            let p99 = state.p99.map_or("-".to_string(), |d| format!("{d:?}"));
            self.event(
                now,
                format!(
                    "service {}: standby {name} {}d (pool p99 {p99}, {} healthy)",
                    s.name, event, state.healthy
                ),
            );
            hook = sb.cfg.hook.as_ref().map(|h| HookRun {
                hook: h.clone(),
                event,
                service: s.name.clone(),
                backend: name,
            });
        }
        self.standby[si] = Some(sb);
        hook
    }

    /// True when backend `b` (the `i`th of service `s`) takes new flows by its state.
    fn takes_flows(&self, s: &ServiceConfig, i: usize, b: usize) -> bool {
        match s.backends[i].state {
            BackendState::Active => true,
            BackendState::Standby => self.live[b].standby_active,
            _ => false,
        }
    }
}

fn backend_name(layout: &Layout, b: usize) -> String {
    match layout.seat_of(b as u16) {
        Some((p, s)) => format!("{}/{}", p.cfg.name, s.cfg.name),
        None => format!("#{b}"),
    }
}

#[cfg(test)]
mod tests;
