//! The resolved `crowdsec:` section (pull as a bouncer, push as a machine) and the `export:`
//! section (own detections written as a feed after every sync).
//!
//! This module must never read the bouncer key or the machine password, nor talk to the
//! LAPI: `source::crowdsec` and `report::crowdsec` do that at run time, from these settings.

use super::raw::{RawCrowdsec, RawExport};
use super::secret::redact_url;
use super::values::{Dur, Priority};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the bouncer key is read from when the config names no `bouncer_key_file`.
pub const DEFAULT_BOUNCER_KEY_FILE: &str = "/etc/sipban/crowdsec-bouncer.key";
/// Where the machine password is read from when the config names no `machine_password_file`.
pub const DEFAULT_MACHINE_PASSWORD_FILE: &str = "/etc/sipban/crowdsec-machine.pw";

/// A CrowdSec decision scope sipban takes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// One address (`Ip`).
    Ip,
    /// A prefix (`Range`).
    Range,
}

/// The resolved `crowdsec:` section. It holds the key and password files' paths, never a
/// secret.
#[derive(Clone, Debug, Serialize)]
pub struct CrowdsecSettings {
    /// `http(s)://host:port`, without a trailing `/`.
    pub lapi_url: String,
    pub bouncer_key_file: PathBuf,
    /// The push side (a CrowdSec machine): absent, nothing is pushed.
    pub machine_id: Option<String>,
    pub machine_password_file: PathBuf,
    pub priority: u16,
    pub scopes: Vec<Scope>,
    /// The longest ban a decision may give (its remaining duration is cut to this).
    pub max_ttl: u32,
    /// The shortest prefix a `Range` decision may be.
    pub min_prefix_v4: u8,
    pub min_prefix_v6: u8,
    pub ca_file: Option<PathBuf>,
    /// Whole-request timeout. Not a config key.
    #[serde(skip)]
    pub timeout: Duration,
    /// Connect timeout. Not a config key.
    #[serde(skip)]
    pub connect_timeout: Duration,
}

/// The push side, as the report queue's sink sees it (built from `crowdsec:` and the
/// detectors' bantimes).
#[derive(Clone, Debug, Serialize)]
pub struct CrowdsecPushSettings {
    pub lapi_url: String,
    pub machine_id: String,
    pub machine_password_file: PathBuf,
    pub ca_file: Option<PathBuf>,
    /// The ban duration of an alert of a SIP offence: the Asterisk (or SIP wire) bantime.
    pub bantime: u32,
    /// The ban duration of a port-scan alert: the kernel-log detector's TTL.
    pub port_scan_bantime: u32,
    /// Most alerts per POST (not a config key).
    #[serde(skip)]
    pub batch: usize,
    /// Most POSTs per run (not a config key).
    #[serde(skip)]
    pub max_batches_per_run: usize,
    /// Spacing of POSTs (not a config key).
    #[serde(skip)]
    pub pace: Duration,
    #[serde(skip)]
    pub timeout: Duration,
    #[serde(skip)]
    pub connect_timeout: Duration,
}

/// The format of an export.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// One address or prefix per line, after `#` header lines.
    #[default]
    Plain,
    /// `{"generated": ..., "entries": [{address, reason, first_seen, expires}]}`.
    Json,
}

/// The resolved `export:` section: rewritten after every sync.
#[derive(Clone, Debug, Serialize)]
pub struct ExportSettings {
    pub path: PathBuf,
    pub format: ExportFormat,
}

