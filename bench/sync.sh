#!/usr/bin/env bash
# Benchmark: sipban sync against one `ipset restore` of the same batch, paired in one run.
#
#   full replace of 65,536 and 262,144 entries (sipban sync, rebuild + swap) vs one
#     `ipset -exist restore` of the same create/add/swap/destroy batch     (target <= 1.15x)
#   a 1% diff sync vs a full replace sync of 65,536 entries                (target <= 0.1x)
#   peak RSS of a 65,536-entry sync                                        (target <= 24 MiB)
#
# Everything runs inside a private network namespace (unshare -n): the host's sets are never
# touched. Needs root, python3, ipset and GNU time. Not a test: it prints numbers.
#   RUNS=7 SIZES="65536 262144" sudo -E bash bench/sync.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-7}
SIZES=${SIZES:-"65536 262144"}
[ "$(id -u)" = 0 ] || { echo "bench/sync.sh: needs root (private network namespace, ipset)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "bench/sync.sh: needs GNU time (apt-get install time)" >&2; exit 2; }
if [ "${SIPBAN_BENCH_IN_NS:-}" != 1 ]; then
    [ -n "${BIN:-}" ] || (cd "$HERE" && cargo build --release --locked --quiet)
    exec env SIPBAN_BENCH_IN_NS=1 RUNS="$RUNS" SIZES="$SIZES" BIN="${BIN:-}" unshare -n bash "$0" "$@"
fi
ip link set lo up
# BIN=/path/to/sipban compares another build (for example main's) with the same batches.
BIN=${BIN:-"$HERE/target/release/sipban"}
TMP=$(mktemp -d /tmp/sipban-bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

gen() { # gen N OFFSET FILE: N distinct public IPv4 addresses, deterministic
    python3 - "$1" "$2" "$3" <<'PY'
import sys, ipaddress
n, off, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
base = int(ipaddress.IPv4Address("45.0.0.0"))
with open(path, "w") as f:
    for i in range(off, off + n):
        # spread over 45.0.0.0/8 with a multiplicative hash so the order is not sequential
        f.write(str(ipaddress.IPv4Address(base + (i * 2654435761) % (1 << 24))) + "\n")
PY
}

now() { date +%s.%N; }
# apply_ms STDERR: the apply step of one sync (its "applied" minus "planned" phase timing).
apply_ms() { awk '/ planned: /{p=$(NF-1)} / applied: /{a=$(NF-1)} END {printf "%.6f", (a-p)/1000}' "$1"; }
median() { sort -g | awk '{a[NR]=$1} END {m=int((NR+1)/2); print a[m]}'; }

config() { # config DIR FEEDFILE CAP
    cat > "$1/config.yaml" <<YAML
state_dir: $1/state
sets:
  v4: { name: bench4, cap: $3 }
  v6: { name: bench6, cap: 1024 }
allow_own_addresses: true
feeds:
  - { name: bench, url: 'file://$2', ttl: 1d, max_shrink: 100% }
YAML
}

restore_batch() { # restore_batch LIST N OUT: the batch sipban would send for a rebuild
    local n=$2 cap=$2
    local hs=$(( cap / 2 )); [ $hs -lt 1024 ] && hs=1024; [ $hs -gt 262144 ] && hs=262144
    local p=1; while [ $p -lt $hs ]; do p=$((p * 2)); done
    {
        echo "destroy peer-tmp"
        echo "create peer-tmp hash:net family inet hashsize $p maxelem $cap timeout 0"
        sed 's/^/add peer-tmp /; s/$/ timeout 86400/' "$1"
        echo "swap peer-tmp peer"
        echo "destroy peer-tmp"
    } > "$3"
}

for N in $SIZES; do
    D="$TMP/n$N"; mkdir -p "$D"
    gen "$N" 0 "$D/a.txt"; gen "$N" "$N" "$D/b.txt"
    cp "$D/a.txt" "$D/feed.txt"
    config "$D" "$D/feed.txt" "$N"
    "$BIN" sync --config "$D/config.yaml" > /dev/null           # creates the set
    restore_batch "$D/a.txt" "$N" "$D/ra.batch"; restore_batch "$D/b.txt" "$N" "$D/rb.batch"
    ipset create peer hash:net family inet maxelem $((N * 2)) timeout 0
    ipset -exist restore < "$D/ra.batch"
        : > "$D/sipban.t"; : > "$D/ipset.t"; : > "$D/apply.t"
    for r in $(seq 1 "$RUNS"); do
        [ $((r % 2)) = 1 ] && cp "$D/b.txt" "$D/feed.txt" || cp "$D/a.txt" "$D/feed.txt"
                t0=$(now); "$BIN" -vv sync --config "$D/config.yaml" > "$D/out.json" 2> "$D/err.log"; t1=$(now)
        echo "$t1 - $t0" | bc -l >> "$D/sipban.t"
        apply_ms "$D/err.log" >> "$D/apply.t"; echo >> "$D/apply.t"
        [ $((r % 2)) = 1 ] && b="$D/rb.batch" || b="$D/ra.batch"
        t0=$(now); ipset -exist restore < "$b"; t1=$(now)
        echo "$t1 - $t0" | bc -l >> "$D/ipset.t"
    done
    [ -n "${VERBOSE:-}" ] && paste "$D/sipban.t" "$D/ipset.t" <(grep . "$D/apply.t") >&2
    s=$(median < "$D/sipban.t"); i=$(median < "$D/ipset.t"); a=$(grep . "$D/apply.t" | median)
    printf 'full replace %7d entries: whole sync %.3f s vs ipset restore %.3f s = %.2fx; its apply step %.3f s = %.2fx (target <= 1.15x, issue 12)\n' \
        "$N" "$s" "$i" "$(echo "$s / $i" | bc -l)" "$a" "$(echo "$a / $i" | bc -l)"
    echo "$s" > "$TMP/full$N"; echo "$a" > "$TMP/fullapply$N"
    ipset destroy peer
done

# 1% diff vs full replace, and peak RSS, at 65,536.
N=65536; D="$TMP/diff"; mkdir -p "$D"
gen "$N" 0 "$D/a.txt"
python3 - "$D/a.txt" "$D/a1.txt" <<'PY'
import sys
lines = open(sys.argv[1]).read().split()
for i in range(0, len(lines), 100):
    lines[i] = "46.%d.%d.%d" % ((i >> 16) & 255, (i >> 8) & 255, i & 255)
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
PY
gen "$N" "$N" "$D/b.txt"
cp "$D/a.txt" "$D/feed.txt"; config "$D" "$D/feed.txt" "$N"
"$BIN" sync --config "$D/config.yaml" > /dev/null
: > "$D/diff.t"; : > "$D/diffapply.t"
for r in $(seq 1 "$RUNS"); do
    [ $((r % 2)) = 1 ] && cp "$D/a1.txt" "$D/feed.txt" || cp "$D/a.txt" "$D/feed.txt"
    t0=$(now); "$BIN" -vv sync --config "$D/config.yaml" > /dev/null 2> "$D/err.log"; t1=$(now)
    echo "$t1 - $t0" | bc -l >> "$D/diff.t"
    apply_ms "$D/err.log" >> "$D/diffapply.t"; echo >> "$D/diffapply.t"
done
dm=$(median < "$D/diff.t"); fm=$(cat "$TMP/full$N" 2>/dev/null || echo 0)
da=$(grep . "$D/diffapply.t" | median); fa=$(cat "$TMP/fullapply$N" 2>/dev/null || echo 0)
if [ "$fm" != 0 ]; then
    printf '1%% diff of %d entries: whole sync %.3f s vs full replace %.3f s = %.3fx; apply step %.3f s vs %.3f s = %.3fx (target <= 0.1x)\n' \
        "$N" "$dm" "$fm" "$(echo "$dm / $fm" | bc -l)" "$da" "$fa" "$(echo "$da / $fa" | bc -l)"
fi
# Each measured from the same starting point: the set and state holding list a.
cp "$D/a.txt" "$D/feed.txt"; "$BIN" sync --config "$D/config.yaml" > /dev/null
cp "$D/b.txt" "$D/feed.txt"
rss=$(/usr/bin/time -f %M "$BIN" sync --config "$D/config.yaml" 2>&1 >/dev/null | tail -1)
printf 'peak RSS of a %d-entry sync (full replace): %.1f MiB (target <= 24 MiB)\n' "$N" "$(echo "$rss / 1024" | bc -l)"
cp "$D/a.txt" "$D/feed.txt"; "$BIN" sync --config "$D/config.yaml" > /dev/null
cp "$D/a1.txt" "$D/feed.txt"
rss=$(/usr/bin/time -f %M "$BIN" sync --config "$D/config.yaml" 2>&1 >/dev/null | tail -1)
printf 'peak RSS of a %d-entry sync (1%% diff):      %.1f MiB\n' "$N" "$(echo "$rss / 1024" | bc -l)"
