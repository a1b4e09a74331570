//! The admission gate: may this address or prefix enter a set, and if not, why.
//!
//! Two halves, one verdict ([`admit`]):
//! - the **source's rules** ([`SourcePolicy::reject`]): the whole address space, loopback,
//!   link-local, multicast and reserved space never; private space only from a source allowed
//!   to ban it; nothing broader than the source's `min_prefix`;
//! - the **allowlist** ([`Allowlist`]): prefixes that are never banned, each remembered with
//!   why it is there (config, one of this host's own addresses, a feed's server, a manual
//!   allowlist entry), so the verdict can name the rule.
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
}

impl SourcePolicy {
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
        if !self.allow_private && net::private_range(net).is_some() {
            return Some(Rejection::Private);
        }
        None
    }
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
}

impl Rejection {
    pub fn describe(self) -> &'static str {
        match self {
            Rejection::Everything => "the whole address space",
            Rejection::TooBroad => "broader than min_prefix",
            Rejection::Special => "loopback/link-local/multicast/reserved",
            Rejection::Private => "private address space",
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
    /// `sipban unban --allow` (a persistent manual allowlist entry).
    Manual,
}

impl fmt::Display for AllowReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowReason::Config => f.write_str("allowlist in config"),
            AllowReason::OwnAddress(what) => write!(f, "own address ({what})"),
            AllowReason::FeedHost(feed) => write!(f, "server of feed {feed}"),
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

/// All allowlist rules, split by family for the subtraction.
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    rules: Vec<AllowRule>,
    v4: Vec<IpNet>,
    v6: Vec<IpNet>,
}

impl Allowlist {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, net: IpNet, reason: AllowReason) {
        if self.rules.iter().any(|r| r.net == net) {
            return;
        }
        match Family::of(&net) {
            Family::V4 => self.v4.push(net),
            Family::V6 => self.v6.push(net),
        }
        self.rules.push(AllowRule { net, reason });
    }

    pub fn rules(&self) -> &[AllowRule] {
        &self.rules
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn nets(&self, family: Family) -> &[IpNet] {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// The first rule that overlaps `net` (covers it, or lies inside it).
    pub fn hit(&self, net: &IpNet) -> Option<&AllowRule> {
        self.rules.iter().find(|r| net::overlaps(&r.net, net))
    }

    /// `net` minus every allowlisted prefix. `None` when nothing overlaps (the common, cheap
    /// case); `Some(pieces)` otherwise (empty when fully covered).
    pub fn subtract(&self, net: &IpNet) -> Option<Vec<IpNet>> {
        let nets = self.nets(Family::of(net));
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
                net, rule, source, min_prefix,
            } => {
                let n = net::display_net(net);
                match rule {
                    Rejection::Everything => write!(f, "refused: {n} is the whole address space"),
                    Rejection::TooBroad => write!(
                        f,
                        "refused: {n} is broader than the /{min_prefix} that {source} may ban (min_prefix)"
                    ),
                    Rejection::Special => write!(
                        f,
                        "refused: {n} is loopback, link-local, multicast or reserved space"
                    ),
                    Rejection::Private => write!(
                        f,
                        "refused: {n} is private address space, which {source} may not ban (allow_private)"
                    ),
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
    if let Some(rule) = policy.reject(net) {
        return Err(Refusal::Rule {
            net: *net,
            rule,
            source: policy.name.clone(),
            min_prefix: policy.min_prefix(Family::of(net)),
        });
    }
    match allow.subtract(net) {
        None => Ok(None),
        Some(pieces) => {
            let by = allow.hit(net).cloned();
            match (pieces.is_empty(), by) {
                (true, Some(by)) => Err(Refusal::Allowlisted { net: *net, by }),
                (_, by) => Ok(by.and_then(|b| allow.rules().iter().find(|r| r.net == b.net))),
            }
        }
    }
}
