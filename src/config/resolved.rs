//! The resolved settings (ripgrep's HiArgs): what sipban decided from the file, with
//! defaults applied, the catalogue merged and every section validated.
//!
//! This module must never do I/O: [`resolve`] is a function of the parsed file and its path.

use super::apiban::{self, ApibanSettings};
use super::asterisk::{self, AsteriskSettings};
use super::daemon::{self, DaemonSettings};
use super::feed::{resolve_feed, FeedSettings};
use super::journal::{self, JournalSettings};
use super::kernlog::{self, KernelLogSettings};
use super::metrics::{self, MetricsSettings};
use super::protect::{Toggle, DEFAULT_ASTERISK_CONFIG_DIR};
use super::raw::{RawConfig, RawSet};
use super::report::{self, ReportSettings};
use super::sets::{validate_set_name, SetSettings, SetsSettings};
use super::wire::{self, SipWireSettings};
use super::ConfigError;
use ipnet::IpNet;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Resolved settings: defaults applied, catalogue merged, everything validated.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    pub config_path: PathBuf,
    pub state_dir: PathBuf,
    pub sets: SetsSettings,
    /// `backend:` as configured (`auto` is decided when a command runs).
    pub backend: super::sets::BackendChoice,
    pub allowlist: Vec<IpNet>,
    pub allow_own_addresses: bool,
    /// May the log detectors (asterisk, kernel_log) ban an address on this host's own
    /// networks? Feeds never may.
    pub ban_on_link: bool,
    /// Protect the peers in Asterisk's configuration (`auto`: when the directory is readable).
    pub protect_asterisk_peers: Toggle,
    /// Where Asterisk's configuration is read from (relative to the config file's directory).
    pub asterisk_config_dir: PathBuf,
    pub feeds: Vec<FeedSettings>,
    /// Present when the config has an `apiban:` section.
    pub apiban: Option<ApibanSettings>,
    /// Present when the config has an `asterisk:` section.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "asterisk::ser_asterisk"
    )]
    pub asterisk: Option<AsteriskSettings>,
    /// `daemon:` (schedules of `sipban run`); defaults when the section is absent.
    pub daemon: DaemonSettings,
    /// `metrics:` (the node_exporter textfile); off when absent.
    pub metrics: MetricsSettings,
    /// Present when the config has a `report:` section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportSettings>,
    /// Present when the config has a `kernel_log:` section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_log: Option<KernelLogSettings>,
    /// `max_total_coverage`: what all sources together may cover.
    pub max_total_coverage: TotalCoverage,
    /// `nat64_prefixes`: the network's own NAT64 prefixes.
    pub nat64_prefixes: Vec<crate::net::Nat64>,
    /// `journal:`: the systemd journal that `journal: true` inputs read.
    pub journal: JournalSettings,
    /// Present when the config has a `sip_wire:` section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip_wire: Option<SipWireSettings>,
    /// Present when the config has a `crowdsec:` section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crowdsec: Option<super::crowdsec::CrowdsecSettings>,
    /// Present when the config has an `export:` section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export: Option<super::crowdsec::ExportSettings>,
}

/// The default ceiling on the IPv4 addresses all sources together may cover: 268,435,456, a
/// sixteenth of IPv4 (sixteen /8s). It is at least the sum of the catalogue's own per-feed
/// ceilings (Spamhaus DROP and FireHOL level 1 at four /8s each, blocklist.de and VoIPBL at one
/// /8 each), so lists the catalogue accepts one by one are accepted together, whatever they
/// overlap; all of IPv4 is far above it.
pub const DEFAULT_MAX_TOTAL_COVERAGE_V4: u64 = 1 << 28;
/// The default ceiling on the IPv6 /64s all sources together may cover: 2^49, two /16s' worth
/// (1/4096 of the global unicast 2000::/3); at least the sum of the catalogue's IPv6 ceilings.
pub const DEFAULT_MAX_TOTAL_COVERAGE_V6: u64 = 1 << 49;

