//! The CrowdSec source: pull a Local API's decisions as a bouncer, as a source named
//! `crowdsec`.
//!
//! Every pull asks for the full state (`GET /v1/decisions/stream?startup=true`) and the
//! pipeline treats it as the source's complete list: an address CrowdSec no longer decides on
//! leaves the sets at the next sync. Measured against a real 1.4.6 LAPI: the server keeps one
//! delta cursor per bouncer key and every pull moves it, so a delta-only client loses a
//! deletion that a `--dry-run` (or a second user of the key) pulled first. A full pull has no
//! such history: a dry run cannot change what the next real run sees. Empty lists come back as
//! `null`; IPv6 values come as the decision was written (compressed or not) and are
//! canonicalised here; the remaining duration is a Go duration (`1h59m58.287193418s`).
//!
//! Only decisions of type `ban` and scope `Ip` or `Range` (as configured in `scopes`) are
//! taken; captcha and other types, and other scopes, are counted and ignored.
//!
//! This module must never let the bouncer key reach a log line, an error, `--json` output or
//! the state database: it lives in a [`Secret`], sent in one sensitive header, and every
//! message goes through [`redact`]. It must never turn certificate checks off.

pub mod duration;

use crate::config::credentials;
pub use crate::config::crowdsec::{CrowdsecSettings, Scope};
pub use crate::config::secret::{redact, Secret};
use crate::net;
use crate::source::Sighting;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

/// The source name of CrowdSec's marks in `entries`.
pub const SOURCE: &str = "crowdsec";

/// The environment variable that holds the bouncer key (it wins over the key file).
pub const KEY_ENV: &str = "SIPBAN_CROWDSEC_KEY";

/// The largest answer read: about 300,000 decisions (a decision is about 200 bytes).
pub const MAX_BODY: usize = 64 << 20;

/// Why there is no key; like APIBAN's, an unreadable file fails the source in this run, a
/// refused one (readable by others, empty, not a key) fails the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyError {
    pub message: String,
    pub unreadable: bool,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Read a secret file: refuse one that other users can read, that is not a regular file, or
