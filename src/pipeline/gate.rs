//! The admission gate: may this address or prefix enter a set, and if not, why.
//!
//! Two halves, one verdict ([`admit`]):
//! - the **source's rules** ([`SourcePolicy::reject`]): the whole address space, loopback,
//!   link-local, multicast and reserved space never; private space only from a source allowed
//!   to ban it; nothing broader than the source's `min_prefix`;
//! - the **allowlist** ([`Allowlist`]): prefixes that are never banned, each remembered with
//!   why it is there (config, one of this host's own addresses, a feed's server, a peer in
//!   Asterisk's configuration, a manual allowlist entry), so the verdict can name the rule.
//!   The networks this host is on ([`AllowReason::OnLink`]) are the one soft rule: a source
//!   whose policy says [`SourcePolicy::ban_on_link`] (manual bans; the log detectors when the
//!   admin opts in) may ban there, a feed never. It also knows the network's own NAT64
//!   prefixes (`nat64_prefixes`): an address inside one is judged by the IPv4 address it
//!   carries, and no source may ban a whole prefix ([`rule`]).
//!
//! Every path that puts something in a set asks here: decide (for every sighting, and for
//! every entry it turns into a kernel prefix), the daemon's real-time pass, `ban`, `restore`.
//! `ban`, `explain`, `sync --dry-run` and the logs print a [`Refusal`] in the words of its
//! `Display`, so the reason reads the same everywhere.
//!
//! Pure data and arithmetic: gathering the host's addresses is the caller's job (see
//! [`crate::hostaddr`]); this module must never do I/O.

use crate::net::{self, Family};
use ipnet::IpNet;
use serde::Serialize;
use std::fmt;

/// Which prefixes a source may ban.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SourcePolicy {
    pub name: String,
    pub priority: u16,
    pub min_prefix_v4: u8,
    pub min_prefix_v6: u8,
    /// May this source ban private space (RFC 1918, CGNAT, ULA)? Feeds: no, unless opted in.
    /// Local detectors: yes (a compromised phone on the LAN is a real attacker).
    pub allow_private: bool,
    /// May this source ban an address on one of this host's own networks (on-link)? Feeds
    /// and APIBAN: never. Local detectors: only with `ban_on_link: true` (a LAN phone with a
    /// wrong password is more often a mistake than an attack). Manual bans: yes.
    pub ban_on_link: bool,
    /// The longest TTL this source asks for (a feed's `ttl`, a detector's longest ban): no
    /// saved mark of it may expire later than this after now, whatever clock saved it.
    pub max_ttl: u32,
}

impl SourcePolicy {
    /// A feed's rules, from its settings.
    pub fn for_feed(f: &crate::config::FeedSettings) -> SourcePolicy {
        SourcePolicy {
            name: f.name.clone(),
            priority: f.priority,
            min_prefix_v4: f.min_prefix_v4,
            min_prefix_v6: f.min_prefix_v6,
            allow_private: f.allow_private,
            ban_on_link: false,
            max_ttl: f.ttl,
        }
    }

    pub fn min_prefix(&self, family: Family) -> u8 {
        match family {
            Family::V4 => self.min_prefix_v4,
            Family::V6 => self.min_prefix_v6,
        }
    }

    /// Why this source may not ban `net`, if it may not.
    pub fn reject(&self, net: &IpNet) -> Option<Rejection> {
        let family = Family::of(net);
        if net.prefix_len() == 0 {
            return Some(Rejection::Everything);
        }
        if net.prefix_len() < self.min_prefix(family) {
            return Some(Rejection::TooBroad);
        }
        if net::special_range(net).is_some() {
            return Some(Rejection::Special);
        }
        if net::covers_translation(net).is_some() {
            return Some(Rejection::Translation);
        }
        if !self.allow_private && net::private_range(net).is_some() {
            return Some(Rejection::Private);
        }
        None
    }
}

/// The source's rules, and the network's own NAT64 prefixes (which the allowlist carries): a
/// prefix that covers one is a [`Rejection::Translation`] like the well-known ranges.
pub fn rule(policy: &SourcePolicy, allow: &Allowlist, net: &IpNet) -> Option<Rejection> {
    policy
        .reject(net)
        .or_else(|| allow.covered_nat64(net).map(|_| Rejection::Translation))
}

