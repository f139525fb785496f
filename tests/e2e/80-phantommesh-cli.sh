#!/usr/bin/env bash
# phantommesh's own command line (skipped, exit 77, when IMPL is not
# phantommesh):
#   * genkey / pubkey / genpsk behave like wg's: base64 32-byte keys, pubkey
#     agrees with `wg pubkey` (including on unclamped input), bad input is an
#     error, not a panic;
#   * `phantommesh run --config FILE.conf` (wg-quick format) brings up the
#     interface named after the file, with its addresses, and talks to a
#     wireguard-go peer; SIGTERM stops it and removes the socket;
#   * a mistyped subcommand (`stauts`) is refused with exit 2 and leaves no
#     interface, socket or process; `-f -- stauts` runs the daemon;
#   * a bad tuning value ([tuning] key or PHANTOMMESH_* variable) is exit 2
#     naming its source, in run, run --check and the wireguard-go form;
#   * the exit codes 0/1/2/3 (README, "Exit codes"), the `-o json` output of
#     gate, status, mesh status, preflight and loadtest against the README's
#     shapes (cli_json.py), `run --check` on good and bad configs, --help,
#     completions and the man page.
source "$(dirname "$0")/lib.sh"
e2e_init

require_phantommesh
pm() { timeout 10 "${PM_ARGV[@]}" "$@"; }

is_key() { # a base64 line that decodes to 32 bytes
  [[ $1 =~ ^[A-Za-z0-9+/]{43}=$ ]] && [[ $(printf '%s' "$1" | base64 -d | wc -c) == 32 ]]
}
k1=$(pm genkey)
k2=$(pm genkey)
check "genkey prints a base64 32-byte key" is_key "$k1"
check "genkey gives a new key each time" test "$k1" != "$k2"
wg_accepts() { printf '%s\n' "$1" | wg pubkey >/dev/null; }
check "wg pubkey accepts genkey's key" wg_accepts "$k1"
p1=$(printf '%s\n' "$k1" | pm pubkey)
check "pubkey agrees with wg pubkey" test "$p1" = "$(printf '%s\n' "$k1" | wg pubkey)"
wk=$(wg genkey)
check "pubkey of a wg genkey key agrees with wg" \
  test "$(printf '%s\n' "$wk" | pm pubkey)" = "$(printf '%s\n' "$wk" | wg pubkey)"
# Raw random bytes: the top/bottom bits are not clamped; both must clamp alike.
raw=$(head -c 32 /dev/urandom | base64)
check "pubkey clamps unclamped input like wg" \
  test "$(printf '%s\n' "$raw" | pm pubkey)" = "$(printf '%s\n' "$raw" | wg pubkey)"
s1=$(pm genpsk)
s2=$(pm genpsk)
check "genpsk prints a base64 32-byte key" is_key "$s1"
check "genpsk gives a new key each time" test "$s1" != "$s2"
for bad in "not a key" "" "$(head -c 31 /dev/urandom | base64)"; do
  st=0
  out=$(printf '%s\n' "$bad" | pm pubkey 2>&1) || st=$?
  check "pubkey rejects '${bad:0:12}' with an error (status $st)" \
    test "$st" -ne 0 -a "$st" -lt 100
  [[ $out != *panicked* ]] || fail "pubkey panicked on '${bad:0:12}'"
done

say "run --config (wg-quick format)"
ns_create "$NS_A" "$NS_B"
ns_link "$NS_A" 1 "$NS_B" 2 0
keygen a b
new_if IFR r
new_if IFB b
CONF_DIR=$E2E_TMP/conf
mkdir -m 700 "$CONF_DIR"
cat >"$CONF_DIR/$IFR.conf" <<EOF
[Interface]
PrivateKey = $(cat "$(keyfile a)")
ListenPort = 51821
Address = $(inner4 1)/24, $(inner6 1)/64

