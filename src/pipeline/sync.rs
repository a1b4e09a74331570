//! One run: gather → decide → plan → apply → persist, and nothing else.
//!
//! The order is what makes a run crash-safe: the kernel is diffed against what it really
//! holds (not against saved state), the sets are changed first (atomically per batch), feed
//! caches are replaced by rename, and the state is committed in one transaction last. A run
//! killed anywhere leaves either the old or the new state, and the next run converges.
//!
//! `--dry-run` runs the same gather/decide/plan, then stops: no kernel write, no state write,
//! no cache write. Without root it diffs against the saved state and says so.

use crate::config::{FeedLocation, Settings};
use crate::pipeline::gate::{AllowReason, Allowlist};
use crate::pipeline::decide::plan::{self, CurrentSet, FamilyPlan};
use crate::pipeline::decide::{self, AllowHit, Caps, Decision, Entry, Input, SourceCounts, SourcePolicy};
use crate::backend::ipset::{Ipset, IpsetError, SetSpec, Snapshot};
use crate::hostaddr;
use crate::http;
use crate::lock::{self, LockError};
use crate::backend::mirror;
use crate::net::{self, Family};
use crate::source::apiban::{self, ApibanRun};
use crate::source::asterisk;
use crate::source::feed::{self, FeedMeta, FeedStatus};
use crate::source::kernlog;
use crate::source::Sighting;
use crate::store::{RunCommit, RunRecord, Store};
use anyhow::Context;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// How a run ended; also the process exit code (see the README).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Everything worked.
    Ok,
    /// The sets are right for what could be read, but at least one source failed; its last
    /// good entries were kept.
    Partial,
    /// Nothing could be applied (or the plan could not be made); the live sets are unchanged.
    Failed,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Partial => "partial",
            Outcome::Failed => "failed",
        }
    }
}

/// What the plan was diffed against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    Kernel,
    SavedState,
    Empty,
}

#[derive(Clone, Debug, Serialize)]
pub struct SourceReport {
    pub name: String,
    pub kind: &'static str,
    pub priority: u16,
    /// Feeds only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feed: Option<FeedReport>,
    /// APIBAN only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apiban: Option<ApibanRun>,
    /// Asterisk detector only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asterisk: Option<AsteriskReport>,
    /// Kernel-log detector only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<kernlog::Detections>,
    pub counts: SourceCounts,
}

#[derive(Clone, Debug, Serialize)]
pub struct FeedReport {
    pub location: String,
    #[serde(flatten)]
    pub status: FeedStatus,
    pub bytes: u64,
    pub invalid: usize,
    pub invalid_samples: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct AllowSummary {
    pub config: usize,
    pub own_addresses: usize,
    pub feed_hosts: usize,
    pub hits: Vec<AllowHit>,
}

/// Everything a run did or would do. `Display` is for people, `Serialize` for `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub dry_run: bool,
    pub started: i64,
    pub finished: i64,
    pub state: String,
    pub baseline: Baseline,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_note: Option<String>,
    pub sources: Vec<SourceReport>,
    pub allowlist: AllowSummary,
    pub sets: Vec<FamilyPlan>,
    pub entries_held: usize,
    pub forgotten: usize,
    pub dropped_unknown_source: usize,
    pub applied: bool,
    pub errors: Vec<String>,
    pub outcome: Outcome,
    /// Upstream reporting of this run's own detections (`report:` section).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<crate::report::ReportRun>,
}

/// A run that could not start or plan at all.
#[derive(Debug)]
pub enum SyncError {
    Locked(LockError),
    Fatal(anyhow::Error),
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Locked(e) => write!(f, "{e}"),
            SyncError::Fatal(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for SyncError {}

impl From<anyhow::Error> for SyncError {
    fn from(e: anyhow::Error) -> Self {
        SyncError::Fatal(e)
    }
}

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
            policies.push(SourcePolicy {
                name: f.name.clone(),
                priority: f.priority,
                min_prefix_v4: f.min_prefix_v4,
                min_prefix_v6: f.min_prefix_v6,
                allow_private: f.allow_private,
            });
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
            });
            kinds.push("apiban");
        }
        if let Some(a) = &settings.asterisk {
            // Local detections: single hosts, LAN attackers included (a compromised phone on
            // the LAN is a real attacker; the allowlist still protects what the admin listed).
            policies.push(SourcePolicy {
                name: ASTERISK.to_string(),
                priority: a.priority.min(u32::from(crate::config::MAX_PRIORITY)) as u16,
                min_prefix_v4: 32,
                min_prefix_v6: 128,
                allow_private: true,
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
            });
            kinds.push("kernel");
        }
        // Manual bans (`sipban ban`): always registered, after every configured source, so sync keeps their marks.
        policies.push(crate::pipeline::manual::policy());
        kinds.push("manual");
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

