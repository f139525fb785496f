#!/usr/bin/env bash
# A multihomed node answers from the address its peer talks to (issue 16,
# fault 2): the "sticky source" of the kernel's and wireguard-go's
# endpoints (IP_PKTINFO / IPV6_PKTINFO).
#
#   A (IMPL_A) has two addresses on its link to B: 10.200.0.1 (primary) and
#   10.200.0.11; B (IMPL_B) is configured with A's endpoint at .11.
#   - B's handshake and pings reach A at .11, and A answers from .11: B's
#     `wg show` keeps A's endpoint at 10.200.0.11 (not .1, the address the
#     route would pick), also after traffic that A starts;
#   - .11 is removed from A (the route to B keeps .1 as its source): A's
#     sends from the vanished source are refused, A drops it and sends from
#     .1, B roams to .1 and the tunnel carries on (pings both ways);
#   - the same over IPv6: B moves to A's second IPv6 address and A answers
#     from it (the route would pick fd00:200::1).
source "$(dirname "$0")/lib.sh"
e2e_init
require_impl "$IMPL_A"
require_impl "$IMPL_B"

ns_create "$NS_A" "$NS_B"
ns_link "$NS_A" 1 "$NS_B" 2 0
FIRST=$(outer4 0 1)
SECOND=$(outer4 0 11)
ip -n "$NS_A" addr add "$SECOND/24" dev o0
keygen a b
new_if IFA a
new_if IFB b
start_impl "$NS_A" "$IFA" "$IMPL_A"
start_impl "$NS_B" "$IFB" "$IMPL_B"
node_up "$NS_A" "$IFA" a 51821 1
node_up "$NS_B" "$IFB" b 51822 2
# A knows no endpoint for B: it learns it from B's packets.
peer_add "$NS_A" "$IFA" b "$(inner4 2)/32"
peer_add "$NS_B" "$IFB" a "$(inner4 1)/32" "$SECOND:51821"

a_endpoint_is() { endpoint_is "$NS_B" "$IFB" a "$1:51821"; }

say "B talks to A's second address $SECOND"
require "B pings A through the tunnel" ping_ok "$NS_B" "$(inner4 1)" 3
check "A answered from $SECOND: B's endpoint for A is still $SECOND:51821" a_endpoint_is "$SECOND"
check "A pings B (traffic A starts)" ping_ok "$NS_A" "$(inner4 2)" 3
check "... still from $SECOND" a_endpoint_is "$SECOND"
rx0=$(transfer "$NS_B" "$IFB" a rx)

say "A loses $SECOND; its route to B keeps $FIRST"
ip -n "$NS_A" addr del "$SECOND/24" dev o0
ip -n "$NS_A" route replace "$(outer4 0 0)/24" dev o0 src "$FIRST"
check "A pings B again (the refused source is dropped)" ping_ok "$NS_A" "$(inner4 2)" 3
check "B roamed to A's first address $FIRST" wait_until 5 a_endpoint_is "$FIRST"
check "B pings A at its new endpoint" ping_ok "$NS_B" "$(inner4 1)" 3
check "B received more from A" test "$(transfer "$NS_B" "$IFB" a rx)" -gt "$rx0"
check "A's daemon is alive" pid_alive "${E2E_PID_OF[$IFA]}"

say "IPv6: B talks to A's second IPv6 address"
ip -n "$NS_A" addr add "$(outer6 0 11)/64" dev o0 nodad
# Source selection ties between the two: a preferred route picks the first.
ip -n "$NS_A" -6 route add "$(outer6 0 0)/64" dev o0 src "$(outer6 0 1)" metric 1
wg_in "$NS_B" set "$IFB" peer "$(pub a)" endpoint "[$(outer6 0 11)]:51821"
check "B pings A over IPv6" ping_ok "$NS_B" "$(inner4 1)" 3
check "A answered from $(outer6 0 11)" endpoint_is "$NS_B" "$IFB" a "[$(outer6 0 11)]:51821"
check "A pings B over IPv6" ping_ok "$NS_A" "$(inner4 2)" 3
check "... still from $(outer6 0 11)" endpoint_is "$NS_B" "$IFB" a "[$(outer6 0 11)]:51821"