/// that is too large. The text is returned trimmed.
pub fn read_secret(path: &Path, what: &str, hint: &str) -> Result<String, KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let refuse = |message: String| KeyError {
        message,
        unreadable: false,
    };
    let meta = std::fs::metadata(path).map_err(|e| KeyError {
        message: format!("cannot read {what} {shown}: {e}{hint}"),
        unreadable: true,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o007 != 0 {
        return Err(refuse(format!(
            "{what} {shown} can be read by other users (mode {mode:04o}); refusing to use it: run `chmod 640 {shown}`"
        )));
    }
    if !meta.is_file() || meta.len() > 4096 {
        return Err(refuse(format!(
            "{what} {shown} is not a regular file of at most 4 KiB"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| KeyError {
        message: format!("cannot read {what} {shown}: {e}"),
        unreadable: true,
    })?;
    Ok(text.trim().to_string())
}

/// A secret must be one line of printable ASCII without spaces.
fn check_secret(value: String, what: &str) -> Result<String, KeyError> {
    let refuse = |message: String| KeyError {
        message,
        unreadable: false,
    };
    if value.is_empty() {
        return Err(refuse(format!("crowdsec: {what} holds nothing")));
    }
    if value.len() > 512 || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(refuse(format!(
            "crowdsec: {what} holds characters that cannot be part of a key (one line, no spaces)"
        )));
    }
    Ok(value)
}

/// Load the bouncer key: `SIPBAN_CROWDSEC_KEY`, else the `crowdsec-bouncer.key` credential,
/// else `bouncer_key_file`.
pub fn load_key(settings: &CrowdsecSettings) -> Result<Secret, KeyError> {
    let creds = std::env::var_os(credentials::DIRECTORY_ENV);
    load_key_in(settings, std::env::var(KEY_ENV).ok(), creds.as_deref())
}

/// [`load_key`] with the variable and `$CREDENTIALS_DIRECTORY` passed in (tests).
pub fn load_key_in(
    settings: &CrowdsecSettings,
    env: Option<String>,
    creds: Option<&std::ffi::OsStr>,
) -> Result<Secret, KeyError> {
    if let Some(v) = env {
        let what = format!("the variable {KEY_ENV}");
        return Ok(Secret::new(
            check_secret(v.trim().to_string(), &what)?,
            what,
        ));
    }
    let path = credentials::secret_file_in(
        creds,
        credentials::CROWDSEC_BOUNCER,
        &settings.bouncer_key_file,
    );
    let text = read_secret(
        &path,
        "the CrowdSec bouncer key file",
        &format!(" (or set {KEY_ENV})"),
    )?;
    let what = format!("the bouncer key file {}", path.display());
    Ok(Secret::new(check_secret(text, &what)?, what))
}

// ---------------------------------------------------------------------------------------------
// The stream.

/// One decision as the LAPI sends it (fields sipban does not use are ignored).
#[derive(Debug, Deserialize)]
struct Decision {
    #[serde(default)]
    duration: String,
    #[serde(default)]
    scope: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    value: String,
}

/// The answer of `/v1/decisions/stream`: `null` for an empty list.
#[derive(Debug, Deserialize)]
struct Stream {
    #[serde(default)]
    new: Option<Vec<Decision>>,
    #[serde(default)]
    deleted: Option<Vec<Decision>>,
}

/// How a pull ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum PullStatus {
    /// The full state was read.
    Ok,
    /// HTTP 401/403: the key was refused.
    Unauthorized(String),
    /// Unreachable, an unexpected answer, a malformed body.
    Failed(String),
}

/// Ban decisions taken in, by scope and family.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ScopeCounts {
    pub ip_v4: usize,
    pub ip_v6: usize,
    pub range_v4: usize,
    pub range_v6: usize,
}

/// What one pull did.
#[derive(Clone, Debug, Serialize)]
pub struct CrowdsecRun {
    #[serde(flatten)]
    pub status: PullStatus,
    /// Active decisions in the answer (every type and scope).
    pub decisions: usize,
    /// Expired or deleted decisions in the answer.
    pub deleted: usize,
    /// Ban decisions taken in.
    pub by_scope: ScopeCounts,
    /// Decisions of another type (captcha...) or scope, or a scope not configured.
    pub ignored: usize,
    /// Decisions whose value or duration could not be read.
    pub invalid: usize,
    /// Bytes of the answer.
    pub bytes: usize,
    /// Milliseconds the pull took.
    pub millis: u64,
    /// The address the LAPI answered from (never banned).
    #[serde(skip)]
    pub remote_addr: Option<IpAddr>,
    /// The decisions, as sightings seen now with their remaining duration.
    #[serde(skip)]
    pub sightings: Vec<Sighting>,
}

impl CrowdsecRun {
    pub fn failed(reason: String) -> CrowdsecRun {
        CrowdsecRun {
            status: PullStatus::Failed(reason),
            decisions: 0,
            deleted: 0,
            by_scope: ScopeCounts::default(),
            ignored: 0,
            invalid: 0,
            bytes: 0,
            millis: 0,
            remote_addr: None,
            sightings: Vec::new(),
        }
    }

    /// The error line for the run report, if the pull failed.
    pub fn error(&self) -> Option<String> {
        let kept = "the CrowdSec entries already applied are kept";
        match &self.status {
            PullStatus::Ok => None,
            PullStatus::Unauthorized(m) | PullStatus::Failed(m) => {
                Some(format!("crowdsec: {m}; {kept}"))
            }
        }
    }
}

impl fmt::Display for CrowdsecRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.status {
            PullStatus::Ok => f.write_str("pulled")?,
            PullStatus::Unauthorized(m) => write!(f, "UNAUTHORIZED: {m}")?,
            PullStatus::Failed(m) => write!(f, "FAILED: {m}")?,
        }
        let s = &self.by_scope;
        write!(
            f,
            " ({} decisions, {} deleted; bans: {} Ip v4, {} Ip v6, {} Range v4, {} Range v6; {} ignored, {} invalid; {} ms)",
            self.decisions,
            self.deleted,
            s.ip_v4,
            s.ip_v6,
            s.range_v4,
            s.range_v6,
            self.ignored,
            self.invalid,
            self.millis
        )
    }
}

