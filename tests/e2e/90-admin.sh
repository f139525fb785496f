#!/usr/bin/env bash
# The admin plane (health, /tunnel-test, /metrics, /gates, the gate and
# status commands) of a live phantommesh (skipped, exit 77, when IMPL is not
# phantommesh). Three namespaces, each with its own 127.0.0.1:9586:
#   A  phantommesh -f (wireguard-go style), self tests every 2 s, a gates
#      file whose every gate can pass, LOG_LEVEL=debug; peer of B with a
#      preshared key;
#   B  wireguard-go, the real peer for ?peer= and traffic;
#   C  phantommesh run --config (TOML) with an admin token_file, a gates file
#      whose technical gate cannot pass, RUST_LOG=trace; peers D (with a
#      probe address) and E (no endpoint);
#   D  wireguard-go, C's real peer for probes through the tunnel.
# Checks: readiness false before configuration and true after the first
# passing self test; golden health bodies with ?verbose / ?exclude and one
# check by name; readiness flipping with the TUN's link state; self and
# peer tunnel tests, the hidden test peer, 429 for a concurrent test, 401
# without the token, 404 for peers that are not configured; per-peer probe
# addresses (IPv4, IPv6, changed on SIGHUP, unanswered, outside the allowed
# IPs: 400, invalid in the file: reload refused); /metrics valid
# for promtool and moving with traffic; /gates and the gate / status
# commands' exit codes; bad requests, huge bodies, slow clients and garbage
# (4xx, bounded memory and descriptors, health still answering, header and
# body timeouts, still alive and forwarding); dripping bodies from many
# addresses and from one (health through the reserve, the per-address cap,
# the minimum body rate); and no private or
# preshared key in any answer or log line.
# shellcheck disable=SC2016 # checks pass single-quoted code to eval
source "$(dirname "$0")/lib.sh"
e2e_init

require_phantommesh
require_impl "$WGGO"
PORT=9586
ANS=$E2E_TMP/answers # every admin answer and CLI output, for the key scan
mkdir -p "$ANS"

# ------------------------------------------------------------------ helpers

