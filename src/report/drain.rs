//! Draining the queue after a run's commit, the dry-run preview, and `sipban report status`.
//!
//! AbuseIPDB: items due now (retry time reached, address not reported within
//! `min_interval_per_ip`), oldest evidence first, within what is left of `daily_limit` today.
//! More than `bulk_threshold` of them (and a bulk upload left today) go out as one bulk CSV;
//! otherwise as single reports paced by a `governor` limiter whose last request time is saved,
//! so back-to-back runs keep the pace. Every request is claimed before it is sent (see
//! [`super::queue::claim`]) and settled after: delivered, kept for a retry (with or without
//! giving the claim back), or dropped with the reason logged. A 429 that is not the
//! per-address refusal pauses the sink until `Retry-After` (or a backoff) has passed.
//!
//! Webhook: batches of due items, one JSON document each, same rules without the per-IP
//! interval and daily limit.
//!
//! Nothing here returns an error: problems become a [`SinkStatus`] and a line in
//! [`ReportRun::errors`], and the queue keeps what was not delivered.

use super::abuseipdb::{self, BulkAnswer, Report};
use super::queue::{self, Claim, Item, Stats, ABUSEIPDB, CROWDSEC, WEBHOOK};
use super::{
    comment, load_abuseipdb_key, load_webhook_headers, AbuseipdbSettings, Candidate, Outcome,
    ReportRun, ReportSettings, SinkRun, SinkStatus, WebhookSettings,
};
use crate::store::Store;
use anyhow::Result;
use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// Items are dropped this long before AbuseIPDB's 60-day limit, so that clock skew between us
/// and AbuseIPDB cannot turn a report into a refusal.
const AGE_MARGIN: i64 = 3600;

/// The oldest first-evidence time AbuseIPDB still accepts from us.
pub fn age_cutoff(now: i64) -> i64 {
    now - super::ABUSEIPDB_MAX_AGE + AGE_MARGIN
}

/// Retry delay after `attempts` failed attempts: 1 min, doubling, at most 6 h.
pub fn backoff(attempts: u32) -> i64 {
    let exp = attempts.saturating_sub(1).min(20);
    (60i64 << exp).min(6 * 3600)
}

/// What AbuseIPDB's "once in 15 minutes" refusal makes an item wait without `Retry-After`.
const DUPLICATE_WAIT: i64 = super::ABUSEIPDB_REPEAT_WINDOW as i64;

pub(super) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}

/// Paces requests: a `governor` limiter with a burst of one; the first request of a run also
/// waits for the spacing after the last request of the previous run.
pub(super) struct Pacer {
    limiter: governor::DefaultDirectRateLimiter,
    first_not_before_ms: Option<i64>,
    period: Duration,
}

impl Pacer {
    pub(super) fn new(period: Duration, last_request_ms: Option<i64>) -> Pacer {
        let period = period.max(Duration::from_millis(1));
        let quota = governor::Quota::with_period(period)
            .unwrap_or(governor::Quota::per_second(std::num::NonZeroU32::MIN));
        Pacer {
            limiter: governor::RateLimiter::direct(quota),
            first_not_before_ms: last_request_ms
                .map(|t| t.saturating_add(period.as_millis().min(i64::MAX as u128) as i64)),
            period,
        }
    }

    pub(super) async fn wait(&mut self) {
        if let Some(not_before) = self.first_not_before_ms.take() {
            let now = unix_ms();
            if not_before > now {
                let wait = Duration::from_millis((not_before - now) as u64).min(self.period);
                tokio::time::sleep(wait).await;
            }
        }
        self.limiter.until_ready().await;
    }
}

pub(super) fn client(
    connect: Duration,
    total: Duration,
    ca_file: Option<&std::path::Path>,
) -> Result<reqwest::Client> {
    crate::http::client(crate::http::Timeouts { connect, total }, ca_file)
}

fn sink_run(sink: &'static str, candidates: &[Candidate]) -> SinkRun {
    SinkRun {
        sink,
        queued: candidates.iter().filter(|c| c.queued_for(sink)).count(),
        ..SinkRun::default()
    }
}

