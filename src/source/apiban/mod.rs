//! The APIBAN source: page through APIBAN's list of SIP (or HTTP) attackers, resumably and
//! politely, and answer `sipban check IP`.
//!
//! A pull starts at the saved cursor (ID `100` the first time) and asks for pages of up to 250
//! addresses, oldest first, until APIBAN answers "no new bans" (HTTP 400, `ID: "none"`). In a
//! real run every page is committed on its own (see `store::apiban`): its addresses become marks of
//! source `apiban` in `entries`, with the cursor after it, so a run stopped by a 429, a network
//! error or a kill keeps every page it applied and the next run resumes from the saved cursor.
//! Requests are paced by a `governor` limiter of `requests_per_2min` per two minutes; the time
//! of the last request is saved so back-to-back runs keep the pace too.
//!
//! Every `full_refresh`, the listing is fetched again from the first ID into a staging table;
//! when that backlog reaches "no new bans", one transaction replaces the APIBAN marks with the
//! staged ones (dropping what APIBAN no longer lists). A refresh interrupted halfway changes
//! nothing live; the next run continues it.
//!
//! This module must never let the key reach a log line, an error, a report, `--json` output
//! or the state database: the key lives in a [`Secret`] that prints as `[redacted]`, and every
//! text that could contain it goes through [`redact`]. It must never turn certificate checks
//! off: its client comes from [`crate::http::client`].

pub mod api;

pub use api::CheckAnswer;

use crate::net;
use crate::source::Sighting;
use crate::store::apiban::State as ApibanState;
use crate::store::Store;
use ipnet::IpNet;
use serde::Serialize;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// The source name of APIBAN's marks in `entries`.
pub use crate::store::apiban::SOURCE;

/// The environment variable that holds the key (it wins over `key_file`).
pub const KEY_ENV: &str = "SIPBAN_APIBAN_KEY";

/// The placeholder the official clients ship in their sample config.
const PLACEHOLDER_KEY: &str = "MY API KEY";

/// At most this many pages in one run (250 each: far above APIBAN's few thousand addresses);
/// a guard against a server that never says "no new bans".
pub const MAX_PAGES_PER_RUN: usize = 400;

/// Requests are spaced this much wider than `window / requests_per_2min` (1/20 = 5 %), so
/// that network jitter between us and the server cannot make the server count one too many.
const PACE_MARGIN_DIVISOR: u32 = 20;

// ---------------------------------------------------------------------------------------------
// Configuration: defined by `config` (the whole schema lives there), re-exported for callers.

pub use crate::config::apiban::{ApibanSettings, DEFAULT_KEY_FILE, MAX_REQUESTS_PER_WINDOW};
use crate::config::credentials;
pub use crate::config::raw::{ApiVersion, ApibanSet, RawApiban};
pub use crate::config::secret::{redact, Secret};

// ---------------------------------------------------------------------------------------------
// The key.

/// Why there is no key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyError {
    pub message: String,
    /// The key file could not be read (missing, no permission, an I/O error): a failure of the
    /// source in this run, which the next run retries while the other sources apply. Otherwise
    /// the key was refused (readable by others, not a regular file, a placeholder, not a key):
    /// a configuration the admin must fix, and the run fails.
    pub unreadable: bool,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<String> for KeyError {
    /// A refusal.
    fn from(message: String) -> KeyError {
        KeyError {
            message,
            unreadable: false,
        }
    }
}

/// Load the key: `SIPBAN_APIBAN_KEY` if set, else the key file.
pub fn load_key(settings: &ApibanSettings) -> Result<Secret, KeyError> {
    load_key_with(settings, std::env::var(KEY_ENV).ok())
}

/// [`load_key`] with the environment value passed in (tests).
pub fn load_key_with(settings: &ApibanSettings, env: Option<String>) -> Result<Secret, KeyError> {
    let creds = std::env::var_os(credentials::DIRECTORY_ENV);
    load_key_in(settings, env, creds.as_deref())
}

