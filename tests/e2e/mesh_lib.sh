# shellcheck shell=bash disable=SC2015 # A && B || C: C when either fails, as meant
# Mesh harness for the 95-* scenarios and benches/scripts/mesh-converge.sh:
# real etcd, real `phantommesh run` daemons with a [mesh] section, each node
# in its own network namespace.
#
#   hub namespace  $E2E_TAG-hub   Linux bridge br0 (no address)
#   etcd           $E2E_TAG-etcd  10.160.0.2/16, etcd on :2379, peer URL on
#                                 its own loopback
#   node I         $E2E_TAG-nI    10.160.1.I/16 (I = 1..254), interface
#                                 p<PID>mI listening on 51820, admin on its
#                                 own 127.0.0.1:9586
#   tunnel addresses come from MESH_NET (default 10.161.0.0/24); extra
#   prefixes a node routes are 10.162.I.0/24 by convention.
# (lib.sh's plan uses 10.200/10.201; other scripts 10.0, 10.9x, 10.2xx.)
#
# Everything started here is recorded by PID and lives inside our
# namespaces, so lib.sh's EXIT trap ends it, deletes the namespaces, the
# UAPI sockets and the temp dir (etcd's data dir is inside it), also on
# failure; scripts/test.sh's registry sweep covers a scenario it had to kill.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MESH_HUB=$E2E_TAG-hub
MESH_ETCD_NS=$E2E_TAG-etcd
MESH_ETCD_IP=10.160.0.2
MESH_ETCD_URL=http://$MESH_ETCD_IP:2379
MESH_ETCD_PEER=http://127.0.0.1:2380
MESH_PREFIX=${MESH_PREFIX:-/phantommesh/test-$$}
MESH_NET=${MESH_NET:-10.161.0.0/24}
MESH_TTL=${MESH_TTL:-5}
MESH_KEEPALIVE=${MESH_KEEPALIVE:-25}
MESH_PORT=51820
MESH_ADMIN=127.0.0.1:9586
MESH_SELF_TEST=${MESH_SELF_TEST:-2}
MESH_LOG_LEVEL=${MESH_LOG_LEVEL:-debug}
MESH_ETCD_PID=
MESH_ETCD_DATA=
declare -A MESH_NS=() MESH_IF=() MESH_UIP=() MESH_NAME=() MESH_CONF=() MESH_PID=()
declare -A MESH_ALLOWED=() MESH_NODE_NET=() MESH_NODE_PREFIX=() MESH_ADDR=()
WHY=

# mesh_init [BUDGET_SECONDS]: lib.sh's e2e_init, the tools, and a check that
# IMPL is phantommesh (run mode is phantommesh's own: skipped otherwise).
mesh_init() {
  MESH_BUDGET=${1:-0}
  MESH_T0=$SECONDS
  e2e_init
  local tool
  for tool in etcd etcdctl curl; do
    command -v "$tool" >/dev/null || die "missing tool: $tool (run scripts/test.sh to install etcd-server, etcd-client, curl)"
  done
  read -ra MESH_PM <<<"$IMPL"
  local version
  if ! version=$("${MESH_PM[@]}" --version 2>&1) || [[ $version != *phantommesh* ]]; then
    say "SKIP: IMPL '$IMPL' is not phantommesh (--version said: ${version%%$'\n'*})"
    exit 77
  fi
  mkdir -p "$E2E_TMP/http"
}

# mesh_budget_check: fails the scenario when it ran longer than its budget
# (the mesh set has to stay within a few minutes of CI time).
mesh_budget_check() {
  local took=$((SECONDS - MESH_T0))
  ((MESH_BUDGET > 0)) || return 0
  check "scenario took ${took}s (budget ${MESH_BUDGET}s)" test "$took" -le "$MESH_BUDGET"
}

# verify DESC CMD...: lib.sh's check, with the condition's WHY on failure.
verify() {
  local desc=$1
  shift
  WHY=
  if "$@"; then
    CHECK_OK=1
    pass "$desc"
  else
    CHECK_OK=0
    fail "$desc${WHY:+: $WHY}"
  fi
}

