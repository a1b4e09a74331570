//! One sync: gather from the network → (apply lock) baseline → detect → gate + decide → plan →
//! apply → persist → (lock released) report upstream.
//!
//! The network phase (feed servers' addresses, downloads, APIBAN pages) runs without the apply
//! lock, so a slow feed never holds up a real-time detection or a manual ban; what it brought
//! waits in memory. The local step then runs under the apply lock, with no await in it: it
//! loads the baseline (saved state, and what the kernel holds) only now, so a ban or a
//! real-time add made while the downloads ran is part of it and is never lost.
//!
//! The order inside the step is what makes a run crash-safe: the kernel is diffed against what
//! it really holds (not against saved state), the sets are changed (atomically per batch)
//! while feed caches are replaced by rename and the state's transaction is staged beside
//! them ([`super::persist`]), and that transaction is committed last, only once the apply
//! succeeded. A run killed anywhere leaves either the old or the new state, and the next run
//! converges.
//!
//! `--dry-run` runs the same steps through the recording backend and writes nothing: no
//! kernel, no state, no cache, no lock. Without root it diffs against the saved state and says
//! so.

use super::decide::{self, Decision, Entry, Input};
use super::detect::{self, PassReport};
use super::gate::AllowReason;
use super::gather::{self, Remote};
pub use super::{base_allowlist, caps, Sources};
use crate::backend::plan::{self, CurrentSet, FamilyPlan};
pub use crate::backend::set_spec;
use crate::backend::Kernel;
use crate::backend::{mirror, DryRun, SetBackend, SetSpec, Survey};
use crate::config::Settings;
use crate::lock;
use crate::net::{self, Family};
use crate::report;
use crate::store::Store;
use ipnet::IpNet;

pub use super::detect::{AsteriskReport, ASTERISK, ASTERISK_STATE, KERNEL_STATE};
pub use super::summary::*;
pub use crate::clock::unix_now;

/// One sync run. A real run takes the run lock (one sync at a time; the loser exits 4).
pub async fn run(
    settings: &Settings,
    ipset: &Kernel,
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
    ipset: &Kernel,
    now: i64,
) -> Result<RunReport, SyncError> {
    run_inner(settings, ipset, false, now, Some(held)).await
}

/// Phase timings for `-vv`.
struct Clock(std::time::Instant);

impl Clock {
    fn phase(&self, name: &str) {
        tracing::debug!("{name}: {:.1} ms", self.0.elapsed().as_secs_f64() * 1000.0);
    }
}

async fn run_inner(
    settings: &Settings,
    ipset: &Kernel,
    dry_run: bool,
    now: i64,
    held: Option<&lock::RunLock>,
) -> Result<RunReport, SyncError> {
    let clock = Clock(std::time::Instant::now());
    let mut store = open_store(settings, dry_run)?;
    let sources = Sources::from_settings(settings);
    // 1. The network, without the apply lock.
    let remote = gather::gather(settings, store.as_mut(), &sources, dry_run, now).await?;
    clock.phase("gathered remote");
    // 2. The short serialised step. It never awaits: in the daemon a real-time pass cannot
    //    run inside it, and in another process a ban waits for it at most.
    let dry = DryRun::new(ipset.as_backend());
    let backend: &dyn SetBackend = if dry_run { &dry } else { ipset.as_backend() };
    let step = {
        let _apply = match held.filter(|_| !dry_run) {
            Some(_) => Some(
                lock::apply(&settings.state_dir, lock::APPLY_WAIT).map_err(SyncError::Locked)?,
            ),
            None => None,
        };
        if let (Some(s), true) = (store.as_mut(), held.is_some() && !dry_run) {
            super::manual::apply_queued(s, settings, None, now)?;
        }
        local_step(
            settings,
            backend,
            store.as_mut(),
            &sources,
            remote,
            now,
            &clock,
        )?
    };
    // 3. Reports upstream, without the lock.
    let Step {
        mut report,
        candidates,
    } = step;
    if !dry_run && report.applied && ipset.as_backend().declares_rules() {
        // The apply's own transaction put the recorded rules in place (nft).
        report.firewall = crate::backend::rules::declared_by_apply(settings);
    } else if !dry_run {
        check_rules(settings, &ipset.ipset(), &mut report, now);
        clock.phase("checked the firewall rules");
    }
    if let (Some(r), Some(c)) = (&settings.report, candidates) {
        report.upstream = Some(match (dry_run, store.as_mut()) {
            (false, Some(s)) => report::drain(r, s, c, now).await,
            (_, s) => report::preview(r, s.map(|s| &*s), c, now),
        });
        clock.phase("reported");
    }
    if let Some(kib) = peak_rss_kib() {
        // This process alone: a journal read's journalctl (which maps the journal files) is
        // a child, and GNU time's figure includes it.
        tracing::debug!("peak RSS of this process: {kib} KiB");
    }
    Ok(report)
}

