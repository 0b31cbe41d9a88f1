#!/usr/bin/env python3
"""A GUE-style decapsulator for tandem's gue mode, where the kernel has no FOU: reads the
UDP datagrams tandem sends to --listen ADDR:PORT (each an IP packet, whole) and writes each
inner packet into the TUN device --tun (made by the test bed), so the kernel receives it as
if it had arrived on a link: a client's packet to a VIP on this host's loopback, or an ICMP
error about one of its flows.
"""
import argparse
import fcntl
import os
import socket
import struct

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--tun", default="gue0")
    a = p.parse_args()
    host, port = a.listen.rsplit(":", 1)
    tun = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", a.tun.encode(), IFF_TUN | IFF_NO_PI))
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((host, int(port)))
    print("ready", flush=True)
    while True:
        data, _ = u.recvfrom(65535)
        if data and data[0] >> 4 in (4, 6):
            os.write(tun, data)


if __name__ == "__main__":
    main()
