//! A tandem node, wired together: `tandem run` reads the config, starts the EAL, the ports
//! and the pinned workers (`start`), then runs the control loop (`control_loop`) on the
//! main lcore until SIGINT or SIGTERM; then stops the workers, closes the ports (a pcap
//! output file is complete after this), prints the final counters and returns.
//!
//! This crate sits above both halves of the node: the DPDK port layer (`tandem-port`) and
//! the control thread's state, commands, cluster, metrics and BGP (`tandem-control`); neither
//! of those imports the other.

mod control_loop;
mod start;

pub use start::{eal_args, AF_PACKET_FRAMES, CHANNEL_CAP};

use crossbeam_channel::bounded;
use start::Started;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tandem_config::Config;
use tandem_control::cluster::Cluster;
use tandem_control::commands;
use tandem_control::metrics::{MetricsServer, Page};
use tandem_control::socket::{Request, SocketServer};
use tandem_control::state::{build_snapshot, Control, Process};
use tandem_dataplane::services::Layout;
use tandem_port::eal::Eal;

/// The signals a node answers: SIGINT and SIGTERM stop it (cleanly once the EAL is up),
/// SIGHUP reloads its config.
struct Signals {
    term: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
    /// Set while the EAL initialises, which can take seconds and cannot be interrupted:
    /// meanwhile SIGTERM and SIGINT end the process at once, as by default.
    in_eal_init: Arc<AtomicBool>,
}

impl Signals {
    fn register() -> anyhow::Result<Signals> {
        let s = Signals {
            term: Arc::new(AtomicBool::new(false)),
            hup: Arc::new(AtomicBool::new(false)),
            in_eal_init: Arc::new(AtomicBool::new(true)),
        };
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&s.hup))?;
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register_conditional_default(sig, Arc::clone(&s.in_eal_init))?;
            signal_hook::flag::register(sig, Arc::clone(&s.term))?;
        }
        Ok(s)
    }

    fn stopped(&self) -> bool {
        self.term.load(Ordering::SeqCst)
    }
}

/// Runs a node on `cfg` (read from `path`, which `reload` and SIGHUP read again) until
/// SIGINT or SIGTERM. `overrides` are EAL arguments appended to the config's.
pub fn run(cfg: Config, path: Option<PathBuf>, overrides: &[String]) -> anyhow::Result<()> {
    let signals = Signals::register()?;
    let checked = start::preflight(&cfg)?;
    // Before any kernel twin exists (and BIRD's sessions over it with it), BIRD is told
    // to announce nothing: what a killed run left in the files must not be announced
    // before this run is ready.
    let announcer = match &cfg.bgp {
        Some(b) => Some(tandem_control::bgp::Announcer::start(b)?),
        None => None,
    };
    let args = eal_args(&cfg, overrides, checked.ncpu);
    tracing::info!(?args, "initialising the EAL");
    let eal = Eal::init(&args).map_err(|e| anyhow::anyhow!("{e}"))?;
    signals.in_eal_init.store(false, Ordering::SeqCst);
    let no_capture = capture_server(&args);
    if let Err(e) = tandem_port::telemetry::register() {
        tracing::warn!(%e, "tandem's telemetry commands unavailable");
    }
    if signals.stopped() {
        println!("tandem: stopped during start-up");
        eal.cleanup();
        return Ok(());
    }
    let Some((started, links)) = start::ports_and_workers(&cfg, &eal, checked.capacity, &signals)?
    else {
        println!("tandem: stopped during start-up");
        eal.cleanup();
        return Ok(());
    };
    let cluster = open_cluster(&cfg, &started, checked.secret.as_deref())?;
    let clock = started.clock;
    let process = Process {
        pid: std::process::id(),
        file_prefix: tandem_port::pdump::file_prefix(&args),
        no_capture,
        devices: cfg
            .ports
            .iter()
            .zip(&started.eth)
            .map(|(p, e)| (p.device_name().to_string(), e.id))
            .collect(),
    };
    let mut ctl = Control::new(cfg, started.infos.clone(), links)
        .with_load(Arc::clone(&started.load))
        .with_process(process)
        .with_node_clock(Box::new(move || clock.now().us));
    if let Some(p) = path {
        ctl = ctl.with_config_path(p);
    }
    if let Some(a) = announcer {
        ctl.attach_bgp(a);
    }
    if let Some(mut c) = cluster {
        tracing::info!(sync = %c.local_addr(), nodes = c.sync.view.nodes.len(), "cluster sync channel open");
        c.start_heartbeat_thread(Instant::now())?;
        ctl.attach_cluster(c);
    }
    let result = serve(&mut ctl, &started, &signals);
    finish(ctl, started, eal, result)
}