/// Send what is due, after the run's commit enqueued `candidates`.
pub async fn drain(
    settings: &ReportSettings,
    store: &mut Store,
    candidates: Vec<Candidate>,
    now: i64,
) -> ReportRun {
    let mut run = ReportRun {
        dry_run: false,
        candidates,
        sinks: Vec::new(),
        errors: Vec::new(),
    };
    if let Err(e) = store.report_queue().ensure_schema() {
        run.errors.push(format!("report queue: {e:#}"));
        return run;
    }
    if let Some(a) = &settings.abuseipdb {
        let mut s = sink_run(ABUSEIPDB, &run.candidates);
        if let Err(e) = drain_abuseipdb(a, store, now, &mut s).await {
            s.status = SinkStatus::Failed(format!("{e:#}"));
        }
        finish(
            store,
            &mut s,
            now,
            Some(a.min_interval_per_ip),
            &mut run.errors,
        );
        s.daily_limit = Some(a.daily_limit);
        if s.status == SinkStatus::Ok
            && s.queue.due > 0
            && s.used_today.is_some_and(|u| u >= a.daily_limit)
        {
            s.status = SinkStatus::DailyLimit;
        }
        run.sinks.push(s);
    }
    if let Some(w) = &settings.webhook {
        let mut s = sink_run(WEBHOOK, &run.candidates);
        if let Err(e) = drain_webhook(w, store, now, &mut s).await {
            s.status = SinkStatus::Failed(format!("{e:#}"));
        }
        finish(store, &mut s, now, None, &mut run.errors);
        run.sinks.push(s);
    }
    if let Some(c) = &settings.crowdsec {
        let mut s = sink_run(CROWDSEC, &run.candidates);
        if let Err(e) = super::crowdsec::drain(c, store, now, &mut s).await {
            s.status = SinkStatus::Failed(format!("{e:#}"));
        }
        let interval = u64::from(c.bantime.max(c.port_scan_bantime));
        finish(store, &mut s, now, Some(interval), &mut run.errors);
        s.used_today = None;
        run.sinks.push(s);
    }
    run
}

/// Fill in the queue after a drain and turn a bad status into an error line.
fn finish(
    store: &Store,
    s: &mut SinkRun,
    now: i64,
    interval: Option<u64>,
    errors: &mut Vec<String>,
) {
    match store.report_queue().stats(s.sink, now, interval) {
        Ok(q) => s.queue = q,
        Err(e) => errors.push(format!("{}: reading the queue: {e:#}", s.sink)),
    }
    if interval.is_some() {
        if let Ok(d) = store.report_queue().day_use(s.sink, queue::day_of(now)) {
            s.used_today = Some(d.used);
        }
    }
    let kept = "the queue is kept for the next run";
    match &s.status {
        SinkStatus::Ok | SinkStatus::DryRun => {}
        SinkStatus::DailyLimit => {}
        SinkStatus::RateLimited(d) => errors.push(format!("{}: rate limited: {d}; {kept}", s.sink)),
        SinkStatus::Unauthorized(d) => errors.push(format!("{}: {d}; {kept}", s.sink)),
        SinkStatus::Failed(d) => errors.push(format!("{}: {d}; {kept}", s.sink)),
    }
}

impl Item {
    /// The AbuseIPDB report of this item (the comment is built now, from its evidence).
    fn report(&self, host: &comment::HostIdentity) -> Report {
        Report {
            ip: self.ip,
            categories: self.detail.categories(),
            timestamp: self.first,
            comment: comment::comment(self.ip, self.first, self.last, &self.detail, host),
        }
    }
}

