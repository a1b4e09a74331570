//! Blocklist feeds: download (HTTP(S) or a local file), parse (plain, CSV, JSON), and judge
//! whether a download is good enough to replace the last good copy.
//!
//! A feed result is one of: a fresh listing, "not modified" (the cached last good copy is
//! listed again), "not due" (the polite interval has not passed; nothing is refreshed), or a
//! failure with a reason. A failure never produces a listing, so the decide step keeps the
//! feed's last good entries until their TTL runs out.
//!
//! This module must never decide policy (allowlist, prefix rules, cap) and never write state:
//! it returns what it read, and the caller persists the cache copy and metadata.

use crate::config::{FeedFormat, FeedLocation, FeedSettings};
use crate::http;
use crate::net;
use ipnet::IpNet;
use serde::Serialize;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::store::FeedMeta;

/// What happened to one feed in this run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum FeedStatus {
    /// A new download (or file read) that passed every check.
    Fresh,
    /// The server said 304; the cached last good copy is listed again.
    NotModified,
    /// The polite interval has not passed; `next_in` seconds until the next download.
    NotDue { next_in: u64 },
    /// Something went wrong; the last good entries stay until their TTL runs out.
    Failed(String),
}

/// A parsed listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub nets: Vec<IpNet>,
    /// Non-comment records that were not an address or prefix.
    pub invalid: usize,
    /// Up to [`MAX_SAMPLES`] of them, for messages.
    pub invalid_samples: Vec<String>,
}

pub const MAX_SAMPLES: usize = 5;

/// The outcome for one feed, with what the caller should persist.
#[derive(Clone, Debug)]
pub struct FeedResult {
    pub name: String,
    pub status: FeedStatus,
    /// Present for `Fresh` and `NotModified`.
    pub listing: Option<Listing>,
    /// Metadata to store after a real (non dry-run) run.
    pub meta: FeedMeta,
    /// Whether `listing` should replace the cached copy on disk.
    pub cache_update: bool,
    /// The address the feed was fetched from, so it can be allowlisted.
    pub remote_addr: Option<IpAddr>,
    pub bytes: u64,
}

/// Where the last good copy of a feed is kept.
pub fn cache_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("feeds").join(format!("{name}.list"))
}

/// Read a cached copy (canonical prefixes, one per line).
pub fn read_cache(path: &Path) -> Option<Vec<IpNet>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter_map(|l| net::parse_net(l).ok())
            .collect(),
    )
}

/// Write the cached copy atomically (a new temporary file that follows no link, fsync,
/// rename: [`crate::fsio::write_atomic`]).
pub fn write_cache(path: &Path, nets: &[IpNet]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    }
    let mut text = Vec::with_capacity(nets.len() * 16);
    for n in nets {
        net::push_net(&mut text, n);
        text.push(b'\n');
    }
    crate::fsio::write_atomic(path, &text)
}

/// When the feed may be downloaded again: the interval after a success, and a shorter,
/// growing back-off (5 min doubling, never above the interval) after a failure.
pub fn next_due(feed: &FeedSettings, meta: &FeedMeta) -> Option<i64> {
    let last = meta.last_attempt?;
    let wait = if meta.consecutive_failures > 0 {
        let backoff = 300u64 << (meta.consecutive_failures - 1).min(6);
        backoff.min(feed.interval)
    } else {
        feed.interval
    };
    Some(last.saturating_add(wait as i64))
}

