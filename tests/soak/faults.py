"""The soak's fault schedule and the faults themselves.

`schedule(seed, seconds)` draws the faults from the seed alone, so a seed names a run: a
fault every 3-9 s (each kind equally likely among those free then), each with its target
and how long it lasts. Faults overlap, with two rules that keep a failure avoidable: at
most one node is out at a time (killed, stopping, drained, or cut from the backends), and
at most one backend is out of service at a time (failing its probes, or removed); bursts
do not overlap each other. Every fault ends by undoing itself (the node started again, the
link up, the rule gone, the backend added back).
"""
import random
import signal
import subprocess
import threading
import time

NODE_KINDS = ("kill", "term", "drain", "link")
BACKEND_KINDS = ("probe", "remove")
KINDS = NODE_KINDS + BACKEND_KINDS + ("reload", "badreload", "slow", "burst")

# How long each kind lasts (the fault's own part; a node's restart adds its start-up).
DURATION = {
    "kill": (2, 5), "term": (2, 5), "drain": (3, 8), "link": (2, 4),
    "probe": (3, 6), "remove": (4, 8), "slow": (3, 6), "burst": (2, 2),
    "reload": (0, 0), "badreload": (0, 0),
}
# Start-up and settling a lane is given before its next fault (a node's start, snapshot,
# BGP session and BFD; a backend's probes passing again).
SETTLE = {"node": 8.0, "backend": 3.0, "burst": 6.0}


def lane(kind):
    if kind in NODE_KINDS:
        return "node"
    if kind in BACKEND_KINDS:
        return "backend"
    return "burst" if kind == "burst" else None


def schedule(seed, seconds, kinds=KINDS, warmup=10.0, cooldown=20.0):
    """The plan; `kinds` narrows it to some kinds (to chase one failure: the same seed with
    other kinds is another schedule)."""
    rng = random.Random(seed)
    free = {"node": 0.0, "backend": 0.0, "burst": 0.0}
    t = warmup
    plan = []
    while True:
        t += rng.uniform(3.0, 9.0)
        if t > seconds - cooldown:
            return plan
        ready = [k for k in kinds if lane(k) is None or free[lane(k)] <= t]
        if not ready:
            continue
        kind = rng.choice(ready)
        lo, hi = DURATION[kind]
        d = round(rng.uniform(lo, hi), 1)
        target = rng.choice((1, 2, 3)) if kind in NODE_KINDS + ("reload", "badreload") \
            else rng.choice((1, 2))
        if lane(kind):
            free[lane(kind)] = t + d + SETTLE[lane(kind)]
        plan.append({"at": round(t, 1), "kind": kind, "target": target, "seconds": d})


