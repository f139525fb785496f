#!/usr/bin/env bash
# Hostile input while a tunnel carries traffic: A (IMPL_A) <-> B (IMPL_B)
# with a ping running from A to B throughout.
#   * UDP: from B's namespace, udp_garbage.py throws empty, truncated,
#     wrong-length, random and 65507-byte datagrams of every message type at
#     A's port (over IPv4 and IPv6); the same from A's namespace at B.
#   * UAPI: uapi_abuse.py sends malformed requests to A's socket; each must
#     be refused (errno=-22 where the value is pinned down) and a following
#     `get` must still answer with A's unchanged configuration.
# Afterwards both daemons are alive, the tunnel pings, and the background
# ping lost little.
source "$(dirname "$0")/lib.sh"
e2e_init
two_node_tunnel
require "tunnel up" ping_ok "$NS_A" "$(inner4 2)"

BG_PING=$E2E_TMP/background-ping.log
ip netns exec "$NS_A" ping -n -i 0.1 -w 300 "$(inner4 2)" >"$BG_PING" 2>&1 &
BG_PID=$!
E2E_PIDS+=("$BG_PID")

garbage() { # NS HOST PORT SEED
  ip netns exec "$1" python3 "$E2E_DIR/udp_garbage.py" "$2" "$3" --seed "$4" >>"$E2E_TMP/garbage.log" 2>&1
}
check "garbage B -> A over IPv4 sent" garbage "$NS_B" "$(outer4 0 1)" 51821 1
check "garbage B -> A over IPv6 sent" garbage "$NS_B" "$(outer6 0 1)" 51821 2
check "garbage A -> B over IPv4 sent" garbage "$NS_A" "$(outer4 0 2)" 51822 3
sed 's/^/    /' "$E2E_TMP/garbage.log"

check "A alive after UDP garbage" pid_alive "${E2E_PID_OF[$IFA]}"
check "B alive after UDP garbage" pid_alive "${E2E_PID_OF[$IFB]}"
check "tunnel still pings after UDP garbage" ping_ok "$NS_A" "$(inner4 2)"

hexkey() { base64 -d <"$1" | od -An -tx1 -v | tr -d ' \n'; }
if python3 "$E2E_DIR/uapi_abuse.py" "$(sock_of "$IFA")" "$(hexkey "$(keyfile a)")" \
  "$(hexkey "$E2E_TMP/b.pub")" >"$E2E_TMP/uapi-abuse.log" 2>&1; then
  uapi_ok=1
else
  uapi_ok=0
fi
while IFS= read -r line; do
  case $line in
    PASS:*) pass "${line#PASS: }" ;;
    FAIL:*) fail "${line#FAIL: }" ;;
    *) echo "    $line" ;;
  esac
done <"$E2E_TMP/uapi-abuse.log"
check "UAPI abuse driver finished cleanly" test "$uapi_ok" = 1

check "A alive after UAPI abuse" pid_alive "${E2E_PID_OF[$IFA]}"
check "A's socket still there" sock_ready "$IFA"
check "tunnel still pings after everything" ping_ok "$NS_A" "$(inner4 2)"
check "tunnel still pings over IPv6" ping_ok "$NS_A" "$(inner6 2)"

kill -INT "$BG_PID" 2>/dev/null || true
wait "$BG_PID" 2>/dev/null || true
read -r sent got < <(awk '/packets transmitted/ {print $1, $4}' "$BG_PING")
say "background ping: ${got:-?} of ${sent:-?} answered"
bg_ok() { [[ -n ${sent:-} && ${sent} -gt 10 ]] && ((got * 10 >= sent * 9)); }
check "background ping lost at most 10% during the abuse" bg_ok
