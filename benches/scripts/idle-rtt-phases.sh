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
OUT=$(mktemp -d)
TUNNEL_LOGS=$OUT
# shellcheck source=benches/scripts/tunnel-lib.sh
source "$(dirname "$0")/tunnel-lib.sh"
stop_trace() { echo 0 >$T/tracing_on; echo >$T/set_event; echo >$T/trace; }
cleanup() {
  stop_trace 2>/dev/null || true
  tunnel_down
  rm -rf "$OUT"
}
trap cleanup EXIT

for IMPL in "$@"; do
  tunnel_up "$IMPL" PHANTOMMESH_ADMIN_LISTEN=off
  ip netns exec $N1 ping -c "$PINGS" -i 0.01 10.232.0.2 | sed -n 's/.*time=\([0-9.]*\) ms/\1/p' >"$OUT/rtt"
  ls /proc/$A/task >"$OUT/tids.a"; ls /proc/$B/task >"$OUT/tids.b"
  echo 0 >$T/tracing_on; echo >$T/trace; echo 4096 >$T/buffer_size_kb
  echo 'raw_syscalls:sys_enter raw_syscalls:sys_exit sched:sched_wakeup sched:sched_switch' >$T/set_event
  echo 1 >$T/tracing_on
  ip netns exec $N1 ping -q -c "$PINGS" -i 0.01 10.232.0.2 >/dev/null
  echo 0 >$T/tracing_on
  cat $T/trace >"$OUT/trace"
  stop_trace
  tunnel_down
  echo "== $IMPL"
  python3 "$(dirname "$0")/idle_rtt_phases.py" "$OUT/trace" "$OUT/tids.a" "$OUT/tids.b" "$OUT/rtt"
done
