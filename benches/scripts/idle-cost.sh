#!/usr/bin/env bash
# Idle cost: what an idle daemon with N configured peers costs the machine.
# Each implementation is started in wg mode in a namespace of its own, gets
# N peers (one allowed IP each, an endpoint inside the namespace, no
# traffic) through `wg setconf`, is left alone for the warm-up, and is then
# sampled for S seconds:
#   - context switches per second: voluntary + nonvoluntary, summed over
#     /proc/PID/task/*/status (every thread; a wake-up costs one each way);
#   - CPU ms per second: utime + stime of the process (/proc/PID/stat);
#   - RSS at the end (VmRSS);
#   - and which threads woke (switches per second by thread name).
# The admin plane's self tunnel test (every 10 s while failing, 60 s while
# passing) wakes the handshake and crypto threads when it runs: sample for
# a minute (-s 60) to average it in.
#
#   benches/scripts/idle-cost.sh [-n PEERS] [-s SECONDS] [-w WARMUP] IMPL...
#   e.g. benches/scripts/idle-cost.sh -n 10000 -s 10 -w 30 \
#          /work/baseline/target/release/phantommesh target/release/phantommesh
# IMPL is a command taking the interface name (wireguard-go-compatible,
# e.g. "wireguard-go -f"). Needs root, iproute2, wireguard-tools, python3.
# Nothing leaves the namespaces it creates (peers are never contacted: no
# packet enters the tunnel, and no handshake is started).
set -euo pipefail
N=10000 S=10 W=30
while getopts "n:s:w:" o; do
  case $o in
    n) N=$OPTARG ;; s) S=$OPTARG ;; w) W=$OPTARG ;;
    *) echo "usage: $0 [-n PEERS] [-s SECONDS] [-w WARMUP] IMPL..." >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -ge 1 ]] || { echo "usage: $0 [-n PEERS] [-s SECONDS] [-w WARMUP] IMPL..." >&2; exit 2; }
NS=pmidle$$
PID=
CONF=$(mktemp)
cleanup() {
  [[ -n $PID ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  ip netns del $NS 2>/dev/null || true
  rm -f "$CONF"
}
trap cleanup EXIT
ip netns add $NS
# No IPv6 autoconfiguration: router solicitations into the TUN would be
# traffic, and this measures idleness.
ip netns exec $NS sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
ip -n $NS link set lo up
python3 - "$N" >"$CONF" <<'PY'
import base64, os, sys
n = int(sys.argv[1])
print("[Interface]\nPrivateKey = %s\nListenPort = 51910\n" % base64.b64encode(os.urandom(32)).decode())
for i in range(n):
    print("[Peer]\nPublicKey = %s\nEndpoint = 127.0.0.1:%d\nAllowedIPs = 10.%d.%d.%d/32\n" % (
        base64.b64encode(os.urandom(32)).decode(), 20000 + i % 40000,
        64 + i // 65536, (i // 256) % 256, i % 256))
PY

# Sum of voluntary + nonvoluntary context switches over every thread.
ctxt() {
  cat /proc/"$1"/task/*/status 2>/dev/null |
    awk '/^(non)?voluntary_ctxt_switches/{s += $2} END{print s + 0}'
}
# Per thread name: "name switches" lines (threads of one name summed).
per_thread() {
  for t in /proc/"$1"/task/*; do
    printf '%s %s\n' "$(cat "$t/comm" 2>/dev/null | tr ' ' _)" \
      "$(awk '/^(non)?voluntary_ctxt_switches/{s += $2} END{print s + 0}' "$t/status" 2>/dev/null)"
  done | awk '{s[$1] += $2} END{for (n in s) print n, s[n]}' | sort
}
# utime + stime in clock ticks (fields 14 and 15; the name may hold spaces).
cpu_ticks() { sed 's/^.*) //' /proc/"$1"/stat | awk '{print $12 + $13}'; }
HZ=$(getconf CLK_TCK)

printf '%-48s %6s %10s %10s %9s %7s\n' IMPL peers "ctxsw/s" "CPU ms/s" "RSS MiB" threads
i=0
for IMPL in "$@"; do
  i=$((i + 1)); IF=pmid$$x$i
  ip netns exec $NS env WG_PROCESS_FOREGROUND=1 PHANTOMMESH_ADMIN_LISTEN=off $IMPL $IF >/dev/null 2>&1 &
  PID=$!
  for _ in $(seq 100); do [[ -S /var/run/wireguard/$IF.sock ]] && break; sleep 0.1; done
  ip netns exec $NS wg setconf $IF "$CONF"
  ip -n $NS link set $IF up
  peers=$(ip netns exec $NS wg show $IF peers | wc -l)
  sleep "$W"
  per_thread $PID >"$CONF.t0"
  c0=$(ctxt $PID); u0=$(cpu_ticks $PID); t0=$(date +%s.%N)
  sleep "$S"
  c1=$(ctxt $PID); u1=$(cpu_ticks $PID); t1=$(date +%s.%N)
  per_thread $PID >"$CONF.t1"
  rss=$(awk '/VmRSS/{print $2}' /proc/$PID/status)
  threads=$(ls /proc/$PID/task | wc -l)
  awk -v impl="$IMPL" -v p="$peers" -v c0="$c0" -v c1="$c1" -v u0="$u0" -v u1="$u1" \
      -v t0="$t0" -v t1="$t1" -v hz="$HZ" -v rss="$rss" -v th="$threads" 'BEGIN {
    dt = t1 - t0
    printf "%-48s %6d %10.1f %10.2f %9.1f %7d\n", impl, p, (c1 - c0) / dt,
      (u1 - u0) * 1000 / hz / dt, rss / 1024, th
  }'
  # Which threads woke: switches per second by thread name.
  join "$CONF.t0" "$CONF.t1" | awk -v dt="$(awk "BEGIN{print $t1 - $t0}")" \
    '{r = ($3 - $2) / dt; if (r >= 0.05) printf "%s %.1f, ", $1, r} END{print ""}' |
    sed 's/, $//; s/^/    per thread (switches\/s): /'
  rm -f "$CONF.t0" "$CONF.t1"
  kill $PID; wait $PID 2>/dev/null || true; PID=
done
