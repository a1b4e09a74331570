//! APIBAN's own tables in the state database, and the transactions that make paging
//! resumable.
//!
//! - `apiban_state(key, value)`: the live cursor, the staging cursor of a full refresh in
//!   progress, and a few times (see the `K_*` keys).
//! - `apiban_staging(net, first_seen, last_seen)`: the addresses of a full refresh in progress.
//!
//! Every page is one transaction: its addresses become (or refresh) marks of source `apiban`
//! in `entries`, or rows of `apiban_staging`, together with the cursor that follows the page.
//! A run killed at any instant therefore leaves whole pages and the cursor after the last of
//! them, and the next run resumes there: no page is applied twice, none is lost.
//!
//! This module must never store the key, and never store `"none"` as a cursor (callers pass
//! only IDs that passed `source::apiban::api::valid_id`).

use super::Store;
use crate::net;
use anyhow::{Context, Result};
use ipnet::IpNet;
use rusqlite::{params, Connection, OptionalExtension};

/// The source name of APIBAN's marks in `entries` (re-exported as `source::apiban::SOURCE`).
pub const SOURCE: &str = "apiban";

/// The ID to send next in normal paging.
const K_CURSOR: &str = "cursor";
/// When the live listing was last started from the first ID (unix seconds).
const K_LIVE_SINCE: &str = "live_since";
/// The ID to send next in a full refresh in progress (absent when none is).
const K_STAGING_CURSOR: &str = "staging_cursor";
/// When the full refresh in progress started.
const K_STAGING_STARTED: &str = "staging_started";
/// When the last full refresh completed.
const K_LAST_REFRESH: &str = "last_refresh";
/// When the last request was sent (unix milliseconds), so back-to-back runs keep the pace.
const K_LAST_REQUEST_MS: &str = "last_request_ms";

/// What the tables say at the start of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub cursor: Option<String>,
    pub live_since: Option<i64>,
    pub staging_cursor: Option<String>,
    pub staging_started: Option<i64>,
    pub last_refresh: Option<i64>,
    pub last_request_ms: Option<i64>,
}

/// Create the tables if they are missing.
fn ensure_schema(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS apiban_state (
             key TEXT PRIMARY KEY,
             value NOT NULL
         );
         CREATE TABLE IF NOT EXISTS apiban_staging (
             net TEXT PRIMARY KEY,
             first_seen INTEGER NOT NULL,
             last_seen INTEGER NOT NULL
         ) WITHOUT ROWID;",
    )
    .context("creating the APIBAN tables")
}

fn has_tables(conn: &Connection) -> Result<bool> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'apiban_state'",
        [],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

fn get_text(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT CAST(value AS TEXT) FROM apiban_state WHERE key = ?1",
            [key],
            |r| r.get(0),
        )
        .optional()?)
}

fn get_int(conn: &Connection, key: &str) -> Result<Option<i64>> {
    Ok(get_text(conn, key)?.and_then(|v| v.parse().ok()))
}

