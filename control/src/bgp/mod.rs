//! What the node announces to the routers in front: tandem speaks no BGP. The node's own
//! BIRD 2 does, over a port's kernel twin; tandem decides which VIPs it announces and
//! writes them into the files BIRD includes (`route VIP/32 blackhole;`, one file per
//! family), then asks BIRD to read them (`bird`, from the `speaker` thread).
//!
//! A VIP is announced while the node is ready (its snapshot complete), not draining, not
//! stopping, and one of the VIP's services has at least `min_healthy` healthy backends
//! (probes passing, not removed, active or standby). `show bgp` says for each VIP whether
//! it is announced, why, and since when, and what BIRD last did with the files.

pub mod bird;
pub mod speaker;

use serde_json::{json, Value};
use speaker::{BirdState, Files, Speaker};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tandem_config::{BackendState, BgpConfig};
use tandem_dataplane::flow::key::bytes_addr;
use tandem_dataplane::services::Services;

/// Why a VIP is, or is not, announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Ready,
    Snapshotting,
    Draining,
    TooFewHealthy,
    CutOff,
    Stopping,
}

impl Why {
    pub fn name(self) -> &'static str {
        match self {
            Why::Ready => "ready",
            Why::Snapshotting => "snapshotting",
            Why::Draining => "draining",
            Why::TooFewHealthy => "too few healthy backends",
            Why::CutOff => "cut off: the node reaches no backend",
            Why::Stopping => "stopping",
        }
    }
}

/// The node as the announcement sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Ready,
    Snapshotting,
    Draining,
    /// Reaches no backend (`cluster::Endpoint::set_reach`).
    CutOff,
    Stopping,
}

/// One VIP's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub vip: IpAddr,
    pub announce: bool,
    pub why: Why,
    /// The most healthy backends any of its services has.
    pub healthy: u32,
    pub services: Vec<String>,
}

/// Healthy: its probes pass, it is not being removed, and it is active or standby.
pub(crate) fn healthy(b: &tandem_dataplane::services::Backend) -> bool {
    b.up && !b.removing && matches!(b.state, BackendState::Active | BackendState::Standby)
}

/// Every VIP of `s` (services being removed left out), announced or not and why.
pub fn decide(s: &Services, node: NodeState, min_healthy: u32) -> Vec<Decision> {
    let mut by_vip: BTreeMap<IpAddr, Decision> = BTreeMap::new();
    for svc in s.services.iter().filter(|x| !x.removing) {
        let vip = bytes_addr(&svc.vip, svc.v6);
        let n = svc
            .backends
            .iter()
            .filter_map(|&b| s.backends.get(usize::from(b)))
            .filter(|b| healthy(b))
            .count() as u32;
        let d = by_vip.entry(vip).or_insert_with(|| Decision {
            vip,
            announce: false,
            why: Why::TooFewHealthy,
            healthy: 0,
            services: Vec::new(),
        });
        d.healthy = d.healthy.max(n);
        d.services.push(svc.name.clone());
    }
    for d in by_vip.values_mut() {
        d.why = match node {
            NodeState::Stopping => Why::Stopping,
            NodeState::Snapshotting => Why::Snapshotting,
            NodeState::Draining => Why::Draining,
            NodeState::CutOff => Why::CutOff,
            NodeState::Ready if d.healthy < min_healthy => Why::TooFewHealthy,
            NodeState::Ready => Why::Ready,
        };
        d.announce = d.why == Why::Ready;
    }
    by_vip.into_values().collect()
}

/// The files for the announced VIPs (sorted, so the same set writes the same bytes).
pub fn files(decisions: &[Decision]) -> Files {
    let mut f = Files::default();
    for d in decisions.iter().filter(|d| d.announce) {
        match d.vip {
            IpAddr::V4(a) => f.v4 += &format!("route {a}/32 blackhole;\n"),
            IpAddr::V6(a) => f.v6 += &format!("route {a}/128 blackhole;\n"),
        }
    }
    f
}

/// A VIP as last decided: since when, and in which generation of the files.
#[derive(Debug, Clone)]
struct Held {
    d: Decision,
    since: Instant,
    gen: u64,
}

/// The control thread's side of the announcement.
pub struct Announcer {
    pub cfg: BgpConfig,
    speaker: Speaker,
    vips: BTreeMap<IpAddr, Held>,
    gen: u64,
    stopping: bool,
    last_tick: Option<Instant>,
    last_files: Files,
}

