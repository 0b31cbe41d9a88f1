#!/usr/bin/env python3
"""The soak's clients, run in the client namespace for the whole soak: one JSON line per
finished connection (its kind, start and end in wall-clock seconds, whether it ended as it
should, the bytes it checked, its pauses) on stdout.

  download  DOWNLOADS slots, each fetching 2 MB at 200 kB/s over and over, from the nat VIP
            and the dsr VIP in turn; every byte checked against the backend's pattern
  http      a new connection for GET /id five times a second, nat and dsr in turn
  udp       a request to the nat VIP's port 53 five times a second, answered by the backend's
            echo; asked again after 1, 2 and 4 s (as a resolver backs off)
  hold      HOLDS TCP connections to the echo service, open for the whole soak, idle but for
            a line every 5 s, each answered within 10 s
  quic      QUIC slots running quic_client (2 MB at 200 kB/s, moving to a new port at 1 MB)

A pause is a gap of more than 0.3 s between two reads of a download (or an echo of a held
connection taking that long): each is reported with its start and end, so the report can
name the fault it fell in.
"""
import argparse
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import fetch  # noqa: E402  (tests/e2e/fetch.py: the HTTP GET the other tests use)

NAT_VIP = "192.0.2.10"
DSR_VIP = "192.0.2.20"
QUIC_VIP = "192.0.2.30"
PATTERN = bytes(i % 251 for i in range(251 * 400))
BLOB_SIZE = 2_000_000
BLOB_RATE = 200_000
PAUSE = 0.3
out_lock = threading.Lock()


def emit(rec):
    with out_lock:
        sys.stdout.write(json.dumps(rec) + "\n")
        sys.stdout.flush()


def http_get(host, path, timeout):
    return fetch.get(host, path, timeout=timeout)


def download(host, service):
    rec = {"kind": "download", "service": service, "start": time.time(), "ok": False,
           "bytes": 0, "gaps": []}
    try:
        s, headers, chunk = http_get(host, f"/blob?size={BLOB_SIZE}&rate={BLOB_RATE}", 30)
        rec["backend"] = headers.get("X-Backend")
        want = int(headers.get("Content-Length", "-1"))
        got, last = 0, time.time()
        while True:
            if chunk:
                now = time.time()
                if now - last > PAUSE:
                    rec["gaps"].append([round(last, 3), round(now, 3)])
                last = now
                off = got % 251
                if chunk != PATTERN[off:off + len(chunk)]:
                    raise ValueError(f"wrong bytes at offset {got}")
                got += len(chunk)
                rec["bytes"] = got
            if got >= want:
                break
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed at {got} of {want} bytes")
        s.close()
        rec["ok"] = got == want
    except Exception as e:  # the outcome is the record: every error is reported
        rec["error"] = repr(e)
    rec["end"] = time.time()
    emit(rec)


def downloads(stop, slot):
    i = slot
    while not stop.is_set():
        download(*((NAT_VIP, "nat") if i % 2 == 0 else (DSR_VIP, "dsr")))
        i += 1


def short_requests(stop, per_s):
    i = 0
    pending = []
    while not stop.wait(1.0 / per_s):
        host, service = (NAT_VIP, "nat") if i % 2 == 0 else (DSR_VIP, "dsr")
        i += 1
        t = threading.Thread(target=one_request, args=(host, service), daemon=True)
        t.start()
        pending = [p for p in pending if p.is_alive()] + [t]
    for p in pending:
        p.join()


def one_request(host, service):
    rec = {"kind": "http", "service": service, "start": time.time(), "ok": False}
    try:
        s, headers, body = http_get(host, "/id", 15)
        while True:
            d = s.recv(65536)
            if not d:
                break
            body += d
        s.close()
        rec["backend"] = headers.get("X-Backend")
        rec["ok"] = body.strip() == (headers.get("X-Backend") or "").encode()
        if not rec["ok"]:
            rec["error"] = f"answer {body[:40]!r}"
    except Exception as e:
        rec["error"] = repr(e)
    rec["end"] = time.time()
    emit(rec)


