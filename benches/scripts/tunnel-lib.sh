# shellcheck shell=bash
# The tunnel the benchmark scripts measure, set up as
# ../shared/bench/tunnel-bench.sh does: two network namespaces joined by a
# veth pair (underlay 10.231.0.1-2/24), one implementation started in each
# with wireguard-go's command line, keys and peers set with `wg`, and the
# tunnel addressed 10.232.0.1-2/24, MTU 1420. Traffic stays inside the two
# namespaces. Sourced by the scripts beside it; they set TAG first.
#
#   tunnel_up IMPL [ENV=VALUE...]   sets A and B (the daemons' PIDs)
#   tunnel_down                     kills them by PID, deletes the namespaces
#   tunnel_rounds ROUNDS STEP IMPL...
#       ROUNDS rounds over the IMPLs, odd rounds in reverse order (so none
#       always follows the same one, and each round's pair shares the
#       machine's load of that moment): for each, tunnel_up IMPL, then
#       STEP ROUND INDEX IMPL (INDEX: the IMPL's place on the line), then
#       tunnel_down
#
# Logs go to $TUNNEL_LOGS (default: a fresh temp dir) as a.log and b.log.
N1=${TAG:?set TAG before sourcing tunnel-lib.sh}a
N2=${TAG}b
TUNNEL_PIDS=()
TUNNEL_LOGS=${TUNNEL_LOGS:-$(mktemp -d)}

tunnel_up() {
  local impl=$1 k1 k2
  shift
  ip netns add "$N1"; ip netns add "$N2"
  ip link add "${TAG}v1" netns "$N1" type veth peer name "${TAG}v2" netns "$N2"
  ip -n "$N1" addr add 10.231.0.1/24 dev "${TAG}v1"; ip -n "$N2" addr add 10.231.0.2/24 dev "${TAG}v2"
  for n in "$N1" "$N2"; do ip -n "$n" link set lo up; done
  ip -n "$N1" link set "${TAG}v1" up; ip -n "$N2" link set "${TAG}v2" up
  mkdir -p /var/run/wireguard
  # shellcheck disable=SC2086 # IMPL is a command line
  ip netns exec "$N1" env WG_PROCESS_FOREGROUND=1 "$@" $impl "${TAG}1" >"$TUNNEL_LOGS/a.log" 2>&1 &
  A=$!; TUNNEL_PIDS+=("$A")
  # shellcheck disable=SC2086
  ip netns exec "$N2" env WG_PROCESS_FOREGROUND=1 "$@" $impl "${TAG}2" >"$TUNNEL_LOGS/b.log" 2>&1 &
  B=$!; TUNNEL_PIDS+=("$B")
  for _ in $(seq 100); do
    [[ -S /var/run/wireguard/${TAG}1.sock && -S /var/run/wireguard/${TAG}2.sock ]] && break
    sleep 0.1
  done
  k1=$(wg genkey); k2=$(wg genkey)
  ip netns exec "$N1" wg set "${TAG}1" private-key <(echo "$k1") listen-port 51821 \
    peer "$(echo "$k2" | wg pubkey)" endpoint 10.231.0.2:51822 allowed-ips 10.232.0.2/32
  ip netns exec "$N2" wg set "${TAG}2" private-key <(echo "$k2") listen-port 51822 \
    peer "$(echo "$k1" | wg pubkey)" endpoint 10.231.0.1:51821 allowed-ips 10.232.0.1/32
  ip -n "$N1" addr add 10.232.0.1/24 dev "${TAG}1"; ip -n "$N2" addr add 10.232.0.2/24 dev "${TAG}2"
  ip -n "$N1" link set "${TAG}1" mtu 1420 up; ip -n "$N2" link set "${TAG}2" mtu 1420 up
  ip netns exec "$N1" ping -q -c 3 -W 2 10.232.0.2 >/dev/null 2>&1 || true
}

tunnel_down() {
  local p
  for p in "${TUNNEL_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${TUNNEL_PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
  TUNNEL_PIDS=()
  ip netns del "$N1" 2>/dev/null || true; ip netns del "$N2" 2>/dev/null || true
  rm -f "/var/run/wireguard/${TAG}1.sock" "/var/run/wireguard/${TAG}2.sock"
}

tunnel_rounds() {
  local rounds=$1 step=$2 r i order
  shift 2
  local impls=("$@")
  for ((r = 0; r < rounds; r++)); do
    order=$(seq 0 $((${#impls[@]} - 1)))
    ((r % 2)) && order=$(seq $((${#impls[@]} - 1)) -1 0)
    for i in $order; do
      tunnel_up "${impls[$i]}"
      "$step" "$r" "$i" "${impls[$i]}"
      tunnel_down
    done
  done
}
