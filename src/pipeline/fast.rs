//! The daemon's fast path: new log lines → detector → the kernel set, in one small batch,
//! without a full run.
//!
//! It reads what is new in the followed Asterisk logs and kernel logs with each detector's
//! saved cursors and scoring windows (the same state blobs a sync uses, so the two never read a
//! line twice), and for each new ban checks what decide would check for a single host of a
//! local source: the source's address rules, manual unbans, and the allowlist (config, own
//! addresses, manual allowlist); then it adds the survivors to the kernel set with one
//! `ipset -exist restore` batch, with the timeout of the longest mark the address has, and
//! persists the marks and the detectors' states in one transaction (kernel first, state last,
//! as in a sync: a crash in between is healed by the next pass, which reads the same lines
//! again). A detector that fails (unreadable file, bad settings) is reported; the other's share
//! goes on.
//!
//! The cap needs eviction, which only a full run does well: when the set would go over its
//! cap, the marks are saved and a full sync is asked for instead. A set that does not exist
//! yet (no sync has finished) is created holding this pass's detections, and a full sync is
//! asked for to add the rest.
//!
//! It runs under the apply lock only (never behind a sync's downloads), through the same
//! [`detect`](super::detect) passes, [`gate`](super::gate) and [`SetBackend`] as a sync.
//!
//! This module must never add an address that the allowlist or the own addresses cover
//! (design invariant 1), and never let the kernel see more than the cap (invariant 3).

use super::decide::Input;
use super::detect;
use super::gate;
use super::manual::Unbans;
use super::{base_allowlist, summary::AllowSummary, Sources};
use crate::backend::{plan, set_spec, SetBackend};
use crate::config::Settings;
use crate::lock;
use crate::model::Sighting;
use crate::net::Family;
use crate::source::asterisk::callid::CallIdMap;
use crate::store::detections::Detection;
use crate::store::Store;
use anyhow::{Context, Result};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::time::Instant;

/// What one fast pass did.
#[derive(Clone, Debug, Default)]
pub struct FastReport {
    pub lines: u64,
    /// Sightings the detectors made (new bans, and kernel-log probers still probing).
    pub bans: usize,
    /// Addresses added to a kernel set.
    pub added: Vec<IpNet>,
    /// Bans kept out (allowlist, own address, address rules, manual unban).
    pub refused: usize,
    /// Why a full sync must follow (the cap, a missing set).
    pub needs_sync: Option<String>,
    /// `detector: [path: ]error` for each detector or file that could not be read.
    pub file_errors: Vec<String>,
    /// Files whose reading the read limit cut: another pass should follow soon.
    pub limited: Vec<String>,
    pub millis: f64,
}

/// One pass, under the apply lock.
pub fn detect_and_apply(
    settings: &Settings,
    backend: &dyn SetBackend,
    now: i64,
    wire: Option<&CallIdMap>,
) -> Result<FastReport> {
    let t = Instant::now();
    let mut rep = FastReport::default();
    let detectors = detect::configured_with_wire(settings, wire);
    if detectors.is_empty() {
        return Ok(rep);
    }
    let _held = lock::apply(&settings.state_dir, lock::APPLY_WAIT)?;
    let mut store = Store::open(&settings.state_dir)?;
    let sources = Sources::from_settings(settings);
    let index = sources.index();
    let mut inputs = Vec::new();
    let mut blobs = Vec::new();
    for d in detectors {
        let saved = store.blob(d.state_key())?;
        match d.pass(saved.as_deref(), now) {
            Ok(pass) => {
                rep.lines += pass.lines;
                rep.file_errors.extend(pass.file_errors);
                rep.limited.extend(pass.limited);
                for n in pass.notes.iter().chain(&pass.unparsed) {
                    tracing::warn!("real time: {n}");
                }
                let Some(&src) = index.get(pass.source) else {
                    anyhow::bail!("internal: the {} source is not registered", pass.source);
                };
                rep.bans += pass.sightings.len();
                inputs.push(Input {
                    source: src,
                    sightings: pass.sightings.into(),
                    complete: false,
                });
                blobs.push((pass.state_key, pass.blob));
            }
            Err(e) => rep.file_errors.push(format!("{}: {e}", d.label())),
        }
    }
    gate_and_apply(
        settings, backend, &mut store, &sources, inputs, &blobs, now, &mut rep,
    )?;
    rep.millis = t.elapsed().as_secs_f64() * 1000.0;
    Ok(rep)
}

/// Sightings a resident detector made (the daemon's wire detector: HEP, live capture), marked
/// with `source`: under the apply lock, through the same manual unbans, gate, cap check, kernel
/// add and persistence as a log pass's.
pub fn apply_sightings(
    settings: &Settings,
    backend: &dyn SetBackend,
    source: &str,
    sightings: Vec<Sighting>,
    now: i64,
) -> Result<FastReport> {
    let t = Instant::now();
    let mut rep = FastReport {
        bans: sightings.len(),
        ..FastReport::default()
    };
    if sightings.is_empty() {
        return Ok(rep);
    }
    let sources = Sources::from_settings(settings);
    let Some(&src) = sources.index().get(source) else {
        anyhow::bail!("internal: the {source} source is not registered");
    };
    let _held = lock::apply(&settings.state_dir, lock::APPLY_WAIT)?;
    let mut store = Store::open(&settings.state_dir)?;
    let inputs = vec![Input {
        source: src,
        sightings: sightings.into(),
        complete: false,
    }];
    gate_and_apply(
        settings,
        backend,
        &mut store,
        &sources,
        inputs,
        &[],
        now,
        &mut rep,
    )?;
    rep.millis = t.elapsed().as_secs_f64() * 1000.0;
    Ok(rep)
}

