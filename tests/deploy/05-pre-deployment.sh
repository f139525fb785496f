#!/usr/bin/env bash
# Check 5: deploy/pre-deployment-checks.sh against a fake kubectl on PATH
# (tests/deploy/stub/kubectl, canned answers) and a fake Prometheus API
# (canned JSON served on 127.0.0.1). All green: six ✅ lines, exit 0, a
# `phantommesh gate` exec per pod at its pod IP and a GET /mesh per pod
# through the API server's proxy (with the DaemonSet's admin token: a
# `phantommesh mesh status --json` exec per pod). Then one failure at a time: exactly the
# matching ❌ line, exit 1, and the failing node-to-node paths named; gate's
# exit 2 (usage/config) and 3 (unreachable) told apart; ADMIN_SCHEME=https
# with GATE_CA_FILE, and a token over http given --insecure.
source "$(dirname "$0")/lib.sh"
need_cmd curl curl
need_kubectl
PY=$(venv_python)
export REAL_KUBECTL
REAL_KUBECTL=$(command -v kubectl)
SCRIPT=$REPO_ROOT/deploy/pre-deployment-checks.sh
work=$(mktemp -d /tmp/pm-predeploy.XXXXXX)
add_cleanup "rm -rf '$work'"
export STUB_DIR=$work/stub
mkdir -p "$STUB_DIR" "$work/prom/api/v1"

start_bg "$work/http.pid" "$work/http.log" "$PY" -u -m http.server 0 --bind 127.0.0.1 --directory "$work/prom"
wait_until 10 grep -q 'port [0-9]' "$work/http.log" || fail "fake Prometheus did not start"
port=$(sed -n 's/.*port \([0-9][0-9]*\).*/\1/p' "$work/http.log" | head -1)
export PROMETHEUS_URL=http://127.0.0.1:$port
export PATH=$DEPLOY_TESTS_DIR/stub:$PATH
unset KUBECTL CURL NAMESPACE DAEMONSET ADMIN_SCHEME ADMIN_PORT ADMIN_TOKEN_FILE GATE_TOKEN_FILE GATE_CA_FILE

# render_ds KUSTOMIZE_DIR: the DaemonSet as kustomize renders it, with a
# status for three nodes; the stub reads it with the real kubectl.
render_ds() {
    "$REAL_KUBECTL" kustomize "$1" | "$PY" -c '
import sys, yaml
for d in yaml.safe_load_all(sys.stdin):
    if d and d["kind"] == "DaemonSet":
        d["status"] = {"desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberReady": 3,
                       "numberAvailable": 3, "numberMisscheduled": 0}
        yaml.safe_dump(d, sys.stdout)' >"$work/daemonset.yaml"
}
render_ds "$REPO_ROOT/deploy/kubernetes"
cp "$work/daemonset.yaml" "$work/daemonset-base.yaml"
cp -r "$REPO_ROOT/deploy/kubernetes" "$work/privileged"
printf 'components:\n  - optional/privileged\n' >>"$work/privileged/kustomization.yaml"
render_ds "$work/privileged"
mv "$work/daemonset.yaml" "$work/daemonset-privileged.yaml"

pods="phantommesh-a phantommesh-b phantommesh-c"
# mesh_answer SELF OTHER...: a healthy GET /mesh of node-SELF (the daemon's
# JSON shape), every other node with a fresh handshake and answered probe.
mesh_answer() {
    "$PY" - "$@" <<'PYEOF'
import json, sys
me, others = sys.argv[1], sys.argv[2:]
addr = {"a": "10.100.0.1", "b": "10.100.0.2", "c": "10.100.0.3"}
print(json.dumps({
    "node": f"node-{me}", "prefix": "/phantommesh/default", "store_up": True, "started": True,
    "addresses": [addr[me]],
    "members": [{"name": f"node-{o}", "public_key": f"{o * 43}=", "endpoint": f"10.0.0.1{ord(o) - 96}:51820",
                 "addresses": [addr[o]], "allowed_ips": [f"10.244.{ord(o) - 96}.0/24"],
                 "handshake_age_seconds": 12.5,
                 "last_probe": {"ok": True, "rtt_ms": 0.8, "age_seconds": 4.0}} for o in others],
    "conflicts": 0, "sync_errors": 0}))
PYEOF
}
# mesh_edit POD PYTHON-STATEMENT: edits that pod's canned /mesh answer (m).
mesh_edit() {
    "$PY" - "$STUB_DIR/mesh-$1" "$2" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))
