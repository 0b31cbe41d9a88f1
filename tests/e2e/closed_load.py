#!/usr/bin/env python3
"""Closed-loop HTTP load: CONCURRENCY clients, each sending one request after another to URL
(a TCP connection each, as HTTP/1.0 does) for DURATION seconds, each request with a DEADLINE
in seconds. Prints one JSON document: a list of [start_s, time_ms, answer] per request,
answer "ERR" for a failure or a request past its deadline.
"""
import json
import socket
import sys
import threading
import time
import urllib.request


def main():
    url, conc, duration, deadline = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    results = []
    lock = threading.Lock()
    t0 = time.monotonic()

    def client():
        while True:
            begin = time.monotonic()
            if begin - t0 >= duration:
                return
            try:
                with urllib.request.urlopen(url, timeout=deadline) as r:
                    answer = r.read().decode().strip()
            except (OSError, socket.timeout, ValueError):
                answer = "ERR"
            took = time.monotonic() - begin
            if took > deadline:
                answer = "ERR"
            with lock:
                results.append([round(begin - t0, 3), round(took * 1000.0, 2), answer])
            if answer == "ERR" and took < 0.05:
                time.sleep(0.05)  # a refused connection: do not spin

    threads = [threading.Thread(target=client, daemon=True) for _ in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + deadline + 5)
    results.sort()
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
