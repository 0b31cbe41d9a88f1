//! One node's announcement end to end, with real BIRD 2 daemons and nothing between: the
//! node (its front port on af_packet, with the kernel twin `tdm-front`) and its BIRD in one
//! namespace; a router namespace with its BIRD (BGP over IPv4 and IPv6, BFD 100 ms x 3,
//! routes into its kernel tables) and the backends' servers. Checked, in order:
//!
//! - started before its BIRD, the node serves and says `bird_unreachable`; the node's own
//!   traffic (a TCP connection to a server on the twin's address) reaches its kernel;
//! - its BIRD started, the router learns the IPv4 and the IPv6 VIP;
//! - a backend failing its probes withdraws its VIP; BIRD refusing its (broken) config
//!   leaves it announced and `show bgp` says why; the config mended, it is withdrawn; the
//!   backend healthy again, announced;
//! - SIGKILL: the twin is gone and the router drops both routes within BFD's time;
//! - a twin whose name is taken stops the start with the key named;
//! - SIGTERM: both routes withdrawn while the node still serves, then it exits 0.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The tests of this file one at a time: each runs BIRDs with BFD at 100 ms, which a
/// neighbour's flood or start-up on a 2-core machine would make flap.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const VIP4: &str = "192.0.2.10";
const VIP6: &str = "fd00:10::10";

/// The two namespaces and the BIRDs in them, removed on drop whatever happened.
struct Bed {
    node: String,
    router: String,
    dir: PathBuf,
}

impl Bed {
    fn up(sx: &str, dir: &Path) -> Bed {
        let b = Bed {
            node: format!("gn-{sx}"),
            router: format!("gr-{sx}"),
            dir: dir.to_path_buf(),
        };
        let (n, r) = (&b.node, &b.router);
        sh(&format!(
            "set -e
            ip netns add {n}; ip netns add {r}
            for ns in {n} {r}; do
              ip -n $ns link set lo up
              ip netns exec $ns sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
              ip netns exec $ns sysctl -qw net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0
            done
            ip link add n0 netns {n} type veth peer name r0 netns {r}
            ip netns exec {n} sysctl -qw net.ipv6.conf.n0.disable_ipv6=1
            ip -n {n} link set n0 up
            ip netns exec {n} ethtool -K n0 tx off sg off tso off gso off gro off >/dev/null 2>&1 || true
            ip netns exec {r} ethtool -K r0 tx off sg off tso off gso off gro off >/dev/null 2>&1 || true
            ip -n {r} addr add 10.0.0.254/24 dev r0
            ip -n {r} addr add 10.0.0.11/24 dev r0
            ip -n {r} addr add fd00::fe/64 dev r0 nodad
            ip -n {r} addr add fd00::11/64 dev r0 nodad
            ip -n {r} link set r0 up"
        ));
        b
    }

    fn bird(&self, ns: &str, name: &str, conf: &str) {
        let d = &self.dir;
        std::fs::write(d.join(format!("{name}.conf")), conf).unwrap();
        sh(&format!(
            "ip netns exec {ns} bird -c {d}/{name}.conf -s {d}/{name}.ctl -P {d}/{name}.pid",
            d = d.display()
        ));
    }

    fn stop_bird(&self, name: &str) {
        let pid = self.dir.join(format!("{name}.pid"));
        if let Ok(p) = std::fs::read_to_string(&pid) {
            if let Ok(p) = p.trim().parse::<i32>() {
                unsafe_kill(p, libc::SIGKILL);
            }
            let _ = std::fs::remove_file(pid);
        }
    }

    /// The router's route to `dest` (IPv4 or IPv6): its next hop, if it has one.
    fn route(&self, dest: &str) -> Option<String> {
        let fam = if dest.contains(':') { "-6" } else { "-4" };
        let out = Command::new("ip")
            .args([fam, "-n", &self.router, "route", "show", dest])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let w: Vec<&str> = text.split_whitespace().collect();
        w.windows(2)
            .find(|x| x[0] == "via")
            .map(|x| x[1].to_string())
    }

    fn wait_route(&self, dest: &str, want: bool, timeout: Duration) -> Duration {
        let start = Instant::now();
        wait_for(timeout, Duration::from_millis(10), || {
            if self.route(dest).is_some() == want {
                Ok(())
            } else {
                Err(format!(
                    "the router {} {dest}",
                    if want { "never learned" } else { "still has" }
                ))
            }
        });
        start.elapsed()
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.stop_bird("node");
        self.stop_bird("router");
        sh_quiet(&format!(
            "ip netns del {} 2>/dev/null; ip netns del {} 2>/dev/null",
            self.node, self.router
        ));
    }
}

