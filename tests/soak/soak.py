#!/usr/bin/env python3
"""The soak (run it as scripts/soak): the three-node bed under a steady mix of clients, with
faults injected from a seed all the while, then a checker. See docs/reliability.md "Soak".
"""
import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import report  # noqa: E402
from bed import NAT_VIP, NODES, QUIC_VIP, Bed  # noqa: E402
from faults import KINDS, Injector, schedule  # noqa: E402
from monitor import Monitor  # noqa: E402


def log(msg, started=[time.time()]):
    print(f"[{time.time() - started[0]:7.1f}s] {msg}", flush=True)


def wait_ready(bed):
    for n in NODES:
        bed.start_node(n)
    for n in NODES:
        if not bed.wait_serving(n, 3, timeout=60):
            raise RuntimeError(f"node {n} never saw three serving nodes")
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if bed.router_hops(NAT_VIP) == 3 and bed.router_hops(QUIC_VIP) == 3:
            return
        time.sleep(0.2)
    raise RuntimeError("the router never learned the VIPs from all three nodes")


def finish_nodes(bed, injector):
    """After the last fault: every node runs again (a fault that failed to undo itself is
    already an error)."""
    for n in NODES:
        if bed.pid(n) is None:
            injector.errors.append(f"node {n} was not running at the end")
            bed.start_node(n)
            bed.wait_serving(n, 3, timeout=40)


def node_logs(bed):
    out = {}
    for n in NODES:
        try:
            out[n] = open(bed.log_path(n), errors="replace").read()
        except OSError:
            out[n] = ""
    return out


def lost_and_balance(bed, monitor):
    """Counters of lost records summed over every incarnation's last sample, and each
    running node's accounting once the load has stopped."""
    lost = {"outbox_overflow": 0, "sync_unsent": 0, "udp_rcvbuf_errors": 0}
    for (n, inc), s in monitor.last.items():
        lost["outbox_overflow"] += s["outbox_overflow"]
        lost["sync_unsent"] += s["sync_unsent"]
    # The kernel's count is per namespace, across incarnations: its last reading.
    for n in NODES:
        lost["udp_rcvbuf_errors"] += bed.udp_rcvbuf_errors(n)
    unbalanced = {}
    for n in NODES:
        stats, _ = bed.ctl(n, "show stats")
        u = ((stats or {}).get("accounting") or {}).get("unaccounted")
        if u != 0:
            unbalanced[n] = u
    return lost, unbalanced


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--minutes", type=float, required=True)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", default=None, help="where the report goes")
    p.add_argument("--kinds", default=",".join(KINDS),
                   help="only these fault kinds, comma-separated (default: all)")
    p.add_argument("--tandem", required=True)
    p.add_argument("--examples", required=True)
    a = p.parse_args()
    seed = a.seed if a.seed is not None else random.randrange(1 << 31)
    seconds = a.minutes * 60
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = a.out or f"/tmp/tandem-soak-{seed}-{os.getpid()}"
    os.makedirs(out, exist_ok=True)
    suffix = f"s{os.getpid() % 100000}"
    kinds = tuple(k for k in a.kinds.split(",") if k)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        p.error(f"--kinds: {','.join(unknown) or 'none given'}: not a fault kind "
                f"(kinds: {','.join(KINDS)})")
    plan = schedule(seed, seconds, kinds)
    log(f"soak: {a.minutes} min, seed {seed}, {len(plan)} faults planned; report in {out}")
    bed = Bed(root, a.tandem, os.path.join(a.examples, "quic_server"), out, suffix)
    monitor = Monitor(bed, log)
    injector = Injector(bed, monitor, log)
    ok = False
    try:
        bed.up()
        wait_ready(bed)
        log("three nodes serving, the router routes the VIPs to all three")
        threading.Thread(target=monitor.run, daemon=True).start()
        threading.Thread(target=monitor.watch_stalls, daemon=True).start()
        clients_out = open(os.path.join(out, "clients.jsonl"), "w")
        clients = bed.spawn("kc", [
            "python3", os.path.join(root, "tests/soak/clients.py"), "--seconds", str(seconds),
            "--quic-client", os.path.join(a.examples, "quic_client")], out=clients_out,
            err=open(os.path.join(out, "clients.err"), "w"))
        t0 = time.time()
        faults = threading.Thread(target=injector.run, args=(plan, t0), daemon=True)
        faults.start()
        clients.wait(timeout=seconds + 180)
        faults.join(timeout=120)
        finish_nodes(bed, injector)
        monitor.stop.set()
        time.sleep(3)  # quiet: the counters settle
        for n in NODES:
            monitor.sample_node(n)
        ok = summarize(bed, monitor, injector, out, t0, time.time() - t0, seed, a.minutes)
    finally:
        bed.down()
    sys.exit(0 if ok else 1)


