# shellcheck shell=bash
# Shared helpers for the privileged end-to-end scenarios (tests/e2e/NN-*.sh).
#
# Every scenario builds its own network namespaces (named pm-e2e-<pid>-<x>),
# joins them with veth pairs, starts WireGuard implementations inside them
# and drives them with the real wg / wg-quick / ping / iperf3. Nothing is
# configured in the caller's network namespace. The EXIT trap kills what the
# scenario started (by PID, and only processes inside its own namespaces),
# deletes the namespaces and removes the scenario's UAPI sockets, also when
# the scenario fails or is interrupted.
#
# Addressing plan (link IDX joins two namespaces, HOST numbers a node):
#   outer IPv4  10.200.IDX.HOST/24        outer IPv6  fd00:200:0:IDX::HOST/64
#   inner IPv4  10.201.0.HOST/24          inner IPv6  fd00:201::HOST/64
# (link 0 is 10.200.0.0/24 and fd00:200::/64.)
#
# Implementations are wireguard-go-style command lines that take the
# interface name as their last argument:
#   IMPL    the implementation under test, as run by wg-quick (no -f);
#           default: target/release/phantommesh (honours CARGO_TARGET_DIR)
#   IMPL_A  side A of two-party scenarios        (default "$IMPL -f")
#   IMPL_B  side B of two-party scenarios        (default "$IMPL -f")
#   WGGO    reference wireguard-go               (default "wireguard-go -f")
#   BORINGTUN reference boringtun                (default "boringtun-cli -f --disable-drop-privileges")
# Command lines are split on whitespace (paths must not contain spaces).

set -Eeuo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$E2E_DIR/../.." && pwd)
E2E_NAME=$(basename "$0" .sh)

