//! What a LOG line's rule did with the packet, read from the admin's log prefix.
//!
//! Only lines from dropping or rejecting rules are probes that were turned away; a LOG rule in
//! front of an ACCEPT (or an audit rule that logs every packet before the verdict) logs
//! ordinary traffic. The config's `kernel_log.log_prefixes` rules are read first (the first
//! whose `contains` is in the prefix wins, ASCII case ignored), then this built-in table:
//!
//! | prefix (example) | means | written by |
//! |---|---|---|
//! | `sipban-probe: ` | probe | sipban's own LOG rule (`sipban log-rule`): logs new inbound connections to weighted ports before the filter decides |
//! | `[UFW BLOCK] `, `[UFW LIMIT BLOCK] ` | drop | UFW (Ubuntu, Debian `ufw`), `logging low` and up |
//! | `[UFW ALLOW] ` | accept | UFW, `logging medium` and up |
//! | `[UFW AUDIT] `, `[UFW AUDIT INVALID] ` | accept | UFW `logging high/full`: every new packet, before the verdict |
//! | `filter_IN_public_DROP: `, `filter_IN_public_REJECT: `, `STATE_INVALID_DROP: `, `final_REJECT: ` | drop | firewalld `LogDenied=` (RHEL/Fedora/openSUSE/Debian `firewalld`) |
//! | `[WAN_IN-4000-D] `, `[WAN_LOCAL-default-D] `, `[LAN_IN-2000-R] ` | drop | UniFi USG/UDM (`-D` drop, `-R` reject) |
//! | `[WAN_IN-2000-A] `, `[LAN_LOCAL-2010-A] ` | accept | UniFi USG/UDM (`-A` accept) |
//! | `SFW2-INext-DROP-DEFLT `, `SFW2-INext-REJECT ` | drop | SuSEfirewall2 (openSUSE, SLES 12) |
//! | `SFW2-INext-ACC-TCP `, `SFW2-IN-ACC-RELATED ` | accept | SuSEfirewall2 |
//! | `DROP(src wan)`, `REJECT(src wan)`, `drop wan in: `, `reject wan in: ` | drop | OpenWrt fw3 / fw4 |
//! | `accept wan in: ` | accept | OpenWrt fw4 |
//! | `Shorewall:net-fw:DROP:`, `Shorewall:net2fw:REJECT:` | drop | Shorewall (`LOGFORMAT="Shorewall:%s:%s:"`) |
//! | `Shorewall:net2fw:ACCEPT:` | accept | Shorewall |
//! | `Firewall: *TCP_IN Blocked* ` | drop | ConfigServer Security & Firewall (csf) |
//! | any other prefix with the word `DROP`, `DROPPED`, `REJECT`, `REJECTED`, `BLOCK`, `BLOCKED`, `DENY`, `DENIED` (`IPTABLES-DROP: `, `nft-drop: `, `DROPIN=`) | drop | hand-written rules |
//! | any other prefix with the word `ACCEPT`, `ACCEPTED`, `ALLOW`, `ALLOWED`, `AUDIT`, `PASS`, `ACC` | accept | hand-written rules |
//! | none, or no word above | `kernel_log.unknown_prefix` (default `count`: counted, but not as a drop) | `-j LOG` without `--log-prefix` |
//!
//! Words are the prefix's runs of letters and digits; an accept word wins over a drop word
//! (a false ban costs more than a missed probe).
//!
//! This module must never look past the prefix.

use crate::config::kernlog::{Means, PrefixRule, UnknownPrefix};

/// The verdict on one prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A rule's words or the table say what it did.
    Known(Means),
    /// No rule names it: `kernel_log.unknown_prefix` applies.
    Unknown,
}

/// Built-in substrings checked before words (first match wins).
const TABLE: [(&[u8], Means); 8] = [
    (b"sipban-probe:", Means::Probe),
    (b"[UFW AUDIT", Means::Accept),
    (b"[UFW ALLOW]", Means::Accept),
    (b"[UFW BLOCK]", Means::Drop),
    (b"[UFW LIMIT BLOCK]", Means::Drop),
    (b"-A]", Means::Accept),
    (b"-D]", Means::Drop),
    (b"-R]", Means::Drop),
];