async fn drain_abuseipdb(
    a: &AbuseipdbSettings,
    store: &mut Store,
    now: i64,
    run: &mut SinkRun,
) -> Result<()> {
    let interval = Some(a.min_interval_per_ip);
    run.expired += store
        .report_queue()
        .expire(ABUSEIPDB, age_cutoff(now), now)?;
    store
        .report_queue()
        .prune_sent(ABUSEIPDB, now - super::ABUSEIPDB_MAX_AGE)?;
    let key = match load_abuseipdb_key(a) {
        Ok(k) => k,
        Err(e) => {
            run.status = SinkStatus::Failed(e);
            return Ok(());
        }
    };
    let paused = store
        .report_queue()
        .state_int(&queue::key(ABUSEIPDB, "paused_until"))?;
    if let Some(until) = paused.filter(|&u| u > now) {
        run.status = SinkStatus::RateLimited(format!(
            "AbuseIPDB asked to wait until {}",
            comment::iso8601(until)
        ));
        return Ok(());
    }
    let day = store
        .report_queue()
        .day_use(ABUSEIPDB, queue::day_of(now))?;
    let mut budget = a.daily_limit.saturating_sub(day.used) as usize;
    if budget == 0 {
        if store.report_queue().stats(ABUSEIPDB, now, interval)?.due > 0 {
            run.status = SinkStatus::DailyLimit;
        }
        return Ok(());
    }
    let http = client(a.connect_timeout, a.timeout, a.ca_file.as_deref())?;
    let host = comment::HostIdentity::current();
    let limit = budget.min(abuseipdb::MAX_CSV_LINES - 1);
    let mut due = store.report_queue().due(ABUSEIPDB, now, interval, limit)?;
    let bulk_off = store
        .report_queue()
        .state_int(&queue::key(ABUSEIPDB, "bulk_off_day"))?
        == Some(queue::day_of(now));
    let mut pacer = Pacer::new(
        a.pace,
        store
            .report_queue()
            .state_int(&queue::key(ABUSEIPDB, "last_request_ms"))?,
    );
    if due.len() > a.bulk_threshold && day.bulk < a.bulk_per_day && !bulk_off {
        let reports: Vec<Report> = due.iter().map(|i| i.report(&host)).collect();
        let (csv, n) = abuseipdb::csv(&reports);
        let batch: Vec<&Item> = due.iter().take(n).collect();
        let ids: Vec<i64> = batch.iter().map(|i| i.id).collect();
        pacer.wait().await;
        store.report_queue().claim(
            ABUSEIPDB,
            &ids,
            now,
            Claim {
                used: n as u32,
                bulk: true,
                per_ip: true,
                request_ms: unix_ms(),
            },
        )?;
        run.requests += 1;
        run.bulk_uploads += 1;
        budget = budget.saturating_sub(n);
        match abuseipdb::bulk(&http, a, &key, &csv).await {
            BulkAnswer::Saved { saved, invalid } => {
                tracing::info!(
                    "abuseipdb: bulk upload of {n} reports: {saved} saved, {} invalid",
                    invalid.len()
                );
                let mut ok = Vec::new();
                let mut dup = Vec::new();
                let mut bad = Vec::new();
                for item in &batch {
                    let ip = item.ip.to_string();
                    match invalid.iter().find(|v| v.input == ip) {
                        None => ok.push(item.id),
                        Some(v) if is_duplicate(&v.error) => dup.push(item.id),
                        Some(v) => bad.push((item.id, format!("bulk row refused: {}", v.error))),
                    }
                }
                store.report_queue().delivered(ABUSEIPDB, &ok, now)?;
                store.report_queue().retry(
                    ABUSEIPDB,
                    &dup,
                    now,
                    &|_| DUPLICATE_WAIT,
                    "already reported within 15 minutes",
                    true,
                )?;
                store.report_queue().refuse(ABUSEIPDB, &bad, now)?;
                store
                    .report_queue()
                    .set_state(&queue::key(ABUSEIPDB, "rate_limited_in_row"), 0)?;
                run.sent += ok.len();
                run.retry += dup.len();
                run.refused += bad.len();
                return Ok(());
            }
            BulkAnswer::Failed(Outcome::Refused(d)) => {
                // The file as a whole was refused: our CSV, not the items. Give the claims
                // back, turn bulk off for today, and send them one by one.
                tracing::warn!(
                    "abuseipdb: bulk upload refused ({d}); sending single reports today"
                );
                store
                    .report_queue()
                    .retry(ABUSEIPDB, &ids, now, &|_| 0, &d, true)?;
                store
                    .report_queue()
                    .set_state(&queue::key(ABUSEIPDB, "bulk_off_day"), queue::day_of(now))?;
                due = store.report_queue().due(ABUSEIPDB, now, interval, budget)?;
            }
            BulkAnswer::Failed(outcome) => {
                settle(store, &ids, now, outcome, run)?;
                return Ok(());
            }
        }
    }
    for item in due.iter().take(budget.min(a.max_singles_per_run)) {
        pacer.wait().await;
        store.report_queue().claim(
            ABUSEIPDB,
            &[item.id],
            now,
            Claim {
                used: 1,
                bulk: false,
                per_ip: true,
                request_ms: unix_ms(),
            },
        )?;
        run.requests += 1;
        let outcome = abuseipdb::report(&http, a, &key, &item.report(&host)).await;
        if settle(store, &[item.id], now, outcome, run)? {
            break;
        }
    }
    Ok(())
}

