#!/usr/bin/env bash
# The admin clients over HTTPS, through a proxy, and the plaintext-token
# guard (skipped, exit 77, when IMPL is not phantommesh). Two namespaces
# joined by link 0:
#   A (10.200.0.1)  phantommesh -f with its admin API on 127.0.0.1:9586 and a
#                   gates file whose one gate passes without data; socat
#                   terminates TLS on :9443 (a server certificate for
#                   node.test, 10.200.0.1 and 127.0.0.1 from a CA made here
#                   with openssl) and forwards plain TCP on 10.200.0.1:9587,
#                   both to the admin API;
#   B (10.200.0.2)  the clients, and a CONNECT proxy on 127.0.0.1:3128
#                   that alone resolves node.test (to 10.200.0.1).
# Checks: gate, status and mesh status over https:// with --ca-file; without
# the CA: exit 3 (unreachable: TLS); a bad --ca-file: exit 2; a token over
# plain http:// to 10.200.0.1 refused (exit 2) unless --insecure, allowed
# over https:// and to loopback, never printed; HTTPS_PROXY through the
# CONNECT proxy, NO_PROXY (CIDR, suffix) bypassing it, a dead proxy: exit 3.
# shellcheck disable=SC2016,SC2034 # checks pass single-quoted code to eval
source "$(dirname "$0")/lib.sh"
e2e_init

require_phantommesh
for tool in socat openssl; do
  command -v "$tool" >/dev/null || die "missing tool: $tool (run scripts/test.sh to install)"
done
A_IP=$(outer4 0 1)
ADMIN=9586
TLS=9443
PLAIN=9587
PROXY=3128
TOKEN_FILE=$E2E_TMP/admin.token
(umask 077 && head -c 24 /dev/urandom | od -An -tx1 -v | tr -d ' \n' >"$TOKEN_FILE")
TOKEN=$(cat "$TOKEN_FILE")

# ---------------------------------------------------------------- helpers

# pm_in NS OUTNAME [env VAR=VALUE...] -- ARGS...: the CLI in NS, output in
# $E2E_TMP/OUTNAME.out; sets RC and OUT.
pm_in() {
  local ns=$1 out=$E2E_TMP/$2.out
  shift 2
  local envs=()
  while [[ $1 != -- ]]; do
    envs+=("$1")
    shift
  done
  shift
  RC=0
  timeout 30 ip netns exec "$ns" env -u HTTPS_PROXY -u https_proxy -u HTTP_PROXY -u http_proxy \
    -u ALL_PROXY -u all_proxy -u NO_PROXY -u no_proxy "${envs[@]}" \
    "${PM_ARGV[@]}" "$@" >"$out" 2>&1 || RC=$?
  OUT=$out
}
rc_is() {
  [[ $RC == "$1" ]] || {
    echo "  exit status $RC, want $1; output:" >&2
    head -n 20 "$OUT" | sed 's/^/    /' >&2
    return 1
  }
}
out_has() {
  grep -qF -- "$1" "$OUT" || {
    echo "  output lacks '$1':" >&2
    head -n 20 "$OUT" | sed 's/^/    /' >&2
    return 1
  }
}
listening() { [[ -n $(ip netns exec "$1" ss -Hltn "sport = :$2" 2>/dev/null) ]]; }
admin_up() {
  [[ $(ip netns exec "$NS_A" python3 "$E2E_DIR/admin_http.py" \
    "http://127.0.0.1:$ADMIN/livez" --timeout 2 2>/dev/null) == 200 ]]
}
proxied() { grep -c . "$E2E_TMP/proxy.log" 2>/dev/null || true; }
# bg NS LOG CMD...: a background process in NS, recorded for cleanup.
bg() {
  local ns=$1 log=$2
  shift 2
  ip netns exec "$ns" "$@" >"$E2E_TMP/$log.log" 2>&1 &
  E2E_PIDS+=($!)
  e2e_register "pid $!"
}

# ------------------------------------------------------------ certificates

say "test CA and server certificate (openssl)"
P=$E2E_TMP/pki
mkdir -p "$P"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=phantommesh e2e CA" \
  -keyout "$P/ca.key" -out "$P/ca.pem" >"$P/openssl.log" 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/CN=node.test" \
  -keyout "$P/server.key" -out "$P/server.csr" >>"$P/openssl.log" 2>&1
printf 'subjectAltName=DNS:node.test,IP:%s,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
  "$A_IP" >"$P/ext.cnf"
