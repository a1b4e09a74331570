//! Reporting our own detections upstream: AbuseIPDB and a generic webhook, through a durable
//! queue in the state database, within AbuseIPDB's limits and policy.
//!
//! In a run (see [`crate::pipeline::sync`]) data flows:
//!
//! ```text
//! detectors ──► Offence ──► select ──► queue (in the run's commit) ──► drain (after it)
//! (asterisk,    (ip, times,  (only what   report_queue rows,           paced requests,
//!  kernel log)   kinds,       the sets     merged per (sink, ip)        daily limit,
//!                counts)      will hold)                                per-IP interval)
//! ```
//!
//! * [`Offence`] is the one small record every detector fills (the Asterisk detector through
//!   [`from_asterisk`]; the kernel-log detector builds its own).
//! * [`select`] keeps what may be reported: addresses the kernel sets will hold after this run
//!   (so allowlisted addresses never are), never private, special-purpose or own addresses,
//!   and for AbuseIPDB only offences seen over a connection (its policy refuses UDP, which can
//!   be spoofed) unless `include_udp: true`.
//! * [`queue`] keeps items in SQLite; enqueueing happens in the same transaction as the run's
//!   state commit, so the log cursors that found an offence and its queue item are saved
//!   together or not at all.
//! * [`drain`] sends what is due: AbuseIPDB single reports paced by a `governor` limiter, or
//!   one bulk CSV upload when the backlog is large; the webhook one JSON document per batch.
//!
//! Delivery is at least once, and the per-IP interval is the guard against sending an address
//! twice: before a request leaves, its items are *claimed* in a committed transaction (the
//! address counts as reported now, the request counts against the daily limit). A request
//! that surely did not arrive (connection refused, 429, 5xx) gives the claim back; one whose
//! fate is unknown (a timeout, a kill) keeps it, so the item is sent again only once the
//! per-IP interval has passed. The webhook has no interval: its items carry a stable `id` for
//! the collector to de-duplicate.
//!
//! This module must never report an address that came only from a feed, a private,
//! special-purpose or own address; never put a raw log line (attacker text, this host's
//! names, users or extensions) into a report; and never let an API key or a webhook header
//! value reach a log line, an error, a report, `--json` output or the state database.

pub mod abuseipdb;
pub mod comment;
pub mod crowdsec;
pub mod drain;
pub mod queue;
pub mod webhook;

pub use drain::{drain, preview, status, Status};

use crate::net;
use crate::source::apiban::Secret;
use crate::source::asterisk;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

// ---------------------------------------------------------------------------------------------
// What a detector hands over.

/// What kind of abuse an offence is; decides the AbuseIPDB categories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffenceKind {
    /// Failed SIP/IAX2 registrations and authentications: password guessing.
    SipAuth,
    /// Calls to extensions that do not exist: toll-fraud dial attempts.
    SipCall,
    /// A SIP scanner (INVITEs it never answers, attributed through Call-IDs).
    SipScan,
    /// Failed Asterisk Manager Interface logins.
    AmiAuth,
    /// Probes of ports (kernel firewall log).
    PortScan,
}

impl OffenceKind {
    /// AbuseIPDB category IDs (research §4.2): 18 Brute-Force ("... SIP ..."), 8 Fraud VoIP,
    /// 14 Port Scan.
    pub fn categories(self) -> &'static [u8] {
        match self {
            OffenceKind::SipAuth => &[18, 8],
            OffenceKind::SipCall => &[8],
            OffenceKind::SipScan => &[8, 14],
            OffenceKind::AmiAuth => &[18],
            OffenceKind::PortScan => &[14],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            OffenceKind::SipAuth => "sip_auth",
            OffenceKind::SipCall => "sip_call",
            OffenceKind::SipScan => "sip_scan",
            OffenceKind::AmiAuth => "ami_auth",
            OffenceKind::PortScan => "port_scan",
        }
    }

    /// Words for a report comment (fixed text: no evidence goes into it).
    pub fn describe(self) -> &'static str {
        match self {
            OffenceKind::SipAuth => "failed SIP/IAX2 authentications (password guessing)",
            OffenceKind::SipCall => "SIP calls to nonexistent extensions (toll-fraud attempts)",
            OffenceKind::SipScan => "SIP INVITEs from a scanner that never answered",
            OffenceKind::AmiAuth => "failed Asterisk Manager (AMI) logins",
            OffenceKind::PortScan => "probes of closed ports",
        }
    }

    /// The kind of an Asterisk detector rule (by its stable name).
    pub fn of_asterisk_rule(rule: &str) -> OffenceKind {
        match rule {
            "sip_call_rejected" | "pjsip_call_rejected" | "freepbx_unknown_connection" => {
                OffenceKind::SipCall
            }
            "sip_invite_timeout" => OffenceKind::SipScan,
            "ami_auth_failed" => OffenceKind::AmiAuth,
            _ => OffenceKind::SipAuth,
        }
    }
}

