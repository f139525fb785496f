#!/bin/bash
# Runs every load test CI script in turn (each under a timeout) and ends
# with "N passed, N failed"; exits non-zero if any failed. Needs root and
# a release build (cargo build --release; or PM / LT_BIN naming the binary).
cd "$(dirname "$0")" || exit 2
passed=0
failed=0
for t in ci_metrics.sh ci_gate_fail.sh ci_cookie.sh ci_soak.sh ci_report_browser.sh; do
    start=$SECONDS
    echo "==> $t"
    if timeout --kill-after=10 300 bash "$t"; then
        passed=$((passed + 1))
        echo "==> PASS: $t ($((SECONDS - start))s)"
    else
        failed=$((failed + 1))
        echo "==> FAIL: $t ($((SECONDS - start))s)"
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
