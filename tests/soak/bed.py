"""The soak's bed: scripts/cluster-topology's router (BIRD 2, BGP with BFD, ECMP), three
tandem nodes with their own BIRDs, two backends and a client namespace; the backends' servers
(tests/e2e/backend.py for HTTP, UDP and TCP echo; quic-lb's quic_server), the nodes'
configs, starting and stopping nodes by pid, and their control sockets.

Every process started here is ended by its pid; the namespaces, BIRDs and bridges go with
`scripts/cluster-topology down`.
"""
import json
import os
import signal
import subprocess
import time

NAT_VIP = "192.0.2.10"
DSR_VIP = "192.0.2.20"
QUIC_VIP = "192.0.2.30"
NODES = (1, 2, 3)
BACKENDS = (1, 2)
# How long after its start a node may refuse control requests (its socket not bound yet).
STARTING_S = 10.0


def backend_lines(name, i, port=None, server_id=None):
    s = f'[[service.backend]]\nname = "{name}{i}"\naddress = "10.1.0.1{i}"\n'
    if port:
        s += f"port = {port}\n"
    if server_id:
        s += f'server_id = "{server_id}"\n'
    return s + 'paths = [{ port = "back" }]\n'


def services(weights):
    """The soak's services; `weights` of the web service's backends (a good reload changes
    them)."""
    web = "".join(
        backend_lines("b", i, 8080).replace("paths", f"weight = {weights[i - 1]}\npaths")
        for i in BACKENDS)
    dsr = "".join(backend_lines("d", i) for i in BACKENDS)
    dns = "".join(backend_lines("u", i, 5353) for i in BACKENDS)
    echo = "".join(backend_lines("e", i, 7000) for i in BACKENDS)
    quic = "".join(backend_lines("q", i, 4433, f"0a0{i}") for i in BACKENDS)
    return (
        f'[[service]]\nname = "web"\nvip = "{NAT_VIP}"\nport = 80\nprotocol = "tcp"\n'
        f'mode = "nat"\n{web}'
        f'[[service]]\nname = "webdsr"\nvip = "{DSR_VIP}"\nport = 80\nprotocol = "tcp"\n'
        f'mode = "dsr"\n{dsr}'
        f'[[service]]\nname = "dns"\nvip = "{NAT_VIP}"\nport = 53\nprotocol = "udp"\n'
        f'mode = "nat"\n{dns}'
        f'[[service]]\nname = "echo"\nvip = "{NAT_VIP}"\nport = 7000\nprotocol = "tcp"\n'
        f'mode = "nat"\n{echo}'
        f'[[service]]\nname = "h3"\nvip = "{QUIC_VIP}"\nport = 443\nprotocol = "quic"\n'
        f'mode = "nat"\n{quic}'
    )


