#!/usr/bin/env python3
"""Checks a `phantommesh ... -o json` document against the shape the README
documents (README, "Machine-readable output").

    cli_json.py gate|status|preflight|mesh|loadtest FILE [--pass|--fail]

gate, status and preflight must have exactly the documented fields; mesh
and loadtest documents may carry more (the daemon and the load generator
add fields over time). Prints each problem and exits 1 if there is one.
"""
import json
import sys

PROBLEMS = []
STR, BOOL, NUM, INT = "str", "bool", "num", "int"


def problem(msg):
    PROBLEMS.append(msg)


def is_type(v, t):
    if t == STR:
        return isinstance(v, str)
    if t == BOOL:
        return isinstance(v, bool)
    if t == INT:
        return isinstance(v, int) and not isinstance(v, bool)
    if t == NUM:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if isinstance(t, tuple) and t[0] == "opt":
        return v is None or is_type(v, t[1])
    if isinstance(t, tuple) and t[0] == "list":
        return isinstance(v, list) and all(is_type(x, t[1]) for x in v)
    if isinstance(t, tuple) and t[0] == "one_of":
        return v in t[1]
    if isinstance(t, dict):
        return isinstance(v, dict)
    raise ValueError(t)


def opt(t):
    return ("opt", t)


def lst(t):
    return ("list", t)


def obj(where, d, fields, exact=True, optional=()):
    """Checks d's fields (name -> type; dict types are nested objects)."""
    if not isinstance(d, dict):
        problem(f"{where}: not an object: {str(d)[:120]}")
        return
    for name, t in fields.items():
        if name not in d:
            if name not in optional:
                problem(f"{where}: no field {name!r}")
            continue
        v = d[name]
        if isinstance(t, tuple) and t[0] == "opt" and isinstance(t[1], dict):
            if v is not None and t[1] == {}:
                if not isinstance(v, dict):
                    problem(f"{where}.{name}: not an object or null")
            elif v is not None:
                obj(f"{where}.{name}", v, t[1], exact)
        elif isinstance(t, tuple) and t[0] == "list" and t[1] == {}:
            if not (isinstance(v, list) and all(isinstance(x, dict) for x in v)):
                problem(f"{where}.{name}: not a list of objects")
        elif isinstance(t, tuple) and t[0] == "list" and isinstance(t[1], dict):
            if not isinstance(v, list):
                problem(f"{where}.{name}: not a list")
            else:
                for i, x in enumerate(v):
                    obj(f"{where}.{name}[{i}]", x, t[1], exact)
        elif t == {}:
            if not isinstance(v, dict):
                problem(f"{where}.{name}: not an object")
        elif isinstance(t, dict):
            obj(f"{where}.{name}", v, t, exact)
        elif not is_type(v, t):
            problem(f"{where}.{name}: {v!r} is not {t}")
    if exact:
        extra = sorted(set(d) - set(fields))
        if extra:
            problem(f"{where}: undocumented fields {extra}")


GATES_REPORT = {"pass": BOOL, "window_seconds": NUM, "gates": lst({})}

HEALTH = {"ok": BOOL, "checks": lst({"name": STR, "ok": BOOL, "reason": opt(STR)})}


def check_gate(d):
    obj("gate", d, {"pass": BOOL, "nodes": lst({})})
    nodes = d.get("nodes") if isinstance(d, dict) else None
    if not nodes:
        problem("gate: no nodes")
        return None
    for i, n in enumerate(nodes):
        obj(f"gate.nodes[{i}]", n,
            {"url": STR, "from": STR, "pass": BOOL, "report": opt({}), "error": opt(STR)},
            optional=("from",))
        if not isinstance(n, dict):
            continue
        rep = n.get("report")
        if (rep is None) == (n.get("error") is None):
            problem(f"gate.nodes[{i}]: exactly one of report and error must be set")
        if isinstance(rep, dict):
            obj(f"gate.nodes[{i}].report", rep, GATES_REPORT, exact=False)
            if n.get("pass") != rep.get("pass"):
                problem(f"gate.nodes[{i}]: pass disagrees with its report")
        elif n.get("pass") is not False:
            problem(f"gate.nodes[{i}]: a node without a report cannot pass")
    if d.get("pass") != all(isinstance(n, dict) and n.get("pass") is True for n in nodes):
        problem("gate: top-level pass disagrees with the nodes")
    return d.get("pass")