/// Fetch and judge one feed. Never returns an error: failures are a [`FeedStatus::Failed`].
/// `cache` is the last good copy (used on 304 and to decide whether to send conditional
/// headers).
pub async fn run_feed(
    client: Option<&reqwest::Client>,
    feed: &FeedSettings,
    meta: &FeedMeta,
    cache: Option<&[IpNet]>,
    now: i64,
) -> FeedResult {
    let mut result = FeedResult {
        name: feed.name.clone(),
        status: FeedStatus::Fresh,
        listing: None,
        meta: meta.clone(),
        cache_update: false,
        remote_addr: None,
        bytes: 0,
    };
    let body = match &feed.location {
        FeedLocation::File(path) => read_file(path, feed.max_bytes).map(|b| (b, None, None)),
        FeedLocation::Http(url) => {
            if let Some(due) = next_due(feed, meta) {
                if due > now {
                    result.status = FeedStatus::NotDue {
                        next_in: (due - now) as u64,
                    };
                    return result;
                }
            }
            result.meta.last_attempt = Some(now);
            let Some(client) = client else {
                return fail(result, "no HTTP client".into());
            };
            let conditional = cache.is_some();
            match fetch(client, url.secret_str(), feed, meta, conditional).await {
                Ok(Fetched::NotModified { remote }) => {
                    result.remote_addr = remote;
                    let nets = cache.map(<[IpNet]>::to_vec).unwrap_or_default();
                    result.status = FeedStatus::NotModified;
                    result.meta.last_success = Some(now);
                    result.meta.consecutive_failures = 0;
                    result.meta.last_error = None;
                    result.listing = Some(Listing {
                        nets,
                        ..Listing::default()
                    });
                    return result;
                }
                Ok(Fetched::Body {
                    body,
                    etag,
                    last_modified,
                    remote,
                }) => {
                    result.remote_addr = remote;
                    Ok((body, etag, last_modified))
                }
                Err(e) => Err(e),
            }
        }
    };
    let (body, etag, last_modified) = match body {
        Ok(b) => b,
        Err(e) => return fail(result, e),
    };
    result.bytes = body.len() as u64;
    match judge(feed, &body, meta.last_good_count) {
        Ok(listing) => {
            result.meta.etag = etag;
            result.meta.last_modified = last_modified;
            result.meta.last_success = Some(now);
            result.meta.last_good_count = Some(listing.nets.len() as u64);
            result.meta.consecutive_failures = 0;
            result.meta.last_error = None;
            result.cache_update = true;
            result.listing = Some(listing);
            result
        }
        Err(e) => fail(result, e),
    }
}

/// Every failure reason goes through here, and any URL in it is shown redacted (it is
/// stored, reported and logged).
fn fail(mut result: FeedResult, reason: String) -> FeedResult {
    let reason = crate::config::redact_urls_in(&reason);
    result.meta.consecutive_failures = result.meta.consecutive_failures.saturating_add(1);
    result.meta.last_error = Some(reason.clone());
    result.status = FeedStatus::Failed(reason);
    result.listing = None;
    result
}

fn read_file(path: &Path, max_bytes: u64) -> Result<Vec<u8>, String> {
    let f =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut body = Vec::new();
    f.take(max_bytes.saturating_add(1))
        .read_to_end(&mut body)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if body.len() as u64 > max_bytes {
        return Err(format!("body is larger than max_bytes ({max_bytes} bytes)"));
    }
    Ok(body)
}

enum Fetched {
    NotModified {
        remote: Option<IpAddr>,
    },
    Body {
        body: Vec<u8>,
        etag: Option<String>,
        last_modified: Option<String>,
        remote: Option<IpAddr>,
    },
}

/// Whether a failed attempt is worth repeating within this run.
enum Attempt {
    Retry(String, Option<Duration>),
    Fatal(String),
}

async fn fetch(
    client: &reqwest::Client,
    url: &str,
    feed: &FeedSettings,
    meta: &FeedMeta,
    conditional: bool,
) -> Result<Fetched, String> {
    let mut delay = Duration::from_secs(1);
    let mut attempt = 0;
    loop {
        // Errors never name the URL (see `http::describe`); a redirect target quoted by a
        // server would be redacted all the same.
        let once = fetch_once(client, url, feed, meta, conditional)
            .await
            .map_err(|a| match a {
                Attempt::Retry(e, after) => {
                    Attempt::Retry(crate::config::redact_urls_in(&e), after)
                }
                Attempt::Fatal(e) => Attempt::Fatal(crate::config::redact_urls_in(&e)),
            });
        match once {
            Ok(f) => return Ok(f),
            Err(Attempt::Fatal(e)) => return Err(e),
            Err(Attempt::Retry(e, retry_after)) => {
                if attempt >= feed.retries {
                    let tries = attempt + 1;
                    return Err(if tries > 1 {
                        format!("{e} (after {tries} attempts)")
                    } else {
                        e
                    });
                }
                attempt += 1;
                let wait = retry_after.unwrap_or(delay).min(Duration::from_secs(60));
                tracing::debug!(feed = %feed.name, "attempt {attempt} failed: {e}; retrying in {wait:?}");
                tokio::time::sleep(wait).await;
                delay = delay.saturating_mul(2);
            }
        }
    }
}

