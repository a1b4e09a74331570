#!/usr/bin/env bash
# Benchmark: peak memory of a real `sipban sync` with a 1.2M-entry feed (one IPv4 address a
# line, about 15 MB: under the 16 MiB default max_bytes) and 65,536-entry sets.
#   target: under 48 MiB peak RSS; the shipped unit runs with MemoryMax=96M.
#
# The feed is served over HTTP by `python3 -m http.server` (which answers If-Modified-Since),
# inside a private network namespace (unshare -n): the host's sets are never touched. Two
# syncs from a fresh state directory:
#   first   empty state: download, judge, decide, rebuild the set, write the cache
#   second  the saved state: a conditional GET, 304, the cached copy verified and listed again
# Each runs under `systemd-run --scope -p MemoryMax=96M` when systemd is running (a run over
# the limit is killed, and says so), and its peak RSS is measured by GNU time either way.
#
# BASELINE=<git ref> (e.g. main) also builds that ref in a temporary git worktree and measures
# it the same way first, for a before/after comparison.
#
# Needs root, python3, ipset and GNU time. Not a test: it prints numbers.
#   sudo -E bash bench/feed-memory.sh
#   BASELINE=main sudo -E bash bench/feed-memory.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
ENTRIES=${ENTRIES:-1200000}
CAP=${CAP:-65536}
LIMIT=${LIMIT:-96M}
[ "$(id -u)" = 0 ] || { echo "bench/feed-memory.sh: needs root (private network namespace, ipset)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "bench/feed-memory.sh: needs GNU time (apt-get install time)" >&2; exit 2; }

if [ "${SIPBAN_BENCH_IN_NS:-}" != 1 ]; then
    BINS=$(mktemp -d /tmp/sipban-feedmem-bins.XXXXXX)
    if [ -n "${BASELINE:-}" ]; then
        # The baseline is built in a worktree with the same target directory (only the
        # sipban crate is rebuilt), and its binary copied aside before this tree is built.
        WT="$BINS/baseline-src"
        git -C "$HERE" worktree add --quiet --detach "$WT" "$BASELINE"
        (cd "$WT" && CARGO_TARGET_DIR="$HERE/target" cargo build --release --locked --quiet)
        cp "$HERE/target/release/sipban" "$BINS/before"
        git -C "$HERE" worktree remove --force "$WT"
    fi
    (cd "$HERE" && cargo build --release --locked --quiet)
    cp "$HERE/target/release/sipban" "$BINS/after"
    trap 'rm -rf "$BINS"' EXIT
    SIPBAN_BENCH_IN_NS=1 BINS="$BINS" ENTRIES="$ENTRIES" CAP="$CAP" LIMIT="$LIMIT" \
        unshare -n bash "$0" "$@"
    exit $?
fi

ip link set lo up
TMP=$(mktemp -d /tmp/sipban-feedmem.XXXXXX)
SERVER=
cleanup() {
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
    ipset destroy fm4 2>/dev/null || true
    ipset destroy fm6 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

# ENTRIES distinct public IPv4 addresses from 45.0.0.0, one a line, in a shuffled order.
python3 - "$ENTRIES" "$TMP/feed.txt" <<'PY'
import random, sys
n, path = int(sys.argv[1]), sys.argv[2]
order = list(range(n))
random.Random(14).shuffle(order)
base = 45 << 24
with open(path, "w") as f:
    for i in order:
        a = base + i
        f.write(f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}\n")
PY
size=$(stat -c %s "$TMP/feed.txt")
(cd "$TMP" && exec python3 -m http.server 8765 --bind 127.0.0.1 > /dev/null 2>&1) &
SERVER=$!
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/8765) 2>/dev/null && break; sleep 0.1; done

# systemd is running when /run/systemd/system exists (sd_booted(3)).
if [ -d /run/systemd/system ]; then
    SCOPE=(systemd-run --scope --quiet -p "MemoryMax=$LIMIT" -p MemorySwapMax=0)
    how="under systemd-run --scope -p MemoryMax=$LIMIT"
else
    SCOPE=()
    how="without systemd (no memory limit applied; peak RSS from GNU time)"
fi
printf 'feed: %d addresses, %.1f MiB; sets capped at %d; %s\n' \
    "$ENTRIES" "$(echo "$size / 1048576" | bc -l)" "$CAP" "$how"

# measure LABEL BIN: two syncs from a fresh state; prints peak RSS and exit code of each.
measure() {
    local label=$1 bin=$2 d="$TMP/$1"
    mkdir -p "$d"
    ipset destroy fm4 2>/dev/null || true
    ipset destroy fm6 2>/dev/null || true
    cat > "$d/config.yaml" <<YAML
state_dir: $d/state
sets:
  v4: { name: fm4, cap: $CAP }
  v6: { name: fm6, cap: $CAP }
feeds:
  - { name: big, url: 'http://127.0.0.1:8765/feed.txt', interval: 0s, ttl: 1d, max_shrink: 100% }
YAML
    for run in first second; do
        local rc=0
        "${SCOPE[@]}" /usr/bin/time -f '%M' -o "$d/$run.rss" \
            "$bin" sync --json --config "$d/config.yaml" > "$d/$run.json" 2> "$d/$run.err" || rc=$?
        local kb members status
        kb=$(tail -1 "$d/$run.rss" | grep -Eo '^[0-9]+$' || echo 0)
        members=$(ipset list fm4 -terse 2>/dev/null | awk -F': ' '/Number of entries/ {print $2}')
        status=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sources"][0]["feed"]["status"])' "$d/$run.json" 2>/dev/null || echo "?")
        printf '%-7s %-6s sync: peak RSS %6.1f MiB, exit %s, feed %s, set holds %s\n' \
            "$label" "$run" "$(echo "$kb / 1024" | bc -l)" "$rc" "$status" "${members:-?}"
        if [ "$rc" != 0 ]; then
            grep -iE 'kill|memory|error' "$d/$run.err" | head -3 | sed 's/^/        /' || true
        fi
    done
}

[ -x "$BINS/before" ] && measure before "$BINS/before"
measure after "$BINS/after"
echo "target: under 48 MiB peak RSS for each sync"
