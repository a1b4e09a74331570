//! The YAML configuration: what the admin wrote ([`RawConfig`]) and what sipban decided from
//! it ([`Settings`]).
//!
//! Parsing is strict: unknown keys, duplicate keys, `yes`/`on` as booleans, bad durations,
//! sizes, percentages and addresses are errors naming the file, line and column. Values are
//! validated while they are deserialised (the newtypes below), so serde-saphyr attaches the
//! position of the offending node. Cross-field rules are checked afterwards with the span of
//! the enclosing entry.
//!
//! This module must never read anything but the config file (and, for `key_file`-style
//! settings of later sections, only record paths): no network, no state, no kernel.

use crate::catalogue;
use crate::net::{self, Family};
use ipnet::IpNet;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where sipban looks for its config when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/sipban/config.yaml";

/// Feed names that belong to built-in sources and may not be used by feeds.
pub const RESERVED_SOURCE_NAMES: &[&str] = &["apiban", "asterisk", "kernel", "manual"];

// ---------------------------------------------------------------------------------------------
// Value types that validate themselves while being deserialised.

/// A duration written with a unit: `90s`, `10m`, `2h`, `7d` (also `w`). Seconds inside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Dur(pub u64);

impl Dur {
    pub fn parse(text: &str) -> Result<Dur, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| {
            format!("duration `{t}` needs a unit: s, m, h, d or w (e.g. 90s, 10m, 2h, 7d)")
        })?;
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("duration `{t}` must start with a whole number (e.g. 10m)"))?;
        let mult = match unit.trim() {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 604_800,
            other => {
                return Err(format!(
                    "duration `{t}`: unknown unit `{other}` (use s, m, h, d or w)"
                ))
            }
        };
        n.checked_mul(mult)
            .map(Dur)
            .ok_or_else(|| format!("duration `{t}` is too large"))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&human_duration(self.0))
    }
}

/// `7d`, `2h`, `90s`: the largest unit that divides the value.
pub fn human_duration(secs: u64) -> String {
    for (unit, n) in [("w", 604_800), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs >= n && secs.is_multiple_of(n) {
            return format!("{}{}", secs / n, unit);
        }
    }
    format!("{secs}s")
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Dur::parse(&s).map_err(de::Error::custom)
    }
}

/// A size in bytes: `16MiB`, `512KiB`, `1GB`, `4096`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Size(pub u64);

impl Size {
    pub fn parse(text: &str) -> Result<Size, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("size `{t}` must start with a whole number (e.g. 16MiB)"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "kB" | "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            other => {
                return Err(format!(
                    "size `{t}`: unknown unit `{other}` (use B, KiB, MiB, GiB, kB, MB, GB)"
                ))
            }
        };
        n.checked_mul(mult)
            .map(Size)
            .ok_or_else(|| format!("size `{t}` is too large"))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = SizeOrInt::deserialize(d)?;
        match v {
            SizeOrInt::Int(n) => Ok(Size(n)),
            SizeOrInt::Text(s) => Size::parse(&s).map_err(de::Error::custom),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeOrInt {
    Int(u64),
    Text(String),
}

/// A percentage written `50%`; stored as a fraction 0.0..=1.0.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Percent(pub f64);

impl Percent {
    pub fn parse(text: &str) -> Result<Percent, String> {
        let t = text.trim();
        let num = t
            .strip_suffix('%')
            .ok_or_else(|| format!("percentage `{t}` must end with % (e.g. 50%)"))?;
        let v: f64 = num
            .trim()
            .parse()
            .map_err(|_| format!("percentage `{t}` is not a number"))?;
        if !(0.0..=100.0).contains(&v) {
            return Err(format!("percentage `{t}` must be between 0% and 100%"));
        }
        Ok(Percent(v / 100.0))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0 * 100.0)
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Percent::parse(&s).map_err(de::Error::custom)
    }
}

