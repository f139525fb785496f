#!/usr/bin/env bash
# PhantomMesh pre-deployment checks: the go-live runbook's T-4h step
# ("Pre-Deployment Validation"), adapted to the PhantomMesh DaemonSet.
#
#   PROMETHEUS_URL=http://127.0.0.1:9090 ./deploy/pre-deployment-checks.sh
#
# One line per check, as the runbook expects them:
#   ✅ Kubernetes cluster: HEALTHY      API server ready, every node Ready
#   ✅ DaemonSet: ROLLED OUT            rollout complete, every scheduled pod updated and available
#   ✅ Networking: OPERATIONAL          one Ready pod per node, no restarts, and every
#                                      node-to-node path up: each node's /mesh (read
#                                      through the API server's pod proxy) lists every
#                                      other node with a recent handshake and an
#                                      answered probe through the tunnel
#   ✅ Security: VALIDATED              NET_ADMIN only, ALL others dropped, not privileged,
#                                      admin API not on 0.0.0.0
#   ✅ Go-live gates: PASSED            `phantommesh gate` passes on every node (kubectl exec)
#   ✅ Monitoring: ARMED                Prometheus scrapes every pod (up == 1) and has the
#                                      PhantomMesh alert rules loaded
# A failing check prints ❌ and the reasons below it; the script exits 1 if any
# check failed, 0 otherwise. Needs bash, kubectl (with pods/proxy and
# pods/exec rights), curl and python3 (to read /mesh's JSON).
#
# Settings (environment):
#   KUBECTL          kubectl command (default: kubectl); may include flags,
#                    e.g. "kubectl --context prod"
#   NAMESPACE        default: phantommesh
#   DAEMONSET        default: phantommesh
#   POD_SELECTOR     default: app.kubernetes.io/name=phantommesh
#   ADMIN_PORT       default: 9586
#   ADMIN_SCHEME     http (default) or https: how the admin API is reached, by
#                    `phantommesh gate` in each pod at its pod IP and by the
#                    API server's pod proxy for /mesh. With https the
#                    certificate must name the pod IP.
#   PROMETHEUS_URL   default: http://127.0.0.1:9090 (e.g. after
#                    kubectl -n monitoring port-forward svc/prometheus-operated 9090)
#   CURL             curl command for Prometheus (default: curl)
#   ADMIN_TOKEN_FILE the admin token file inside the pod (default: the
#                    DaemonSet's PHANTOMMESH_ADMIN_TOKEN_FILE; GATE_TOKEN_FILE
#                    is the old name). With a token, `phantommesh gate` and
#                    `phantommesh mesh status --json` run in each pod with
#                    --token-file (the API server's pod proxy cannot carry a
#                    bearer token, and /mesh needs it off loopback). Over
#                    http they are given --insecure: each pod asks its own
#                    IP, so the token never leaves the pod's host.
#   GATE_CA_FILE     CA bundle (PEM) inside the pod, passed to `phantommesh
#                    gate` and `mesh status` as --ca-file for https (default:
#                    the system roots)
#   ALLOW_PRIVILEGED 1 accepts the privileged fallback (runc 1.2.0-1.2.3)
#   ROLLOUT_TIMEOUT  default: 120s
#   MESH_HANDSHAKE_MAX_AGE  default: 180 (s; WireGuard rekeys every 120 s,
#                    a session is rejected after 180 s)
#   MESH_PROBE_MAX_AGE      default: 300 (s; the last tunnel probe of a peer)
set -uo pipefail

KUBECTL=${KUBECTL:-kubectl}
NAMESPACE=${NAMESPACE:-phantommesh}
DAEMONSET=${DAEMONSET:-phantommesh}
POD_SELECTOR=${POD_SELECTOR:-app.kubernetes.io/name=phantommesh}
ADMIN_PORT=${ADMIN_PORT:-9586}
ADMIN_SCHEME=${ADMIN_SCHEME:-http}
PROMETHEUS_URL=${PROMETHEUS_URL:-http://127.0.0.1:9090}
CURL=${CURL:-curl}
ADMIN_TOKEN_FILE=${ADMIN_TOKEN_FILE:-${GATE_TOKEN_FILE:-}}
GATE_CA_FILE=${GATE_CA_FILE:-}
ALLOW_PRIVILEGED=${ALLOW_PRIVILEGED:-0}
ROLLOUT_TIMEOUT=${ROLLOUT_TIMEOUT:-120s}
MESH_HANDSHAKE_MAX_AGE=${MESH_HANDSHAKE_MAX_AGE:-180}
MESH_PROBE_MAX_AGE=${MESH_PROBE_MAX_AGE:-300}

failed=0
case $ADMIN_SCHEME in
    http | https) ;;
    *) echo "ADMIN_SCHEME must be http or https, not '$ADMIN_SCHEME'" >&2; exit 2 ;;
esac
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

# --- Networking: one Ready pod per node, every node-to-node path up ----------------
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
# The admin token file the daemons read (the pods' own copy).
if [ -z "$ADMIN_TOKEN_FILE" ]; then
    ADMIN_TOKEN_FILE=$(kn get daemonset "$DAEMONSET" -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="PHANTOMMESH_ADMIN_TOKEN_FILE")].value}' 2>/dev/null) \
        || ADMIN_TOKEN_FILE=""
