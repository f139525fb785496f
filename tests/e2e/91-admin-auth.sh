#!/usr/bin/env bash
# The admin API off loopback (skipped, exit 77, when IMPL is not
# phantommesh). Namespaces A and B joined by link 0; A's daemon serves its
# admin API on its veth address 10.200.0.1 (a node IP's stand-in), B runs
# wireguard-go as A's peer.
# (a) run mode with neither a token nor allow_unauthenticated: exits 2
#     naming both settings, before creating its interface; --check agrees;
# (b) allow_unauthenticated = true: starts, warns once, /metrics open;
# (c) a token: health open without it; /metrics, /mesh, /tunnel-test and
#     /tunnel-test?peer= answer 401 (WWW-Authenticate: Bearer) without it
#     and with a wrong one, and answer with it;
# (d) two /tunnel-test?peer= within 5 s: the second reports the reused
#     session and the peer's last handshake (nanoseconds, from /metrics)
#     does not move;
# (e) wg-mode with PHANTOMMESH_ADMIN_TOKEN_FILE: the same for /metrics;
#     without a token its admin server is off, its tunnel up.
# The token never appears in an answer or a log line.
# shellcheck disable=SC2016,SC2034 # checks pass single-quoted code to eval
# shellcheck disable=SC2015 # A && B || C: C when either fails, as meant
source "$(dirname "$0")/lib.sh"
e2e_init

require_phantommesh
require_impl "$WGGO"
ADMIN_IP=$(outer4 0 1)
ANS=$E2E_TMP/answers
mkdir -p "$ANS"

# req PORT PATH [admin_http.py args...]: one request to A's admin API at
# ADMIN_IP:PORT, from B's namespace (off-host, as a scraper would be).
# Sets CODE, BODY and HEAD (files).
req() {
  local port=$1 path=$2
  shift 2
  http_req "$NS_B" "http://$ADMIN_IP:$port$path" "$@"
}
# is PORT PATH CODE [admin_http.py args...]
is() {
  local port=$1 path=$2 want=$3
  shift 3
  req "$port" "$path" "$@"
  [[ $CODE == "$want" ]] || {
    echo "  $path: status $CODE, want $want; body: $(head -c 300 "$BODY")" >&2
    return 1
  }
}
# up PORT: /livez answers 200 (quietly, for polling).
up() { req "$1" /livez --timeout 2 && [[ $CODE == 200 ]]; }
# refused PORT PATH: 401 with the Bearer challenge, without and with a
# wrong token, and an answer that says why.
refused() {
  local t
  for t in "" wrong-token; do
    if [[ -n $t ]]; then req "$1" "$2" --token "$t"; else req "$1" "$2"; fi
    [[ $CODE == 401 ]] && grep -qi '^www-authenticate: Bearer' "$HEAD" &&
      grep -q 'bearer token required' "$BODY" || {
      echo "  $2 (token '$t'): status $CODE; $(cat "$HEAD") $(head -c 200 "$BODY")" >&2
      return 1
    }
  done
}

ns_create "$NS_A" "$NS_B"
ns_link "$NS_A" 1 "$NS_B" 2 0
keygen a b
TOKEN=$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
(umask 077 && printf '%s\n' "$TOKEN" >"$E2E_TMP/admin.token")
HTTP_REDACT=$TOKEN
new_if IFA a
new_if IFB b
new_if IFW w

# a_toml ADMIN_LINES: A's run-mode config with these [admin] lines.
a_toml() {
  cat >"$E2E_TMP/a.toml" <<EOF
[interface]
name = "$IFA"
private_key_file = "$(keyfile a)"
listen_port = 51821
addresses = ["$(inner4 1)/24"]

[admin]
listen = "$ADMIN_IP:9586"
$1

[[peer]]
public_key = "$(pub b)"
endpoint = "$(outer4 0 2):51822"
allowed_ips = ["$(inner4 2)/32"]
EOF
}
# run_a LOG: starts A in run mode in the background (PID_A).
run_a() {
  ip netns exec "$NS_A" env PHANTOMMESH_SELF_TEST_INTERVAL=0 "${PM_ARGV[@]}" run --config "$E2E_TMP/a.toml" \
    >"$E2E_TMP/$1" 2>&1 &
  PID_A=$!
  E2E_PIDS+=("$PID_A")
  E2E_PID_OF["$IFA"]=$PID_A
}

say "(a) off loopback without a token or allow_unauthenticated"
a_toml ""
RC=0
timeout 30 ip netns exec "$NS_A" "${PM_ARGV[@]}" run --config "$E2E_TMP/a.toml" >"$E2E_TMP/a-refused.log" 2>&1 || RC=$?
names_both() { grep -q "$ADMIN_IP:9586" "$1" && grep -q '\[admin\] token_file' "$1" && grep -q 'allow_unauthenticated = true' "$1"; }
check "run mode refuses to start (exit 2) and names token_file and allow_unauthenticated" \
  eval '[[ $RC == 2 ]] && names_both "$E2E_TMP/a-refused.log"'
((CHECK_OK)) || cat "$E2E_TMP/a-refused.log" >&2
check "no interface was created" link_gone "$NS_A" "$IFA"
RC=0
ip netns exec "$NS_A" "${PM_ARGV[@]}" run --check --config "$E2E_TMP/a.toml" >"$E2E_TMP/a-check.log" 2>&1 || RC=$?
check "run --check reports the same (exit 2)" eval '[[ $RC == 2 ]] && names_both "$E2E_TMP/a-check.log"'

