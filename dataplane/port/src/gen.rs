//! `tandem gen`: the load generator, on the same port layer as the daemon. One loop on the
//! EAL main lcore (pinned to `--core`) sends bursts on one port at a target rate (or as fast
//! as it can) and receives on another (or the same), accounting every stamped frame that
//! comes back (`tandem_dataplane::gen`). It reports every second and at the end, as a table
//! or as JSON lines, and exits by itself after `--duration` or `--count`.

use crate::eal::{rdtsc, Eal};
use crate::ethdev::{EthPort, Queues};
use crate::mbuf::{self, Mempool, RawMbuf};
use serde_json::{json, Value};
use std::time::Duration;
use tandem_dataplane::gen::{self, Rx, Spec};

/// What kind of traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `flows` distinct 5-tuples cycled (TCP ACKs or UDP).
    Established,
    /// Every packet a TCP SYN of a fresh 5-tuple.
    New,
    /// Established flows with a share of new ones (`--new-share`).
    Mix,
}

#[derive(Debug, Clone, clap::Args)]
pub struct GenArgs {
    /// The port to send on: DPDK devargs (net_memif0,role=client,socket=..., net_af_packet0,
    /// iface=..., net_pcap0,..., net_null0).
    #[arg(long)]
    pub tx: String,
    /// The port to receive on (default: the TX port).
    #[arg(long)]
    pub rx: Option<String>,
    #[arg(long, value_enum, default_value = "established")]
    pub mode: Mode,
    /// Distinct flows for established traffic.
    #[arg(long, default_value_t = 1000)]
    pub flows: u64,
    /// tcp or udp (new flows are always TCP SYNs).
    #[arg(long, default_value = "udp")]
    pub proto: String,
    /// Frame length in bytes, without the FCS (64 and up).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Packets per second, or "max".
    #[arg(long, default_value = "max")]
    pub rate: String,
    /// Mix mode: the share of packets that start a new flow.
    #[arg(long, default_value_t = 0.1)]
    pub new_share: f64,
    /// How long to send ("10s"); or give --count.
    #[arg(long, default_value = "10s")]
    pub duration: String,
    /// Packets to send (instead of a duration).
    #[arg(long)]
    pub count: Option<u64>,
    #[arg(long, default_value = "192.0.2.10")]
    pub dst_ip: std::net::Ipv4Addr,
    #[arg(long, default_value_t = 80)]
    pub dst_port: u16,
    /// The device under test's MAC (its receiving port's).
    #[arg(long, default_value = "02:00:00:00:00:01")]
    pub dst_mac: String,
    /// Flows' first source address (flow n: + n / 60000; port 1024 + n % 60000).
    #[arg(long, default_value = "10.100.0.0")]
    pub src_ip: std::net::Ipv4Addr,
    /// The CPU the loop runs on.
    #[arg(long, default_value_t = 0)]
    pub core: usize,
    /// mbufs in the generator's pool.
    #[arg(long, default_value_t = 16383)]
    pub mbufs: u32,
    /// After the links are up, wait this long before sending (the device under test notices
    /// its own links coming up).
    #[arg(long, default_value = "500ms")]
    pub settle: String,
    /// Send this long first without counting (flow tables fill, rings and caches warm up);
    /// frames sent then are not counted when they come back. In established and mix
    /// modes the warm-up also lasts until every one of the --flows has been sent once, so
    /// the measured phase creates no flows of its own however many there are.
    #[arg(long, default_value = "1s")]
    pub warmup: String,
    /// JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
    /// EAL arguments (default: --no-huge -m 512 --no-pci --file-prefix tandem-gen-PID).
    #[arg(last = true)]
    pub eal: Vec<String>,
}

const BURST: usize = 32;
/// After sending stops, frames still in flight are waited for this long.
const DRAIN: Duration = Duration::from_millis(300);

fn vdev_arg(devargs: &str) -> Vec<String> {
    if devargs.starts_with("net_") {
        vec![format!("--vdev={devargs}")]
    } else {
        vec!["-a".into(), devargs.into()]
    }
}

fn device(devargs: &str) -> &str {
    devargs.split(',').next().unwrap_or("")
}

fn print(v: &Value, json_out: bool, header: &mut bool) {
    if json_out {
        println!("{v}");
        return;
    }
    if !*header {
        println!(
            "{:>7} {:>8} {:>8} {:>12} {:>12} {:>10} {:>9} {:>9} {:>9} {:>9}",
            "t_s",
            "tx_mpps",
            "rx_mpps",
            "tx",
            "rx",
            "lost",
            "p50_us",
            "p99_us",
            "p999_us",
            "max_us"
        );
        *header = true;
    }
    println!(
        "{:>7} {:>8} {:>8} {:>12} {:>12} {:>10} {:>9} {:>9} {:>9} {:>9}{}",
        v["t_s"],
        v["tx_mpps"],
        v["rx_mpps"],
        v["tx"],
        v["rx"],
        v["lost"],
        v["p50_us"],
        v["p99_us"],
        v["p999_us"],
        v["max_us"],
        if v["final"] == true { "  (total)" } else { "" }
    );
}

