//! Netfilter `LOG` lines (iptables/ip6tables `-j LOG`, nftables `log`) as the kernel writes them
//! (`net/netfilter/nf_log_syslog.c`), inside the wrappers that carry them to a file:
//!
//! ```text
//! Feb 19 15:03:17 pbx kernel: [1234567.890123] <prefix>IN=eth0 OUT= MAC=.. SRC=.. DST=.. ... PROTO=TCP SPT=.. DPT=.. ... SYN URGP=0
//! 2023-02-19T15:03:32.412305+01:00 pbx kernel: [UFW BLOCK] IN=eth0 OUT= ...     (rsyslog RFC 3339)
//! 2024-02-19T15:03:17+0100 pbx kernel: IN=eth0 OUT= ...                         (journalctl -k -o short-iso)
//! ```
//!
//! The traps (research notes §6): the admin's log prefix is glued to `IN=` (`DROPIN=eth0`);
//! IPv6 addresses are printed uncompressed (`2001:0db8:0000:...`) and are canonicalised here;
//! ICMP errors embed a copy of the offending packet (`[SRC=<us> DST=<them> ...]`) whose
//! addresses must not be taken, so only the first whole `SRC=` token after `OUT=` counts and
//! the transport is the first `PROTO=` token; `MACSRC=`/`IPSRC=` contain the text `SRC=` and are
//! not it.
//!
//! Trust: only lines whose syslog program tag is exactly `kernel` are read (`kernel[123]:` is a
//! user program). A text log cannot prove more than that; `journalctl -k` (kernel transport
//! only) and `kern.log` are the sources to prefer.
//!
//! This module must never allocate on the path of a line, never resolve names, and never take an
//! address from anywhere but the packet's own `SRC=`/`DST=` fields.

use super::ports::Proto;
use super::wrapper::{self, Wrapper};
use crate::net;
use crate::source::asterisk::rules::Stamp;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// TCP flag bits as printed by the kernel.
pub mod flags {
    pub const FIN: u8 = 1;
    pub const SYN: u8 = 2;
    pub const RST: u8 = 4;
    pub const PSH: u8 = 8;
    pub const ACK: u8 = 16;
    pub const URG: u8 = 32;
    pub const ECE: u8 = 64;
    pub const CWR: u8 = 128;
}

/// One inbound TCP/UDP packet from a LOG line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The wrapper's date (syslog or journal header), if any.
    pub stamp: Option<Stamp>,
    /// The admin's log prefix (`[UFW BLOCK] `, `DROP`, empty).
    pub prefix: &'a [u8],
    /// The input interface.
    pub iface: &'a [u8],
    /// Canonical source and destination.
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: Proto,
    pub spt: u16,
    pub dpt: u16,
    /// TCP flags ([`flags`]); 0 for UDP.
    pub tcp_flags: u8,
    /// The link-layer destination was a broadcast or multicast address (the packet was not
    /// aimed at this host in particular).
    pub link_group: bool,
}

impl Packet<'_> {
    /// Shaped like an answer rather than a question: TCP with ACK or RST set (a late answer to
    /// one of our own connections, or backscatter of a flood sent in our name), or UDP from a
    /// service port below 1024 to a port of 1024 or more (a DNS or NTP answer).
    pub fn reply_shaped(&self) -> bool {
        match self.proto {
            Proto::Tcp => self.tcp_flags & (flags::ACK | flags::RST) != 0,
            Proto::Udp => self.spt < 1024 && self.dpt >= 1024,
        }
    }

    /// The log prefix marks accepted traffic (`[UFW ALLOW]`, `[UFW AUDIT]`, `ACCEPT`): not a
    /// probe that was turned away.
    pub fn accepted(&self) -> bool {
        let p = self.prefix;
        memchr::memchr2_iter(b'A', b'a', p).any(|i| {
            [&b"ALLOW"[..], b"ACCEPT", b"AUDIT"].iter().any(|w| {
                p.get(i..i + w.len())
                    .is_some_and(|x| x.eq_ignore_ascii_case(w))
            })
        })
    }
}

