#!/usr/bin/env bash
# Check 2: `promtool check rules` and `promtool test rules` on
# deploy/prometheus; every alert has a unit test where it fires and one where
# it stays silent; every runbook_url points at a section of deploy/alerts.md.
source "$(dirname "$0")/lib.sh"
need_promtool
PY=$(venv_python)
P=$REPO_ROOT/deploy/prometheus

log "promtool check rules"
promtool check rules "$P/phantommesh-rules.yml" || fail "promtool check rules"
log "promtool test rules"
promtool test rules "$P"/tests/*.yml || fail "promtool test rules"

# Debian builds Prometheus without the Kubernetes service discovery, so its
# promtool rejects kubernetes_sd_configs: check the example with static
# targets in its place (the relabelling and rule file are checked as they are).
log "promtool check config deploy/prometheus/prometheus.example.yml (static targets for kubernetes_sd)"
tmp=$(mktemp -d /tmp/pm-promcfg.XXXXXX)
add_cleanup "rm -rf '$tmp'"
cp "$P/phantommesh-rules.yml" "$tmp/"
"$PY" - "$P/prometheus.example.yml" "$tmp/prometheus.yml" <<'PYEOF' || fail "example config"
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
job = cfg["scrape_configs"][0]
assert job["kubernetes_sd_configs"][0]["role"] == "pod"
del job["kubernetes_sd_configs"]
job["static_configs"] = [{"targets": ["127.0.0.1:9586"]}]
# The admin token: promtool wants the credentials file to exist.
assert job["authorization"]["credentials_file"], "the job sends no admin token"
tok = sys.argv[2].rsplit("/", 1)[0] + "/admin-token"
open(tok, "w").write("example\n")
job["authorization"]["credentials_file"] = tok
yaml.safe_dump(cfg, open(sys.argv[2], "w"))
PYEOF
promtool check config "$tmp/prometheus.yml" || fail "promtool check config"

log "every alert tested firing and silent; runbook links resolve"
"$PY" - "$P/phantommesh-rules.yml" "$REPO_ROOT/deploy/alerts.md" "$P"/tests/*.yml <<'PYEOF' || fail "coverage or runbook links"
import re, sys, yaml
rules = yaml.safe_load(open(sys.argv[1]))
alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
fired, silent = set(), set()
for path in sys.argv[3:]:
    for t in yaml.safe_load(open(path))["tests"]:
        for a in t.get("alert_rule_test") or []:
            (fired if a.get("exp_alerts") else silent).add(a["alertname"])
problems = []
for name in alerts:
    if name not in fired:
        problems.append(f"{name}: no test where it fires")
    if name not in silent:
        problems.append(f"{name}: no test where it stays silent")
# GitHub-style anchors of the headings in alerts.md.
anchors = set()
for line in open(sys.argv[2]):
    m = re.match(r"#+\s+(.*)", line)
    if m:
        a = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        anchors.add(a)
for name, r in alerts.items():
    url = r["annotations"]["runbook_url"]
    frag = url.split("#", 1)[1] if "#" in url else ""
    if not url.split("#")[0].endswith("deploy/alerts.md") or frag not in anchors:
        problems.append(f"{name}: runbook_url {url} has no section in deploy/alerts.md")
for p in problems:
    print("  ERROR:", p)
if problems:
    sys.exit(1)
print(f"  ok: {len(alerts)} alerts, each tested firing and silent, each with a runbook section")
PYEOF
log "PASS"