/// `VmHWM` of `/proc/self/status`: this process's peak resident set, children excluded.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Once `firewall install` has run, the rules it recorded must still be there: another tool
/// (`nft flush ruleset` on an nftables restart, an `iptables-restore`) may have removed them.
/// Missing rules are put back with a warning; a check that cannot run, or rules that cannot be
/// put back, fail the run (banned sources may not be dropped).
fn check_rules(
    settings: &Settings,
    ipset: &crate::backend::ipset::Ipset,
    report: &mut RunReport,
    now: i64,
) {
    match crate::backend::rules::check(settings, ipset, true, now) {
        Ok(Some(c)) => {
            if let Some(w) = c.warning() {
                tracing::warn!("{w}");
                report.warnings.push(w);
            }
            report.firewall = Some(c);
        }
        Ok(None) => {}
        Err(e) => {
            let m = format!("firewall rules: {e:#}");
            tracing::error!("{m}");
            report.errors.push(m);
            report.outcome = Outcome::Failed;
        }
    }
}

/// The state: read-write for a real run, read-only (or none) for a dry run.
fn open_store(settings: &Settings, dry_run: bool) -> Result<Option<Store>, SyncError> {
    if !dry_run {
        return Ok(Some(Store::open(&settings.state_dir)?));
    }
    Ok(match Store::open_read_only(&settings.state_dir) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("{e:#}; planning without saved state");
            None
        }
    })
}

/// What the local step hands back: the report, and the detections to send upstream.
struct Step {
    report: RunReport,
    candidates: Option<Vec<report::Candidate>>,
}

/// What the local detectors found in this run.
#[derive(Default)]
struct Local {
    passes: Vec<detect::Pass>,
    offences: Vec<report::Offence>,
    /// Files whose reading the read limit cut.
    limited: Vec<String>,
    /// Files with too many lines in no known layout.
    unparsed: Vec<String>,
}

/// Run the configured detectors from their saved states.
fn detect_local(
    settings: &Settings,
    store: Option<&Store>,
    sources: &Sources,
    inputs: &mut Vec<Input>,
    errors: &mut Vec<String>,
    now: i64,
) -> Result<Local, SyncError> {
    let index = sources.index();
    let mut local = Local::default();
    for d in detect::configured(settings) {
        let saved = match store.map(|s| s.blob(d.state_key())).transpose() {
            Ok(b) => b.flatten(),
            Err(e) => {
                return Err(SyncError::Fatal(
                    e.context(format!("reading the {} detector state", d.label())),
                ))
            }
        };
        match d.pass(saved.as_deref(), now) {
            Ok(mut pass) => {
                errors.extend(pass.file_errors.iter().cloned());
                local.limited.extend(pass.limited.iter().cloned());
                errors.extend(pass.missing.iter().cloned());
                local.limited.extend(pass.notes.iter().cloned());
                local.unparsed.extend(pass.unparsed.iter().cloned());
                if let Some(&i) = index.get(pass.source) {
                    inputs.push(Input {
                        source: i,
                        sightings: std::mem::take(&mut pass.sightings).into(),
                        complete: false,
                    });
                }
                local.offences.append(&mut pass.offences);
                local.passes.push(pass);
            }
            // The source name leads, so `status` finds the line.
            Err(e) => errors.push(format!("{}: {e}; its last bans are kept", d.source())),
        }
    }
    Ok(local)
}

