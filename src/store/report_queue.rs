//! The report queue: its tables in the state database, and the transactions that make
//! delivery survive a kill at any instant.
//!
//! - `report_queue`: one row per (sink, address) waiting to be sent. A new offence of an
//!   address already queued merges into its row (times widen, counts add up), so the queue
//!   holds at most one item per address and sink. `claimed` is set while a request carrying the
//!   row is (or was, when a run was killed) on its way; `prev_sent` remembers what
//!   `report_sent` said before the claim, to give the claim back when the request surely
//!   failed.
//! - `report_sent`: when each address was last reported (or claimed) per sink: the per-IP
//!   interval.
//! - `report_daily`: per sink and UTC day: requests and bulk rows used, reports accepted,
//!   bulk uploads.
//! - `report_events`: the last errors and drops, for `sipban report status`.
//! - `report_state`: pauses after a 429, pacing, running totals.
//!
//! Everything goes through a [`ReportQueue`] handle: [`Store::report_queue`] writes each
//! statement on its own, and [`ReportQueue::claim`], [`ReportQueue::delivered`],
//! [`ReportQueue::retry`] and [`ReportQueue::refuse`] open their own transaction; the handle of a
//! [`StoreTx`](super::StoreTx) writes in that transaction (a run's commit) and cannot open
//! another. The detail of an item is the reporter's type ([`QueueDetail`]), stored as JSON. Rows hold addresses,
//! times, counts and fixed words: never a key, a header value or a raw log line.

use super::Store;
use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;
use std::net::IpAddr;

/// How many events `report_events` keeps.
const KEEP_EVENTS: i64 = 100;

/// Create the tables if they are missing.
fn ensure_schema(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS report_queue (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             sink TEXT NOT NULL,
             ip TEXT NOT NULL,
             first INTEGER NOT NULL,
             last INTEGER NOT NULL,
             detail TEXT NOT NULL,
             enqueued INTEGER NOT NULL,
             attempts INTEGER NOT NULL DEFAULT 0,
             next_attempt INTEGER NOT NULL,
             claimed INTEGER,
             prev_sent INTEGER,
             last_error TEXT,
             UNIQUE (sink, ip)
         );
         CREATE TABLE IF NOT EXISTS report_sent (
             sink TEXT NOT NULL,
             ip TEXT NOT NULL,
             at INTEGER NOT NULL,
             PRIMARY KEY (sink, ip)
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS report_daily (
             sink TEXT NOT NULL,
             day INTEGER NOT NULL,
             used INTEGER NOT NULL DEFAULT 0,
             reports INTEGER NOT NULL DEFAULT 0,
             bulk INTEGER NOT NULL DEFAULT 0,
             PRIMARY KEY (sink, day)
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS report_events (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             at INTEGER NOT NULL,
             sink TEXT NOT NULL,
             ip TEXT,
             what TEXT NOT NULL,
             detail TEXT NOT NULL
         );
         CREATE TABLE IF NOT EXISTS report_state (
             key TEXT PRIMARY KEY,
             value NOT NULL
         );",
    )
    .context("creating the report queue tables")
}

/// Whether the tables exist (a read-only view of a state written before reporting was on).
fn has_tables(conn: &Connection) -> Result<bool> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'report_queue'",
        [],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

/// The UTC day of a Unix time (AbuseIPDB's daily quota is assumed to reset at 00:00 UTC).
pub fn day_of(t: i64) -> i64 {
    t.div_euclid(86_400)
}

/// The detail of a queued item: the reporter's evidence, kept as JSON; a new offence of a
/// queued address merges into it.
pub trait QueueDetail: Serialize + DeserializeOwned + Default {
    fn merge_into(&mut self, other: &Self);
}

/// One queued item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Item<D> {
    pub id: i64,
    pub sink: String,
    pub ip: IpAddr,
    pub first: i64,
    pub last: i64,
    pub detail: D,
    pub enqueued: i64,
    pub attempts: u32,
    pub next_attempt: i64,
    /// Set while a request carrying it is (or, after a kill, may have been) on its way.
    pub claimed: Option<i64>,
    pub last_error: Option<String>,
}