/// Whether `id` is a usable CrowdSec machine id (what `cscli machines add` accepts).
fn machine_id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The LAPI URL: `http://` or `https://`, a host, no user info, query or fragment.
fn lapi_url(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/').to_string();
    let shown = redact_url(&url);
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("lapi_url `{shown}` must start with http:// or https://"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || rest.contains(['?', '#', '@', ' ']) {
        return Err(format!("lapi_url `{shown}` is not a plain URL"));
    }
    Ok(url)
}

/// Apply defaults and validate. No I/O: the key and password files are only recorded.
pub fn resolve(raw: RawCrowdsec, config_dir: &Path) -> Result<CrowdsecSettings, String> {
    let lapi_url = lapi_url(
        raw.lapi_url
            .as_deref()
            .ok_or("lapi_url is required (e.g. http://127.0.0.1:8080)")?,
    )?;
    if let Some(id) = &raw.machine_id {
        if !machine_id_ok(id) {
            return Err(format!(
                "machine_id `{id}` may hold only letters, digits, `-`, `_` and `.`"
            ));
        }
    }
    let scopes = raw.scopes.unwrap_or_else(|| vec![Scope::Ip, Scope::Range]);
    if scopes.is_empty() {
        return Err("scopes must name at least one of ip, range".into());
    }
    let max_ttl = raw.max_ttl.unwrap_or(Dur(30 * 86_400)).0;
    if max_ttl == 0 || max_ttl > u64::from(u32::MAX) {
        return Err("max_ttl must be between 1s and 136 years".into());
    }
    let min_prefix_v4 = raw.min_prefix_v4.unwrap_or(16);
    let min_prefix_v6 = raw.min_prefix_v6.unwrap_or(32);
    if !(8..=32).contains(&min_prefix_v4) || !(16..=128).contains(&min_prefix_v6) {
        return Err("min_prefix_v4 must be 8..32 and min_prefix_v6 16..128".into());
    }
    let anchor = |p: PathBuf| {
        if p.is_absolute() {
            p
        } else {
            config_dir.join(p)
        }
    };
    Ok(CrowdsecSettings {
        lapi_url,
        bouncer_key_file: anchor(
            raw.bouncer_key_file
                .unwrap_or_else(|| PathBuf::from(DEFAULT_BOUNCER_KEY_FILE)),
        ),
        machine_id: raw.machine_id,
        machine_password_file: anchor(
            raw.machine_password_file
                .unwrap_or_else(|| PathBuf::from(DEFAULT_MACHINE_PASSWORD_FILE)),
        ),
        priority: raw.priority.unwrap_or(Priority(85)).0,
        scopes,
        max_ttl: max_ttl as u32,
        min_prefix_v4,
        min_prefix_v6,
        ca_file: raw.ca_file.map(anchor),
        timeout: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(10),
    })
}

impl CrowdsecSettings {
    /// The push side, when `machine_id` is set. `bantime` and `port_scan_bantime` come from
    /// the detectors' sections.
    pub fn push(&self, bantime: u32, port_scan_bantime: u32) -> Option<CrowdsecPushSettings> {
        Some(CrowdsecPushSettings {
            lapi_url: self.lapi_url.clone(),
            machine_id: self.machine_id.clone()?,
            machine_password_file: self.machine_password_file.clone(),
            ca_file: self.ca_file.clone(),
            bantime,
            port_scan_bantime,
            batch: 50,
            max_batches_per_run: 20,
            pace: Duration::from_millis(200),
            timeout: self.timeout,
            connect_timeout: self.connect_timeout,
        })
    }
}

/// Apply defaults and validate `export:`.
pub fn resolve_export(raw: RawExport, config_dir: &Path) -> Result<ExportSettings, String> {
    let path = raw.path.ok_or("path is required")?;
    let path = if path.is_absolute() {
        path
    } else {
        config_dir.join(path)
    };
    if path.file_name().is_none() {
        return Err(format!("path {} names no file", path.display()));
    }
    Ok(ExportSettings {
        path,
        format: raw.format.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lapi_urls_are_checked() {
        assert_eq!(
            lapi_url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(lapi_url("ftp://x").is_err());
        assert!(lapi_url("http://u:p@host").is_err());
        assert!(lapi_url("http://").is_err());
        assert!(machine_id_ok("pbx-01"));
        assert!(!machine_id_ok("pbx 01"));
    }
}
