//! `tandem run`: initialise the EAL from the config, start the ports and the pinned workers,
//! then run the control loop on the main lcore until SIGINT or SIGTERM; then stop the
//! workers, flush, close the ports (a pcap output file is complete after this), print the
//! final counters and return.

use crate::eal::{rdtsc, Eal};
use crate::ethdev::{kernel_link_up, EthPort, PacketSockets};
use crate::mbuf::Mempool;
use crate::worker::Worker;
use crossbeam_channel::bounded;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem_config::Config;
use tandem_control::cluster::Cluster;
use tandem_control::commands;
use tandem_control::metrics::{MetricsServer, Page};
use tandem_control::socket::{Request, SocketServer};
use tandem_control::state::{build_snapshot, Control, DeviceStats, WorkerLink};
use tandem_control::systemd::Notifier;
use tandem_dataplane::counters::WorkerCounters;
use tandem_dataplane::flow::Timeouts;
use tandem_dataplane::flow::{Capacity, FlowTable};
use tandem_dataplane::pipeline::Core;
use tandem_dataplane::services::{Layout, PortInfo};

/// Capacity of each worker's inbox and outbox.
pub const CHANNEL_CAP: usize = 65_536;
/// Frames in a net_af_packet port's rings when its devargs give no `framecnt`.
pub const AF_PACKET_FRAMES: u32 = 8192;
/// The control loop's tick.
const TICK: Duration = Duration::from_millis(1);
/// Time the control loop gives commands per tick before it turns back to the workers and
/// the sync channel (at least one command is answered each tick): a thousand clients
/// looping `show stats` must not keep it from replicating flows.
const COMMAND_BUDGET: Duration = Duration::from_millis(5);

/// The EAL arguments for a config: its `[eal] args`, the lcore map (lcore 0, the control
/// thread, on a CPU no worker uses when there is one; lcore i+1 on worker i's CPU), a
/// `--vdev` per virtual port, then the command line's overrides.
pub fn eal_args(cfg: &Config, overrides: &[String], ncpu: usize) -> Vec<String> {
    let mut args = cfg.eal_args.clone();
    let main_cpu = (0..ncpu)
        .find(|c| !cfg.workers.cores.contains(c))
        .unwrap_or(0);
    let mut lcores = format!("0@{main_cpu}");
    for (i, c) in cfg.workers.cores.iter().enumerate() {
        lcores += &format!(",{}@{c}", i + 1);
    }
    args.push(format!("--lcores={lcores}"));
    for p in &cfg.ports {
        if p.devargs.starts_with("net_af_packet") && !p.devargs.contains("framecnt=") {
            // The PMD's default ring (512 frames) overflows under one bulk TCP transfer.
            args.push(format!("--vdev={},framecnt={AF_PACKET_FRAMES}", p.devargs));
        } else if p.devargs.starts_with("net_") || p.devargs.starts_with("eth_") {
            args.push(format!("--vdev={}", p.devargs));
        } else {
            args.push("-a".into());
            args.push(p.devargs.clone());
        }
    }
    for (i, p) in cfg.ports.iter().enumerate() {
        if let Some(k) = &p.kernel {
            args.push(format!("--vdev={}", crate::twin::vdev(i, k)));
        }
    }
    args.extend(overrides.iter().cloned());
    args
}

fn af_packet_iface(devargs: &str) -> Option<&str> {
    if !devargs.starts_with("net_af_packet") {
        return None;
    }
    devargs.split(',').find_map(|kv| kv.strip_prefix("iface="))
}

/// The memory this machine can give without swapping (MemAvailable), in bytes.
fn memory_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn random_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(rdtsc());
    h.finish()
}

