#!/usr/bin/env python3
"""Clients for the cluster failover test, one JSON line each on stdout.

fetch.py download HOST PATH LOCAL_PORT
    one HTTP/1.0 GET from a fixed local port (so the test can name the flow), checks the
    body against the backend's pattern (byte i is i % 251), and reports its length, whether
    it matched, the backend, and the longest gap between two reads (the failover gap as the
    client saw it).
fetch.py probe HOST PATH SECONDS
    a new connection every 100 ms for SECONDS; reports how many succeeded and failed, and
    the slowest.
"""
import json
import socket
import sys
import time

TIMEOUT = 20.0


def get(host, path, local_port=0, timeout=TIMEOUT):
    """Sends an HTTP/1.0 GET; returns the socket, the headers and the body's first bytes."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(timeout)
    s.bind(("0.0.0.0", local_port))
    s.connect((host, 80))
    s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(65536)
        if not d:
            raise ConnectionError("closed before the headers ended")
        head += d
    head, body = head.split(b"\r\n\r\n", 1)
    headers = dict(
        line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line
    )
    return s, headers, body


def download(host, path, local_port):
    start = time.monotonic()
    out = {"local_port": local_port, "ok": False}
    try:
        s, headers, first = get(host, path, local_port)
        want = int(headers.get("Content-Length", "-1"))
        out["backend"] = headers.get("X-Backend")
        got = 0
        good = True
        last = time.monotonic()
        gap = 0.0
        chunk = first
        while True:
            if chunk:
                n = len(chunk)
                expect = bytes((got + i) % 251 for i in range(n))
                if chunk != expect:
                    good = False
                got += n
                now = time.monotonic()
                gap = max(gap, now - last)
                last = now
            if got >= want:
                break
            chunk = s.recv(65536)
            if not chunk:
                break
        s.close()
        out.update(bytes=got, expected=want, pattern_ok=good, max_gap_ms=round(gap * 1000, 1))
        out["ok"] = good and got == want
    except Exception as e:  # reported, not raised: the test reads every line
        out["error"] = repr(e)
    out["seconds"] = round(time.monotonic() - start, 2)
    print(json.dumps(out), flush=True)


def probe(host, path, seconds):
    end = time.monotonic() + seconds
    ok = failed = 0
    slowest = 0.0
    errors = []
    while time.monotonic() < end:
        t = time.monotonic()
        try:
            s, headers, body = get(host, path)
            while True:
                d = s.recv(65536)
                if not d:
                    break
            s.close()
            ok += 1
        except Exception as e:
            failed += 1
            errors.append(repr(e))
        slowest = max(slowest, time.monotonic() - t)
        time.sleep(0.1)
    print(json.dumps({"ok": ok, "failed": failed, "slowest_ms": round(slowest * 1000, 1),
                      "errors": errors[:5]}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "download":
        download(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1] == "probe":
        probe(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        sys.exit("usage: fetch.py download HOST PATH LOCAL_PORT | probe HOST PATH SECONDS")