/// The source name of the Asterisk log detector.
pub const ASTERISK: &str = "asterisk";
/// The blob key of the detector's state (cursors, failure windows, Call-ID map).
pub const ASTERISK_STATE: &str = "asterisk.state";
/// The blob key of the kernel-log detector's state (cursors, scoring windows).
pub const KERNEL_STATE: &str = "kernel.state";

/// What the Asterisk detector did in this run (the evidence itself stays out of the report).
#[derive(Clone, Debug, Serialize)]
pub struct AsteriskReport {
    pub bans: Vec<asterisk::Ban>,
    pub counters: asterisk::Counters,
    pub files: Vec<asterisk::FileReport>,
}

/// The caps from the config.
pub fn caps(settings: &Settings) -> Caps {
    Caps {
        v4: settings.sets.v4.cap as usize,
        v6: settings.sets.v6.cap as usize,
    }
}

pub use crate::backend::set_spec;

/// The allowlist: config, own addresses (when enabled), feed servers.
pub fn base_allowlist(settings: &Settings, summary: &mut AllowSummary) -> Allowlist {
    let mut allow = Allowlist::new();
    for n in &settings.allowlist {
        allow.add(*n, AllowReason::Config);
        summary.config += 1;
    }
    // `sipban unban --allow` entries, from the saved state.
    crate::pipeline::manual::add_allowlist(&settings.state_dir, &mut allow);
    if settings.allow_own_addresses {
        for a in hostaddr::own_addresses() {
            allow.add(net::host_net(a.ip), AllowReason::OwnAddress(a.what));
            summary.own_addresses += 1;
        }
    }
    allow
}

/// Resolve the hosts of http(s) feeds (a few seconds at most each; failures are skipped: the
/// download would fail too, and its address is added from the connection if it succeeds).
async fn feed_host_addresses(settings: &Settings) -> Vec<(IpAddr, String)> {
    let mut out = Vec::new();
    for f in &settings.feeds {
        let FeedLocation::Http(url) = &f.location else {
            continue;
        };
        let Some(host) = crate::config::url_host(url) else {
            continue;
        };
        if let Some(ip) = net::parse_ip(host) {
            out.push((ip, f.name.clone()));
            continue;
        }
        let lookup = tokio::net::lookup_host((host.to_string(), 443));
        match tokio::time::timeout(Duration::from_secs(3), lookup).await {
            Ok(Ok(addrs)) => {
                for a in addrs {
                    out.push((net::canonical_ip(a.ip()), f.name.clone()));
                }
            }
            Ok(Err(e)) => tracing::debug!(feed = %f.name, "cannot resolve {host}: {e}"),
            Err(_) => tracing::debug!(feed = %f.name, "resolving {host} timed out"),
        }
    }
    out
}

/// Read a family's kernel set as a [`CurrentSet`].
fn read_current(ipset: &Ipset, spec: &SetSpec) -> Result<CurrentSet, IpsetError> {
    Ok(match ipset.read(&spec.name)? {
        None => CurrentSet::default(),
        Some(k) => CurrentSet::new(true, k.header.matches(spec), k.members),
    })
}

/// The mirror of a set's kernel contents, when it can be trusted (see [`mirror`]): the
/// current set and when it was last verified. `None` means: read the kernel back.
fn trusted_mirror(
    store: Option<&Store>,
    snapshot: Option<&Snapshot>,
    spec: &SetSpec,
    now: i64,
) -> Option<(CurrentSet, i64)> {
    let info = snapshot?.info(&spec.name).ok()??;
    if !info.header.matches(spec) {
        return None;
    }
    let blob = store?.blob(&mirror::key(&spec.name)).ok()??;
    let m = mirror::Mirror::decode(&blob)?;
    let members = m.members_if_trusted(info.entries, now)?;
    tracing::debug!(set = %spec.name, "using the kernel mirror ({})", mirror::describe(&m));
    Some((CurrentSet::new(true, true, members), m.verified_at))
}

/// What the saved state says the sets hold now.
fn current_from_state(decision: &Decision, family: Family, now: i64) -> CurrentSet {
    CurrentSet::new(
        true,
        true,
        decision
            .desired(family)
            .iter()
            .map(|d| (d.net, plan::timeout_for(d.expires, now))),
    )
}