async fn fetch_once(
    client: &reqwest::Client,
    url: &str,
    feed: &FeedSettings,
    meta: &FeedMeta,
    conditional: bool,
) -> Result<Fetched, Attempt> {
    use reqwest::header;
    let mut req = client
        .get(url)
        .timeout(Duration::from_secs(feed.timeout))
        .header(
            header::ACCEPT,
            "text/plain, text/csv, application/json;q=0.9, */*;q=0.5",
        );
    if conditional {
        if let Some(etag) = &meta.etag {
            req = req.header(header::IF_NONE_MATCH, etag.as_str());
        }
        if let Some(lm) = &meta.last_modified {
            req = req.header(header::IF_MODIFIED_SINCE, lm.as_str());
        }
    }
    let mut resp = req
        .send()
        .await
        .map_err(|e| Attempt::Retry(http::describe(&e), None))?;
    let remote = resp.remote_addr().map(|a| net::canonical_ip(a.ip()));
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(Fetched::NotModified { remote });
    }
    if !status.is_success() {
        let msg = format!("HTTP {status}");
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        return Err(
            if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                Attempt::Retry(msg, retry_after)
            } else {
                Attempt::Fatal(msg)
            },
        );
    }
    let header_text = |name: header::HeaderName| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let etag = header_text(header::ETAG);
    let last_modified = header_text(header::LAST_MODIFIED);
    let content_type = header_text(header::CONTENT_TYPE).unwrap_or_default();
    if content_type.to_ascii_lowercase().starts_with("text/html") {
        return Err(Attempt::Fatal(format!(
            "server sent an HTML page ({content_type}) instead of a list"
        )));
    }
    if let Some(len) = resp.content_length() {
        if len > feed.max_bytes {
            return Err(Attempt::Fatal(format!(
                "body is larger than max_bytes ({len} > {} bytes)",
                feed.max_bytes
            )));
        }
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if (body.len() + chunk.len()) as u64 > feed.max_bytes {
                    return Err(Attempt::Fatal(format!(
                        "body is larger than max_bytes ({} bytes)",
                        feed.max_bytes
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(Attempt::Retry(http::describe(&e), None)),
        }
    }
    Ok(Fetched::Body {
        body,
        etag,
        last_modified,
        remote,
    })
}

/// Decide whether a body is a good listing for this feed.
pub fn judge(
    feed: &FeedSettings,
    body: &[u8],
    last_good_count: Option<u64>,
) -> Result<Listing, String> {
    let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8 text".to_string())?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err("empty body".into());
    }
    if looks_like_html(text) {
        return Err("body is an HTML page, not a list".into());
    }
    let listing = parse(&feed.format, text)?;
    let records = listing.nets.len() + listing.invalid;
    if listing.nets.is_empty() {
        return Err(match listing.invalid_samples.first() {
            Some(s) => format!(
                "no addresses in the body ({} unreadable records, e.g. `{s}`)",
                listing.invalid
            ),
            None => "no addresses in the body".into(),
        });
    }
    if listing.invalid as f64 > feed.max_invalid * records as f64 {
        return Err(format!(
            "{} of {records} records are not addresses (more than max_invalid {}%), e.g. `{}`",
            listing.invalid,
            feed.max_invalid * 100.0,
            listing
                .invalid_samples
                .first()
                .map(String::as_str)
                .unwrap_or("")
        ));
    }
    if let Some(last) = last_good_count {
        let floor = last as f64 * (1.0 - feed.max_shrink);
        if last > 0 && (listing.nets.len() as f64) < floor {
            return Err(format!(
                "shrink guard: {} entries against {last} in the last good copy (max_shrink {}%)",
                listing.nets.len(),
                feed.max_shrink * 100.0
            ));
        }
    }
    Ok(listing)
}

fn looks_like_html(text: &str) -> bool {
    let head: String = text
        .trim_start()
        .chars()
        .take(512)
        .collect::<String>()
        .to_ascii_lowercase();
    head.starts_with("<!doctype html")
        || head.starts_with("<html")
        || head.starts_with("<head")
        || head.contains("<html")
}

/// Parse a body in the feed's format.
pub fn parse(format: &FeedFormat, text: &str) -> Result<Listing, String> {
    let mut listing = Listing::default();
    match format {
        FeedFormat::Plain => {
            for line in text.lines() {
                let record = strip_comment(line).trim();
                if !record.is_empty() {
                    push(&mut listing, record);
                }
            }
        }
        FeedFormat::Csv { column } => {
            let mut first = true;
            for line in text.lines() {
                let trimmed = line.trim();
                if trimmed.is_empty() || trimmed.starts_with('#') {
                    continue;
                }
                let field = csv_field(trimmed, *column);
                let was_first = std::mem::replace(&mut first, false);
                match field {
                    Some(f) => match net::parse_net(f) {
                        Ok(n) => listing.nets.push(n),
                        // A first row that is not an address is a header.
                        Err(_) if was_first => {}
                        Err(_) => invalid(&mut listing, f),
                    },
                    None => invalid(&mut listing, trimmed),
                }
            }
        }
        FeedFormat::Json { pointer } => {
            let tokens = pointer_tokens(pointer);
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(doc) => {
                    let found = collect(&doc, &tokens, &mut listing);
                    if !found {
                        return Err(format!(
                            "JSON pointer `{pointer}` matches nothing in the document"
                        ));
                    }
                }
                Err(whole_err) => {
                    // JSON lines (one document per line), as Spamhaus serves DROP. Lines where
                    // the pointer matches nothing (metadata records) are skipped.
                    let mut docs = 0usize;
                    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                        match serde_json::from_str::<serde_json::Value>(line) {
                            Ok(doc) => {
                                docs += 1;
                                collect(&doc, &tokens, &mut listing);
                            }
                            Err(_) if docs == 0 => {
                                return Err(format!("body is not JSON: {whole_err}"));
                            }
                            Err(_) => invalid(&mut listing, line),
                        }
                    }
                }
            }
        }
    }
    Ok(listing)
}

