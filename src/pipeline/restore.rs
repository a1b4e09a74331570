//! `sipban restore`: put the sets back from the saved state, with no network and no feeds.
//!
//! This is what `sipban-restore.service` runs at boot, before `network-pre.target`: the kernel
//! starts with no sets, and a box whose interfaces come up before the first sync would be
//! unprotected (and an `iptables-restore` of rules that name the sets would fail). Restore reads
//! the saved entries, runs the same pure decide step as a sync with no new sightings (expired
//! entries drop out, the config allowlist and the cap apply), and rebuilds both sets in one
//! atomic batch each, every entry with its remaining TTL as the kernel timeout. Then it puts
//! back the firewall rules that `sipban firewall install` recorded.
//!
//! With no saved state it creates both sets empty, so rules that reference them can load.
//!
//! It takes the apply lock (not the run lock) and applies through the [`SetBackend`]; the
//! entries pass the same gate and decide as in a sync.
//!
//! It must never touch the network (no downloads, no DNS, no APIBAN), never write the state
//! database, and never leave a live set empty or partial because of a failure (rebuilds swap).
//! Own addresses are read as they are at that moment: at boot, before the interfaces are up,
//! that is little more than loopback, so the config `allowlist` is what protects the LAN and the
//! gateway until the first sync (which re-applies the full allowlist).

use crate::backend::rules::{self, Marker};
use crate::backend::Kernel;
use crate::backend::SetBackend;
use crate::config::Settings;
use crate::lock::{self, LockError};
use crate::net::Family;
use crate::pipeline::decide::plan;
use crate::pipeline::sync::{self, Sources};
use crate::store::Store;
use serde::Serialize;
use std::fmt;

/// One set as restored.
#[derive(Clone, Debug, Serialize)]
pub struct SetRestore {
    pub family: Family,
    pub set: String,
    /// Entries the kernel set held before (`None`: it did not exist).
    pub before: Option<usize>,
    /// Entries it holds now.
    pub after: usize,
    /// Saved entries left out: over the cap.
    pub evicted: usize,
}

/// What `sipban restore` did.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreReport {
    pub state: String,
    /// False when there was no saved state (the sets were created empty).
    pub had_state: bool,
    /// Why the saved state could not be used (corrupt, unreadable): the sets that existed were
    /// left untouched, missing ones created empty. Exit 6 when corrupt, 5 for a storage fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_fault: Option<crate::store::health::FaultKind>,
    pub sets: Vec<SetRestore>,
    /// Saved entries no longer held: every listing expired, or only sources that are no
    /// longer configured listed them.
    pub dropped: usize,
    /// The firewall rules put back (as `sipban firewall install` recorded them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firewall: Option<rules::Change>,
    pub errors: Vec<String>,
}

