"""Comparisons for the end-to-end check (04-e2e-prometheus.sh), run inside the
network namespace where Prometheus listens.

  e2e_checks.py agree PROM NODE=ADMIN_URL...
      Prometheus' view of each node agrees with the node's /gates: the
      latency quantiles (histogram_quantile over the scraped buckets) fall in
      the bucket of the gate's P50/P99, and phantommesh_gate_passed equals
      each gate's "pass".
  e2e_checks.py wait-true PROM SECONDS EXPR [NODE...]
      Polls EXPR until it returns a series for each NODE (label "node").
  e2e_checks.py never-true PROM EXPR NODE
      EXPR has no series for NODE now.
  e2e_checks.py alert-active PROM SECONDS ALERTNAME NODE
      /api/v1/alerts lists ALERTNAME (pending or firing) for NODE.
  e2e_checks.py dashboard PROM DASHBOARD.json
      Every dashboard expression runs without error; panels outside a short
      list (which may be legitimately empty) return data.
"""
import bisect
import json
import re
import sys
import time
import urllib.parse
import urllib.request



def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def query(prom, expr):
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        res = get(url)
    except urllib.error.HTTPError as e:
        body = e.read().decode(errors="replace")
        raise SystemExit(f"  ERROR: query failed ({e.code}): {expr}\n    {body}")
    if res.get("status") != "success":
        raise SystemExit(f"  ERROR: query failed: {expr}: {res}")
    return res["data"]["result"]


def by_node(result):
    return {r["metric"].get("node"): r for r in result}


def bucket_bounds(prom, node):
    res = query(prom, f'phantommesh_tunnel_test_rtt_seconds_bucket{{node="{node}"}}')
    return sorted(float(r["metric"]["le"]) for r in res if r["metric"]["le"] != "+Inf")


def bucket_of(bounds, v):
    """Index of the bucket (bounds[i-1], bounds[i]] holding v."""
    return bisect.bisect_left(bounds, v)


def gate_metric(report, gate, metric):
    for g in report["gates"]:
        if g["name"] == gate:
            for m in g["metrics"]:
                if m["name"] == metric:
                    return m["actual"]
    return None


def agree(prom, nodes):
    problems = []
    for spec in nodes:
        node, admin = spec.split("=", 1)
        bounds = bucket_bounds(prom, node)
        if not bounds:
            problems.append(f"{node}: no phantommesh_tunnel_test_rtt_seconds_bucket in Prometheus")
            continue
        # Latency: the cumulative buckets hold every round trip since start,
        # like the gate's window (the daemon is younger than its 5 minutes).
        for q, metric, rule in ((0.5, "p50_latency", "p50_5m"), (0.99, "p99_latency", "p99_5m")):
            report = get(f"{admin}/gates")
            gate_ms = gate_metric(report, "performance", metric)
            cum = by_node(query(prom, f'histogram_quantile({q}, phantommesh_tunnel_test_rtt_seconds_bucket{{node="{node}"}})'))
            rec = by_node(query(prom, f'phantommesh:tunnel_test_rtt_seconds:{rule}{{node="{node}"}}'))
            if gate_ms is None or node not in cum or node not in rec:
                problems.append(f"{node}: {metric}: missing data (gate {gate_ms}, prometheus {list(cum)}, rule {list(rec)})")
                continue
            gate_s = gate_ms / 1000.0
            p_cum = float(cum[node]["value"][1])
            p_rec = float(rec[node]["value"][1])
            b_gate, b_cum, b_rec = bucket_of(bounds, gate_s), bucket_of(bounds, p_cum), bucket_of(bounds, p_rec)
            # The gate's own histogram is log-linear: allow its estimate a few
            # percent across a bucket edge.
            near = b_gate == b_cum or bucket_of(bounds, gate_s * 0.95) == b_cum or bucket_of(bounds, gate_s * 1.05) == b_cum
            print(f"  {node} {metric}: /gates {gate_ms:.4f} ms, histogram_quantile {p_cum * 1000:.4f} ms, "
                  f"recording rule {p_rec * 1000:.4f} ms (buckets {b_gate}/{b_cum}/{b_rec})")
            if not near:
                problems.append(f"{node}: {metric}: /gates {gate_ms} ms and Prometheus {p_cum * 1000} ms are in different buckets")
            # rate() extrapolates each bucket series on its own while the
            # series are younger than the 5 m window, so on a fresh node the
            # rule can be several buckets off: only require a value.
            if not (p_rec > 0 and p_rec < float("inf")):
                problems.append(f"{node}: {metric}: recording rule gave {p_rec}")
        # Gates: retry until two /gates reads agree (a gate can flip between
        # reads), then Prometheus' latest sample must say the same.
        for attempt in range(15):
            before = {g["name"]: g["pass"] for g in get(f"{admin}/gates")["gates"]}
            time.sleep(2.5)  # at least two scrapes and rule evaluations
            prom_pass = {r["metric"]["gate"]: r["value"][1] == "1"
                         for r in query(prom, f'phantommesh_gate_passed{{node="{node}"}}')}
            after = {g["name"]: g["pass"] for g in get(f"{admin}/gates")["gates"]}
            if before == after:
                break
        else:
            problems.append(f"{node}: gates kept changing")
            continue
        print(f"  {node} gates: /gates {after}, phantommesh_gate_passed {prom_pass}")
        if prom_pass != after:
            problems.append(f"{node}: phantommesh_gate_passed {prom_pass} != /gates {after}")
    return problems