# await SECONDS DESC CMD...: polls CMD until it holds (a PASS) or the
# deadline passes (a FAIL with the condition's last WHY).
await() {
  local secs=$1 desc=$2 t0=$SECONDS
  shift 2
  WHY=
  if wait_until "$secs" "$@"; then
    CHECK_OK=1
    pass "$desc ($((SECONDS - t0))s)"
  else
    CHECK_OK=0
    fail "$desc: not within ${secs}s: ${WHY:-condition false}"
  fi
}
# await_or_die: the same, but the scenario cannot go on without it.
await_or_die() {
  await "$@"
  ((CHECK_OK)) || exit 1
}

# ------------------------------------------------------------------ network

mesh_net_up() {
  ns_create "$MESH_HUB"
  ip -n "$MESH_HUB" link add br0 type bridge
  ip -n "$MESH_HUB" link set br0 up
}

# mesh_attach NS HUBSIDE ADDR: NS joins the bridge by a veth (u0 in NS).
mesh_attach() {
  local ns=$1 hside=$2 addr=$3
  ip -n "$MESH_HUB" link add "$hside" type veth peer name u0 netns "$ns"
  ip -n "$MESH_HUB" link set "$hside" master br0 up
  ip -n "$ns" addr add "$addr/16" dev u0
  ip -n "$ns" link set u0 up
}

# ---------------------------------------------------------------------- etcd

ectl() {
  timeout 15 ip netns exec "$MESH_ETCD_NS" etcdctl --endpoints "$MESH_ETCD_URL" \
    --dial-timeout=2s --command-timeout=5s "$@"
}
etcd_healthy() {
  WHY="etcdctl endpoint health failed"
  ectl endpoint health >/dev/null 2>&1
}

# store_kv KEYPREFIX: "key<TAB>value" lines under KEYPREFIX (values with
# newlines or tabs have them as spaces); false when etcd does not answer.
store_kv() {
  local out
  out=$(ectl get "$1" --prefix -w json) || {
    WHY="etcdctl get $1 failed"
    return 1
  }
  python3 -c '
import base64, json, sys
d = json.loads(sys.stdin.read())
for kv in d.get("kvs") or []:
    k = base64.b64decode(kv["key"]).decode(errors="replace")
    v = base64.b64decode(kv.get("value", "")).decode(errors="replace")
    print(k + "\t" + v.replace("\n", " ").replace("\t", " "))
' <<<"$out"
}
# store_count KEYPREFIX: how many keys
store_count() { store_kv "$1" | grep -c . || true; }
store_count_is() { # KEYPREFIX N
  local n
  n=$(store_count "$1")
  [[ $n == "$2" ]] || {
    WHY="$n keys under $1, want $2: $(store_kv "$1" | cut -c1-120 | tr '\n' '|')"
    return 1
  }
}
# store_val KEY: the value of one key (empty if absent)
store_val() { ectl get "$1" --print-value-only; }

# mesh_etcd_up: the etcd namespace on the bridge, and etcd started.
mesh_etcd_up() {
  ns_create "$MESH_ETCD_NS"
  mesh_attach "$MESH_ETCD_NS" e0 "$MESH_ETCD_IP"
  MESH_ETCD_DATA=$(mktemp -d "$E2E_TMP/etcd-data.XXXXXX")
  mesh_etcd_start
}

# mesh_etcd_start: etcd on the data dir it had (a restart keeps the data).
mesh_etcd_start() {
  ip netns exec "$MESH_ETCD_NS" etcd --name e2e --data-dir "$MESH_ETCD_DATA" \
    --listen-client-urls "$MESH_ETCD_URL" --advertise-client-urls "$MESH_ETCD_URL" \
    --listen-peer-urls "$MESH_ETCD_PEER" --initial-advertise-peer-urls "$MESH_ETCD_PEER" \
    --initial-cluster "e2e=$MESH_ETCD_PEER" >>"$E2E_TMP/etcd.log" 2>&1 &
  MESH_ETCD_PID=$!
  E2E_PIDS+=("$MESH_ETCD_PID")
  e2e_register "pid $MESH_ETCD_PID"
  local deadline=$((SECONDS + 30))
  until etcd_healthy; do
    pid_alive "$MESH_ETCD_PID" || {
      tail -n 20 "$E2E_TMP/etcd.log" >&2
      die "etcd exited at start"
    }
    ((SECONDS < deadline)) || die "etcd not healthy within 30 s"
    sleep 0.2
  done
  say "etcd up (pid $MESH_ETCD_PID) at $MESH_ETCD_URL"
}

