#!/usr/bin/env bash
# Idle RSS and idle CPU of `sipban run` holding 65,536 entries, inside a private network
# namespace (the host's sets are never touched). Targets: idle RSS <= 12 MiB, idle CPU ~0.
#
#   sudo bash bench/daemon_rss.sh [IDLE_SECONDS]     (default 60)
#
# It builds the release binary, writes a 65,536-address file feed and an Asterisk log, starts
# the daemon (full syncs once a year, so after the first one it only waits), waits for the
# first sync, appends one detection (a real-time pass), then samples VmRSS/VmHWM and counts
# CPU ticks and voluntary context switches (wake-ups) over the idle window.
set -euo pipefail
cd "$(dirname "$0")/.."
idle="${1:-60}"
[ "$(id -u)" = 0 ] || { echo "run as root (network namespace)" >&2; exit 2; }
cargo build --release --quiet
bin="$(pwd)/target/release/sipban"
work="$(mktemp -d)"
ns="sipban-rss-$$"
cleanup() {
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true
    ip netns delete "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
python3 - "$work/list.txt" <<'EOF'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(65536):
        v = 0x2d000000 + i
        f.write(f"{v >> 24}.{(v >> 16) & 255}.{(v >> 8) & 255}.{v & 255}\n")
EOF
: > "$work/messages"
cat > "$work/config.yaml" <<EOF
state_dir: $work/state
sets:
  v4: { name: rss4, cap: 65536 }
  v6: { name: rss6, cap: 65536 }
feeds:
  - { name: big, url: 'file://$work/list.txt', ttl: 7d }
asterisk:
  logs: [$work/messages]
  maxretry: 1
daemon:
  sync_schedule: "0 0 0 1 1 *"
EOF
TZ=UTC ip netns exec "$ns" "$bin" run -v --config "$work/config.yaml" 2> "$work/daemon.log" &
pid=$!
for _ in $(seq 600); do grep -q "sync ok" "$work/daemon.log" && break; sleep 0.1; done
grep -q "sync ok" "$work/daemon.log" || { cat "$work/daemon.log"; echo "first sync did not finish" >&2; exit 1; }
echo "[$(date -u '+%F %T')] NOTICE[1] chan_sip.c: Registration from '<sip:1@x>' failed for '46.1.2.3:5060' - Wrong password" >> "$work/messages"
sleep 2
entries=$(ip netns exec "$ns" ipset list -t rss4 | awk -F': ' '/Number of entries/ {print $2}')
st() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$pid/status"; }
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
rss0=$(st VmRSS); hwm=$(st VmHWM); t0=$(ticks); c0=$(st voluntary_ctxt_switches)
sleep "$idle"
rss1=$(st VmRSS); t1=$(ticks); c1=$(st voluntary_ctxt_switches)
hz=$(getconf CLK_TCK)
echo "kernel set rss4: $entries entries"
echo "peak RSS (VmHWM, first sync of 65,536 entries): $hwm kB"
echo "idle RSS after the first sync: $rss0 kB; after ${idle}s idle: $rss1 kB"
awk -v t="$((t1 - t0))" -v hz="$hz" -v s="$idle" 'BEGIN { printf "idle CPU: %d ticks in %d s = %.3f%% of one core\n", t, s, 100 * t / hz / s }'
awk -v c="$((c1 - c0))" -v s="$idle" 'BEGIN { printf "idle wake-ups: %d voluntary context switches in %d s (%.2f/s)\n", c, s, c / s }'
grep -E "real time|sync ok" "$work/daemon.log" | sed 's/^/  log: /'
