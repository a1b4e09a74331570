#!/usr/bin/env bash
# Benchmark of the Asterisk log detector (`sipban scan`) against fail2ban-regex and grep.
#
# For each size (default 100k and 1M lines) it:
#   1. generates a log with ../shared/bench/gen_asterisk_log.py --seed 1 (and its --truth file);
#   2. runs `sipban scan --json` once and checks that the per-address counts equal the truth;
#   3. times, paired (A/B/C alternated, RUNS rounds after one warm-up): sipban scan,
#      fail2ban-regex with shared/corpus/fail2ban-asterisk.conf (plus Debian's common.conf,
#      which it includes), and `LC_ALL=C grep -E -c` with one combined regex selecting the
#      filter's lines; prints medians and the ratios fail2ban/sipban (goal >= 30) and
#      sipban/grep (goal <= 1.5);
#   4. records peak RSS of sipban scan (GNU time); at the end checks RSS(1M) - RSS(100k) <= 2 MiB.
#
# The scanner: $SCAN if set (a command taking `FILE --json`), else `target/release/sipban scan`.
# Needs bash >= 5, python3, GNU time, fail2ban (Debian package; installed here when missing,
# without starting its service). Exit status 1 when the counts differ from the truth.
#
# Knobs: SIZES="100000 1000000"  RUNS=5  KEEP=1 (keep the temp dir)

set -u
export LC_NUMERIC=C
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
GEN="$SHARED/bench/gen_asterisk_log.py"
FILTER="$SHARED/corpus/fail2ban-asterisk.conf"
SIZES=${SIZES:-"100000 1000000"}
RUNS=${RUNS:-5}
TIME_BIN=${TIME_BIN:-/usr/bin/time}

die() { echo "asterisk.sh: $*" >&2; exit 2; }
[ "${BASH_VERSINFO[0]}" -ge 5 ] || die "needs bash >= 5 (EPOCHREALTIME)"
[ -r "$GEN" ] || die "generator not found: $GEN"
[ -r "$FILTER" ] || die "filter not found: $FILTER"

install_pkgs() {
    [ "$(id -u)" = 0 ] || die "$* missing and not root: apt-get install -y $*"
    local made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        # Keep the fail2ban service from being started by the package's postinst.
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1; }
    local rc=$?
    [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    if command -v systemctl >/dev/null; then systemctl disable --now fail2ban >/dev/null 2>&1; fi
    [ $rc = 0 ] || die "apt-get install $* failed"
}
command -v fail2ban-regex >/dev/null || install_pkgs fail2ban
[ -x "$TIME_BIN" ] && "$TIME_BIN" -f %M true >/dev/null 2>&1 || install_pkgs time
[ -r /etc/fail2ban/filter.d/common.conf ] || die "/etc/fail2ban/filter.d/common.conf missing"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sipban-bench.XXXXXX")
cleanup() { if [ "${KEEP:-0}" = 1 ]; then echo "# kept $TMP" >&2; else rm -rf "$TMP"; fi; }
trap cleanup EXIT

# fail2ban-regex resolves `before = common.conf` next to the filter file.
mkdir -p "$TMP/f2b/filter.d"
cp /etc/fail2ban/filter.d/common.conf "$TMP/f2b/filter.d/common.conf"
cp "$FILTER" "$TMP/f2b/filter.d/asterisk.conf"
F2B_FILTER="$TMP/f2b/filter.d/asterisk.conf"

# One ERE selecting the same lines as the fail2ban filter (from shared/bench/anchors.sh).
cat >"$TMP/combined.ere" <<'EOF'
^\[[0-9-]+ [0-9:]+\] (NOTICE|SECURITY|WARNING)\[[0-9]+\](\[C-[0-9a-f]+\])? [^:]+: (Registration from '[^']*' failed for '[^']+' - (Wrong password|Username/auth name mismatch|No matching peer found|Not a local domain|Device does not match ACL|Peer is not supposed to register|ACL error \(permit/deny\))$|Call from '[^']*' \([^)]+\) to extension '[^']*' rejected because extension not found in context|Request ('[^']*' )?from '.*' failed for '[^']+' \(callid: [^)]*\) - (No matching endpoint found|Not match Endpoint( Contact)? ACL|(Failed|Error) to authenticate)|SecurityEvent="(FailedACL|InvalidAccountID|ChallengeResponseFailed|InvalidPassword)".*,RemoteAddress="IPV[46]/[^/"]+/[^"]+/[0-9]+"|(Host )?[0-9a-fA-F:.]+ (failed to authenticate|failed MD5 authentication|tried to authenticate with nonexistent user)|No registration for peer '[^']*' \(from [^)]+\)$|hacking attempt detected '[^']+'$|"Rejecting unknown SIP connection from [^"]+"$)
EOF

# --- the scanner -------------------------------------------------------------------------------
if [ -n "${SCAN:-}" ]; then
    read -r -a SCAN_CMD <<<"$SCAN"
    SCAN_LABEL="$SCAN"
else
    (cd "$ROOT" && cargo build --release --locked --quiet) || die "cargo build --release failed"
    SCAN_CMD=("$ROOT/target/release/sipban" scan)
    SCAN_LABEL="sipban scan"