/// [`load_key_with`] with `$CREDENTIALS_DIRECTORY` passed in: the variable wins, then the
/// `apiban.key` credential ([`credentials`]), then `key_file`.
pub fn load_key_in(
    settings: &ApibanSettings,
    env: Option<String>,
    creds: Option<&std::ffi::OsStr>,
) -> Result<Secret, KeyError> {
    if let Some(v) = env {
        return Ok(check_key(v.trim(), &format!("the variable {KEY_ENV}"))
            .map(|k| Secret::new(k, format!("the variable {KEY_ENV}")))?);
    }
    let path = &credentials::secret_file_in(creds, credentials::APIBAN, &settings.key_file);
    let shown = path.display();
    let unreadable = |message: String| KeyError {
        message,
        unreadable: true,
    };
    let meta = std::fs::metadata(path).map_err(|e| {
        unreadable(format!(
            "cannot read the APIBAN key file {shown}: {e} (or set {KEY_ENV})"
        ))
    })?;
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o007 != 0 {
            return Err(format!(
                "the APIBAN key file {shown} can be read by other users (mode {mode:04o}); \
                 refusing to use it: run `chmod 640 {shown}`"
            )
            .into());
        }
    }
    if !meta.is_file() {
        return Err(format!("the APIBAN key file {shown} is not a regular file").into());
    }
    if meta.len() > 4096 {
        return Err(format!("the APIBAN key file {shown} is too large to hold a key").into());
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| unreadable(format!("cannot read the APIBAN key file {shown}: {e}")))?;
    let what = format!("the key file {shown}");
    Ok(check_key(text.trim(), &what).map(|k| Secret::new(k, what))?)
}

fn check_key(key: &str, what: &str) -> Result<String, String> {
    if key.is_empty() {
        return Err(format!("APIBAN: {what} holds no key"));
    }
    if key == PLACEHOLDER_KEY {
        return Err(format!(
            "APIBAN: {what} still holds the placeholder `{PLACEHOLDER_KEY}`; get a key at https://apiban.org/getkey.html"
        ));
    }
    let ok = key.len() <= 256
        && key
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'?' | b'#' | b'%' | b'\\'));
    if !ok {
        return Err(format!(
            "APIBAN: {what} holds characters that cannot be part of an API key (one line, no spaces)"
        ));
    }
    Ok(key.to_string())
}

// ---------------------------------------------------------------------------------------------
// A pull.

/// Where a pull's pages go.
pub enum Target<'a> {
    /// A real run: every page is committed to the store as it arrives.
    Apply(&'a mut Store),
    /// `--dry-run`: read the saved cursor (if there is a state) and write nothing.
    DryRun(Option<&'a Store>),
}

/// How a pull ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum PullStatus {
    /// APIBAN said "no new bans".
    CaughtUp,
    /// HTTP 429: paging stopped; applied pages are kept and the next run resumes.
    RateLimited,
    /// HTTP 401/403; the message names where the key came from (never the key).
    Unauthorized(String),
    /// Network error, malformed answer, storage error...; applied pages are kept.
    Failed(String),
}

/// The state of the periodic full refresh after this run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "refresh", rename_all = "snake_case")]
pub enum RefreshState {
    /// Normal paging from the saved cursor.
    #[default]
    NotDue,
    /// A refresh is staged but not complete; the live entries are unchanged.
    InProgress,
    /// The staged listing replaced the APIBAN entries in this run.
    Completed { entries: usize, dropped: usize },
}

/// What one pull did.
#[derive(Clone, Debug, Serialize)]
pub struct ApibanRun {
    #[serde(flatten)]
    pub status: PullStatus,
    /// Requests sent.
    pub requests: usize,
    /// Pages of addresses received.
    pub pages_fetched: usize,
    /// Pages committed to the state (0 in a dry run).
    pub pages_applied: usize,
    /// Addresses in the fetched pages.
    pub addresses: usize,
    /// Items of fetched pages that were not addresses.
    pub invalid: usize,
    #[serde(flatten)]
    pub refresh: RefreshState,
    /// The address APIBAN answered from (for the allowlist).
    #[serde(skip)]
    pub remote_addr: Option<IpAddr>,
    /// Addresses to merge in this run: the live pages fetched (in a real run they are already
    /// committed; merging them again is idempotent), or, when a refresh completes in a dry
    /// run, the staged listing.
    #[serde(skip)]
    pub sightings: Vec<Sighting>,
}

impl ApibanRun {
    fn new(status: PullStatus) -> ApibanRun {
        ApibanRun {
            status,
            requests: 0,
            pages_fetched: 0,
            pages_applied: 0,
            addresses: 0,
            invalid: 0,
            refresh: RefreshState::NotDue,
            remote_addr: None,
            sightings: Vec::new(),
        }
    }

