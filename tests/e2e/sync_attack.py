#!/usr/bin/env python3
"""Attacks on a node's sync channel, for the cluster tests (root: raw sockets on lo).

sync_attack.py FROM_PORT TO_PORT
    captures one real datagram from 127.0.0.1:FROM_PORT to 127.0.0.1:TO_PORT, then sends
    TO_PORT, each from FROM_PORT's address (spoofed with a raw socket):
      1. the same datagram again (a replay),
      2. the datagram with one body byte changed and a fresh sequence number (a forgery),
    and, from an address no node has, 3. the datagram unchanged (a node not in the config).
    Prints one JSON line: what was sent.
"""
import json
import socket
import struct
import sys
import time


def capture(src_port, dst_port, timeout=10.0):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
    s.bind(("lo", 0))
    s.settimeout(timeout)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        frame = s.recv(65535)
        if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0xF) * 4
        if ip[9] != 17:
            continue
        sport, dport = struct.unpack("!HH", ip[ihl:ihl + 4])
        payload = ip[ihl + 8:]
        if sport == src_port and dport == dst_port and payload[:4] == b"TNDS":
            return payload
    sys.exit("no sync datagram seen")


def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def spoof(payload, src_port, dst_port):
    """An IPv4 + UDP packet from 127.0.0.1:src_port, sent with a raw socket."""
    udp = struct.pack("!HHHH", src_port, dst_port, 8 + len(payload), 0) + payload
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                      socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.1"))
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    r.sendto(hdr + udp, ("127.0.0.1", 0))


def main():
    src, dst = int(sys.argv[1]), int(sys.argv[2])
    d = capture(src, dst)
    spoof(d, src, dst)  # 1. replay
    forged = bytearray(d)
    seq = struct.unpack("!Q", d[16:24])[0] + 1000
    forged[16:24] = struct.pack("!Q", seq)
    forged[34] ^= 0x01  # first body byte
    spoof(bytes(forged), src, dst)  # 2. forgery
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(d, ("127.0.0.1", dst))  # 3. from an address no node has
    print(json.dumps({"captured_bytes": len(d), "kind": d[5], "sent": 3}), flush=True)


if __name__ == "__main__":
    main()
