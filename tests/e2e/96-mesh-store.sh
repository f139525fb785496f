#!/usr/bin/env bash
# The data plane outlives the mesh's store (skipped, exit 77, when IMPL is
# not phantommesh). Four nodes and a real etcd (tests/e2e/mesh_lib.sh), a
# dual-stack network (IPv4 and IPv6 addresses, both pinged):
#   etcd is SIGKILLed (a crash or a partition: nothing answers on 2379) and
#   stays away for MESH_OUTAGE seconds (default 30). Meanwhile, checked
#   over and over: every tunnel keeps working (all pairs ping; background
#   pings lose nothing), /readyz stays 200, the members stay,
#   phantommesh_mesh_store_up is 0, /mesh says store_up false, /gates/mesh
#   fails (503). n4 is restarted inside the window and rejoins from its
#   cache file: same address, its peers back, pings both ways, /readyz 200;
#   a fresh node n6 (no cache) started then is not ready ([-]mesh failed).
#   etcd comes back on the same data dir: store_up 1 everywhere, no member
#   lost when the old leases run out (n4's included), /gates/mesh 200 again,
#   n6 joins and becomes ready, and a new node n5 joins, seen by all and
#   reachable;
#   n2 alone loses etcd (blackhole route) past its lease: the others drop
#   it (documented), it keeps its peers; once it reaches etcd again it
#   publishes itself again and everyone peers with it.
# shellcheck disable=SC2015 # A && B || C: C when either fails, as meant
MESH_NET="10.161.0.0/24,fd00:161::/64" # dual stack: one IPv4 and one IPv6 pool
source "$(dirname "$0")/mesh_lib.sh"
mesh_init 180
OUTAGE=${MESH_OUTAGE:-30}

NODES="1 2 3 4"
mesh_net_up
mesh_etcd_up
for i in $NODES; do mesh_node "$i"; done
for i in $NODES; do mesh_start "$i"; done
mesh_wait_up 30 "$NODES"
await_or_die 30 "every node lists the 3 others" all_members_are "$NODES"
mesh_addrs "$NODES"
pub4=$(mesh_pub 4)
await_or_die 30 "every pair pings" ping_pairs "$NODES"
declare -A ADDR6=()
for i in $NODES; do ADDR6[$i]=$(mesh_own_addr6 "$i") || true; done
v6_in_pool() {
  local i
  for i in $NODES; do in_net "${ADDR6[$i]:-none}" fd00:161::/64 || return 1; done
  [[ $(printf '%s\n' "${ADDR6[@]}" | sort -u | wc -l) == 4 ]] || {
    WHY="IPv6 addresses not distinct: ${ADDR6[*]}"
    return 1
  }
}
verify "each node has a distinct IPv6 tunnel address from fd00:161::/64 (${ADDR6[*]})" v6_in_pool
await 20 "every pair pings over the IPv6 tunnel addresses" ping_pairs "$NODES" ADDR6
await 40 "GET /gates/mesh is 200 on every node before the outage" all_code_is "$NODES" /gates/mesh 200
verify "n4 cached its view in its cache_file" test -s "$E2E_TMP/n4-mesh.json"

say "etcd is killed for ${OUTAGE}s"
ping_watch_start a 1 "${MESH_ADDR[2]}"
ping_watch_start b 2 "${MESH_ADDR[3]}"
ping_watch_start c 3 "${MESH_ADDR[1]}"
mesh_etcd_kill
T0=$SECONDS
await $((MESH_TTL + 10)) "phantommesh_mesh_store_up goes to 0 on every node" all_metric_is "$NODES" phantommesh_mesh_store_up 0
store_down_in_view() {
  local i
  for i in $NODES; do
    mesh_view "$i" && mj "$i" 'd["store_up"] is False' >/dev/null || {
      WHY="n$i's /mesh does not say store_up false"
      return 1
    }
  done
}
verify "/mesh says store_up false on every node" store_down_in_view
await 15 "GET /gates/mesh fails (503) on every node while etcd is down" all_code_is "$NODES" /gates/mesh 503
verify "GET /readyz stays 200 on every node" all_code_is "$NODES" /readyz 200
verify "every node still lists the 3 others" all_members_are "$NODES"

say "n4 restarts while etcd is down"
mesh_stop 4
mesh_start 4
mesh_wait_up 30 4
await 20 "restarted n4 is ready (/readyz 200) from its cache" code_is 4 /readyz 200
await 20 "restarted n4 lists n1 n2 n3 again (from its cache)" members_are 4 "1 2 3"
a4=$(mesh_own_addr 4) || true
verify "restarted n4 has its address ${MESH_ADDR[4]} back (got '$a4')" test "$a4" = "${MESH_ADDR[4]}"
verify "restarted n4 kept its public key" test "$(mesh_pub 4)" = "$pub4"
await 20 "every pair pings, restarted n4 included" ping_pairs "$NODES"
verify "restarted n4 reports store_up 0" metric_is 4 phantommesh_mesh_store_up 0