# req NS PATH [admin_http.py args...]: one request to NS's admin server.
# Sets CODE, BODY (file) and HEAD (file).
req() {
  local ns=$1 path=$2
  shift 2
  http_req "$ns" "http://127.0.0.1:$PORT$path" "$@"
}
# got CODE [TEXT]: the last answer had status CODE (and exactly body TEXT).
got() {
  if [[ $CODE != "$1" ]]; then
    echo "  status $CODE, want $1; body: $(head -c 400 "$BODY")" >&2
    return 1
  fi
  if (($# > 1)) && [[ "$(cat "$BODY"; printf x)" != "$2x" ]]; then
    echo "  body differs from the golden text (< want, > got):" >&2
    diff <(printf '%s' "$2") "$BODY" | sed 's/^/    /' >&2
    return 1
  fi
}
# answer NS PATH CODE [admin_http.py args...]
answer() {
  local ns=$1 path=$2 want=$3
  shift 3
  req "$ns" "$path" "$@"
  got "$want"
}
# golden NS PATH CODE TEXT
golden() {
  req "$1" "$2"
  got "$3" "$4"
}
body_has() {
  grep -qF -- "$1" "$BODY" || {
    echo "  body lacks '$1': $(head -c 400 "$BODY")" >&2
    return 1
  }
}
# head_is NAME VALUE-REGEX: a response header of the last answer.
head_is() {
  grep -qiE "^$1: $2\$" "$HEAD" || {
    echo "  no header '$1: $2' in: $(tr '\n' '|' <"$HEAD")" >&2
    return 1
  }
}
jcheck() { python3 "$E2E_DIR/admin_check.py" "$1" "$BODY" "${@:2}"; }
# ttest NS QUERY [args...]: /tunnel-test, again while the daemon's own
# periodic self test holds the one test slot (429).
ttest() {
  local _
  for _ in $(seq 40); do
    req "$1" "/tunnel-test$2" "${@:3}"
    [[ $CODE == 429 ]] || return 0
    sleep 0.25
  done
}
# tt NS QUERY WANT_CODE [admin_check tunnel-test args...]
tt() {
  ttest "$1" "$2"
  got "$3" && jcheck tunnel-test "${@:4}"
}
urlenc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
b64hex() { printf '%s' "$1" | base64 -d | od -An -tx1 -v | tr -d ' \n'; }
# Prometheus scrape of NS into FILE.
scrape() {
  req "$1" /metrics
  cp "$BODY" "$2"
  [[ $CODE == 200 ]]
}
mval() { python3 "$E2E_DIR/admin_check.py" metric "$@"; }
# pm_in NS OUTNAME ARGS...: the phantommesh CLI in NS; output kept in
# $ANS/OUTNAME.out; sets RC.
pm_in() {
  local ns=$1 out=$ANS/$2.out
  shift 2
  RC=0
  timeout 30 ip netns exec "$ns" "${PM_ARGV[@]}" "$@" >"$out" 2>&1 || RC=$?
  OUT=$out
}
rc_is() {
  [[ $RC == "$1" ]] || {
    echo "  exit status $RC, want $1; output:" >&2
    head -n 20 "$OUT" | sed 's/^/    /' >&2
    return 1
  }
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

READY_OK='[+]tun ok
[+]udp ok
[+]config ok
[+]uapi ok
[+]self-test ok
readyz check passed
'
LIVE_OK='[+]ping ok
[+]packet-loops ok
livez check passed
'
HEALTH_OK='[+]ping ok
[+]packet-loops ok
[+]tun ok
[+]udp ok
[+]config ok
[+]uapi ok
[+]self-test ok
healthz check passed
'

# ------------------------------------------------------------------- set-up

NS_D=$E2E_TAG-d
ns_create "$NS_A" "$NS_B" "$NS_C" "$NS_D"
ns_link "$NS_A" 1 "$NS_B" 2 0
ns_link "$NS_C" 3 "$NS_D" 4 1
keygen a b c d e
(umask 077 && wg genpsk >"$E2E_TMP/ab.psk" && wg genpsk >"$E2E_TMP/cd.psk")
(umask 077 && head -c 24 /dev/urandom | od -An -tx1 -v | tr -d ' \n' >"$E2E_TMP/admin.token")
TOKEN=$(cat "$E2E_TMP/admin.token")
new_if IFA a
new_if IFB b
new_if IFC c
new_if IFD d

# Gates: A's can all pass (no throughput baseline for a test's trickle; a
# few probes lost to a loaded 2-core CI runner during the abuse phases must
# not fail a check of the gate machinery: 3 of 3,076 once made 0.11 %);
# C's technical gate asks for an impossible P99.
GATES_SRC=$REPO_ROOT/config/gates.toml
sed -e 's|^throughput = .*|throughput = ">= 0/s"|' \
  -e 's|^error_rate = .*|error_rate = "<= 5%"|' \
  -e 's|^success_rate = .*|success_rate = ">= 95%"|' \
  "$GATES_SRC" >"$E2E_TMP/gates-pass.toml"
sed '/^name = "technical"/,/^health/ s|^p99_latency = .*|p99_latency = "<= 0.001ms"|' \
  "$GATES_SRC" >"$E2E_TMP/gates-fail.toml"
require "gates files made" grep -q '"<= 5%"' "$E2E_TMP/gates-pass.toml"
require "failing gates file made" grep -q '"<= 0.001ms"' "$E2E_TMP/gates-fail.toml"

# C: run mode from a TOML file, started first so its self tests run meanwhile.
# c_toml PROBE [EXTRA_ALLOWED]: C's config; D's probe address is PROBE.
c_toml() {
  local extra=
  [[ -z ${2:-} ]] || extra=", \"$2\""
  cat >"$E2E_TMP/c.toml" <<EOF
[interface]
name = "$IFC"
private_key_file = "$(keyfile c)"
listen_port = 51823
addresses = ["$(inner4 3)/24", "$(inner6 3)/64"]

[admin]
listen = "127.0.0.1:$PORT"
token_file = "$E2E_TMP/admin.token"

[[peer]]
public_key = "$(pub d)"
preshared_key_file = "$E2E_TMP/cd.psk"
endpoint = "$(outer4 1 4):51824"
allowed_ips = ["$(inner4 4)/32", "$(inner6 4)/128"$extra]
probe = "$1"

[[peer]]
public_key = "$(pub e)"
allowed_ips = ["$(inner4 5)/32"]
EOF
}
c_toml "$(inner4 4)"
ip netns exec "$NS_C" env RUST_LOG=trace PHANTOMMESH_SELF_TEST_INTERVAL=2 \
  PHANTOMMESH_GATES="$E2E_TMP/gates-fail.toml" "${PM_ARGV[@]}" run --config "$E2E_TMP/c.toml" \
  >"$E2E_TMP/$IFC.log" 2>&1 &
E2E_PIDS+=($!)
E2E_PID_OF[$IFC]=$!

# shellcheck disable=SC2034 # read by start_impl in lib.sh
E2E_LOG_LEVEL=debug
start_impl "$NS_A" "$IFA" "env PHANTOMMESH_SELF_TEST_INTERVAL=2 PHANTOMMESH_GATES=$E2E_TMP/gates-pass.toml $IMPL -f"
start_impl "$NS_B" "$IFB" "$WGGO"
start_impl "$NS_D" "$IFD" "$WGGO"
PID_A=${E2E_PID_OF[$IFA]}
PID_C=${E2E_PID_OF[$IFC]}
admin_up() { req "$1" /livez --timeout 2 && [[ $CODE == 200 ]]; }
require "A's admin server answers" wait_until 10 admin_up "$NS_A"

say "before configuration"
# The first self test runs 0.3 s after start: wait for its verdict.
self_test_ran() { req "$NS_A" /readyz/self-test?verbose && ! grep -q 'not run yet' "$BODY"; }
wait_until 5 self_test_ran || true
req "$NS_A" '/readyz?verbose'
unconfigured_ready() {
  got 500 && body_has '[-]config failed: no private key configured' &&
    body_has '[-]self-test failed: ' && [[ $(tail -n 1 "$BODY") == 'readyz check failed' ]]
}
check "/readyz is 500 (config, self-test failing) before configuration" unconfigured_ready
check "/readyz without ?verbose still lists the failures" \
  eval 'req "$NS_A" /readyz && got 500 && body_has "[-]config failed"'
check "/livez is 200 before configuration" golden "$NS_A" /livez 200 "ok"
check "/tunnel-test before configuration: 503, not ok" \
  tt "$NS_A" "" 503 --not-ok --error-has "no private key"

say "configuring A and B"
CONFIG_AT=$SECONDS
node_up "$NS_A" "$IFA" a 51821 1
node_up "$NS_B" "$IFB" b 51822 2
wg_in "$NS_A" set "$IFA" peer "$(pub b)" preshared-key "$E2E_TMP/ab.psk" \
  allowed-ips "$(inner4 2)/32,$(inner6 2)/128" endpoint "$(outer4 0 2):51822"
wg_in "$NS_B" set "$IFB" peer "$(pub a)" preshared-key "$E2E_TMP/ab.psk" \
  allowed-ips "$(inner4 1)/32,$(inner6 1)/128" endpoint "$(outer4 0 1):51821"
node_up "$NS_D" "$IFD" d 51824 4
wg_in "$NS_D" set "$IFD" peer "$(pub c)" preshared-key "$E2E_TMP/cd.psk" \
  allowed-ips "$(inner4 3)/32,$(inner6 3)/128" endpoint "$(outer4 1 3):51823"
ready_ok() { req "$1" /readyz && [[ $CODE == 200 ]]; }
if wait_until 20 ready_ok "$NS_A"; then
  pass "/readyz turns 200 after configuration ($((SECONDS - CONFIG_AT)) s)"
else
  req "$NS_A" '/readyz?verbose'
  fail "/readyz turns 200 after configuration: $CODE $(tr '\n' '|' <"$BODY")"
fi

say "health endpoints"
check "GET /livez: 200 'ok'" golden "$NS_A" /livez 200 "ok"
check "/livez is text/plain" head_is content-type 'text/plain.*'
check "GET /readyz: 200 'ok'" golden "$NS_A" /readyz 200 "ok"
check "GET /healthz: 200 'ok'" golden "$NS_A" /healthz 200 "ok"
check "GET /livez?verbose (golden)" golden "$NS_A" '/livez?verbose' 200 "$LIVE_OK"
check "GET /readyz?verbose (golden)" golden "$NS_A" '/readyz?verbose' 200 "$READY_OK"
check "GET /healthz?verbose (golden)" golden "$NS_A" '/healthz?verbose' 200 "$HEALTH_OK"
check "GET /readyz?verbose&exclude=self-test&exclude=uapi (golden)" \
  golden "$NS_A" '/readyz?verbose&exclude=self-test&exclude=uapi' 200 \
  $'[+]tun ok\n[+]udp ok\n[+]config ok\nreadyz check passed\n'
check "GET /healthz?exclude=ping&verbose (golden)" \
  golden "$NS_A" '/healthz?exclude=ping&verbose' 200 "${HEALTH_OK#'[+]ping ok'$'\n'}"
for c in tun udp config uapi self-test; do
  check "GET /readyz/$c: 200 'ok'" golden "$NS_A" "/readyz/$c" 200 "ok"
done
check "GET /readyz/tun?verbose (golden)" golden "$NS_A" '/readyz/tun?verbose' 200 \
  $'[+]tun ok\nreadyz check passed\n'
check "GET /livez/packet-loops: 200 'ok'" golden "$NS_A" /livez/packet-loops 200 "ok"
check "GET /healthz/self-test: 200 'ok'" golden "$NS_A" /healthz/self-test 200 "ok"
check "GET /readyz/nope: 404" answer "$NS_A" /readyz/nope 404
check "GET /readyz/ping (a live check, not a ready one): 404" answer "$NS_A" /readyz/ping 404
check "GET /livez/tun: 404" answer "$NS_A" /livez/tun 404
check "GET /readyz?bogus=1: 400" answer "$NS_A" '/readyz?bogus=1' 400

say "traffic and metrics"
scrape "$NS_A" "$E2E_TMP/m0.prom"
check "ping B through the tunnel (IPv4)" ping_ok "$NS_A" "$(inner4 2)" 10
check "ping B through the tunnel (IPv6)" ping_ok "$NS_A" "$(inner6 2)" 3
require "GET /metrics: 200" scrape "$NS_A" "$E2E_TMP/m1.prom"
check "/metrics content type is Prometheus text" head_is content-type 'text/plain; version=0\.0\.4.*'
if command -v promtool >/dev/null; then
  promtool_ok() {
    promtool check metrics <"$1" >"$E2E_TMP/promtool.log" 2>&1 ||
      { sed 's/^/    /' "$E2E_TMP/promtool.log" >&2 && return 1; }
  }
  check "promtool check metrics accepts /metrics" promtool_ok "$E2E_TMP/m1.prom"
else
  say "promtool not installed (Debian package prometheus): promtool check skipped"
fi
check "/metrics parses (TYPE lines, values, no duplicate series)" \
  python3 "$E2E_DIR/admin_check.py" prom "$E2E_TMP/m1.prom"
grew() { # FILE0 FILE1 MIN NAME LABELS...: the series grew by at least MIN
  local v0 v1
  v0=$(mval "$1" "${@:4}") && v1=$(mval "$2" "${@:4}") || return 1
  python3 -c 'import sys; a, b, m = map(float, sys.argv[1:]); sys.exit(0 if b - a >= m else 1)' \
    "$v0" "$v1" "$3" || {
    echo "  $4 ${*:5}: $v0 -> $v1, want +$3" >&2
    return 1
  }
}
check "phantommesh_packets_total{direction=rx} grows with pings" \
  grew "$E2E_TMP/m0.prom" "$E2E_TMP/m1.prom" 13 phantommesh_packets_total direction=rx
check "phantommesh_packets_total{direction=tx} grows with pings" \
  grew "$E2E_TMP/m0.prom" "$E2E_TMP/m1.prom" 13 phantommesh_packets_total direction=tx
check "wireguard_received_bytes_total for B grows with pings" \
  grew "$E2E_TMP/m0.prom" "$E2E_TMP/m1.prom" 1000 wireguard_received_bytes_total \
  interface="$IFA" public_key="$(pub b)"
check "wireguard_sent_bytes_total for B grows with pings" \
  grew "$E2E_TMP/m0.prom" "$E2E_TMP/m1.prom" 1000 wireguard_sent_bytes_total \
  interface="$IFA" public_key="$(pub b)"
check "phantommesh_peers is 1 (the test peer is not counted)" \
  test "$(mval "$E2E_TMP/m1.prom" phantommesh_peers)" = 1
check "phantommesh_ready is 1" test "$(mval "$E2E_TMP/m1.prom" phantommesh_ready)" = 1
check "phantommesh_health_check_passed{check=self-test} is 1" \
  test "$(mval "$E2E_TMP/m1.prom" phantommesh_health_check_passed check=self-test)" = 1

say "/tunnel-test"
check "GET /tunnel-test: 200, self test, 20 probes all answered" \
  tt "$NS_A" "" 200 --ok --mode self --sent 20
check "/tunnel-test is application/json" head_is content-type 'application/json.*'
check "POST /tunnel-test?probes=5: 200, 5 probes" \
  eval 'ttest "$NS_A" "?probes=5" --method POST && got 200 && jcheck tunnel-test --ok --mode self --sent 5'
check "GET /tunnel-test?probes=1000: 1000 probes all answered" \
  tt "$NS_A" '?probes=1000' 200 --ok --mode self --sent 1000
KB=$(urlenc "$(pub b)")
check "?peer=B (wireguard-go, no probe address): 200, handshake timed, no probes" \
  tt "$NS_A" "?peer=$KB" 200 --ok --mode peer --peer "$(pub b)" --no-probe
check "?peer=B also as POST" \
  eval 'ttest "$NS_A" "?peer=$KB" --method POST && got 200 && jcheck tunnel-test --ok --mode peer'
check "?peer=<a key that is not configured>: 404" \
  eval 'answer "$NS_A" "/tunnel-test?peer=$(urlenc "$(pub d)")" 404 && jcheck error --has "unknown peer"'
check "?peer=<A's own public key>: 404" answer "$NS_A" "/tunnel-test?peer=$(urlenc "$(pub a)")" 404
check "?peer=notakey: 400" eval 'answer "$NS_A" "/tunnel-test?peer=notakey" 400 && jcheck error'
check "?peer=<31-byte key>: 400" \
  answer "$NS_A" "/tunnel-test?peer=$(urlenc "$(head -c 31 /dev/urandom | base64)")" 400
for q in probes=0 probes=1001 probes=abc probes=-1 'probes=' target=10.201.0.2; do
  check "/tunnel-test?$q: 400" eval 'answer "$NS_A" "/tunnel-test?$q" 400 && jcheck error'
done
check "test peers never show in UAPI (wg show) during 400 tests" \
  ip netns exec "$NS_A" python3 "$E2E_DIR/admin_abuse.py" hidden 127.0.0.1 "$PORT" \
  "$(sock_of "$IFA")" "$(b64hex "$(pub b)")"
check "wg show lists only B after the tests" test "$(wg_in "$NS_A" show "$IFA" peers)" = "$(pub b)"
check "a second concurrent test gets 429 with Retry-After" \
  ip netns exec "$NS_A" python3 "$E2E_DIR/admin_abuse.py" concurrent 127.0.0.1 "$PORT"

require "GET /metrics after the tests" scrape "$NS_A" "$E2E_TMP/m2.prom"
check "phantommesh_tunnel_tests_total grew" \
  grew "$E2E_TMP/m1.prom" "$E2E_TMP/m2.prom" 4 phantommesh_tunnel_tests_total
check "phantommesh_tunnel_test_rtt_seconds_count grew by the probes" \
  grew "$E2E_TMP/m1.prom" "$E2E_TMP/m2.prom" 1000 phantommesh_tunnel_test_rtt_seconds_count
check "phantommesh_handshakes_total has completed handshakes" \
  eval '(( $(grep -E "^phantommesh_handshakes_total\{.*\} " "$E2E_TMP/m2.prom" | awk "{s+=\$2} END {print int(s)}") > 0 ))'
check "promtool accepts /metrics after the tests" eval \
  'command -v promtool >/dev/null || exit 0; promtool_ok "$E2E_TMP/m2.prom"'

say "/gates, gate and status commands (A)"
check "GET /gates: 200, every gate passes" \
  eval 'answer "$NS_A" /gates 200 && jcheck gates --pass --names performance,technical,mesh --metric mesh.mesh_peers:pass'
check "/gates is application/json" head_is content-type 'application/json.*'
check "GET /gates/technical: 200, one gate" \
  eval 'answer "$NS_A" /gates/technical 200 && jcheck gates --single --gate technical:pass'
check "GET /gates/nope: 404" answer "$NS_A" /gates/nope 404
pm_in "$NS_A" gate-a gate --url "http://127.0.0.1:$PORT"
check "gate --url (all gates pass): exit 0" rc_is 0
check "gate prints the runbook table" grep -q 'Metric *Target *Actual *Status *Margin' "$OUT"
pm_in "$NS_A" gate-a-tech gate --url "http://127.0.0.1:$PORT" --gate technical
check "gate --gate technical: exit 0" rc_is 0
pm_in "$NS_A" gate-a-json gate --url "http://127.0.0.1:$PORT" --json
check "gate --json: exit 0, a passing report" \
  eval 'rc_is 0 && python3 "$E2E_DIR/admin_check.py" gate-cli-json "$OUT" --pass'
pm_in "$NS_A" gate-a-nope gate --url "http://127.0.0.1:$PORT" --gate nope
check "gate --gate nope: exit 2" rc_is 2
pm_in "$NS_A" gate-unreach gate --url "http://127.0.0.1:9"
check "gate against an unreachable URL: exit 3" rc_is 3
pm_in "$NS_A" gate-mixed gate --url "http://127.0.0.1:$PORT" "http://127.0.0.1:9"
check "gate with one good and one unreachable URL: exit 3" rc_is 3
pm_in "$NS_A" status-a status --url "http://127.0.0.1:$PORT"
check "status: exit 0, shows the interface and B" \
  eval 'rc_is 0 && grep -qF "$IFA" "$OUT" && grep -qF "$(pub b)" "$OUT"'
pm_in "$NS_A" status-a-json status --url "http://127.0.0.1:$PORT" --json
check "status --json: exit 0, the interface and B" \
  eval 'rc_is 0 && python3 "$E2E_DIR/admin_check.py" status-json "$OUT" --interface "$IFA" --peer "$(pub b)"'
pm_in "$NS_A" status-unreach status --url "http://127.0.0.1:9"
check "status against an unreachable URL: exit 3" rc_is 3

say "run mode with a token and a failing gate (C)"
require "C's admin server answers" wait_until 15 admin_up "$NS_C"
check "C: /readyz turns 200 (no token needed)" wait_until 15 ready_ok "$NS_C"
check "C: /metrics needs no token" answer "$NS_C" /metrics 200
unauthorized() { got 401 && head_is www-authenticate 'Bearer.*'; }
check "C: GET /tunnel-test without the token: 401, WWW-Authenticate: Bearer" \
  eval 'req "$NS_C" /tunnel-test && unauthorized'
check "C: POST /tunnel-test without the token: 401" \
  eval 'req "$NS_C" /tunnel-test --method POST && unauthorized'
check "C: /tunnel-test with a wrong token: 401" \
  eval 'req "$NS_C" /tunnel-test --token "${TOKEN%?}x" && unauthorized'
check "C: /tunnel-test with the token as a Basic credential: 401" \
  eval 'req "$NS_C" /tunnel-test --header "Authorization: Basic $TOKEN" && unauthorized'
check "C: ?peer= of a configured peer without the token: 401" \
  eval 'req "$NS_C" "/tunnel-test?peer=$(urlenc "$(pub d)")" && unauthorized'
check "C: /tunnel-test with the token: 200, self test passes" \
  eval 'ttest "$NS_C" "" --token "$TOKEN" && got 200 && jcheck tunnel-test --ok --mode self --sent 20'
check "C: ?peer=<unknown> with the token: 404" \
  answer "$NS_C" "/tunnel-test?peer=$(urlenc "$(pub b)")" 404 --token "$TOKEN"
check "C: ?peer=<configured, no endpoint> with the token: 503, not ok" \
  eval 'ttest "$NS_C" "?peer=$(urlenc "$(pub e)")" --token "$TOKEN" && got 503 && jcheck tunnel-test --not-ok --mode peer --no-probe'

say "per-peer probe addresses (C pings behind D through the tunnel)"
KD=$(urlenc "$(pub d)")
# ptest QUERY WANT_CODE [admin_check tunnel-test args...]: C's ?peer=D test.
ptest() {
  ttest "$NS_C" "?peer=$KD$1" --token "$TOKEN" && got "$2" &&
    jcheck tunnel-test --mode peer --peer "$(pub d)" "${@:3}"
}
log_count() { grep -c -- "$1" "$E2E_TMP/$IFC.log" || true; }
more_lines() { (($(log_count "$1") > $2)); }
# hup_c PATTERN: SIGHUP to C; waits for one more log line with PATTERN.
hup_c() {
  local n
  n=$(log_count "$1")
  kill -HUP "$PID_C"
  wait_until 10 more_lines "$1" "$n"
}
check "C: ?peer=D (wireguard-go, probe $(inner4 4)): 200, 20 probes all answered" \
  ptest "" 200 --ok --probe-address "$(inner4 4)" --probe-sent 20 --probe-received 20
check "C: ?peer=D&probes=5: 200, 5 probes all answered" \
  ptest "&probes=5" 200 --ok --probe-sent 5 --probe-received 5
c_toml 10.201.0.44 10.201.0.44/32
check "C: SIGHUP, probe 10.201.0.44 (routed to D, no host there): reloaded" hup_c "config reloaded"
check "C: ?peer=D&probes=3: 503, handshake ok but 0 of 3 probes answered" \
  ptest "&probes=3" 503 --not-ok --probe-address 10.201.0.44 --probe-sent 3 \
  --probe-received 0 --error-has "3 of 3 probes to 10.201.0.44 got no reply"
c_toml "$(inner6 4)"
cp "$E2E_TMP/c.toml" "$E2E_TMP/c-v6.toml"
check "C: SIGHUP, probe $(inner6 4): reloaded" hup_c "config reloaded"
check "C: ?peer=D: 200, 20 IPv6 probes all answered" \
  ptest "" 200 --ok --probe-address "$(inner6 4)" --probe-sent 20 --probe-received 20
c_toml 10.201.0.99
reload_refused() { hup_c "config reload failed" && grep -qF -- "$1" "$E2E_TMP/$IFC.log"; }
check "C: SIGHUP with a probe outside D's allowed_ips: reload refused, naming it" \
  reload_refused "probe 10.201.0.99 is not in the peer's allowed_ips"
check "C: after the refused reload the running probe address is kept" \
  ptest "&probes=3" 200 --ok --probe-address "$(inner6 4)" --probe-sent 3
wg_in "$NS_C" set "$IFC" peer "$(pub d)" allowed-ips "$(inner4 4)/32"
error_is() { answer "$NS_C" "$1" "$2" --token "$TOKEN" && jcheck error --has "$3"; }
check "C: D's allowed IPs changed over UAPI to exclude its probe: 400 saying so" \
  error_is "/tunnel-test?peer=$KD" 400 \
  "probe address $(inner6 4) of peer $(pub d) is outside that peer's allowed IPs ($(inner4 4)/32)"
cp "$E2E_TMP/c-v6.toml" "$E2E_TMP/c.toml"
check "C: SIGHUP restores D's allowed IPs" hup_c "config reloaded"
check "C: ?peer=D&probes=5: 200 again" \
  ptest "&probes=5" 200 --ok --probe-address "$(inner6 4)" --probe-sent 5 --probe-received 5
check "C: D's traffic counters saw the probes" \
  eval '(( $(wg_in "$NS_D" show "$IFD" transfer | awk "{print \$2}") > 20 * 84 ))'

check "C: GET /gates: 200, technical fails on P99" \
  eval 'answer "$NS_C" /gates 200 && jcheck gates --fail --gate technical:fail --metric technical.p99_latency:fail'
check "C: GET /gates/technical: 503" \
  eval 'answer "$NS_C" /gates/technical 503 && jcheck gates --single --fail'
pm_in "$NS_C" gate-c gate --url "http://127.0.0.1:$PORT"
check "C: gate --url with a failing gate: exit 1" rc_is 1
pm_in "$NS_C" gate-c-tech gate --url "http://127.0.0.1:$PORT" --gate technical --json
check "C: gate --gate technical --json: exit 1, a failing report" \
  eval 'rc_is 1 && python3 "$E2E_DIR/admin_check.py" gate-cli-json "$OUT" --fail'
pm_in "$NS_C" status-c status --url "http://127.0.0.1:$PORT"
check "C: status with a failing gate: exit 1" rc_is 1
scrape "$NS_C" "$E2E_TMP/c.prom"
check "C: phantommesh_gate_passed{gate=technical} is 0" \
  test "$(mval "$E2E_TMP/c.prom" phantommesh_gate_passed gate=technical)" = 0

say "readiness follows the TUN"
ip -n "$NS_A" link set "$IFA" down
check "link down: /readyz 500 with [-]tun failed" \
  eval 'req "$NS_A" /readyz && got 500 && body_has "[-]tun failed: interface $IFA is down" && [[ $(tail -n 1 "$BODY") == "readyz check failed" ]]'
check "link down: /readyz/tun 500" \
  golden "$NS_A" /readyz/tun 500 $'[-]tun failed: interface '"$IFA"$' is down\nreadyz check failed\n'
check "link down: /readyz?exclude=tun&exclude=self-test 200" \
  golden "$NS_A" '/readyz?exclude=tun&exclude=self-test' 200 "ok"
check "link down: /livez still 200" golden "$NS_A" /livez 200 "ok"
check "link down: /healthz 500" answer "$NS_A" /healthz 500
DOWN_AT=$SECONDS
ip -n "$NS_A" link set "$IFA" up
# IPv6 addresses go with the link; IPv4 ones stay.
ip -n "$NS_A" addr add "$(inner6 1)/64" dev "$IFA" nodad 2>/dev/null || true
if wait_until 25 ready_ok "$NS_A"; then
  pass "link up: /readyz back to 200 ($((SECONDS - DOWN_AT)) s)"
else
  req "$NS_A" '/readyz?verbose'
  fail "link up: /readyz back to 200: $CODE $(tr '\n' '|' <"$BODY")"
fi
check "link up: ping B again" ping_ok "$NS_A" "$(inner4 2)"

say "bad requests"
for p in / /nope /livez/nope /healthz/nope /metrics/x /gates/technical/x /tunnel-test/x; do
  check "GET $p: 404" answer "$NS_A" "$p" 404
done
check "GET /readyz/%ff (not UTF-8): 400 or 404" eval 'req "$NS_A" /readyz/%ff && [[ $CODE == 400 || $CODE == 404 ]]'
check "POST /livez: 405" answer "$NS_A" /livez 405 --method POST
check "DELETE /gates: 405" answer "$NS_A" /gates 405 --method DELETE
check "GET /livez?verbose&foo: 400" answer "$NS_A" '/livez?verbose&foo' 400
# Its 200 needs a passing self test: a periodic one may be running again
# since the link flap above, so wait for readiness instead of racing it.
check "ready again before the next health check" wait_until 20 ready_ok "$NS_A"
check "GET /healthz?exclude: unknown names are ignored (200)" answer "$NS_A" '/healthz?exclude=nope' 200
check "POST /tunnel-test with a 4096-byte body: accepted" \
  eval 'ttest "$NS_A" "?probes=1" --method POST --body-size 4096 && got 200'
check "POST /tunnel-test with a 5000-byte body: 413" \
  answer "$NS_A" '/tunnel-test?probes=1' 413 --method POST --body-size 5000
check "POST /tunnel-test with a 1 MiB chunked body: 413" \
  answer "$NS_A" '/tunnel-test?probes=1' 413 --method POST --body-size 1048576 --chunked
check "GET /livez with a 5000-byte body: 413" answer "$NS_A" /livez 413 --body-size 5000

fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
RSS0=$(rss_kb "$PID_A")
FD0=$(fd_count "$PID_A")
ip netns exec "$NS_A" python3 "$E2E_DIR/admin_abuse.py" slow 127.0.0.1 "$PORT" 100 6 \
  >"$E2E_TMP/slow.log" 2>&1 &
SLOW_PID=$!
E2E_PIDS+=("$SLOW_PID")
sleep 1.5
# fast_health [PATH]: 200 "ok" within 1 s, timed from the client's connect
# (not from the start of its interpreter, which a loaded runner can delay).
fast_health() {
  req "$NS_A" "${1:-/livez}" --timeout 3 --elapsed "$E2E_TMP/elapsed"
  got 200 "ok" &&
    python3 -c 'import sys; t = float(open(sys.argv[1]).read()); print(f"    answered in {t * 1000:.0f} ms"); sys.exit(0 if t < 1.0 else 1)' \
      "$E2E_TMP/elapsed"
}
check "slow clients: /livez still answers within 1 s" fast_health /livez
check "slow clients: /healthz still answers within 1 s" fast_health /healthz
check "slow clients: /metrics still answers" answer "$NS_A" /metrics 200 --timeout 5
check "slow clients: /tunnel-test still works" tt "$NS_A" "?probes=5" 200 --ok
RSS_MAX=$RSS0
FD_MAX=$FD0
for _ in 1 2 3 4 5 6 7 8; do
  r=$(rss_kb "$PID_A")
  ((r > RSS_MAX)) && RSS_MAX=$r
  r=$(fd_count "$PID_A")
  ((r > FD_MAX)) && FD_MAX=$r
  sleep 0.5
done
wait "$SLOW_PID" || true
sed 's/^/    /' "$E2E_TMP/slow.log"
say "RSS: ${RSS0} kB before the slow clients, at most ${RSS_MAX} kB with them"
check "slow clients: RSS grew by less than 32 MiB" test $((RSS_MAX - RSS0)) -lt 32768
say "descriptors: $FD0 before the slow clients, at most $FD_MAX with them (cap: 64 connections)"
check "slow clients: at most 64 connections' worth of new descriptors" test $((FD_MAX - FD0)) -le 72
check "slow clients gone: /livez answers" golden "$NS_A" /livez 200 "ok"

# Clients that announce a 4096-byte body and drip it (a byte every 2 s),
# reconnecting when cut: 80 from 16 addresses (127.0.0.10-25, the
# namespace's loopback; five each, under the per-address cap of 16) hold
# the whole pool of 64, so /livez must come through the health reserve;
# then 64 from one address, which the per-address cap holds to 16.
say "dripping bodies"
DRIP_SRC=()
for i in $(seq 10 25); do DRIP_SRC+=("127.0.0.$i"); done
drip() { # LOG CLIENTS ROUNDS FULL SRC...
  local log=$1
  shift
  ip netns exec "$NS_A" python3 "$E2E_DIR/admin_abuse.py" drip 127.0.0.1 "$PORT" "$@" \
    >"$E2E_TMP/$log" 2>&1
  local rc=$?
  sed 's/^/    /' "$E2E_TMP/$log"
  return $rc
}
check "80 dripping clients from 16 addresses: /livez answers within 1 s in 5 rounds" \
  drip drip16.log 80 5 64 "${DRIP_SRC[@]}"
check "dripping clients: the pool filled (log)" \
  grep -q "when all are mid-request, serving only health requests" "$E2E_TMP/$IFA.log"
check "dripping clients: cut with 408 near the 2 s grace, none held 5 s" \
  eval 'grep -q "HTTP/1.1 408, held 1.5-5 s" "$E2E_TMP/drip16.log" && ! grep -q "held >= 5 s" "$E2E_TMP/drip16.log"'
check "dripping clients: requests beyond the pool got 503 from the reserve" \
  grep -q "HTTP/1.1 503" "$E2E_TMP/drip16.log"
held_most() { awk '/connections held over 0.5 s at once/ {print $3}' "$E2E_TMP/$1"; }
# Up to 8 more may wait (1 s) for a slot beyond the 64.
check "dripping clients: they held the whole pool ($(held_most drip16.log) at once, 64-72)" \
  eval '(($(held_most drip16.log) >= 64 && $(held_most drip16.log) <= 72))'
check "64 dripping clients from one address: /livez answers within 1 s in 3 rounds" \
  drip drip1.log 64 3 16 127.0.0.30
check "one address: capped at 16 held at once ($(held_most drip1.log)), the rest 503 from the reserve" \
  eval '(($(held_most drip1.log) >= 8 && $(held_most drip1.log) <= 16)) && grep -q "HTTP/1.1 503" "$E2E_TMP/drip1.log"'
check "dripping clients gone: /livez answers" golden "$NS_A" /livez 200 "ok"
check "dripping clients gone: /metrics answers" answer "$NS_A" /metrics 200 --timeout 5
check "dripping clients gone: /tunnel-test works" tt "$NS_A" "?probes=5" 200 --ok

# The server's own timeouts (10 s), measured while the garbage goes by.
ip netns exec "$NS_A" python3 "$E2E_DIR/admin_abuse.py" timeouts 127.0.0.1 "$PORT" 10 \
  >"$E2E_TMP/timeouts.log" 2>&1 &
TIMEOUTS_PID=$!
E2E_PIDS+=("$TIMEOUTS_PID")
ip netns exec "$NS_A" python3 "$E2E_DIR/admin_abuse.py" garbage 127.0.0.1 "$PORT" \
  >"$E2E_TMP/garbage.log" 2>&1 || true
sed 's/^/    /' "$E2E_TMP/garbage.log"
check "garbage: no 5xx answer" eval '! grep -qE "HTTP/1\.[01] 5" "$E2E_TMP/garbage.log"'
check "garbage: the daemon is alive" pid_alive "$PID_A"
check "garbage: /livez 200" golden "$NS_A" /livez 200 "ok"
check "garbage: /readyz 200" answer "$NS_A" /readyz 200
check "garbage: the tunnel still pings" ping_ok "$NS_A" "$(inner4 2)"
check "garbage: self test still passes" tt "$NS_A" "" 200 --ok --mode self
TIMEOUTS_RC=0
wait "$TIMEOUTS_PID" || TIMEOUTS_RC=$?
sed 's/^/    /' "$E2E_TMP/timeouts.log"
check "timeouts: unfinished or dripping request heads and an idle keep-alive end after 10 s, a missing body after 2 s (408)" \
  test "$TIMEOUTS_RC" = 0

# More stalled connections than the daemon may have descriptors: the
# connection cap (64, the longest idle closed first) keeps the admin server
# well inside the limit, so health keeps answering and the tunnel carries on.
if command -v prlimit >/dev/null; then
  say "stalled connections beyond the descriptor limit"
  # Only the soft limit moves: raising a hard limit back needs CAP_SYS_RESOURCE.
  # The daemon runs as its dropped user: prlimit as that user (root needs
  # CAP_SYS_RESOURCE for another uid's process, which a container may lack).
  as_daemon() { setpriv --reuid="$(ps -o uid= -p "$PID_A" | tr -d " ")" --regid="$(ps -o gid= -p "$PID_A" | tr -d " ")" --clear-groups "$@"; }
  NOFILE=$(as_daemon prlimit --pid "$PID_A" --nofile --noheadings --raw --output SOFT)
  as_daemon prlimit --pid "$PID_A" --nofile=128:
  ip netns exec "$NS_A" python3 "$E2E_DIR/admin_abuse.py" hold 127.0.0.1 "$PORT" 300 4 \
    >"$E2E_TMP/hold.log" 2>&1 &
  HOLD_PID=$!
  E2E_PIDS+=("$HOLD_PID")
  sleep 2.5
  FD_HOLD=$(fd_count "$PID_A")
  check "300 stalled connections: the daemon keeps running" pid_alive "$PID_A"
  check "300 stalled connections: /livez answers within 1 s" fast_health /livez
  check "300 stalled connections: /healthz answers within 1 s" fast_health /healthz
  check "300 stalled connections: descriptors stay under the 128 limit ($FD_HOLD open)" \
    test "$FD_HOLD" -lt 128
  check "300 stalled connections: the tunnel still pings" ping_ok "$NS_A" "$(inner4 2)"
  wait "$HOLD_PID" || true
  sed 's/^/    /' "$E2E_TMP/hold.log"
  pid_alive "$PID_A" && { as_daemon prlimit --pid "$PID_A" --nofile="$NOFILE": || say "cannot restore the descriptor limit"; }
  check "descriptors back: the daemon is alive" pid_alive "$PID_A"
  check "descriptors back: /readyz 200 again" eval 'pid_alive "$PID_A" && wait_until 15 ready_ok "$NS_A"'
else
  say "prlimit not installed (util-linux): descriptor exhaustion not tested"
fi
check "C is alive at the end" pid_alive "${E2E_PID_OF[$IFC]}"

say "no key material in any answer or log"
SECRETS=()
for f in "$(keyfile a)" "$(keyfile c)" "$E2E_TMP/ab.psk" "$E2E_TMP/cd.psk"; do
  k=$(cat "$f")
  SECRETS+=("${k:0:43}" "$(b64hex "$k")")
done
SCANNED=("$ANS" "$E2E_TMP/$IFA.log" "$E2E_TMP/$IFC.log" "$E2E_TMP"/*.prom)
no_secrets() {
  local s hits=0
  for s in "${SECRETS[@]}"; do
    if grep -rqiF -- "$s" "${SCANNED[@]}"; then
      echo "  key material found in: $(grep -rliF -- "$s" "${SCANNED[@]}" | tr '\n' ' ')" >&2
      hits=1
    fi
  done
  ((hits == 0))
}
say "scanning $(find "$ANS" -type f | wc -l) answers, A's log ($(wc -l <"$E2E_TMP/$IFA.log") lines, debug), C's log ($(wc -l <"$E2E_TMP/$IFC.log") lines, trace)"
check "the scan sees public keys (control)" grep -rqF -- "$(pub b)" "$ANS"
# (The daemon has few debug and no trace statements: these logs are short.)
say "A's log has $(grep -c ' DEBUG ' "$E2E_TMP/$IFA.log" || true) DEBUG lines, C's $(grep -cE ' (DEBUG|TRACE) ' "$E2E_TMP/$IFC.log" || true) DEBUG/TRACE lines"
check "both daemons' logs are scanned and C took RUST_LOG=trace (control)" \
  eval 'grep -q "admin server listening" "$E2E_TMP/$IFA.log" && grep -q "admin server listening" "$E2E_TMP/$IFC.log" && ! grep -q "invalid RUST_LOG" "$E2E_TMP/$IFC.log"'
check "no private or preshared key (base64 or hex) in answers or logs" no_secrets
