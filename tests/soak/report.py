"""The soak's checker and report: what every connection's outcome was and which fault it fell
in, the longest pause per fault kind, memory per node over time (and its plot, an SVG),
the nodes' counters of lost records and their accounting, panics and deaths; then the
verdict and the `soak:` line.
"""
import datetime
import re

from faults import KINDS

# A failure is explained only where a fault makes it unavoidable, and only with the
# evidence that it happened so: each case is named, with its reason, in `explain`. A kind
# of fault does not explain a failure by itself.
COOKIE_RESET = (
    "reset by a backend's SYN-cookie check: the burst's SYN flood put the backend in "
    "cookie mode (it keeps no state for a handshake), the connection's first ACK and "
    "request were lost in the flood, and its next segment no longer matched the cookie "
    "(the backend's SyncookiesFailed rose meanwhile)")


def explain(r, near, backend_tcp):
    """The named reason a failure was unavoidable, or None.

    The one case: a SYN flood through the VIP reaches the backends (a load balancer that
    does not proxy handshakes passes it on, as Katran and GLB do), and Linux answers it
    with SYN cookies. A client whose handshake spans the flood gets a cookie SYN-ACK; if
    its ACK and first request are then lost in the flood, its next segment (the answer to
    the SYN-ACK of its retransmitted SYN) carries a sequence number the cookie does not
    match, and the backend resets it. Lost frames TCP recovers from; the reset is the
    backend's."""
    if (r["kind"] in ("http", "download") and "Reset" in str(r.get("error"))
            and any(f["kind"] == "burst" for f in near)
            and backend_tcp.get("SyncookiesFailed", 0) > 0):
        return COOKIE_RESET
    return None


# Memory may grow this much after warm-up (the flow tables' pages are touched as flows
# first land in them, and a burst lands everywhere at once).
RSS_BOUND_PCT = 10.0
WARMUP_S = 30.0
# How long after its end a fault still explains a pause (the router's BFD, a SYN's 1 s
# retransmission, TCP's back-off).
AFTERMATH = 3.0


def overlapping(faults, a, b, after=AFTERMATH):
    return [f for f in faults if "start" in f and f["start"] <= b and a <= f["end"] + after]


def drops_during(drops, a, b):
    """How much each counter rose between the samples around [a, b], summed over every
    series sampled on both sides (a node incarnation, a backend): the nodes' drops by
    reason, their tables' `flows_evicted` and `flows_refused`, their rings' `kernel_drops`;
    the backends' TCP counters. The evidence beside a failed connection."""
    series = {}
    for t, n, inc, d in drops:
        series.setdefault((n, inc), []).append((t, d))
    total = {}
    for s in series.values():
        before = [d for t, d in s if t <= a]
        after = [d for t, d in s if t >= b]
        if not before or not after:
            continue
        for reason, v in after[0].items():
            delta = int(v) - int(before[-1].get(reason, 0))
            if delta > 0:
                total[reason] = total.get(reason, 0) + delta
    return dict(sorted(total.items(), key=lambda kv: -kv[1]))


def outcomes(records, faults, drops=(), backends=()):
    """Outcomes by kind, the failures and the unexplained ones. `drops`: the nodes'
    counters over time (`drops_during`); `backends`: the backends' TCP counters likewise
    (`SyncookiesFailed`, ...)."""
    by_kind = {}
    failed, unexplained = [], []
    for r in records:
        k = by_kind.setdefault(r["kind"], {"tried": 0, "ok": 0, "failed": 0})
        k["tried"] += 1
        if r["ok"]:
            k["ok"] += 1
            continue
        k["failed"] += 1
        near = overlapping(faults, r["start"], r["end"])
        backend_tcp = drops_during(backends, r["start"], r["end"])
        reason = explain(r, near, backend_tcp)
        entry = {"kind": r["kind"], "service": r.get("service"), "error": r.get("error"),
                 "faults": [f"{f['kind']}@{f['target']}" for f in near], "reason": reason,
                 "drops": drops_during(drops, r["start"], r["end"]),
                 "backend_tcp": backend_tcp}
        failed.append(entry)
        if reason is None:
            unexplained.append(entry)
    return by_kind, failed, unexplained


def pauses(records, faults):
    """The longest pause any client saw, per fault kind it fell in ("none": in no fault)."""
    worst = {}
    for r in records:
        for a, b in r.get("gaps", []):
            kinds = {f["kind"] for f in overlapping(faults, a, b)} or {"none"}
            for k in kinds:
                worst[k] = max(worst.get(k, 0.0), b - a)
    return worst


