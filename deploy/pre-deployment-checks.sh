#!/usr/bin/env bash
# PhantomMesh pre-deployment checks: the go-live runbook's T-4h step
# ("Pre-Deployment Validation"), adapted to the PhantomMesh DaemonSet.
#
#   PROMETHEUS_URL=http://127.0.0.1:9090 ./deploy/pre-deployment-checks.sh
#
# One line per check, as the runbook expects them:
#   ✅ Kubernetes cluster: HEALTHY      API server ready, every node Ready
#   ✅ DaemonSet: ROLLED OUT            rollout complete, every scheduled pod updated and available
#   ✅ Networking: OPERATIONAL          one Ready pod per node (readiness includes the self
#                                      test through the node's whole data path), no restarts
#   ✅ Security: VALIDATED              NET_ADMIN only, ALL others dropped, not privileged,
#                                      admin API not on 0.0.0.0
#   ✅ Go-live gates: PASSED            `phantommesh gate` passes on every node (kubectl exec)
#   ✅ Monitoring: ARMED                Prometheus scrapes every pod (up == 1) and has the
#                                      PhantomMesh alert rules loaded
# A failing check prints ❌ and the reasons below it; the script exits 1 if any
# check failed, 0 otherwise.
#
# Settings (environment):
#   KUBECTL          kubectl command (default: kubectl); may include flags,
#                    e.g. "kubectl --context prod"
#   NAMESPACE        default: phantommesh
#   DAEMONSET        default: phantommesh
#   POD_SELECTOR     default: app.kubernetes.io/name=phantommesh
#   ADMIN_PORT       default: 9586
#   PROMETHEUS_URL   default: http://127.0.0.1:9090 (e.g. after
#                    kubectl -n monitoring port-forward svc/prometheus-operated 9090)
#   CURL             curl command for Prometheus (default: curl)
#   GATE_TOKEN_FILE  token file inside the pod, passed to `phantommesh gate`
#   ALLOW_PRIVILEGED 1 accepts the privileged fallback (runc 1.2.0-1.2.3)
#   ROLLOUT_TIMEOUT  default: 120s
set -uo pipefail

