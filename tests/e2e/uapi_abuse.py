#!/usr/bin/env python3
"""Sends malformed requests to a UAPI socket and checks the answers.

    uapi_abuse.py SOCKET PRIVATE_KEY_HEX PEER_PUBLIC_KEY_HEX

For every case prints "PASS: <case>: <detail>" or "FAIL: <case>: <detail>";
exits 1 if any case failed. After every case a fresh `get=1` must answer
errno=0 with the device's private key and the configured peer: a bad request
is refused, the daemon keeps serving and its configuration is untouched.

Expectations:
  EINVAL  the answer is exactly errno=-22 (unknown keys, bad values);
  ERROR   a negative errno (any), since the exact code is not pinned down;
  REFUSE  only negative errnos (one or more), or the connection closed with
          no answer (what wireguard-go does for unknown operations and garbage);
  OK / OK2  errno=0 once / twice (several operations on one connection).
"""
import os
import re
import socket
import sys
import time

TIMEOUT = 5.0


def exchange(path: str, request: bytes) -> tuple[bytes, str]:
    """Returns (reply, problem); problem is "" or a description."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    try:
        s.connect(path)
    except OSError as e:
        return b"", f"connect: {e}"
    reply = bytearray()
    try:
        try:
            s.sendall(request)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the daemon may hang up on garbage before reading it all
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    except socket.timeout:
        return bytes(reply), "timed out (daemon hung?)"
    except OSError:
        pass  # connection reset: acceptable refusal
    finally:
        s.close()
    return bytes(reply), ""


def errnos(reply: bytes) -> list[int]:
    return [int(m) for m in re.findall(rb"(?m)^errno=(-?\d+)$", reply)]


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 64
    path, priv, peer = sys.argv[1], sys.argv[2].lower(), sys.argv[3].lower()
    stranger = os.urandom(32).hex()
    long_line = b"private_key=" + b"a" * 1_000_000
    cases = [
        ("unknown device key", b"set=1\nbogus_key=1\n\n", "EINVAL"),
        ("peer key before any public_key", b"set=1\nendpoint=10.200.0.9:1\n\n", "EINVAL"),
        ("private_key not hex", b"set=1\nprivate_key=zz\n\n", "EINVAL"),
        ("private_key too short", b"set=1\nprivate_key=" + b"0" * 63 + b"\n\n", "EINVAL"),
        ("listen_port out of range", b"set=1\nlisten_port=99999\n\n", "EINVAL"),
        ("listen_port empty", b"set=1\nlisten_port=\n\n", "EINVAL"),
        ("fwmark not a number", b"set=1\nfwmark=abc\n\n", "EINVAL"),
        ("replace_peers not a bool", b"set=1\nreplace_peers=maybe\n\n", "EINVAL"),
        ("public_key not hex", b"set=1\npublic_key=xyz\n\n", "EINVAL"),
        ("unknown peer key",
         f"set=1\npublic_key={peer}\nbogus_peer_key=1\n\n".encode(), "EINVAL"),
        ("allowed_ip prefix too long",
         f"set=1\npublic_key={peer}\nallowed_ip=10.201.0.9/33\n\n".encode(), "EINVAL"),
        ("allowed_ip garbage",
         f"set=1\npublic_key={peer}\nallowed_ip=not-an-ip\n\n".encode(), "EINVAL"),
        ("endpoint without port",
         f"set=1\npublic_key={peer}\nendpoint=[fd00:200::9\n\n".encode(), "EINVAL"),
        ("keepalive out of range",
         f"set=1\npublic_key={peer}\npersistent_keepalive_interval=70000\n\n".encode(), "EINVAL"),
        ("preshared_key not hex",
         f"set=1\npublic_key={peer}\npreshared_key=qq\n\n".encode(), "EINVAL"),
        ("protocol_version 2",
         f"set=1\npublic_key={stranger}\nprotocol_version=2\nremove=true\n\n".encode(), "ERROR"),
        ("line without '='", b"set=1\nnoequals\n\n", "ERROR"),
        ("get with trailing data", b"get=1\nextra=1\n\n", "REFUSE"),
        ("unknown operation", b"frobnicate=1\n\n", "REFUSE"),
        ("binary garbage", b"\x00\xff\xfe\xfd\n\x01\x02\n\n", "REFUSE"),
        ("1 MB line", b"set=1\n" + long_line + b"\n\n", "REFUSE"),
        ("truncated request", b"set=1\nprivate_ke", "REFUSE"),
        ("empty request", b"", "REFUSE"),
        ("two gets on one connection", b"get=1\n\nget=1\n\n", "OK2"),
        ("harmless set", f"set=1\npublic_key={peer}\nupdate_only=true\n\n".encode(), "OK"),
    ]
    failures = 0
    for name, request, expect in cases:
        reply, problem = exchange(path, request)
        codes = errnos(reply)
        detail = f"errno={codes[-1]}" if codes else "no answer (closed)"
        ok = not problem
        if ok and expect == "EINVAL":
            ok = codes == [-22]
        elif ok and expect == "ERROR":
            ok = len(codes) == 1 and codes[0] < 0
        elif ok and expect == "REFUSE":
            # The daemon may answer what follows the bad part as further
            # (bad) operations: every answer must then be an error.
            ok = (codes == [] and reply == b"") or (codes and max(codes) < 0)
        elif ok and expect == "OK":
            ok = codes == [0]
        elif ok and expect == "OK2":
            ok = codes == [0, 0] and reply.count(b"private_key=" + priv.encode()) == 2
            detail = f"errnos={codes}"
        if problem:
            detail = problem
        # The daemon must still serve, with its configuration intact.
        greply, gproblem = exchange(path, b"get=1\n\n")
        serving = (
            not gproblem
            and errnos(greply) == [0]
            and f"private_key={priv}\n".encode() in greply
            and f"public_key={peer}\n".encode() in greply
        )
        if not serving:
            ok = False
            detail += f"; afterwards get failed: {gproblem or greply[:200]!r}"
        print(f"{'PASS' if ok else 'FAIL'}: UAPI {name} -> expected {expect}, got {detail}")
        failures += not ok
        if gproblem and "connect" in gproblem:
            print("FAIL: UAPI socket gone; stopping")
            return 1
    return 1 if failures else 0


if __name__ == "__main__":
    start = time.monotonic()
    rc = main()
    print(f"uapi_abuse: {time.monotonic() - start:.1f} s")
    sys.exit(rc)
