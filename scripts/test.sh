#!/usr/bin/env bash
# PhantomMesh's whole test suite, as CI runs it:
#
#   sudo bash scripts/test.sh        (or, as root: bash scripts/test.sh)
#
# 1. installs what the tests need when it is missing (apt, non-interactive,
#    --no-install-recommends: protobuf-compiler and libprotobuf-dev (protoc
#    and its well-known types), which the build needs for
#    the etcd client, always; for the privileged tests also wireguard-tools
#    wireguard-go iperf3 iputils-ping iproute2 procps python3 prometheus curl
#    util-linux etcd-server etcd-client systemd strace socat openssl, and chromium
#    fonts-dejavu-core python3-pil for the load test report's browser check;
#    `cargo install boringtun-cli --locked --version 0.7.1` into ~/.cargo/bin);
# 2. cargo fmt --check, clippy -D warnings (all features: the fuzzing API too), release build, cargo test --release
#    (unit, in-memory and privileged Rust tests);
#    then every fuzz target for ~20 s (scripts/fuzz.sh, nightly, 8 min budget);
# 3. every tests/e2e/NN-*.sh scenario, each under a timeout.
# Ends with the line "N passed, N failed" and exits non-zero on any failure.
#
# Privileged tests (network namespaces, TUN) need root and a working
# `ip netns add`; without them the run FAILS, unless
# PHANTOMMESH_SKIP_PRIVILEGED=1, which skips them (and says so loudly).
#
# Environment:
#   PHANTOMMESH_SKIP_PRIVILEGED=1  skip privileged tests (end-to-end scenarios;
#                                  privileged Rust tests see the same variable)
#   IMPL                           implementation under test for the scenarios
#                                  (default: <target>/release/phantommesh)
#   E2E_ONLY="10 30"               run only the scenarios with these numbers
#   E2E_TIMEOUT=420                seconds allowed per scenario
#   TEST_SKIP_CARGO=1              skip fmt/clippy/build/test (scenarios only)
#   TEST_NO_INSTALL=1              never install anything; fail if missing
#   TEST_SKIP_FUZZ=1               skip the fuzzing step (scripts/fuzz.sh)
#   FUZZ_SECONDS=20, FUZZ_BUDGET=480  seconds per fuzz target, for the step
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
START=$SECONDS
# A fresh private directory (mktemp -d: 0700, a name nobody can guess or
# pre-create in a world-writable /tmp); TEST_LOG_DIR picks one by hand.
if [[ -n ${TEST_LOG_DIR:-} ]]; then
  LOG_DIR=$TEST_LOG_DIR
  mkdir -p "$LOG_DIR"
else
  LOG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/phantommesh-test-$(date +%Y%m%d-%H%M%S)-XXXXXX") || {
    echo "cannot create a log directory under ${TMPDIR:-/tmp}" >&2
    exit 1
  }
fi

PASSED=0
FAILED=0
SKIPPED=0
RESULTS=()
record() { # STATUS NAME [DETAIL]
  local status=$1 name=$2 detail=${3:-}
  case $status in
    PASS) PASSED=$((PASSED + 1)) ;;
    FAIL) FAILED=$((FAILED + 1)) ;;
    SKIP) SKIPPED=$((SKIPPED + 1)) ;;
  esac
  RESULTS+=("$(printf '%-4s  %-28s %s' "$status" "$name" "$detail")")
  printf '==> %s: %s %s\n' "$status" "$name" "$detail"
}
section() { printf '\n======== %s ========\n' "$*"; }
loud() {
  printf '\n'
  printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n'
  printf '!!! %s\n' "$@"
  printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n'
}

# The child being waited for, so that Ctrl-C / SIGTERM reach it (timeout(1)
# runs its command in a process group of its own).
CURRENT=
on_signal() {
  [[ -n $CURRENT ]] && kill -TERM "$CURRENT" 2>/dev/null
  wait 2>/dev/null
  sweep_registry
  echo "interrupted"
  exit 130
}
trap on_signal INT TERM