fn push(listing: &mut Listing, record: &str) {
    match net::parse_net(record) {
        Ok(n) => listing.nets.push(n),
        Err(_) => invalid(listing, record),
    }
}

fn invalid(listing: &mut Listing, record: &str) {
    listing.invalid += 1;
    if listing.invalid_samples.len() < MAX_SAMPLES {
        listing
            .invalid_samples
            .push(record.chars().take(80).collect());
    }
}

/// Everything before the first `#` or `;` (the two comment styles feeds use).
fn strip_comment(line: &str) -> &str {
    match line.find(['#', ';']) {
        Some(i) => &line[..i],
        None => line,
    }
}

/// The 1-based `column` of a CSV line (comma separated, double quotes may wrap a field).
fn csv_field(line: &str, column: usize) -> Option<&str> {
    let mut idx = 1;
    let mut start = 0;
    let mut in_quotes = false;
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => in_quotes = !in_quotes,
            b',' if !in_quotes => {
                if idx == column {
                    return Some(unquote(&line[start..i]));
                }
                idx += 1;
                start = i + 1;
            }
            _ => {}
        }
    }
    (idx == column).then(|| unquote(&line[start..]))
}

fn unquote(field: &str) -> &str {
    let f = field.trim();
    f.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(f)
        .trim()
}

