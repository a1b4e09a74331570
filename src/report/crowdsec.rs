//! The CrowdSec push: this host's own detections as alerts to a Local API, logged in as a
//! CrowdSec machine (`crowdsec.machine_id`).
//!
//! One queued item (one address, merged per address like every sink's) becomes one alert with
//! one `ban` decision: the scenario of its detector rule family (`sipban/asterisk-bruteforce`,
//! `sipban/port-scan`, ...; [`scenario`]), source scope `Ip`, origin `sipban`, the detector's
//! bantime as duration, and a fixed-word message with the event count. Alerts go out in
//! batches (`POST /v1/alerts`) with a JWT from `POST /v1/watchers/login`, which lasts an hour:
//! it is renewed before it runs out, and once after a 401.
//!
//! Exactly once: items are claimed with the per-address interval set to the bantime before the
//! request leaves, so a run killed mid-request never sends the address again while its first
//! ban can still be live. The LAPI answers HTTP 500, not 4xx, for a malformed alert: every
//! alert is validated here first (a malformed one is dropped, never sent), and an item that
//! keeps meeting a 500 is dropped after [`MAX_500_ATTEMPTS`].
//!
//! Only what the queue holds is pushed, and the queue holds only detections of this host's
//! detectors (never feed, APIBAN or CrowdSec entries, never manual bans): nothing loops. This
//! module must never let the machine password or the JWT reach a log line, an error, a report,
//! `--json` output or the state database.

use super::drain::{backoff, client, unix_ms, Pacer};
use super::queue::{self, Claim, Item};
use super::{comment, Detail, OffenceKind, Outcome, SinkRun, SinkStatus};
use crate::config::credentials;
use crate::config::crowdsec::CrowdsecPushSettings;
use crate::source::apiban::Secret;
use crate::store::Store;
use anyhow::Result;
use std::net::IpAddr;

/// The queue's name for this sink.
pub const SINK: &str = "crowdsec";

/// The environment variable that holds the machine password (it wins over the file).
pub const PASSWORD_ENV: &str = "SIPBAN_CROWDSEC_MACHINE_PASSWORD";

/// An item met with HTTP 500 this many times is dropped (the LAPI's answer to a malformed
/// alert; a LAPI that is really down answers no connection at all, which is retried forever).
pub const MAX_500_ATTEMPTS: u32 = 5;

/// Every scenario sipban pushes, announced at login.
pub const SCENARIOS: [&str; 5] = [
    "sipban/asterisk-bruteforce",
    "sipban/sip-tollfraud",
    "sipban/sip-scanner",
    "sipban/ami-bruteforce",
    "sipban/port-scan",
];

/// The scenario of a detector rule family.
pub fn scenario(kind: OffenceKind) -> &'static str {
    match kind {
        OffenceKind::SipAuth => SCENARIOS[0],
        OffenceKind::SipCall => SCENARIOS[1],
        OffenceKind::SipScan => SCENARIOS[2],
        OffenceKind::AmiAuth => SCENARIOS[3],
        OffenceKind::PortScan => SCENARIOS[4],
    }
}

/// Load the machine password: `SIPBAN_CROWDSEC_MACHINE_PASSWORD`, else the
/// `crowdsec-machine.key` credential, else `machine_password_file`.
pub fn load_password(settings: &CrowdsecPushSettings) -> Result<Secret, String> {
    let creds = std::env::var_os(credentials::DIRECTORY_ENV);
    let (text, origin) = match std::env::var(PASSWORD_ENV) {
        Ok(v) => (v.trim().to_string(), format!("the variable {PASSWORD_ENV}")),
        Err(_) => {
            let path = credentials::secret_file_in(
                creds.as_deref(),
                credentials::CROWDSEC_MACHINE,
                &settings.machine_password_file,
            );
            let text = crate::source::crowdsec::read_secret(
                &path,
                "the CrowdSec machine password file",
                &format!(" (or set {PASSWORD_ENV})"),
            )
            .map_err(|e| e.message)?;
            (
                text,
                format!("the machine password file {}", path.display()),
            )
        }
    };
    if text.is_empty() || text.len() > 512 || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "crowdsec: {origin} holds no usable password (one line, no spaces)"
        ));
    }
    Ok(Secret::new(text, origin))
}

