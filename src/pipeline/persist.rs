//! Persist one sync: the feed caches by rename, then one store transaction (entries, feed
//! metadata, detector states, the refused prefixes, the kernel mirror, the run record, the
//! report queue), then the manual unbans.
//!
//! While the kernel apply runs (another process, `ipset restore` or `nft -f`, doing most of a
//! large sync's work while this one waits), a second thread writes the caches and stages the
//! transaction. It commits only after the apply has succeeded, with the run record (which
//! tells what the apply did) written last in it. A failed apply rolls the staged transaction
//! back, and the state is then written as before, without a mirror. So the state never
//! describes a kernel change before it is made, as when the steps ran one after the other.
//!
//! This module must never touch the kernel, and never commit the mirror of an apply that
//! failed.

use super::decide::Decision;
use super::detect;
use super::manual::Unbans;
use super::summary::{NotSaved, Outcome, RunReport, SyncError};
use super::Sources;
use crate::backend::mirror;
use crate::clock::unix_now;
use crate::config::Settings;
use crate::net::Family;
use crate::report;
use crate::source::feed;
use crate::store::{RunCommit, RunRecord, Store, StoreTx};
use anyhow::Context;
use std::sync::mpsc;

/// What a run persists besides its report.
pub(super) struct Persist<'a> {
    pub settings: &'a Settings,
    pub sources: &'a Sources,
    pub remote: super::gather::Remote,
    pub passes: Vec<detect::Pass>,
    pub decision: &'a Decision,
    pub unbans: &'a mut Unbans,
    pub candidates: Option<&'a [report::Candidate]>,
    /// When each set was last verified, as the apply leaves it.
    pub verified_at: [i64; 2],
    pub now: i64,
}

/// Why a staged transaction was rolled back: the apply failed (not an error of the store).
#[derive(Debug)]
struct ApplyFailed;

impl std::fmt::Display for ApplyFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the kernel apply failed; the staged state was rolled back")
    }
}

impl std::error::Error for ApplyFailed {}

/// Run `apply` and persist its run. With a store, the caches and the transaction are written
/// on a second thread while `apply` runs; see the module comment.
pub(super) fn apply_then_persist(
    store: Option<&mut Store>,
    mut p: Persist<'_>,
    report: &mut RunReport,
    apply: impl FnOnce(&mut RunReport) -> Result<(), SyncError>,
) -> Result<(), SyncError> {
    let Some(store) = store else {
        apply(report)?;
        write_caches(&p.remote, report);
        settle(report);
        report.finished = unix_now().max(p.now);
        return Ok(());
    };
    let mut blobs = state_blobs(&mut p, store, report)?;
    let base = blobs.len();
    blobs.extend(mirror_blobs(p.settings, p.decision, p.verified_at));
    let names = p.sources.names();
    let packed = p.sources.packed();
    let (caches_done, caches_rx) = mpsc::channel::<Vec<String>>();
    let (verdict_tx, verdict_rx) = mpsc::channel::<Option<RunRecord>>();
    let (applied, staged) = std::thread::scope(|s| {
        let verdict = verdict_tx;
        let (remote, decision, settings, candidates, now) =
            (&p.remote, p.decision, p.settings, p.candidates, p.now);
        let blobs = &blobs;
        let (names, packed) = (&names, &packed);
        let st = &mut *store;
        let worker = s.spawn(move || {
            let _ = caches_done.send(cache_errors(remote));
            let commit = RunCommit {
                entries: &decision.entries,
                source_names: names,
                packed,
                feeds: &remote.new_metas,
                blobs,
                run: None,
            };
            st.commit_run_with(&commit, |tx| {
                enqueue(tx, settings, candidates, now)?;
                match verdict_rx.recv() {
                    Ok(Some(record)) => tx.record_run(&record),
                    _ => Err(ApplyFailed.into()),
                }
            })
        });
        let applied = apply(report);
        report.errors.extend(caches_rx.recv().unwrap_or_default());
        let ok = applied.is_ok() && report.outcome != Outcome::Failed;
        let record = ok.then(|| {
            settle(report);
            run_record(report, now)
        });
        // The worker waits for this; it commits only with a record.
        let _ = verdict.send(record);
        drop(verdict);
        (applied, worker.join())
    });
    applied?;
    let staged = match staged {
        Ok(r) => r,
        Err(_) => Err(anyhow::anyhow!("the state thread panicked")),
    };
    if report.outcome == Outcome::Failed {
        // The staged transaction was rolled back: write the state without the mirror.
        blobs.truncate(base);
        return commit_plain(store, p, &blobs, report);
    }
    if staged.is_ok() {
        // The mirror just committed describes the kernel.
        if let Err(e) = store.clear_flag(mirror::CHANGING_FLAG) {
            tracing::warn!("{e:#}; the next run reads the kernel sets back");
        }
    }
    save_rest(store, p.unbans, staged, report);
    Ok(())
}

