#!/usr/bin/env bash
# Daemon lifecycle, as wg-quick and operators rely on it:
#   foreground (IMPL_A): exits, removing its socket and TUN, on `ip link del`,
#     on removal of its socket, on SIGTERM and on SIGINT (status 0 for the
#     signals); the socket is not accessible to group/others;
#   background (IMPL, no -f): the command returns 0 only once the socket is
#     listening and the TUN exists; a second instance for the same name fails
#     with a non-zero status and leaves the first one working;
#   a stale socket file (nobody listening) is replaced.
source "$(dirname "$0")/lib.sh"
e2e_init
require_impl "$IMPL_A"
require_impl "$IMPL"

ns_create "$NS_A"
keygen a

# exited_cleanly PID IFNAME: process gone, socket and TUN removed.
exited_cleanly() {
  wait_until 10 pid_gone "$1" &&
    wait_until 5 sock_gone "$2" &&
    wait_until 5 link_gone "$NS_A" "$2"
}
# status_of PID: sets ST to the exit status of a finished background child.
# Not in a $(...) subshell: pid_gone already counts a zombie as gone, and a
# subshell cannot wait for a child the parent shell has not reaped yet (it
# reported -1 then).
status_of() {
  ST=0
  wait "$1" 2>/dev/null || ST=$?
}

say "foreground: ip link del"
new_if I l
start_impl "$NS_A" "$I" "$IMPL_A"
wg_in "$NS_A" set "$I" private-key "$(keyfile a)" listen-port 51821
mode=$(stat -c %a "$(sock_of "$I")")
check "socket mode $mode has no group/other permissions" test $((8#$mode & 8#077)) -eq 0
dmode=$(stat -c %a "$WG_RUN_DIR")
check "$WG_RUN_DIR mode is $dmode (755 expected)" test "$dmode" = 755
ip -n "$NS_A" link del dev "$I"
check "exits and removes its socket after 'ip link del'" exited_cleanly "${E2E_PID_OF[$I]}" "$I"

say "foreground: socket removed"
new_if I s
start_impl "$NS_A" "$I" "$IMPL_A"
rm -f "$(sock_of "$I")"
check "exits and removes its TUN after its socket is deleted" exited_cleanly "${E2E_PID_OF[$I]}" "$I"

for sig in TERM INT; do
  say "foreground: SIG$sig"
  new_if I "${sig:0:1}"
  start_impl "$NS_A" "$I" "$IMPL_A"
  ip -n "$NS_A" link set "$I" up
  kill -"$sig" "${E2E_PID_OF[$I]}"
  check "exits and removes socket and TUN on SIG$sig" exited_cleanly "${E2E_PID_OF[$I]}" "$I"
  status_of "${E2E_PID_OF[$I]}"
  st=$ST
  check "exit status after SIG$sig is 0 (got $st)" test "$st" = 0
done

say "background: '$IMPL IFNAME' without -f"
new_if I d
read -ra argv <<<"$IMPL"
# WG_PROCESS_FOREGROUND must not leak in from the caller's environment.
st=0
timeout 20 ip netns exec "$NS_A" env -u WG_PROCESS_FOREGROUND LOG_LEVEL="$E2E_LOG_LEVEL" \
  "${argv[@]}" "$I" >"$E2E_TMP/$I.log" 2>&1 || st=$?
# Checked at once, with no waiting: the parent must return only when ready.
sock_now=0 link_now=0
sock_ready "$I" && sock_now=1
link_exists "$NS_A" "$I" && link_now=1
check "parent exits with status 0 (got $st)" test "$st" = 0
check "socket exists when the parent returns" test "$sock_now" = 1
check "TUN exists when the parent returns" test "$link_now" = 1
dpid=
for p in $(ip netns pids "$NS_A"); do
  [[ $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) == *" $I " ]] && dpid=$p
done
if [[ -n $dpid ]]; then
  E2E_PIDS+=("$dpid")
  pass "daemon keeps running in the background (pid $dpid)"
else
  fail "no background daemon found for $I"
fi
answers() { wg_in "$NS_A" show "$1" >/dev/null; }
check "background daemon answers wg show" answers "$I"
wg_in "$NS_A" set "$I" private-key "$(keyfile a)" listen-port 51822 || true

say "background: a second instance for the same interface"
st=0
timeout 20 ip netns exec "$NS_A" env -u WG_PROCESS_FOREGROUND "${argv[@]}" "$I" \
  >"$E2E_TMP/$I.second.log" 2>&1 || st=$?
check "second instance fails (status $st)" test "$st" -ne 0 -a "$st" -ne 124
check "first instance still answers" answers "$I"
pub_is_a() { [[ $(wg_in "$NS_A" show "$I" public-key) == "$(pub a)" ]]; }
check "first instance kept its configuration" pub_is_a
if [[ -n $dpid ]]; then
  kill -TERM "$dpid"
  check "background daemon exits on SIGTERM" exited_cleanly "$dpid" "$I"
fi

say "stale socket file"
new_if I x
python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
' "$(sock_of "$I")"
check "a stale socket file is there (nobody listening)" test -S "$(sock_of "$I")"
start_impl "$NS_A" "$I" "$IMPL_A"
check "daemon replaced the stale socket and answers" answers "$I"
stop_impl "$I" || true
