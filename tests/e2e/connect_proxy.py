#!/usr/bin/env python3
"""A small HTTP CONNECT proxy for the end-to-end tests.

    connect_proxy.py HOST:PORT LOGFILE [NAME=ADDRESS]...

Listens on HOST:PORT; tunnels each "CONNECT host:port" to host:port (a NAME
given on the command line is replaced by its ADDRESS: the proxy resolves
names the client cannot) and appends the request line to LOGFILE. Anything
but CONNECT gets 405; a target that cannot be reached gets 502.
"""
import select
import socket
import sys
import threading


def relay(a, b):
    socks = [a, b]
    try:
        while True:
            readable, _, _ = select.select(socks, [], [], 30)
            if not readable:
                return
            for s in readable:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)
    except OSError:
        return


def handle(client, log_path, names):
    with client:
        client.settimeout(10)
        head = b""
        try:
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
        except OSError:
            return
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        with open(log_path, "a") as log:
            log.write(line + "\n")
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        host, _, port = parts[1].rpartition(":")
        host = names.get(host.strip("[]"), host.strip("[]"))
        try:
            upstream = socket.create_connection((host, int(port)), timeout=5)
        except (OSError, ValueError):
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        with upstream:
            client.settimeout(None)
            upstream.settimeout(None)
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            relay(client, upstream)


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    host, _, port = sys.argv[1].rpartition(":")
    log_path = sys.argv[2]
    names = dict(a.split("=", 1) for a in sys.argv[3:])
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, int(port)))
    srv.listen(16)
    while True:
        client, _ = srv.accept()
        threading.Thread(target=handle, args=(client, log_path, names), daemon=True).start()


if __name__ == "__main__":
    main()
