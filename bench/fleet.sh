#!/usr/bin/env bash
# Benchmark: a fleet of PBXes sharing one CrowdSec Local API (issue 17, item 5).
#
#   a real LAPI (the Debian `crowdsec` package, `crowdsec -no-cs -no-capi`) on loopback, its own
#     SQLite database, loaded with DECISIONS ban decisions (Ip v4 mostly, some Range v4, Ip v6)
#   HOSTS simulated sipban hosts, each with its own bouncer key, machine login, state, kernel
#     sets and Asterisk security log; in each of ROUNDS rounds every host runs `sipban sync`
#     once, the hosts spread evenly over PERIOD seconds (their schedule), after two new
#     attackers appeared in its log: it pulls the full state and pushes two alerts
#
# Prints per sipban run: the pull (the crowdsec source's own timing), the whole run and the
# peak RSS of the sipban process (VmHWM, from -vv), as median / p95 / max; and the LAPI's CPU
# over the schedule. Everything runs inside a private network namespace (unshare -n): the
# host's sets are never touched. Needs root, python3 and the crowdsec package (see
# scripts/test.sh for the offline install). Not a test: it prints numbers.
#   HOSTS=50 DECISIONS=20000 ROUNDS=3 PERIOD=60 WAL=1 sudo -E bash bench/fleet.sh
set -euo pipefail
[ -n "${FLEET_TRACE:-}" ] && set -x
HERE=$(cd "$(dirname "$0")/.." && pwd)
HOSTS=${HOSTS:-50}
DECISIONS=${DECISIONS:-20000}
ROUNDS=${ROUNDS:-3}
PERIOD=${PERIOD:-60}
PORT=${PORT:-18080}
WAL=${WAL:-1} # SQLite in WAL mode, as the Debian package configures it (WAL=0: without)
[ "$(id -u)" = 0 ] || { echo "bench/fleet.sh: needs root (private network namespace, ipset)" >&2; exit 2; }
command -v crowdsec >/dev/null || { echo "bench/fleet.sh: needs the crowdsec package (scripts/test.sh installs it)" >&2; exit 2; }
if [ "${SIPBAN_BENCH_IN_NS:-}" != 1 ]; then
    [ -n "${BIN:-}" ] || (cd "$HERE" && cargo build --release --locked --quiet)
    exec env SIPBAN_BENCH_IN_NS=1 HOSTS="$HOSTS" DECISIONS="$DECISIONS" ROUNDS="$ROUNDS" \
        PERIOD="$PERIOD" PORT="$PORT" WAL="$WAL" BIN="${BIN:-}" unshare -n bash "$0" "$@"
fi
ip link set lo up
BIN=${BIN:-"$HERE/target/release/sipban"}
TMP=$(mktemp -d /tmp/sipban-fleet.XXXXXX)
LAPI_PID=
cleanup() {
    [ -n "$LAPI_PID" ] && kill "$LAPI_PID" 2>/dev/null
    wait "$LAPI_PID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
URL="http://127.0.0.1:$PORT"

# The LAPI: /etc/crowdsec/config.yaml with its own database, port, no Central API, no
# prometheus, logs to a file.
python3 - "$TMP" "$PORT" "$WAL" <<'PY'
import re, sys
d, port, wal = sys.argv[1], sys.argv[2], sys.argv[3]
t = open('/etc/crowdsec/config.yaml').read()
t = t.replace('daemonize: true', 'daemonize: false').replace('log_media: file', 'log_media: stdout')
t = re.sub(r'log_dir: .*', f'log_dir: {d}/', t)
t = re.sub(r'db_path: .*', f'db_path: {d}/crowdsec.db', t)
t = re.sub(r'listen_uri: .*', f'listen_uri: 127.0.0.1:{port}', t)
t = re.sub(r'credentials_path: /etc/crowdsec/local_api_credentials.yaml', f'credentials_path: {d}/local_api_credentials.yaml', t)
t = re.sub(r'\n    online_client:.*\n      credentials_path: .*', '', t)
t = t.replace('prometheus:\n  enabled: true', 'prometheus:\n  enabled: false')
# As Debian's config.yaml.local sets it (not copied here): SQLite in WAL mode.
if wal == '1':
    t = t.replace('  type: sqlite\n', '  type: sqlite\n  use_wal: true\n')
open(f'{d}/config.yaml', 'w').write(t)
PY
CS="cscli -c $TMP/config.yaml"
echo "url: $URL" > "$TMP/local_api_credentials.yaml"
$CS machines add bench-cli -p benchCliPassw0rd -f "$TMP/local_api_credentials.yaml" -u "$URL" >/dev/null 2>&1
crowdsec -c "$TMP/config.yaml" -no-cs -no-capi >"$TMP/lapi.log" 2>&1 &
LAPI_PID=$!
for _ in $(seq 1 600); do
    (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break
    sleep 0.05
done

# DECISIONS decisions: 95% Ip v4, 2.5% Range v4 /24, 2.5% Ip v6, all public, 4h to 24h.
python3 - "$DECISIONS" "$TMP/decisions.json" <<'PY'
import json, sys, ipaddress
n, path = int(sys.argv[1]), sys.argv[2]
out = []
for i in range(n):
    dur = f"{4 + i % 21}h"
    if i % 40 == 0:
        v, scope = f"46.{(i // 256) % 256}.{i % 256}.0/24", "range"
    elif i % 40 == 1:
        v, scope = str(ipaddress.IPv6Address(0x2a010000 << 96 | i)), "ip"
    else:
        v, scope = str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("45.0.0.0")) + (i * 2654435761) % (1 << 24))), "ip"
    out.append({"duration": dur, "scope": scope, "type": "ban", "value": v, "origin": "bench", "reason": "bench/preload"})
