#!/usr/bin/env bash
# Benchmark of the journal input: the kernel-log detector reading N kernel entries from a real
# journal file (`sipban sync --dry-run` with `kernel_log: { journal: true }`), against
# `journalctl -o json > /dev/null` of the same file (the issue's target: at most 1.5x its wall
# time).
#
#   1. bench/gen_journal.py writes N kernel firewall LOG entries (default 1M, spread over the
#      last N/2 seconds) in Journal Export Format; systemd-journal-remote makes the journal file;
#   2. one `sipban sync --dry-run` checks that every entry was read (its report's line count);
#   3. times, paired (A/B alternated, RUNS rounds after one warm-up): `journalctl
#      --directory=DIR -o json > /dev/null` and `sipban sync --dry-run` (a dry run saves no
#      cursor, so every run reads all N entries); prints medians, entries per second, the ratio,
#      and peak RSS: sipban's own (its -vv report) and with its journalctl child (GNU time).
#
# Needs root (the dry run reads the kernel sets), bash >= 5, python3, GNU time and
# systemd-journal-remote. Exit status 1 when sipban did not read every entry.
#
# Knobs: N=1000000  RUNS=3  KEEP=1 (keep the temp dir)  SIPBAN=path (skip the build)

set -u
export LC_NUMERIC=C
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
N=${N:-1000000}
RUNS=${RUNS:-3}
TIME_BIN=${TIME_BIN:-/usr/bin/time}
REMOTE=/lib/systemd/systemd-journal-remote

die() { echo "journal.sh: $*" >&2; exit 2; }
[ "${BASH_VERSINFO[0]}" -ge 5 ] || die "needs bash >= 5 (EPOCHREALTIME)"
[ -x "$REMOTE" ] || die "needs $REMOTE (apt-get install systemd-journal-remote)"
[ -x "$TIME_BIN" ] && "$TIME_BIN" -f %M true >/dev/null 2>&1 || die "needs GNU time at $TIME_BIN (apt-get install time)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sipban-jbench.XXXXXX")
cleanup() { if [ "${KEEP:-0}" = 1 ]; then echo "# kept $TMP" >&2; else rm -rf "$TMP"; fi; }
trap cleanup EXIT

if [ -n "${SIPBAN:-}" ]; then
    BIN=$SIPBAN
else
    (cd "$ROOT" && cargo build --release --locked --quiet) || die "cargo build --release failed"
    BIN="$ROOT/target/release/sipban"
fi
mkdir -p "$TMP/j"
t0=$EPOCHREALTIME
python3 "$HERE/gen_journal.py" "$N" 1 | "$REMOTE" --split-mode=none -o "$TMP/j/system.journal" - 2>/dev/null \
    || die "making the journal failed"
t1=$EPOCHREALTIME
cat >"$TMP/config.yaml" <<YAML
state_dir: $TMP/state
sets:
  v4: { name: sipban-jbench-v4 }
  v6: { name: sipban-jbench-v6 }
journal: { directory: $TMP/j }
kernel_log:
  journal: true
  window: 7d
  max_read_per_run: 4GiB
  max_read_time: 1h
YAML
SYNC=("$BIN" sync --dry-run --config "$TMP/config.yaml")
echo "# $BIN; $(journalctl --version | head -1)"
echo "# $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg), runs=$RUNS (paired A/B, medians)"
echo "journal: $N entries, $(du -m "$TMP/j/system.journal" | cut -f1) MiB, made in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s"

# --- correctness ------------------------------------------------------------------------------
"$BIN" -vv sync --dry-run --config "$TMP/config.yaml" >"$TMP/check.txt" 2>&1 || die "sipban sync --dry-run failed: $(tail -5 "$TMP/check.txt")"
status=0
if grep -q "kernel prio 90 *$N lines read" "$TMP/check.txt"; then
    echo "check: sipban read all $N entries"
else
    echo "check: FAILED, sipban did not read all $N entries:"; grep "lines read" "$TMP/check.txt"
    status=1
fi

median() { sort -g | awk '{a[NR]=$1} END{ if(NR==0){print "nan"; exit} if(NR%2) print a[(NR+1)/2]; else printf "%.6f\n",(a[NR/2]+a[NR/2+1])/2 }'; }
timed() {
    local name=$1; shift
    local t0 t1
    t0=$EPOCHREALTIME
    "$TIME_BIN" -f '%M' -o "$TMP/$name.time" "$@" >/dev/null 2>"$TMP/$name.err" </dev/null
    t1=$EPOCHREALTIME
    awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.6f\n", b-a}' >>"$TMP/$name.walls"
    tail -1 "$TMP/$name.time" >>"$TMP/$name.rss"
}
JCTL=(journalctl --directory="$TMP/j" -o json)
timed warm "${JCTL[@]}"; timed warm "${SYNC[@]}"
for _ in $(seq "$RUNS"); do
    timed journalctl "${JCTL[@]}"
    timed sipban "${SYNC[@]}"
done
j=$(median <"$TMP/journalctl.walls")
s=$(median <"$TMP/sipban.walls")
rss=$(sort -n "$TMP/sipban.rss" | tail -1)
jrss=$(sort -n "$TMP/journalctl.rss" | tail -1)
# GNU time's figure includes the largest waited-for child: sipban's journalctl, which maps the
# journal files. sipban's own peak comes from its -vv report (VmHWM).
own=$(sed -n 's/.*peak RSS of this process: \([0-9]*\) KiB.*/\1/p' "$TMP/check.txt" | tail -1)
awk -v j="$j" -v s="$s" -v n="$N" -v rss="$rss" -v jrss="$jrss" -v own="${own:-0}" 'BEGIN{
    printf "journalctl -o json > /dev/null: %.2f s (%.0f entries/s), peak RSS %.1f MiB\n", j, n/j, jrss/1024;
    printf "sipban sync --dry-run (kernel_log from the journal): %.2f s (%.0f entries/s), peak RSS %.1f MiB of its own (%.1f MiB with its journalctl)\n", s, n/s, own/1024, rss/1024;
    printf "ratio sipban / journalctl: %.2f (target <= 1.5)\n", s/j }'
exit $status
