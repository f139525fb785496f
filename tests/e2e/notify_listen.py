#!/usr/bin/env python3
"""A stand-in for systemd's notify socket, for tests/e2e/88-systemd-notify.sh.

    notify_listen.py SOCKET LOG [--readyz URL]

Binds a unix datagram socket at SOCKET (as systemd does for NOTIFY_SOCKET)
and appends one line per datagram to LOG:

    msg MONOTONIC_SECONDS FIELD|FIELD|...

With --readyz, every datagram holding READY=1 is followed at once by one
GET of URL and a line "readyz MONOTONIC_SECONDS STATUS" (000 when no HTTP
answer came), so the test can tell what /readyz said when READY=1 arrived.
Runs until killed; removes SOCKET on SIGTERM.
"""
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request


def readyz(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def main():
    args = sys.argv[1:]
    url = None
    if "--readyz" in args:
        i = args.index("--readyz")
        url = args[i + 1]
        del args[i:i + 2]
    if len(args) != 2:
        raise SystemExit(__doc__)
    path, log_path = args
    if os.path.exists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)

    def stop(*_):
        os.unlink(path)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    with open(log_path, "a", buffering=1) as log:
        while True:
            data = sock.recv(65536)
            fields = data.decode("utf-8", "replace").strip("\n").split("\n")
            log.write(f"msg {time.monotonic():.6f} {'|'.join(fields)}\n")
            if url and "READY=1" in fields:
                code = readyz(url)
                log.write(f"readyz {time.monotonic():.6f} {code:03d}\n")


if __name__ == "__main__":
    main()
