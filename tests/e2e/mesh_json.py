#!/usr/bin/env python3
"""Evaluates one Python expression over a JSON document, for the mesh tests.

    mesh_json.py EXPR FILE      (FILE "-" reads stdin)

`d` is the parsed document; `strip(a)` drops a "/len" suffix from an
address. A list result is printed one item a line, True/False as 1/0
(exit status 0/1), anything else with print(). An unreadable document
prints the reason to stderr and exits 2.
"""
import json
import sys


def strip(a):
    return str(a).split("/")[0]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    expr, path = sys.argv[1], sys.argv[2]
    try:
        text = sys.stdin.read() if path == "-" else open(path).read()
        d = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any failure is a test failure
        print(f"mesh_json: unreadable JSON in {path}: {e}", file=sys.stderr)
        sys.exit(2)
    try:
        r = eval(expr, {"d": d, "strip": strip, "len": len, "sorted": sorted,
                        "set": set, "all": all, "any": any, "str": str})
    except Exception as e:  # noqa: BLE001
        print(f"mesh_json: {expr!r} failed: {e!r}", file=sys.stderr)
        sys.exit(2)
    if isinstance(r, bool):
        print(1 if r else 0)
        sys.exit(0 if r else 1)
    if isinstance(r, (list, tuple, set)):
        for x in r:
            print(x)
    elif r is not None:
        print(r)


if __name__ == "__main__":
    main()
