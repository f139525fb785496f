#!/usr/bin/env bash
# Check 4, end to end: two daemons in two network namespaces joined by a veth
# pair, pinging each other through the tunnel; a real Prometheus (Debian's
# binary) on 127.0.0.1 in the first namespace, scraping both admin APIs every
# second with deploy/prometheus/phantommesh-rules.yml loaded. Checks that
# Prometheus' latency quantiles and gate verdicts agree with each daemon's
# /gates, that every dashboard query answers, then breaks things and watches
# the alert expressions turn true: junk packets at node a (error rate, gate)
# and daemon b killed (target down).
source "$(dirname "$0")/lib.sh"
need_cmd ip iproute2
need_cmd curl curl
need_cmd ping iputils-ping
need_prometheus
PY=$(venv_python)
phantommesh_bin
work=$(mktemp -d /tmp/pm-e2e.XXXXXX)
add_cleanup "rm -rf '$work'"
ns_a=pmd-e2e-$$-a
ns_b=pmd-e2e-$$-b
# Underlay (veth) and tunnel addresses: only these namespaces see them.
ul_a=10.77.0.1 ul_b=10.77.0.2 tun_a=10.200.0.1 tun_b=10.200.0.2
admin_a=127.0.0.1:9586 admin_b=$ul_b:9586
prom=http://127.0.0.1:9090
in_a() { ip netns exec "$ns_a" "$@"; }
in_b() { ip netns exec "$ns_b" "$@"; }

log "namespaces $ns_a, $ns_b joined by a veth ($ul_a <-> $ul_b)"
make_netns "$ns_a"
make_netns "$ns_b"
ip link add "pmv$$a" netns "$ns_a" type veth peer name "pmv$$b" netns "$ns_b"
in_a ip addr add "$ul_a/24" dev "pmv$$a"
in_b ip addr add "$ul_b/24" dev "pmv$$b"
in_a ip link set "pmv$$a" up
in_b ip link set "pmv$$b" up

