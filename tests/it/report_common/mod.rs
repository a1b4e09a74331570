//! Stand-ins for AbuseIPDB and a webhook collector, for the report tests.
//!
//! `FakeAbuseipdb` reproduces AbuseIPDB API v2 as documented (research notes §4.2):
//! - `POST /api/v2/report`, `Key` header, form fields `ip`, `categories` (comma-separated IDs
//!   1-23), `comment`, `timestamp` (ISO 8601); success
//!   `200 {"data":{"ipAddress":"..","abuseConfidenceScore":52}}`;
//! - `422 {"errors":[{"detail":"The ip address must be a valid IPv4 or IPv6 address (e.g. 8.8.8.8
//!   or 2001:4860:4860::8888).","status":422,"source":{"parameter":"ip"}}]}` for a bad field;
//! - the once-per-15-minutes refusal: `429 {"errors":[{"detail":"You can only report the same IP
//!   address (`1.2.3.4`) once in 15 minutes.","status":429,"source":{"parameter":"ip"}}]}`;
//! - the daily quota: 429 with `Retry-After`, `X-RateLimit-Limit`, `X-RateLimit-Remaining`,
//!   `X-RateLimit-Reset` (header names from the third-party OpenAPI spec the research cites;
//!   the detail wording is not in the research and is a stand-in);
//! - `401 {"errors":[{"detail":"Authentication failed. Your API key is either missing,
//!   incorrect, or revoked. Note: The APIv2 key differs from the APIv1 key.","status":401}]}`;
//! - `POST /api/v2/bulk-report`, multipart with the file field `csv`: the strict header
//!   `IP,Categories,ReportDate,Comment`, at most 10,000 lines and 2 MB, comment at most 1,024
//!   bytes; answer `{"data":{"savedReports":n,"invalidReports":[{"error":..,"input":..,
//!   "rowNumber":n}]}}`.
//!
//! Its clock is set by the test (the `now` the code under test is given), so the 15-minute
//! rule and the daily quota follow the test's time, not the wall clock.

#![allow(dead_code)] // each test file uses its own subset

use crate::common::https::{HttpsServer, Reply, Request};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

pub const KEY: &str =
    "aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5zA7bC9dE1fG3hI5jK7lM9nO1pQ3rS5tU7vW9xY1zA3bC5dE7";

/// One report the fake accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub ip: String,
    pub categories: Vec<u8>,
    pub comment: String,
    pub timestamp: String,
    /// The fake's clock when it was accepted.
    pub at: i64,
    pub bulk: bool,
}

#[derive(Default)]
struct State {
    /// Per address: when it was last accepted (the 15-minute rule).
    last: HashMap<String, i64>,
    accepted: Vec<Accepted>,
    /// `/report` requests per day of the clock (the quota).
    per_day: HashMap<i64, u32>,
    /// Requests per address (single reports and bulk rows), whatever the answer.
    tried: BTreeMap<String, u32>,
    /// Faults by request number (1-based).
    faults: HashMap<usize, Reply>,
    served: usize,
    /// Addresses answered with the documented 422.
    refuse: HashSet<String>,
    /// Bulk rows answered as invalid with this error, by address.
    bulk_invalid: HashMap<String, String>,
}

pub struct FakeAbuseipdb {
    pub clock: AtomicI64,
    /// `/report` requests allowed per day.
    pub quota: Mutex<u32>,
    /// Send `Retry-After` with the quota 429.
    pub retry_after: Mutex<bool>,
    state: Mutex<State>,
}

fn errors(status: u16, detail: &str, parameter: Option<&str>) -> String {
    let mut e = serde_json::json!({ "detail": detail, "status": status });
    if let Some(p) = parameter {
        e["source"] = serde_json::json!({ "parameter": p });
    }
    serde_json::json!({ "errors": [e] }).to_string()
}

