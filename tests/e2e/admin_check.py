#!/usr/bin/env python3
"""Checks the admin server's JSON and Prometheus answers for the e2e tests.

    admin_check.py tunnel-test FILE [--mode M] [--ok|--not-ok] [--sent N]
                               [--peer KEY] [--error-has TEXT]
                               [--probe-address IP] [--probe-sent N]
                               [--probe-received N] [--no-probe]
                               [--handshake forced|reused]
    admin_check.py error FILE [--has TEXT]      {"ok": false, "error": "..."}
    admin_check.py gates FILE [--pass|--fail] [--gate NAME:pass|fail]...
                              [--metric GATE.METRIC:pass|fail]...
                              [--names a,b] [--single]
    admin_check.py gate-cli-json FILE [--pass|--fail]
    admin_check.py status-json FILE [--interface IF] [--peer KEY]
    admin_check.py prom FILE        exposition sanity (TYPE before samples,
                                    numeric values, no duplicate series)
    admin_check.py metric FILE NAME [label=value]...
                                    prints the value of the one matching series

Exit 0 when the answer is as expected; otherwise prints every problem and
exits 1.
"""
import json
import math
import re
import sys

PROBLEMS = []


def problem(msg):
    PROBLEMS.append(msg)


def load_json(path):
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError) as e:
        problem(f"{path}: not JSON: {e}")
        return None


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def opt_value(args, name, default=None):
    if name in args:
        i = args.index(name)
        return args[i + 1]
    return default


def opt_values(args, name):
    return [args[i + 1] for i, a in enumerate(args) if a == name]