fi
echo "# scanner: $SCAN_LABEL"
echo "# fail2ban-regex $(fail2ban-regex --version 2>/dev/null | head -1 | awk '{print $2}'), $(grep --version | head -1)"
echo "# $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg), runs=$RUNS (paired A/B/C, medians)"

median() { sort -g | awk '{a[NR]=$1} END{ if(NR==0){print "nan"; exit} if(NR%2) print a[(NR+1)/2]; else printf "%.6f\n",(a[NR/2]+a[NR/2+1])/2 }'; }

# timed NAME OUTFILE -- CMD...: one run, wall seconds appended to $TMP/NAME.walls, max RSS (KiB)
# to $TMP/NAME.rss.
timed() {
    local name=$1 out=$2; shift 3
    local t0 t1
    t0=$EPOCHREALTIME
    "$TIME_BIN" -f '%M' -o "$TMP/$name.time" "$@" >"$out" 2>"$TMP/$name.err" </dev/null
    t1=$EPOCHREALTIME
    awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.6f\n", b-a}' >>"$TMP/$name.walls"
    tail -1 "$TMP/$name.time" >>"$TMP/$name.rss"
}

status=0
declare -A RSS
for n in $SIZES; do
    log="$TMP/log_$n"
    python3 "$GEN" "$n" --seed 1 -o "$log" --truth "$TMP/truth_$n.tsv" || die "generator failed"

    # --- correctness: per-address counts against the truth ------------------------------------
    "${SCAN_CMD[@]}" "$log" --json >"$TMP/scan_$n.json" || die "scan failed on $log"
    if python3 - "$TMP/scan_$n.json" "$TMP/truth_$n.tsv" "$n" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
got = {ip: e["failures"] for ip, e in report["addresses"].items()}
truth = {}
for line in open(sys.argv[2]):
    ip, count = line.rstrip("\n").split("\t")
    truth[ip] = int(count)
diff = sorted(ip for ip in set(got) | set(truth) if got.get(ip) != truth.get(ip))
c = report["counters"]
print(f"counts {sys.argv[3]} lines: {len(got)} addresses / {sum(got.values())} lines; "
      f"truth {len(truth)} / {sum(truth.values())}; differing addresses: {len(diff)}; "
      f"unattributed timeouts: {c['timeouts_unattributed']}")
for ip in diff[:10]:
    print(f"  {ip}: got {got.get(ip)} want {truth.get(ip)}")
sys.exit(1 if diff else 0)
EOF
    then echo "counts $n: EQUAL to --truth"; else echo "counts $n: DIFFER from --truth"; status=1; fi

    # --- paired timing --------------------------------------------------------------------------
    rm -f "$TMP"/{ours,f2b,grep}.{walls,rss}
    for ((i = 0; i <= RUNS; i++)); do
        timed ours "$TMP/ours.out" -- "${SCAN_CMD[@]}" "$log" --json
        timed f2b "$TMP/f2b.out" -- fail2ban-regex "$log" "$F2B_FILTER"
        timed grep "$TMP/grep.out" -- env LC_ALL=C grep -E -c -f "$TMP/combined.ere" "$log"
        if [ "$i" = 0 ]; then rm -f "$TMP"/{ours,f2b,grep}.{walls,rss}; fi # warm-up
    done
    f2b_matched=$(grep -oE '[0-9]+ matched' "$TMP/f2b.out" | head -1)
    w_ours=$(median <"$TMP/ours.walls")
    w_f2b=$(median <"$TMP/f2b.walls")
    w_grep=$(median <"$TMP/grep.walls")
    rss_ours=$(sort -n "$TMP/ours.rss" | tail -1)
    RSS[$n]=$rss_ours
    printf 'time %s lines: sipban %.3f s | fail2ban-regex %.3f s (%s) | grep -E -c %.3f s (%s matched)\n' \
        "$n" "$w_ours" "$w_f2b" "$f2b_matched" "$w_grep" "$(cat "$TMP/grep.out")"
    awk -v o="$w_ours" -v f="$w_f2b" -v g="$w_grep" -v n="$n" 'BEGIN{
        r1 = f / o; r2 = o / g;
        printf "ratio %s lines: fail2ban-regex/sipban = %.1fx (goal >= 30: %s) | sipban/grep = %.2fx (goal <= 1.5: %s) | %.2fM lines/s\n",
            n, r1, (r1 >= 30 ? "met" : "NOT met"), r2, (r2 <= 1.5 ? "met" : "NOT met"), n / o / 1e6 }'
    printf 'rss %s lines: sipban peak %d KiB, fail2ban-regex %d KiB, grep %d KiB\n' "$n" "$rss_ours" \
        "$(sort -n "$TMP/f2b.rss" | tail -1)" "$(sort -n "$TMP/grep.rss" | tail -1)"
done

if [ -n "${RSS[100000]:-}" ] && [ -n "${RSS[1000000]:-}" ]; then
    d=$((RSS[1000000] - RSS[100000]))
    echo "rss growth 100k -> 1M: ${d} KiB (goal <= 2048 KiB: $([ "$d" -le 2048 ] && echo met || echo 'NOT met'))"
fi
exit $status