/// How often the decisions are made again.
const TICK: Duration = Duration::from_millis(50);

impl Announcer {
    /// Withdraws everything (empty files, BIRD asked once) and starts the speaker thread.
    /// An error names the key whose file cannot be written.
    pub fn start(cfg: &BgpConfig) -> anyhow::Result<Announcer> {
        for (key, path) in [("bgp.routes4", &cfg.routes4), ("bgp.routes6", &cfg.routes6)] {
            speaker::write_atomically(path, "")
                .map_err(|e| anyhow::anyhow!("{key}: cannot write the routes file: {e}"))?;
        }
        let speaker = Speaker::start(cfg.clone(), Files::default())
            .map_err(|e| anyhow::anyhow!("the BGP announcer's thread: {e}"))?;
        let st = speaker.status();
        match &st.state {
            BirdState::Configured => {
                tracing::info!(socket = %cfg.bird_socket.display(), "BIRD took the empty VIP files")
            }
            s => tracing::warn!(
                state = s.name(),
                detail = s.detail(),
                "BIRD did not take the empty VIP files yet; retrying every second"
            ),
        }
        Ok(Announcer {
            cfg: cfg.clone(),
            speaker,
            vips: BTreeMap::new(),
            gen: 1,
            stopping: false,
            last_tick: None,
            last_files: Files::default(),
        })
    }

    /// Decides again (every `TICK` at most) and hands the speaker new files when they
    /// changed. `node` is the node's state apart from stopping, which `stop` sets.
    pub fn tick(&mut self, s: &Services, node: NodeState, now: Instant) {
        if self.last_tick.is_some_and(|t| now.duration_since(t) < TICK) {
            return;
        }
        self.last_tick = Some(now);
        let node = if self.stopping {
            NodeState::Stopping
        } else {
            node
        };
        let decisions = decide(s, node, self.cfg.min_healthy);
        let f = files(&decisions);
        let changed = f != self.last_files;
        if changed {
            self.gen += 1;
            self.last_files = f.clone();
            self.speaker.want(self.gen, f);
        }
        let mut next = BTreeMap::new();
        for d in decisions {
            let held = match self.vips.remove(&d.vip) {
                // Announced or not as before (perhaps for another reason): since then.
                Some(h) if h.d.announce == d.announce => Held { d, ..h },
                _ => {
                    tracing::info!(vip = %d.vip, announce = d.announce, why = d.why.name(), "VIP announcement changes");
                    Held {
                        d,
                        since: now,
                        gen: self.gen,
                    }
                }
            };
            next.insert(held.d.vip, held);
        }
        self.vips = next;
    }

    /// SIGTERM: every VIP withdrawn from now on.
    pub fn stop(&mut self, s: &Services, now: Instant) {
        self.stopping = true;
        self.last_tick = None;
        self.tick(s, NodeState::Stopping, now);
    }

    /// `show bgp`.
    pub fn show(&self, now: Instant) -> Value {
        let st = self.speaker.status();
        let age =
            |t: Instant| (now.saturating_duration_since(t).as_secs_f64() * 10.0).round() / 10.0;
        let vips: Vec<Value> = self
            .vips
            .values()
            .map(|h| {
                // What BIRD holds: the decision once BIRD took its generation, the
                // opposite before.
                let taken = st.applied >= h.gen;
                let announced = if taken { h.d.announce } else { !h.d.announce };
                let why = if taken {
                    h.d.why.name().to_string()
                } else {
                    format!(
                        "{} (BIRD has not taken it: {})",
                        h.d.why.name(),
                        st.state.name()
                    )
                };
                json!({
                    "vip": h.d.vip.to_string(),
                    "announced": announced,
                    "wanted": h.d.announce,
                    "why": why,
                    "since_s": age(h.since),
                    "healthy_backends": h.d.healthy,
                    "min_healthy": self.cfg.min_healthy,
                    "services": h.d.services,
                })
            })
            .collect();
        json!({
            "bird": {
                "socket": self.cfg.bird_socket.display().to_string(),
                "state": st.state.name(),
                "detail": st.state.detail(),
                "since_s": age(st.since),
                "configured_s_ago": st.configured_at.map(age),
                "routes4": self.cfg.routes4.display().to_string(),
                "routes6": self.cfg.routes6.display().to_string(),
            },
            "stopping": self.stopping,
            "vips": vips,
        })
    }
}

#[cfg(test)]
mod tests;
