//! The pipeline: gather → gate → decide → plan → apply → persist, assembled once.
//!
//! Every entry point that can change a kernel set goes through here: `sync` ([`sync`]), the
//! daemon's real-time pass ([`fast`]), `ban`/`unban` ([`manual`]) and `restore`
//! ([`restore`]); the read-only views (`list`, `explain`, `status`) ask it the same questions
//! through the same [`gate`] and [`decide`], so "why is this address (not) blocked?" has one
//! answer.
//!
//! - [`gate`]: the one admission gate (allowlist, own addresses, address space, prefix guards),
//!   with a verdict and a reason in one wording.
//! - [`decide`]: the pure decision (provenance, TTLs, priorities, cap) and the plan.
//! - [`ceiling`]: the ceiling on what all sources together may cover (`max_total_coverage`).
//! - [`dirs`]: the directories a run writes into, refused when others may write there.
//! - [`protect`]: what is protected by default (this host's networks, Asterisk's peers).
//! - [`export`]: own detections written as a feed (`sipban export`, `export:`).

//! - [`sync`], [`fast`], [`manual`], [`restore`]: the entry points.
//!
//! This module must never let an address reach a set without the gate's verdict, never hold
//! the apply lock across network I/O, and never write the kernel and the state in an order
//! that a crash could leave claiming more than the kernel holds.

pub mod ceiling;
pub mod decide;
pub mod detect;
pub mod dirs;
pub mod export;
pub mod fast;
pub mod gate;
pub mod gather;
pub mod manual;
pub mod persist;
pub mod protect;
pub mod restore;
pub mod summary;
pub mod sync;

use crate::config::Settings;
use crate::hostaddr;
use crate::net;
use crate::source::{apiban, crowdsec, kernlog};
use decide::{Caps, Decision, Entry, SourcePolicy};
use gate::{AllowReason, Allowlist};
use std::collections::HashMap;
use summary::AllowSummary;

/// The source of the entries taken in from the kernel sets after the state was rebuilt.
pub const RECOVERED: &str = "recovered";

/// The configured sources in a fixed order; decide refers to them by index.
pub struct Sources {
    pub policies: Vec<SourcePolicy>,
    pub kinds: Vec<&'static str>,
}

impl Sources {
    pub fn from_settings(settings: &Settings) -> Sources {
        let mut policies = Vec::new();
        let mut kinds = Vec::new();
        for f in &settings.feeds {
            policies.push(SourcePolicy::for_feed(f));
            kinds.push("feed");
        }
        if let Some(a) = &settings.apiban {
            // APIBAN lists single hosts.
            policies.push(SourcePolicy {
                name: apiban::SOURCE.to_string(),
                priority: a.priority,
                min_prefix_v4: 32,
                min_prefix_v6: 128,
                allow_private: false,
                ban_on_link: false,
                max_ttl: a.ttl,
            });
            kinds.push("apiban");
        }
        if let Some(c) = &settings.crowdsec {
            // A LAPI's Ip and Range decisions: prefixes down to `min_prefix_*`, public space
            // only (a LAN address in a shared LAPI is another site's LAN), each entry for the
            // decision's remaining duration (at most `max_ttl`).
            policies.push(SourcePolicy {
                name: crowdsec::SOURCE.to_string(),
                priority: c.priority,
                min_prefix_v4: c.min_prefix_v4,
                min_prefix_v6: c.min_prefix_v6,
                allow_private: false,
                ban_on_link: false,
                max_ttl: c.max_ttl,
            });
            kinds.push("crowdsec");
        }
        if let Some(a) = &settings.asterisk {
            // Local detections: single hosts, private space included (a compromised phone on
            // the LAN is a real attacker; the allowlist still protects what the admin listed),
            // this host's own networks only when the admin opts in (`ban_on_link`).
            policies.push(SourcePolicy {
                name: detect::ASTERISK.to_string(),
                priority: a.priority.min(u32::from(crate::config::MAX_PRIORITY)) as u16,
                min_prefix_v4: 32,
                min_prefix_v6: 128,
                allow_private: true,
                ban_on_link: settings.ban_on_link,
                // Repeat offenders are banned longer, up to `bantime_increment.max`.
                max_ttl: a.bantime.max(a.increment_max),
            });
            kinds.push("asterisk");
        }
        if let Some(k) = &settings.kernel_log {
            // Port probers seen by this host's firewall: single hosts, LAN ones included.
            policies.push(SourcePolicy {
                name: kernlog::SOURCE.to_string(),
                priority: k.priority,
                min_prefix_v4: 32,
                min_prefix_v6: 128,
                allow_private: true,
                ban_on_link: settings.ban_on_link,
                max_ttl: k.ttl,
            });
            kinds.push("kernel");
        }
        if let Some(w) = &settings.sip_wire {
            // SIP clients seen on the wire by the daemon (HEP, live capture): single hosts, as
            // the log detectors' (the sender is the packet's source, never a header).
            policies.push(SourcePolicy {
                name: detect::SIP_WIRE.to_string(),
                priority: w.priority.min(crate::config::MAX_PRIORITY),
                min_prefix_v4: 32,
                min_prefix_v6: 128,
                allow_private: true,
                ban_on_link: settings.ban_on_link,
                max_ttl: w.bantime,
            });
            kinds.push("sip_wire");
        }
        // Manual bans (`sipban ban`): always registered, after every configured source, so sync keeps their marks.
        policies.push(manual::policy());
        kinds.push("manual");
        // What a sync took in from the live kernel sets after the state database was lost
        // (see `sync::recover_kernel`): lowest priority, so the first to go over the cap, and
        // never on this host's networks; each entry keeps the timeout the kernel had left.
        policies.push(SourcePolicy {
            name: RECOVERED.to_string(),
            priority: 0,
            min_prefix_v4: 8,
            min_prefix_v6: 16,
            allow_private: true,
            ban_on_link: false,
            // Bounded by what the kernel had left (at most ipset's 24.8 days).
            max_ttl: u32::MAX,
        });
        kinds.push("recovered");
        Sources { policies, kinds }
    }

