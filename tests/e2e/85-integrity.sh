#!/usr/bin/env bash
# Payload integrity through the offloading data path: TCP streams (TSO
# super-packets split before encryption, GRO-coalesced after decryption) and
# UDP datagrams of odd sizes must arrive byte-identical, over inner IPv4 and
# IPv6; sequence-numbered UDP at a moderate rate must arrive with no loss and
# no reordering (per-peer order is preserved).
source "$(dirname "$0")/lib.sh"
e2e_init
two_node_tunnel
require "tunnel up" ping_ok "$NS_A" "$(inner4 2)"
require "tunnel up (IPv6 inner)" ping_ok "$NS_A" "$(inner6 2)"

PY="python3 $E2E_DIR/integrity.py"
tcp_same() { # ADDR SEED: 16 MB each way? one way A->B is the split path, B->A the other
  local addr=$1 seed=$2 out got want
  out=$E2E_TMP/tcp-$seed
  ip netns exec "$NS_B" $PY tcp-server "$addr" 5201 >"$out" 2>&1 &
  local srv=$!
  wait_until 5 iperf_listening "$NS_B" 5201 || true
  want=$(ip netns exec "$NS_A" $PY tcp-client "$addr" 5201 $((16 << 20)) "$seed")
  wait "$srv" || true
  got=$(cat "$out")
  [[ -n $want && $got == "$want" ]] || { say "sha256 sent $want received $got"; return 1; }
}
check "TCP 16 MiB over inner IPv4 arrives byte-identical" tcp_same "$(inner4 2)" 1
check "TCP 16 MiB over inner IPv6 arrives byte-identical" tcp_same "$(inner6 2)" 2

udp_in_order() { # ADDR
  local addr=$1 out
  out=$E2E_TMP/udp-$RANDOM
  ip netns exec "$NS_B" $PY udp-server "$addr" 5300 4000 >"$out" 2>&1 &
  local srv=$!
  wait_until 5 udp_bound "$NS_B" 5300 || true
  ip netns exec "$NS_A" $PY udp-client "$addr" 5300 4000 2000
  wait "$srv" || true
  say "UDP to $addr: $(cat "$out")"
  [[ $(cat "$out") == "received 4000 reordered 0 corrupt 0" ]]
}
check "UDP odd sizes over inner IPv4: no loss, no reordering, intact" udp_in_order "$(inner4 2)"
check "UDP odd sizes over inner IPv6: no loss, no reordering, intact" udp_in_order "$(inner6 2)"

# A datagram whose UDP checksum computes to 0 must go out as 0xFFFF (RFC
# 768): the offloading TUN hands us the checksum to finish, and a 0 written
# into an IPv6 UDP header makes the receiving kernel drop the datagram
# (Udp6InCsumErrors). With random ports that hit about 1 run in 16 here.
udp_zero_csum() { # SRC DST
  local src=$1 addr=$2 out
  out=$E2E_TMP/udp0-$RANDOM
  ip netns exec "$NS_B" $PY udp-server "$addr" 5301 64 zero-csum >"$out" 2>&1 &
  local srv=$!
  wait_until 5 udp_bound "$NS_B" 5301 || true
  ip netns exec "$NS_A" $PY udp-zero-csum-client "$src" "$addr" 5301 64
  wait "$srv" || true
  say "UDP (checksum 0xFFFF) to $addr: $(cat "$out")"
  [[ $(cat "$out") == "received 64 reordered 0 corrupt 0" ]]
}
check "UDP whose checksum computes to 0, inner IPv4: all arrive" udp_zero_csum "$(inner4 1)" "$(inner4 2)"
check "UDP whose checksum computes to 0, inner IPv6: all arrive" udp_zero_csum "$(inner6 1)" "$(inner6 2)"