json.dump(out, open(path, "w"))
PY
t0=$(date +%s.%N)
$CS decisions import -i "$TMP/decisions.json" >"$TMP/import.log" 2>&1
echo "loaded $DECISIONS decisions in $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s"

# The hosts.
for i in $(seq 1 "$HOSTS"); do
    h="$TMP/h$i"; mkdir -p "$h"
    key="benchBouncerKeyOfHost$i-0123456789abcdef"
    $CS bouncers add "pbx-$i" -k "$key" >/dev/null 2>&1
    $CS machines add "pbx-$i" -p "benchMachinePassw0rd$i" -f /dev/null >/dev/null 2>&1
    printf '%s\n' "$key" >"$h/bouncer.key"; printf 'benchMachinePassw0rd%s\n' "$i" >"$h/machine.pw"
    chmod 600 "$h/bouncer.key" "$h/machine.pw"
    : >"$h/security"
    cat >"$h/config.yaml" <<YAML
state_dir: $h/state
sets:
  v4: { name: f${i}v4, cap: 65536 }
  v6: { name: f${i}v6, cap: 65536 }
asterisk:
  logs: [$h/security]
  maxretry: 3
  bantime: 1h
crowdsec:
  lapi_url: $URL
  bouncer_key_file: $h/bouncer.key
  machine_id: pbx-$i
  machine_password_file: $h/machine.pw
YAML
done

attack() { # attack HOST ROUND: two new attackers, three failures each, now
    local h="$TMP/h$1" stamp
    stamp=$(date -u '+%Y-%m-%d %H:%M:%S')
    for k in 1 2; do
        local ip="47.$1.$2.$k"
        for _ in 1 2 3; do
            printf '[%s] SECURITY[4140] res_security_log.c: SecurityEvent="InvalidPassword",EventTV="%s",Severity="Error",Service="PJSIP",EventVersion="2",AccountID="3001",SessionID="1a2b",LocalAddress="IPV4/TCP/192.0.2.1/5060",RemoteAddress="IPV4/TCP/%s/5060",Challenge="17",ReceivedChallenge="17",ReceivedHash="ff"\n' \
                "$stamp" "$stamp" "$ip" >>"$h/security"
        done
    done
}

