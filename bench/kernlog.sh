#!/usr/bin/env bash
# Benchmark of the kernel-log detector (`sipban scan --kernel`) against `LC_ALL=C grep -c 'DPT='`.
#
# For each size (default 1M lines) it:
#   1. generates a kern.log with bench/gen_kernlog.py --seed 1 (and its --truth file);
#   2. runs `sipban scan --kernel --json` once and checks, per source address, the counted
#      packets and who crossed a threshold against the truth;
#   3. times, paired (A/B/C alternated, RUNS rounds after one warm-up): `sipban scan --kernel`
#      (the default, human-readable report), the same with --json (pretty JSON, about four times
#      the bytes), both written to a file, and `LC_ALL=C grep -c 'DPT='`; prints medians, lines
#      per second and the ratios to grep (target <= 1.5 for the default report, issue 15);
#   4. records peak RSS of sipban (GNU time).
#
# The scan runs with built-in defaults (`--config` points at a file that does not exist).
# Needs bash >= 5, python3, GNU time. Exit status 1 when the result differs from the truth.
#
# Knobs: SIZES="1000000"  RUNS=5  KEEP=1 (keep the temp dir)  SIPBAN=path (skip the build)

set -u
export LC_NUMERIC=C
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
GEN="$HERE/gen_kernlog.py"
SIZES=${SIZES:-"1000000"}
RUNS=${RUNS:-5}
TIME_BIN=${TIME_BIN:-/usr/bin/time}

die() { echo "kernlog.sh: $*" >&2; exit 2; }
[ "${BASH_VERSINFO[0]}" -ge 5 ] || die "needs bash >= 5 (EPOCHREALTIME)"
[ -x "$TIME_BIN" ] && "$TIME_BIN" -f %M true >/dev/null 2>&1 || die "needs GNU time at $TIME_BIN (apt-get install time)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sipban-kbench.XXXXXX")
cleanup() { if [ "${KEEP:-0}" = 1 ]; then echo "# kept $TMP" >&2; else rm -rf "$TMP"; fi; }
trap cleanup EXIT

if [ -n "${SIPBAN:-}" ]; then
    BIN=$SIPBAN
else
    (cd "$ROOT" && cargo build --release --locked --quiet) || die "cargo build --release failed"
    BIN="$ROOT/target/release/sipban"
fi
SCAN=("$BIN" scan --kernel --json --config "$TMP/no-config.yaml")
SCAN_TEXT=("$BIN" scan --kernel --config "$TMP/no-config.yaml")
echo "# $BIN; $(grep --version | head -1)"
echo "# $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg), runs=$RUNS (paired A/B/C, medians)"

median() { sort -g | awk '{a[NR]=$1} END{ if(NR==0){print "nan"; exit} if(NR%2) print a[(NR+1)/2]; else printf "%.6f\n",(a[NR/2]+a[NR/2+1])/2 }'; }

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
for n in $SIZES; do
    log="$TMP/kern_$n.log"
    python3 "$GEN" "$n" --seed 1 -o "$log" --truth "$TMP/truth_$n.tsv" || die "generator failed"
    echo "log $n lines: $(du -m "$log" | cut -f1) MiB"

    # --- correctness ----------------------------------------------------------------------------
    "${SCAN[@]}" "$log" >"$TMP/scan_$n.json" || die "scan failed on $log"
    if python3 - "$TMP/scan_$n.json" "$TMP/truth_$n.tsv" "$n" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
got, fired = {}, set()
for a in report["addresses"]:
    if a.get("ignored"):
        continue
    counted = sum(p["packets"] for p in a["ports"] if p["class"] in ("weighted", "unlisted"))
    if counted:
        got[a["ip"]] = counted
    if a.get("fired"):
        fired.add(a["ip"])
truth, want_fired = {}, set()
for line in open(sys.argv[2]):
    ip, packets, sighting = line.rstrip("\n").split("\t")
    truth[ip] = int(packets)
    if sighting == "1":
        want_fired.add(ip)
diff = sorted(ip for ip in set(got) | set(truth) if got.get(ip) != truth.get(ip))
c = report["counters"]
print(f"check {sys.argv[3]} lines: {len(got)} sources with {sum(got.values())} counted packets "
      f"(truth {len(truth)} / {sum(truth.values())}), differing: {len(diff)}; over a threshold: "
      f"{len(fired)} (truth {len(want_fired)}), differing: {len(fired ^ want_fired)}; "
      f"lines {c['lines']}, firewall {c['firewall_lines']}, packets {c['packets']}")
for ip in diff[:10]:
    print(f"  {ip}: got {got.get(ip)} want {truth.get(ip)}")
sys.exit(1 if diff or fired != want_fired else 0)
EOF
    then echo "check $n: EQUAL to --truth"; else echo "check $n: DIFFERS from --truth"; status=1; fi

    # --- paired timing --------------------------------------------------------------------------
    rm -f "$TMP"/{ours,json,grep}.{walls,rss}
    for ((i = 0; i <= RUNS; i++)); do
        timed ours "$TMP/ours.out" -- "${SCAN_TEXT[@]}" "$log"
        timed json "$TMP/json.out" -- "${SCAN[@]}" "$log"
        timed grep "$TMP/grep.out" -- env LC_ALL=C grep -c 'DPT=' "$log"
        if [ "$i" = 0 ]; then rm -f "$TMP"/{ours,json,grep}.{walls,rss}; fi # warm-up
    done
    w_ours=$(median <"$TMP/ours.walls")
    w_json=$(median <"$TMP/json.walls")
    w_grep=$(median <"$TMP/grep.walls")
    printf 'time %s lines: sipban scan --kernel %.3f s (%d KiB report) | with --json %.3f s (%d KiB) | grep -c DPT= %.3f s (%s lines)\n' \
        "$n" "$w_ours" "$(($(stat -c %s "$TMP/ours.out") / 1024))" \
        "$w_json" "$(($(stat -c %s "$TMP/json.out") / 1024))" "$w_grep" "$(cat "$TMP/grep.out")"
    awk -v o="$w_ours" -v j="$w_json" -v g="$w_grep" -v n="$n" 'BEGIN{
        r = o / g;
        printf "ratio %s lines: sipban/grep = %.2fx (target <= 1.5: %s), with --json %.2fx | sipban %.2fM lines/s, grep %.2fM lines/s\n",
            n, r, (r <= 1.5 ? "met" : "NOT met"), j / g, n / o / 1e6, n / g / 1e6 }'
    printf 'rss %s lines: sipban peak %d KiB (with --json %d KiB), grep %d KiB\n' "$n" \
        "$(sort -n "$TMP/ours.rss" | tail -1)" "$(sort -n "$TMP/json.rss" | tail -1)" \
        "$(sort -n "$TMP/grep.rss" | tail -1)"
done
exit $status
