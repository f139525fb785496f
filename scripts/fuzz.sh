#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (cargo-fuzz, libFuzzer, AddressSanitizer,
# debug assertions and overflow checks) for SECONDS each:
#
#   bash scripts/fuzz.sh [SECONDS]        (default 20)
#
# Installs cargo-fuzz (`cargo install cargo-fuzz --locked`) when missing and
# builds with the nightly toolchain (the product itself stays on stable).
# Each target starts from its committed seeds (fuzz/seeds/TARGET) plus
# whatever an earlier run left in fuzz/corpus/TARGET (not committed).
# Fails when any target crashes, leaks, times out (one input over
# FUZZ_TIMEOUT seconds) or runs out of memory; a failing input is kept in
# fuzz/artifacts/TARGET/. Ends with one line per target: executions,
# executions per second, coverage (libFuzzer's cov and ft) and corpus size.
#
# Environment:
#   FUZZ_TARGETS="cookie config"  run only these targets
#   FUZZ_BUDGET=480               seconds for the whole run, installing and
#                                 building included: each target then gets
#                                 at most SECONDS, less if the build was slow
#                                 (at least 5 s each)
#   FUZZ_TIMEOUT=10               seconds one input may take
#   FUZZ_RSS_MB=2048              memory limit per target
#   FUZZ_NICE=0                   niceness of the fuzzing processes
#   FUZZ_PARALLEL=N               targets run at once (default: the CPUs,
#                                 at most 4)
#   FUZZ_NO_INSTALL=1             never install cargo-fuzz; fail if missing
set -uo pipefail
START=$SECONDS
cd "$(dirname "$0")/../fuzz" || exit 1
FUZZ_DIR=$(pwd)
SECS=${1:-20}
TIMEOUT=${FUZZ_TIMEOUT:-10}
RSS=${FUZZ_RSS_MB:-2048}
NICE=${FUZZ_NICE:-0}
PARALLEL=${FUZZ_PARALLEL:-$(nproc)}
((PARALLEL > 4)) && PARALLEL=4
((PARALLEL < 1)) && PARALLEL=1

export PATH=${CARGO_HOME:-$HOME/.cargo}/bin:$PATH
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  if [[ -n ${FUZZ_NO_INSTALL:-} ]]; then
    echo "fuzz: cargo-fuzz missing and FUZZ_NO_INSTALL is set" >&2
    exit 1
  fi
  echo "fuzz: installing cargo-fuzz"
  # Its own target dir: a shared CARGO_TARGET_DIR must not get its artefacts.
  env -u CARGO_TARGET_DIR cargo install cargo-fuzz --locked || exit 1
fi
echo "fuzz: $(cargo +nightly fuzz --version), $(rustup run nightly rustc --version)"

# The fuzz crate's own target dir, whatever the caller's CARGO_TARGET_DIR.
unset CARGO_TARGET_DIR
t0=$SECONDS
if ! nice -n "$NICE" cargo +nightly fuzz build; then
  echo "fuzz: build failed" >&2
  exit 1
fi
echo "fuzz: built in $((SECONDS - t0))s"
BIN_DIR=$FUZZ_DIR/target/$(rustup run nightly rustc -vV | sed -n 's/^host: //p')/release

# gen_seeds is the seed generator, not a target.
mapfile -t ALL < <(cargo +nightly fuzz list | grep -vx gen_seeds)
TARGETS=("${ALL[@]}")
[[ -n ${FUZZ_TARGETS:-} ]] && read -ra TARGETS <<<"$FUZZ_TARGETS"

if [[ -n ${FUZZ_BUDGET:-} ]]; then
  # What is left after the build, shared out among the rounds of PARALLEL
  # targets, with 10 s per target for start-up and the final merge.
  left=$((FUZZ_BUDGET - (SECONDS - START)))
  rounds=$(((${#TARGETS[@]} + PARALLEL - 1) / PARALLEL))
  share=$((left / rounds - 10))
  ((share < SECS)) && SECS=$share
  ((SECS < 5)) && SECS=5
  echo "fuzz: ${left}s of the ${FUZZ_BUDGET}s budget left: ${SECS}s per target"
fi

LOG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/phantommesh-fuzz.XXXXXX")
SUMMARY=()
FAILED=0
stat_of() { # NAME LOG: a final-stats value
  sed -n "s/^stat::$1: *//p" "$2" | tail -n 1
}
# run_target TARGET: fuzzes it; its log in LOG_DIR/TARGET.log, exit status
# in LOG_DIR/TARGET.rc.
run_target() {
  local t=$1 corpus=$FUZZ_DIR/corpus/$1 seeds=()
  mkdir -p "$corpus" "$FUZZ_DIR/artifacts/$t"
  [[ -d $FUZZ_DIR/seeds/$t ]] && seeds=("$FUZZ_DIR/seeds/$t")
  echo "fuzz: $t for ${SECS}s"
  # libFuzzer: the first directory receives new inputs; the seeds are read.
  nice -n "$NICE" "$BIN_DIR/$t" "$corpus" "${seeds[@]}" \
    -max_total_time="$SECS" -timeout="$TIMEOUT" -rss_limit_mb="$RSS" \
    -print_final_stats=1 -artifact_prefix="$FUZZ_DIR/artifacts/$t/" >"$LOG_DIR/$t.log" 2>&1
  echo $? >"$LOG_DIR/$t.rc"
}
running=0
for t in "${TARGETS[@]}"; do
  if ((running >= PARALLEL)); then
    wait -n
    running=$((running - 1))
  fi
  run_target "$t" &
  running=$((running + 1))
done
wait

for t in "${TARGETS[@]}"; do
  log=$LOG_DIR/$t.log
  rc=$(cat "$LOG_DIR/$t.rc" 2>/dev/null || echo 1)
  execs=$(stat_of number_of_executed_units "$log")
  rate=$(stat_of average_exec_per_sec "$log")
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$last")
  if ((rc == 0)); then
    status=PASS
  else
    status=FAIL
    FAILED=$((FAILED + 1))
    grep -E 'ERROR: libFuzzer|ERROR: AddressSanitizer|ERROR: LeakSanitizer|panicked at|SUMMARY|Test unit written' "$log" | head -n 8
    echo "fuzz: $t FAILED (exit $rc); log: $log"
  fi
  SUMMARY+=("$(printf '%-4s %-22s execs %-10s exec/s %-7s cov %-6s ft %-7s corpus %s' \
    "$status" "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}")")
done

echo
echo "fuzz summary (${SECS}s per target, $PARALLEL at a time, $((SECONDS - START))s in all; logs in $LOG_DIR):"
printf '%s\n' "${SUMMARY[@]}"
echo "$((${#TARGETS[@]} - FAILED)) passed, $FAILED failed"
((FAILED == 0))