pub fn unauthorized() -> Reply {
    Reply::json(
        401,
        &errors(
            401,
            "Authentication failed. Your API key is either missing, incorrect, or revoked. Note: The APIv2 key differs from the APIv1 key.",
            None,
        ),
    )
}

pub fn invalid_ip() -> Reply {
    Reply::json(
        422,
        &errors(
            422,
            "The ip address must be a valid IPv4 or IPv6 address (e.g. 8.8.8.8 or 2001:4860:4860::8888).",
            Some("ip"),
        ),
    )
}

pub fn duplicate(ip: &str) -> Reply {
    Reply::json(
        429,
        &errors(
            429,
            &format!("You can only report the same IP address (`{ip}`) once in 15 minutes."),
            Some("ip"),
        ),
    )
}

/// A 429 without `Retry-After` (a generic rate limit).
pub fn rate_limited() -> Reply {
    Reply::json(429, &errors(429, "Too Many Attempts.", None))
}

pub fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn form(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (url_decode(k), url_decode(v))
        })
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SS` with `Z` or `±HH:MM`: what the fake accepts as ISO 8601.
pub fn iso8601_ok(t: &str) -> bool {
    let b = t.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let shape = digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    let zone = &t[19..];
    shape
        && (zone == "Z"
            || (zone.len() == 6
                && (zone.starts_with('+') || zone.starts_with('-'))
                && zone.as_bytes()[3] == b':'))
}

fn categories_ok(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for c in text.split(',') {
        let v: u8 = c.trim().parse().ok()?;
        if !(1..=23).contains(&v) {
            return None;
        }
        out.push(v);
    }
    (!out.is_empty()).then_some(out)
}

/// A CSV parser as lenient as PHP's: quoted cells, `""` and `\"` inside quotes.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '\\' if chars.peek() == Some(&'"') => {
                    cell.push('"');
                    chars.next();
                }
                '"' if chars.peek() == Some(&'"') => {
                    cell.push('"');
                    chars.next();
                }
                '"' => quoted = false,
                c => cell.push(c),
            }
        } else {
            match c {
                '"' => quoted = true,
                ',' => row.push(std::mem::take(&mut cell)),
                '\r' => {}
                '\n' => {
                    row.push(std::mem::take(&mut cell));
                    rows.push(std::mem::take(&mut row));
                }
                c => cell.push(c),
            }
        }
    }
    if !cell.is_empty() || !row.is_empty() {
        row.push(cell);
        rows.push(row);
    }
    rows
}

