//! Blocklist feeds: download (HTTP(S) or a local file), parse (plain, CSV, JSON), and judge
//! whether a download is good enough to replace the last good copy.
//!
//! A feed result is one of: a fresh listing, "not modified" (the cached last good copy is
//! listed again, and only a copy that is still byte for byte what was written: its size and
//! SHA-256 are recorded with the validators, and without a copy that verifies no conditional
//! request is sent), "not due" (the polite interval has not passed; nothing is refreshed), or a
//! failure with a reason. A failure never produces a listing, so the decide step keeps the
//! feed's last good entries until their TTL runs out.
//!
//! This module must never decide policy (allowlist, prefix rules, cap) and never write state:
//! it returns what it read, and the caller persists the cache copy and metadata. The coverage
//! guard counts only what the gate would admit, and the caller says what that is (`admitted`,
//! the source's address-space rules from `pipeline::gate`).

use crate::config::{FeedFormat, FeedLocation, FeedSettings};
use crate::http;
use crate::model::Nets;
use crate::net;
use ipnet::IpNet;
use serde::Serialize;
use std::io::{Read, Write};
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
    /// In prefix order, duplicates kept.
    pub nets: Nets,
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
    /// Whether `listing` is the new last good copy to write (a fresh HTTP listing; its size
    /// and digest are recorded in `meta`).
    pub cache_update: bool,
    /// The address the feed was fetched from, so it can be allowlisted.
    pub remote_addr: Option<IpAddr>,
    pub bytes: u64,
}

/// The directory of the feeds' last good copies.
pub fn cache_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("feeds")
}

/// Where the last good copy of a feed is kept.
pub fn cache_path(state_dir: &Path, name: &str) -> PathBuf {
    cache_dir(state_dir).join(format!("{name}.list"))
}

/// The last good copy as it is written: canonical prefixes, one per line, in order, handed
/// to `sink` a piece (about 64 KiB) at a time so that the whole text is never held.
fn cache_text(
    nets: &Nets,
    mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    const PIECE: usize = 64 * 1024;
    let mut text = Vec::with_capacity(PIECE + 64);
    for n in nets.iter() {
        net::push_net(&mut text, &n);
        text.push(b'\n');
        if text.len() >= PIECE {
            sink(&text)?;
            text.clear();
        }
    }
    sink(&text)
}

/// Size and SHA-256 (lowercase hex) of the last good copy [`write_cache`] writes for `nets`.
pub fn cache_digest(nets: &Nets) -> (u64, String) {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut size = 0u64;
    let _ = cache_text(nets, |piece| {
        size += piece.len() as u64;
        ctx.update(piece);
        Ok(())
    });
    (size, hex(ctx.finish().as_ref()))
}

