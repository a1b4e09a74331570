//! The directories sipban writes into, and the check that nobody else may write there: the
//! state directory (the database, the locks, `last-run.json`, the firewall record), the feed
//! cache and manual request directories in it, and the directory of the metrics textfile.
//! Whoever can write into one of them can replace what sipban reads back (a feed's last good
//! copy, a queued ban, the database itself), so a world-writable one is refused before a
//! command reads or writes anything there (see [`crate::fsio::check_dir`]).
//!
//! This module must never create, change or remove anything: it looks at modes only.

use crate::config::Settings;
use std::path::PathBuf;

/// The directories a run writes into, each with its name for messages.
pub fn written(settings: &Settings) -> Vec<(&'static str, PathBuf)> {
    let state = &settings.state_dir;
    let mut dirs = vec![
        ("state directory", state.clone()),
        (
            "feed cache directory",
            crate::source::feed::cache_dir(state),
        ),
        (
            "manual request directory",
            state.join(super::manual::REQUEST_DIR),
        ),
    ];
    if let Some(parent) = settings
        .metrics
        .textfile
        .as_deref()
        .and_then(|t| t.parent())
    {
        let parent = if parent.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            parent.to_path_buf()
        };
        dirs.push(("metrics directory", parent));
    }
    dirs
}

/// Refuse the settings when any directory a run writes into may be written by others; the
/// message names the directory and its mode.
pub fn check(settings: &Settings) -> Result<(), String> {
    for (what, dir) in written(settings) {
        crate::fsio::check_dir(what, &dir)?;
    }
    Ok(())
}