/// The apply step: baseline, detectors, gate and decide, plan, apply, persist.
fn local_step(
    settings: &Settings,
    backend: &dyn SetBackend,
    mut store: Option<&mut Store>,
    sources: &Sources,
    mut remote: Remote,
    now: i64,
    clock: &Clock,
) -> Result<Step, SyncError> {
    let dry_run = !backend.changes_kernel();
    let (mut previous, rebuilt) = load_previous(settings, backend, store.as_deref(), sources, now)?;
    clock.phase("loaded state");
    let mut errors = std::mem::take(&mut remote.errors);
    let mut inputs = std::mem::take(&mut remote.inputs);
    let local = detect_local(
        settings,
        store.as_deref(),
        sources,
        &mut inputs,
        &mut errors,
        now,
    )?;
    clock.phase("detected");
    // The kernel's set list is read by another process while this one decides.
    let survey = backend.survey_start();

    let mut allow_summary = AllowSummary::default();
    let mut allow = base_allowlist(settings, &mut allow_summary);
    for (ip, name) in std::mem::take(&mut remote.hosts) {
        allow.add(net::host_net(ip), AllowReason::FeedHost(name));
        allow_summary.feed_hosts += 1;
    }
    if let Some(l) = &remote.peers {
        super::protect::add_fresh(&mut allow, l, &mut allow_summary);
    }
    let mut warnings = std::mem::take(&mut remote.warnings);
    warnings.append(&mut allow_summary.notes);
    warnings.extend(local.limited.iter().cloned());
    warnings.extend(local.unparsed.iter().cloned());
    warnings.extend(super::protect::on_link_warnings(sources, &inputs, &allow));
    for w in &warnings {
        tracing::warn!("{w}");
    }
    // Manual unbans keep addresses out until a source lists them afresh (see manual.rs).
    let mut unbans = match store.as_deref() {
        Some(s) => super::manual::Unbans::load(s)?,
        None => super::manual::Unbans::default(),
    };
    unbans.filter(&mut inputs, sources);
    unbans.strip(&mut previous);
    total_ceiling(
        settings,
        sources,
        &previous,
        &mut inputs,
        &mut remote,
        &mut errors,
        now,
    );
    clock.phase("checked the total coverage");

    let caps = caps(settings);
    // A dry run that cannot read the kernel diffs against what the saved state decides.
    let saved_decision = dry_run.then(|| {
        decide::decide(
            previous.clone(),
            Vec::new(),
            &sources.policies,
            &allow,
            caps,
            now,
        )
    });
    let mut decision = decide::decide(previous, inputs, &sources.policies, &allow, caps, now);
    let mut saved_decision = saved_decision;
    disjoint_for(backend, &mut decision, saved_decision.as_mut());
    warnings.extend(future_marks(sources, &decision));
    let candidates = settings
        .report
        .as_ref()
        .map(|r| report::select(r, &local.offences, &|ip| decision.holds(ip)));
    clock.phase("decided");

    let survey = survey.finish();
    let planned = plan_sets(
        settings,
        backend,
        store.as_deref(),
        survey.as_ref(),
        &decision,
        saved_decision.as_ref(),
        now,
    )?;
    clock.phase("planned");
    let mut report = build_report(
        sources,
        &remote,
        &local,
        &decision,
        planned.plans,
        allow_summary,
        errors,
        now,
    );
    report.dry_run = dry_run;
    report.warnings = warnings;
    report.state_rebuilt = rebuilt;
    report.baseline = planned.baseline;
    report.baseline_note = planned.note;
    report.state = store
        .as_deref()
        .map(|s| s.path().display().to_string())
        .unwrap_or_else(|| Store::db_path(&settings.state_dir).display().to_string());
    let apply = |report: &mut RunReport| {
        apply_sets(settings, backend, survey.as_ref(), &decision, report, now);
        clock.phase("applied");
    };
    if dry_run {
        apply(&mut report);
        report.outcome = if report.errors.is_empty() {
            Outcome::Ok
        } else {
            Outcome::Partial
        };
        return Ok(Step { report, candidates });
    }
    if let Some(s) = store.as_deref_mut() {
        mark_dirty(backend, s, &report)?;
    }
    let verified_at = verified_after(&report, planned.verified_at, now);
    let persist = super::persist::Persist {
        settings,
        sources,
        remote,
        passes: local.passes,
        decision: &decision,
        unbans: &mut unbans,
        candidates: candidates.as_deref(),
        verified_at,
        now,
    };
    super::persist::apply_then_persist(store, persist, &mut report, |r| {
        apply(r);
        Ok(())
    })?;
    clock.phase("committed");
    write_export(settings, sources, &decision, &mut report, now);
    Ok(Step { report, candidates })
}