def check_tunnel_test(path, args):
    d = load_json(path)
    if not isinstance(d, dict):
        problem("not a JSON object")
        return
    keys = {"ok", "mode", "handshake_ms", "rtt", "sent", "received", "errors", "duration_ms"}
    reused = d.get("handshake") == "reused"
    if d.get("mode") == "peer":
        # "forced": a new handshake was timed; "reused": one was forced less
        # than 5 s ago, so the current session (its age) was reported.
        keys |= {"peer", "handshake"}
        if reused:
            keys.add("handshake_age_seconds")
        if "probe" in d:
            keys.add("probe")
        if d.get("handshake") not in ("forced", "reused"):
            problem(f"handshake is not forced|reused: {d.get('handshake')!r}")
    if set(d) != keys:
        problem(f"keys {sorted(d)} != {sorted(keys)}")
    if not isinstance(d.get("ok"), bool):
        problem("ok is not a boolean")
    if d.get("mode") not in ("self", "self-handshake-only", "peer"):
        problem(f"unknown mode {d.get('mode')!r}")
    for k in ("sent", "received"):
        if not (isinstance(d.get(k), int) and not isinstance(d.get(k), bool) and d[k] >= 0):
            problem(f"{k} is not a count: {d.get(k)!r}")
    if not is_num(d.get("duration_ms")) or d["duration_ms"] < 0:
        problem(f"duration_ms is not a duration: {d.get('duration_ms')!r}")
    hs = d.get("handshake_ms")
    if hs is not None and (not is_num(hs) or hs < 0):
        problem(f"handshake_ms is not a duration: {hs!r}")
    errors = d.get("errors")
    if not (isinstance(errors, list) and all(isinstance(e, str) for e in errors)):
        problem("errors is not a list of strings")
        errors = []
    rtt = d.get("rtt")
    if rtt is not None:
        if not isinstance(rtt, dict) or set(rtt) != {"p50_ms", "p99_ms", "max_ms"}:
            problem(f"rtt is not {{p50_ms, p99_ms, max_ms}}: {rtt!r}")
        elif not all(is_num(rtt[k]) for k in rtt):
            problem(f"rtt values are not numbers: {rtt!r}")
        elif not 0 <= rtt["p50_ms"] <= rtt["p99_ms"] <= rtt["max_ms"]:
            problem(f"rtt not ordered p50 <= p99 <= max: {rtt!r}")
    probe = d.get("probe")
    if probe is not None:
        check_probe(probe)
    if d.get("ok") is True:
        if isinstance(probe, dict) and not (probe.get("sent", 0) > 0 and
                                            probe.get("sent") == probe.get("received")):
            problem(f"ok but probes sent {probe.get('sent')} != received {probe.get('received')}")
        if errors:
            problem(f"ok but errors: {errors}")
        if hs is None and not (reused and is_num(d.get("handshake_age_seconds"))):
            problem("ok without handshake_ms (or a reused session's age)")
        if d.get("sent") != d.get("received"):
            problem(f"ok but sent {d.get('sent')} != received {d.get('received')}")
        if d.get("mode") in ("self", "peer") and d.get("sent", 0) > 0 and rtt is None:
            problem("ok with probes but no rtt")
    if d.get("ok") is False and not errors:
        problem("not ok but no errors listed")
    if "--ok" in args and d.get("ok") is not True:
        problem(f"want ok=true, got {d.get('ok')!r} (errors {errors})")
    if "--not-ok" in args and d.get("ok") is not False:
        problem(f"want ok=false, got {d.get('ok')!r}")
    mode = opt_value(args, "--mode")
    if mode is not None and d.get("mode") != mode:
        problem(f"want mode {mode!r}, got {d.get('mode')!r}")
    handshake = opt_value(args, "--handshake")
    if handshake is not None and d.get("handshake") != handshake:
        problem(f"want handshake {handshake!r}, got {d.get('handshake')!r}")
    sent = opt_value(args, "--sent")
    if sent is not None and d.get("sent") != int(sent):
        problem(f"want sent={sent}, got {d.get('sent')!r}")
    peer = opt_value(args, "--peer")
    if peer is not None and d.get("peer") != peer:
        problem(f"want peer {peer!r}, got {d.get('peer')!r}")
    has = opt_value(args, "--error-has")
    if has is not None and not any(has in e for e in errors):
        problem(f"no error mentions {has!r}: {errors}")
    if "--no-probe" in args and probe is not None:
        problem(f"want no probe, got {probe!r}")
    want = {k: opt_value(args, f"--probe-{k}") for k in ("address", "sent", "received")}
    if any(v is not None for v in want.values()):
        if not isinstance(probe, dict):
            problem(f"want probes, got probe={probe!r}")
            return
        for k, v in want.items():
            if v is not None and str(probe.get(k)) != v:
                problem(f"want probe {k}={v}, got {probe.get(k)!r}")
        print(f"probes to {probe.get('address')}: {probe.get('received')}/{probe.get('sent')} "
              f"answered, rtt {probe.get('rtt')}")


def check_probe(p):
    if not isinstance(p, dict) or set(p) != {"address", "sent", "received", "rtt"}:
        problem(f"probe is not {{address, sent, received, rtt}}: {p!r}")
        return
    if not isinstance(p["address"], str) or not p["address"]:
        problem(f"probe address is not an address: {p['address']!r}")
    for k in ("sent", "received"):
        if not (isinstance(p[k], int) and not isinstance(p[k], bool) and p[k] >= 0):
            problem(f"probe {k} is not a count: {p[k]!r}")
            return
    if p["received"] > p["sent"]:
        problem(f"probe received {p['received']} > sent {p['sent']}")
    rtt = p["rtt"]
    if (rtt is None) != (p["received"] == 0):
        problem(f"probe rtt {rtt!r} with {p['received']} answers")
    elif rtt is not None and not (isinstance(rtt, dict) and all(is_num(rtt.get(k)) for k in
                                                               ("p50_ms", "p99_ms", "max_ms"))
                                  and 0 <= rtt["p50_ms"] <= rtt["p99_ms"] <= rtt["max_ms"]):
        problem(f"probe rtt is not ordered numbers: {rtt!r}")


