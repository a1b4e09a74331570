//! The resolved `report:` section: AbuseIPDB and webhook settings, with the pacing constants
//! that are not config keys. Key and header files are only recorded here.
//!
//! This module must never read a secret or send anything: `report` does that at run time.
//! It owns the rules for what a header name and value may be, which the run-time loading of
//! a header file applies too.

use super::raw::RawReport;
use super::secret::{redact_url, Secret};
use super::values::{human_duration, Dur};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the key is read from when the config names no `key_file`.
pub const DEFAULT_ABUSEIPDB_KEY_FILE: &str = "/etc/sipban/abuseipdb.key";
/// AbuseIPDB refuses reports of attacks older than this (reporting policy: 60 days).
pub const ABUSEIPDB_MAX_AGE: i64 = 60 * 86_400;
/// AbuseIPDB refuses the same address from one reporter within 15 minutes.
pub const ABUSEIPDB_REPEAT_WINDOW: u64 = 15 * 60;

/// Resolved settings. They hold the key file's path and header names, never a secret.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReportSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abuseipdb: Option<AbuseipdbSettings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSettings>,
    /// The CrowdSec push (from the `crowdsec:` section's `machine_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crowdsec: Option<super::crowdsec::CrowdsecPushSettings>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AbuseipdbSettings {
    pub key_file: PathBuf,
    /// Without a trailing `/`; endpoints are `{base_url}/api/v2/report` and `/bulk-report`.
    pub base_url: String,
    /// Reports per day (UTC), counting every request sent and every row of a bulk upload.
    pub daily_limit: u32,
    /// Seconds between two reports of one address.
    #[serde(serialize_with = "ser_secs")]
    pub min_interval_per_ip: u64,
    pub include_udp: bool,
    pub ca_file: Option<PathBuf>,
    /// Spacing of single reports (not a config key; tests shrink it).
    #[serde(skip)]
    pub pace: Duration,
    /// A backlog of more due items than this goes out as one bulk upload (not a config key).
    #[serde(skip)]
    pub bulk_threshold: usize,
    /// Bulk uploads per day (not a config key). AbuseIPDB's bulk quota is not documented in
    /// what we could read; CIDRAM's client keeps to 3 a day, and so do we.
    #[serde(skip)]
    pub bulk_per_day: u32,
    /// Most single reports in one run (not a config key).
    #[serde(skip)]
    pub max_singles_per_run: usize,
    #[serde(skip)]
    pub timeout: Duration,
    #[serde(skip)]
    pub connect_timeout: Duration,
}

#[derive(Clone, Debug, Serialize)]
pub struct WebhookSettings {
    pub url: String,
    /// Header values from the config; serialised as `[redacted]`.
    #[serde(serialize_with = "ser_headers")]
    pub headers: Vec<(String, Secret)>,
    pub header_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    /// Most items per POST (not a config key).
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

fn ser_secs<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&human_duration(*v))
}

fn ser_headers<S: serde::Serializer>(h: &[(String, Secret)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(h.len()))?;
    for (name, _) in h {
        m.serialize_entry(name, "[redacted]")?;
    }
    m.end()
}

/// Most reports a day a config may allow (AbuseIPDB's largest paid plans are far below).
pub const MAX_DAILY_LIMIT: u32 = 1_000_000;

/// An https URL without user info, query or fragment, and without a trailing `/`.
/// Messages show the URL through [`redact_url`].
fn https_url(url: &str, what: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/').to_string();
    let shown = redact_url(&url);
    let rest = url.strip_prefix("https://").ok_or_else(|| {
        format!("{what} `{shown}` must start with https:// (secrets are sent with every request)")
    })?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || rest.contains(['?', '#', '@', ' ']) {
        return Err(format!("{what} `{shown}` is not a plain https URL"));
    }
    Ok(url)
}