fn router_conf(dir: &Path) -> String {
    format!(
        r#"router id 10.0.0.254;
log "{d}/router.log" all;
protocol device {{ }}
protocol kernel {{ ipv4 {{ import none; export all; }}; }}
protocol kernel {{ ipv6 {{ import none; export all; }}; }}
protocol bfd {{ interface "r0" {{ interval 100 ms; multiplier 3; }}; }}
template bgp node {{ local as 65000; bfd on; connect retry time 1; error wait time 1, 2; }}
protocol bgp n4 from node {{ neighbor 10.0.0.1 as 65001; ipv4 {{ import all; export none; }}; }}
protocol bgp n6 from node {{ neighbor fd00::1 as 65001; ipv6 {{ import all; export none; }}; }}
"#,
        d = dir.display()
    )
}

/// The node's bird.conf as README's snippet has it (with `garbage` appended: broken).
fn node_conf(dir: &Path, broken: bool) -> String {
    format!(
        r#"router id 10.0.0.1;
log "{d}/node.log" all;
protocol device {{ }}
protocol static tandem4 {{
  ipv4;
  include "{d}/vips4.conf";
}}
protocol static tandem6 {{
  ipv6;
  include "{d}/vips6.conf";
}}
protocol bfd {{ interface "tdm-front" {{ interval 100 ms; multiplier 3; }}; }}
template bgp tor {{ local as 65001; bfd on; connect retry time 1; error wait time 1, 2; }}
protocol bgp tor4 from tor {{ neighbor 10.0.0.254 as 65000; ipv4 {{ import none; export where proto = "tandem4"; next hop self; }}; }}
protocol bgp tor6 from tor {{ neighbor fd00::fe as 65000; ipv6 {{ import none; export where proto = "tandem6"; next hop self; }}; }}
{}"#,
        if broken { "garbage here;\n" } else { "" },
        d = dir.display()
    )
}

fn node_config(s: &Scratch, sx: &str) -> String {
    let d = s.path("");
    format!(
        r#"{header}[[port]]
name = "front"
devargs = "net_af_packet0,iface=n0"
ipv4 = "10.0.0.1/24"
ipv6 = "fd00::1/64"
mac = "02:00:00:00:0b:01"
kernel = "tdm-front"
[workers]
cores = [1]
idle_sleep = "100us"
[control]
socket = "{d}/ctl.sock"
[health]
probe = "tcp"
interval = "200ms"
timeout = "400ms"
down_after = 3
up_after = 2
[bgp]
bird_socket = "{d}/node.ctl"
routes4 = "{d}/vips4.conf"
routes6 = "{d}/vips6.conf"
min_healthy = 1
withdraw_grace = "1500ms"
[[service]]
name = "web"
vip = "{VIP4}"
port = 80
protocol = "tcp"
mode = "nat"
[[service.backend]]
name = "a"
address = "10.0.0.11"
port = 8080
paths = [{{ port = "front" }}]
[[service]]
name = "web6"
vip = "{VIP6}"
port = 80
protocol = "tcp"
mode = "nat"
[[service.backend]]
name = "a6"
address = "fd00::11"
port = 8081
paths = [{{ port = "front" }}]
"#,
        header = node_header(1, 256, &format!("tbgp{sx}")),
        d = d.display()
    )
}

fn vip<'a>(bgp: &'a serde_json::Value, v: &str) -> &'a serde_json::Value {
    bgp["vips"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["vip"] == v))
        .unwrap_or_else(|| panic!("no {v} in {bgp}"))
}

fn wait_bgp(n: &Node, what: &str, f: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    wait_for(Duration::from_secs(15), Duration::from_millis(50), || {
        let d = n.ctl("show bgp").unwrap();
        if f(&d) {
            Ok(d)
        } else {
            Err(format!("show bgp never {what}: {d}\n{}", n.logs()))
        }
    })
}