/// Rewrite the `export:` file after the commit (it never lists what the state does not hold).
/// A failure is the run's error (exit 3), not a stop.
fn write_export(
    settings: &Settings,
    sources: &Sources,
    decision: &Decision,
    report: &mut RunReport,
    now: i64,
) {
    let Some(x) = &settings.export else { return };
    let own = super::export::own_detections(sources, decision, now);
    if let Err(e) = super::export::write(&x.path, &own, x.format, now) {
        let m = format!("export {}: {e:#}", x.path.display());
        tracing::error!("{m}");
        report.errors.push(m);
        if report.outcome == Outcome::Ok {
            report.outcome = Outcome::Partial;
        }
    }
}

/// [`disjoint`] both decisions when the backend needs it.
fn disjoint_for(backend: &dyn SetBackend, decision: &mut Decision, saved: Option<&mut Decision>) {
    if backend.disjoint() {
        disjoint(decision);
        saved.map(disjoint);
    }
}

/// Make the desired entries disjoint, for a backend whose sets refuse overlaps (nft).
pub fn disjoint(d: &mut Decision) {
    let dropped = plan::make_disjoint(&mut d.desired_v4) + plan::make_disjoint(&mut d.desired_v6);
    if dropped > 0 {
        tracing::debug!("{dropped} entries inside a larger banned prefix are left out of the sets");
    }
}

/// The saved entries, and (see [`recover_kernel`]) what the kernel sets hold when the state
/// was rebuilt after a loss.
fn load_previous(
    settings: &Settings,
    backend: &dyn SetBackend,
    store: Option<&Store>,
    sources: &Sources,
    now: i64,
) -> Result<(Vec<Entry>, Option<crate::store::health::Rebuilt>), SyncError> {
    let Some(s) = store else {
        return Ok((Vec::new(), None));
    };
    let mut previous = s.load_entries(&sources.index())?;
    let rebuilt = match backend.changes_kernel() {
        true => recover_kernel(settings, backend, s, sources, &mut previous, now)?,
        false => None,
    };
    Ok((previous, rebuilt))
}