/// Turn an answer into the run: ban decisions of the configured scopes become sightings seen
/// at `now` for their remaining duration (whole seconds, at least one, at most `max_ttl`).
fn take(settings: &CrowdsecSettings, stream: Stream, now: i64, run: &mut CrowdsecRun) {
    let new = stream.new.unwrap_or_default();
    run.decisions = new.len();
    run.deleted = stream.deleted.map_or(0, |d| d.len());
    for d in new {
        let scope = match d.scope.to_ascii_lowercase().as_str() {
            "ip" => Scope::Ip,
            "range" => Scope::Range,
            _ => {
                run.ignored += 1;
                continue;
            }
        };
        if !d.kind.eq_ignore_ascii_case("ban") || !settings.scopes.contains(&scope) {
            run.ignored += 1;
            continue;
        }
        let parsed = match scope {
            Scope::Ip => net::parse_ip(d.value.trim()).map(net::host_net),
            Scope::Range => net::parse_net(d.value.trim()).ok(),
        };
        let (Some(n), Some(secs)) = (parsed, duration::parse_go_duration(&d.duration)) else {
            run.invalid += 1;
            continue;
        };
        if secs < 1.0 {
            // About to expire: the next pull no longer lists it.
            continue;
        }
        let ttl = (secs as u64).min(u64::from(settings.max_ttl)) as u32;
        let c = &mut run.by_scope;
        match (scope, n.addr().is_ipv4()) {
            (Scope::Ip, true) => c.ip_v4 += 1,
            (Scope::Ip, false) => c.ip_v6 += 1,
            (Scope::Range, true) => c.range_v4 += 1,
            (Scope::Range, false) => c.range_v6 += 1,
        }
        run.sightings.push(Sighting {
            net: n,
            seen: now,
            ttl,
        });
    }
    // One sighting per prefix, the longest decision (as CrowdSec's own bouncers apply them):
    // the list is complete, so its TTL replaces the saved one.
    run.sightings
        .sort_unstable_by(|a, b| net::cmp_net(&a.net, &b.net).then(b.ttl.cmp(&a.ttl)));
    run.sightings
        .dedup_by(|later, first| later.net == first.net);
}

fn client(settings: &CrowdsecSettings) -> anyhow::Result<reqwest::Client> {
    crate::http::client(
        crate::http::Timeouts {
            connect: settings.connect_timeout,
            total: settings.timeout,
        },
        settings.ca_file.as_deref(),
    )
}