#[test]
fn vips_announced_health_gated_and_withdrawn_through_birds() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let sx = unique("g");
    let s = Scratch::new("bgp");
    let bed = Bed::up(&sx, &s.path(""));
    let d = s.path("");
    // The backends (on the router's side) and a server on the node's own address.
    let serve = |ns: &str, port: u16, addr: &str| {
        in_ns(
            ns,
            &format!("exec python3 -m http.server {port} --bind {addr}"),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
    };
    let mut servers = Procs(vec![
        serve(&bed.router, 8080, "10.0.0.11"),
        serve(&bed.router, 8081, "fd00::11"),
    ]);
    bed.bird(&bed.router, "router", &router_conf(&d));
    let cfg = s.path("node.toml");
    std::fs::write(&cfg, node_config(&s, &sx)).unwrap();
    let sock = s.path("ctl.sock");

    // No BIRD on the node yet: tandem serves, and says so.
    let mut n = Node::start(&cfg, &sock, Some(&bed.node));
    let b = wait_bgp(&n, "wanted the VIPs with BIRD unreachable", |b| {
        b["bird"]["state"] == "bird_unreachable" && b["vips"][0]["wanted"] == true
    });
    assert_eq!(vip(&b, VIP4)["announced"], false, "{b}");
    println!("  without BIRD: {}", b["bird"]["detail"]);
    // The node's own traffic goes through the twin to its kernel, and back out (a server
    // on the twin's address, which exists only now).
    servers.0.push(serve(&bed.node, 2222, "10.0.0.1"));
    std::thread::sleep(Duration::from_millis(500));
    let got = in_ns(
        &bed.router,
        "curl -s -m 5 -o /dev/null -w '%{http_code}' http://10.0.0.1:2222/",
    )
    .output()
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got.stdout),
        "200",
        "through the kernel twin\n{}",
        n.logs()
    );

    // BIRD on the node: both VIPs reach the router.
    bed.bird(&bed.node, "node", &node_conf(&d, false));
    let t4 = bed.wait_route(VIP4, true, Duration::from_secs(15));
    let t6 = bed.wait_route(VIP6, true, Duration::from_secs(15));
    assert_eq!(bed.route(VIP4).as_deref(), Some("10.0.0.1"));
    assert_eq!(bed.route(VIP6).as_deref(), Some("fd00::1"));
    println!(
        "  BIRD started: the router has {VIP4} after {} ms, {VIP6} after {} ms more",
        t4.as_millis(),
        t6.as_millis()
    );
    let b = n.ctl("show bgp").unwrap();
    assert_eq!(b["bird"]["state"], "configured", "{b}");
    assert_eq!(vip(&b, VIP6)["announced"], true, "{b}");

    // The IPv6 backend fails its probes; BIRD's config is broken meanwhile: it refuses,
    // the VIP stays announced, and show bgp says why.
    std::fs::write(d.join("node.conf"), node_conf(&d, true)).unwrap();
    nft_drop_port(&bed.router, 8081);
    let b = wait_bgp(&n, "saw BIRD refuse", |b| {
        b["bird"]["state"] == "bird_refused"
    });
    assert!(
        b["bird"]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("node.conf"),
        "{b}"
    );
    assert_eq!(vip(&b, VIP6)["wanted"], false, "{b}");
    assert_eq!(vip(&b, VIP6)["announced"], true, "{b}");
    assert!(
        vip(&b, VIP6)["why"]
            .as_str()
            .unwrap()
            .starts_with("too few healthy backends"),
        "{b}"
    );
    assert!(
        bed.route(VIP6).is_some(),
        "BIRD refused, so the router keeps the route"
    );
    println!("  BIRD refusing: {}", b["bird"]["detail"]);
    // Mended: the retry withdraws it; the IPv4 VIP is untouched.
    std::fs::write(d.join("node.conf"), node_conf(&d, false)).unwrap();
    let gone = bed.wait_route(VIP6, false, Duration::from_secs(10));
    assert!(bed.route(VIP4).is_some());
    println!(
        "  bird.conf mended: {VIP6} withdrawn {} ms later",
        gone.as_millis()
    );
    nft(&bed.router, "delete table inet tandem_test");
    let back = bed.wait_route(VIP6, true, Duration::from_secs(10));
    println!(
        "  backend healthy: {VIP6} announced again {} ms later",
        back.as_millis()
    );

    // SIGKILL: the twin goes with the process; BFD tells the router.
    let mut child = n.child.take().unwrap();
    let killed = Instant::now();
    child.kill().unwrap();
    child.wait().unwrap();
    let w4 = bed.wait_route(VIP4, false, Duration::from_secs(3));
    bed.wait_route(VIP6, false, Duration::from_secs(3));
    let w = killed.elapsed();
    println!(
        "  SIGKILL: {VIP4} gone from the router after {} ms, both after {} ms",
        w4.as_millis(),
        w.as_millis()
    );
    assert!(w < Duration::from_secs(1), "BFD withdrawal took {w:?}");
    let links = sh(&format!("ip -n {} -o link show", bed.node));
    assert!(
        !links.contains("tdm-front"),
        "the twin outlived its process: {links}"
    );

    // A twin whose name is taken: the start stops, naming the key.
    sh(&format!(
        "ip -n {} link add tdm-front type bridge",
        bed.node
    ));
    let out = Command::new("ip")
        .args(["netns", "exec", &bed.node])
        .arg(tandem_bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        err.contains("port[0].kernel") && err.contains("exists already"),
        "{err}"
    );
    sh(&format!("ip -n {} link del tdm-front", bed.node));

    // SIGTERM: withdrawn first, served through the grace, then a clean exit.
    n = Node::start(&cfg, &sock, Some(&bed.node));
    bed.wait_route(VIP4, true, Duration::from_secs(15));
    bed.wait_route(VIP6, true, Duration::from_secs(15));
    let sent = Instant::now();
    unsafe_kill(n.pid(), libc::SIGTERM);
    let w = bed.wait_route(VIP4, false, Duration::from_secs(2));
    bed.wait_route(VIP6, false, Duration::from_secs(2));
    let b = n.ctl("show bgp").expect("serving through the grace");
    assert_eq!(b["stopping"], true, "{b}");
    assert_eq!(vip(&b, VIP4)["why"], "stopping", "{b}");
    println!(
        "  SIGTERM: withdrawn after {} ms while the node still serves",
        w.as_millis()
    );
    n.stop_with(0);
    let ran = sent.elapsed();
    assert!(
        ran >= Duration::from_millis(1500),
        "stopped before its withdraw_grace: {ran:?}"
    );
    drop(servers);
}