[Peer]
PublicKey = $(pub b)
AllowedIPs = $(inner4 2)/32, $(inner6 2)/128
Endpoint = $(outer4 0 2):51822
EOF
chmod 600 "$CONF_DIR/$IFR.conf"
start_impl "$NS_B" "$IFB" "$WGGO"
node_up "$NS_B" "$IFB" b 51822 2
peer_add "$NS_B" "$IFB" a "$(inner4 1)/32,$(inner6 1)/128"

ip netns exec "$NS_A" env LOG_LEVEL="$E2E_LOG_LEVEL" "${PM_ARGV[@]}" run --config "$CONF_DIR/$IFR.conf" \
  >"$E2E_TMP/$IFR.log" 2>&1 &
RPID=$!
E2E_PIDS+=("$RPID")
if wait_until 15 sock_ready "$IFR"; then
  pass "run --config serves $(sock_of "$IFR")"
else
  tail -n 20 "$E2E_TMP/$IFR.log" | sed 's/^/    /'
  die "run --config: no UAPI socket for $IFR"
fi
has_addr() { [[ $(ip -n "$NS_A" addr show dev "$IFR") == *" $1 "* ]]; }
check "address $(inner4 1)/24 assigned" wait_until 5 has_addr "$(inner4 1)/24"
check "address $(inner6 1)/64 assigned" wait_until 5 has_addr "$(inner6 1)/64"
peer_listed() { [[ $(wg_in "$NS_A" show "$IFR" peers) == "$(pub b)" ]]; }
check "wg show lists the peer from the file" peer_listed
check "ping the wireguard-go peer (IPv4)" ping_ok "$NS_A" "$(inner4 2)"
check "ping the wireguard-go peer (IPv6)" ping_ok "$NS_A" "$(inner6 2)"
kill -TERM "$RPID"
check "run --config exits on SIGTERM" wait_until 10 pid_gone "$RPID"
check "socket removed" wait_until 5 sock_gone "$IFR"
check "interface removed" wait_until 5 link_gone "$NS_A" "$IFR"

say "typos and the wireguard-go form"
# pm_ns NAME ARGS...: phantommesh ARGS inside NS_A; OUT, ERR, RC for checks.
pm_ns() {
  local name=$1
  shift
  OUT=$E2E_TMP/$name.out ERR=$E2E_TMP/$name.err RC=0
  timeout 60 ip netns exec "$NS_A" "${PM_ARGV[@]}" "$@" >"$OUT" 2>"$ERR" || RC=$?
}
rc_is() {
  [[ $RC == "$1" ]] && return 0
  echo "    exit status $RC, want $1; stderr: $(head -c 400 "$ERR")"
  return 1
}
json_is() { # KIND [--pass|--fail]: $OUT against the documented shape
  python3 "$E2E_DIR/cli_json.py" "$1" "$OUT" "${@:2}" | sed 's/^/    /'
  return "${PIPESTATUS[0]}"
}
ns_quiet() { [[ -z $(ip netns pids "$NS_A") ]]; }

require "nothing runs in $NS_A before the typo checks" wait_until 10 ns_quiet
for typo in stauts gaet mseh preflihgt; do
  [[ ! -e $WG_RUN_DIR/$typo.sock ]] || die "$WG_RUN_DIR/$typo.sock exists before the test"
  pm_ns "typo-$typo" "$typo"
  check "typo '$typo': exit 2" rc_is 2
  check "typo '$typo': suggests a subcommand" grep -q 'did you mean `[a-z]*`?' "$ERR"
  check "typo '$typo': no interface" link_gone "$NS_A" "$typo"
  check "typo '$typo': no UAPI socket" test ! -e "$WG_RUN_DIR/$typo.sock"
  check "typo '$typo': no process left behind" ns_quiet
done
check "typo 'stauts': the suggestion is status" grep -qF 'did you mean `status`?' "$E2E_TMP/typo-stauts.err"
E2E_IFS+=(stauts)
e2e_register "sock $WG_RUN_DIR/stauts.sock"
start_impl "$NS_A" stauts "$IMPL -f --"
pass "-f -- stauts: the wireguard-go form (interface and socket up)"
kill -TERM "${E2E_PID_OF[stauts]}"
check "-f -- stauts: stops on SIGTERM, socket removed" \
  eval 'wait_until 10 pid_gone "${E2E_PID_OF[stauts]}" && wait_until 5 sock_gone stauts'