/// Before a change reaches the kernel outside a sync's commit, the mirror stops being trusted
/// (see [`mirror`]): a run killed before its commit leaves the marker raised.
pub fn mark_kernel_changing(store: &Store) -> anyhow::Result<()> {
    store.set_flag(mirror::CHANGING_FLAG)
}

/// Whether the kernel may hold something the committed mirror does not describe.
pub fn kernel_changing(store: &Store) -> anyhow::Result<bool> {
    Ok(store.flag(mirror::CHANGING_FLAG)?
        || store.blob(mirror::DIRTY_KEY)?.is_some_and(|v| v != b"0"))
}

/// After the run's transaction: the manual unbans and `manual.list`; a failure of any of it
/// is told as the state not saved.
fn save_rest(
    store: &mut Store,
    unbans: &mut Unbans,
    committed: anyhow::Result<()>,
    report: &mut RunReport,
) {
    let saved = committed
        .context("saving state")
        .and_then(|()| unbans.save(store))
        .and_then(|()| store.ensure_manual_list());
    if let Err(e) = saved {
        report.not_saved = Some(not_saved(report, store.path(), &e));
    }
}

/// The outcome of an apply that did not fail: partial when any source or cache failed.
fn settle(report: &mut RunReport) {
    if report.outcome != Outcome::Failed {
        report.outcome = if report.errors.is_empty() {
            Outcome::Ok
        } else {
            Outcome::Partial
        };
    }
}

/// The run's row of history, stamped now.
fn run_record(report: &mut RunReport, now: i64) -> RunRecord {
    let finished = unix_now().max(now);
    report.finished = finished;
    RunRecord {
        started: now,
        finished,
        outcome: report.outcome.label().to_string(),
        summary: report.summary_json().to_string(),
    }
}

/// Replace the feed caches (each by rename); the errors, one line each.
fn cache_errors(remote: &super::gather::Remote) -> Vec<String> {
    remote
        .cache_writes
        .iter()
        .filter_map(|(path, nets)| feed::write_cache(path, nets).err())
        .map(|e| format!("feed cache: {e:#}"))
        .collect()
}

fn write_caches(remote: &super::gather::Remote, report: &mut RunReport) {
    let errors = cache_errors(remote);
    report.errors.extend(errors);
}

/// The report queue, in the run's transaction (with the detector cursors).
fn enqueue(
    tx: &StoreTx<'_>,
    settings: &Settings,
    candidates: Option<&[report::Candidate]>,
    now: i64,
) -> anyhow::Result<()> {
    match (&settings.report, candidates) {
        (Some(r), Some(c)) => report::queue::enqueue_all(&tx.report_queue(), r, c, now),
        _ => Ok(()),
    }
}

