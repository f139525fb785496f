#!/usr/bin/env python3
"""Throws malformed WireGuard datagrams at a daemon's UDP port.

    udp_garbage.py HOST PORT [--seed N] [--random N]

Sends, in order: an empty datagram; for every message type (1 initiation,
2 response, 3 cookie reply, 4 data) and some unknown ones, headers with
lengths around and far from the right one; right-sized messages with random
content (they must fail MAC1 / authentication); data messages with random
receiver indexes; nonzero reserved bytes; N (default 2000) random datagrams
of 0..1600 bytes; and a few maximum-size (65507-byte) datagrams. Prints how
many datagrams were sent. Every one of them must be dropped quietly.
"""
import random
import socket
import struct
import sys
import time

SIZES = {1: 148, 2: 92, 3: 64, 4: 32}  # data: minimum (a keepalive)


def main() -> int:
    args = sys.argv[1:]
    seed, count = 1, 2000
    if "--seed" in args:
        i = args.index("--seed")
        seed = int(args[i + 1])
        del args[i : i + 2]
    if "--random" in args:
        i = args.index("--random")
        count = int(args[i + 1])
        del args[i : i + 2]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 64
    host, port = args[0], int(args[1])
    rng = random.Random(seed)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    dst = (host, port)
    sent = 0

    def send(payload: bytes) -> None:
        nonlocal sent
        try:
            s.sendto(payload, dst)
            sent += 1
        except OSError:
            # ECONNREFUSED from an earlier ICMP, ENOBUFS under load: go on.
            pass
        if sent % 200 == 0:
            time.sleep(0.01)  # keep the peer's socket buffer from overflowing

    def rand(n: int) -> bytes:
        return rng.randbytes(n)

    send(b"")
    for mtype in (1, 2, 3, 4, 0, 5, 255):
        right = SIZES.get(mtype, 32)
        header = struct.pack("<I", mtype)
        for n in sorted({1, 2, 3, 4, 5, 15, 16, 31, right - 1, right + 1, right * 2, 1500}):
            n = max(n, 1)
            body = header[:n] + rand(max(0, n - 4))
            send(body)
        send(header + rand(right - 4))
        # nonzero "reserved" bytes on an otherwise right-sized message
        send(struct.pack("<BBBB", mtype & 0xFF, 0xFF, 0xFF, 0xFF) + rand(right - 4))
    # data messages: random receiver index and counter, various lengths
    for n in (32, 33, 47, 48, 64, 1452, 1500):
        for _ in range(10):
            send(struct.pack("<I", 4) + rand(n - 4))
    for _ in range(count):
        n = rng.randint(0, 1600)
        head = struct.pack("<I", rng.choice((1, 2, 3, 4, rng.getrandbits(32))))
        send((head + rand(n))[:n])
    for _ in range(3):
        send(struct.pack("<I", 4) + rand(65507 - 4))
        send(struct.pack("<I", 1) + rand(65507 - 4))
    print(f"sent {sent} datagrams to {host}:{port}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
