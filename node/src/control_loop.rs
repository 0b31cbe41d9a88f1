//! The control thread's loop: the workers' events and the sync channel each tick, then
//! QoS, BGP and commands (within their budget); link states every 100 ms; device counters,
//! rates, flow expiry and neighbors every second. Stopping waits out BGP's drain.

use crate::start::af_packet_iface;
use crossbeam_channel::Receiver;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem_control::commands;
use tandem_control::metrics::Page;
use tandem_control::socket::Request;
use tandem_control::state::{Control, DeviceStats};
use tandem_control::systemd::Notifier;
use tandem_port::ethdev::{kernel_link_up, EthPort, PacketSockets};

/// The control loop's tick.
const TICK: Duration = Duration::from_millis(1);
/// Time the control loop gives commands per tick before it turns back to the workers and
/// the sync channel (at least one command is answered each tick): a thousand clients
/// looping `show stats` must not keep it from replicating flows.
const COMMAND_BUDGET: Duration = Duration::from_millis(5);

/// What the control loop serves besides the node: the service manager (notify, watchdog),
/// the metrics page, and SIGHUP's reload.
pub(crate) struct Around<'a> {
    pub notifier: Notifier,
    metrics: Option<Arc<Page>>,
    hup: &'a AtomicBool,
}

impl<'a> Around<'a> {
    pub fn new(metrics: Option<Arc<Page>>, hup: &'a AtomicBool) -> Around<'a> {
        let notifier = Notifier::from_env();
        if let Some(w) = notifier.watchdog() {
            tracing::info!(every = ?w, "pinging the service manager's watchdog");
        }
        Around {
            notifier,
            metrics,
            hup,
        }
    }

    /// Each tick: the watchdog, the metrics page when a scrape waits for it, readiness, and
    /// SIGHUP's reload.
    fn tick(&mut self, ctl: &mut Control, now: Instant) {
        self.notifier.tick(now);
        if let Some(page) = &self.metrics {
            if page.wanted() {
                page.set(tandem_control::metrics::render(ctl));
            }
        }
        if !self.notifier.is_ready() && ctl.is_ready() {
            self.notifier.ready("serving");
            tracing::info!("ready: serving");
        }
        if self.hup.swap(false, Ordering::Relaxed) {
            reload_on_signal(ctl, &self.notifier, now);
        }
    }
}

/// When the loop ends after SIGINT or SIGTERM: at once, or once BGP's withdrawal has had
/// its grace time (in a cluster, drained meanwhile, and then saying so to its peers).
struct Stopping {
    at: Option<Instant>,
}

impl Stopping {
    /// Whether the loop should end now.
    fn done(&mut self, ctl: &mut Control, around: &Around, now: Instant) -> bool {
        match self.at {
            None => {
                let grace = ctl.bgp_stop(now);
                let leave = ctl.leave_cluster(grace.unwrap_or_default(), now);
                let Some(on) = grace.max(leave) else {
                    return true;
                };
                println!(
                    "tandem: stopping: VIPs withdrawn, new flows to peers, serving {} more",
                    tandem_config::units::format_duration(on)
                );
                around.notifier.stopping();
                self.at = Some(now + on);
                false
            }
            Some(t) if now >= t => {
                ctl.farewell(now);
                true
            }
            Some(_) => false,
        }
    }
}

/// Runs until SIGINT or SIGTERM (`term`).
pub(crate) fn run(
    ctl: &mut Control,
    eth: &[EthPort],
    requests: &Receiver<Request>,
    term: &AtomicBool,
    around: &mut Around,
) {
    let mut devices = Devices::new(ctl, eth);
    let mut last_link = Instant::now() - Duration::from_secs(1);
    let mut last_second = Instant::now();
    ctl.refresh_neighbors(Instant::now());
    let mut stopping = Stopping { at: None };
    loop {
        let now = Instant::now();
        if term.load(Ordering::Relaxed) && stopping.done(ctl, around, now) {
            break;
        }
        let mut lap = Lap::new(now);
        let busy = ctl.poll_workers(now);
        lap.mark("workers");
        // Its own clock: heartbeats read now are stamped now. With the round's `now`, a
        // round that spent 700 ms on the workers' events stamped them 700 ms old, and the
        // next round found every peer dead.
        let busy = busy + ctl.poll_cluster(Instant::now());
        lap.mark("cluster");
        ctl.qos_tick(now);
        lap.mark("qos");
        ctl.trace_tick(now);
        ctl.bgp_tick(now);
        lap.mark("bgp");
        answer_commands(ctl, requests);
        lap.mark("commands");
        around.tick(ctl, now);
        lap.mark("around");
        if now.duration_since(last_link) >= Duration::from_millis(100) {
            last_link = now;
            devices.links(ctl);
        }
        if now.duration_since(last_second) >= Duration::from_secs(1) {
            last_second = now;
            devices.stats(ctl);
            ctl.sample_rates(now);
            ctl.expire_flows(now);
            ctl.reap_removed(now);
            ctl.refresh_neighbors(now);
            publish_telemetry(ctl);
            lap.mark("each second");
        }
        lap.report();
        if busy == 0 && requests.is_empty() {
            std::thread::sleep(TICK);
        }
    }
}

/// Times a control loop round by step and says which took long when the round did: the
/// control thread reads the peers' heartbeats, so a round longer than `dead_after` gets
/// live peers declared dead.
struct Lap {
    start: Instant,
    last: Instant,
    slowest: (&'static str, Duration),
}

/// A round this long is logged with its slowest step.
const SLOW_ROUND: Duration = Duration::from_millis(150);

impl Lap {
    fn new(now: Instant) -> Lap {
        Lap {
            start: now,
            last: now,
            slowest: ("", Duration::ZERO),
        }
    }