member = {x["name"]: x for x in m["members"]}
exec(sys.argv[2])
json.dump(m, open(sys.argv[1], "w"))
PYEOF
}
green() {
    rm -rf "$STUB_DIR" && mkdir -p "$STUB_DIR"
    cp "$work/daemonset-base.yaml" "$STUB_DIR/daemonset.yaml"
    # No admin token (as an operator's DaemonSet without one): /mesh
    # through the API server's proxy. The shipped one's token: "token" below.
    : >"$STUB_DIR/ds-token"
    echo ok >"$STUB_DIR/readyz"
    printf 'node-a|True\nnode-b|True\nnode-c|True\n' >"$STUB_DIR/nodes"
    echo 'daemon set "phantommesh" successfully rolled out' >"$STUB_DIR/rollout"
    printf 'phantommesh-a|node-a|10.0.0.11|True|0\nphantommesh-b|node-b|10.0.0.12|True|0\nphantommesh-c|node-c|10.0.0.13|True|0\n' >"$STUB_DIR/pods"
    for p in $pods; do
        printf 'Gate 2: Performance Validation   ✅ PASSED\nResult: PASS\n' >"$STUB_DIR/gate-$p"
    done
    mesh_answer a b c >"$STUB_DIR/mesh-phantommesh-a"
    mesh_answer b a c >"$STUB_DIR/mesh-phantommesh-b"
    mesh_answer c a b >"$STUB_DIR/mesh-phantommesh-c"
    local r='' ip
    for ip in 10.0.0.11 10.0.0.12 10.0.0.13; do
        r+="{\"metric\":{\"__name__\":\"up\",\"instance\":\"$ip:9586\",\"job\":\"phantommesh/phantommesh\"},\"value\":[1764201600,\"1\"]},"
    done
    echo "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[${r%,}]}}" >"$work/prom/api/v1/query"
    local rules='' a
    for a in PhantomMeshErrorRateWarning PhantomMeshErrorRateCritical PhantomMeshGateFailing PhantomMeshTargetDown; do
        rules+="{\"state\":\"inactive\",\"name\":\"$a\",\"query\":\"...\",\"type\":\"alerting\"},"
    done
    echo "{\"status\":\"success\",\"data\":{\"groups\":[{\"name\":\"phantommesh.alerts\",\"rules\":[${rules%,}]}]}}" >"$work/prom/api/v1/rules"
}

run() { # NAME: runs the script, keeps its output and exit code
    rc=0
    bash "$SCRIPT" >"$work/$1.out" 2>&1 || rc=$?
    sed 's/^/    | /' "$work/$1.out"
}

log "all green"
green
run green
[ "$rc" = 0 ] || fail "all-green run exited $rc"
[ "$(grep -c '^✅' "$work/green.out")" = 6 ] || fail "want 6 ✅ lines"
! grep -q '^❌' "$work/green.out" || fail "❌ in the all-green run"
for l in "Kubernetes cluster: HEALTHY" "DaemonSet: ROLLED OUT" "Networking: OPERATIONAL" "Security: VALIDATED" \
    "Go-live gates: PASSED" "Monitoring: ARMED"; do
    grep -qx "✅ $l" "$work/green.out" || fail "missing line: ✅ $l"
done
for i in 1 2 3; do
    p=$(echo "$pods" | cut -d' ' -f$i)
    grep -q "exec $p -c phantommesh -- phantommesh gate --url http://10.0.0.1$i:9586" "$STUB_DIR/calls.log" \
        || fail "no gate check exec'd in $p at its pod IP"
