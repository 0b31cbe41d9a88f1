#!/usr/bin/env python3
"""An HTTP backend whose capacity is hidden from the load balancer, for the learned-limit
test: it serves K requests at once at full speed and slows as more are in flight, as a
CPU-bound server does past its cores (more work shared by the same cores, plus the cost of
switching between them).

GET /work -> this backend's name, after a service time set on arrival from the requests in
             flight then, n (this one counted):
                 BASE_MS                                        when n <= K
                 BASE_MS * (n / K) * (1 + THRASH * (n - K))     past K
             at most MAX_MS (the server's own request timeout), and all of it even when the
             client has gone: work already begun is not taken back.
K is read from --k-file on every request, so the test can change it at run time.
GET /stats -> JSON {"in_flight", "max_in_flight", "served"} (read over loopback).
"""
import argparse
import http.server
import json
import socket
import socketserver
import threading
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        srv = self.server
        if self.path.startswith("/stats"):
            with srv.lock:
                body = json.dumps({"in_flight": srv.in_flight,
                                   "max_in_flight": srv.max_in_flight,
                                   "served": srv.served}).encode()
            self.reply(body)
            return
        with srv.lock:
            srv.in_flight += 1
            n = srv.in_flight
            srv.max_in_flight = max(srv.max_in_flight, n)
        k = srv.capacity()
        ms = srv.base_ms
        if n > k:
            ms = min(ms * (n / k) * (1.0 + srv.thrash * (n - k)), srv.max_ms)
        time.sleep(ms / 1000.0)
        with srv.lock:
            srv.in_flight -= 1
            srv.served += 1
        self.reply((srv.name + "\n").encode())

    def reply(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    address_family = socket.AF_INET6
    request_queue_size = 256

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def capacity(self):
        try:
            with open(self.k_file) as f:
                return max(1, int(f.read().strip()))
        except (OSError, ValueError):
            return self.k


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--k", type=int, required=True)
    p.add_argument("--k-file", default="")
    p.add_argument("--base-ms", type=float, default=100.0)
    p.add_argument("--thrash", type=float, default=0.15)
    p.add_argument("--max-ms", type=float, default=5000.0)
    a = p.parse_args()
    s = Server(("::", a.port), Handler)
    s.name, s.k, s.k_file = a.name, a.k, a.k_file
    s.base_ms, s.thrash, s.max_ms = a.base_ms, a.thrash, a.max_ms
    s.lock = threading.Lock()
    s.in_flight = s.max_in_flight = s.served = 0
    threading.Thread(target=s.serve_forever, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
