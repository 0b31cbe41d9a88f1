//! Shared helpers for the integration tests: a scratch directory, a `tandem run` child that
//! is always stopped (by pid) even when a test fails, the control socket, and pcap files.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique name for this test run (namespaces, interfaces, DPDK file prefixes).
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}{}x{n}", std::process::id() % 100_000)
}

pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(unique(&format!("tandem-{name}-")));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }
    pub fn path(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("TANDEM_KEEP_TEST_FILES").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The first lines of every test node's config: `[node] id` and an `[eal]` with no
/// hugepages and no PCI devices, `memory_mb` of memory and this test's own DPDK file
/// `prefix` (two runs, or two nodes of one run, never share one), EAL logs at warning.
/// Each test's ports, services and sections follow it.
#[allow(dead_code)]
pub fn node_header(
    id: impl std::fmt::Display,
    memory_mb: impl std::fmt::Display,
    prefix: &str,
) -> String {
    format!(
        "[node]\nid = {id}\n[eal]\nargs = [\"--no-huge\", \"-m\", \"{memory_mb}\", \"--no-pci\", \
         \"--file-prefix\", \"{prefix}\", \"--log-level\", \"lib.eal:warning\"]\n"
    )
}

/// The binary under test: this build's, or `TANDEM_BIN` (to measure another build, such
/// as the one before a change, with the same test).
pub fn tandem_bin() -> PathBuf {
    std::env::var_os("TANDEM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tandem")))
}

/// An example program of the workspace (`quic_server`, say), built beside the binary under
/// test: `scripts/test` builds them first (`cargo build -p quic-lb --features quinn
/// --examples`); a test run alone needs that too.
#[allow(dead_code)]
pub fn example_bin(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_BIN_EXE_tandem"))
        .with_file_name("examples")
        .join(name);
    assert!(
        p.exists(),
        "{} is not built: cargo build -p quic-lb --features quinn --examples",
        p.display()
    );
    p
}

/// A worker counter of a `show stats` answer, summed over the workers.
#[allow(dead_code)]
pub fn worker_total(stats: &serde_json::Value, name: &str) -> u64 {
    stats["workers"]
        .as_array()
        .map_or(0, |w| w.iter().map(|x| x[name].as_u64().unwrap_or(0)).sum())
}

/// A running `tandem run`. Dropping it kills the process (by pid) if it is still alive.
pub struct Node {
    pub child: Option<Child>,
    pub socket: PathBuf,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
}

impl Node {
    /// Starts `tandem run --config cfg`, optionally inside network namespace `netns`, and
    /// waits for its control socket.
    pub fn start(cfg: &Path, socket: &Path, netns: Option<&str>) -> Node {
        Node::start_env(cfg, socket, netns, &[])
    }

    /// `start` with these environment variables set for the node.
    pub fn start_env(cfg: &Path, socket: &Path, netns: Option<&str>, env: &[(&str, &str)]) -> Node {
        let out = cfg.with_extension("stdout");
        let err = cfg.with_extension("stderr");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(tandem_bin());
                c
            }
            None => Command::new(tandem_bin()),
        };
        cmd.envs(env.iter().copied());
        cmd.arg("run")
            .arg("--config")
            .arg(cfg)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        let child = cmd.spawn().expect("spawn tandem");
        let mut node = Node {
            child: Some(child),
            socket: socket.to_path_buf(),
            stdout_path: out,
            stderr_path: err,
        };
        wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
            if node.ctl("help").is_ok() {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = node.child.as_mut().map(|c| c.try_wait()) {
                panic!("tandem exited early ({status}):\n{}", node.logs());
            }
            Err(format!(
                "tandem did not open its control socket:\n{}",
                node.logs()
            ))
        });
        node
    }

    pub fn logs(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            std::fs::read_to_string(&self.stdout_path).unwrap_or_default(),
            std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
        )
    }

    pub fn ctl(&self, line: &str) -> Result<serde_json::Value, String> {
        ctl_at(&self.socket, line)
    }

    /// The node's pid (the `ip netns exec` wrapper execs it, so the child's own).
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Waits until `f(show stats)` holds.
    pub fn wait_stats(
        &self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        wait_for(timeout, Duration::from_millis(100), || {
            let s = self.ctl("show stats").unwrap_or_default();
            if f(&s) {
                Ok(s)
            } else {
                Err(format!("{what}; last stats: {s}\n{}", self.logs()))
            }
        })
    }

    /// SIGINT, then wait for a clean exit; returns the final stats document it printed.
    pub fn stop(&mut self) -> serde_json::Value {
        self.stop_with(libc::SIGINT)
    }

    /// `signal`, then wait for a clean exit; returns the final stats document it printed.
    pub fn stop_with(&mut self, signal: i32) -> serde_json::Value {
        let mut child = self.child.take().expect("running");
        unsafe_kill(child.id() as i32, signal);
        let what = format!("tandem, after signal {signal},");
        let status = wait_child(&mut child, Duration::from_secs(20), &what);
        assert!(
            status.success(),
            "tandem exited with {status}:\n{}",
            self.logs()
        );
        let out = std::fs::read_to_string(&self.stdout_path).unwrap_or_default();
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix("TANDEM_FINAL_STATS "))
            .unwrap_or_else(|| panic!("no final stats:\n{}", self.logs()));
        serde_json::from_str(line).unwrap()
    }
}