say "(b) allow_unauthenticated = true"
a_toml "allow_unauthenticated = true"
run_a a-open.log
require "A starts and its admin API answers on $ADMIN_IP" wait_until 15 up 9586
check "one warning about the unauthenticated admin API" \
  eval '[[ $(grep -c "without a token" "$E2E_TMP/a-open.log") == 1 ]] && grep "without a token" "$E2E_TMP/a-open.log" | grep -q WARN'
check "/metrics is open" is 9586 /metrics 200
stop_impl "$IFA" || true
wait_until 10 link_gone "$NS_A" "$IFA" || true

say "(c) with a token"
a_toml "token_file = \"$E2E_TMP/admin.token\""
run_a a.log
start_impl "$NS_B" "$IFB" "$WGGO"
node_up "$NS_B" "$IFB" b 51822 2
peer_add "$NS_B" "$IFB" a "$(inner4 1)/32" "$(outer4 0 1):51821"
require "A starts with the token" wait_until 15 up 9586
check "no warning about the admin API" eval '! grep -q "without a token" "$E2E_TMP/a.log"'
for p in /livez /healthz/ping '/readyz/tun?verbose' /livez/packet-loops; do
  check "health $p open without a token" is 9586 "$p" 200
done
check "/gates open (aggregate verdicts, no keys)" eval 'req 9586 /gates; [[ $CODE == 200 || $CODE == 503 ]]'
PEER=$(pub b | sed 's/+/%2B/g; s/=/%3D/g; s/\//%2F/g')
for p in /metrics /mesh /tunnel-test "/tunnel-test?peer=$PEER"; do
  check "$p: 401 with the Bearer challenge without a token and with a wrong one" refused 9586 "$p"
done
check "/metrics with the token: 200, the peer's series" \
  eval 'is 9586 /metrics 200 --token "$TOKEN" && grep -qF "$(pub b)" "$BODY"'
check "/mesh with the token: past the check (404: no [mesh])" \
  eval 'is 9586 /mesh 404 --token "$TOKEN" && grep -q "no mesh configured" "$BODY"'
check "/tunnel-test with the token: 200" is 9586 /tunnel-test 200 --token "$TOKEN"

say "(d) two /tunnel-test?peer= within 5 s"
# last_handshake PUBKEY: the peer's last handshake from /metrics (ns).
last_handshake() {
  req 9586 /metrics --token "$TOKEN"
  awk -v k="$1" 'index($0, "phantommesh_peer_last_handshake_timestamp_seconds{public_key=\"" k "\"}") == 1 {print $2}' "$BODY"
}
check "first: a forced handshake (200, \"handshake\": \"forced\")" \
  eval 'is 9586 "/tunnel-test?peer=$PEER" 200 --token "$TOKEN" && grep -q "\"handshake\": \"forced\"" "$BODY"'
cp "$BODY" "$E2E_TMP/peer-1.json"
HS1=$(last_handshake "$(pub b)")
WG1=$(wg_in "$NS_A" show "$IFA" latest-handshakes)
check "the forced handshake shows in /metrics" eval '[[ -n $HS1 && $HS1 != 0 ]]'
T0=$SECONDS
check "second within 5 s: 200, \"handshake\": \"reused\" with the session's age" \
  eval 'is 9586 "/tunnel-test?peer=$PEER" 200 --token "$TOKEN" && grep -q "\"handshake\": \"reused\"" "$BODY" && grep -q "\"handshake_age_seconds\": [0-4]\." "$BODY"'
((CHECK_OK)) || cat "$BODY" >&2
HS2=$(last_handshake "$(pub b)")
check "the peer's last handshake did not move ($HS1 -> $HS2)" eval '[[ $HS1 == "$HS2" ]] && ((SECONDS - T0 < 5))'
check "wg show agrees: the latest handshake is the forced one" \
  eval '[[ $(wg_in "$NS_A" show "$IFA" latest-handshakes) == "$WG1" ]]'

say "(e) wg-mode with PHANTOMMESH_ADMIN_TOKEN_FILE"
start_impl "$NS_A" "$IFW" "env PHANTOMMESH_ADMIN_LISTEN=$ADMIN_IP:9587 PHANTOMMESH_ADMIN_TOKEN_FILE=$E2E_TMP/admin.token $IMPL -f"
require "wg-mode admin API answers on $ADMIN_IP" wait_until 15 up 9587
check "wg-mode /metrics: 401 without a token and with a wrong one" refused 9587 /metrics
check "wg-mode /metrics with the token: 200" is 9587 /metrics 200 --token "$TOKEN"
check "wg-mode /tunnel-test: 401 without the token" refused 9587 /tunnel-test
stop_impl "$IFW" || true
wait_until 10 link_gone "$NS_A" "$IFW" || true
new_if IFV v
start_impl "$NS_A" "$IFV" "env PHANTOMMESH_ADMIN_LISTEN=$ADMIN_IP:9588 $IMPL -f"
check "wg-mode without a token: admin server off with an error naming the settings, tunnel up" \
  eval 'wait_until 5 grep -q "admin server disabled" "$E2E_TMP/$IFV.log" && grep -q PHANTOMMESH_ADMIN_TOKEN_FILE "$E2E_TMP/$IFV.log" && grep -q "PHANTOMMESH_ADMIN_ALLOW_UNAUTHENTICATED=1" "$E2E_TMP/$IFV.log" && ! up 9588 && pid_alive ${E2E_PID_OF[$IFV]} && wg_in "$NS_A" show "$IFV" >/dev/null'

say "the token never appears"
check "the token is in the token file only (control: the scan finds it there)" grep -qF "$TOKEN" "$E2E_TMP/admin.token"
check "no answer and no log line carries the token" \
  eval '! grep -rqF -- "$TOKEN" "$ANS" "$E2E_TMP"/*.log'
