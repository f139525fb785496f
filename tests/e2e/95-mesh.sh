#!/usr/bin/env bash
# Mesh membership through etcd (phantommesh run with [mesh]; skipped, exit
# 77, when IMPL is not phantommesh). Six nodes, each in its own namespace
# on one bridge with a real etcd (tests/e2e/mesh_lib.sh):
#   start together: unique addresses from the network, allocated in the
#     store under PREFIX/addrs/, records under PREFIX/nodes/ with the
#     node's key and endpoint; every pair pings over the tunnel addresses;
#     /mesh lists the 5 others with handshakes, probes answered; /readyz,
#     /gates/mesh 200; metrics;
#   n1's extra prefix 10.162.1.0/24 (10.162.1.1 on a dummy or lo) is routed by
#     every other node through the tunnel and answers pings;
#   n1 cut off from n3 (blackhole route): n1's /gates/mesh fails, /mesh
#     shows the failed probe, /readyz stays 200; passes again once healed;
#   n6 SIGKILLed: the others drop it (/mesh, wg show, metric) within
#     lease_ttl + a few seconds, and keep their sessions with each other
#     (background pings lose nothing, no new handshake, counters go on);
#   n6 back: same address, same public key, reachable, no new allocation;
#   n1 SIGTERMed: its route and peer vanish from the others after lease
#     expiry at the latest, its address stays allocated; `phantommesh mesh
#     leave` then frees the address;
#   n6 SIGKILLed and `mesh leave` at once: record and address gone from the
#     store, the others drop it without waiting for the lease.
# shellcheck disable=SC2015 # A && B || C: C when either fails, as meant
source "$(dirname "$0")/mesh_lib.sh"
mesh_init 150

NODES="1 2 3 4 5 6"
OTHERS_OF_1="2 3 4 5 6"
mesh_net_up
mesh_etcd_up
MESH_ALLOWED[1]=10.162.1.0/24
for i in $NODES; do mesh_node "$i"; done
# What n1 routes: an address in it on a dummy interface in n1's namespace
# (on its loopback where the kernel has no dummy driver).
if ip -n "${MESH_NS[1]}" link add pfx0 type dummy 2>/dev/null; then
  ip -n "${MESH_NS[1]}" addr add 10.162.1.1/24 dev pfx0
  ip -n "${MESH_NS[1]}" link set pfx0 up
else
  ip -n "${MESH_NS[1]}" addr add 10.162.1.1/32 dev lo
fi
for i in $NODES; do await_or_die 5 "etcd reachable from n$i over the bridge" store_reachable "$i"; done

say "six nodes start together"
for i in $NODES; do mesh_start "$i"; done
mesh_wait_up 30 "$NODES"
await_or_die 30 "every node's /mesh lists the 5 others" all_members_are "$NODES"
mesh_addrs "$NODES"
declare -A PUB=()
for i in $NODES; do PUB[$i]=$(mesh_pub "$i"); done
say "addresses: $(for i in $NODES; do printf 'n%s=%s ' "$i" "${MESH_ADDR[$i]}"; done)"

uniq_addrs=$(for i in $NODES; do echo "${MESH_ADDR[$i]}"; done | sort -u | wc -l)
verify "the 6 tunnel addresses are distinct ($uniq_addrs distinct)" test "$uniq_addrs" = 6
for i in $NODES; do
  verify "n$i's address ${MESH_ADDR[$i]} is in $MESH_NET" in_net "${MESH_ADDR[$i]}" "$MESH_NET"
  verify "n$i's TUN carries ${MESH_ADDR[$i]} with the network's prefix length /24" \
    bash -c "ip -n '${MESH_NS[$i]}' -4 addr show dev '${MESH_IF[$i]}' | grep -q 'inet ${MESH_ADDR[$i]}/24 '"
  verify "store: $MESH_PREFIX/addrs/${MESH_ADDR[$i]} = n$i" \
    test "$(store_val "$MESH_PREFIX/addrs/${MESH_ADDR[$i]}")" = "n$i"
  rec=$(store_val "$MESH_PREFIX/nodes/n$i") || true
  verify "store: n$i's record has its public key, endpoint ${MESH_UIP[$i]}:$MESH_PORT and address" \
    python3 "$E2E_DIR/mesh_json.py" "d['name'] == 'n$i' and d['public_key'] == '${PUB[$i]}' and d['endpoint'] == '${MESH_UIP[$i]}:$MESH_PORT' and '${MESH_ADDR[$i]}' in [strip(a) for a in d['addresses']]" - <<<"$rec"
