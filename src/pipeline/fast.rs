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
//! cap, or does not exist yet, the marks are saved and a full sync is asked for instead.
//!
//! This module must never add an address that the allowlist or the own addresses cover
//! (design invariant 1), and never let the kernel see more than the cap (invariant 3).

use crate::config::Settings;
use crate::pipeline::decide::plan;
use crate::pipeline::decide::Input;
use crate::backend::ipset::Ipset;
use crate::hostaddr;
use crate::lock::RunLock;
use crate::net::{self, Family};
use crate::source::kernlog;
use crate::source::{asterisk, Sighting};
use crate::store::Store;
use crate::pipeline::sync::{self, Sources};
use anyhow::{Context, Result};
use ipnet::IpNet;
use rusqlite::params;
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
    pub millis: f64,
}

/// One detector's share of a pass: its new sightings and its state to save.
struct Detected {
    /// The source name (`asterisk`, `kernel`).
    source: &'static str,
    state_key: &'static str,
    sightings: Vec<Sighting>,
    blob: Vec<u8>,
}

/// Read a detector's saved state; an unreadable one starts afresh (as in a sync).
fn load_state<T: Default, E: std::fmt::Display>(
    store: &Store,
    key: &str,
    what: &str,
    decode: impl Fn(&[u8]) -> std::result::Result<T, E>,
) -> Result<T> {
    Ok(match store.blob(key)? {
        Some(bytes) => decode(&bytes).unwrap_or_else(|e| {
            tracing::warn!("the saved {what} state is unreadable ({e}); starting afresh");
            T::default()
        }),
        None => T::default(),
    })
}

/// `who: path: error` for each file a detector could not read.
fn file_errors<'a>(
    who: &'a str,
    files: impl Iterator<Item = (&'a std::path::PathBuf, &'a Option<String>)> + 'a,
) -> impl Iterator<Item = String> + 'a {
    files.filter_map(move |(path, error)| {
        error
            .as_ref()
            .map(|e| format!("{who}: {}: {e}", path.display()))
    })
}