/// SHA-256 of some bytes, in lowercase hex (what [`FeedMeta::cache_digest`] records).
pub fn digest(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Check the last good copy without keeping it: `Ok` only when it is exactly what was
/// written, a regular file (never followed through a link) of the size and SHA-256 recorded in
/// `meta`; otherwise why not. A copy of no recorded size or digest (written by an older
/// sipban) does not verify. Reads at most the recorded size plus one byte, in small pieces.
pub fn verify_cache(path: &Path, meta: &FeedMeta) -> Result<(), String> {
    let (f, size, want) = open_cache(path, meta)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let mut read = 0u64;
    let mut f = f.take(size.saturating_add(1));
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("cannot read the cached copy {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        read += n as u64;
        ctx.update(&buf[..n]);
    }
    check_copy(path, size, read, want, &hex(ctx.finish().as_ref()))
}

/// Read the last good copy after the same checks as [`verify_cache`].
pub fn read_cache(path: &Path, meta: &FeedMeta) -> Result<Nets, String> {
    let (f, size, want) = open_cache(path, meta)?;
    let shown = path.display();
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    f.take(size.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the cached copy {shown}: {e}"))?;
    check_copy(path, size, bytes.len() as u64, want, &digest(&bytes))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| format!("the cached copy {shown} is not UTF-8 text"))?;
    let mut nets = Nets::default();
    for l in text.lines() {
        nets.push(net::parse_net(l).map_err(|_| format!("the cached copy {shown} holds `{l}`"))?);
    }
    nets.sort();
    Ok(nets)
}

/// The cached copy opened for reading (no link followed, never blocking on a FIFO), with the
/// size and digest it must have.
fn open_cache<'m>(
    path: &Path,
    meta: &'m FeedMeta,
) -> Result<(std::fs::File, u64, &'m str), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let shown = path.display();
    let (Some(size), Some(want)) = (meta.cache_size, meta.cache_digest.as_deref()) else {
        return Err(format!(
            "no size and digest are recorded for the cached copy {shown}"
        ));
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot open the cached copy {shown}: {e}"))?;
    let kind = f
        .metadata()
        .map_err(|e| format!("cannot read the cached copy {shown}: {e}"))?;
    if !kind.is_file() {
        return Err(format!("the cached copy {shown} is not a regular file"));
    }
    Ok((f, size, want))
}

fn check_copy(path: &Path, size: u64, read: u64, want: &str, got: &str) -> Result<(), String> {
    if read != size {
        let more = if read > size { "more than " } else { "" };
        let held = read.min(size);
        return Err(format!(
            "the cached copy {} holds {more}{held} bytes, {size} were written",
            path.display()
        ));
    }
    if got != want {
        return Err(format!(
            "the cached copy {} does not match the SHA-256 recorded when it was written",
            path.display()
        ));
    }
    Ok(())
}

/// Write the cached copy atomically (a new temporary file that follows no link, fsync,
/// rename: [`crate::fsio::write_atomic`]). An empty directory at its path (nothing sipban
/// writes) is removed first; anything else there is an error naming it.
pub fn write_cache(path: &Path, nets: &Nets) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        crate::fsio::create_dir(dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    }
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        std::fs::remove_dir(path).map_err(|e| {
            anyhow::anyhow!(
                "{} is a directory, not the feed's cached copy, and cannot be removed: {e}",
                path.display()
            )
        })?;
    }
    crate::fsio::write_atomic_with(path, |f| cache_text(nets, |piece| f.write_all(piece)))
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
/// `cache` is where an HTTP feed's last good copy is kept: conditional headers are sent only
/// when that copy verifies (see [`read_cache`]), and a 304 lists it again. A 304 that finds
/// the copy gone or changed after all is answered by one unconditional download.
/// `admitted` says whether the gate's address-space rules let this feed ban a prefix; only
/// those count towards `max_coverage`.
pub async fn run_feed(
    client: Option<&reqwest::Client>,
    feed: &FeedSettings,
    meta: &FeedMeta,
    cache: Option<&Path>,
    now: i64,
    admitted: &dyn Fn(&IpNet) -> bool,
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
            match download(client, url.secret_str(), feed, meta, cache).await {
                Ok(Downloaded::Cached { nets, remote }) => {
                    result.remote_addr = remote;
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
                Ok(Downloaded::Body {
                    body,
                    etag,
                    last_modified,
                    remote,
                }) => {
                    result.remote_addr = remote;
                    Ok((body, etag, last_modified))
                }
                Err((e, remote)) => {
                    result.remote_addr = remote;
                    Err(e)
                }
            }
        }
    };
    let (body, etag, last_modified) = match body {
        Ok(b) => b,
        Err(e) => return fail(result, e),
    };
    result.bytes = body.len() as u64;
    match judge(feed, &body, meta.last_good_count, admitted) {
        Ok(listing) => {
            result.meta.etag = etag;
            result.meta.last_modified = last_modified;
            result.meta.last_success = Some(now);
            result.meta.last_good_count = Some(listing.nets.len() as u64);
            result.meta.consecutive_failures = 0;
            result.meta.last_error = None;
            if matches!(feed.location, FeedLocation::Http(_)) {
                let (size, digest) = cache_digest(&listing.nets);
                result.meta.cache_size = Some(size);
                result.meta.cache_digest = Some(digest);
                result.cache_update = true;
            }
            result.listing = Some(listing);
            result
        }
        Err(e) => fail(result, e),
    }
}