say "help, completions, man page"
pm_ns help --help
check "--help: exit 0, both forms, exit codes, environment" \
  eval 'rc_is 0 && grep -qF "phantommesh [-f|--foreground] [--] IFNAME" "$OUT" &&
    grep -qF "phantommesh run --config FILE" "$OUT" && grep -q "^Exit codes" "$OUT" &&
    grep -q "3  a node cannot be reached" "$OUT" && grep -q "PHANTOMMESH_ADMIN_LISTEN" "$OUT"'
pm_ns comp-bash completions bash
check "completions bash: a script bash accepts" \
  eval 'rc_is 0 && grep -q "complete -F _phantommesh" "$OUT" && bash -n "$OUT"'
pm_ns comp-zsh completions zsh
check "completions zsh: a #compdef script" eval 'rc_is 0 && head -1 "$OUT" | grep -q "^#compdef phantommesh"'
pm_ns comp-fish completions fish
check "completions fish: complete -c lines" eval 'rc_is 0 && grep -q "^complete -c phantommesh" "$OUT"'
pm_ns comp-bad completions tcsh
check "completions tcsh: exit 2 (not a supported shell)" rc_is 2
pm_ns man manpage
check "manpage: roff with every subcommand" \
  eval 'rc_is 0 && grep -q "^\.TH phantommesh 1" "$OUT" && grep -q "gate" "$OUT" && grep -q "completions" "$OUT"'
mkdir "$E2E_TMP/man"
pm_ns man-dir manpage --dir "$E2E_TMP/man"
check "manpage --dir: a page per subcommand" \
  eval 'rc_is 0 && grep -q "^\.TH phantommesh-gate 1" "$E2E_TMP/man/phantommesh-gate.1" &&
    test -s "$E2E_TMP/man/phantommesh.1" && test -s "$E2E_TMP/man/phantommesh-mesh-status.1"'
pm_ns man-nodir manpage --dir "$E2E_TMP/no-such-dir"
check "manpage --dir (no such directory): exit 2" rc_is 2

say "run --check"
keygen m
new_if IFM m
cat >"$CONF_DIR/mesh.toml" <<EOF2
[interface]
name = "$IFM"
private_key_file = "$(keyfile m)"
listen_port = 51990
[admin]
listen = "127.0.0.1:9586"
[mesh]
store = "etcd"
endpoints = ["http://127.0.0.1:9"]
node_name = "solo"
network = "10.77.0.0/24"
EOF2
pm_ns check-toml run --check --config "$CONF_DIR/mesh.toml"
check "run --check (TOML with [mesh]): exit 0, says what it found" \
  eval 'rc_is 0 && grep -q "^interface: $IFM" "$OUT" && grep -q "^mesh: etcd at" "$OUT" && grep -q "config OK" "$OUT"'
check "run --check prints no private key" eval '! grep -qF "$(cat "$(keyfile m)")" "$OUT"'
pm_ns check-conf run --check --config "$CONF_DIR/$IFR.conf"
check "run --check (wg-quick .conf): exit 0" eval 'rc_is 0 && grep -q "(wg-quick .conf)" "$OUT"'
sed 's/listen_port = 51990/listen_port = 99999/' "$CONF_DIR/mesh.toml" >"$CONF_DIR/bad.toml"
pm_ns check-bad run --check --config "$CONF_DIR/bad.toml"
check "run --check (bad value): exit 2, names file and line" \
  eval 'rc_is 2 && grep -qF "$CONF_DIR/bad.toml:4:" "$ERR"'
sed 's|^\[admin\]|[admin]\ntoken_file = "/nonexistent/token"|' "$CONF_DIR/mesh.toml" >"$CONF_DIR/notoken.toml"
pm_ns check-notoken run --check --config "$CONF_DIR/notoken.toml"
check "run --check (unreadable token file): exit 2, names it" \
  eval 'rc_is 2 && grep -qF "/nonexistent/token" "$ERR"'
