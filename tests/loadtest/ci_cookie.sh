#!/bin/bash
# Handshake storm: 2,000 peers start at once (no ramp), which fills
# phantommesh's handshake queue past 1/8 so it answers with cookie replies and
# then rate-limits per source address (20/s each). The generator must answer
# the cookie replies (retrying with MAC2: the retries reaching the rate
# limiter prove the daemon accepted our MAC2) and, where the limiter dropped a
# retry, retransmit like a real peer: every handshake still completes. The
# peers come from 32 source addresses, as real clients would; behind a single
# address 2,000 handshakes under load would take 100 s by design. The probe
# rate is low: this test is about handshakes.
source "$(dirname "$0")/lib.sh"
lt_setup phantommesh

before=$(lt_metrics) || lt_fail "no /metrics"
sources=$(lt_sources 32)
lt_loadtest --peers 2000 --ramp 0 --duration 20s --rate 2 --handshake-deadline 19s --bind "$sources" --json \
    >"$LT_TMP/run.json" 2>"$LT_TMP/run.err"
rc=$?
after=$(lt_metrics) || lt_fail "no /metrics after the run"
tail -n 3 "$LT_TMP/run.err" >&2
delta() {
    local a b
    a=$(lt_metric "$before" "$1" "$2"); b=$(lt_metric "$after" "$1" "$2")
    echo $(( ${b%.*} - ${a%.*} ))
}
J() { lt_json "$LT_TMP/run.json" "$1"; }
cookies_tgt=$(delta phantommesh_cookie_replies_sent_total "")
cookies_gen=$(J 'd["counters"]["cookie_replies_received"]')
limited=$(delta phantommesh_packets_dropped_total 'reason="rate_limited"')
hs_tgt=$(delta phantommesh_handshakes_total 'outcome="completed"')
hs_gen=$(J 'd["counters"]["handshakes_completed"]')
lt_log "cookie replies: target sent $cookies_tgt, generator received $cookies_gen; rate limited $limited;" \
    "handshakes: target $hs_tgt, generator $hs_gen, established $(J 'd["handshakes"]["established"]')," \
    "last $(J 'd["handshakes"]["last_after_ramp_s"]') s after the ramp"
[ "$rc" -eq 0 ] || lt_fail "loadtest exit code $rc (handshakes: $(J 'd["handshakes"]'))"
[ "$cookies_tgt" -gt 0 ] || lt_fail "the target never went under load: no cookie replies (burst too small for this machine?)"
[ "$limited" -gt 0 ] || lt_fail "no retry reached the rate limiter: was our MAC2 accepted?"
[ "$cookies_gen" -le "$cookies_tgt" ] && [ "$cookies_gen" -ge $(( cookies_tgt * 9 / 10 )) ] ||
    lt_fail "generator saw $cookies_gen cookie replies, target sent $cookies_tgt"
[ "$(J 'd["handshakes"]["established"]')" = 2000 ] || lt_fail "not every peer established a session"
[ "$hs_gen" -eq "$hs_tgt" ] || lt_fail "handshakes: generator $hs_gen, target $hs_tgt"
[ "$(J 'd["counters"]["receive_errors"]')" = 0 ] || lt_fail "cookie replies or responses the generator could not use"
[ "$(lt_peer_count)" -eq 0 ] || lt_fail "peers left behind"
lt_log "PASS: cookie replies answered, all 2,000 handshakes completed"