/// How the offender reached us.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Udp,
    /// A TCP connection that completed its handshake (a message arrived over it).
    Tcp,
    Tls,
    Ws,
    Wss,
    Sctp,
    /// A bare TCP SYN (a kernel-logged probe of a closed port): no handshake, so it can be
    /// spoofed like UDP.
    Syn,
}

impl Transport {
    /// Whether the source address can be forged (AbuseIPDB: "UDP connections cannot be
    /// reported"; TCP only after the three-way handshake).
    pub fn spoofable(self) -> bool {
        matches!(self, Transport::Udp | Transport::Syn)
    }

    pub fn label(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
            Transport::Sctp => "SCTP",
            Transport::Syn => "TCP SYN",
        }
    }
}

impl From<asterisk::rules::Transport> for Transport {
    fn from(t: asterisk::rules::Transport) -> Transport {
        use asterisk::rules::Transport as A;
        match t {
            A::Udp => Transport::Udp,
            A::Tcp => Transport::Tcp,
            A::Tls => Transport::Tls,
            A::Ws => Transport::Ws,
            A::Wss => Transport::Wss,
            A::Sctp => Transport::Sctp,
        }
    }
}

/// The structured evidence of an offence: what a report is built from. No free text.
///
/// Only exact numbers: detectors count evidence lines per address, not per rule, so the total
/// is a number and the kinds and rules are sets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detail {
    /// Evidence lines (failures, attributed timeouts, probes).
    pub events: u64,
    pub kinds: BTreeSet<OffenceKind>,
    /// Detector rules that matched (names made of `a-z0-9_`).
    pub rules: BTreeSet<String>,
    /// Transports seen; empty when the evidence did not say.
    pub transports: BTreeSet<Transport>,
    /// Ports of this host the offender hit, when the detector knows them.
    pub ports: BTreeSet<u16>,
}

/// Longest rule name kept.
const MAX_RULE_NAME: usize = 40;
/// Most rules and ports kept per item.
const MAX_RULES: usize = 32;
const MAX_PORTS: usize = 64;

impl Detail {
    /// AbuseIPDB categories of all kinds, ascending, without repeats.
    pub fn categories(&self) -> Vec<u8> {
        let set: BTreeSet<u8> = self
            .kinds
            .iter()
            .flat_map(|k| k.categories().iter().copied())
            .collect();
        set.into_iter().collect()
    }

    /// Add `other` into this (counts add up, sets unite), keeping the bounds.
    pub fn merge(&mut self, other: &Detail) {
        self.events = self.events.saturating_add(other.events);
        self.kinds.extend(other.kinds.iter().copied());
        for r in &other.rules {
            if self.rules.len() < MAX_RULES {
                self.rules.insert(r.clone());
            }
        }
        self.transports.extend(other.transports.iter().copied());
        for p in &other.ports {
            if self.ports.len() < MAX_PORTS {
                self.ports.insert(*p);
            }
        }
    }

    /// Whether AbuseIPDB's policy lets this be reported without `include_udp`: at least one
    /// transport that cannot be spoofed. Unknown transports count as spoofable.
    pub fn connection_proven(&self) -> bool {
        self.transports.iter().any(|t| !t.spoofable())
    }
}

/// Rule names become `[a-z0-9_]`, at most [`MAX_RULE_NAME`] bytes: they end up in comments.
fn clean_rule(name: &str) -> Option<String> {
    let s: String = name
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
        .take(MAX_RULE_NAME)
        .collect();
    (!s.is_empty()).then_some(s)
}