/// A CIDR prefix or single address, canonicalised by [`net::parse_net`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr(pub IpNet);

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        net::parse_net(&s)
            .map(Cidr)
            .map_err(|e| de::Error::custom(format!("`{s}`: {e} (host names are not accepted)")))
    }
}

/// A priority, 0..=1000. Higher survives eviction longer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Priority(pub u16);

/// The highest priority a configured source may have; `sipban ban` pins above it.
pub const MAX_PRIORITY: u16 = 1000;

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        if v > u64::from(MAX_PRIORITY) {
            return Err(de::Error::custom(format!(
                "priority {v} is above the maximum {MAX_PRIORITY}"
            )));
        }
        Ok(Priority(v as u16))
    }
}

// ---------------------------------------------------------------------------------------------
// What the admin wrote.

/// The config file as written. Every field is optional; defaults are applied in [`resolve`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub state_dir: Option<PathBuf>,
    pub sets: Option<RawSets>,
    pub allowlist: Option<Vec<Cidr>>,
    pub allow_own_addresses: Option<bool>,
    pub feeds: Option<Vec<Spanned<RawFeed>>>,
    pub apiban: Option<Spanned<crate::source::apiban::RawApiban>>,
    pub asterisk: Option<Spanned<RawAsterisk>>,
    pub daemon: Option<Spanned<crate::daemon::RawDaemon>>,
    pub metrics: Option<Spanned<crate::metrics::RawMetrics>>,
    pub report: Option<Spanned<crate::report::RawReport>>,
    pub kernel_log: Option<Spanned<crate::source::kernlog::RawKernelLog>>,
}

/// `asterisk:`: the log detector (see [`crate::source::asterisk`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAsterisk {
    pub logs: Option<Vec<PathBuf>>,
    pub full_log: Option<PathBuf>,
    pub maxretry: Option<u32>,
    pub findtime: Option<Dur>,
    pub bantime: Option<Dur>,
    pub bantime_increment: Option<RawIncrement>,
    pub priority: Option<Priority>,
    pub aggressive: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIncrement {
    pub factor: Option<f64>,
    pub max: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSets {
    pub v4: Option<RawSet>,
    pub v6: Option<RawSet>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSet {
    pub name: Option<String>,
    pub cap: Option<u32>,
}

/// One feed entry: either a full definition (`name`, `url`, ...) or `use: <catalogue name>`
/// with any field overridden.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeed {
    pub name: Option<String>,
    #[serde(rename = "use")]
    pub use_: Option<String>,
    pub url: Option<String>,
    pub format: Option<FeedFormatName>,
    pub column: Option<u32>,
    pub pointer: Option<String>,
    pub ttl: Option<Dur>,
    pub priority: Option<Priority>,
    pub interval: Option<Dur>,
    pub max_bytes: Option<Size>,
    pub min_prefix: Option<RawMinPrefix>,
    pub max_shrink: Option<Percent>,
    /// Fraction of non-comment lines that may fail to parse before the download is refused.
    pub max_invalid: Option<Percent>,
    /// Whole-request timeout.
    pub timeout: Option<Dur>,
    pub connect_timeout: Option<Dur>,
    /// Extra attempts after a network error or a 5xx/429 answer.
    pub retries: Option<u32>,
    /// Let this feed ban private address space (RFC 1918, CGNAT, ULA). Off by default.
    pub allow_private: Option<bool>,
    pub enabled: Option<bool>,
    // Catalogue-only descriptive fields (accepted in feeds/*.yaml, ignored by the pipeline).
    pub description: Option<String>,
    pub licence: Option<String>,
    pub homepage: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedFormatName {
    Plain,
    Csv,
    Json,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMinPrefix {
    pub v4: Option<u8>,
    pub v6: Option<u8>,
}

// ---------------------------------------------------------------------------------------------
// What sipban decided from it.

/// Resolved settings: defaults applied, catalogue merged, everything validated.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    pub config_path: PathBuf,
    pub state_dir: PathBuf,
    pub sets: SetsSettings,
    pub allowlist: Vec<IpNet>,
    pub allow_own_addresses: bool,
    pub feeds: Vec<FeedSettings>,
    /// Present when the config has an `apiban:` section.
    pub apiban: Option<crate::source::apiban::ApibanSettings>,
    /// Present when the config has an `asterisk:` section.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_asterisk"
    )]
    pub asterisk: Option<crate::source::asterisk::AsteriskSettings>,
    /// `daemon:` (schedules of `sipban run`); defaults when the section is absent.
    pub daemon: crate::daemon::DaemonSettings,
    /// `metrics:` (the node_exporter textfile); off when absent.
    pub metrics: crate::metrics::MetricsSettings,
    /// Present when the config has a `report:` section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<crate::report::ReportSettings>,
    /// Present when the config has a `kernel_log:` section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_log: Option<crate::source::kernlog::KernelLogSettings>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SetsSettings {
    pub v4: SetSettings,
    pub v6: SetSettings,
}