/// What an HTTP feed's download brought.
enum Downloaded {
    /// A 304 over a last good copy that verified.
    Cached { nets: Nets, remote: Option<IpAddr> },
    Body {
        body: Vec<u8>,
        etag: Option<String>,
        last_modified: Option<String>,
        remote: Option<IpAddr>,
    },
}

/// Download an HTTP feed: conditionally when its last good copy verifies, and once more
/// unconditionally when a 304 finds that copy unusable after all.
async fn download(
    client: &reqwest::Client,
    url: &str,
    feed: &FeedSettings,
    meta: &FeedMeta,
    cache: Option<&Path>,
) -> Result<Downloaded, (String, Option<IpAddr>)> {
    let validators = meta.etag.is_some() || meta.last_modified.is_some();
    let mut conditional = match cache {
        Some(path) if validators => match verify_cache(path, meta) {
            Ok(()) => true,
            Err(why) => {
                tracing::warn!(feed = %feed.name, "{why}; downloading the list afresh");
                false
            }
        },
        _ => false,
    };
    loop {
        match fetch(client, url, feed, meta, conditional).await {
            Ok(Fetched::NotModified { remote }) => {
                let cached = match cache {
                    Some(path) if conditional => read_cache(path, meta),
                    _ => Err(
                        "the server answered 304 Not Modified to a request without validators"
                            .into(),
                    ),
                };
                match cached {
                    Ok(nets) => return Ok(Downloaded::Cached { nets, remote }),
                    Err(why) if conditional => {
                        tracing::warn!(feed = %feed.name, "{why}; downloading the list afresh");
                        conditional = false;
                    }
                    Err(why) => return Err((why, remote)),
                }
            }
            Ok(Fetched::Body {
                body,
                etag,
                last_modified,
                remote,
            }) => {
                return Ok(Downloaded::Body {
                    body,
                    etag,
                    last_modified,
                    remote,
                })
            }
            Err(e) => return Err((e, None)),
        }
    }
}

/// Every failure reason goes through here, and any URL in it is shown redacted (it is
/// stored, reported and logged).
fn fail(mut result: FeedResult, reason: String) -> FeedResult {
    let reason = crate::config::redact_urls_in(&reason);
    count_failure(&mut result.meta, &reason);
    result.status = FeedStatus::Failed(reason);
    result.listing = None;
    result
}

/// Count a failed attempt in a feed's metadata: the back-off grows, and the reason is kept for
/// `status`. The validators and the last good copy's size stay, so the next attempt downloads
/// the list afresh and judges it against the last good copy.
pub fn count_failure(meta: &mut FeedMeta, reason: &str) {
    meta.consecutive_failures = meta.consecutive_failures.saturating_add(1);
    meta.last_error = Some(reason.to_string());
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

/// Decide whether a body is a good listing for this feed. `admitted` is the gate's verdict on
/// a prefix from this feed (address-space rules and `min_prefix`); refused prefixes do not count
/// towards the coverage guard.
pub fn judge(
    feed: &FeedSettings,
    body: &[u8],
    last_good_count: Option<u64>,
    admitted: &dyn Fn(&IpNet) -> bool,
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
    coverage_guard(feed, &coverage(&listing.nets, admitted))?;
    Ok(listing)
}

/// How much address space a listing covers: IPv4 addresses and IPv6 /64s (a prefix longer
/// than /64 counts as the /64 it lies in), overlapping prefixes counted once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    pub v4: u64,
    pub v6: u128,
}

/// The coverage of the prefixes `admitted` lets through: one pass over the list, which is in
/// order, merging as it goes; no allocation.
pub fn coverage(nets: &Nets, admitted: &dyn Fn(&IpNet) -> bool) -> Coverage {
    let v4 = nets
        .v4()
        .iter()
        .filter(|p| admitted(&IpNet::V4(**p)))
        .map(|p| {
            let start = u128::from(u32::from(p.network()));
            (start, start + (1u128 << (32 - p.prefix_len())))
        });
    let v6 = nets
        .v6()
        .iter()
        .filter(|p| admitted(&IpNet::V6(**p)))
        .map(|p| {
            let start = u128::from(p.network()) >> 64;
            (start, start + (1u128 << (64 - p.prefix_len().min(64))))
        });
    Coverage {
        v4: u64::try_from(merged_len(v4)).unwrap_or(u64::MAX),
        v6: merged_len(v6),
    }
}