const ITEM_COLUMNS: &str =
    "id, sink, ip, first, last, detail, enqueued, attempts, next_attempt, claimed, last_error";

fn item_of<D: Default>(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Item<D>, String, String)> {
    let ip: String = r.get(2)?;
    let detail: String = r.get(5)?;
    Ok((
        Item {
            id: r.get(0)?,
            sink: r.get(1)?,
            ip: IpAddr::from([0, 0, 0, 0]),
            first: r.get(3)?,
            last: r.get(4)?,
            detail: D::default(),
            enqueued: r.get(6)?,
            attempts: r.get::<_, i64>(7)?.clamp(0, i64::from(u32::MAX)) as u32,
            next_attempt: r.get(8)?,
            claimed: r.get(9)?,
            last_error: r.get(10)?,
        },
        ip,
        detail,
    ))
}

/// Rows into items; unreadable rows are skipped with a warning (they can only come from a
/// damaged database).
fn collect_items<D: QueueDetail>(
    rows: impl Iterator<Item = rusqlite::Result<(Item<D>, String, String)>>,
) -> Result<Vec<Item<D>>> {
    let mut out = Vec::new();
    for row in rows {
        let (mut item, ip, detail) = row?;
        let Some(addr) = crate::net::parse_ip(&ip) else {
            tracing::warn!("report queue: skipping an item with an unreadable address `{ip}`");
            continue;
        };
        item.ip = addr;
        item.detail = serde_json::from_str(&detail).unwrap_or_else(|e| {
            tracing::warn!("report queue: item {}: unreadable detail ({e})", item.id);
            D::default()
        });
        out.push(item);
    }
    Ok(out)
}

/// Queue one offence for `sink`, merging into the address's waiting item if there is one.
fn enqueue<D: QueueDetail>(
    conn: &Connection,
    sink: &str,
    ip: IpAddr,
    first: i64,
    last: i64,
    detail: &D,
    now: i64,
) -> Result<()> {
    let ip_text = ip.to_string();
    let existing: Option<(i64, i64, i64, String)> = conn
        .query_row(
            "SELECT id, first, last, detail FROM report_queue WHERE sink = ?1 AND ip = ?2",
            params![sink, ip_text],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    match existing {
        Some((id, f, l, d)) => {
            let mut merged: D = serde_json::from_str(&d).unwrap_or_default();
            merged.merge_into(detail);
            conn.execute(
                "UPDATE report_queue SET first = ?2, last = ?3, detail = ?4 WHERE id = ?1",
                params![
                    id,
                    f.min(first),
                    l.max(last),
                    serde_json::to_string(&merged)?
                ],
            )?;
        }
        None => {
            conn.execute(
                "INSERT INTO report_queue (sink, ip, first, last, detail, enqueued, next_attempt)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![
                    sink,
                    ip_text,
                    first,
                    last,
                    serde_json::to_string(detail)?,
                    now
                ],
            )?;
        }
    }
    Ok(())
}

/// `now - interval`, or "no interval" for sinks without one.
fn cutoff(now: i64, interval: Option<u64>) -> i64 {
    match interval {
        Some(i) => now.saturating_sub(i64::try_from(i).unwrap_or(i64::MAX)),
        None => i64::MAX,
    }
}

