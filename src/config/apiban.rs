//! The resolved `apiban:` section: defaults applied, the base URL checked, the key file's
//! path recorded (relative to the config's directory).
//!
//! This module must never read the key or talk to APIBAN: `source::apiban` does that at run
//! time, from these settings.

use super::raw::{ApiVersion, ApibanSet, RawApiban};
use super::values::{Dur, Priority};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the key is read from when the config names no `key_file`.
pub const DEFAULT_KEY_FILE: &str = "/etc/sipban/apiban.key";

/// The resolved `apiban:` section. It holds the key file's path, never the key.
#[derive(Clone, Debug, Serialize)]
pub struct ApibanSettings {
    pub key_file: PathBuf,
    pub api: ApiVersion,
    pub set: ApibanSet,
    /// Without a trailing `/`.
    pub base_url: String,
    pub ttl: u32,
    pub priority: u16,
    pub requests_per_2min: u32,
    /// Seconds.
    pub full_refresh: u64,
    pub ca_file: Option<PathBuf>,
    /// The pacing window `requests_per_2min` counts in: 120 s. Not a config key; tests shrink
    /// it.
    #[serde(skip)]
    pub window: Duration,
    /// Whole-request timeout. Not a config key.
    #[serde(skip)]
    pub timeout: Duration,
    /// Connect timeout. Not a config key.
    #[serde(skip)]
    pub connect_timeout: Duration,
}

/// Most requests per window a config may ask for.
pub const MAX_REQUESTS_PER_WINDOW: u32 = 1000;

/// Apply defaults and validate. No I/O: the key file is only recorded.
pub fn resolve(raw: RawApiban, config_dir: &Path) -> Result<ApibanSettings, String> {
    let api = raw.api.unwrap_or(ApiVersion::V2);
    let set = raw.set.unwrap_or(ApibanSet::Sip);
    if api == ApiVersion::V1 && set != ApibanSet::Sip {
        return Err(format!(
            "`set: {}` needs `api: v2` (the v1 API serves only the sip set)",
            set.as_str()
        ));
    }
    let base_url = raw
        .base_url
        .unwrap_or_else(|| "https://apiban.org".to_string());
    let base_url = base_url.trim_end_matches('/').to_string();
    let host = base_url.strip_prefix("https://").ok_or_else(|| {
        format!(
            "base_url `{base_url}` must start with https:// (the key is sent with every request)"
        )
    })?;
    if host.is_empty() || host.contains(['?', '#', '@']) {
        return Err(format!("base_url `{base_url}` is not a plain https URL"));
    }
    let ttl = raw.ttl.unwrap_or(Dur(7 * 86_400)).0;
    if ttl == 0 || ttl > u64::from(u32::MAX) {
        return Err("ttl must be between 1s and 136 years".into());
    }
    let requests_per_2min = raw.requests_per_2min.unwrap_or(5);
    if !(1..=MAX_REQUESTS_PER_WINDOW).contains(&requests_per_2min) {
        return Err(format!(
            "requests_per_2min must be between 1 and {MAX_REQUESTS_PER_WINDOW} (APIBAN documents 5 to 11 per key)"
        ));
    }
    let full_refresh = raw.full_refresh.unwrap_or(Dur(7 * 86_400)).0;
    if full_refresh < 3600 {
        return Err("full_refresh must be at least 1h".into());
    }
    let anchor = |p: PathBuf| {
        if p.is_absolute() {
            p
        } else {
            config_dir.join(p)
        }
    };
    Ok(ApibanSettings {
        key_file: anchor(
            raw.key_file
                .unwrap_or_else(|| PathBuf::from(DEFAULT_KEY_FILE)),
        ),
        api,
        set,
        base_url,
        ttl: ttl as u32,
        priority: raw.priority.unwrap_or(Priority(80)).0,
        requests_per_2min,
        full_refresh,
        ca_file: raw.ca_file.map(anchor),
        window: Duration::from_secs(120),
        timeout: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(10),
    })
}
