"""Checks that every metric name the rules and the dashboard use is one the
daemon exports.

Usage: metric_names.py SCRAPE.txt RULES.yml DASHBOARD.json

SCRAPE.txt is a /metrics answer of a running daemon. Names come from its
`# TYPE` lines (so a family with no samples yet still counts) and its
samples; a histogram family `x` also provides `x_bucket`, `x_sum`, `x_count`.
Recording rules' names count as defined. Two names come from elsewhere: `up`
(Prometheus itself) and `kube_pod_container_status_restarts_total`
(kube-state-metrics).
"""
import json
import re
import sys

import yaml

EXTERNAL = {
    "up": "Prometheus (scrape health)",
    "kube_pod_container_status_restarts_total": "kube-state-metrics",
}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
            "group_left", "group_right", "inf", "nan"}


def exported(scrape_text):
    names = set()
    for line in scrape_text.splitlines():
        m = re.match(r"# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)", line)
        if m:
            name, kind = m.groups()
            names.add(name)
            if kind == "histogram":
                names.update({name + "_bucket", name + "_sum", name + "_count"})
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", line)
        if m and not line.startswith("#"):
            names.add(m.group(1))
    return names


def expr_names(expr):
    """Metric names in a PromQL expression (Grafana variables allowed)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"'(?:[^'\\]|\\.)*'", "''", s)
    s = re.sub(r"\$\{?\w+\}?", "5m", s)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    out = set()
    for m in re.finditer(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", s):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in KEYWORDS:
            continue
        out.add(word)
    return out


def dashboard_exprs(node):
    """Every PromQL expression in a dashboard: panel targets and variables."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "expr" and isinstance(v, str):
                yield v
            elif k == "definition" and isinstance(v, str):
                # label_values(metric{...}, label): only the metric is a name.
                m = re.match(r"\s*label_values\((.*),\s*\w+\s*\)\s*$", v)
                yield m.group(1) if m else v
            elif k == "query" and isinstance(v, dict):
                continue  # same text as "definition"
            else:
                yield from dashboard_exprs(v)
    elif isinstance(node, list):
        for v in node:
            yield from dashboard_exprs(v)


def main():
    scrape, rules_path, dash_path = sys.argv[1:4]
    have = exported(open(scrape).read())
    rules = yaml.safe_load(open(rules_path))
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    used = {}
    for g in rules["groups"]:
        for r in g["rules"]:
            for n in expr_names(r["expr"]):
                used.setdefault(n, set()).add(f"rule {r.get('alert') or r.get('record')}")
    dash = json.load(open(dash_path))
    n_exprs = 0
    for e in dashboard_exprs(dash):
        n_exprs += 1
        for n in expr_names(e):
            used.setdefault(n, set()).add("dashboard")
    missing = {n: w for n, w in used.items() if n not in have and n not in recorded and n not in EXTERNAL}
    for n, where in sorted(missing.items()):
        print(f"  ERROR: {n} is not exported by the daemon (used by {', '.join(sorted(where))})")
    if not used or n_exprs < 10:
        print("  ERROR: found too few expressions: the extraction is broken")
        sys.exit(1)
    if missing:
        sys.exit(1)
    base = {n for n in have if not re.search(r"_(bucket|sum|count)$", n) or n[: n.rfind("_")] not in have}
    unused = sorted(n for n in base if n not in used
                    and not any(u.startswith(n + "_") and u[len(n) + 1:] in ("bucket", "sum", "count") for u in used))
    ext = sorted(n for n in used if n in EXTERNAL)
    print(f"  ok: {len(used)} names used by {sum(len(g['rules']) for g in rules['groups'])} rules and "
          f"{n_exprs} dashboard expressions; all exported ({len(have)} names scraped), recorded "
          f"({len(recorded)}) or external ({', '.join(f'{n}: {EXTERNAL[n]}' for n in ext)})")
    if unused:
        print(f"  note: exported but unused: {', '.join(unused)}")


if __name__ == "__main__":
    main()