/// One sync run.
pub async fn run(
    settings: &Settings,
    ipset: &Ipset,
    dry_run: bool,
    now: i64,
) -> Result<RunReport, SyncError> {
    let lock = if dry_run {
        None
    } else {
        Some(lock::acquire(&settings.state_dir).map_err(SyncError::Locked)?)
    };
    run_inner(settings, ipset, dry_run, now, lock.as_ref()).await
}

/// One real run for a caller that already holds the run lock (the daemon holds it for its
/// lifetime, so that `sipban sync` from cron exits with code 4 while it runs).
pub async fn run_holding(
    held: &lock::RunLock,
    settings: &Settings,
    ipset: &Ipset,
    now: i64,
) -> Result<RunReport, SyncError> {
    run_inner(settings, ipset, false, now, Some(held)).await
}

async fn run_inner(
    settings: &Settings,
    ipset: &Ipset,
    dry_run: bool,
    now: i64,
    held: Option<&lock::RunLock>,
) -> Result<RunReport, SyncError> {
    let clock = std::time::Instant::now();
    let phase =
        |name: &str| tracing::debug!("{name}: {:.1} ms", clock.elapsed().as_secs_f64() * 1000.0);
    // Queued `sipban ban/unban` requests go into the state first (the run applies them).
    if let Some(held) = held.filter(|_| !dry_run) {
        crate::pipeline::manual::apply_pending(held, settings, None, now)?;
    }
    let mut store = if dry_run {
        match Store::open_read_only(&settings.state_dir) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("{e:#}; planning without saved state");
                None
            }
        }
    } else {
        Some(Store::open(&settings.state_dir)?)
    };
    let state_path = Store::db_path(&settings.state_dir).display().to_string();

    let sources = Sources::from_settings(settings);
    let index = sources.index();
    // APIBAN commits each page as it arrives, so it runs before the entries are loaded: what
    // it applied flows into this run's decision (see source::apiban).
    let mut apiban_run = match &settings.apiban {
        Some(a) => {
            let key = apiban::load_key(a).map_err(|e| SyncError::Fatal(anyhow::anyhow!(e)))?;
            let target = match store.as_mut() {
                Some(s) if !dry_run => apiban::Target::Apply(s),
                s => apiban::Target::DryRun(s.map(|s| &*s)),
            };
            Some(apiban::pull(a, &key, target, now).await)
        }
        None => None,
    };
    let mut previous: Vec<Entry> = match &store {
        Some(s) => s.load_entries(&index)?,
        None => Vec::new(),
    };
    let metas: HashMap<String, FeedMeta> = match &store {
        Some(s) => s.feed_metas()?,
        None => HashMap::new(),
    };

    phase("loaded state");
    // Gather.
    let mut allow_summary = AllowSummary::default();
    let mut allow = base_allowlist(settings, &mut allow_summary);
    for (ip, feed) in feed_host_addresses(settings).await {
        allow.add(net::host_net(ip), AllowReason::FeedHost(feed));
        allow_summary.feed_hosts += 1;
    }
    let needs_http = settings
        .feeds
        .iter()
        .any(|f| matches!(f.location, FeedLocation::Http(_)));
    let client = if needs_http {
        Some(http::client(
            http::Timeouts {
                connect: Duration::from_secs(10),
                total: Duration::from_secs(300),
            },
            None,
        )?)
    } else {
        None
    };
    let mut errors = Vec::new();
    let mut inputs = Vec::new();
    let mut feed_reports = Vec::new();
    let mut new_metas = Vec::new();
    let mut cache_writes = Vec::new();
    for (i, f) in settings.feeds.iter().enumerate() {
        let meta = metas.get(&f.name).cloned().unwrap_or_default();
        let cache_file = feed::cache_path(&settings.state_dir, &f.name);
        // The last good copy matters for remote feeds (a 304 lists it again); a local file is
        // its own copy, so it is neither read nor written for file feeds.
        let cache = match f.location {
            FeedLocation::Http(_) => feed::read_cache(&cache_file),
            FeedLocation::File(_) => None,
        };
        let result = feed::run_feed(client.as_ref(), f, &meta, cache.as_deref(), now).await;
        if let Some(ip) = result.remote_addr {
            allow.add(net::host_net(ip), AllowReason::FeedHost(f.name.clone()));
            allow_summary.feed_hosts += 1;
        }
        if let FeedStatus::Failed(reason) = &result.status {
            errors.push(format!(
                "feed {}: {reason}; keeping its last good entries",
                f.name
            ));
        }
        let (invalid, invalid_samples) = result
            .listing
            .as_ref()
            .map(|l| (l.invalid, l.invalid_samples.clone()))
            .unwrap_or_default();
        if let Some(listing) = result.listing {
            let ttl = f.ttl;
            inputs.push(Input {
                source: i as u16,
                sightings: listing
                    .nets
                    .iter()
                    .map(|&n| Sighting {
                        net: n,
                        seen: now,
                        ttl,
                    })
                    .collect(),
                complete: true,
            });
            if result.cache_update && matches!(f.location, FeedLocation::Http(_)) {
                cache_writes.push((cache_file, listing.nets));
            }
        }
        feed_reports.push(FeedReport {
            location: f.location.to_string(),
            status: result.status,
            bytes: result.bytes,
            invalid,
            invalid_samples,
        });
        if !matches!(feed_reports[i].status, FeedStatus::NotDue { .. }) {
            new_metas.push((f.name.clone(), result.meta));
        }
    }

    if let Some(r) = apiban_run.as_mut() {
        if let Some(ip) = r.remote_addr {
            allow.add(
                net::host_net(ip),
                AllowReason::FeedHost(apiban::SOURCE.to_string()),
            );
            allow_summary.feed_hosts += 1;
        }
        errors.extend(r.error());
        if let Some(&i) = index.get(apiban::SOURCE) {
            inputs.push(Input {
                source: i,
                sightings: std::mem::take(&mut r.sightings),
                complete: false,
            });
        }
    }
    // The Asterisk detector: follow the logs from the saved cursors. A dry run works on a copy
    // of the state and throws it away.
    let mut asterisk_report = None;
    let mut asterisk_blob = None;
    let mut offences: Vec<crate::report::Offence> = Vec::new();
    if let Some(a) = &settings.asterisk {
        let mut state: asterisk::DetectorState =
            match store.as_ref().map(|s| s.blob(ASTERISK_STATE)) {
                Some(Ok(Some(bytes))) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                    tracing::warn!(
                        "the saved Asterisk detector state is unreadable ({e}); starting afresh"
                    );
                    asterisk::DetectorState::default()
                }),
                Some(Err(e)) => {
                    return Err(SyncError::Fatal(
                        e.context("reading the Asterisk detector state"),
                    ))
                }
                _ => asterisk::DetectorState::default(),
            };
        match asterisk::run(a, &mut state, now) {
            Ok(det) => {
                offences.extend(crate::report::from_asterisk(&det));
                for f in &det.files {
                    if let Some(e) = &f.error {
                        errors.push(format!("asterisk: {}: {e}", f.path.display()));
                    }
                }
                if let Some(&i) = index.get(ASTERISK) {
                    inputs.push(Input {
                        source: i,
                        sightings: det.sightings.clone(),
                        complete: false,
                    });
                }
                asterisk_report = Some(AsteriskReport {
                    bans: det.bans,
                    counters: det.counters,
                    files: det.files,
                });
                if !dry_run {
                    asterisk_blob = Some(
                        serde_json::to_vec(&state)
                            .context("encoding the Asterisk detector state")?,
                    );
                }
            }
            Err(e) => errors.push(format!("asterisk: {e}; its last bans are kept")),
        }
    }
    // The kernel-log detector, like the Asterisk one: saved cursors and scoring windows, and
    // a throw-away copy on a dry run.
    let mut kernel_report = None;
    let mut kernel_blob = None;
    if let Some(k) = &settings.kernel_log {
        let mut state: kernlog::KernelState = match store.as_ref().map(|s| s.blob(KERNEL_STATE)) {
            Some(Ok(Some(bytes))) => kernlog::KernelState::decode(&bytes).unwrap_or_else(|e| {
                tracing::warn!(
                    "the saved kernel-log detector state is unreadable ({e}); starting afresh"
                );
                kernlog::KernelState::default()
            }),
            Some(Err(e)) => {
                return Err(SyncError::Fatal(
                    e.context("reading the kernel-log detector state"),
                ))
            }
            _ => kernlog::KernelState::default(),
        };
        let own = hostaddr::own_ips();
        match kernlog::run(k, &mut state, &own, now) {
            Ok(det) => {
                for f in &det.files {
                    if let Some(e) = &f.error {
                        errors.push(format!("kernel_log: {}: {e}", f.path.display()));
                    }
                }
                if let Some(&i) = index.get(kernlog::SOURCE) {
                    inputs.push(Input {
                        source: i,
                        sightings: det.sightings.clone(),
                        complete: false,
                    });
                }
                if !dry_run {
                    kernel_blob = Some(
                        state
                            .encode()
                            .context("encoding the kernel-log detector state")?,
                    );
                }
                offences.extend(crate::report::from_kernel(&det));
                kernel_report = Some(det);
            }
            Err(e) => errors.push(format!("kernel_log: {e}; its last bans are kept")),
        }
    }
    phase("gathered");
    // The kernel's set list is read by another process while this one decides. Started only
    // now, after the downloads, so that what it says is no older than the decision.
    let pending_snapshot = ipset.snapshot_start();

    // Manual unbans keep addresses out until a source lists them afresh (see manual.rs).
    let mut unbans = match &store {
        Some(s) => crate::pipeline::manual::Unbans::load(s.conn())?,
        None => crate::pipeline::manual::Unbans::default(),
    };
    unbans.filter(&mut inputs, &sources);
    unbans.strip(&mut previous);

    // Decide.
    let caps = caps(settings);
    let baseline_state = if dry_run {
        Some(decide::decide(
            previous.clone(),
            Vec::new(),
            &sources.policies,
            &allow,
            caps,
            now,
        ))
    } else {
        None
    };
    let decision = decide::decide(previous, inputs, &sources.policies, &allow, caps, now);
    // Own detections the sets will hold, for upstream reporting.
    let candidates = settings
        .report
        .as_ref()
        .map(|r| crate::report::select(r, &offences, &|ip| decision.holds(ip)));

    phase("decided");
    // Plan against the kernel (or, for a dry run that cannot read it, the saved state).
    let mut baseline = Baseline::Kernel;
    let mut baseline_note = None;
    let mut plans = Vec::new();
    // When each family's kernel set was last known exactly (for the mirror written below).
    let mut verified_at = [now; 2];
    let dirty = match &store {
        Some(s) => s.blob(mirror::DIRTY_KEY)?.is_some_and(|v| v != b"0"),
        None => true,
    };
    // One look at all kernel sets (one process): headers and counts for the mirror check,
    // and leftover temporary sets for the apply. Unreadable (a dry run without root): each
    // family then reads its set, or falls back to the saved state.
    let snapshot = match pending_snapshot.finish() {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::debug!("cannot list the kernel sets: {e}");
            None
        }
    };
    for family in [Family::V4, Family::V6] {
        let spec = set_spec(settings, family);
        let mirrored = if dirty {
            None
        } else {
            trusted_mirror(store.as_ref(), snapshot.as_ref(), &spec, now)
        };
        let read = match mirrored {
            Some((current, at)) => {
                verified_at[family as usize] = at;
                Ok(current)
            }
            None => read_current(ipset, &spec),
        };
        let current = match read {
            Ok(c) => c,
            Err(e) if dry_run => {
                let (cur, b, note) = match (&baseline_state, &store) {
                    (Some(d), Some(_)) => (
                        current_from_state(d, family, now),
                        Baseline::SavedState,
                        format!("kernel sets not readable ({e}); diffed against the saved state in {state_path}"),
                    ),
                    _ => (
                        CurrentSet::default(),
                        Baseline::Empty,
                        format!("kernel sets not readable ({e}) and no saved state at {state_path}; diffed against empty sets"),
                    ),
                };
                baseline = b;
                baseline_note = Some(note);
                cur
            }
            Err(e) => {
                return Err(SyncError::Fatal(
                    anyhow::Error::new(e).context(format!("reading kernel set {}", spec.name)),
                ));
            }
        };
        let cap = settings.sets.get(family).cap;
        plans.push(plan::plan_family(
            family,
            &spec.name,
            cap,
            decision.desired(family),
            decision.evicted(family),
            &current,
            now,
        ));
    }

    phase("planned");
    let mut report = RunReport {
        dry_run,
        started: now,
        finished: now,
        state: state_path,
        baseline,
        baseline_note,
        sources: sources
            .policies
            .iter()
            .zip(&sources.kinds)
            .enumerate()
            .map(|(i, (p, kind))| SourceReport {
                name: p.name.clone(),
                kind,
                priority: p.priority,
                feed: feed_reports.get(i).cloned(),
                apiban: if *kind == "apiban" {
                    apiban_run.clone()
                } else {
                    None
                },
                asterisk: if *kind == "asterisk" {
                    asterisk_report.clone()
                } else {
                    None
                },
                kernel: if *kind == "kernel" {
                    kernel_report.clone()
                } else {
                    None
                },
                counts: decision.per_source[i].clone(),
            })
            .collect(),
        allowlist: AllowSummary {
            hits: decision.allow_hits.clone(),
            ..allow_summary
        },
        sets: plans,
        entries_held: decision.entries.len(),
        forgotten: decision.forgotten,
        dropped_unknown_source: decision.dropped_unknown,
        applied: false,
        errors,
        outcome: Outcome::Ok,
        upstream: None,
    };
    if dry_run {
        if let (Some(r), Some(c)) = (&settings.report, candidates) {
            report.upstream = Some(crate::report::preview(r, store.as_ref(), c, now));
        }
        report.outcome = if report.errors.is_empty() {
            Outcome::Ok
        } else {
            Outcome::Partial
        };
        return Ok(report);
    }

    // Apply. A run killed from here until its final commit leaves the dirty marker set, so
    // the next run reads the kernel back instead of trusting the mirror.
    if report.sets.iter().any(|p| !p.is_noop()) {
        if let Some(s) = store.as_mut() {
            s.put_blob(mirror::DIRTY_KEY, b"1")?;
        }
    }
    let mut apply_failed = false;
    for (fi, family) in [Family::V4, Family::V6].into_iter().enumerate() {
        let spec = set_spec(settings, family);
        if report.sets[fi].rebuild.is_some() {
            verified_at[fi] = now;
        }
        if let Err(e) = apply_family(
            ipset,
            snapshot.as_ref(),
            &spec,
            &report.sets[fi],
            decision.desired(family),
            now,
        ) {
            report.errors.push(format!("set {}: {e:#}", spec.name));
            apply_failed = true;
        }
    }
    report.applied = !apply_failed;
    // Newly banned sources lose their tracked flows (only with the `conntrack` tool).
    if report.applied {
        let added: Vec<ipnet::IpNet> = report
            .sets
            .iter()
            .flat_map(|p| p.adds.iter().map(|(n, _)| *n))
            .collect();
        match crate::backend::conntrack::forget_sources(&added) {
            Ok(f) if f.sources > 0 => tracing::info!(
                "forgot {} tracked flows of {} newly banned sources",
                f.flows,
                f.sources
            ),
            Ok(f) => tracing::debug!("conntrack: nothing to forget ({:?})", f.skipped),
            Err(e) => tracing::warn!("could not forget the flows of newly banned sources: {e:#}"),
        }
    }
    phase("applied");

    // Persist: caches by rename, then one transaction.
    for (path, nets) in &cache_writes {
        if let Err(e) = feed::write_cache(path, nets) {
            report
                .errors
                .push(format!("writing feed cache {}: {e}", path.display()));
        }
    }
    report.outcome = if apply_failed {
        Outcome::Failed
    } else if report.errors.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Partial
    };
    // What the kernel sets now hold, for the next run; only after a complete apply.
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    if let Some(b) = asterisk_blob.take() {
        blobs.push((ASTERISK_STATE.to_string(), b));
    }
    if let Some(b) = kernel_blob.take() {
        blobs.push((KERNEL_STATE.to_string(), b));
    }
    if !apply_failed {
        for (fi, family) in [Family::V4, Family::V6].into_iter().enumerate() {
            let m = mirror::Mirror::from_desired(decision.desired(family), verified_at[fi]);
            blobs.push((mirror::key(&settings.sets.get(family).name), m.encode()));
        }
        blobs.push((mirror::DIRTY_KEY.to_string(), b"0".to_vec()));
    }
    let finished = unix_now().max(now);
    report.finished = finished;
    let record = RunRecord {
        started: now,
        finished,
        outcome: report.outcome.label().to_string(),
        summary: report.summary_json().to_string(),
    };
    if let Some(store) = store.as_mut() {
        // The report queue is written in the same transaction as the detector cursors.
        let enqueue = |tx: &rusqlite::Transaction<'_>| match (&settings.report, &candidates) {
            (Some(r), Some(c)) => crate::report::queue::enqueue_all(tx, r, c, now),
            _ => Ok(()),
        };
        store
            .commit_run_with(
                &RunCommit {
                    entries: &decision.entries,
                    source_names: &sources.names(),
                    packed: &sources.packed(),
                    feeds: &new_metas,
                    blobs: &blobs,
                    run: Some(&record),
                },
                enqueue,
            )
            .context("saving state")?;
        unbans.save(store.conn_mut())?;
    }
    phase("committed");
    if let (Some(r), Some(c), Some(s)) = (&settings.report, candidates, store.as_mut()) {
        report.upstream = Some(crate::report::drain(r, s, c, now).await);
        phase("reported");
    }
    Ok(report)
}