/// Why a listed prefix was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    /// 0.0.0.0/0 or ::/0.
    Everything,
    /// Broader than the source's `min_prefix`.
    TooBroad,
    /// Loopback, link-local, multicast, unspecified, broadcast, "this network".
    Special,
    /// Private or shared space from a source that may not ban it.
    Private,
    /// A whole IPv6 translation range (NAT64, 6to4, Teredo): every IPv4 host behind it.
    Translation,
}

impl Rejection {
    /// The rule in words: what a refused prefix "is". `ban`, `explain`, the sync report and
    /// the logs all use these words.
    pub fn describe(self) -> &'static str {
        match self {
            Rejection::Everything => "the whole address space",
            Rejection::TooBroad => "broader than the source's min_prefix",
            Rejection::Special => "loopback, link-local, multicast or reserved space",
            Rejection::Private => "private address space",
            Rejection::Translation => "a whole IPv6 range that carries IPv4 addresses",
        }
    }
}

/// Why a prefix is on the allowlist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum AllowReason {
    /// Listed under `allowlist:` in the config.
    Config,
    /// An address of this host (interface or default gateway); the text says which.
    OwnAddress(String),
    /// The server a feed is downloaded from.
    FeedHost(String),
    /// A DNS resolver of this host; the text names the file that lists it.
    Resolver(String),
    /// A network this host is on; the text names the interface. A soft rule: see
    /// [`SourcePolicy::ban_on_link`].
    OnLink(String),
    /// A SIP/IAX2 peer in Asterisk's configuration; the text says where and, for a name,
    /// which (`pjsip.conf [trunk] server_uri trunk.example.net`).
    AsteriskPeer(String),
    /// `sipban unban --allow` (a persistent manual allowlist entry).
    Manual,
}

impl fmt::Display for AllowReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowReason::Config => f.write_str("allowlist in config"),
            AllowReason::OwnAddress(what) => write!(f, "own address ({what})"),
            AllowReason::FeedHost(feed) => write!(f, "server of feed {feed}"),
            AllowReason::Resolver(file) => write!(f, "DNS resolver in {file}"),
            AllowReason::OnLink(iface) => write!(f, "on-link network of interface {iface}"),
            AllowReason::AsteriskPeer(what) => write!(f, "Asterisk peer: {what}"),
            AllowReason::Manual => f.write_str("manual allowlist"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AllowRule {
    #[serde(serialize_with = "crate::model::ser_net")]
    pub net: IpNet,
    pub reason: AllowReason,
}

/// All allowlist rules, split by family for the subtraction: the hard rules, and all rules
/// (hard and on-link) for the sources that may not ban on-link addresses; and the network's own
/// NAT64 prefixes (through which IPv6 addresses carry IPv4 ones).
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    rules: Vec<AllowRule>,
    hard: [Vec<IpNet>; 2],
    all: [Vec<IpNet>; 2],
    nat64: Vec<net::Nat64>,
}

impl AllowRule {
    /// An on-link network: a soft rule (see [`SourcePolicy::ban_on_link`]).
    pub fn is_on_link(&self) -> bool {
        matches!(self.reason, AllowReason::OnLink(_))
    }
}

impl Allowlist {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a rule. A prefix already listed keeps its first reason, except that a hard rule
    /// replaces an on-link one (the prefix is then protected from every source).
    pub fn add(&mut self, net: IpNet, reason: AllowReason) {
        let fam = Family::of(&net) as usize;
        let soft = matches!(reason, AllowReason::OnLink(_));
        if let Some(r) = self.rules.iter_mut().find(|r| r.net == net) {
            if r.is_on_link() && !soft {
                r.reason = reason;
                self.hard[fam].push(net);
            }
            return;
        }
        if !soft {
            self.hard[fam].push(net);
        }
        self.all[fam].push(net);
        self.rules.push(AllowRule { net, reason });
    }

    pub fn rules(&self) -> &[AllowRule] {
        &self.rules
    }

    /// The network's own NAT64 prefixes (`nat64_prefixes`), besides the well-known ranges.
    pub fn set_nat64(&mut self, prefixes: &[net::Nat64]) {
        self.nat64 = prefixes.to_vec();
    }

