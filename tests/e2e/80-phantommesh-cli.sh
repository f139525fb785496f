#!/usr/bin/env bash
# phantommesh's own command line (skipped, exit 77, when IMPL is not
# phantommesh):
#   * genkey / pubkey / genpsk behave like wg's: base64 32-byte keys, pubkey
#     agrees with `wg pubkey` (including on unclamped input), bad input is an
#     error, not a panic;
#   * `phantommesh run --config FILE.conf` (wg-quick format) brings up the
#     interface named after the file, with its addresses, and talks to a
#     wireguard-go peer; SIGTERM stops it and removes the socket.
source "$(dirname "$0")/lib.sh"
e2e_init

read -ra PM_ARGV <<<"$IMPL"
if ! version=$("${PM_ARGV[@]}" --version 2>&1) || [[ $version != *phantommesh* ]]; then
  say "SKIP: IMPL '$IMPL' is not phantommesh (--version said: ${version%%$'\n'*})"
  exit 77
fi
pm() { timeout 10 "${PM_ARGV[@]}" "$@"; }

is_key() { # a base64 line that decodes to 32 bytes
  [[ $1 =~ ^[A-Za-z0-9+/]{43}=$ ]] && [[ $(printf '%s' "$1" | base64 -d | wc -c) == 32 ]]
}
k1=$(pm genkey)
k2=$(pm genkey)
check "genkey prints a base64 32-byte key" is_key "$k1"
check "genkey gives a new key each time" test "$k1" != "$k2"
wg_accepts() { printf '%s\n' "$1" | wg pubkey >/dev/null; }
check "wg pubkey accepts genkey's key" wg_accepts "$k1"
p1=$(printf '%s\n' "$k1" | pm pubkey)
check "pubkey agrees with wg pubkey" test "$p1" = "$(printf '%s\n' "$k1" | wg pubkey)"
wk=$(wg genkey)
check "pubkey of a wg genkey key agrees with wg" \
  test "$(printf '%s\n' "$wk" | pm pubkey)" = "$(printf '%s\n' "$wk" | wg pubkey)"
# Raw random bytes: the top/bottom bits are not clamped; both must clamp alike.
raw=$(head -c 32 /dev/urandom | base64)
check "pubkey clamps unclamped input like wg" \
  test "$(printf '%s\n' "$raw" | pm pubkey)" = "$(printf '%s\n' "$raw" | wg pubkey)"
s1=$(pm genpsk)
s2=$(pm genpsk)
check "genpsk prints a base64 32-byte key" is_key "$s1"
check "genpsk gives a new key each time" test "$s1" != "$s2"
for bad in "not a key" "" "$(head -c 31 /dev/urandom | base64)"; do
  st=0
  out=$(printf '%s\n' "$bad" | pm pubkey 2>&1) || st=$?
  check "pubkey rejects '${bad:0:12}' with an error (status $st)" \
    test "$st" -ne 0 -a "$st" -lt 100
  [[ $out != *panicked* ]] || fail "pubkey panicked on '${bad:0:12}'"
done

say "run --config (wg-quick format)"
ns_create "$NS_A" "$NS_B"
ns_link "$NS_A" 1 "$NS_B" 2 0
keygen a b
new_if IFR r
new_if IFB b
CONF_DIR=$E2E_TMP/conf
mkdir -m 700 "$CONF_DIR"
cat >"$CONF_DIR/$IFR.conf" <<EOF
[Interface]
PrivateKey = $(cat "$(keyfile a)")
ListenPort = 51821
Address = $(inner4 1)/24, $(inner6 1)/64

[Peer]
PublicKey = $(pub b)
AllowedIPs = $(inner4 2)/32, $(inner6 2)/128
Endpoint = $(outer4 0 2):51822
EOF
chmod 600 "$CONF_DIR/$IFR.conf"
start_impl "$NS_B" "$IFB" "$WGGO"
node_up "$NS_B" "$IFB" b 51822 2
peer_add "$NS_B" "$IFB" a "$(inner4 1)/32,$(inner6 1)/128"

ip netns exec "$NS_A" env LOG_LEVEL="$E2E_LOG_LEVEL" "${PM_ARGV[@]}" run --config "$CONF_DIR/$IFR.conf" \
  >"$E2E_TMP/$IFR.log" 2>&1 &
RPID=$!
E2E_PIDS+=("$RPID")
if wait_until 15 sock_ready "$IFR"; then
  pass "run --config serves $(sock_of "$IFR")"
else
  tail -n 20 "$E2E_TMP/$IFR.log" | sed 's/^/    /'
  die "run --config: no UAPI socket for $IFR"
fi
has_addr() { [[ $(ip -n "$NS_A" addr show dev "$IFR") == *" $1 "* ]]; }
check "address $(inner4 1)/24 assigned" wait_until 5 has_addr "$(inner4 1)/24"
check "address $(inner6 1)/64 assigned" wait_until 5 has_addr "$(inner6 1)/64"
peer_listed() { [[ $(wg_in "$NS_A" show "$IFR" peers) == "$(pub b)" ]]; }
check "wg show lists the peer from the file" peer_listed
check "ping the wireguard-go peer (IPv4)" ping_ok "$NS_A" "$(inner4 2)"
check "ping the wireguard-go peer (IPv6)" ping_ok "$NS_A" "$(inner6 2)"
kill -TERM "$RPID"
check "run --config exits on SIGTERM" wait_until 10 pid_gone "$RPID"
check "socket removed" wait_until 5 sock_gone "$IFR"
check "interface removed" wait_until 5 link_gone "$NS_A" "$IFR"