    pub fn index(&self) -> HashMap<String, u16> {
        self.policies
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), i as u16))
            .collect()
    }

    /// Per source: stored packed (a feed's complete listing) rather than as rows.
    pub fn packed(&self) -> Vec<bool> {
        self.kinds.iter().map(|k| *k == "feed").collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.policies.iter().map(|p| p.name.clone()).collect()
    }
}

/// The caps from the config.
pub fn caps(settings: &Settings) -> Caps {
    Caps {
        v4: settings.sets.v4.cap as usize,
        v6: settings.sets.v6.cap as usize,
    }
}

/// The allowlist: config, manual, own addresses, DNS resolvers and this host's networks (when
/// enabled), Asterisk's peers (see [`protect`]). A sync adds the feed servers and the peer
/// names it resolved afresh.
pub fn base_allowlist(settings: &Settings, summary: &mut AllowSummary) -> Allowlist {
    let mut allow = Allowlist::new();
    allow.set_nat64(&settings.nat64_prefixes);
    for n in &settings.allowlist {
        allow.add(*n, AllowReason::Config);
        summary.config += 1;
    }
    // `sipban unban --allow` entries, from the saved state.
    manual::add_allowlist(&settings.state_dir, &mut allow);
    if settings.allow_own_addresses {
        for a in hostaddr::own_addresses() {
            allow.add(net::host_net(a.ip), AllowReason::OwnAddress(a.what));
            summary.own_addresses += 1;
        }
        // Banning the resolver would leave the next sync unable to resolve any feed host.
        for r in hostaddr::resolvers() {
            allow.add(net::host_net(r.ip), AllowReason::Resolver(r.what));
            summary.resolvers += 1;
        }
    }
    protect::add(
        settings,
        &mut allow,
        summary,
        &protect::load_saved(&settings.state_dir),
    );
    allow
}

/// What the saved entries decide right now, with no new sightings: the allowlist a sync would
/// use (less the feed servers, which only a sync resolves), the caps, expiry. `ban`, `restore`
/// and the read-only views see the state through this.
pub fn decide_saved(
    settings: &Settings,
    sources: &Sources,
    entries: Vec<Entry>,
    now: i64,
) -> (Decision, Allowlist) {
    let mut summary = AllowSummary::default();
    let allow = base_allowlist(settings, &mut summary);
    let decision = decide::decide(
        entries,
        Vec::new(),
        &sources.policies,
        &allow,
        caps(settings),
        now,
    );
    (decision, allow)
}
