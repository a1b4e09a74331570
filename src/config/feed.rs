//! Feeds (`feeds:`): each entry resolved against the built-in catalogue, its location
//! (https, http or a file relative to the config), format, limits and defaults.
//!
//! This module must never fetch a feed or read a feed file: `source::feed` does that at run
//! time, from these settings.

use super::catalogue;
use super::raw::{FeedFormatName, RawFeed, RawMaxCoverage, RawMinPrefix};
use super::secret::redact_url;
use super::values::{Dur, Percent, Priority, Size};
use crate::net::Family;
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// Feed names that belong to built-in sources and may not be used by feeds.
pub const RESERVED_SOURCE_NAMES: &[&str] = &[
    "apiban",
    "asterisk",
    "kernel",
    "manual",
    "recovered",
    "sip_wire",
];

/// An http(s) feed URL, which may carry credentials (`https://user:pass@host/…`) or tokens
/// (`?token=…`). `Display`, `Debug` and `Serialize` show it through [`redact_url`], so no
/// output, log line or report can hold them; only [`FeedUrl::secret_str`] gives the URL
/// itself, for the request.
#[derive(Clone, PartialEq, Eq)]
pub struct FeedUrl(String);

impl FeedUrl {
    /// The URL as configured: for the HTTP client only, never to be shown.
    pub fn secret_str(&self) -> &str {
        &self.0
    }

    /// The host, without port or brackets (never secret).
    pub fn host(&self) -> Option<&str> {
        url_host(&self.0)
    }
}

impl fmt::Display for FeedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl fmt::Debug for FeedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FeedUrl({:?})", redact_url(&self.0))
    }
}

impl Serialize for FeedUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&redact_url(&self.0))
    }
}

/// The default ceiling on the IPv4 addresses a feed may cover: 16,777,216, a /8's worth
/// (0.39% of IPv4). Lists of single attackers (blocklist.de, VoIPBL) cover well under a million;
/// lists of whole netblocks (Spamhaus DROP, FireHOL level 1) set their own in the catalogue.
pub const DEFAULT_MAX_COVERAGE_V4: u64 = 1 << 24;
/// The default ceiling on the IPv6 /64s a feed may cover: 2^40, 256 /32s.
pub const DEFAULT_MAX_COVERAGE_V6: u64 = 1 << 40;

/// Where a feed is read from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "location", rename_all = "lowercase")]
pub enum FeedLocation {
    Http(FeedUrl),
    File(PathBuf),
}

impl fmt::Display for FeedLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeedLocation::Http(u) => u.fmt(f),
            FeedLocation::File(p) => write!(f, "file://{}", p.display()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "format", rename_all = "lowercase")]
