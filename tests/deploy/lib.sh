# Shared helpers for the deploy checks (sourced, not run). Each check runs as
# root on a fresh Debian machine: it installs what it needs with apt-get and
# pip, cleans up what it started (by PID) on any exit, and exits non-zero on
# failure.
set -euo pipefail

DEPLOY_TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$DEPLOY_TESTS_DIR/../.." && pwd)
# Kubernetes API version the manifests are validated against (schemas ship
# inside the pinned kubernetes-validate wheel, so validation is offline).
K8S_SCHEMA_VERSION=${K8S_SCHEMA_VERSION:-1.32.0}
PM_DEPLOY_VENV=${PM_DEPLOY_VENV:-/var/tmp/phantommesh-deploy-venv}

log() { printf '[%s] %s\n' "$(basename "$0" .sh)" "$*"; }
fail() { printf '[%s] FAIL: %s\n' "$(basename "$0" .sh)" "$*" >&2; exit 1; }

# Cleanup actions, run last-registered first on any exit.
_cleanups=()
add_cleanup() { _cleanups+=("$1"); }
_run_cleanups() {
    local rc=$? i
    for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do
        eval "${_cleanups[$i]}" >/dev/null 2>&1 || true
    done
    exit "$rc"
}
trap _run_cleanups EXIT
trap 'exit 130' INT TERM

_apt_updated=0
# apt_install PKG...: installs the Debian packages that are missing.
apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    if [ "$_apt_updated" = 0 ]; then
        apt-get update -qq
        _apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# need_cmd CMD PKG: makes sure CMD exists, installing PKG if not.
need_cmd() {
    command -v "$1" >/dev/null 2>&1 || apt_install "$2"
    command -v "$1" >/dev/null 2>&1 || fail "$1 not found even after installing $2"
}

need_promtool() { need_cmd promtool prometheus; }
need_prometheus() { need_cmd prometheus prometheus; }
# kubectl is preinstalled on the project's machines; Debian's
# kubernetes-client is the fallback.
need_kubectl() { need_cmd kubectl kubernetes-client; }

# A Python venv with the pinned requirements; prints its python.
venv_python() {
    local py=/usr/bin/python3
    [ -x "$py" ] || { apt_install python3; }
    if [ ! -x "$PM_DEPLOY_VENV/bin/python" ]; then
        "$py" -m venv "$PM_DEPLOY_VENV" >/dev/null 2>&1 || {
            apt_install python3-venv
            rm -rf "$PM_DEPLOY_VENV"
            "$py" -m venv "$PM_DEPLOY_VENV" >&2
        }
    fi
    if ! cmp -s "$DEPLOY_TESTS_DIR/requirements.txt" "$PM_DEPLOY_VENV/.requirements"; then
        log "installing Python requirements into $PM_DEPLOY_VENV" >&2
        "$PM_DEPLOY_VENV/bin/pip" install -q --disable-pip-version-check -r "$DEPLOY_TESTS_DIR/requirements.txt" >&2
        cp "$DEPLOY_TESTS_DIR/requirements.txt" "$PM_DEPLOY_VENV/.requirements"
    fi
    echo "$PM_DEPLOY_VENV/bin/python"
}

# Sets BIN to the daemon binary: $PHANTOMMESH_BIN, else a release build of
# this tree (copied aside, so a concurrent build cannot swap it mid-test).
# Not through $(...): the copy's cleanup must register in this shell.
phantommesh_bin() {
    if [ -n "${PHANTOMMESH_BIN:-}" ]; then
        [ -x "$PHANTOMMESH_BIN" ] || fail "PHANTOMMESH_BIN=$PHANTOMMESH_BIN is not executable"
        BIN=$PHANTOMMESH_BIN
        return
    fi
    command -v cargo >/dev/null 2>&1 || fail "cargo not found: install Rust or set PHANTOMMESH_BIN"
    local target=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
    log "building the daemon (cargo build --release)"
    (cd "$REPO_ROOT" && cargo build --release --quiet --bin phantommesh)
    BIN=$(mktemp /tmp/phantommesh-bin.XXXXXX)
    add_cleanup "rm -f '$BIN'"
    cp "$target/release/phantommesh" "$BIN"
    chmod 0755 "$BIN"
}

# wait_until SECONDS CMD...: polls CMD every 0.5 s until it succeeds.
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.5
    done
}

# A network namespace named NAME, deleted on exit.
make_netns() {
    ip netns add "$1"
    add_cleanup "ip netns del '$1'"
    ip -n "$1" link set lo up
}

# start_bg PIDFILE LOG CMD...: starts CMD in the background and registers a
# kill of that PID (and only it) for exit.
start_bg() {
    local pidfile=$1 logfile=$2
    shift 2
    "$@" >"$logfile" 2>&1 &
    local pid=$!
    echo "$pid" >"$pidfile"
    add_cleanup "kill $pid; sleep 0.3; kill -9 $pid"
}
