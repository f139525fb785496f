#!/bin/sh
# Writes deploy/kubernetes/prometheusrule.yaml from phantommesh-rules.yml, so
# the Prometheus Operator and a plain Prometheus load the same rules.
# --check: exit 1 (and write nothing) when the committed file is stale.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src="$here/phantommesh-rules.yml"
dst="$here/../kubernetes/prometheusrule.yaml"
render() {
    cat <<'HEAD'
# GENERATED from deploy/prometheus/phantommesh-rules.yml by
# deploy/prometheus/sync-prometheusrule.sh: edit that file, then run the
# script. The release label is set in kustomization.yaml.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: phantommesh
  namespace: phantommesh
  labels:
    app.kubernetes.io/name: phantommesh
    release: kube-prometheus-stack
spec:
HEAD
    # Everything from the `groups:` key on, indented under spec.
    sed -n '/^groups:/,$p' "$src" | sed 's/^\(.\)/  \1/'
}
if [ "${1:-}" = "--check" ]; then
    if render | cmp -s - "$dst"; then
        echo "prometheusrule.yaml is in sync with phantommesh-rules.yml"
    else
        echo "prometheusrule.yaml is stale: run deploy/prometheus/sync-prometheusrule.sh" >&2
        exit 1
    fi
else
    render > "$dst"
fi
