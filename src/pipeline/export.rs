//! The export: this host's own detections (the log and wire detectors' entries the sets hold)
//! as a feed another sipban, or anything else, can read: `sipban export`, and the `export:`
//! file rewritten after every sync.
//!
//! `plain` is one address or prefix per line after `#` header lines (what every feed reader
//! takes); `json` is `{"generated", "entries": [{address, reason, first_seen, expires,
//! ttl_left}]}`. Entries of feeds, APIBAN, CrowdSec and manual bans are never exported (a
//! fleet that feeds on its own exports must not keep an address alive by echo), nor entries
//! the sets do not hold (allowlisted, evicted).
//!
//! It names no host (the file may be served publicly). This module must never write a file
//! but through [`crate::fsio::write_atomic`].

use super::decide::Decision;
use super::Sources;
pub use crate::config::crowdsec::{ExportFormat, ExportSettings};
use crate::net;
use anyhow::Result;
use serde::Serialize;
use std::collections::HashSet;
use std::path::Path;

/// The source kinds whose entries are this host's own detections.
const OWN_KINDS: [&str; 3] = ["asterisk", "kernel", "sip_wire"];

/// One exported entry.
#[derive(Clone, Debug, Serialize)]
pub struct Exported {
    pub address: String,
    /// The detectors that banned it (`asterisk`, `kernel_log`, `sip_wire`).
    pub reason: Vec<String>,
    pub first_seen: i64,
    pub expires: i64,
    pub ttl_left: i64,
}

/// The own detections a decision holds in the sets, in prefix order.
pub fn own_detections(sources: &Sources, decision: &Decision, now: i64) -> Vec<Exported> {
    let in_set: HashSet<ipnet::IpNet> = decision
        .desired_v4
        .iter()
        .chain(&decision.desired_v6)
        .map(|d| d.net)
        .collect();
    let names = sources.names();
    let own: Vec<bool> = sources
        .kinds
        .iter()
        .map(|k| OWN_KINDS.contains(k))
        .collect();
    let mut out = Vec::new();
    for e in &decision.entries {
        let marks: Vec<_> = e
            .marks
            .iter()
            .filter(|m| own.get(m.source as usize).copied().unwrap_or(false))
            .filter(|m| m.expires > now)
            .collect();
        if marks.is_empty() || !in_set.contains(&e.net) {
            continue;
        }
        let expires = marks.iter().map(|m| m.expires).max().unwrap_or(now);
        out.push(Exported {
            address: net::display_net(&e.net),
            reason: marks
                .iter()
                .filter_map(|m| names.get(m.source as usize).cloned())
                .collect(),
            first_seen: marks.iter().map(|m| m.first_seen).min().unwrap_or(now),
            expires,
            ttl_left: expires - now,
        });
    }
    out
}

/// The export's bytes.
pub fn render(entries: &[Exported], format: ExportFormat, now: i64) -> Vec<u8> {
    match format {
        ExportFormat::Plain => {
            let mut s = format!(
                "# sipban export: this host's own detections\n# generated {}; {} entries; each is banned here for its remaining TTL\n",
                crate::clock::fmt_time(now),
                entries.len()
            );
            for e in entries {
                s.push_str(&e.address);
                s.push('\n');
            }
            s.into_bytes()
        }
        ExportFormat::Json => {
            let doc = serde_json::json!({
                "generated": now,
                "entries": entries,
            });
            let mut v = doc.to_string().into_bytes();
            v.push(b'\n');
            v
        }
    }
}

/// Write the export to `path`, atomically.
pub fn write(path: &Path, entries: &[Exported], format: ExportFormat, now: i64) -> Result<()> {
    crate::fsio::write_atomic(path, &render(entries, format, now))
}