/// Manual unbans, the gate, then the kernel and the state (in that order), for one pass's
/// inputs; `blobs` are the detectors' states saved with the marks.
#[allow(clippy::too_many_arguments)]
fn gate_and_apply(
    settings: &Settings,
    backend: &dyn SetBackend,
    store: &mut Store,
    sources: &Sources,
    mut inputs: Vec<Input>,
    blobs: &[(&str, Vec<u8>)],
    now: i64,
    rep: &mut FastReport,
) -> Result<()> {
    let mut unbans = Unbans::load(store)?;
    unbans.filter(&mut inputs, sources);
    rep.refused += unbans.dropped;

    // The gate, as for every path into a set: the source's rules and the allowlist.
    let mut summary = AllowSummary::default();
    let allow = base_allowlist(settings, &mut summary);
    for w in super::protect::on_link_warnings(sources, &inputs, &allow) {
        tracing::warn!("{w}");
    }
    let mut accepted: Vec<(&str, Sighting)> = Vec::new();
    let mut wanted: BTreeMap<IpNet, i64> = BTreeMap::new();
    for input in &inputs {
        let policy = &sources.policies[input.source as usize];
        for s in input.sightings.iter() {
            match gate::admit(policy, &allow, &s.net) {
                Ok(None) => {}
                // A single host overlapping the allowlist is covered by it whole; refuse.
                Ok(Some(_)) | Err(_) => {
                    rep.refused += 1;
                    continue;
                }
            }
            accepted.push((policy.name.as_str(), s));
            let e = wanted.entry(s.net).or_insert(i64::MIN);
            // Never dated after now (a log written under a clock that was ahead), as in decide.
            *e = (*e).max(s.seen.min(now).saturating_add(i64::from(s.ttl)));
        }
    }
    // One add per address, with the longest of its expiries: both detectors may ban the same
    // address in one pass, and what the state already holds (feeds' packed listings included)
    // must not be shortened by an add that rewrites the kernel timeout.
    let mut adds: [Vec<(IpNet, u32)>; 2] = [Vec::new(), Vec::new()];
    let nets: Vec<IpNet> = wanted.keys().copied().collect();
    let longest = store.longest_expiries(&nets)?;
    for ((net, expires), stored) in wanted.into_iter().zip(longest) {
        let expires = expires.max(stored.unwrap_or(i64::MIN));
        adds[Family::of(&net) as usize].push((net, plan::timeout_for(expires, now)));
    }
    add_to_sets(settings, backend, store, &adds, rep)?;
    save(store, &accepted, blobs, now)?;
    unbans.save(store)?;
    Ok(())
}

/// Kernel first: add within the cap, or ask for a full run (eviction, a missing set).
fn add_to_sets(
    settings: &Settings,
    backend: &dyn SetBackend,
    store: &mut Store,
    adds: &[Vec<(IpNet, u32)>; 2],
    rep: &mut FastReport,
) -> Result<()> {
    for family in [Family::V4, Family::V6] {
        let list = &adds[family as usize];
        if list.is_empty() {
            continue;
        }
        let spec = set_spec(settings, family);
        let cap = settings.sets.get(family).cap as usize;
        match backend.header(&spec.name) {
            Ok(Some((h, n))) if h.matches(&spec) && n + list.len() <= cap => {
                // The kernel changes outside a sync: the next sync must not trust the mirror.
                super::persist::mark_kernel_changing(store)?;
                backend
                    .change(&spec, list, &[])
                    .with_context(|| format!("adding detections to set {}", spec.name))?;
                rep.added.extend(list.iter().map(|(n, _)| *n));
            }
            Ok(Some((h, n))) if h.matches(&spec) => {
                rep.needs_sync = Some(format!(
                    "set {} holds {n} of its cap {cap}: a full run decides what to evict",
                    spec.name
                ));
            }
            Ok(None) if list.len() <= cap => {
                // No set yet (no sync has finished): create it with these, so the detections
                // protect now; a full run adds the rest of the state.
                super::persist::mark_kernel_changing(store)?;
                backend
                    .replace(&spec, list)
                    .with_context(|| format!("creating set {}", spec.name))?;
                rep.added.extend(list.iter().map(|(n, _)| *n));
                rep.needs_sync = Some(format!(
                    "set {} was missing and now holds this pass's detections only",
                    spec.name
                ));
            }
            Ok(_) => {
                rep.needs_sync = Some(format!(
                    "set {} is missing or of another type: a full run rebuilds it",
                    spec.name
                ));
            }
            Err(e) => return Err(anyhow::Error::new(e).context("reading the kernel set")),
        }
    }
    Ok(())
}

/// Then the state, in one transaction: marks (merged as decide merges them) and cursors.
fn save(
    store: &mut Store,
    accepted: &[(&str, Sighting)],
    blobs: &[(&str, Vec<u8>)],
    now: i64,
) -> Result<()> {
    let detections: Vec<Detection<'_>> = accepted
        .iter()
        .map(|(source, s)| Detection {
            source,
            net: s.net,
            seen: s.seen,
            expires: s.seen.saturating_add(i64::from(s.ttl)),
        })
        .filter(|d| d.expires > now)
        .collect();
    store.save_detections(&detections, blobs)
}