/// The ban duration of an item: the kernel-log TTL for a pure port scan, else the bantime.
fn duration_of(detail: &Detail, settings: &CrowdsecPushSettings) -> u32 {
    let only_ports =
        !detail.kinds.is_empty() && detail.kinds.iter().all(|k| *k == OffenceKind::PortScan);
    if only_ports {
        settings.port_scan_bantime
    } else {
        settings.bantime
    }
}

/// The alert of one item, or why it may not be sent (checked here: the LAPI would answer a
/// malformed alert with HTTP 500, indistinguishable from an outage).
pub fn alert(
    ip: IpAddr,
    first: i64,
    last: i64,
    detail: &Detail,
    settings: &CrowdsecPushSettings,
) -> Result<serde_json::Value, String> {
    let canonical = crate::net::canonical_ip(ip);
    if canonical != ip || ip.is_unspecified() {
        return Err(format!("{ip} is not a canonical address"));
    }
    let kind = detail
        .kinds
        .iter()
        .next()
        .copied()
        .ok_or("no offence kind")?;
    let events = detail.events.max(1);
    if events > u64::from(i32::MAX as u32) {
        return Err("the event count is out of range".into());
    }
    let duration = duration_of(detail, settings);
    if duration == 0 {
        return Err("the ban duration is zero".into());
    }
    if first <= 0 || last < first {
        return Err("the evidence times are out of order".into());
    }
    let kinds: Vec<&str> = detail.kinds.iter().map(|k| k.describe()).collect();
    let message = format!(
        "sipban: {ip} performed {} ({events} events)",
        kinds.join(", ")
    );
    let value = ip.to_string();
    let sc = scenario(kind);
    Ok(serde_json::json!({
        "scenario": sc,
        "scenario_hash": "",
        "scenario_version": env!("CARGO_PKG_VERSION"),
        "message": message,
        "events_count": events,
        "start_at": comment::iso8601(first),
        "stop_at": comment::iso8601(last),
        "capacity": 0,
        "leakspeed": "0",
        "simulated": false,
        "remediation": true,
        "events": [],
        "source": { "scope": "Ip", "value": value, "ip": value },
        "decisions": [{
            "origin": "sipban",
            "type": "ban",
            "scope": "Ip",
            "value": value,
            "duration": format!("{duration}s"),
            "scenario": sc,
        }],
    }))
}

/// A JWT and when it runs out (Unix seconds).
struct Token {
    value: Secret,
    expires: i64,
}

/// How long a LAPI's JWT lasts.
const TOKEN_LIFETIME: i64 = 3600;

/// Renew the token this long before it runs out.
const RENEW_MARGIN: i64 = 300;

async fn login(
    http: &reqwest::Client,
    s: &CrowdsecPushSettings,
    password: &Secret,
    now: i64,
) -> Result<Token, Outcome> {
    let body = serde_json::json!({
        "machine_id": s.machine_id,
        "password": password.expose(),
        "scenarios": SCENARIOS,
    });
    let secrets = [password];
    let mut resp = http
        .post(format!("{}/v1/watchers/login", s.lapi_url))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| super::send_error(&e, &secrets))?;
    let status = resp.status().as_u16();
    let text = super::read_body(&mut resp).await;
    match status {
        200 => {}
        401 | 403 => {
            return Err(Outcome::Unauthorized(format!(
                "the LAPI at {} refused the login of machine `{}` with {} (HTTP {status}): check it with `cscli machines list`",
                s.lapi_url,
                s.machine_id,
                password.origin()
            )))
        }
        s => return Err(Outcome::NotDelivered(format!("login: HTTP {s}"))),
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        token: String,
    }
    let a: Answer = serde_json::from_slice(&text)
        .map_err(|_| Outcome::NotDelivered("login: an answer without a token".into()))?;
    // The LAPI's JWTs last an hour (`expire` in the answer says so too).
    Ok(Token {
        value: Secret::new(a.token, "the LAPI's login token"),
        expires: now + TOKEN_LIFETIME,
    })
}