done
grep -q -- '-n phantommesh rollout status daemonset/phantommesh' "$STUB_DIR/calls.log" || fail "rollout status not checked"
for p in $pods; do
    grep -qx "get --raw /api/v1/namespaces/phantommesh/pods/http:$p:9586/proxy/mesh" "$STUB_DIR/calls.log" \
        || fail "no GET /mesh of $p through the API server proxy"
done

# one_failure NAME "EXPECTED ❌ LINE" REASON-REGEX: after a mutation of the green state.
one_failure() {
    run "$1"
    [ "$rc" = 1 ] || fail "$1: exit code $rc, want 1"
    ! grep -q 'unexpected call' "$work/$1.out" || fail "$1: the script made a call the stub does not know"
    local bad
    bad=$(grep '^❌' "$work/$1.out" || true)
    [ "$bad" = "❌ $2" ] || fail "$1: ❌ lines are [$bad], want exactly [❌ $2]"
    grep -Eq "$3" "$work/$1.out" || fail "$1: reason matching /$3/ not printed"
    [ "$(grep -c '^✅' "$work/$1.out")" = 5 ] || fail "$1: want the 5 other checks ✅"
    log "  $1: ok"
}

log "one failure at a time"
green
printf 'Gate 2: Performance Validation   ❌ FAILED\nP99 Latency  ≤200ms  350ms  ❌ FAIL  -75.0%%\nResult: FAIL\n' >"$STUB_DIR/gate-phantommesh-b"
echo 1 >"$STUB_DIR/gate-phantommesh-b.rc"
one_failure gate-fails "Go-live gates: FAILED" 'node node-b: a gate fails'
grep -q 'P99 Latency' "$work/gate-fails.out" || fail "gate-fails: the failing criterion is not shown"

green
echo 'phantommesh gate: http://10.0.0.13:9586/gates: cannot connect to 10.0.0.13:9586: Connection refused' \
    >"$STUB_DIR/gate-phantommesh-c"
echo 3 >"$STUB_DIR/gate-phantommesh-c.rc"
one_failure gate-unreachable "Go-live gates: FAILED" \
    'node node-c: admin API unreachable at http://10.0.0.13:9586: .*Connection refused'

green
echo 'phantommesh gate: cannot read token file /run/token: No such file or directory' >"$STUB_DIR/gate-phantommesh-a"
echo 2 >"$STUB_DIR/gate-phantommesh-a.rc"
one_failure gate-config "Go-live gates: FAILED" 'node node-a: gate usage or config error: .*cannot read token file'
! grep -q 'unreachable' "$work/gate-config.out" || fail "gate-config: a config error reported as unreachable"

# HTTPS: the gate and mesh status ask https://POD_IP with the CA file and
# the token (no --insecure); without a token /mesh goes through the API
# server's https pod proxy; over plain http a token comes with --insecure
# (the pod asks its own IP).
green
ADMIN_SCHEME=https GATE_CA_FILE=/etc/pm/ca.pem GATE_TOKEN_FILE=/run/token run https
[ "$rc" = 0 ] || fail "https: exit $rc"
grep -q 'exec phantommesh-a -c phantommesh -- phantommesh gate --url https://10.0.0.11:9586 --token-file /run/token --ca-file /etc/pm/ca.pem$' \
    "$STUB_DIR/calls.log" || fail "https: gate not asked over https with the CA file and token"
grep -q 'exec phantommesh-b -c phantommesh -- phantommesh mesh status --json --url https://10.0.0.12:9586 --token-file /run/token --ca-file /etc/pm/ca.pem$' \
    "$STUB_DIR/calls.log" || fail "https: /mesh not asked over https with the CA file and token"
green
ADMIN_SCHEME=https run https-proxy
[ "$rc" = 0 ] || fail "https-proxy: exit $rc"
grep -qx 'get --raw /api/v1/namespaces/phantommesh/pods/https:phantommesh-b:9586/proxy/mesh' "$STUB_DIR/calls.log" \
    || fail "https: /mesh not read through the https pod proxy"