openssl x509 -req -in "$P/server.csr" -CA "$P/ca.pem" -CAkey "$P/ca.key" -CAcreateserial \
  -days 2 -extfile "$P/ext.cnf" -out "$P/server.pem" >>"$P/openssl.log" 2>&1
require "server certificate made" openssl verify -CAfile "$P/ca.pem" "$P/server.pem"
# Another CA's certificate: a bundle that does not vouch for the server.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=other CA" \
  -keyout "$P/other.key" -out "$P/other.pem" >>"$P/openssl.log" 2>&1
printf 'not a certificate\n' >"$P/junk.pem"

# ------------------------------------------------------------------ set-up

ns_create "$NS_A" "$NS_B"
ns_link "$NS_A" 1 "$NS_B" 2 0
cat >"$E2E_TMP/gates.toml" <<'EOF'
[window]
length = "5m"
slot = "1s"

[[gate]]
name = "reach"
title = "Admin API reached"
success_rate = ">= 99%"
optional = ["success_rate"]
EOF
new_if IFA a
start_impl "$NS_A" "$IFA" "env PHANTOMMESH_GATES=$E2E_TMP/gates.toml $IMPL -f"
require "A's admin API answers on 127.0.0.1:$ADMIN" wait_until 15 admin_up
bg "$NS_A" socat-tls socat "OPENSSL-LISTEN:$TLS,reuseaddr,fork,cert=$P/server.pem,key=$P/server.key,verify=0" \
  "TCP:127.0.0.1:$ADMIN"
bg "$NS_A" socat-plain socat "TCP-LISTEN:$PLAIN,bind=$A_IP,reuseaddr,fork" "TCP:127.0.0.1:$ADMIN"
bg "$NS_B" proxy python3 "$E2E_DIR/connect_proxy.py" "127.0.0.1:$PROXY" "$E2E_TMP/proxy.log" \
  "node.test=$A_IP"
require "socat TLS listener up" wait_until 10 listening "$NS_A" "$TLS"
require "socat plain listener up" wait_until 10 listening "$NS_A" "$PLAIN"
require "CONNECT proxy up" wait_until 10 listening "$NS_B" "$PROXY"

HTTPS_URL=https://$A_IP:$TLS
CA=(--ca-file "$P/ca.pem")

# ------------------------------------------------------------------ HTTPS

say "https:// with and without the CA"
pm_in "$NS_B" gate-https -- gate --url "$HTTPS_URL" "${CA[@]}"
check "gate --url https://... --ca-file: exit 0, the report read" \
  eval 'rc_is 0 && out_has "Admin API reached"'
pm_in "$NS_B" gate-https-json -- gate --url "$HTTPS_URL/gates" "${CA[@]}" --json
check "gate --json over https: a passing report" \
  eval 'rc_is 0 && python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d[\"pass\"] else 1)" "$OUT"'
pm_in "$NS_B" gate-noca -- gate --url "$HTTPS_URL"
check "gate over https without the CA (system roots only): exit 3, a TLS error" \
  eval 'rc_is 3 && out_has "TLS handshake failed" && out_has "UnknownIssuer"'
pm_in "$NS_B" gate-otherca -- gate --url "$HTTPS_URL" --ca-file "$P/other.pem"
check "gate with another CA's bundle: exit 3 (the system roots are not added)" \
  eval 'rc_is 3 && out_has "TLS handshake failed"'
pm_in "$NS_B" gate-badca -- gate --url "$HTTPS_URL" --ca-file "$P/junk.pem"
check "gate --ca-file with no certificate in it: exit 2" \
  eval 'rc_is 2 && out_has "--ca-file" && out_has "no PEM certificate"'
pm_in "$NS_B" gate-noca-file -- gate --url "$HTTPS_URL" --ca-file "$P/missing.pem"
check "gate --ca-file that does not exist: exit 2" eval 'rc_is 2 && out_has "missing.pem"'
pm_in "$NS_B" status-https -- status --url "$HTTPS_URL" "${CA[@]}" --json
check "status --url https://... --ca-file: reachable, the interface named" \
  eval '[[ $RC == 0 || $RC == 1 ]] && out_has "\"reachable\": true" && out_has "\"interface\": \"$IFA\""'
pm_in "$NS_B" mesh-https -- mesh status --url "$HTTPS_URL" "${CA[@]}"
check "mesh status over https: the node's own answer (no mesh configured: exit 2)" \
  eval 'rc_is 2 && out_has "no mesh configured"'

