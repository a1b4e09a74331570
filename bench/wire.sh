#!/usr/bin/env bash
# Benchmark of the SIP wire detector (issue 16): decoding throughput offline, and the daemon's
# CPU when the PBX sends it HEP v3 copies.
#
#   1. bench/gen_sip_pcap.py writes N SIP messages (default 1M) as a classic pcap, one per
#      Ethernet/IPv4/UDP frame to or from 192.0.2.10:5060 (phone registrations with digests,
#      friendly-scanner OPTIONS, SIPVicious-like REGISTER enumeration, toll-fraud INVITEs, 404s);
#   2. times, paired (A/B alternated, RUNS rounds after one warm-up), `sipban scan --pcap FILE
#      --json` and `tshark -n -r FILE -Y sip` (one summary line per SIP message); checks every
#      run's count (sipban's `counters.messages`, tshark's lines) against N; prints medians of
#      wall time and of CPU time (user+sys), messages per second per core (N / CPU seconds;
#      target for sipban >= 200,000/s) and the ratio;
#   3. (root only; PHASE2=0 skips it) starts `sipban run` inside a private network namespace
#      (`unshare -n`, its own ipsets) with `sip_wire: { hep: { listen: 127.0.0.1:9060 } }`,
#      waits for its first sync, reads its utime+stime (/proc/PID/stat) over IDLE seconds idle,
#      then while a Python sender replays the capture's first RATE*DURATION messages as HEP v3
#      datagrams at RATE per second; prints CPU % of one core (target <= 5% at 1,000/s): the
#      ticks read from before the sender starts (it builds its datagrams first) to 0.5 s after it
#      ends, over the sending time (conservative) and over that whole window; then the daemon's
#      own HEP counters and bans; SIGTERM at the end. CLK_TCK is 100: +-0.01 s of CPU.
#
# Needs bash >= 5, python3, GNU time, tshark (installed here when missing and root), and for
# phase 3 root, unshare, ip and ipset. Exit status 1 when a count is wrong (sipban or tshark
# did not count N messages, or the daemon refused a HEP datagram), 2 on a setup failure.
#
# Knobs: N=1000000  RUNS=3  RATE=1000  DURATION=30  IDLE=5  PHASE2=1  KEEP=1 (keep the temp
#        dir)  SIPBAN=path (default target/release/sipban, built when absent)

set -u
export LC_NUMERIC=C
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
N=${N:-1000000}
RUNS=${RUNS:-3}
RATE=${RATE:-1000}
DURATION=${DURATION:-30}
IDLE=${IDLE:-5}
PHASE2=${PHASE2:-1}
TIME_BIN=${TIME_BIN:-/usr/bin/time}

die() { echo "wire.sh: $*" >&2; exit 2; }
[ "${BASH_VERSINFO[0]}" -ge 5 ] || die "needs bash >= 5 (EPOCHREALTIME)"
[ -x "$TIME_BIN" ] && "$TIME_BIN" -f %M true >/dev/null 2>&1 || die "needs GNU time at $TIME_BIN (apt-get install time)"
if ! command -v tshark >/dev/null; then
    [ "$(id -u)" = 0 ] || die "tshark missing and not root: apt-get install -y tshark"
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark >/dev/null 2>&1; } \
        || die "apt-get install tshark failed"
fi

BIN=${SIPBAN:-$ROOT/target/release/sipban}
if [ ! -x "$BIN" ]; then
    [ -z "${SIPBAN:-}" ] || die "SIPBAN=$SIPBAN is not executable"
    (cd "$ROOT" && cargo build --release --locked) || die "cargo build --release failed"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sipban-wbench.XXXXXX")
cleanup() { if [ "${KEEP:-0}" = 1 ]; then echo "# kept $TMP" >&2; else rm -rf "$TMP"; fi; }
trap cleanup EXIT