/// One address this host caught misbehaving: the record every detector fills.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offence {
    pub ip: IpAddr,
    /// Unix seconds of the first and last evidence.
    pub first: i64,
    pub last: i64,
    pub detail: Detail,
    /// One raw evidence line (attacker text, this host's names). Never sent, never stored:
    /// it is here so that tests can prove that it cannot leak.
    pub example: Option<String>,
}

impl Offence {
    pub fn new(ip: IpAddr, first: i64, last: i64) -> Offence {
        Offence {
            ip: net::canonical_ip(ip),
            first: first.min(last),
            last: last.max(first),
            detail: Detail::default(),
            example: None,
        }
    }

    /// Count `lines` of evidence of `kind` found by `rule`.
    pub fn add(&mut self, kind: OffenceKind, rule: &str, lines: u64) -> &mut Offence {
        self.note(kind, rule);
        self.lines(lines)
    }

    /// Record that `rule` (of `kind`) matched, without counting lines (for a detector that
    /// counts lines per address: it adds them with [`Offence::lines`]).
    pub fn note(&mut self, kind: OffenceKind, rule: &str) -> &mut Offence {
        let mut d = Detail::default();
        d.kinds.insert(kind);
        if let Some(r) = clean_rule(rule) {
            d.rules.insert(r);
        }
        self.detail.merge(&d);
        self
    }

    /// Count `n` more evidence lines.
    pub fn lines(&mut self, n: u64) -> &mut Offence {
        self.detail.events = self.detail.events.saturating_add(n);
        self
    }

    pub fn transport(&mut self, t: Transport) -> &mut Offence {
        self.detail.transports.insert(t);
        self
    }

    pub fn port(&mut self, p: u16) -> &mut Offence {
        if self.detail.ports.len() < MAX_PORTS {
            self.detail.ports.insert(p);
        }
        self
    }

    /// Fold another offence of the same address into this one.
    pub fn merge(&mut self, other: &Offence) {
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
        self.detail.merge(&other.detail);
        if other.example.is_some() {
            self.example.clone_from(&other.example);
        }
    }
}

/// The offences of the kernel-log detector's crossings in this run: port probes. The LOG rule
/// logs TCP SYNs and new UDP flows, both of which can be spoofed, so they are marked as such and
/// go to AbuseIPDB only with `include_udp: true` (the webhook gets them either way).
pub fn from_kernel(det: &crate::source::kernlog::Detections) -> Vec<Offence> {
    let mut out: BTreeMap<IpAddr, Offence> = BTreeMap::new();
    for f in &det.fired {
        let o = out
            .entry(f.ip)
            .or_insert_with(|| Offence::new(f.ip, f.at, f.at));
        o.first = o.first.min(f.at);
        o.last = o.last.max(f.at);
        o.add(
            OffenceKind::PortScan,
            "kernel_port_probe",
            u64::from(f.ports),
        )
        .transport(Transport::Syn);
    }
    out.into_values().collect()
}

/// The offences of the Asterisk detector's bans in this run (with this run's evidence of
/// each banned address).
pub fn from_asterisk(det: &asterisk::Detections) -> Vec<Offence> {
    let mut out: BTreeMap<IpAddr, Offence> = BTreeMap::new();
    for ban in &det.bans {
        let Some(ev) = det.evidence.get(&ban.ip) else {
            continue;
        };
        let o = out
            .entry(ban.ip)
            .or_insert_with(|| Offence::new(ban.ip, ev.first, ev.last));
        if o.detail.events == 0 {
            // The detector counts lines per address, not per rule: the total, and the rules.
            for r in &ev.rules {
                o.note(OffenceKind::of_asterisk_rule(r), r);
            }
            if ev.rules.is_empty() {
                o.note(OffenceKind::SipAuth, "asterisk");
            }
            o.lines(ev.count);
            for t in &ev.transports {
                o.transport((*t).into());
            }
            if ev.rules.contains(&"ami_auth_failed") {
                // manager.c only speaks TCP.
                o.transport(Transport::Tcp);
            }
            o.example.clone_from(&ev.example);
        }
    }
    out.into_values().collect()
}

