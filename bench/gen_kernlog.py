#!/usr/bin/env python3
"""Deterministic kernel log (kern.log format) for benchmarking `sipban scan --kernel`.

    gen_kernlog.py N [--seed S] [-o FILE] [--truth FILE]

Writes N lines dated from Jan 2 00:00:00 on (one to a few lines per second), in the form
rsyslog writes kern.log: `Jan  2 00:00:01 pbx kernel: [ 1234.567890] <prefix>IN=eth0 OUT= ...`.

The mix (by construction, so the truth is known without re-implementing the scoring):
  * noise probers (IPv4 and IPv6, uncompressed like the kernel prints them): each hits at most
    two ports whose weights add up to less than 10 (never a sighting);
  * scanners: each sends a burst of 12 SYNs to distinct ports within 12 seconds (a sighting by
    distinct ports; some of the ports are backdoors, so often by weight too);
  * lines that yield no counted packet: outbound and forwarded packets, ICMP errors quoting our
    own packet (their embedded SRC/DST must not be taken), answers (ACK/RST, DNS replies),
    DHCP broadcasts, loopback, other kernel messages, a forged `kernel[pid]:` tag, another
    program's lines.

--truth writes `ADDRESS<TAB>PACKETS<TAB>SIGHTING` for every source that sipban should list with
a counted packet (canonical address; PACKETS counts its inbound TCP/UDP lines; SIGHTING is 1 for
the scanners). Only counted packets are in the file: replies, broadcasts and loopback lines come
from addresses listed nowhere else.
"""

import argparse
import ipaddress
import random
import sys

MONTH = "Jan"
OWN4 = "203.0.113.10"
OWN6 = "2001:0db8:0000:0000:0000:0000:0000:0001"
MAC = "MAC=52:54:00:ab:cd:ef:00:1a:2b:3c:4d:5e:08:00"
MAC6 = "MAC=52:54:00:ab:cd:ef:00:1a:2b:3c:4d:5e:86:dd"
PREFIXES = ["[UFW BLOCK] ", "", "DROP", "sipban-probe: "]
# Ports weighing 0..4 (and unlisted ones): two of them never reach 10.
NOISE_TCP = [22, 25, 21, 445, 23, 3389, 8080, 3306, 6379, 5900, 8123, 2222, 8443, 9000, 5555, 81]
NOISE_UDP = [53, 161, 1900, 11211, 5038, 500, 389, 19132, 3702]
SCAN_PORTS = [1, 23, 111, 1524, 31337, 12345, 27374, 1080, 3128, 8080, 2323, 6776, 4444,
              9200, 10000, 7547, 5432, 1433, 81, 8888, 9999, 4899]