KUBECTL=${KUBECTL:-kubectl}
NAMESPACE=${NAMESPACE:-phantommesh}
DAEMONSET=${DAEMONSET:-phantommesh}
POD_SELECTOR=${POD_SELECTOR:-app.kubernetes.io/name=phantommesh}
ADMIN_PORT=${ADMIN_PORT:-9586}
PROMETHEUS_URL=${PROMETHEUS_URL:-http://127.0.0.1:9090}
CURL=${CURL:-curl}
GATE_TOKEN_FILE=${GATE_TOKEN_FILE:-}
ALLOW_PRIVILEGED=${ALLOW_PRIVILEGED:-0}
ROLLOUT_TIMEOUT=${ROLLOUT_TIMEOUT:-120s}

failed=0
# KUBECTL may hold flags: split it into words on purpose.
# shellcheck disable=SC2086
k() { $KUBECTL "$@"; }
kn() { k -n "$NAMESPACE" "$@"; }

# report LABEL OK_WORD BAD_WORD REASONS: one runbook line, reasons indented.
report() {
    local label=$1 ok=$2 bad=$3 reasons=$4
    if [ -z "$reasons" ]; then
        printf '✅ %s: %s\n' "$label" "$ok"
    else
        printf '❌ %s: %s\n' "$label" "$bad"
        printf '%s\n' "$reasons" | sed '/^$/d; s/^    /       /; t; s/^/   - /'
        failed=1
    fi
}

# --- Kubernetes cluster -----------------------------------------------------
reasons=""
readyz=$(k get --raw=/readyz 2>&1) || reasons+="API server /readyz: ${readyz:-no answer}"$'\n'
nodes=$(k get nodes -o jsonpath='{range .items[*]}{.metadata.name}{"|"}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>&1) \
    || reasons+="cannot list nodes: $nodes"$'\n'
node_count=0
if [ -z "$reasons" ]; then
    while IFS='|' read -r name ready; do
        [ -n "$name" ] || continue
        node_count=$((node_count + 1))
        [ "$ready" = "True" ] || reasons+="node $name is not Ready (Ready=${ready:-unknown})"$'\n'
    done <<<"$nodes"
    [ "$node_count" -gt 0 ] || reasons+="no nodes"$'\n'
fi
report "Kubernetes cluster" HEALTHY UNHEALTHY "$reasons"

# --- DaemonSet ----------------------------------------------------------------
reasons=""
if ! out=$(kn rollout status "daemonset/$DAEMONSET" --timeout="$ROLLOUT_TIMEOUT" 2>&1); then
    reasons+="rollout not complete: $(printf '%s' "$out" | tail -1)"$'\n'
fi
counts=$(kn get daemonset "$DAEMONSET" -o jsonpath='{.status.desiredNumberScheduled} {.status.updatedNumberScheduled} {.status.numberReady} {.status.numberAvailable} {.status.numberMisscheduled}' 2>&1) \
    || reasons+="cannot read daemonset/$DAEMONSET: $counts"$'\n'
desired=0
if read -r desired updated ready available misscheduled <<<"$counts" && [[ "$desired" =~ ^[0-9]+$ ]]; then
    [ "$desired" -gt 0 ] || reasons+="no pods scheduled (desired 0)"$'\n'
    [ "${updated:-0}" = "$desired" ] || reasons+="$updated of $desired pods run the current template"$'\n'
    [ "${available:-0}" = "$desired" ] || reasons+="$available of $desired pods available"$'\n'
    [ "${misscheduled:-0}" = "0" ] || [ -z "$misscheduled" ] || reasons+="$misscheduled pods misscheduled"$'\n'
else
    desired=0
fi
report "DaemonSet" "ROLLED OUT" "NOT ROLLED OUT" "$reasons"

# --- Networking: one Ready pod per node --------------------------------------------
reasons=""
pods=$(kn get pods -l "$POD_SELECTOR" -o jsonpath='{range .items[*]}{.metadata.name}{"|"}{.spec.nodeName}{"|"}{.status.podIP}{"|"}{.status.conditions[?(@.type=="Ready")].status}{"|"}{.status.containerStatuses[0].restartCount}{"\n"}{end}' 2>&1) \
    || { reasons+="cannot list pods: $pods"$'\n'; pods=""; }
pod_names=() pod_ips=() pod_nodes=()
while IFS='|' read -r name node ip ready restarts; do
    [ -n "$name" ] || continue
    pod_names+=("$name") pod_nodes+=("$node") pod_ips+=("$ip")
    [ "$ready" = "True" ] || reasons+="pod $name on $node is not Ready"$'\n'
    [ "${restarts:-0}" = "0" ] || reasons+="pod $name on $node restarted $restarts times (runbook: 0)"$'\n'
done <<<"$pods"
if [ ${#pod_names[@]} -eq 0 ]; then
    reasons+="no pods match $POD_SELECTOR in $NAMESPACE"$'\n'
elif [ "$desired" -gt 0 ] && [ ${#pod_names[@]} -ne "$desired" ]; then
    reasons+="${#pod_names[@]} pods for $desired scheduled"$'\n'
fi
report "Networking" OPERATIONAL DEGRADED "$reasons"

# --- Security -------------------------------------------------------------------
reasons=""
c='.spec.template.spec.containers[0]'
sec=$(kn get daemonset "$DAEMONSET" -o jsonpath="{$c.securityContext.privileged}{\"|\"}{$c.securityContext.capabilities.drop}{\"|\"}{$c.securityContext.capabilities.add}{\"|\"}{$c.env[?(@.name==\"PHANTOMMESH_ADMIN_LISTEN\")].value}{\"\\n\"}" 2>&1) \
    || reasons+="cannot read daemonset/$DAEMONSET: $sec"$'\n'
if [ -z "$reasons" ]; then
    IFS='|' read -r privileged drop add listen <<<"$sec"
    if [ "$privileged" = "true" ]; then
        [ "$ALLOW_PRIVILEGED" = 1 ] || reasons+="container is privileged (set ALLOW_PRIVILEGED=1 if the runc fallback is intended)"$'\n'
    else
        [[ "$drop" == *'"ALL"'* ]] || reasons+="capabilities.drop is ${drop:-empty}, want [\"ALL\"]"$'\n'
        extra=$(printf '%s' "$add" | tr -d '[]" ' | tr ',' '\n' | grep -vx -e NET_ADMIN -e NET_RAW -e '' || true)
        [ -z "$extra" ] || reasons+="extra capabilities: $(printf "%s" "$extra" | tr "\n" " ")"$'\n'
    fi
    case "$listen" in
        0.0.0.0:* | "[::]:"* | :*) reasons+="admin API listens on all addresses ($listen)"$'\n' ;;
    esac
fi
report "Security" VALIDATED "NOT VALIDATED" "$reasons"

# --- Go-live gates on every node --------------------------------------------------
reasons=""
for i in "${!pod_names[@]}"; do
    pod=${pod_names[$i]} ip=${pod_ips[$i]}
    [ -n "$ip" ] || { reasons+="pod $pod has no IP"$'\n'; continue; }
    [[ "$ip" == *:* ]] && ip="[$ip]"
    args=(gate --url "http://$ip:$ADMIN_PORT")
    [ -z "$GATE_TOKEN_FILE" ] || args+=(--token-file "$GATE_TOKEN_FILE")
    out=$(kn exec "$pod" -c phantommesh -- phantommesh "${args[@]}" 2>&1)
    rc=$?
    case $rc in
        0) ;;
        1) reasons+="node ${pod_nodes[$i]}: a gate fails:"$'\n'"$(printf '%s\n' "$out" | grep '❌' | head -8 | sed 's/^/    /')"$'\n' ;;
        2) reasons+="node ${pod_nodes[$i]}: admin API unreachable at http://$ip:$ADMIN_PORT"$'\n' ;;
        *) reasons+="node ${pod_nodes[$i]}: kubectl exec failed ($rc): $(printf '%s' "$out" | tail -1)"$'\n' ;;
    esac
done
[ ${#pod_names[@]} -gt 0 ] || reasons+="no pods to check"$'\n'
report "Go-live gates" PASSED FAILED "$reasons"

# --- Monitoring -------------------------------------------------------------------
reasons=""
up=$($CURL -sf --max-time 10 -G "$PROMETHEUS_URL/api/v1/query" \
    --data-urlencode 'query=up{job=~".*phantommesh.*"} == 1' 2>&1) \
    || reasons+="cannot query Prometheus at $PROMETHEUS_URL"$'\n'
if [ -z "$reasons" ]; then
    for i in "${!pod_names[@]}"; do
        ip=${pod_ips[$i]}
        [[ "$ip" == *:* ]] && ip="[$ip]"
        [[ "$up" == *"\"instance\":\"$ip:$ADMIN_PORT\""* ]] \
            || reasons+="Prometheus does not scrape pod ${pod_names[$i]} ($ip:$ADMIN_PORT) successfully"$'\n'
    done
    rules=$($CURL -sf --max-time 10 "$PROMETHEUS_URL/api/v1/rules?type=alert" 2>&1) \
        || reasons+="cannot read rules from Prometheus"$'\n'
    for alert in PhantomMeshErrorRateCritical PhantomMeshTargetDown PhantomMeshGateFailing; do
        [[ "$rules" == *"\"name\":\"$alert\""* ]] || reasons+="alert rule $alert not loaded (PrometheusRule not picked up: release label?)"$'\n'
    done
fi
report "Monitoring" ARMED "NOT ARMED" "$reasons"

exit "$failed"