PCAP="$TMP/sip.pcap"
t0=$EPOCHREALTIME
python3 "$HERE/gen_sip_pcap.py" "$N" "$PCAP" >/dev/null 2>"$TMP/gen.txt" || die "gen_sip_pcap.py failed: $(cat "$TMP/gen.txt")"
t1=$EPOCHREALTIME
echo "# $BIN; $(tshark -v 2>/dev/null | head -1)"
echo "# $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg), runs=$RUNS (paired A/B, medians)"
echo "capture: $N SIP messages over UDP, $(du -m "$PCAP" | cut -f1) MiB, made in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s ($(cat "$TMP/gen.txt"))"

# --- 1. decoding throughput ---------------------------------------------------------------------
status=0
median() { sort -g | awk '{a[NR]=$1} END{ if(NR==0){print "nan"; exit} if(NR%2) print a[(NR+1)/2]; else printf "%.6f\n",(a[NR/2]+a[NR/2+1])/2 }'; }
# timed NAME CMD...: wall and CPU (user+sys) to NAME.walls / NAME.cpus, stdout to NAME.out.
timed() {
    local name=$1; shift
    local t0 t1
    t0=$EPOCHREALTIME
    "$TIME_BIN" -f '%U %S %M' -o "$TMP/$name.time" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" </dev/null \
        || die "$name failed: $(tail -3 "$TMP/$name.err")"
    t1=$EPOCHREALTIME
    awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.6f\n", b-a}' >>"$TMP/$name.walls"
    tail -1 "$TMP/$name.time" | awk '{printf "%.2f\n", $1+$2}' >>"$TMP/$name.cpus"
    tail -1 "$TMP/$name.time" | awk '{print $3}' >>"$TMP/$name.rss"
}
sipban_count() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); c=d["counters"]; print(c["messages"], c["requests"], c["responses"], c["malformed"], d["carriers"].get("udp",0), d["records"], len(d["clients"]), len(d["bans"]))' "$TMP/sipban.out"; }
SCAN=("$BIN" scan --pcap "$PCAP" --json)
TSHARK=(tshark -n -r "$PCAP" -Y sip)
timed warm_s "${SCAN[@]}"; timed warm_t "${TSHARK[@]}"
bad=0
for _ in $(seq "$RUNS"); do
    timed sipban "${SCAN[@]}"
    read -r sm sreq sresp smal sudp srec scl sbans < <(sipban_count)
    [ "$sm" = "$N" ] || bad=1
    timed tshark "${TSHARK[@]}"
    tm=$(wc -l <"$TMP/tshark.out")
    [ "$tm" = "$N" ] || bad=1
done
echo "sipban scan --pcap --json: $sm SIP messages ($sreq requests, $sresp responses, $smal malformed; $sudp over UDP in $srec records), $scl clients, $sbans would-be bans"
echo "tshark -Y sip: $tm SIP messages"
if [ "$bad" = 0 ]; then
    echo "check: sipban and tshark both counted all $N SIP messages in every run"
else
    echo "check: FAILED, expected $N SIP messages from both (last run: sipban $sm, tshark $tm)"
    status=1
fi
sw=$(median <"$TMP/sipban.walls"); sc=$(median <"$TMP/sipban.cpus")
tw=$(median <"$TMP/tshark.walls"); tc=$(median <"$TMP/tshark.cpus")
srss=$(sort -n "$TMP/sipban.rss" | tail -1); trss=$(sort -n "$TMP/tshark.rss" | tail -1)
awk -v n="$N" -v sw="$sw" -v sc="$sc" -v tw="$tw" -v tc="$tc" -v srss="$srss" -v trss="$trss" 'BEGIN{
    if (sc < 0.01) sc = 0.01; if (tc < 0.01) tc = 0.01;
    printf "sipban scan --pcap: %.2f s wall, %.2f s CPU: %.0f messages/s per core (%.0f/s wall; target >= 200000), peak RSS %.1f MiB\n", sw, sc, n/sc, n/sw, srss/1024;
    printf "tshark -Y sip:      %.2f s wall, %.2f s CPU: %.0f messages/s per core (%.0f/s wall), peak RSS %.1f MiB\n", tw, tc, n/tc, n/tw, trss/1024;
    printf "ratio sipban / tshark, messages per CPU second: %.1fx (wall: %.1fx)\n", tc/sc, tw/sw }'

