#!/usr/bin/env python3
"""Payload integrity through a tunnel, for 85-integrity.sh.

  integrity.py tcp-server ADDR PORT        prints the SHA-256 of what it read
  integrity.py tcp-client ADDR PORT BYTES SEED   sends BYTES seeded bytes, prints their SHA-256
  integrity.py udp-server ADDR PORT COUNT  receives sequence-numbered datagrams,
                                           prints "received R reordered O corrupt C"
  integrity.py udp-client ADDR PORT COUNT RATE  sends COUNT datagrams of varying odd sizes at RATE/s
  integrity.py udp-server ADDR PORT COUNT zero-csum  expects what udp-zero-csum-client sends
  integrity.py udp-zero-csum-client SRC ADDR PORT COUNT  sends COUNT datagrams from SRC whose
                                           UDP checksum computes to zero (sent as 0xFFFF)
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


def fold(s):
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def sum16(b):
    if len(b) % 2:
        b += b"\0"
    return sum(struct.unpack(f">{len(b) // 2}H", b))


def zero_csum_payload(seq, size, src, sport, dst, dport):
    """payload(seq, size) with bytes 8-9 chosen so that the datagram's UDP
    checksum computes to 0: one's-complement arithmetic has two zeros, and
    RFC 768 has a computed 0 sent as 0xFFFF, because a 0 in the field means
    "no checksum" (IPv4) or is invalid (IPv6, RFC 8200). A stack that writes
    the 0 loses every such IPv6 datagram (about 1 in 65,536 at random)."""
    body = bytearray(payload(seq, size))
    body[8:10] = b"\0\0"
    fam = family(dst)
    a, b = socket.inet_pton(fam, src), socket.inet_pton(fam, dst)
    ulen = 8 + size
    if fam == socket.AF_INET6:
        pseudo = a + b + struct.pack(">IxxxB", ulen, 17)
    else:
        pseudo = a + b + struct.pack(">xBH", 17, ulen)
    header = struct.pack(">HHHH", sport, dport, ulen, 0)
    partial = fold(sum16(pseudo) + sum16(header) + sum16(bytes(body)))
    struct.pack_into(">H", body, 8, 0xFFFF - partial)
    assert fold(partial + 0xFFFF - partial) == 0xFFFF
    return bytes(body)


ZERO_CSUM_SIZES = [10, 11, 64, 99, 577, 1001, 1371, 1372]


def main():
    mode, addr = sys.argv[1], sys.argv[2]
    port = int(sys.argv[3]) if mode != "udp-zero-csum-client" else 0
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
        zero_csum = sys.argv[5:] == ["zero-csum"]
        s = socket.socket(family(addr), socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.bind((addr, port))
        s.settimeout(3)
        received = reordered = corrupt = 0
        last = -1
        try:
            while received < count:
                b, peer = s.recvfrom(65535)
                seq, size = struct.unpack(">II", b[:8])
                if zero_csum:
                    want = zero_csum_payload(seq, size, peer[0], peer[1], addr, port)
                else:
                    want = payload(seq, size)
                if len(b) != size or b != want:
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
    elif mode == "udp-zero-csum-client":
        # argv: SRC ADDR PORT COUNT (the mode's ADDR slot holds SRC).
        src, dst, dport, count = addr, sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        s = socket.socket(family(dst), socket.SOCK_DGRAM)
        s.bind((src, 0))
        sport = s.getsockname()[1]
        for seq in range(count):
            size = ZERO_CSUM_SIZES[seq % len(ZERO_CSUM_SIZES)]
            s.sendto(zero_csum_payload(seq, size, src, sport, dst, dport), (dst, dport))
            time.sleep(0.002)
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