impl SetsSettings {
    pub fn get(&self, family: Family) -> &SetSettings {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SetSettings {
    pub name: String,
    pub cap: u32,
}

/// Where a feed is read from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "location", rename_all = "lowercase")]
pub enum FeedLocation {
    Http(String),
    File(PathBuf),
}

impl fmt::Display for FeedLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeedLocation::Http(u) => f.write_str(u),
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

/// A configuration problem, already worded for the admin (file, line, column where known).
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Read, parse and resolve a config file.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{}: cannot read config: {e}", path.display())))?;
    load_str(&text, path)
}

/// Parse and resolve config text; `path` names it in errors and anchors relative file feeds.
pub fn load_str(text: &str, path: &Path) -> Result<Settings, ConfigError> {
    let raw: RawConfig = parse_yaml(text, &path.display().to_string())?;
    resolve(raw, path)
}

/// Strict YAML parsing shared by the config and the feed catalogue.
pub fn parse_yaml<T: for<'de> Deserialize<'de>>(
    text: &str,
    origin: &str,
) -> Result<T, ConfigError> {
    if text.trim().is_empty() {
        // An empty file is an empty mapping: all defaults.
        return parse_yaml("{}", origin);
    }
    let options = serde_saphyr::options! {
        strict_booleans: true,
    };
    serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let msg = e
            .to_string()
            .replace("<input>", origin)
            .replace(", set DuplicateKeyPolicy in Options if acceptable", "");
        ConfigError(format!("{origin}: {msg}"))
    })
}

fn at(origin: &Path, loc: &serde_saphyr::Location) -> String {
    format!(
        "{}: line {} column {}",
        origin.display(),
        loc.line(),
        loc.column()
    )
}

