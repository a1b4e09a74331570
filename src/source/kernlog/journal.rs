//! The kernel's entries in the systemd journal (`kernel_log.journal: true`, or instead of a
//! default `/var/log/kern.log` that does not exist, as on Debian 12 and 13 without rsyslog).
//!
//! The match is `_TRANSPORT=kernel`, a field journald sets itself for what it read from
//! `/dev/kmsg` (which only root can write), and never `SYSLOG_IDENTIFIER=kernel`, which any
//! account can write (`logger -t kernel`). Not `journalctl -k` either: it adds a current-boot
//! filter, and the lines logged before a reboot between two runs would be lost. Each entry's
//! MESSAGE is the kernel's line without a wrapper; its time is the entry's.
//!
//! This module must never count an entry whose transport is not the kernel's.

use crate::source::journal::{self, JournalSettings, JournalStats, Position, Query};
use crate::source::tail::Budget;
use serde::{Deserialize, Serialize};

/// The journal match.
pub const MATCHES: [&str; 1] = ["_TRANSPORT=kernel"];

/// What the detector keeps of the journal between runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalState {
    #[serde(default)]
    pub position: Position,
    /// The time of the last entry (for the engine's undated lines).
    #[serde(default)]
    pub last_time: Option<i64>,
}

/// What a pass read from the journal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct JournalReport {
    /// Which journal and match.
    pub journal: String,
    #[serde(flatten)]
    pub stats: JournalStats,
    /// Lines read, parsed, matched, refused and unparsed, as for a file.
    pub counts: crate::source::input::InputCounts,
    /// A read error (the position was left unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Read the kernel's entries from `state` (left unchanged on an error), handing each message
/// and its time to `on_message`. `bound`: where a first read, or one after a lost cursor,
/// starts (Unix seconds).
pub fn follow(
    settings: &JournalSettings,
    state: &mut JournalState,
    bound: i64,
    budget: &mut Budget,
    on_message: &mut dyn FnMut(&[u8], &mut Option<i64>),
) -> JournalReport {
    let q = Query {
        journal: settings,
        matches: &MATCHES,
        bound,
    };
    let mut report = JournalReport {
        journal: q.name(),
        ..JournalReport::default()
    };
    let mut last_time = state.last_time;
    let r = journal::read(&q, &state.position, budget, &mut |e| {
        if e.transport != b"kernel" {
            return;
        }
        last_time = Some(e.time());
        on_message(e.message, &mut last_time);
    });
    match r {
        Ok((pos, stats)) => {
            state.position = pos;
            state.last_time = last_time;
            report.stats = stats;
        }
        Err(e) => {
            report.error = Some(e.to_string());
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::super::{inputs, KernelLogSettings};
    use super::*;

    #[test]
    fn the_journal_replaces_a_missing_default_kern_log_only() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("kern.log");
        let mut s = KernelLogSettings {
            files: vec![missing.clone()],
            journal_fallback: Some(JournalSettings::default()),
            ..KernelLogSettings::default()
        };
        let (files, j) = inputs(&s);
        assert!(files.is_empty() && j.is_some());
        std::fs::write(&missing, "").unwrap();
        let (files, j) = inputs(&s);
        assert_eq!((files, j), (&[missing.clone()][..], None));
        // No fallback (files given, or `journal: false`): the file, missing or not.
        s.journal_fallback = None;
        std::fs::remove_file(&missing).unwrap();
        assert_eq!(inputs(&s).1, None);
        // `journal: true`: both.
        s.journal = Some(JournalSettings::default());
        assert_eq!(
            inputs(&s),
            (&[missing][..], Some(&JournalSettings::default()))
        );
    }
}