/// Sends `sig` to a process the test started.
pub fn unsafe_kill(pid: i32, sig: i32) {
    // SAFETY: sending a signal to a pid we spawned; no memory is involved.
    unsafe {
        libc::kill(pid, sig);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // `ip netns exec` execs tandem, so the pid is tandem's own.
            unsafe_kill(c.id() as i32, libc::SIGKILL);
            let _ = c.wait();
        }
    }
}

/// One command on a control socket, on a connection of its own; its answer.
pub fn ctl_at(socket: &Path, line: &str) -> Result<serde_json::Value, String> {
    let mut s = std::os::unix::net::UnixStream::connect(socket).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    use std::io::Write;
    writeln!(s, "{line}").map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let mut answer = String::new();
    r.read_line(&mut answer).map_err(|e| e.to_string())?;
    serde_json::from_str(&answer).map_err(|e| format!("{e}: {answer:?}"))
}

pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let f = std::fs::File::create(path).unwrap();
    let header = pcap_file::pcap::PcapHeader {
        datalink: pcap_file::DataLink::ETHERNET,
        ..Default::default()
    };
    let mut w = pcap_file::pcap::PcapWriter::with_header(f, header).unwrap();
    for (i, fr) in frames.iter().enumerate() {
        let pkt =
            pcap_file::pcap::PcapPacket::new(Duration::from_millis(i as u64), fr.len() as u32, fr);
        w.write_packet(&pkt).unwrap();
    }
}

pub fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut r = pcap_file::pcap::PcapReader::new(f).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p.unwrap().data.to_vec());
    }
    out
}