def check_status(d):
    peer = {
        "public_key": STR,
        "allowed_ips": lst(STR),
        "latest_handshake_timestamp_seconds": opt(INT),
        "latest_handshake_seconds_ago": opt(INT),
        "transfer_rx_bytes": INT,
        "transfer_tx_bytes": INT,
    }
    gates = {
        "pass": BOOL,
        "window_seconds": NUM,
        "gates": lst({
            "name": STR, "title": STR, "pass": BOOL,
            "failing": lst({"name": STR, "label": STR, "detail": STR}),
        }),
    }
    obj("status", d, {
        "url": STR,
        "reachable": BOOL,
        "interface": opt(STR),
        "public_key": opt(STR),
        "listening_port": opt(INT),
        "peer_count": opt(INT),
        "peers_truncated": BOOL,
        "peers": lst(peer),
        "live": opt(HEALTH),
        "ready": opt(HEALTH),
        "gates": opt(gates),
        "healthy": BOOL,
        "errors": lst(STR),
    })
    if not isinstance(d, dict):
        return None
    ok = d.get("healthy") and isinstance(d.get("gates"), dict) and d["gates"].get("pass")
    return bool(ok) and not d.get("errors")


def check_preflight(d):
    obj("preflight", d, {
        "pass": BOOL,
        "summary": STR,
        "checks": lst({
            "name": STR,
            "level": ("one_of", ("pass", "warn", "skip", "fail")),
            "detail": STR,
        }),
    })
    if not isinstance(d, dict):
        return None
    checks = d.get("checks") or []
    if not checks:
        problem("preflight: no checks")
    failed = any(isinstance(c, dict) and c.get("level") == "fail" for c in checks)
    if d.get("pass") == failed:
        problem("preflight: pass disagrees with the checks")
    if not str(d.get("summary", "")).startswith("Preflight: "):
        problem(f"preflight: summary {d.get('summary')!r}")
    return d.get("pass")


def check_mesh(d):
    member = {
        "name": STR,
        "public_key": STR,
        "endpoint": opt(STR),
        "addresses": lst(STR),
        "allowed_ips": lst(STR),
        "handshake_age_seconds": opt(NUM),
        "last_probe": opt({"ok": BOOL, "rtt_ms": opt(NUM), "age_seconds": NUM}),
        "healthy": BOOL,
        "problem": opt(STR),
    }
    obj("mesh", d, {
        "node": STR,
        "prefix": STR,
        "store_up": BOOL,
        "started": BOOL,
        "addresses": lst(STR),
        "members": lst(member),
        "conflicts": INT,
        "sync_errors": INT,
    }, exact=False)
    if not isinstance(d, dict):
        return None
    members = d.get("members") or []
    return bool(d.get("store_up") and d.get("started")
                and all(isinstance(m, dict) and m.get("healthy") for m in members))


def check_loadtest(d):
    obj("loadtest", d, {
        "pass": BOOL,
        "stopped_early": BOOL,
        "peers_configured": INT,
        "rate_per_peer": NUM,
        "ramp_s": NUM,
        "duration_s": NUM,
        "elapsed_s": NUM,
        "steady_s": NUM,
        "gate": GATES_REPORT,
        "summary": {},
        "handshakes": {},
        "counters": {},
        "rtt_ms": {"min": opt(NUM), "p50": opt(NUM), "p90": opt(NUM), "p99": opt(NUM),
                   "p999": opt(NUM), "max": opt(NUM), "mean": opt(NUM)},
        "intervals": lst({}),
        "soak": {},
        "target_pid": opt(INT),
        "peers": lst({}),
    }, exact=False)
    return d.get("pass") if isinstance(d, dict) else None


CHECKS = {
    "gate": check_gate,
    "status": check_status,
    "preflight": check_preflight,
    "mesh": check_mesh,
    "loadtest": check_loadtest,
}


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in CHECKS:
        sys.exit(__doc__)
    kind, path, flags = sys.argv[1], sys.argv[2], sys.argv[3:]
    try:
        with open(path) as f:
            d = json.load(f)
    except Exception as e:  # noqa: BLE001 - any failure is a test failure
        print(f"cli_json: {path}: not one JSON document: {e}")
        sys.exit(1)
    verdict = CHECKS[kind](d)
    if "--pass" in flags and verdict is not True:
        problem(f"{kind}: want a passing document, got pass={verdict}")
    if "--fail" in flags and verdict is not False:
        problem(f"{kind}: want a failing document, got pass={verdict}")
    for p in PROBLEMS:
        print(f"cli_json: {p}")
    sys.exit(1 if PROBLEMS else 0)


if __name__ == "__main__":
    main()