    /// A pull that could not start (no usable key): nothing was sent.
    pub fn failed(reason: String) -> ApibanRun {
        ApibanRun::new(PullStatus::Failed(reason))
    }

    /// The error line for the run report, if the pull did not catch up.
    pub fn error(&self) -> Option<String> {
        let kept = "the APIBAN entries already applied are kept";
        match &self.status {
            PullStatus::CaughtUp => None,
            PullStatus::RateLimited => Some(format!(
                "apiban: rate limited by APIBAN (HTTP 429) after {} pages; {kept} and the next run resumes from the saved cursor",
                self.pages_fetched
            )),
            PullStatus::Unauthorized(m) => Some(format!("apiban: {m}; {kept}")),
            PullStatus::Failed(m) => Some(format!("apiban: {m}; {kept}")),
        }
    }
}

impl fmt::Display for ApibanRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.status {
            PullStatus::CaughtUp => f.write_str("caught up")?,
            PullStatus::RateLimited => f.write_str("RATE LIMITED (resumes next run)")?,
            PullStatus::Unauthorized(_) => f.write_str("UNAUTHORIZED")?,
            PullStatus::Failed(r) => write!(f, "FAILED: {r}")?,
        }
        write!(
            f,
            " ({} requests, {} pages, {} addresses",
            self.requests, self.pages_fetched, self.addresses
        )?;
        match &self.refresh {
            RefreshState::NotDue => {}
            RefreshState::InProgress => f.write_str(", full refresh in progress")?,
            RefreshState::Completed { entries, dropped } => write!(
                f,
                ", full refresh completed: {entries} entries, {dropped} no longer listed"
            )?,
        }
        f.write_str(")")
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}

/// Added to every gap: APIBAN counts requests when they reach it, and one slow connection
/// set-up followed by a fast one brings two requests closer there than they left here.
const PACE_JITTER: Duration = Duration::from_millis(100);

/// The spacing between two requests: `window / requests`, plus the margin and the allowance
/// for network jitter.
pub fn pace_period(settings: &ApibanSettings) -> Duration {
    let n = settings.requests_per_2min.max(1);
    let base = settings.window / n;
    (base + base / PACE_MARGIN_DIVISOR + PACE_JITTER).max(Duration::from_millis(1))
}

/// Paces requests: a `governor` limiter with a burst of one, so any `requests_per_2min + 1`
/// consecutive requests span more than the window (a larger burst would let a backlog send
/// nearly twice the limit within one window). The first request of a run also waits for the
/// spacing after the last request of the previous run.
struct Pacer {
    limiter: governor::DefaultDirectRateLimiter,
    first_not_before_ms: Option<i64>,
    period: Duration,
}

impl Pacer {
    fn new(settings: &ApibanSettings, last_request_ms: Option<i64>) -> Pacer {
        let period = pace_period(settings);
        // `period` is at least 1 ms, so `with_period` cannot return None.
        let quota = governor::Quota::with_period(period)
            .unwrap_or(governor::Quota::per_second(std::num::NonZeroU32::MIN));
        Pacer {
            limiter: governor::RateLimiter::direct(quota),
            first_not_before_ms: last_request_ms
                .map(|t| t.saturating_add(period.as_millis().min(i64::MAX as u128) as i64)),
            period,
        }
    }

    async fn wait(&mut self) {
        if let Some(not_before) = self.first_not_before_ms.take() {
            let now = unix_ms();
            if not_before > now {
                // Never longer than one period, whatever the wall clock did.
                let wait = Duration::from_millis((not_before - now) as u64).min(self.period);
                tokio::time::sleep(wait).await;
            }
        }
        self.limiter.until_ready().await;
    }
}

fn client(settings: &ApibanSettings) -> anyhow::Result<reqwest::Client> {
    crate::http::client(
        crate::http::Timeouts {
            connect: settings.connect_timeout,
            total: settings.timeout,
        },
        settings.ca_file.as_deref(),
    )
}

/// Split a page into addresses and the number of items that are not addresses.
fn parse_items(items: &[String]) -> (Vec<IpNet>, usize) {
    let mut nets = Vec::with_capacity(items.len());
    let mut invalid = 0;
    for i in items {
        match net::parse_net(i) {
            Ok(n) => nets.push(n),
            Err(_) => invalid += 1,
        }
    }
    (nets, invalid)
}

