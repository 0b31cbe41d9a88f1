//! Start-up: what this machine must have for the config, the EAL's arguments, the mempool,
//! the ports and their kernel twins, and the pinned workers.

use crate::Signals;
use crossbeam_channel::bounded;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tandem_config::Config;
use tandem_control::state::WorkerLink;
use tandem_dataplane::counters::WorkerCounters;
use tandem_dataplane::flow::{Capacity, FlowTable, Timeouts};
use tandem_dataplane::pipeline::Core;
use tandem_dataplane::qos::admission::Load;
use tandem_dataplane::services::{PortInfo, Services};
use tandem_port::eal::{rdtsc, Eal};
use tandem_port::ethdev::{EthPort, Queues};
use tandem_port::mbuf::Mempool;
use tandem_port::worker::{Clock, Setup, Worker};

/// Capacity of each worker's inbox and outbox.
pub const CHANNEL_CAP: usize = 65_536;
/// Frames in a net_af_packet port's rings when its devargs give no `framecnt`.
pub const AF_PACKET_FRAMES: u32 = 8192;

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
            args.push(format!("--vdev={}", tandem_port::twin::vdev(i, k)));
        }
    }
    args.extend(overrides.iter().cloned());
    args
}

/// The kernel interface a net_af_packet port reads, from its devargs.
pub(crate) fn af_packet_iface(devargs: &str) -> Option<&str> {
    if !devargs.starts_with("net_af_packet") {
        return None;
    }
    devargs.split(',').find_map(|kv| kv.strip_prefix("iface="))
}

/// What start-up learned before the EAL: the machine's CPUs, the flow tables' capacity
/// and the cluster secret.
pub(crate) struct Checked {
    pub ncpu: usize,
    pub capacity: Capacity,
    pub secret: Option<Vec<u8>>,
}

/// Refuses, naming the keys, what cannot start: a worker CPU this machine does not have,
/// flow tables larger than its available memory (they are allocated and touched at start:
/// otherwise an allocation failure or the OOM killer), a cluster secret others can read,
/// a kernel twin's name that is taken (net_tap would attach to the interface that exists).
pub(crate) fn preflight(cfg: &Config) -> anyhow::Result<Checked> {
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
    let secret = match &cfg.cluster {
        Some(c) => Some(tandem_control::cluster::read_secret(&c.secret_file)?),
        None => None,
    };
    for (i, p) in cfg.ports.iter().enumerate() {
        if let Some(k) = p.kernel.as_deref().filter(|k| tandem_port::twin::exists(k)) {
            anyhow::bail!(
                "port[{i}].kernel: an interface named \"{k}\" exists already here (another \
                 node in this namespace, or something else owns it); name the twin another way"
            );
        }
    }
    Ok(Checked {
        ncpu,
        capacity,
        secret,
    })
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

/// A node's started half below the control thread: the ports, their twins, the mempool,
/// and the workers running on their lcores.
pub(crate) struct Started {
    pub eth: Vec<EthPort>,
    pub infos: Vec<PortInfo>,
    twins: Vec<Option<EthPort>>,
    pub snapshot: Arc<Services>,
    pub load: Arc<Load>,
    stop: Arc<AtomicBool>,
    workers: u32,
    /// The workers' clock.
    pub clock: Clock,
}

impl Started {
    /// Tells the workers to stop and waits for each; how many failed.
    pub fn stop_workers(&self, eal: &Eal) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        (1..=self.workers).filter(|&l| eal.wait(l) != 0).count()
    }

    pub fn close_ports(&self) {
        for p in self.eth.iter().chain(self.twins.iter().flatten()) {
            p.stop_and_close();
        }
    }
}