done
verify "store: exactly 6 address allocations" store_count_is "$MESH_PREFIX/addrs/" 6
rec1=$(store_val "$MESH_PREFIX/nodes/n1") || true
verify "store: n1's record lists its extra prefix 10.162.1.0/24" \
  python3 "$E2E_DIR/mesh_json.py" "'10.162.1.0/24' in d['allowed_ips']" - <<<"$rec1"
lease=$(ectl get "$MESH_PREFIX/nodes/n2" -w json | python3 "$E2E_DIR/mesh_json.py" 'd["kvs"][0].get("lease", 0)' -) || true
verify "store: n2's record is attached to a lease (lease id '$lease')" test "${lease:-0}" != 0

await 30 "every pair pings over the tunnel addresses" ping_pairs "$NODES"
await 30 "every node has a handshake with each of the 5 others (/mesh)" all_handshakes "$NODES"
for i in $NODES; do
  verify "wg show on n$i lists 5 peers" wg_peer_count_is "$i" 5
done

# member_matches I J: node I's /mesh entry for nJ has J's key, endpoint,
# address (and n1's extra prefix).
member_matches() {
  local i=$1 j=$2 extra=""
  [[ $j != 1 ]] || extra=" and '10.162.1.0/24' in m['allowed_ips']"
  mesh_view "$i" &&
    mj "$i" "any(m['name'] == 'n$j' and m['public_key'] == '${PUB[$j]}' and m['endpoint'] == '${MESH_UIP[$j]}:$MESH_PORT' and '${MESH_ADDR[$j]}' in [strip(a) for a in m['addresses']]$extra for m in d['members'])" >/dev/null
}
for i in $NODES; do
  ok=1
  for j in $NODES; do
    [[ $i == "$j" ]] || member_matches "$i" "$j" || ok=0
  done
  verify "n$i's /mesh entries carry each member's key, endpoint, address" test "$ok" = 1
  mesh_view "$i"
  verify "n$i's /mesh: node n$i, prefix $MESH_PREFIX, store_up, started, own address" \
    mj "$i" "d['node'] == 'n$i' and d['prefix'] == '$MESH_PREFIX' and d['store_up'] is True and d['started'] is True and '${MESH_ADDR[$i]}' in [strip(a) for a in d['addresses']]"
done

probes_ok() {
  local i bad
  for i in $NODES; do
    mesh_view "$i" || return 1
    bad=$(mj "$i" '[m["name"] for m in d["members"] if not (m.get("last_probe") and m["last_probe"].get("ok") is True)]' | tr '\n' ' ')
    [[ -z $bad ]] || {
      WHY="n$i: no answered probe yet for: $bad"
      return 1
    }
  done
}
await 40 "every node's probes of its 5 members are answered (self-test every ${MESH_SELF_TEST}s)" probes_ok
await 30 "GET /gates/mesh is 200 on every node" all_code_is "$NODES" /gates/mesh 200
verify "GET /readyz is 200 on every node" all_code_is "$NODES" /readyz 200
verbose_mesh_ok() {
  local i
  for i in $NODES; do
    code_is "$i" "/readyz?verbose" 200 || return 1
    grep -qF '[+]mesh ok' "$E2E_TMP/http/n$i.body" || {
      WHY="n$i /readyz?verbose lacks '[+]mesh ok': $(tr '\n' '|' <"$E2E_TMP/http/n$i.body")"
      return 1
    }
  done
}
verify "GET /readyz?verbose shows [+]mesh ok on every node" verbose_mesh_ok
verify "phantommesh_mesh_peers is 5 on every node" all_metric_is "$NODES" phantommesh_mesh_peers 5
verify "phantommesh_mesh_store_up is 1 on every node" all_metric_is "$NODES" phantommesh_mesh_store_up 1
verify "phantommesh_mesh_conflicts_total is 0 on every node" all_metric_is "$NODES" phantommesh_mesh_conflicts_total 0

say "n1's extra prefix 10.162.1.0/24"
route_via_tunnel() { # I: 10.162.1.0/24 routed through node I's interface
  ip -n "${MESH_NS[$1]}" route show 10.162.1.0/24 | grep -q "dev ${MESH_IF[$1]}" || {
    WHY="n$1 has no route 10.162.1.0/24 dev ${MESH_IF[$1]}: $(ip -n "${MESH_NS[$1]}" route | tr '\n' '|')"
    return 1
  }
}
route_gone() {
  [[ -z $(ip -n "${MESH_NS[$1]}" route show 10.162.1.0/24) ]] || {
    WHY="n$1 still routes 10.162.1.0/24: $(ip -n "${MESH_NS[$1]}" route show 10.162.1.0/24)"
    return 1
  }
}
await 10 "n2..n6 route 10.162.1.0/24 through their mesh interface" all_of route_via_tunnel "$OTHERS_OF_1"
verify "n1 has no tunnel route for its own prefix" \
  bash -c "! ip -n '${MESH_NS[1]}' route show 10.162.1.0/24 | grep -q 'dev ${MESH_IF[1]}'"
