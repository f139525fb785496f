#!/usr/bin/env bash
# Check 3: every metric name in the rules and the dashboard is one the daemon
# really exports. Starts the real daemon (run mode, with the DaemonSet's
# ConfigMap files: deploy/kubernetes/config/*.toml) in a network namespace of
# its own, admin on 127.0.0.1 there, scrapes /metrics and compares. Renaming
# a metric in the daemon, or using a misspelt one in a rule or panel, fails.
source "$(dirname "$0")/lib.sh"
need_cmd ip iproute2
need_cmd curl curl
need_promtool
PY=$(venv_python)
phantommesh_bin
work=$(mktemp -d /tmp/pm-names.XXXXXX)
add_cleanup "rm -rf '$work'"
ns=pmd-names-$$
ifname=pmn$$
make_netns "$ns"

# The ConfigMap's file, with what this check has no etcd for: the tunnel
# address the mesh would allocate (the self test pings it, filling the RTT
# histograms), and no client certificate (the endpoint is a closed port on
# this namespace's loopback, so nothing leaves it). Everything else, [mesh]
# included, is the shipped file, parsed by the real daemon.
cfg=$work/phantommesh.toml
sed -e '/^\[interface\]/a addresses = ["10.100.0.1/16"]' \
    -e '/^\(ca_file\|cert_file\|key_file\) = /d' \
    "$REPO_ROOT/deploy/kubernetes/config/phantommesh.toml" >"$cfg"
grep -q '^\[mesh\]' "$cfg" && grep -q '^addresses = ' "$cfg" || fail "test setup: config not derived"
add_cleanup "rm -f /var/run/wireguard/$ifname.sock"
log "starting the daemon with deploy/kubernetes/config/phantommesh.toml in netns $ns"
start_bg "$work/pid" "$work/daemon.log" env \
    PHANTOMMESH_INTERFACE="$ifname" \
    PHANTOMMESH_PRIVATE_KEY_FILE="$work/private.key" \
    PHANTOMMESH_ADMIN_LISTEN=127.0.0.1:9586 \
    PHANTOMMESH_GATES="$REPO_ROOT/deploy/kubernetes/config/gates.toml" \
    PHANTOMMESH_NODE_NAME=node-a PHANTOMMESH_ADVERTISE_ENDPOINT=127.0.0.1 \
    PHANTOMMESH_MESH_ENDPOINTS=http://127.0.0.1:2379 PHANTOMMESH_MESH_ALLOWED_IPS=10.244.1.0/24 \
    ip netns exec "$ns" "$BIN" run --config "$cfg" --log-format json
scrape() { ip netns exec "$ns" curl -sf --max-time 2 "http://127.0.0.1:9586$1"; }
# Ready means the first self test ran, so the histograms have samples.
# The mesh readiness check is excluded: no store here.
wait_until 20 scrape '/readyz?exclude=mesh' || { cat "$work/daemon.log"; fail "daemon not ready within 20 s"; }
scrape /metrics >"$work/metrics.txt" || fail "scrape failed"
grep -q '^phantommesh_tunnel_test_rtt_seconds_count [1-9]' "$work/metrics.txt" || fail "no tunnel-test samples in the scrape"

# The mesh alerts and panels use families a daemon exports only with a
# [mesh]; this one has it (with no store, so store_up is 0 and the
# convergence histogram empty, but every family is rendered). Fail here,
# not as "not exported" below, if the config or the daemon stops giving them.
for fam in phantommesh_mesh_peers phantommesh_mesh_store_up phantommesh_mesh_sync_errors_total \
    phantommesh_mesh_conflicts_total phantommesh_mesh_convergence_seconds; do
    grep -q "^# TYPE $fam " "$work/metrics.txt" || fail "no $fam family in the scrape of a daemon with a [mesh]"
done
grep -q '^phantommesh_mesh_convergence_seconds_bucket{le="5"} ' "$work/metrics.txt" \
    || fail "no le=\"5\" bucket in phantommesh_mesh_convergence_seconds (PhantomMeshSlowConvergence counts applies above it)"

# The standard process families (dashboard's Process row, the descriptor
# and memory alerts), with the types every client library gives them.
for fam in process_cpu_seconds_total:counter process_resident_memory_bytes:gauge \
    process_virtual_memory_bytes:gauge process_open_fds:gauge process_max_fds:gauge \
    process_start_time_seconds:gauge; do
    grep -q "^# TYPE ${fam%%:*} ${fam#*:}\$" "$work/metrics.txt" || fail "no ${fam%%:*} ${fam#*:} in the scrape"
done
python3 - "$work/metrics.txt" <<'PYEOF' || fail "process_* values implausible"
import sys, time
v = {l.split()[0]: float(l.split()[1]) for l in open(sys.argv[1]) if l.startswith("process_")}
now = time.time()
ok = (now - 3600 < v["process_start_time_seconds"] <= now
      and 3 <= v["process_open_fds"] <= v["process_max_fds"]
      and 0 < v["process_resident_memory_bytes"] <= v["process_virtual_memory_bytes"]
      and v["process_cpu_seconds_total"] > 0)
print("  process_*:", {k: v[k] for k in sorted(v)})
sys.exit(0 if ok else 1)
PYEOF

log "promtool check metrics (exposition lint)"
promtool check metrics <"$work/metrics.txt" || fail "the scrape does not pass promtool's lint"

log "names used by rules and dashboard vs names exported"
"$PY" "$DEPLOY_TESTS_DIR/metric_names.py" "$work/metrics.txt" \
    "$REPO_ROOT/deploy/prometheus/phantommesh-rules.yml" "$REPO_ROOT/deploy/grafana/phantommesh.json" \
    || fail "rules or dashboard use names the daemon does not export"

# The extraction itself must catch a wrong name.
sed 's/phantommesh_packets_dropped_total/phantommesh_packets_droped_total/' \
    "$REPO_ROOT/deploy/prometheus/phantommesh-rules.yml" >"$work/bad-rules.yml"
if "$PY" "$DEPLOY_TESTS_DIR/metric_names.py" "$work/metrics.txt" "$work/bad-rules.yml" \
    "$REPO_ROOT/deploy/grafana/phantommesh.json" >"$work/neg.txt"; then
    fail "a misspelt metric name in the rules was not caught"
fi
grep -q 'phantommesh_packets_droped_total' "$work/neg.txt" || fail "the misspelt name was not reported"
# ... and one among the mesh-only names, in the dashboard.
sed 's/phantommesh_mesh_store_up/phantommesh_mesh_store_upp/' \
    "$REPO_ROOT/deploy/grafana/phantommesh.json" >"$work/bad-dash.json"
if "$PY" "$DEPLOY_TESTS_DIR/metric_names.py" "$work/metrics.txt" \
    "$REPO_ROOT/deploy/prometheus/phantommesh-rules.yml" "$work/bad-dash.json" >"$work/neg2.txt"; then
    fail "a misspelt mesh metric name in the dashboard was not caught"
fi
grep -q 'phantommesh_mesh_store_upp' "$work/neg2.txt" || fail "the misspelt mesh name was not reported"
log "PASS"
