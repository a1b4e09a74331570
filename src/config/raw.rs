//! What the admin wrote: the YAML schema as serde types, every field optional (ripgrep's
//! LowArgs). Defaults and cross-field rules belong to the resolution in the sibling modules.
//!
//! This module must never apply a default, read a file or hold a runtime type: it is the
//! shape of the file, nothing more.

use super::ports::PortEntry;
use super::values::{Cidr, Dur, Nat64Prefix, Percent, Priority, Size, V4Coverage, V6Coverage};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The config file as written. Every field is optional; defaults are applied in [`resolve`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub state_dir: Option<PathBuf>,
    pub sets: Option<RawSets>,
    /// `backend: ipset | nft | auto`: which kernel sets sipban fills (default ipset).
    pub backend: Option<Spanned<super::sets::BackendChoice>>,
    pub allowlist: Option<Vec<Cidr>>,
    pub allow_own_addresses: Option<bool>,
    /// Let the log detectors ban addresses on this host's own networks (default false).
    pub ban_on_link: Option<bool>,
    /// Protect the SIP/IAX2 peers in Asterisk's configuration (default auto).
    pub protect_asterisk_peers: Option<super::protect::Toggle>,
    pub asterisk_config_dir: Option<PathBuf>,
    pub feeds: Option<Vec<Spanned<RawFeed>>>,
    pub apiban: Option<Spanned<RawApiban>>,
    pub asterisk: Option<Spanned<RawAsterisk>>,
    pub daemon: Option<Spanned<RawDaemon>>,
    pub metrics: Option<Spanned<RawMetrics>>,
    pub report: Option<Spanned<RawReport>>,
    pub kernel_log: Option<Spanned<RawKernelLog>>,
    /// How much address space all sources together may cover before the download that takes
    /// them over it is refused: `{ v4: <addresses or % of IPv4>, v6: <count of /64s> }`.
    pub max_total_coverage: Option<RawMaxCoverage>,
    /// The network's own NAT64 prefixes (RFC 6052), besides the well-known 64:ff9b::/96.
    pub nat64_prefixes: Option<Vec<Nat64Prefix>>,
    /// `journal:`: where the systemd journal is read from (for `journal: true` inputs).
    pub journal: Option<Spanned<RawJournal>>,
    /// `sip_wire:`: SIP seen on the wire (HEP v3 from the PBX, live capture) in the daemon.
    pub sip_wire: Option<Spanned<RawSipWire>>,
    /// `crowdsec:`: pull a CrowdSec LAPI's decisions (bouncer), push own detections (machine).
    pub crowdsec: Option<Spanned<RawCrowdsec>>,
    /// `export:`: own detections written as a feed after every sync.
    pub export: Option<Spanned<RawExport>>,
}

/// `crowdsec:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCrowdsec {
    pub lapi_url: Option<String>,
    /// A file holding the bouncer key (mode 640 or stricter). `SIPBAN_CROWDSEC_KEY` wins.
    pub bouncer_key_file: Option<PathBuf>,
    pub machine_id: Option<String>,
    /// A file holding the machine password (mode 640 or stricter).
    /// `SIPBAN_CROWDSEC_MACHINE_PASSWORD` wins.
    pub machine_password_file: Option<PathBuf>,
    pub priority: Option<Priority>,
    pub scopes: Option<Vec<super::crowdsec::Scope>>,
    pub max_ttl: Option<Dur>,
    pub min_prefix_v4: Option<u8>,
    pub min_prefix_v6: Option<u8>,
    pub ca_file: Option<PathBuf>,
}

/// `export:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExport {
    pub path: Option<PathBuf>,
    pub format: Option<super::crowdsec::ExportFormat>,
}

/// `sip_wire:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSipWire {
    pub hep: Option<RawHep>,
    pub capture: Option<RawCapture>,
    pub maxretry: Option<u32>,
    pub findtime: Option<Dur>,
    pub bantime: Option<Dur>,
    pub priority: Option<Priority>,
    /// Clients the detector remembers at most (its memory bound).
    pub max_clients: Option<u32>,
    /// Call-IDs remembered at most for attributing Asterisk's Timeout lines.
    pub max_callids: Option<u32>,
    /// TCP streams the live capture follows at once, at most.
    pub max_tcp_streams: Option<u32>,
    /// Bytes buffered per TCP stream direction, at most (also the largest SIP message).
    pub max_tcp_buffer: Option<u32>,
    /// Bytes buffered over all TCP streams, at most.
    pub max_tcp_memory: Option<u32>,
    /// A TCP stream silent this long is forgotten.
    pub tcp_idle: Option<Dur>,
}

/// `sip_wire.hep`: HEP v3 over UDP.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHep {
    pub listen: Option<super::values::ListenAddr>,
    /// The capture agents whose datagrams are read; others are ignored (counted).
    pub peers: Option<Vec<Cidr>>,
    /// Asterisk's `hep.conf` `capture_password` (Kamailio: `auth_key`): datagrams without it
    /// are refused (counted).
    pub capture_password: Option<String>,
}

