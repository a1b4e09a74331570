//! Scanner signatures: the User-Agent catalogue (`feeds/sip-scanners.txt`, compiled in, each
//! entry with where it is documented) and tool fingerprints that survive a changed
//! User-Agent (SIPVicious: `z9hG4bK-<decimal>` branches with decimal-only Call-IDs or its
//! From-tag encoding, research `wave2-facts.md` §2).
//!
//! This module must never match on anything but the message's own fields, and never allocate
//! per message.

use super::sip::Message;
use std::sync::OnceLock;

/// The catalogue as shipped.
pub const CATALOGUE: &str = include_str!("../../../feeds/sip-scanners.txt");

/// Longest User-Agent compared (longer values are compared on their start).
const MAX_UA: usize = 256;

/// One catalogue entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Lower-case pattern.
    pub pattern: String,
    /// The pattern must be the whole value (`=name` in the file).
    pub whole: bool,
    pub tool: String,
    pub source: String,
}

/// Parse the catalogue text: `pattern<TAB>tool<TAB>source`, `#` comments, blank lines.
pub fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut f = line.split('\t');
        let (Some(p), Some(tool), Some(source), None) = (f.next(), f.next(), f.next(), f.next())
        else {
            return Err(format!(
                "sip-scanners.txt line {}: expected pattern, tool and source separated by tabs",
                i + 1
            ));
        };
        let (whole, p) = match p.strip_prefix('=') {
            Some(rest) => (true, rest),
            None => (false, p),
        };
        if p.len() < 3 || p.len() > MAX_UA || tool.is_empty() || source.is_empty() {
            return Err(format!("sip-scanners.txt line {}: bad entry", i + 1));
        }
        out.push(Entry {
            pattern: p.to_ascii_lowercase(),
            whole,
            tool: tool.to_owned(),
            source: source.to_owned(),
        });
    }
    Ok(out)
}

fn catalogue() -> &'static [Entry] {
    static C: OnceLock<Vec<Entry>> = OnceLock::new();
    // The shipped file is checked by a unit test; an unparsable one matches nothing.
    C.get_or_init(|| parse(CATALOGUE).unwrap_or_default())
}

/// The tool a User-Agent names, if it is in the catalogue.
pub fn user_agent(ua: &[u8]) -> Option<&'static str> {
    let mut low = [0u8; MAX_UA];
    let n = ua.len().min(MAX_UA);
    for (d, s) in low.iter_mut().zip(&ua[..n]) {
        *d = s.to_ascii_lowercase();
    }
    let low = &low[..n];
    catalogue()
        .iter()
        .find(|e| {
            let p = e.pattern.as_bytes();
            if e.whole {
                low == p
            } else {
                memchr::memmem::find(low, p).is_some()
            }
        })
        .map(|e| e.tool.as_str())
}

/// A tool fingerprint that does not depend on the User-Agent.
pub fn fingerprint(m: &Message<'_>) -> Option<&'static str> {
    let branch = m.branch?;
    let digits = branch.strip_prefix(b"z9hG4bK-")?;
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let decimal_callid = m
        .call_id
        .is_some_and(|c| c.len() <= 25 && c.iter().all(u8::is_ascii_digit));
    let tag_encoded = m.from.tag.is_some_and(sipvicious_tag);
    (decimal_callid || tag_encoded).then_some(
        "SIPVicious (branch z9hG4bK-<decimal> with a decimal Call-ID or its From-tag encoding)",
    )
}

/// SIPVicious From tags: the hex of `<text>\x01<decimal>`.
fn sipvicious_tag(tag: &[u8]) -> bool {
    if tag.len() < 4 || tag.len() > 200 || !tag.len().is_multiple_of(2) {
        return false;
    }
    let mut decoded = [0u8; 100];
    for (i, pair) in tag.chunks_exact(2).enumerate() {
        let hex = |c: u8| (c as char).to_digit(16);
        let (Some(h), Some(l)) = (hex(pair[0]), hex(pair[1])) else {
            return false;
        };
        decoded[i] = (h * 16 + l) as u8;
    }
    let d = &decoded[..tag.len() / 2];
    match memchr::memrchr(1, d) {
        Some(i) => i > 0 && i + 1 < d.len() && d[i + 1..].iter().all(u8::is_ascii_digit),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::wire::sip;

    #[test]
    fn the_shipped_catalogue_parses() {
        let c = parse(CATALOGUE).unwrap();
        assert!(c.len() >= 10);
        assert!(c.iter().all(|e| !e.source.is_empty()));
    }

    #[test]
    fn user_agents() {
        assert!(user_agent(b"friendly-scanner").is_some());
        assert!(user_agent(b"sipcli/v1.8").is_some());
        assert!(user_agent(b"VaxSIPUserAgent/3.1").is_some());
        assert!(user_agent(b"SMAP").is_some());
        assert_eq!(user_agent(b"smap-like phone 1.0"), None);
        assert_eq!(user_agent(b"Yealink SIP-T46S 66.86.0.15"), None);
        assert_eq!(user_agent(b"Zoiper rv2.10"), None);
    }

    #[test]
    fn sipvicious_survives_a_changed_user_agent() {
        let m = sip::parse(b"INVITE sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.9:5061;branch=z9hG4bK-3373549542;rport\r\nFrom: \"100\"<sip:100@192.0.2.1>;tag=3130300131323334\r\nTo: <sip:100@192.0.2.1>\r\nUser-Agent: Yealink SIP-T46S\r\nCall-ID: 2811398231\r\nCSeq: 1 INVITE\r\n\r\n").unwrap();
        assert!(fingerprint(&m).is_some());
        // `100\x011234` → hex
        assert!(sipvicious_tag(b"3130300131323334"));
        assert!(!sipvicious_tag(b"as5f2c4b"));
        // A PJSIP phone: no fingerprint.
        let m = sip::parse(b"INVITE sip:100@h SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKPj1c2d\r\nFrom: <sip:201@h>;tag=a1b2\r\nCall-ID: 1234567\r\nCSeq: 1 INVITE\r\n\r\n").unwrap();
        assert_eq!(fingerprint(&m), None);
    }
}