/// The total length of half-open intervals given in order of their starts, overlaps counted
/// once.
fn merged_len(ranges: impl Iterator<Item = (u128, u128)>) -> u128 {
    let mut total = 0u128;
    let mut current: Option<(u128, u128)> = None;
    for (start, end) in ranges {
        current = match current {
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            Some((s, e)) => {
                total += e - s;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    total + current.map_or(0, |(s, e)| e - s)
}

/// Refuse a listing that covers more than the feed's `max_coverage`.
fn coverage_guard(feed: &FeedSettings, c: &Coverage) -> Result<(), String> {
    if c.v4 > feed.max_coverage_v4 {
        return Err(format!(
            "coverage guard: the listing covers {} IPv4 addresses ({}% of IPv4), over max_coverage {}",
            thousands(u128::from(c.v4)),
            v4_share(c.v4),
            thousands(u128::from(feed.max_coverage_v4))
        ));
    }
    if c.v6 > u128::from(feed.max_coverage_v6) {
        return Err(format!(
            "coverage guard: the listing covers {} IPv6 /64s, over max_coverage {} /64s",
            thousands(c.v6),
            thousands(u128::from(feed.max_coverage_v6))
        ));
    }
    Ok(())
}

/// A count of IPv4 addresses as a share of IPv4, in percent: `86.2`, `0.002`.
pub fn v4_share(addresses: u64) -> String {
    let share = addresses as f64 * 100.0 / crate::config::IPV4_ADDRESSES as f64;
    if share >= 0.1 {
        format!("{share:.1}")
    } else {
        format!("{share:.3}")
    }
}

/// `4294901760` → `4,294,901,760`.
pub fn thousands(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
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
    listing.nets.sort();
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

    /// The gate's address-space rules for this feed, as `gather` passes them.
    fn admit(f: &FeedSettings) -> impl Fn(&IpNet) -> bool {
        let policy = crate::pipeline::gate::SourcePolicy::for_feed(f);
        move |n: &IpNet| policy.reject(n).is_none()
    }

    fn nets(list: &[&str]) -> Nets {
        list.iter().map(|t| net::parse_net(t).unwrap()).collect()
    }

    fn shown(l: &Listing) -> Vec<String> {
        l.nets.iter().map(|n| net::display_net(&n)).collect()
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
        assert_eq!(judge(&f, b"", None, &admit(&f)).unwrap_err(), "empty body");
        assert!(judge(&f, b"  \n# only comments\n", None, &admit(&f))
            .unwrap_err()
            .contains("no addresses"));
        assert!(judge(
            &f,
            b"<!DOCTYPE html><html><body>Oops</body></html>",
            None,
            &admit(&f)
        )
        .unwrap_err()
        .contains("HTML"));
        assert!(judge(&f, b"\xff\xfe", None, &admit(&f))
            .unwrap_err()
            .contains("UTF-8"));
        let mostly_bad = "192.0.2.1\nbad\nbad\nbad\n";
        assert!(judge(&f, mostly_bad.as_bytes(), None, &admit(&f))
            .unwrap_err()
            .contains("max_invalid"));
        let body: String = (1..=10).map(|i| format!("192.0.2.{i}\n")).collect();
        assert!(judge(&f, body.as_bytes(), Some(10), &admit(&f)).is_ok());
        assert!(judge(&f, body.as_bytes(), Some(21), &admit(&f))
            .unwrap_err()
            .contains("shrink guard"));
        assert!(judge(&f, body.as_bytes(), Some(20), &admit(&f)).is_ok());
    }

    #[test]
    fn coverage_guard_refuses_every_16() {
        let f = feed("");
        let body: String = (0..65_536u32)
            .map(|i| format!("{}/16\n", std::net::Ipv4Addr::from(i << 16)))
            .collect();
        let e = judge(&f, body.as_bytes(), None, &admit(&f)).unwrap_err();
        // All of IPv4 but what the gate refuses anyway: 0/8, 10/8, 100.64/10, 127/8,
        // 169.254/16, 172.16/12, 192.168/16, 224/4 and 240/4.
        let refused: u64 = (3 << 24) + (1 << 22) + (1 << 16) + (1 << 20) + (1 << 16) + (2 << 28);
        let covered = (1u64 << 32) - refused;
        assert_eq!(covered, 3_702_390_784);
        assert_eq!(
            e,
            "coverage guard: the listing covers 3,702,390,784 IPv4 addresses (86.2% of IPv4), over max_coverage 16,777,216"
        );
        assert_eq!(coverage(&f_nets(&body), &admit(&f)).v4, covered);
        // Wider ceilings let it through; a percentage is a share of IPv4.
        let wide = feed("    max_coverage: { v4: 100% }\n");
        assert!(judge(&wide, body.as_bytes(), None, &admit(&wide)).is_ok());
        let pct = feed("    max_coverage: { v4: 86% }\n");
        assert!(judge(&pct, body.as_bytes(), None, &admit(&pct))
            .unwrap_err()
            .contains("over max_coverage 3,693,671,875"));
    }

    fn f_nets(body: &str) -> Nets {
        parse(&FeedFormat::Plain, body).unwrap().nets
    }

    #[test]
    fn coverage_guard_lets_a_drop_like_listing_through() {
        // 1,000 netblocks of /16 to /24 across public space, like Spamhaus DROP: about 10^7
        // addresses, under the default ceiling and well under the catalogue's for DROP.
        let mut body = String::new();
        let mut expected = 0u64;
        for i in 0..1000u32 {
            let len = 16 + (i % 9);
            let first = [45u32, 80, 91, 185, 193, 194, 195, 212, 213, 217][(i % 10) as usize];
            let addr = (first << 24) | ((i / 10) << 16);
            body.push_str(&format!("{}/{len}\n", std::net::Ipv4Addr::from(addr)));
            expected += 1 << (32 - len);
        }
        let f = feed("    min_prefix: { v4: 8 }\n");
        let l = judge(&f, body.as_bytes(), None, &admit(&f)).unwrap();
        assert_eq!(l.nets.len(), 1000);
        assert_eq!(coverage(&l.nets, &admit(&f)).v4, expected);
        assert!(expected > 5_000_000 && expected < crate::config::DEFAULT_MAX_COVERAGE_V4);
        let drop = load_str("feeds:\n  - use: spamhaus-drop-v4\n", Path::new("/c.yaml"))
            .unwrap()
            .feeds
            .remove(0);
        // Even with two whole /8s on top, DROP's own ceiling holds (it is served as JSON lines).
        let more: String = format!("{body}2.0.0.0/8\n5.0.0.0/8\n")
            .lines()
            .map(|l| format!("{{\"cidr\":\"{l}\"}}\n"))
            .collect();
        assert!(judge(&drop, more.as_bytes(), None, &admit(&drop)).is_ok());
    }

    #[test]
    fn overlapping_prefixes_count_once() {
        let all = |_: &IpNet| true;
        let c = coverage(
            &nets(&[
                "45.0.0.0/16",
                "45.0.1.0/24",
                "45.0.1.7",
                "45.0.0.0/16",
                "45.0.255.0/24",
                "45.1.0.0/24",
                "45.1.0.128/25",
            ]),
            &all,
        );
        assert_eq!(c.v4, 65_536 + 256);
        // Adjacent and nested in any order.
        let c = coverage(
            &nets(&["46.0.0.1", "46.0.0.0/30", "46.0.0.4/30", "46.0.0.2"]),
            &all,
        );
        assert_eq!(c.v4, 8);
        assert_eq!(coverage(&Nets::default(), &all), Coverage::default());
        // The guard sees the merged count: 300 copies of a /16 are one /16.
        let f = feed("    max_coverage: { v4: 65536 }\n");
        let body = "45.7.0.0/16\n".repeat(300);
        assert!(judge(&f, body.as_bytes(), None, &admit(&f)).is_ok());
        let body = format!("{body}45.8.0.1\n");
        assert!(judge(&f, body.as_bytes(), None, &admit(&f))
            .unwrap_err()
            .contains("covers 65,537 IPv4 addresses"));
    }

    #[test]
    fn prefixes_the_gate_refuses_do_not_count() {
        let f = feed("    min_prefix: { v4: 8, v6: 16 }\n    max_coverage: { v4: 1000, v6: 10 }\n");
        // Private, loopback, multicast, class E, this-network, broader than min_prefix (/16),
        // the whole space, a whole translation range: all refused by the gate, none counted.
        let body = "10.0.0.0/8\n127.0.0.0/8\n224.0.0.0/3\n240.0.0.0/8\n0.0.0.0/8\n\
                    172.16.0.0/12\n192.168.0.0/16\n100.64.0.0/10\n169.254.0.0/16\n\
                    8.0.0.0/7\n0.0.0.0/0\n::/0\nfc00::/7\nfd00:1::/48\nfe80::/64\nff02::1\n\
                    ::1\n2002::/16\n2000::/15\n45.0.0.1\n2001:db8:1::1\n";
        let l = judge(&f, body.as_bytes(), None, &admit(&f)).unwrap();
        assert_eq!(coverage(&l.nets, &admit(&f)), Coverage { v4: 1, v6: 1 });
        // With allow_private, private space is the feed's to ban, and counts.
        let p = feed(
            "    min_prefix: { v4: 8 }\n    allow_private: true\n    max_coverage: { v4: 1000 }\n",
        );
        assert!(judge(&p, body.as_bytes(), None, &admit(&p))
            .unwrap_err()
            .contains("coverage guard"));
    }

    #[test]
    fn coverage_counts_ipv6_in_64s() {
        let all = |_: &IpNet| true;
        let c = coverage(
            &nets(&[
                "2001:db8::1",
                "2001:db8::2",
                "2001:db8:0:1::/64",
                "2001:db8:0:1::/80",
                "2001:db8:1::/48",
                "2001:db8:1:5::/64",
            ]),
            &all,
        );
        assert_eq!(c.v6, 1 + 1 + 65_536);
        assert_eq!(c.v4, 0);
        assert_eq!(coverage(&nets(&["2000::/3"]), &all).v6, 1u128 << 61);
        // Default ceiling: 2^40 /64s (256 /32s).
        let f = feed("");
        let body: String = (0..256)
            .map(|i| format!("2a0{}:{i:x}::/32\n", i % 10))
            .collect();
        assert!(judge(&f, body.as_bytes(), None, &admit(&f)).is_ok());
        let body = format!("{body}2a0f:1234::/32\n");
        assert_eq!(
            judge(&f, body.as_bytes(), None, &admit(&f)).unwrap_err(),
            "coverage guard: the listing covers 1,103,806,595,072 IPv6 /64s, over max_coverage 1,099,511,627,776 /64s"
        );
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(16_777_216), "16,777,216");
        assert_eq!(thousands(4_294_901_760), "4,294,901,760");
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
        let nets = super::tests::nets(&["2001:db8::1", "192.0.2.0/24"]);
        write_cache(&p, &nets).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(bytes, b"192.0.2.0/24\n2001:db8::1\n");
        let (size, sha) = cache_digest(&nets);
        assert_eq!(
            (size, sha.as_str()),
            (bytes.len() as u64, digest(&bytes).as_str())
        );
        let meta = FeedMeta {
            cache_size: Some(size),
            cache_digest: Some(sha),
            ..FeedMeta::default()
        };
        assert_eq!(read_cache(&p, &meta).unwrap(), nets);
        assert_eq!(verify_cache(&p, &meta), Ok(()));
        // Nothing recorded, another size, another digest: it does not verify.
        assert!(read_cache(&p, &FeedMeta::default()).is_err());
        let short = FeedMeta {
            cache_size: Some(3),
            ..meta.clone()
        };
        assert!(verify_cache(&p, &short)
            .unwrap_err()
            .contains("more than 3 bytes"));
        let other = FeedMeta {
            cache_digest: Some(digest(b"x")),
            ..meta.clone()
        };
        assert!(verify_cache(&p, &other).unwrap_err().contains("SHA-256"));
        // Never read through a link.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(verify_cache(&link, &meta).is_err());
    }
}
