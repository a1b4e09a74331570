//! `sipban sync`, `sipban run` and `sipban restore`: the commands that change the sets.
//!
//! This module must never hold pipeline logic: it starts the library's run and reports it.

use super::{out, runtime, show, Error, Kind, Result};
use crate::backend::Kernel;
use crate::config::Settings;
use crate::pipeline::sync::{self, Outcome, SyncError};
use std::path::Path;

/// `sipban sync [--dry-run] [--json] [--retry-now]`.
pub fn sync(settings: &Settings, dry_run: bool, json: bool, retry_now: bool, now: i64) -> Result {
    let rt = runtime()?;
    let ipset = Kernel::open(settings)
        .map_err(|e| Error::new(Kind::Failed, format!("sipban sync: {e:#}")))?;
    let started = std::time::Instant::now();
    // --retry-now: every feed is due in this run, whatever its interval and back-off say (a
    // back-off never exceeds the interval), as the daemon does for a feed schedule.
    let all_due;
    let settings = if retry_now {
        let mut s = settings.clone();
        for f in &mut s.feeds {
            f.interval = 0;
        }
        all_due = s;
        &all_due
    } else {
        settings
    };
    match rt.block_on(sync::run(settings, &ipset, dry_run, now)) {
        Ok(report) => {
            if !dry_run {
                let secs = started.elapsed().as_secs_f64();
                if let Err(e) = crate::metrics::after_run(settings, &report, secs, &ipset) {
                    eprintln!(
                        "{}sipban: metrics: {e:#}",
                        crate::logging::journal_prefix(4)
                    );
                }
            }
            if json {
                show(&report, true);
            } else {
                out(&report.to_string());
            }
            // Under systemd, each with its journal priority: a source error is a warning (the
            // run went on), an unsaved state an error.
            let (warning, error) = (
                crate::logging::journal_prefix(4),
                crate::logging::journal_prefix(3),
            );
            for e in &report.errors {
                eprintln!("{warning}sipban: {e}");
            }
            if let Some(n) = &report.not_saved {
                eprintln!("{error}sipban: {}", n.message);
            }
            match exit_kind(&report) {
                None => Ok(()),
                Some(kind) => Err(Error::reported(kind)),
            }
        }
        Err(e) => Err(sync_error(e, &settings.state_dir, dry_run)),
    }
}

/// The exit code of a completed run: the most severe that applies, 1 (failed) > 5 (state not
/// saved: storage) > 6 (state rebuilt after corruption) > 3 (a source failed).
pub fn exit_kind(report: &sync::RunReport) -> Option<Kind> {
    let storage = report.not_saved.as_ref().map(|n| n.storage);
    if report.outcome == Outcome::Failed || storage == Some(false) {
        Some(Kind::Failed)
    } else if storage == Some(true) {
        Some(Kind::Storage)
    } else if report.state_rebuilt.is_some() {
        Some(Kind::Corrupt)
    } else if report.outcome == Outcome::Partial {
        Some(Kind::Partial)
    } else {
        None
    }
}

/// A run that stopped before its apply step: another run holds the lock (4), the state
/// could not be read or written (5: disk full, read-only, permission denied; 6: corrupt and
/// could not be moved aside), or anything else (1). Nothing was changed.
fn sync_error(e: SyncError, state_dir: &Path, dry_run: bool) -> Error {
    use crate::store::health::{fault, FaultKind};
    let (kind, text) = match e {
        SyncError::Locked(l @ crate::lock::LockError::Busy { .. }) => {
            return Error::new(Kind::Locked, format!("sipban: {l}"))
        }
        SyncError::Locked(l) => {
            let text = l.to_string();
            match fault(&anyhow::Error::new(l), state_dir) {
                Some(f) => (Kind::Storage, format!("sipban: {f} ({text})")),
                None => (Kind::Failed, format!("sipban: {text}")),
            }
        }
        SyncError::Fatal(e) => {
            let db = crate::store::Store::db_path(state_dir);
            match fault(&e, &db) {
                Some(f) if f.kind == FaultKind::Corrupt => {
                    (Kind::Corrupt, format!("sipban: {f} ({e:#})"))
                }
                Some(f) => (Kind::Storage, format!("sipban: {f} ({e:#})")),
                None => (Kind::Failed, format!("sipban: {e:#}")),
            }
        }
    };
    let mut message = text;
    if !dry_run {
        message.push_str(
            "\nsipban: nothing was changed (use `sipban sync --dry-run` to preview without root)",
        );
    }
    Error::new(kind, message)
}

/// `sipban run`: the daemon, until SIGTERM.
pub fn run(config_path: &Path, settings: Settings) -> Result {
    let rt = runtime()?;
    match rt.block_on(crate::daemon::run(config_path, settings)) {
        crate::exit::OK => Ok(()),
        crate::exit::USAGE => Err(Error::reported(Kind::Usage)),
        crate::exit::PARTIAL => Err(Error::reported(Kind::Partial)),
        crate::exit::LOCKED => Err(Error::reported(Kind::Locked)),
        crate::exit::STORAGE => Err(Error::reported(Kind::Storage)),
        crate::exit::CORRUPT => Err(Error::reported(Kind::Corrupt)),
        _ => Err(Error::reported(Kind::Failed)),
    }
}

/// `sipban restore`.
pub fn restore(settings: &Settings, json: bool, now: i64) -> Result {
    use crate::pipeline::restore::RestoreError;
    let kernel = Kernel::open(settings)
        .map_err(|e| Error::new(Kind::Failed, format!("sipban restore: {e:#}")))?;
    match crate::pipeline::restore::restore(settings, &kernel, now) {
        Ok(report) => {
            show(&report, json);
            for e in &report.errors {
                eprintln!("sipban restore: {e}");
            }
            use crate::store::health::FaultKind;
            match (&report.state_error, report.state_fault) {
                _ if !report.errors.is_empty() => Err(Error::reported(Kind::Failed)),
                (Some(e), Some(FaultKind::Corrupt)) => {
                    Err(Error::new(Kind::Corrupt, format!("sipban restore: {e}")))
                }
                (Some(e), Some(_)) => {
                    Err(Error::new(Kind::Storage, format!("sipban restore: {e}")))
                }
                _ => Ok(()),
            }
        }
        Err(RestoreError::Locked(e)) => {
            Err(Error::new(Kind::Locked, format!("sipban restore: {e}")))
        }
        Err(RestoreError::Failed(e)) => {
            Err(match crate::store::health::fault(&e, &settings.state_dir) {
                Some(f) if f.is_storage() => {
                    Error::new(Kind::Storage, format!("sipban restore: {f} ({e:#})"))
                }
                _ => Error::new(Kind::Failed, format!("sipban restore: {e:#}")),
            })
        }
    }
}