// ---------------------------------------------------------------------------------------------
// Configuration: defined by `config` (the whole schema lives there), re-exported for callers.

pub use crate::config::raw::{RawAbuseipdb, RawReport, RawWebhook};
use crate::config::report::check_header;
pub use crate::config::report::{
    AbuseipdbSettings, ReportSettings, WebhookSettings, ABUSEIPDB_MAX_AGE, ABUSEIPDB_REPEAT_WINDOW,
    DEFAULT_ABUSEIPDB_KEY_FILE, MAX_DAILY_LIMIT,
};

/// The environment variable that holds the AbuseIPDB key (it wins over `key_file`).
pub const ABUSEIPDB_KEY_ENV: &str = "SIPBAN_ABUSEIPDB_KEY";

// ---------------------------------------------------------------------------------------------
// Secrets.

use crate::config::credentials;

/// Read a secret file: refuse one that other users can read, that is not a regular file, or
/// that is too large. `what` names it in messages (`the AbuseIPDB key file`).
pub fn read_secret_file(path: &Path, what: &str, hint: &str) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {what} {shown}: {e}{hint}"))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o007 != 0 {
        return Err(format!(
            "{what} {shown} can be read by other users (mode {mode:04o}); refusing to use it: run `chmod 640 {shown}`"
        ));
    }
    if !meta.is_file() {
        return Err(format!("{what} {shown} is not a regular file"));
    }
    if meta.len() > 64 * 1024 {
        return Err(format!("{what} {shown} is too large"));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {what} {shown}: {e}"))
}

/// Load the AbuseIPDB key: `SIPBAN_ABUSEIPDB_KEY` if set, else the key file.
pub fn load_abuseipdb_key(settings: &AbuseipdbSettings) -> Result<Secret, String> {
    load_abuseipdb_key_with(settings, std::env::var(ABUSEIPDB_KEY_ENV).ok())
}

/// [`load_abuseipdb_key`] with the environment value passed in (tests).
pub fn load_abuseipdb_key_with(
    settings: &AbuseipdbSettings,
    env: Option<String>,
) -> Result<Secret, String> {
    let creds = std::env::var_os(credentials::DIRECTORY_ENV);
    load_abuseipdb_key_in(settings, env, creds.as_deref())
}

/// [`load_abuseipdb_key_with`] with `$CREDENTIALS_DIRECTORY` passed in: the variable wins,
/// then the `abuseipdb.key` credential ([`credentials`]), then `key_file`.
pub fn load_abuseipdb_key_in(
    settings: &AbuseipdbSettings,
    env: Option<String>,
    creds: Option<&std::ffi::OsStr>,
) -> Result<Secret, String> {
    let (text, origin) = match env {
        Some(v) => (v, format!("the variable {ABUSEIPDB_KEY_ENV}")),
        None => {
            let path =
                credentials::secret_file_in(creds, credentials::ABUSEIPDB, &settings.key_file);
            (
                read_secret_file(
                    &path,
                    "the AbuseIPDB key file",
                    &format!(" (or set {ABUSEIPDB_KEY_ENV})"),
                )?,
                format!("the key file {}", path.display()),
            )
        }
    };
    let key = text.trim();
    if key.is_empty() {
        return Err(format!("AbuseIPDB: {origin} holds no key"));
    }
    if key.len() > 256 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "AbuseIPDB: {origin} holds characters that cannot be part of an API key (one line, no spaces)"
        ));
    }
    Ok(Secret::new(key, origin))
}

/// The webhook's headers: those of the config, then those of `header_file` (or of the
/// `webhook.headers` credential, [`credentials`]).
pub fn load_webhook_headers(settings: &WebhookSettings) -> Result<Vec<(String, Secret)>, String> {
    let creds = std::env::var_os(credentials::DIRECTORY_ENV);
    load_webhook_headers_in(settings, creds.as_deref())
}