/// Why a restore did not complete.
#[derive(Debug)]
pub enum RestoreError {
    Locked(LockError),
    Failed(anyhow::Error),
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreError::Locked(e) => write!(f, "{e}"),
            RestoreError::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for RestoreError {}

/// Rebuild both sets from the saved state at `now`, then reinstall recorded firewall rules.
/// A failure of one family does not stop the other: the report lists it in
/// [`RestoreReport::errors`] (exit 1); `Err` only when no set could be restored at all.
pub fn restore(
    settings: &Settings,
    ipset: &Kernel,
    now: i64,
) -> Result<RestoreReport, RestoreError> {
    // The apply lock, like every writer of the sets: a daemon that holds the run lock does not
    // keep the boot-time restore from running.
    let _lock = lock::apply(&settings.state_dir, lock::APPLY_WAIT).map_err(|e| match e {
        LockError::Busy { .. } => RestoreError::Locked(e),
        LockError::Io { .. } => RestoreError::Failed(anyhow::Error::new(e)),
    })?;
    let state = Store::db_path(&settings.state_dir).display().to_string();
    let mut errors = Vec::new();
    let sources = Sources::from_settings(settings);
    // A state that cannot be read must not keep the sets from existing: rules (and an
    // iptables-restore at boot) need them. Create missing ones empty then, leave the others
    // as they are (a corrupt state is never trusted: it is checked first), and fail loudly.
    let db = Store::db_path(&settings.state_dir);
    let mut state_error = None;
    let mut state_fault = None;
    let (entries, had_state) = match Store::open_read_only(&settings.state_dir).and_then(
        |s| match s {
            Some(s) => {
                s.verify()?;
                s.load_entries(&sources.index()).map(|e| (e, true))
            }
            None => Ok((Vec::new(), false)),
        },
    ) {
        Ok(x) => x,
        Err(e) => {
            let fault = crate::store::health::fault(&e, &db);
            let text = format!(
                    "cannot read the saved state ({}{e:#}); the kernel sets found were left untouched, any missing set was created empty{}",
                    fault.as_ref().map(|f| format!("{f}: ")).unwrap_or_default(),
                    if fault.as_ref().is_some_and(|f| !f.is_storage()) {
                        "; the next `sipban sync` moves the database aside and rebuilds it from the live sets"
                    } else {
                        ""
                    }
                );
            tracing::warn!("{text}");
            state_fault = fault.map(|f| f.kind);
            if state_fault.is_none() {
                errors.push(text.clone());
            }
            state_error = Some(text);
            (Vec::new(), false)
        }
    };
    let held = entries.len();
    let (mut decision, _) = super::decide_saved(settings, &sources, entries, now);
    if ipset.as_backend().disjoint() {
        sync::disjoint(&mut decision);
    }
    let dropped = held.saturating_sub(decision.entries.len() + decision.forgotten);
    let state_failed = state_error.is_some();
    let mut sets = Vec::new();
    let backend: &dyn SetBackend = ipset.as_backend();
    for family in [Family::V4, Family::V6] {
        let spec = sync::set_spec(settings, family);
        let before = match backend.header(&spec.name) {
            Ok(h) => h.map(|(_, n)| n),
            Err(e) => {
                errors.push(format!("set {}: {e}", spec.name));
                continue;
            }
        };
        if state_failed && before.is_some() {
            // Never shrink a live set because the state could not be read.
            sets.push(SetRestore {
                family,
                set: spec.name.clone(),
                before,
                after: before.unwrap_or(0),
                evicted: 0,
            });
            continue;
        }
        let entries: Vec<(ipnet::IpNet, u32)> = decision
            .desired(family)
            .iter()
            .map(|d| (d.net, plan::timeout_for(d.expires, now)))
            .collect();
        // One atomic rebuild (its batch also removes a leftover temporary set).
        let result = backend
            .replace(&spec, &entries)
            .and_then(|()| Ok(backend.header(&spec.name)?));
        match result {
            Ok(Some((_, after))) => {
                if after != entries.len() {
                    errors.push(format!(
                        "set {}: holds {after} entries after the restore, expected {}",
                        spec.name,
                        entries.len()
                    ));
                }
                sets.push(SetRestore {
                    family,
                    set: spec.name.clone(),
                    before,
                    after,
                    evicted: decision.evicted(family),
                });
            }
            Ok(None) => errors.push(format!("set {}: missing after the restore", spec.name)),
            Err(e) => errors.push(format!("set {}: {e:#}", spec.name)),
        }
    }
    let firewall = match Marker::load(&settings.state_dir) {
        Ok(Some(m)) => {
            let opts = rules::Options {
                backend: m.backend,
                raw: m.raw,
                dry_run: false,
            };
            match rules::install(settings, &ipset.ipset(), opts) {
                Ok(c) => Some(c),
                Err(e) => {
                    errors.push(format!("firewall rules: {e:#}"));
                    None
                }
            }
        }
        Ok(None) => None,
        Err(e) => {
            errors.push(format!("firewall rules: {e:#}"));
            None
        }
    };
    if sets.is_empty() {
        return Err(RestoreError::Failed(
            anyhow::anyhow!(errors.join("; ")).context("restoring the sets"),
        ));
    }
    Ok(RestoreReport {
        state,
        had_state,
        state_error,
        state_fault,
        sets,
        dropped,
        firewall,
        errors,
    })
}

impl fmt::Display for RestoreReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(e) = &self.state_error {
            writeln!(f, "sipban restore: {e}")?;
        } else if self.had_state {
            writeln!(f, "sipban restore: sets rebuilt from {}", self.state)?;
        } else {
            writeln!(
                f,
                "sipban restore: no saved state at {}; sets created empty (the first sync fills them)",
                self.state
            )?;
        }
        for s in &self.sets {
            let before = match s.before {
                Some(n) => format!("{n} entries"),
                None => "missing".to_string(),
            };
            write!(
                f,
                "  {} ({}): {before} -> {} entries",
                s.set, s.family, s.after
            )?;
            if s.evicted > 0 {
                write!(f, ", {} over the cap left out", s.evicted)?;
            }
            writeln!(f)?;
        }
        if self.dropped > 0 {
            writeln!(
                f,
                "  {} saved entries left out: expired, or listed only by sources no longer configured",
                self.dropped
            )?;
        }
        if let Some(c) = &self.firewall {
            writeln!(
                f,
                "firewall rules (as `sipban firewall install` left them):"
            )?;
            write!(f, "{c}")?;
        }
        if !self.errors.is_empty() {
            writeln!(f, "errors:")?;
            for e in &self.errors {
                writeln!(f, "  {e}")?;
            }
        }
        Ok(())
    }
}
