#!/usr/bin/env python3
"""Journal Export Format for bench/journal.sh: N kernel firewall LOG entries (`_TRANSPORT=kernel`)
spread over the last N/2 seconds, from a pool of sources to random ports, on stdout. Pipe it into
`/lib/systemd/systemd-journal-remote --split-mode=none -o FILE.journal -`."""
import random
import sys
import time

n = int(sys.argv[1])
seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
rnd = random.Random(seed)
now_us = int(time.time() * 1_000_000)
start = now_us - n * 500_000 - 60_000_000
boot = "0123456789abcdef0123456789abcdef"
out = sys.stdout.buffer
buf = []
for i in range(n):
    t = start + i * 500_000
    src = "45.%d.%d.%d" % (rnd.randrange(1, 200), rnd.randrange(256), rnd.randrange(1, 255))
    dpt = rnd.choice((22, 23, 80, 443, 445, 1433, 3389, 5060, 8080, rnd.randrange(1, 65536)))
    msg = ("[UFW BLOCK] IN=eth0 OUT= MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:08:00 SRC=%s "
           "DST=203.0.113.10 LEN=44 TOS=0x00 PREC=0x00 TTL=241 ID=%d PROTO=TCP SPT=%d DPT=%d "
           "WINDOW=1024 RES=0x00 SYN URGP=0") % (src, rnd.randrange(65536), rnd.randrange(1024, 65536), dpt)
    buf.append(
        "__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=%s\n_TRANSPORT=kernel\n"
        "SYSLOG_IDENTIFIER=kernel\nPRIORITY=4\nSYSLOG_FACILITY=0\n_HOSTNAME=pbx\nMESSAGE=%s\n\n"
        % (t, t - start + 1_000_000, boot, msg))
    if len(buf) >= 10_000:
        out.write("".join(buf).encode())
        buf = []
out.write("".join(buf).encode())
