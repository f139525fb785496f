#!/usr/bin/env bash
# Scale: N configured peers with one allowed IP each. Reports each
# implementation's resident memory after configuration and the time of a
# UAPI `get` (`wg show IF dump`), side by side in one run.
#
#   benches/scripts/scale-peers.sh [N] IMPL...      (IMPL: "wireguard-go -f", "target/release/phantommesh -f")
# Needs root, iproute2, wireguard-tools, python3. Uses only a namespace it
# creates; nothing is sent anywhere (peers have no endpoints).
set -euo pipefail
N=10000
[[ ${1:-} =~ ^[0-9]+$ ]] && { N=$1; shift; }
[[ $# -ge 1 ]] || { echo "usage: $0 [N] IMPL..." >&2; exit 2; }
NS=pmscale$$
PID=
cleanup() { [[ -n $PID ]] && kill "$PID" 2>/dev/null; sleep 0.3; ip netns del $NS 2>/dev/null || true; }
trap cleanup EXIT
ip netns add $NS
CONF=$(mktemp)
python3 - "$N" >"$CONF" <<'PY'
import base64, os, sys
n = int(sys.argv[1])
print("[Interface]\nPrivateKey = %s\nListenPort = 51900\n" % base64.b64encode(os.urandom(32)).decode())
for i in range(n):
    key = bytearray(os.urandom(32))
    print("[Peer]\nPublicKey = %s\nAllowedIPs = 10.%d.%d.%d/32\n" % (base64.b64encode(bytes(key)).decode(), 64 + i // 65536, (i // 256) % 256, i % 256))
PY
i=0
for IMPL in "$@"; do
  i=$((i + 1)); IF=pmsc$$x$i
  ip netns exec $NS env WG_PROCESS_FOREGROUND=1 PHANTOMMESH_ADMIN_LISTEN=off $IMPL $IF >/dev/null 2>&1 & PID=$!
  for _ in $(seq 100); do [[ -S /var/run/wireguard/$IF.sock ]] && break; sleep 0.1; done
  t0=$(date +%s.%N); ip netns exec $NS wg setconf $IF "$CONF"; t1=$(date +%s.%N)
  sleep 1
  rss=$(awk '/VmRSS/{print $2}' /proc/$PID/status)
  g0=$(date +%s.%N); peers=$(ip netns exec $NS wg show $IF dump | tail -n +2 | wc -l); g1=$(date +%s.%N)
  printf '%-40s peers %6d  setconf %6.2f s  RSS %7.1f MiB  get (wg show dump) %6.3f s\n' \
    "$IMPL" "$peers" "$(awk "BEGIN{print $t1 - $t0}")" "$(awk "BEGIN{print $rss / 1024}")" "$(awk "BEGIN{print $g1 - $g0}")"
  kill $PID; wait $PID 2>/dev/null || true; PID=
done
rm -f "$CONF"