const ACCEPT_WORDS: [&[u8]; 7] = [
    b"ACCEPT",
    b"ACCEPTED",
    b"ALLOW",
    b"ALLOWED",
    b"AUDIT",
    b"PASS",
    b"ACC",
];
const DROP_WORDS: [&[u8]; 8] = [
    b"DROP",
    b"DROPPED",
    b"REJECT",
    b"REJECTED",
    b"BLOCK",
    b"BLOCKED",
    b"DENY",
    b"DENIED",
];

/// Compiled prefix rules: the config's, then the table.
#[derive(Clone, Debug, Default)]
pub struct Prefixes {
    own: Vec<(Vec<u8>, Means)>,
    pub unknown: UnknownPrefix,
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && hay.len() >= needle.len()
        && hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

impl Prefixes {
    pub fn new(rules: &[PrefixRule], unknown: UnknownPrefix) -> Prefixes {
        Prefixes {
            own: rules
                .iter()
                .map(|r| (r.contains.as_bytes().to_vec(), r.means))
                .collect(),
            unknown,
        }
    }

    /// What the rule that logged a line with `prefix` did.
    pub fn verdict(&self, prefix: &[u8]) -> Verdict {
        for (c, m) in &self.own {
            if contains_ci(prefix, c) {
                return Verdict::Known(*m);
            }
        }
        if prefix.is_empty() {
            return Verdict::Unknown;
        }
        for (c, m) in TABLE {
            if memchr::memmem::find(prefix, c).is_some() {
                return Verdict::Known(m);
            }
        }
        let mut drop = false;
        for w in prefix.split(|c| !c.is_ascii_alphanumeric()) {
            if w.is_empty() || w.len() > 8 {
                continue;
            }
            if ACCEPT_WORDS.iter().any(|a| a.eq_ignore_ascii_case(w)) {
                return Verdict::Known(Means::Accept);
            }
            drop |= DROP_WORDS.iter().any(|d| d.eq_ignore_ascii_case(w));
        }
        // A prefix glued to `IN=` (`DROPIN=eth0`) keeps its word whole only up to the glue.
        if !drop {
            drop = DROP_WORDS.iter().any(|d| {
                prefix.len() >= d.len() && prefix[prefix.len() - d.len()..].eq_ignore_ascii_case(d)
            });
        }
        if drop {
            Verdict::Known(Means::Drop)
        } else {
            Verdict::Unknown
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        let p = Prefixes::default();
        let v = |s: &str| p.verdict(s.as_bytes());
        let drop = Verdict::Known(Means::Drop);
        let accept = Verdict::Known(Means::Accept);
        for s in [
            "[UFW BLOCK] ",
            "[UFW LIMIT BLOCK] ",
            "filter_IN_public_DROP: ",
            "filter_IN_public_REJECT: ",
            "STATE_INVALID_DROP: ",
            "final_REJECT: ",
            "[WAN_IN-4000-D]",
            "[WAN_LOCAL-default-D] ",
            "[LAN_IN-2000-R]",
            "SFW2-INext-DROP-DEFLT ",
            "SFW2-INext-REJECT ",
            "DROP(src wan)",
            "REJECT(src wan)",
            "drop wan in: ",
            "reject wan in: ",
            "Shorewall:net-fw:DROP:",
            "Shorewall:net2fw:REJECT:",
            "Firewall: *TCP_IN Blocked* ",
            "IPTABLES-DROP: ",
            "nft-drop: ",
            "DROP",
        ] {
            assert_eq!(v(s), drop, "{s}");
        }
        for s in [
            "[UFW ALLOW] ",
            "[UFW AUDIT] ",
            "[UFW AUDIT INVALID] ",
            "[WAN_IN-2000-A]",
            "SFW2-INext-ACC-TCP ",
            "SFW2-IN-ACC-RELATED ",
            "accept wan in: ",
            "Shorewall:net2fw:ACCEPT:",
            "INPUT-ACCEPT: ",
        ] {
            assert_eq!(v(s), accept, "{s}");
        }
        assert_eq!(v("sipban-probe: "), Verdict::Known(Means::Probe));
        for s in ["", "LOGIN=x ", "SSH: ", "iptables: "] {
            assert_eq!(v(s), Verdict::Unknown, "{s}");
        }
        let own = Prefixes::new(
            &[PrefixRule {
                contains: "ssh:".into(),
                means: Means::Drop,
            }],
            UnknownPrefix::Ignore,
        );
        assert_eq!(own.verdict(b"SSH: "), drop);
    }
}
