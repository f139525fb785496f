#!/usr/bin/env python3
"""Payload integrity through a tunnel, for 85-integrity.sh.

  integrity.py tcp-server ADDR PORT        prints the SHA-256 of what it read
  integrity.py tcp-client ADDR PORT BYTES SEED   sends BYTES seeded bytes, prints their SHA-256
  integrity.py udp-server ADDR PORT COUNT  receives sequence-numbered datagrams,
                                           prints "received R reordered O corrupt C"
  integrity.py udp-client ADDR PORT COUNT RATE  sends COUNT datagrams of varying odd sizes at RATE/s
"""
import hashlib
import random
import socket
import struct
import sys
import time


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def payload(seq, size):
    # Deterministic content per sequence number, so the receiver can check it.
    rnd = random.Random(seq)
    body = bytes(rnd.getrandbits(8) for _ in range(size - 8))
    return struct.pack(">II", seq, size) + body


def main():
    mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "tcp-server":
        s = socket.socket(family(addr), socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(1)
        s.settimeout(30)
        c, _ = s.accept()
        c.settimeout(30)
        h = hashlib.sha256()
        while True:
            b = c.recv(1 << 16)
            if not b:
                break
            h.update(b)
        print(h.hexdigest())
    elif mode == "tcp-client":
        total, seed = int(sys.argv[4]), int(sys.argv[5])
        rnd = random.Random(seed)
        c = socket.create_connection((addr, port), timeout=30)
        h = hashlib.sha256()
        sent = 0
        while sent < total:
            # Odd chunk sizes so segment boundaries fall everywhere.
            n = min(total - sent, rnd.randint(1, 70000))
            b = rnd.randbytes(n)
            c.sendall(b)
            h.update(b)
            sent += n
        c.shutdown(socket.SHUT_WR)
        c.recv(1)
        c.close()
        print(h.hexdigest())
    elif mode == "udp-server":
        count = int(sys.argv[4])
        s = socket.socket(family(addr), socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.bind((addr, port))
        s.settimeout(3)
        received = reordered = corrupt = 0
        last = -1
        try:
            while received < count:
                b = s.recv(65535)
                seq, size = struct.unpack(">II", b[:8])
                if len(b) != size or b != payload(seq, size):
                    corrupt += 1
                if seq < last:
                    reordered += 1
                last = max(last, seq)
                received += 1
        except socket.timeout:
            pass
        print(f"received {received} reordered {reordered} corrupt {corrupt}")
    elif mode == "udp-client":
        count, rate = int(sys.argv[4]), float(sys.argv[5])
        s = socket.socket(family(addr), socket.SOCK_DGRAM)
        start = time.monotonic()
        sizes = [9, 15, 17, 99, 577, 1001, 1200, 1371]
        for seq in range(count):
            s.sendto(payload(seq, sizes[seq % len(sizes)]), (addr, port))
            delay = start + (seq + 1) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