/// [`load_webhook_headers`] with `$CREDENTIALS_DIRECTORY` passed in.
pub fn load_webhook_headers_in(
    settings: &WebhookSettings,
    creds: Option<&std::ffi::OsStr>,
) -> Result<Vec<(String, Secret)>, String> {
    let mut out = settings.headers.clone();
    let file = credentials::credential_in(creds, credentials::WEBHOOK_HEADERS)
        .or_else(|| settings.header_file.clone());
    if let Some(path) = &file {
        let text = read_secret_file(path, "the webhook header file", "")?;
        let origin = format!("the webhook header file {}", path.display());
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(format!("{origin}: line {} is not `Name: value`", n + 1));
            };
            let (name, value) = (name.trim(), value.trim());
            check_header(name, value, &format!("{origin}: line {}", n + 1))?;
            if out.iter().any(|(h, _)| h.eq_ignore_ascii_case(name)) {
                return Err(format!(
                    "{origin}: line {}: `{name}` is also set in the config",
                    n + 1
                ));
            }
            out.push((name.to_string(), Secret::new(value, origin.clone())));
        }
    }
    Ok(out)
}

/// `text` with every secret replaced by `[redacted]`.
pub fn redact_all(text: &str, secrets: &[&Secret]) -> String {
    let mut t = text.to_string();
    for s in secrets {
        t = crate::source::apiban::redact(&t, s);
    }
    t
}

// ---------------------------------------------------------------------------------------------
// Selection.

/// Why an offence is not queued for a sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    /// RFC 1918, CGNAT, ULA: a LAN device; not something to tell the world about.
    Private,
    /// Loopback, link-local, multicast, documentation...
    Special,
    /// One of this host's own addresses.
    Own,
    /// The sets will not hold it (allowlisted, or evicted over the cap).
    NotInSet,
    /// Seen only over UDP (or an unknown transport): AbuseIPDB's policy refuses it.
    Spoofable,
}

impl Skip {
    pub fn describe(self) -> &'static str {
        match self {
            Skip::Private => "private address space",
            Skip::Special => "special-purpose address",
            Skip::Own => "this host's own address",
            Skip::NotInSet => "not in the kernel set (allowlisted or evicted)",
            Skip::Spoofable => {
                "seen only over UDP or an unknown transport; AbuseIPDB refuses spoofable sources (include_udp: false)"
            }
        }
    }
}

/// What happens to one offence, per configured sink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "verdict", content = "reason")]
pub enum Verdict {
    Queue,
    Skip(Skip),
}

/// One offence of this run and what reporting does with it.
#[derive(Clone, Debug, Serialize)]
pub struct Candidate {
    pub ip: IpAddr,
    pub first: i64,
    pub last: i64,
    pub detail: Detail,
    pub categories: Vec<u8>,
    /// The AbuseIPDB comment (built from `detail`, scrubbed).
    pub comment: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abuseipdb: Option<Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Verdict>,
    /// The CrowdSec push (`crowdsec.machine_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crowdsec: Option<Verdict>,
}

impl Candidate {
    pub fn queued_for(&self, sink: &str) -> bool {
        let v = match sink {
            queue::ABUSEIPDB => &self.abuseipdb,
            queue::WEBHOOK => &self.webhook,
            queue::CROWDSEC => &self.crowdsec,
            _ => &None,
        };
        v == &Some(Verdict::Queue)
    }
}

/// Decide, per configured sink, which offences are queued. `in_sets` says whether the sets
/// hold an address after this run; `host` gives this host's addresses and names.
pub fn select_with(
    settings: &ReportSettings,
    offences: &[Offence],
    in_sets: &dyn Fn(IpAddr) -> bool,
    host: &comment::HostIdentity,
) -> Vec<Candidate> {
    let mut merged: BTreeMap<IpAddr, Offence> = BTreeMap::new();
    for o in offences {
        let ip = net::canonical_ip(o.ip);
        match merged.get_mut(&ip) {
            Some(m) => m.merge(o),
            None => {
                let mut o = o.clone();
                o.ip = ip;
                merged.insert(ip, o);
            }
        }
    }
    merged
        .into_values()
        .map(|o| {
            let hostnet = net::host_net(o.ip);
            let common = if net::special_range(&hostnet).is_some() {
                Some(Skip::Special)
            } else if net::private_range(&hostnet).is_some() {
                Some(Skip::Private)
            } else if host.is_own(o.ip) {
                Some(Skip::Own)
            } else if !in_sets(o.ip) {
                Some(Skip::NotInSet)
            } else {
                None
            };
            let abuseipdb = settings.abuseipdb.as_ref().map(|a| match common {
                Some(s) => Verdict::Skip(s),
                None if !a.include_udp && !o.detail.connection_proven() => {
                    Verdict::Skip(Skip::Spoofable)
                }
                None => Verdict::Queue,
            });
            let webhook = settings.webhook.as_ref().map(|_| match common {
                Some(s) => Verdict::Skip(s),
                None => Verdict::Queue,
            });
            let crowdsec = settings.crowdsec.as_ref().map(|_| match common {
                Some(s) => Verdict::Skip(s),
                None => Verdict::Queue,
            });
            Candidate {
                ip: o.ip,
                first: o.first,
                last: o.last,
                categories: o.detail.categories(),
                comment: comment::comment(o.ip, o.first, o.last, &o.detail, host),
                detail: o.detail,
                abuseipdb,
                webhook,
                crowdsec,
            }
        })
        .collect()
}