# The shipped DaemonSet's token file: gate and /mesh asked in each pod
# with it (the API server's proxy cannot carry a bearer token).
green
rm "$STUB_DIR/ds-token"
run token
[ "$rc" = 0 ] || fail "token: exit $rc"
for i in 1 2 3; do
    p=$(echo "$pods" | cut -d' ' -f$i)
    for cmd in "gate" "mesh status --json"; do
        grep -q -- "exec $p -c phantommesh -- phantommesh $cmd --url http://10.0.0.1$i:9586 --token-file /etc/phantommesh-admin/token --insecure$" \
            "$STUB_DIR/calls.log" || fail "token: $cmd not run in $p with the DaemonSet's token file"
    done
done
! grep -q 'proxy/mesh' "$STUB_DIR/calls.log" || fail "token: /mesh read through the proxy, which drops the token"
green
rm "$STUB_DIR/ds-token"
mesh_edit phantommesh-b 'member["node-c"].update(handshake_age_seconds=None)'
echo 1 >"$STUB_DIR/mesh-phantommesh-b.rc"
one_failure token-mesh-unhealthy "Networking: DEGRADED" 'node node-b: node-c: no handshake'
green
rm "$STUB_DIR/ds-token"
echo 'phantommesh mesh status: http://10.0.0.13:9586/mesh: HTTP 401 (check the token): bearer token required' >"$STUB_DIR/mesh-phantommesh-c"
echo 2 >"$STUB_DIR/mesh-phantommesh-c.rc"
one_failure token-mesh-refused "Networking: DEGRADED" 'node node-c: /mesh unreachable: .*HTTP 401'
green
GATE_TOKEN_FILE=/run/token run http-token
[ "$rc" = 0 ] || fail "http-token: exit $rc"
grep -q -- 'phantommesh gate --url http://10.0.0.12:9586 --token-file /run/token --insecure$' "$STUB_DIR/calls.log" \
    || fail "http-token: a token over http without --insecure would be refused"
green
ADMIN_SCHEME=ftp run bad-scheme
[ "$rc" = 2 ] || fail "bad-scheme: exit $rc, want 2"
grep -q 'ADMIN_SCHEME must be http or https' "$work/bad-scheme.out" || fail "bad-scheme: no reason given"

green
printf 'node-a|True\nnode-b|True\nnode-c|Unknown\n' >"$STUB_DIR/nodes"
one_failure node-not-ready "Kubernetes cluster: UNHEALTHY" 'node node-c is not Ready'

green
echo 'Error from server: etcd cluster is unavailable' >"$STUB_DIR/readyz"
echo 1 >"$STUB_DIR/readyz.rc"
one_failure apiserver-down "Kubernetes cluster: UNHEALTHY" 'API server /readyz: Error from server'

green
echo 'Waiting for daemon set "phantommesh" rollout to finish: 2 out of 3 new pods have been updated...' >"$STUB_DIR/rollout"
echo 1 >"$STUB_DIR/rollout.rc"
echo '3 2 3 3 0' >"$STUB_DIR/ds-status"
one_failure rollout-incomplete "DaemonSet: NOT ROLLED OUT" '2 of 3 pods run the current template'

green
printf 'phantommesh-a|node-a|10.0.0.11|True|0\nphantommesh-b|node-b|10.0.0.12|False|0\nphantommesh-c|node-c|10.0.0.13|True|0\n' >"$STUB_DIR/pods"
one_failure pod-not-ready "Networking: DEGRADED" 'pod phantommesh-b on node-b is not Ready'

green
printf 'phantommesh-a|node-a|10.0.0.11|True|0\nphantommesh-b|node-b|10.0.0.12|True|3\nphantommesh-c|node-c|10.0.0.13|True|0\n' >"$STUB_DIR/pods"
one_failure pod-restarted "Networking: DEGRADED" 'restarted 3 times'

