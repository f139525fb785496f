#!/bin/bash
# Exit codes: 1 when a gate fails (an impossible P99 target, a gates file
# with an impossible throughput), 2 for a run that cannot be
# set up; the table says which metric failed; peers are removed either way.
source "$(dirname "$0")/lib.sh"
lt_setup phantommesh

lt_loadtest --peers 50 --duration 3s --ramp 1s --p99-target 0.001ms --progress-every 0 >"$LT_TMP/out.txt" 2>&1
rc=$?
cat "$LT_TMP/out.txt"
[ "$rc" -eq 1 ] || lt_fail "impossible P99 target: exit code $rc, expected 1"
grep -Eq '^P99 Latency +≤0\.001ms .*❌ FAIL' "$LT_TMP/out.txt" || lt_fail "the table does not show P99 failing"
grep -Eq '^Success Rate .*✅ PASS' "$LT_TMP/out.txt" || lt_fail "the other metrics should still pass"
grep -q '^Result: FAIL' "$LT_TMP/out.txt" || lt_fail "no Result: FAIL line"
[ "$(lt_peer_count)" -eq 0 ] || lt_fail "peers left behind after a failing run"

# A gates file works the same way.
cat >"$LT_TMP/gates.toml" <<'TOML'
[[gate]]
name = "performance"
title = "Gate 2: Performance Validation"
throughput = ">= 1000000/s"
TOML
lt_loadtest --peers 20 --duration 2s --ramp 0.5s --gates "$LT_TMP/gates.toml" --json >"$LT_TMP/g.json" 2>/dev/null
rc=$?
[ "$rc" -eq 1 ] || lt_fail "--gates with an impossible throughput: exit code $rc, expected 1"
[ "$(lt_json "$LT_TMP/g.json" 'd["gate"]["gates"][0]["metrics"][0]["pass"]')" = False ] || lt_fail "JSON does not show the failing gate"

# Setup errors are 2, not 1.
"$LT_BIN" loadtest --uapi /nonexistent/x.sock --duration 1s >/dev/null 2>&1
rc=$?
[ "$rc" -eq 2 ] || lt_fail "missing UAPI socket: exit code $rc, expected 2"
lt_log "PASS: failing gate exits 1, setup error exits 2"