/// `sip_wire.capture`: live capture on one or more interfaces.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapture {
    pub interfaces: Option<Vec<String>>,
    /// Shorthand for one interface (`interfaces: [eth0]`); not with `interfaces`.
    pub interface: Option<String>,
    pub ports: Option<Vec<u16>>,
    /// Read SIP over TCP too (default true: streams reassembled, each read only after a
    /// handshake this host answered).
    pub tcp: Option<bool>,
}

/// `journal:`: the systemd journal the detectors read with `journal: true`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJournal {
    /// A journal directory (`journalctl --directory`); default: the system journal.
    pub directory: Option<PathBuf>,
}

/// `asterisk:`: the log detector (run by `source::asterisk`).
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
    pub security_event_services: Option<Vec<String>>,
    pub max_read_per_run: Option<Size>,
    pub max_read_time: Option<Dur>,
    /// Also read Asterisk's entries from the systemd journal.
    pub journal: Option<bool>,
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
    /// Spanned, so that a bad name or cap is reported at its line and column.
    pub name: Option<Spanned<String>>,
    pub cap: Option<Spanned<u32>>,
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
    /// How much address space the listing may cover (after the gate's address-space rules)
    /// before a download is refused: `{ v4: <addresses or % of IPv4>, v6: <count of /64s> }`.
    pub max_coverage: Option<RawMaxCoverage>,
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

#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaxCoverage {
    pub v4: Option<V4Coverage>,
    pub v6: Option<V6Coverage>,
}

/// `daemon:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    /// Cron pattern with seconds, UTC.
    pub sync_schedule: Option<String>,
    /// Feed name → cron pattern: when that feed is downloaded regardless of its `interval`.
    pub feed_schedules: Option<BTreeMap<String, String>>,
}

/// `metrics:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// node_exporter textfile collector file, e.g.
    /// `/var/lib/prometheus/node-exporter/sipban.prom`.
    pub textfile: Option<PathBuf>,
}

/// The `report:` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReport {
    pub abuseipdb: Option<RawAbuseipdb>,
    pub webhook: Option<RawWebhook>,
}

/// `report.abuseipdb`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAbuseipdb {
    /// A file holding the key (mode 640 or stricter). `SIPBAN_ABUSEIPDB_KEY` wins over it.
    pub key_file: Option<PathBuf>,
    pub base_url: Option<String>,
    pub daily_limit: Option<u32>,
    pub min_interval_per_ip: Option<Dur>,
    pub include_udp: Option<bool>,
    /// An extra CA (PEM) to trust besides the system store.
    pub ca_file: Option<PathBuf>,
}

/// `report.webhook`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub url: Option<String>,
    /// Extra request headers (e.g. `Authorization`). Their values are treated as secrets.
    pub headers: Option<BTreeMap<String, String>>,
    /// A file of `Name: value` lines (mode 640 or stricter), read at each run.
    pub header_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

/// Which API generation to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiVersion {
    /// `GET /api/<KEY>/banned/<ID>`: the key is in the URL path (redacted wherever printed).
    V1,
    /// `POST /api/get` with `Authorization: Bearer <KEY>` and `{"set","id"}`.
    V2,
}

/// Which APIBAN dataset to read (v2; v1 has only SIP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApibanSet {
    Sip,
    Http,
    All,
}

impl ApibanSet {
    pub fn as_str(self) -> &'static str {
        match self {
            ApibanSet::Sip => "sip",
            ApibanSet::Http => "http",
            ApibanSet::All => "all",
        }
    }
}

/// The `apiban:` section as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiban {
    /// A file holding the key (mode 640 or stricter). `SIPBAN_APIBAN_KEY` wins over it.
    pub key_file: Option<PathBuf>,
    pub api: Option<ApiVersion>,
    pub set: Option<ApibanSet>,
    pub base_url: Option<String>,
    pub ttl: Option<Dur>,
    pub priority: Option<Priority>,
    pub requests_per_2min: Option<u32>,
    pub full_refresh: Option<Dur>,
    /// An extra CA (PEM) to trust besides the system store.
    pub ca_file: Option<PathBuf>,
}

/// `kernel_log:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKernelLog {
    pub files: Option<Vec<PathBuf>>,
    pub window: Option<Dur>,
    /// Summed weight that makes a sighting (0: off).
    pub threshold: Option<u32>,
    /// Distinct ports that make a sighting (0: off).
    pub distinct_ports: Option<u32>,
    pub ttl: Option<Dur>,
    pub priority: Option<Priority>,
    /// Catalogue entries applied after the built-in ones (a later entry wins).
    pub ports: Option<Vec<PortEntry>>,
    /// Start from the built-in catalogue (default true).
    pub builtin_ports: Option<bool>,
    pub max_read_per_run: Option<Size>,
    pub max_read_time: Option<Dur>,
    /// Also read the kernel's entries (`_TRANSPORT=kernel`) from the systemd journal.
    pub journal: Option<bool>,
    /// Log-prefix rules read before the built-in table: `[{contains: TEXT, means: drop|accept|probe}]`.
    pub log_prefixes: Option<Vec<super::kernlog::PrefixRule>>,
    /// What an unnamed prefix means: `count` (default) or `ignore`.
    pub unknown_prefix: Option<super::kernlog::UnknownPrefix>,
}