/// What one line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// Another program's line (a recognised syslog or journal wrapper, another tag).
    NotKernel,
    /// Another program's line that carries a netfilter LOG message (`kernel[123]:`,
    /// `logger -t iptables`): refused, since anyone may write it.
    Refused,
    /// No wrapper sipban knows (counted, never taken for another program's line).
    Unparsed,
    /// A kernel line that is not a netfilter LOG line.
    NotFirewall,
    /// Locally generated (`IN=` empty) or forwarded (`OUT=` set).
    NotInbound,
    /// Inbound, but not TCP/UDP with ports (ICMP, ESP, a non-first fragment, ...).
    OtherProtocol,
    /// A netfilter line whose addresses or ports do not parse.
    Malformed,
    Packet(Packet<'a>),
}

/// Precompiled searchers (build once, reuse for every line).
pub struct Parser {
    _private: (),
}

impl Default for Parser {
    fn default() -> Self {
        Parser::new()
    }
}

impl Parser {
    pub fn new() -> Parser {
        Parser { _private: () }
    }

    /// Take one line apart (without its newline; a trailing `\r` is ignored).
    #[inline]
    pub fn parse<'a>(&self, line: &'a [u8]) -> Line<'a> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match wrapper::unwrap(line) {
            Wrapper::Kernel(stamp, msg) => self.message(stamp, msg),
            Wrapper::Other(msg) => {
                if looks_like_netfilter(msg) {
                    Line::Refused
                } else {
                    Line::NotKernel
                }
            }
            Wrapper::Unparsed => Line::Unparsed,
        }
    }

    /// The part after the wrapper: `[prefix]IN=.. OUT=.. ...`.
    #[inline]
    pub fn message<'a>(&self, stamp: Option<Stamp>, msg: &'a [u8]) -> Line<'a> {
        // IN=<iface> OUT=: the first "IN=" followed by an interface name (no spaces, at most
        // 15 bytes) and " OUT=". The prefix may itself contain "IN=" (it is admin text).
        let mut found = None;
        for i in memchr::memchr_iter(b'I', msg) {
            if !msg[i..].starts_with(b"IN=") {
                continue;
            }
            let v = i + 3;
            let n = msg[v..].iter().take(17).take_while(|&&b| b != b' ').count();
            if n <= 16 && msg[v + n..].starts_with(b" OUT=") {
                found = Some((&msg[..i], &msg[v..v + n], v + n + 5));
                break;
            }
        }
        let Some((prefix, iface, after_in)) = found else {
            return Line::NotFirewall;
        };
        let out_end = after_in + space(&msg[after_in..]).unwrap_or(msg.len() - after_in);
        if iface.is_empty() || out_end > after_in {
            return Line::NotInbound;
        }
        let rest = &msg[out_end..];
        // The first whole SRC= token (preceded by a space), then DST=. Fast path: the usual
        // ` MAC=<hex> SRC=` right after OUT=.
        let fast = rest.strip_prefix(b" MAC=").and_then(|m| {
            let end = memchr::memchr(b' ', m)?;
            m[end..]
                .starts_with(b" SRC=")
                .then(|| (5 + end + 1, group_octet(m)))
        });
        let (s, link_group) = match fast {
            Some(f) => f,
            None => {
                let Some(s) = find_token(rest, b"SRC=") else {
                    return Line::NotFirewall; // ARP lines (IPSRC=) and the like
                };
                (s, link_group(&rest[..s]))
            }
        };
        let v = s + 4;
        let src_end = v + space(&rest[v..]).unwrap_or(rest.len() - v);
        let Some(src) = parse_addr(&rest[v..src_end]) else {
            return Line::Malformed;
        };
        let Some(d) = rest[src_end..].strip_prefix(b" DST=") else {
            return Line::Malformed;
        };
        let dst_len = space(d).unwrap_or(d.len());
        let Some(dst) = parse_addr(&d[..dst_len]) else {
            return Line::Malformed;
        };
        let d = &d[dst_len..];
        // The first PROTO= token is the transport of this packet; an ICMP error's embedded
        // copy comes after it.
        let Some(p) = find_token(d, b"PROTO=") else {
            return Line::OtherProtocol; // e.g. an IPv6 fragment cut before its transport
        };
        let t = &d[p + 6..];
        let (proto, t) = if let Some(t) = t.strip_prefix(b"TCP ") {
            (Proto::Tcp, t)
        } else if let Some(t) = t.strip_prefix(b"UDP ") {
            (Proto::Udp, t)
        } else {
            return Line::OtherProtocol;
        };
        // A non-first fragment stops right after PROTO=; a truncated header says INCOMPLETE.
        let Some(t) = t.strip_prefix(b"SPT=") else {
            return Line::OtherProtocol;
        };
        let Some((spt, t)) = port(t) else {
            return Line::Malformed;
        };
        let Some(t) = t.strip_prefix(b" DPT=") else {
            return Line::Malformed;
        };
        let Some((dpt, t)) = port(t) else {
            return Line::Malformed;
        };
        let tcp_flags = if proto == Proto::Tcp { tcp_flags(t) } else { 0 };
        Line::Packet(Packet {
            stamp,
            prefix,
            iface,
            src,
            dst,
            proto,
            spt,
            dpt,
            tcp_flags,
            link_group,
        })
    }
}

