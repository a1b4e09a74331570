//! The resolved `journal:` section: which systemd journal the detectors read when an input
//! says `journal: true` (the system journal by default, or one directory).
//!
//! This module must never read the journal: `source::journal` does that at run time.

use super::raw::RawJournal;
use serde::Serialize;
use std::path::PathBuf;

/// Where the journal is read from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct JournalSettings {
    /// `journalctl --directory=DIR`; `None`: the system journal, as `journalctl` reads it.
    pub directory: Option<PathBuf>,
}

/// Apply defaults and validate the `journal:` section.
pub fn resolve(raw: RawJournal) -> Result<JournalSettings, String> {
    if let Some(d) = &raw.directory {
        if !d.is_absolute() {
            return Err(format!(
                "directory must be an absolute path (got {})",
                d.display()
            ));
        }
    }
    Ok(JournalSettings {
        directory: raw.directory,
    })
}