async fn post(
    http: &reqwest::Client,
    s: &CrowdsecPushSettings,
    token: &Token,
    alerts: &[serde_json::Value],
) -> Outcome {
    let secrets = [&token.value];
    let Ok(mut auth) =
        reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.value.expose()))
    else {
        return Outcome::Misconfigured("the token cannot be sent in a header".into());
    };
    auth.set_sensitive(true);
    let resp = http
        .post(format!("{}/v1/alerts", s.lapi_url))
        .header(reqwest::header::AUTHORIZATION, auth)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::Value::Array(alerts.to_vec()).to_string())
        .send()
        .await;
    let mut resp = match resp {
        Ok(r) => r,
        Err(e) => return super::send_error(&e, &secrets),
    };
    let status = resp.status().as_u16();
    let body = super::read_body(&mut resp).await;
    let text: String = String::from_utf8_lossy(&body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    let text = super::redact_all(text.trim(), &secrets);
    match status {
        200..=299 => Outcome::Accepted,
        401 | 403 => Outcome::Unauthorized(format!("HTTP {status}: {text}")),
        404 | 405 => Outcome::Misconfigured(format!("HTTP {status}: check lapi_url")),
        429 => Outcome::RateLimited {
            retry_after: None,
            detail: format!("HTTP 429: {text}"),
        },
        400..=499 => Outcome::Refused(format!("HTTP {status}: {text}")),
        _ => Outcome::NotDelivered(format!("HTTP {status}: {text}")),
    }
}

/// Send what is due, in batches, paced.
pub async fn drain(
    s: &CrowdsecPushSettings,
    store: &mut Store,
    now: i64,
    run: &mut SinkRun,
) -> Result<()> {
    let interval = Some(u64::from(s.bantime.max(s.port_scan_bantime)));
    // Evidence older than a ban is of no use to the fleet.
    run.expired += store.report_queue().expire(
        SINK,
        now - i64::from(s.bantime.max(s.port_scan_bantime)),
        now,
    )?;
    let password = match load_password(s) {
        Ok(p) => p,
        Err(e) => {
            run.status = SinkStatus::Failed(e);
            return Ok(());
        }
    };
    let http = client(s.connect_timeout, s.timeout, s.ca_file.as_deref())?;
    let mut pacer = Pacer::new(
        s.pace,
        store
            .report_queue()
            .state_int(&queue::key(SINK, "last_request_ms"))?,
    );
    let mut token: Option<Token> = None;
    let mut relogged = false;
    for _ in 0..s.max_batches_per_run {
        let due: Vec<Item> = store.report_queue().due(SINK, now, interval, s.batch)?;
        if due.is_empty() {
            break;
        }
        // Malformed alerts are dropped here, never sent.
        let mut alerts = Vec::new();
        let mut ids = Vec::new();
        let mut bad = Vec::new();
        for i in &due {
            match alert(i.ip, i.first, i.last, &i.detail, s) {
                Ok(a) => {
                    alerts.push(a);
                    ids.push(i.id);
                }
                Err(e) => bad.push((i.id, format!("malformed alert, not sent: {e}"))),
            }
        }
        if !bad.is_empty() {
            tracing::warn!("crowdsec: {} malformed alerts dropped", bad.len());
            store.report_queue().refuse(SINK, &bad, now)?;
            run.refused += bad.len();
        }
        if ids.is_empty() {
            continue;
        }
        if token
            .as_ref()
            .is_none_or(|t| t.expires - RENEW_MARGIN <= crate::clock::unix_now())
        {
            match login(&http, s, &password, crate::clock::unix_now()).await {
                Ok(t) => token = Some(t),
                Err(o) => {
                    run.status = match o {
                        Outcome::Unauthorized(d) => SinkStatus::Unauthorized(d),
                        Outcome::NotDelivered(d) | Outcome::Unknown(d) => {
                            SinkStatus::Failed(format!("the LAPI at {}: {d}", s.lapi_url))
                        }
                        other => SinkStatus::Failed(format!("{other:?}")),
                    };
                    break;
                }
            }
        }
        let Some(t) = &token else { break };
        pacer.wait().await;
        store.report_queue().claim(
            SINK,
            &ids,
            now,
            Claim {
                used: 1,
                bulk: false,
                per_ip: true,
                request_ms: unix_ms(),
            },
        )?;
        run.requests += 1;
        let outcome = post(&http, s, t, &alerts).await;
        match settle(store, &due, &ids, now, outcome, run, &mut relogged)? {
            Next::Go => {}
            Next::Relogin => token = None,
            Next::Stop => break,
        }
    }
    Ok(())
}