run_host() { # run_host HOST ROUND: one scheduled sync, its numbers appended to runs.tsv
    trap - EXIT # a background copy of this shell must not run the cleanup
    local h="$TMP/h$1" s e
    attack "$1" "$2"
    s=$(date +%s.%N)
    TZ=UTC "$BIN" sync --json -vv --config "$h/config.yaml" >"$h/out.$2.json" 2>"$h/err.$2.log" || true
    e=$(date +%s.%N)
    python3 - "$h/out.$2.json" "$h/err.$2.log" "$s" "$e" "$1" "$2" >>"$TMP/runs.tsv" <<'PY'
import json, re, sys
out, err, s, e, host, rnd = sys.argv[1:]
try:
    j = json.load(open(out))
except Exception:
    j = {}
src = next((x for x in j.get("sources", []) if x.get("name") == "crowdsec"), {})
c = src.get("crowdsec", {})
up = next((x for x in (j.get("upstream") or {}).get("sinks", []) if x.get("sink") == "crowdsec"), {})
m = re.search(r"peak RSS of this process: (\d+) KiB", open(err).read())
print("\t".join(str(x) for x in [host, rnd, j.get("outcome", "?"), c.get("millis", ""),
      round(float(e) - float(s), 3), m.group(1) if m else "", c.get("decisions", ""),
      up.get("sent", ""), c.get("status", "?"), up.get("status", "?"),
      (up.get("detail") or "").replace("\t", " ")]))
PY
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$LAPI_PID/stat"; }
TICKS=$(getconf CLK_TCK)
: >"$TMP/runs.tsv"
c0=$(cpu_ticks); w0=$(date +%s.%N)
for r in $(seq 1 "$ROUNDS"); do
    start=$(date +%s.%N)
    pids=()
    for i in $(seq 1 "$HOSTS"); do
        slot=$(python3 -c "print(max(0, $start + ($i - 1) * $PERIOD / $HOSTS - $(date +%s.%N)))")
        sleep "$slot"
        run_host "$i" "$r" &
        pids+=($!)
    done
    wait "${pids[@]}" || true
    rest=$(python3 -c "print(max(0, $start + $PERIOD - $(date +%s.%N)))")
    sleep "$rest"
done
c1=$(cpu_ticks); w1=$(date +%s.%N)
lapi_rss=$(awk '/VmHWM/{print $2}' "/proc/$LAPI_PID/status")
alerts=$($CS alerts list -a -o json -l 0 2>/dev/null | python3 -c 'import json,sys; a=json.load(sys.stdin) or []; print(sum(1 for x in a if str(x.get("machine_id","")).startswith("pbx-")))')

python3 - "$TMP/runs.tsv" "$c0" "$c1" "$w0" "$w1" "$TICKS" "$lapi_rss" "$alerts" "$HOSTS" "$ROUNDS" "$PERIOD" "$DECISIONS" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
c0, c1, w0, w1, tck = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
lapi_rss, alerts, hosts, rounds, period, decisions = sys.argv[7:]
def stats(xs):
    xs = sorted(xs)
    if not xs:
        return "n/a"
    p = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))]
    return f"median {p(0.5):.3f}  p95 {p(0.95):.3f}  max {xs[-1]:.3f}"
ok = [r for r in rows if r[2] in ("ok", "partial")]
pull = [float(r[3]) / 1000 for r in rows if r[3]]
wall = [float(r[4]) for r in rows]
rss = [float(r[5]) / 1024 for r in rows if r[5]]
dec = [int(r[6]) for r in rows if r[6]]
sent = sum(int(r[7]) for r in rows if r[7])
bad = [r for r in rows if r[8] != "ok"]
push_bad = [r for r in rows if r[9] != "ok"]
wallall = w1 - w0
cpu = (c1 - c0) / tck
print(f"fleet: {hosts} hosts x {rounds} rounds, one sync each per {period} s; LAPI preloaded with {decisions} decisions")
print(f"sipban runs: {len(rows)} ({len(ok)} ok or partial, {len(bad)} pulls not ok)")
print(f"decisions pulled per run: {min(dec) if dec else 'n/a'} .. {max(dec) if dec else 'n/a'}")
print(f"pull time (s):      {stats(pull)}")
print(f"whole sync (s):     {stats(wall)}")
print(f"peak RSS (MiB):     {stats(rss)}")
for r in push_bad:
    print(f"  push not ok: host {r[0]} round {r[1]}: {r[9]} {r[10]}")
print(f"alerts pushed: {sent} by the runs, {alerts} from pbx-* machines in the LAPI (2 per host per round expected: {2 * int(hosts) * int(rounds)})")
print(f"LAPI CPU: {cpu:.1f} s over {wallall:.0f} s = {100 * cpu / wallall:.1f}% of one core; LAPI peak RSS {int(lapi_rss) / 1024:.0f} MiB")
PY