/// Apply one family's plan, verify the count, and fall back to a rebuild once if a diff left
/// the set with an unexpected size. `snapshot` is the kernel's set list from before planning.
fn apply_family(
    ipset: &Ipset,
    snapshot: Option<&Snapshot>,
    spec: &SetSpec,
    plan: &FamilyPlan,
    desired: &[decide::Desired],
    now: i64,
) -> anyhow::Result<()> {
    // A rebuild's batch destroys a leftover temporary set itself; an in-place diff would leave
    // one (from a run killed between swap and destroy) lying around, so look for it then.
    if plan.rebuild.is_none() {
        let removed = match snapshot {
            Some(s) => ipset.destroy_leftover_tmp_in(spec, s)?,
            None => ipset.destroy_leftover_tmp(spec)?,
        };
        if removed {
            tracing::info!(set = %spec.name, "removed a temporary set left by an interrupted run");
        }
    }
    // Nothing to change: the count was just checked (against the mirror, or by reading the
    // set back), so there is nothing to verify either.
    if plan.is_noop() && plan.before == plan.after {
        return Ok(());
    }
    let full = || -> Vec<(ipnet::IpNet, u32)> {
        desired
            .iter()
            .map(|d| (d.net, plan::timeout_for(d.expires, now)))
            .collect()
    };
    if plan.rebuild.is_some() {
        match snapshot.map(|s| s.info(&spec.name)) {
            Some(Ok(live)) => ipset.rebuild_known(spec, &full(), live)?,
            _ => ipset.rebuild(spec, &full())?,
        }
    } else if !plan.is_noop() {
        let mut adds = plan.adds.clone();
        adds.extend_from_slice(&plan.refreshes);
        ipset.apply_diff(spec, &adds, &plan.dels)?;
    }
    let count = ipset.header(&spec.name)?.map(|(_, n)| n);
    if count == Some(plan.after) {
        return Ok(());
    }
    if plan.rebuild.is_none() {
        tracing::warn!(
            set = %spec.name,
            "after the diff the set holds {count:?} entries, expected {}; rebuilding",
            plan.after
        );
        ipset.rebuild(spec, &full())?;
        let count = ipset.header(&spec.name)?.map(|(_, n)| n);
        if count == Some(plan.after) {
            return Ok(());
        }
        anyhow::bail!(
            "after a rebuild the set holds {count:?} entries, expected {}",
            plan.after
        );
    }
    anyhow::bail!(
        "after the rebuild the set holds {count:?} entries, expected {}",
        plan.after
    )
}