/// One pass. The caller holds the run lock (the daemon holds it for its lifetime).
pub fn detect_and_apply(
    _held: &RunLock,
    settings: &Settings,
    ipset: &Ipset,
    now: i64,
) -> Result<FastReport> {
    let t = Instant::now();
    let mut rep = FastReport::default();
    if settings.asterisk.is_none() && settings.kernel_log.is_none() {
        return Ok(rep);
    }
    let mut store = Store::open(&settings.state_dir)?;
    let mut detected: Vec<Detected> = Vec::new();
    if let Some(ast) = &settings.asterisk {
        let mut state: asterisk::DetectorState = load_state(
            &store,
            sync::ASTERISK_STATE,
            "Asterisk detector",
            |b: &[u8]| serde_json::from_slice(b),
        )?;
        match asterisk::run(ast, &mut state, now) {
            Ok(det) => {
                rep.lines += det.counters.lines;
                let errors = det.files.iter().map(|f| (&f.path, &f.error));
                rep.file_errors.extend(file_errors("asterisk", errors));
                detected.push(Detected {
                    source: sync::ASTERISK,
                    state_key: sync::ASTERISK_STATE,
                    sightings: det.sightings,
                    blob: serde_json::to_vec(&state)
                        .context("encoding the Asterisk detector state")?,
                });
            }
            Err(e) => rep.file_errors.push(format!("asterisk: {e}")),
        }
    }
    if let Some(k) = &settings.kernel_log {
        let mut state = load_state(
            &store,
            sync::KERNEL_STATE,
            "kernel-log detector",
            kernlog::KernelState::decode,
        )?;
        let own = hostaddr::own_ips();
        match kernlog::run(k, &mut state, &own, now) {
            Ok(det) => {
                rep.lines += det.counters.lines;
                let errors = det.files.iter().map(|f| (&f.path, &f.error));
                rep.file_errors.extend(file_errors("kernel_log", errors));
                detected.push(Detected {
                    source: kernlog::SOURCE,
                    state_key: sync::KERNEL_STATE,
                    sightings: det.sightings,
                    blob: state
                        .encode()
                        .context("encoding the kernel-log detector state")?,
                });
            }
            Err(e) => rep.file_errors.push(format!("kernel_log: {e}")),
        }
    }

    let sources = Sources::from_settings(settings);
    let index = sources.index();
    let mut inputs = Vec::with_capacity(detected.len());
    let mut blobs = Vec::with_capacity(detected.len());
    for d in detected {
        let Some(&src) = index.get(d.source) else {
            anyhow::bail!("internal: the {} source is not registered", d.source);
        };
        rep.bans += d.sightings.len();
        inputs.push(Input {
            source: src,
            sightings: d.sightings,
            complete: false,
        });
        blobs.push((d.state_key, d.blob));
    }
    let mut unbans = crate::pipeline::manual::Unbans::load(store.conn())?;
    unbans.filter(&mut inputs, &sources);
    rep.refused += unbans.dropped;

    // What the sources' address rules let through, with the source's name for the state.
    let mut accepted: Vec<(&str, Sighting)> = Vec::new();
    for input in &inputs {
        let policy = &sources.policies[input.source as usize];
        for s in &input.sightings {
            if policy.reject(&s.net).is_some() {
                rep.refused += 1;
                continue;
            }
            accepted.push((policy.name.as_str(), *s));
        }
    }
    // One add per address, with the longest of its expiries: both detectors may ban the same
    // address in one pass.
    let mut adds: [Vec<(IpNet, u32)>; 2] = [Vec::new(), Vec::new()];
    if !accepted.is_empty() {
        let mut summary = sync::AllowSummary::default();
        let allow = sync::base_allowlist(settings, &mut summary);
        let mut wanted: BTreeMap<IpNet, i64> = BTreeMap::new();
        for (_, s) in &accepted {
            if allow.subtract(&s.net).is_some() {
                // A single host overlapping the allowlist is fully covered by it.
                rep.refused += 1;
                continue;
            }
            let e = wanted.entry(s.net).or_insert(i64::MIN);
            *e = (*e).max(s.seen.saturating_add(i64::from(s.ttl)));
        }
        // What the state already holds for these addresses, feeds' packed listings included:
        // an add rewrites the kernel timeout, and must not shorten a longer ban.
        let nets: Vec<IpNet> = wanted.keys().copied().collect();
        let longest = store.longest_expiries(&nets)?;
        for ((net, expires), stored) in wanted.into_iter().zip(longest) {
            let expires = expires.max(stored.unwrap_or(i64::MIN));
            adds[Family::of(&net) as usize].push((net, plan::timeout_for(expires, now)));
        }
    }

    // Kernel first.
    for family in [Family::V4, Family::V6] {
        let list = &adds[family as usize];
        if list.is_empty() {
            continue;
        }
        let spec = sync::set_spec(settings, family);
        let cap = settings.sets.get(family).cap as usize;
        match ipset.header(&spec.name) {
            Ok(Some((h, n))) if h.matches(&spec) && n + list.len() <= cap => {
                // The kernel changes outside a sync: the next sync must not trust the mirror.
                store.put_blob(crate::backend::mirror::DIRTY_KEY, b"1")?;
                ipset
                    .apply_diff(&spec, list, &[])
                    .with_context(|| format!("adding detections to set {}", spec.name))?;
                rep.added.extend(list.iter().map(|(n, _)| *n));
            }
            Ok(Some((h, n))) if h.matches(&spec) => {
                rep.needs_sync = Some(format!(
                    "set {} holds {n} of its cap {cap}: a full run decides what to evict",
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

    // Then the state, in one transaction: marks (merged as decide merges them) and cursors.
    {
        let tx = store.conn_mut().transaction()?;
        {
            let mut up = tx.prepare(
                "INSERT INTO entries (net, source, first_seen, last_seen, expires)
                 VALUES (?1, ?2, ?3, ?3, ?4)
                 ON CONFLICT(net, source) DO UPDATE SET
                   first_seen = MIN(first_seen, ?3), last_seen = MAX(last_seen, ?3),
                   expires = MAX(expires, ?4)",
            )?;
            for (source, s) in &accepted {
                let expires = s.seen.saturating_add(i64::from(s.ttl));
                if expires <= now {
                    continue;
                }
                up.execute(params![net::display_net(&s.net), source, s.seen, expires])?;
            }
            for (key, blob) in &blobs {
                tx.execute(
                    "INSERT INTO blobs (key, value) VALUES (?1, ?2)
                     ON CONFLICT(key) DO UPDATE SET value = ?2",
                    params![key, blob],
                )?;
            }
        }
        tx.commit().context("saving detections")?;
    }
    unbans.save(store.conn_mut())?;
    rep.millis = t.elapsed().as_secs_f64() * 1000.0;
    Ok(rep)
}
