#!/bin/bash
# The HTML report in a real browser (Debian's chromium, headless): a short
# passing run and a failing one (an impossible P99 target) against
# phantommesh write their reports; chromium renders each to a PNG and dumps
# its DOM. Checks:
# - the DOM shows the verdict as a PASS or FAIL badge (text, not emoji),
#   has no emoji at all, and has the memory chart with its warm-up mark;
# - the screenshot is not blank and shows the badge in its colour (green
#   for PASS, red for FAIL; the passing page has no red badge);
# - at 500 px wide (headless chromium's narrowest window) the page does not
#   scroll sideways (scrollWidth == clientWidth, read by a script added to
#   a copy of the report; the report itself has none), and the same
#   measurement does see a page that is too wide.
# SCREENSHOT_DIR=DIR keeps the PNGs there.
source "$(dirname "$0")/lib.sh"

command -v chromium >/dev/null || lt_fail "no chromium (apt-get install chromium fonts-dejavu-core python3-pil)"
# Debian's python3-pil is for Debian's python3, which another python3 on
# the PATH (pyenv) may hide.
PIL_PY=
for py in python3 /usr/bin/python3; do
    "$py" -c 'import PIL' 2>/dev/null && { PIL_PY=$py; break; }
done
[ -n "$PIL_PY" ] || lt_fail "no python3 with PIL (apt-get install python3-pil)"

# chromium ARGS... with a fresh profile and nothing fetched from outside.
lt_chromium() {
    local profile
    profile=$(mktemp -d "$LT_TMP/chromium.XXXXXX")
    timeout --kill-after=5 60 chromium --headless --no-sandbox --disable-gpu --disable-quic \
        --no-first-run --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$profile" "$@" 2>>"$LT_TMP/chromium.log"
}

# widths FILE: "SCROLL_WIDTH CLIENT_WIDTH" of the page at FILE in a window
# 500 px wide (CSS pixels; equal when it does not scroll sideways).
widths() {
    local probe="$LT_TMP/probe-$(basename "$1")"
    sed 's|</body>|<script>document.body.setAttribute("data-widths", document.documentElement.scrollWidth + " " + document.documentElement.clientWidth)</script></body>|' \
        "$1" >"$probe"
    lt_chromium --window-size=500,900 --dump-dom "file://$probe" |
        sed -n 's/.*data-widths="\([0-9]* [0-9]*\)".*/\1/p' | head -n 1
}

# check_png FILE VERDICT: not blank, and the verdict's badge colour shows.
check_png() {
    "$PIL_PY" - "$1" "$2" <<'EOF' || lt_fail "screenshot $1 ($2)"
import sys
from PIL import Image
img = Image.open(sys.argv[1]).convert("RGB")
w, h = img.size
px = list(img.getdata())
near = lambda c, ref: all(abs(a - b) <= 3 for a, b in zip(c, ref))
ink = sum(1 for c in px if sum(c) < 600) / len(px)
green = sum(1 for c in px if near(c, (0x1a, 0x7f, 0x37)))
red = sum(1 for c in px if near(c, (0xcf, 0x22, 0x2e)))
top = img.crop((0, 0, w, 200)).getdata()
top_badge = sum(1 for c in top if near(c, (0x1a, 0x7f, 0x37) if sys.argv[2] == "PASS" else (0xcf, 0x22, 0x2e)))
print(f"{sys.argv[1]}: {w}x{h}, ink {ink:.1%}, green badge px {green}, red badge px {red}, verdict badge px at the top {top_badge}")
assert (w, h) == (1280, 2000), "window size"
assert ink > 0.02, "blank page"
assert top_badge > 500, "no verdict badge at the top"
if sys.argv[2] == "PASS":
    assert red == 0, "a red badge on a passing report"
else:
    assert red > top_badge, "FAIL badges in the table too"
EOF
}

# check_dom FILE VERDICT: the DOM as chromium built it.
check_dom() {
    local dom="$LT_TMP/$(basename "$1").dom"
    lt_chromium --window-size=1280,2000 --dump-dom "file://$1" >"$dom"
    grep -q "<p class=\"verdict\">Result: <span class=\"badge ${2,,}\">$2</span></p>" "$dom" ||
        lt_fail "$1: no $2 verdict badge in the DOM"
    grep -q '<table class="gate">' "$dom" || lt_fail "$1: no gate table"
    grep -q 'Target memory (RSS)' "$dom" && grep -q 'warm-up end 5s' "$dom" ||
        lt_fail "$1: no memory chart with its warm-up mark"
    python3 -c '
import sys
t = open(sys.argv[1], encoding="utf-8").read()
bad = sorted({c for c in t if 0x2600 <= ord(c) <= 0x27BF or ord(c) >= 0x1F000})
assert not bad, "emoji in the page: %r" % bad
' "$dom" || lt_fail "$1: emoji in the DOM"
}

lt_setup phantommesh

lt_loadtest --peers 100 --rate 10 --ramp 1s --duration 20s --interval 5s --warmup 5s \
    --progress-every 0 --report "$LT_TMP/pass.html" >"$LT_TMP/pass.txt" 2>&1
rc=$?
[ "$rc" -eq 0 ] || { cat "$LT_TMP/pass.txt"; lt_fail "passing run: exit code $rc"; }
lt_loadtest --peers 50 --rate 10 --ramp 1s --duration 5s --interval 5s --warmup 5s \
    --p99-target 0.001ms --progress-every 0 --report "$LT_TMP/fail.html" >"$LT_TMP/fail.txt" 2>&1
rc=$?
[ "$rc" -eq 1 ] || { cat "$LT_TMP/fail.txt"; lt_fail "failing run: exit code $rc, expected 1"; }

for v in PASS FAIL; do
    f="$LT_TMP/${v,,}.html"
    check_dom "$f" "$v"
    lt_chromium --window-size=1280,2000 --screenshot="$LT_TMP/${v,,}.png" "file://$f" >/dev/null ||
        lt_fail "chromium could not take a screenshot of $f"
    check_png "$LT_TMP/${v,,}.png" "$v"
    o=$(widths "$f")
    # (The client width is the window's less a vertical scroll bar.)
    [ -n "$o" ] && [ "${o% *}" = "${o#* }" ] && [ "${o#* }" -gt 450 ] ||
        lt_fail "$f at 500 px wide: scroll and client widths '${o:-?}' differ: it scrolls sideways"
    if [ -n "${SCREENSHOT_DIR:-}" ]; then
        mkdir -p "$SCREENSHOT_DIR" && cp "$LT_TMP/${v,,}.png" "$f" "$SCREENSHOT_DIR/"
        lt_chromium --window-size=500,2000 --screenshot="$SCREENSHOT_DIR/${v,,}-500.png" "file://$f" >/dev/null
    fi
done

# The measurement itself: a page with something 2,000 px wide scrolls.
printf '<!DOCTYPE html><html><body><div style="width:2000px">wide</div></body></html>\n' >"$LT_TMP/wide.html"
o=$(widths "$LT_TMP/wide.html")
[ "${o% *}" -gt 2000 ] 2>/dev/null && [ "${o#* }" -le 500 ] ||
    lt_fail "the width probe does not see a 2,000 px page (got '${o:-nothing}')"
[ "$(lt_peer_count)" -eq 0 ] || lt_fail "peers left behind"
lt_log "PASS: reports render in chromium with PASS/FAIL badges, no emoji, no sideways scroll at 500 px"
