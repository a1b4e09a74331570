//! AbuseIPDB's API v2 on the wire: one report (`POST /api/v2/report`, form-encoded) or one bulk
//! upload (`POST /api/v2/bulk-report`, multipart with a CSV file named `csv`), and what each
//! answer means for the queue (research §4.2).
//!
//! Requests carry the key in the `Key` header (marked sensitive) and `Accept:
//! application/json`. Answers: `200 {"data":{"ipAddress":..,"abuseConfidenceScore":..}}`;
//! errors as `{"errors":[{"detail":..,"status":..,"source":{"parameter":..}}]}`: 422 for a bad
//! field, 429 both for "You can only report the same IP address (`x`) once in 15 minutes"
//! (`source.parameter` = `ip`) and for the daily quota, 401 for a bad key. The bulk answer is
//! `{"data":{"savedReports":n,"invalidReports":[{"error":..,"input":..,"rowNumber":..}]}}`.
//!
//! Bodies are built by hand (form encoding and one multipart part are a few lines) rather than
//! by enabling reqwest's `form` and `multipart` features.
//!
//! This module must never put the key anywhere but the `Key` header: every message it returns
//! goes through [`super::redact_all`], and reqwest errors are described from their causes.

use super::{comment, read_body, redact_all, retry_after, AbuseipdbSettings, Outcome};
use crate::source::apiban::Secret;
use serde::Deserialize;
use std::net::IpAddr;

/// The bulk CSV's header line, exactly as AbuseIPDB requires it.
pub const CSV_HEADER: &str = "IP,Categories,ReportDate,Comment";
/// Most lines of a bulk CSV, header included.
pub const MAX_CSV_LINES: usize = 10_000;
/// Largest bulk CSV file.
pub const MAX_CSV_BYTES: usize = 2 * 1024 * 1024;

/// One report as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub ip: IpAddr,
    pub categories: Vec<u8>,
    /// Unix seconds of the first evidence; sent as ISO 8601 UTC.
    pub timestamp: i64,
    pub comment: String,
}

/// Percent-encode for `application/x-www-form-urlencoded` (everything but unreserved bytes).
pub fn urlencode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn categories(c: &[u8]) -> String {
    c.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
}

/// The form body of a single report.
pub fn form_body(r: &Report) -> String {
    format!(
        "ip={}&categories={}&comment={}&timestamp={}",
        urlencode(&r.ip.to_string()),
        urlencode(&categories(&r.categories)),
        urlencode(&r.comment),
        urlencode(&comment::iso8601(r.timestamp)),
    )
}

