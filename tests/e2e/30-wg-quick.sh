#!/usr/bin/env bash
# wg-quick: `wg-quick up FILE.conf` with WG_QUICK_USERSPACE_IMPLEMENTATION
# pointing at the implementation under test (IMPL, started without -f, so it
# must background itself and return once ready), inside a namespace. Checks
# the interface, its addresses and MTU, the peer, a ping to a wireguard-go
# peer, `wg-quick save` (needs private_key in UAPI get), then `wg-quick down`:
# the interface disappears and the daemon exits and removes its socket.
#
# On hosts with the WireGuard kernel module wg-quick would use the kernel, so
# wg-quick then runs in a private mount namespace where /sys/module is hidden
# and `ip link add ... type wireguard` is refused (E2E_WGQUICK_SHIM=1 forces
# this path on any host).
source "$(dirname "$0")/lib.sh"
e2e_init

PEER=${WGQ_PEER:-$WGGO}
require_impl "$IMPL"
require_impl "$PEER"
command -v wg-quick >/dev/null || die "wg-quick not installed"

ns_create "$NS_A" "$NS_B"
ns_link "$NS_A" 1 "$NS_B" 2 0
keygen a b

# wg-quick runs "$WG_QUICK_USERSPACE_IMPLEMENTATION IFNAME": one word, so a
# wrapper named phantommesh carries IMPL's arguments.
BIN=$E2E_TMP/bin
mkdir -p "$BIN"
printf '#!/bin/sh\nexec %s "$@"\n' "$IMPL" >"$BIN/phantommesh"
REAL_IP=$(command -v ip)
cat >"$BIN/ip" <<EOF
#!/bin/sh
# Refuses kernel WireGuard links so that wg-quick uses the userspace daemon.
case " \$* " in *" type wireguard "*) echo "e2e shim: kernel WireGuard disabled" >&2; exit 2;; esac
exec "$REAL_IP" "\$@"
EOF
chmod +x "$BIN/phantommesh" "$BIN/ip"

SHIM=${E2E_WGQUICK_SHIM:-0}
[[ -e /sys/module/wireguard ]] && SHIM=1
say "wg-quick kernel-module shim: $SHIM"

# wgq NS ARGS...: wg-quick inside NS with the wrapper as the implementation.
wgq() {
  local ns=$1
  shift
  local envs=(PATH="$BIN:$PATH" WG_QUICK_USERSPACE_IMPLEMENTATION=phantommesh
    LOG_LEVEL="$E2E_LOG_LEVEL")
  if ((SHIM)); then
    timeout 30 ip netns exec "$ns" unshare -m bash -c \
      'mount --make-rprivate / && mount -t tmpfs e2e-hide /sys/module && exec env "$@"' \
      wgq "${envs[@]}" wg-quick "$@"
  else
    timeout 30 ip netns exec "$ns" env "${envs[@]}" wg-quick "$@"
  fi
}

new_if IFQ q
new_if IFB b
CONF_DIR=$E2E_TMP/wgq
mkdir -p "$CONF_DIR"
chmod 700 "$CONF_DIR"
CONF=$CONF_DIR/$IFQ.conf
cat >"$CONF" <<EOF
[Interface]
PrivateKey = $(cat "$(keyfile a)")
Address = $(inner4 1)/24, $(inner6 1)/64
ListenPort = 51821
MTU = 1380

[Peer]
PublicKey = $(pub b)
AllowedIPs = $(inner4 2)/32, $(inner6 2)/128
Endpoint = $(outer4 0 2):51822
EOF
chmod 600 "$CONF"

start_impl "$NS_B" "$IFB" "$PEER"
node_up "$NS_B" "$IFB" b 51822 2
peer_add "$NS_B" "$IFB" a "$(inner4 1)/32,$(inner6 1)/128"

# The daemon wg-quick starts is found as the process of our namespace whose
# command line ends with the interface name.
daemon_pid() {
  local p
  for p in $(ip netns pids "$NS_A"); do
    [[ $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) == *" $IFQ " ]] && { echo "$p"; return 0; }
  done
  return 1
}

if wgq "$NS_A" up "$CONF" >"$E2E_TMP/wgq-up.log" 2>&1; then
  pass "wg-quick up exits 0"
else
  sed 's/^/    /' "$E2E_TMP/wgq-up.log"
  die "wg-quick up failed"
fi
grep -E "^\[[#!]\]" "$E2E_TMP/wgq-up.log" | sed 's/^/    /' || true
grep -q "Falling back to slow userspace implementation" "$E2E_TMP/wgq-up.log" ||
  fail "wg-quick did not use the userspace implementation"

DPID=$(daemon_pid) || DPID=
if [[ -n $DPID ]]; then
  E2E_PIDS+=("$DPID")
  pass "daemon running in the background (pid $DPID)"
else
  fail "no daemon process for $IFQ in the namespace"
fi
check "UAPI socket exists" sock_ready "$IFQ"
# (Output is captured before matching: with pipefail, "cmd | grep -q" fails
# when grep exits early and cmd gets SIGPIPE.)
has_addr() { [[ $(ip -n "$NS_A" addr show dev "$IFQ") == *" $1 "* ]]; }
check "interface has $(inner4 1)/24" has_addr "$(inner4 1)/24"
check "interface has $(inner6 1)/64" has_addr "$(inner6 1)/64"
link_is() { [[ $(ip -n "$NS_A" link show dev "$IFQ") == *"$1"* ]]; }
check "interface is up with MTU 1380" link_is ",UP,LOWER_UP> mtu 1380 "
peer_listed() { [[ $(wg_in "$NS_A" show "$IFQ" peers) == "$(pub b)" ]]; }
check "wg show lists the peer" peer_listed
port_is() { [[ $(wg_in "$NS_A" show "$IFQ" listen-port) == 51821 ]]; }
check "listen port from the file" port_is
check "ping peer over IPv4" ping_ok "$NS_A" "$(inner4 2)"
check "ping peer over IPv6" ping_ok "$NS_A" "$(inner6 2)"
check "peer pings back over IPv4" ping_ok "$NS_B" "$(inner4 1)"

# wg-quick save rewrites the file from `wg showconf`, which needs the
# private key back from the daemon.
saved_ok() {
  grep -q "^PrivateKey = $(cat "$(keyfile a)")\$" "$CONF" &&
    grep -q "^PublicKey = $(pub b)\$" "$CONF" &&
    grep -q "^Address = " "$CONF"
}
if wgq "$NS_A" save "$CONF" >"$E2E_TMP/wgq-save.log" 2>&1; then
  check "wg-quick save keeps keys, peer and addresses" saved_ok
else
  sed 's/^/    /' "$E2E_TMP/wgq-save.log"
  fail "wg-quick save failed"
fi

if wgq "$NS_A" down "$CONF" >"$E2E_TMP/wgq-down.log" 2>&1; then
  pass "wg-quick down exits 0"
else
  sed 's/^/    /' "$E2E_TMP/wgq-down.log"
  fail "wg-quick down failed"
fi
check "interface removed" wait_until 5 link_gone "$NS_A" "$IFQ"
if [[ -n $DPID ]]; then
  check "daemon exited after down" wait_until 10 pid_gone "$DPID"
fi
check "UAPI socket removed" wait_until 10 sock_gone "$IFQ"
