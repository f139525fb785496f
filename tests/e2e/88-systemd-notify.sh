#!/usr/bin/env bash
# systemd's notify protocol (Type=notify) of `phantommesh run`, against a
# NOTIFY_SOCKET this test creates (tests/e2e/notify_listen.py stands in for
# systemd), in one network namespace (skipped, exit 77, when IMPL is not
# phantommesh). Runs:
#   1  NOTIFY_SOCKET and WATCHDOG_USEC=1 s: READY=1 arrives once, while
#      /readyz answers 200; WATCHDOG=1 keeps coming, never 1 s apart;
#      SIGHUP gives RELOADING=1 (with MONOTONIC_USEC) then READY=1, also
#      for a broken file (kept running, STATUS says so); a main loop
#      blocked (config file turned into a FIFO) stops the pings until it
#      runs again; SIGTERM gives STOPPING=1, nothing after it, exit 0.
#   2  a [mesh] whose store is a closed port: never ready, so no READY=1
#      while the watchdog ticks 3 s and STATUS names the mesh check;
#      STOPPING=1 on SIGTERM all the same.
#   3  NOTIFY_SOCKET without WATCHDOG_USEC: READY=1 but no WATCHDOG=1.
# And the shipped unit's CapabilityBoundingSet and NoNewPrivileges, applied
# with setpriv, still let the daemon get ready (run 1 runs under them).
# shellcheck disable=SC2016 # checks pass single-quoted code to eval
source "$(dirname "$0")/lib.sh"
e2e_init

require_phantommesh
command -v setpriv >/dev/null || die "missing tool: setpriv (util-linux)"
PORT=9586
UNIT=$REPO_ROOT/deploy/systemd/phantommesh.service

ns_create "$NS_A"
keygen a b
new_if IFA a

# conf FILE [MESH]: a run-mode config for IFA; MESH adds a [mesh] section
# whose only store endpoint is a closed port on the namespace's loopback.
conf() {
  cat >"$1" <<EOF
[interface]
name = "$IFA"
private_key_file = "$(keyfile a)"
listen_port = 51821
addresses = ["$(inner4 1)/24"]

[admin]
listen = "127.0.0.1:$PORT"

[[peer]]
public_key = "$(pub b)"
allowed_ips = ["$(inner4 2)/32"]
EOF
  [[ -z ${2:-} ]] || cat >>"$1" <<EOF

[mesh]
store = "etcd"
endpoints = ["http://127.0.0.1:2379"]
prefix = "/pm-e2e/$$"
node_name = "node-a"
advertise_endpoint = "127.0.0.1"
network = "10.202.0.0/16"
cache_file = "$E2E_TMP/mesh-cache.json"
EOF
}
conf "$E2E_TMP/plain.toml"
conf "$E2E_TMP/mesh.toml" mesh