pm_ns check-missing run --check --config "$CONF_DIR/missing.toml"
check "run --check (no such file): exit 2" rc_is 2
pm_ns run-bad run --config "$CONF_DIR/bad.toml"
check "run with a bad config: exit 2, no interface" eval 'rc_is 2 && link_gone "$NS_A" "$IFM"'
check "run --check touched nothing (no interface, no socket)" \
  eval 'link_gone "$NS_A" "$IFM" && sock_gone "$IFM" && ns_quiet'

say "tuning: a bad value from each source is an error naming it"
# pm_env NAME VAR=VALUE ARGS...: as pm_ns, with one variable set.
pm_env() {
  local name=$1 var=$2
  shift 2
  OUT=$E2E_TMP/$name.out ERR=$E2E_TMP/$name.err RC=0
  timeout 60 ip netns exec "$NS_A" env "$var" "${PM_ARGV[@]}" "$@" >"$OUT" 2>"$ERR" || RC=$?
}
printf '[tuning]\nworkers = 2\noffload = false\ninline_batch = 8\n' | cat "$CONF_DIR/mesh.toml" - >"$CONF_DIR/tuned.toml"
pm_ns check-tuned run --check --config "$CONF_DIR/tuned.toml"
check "run --check ([tuning]): exit 0, shows the tuning" \
  eval 'rc_is 0 && grep -q "^tuning: crypto workers 2, inline crypto up to 8 packets, .*offloads off" "$OUT"'
printf '[tuning]\nworkers = 0\n' | cat "$CONF_DIR/mesh.toml" - >"$CONF_DIR/badtune.toml"
line=$(grep -n '^workers = 0' "$CONF_DIR/badtune.toml" | cut -d: -f1)
pm_ns check-badtune run --check --config "$CONF_DIR/badtune.toml"
check "run --check ([tuning] workers = 0): exit 2, names file, line and key" \
  eval 'rc_is 2 && grep -qF "$CONF_DIR/badtune.toml:$line: [tuning] workers 0" "$ERR"'
pm_ns run-badtune run --config "$CONF_DIR/badtune.toml"
check "run ([tuning] workers = 0): exit 2, no interface" \
  eval 'rc_is 2 && grep -qF "[tuning] workers" "$ERR" && link_gone "$NS_A" "$IFM"'
for var in PHANTOMMESH_WORKERS=many PHANTOMMESH_IO_THREADS=99 PHANTOMMESH_PACKET_METRICS=maybe \
  PHANTOMMESH_OFFLOAD=perhaps PHANTOMMESH_UDP_RCVBUF=12 PHANTOMMESH_INLINE_BATCH=all; do
  pm_env "check-env-${var%%=*}" "$var" run --check --config "$CONF_DIR/mesh.toml"
  check "run --check with $var: exit 2, names the variable" \
    eval 'rc_is 2 && grep -qF "${var%%=*}: invalid value" "$ERR"'
done
pm_env run-env PHANTOMMESH_WORKERS=many run --config "$CONF_DIR/mesh.toml"
check "run with PHANTOMMESH_WORKERS=many: exit 2, no interface" \
  eval 'rc_is 2 && grep -qF "PHANTOMMESH_WORKERS: invalid value" "$ERR" && link_gone "$NS_A" "$IFM"'
pm_env wg-env PHANTOMMESH_OFFLOAD=perhaps -f "$IFM"
check "wireguard-go form with PHANTOMMESH_OFFLOAD=perhaps: exit 2, no interface, no socket" \
  eval 'rc_is 2 && grep -qF "PHANTOMMESH_OFFLOAD: invalid value" "$ERR" && link_gone "$NS_A" "$IFM" && sock_gone "$IFM"'
pm_env wg-env-bg PHANTOMMESH_WORKERS=0 "$IFM"
check "wireguard-go form (daemonizing) with PHANTOMMESH_WORKERS=0: exit 2 before the fork" \
  eval 'rc_is 2 && grep -qF "PHANTOMMESH_WORKERS: invalid value" "$ERR" && link_gone "$NS_A" "$IFM" && ns_quiet'

