#!/usr/bin/env bash
# Check 7: the systemd unit (deploy/systemd/phantommesh.service), as far as a
# machine without systemd as PID 1 allows:
#  - `systemd-analyze verify` on the shipped unit: its only complaint may be
#    the missing /usr/bin/phantommesh (not installed here); a copy whose
#    ExecStart names the built binary verifies clean;
#  - `systemd-analyze security --offline`: exposure at most 3.0 ("OK");
#  - the SystemCallFilter: the real daemon, under strace in a namespace of
#    its own (the ConfigMap's config, [mesh] included, as check 3), through
#    readiness, /metrics, a SIGHUP reload and SIGTERM, makes no system call
#    the unit's filter would refuse.
# What only systemd can do (the sandbox's mounts, the notify socket) is
# covered by tests/e2e/88-systemd-notify.sh with a socket the test creates.
source "$(dirname "$0")/lib.sh"
need_cmd systemd-analyze systemd
need_cmd strace strace
need_cmd ip iproute2
need_cmd curl curl
phantommesh_bin
unit=$REPO_ROOT/deploy/systemd/phantommesh.service
work=$(mktemp -d /tmp/pm-systemd.XXXXXX)
add_cleanup "rm -rf '$work'"

log "systemd-analyze verify (shipped unit)"
rc=0
out=$(systemd-analyze verify "$unit" 2>&1) || rc=$?
if [ -x /usr/bin/phantommesh ]; then
    { [ $rc -eq 0 ] && [ -z "$out" ]; } || fail "verify: $out"
else
    other=$(printf '%s\n' "$out" | grep -v 'Command /usr/bin/phantommesh is not executable' || true)
    [ -z "$other" ] || fail "verify complains about more than the missing binary: $other"
    log "  only complaint: /usr/bin/phantommesh is not installed on this machine"
fi

log "systemd-analyze verify (copy with ExecStart=$BIN)"
mkdir "$work/unit"
sed "s|/usr/bin/phantommesh|$BIN|" "$unit" >"$work/unit/phantommesh.service"
grep -q "^ExecStart=$BIN run --config /etc/phantommesh/phantommesh.toml\$" "$work/unit/phantommesh.service" \
    || fail "test setup: ExecStart not rewritten"
rc=0
out=$(systemd-analyze verify "$work/unit/phantommesh.service" 2>&1) || rc=$?
{ [ $rc -eq 0 ] && [ -z "$out" ]; } || fail "verify (rc $rc): $out"

log "systemd-analyze security --offline"
sec=$(systemd-analyze security --offline=yes "$work/unit/phantommesh.service" 2>&1 | tail -n 1)
score=$(printf '%s\n' "$sec" | sed -n 's/.*exposure level for phantommesh.service: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || fail "no exposure score in: $sec"
log "  $sec"
awk -v s="$score" 'BEGIN { exit !(s <= 3.0) }' || fail "exposure $score above 3.0"

log "system calls of the real daemon vs SystemCallFilter"
ns=pmd-sysd-$$
ifname=pms$$
make_netns "$ns"
cfg=$work/phantommesh.toml
sed -e '/^\[interface\]/a addresses = ["10.100.0.1/16"]' \
    -e '/^\(ca_file\|cert_file\|key_file\) = /d' \
    "$REPO_ROOT/deploy/kubernetes/config/phantommesh.toml" >"$cfg"
add_cleanup "rm -f /var/run/wireguard/$ifname.sock"
start_bg "$work/pid" "$work/daemon.log" env \
    PHANTOMMESH_INTERFACE="$ifname" \
    PHANTOMMESH_PRIVATE_KEY_FILE="$work/private.key" \
    PHANTOMMESH_ADMIN_LISTEN=127.0.0.1:9586 \
    PHANTOMMESH_GATES="$REPO_ROOT/deploy/kubernetes/config/gates.toml" \
    PHANTOMMESH_NODE_NAME=node-a PHANTOMMESH_ADVERTISE_ENDPOINT=127.0.0.1 \
    PHANTOMMESH_MESH_ENDPOINTS=http://127.0.0.1:2379 \
    ip netns exec "$ns" strace -f -qq -o "$work/trace" "$BIN" run --config "$cfg"
scrape() { ip netns exec "$ns" curl -sf --max-time 2 "http://127.0.0.1:9586$1"; }
wait_until 60 scrape '/readyz?exclude=mesh' || { tail -n 30 "$work/daemon.log"; fail "daemon not ready within 60 s"; }
scrape /metrics >"$work/metrics.txt" || fail "scrape failed"
grep -q '^process_open_fds ' "$work/metrics.txt" || fail "no process_open_fds in the scrape"
daemon=$(pgrep -f -- "^$BIN run --config $cfg\$" | head -n 1)
[ -n "$daemon" ] || fail "daemon PID not found"
kill -HUP "$daemon"
wait_until 10 grep -q 'config reloaded' "$work/daemon.log" || fail "no reload after SIGHUP"
kill -TERM "$daemon"
wait_until 15 sh -c "! kill -0 $daemon" || fail "daemon did not stop on SIGTERM"
wait_until 10 sh -c "! kill -0 $(cat "$work/pid")" || fail "strace did not exit"

# Every syscall name the daemon made (entries and resumed calls alike).
sed -n 's/^[0-9]\+ \+\(<\.\.\. \)\?\([a-z0-9_]\+\)[( ].*/\2/p' "$work/trace" | sort -u >"$work/used"
[ "$(wc -l <"$work/used")" -gt 20 ] || fail "too few system calls traced: $(tr '\n' ' ' <"$work/used")"
# The filter's allowed set.
expand() { # GROUP|NAME...: syscall names, groups expanded recursively
    local x
    for x in "$@"; do
        case $x in
            @*) systemd-analyze syscall-filter "$x" | sed -n 's/^ \+\([-@a-z0-9_]\+\)$/\1/p' |
                    while read -r y; do expand "$y"; done ;;
            *) echo "$x" ;;
        esac
    done
}
# systemd applies the lines in order (systemd.exec(5)): the first, an allow
# list here, sets the base; a later "~" line removes its calls, a later
# plain line adds them back.
: >"$work/allowed"
first=1
while IFS= read -r line; do
    # shellcheck disable=SC2086 # the unit's lists are space-separated words
    if [[ $line == "~"* ]]; then
        expand ${line#\~} | sort -u >"$work/deny"
        comm -23 "$work/allowed" "$work/deny" >"$work/next"
    else
        ((first)) || [ -n "$line" ] || fail "test setup: an empty SystemCallFilter= resets the filter"
        expand $line | sort -u | sort -u -m - "$work/allowed" >"$work/next"
    fi
    first=0
    mv "$work/next" "$work/allowed"
done < <(sed -n 's/^SystemCallFilter=//p' "$unit")
[ "$(wc -l <"$work/allowed")" -gt 100 ] || fail "test setup: allowed set too small"
refused=$(comm -23 "$work/used" "$work/allowed")
log "  $(wc -l <"$work/used") distinct system calls used, $(wc -l <"$work/allowed") allowed"
[ -z "$refused" ] || fail "system calls the unit's SystemCallFilter refuses: $(echo "$refused" | tr '\n' ' ')"
log "ok"