/// Sends UDP datagrams to `to` from inside namespace `ns` at about `per_ms` a millisecond
/// until `stop`; returns how many it sent. (A thread of the test enters the namespace: the
/// network namespace is per thread.)
fn flood(ns: &str, to: &str, per_ms: u32, stop: &std::sync::atomic::AtomicBool) -> u64 {
    let path = std::ffi::CString::new(format!("/var/run/netns/{ns}")).unwrap();
    // SAFETY: plain libc calls on a path and the descriptor they return; setns changes
    // only this thread's network namespace.
    let entered = unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
        let ok = fd >= 0 && libc::setns(fd, libc::CLONE_NEWNET) == 0;
        if fd >= 0 {
            libc::close(fd);
        }
        ok
    };
    assert!(entered, "could not enter {ns}");
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    sock.connect(to).unwrap();
    // Batches of 64 datagrams a system call (sendmmsg), so the sender is not the bound.
    const BATCH: usize = 64;
    let payload = [0u8; 64];
    let mut iov: Vec<libc::iovec> = (0..BATCH)
        .map(|_| libc::iovec {
            iov_base: payload.as_ptr() as *mut libc::c_void,
            iov_len: payload.len(),
        })
        .collect();
    // SAFETY: a zeroed mmsghdr is a valid empty header; each is pointed at one iovec.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
        .map(|_| unsafe { std::mem::zeroed::<libc::mmsghdr>() })
        .collect();
    for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
    let mut sent = 0u64;
    let start = Instant::now();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let due = start.elapsed().as_millis() as u64 * u64::from(per_ms);
        while sent < due {
            let n = (due - sent).min(BATCH as u64) as u32;
            // SAFETY: msgs holds n valid headers over live buffers; the socket is connected.
            let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n, 0) };
            if r <= 0 {
                break;
            }
            sent += r as u64;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    sent
}