# --- 2. the daemon's CPU at RATE HEP datagrams per second ---------------------------------------
if [ "$PHASE2" != 1 ]; then exit $status; fi
if [ "$(id -u)" != 0 ]; then echo "daemon: skipped (needs root for a network namespace and ipsets)"; exit $status; fi
command -v unshare >/dev/null && command -v ipset >/dev/null || die "phase 2 needs unshare and ipset"

cat >"$TMP/config.yaml" <<YAML
state_dir: $TMP/state
sets:
  v4: { name: sipban-wbench-v4 }
  v6: { name: sipban-wbench-v6 }
sip_wire:
  hep: { listen: "127.0.0.1:9060", peers: [127.0.0.1] }
daemon:
  sync_schedule: "0 0 0 1 1 *"
YAML

cat >"$TMP/hep_send.py" <<'PY'
# hep_send.py PCAP COUNT RATE: replay the first COUNT SIP messages of a classic Ethernet/IPv4/UDP
# pcap (cycling when it holds fewer) as HEP v3 datagrams to 127.0.0.1:9060, RATE per second.
import socket, struct, sys, time
path, count, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
msgs = []
with open(path, "rb") as f:
    f.read(24)
    while len(msgs) < count:
        h = f.read(16)
        if len(h) < 16:
            break
        incl = struct.unpack("<IIII", h)[2]
        pkt = f.read(incl)
        ip = pkt[14:]
        ihl = (ip[0] & 15) * 4
        sport, dport = struct.unpack("!HH", ip[ihl:ihl + 4])
        msgs.append((ip[12:16], ip[16:20], sport, dport, ip[ihl + 8:]))
if not msgs:
    sys.exit("no messages in " + path)
def chunk(kind, value):
    return struct.pack("!HHH", 0, kind, 6 + len(value)) + value
t0 = time.time() + 0.2
dgrams = []
for i in range(count):
    src, dst, sport, dport, payload = msgs[i % len(msgs)]
    t = t0 + i / rate
    body = (chunk(1, b"\x02") + chunk(2, b"\x11") + chunk(3, src) + chunk(4, dst)
            + chunk(7, struct.pack("!H", sport)) + chunk(8, struct.pack("!H", dport))
            + chunk(9, struct.pack("!I", int(t))) + chunk(10, struct.pack("!I", int(t % 1 * 1e6)))
            + chunk(11, b"\x01") + chunk(12, struct.pack("!I", 2001)) + chunk(15, payload))
    dgrams.append(b"HEP3" + struct.pack("!H", 6 + len(body)) + body)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
start = time.monotonic() + 0.2
for i, d in enumerate(dgrams):
    wait = start + i / rate - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    s.sendto(d, ("127.0.0.1", 9060))
print(f"{count} {time.monotonic() - start:.3f}")
PY