/// Items due now, oldest evidence first: retry time reached and, with an interval, the
/// address not reported (or claimed) within it.
fn due<D: QueueDetail>(
    conn: &Connection,
    sink: &str,
    now: i64,
    interval: Option<u64>,
    limit: usize,
) -> Result<Vec<Item<D>>> {
    let sql = format!(
        "SELECT {ITEM_COLUMNS} FROM report_queue q
         WHERE q.sink = ?1 AND q.next_attempt <= ?2
           AND NOT EXISTS (SELECT 1 FROM report_sent s
                           WHERE s.sink = q.sink AND s.ip = q.ip AND s.at > ?3)
         ORDER BY q.first, q.id LIMIT ?4"
    );
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map(
        params![
            sink,
            now,
            cutoff(now, interval),
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
        item_of,
    )?;
    collect_items(rows)
}

/// Whether `ip` has an item in the sink's queue.
fn is_queued(conn: &Connection, sink: &str, ip: IpAddr) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM report_queue WHERE sink = ?1 AND ip = ?2",
            params![sink, ip.to_string()],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Whether `ip` was reported (or claimed) within the interval.
fn is_blocked(
    conn: &Connection,
    sink: &str,
    ip: IpAddr,
    now: i64,
    interval: Option<u64>,
) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM report_sent WHERE sink = ?1 AND ip = ?2 AND at > ?3",
            params![sink, ip.to_string(), cutoff(now, interval)],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Every item of a sink (for status output), oldest first, at most `limit`.
fn items<D: QueueDetail>(conn: &Connection, sink: &str, limit: usize) -> Result<Vec<Item<D>>> {
    let sql = format!(
        "SELECT {ITEM_COLUMNS} FROM report_queue WHERE sink = ?1 ORDER BY first, id LIMIT ?2"
    );
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map(
        params![sink, i64::try_from(limit).unwrap_or(i64::MAX)],
        item_of,
    )?;
    collect_items(rows)
}

/// The queue of one sink at a moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub total: usize,
    /// Ready to be sent.
    pub due: usize,
    /// Waiting because the address was reported (or claimed) within the per-IP interval.
    pub waiting_interval: usize,
    /// Waiting for a retry after a failure.
    pub waiting_retry: usize,
    /// Claimed by a request whose fate is unknown (a timeout, a killed run).
    pub in_flight: usize,
}

fn stats(conn: &Connection, sink: &str, now: i64, interval: Option<u64>) -> Result<Stats> {
    let (total, blocked, retry, in_flight): (i64, i64, i64, i64) = conn.query_row(
        "SELECT COUNT(*),
                COALESCE(SUM(b), 0),
                COALESCE(SUM(CASE WHEN b = 0 AND next_attempt > ?2 THEN 1 ELSE 0 END), 0),
                COALESCE(SUM(CASE WHEN claimed IS NOT NULL THEN 1 ELSE 0 END), 0)
         FROM (SELECT q.next_attempt, q.claimed,
                      EXISTS (SELECT 1 FROM report_sent s
                              WHERE s.sink = q.sink AND s.ip = q.ip AND s.at > ?3) AS b
               FROM report_queue q WHERE q.sink = ?1)",
        params![sink, now, cutoff(now, interval)],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let n = |v: i64| v.max(0) as usize;
    Ok(Stats {
        total: n(total),
        due: n(total - blocked - retry),
        waiting_interval: n(blocked),
        waiting_retry: n(retry),
        in_flight: n(in_flight),
    })
}

/// One sink's use of one UTC day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DayUse {
    /// Requests sent plus rows of bulk uploads: what counts against `daily_limit`.
    pub used: u32,
    /// Reports accepted.
    pub reports: u32,
    /// Bulk uploads.
    pub bulk: u32,
}

fn day_use(conn: &Connection, sink: &str, day: i64) -> Result<DayUse> {
    Ok(conn
        .query_row(
            "SELECT used, reports, bulk FROM report_daily WHERE sink = ?1 AND day = ?2",
            params![sink, day],
            |r| {
                let u = |v: i64| v.clamp(0, i64::from(u32::MAX)) as u32;
                Ok(DayUse {
                    used: u(r.get(0)?),
                    reports: u(r.get(1)?),
                    bulk: u(r.get(2)?),
                })
            },
        )
        .optional()?
        .unwrap_or_default())
}