/// The wrapper (see [`super::wrapper`] for every form): the date and the kernel message, or
/// `None` for another program's line or an unknown form.
pub fn kernel_message(line: &[u8]) -> Option<(Option<Stamp>, &[u8])> {
    match wrapper::unwrap(line) {
        Wrapper::Kernel(s, m) => Some((s, m)),
        _ => None,
    }
}

/// A message that carries `IN=.. OUT=` and a `SRC=` token, as a netfilter LOG line does.
pub fn looks_like_netfilter(msg: &[u8]) -> bool {
    memchr::memmem::find(msg, b"IN=").is_some() && find_token(msg, b"SRC=").is_some()
}

/// The first space in a short field (an address, a host or interface name): a plain loop
/// beats a vectorised search on a few bytes.
fn space(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b' ')
}

/// Position of `tok` at the start of `hay` or right after a space. The haystacks are short
/// (the rest of one line), so a scan for the first byte beats building a searcher.
fn find_token(hay: &[u8], tok: &[u8]) -> Option<usize> {
    let first = *tok.first()?;
    memchr::memchr_iter(first, hay)
        .find(|&i| (i == 0 || hay[i - 1] == b' ') && hay[i..].starts_with(tok))
}

/// Whether the link-layer destination in `MAC=<dst>:<src>:<type>` (or `MACDST=`) is a group
/// (broadcast or multicast) address: the lowest bit of its first octet.
fn link_group(before_src: &[u8]) -> bool {
    let v = if let Some(i) = find_token(before_src, b"MAC=") {
        &before_src[i + 4..]
    } else if let Some(i) = find_token(before_src, b"MACDST=") {
        &before_src[i + 7..]
    } else {
        return false;
    };
    group_octet(v)
}

/// Whether the MAC address text `v` starts with a group (broadcast/multicast) octet.
fn group_octet(v: &[u8]) -> bool {
    match v.get(..2).and_then(|h| hex_byte(h[0], h[1])) {
        Some(b) => b & 1 == 1,
        None => false,
    }
}

fn hex_byte(a: u8, b: u8) -> Option<u8> {
    let d = |c: u8| (c as char).to_digit(16).map(|v| v as u8);
    Some(d(a)? << 4 | d(b)?)
}

/// A decimal port followed by a space or the end.
fn port(b: &[u8]) -> Option<(u16, &[u8])> {
    let n = b.iter().take(6).take_while(|c| c.is_ascii_digit()).count();
    if n == 0 || n > 5 || b.get(n).is_some_and(|&c| c != b' ') {
        return None;
    }
    let mut v: u32 = 0;
    for &c in &b[..n] {
        v = v * 10 + u32::from(c - b'0');
    }
    Some((u16::try_from(v).ok()?, &b[n..]))
}