    fn mark(&mut self, step: &'static str) {
        let now = Instant::now();
        let took = now.duration_since(self.last);
        if took > self.slowest.1 {
            self.slowest = (step, took);
        }
        self.last = now;
    }

    fn report(&self) {
        let round = self.last.duration_since(self.start);
        if round >= SLOW_ROUND {
            tracing::warn!(
                round_ms = round.as_millis() as u64,
                slowest = self.slowest.0,
                slowest_ms = self.slowest.1.as_millis() as u64,
                "control loop round took long"
            );
        }
    }
}

/// Hands DPDK's telemetry thread this second's answers to tandem's commands on the
/// telemetry socket (`tandem_port::telemetry`).
fn publish_telemetry(ctl: &mut Control) {
    for (cmd, line) in [
        ("/tandem/info", "show node"),
        ("/tandem/stats", "show stats"),
        ("/tandem/backends", "show backends"),
        ("/tandem/nodes", "show nodes"),
    ] {
        tandem_port::telemetry::publish(cmd, &commands::execute(ctl, line));
    }
}

/// Answers the control socket's commands until none wait or the budget is spent.
fn answer_commands(ctl: &mut Control, requests: &Receiver<Request>) {
    let started = Instant::now();
    while let Ok(r) = requests.try_recv() {
        let answer = commands::execute(ctl, &r.line);
        let _ = r.reply.send(answer);
        if started.elapsed() >= COMMAND_BUDGET {
            break;
        }
    }
}

/// SIGHUP: the config file read again and applied (`reload`), the outcome in the log and
/// to the service manager.
fn reload_on_signal(ctl: &mut Control, notifier: &Notifier, now: Instant) {
    notifier.reloading();
    let answer = commands::reload(ctl, now);
    let list = |k: &str, f: &dyn Fn(&serde_json::Value) -> String| -> String {
        answer[k]
            .as_array()
            .map(|a| a.iter().map(f).collect::<Vec<_>>().join("; "))
            .unwrap_or_default()
    };
    if answer["ok"] == true {
        let changes = list("changes", &|c| c.as_str().unwrap_or("").to_string());
        println!(
            "tandem: SIGHUP: reloaded: {}",
            if changes.is_empty() {
                "no change"
            } else {
                &changes
            }
        );
    } else {
        let problems = list("problems", &|p| {
            format!(
                "{}: {}",
                p["key"].as_str().unwrap_or(""),
                p["why"].as_str().unwrap_or("")
            )
        });
        let why = if problems.is_empty() {
            answer["error"].as_str().unwrap_or("").to_string()
        } else {
            problems
        };
        println!("tandem: SIGHUP: refused, nothing changed: {why}");
    }
    let status = if answer["ok"] == true {
        "serving (reloaded)"
    } else {
        "serving (reload refused: see the log)"
    };
    notifier.reloaded(status);
}

/// The ports as the control loop reads them: link state (the PMD's, and the kernel
/// interface's for an af_packet port) and device counters (with net_af_packet's ring losses,
/// read from the kernel: the PMD reports none).
struct Devices<'a> {
    eth: &'a [EthPort],
    ifaces: Vec<Option<String>>,
    packet_sockets: Vec<Option<PacketSockets>>,
    kernel_drops: Vec<u64>,
}

impl<'a> Devices<'a> {
    fn new(ctl: &Control, eth: &'a [EthPort]) -> Devices<'a> {
        let ifaces: Vec<Option<String>> = ctl
            .config()
            .ports
            .iter()
            .map(|p| af_packet_iface(&p.devargs).map(String::from))
            .collect();
        let packet_sockets = ifaces
            .iter()
            .map(|i| i.as_deref().map(PacketSockets::of))
            .collect();
        Devices {
            eth,
            ifaces,
            packet_sockets,
            kernel_drops: vec![0; eth.len()],
        }
    }

    fn links(&self, ctl: &mut Control) {
        for (i, p) in self.eth.iter().enumerate() {
            let kernel = self.ifaces[i]
                .as_deref()
                .and_then(kernel_link_up)
                .unwrap_or(true);
            ctl.set_link(i, p.link().up && kernel);
        }
    }

    fn stats(&mut self, ctl: &mut Control) {
        for (i, p) in self.eth.iter().enumerate() {
            let s = p.stats();
            self.kernel_drops[i] += self.packet_sockets[i]
                .as_ref()
                .map_or(0, |p| p.take_drops());
            ctl.set_device_stats(
                i,
                DeviceStats {
                    kernel_drops: self.kernel_drops[i],
                    ipackets: s.ipackets,
                    opackets: s.opackets,
                    imissed: s.imissed,
                    ierrors: s.ierrors,
                    oerrors: s.oerrors,
                    rx_nombuf: s.rx_nombuf,
                },
            );
        }
    }
}