# mesh_etcd_kill: SIGKILL (the store vanishes as in a crash or partition).
mesh_etcd_kill() {
  [[ -n $MESH_ETCD_PID ]] || return 0
  kill -KILL "$MESH_ETCD_PID" 2>/dev/null || true
  wait_until 10 pid_gone "$MESH_ETCD_PID" || die "etcd $MESH_ETCD_PID survived SIGKILL"
  wait "$MESH_ETCD_PID" 2>/dev/null || true
  MESH_ETCD_PID=
}

# ---------------------------------------------------------------------- nodes

# store_reachable I: etcd answers node I over the bridge.
store_reachable() {
  ip netns exec "${MESH_NS[$1]}" curl -s -m 3 "$MESH_ETCD_URL/health" 2>/dev/null | grep -q '"health":"true"' || {
    WHY="n$1 cannot reach etcd's /health at $MESH_ETCD_URL"
    return 1
  }
}

# mesh_node I: namespace, veth and settings of node I (not started).
# Before calling: MESH_ALLOWED[I]="10.162.I.0/24,..." for extra prefixes,
# MESH_NODE_NET[I] for a network other than MESH_NET, MESH_NODE_PREFIX[I]
# for another mesh (key prefix), MESH_NAME[I] for a node name not "nI".
mesh_node() {
  local i=$1
  ((i >= 1 && i <= 254)) || die "node index $i out of range"
  MESH_NS[$i]=$E2E_TAG-n$i
  MESH_IF[$i]=${E2E_IFPFX}m$i
  ((${#MESH_IF[$i]} <= 15)) || die "interface name too long: ${MESH_IF[$i]}"
  MESH_UIP[$i]=10.160.1.$i
  MESH_NAME[$i]=${MESH_NAME[$i]:-n$i}
  MESH_CONF[$i]=$E2E_TMP/n$i.toml
  E2E_IFS+=("${MESH_IF[$i]}")
  e2e_register "sock $WG_RUN_DIR/${MESH_IF[$i]}.sock"
  ns_create "${MESH_NS[$i]}"
  mesh_attach "${MESH_NS[$i]}" "n$i" "${MESH_UIP[$i]}"
  mesh_write_config "$i"
}

toml_list() { # a,b,c -> "a", "b", "c"
  local out='' x
  local IFS=,
  for x in $1; do out+="${out:+, }\"$x\""; done
  printf '%s' "$out"
}

mesh_write_config() {
  local i=$1 net=${MESH_NODE_NET[$1]:-$MESH_NET}
  local netval
  if [[ $net == *,* ]]; then netval="[$(toml_list "$net")]"; else netval="\"$net\""; fi
  cat >"${MESH_CONF[$i]}" <<EOF
[interface]
name = "${MESH_IF[$i]}"
private_key_file = "$E2E_TMP/n$i.key"
listen_port = $MESH_PORT

[admin]
listen = "$MESH_ADMIN"

[mesh]
store = "etcd"
endpoints = ["$MESH_ETCD_URL"]
prefix = "${MESH_NODE_PREFIX[$i]:-$MESH_PREFIX}"
node_name = "${MESH_NAME[$i]}"
advertise_endpoint = "${MESH_UIP[$i]}:$MESH_PORT"
network = $netval
allowed_ips = [$(toml_list "${MESH_ALLOWED[$i]:-}")]
lease_ttl = $MESH_TTL
persistent_keepalive = $MESH_KEEPALIVE
cache_file = "$E2E_TMP/n$i-mesh.json"
EOF
}

# mesh_start I [VAR=VALUE...]: starts node I's daemon in the background
# (log: $E2E_TMP/nI.log, appended across restarts); does not wait.
mesh_start() {
  local i=$1 pid
  shift
  printf '\n===== start %(%H:%M:%S)T =====\n' -1 >>"$E2E_TMP/n$i.log"
  ip netns exec "${MESH_NS[$i]}" env LOG_LEVEL="$MESH_LOG_LEVEL" \
    PHANTOMMESH_SELF_TEST_INTERVAL="$MESH_SELF_TEST" "$@" \
    "${MESH_PM[@]}" run --config "${MESH_CONF[$i]}" >>"$E2E_TMP/n$i.log" 2>&1 &
  pid=$!
  MESH_PID[$i]=$pid
  E2E_PIDS+=("$pid")
  e2e_register "pid $pid"
}

node_up() { # I: daemon alive, UAPI socket, TUN, admin answering
  local i=$1 code
  if ! pid_alive "${MESH_PID[$i]}"; then
    WHY="n$i's daemon (pid ${MESH_PID[$i]}) exited; log tail: $(tail -n 5 "$E2E_TMP/n$i.log" | tr '\n' '|')"
    return 1
  fi
  sock_ready "${MESH_IF[$i]}" && link_exists "${MESH_NS[$i]}" "${MESH_IF[$i]}" || {
    WHY="n$i: no UAPI socket or TUN yet"
    return 1
  }
  code=$(mesh_code "$i" /livez)
  [[ $code == 200 ]] || {
    WHY="n$i: /livez answered $code"
    return 1
  }
}
# mesh_wait_up SECONDS "I J ...": every node up, or the scenario stops.
mesh_wait_up() {
  local secs=$1 i
  for i in $2; do
    await_or_die "$secs" "n$i started (socket, TUN, admin)" node_up "$i"
  done
}

# mesh_stop I: SIGTERM; a FAIL if SIGKILL was needed after 10 s.
mesh_stop() {
  local i=$1 pid=${MESH_PID[$1]:-}
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  if wait_until 10 pid_gone "$pid"; then
    local st=0
    wait "$pid" 2>/dev/null || st=$?
    check "n$i exits on SIGTERM with status 0 (got $st)" test "$st" = 0
  else
    fail "n$i did not exit within 10 s of SIGTERM (SIGKILL sent)"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  MESH_PID[$i]=
}
# mesh_kill I: SIGKILL (a crash: no goodbye to the store, a stale socket).
mesh_kill() {
  local i=$1 pid=${MESH_PID[$1]:-}
  [[ -n $pid ]] || return 0
  kill -KILL "$pid" 2>/dev/null || true
  wait_until 10 pid_gone "$pid" || die "n$i (pid $pid) survived SIGKILL"
  wait "$pid" 2>/dev/null || true
  MESH_PID[$i]=
}

# ----------------------------------------------------------------- admin API

# mesh_code I PATH: prints the HTTP status (000: no answer); body in
# $E2E_TMP/http/nI.body.
mesh_code() {
  ip netns exec "${MESH_NS[$1]}" curl -s -m 5 -o "$E2E_TMP/http/n$1.body" \
    -w '%{http_code}' "http://$MESH_ADMIN$2" 2>/dev/null || true
}
mesh_body() { cat "$E2E_TMP/http/n$1.body"; }

# mesh_view I: GET /mesh into $E2E_TMP/http/nI.mesh.json; false unless 200.
mesh_view() {
  local code
  code=$(ip netns exec "${MESH_NS[$1]}" curl -s -m 5 -o "$E2E_TMP/http/n$1.mesh.json" \
    -w '%{http_code}' "http://$MESH_ADMIN/mesh" 2>/dev/null) || true
  [[ $code == 200 ]] || {
    WHY="n$1: GET /mesh answered $code"
    return 1
  }
}
# mj I EXPR: EXPR (Python, `d` = the last /mesh of node I); prints it.
mj() { python3 "$E2E_DIR/mesh_json.py" "$2" "$E2E_TMP/http/n$1.mesh.json"; }

# mesh_metric I NAME: the value of an unlabelled metric (empty if absent).
mesh_metric() {
  ip netns exec "${MESH_NS[$1]}" curl -s -m 5 "http://$MESH_ADMIN/metrics" 2>/dev/null |
    awk -v n="$2" '$1 == n && !f {print $2; f = 1}' # reads all: no SIGPIPE to curl
}

# mesh_own_addr I: node I's own tunnel IPv4 address per its /mesh.
mesh_own_addr() {
  mesh_view "$1" || return 1
  mj "$1" '[strip(a) for a in d["addresses"] if ":" not in str(a)][:1]'
}
# mesh_own_addr6 I: node I's own tunnel IPv6 address per its /mesh.
mesh_own_addr6() {
  mesh_view "$1" || return 1
  mj "$1" '[strip(a) for a in d["addresses"] if ":" in str(a)][:1]'
}
mesh_pub() { wg_in "${MESH_NS[$1]}" show "${MESH_IF[$1]}" public-key; }

# --------------------------------------------------------------- conditions

# members_are I "J K ...": node I's /mesh lists exactly nodes J K ... (by
# name) as members.
members_are() {
  local i=$1 want got j
  want=$(for j in $2; do echo "${MESH_NAME[$j]}"; done | sort | tr '\n' ' ')
  mesh_view "$i" || return 1
  got=$(mj "$i" 'sorted(m["name"] for m in d["members"])' | tr '\n' ' ')
  [[ $got == "$want" ]] || {
    WHY="n$i lists members [${got% }], want [${want% }]"
    return 1
  }
}
# all_members_are "I J ...": each listed node lists all the others.
all_members_are() {
  local i j others
  for i in $1; do
    others=
    for j in $1; do [[ $j == "$i" ]] || others+="$j "; done
    members_are "$i" "$others" || return 1
  done
}
# handshakes_with_all I: every member in node I's /mesh has a handshake age.
handshakes_with_all() {
  local missing
  mesh_view "$1" || return 1
  missing=$(mj "$1" '[m["name"] for m in d["members"] if m.get("handshake_age_seconds") is None]' | tr '\n' ' ')
  [[ -z $missing ]] || {
    WHY="n$1 has no handshake with: $missing"
    return 1
  }
}
all_handshakes() {
  local i
  for i in $1; do handshakes_with_all "$i" || return 1; done
}
# wg_peer_count_is I N: `wg show IF peers` has N lines.
wg_peer_count_is() {
  local n
  n=$(wg_in "${MESH_NS[$1]}" show "${MESH_IF[$1]}" peers | grep -c . || true)
  [[ $n == "$2" ]] || {
    WHY="wg show ${MESH_IF[$1]} (n$1) has $n peers, want $2"
    return 1
  }
}
# wg_has_peer I PUBKEY / wg_lacks_peer I PUBKEY
wg_has_peer() {
  wg_in "${MESH_NS[$1]}" show "${MESH_IF[$1]}" peers | grep -qxF "$2" || {
    WHY="n$1 has no peer $2"
    return 1
  }
}
wg_lacks_peer() {
  ! wg_in "${MESH_NS[$1]}" show "${MESH_IF[$1]}" peers | grep -qxF "$2" || {
    WHY="n$1 still has peer $2"
    return 1
  }
}
# code_is I PATH CODE
code_is() {
  local got
  got=$(mesh_code "$1" "$2")
  [[ $got == "$3" ]] || {
    WHY="n$1 $2 answered $got, want $3: $(head -c 300 "$E2E_TMP/http/n$1.body" 2>/dev/null | tr '\n' ' ')"
    return 1
  }
}
# all_of CMD "I J ...": CMD I holds for each node.
all_of() {
  local i
  for i in $2; do "$1" "$i" || return 1; done
}
# in_net ADDR CIDR
in_net() {
  python3 -c 'import ipaddress, sys; sys.exit(0 if ipaddress.ip_address(sys.argv[1]) in ipaddress.ip_network(sys.argv[2]) else 1)' "$1" "$2" || {
    WHY="$1 is not in $2"
    return 1
  }
}
# all_code_is "I J ..." PATH CODE
all_code_is() {
  local i
  for i in $1; do code_is "$i" "$2" "$3" || return 1; done
}
# all_metric_is "I J ..." NAME VALUE
all_metric_is() {
  local i
  for i in $1; do metric_is "$i" "$2" "$3" || return 1; done
}
# metric_is I NAME VALUE (numeric comparison)
metric_is() {
  local v
  v=$(mesh_metric "$1" "$2")
  [[ -n $v ]] && python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) == float(sys.argv[2]) else 1)' "$v" "$3" || {
    WHY="n$1 $2 = '${v}', want $3"
    return 1
  }
}
metric_above() { # I NAME VALUE: strictly greater
  local v
  v=$(mesh_metric "$1" "$2")
  [[ -n $v ]] && python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)' "$v" "$3" || {
    WHY="n$1 $2 = '${v}', want > $3"
    return 1
  }
}