fn valid_source_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Apply defaults, merge catalogue entries and validate. Pure apart from nothing: no I/O.
pub fn resolve(raw: RawConfig, path: &Path) -> Result<Settings, ConfigError> {
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let state_dir = raw
        .state_dir
        .unwrap_or_else(|| PathBuf::from("/var/lib/sipban"));
    let raw_sets = raw.sets.unwrap_or_default();
    let set = |r: Option<RawSet>, default_name: &str| -> Result<SetSettings, ConfigError> {
        let r = r.unwrap_or_default();
        let name = r.name.unwrap_or_else(|| default_name.to_string());
        crate::backend::ipset::validate_set_name(&name)
            .map_err(|e| ConfigError(format!("{}: sets: {e}", path.display())))?;
        let cap = r.cap.unwrap_or(65_536);
        if cap == 0 {
            return Err(ConfigError(format!(
                "{}: sets: cap for `{name}` must be at least 1",
                path.display()
            )));
        }
        Ok(SetSettings { name, cap })
    };
    let sets = SetsSettings {
        v4: set(raw_sets.v4, "sipban-v4")?,
        v6: set(raw_sets.v6, "sipban-v6")?,
    };
    if sets.v4.name == sets.v6.name {
        return Err(ConfigError(format!(
            "{}: sets: v4 and v6 must have different names (both are `{}`)",
            path.display(),
            sets.v4.name
        )));
    }

    let mut feeds: Vec<FeedSettings> = Vec::new();
    for spanned in raw.feeds.unwrap_or_default() {
        let where_ = at(path, &spanned.referenced);
        let feed = resolve_feed(spanned.value, &base_dir)
            .map_err(|e| ConfigError(format!("{where_}: feed: {e}")))?;
        let Some(feed) = feed else { continue };
        if feeds.iter().any(|f| f.name == feed.name) {
            return Err(ConfigError(format!(
                "{where_}: feed: the name `{}` is used twice; give one of them `name:`",
                feed.name
            )));
        }
        feeds.push(feed);
    }

    let asterisk = match raw.asterisk {
        None => None,
        Some(spanned) => Some(resolve_asterisk(spanned.value).map_err(|e| {
            ConfigError(format!("{}: asterisk: {e}", at(path, &spanned.referenced)))
        })?),
    };
    let kernel_log = match raw.kernel_log {
        Some(spanned) => Some(crate::source::kernlog::resolve(spanned.value).map_err(|e| {
            ConfigError(format!(
                "{}: kernel_log: {e}",
                at(path, &spanned.referenced)
            ))
        })?),
        None => None,
    };
    let apiban = match raw.apiban {
        Some(spanned) => Some(
            crate::source::apiban::resolve(spanned.value, &base_dir).map_err(|e| {
                ConfigError(format!("{}: apiban: {e}", at(path, &spanned.referenced)))
            })?,
        ),
        None => None,
    };
    let daemon = match raw.daemon {
        None => crate::daemon::DaemonSettings::default(),
        Some(spanned) => crate::daemon::resolve(Some(spanned.value), &feeds)
            .map_err(|e| ConfigError(format!("{}: daemon: {e}", at(path, &spanned.referenced))))?,
    };
    let metrics = match raw.metrics {
        None => crate::metrics::MetricsSettings::default(),
        Some(spanned) => crate::metrics::resolve(Some(spanned.value))
            .map_err(|e| ConfigError(format!("{}: metrics: {e}", at(path, &spanned.referenced))))?,
    };
    let report =
        match raw.report {
            Some(spanned) => Some(crate::report::resolve(spanned.value, &base_dir).map_err(
                |e| ConfigError(format!("{}: report: {e}", at(path, &spanned.referenced))),
            )?),
            None => None,
        };

    Ok(Settings {
        config_path: path.to_path_buf(),
        state_dir,
        sets,
        allowlist: raw
            .allowlist
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.0)
            .collect(),
        allow_own_addresses: raw.allow_own_addresses.unwrap_or(true),
        feeds,
        apiban,
        asterisk,
        daemon,
        metrics,
        report,
        kernel_log,
    })
}

fn resolve_asterisk(raw: RawAsterisk) -> Result<crate::source::asterisk::AsteriskSettings, String> {
    let mut s = crate::source::asterisk::AsteriskSettings::default();
    if let Some(logs) = raw.logs {
        s.logs = logs;
    }
    s.full_log = raw.full_log;
    if s.logs.is_empty() && s.full_log.is_none() {
        return Err("needs at least one file in `logs` or a `full_log`".into());
    }
    if let Some(m) = raw.maxretry {
        if m == 0 {
            return Err("maxretry must be at least 1".into());
        }
        s.maxretry = m;
    }
    let secs = |d: Dur, what: &str| -> Result<u32, String> {
        u32::try_from(d.0)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| format!("{what} must be between 1s and 136 years"))
    };
    if let Some(d) = raw.findtime {
        s.findtime = secs(d, "findtime")?;
    }
    if let Some(d) = raw.bantime {
        s.bantime = secs(d, "bantime")?;
    }
    if let Some(inc) = raw.bantime_increment {
        if let Some(f) = inc.factor {
            if !(1.0..=100.0).contains(&f) {
                return Err("bantime_increment.factor must be between 1 and 100".into());
            }
            s.increment_factor = f;
        }
        if let Some(m) = inc.max {
            s.increment_max = secs(m, "bantime_increment.max")?;
        }
    }
    if s.increment_max < s.bantime {
        return Err("bantime_increment.max must not be shorter than bantime".into());
    }
    if let Some(p) = raw.priority {
        s.priority = u32::from(p.0);
    }
    if let Some(a) = raw.aggressive {
        s.aggressive = a;
    }
    Ok(s)
}