pub fn run(
    cfg: Config,
    path: Option<std::path::PathBuf>,
    overrides: &[String],
) -> anyhow::Result<()> {
    let term = Arc::new(AtomicBool::new(false));
    // SIGHUP: read the config file again (`reload`), from the control loop.
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))?;
    // While the EAL initialises (which can take seconds and cannot be interrupted), SIGTERM
    // and SIGINT end the process at once, as by default; from then on they stop it cleanly,
    // also part way through start-up.
    let in_eal_init = Arc::new(AtomicBool::new(true));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_default(sig, Arc::clone(&in_eal_init))?;
        signal_hook::flag::register(sig, Arc::clone(&term))?;
    }
    let (ncpu, capacity) = fits_this_machine(&cfg)?;
    // The cluster secret is checked before anything starts: a readable secret is refused.
    let secret = match &cfg.cluster {
        Some(c) => Some(tandem_control::cluster::read_secret(&c.secret_file)?),
        None => None,
    };
    // A kernel twin's name must be free: net_tap would attach to an interface that exists.
    for (i, p) in cfg.ports.iter().enumerate() {
        if let Some(k) = p.kernel.as_deref().filter(|k| crate::twin::exists(k)) {
            anyhow::bail!(
                "port[{i}].kernel: an interface named \"{k}\" exists already here (another \
                 node in this namespace, or something else owns it); name the twin another way"
            );
        }
    }
    // Before any kernel twin exists (and BIRD's sessions over it with it), BIRD is told
    // to announce nothing: what a killed run left in the files must not be announced
    // before this run is ready.
    let announcer = match &cfg.bgp {
        Some(b) => Some(tandem_control::bgp::Announcer::start(b)?),
        None => None,
    };
    let args = eal_args(&cfg, overrides, ncpu);
    tracing::info!(?args, "initialising the EAL");
    let eal = Eal::init(&args).map_err(|e| anyhow::anyhow!("{e}"))?;
    in_eal_init.store(false, Ordering::SeqCst);
    if term.load(Ordering::SeqCst) {
        println!("tandem: stopped during start-up");
        eal.cleanup();
        return Ok(());
    }
    let nworkers = cfg.workers.cores.len() as u16;
    let pool = Arc::new(
        Mempool::new("tandem_mbufs", cfg.mempool_mbufs, cfg.mempool_cache, -1)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let (eth, infos, twins) = start_ports(&cfg, nworkers, &pool)?;
    if term.load(Ordering::SeqCst) {
        println!("tandem: stopped during start-up");
        for p in eth.iter().chain(twins.iter().flatten()) {
            p.stop_and_close();
        }
        eal.cleanup();
        return Ok(());
    }
    let snapshot = Arc::new(build_snapshot(
        1,
        &cfg,
        &infos,
        &Layout::new(&cfg.services),
        &[],
    ));
    let load = Arc::new(tandem_dataplane::qos::admission::Load::default());
    let cluster = match (&cfg.cluster, &snapshot.cluster, &secret) {
        (Some(c), Some(view), Some(secret)) => Some(Cluster::new(
            c,
            cfg.node_id as u16,
            view.clone(),
            secret,
            tandem_control::cluster::fingerprint(&cfg),
            tandem_control::cluster::new_epoch(),
            Instant::now(),
        )?),
        _ => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Shared {
        eal: &eal,
        eth: &eth,
        twins: &twins,
        pool: &pool,
        snapshot: &snapshot,
        load: &load,
        stop: &stop,
    };
    let links = start_workers(&cfg, capacity, &shared)?;

    let (req_tx, req_rx) = bounded::<Request>(64);
    let socket_path = cfg.control_socket.clone();
    let mut ctl = Control::new(cfg, infos, links).with_load(load);
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
    // The control socket and the metrics endpoint: if either cannot start, the workers are
    // stopped before the error is returned.
    let endpoints = || -> anyhow::Result<_> {
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
        Ok((server, metrics))
    };
    let (server, metrics) = match endpoints() {
        Ok(x) => x,
        Err(e) => {
            stop.store(true, Ordering::SeqCst);
            for i in 0..nworkers {
                eal.wait(u32::from(i) + 1);
            }
            return Err(e);
        }
    };
    println!(
        "tandem: node {} running; control socket {}",
        ctl.config().node_id,
        socket_path.display()
    );
    let mut around = Around {
        notifier: Notifier::from_env(),
        metrics: metrics.as_ref().map(|(_, p)| Arc::clone(p)),
        hup: &hup,
    };
    if let Some(w) = around.notifier.watchdog() {
        tracing::info!(every = ?w, "pinging the service manager's watchdog");
    }
    control_loop(&mut ctl, &eth, &req_rx, &term, &mut around);

    around.notifier.stopping();
    drop(metrics);
    println!("tandem: stopping");
    stop.store(true, Ordering::SeqCst);
    let mut failed = 0;
    for i in 0..nworkers {
        if eal.wait(u32::from(i) + 1) != 0 {
            failed += 1;
        }
    }
    ctl.poll_workers(Instant::now());
    ctl.sample_rates(Instant::now());
    for p in eth.iter().chain(twins.iter().flatten()) {
        p.stop_and_close();
    }
    let stats = commands::execute(&mut ctl, "show stats");
    println!(
        "tandem: final counters\n{}",
        tandem_control::client::render(&stats)
    );
    println!("TANDEM_FINAL_STATS {stats}");
    drop(server);
    drop(ctl);
    eal.cleanup();
    if failed > 0 {
        anyhow::bail!("{failed} worker(s) failed");
    }
    Ok(())
}

/// Refuses, naming the keys, what this machine cannot run: a worker CPU it does not have,
/// flow tables larger than its available memory (they are allocated and touched at start:
/// otherwise an allocation failure or the OOM killer). The machine's CPUs and the tables'
/// capacity.
fn fits_this_machine(cfg: &Config) -> anyhow::Result<(usize, Capacity)> {
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if let Some((i, c)) = cfg
        .workers
        .cores
        .iter()
        .enumerate()
        .find(|(_, c)| **c >= ncpu)
    {
        anyhow::bail!("workers.cores[{i}]: CPU {c} does not exist on this machine ({ncpu} CPUs)");
    }
    let capacity = Capacity {
        v4: cfg.flows.capacity as usize,
        v6: cfg.flows.capacity_v6 as usize,
    };
    let tables = FlowTable::bytes_for(capacity) as u64 * cfg.workers.cores.len() as u64;
    if let Some(avail) = memory_available() {
        if tables > avail {
            anyhow::bail!(
                "flows.capacity, flows.capacity_v6: the flow tables need {} MiB ({} workers), \
                 more than the {} MiB this machine has available",
                tables >> 20,
                cfg.workers.cores.len(),
                avail >> 20
            );
        }
    }
    Ok((ncpu, capacity))
}

/// The started ports, the core's view of them, and each port's kernel twin if it has one.
type Started = (Vec<EthPort>, Vec<PortInfo>, Vec<Option<EthPort>>);

/// Starts every port with a queue pair per worker, and each port's kernel twin (same MAC,
/// MTU and addresses); the ports, the core's view of them, and the twins by port.
fn start_ports(cfg: &Config, nworkers: u16, pool: &Arc<Mempool>) -> anyhow::Result<Started> {
    let mut eth = Vec::new();
    let mut infos = Vec::new();
    let mut twins = Vec::new();
    for p in &cfg.ports {
        let id = EthPort::by_name(p.device_name())
            .map_err(|e| anyhow::anyhow!("port {}: {e}", p.name))?;
        let port = EthPort::start(
            id,
            nworkers,
            p.rx_descriptors,
            p.tx_descriptors,
            pool,
            p.mac,
        )
        .map_err(|e| anyhow::anyhow!("port {}: {e}", p.name))?;
        let mac = p.mac.unwrap_or_else(|| port.mac());
        tracing::info!(port = %p.name, id, mac = %tandem_config::units::format_mac(&mac), "port started");
        infos.push(PortInfo::from_config(p, mac));
        eth.push(port);
        twins.push(match &p.kernel {
            Some(k) => Some(start_twin(eth.len() - 1, p, k, mac, nworkers, pool)?),
            None => None,
        });
    }
    Ok((eth, infos, twins))
}

/// Starts port `i`'s kernel twin `ifname` (see `twin`).
fn start_twin(
    i: usize,
    p: &tandem_config::PortConfig,
    ifname: &str,
    mac: [u8; 6],
    nworkers: u16,
    pool: &Arc<Mempool>,
) -> anyhow::Result<EthPort> {
    let fail =
        |e: &dyn std::fmt::Display| anyhow::anyhow!("port[{i}].kernel: the TAP twin {ifname}: {e}");
    let id = EthPort::by_name(&crate::twin::device_name(i)).map_err(|e| fail(&e))?;
    let twin = EthPort::start(id, nworkers, 1024, 1024, pool, Some(mac)).map_err(|e| fail(&e))?;
    crate::twin::configure(ifname, p.mtu, p.ipv4, p.ipv6).map_err(|e| fail(&e))?;
    tracing::info!(port = %p.name, twin = ifname, "kernel twin up");
    Ok(twin)
}

/// What every worker is started with.
struct Shared<'a> {
    eal: &'a Eal,
    eth: &'a [EthPort],
    twins: &'a [Option<EthPort>],
    pool: &'a Arc<Mempool>,
    snapshot: &'a Arc<tandem_dataplane::services::Services>,
    load: &'a Arc<tandem_dataplane::qos::admission::Load>,
    stop: &'a Arc<AtomicBool>,
}