# Node-to-node paths, from each node's /mesh.
green
mesh_edit phantommesh-b 'member["node-c"].update(handshake_age_seconds=None, last_probe={"ok": False, "rtt_ms": None, "age_seconds": 3})'
one_failure mesh-path-down "Networking: DEGRADED" 'node node-b: node-c: no handshake'
grep -q 'node node-b: node-c: probe unanswered' "$work/mesh-path-down.out" || fail "mesh-path-down: the failed probe is not listed"
! grep -q 'node node-a:\|node node-c:' "$work/mesh-path-down.out" || fail "mesh-path-down: healthy nodes blamed"

green
mesh_edit phantommesh-a 'member["node-b"].update(handshake_age_seconds=400.0)'
mesh_edit phantommesh-c 'member["node-a"]["last_probe"].update(age_seconds=900.0)'
one_failure mesh-stale "Networking: DEGRADED" 'node node-a: node-b: last handshake 400 s ago \(max 180\)'
grep -q 'node node-c: node-a: last probe 900 s ago (max 300)' "$work/mesh-stale.out" || fail "mesh-stale: both nodes' failures must be listed"

green
mesh_edit phantommesh-a 'm["members"] = [x for x in m["members"] if x["name"] != "node-c"]; m["store_up"] = False'
one_failure mesh-partition "Networking: DEGRADED" 'node node-a: node-c: not a member'
grep -q 'node node-a: mesh store unreachable' "$work/mesh-partition.out" || fail "mesh-partition: store down not reported"

green
mesh_edit phantommesh-b 'member["node-a"]["last_probe"] = None'
one_failure mesh-never-probed "Networking: DEGRADED" 'node node-b: node-a: never probed'

green
echo 'Error from server (ServiceUnavailable): the server is currently unable to handle the request' >"$STUB_DIR/mesh-phantommesh-c"
echo 1 >"$STUB_DIR/mesh-phantommesh-c.rc"
one_failure mesh-unreachable "Networking: DEGRADED" 'node node-c: /mesh unreachable: Error from server'

green
echo '404 page not found' >"$STUB_DIR/mesh-phantommesh-a"
one_failure mesh-not-json "Networking: DEGRADED" 'node node-a: /mesh answered no mesh status'

green
cp "$work/daemonset-privileged.yaml" "$STUB_DIR/daemonset.yaml"
one_failure privileged "Security: NOT VALIDATED" 'container is privileged'
green
"$PY" - "$STUB_DIR/daemonset.yaml" <<'PYEOF'
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
d["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] += ["SYS_ADMIN"]
yaml.safe_dump(d, open(sys.argv[1], "w"))
PYEOF
one_failure extra-capability "Security: NOT VALIDATED" 'extra capabilities: SYS_ADMIN'

green
sed -i 's/value: $(POD_IP):9586/value: 0.0.0.0:9586/' "$STUB_DIR/daemonset.yaml"
grep -q 'value: 0.0.0.0:9586' "$STUB_DIR/daemonset.yaml" || fail "test setup: admin address not replaced"
one_failure admin-on-all "Security: NOT VALIDATED" 'admin API listens on all addresses'

green
sed -i 's/{"metric":{"__name__":"up","instance":"10.0.0.13:9586"[^}]*},"value":\[[^]]*\]},\{0,1\}//; s/,\]/]/' "$work/prom/api/v1/query"
grep -q 10.0.0.13 "$work/prom/api/v1/query" && fail "test setup: target not removed"
one_failure target-missing "Monitoring: NOT ARMED" 'does not scrape pod phantommesh-c \(10.0.0.13:9586\)'

green
sed -i 's/PhantomMeshTargetDown/SomethingElse/' "$work/prom/api/v1/rules"
one_failure rules-missing "Monitoring: NOT ARMED" 'alert rule PhantomMeshTargetDown not loaded'

green
PROMETHEUS_URL=http://127.0.0.1:1 one_failure prometheus-down "Monitoring: NOT ARMED" 'cannot query Prometheus'

# KUBECTL with flags is honoured (every call goes through it).
green
KUBECTL="kubectl --context prod" run context
[ "$rc" = 0 ] || fail "KUBECTL with flags: exit $rc"
! grep -v -- '^--context prod ' "$STUB_DIR/calls.log" | grep -q . || fail "a kubectl call ignored \$KUBECTL's flags"
log "PASS"
