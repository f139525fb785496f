#!/usr/bin/env python3
"""Minimal WireGuard UAPI client for the end-to-end tests.

    uapi_client.py SOCKET [--timeout S] < request

Sends stdin verbatim (it may be malformed on purpose), half-closes the
connection and prints everything the daemon answers until it closes the
connection. Exit status: 0 when the exchange finished, 2 when the socket could
not be reached, 3 when the daemon neither answered nor closed in time (a hang
is a failure too).
"""
import socket
import sys


def main() -> int:
    args = sys.argv[1:]
    timeout = 5.0
    if "--timeout" in args:
        i = args.index("--timeout")
        timeout = float(args[i + 1])
        del args[i : i + 2]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 64
    request = sys.stdin.buffer.read()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(args[0])
    except OSError as e:
        print(f"connect {args[0]}: {e}", file=sys.stderr)
        return 2
    reply = bytearray()
    try:
        try:
            s.sendall(request)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            # The daemon may legitimately hang up on garbage before reading it all.
            print(f"send: {e}", file=sys.stderr)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    except socket.timeout:
        sys.stdout.buffer.write(reply)
        print("timed out waiting for the daemon", file=sys.stderr)
        return 3
    except OSError as e:
        # ECONNRESET after garbage is an acceptable way to refuse it.
        print(f"recv: {e}", file=sys.stderr)
    finally:
        s.close()
    sys.stdout.buffer.write(reply)
    return 0


if __name__ == "__main__":
    sys.exit(main())