/// The `csv` file part of a multipart body.
pub fn csv_part(req: &Request) -> Option<String> {
    let ct = req.header("content-type")?;
    let boundary = ct.split("boundary=").nth(1)?.trim_matches('"');
    let body = req.body_text();
    let delim = format!("--{boundary}");
    for part in body.split(&delim) {
        let Some((head, content)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        if head.contains("name=\"csv\"") {
            return Some(content.strip_suffix("\r\n").unwrap_or(content).to_string());
        }
    }
    None
}

impl FakeAbuseipdb {
    pub fn new(now: i64) -> Arc<FakeAbuseipdb> {
        Arc::new(FakeAbuseipdb {
            clock: AtomicI64::new(now),
            quota: Mutex::new(1000),
            retry_after: Mutex::new(true),
            state: Mutex::new(State::default()),
        })
    }

    pub fn set_clock(&self, now: i64) {
        self.clock.store(now, Ordering::SeqCst);
    }

    pub fn fault(&self, request: usize, reply: Reply) {
        self.state.lock().unwrap().faults.insert(request, reply);
    }

    pub fn refuse(&self, ip: &str) {
        self.state.lock().unwrap().refuse.insert(ip.to_string());
    }

    pub fn bulk_invalid(&self, ip: &str, error: &str) {
        self.state
            .lock()
            .unwrap()
            .bulk_invalid
            .insert(ip.to_string(), error.to_string());
    }

    /// Pretend `ip` was reported (by anyone with this key) at `at`.
    pub fn reported_at(&self, ip: &str, at: i64) {
        self.state.lock().unwrap().last.insert(ip.to_string(), at);
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        self.state.lock().unwrap().accepted.clone()
    }

    pub fn accepted_ips(&self) -> Vec<String> {
        self.accepted().into_iter().map(|a| a.ip).collect()
    }

    /// Requests per address (single reports and bulk rows), whatever the answer.
    pub fn tried(&self) -> BTreeMap<String, u32> {
        self.state.lock().unwrap().tried.clone()
    }

    pub fn handle(&self, req: &Request) -> Reply {
        let now = self.clock.load(Ordering::SeqCst);
        let mut st = self.state.lock().unwrap();
        st.served += 1;
        let n = st.served;
        if req.header("key") != Some(KEY) {
            return unauthorized();
        }
        if req.method != "POST" {
            return Reply::json(405, "{}");
        }
        match req.path.as_str() {
            "/api/v2/report" => {
                let f = form(&req.body_text());
                let ip = f.get("ip").cloned().unwrap_or_default();
                *st.tried.entry(ip.clone()).or_default() += 1;
                if let Some(r) = st.faults.remove(&n) {
                    return r;
                }
                let day = now.div_euclid(86_400);
                let used = st.per_day.entry(day).or_default();
                let quota = *self.quota.lock().unwrap();
                if *used >= quota {
                    let reset = (day + 1) * 86_400;
                    let mut headers = vec![
                        ("Content-Type".to_string(), "application/json".to_string()),
                        ("X-RateLimit-Limit".into(), quota.to_string()),
                        ("X-RateLimit-Remaining".into(), "0".into()),
                        ("X-RateLimit-Reset".into(), reset.to_string()),
                    ];
                    if *self.retry_after.lock().unwrap() {
                        headers.push(("Retry-After".into(), (reset - now).to_string()));
                    }
                    return Reply::Full {
                        status: 429,
                        headers,
                        body: errors(
                            429,
                            &format!("Daily rate limit of {quota} requests exceeded for this endpoint. See headers for additional details."),
                            None,
                        )
                        .into_bytes(),
                        content_length: true,
                    };
                }
                *used += 1;
                if ip.parse::<std::net::IpAddr>().is_err() || st.refuse.contains(&ip) {
                    return invalid_ip();
                }
                let Some(categories) = f.get("categories").and_then(|c| categories_ok(c)) else {
                    return Reply::json(
                        422,
                        &errors(422, "The categories field is required.", Some("categories")),
                    );
                };
                let timestamp = f.get("timestamp").cloned().unwrap_or_default();
                if !timestamp.is_empty() && !iso8601_ok(&timestamp) {
                    return Reply::json(
                        422,
                        &errors(
                            422,
                            "The timestamp must be a valid ISO 8601 date.",
                            Some("timestamp"),
                        ),
                    );
                }
                if st.last.get(&ip).is_some_and(|&t| now - t < 900) {
                    return duplicate(&ip);
                }
                st.last.insert(ip.clone(), now);
                st.accepted.push(Accepted {
                    ip: ip.clone(),
                    categories,
                    comment: f.get("comment").cloned().unwrap_or_default(),
                    timestamp,
                    at: now,
                    bulk: false,
                });
                Reply::json(
                    200,
                    &serde_json::json!({"data": {"ipAddress": ip, "abuseConfidenceScore": 52}})
                        .to_string(),
                )
            }
            "/api/v2/bulk-report" => {
                if let Some(r) = st.faults.remove(&n) {
                    return r;
                }
                let Some(csv) = csv_part(req) else {
                    return Reply::json(
                        422,
                        &errors(422, "The csv field is required.", Some("csv")),
                    );
                };
                if csv.len() > 2 * 1024 * 1024 {
                    return Reply::json(
                        422,
                        &errors(
                            422,
                            "The csv may not be greater than 2048 kilobytes.",
                            Some("csv"),
                        ),
                    );
                }
                let rows = parse_csv(&csv);
                if rows.first().map(|h| h.join(","))
                    != Some("IP,Categories,ReportDate,Comment".into())
                    || rows.len() > 10_000
                {
                    return Reply::json(
                        422,
                        &errors(422, "The csv header or size is invalid.", Some("csv")),
                    );
                }
                let mut saved = 0;
                let mut invalid = Vec::new();
                for (i, row) in rows.iter().enumerate().skip(1) {
                    let ip = row.first().cloned().unwrap_or_default();
                    *st.tried.entry(ip.clone()).or_default() += 1;
                    let err = if row.len() != 4 {
                        Some("Invalid row".to_string())
                    } else if ip.parse::<std::net::IpAddr>().is_err() {
                        Some("Invalid IP".to_string())
                    } else if categories_ok(&row[1]).is_none() {
                        Some("Invalid Category".to_string())
                    } else if !iso8601_ok(&row[2]) {
                        Some("Invalid Date".to_string())
                    } else if row[3].len() > 1024 {
                        Some("Comment too long".to_string())
                    } else if st.last.get(&ip).is_some_and(|&t| now - t < 900) {
                        Some("Duplicate IP".to_string())
                    } else {
                        st.bulk_invalid.get(&ip).cloned()
                    };
                    match err {
                        Some(e) => invalid.push(serde_json::json!({
                            "error": e, "input": ip, "rowNumber": i
                        })),
                        None => {
                            saved += 1;
                            st.last.insert(ip.clone(), now);
                            st.accepted.push(Accepted {
                                ip,
                                categories: categories_ok(&row[1]).unwrap_or_default(),
                                comment: row[3].clone(),
                                timestamp: row[2].clone(),
                                at: now,
                                bulk: true,
                            });
                        }
                    }
                }
                Reply::json(
                    200,
                    &serde_json::json!({"data": {"savedReports": saved, "invalidReports": invalid}})
                        .to_string(),
                )
            }
            _ => Reply::json(404, "{}"),
        }
    }
}

pub fn serve(fake: &Arc<FakeAbuseipdb>) -> HttpsServer {
    let f = fake.clone();
    HttpsServer::start(move |req| f.handle(req))
}

/// A webhook collector: records every document; answers with the next scripted reply or 200.
pub struct FakeCollector {
    pub docs: Mutex<Vec<serde_json::Value>>,
    pub script: Mutex<Vec<Reply>>,
    pub token: String,
}

impl FakeCollector {
    pub fn new(token: &str) -> Arc<FakeCollector> {
        Arc::new(FakeCollector {
            docs: Mutex::new(Vec::new()),
            script: Mutex::new(Vec::new()),
            token: token.to_string(),
        })
    }

    pub fn handle(&self, req: &Request) -> Reply {
        if req.header("authorization") != Some(&format!("Bearer {}", self.token)) {
            return Reply::json(401, r#"{"error":"unauthorized"}"#);
        }
        let mut script = self.script.lock().unwrap();
        if !script.is_empty() {
            return script.remove(0);
        }
        match req.json() {
            Some(v) => {
                self.docs.lock().unwrap().push(v);
                Reply::json(200, r#"{"ok":true}"#)
            }
            None => Reply::json(400, r#"{"error":"not json"}"#),
        }
    }

    /// Addresses of every report received, in order.
    pub fn addresses(&self) -> Vec<String> {
        self.docs
            .lock()
            .unwrap()
            .iter()
            .flat_map(|d| {
                d["reports"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| r["address"].as_str().unwrap_or("").to_string())
            })
            .collect()
    }
}

pub fn serve_collector(c: &Arc<FakeCollector>) -> HttpsServer {
    let c = c.clone();
    HttpsServer::start(move |req| c.handle(req))
}