# ------------------------------------------------------------ the token

say "the bearer token and plain HTTP"
TOK=(--token-file "$TOKEN_FILE")
pm_in "$NS_B" tok-plain -- gate --url "http://$A_IP:$PLAIN" "${TOK[@]}"
check "token over plain http:// to $A_IP: refused, exit 2" \
  eval 'rc_is 2 && out_has "refusing to send the bearer token over plain HTTP" && out_has "--insecure"'
pm_in "$NS_B" tok-plain-status -- status --url "http://$A_IP:$PLAIN" "${TOK[@]}"
check "status: the same refusal, exit 2" eval 'rc_is 2 && out_has "refusing to send"'
pm_in "$NS_B" tok-insecure -- gate --url "http://$A_IP:$PLAIN" "${TOK[@]}" --insecure
check "token over plain http:// with --insecure: sent, exit 0" rc_is 0
pm_in "$NS_B" tok-https -- gate --url "$HTTPS_URL" "${TOK[@]}" "${CA[@]}"
check "token over https://: sent without --insecure, exit 0" rc_is 0
pm_in "$NS_A" tok-loopback -- gate --url "http://127.0.0.1:$ADMIN" "${TOK[@]}"
check "token over plain http:// to loopback: sent, exit 0" rc_is 0
pm_in "$NS_B" no-tok-plain -- gate --url "http://$A_IP:$PLAIN"
check "no token over plain http:// to $A_IP: fine, exit 0" rc_is 0
pm_in "$NS_B" insecure-tls -- gate --url "$HTTPS_URL" --insecure
check "--insecure does not skip certificate verification: exit 3" \
  eval 'rc_is 3 && out_has "TLS handshake failed"'
check "the token is never printed" eval '! grep -rqF "$TOKEN" "$E2E_TMP"/*.out'

# ------------------------------------------------------------------ proxy

say "HTTPS_PROXY and NO_PROXY"
PX=HTTPS_PROXY=http://127.0.0.1:$PROXY
n0=$(proxied)
pm_in "$NS_B" proxy-name "$PX" -- gate --url "https://node.test:$TLS" "${CA[@]}" "${TOK[@]}"
check "gate https://node.test through the CONNECT proxy (only it resolves the name): exit 0" \
  eval 'rc_is 0 && grep -qxF "CONNECT node.test:$TLS HTTP/1.1" "$E2E_TMP/proxy.log"'
n1=$(proxied)
pm_in "$NS_B" proxy-ip "$PX" -- gate --url "$HTTPS_URL" "${CA[@]}"
check "an IP URL goes through the proxy too: exit 0, one more CONNECT" \
  eval 'rc_is 0 && (( $(proxied) == n1 + 1 ))'
n2=$(proxied)
pm_in "$NS_B" noproxy-cidr "$PX" NO_PROXY=10.200.0.0/24 -- gate --url "$HTTPS_URL" "${CA[@]}"
check "NO_PROXY=10.200.0.0/24 bypasses the proxy: exit 0, no CONNECT" \
  eval 'rc_is 0 && (( $(proxied) == n2 ))'
pm_in "$NS_B" noproxy-suffix "https_proxy=http://127.0.0.1:$PROXY" no_proxy=example.org,.test -- \
  gate --url "https://node.test:$TLS" "${CA[@]}"
check "no_proxy=.test bypasses it for node.test (which then does not resolve): exit 3, no CONNECT" \
  eval 'rc_is 3 && (( $(proxied) == n2 ))'
pm_in "$NS_B" proxy-loopback "HTTP_PROXY=http://127.0.0.1:$PROXY" -- gate --url "http://127.0.0.1:9"
check "loopback URLs are never proxied: refused directly, exit 3, no CONNECT" \
  eval 'rc_is 3 && out_has "cannot connect" && (( $(proxied) == n2 ))'
pm_in "$NS_B" proxy-dead HTTPS_PROXY=http://127.0.0.1:1 -- gate --url "$HTTPS_URL" "${CA[@]}"
check "a proxy that is not there: exit 3" rc_is 3
pm_in "$NS_B" proxy-bad HTTPS_PROXY=socks5://127.0.0.1:1 -- gate --url "$HTTPS_URL" "${CA[@]}"
check "an unsupported proxy URL: exit 2, the variable named" eval 'rc_is 2 && out_has HTTPS_PROXY'
say "proxy saw $(( $(proxied) - n0 )) CONNECTs"