/// Page through APIBAN from the saved cursor until "no new bans", a 429, an error, or
/// [`MAX_PAGES_PER_RUN`]. Never returns an error: failures are a [`PullStatus`]. With
/// [`Target::Apply`] every page is committed as it arrives; with [`Target::DryRun`] nothing is
/// written and the fetched addresses come back as sightings.
pub async fn pull(
    settings: &ApibanSettings,
    key: &Secret,
    target: Target<'_>,
    now: i64,
) -> ApibanRun {
    let (mut store, read_only) = match target {
        Target::Apply(s) => (Some(s), None),
        Target::DryRun(s) => (None, s),
    };
    let loaded = match (&store, read_only) {
        (Some(s), _) => s.apiban_ensure_schema().and_then(|()| s.apiban_state()),
        (None, Some(s)) => s.apiban_state(),
        (None, None) => Ok(ApibanState::default()),
    };
    let st = match loaded {
        Ok(st) => st,
        Err(e) => return ApibanRun::new(PullStatus::Failed(format!("{e:#}"))),
    };
    let client = match client(settings) {
        Ok(c) => c,
        Err(e) => return ApibanRun::new(PullStatus::Failed(format!("{e:#}"))),
    };
    // A last refresh saved in the future (the clock was ahead) is unknown: refresh now.
    let refresh_due = st.live_since.is_some_and(|t| {
        let future = crate::clock::is_future(t, now);
        if future {
            tracing::warn!(
                "apiban: its last full refresh is saved as {}, in the future (the clock was ahead, or is behind now); refreshing now",
                crate::clock::fmt_time(t)
            );
        }
        future || now.saturating_sub(t) >= settings.full_refresh as i64
    });
    let refreshing = st.staging_cursor.is_some() || st.staging_started.is_some() || refresh_due;
    let cursor = if refreshing {
        st.staging_cursor.clone()
    } else {
        st.cursor.clone()
    }
    .unwrap_or_else(|| api::START_ID.to_string());
    let mut run = ApibanRun::new(PullStatus::CaughtUp);
    if refreshing {
        run.refresh = RefreshState::InProgress;
        if st.staging_started.is_none() {
            tracing::info!("apiban: starting a full refresh from the first ID");
            if let Some(s) = store.as_deref_mut() {
                if let Err(e) = s.apiban_start_refresh(now) {
                    run.status = PullStatus::Failed(format!("{e:#}"));
                    return run;
                }
            }
        }
    }
    let p = Pull {
        settings,
        key,
        client,
        refreshing,
        now,
    };
    let pacer = Pacer::new(settings, st.last_request_ms);
    // A dry run's refresh collects its listing here.
    let mut staged: Vec<IpNet> = Vec::new();
    let finished = fetch_pages(
        &p,
        store.as_deref_mut(),
        &mut run,
        &mut staged,
        cursor,
        pacer,
    )
    .await;
    if !finished {
        if run.status == PullStatus::CaughtUp {
            run.status = PullStatus::Failed(format!(
                "stopped after {MAX_PAGES_PER_RUN} pages without reaching \"no new bans\"; the next run continues"
            ));
        }
        return run;
    }
    if refreshing {
        finish_refresh(store, &mut run, staged, now, settings.ttl);
    }
    run
}

/// What stays fixed while one pull pages through APIBAN.
struct Pull<'a> {
    settings: &'a ApibanSettings,
    key: &'a Secret,
    client: reqwest::Client,
    /// The pages go to the refresh staging, not to the live entries.
    refreshing: bool,
    now: i64,
}