# The unit's capability bounding set, as setpriv arguments.
caps=$(sed -n 's/^CapabilityBoundingSet=//p' "$UNIT")
[[ -n $caps ]] || die "no CapabilityBoundingSet in $UNIT"
grep -qx 'NoNewPrivileges=yes' "$UNIT" || die "NoNewPrivileges=yes not in $UNIT"
bounding=-all
for c in $caps; do
  c=${c#CAP_}
  bounding+=",+${c,,}"
done
say "unit capabilities: $caps (setpriv --bounding-set=$bounding)"

# start RUN CONFIG [ENV...]: the listener on RUN's socket, then the daemon
# with NOTIFY_SOCKET (and ENV) under the unit's privileges. Sets SOCK, LOG,
# LISTENER and DAEMON.
start() {
  local run=$1 cfg=$2
  shift 2
  SOCK=$E2E_TMP/notify-$run.sock
  LOG=$E2E_TMP/notify-$run.txt
  : >"$LOG"
  ip netns exec "$NS_A" python3 "$E2E_DIR/notify_listen.py" "$SOCK" "$LOG" \
    --readyz "http://127.0.0.1:$PORT/readyz" >"$E2E_TMP/listener-$run.log" 2>&1 &
  LISTENER=$!
  E2E_PIDS+=("$LISTENER")
  e2e_register "pid $LISTENER"
  wait_until 10 test -S "$SOCK" || die "run $run: notify socket not created"
  ip netns exec "$NS_A" env NOTIFY_SOCKET="$SOCK" PHANTOMMESH_SELF_TEST_INTERVAL=1 "$@" \
    setpriv --bounding-set="$bounding" --no-new-privs \
    "${PM_ARGV[@]}" run --config "$cfg" >"$E2E_TMP/daemon-$run.log" 2>&1 &
  DAEMON=$!
  E2E_PIDS+=("$DAEMON")
  e2e_register "pid $DAEMON"
}

count() { grep -c -- "$1" "$LOG" || true; }
has_at_least() { (($(count "$1") >= $2)); }
# stop_daemon: SIGTERM, wait for the exit, sets DAEMON_RC.
stop_daemon() {
  kill -TERM "$DAEMON"
  wait_until 15 pid_gone "$DAEMON" || die "daemon did not exit within 15 s of SIGTERM"
  DAEMON_RC=0
  wait "$DAEMON" || DAEMON_RC=$?
}
stop_listener() {
  kill -TERM "$LISTENER" 2>/dev/null || true
  wait "$LISTENER" 2>/dev/null || true
}
# The fields of message number N (1-based) in the listener's log.
msg() { grep '^msg ' "$LOG" | sed -n "${1}p" | cut -d' ' -f3-; }
# The index of the first message matching REGEX after message N (or none).
next_after() { grep '^msg ' "$LOG" | awk -v n="$1" -v re="$2" 'NR > n && $0 ~ re {print NR; exit}'; }

say "run 1: NOTIFY_SOCKET + WATCHDOG_USEC=1000000, under the unit's capabilities"
start 1 "$E2E_TMP/plain.toml" WATCHDOG_USEC=1000000
require "READY=1 arrives" wait_until 30 has_at_least 'READY=1' 1
check "READY=1 is sent once" test "$(count 'READY=1')" -eq 1
ready_code=$(awk '$1 == "readyz" {print $3; exit}' "$LOG")
check "/readyz answered 200 when READY=1 arrived (got '$ready_code')" test "$ready_code" = 200
check "READY=1 comes with STATUS=ready" eval 'grep "READY=1" "$LOG" | grep -q "STATUS=ready"'
check "WATCHDOG=1 keeps coming (6 pings)" wait_until 10 has_at_least 'WATCHDOG=1' 6
# Pings every half WATCHDOG_USEC: no gap reaches the 1 s timeout.
gaps_ok() {
  grep '^msg .*WATCHDOG=1' "$LOG" | awk '
    NR > 1 { g = $2 - prev; if (g > max) max = g }
    { prev = $2 }
    END { printf "largest gap between pings: %.3f s\n", max; exit !(max < 1.0) }'
}
check "no two WATCHDOG=1 pings are 1 s apart" gaps_ok

n=$(grep -c '^msg ' "$LOG")
kill -HUP "$DAEMON"
reloaded() { [[ -n $(next_after "$n" 'RELOADING=1') ]] && r=$(next_after "$n" 'RELOADING=1') && [[ -n $(next_after "$r" 'READY=1') ]]; }
check "SIGHUP: RELOADING=1 then READY=1" wait_until 10 reloaded
r=$(next_after "$n" 'RELOADING=1')
check "RELOADING=1 carries MONOTONIC_USEC" eval '[[ $(msg "$r") == *MONOTONIC_USEC=* ]]'
check "READY=1 after the reload says it was applied" \
  eval '[[ $(msg "$(next_after "$r" "READY=1")") == *"STATUS=ready; config reloaded, peers: 1"* ]]'

n=$(grep -c '^msg ' "$LOG")
cp "$E2E_TMP/plain.toml" "$E2E_TMP/plain.good"
echo 'this is not = = toml' >>"$E2E_TMP/plain.toml"
kill -HUP "$DAEMON"
check "SIGHUP with a broken file: RELOADING=1 then READY=1" wait_until 10 reloaded
r=$(next_after "$n" 'RELOADING=1')
check "the STATUS after a failed reload says so" \
  eval '[[ $(msg "$(next_after "$r" "READY=1")") == *"reload failed, running config kept"* ]]'
cp "$E2E_TMP/plain.good" "$E2E_TMP/plain.toml"
check "still alive after the failed reload" pid_alive "$DAEMON"

# A hung main loop must starve the watchdog: the config file becomes a FIFO
# with no writer, so the loop blocks reading it (the file watch hashes it
# on the next event in its directory, which the listener's log provides).
# A second link to the FIFO releases the read afterwards.
say "run 1: main loop blocked on a FIFO config file"
mkfifo "$E2E_TMP/hang.fifo"
ln "$E2E_TMP/hang.fifo" "$E2E_TMP/hang.release"
mv "$E2E_TMP/hang.fifo" "$E2E_TMP/plain.toml"
# ping_silent_for SECONDS: the last WATCHDOG=1 is older than SECONDS.
ping_silent_for() {
  python3 -c 'import sys, time
ts = [float(l.split()[1]) for l in open(sys.argv[1]) if l.startswith("msg ") and "WATCHDOG=1" in l]
sys.exit(0 if ts and time.monotonic() - ts[-1] > float(sys.argv[2]) else 1)' "$LOG" "$1"
}
check "no WATCHDOG=1 for 1.5 s (over WATCHDOG_USEC) while the loop is blocked" \
  wait_until 15 ping_silent_for 1.5
check "the process itself is still there (only the watchdog can tell)" pid_alive "$DAEMON"
cp "$E2E_TMP/plain.good" "$E2E_TMP/plain.new"
mv "$E2E_TMP/plain.new" "$E2E_TMP/plain.toml"
n=$(grep -c '^msg ' "$LOG")
timeout 10 sh -c 'cat "$1" >"$2"' sh "$E2E_TMP/plain.good" "$E2E_TMP/hang.release" ||
  fail "could not release the blocked read"
rm -f "$E2E_TMP/hang.release"
pinged_again() { [[ -n $(next_after "$n" 'WATCHDOG=1') ]]; }
check "WATCHDOG=1 resumes once the loop runs again" wait_until 10 pinged_again

stop_daemon
check "SIGTERM: exit status 0 (got $DAEMON_RC)" test "$DAEMON_RC" = 0
last=$(grep '^msg ' "$LOG" | tail -n 1 | cut -d' ' -f3-)
check "STOPPING=1 (with its reason) is the last message (got '$last')" eval '[[ $last == "STOPPING=1|STATUS=stopping on signal 15" ]]'
stop_listener

say "run 2: a [mesh] whose store never answers: not ready"
start 2 "$E2E_TMP/mesh.toml" WATCHDOG_USEC=1000000
# Three seconds of pings: the daemon's main loop has turned ~30 times.
check "the watchdog is pinged while not ready" wait_until 20 has_at_least 'WATCHDOG=1' 7
check "STATUS names the failing mesh check" eval 'grep -q "STATUS=not ready: mesh: " "$LOG"'
check "no READY=1 while /readyz fails" test "$(count 'READY=1')" -eq 0
readyz_code=$(ip netns exec "$NS_A" python3 "$E2E_DIR/admin_http.py" "http://127.0.0.1:$PORT/readyz" --timeout 2) || true
check "/readyz is 500 meanwhile (got $readyz_code)" test "$readyz_code" = 500
stop_daemon
check "STOPPING=1 on SIGTERM before ready" eval 'grep -q "STOPPING=1" "$LOG"'
stop_listener

say "run 3: NOTIFY_SOCKET without WATCHDOG_USEC"
start 3 "$E2E_TMP/plain.toml"
require "READY=1 arrives" wait_until 30 has_at_least 'READY=1' 1
# Two more self tests (one a second) after READY: a window of over 1 s.
tests_run() {
  ip netns exec "$NS_A" python3 "$E2E_DIR/admin_http.py" "http://127.0.0.1:$PORT/metrics" \
    --out "$E2E_TMP/metrics-3.txt" --timeout 2 >/dev/null &&
    awk '$1 == "phantommesh_tunnel_tests_total" {exit !($2 >= 3)}' "$E2E_TMP/metrics-3.txt"
}
require "three self tests ran" wait_until 20 tests_run
check "no WATCHDOG=1 without WATCHDOG_USEC" test "$(count 'WATCHDOG')" -eq 0
stop_daemon
check "STOPPING=1 on SIGTERM" eval 'grep -q "STOPPING=1" "$LOG"'
stop_listener
