#!/usr/bin/env bash
# The idle step of ../shared/bench/tunnel-bench.sh, repeated: each round
# sets up two namespaces and a tunnel exactly as the bench does, starts the
# iperf3 server, waits 0.3 s and sends `ping -c 50 -i 0.01` through the
# tunnel; rounds alternate between the implementations (odd rounds in
# reverse order). One bench call's idle figure is the mean of one such
# round and swings by 0.1 ms, so only many rounds compare implementations.
# Prints, per IMPL, the mean and median of all pings, the median of the
# rounds' means (what the bench would report, typically), and the first
# ping of a round (after 0.3 s idle).
# With two IMPLs or more it then compares each with the first, round by
# round (the rounds are interleaved, so each pair shares the machine's
# load at that moment): the mean of the per-round differences of the
# round means, with a 95 % interval, and in how many rounds it was lower.
# Series of the same builds have differed by 10-25 us in their overall
# means; the paired difference is what says whether a change moved it.
#
# -c A,B,P pins every thread of the first daemon to CPU A, of the second
# to CPU B and the pinger to CPU P (taskset), so that each round runs the
# same placement: the scheduler's choice of CPUs, which moves this round
# trip by tens of us on a 2-vCPU VM, is then the same for every IMPL, and
# what is left is each daemon's own path (its CPU work and its wake-ups).
#
#   benches/scripts/idle-rtt-rounds.sh [-r ROUNDS] [-c A,B,P] IMPL...
#   e.g. idle-rtt-rounds.sh -r 15 "boringtun-cli -f --disable-drop-privileges" "target/release/phantommesh -f"
#        idle-rtt-rounds.sh -r 10 -c 1,1,1 pm-before pm-after  # one CPU
#
# IMPL takes wireguard-go's command line. Needs root, iproute2,
# wireguard-tools, iperf3, iputils-ping, python3. Traffic stays inside the
# two namespaces it creates (10.231.0.0/24 underlay, 10.232.0.0/24 tunnel).
set -euo pipefail
ROUNDS=15
CPUS=
while [[ ${1:-} == -[rc] ]]; do
  case $1 in
    -r) ROUNDS=$2 ;;
    -c) CPUS=$2 ;;
  esac
  shift 2
done
[[ $# -ge 1 ]] || { echo "usage: $0 [-r ROUNDS] [-c A,B,P] IMPL..." >&2; exit 2; }
PING=(ping)
if [[ -n $CPUS ]]; then
  [[ $CPUS =~ ^[0-9]+,[0-9]+,[0-9]+$ ]] || { echo "$0: -c wants three CPU numbers, A,B,P" >&2; exit 2; }
  IFS=, read -r CPU_A CPU_B CPU_P <<<"$CPUS"
  PING=(taskset -c "$CPU_P" ping)
fi
[[ $(id -u) == 0 ]] || { echo "$0: needs root (network namespaces, TUN)" >&2; exit 1; }
TAG=pmrr$$
OUT=$(mktemp -d)
# shellcheck source=benches/scripts/tunnel-lib.sh
source "$(dirname "$0")/tunnel-lib.sh"
trap 'tunnel_down; rm -rf "$OUT" "$TUNNEL_LOGS"' EXIT

# One round of one IMPL: an iperf3 server up (as the bench's idle step
# has), 0.3 s idle, 50 pings; lines "round seq rtt_ms" in $OUT/INDEX.
idle_round() {
  local r=$1 i=$2
  if [[ -n $CPUS ]]; then
    # -a: every thread the daemon has; threads it starts later inherit.
    taskset -a -p -c "$CPU_A" "$A" >/dev/null
    taskset -a -p -c "$CPU_B" "$B" >/dev/null
  fi
  ip netns exec $N2 iperf3 -s -1 -D -B 10.232.0.2 -I "$OUT/iperf.pid" >/dev/null 2>&1 || true
  sleep 0.3
  ip netns exec $N1 "${PING[@]}" -c 50 -i 0.01 10.232.0.2 2>/dev/null \
    | sed -n "s/.*icmp_seq=\([0-9]*\).*time=\([0-9.]*\) ms/$r \1 \2/p" >>"$OUT/$i"
  [[ -s $OUT/iperf.pid ]] && kill "$(cat "$OUT/iperf.pid")" 2>/dev/null || true
  rm -f "$OUT/iperf.pid"
}
tunnel_rounds "$ROUNDS" idle_round "$@"

# One pass over the round files: per IMPL its summary, then (with two or
# more) each one's per-round differences from the first.
python3 - "$OUT" "$@" <<'PY'
import statistics as st, sys
out, impls = sys.argv[1], sys.argv[2:]
failed = False
rounds = []  # per IMPL: {round: [rtt us]}
for i, impl in enumerate(impls):
    rows = [l.split() for l in open(f"{out}/{i}") if l.strip()]
    by_round = {}
    for r, _, t in rows:
        by_round.setdefault(r, []).append(float(t) * 1000)
    rounds.append(by_round)
    if not rows:
        print(f"{impl}: no ping got through", file=sys.stderr)
        failed = True
        continue
    us = [float(t) * 1000 for _, _, t in rows]
    means = [st.mean(v) for v in by_round.values()]
    first = [float(t) * 1000 for _, s, t in rows if s == '1']
    print(f"{impl[:44]:44} rounds {len(by_round):3}  pings {len(us):5}  mean {st.mean(us):5.0f}  "
          f"p50 {st.median(us):5.0f}  median round mean {st.median(means):5.0f}  "
          f"first ping mean {st.mean(first) if first else float('nan'):5.0f} us")
if len(impls) >= 2 and rounds[0]:
    base = {r: st.mean(v) for r, v in rounds[0].items()}
    print(f"paired with {impls[0][:44]} (per-round mean differences, us):")
    for impl, by_round in zip(impls[1:], rounds[1:]):
        d = [st.mean(v) - base[r] for r, v in by_round.items() if r in base]
        if len(d) < 2:
            print(f"  {impl[:44]:44} too few common rounds")
            continue
        half = 1.96 * st.stdev(d) / len(d) ** 0.5
        lower = sum(x < 0 for x in d)
        print(f"  {impl[:44]:44} {st.mean(d):+6.1f} +- {half:4.1f} (95 %)  median {st.median(d):+6.1f}  "
              f"lower in {lower}/{len(d)} rounds")
sys.exit(1 if failed else 0)
PY
