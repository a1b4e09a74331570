//! Manual control: `sipban ban IP [--ttl D]` and `sipban unban IP [--allow]`.
//!
//! * A **ban** is a mark of the built-in source `manual` in the `entries` table, like any
//!   source's, with a priority above every configured source ([`PRIORITY`], "pinned": it is the
//!   last to go over the cap). No feed refreshes it; it lives until its TTL (default
//!   [`DEFAULT_TTL`], a year; the kernel timeout is capped at ipset's 24.8 days and every sync
//!   refreshes it).
//! * An **unban** removes every mark of that exact prefix and records an *unban* (a tombstone
//!   with a time). Until a source lists the prefix *afresh*, its sightings are dropped before
//!   decide: an additive source (Asterisk, APIBAN) lists it afresh with evidence newer than
//!   the unban; a feed (a complete list) must first drop it from a download and list it again
//!   later, so a feed that still lists it does not undo the unban an hour later. `--allow`
//!   also adds a persistent allowlist entry ([`AllowReason::Manual`]); a later `sipban ban`
//!   of the same prefix removes it again (the admin changed their mind).
//!
//! Requests travel as small JSON files in `state_dir/manual/` (written by rename), so they
//! never race a run: whoever holds the run lock applies them, the command itself when it can
//! take the lock, or the daemon, which watches the directory, or the next `sipban sync`.
//! The command waits a few seconds for a running daemon to pick its request up.
//!
//! This module must never apply a ban that the allowlist or the own addresses forbid (decide
//! is the judge), and never write the state without holding the run lock.

use crate::backend::plan;
use crate::backend::SetBackend;
use crate::config::{Settings, MAX_PRIORITY};
use crate::lock::{self, LockError};
use crate::model::Entry;
use crate::net::{self, Family};
use crate::pipeline::decide::{self, Input, NetMap, SourcePolicy};
use crate::pipeline::gate::{self, AllowReason, Allowlist, Refusal};
use crate::pipeline::sync::{self, Sources};
use crate::store::manual::ManualWrite;
use crate::store::{RunCommit, Store};
use anyhow::{Context, Result};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The source name of manual bans.
pub const SOURCE: &str = crate::store::manual::SOURCE;
/// Above every configured source: manual bans are evicted last.
pub const PRIORITY: u16 = MAX_PRIORITY + 1;
/// `sipban ban` without `--ttl`: a year.
pub const DEFAULT_TTL: u32 = 365 * 86_400;
/// Where requests wait for the lock holder.
pub const REQUEST_DIR: &str = "manual";
/// How long `ban`/`unban` wait for another writer's apply step.
pub const APPLY_WAIT: Duration = crate::lock::APPLY_WAIT;
/// At most this many unbans are remembered (the oldest go first).
const MAX_UNBANS: usize = 65_536;

/// The decide policy of manual bans: hosts and prefixes down to /8 (v4) and /16 (v6),
/// private space and this host's own networks included (the admin decides); the allowlist
/// still wins.
pub fn policy() -> SourcePolicy {
    SourcePolicy {
        name: SOURCE.to_string(),
        priority: PRIORITY,
        min_prefix_v4: 8,
        min_prefix_v6: 16,
        allow_private: true,
        ban_on_link: true,
        // Each ban has its own `--ttl`, up to the largest a u32 holds.
        max_ttl: u32::MAX,
    }
}

/// One manual request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Ban {
        #[serde(with = "net_text")]
        net: IpNet,
        ttl: u32,
        at: i64,
    },
    Unban {
        #[serde(with = "net_text")]
        net: IpNet,
        allow: bool,
        at: i64,
    },
}

mod net_text {
    use ipnet::IpNet;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(n: &IpNet, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::net::display_net(n))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
        let t = String::deserialize(d)?;
        crate::net::parse_net(&t).map_err(serde::de::Error::custom)
    }
}

