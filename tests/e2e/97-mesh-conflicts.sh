#!/usr/bin/env bash
# Mesh membership under conflicts, bad input and contention (skipped, exit
# 77, when IMPL is not phantommesh). Real etcd, real daemons
# (tests/e2e/mesh_lib.sh):
#   one node name twice: n4 starts with n1's name (PHANTOMMESH_NODE_NAME,
#     its own key): it counts
#     and logs a conflict, does not replace n1's record, allocates nothing,
#     and nobody peers with its key; n1 keeps working. Once n1 is stopped
#     and its lease runs out, n4 may take the name over (with n1's address,
#     which belongs to the name);
#   garbage under PREFIX/nodes/ (not JSON, JSON without the fields, a
#     public key that is not one): every daemon logs it, stays alive, loses
#     no peer, adds none; a record copying another node's public key is a
#     conflict and changes nothing; a node started while the garbage is
#     there joins normally (its etcd endpoints, advertised endpoint - a bare
#     IP - and extra prefix come from PHANTOMMESH_* variables);
#   contention: 20 nodes start at once in another mesh whose network is a
#     /27: 20 records, 20 allocations, no address twice (store and each
#     node's /mesh agree), and every node lists the 19 others.
source "$(dirname "$0")/mesh_lib.sh"
mesh_init 120

mesh_net_up
mesh_etcd_up
NODES="1 2 3"
for i in $NODES; do mesh_node "$i"; done
for i in $NODES; do mesh_start "$i"; done
mesh_wait_up 30 "$NODES"
await_or_die 30 "n1 n2 n3 list each other" all_members_are "$NODES"
mesh_addrs "$NODES"
declare -A PUB=()
for i in $NODES; do PUB[$i]=$(mesh_pub "$i"); done
await 30 "every pair pings" ping_pairs "$NODES"

say "a second node named n1 (n4's namespace, its own key; the name from PHANTOMMESH_NODE_NAME)"
mesh_node 4 # its config says node_name = "n4"
MESH_NAME[4]=n1
mesh_start 4 PHANTOMMESH_NODE_NAME=n1
mesh_wait_up 30 4
PUB[4]=$(mesh_pub 4)
verify "n4 has a key of its own" test "${PUB[4]}" != "${PUB[1]}"
await 20 "n4 counts the conflict (phantommesh_mesh_conflicts_total > 0)" metric_above 4 phantommesh_mesh_conflicts_total 0
logs_conflict() { # an error or warning about the name n1
  grep -E ' (ERROR|WARN) ' "$E2E_TMP/n4.log" | grep -qE 'n1|conflict' || {
    WHY="no ERROR/WARN line about the name n1 in n4's log"
    return 1
  }
}
await 5 "n4 logs the conflict" logs_conflict
n1_record_is() { # PUBKEY
  local rec
  rec=$(store_val "$MESH_PREFIX/nodes/n1") || true
  python3 "$E2E_DIR/mesh_json.py" "d['public_key'] == '$1'" - <<<"$rec" >/dev/null 2>&1 || {
    WHY="record n1 is: $rec"
    return 1
  }
}
verify "the store's n1 record still has n1's key" n1_record_is "${PUB[1]}"
verify "no address was allocated for the duplicate" store_count_is "$MESH_PREFIX/addrs/" 3
verify "n1 still holds its address ${MESH_ADDR[1]}" test "$(store_val "$MESH_PREFIX/addrs/${MESH_ADDR[1]}")" = n1
lacks4() { wg_lacks_peer "$1" "${PUB[4]}"; }
has1() { wg_has_peer "$1" "${PUB[1]}"; }
for i in 2 3; do
  verify "n$i has no peer with n4's key" lacks4 "$i"
  verify "n$i still has n1's key as a peer" has1 "$i"
done
verify "n1, n2, n3 still list exactly each other" all_members_are "$NODES"
verify "n1, n2, n3 still ping each other" ping_pairs "$NODES"
verify "n1 counts no conflict" metric_is 1 phantommesh_mesh_conflicts_total 0
verify "n4's daemon is still running" pid_alive "${MESH_PID[4]}"