pfx_ping() {
  local i bad=
  for i in $OTHERS_OF_1; do ping_ok "${MESH_NS[$i]}" 10.162.1.1 2 || bad+="n$i "; done
  [[ -z $bad ]] || {
    WHY="no reply from 10.162.1.1 to: $bad"
    return 1
  }
}
await 20 "n2..n6 ping 10.162.1.1 (on n1) through the tunnel" pfx_ping

say "n1 cannot reach n3 any more (a blackhole route to n3's endpoint in n1's namespace)"
ip -n "${MESH_NS[1]}" route add blackhole "${MESH_UIP[3]}/32"
await 45 "n1's /gates/mesh fails (503) with 1 of its 5 members unreachable" code_is 1 /gates/mesh 503
n3_probe_failed() {
  mesh_view 1 && mj 1 "any(m['name'] == 'n3' and m.get('last_probe') is not None and m['last_probe'].get('ok') is False for m in d['members'])" >/dev/null || {
    WHY="n1's /mesh does not show a failed last probe of n3"
    return 1
  }
}
await 10 "n1's /mesh shows n3's last probe failed" n3_probe_failed
verify "n1's /readyz stays 200 (readiness never depends on remote peers)" code_is 1 /readyz 200
verify "n1 still lists n3 (its record lives)" members_are 1 "2 3 4 5 6"
ip -n "${MESH_NS[1]}" route del blackhole "${MESH_UIP[3]}/32"
await 45 "n1's /gates/mesh passes again once n3 is reachable" code_is 1 /gates/mesh 200

say "n6 is SIGKILLed"
SURV="1 2 3 4 5"
hs_before=$(handshake_times 2 | grep -vF "${PUB[6]}") || true
rx_before=$(rx_bytes 2 | grep -vF "${PUB[6]}") || true
ping_watch_start a 2 "${MESH_ADDR[3]}"
ping_watch_start b 4 "${MESH_ADDR[5]}"
ping_watch_start c 1 "${MESH_ADDR[2]}"
mesh_kill 6
await $((MESH_TTL + 6)) "n1..n5 drop n6 from /mesh within lease_ttl ($MESH_TTL s) + 6 s" all_members_are "$SURV"
lacks6() { wg_lacks_peer "$1" "${PUB[6]}"; }
await 5 "n6's key is gone from wg show on n1..n5" all_of lacks6 "$SURV"
verify "phantommesh_mesh_peers is 4 on n1..n5" all_metric_is "$SURV" phantommesh_mesh_peers 4
verify "n6's record expired from the store" test -z "$(store_val "$MESH_PREFIX/nodes/n6")"
verify "n6's address stays allocated to it" test "$(store_val "$MESH_PREFIX/addrs/${MESH_ADDR[6]}")" = n6
verify "the 5 survivors still ping each other" ping_pairs "$SURV"
for w in a b c; do
  read -r sent got <<<"$(ping_watch_stop "$w")"
  verify "background pings $w during n6's departure: $got of $sent answered (at most 1 lost, in flight when stopped)" \
    test "${sent:-0}" -ge 20 -a $((${sent:-0} - ${got:-0})) -le 1
done
hs_after=$(handshake_times 2 | grep -vF "${PUB[6]}") || true
# A changed handshake is only acceptable as the regular rekey (>= 120 s on).
hs_kept() {
  local k t0 t1
  while read -r k t0; do
    t1=$(awk -v k="$k" '$1 == k {print $2}' <<<"$hs_after")
    [[ -n $t1 ]] || {
      echo "peer $k vanished" >&2
      return 1
    }
    ((t1 == t0 || t1 - t0 >= 110)) || {
      echo "peer $k: handshake at $t0 then again at $t1 (session reset)" >&2
      return 1
    }
  done <<<"$hs_before"
}
verify "n2's sessions with n1, n3, n4, n5 were not reset (latest-handshakes)" hs_kept
rx_grew() {
  local k b a
  while read -r k b _; do
    a=$(awk -v k="$k" '$1 == k {print $2}' <<<"$(rx_bytes 2)")
    [[ -n $a ]] && ((a >= b)) || {
      echo "peer $k: rx $b before, '$a' after (peer re-created?)" >&2
      return 1
    }
  done <<<"$rx_before"
}
verify "n2's peers kept their transfer counters (not re-created)" rx_grew

