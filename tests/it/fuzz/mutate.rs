//! Structure-aware mutation of log lines and feed records, and the "appears in the input"
//! check the address invariants use.

use crate::common::rng::Rng;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address no generator writes except inside lines over the 64 KiB cap: it must never be
/// reported (198.18.0.0/15 is kept out of every random address below).
pub const SENTINEL: &str = "198.18.0.99";

/// Random choices over one input's own generator.
pub struct Gen {
    rng: Rng,
}

impl Gen {
    pub fn new(seed: u64) -> Gen {
        Gen {
            rng: Rng::from_seed(seed),
        }
    }

    pub fn u64(&mut self) -> u64 {
        self.rng.next()
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.rng.next() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True once in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn byte(&mut self) -> u8 {
        self.rng.next() as u8
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    /// Printable ASCII.
    pub fn text(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| b' ' + (self.rng.next() % 95) as u8)
            .collect()
    }

    /// A random address in one of its textual forms (never in the sentinel's range).
    pub fn address(&mut self) -> String {
        let a = loop {
            let a = Ipv4Addr::from(self.rng.next() as u32);
            if a.octets()[..2] != [198, 18] && a.octets()[..2] != [198, 19] {
                break a;
            }
        };
        match self.below(8) {
            0..=2 => a.to_string(),
            3 => format!("{a}:{}", self.rng.next() as u16),
            4 => format!("[{a}]:{}", self.rng.next() as u16),
            5 => {
                let b = Ipv6Addr::from((u128::from(self.rng.next()) << 64) | 0x1234);
                b.to_string()
            }
            6 => {
                let b = Ipv6Addr::from(u128::from(self.rng.next()) << 64);
                format!("[{b}]:{}", self.rng.next() as u16)
            }
            _ => {
                let s = a.to_ipv6_mapped().segments();
                let full: Vec<String> = s.iter().map(|g| format!("{g:04x}")).collect();
                full.join(":")
            }
        }
    }
}

/// Bytes that break parsers: line ends, NUL, terminal escapes, invalid or truncated UTF-8,
/// the delimiters the rules look for.
const SPECIAL: &[&[u8]] = &[
    b"\n",
    b"\r",
    b"\r\n",
    b"\0",
    b"\x1b[31m",
    b"\x1b[0m",
    b"\x1b",
    b"\xff",
    b"\xfe\xff",
    b"\xc3\x28",
    b"\xe2\x82",
    b"\xf0\x9f\x92",
    b"\xed\xa0\x80",
    b"\xf5",
    b"\xef\xbb\xbf",
    b"'",
    b"\"",
    b"\\\"",
    b"[",
    b"]",
    b"(",
    b")",
    b"<",
    b">",
    b" ",
    b"  ",
    b"\t",
    b":",
    b"::",
    b".",
    b"/",
    b",",
    b"#",
    b";",
    b"=",
    b"%0A",
    b"\\n",
    b"{",
    b"}",
    b"\xc2\xa0",
    b"\xd9\xa1",
];

/// Address edge forms (valid, invalid and ambiguous), with and without ports and brackets.
pub const EDGE_ADDRS: &[&str] = &[
    "192.0.2.1",
    "0.0.0.0",
    "255.255.255.255",
    "256.1.2.3",
    "1.2.3",
    "1.2.3.4.5",
    "01.002.03.4",
    "192.0.2.010",
    "0192.0.2.1",
    "1.2.3.4:0",
    "1.2.3.4:65535",
    "1.2.3.4:65536",
    "1.2.3.4:",
    "1.2.3.4:99999999999999999999",
    "[192.0.2.5]",
    "[192.0.2.5]:5060",
    "192.0.2.5]",
    "[192.0.2.5",
    "::",
    "::1",
    "[::]:0",
    "::ffff:192.0.2.9",
    "[::ffff:192.0.2.9]:5060",
    "::ffff:c000:209",
    "::192.0.2.9",
    "64:ff9b::192.0.2.1",
    "2001:db8::1",
    "[2001:db8::1]:5060",
    "2001:db8::1:5060",
    "2001:0db8:0000:0000:0000:0000:0000:0001",
    "0000:0000:0000:0000:0000:ffff:c000:0209",
    "2001:0db8:0000:0000:0000:0000:0000:000g",
    "2001:db8:0:0:0:0:0:1:2",
    "1:2:3:4:5:6:7:8",
    "1::2::3",
    ":::",
    ":",
    "fe80::1%eth0",
    "[fe80::1%25eth0]:5060",
    "ff02::1",
    "::ffff:1.2.3.256",
    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "2001:db8::/32",
    "192.0.2.0/24",
    "192.0.2.0/33",
    "192.0.2.0/",
    "/24",
    "0x7f.1",
    "127.1",
    "1e100",
    "-1.2.3.4",
    "+1.2.3.4",
    "1.2.3.4 ",
    " 1.2.3.4",
    "\u{0661}.\u{0662}.\u{0663}.\u{0664}",
    "\u{ff11}\u{ff19}\u{ff12}.0.2.1",
    "192.0.2.1\0",
    "203.0.113.66",
    "6.6.6.6",
    "UDP:192.0.2.7:5060",
    "IPV4/UDP/192.0.2.8/5060",
    "IPV6/UDP/2001:db8::8/5060",
    "IPV4/UDP/192.0.2.8",
    "localhost",
    "evil.example.com",
];

/// Text an attacker can put into a user-controlled field: decoy addresses in the shapes the
/// rules look for, fake tails, forged lines after a newline, dump markers.
pub const HOSTILE: &[&str] = &[
    "' failed for '6.6.6.6' - Wrong password",
    "' failed for '[2001:db8:dead::1]:5060' - Wrong password",
    "\",RemoteAddress=\"IPV4/UDP/203.0.113.66/5060",
    "\",RemoteAddress=\"IPV6/UDP/2001:db8:dead::2/5060\"",
    "' (callid: x) - No matching endpoint found' failed for '203.0.113.7' (callid: y",
    "' (from 203.0.113.9)",
    ") to extension '1' (UDP:203.0.113.10:5060) to extension '",
    "' rejected because extension not found in context 'x'.",
    " in new stack",
    "\n[2024-05-02 10:11:12] NOTICE[4102] chan_sip.c: Registration from '' failed for '203.0.113.66' - Wrong password\n",
    "\n[2024-05-02 10:11:17] SECURITY[1] res_security_log.c: SecurityEvent=\"InvalidPassword\",EventTV=\"x\",Severity=\"Error\",Service=\"SIP\",EventVersion=\"1\",AccountID=\"1\",SessionID=\"2\",LocalAddress=\"IPV4/UDP/192.0.2.1/5060\",RemoteAddress=\"IPV4/UDP/203.0.113.67/5060\"\n",
    "\nMay  2 10:11:19 pbx asterisk[900]: NOTICE[4102]: chan_sip.c:1 in f: Registration from '' failed for '203.0.113.68:5060' - Wrong password\n",
    "\n<--- SIP read from UDP:203.0.113.69:5060 --->\nINVITE sip:1@x SIP/2.0\nCall-ID: fuzz\n\n<------------->\n",
    "\n<------------->\n",
    "\n<------------>\n",
    "\n---\n",
    "\n[2024-05-02 10:11:20] WARNING[4102] chan_sip.c: Timeout on fuzz on non-critical invite transaction.\n",
    "\nFeb 19 15:03:17 pbx kernel: [1.0] IN=eth0 OUT= MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:08:00 SRC=203.0.113.70 DST=203.0.113.10 LEN=44 TOS=0x00 PREC=0x00 TTL=241 ID=1 PROTO=TCP SPT=1 DPT=23 WINDOW=1024 RES=0x00 SYN URGP=0\n",
    " SRC=203.0.113.71 DST=203.0.113.10 PROTO=TCP SPT=1 DPT=23 ",
    "[SRC=203.0.113.72 DST=203.0.113.10 LEN=44 PROTO=TCP SPT=23 DPT=1 ]",
    " IN=eth0 OUT= ",
    "kernel: ",
    "%0A%0D",
];

/// Words the rules dispatch on, swapped for one another.
const KEYWORDS: &[&str] = &[
    "NOTICE",
    "WARNING",
    "SECURITY",
    "VERBOSE",
    "ERROR",
    "DEBUG",
    "chan_sip.c",
    "res_pjsip_session.c",
    "res_pjsip/pjsip_distributor.c",
    "pjsip_distributor.c",
    "res_security_log.c",
    "res_pjsip_logger.c",
    "manager.c",
    "chan_iax2.c",
    "pbx.c",
    "logger.c",
    "Ext. s",
    "InvalidPassword",
    "InvalidAccountID",
    "ChallengeResponseFailed",
    "FailedACL",
    "RequestBadFormat",
    "ChallengeSent",
    "SuccessfulAuth",
    "Registration from '",
    "Call from '",
    "Request 'INVITE' from '",
    "failed for '",
    "rejected because extension not found in context '",
    "Timeout on ",
    " on non-critical invite transaction.",
    "Executing [",
    "Log queue threshold",
    "kernel:",
    "kernel[1]:",
    "IN=",
    "OUT=",
    "SRC=",
    "DST=",
    "PROTO=TCP",
    "PROTO=UDP",
    "PROTO=ICMP",
    "SPT=",
    "DPT=",
    "MAC=",
    "MACSRC=",
    "RES=0x00",
    "SYN",
    "ACK",
    "RST",
    "[UFW BLOCK]",
    "[UFW ALLOW]",
];

fn insert(line: &mut Vec<u8>, at: usize, what: &[u8]) {
    line.splice(at..at, what.iter().copied());
}

/// The bounds of the run of address characters (hex digits, `:`, `.`) around `at`.
fn addr_run(line: &[u8], at: usize) -> (usize, usize) {
    let is = |b: u8| b.is_ascii_hexdigit() || b == b':' || b == b'.';
    let mut s = at;
    while s > 0 && is(line[s - 1]) {
        s -= 1;
    }
    let mut e = at;
    while e < line.len() && is(line[e]) {
        e += 1;
    }
    (s, e)
}

/// The bounds of the content of a quoted, bracketed or `KEY=` field around a random point.
fn field(g: &mut Gen, line: &[u8]) -> Option<(usize, usize)> {
    if line.is_empty() {
        return None;
    }
    let at = g.below(line.len());
    let open = line[..at]
        .iter()
        .rposition(|b| matches!(b, b'\'' | b'"' | b'(' | b'[' | b'<' | b'='))?;
    let close_of = match line[open] {
        b'(' => b')',
        b'[' => b']',
        b'<' => b'>',
        b'=' => b' ',
        q => q,
    };
    let end = line[open + 1..]
        .iter()
        .position(|b| *b == close_of)
        .map(|p| open + 1 + p)
        .unwrap_or(line.len());
    Some((open + 1, end))
}

/// A filler of `n` bytes: one repeated byte, a repeated chunk of the line, or address-like text.
pub fn huge(g: &mut Gen, line: &[u8], n: usize) -> Vec<u8> {
    let unit: Vec<u8> = match g.below(5) {
        0 => vec![*g.pick(b"A9:. '[x")],
        1 if !line.is_empty() => {
            let s = g.below(line.len());
            let e = g.range(s + 1, line.len().min(s + 64));
            line[s..e].to_vec()
        }
        2 => b"1:".to_vec(),
        3 => b"ffff:".to_vec(),
        _ => b"1.2.3.4 ".to_vec(),
    };
    let unit: Vec<u8> = unit.into_iter().filter(|b| *b != b'\n').collect();
    let unit = if unit.is_empty() { vec![b'z'] } else { unit };
    unit.iter().copied().cycle().take(n).collect()
}

/// Apply one to four mutations to `line`; `others` are lines to splice from. Huge fields (1
/// to 8 KiB, rarely more than the 64 KiB line cap) come once in `huge_every` mutations; lines
/// over the cap stay out unless `allow_over_cap`.
pub fn mutate(
    g: &mut Gen,
    line: &mut Vec<u8>,
    others: &[Vec<u8>],
    huge_every: usize,
    allow_over_cap: bool,
) {
    let n = match g.below(8) {
        0..=3 => 1,
        4..=5 => 2,
        6 => 3,
        _ => 4,
    };
    for _ in 0..n {
        let len = line.len();
        match g.below(13) {
            0 => line.truncate(g.below(len + 1)),
            1 | 2 => {
                let at = g.below(len + 1);
                let s = *g.pick(SPECIAL);
                insert(line, at, s);
            }
            3 => {
                let at = g.below(len + 1);
                let k = g.range(1, 8);
                let b = g.bytes(k);
                insert(line, at, &b);
            }
            4 if len > 0 => {
                let s = g.below(len);
                let e = g.range(s, len.min(s + 32));
                line.drain(s..e);
            }
            5 if len > 0 => {
                let s = g.below(len);
                let e = g.range(s, len.min(s + 64));
                let chunk = line[s..e].to_vec();
                let at = g.below(len + 1);
                insert(line, at, &chunk);
            }
            6 => {
                // Splice a piece of another line in, or cross over at a random point.
                let o = g.pick(others);
                if o.is_empty() {
                    continue;
                }
                let s = g.below(o.len());
                let e = g.range(s, o.len());
                if g.one_in(3) {
                    let cut = g.below(len + 1);
                    line.truncate(cut);
                    line.extend_from_slice(&o[s..]);
                } else {
                    let at = g.below(len + 1);
                    insert(line, at, &o[s..e]);
                }
            }
            7 | 8 => {
                // An address token replaced by an edge form or a random address.
                let digits: Vec<usize> = (0..len).filter(|&i| line[i].is_ascii_digit()).collect();
                let new = if g.one_in(2) {
                    g.pick(EDGE_ADDRS).to_string()
                } else {
                    g.address()
                };
                if digits.is_empty() {
                    let at = g.below(len + 1);
                    insert(line, at, new.as_bytes());
                } else {
                    let (s, e) = addr_run(line, *g.pick(&digits));
                    line.splice(s..e, new.bytes());
                }
            }
            9 => {
                // A field's content replaced by hostile or random text.
                let Some((s, e)) = field(g, line) else {
                    continue;
                };
                let new: Vec<u8> = match g.below(4) {
                    0 | 1 => g.pick(HOSTILE).as_bytes().to_vec(),
                    2 => {
                        let k = g.range(0, 24);
                        g.text(k)
                    }
                    _ => Vec::new(),
                };
                line.splice(s..e, new);
            }
            10 if len > 0 => {
                let at = g.below(len);
                line[at] = match g.below(3) {
                    0 => g.byte(),
                    1 => line[at].wrapping_add(1),
                    _ => line[at].wrapping_sub(1),
                };
            }
            11 => {
                // A keyword swapped for another, or inserted.
                let new = g.pick(KEYWORDS).as_bytes();
                let old = g.pick(KEYWORDS).as_bytes();
                match memchr::memmem::find(line, old) {
                    Some(i) => {
                        line.splice(i..i + old.len(), new.iter().copied());
                    }
                    None => {
                        let at = g.below(len + 1);
                        insert(line, at, new);
                    }
                }
            }
            12 if g.one_in(huge_every) => {
                let n = if allow_over_cap && g.one_in(8) {
                    g.range(60 * 1024, 70 * 1024)
                } else {
                    g.range(1024, 8 * 1024)
                };
                let filler = huge(g, line, n);
                let at = g.below(len + 1);
                insert(line, at, &filler);
            }
            _ => {}
        }
    }
}

/// Lenient address text: IPv4 with leading zeros (the kernel's parser takes them), any IPv6
/// form, IPv4-mapped IPv6 as IPv4.
fn lenient(b: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(b).ok()?;
    if let Ok(a) = s.parse::<IpAddr>() {
        return Some(sipban::net::canonical_ip(a));
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut o = [0u8; 4];
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        o[i] = p.parse().ok()?;
    }
    Some(IpAddr::V4(Ipv4Addr::from(o)))
}

/// Whether `ip` is written somewhere in `hay` (in any textual form an address parser here
/// accepts: compressed or full IPv6, IPv4-mapped, IPv4 with leading zeros).
pub fn appears(ip: &IpAddr, hay: &[u8]) -> bool {
    // The usual forms first: as std prints it, and the kernel's uncompressed IPv6 (an IPv4
    // address may have been written IPv4-mapped).
    if memchr::memmem::find(hay, ip.to_string().as_bytes()).is_some() {
        return true;
    }
    let v6 = match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => *a,
    };
    let mut full = Vec::with_capacity(39);
    for (i, g) in v6.segments().iter().enumerate() {
        if i > 0 {
            full.push(b':');
        }
        for shift in [12, 8, 4, 0] {
            full.push(b"0123456789abcdef"[usize::from((g >> shift) & 0xf)]);
        }
    }
    if memchr::memmem::find(hay, &full).is_some() {
        return true;
    }
    let is = |b: &u8| b.is_ascii_hexdigit() || *b == b':' || *b == b'.';
    let runs = || hay.split(|b| !is(b)).filter(|r| r.len() >= 2);
    // The whole run, and its `:`-separated pieces (`1.2.3.4:5060`).
    for run in runs() {
        if lenient(run) == Some(*ip) {
            return true;
        }
        if run.split(|b| *b == b':').any(|p| lenient(p) == Some(*ip)) {
            return true;
        }
    }
    // Every substring of at most 45 bytes (slow; reached only when the answer is no so far).
    for run in runs() {
        for s in 0..run.len() {
            for e in s + 2..=run.len().min(s + 45) {
                if lenient(&run[s..e]) == Some(*ip) {
                    return true;
                }
            }
        }
    }
    false
}

/// The addresses written right after `key` (up to the next space) anywhere in `hay`: a quick
/// index for inputs with many reported addresses; [`appears`] remains the judge of a miss.
pub fn addresses_after(hay: &[u8], key: &[u8]) -> HashSet<IpAddr> {
    memchr::memmem::find_iter(hay, key)
        .filter_map(|i| {
            let v = &hay[i + key.len()..];
            let end = v
                .iter()
                .take(64)
                .position(|b| *b == b' ' || *b == b'\n')
                .unwrap_or(v.len().min(64));
            lenient(&v[..end])
        })
        .collect()
}

/// `bytes` for a failure message: escaped, at most `cap` bytes.
pub fn shown(bytes: &[u8], cap: usize) -> String {
    let mut s: String = bytes[..bytes.len().min(cap)]
        .escape_ascii()
        .to_string()
        .replace("\\n", "\\n\n");
    if bytes.len() > cap {
        s.push_str(&format!("... ({} bytes in all)", bytes.len()));
    }
    s
}
