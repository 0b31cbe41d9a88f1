"""What the soak watches while it runs: every node's memory (VmRSS, every 2 s), its
counters (`show stats` and `show nodes`, every 5 s and just before a node is killed, so an
incarnation's last figures are kept), how long its control socket takes to answer, and the
bursts of new flows (`tandem gen --mode new` from a namespace of its own).
"""
import json
import subprocess
import threading
import time

from bed import BACKENDS, NAT_VIP, NODES, STARTING_S


def worker_sum(stats, key):
    return sum(int(w.get(key, 0)) for w in (stats or {}).get("workers", []))


class Monitor:
    def __init__(self, bed, log):
        self.bed, self.log = bed, log
        self.rss = []          # (t, node, incarnation, KiB)
        self.last = {}         # (node, incarnation) -> what the last sample read
        self.drops = []        # (t, node, incarnation, {reason: frames}), for failures
        self.backend_tcp = []  # (t, backend, 0, {counter: n}): SYN cookies, for failures
        self.ctl_slowest = 0.0
        self.ctl_unanswered = []
        self.stalls = []       # (from, to): the harness's own 10 ms clock loop late

        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.done = threading.Event()  # the stall watch's end: when the report begins

    def run(self):
        k = 0
        while not self.stop.wait(2.0):
            now = time.time()
            for n in NODES:
                kib = self.bed.rss_kib(n)
                if kib is not None:
                    with self.lock:
                        self.rss.append((now, n, self.bed.incarnation[n], kib))
            k += 1
            if k % 3 == 0:
                for n in NODES:
                    self.sample_node(n)
                for i in BACKENDS:
                    counters = self.bed.backend_tcp(i)
                    with self.lock:
                        self.backend_tcp.append((time.time(), i, 0, counters))

    def watch_stalls(self):
        """A loop that sleeps 10 ms at a time and notes when it woke more than 150 ms late:
        the whole machine stalled (two cores for three nodes, a router, backends and
        clients), and heartbeats sent then may be late too."""
        last = time.monotonic()
        while not self.done.is_set():
            time.sleep(0.01)
            now = time.monotonic()
            if now - last > 0.16:
                wall = time.time()
                with self.lock:
                    self.stalls.append((wall - (now - last), wall))
            last = now

    def sample_node(self, n):
        """Reads node n's counters (if it runs) and keeps them as its incarnation's last."""
        inc = self.bed.incarnation[n]
        if self.bed.pid(n) is None:
            return
        stats, took = self.bed.ctl(n, "show stats", timeout=5)
        nodes, took2 = self.bed.ctl(n, "show nodes", timeout=5)
        if self.bed.pid(n) is None or self.bed.incarnation[n] != inc:
            return  # it went while we asked: its answers may be partial
        with self.lock:
            self.ctl_slowest = max(self.ctl_slowest, took, took2)
            if stats is None or nodes is None:
                # A node still starting has no control socket yet: refused at once, which is
                # no unanswered request.
                starting = time.time() - self.bed.started[n] < STARTING_S
                if not (starting and max(took, took2) < 1.0):
                    self.ctl_unanswered.append((round(time.time(), 1), n))
                return
            peers = nodes.get("nodes", [])
            lost = dict(stats.get("drops") or {})
            for table in ("flows_evicted", "flows_refused"):
                lost[table] = worker_sum(stats, table)
            # Frames the kernel dropped before the node read them (its af_packet rings full).
            lost["kernel_drops"] = sum(int(p.get("kernel_drops", 0))
                                       for p in stats.get("ports", []))
            self.drops.append((time.time(), n, inc, lost))
            self.last[(n, inc)] = {
                "t": time.time(),
                "outbox_overflow": worker_sum(stats, "outbox_overflow"),
                "unaccounted": (stats.get("accounting") or {}).get("unaccounted", 0),
                "sync_unsent": sum(int(p.get("records_unsent", 0)) for p in peers
                                   if p.get("self")),
                "udp_rcvbuf_errors": self.bed.udp_rcvbuf_errors(n),
            }

    def burst(self, f):
        """New TCP flows at the generator's full rate for f['seconds'] from the generator's
        namespace, to the nat VIP through the router (spread over the nodes by ECMP)."""
        rc_mac = self.bed.sh("ip", "-n", self.bed.ns("kr"), "-j", "link", "show", "rg").stdout
        mac = json.loads(rc_mac)[0]["address"]
        argv = ["ip", "netns", "exec", self.bed.ns("kg"), self.bed.tandem, "gen",
                "--tx", "net_af_packet0,iface=g0", "--mode", "new", "--dst-mac", mac,
                "--dst-ip", NAT_VIP, "--dst-port", "80", "--src-ip", "10.100.0.0",
                "--rate", "max", "--duration", f"{int(f['seconds'] * 1000)}ms", "--warmup", "0s",
                "--settle", "100ms", "--json", "--", "--no-huge", "-m", "256", "--no-pci",
                "--file-prefix", f"soakgen{self.bed.suffix}", "--log-level",
                "lib.eal:warning"]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        lines = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
        final = lines[-1] if lines else {}
        f["sent"] = final.get("tx", final.get("sent"))
        f["rate_mpps"] = final.get("tx_mpps")
        if p.returncode != 0:
            raise RuntimeError(f"tandem gen: {p.stderr.strip()[-300:]}")