def check_error(path, args):
    d = load_json(path)
    if not isinstance(d, dict) or set(d) != {"ok", "error"}:
        problem(f"not {{ok, error}}: {d!r}")
        return
    if d["ok"] is not False or not isinstance(d["error"], str) or not d["error"]:
        problem(f"want ok=false and an error text: {d!r}")
    has = opt_value(args, "--has")
    if has is not None and has not in str(d.get("error")):
        problem(f"error {d.get('error')!r} does not mention {has!r}")


def check_gate_report(d, where):
    """Structure of one report (every gate, or one with /gates/<name>)."""
    if not isinstance(d, dict):
        problem(f"{where}: not an object")
        return []
    for k in ("pass", "gates"):
        if k not in d:
            problem(f"{where}: no {k!r}")
    if not isinstance(d.get("pass"), bool):
        problem(f"{where}: pass is not a boolean")
    gates = d.get("gates")
    if not isinstance(gates, list) or not gates:
        problem(f"{where}: gates is not a non-empty list")
        return []
    for g in gates:
        if not isinstance(g, dict) or not {"name", "pass", "metrics"} <= set(g):
            problem(f"{where}: gate lacks name/pass/metrics: {g!r}")
            continue
        ms = g["metrics"]
        if not isinstance(ms, list) or not ms:
            problem(f"{where}: gate {g['name']}: metrics is not a non-empty list")
            continue
        for m in ms:
            need = {"name", "target", "actual", "pass", "margin"}
            if not isinstance(m, dict) or not need <= set(m):
                problem(f"{where}: gate {g['name']}: metric lacks {need}: {m!r}")
                continue
            t = m["target"]
            if not (isinstance(t, dict) and is_num(t.get("value")) and isinstance(t.get("op"), str)):
                problem(f"{where}: {g['name']}.{m['name']}: bad target {t!r}")
            if m["actual"] is not None and not is_num(m["actual"]):
                problem(f"{where}: {g['name']}.{m['name']}: actual {m['actual']!r}")
            if m["margin"] is not None and not is_num(m["margin"]):
                problem(f"{where}: {g['name']}.{m['name']}: margin {m['margin']!r}")
            if not isinstance(m["pass"], bool):
                problem(f"{where}: {g['name']}.{m['name']}: pass is not a boolean")
        if g["pass"] != all(m.get("pass") is True for m in ms if isinstance(m, dict)):
            problem(f"{where}: gate {g['name']}: pass {g['pass']} disagrees with its metrics")
    if d.get("pass") != all(g.get("pass") is True for g in gates if isinstance(g, dict)):
        problem(f"{where}: top-level pass {d.get('pass')} disagrees with the gates")
    return gates


def check_gates(path, args):
    d = load_json(path)
    if d is None:
        return
    gates = check_gate_report(d, path)
    if "--pass" in args and d.get("pass") is not True:
        problem(f"want pass=true: {failing(gates)}")
    if "--fail" in args and d.get("pass") is not False:
        problem("want pass=false, got true")
    names = opt_value(args, "--names")
    if names is not None:
        got = [g.get("name") for g in gates]
        if sorted(got) != sorted(names.split(",")):
            problem(f"gate names {got} != {names.split(',')}")
    if "--single" in args and len(gates) != 1:
        problem(f"want one gate, got {len(gates)}")
    for spec in opt_values(args, "--metric"):
        path_, _, want = spec.partition(":")
        gname, _, mname = path_.partition(".")
        g = next((g for g in gates if g.get("name") == gname), None)
        m = next((m for m in (g or {}).get("metrics", []) if m.get("name") == mname), None)
        if m is None:
            problem(f"no metric {path_!r}")
        elif m.get("pass") is not (want == "pass"):
            problem(f"{path_}: want {want}, got pass={m.get('pass')} actual={m.get('actual')}")
    for spec in opt_values(args, "--gate"):
        name, _, want = spec.partition(":")
        g = next((g for g in gates if g.get("name") == name), None)
        if g is None:
            problem(f"no gate {name!r}")
        elif g.get("pass") is not (want == "pass"):
            problem(f"gate {name}: want {want}, got pass={g.get('pass')}: {failing([g])}")