    pub fn nat64(&self) -> &[net::Nat64] {
        &self.nat64
    }

    /// The configured NAT64 prefix that banning `net` would cut off whole, if any.
    pub fn covered_nat64(&self, net: &IpNet) -> Option<net::Nat64> {
        self.nat64.iter().copied().find(|p| p.covered_by(net))
    }

    /// The IPv4 prefix an IPv6 prefix carries: through a well-known range (NAT64, 6to4,
    /// Teredo) or one of the network's own NAT64 prefixes.
    fn carried(&self, net: &IpNet) -> Option<IpNet> {
        net::embedded_v4(net)
            .map(|(v4, _)| v4)
            .or_else(|| self.nat64.iter().find_map(|p| p.carried(net)))
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn nets(&self, family: Family, on_link_ok: bool) -> &[IpNet] {
        if on_link_ok {
            &self.hard[family as usize]
        } else {
            &self.all[family as usize]
        }
    }

    /// The first rule that overlaps `net` (covers it, or lies inside it), or, for an IPv6
    /// prefix that carries IPv4 addresses (NAT64, 6to4, Teredo, the network's own NAT64
    /// prefixes), overlaps what it carries.
    pub fn hit(&self, net: &IpNet) -> Option<&AllowRule> {
        self.hit_for(net, false)
    }

    /// [`Allowlist::hit`] for a source that may (`on_link_ok`) or may not ban on-link
    /// addresses.
    pub fn hit_for(&self, net: &IpNet, on_link_ok: bool) -> Option<&AllowRule> {
        let carried = self.carried(net);
        self.rules.iter().find(|r| {
            !(on_link_ok && r.is_on_link())
                && (net::overlaps(&r.net, net)
                    || carried.is_some_and(|c| net::overlaps(&r.net, &c)))
        })
    }

    /// The on-link network that overlaps `net`, if any.
    pub fn on_link_hit(&self, net: &IpNet) -> Option<&AllowRule> {
        self.rules
            .iter()
            .find(|r| r.is_on_link() && net::overlaps(&r.net, net))
    }

    /// `net` minus every allowlisted prefix. `None` when nothing overlaps (the common, cheap
    /// case); `Some(pieces)` otherwise (empty when fully covered). An IPv6 prefix whose carried
    /// IPv4 addresses overlap the allowlist is protected whole: the IPv4 host behind a NAT64 or
    /// 6to4 address is the one the allowlist names.
    pub fn subtract(&self, net: &IpNet) -> Option<Vec<IpNet>> {
        self.subtract_for(net, false)
    }

    /// [`Allowlist::subtract`] for a source that may (`on_link_ok`) or may not ban on-link
    /// addresses.
    pub fn subtract_for(&self, net: &IpNet, on_link_ok: bool) -> Option<Vec<IpNet>> {
        if let Some(carried) = self.carried(net) {
            if self
                .nets(Family::V4, on_link_ok)
                .iter()
                .any(|a| net::overlaps(a, &carried))
            {
                return Some(Vec::new());
            }
        }
        let nets = self.nets(Family::of(net), on_link_ok);
        if !nets.iter().any(|a| net::overlaps(a, net)) {
            return None;
        }
        Some(net::subtract(*net, nets))
    }
}

/// Why the gate refuses a prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Refusal {
    /// A source rule (address space, prefix guard).
    Rule {
        #[serde(serialize_with = "crate::model::ser_net")]
        net: IpNet,
        rule: Rejection,
        source: String,
        min_prefix: u8,
        /// For [`Rejection::Translation`]: the range the prefix covers.
        #[serde(skip_serializing_if = "Option::is_none")]
        range: Option<String>,
    },
    /// The allowlist covers it whole.
    Allowlisted {
        #[serde(serialize_with = "crate::model::ser_net")]
        net: IpNet,
        by: AllowRule,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Rule {
                net,
                rule,
                source,
                min_prefix,
                range,
            } => {
                let n = net::display_net(net);
                write!(f, "refused: {n} is {}", rule.describe())?;
                match rule {
                    Rejection::TooBroad => write!(f, " (/{min_prefix} for {source})"),
                    Rejection::Private => write!(f, ", which {source} may not ban (allow_private)"),
                    Rejection::Translation => match range {
                        Some(range) => write!(f, " ({range})"),
                        None => Ok(()),
                    },
                    Rejection::Everything | Rejection::Special => Ok(()),
                }
            }
            Refusal::Allowlisted { net, by } => write!(
                f,
                "refused: {} is protected by {} ({})",
                net::display_net(net),
                net::display_net(&by.net),
                by.reason
            ),
        }
    }
}