/// The blobs every run writes: detector states, what the gate refused per source, the
/// resolved peer names, the rebuilt-state marker.
fn state_blobs(
    p: &mut Persist<'_>,
    store: &Store,
    report: &RunReport,
) -> Result<Vec<(String, Vec<u8>)>, SyncError> {
    let mut blobs: Vec<(String, Vec<u8>)> = std::mem::take(&mut p.passes)
        .into_iter()
        .map(|p| (p.state_key.to_string(), p.blob))
        .collect();
    // What the gate refused, per source that listed anything this run (for `explain`).
    for (policy, counts) in p.sources.policies.iter().zip(&p.decision.per_source) {
        if counts.listed > 0 {
            let mut refused = counts.refused.clone();
            let key = super::gate::refused_key(&policy.name);
            blobs.push((key, super::gate::encode_refused(&mut refused)));
        }
    }
    // The peer names as resolved now (a name that did not resolve keeps its last addresses).
    if let Some(l) = &p.remote.peers {
        let saved = store
            .blob(super::protect::PEERS_KEY)?
            .map(|b| super::protect::Resolved::decode(&b))
            .unwrap_or_default();
        blobs.push((
            super::protect::PEERS_KEY.to_string(),
            l.merged(&saved).encode(),
        ));
    }
    if let Some(r) = &report.state_rebuilt {
        blobs.push((crate::store::health::REBUILT_KEY.to_string(), r.encode()));
    }
    Ok(blobs)
}

/// What the kernel sets hold after a complete apply, for the next run, and the older versions'
/// dirty marker cleared (the flag file is lowered after the commit).
fn mirror_blobs(
    settings: &Settings,
    decision: &Decision,
    verified_at: [i64; 2],
) -> Vec<(String, Vec<u8>)> {
    let mut blobs = Vec::with_capacity(3);
    for (fi, family) in [Family::V4, Family::V6].into_iter().enumerate() {
        let m = mirror::Mirror::from_desired(decision.desired(family), verified_at[fi]);
        blobs.push((mirror::key(&settings.sets.get(family).name), m.encode()));
    }
    blobs.push((mirror::DIRTY_KEY.to_string(), b"0".to_vec()));
    blobs
}

/// The state of a run whose apply failed, written on this thread (the caches were written).
fn commit_plain(
    store: &mut Store,
    p: Persist<'_>,
    blobs: &[(String, Vec<u8>)],
    report: &mut RunReport,
) -> Result<(), SyncError> {
    let record = run_record(report, p.now);
    let names = p.sources.names();
    let packed = p.sources.packed();
    let saved = store.commit_run_with(
        &RunCommit {
            entries: &p.decision.entries,
            source_names: &names,
            packed: &packed,
            feeds: &p.remote.new_metas,
            blobs,
            run: Some(&record),
        },
        |tx| enqueue(tx, p.settings, p.candidates, p.now),
    );
    save_rest(store, p.unbans, saved, report);
    Ok(())
}

/// What a run that could not save its state tells: exactly what it applied, and why the
/// state was not saved (the fault named when it is one: disk full, read-only, permission).
/// The marker raised before the apply stays raised, so the next run reads the kernel back and
/// reconciles.
fn not_saved(report: &RunReport, db: &std::path::Path, e: &anyhow::Error) -> NotSaved {
    let fault = crate::store::health::fault(e, db).filter(|f| f.is_storage());
    let why = match &fault {
        Some(f) => f.to_string(),
        None => format!("{e:#}"),
    };
    let (adds, dels): (usize, usize) = report
        .sets
        .iter()
        .fold((0, 0), |(a, d), p| (a + p.adds.len(), d + p.dels.len()));
    let applied = if report.applied && (adds > 0 || dels > 0) {
        format!("the kernel sets were updated (+{adds}/-{dels})")
    } else if report.applied {
        "the kernel sets needed no change".to_string()
    } else {
        "the kernel sets were not fully updated".to_string()
    };
    let message =
        format!("{applied} but the state could not be saved: {why}; the next run reconciles");
    tracing::error!("{message}");
    NotSaved {
        message,
        storage: fault.is_some(),
    }
}
