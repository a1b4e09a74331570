//! `sipban sync`, `sipban run` and `sipban restore`: the commands that change the sets.
//!
//! This module must never hold pipeline logic: it starts the library's run and reports it.

use super::{out, runtime, show, Error, Kind, Result};
use crate::backend::ipset::Ipset;
use crate::config::Settings;
use crate::pipeline::sync::{self, Outcome, SyncError};
use std::path::Path;

/// `sipban sync [--dry-run] [--json] [--retry-now]`.
pub fn sync(settings: &Settings, dry_run: bool, json: bool, retry_now: bool, now: i64) -> Result {
    let rt = runtime()?;
    let ipset = Ipset::new();
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
                    eprintln!("sipban: metrics: {e:#}");
                }
            }
            if json {
                show(&report, true);
            } else {
                out(&report.to_string());
            }
            for e in &report.errors {
                eprintln!("sipban: {e}");
            }
            match report.outcome {
                Outcome::Ok => Ok(()),
                Outcome::Partial => Err(Error::reported(Kind::Partial)),
                Outcome::Failed => Err(Error::reported(Kind::Failed)),
            }
        }
        Err(SyncError::Locked(e)) => Err(Error::new(Kind::Locked, format!("sipban: {e}"))),
        Err(e) => {
            let mut message = format!("sipban: {e}");
            if !dry_run {
                message.push_str("\nsipban: nothing was changed (use `sipban sync --dry-run` to preview without root)");
            }
            Err(Error::new(Kind::Failed, message))
        }
    }
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
    match crate::pipeline::restore::restore(settings, &Ipset::new(), now) {
        Ok(report) => {
            show(&report, json);
            for e in &report.errors {
                eprintln!("sipban restore: {e}");
            }
            if report.errors.is_empty() {
                Ok(())
            } else {
                Err(Error::reported(Kind::Failed))
            }
        }
        Err(RestoreError::Locked(e)) => {
            Err(Error::new(Kind::Locked, format!("sipban restore: {e}")))
        }
        Err(e) => Err(Error::new(Kind::Failed, format!("sipban restore: {e}"))),
    }
}
