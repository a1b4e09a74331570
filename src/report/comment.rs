//! Report comments: built from structured evidence (counts, kinds, transports, ports, times),
//! then passed through a scrubber as a second line of defence.
//!
//! A comment never quotes a log line. Log lines hold attacker-controlled text and this host's
//! identifiers: its addresses (`LocalAddress`, `sip:100@203.0.113.5`), hostnames, account
//! names and extensions (`Registration from '"100" <sip:100@pbx>'`). The comment is made of
//! fixed words and numbers sipban computed; [`scrub`] then removes anything that still looks
//! like an address other than the offender's, a SIP URI, a `user@host`, a quoted string or one
//! of this host's names, and keeps the text within AbuseIPDB's 1,024-byte limit.
//!
//! This module must never read a file other than `/proc/sys/kernel/hostname` (through
//! [`HostIdentity::current`]) and never resolve names.

use super::Detail;
use std::net::IpAddr;

/// AbuseIPDB truncates comments after 1,024 bytes; we stay below with a margin.
pub const MAX_COMMENT: usize = 1000;

/// This host's addresses and names: what a comment must never contain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostIdentity {
    pub addresses: Vec<IpAddr>,
    /// Host names, lower-cased (the kernel host name and its first label).
    pub names: Vec<String>,
}

/// Names shorter than this are not scrubbed as words (a host called `pi` would otherwise
/// eat every `pi` in a comment); they are still caught inside URIs and `user@host`.
const MIN_NAME: usize = 3;

impl HostIdentity {
    /// The interface addresses, gateways and kernel host name of this machine.
    pub fn current() -> HostIdentity {
        let addresses = crate::hostaddr::own_addresses()
            .into_iter()
            .map(|a| a.ip)
            .collect();
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        HostIdentity::new(addresses, &[hostname.trim()])
    }

    pub fn new(addresses: Vec<IpAddr>, names: &[&str]) -> HostIdentity {
        let mut out = Vec::new();
        for n in names {
            let n = n.trim().trim_end_matches('.').to_ascii_lowercase();
            if n.len() >= MIN_NAME {
                if let Some((first, _)) = n.split_once('.') {
                    if first.len() >= MIN_NAME {
                        out.push(first.to_string());
                    }
                }
                out.push(n);
            }
        }
        // Longest first, so `pbx.example.org` goes before `pbx`.
        out.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        out.dedup();
        HostIdentity {
            addresses: addresses
                .into_iter()
                .map(crate::net::canonical_ip)
                .collect(),
            names: out,
        }
    }

    pub fn is_own(&self, ip: IpAddr) -> bool {
        self.addresses.contains(&crate::net::canonical_ip(ip))
    }
}

