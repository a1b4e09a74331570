//! The resolved `kernel_log:` section: which kernel logs to score, the scoring window and
//! thresholds, and the config's own port-catalogue entries.
//!
//! This module must never read a log or build the port lookup: `source::kernlog` does that at
//! run time, from these settings.

use super::journal::JournalSettings;
use super::ports::PortEntry;
use super::raw::RawKernelLog;
use super::values::{human_duration, Dur, ReadLimit, StartAt, TimeZone};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Highest `distinct_ports` (it bounds the state: an address fires before it holds more).
pub const MAX_DISTINCT_PORTS: u32 = 1024;
/// Highest `threshold`.
pub const MAX_THRESHOLD: u32 = 100_000;

/// The resolved `kernel_log:` section.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelLogSettings {
    pub files: Vec<PathBuf>,
    /// Seconds.
    #[serde(serialize_with = "ser_secs")]
    pub window: u32,
    pub threshold: u32,
    pub distinct_ports: u32,
    /// Seconds.
    #[serde(serialize_with = "ser_secs")]
    pub ttl: u32,
    pub priority: u16,
    pub builtin_ports: bool,
    /// The config's own entries (`kernel_log.ports`).
    pub ports: Vec<PortEntry>,
    /// How local-time dates become Unix time (tests fix it).
    #[serde(skip)]
    pub timezone: TimeZone,
    /// Where to start in a file seen for the first time.
    #[serde(skip)]
    pub start: StartAt,
    /// How much of the logs one pass may read.
    #[serde(skip)]
    pub read_limit: ReadLimit,
    /// `journal: true`: also read the kernel's entries from this systemd journal.
    pub journal: Option<JournalSettings>,
    /// No `files` and no `journal: true` were given: when the default kern.log does not exist,
    /// the kernel's lines are read from this journal instead (`source::kernlog::inputs`).
    #[serde(skip)]
    pub journal_fallback: Option<JournalSettings>,
    /// The config's own log-prefix rules (`kernel_log.log_prefixes`), read before the built-in
    /// table (`source::kernlog::prefix`).
    pub log_prefixes: Vec<PrefixRule>,
    /// What a line whose prefix no rule names means (`kernel_log.unknown_prefix`).
    pub unknown_prefix: UnknownPrefix,
    /// Hosts whose service answers (UDP from port 53, 123, 1900, 5353) are never probes: the
    /// default gateways and resolvers. `None`: read from this host at run time.
    #[serde(skip)]
    pub service_hosts: Option<Vec<std::net::IpAddr>>,
}

/// What a LOG line's rule did with the packet, as its prefix says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Means {
    /// Dropped or rejected: a probe that was turned away.
    Drop,
    /// Accepted, or logged before any verdict (audit): never a probe.
    Accept,
    /// Logged before the filter decides by a rule that watches probes (sipban's own): counted,
    /// but not as proof of a drop.
    Probe,
}

/// One `kernel_log.log_prefixes` rule: a prefix containing `contains` (ASCII case ignored)
/// means `means`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixRule {
    pub contains: String,
    pub means: Means,
}

/// `kernel_log.unknown_prefix`: lines whose prefix (or lack of one) no rule names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownPrefix {
    /// Counted as probes, but not as drops (`only_dropped` ports do not count).
    #[default]
    Count,
    /// Not counted.
    Ignore,
}

fn ser_secs<S: serde::Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&human_duration(u64::from(*v)))
}

impl Default for KernelLogSettings {
    fn default() -> Self {
        KernelLogSettings {
            files: vec![PathBuf::from("/var/log/kern.log")],
            window: 600,
            threshold: 10,
            distinct_ports: 8,
            ttl: 86_400,
            priority: 90,
            builtin_ports: true,
            ports: Vec::new(),
            timezone: TimeZone::System,
            start: StartAt::Beginning,
            read_limit: ReadLimit::default(),
            journal: None,
            journal_fallback: None,
            log_prefixes: Vec::new(),
            unknown_prefix: UnknownPrefix::Count,
            service_hosts: None,
        }
    }
}

/// Apply defaults and validate the `kernel_log:` section. With `journal: true`, only the
/// files listed are read besides the journal; with neither `files` nor `journal`, the journal
/// is read instead of the default kern.log when that does not exist. The journal is the
/// system journal here: the caller sets the top-level `journal:` section's directory.
pub fn resolve(raw: RawKernelLog) -> Result<KernelLogSettings, String> {
    let mut s = KernelLogSettings::default();
    match (raw.journal, &raw.files) {
        (Some(true), _) => {
            s.journal = Some(JournalSettings::default());
            s.files = Vec::new();
        }
        (None, None) => s.journal_fallback = Some(JournalSettings::default()),
        _ => {}
    }
    if let Some(files) = raw.files {
        if files.is_empty() && s.journal.is_none() {
            return Err("`files` needs at least one kernel log (e.g. /var/log/kern.log)".into());
        }
        s.files = files;
    }
    if s.files.is_empty() && s.journal.is_none() {
        return Err("needs at least one file in `files`, or `journal: true`".into());
    }
    let secs = |d: Dur, what: &str, max: u64| -> Result<u32, String> {
        if d.0 == 0 || d.0 > max {
            return Err(format!(
                "{what} must be between 1s and {}",
                human_duration(max)
            ));
        }
        Ok(d.0 as u32) // max fits in u32
    };
    if let Some(w) = raw.window {
        s.window = secs(w, "window", 7 * 86_400)?;
    }
    if let Some(t) = raw.ttl {
        s.ttl = secs(t, "ttl", u64::from(u32::MAX))?;
    }
    if let Some(t) = raw.threshold {
        if t > MAX_THRESHOLD {
            return Err(format!("threshold must be at most {MAX_THRESHOLD}"));
        }
        s.threshold = t;
    }
    if let Some(d) = raw.distinct_ports {
        if d == 1 || d > MAX_DISTINCT_PORTS {
            return Err(format!(
                "distinct_ports must be 0 (off) or between 2 and {MAX_DISTINCT_PORTS}"
            ));
        }
        s.distinct_ports = d;
    }
    if s.threshold == 0 && s.distinct_ports == 0 {
        return Err("threshold and distinct_ports are both 0: nothing could ever be banned".into());
    }
    if let Some(p) = raw.priority {
        s.priority = p.0;
    }
    if let Some(b) = raw.builtin_ports {
        s.builtin_ports = b;
    }
    s.ports = raw.ports.unwrap_or_default();
    s.read_limit = ReadLimit::resolve(raw.max_read_per_run, raw.max_read_time)?;
    s.log_prefixes = raw.log_prefixes.unwrap_or_default();
    if let Some(r) = s.log_prefixes.iter().find(|r| r.contains.trim().is_empty()) {
        return Err(format!(
            "log_prefixes: `contains: {:?}` would match every line; name the prefix",
            r.contains
        ));
    }
    if let Some(u) = raw.unknown_prefix {
        s.unknown_prefix = u;
    }
    Ok(s)
}