/// A ceiling on what all sources together may cover, counted like a feed's `max_coverage`:
/// IPv4 addresses, and IPv6 /64 networks (a longer prefix counts as the /64 it lies in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TotalCoverage {
    pub v4: u64,
    pub v6: u64,
}

/// Apply defaults, merge catalogue entries and validate. No I/O.
pub fn resolve(raw: RawConfig, path: &Path) -> Result<Settings, ConfigError> {
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let state_dir = raw
        .state_dir
        .unwrap_or_else(|| PathBuf::from("/var/lib/sipban"));
    let raw_sets = raw.sets.unwrap_or_default();
    let set =
        |r: Option<RawSet>, default_name: &str| -> Result<(SetSettings, String), ConfigError> {
            let r = r.unwrap_or_default();
            let (name, name_at) = match r.name {
                Some(n) => (n.value, at(path, &n.referenced)),
                None => (default_name.to_string(), path.display().to_string()),
            };
            validate_set_name(&name).map_err(|e| ConfigError(format!("{name_at}: sets: {e}")))?;
            let cap = match r.cap {
                Some(c) if c.value == 0 => {
                    return Err(ConfigError(format!(
                        "{}: sets: cap for `{name}` must be at least 1",
                        at(path, &c.referenced)
                    )))
                }
                Some(c) => c.value,
                None => 65_536,
            };
            Ok((SetSettings { name, cap }, name_at))
        };
    let (v4, _) = set(raw_sets.v4, "sipban-v4")?;
    let (v6, v6_at) = set(raw_sets.v6, "sipban-v6")?;
    let sets = SetsSettings { v4, v6 };
    if sets.v4.name == sets.v6.name {
        return Err(ConfigError(format!(
            "{v6_at}: sets: v4 and v6 must have different names (both are `{}`)",
            sets.v4.name
        )));
    }
    super::sets::check_nft_names(&sets).map_err(|e| ConfigError(format!("{v6_at}: sets: {e}")))?;
    let backend = raw.backend.map(|b| b.value).unwrap_or_default();

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

    let journal = match raw.journal {
        None => JournalSettings::default(),
        Some(spanned) => journal::resolve(spanned.value)
            .map_err(|e| ConfigError(format!("{}: journal: {e}", at(path, &spanned.referenced))))?,
    };
    let asterisk = match raw.asterisk {
        None => None,
        Some(spanned) => Some(asterisk::resolve(spanned.value).map_err(|e| {
            ConfigError(format!("{}: asterisk: {e}", at(path, &spanned.referenced)))
        })?),
    };
    let kernel_log = match raw.kernel_log {
        Some(spanned) => Some(kernlog::resolve(spanned.value).map_err(|e| {
            ConfigError(format!(
                "{}: kernel_log: {e}",
                at(path, &spanned.referenced)
            ))
        })?),
        None => None,
    };
    let (asterisk, kernel_log) = share_journal(asterisk, kernel_log, &journal);
    let apiban = section(raw.apiban, path, "apiban", |r| {
        apiban::resolve(r, &base_dir)
    })?;
    let daemon = match raw.daemon {
        None => DaemonSettings::default(),
        Some(spanned) => daemon::resolve(Some(spanned.value), &feeds)
            .map_err(|e| ConfigError(format!("{}: daemon: {e}", at(path, &spanned.referenced))))?,
    };
    let metrics = match raw.metrics {
        None => MetricsSettings::default(),
        Some(spanned) => metrics::resolve(Some(spanned.value))
            .map_err(|e| ConfigError(format!("{}: metrics: {e}", at(path, &spanned.referenced))))?,
    };
    let sip_wire = section(raw.sip_wire, path, "sip_wire", wire::resolve)?;
    let mut report = section(raw.report, path, "report", |r| {
        report::resolve(r, &base_dir)
    })?;
    let crowdsec = section(raw.crowdsec, path, "crowdsec", |r| {
        super::crowdsec::resolve(r, &base_dir)
    })?;
    let export = section(raw.export, path, "export", |r| {
        super::crowdsec::resolve_export(r, &base_dir)
    })?;
    add_crowdsec_push(
        &mut report,
        crowdsec.as_ref(),
        asterisk.as_ref(),
        sip_wire.as_ref(),
        kernel_log.as_ref(),
    );

    Ok(Settings {
        config_path: path.to_path_buf(),
        state_dir,
        sets,
        backend,
        allowlist: raw
            .allowlist
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.0)
            .collect(),
        allow_own_addresses: raw.allow_own_addresses.unwrap_or(true),
        ban_on_link: raw.ban_on_link.unwrap_or(false),
        protect_asterisk_peers: raw.protect_asterisk_peers.unwrap_or_default(),
        asterisk_config_dir: base_dir.join(
            raw.asterisk_config_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_ASTERISK_CONFIG_DIR)),
        ),
        feeds,
        apiban,
        asterisk,
        daemon,
        metrics,
        report,
        kernel_log,
        max_total_coverage: {
            let mc = raw.max_total_coverage.unwrap_or_default();
            TotalCoverage {
                v4: mc.v4.map_or(DEFAULT_MAX_TOTAL_COVERAGE_V4, |c| c.0),
                v6: mc.v6.map_or(DEFAULT_MAX_TOTAL_COVERAGE_V6, |c| c.0),
            }
        },
        nat64_prefixes: raw
            .nat64_prefixes
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.0)
            .collect(),
        journal,
        sip_wire,
        crowdsec,
        export,
    })
}