/// The flag words between `RES=0x..` and `URGP=`.
fn tcp_flags(t: &[u8]) -> u8 {
    let Some(r) = find_token(t, b"RES=0x") else {
        return 0;
    };
    let mut f = 0;
    for word in t[r..].split(|&b| b == b' ').skip(1) {
        f |= match word {
            b"FIN" => flags::FIN,
            b"SYN" => flags::SYN,
            b"RST" => flags::RST,
            b"PSH" => flags::PSH,
            b"ACK" => flags::ACK,
            b"URG" => flags::URG,
            b"ECE" => flags::ECE,
            b"CWR" => flags::CWR,
            b"AE" => 0,
            _ => break, // URGP=, OPT (...), UID=...
        };
    }
    f
}

/// A literal address, canonicalised (IPv4-mapped IPv6 becomes IPv4). IPv4 is parsed by hand
/// (the hot path, inlined so that the address is built in place rather than passed through
/// memory); IPv6 by `parse_v6`.
#[inline(always)]
pub fn parse_addr(b: &[u8]) -> Option<IpAddr> {
    if b.len() <= 15 {
        // parse_v4 accepts nothing but digits and dots.
        if let Some(a) = parse_v4(b) {
            return Some(IpAddr::V4(a));
        }
    }
    parse_v6(b)
}

/// The IPv6 part of [`parse_addr`]: the kernel's uncompressed form by hand, any other form
/// by the standard library.
#[inline(never)]
fn parse_v6(b: &[u8]) -> Option<IpAddr> {
    if b.len() == 39 {
        if let Some(a) = parse_v6_full(b) {
            return Some(net::canonical_ip(IpAddr::V6(a)));
        }
    }
    if b.len() > 45 || !b.contains(&b':') {
        return None;
    }
    let s = std::str::from_utf8(b).ok()?;
    s.parse::<Ipv6Addr>()
        .ok()
        .map(|a| net::canonical_ip(IpAddr::V6(a)))
}

/// The kernel's `%pI6` form: eight groups of four hex digits (`2001:0db8:0000:...`).
fn parse_v6_full(b: &[u8]) -> Option<Ipv6Addr> {
    let mut g = [0u16; 8];
    for (i, group) in g.iter_mut().enumerate() {
        let at = i * 5;
        if i > 0 && b[at - 1] != b':' {
            return None;
        }
        let mut v = 0u16;
        for &c in &b[at..at + 4] {
            let d = (c as char).to_digit(16)? as u16;
            v = v << 4 | d;
        }
        *group = v;
    }
    Some(Ipv6Addr::from(g))
}