fn is_duplicate(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    e.contains("duplicate") || e.contains("15 minutes")
}

/// Settle claimed AbuseIPDB items after an answer. Returns whether to stop this sink now.
fn settle(
    store: &mut Store,
    ids: &[i64],
    now: i64,
    outcome: Outcome,
    run: &mut SinkRun,
) -> Result<bool> {
    let q = store.report_queue();
    let in_row = queue::key(ABUSEIPDB, "rate_limited_in_row");
    Ok(match outcome {
        Outcome::Accepted => {
            q.delivered(ABUSEIPDB, ids, now)?;
            q.set_state(&in_row, 0)?;
            run.sent += ids.len();
            false
        }
        Outcome::Duplicate { retry_after } => {
            let wait = retry_after
                .map(|s| i64::try_from(s).unwrap_or(i64::MAX).max(1))
                .unwrap_or(DUPLICATE_WAIT);
            q.retry(
                ABUSEIPDB,
                ids,
                now,
                &|_| wait,
                "AbuseIPDB: already reported within 15 minutes",
                true,
            )?;
            run.retry += ids.len();
            false
        }
        Outcome::RateLimited {
            retry_after,
            detail,
        } => {
            // With Retry-After, wait that long; without, back off more after each 429 in a row.
            let in_a_row = q
                .state_int(&in_row)?
                .unwrap_or(0)
                .saturating_add(1)
                .clamp(1, 30);
            q.set_state(&in_row, in_a_row)?;
            let wait = retry_after
                .map(|s| i64::try_from(s).unwrap_or(i64::MAX).max(1))
                .unwrap_or_else(|| backoff(in_a_row as u32));
            q.retry(ABUSEIPDB, ids, now, &|_| wait, &detail, true)?;
            q.set_state(
                &queue::key(ABUSEIPDB, "paused_until"),
                now.saturating_add(wait),
            )?;
            run.retry += ids.len();
            run.status = SinkStatus::RateLimited(detail);
            true
        }
        Outcome::Unauthorized(d) => {
            q.retry(ABUSEIPDB, ids, now, &backoff, &d, true)?;
            run.retry += ids.len();
            run.status = SinkStatus::Unauthorized(format!(
                "AbuseIPDB refused the key ({d}); check it (the APIv2 key differs from the APIv1 key)"
            ));
            true
        }
        Outcome::Refused(d) => {
            let items: Vec<(i64, String)> = ids.iter().map(|&i| (i, d.clone())).collect();
            tracing::warn!("abuseipdb: a report was refused and dropped: {d}");
            q.refuse(ABUSEIPDB, &items, now)?;
            run.refused += ids.len();
            false
        }
        Outcome::Misconfigured(d) | Outcome::NotDelivered(d) => {
            q.retry(ABUSEIPDB, ids, now, &backoff, &d, true)?;
            run.retry += ids.len();
            run.status = SinkStatus::Failed(d);
            true
        }
        Outcome::Unknown(d) => {
            // It may have arrived: keep the claim, so the address waits for the interval.
            q.retry(ABUSEIPDB, ids, now, &backoff, &d, false)?;
            run.retry += ids.len();
            run.status = SinkStatus::Failed(format!(
                "{d} (the report may have arrived; it is sent again after min_interval_per_ip)"
            ));
            true
        }
    })
}