/// Unix seconds as ISO 8601 in UTC: `2024-05-01T10:00:00Z`.
pub fn iso8601(t: i64) -> String {
    let (y, m, d, hh, mm, ss) = crate::clock::civil(t);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// The comment for one report: what was seen, how, and when (first evidence first).
pub fn comment(ip: IpAddr, first: i64, last: i64, detail: &Detail, host: &HostIdentity) -> String {
    let mut text = format!(
        "sipban: {} {}",
        detail.events,
        if detail.events == 1 {
            "event"
        } else {
            "events"
        }
    );
    let kinds: Vec<&str> = detail.kinds.iter().map(|k| k.describe()).collect();
    if !kinds.is_empty() {
        text.push_str(": ");
        text.push_str(&kinds.join(", "));
    }
    if !detail.transports.is_empty() {
        let t: Vec<&str> = detail.transports.iter().map(|t| t.label()).collect();
        text.push_str(" over ");
        text.push_str(&t.join("/"));
    }
    if !detail.ports.is_empty() {
        let p: Vec<String> = detail.ports.iter().take(16).map(u16::to_string).collect();
        text.push_str(if p.len() == 1 {
            " to port "
        } else {
            " to ports "
        });
        text.push_str(&p.join(","));
        if detail.ports.len() > 16 {
            text.push_str(",...");
        }
    }
    text.push_str(&format!("; first seen {}", iso8601(first)));
    if last != first {
        text.push_str(&format!(", last seen {}", iso8601(last)));
    }
    if !detail.rules.is_empty() {
        let r: Vec<&str> = detail.rules.iter().map(String::as_str).collect();
        text.push_str("; detector rules: ");
        text.push_str(&r.join(", "));
    }
    text.push('.');
    scrub(&text, host, ip)
}

/// Remove from `text` whatever could identify this host or its users: this host's names,
/// quoted strings, SIP/tel URIs, `user@host` tokens, and every address except `offender`.
/// Control characters become spaces; `"` and `\` become `'` and `/` (the text goes into a
/// CSV cell). The result is at most [`MAX_COMMENT`] bytes.
pub fn scrub(text: &str, host: &HostIdentity, offender: IpAddr) -> String {
    let offender = crate::net::canonical_ip(offender);
    // 1. Printable ASCII only.
    let mut t: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else if c.is_ascii() {
                ' '
            } else {
                '?'
            }
        })
        .collect();
    // 2. This host's names, wherever they appear (case-insensitively).
    for name in &host.names {
        t = replace_ci(&t, name, "[host]");
    }
    // 3. Quoted strings (an unterminated quote runs to the end).
    t = redact_quotes(&t);
    // 4. SIP/tel URIs and user@host tokens.
    t = redact_uris(&t);
    // 5. Addresses other than the offender's.
    t = redact_addresses(&t, offender);
    // 6. CSV-safe.
    t = t.replace('"', "'").replace('\\', "/");
    truncate(&t, MAX_COMMENT)
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    // ASCII only by now, but stay on a character boundary regardless.
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Replace every case-insensitive occurrence of `needle` (ASCII lower case) in `hay`.
fn replace_ci(hay: &str, needle: &str, with: &str) -> String {
    if needle.is_empty() {
        return hay.to_string();
    }
    let lower = hay.to_ascii_lowercase();
    let mut out = String::with_capacity(hay.len());
    let mut i = 0;
    while let Some(pos) = lower[i..].find(needle) {
        let at = i + pos;
        out.push_str(&hay[i..at]);
        out.push_str(with);
        i = at + needle.len();
    }
    out.push_str(&hay[i..]);
    out
}