# Runs inside `unshare -n`: everything the daemon touches (loopback, ipsets) is private.
cat >"$TMP/phase2.sh" <<'SH'
set -u
TMP=$1 BIN=$2 PCAP=$3 RATE=$4 DURATION=$5 IDLE=$6
ip link set lo up
"$BIN" run -v --config "$TMP/config.yaml" 2>"$TMP/daemon.log" &
pid=$!
stop() { kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }
trap stop EXIT
for _ in $(seq 300); do grep -q "sync ok" "$TMP/daemon.log" && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
grep -q "sync ok" "$TMP/daemon.log" || { echo "FAIL the daemon did not start: $(tail -5 "$TMP/daemon.log")"; exit 2; }
grep -q "sip_wire: .*9060" "$TMP/daemon.log" || grep -q "sip_wire:" "$TMP/daemon.log" \
    || { echo "FAIL no sip_wire listener: $(grep -i wire "$TMP/daemon.log" | tail -3)"; exit 2; }
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
sleep 1
a=$(ticks); ta=$EPOCHREALTIME
sleep "$IDLE"
b=$(ticks); tb=$EPOCHREALTIME
echo "idle $((b - a)) $(awk -v a="$ta" -v b="$tb" 'BEGIN{printf "%.3f", b-a}') $hz"
count=$(awk -v r="$RATE" -v d="$DURATION" 'BEGIN{printf "%d", r*d}')
a=$(ticks); ta=$EPOCHREALTIME
sent=$(python3 "$TMP/hep_send.py" "$PCAP" "$count" "$RATE") || { echo "FAIL sender"; exit 2; }
sleep 0.5   # let the daemon drain its socket
b=$(ticks); tb=$EPOCHREALTIME
echo "load $((b - a)) $(awk -v a="$ta" -v b="$tb" 'BEGIN{printf "%.3f", b-a}') $hz $sent"
# The counters are logged at most every 10 s: wait for the line that includes the last datagram.
n=${sent%% *}
for _ in $(seq 150); do
    grep -q "sip_wire: $n HEP datagrams" "$TMP/daemon.log" && break
    sleep 0.1
done
echo "stats $(grep -o 'sip_wire: [0-9]* HEP datagrams.*' "$TMP/daemon.log" | tail -1)"
echo "bans $(grep -c 'sip_wire: [0-9]* new bans' "$TMP/daemon.log") $(ipset list -t sipban-wbench-v4 | awk -F': ' '/Number of entries/ {print $2}')"
stop; trap - EXIT
echo "exit $(grep -c . "$TMP/daemon.log")"
SH

echo "daemon: sipban run in a private network namespace, HEP v3 to 127.0.0.1:9060, $RATE datagrams/s for $DURATION s"
unshare -n bash "$TMP/phase2.sh" "$TMP" "$BIN" "$PCAP" "$RATE" "$DURATION" "$IDLE" >"$TMP/phase2.out" 2>&1
rc=$?
if grep -q '^FAIL' "$TMP/phase2.out" || [ $rc -ne 0 ]; then
    cat "$TMP/phase2.out" >&2; die "phase 2 failed (rc $rc)"
fi
awk -v rate="$RATE" '
    $1 == "idle" { printf "daemon idle: %d ticks in %.1f s = %.2f%% of one core\n", $2, $3, 100*$2/$4/$3 }
    $1 == "load" { printf "daemon at %d HEP datagrams/s: %d sent in %.1f s (%.0f/s); its CPU: %d ticks (%.2f s) = %.2f%% of one core over the sending time (target <= 5%%; %.2f%% over the whole %.1f s window)\n", rate, $5, $6, $5/$6, $2, $2/$4, 100*$2/$4/$6, 100*$2/$4/$3, $3 }
    $1 == "stats" { sub(/^stats /, ""); print "daemon counters: " $0 }
    $1 == "bans" { printf "daemon bans: %d ban batches logged, %s addresses in its v4 set\n", $2, $3 }
' "$TMP/phase2.out"
sent=$(awk '$1 == "load" {print $5}' "$TMP/phase2.out")
line=$(awk '$1 == "stats"' "$TMP/phase2.out")
got=$(sed -n 's/.*sip_wire: \([0-9]*\) HEP datagrams.*/\1/p' <<<"$line")
refused=$(sed -n 's/.* \([0-9]*\) HEP refused.*/\1/p' <<<"$line")
if [ "${refused:-x}" != 0 ]; then
    echo "check: FAILED, the daemon refused ${refused:-?} HEP datagrams"; status=1
elif [ "${got:-0}" != "$sent" ]; then
    echo "check: the daemon logged ${got:-no} of $sent HEP datagrams (loopback drops, or its 10 s counter log lagged)"
else
    echo "check: the daemon decoded all $sent HEP datagrams, none refused"
fi
exit $status
