//! The resolved `daemon:` section: when `sipban run` starts a full sync, and which feeds are
//! downloaded on a schedule of their own.
//!
//! This module must never sleep, read the clock or start anything: the daemon does, from
//! these settings.

use super::feed::FeedSettings;
use super::raw::RawDaemon;
use super::schedule::Schedule;
use serde::Serialize;

/// The default full-sync schedule: every ten minutes, at second 0 (UTC).
pub const DEFAULT_SYNC_SCHEDULE: &str = "0 */10 * * * *";
/// Resolved `daemon:`.
#[derive(Clone, Debug, Serialize)]
pub struct DaemonSettings {
    pub sync_schedule: Schedule,
    pub feed_schedules: Vec<(String, Schedule)>,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            // A constant pattern; `default_schedule_parses` proves it.
            sync_schedule: Schedule::parse(DEFAULT_SYNC_SCHEDULE)
                .unwrap_or_else(|e| unreachable!("{e}")),
            feed_schedules: Vec::new(),
        }
    }
}

/// Resolve `daemon:` against the resolved feeds.
pub fn resolve(raw: Option<RawDaemon>, feeds: &[FeedSettings]) -> Result<DaemonSettings, String> {
    let raw = raw.unwrap_or_default();
    let mut d = DaemonSettings::default();
    if let Some(s) = raw.sync_schedule {
        d.sync_schedule = Schedule::parse(&s).map_err(|e| format!("sync_schedule: {e}"))?;
    }
    for (name, s) in raw.feed_schedules.unwrap_or_default() {
        if !feeds.iter().any(|f| f.name == name) {
            return Err(format!(
                "feed_schedules: `{name}` is not a configured feed (known: {})",
                feeds
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let sched = Schedule::parse(&s).map_err(|e| format!("feed_schedules.{name}: {e}"))?;
        d.feed_schedules.push((name, sched));
    }
    Ok(d)
}
