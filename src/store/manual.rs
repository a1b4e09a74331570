//! The tables of manual control (`sipban ban` / `sipban unban`), and the transaction that
//! applies queued requests.
//!
//! - `manual_unbans(net, at, holders)`: the remembered unbans, with the feeds that still listed
//!   the prefix then (JSON list of names).
//! - `manual_allowlist(net, added)`: the persistent allowlist entries of `unban --allow`.
//!
//! Both are created on the first write (`CREATE TABLE IF NOT EXISTS`); readers treat a missing
//! table as empty, so a read-only view of an older state works.
//!
//! The same manual state is also kept in a small text file beside the database,
//! [`LIST_FILE`] (`manual.list`), rewritten atomically after every change (ban, unban, allow, an
//! unban lifted), and read back only when the database is rebuilt after a loss or corruption,
//! so that what the admin decided by hand survives the database. Its format (also in the
//! README):
//!
//! ```text
//! # comment
//! ban <prefix> <banned at> <expires>        (Unix seconds)
//! unban <prefix> <unbanned at> <feeds>      (feeds that still listed it then, a JSON list)
//! allow <prefix> <added at>
//! ```

use super::Store;
use crate::net;
use anyhow::{Context, Result};
use ipnet::IpNet;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// The source name of manual bans (`pipeline::manual::SOURCE`).
pub const SOURCE: &str = "manual";
/// The text copy of the manual state, beside the database.
pub const LIST_FILE: &str = "manual.list";

/// Where `manual.list` lives for the state in `state_dir`.
pub fn list_path(state_dir: &std::path::Path) -> std::path::PathBuf {
    state_dir.join(LIST_FILE)
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS manual_unbans (
        net TEXT PRIMARY KEY,
        at INTEGER NOT NULL,
        holders TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS manual_allowlist (
        net TEXT PRIMARY KEY,
        added INTEGER NOT NULL
    );";

/// One unban: when, and the feeds that still listed the prefix then (they must drop it from
/// a download before a later listing counts as afresh).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unban {
    pub at: i64,
    pub holders: Vec<String>,
}

/// One manual request, as the state records it.
#[derive(Clone, Copy, Debug)]
pub enum ManualWrite<'a> {
    /// A mark of `source` on `net`, seen at `at`, until `expires`; lifts an unban and a manual
    /// allowlist entry of the same prefix.
    Ban {
        net: &'a IpNet,
        at: i64,
        expires: i64,
    },
    /// Every mark of `net` removed, an unban recorded with the feeds that still list it, and
    /// with `allow` a manual allowlist entry.
    Unban {
        net: &'a IpNet,
        at: i64,
        holders: &'a [String],
        allow: bool,
    },
}

pub(super) fn has_table(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

fn count(conn: &Connection, table: &str) -> u64 {
    if !has_table(conn, table).unwrap_or(false) {
        return 0;
    }
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|v| v.max(0) as u64)
    .unwrap_or(0)
}

