#!/bin/bash
# A 60 s soak against phantommesh: interval lines every 10 s with the
# target's memory, descriptors and CPU; memory judged after a 20 s warm-up.
# Then Ctrl-C: an interrupted run prints the summary so far and still removes
# its peers.
source "$(dirname "$0")/lib.sh"
lt_setup phantommesh

lt_loadtest --peers 200 --rate 10 --ramp 2s --duration 60s --interval 10s --warmup 20s --json \
    >"$LT_TMP/soak.json" 2>"$LT_TMP/soak.err"
rc=$?
grep '^\[' "$LT_TMP/soak.err" >&2
J() { lt_json "$LT_TMP/soak.json" "$1"; }
[ "$rc" -eq 0 ] || lt_fail "soak exit code $rc: $(J 'd["soak"]["failures"]')"
n=$(J 'len(d["intervals"])')
[ "$n" -ge 6 ] || lt_fail "$n interval lines, expected at least 6"
[ "$(grep -c '^\[.*target RSS .* MiB fds .* CPU .*%' "$LT_TMP/soak.err")" -ge 5 ] || lt_fail "interval lines lack target samples"
[ "$(J 'd["soak"]["pass"]')" = True ] || lt_fail "soak verdict: $(J 'd["soak"]')"
[ "$(J 'd["soak"]["baseline"] is not None')" = True ] || lt_fail "no memory baseline after warm-up"
# The slope is fitted over the samples after the 20 s warm-up, but 40 s is
# too short to judge it (10 minutes are needed); the text says so.
[ "$(J 'd["soak"]["warmup_s"] == 20 and d["soak"]["baseline_at_s"] >= 20')" = True ] || lt_fail "warm-up: $(J 'd["soak"]')"
[ "$(J 'd["soak"]["memory_slope"]["samples"] >= 4 and not d["soak"]["memory_slope"]["judged"]')" = True ] ||
    lt_fail "memory fit: $(J 'd["soak"]["memory_slope"]')"
[ "$(J 'all(i["probes_answered"] > 0 for i in d["intervals"])')" = True ] || lt_fail "an interval without answered probes"
lt_log "soak: $n intervals, memory growth $(J 'round(d["soak"]["memory_growth"] * 100, 2)')%, fds $(J 'd["soak"]["baseline"]["fds"]') -> $(J 'd["soak"]["last"]["fds"]')"
[ "$(lt_peer_count)" -eq 0 ] || lt_fail "peers left behind"

# Ctrl-C after a few seconds of a long run.
ip netns exec "$LT_NS_G" "$LT_BIN" loadtest --uapi "$LT_UAPI" --endpoint "$LT_T_IP:$LT_PORT" \
    --target-ip "$LT_TUN_IP" --peers 100 --ramp 1s --duration 10m --progress-every 0 >"$LT_TMP/int.txt" 2>&1 &
gen=$!
sleep 5
[ "$(lt_peer_count)" -eq 100 ] || lt_fail "the interrupted run's peers were not registered"
kill -INT "$gen"
wait "$gen"
rc=$?
cat "$LT_TMP/int.txt"
[ "$rc" -eq 0 ] || lt_fail "interrupted run: exit code $rc, expected 0 (its numbers pass)"
grep -q '^Stopped early (interrupted)' "$LT_TMP/int.txt" || lt_fail "no 'Stopped early' note"
grep -q '^Gate 2: Performance Validation' "$LT_TMP/int.txt" || lt_fail "no table after Ctrl-C"
# The default warm-up lasts past every peer's first rekey: ramp 1 s +
# REKEY_AFTER_TIME 120 s + 10 s.
grep -q '^Target: RSS .* (run shorter than the warm-up of 131s: memory not judged)$' "$LT_TMP/int.txt" ||
    lt_fail "the default warm-up is not 131 s"
[ "$(lt_peer_count)" -eq 0 ] || lt_fail "an interrupted run left $(lt_peer_count) peers"
lt_log "PASS: soak verdict, interval lines, Ctrl-C summary and cleanup"