say "n1 stops: n4 may take the name over once n1's lease is gone"
mesh_stop 1
await $((MESH_TTL + 15)) "the store's n1 record gets n4's key" n1_record_is "${PUB[4]}"
has4() { wg_has_peer "$1" "${PUB[4]}"; }
await 10 "n2 and n3 peer with n4 (as n1)" all_of has4 "2 3"
a4=$(mesh_own_addr 4) || true
verify "n4 (as n1) uses n1's address ${MESH_ADDR[1]} (got '$a4')" test "$a4" = "${MESH_ADDR[1]}"
MESH_ADDR[4]=$a4
await 20 "n2, n3, n4 ping each other" ping_pairs "2 3 4"
mesh_stop 4
await $((MESH_TTL + 6)) "n2 and n3 drop it again" all_members_are "2 3"

say "garbage under $MESH_PREFIX/nodes/"
NODES="2 3"
ectl put "$MESH_PREFIX/nodes/junk" 'not json' >/dev/null
ectl put "$MESH_PREFIX/nodes/half" '{"name":"half"}' >/dev/null
ectl put "$MESH_PREFIX/nodes/badkey" '{"name":"badkey","public_key":"not-a-key","endpoint":"10.160.1.99:51820","addresses":["10.161.0.99"],"allowed_ips":[]}' >/dev/null
logs_junk() {
  local i
  for i in $NODES; do
    grep -q junk "$E2E_TMP/n$i.log" || {
      WHY="n$i's log does not mention the key 'junk'"
      return 1
    }
  done
}
await 10 "n2 and n3 log the unreadable record 'junk'" logs_junk
# What the garbage must not do, observed for a while after it arrived.
t=$SECONDS bad=
while ((SECONDS - t < 3)); do
  all_members_are "$NODES" || bad+="$WHY; "
  sleep 0.2 # poll interval
done
verify "n2 and n3 list only each other while the garbage is there${bad:+: $bad}" test -z "$bad"
for i in $NODES; do
  verify "n$i's daemon is alive" pid_alive "${MESH_PID[$i]}"
  verify "wg show on n$i has exactly 1 peer" wg_peer_count_is "$i" 1
done
verify "n2 and n3 still ping each other" ping_pairs "$NODES"
verify "/readyz 200 on n2 and n3" all_code_is "$NODES" /readyz 200

say "a record that copies n2's public key"
c3=$(mesh_metric 3 phantommesh_mesh_conflicts_total)
ectl put "$MESH_PREFIX/nodes/clone" '{"name":"clone","public_key":"'"${PUB[2]}"'","endpoint":"10.160.1.99:51820","addresses":["10.161.0.99"],"allowed_ips":["10.164.0.0/24"]}' >/dev/null
await 10 "n3 counts the second record with n2's key as a conflict" metric_above 3 phantommesh_mesh_conflicts_total "${c3:-0}"
verify "n2 and n3 still list only each other (no 'clone')" all_members_are "$NODES"
ep_of_n2() { wg_in "${MESH_NS[3]}" show "${MESH_IF[3]}" endpoints | awk -v k="${PUB[2]}" '$1 == k {print $2}'; }
aips_of_n2() { wg_in "${MESH_NS[3]}" show "${MESH_IF[3]}" allowed-ips | awk -v k="${PUB[2]}" '$1 == k {$1 = ""; print}'; }
verify "n3 still reaches n2 at 10.160.1.2:$MESH_PORT (got '$(ep_of_n2)')" test "$(ep_of_n2)" = "10.160.1.2:$MESH_PORT"
verify "n3 gave n2's key none of the clone's allowed IPs (n2 has:$(aips_of_n2))" \
  bash -c "! grep -qE '10\.161\.0\.99|10\.164\.0\.0' <<<'$(aips_of_n2)'"
verify "n2 and n3 still ping each other" ping_pairs "$NODES"
ectl del "$MESH_PREFIX/nodes/clone" >/dev/null