/// [`select_with`] for a run: `in_sets` says whether the run's decision holds an address;
/// the host is this one.
pub fn select(
    settings: &ReportSettings,
    offences: &[Offence],
    in_sets: &dyn Fn(IpAddr) -> bool,
) -> Vec<Candidate> {
    let host = comment::HostIdentity::current();
    select_with(settings, offences, in_sets, &host)
}

// ---------------------------------------------------------------------------------------------
// What a request came back with.

/// The fate of one request, from the queue's point of view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: delivered.
    Accepted,
    /// AbuseIPDB's "once in 15 minutes" refusal for this address: not recorded; retry later.
    Duplicate { retry_after: Option<u64> },
    /// 429 otherwise (daily quota, rate limit): not recorded; stop this sink for this run.
    RateLimited {
        retry_after: Option<u64>,
        detail: String,
    },
    /// 401/403: the key or token was refused; stop this sink, keep the items.
    Unauthorized(String),
    /// 404/405: the URL is wrong; stop this sink, keep the items.
    Misconfigured(String),
    /// 422 and other 4xx: the item itself is refused; drop it.
    Refused(String),
    /// 5xx, or a connection that never carried the request: not recorded; retry later.
    NotDelivered(String),
    /// The request may have arrived (a timeout, a connection lost mid-answer).
    Unknown(String),
}

/// Parse a `Retry-After` header (seconds; an HTTP date is not used).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A reqwest error as an [`Outcome`]: refused connections never carried the request.
pub fn send_error(e: &reqwest::Error, secrets: &[&Secret]) -> Outcome {
    let msg = redact_all(&crate::source::apiban::api::describe(e), secrets);
    if e.is_connect() || e.is_builder() {
        // No connection (refused, unreachable, TLS handshake failed), or a request the
        // client would not build: nothing was sent.
        Outcome::NotDelivered(msg)
    } else {
        Outcome::Unknown(msg)
    }
}

/// The largest answer body read.
pub const MAX_BODY: usize = 1 << 20;

/// Read at most [`MAX_BODY`] bytes of an answer (errors only shorten it).
pub async fn read_body(resp: &mut reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        if body.len() + chunk.len() > MAX_BODY {
            break;
        }
        body.extend_from_slice(&chunk);
    }
    body
}

// ---------------------------------------------------------------------------------------------
// What reporting did in a run.

/// How a sink's drain ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum SinkStatus {
    /// Everything due was sent (or there was nothing to send).
    #[default]
    Ok,
    /// Nothing sent: the daily limit is used up.
    DailyLimit,
    /// The service asked us to wait (429); the items stay queued.
    RateLimited(String),
    /// The key or token was refused.
    Unauthorized(String),
    /// The service could not be reached, or another error; the items stay queued.
    Failed(String),
    /// A dry run: nothing sent.
    DryRun,
}