/// The page loop of [`pull`], from `cursor`, at most [`MAX_PAGES_PER_RUN`] requests. Returns
/// whether APIBAN said "no new bans"; otherwise `run.status` says why it stopped (still
/// `CaughtUp` if the page limit was reached).
async fn fetch_pages(
    p: &Pull<'_>,
    mut store: Option<&mut Store>,
    run: &mut ApibanRun,
    staged: &mut Vec<IpNet>,
    mut cursor: String,
    mut pacer: Pacer,
) -> bool {
    for _ in 0..MAX_PAGES_PER_RUN {
        pacer.wait().await;
        if let Some(s) = store.as_deref_mut() {
            if let Err(e) = s.apiban_record_request(unix_ms()) {
                run.status = PullStatus::Failed(format!("{e:#}"));
                return false;
            }
        }
        run.requests += 1;
        let (answer, remote) = api::get_page(&p.client, p.settings, p.key, &cursor).await;
        if remote.is_some() {
            run.remote_addr = remote;
        }
        match answer {
            api::Answer::Page { items, next } => {
                if !take_page(p, store.as_deref_mut(), run, staged, &cursor, &items, &next) {
                    return false;
                }
                cursor = next;
            }
            api::Answer::NoNewBans => return true,
            api::Answer::Unauthorized => {
                run.status = PullStatus::Unauthorized(format!(
                    "APIBAN refused the key from {} (HTTP 403 unauthorized); check it, or get one at https://apiban.org/getkey.html",
                    p.key.origin()
                ));
                return false;
            }
            api::Answer::RateLimited => {
                run.status = PullStatus::RateLimited;
                return false;
            }
            api::Answer::Failed(reason) => {
                run.status = PullStatus::Failed(reason);
                return false;
            }
        }
    }
    false
}

/// One page of addresses answered to a request for `cursor`, with the ID `next` of the
/// following page: checks the ID, counts the page, commits it to `store` (live or staged) and
/// collects its addresses (as sightings, or in `staged` for a dry run's refresh). Returns
/// false, with `run.status` set, when paging must stop.
fn take_page(
    p: &Pull<'_>,
    store: Option<&mut Store>,
    run: &mut ApibanRun,
    staged: &mut Vec<IpNet>,
    cursor: &str,
    items: &[String],
    next: &str,
) -> bool {
    if !api::valid_id(next) {
        run.status = PullStatus::Failed(format!(
            "APIBAN answered with an unusable ID `{}`",
            redact(&next.chars().take(70).collect::<String>(), p.key)
        ));
        return false;
    }
    if next == cursor {
        run.status = PullStatus::Failed(format!(
            "APIBAN answered ID {next} to a request for ID {cursor}; stopping so as not to loop"
        ));
        return false;
    }
    let ttl = p.settings.ttl;
    let (nets, invalid) = parse_items(items);
    run.pages_fetched += 1;
    run.addresses += nets.len();
    run.invalid += invalid;
    if invalid > 0 {
        tracing::warn!("apiban: {invalid} items of a page are not addresses");
    }
    let dry_run = store.is_none();
    if let Some(s) = store {
        let saved = if p.refreshing {
            s.apiban_stage_page(&nets, next, p.now)
        } else {
            s.apiban_apply_page(&nets, next, p.now, ttl)
        };
        if let Err(e) = saved {
            run.status = PullStatus::Failed(format!("{e:#}"));
            return false;
        }
        run.pages_applied += 1;
    }
    if p.refreshing {
        if dry_run {
            staged.extend_from_slice(&nets);
        }
    } else {
        run.sightings.extend(nets.iter().map(|&n| Sighting {
            net: n,
            seen: p.now,
            ttl,
        }));
    }
    tracing::debug!(
        "apiban: page {} with {} addresses; next ID {next}",
        run.pages_fetched,
        nets.len()
    );
    true
}

/// A refresh reached "no new bans": swap the staged listing in (`store`), or, in a dry run,
/// return the `staged` listing as the run's sightings.
fn finish_refresh(
    store: Option<&mut Store>,
    run: &mut ApibanRun,
    staged: Vec<IpNet>,
    now: i64,
    ttl: u32,
) {
    match store {
        Some(s) => match s.apiban_finish_refresh(now, ttl) {
            Ok(swap) => {
                run.refresh = RefreshState::Completed {
                    entries: swap.entries,
                    dropped: swap.dropped,
                };
            }
            Err(e) => run.status = PullStatus::Failed(format!("{e:#}")),
        },
        None => {
            run.refresh = RefreshState::Completed {
                entries: staged.len(),
                dropped: 0,
            };
            run.sightings = staged
                .into_iter()
                .map(|n| Sighting {
                    net: n,
                    seen: now,
                    ttl,
                })
                .collect();
        }
    }
}

/// Why [`check`] could not answer.
#[derive(Debug)]
pub struct CheckError(pub String);

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CheckError {}

