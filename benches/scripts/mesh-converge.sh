#!/usr/bin/env bash
# Mesh convergence and memory (not run in CI):
#
#   sudo benches/scripts/mesh-converge.sh N        (N = 8, 16, 32, ...; <= 200)
#
# Starts a real etcd and N `phantommesh run` nodes with a [mesh] section,
# each in its own network namespace on one bridge (tests/e2e/mesh_lib.sh),
# and measures
#   (a) from starting the N nodes (all at once) until every node has the
#       others as peers, and until every pair has a handshake (`wg show IF
#       peers` / `latest-handshakes` in every namespace);
#   (b) from starting one more node until every other node has it as a
#       peer (`wg show IF peers`), and until every one has a handshake
#       with it;
#   (c) the resident memory (VmRSS) of a mesh daemon and of a daemon with
#       a static config holding the same number of peers, both with
#       sessions to all of them (the static node is entered in the store
#       as a record without a lease, so the mesh nodes peer with it).
# Prints a small table (">S" where a step did not finish within its
# deadline of S seconds; sessions = peers with a handshake / peers). Times are polled (a round over all namespaces takes
# some tens of ms per node), so they are upper bounds at that resolution.
# Environment: IMPL (default target/release/phantommesh),
# MESH_SELF_TEST (self-test/probe period, s; default 5), MESH_LOG_LEVEL
# (default info), MESH_TTL (default 5), E2E_KEEP=1 keeps the logs.
# Everything runs in namespaces it creates and is removed on exit (by PID,
# as the end-to-end tests do).
N=${1:-}
if ! [[ $N =~ ^[0-9]+$ ]] || ((N < 2 || N > 200)); then
  echo "usage: $0 N   (2 <= N <= 200)" >&2
  exit 2
fi
MESH_SELF_TEST=${MESH_SELF_TEST:-5}
MESH_LOG_LEVEL=${MESH_LOG_LEVEL:-info}
# shellcheck source=tests/e2e/mesh_lib.sh
source "$(dirname "$0")/../../tests/e2e/mesh_lib.sh"
mesh_init 0

# The kernel's ARP table is one for all network namespaces, and its
# garbage-collection thresholds count every namespace's entries: a full
# mesh of N namespaces on one bridge needs about N^2 entries, and past
# gc_thresh3 (1024 by default, reached at N = 32) the kernel refuses new
# ones ("neighbor table overflow", sends fail with ENOBUFS), which stalls
# handshakes for reasons no real cluster has (each node has its own
# kernel). Raise the thresholds for the run and put them back afterwards.
NEIGH_KEYS=(net.ipv4.neigh.default.gc_thresh1 net.ipv4.neigh.default.gc_thresh2 net.ipv4.neigh.default.gc_thresh3)
NEIGH_SAVED=()
need=$(((N + 4) * (N + 4) * 2))
if (($(sysctl -n net.ipv4.neigh.default.gc_thresh3) < need)); then
  for k in "${NEIGH_KEYS[@]}"; do NEIGH_SAVED+=("$k=$(sysctl -n "$k")"); done
  sysctl -q -w net.ipv4.neigh.default.gc_thresh1=$((need / 4)) \
    net.ipv4.neigh.default.gc_thresh2=$((need / 2)) net.ipv4.neigh.default.gc_thresh3=$need
  say "ARP table thresholds raised to $need for the run (restored on exit)"
  trap 's=$?; sysctl -q -w "${NEIGH_SAVED[@]}"; (exit $s); e2e_exit' EXIT
fi