/// The verdict on one prefix from one source: `Ok(None)` admitted whole, `Ok(Some(rule))`
/// admitted with the allowlisted part carved out (decide splits it), `Err` refused.
pub fn admit<'a>(
    policy: &SourcePolicy,
    allow: &'a Allowlist,
    net: &IpNet,
) -> Result<Option<&'a AllowRule>, Refusal> {
    if let Some(why) = rule(policy, allow, net) {
        let range = (why == Rejection::Translation).then(|| match net::covers_translation(net) {
            Some(name) => name.to_string(),
            None => match allow.covered_nat64(net) {
                Some(p) => format!("NAT64 {p} in nat64_prefixes"),
                None => String::new(),
            },
        });
        return Err(Refusal::Rule {
            net: *net,
            rule: why,
            source: policy.name.clone(),
            min_prefix: policy.min_prefix(Family::of(net)),
            range,
        });
    }
    match allow.subtract_for(net, policy.ban_on_link) {
        None => Ok(None),
        Some(pieces) => {
            let by = allow.hit_for(net, policy.ban_on_link);
            match (pieces.is_empty(), by) {
                (true, Some(by)) => Err(Refusal::Allowlisted {
                    net: *net,
                    by: by.clone(),
                }),
                (_, by) => Ok(by),
            }
        }
    }
}

/// How many refused listings per source the state keeps for `explain` (the broadest first).
pub const KEEP_REFUSED: usize = 256;

/// The blob key of a source's refused listings.
pub fn refused_key(source: &str) -> String {
    format!("gate.refused.{source}")
}

/// Encode refused listings (one prefix a line, at most [`KEEP_REFUSED`], broadest first).
pub fn encode_refused(nets: &mut Vec<IpNet>) -> Vec<u8> {
    nets.sort_by_key(|n| (n.prefix_len(), net::sort_key(n)));
    nets.dedup();
    nets.truncate(KEEP_REFUSED);
    let mut out = String::new();
    for n in nets.iter() {
        out.push_str(&net::display_net(n));
        out.push('\n');
    }
    out.into_bytes()
}