say "exit codes and JSON output against a running daemon ([mesh], store down)"
ip netns exec "$NS_A" env LOG_LEVEL="$E2E_LOG_LEVEL" "${PM_ARGV[@]}" run --config "$CONF_DIR/mesh.toml" \
  >"$E2E_TMP/$IFM.log" 2>&1 &
MPID=$!
E2E_PIDS+=("$MPID")
e2e_register "pid $MPID"
mesh_answers() { pm_ns mesh-poll mesh status && [[ $RC == 1 ]]; }
require "the daemon's admin API answers /mesh" wait_until 20 mesh_answers
pm_ns mesh-json mesh status -o json
check "mesh status -o json (store down): exit 1, the documented shape" \
  eval 'rc_is 1 && json_is mesh --fail'
pm_ns mesh-json2 mesh status --json
check "mesh status --json: the same as -o json" eval 'rc_is 1 && json_is mesh --fail'
pm_ns status-json status -o json
check "status -o json: exit 0 or 1, the documented shape" \
  eval '{ rc_is 0 || rc_is 1; } && json_is status && grep -qF "\"interface\": \"$IFM\"" "$OUT"'
pm_ns gate-json gate --url http://127.0.0.1:9586 -o json
check "gate -o json: exit 0 or 1, the documented shape" \
  eval '{ rc_is 0 || rc_is 1; } && json_is gate'
pm_ns gate-nope gate --url http://127.0.0.1:9586 --gate nope
check "gate --gate nope: exit 2 (usage)" rc_is 2
pm_ns preflight-json preflight --config "$CONF_DIR/mesh.toml" -o json
check "preflight -o json (ports held by the daemon): exit 1, the documented shape" \
  eval 'rc_is 1 && json_is preflight --fail'
pm_ns preflight-bad preflight --config "$CONF_DIR/bad.toml"
check "preflight with a bad config: exit 2" rc_is 2
pm_ns token-missing status --token-file "$E2E_TMP/no-such-token"
check "status with an unreadable token file: exit 2" rc_is 2
pm_ns usage-nourl gate
check "gate without --url: exit 2 (clap usage)" rc_is 2
pm_ns usage-output status -o yaml
check "status -o yaml: exit 2" rc_is 2
# Nobody listens on port 9 in this namespace's loopback.
for cmd in "gate --url" "status --url" "mesh status --url"; do
  read -ra argv <<<"$cmd"
  pm_ns "dead-${argv[0]}" "${argv[@]}" http://127.0.0.1:9
  check "$cmd http://127.0.0.1:9 (nobody listens): exit 3" rc_is 3
done
pm_ns dead-gate-json gate --url http://127.0.0.1:9 -o json
check "gate -o json on an unreachable node: exit 3, the shape with an error" \
  eval 'rc_is 3 && json_is gate --fail && grep -q "\"error\": \".*cannot connect" "$OUT"'
pm_ns dead-status-json status --url http://127.0.0.1:9 -o json
check "status -o json on an unreachable node: exit 3, the documented shape" \
  eval 'rc_is 3 && json_is status --fail'
pm_ns mixed gate --url http://127.0.0.1:9586 http://127.0.0.1:9
check "gate, one node up and one unreachable: exit 3" rc_is 3
pm_ns lt-json loadtest --uapi "$(sock_of "$IFM")" --peers 4 --ramp 0s --duration 1s \
  --rate 5 --probe-timeout 300ms --handshake-deadline 3s -o json
check "loadtest -o json (probes go nowhere): exit 1, the documented shape" \
  eval 'rc_is 1 && json_is loadtest --fail'
pm_ns genkey genkey
check "genkey: exit 0" rc_is 0
pm_ns pubkey-bad pubkey </dev/null
check "pubkey without a key: exit 2" rc_is 2
kill -TERM "$MPID"
check "the [mesh] daemon stops on SIGTERM" wait_until 10 pid_gone "$MPID"
