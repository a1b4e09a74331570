//! Protected by default: the allowlist rules sipban derives from the host itself at every run,
//! and the warnings about local detections on the host's own networks.
//!
//! - The networks this host is on ([`hostaddr::on_link`], with `allow_own_addresses`): soft
//!   rules ([`AllowReason::OnLink`]) that no feed may cross, and a log detector only with
//!   `ban_on_link: true` ([`SourcePolicy::ban_on_link`]).
//! - The SIP/IAX2 peers in Asterisk's configuration ([`peers`], `protect_asterisk_peers`):
//!   hard rules. Literal addresses are read afresh at every run. Names are resolved in a
//!   sync's network phase ([`lookup`]), never under the apply lock; what they resolved to is
//!   saved in the state ([`PEERS_KEY`]), so the real-time pass, `ban`, `restore` and `explain`
//!   protect the same addresses with no lookup of their own. A name that does not resolve
//!   keeps the addresses it last had: an extra protected address is the fail-safe direction.
//!
//! This module must never look a name up under the apply lock, and never keep more of a
//! resolver's answer than the bounds of [`peers`].

use super::decide::Input;
use super::gate::{self, AllowReason, Allowlist, Refusal};
use super::summary::AllowSummary;
use super::Sources;
use crate::config::protect::Toggle;
use crate::config::Settings;
use crate::store::Store;
use crate::{hostaddr, net, peers};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

/// The state blob of the peer names and the addresses they last resolved to.
pub const PEERS_KEY: &str = "protect.asterisk_peers";
/// How long the lookups of all peer names may take (they run at once).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// How many on-link warnings one run prints and logs.
const MAX_WARNINGS: usize = 100;

/// Peer names and the addresses they last resolved to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    pub names: BTreeMap<String, Vec<IpAddr>>,
}