#[inline(always)]
fn parse_v4(b: &[u8]) -> Option<Ipv4Addr> {
    // Octet by octet, each one to three digits: fewer branches than a loop over bytes (this
    // is the hot path), and the octets accumulate in a register (a byte array on the stack
    // costs a store-forwarding stall per address).
    let digit = |i: usize| -> Option<u32> {
        let d = b.get(i)?.wrapping_sub(b'0');
        (d <= 9).then_some(u32::from(d))
    };
    let mut addr: u32 = 0;
    let mut i = 0;
    for octet in 0..4 {
        let mut v = digit(i)?;
        i += 1;
        if let Some(d) = digit(i) {
            v = v * 10 + d;
            i += 1;
            if let Some(d) = digit(i) {
                v = v * 10 + d;
                i += 1;
            }
        }
        if v > 255 {
            return None;
        }
        addr = addr << 8 | v;
        if octet < 3 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
    }
    (i == b.len()).then(|| Ipv4Addr::from(addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The byte loop `parse_v4` replaced.
    fn parse_v4_bytewise(b: &[u8]) -> Option<Ipv4Addr> {
        let mut addr: u32 = 0;
        let mut dots = 0;
        let mut v: u32 = 0;
        let mut digits = 0;
        for &c in b {
            if c == b'.' {
                if digits == 0 || dots == 3 || v > 255 {
                    return None;
                }
                addr = addr << 8 | v;
                dots += 1;
                v = 0;
                digits = 0;
            } else if c.is_ascii_digit() && digits < 3 {
                v = v * 10 + u32::from(c - b'0');
                digits += 1;
            } else {
                return None;
            }
        }
        if dots != 3 || digits == 0 || v > 255 {
            return None;
        }
        Some(Ipv4Addr::from(addr << 8 | v))
    }

    proptest! {
        #[test]
        fn v4_octet_by_octet_reads_as_byte_by_byte(
            b in proptest::collection::vec(proptest::sample::select(b"0123456789.:x".to_vec()), 0..17),
            a in any::<[u8; 4]>(),
        ) {
            prop_assert_eq!(parse_v4(&b), parse_v4_bytewise(&b));
            let s = Ipv4Addr::from(a).to_string();
            prop_assert_eq!(parse_v4(s.as_bytes()), Some(Ipv4Addr::from(a)));
        }
    }

    fn packet(line: &str) -> Packet<'_> {
        match Parser::new().parse(line.as_bytes()) {
            Line::Packet(p) => p,
            other => panic!("{other:?}: {line}"),
        }
    }

    #[test]
    fn kern_log_line() {
        let p = packet("Feb 19 15:03:17 pbx kernel: [1234567.890123] IN=eth0 OUT= MAC=52:54:00:ab:cd:ef:00:1a:2b:3c:4d:5e:08:00 SRC=198.51.100.111 DST=203.0.113.10 LEN=44 TOS=0x00 PREC=0x00 TTL=241 ID=54321 PROTO=TCP SPT=47133 DPT=23 WINDOW=1024 RES=0x00 SYN URGP=0 ");
        assert_eq!(p.src.to_string(), "198.51.100.111");
        assert_eq!((p.proto, p.spt, p.dpt), (Proto::Tcp, 47133, 23));
        assert_eq!(p.tcp_flags, flags::SYN);
        assert!(!p.reply_shaped() && !p.link_group && p.prefix.is_empty());
        assert!(matches!(
            p.stamp,
            Some(Stamp::Local {
                month: 2,
                day: 19,
                ..
            })
        ));
    }

    #[test]
    fn glued_prefix_uncompressed_v6_and_journal_iso() {
        let p = packet("2024-02-19T15:03:17+0100 pbx kernel: DROPIN=eth0 OUT= MAC=33:33:00:00:00:01:00:1a:2b:3c:4d:5e:86:dd SRC=2001:0db8:0000:0000:0000:0000:0000:0bad DST=2001:0db8:0000:0000:0000:0000:0000:0001 LEN=80 TC=0 HOPLIMIT=57 FLOWLBL=0 PROTO=UDP SPT=5353 DPT=31337 LEN=40 ");
        assert_eq!(p.prefix, b"DROP");
        assert_eq!(p.iface, b"eth0");
        assert_eq!(p.src.to_string(), "2001:db8::bad");
        assert!(p.link_group);
        assert_eq!(
            p.stamp,
            Some(Stamp::Utc(
                crate::source::asterisk::rules::days_from_civil(2024, 2, 19) * 86_400
                    + 14 * 3600
                    + 3 * 60
                    + 17
            ))
        );
    }

    #[test]
    fn icmp_errors_outbound_and_tags() {
        let p = Parser::new();
        // ICMP error quoting our packet: the embedded SRC is ours and must not be taken.
        let l = "Feb  9 15:03:19 pbx kernel: IN=eth0 OUT= MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:08:00 SRC=198.51.100.1 DST=203.0.113.10 LEN=96 TOS=0x00 PREC=0xC0 TTL=62 ID=1 PROTO=ICMP TYPE=3 CODE=3 [SRC=203.0.113.10 DST=198.51.100.1 LEN=68 TOS=0x00 PREC=0x00 TTL=63 ID=2 PROTO=UDP SPT=5060 DPT=5060 LEN=48 ] ";
        assert_eq!(p.parse(l.as_bytes()), Line::OtherProtocol);
        let l = "Feb  9 15:03:19 pbx kernel: IN= OUT=eth0 SRC=203.0.113.10 DST=198.51.100.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=40000 DPT=23 WINDOW=1 RES=0x00 SYN URGP=0";
        assert_eq!(p.parse(l.as_bytes()), Line::NotInbound);
        let l = "Feb  9 15:03:19 pbx kernel: IN=eth0 OUT=eth1 SRC=198.51.100.1 DST=10.0.0.2 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=40000 DPT=23 WINDOW=1 RES=0x00 SYN URGP=0";
        assert_eq!(p.parse(l.as_bytes()), Line::NotInbound);
        let l = "Feb  9 15:03:19 pbx kernel[42]: IN=eth0 OUT= SRC=198.51.100.1 DST=10.0.0.2 LEN=60 PROTO=TCP SPT=1 DPT=23 WINDOW=1 RES=0x00 SYN URGP=0";
        assert_eq!(p.parse(l.as_bytes()), Line::Refused);
        let l = "Feb  9 15:03:19 pbx myapp: IN=eth0 OUT= SRC=198.51.100.1 DST=10.0.0.2 LEN=60 PROTO=TCP SPT=1 DPT=23 WINDOW=1 RES=0x00 SYN URGP=0";
        assert_eq!(p.parse(l.as_bytes()), Line::Refused);
        let l = "Feb  9 15:03:19 pbx kernel: XX=enp1s0 OUT= SRC=198.51.100.1 DST=10.0.0.2 LEN=60 PROTO=TCP SPT=1 DPT=23 WINDOW=1 RES=0x00 SYN URGP=0";
        assert_eq!(p.parse(l.as_bytes()), Line::NotFirewall);
        let l = "Feb  9 15:03:19 pbx kernel: IN=eth0 OUT= MACSRC=00:11:22:33:44:55 MACDST=ff:ff:ff:ff:ff:ff MACPROTO=0800 SRC=198.51.100.1 DST=10.0.0.2 LEN=60 PROTO=UDP SPT=68 DPT=67 LEN=300";
        let Line::Packet(pk) = p.parse(l.as_bytes()) else {
            panic!()
        };
        assert!(pk.link_group);
    }

    #[test]
    fn flags_and_replies() {
        let p = packet("Feb  9 15:03:19 pbx kernel: IN=eth0 OUT= SRC=198.51.100.1 DST=10.0.0.2 LEN=60 PROTO=TCP SPT=443 DPT=40000 SEQ=1 ACK=2 WINDOW=1 RES=0x00 ACK RST URGP=0");
        assert_eq!(p.tcp_flags, flags::ACK | flags::RST);
        assert!(p.reply_shaped());
        let p = packet("Feb  9 15:03:19 pbx kernel: IN=eth0 OUT= SRC=198.51.100.1 DST=10.0.0.2 LEN=60 PROTO=UDP SPT=53 DPT=40000 LEN=40");
        assert!(p.reply_shaped());
        let p = packet("Feb  9 15:03:19 pbx kernel: [UFW ALLOW] IN=eth0 OUT= SRC=198.51.100.1 DST=10.0.0.2 LEN=60 PROTO=UDP SPT=5060 DPT=5060 LEN=40");
        assert!(p.accepted() && !p.reply_shaped());
    }

    #[test]
    fn addresses() {
        assert_eq!(
            parse_addr(b"2001:0db8:0bad:0000:0000:0000:0000:0007"),
            Some("2001:db8:bad::7".parse().unwrap())
        );
        assert_eq!(parse_addr(b"2001:0db8:0bad:0000:0000:0000:0000:000g"), None);
        assert_eq!(parse_addr(b"2001:0db8:0bad:0000:0000:0000:0000;0007"), None);
        assert_eq!(parse_addr(b"1.2.3.4"), Some("1.2.3.4".parse().unwrap()));
        assert_eq!(parse_addr(b"1.2.3.256"), None);
        assert_eq!(parse_addr(b"1.2.3"), None);
        assert_eq!(parse_addr(b"1.2.3.4.5"), None);
        assert_eq!(
            parse_addr(b"0000:0000:0000:0000:0000:ffff:c000:0201"),
            Some("192.0.2.1".parse().unwrap())
        );
        assert_eq!(parse_addr(b"example.org"), None);
    }
}