fn ser_asterisk<S: serde::Serializer>(
    a: &Option<crate::source::asterisk::AsteriskSettings>,
    ser: S,
) -> Result<S::Ok, S::Error> {
    match a {
        None => ser.serialize_none(),
        Some(a) => serde_json::json!({
            "logs": a.logs,
            "full_log": a.full_log,
            "maxretry": a.maxretry,
            "findtime": human_duration(u64::from(a.findtime)),
            "bantime": human_duration(u64::from(a.bantime)),
            "bantime_increment": { "factor": a.increment_factor, "max": human_duration(u64::from(a.increment_max)) },
            "priority": a.priority,
            "aggressive": a.aggressive,
        })
        .serialize(ser),
    }
}

/// Resolve one feed entry; `Ok(None)` for `enabled: false`.
fn resolve_feed(user: RawFeed, base_dir: &Path) -> Result<Option<FeedSettings>, String> {
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
/// file's directory).
fn parse_location(url: &str, base_dir: &Path) -> Result<FeedLocation, String> {
    if let Some(rest) = url.strip_prefix("file://") {
        if !rest.starts_with('/') {
            return Err(format!("`{url}`: file:// URLs need an absolute path (file:///path), or use file:relative/path"));
        }
        return Ok(FeedLocation::File(PathBuf::from(rest)));
    }
    if let Some(rest) = url.strip_prefix("file:") {
        if rest.is_empty() {
            return Err(format!("`{url}`: empty file path"));
        }
        let p = PathBuf::from(rest);
        return Ok(FeedLocation::File(if p.is_absolute() {
            p
        } else {
            base_dir.join(p)
        }));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        let host = url_host(url).ok_or_else(|| format!("`{url}`: no host in URL"))?;
        if host.is_empty() {
            return Err(format!("`{url}`: no host in URL"));
        }
        return Ok(FeedLocation::Http(url.to_string()));
    }
    Err(format!(
        "`{url}`: only https://, http:// and file: URLs are supported"
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Settings, ConfigError> {
        load_str(text, Path::new("/etc/sipban/test.yaml"))
    }

    #[test]
    fn empty_config_gets_defaults() {
        let s = load("").unwrap();
        assert_eq!(s.state_dir, PathBuf::from("/var/lib/sipban"));
        assert_eq!(s.sets.v4.name, "sipban-v4");
        assert_eq!(s.sets.v6.cap, 65_536);
        assert!(s.allow_own_addresses);
        assert!(s.feeds.is_empty());
    }

    #[test]
    fn durations_sizes_percentages() {
        assert_eq!(Dur::parse("90s").unwrap().0, 90);
        assert_eq!(Dur::parse("10m").unwrap().0, 600);
        assert_eq!(Dur::parse("2h").unwrap().0, 7200);
        assert_eq!(Dur::parse("7d").unwrap().0, 604_800);
        assert!(Dur::parse("7").is_err());
        assert!(Dur::parse("7x").is_err());
        assert!(Dur::parse("-1s").is_err());
        assert_eq!(Size::parse("16MiB").unwrap().0, 16 << 20);
        assert!(Size::parse("16Mb").is_err());
        assert_eq!(Percent::parse("50%").unwrap().0, 0.5);
        assert!(Percent::parse("150%").is_err());
        assert_eq!(human_duration(604_800), "1w");
        assert_eq!(human_duration(90), "90s");
    }

    #[test]
    fn full_feed_and_catalogue_use() {
        let s = load(
            "feeds:\n  - name: my-list\n    url: https://example.org/list.txt\n    format: csv\n    column: 2\n    ttl: 1d\n    priority: 70\n    min_prefix: { v4: 20 }\n    max_shrink: 25%\n  - use: blocklist-de-sip\n    priority: 90\n",
        )
        .unwrap();
        assert_eq!(s.feeds.len(), 2);
        assert_eq!(s.feeds[0].format, FeedFormat::Csv { column: 2 });
        assert_eq!(s.feeds[0].min_prefix_v4, 20);
        assert_eq!(s.feeds[0].min_prefix_v6, 32);
        assert_eq!(s.feeds[1].name, "blocklist-de-sip");
        assert_eq!(s.feeds[1].priority, 90);
        assert!(matches!(s.feeds[1].location, FeedLocation::Http(_)));
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let e = load("state_dir: /tmp/x\nsets:\n  v4: { name: a, cap: 10, colour: red }\n")
            .unwrap_err();
        assert!(e.0.contains("test.yaml"), "{e}");
        assert!(e.0.contains("colour"), "{e}");
        assert!(e.0.contains("line 3"), "{e}");
    }

    #[test]
    fn duplicate_key_is_an_error() {
        let e = load("state_dir: /a\nstate_dir: /b\n").unwrap_err();
        assert!(e.0.to_lowercase().contains("duplicate"), "{e}");
        assert!(e.0.contains("line 2"), "{e}");
    }

    #[test]
    fn bad_values_are_located() {
        let e = load("allowlist: [192.168.1.0/24, example.org]\n").unwrap_err();
        assert!(e.0.contains("example.org") && e.0.contains("line 1"), "{e}");
        let e = load("feeds:\n  - name: a\n    url: https://x.org/\n    ttl: 7\n").unwrap_err();
        assert!(e.0.contains("unit") && e.0.contains("line 4"), "{e}");
        let e = load("allow_own_addresses: yes\n").unwrap_err();
        assert!(e.0.contains("line 1"), "{e}");
        let e = load("feeds:\n  - name: a\n  - name: b\n    url: https://x.org\n").unwrap_err();
        assert!(e.0.contains("line 2") && e.0.contains("url"), "{e}");
        let e = load("feeds:\n  - use: nope\n").unwrap_err();
        assert!(e.0.contains("catalogue"), "{e}");
        let e = load("feeds:\n  - name: asterisk\n    url: https://x.org\n").unwrap_err();
        assert!(e.0.contains("reserved"), "{e}");
        let e = load(
            "feeds:\n  - {name: a, url: 'https://x.org'}\n  - {name: a, url: 'https://y.org'}\n",
        )
        .unwrap_err();
        assert!(e.0.contains("twice") && e.0.contains("line 3"), "{e}");
    }

    #[test]
    fn relative_file_feeds_follow_the_config() {
        let s = load("feeds:\n  - {name: a, url: 'file:examples/x.txt'}\n  - {name: b, url: 'file:///srv/y.txt'}\n").unwrap();
        assert_eq!(
            s.feeds[0].location,
            FeedLocation::File(PathBuf::from("/etc/sipban/examples/x.txt"))
        );
        assert_eq!(
            s.feeds[1].location,
            FeedLocation::File(PathBuf::from("/srv/y.txt"))
        );
        assert!(load("feeds:\n  - {name: a, url: 'file://rel.txt'}\n").is_err());
        assert!(load("feeds:\n  - {name: a, url: 'ftp://x.org/a'}\n").is_err());
    }

    #[test]
    fn hosts_of_urls() {
        assert_eq!(
            url_host("https://lists.blocklist.de/lists/sip.txt"),
            Some("lists.blocklist.de")
        );
        assert_eq!(url_host("https://u:p@h.org:8443/x"), Some("h.org"));
        assert_eq!(url_host("http://[2001:db8::1]:80/x"), Some("2001:db8::1"));
    }
}
