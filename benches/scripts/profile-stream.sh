#!/usr/bin/env bash
# Where one TCP stream's cycles go, on both tunnel ends at once. Sets up the
# tunnel of ../shared/bench/tunnel-bench.sh (tunnel-lib.sh), runs iperf3
# through it, and meanwhile samples both daemons with
# `perf record -e cpu-clock -g` and counts their system calls with
# `perf stat -e raw_syscalls:sys_enter`. Prints, per end, the throughput,
# the system calls per 64 KiB tunnelled (bytes counted on the TUN: about
# one TSO super-packet, or 46 datagrams of 1420 bytes), and
# the hottest symbols (self time, percent of that end's samples).
#
#   benches/scripts/profile-stream.sh [-s SECONDS] [-P STREAMS] [-n TOP] IMPL
#   e.g. profile-stream.sh -s 10 "target/release/phantommesh -f"
#
# A is the sender (iperf3 client side, it encrypts), B the receiver.
# perf.data files stay in $PROFILE_OUT (default: a temp dir, printed) for
# `perf report -i`. Needs root, perf (linux-perf), iproute2,
# wireguard-tools, iperf3, python3.
set -euo pipefail
SECS=10; STREAMS=1; TOP=25
while [[ $# -gt 0 ]]; do case $1 in
  -s) SECS=$2; shift 2;; -P) STREAMS=$2; shift 2;; -n) TOP=$2; shift 2;; *) break;; esac; done
[[ $# -eq 1 ]] || { echo "usage: $0 [-s SECONDS] [-P STREAMS] [-n TOP] IMPL" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "$0: needs root (network namespaces, TUN, perf)" >&2; exit 1; }
command -v perf >/dev/null || { echo "$0: perf is missing (apt-get install linux-perf)" >&2; exit 1; }
TAG=pmps$$
OUT=${PROFILE_OUT:-$(mktemp -d)}
mkdir -p "$OUT"
TUNNEL_LOGS=$OUT
# shellcheck source=benches/scripts/tunnel-lib.sh
source "$(dirname "$0")/tunnel-lib.sh"
PERF_PIDS=()
cleanup() {
  for p in "${PERF_PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  tunnel_down
}
trap cleanup EXIT

tun_bytes() { # NS IF: rx+tx bytes of the TUN (the tunnelled data)
  ip -n "$1" -s -j link show "$2" | python3 -c \
    'import json,sys; s=json.load(sys.stdin)[0]["stats64"]; print(s["rx"]["bytes"]+s["tx"]["bytes"])'
}

tunnel_up "$1" PHANTOMMESH_ADMIN_LISTEN=off
ip netns exec "$N2" iperf3 -s -1 -D -B 10.232.0.2 >/dev/null 2>&1
sleep 0.3
PA0=$(tun_bytes "$N1" "${TAG}1"); PB0=$(tun_bytes "$N2" "${TAG}2")
for side in a b; do
  pid=$A; [[ $side == b ]] && pid=$B
  perf record -q -e cpu-clock -g -p "$pid" -o "$OUT/perf.$side.data" -- sleep "$SECS" >/dev/null 2>&1 &
  PERF_PIDS+=($!)
  perf stat -x, -e raw_syscalls:sys_enter -p "$pid" -o "$OUT/stat.$side" -- sleep "$SECS" >/dev/null 2>&1 &
  PERF_PIDS+=($!)
done
MBPS=$(ip netns exec "$N1" iperf3 -c 10.232.0.2 -t "$SECS" -P "$STREAMS" -J 2>/dev/null |
  python3 -c 'import json,sys; d=json.load(sys.stdin); print(round(d["end"]["sum_sent"]["bits_per_second"]/1e6))' || echo 0)
for p in "${PERF_PIDS[@]}"; do wait "$p" || true; done
PERF_PIDS=()
PA=$(($(tun_bytes "$N1" "${TAG}1") - PA0)); PB=$(($(tun_bytes "$N2" "${TAG}2") - PB0))

echo "== $1: $MBPS Mbit/s, $STREAMS stream(s), ${SECS} s; perf data in $OUT"
for side in a b; do
  pk=$PA; [[ $side == b ]] && pk=$PB
  calls=$(awk -F, '/raw_syscalls/{print $1}' "$OUT/stat.$side")
  role="A (sender: reads the TUN, encrypts)"
  [[ $side == b ]] && role="B (receiver: decrypts, writes the TUN)"
  python3 - "$calls" "$pk" "$role" <<'PY'
import sys
calls, nbytes = float(sys.argv[1] or 0), float(sys.argv[2] or 0)
per = f"{calls / (nbytes / 65536):.2f}" if nbytes else "n/a"
print(f"-- {sys.argv[3]}: {int(calls)} system calls for {nbytes / 1e6:.0f} MB on the TUN: {per} per 64 KiB")
PY
  perf report -i "$OUT/perf.$side.data" --no-children --sort dso,symbol --stdio -q --percent-limit 0.5 2>/dev/null |
    grep -E '^ +[0-9.]+%' | sed -E 's/ +- +- *$//' | head -n "$TOP"
done