fn add_day(
    conn: &Connection,
    sink: &str,
    day: i64,
    used: u32,
    reports: u32,
    bulk: u32,
) -> Result<()> {
    conn.execute(
        "INSERT INTO report_daily (sink, day, used, reports, bulk) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(sink, day) DO UPDATE SET used = used + ?3, reports = reports + ?4,
             bulk = bulk + ?5",
        params![sink, day, used, reports, bulk],
    )?;
    // Old days are of no use.
    conn.execute(
        "DELETE FROM report_daily WHERE sink = ?1 AND day < ?2 - 7",
        params![sink, day],
    )?;
    Ok(())
}

/// A value of `report_state`.
fn state_int(conn: &Connection, key: &str) -> Result<Option<i64>> {
    Ok(conn
        .query_row(
            "SELECT CAST(value AS INTEGER) FROM report_state WHERE key = ?1",
            [key],
            |r| r.get(0),
        )
        .optional()?)
}

fn set_state(conn: &Connection, key: &str, value: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO report_state (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

fn bump(conn: &Connection, key: &str, by: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO report_state (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + ?2",
        params![key, by],
    )?;
    Ok(())
}

/// Keys of `report_state` for a sink.
pub fn key(sink: &str, what: &str) -> String {
    format!("{sink}.{what}")
}

/// An event for `sipban report status` (errors and drops). `detail` must already be free of
/// secrets.
fn event(
    conn: &Connection,
    sink: &str,
    ip: Option<IpAddr>,
    what: &str,
    detail: &str,
    now: i64,
) -> Result<()> {
    let detail: String = detail.chars().take(300).collect();
    conn.execute(
        "INSERT INTO report_events (at, sink, ip, what, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now, sink, ip.map(|i| i.to_string()), what, detail],
    )?;
    conn.execute(
        "DELETE FROM report_events WHERE id <= (SELECT MAX(id) FROM report_events) - ?1",
        [KEEP_EVENTS],
    )?;
    Ok(())
}

/// One row of `report_events`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    pub at: i64,
    pub sink: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    pub what: String,
    pub detail: String,
}

/// The newest events, newest first.
fn events(conn: &Connection, limit: usize) -> Result<Vec<Event>> {
    let mut st = conn.prepare(
        "SELECT at, sink, ip, what, detail FROM report_events ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = st.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
        Ok(Event {
            at: r.get(0)?,
            sink: r.get(1)?,
            ip: r.get(2)?,
            what: r.get(3)?,
            detail: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Drop a sink's items whose first evidence is older than `cutoff`; returns how many.
fn expire(conn: &Connection, sink: &str, cutoff: i64, now: i64) -> Result<usize> {
    let n = conn.execute(
        "DELETE FROM report_queue WHERE sink = ?1 AND first < ?2",
        params![sink, cutoff],
    )?;
    if n > 0 {
        bump(conn, &key(sink, "expired_total"), n as i64)?;
        event(
            conn,
            sink,
            None,
            "expired",
            &format!("{n} items dropped: their evidence is older than 60 days (AbuseIPDB refuses older reports)"),
            now,
        )?;
    }
    Ok(n)
}

/// Keep at most `max` items of a sink, dropping those with the oldest evidence; returns how
/// many were dropped.
fn trim(conn: &Connection, sink: &str, max: usize, now: i64) -> Result<usize> {
    let n = conn.execute(
        "DELETE FROM report_queue WHERE id IN (
             SELECT id FROM report_queue WHERE sink = ?1 ORDER BY first DESC, id DESC
             LIMIT -1 OFFSET ?2)",
        params![sink, i64::try_from(max).unwrap_or(i64::MAX)],
    )?;
    if n > 0 {
        bump(conn, &key(sink, "overflow_total"), n as i64)?;
        event(
            conn,
            sink,
            None,
            "overflow",
            &format!("{n} items with the oldest evidence dropped: the queue holds at most {max}"),
            now,
        )?;
    }
    Ok(n)
}

/// Forget per-IP report times older than `before` (they no longer block anything).
fn prune_sent(conn: &Connection, sink: &str, before: i64) -> Result<()> {
    conn.execute(
        "DELETE FROM report_sent WHERE sink = ?1 AND at < ?2",
        params![sink, before],
    )?;
    Ok(())
}

/// What a claim counts against the day.
#[derive(Clone, Copy, Debug)]
pub struct Claim {
    /// Add this to the day's `used` (1 for a request, the rows of a bulk upload).
    pub used: u32,
    pub bulk: bool,
    /// Record the addresses as reported now (sinks with a per-IP interval).
    pub per_ip: bool,
    /// Wall-clock milliseconds of the request, for pacing across runs.
    pub request_ms: i64,
}

/// Before a request is sent: mark its items claimed, the addresses reported now (per-IP
/// interval), and the request used against the day, in one committed transaction.
fn claim(conn: &Connection, sink: &str, ids: &[i64], now: i64, c: Claim) -> Result<()> {
    let tx = conn.unchecked_transaction()?;
    {
        let mut get = tx.prepare("SELECT ip FROM report_queue WHERE id = ?1")?;
        let mut prev = tx.prepare("SELECT at FROM report_sent WHERE sink = ?1 AND ip = ?2")?;
        let mut upd =
            tx.prepare("UPDATE report_queue SET claimed = ?2, prev_sent = ?3 WHERE id = ?1")?;
        let mut sent = tx.prepare(
            "INSERT INTO report_sent (sink, ip, at) VALUES (?1, ?2, ?3)
             ON CONFLICT(sink, ip) DO UPDATE SET at = excluded.at",
        )?;
        for id in ids {
            let Some(ip): Option<String> = get.query_row([id], |r| r.get(0)).optional()? else {
                continue;
            };
            let before: Option<i64> = if c.per_ip {
                prev.query_row(params![sink, ip], |r| r.get(0)).optional()?
            } else {
                None
            };
            upd.execute(params![id, now, before])?;
            if c.per_ip {
                sent.execute(params![sink, ip, now])?;
            }
        }
        add_day(&tx, sink, day_of(now), c.used, 0, u32::from(c.bulk))?;
        set_state(&tx, &key(sink, "last_request_ms"), c.request_ms)?;
    }
    tx.commit().context("saving a report claim")
}

/// The items were accepted: remove them and count them.
fn delivered(conn: &Connection, sink: &str, ids: &[i64], now: i64) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    {
        let mut del = tx.prepare("DELETE FROM report_queue WHERE id = ?1")?;
        let mut n = 0u32;
        for id in ids {
            n += del.execute([id])? as u32;
        }
        add_day(&tx, sink, day_of(now), 0, n, 0)?;
        bump(&tx, &key(sink, "reported_total"), i64::from(n))?;
        set_state(&tx, &key(sink, "last_success"), now)?;
    }
    tx.commit().context("saving delivered reports")
}

/// Give claims back: the request surely did not record these items.
fn give_back(tx: &Connection, sink: &str, id: i64) -> Result<()> {
    let row: Option<(String, Option<i64>)> = tx
        .query_row(
            "SELECT ip, prev_sent FROM report_queue WHERE id = ?1 AND claimed IS NOT NULL",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((ip, prev)) = row {
        match prev {
            Some(at) => tx.execute(
                "UPDATE report_sent SET at = ?3 WHERE sink = ?1 AND ip = ?2",
                params![sink, ip, at],
            )?,
            None => tx.execute(
                "DELETE FROM report_sent WHERE sink = ?1 AND ip = ?2",
                params![sink, ip],
            )?,
        };
    }
    Ok(())
}

/// Keep the items for a later attempt at `next_attempt` (per item: its attempts so far go
/// into `delay`). With `release`, the request surely did not arrive: the claims are given
/// back. Without, its fate is unknown: the claims stay, so the per-IP interval applies.
fn retry(
    conn: &Connection,
    sink: &str,
    ids: &[i64],
    now: i64,
    delay: &dyn Fn(u32) -> i64,
    reason: &str,
    release: bool,
) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    {
        let mut first_ip = None;
        for id in ids {
            let row: Option<(String, i64)> = tx
                .query_row(
                    "SELECT ip, attempts FROM report_queue WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((ip, attempts)) = row else { continue };
            first_ip.get_or_insert(ip);
            let attempts = attempts.saturating_add(1).clamp(1, i64::from(u32::MAX)) as u32;
            if release {
                give_back(&tx, sink, *id)?;
            }
            tx.execute(
                "UPDATE report_queue SET attempts = ?2, next_attempt = ?3, last_error = ?4,
                     claimed = CASE WHEN ?5 THEN NULL ELSE claimed END,
                     prev_sent = CASE WHEN ?5 THEN NULL ELSE prev_sent END
                 WHERE id = ?1",
                params![
                    id,
                    attempts,
                    now.saturating_add(delay(attempts)),
                    reason,
                    release
                ],
            )?;
        }
        let what = if release { "retry" } else { "unknown" };
        let detail = if ids.len() > 1 {
            format!("{} items: {reason}", ids.len())
        } else {
            reason.to_string()
        };
        event(
            &tx,
            sink,
            first_ip
                .as_deref()
                .and_then(crate::net::parse_ip)
                .filter(|_| ids.len() == 1),
            what,
            &detail,
            now,
        )?;
    }
    tx.commit().context("saving a report retry")
}

/// Drop items the service refused for good; their claims are given back (nothing was
/// recorded).
fn refuse(conn: &Connection, sink: &str, items: &[(i64, String)], now: i64) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    {
        for (id, reason) in items {
            let ip: Option<String> = tx
                .query_row("SELECT ip FROM report_queue WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()?;
            give_back(&tx, sink, *id)?;
            tx.execute("DELETE FROM report_queue WHERE id = ?1", [id])?;
            event(
                &tx,
                sink,
                ip.as_deref().and_then(crate::net::parse_ip),
                "refused",
                reason,
                now,
            )?;
        }
        bump(&tx, &key(sink, "refused_total"), items.len() as i64)?;
    }
    tx.commit().context("saving refused reports")
}

/// A [`ReportQueue`] on the store's connection: each write commits on its own, and the
/// delivery steps open their own transactions.
pub struct Standalone;

/// A [`ReportQueue`] inside a [`StoreTx`](super::StoreTx): everything is written in that
/// transaction, and nothing may open another.
pub struct InTransaction;

/// The report queue's tables, typed. `M` says whether the handle writes in a transaction of
/// its caller ([`InTransaction`]) or on its own ([`Standalone`]).
pub struct ReportQueue<'a, M = Standalone> {
    conn: &'a Connection,
    mode: PhantomData<M>,
}

impl Store {
    /// The report queue, on the store's connection.
    pub fn report_queue(&self) -> ReportQueue<'_> {
        ReportQueue {
            conn: &self.conn,
            mode: PhantomData,
        }
    }
}

impl<'a> ReportQueue<'a, InTransaction> {
    pub(super) fn in_transaction(conn: &'a Connection) -> Self {
        ReportQueue {
            conn,
            mode: PhantomData,
        }
    }
}

impl<M> ReportQueue<'_, M> {
    /// Create the tables if they are missing.
    pub fn ensure_schema(&self) -> Result<()> {
        ensure_schema(self.conn)
    }

    /// Whether the tables exist (a read-only view of a state written before reporting was on).
    pub fn has_tables(&self) -> Result<bool> {
        has_tables(self.conn)
    }

    /// Queue one offence for `sink`, merging into the address's waiting item if there is one.
    pub fn enqueue<D: QueueDetail>(
        &self,
        sink: &str,
        ip: IpAddr,
        first: i64,
        last: i64,
        detail: &D,
        now: i64,
    ) -> Result<()> {
        enqueue(self.conn, sink, ip, first, last, detail, now)
    }

    /// Items due now, oldest evidence first: retry time reached and, with an interval, the
    /// address not reported (or claimed) within it.
    pub fn due<D: QueueDetail>(
        &self,
        sink: &str,
        now: i64,
        interval: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Item<D>>> {
        due(self.conn, sink, now, interval, limit)
    }

    /// Whether `ip` has an item in the sink's queue.
    pub fn is_queued(&self, sink: &str, ip: IpAddr) -> Result<bool> {
        is_queued(self.conn, sink, ip)
    }

    /// Whether `ip` was reported (or claimed) within the interval.
    pub fn is_blocked(
        &self,
        sink: &str,
        ip: IpAddr,
        now: i64,
        interval: Option<u64>,
    ) -> Result<bool> {
        is_blocked(self.conn, sink, ip, now, interval)
    }

    /// Every item of a sink (for status output), oldest first, at most `limit`.
    pub fn items<D: QueueDetail>(&self, sink: &str, limit: usize) -> Result<Vec<Item<D>>> {
        items(self.conn, sink, limit)
    }

    pub fn stats(&self, sink: &str, now: i64, interval: Option<u64>) -> Result<Stats> {
        stats(self.conn, sink, now, interval)
    }

    pub fn day_use(&self, sink: &str, day: i64) -> Result<DayUse> {
        day_use(self.conn, sink, day)
    }

    /// A value of `report_state`.
    pub fn state_int(&self, key: &str) -> Result<Option<i64>> {
        state_int(self.conn, key)
    }

    pub fn set_state(&self, key: &str, value: i64) -> Result<()> {
        set_state(self.conn, key, value)
    }

    /// An event for `sipban report status` (errors and drops). `detail` must already be free
    /// of secrets.
    pub fn event(
        &self,
        sink: &str,
        ip: Option<IpAddr>,
        what: &str,
        detail: &str,
        now: i64,
    ) -> Result<()> {
        event(self.conn, sink, ip, what, detail, now)
    }

    /// The newest events, newest first.
    pub fn events(&self, limit: usize) -> Result<Vec<Event>> {
        events(self.conn, limit)
    }

    /// Drop a sink's items whose first evidence is older than `cutoff`; returns how many.
    pub fn expire(&self, sink: &str, cutoff: i64, now: i64) -> Result<usize> {
        expire(self.conn, sink, cutoff, now)
    }

    /// Keep at most `max` items of a sink, dropping those with the oldest evidence; returns
    /// how many were dropped.
    pub fn trim(&self, sink: &str, max: usize, now: i64) -> Result<usize> {
        trim(self.conn, sink, max, now)
    }

    /// Forget per-IP report times older than `before` (they no longer block anything).
    pub fn prune_sent(&self, sink: &str, before: i64) -> Result<()> {
        prune_sent(self.conn, sink, before)
    }
}

impl ReportQueue<'_, Standalone> {
    /// Before a request is sent: mark its items claimed, the addresses reported now (per-IP
    /// interval), and the request used against the day, in one committed transaction.
    pub fn claim(&self, sink: &str, ids: &[i64], now: i64, c: Claim) -> Result<()> {
        claim(self.conn, sink, ids, now, c)
    }

    /// The items were accepted: remove them and count them, in one transaction.
    pub fn delivered(&self, sink: &str, ids: &[i64], now: i64) -> Result<()> {
        delivered(self.conn, sink, ids, now)
    }

    /// Keep the items for a later attempt (see the module documentation), in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub fn retry(
        &self,
        sink: &str,
        ids: &[i64],
        now: i64,
        delay: &dyn Fn(u32) -> i64,
        reason: &str,
        release: bool,
    ) -> Result<()> {
        retry(self.conn, sink, ids, now, delay, reason, release)
    }

    /// Drop items the service refused for good, in one transaction.
    pub fn refuse(&self, sink: &str, items: &[(i64, String)], now: i64) -> Result<()> {
        refuse(self.conn, sink, items, now)
    }
}

impl<M> Clone for ReportQueue<'_, M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M> Copy for ReportQueue<'_, M> {}