/// Launches a pinned worker per `[workers] cores` entry (lcore i+1); the control thread's
/// end of each one's channels.
fn start_workers(cfg: &Config, capacity: Capacity, sh: &Shared) -> anyhow::Result<Vec<WorkerLink>> {
    let timeouts = Timeouts::of(&cfg.flows);
    let tsc_per_ms = (sh.eal.tsc_hz() / 1000).max(1);
    let tsc0 = rdtsc();
    let seed = random_seed();
    tandem_dataplane::flow::table::on_allocate(crate::memory::advise_huge_pages);
    let mut links = Vec::new();
    let mut rings = crate::siblings::mesh(cfg.workers.cores.len()).into_iter();
    for i in 0..cfg.workers.cores.len() {
        let (to_tx, to_rx) = bounded(CHANNEL_CAP);
        let (from_tx, from_rx) = bounded(CHANNEL_CAP);
        let counters = Arc::new(WorkerCounters::default());
        let core = Core::new(
            i as u16,
            capacity,
            timeouts,
            Arc::clone(sh.snapshot),
            Arc::clone(&counters),
            seed,
        )
        .with_load(Arc::clone(sh.load));
        let w = Worker {
            core,
            ports: sh.eth.to_vec(),
            twins: sh
                .twins
                .iter()
                .map(|t| t.map(crate::worker::Twin::new))
                .collect(),
            twin_poll_us: 0,
            queue: i as u16,
            burst: cfg.workers.burst,
            idle_sleep: cfg.workers.idle_sleep,
            inbox: to_rx,
            outbox: from_tx,
            stop: Arc::clone(sh.stop),
            pool: Arc::clone(sh.pool),
            tsc_per_ms,
            tsc0,
            parked: tandem_dataplane::parking::Parking::with_capacity(
                tandem_dataplane::parking::CAPACITY,
            ),
            due: Vec::with_capacity(crate::worker::MAX_PARKED),
            siblings: rings.next().unwrap_or_default(),
        };
        sh.eal
            .launch(i as u32 + 1, move || w.run())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        links.push(WorkerLink::new(to_tx, from_rx, counters));
    }
    let (v4_bytes, v6_bytes) = FlowTable::bytes_per_flow(capacity);
    tracing::info!(
        workers = links.len(),
        capacity = cfg.flows.capacity,
        capacity_v6 = cfg.flows.capacity_v6,
        table_mib_per_worker = FlowTable::bytes_for(capacity) >> 20,
        bytes_per_ipv4_flow = v4_bytes,
        bytes_per_ipv6_flow = v6_bytes,
        "workers started"
    );
    Ok(links)
}

