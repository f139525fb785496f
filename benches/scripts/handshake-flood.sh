#!/usr/bin/env bash
# Established peers under a handshake flood: two namespaces joined by a veth,
# a WireGuard tunnel between them, and from the second namespace a flood of
# MAC1-valid handshake initiations (examples/flood.rs) at the first one's
# listen port from many source addresses, while the established peer pings
# through the tunnel at 100/s.
#
#   handshake-flood.sh [--seconds N] [--sources K] [--rate R] [--generator-cpu C] IMPL...
#
# IMPL is a command as in ../shared/bench/tunnel-bench.sh: given an
# interface name as its last argument it creates that TUN interface, serves
# the UAPI socket at /var/run/wireguard/<name>.sock and stays in the
# foreground (`wireguard-go -f`, `boringtun-cli -f --disable-drop-privileges`,
# `target/release/phantommesh`). Run several IMPLs in one call: only ratios
# from the same run mean much on a shared machine.
#
# --rate 0 (the default) floods as fast as the generator's one core can send.
# --generator-cpu C keeps the generator on CPU C (taskset), as an attacker
# on another machine would be: on a 2-vCPU machine, leaving the scheduler
# to place it (the default) lets the generator, the pinger and both
# daemons trade CPUs, and the ping's p99 then swings between calls (see
# the README's Performance section).
# Prints one line per IMPL: the flood rate achieved (initiations/s), cookie
# replies the flooded side sent back, the ping's loss and p50/p99 RTT.
# Needs root, iproute2, wireguard-tools (wg), iputils-ping, python3, and the
# generator: FLOOD_BIN, else target/release/examples/flood (built if absent).
# Only addresses inside the namespaces it creates are used.
set -euo pipefail
SECS=10; SOURCES=1000; RATE=0; PIN=()
while [[ $# -gt 0 ]]; do case $1 in
  --seconds) SECS=$2; shift 2;; --sources) SOURCES=$2; shift 2;;
  --rate) RATE=$2; shift 2;; --generator-cpu) PIN=(taskset -c "$2"); shift 2;;
  *) break;; esac; done