# run_step NAME SECONDS CMD...: runs CMD with a timeout, output to the console
# and to $LOG_DIR/NAME.log; returns CMD's status (124 on timeout).
run_step() {
  local name=$1 secs=$2 rc
  shift 2
  section "$name"
  local t0=$SECONDS log=$LOG_DIR/${name//[ \/]/-}.log tailpid
  # The file exists before tail opens it (the background redirection may
  # not have run yet).
  : >"$log"
  timeout --kill-after=20 "$secs" "$@" >"$log" 2>&1 </dev/null &
  CURRENT=$!
  tail -s 0.2 -n +1 -f --pid="$CURRENT" "$log" &
  tailpid=$!
  wait "$CURRENT"
  rc=$?
  CURRENT=
  wait "$tailpid"
  STEP_TIME=$((SECONDS - t0))
  return "$rc"
}
step() { # NAME SECONDS CMD...: run_step and record the outcome
  local name=$1 rc
  run_step "$@"
  rc=$?
  if ((rc == 0)); then
    record PASS "$name" "(${STEP_TIME}s)"
  elif ((rc == 124 || rc == 137)); then
    record FAIL "$name" "timed out after ${2}s (log: $LOG_DIR/${name//[ \/]/-}.log)"
  else
    record FAIL "$name" "exit status $rc (log: $LOG_DIR/${name//[ \/]/-}.log)"
  fi
  return "$rc"
}

# ------------------------------------------------------------- toolchain

find_cargo() {
  command -v cargo >/dev/null && return 0
  local d=${CARGO_HOME:-$HOME/.cargo}/bin
  if [[ -x $d/cargo ]]; then
    PATH=$d:$PATH
    return 0
  fi
  # Under sudo, root usually has no toolchain: use the invoking user's.
  if [[ -n ${SUDO_USER:-} ]]; then
    local home
    home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
    if [[ -x $home/.cargo/bin/cargo ]]; then
      export PATH=$home/.cargo/bin:$PATH
      export CARGO_HOME=${CARGO_HOME:-$home/.cargo}
      export RUSTUP_HOME=${RUSTUP_HOME:-$home/.rustup}
      echo "using $SUDO_USER's Rust toolchain ($home/.cargo)"
      return 0
    fi
  fi
  return 1
}

IS_ROOT=0
[[ $(id -u) == 0 ]] && IS_ROOT=1
SKIP_PRIV=${PHANTOMMESH_SKIP_PRIVILEGED:-0}
[[ $SKIP_PRIV == 1 ]] || SKIP_PRIV=0
export PHANTOMMESH_SKIP_PRIVILEGED=$SKIP_PRIV

section "environment"
echo "root: $IS_ROOT   skip privileged: $SKIP_PRIV   logs: $LOG_DIR"
HAVE_CARGO=1
find_cargo || HAVE_CARGO=0
export PATH=${CARGO_HOME:-$HOME/.cargo}/bin:$PATH
TARGET_DIR=${CARGO_TARGET_DIR:-target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR=$ROOT/$TARGET_DIR
((HAVE_CARGO)) && cargo --version

# ---------------------------------------------------------- dependencies

# The build's own needs (protoc for the etcd client's gRPC code): installed
# even when the privileged tests are skipped.
BUILD_APT_PKGS=(protobuf-compiler libprotobuf-dev)
# What the privileged tests run (etcd-server and etcd-client for the mesh
# scenarios 95-*; systemd's systemd-analyze and strace for the unit's check,
# tests/deploy/07-systemd.sh; util-linux's setpriv for scenario 88; socat
# and openssl for the TLS front of 92-https-client; chromium, fonts-dejavu-core
# and python3-pil for tests/loadtest/ci_report_browser.sh).
APT_PKGS=(wireguard-tools wireguard-go iperf3 iputils-ping iproute2 procps python3 prometheus curl util-linux
  etcd-server etcd-client systemd strace socat openssl chromium fonts-dejavu-core python3-pil)
BORINGTUN_VERSION=0.7.1

install_apt() { # PACKAGE...
  local missing=() p
  for p in "$@"; do
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then
    echo "apt packages present: $*"
    return 0
  fi
  echo "missing packages: ${missing[*]}"
  if [[ -n ${TEST_NO_INSTALL:-} ]] || ! command -v apt-get >/dev/null || ((!IS_ROOT)); then
    echo "cannot install them here (TEST_NO_INSTALL, no apt-get, or not root)"
    return 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -q &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

install_boringtun() {
  local installed
  installed=$(cargo install --list 2>/dev/null)
  if [[ $'\n'$installed$'\n' == *$'\n'"boringtun-cli v$BORINGTUN_VERSION:"$'\n'* ]] &&
    command -v boringtun-cli >/dev/null; then
    echo "boringtun-cli $BORINGTUN_VERSION present: $(command -v boringtun-cli)"
    return 0
  fi
  if [[ -n ${TEST_NO_INSTALL:-} ]]; then
    echo "boringtun-cli $BORINGTUN_VERSION missing and TEST_NO_INSTALL is set"
    return 1
  fi
  # Its own target dir: a shared CARGO_TARGET_DIR must not get its artefacts.
  env -u CARGO_TARGET_DIR cargo install boringtun-cli --locked --version "$BORINGTUN_VERSION"
}

deps() {
  local ok=0
  install_apt "${APT_PKGS[@]}" || ok=1
  if ((HAVE_CARGO)); then
    install_boringtun || ok=1
  fi
  return "$ok"
}

# The build needs protoc whatever else runs (before the cargo steps below).
if ((HAVE_CARGO)) && [[ -z ${TEST_SKIP_CARGO:-} ]]; then
  section "build dependencies"
  install_apt "${BUILD_APT_PKGS[@]}" 2>&1 | tee "$LOG_DIR/build-dependencies.log"
  if ((PIPESTATUS[0] == 0)); then
    record PASS "build dependencies"
  else
    record FAIL "build dependencies" "protoc missing (log: $LOG_DIR/build-dependencies.log)"
  fi
fi

# Only the privileged scenarios need the packages and boringtun-cli.
if ((SKIP_PRIV)); then
  record SKIP "dependencies" "(privileged tests skipped)"
else
  section dependencies
  deps 2>&1 | tee "$LOG_DIR/dependencies.log"
  if ((PIPESTATUS[0] == 0)); then
    record PASS dependencies
  else
    record FAIL dependencies "could not install the test tools (log: $LOG_DIR/dependencies.log)"
  fi
fi

# ------------------------------------------------------ privileged check

PRIV_OK=0
check_privileged() {
  if ((!IS_ROOT)); then
    echo "not running as root (use: sudo bash scripts/test.sh)"
    return 1
  fi
  local probe=pm-e2e-probe-$$
  if ! ip netns add "$probe" 2>"$LOG_DIR/netns-probe.err"; then
    echo "'ip netns add' does not work here: $(cat "$LOG_DIR/netns-probe.err")"
    return 1
  fi
  ip netns del "$probe"
  if [[ ! -c /dev/net/tun ]]; then
    echo "/dev/net/tun is missing (load the tun module or pass the device through)"
    return 1
  fi
  return 0
}
if ((SKIP_PRIV)); then
  loud "PHANTOMMESH_SKIP_PRIVILEGED=1: privileged tests are SKIPPED." \
    "No end-to-end scenario runs (namespaces, TUN, wg, wg-quick, interop)." \
    "Privileged Rust tests are told to skip too. This run proves much less."
else
  section "privileged check"
  if reason=$(check_privileged); then
    PRIV_OK=1
    echo "root and network namespaces: OK"
  else
    record FAIL "privileged prerequisites" "$reason; set PHANTOMMESH_SKIP_PRIVILEGED=1 to skip privileged tests"
  fi
fi

# ----------------------------------------------------------------- cargo

BUILD_OK=0
if [[ -n ${TEST_SKIP_CARGO:-} ]]; then
  record SKIP "cargo steps" "(TEST_SKIP_CARGO set)"
  BUILD_OK=1
elif ((!HAVE_CARGO)); then
  record FAIL "cargo" "cargo not found: install Rust (https://rustup.rs) for this user"
else
  step "cargo fmt" 600 cargo fmt --all -- --check
  step "cargo clippy" 2400 cargo clippy --all-targets --all-features -- -D warnings
  step "cargo build --release" 2400 cargo build --release --bins --examples && BUILD_OK=1
  step "cargo test --release" 2400 cargo test --release
fi

# ------------------------------------------------------------- fuzzing

# Every fuzz target briefly (scripts/fuzz.sh: cargo-fuzz on nightly, which
# it installs): ~20 s each, two at a time, sized to end within 8 minutes of
# the step's start, sanitizer build included (a slower build leaves each
# target less, at least 5 s; the timeout only guards a hang). Any crash,
# leak or timeout fails the step. TEST_SKIP_FUZZ=1 skips it.
if [[ -n ${TEST_SKIP_FUZZ:-} ]]; then
  record SKIP "fuzz" "(TEST_SKIP_FUZZ set)"
elif [[ -n ${TEST_SKIP_CARGO:-} ]] || ((!HAVE_CARGO)); then
  record SKIP "fuzz" "(no cargo steps)"
else
  FUZZ_NO_INSTALL=${TEST_NO_INSTALL:-} FUZZ_BUDGET=${FUZZ_BUDGET:-480} step "fuzz" 2400 bash scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
fi

# ------------------------------------------------------------ end-to-end

REGISTRY=$LOG_DIR/e2e-registry
# Removes what a scenario registered but could not clean up itself (it was
# killed by its timeout): only its own namespaces, their processes, sockets.
sweep_registry() {
  [[ -s $REGISTRY ]] || return 0
  local kind what p
  while read -r kind what; do
    case $kind in
      netns)
        [[ -e /run/netns/$what ]] || continue
        for p in $(ip netns pids "$what" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
        sleep 0.2
        ip netns del "$what" 2>/dev/null && echo "swept namespace $what"
        ;;
      sock)
        [[ -S $what ]] && rm -f "$what" && echo "swept socket $what"
        ;;
    esac
  done <"$REGISTRY"
  : >"$REGISTRY"
}

if ((SKIP_PRIV)); then
  record SKIP "end-to-end scenarios" "(PHANTOMMESH_SKIP_PRIVILEGED=1)"
elif ((!PRIV_OK)); then
  record FAIL "end-to-end scenarios" "not run: privileged prerequisites missing"
else
  export IMPL=${IMPL:-$TARGET_DIR/release/phantommesh}
  if ((!BUILD_OK)) && [[ ! -x ${IMPL%% *} ]]; then
    record FAIL "end-to-end scenarios" "not run: no binary at ${IMPL%% *} (build failed)"
  else
    for scenario in "$ROOT"/tests/e2e/[0-9]*.sh; do
      name=$(basename "$scenario" .sh)
      if [[ -n ${E2E_ONLY:-} ]] && [[ " $E2E_ONLY " != *" ${name%%-*} "* ]]; then
        continue
      fi
      : >"$REGISTRY"
      E2E_REGISTRY=$REGISTRY run_step "e2e $name" "${E2E_TIMEOUT:-420}" bash "$scenario"
      rc=$?
      sweep_registry
      case $rc in
        0) record PASS "e2e $name" "(${STEP_TIME}s)" ;;
        77) record SKIP "e2e $name" "(not applicable to IMPL=$IMPL)" ;;
        124 | 137) record FAIL "e2e $name" "timed out after ${E2E_TIMEOUT:-420}s" ;;
        *) record FAIL "e2e $name" "exit status $rc (log: $LOG_DIR/e2e-$name.log)" ;;
      esac
    done
    # The data path again with every kernel offload forced off (plain TUN,
    # no UDP GSO/GRO): both code paths must carry the same traffic.
    if [[ -z ${E2E_ONLY:-} ]]; then
      for name in 10-interop 85-integrity; do
        : >"$REGISTRY"
        PHANTOMMESH_OFFLOAD=off E2E_REGISTRY=$REGISTRY \
          step "e2e $name (offloads off)" "${E2E_TIMEOUT:-420}" bash "$ROOT/tests/e2e/$name.sh"
        sweep_registry
      done
      # And with bulk runs on the crypto workers, which two-core machines
      # (the default there keeps every run on the I/O thread) never use.
      : >"$REGISTRY"
      PHANTOMMESH_INLINE_BATCH=4 E2E_REGISTRY=$REGISTRY \
        step "e2e 85-integrity (crypto workers)" "${E2E_TIMEOUT:-420}" bash "$ROOT/tests/e2e/85-integrity.sh"
      sweep_registry
    fi
  fi