fn redact_quotes(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    let mut chars = t.char_indices();
    while let Some((_, c)) = chars.next() {
        if c == '\'' || c == '"' {
            out.push(c);
            out.push_str("[redacted]");
            // Skip to the matching quote (or the end).
            for (_, d) in chars.by_ref() {
                if d == c {
                    out.push(c);
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters that end a URI or a `user@host` token.
fn ends_token(c: char) -> bool {
    c.is_ascii_whitespace() || matches!(c, '<' | '>' | '(' | ')' | '[' | ']' | ',' | '\'' | '"')
}

fn redact_uris(t: &str) -> String {
    // Tokens split at whitespace and brackets; a token with a URI scheme or an `@` goes.
    let mut out = String::with_capacity(t.len());
    let mut start = 0;
    let bytes: Vec<(usize, char)> = t.char_indices().collect();
    let mut i = 0;
    while i <= bytes.len() {
        let at_end = i == bytes.len();
        if at_end || ends_token(bytes[i].1) {
            let end = if at_end { t.len() } else { bytes[i].0 };
            let tok = &t[start..end];
            out.push_str(&redact_token(tok));
            if !at_end {
                out.push(bytes[i].1);
                start = end + bytes[i].1.len_utf8();
            }
        }
        i += 1;
    }
    out
}

fn redact_token(tok: &str) -> String {
    let lower = tok.to_ascii_lowercase();
    for scheme in ["sips:", "sip:", "tel:"] {
        if let Some(i) = lower.find(scheme) {
            return format!("{}{scheme}[redacted]", &tok[..i]);
        }
    }
    if tok.contains('@') {
        return "[redacted]".to_string();
    }
    tok.to_string()
}

/// Characters that can be part of a textual address (with a port or a prefix length).
fn addr_char(c: char) -> bool {
    c.is_ascii_hexdigit() || c == ':' || c == '.'
}

fn redact_addresses(t: &str, offender: IpAddr) -> String {
    let mut out = String::with_capacity(t.len());
    let mut run_start: Option<usize> = None;
    let flush = |out: &mut String, run: &str| {
        if is_other_address(run, offender) {
            out.push_str("[address]");
        } else {
            out.push_str(run);
        }
    };
    for (i, c) in t.char_indices() {
        if addr_char(c) {
            run_start.get_or_insert(i);
        } else {
            if let Some(s) = run_start.take() {
                flush(&mut out, &t[s..i]);
            }
            out.push(c);
        }
    }
    if let Some(s) = run_start {
        flush(&mut out, &t[s..]);
    }
    out
}

/// Whether a run of address characters holds an address (possibly with a `:port`, trailing
/// dots or colons) that is not the offender's.
fn is_other_address(run: &str, offender: IpAddr) -> bool {
    let core = run.trim_matches(|c| c == '.' || c == ':');
    let mut tries = vec![core];
    // `1.2.3.4:5060`
    if let Some((a, p)) = core.rsplit_once(':') {
        if a.contains('.') && p.bytes().all(|b| b.is_ascii_digit()) {
            tries.push(a);
        }
    }
    // A run that only parses as an address once a trailing `:port`-like group goes
    // (`2001:db8::1:5060` is itself an address, which is what we want to catch anyway).
    for s in tries {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return crate::net::canonical_ip(ip) != offender;
        }
    }
    // Embedded IPv4 inside a longer run (`::ffff:10.0.0.1` parses above; `1.2.3.4.5` does
    // not): any dotted quad inside the run.
    if core.matches('.').count() >= 3 {
        let parts: Vec<&str> = core.split(['.', ':']).collect();
        for w in parts.windows(4) {
            let quad = w.join(".");
            if let Ok(ip) = quad.parse::<IpAddr>() {
                if crate::net::canonical_ip(ip) != offender {
                    return true;
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{OffenceKind, Transport};

    fn host() -> HostIdentity {
        HostIdentity::new(
            vec![
                "203.0.113.5".parse().unwrap(),
                "2001:db8:5::10".parse().unwrap(),
                "192.168.1.2".parse().unwrap(),
            ],
            &["pbx.example.org"],
        )
    }

    #[test]
    fn iso_times() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_714_557_600), "2024-05-01T10:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn comments_are_structured() {
        let mut d = Detail {
            events: 12,
            ..Detail::default()
        };
        d.kinds.insert(OffenceKind::SipAuth);
        d.rules.insert("sip_registration".into());
        d.transports.insert(Transport::Tcp);
        d.transports.insert(Transport::Tls);
        d.ports.insert(5061);
        let ip: IpAddr = "45.1.2.3".parse().unwrap();
        let c = comment(ip, 1_714_557_600, 1_714_557_900, &d, &host());
        assert_eq!(
            c,
            "sipban: 12 events: failed SIP/IAX2 authentications (password guessing) over TCP/TLS to port 5061; first seen 2024-05-01T10:00:00Z, last seen 2024-05-01T10:05:00Z; detector rules: sip_registration."
        );
    }

    #[test]
    fn scrub_removes_identifiers() {
        let off: IpAddr = "45.1.2.3".parse().unwrap();
        let line = r#"[2024-05-01 10:00:00] NOTICE[1234] chan_sip.c: Registration from '"100" <sip:100@203.0.113.5>' failed for '45.1.2.3:5060' - Wrong password on PBX.example.org via 192.168.1.2:5060 and [2001:db8:5::10]:5061 user alice@pbx AccountID="alice" LocalAddress=IPV4/UDP/203.0.113.5/5060 "#;
        let s = scrub(line, &host(), off);
        for bad in [
            "100",
            "203.0.113.5",
            "pbx",
            "PBX",
            "192.168.1.2",
            "2001:db8:5::10",
            "alice",
            "sip:1",
        ] {
            assert!(!s.contains(bad), "{bad} in {s}");
        }
        assert!(s.contains("Wrong password"), "{s}");
        // The offender stays where it is not quoted.
        let s = scrub("failed for 45.1.2.3:5060 from 10.1.1.1", &host(), off);
        assert_eq!(s, "failed for 45.1.2.3:5060 from [address]");
        assert!(!s.contains('"') && !s.contains('\\'));
        // Unterminated quotes swallow the rest.
        let s = scrub("Call from 'evil (45.1.2.3) to 100@ctx", &host(), off);
        assert_eq!(s, "Call from '[redacted]");
        // Long text is cut.
        let s = scrub(&"a".repeat(5000), &host(), off);
        assert!(s.len() <= MAX_COMMENT);
    }

    #[test]
    fn scrub_keeps_the_offender_and_catches_address_forms() {
        let off: IpAddr = "2a01:4f8::7".parse().unwrap();
        let s = scrub(
            "from 2a01:4f8:0:0::7 and ::ffff:203.0.113.5 and 203.0.113.5.",
            &host(),
            off,
        );
        assert!(s.contains("2a01:4f8:0:0::7"), "{s}");
        assert!(!s.contains("203.0.113.5"), "{s}");
    }
}