fn pointer_tokens(pointer: &str) -> Vec<String> {
    if pointer.is_empty() {
        return Vec::new();
    }
    pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// Walk `tokens` (with `*` fanning out over arrays) and push every string found; arrays of
/// strings at the end are taken element by element. Returns whether the pointer matched.
fn collect(value: &serde_json::Value, tokens: &[String], listing: &mut Listing) -> bool {
    use serde_json::Value;
    let Some((first, rest)) = tokens.split_first() else {
        match value {
            Value::String(s) => push(listing, s),
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::String(s) => push(listing, s),
                        other => invalid(listing, &other.to_string()),
                    }
                }
            }
            other => invalid(listing, &other.to_string()),
        }
        return true;
    };
    match value {
        Value::Array(items) if first == "*" => {
            let mut any = false;
            for item in items {
                any |= collect(item, rest, listing);
            }
            any
        }
        Value::Array(items) => match first.parse::<usize>().ok().and_then(|i| items.get(i)) {
            Some(v) => collect(v, rest, listing),
            None => false,
        },
        Value::Object(map) => match map.get(first.as_str()) {
            Some(v) => collect(v, rest, listing),
            None => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    fn feed(extra: &str) -> FeedSettings {
        let cfg = format!("feeds:\n  - name: t\n    url: https://example.org/x\n{extra}");
        load_str(&cfg, Path::new("/c.yaml"))
            .unwrap()
            .feeds
            .remove(0)
    }

    fn shown(l: &Listing) -> Vec<String> {
        l.nets.iter().map(net::display_net).collect()
    }

    #[test]
    fn plain_lines_comments_crlf() {
        let l = parse(
            &FeedFormat::Plain,
            "# header\r\n192.0.2.1\r\n\r\n198.51.100.0/24 ; SBL123\r\n  203.0.113.9   # trailing\n;only\n2001:db8::1\nnot-an-ip\n10.0.0.1 10.0.0.2\n",
        )
        .unwrap();
        assert_eq!(
            shown(&l),
            ["192.0.2.1", "198.51.100.0/24", "203.0.113.9", "2001:db8::1"]
        );
        assert_eq!(l.invalid, 2);
    }

    #[test]
    fn csv_column_and_header() {
        let l = parse(
            &FeedFormat::Csv { column: 2 },
            "id,ip,when\n1,192.0.2.1,x\n2,\"198.51.100.7\",y\n3,bogus,z\n4\n",
        )
        .unwrap();
        assert_eq!(shown(&l), ["192.0.2.1", "198.51.100.7"]);
        assert_eq!(l.invalid, 2);
    }

    #[test]
    fn json_pointer_document_and_lines() {
        let l = parse(
            &FeedFormat::Json {
                pointer: "/data/ip".into(),
            },
            r#"{"data":{"ip":["192.0.2.1","198.51.100.0/24",5]}}"#,
        )
        .unwrap();
        assert_eq!(shown(&l), ["192.0.2.1", "198.51.100.0/24"]);
        assert_eq!(l.invalid, 1);
        let l = parse(
            &FeedFormat::Json {
                pointer: "/data/*/ip".into(),
            },
            r#"{"data":[{"ip":"192.0.2.1"},{"ip":"192.0.2.2"}]}"#,
        )
        .unwrap();
        assert_eq!(shown(&l), ["192.0.2.1", "192.0.2.2"]);
        // Spamhaus DROP JSON lines with a trailing metadata record.
        let l = parse(
            &FeedFormat::Json { pointer: "/cidr".into() },
            "{\"cidr\":\"1.10.16.0/20\",\"sblid\":\"SBL256894\",\"rir\":\"apnic\"}\n{\"cidr\":\"2.56.192.0/22\",\"sblid\":\"SBL459831\",\"rir\":\"ripencc\"}\n{\"type\":\"metadata\",\"timestamp\":1700000000,\"size\":2,\"records\":2,\"copyright\":\"(c) Spamhaus\"}\n",
        )
        .unwrap();
        assert_eq!(shown(&l), ["1.10.16.0/20", "2.56.192.0/22"]);
        assert!(parse(
            &FeedFormat::Json {
                pointer: "/nope".into()
            },
            r#"{"a":1}"#
        )
        .is_err());
        assert!(parse(
            &FeedFormat::Json {
                pointer: "/a".into()
            },
            "not json at all"
        )
        .is_err());
    }

    #[test]
    fn judge_rejects_bad_bodies() {
        let f = feed("");
        assert_eq!(judge(&f, b"", None).unwrap_err(), "empty body");
        assert!(judge(&f, b"  \n# only comments\n", None)
            .unwrap_err()
            .contains("no addresses"));
        assert!(
            judge(&f, b"<!DOCTYPE html><html><body>Oops</body></html>", None)
                .unwrap_err()
                .contains("HTML")
        );
        assert!(judge(&f, b"\xff\xfe", None).unwrap_err().contains("UTF-8"));
        let mostly_bad = "192.0.2.1\nbad\nbad\nbad\n";
        assert!(judge(&f, mostly_bad.as_bytes(), None)
            .unwrap_err()
            .contains("max_invalid"));
        let body: String = (1..=10).map(|i| format!("192.0.2.{i}\n")).collect();
        assert!(judge(&f, body.as_bytes(), Some(10)).is_ok());
        assert!(judge(&f, body.as_bytes(), Some(21))
            .unwrap_err()
            .contains("shrink guard"));
        assert!(judge(&f, body.as_bytes(), Some(20)).is_ok());
    }

    #[test]
    fn backoff_after_failures_never_exceeds_interval() {
        let f = feed("    interval: 1h\n");
        let mut m = FeedMeta {
            last_attempt: Some(1000),
            ..FeedMeta::default()
        };
        assert_eq!(next_due(&f, &m), Some(1000 + 3600));
        m.consecutive_failures = 1;
        assert_eq!(next_due(&f, &m), Some(1000 + 300));
        m.consecutive_failures = 3;
        assert_eq!(next_due(&f, &m), Some(1000 + 1200));
        m.consecutive_failures = 30;
        assert_eq!(next_due(&f, &m), Some(1000 + 3600));
    }

    #[test]
    fn cache_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = cache_path(dir.path(), "x");
        let nets = vec![
            net::parse_net("192.0.2.0/24").unwrap(),
            net::parse_net("2001:db8::1").unwrap(),
        ];
        write_cache(&p, &nets).unwrap();
        assert_eq!(read_cache(&p).unwrap(), nets);
    }
}