/// After the state database was rebuilt (see `store::health`), the first sync takes in every
/// entry of the live kernel sets as a mark of the `recovered` source, expiring when its kernel
/// timeout would: what the sets held stays held until the sources (every feed is due, the
/// detectors read their files from the start) list it again, or it times out as it would
/// have. Returns the marker, updated for the commit, when this run did it.
fn recover_kernel(
    settings: &Settings,
    backend: &dyn SetBackend,
    store: &Store,
    sources: &Sources,
    previous: &mut Vec<Entry>,
    now: i64,
) -> Result<Option<crate::store::health::Rebuilt>, SyncError> {
    let Some(mut marker) = store.rebuilt()?.filter(|m| !m.kernel_recovered) else {
        return Ok(None);
    };
    let Some(&source) = sources.index().get(super::RECOVERED) else {
        return Ok(None);
    };
    let mut taken = Vec::new();
    for family in [Family::V4, Family::V6] {
        let spec = set_spec(settings, family);
        let current = backend.read(&spec).map_err(|e| {
            SyncError::Fatal(
                anyhow::Error::new(e).context(format!("reading kernel set {}", spec.name)),
            )
        })?;
        for &(net, timeout) in current.members() {
            let left = if timeout == 0 {
                86_400
            } else {
                i64::from(timeout)
            };
            taken.push(Entry {
                net,
                marks: smallvec::smallvec![crate::model::Mark {
                    source,
                    first_seen: now,
                    last_seen: now,
                    expires: now + left,
                }],
            });
        }
    }
    marker.kernel_recovered = true;
    marker.kernel_entries = taken.len();
    tracing::warn!(
        "the state was rebuilt: took in {} entries from the live kernel sets",
        taken.len()
    );
    previous.append(&mut taken);
    previous.sort_by(|a, b| net::cmp_net(&a.net, &b.net));
    Ok(Some(marker))
}

/// A warning per source whose saved entries were last seen in the future (saved under a clock
/// that was ahead): decide brought them back to now, each within its TTL. Logged here.
fn future_marks(sources: &Sources, decision: &Decision) -> Vec<String> {
    let warnings: Vec<String> = sources
        .policies
        .iter()
        .zip(&decision.per_source)
        .filter(|(_, c)| c.future > 0)
        .map(|(p, c)| {
            format!(
                "{}: {} saved entries were last seen in the future (the clock was ahead when they were saved); they now expire at most their TTL from now",
                p.name, c.future
            )
        })
        .collect();
    for w in &warnings {
        tracing::warn!("{w}");
    }
    warnings
}

/// The ceiling on all sources together (`max_total_coverage`, see [`super::ceiling`]): a feed
/// download that takes them over it is refused and its feed keeps its last good entries.
fn total_ceiling(
    settings: &Settings,
    sources: &Sources,
    previous: &[Entry],
    inputs: &mut Vec<Input>,
    remote: &mut Remote,
    errors: &mut Vec<String>,
    now: i64,
) {
    let verdict = super::ceiling::check(
        previous,
        inputs,
        &sources.policies,
        settings.max_total_coverage,
        now,
    );
    for r in verdict.refused {
        inputs.retain(|i| !(i.complete && i.source == r.source));
        remote.refuse_feed(settings, r.source, &r.reason, now);
        let name = sources
            .policies
            .get(r.source as usize)
            .map_or("?", |p| p.name.as_str());
        errors.push(format!(
            "feed {name}: {}; keeping its last good entries",
            r.reason
        ));
    }
    if let Some(over) = verdict.over {
        tracing::warn!("{over}; no download this run grew it, so none was refused");
    }
}

/// The plans, and what they were diffed against.
struct Planned {
    plans: Vec<FamilyPlan>,
    baseline: BaselineKind,
    note: Option<String>,
    /// When each family's kernel set was last known exactly (for the mirror).
    verified_at: [i64; 2],
}