def wait_true(prom, seconds, expr, nodes):
    deadline = time.time() + seconds
    while True:
        got = by_node(query(prom, expr))
        if all(n in got for n in nodes):
            for n in nodes:
                print(f"  {expr} is true for node {n}: {got[n]['value'][1]}")
            return []
        if time.time() > deadline:
            return [f"{expr} not true for {[n for n in nodes if n not in got]} within {seconds} s (got {list(got)})"]
        time.sleep(1)


def alert_active(prom, seconds, name, node):
    deadline = time.time() + seconds
    while True:
        alerts = get(f"{prom}/api/v1/alerts")["data"]["alerts"]
        hit = [a for a in alerts if a["labels"].get("alertname") == name and a["labels"].get("node") == node]
        if hit:
            print(f"  alert {name} for node {node}: {hit[0]['state']}")
            return []
        if time.time() > deadline:
            return [f"alert {name} not pending/firing for node {node} within {seconds} s"]
        time.sleep(1)


# Panels whose queries may be empty on a healthy pair of nodes.
MAY_BE_EMPTY = {
    "Nodes",  # offloads: none active in a network namespace
    # The pair is peered by its config files, without a [mesh]: no mesh
    # families. Their queries still run here (no errors); 03 checks their
    # names against a daemon with a [mesh].
    "Mesh members per node",
    "Mesh store up",
    "Mesh gate",
    "Mesh convergence P50 / P99",
    "Mesh conflicts and sync errors",
}


def dashboard(prom, path):
    dash = json.load(open(path))
    subst = {"$node": ".*", "$interface": ".*", "$__rate_interval": "1m"}
    problems, n = [], 0
    for p in dash["panels"]:
        for t in p.get("targets", []):
            expr = t["expr"]
            for k, v in subst.items():
                expr = expr.replace(k, v)
            if "$" in expr:
                problems.append(f"panel {p['title']}: unknown variable in {t['expr']}")
                continue
            n += 1
            res = query(prom, expr)
            if not res and p["title"] not in MAY_BE_EMPTY:
                problems.append(f"panel {p['title']} ({t['refId']}): no data for {expr}")
    for v in dash["templating"]["list"]:
        if v["type"] != "query":
            continue
        m = re.match(r"label_values\((.*),\s*(\w+)\)$", v["definition"])
        expr, label = m.group(1).replace("$node", ".*"), m.group(2)
        values = {r["metric"].get(label) for r in query(prom, expr)} - {None}
        print(f"  variable {v['name']}: {sorted(values)}")
        if not values:
            problems.append(f"variable {v['name']}: no values from {v['definition']}")
    print(f"  {n} dashboard queries ran")
    return problems


def main():
    cmd, prom = sys.argv[1], sys.argv[2]
    if cmd == "agree":
        problems = agree(prom, sys.argv[3:])
    elif cmd == "wait-true":
        problems = wait_true(prom, float(sys.argv[3]), sys.argv[4], sys.argv[5:])
    elif cmd == "never-true":
        got = by_node(query(prom, sys.argv[3]))
        problems = [f"{sys.argv[3]} is true for node {sys.argv[4]}"] if sys.argv[4] in got else []
    elif cmd == "alert-active":
        problems = alert_active(prom, float(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif cmd == "dashboard":
        problems = dashboard(prom, sys.argv[3])
    else:
        raise SystemExit(f"unknown command {cmd}")
    for p in problems:
        print("  ERROR:", p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