fn put(conn: &Connection, key: &str, value: &dyn rusqlite::ToSql) -> Result<()> {
    conn.execute(
        "INSERT INTO apiban_state (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

fn delete(conn: &Connection, key: &str) -> Result<()> {
    conn.execute("DELETE FROM apiban_state WHERE key = ?1", [key])?;
    Ok(())
}

/// Read the state (all empty when the tables do not exist yet, as in a first dry run).
fn load(conn: &Connection) -> Result<State> {
    if !has_tables(conn).context("reading the APIBAN state")? {
        return Ok(State::default());
    }
    let s = State {
        cursor: get_text(conn, K_CURSOR)?,
        live_since: get_int(conn, K_LIVE_SINCE)?,
        staging_cursor: get_text(conn, K_STAGING_CURSOR)?,
        staging_started: get_int(conn, K_STAGING_STARTED)?,
        last_refresh: get_int(conn, K_LAST_REFRESH)?,
        last_request_ms: get_int(conn, K_LAST_REQUEST_MS)?,
    };
    Ok(s)
}

/// Remember when a request was sent.
fn record_request(conn: &Connection, unix_ms: i64) -> Result<()> {
    put(conn, K_LAST_REQUEST_MS, &unix_ms).context("saving the APIBAN request time")
}

/// The apply lock for a commit that changes `entries`: a manual ban or a real-time pass may be
/// between loading the entries and writing them back, and must not lose this page (or this
/// page their change). In-memory databases (tests) have no directory and need no lock.
fn entries_lock(conn: &Connection) -> Result<Option<crate::lock::ApplyLock>> {
    match conn.path().filter(|p| !p.is_empty()) {
        Some(db) => crate::lock::apply_for_db(std::path::Path::new(db))
            .map(Some)
            .context("waiting to commit an APIBAN page"),
        None => Ok(None),
    }
}

/// Apply one page of normal paging: upsert the marks and move the cursor, in one transaction.
/// Marks keep their `first_seen`; `last_seen` and `expires` only move forward.
fn apply_page(conn: &mut Connection, nets: &[IpNet], next: &str, now: i64, ttl: u32) -> Result<()> {
    let _lock = entries_lock(conn)?;
    let tx = conn.transaction()?;
    {
        let mut up = tx.prepare(
            "INSERT INTO entries (net, source, first_seen, last_seen, expires)
             VALUES (?1, ?2, ?3, ?3, ?4)
             ON CONFLICT(net, source) DO UPDATE SET
                 last_seen = max(last_seen, excluded.last_seen),
                 expires = max(expires, excluded.expires)",
        )?;
        let expires = now.saturating_add(i64::from(ttl));
        for n in nets {
            up.execute(params![net::display_net(n), SOURCE, now, expires])?;
        }
        put(&tx, K_CURSOR, &next)?;
        if get_int(&tx, K_LIVE_SINCE)?.is_none() {
            put(&tx, K_LIVE_SINCE, &now)?;
        }
    }
    tx.commit().context("saving an APIBAN page")
}

/// Stage one page of a full refresh: upsert the staged rows and move the staging cursor, in
/// one transaction. The live entries are not touched.
fn stage_page(conn: &mut Connection, nets: &[IpNet], next: &str, now: i64) -> Result<()> {
    let tx = conn.transaction()?;
    {
        let mut up = tx.prepare(
            "INSERT INTO apiban_staging (net, first_seen, last_seen) VALUES (?1, ?2, ?2)
             ON CONFLICT(net) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)",
        )?;
        for n in nets {
            up.execute(params![net::display_net(n), now])?;
        }
        put(&tx, K_STAGING_CURSOR, &next)?;
        if get_int(&tx, K_STAGING_STARTED)?.is_none() {
            put(&tx, K_STAGING_STARTED, &now)?;
        }
    }
    tx.commit().context("saving a staged APIBAN page")
}

/// Start a full refresh that has fetched nothing yet (so an empty listing can still complete).
fn start_refresh(conn: &Connection, now: i64) -> Result<()> {
    put(conn, K_STAGING_STARTED, &now).context("starting an APIBAN full refresh")
}

/// What a completed full refresh did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Swap {
    /// APIBAN entries after the swap.
    pub entries: usize,
    /// Old APIBAN entries that APIBAN no longer lists, removed.
    pub dropped: usize,
}

/// Complete a full refresh in one transaction: the staged addresses replace every APIBAN mark
/// in `entries` (an address listed before and again keeps its `first_seen`), the staging
/// cursor becomes the live cursor, and the staging area is emptied.
fn finish_refresh(conn: &mut Connection, now: i64, ttl: u32) -> Result<Swap> {
    let _lock = entries_lock(conn)?;
    let tx = conn.transaction()?;
    let swap;
    {
        let dropped = tx.execute(
            "DELETE FROM entries WHERE source = ?1
                 AND net NOT IN (SELECT net FROM apiban_staging)",
            [SOURCE],
        )?;
        tx.execute(
            "INSERT INTO entries (net, source, first_seen, last_seen, expires)
             SELECT net, ?1, first_seen, last_seen, last_seen + ?2 FROM apiban_staging WHERE 1
             ON CONFLICT(net, source) DO UPDATE SET
                 first_seen = min(first_seen, excluded.first_seen),
                 last_seen = max(last_seen, excluded.last_seen),
                 expires = max(expires, excluded.expires)",
            params![SOURCE, i64::from(ttl)],
        )?;
        let entries: i64 = tx.query_row(
            "SELECT COUNT(*) FROM entries WHERE source = ?1",
            [SOURCE],
            |r| r.get(0),
        )?;
        match get_text(&tx, K_STAGING_CURSOR)? {
            Some(c) => put(&tx, K_CURSOR, &c)?,
            // A refresh whose first answer was "no new bans": APIBAN lists nothing.
            None => delete(&tx, K_CURSOR)?,
        }
        let started = get_int(&tx, K_STAGING_STARTED)?.unwrap_or(now);
        put(&tx, K_LIVE_SINCE, &started)?;
        put(&tx, K_LAST_REFRESH, &now)?;
        delete(&tx, K_STAGING_CURSOR)?;
        delete(&tx, K_STAGING_STARTED)?;
        tx.execute("DELETE FROM apiban_staging", [])?;
        swap = Swap {
            entries: entries.max(0) as usize,
            dropped,
        };
    }
    tx.commit().context("completing the APIBAN full refresh")?;
    Ok(swap)
}