e2e_target_dir() {
  local t=${CARGO_TARGET_DIR:-target}
  [[ $t == /* ]] || t=$REPO_ROOT/$t
  printf '%s\n' "$t"
}

# Whether the caller chose the pair explicitly (interop then tests only it).
E2E_PAIR_EXPLICIT=0
[[ -n ${IMPL_A:-} || -n ${IMPL_B:-} ]] && E2E_PAIR_EXPLICIT=1
PM=${PM:-$(e2e_target_dir)/release/phantommesh}
IMPL=${IMPL:-$PM}
IMPL_A=${IMPL_A:-$IMPL -f}
IMPL_B=${IMPL_B:-$IMPL -f}
WGGO=${WGGO:-wireguard-go -f}
BORINGTUN=${BORINGTUN:-boringtun-cli -f --disable-drop-privileges}
E2E_LOG_LEVEL=${E2E_LOG_LEVEL:-verbose}
E2E_MIN_MBPS=${E2E_MIN_MBPS:-5}

E2E_TAG=pm-e2e-$$
# Interface names are global (UAPI sockets live in the shared filesystem), so
# they carry the PID too; "p" + up to 7 digits + letter + counter <= 15 chars.
E2E_IFPFX=p$$
NS_A=$E2E_TAG-a
NS_B=$E2E_TAG-b
NS_C=$E2E_TAG-c
WG_RUN_DIR=/var/run/wireguard

E2E_PASSES=0
E2E_FAILS=0
E2E_NS=()
E2E_PIDS=()
E2E_IFS=()
E2E_IFCOUNT=0
declare -A E2E_PID_OF=()
E2E_TMP=

say() { printf '[%s %(%H:%M:%S)T] %s\n' "$E2E_NAME" -1 "$*"; }
pass() {
  E2E_PASSES=$((E2E_PASSES + 1))
  printf 'PASS: %s: %s\n' "$E2E_NAME" "$*"
}
fail() {
  E2E_FAILS=$((E2E_FAILS + 1))
  printf 'FAIL: %s: %s\n' "$E2E_NAME" "$*"
}
# check DESC CMD...: records PASS/FAIL and carries on (the scenario fails at
# the end). CHECK_OK tells the caller what happened.
CHECK_OK=1
check() {
  local desc=$1
  shift
  if "$@"; then
    CHECK_OK=1
    pass "$desc"
  else
    CHECK_OK=0
    fail "$desc"
  fi
}
# require DESC CMD...: like check, but the scenario cannot go on without it.
require() {
  local desc=$1
  shift
  if "$@"; then
    pass "$desc"
  else
    die "$desc"
  fi
}
die() {
  fail "$*"
  exit 1
}

# Appends to a registry the runner (scripts/test.sh) sweeps after a scenario
# that was killed too hard to run its own trap.
e2e_register() {
  [[ -n ${E2E_REGISTRY:-} ]] || return 0
  printf '%s\n' "$*" >>"$E2E_REGISTRY"
}

e2e_on_err() {
  printf 'error: %s: line %s: command failed (status %s): %s\n' \
    "$E2E_NAME" "$1" "$2" "$3" >&2
}

# Run after every scenario, whatever happened.
e2e_exit() {
  local status=$?
  set +e
  trap - ERR
  if ((status == 77 && E2E_FAILS == 0)); then
    e2e_cleanup
    [[ -z $E2E_TMP || -n ${E2E_KEEP:-} ]] || rm -rf "$E2E_TMP"
    say "skipped"
    exit 77
  fi
  if ((status != 0 && E2E_FAILS == 0)); then
    fail "scenario aborted with status $status"
  fi
  if ((E2E_FAILS > 0)); then
    e2e_dump_state
  fi
  e2e_cleanup
  if ((E2E_FAILS > 0)) && [[ -n $E2E_TMP && -d $E2E_TMP ]]; then
    say "logs kept in $E2E_TMP"
  elif [[ -n $E2E_TMP && -d $E2E_TMP && -z ${E2E_KEEP:-} ]]; then
    rm -rf "$E2E_TMP"
  fi
  say "$E2E_PASSES checks passed, $E2E_FAILS failed"
  ((E2E_FAILS == 0)) || exit 1
  exit "$status"
}

# Netns inode of one of our namespaces, for "is this PID ours" checks.
e2e_ns_inode() { stat -L -c %i "/run/netns/$1" 2>/dev/null; }

# PIDs of processes that live in one of our namespaces (recorded ones whose
# network namespace is ours, plus anything else running inside them).
e2e_our_pids() {
  local ns p inode
  local -A ours=() seen=()
  for ns in "${E2E_NS[@]}"; do
    inode=$(e2e_ns_inode "$ns") || continue
    ours[$inode]=1
    for p in $(ip netns pids "$ns" 2>/dev/null); do seen[$p]=1; done
  done
  for p in "${E2E_PIDS[@]}"; do
    inode=$(stat -L -c %i "/proc/$p/ns/net" 2>/dev/null) || continue
    [[ -n ${ours[$inode]:-} ]] && seen[$p]=1
  done
  printf '%s\n' "${!seen[@]}"
}

e2e_cleanup() {
  local p ns ifname i pids
  pids=$(e2e_our_pids)
  for p in $pids; do kill -TERM "$p" 2>/dev/null; done
  for i in $(seq 50); do
    pids=$(e2e_our_pids)
    [[ -z $pids ]] && break
    sleep 0.1
  done
  for p in $pids; do kill -KILL "$p" 2>/dev/null; done
  # Reap our own background children so none is left as a zombie.
  for p in "${E2E_PIDS[@]}"; do wait "$p" 2>/dev/null; done
  for ns in "${E2E_NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
  for ifname in "${E2E_IFS[@]}"; do
    [[ -e $WG_RUN_DIR/$ifname.sock ]] && rm -f "$WG_RUN_DIR/$ifname.sock"
  done
  E2E_NS=()
  E2E_PIDS=()
}

e2e_dump_state() {
  local ifname f
  say "---- state at failure ----"
  for ifname in "${E2E_IFS[@]}"; do
    if [[ -S $WG_RUN_DIR/$ifname.sock ]]; then
      echo "## wg show $ifname"
      timeout 5 wg show "$ifname" 2>&1 | sed 's/^/   /'
    fi
  done
  if [[ -n $E2E_TMP ]]; then
    for f in "$E2E_TMP"/*.log; do
      [[ -s $f ]] || continue
      echo "## tail $f"
      tail -n 15 "$f" | sed 's/^/   /'
    done
  fi
  say "--------------------------"
}

# e2e_init: checks privileges and tools, sets the traps, makes the temp dir.
e2e_init() {
  trap e2e_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM HUP
  trap 'e2e_on_err $LINENO $? "$BASH_COMMAND"' ERR
  [[ $(id -u) == 0 ]] || die "must run as root (network namespaces, TUN devices)"
  local tool
  for tool in ip wg ping python3 timeout ss; do
    command -v "$tool" >/dev/null || die "missing tool: $tool (run scripts/test.sh to install)"
  done
  E2E_TMP=$(mktemp -d "${TMPDIR:-/tmp}/$E2E_TAG.XXXXXX")
  mkdir -p "$WG_RUN_DIR"
  say "IMPL_A='$IMPL_A' IMPL_B='$IMPL_B' tmp=$E2E_TMP"
}

# impl_available "CMD ARGS": is the command's executable there?
impl_available() {
  local argv
  read -ra argv <<<"$1"
  command -v "${argv[0]}" >/dev/null
}
require_impl() {
  impl_available "$1" || die "implementation not found: '$1'"
}

# require_phantommesh: for scenarios of phantommesh's own features. Sets
# PM_ARGV to IMPL split into words, and skips the scenario (exit 77, which
# the runner reports) when IMPL is another implementation.
require_phantommesh() {
  local version
  read -ra PM_ARGV <<<"$IMPL"
  if ! version=$("${PM_ARGV[@]}" --version 2>&1) || [[ $version != *phantommesh* ]]; then
    say "SKIP: IMPL '$IMPL' is not phantommesh (--version said: ${version%%$'\n'*})"
    exit 77
  fi
}

# http_req NS URL [admin_http.py args...]: one HTTP request made from
# namespace NS. Sets CODE (the status; empty when there was no answer) and
# BODY and HEAD (files that keep the answer, numbered in HTTP_ANSWERS so a
# scenario can scan every answer afterwards), and logs the request to
# $E2E_TMP/http.log with HTTP_REDACT (a secret such as a token), when set,
# written as <redacted>.
HTTP_REQN=0
http_req() {
  local ns=$1 url=$2 args
  shift 2
  HTTP_REQN=$((HTTP_REQN + 1))
  HTTP_ANSWERS=${HTTP_ANSWERS:-$E2E_TMP/answers}
  mkdir -p "$HTTP_ANSWERS"
  BODY=$HTTP_ANSWERS/$HTTP_REQN.body
  HEAD=$HTTP_ANSWERS/$HTTP_REQN.head
  : >"$BODY"
  : >"$HEAD"
  CODE=$(ip netns exec "$ns" python3 "$E2E_DIR/admin_http.py" "$url" \
    --out "$BODY" --head "$HEAD" "$@" 2>>"$E2E_TMP/http.log") || true
  args=$*
  [[ -n ${HTTP_REDACT:-} ]] && args=${args//"$HTTP_REDACT"/<redacted>}
  printf '%s %s %s -> %s\n' "${ns##*-}" "$url" "$args" "$CODE" >>"$E2E_TMP/http.log"
}

# ---------------------------------------------------------------- namespaces

ns_create() {
  local ns
  for ns in "$@"; do
    ip netns add "$ns"
    E2E_NS+=("$ns")
    e2e_register "netns $ns"
    ip -n "$ns" link set lo up
  done
}

outer4() { printf '10.200.%s.%s' "$1" "$2"; }
outer6() {
  if (($1 == 0)); then printf 'fd00:200::%s' "$2"; else printf 'fd00:200:0:%s::%s' "$1" "$2"; fi
}
inner4() { printf '10.201.0.%s' "$1"; }
inner6() { printf 'fd00:201::%s' "$1"; }

# ns_link NS1 HOST1 NS2 HOST2 IDX: a veth pair "oIDX" in both namespaces.
ns_link() {
  local n1=$1 h1=$2 n2=$3 h2=$4 idx=$5
  ip -n "$n1" link add "o$idx" type veth peer name "o$idx" netns "$n2"
  local ns host
  for ns in "$n1" "$n2"; do
    host=$h1
    [[ $ns == "$n1" ]] || host=$h2
    ip -n "$ns" addr add "$(outer4 "$idx" "$host")/24" dev "o$idx"
    # nodad: the address is usable at once instead of after DAD (~2 s).
    ip -n "$ns" addr add "$(outer6 "$idx" "$host")/64" dev "o$idx" nodad
    ip -n "$ns" link set "o$idx" up
  done
}

# ------------------------------------------------------------ implementations

# new_if VAR [LETTER]: a fresh, globally unique interface name in VAR.
new_if() {
  E2E_IFCOUNT=$((E2E_IFCOUNT + 1))
  local name=$E2E_IFPFX${2:-i}$E2E_IFCOUNT
  ((${#name} <= 15)) || die "interface name too long: $name"
  E2E_IFS+=("$name")
  e2e_register "sock $WG_RUN_DIR/$name.sock"
  printf -v "$1" '%s' "$name"
}

sock_of() { printf '%s/%s.sock' "$WG_RUN_DIR" "$1"; }

# wait_until SECONDS CMD...: polls CMD every 0.1 s.
wait_until() {
  local deadline=$((SECONDS + $1))
  shift
  while ! "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

pid_alive() { kill -0 "$1" 2>/dev/null && [[ $(ps -o stat= -p "$1" 2>/dev/null) != Z* ]]; }
pid_gone() { ! pid_alive "$1"; }
sock_ready() { [[ -S $(sock_of "$1") ]]; }
sock_gone() { [[ ! -e $(sock_of "$1") ]]; }
link_exists() { ip -n "$1" link show dev "$2" >/dev/null 2>&1; }
link_gone() { ! link_exists "$@"; }

# start_impl NS IFNAME "CMD": runs CMD IFNAME in NS (CMD should stay in the
# foreground), records its PID in E2E_PID_OF[IFNAME], waits for the socket.
start_impl() {
  local ns=$1 ifname=$2 cmd=$3 argv pid log
  read -ra argv <<<"$cmd"
  log=$E2E_TMP/$ifname.log
  ip netns exec "$ns" env LOG_LEVEL="$E2E_LOG_LEVEL" "${argv[@]}" "$ifname" >"$log" 2>&1 &
  pid=$!
  E2E_PIDS+=("$pid")
  E2E_PID_OF[$ifname]=$pid
  e2e_register "pid $pid"
  local deadline=$((SECONDS + 15))
  until sock_ready "$ifname" && link_exists "$ns" "$ifname"; do
    if ! pid_alive "$pid"; then
      tail -n 20 "$log" >&2 || true
      die "'$cmd $ifname' exited before its UAPI socket appeared"
    fi
    ((SECONDS < deadline)) || die "'$cmd $ifname': no UAPI socket after 15 s"
    sleep 0.05
  done
}

# ---------------------------------------------------------------------- keys

# keygen NAME...: $E2E_TMP/NAME.key (private) and NAME.pub.
keygen() {
  local n
  for n in "$@"; do
    (umask 077 && wg genkey >"$E2E_TMP/$n.key")
    wg pubkey <"$E2E_TMP/$n.key" >"$E2E_TMP/$n.pub"
  done
}
keyfile() { printf '%s/%s.key' "$E2E_TMP" "$1"; }
pub() { cat "$E2E_TMP/$1.pub"; }

# wg_in NS ARGS...: wg inside NS; a daemon that hangs on its socket fails the
# call after E2E_WG_TIMEOUT seconds instead of stalling the scenario.
wg_in() {
  local ns=$1
  shift
  timeout "${E2E_WG_TIMEOUT:-10}" ip netns exec "$ns" wg "$@"
}

# node_up NS IFNAME KEYNAME PORT HOST: key, port, inner addresses, link up.
node_up() {
  local ns=$1 ifname=$2 key=$3 port=$4 host=$5
  wg_in "$ns" set "$ifname" private-key "$(keyfile "$key")" listen-port "$port"
  ip -n "$ns" addr add "$(inner4 "$host")/24" dev "$ifname"
  ip -n "$ns" addr add "$(inner6 "$host")/64" dev "$ifname" nodad
  ip -n "$ns" link set "$ifname" mtu 1420 up
}

# peer_add NS IFNAME PEERKEYNAME ALLOWED [ENDPOINT]
peer_add() {
  local ns=$1 ifname=$2 peer=$3 allowed=$4 ep=${5:-}
  local args=(peer "$(pub "$peer")" allowed-ips "$allowed")
  [[ -z $ep ]] || args+=(endpoint "$ep")
  wg_in "$ns" set "$ifname" "${args[@]}"
}

# ------------------------------------------------------------------- traffic

# ping_ok NS DST [COUNT] [ping args...]: COUNT replies within PING_WAIT
# seconds (default 10: room for one lost handshake initiation, retried 5 s on).
ping_ok() {
  local ns=$1 dst=$2 count=${3:-3}
  shift $(($# < 3 ? $# : 3))
  ip netns exec "$ns" ping -n -q -c "$count" -i 0.2 -w "${PING_WAIT:-10}" "$@" "$dst" \
    >>"$E2E_TMP/ping.log" 2>&1
}
# ping_none NS DST [ping args...]: no reply at all within 3 s.
ping_none() {
  local ns=$1 dst=$2
  shift 2
  ! ip netns exec "$ns" ping -n -q -c 5 -i 0.2 -w 3 "$@" "$dst" >>"$E2E_TMP/ping.log" 2>&1
}

# iperf_tcp CLIENT_NS SERVER_NS SERVER_ADDR SECONDS [iperf3 client args...]
# Passes when iperf3 reports no error and at least E2E_MIN_MBPS Mbit/s
# received. Prints the rate.
iperf_tcp() {
  local cns=$1 sns=$2 addr=$3 secs=$4 port=5201 out spid
  shift 4
  out=$E2E_TMP/iperf-$RANDOM.json
  ip netns exec "$sns" iperf3 -s -1 -B "$addr" -p "$port" >>"$E2E_TMP/iperf-server.log" 2>&1 &
  spid=$!
  E2E_PIDS+=("$spid")
  wait_until 5 iperf_listening "$sns" "$port" || {
    echo "iperf3 server did not start" >&2
    return 1
  }
  ip netns exec "$cns" timeout $((secs + 20)) iperf3 -c "$addr" -p "$port" -t "$secs" -J "$@" >"$out" 2>&1 || true
  wait "$spid" 2>/dev/null || true
  python3 - "$out" "$E2E_MIN_MBPS" <<'EOF'
import json, sys
path, minimum = sys.argv[1], float(sys.argv[2])
try:
    d = json.load(open(path))
except Exception as e:
    print(f"iperf3 output unreadable: {e}"); sys.exit(1)
if d.get("error"):
    print(f"iperf3 error: {d['error']}"); sys.exit(1)
mbps = d["end"]["sum_received"]["bits_per_second"] / 1e6
print(f"{mbps:.1f} Mbit/s")
sys.exit(0 if mbps >= minimum else 1)
EOF
}
udp_bound() { [[ -n $(ip netns exec "$1" ss -Hlun "sport = :$2" 2>/dev/null) ]]; }
iperf_listening() { [[ -n $(ip netns exec "$1" ss -Hltn "sport = :$2" 2>/dev/null) ]]; }

# uapi IFNAME: sends stdin verbatim to the UAPI socket, prints the reply.
uapi() { python3 "$E2E_DIR/uapi_client.py" "$(sock_of "$1")"; }

# stop_impl IFNAME: SIGTERM to the recorded process, SIGKILL after 5 s.
# Returns 1 when SIGKILL was needed.
stop_impl() {
  local pid=${E2E_PID_OF[$1]:-}
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  if wait_until 5 pid_gone "$pid"; then
    wait "$pid" 2>/dev/null || true
    return 0
  fi
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  return 1
}

# handshake_recent NS IFNAME: every peer's latest handshake is a Unix time
# within the last 2 minutes (not 0, not an age).
handshake_recent() {
  local now t ok=1
  now=$(date +%s)
  while read -r _ t; do
    ((t > now - 120 && t <= now + 5)) || ok=0
  done < <(wg_in "$1" show "$2" latest-handshakes)
  ((ok))
}

# endpoint_is NS IFNAME PEERKEYNAME ENDPOINT
endpoint_is() {
  local got
  got=$(wg_in "$1" show "$2" endpoints | awk -v k="$(pub "$3")" '$1 == k {print $2}')
  [[ $got == "$4" ]] || {
    echo "endpoint of $3 on $2: got '$got', want '$4'" >&2
    return 1
  }
}

# transfer NS IFNAME PEERKEYNAME rx|tx: the peer's byte counter.
transfer() {
  wg_in "$1" show "$2" transfer |
    awk -v k="$(pub "$3")" -v d="$4" '$1 == k {print (d == "rx" ? $2 : $3)}'
}

# two_node_tunnel: the common two-party set-up. Namespaces A and B joined by
# link 0, IMPL_A and IMPL_B started as interfaces IFA and IFB (set as
# globals), listening on 51821 / 51822, each the other's peer with the
# other's inner IPv4 /32 and IPv6 /128 and outer IPv4 endpoint.
two_node_tunnel() {
  require_impl "$IMPL_A"
  require_impl "$IMPL_B"
  ns_create "$NS_A" "$NS_B"
  ns_link "$NS_A" 1 "$NS_B" 2 0
  keygen a b
  new_if IFA a
  new_if IFB b
  start_impl "$NS_A" "$IFA" "$IMPL_A"
  start_impl "$NS_B" "$IFB" "$IMPL_B"
  node_up "$NS_A" "$IFA" a 51821 1
  node_up "$NS_B" "$IFB" b 51822 2
  peer_add "$NS_A" "$IFA" b "$(inner4 2)/32,$(inner6 2)/128" "$(outer4 0 2):51822"
  peer_add "$NS_B" "$IFB" a "$(inner4 1)/32,$(inner6 1)/128" "$(outer4 0 1):51821"
}