async fn drain_webhook(
    w: &WebhookSettings,
    store: &mut Store,
    now: i64,
    run: &mut SinkRun,
) -> Result<()> {
    run.expired += store
        .report_queue()
        .expire(WEBHOOK, now - super::ABUSEIPDB_MAX_AGE, now)?;
    let headers = match load_webhook_headers(w) {
        Ok(h) => h,
        Err(e) => {
            run.status = SinkStatus::Failed(e);
            return Ok(());
        }
    };
    let paused = store
        .report_queue()
        .state_int(&queue::key(WEBHOOK, "paused_until"))?;
    if let Some(until) = paused.filter(|&u| u > now) {
        run.status = SinkStatus::RateLimited(format!(
            "the collector asked to wait until {}",
            comment::iso8601(until)
        ));
        return Ok(());
    }
    let http = client(w.connect_timeout, w.timeout, w.ca_file.as_deref())?;
    let mut pacer = Pacer::new(
        w.pace,
        store
            .report_queue()
            .state_int(&queue::key(WEBHOOK, "last_request_ms"))?,
    );
    for _ in 0..w.max_batches_per_run {
        let due = store.report_queue().due(WEBHOOK, now, None, w.batch)?;
        if due.is_empty() {
            break;
        }
        let ids: Vec<i64> = due.iter().map(|i| i.id).collect();
        pacer.wait().await;
        store.report_queue().claim(
            WEBHOOK,
            &ids,
            now,
            Claim {
                used: 1,
                bulk: false,
                per_ip: false,
                request_ms: unix_ms(),
            },
        )?;
        run.requests += 1;
        let doc = super::webhook::document(&due, now);
        let outcome = super::webhook::post(&http, w, &headers, &doc).await;
        let q = store.report_queue();
        match outcome {
            Outcome::Accepted => {
                q.delivered(WEBHOOK, &ids, now)?;
                run.sent += ids.len();
            }
            Outcome::Refused(d) => {
                tracing::warn!("webhook: a batch was refused and dropped: {d}");
                let items: Vec<(i64, String)> = ids.iter().map(|&i| (i, d.clone())).collect();
                q.refuse(WEBHOOK, &items, now)?;
                run.refused += ids.len();
            }
            Outcome::RateLimited {
                retry_after,
                detail,
            } => {
                let wait = retry_after
                    .map(|s| i64::try_from(s).unwrap_or(i64::MAX).max(1))
                    .unwrap_or(backoff(1));
                q.retry(WEBHOOK, &ids, now, &|a| wait.max(backoff(a)), &detail, true)?;
                q.set_state(
                    &queue::key(WEBHOOK, "paused_until"),
                    now.saturating_add(wait),
                )?;
                run.retry += ids.len();
                run.status = SinkStatus::RateLimited(detail);
                break;
            }
            Outcome::Unauthorized(d) => {
                q.retry(WEBHOOK, &ids, now, &backoff, &d, true)?;
                run.retry += ids.len();
                run.status = SinkStatus::Unauthorized(format!("the collector refused us ({d})"));
                break;
            }
            Outcome::Misconfigured(d) | Outcome::NotDelivered(d) => {
                q.retry(WEBHOOK, &ids, now, &backoff, &d, true)?;
                run.retry += ids.len();
                run.status = SinkStatus::Failed(d);
                break;
            }
            Outcome::Duplicate { .. } => {
                q.retry(WEBHOOK, &ids, now, &backoff, "HTTP 429", true)?;
                run.retry += ids.len();
                break;
            }
            Outcome::Unknown(d) => {
                q.retry(WEBHOOK, &ids, now, &backoff, &d, false)?;
                run.retry += ids.len();
                run.status = SinkStatus::Failed(format!(
                    "{d} (the batch may have arrived; it is sent again, with the same ids)"
                ));
                break;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Dry run.

/// What a run would queue and send, from the saved queue (read-only) and this run's
/// candidates. Writes nothing, sends nothing; checks that the key and headers load.
pub fn preview(
    settings: &ReportSettings,
    store: Option<&Store>,
    candidates: Vec<Candidate>,
    now: i64,
) -> ReportRun {
    let mut run = ReportRun {
        dry_run: true,
        candidates,
        sinks: Vec::new(),
        errors: Vec::new(),
    };
    let conn = store
        .map(Store::report_queue)
        .filter(|q| q.has_tables().unwrap_or(false));
    if let Some(a) = &settings.abuseipdb {
        let mut s = sink_run(ABUSEIPDB, &run.candidates);
        s.status = SinkStatus::DryRun;
        s.daily_limit = Some(a.daily_limit);
        if let Err(e) = load_abuseipdb_key(a) {
            run.errors.push(format!("abuseipdb: {e}"));
        }
        let r = preview_sink(
            conn,
            ABUSEIPDB,
            &run.candidates,
            now,
            Some(a.min_interval_per_ip),
        );
        match r {
            Ok((stats, used)) => {
                let budget = a.daily_limit.saturating_sub(used) as usize;
                s.used_today = Some(used);
                let sendable = stats.due.min(budget);
                let bulk = sendable > a.bulk_threshold;
                s.sent = if bulk {
                    sendable.min(abuseipdb::MAX_CSV_LINES - 1)
                } else {
                    sendable.min(a.max_singles_per_run)
                };
                s.requests = if bulk { 1 } else { s.sent };
                s.bulk_uploads = usize::from(bulk);
                s.queue = stats;
            }
            Err(e) => run
                .errors
                .push(format!("abuseipdb: reading the queue: {e:#}")),
        }
        run.sinks.push(s);
    }
    if let Some(w) = &settings.webhook {
        let mut s = sink_run(WEBHOOK, &run.candidates);
        s.status = SinkStatus::DryRun;
        if let Err(e) = load_webhook_headers(w) {
            run.errors.push(format!("webhook: {e}"));
        }
        match preview_sink(conn, WEBHOOK, &run.candidates, now, None) {
            Ok((stats, _)) => {
                s.sent = stats.due.min(w.batch * w.max_batches_per_run);
                s.requests = s.sent.div_ceil(w.batch.max(1));
                s.queue = stats;
            }
            Err(e) => run
                .errors
                .push(format!("webhook: reading the queue: {e:#}")),
        }
        run.sinks.push(s);
    }
    if let Some(c) = &settings.crowdsec {
        let mut s = sink_run(CROWDSEC, &run.candidates);
        s.status = SinkStatus::DryRun;
        if let Err(e) = super::crowdsec::load_password(c) {
            run.errors.push(format!("crowdsec: {e}"));
        }
        let interval = Some(u64::from(c.bantime.max(c.port_scan_bantime)));
        match preview_sink(conn, CROWDSEC, &run.candidates, now, interval) {
            Ok((stats, _)) => {
                s.sent = stats.due.min(c.batch * c.max_batches_per_run);
                s.requests = s.sent.div_ceil(c.batch.max(1));
                s.queue = stats;
            }
            Err(e) => run
                .errors
                .push(format!("crowdsec: reading the queue: {e:#}")),
        }
        run.sinks.push(s);
    }
    run
}

/// The queue as it would be after enqueueing this run's candidates, and today's use.
fn preview_sink(
    conn: Option<queue::ReportQueue<'_>>,
    sink: &str,
    candidates: &[Candidate],
    now: i64,
    interval: Option<u64>,
) -> Result<(Stats, u32)> {
    let (mut stats, used) = match conn {
        Some(c) => (
            c.stats(sink, now, interval)?,
            c.day_use(sink, queue::day_of(now))?.used,
        ),
        None => (Stats::default(), 0),
    };
    for cand in candidates.iter().filter(|c| c.queued_for(sink)) {
        let (queued, blocked) = match conn {
            Some(c) => (
                c.is_queued(sink, cand.ip)?,
                c.is_blocked(sink, cand.ip, now, interval)?,
            ),
            None => (false, false),
        };
        if queued {
            continue;
        }
        stats.total += 1;
        if blocked {
            stats.waiting_interval += 1;
        } else {
            stats.due += 1;
        }
    }
    Ok((stats, used))
}

// ---------------------------------------------------------------------------------------------
// `sipban report status`.

/// One sink in `sipban report status`.
#[derive(Clone, Debug, Serialize)]
pub struct SinkStatusView {
    pub sink: &'static str,
    /// Whether the config has this sink.
    pub configured: bool,
    pub queue: Stats,
    /// First evidence of the oldest queued item.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest: Option<i64>,
    pub today: queue::DayUse,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily_limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_until: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success: Option<i64>,
    pub reported_total: i64,
    pub refused_total: i64,
    pub expired_total: i64,
}

/// `sipban report status`.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub now: i64,
    pub state: String,
    pub sinks: Vec<SinkStatusView>,
    /// The newest errors and drops, newest first.
    pub events: Vec<queue::Event>,
}

/// Read the queue and counters from the saved state (read-only).
pub fn status(settings: &crate::config::Settings, now: i64) -> Result<Status> {
    let path = Store::db_path(&settings.state_dir).display().to_string();
    let store = Store::open_read_only(&settings.state_dir)?;
    let conn = store
        .as_ref()
        .map(Store::report_queue)
        .filter(|q| q.has_tables().unwrap_or(false));
    let r = settings.report.as_ref();
    let mut sinks = Vec::new();
    for sink in [ABUSEIPDB, WEBHOOK, CROWDSEC] {
        let (configured, interval, limit) = match sink {
            CROWDSEC => (
                r.and_then(|r| r.crowdsec.as_ref()).is_some(),
                r.and_then(|r| r.crowdsec.as_ref())
                    .map(|c| u64::from(c.bantime.max(c.port_scan_bantime))),
                None,
            ),
            ABUSEIPDB => (
                r.and_then(|r| r.abuseipdb.as_ref()).is_some(),
                Some(
                    r.and_then(|r| r.abuseipdb.as_ref())
                        .map_or(86_400, |a| a.min_interval_per_ip),
                ),
                r.and_then(|r| r.abuseipdb.as_ref()).map(|a| a.daily_limit),
            ),
            _ => (r.and_then(|r| r.webhook.as_ref()).is_some(), None, None),
        };
        let mut v = SinkStatusView {
            sink,
            configured,
            queue: Stats::default(),
            oldest: None,
            today: queue::DayUse::default(),
            daily_limit: limit,
            paused_until: None,
            last_success: None,
            reported_total: 0,
            refused_total: 0,
            expired_total: 0,
        };
        if let Some(c) = conn {
            v.queue = c.stats(sink, now, interval)?;
            v.oldest = c.items::<super::Detail>(sink, 1)?.first().map(|i| i.first);
            v.today = c.day_use(sink, queue::day_of(now))?;
            v.paused_until = c
                .state_int(&queue::key(sink, "paused_until"))?
                .filter(|&t| t > now);
            v.last_success = c.state_int(&queue::key(sink, "last_success"))?;
            let total =
                |k: &str| -> Result<i64> { Ok(c.state_int(&queue::key(sink, k))?.unwrap_or(0)) };
            v.reported_total = total("reported_total")?;
            v.refused_total = total("refused_total")?;
            v.expired_total = total("expired_total")?;
        }
        if configured || v.queue.total > 0 {
            sinks.push(v);
        }
    }
    let events = match conn {
        Some(c) => c.events(10)?,
        None => Vec::new(),
    };
    Ok(Status {
        now,
        state: path,
        sinks,
        events,
    })
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sinks.is_empty() {
            writeln!(
                f,
                "reporting is not configured (no report: section) and nothing is queued in {}",
                self.state
            )?;
        }
        for s in &self.sinks {
            let name = super::sink_label(s.sink);
            let q = &s.queue;
            writeln!(
                f,
                "{name}{}:",
                if s.configured {
                    ""
                } else {
                    " (no longer configured; its queue is kept)"
                }
            )?;
            writeln!(
                f,
                "  queue: {} ({} due now, {} wait for the per-address interval, {} for a retry, {} of unknown fate)",
                q.total, q.due, q.waiting_interval, q.waiting_retry, q.in_flight
            )?;
            if let Some(t) = s.oldest {
                writeln!(f, "  oldest evidence queued: {}", comment::iso8601(t))?;
            }
            match s.daily_limit {
                Some(l) => writeln!(
                    f,
                    "  sent today (UTC): {} reports; {} of {l} allowed requests used; {} bulk uploads",
                    s.today.reports, s.today.used, s.today.bulk
                )?,
                None => writeln!(
                    f,
                    "  sent today (UTC): {} reports in {} requests",
                    s.today.reports, s.today.used
                )?,
            }
            if let Some(t) = s.paused_until {
                writeln!(f, "  paused after a 429 until {}", comment::iso8601(t))?;
            }
            match s.last_success {
                Some(t) => writeln!(f, "  last delivery: {}", comment::iso8601(t))?,
                None => writeln!(f, "  last delivery: never")?,
            }
            writeln!(
                f,
                "  totals: {} reported, {} refused and dropped, {} too old and dropped",
                s.reported_total, s.refused_total, s.expired_total
            )?;
        }
        if !self.events.is_empty() {
            writeln!(f, "last errors:")?;
            for e in &self.events {
                writeln!(
                    f,
                    "  {} {} {}{}: {}",
                    comment::iso8601(e.at),
                    e.sink,
                    e.what,
                    e.ip.as_deref().map(|i| format!(" {i}")).unwrap_or_default(),
                    e.detail
                )?;
            }
        }
        Ok(())
    }
}