/// What the arguments ask for, checked.
struct Plan {
    spec: Spec,
    /// Packets per second, or None for as fast as the ring takes them.
    rate: Option<f64>,
    duration: Duration,
    warmup: Duration,
    settle: Duration,
}

impl Plan {
    fn of(a: &GenArgs) -> anyhow::Result<Plan> {
        let proto = match a.proto.as_str() {
            "tcp" => 6,
            "udp" => 17,
            p => anyhow::bail!("--proto: \"{p}\" is not tcp or udp"),
        };
        let proto = if a.mode == Mode::New { 6 } else { proto };
        let spec = Spec {
            proto,
            size: a.size,
            src_mac: [2, 0, 0, 0, 0, 0x47],
            dst_mac: tandem_config::units::parse_mac(&a.dst_mac)
                .map_err(|e| anyhow::anyhow!("--dst-mac: {e}"))?,
            src_ip: a.src_ip.octets(),
            dst_ip: a.dst_ip.octets(),
            dst_port: a.dst_port,
        };
        if a.size < spec.min_size() || a.size > 1500 {
            anyhow::bail!(
                "--size: from {} to 1500 bytes for this protocol",
                spec.min_size()
            );
        }
        if a.flows == 0 {
            anyhow::bail!("--flows: at least 1");
        }
        let rate: Option<f64> = match a.rate.as_str() {
            "max" => None,
            r => Some(r.parse::<f64>().ok().filter(|x| *x > 0.0).ok_or_else(|| {
                anyhow::anyhow!("--rate: \"{r}\" is not a number of packets per second or max")
            })?),
        };
        if !(0.0..=1.0).contains(&a.new_share) {
            anyhow::bail!("--new-share: from 0 to 1");
        }
        let duration = |key: &str, s: &str| {
            tandem_config::units::parse_duration(s).map_err(|e| anyhow::anyhow!("--{key}: {e}"))
        };
        Ok(Plan {
            spec,
            rate,
            duration: duration("duration", &a.duration)?,
            warmup: duration("warmup", &a.warmup)?,
            settle: duration("settle", &a.settle)?,
        })
    }
}

/// The EAL and the generator's ports (one, or a TX and an RX port), links up.
struct Ports {
    eal: Eal,
    pool: Mempool,
    tx: EthPort,
    rx: EthPort,
    separate: bool,
}

