#!/usr/bin/env bash
# Handshake flood: an established peer keeps its traffic while strangers
# flood A's listen port with MAC1-valid handshake initiations (issue 15).
#
# B is an established peer of A. From B's namespace, examples/flood.rs sends
# FLOOD_RATE initiations/s (default 20,000) from FLOOD_SOURCES addresses
# (default 500, added to B's veth) for FLOOD_SECS s (default 5), while B
# pings A through the tunnel at 100/s for one second less. Checks:
#   - the generator reached at least 3/4 of its rate (else the check means
#     nothing), and A's handshake path took the flood in: refused it after
#     a Diffie-Hellman, or, once its queue is under load, answered with
#     cookie replies, rate-limited or dropped it (phantommesh's /metrics;
#     another A must have sent cookie replies);
#   - B lost no ping, and the slowest 1 % stayed under FLOOD_P99_MS
#     (default 25 ms; an idle tunnel answers in well under 1 ms, a flooded
#     shared socket took 5-30 ms): B's data did not queue behind the flood;
#   - A has a socket connected to B on its listen port (B's own queue).
# A gentler, shorter cousin of benches/scripts/handshake-flood.sh. Needs the
# generator built: `cargo build --release --examples` (scripts/test.sh does).
source "$(dirname "$0")/lib.sh"
e2e_init
FLOOD=${FLOOD_BIN:-$(e2e_target_dir)/release/examples/flood}
RATE=${FLOOD_RATE:-20000}
SOURCES=${FLOOD_SOURCES:-500}
SECS=${FLOOD_SECS:-5}
P99_MAX=${FLOOD_P99_MS:-25}
[[ -x $FLOOD ]] || die "flood generator not built: $FLOOD (cargo build --release --examples)"
two_node_tunnel

require "tunnel up: B pings A" ping_ok "$NS_B" "$(inner4 1)"

# Flood sources 10.210.0.1 upwards on B's veth; A routes them via B, so its
# cookie replies really go back. Routed, not on-link: one neighbour entry
# per source would overflow the kernel's IPv4 neighbour table, shared by
# all namespaces (gc_thresh3 1024), and unrelated sends would fail ENOBUFS.
python3 - "$SOURCES" <<'EOF' | ip -n "$NS_B" -batch -
import sys
for i in range(1, int(sys.argv[1]) + 1):
    print(f"addr add 10.210.{i >> 8}.{i & 255}/32 dev o0")
EOF
ip -n "$NS_A" route add 10.210.0.0/16 via "$(outer4 0 2)"

# At 20,000/s a 2-core runner keeps up even with one shared socket; what
# keeps B's data apart at higher rates (the bench) is a socket connected to
# B on A's port, so look for it (FLOOD_PEER_SOCKET=0 for implementations
# without one, as wireguard-go).
peer_socket() {
  ip netns exec "$NS_A" ss -Hun state established "sport = :51821" |
    grep -q "$(outer4 0 2)\]*:51822"
}
[[ ${FLOOD_PEER_SOCKET:-1} == 0 ]] ||
  check "A has a UDP socket connected to B on its port" wait_until 5 peer_socket

say "flooding A with $RATE initiations/s from $SOURCES sources for ${SECS}s"
PINGS=$(((SECS - 1) * 100))
ip netns exec "$NS_B" "$FLOOD" --target "$(outer4 0 1):51821" --peer-key "$(pub a)" \
  --src-base 10.210.0.0 --sources "$SOURCES" --rate "$RATE" --seconds "$SECS" \
  >"$E2E_TMP/flood.out" 2>&1 &
FPID=$!
E2E_PIDS+=("$FPID")
ip netns exec "$NS_B" ping -n -c "$PINGS" -i 0.01 -W 1 "$(inner4 1)" >"$E2E_TMP/flood-ping.log" 2>&1 || true
wait "$FPID" || true
say "generator: $(cat "$E2E_TMP/flood.out")"

field() { sed -n "s/.*\\b$1=\\([0-9]*\\).*/\\1/p" "$E2E_TMP/flood.out"; }
rate=$(field rate)
cookies=$(field cookie_replies)
check "generator reached >= 3/4 of $RATE/s (got ${rate:-none})" \
  test "${rate:-0}" -ge $((RATE * 3 / 4))
sent=$(field sent)
# What A's handshake path made of the flood. Every MAC1-valid initiation
# ends as one of: a cookie reply (under load), rate-limited, dropped at a
# full queue, or a Diffie-Hellman spent and the unknown key refused
# (failed). Which one depends on the runner: a handshake thread that keeps
# up with 20,000/s never lets its queue reach the under-load mark and
# sends no cookie at all. So for phantommesh, whose /metrics counts all
# four, the check is that they cover the flood; for another A, cookies.
took_in() { # WANT
  http_req "$NS_A" "http://127.0.0.1:9586/metrics"
  [[ $CODE == 200 ]] || return 1
  python3 - "$BODY" "$1" <<'EOF'
import re, sys
text, want = open(sys.argv[1]).read(), int(sys.argv[2])
series = [r'phantommesh_handshakes_total\{outcome="failed"\}',
          r'phantommesh_cookie_replies_sent_total',
          r'phantommesh_packets_dropped_total\{reason="rate_limited"\}',
          r'phantommesh_packets_dropped_total\{reason="queue_full"\}']
got = []
for s in series:
    m = re.search('^' + s + r' (\S+)$', text, re.M)
    got.append(int(float(m.group(1))) if m else 0)
print(f"A: failed {got[0]}, cookie replies {got[1]}, rate-limited {got[2]}, "
      f"queue full {got[3]}; want {want} in all", file=sys.stderr)
sys.exit(0 if sum(got) >= want else 1)
EOF
}
if [[ $IMPL_A == *phantommesh* ]]; then
  check "A's handshake path took in >= 3/4 of the ${sent:-?} initiations (cookie replies seen: ${cookies:-none})" \
    wait_until 10 took_in $((${sent:-0} * 3 / 4))
else
  check "A answered the flood with cookie replies (${cookies:-none})" test "${cookies:-0}" -gt 0
fi

read -r got p99 < <(python3 - "$E2E_TMP/flood-ping.log" <<'EOF'
import re, sys
t = sorted(float(m) for m in re.findall(r"time=([0-9.]+) ms", open(sys.argv[1]).read()))
print(len(t), t[min(len(t) - 1, int(0.99 * len(t)))] if t else "NA")
EOF
)
say "pings: $got/$PINGS answered, p99 ${p99} ms"
check "B lost no ping under the flood ($got/$PINGS)" test "$got" -eq "$PINGS"
check "ping p99 under the flood ${p99} ms < ${P99_MAX} ms" \
  python3 -c "import sys; sys.exit(0 if float('$p99') < $P99_MAX else 1)"
check "tunnel still up after the flood" ping_ok "$NS_B" "$(inner4 1)"
