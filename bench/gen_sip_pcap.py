#!/usr/bin/env python3
"""Deterministic SIP-over-UDP capture for bench/wire.sh.

    python3 bench/gen_sip_pcap.py N OUT.pcap [--seed S]

Writes exactly N SIP messages as a classic pcap (microsecond, Ethernet), one message per
Ethernet/IPv4/UDP frame, with correct IPv4 header and UDP checksums, 1 ms apart from
2026-01-01T00:00:00Z. The PBX is 192.0.2.10:5060. The mix, chosen per exchange with a seeded
PRNG (Python's random, so the file is the same on every run of the same Python):

  - 55%  phone registration: REGISTER, 401 with a nonce, REGISTER with a digest, 200 OK
         (phones in 10.1.0.0/16, a few hundred of them, softphone/desk-phone User-Agents);
  - 15%  scanner OPTIONS ping with User-Agent friendly-scanner, answered 200;
  - 15%  SIPVicious-like REGISTER enumeration (z9hG4bK-<decimal> branch, decimal Call-ID,
         User-Agent friendly-scanner/sipvicious/sipcli), answered 404 or 401;
  - 10%  toll-fraud INVITE to 00972... without credentials, answered 404;
  -  5%  a phone's misdial: INVITE with a digest answered 404.

Prints the per-method/status counts on stderr; the message count is always N.
"""
import array
import random
import struct
import sys
import zlib

PBX = "192.0.2.10"
T0 = 1767225600  # 2026-01-01T00:00:00Z


def ip_bytes(s):
    return bytes(int(x) for x in s.split("."))


def csum(data):
    """Internet checksum (RFC 1071), returned as the 2 bytes to store."""
    if len(data) % 2:
        data += b"\0"
    a = array.array("H", data)
    s = sum(a)
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    # Summing native-order words gives the checksum in native order: store it as such.
    return struct.pack("=H", ~s & 0xFFFF)


class Writer:
    def __init__(self, f):
        self.f = f
        self.n = 0
        self.ipid = 0
        # Classic pcap, microseconds, v2.4, snaplen 65535, LINKTYPE_ETHERNET.
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))

    def frame(self, src, sport, dst, dport, payload):
        payload = payload.encode()
        s, d = ip_bytes(src), ip_bytes(dst)
        ulen = 8 + len(payload)
        pseudo = s + d + struct.pack("!BBH", 0, 17, ulen)
        udp0 = struct.pack("!HHHH", sport, dport, ulen, 0)
        uc = csum(pseudo + udp0 + payload)
        if uc == b"\0\0":
            uc = b"\xff\xff"
        udp = udp0[:6] + uc
        self.ipid = (self.ipid + 1) & 0xFFFF
        ip0 = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, self.ipid, 0x4000, 64, 17, 0, s, d)
        ip = ip0[:10] + csum(ip0) + ip0[12:]
        eth = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
        pkt = eth + ip + udp + payload
        us = self.n * 1000
        self.f.write(struct.pack("<IIII", T0 + us // 1_000_000, us % 1_000_000, len(pkt), len(pkt)))
        self.f.write(pkt)
        self.n += 1


def request(method, ruri, src, sport, branch, callid, ftag, fuser, tuser, cseq, ua, auth=None):
    lines = [
        f"{method} {ruri} SIP/2.0",
        f"Via: SIP/2.0/UDP {src}:{sport};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:{fuser}@{PBX}>;tag={ftag}",
        f"To: <sip:{tuser}@{PBX}>",
        f"Call-ID: {callid}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:{fuser}@{src}:{sport}>",
        f"User-Agent: {ua}",
    ]
    if auth:
        lines.append(auth)
    if method == "REGISTER":
        lines.append("Expires: 3600")
    lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines)


def response(code, text, req, extra=None):
    """A response copying Via/From/To/Call-ID/CSeq from the request text."""
    keep = [l for l in req.split("\r\n") if l.split(":", 1)[0] in ("Via", "From", "To", "Call-ID", "CSeq")]
    totag = format(zlib.crc32(req.encode()), "08x")
    keep = [l + ";tag=as" + totag if l.startswith("To:") else l for l in keep]
    lines = [f"SIP/2.0 {code} {text}"] + keep + ["Server: Asterisk PBX 20.5.0"]
    if extra:
        lines.append(extra)
    lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines)


PHONE_UA = ["Yealink SIP-T46S 66.86.0.15", "Grandstream GXP2170 1.0.11.3", "Zoiper rv2.10.20.4",
            "Linphone/5.2.0 (belle-sip/5.2.0)", "Cisco-CP7841/11.0.1", "MicroSIP/3.21.3"]
SCAN_UA = ["friendly-scanner", "sipvicious", "sipcli/v1.8", "friendly-scanner"]