def v6_full(n):
    a = ipaddress.IPv6Address(n)
    return a.exploded, str(a)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("-o", "--output", default="-")
    ap.add_argument("--truth")
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    out = sys.stdout if a.output == "-" else open(a.output, "w")
    truth = {}  # canonical -> [packets, sighting]

    # Address pools. Noise sources keep their ports for the whole log.
    noise = []
    for i in range(40_000):
        if i % 8 == 0:
            full, canon = v6_full((0x2001_0DB8_0BAD << 80) | rnd.getrandbits(64))
        else:
            canon = str(ipaddress.IPv4Address(0x2D000000 + rnd.getrandbits(24)))
            full = canon
        if rnd.random() < 0.5:
            ports = [("TCP", rnd.choice(NOISE_TCP))]
        else:
            ports = [("TCP", rnd.choice(NOISE_TCP)), ("UDP", rnd.choice(NOISE_UDP))]
        noise.append((full, canon, ports))
    noise_canon = {c for _, c, _ in noise}

    t = 0
    ts = 1000.0
    written = 0

    def stamp():
        d = 2 + t // 86400
        s = t % 86400
        return f"{MONTH} {d:2d} {s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d} pbx kernel: [{ts:12.6f}] "

    def emit(line):
        nonlocal written
        out.write(line)
        out.write("\n")
        written += 1

    def packet(src, dst, proto, spt, dpt, flags="SYN", prefix="", v6=False, mac=None, iface="eth0", out_if=""):
        if v6:
            ip = f"SRC={src} DST={dst} LEN=80 TC=0 HOPLIMIT=57 FLOWLBL=0"
        else:
            ip = f"SRC={src} DST={dst} LEN=44 TOS=0x00 PREC=0x00 TTL=241 ID={rnd.randrange(65536)}"
        if proto == "TCP":
            l4 = f"PROTO=TCP SPT={spt} DPT={dpt} WINDOW=1024 RES=0x00 {flags} URGP=0 "
        else:
            l4 = f"PROTO=UDP SPT={spt} DPT={dpt} LEN=28 "
        m = mac if mac is not None else (MAC6 if v6 else MAC)
        return f"{stamp()}{prefix}IN={iface} OUT={out_if} {m} {ip} {l4}"

    def count(canon, sighting=False):
        e = truth.setdefault(canon, [0, 0])
        e[0] += 1
        if sighting:
            e[1] = 1

    scanner_no = 0
    while written < a.n:
        if rnd.random() < 0.6:
            t += 1
        ts += rnd.random()
        r = rnd.random()
        if r < 0.70:
            full, canon, ports = rnd.choice(noise)
            proto, port = rnd.choice(ports)
            v6 = ":" in full
            dst = OWN6 if v6 else OWN4
            spt = rnd.randrange(1024, 65536)
            emit(packet(full, dst, proto, spt, port, prefix=rnd.choice(PREFIXES), v6=v6))
            count(canon)
        elif r < 0.72 and a.n - written > 12:
            # A scanner burst: 12 distinct ports within 12 seconds.
            scanner_no += 1
            canon = str(ipaddress.IPv4Address(0xC6336400 + (scanner_no % 250) + 256 * (scanner_no // 250)))
            if canon in noise_canon:
                continue
            for port in rnd.sample(SCAN_PORTS, 12):
                emit(packet(canon, OWN4, "TCP", 40000 + scanner_no % 20000, port, prefix="[UFW BLOCK] "))
                count(canon, True)
                t += 1
        elif r < 0.76:
            # Outbound and forwarded.
            if rnd.random() < 0.5:
                emit(packet(OWN4, "198.51.100.1", "TCP", 40000, 443, iface="", out_if="eth0", mac=""))
            else:
                emit(packet("10.0.0.2", "198.51.100.1", "UDP", 5060, 5060, out_if="eth1"))
        elif r < 0.80:
            # ICMP port unreachable quoting our own packet.
            emit(f"{stamp()}IN=eth0 OUT= {MAC} SRC=198.51.100.{rnd.randrange(1, 255)} DST={OWN4} LEN=96 TOS=0x00 PREC=0xC0 TTL=62 ID=1 PROTO=ICMP TYPE=3 CODE=3 [SRC={OWN4} DST=198.51.100.9 LEN=68 TOS=0x00 PREC=0x00 TTL=63 ID=2 PROTO=UDP SPT=5060 DPT=31337 LEN=48 ] ")
        elif r < 0.84:
            # Answers: a late TCP ACK, a DNS reply.
            src = f"192.0.2.{rnd.randrange(1, 255)}"
            if rnd.random() < 0.5:
                emit(packet(src, OWN4, "TCP", 443, rnd.randrange(32768, 61000), flags="ACK FIN"))
            else:
                emit(packet(src, OWN4, "UDP", 53, rnd.randrange(32768, 61000)))
        elif r < 0.86:
            # DHCP broadcast and loopback.
            if rnd.random() < 0.5:
                emit(packet("0.0.0.0", "255.255.255.255", "UDP", 68, 67, mac="MAC=ff:ff:ff:ff:ff:ff:00:1a:2b:3c:4d:5e:08:00"))
            else:
                emit(packet("127.0.0.1", "127.0.0.53", "UDP", 40000, 53, iface="lo", prefix="[UFW AUDIT] "))
        elif r < 0.97:
            emit(f"{stamp()}EXT4-fs (mmcblk0p2): re-mounted. Quota mode: none.")
        elif r < 0.985:
            emit(packet("198.51.100.77", OWN4, "TCP", 1, 31337).replace("pbx kernel:", "pbx kernel[4242]:"))
        else:
            emit(stamp().replace("kernel:", "asterisk[812]:") + "NOTICE[900]: chan_sip.c:100 in x: IN=eth0 OUT= SRC=198.51.100.78 DPT=23")
    if a.truth:
        with open(a.truth, "w") as f:
            for canon, (n, s) in sorted(truth.items()):
                f.write(f"{canon}\t{n}\t{s}\n")
    if out is not sys.stdout:
        out.close()


if __name__ == "__main__":
    main()
