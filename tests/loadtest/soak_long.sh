#!/bin/bash
# A long soak against phantommesh (not part of CI: it takes as long as its
# DURATION): 500 peers at 10 probes/s each (5,000 probes/s), an interval
# line with the target's memory, descriptors and CPU every minute, the
# default warm-up, and the memory verdict (total growth and slope).
#
#   DURATION=1h bash tests/loadtest/soak_long.sh [OUT_PREFIX]
#
# Writes OUT_PREFIX.json (the result, with every interval's target sample),
# OUT_PREFIX.err (interval lines), OUT_PREFIX.html (the report) and
# OUT_PREFIX.load (the machine's load average each minute); OUT_PREFIX
# defaults to /tmp/soak-DATE. Exits with the load test's exit code.
source "$(dirname "$0")/lib.sh"
out=${1:-/tmp/soak-$(date -u +%Y%m%dT%H%M%SZ)}
lt_setup phantommesh

# The machine's load, once a minute, for the figures (killed on exit).
( while :; do echo "$(date -u +%T) $(cut -d' ' -f1-3 /proc/loadavg)"; sleep 60; done ) >"$out.load" &
LT_PIDS+=($!)

lt_log "soak: ${PEERS:-500} peers at ${RATE:-10}/s for ${DURATION:-1h}, results in $out.*"
lt_loadtest --peers "${PEERS:-500}" --rate "${RATE:-10}" --duration "${DURATION:-1h}" \
    --interval "${INTERVAL:-60s}" --progress-every 0 --json --report "$out.html" \
    >"$out.json" 2>"$out.err"
rc=$?
lt_log "soak exit code $rc: $(lt_json "$out.json" 'd["soak"]["failures"] or "pass"')"
exit "$rc"
