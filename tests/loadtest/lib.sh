#!/bin/bash
# Shared helpers for the load test CI scripts: a target namespace running a
# WireGuard daemon (phantommesh or wireguard-go) and a generator namespace,
# joined by a veth pair (10.x addresses only). Everything is named after this
# shell's PID so parallel runs do not collide, and everything is removed by
# PID and by name on exit, whether the script passes or fails.
#
# Usage: source lib.sh; lt_setup [phantommesh|wireguard-go]; ...; (cleanup is automatic)
set -u
umask 077

LT_ID=$(( $$ % 100000 ))
LT_NS_T="lt-tgt-$LT_ID"
LT_NS_G="lt-gen-$LT_ID"
LT_IF="lt$LT_ID"
LT_UAPI="/var/run/wireguard/$LT_IF.sock"
LT_PORT=51820
LT_TUN_IP=10.250.0.1
LT_T_IP=10.99.$(( LT_ID % 200 )).1
LT_G_IP=10.99.$(( LT_ID % 200 )).2
LT_DAEMON_PID=
LT_PIDS=()
LT_TMP=$(mktemp -d /tmp/loadtest.XXXXXX)
LT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LT_ROOT=$(cd "$LT_DIR/../.." && pwd)
lt_target_dir() {
    local t=${CARGO_TARGET_DIR:-target}
    [[ $t == /* ]] || t=$LT_ROOT/$t
    printf '%s\n' "$t"
}
# The generator (and the phantommesh target): PM as in tests/e2e, or LT_BIN.
LT_BIN="${LT_BIN:-${PM:-$(lt_target_dir)/release/phantommesh}}"

lt_log() { echo "[$(date +%T)] $*" >&2; }
lt_fail() { lt_log "FAIL: $*"; exit 1; }

lt_cleanup() {
    local rc=$? p
    for p in "${LT_PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    if [ -n "$LT_DAEMON_PID" ] && kill -0 "$LT_DAEMON_PID" 2>/dev/null; then
        kill -TERM "$LT_DAEMON_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$LT_DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$LT_DAEMON_PID" 2>/dev/null
        wait "$LT_DAEMON_PID" 2>/dev/null
    fi
    ip netns del "$LT_NS_T" 2>/dev/null
    ip netns del "$LT_NS_G" 2>/dev/null
    rm -f "$LT_UAPI"
    if [ "$rc" -ne 0 ] && [ -f "$LT_TMP/daemon.log" ]; then
        lt_log "daemon log (last 30 lines):"
        tail -n 30 "$LT_TMP/daemon.log" >&2
    fi
    rm -rf "$LT_TMP"
    exit "$rc"
}
trap lt_cleanup EXIT
trap 'exit 130' INT TERM

# lt_setup IMPL: namespaces, veth, the daemon and its interface.
lt_setup() {
    local impl="${1:-phantommesh}"
    [ "$(id -u)" = 0 ] || lt_fail "needs root (network namespaces)"
    [ -x "$LT_BIN" ] || lt_fail "no binary at $LT_BIN (cargo build --release)"
    ip netns add "$LT_NS_T" || lt_fail "ip netns add"
    ip netns add "$LT_NS_G" || lt_fail "ip netns add"
    # scripts/test.sh sweeps what a timed-out scenario registered.
    if [ -n "${E2E_REGISTRY:-}" ]; then
        printf 'netns %s\nnetns %s\nsock %s\n' "$LT_NS_T" "$LT_NS_G" "$LT_UAPI" >>"$E2E_REGISTRY"
    fi
    ip link add "ltv-t$LT_ID" netns "$LT_NS_T" type veth peer name "ltv-g$LT_ID" netns "$LT_NS_G" || lt_fail "veth"
    ip -n "$LT_NS_T" addr add "$LT_T_IP/24" dev "ltv-t$LT_ID"
    ip -n "$LT_NS_G" addr add "$LT_G_IP/24" dev "ltv-g$LT_ID"
    for ns in "$LT_NS_T" "$LT_NS_G"; do
        ip -n "$ns" link set lo up
    done
    ip -n "$LT_NS_T" link set "ltv-t$LT_ID" up
    ip -n "$LT_NS_G" link set "ltv-g$LT_ID" up
    mkdir -p /var/run/wireguard
    case "$impl" in
        phantommesh)
            # One self test once the interface is up, then none, so the
            # daemon's counters hold only the load test's traffic.
            ip netns exec "$LT_NS_T" env WG_PROCESS_FOREGROUND=1 LOG_LEVEL=error \
                PHANTOMMESH_SELF_TEST_INTERVAL=0 "$LT_BIN" "$LT_IF" >"$LT_TMP/daemon.log" 2>&1 &
            ;;
        wireguard-go)
            ip netns exec "$LT_NS_T" env LOG_LEVEL=error wireguard-go -f "$LT_IF" >"$LT_TMP/daemon.log" 2>&1 &
            ;;
        *) lt_fail "unknown implementation $impl" ;;
    esac
    LT_DAEMON_PID=$!
    for _ in $(seq 100); do
        [ -S "$LT_UAPI" ] && break
        kill -0 "$LT_DAEMON_PID" 2>/dev/null || lt_fail "$impl exited during start"
        sleep 0.1
    done
    [ -S "$LT_UAPI" ] || lt_fail "no UAPI socket at $LT_UAPI"
    wg genkey >"$LT_TMP/target.key"
    ip netns exec "$LT_NS_T" wg set "$LT_IF" private-key "$LT_TMP/target.key" listen-port "$LT_PORT" || lt_fail "wg set"
    ip -n "$LT_NS_T" addr add "$LT_TUN_IP/16" dev "$LT_IF"
    ip -n "$LT_NS_T" link set "$LT_IF" up
    if [ "$impl" = phantommesh ]; then
        lt_wait_self_test
    fi
    lt_log "$impl (pid $LT_DAEMON_PID) on $LT_IF in $LT_NS_T, listening on $LT_T_IP:$LT_PORT"
}

# lt_wait_self_test: waits (up to 20 s) for phantommesh's first passing self
# tunnel test; it retries every 10 s while failing (before the key was set).
lt_wait_self_test() {
    local m total failed
    for _ in $(seq 200); do
        m=$(lt_metrics 2>/dev/null || true)
        total=$(lt_metric "$m" phantommesh_tunnel_tests_total "")
        failed=$(lt_metric "$m" phantommesh_tunnel_test_failures_total "")
        if [ "${total%.*}" -gt "${failed%.*}" ]; then
            return 0
        fi
        sleep 0.1
    done
    lt_fail "phantommesh's self test did not pass within 20 s"
}

# lt_udp_echo ADDR PORT: a UDP echo service in the target namespace (killed
# on exit).
lt_udp_echo() {
    ip netns exec "$LT_NS_T" python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    d, a = s.recvfrom(4096)
    s.sendto(d, a)
' "$1" "$2" &
    LT_PIDS+=($!)
    sleep 0.3
}

# lt_loadtest ARGS...: the generator in its namespace against the target.
lt_loadtest() {
    ip netns exec "$LT_NS_G" "$LT_BIN" loadtest --uapi "$LT_UAPI" --endpoint "$LT_T_IP:$LT_PORT" \
        --target-ip "$LT_TUN_IP" "$@"
}

# lt_sources N: gives the generator's link N more addresses and prints the
# comma-separated list of N source addresses for --bind. The target's rate
# limiter counts handshakes per source address, as for real clients.
lt_sources() {
    local base=${LT_G_IP%.*} list= i
    for i in $(seq 2 $(( $1 + 1 ))); do
        [ "$i" -eq 2 ] || ip -n "$LT_NS_G" addr add "$base.$i/24" dev "ltv-g$LT_ID" || lt_fail "addr add"
        list="$list${list:+,}$base.$i"
    done
    echo "$list"
}

# lt_metrics: the daemon's Prometheus text, from inside its namespace.
lt_metrics() {
    ip netns exec "$LT_NS_T" curl -sf --max-time 5 http://127.0.0.1:9586/metrics
}

# lt_metric TEXT NAME LABELS: one sample's value (0 when absent).
lt_metric() {
    local v
    v=$(printf '%s\n' "$1" | awk -v n="$2" -v l="$3" '
        $1 == (l == "" ? n : n "{" l "}") { print $2; exit }')
    echo "${v:-0}"
}

# lt_peer_count: peers the target lists.
lt_peer_count() {
    ip netns exec "$LT_NS_T" wg show "$LT_IF" peers | grep -c . || true
}

# lt_json FILE EXPR: a value from the JSON output (python3).
lt_json() {
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {"d": d}))' "$1" "$2"
}