impl Request {
    pub fn net(&self) -> IpNet {
        match self {
            Request::Ban { net, .. } | Request::Unban { net, .. } => *net,
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Ban { net, ttl, .. } => write!(
                f,
                "ban {} for {}",
                net::display_net(net),
                crate::config::human_duration(u64::from(*ttl))
            ),
            Request::Unban { net, allow, .. } => write!(
                f,
                "unban {}{}",
                net::display_net(net),
                if *allow { " and allowlist it" } else { "" }
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// request files

fn request_dir(state_dir: &Path) -> PathBuf {
    state_dir.join(REQUEST_DIR)
}

/// Queue a request (atomically: temporary file, fsync, rename). Returns its path.
pub fn queue(state_dir: &Path, req: &Request) -> Result<PathBuf> {
    let dir = request_dir(state_dir);
    crate::fsio::create_dir(&dir).with_context(|| {
        format!(
            "creating {} (manual bans need write access to the state: run as root)",
            dir.display()
        )
    })?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let name = format!("{nanos:024}-{}.json", std::process::id());
    let path = dir.join(&name);
    let body = serde_json::to_vec(req).context("encoding the request")?;
    crate::fsio::write_atomic(&path, &body)?;
    Ok(path)
}

/// Queued requests, oldest first. Unreadable files are skipped with a warning (and left for
/// the admin to look at).
fn pending(state_dir: &Path) -> Result<Vec<(PathBuf, Request)>> {
    let dir = request_dir(state_dir);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.with_context(|| format!("reading {}", dir.display()))?;
        let path = ent.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Request>(&b).map_err(|e| e.to_string()))
        {
            Ok(r) => out.push((path, r)),
            Err(e) => tracing::warn!("skipping manual request {}: {e}", path.display()),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// the state: unbans and the manual allowlist (tables in the store, `store::manual`)

pub use crate::store::manual::Unban;

/// The remembered unbans, and the sightings they keep out.
#[derive(Clone, Debug, Default)]
pub struct Unbans {
    map: NetMap<Unban>,
    changed: Vec<IpNet>,
    lifted: Vec<IpNet>,
    /// Sightings dropped by [`Unbans::filter`].
    pub dropped: usize,
}

impl Unbans {
    /// The unbans the state remembers (none without a state table).
    pub fn load(store: &Store) -> Result<Unbans> {
        let mut u = Unbans::default();
        for (n, unban) in store.manual_unbans()? {
            u.map.insert(n, unban);
        }
        Ok(u)
    }

    pub fn get(&self, n: &IpNet) -> Option<&Unban> {
        self.map.get(n)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Drop the stored marks of unbanned prefixes that predate their unban. The unban deletes
    /// the prefix's rows, but a feed's listing is stored packed (see `store`) and still holds
    /// it until the feed is downloaded again; this keeps it out meanwhile. Returns how many
    /// marks were dropped.
    pub fn strip(&self, entries: &mut [crate::pipeline::decide::Entry]) -> usize {
        if self.map.is_empty() {
            return 0;
        }
        let mut dropped = 0;
        for e in entries.iter_mut() {
            if let Some(u) = self.map.get(&e.net) {
                let before = e.marks.len();
                e.marks.retain(|m| m.last_seen > u.at);
                dropped += before - e.marks.len();
            }
        }
        dropped
    }

    /// Drop the sightings of unbanned prefixes that are not afresh, lift the unbans that are
    /// listed afresh, and forget feeds that no longer list an unbanned prefix.
    pub fn filter(&mut self, inputs: &mut [Input], sources: &Sources) {
        if self.map.is_empty() {
            return;
        }
        for input in inputs.iter_mut() {
            let Some(policy) = sources.policies.get(input.source as usize) else {
                continue;
            };
            let name = policy.name.as_str();
            if input.complete {
                let listed: decide::NetSet = input.sightings.iter().map(|s| s.net).collect();
                for (n, u) in self.map.iter_mut() {
                    if !listed.contains(n) && u.holders.iter().any(|h| h == name) {
                        u.holders.retain(|h| h != name);
                        self.changed.push(*n);
                    }
                }
            }
            let map = &self.map;
            let mut lift = Vec::new();
            let before = input.sightings.len();
            input.sightings.retain(|s| match map.get(&s.net) {
                None => true,
                Some(u) if s.seen >= u.at && !u.holders.iter().any(|h| h == name) => {
                    lift.push(s.net);
                    true
                }
                Some(_) => false,
            });
            self.dropped += before - input.sightings.len();
            for n in lift {
                if self.map.remove(&n).is_some() {
                    tracing::info!(
                        "{} is listed afresh by {name}: its manual unban is lifted",
                        net::display_net(&n)
                    );
                    self.lifted.push(n);
                }
            }
        }
    }

    /// Persist what [`Unbans::filter`] changed (nothing when nothing changed).
    pub fn save(&self, store: &mut Store) -> Result<()> {
        if self.changed.is_empty() && self.lifted.is_empty() {
            return Ok(());
        }
        let changed: Vec<(IpNet, &[String])> = self
            .changed
            .iter()
            .filter_map(|n| self.map.get(n).map(|u| (*n, u.holders.as_slice())))
            .collect();
        store.save_manual_unbans(&self.lifted, &changed)
    }
}

/// The manual allowlist from the saved state (empty without one). Read-only.
pub fn allowlist(state_dir: &Path) -> Result<Vec<IpNet>> {
    let Some(store) = Store::open_read_only(state_dir)? else {
        return Ok(Vec::new());
    };
    store.manual_allowlist()
}

/// Add the manual allowlist to `allow` (called by [`sync::base_allowlist`], so every run,
/// `list` and `explain` see it). A state that cannot be read is a loud warning: the sync
/// itself fails on it anyway.
pub fn add_allowlist(state_dir: &Path, allow: &mut Allowlist) -> usize {
    match allowlist(state_dir) {
        Ok(nets) => {
            for n in &nets {
                allow.add(*n, AllowReason::Manual);
            }
            nets.len()
        }
        Err(e) => {
            tracing::warn!("cannot read the manual allowlist: {e:#}");
            0
        }
    }
}

// ---------------------------------------------------------------------------------------------
// applying requests

/// What applying requests did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Applied {
    pub requests: Vec<String>,
    /// Kernel changes made right away (empty when the kernel was not touched).
    pub kernel_added: Vec<String>,
    pub kernel_deleted: Vec<String>,
    /// Why the kernel was not changed now (the next sync applies the state).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_note: Option<String>,
    /// For an unban: other entries that still cover the address (a feed's prefix, say).
    pub still_covered_by: Vec<String>,
}

/// Apply queued requests to the state (one transaction, then the files are removed) and, when
/// a backend is given, bring the kernel sets in line for the prefixes they touched, creating a
/// set that does not exist yet. The caller holds the apply lock.
pub fn apply_queued(
    store: &mut Store,
    settings: &Settings,
    backend: Option<&dyn SetBackend>,
    now: i64,
) -> Result<Option<Applied>> {
    let reqs = pending(&settings.state_dir)?;
    if reqs.is_empty() {
        return Ok(None);
    }
    let sources = Sources::from_settings(settings);
    let index = sources.index();
    if !index.contains_key(SOURCE) {
        anyhow::bail!("internal: the manual source is not registered");
    }
    let mut applied = Applied::default();
    let (touched, unbanned) = save_requests(store, &sources, &reqs, &mut applied, now)?;
    for (path, _) in &reqs {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!("cannot remove applied request {}: {e}", path.display());
        }
    }
    let mut entries = store.load_entries(&index)?;
    Unbans::load(store)?.strip(&mut entries);
    applied.still_covered_by = still_covered(&entries, &unbanned, &sources, now);
    let Some(backend) = backend else {
        applied.kernel_note = Some("the kernel was not touched; the next sync applies it".into());
        return Ok(Some(applied));
    };
    let (decision, _) = super::decide_saved(settings, &sources, entries, now);
    apply_touched(
        store,
        settings,
        backend,
        &decision,
        &touched,
        &mut applied,
        now,
    )?;
    // Keep the state's entries in line with the decision (expired marks dropped), like a run.
    store
        .commit_run(&RunCommit {
            entries: &decision.entries,
            source_names: &sources.names(),
            packed: &sources.packed(),
            feeds: &[],
            blobs: &[],
            run: None,
        })
        .context("saving the state")?;
    Ok(Some(applied))
}

/// Write the requests into the state in one transaction; returns the prefixes they touched
/// and those unbanned.
fn save_requests(
    store: &mut Store,
    sources: &Sources,
    reqs: &[(PathBuf, Request)],
    applied: &mut Applied,
    now: i64,
) -> Result<(Vec<IpNet>, Vec<IpNet>)> {
    // Which feeds list each prefix now (through the store's loader: feed listings are
    // stored packed, not as rows). An unbanned prefix stays out until they drop it.
    let names = sources.names();
    let mut feeds_listing: NetMap<Vec<String>> = NetMap::default();
    for e in store.load_entries(&sources.index())? {
        for m in e.marks.iter().filter(|m| m.expires > now) {
            let is_feed = sources
                .kinds
                .get(m.source as usize)
                .is_some_and(|k| *k == "feed");
            if let (true, Some(name)) = (is_feed, names.get(m.source as usize)) {
                feeds_listing.entry(e.net).or_default().push(name.clone());
            }
        }
    }
    let mut touched: Vec<IpNet> = Vec::new();
    let mut unbanned: Vec<IpNet> = Vec::new();
    // Which feeds list each unbanned prefix now: they must drop it before listing it afresh.
    let holders: Vec<Vec<String>> = reqs
        .iter()
        .map(|(_, req)| {
            let mut h = feeds_listing.get(&req.net()).cloned().unwrap_or_default();
            h.sort();
            h.dedup();
            h
        })
        .collect();
    let mut writes = Vec::with_capacity(reqs.len());
    for ((_, req), holders) in reqs.iter().zip(&holders) {
        touched.push(req.net());
        applied.requests.push(req.to_string());
        writes.push(match req {
            Request::Ban { net, ttl, at } => ManualWrite::Ban {
                net,
                at: *at,
                expires: at.saturating_add(i64::from(*ttl)),
            },
            Request::Unban { net, allow, at } => {
                unbanned.push(*net);
                ManualWrite::Unban {
                    net,
                    at: *at,
                    holders,
                    allow: *allow,
                }
            }
        });
    }
    store.save_manual_requests(SOURCE, &writes, MAX_UNBANS)?;
    Ok((touched, unbanned))
}

/// For an unban: other live entries (a feed's broader prefix) that still cover it.
fn still_covered(
    entries: &[Entry],
    unbanned: &[IpNet],
    sources: &Sources,
    now: i64,
) -> Vec<String> {
    let names = sources.names();
    let mut out = Vec::new();
    for e in entries {
        let covers =
            |t: &IpNet| e.net.prefix_len() < t.prefix_len() && e.net.contains(&t.network());
        if unbanned.iter().any(covers) && e.marks.iter().any(|m| m.expires > now) {
            out.push(format!(
                "{} ({})",
                net::display_net(&e.net),
                e.marks
                    .iter()
                    .filter_map(|m| names.get(m.source as usize).cloned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    out
}

/// Apply whatever requests are queued, under the apply lock (the daemon, when its watch on the
/// request directory fires).
pub fn apply_waiting(
    settings: &Settings,
    backend: &dyn SetBackend,
    now: i64,
) -> Result<Option<Applied>> {
    if pending(&settings.state_dir)?.is_empty() {
        return Ok(None);
    }
    let _held = lock::apply(&settings.state_dir, APPLY_WAIT)?;
    let mut store = Store::open(&settings.state_dir)?;
    apply_queued(&mut store, settings, Some(backend), now)
}

/// Bring the kernel in line for the touched prefixes (adds) and whatever the cap pushes out
/// (deletes): the rest is the next sync's business, which also knows the feed servers to
/// protect. A family's set that does not exist yet is created with everything it should hold,
/// so a ban protects at once, sync or no sync.
fn apply_touched(
    store: &mut Store,
    settings: &Settings,
    backend: &dyn SetBackend,
    decision: &decide::Decision,
    touched: &[IpNet],
    applied: &mut Applied,
    now: i64,
) -> Result<()> {
    for family in [Family::V4, Family::V6] {
        let spec = sync::set_spec(settings, family);
        let desired = decision.desired(family);
        let mine = |n: &IpNet| touched.contains(n);
        let wanted = desired.iter().any(|d| mine(&d.net));
        let current = match backend.read(&spec) {
            Ok(c) if c.exists && c.compatible => c,
            Ok(c) if c.exists => {
                applied.kernel_note = Some(format!(
                    "set {} exists with another type; the change is saved in the state, and `sipban sync` rebuilds the set",
                    spec.name
                ));
                continue;
            }
            // Missing: create it, with all it should hold, if this request puts anything in.
            Ok(_) if !wanted => continue,
            Ok(c) => c,
            Err(e) => {
                applied.kernel_note = Some(format!(
                    "set {} is not readable ({e}); the change is saved in the state and applies at the next sync",
                    spec.name
                ));
                continue;
            }
        };
        // The kernel is about to change outside a sync: the mirror no longer describes it.
        super::persist::mark_kernel_changing(store)?;
        let (result, added, deleted) = if current.exists {
            let cap = settings.sets.get(family).cap;
            let p = plan::plan_family(
                family,
                &spec.name,
                cap,
                desired,
                decision.evicted(family),
                &current,
                now,
            );
            // Only the touched prefixes are added here (and only in place).
            let adds: Vec<(IpNet, u32)> = p
                .adds
                .iter()
                .chain(p.refreshes.iter())
                .filter(|(n, _)| mine(n))
                .copied()
                .collect();
            if adds.is_empty() && p.dels.is_empty() {
                continue;
            }
            (backend.change(&spec, &adds, &p.dels), adds, p.dels)
        } else {
            // A missing set is created holding everything the state says it should.
            let all: Vec<(IpNet, u32)> = desired
                .iter()
                .map(|d| (d.net, plan::timeout_for(d.expires, now)))
                .collect();
            let added = all.iter().filter(|(n, _)| mine(n)).copied().collect();
            (backend.replace(&spec, &all), added, Vec::new())
        };
        match result {
            Ok(()) => {
                applied
                    .kernel_added
                    .extend(added.iter().map(|(n, _)| net::display_net(n)));
                applied
                    .kernel_deleted
                    .extend(deleted.iter().map(net::display_net));
            }
            Err(e) => {
                applied.kernel_note = Some(format!(
                    "changing set {} failed ({e:#}); the change is saved in the state and applies at the next sync",
                    spec.name
                ));
            }
        }
    }
    Ok(())
}

/// How a command-line request ended.
#[derive(Debug, Serialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum Outcome {
    /// This command applied it (and, as root, changed the kernel).
    Applied(Applied),
    /// The admission gate refused it: nothing was saved.
    Refused { request: String, reason: Refusal },
    /// Another writer held the apply lock past the wait; the request stays queued and the next
    /// run (or the daemon) applies it.
    Queued { pid: Option<u32>, path: PathBuf },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Applied(a) => {
                for r in &a.requests {
                    writeln!(f, "{r}: saved")?;
                }
                for n in &a.kernel_added {
                    writeln!(f, "  kernel: added {n}")?;
                }
                for n in &a.kernel_deleted {
                    writeln!(f, "  kernel: removed {n}")?;
                }
                if let Some(note) = &a.kernel_note {
                    writeln!(f, "  {note}")?;
                }
                for c in &a.still_covered_by {
                    writeln!(
                        f,
                        "  note: still covered by {c}; `unban --allow` carves it out"
                    )?;
                }
                Ok(())
            }
            Outcome::Refused { request, reason } => {
                writeln!(f, "{request}: {reason}; nothing was saved")
            }
            Outcome::Queued { pid, path } => writeln!(
                f,
                "queued as {}: another sipban process{} is changing the sets; it applies at the next sync",
                path.display(),
                pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
            ),
        }
    }
}

/// The gate's verdict on a ban, with the allowlist a sync would use (less a manual allowlist
/// entry of exactly this prefix: a ban lifts it, the admin changed their mind).
pub fn check(settings: &Settings, req: &Request) -> Option<Refusal> {
    let Request::Ban { net, .. } = req else {
        return None;
    };
    let mut summary = sync::AllowSummary::default();
    let full = sync::base_allowlist(settings, &mut summary);
    let mut allow = Allowlist::new();
    allow.set_nat64(full.nat64());
    for r in full.rules() {
        if !(r.net == *net && r.reason == AllowReason::Manual) {
            allow.add(r.net, r.reason.clone());
        }
    }
    gate::admit(&policy(), &allow, net).err()
}

/// `sipban ban` / `sipban unban`: ask the gate, queue the request, then apply it under the
/// apply lock (waiting at most for one apply of another writer). It never waits for a sync's
/// downloads.
pub fn submit(
    settings: &Settings,
    req: &Request,
    backend: &dyn SetBackend,
    now: i64,
) -> Result<Outcome> {
    if let Some(reason) = check(settings, req) {
        return Ok(Outcome::Refused {
            request: req.to_string(),
            reason,
        });
    }
    let path = queue(&settings.state_dir, req)?;
    match lock::apply(&settings.state_dir, APPLY_WAIT) {
        Ok(_held) => {
            let mut store = Store::open(&settings.state_dir)?;
            let a = apply_queued(&mut store, settings, Some(backend), now)?.unwrap_or_default();
            Ok(Outcome::Applied(a))
        }
        Err(LockError::Busy { holder, .. }) => Ok(Outcome::Queued { pid: holder, path }),
        Err(e) => Err(anyhow::Error::new(e)),
    }
}

/// Parse `IP` or `IP/LEN` from the command line.
pub fn parse_target(text: &str) -> Result<IpNet, String> {
    net::parse_net(text).map_err(|e| format!("`{text}` is not an address or prefix: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Sighting;

    fn n(t: &str) -> IpNet {
        net::parse_net(t).unwrap()
    }

    fn sources() -> Sources {
        let feed = SourcePolicy {
            name: "feed".into(),
            priority: 50,
            min_prefix_v4: 16,
            min_prefix_v6: 32,
            allow_private: false,
            ban_on_link: false,
            max_ttl: u32::MAX,
        };
        let ast = SourcePolicy {
            name: "asterisk".into(),
            ..feed.clone()
        };
        Sources {
            policies: vec![feed, ast, policy()],
            kinds: vec!["feed", "asterisk", "manual"],
        }
    }

    fn input(source: u16, complete: bool, nets: &[&str], seen: i64) -> Input {
        Input {
            source,
            complete,
            sightings: nets
                .iter()
                .map(|t| Sighting {
                    net: n(t),
                    seen,
                    ttl: 3600,
                })
                .collect(),
        }
    }

    #[test]
    fn an_unban_holds_until_the_feed_drops_and_relists_or_new_evidence_arrives() {
        let mut u = Unbans::default();
        u.map.insert(
            n("45.0.0.1/32"),
            Unban {
                at: 1000,
                holders: vec!["feed".into()],
            },
        );
        u.map.insert(
            n("45.0.0.2/32"),
            Unban {
                at: 1000,
                holders: vec![],
            },
        );
        let s = sources();
        // The feed still lists 45.0.0.1: kept out. Asterisk evidence older than the unban for
        // 45.0.0.2: kept out.
        let mut inputs = vec![
            input(0, true, &["45.0.0.1", "45.9.9.9"], 2000),
            input(1, false, &["45.0.0.2"], 999),
        ];
        u.filter(&mut inputs, &s);
        assert_eq!(inputs[0].sightings.len(), 1);
        assert!(inputs[1].sightings.is_empty());
        assert_eq!(u.dropped, 2);
        assert_eq!(u.len(), 2);
        // The feed drops it: no longer a holder, still unbanned.
        let mut inputs = vec![input(0, true, &["45.9.9.9"], 3000)];
        u.filter(&mut inputs, &s);
        assert!(u.get(&n("45.0.0.1/32")).unwrap().holders.is_empty());
        // It lists it again: afresh, lifted. Fresh Asterisk evidence lifts the other.
        let mut inputs = vec![
            input(0, true, &["45.0.0.1", "45.9.9.9"], 4000),
            input(1, false, &["45.0.0.2"], 1001),
        ];
        u.filter(&mut inputs, &s);
        assert_eq!(inputs[0].sightings.len(), 2);
        assert_eq!(inputs[1].sightings.len(), 1);
        assert!(u.is_empty());
        assert_eq!(u.lifted.len(), 2);
    }

    #[test]
    fn requests_round_trip_as_json() {
        let r = Request::Unban {
            net: n("2001:db8::1"),
            allow: true,
            at: 5,
        };
        let t = serde_json::to_string(&r).unwrap();
        assert_eq!(
            t,
            r#"{"op":"unban","net":"2001:db8::1","allow":true,"at":5}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&t).unwrap(), r);
    }
}