/// Registers DPDK's capture server, so `dpdk-dumpcap` (and `tandem ctl capture`) can
/// attach; why it cannot, when it cannot (an EAL without hugepages gives a secondary
/// process nothing to map).
fn capture_server(args: &[String]) -> Option<String> {
    if !tandem_port::pdump::shares_memory(args) {
        return Some("the EAL runs without hugepages (--no-huge or --in-memory): a capture process cannot attach".into());
    }
    match tandem_port::pdump::init() {
        Ok(()) => {
            tracing::info!("live capture ready (dpdk-dumpcap, tandem ctl capture)");
            None
        }
        Err(e) => {
            tracing::warn!(%e, "live capture unavailable");
            Some(e.to_string())
        }
    }
}

/// The cluster's sync channel, when the config names a cluster.
fn open_cluster(
    cfg: &Config,
    started: &Started,
    secret: Option<&[u8]>,
) -> anyhow::Result<Option<Cluster>> {
    let (Some(c), Some(view), Some(secret)) = (&cfg.cluster, &started.snapshot.cluster, secret)
    else {
        return Ok(None);
    };
    Ok(Some(Cluster::new(
        c,
        cfg.node_id as u16,
        view.clone(),
        secret,
        tandem_control::cluster::fingerprint(cfg),
        tandem_control::cluster::new_epoch(),
        Instant::now(),
    )?))
}

/// Opens the control socket and the metrics endpoint, then runs the control loop until the
/// node is told to stop.
fn serve(ctl: &mut Control, started: &Started, signals: &Signals) -> anyhow::Result<()> {
    let (req_tx, req_rx) = bounded::<Request>(64);
    let socket_path = ctl.config().control_socket.clone();
    let server = SocketServer::start(&socket_path, req_tx)?;
    let metrics = match ctl.config().metrics {
        Some(addr) => {
            let page = Arc::new(Page::default());
            let s = MetricsServer::start(addr, Arc::clone(&page))
                .map_err(|e| anyhow::anyhow!("metrics.listen {addr}: {e}"))?;
            Some((s, page))
        }
        None => None,
    };
    println!(
        "tandem: node {} running; control socket {}",
        ctl.config().node_id,
        socket_path.display()
    );
    let mut around =
        control_loop::Around::new(metrics.as_ref().map(|(_, p)| Arc::clone(p)), &signals.hup);
    control_loop::run(ctl, &started.eth, &req_rx, &signals.term, &mut around);
    around.notifier.stopping();
    drop(metrics);
    drop(server);
    Ok(())
}

/// Stops the workers, takes their last counters, closes the ports and prints the final
/// counters (also as one JSON line, `TANDEM_FINAL_STATS`, for scripts).
fn finish(
    mut ctl: Control,
    started: Started,
    eal: Eal,
    served: anyhow::Result<()>,
) -> anyhow::Result<()> {
    if served.is_ok() {
        println!("tandem: stopping");
    }
    let failed = started.stop_workers(&eal);
    if served.is_ok() {
        ctl.poll_workers(Instant::now());
        ctl.sample_rates(Instant::now());
    }
    started.close_ports();
    if served.is_ok() {
        let stats = commands::execute(&mut ctl, "show stats");
        println!(
            "tandem: final counters\n{}",
            tandem_control::client::render(&stats)
        );
        println!("TANDEM_FINAL_STATS {stats}");
    }
    if ctl.process().no_capture.is_none() {
        tandem_port::pdump::uninit();
    }
    drop(ctl);
    eal.cleanup();
    served?;
    if failed > 0 {
        anyhow::bail!("{failed} worker(s) failed");
    }
    Ok(())
}

/// The first snapshot of the services, which the workers start with.
fn first_snapshot(
    cfg: &Config,
    infos: &[tandem_dataplane::services::PortInfo],
) -> tandem_dataplane::services::Services {
    build_snapshot(1, cfg, infos, &Layout::new(&cfg.services), &[])
}
