#!/usr/bin/env bash
# Check 1: deploy/kubernetes renders with `kubectl kustomize` (as is, and with
# each optional component and a changed release label), and every rendered
# manifest validates offline against the pinned Kubernetes schema; the
# Prometheus Operator resources are checked for shape; the PrometheusRule is
# in sync with deploy/prometheus/phantommesh-rules.yml.
source "$(dirname "$0")/lib.sh"
need_kubectl
PY=$(venv_python)
work=$(mktemp -d /tmp/pm-manifests.XXXXXX)
add_cleanup "rm -rf '$work'"
K=$REPO_ROOT/deploy/kubernetes

log "kubectl kustomize deploy/kubernetes (base)"
kubectl kustomize "$K" >"$work/base.yaml" || fail "base does not render"
"$PY" "$DEPLOY_TESTS_DIR/check_manifests.py" "$K8S_SCHEMA_VERSION" "$work/base.yaml" \
    --expect-release kube-prometheus-stack \
    --expect-kind Namespace --expect-kind ServiceAccount --expect-kind ConfigMap --expect-kind DaemonSet \
    --expect-kind Service --expect-kind PodMonitor --expect-kind PrometheusRule --absent-kind ServiceMonitor || fail "base manifests invalid"

# An operator's copy: another release label, the ServiceMonitor instead of the
# PodMonitor.
log "variant: release=my-prometheus, ServiceMonitor"
cp -r "$K" "$work/variant"
sed -i 's/value: kube-prometheus-stack/value: my-prometheus/' "$work/variant/kustomization.yaml"
cat >>"$work/variant/kustomization.yaml" <<'YAML'
components:
  - optional/servicemonitor
YAML
kubectl kustomize "$work/variant" >"$work/variant.yaml" || fail "variant does not render"
"$PY" "$DEPLOY_TESTS_DIR/check_manifests.py" "$K8S_SCHEMA_VERSION" "$work/variant.yaml" \
    --expect-release my-prometheus --expect-kind ServiceMonitor --expect-kind PrometheusRule \
    --absent-kind PodMonitor || fail "variant manifests invalid"

log "variant: privileged fallback"
cp -r "$K" "$work/privileged"
printf 'components:\n  - optional/privileged\n' >>"$work/privileged/kustomization.yaml"
kubectl kustomize "$work/privileged" >"$work/privileged.yaml" || fail "privileged variant does not render"
"$PY" "$DEPLOY_TESTS_DIR/check_manifests.py" "$K8S_SCHEMA_VERSION" "$work/privileged.yaml" \
    --expect-release kube-prometheus-stack || fail "privileged manifests invalid"
grep -q 'privileged: true' "$work/privileged.yaml" || fail "privileged component did not apply"

# Check 3 runs the real daemon on these files; here, the keys the DaemonSet
# relies on.
"$PY" - "$K/config/phantommesh.toml" "$K/config/gates.toml" <<'PYEOF' || fail "ConfigMap TOML files"
import sys, tomllib
cfg = tomllib.load(open(sys.argv[1], "rb"))
assert cfg["interface"]["private_key_file"].startswith("/var/lib/phantommesh/"), "key must live on the state hostPath"
gates = tomllib.load(open(sys.argv[2], "rb"))
names = [g["name"] for g in gates["gate"]]
assert names == ["performance", "technical"], names
print("  ok: ConfigMap TOML parses; gates", names)
PYEOF

log "PrometheusRule in sync with phantommesh-rules.yml"
sh "$REPO_ROOT/deploy/prometheus/sync-prometheusrule.sh" --check || fail "PrometheusRule is stale"
# Same rules, parsed: the generated file's spec equals the rules file.
"$PY" - "$REPO_ROOT/deploy/prometheus/phantommesh-rules.yml" "$K/prometheusrule.yaml" <<'PYEOF' || fail "PrometheusRule differs"
import sys, yaml
a = yaml.safe_load(open(sys.argv[1]))
b = yaml.safe_load(open(sys.argv[2]))["spec"]
assert a == b, "spec.groups differs from the rules file"
print("  ok: PrometheusRule spec == rules file,", sum(len(g["rules"]) for g in a["groups"]), "rules")
PYEOF
log "PASS"
