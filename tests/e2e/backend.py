#!/usr/bin/env python3
"""A small HTTP backend for tandem's end-to-end tests: real kernel TCP, one process.

GET /id                    -> this backend's name (one line), after the current delay
GET /stats[?reset=1]       -> JSON: connections now, most at once, requests served (never
                              delayed; the QoS tests read it straight from the backend);
                              reset=1 starts the counts again after answering
GET /blob?size=N&rate=R    -> N bytes of a fixed pattern (byte i is i % 251), sent at about
                              R bytes per second, so a download lasts as long as a test needs
UDP datagram to --udp PORT -> this backend's name, then a space, then the datagram echoed
TCP line to --echo PORT    -> this backend's name, then a space, then the line echoed (one
                              connection held as long as its client keeps it)
Listens on every --port given (the nat test uses one port, dsr the VIP's).
--delay-file F: a file holding a number of milliseconds, read on every request, that /id
waits before answering: the tests slow a backend down and speed it up at run time.
"""
import json
import argparse
import http.server
import socket
import socketserver
import threading
import time
import urllib.parse

PATTERN = bytes(i % 251 for i in range(251 * 70))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server_version = "tandem-test-backend"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(url.query)
        if url.path == "/stats":
            st = self.server.stats
            with st["lock"]:
                body = json.dumps({k: v for k, v in st.items()
                                   if k not in ("lock", "counted")}).encode()
                if q.get("reset"):
                    st["max_connections"] = st["connections"]
                    st["served"] = 0
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if url.path == "/id":
            delay = current_delay(self.server.delay_file)
            if delay > 0:
                time.sleep(delay / 1000.0)
            with self.server.stats["lock"]:
                self.server.stats["served"] += 1
            # Uncounted before the answer goes: once the client has it, its FIN may free the
            # slot (and let the next connection in) before this thread gets to close.
            self.server.uncount(self.request)
            body = (self.server.backend_name + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Backend", self.server.backend_name)
            self.end_headers()
            self.wfile.write(body)
            return
        if url.path == "/blob":
            size = int(q.get("size", ["1048576"])[0])
            rate = float(q.get("rate", ["0"])[0])
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.send_header("X-Backend", self.server.backend_name)
            self.end_headers()
            sent = 0
            start = time.monotonic()
            chunk = 16 * 1024
            while sent < size:
                n = min(chunk, size - sent)
                off = sent % 251
                # PATTERN is long enough for any chunk from any offset.
                self.wfile.write(PATTERN[off:off + n])
                sent += n
                if rate > 0:
                    ahead = sent / rate - (time.monotonic() - start)
                    if ahead > 0:
                        time.sleep(ahead)
            return
        self.send_error(404)


def current_delay(path):
    """Milliseconds from the delay file (0 when there is none or it is being rewritten)."""
    if not path:
        return 0.0
    try:
        with open(path) as f:
            return float(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0.0


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Dual stack: IPv6 and (as ::ffff:a.b.c.d) IPv4 on one socket."""
    daemon_threads = True
    allow_reuse_address = True
    address_family = socket.AF_INET6
    request_queue_size = 128

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def process_request_thread(self, request, client_address):
        # A connection counts from accept to close: what an admission limit must bound.
        # Requests over loopback come from the test itself (reading /stats), not through
        # the load balancer, and are left out.
        if client_address[0] not in ("::1", "::ffff:127.0.0.1"):
            st = self.stats
            with st["lock"]:
                st["connections"] += 1
                st["max_connections"] = max(st["max_connections"], st["connections"])
                st["counted"].add(id(request))
        super().process_request_thread(request, client_address)

    def uncount(self, request):
        """Takes a connection out of the count (once)."""
        st = self.stats
        with st["lock"]:
            if id(request) in st["counted"]:
                st["counted"].discard(id(request))
                st["connections"] -= 1

    def shutdown_request(self, request):
        # Uncounted before the socket closes (if its answer did not already): the next
        # connection, let in when this one's FIN frees its slot, can never overlap it in
        # the count.
        self.uncount(request)
        super().shutdown_request(request)


def udp_echo(sock, name):
    while True:
        data, peer = sock.recvfrom(65535)
        sock.sendto(name.encode() + b" " + data, peer)


def tcp_echo(sock, name):
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=echo_lines, args=(conn, name), daemon=True).start()


def echo_lines(conn, name):
    with conn, conn.makefile("rb") as lines:
        for line in lines:
            conn.sendall(name.encode() + b" " + line)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--port", type=int, action="append", required=True)
    p.add_argument("--udp", type=int, action="append", default=[])
    p.add_argument("--echo", type=int, action="append", default=[])
    p.add_argument("--delay-file", default="")
    a = p.parse_args()
    stats = {"lock": threading.Lock(), "counted": set(), "connections": 0,
             "max_connections": 0, "served": 0}
    for port in a.udp:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("0.0.0.0", port))
        threading.Thread(target=udp_echo, args=(u, a.name), daemon=True).start()
    for port in a.echo:
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind(("0.0.0.0", port))
        t.listen(64)
        threading.Thread(target=tcp_echo, args=(t, a.name), daemon=True).start()
    servers = []
    for port in a.port:
        s = Server(("::", port), Handler)
        s.backend_name = a.name
        s.delay_file = a.delay_file
        s.stats = stats
        servers.append(s)
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