pub use crate::clock::unix_now;

impl RunReport {
    /// Counts only (no address lists): what the run history stores.
    pub fn summary_json(&self) -> serde_json::Value {
        serde_json::json!({
            "dry_run": self.dry_run,
            "outcome": self.outcome,
            "baseline": self.baseline,
            "entries_held": self.entries_held,
            "errors": self.errors,
            "sources": self.sources.iter().map(|s| serde_json::json!({
                "name": s.name,
                "kind": s.kind,
                "status": s.feed.as_ref().map(|f| &f.status),
                "apiban": s.apiban,
                "counts": s.counts,
            })).collect::<Vec<_>>(),
            "sets": self.sets.iter().map(|p| serde_json::json!({
                "family": p.family,
                "set": p.set,
                "cap": p.cap,
                "before": p.before,
                "after": p.after,
                "added": p.adds.len(),
                "deleted": p.dels.len(),
                "refreshed": p.refreshes.len(),
                "evicted": p.evicted,
                "rebuild": p.rebuild,
            })).collect::<Vec<_>>(),
        })
    }
}

/// How many addresses of each list the human output shows.
const SHOW: usize = 25;

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dry_run {
            writeln!(
                f,
                "sipban sync --dry-run: the plan below was NOT applied; nothing was changed."
            )?;
        } else {
            writeln!(
                f,
                "sipban sync: {}",
                match self.outcome {
                    Outcome::Ok => "done",
                    Outcome::Partial =>
                        "done, with source errors (their last good entries were kept)",
                    Outcome::Failed => "FAILED: the live sets were left as they were",
                }
            )?;
        }
        match (&self.baseline, &self.baseline_note) {
            (_, Some(note)) => writeln!(f, "compared against: {note}")?,
            (Baseline::Kernel, None) => writeln!(f, "compared against: the kernel sets")?,
            (b, None) => writeln!(f, "compared against: {b:?}")?,
        }
        writeln!(f, "\nsources:")?;
        for s in &self.sources {
            let c = &s.counts;
            let status = match &s.feed {
                Some(fr) => match &fr.status {
                    FeedStatus::Fresh => format!("fresh ({} bytes)", fr.bytes),
                    FeedStatus::NotModified => "not modified (cached copy)".to_string(),
                    FeedStatus::NotDue { next_in } => {
                        format!(
                            "not due (next download in {})",
                            crate::config::human_duration(*next_in)
                        )
                    }
                    FeedStatus::Failed(r) => format!("FAILED: {r}"),
                },
                None if s.kernel.is_some() => {
                    s.kernel.as_ref().map(|k| k.summary()).unwrap_or_default()
                }
                None => match (&s.apiban, &s.asterisk) {
                    (Some(a), _) => a.to_string(),
                    (None, Some(a)) => format!(
                        "{} lines read, {} failures matched, {} new bans, {} unattributed scanner timeouts",
                        a.counters.lines,
                        a.counters.matched,
                        a.bans.len(),
                        a.counters.timeouts_unattributed
                    ),
                    (None, None) => String::new(),
                },
            };
            writeln!(
                f,
                "  {:<20} {:<5} prio {:<4} {status}",
                s.name, s.kind, s.priority
            )?;
            let rejected: usize = c.rejected.values().sum();
            let mut line = format!(
                "  {:<20} listed {}, holds {}, in set {}",
                "", c.listed, c.held, c.in_set
            );
            if c.allowlisted > 0 {
                line.push_str(&format!(", allowlisted {}", c.allowlisted));
            }
            if c.expired > 0 {
                line.push_str(&format!(", expired {}", c.expired));
            }
            if c.delisted > 0 {
                line.push_str(&format!(", delisted {}", c.delisted));
            }
            if rejected > 0 {
                let why: Vec<String> = c
                    .rejected
                    .iter()
                    .map(|(r, n)| format!("{n} {}", r.describe()))
                    .collect();
                line.push_str(&format!(", rejected {rejected} ({})", why.join(", ")));
            }
            if let Some(fr) = &s.feed {
                if fr.invalid > 0 {
                    line.push_str(&format!(
                        ", {} unreadable lines (e.g. `{}`)",
                        fr.invalid,
                        fr.invalid_samples.first().map(String::as_str).unwrap_or("")
                    ));
                }
            }
            writeln!(f, "{line}")?;
        }
        if self.sources.is_empty() {
            writeln!(f, "  (none configured)")?;
        }
        let a = &self.allowlist;
        writeln!(
            f,
            "\nallowlist: {} from config, {} own addresses, {} feed servers",
            a.config, a.own_addresses, a.feed_hosts
        )?;
        for h in a.hits.iter().take(SHOW) {
            writeln!(
                f,
                "  {} {} by {} ({})",
                net::display_net(&h.listed),
                if h.partial {
                    "partly protected (the rest is kept)"
                } else {
                    "protected"
                },
                net::display_net(&h.rule),
                h.reason
            )?;
        }
        if a.hits.len() > SHOW {
            writeln!(f, "  ... and {} more", a.hits.len() - SHOW)?;
        }
        writeln!(f, "\nsets:")?;
        for p in &self.sets {
            writeln!(
                f,
                "  {} ({}): {} -> {} of cap {}: +{} added, -{} deleted, {} timeouts refreshed, {} evicted over the cap",
                p.set,
                p.family,
                p.before,
                p.after,
                p.cap,
                p.adds.len(),
                p.dels.len(),
                p.refreshes.len(),
                p.evicted
            )?;
            match &p.rebuild {
                Some(why) => {
                    writeln!(f, "    method: rebuild in a temporary set and swap ({why})")?
                }
                None if p.is_noop() => writeln!(f, "    method: nothing to change")?,
                None => writeln!(f, "    method: one in-place batch")?,
            }
            for (n, t) in p.adds.iter().take(SHOW) {
                writeln!(
                    f,
                    "    + {} (for {})",
                    net::display_net(n),
                    crate::config::human_duration(u64::from(*t))
                )?;
            }
            if p.adds.len() > SHOW {
                writeln!(
                    f,
                    "    + ... and {} more (--json lists all)",
                    p.adds.len() - SHOW
                )?;
            }
            for n in p.dels.iter().take(SHOW) {
                writeln!(f, "    - {}", net::display_net(n))?;
            }
            if p.dels.len() > SHOW {
                writeln!(
                    f,
                    "    - ... and {} more (--json lists all)",
                    p.dels.len() - SHOW
                )?;
            }
        }
        if self.forgotten > 0 {
            writeln!(
                f,
                "\n{} candidates far below the cap were dropped from the state",
                self.forgotten
            )?;
        }
        if let Some(u) = &self.upstream {
            write!(f, "\n{u}")?;
        }
        if !self.errors.is_empty() {
            writeln!(f, "\nerrors:")?;
            for e in &self.errors {
                writeln!(f, "  {e}")?;
            }
        }
        Ok(())
    }
}
