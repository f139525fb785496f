#!/usr/bin/env bash
# TCP both ways at once through the bench tunnel (tunnel-lib.sh): one
# `iperf3 --bidir` per round and implementation, rounds alternating between
# the implementations (odd rounds in reverse order). The one-way bench
# (../shared/bench/tunnel-bench.sh) leaves a device's other direction
# idle; this one makes each daemon seal and open at full speed together,
# which is where crypto workers earn their hand-offs on a small machine.
# Prints, per IMPL and round, each direction's Mbit/s and their sum, then
# the median sum.
#
#   benches/scripts/bidir.sh [-r ROUNDS] [-s SECONDS] [-P STREAMS] IMPL...
#
# IMPL takes wireguard-go's command line. Needs root, iproute2,
# wireguard-tools, iperf3, python3. Traffic stays inside the two namespaces
# it creates (10.231.0.0/24 underlay, 10.232.0.0/24 tunnel).
set -euo pipefail
ROUNDS=3 SECS=8 STREAMS=1
while [[ ${1:-} == -* ]]; do
  case $1 in
    -r) ROUNDS=$2 ;; -s) SECS=$2 ;; -P) STREAMS=$2 ;;
    *) echo "usage: $0 [-r ROUNDS] [-s SECONDS] [-P STREAMS] IMPL..." >&2; exit 2 ;;
  esac
  shift 2
done
[[ $# -ge 1 ]] || { echo "usage: $0 [-r ROUNDS] [-s SECONDS] [-P STREAMS] IMPL..." >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "$0: needs root (network namespaces, TUN)" >&2; exit 1; }
TAG=pmbd$$
OUT=$(mktemp -d)
# shellcheck source=benches/scripts/tunnel-lib.sh
source "$(dirname "$0")/tunnel-lib.sh"
trap 'tunnel_down; rm -rf "$OUT" "$TUNNEL_LOGS"' EXIT

# One round of one IMPL: iperf3 --bidir into $OUT/INDEX.ROUND.json.
bidir_round() {
  local r=$1 i=$2
  ip netns exec "$N2" iperf3 -s -1 -D -B 10.232.0.2 -I "$OUT/iperf.pid" >/dev/null 2>&1
  for _ in $(seq 50); do [[ -s $OUT/iperf.pid ]] && break; sleep 0.1; done
  ip netns exec "$N1" iperf3 -c 10.232.0.2 --bidir -P "$STREAMS" -t "$SECS" -J \
    >"$OUT/$i.$r.json" 2>/dev/null || true
  kill "$(cat "$OUT/iperf.pid" 2>/dev/null)" 2>/dev/null || true
  rm -f "$OUT/iperf.pid"
}
tunnel_rounds "$ROUNDS" bidir_round "$@"

i=0
for IMPL in "$@"; do
  python3 - "$IMPL" "$OUT" "$i" "$ROUNDS" <<'PY'
import json, statistics as st, sys
impl, out, i, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sums, rows = [], []
for r in range(rounds):
    try:
        e = json.load(open(f"{out}/{i}.{r}.json"))["end"]
        up = e["sum_sent"]["bits_per_second"] / 1e6
        down = e["sum_sent_bidir_reverse"]["bits_per_second"] / 1e6
    except (OSError, KeyError, ValueError):
        rows.append("   failed")
        continue
    sums.append(up + down)
    rows.append(f"{up:5.0f}+{down:5.0f}")
print(f"{impl[:40]:40} {'  '.join(rows)}  median sum {st.median(sums) if sums else float('nan'):5.0f} Mbit/s")
PY
  i=$((i + 1))
done