pub enum FeedFormat {
    Plain,
    /// 1-based column.
    Csv {
        column: usize,
    },
    /// JSON pointer; `*` fans out over an array. Applied to each document of the body.
    Json {
        pointer: String,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct FeedSettings {
    pub name: String,
    /// The catalogue entry this feed came from, if any.
    pub catalogue: Option<String>,
    pub location: FeedLocation,
    pub format: FeedFormat,
    pub ttl: u32,
    pub priority: u16,
    pub interval: u64,
    pub max_bytes: u64,
    pub min_prefix_v4: u8,
    pub min_prefix_v6: u8,
    pub max_shrink: f64,
    /// The most IPv4 addresses the listing may cover (after the gate's address-space rules).
    pub max_coverage_v4: u64,
    /// The most IPv6 /64s the listing may cover (after the gate's address-space rules).
    pub max_coverage_v6: u64,
    pub max_invalid: f64,
    pub timeout: u64,
    pub connect_timeout: u64,
    pub retries: u32,
    pub allow_private: bool,
    pub licence: Option<String>,
}

impl FeedSettings {
    pub fn min_prefix(&self, family: Family) -> u8 {
        match family {
            Family::V4 => self.min_prefix_v4,
            Family::V6 => self.min_prefix_v6,
        }
    }
}

fn valid_source_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Resolve one feed entry; `Ok(None)` for `enabled: false`.
pub(super) fn resolve_feed(user: RawFeed, base_dir: &Path) -> Result<Option<FeedSettings>, String> {
    let (merged, catalogue_name) = match &user.use_ {
        Some(name) => {
            let base = catalogue::get(name).ok_or_else(|| {
                format!(
                    "`use: {name}` is not in the built-in catalogue (known: {})",
                    catalogue::names().join(", ")
                )
            })?;
            (merge(base, user.clone()), Some(name.clone()))
        }
        None => (user, None),
    };
    if merged.enabled == Some(false) {
        return Ok(None);
    }
    let name = merged
        .name
        .clone()
        .or_else(|| catalogue_name.clone())
        .ok_or("needs `name:` (or `use:` a catalogue feed)")?;
    if !valid_source_name(&name) {
        return Err(format!(
            "name `{name}` must be 1-64 characters of a-z, 0-9, '-' and '_'"
        ));
    }
    if RESERVED_SOURCE_NAMES.contains(&name.as_str()) {
        return Err(format!("name `{name}` is reserved for a built-in source"));
    }
    let url = merged
        .url
        .clone()
        .ok_or_else(|| format!("feed `{name}` needs `url:`"))?;
    let location = parse_location(&url, base_dir).map_err(|e| format!("feed `{name}`: {e}"))?;
    let format = match merged.format.unwrap_or(FeedFormatName::Plain) {
        FeedFormatName::Plain => {
            if merged.column.is_some() || merged.pointer.is_some() {
                return Err(format!(
                    "feed `{name}`: `column` is for csv and `pointer` for json feeds"
                ));
            }
            FeedFormat::Plain
        }
        FeedFormatName::Csv => {
            if merged.pointer.is_some() {
                return Err(format!("feed `{name}`: `pointer` is for json feeds"));
            }
            let column = merged.column.unwrap_or(1);
            if column == 0 {
                return Err(format!("feed `{name}`: csv columns count from 1"));
            }
            FeedFormat::Csv {
                column: column as usize,
            }
        }
        FeedFormatName::Json => {
            if merged.column.is_some() {
                return Err(format!("feed `{name}`: `column` is for csv feeds"));
            }
            let pointer = merged.pointer.clone().ok_or_else(|| {
                format!("feed `{name}`: json feeds need `pointer:` (e.g. /data or /*/cidr)")
            })?;
            if !(pointer.is_empty() || pointer.starts_with('/')) {
                return Err(format!(
                    "feed `{name}`: pointer `{pointer}` must start with /"
                ));
            }
            FeedFormat::Json { pointer }
        }
    };
    let ttl = merged.ttl.unwrap_or(Dur(7 * 86_400)).0;
    if ttl == 0 || ttl > u64::from(u32::MAX) {
        return Err(format!(
            "feed `{name}`: ttl must be between 1s and 136 years"
        ));
    }
    let mp = merged.min_prefix.unwrap_or_default();
    let min_prefix_v4 = mp.v4.unwrap_or(16);
    let min_prefix_v6 = mp.v6.unwrap_or(32);
    if !(1..=32).contains(&min_prefix_v4) || !(1..=128).contains(&min_prefix_v6) {
        return Err(format!(
            "feed `{name}`: min_prefix must be 1-32 for v4 and 1-128 for v6 (/0 is always rejected)"
        ));
    }
    let mc: RawMaxCoverage = merged.max_coverage.unwrap_or_default();
    Ok(Some(FeedSettings {
        name,
        catalogue: catalogue_name,
        location,
        format,
        ttl: ttl as u32,
        priority: merged.priority.unwrap_or(Priority(50)).0,
        interval: merged.interval.unwrap_or(Dur(3600)).0,
        max_bytes: merged.max_bytes.unwrap_or(Size(16 << 20)).0,
        min_prefix_v4,
        min_prefix_v6,
        max_shrink: merged.max_shrink.unwrap_or(Percent(0.5)).0,
        max_coverage_v4: mc.v4.map_or(DEFAULT_MAX_COVERAGE_V4, |c| c.0),
        max_coverage_v6: mc.v6.map_or(DEFAULT_MAX_COVERAGE_V6, |c| c.0),
        max_invalid: merged.max_invalid.unwrap_or(Percent(0.1)).0,
        timeout: merged.timeout.unwrap_or(Dur(60)).0.max(1),
        connect_timeout: merged.connect_timeout.unwrap_or(Dur(10)).0.max(1),
        retries: merged.retries.unwrap_or(2).min(10),
        allow_private: merged.allow_private.unwrap_or(false),
        licence: merged.licence.clone(),
    }))
}

/// Catalogue values, overridden by whatever the user set.
fn merge(base: RawFeed, user: RawFeed) -> RawFeed {
    RawFeed {
        name: user.name.or(base.name),
        use_: user.use_,
        url: user.url.or(base.url),
        format: user.format.or(base.format),
        column: user.column.or(base.column),
        pointer: user.pointer.or(base.pointer),
        ttl: user.ttl.or(base.ttl),
        priority: user.priority.or(base.priority),
        interval: user.interval.or(base.interval),
        max_bytes: user.max_bytes.or(base.max_bytes),
        min_prefix: match (user.min_prefix, base.min_prefix) {
            (Some(u), Some(b)) => Some(RawMinPrefix {
                v4: u.v4.or(b.v4),
                v6: u.v6.or(b.v6),
            }),
            (u, b) => u.or(b),
        },
        max_shrink: user.max_shrink.or(base.max_shrink),
        max_coverage: match (user.max_coverage, base.max_coverage) {
            (Some(u), Some(b)) => Some(RawMaxCoverage {
                v4: u.v4.or(b.v4),
                v6: u.v6.or(b.v6),
            }),
            (u, b) => u.or(b),
        },
        max_invalid: user.max_invalid.or(base.max_invalid),
        timeout: user.timeout.or(base.timeout),
        connect_timeout: user.connect_timeout.or(base.connect_timeout),
        retries: user.retries.or(base.retries),
        allow_private: user.allow_private.or(base.allow_private),
        enabled: user.enabled.or(base.enabled),
        description: user.description.or(base.description),
        licence: user.licence.or(base.licence),
        homepage: user.homepage.or(base.homepage),
    }
}

/// `https://…`, `http://…`, `file:///abs/path`, or `file:rel/path` (relative to the config
/// file's directory). Messages show the URL through [`redact_url`].
fn parse_location(url: &str, base_dir: &Path) -> Result<FeedLocation, String> {
    let shown = redact_url(url);
    if let Some(rest) = url.strip_prefix("file://") {
        if !rest.starts_with('/') {
            return Err(format!("`{shown}`: file:// URLs need an absolute path (file:///path), or use file:relative/path"));
        }
        return Ok(FeedLocation::File(PathBuf::from(rest)));
    }
    if let Some(rest) = url.strip_prefix("file:") {
        if rest.is_empty() {
            return Err(format!("`{shown}`: empty file path"));
        }
        let p = PathBuf::from(rest);
        return Ok(FeedLocation::File(if p.is_absolute() {
            p
        } else {
            base_dir.join(p)
        }));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        let host = url_host(url).ok_or_else(|| format!("`{shown}`: no host in URL"))?;
        if host.is_empty() {
            return Err(format!("`{shown}`: no host in URL"));
        }
        if !host.is_ascii() {
            // sipban is built without Unicode host-name tables (idna_adapter 1.0).
            return Err(format!(
                "`{shown}`: the host name is not ASCII; write it in its `xn--` (punycode) form"
            ));
        }
        return Ok(FeedLocation::Http(FeedUrl(url.to_string())));
    }
    Err(format!(
        "`{shown}`: only https://, http:// and file: URLs are supported"
    ))
}

/// The host part of an http(s) URL, without port or brackets.
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h);
    }
    Some(authority.split(':').next().unwrap_or(authority))
}