/// Read at most `max` bytes of an answer.
async fn read_limited(resp: &mut reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > max {
                    return Err(format!("the answer is larger than {max} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(crate::http::describe(&e)),
        }
    }
}

/// Pull the full state once. Never returns an error: failures are a [`PullStatus`].
pub async fn pull(settings: &CrowdsecSettings, key: &Secret, now: i64) -> CrowdsecRun {
    let started = std::time::Instant::now();
    let mut run = pull_inner(settings, key, now).await;
    run.millis = started.elapsed().as_millis().min(u128::from(u64::MAX)) as u64;
    if let PullStatus::Unauthorized(m) | PullStatus::Failed(m) = &mut run.status {
        *m = redact(m, key);
    }
    run
}

async fn pull_inner(settings: &CrowdsecSettings, key: &Secret, now: i64) -> CrowdsecRun {
    use reqwest::header;
    let client = match client(settings) {
        Ok(c) => c,
        Err(e) => return CrowdsecRun::failed(format!("{e:#}")),
    };
    let url = format!("{}/v1/decisions/stream?startup=true", settings.lapi_url);
    let Ok(mut value) = header::HeaderValue::from_str(key.expose()) else {
        return CrowdsecRun::failed("the bouncer key cannot be sent in a header".into());
    };
    value.set_sensitive(true);
    tracing::debug!("crowdsec: GET {url}");
    let mut resp = match client
        .get(&url)
        .header("X-Api-Key", value)
        .header(header::ACCEPT, "application/json")
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => {
            return CrowdsecRun::failed(format!(
                "the LAPI at {} cannot be reached: {}",
                settings.lapi_url,
                crate::http::describe(&e)
            ))
        }
    };
    let remote = resp.remote_addr().map(|a| net::canonical_ip(a.ip()));
    let status = resp.status().as_u16();
    let mut run = match status {
        200 => CrowdsecRun::failed(String::new()),
        401 | 403 => {
            let mut r = CrowdsecRun::failed(String::new());
            r.status = PullStatus::Unauthorized(format!(
                "the LAPI at {} refused the bouncer key from {} (HTTP {status}): check the key \
                 (`cscli bouncers list` on the LAPI host; create one with `cscli bouncers add NAME`)",
                settings.lapi_url,
                key.origin()
            ));
            r.remote_addr = remote;
            return r;
        }
        s => {
            return CrowdsecRun::failed(format!(
                "the LAPI at {} answered HTTP {s}",
                settings.lapi_url
            ))
        }
    };
    run.remote_addr = remote;
    let body = match read_limited(&mut resp, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            run.status = PullStatus::Failed(format!("reading the decisions: {e}"));
            return run;
        }
    };
    run.bytes = body.len();
    let stream: Stream = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            run.status = PullStatus::Failed(format!("malformed decisions stream: {e}"));
            return run;
        }
    };
    run.status = PullStatus::Ok;
    take(settings, stream, now, &mut run);
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CrowdsecSettings {
        let raw = crate::config::raw::RawCrowdsec {
            lapi_url: Some("http://127.0.0.1:8080".into()),
            ..Default::default()
        };
        crate::config::crowdsec::resolve(raw, Path::new("/etc/sipban")).unwrap()
    }

    #[test]
    fn a_full_state_becomes_sightings() {
        // An answer of CrowdSec 1.4.6 (values as written by `cscli decisions add`).
        let body = r#"{"deleted":[{"duration":"-15.130903ms","id":1,"origin":"cscli","scenario":"x","scope":"Ip","type":"ban","value":"192.0.2.7"}],
          "new":[{"duration":"59m58.872848912s","id":2,"origin":"cscli","scenario":"x","scope":"Range","type":"ban","value":"198.51.100.0/24"},
                 {"duration":"2h59m58.872846819s","id":3,"origin":"cscli","scenario":"x","scope":"Ip","type":"ban","value":"2001:0db8:0000::0001"},
                 {"duration":"2h59m58.872846308s","id":4,"origin":"cscli","scenario":"x","scope":"Range","type":"ban","value":"2001:db8:aa::/48"},
                 {"duration":"2h59m59.872845977s","id":5,"origin":"cscli","scenario":"x","scope":"Ip","type":"captcha","value":"192.0.2.9"},
                 {"duration":"1h","id":6,"origin":"cscli","scenario":"x","scope":"Country","type":"ban","value":"FR"},
                 {"duration":"1h","id":7,"origin":"cscli","scenario":"x","scope":"Ip","type":"ban","value":"not-an-ip"}]}"#;
        let mut run = CrowdsecRun::failed(String::new());
        take(
            &settings(),
            serde_json::from_str(body).unwrap(),
            1000,
            &mut run,
        );
        assert_eq!((run.decisions, run.deleted), (6, 1));
        assert_eq!((run.ignored, run.invalid), (2, 1));
        let got: Vec<(String, u32)> = run
            .sightings
            .iter()
            .map(|s| (net::display_net(&s.net), s.ttl))
            .collect();
        assert_eq!(
            got,
            [
                ("198.51.100.0/24".to_string(), 3598),
                ("2001:db8::1".to_string(), 10798),
                ("2001:db8:aa::/48".to_string(), 10798)
            ]
        );
        // Empty lists are `null`.
        let mut run = CrowdsecRun::failed(String::new());
        take(
            &settings(),
            serde_json::from_str(r#"{"deleted":null,"new":null}"#).unwrap(),
            1000,
            &mut run,
        );
        assert_eq!((run.decisions, run.sightings.len()), (0, 0));
    }

    #[test]
    fn only_configured_scopes_are_taken() {
        let mut s = settings();
        s.scopes = vec![Scope::Ip];
        let body =
            r#"{"new":[{"duration":"1h","scope":"Range","type":"ban","value":"198.51.100.0/24"}]}"#;
        let mut run = CrowdsecRun::failed(String::new());
        take(&s, serde_json::from_str(body).unwrap(), 0, &mut run);
        assert_eq!((run.ignored, run.sightings.len()), (1, 0));
    }
}