/// One sink's part of a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SinkRun {
    pub sink: &'static str,
    #[serde(flatten)]
    pub status: SinkStatus,
    /// Offences of this run added to (or merged into) the queue.
    pub queued: usize,
    /// Items delivered (a dry run: that would be sent now).
    pub sent: usize,
    /// Requests made (a bulk upload or a webhook batch is one).
    pub requests: usize,
    pub bulk_uploads: usize,
    /// Items that failed and stay queued for a retry.
    pub retry: usize,
    /// Items dropped because the service refused them for good (e.g. 422).
    pub refused: usize,
    /// Items dropped because their evidence is older than AbuseIPDB accepts.
    pub expired: usize,
    /// Queue after the run.
    pub queue: queue::Stats,
    /// Requests used today (UTC) and the limit (AbuseIPDB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_today: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily_limit: Option<u32>,
}

/// What reporting did (or, in a dry run, would do) in a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReportRun {
    pub dry_run: bool,
    pub candidates: Vec<Candidate>,
    pub sinks: Vec<SinkRun>,
    /// Problems, worded for the admin; never a secret.
    pub errors: Vec<String>,
}

/// A sink's name for people.
pub fn sink_label(sink: &str) -> &'static str {
    match sink {
        queue::ABUSEIPDB => "AbuseIPDB",
        queue::CROWDSEC => "CrowdSec",
        _ => "webhook",
    }
}

/// How many candidates the human output lists.
const SHOW: usize = 25;

impl fmt::Display for ReportRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dry_run {
            writeln!(
                f,
                "upstream reports (dry run: nothing queued, nothing sent):"
            )?;
        } else {
            writeln!(f, "upstream reports:")?;
        }
        for c in self.candidates.iter().take(SHOW) {
            let verdicts: Vec<String> = [
                ("AbuseIPDB", &c.abuseipdb),
                ("webhook", &c.webhook),
                ("CrowdSec", &c.crowdsec),
            ]
            .iter()
            .filter_map(|(name, v)| {
                v.as_ref().map(|v| match v {
                    Verdict::Queue if self.dry_run => format!("{name}: would queue"),
                    Verdict::Queue => format!("{name}: queued"),
                    Verdict::Skip(s) => format!("{name}: not reported ({})", s.describe()),
                })
            })
            .collect();
            let cats: Vec<String> = c.categories.iter().map(u8::to_string).collect();
            writeln!(
                f,
                "  {} [categories {}] {}",
                c.ip,
                cats.join(","),
                verdicts.join("; ")
            )?;
            if c.abuseipdb == Some(Verdict::Queue) {
                writeln!(f, "    comment: {}", c.comment)?;
            }
        }
        if self.candidates.len() > SHOW {
            writeln!(
                f,
                "  ... and {} more (--json lists all)",
                self.candidates.len() - SHOW
            )?;
        }
        if self.candidates.is_empty() {
            writeln!(f, "  no new detections of this host to report")?;
        }
        for s in &self.sinks {
            let name = sink_label(s.sink);
            let status = match &s.status {
                SinkStatus::Ok => String::new(),
                SinkStatus::DryRun => String::new(),
                SinkStatus::DailyLimit => " DAILY LIMIT reached;".into(),
                SinkStatus::RateLimited(d) => format!(" RATE LIMITED ({d});"),
                SinkStatus::Unauthorized(d) => format!(" UNAUTHORIZED ({d});"),
                SinkStatus::Failed(d) => format!(" FAILED ({d});"),
            };
            let q = &s.queue;
            let verb = if self.dry_run { "would send" } else { "sent" };
            write!(
                f,
                "  {name}:{status} {verb} {} in {} requests",
                s.sent, s.requests
            )?;
            if s.bulk_uploads > 0 {
                write!(f, " ({} bulk)", s.bulk_uploads)?;
            }
            if s.retry > 0 {
                write!(f, ", {} kept for a retry", s.retry)?;
            }
            if s.refused > 0 {
                write!(f, ", {} refused and dropped", s.refused)?;
            }
            if s.expired > 0 {
                write!(f, ", {} too old and dropped", s.expired)?;
            }
            write!(
                f,
                "; queue {} ({} wait for the per-address interval, {} for a retry)",
                q.total, q.waiting_interval, q.waiting_retry
            )?;
            if let (Some(u), Some(l)) = (s.used_today, s.daily_limit) {
                write!(f, "; {u} of {l} reports used today (UTC)")?;
            }
            writeln!(f)?;
        }
        for e in &self.errors {
            writeln!(f, "  error: {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