# mesh_addrs "I J ...": MESH_ADDR[I] from each node's /mesh (dies if absent).
mesh_addrs() {
  local i a
  for i in $1; do
    a=$(mesh_own_addr "$i") || true
    [[ -n $a ]] || die "n$i reports no tunnel IPv4 address in /mesh: $(head -c 300 "$E2E_TMP/http/n$i.mesh.json" 2>/dev/null)"
    MESH_ADDR[$i]=$a
  done
}

# ping_pairs "I J ..." [ADDR_ARRAY]: every ordered pair pings the other's
# tunnel address (MESH_ADDR, or the named associative array), all at once;
# WHY lists the pairs that failed.
ping_pairs() {
  local i j pids=() bad='' f
  local -n addr=${2:-MESH_ADDR}
  f=$E2E_TMP/pairs.$RANDOM
  mkdir -p "$f"
  for i in $1; do
    for j in $1; do
      [[ $i != "$j" ]] || continue
      (ip netns exec "${MESH_NS[$i]}" ping -n -q -c 2 -i 0.2 -w "${PING_WAIT:-10}" "${addr[$j]}" \
        >"$f/$i-$j" 2>&1 || touch "$f/$i-$j.bad") &
      pids+=($!)
    done
  done
  wait "${pids[@]}" 2>/dev/null || true
  for i in $1; do
    for j in $1; do
      [[ -e $f/$i-$j.bad ]] && bad+="n$i->n$j(${addr[$j]}) "
    done
  done
  cat "$f"/* >>"$E2E_TMP/ping.log" 2>/dev/null || true
  rm -rf "$f"
  [[ -z $bad ]] || {
    WHY="no reply: $bad"
    return 1
  }
}

# A background ping from node I to DST every 0.2 s, to tell afterwards
# whether anything was lost while something else happened.
# ping_watch_start NAME I DST / ping_watch_stop NAME (prints "sent received")
declare -A MESH_WATCH=()
ping_watch_start() {
  local name=$1 i=$2 dst=$3
  ip netns exec "${MESH_NS[$i]}" ping -n -i 0.2 -W 1 "$dst" >"$E2E_TMP/watch-$name.log" 2>&1 &
  MESH_WATCH[$name]=$!
  E2E_PIDS+=("$!")
}
ping_watch_stop() {
  local pid=${MESH_WATCH[$1]}
  kill -INT "$pid" 2>/dev/null || true
  wait_until 5 pid_gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  awk '/packets transmitted/ {print $1, $4}' "$E2E_TMP/watch-$1.log"
}

# handshake_times I: "pubkey unix-time" lines of `wg show IF latest-handshakes`.
handshake_times() { wg_in "${MESH_NS[$1]}" show "${MESH_IF[$1]}" latest-handshakes | sort; }
rx_bytes() { wg_in "${MESH_NS[$1]}" show "${MESH_IF[$1]}" transfer | sort; }

# ----------------------------------------------------------------- failures

# On failure: lib.sh's state dump, then every node's /mesh and the store.
eval "$(declare -f e2e_dump_state | sed '1s/e2e_dump_state/e2e_dump_state_lib/')"
e2e_dump_state() {
  e2e_dump_state_lib
  local i
  for i in "${!MESH_PID[@]}"; do
    [[ -n ${MESH_NS[$i]:-} && -e /run/netns/${MESH_NS[$i]} ]] || continue
    echo "## n$i /mesh"
    ip netns exec "${MESH_NS[$i]}" curl -s -m 3 "http://$MESH_ADMIN/mesh" 2>&1 | head -c 1500 | sed 's/^/   /'
    echo
  done
  if [[ -n $MESH_ETCD_PID ]] && pid_alive "$MESH_ETCD_PID"; then
    echo "## etcd $MESH_PREFIX/"
    ectl get "$MESH_PREFIX/" --prefix 2>&1 | head -n 80 | cut -c1-300 | sed 's/^/   /'
  fi
}