/// Plan each family against the kernel (through the mirror when it can be trusted), or, for a
/// dry run that cannot read it, against the saved state.
fn plan_sets(
    settings: &Settings,
    backend: &dyn SetBackend,
    store: Option<&Store>,
    survey: Option<&Survey>,
    decision: &Decision,
    saved_decision: Option<&Decision>,
    now: i64,
) -> Result<Planned, SyncError> {
    let mut out = Planned {
        plans: Vec::new(),
        baseline: BaselineKind::Kernel,
        note: None,
        verified_at: [now; 2],
    };
    let dirty = match store {
        Some(s) => super::persist::kernel_changing(s)?,
        None => true,
    };
    let state_path = Store::db_path(&settings.state_dir).display().to_string();
    for family in [Family::V4, Family::V6] {
        let spec = set_spec(settings, family);
        let cap = settings.sets.get(family).cap;
        let plan_against = |current: &CurrentSet| {
            let mut p = plan::plan_family(
                family,
                &spec.name,
                cap,
                decision.desired(family),
                decision.evicted(family),
                current,
                now,
            );
            if p.rebuild.is_none() {
                p.rebuild = backend.prefers_replace(&p);
            }
            p
        };
        // The mirror of the last complete run: the reference for changes made outside sipban.
        let mirror = if dirty {
            None
        } else {
            clean_mirror(store, survey, &spec)
        };
        // A rebuild makes the set exact whatever it holds: against a mirror whose count
        // matches the kernel's, it needs no read-back; so does a diff with a backend whose
        // diff checks itself (nft). Any other plan is made against the set read back,
        // compared with the mirror.
        if let Some(m) = &mirror {
            if let Some((current, at)) = trusted_mirror(m, survey, &spec, now) {
                let p = plan_against(&current);
                let how = if p.rebuild.is_some() {
                    "a rebuild needs no read-back"
                } else if backend.diff_checks_itself() {
                    "the backend's diff checks itself, no read-back"
                } else {
                    "reading the set back to compare"
                };
                tracing::debug!(set = %spec.name, "using the kernel mirror ({}): {how}", mirror::describe(m));
                if p.rebuild.is_some() || backend.diff_checks_itself() {
                    out.verified_at[family as usize] = at;
                    out.plans.push(p);
                    continue;
                }
            }
        }
        let current = match backend.read(&spec) {
            Ok(c) => c,
            Err(e) if !backend.changes_kernel() => {
                let (cur, b, note) = match (saved_decision, store) {
                    (Some(d), Some(_)) => (
                        current_from_state(d, family, now),
                        BaselineKind::SavedState,
                        format!("kernel sets not readable ({e}); diffed against the saved state in {state_path}"),
                    ),
                    _ => (
                        CurrentSet::default(),
                        BaselineKind::Empty,
                        format!("kernel sets not readable ({e}) and no saved state at {state_path}; diffed against empty sets"),
                    ),
                };
                out.baseline = b;
                out.note = Some(note);
                cur
            }
            Err(e) => {
                return Err(SyncError::Fatal(
                    anyhow::Error::new(e).context(format!("reading kernel set {}", spec.name)),
                ));
            }
        };
        let mut p = plan_against(&current);
        if let (Some(m), true) = (&mirror, current.exists && current.compatible) {
            let drift = m.drift(current.members(), now);
            if drift.any() {
                tracing::warn!(
                    set = %spec.name,
                    "{} entries added and {} removed outside sipban since the last run",
                    drift.added,
                    drift.removed
                );
                p.outside = Some(drift);
            }
        }
        out.plans.push(p);
    }
    Ok(out)
}

/// The mirror of the last complete run, when it describes the set the kernel has now (same
/// header; see [`mirror`]).
fn clean_mirror(
    store: Option<&Store>,
    survey: Option<&Survey>,
    spec: &SetSpec,
) -> Option<mirror::Mirror> {
    let info = survey?.info(&spec.name).ok()??;
    if !info.header.matches(spec) {
        return None;
    }
    let blob = store?.blob(&mirror::key(&spec.name)).ok()??;
    mirror::Mirror::decode(&blob)
}