/// Runs a shell command, panicking with its output when it fails.
pub fn sh(cmd: &str) -> String {
    let o = Command::new("bash").arg("-c").arg(cmd).output().unwrap();
    if !o.status.success() {
        panic!(
            "command failed: {cmd}\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Loads nftables `rules` (a ruleset in nft's own syntax) in namespace `ns`.
pub fn nft(ns: &str, rules: &str) {
    let out = in_ns(ns, &format!("nft -f - <<'EOF'\n{rules}\nEOF"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nft in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Drops TCP segments to `port` in namespace `ns` (a backend failing its probes), until
/// `nft(ns, "delete table inet tandem_test")`.
pub fn nft_drop_port(ns: &str, port: u16) {
    nft(
        ns,
        &format!("table inet tandem_test {{ chain input {{ type filter hook input priority 0; tcp dport {port} drop; }}; }}"),
    );
}

/// Runs a shell command and ignores failure (clean-up).
pub fn sh_quiet(cmd: &str) {
    let _ = Command::new("bash").arg("-c").arg(cmd).output();
}

/// A file of this repository (scripts, test helpers).
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// A namespace test bed built by one of the scripts (`scripts/topology`,
/// `scripts/cluster-topology`): `SCRIPT up SUFFIX ARGS` now, `SCRIPT down SUFFIX ARGS` on
/// drop, whatever happened.
pub struct Testbed {
    pub script: PathBuf,
    pub suffix: String,
    pub args: String,
}

impl Testbed {
    pub fn up(script_name: &str, suffix: &str, args: &str) -> Testbed {
        let t = Testbed {
            script: script(script_name),
            suffix: suffix.into(),
            args: args.into(),
        };
        sh(&format!("{} up {suffix} {args}", t.script.display()));
        t
    }
    /// A namespace of the bed: `ROLE-SUFFIX`.
    pub fn ns(&self, role: &str) -> String {
        format!("{role}-{}", self.suffix)
    }
    /// Runs another verb of the script (`withdraw SUFFIX 2`, say).
    pub fn run(&self, verb: &str, args: &str) {
        sh(&format!(
            "{} {verb} {} {args}",
            self.script.display(),
            self.suffix
        ));
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        sh_quiet(&format!(
            "{} down {} {}",
            self.script.display(),
            self.suffix,
            self.args
        ));
    }
}

/// Processes a test started; killed by pid on drop.
pub struct Procs(pub Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A shell command inside a network namespace.
/// Starts `cmd` in namespace `ns`, one process per entry, then waits until each has printed
/// its `ready` line (the test backends print it once they listen).
#[allow(dead_code)]
pub fn start_ready(cmds: &[(String, String)]) -> Procs {
    let mut procs: Vec<Child> = cmds
        .iter()
        .map(|(ns, cmd)| {
            in_ns(ns, cmd)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in &mut procs {
        let mut line = String::new();
        std::io::BufReader::new(c.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "a backend did not start");
    }
    Procs(procs)
}

pub fn in_ns(ns: &str, cmd: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, "bash", "-c", cmd]);
    c
}

/// Free loopback sync endpoints, for nodes in this namespace.
pub fn loopback_sync(n: usize) -> Vec<String> {
    let socks: Vec<std::net::UdpSocket> = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    socks
        .iter()
        .map(|s| s.local_addr().unwrap().to_string())
        .collect()
}

pub fn write_secret(s: &Scratch) -> PathBuf {
    let p = s.path("cluster.key");
    std::fs::write(&p, "tandem test cluster secret 0123456789\n").unwrap();
    sh(&format!("chmod 600 {}", p.display()));
    p
}

/// A rate-limited HTTP download (the test backend's `/blob`, byte i is i % 251) from a
/// fixed client port, from namespace `ns`, into `file`.
pub fn start_download(
    ns: &str,
    vip: &str,
    file: &Path,
    local_port: u16,
    size: usize,
    rate: usize,
) -> Child {
    in_ns(
        ns,
        &format!(
            "exec curl -s -m 120 --local-port {local_port} -o {} 'http://{vip}/blob?size={size}&rate={rate}'",
            file.display()
        ),
    )
    .stdin(Stdio::null())
    .spawn()
    .unwrap()
}

/// Waits for child `c` (`what`, in the failure) to exit; past `within` it is killed (by
/// pid) and the test fails.
#[allow(dead_code)]
pub fn wait_child(c: &mut Child, within: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s;
        }
        if Instant::now() >= deadline {
            unsafe_kill(c.id() as i32, libc::SIGKILL);
            let _ = c.wait();
            panic!("{what} did not finish in {within:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for a download to end and checks it whole, byte for byte.
pub fn finish_download(mut c: Child, file: &Path, size: usize, within: Duration) {
    let status = wait_child(&mut c, within, "a download");
    assert!(status.success(), "curl exited {status}");
    let data = std::fs::read(file).unwrap();
    assert_eq!(data.len(), size, "download length");
    let bad = data
        .iter()
        .enumerate()
        .position(|(i, b)| usize::from(*b) != i % 251);
    assert_eq!(bad, None, "download corrupted at byte {bad:?}");
}

/// Waits until `url` answers from namespace `ns` (the node has learned its next hops).
pub fn wait_for_answer(ns: &str, url: &str, node: &Node) {
    wait_for(Duration::from_secs(20), Duration::from_millis(200), || {
        let out = in_ns(ns, &format!("curl -g -s -m 2 {url}"))
            .output()
            .unwrap();
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("no answer from {url}:\n{}", node.logs()))
        }
    })
}

/// Tries `check` every `every` until it gives `Ok` (which is returned); past `within` the
/// test fails with what the last try gave as `Err`. Every wait of the end-to-end tests is
/// one of these, so none is unbounded and each failure says what was awaited.
#[allow(dead_code)]
pub fn wait_for<T>(
    within: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(v) => return v,
            Err(why) if Instant::now() >= deadline => panic!("waited {within:?}: {why}"),
            Err(_) => std::thread::sleep(every),
        }
    }
}

/// `flows` UDP queries to the dns VIP 192.0.2.10:53, each its own flow (source ports from
/// 30000 up), from `clients` in turn, as a client's frames reach the front port.
#[allow(dead_code)]
pub fn dns_queries(clients: &[&str], flows: u16) -> Vec<Vec<u8>> {
    (0..flows)
        .map(|i| {
            tandem_dataplane::testkit::udp(
                [2, 0, 0, 0, 0, 1],
                [2, 0, 0, 0, 0xc, 1],
                clients[usize::from(i) % clients.len()].parse().unwrap(),
                30_000 + i,
                "192.0.2.10".parse().unwrap(),
                53,
                b"query",
            )
        })
        .collect()
}

/// A node's config after its header: a front port reading `pcap` (`front_args` after the
/// file), a back port on net_null, `sections` (workers, mempool, flows), the control socket,
/// and the UDP nat service `dns_queries` asks: backend a at 10.1.0.11:5353 behind back.
#[allow(dead_code)]
pub fn dns_node(pcap: &Path, front_args: &str, sections: &str, sock: &Path) -> String {
    let tag = std::process::id() % 1000;
    format!(
        r#"[[port]]
name = "front"
devargs = "net_pcap{tag}0,rx_pcap={pcap}{front_args}"
mac = "02:00:00:00:00:01"
ipv4 = "10.0.0.1/24"
[[port]]
name = "back"
devargs = "net_null{tag}1,no-rx=1"
ipv4 = "10.1.0.1/24"
{sections}
[control]
socket = "{sock}"
[[service]]
name = "dns"
vip = "192.0.2.10"
port = 53
protocol = "udp"
mode = "nat"
[[service.backend]]
name = "a"
address = "10.1.0.11"
port = 5353
paths = [{{ port = "back", mac = "02:00:00:00:01:11" }}]
"#,
        pcap = pcap.display(),
        sock = sock.display(),
    )
}
