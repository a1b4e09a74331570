//! The allowlist: prefixes that are never banned, each remembered with why it is there
//! (config, one of this host's own addresses, a feed's server), so `explain` and the plan can
//! name the rule that protected an address.
//!
//! Pure data and arithmetic: gathering the host's addresses is the caller's job (see
//! [`crate::hostaddr`]); this module must never do I/O.

use crate::net::{self, Family};
use ipnet::IpNet;
use serde::Serialize;
use std::fmt;

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
    #[serde(serialize_with = "crate::pipeline::decide::ser_net")]
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