say "a fresh node (no cache) starts while etcd is down"
mesh_node 6
mesh_start 6
mesh_wait_up 30 6
not_ready_no_view() {
  code_is 6 "/readyz?verbose" 500 || return 1
  grep -qF '[-]mesh failed' "$E2E_TMP/http/n6.body" || {
    WHY="n6 /readyz?verbose lacks '[-]mesh failed': $(tr '\n' '|' <"$E2E_TMP/http/n6.body")"
    return 1
  }
}
await 10 "fresh n6 is not ready (500, [-]mesh failed): it has no view of the mesh" not_ready_no_view
verify "the others still list only each other" all_members_are "$NODES"

rounds=0 bad_rounds=0 not_ready=
while ((SECONDS - T0 < OUTAGE)); do
  rounds=$((rounds + 1))
  ping_pairs "$NODES" || {
    bad_rounds=$((bad_rounds + 1))
    say "round $rounds: $WHY"
  }
  all_code_is "$NODES" /readyz 200 || not_ready+="round $rounds: $WHY; "
  all_members_are "$NODES" || not_ready+="round $rounds: $WHY; "
done
verify "all pairs pinged in each of $rounds rounds over the ${OUTAGE}s outage ($bad_rounds failed)" \
  test "$rounds" -ge 2 -a "$bad_rounds" = 0
verify "readiness and members held over the outage${not_ready:+: $not_ready}" test -z "$not_ready"
verify "phantommesh_mesh_store_up still 0 at the end of the outage" all_metric_is "$NODES" phantommesh_mesh_store_up 0
sync_errors_counted() {
  metric_above "$1" phantommesh_mesh_sync_errors_total 0 &&
    mesh_view "$1" && mj "$1" 'd["sync_errors"] > 0' >/dev/null || {
    [[ -n $WHY ]] || WHY="the /mesh sync_errors of n$1 is not > 0"
    return 1
  }
}
verify "phantommesh_mesh_sync_errors_total and /mesh sync_errors count the failures" all_of sync_errors_counted "$NODES"
for w in a b c; do
  read -r sent got <<<"$(ping_watch_stop "$w")"
  verify "background pings $w over the outage: $got of $sent answered (at most 1 lost, in flight when stopped)" \
    test "${sent:-0}" -ge $((OUTAGE * 4)) -a $((${sent:-0} - ${got:-0})) -le 1
done

say "etcd comes back (same data dir)"
mesh_etcd_start
T1=$SECONDS
await 30 "phantommesh_mesh_store_up is 1 again on every node" all_metric_is "$NODES" phantommesh_mesh_store_up 1
ALL="1 2 3 4 6"
await 30 "n6, started during the outage, joins once etcd is back (all list each other)" all_members_are "$ALL"
await 20 "n6 becomes ready" code_is 6 /readyz 200
verify "every node's record is in the store (n6's too)" store_count_is "$MESH_PREFIX/nodes/" 5
# Leases granted before the outage run out lease_ttl after etcd's return
# unless kept alive: nobody may disappear then.
lost=
while ((SECONDS - T1 < 2 * MESH_TTL + 3)); do
  all_members_are "$ALL" || lost+="$WHY; "
  sleep 0.2 # poll interval
done
verify "no member lost while the pre-outage leases expired${lost:+: $lost}" test -z "$lost"
verify "the 5 records are still in the store after that" store_count_is "$MESH_PREFIX/nodes/" 5
verify "exactly 10 address allocations (n1-n4 and n6, IPv4 + IPv6)" store_count_is "$MESH_PREFIX/addrs/" 10
await 40 "GET /gates/mesh is 200 again on every node" all_code_is "$ALL" /gates/mesh 200

say "a new node joins"
mesh_node 5
mesh_start 5
mesh_wait_up 30 5
ALL="1 2 3 4 5 6"
await 30 "all 6 nodes list each other" all_members_are "$ALL"
mesh_addrs "$ALL"
uniq=$(for i in $ALL; do echo "${MESH_ADDR[$i]}"; done | sort -u | wc -l)
verify "the 6 IPv4 addresses are distinct ($uniq distinct)" test "$uniq" = 6
await 30 "every pair pings, n5 and n6 included" ping_pairs "$ALL"
verify "phantommesh_mesh_peers is 5 on every node" all_metric_is "$ALL" phantommesh_mesh_peers 5

say "n2 alone loses etcd for lease_ttl + 4 s (a blackhole route to etcd in its namespace)"
ip -n "${MESH_NS[2]}" route add blackhole "$MESH_ETCD_IP/32"
await $((MESH_TTL + 10)) "n2's phantommesh_mesh_store_up goes to 0" metric_is 2 phantommesh_mesh_store_up 0
CUT="1 3 4 5 6"
await $((MESH_TTL + 8)) "the others drop n2 when its lease runs out (the documented trade-off)" all_members_are "$CUT"
verify "n2 keeps all its peers" members_are 2 "$CUT"
ip -n "${MESH_NS[2]}" route del blackhole "$MESH_ETCD_IP/32"
say "n2 reaches etcd again"
await 30 "n2's phantommesh_mesh_store_up is 1 again" metric_is 2 phantommesh_mesh_store_up 1
await 20 "n2 is back in every node's view (it published itself again)" all_members_are "$ALL"
await 20 "every pair pings again, n2 included" ping_pairs "$ALL"
mesh_budget_check