fi

# ------------------------------------------------- deploy and load checks

# Kubernetes manifests, Prometheus rules (promtool), metric names against a
# live daemon, a real Prometheus scraping two daemons, the pre-deployment
# script (tests/deploy/); and the load generator (tests/loadtest/).
if ((SKIP_PRIV)); then
  record SKIP "deploy checks" "(PHANTOMMESH_SKIP_PRIVILEGED=1)"
elif ((!PRIV_OK || !BUILD_OK)); then
  record FAIL "deploy checks" "not run: privileged prerequisites or build missing"
else
  export PHANTOMMESH_BIN=${PHANTOMMESH_BIN:-$TARGET_DIR/release/phantommesh}
  for suite in "$ROOT"/tests/deploy/run-all.sh "$ROOT"/tests/loadtest/run_all.sh; do
    [[ -f $suite ]] || continue
    step "$(basename "$(dirname "$suite")") checks" "${SUITE_TIMEOUT:-1200}" bash "$suite"
  done
fi

# --------------------------------------------------------------- summary

section "summary ($((SECONDS - START))s, logs in $LOG_DIR)"
printf '%s\n' "${RESULTS[@]}"
((SKIP_PRIV)) && loud "privileged tests were SKIPPED (PHANTOMMESH_SKIP_PRIVILEGED=1)"
((SKIPPED == 0)) || echo "$SKIPPED skipped"
echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