class Bed:
    def __init__(self, root, tandem, quic_server, work, suffix):
        self.root, self.tandem, self.quic_server = root, tandem, quic_server
        self.work, self.suffix = work, suffix
        self.dir = f"/tmp/tandem-cluster-topology-{suffix}"
        self.nodes = {}        # id -> Popen of the running incarnation
        self.incarnation = {n: 0 for n in NODES}
        self.started = {n: 0.0 for n in NODES}  # when each node's incarnation was started
        self.others = []       # backends' servers, the clients, generators
        self.weights = [1, 1]

    def ns(self, base):
        return f"{base}-{self.suffix}"

    def spawn(self, ns, argv, out=subprocess.DEVNULL, err=subprocess.DEVNULL):
        p = subprocess.Popen(["ip", "netns", "exec", self.ns(ns)] + argv, stdout=out,
                             stderr=err, stdin=subprocess.DEVNULL)
        self.others.append(p)
        return p

    def sh(self, *argv, check=True):
        return subprocess.run(list(argv), check=check, capture_output=True, text=True)

    # --- the bed --------------------------------------------------------------------------

    def up(self):
        self.sh(os.path.join(self.root, "scripts/cluster-topology"), "up", self.suffix)
        self.generator_link()
        backend = os.path.join(self.root, "tests/e2e/backend.py")
        for i in BACKENDS:
            delay = self.delay_file(i)
            open(delay, "w").write("0")
            p = self.spawn(f"kb{i}", ["python3", backend, "--name", f"b{i}", "--port", "8080",
                                      "--port", "80", "--udp", "5353", "--echo", "5353", "--echo", "7000",
                                      "--delay-file", delay], out=subprocess.PIPE)
            assert p.stdout.readline().strip() == b"ready", f"backend b{i} did not start"
            q = self.spawn(f"kb{i}", [self.quic_server, "--listen", f"10.1.0.1{i}:4433",
                                      "--name", f"q{i}", "--server-id", f"0a0{i}"],
                           out=subprocess.PIPE)
            assert q.stdout.readline(), f"quic server q{i} did not start"
        secret = os.path.join(self.work, "cluster.key")
        with open(os.open(secret, os.O_CREAT | os.O_WRONLY, 0o600), "w") as f:
            f.write(f"soak cluster secret {time.time_ns()}\n")
        self.secret = secret
        for n in NODES:
            self.write_config(n)

    def generator_link(self):
        """The burst generator's own namespace and link to the router (g0 10.8.0.2, rg
        10.8.0.1): its flood shares the router and the nodes with the clients, not the
        clients' own link."""
        g, r = self.ns("kg"), self.ns("kr")
        self.sh("ip", "netns", "add", g)
        self.sh("ip", "link", "add", "g0", "netns", g, "type", "veth", "peer", "name", "rg",
                "netns", r)
        self.sh("ip", "-n", g, "link", "set", "lo", "up")
        self.sh("ip", "-n", g, "addr", "add", "10.8.0.2/24", "dev", "g0")
        self.sh("ip", "-n", g, "link", "set", "g0", "up")
        self.sh("ip", "-n", r, "addr", "add", "10.8.0.1/24", "dev", "rg")
        self.sh("ip", "-n", r, "link", "set", "rg", "up")
        for ns, dev in ((g, "g0"), (r, "rg")):
            self.sh("ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "sg", "off",
                    "tso", "off", "gso", "off", "gro", "off", check=False)

    def down(self):
        for p in list(self.nodes.values()) + self.others:
            if p.poll() is None:
                p.kill()
            p.wait()
        self.nodes.clear()
        self.sh("ip", "netns", "del", self.ns("kg"), check=False)
        self.sh(os.path.join(self.root, "scripts/cluster-topology"), "down", self.suffix,
                check=False)

    def delay_file(self, i):
        return os.path.join(self.work, f"b{i}.delay")

    # --- nodes ----------------------------------------------------------------------------

    def config_path(self, n):
        return os.path.join(self.work, f"node{n}.toml")

    def socket(self, n):
        return os.path.join(self.work, f"node{n}.sock")

    def log_path(self, n):
        return os.path.join(self.work, f"node{n}.log")

    def config(self, n, weights=None):
        weights = weights or self.weights
        peers = "".join(
            f'[[cluster.node]]\nid = {p}\naddress = "10.0.0.{p}"\n'
            f'mac = "02:00:00:00:01:0{p}"\nsync = "10.255.0.{p}:7001"\n' for p in NODES)
        return f"""[node]
id = {n}
[eal]
args = ["--no-huge", "-m", "256", "--no-pci", "--file-prefix", "soak{self.suffix}-{n}", "--log-level", "lib.eal:warning"]
[[port]]
name = "front"
devargs = "net_af_packet0,iface=n{n}f"
ipv4 = "10.0.0.{n}/24"
gateway = "10.0.0.254"
mac = "02:00:00:00:01:0{n}"
mtu = 1600
kernel = "tdm-front"
[[port]]
name = "back"
devargs = "net_af_packet1,iface=n{n}b"
ipv4 = "10.1.0.{n}/24"
mac = "02:00:00:00:02:0{n}"
mtu = 1600
kernel = "tdm-back"
[bgp]
bird_socket = "{self.dir}/n{n}.ctl"
routes4 = "{self.dir}/n{n}-vips4.conf"
routes6 = "{self.dir}/n{n}-vips6.conf"
withdraw_grace = "500ms"
[health]
probe = "tcp"
interval = "200ms"
timeout = "400ms"
down_after = 3
up_after = 2
[mempool]
mbufs = 8191
[workers]
cores = [1]
idle_sleep = "100us"
[control]
socket = "{self.socket(n)}"
{services(weights)}[cluster]
secret_file = "{self.secret}"
heartbeat = "100ms"
dead_after = "300ms"
drain_deadline = "3s"
{peers}"""

    def write_config(self, n, text=None):
        with open(self.config_path(n), "w") as f:
            f.write(text if text is not None else self.config(n))

    def start_node(self, n):
        self.incarnation[n] += 1
        self.started[n] = time.time()
        log = open(self.log_path(n), "a")
        log.write(f"=== soak: incarnation {self.incarnation[n]} at {time.time():.3f}\n")
        log.flush()
        p = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(f"kn{n}"), self.tandem, "run", "--config",
             self.config_path(n)], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        self.nodes[n] = p
        return p

    def stop_node(self, n, sig, timeout=30):
        """Signals node n; returns its exit status once it has ended (killed after
        `timeout`)."""
        p = self.nodes.pop(n)
        p.send_signal(sig)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            return "hung"

    def pid(self, n):
        p = self.nodes.get(n)
        return p.pid if p and p.poll() is None else None

    def ctl(self, n, *args, timeout=5):
        """The node's answer (a dict), or None with no answer; and the seconds it took."""
        t = time.monotonic()
        try:
            p = subprocess.run([self.tandem, "ctl", "--socket", self.socket(n), "--json"]
                               + list(args), capture_output=True, text=True, timeout=timeout)
            doc = json.loads(p.stdout) if p.stdout.strip() else None
        except (subprocess.TimeoutExpired, ValueError):
            doc = None
        return doc, time.monotonic() - t

    def ctl_up(self, n, *args, timeout=5):
        """`ctl`, asked again while the node is still starting and refuses (a fault that
        comes just after another restarted the node finds its socket not bound yet)."""
        while True:
            doc, took = self.ctl(n, *args, timeout=timeout)
            if doc is not None or time.time() - self.started[n] >= STARTING_S:
                return doc, took
            time.sleep(0.2)

    def serving(self, n):
        doc, _ = self.ctl(n, "show nodes")
        if not doc or "nodes" not in doc:
            return 0
        return sum(1 for x in doc["nodes"] if x.get("serving"))

    def wait_serving(self, n, want, timeout=30):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.pid(n) is None:
                return False
            if self.serving(n) >= want:
                return True
            time.sleep(0.2)
        return False

    def router_hops(self, dest):
        out = self.sh("ip", "-n", self.ns("kr"), "route", "show", dest, check=False).stdout
        return out.count("via")

    def rss_kib(self, n):
        pid = self.pid(n)
        if pid is None:
            return None
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    def backend_tcp(self, i):
        """Backend i's kernel TCP counters that tell a SYN flood's work: cookies sent, and
        segments a cookie did not match (each answered with a reset)."""
        out = self.sh("ip", "netns", "exec", self.ns(f"kb{i}"), "cat", "/proc/net/netstat",
                      check=False).stdout
        rows = [l.split() for l in out.splitlines() if l.startswith("TcpExt:")]
        if len(rows) < 2:
            return {}
        ext = dict(zip(rows[0][1:], rows[1][1:]))
        return {k: int(ext.get(k, 0)) for k in ("SyncookiesSent", "SyncookiesFailed")}

    def udp_rcvbuf_errors(self, n):
        """The kernel's count of UDP datagrams dropped on a full receive buffer in node n's
        namespace: sync datagrams lost before tandem read them."""
        out = self.sh("ip", "netns", "exec", self.ns(f"kn{n}"), "cat", "/proc/net/snmp",
                      check=False).stdout
        rows = [l.split() for l in out.splitlines() if l.startswith("Udp:")]
        if len(rows) < 2:
            return 0
        return int(dict(zip(rows[0][1:], rows[1][1:])).get("RcvbufErrors", 0))

