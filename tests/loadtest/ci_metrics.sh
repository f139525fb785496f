#!/bin/bash
# 200 simulated peers for 10 s against phantommesh in network namespaces.
# Asserts that the generator's numbers (its table and JSON) agree with the
# daemon's own /metrics counters, that the HTML report is written, that the
# peers are gone afterwards, and that --keep, --write-peers and --seed fit
# together (a kept set is removed by the script written for the same seed).
source "$(dirname "$0")/lib.sh"
lt_setup phantommesh

before=$(lt_metrics) || lt_fail "no /metrics from the daemon"
# This test is about counting: the handshake deadline is relaxed so a slow,
# shared CI machine does not fail it on timing.
lt_loadtest --peers 200 --duration 10s --ramp 2s --handshake-deadline 10s --json --report "$LT_TMP/report.html" \
    >"$LT_TMP/run.json" 2>"$LT_TMP/run.err"
rc=$?
after=$(lt_metrics) || lt_fail "no /metrics after the run"
cat "$LT_TMP/run.err" >&2
[ "$rc" -eq 0 ] || {
    lt_json "$LT_TMP/run.json" '[m for m in d["gate"]["gates"][0]["metrics"] if not m["pass"]], d["handshakes"], d["soak"]["failures"]' >&2
    lt_fail "loadtest exit code $rc, expected 0"
}

J() { lt_json "$LT_TMP/run.json" "$1"; }
delta() { # NAME LABELS
    local a b
    a=$(lt_metric "$before" "$1" "$2"); b=$(lt_metric "$after" "$1" "$2")
    echo $(( ${b%.*} - ${a%.*} ))
}
hs_gen=$(J 'd["counters"]["handshakes_completed"]')
hs_tgt=$(delta phantommesh_handshakes_total 'outcome="completed"')
init_gen=$(J 'd["counters"]["initiations_sent"]')
data_gen=$(J 'd["counters"]["data_sent"]')
answered=$(J 'd["counters"]["probes_answered"]')
steady=$(J 'd["counters"]["steady_answered"]')
rx_tgt=$(delta phantommesh_packets_total 'direction="rx"')
tx_tgt=$(delta phantommesh_packets_total 'direction="tx"')
lt_log "handshakes: generator $hs_gen, target $hs_tgt; data: generator sent $data_gen, target rx $rx_tgt; answered $answered, target tx $tx_tgt"

[ "$(J 'd["handshakes"]["established"]')" = 200 ] || lt_fail "not all 200 peers established"
[ "$hs_gen" -eq "$hs_tgt" ] || lt_fail "handshakes: generator $hs_gen != target $hs_tgt"
[ "$init_gen" -ge 200 ] || lt_fail "fewer initiations than peers"
# Every data message the generator sent arrived, unless a probe was lost on
# the way in; every reply counted was sent by the daemon.
[ "$rx_tgt" -le "$data_gen" ] && [ "$rx_tgt" -ge "$answered" ] ||
    lt_fail "target rx $rx_tgt outside [answered $answered, sent $data_gen]"
[ "$tx_tgt" -ge "$answered" ] && [ "$tx_tgt" -le "$rx_tgt" ] ||
    lt_fail "target tx $tx_tgt outside [answered $answered, rx $rx_tgt]"
# The table's numbers are the counters' numbers.
python3 - "$LT_TMP/run.json" <<'PY' || lt_fail "table numbers do not match the counters"
import json, sys
d = json.load(open(sys.argv[1]))
c = d["counters"]
m = {x["name"]: x for x in d["gate"]["gates"][0]["metrics"]}
resolved = c["probes_answered"] + c["probes_lost"] + c["probes_no_session"]
want_tp = c["steady_answered"] / d["steady_s"]
want_sr = 100.0 * (c["peers_established"] + c["probes_answered"]) / (c["peers_started"] + resolved)
want_er = 100.0 * (c["probes_lost"] + c["probes_no_session"]) / resolved
assert abs(m["throughput"]["actual"] - want_tp) < 1e-6 * want_tp, (m["throughput"], want_tp)
assert abs(m["success_rate"]["actual"] - want_sr) < 1e-6, (m["success_rate"], want_sr)
assert abs(m["error_rate"]["actual"] - want_er) < 1e-6, (m["error_rate"], want_er)
assert abs(m["p99_latency"]["actual"] - d["rtt_ms"]["p99"]) < 1e-6
assert d["summary"]["latency_samples"] == c["probes_answered"]
assert len(d["peers"]) == 200 and sum(p["probes_answered"] for p in d["peers"]) == c["probes_answered"]
# 200 peers x 25/s over 10 s: about 50,000 probes.
assert 40_000 <= c["probes_sent"] <= 60_000, c["probes_sent"]
print("table and counters agree: throughput %.1f/s, success %.4f%%, error %.4f%%" % (want_tp, want_sr, want_er))
PY

# The target's memory, the RTT histogram, RTT, throughput, peers over time.
grep -q '<svg' "$LT_TMP/report.html" && [ "$(grep -o '<svg' "$LT_TMP/report.html" | wc -l)" -eq 5 ] ||
    lt_fail "the HTML report lacks its five charts"
[ "$(lt_peer_count)" -eq 0 ] || lt_fail "$(lt_peer_count) peers left on the target after the run"

# --keep leaves them; the removal script for the same seed takes them away.
lt_loadtest --peers 20 --duration 1s --ramp 0.5s --seed ci --keep --progress-every 0 >"$LT_TMP/keep.txt" 2>&1 ||
    { cat "$LT_TMP/keep.txt" >&2; lt_fail "--keep run failed"; }
[ "$(lt_peer_count)" -eq 20 ] || lt_fail "--keep: $(lt_peer_count) peers on the target, expected 20"
"$LT_BIN" loadtest --peers 20 --seed ci --write-peers "$LT_TMP/peers.conf" >/dev/null || lt_fail "--write-peers"
ip netns exec "$LT_NS_T" wg addconf "$LT_IF" "$LT_TMP/peers.conf" || lt_fail "wg addconf of the written file"
[ "$(lt_peer_count)" -eq 20 ] || lt_fail "the written file names other keys than the run"
ip netns exec "$LT_NS_T" sh "$LT_TMP/peers.conf.remove.sh" "$LT_IF" || lt_fail "removal script"
[ "$(lt_peer_count)" -eq 0 ] || lt_fail "removal script left $(lt_peer_count) peers"
# UDP echo probes and bulk traffic, through an echo service behind the target.
# 20 peers x 6/s = 120/s: the performance gate asks >= 100/s, and exactly
# 100/s nominal once measured 99.67/s (299 answers in 3.0 s) and failed.
lt_udp_echo "$LT_TUN_IP" 7
lt_loadtest --peers 20 --duration 3s --ramp 0.5s --rate 6 --udp-echo "$LT_TUN_IP:7" --bulk 20 --json \
    >"$LT_TMP/udp.json" 2>"$LT_TMP/udp.err" || { cat "$LT_TMP/udp.err" >&2; head -c 4000 "$LT_TMP/udp.json" >&2; lt_fail "UDP echo run failed"; }
python3 - "$LT_TMP/udp.json" <<'PY' || lt_fail "UDP echo or bulk traffic did not come back"
import json, sys
c = json.load(open(sys.argv[1]))["counters"]
assert c["probes_sent"] > 200 and c["probes_answered"] == c["probes_sent"], c
assert c["bulk_sent"] > 800 and c["bulk_received"] == c["bulk_sent"], c
assert c["bytes_received"] > 1280 * c["bulk_sent"], c
PY
lt_log "PASS: metrics agree, report written, peers removed, UDP echo and bulk work"