impl Ports {
    fn start(a: &GenArgs, settle: Duration) -> anyhow::Result<Ports> {
        let mut args = if a.eal.is_empty() {
            vec![
                "--no-huge".into(),
                "-m".into(),
                "512".into(),
                "--no-pci".into(),
                "--file-prefix".into(),
                format!("tandem-gen-{}", std::process::id()),
                "--log-level".into(),
                "lib.eal:warning".into(),
            ]
        } else {
            a.eal.clone()
        };
        args.push(format!("--lcores=0@{}", a.core));
        args.extend(vdev_arg(&a.tx));
        let rx_devargs = a.rx.clone().unwrap_or_else(|| a.tx.clone());
        let separate = device(&rx_devargs) != device(&a.tx);
        if separate {
            args.extend(vdev_arg(&rx_devargs));
        }
        let eal = Eal::init(&args).map_err(|e| anyhow::anyhow!("{e}"))?;
        let pool =
            Mempool::new("tandem_gen", a.mbufs, 256, -1).map_err(|e| anyhow::anyhow!("{e}"))?;
        let open = |d: &str| -> anyhow::Result<EthPort> {
            let id = EthPort::by_name(device(d)).map_err(|e| anyhow::anyhow!("{e}"))?;
            EthPort::start(id, Queues::of(1), &pool, None)
                .map_err(|e| anyhow::anyhow!("{}: {e}", device(d)))
        };
        let tx = open(&a.tx)?;
        let rx = if separate { open(&rx_devargs)? } else { tx };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !(tx.link().up && rx.link().up) {
            if std::time::Instant::now() > deadline {
                anyhow::bail!(
                    "the ports' links did not come up within 10 s (is the peer running?)"
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(settle);
        Ok(Ports {
            eal,
            pool,
            tx,
            rx,
            separate,
        })
    }

    fn close(self) {
        self.tx.stop_and_close();
        if self.separate {
            self.rx.stop_and_close();
        }
        self.eal.cleanup();
    }
}

/// The frames the generator sends, in order: established flows round and round, a new flow
/// every `new_every` frames (or only new ones), each stamped with its sequence number.
struct Frames<'a> {
    spec: &'a Spec,
    mode: Mode,
    flows: u64,
    /// Established flows' frames, built once (up to a million; beyond, built as sent).
    templates: Vec<Vec<u8>>,
    flow: u64,
    /// New flows' numbers start past the established ones.
    fresh: u64,
    new_every: u64,
    seq: u32,
    /// Every established flow sent at least once (the warm-up waits for it).
    cycled: bool,
}

impl<'a> Frames<'a> {
    fn new(a: &GenArgs, spec: &'a Spec) -> Frames<'a> {
        let templates = if a.mode != Mode::New && a.flows <= 1 << 20 {
            (0..a.flows)
                .map(|n| {
                    let mut b = vec![0u8; spec.size];
                    gen::write_frame(&mut b, spec, n, false);
                    b
                })
                .collect()
        } else {
            Vec::new()
        };
        Frames {
            spec,
            mode: a.mode,
            flows: a.flows,
            templates,
            flow: 0,
            fresh: a.flows,
            new_every: if a.new_share > 0.0 {
                (1.0 / a.new_share).round().max(1.0) as u64
            } else {
                u64::MAX
            },
            seq: 0,
            cycled: false,
        }
    }

    /// Writes the next frame into `f`, stamped at `now32`.
    fn next(&mut self, f: &mut [u8], now32: u32) {
        let is_new = match self.mode {
            Mode::New => true,
            Mode::Mix => u64::from(self.seq).is_multiple_of(self.new_every),
            Mode::Established => false,
        };
        if is_new {
            gen::write_frame(f, self.spec, self.fresh, true);
            self.fresh += 1;
        } else {
            match self.templates.get(self.flow as usize) {
                Some(t) => f.copy_from_slice(t),
                None => {
                    gen::write_frame(f, self.spec, self.flow, false);
                }
            }
            self.flow += 1;
            if self.flow == self.flows {
                self.flow = 0;
                self.cycled = true;
            }
        }
        gen::stamp(f, self.spec, self.seq, now32);
        self.seq = self.seq.wrapping_add(1);
    }
}

/// The generator's clock: nanoseconds since it started, from the TSC.
struct Clock {
    hz: u64,
    t0: u64,
}

impl Clock {
    fn ns(&self) -> u64 {
        (u128::from(rdtsc().wrapping_sub(self.t0)) * 1_000_000_000 / u128::from(self.hz)) as u64
    }
}

/// The sending side: frames built but refused by the TX ring (offered again first), and a
/// token bucket holding at most one burst of credit, so a stall is never made up in a rush.
struct Sender {
    pkts: [RawMbuf; BURST],
    pending: usize,
    credit: f64,
    last_ns: u64,
}

impl Sender {
    /// How many frames `rate` (none: as fast as the ring takes them) allows at `now`.
    fn allowed(&mut self, rate: Option<f64>, now: u64) -> usize {
        let allowed = match rate {
            None => BURST,
            Some(r) => {
                self.credit = (self.credit + now.saturating_sub(self.last_ns) as f64 * r / 1e9)
                    .min(BURST as f64);
                self.credit as usize
            }
        };
        self.last_ns = now;
        allowed
    }

    /// Builds frames up to `allowed` (those refused last time first) and offers them to
    /// the TX ring; how many it took.
    fn send(&mut self, ports: &Ports, frames: &mut Frames, allowed: usize, clock: &Clock) -> usize {
        let mut n = self.pending;
        let size = frames.spec.size;
        while n < allowed {
            let Some(m) = ports.pool.alloc() else { break };
            // SAFETY: a fresh mbuf from our pool, owned here until sent or freed.
            let (room, start, _) = unsafe { mbuf::data_room(m) };
            frames.next(&mut room[start..start + size], clock.ns() as u32);
            // SAFETY: the frame was written within the data room.
            unsafe { mbuf::set_frame(m, start, size) };
            self.pkts[n] = m;
            n += 1;
        }
        let sent = ports.tx.tx_burst(0, &mut self.pkts[..n]);
        self.credit = (self.credit - sent as f64).max(0.0);
        // The refused ones move to the front, to be offered again next time round.
        self.pkts.copy_within(sent..n, 0);
        self.pending = n - sent;
        sent
    }
}

/// What is measured: from the end of the warm-up (`base`, on the clock), frames sent and
/// what came back, and the per-second reports.
struct Measure {
    base: u64,
    warming: bool,
    tx: u64,
    rx: Rx,
    next_report: u64,
    prev: (u64, u64),
    header: bool,
}

impl Measure {
    /// The report at `t` seconds: the second that ended (rates over `dt`), or the whole run
    /// (`final_`).
    fn report(&self, t: f64, dt: f64, final_: bool) -> Value {
        let (tx, rx, prev) = (self.tx, &self.rx, self.prev);
        let h = if final_ { &rx.total } else { &rx.interval };
        let us = |q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1000.0
            }
        };
        let (tx_rate, rx_rate) = if final_ {
            (tx as f64 / dt, rx.ours as f64 / dt)
        } else {
            ((tx - prev.0) as f64 / dt, (rx.ours - prev.1) as f64 / dt)
        };
        json!({
            "t_s": (t * 1000.0).round() / 1000.0,
            "final": final_,
            "tx_mpps": (tx_rate / 1e4).round() / 100.0,
            "rx_mpps": (rx_rate / 1e4).round() / 100.0,
            "tx": tx,
            "rx": rx.ours,
            "rx_other": rx.frames - rx.ours,
            "lost": tx.saturating_sub(rx.ours),
            "reordered": rx.reordered,
            "p50_us": us(0.5),
            "p99_us": us(0.99),
            "p999_us": us(0.999),
            "max_us": if h.is_empty() { 0.0 } else { h.max() as f64 / 1000.0 },
        })
    }

    /// Measuring starts at `now` (on the warm-up's clock): a fresh clock, counts and
    /// histograms; frames stamped before sequence number `seq` are the warm-up's.
    fn start(&mut self, now: u64, seq: u32) {
        self.warming = false;
        self.base += now;
        self.tx = 0;
        self.rx = Rx::default();
        self.rx.start_seq = Some(seq);
        self.next_report = 1_000_000_000;
        self.prev = (0, 0);
    }

    /// The report of the second that ends at `now`, when it is due.
    fn each_second(&mut self, now: u64, json_out: bool) {
        if now < self.next_report {
            return;
        }
        let v = self.report(now as f64 / 1e9, 1.0, false);
        print(&v, json_out, &mut self.header);
        self.prev = (self.tx, self.rx.ours);
        self.rx.interval.reset();
        self.next_report += 1_000_000_000;
    }
}

/// Reads what came back (a burst at most) into the measurements, and frees it.
fn receive(ports: &Ports, rxb: &mut [RawMbuf; BURST], rx: &mut Rx, clock: &Clock) {
    let got = ports.rx.rx_burst(0, rxb);
    if got == 0 {
        return;
    }
    let now32 = clock.ns() as u32;
    for &m in &rxb[..got] {
        // SAFETY: from rx_burst, ours until freed below.
        let (room, start, len) = unsafe { mbuf::data_room(m) };
        rx.on_frame(&room[start..start + len], now32);
    }
    mbuf::free_bulk(&mut rxb[..got]);
}

/// Runs the generator; returns the final report.
pub fn run(a: &GenArgs) -> anyhow::Result<Value> {
    let plan = Plan::of(a)?;
    let ports = Ports::start(a, plan.settle)?;
    let mut frames = Frames::new(a, &plan.spec);
    let clock = Clock {
        hz: ports.eal.tsc_hz().max(1),
        t0: rdtsc(),
    };
    let mut m = Measure {
        base: 0,
        warming: !plan.warmup.is_zero(),
        tx: 0,
        rx: Rx::default(),
        next_report: 1_000_000_000,
        prev: (0, 0),
        header: false,
    };
    let mut sender = Sender {
        pkts: [std::ptr::null_mut(); BURST],
        pending: 0,
        credit: 0.0,
        last_ns: 0,
    };
    let mut rxb: [RawMbuf; BURST] = [std::ptr::null_mut(); BURST];
    let end_ns = plan.duration.as_nanos() as u64;
    let mut stop_at = None;
    loop {
        let mut now = clock.ns() - m.base;
        if m.warming
            && now >= plan.warmup.as_nanos() as u64
            && (a.mode == Mode::New || frames.cycled)
        {
            m.start(now, frames.seq);
            now = 0;
            sender.last_ns = 0;
        }
        let done = match a.count {
            Some(c) => m.tx >= c,
            None => now >= end_ns,
        };
        if stop_at.is_none() && !m.warming && done {
            stop_at = Some(now);
        }
        match stop_at {
            Some(t) if now >= t + DRAIN.as_nanos() as u64 => break,
            Some(_) => {}
            None => {
                let allowed = sender.allowed(plan.rate, now);
                let allowed = match a.count {
                    Some(c) if !m.warming => allowed.min((c - m.tx) as usize),
                    _ => allowed,
                };
                m.tx += sender.send(&ports, &mut frames, allowed, &clock) as u64;
            }
        }
        receive(&ports, &mut rxb, &mut m.rx, &clock);
        if stop_at.is_none() && !m.warming {
            m.each_second(now, a.json);
        }
    }
    mbuf::free_bulk(&mut sender.pkts[..sender.pending]);
    let secs = (stop_at.unwrap_or(0) as f64 / 1e9).max(1e-9);
    let v = m.report(secs, secs, true);
    print(&v, a.json, &mut m.header);
    ports.close();
    Ok(v)
}
