#!/usr/bin/env bash
# An interface moved to another network namespace keeps working (issue 16,
# fault 1). `ip link set wg0 netns other` is the usual way to give a
# namespace or container a WireGuard interface whose UDP socket stays
# outside; the daemon used to look its interface up by name in its own
# namespace, take "not found" for "deleted" and exit within seconds.
#
#   the daemon (IMPL_A) runs in A and creates IFA there; IFA is moved to C
#   and configured there; its peer (IMPL_B) runs in B, joined to A by link 0:
#   - pings from C through IFA to B (and back) keep flowing for > 10 s;
#   - the daemon sees the moved link's state: /readyz/tun is 200 while it
#     is up in C, 500 "is down" while it is down there, and it stays alive;
#   - deleting IFA in C stops the daemon cleanly (status 0, socket gone).
source "$(dirname "$0")/lib.sh"
e2e_init
require_impl "$IMPL_A"
require_impl "$IMPL_B"
command -v curl >/dev/null || die "missing tool: curl (run scripts/test.sh to install)"
read -ra A_ARGV <<<"$IMPL_A"
if ! version=$("${A_ARGV[0]}" --version 2>&1) || [[ $version != *phantommesh* ]]; then
  say "SKIP: IMPL_A '$IMPL_A' is not phantommesh (the admin API is checked)"
  exit 77
fi

ns_create "$NS_A" "$NS_B" "$NS_C"
ns_link "$NS_A" 1 "$NS_B" 2 0
keygen a b
new_if IFA a
new_if IFB b
ADMIN=127.0.0.1:9586
start_impl "$NS_A" "$IFA" "env PHANTOMMESH_ADMIN_LISTEN=$ADMIN PHANTOMMESH_SELF_TEST_INTERVAL=0 $IMPL_A"
start_impl "$NS_B" "$IFB" "$IMPL_B"
PID_A=${E2E_PID_OF[$IFA]}
LOG_A=$E2E_TMP/$IFA.log
wg_in "$NS_A" set "$IFA" private-key "$(keyfile a)" listen-port 51821 \
  peer "$(pub b)" allowed-ips "$(inner4 2)/32" endpoint "$(outer4 0 2):51822"
node_up "$NS_B" "$IFB" b 51822 2
peer_add "$NS_B" "$IFB" a "$(inner4 1)/32" "$(outer4 0 1):51821"

# tun_is CODE TEXT: A's /readyz/tun?verbose answers CODE with TEXT in it.
tun_is() {
  local out
  out=$(ip netns exec "$NS_A" curl -s -m 3 -w '\n%{http_code}' "http://$ADMIN/readyz/tun?verbose") ||
    return 1
  [[ $(tail -n 1 <<<"$out") == "$1" && $out == *"$2"* ]]
}
not_deleted_yet() { ! grep -q 'interface was deleted' "$LOG_A"; }

say "moving $IFA from the daemon's namespace to another one"
ip -n "$NS_A" link set "$IFA" netns "$NS_C"
MOVED_AT=$SECONDS
require "$IFA left the daemon's namespace" link_gone "$NS_A" "$IFA"
require "$IFA is in the other namespace" link_exists "$NS_C" "$IFA"
ip -n "$NS_C" addr add "$(inner4 1)/24" dev "$IFA"
ip -n "$NS_C" link set "$IFA" mtu 1420 up
check "the daemon sees the moved link up (/readyz/tun 200)" wait_until 5 tun_is 200 "[+]tun ok"
check "ping B through the moved interface" ping_ok "$NS_C" "$(inner4 2)" 3
check "B pings back through it" ping_ok "$NS_B" "$(inner4 1)" 3

# 50 echoes, one every 0.25 s: more than 10 s of traffic, well past the
# seconds in which the daemon used to give up on the moved interface.
T0=$SECONDS
out=$(ip netns exec "$NS_C" ping -n -q -c 50 -i 0.25 -W 2 "$(inner4 2)" 2>&1 || true)
got=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' <<<"$out")
say "long ping: ${got:-?}/50 replies in $((SECONDS - T0)) s"
check "traffic keeps flowing for > 10 s after the move (>= 48/50 replies, got ${got:-none})" \
  test "${got:-0}" -ge 48
check "... over at least 10 s" test $((SECONDS - T0)) -ge 10
check "the daemon is alive $((SECONDS - MOVED_AT)) s after the move" pid_alive "$PID_A"
check "and never took the move for a deletion" not_deleted_yet
check "wg show still answers, with a recent handshake" handshake_recent "$NS_A" "$IFA"

say "down and up again in the other namespace"
ip -n "$NS_C" link set "$IFA" down
check "the daemon sees it down there (/readyz/tun 500 'is down')" \
  wait_until 5 tun_is 500 "interface $IFA is down"
check "a down link is not a deleted one: the daemon stays" pid_alive "$PID_A"
ip -n "$NS_C" link set "$IFA" up
ip -n "$NS_C" addr replace "$(inner4 1)/24" dev "$IFA"
check "and up again (/readyz/tun 200)" wait_until 5 tun_is 200 "[+]tun ok"
check "traffic flows again" ping_ok "$NS_C" "$(inner4 2)" 3
check "still no deletion logged" not_deleted_yet

say "deleted in the other namespace"
ip -n "$NS_C" link del dev "$IFA"
check "the daemon exits once the moved interface is deleted" wait_until 10 pid_gone "$PID_A"
st=0
wait "$PID_A" 2>/dev/null || st=$?
check "exit status 0 (got $st)" test "$st" = 0
check "its UAPI socket is removed" wait_until 5 sock_gone "$IFA"
check "it logged the deletion" grep -q 'interface was deleted' "$LOG_A"