impl Resolved {
    /// What [`Resolved::encode`] wrote; an unreadable blob is an empty map, and bounds are
    /// applied again.
    pub fn decode(blob: &[u8]) -> Resolved {
        let mut r: Resolved = serde_json::from_slice(blob).unwrap_or_else(|e| {
            tracing::warn!(
                "the saved Asterisk peer addresses are unreadable ({e}); resolving afresh"
            );
            Resolved::default()
        });
        while r.names.len() > peers::MAX_NAMES {
            r.names.pop_last();
        }
        for addrs in r.names.values_mut() {
            *addrs = peers::addresses(addrs.iter().copied());
        }
        r
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A sync's lookups of the configured peer names.
#[derive(Clone, Debug, Default)]
pub struct Lookups {
    /// Each configured name with the first place that names it.
    pub names: Vec<(String, String)>,
    /// The names that resolved, and to what.
    pub answers: BTreeMap<String, Vec<IpAddr>>,
}

impl Lookups {
    /// What to save: this run's answers over `saved`; a name that did not resolve keeps its
    /// last addresses, and names no longer configured are dropped.
    pub fn merged(&self, saved: &Resolved) -> Resolved {
        let mut out = Resolved::default();
        for (name, _) in &self.names {
            if let Some(a) = self.answers.get(name).or_else(|| saved.names.get(name)) {
                out.names.insert(name.clone(), a.clone());
            }
        }
        out
    }
}

/// The peers in Asterisk's configuration, when `protect_asterisk_peers` asks for them: `auto`
/// is silent when the directory does not exist (no Asterisk here) and says why when it exists
/// but cannot be read; `true` always says why it cannot.
pub fn configured(settings: &Settings) -> Option<peers::Peers> {
    let dir = &settings.asterisk_config_dir;
    let toggle = settings.protect_asterisk_peers;
    match toggle {
        Toggle::Off => None,
        Toggle::Auto if !dir.exists() => None,
        Toggle::Auto | Toggle::On => Some(peers::collect(dir).unwrap_or_else(|e| peers::Peers {
            warnings: vec![format!(
                "Asterisk's configuration cannot be read, so its peers are not protected: {e} (protect_asterisk_peers: {})",
                if toggle == Toggle::On { "true" } else { "auto" }
            )],
            ..peers::Peers::default()
        })),
    }
}

/// Resolve the configured peer names (a sync's network phase; a few seconds at most).
pub async fn lookup(settings: &Settings) -> Option<Lookups> {
    let p = configured(settings)?;
    let names: Vec<(String, String)> = p
        .names()
        .into_iter()
        .map(|(n, w)| (n.to_string(), w.to_string()))
        .collect();
    let plain: Vec<String> = names.iter().map(|(n, _)| n.clone()).collect();
    let answers = peers::resolve(&plain, LOOKUP_TIMEOUT)
        .await
        .into_iter()
        .filter_map(|(n, a)| a.map(|a| (n, a)))
        .collect();
    Some(Lookups { names, answers })
}

/// The peer addresses saved by the last sync (none without a state).
pub fn load_saved(state_dir: &Path) -> Resolved {
    match Store::open_read_only(state_dir).and_then(|s| match s {
        Some(s) => s.blob(PEERS_KEY),
        None => Ok(None),
    }) {
        Ok(Some(blob)) => Resolved::decode(&blob),
        Ok(None) => Resolved::default(),
        Err(e) => {
            tracing::warn!("cannot read the saved Asterisk peer addresses: {e:#}");
            Resolved::default()
        }
    }
}

/// Add this host's networks (with `allow_own_addresses`) and Asterisk's peers (literals, and
/// names with the addresses in `resolved`) to `allow`.
pub fn add(
    settings: &Settings,
    allow: &mut Allowlist,
    summary: &mut AllowSummary,
    resolved: &Resolved,
) {
    if settings.allow_own_addresses {
        for o in hostaddr::on_link() {
            allow.add(o.net, AllowReason::OnLink(o.iface));
            summary.on_link += 1;
        }
    }
    let Some(p) = configured(settings) else {
        return;
    };
    summary.notes.extend(p.warnings.iter().cloned());
    for peer in &p.peers {
        if let peers::Host::Net(n) = peer.host {
            allow.add(n, AllowReason::AsteriskPeer(peer.what.clone()));
            summary.asterisk_peers += 1;
        }
    }
    for (name, what) in p.names() {
        for ip in resolved.names.get(name).into_iter().flatten() {
            allow.add(
                net::host_net(*ip),
                AllowReason::AsteriskPeer(format!("{what} {name}")),
            );
            summary.asterisk_peers += 1;
        }
    }
}

/// Add what this sync's lookups found (over what [`add`] took from the saved state).
pub fn add_fresh(allow: &mut Allowlist, lookups: &Lookups, summary: &mut AllowSummary) {
    for (name, what) in &lookups.names {
        for ip in lookups.answers.get(name).into_iter().flatten() {
            allow.add(
                net::host_net(*ip),
                AllowReason::AsteriskPeer(format!("{what} {name}")),
            );
            summary.asterisk_peers += 1;
        }
    }
}

/// One warning per local detection of an address on this host's own networks: whether it is
/// banned, and if not, why. Feeds and APIBAN are not warned about (they never ban there).
pub fn on_link_warnings(sources: &Sources, inputs: &[Input], allow: &Allowlist) -> Vec<String> {
    let mut out = Vec::new();
    let mut more = 0usize;
    for input in inputs {
        let i = input.source as usize;
        if !matches!(sources.kinds.get(i), Some(&"asterisk" | &"kernel")) {
            continue;
        }
        let Some(policy) = sources.policies.get(i) else {
            continue;
        };
        for s in input.sightings.iter() {
            let Some(rule) = allow.on_link_hit(&s.net) else {
                continue;
            };
            if out.len() >= MAX_WARNINGS {
                more += 1;
                continue;
            }
            let verdict = match gate::admit(policy, allow, &s.net) {
                Ok(_) => "banned (ban_on_link: true)".to_string(),
                Err(Refusal::Allowlisted { by, .. }) if by.is_on_link() => {
                    "not banned (the log detectors ban addresses there only with ban_on_link: true)"
                        .to_string()
                }
                Err(r) => format!("not banned ({r})"),
            };
            let iface = match &rule.reason {
                AllowReason::OnLink(i) => i.as_str(),
                _ => "?",
            };
            out.push(format!(
                "{} detected {} on this host's own network {} (interface {iface}): {verdict}",
                policy.name,
                net::display_net(&s.net),
                net::display_net(&rule.net),
            ));
        }
    }
    if more > 0 {
        out.push(format!(
            "... and {more} more detections on this host's own networks"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(t: &str) -> IpAddr {
        t.parse().unwrap()
    }

    #[test]
    fn lookups_keep_the_last_addresses_of_a_name_that_did_not_resolve() {
        let saved = Resolved {
            names: BTreeMap::from([
                ("a.example".to_string(), vec![ip("45.0.0.1")]),
                ("b.example".to_string(), vec![ip("45.0.0.2")]),
                ("gone.example".to_string(), vec![ip("45.0.0.3")]),
            ]),
        };
        let l = Lookups {
            names: ["a.example", "b.example", "c.example"]
                .iter()
                .map(|n| (n.to_string(), "sip.conf [x] host".to_string()))
                .collect(),
            answers: BTreeMap::from([("a.example".to_string(), vec![ip("45.0.0.9")])]),
        };
        let m = l.merged(&saved);
        assert_eq!(
            m.names,
            BTreeMap::from([
                ("a.example".to_string(), vec![ip("45.0.0.9")]),
                ("b.example".to_string(), vec![ip("45.0.0.2")]),
            ])
        );
        assert_eq!(Resolved::decode(&m.encode()), m);
        assert_eq!(Resolved::decode(b"junk"), Resolved::default());
        // A tampered blob is bounded again on the way in.
        let many: Vec<String> = (0..40).map(|i| format!("\"45.1.0.{i}\"")).collect();
        let blob = format!(
            "{{\"names\":{{\"x.example\":[{},\"127.0.0.1\"]}}}}",
            many.join(",")
        );
        let r = Resolved::decode(blob.as_bytes());
        assert_eq!(r.names["x.example"].len(), peers::MAX_ADDRS_PER_NAME);
    }
}