/// The control thread's loop until SIGINT or SIGTERM: workers' events and the sync channel
/// each tick, then QoS, then commands (within their budget); links every 100 ms; device
/// counters, rates, flow expiry and neighbors every second.
fn control_loop(
    ctl: &mut Control,
    eth: &[EthPort],
    requests: &crossbeam_channel::Receiver<Request>,
    term: &AtomicBool,
    around: &mut Around,
) {
    let mut devices = Devices::new(ctl, eth);
    let mut last_link = Instant::now() - Duration::from_secs(1);
    let mut last_second = Instant::now();
    ctl.refresh_neighbors(Instant::now());
    let mut stop_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if term.load(Ordering::Relaxed) {
            match stop_at {
                None => match ctl.bgp_stop(now) {
                    Some(grace) => {
                        println!(
                            "tandem: stopping: VIPs withdrawn, serving {} more",
                            tandem_config::units::format_duration(grace)
                        );
                        around.notifier.stopping();
                        stop_at = Some(now + grace);
                    }
                    None => break,
                },
                Some(t) if now >= t => break,
                Some(_) => {}
            }
        }
        let busy = ctl.poll_workers(now) + ctl.poll_cluster(now);
        ctl.qos_tick(now);
        ctl.bgp_tick(now);
        let started = Instant::now();
        while let Ok(r) = requests.try_recv() {
            let answer = commands::execute(ctl, &r.line);
            let _ = r.reply.send(answer);
            if started.elapsed() >= COMMAND_BUDGET {
                break;
            }
        }
        around.notifier.tick(now);
        if let Some(page) = &around.metrics {
            if page.wanted() {
                page.set(tandem_control::metrics::render(ctl));
            }
        }
        if !around.notifier.is_ready() && ctl.is_ready() {
            around.notifier.ready("serving");
            tracing::info!("ready: serving");
        }
        if around.hup.swap(false, Ordering::Relaxed) {
            reload_on_signal(ctl, &around.notifier, now);
        }
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
        }
        if busy == 0 && requests.is_empty() {
            std::thread::sleep(TICK);
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

/// What the control loop serves besides the node: the service manager (notify, watchdog),
/// the metrics page, and SIGHUP's reload.
struct Around<'a> {
    notifier: Notifier,
    metrics: Option<Arc<Page>>,
    hup: &'a AtomicBool,
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
