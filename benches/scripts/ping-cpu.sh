#!/usr/bin/env bash
# What one idle ping costs the two daemons: the tunnel of
# ../shared/bench/tunnel-bench.sh, COUNT pings at INTERVAL through it, and
# `perf stat` on both daemons meanwhile (task-clock: user and kernel time
# of every thread, including the packets' kernel work done in their
# system calls; context switches; CPU migrations). "busiest threads" is
# each daemon's busiest thread, summed: the I/O thread, whose work lies on
# the round trip's path, where other threads' (timers) does not. Rounds
# alternate between the implementations (odd rounds in reverse order,
# tunnel_rounds in tunnel-lib.sh); with two
# IMPLs or more, each one's per-round differences from the first are
# printed too, as in idle-rtt-rounds.sh.
# Why: idle RTT on this 2-vCPU machine swings by 10-25 us between series,
# while the CPU time per ping is the part of it the daemon's code decides.
#
#   benches/scripts/ping-cpu.sh [-r ROUNDS] [-c COUNT] [-i INTERVAL] IMPL...
#   e.g. ping-cpu.sh -r 10 -c 500 -i 0.01 "target/release/phantommesh -f"
#
# IMPL takes wireguard-go's command line. Needs root, perf, iproute2,
# wireguard-tools, iputils-ping, python3. Traffic stays inside the two
# namespaces it creates (10.231.0.0/24 underlay, 10.232.0.0/24 tunnel).
set -euo pipefail
ROUNDS=6 COUNT=500 INTERVAL=0.01
while getopts r:c:i: o; do
  case $o in
    r) ROUNDS=$OPTARG ;;
    c) COUNT=$OPTARG ;;
    i) INTERVAL=$OPTARG ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -ge 1 ]] || { echo "usage: $0 [-r ROUNDS] [-c COUNT] [-i INTERVAL] IMPL..." >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "$0: needs root (network namespaces, TUN)" >&2; exit 1; }
command -v perf >/dev/null || { echo "$0: needs perf (linux-perf)" >&2; exit 1; }
TAG=pmpc$$
OUT=$(mktemp -d)
# shellcheck source=benches/scripts/tunnel-lib.sh
source "$(dirname "$0")/tunnel-lib.sh"
trap 'tunnel_down; rm -rf "$OUT" "$TUNNEL_LOGS"' EXIT

# One round of one IMPL: COUNT pings with perf stat on both daemons, then
# one line in $OUT/INDEX: round, task-clock ms, switches, migrations, the
# busiest thread's task-clock ms of each daemon summed (the one on the
# round trip's path: the I/O thread), avg RTT ms (missing when no ping
# was answered). perf's lines are "comm-tid,value,unit,event,...".
cpu_round() {
  local r=$1 i=$2 stat rtt
  sleep 0.3
  perf stat --per-thread -x, -e task-clock,context-switches,cpu-migrations -p "$A,$B" \
    -o "$OUT/stat" -- \
    ip netns exec "$N1" ping -q -c "$COUNT" -i "$INTERVAL" 10.232.0.2 >"$OUT/ping" 2>&1 || true
  # A's threads tell the two daemons' lines apart.
  if ! ls "/proc/$A/task" >"$OUT/tids.a" 2>/dev/null; then
    echo "$0: round $r: ${IMPLS[$i]} (A, PID $A) exited; see $TUNNEL_LOGS/a.log" >&2
    return
  fi
  stat=$(awk -F, 'NR==FNR{a[$1]=1; next}
    $2 ~ /^[0-9.]+$/ {
      n=split($1, p, "-"); d=(p[n] in a) ? "a" : "b"
      if ($4=="task-clock") { t+=$2; if ($2>top[d]) top[d]=$2 }
      if ($4=="context-switches") c+=$2
      if ($4=="cpu-migrations") m+=$2
    }
    END{print t, c, m, top["a"]+top["b"]}' "$OUT/tids.a" "$OUT/stat")
  rtt=$(sed -n 's|.*= [0-9.]*/\([0-9.]*\)/.*|\1|p' "$OUT/ping")
  echo "$r $stat $rtt" >>"$OUT/$i"
}
IMPLS=("$@")
tunnel_rounds "$ROUNDS" cpu_round "$@"

python3 - "$OUT" "$COUNT" "$@" <<'PY'
import statistics as st, sys
out, count, impls = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
per = []  # per IMPL: {round: (cpu, switches, migrations, rtt, busiest)}, per ping, us
for i, impl in enumerate(impls):
    rows = {}
    for l in open(f"{out}/{i}"):
        f = l.split()
        if len(f) == 6:  # a round whose ping got no reply has no RTT
            r, t, c, m, top, rtt = f
            rows[r] = (float(t) * 1000 / count, float(c) / count, float(m) / count,
                       float(rtt) * 1000, float(top) * 1000 / count)
    per.append(rows)
    if not rows:
        print(f"{impl}: no round got through", file=sys.stderr)
        continue
    col = lambda k: st.mean(v[k] for v in rows.values())
    print(f"{impl[:44]:44} rounds {len(rows):3}  cpu/ping {col(0):6.1f} us  busiest threads {col(4):6.1f} us  "
          f"switches/ping {col(1):4.2f}  migrations/ping {col(2):4.2f}  rtt {col(3):5.0f} us")
if len(impls) >= 2 and per[0]:
    print(f"paired with {impls[0][:44]} (per-round differences, us; 95 % interval):")
    for impl, rows in zip(impls[1:], per[1:]):
        common = [r for r in rows if r in per[0]]
        if len(common) < 2:
            print(f"  {impl[:44]:44} too few common rounds")
            continue
        line = []
        for k, name in ((0, "cpu/ping"), (4, "busiest"), (3, "rtt")):
            d = [rows[r][k] - per[0][r][k] for r in common]
            half = 1.96 * st.stdev(d) / len(d) ** 0.5
            line.append(f"{name} {st.mean(d):+6.1f} +- {half:4.1f} (lower in {sum(x < 0 for x in d)}/{len(d)})")
        print(f"  {impl[:44]:44} " + "   ".join(line))
sys.exit(0 if all(per) else 1)
PY
