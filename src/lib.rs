//! sipban: a small, fast blocklist agent for hosts that run a SIP PBX.
//!
//! One run is data flowing through a pipeline (see `design.md` in the shared folder):
//!
//! ```text
//! sources ──► sightings ──► decide ──► plan ──► apply ──► persist
//! ```
//!
//! Module map:
//! - [`config`]: the whole schema: the YAML as written, the resolved [`config::Settings`], the
//!   built-in feed catalogue (`feeds/*.yaml`); imports nothing of the crate but [`net`].
//! - [`cli`]: the commands behind the command line (`main` parses and dispatches to it): human
//!   and JSON views, one error type for the exit codes.
//! - [`net`]: address parsing, canonicalisation and prefix arithmetic; the only way text
//!   becomes an address.
//! - [`source`]: producers of [`source::Sighting`]s (feeds, and later APIBAN and log detectors).
//! - [`hostaddr`]: this host's own addresses and networks (for the allowlist).
//! - [`peers`]: the SIP/IAX2 peers in Asterisk's configuration (for the allowlist).
//! - [`decide`]: the pure policy step (allowlist, prefix rules, provenance, cap) and the plan.
//! - [`firewall`]: the only code that changes the kernel: ipset batches, swaps and read-back;
//!   the DROP rules that use the sets; conntrack cleanup of newly banned sources.
//! - [`store`]: the SQLite state (entries, feed metadata, run history).
//! - [`lock`]: one run at a time.
//! - [`mirror`]: what the kernel sets held after the last apply, so most runs skip reading
//!   them back.
//! - [`sync`]: one run of the pipeline, and its report.
//! - [`inspect`]: read-only `list` and `explain`.
//! - [`http`]: the HTTPS client every remote source uses (rustls, system roots).
//! - [`daemon`]: `sipban run`: cron schedules, real-time log following, signals, systemd.
//! - [`manual`]: `sipban ban` / `unban` (pinned bans, unbans, the manual allowlist).
//! - [`status`]: `sipban status`, the data behind the metrics.
//! - [`metrics`]: node_exporter textfile and the JSON run summary, written atomically.
//! - [`report`]: our own detections upstream (AbuseIPDB, a webhook), through a durable queue.
//! - [`restore`]: `sipban restore`, the boot-time reload of the sets from the saved state
//!   (no network).

pub mod backend;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod fsio;
pub mod hostaddr;
pub mod http;
pub mod inspect;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod net;
pub mod pack;
pub mod peers;
pub mod pipeline;
pub mod report;
pub mod source;
pub mod status;
pub mod store;

/// Process exit codes (documented in the README).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The run failed; the live sets were left as they were.
    pub const FAILED: u8 = 1;
    /// Bad command line or bad configuration.
    pub const USAGE: u8 = 2;
    /// The run completed, but at least one source failed (its last good entries were kept).
    pub const PARTIAL: u8 = 3;
    /// Another run holds the lock; this one changed nothing.
    pub const LOCKED: u8 = 4;
    /// The state could not be read or written: disk full, read-only file system or permission
    /// denied (the message names the path and says what was applied but not saved).
    pub const STORAGE: u8 = 5;
    /// The state database was corrupt: it was moved aside (`state.db.corrupt-<time>`); a sync
    /// rebuilt it from what can be trusted, a `restore` left the kernel sets untouched.
    pub const CORRUPT: u8 = 6;
}