def main():
    args = sys.argv[1:]
    seed = 1
    if "--seed" in args:
        i = args.index("--seed")
        seed = int(args[i + 1])
        del args[i:i + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    n, out = int(args[0]), args[1]
    rnd = random.Random(seed)
    counts = {}
    phones = [(f"10.1.{i // 250}.{i % 250 + 2}", 5060 + rnd.randrange(0, 3000), 1000 + i,
               PHONE_UA[i % len(PHONE_UA)]) for i in range(400)]
    scanners = [(f"{rnd.choice([45, 185, 193, 212, 89])}.{rnd.randrange(1, 255)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}",
                 rnd.randrange(1024, 65535), SCAN_UA[i % len(SCAN_UA)]) for i in range(200)]
    with open(out, "wb", buffering=1 << 20) as f:
        w = Writer(f)
        seq = 0

        def emit(src, sport, dst, dport, msg):
            if w.n >= n:
                return
            key = msg.split(" ", 2)[1] if msg.startswith("SIP/2.0") else msg.split(" ", 1)[0]
            counts[key] = counts.get(key, 0) + 1
            w.frame(src, sport, dst, dport, msg)

        while w.n < n:
            seq += 1
            r = rnd.random()
            if r < 0.55:
                ip, port, ext, ua = rnd.choice(phones)
                cid = f"{rnd.getrandbits(64):016x}@{ip}"
                tag = f"{rnd.getrandbits(32):08x}"
                req = request("REGISTER", f"sip:{PBX}", ip, port, f"z9hG4bK{rnd.getrandbits(48):012x}",
                              cid, tag, ext, ext, 1, ua)
                emit(ip, port, PBX, 5060, req)
                nonce = f"{rnd.getrandbits(32):08x}"
                emit(PBX, 5060, ip, port, response(401, "Unauthorized", req,
                     f'WWW-Authenticate: Digest algorithm=MD5, realm="asterisk", nonce="{nonce}"'))
                auth = (f'Authorization: Digest username="{ext}", realm="asterisk", nonce="{nonce}", '
                        f'uri="sip:{PBX}", response="{rnd.getrandbits(128):032x}", algorithm=MD5')
                req2 = request("REGISTER", f"sip:{PBX}", ip, port, f"z9hG4bK{rnd.getrandbits(48):012x}",
                               cid, tag, ext, ext, 2, ua, auth)
                emit(ip, port, PBX, 5060, req2)
                emit(PBX, 5060, ip, port, response(200, "OK", req2, f"Contact: <sip:{ext}@{ip}:{port}>;expires=3600"))
            elif r < 0.70:
                ip, port, _ = rnd.choice(scanners)
                req = request("OPTIONS", f"sip:100@{PBX}", ip, port, f"z9hG4bK-{rnd.getrandbits(30)}",
                              str(rnd.getrandbits(40)), f"{rnd.getrandbits(32):08x}", "100", "100", 1,
                              "friendly-scanner")
                emit(ip, port, PBX, 5060, req)
                emit(PBX, 5060, ip, port, response(200, "OK", req))
            elif r < 0.85:
                ip, port, ua = rnd.choice(scanners)
                user = str(rnd.randrange(100, 10000))
                callid = str(rnd.getrandbits(40))
                req = request("REGISTER", f"sip:{user}@{PBX}", ip, port, f"z9hG4bK-{rnd.getrandbits(30)}",
                              callid, f"{int(callid):x}"[:8], user, user, 1, ua)
                emit(ip, port, PBX, 5060, req)
                if rnd.random() < 0.7:
                    emit(PBX, 5060, ip, port, response(404, "Not Found", req))
                else:
                    emit(PBX, 5060, ip, port, response(401, "Unauthorized", req,
                         f'WWW-Authenticate: Digest algorithm=MD5, realm="asterisk", nonce="{rnd.getrandbits(32):08x}"'))
            elif r < 0.95:
                ip, port, ua = rnd.choice(scanners)
                num = f"00972{rnd.randrange(10**8, 10**9)}"
                req = request("INVITE", f"sip:{num}@{PBX}", ip, port, f"z9hG4bK{rnd.getrandbits(48):012x}",
                              f"{rnd.getrandbits(64):016x}", f"{rnd.getrandbits(32):08x}", "1000", num, 1, ua)
                emit(ip, port, PBX, 5060, req)
                emit(PBX, 5060, ip, port, response(404, "Not Found", req))
            else:
                ip, port, ext, ua = rnd.choice(phones)
                num = str(rnd.randrange(200, 999))
                auth = (f'Authorization: Digest username="{ext}", realm="asterisk", nonce="{rnd.getrandbits(32):08x}", '
                        f'uri="sip:{num}@{PBX}", response="{rnd.getrandbits(128):032x}", algorithm=MD5')
                branch, cid, tag = f"z9hG4bK{rnd.getrandbits(48):012x}", f"{rnd.getrandbits(64):016x}@{ip}", f"{rnd.getrandbits(32):08x}"
                req = request("INVITE", f"sip:{num}@{PBX}", ip, port, branch, cid, tag, ext, num, 2, ua, auth)
                emit(ip, port, PBX, 5060, req)
                emit(PBX, 5060, ip, port, response(404, "Not Found", req))
                emit(ip, port, PBX, 5060, request("ACK", f"sip:{num}@{PBX}", ip, port, branch, cid, tag, ext, num, 2, ua))
    print(" ".join(f"{k}={v}" for k, v in sorted(counts.items())), file=sys.stderr)
    print(w.n)


if __name__ == "__main__":
    main()