impl Store {
    /// The remembered unbans (none without the table). Unreadable prefixes are skipped.
    pub fn manual_unbans(&self) -> Result<Vec<(IpNet, Unban)>> {
        let conn = &self.conn;
        let mut out = Vec::new();
        if !has_table(conn, "manual_unbans")? {
            return Ok(out);
        }
        let mut stmt = conn.prepare("SELECT net, at, holders FROM manual_unbans")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let text: String = r.get(0)?;
            let Ok(n) = net::parse_net(&text) else {
                continue;
            };
            let holders: String = r.get(2)?;
            out.push((
                n,
                Unban {
                    at: r.get(1)?,
                    holders: serde_json::from_str(&holders).unwrap_or_default(),
                },
            ));
        }
        Ok(out)
    }

    /// Persist changes to the unbans in one transaction: `lifted` are forgotten, `changed`
    /// get their new holders.
    pub fn save_manual_unbans(
        &mut self,
        lifted: &[IpNet],
        changed: &[(IpNet, &[String])],
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute_batch(SCHEMA)?;
        for n in lifted {
            tx.execute(
                "DELETE FROM manual_unbans WHERE net = ?1",
                [net::display_net(n)],
            )?;
        }
        for (n, holders) in changed {
            tx.execute(
                "UPDATE manual_unbans SET holders = ?2 WHERE net = ?1",
                params![net::display_net(n), serde_json::to_string(holders)?],
            )?;
        }
        tx.commit().context("saving manual unbans")?;
        self.write_manual_list()
    }

    /// The manual allowlist, in text order of the prefixes (empty without the table).
    pub fn manual_allowlist(&self) -> Result<Vec<IpNet>> {
        let conn = &self.conn;
        if !has_table(conn, "manual_allowlist")? {
            return Ok(Vec::new());
        }
        let mut stmt = conn.prepare("SELECT net FROM manual_allowlist ORDER BY net")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for r in rows {
            if let Ok(n) = net::parse_net(&r?) {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// How many unbans and manual allowlist entries are stored (0 for a missing table or an
    /// unreadable count).
    pub fn manual_counts(&self) -> (u64, u64) {
        (
            count(&self.conn, "manual_unbans"),
            count(&self.conn, "manual_allowlist"),
        )
    }

    /// Write manual requests in one transaction: bans as marks of `source`, unbans as
    /// tombstones (and allowlist entries); then keep at most `max_unbans` unbans, the newest.
    pub fn save_manual_requests(
        &mut self,
        source: &str,
        writes: &[ManualWrite<'_>],
        max_unbans: usize,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute_batch(SCHEMA)?;
        for w in writes {
            match *w {
                ManualWrite::Ban { net, at, expires } => {
                    let text = net::display_net(net);
                    tx.execute(
                        "INSERT INTO entries (net, source, first_seen, last_seen, expires)
                         VALUES (?1, ?2, ?3, ?3, ?4)
                         ON CONFLICT(net, source) DO UPDATE SET last_seen = ?3, expires = ?4",
                        params![text, source, at, expires],
                    )?;
                    tx.execute("DELETE FROM manual_unbans WHERE net = ?1", [&text])?;
                    tx.execute("DELETE FROM manual_allowlist WHERE net = ?1", [&text])?;
                }
                ManualWrite::Unban {
                    net,
                    at,
                    holders,
                    allow,
                } => {
                    let text = net::display_net(net);
                    tx.execute("DELETE FROM entries WHERE net = ?1", [&text])?;
                    tx.execute(
                        "INSERT INTO manual_unbans (net, at, holders) VALUES (?1, ?2, ?3)
                         ON CONFLICT(net) DO UPDATE SET at = ?2, holders = ?3",
                        params![text, at, serde_json::to_string(holders)?],
                    )?;
                    if allow {
                        tx.execute(
                            "INSERT INTO manual_allowlist (net, added) VALUES (?1, ?2)
                             ON CONFLICT(net) DO NOTHING",
                            params![text, at],
                        )?;
                    }
                }
            }
        }
        tx.execute(
            "DELETE FROM manual_unbans WHERE net NOT IN
               (SELECT net FROM manual_unbans ORDER BY at DESC LIMIT ?1)",
            [max_unbans as i64],
        )?;
        tx.commit().context("saving manual requests")?;
        self.write_manual_list()
    }

    fn list_file(&self) -> std::path::PathBuf {
        match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => list_path(d),
            _ => std::path::PathBuf::from(LIST_FILE),
        }
    }

    /// Rewrite `manual.list` from the database (atomically: temporary file and rename).
    pub fn write_manual_list(&self) -> Result<()> {
        let conn = &self.conn;
        let mut text = String::from(
            "# sipban manual.list: the manual bans, unbans and allowlist, rewritten after every change\n\
             # and read back only if state.db is lost. ban <prefix> <at> <expires> | unban <prefix> <at> <feeds> | allow <prefix> <added>\n",
        );
        let mut bans = conn.prepare(
            "SELECT net, last_seen, expires FROM entries WHERE source = ?1 ORDER BY net",
        )?;
        let rows = bans.query_map([SOURCE], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        for row in rows {
            let (n, at, expires) = row?;
            text.push_str(&format!("ban {n} {at} {expires}\n"));
        }
        for (n, u) in self.manual_unbans()? {
            text.push_str(&format!(
                "unban {} {} {}\n",
                net::display_net(&n),
                u.at,
                serde_json::to_string(&u.holders)?
            ));
        }
        if has_table(conn, "manual_allowlist")? {
            let mut allow = conn.prepare("SELECT net, added FROM manual_allowlist ORDER BY net")?;
            let rows =
                allow.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (n, added) = row?;
                text.push_str(&format!("allow {n} {added}\n"));
            }
        }
        crate::fsio::write_atomic(&self.list_file(), text.as_bytes())
    }

    /// Write `manual.list` when there is none yet (a state older than the file).
    pub fn ensure_manual_list(&self) -> Result<()> {
        if std::fs::symlink_metadata(self.list_file()).is_ok() {
            return Ok(());
        }
        self.write_manual_list()
    }

    /// Read `manual.list` back into the database (a rebuild after a loss): returns how many
    /// entries it held. Lines that cannot be read are skipped with a warning.
    pub(super) fn import_manual_list(&mut self) -> Result<usize> {
        let path = self.list_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let tx = self.conn.transaction()?;
        tx.execute_batch(SCHEMA)?;
        let mut n = 0;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let f: Vec<&str> = line.splitn(4, ' ').collect();
            let prefix = f.get(1).and_then(|t| net::parse_net(t).ok());
            let num = |k: usize| f.get(k).and_then(|t| t.parse::<i64>().ok());
            let done = match (f[0], prefix) {
                ("ban", Some(p)) => match (num(2), num(3)) {
                    (Some(at), Some(expires)) => tx.execute(
                        "INSERT INTO entries (net, source, first_seen, last_seen, expires)
                         VALUES (?1, ?2, ?3, ?3, ?4) ON CONFLICT(net, source) DO NOTHING",
                        params![net::display_net(&p), SOURCE, at, expires],
                    )?,
                    _ => 0,
                },
                ("unban", Some(p)) => match (num(2), f.get(3)) {
                    (Some(at), Some(holders))
                        if serde_json::from_str::<Vec<String>>(holders).is_ok() =>
                    {
                        tx.execute(
                            "INSERT INTO manual_unbans (net, at, holders) VALUES (?1, ?2, ?3)
                             ON CONFLICT(net) DO NOTHING",
                            params![net::display_net(&p), at, holders],
                        )?
                    }
                    _ => 0,
                },
                ("allow", Some(p)) => match num(2) {
                    Some(added) => tx.execute(
                        "INSERT INTO manual_allowlist (net, added) VALUES (?1, ?2)
                         ON CONFLICT(net) DO NOTHING",
                        params![net::display_net(&p), added],
                    )?,
                    None => 0,
                },
                _ => 0,
            };
            if done == 0 {
                tracing::warn!(
                    "{}:{}: skipping unreadable line `{line}`",
                    path.display(),
                    i + 1
                );
            }
            n += done;
        }
        tx.commit()
            .with_context(|| format!("saving what {} holds", path.display()))?;
        Ok(n)
    }
}