/// The second hostile campaign: any flood to the node's own address above the kernel
/// twins' budget crowded out BGP and BFD, so a flood could get a healthy node withdrawn.
/// Flooded at well past the budget for 5 s, the node keeps its BGP sessions and BFD at
/// 100 ms x 3 up, and its routes never leave the router.
#[test]
fn a_flood_to_the_node_keeps_its_bgp_sessions_and_bfd_up() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let sx = unique("h");
    let s = Scratch::new("bgpflood");
    let bed = Bed::up(&sx, &s.path(""));
    let d = s.path("");
    let servers = Procs(vec![
        in_ns(
            &bed.router,
            "exec python3 -m http.server 8080 --bind 10.0.0.11",
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap(),
        in_ns(
            &bed.router,
            "exec python3 -m http.server 8081 --bind fd00::11",
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap(),
    ]);
    bed.bird(&bed.router, "router", &router_conf(&d));
    let cfg = s.path("node.toml");
    std::fs::write(&cfg, node_config(&s, &sx)).unwrap();
    let sock = s.path("ctl.sock");
    let n = Node::start(&cfg, &sock, Some(&bed.node));
    bed.bird(&bed.node, "node", &node_conf(&d, false));
    bed.wait_route(VIP4, true, Duration::from_secs(20));
    bed.wait_route(VIP6, true, Duration::from_secs(20));
    // The sessions as the router sees them: a flap would change their "since".
    let sessions = || {
        let out = in_ns(
            &bed.router,
            &format!("birdc -s {}/router.ctl show protocols", d.display()),
        )
        .output()
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("n4 ") || l.starts_with("n6 "))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        lines.sort();
        lines
    };
    let bfd_up = || {
        let out = in_ns(
            &bed.router,
            &format!("birdc -s {}/router.ctl show bfd sessions", d.display()),
        )
        .output()
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines().filter(|l| l.contains(" Up ")).count()
    };
    // Let BFD come up on both sessions.
    wait_for(
        Duration::from_secs(15),
        Duration::from_millis(100),
        || match bfd_up() {
            2 => Ok(()),
            n => Err(format!("BFD up on {n} of 2 sessions")),
        },
    );
    let before = sessions();
    assert_eq!(before.len(), 2, "{before:?}");
    assert!(
        before.iter().all(|l| l.contains("Established")),
        "{before:?}"
    );
    let stats0 = n.ctl("show stats").unwrap();
    let limit0 = stats0["drops"]["kernel_limit"].as_u64().unwrap_or(0);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let per_ms = 5 * tandem_dataplane::pipeline::KERNEL_PER_MS;
    let flooder = {
        let (ns, stop) = (bed.router.clone(), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || flood(&ns, "10.0.0.1:9", per_ms, &stop))
    };
    let started = Instant::now();
    let mut missing = 0;
    while started.elapsed() < Duration::from_secs(5) {
        if bed.route(VIP4).is_none() || bed.route(VIP6).is_none() {
            missing += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = flooder.join().unwrap();
    let stats = n.ctl("show stats").unwrap();
    let limited = stats["drops"]["kernel_limit"].as_u64().unwrap_or(0) - limit0;
    let routing_lost = stats["drops"]["kernel_limit_routing"].as_u64().unwrap_or(0);
    println!(
        "  flood: {sent} datagrams in 5 s ({} a ms) to the node's address; {limited} past the \
         budget (kernel_limit), {routing_lost} routing frames lost",
        sent / 5000
    );
    assert!(
        limited > 100_000,
        "the flood never passed the budget: {stats}"
    );
    assert_eq!(missing, 0, "the router lost a VIP during the flood");
    let after = sessions();
    assert!(
        same_sessions(&before, &after),
        "a session flapped: {before:?} then {after:?}"
    );
    assert_eq!(bfd_up(), 2, "BFD went down");
    assert_eq!(routing_lost, 0, "{stats}");
    drop(n);
    drop(servers);
}

/// The same BIRD sessions, up since the same moment: BIRD prints it to the millisecond from
/// a clock that can differ by one between two readings, where a flap (a new session) moves
/// it by seconds.
fn same_sessions(a: &[String], b: &[String]) -> bool {
    let secs = |w: &str| -> Option<f64> {
        let mut f = w.split(':');
        let (h, m, s) = (f.next()?, f.next()?, f.next()?);
        Some(
            h.parse::<f64>().ok()? * 3600.0
                + m.parse::<f64>().ok()? * 60.0
                + s.parse::<f64>().ok()?,
        )
    };
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            let (xs, ys): (Vec<&str>, Vec<&str>) = (x.split(' ').collect(), y.split(' ').collect());
            xs.len() == ys.len()
                && xs.iter().zip(&ys).all(|(p, q)| {
                    p == q
                        || matches!((secs(p), secs(q)), (Some(u), Some(v)) if (u - v).abs() < 0.5)
                })
        })
}
