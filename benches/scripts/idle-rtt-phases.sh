#!/usr/bin/env bash
# Idle ping RTT through a tunnel, taken apart hop by hop with kernel
# tracepoints (syscalls and scheduler events of every process), for each
# implementation in turn. Prints, per IMPL, the median time of each phase of
# a ping's round trip:
#
#   ping sendto -> A wakes -> A sends -> B wakes -> B writes TUN -> B sends
#   the reply -> A wakes -> A writes TUN -> ping has its reply
#
# and the per-ping RTT distribution without tracing (the tracing itself adds
# about 15 % to every syscall). A and B are the two tunnel ends, each in its
# own network namespace joined by a veth pair.
#
#   benches/scripts/idle-rtt-phases.sh [-n PINGS] IMPL...
#   e.g. idle-rtt-phases.sh "boringtun-cli -f --disable-drop-privileges" "target/release/phantommesh -f"
#
# IMPL takes wireguard-go's command line. Needs root, tracefs, iproute2,
# wireguard-tools, iputils-ping, python3. Traffic stays inside the two
# namespaces it creates (10.231.0.0/24 underlay, 10.232.0.0/24 tunnel).
set -euo pipefail
PINGS=200
[[ ${1:-} == -n ]] && { PINGS=$2; shift 2; }
[[ $# -ge 1 ]] || { echo "usage: $0 [-n PINGS] IMPL..." >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "$0: needs root (namespaces, tracefs)" >&2; exit 1; }
T=/sys/kernel/tracing
[[ -w $T/set_event ]] || mount -t tracefs nodev $T 2>/dev/null || true
[[ -w $T/set_event ]] || { echo "$0: tracefs is not available at $T" >&2; exit 1; }
TAG=pmph$$
N1=${TAG}a; N2=${TAG}b
OUT=$(mktemp -d)
PIDS=()
stop_trace() { echo 0 >$T/tracing_on; echo >$T/set_event; echo >$T/trace; }
cleanup() {
  stop_trace 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  ip netns del $N1 2>/dev/null || true; ip netns del $N2 2>/dev/null || true
  rm -rf "$OUT"
}
trap cleanup EXIT

up() {
  ip netns add $N1; ip netns add $N2
  ip link add ${TAG}v1 netns $N1 type veth peer name ${TAG}v2 netns $N2
  ip -n $N1 addr add 10.231.0.1/24 dev ${TAG}v1; ip -n $N2 addr add 10.231.0.2/24 dev ${TAG}v2
  ip -n $N1 link set ${TAG}v1 up; ip -n $N2 link set ${TAG}v2 up
  mkdir -p /var/run/wireguard
  ip netns exec $N1 env WG_PROCESS_FOREGROUND=1 PHANTOMMESH_ADMIN_LISTEN=off $1 ${TAG}1 >"$OUT/a.log" 2>&1 &
  PIDS+=($!); A=$!
  ip netns exec $N2 env WG_PROCESS_FOREGROUND=1 PHANTOMMESH_ADMIN_LISTEN=off $1 ${TAG}2 >"$OUT/b.log" 2>&1 &
  PIDS+=($!); B=$!
  for _ in $(seq 100); do
    [[ -S /var/run/wireguard/${TAG}1.sock && -S /var/run/wireguard/${TAG}2.sock ]] && break; sleep 0.1
  done
  local k1 k2; k1=$(wg genkey); k2=$(wg genkey)
  ip netns exec $N1 wg set ${TAG}1 private-key <(echo "$k1") listen-port 51821 \
    peer "$(echo "$k2" | wg pubkey)" endpoint 10.231.0.2:51822 allowed-ips 10.232.0.2/32
  ip netns exec $N2 wg set ${TAG}2 private-key <(echo "$k2") listen-port 51822 \
    peer "$(echo "$k1" | wg pubkey)" endpoint 10.231.0.1:51821 allowed-ips 10.232.0.1/32
  ip -n $N1 addr add 10.232.0.1/24 dev ${TAG}1; ip -n $N2 addr add 10.232.0.2/24 dev ${TAG}2
  ip -n $N1 link set ${TAG}1 mtu 1420 up; ip -n $N2 link set ${TAG}2 mtu 1420 up
  ip netns exec $N1 ping -q -c 3 -W 2 10.232.0.2 >/dev/null 2>&1 || true
}

down() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3; PIDS=()
  ip netns del $N1; ip netns del $N2
}

for IMPL in "$@"; do
  up "$IMPL"
  ip netns exec $N1 ping -c "$PINGS" -i 0.01 10.232.0.2 | sed -n 's/.*time=\([0-9.]*\) ms/\1/p' >"$OUT/rtt"
  ls /proc/$A/task >"$OUT/tids.a"; ls /proc/$B/task >"$OUT/tids.b"
  echo 0 >$T/tracing_on; echo >$T/trace; echo 4096 >$T/buffer_size_kb
  echo 'raw_syscalls:sys_enter raw_syscalls:sys_exit sched:sched_wakeup sched:sched_switch' >$T/set_event
  echo 1 >$T/tracing_on
  ip netns exec $N1 ping -q -c "$PINGS" -i 0.01 10.232.0.2 >/dev/null
  echo 0 >$T/tracing_on
  cat $T/trace >"$OUT/trace"
  stop_trace
  down
  echo "== $IMPL"
  python3 "$(dirname "$0")/idle_rtt_phases.py" "$OUT/trace" "$OUT/tids.a" "$OUT/tids.b" "$OUT/rtt"
done