/// APIBAN's tables, through the store.
impl Store {
    /// Create APIBAN's tables if they are missing.
    pub fn apiban_ensure_schema(&self) -> Result<()> {
        ensure_schema(&self.conn)
    }

    /// Read APIBAN's state (all empty when the tables do not exist yet, as in a first dry run).
    pub fn apiban_state(&self) -> Result<State> {
        load(&self.conn)
    }

    /// Remember when a request was sent (unix milliseconds).
    pub fn apiban_record_request(&self, unix_ms: i64) -> Result<()> {
        record_request(&self.conn, unix_ms)
    }

    /// Apply one page of normal paging, in one transaction under the apply lock.
    pub fn apiban_apply_page(
        &mut self,
        nets: &[IpNet],
        next: &str,
        now: i64,
        ttl: u32,
    ) -> Result<()> {
        apply_page(&mut self.conn, nets, next, now, ttl)
    }

    /// Stage one page of a full refresh, in one transaction.
    pub fn apiban_stage_page(&mut self, nets: &[IpNet], next: &str, now: i64) -> Result<()> {
        stage_page(&mut self.conn, nets, next, now)
    }

    /// Start a full refresh that has fetched nothing yet.
    pub fn apiban_start_refresh(&self, now: i64) -> Result<()> {
        start_refresh(&self.conn, now)
    }

    /// Complete a full refresh, in one transaction under the apply lock.
    pub fn apiban_finish_refresh(&mut self, now: i64, ttl: u32) -> Result<Swap> {
        finish_refresh(&mut self.conn, now, ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| net::parse_net(s).unwrap()).collect()
    }

    fn marks(conn: &Connection) -> Vec<(String, i64, i64, i64)> {
        let mut st = conn
            .prepare("SELECT net, first_seen, last_seen, expires FROM entries WHERE source = 'apiban' ORDER BY net")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn pages_refresh_marks_and_move_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let conn = &mut store.conn;
        ensure_schema(conn).unwrap();
        assert_eq!(load(conn).unwrap(), State::default());
        apply_page(conn, &nets(&["198.18.0.1", "198.18.0.2"]), "200", 1000, 10).unwrap();
        apply_page(conn, &nets(&["198.18.0.2"]), "300", 2000, 10).unwrap();
        let s = load(conn).unwrap();
        assert_eq!(s.cursor.as_deref(), Some("300"));
        assert_eq!(s.live_since, Some(1000));
        assert_eq!(
            marks(conn),
            [
                ("198.18.0.1".into(), 1000, 1000, 1010),
                ("198.18.0.2".into(), 1000, 2000, 2010)
            ]
        );
    }

    #[test]
    fn a_refresh_replaces_marks_only_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let conn = &mut store.conn;
        ensure_schema(conn).unwrap();
        apply_page(conn, &nets(&["198.18.0.1", "198.18.0.2"]), "200", 1000, 10).unwrap();
        let before = marks(conn);
        stage_page(conn, &nets(&["198.18.0.2", "198.18.0.3"]), "900", 5000).unwrap();
        assert_eq!(marks(conn), before, "staging must not touch the live marks");
        let s = load(conn).unwrap();
        assert_eq!(s.cursor.as_deref(), Some("200"));
        assert_eq!(s.staging_cursor.as_deref(), Some("900"));
        let swap = finish_refresh(conn, 6000, 10).unwrap();
        assert_eq!(
            swap,
            Swap {
                entries: 2,
                dropped: 1
            }
        );
        assert_eq!(
            marks(conn),
            [
                ("198.18.0.2".into(), 1000, 5000, 5010),
                ("198.18.0.3".into(), 5000, 5000, 5010)
            ]
        );
        let s = load(conn).unwrap();
        assert_eq!(s.cursor.as_deref(), Some("900"));
        assert_eq!(s.staging_cursor, None);
        assert_eq!(s.live_since, Some(5000));
        assert_eq!(s.last_refresh, Some(6000));
    }
}
