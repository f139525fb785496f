#!/usr/bin/env bash
# Cryptokey routing on A (IMPL_A) with two peers whose allowed IPs overlap:
#   peer B (IMPL_B): 10.201.0.0/24, fd00:201::/64
#   peer C (IMPL_B): 10.201.0.3/32, fd00:201::3/128   (more specific: wins)
# Outbound: traffic to .3 goes to C, not B (byte counters).
# Inbound: a packet from B whose inner source is .3 is dropped by A (B has
# put .3 on its own tunnel interface and sends from it), while the same from
# C is delivered. A UDP listener on A records what is actually delivered.
# Then .3 is moved to B with `wg set` and the verdicts must swap.
source "$(dirname "$0")/lib.sh"
e2e_init
require_impl "$IMPL_A"
require_impl "$IMPL_B"

ns_create "$NS_A" "$NS_B" "$NS_C"
ns_link "$NS_A" 1 "$NS_B" 2 0
ns_link "$NS_A" 1 "$NS_C" 3 1
keygen a b c
new_if IFA a
new_if IFB b
new_if IFC c
start_impl "$NS_A" "$IFA" "$IMPL_A"
start_impl "$NS_B" "$IFB" "$IMPL_B"
start_impl "$NS_C" "$IFC" "$IMPL_B"
node_up "$NS_A" "$IFA" a 51821 1
node_up "$NS_B" "$IFB" b 51822 2
node_up "$NS_C" "$IFC" c 51823 3
NET="10.201.0.0/24,fd00:201::/64"
peer_add "$NS_A" "$IFA" b "$NET" "$(outer4 0 2):51822"
peer_add "$NS_A" "$IFA" c "$(inner4 3)/32,$(inner6 3)/128" "$(outer4 1 3):51823"
peer_add "$NS_B" "$IFB" a "$NET" "$(outer4 0 1):51821"
peer_add "$NS_C" "$IFC" a "$NET" "$(outer4 1 1):51821"

check "A reaches B (IPv4)" ping_ok "$NS_A" "$(inner4 2)"
check "A reaches B (IPv6)" ping_ok "$NS_A" "$(inner6 2)"
check "A reaches C (IPv4)" ping_ok "$NS_A" "$(inner4 3)"
check "A reaches C (IPv6)" ping_ok "$NS_A" "$(inner6 3)"

# Outbound: 10 pings to .3 must all be sent to C. B's counter may only move
# by keepalives / handshakes (< 300 bytes); C's by about 10 x 128 bytes
# (84-byte packets padded to 96, plus 32 bytes of header and tag).
tx_b0=$(transfer "$NS_A" "$IFA" b tx)
tx_c0=$(transfer "$NS_A" "$IFA" c tx)
ping_ok "$NS_A" "$(inner4 3)" 10 || true
tx_b1=$(transfer "$NS_A" "$IFA" b tx)
tx_c1=$(transfer "$NS_A" "$IFA" c tx)
say "tx to B +$((tx_b1 - tx_b0)) B, tx to C +$((tx_c1 - tx_c0)) B"
check "traffic to $(inner4 3) goes to C" test $((tx_c1 - tx_c0)) -ge 1000
check "traffic to $(inner4 3) does not go to B" test $((tx_b1 - tx_b0)) -lt 300

# A UDP listener on A that logs "source-address payload" for each datagram.
LISTEN_LOG=$E2E_TMP/delivered.log
: >"$LISTEN_LOG"
ip netns exec "$NS_A" python3 -u -c '
import select, socket, sys
out = open(sys.argv[1], "a", buffering=1)
socks = []
for fam, addr in ((socket.AF_INET, sys.argv[2]), (socket.AF_INET6, sys.argv[3])):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((addr, 7000))
    socks.append(s)
while True:
    for s in select.select(socks, [], [])[0]:
        data, src = s.recvfrom(2048)
        out.write(src[0] + " " + data.decode("ascii", "replace") + "\n")
' "$LISTEN_LOG" "$(inner4 1)" "$(inner6 1)" &
E2E_PIDS+=($!)
require "listener on A is up" wait_until 5 udp_bound "$NS_A" 7000

# send_from NS SRC DST TAG: 5 datagrams from SRC to DST:7000.
send_from() {
  ip netns exec "$1" python3 -c '
import socket, sys, time
src, dst, tag = sys.argv[1:4]
fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.bind((src, 0))
for i in range(5):
    s.sendto(tag.encode(), (dst, 7000))
    time.sleep(0.05)
' "$2" "$3" "$4"
}
delivered() { grep -c " $1\$" "$LISTEN_LOG" || true; }

# spoof_round ROUND OWNER INTRUDER: OWNER's .3 traffic must arrive, INTRUDER's not.
spoof_round() {
  local round=$1 owner=$2 intruder=$3 fam src dst ns_o ns_i rx0 rx1 tag
  ns_o=$E2E_TAG-$owner
  ns_i=$E2E_TAG-$intruder
  for fam in 4 6; do
    if [[ $fam == 4 ]]; then src=$(inner4 3) dst=$(inner4 1); else src=$(inner6 3) dst=$(inner6 1); fi
    rx0=$(transfer "$NS_A" "$IFA" "$intruder" rx)
    send_from "$ns_i" "$src" "$dst" "$round-$intruder-v$fam"
    send_from "$ns_o" "$src" "$dst" "$round-$owner-v$fam"
    sleep 0.5
    rx1=$(transfer "$NS_A" "$IFA" "$intruder" rx)
    check "$round IPv$fam: A received the intruder's packets (rx +$((rx1 - rx0)) B)" test $((rx1 - rx0)) -ge 5
    tag=$round-$intruder-v$fam
    check "$round IPv$fam: A drops inner source $src from ${intruder^^}" test "$(delivered "$tag")" -eq 0
    tag=$round-$owner-v$fam
    check "$round IPv$fam: A delivers inner source $src from ${owner^^}" test "$(delivered "$tag")" -ge 4
  done
}

# B claims .3 for itself.
ip -n "$NS_B" addr add "$(inner4 3)/32" dev "$IFB"
ip -n "$NS_B" addr add "$(inner6 3)/128" dev "$IFB" nodad
check "ping from B with source $(inner4 3) gets no answer" ping_none "$NS_B" "$(inner4 1)" -I "$(inner4 3)"
check "ping from C with source $(inner4 3) works" ping_ok "$NS_C" "$(inner4 1)"
spoof_round "C owns .3" c b

# Move .3 to B: an allowed IP has one owner, so C loses it.
say "moving $(inner4 3)/32 and $(inner6 3)/128 to B"
wg_in "$NS_A" set "$IFA" peer "$(pub b)" allowed-ips "$NET,$(inner4 3)/32,$(inner6 3)/128"
owner_is_b() { [[ $(wg_in "$NS_A" show "$IFA" allowed-ips | awk -v k="$(pub c)" '$1 == k {print $2}') == "(none)" ]]; }
check "C no longer has any allowed IP" owner_is_b
spoof_round "B owns .3" b c
