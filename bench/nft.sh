#!/usr/bin/env bash
# Benchmark: sipban's nft backend (`backend: nft`) against one `nft -f` of the same batch,
# paired in one run.
#
#   full replace of 65,536 and 262,144 entries (sipban sync: one transaction that checks the
#     table's mark, flushes the hash set of addresses and the interval set of prefixes and adds
#     every element) vs one `nft -f` of the same script on a peer table          (target <= 1.2x)
#   a 1% diff sync vs a full replace sync, at each size                          (target <= 0.1x)
#   and, with PEER_DIFF=1, the peer of that diff: one `nft -f` deleting and adding the 1% in
#     place in the hash set, and the same in a single interval set holding everything (the
#     layout before the hash sets: on nft 1.0.6 a delete there costs time in proportion to the
#     set, about 36 s for 1% of 65,536; it is skipped at 262,144)
#
# Everything runs inside a private network namespace (unshare -n): the host's ruleset is never
# touched. Needs root, python3, nft and bc. Not a test: it prints numbers.
#   RUNS=5 SIZES="65536 262144" sudo -E bash bench/nft.sh
#   BIN=path/to/sipban uses that binary (else a release build); PEER_DIFF=0 skips the peers
#   of the diff; VERBOSE=1 prints every run.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-5}
SIZES=${SIZES:-"65536 262144"}
PEER_DIFF=${PEER_DIFF:-1}
[ "$(id -u)" = 0 ] || { echo "bench/nft.sh: needs root (private network namespace, nft)" >&2; exit 2; }
command -v nft > /dev/null || { echo "bench/nft.sh: needs nft (apt-get install nftables)" >&2; exit 2; }
if [ "${SIPBAN_BENCH_IN_NS:-}" != 1 ]; then
    [ -n "${BIN:-}" ] || (cd "$HERE" && cargo build --release --locked --quiet)
    exec env SIPBAN_BENCH_IN_NS=1 RUNS="$RUNS" SIZES="$SIZES" PEER_DIFF="$PEER_DIFF" BIN="${BIN:-}" unshare -n bash "$0" "$@"