say "n6 comes back"
old6=${MESH_ADDR[6]}
conv0=$(mesh_metric 2 phantommesh_mesh_convergence_seconds_count)
sum0=$(mesh_metric 2 phantommesh_mesh_convergence_seconds_sum)
mesh_start 6
mesh_wait_up 30 6
await 30 "all 6 nodes list each other again" all_members_are "$NODES"
new6=$(mesh_own_addr 6) || true
verify "n6 got its address back ($old6, now '$new6')" test "$new6" = "$old6"
verify "n6 kept its public key" test "$(mesh_pub 6)" = "${PUB[6]}"
conv1=$(mesh_metric 2 phantommesh_mesh_convergence_seconds_count)
sum1=$(mesh_metric 2 phantommesh_mesh_convergence_seconds_sum)
# n6's return reached n2 through the watch: one or more observations, each
# well under lease_ttl on a LAN.
conv_ok() {
  python3 -c 'import sys; c0, s0, c1, s1 = map(float, sys.argv[1:]); sys.exit(0 if c1 > c0 and (s1 - s0) / (c1 - c0) < 2.0 else 1)' \
    "${conv0:-0}" "${sum0:-0}" "${conv1:-0}" "${sum1:-0}"
}
verify "n2's phantommesh_mesh_convergence_seconds observed n6's return (count $conv0 -> $conv1, sum $sum0 -> $sum1; mean of the new ones < 2 s)" conv_ok
verify "store: still exactly 6 address allocations" store_count_is "$MESH_PREFIX/addrs/" 6
await 30 "every pair pings again, n6 included" ping_pairs "$NODES"
has6() { wg_has_peer "$1" "${PUB[6]}"; }
verify "n1..n5 have n6's key as a peer again" all_of has6 "$SURV"

say "n1 leaves (SIGTERM, then phantommesh mesh leave)"
addr1=${MESH_ADDR[1]}
mesh_stop 1
await $((MESH_TTL + 6)) "n2..n6 drop n1 within lease_ttl + 6 s" all_members_are "$OTHERS_OF_1"
await 5 "n2..n6 no longer route 10.162.1.0/24" all_of route_gone "$OTHERS_OF_1"
lacks1() { wg_lacks_peer "$1" "${PUB[1]}"; }
verify "n1's key is gone from wg show on n2..n6" all_of lacks1 "$OTHERS_OF_1"
verify "n2 gets no answer from 10.162.1.1 any more" ping_none "${MESH_NS[2]}" 10.162.1.1
verify "n1's address stays allocated after a plain stop" \
  test "$(store_val "$MESH_PREFIX/addrs/$addr1")" = n1
# leave I: `phantommesh mesh leave --config` for node I, in its namespace.
leave() {
  local rc=0
  ip netns exec "${MESH_NS[$1]}" timeout 30 "${MESH_PM[@]}" mesh leave --config "${MESH_CONF[$1]}" \
    >"$E2E_TMP/leave-n$1.log" 2>&1 || rc=$?
  [[ $rc == 0 ]] || WHY="exit status $rc: $(tail -n 3 "$E2E_TMP/leave-n$1.log" | tr '\n' ' ')"
  return "$rc"
}
verify "phantommesh mesh leave for stopped n1 exits 0" leave 1
verify "mesh leave freed n1's address $addr1 in the store" test -z "$(store_val "$MESH_PREFIX/addrs/$addr1")"
verify "the other 5 allocations are untouched" store_count_is "$MESH_PREFIX/addrs/" 5

say "n6 crashes and leaves at once (SIGKILL, then mesh leave before its lease ends)"
mesh_kill 6
verify "n6's record is still there (its lease runs)" test -n "$(store_val "$MESH_PREFIX/nodes/n6")"
verify "phantommesh mesh leave for crashed n6 exits 0" leave 6
verify "mesh leave removed n6's record at once" test -z "$(store_val "$MESH_PREFIX/nodes/n6")"
verify "mesh leave freed n6's address ${MESH_ADDR[6]}" test -z "$(store_val "$MESH_PREFIX/addrs/${MESH_ADDR[6]}")"
verify "4 allocations remain" store_count_is "$MESH_PREFIX/addrs/" 4
REST="2 3 4 5"
await 3 "n2..n5 drop n6 within 3 s of its leave" all_members_are "$REST"
verify "n2..n5 still ping each other" ping_pairs "$REST"

for i in $REST; do
  verify "n$i's daemon still running" pid_alive "${MESH_PID[$i]}"
done
mesh_budget_check