/// A CSV cell, always quoted; a quote inside is doubled.
fn cell(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// One CSV line of the bulk format (no line end).
pub fn csv_line(r: &Report) -> String {
    format!(
        "{},{},{},{}",
        r.ip,
        cell(&categories(&r.categories)),
        comment::iso8601(r.timestamp),
        cell(&r.comment)
    )
}

/// The bulk CSV for as many of `rows` as fit the documented limits (10,000 lines with the
/// header, 2 MB). Returns the file and how many rows it holds.
pub fn csv(rows: &[Report]) -> (String, usize) {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    let mut n = 0;
    for r in rows.iter().take(MAX_CSV_LINES - 1) {
        let line = csv_line(r);
        if out.len() + line.len() + 1 > MAX_CSV_BYTES {
            break;
        }
        out.push_str(&line);
        out.push('\n');
        n += 1;
    }
    (out, n)
}

/// A multipart body with the CSV as the file field `csv`. Returns (boundary, body).
pub fn multipart(csv: &str) -> (String, Vec<u8>) {
    let mut salt = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x5eed);
    let boundary = loop {
        let b = format!("sipban-{salt:016x}");
        if !csv.contains(&b) {
            break b;
        }
        salt = salt.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    };
    let mut body = Vec::with_capacity(csv.len() + 256);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"csv\"; filename=\"report.csv\"\r\nContent-Type: text/csv\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(csv.as_bytes());
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (boundary, body)
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorItem {
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    source: Option<ErrorSource>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorSource {
    #[serde(default)]
    parameter: Option<String>,
}

/// Server text for a message: one line, at most 200 characters, no key.
fn shown(text: &str, key: &Secret) -> String {
    let t: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    redact_all(&t, &[key])
}

/// What an answer means for the items it carried.
fn classify(status: u16, retry: Option<u64>, body: &[u8], key: &Secret) -> Outcome {
    let err: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let first = err.errors.first();
    let detail = first
        .and_then(|e| e.detail.as_deref())
        .map(|d| shown(d, key))
        .unwrap_or_default();
    let with = |what: &str| {
        if detail.is_empty() {
            format!("HTTP {status} {what}")
        } else {
            format!("HTTP {status}: {detail}")
        }
    };
    match status {
        200..=299 => Outcome::Accepted,
        429 => {
            let per_ip = first
                .and_then(|e| e.source.as_ref())
                .and_then(|s| s.parameter.as_deref())
                == Some("ip")
                || detail.contains("once in 15 minutes");
            if per_ip {
                Outcome::Duplicate { retry_after: retry }
            } else {
                Outcome::RateLimited {
                    retry_after: retry,
                    detail: with("(rate limited)"),
                }
            }
        }
        401 | 403 => Outcome::Unauthorized(with("(key refused)")),
        404 | 405 => {
            Outcome::Misconfigured(format!("HTTP {status}: no AbuseIPDB API at this base_url"))
        }
        408 => Outcome::NotDelivered(with("(request timeout)")),
        400..=499 => Outcome::Refused(with("(refused)")),
        500..=599 => Outcome::NotDelivered(format!("HTTP {status} (server error)")),
        _ => Outcome::Unknown(format!("unexpected HTTP {status}")),
    }
}

fn request(
    client: &reqwest::Client,
    settings: &AbuseipdbSettings,
    key: &Secret,
    endpoint: &str,
) -> Result<reqwest::RequestBuilder, String> {
    use reqwest::header;
    let mut k = header::HeaderValue::from_str(key.expose())
        .map_err(|_| "the AbuseIPDB key cannot be sent in a header".to_string())?;
    k.set_sensitive(true);
    let url = format!("{}/api/v2/{endpoint}", settings.base_url);
    tracing::debug!("abuseipdb: POST {url}");
    Ok(client
        .post(url)
        .header("Key", k)
        .header(header::ACCEPT, "application/json")
        .timeout(settings.timeout))
}

/// Send one report.
pub async fn report(
    client: &reqwest::Client,
    settings: &AbuseipdbSettings,
    key: &Secret,
    r: &Report,
) -> Outcome {
    let req = match request(client, settings, key, "report") {
        Ok(r) => r,
        Err(e) => return Outcome::NotDelivered(e),
    };
    let sent = req
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(form_body(r))
        .send()
        .await;
    match sent {
        Err(e) => super::send_error(&e, &[key]),
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let retry = retry_after(resp.headers());
            let body = read_body(&mut resp).await;
            let outcome = classify(status, retry, &body, key);
            if outcome == Outcome::Accepted {
                tracing::debug!(
                    "abuseipdb: reported {}: {}",
                    r.ip,
                    shown(&String::from_utf8_lossy(&body), key)
                );
            }
            outcome
        }
    }
}

/// A row AbuseIPDB did not save.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub error: String,
    /// The row's IP as AbuseIPDB echoed it.
    pub input: String,
}

/// What a bulk upload came back with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BulkAnswer {
    /// 2xx: rows saved, and those that were not (by input).
    Saved { saved: u64, invalid: Vec<Invalid> },
    /// The upload as a whole failed.
    Failed(Outcome),
}

