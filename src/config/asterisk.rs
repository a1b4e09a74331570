//! The resolved `asterisk:` section: which Asterisk logs the detector reads, and its
//! fail2ban-style thresholds (maxretry, findtime, bantime and its increment).
//!
//! This module must never read a log: `source::asterisk` does that at run time.

use super::journal::JournalSettings;
use super::raw::RawAsterisk;
use super::values::{human_duration, Dur, ReadLimit, StartAt, TimeZone};
use serde::Serialize;
use std::path::PathBuf;

/// Resolved detector settings (from the YAML `asterisk:` section).
#[derive(Clone, Debug, PartialEq)]
pub struct AsteriskSettings {
    /// Files with NOTICE/WARNING/SECURITY lines (`messages`, `security`).
    pub logs: Vec<PathBuf>,
    /// The verbose log with SIP debug dumps, for Call-ID correlation (optional).
    pub full_log: Option<PathBuf>,
    /// Failures within `findtime` that make a ban.
    pub maxretry: u32,
    /// Seconds.
    pub findtime: u32,
    /// Seconds, first ban.
    pub bantime: u32,
    /// Each further ban of the same address multiplies the ban time by this.
    pub increment_factor: f64,
    /// Upper bound of an increased ban time, seconds.
    pub increment_max: u32,
    /// Priority of this source's sightings in the decide step.
    pub priority: u32,
    /// Also count the opt-in security events (RequestBadFormat, InvalidTransport,
    /// UnexpectedAddress, AuthMethodNotAllowed, RequestNotAllowed).
    pub aggressive: bool,
    /// Whose security events count (`security_event_services`).
    pub security_services: SecurityServices,
    pub timezone: TimeZone,
    /// Where to start in a file seen for the first time.
    pub start: StartAt,
    /// How much of the logs one pass may read.
    pub read_limit: ReadLimit,
    /// `journal: true`: also read Asterisk's entries from this systemd journal.
    pub journal: Option<JournalSettings>,
}

/// The services whose security events (`Service="..."`) the detector counts.
///
/// * `PJSIP` (default on): the address is the packet's source, and the one remote field that
///   can carry a newline (the account, 36 bytes) is too short to forge a line.
/// * `SIP` (default off): chan_sip writes the top Via's `maddr` as `RemoteAddress`, an address
///   the sender chooses; its NOTICE lines (`Registration from`, `Call from`) carry the real
///   source and count anyway.
/// * `AMI` (default off): over HTTP the manager URI-decodes the user name, and a POST body
///   (40,960 bytes in Asterisk 20) can fill the logger's message, whose cut end loses the real
///   `RemoteAddress`; its NOTICE lines (`failed to authenticate as`) count anyway. Turn it on
///   when the manager is not reachable over HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecurityServices {
    pub sip: bool,
    pub pjsip: bool,
    pub ami: bool,
}

impl Default for SecurityServices {
    fn default() -> Self {
        SecurityServices {
            sip: false,
            pjsip: true,
            ami: false,
        }
    }
}

impl SecurityServices {
    pub fn parse(list: &[String]) -> Result<SecurityServices, String> {
        let mut s = SecurityServices {
            sip: false,
            pjsip: false,
            ami: false,
        };
        for name in list {
            match name.to_ascii_uppercase().as_str() {
                "SIP" => s.sip = true,
                "PJSIP" => s.pjsip = true,
                "AMI" => s.ami = true,
                other => {
                    return Err(format!(
                        "security_event_services: unknown service {other:?} (SIP, PJSIP, AMI)"
                    ))
                }
            }
        }
        Ok(s)
    }

    pub fn names(&self) -> Vec<&'static str> {
        [(self.sip, "SIP"), (self.pjsip, "PJSIP"), (self.ami, "AMI")]
            .into_iter()
            .filter_map(|(on, n)| on.then_some(n))
            .collect()
    }

    /// Whether events of `service` count.
    pub fn counts(&self, service: &[u8]) -> bool {
        match service {
            b"SIP" => self.sip,
            b"PJSIP" => self.pjsip,
            b"AMI" => self.ami,
            _ => false,
        }
    }
}

impl Default for AsteriskSettings {
    fn default() -> Self {
        AsteriskSettings {
            logs: vec![
                PathBuf::from("/var/log/asterisk/messages"),
                PathBuf::from("/var/log/asterisk/security"),
            ],
            full_log: None,
            maxretry: 5,
            findtime: 600,
            bantime: 7200,
            increment_factor: 2.0,
            increment_max: 7 * 86_400,
            priority: 100,
            aggressive: false,
            security_services: SecurityServices::default(),
            timezone: TimeZone::System,
            start: StartAt::Beginning,
            read_limit: ReadLimit::default(),
            journal: None,
        }
    }
}

/// Apply defaults and validate the `asterisk:` section. With `journal: true`, only the files
/// it lists are read besides the journal (the default files are not assumed). The journal is
/// the system journal here: the caller sets the top-level `journal:` section's directory.
pub fn resolve(raw: RawAsterisk) -> Result<AsteriskSettings, String> {
    let mut s = AsteriskSettings::default();
    if raw.journal == Some(true) {
        s.journal = Some(JournalSettings::default());
        s.logs = Vec::new();
    }
    if let Some(logs) = raw.logs {
        s.logs = logs;
    }
    s.full_log = raw.full_log;
    if s.logs.is_empty() && s.full_log.is_none() && s.journal.is_none() {
        return Err("needs at least one file in `logs`, a `full_log` or `journal: true`".into());
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
    if let Some(list) = raw.security_event_services {
        s.security_services = SecurityServices::parse(&list)?;
    }
    s.read_limit = ReadLimit::resolve(raw.max_read_per_run, raw.max_read_time)?;
    Ok(s)
}

pub fn ser_asterisk<S: serde::Serializer>(
    a: &Option<AsteriskSettings>,
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
            "security_event_services": a.security_services.names(),
            "max_read_per_run": a.read_limit.bytes,
            "max_read_time": human_duration(a.read_limit.secs),
            "journal": a.journal,
        })
        .serialize(ser),
    }
}