key_a=$("$BIN" genkey) key_b=$("$BIN" genkey)
pub_a=$(echo "$key_a" | "$BIN" pubkey) pub_b=$(echo "$key_b" | "$BIN" pubkey)
(umask 077; echo "$key_a" >"$work/a.key"; echo "$key_b" >"$work/b.key")
# b's admin API is on its veth address, not loopback: it needs a token (as
# the DaemonSet on a node IP). Both daemons get it; Prometheus sends it.
(umask 077; od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$work/admin.token")
token=$(cat "$work/admin.token")
auth=(-H "Authorization: Bearer $token")
write_config() { # NAME IFNAME TUNADDR ADMIN PEERPUB PEERENDPOINT PEERTUN
    cat >"$work/$1.toml" <<TOML
[interface]
name = "$2"
private_key_file = "$work/$1.key"
listen_port = 51820
addresses = ["$3/24"]
[admin]
listen = "$4"
token_file = "$work/admin.token"
[[peer]]
public_key = "$5"
endpoint = "$6:51820"
allowed_ips = ["$7/32"]
persistent_keepalive = 5
TOML
}
write_config a "pma$$" "$tun_a" "$admin_a" "$pub_b" "$ul_b" "$tun_b"
write_config b "pmb$$" "$tun_b" "$admin_b" "$pub_a" "$ul_a" "$tun_a"

# The DaemonSet's gates, with a throughput baseline this test's traffic meets.
sed 's|^throughput = .*|throughput = ">= 1/s"|' "$REPO_ROOT/deploy/kubernetes/config/gates.toml" >"$work/gates.toml"
grep -q '^throughput = ">= 1/s"' "$work/gates.toml" || fail "gates.toml: no throughput line to adjust"

# Sockets the daemons leave behind if they die hard.
add_cleanup "rm -f /var/run/wireguard/pma$$.sock /var/run/wireguard/pmb$$.sock"
log "starting daemons (self test once at start; the test runs the others)"
start_bg "$work/a.pid" "$work/a.log" env PHANTOMMESH_SELF_TEST_INTERVAL=0 PHANTOMMESH_GATES="$work/gates.toml" \
    ip netns exec "$ns_a" "$BIN" run --config "$work/a.toml" --log-format json
start_bg "$work/b.pid" "$work/b.log" env PHANTOMMESH_SELF_TEST_INTERVAL=0 PHANTOMMESH_GATES="$work/gates.toml" \
    ip netns exec "$ns_b" "$BIN" run --config "$work/b.toml" --log-format json
wait_until 20 in_a curl -sf "http://$admin_a/readyz" || { cat "$work/a.log"; fail "daemon a not ready"; }
wait_until 20 in_a curl -sf "http://$admin_b/readyz" || { cat "$work/b.log"; fail "daemon b not ready (or its admin API not reachable from $ns_a)"; }
code=$(in_a curl -s -o /dev/null -w '%{http_code}' "http://$admin_b/metrics")
[ "$code" = 401 ] || fail "b's /metrics off loopback answered $code without the token, want 401"

log "starting Prometheus in $ns_a (1 s scrape and evaluation interval)"
mkdir -p "$work/prom-data"
cat >"$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
rule_files:
  - $REPO_ROOT/deploy/prometheus/phantommesh-rules.yml
scrape_configs:
  - job_name: phantommesh
    authorization:
      credentials_file: $work/admin.token
    static_configs:
      - targets: ["$admin_a"]
        labels: {node: a}
      - targets: ["$admin_b"]
        labels: {node: b}
YAML
promtool check config "$work/prometheus.yml" >/dev/null || fail "Prometheus config invalid"
start_bg "$work/prom.pid" "$work/prom.log" ip netns exec "$ns_a" prometheus \
    --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom-data" \
    --web.listen-address=127.0.0.1:9090
wait_until 30 in_a curl -sf "$prom/-/ready" || { tail -20 "$work/prom.log"; fail "Prometheus not ready"; }
check() { in_a "$PY" "$DEPLOY_TESTS_DIR/e2e_checks.py" "$@"; }
check wait-true "$prom" 30 'up{job="phantommesh"} == 1' a b || fail "Prometheus does not scrape both daemons"
check wait-true "$prom" 30 'count by (node) (ALERTS) or count by (node) (phantommesh:packets:rate5m)' a b \
    || fail "rules are not evaluated"

log "traffic: ping $tun_b from $ns_a through the tunnel"
in_a ping -q -c 300 -i 0.01 -W 1 "$tun_b" >"$work/ping.txt" || true
received=$(sed -n 's/.* \([0-9][0-9]*\) received.*/\1/p' "$work/ping.txt")
# A shared CI core may delay a reply past -W now and then: 95 % must arrive.
[ "${received:-0}" -ge 285 ] || { cat "$work/ping.txt"; fail "ping through the tunnel: ${received:-0} of 300 replies"; }
log "$(grep 'packet loss' "$work/ping.txt")"
log "tunnel tests: self tests on both, a peer test from a to b"
for _ in 1 2 3; do
    in_a curl -sf "${auth[@]}" -X POST "http://$admin_a/tunnel-test?probes=50" >"$work/tt-a.json" || fail "tunnel test on a: $(cat "$work/tt-a.json")"
    in_a curl -sf "${auth[@]}" -X POST "http://$admin_b/tunnel-test?probes=50" >"$work/tt-b.json" || fail "tunnel test on b: $(cat "$work/tt-b.json")"
done
peer=$(printf %s "$pub_b" | sed 's/+/%2B/g; s/=/%3D/g; s/\//%2F/g')
in_a curl -sf "${auth[@]}" -X POST "http://$admin_a/tunnel-test?peer=$peer" >"$work/tt-peer.json" || fail "peer test a->b: $(cat "$work/tt-peer.json")"
in_a curl -sf "http://$admin_a/healthz" >/dev/null || fail "a unhealthy"
sleep 3

log "Prometheus agrees with each daemon's /gates (latency quantiles, gate verdicts)"
check agree "$prom" "a=http://$admin_a" "b=http://$admin_b" || fail "Prometheus and /gates disagree"
log "every dashboard query answers"
check dashboard "$prom" "$REPO_ROOT/deploy/grafana/phantommesh.json" || fail "dashboard queries"
check never-true "$prom" 'phantommesh:packet_error_ratio:rate5m > 0.001' a || fail "error-rate alert true before any fault"
for admin in "$admin_a" "$admin_b"; do
    in_a "$BIN" gate --url "http://$admin" >"$work/gate.txt" || { cat "$work/gate.txt"; fail "phantommesh gate on $admin fails on a healthy pair"; }
done

# The T-4h script with a fake cluster (kubectl stub: two nodes whose pods
# have these daemons' admin addresses) but the real `phantommesh gate` (the
# stub runs its exec here) and the real Prometheus.
stub=$work/stub
mkdir -p "$stub" "$work/bin"
ln -s "$BIN" "$work/bin/phantommesh"
echo ok >"$stub/readyz"
printf 'node-a|True\nnode-b|True\n' >"$stub/nodes"
echo 'daemon set "phantommesh" successfully rolled out' >"$stub/rollout"
echo '2 2 2 2 0' >"$stub/ds-status"
printf '|["ALL"]|["NET_ADMIN"]|$(POD_IP):9586\n' >"$stub/ds-security"
# The daemons' token file: gate (real) and /mesh (canned) run "in the pods".
printf '%s' "$work/admin.token" >"$stub/ds-token"
printf 'phantommesh-a|node-a|%s|True|0\nphantommesh-b|node-b|%s|True|0\n' "${admin_a%:*}" "${admin_b%:*}" >"$stub/pods"
# GET /mesh (through the API server's proxy): canned, as these two daemons
# are peered by their config files, not through a mesh store. 05 covers
# the Networking check's verdicts on /mesh answers.
for pair in a:b b:a; do
    me=${pair%:*} other=${pair#*:}
    printf '{"node":"node-%s","prefix":"/phantommesh/default","store_up":true,"started":true,"addresses":[],"members":[{"name":"node-%s","public_key":"","endpoint":null,"addresses":[],"allowed_ips":[],"handshake_age_seconds":3,"last_probe":{"ok":true,"rtt_ms":1.0,"age_seconds":2}}],"conflicts":0,"sync_errors":0}\n' \
        "$me" "$other" >"$stub/mesh-phantommesh-$me"
done
predeploy() {
    in_a env PATH="$DEPLOY_TESTS_DIR/stub:$work/bin:$PATH" STUB_DIR="$stub" STUB_EXEC_REAL=1 \
        PROMETHEUS_URL="$prom" bash "$REPO_ROOT/deploy/pre-deployment-checks.sh" >"$work/predeploy-$1.txt" 2>&1
}
log "pre-deployment-checks.sh against the real gates and Prometheus"
predeploy green || { cat "$work/predeploy-green.txt"; fail "pre-deployment checks fail on a healthy pair"; }
sed 's/^/    | /' "$work/predeploy-green.txt"
[ "$(grep -c '^✅' "$work/predeploy-green.txt")" = 6 ] || fail "want 6 ✅ lines"

log "break 1: junk WireGuard data packets from $ns_b at node a's port"
in_b "$PY" - "$ul_a" <<'PYEOF' || fail "sending junk"
import os, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(2000):
    # Type 4 (transport data) for a receiver index a never handed out.
    s.sendto(struct.pack("<II", 4, 0x7fff0000 + i) + os.urandom(40), (sys.argv[1], 51820))
PYEOF
check wait-true "$prom" 30 'phantommesh:packet_error_ratio:rate5m > 0.01' a \
    || fail "PhantomMeshErrorRateCritical expression did not turn true for a"
check never-true "$prom" 'phantommesh:packet_error_ratio:rate5m > 0.001' b || fail "error rate true for b, which got no junk"
check alert-active "$prom" 15 PhantomMeshErrorRateCritical a || fail "alert not pending"
code=$(in_a curl -s -o "$work/gate-tech.json" -w '%{http_code}' "http://$admin_a/gates/technical")
[ "$code" = 503 ] || fail "/gates/technical on a answered $code after the junk, want 503"
check wait-true "$prom" 15 'phantommesh_gate_passed{gate="technical"} == 0' a \
    || fail "PhantomMeshGateFailing expression did not turn true for a"
check agree "$prom" "a=http://$admin_a" || fail "Prometheus and /gates disagree after the fault"
if in_a "$BIN" gate --url "http://$admin_a" --gate technical >"$work/gate-a-bad.txt"; then
    fail "phantommesh gate --gate technical passes on a after the fault"
fi
if predeploy fault; then
    cat "$work/predeploy-fault.txt"
    fail "pre-deployment checks pass after the fault"
fi
sed 's/^/    | /' "$work/predeploy-fault.txt"
[ "$(grep '^❌' "$work/predeploy-fault.txt")" = "❌ Go-live gates: FAILED" ] || fail "want only the gates line failing"
grep -q 'node node-a: a gate fails' "$work/predeploy-fault.txt" || fail "node-a not named"
! grep -q 'node node-b' "$work/predeploy-fault.txt" || fail "node-b blamed"

log "break 2: kill daemon b"
kill "$(cat "$work/b.pid")"
check wait-true "$prom" 20 'up{job=~".*phantommesh.*"} == 0' b || fail "PhantomMeshTargetDown expression did not turn true for b"
check never-true "$prom" 'up{job=~".*phantommesh.*"} == 0' a || fail "target a reported down"
check alert-active "$prom" 15 PhantomMeshTargetDown b || fail "PhantomMeshTargetDown not pending"
log "PASS"