#[derive(Debug, Deserialize)]
struct BulkBody {
    data: BulkData,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkData {
    #[serde(default)]
    saved_reports: u64,
    #[serde(default)]
    invalid_reports: Vec<BulkInvalid>,
}

#[derive(Debug, Deserialize)]
struct BulkInvalid {
    #[serde(default)]
    error: String,
    #[serde(default)]
    input: serde_json::Value,
}

/// Upload one bulk CSV (built by [`csv`]).
pub async fn bulk(
    client: &reqwest::Client,
    settings: &AbuseipdbSettings,
    key: &Secret,
    csv: &str,
) -> BulkAnswer {
    let req = match request(client, settings, key, "bulk-report") {
        Ok(r) => r,
        Err(e) => return BulkAnswer::Failed(Outcome::NotDelivered(e)),
    };
    let (boundary, body) = multipart(csv);
    let sent = req
        .header(
            reqwest::header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await;
    let mut resp = match sent {
        Err(e) => return BulkAnswer::Failed(super::send_error(&e, &[key])),
        Ok(r) => r,
    };
    let status = resp.status().as_u16();
    let retry = retry_after(resp.headers());
    let body = read_body(&mut resp).await;
    match classify(status, retry, &body, key) {
        Outcome::Accepted => match serde_json::from_slice::<BulkBody>(&body) {
            Ok(b) => BulkAnswer::Saved {
                saved: b.data.saved_reports,
                invalid: b
                    .data
                    .invalid_reports
                    .into_iter()
                    .map(|i| Invalid {
                        error: shown(&i.error, key),
                        input: match i.input {
                            serde_json::Value::String(s) => shown(&s, key),
                            other => shown(&other.to_string(), key),
                        },
                    })
                    .collect(),
            },
            // Accepted, but we cannot tell which rows: the rows may be saved.
            Err(e) => BulkAnswer::Failed(Outcome::Unknown(format!(
                "HTTP {status} with an unreadable bulk answer: {}",
                shown(&e.to_string(), key)
            ))),
        },
        other => BulkAnswer::Failed(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Secret {
        Secret::new("abcdef0123", "test")
    }

    #[test]
    fn form_bodies_are_encoded() {
        let r = Report {
            ip: "2001:db8::1".parse().unwrap(),
            categories: vec![8, 18],
            timestamp: 1_714_557_600,
            comment: "a b,c&d=e".into(),
        };
        assert_eq!(
            form_body(&r),
            "ip=2001%3Adb8%3A%3A1&categories=8%2C18&comment=a%20b%2Cc%26d%3De&timestamp=2024-05-01T10%3A00%3A00Z"
        );
    }

    #[test]
    fn csv_follows_the_documented_format() {
        let r = Report {
            ip: "45.0.0.1".parse().unwrap(),
            categories: vec![8, 18],
            timestamp: 1_714_557_600,
            comment: "x, \"y\"".into(),
        };
        let (text, n) = csv(&[r.clone(), r]);
        assert_eq!(n, 2);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(CSV_HEADER));
        assert_eq!(
            lines.next(),
            Some(r#"45.0.0.1,"8,18",2024-05-01T10:00:00Z,"x, ""y""""#)
        );
        // The line limit holds.
        let many = vec![
            Report {
                ip: "45.0.0.1".parse().unwrap(),
                categories: vec![14],
                timestamp: 0,
                comment: String::new(),
            };
            12_000
        ];
        let (text, n) = csv(&many);
        assert_eq!(n, MAX_CSV_LINES - 1);
        assert_eq!(text.lines().count(), MAX_CSV_LINES);
        // And the byte limit.
        let big = vec![
            Report {
                ip: "45.0.0.1".parse().unwrap(),
                categories: vec![14],
                timestamp: 0,
                comment: "z".repeat(1000),
            };
            5000
        ];
        let (text, n) = csv(&big);
        assert!(text.len() <= MAX_CSV_BYTES && n < 5000 && n > 1000);
        let (b, body) = multipart("IP\n");
        assert!(String::from_utf8(body)
            .unwrap()
            .contains(&format!("--{b}--")));
    }

    #[test]
    fn answers_are_classified() {
        let k = key();
        assert_eq!(
            classify(
                200,
                None,
                br#"{"data":{"ipAddress":"45.0.0.1","abuseConfidenceScore":52}}"#,
                &k
            ),
            Outcome::Accepted
        );
        assert_eq!(
            classify(429, Some(900), br#"{"errors":[{"detail":"You can only report the same IP address (`45.0.0.1`) once in 15 minutes.","status":429,"source":{"parameter":"ip"}}]}"#, &k),
            Outcome::Duplicate { retry_after: Some(900) }
        );
        assert!(matches!(
            classify(429, None, br#"{"errors":[{"detail":"Daily rate limit of 1000 requests exceeded for this endpoint. See headers for additional details.","status":429}]}"#, &k),
            Outcome::RateLimited { retry_after: None, .. }
        ));
        assert_eq!(
            classify(422, None, br#"{"errors":[{"detail":"The ip address must be a valid IPv4 or IPv6 address (e.g. 8.8.8.8 or 2001:4860:4860::8888).","status":422,"source":{"parameter":"ip"}}]}"#, &k),
            Outcome::Refused("HTTP 422: The ip address must be a valid IPv4 or IPv6 address (e.g. 8.8.8.8 or 2001:4860:4860::8888).".into())
        );
        // A server that echoes the key does not get it printed.
        let o = classify(
            401,
            None,
            br#"{"errors":[{"detail":"bad key abcdef0123","status":401}]}"#,
            &k,
        );
        assert_eq!(
            o,
            Outcome::Unauthorized("HTTP 401: bad key [redacted]".into())
        );
        assert!(matches!(
            classify(503, None, b"", &k),
            Outcome::NotDelivered(_)
        ));
        assert!(matches!(
            classify(404, None, b"<html>", &k),
            Outcome::Misconfigured(_)
        ));
    }
}