fi
# admin_args IP: the client options of `phantommesh gate` / `mesh status`
# run in the pod at IP (into the array cli).
admin_args() {
    local ip=$1
    [[ "$ip" == *:* ]] && ip="[$ip]"
    cli=(--url "$ADMIN_SCHEME://$ip:$ADMIN_PORT")
    if [ -n "$ADMIN_TOKEN_FILE" ]; then
        cli+=(--token-file "$ADMIN_TOKEN_FILE")
        # The pod asks its own IP: the token stays on its host.
        [ "$ADMIN_SCHEME" = https ] || cli+=(--insecure)
    fi
    [ -z "$GATE_CA_FILE" ] || cli+=(--ca-file "$GATE_CA_FILE")
}
# Each node's own view of its paths to the others (GET /mesh): through the
# API server's pod proxy (no route to the node IPs needed from here), or,
# with a token, by `phantommesh mesh status --json` in the pod.
command -v python3 >/dev/null 2>&1 || { reasons+="python3 not found: cannot read /mesh"$'\n'; }
for i in "${!pod_names[@]}"; do
    command -v python3 >/dev/null 2>&1 || break
    pod=${pod_names[$i]} node=${pod_nodes[$i]}
    others=()
    for j in "${!pod_nodes[@]}"; do [ "$j" = "$i" ] || others+=("${pod_nodes[$j]}"); done
    if [ -n "$ADMIN_TOKEN_FILE" ]; then
        admin_args "${pod_ips[$i]}"
        mesh=$(kn exec "$pod" -c phantommesh -- phantommesh mesh status --json "${cli[@]}" 2>&1)
        # 0 healthy, 1 unhealthy: both answered with the JSON read below.
        case $? in
            0 | 1) ;;
            *) reasons+="node $node: /mesh unreachable: $(printf '%s' "$mesh" | tail -1)"$'\n'; continue ;;
        esac
    elif ! mesh=$(k get --raw "/api/v1/namespaces/$NAMESPACE/pods/$ADMIN_SCHEME:$pod:$ADMIN_PORT/proxy/mesh" 2>&1); then
        reasons+="node $node: /mesh unreachable: $(printf '%s' "$mesh" | tail -1)"$'\n'
        continue
    fi
    paths=$(MESH_JSON=$mesh python3 - "$node" "$MESH_HANDSHAKE_MAX_AGE" "$MESH_PROBE_MAX_AGE" "${others[@]}" <<'PYEOF'
import json, os, sys
node, hs_max, probe_max, others = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
def say(msg):
    print(f"node {node}: {msg}")
try:
    m = json.loads(os.environ["MESH_JSON"])
    members = {x["name"]: x for x in m.get("members") or []}
except (ValueError, KeyError, TypeError, AttributeError) as e:
    say(f"/mesh answered no mesh status ({e})")
    sys.exit(0)
if not m.get("started"):
    say("mesh not started (no store reached and no cached view)")
if not m.get("store_up"):
    say("mesh store unreachable (running on its last view)")
for name in others:
    x = members.get(name)
    if x is None:
        say(f"{name}: not a member (not in this node's view of the mesh)")
        continue
    hs = x.get("handshake_age_seconds")
    if hs is None:
        say(f"{name}: no handshake")
    elif hs > hs_max:
        say(f"{name}: last handshake {hs:.0f} s ago (max {hs_max:.0f})")
    p = x.get("last_probe")
    if p is None:
        say(f"{name}: never probed")
    elif not p.get("ok"):
        say(f"{name}: probe unanswered ({p.get('age_seconds', 0):.0f} s ago)")
    elif p.get("age_seconds", 0) > probe_max:
        say(f"{name}: last probe {p['age_seconds']:.0f} s ago (max {probe_max:.0f})")
PYEOF
)
    [ -z "$paths" ] || reasons+="$paths"$'\n'
done
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
        # NET_ADMIN (+ NET_RAW) for the data plane; SETUID SETGID SETPCAP
        # make the privilege drop after set-up and DAC_READ_SEARCH re-reads
        # the root-owned key afterwards (README.md, Privileges).
        extra=$(printf '%s' "$add" | tr -d '[]" ' | tr ',' '\n' |
            grep -vx -e NET_ADMIN -e NET_RAW -e SETUID -e SETGID -e SETPCAP -e DAC_READ_SEARCH -e '' || true)
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
    admin_args "$ip"
    url=${cli[1]}
    out=$(kn exec "$pod" -c phantommesh -- phantommesh gate "${cli[@]}" 2>&1)
    rc=$?
    # phantommesh's exit codes (the same for every command; README, "Exit codes").
    case $rc in
        0) ;;
        1) reasons+="node ${pod_nodes[$i]}: a gate fails:"$'\n'"$(printf '%s\n' "$out" | grep '❌' | head -8 | sed 's/^/    /')"$'\n' ;;
        2) reasons+="node ${pod_nodes[$i]}: gate usage or config error: $(printf '%s' "$out" | tail -1)"$'\n' ;;
        3) reasons+="node ${pod_nodes[$i]}: admin API unreachable at $url: $(printf '%s' "$out" | tail -1)"$'\n' ;;
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