/// `journal: true` inputs read the top-level `journal:` section's journal.
fn share_journal(
    asterisk: Option<AsteriskSettings>,
    kernel_log: Option<KernelLogSettings>,
    journal: &JournalSettings,
) -> (Option<AsteriskSettings>, Option<KernelLogSettings>) {
    let asterisk = asterisk.map(|mut a| {
        if let Some(j) = &mut a.journal {
            *j = journal.clone();
        }
        a
    });
    let kernel_log = kernel_log.map(|mut k| {
        for j in [&mut k.journal, &mut k.journal_fallback]
            .into_iter()
            .flatten()
        {
            *j = journal.clone();
        }
        k
    });
    (asterisk, kernel_log)
}

/// The CrowdSec push is a sink of the report queue: `report:` exists when it is on. An alert's
/// ban lasts the detector's bantime (Asterisk's, else the SIP wire's; the kernel log's TTL for
/// port scans).
fn add_crowdsec_push(
    report: &mut Option<ReportSettings>,
    crowdsec: Option<&super::crowdsec::CrowdsecSettings>,
    asterisk: Option<&AsteriskSettings>,
    sip_wire: Option<&SipWireSettings>,
    kernel_log: Option<&KernelLogSettings>,
) {
    let bantime = asterisk
        .map(|a| a.bantime)
        .or(sip_wire.map(|w| w.bantime))
        .unwrap_or(4 * 3600);
    let port_scan_bantime = kernel_log.map(|k| k.ttl).unwrap_or(bantime);
    if let Some(push) = crowdsec.and_then(|c| c.push(bantime, port_scan_bantime)) {
        report.get_or_insert_with(ReportSettings::default).crowdsec = Some(push);
    }
}

/// An optional section resolved by `f`, its errors located at the section.
fn section<R, T>(
    raw: Option<serde_saphyr::Spanned<R>>,
    path: &Path,
    name: &str,
    f: impl FnOnce(R) -> Result<T, String>,
) -> Result<Option<T>, ConfigError> {
    raw.map(|spanned| {
        f(spanned.value)
            .map_err(|e| ConfigError(format!("{}: {name}: {e}", at(path, &spanned.referenced))))
    })
    .transpose()
}

fn at(origin: &Path, loc: &serde_saphyr::Location) -> String {
    format!(
        "{}: line {} column {}",
        origin.display(),
        loc.line(),
        loc.column()
    )
}