def failing(gates):
    out = []
    for g in gates:
        for m in g.get("metrics", []):
            if isinstance(m, dict) and not m.get("pass"):
                out.append(f"{g.get('name')}.{m.get('name')}={m.get('actual')} ({m.get('reason')})")
    return ", ".join(out) or "none failing"


def check_gate_cli_json(path, args):
    d = load_json(path)
    if d is None:
        return
    # One node: a report; several: a list or an object holding reports.
    reports = []
    if isinstance(d, dict) and "gates" in d:
        reports = [d]
    elif isinstance(d, dict) and isinstance(d.get("nodes"), list):
        reports = [n.get("report", n) for n in d["nodes"]]
    elif isinstance(d, list):
        reports = d
    if not reports:
        problem(f"no gate report in the CLI's JSON: {str(d)[:200]}")
        return
    for r in reports:
        check_gate_report(r, path)
    ok = all(isinstance(r, dict) and r.get("pass") is True for r in reports)
    if "--pass" in args and not ok:
        problem("want every report to pass")
    if "--fail" in args and ok:
        problem("want a failing report")


def check_status_json(path, args):
    d = load_json(path)
    if not isinstance(d, dict):
        problem("status JSON is not an object")
        return
    text = json.dumps(d)
    ifname = opt_value(args, "--interface")
    if ifname is not None and ifname not in text:
        problem(f"interface {ifname} not in the status")
    peer = opt_value(args, "--peer")
    if peer is not None and peer not in text:
        problem(f"peer {peer} not in the status")


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$')
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def parse_labels(text):
    labels, pos = {}, 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        if not m:
            raise ValueError(f"bad labels {text!r}")
        labels[m.group(1)] = m.group(2)
        pos = m.end()
    return labels


def parse_prom(path):
    """[(name, labels, value)], checking the format on the way."""
    samples, types, seen = [], {}, set()
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    else:
        problem("exposition does not end with a newline")
    for n, line in enumerate(lines, 1):
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] == "TYPE":
                if parts[2] in types:
                    problem(f"line {n}: second TYPE for {parts[2]}")
                types[parts[2]] = parts[3] if len(parts) > 3 else ""
            continue
        m = SAMPLE.match(line)
        if not m:
            problem(f"line {n}: not a sample: {line!r}")
            continue
        name, labels_text, value = m.group(1), m.group(3) or "", m.group(4)
        try:
            labels = parse_labels(labels_text)
            v = float(value)
        except ValueError as e:
            problem(f"line {n}: {e}: {line!r}")
            continue
        family = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[: -len(suffix)] in types:
                family = name[: -len(suffix)]
        if family not in types:
            problem(f"line {n}: sample of {name} without a TYPE line before it")
        key = (name, tuple(sorted(labels.items())))
        if key in seen:
            problem(f"line {n}: duplicate series {name}{labels}")
        seen.add(key)
        samples.append((name, labels, v))
    return samples


def check_prom(path, _args):
    samples = parse_prom(path)
    if not samples:
        problem("no samples")


def print_metric(path, args):
    name, want = args[0], dict(a.split("=", 1) for a in args[1:])
    hits = [v for (n, labels, v) in parse_prom(path)
            if n == name and all(labels.get(k) == w for k, w in want.items())]
    if len(hits) != 1:
        problem(f"{len(hits)} series match {name} {want}")
        return
    v = hits[0]
    print(int(v) if v == int(v) else v)


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 64
    cmd, path, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    handlers = {
        "tunnel-test": check_tunnel_test,
        "error": check_error,
        "gates": check_gates,
        "gate-cli-json": check_gate_cli_json,
        "status-json": check_status_json,
        "prom": check_prom,
    }
    if cmd == "metric":
        print_metric(path, args)
    elif cmd in handlers:
        handlers[cmd](path, args)
    else:
        print(__doc__, file=sys.stderr)
        return 64
    for p in PROBLEMS:
        print(f"  {cmd}: {p}", file=sys.stderr)
    return 1 if PROBLEMS else 0


if __name__ == "__main__":
    sys.exit(main())