/// Decode what [`encode_refused`] wrote; unreadable lines are skipped.
pub fn decode_refused(blob: &[u8]) -> Vec<IpNet> {
    String::from_utf8_lossy(blob)
        .lines()
        .filter_map(|l| net::parse_net(l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(t: &str) -> IpNet {
        net::parse_net(t).unwrap()
    }

    fn feed() -> SourcePolicy {
        SourcePolicy {
            name: "f".into(),
            priority: 50,
            min_prefix_v4: 16,
            min_prefix_v6: 32,
            allow_private: false,
            ban_on_link: false,
            max_ttl: u32::MAX,
        }
    }

    #[test]
    fn the_verdict_names_the_rule_and_reads_the_same_everywhere() {
        let mut allow = Allowlist::new();
        allow.add(n("45.9.9.9"), AllowReason::Config);
        let p = feed();
        let refused = |t: &str| admit(&p, &allow, &n(t)).unwrap_err().to_string();
        assert_eq!(
            refused("0.0.0.0/0"),
            "refused: 0.0.0.0/0 is the whole address space"
        );
        assert_eq!(
            refused("8.0.0.0/7"),
            "refused: 8.0.0.0/7 is broader than the source's min_prefix (/16 for f)"
        );
        assert_eq!(
            refused("127.0.0.1"),
            "refused: 127.0.0.1 is loopback, link-local, multicast or reserved space"
        );
        assert_eq!(
            refused("10.1.2.3"),
            "refused: 10.1.2.3 is private address space, which f may not ban (allow_private)"
        );
        assert_eq!(
            refused("45.9.9.9"),
            "refused: 45.9.9.9 is protected by 45.9.9.9 (allowlist in config)"
        );
        // Partly allowlisted: admitted, and the rule that carves it is named.
        let partly = admit(&p, &allow, &n("45.9.9.0/24")).unwrap();
        assert_eq!(partly.map(|r| r.net), Some(n("45.9.9.9")));
        assert_eq!(admit(&p, &allow, &n("45.1.2.3")).unwrap(), None);
        // The counts in a sync report use the same words.
        assert!(refused("8.0.0.0/7").contains(Rejection::TooBroad.describe()));
    }

    #[test]
    fn ipv6_forms_that_carry_ipv4_are_judged_by_the_ipv4_they_carry() {
        let mut allow = Allowlist::new();
        allow.add(n("192.0.2.1"), AllowReason::Config);
        allow.add(n("198.51.100.0/24"), AllowReason::OwnAddress("eth0".into()));
        let mut p = feed();
        p.min_prefix_v6 = 8;
        // NAT64, 6to4 and Teredo forms of an allowlisted IPv4 address are protected.
        for v6 in [
            "64:ff9b::c000:201",
            "64:ff9b::c000:200/120",
            "2002:c000:201::/48",
            "2002:c000:201:1::1",
            "2001:0:c000:201::/64",
            "64:ff9b::c633:6405",
        ] {
            let refused = admit(&p, &allow, &n(v6)).unwrap_err();
            assert!(
                matches!(refused, Refusal::Allowlisted { .. }),
                "{v6}: {refused}"
            );
            assert_eq!(allow.subtract(&n(v6)), Some(Vec::new()), "{v6}");
        }
        // Other IPv4 behind them is judged like any address.
        assert_eq!(admit(&p, &allow, &n("64:ff9b::2d00:1")).unwrap(), None);
        assert_eq!(admit(&p, &allow, &n("2002:2d00:1::/48")).unwrap(), None);
        // IPv4-mapped forms become IPv4 when parsed: the allowlist sees them directly.
        assert_eq!(n("::ffff:192.0.2.1"), n("192.0.2.1"));
        assert!(admit(&p, &allow, &n("::ffff:192.0.2.1")).is_err());
        // A prefix that covers a whole translation range is refused for every source.
        for (v6, range) in [
            ("64:ff9b::/96", "NAT64 64:ff9b::/96"),
            ("2002::/16", "6to4 2002::/16"),
            ("2001::/32", "Teredo 2001::/32"),
            ("2000::/8", "6to4 2002::/16"),
            ("64:ff9b:1::/48", "NAT64 local-use 64:ff9b:1::/48"),
        ] {
            let r = admit(&p, &allow, &n(v6)).unwrap_err().to_string();
            assert!(
                r.contains("carries IPv4 addresses") && r.contains(range),
                "{v6}: {r}"
            );
        }
    }

    #[test]
    fn the_networks_own_nat64_prefixes_carry_ipv4_and_are_never_banned_whole() {
        let mut allow = Allowlist::new();
        allow.add(n("192.0.2.1"), AllowReason::Config);
        let prefixes = [
            net::Nat64::new(n("2001:db8:64::/96")).unwrap(),
            net::Nat64::new(n("64:ff9b:1:ab::/64")).unwrap(),
        ];
        allow.set_nat64(&prefixes);
        let mut p = feed();
        p.min_prefix_v6 = 8;
        for v6 in ["2001:db8:64::c000:201", "64:ff9b:1:ab:c0:2:100:0"] {
            let refused = admit(&p, &allow, &n(v6)).unwrap_err();
            assert_eq!(
                refused.to_string(),
                format!("refused: {v6} is protected by 192.0.2.1 (allowlist in config)")
            );
        }
        assert_eq!(admit(&p, &allow, &n("2001:db8:64::2d00:1")).unwrap(), None);
        for (v6, range) in [
            (
                "2001:db8:64::/96",
                "NAT64 2001:db8:64::/96 in nat64_prefixes",
            ),
            ("2001:db8::/32", "NAT64 2001:db8:64::/96 in nat64_prefixes"),
            (
                "64:ff9b:1:ab::/70",
                "NAT64 64:ff9b:1:ab::/64 in nat64_prefixes",
            ),
            ("64:ff9b:1::/48", "NAT64 local-use 64:ff9b:1::/48"),
        ] {
            let r = admit(&p, &allow, &n(v6)).unwrap_err();
            assert!(
                matches!(
                    r,
                    Refusal::Rule {
                        rule: Rejection::Translation,
                        ..
                    }
                ),
                "{v6}: {r}"
            );
            assert_eq!(
                r.to_string(),
                format!(
                    "refused: {v6} is a whole IPv6 range that carries IPv4 addresses ({range})"
                )
            );
            assert_eq!(rule(&p, &allow, &n(v6)), Some(Rejection::Translation));
        }
        // Without the configuration, the same addresses are plain IPv6.
        let plain = Allowlist::new();
        assert_eq!(admit(&p, &plain, &n("2001:db8:64::/96")).unwrap(), None);
        assert_eq!(
            admit(&p, &plain, &n("2001:db8:64::c000:201")).unwrap(),
            None
        );
    }

    #[test]
    fn on_link_networks_stop_feeds_and_yield_to_sources_that_may_ban_there() {
        let mut allow = Allowlist::new();
        allow.add(n("45.67.89.0/24"), AllowReason::OnLink("eth0".into()));
        allow.add(n("45.67.89.1"), AllowReason::OwnAddress("eth0".into()));
        allow.add(
            n("45.50.0.1"),
            AllowReason::AsteriskPeer("sip.conf [t] host".into()),
        );
        let feed = feed();
        let lan_ok = SourcePolicy {
            ban_on_link: true,
            ..feed.clone()
        };
        // A feed may not ban on the host's own network, and the verdict says why.
        assert_eq!(
            admit(&feed, &allow, &n("45.67.89.50")).unwrap_err().to_string(),
            "refused: 45.67.89.50 is protected by 45.67.89.0/24 (on-link network of interface eth0)"
        );
        // A broader listing loses the on-link part only.
        assert_eq!(
            allow.subtract_for(&n("45.67.88.0/23"), false),
            Some(vec![n("45.67.88.0/24")])
        );
        // A source that may ban on-link addresses: admitted, but never the host itself.
        assert_eq!(admit(&lan_ok, &allow, &n("45.67.89.50")).unwrap(), None);
        assert!(admit(&lan_ok, &allow, &n("45.67.89.1")).is_err());
        assert_eq!(
            allow
                .subtract_for(&n("45.67.89.0/24"), true)
                .map(|p| p.len()),
            Some(8)
        );
        // An Asterisk peer is protected from every source.
        assert_eq!(
            admit(&lan_ok, &allow, &n("45.50.0.1"))
                .unwrap_err()
                .to_string(),
            "refused: 45.50.0.1 is protected by 45.50.0.1 (Asterisk peer: sip.conf [t] host)"
        );
        assert_eq!(
            allow.on_link_hit(&n("45.67.89.50")).map(|r| r.net),
            Some(n("45.67.89.0/24"))
        );
        assert!(allow.hit_for(&n("45.67.89.50"), true).is_none());
        // A hard rule for the same prefix wins over the on-link one, whatever the order.
        let mut allow = Allowlist::new();
        allow.add(n("45.1.2.0/24"), AllowReason::OnLink("eth1".into()));
        allow.add(n("45.1.2.0/24"), AllowReason::Config);
        assert!(admit(&lan_ok, &allow, &n("45.1.2.3")).is_err());
        assert_eq!(allow.len(), 1);
        allow.add(n("45.1.2.0/24"), AllowReason::OnLink("eth1".into()));
        assert_eq!(allow.rules()[0].reason, AllowReason::Config);
    }

    #[test]
    fn refused_listings_keep_the_broadest_and_round_trip() {
        let mut nets: Vec<IpNet> = (0..300u32)
            .map(|i| n(&format!("9.{}.{}.0/24", i / 256, i % 256)))
            .collect();
        nets.push(n("8.0.0.0/7"));
        let blob = encode_refused(&mut nets);
        let back = decode_refused(&blob);
        assert_eq!(back.len(), KEEP_REFUSED);
        assert_eq!(back[0], n("8.0.0.0/7"));
        assert!(decode_refused(b"nonsense\n1.2.3.4\n").len() == 1);
    }
}