/// The mirror as the current set, when its count can be trusted (see [`mirror`]): the current
/// set and when it was last verified.
fn trusted_mirror(
    m: &mirror::Mirror,
    survey: Option<&Survey>,
    spec: &SetSpec,
    now: i64,
) -> Option<(CurrentSet, i64)> {
    let info = survey?.info(&spec.name).ok()??;
    // The nft survey lists headers only: no count (see `nft::ENTRIES_UNKNOWN`).
    let count = (info.entries != crate::backend::nft::ENTRIES_UNKNOWN).then_some(info.entries);
    let members = m.members_if_trusted(count, now)?;
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

/// The run report before apply.
#[allow(clippy::too_many_arguments)]
fn build_report(
    sources: &Sources,
    remote: &Remote,
    local: &Local,
    decision: &Decision,
    plans: Vec<FamilyPlan>,
    allow_summary: AllowSummary,
    errors: Vec<String>,
    now: i64,
) -> RunReport {
    let asterisk = local.passes.iter().find_map(|p| match &p.report {
        PassReport::Asterisk(a) => Some(a.clone()),
        _ => None,
    });
    let kernel = local.passes.iter().find_map(|p| match &p.report {
        PassReport::Kernel(k) => Some(k.clone()),
        _ => None,
    });
    RunReport {
        dry_run: false,
        started: now,
        finished: now,
        state: String::new(),
        baseline: BaselineKind::Kernel,
        baseline_note: None,
        sources: sources
            .policies
            .iter()
            .zip(&sources.kinds)
            .enumerate()
            .map(|(i, (p, kind))| SourceReport {
                name: p.name.clone(),
                kind,
                priority: p.priority,
                feed: remote.feed_reports.get(i).cloned(),
                apiban: remote.apiban.clone().filter(|_| *kind == "apiban"),
                crowdsec: remote.crowdsec.clone().filter(|_| *kind == "crowdsec"),
                asterisk: asterisk.clone().filter(|_| *kind == "asterisk"),
                kernel: kernel.clone().filter(|_| *kind == "kernel"),
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
        warnings: Vec::new(),
        outcome: Outcome::Ok,
        state_rebuilt: None,
        not_saved: None,
        upstream: None,
        firewall: None,
    }
}

/// Apply both families' plans through the backend (one transaction when the backend can). A
/// run killed from here until its final commit leaves the dirty marker set, so the next run
/// reads the kernel back instead of trusting the mirror.
fn apply_sets(
    settings: &Settings,
    backend: &dyn SetBackend,
    survey: Option<&Survey>,
    decision: &Decision,
    report: &mut RunReport,
    now: i64,
) {
    let mut failed = false;
    let specs = [Family::V4, Family::V6].map(|f| set_spec(settings, f));
    let desired = [Family::V4, Family::V6].map(|f| decision.desired(f));
    let results = backend.apply_both(&specs, &report.sets, desired, survey, now);
    for (fi, (spec, result)) in specs.iter().zip(results).enumerate() {
        if let Err(e) = result {
            report.errors.push(format!("set {}: {e:#}", spec.name));
            failed = true;
        } else if let Some(o) = report.sets[fi].outside {
            let what = format!(
                "set {}: {} entries added and {} removed outside sipban",
                spec.name, o.added, o.removed
            );
            report.warnings.push(if backend.changes_kernel() {
                format!("{what}; repaired")
            } else {
                format!("{what}; a real run repairs it")
            });
        }
    }
    report.applied = !failed && backend.changes_kernel();
    report.outcome = if failed { Outcome::Failed } else { Outcome::Ok };
    // Newly banned sources lose their tracked flows (only with the `conntrack` tool).
    if report.applied {
        forget_flows(report);
    }
}

/// Before a change reaches the kernel, the mirror stops being trusted: a run killed during
/// the apply leaves the marker set, and the next one reads the sets back.
fn mark_dirty(
    backend: &dyn SetBackend,
    store: &mut Store,
    report: &RunReport,
) -> Result<(), SyncError> {
    if backend.changes_kernel() && report.sets.iter().any(|p| !p.is_noop()) {
        super::persist::mark_kernel_changing(store)?;
    }
    Ok(())
}

/// When each set was last verified once the apply succeeds: now for a rebuilt set (it holds
/// exactly what was written), else when the plan's baseline was.
fn verified_after(report: &RunReport, mut verified_at: [i64; 2], now: i64) -> [i64; 2] {
    for (fi, p) in report.sets.iter().enumerate().take(2) {
        if p.rebuild.is_some() {
            verified_at[fi] = now;
        }
    }
    verified_at
}

/// Drop the conntrack entries of newly banned sources.
fn forget_flows(report: &RunReport) {
    let added: Vec<IpNet> = report
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
