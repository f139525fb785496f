#!/usr/bin/env python3
"""One HTTP request to the admin server, for the end-to-end tests.

    admin_http.py URL [--method M] [--header 'Name: value']... [--token T]
                      [--body-size N] [--chunked] [--out FILE] [--head FILE]
                      [--timeout S]

Prints the status code (000 when no HTTP answer came: refused, reset,
timeout) and exits 0 when an answer came, 1 otherwise. The body goes to
--out, the response headers ("lower-case-name: value" lines) to --head.
--body-size sends N bytes of 'x' (with Content-Length, or chunked in 16 KiB
pieces with --chunked); --token sends "Authorization: Bearer T".
Raw sockets would do too, but http.client keeps the exact bytes of the
path and query (no re-encoding), which the tests need.
"""
import http.client
import sys
import urllib.parse


def parse_args(argv):
    opts = {"method": "GET", "headers": [], "body_size": None, "chunked": False,
            "out": None, "head": None, "timeout": 20.0, "token": None}
    url = None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--method", "--header", "--token", "--body-size", "--out",
                 "--head", "--timeout"):
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


def chunks(total):
    piece = b"x" * 16384
    left = total
    while left > 0:
        n = min(left, len(piece))
        yield piece[:n]
        left -= n


def main() -> int:
    url, o = parse_args(sys.argv[1:])
    u = urllib.parse.urlsplit(url)
    target = (u.path or "/") + (f"?{u.query}" if u.query else "")
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=o["timeout"])
    headers = {}
    for h in o["headers"]:
        k, _, v = h.partition(":")
        headers[k.strip()] = v.strip()
    if o["token"] is not None:
        headers["Authorization"] = f"Bearer {o['token']}"
    body = None
    if o["body_size"] is not None:
        if o["chunked"]:
            body = chunks(o["body_size"])
        else:
            body = b"x" * o["body_size"]
    try:
        try:
            conn.request(o["method"], target, body=body, headers=headers,
                         encode_chunked=o["chunked"])
        except (BrokenPipeError, ConnectionResetError):
            # The server may answer (413) and close before the whole body
            # is sent; its answer is still in our receive buffer.
            pass
        resp = conn.getresponse()
        data = resp.read()
    except (OSError, http.client.HTTPException) as e:
        print("000")
        print(f"admin_http: {o['method']} {url}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        conn.close()
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