def summarize(bed, monitor, injector, out, t0, seconds, seed, minutes):
    monitor.done.set()
    records = [json.loads(l) for l in open(os.path.join(out, "clients.jsonl")) if l.strip()]
    faults = sorted(injector.done, key=lambda f: f.get("start", 0))
    by_kind, failed, unexplained = report.outcomes(records, faults, monitor.drops,
                                                    monitor.backend_tcp)
    worst = report.pauses(records, faults)
    growth, per_inc = report.rss_growth(monitor.rss, t0)
    logs = node_logs(bed)
    panics = [l for text in logs.values() for l in text.splitlines() if "panicked" in l]
    deaths = report.deaths(logs, faults, monitor.stalls)
    lost, unbalanced = lost_and_balance(bed, monitor)
    counts = report.fault_counts(faults)
    report.svg(monitor.rss, faults, t0, seconds, os.path.join(out, "memory.svg"))
    verified = sum(r.get("bytes", 0) for r in records if r["ok"] and r["kind"] in
                   ("download", "quic"))
    lines = [f"soak report: seed {seed}, {minutes} min, {len(faults)} faults"]
    lines.append("faults by kind: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for f in faults:
        extra = {k: f[k] for k in ("back_after", "exit", "refused", "sent", "error",
                                   "changes") if k in f}
        lines.append(f"  {f['start'] - t0:7.1f}s {f['kind']:9} {f['target']} "
                     f"{f['seconds']:4} s {json.dumps(extra) if extra else ''}")
    lines.append("connections (tried / completed / failed):")
    for k, v in sorted(by_kind.items()):
        lines.append(f"  {k:9} {v['tried']:6} {v['ok']:6} {v['failed']:4}")
    for e in failed:
        lines.append(f"  failed: {e['kind']} ({e['service']}): {e['error']}; faults then: "
                     f"{', '.join(e['faults']) or 'none'}; "
                     f"{'explained: ' + e['reason'] if e['reason'] else 'UNEXPLAINED'}")
        if e["drops"]:
            lines.append("    nodes' drops and table losses meanwhile: " + ", ".join(
                f"{k} {v}" for k, v in list(e["drops"].items())[:8]))
        if e["backend_tcp"]:
            lines.append("    backends' TCP counters meanwhile: " + ", ".join(
                f"{k} {v}" for k, v in e["backend_tcp"].items()))
    lines.append("longest pause a client saw, by the fault it fell in: " + ", ".join(
        f"{k} {v * 1000:.0f} ms" for k, v in sorted(worst.items())))
    for n in NODES:
        s = [kib for t, m, _, kib in monitor.rss if m == n]
        if s:
            lines.append(f"memory node {n}: {min(s) / 1024:.1f}-{max(s) / 1024:.1f} MiB over "
                         f"{bed.incarnation[n]} incarnations")
    lines.append("memory growth after warm-up per incarnation: " + ", ".join(
        f"n{n}#{i} {g:+.1f}%" for (n, i), g in sorted(per_inc.items())))
    lines.append(f"lost records: {lost}; accounting unbalanced: {unbalanced or 'none'}")
    lines.append(f"control socket: slowest answer {monitor.ctl_slowest * 1000:.0f} ms, "
                 f"unanswered {len(monitor.ctl_unanswered)}" + "".join(
                     f"{', ' if i else ': '}node {n} at {t - t0:.1f}s"
                     for i, (t, n) in enumerate(monitor.ctl_unanswered)))
    lines.append(f"machine stalls over 150 ms (the harness's own clock loop late): "
                 f"{len(monitor.stalls)}, longest "
                 f"{max([b - a for a, b in monitor.stalls] or [0]) * 1000:.0f} ms")
    lines.append(f"deaths declared: {len(deaths)}: "
                 f"{sum(1 for d in deaths if d['explained'] == 'fault')} of a node killed or "
                 f"stopping, {sum(1 for d in deaths if d['explained'] == 'stall')} in a "
                 f"machine stall, {sum(1 for d in deaths if not d['explained'])} unexplained")
    for d in deaths:
        if d["explained"] != "fault":
            lines.append(f"  node {d['by']} saw node {d['node']} dead at {d['at'] - t0:.1f}s"
                         f" ({d['explained'] or 'UNEXPLAINED'})")
    lines.append(f"panics: {len(panics)}; fault errors: {injector.errors or 'none'}")
    unexplained_n = (len(unexplained) + sum(1 for d in deaths if not d["explained"])
                     + len(panics) + len(injector.errors) + len(unbalanced)
                     + len(monitor.ctl_unanswered))
    lost_n = sum(lost.values())
    soak_line = (f"soak: faults={len(faults)} connections={len(records)} failed={len(failed)} "
                 f"unexplained={unexplained_n} bytes_verified={verified} lost={lost_n} "
                 f"rss_growth_pct={growth:.1f} seed={seed} minutes={minutes:g}")
    lines.append(soak_line)
    text = "\n".join(lines) + "\n"
    open(os.path.join(out, "report.txt"), "w").write(text)
    print(text, end="")
    return unexplained_n == 0 and lost_n == 0 and growth <= report.RSS_BOUND_PCT


if __name__ == "__main__":
    main()