/// What comes after a batch.
enum Next {
    Go,
    /// A 401 with a token we thought valid: log in again, once.
    Relogin,
    Stop,
}

/// Settle one batch.
fn settle(
    store: &Store,
    due: &[Item],
    ids: &[i64],
    now: i64,
    outcome: Outcome,
    run: &mut SinkRun,
    relogged: &mut bool,
) -> Result<Next> {
    let q = store.report_queue();
    match outcome {
        Outcome::Accepted => {
            q.delivered(SINK, ids, now)?;
            run.sent += ids.len();
            Ok(Next::Go)
        }
        Outcome::Refused(d) => {
            tracing::warn!("crowdsec: a batch of alerts was refused and dropped: {d}");
            let items: Vec<(i64, String)> = ids.iter().map(|&i| (i, d.clone())).collect();
            q.refuse(SINK, &items, now)?;
            run.refused += ids.len();
            Ok(Next::Go)
        }
        Outcome::Unauthorized(d) if !*relogged => {
            // The token ran out early (a LAPI restarted with a new secret): once more.
            *relogged = true;
            q.retry(SINK, ids, now, &|_| 0, &d, true)?;
            Ok(Next::Relogin)
        }
        Outcome::Unauthorized(d) => {
            q.retry(SINK, ids, now, &backoff, &d, true)?;
            run.retry += ids.len();
            run.status = SinkStatus::Unauthorized(d);
            Ok(Next::Stop)
        }
        Outcome::NotDelivered(d) if d.starts_with("HTTP 500") => {
            // A malformed alert that got past our checks, or a LAPI fault: retried a few
            // times, then dropped.
            let (dead, alive): (Vec<&Item>, Vec<&Item>) = due
                .iter()
                .filter(|i| ids.contains(&i.id))
                .partition(|i| i.attempts + 1 >= MAX_500_ATTEMPTS);
            let alive: Vec<i64> = alive.iter().map(|i| i.id).collect();
            let dead: Vec<(i64, String)> = dead
                .iter()
                .map(|i| (i.id, format!("{d} after {MAX_500_ATTEMPTS} attempts")))
                .collect();
            q.retry(SINK, &alive, now, &backoff, &d, true)?;
            q.refuse(SINK, &dead, now)?;
            run.retry += alive.len();
            run.refused += dead.len();
            run.status = SinkStatus::Failed(d);
            Ok(Next::Stop)
        }
        Outcome::Unknown(d) => {
            // It may have arrived: the claim stays, the address waits a bantime.
            q.retry(SINK, ids, now, &backoff, &d, false)?;
            run.retry += ids.len();
            run.status = SinkStatus::Failed(format!(
                "{d} (the alerts may have arrived; they are not sent again within a bantime)"
            ));
            Ok(Next::Stop)
        }
        Outcome::RateLimited { detail: d, .. }
        | Outcome::Misconfigured(d)
        | Outcome::NotDelivered(d) => {
            q.retry(SINK, ids, now, &backoff, &d, true)?;
            run.retry += ids.len();
            run.status = SinkStatus::Failed(d);
            Ok(Next::Stop)
        }
        Outcome::Duplicate { .. } => {
            q.retry(SINK, ids, now, &backoff, "duplicate", true)?;
            run.retry += ids.len();
            Ok(Next::Stop)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CrowdsecPushSettings {
        let raw = crate::config::raw::RawCrowdsec {
            lapi_url: Some("http://127.0.0.1:8080".into()),
            machine_id: Some("pbx-01".into()),
            ..Default::default()
        };
        crate::config::crowdsec::resolve(raw, std::path::Path::new("/etc/sipban"))
            .unwrap()
            .push(7200, 86_400)
            .unwrap()
    }

    fn detail(kind: OffenceKind, events: u64) -> Detail {
        let mut d = Detail {
            events,
            ..Detail::default()
        };
        d.kinds.insert(kind);
        d
    }

    #[test]
    fn an_alert_has_the_scenario_of_its_family_and_the_bantime() {
        let s = settings();
        let ip: IpAddr = "45.67.89.10".parse().unwrap();
        let a = alert(ip, 1000, 1060, &detail(OffenceKind::SipAuth, 7), &s).unwrap();
        assert_eq!(a["scenario"], "sipban/asterisk-bruteforce");
        assert_eq!(a["events_count"], 7);
        assert_eq!(a["source"]["scope"], "Ip");
        assert_eq!(a["decisions"][0]["origin"], "sipban");
        assert_eq!(a["decisions"][0]["duration"], "7200s");
        let a = alert(ip, 1000, 1060, &detail(OffenceKind::PortScan, 3), &s).unwrap();
        assert_eq!(a["scenario"], "sipban/port-scan");
        assert_eq!(a["decisions"][0]["duration"], "86400s");
        let a = alert(ip, 1000, 1060, &detail(OffenceKind::SipScan, 3), &s).unwrap();
        assert_eq!(a["scenario"], "sipban/sip-scanner");
    }

    #[test]
    fn malformed_alerts_are_refused_locally() {
        let s = settings();
        let ip: IpAddr = "45.67.89.10".parse().unwrap();
        assert!(alert(ip, 1000, 1060, &Detail::default(), &s).is_err());
        assert!(alert(ip, 2000, 1060, &detail(OffenceKind::SipAuth, 1), &s).is_err());
        let mapped: IpAddr = "::ffff:45.67.89.10".parse().unwrap();
        assert!(alert(mapped, 1000, 1060, &detail(OffenceKind::SipAuth, 1), &s).is_err());
    }

    #[test]
    fn an_item_meeting_http_500_is_dropped_after_a_few_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let q = store.report_queue();
        q.ensure_schema().unwrap();
        let ip: IpAddr = "45.67.89.10".parse().unwrap();
        q.enqueue(SINK, ip, 100, 200, &detail(OffenceKind::SipAuth, 3), 1000)
            .unwrap();
        let mut relogged = false;
        for attempt in 1..=MAX_500_ATTEMPTS {
            let due: Vec<Item> = q.items(SINK, 10).unwrap();
            assert_eq!(due.len(), 1, "still queued before attempt {attempt}");
            let ids = [due[0].id];
            let mut run = SinkRun::default();
            let o = Outcome::NotDelivered("HTTP 500: validation failure".into());
            settle(&store, &due, &ids, 1000, o, &mut run, &mut relogged).unwrap();
        }
        let left: Vec<Item> = q.items(SINK, 10).unwrap();
        assert!(left.is_empty(), "dropped after {MAX_500_ATTEMPTS} attempts");
    }
}