/// Ask APIBAN's check endpoint whether `ip` is listed (one request).
pub async fn check(
    settings: &ApibanSettings,
    key: &Secret,
    ip: IpAddr,
) -> Result<CheckAnswer, CheckError> {
    let client = client(settings).map_err(|e| CheckError(format!("{e:#}")))?;
    api::check(&client, settings, key, net::canonical_ip(ip))
        .await
        .map_err(|e| {
            CheckError(match e {
                api::CheckError::Unauthorized => format!(
                    "APIBAN refused the key from {} (HTTP 403 unauthorized)",
                    key.origin()
                ),
                api::CheckError::RateLimited => {
                    "APIBAN rate limited the check (HTTP 429); try again in two minutes".into()
                }
                api::CheckError::Failed(m) => m,
            })
        })
}

/// APIBAN's half of `sipban check IP`.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum RemoteCheck {
    /// The config has no `apiban:` section.
    NotConfigured,
    Listed {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    NotListed,
    /// The key could not be loaded or APIBAN could not be asked (already redacted).
    Error {
        message: String,
    },
}

/// `sipban check IP`: what APIBAN says about `ip` (when configured).
pub async fn remote_check(settings: Option<&ApibanSettings>, ip: IpAddr) -> RemoteCheck {
    let ip = net::canonical_ip(ip);
    match settings {
        None => RemoteCheck::NotConfigured,
        Some(a) => match load_key(a) {
            Err(e) => RemoteCheck::Error { message: e.message },
            Ok(key) => match check(a, &key, ip).await {
                Ok(CheckAnswer { listed: true, id }) => RemoteCheck::Listed { id },
                Ok(CheckAnswer { listed: false, .. }) => RemoteCheck::NotListed,
                Err(e) => RemoteCheck::Error {
                    message: redact(&e.0, &key),
                },
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::apiban::resolve;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    fn settings(yaml_extra: &str, dir: &Path) -> ApibanSettings {
        let raw: RawApiban =
            crate::config::parse_yaml(&format!("api: v2\n{yaml_extra}"), "test").unwrap();
        resolve(raw, dir).unwrap()
    }

    #[test]
    fn secret_never_prints() {
        let k = Secret::new("s3cr3tKEY", "the key file /k");
        assert_eq!(format!("{k}"), "[redacted]");
        assert!(!format!("{k:?}").contains("s3cr3tKEY"));
        assert!(format!("{k:?}").contains("/k"));
        assert_eq!(
            redact("https://h/api/s3cr3tKEY/banned/100", &k),
            "https://h/api/[redacted]/banned/100"
        );
    }

    #[test]
    fn defaults_and_validation() {
        let dir = Path::new("/etc/sipban");
        let s = settings("", dir);
        assert_eq!(s.base_url, "https://apiban.org");
        assert_eq!(s.ttl, 7 * 86_400);
        assert_eq!(s.priority, 80);
        assert_eq!(s.requests_per_2min, 5);
        assert_eq!(s.full_refresh, 7 * 86_400);
        assert_eq!(s.window, Duration::from_secs(120));
        assert_eq!(s.key_file, PathBuf::from(DEFAULT_KEY_FILE));
        let s = settings(
            "key_file: keys/a.key\nbase_url: https://mirror.example/\n",
            dir,
        );
        assert_eq!(s.key_file, PathBuf::from("/etc/sipban/keys/a.key"));
        assert_eq!(s.base_url, "https://mirror.example");
        let bad = |y: &str| {
            let raw: RawApiban = crate::config::parse_yaml(y, "t").unwrap();
            resolve(raw, dir).unwrap_err()
        };
        assert!(bad("api: v1\nset: http\n").contains("v2"));
        assert!(bad("base_url: http://apiban.org\n").contains("https"));
        assert!(bad("requests_per_2min: 0\n").contains("between"));
        assert!(bad("full_refresh: 10m\n").contains("1h"));
        assert!(crate::config::parse_yaml::<RawApiban>("key: abc\n", "t").is_err());
    }

    #[test]
    fn config_section() {
        let load = |t: &str| crate::config::load_str(t, Path::new("/etc/sipban/config.yaml"));
        assert!(load("state_dir: /x\n").unwrap().apiban.is_none());
        let s = load(
            "apiban:\n  key_file: /etc/sipban/apiban.key\n  api: v1\n  ttl: 2d\n  priority: 90\n",
        )
        .unwrap()
        .apiban
        .unwrap();
        assert_eq!((s.api, s.ttl, s.priority), (ApiVersion::V1, 2 * 86_400, 90));
        let e = load("state_dir: /x\napiban:\n  api: v1\n  set: all\n").unwrap_err();
        assert!(e.0.contains("line 3") && e.0.contains("v2"), "{e}");
        let e = load("apiban:\n  key: abc\n").unwrap_err();
        assert!(e.0.contains("line 2") && e.0.contains("key"), "{e}");
        let e = load("apiban:\n  priority: 5000\n").unwrap_err();
        assert!(e.0.contains("priority"), "{e}");
        // The resolved settings name the key file, and hold no key.
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("apiban.key"), "{json}");
    }

    #[test]
    fn pacing_leaves_a_margin() {
        let mut s = settings("requests_per_2min: 5\n", Path::new("/"));
        assert_eq!(pace_period(&s), Duration::from_millis(25_300));
        s.window = Duration::from_secs(1);
        assert!(pace_period(&s) * 5 > s.window);
    }

    #[test]
    fn the_apiban_key_credential_wins_over_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("creds");
        std::fs::create_dir(&creds).unwrap();
        let mut s = settings("", dir.path());
        s.key_file = dir.path().join("missing.key");
        let c = Some(creds.as_os_str());
        // No credential: the (missing) key file is what is read.
        let e = load_key_in(&s, None, c).unwrap_err();
        assert!(e.unreadable && e.message.contains("missing.key"), "{e}");
        let cred = creds.join("apiban.key");
        std::fs::write(&cred, "abcdef0123456789\n").unwrap();
        std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o400)).unwrap();
        let k = load_key_in(&s, None, c).unwrap();
        assert_eq!(k.expose(), "abcdef0123456789");
        assert!(k.origin().contains("apiban.key"), "{}", k.origin());
        let k = load_key_in(&s, Some("fromenv".into()), c).unwrap();
        assert_eq!(k.expose(), "fromenv");
    }

    #[test]
    fn key_file_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apiban.key");
        let mut s = settings("", dir.path());
        s.key_file = path.clone();
        let set_mode =
            |m: u32| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).unwrap();
        let e = load_key_with(&s, None).unwrap_err();
        assert!(e.unreadable, "{e}");
        let e = e.message;
        assert!(e.contains(&path.display().to_string()), "{e}");

        std::fs::write(&path, "abcdef0123456789\n").unwrap();
        set_mode(0o644);
        let e = load_key_with(&s, None).unwrap_err();
        assert!(!e.unreadable, "{e}");
        let e = e.message;
        assert!(
            e.contains("chmod 640") && e.contains(&path.display().to_string()),
            "{e}"
        );
        assert!(!e.contains("abcdef0123456789"), "{e}");
        set_mode(0o601);
        assert!(load_key_with(&s, None).is_err());
        set_mode(0o640);
        let k = load_key_with(&s, None).unwrap();
        assert_eq!(k.expose(), "abcdef0123456789");
        assert!(k.origin().contains(&path.display().to_string()));

        // The environment wins, even over a bad file.
        set_mode(0o644);
        let k = load_key_with(&s, Some(" fromenv \n".into())).unwrap();
        assert_eq!(k.expose(), "fromenv");
        assert!(k.origin().contains(KEY_ENV));
        set_mode(0o600);

        for (content, want) in [
            ("\n", "no key"),
            ("MY API KEY\n", "placeholder"),
            ("two words\n", "characters"),
            ("a/b\n", "characters"),
        ] {
            std::fs::write(&path, content).unwrap();
            let e = load_key_with(&s, None).unwrap_err();
            assert!(
                !e.unreadable && e.message.contains(want),
                "{content:?}: {e}"
            );
        }
        assert!(load_key_with(&s, Some(String::new())).is_err());
    }

    #[test]
    fn items_that_are_not_addresses_are_counted() {
        let (nets, invalid) = parse_items(&[
            "198.18.0.1".into(),
            "2001:db8::1".into(),
            "no new bans".into(),
        ]);
        assert_eq!(nets.len(), 2);
        assert_eq!(invalid, 1);
    }
}