class Injector:
    """Runs a plan against a bed: each fault in a thread of its own at its time; a fault
    whose lane is still busy (a node slower to come back than planned) waits for it."""

    def __init__(self, bed, monitor, log):
        self.bed, self.monitor, self.log = bed, monitor, log
        self.lanes = {"node": threading.Lock(), "backend": threading.Lock(),
                      "burst": threading.Lock()}
        self.done = []
        self.errors = []
        self.lock = threading.Lock()
        self.configs = threading.Lock()  # the nodes' config files

    def run(self, plan, t0):
        threads = []
        for f in plan:
            delay = t0 + f["at"] - time.time()
            if delay > 0:
                time.sleep(delay)
            th = threading.Thread(target=self.one, args=(dict(f),), daemon=True)
            th.start()
            threads.append(th)
        for th in threads:
            th.join(120)

    def one(self, f):
        ln = lane(f["kind"])
        guard = self.lanes[ln] if ln else None
        if guard:
            guard.acquire()
        try:
            f["start"] = time.time()
            self.log(f"fault {f['kind']} on {f['target']} for {f['seconds']} s")
            getattr(self, "do_" + f["kind"])(f)
            f["end"] = time.time()
            if ln:
                # The lane stays taken while what was undone settles.
                time.sleep(SETTLE[ln] / 2)
        except Exception as e:  # a fault that could not be made or undone is a finding
            f["end"] = time.time()
            f["error"] = repr(e)
            with self.lock:
                self.errors.append(f"{f['kind']} on {f['target']}: {e!r}")
        finally:
            if guard:
                guard.release()
            with self.lock:
                self.done.append(f)

    # --- node faults ----------------------------------------------------------------------

    def restart(self, n, f):
        # Not while a broken file is in place for a bad reload: the node reads it at start.
        with self.configs:
            self.bed.start_node(n)
            time.sleep(0.5)
        if not self.bed.wait_serving(n, 3, timeout=40):
            raise RuntimeError(f"node {n} did not come back serving in 40 s")
        f["back_after"] = round(time.time() - f["start"], 2)

    def do_kill(self, f):
        n = f["target"]
        self.monitor.sample_node(n)  # its counters, just before they go with it
        self.bed.stop_node(n, signal.SIGKILL)
        time.sleep(f["seconds"])
        self.restart(n, f)

    def do_term(self, f):
        n = f["target"]
        self.monitor.sample_node(n)
        status = self.bed.stop_node(n, signal.SIGTERM)
        f["exit"] = status
        if status != 0:
            raise RuntimeError(f"node {n} ended with {status} on SIGTERM")
        time.sleep(f["seconds"])
        self.restart(n, f)

    def do_drain(self, f):
        n = f["target"]
        self.ctl_ok(n, "node", "drain", "2s")
        time.sleep(f["seconds"])
        self.ctl_ok(n, "node", "enable")

    def do_link(self, f):
        n = f["target"]
        ns = self.bed.ns(f"kn{n}")
        self.bed.sh("ip", "-n", ns, "link", "set", f"n{n}b", "down")
        time.sleep(f["seconds"])
        self.bed.sh("ip", "-n", ns, "link", "set", f"n{n}b", "up")

    # --- backend faults -------------------------------------------------------------------

    def do_probe(self, f):
        """The nodes' probes to backend i dropped by nftables on the backend (packets from
        the nodes' own addresses; the clients' are let through)."""
        ns = self.bed.ns(f"kb{f['target']}")
        rules = ("table inet soak {\n chain input {\n  type filter hook input priority 0;\n"
                 "  ip saddr { 10.1.0.1, 10.1.0.2, 10.1.0.3 } drop\n }\n}\n")
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules, text=True,
                       check=True)
        time.sleep(f["seconds"])
        subprocess.run(["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "soak"],
                       check=True)

    def do_remove(self, f):
        i = f["target"]
        removed = [(n, self.bed.incarnation[n]) for n in list(self.bed.nodes)]
        for n, _ in removed:
            self.ctl_ok(n, "backend", "remove", "web", f"b{i}")
        time.sleep(f["seconds"])
        # Added back where it was removed; a node restarted meanwhile read its config,
        # which has it.
        for n, inc in removed:
            if self.bed.incarnation[n] != inc:
                continue
            doc, _ = self.bed.ctl(n, "backend", "add", "web", f"b{i}", f"10.1.0.1{i}:8080",
                                  "path", "back", timeout=10)
            # A reload meanwhile put it back from the file: what an operator's would do.
            if doc and "already has a backend" in str(doc.get("error", "")):
                continue
            if self.bed.pid(n) is not None and self.bed.incarnation[n] == inc and (
                    doc is None or doc.get("ok") is False):
                raise RuntimeError(f"node {n}: backend add b{i}: {doc}")

    def do_slow(self, f):
        path = self.bed.delay_file(f["target"])
        with open(path, "w") as fh:
            fh.write("300")
        time.sleep(f["seconds"])
        with open(path, "w") as fh:
            fh.write("0")

    # --- the rest -------------------------------------------------------------------------

    def do_reload(self, f):
        """A good reload on every node: the web service's weights change."""
        with self.configs:
            self.bed.weights = [2, 1] if self.bed.weights == [1, 1] else [1, 1]
            for n in (1, 2, 3):
                self.bed.write_config(n)
            for n in list(self.bed.nodes):
                doc = self.ctl_ok(n, "reload")
                f.setdefault("changes", doc.get("changes"))

    def do_badreload(self, f):
        """A broken file reloaded on one node: refused, nothing changed."""
        n = f["target"]
        with self.configs:
            self.bad_reload(n, f)

    def bad_reload(self, n, f):
        good = self.bed.config(n)
        self.bed.write_config(n, good.replace('weight = ', 'weight = -', 1))
        inc = self.bed.incarnation[n]
        try:
            doc, _ = self.bed.ctl_up(n, "reload")
            if self.bed.pid(n) is None or self.bed.incarnation[n] != inc:
                return  # another fault stopped or restarted it meanwhile
            if doc is None or doc.get("ok") is not False:
                raise RuntimeError(f"node {n} took a broken config: {doc}")
            f["refused"] = (doc.get("error") or str(doc))[:120]
        finally:
            self.bed.write_config(n, good)

    def do_burst(self, f):
        self.monitor.burst(f)

    def ctl_ok(self, n, *args):
        """A command that must be taken; one to a node that went meanwhile (another fault
        killed it) is let be."""
        inc = self.bed.incarnation[n]
        if self.bed.pid(n) is None:
            return {}
        doc, _ = self.bed.ctl_up(n, *args, timeout=10)
        if self.bed.pid(n) is None or self.bed.incarnation[n] != inc:
            return doc or {}
        if doc is None or doc.get("ok") is False:
            raise RuntimeError(f"node {n}: {' '.join(args)}: {doc}")
        return doc