def udp_requests(stop, per_s):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    seq = 0
    while not stop.wait(1.0 / per_s):
        seq += 1
        rec = {"kind": "udp", "service": "nat", "start": time.time(), "ok": False}
        q = f"q{seq}".encode()
        for tries, wait in enumerate((1.0, 2.0, 4.0, 4.0), 1):
            sock.sendto(q, (NAT_VIP, 53))
            deadline = time.time() + wait
            while not rec["ok"] and time.time() < deadline:
                sock.settimeout(max(0.01, deadline - time.time()))
                try:
                    d, _ = sock.recvfrom(2048)
                except socket.timeout:
                    break
                rec["ok"] = d.split(b" ", 1)[-1] == q
            if rec["ok"]:
                rec["tries"] = tries
                break
        if not rec["ok"]:
            rec["error"] = "no answer to four tries in 11 s"
        rec["end"] = time.time()
        emit(rec)


def hold(stop, n):
    rec = {"kind": "hold", "service": "nat", "start": time.time(), "ok": False, "gaps": [],
           "echoes": 0}
    try:
        s = socket.create_connection((NAT_VIP, 7000), timeout=10)
        s.settimeout(10)
        lines = s.makefile("rb")
        k = 0
        while not stop.wait(5.0 + random.random()):
            k += 1
            t = time.time()
            s.sendall(f"hold {n} {k}\n".encode())
            answer = lines.readline()
            if not answer.endswith(f" hold {n} {k}\n".encode()):
                raise ConnectionError(f"echo {k}: {answer[:60]!r}")
            now = time.time()
            if now - t > PAUSE:
                rec["gaps"].append([round(t, 3), round(now, 3)])
            rec["echoes"] = k
        s.close()
        rec["ok"] = True
    except Exception as e:
        rec["error"] = repr(e)
    rec["end"] = time.time()
    emit(rec)


def quic(stop, client, slot):
    while not stop.is_set():
        rec = {"kind": "quic", "service": "quic", "start": time.time(), "ok": False}
        try:
            p = subprocess.run(
                [client, "--connect", f"{QUIC_VIP}:443", "--bind", "10.9.0.100:0",
                 "--bytes", str(BLOB_SIZE), "--rate", str(BLOB_RATE),
                 "--rebind-at", f"{BLOB_SIZE // 2}=10.9.0.100:0", "--timeout-s", "60"],
                capture_output=True, text=True, timeout=90)
            out = json.loads(p.stdout.strip().splitlines()[-1])
            rec["ok"] = bool(out.get("ok"))
            rec["bytes"] = out.get("bytes", 0) if rec["ok"] else 0
            rec["backend"] = out.get("server")
            if not rec["ok"]:
                rec["error"] = out.get("error", "failed")
        except Exception as e:
            rec["error"] = repr(e)
        rec["end"] = time.time()
        emit(rec)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--downloads", type=int, default=4)
    p.add_argument("--holds", type=int, default=3)
    p.add_argument("--quic", type=int, default=2)
    p.add_argument("--quic-client", required=True)
    p.add_argument("--rate", type=float, default=5.0)
    a = p.parse_args()
    stop = threading.Event()
    threads = [threading.Thread(target=downloads, args=(stop, i)) for i in range(a.downloads)]
    threads += [threading.Thread(target=short_requests, args=(stop, a.rate)),
                threading.Thread(target=udp_requests, args=(stop, a.rate))]
    threads += [threading.Thread(target=hold, args=(stop, i)) for i in range(a.holds)]
    threads += [threading.Thread(target=quic, args=(stop, a.quic_client, i))
                for i in range(a.quic)]
    for t in threads:
        t.start()
    time.sleep(a.seconds)
    stop.set()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
