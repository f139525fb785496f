#!/usr/bin/env bash
# Roaming: A (IMPL_A) must follow B (IMPL_B) to wherever B's authenticated
# packets come from, without reconfiguration on A:
#   1. B changes its listen port (`wg set IF listen-port N`);
#   2. B's outer IPv4 address changes (old address removed, new one added);
#   3. B switches to IPv6 (B points its peer A at A's IPv6 endpoint).
# After each, B sends first (A cannot know yet), then A must reach B and
# `wg show endpoints` on A must show B's new address and port.
source "$(dirname "$0")/lib.sh"
e2e_init
two_node_tunnel

require "tunnel up: A pings B" ping_ok "$NS_A" "$(inner4 2)"
check "A sees B at $(outer4 0 2):51822" endpoint_is "$NS_A" "$IFA" b "$(outer4 0 2):51822"

# roamed LABEL ENDPOINT: B speaks first, then A must follow.
roamed() {
  check "$1: B reaches A" ping_ok "$NS_B" "$(inner4 1)"
  check "$1: A's endpoint for B is now $2" endpoint_is "$NS_A" "$IFA" b "$2"
  check "$1: A reaches B (IPv4 inner)" ping_ok "$NS_A" "$(inner4 2)"
  check "$1: A reaches B (IPv6 inner)" ping_ok "$NS_A" "$(inner6 2)"
}

say "B changes its listen port to 51823"
wg_in "$NS_B" set "$IFB" listen-port 51823
roamed "new port" "$(outer4 0 2):51823"

# B must notice that the source address it used is gone (the kernel driver
# does at once). wireguard-go 0.0.20220316 keeps the stale source and gets
# ENETUNREACH until a later handshake, about 15 s: ROAM_ADDR_WAIT=30 lets it
# pass; the default holds the implementation under test to 10 s.
say "B's outer address changes to $(outer4 0 12)"
# Delete first: removing a primary address also removes its secondaries.
ip -n "$NS_B" addr del "$(outer4 0 2)/24" dev o0
ip -n "$NS_B" addr add "$(outer4 0 12)/24" dev o0
PING_WAIT=${ROAM_ADDR_WAIT:-10} roamed "new address" "$(outer4 0 12):51823"

say "B moves to IPv6"
wg_in "$NS_B" set "$IFB" peer "$(pub a)" endpoint "[$(outer6 0 1)]:51821"
roamed "IPv6" "[$(outer6 0 2)]:51823"