def rss_growth(rss, t0):
    """Per node incarnation that lived past warm-up: memory at the end against memory just
    after warm-up, in percent. Returns (the largest, per incarnation)."""
    series = {}
    for t, n, inc, kib in rss:
        series.setdefault((n, inc), []).append((t, kib))
    growth = {}
    for key, s in series.items():
        born = s[0][0]
        after = [kib for t, kib in s if t - born >= WARMUP_S]
        if len(after) < 10:
            continue
        first = sorted(after[:5])[2]
        last = sorted(after[-5:])[2]
        growth[key] = 100.0 * (last - first) / first
    return (max(growth.values()) if growth else 0.0), growth


LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT[\d:.]+)Z?")
DEAD = re.compile(r"node dead.*?node=(\d+)")


def deaths(logs, faults, stalls):
    """`node dead` lines in the nodes' logs, each explained by a fault (the node was killed
    or stopping) or a machine stall that ended at most dead_after before it (the
    heartbeats were late because nothing ran); any other is unexplained."""
    out = []
    for n, text in logs.items():
        for line in text.splitlines():
            m, t = DEAD.search(line), LOG_TIME.match(line)
            if not m or not t:
                continue
            when = datetime.datetime.fromisoformat(t.group(1)).replace(
                tzinfo=datetime.timezone.utc).timestamp()
            dead = int(m.group(1))
            why = [f for f in overlapping(faults, when - 1, when, after=2.0)
                   if f["kind"] in ("kill", "term") and f["target"] == dead]
            stalled = any(a - 0.1 <= when <= b + 0.5 for a, b in stalls)
            out.append({"by": n, "node": dead, "at": when,
                        "explained": "fault" if why else "stall" if stalled else None})
    return out


def svg(rss, faults, t0, seconds, path):
    """Memory per node over time, one line per incarnation, the faults marked below."""
    w, h, left, bottom = 760, 260, 60, 40
    top = max([kib for _, _, _, kib in rss] or [1]) / 1024 * 1.1
    x = lambda t: left + (t - t0) / max(seconds, 1) * (w - left - 10)
    y = lambda mib: h - bottom - mib / top * (h - bottom - 10)
    colours = {1: "#1f77b4", 2: "#d62728", 3: "#2ca02c"}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           'font-family="sans-serif" font-size="11">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<line x1="{left}" y1="{h - bottom}" x2="{w - 10}" y2="{h - bottom}" stroke="black"/>',
           f'<line x1="{left}" y1="10" x2="{left}" y2="{h - bottom}" stroke="black"/>']
    for i in range(5):
        mib = top * i / 4
        out.append(f'<text x="{left - 5}" y="{y(mib) + 4:.0f}" text-anchor="end">'
                   f'{mib:.0f}</text>')
    out.append(f'<text x="12" y="{(h - bottom) / 2:.0f}" transform="rotate(-90 12 '
               f'{(h - bottom) / 2:.0f})" text-anchor="middle">RSS, MiB</text>')
    for i in range(6):
        s = seconds * i / 5
        out.append(f'<text x="{x(t0 + s):.0f}" y="{h - bottom + 14}" text-anchor="middle">'
                   f'{s / 60:.0f} min</text>' if seconds >= 300 else
                   f'<text x="{x(t0 + s):.0f}" y="{h - bottom + 14}" text-anchor="middle">'
                   f'{s:.0f} s</text>')
    lines = {}
    for t, n, inc, kib in rss:
        lines.setdefault((n, inc), []).append(f"{x(t):.1f},{y(kib / 1024):.1f}")
    for (n, _), pts in sorted(lines.items()):
        out.append(f'<polyline fill="none" stroke="{colours[n]}" stroke-width="1.5" '
                   f'points="{" ".join(pts)}"/>')
    for f in faults:
        if "start" in f:
            out.append(f'<line x1="{x(f["start"]):.1f}" y1="{h - bottom + 18}" '
                       f'x2="{x(f["start"]):.1f}" y2="{h - bottom + 26}" stroke="#555">'
                       f'<title>{f["kind"]} {f["target"]}</title></line>')
    for i, n in enumerate((1, 2, 3)):
        out.append(f'<text x="{left + 10 + 70 * i}" y="{h - 6}" fill="{colours[n]}">'
                   f'node {n}</text>')
    out.append(f'<text x="{left + 230}" y="{h - 6}" fill="#555">ticks: faults</text>')
    out.append("</svg>")
    with open(path, "w") as fh:
        fh.write("\n".join(out) + "\n")


def fault_counts(faults):
    counts = {k: 0 for k in KINDS}
    for f in faults:
        if "start" in f:
            counts[f["kind"]] += 1
    return counts
