#!/usr/bin/env python3
"""One HTTP request to the admin server, for the end-to-end tests.

    admin_http.py URL [--method M] [--header 'Name: value']... [--token T]
                      [--body-size N] [--chunked] [--out FILE] [--head FILE]
                      [--timeout S] [--elapsed FILE]

Prints the status code (000 when no HTTP answer came: refused, reset,
timeout) and exits 0 when an answer came, 1 otherwise. The body goes to
--out, the response headers ("lower-case-name: value" lines) to --head.
--body-size sends N bytes of 'x' (with Content-Length, or chunked in 16 KiB
pieces with --chunked); --token sends "Authorization: Bearer T".
The path and query are sent byte for byte (no re-encoding). A body stops
being sent as soon as the server answers, so an early 413 is read, not lost
to a connection reset. --elapsed writes the seconds from the connect to the
end of the answer, so a caller can time the server without timing this
interpreter's start (which a loaded machine can stretch past a second).
"""
import http.client
import select
import sys
import time
import urllib.parse


def parse_args(argv):
    opts = {"method": "GET", "headers": [], "body_size": None, "chunked": False,
            "out": None, "head": None, "timeout": 20.0, "token": None,
            "elapsed": None}
    url = None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--method", "--header", "--token", "--body-size", "--out",
                 "--head", "--timeout", "--elapsed"):
            if i + 1 >= len(argv):
                raise SystemExit(f"{a} needs a value")
            v = argv[i + 1]
            i += 2
            if a == "--method":
                opts["method"] = v
            elif a == "--header":
                opts["headers"].append(v)
            elif a == "--token":
                opts["token"] = v
            elif a == "--body-size":
                opts["body_size"] = int(v)
            elif a == "--out":
                opts["out"] = v
            elif a == "--head":
                opts["head"] = v
            elif a == "--elapsed":
                opts["elapsed"] = v
            else:
                opts["timeout"] = float(v)
            continue
        if a == "--chunked":
            opts["chunked"] = True
        elif url is None:
            url = a
        else:
            raise SystemExit(f"unexpected argument {a!r}")
        i += 1
    if url is None:
        raise SystemExit(__doc__)
    return url, opts


def send_body(sock, total, chunked):
    """Sends `total` bytes of 'x', stopping early once the server has
    answered (a 413 before the body is read) or closed: reading that answer
    promptly keeps it from being lost to a reset."""
    piece = b"x" * 16384
    left = total
    try:
        while left > 0:
            if select.select([sock], [], [], 0)[0]:
                return
            n = min(left, len(piece))
            data = piece[:n]
            if chunked:
                data = f"{n:x}\r\n".encode() + data + b"\r\n"
            sock.sendall(data)
            left -= n
        if chunked:
            sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass


def main() -> int:
    url, o = parse_args(sys.argv[1:])
    u = urllib.parse.urlsplit(url)
    target = (u.path or "/") + (f"?{u.query}" if u.query else "")
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=o["timeout"])
    headers = []
    for h in o["headers"]:
        k, _, v = h.partition(":")
        headers.append((k.strip(), v.strip()))
    if o["token"] is not None:
        headers.append(("Authorization", f"Bearer {o['token']}"))
    n = o["body_size"]
    if n is not None:
        if o["chunked"]:
            headers.append(("Transfer-Encoding", "chunked"))
        else:
            headers.append(("Content-Length", str(n)))
    started = time.monotonic()
    try:
        conn.putrequest(o["method"], target, skip_accept_encoding=True)
        for k, v in headers:
            conn.putheader(k, v)
        conn.endheaders()
        if n is not None:
            send_body(conn.sock, n, o["chunked"])
        resp = conn.getresponse()
        data = resp.read()
        took = time.monotonic() - started
    except (OSError, http.client.HTTPException) as e:
        print("000")
        print(f"admin_http: {o['method']} {url}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    if o["elapsed"]:
        with open(o["elapsed"], "w") as f:
            f.write(f"{took:.6f}\n")
    if o["out"]:
        with open(o["out"], "wb") as f:
            f.write(data)
    if o["head"]:
        with open(o["head"], "w") as f:
            for k, v in resp.getheaders():
                f.write(f"{k.lower()}: {v}\n")
    print(resp.status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