/// Starts the mempool, the ports and the workers; `None` (everything closed again) when
/// SIGINT or SIGTERM came meanwhile. The control thread's end of each worker's channels.
pub(crate) fn ports_and_workers(
    cfg: &Config,
    eal: &Eal,
    capacity: Capacity,
    signals: &Signals,
) -> anyhow::Result<Option<(Started, Vec<WorkerLink>)>> {
    let nworkers = cfg.workers.cores.len() as u16;
    let pool = Arc::new(
        Mempool::new("tandem_mbufs", cfg.mempool_mbufs, cfg.mempool_cache, -1)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let (eth, infos, twins) = start_ports(cfg, nworkers, &pool)?;
    let mut started = Started {
        snapshot: Arc::new(crate::first_snapshot(cfg, &infos)),
        eth,
        infos,
        twins,
        load: Arc::new(Load::default()),
        stop: Arc::new(AtomicBool::new(false)),
        workers: 0,
        clock: Clock {
            tsc_per_ms: 1,
            tsc0: 0,
        },
    };
    if signals.stopped() {
        started.close_ports();
        return Ok(None);
    }
    match start_workers(cfg, capacity, eal, &pool, &mut started) {
        Ok(links) => Ok(Some((started, links))),
        Err(e) => {
            started.stop_workers(eal);
            started.close_ports();
            Err(e)
        }
    }
}

/// The started ports, the core's view of them, and each port's kernel twin if it has one.
type Ports = (Vec<EthPort>, Vec<PortInfo>, Vec<Option<EthPort>>);

/// Starts every port with a queue pair per worker, and each port's kernel twin (same MAC,
/// MTU and addresses).
fn start_ports(cfg: &Config, nworkers: u16, pool: &Arc<Mempool>) -> anyhow::Result<Ports> {
    let mut eth = Vec::new();
    let mut infos = Vec::new();
    let mut twins = Vec::new();
    for p in &cfg.ports {
        let id = EthPort::by_name(p.device_name())
            .map_err(|e| anyhow::anyhow!("port {}: {e}", p.name))?;
        let queues = Queues {
            pairs: nworkers,
            rx_descriptors: p.rx_descriptors,
            tx_descriptors: p.tx_descriptors,
        };
        let port = EthPort::start(id, queues, pool, p.mac)
            .map_err(|e| anyhow::anyhow!("port {}: {e}", p.name))?;
        let mac = p.mac.unwrap_or_else(|| port.mac());
        tracing::info!(port = %p.name, id, mac = %tandem_config::units::format_mac(&mac), "port started");
        infos.push(PortInfo::from_config(p, mac));
        eth.push(port);
        twins.push(match &p.kernel {
            Some(_) => Some(start_twin(eth.len() - 1, p, mac, nworkers, pool)?),
            None => None,
        });
    }
    Ok((eth, infos, twins))
}

/// Starts port `i`'s kernel twin (`p.kernel`; see `tandem_port::twin`).
fn start_twin(
    i: usize,
    p: &tandem_config::PortConfig,
    mac: [u8; 6],
    nworkers: u16,
    pool: &Arc<Mempool>,
) -> anyhow::Result<EthPort> {
    let ifname = p.kernel.as_deref().unwrap_or_default();
    let fail =
        |e: &dyn std::fmt::Display| anyhow::anyhow!("port[{i}].kernel: the TAP twin {ifname}: {e}");
    let id = EthPort::by_name(&tandem_port::twin::device_name(i)).map_err(|e| fail(&e))?;
    let twin = EthPort::start(id, Queues::of(nworkers), pool, Some(mac)).map_err(|e| fail(&e))?;
    tandem_port::twin::configure(ifname, p.mtu, p.ipv4, p.ipv6).map_err(|e| fail(&e))?;
    tracing::info!(port = %p.name, twin = ifname, "kernel twin up");
    Ok(twin)
}

/// Launches a pinned worker per `[workers] cores` entry (lcore i+1); the control thread's
/// end of each one's channels. A worker that cannot launch stops those launched before.
fn start_workers(
    cfg: &Config,
    capacity: Capacity,
    eal: &Eal,
    pool: &Arc<Mempool>,
    started: &mut Started,
) -> anyhow::Result<Vec<WorkerLink>> {
    let timeouts = Timeouts::of(&cfg.flows);
    let clock = Clock {
        tsc_per_ms: (eal.tsc_hz() / 1000).max(1),
        tsc0: rdtsc(),
    };
    started.clock = clock;
    let seed = random_seed();
    tandem_dataplane::flow::table::on_allocate(if cfg.flows.huge_pages {
        tandem_port::memory::advise_huge_pages
    } else {
        tandem_port::memory::advise_small_pages
    });
    let mut links = Vec::new();
    let mut rings = tandem_port::siblings::mesh(cfg.workers.cores.len()).into_iter();
    for i in 0..cfg.workers.cores.len() {
        let (to_tx, to_rx) = bounded(CHANNEL_CAP);
        let (from_tx, from_rx) = bounded(CHANNEL_CAP);
        let counters = Arc::new(WorkerCounters::default());
        let core = Core::new(
            i as u16,
            capacity,
            timeouts,
            Arc::clone(&started.snapshot),
            Arc::clone(&counters),
            seed,
        )
        .with_load(Arc::clone(&started.load));
        let setup = Setup {
            queue: i as u16,
            ports: started.eth.clone(),
            twins: started.twins.clone(),
            pool: Arc::clone(pool),
            burst: cfg.workers.burst,
            idle_sleep: cfg.workers.idle_sleep,
            clock,
            siblings: rings.next().unwrap_or_default(),
            inbox: to_rx,
            outbox: from_tx,
            stop: Arc::clone(&started.stop),
        };
        let w = Worker::new(core, setup);
        eal.launch(i as u32 + 1, move || w.run())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        started.workers += 1;
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