/// Whether `name` is an HTTP header name (an RFC 9110 token).
fn header_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `value` can be sent as a header value (visible ASCII and spaces).
fn header_value_ok(value: &str) -> bool {
    value.len() <= 4096
        && value
            .bytes()
            .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
}

/// Headers sipban sets itself.
const RESERVED_HEADERS: &[&str] = &["content-type", "content-length", "host", "user-agent"];

pub fn check_header(name: &str, value: &str, origin: &str) -> Result<(), String> {
    if !header_name_ok(name) {
        return Err(format!("{origin}: `{name}` is not a valid header name"));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!("{origin}: sipban sets `{name}` itself"));
    }
    if !header_value_ok(value) {
        // Never quote the value: it is a secret.
        return Err(format!(
            "{origin}: the value of `{name}` holds characters a header cannot carry"
        ));
    }
    Ok(())
}

/// Apply defaults and validate. No I/O: key and header files are only recorded.
pub fn resolve(raw: RawReport, config_dir: &Path) -> Result<ReportSettings, String> {
    let anchor = |p: PathBuf| {
        if p.is_absolute() {
            p
        } else {
            config_dir.join(p)
        }
    };
    if raw.abuseipdb.is_none() && raw.webhook.is_none() {
        return Err("needs `abuseipdb:` or `webhook:` (or remove the section)".into());
    }
    let abuseipdb = match raw.abuseipdb {
        None => None,
        Some(a) => {
            let base_url = https_url(
                a.base_url.as_deref().unwrap_or("https://api.abuseipdb.com"),
                "abuseipdb: base_url",
            )?;
            let daily_limit = a.daily_limit.unwrap_or(1000);
            if !(1..=MAX_DAILY_LIMIT).contains(&daily_limit) {
                return Err(format!(
                    "abuseipdb: daily_limit must be between 1 and {MAX_DAILY_LIMIT} (a free AbuseIPDB account allows 1000)"
                ));
            }
            let interval = a.min_interval_per_ip.unwrap_or(Dur(86_400)).0;
            if interval < ABUSEIPDB_REPEAT_WINDOW {
                return Err("abuseipdb: min_interval_per_ip must be at least 15m (AbuseIPDB refuses the same address within 15 minutes)".into());
            }
            if interval > ABUSEIPDB_MAX_AGE as u64 {
                return Err("abuseipdb: min_interval_per_ip must be at most 60d".into());
            }
            Some(AbuseipdbSettings {
                key_file: anchor(
                    a.key_file
                        .unwrap_or_else(|| PathBuf::from(DEFAULT_ABUSEIPDB_KEY_FILE)),
                ),
                base_url,
                daily_limit,
                min_interval_per_ip: interval,
                include_udp: a.include_udp.unwrap_or(false),
                ca_file: a.ca_file.map(anchor),
                pace: Duration::from_secs(1),
                bulk_threshold: 50,
                bulk_per_day: 3,
                max_singles_per_run: 100,
                timeout: Duration::from_secs(30),
                connect_timeout: Duration::from_secs(10),
            })
        }
    };
    let webhook = match raw.webhook {
        None => None,
        Some(w) => {
            let url = https_url(
                w.url.as_deref().ok_or("webhook: needs `url:`")?,
                "webhook: url",
            )?;
            let mut headers = Vec::new();
            for (name, value) in w.headers.unwrap_or_default() {
                check_header(&name, &value, "webhook: headers")?;
                headers.push((
                    name.clone(),
                    Secret::new(value, format!("the webhook header {name} in the config")),
                ));
            }
            Some(WebhookSettings {
                url,
                headers,
                header_file: w.header_file.map(anchor),
                ca_file: w.ca_file.map(anchor),
                batch: 500,
                max_batches_per_run: 10,
                pace: Duration::from_secs(1),
                timeout: Duration::from_secs(30),
                connect_timeout: Duration::from_secs(10),
            })
        }
    };
    Ok(ReportSettings {
        abuseipdb,
        webhook,
        crowdsec: None,
    })
}