say "a node starts while the garbage is there (store, endpoint and prefixes from the environment)"
mesh_node 5
# The file names an etcd nobody runs and no endpoint; the environment wins.
sed -i -e 's|^endpoints = .*|endpoints = ["http://10.160.0.99:2379"]|' -e '/^advertise_endpoint = /d' "${MESH_CONF[5]}"
ip -n "${MESH_NS[5]}" addr add 10.162.5.1/32 dev lo
mesh_start 5 PHANTOMMESH_MESH_ENDPOINTS="http://10.160.0.98:2379,$MESH_ETCD_URL" \
  PHANTOMMESH_ADVERTISE_ENDPOINT=10.160.1.5 PHANTOMMESH_MESH_ALLOWED_IPS=10.162.5.0/24
mesh_wait_up 30 5
NODES="2 3 5"
await 30 "n2, n3, n5 list exactly each other" all_members_are "$NODES"
rec5=$(store_val "$MESH_PREFIX/nodes/n5") || true
verify "n5's record: endpoint 10.160.1.5:$MESH_PORT (bare IP + listen port) and 10.162.5.0/24 from the environment" \
  python3 "$E2E_DIR/mesh_json.py" "d['endpoint'] == '10.160.1.5:$MESH_PORT' and d['allowed_ips'] == ['10.162.5.0/24']" - <<<"$rec5"
mesh_addrs "$NODES"
await 30 "n2, n3, n5 ping each other" ping_pairs "$NODES"
pfx5() { ping_ok "${MESH_NS[$1]}" 10.162.5.1 2; }
await 20 "n2 and n3 reach 10.162.5.1 (n5's prefix from PHANTOMMESH_MESH_ALLOWED_IPS)" all_of pfx5 "2 3"
for k in junk half badkey; do ectl del "$MESH_PREFIX/nodes/$k" >/dev/null; done

say "contention: 20 nodes at once in a /27"
CPFX=$MESH_PREFIX-contention
CNET=10.163.0.0/27
CNODES=$(seq -s ' ' 21 40)
for i in $CNODES; do
  MESH_NODE_PREFIX[$i]=$CPFX
  MESH_NODE_NET[$i]=$CNET
  mesh_node "$i"
done
for i in $CNODES; do mesh_start "$i" PHANTOMMESH_SELF_TEST_INTERVAL=60; done
mesh_wait_up 60 "$CNODES"
await 60 "20 records under $CPFX/nodes/" store_count_is "$CPFX/nodes/" 20
verify "20 allocations under $CPFX/addrs/" store_count_is "$CPFX/addrs/" 20
alloc=$(store_kv "$CPFX/addrs/" | sed "s|^$CPFX/addrs/||") || true
verify "each of the 20 names holds exactly one address" \
  test "$(cut -f2 <<<"$alloc" | sort -u | wc -l)" = 20
outside=
while IFS=$'\t' read -r a n; do in_net "$a" "$CNET" || outside+="$a($n) "; done <<<"$alloc"
verify "every allocation is inside $CNET${outside:+ (outside: $outside)}" test -z "$outside"
await 90 "each of the 20 nodes lists the 19 others" all_members_are "$CNODES"
mesh_addrs "$CNODES"
mismatch=
for i in $CNODES; do
  want=$(awk -F'\t' -v n="n$i" '$2 == n {print $1}' <<<"$alloc")
  [[ ${MESH_ADDR[$i]} == "$want" ]] || mismatch+="n$i /mesh ${MESH_ADDR[$i]} store '$want'; "
done
verify "each node's /mesh address is its allocation in the store${mismatch:+: $mismatch}" test -z "$mismatch"
verify "no two nodes report one address" \
  test "$(for i in $CNODES; do echo "${MESH_ADDR[$i]}"; done | sort -u | wc -l)" = 20
verify "n21 pings n40 and n40 pings n21" ping_pairs "21 40"
verify "the first mesh is untouched (n2, n3, n5 list each other)" all_members_are "2 3 5"
mesh_budget_check