fi
ip link set lo up
BIN=${BIN:-"$HERE/target/release/sipban"}
TMP=$(mktemp -d /tmp/sipban-nft-bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

gen() { # gen N OFFSET FILE: N distinct public IPv4 addresses, deterministic (as bench/sync.sh)
    python3 - "$1" "$2" "$3" <<'PY'
import sys, ipaddress
n, off, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
base = int(ipaddress.IPv4Address("45.0.0.0"))
with open(path, "w") as f:
    for i in range(off, off + n):
        f.write(str(ipaddress.IPv4Address(base + (i * 2654435761) % (1 << 24))) + "\n")
PY
}

now() { date +%s.%N; }
apply_ms() { awk '/ planned: /{p=$(NF-1)} / applied: /{a=$(NF-1)} END {printf "%.6f", (a-p)/1000}' "$1"; }
median() { sort -g | awk '{a[NR]=$1} END {m=int((NR+1)/2); print a[m]}'; }

config() { # config DIR FEEDFILE CAP
    cat > "$1/config.yaml" <<YAML
state_dir: $1/state
backend: nft
sets:
  v4: { name: bench4, cap: $3 }
  v6: { name: bench6, cap: 1024 }
allow_own_addresses: true
feeds:
  - { name: bench, url: 'file://$2', ttl: 1d, max_shrink: 100% }
YAML
}

peer_replace() { # peer_replace LIST OUT: the script sipban sends for a full replace, on table peer
    python3 - "$1" "$2" <<'PY'
import sys
items = open(sys.argv[1]).read().split()
with open(sys.argv[2], "w") as f:
    f.write("add table inet peer\nadd set inet peer sipban_mark { type inet_service; }\n")
    f.write("add set inet peer p_addr { type ipv4_addr; flags timeout; }\n")
    f.write("add set inet peer p { type ipv4_addr; flags interval,timeout; }\n")
    f.write("delete element inet peer sipban_mark { 1 }\nadd element inet peer sipban_mark { 1 }\n")
    f.write("flush set inet peer p_addr\nflush set inet peer p\n")
    for i in range(0, len(items), 256):
        f.write("add element inet peer p_addr { " + ", ".join(a + " timeout 86400s" for a in items[i:i + 256]) + " }\n")
PY
}

for N in $SIZES; do
    D="$TMP/n$N"; mkdir -p "$D"
    gen "$N" 0 "$D/a.txt"; gen "$N" "$N" "$D/b.txt"
    cp "$D/a.txt" "$D/feed.txt"
    config "$D" "$D/feed.txt" "$N"
    "$BIN" sync --config "$D/config.yaml" > /dev/null
    peer_replace "$D/a.txt" "$D/pa.nft"; peer_replace "$D/b.txt" "$D/pb.nft"
    nft add table inet peer; nft add set inet peer sipban_mark '{ type inet_service; }'
    nft add element inet peer sipban_mark '{ 1 }'; nft -f "$D/pa.nft"
    : > "$D/sipban.t"; : > "$D/nft.t"; : > "$D/apply.t"
    for r in $(seq 1 "$RUNS"); do
        [ $((r % 2)) = 1 ] && cp "$D/b.txt" "$D/feed.txt" || cp "$D/a.txt" "$D/feed.txt"
        t0=$(now); "$BIN" -vv sync --config "$D/config.yaml" > /dev/null 2> "$D/err.log"; t1=$(now)
        echo "$t1 - $t0" | bc -l >> "$D/sipban.t"
        apply_ms "$D/err.log" >> "$D/apply.t"; echo >> "$D/apply.t"
        [ $((r % 2)) = 1 ] && p="$D/pb.nft" || p="$D/pa.nft"
        t0=$(now); nft -f "$p"; t1=$(now)
        echo "$t1 - $t0" | bc -l >> "$D/nft.t"
    done
    [ -n "${VERBOSE:-}" ] && paste "$D/sipban.t" "$D/nft.t" <(grep . "$D/apply.t") >&2
    s=$(median < "$D/sipban.t"); i=$(median < "$D/nft.t"); a=$(grep . "$D/apply.t" | median)
    printf 'full replace %7d entries: whole sync %.3f s vs nft -f %.3f s = %.2fx; its apply step %.3f s = %.2fx (target <= 1.2x)\n' \
        "$N" "$s" "$i" "$(echo "$s / $i" | bc -l)" "$a" "$(echo "$a / $i" | bc -l)"
    echo "$s" > "$TMP/full$N"; echo "$a" > "$TMP/fullapply$N"
    nft delete table inet peer
    nft delete table inet sipban
done

# 1% diff vs full replace, at each size.
for N in $SIZES; do
D="$TMP/diff$N"; mkdir -p "$D"
gen "$N" 0 "$D/a.txt"
python3 - "$D/a.txt" "$D/a1.txt" <<'PY'
import sys
lines = open(sys.argv[1]).read().split()
for i in range(0, len(lines), 100):
    lines[i] = "46.%d.%d.%d" % ((i >> 16) & 255, (i >> 8) & 255, i & 255)
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
PY
cp "$D/a.txt" "$D/feed.txt"; config "$D" "$D/feed.txt" "$N"
"$BIN" sync --config "$D/config.yaml" > /dev/null
: > "$D/diff.t"; : > "$D/diffapply.t"
for r in $(seq 1 "$RUNS"); do
    [ $((r % 2)) = 1 ] && cp "$D/a1.txt" "$D/feed.txt" || cp "$D/a.txt" "$D/feed.txt"
    t0=$(now); "$BIN" -vv sync --config "$D/config.yaml" > /dev/null 2> "$D/err.log"; t1=$(now)
    echo "$t1 - $t0" | bc -l >> "$D/diff.t"
    apply_ms "$D/err.log" >> "$D/diffapply.t"; echo >> "$D/diffapply.t"
    grep -q "replacing every set" "$D/err.log" && echo "run $r: the diff was applied as a replace" >&2
done
[ -n "${VERBOSE:-}" ] && paste "$D/diff.t" <(grep . "$D/diffapply.t") >&2
dm=$(median < "$D/diff.t"); fm=$(cat "$TMP/full$N" 2>/dev/null || echo 0)
da=$(grep . "$D/diffapply.t" | median); fa=$(cat "$TMP/fullapply$N" 2>/dev/null || echo 0)
if [ "$fm" != 0 ]; then
    printf '1%% diff of %7d entries: whole sync %.3f s vs full replace %.3f s = %.3fx; apply step %.3f s vs %.3f s = %.3fx (target <= 0.1x)\n' \
        "$N" "$dm" "$fm" "$(echo "$dm / $fm" | bc -l)" "$da" "$fa" "$(echo "$da / $fa" | bc -l)"
fi
if [ "$PEER_DIFF" = 1 ]; then
    # The peers of the diff, once: the same 1% deleted and added in place in one nft -f, in
    # the hash set sipban uses, and in a single interval set holding everything.
    python3 - "$D/a.txt" "$D/a1.txt" "$D/pd.nft" "$D/pi.nft" "$D/pifill.nft" <<'PY'
import sys
a = open(sys.argv[1]).read().split(); b = open(sys.argv[2]).read().split()
dels = sorted(set(a) - set(b)); adds = sorted(set(b) - set(a))
def script(t, s, d, ad):
    return ("delete element inet %s %s { " % (t, s) + ", ".join(d) + " }\n" if d else "") + \
           ("add element inet %s %s { " % (t, s) + ", ".join(x + " timeout 86400s" for x in ad) + " }\n" if ad else "")
open(sys.argv[3], "w").write(script("sipban", "bench4_addr", dels, adds))
open(sys.argv[4], "w").write(script("old", "s", dels, adds))
with open(sys.argv[5], "w") as f:
    f.write("add table inet old\nadd set inet old s { type ipv4_addr; flags interval,timeout; }\n")
    for i in range(0, len(a), 256):
        f.write("add element inet old s { " + ", ".join(x + " timeout 86400s" for x in a[i:i + 256]) + " }\n")
PY
    cp "$D/a.txt" "$D/feed.txt"; "$BIN" sync --config "$D/config.yaml" > /dev/null
    t0=$(now); nft -f "$D/pd.nft"; t1=$(now)
    printf 'peer: one nft -f deleting and adding the 1%% in the hash set of %d: %.3f s = %.3fx the full replace sync\n' \
        "$N" "$(echo "$t1 - $t0" | bc -l)" "$(echo "($t1 - $t0) / $fm" | bc -l)"
    if [ "$N" -le 65536 ]; then
        nft -f "$D/pifill.nft"
        t0=$(now); nft -f "$D/pi.nft"; t1=$(now)
        printf 'peer: the same in one interval set of %d (the single-set layout): %.3f s\n' "$N" "$(echo "$t1 - $t0" | bc -l)"
        nft delete table inet old
    fi
fi
nft delete table inet sipban
done