[[ $# -ge 1 ]] || { echo "usage: $0 [--seconds N] [--sources K] [--rate R] [--generator-cpu C] IMPL..." >&2; exit 2; }
(( SOURCES >= 1 && SOURCES <= 60000 )) || { echo "--sources must be 1..60000" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FLOOD=${FLOOD_BIN:-$ROOT/target/release/examples/flood}
if [[ ! -x $FLOOD ]]; then
  (cd "$ROOT" && cargo build --release --example flood) >&2
fi
TAG=hf$$
N1=${TAG}a; N2=${TAG}b
LOGDIR=${FLOOD_BENCH_LOGS:-/tmp/handshake-flood.$$}; mkdir -p "$LOGDIR"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [[ -n $p ]] && kill "$p" 2>/dev/null || true; done
  sleep 0.3
  ip netns del $N1 2>/dev/null || true; ip netns del $N2 2>/dev/null || true
  rm -f /var/run/wireguard/${TAG}1.sock /var/run/wireguard/${TAG}2.sock
}
trap cleanup EXIT
# Flood sources are 10.233.0.1 upwards, on the generator's veth; the flooded
# side routes them via the generator's veth address, as if through a router.
# Routed, not on-link: on-link, its cookie replies would make one neighbour
# entry per source, and the kernel's IPv4 neighbour table is shared by every
# namespace (gc_thresh3 1024): it overflows, and unrelated sends (here the
# ping, through the TUN) fail with ENOBUFS.
setup_ns() {
  ip netns add $N1; ip netns add $N2
  ip link add v1 netns $N1 type veth peer name v2 netns $N2
  ip -n $N1 addr add 10.231.0.1/24 dev v1; ip -n $N2 addr add 10.231.0.2/24 dev v2
  for n in $N1 $N2; do ip -n $n link set lo up; done
  ip -n $N1 link set v1 up; ip -n $N2 link set v2 up
  ip -n $N1 route add 10.233.0.0/16 via 10.231.0.2
  python3 - "$SOURCES" <<'EOF' | ip -n $N2 -batch -
import sys
for i in range(1, int(sys.argv[1]) + 1):
    print(f"addr add 10.233.{i >> 8}.{i & 255}/32 dev v2")
EOF
}
# Loss % and p50/p99 of `ping` output with one "time=X ms" line per reply.
ping_stats() { # $1 file, $2 sent
  python3 - "$1" "$2" <<'EOF'
import re, sys
t = sorted(float(m) for m in re.findall(r"time=([0-9.]+) ms", open(sys.argv[1]).read()))
sent = int(sys.argv[2])
q = lambda p: f"{t[min(len(t) - 1, int(p * len(t)))]:.2f}" if t else "NA"
print(f"{100 * (sent - len(t)) / sent:.1f} {q(0.5)} {q(0.99)}")
EOF
}
i=0
for IMPL in "$@"; do
  i=$((i + 1))
  setup_ns
  mkdir -p /var/run/wireguard
  ip netns exec $N1 env WG_PROCESS_FOREGROUND=1 $IMPL ${TAG}1 >"$LOGDIR/$i.a.log" 2>&1 & PIDS+=($!)
  ip netns exec $N2 env WG_PROCESS_FOREGROUND=1 $IMPL ${TAG}2 >"$LOGDIR/$i.b.log" 2>&1 & PIDS+=($!)
  for _ in $(seq 100); do [[ -S /var/run/wireguard/${TAG}1.sock && -S /var/run/wireguard/${TAG}2.sock ]] && break; sleep 0.1; done
  k1=$(wg genkey); k2=$(wg genkey)
  ip netns exec $N1 wg set ${TAG}1 private-key <(echo "$k1") listen-port 51821 \
    peer "$(echo "$k2" | wg pubkey)" endpoint 10.231.0.2:51822 allowed-ips 10.232.0.2/32
  ip netns exec $N2 wg set ${TAG}2 private-key <(echo "$k2") listen-port 51822 \
    peer "$(echo "$k1" | wg pubkey)" endpoint 10.231.0.1:51821 allowed-ips 10.232.0.1/32
  ip -n $N1 addr add 10.232.0.1/24 dev ${TAG}1; ip -n $N2 addr add 10.232.0.2/24 dev ${TAG}2
  ip -n $N1 link set ${TAG}1 mtu 1420 up; ip -n $N2 link set ${TAG}2 mtu 1420 up
  ip netns exec $N2 ping -q -c 3 -W 2 10.232.0.1 >/dev/null 2>&1 || true
  count=$((SECS * 100))
  ip netns exec $N2 ping -c $count -i 0.01 -W 1 10.232.0.1 >"$LOGDIR/$i.ping" 2>&1 &
  pp=$!
  flood=$(ip netns exec $N2 "${PIN[@]}" "$FLOOD" --target 10.231.0.1:51821 --peer-key "$(echo "$k1" | wg pubkey)" \
    --src-base 10.233.0.0 --sources "$SOURCES" --rate "$RATE" --seconds "$SECS" 2>"$LOGDIR/$i.flood.err" || true)
  wait $pp || true
  echo "$flood" >"$LOGDIR/$i.flood"
  rate=$(sed -n 's/.* rate=\([0-9]*\).*/\1/p' <<<"$flood"); cookies=$(sed -n 's/.*cookie_replies=\([0-9]*\).*/\1/p' <<<"$flood")
  read -r loss p50 p99 < <(ping_stats "$LOGDIR/$i.ping" "$count")
  printf '%-52s flood %7s/s  cookie replies %7s  ping loss %5s %%  p50 %s ms  p99 %s ms\n' \
    "$IMPL" "${rate:-NA}" "${cookies:-NA}" "$loss" "$p50" "$p99"
  cleanup; PIDS=()
done
