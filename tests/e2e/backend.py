#!/usr/bin/env python3
"""A small HTTP backend for tandem's end-to-end tests: real kernel TCP, one process.

GET /id                    -> this backend's name (one line)
GET /blob?size=N&rate=R    -> N bytes of a fixed pattern (byte i is i % 251), sent at about
                              R bytes per second, so a download lasts as long as a test needs
UDP datagram to --udp PORT -> this backend's name, then a space, then the datagram echoed
Listens on every --port given (the nat test uses one port, dsr the VIP's).
"""
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
        if url.path == "/id":
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


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Dual stack: IPv6 and (as ::ffff:a.b.c.d) IPv4 on one socket."""
    daemon_threads = True
    allow_reuse_address = True
    address_family = socket.AF_INET6

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def udp_echo(sock, name):
    while True:
        data, peer = sock.recvfrom(65535)
        sock.sendto(name.encode() + b" " + data, peer)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--port", type=int, action="append", required=True)
    p.add_argument("--udp", type=int, action="append", default=[])
    a = p.parse_args()
    for port in a.udp:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("0.0.0.0", port))
        threading.Thread(target=udp_echo, args=(u, a.name), daemon=True).start()
    servers = []
    for port in a.port:
        s = Server(("::", port), Handler)
        s.backend_name = a.name
        servers.append(s)
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