now() { printf '%s' "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }

# every_pair_handshaked "I J ...": each node has N-1 peers, all with a
# handshake.
every_pair_handshaked() {
  local i want n zero
  want=$(($(wc -w <<<"$1") - 1))
  for i in $1; do
    read -r n zero < <(wg_in "${MESH_NS[$i]}" show "${MESH_IF[$i]}" latest-handshakes 2>/dev/null |
      awk '{n++; if ($2 == 0) z++} END {print n + 0, z + 0}')
    [[ $n == "$want" && $zero == 0 ]] || {
      WHY="n$i: $n peers, $zero without a handshake (want $want)"
      return 1
    }
  done
}
# timed VAR T0 SECONDS CMD...: VAR = seconds from T0 until CMD held, or
# ">SECONDS" (and the reason is said) when it did not within the deadline.
timed() {
  local -n out=$1
  local t0=$2 secs=$3
  shift 3
  if wait_until "$secs" "$@"; then
    out=$(since "$t0")
  else
    out=">$secs"
    say "not within ${secs}s: $WHY"
  fi
}
# every_pair_peered "I J ...": each node has the N-1 others as peers.
every_pair_peered() {
  local i want n
  want=$(($(wc -w <<<"$1") - 1))
  for i in $1; do
    n=$(wg_in "${MESH_NS[$i]}" show "${MESH_IF[$i]}" peers 2>/dev/null | grep -c .) || true
    [[ $n == "$want" ]] || {
      WHY="n$i: $n peers (want $want)"
      return 1
    }
  done
}
# all_have_peer "I J ..." KEY [handshake]
all_have_peer() {
  local i t
  for i in $1; do
    t=$(wg_in "${MESH_NS[$i]}" show "${MESH_IF[$i]}" latest-handshakes 2>/dev/null |
      awk -v k="$2" '$1 == k {print $2}')
    [[ -n $t ]] || {
      WHY="n$i has no peer $2"
      return 1
    }
    [[ -z ${3:-} || $t != 0 ]] || {
      WHY="n$i has no handshake with $2"
      return 1
    }
  done
}

mesh_net_up
mesh_etcd_up
NODES=$(seq -s ' ' 1 "$N")
X=$((N + 1)) # the extra node
S=$((N + 2)) # the static node
for i in $NODES $X; do
  mesh_node "$i"
  (umask 077 && wg genkey >"$E2E_TMP/n$i.key")
done
say "(a) starting $N nodes"
t0=$(now)
for i in $NODES; do mesh_start "$i"; done
timed TA0 "$t0" $((60 + 3 * N)) every_pair_peered "$NODES"
[[ $TA0 != ">"* ]] || die "(a) not every node has the others as peers: $WHY"
timed TA "$t0" $((60 + 3 * N)) every_pair_handshaked "$NODES"
say "(a) $TA0 s (peers), $TA s (handshakes)"

say "(b) starting n$X"
pubx=$(wg pubkey <"$E2E_TMP/n$X.key")
t0=$(now)
mesh_start "$X"
timed TB "$t0" 60 all_have_peer "$NODES" "$pubx"
[[ $TB != ">"* ]] || die "(b) not every node has n$X as a peer: $WHY"
timed TB2 "$t0" 60 all_have_peer "$NODES" "$pubx" handshake
say "(b) $TB s (peer), $TB2 s (handshake)"

say "(c) a static node with the same peers"
ALL="$NODES $X"
mesh_node "$S" # namespace and veth; its config is replaced below
(umask 077 && wg genkey >"$E2E_TMP/n$S.key")
pubs=$(wg pubkey <"$E2E_TMP/n$S.key")
mesh_view 1 || die "n1's /mesh: $WHY"
rec1=$(store_val "$MESH_PREFIX/nodes/n1")
# An address of the network nobody holds, a record without a lease, and
# the static config from n1's view (+ n1 itself): N+1 peers, as n1 has.
read -r saddr srec < <(python3 - "$MESH_NET" "$(store_kv "$MESH_PREFIX/addrs/" | cut -f1 | sed 's|.*/||' | tr '\n' ' ')" \
  "$rec1" "$pubs" "${MESH_UIP[$S]}:$MESH_PORT" <<'PY'
import ipaddress, json, sys
net, taken, rec, pub, ep = sys.argv[1], set(sys.argv[2].split()), json.loads(sys.argv[3]), sys.argv[4], sys.argv[5]
free = next(str(h) for h in reversed(list(ipaddress.ip_network(net).hosts())) if str(h) not in taken)
rec.update(name="static", public_key=pub, endpoint=ep, allowed_ips=[],
           addresses=[a.replace(a.split("/")[0], free) for a in rec["addresses"] if ":" not in a])
print(free, json.dumps(rec, separators=(",", ":")))
PY
)
[[ -n $saddr ]] || die "could not build the static node's record"
ectl put "$MESH_PREFIX/addrs/$saddr" static >/dev/null
ectl put "$MESH_PREFIX/nodes/static" "$srec" >/dev/null
python3 - "$E2E_TMP/http/n1.mesh.json" "$rec1" "${MESH_IF[$S]}" "$E2E_TMP/n$S.key" "$MESH_PORT" \
  "$saddr/${MESH_NET#*/}" "$MESH_ADMIN" "$MESH_KEEPALIVE" >"${MESH_CONF[$S]}" <<'PY'
import json, sys
view, rec1 = json.load(open(sys.argv[1])), json.loads(sys.argv[2])
ifname, key, port, addr, admin, ka = sys.argv[3:9]
print(f'[interface]\nname = "{ifname}"\nprivate_key_file = "{key}"\nlisten_port = {port}\n'
      f'addresses = ["{addr}"]\n\n[admin]\nlisten = "{admin}"\n')
members = view["members"] + [rec1]
for m in members:
    allowed = [a.split("/")[0] + ("/128" if ":" in a else "/32") for a in m["addresses"]] + list(m.get("allowed_ips") or [])
    print(f'[[peer]]\npublic_key = "{m["public_key"]}"\nendpoint = "{m["endpoint"]}"\n'
          f'allowed_ips = {json.dumps(allowed)}\npersistent_keepalive = {ka}\n')
PY
mesh_start "$S"
wait_until 60 all_have_peer "$ALL" "$pubs" || die "(c) the mesh nodes did not all add the static node: $WHY"
static_hs() {
  local n z
  read -r n z < <(wg_in "${MESH_NS[$S]}" show "${MESH_IF[$S]}" latest-handshakes | awk '{n++; if ($2 == 0) z++} END {print n + 0, z + 0}')
  [[ $n == $((N + 1)) && $z == 0 ]] || {
    WHY="static node: $n peers, $z without a handshake"
    return 1
  }
}
wait_until 60 static_hs || say "(c) measuring anyway: $WHY"
wg_has_peer 1 "$pubs" || die "(c) n1 does not peer with the static node"
sessions() { # I: "with a handshake/peers"
  wg_in "${MESH_NS[$1]}" show "${MESH_IF[$1]}" latest-handshakes | awk '{n++; if ($2 != 0) h++} END {printf "%d/%d", h, n}'
}
peers1=$(sessions 1)
peerss=$(sessions "$S")
rss() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
RSS_MESH=$(rss "${MESH_PID[1]}")
RSS_STATIC=$(rss "${MESH_PID[$S]}")

printf '\nmesh-converge N=%s  (%s; etcd %s; lease_ttl %s s, self test every %s s)\n' \
  "$N" "$("${MESH_PM[@]}" --version 2>&1 | head -n 1)" "$(etcd --version 2>/dev/null | awk '/etcd Version/ {print $3}')" \
  "$MESH_TTL" "$MESH_SELF_TEST"
printf '%-58s %8s\n' "measure" "seconds"
printf '%-58s %8s\n' "(a) $N nodes started -> every node has the others as peers" "$TA0"
printf '%-58s %8s\n' "(a) $N nodes started -> every pair has a handshake" "$TA"
printf '%-58s %8s\n' "(b) node $X started -> every other node has it as a peer" "$TB"
printf '%-58s %8s\n' "(b) node $X started -> every other node has a handshake" "$TB2"
printf '%-58s %8s %9s\n' "(c) resident memory" "VmRSS" "sessions"
printf '%-58s %6s MiB %9s\n' "    mesh daemon (n1)" "$RSS_MESH" "$peers1"
printf '%-58s %6s MiB %9s\n' "    static config, same number of peers" "$RSS_STATIC" "$peerss"
