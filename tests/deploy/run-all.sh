#!/usr/bin/env bash
# Runs every deploy check (tests/deploy/0*.sh) and prints one summary line.
# As root on Debian: the checks install what they need (prometheus,
# iproute2, curl, iputils-ping, python3-venv; kubernetes-client only when
# kubectl is missing; PyPI packages pinned in requirements.txt).
#   PHANTOMMESH_BIN=path/to/phantommesh   skip the release build
#   K8S_SCHEMA_VERSION=1.32.0             Kubernetes schema to validate against
source "$(dirname "$0")/lib.sh"
# Build (or locate) the daemon once for the checks that run it.
phantommesh_bin
export PHANTOMMESH_BIN=$BIN
passed=0 failed=0 failures=()
for t in "$DEPLOY_TESTS_DIR"/0*.sh; do
    name=$(basename "$t" .sh)
    start=$SECONDS
    if bash "$t"; then
        passed=$((passed + 1))
        echo "--- $name: ok ($((SECONDS - start)) s)"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "--- $name: FAILED ($((SECONDS - start)) s)"
    fi
done
[ $failed -eq 0 ] || echo "failed: ${failures[*]}"
echo "deploy: $passed passed, $failed failed"
[ $failed -eq 0 ]
