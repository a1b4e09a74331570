//! Read-only views of the state for people: `sipban list` and `sipban explain IP`.
//!
//! Both answer from the saved state with the current config's policies and allowlist applied,
//! the same way a sync would, so "why is this address (not) blocked?" has one answer. They
//! never write anything and never touch the network.

use crate::backend::Kernel;
use crate::config::Settings;
use crate::net::{self, Family};
use crate::pipeline::decide::{self, Decision, Entry};
use crate::pipeline::sync::Sources;
use crate::source::apiban;
use crate::store::Store;
use anyhow::Result;
use ipnet::IpNet;
use serde::Serialize;
use std::fmt;
use std::net::IpAddr;

pub use crate::clock::{civil, fmt_time};

/// The saved entries and what a sync would decide from them right now.
pub struct View {
    pub sources: Sources,
    pub entries: Vec<Entry>,
    pub decision: Decision,
    pub allow: decide::allow::Allowlist,
    pub has_state: bool,
}

pub fn view(settings: &Settings, now: i64) -> Result<View> {
    let store = Store::open_read_only(&settings.state_dir)?;
    let sources = Sources::from_settings(settings);
    let entries = match &store {
        Some(s) => {
            // A corrupt database is named (exit 6), never listed as if it were the state.
            s.verify()?;
            let mut e = s.load_entries(&sources.index())?;
            crate::pipeline::manual::Unbans::load(s)?.strip(&mut e);
            e
        }
        None => Vec::new(),
    };
    let (decision, allow) = crate::pipeline::decide_saved(settings, &sources, entries.clone(), now);
    Ok(View {
        sources,
        entries,
        decision,
        allow,
        has_state: store.is_some(),
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct ListRow {
    #[serde(skip)]
    key: (u8, u128, u8),
    pub net: String,
    pub sources: Vec<String>,
    pub last_seen: i64,
    pub expires: i64,
    /// Seconds until it expires (0 once expired).
    pub ttl_left: i64,
    pub in_set: bool,
    /// `in_set`; `in_set_in_part` (split around allowlisted addresses, the rest in the set);
    /// `refused` (by the allowlist: `refused_by` says why); `evicted` (over the cap, by
    /// higher-ranked entries).
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused_by: Option<String>,
}

/// Entries a sync would put in the sets (and, with `all`, those it holds but does not), one
/// row per prefix, optionally only those listed by `source`.
pub fn list(settings: &Settings, source: Option<&str>, now: i64) -> Result<Vec<ListRow>> {
    let v = view(settings, now)?;
    let in_set: std::collections::HashSet<ipnet::IpNet> = v
        .decision
        .desired_v4
        .iter()
        .chain(v.decision.desired_v6.iter())
        .map(|d| d.net)
        .collect();
    let names = v.sources.names();
    let mut rows = Vec::new();
    for e in &v.decision.entries {
        let srcs: Vec<String> = e
            .marks
            .iter()
            .filter_map(|m| names.get(m.source as usize).cloned())
            .collect();
        if let Some(want) = source {
            if !srcs.iter().any(|s| s == want) {
                continue;
            }
        }
        let hit = v.decision.allow_hits.iter().find(|h| h.listed == e.net);
        let listed = in_set.contains(&e.net);
        let state = match hit {
            _ if listed => "in_set",
            Some(h) if h.partial => "in_set_in_part",
            Some(_) => "refused",
            None => "evicted",
        };
        rows.push(ListRow {
            key: net::sort_key(&e.net),
            net: net::display_net(&e.net),
            sources: srcs,
            last_seen: e.marks.iter().map(|m| m.last_seen).max().unwrap_or(0),
            expires: e.expires(),
            ttl_left: (e.expires() - now).max(0),
            in_set: listed,
            state,
            refused_by: hit
                .filter(|_| !listed)
                .map(|h| format!("{} ({})", h.reason, net::display_net(&h.rule))),
        });
    }
    rows.sort_unstable_by_key(|r| r.key);
    Ok(rows)
}

#[derive(Clone, Debug, Serialize)]
pub struct Listing {
    pub source: String,
    pub entry: String,
    pub first_seen: i64,
    pub last_seen: i64,
    pub expires: i64,
    pub ttl_left: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    /// The address asked about (the network address, for a prefix).
    pub ip: IpAddr,
    /// What was asked about: an address, or a prefix (`sipban explain 8.0.0.0/7`).
    #[serde(serialize_with = "crate::model::ser_net")]
    pub target: IpNet,
    pub listings: Vec<Listing>,
    /// The kernel set entries a sync would hold for it (possibly a split piece of a listing).
    pub in_set: Vec<String>,
    pub set_name: String,
    /// The allowlist rule that protects it from every source, if any.
    pub allowlisted_by: Option<String>,
    /// The network of this host it is on, if any: feeds never ban there, the log detectors
    /// only with `ban_on_link: true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_link: Option<String>,
    /// Whether the log detectors may ban it there (`ban_on_link`).
    #[serde(skip)]
    pub ban_on_link: bool,
    /// Address space rules that keep some or all sources from banning it.
    pub range_note: Option<String>,
    /// Whether the live kernel set holds it: `None` when the kernel cannot be read.
    pub kernel: Option<bool>,
    /// Why the kernel could not be read (not root, ipset not installed, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_error: Option<String>,
    pub has_state: bool,
    /// `sipban unban`: when, and the feeds that must drop it before a listing counts afresh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manual_unban: Option<crate::pipeline::manual::Unban>,
    /// Listings of it that the admission gate refused in the sources' latest runs.
    pub refused: Vec<RefusedListing>,
    /// What the gate answers to `sipban ban` of this address, when it refuses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ban_refused: Option<String>,
}

/// A listing the gate refused (a prefix broader than the source may ban, say).
#[derive(Clone, Debug, Serialize)]
pub struct RefusedListing {
    pub source: String,
    pub entry: String,
    /// The gate's reason, in its words.
    pub reason: String,
}

/// The refused listings that overlap `target`, judged again by the gate with today's policies
/// (a listing that today's config would admit is not shown as refused).
fn refused_listings(
    store: Option<&Store>,
    v: &View,
    target: &IpNet,
) -> Result<Vec<RefusedListing>> {
    let Some(store) = store else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for policy in &v.sources.policies {
        let Some(blob) = store.blob(&crate::pipeline::gate::refused_key(&policy.name))? else {
            continue;
        };
        for net in crate::pipeline::gate::decode_refused(&blob) {
            if !net::overlaps(&net, target) {
                continue;
            }
            if let Err(r) = crate::pipeline::gate::admit(policy, &v.allow, &net) {
                out.push(RefusedListing {
                    source: policy.name.clone(),
                    entry: net::display_net(&net),
                    reason: r.to_string(),
                });
            }
        }
    }
    Ok(out)
}

/// Everything the state and the gate say about an address or a prefix: the listings that
/// overlap it, the refusals, the allowlist, the set and the live kernel set.
pub fn explain(
    settings: &Settings,
    target: IpNet,
    ipset: &Kernel,
    now: i64,
) -> Result<Explanation> {
    let host = target;
    let ip = target.network();
    let v = view(settings, now)?;
    let names = v.sources.names();
    let mut listings = Vec::new();
    for e in &v.entries {
        if !net::overlaps(&e.net, &host) {
            continue;
        }
        for m in &e.marks {
            let Some(source) = names.get(m.source as usize) else {
                continue;
            };
            if m.expires <= now {
                continue;
            }
            listings.push(Listing {
                source: source.clone(),
                entry: net::display_net(&e.net),
                first_seen: m.first_seen,
                last_seen: m.last_seen,
                expires: m.expires,
                ttl_left: m.expires - now,
            });
        }
    }
    let family = Family::of(&host);
    let in_set: Vec<String> = v
        .decision
        .desired(family)
        .iter()
        .filter(|d| net::overlaps(&d.net, &host))
        .map(|d| net::display_net(&d.net))
        .collect();
    let rule_text = |r: &crate::pipeline::gate::AllowRule| {
        format!("{} ({})", net::display_net(&r.net), r.reason)
    };
    let allowlisted_by = v.allow.hit_for(&host, true).map(rule_text);
    let on_link = v.allow.on_link_hit(&host).map(rule_text);
    let range_note = if let Some(r) = net::special_range(&host) {
        Some(format!("{r}: no source may ban it"))
    } else {
        net::private_range(&host)
            .map(|r| format!("{r}: feeds may not ban it unless they set allow_private"))
    };
    let store = Store::open_read_only(&settings.state_dir)?;
    let manual_unban = match &store {
        Some(s) => crate::pipeline::manual::Unbans::load(s)?
            .get(&host)
            .cloned(),
        None => None,
    };
    let refused = refused_listings(store.as_ref(), &v, &host)?;
    let ban_refused =
        crate::pipeline::gate::admit(&crate::pipeline::manual::policy(), &v.allow, &host)
            .err()
            .map(|r| r.to_string());
    let set_name = settings.sets.get(family).name.clone();
    let spec = crate::backend::set_spec(settings, family);
    let (kernel, kernel_error) = match ipset.as_backend().read(&spec) {
        Ok(k) => (
            Some(k.members().iter().any(|(n, _)| net::overlaps(n, &host))),
            None,
        ),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(Explanation {
        ip,
        target,
        listings,
        in_set,
        set_name,
        allowlisted_by,
        on_link,
        ban_on_link: settings.ban_on_link,
        range_note,
        kernel,
        kernel_error,
        has_state: v.has_state,
        manual_unban,
        refused,
        ban_refused,
    })
}

impl Explanation {
    fn is_prefix(&self) -> bool {
        self.target.prefix_len() < self.target.max_prefix_len()
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}:", net::display_net(&self.target))?;
        if !self.has_state {
            writeln!(f, "  (no saved state yet: run `sipban sync` first)")?;
        }
        if self.listings.is_empty() && self.refused.is_empty() {
            writeln!(f, "  not listed by any source")?;
        }
        for r in &self.refused {
            writeln!(
                f,
                "  listed by {} as {}, and the gate {}",
                r.source, r.entry, r.reason
            )?;
        }
        if let Some(r) = &self.ban_refused {
            writeln!(f, "  gate: a ban would be {r}")?;
        }
        for l in &self.listings {
            writeln!(
                f,
                "  listed by {} as {}: first seen {}, last seen {}, {} left",
                l.source,
                l.entry,
                fmt_time(l.first_seen),
                fmt_time(l.last_seen),
                crate::clock::span(l.ttl_left)
            )?;
        }
        if let Some(a) = &self.allowlisted_by {
            writeln!(f, "  protected by the allowlist: {a}")?;
        }
        if let Some(o) = &self.on_link {
            writeln!(
                f,
                "  on this host's own network {o}: feeds never ban it, the log detectors {}",
                if self.ban_on_link {
                    "may (ban_on_link: true)"
                } else {
                    "only with ban_on_link: true"
                }
            )?;
        }
        if let Some(r) = &self.range_note {
            writeln!(f, "  address space: {r}")?;
        }
        if let Some(u) = &self.manual_unban {
            writeln!(
                f,
                "  unbanned by hand at {}: kept out until a source lists it afresh{}",
                fmt_time(u.at),
                if u.holders.is_empty() {
                    String::new()
                } else {
                    format!(" (feeds {} must drop it first)", u.holders.join(", "))
                }
            )?;
        }
        if self.in_set.is_empty() {
            if !self.listings.is_empty()
                && self.allowlisted_by.is_none()
                && self.on_link.is_none()
                && self.range_note.is_none()
            {
                writeln!(
                    f,
                    "  NOT in set {}: evicted over the cap by higher-ranked entries",
                    self.set_name
                )?;
            } else {
                writeln!(f, "  not in set {}", self.set_name)?;
            }
        } else {
            writeln!(
                f,
                "  in set {} as {}",
                self.set_name,
                self.in_set.join(", ")
            )?;
        }
        match self.kernel {
            Some(true) if self.is_prefix() => {
                writeln!(f, "  kernel: the live set holds entries that overlap it")?
            }
            Some(true) => writeln!(f, "  kernel: the live set holds it")?,
            Some(false) => writeln!(f, "  kernel: the live set does not hold it")?,
            None => writeln!(
                f,
                "  kernel: not readable ({})",
                self.kernel_error.as_deref().unwrap_or("unknown error")
            )?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times() {
        assert_eq!(super::fmt_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::fmt_time(1_795_270_000), "2026-11-21 14:06:40 UTC");
        assert_eq!(super::fmt_time(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}

/// `sipban check IP`: what APIBAN says and what the local state says.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub ip: IpAddr,
    pub apiban: apiban::RemoteCheck,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<Explanation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_error: Option<String>,
}

/// Ask APIBAN (when configured) and the local state about `ip`.
pub async fn check_report(
    settings: &Settings,
    ip: IpAddr,
    ipset: &Kernel,
    now: i64,
) -> CheckReport {
    let ip = net::canonical_ip(ip);
    let apiban = apiban::remote_check(settings.apiban.as_ref(), ip).await;
    let (local, local_error) = match explain(settings, net::host_net(ip), ipset, now) {
        Ok(x) => (Some(x), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    CheckReport {
        ip,
        apiban,
        local,
        local_error,
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.apiban {
            apiban::RemoteCheck::NotConfigured => {
                writeln!(f, "APIBAN: not asked (no apiban: section in the config)")?
            }
            apiban::RemoteCheck::Listed { id: Some(id) } => {
                writeln!(f, "APIBAN: {} is LISTED (ID {id})", self.ip)?
            }
            apiban::RemoteCheck::Listed { id: None } => {
                writeln!(f, "APIBAN: {} is LISTED", self.ip)?
            }
            apiban::RemoteCheck::NotListed => writeln!(f, "APIBAN: {} is not listed", self.ip)?,
            apiban::RemoteCheck::Error { message } => {
                writeln!(f, "APIBAN: could not ask: {message}")?
            }
        }
        write!(f, "local state: ")?;
        match (&self.local, &self.local_error) {
            (Some(x), _) => write!(f, "{x}"),
            (None, Some(e)) => writeln!(f, "could not be read: {e}"),
            (None, None) => writeln!(f, "could not be read"),
        }
    }
}
