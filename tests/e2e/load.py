#!/usr/bin/env python3
"""Open-loop HTTP load for tandem's QoS tests: RATE new connections per second for DURATION
seconds to URL (each request its own TCP connection, as HTTP/1.0 does), each in its own
thread with a client-side TIMEOUT. Prints one JSON document: a list of
[start_s, time_ms, backend] per request, backend "ERR" for a failure or timeout.
Open loop (requests start on schedule whatever the answers), so a slow backend shows as
slow requests, not as fewer requests.
"""
import json
import sys
import threading
import time
import urllib.request


def main():
    url, rate, duration, timeout = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    results = []
    lock = threading.Lock()
    t0 = time.monotonic()

    def one(start):
        begin = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                backend = r.read().decode().strip()
        except Exception:
            backend = "ERR"
        took = (time.monotonic() - begin) * 1000.0
        with lock:
            results.append([round(start, 3), round(took, 2), backend])

    threads = []
    n = int(rate * duration)
    for i in range(n):
        at = i / rate
        delay = t0 + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        th = threading.Thread(target=one, args=(time.monotonic() - t0,), daemon=True)
        th.start()
        threads.append(th)
    for th in threads:
        th.join(timeout + 5)
    results.sort()
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
