//! The state store: one SQLite database in `state_dir`.
//!
//! This module owns every table, migration and transaction of the state; nothing else touches
//! SQLite. The connection never leaves it: other modules call typed methods on [`Store`] (or on
//! the typed handles it hands out, such as [`StoreTx`] inside [`Store::transaction`] and the
//! report queue's [`report_queue::ReportQueue`]).
//!
//! It holds entries with provenance, per-feed metadata (ETag, Last-Modified, last success, last
//! good count), run history, and opaque per-source blobs (detector state, cursors) (this file);
//! manual unbans and the manual allowlist ([`manual`]); APIBAN's cursors and refresh staging
//! ([`apiban`]); the durable report queue ([`report_queue`]); the real-time pass's detections
//! ([`detections`]). A run writes everything in one transaction at its end, so a run killed at
//! any instant leaves either the old state or the new one, and the next run converges from
//! either.
//!
//! The database uses a rollback journal (not WAL) so that a non-root `--dry-run` can read it
//! with a read-only connection. This module must never hold secrets: API keys are not stored.

pub mod apiban;
pub mod detections;
pub mod health;
pub mod manual;
pub mod report_queue;

use crate::model::{Entry, Mark};
use crate::net;
use anyhow::{Context, Result};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const DB_FILE: &str = "state.db";
const SCHEMA_VERSION: i64 = 2;
/// How many runs `runs` keeps.
const KEEP_RUNS: i64 = 200;

/// Per-feed metadata kept in the state store between runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FeedMeta {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Unix seconds of the last download attempt (success or not).
    pub last_attempt: Option<i64>,
    pub last_success: Option<i64>,
    /// Number of entries in the last good listing (the shrink guard compares against it).
    pub last_good_count: Option<u64>,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    /// Size in bytes of the last good copy as written (`feeds/<name>.list`): with
    /// `cache_digest`, what the copy must still be before a conditional request may be sent.
    pub cache_size: Option<u64>,
    /// SHA-256 of the last good copy as written, in lowercase hex.
    pub cache_digest: Option<String>,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// One row of run history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRecord {
    pub started: i64,
    pub finished: i64,
    /// `ok`, `partial` (some sources failed) or `failed`.
    pub outcome: String,
    /// The run summary as JSON.
    pub summary: String,
}

/// The database is never opened through a symbolic link: one planted at its name (by anyone
/// who could once write the state directory) would have a root process create or rewrite the
/// file it points at. SQLite refuses a link anywhere in the name it opens; [`unlinked`] hands
/// it the state directory's real path, so a directory the admin linked elsewhere still works.
const NOFOLLOW: OpenFlags = OpenFlags::SQLITE_OPEN_NOFOLLOW;

/// `path` with its directory resolved to its real location, refused when `path` itself is a
/// symbolic link.
fn unlinked(path: &Path) -> Result<PathBuf> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        anyhow::bail!(
            "{} is a symbolic link; sipban never opens its state through a link (remove it, and check who else can write {})",
            path.display(),
            path.parent().unwrap_or(path).display()
        );
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(path.to_path_buf());
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let real = std::fs::canonicalize(dir)
        .with_context(|| format!("resolving the state directory {}", dir.display()))?;
    Ok(real.join(name))
}

impl Store {
    pub fn db_path(state_dir: &Path) -> PathBuf {
        state_dir.join(DB_FILE)
    }

    /// Open (creating if needed) the database for a real run, with an integrity check. A
    /// corrupt, truncated or zero-length database is moved aside (see [`health`]) and a fresh
    /// one is created, with the manual bans, unbans and allowlist read back from `manual.list`
    /// and a [`health::Rebuilt`] marker that the next sync acts on (it takes in the live kernel
    /// sets) and `status` shows. A missing database beside a `manual.list` is rebuilt the same
    /// way (nothing to move aside). Said loudly on stderr and in the log.
    pub fn open(state_dir: &Path) -> Result<Store> {
        crate::fsio::create_dir(state_dir)
            .with_context(|| format!("creating state directory {}", state_dir.display()))?;
        let path = Self::db_path(state_dir);
        let inode = |p: &Path| {
            use std::os::unix::fs::MetadataExt;
            std::fs::symlink_metadata(p)
                .ok()
                .map(|m| (m.dev(), m.ino()))
        };
        let checked = inode(&path);
        let existed = checked.is_some();
        let now = crate::clock::unix_now();
        match Self::open_checked(&path) {
            Ok(store) if existed || !manual::list_path(state_dir).exists() => Ok(store),
            Ok(mut store) => {
                let reason = format!(
                    "{} was missing while {} was there",
                    path.display(),
                    manual::list_path(state_dir).display()
                );
                store.rebuild(reason, None, now)?;
                Ok(store)
            }
            Err(e) => {
                let Some(health::Fault {
                    kind: health::FaultKind::Corrupt,
                    ..
                }) = health::fault(&e, &path)
                else {
                    return Err(e);
                };
                // Another writer (a ban beside a sync) already moved it aside and rebuilt it.
                if inode(&path) != checked {
                    return Self::open_checked(&path);
                }
                let reason = format!("{:#}", e);
                let moved = health::move_aside(&path, now).with_context(|| {
                    format!("moving the corrupt {} aside ({reason})", path.display())
                })?;
                let mut store = Self::open_checked(&path)?;
                store.rebuild(reason, Some(moved), now)?;
                Ok(store)
            }
        }
    }

    /// Open read-write, check integrity, migrate.
    fn open_checked(path: &Path) -> Result<Store> {
        if health::is_empty_file(path) {
            return Err(anyhow::Error::new(health::Corrupt(format!(
                "{} is empty (zero bytes)",
                path.display()
            ))));
        }
        let conn = Connection::open_with_flags(unlinked(path)?, OpenFlags::default() | NOFOLLOW)
            .with_context(|| format!("opening {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(
            "PRAGMA journal_mode = DELETE;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;",
        )
        .with_context(|| format!("configuring {}", path.display()))?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.verify()?;
        store.migrate()?;
        Ok(store)
    }

    /// `PRAGMA quick_check` (see [`health::check`]): `Err` naming the corruption, classified
    /// as [`health::FaultKind::Corrupt`] by [`health::fault`].
    pub fn verify(&self) -> Result<()> {
        let checked = health::check(&self.conn)
            .with_context(|| format!("checking the integrity of {}", self.path.display()))?;
        match checked {
            None => Ok(()),
            Some(verdict) => Err(anyhow::Error::new(health::Corrupt(format!(
                "{} failed its integrity check: {verdict}",
                self.path.display()
            )))),
        }
    }

    /// Fill a fresh database after a loss: `manual.list` read back, the marker written, and
    /// both said loudly.
    fn rebuild(&mut self, reason: String, moved: Option<PathBuf>, now: i64) -> Result<()> {
        let restored = self.import_manual_list()?;
        let marker = health::Rebuilt {
            at: now,
            reason,
            moved_to: moved.map(|p| p.display().to_string()),
            manual_restored: restored,
            kernel_recovered: false,
            kernel_entries: 0,
        };
        let text = format!(
            "the state database {} could not be trusted ({}){}; a fresh one was created with {restored} manual entries from {}; the next sync takes in the live kernel sets and downloads every feed",
            self.path.display(),
            marker.reason,
            marker
                .moved_to
                .as_deref()
                .map(|p| format!(" and was moved aside to {p}"))
                .unwrap_or_default(),
            manual::LIST_FILE,
        );
        // On stderr (warnings always are) and so in the journal.
        tracing::warn!("{text}");
        self.put_blob(health::REBUILT_KEY, &marker.encode())
    }

    /// The rebuild marker, when the database was rebuilt after a loss (see [`health`]).
    pub fn rebuilt(&self) -> Result<Option<health::Rebuilt>> {
        Ok(self
            .blob(health::REBUILT_KEY)?
            .and_then(|b| health::Rebuilt::decode(&b)))
    }

    /// Open an existing database read-only (for `--dry-run`, `list`, `explain`). `Ok(None)` when
    /// there is no database yet.
    pub fn open_read_only(state_dir: &Path) -> Result<Option<Store>> {
        let path = Self::db_path(state_dir);
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            // Not "no state": permission denied (a non-root view of a 0700 directory) is said.
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("reading {}", path.display())))
            }
            Ok(_) if health::is_empty_file(&path) => {
                return Err(anyhow::Error::new(health::Corrupt(format!(
                    "{} is empty (zero bytes)",
                    path.display()
                ))))
            }
            Ok(_) => {}
        }
        let conn = Connection::open_with_flags(
            unlinked(&path)?,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | NOFOLLOW,
        )
        .with_context(|| format!("opening {} read-only", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mut store = Store { conn, path };
        let version: i64 = match store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
        {
            Ok(v) => v,
            Err(e) if is_read_only_recovery(&e) => {
                // A run was killed in the middle of its commit and left a hot journal, which
                // only a writer may roll back. Rolling it back restores the last committed
                // state (it changes no content), so do it when we may write; otherwise say
                // how to recover.
                let recovery = || {
                    format!(
                        "{} needs recovery after an interrupted run; run `sipban sync` once as root",
                        store.path.display()
                    )
                };
                let rw = Connection::open_with_flags(
                    unlinked(&store.path)?,
                    OpenFlags::default() | NOFOLLOW,
                )
                .with_context(recovery)?;
                rw.busy_timeout(std::time::Duration::from_secs(10))?;
                let v = rw
                    .query_row("PRAGMA user_version", [], |r| r.get(0))
                    .with_context(recovery)?;
                tracing::info!(
                    "rolled back the journal of an interrupted run in {}",
                    store.path.display()
                );
                store.conn = rw;
                v
            }
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context(format!("reading {}", store.path.display()))
                )
            }
        };
        if version == 0 {
            return Ok(None);
        }
        if version > SCHEMA_VERSION {
            anyhow::bail!(
                "{} was written by a newer sipban (schema {version}, this one knows {SCHEMA_VERSION})",
                store.path.display()
            );
        }
        Ok(Some(store))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw connection, for integration tests that inspect tables directly. Not for the
    /// program: everything it needs is a typed method.
    #[doc(hidden)]
    pub fn raw_connection_for_tests(&self) -> &Connection {
        &self.conn
    }

    /// Run `f` in one transaction, committed when it returns `Ok` (rolled back otherwise).
    pub fn transaction<T>(&mut self, f: impl FnOnce(&StoreTx<'_>) -> Result<T>) -> Result<T> {
        let tx = self.conn.transaction()?;
        let out = f(&StoreTx { tx: &tx })?;
        tx.commit()
            .with_context(|| format!("committing to {}", self.path.display()))?;
        Ok(out)
    }

    /// How many runs the history holds.
    pub fn run_count(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM runs", [], |r| r.get::<_, i64>(0))
            .map(|v| v.max(0) as u64)?)
    }

    /// The newest `limit` runs, newest first: `(finished, summary JSON)`.
    pub fn recent_runs(&self, limit: usize) -> Result<Vec<(i64, String)>> {
        let mut q = self
            .conn
            .prepare("SELECT finished, summary FROM runs ORDER BY id DESC LIMIT ?1")?;
        let rows = q.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn migrate(&self) -> Result<()> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            anyhow::bail!(
                "{} was written by a newer sipban (schema {version}, this one knows {SCHEMA_VERSION})",
                self.path.display()
            );
        }
        if version < 1 {
            self.conn
                .execute_batch(
                    "BEGIN;
                     CREATE TABLE IF NOT EXISTS entries (
                         net TEXT NOT NULL,
                         source TEXT NOT NULL,
                         first_seen INTEGER NOT NULL,
                         last_seen INTEGER NOT NULL,
                         expires INTEGER NOT NULL,
                         PRIMARY KEY (net, source)
                     ) WITHOUT ROWID;
                     CREATE TABLE IF NOT EXISTS feeds (
                         name TEXT PRIMARY KEY,
                         etag TEXT,
                         last_modified TEXT,
                         last_attempt INTEGER,
                         last_success INTEGER,
                         last_good_count INTEGER,
                         consecutive_failures INTEGER NOT NULL DEFAULT 0,
                         last_error TEXT
                     );
                     CREATE TABLE IF NOT EXISTS runs (
                         id INTEGER PRIMARY KEY AUTOINCREMENT,
                         started INTEGER NOT NULL,
                         finished INTEGER NOT NULL,
                         outcome TEXT NOT NULL,
                         summary TEXT NOT NULL
                     );
                     CREATE TABLE IF NOT EXISTS blobs (
                         key TEXT PRIMARY KEY,
                         value BLOB NOT NULL
                     );
                                          PRAGMA user_version = 1;
                     COMMIT;",
                )
                .with_context(|| format!("creating the schema in {}", self.path.display()))?;
        }
        if version < 2 {
            // Complete feed listings are stored packed, one blob per feed (see `feed_blob`):
            // loading and saving 65,536 rows took ~40 + ~80 ms, a blob takes a few.
            self.conn
                .execute_batch(
                    "BEGIN;
                     CREATE TABLE IF NOT EXISTS feed_entries (
                         source TEXT PRIMARY KEY,
                         last_seen INTEGER NOT NULL,
                         expires INTEGER NOT NULL,
                         data BLOB NOT NULL
                     );
                     PRAGMA user_version = 2;
                     COMMIT;",
                )
                .with_context(|| format!("upgrading the schema in {}", self.path.display()))?;
        }
        self.add_cache_columns()?;
        Ok(())
    }

    /// The last good copy's size and digest, kept with the validators (added after schema 2).
    /// Added when missing rather than by a schema version, so an older sipban still opens the
    /// database (it reads the columns it knows).
    fn add_cache_columns(&self) -> Result<()> {
        if !self.has_cache_columns()? {
            self.conn
                .execute_batch(
                    "BEGIN;
                     ALTER TABLE feeds ADD COLUMN cache_size INTEGER;
                     ALTER TABLE feeds ADD COLUMN cache_digest TEXT;
                     COMMIT;",
                )
                .with_context(|| format!("upgrading the schema in {}", self.path.display()))?;
        }
        Ok(())
    }

    /// All entries. `sources` maps source names to the indexes decide uses; marks of sources
    /// not in the map get index `u16::MAX`, which decide drops and counts.
    pub fn load_entries(&self, sources: &HashMap<String, u16>) -> Result<Vec<Entry>> {
        let mut stmt = self.conn.prepare(
            "SELECT net, source, first_seen, last_seen, expires FROM entries ORDER BY net",
        )?;
        let mut rows = stmt.query([])?;
        let mut out: Vec<Entry> = Vec::new();
        let mut by_net: HashMap<ipnet::IpNet, usize> = HashMap::new();
        while let Some(row) = rows.next()? {
            let text: String = row.get(0)?;
            let Ok(netv) = net::parse_net(&text) else {
                tracing::warn!("state: skipping unreadable entry `{text}`");
                continue;
            };
            let source: String = row.get(1)?;
            let mark = Mark {
                source: sources.get(&source).copied().unwrap_or(u16::MAX),
                first_seen: row.get(2)?,
                last_seen: row.get(3)?,
                expires: row.get(4)?,
            };
            match by_net.get(&netv) {
                Some(&i) => out[i].marks.push(mark),
                None => {
                    by_net.insert(netv, out.len());
                    out.push(Entry {
                        net: netv,
                        marks: smallvec::smallvec![mark],
                    });
                }
            }
        }
        drop(rows);
        // In prefix order (rows come in text order), so decide need not sort 65,536 entries:
        // the packed listings below are stored in prefix order and merged in.
        out.sort_unstable_by_key(|e| net::sort_key(&e.net));
        // Packed feed listings. A prefix may also appear in the rows above, as a separate
        // entry: decide joins entries of the same prefix.
        if self.has_packed_listings()? {
            let mut stmt = self
                .conn
                .prepare("SELECT source, last_seen, expires, data FROM feed_entries")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let source: String = row.get(0)?;
                let index = sources.get(&source).copied().unwrap_or(u16::MAX);
                // Borrowed from SQLite's row buffer: no copy of the blob.
                let data = row.get_ref(3)?.as_blob()?;
                let mut listing = Vec::new();
                let decoded =
                    feed_blob::decode(data, index, row.get(1)?, row.get(2)?, &mut listing);
                if decoded.is_ok() {
                    out = merge_in_order(out, listing);
                }
                if let Err(e) = decoded {
                    tracing::warn!(
                        "state: the stored listing of {source} is unreadable ({e}); it is dropped"
                    );
                }
            }
        }
        Ok(out)
    }

    /// Whether the schema has the packed listings' table (databases older than version 2
    /// opened read-only do not).
    fn has_packed_listings(&self) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'feed_entries'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)?)
    }

    /// For each of `nets`, the latest expiry of any stored mark on exactly that prefix, rows
    /// and packed feed listings alike (`None` where nothing is stored). The daemon's fast path
    /// re-adds an address with this, so that it never shortens a ban a feed holds longer.
    pub fn longest_expiries(&self, nets: &[ipnet::IpNet]) -> Result<Vec<Option<i64>>> {
        let mut out: Vec<Option<i64>> = vec![None; nets.len()];
        if nets.is_empty() {
            return Ok(out);
        }
        let mut rows = self
            .conn
            .prepare("SELECT MAX(expires) FROM entries WHERE net = ?1")?;
        for (slot, n) in out.iter_mut().zip(nets) {
            *slot = rows.query_row([net::display_net(n)], |r| r.get::<_, Option<i64>>(0))?;
        }
        if !self.has_packed_listings()? {
            return Ok(out);
        }
        let mut packs = self
            .conn
            .prepare("SELECT source, last_seen, expires, data FROM feed_entries")?;
        let mut found = packs.query([])?;
        while let Some(row) = found.next()? {
            let mut listing = Vec::new();
            let data = row.get_ref(3)?.as_blob()?;
            if let Err(e) = feed_blob::decode(data, 0, row.get(1)?, row.get(2)?, &mut listing) {
                let source: String = row.get(0)?;
                tracing::warn!("state: the stored listing of {source} is unreadable ({e})");
                continue;
            }
            // Listings are stored in prefix order; sort one that is not, to search it.
            if !listing.is_sorted_by(|a, b| net::cmp_net(&a.net, &b.net).is_le()) {
                listing.sort_unstable_by(|a, b| net::cmp_net(&a.net, &b.net));
            }
            for (slot, n) in out.iter_mut().zip(nets) {
                if let Ok(i) = listing.binary_search_by(|e| net::cmp_net(&e.net, n)) {
                    let expires = listing[i].expires();
                    *slot = Some(slot.map_or(expires, |s| s.max(expires)));
                }
            }
        }
        Ok(out)
    }

    /// Whether `feeds` has the last good copy's size and digest (a database opened read-only
    /// may predate them).
    fn has_cache_columns(&self) -> Result<bool> {
        let mut stmt = self
            .conn
            .prepare("SELECT 1 FROM pragma_table_info('feeds') WHERE name = 'cache_digest'")?;
        Ok(stmt.exists([])?)
    }

    pub fn feed_metas(&self) -> Result<HashMap<String, FeedMeta>> {
        let cache = if self.has_cache_columns()? {
            "cache_size, cache_digest"
        } else {
            "NULL, NULL"
        };
        let mut stmt = self.conn.prepare(&format!(
            "SELECT name, etag, last_modified, last_attempt, last_success, last_good_count,
                    consecutive_failures, last_error, {cache} FROM feeds"
        ))?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                FeedMeta {
                    etag: r.get(1)?,
                    last_modified: r.get(2)?,
                    last_attempt: r.get(3)?,
                    last_success: r.get(4)?,
                    last_good_count: r.get::<_, Option<i64>>(5)?.map(|v| v.max(0) as u64),
                    consecutive_failures: r.get::<_, i64>(6)?.clamp(0, i64::from(u32::MAX)) as u32,
                    last_error: r.get(7)?,
                    cache_size: r.get::<_, Option<i64>>(8)?.map(|v| v.max(0) as u64),
                    cache_digest: r.get(9)?,
                },
            ))
        })?;
        let mut out = HashMap::new();
        for row in rows {
            let (name, meta) = row?;
            out.insert(name, meta);
        }
        Ok(out)
    }

    /// Where flag `name` lives: a file beside the database, `<db>.<name>`.
    fn flag_path(&self, name: &str) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".");
        p.push(name);
        PathBuf::from(p)
    }

    /// Raise flag `name`: a file whose existence is the value, written without fsync. It is
    /// cheap (no transaction, no fsync: on an SD card each costs tens of milliseconds) and
    /// outlives a killed process, not a power loss; so it is only for facts that a reboot makes
    /// moot anyway. It holds one byte, so that on a full disk raising it fails (no space), as a
    /// transaction would.
    pub fn set_flag(&self, name: &str) -> Result<()> {
        let path = self.flag_path(name);
        std::fs::write(&path, b"1").with_context(|| format!("cannot write {}", path.display()))
    }

    /// Whether flag `name` is raised.
    pub fn flag(&self, name: &str) -> Result<bool> {
        let path = self.flag_path(name);
        path.try_exists()
            .with_context(|| format!("cannot read {}", path.display()))
    }

    /// Lower flag `name` (a flag already down is fine).
    pub fn clear_flag(&self, name: &str) -> Result<()> {
        let path = self.flag_path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }

    pub fn blob(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM blobs WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Write one blob in its own transaction (for markers that must be durable before the
    /// run goes on, like "an apply is under way").
    pub fn put_blob(&mut self, key: &str, value: &[u8]) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO blobs (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
                params![key, value],
            )
            .with_context(|| format!("writing {key} to {}", self.path.display()))?;
        Ok(())
    }

    pub fn last_run(&self) -> Result<Option<RunRecord>> {
        Ok(self
            .conn
            .query_row(
                "SELECT started, finished, outcome, summary FROM runs ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(RunRecord {
                        started: r.get(0)?,
                        finished: r.get(1)?,
                        outcome: r.get(2)?,
                        summary: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// Write the outcome of a run in one transaction: entries (replacing all), feed metadata,
    /// blobs and the run record. `source_names[i]` names source index `i`.
    pub fn commit_run(&mut self, commit: &RunCommit<'_>) -> Result<()> {
        self.commit_run_with(commit, |_| Ok(()))
    }

    /// [`Store::commit_run`], with `extra` writing through the typed handle of the same
    /// transaction (the report queue: detections commit together with the log cursors that
    /// found them).
    pub fn commit_run_with(
        &mut self,
        commit: &RunCommit<'_>,
        extra: impl FnOnce(&StoreTx<'_>) -> Result<()>,
    ) -> Result<()> {
        // Packed sources: one blob each, built in the entries' (prefix) order, after a first
        // pass that learns each one's shape.
        let mut shapes: Vec<Option<feed_blob::Shape>> = commit
            .packed
            .iter()
            .map(|&p| p.then(feed_blob::Shape::default))
            .collect();
        for e in commit.entries {
            for m in &e.marks {
                if let Some(Some(shape)) = shapes.get_mut(m.source as usize) {
                    shape.see(m);
                }
            }
        }
        let mut packs: Vec<Option<feed_blob::Builder>> = shapes
            .into_iter()
            .map(|s| s.filter(|s| !s.is_empty()).map(feed_blob::Builder::new))
            .collect();
        let tx = self.conn.transaction()?;
        {
            tx.execute("DELETE FROM entries", [])?;
            let mut ins = tx.prepare(
                "INSERT INTO entries (net, source, first_seen, last_seen, expires) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut text = String::new();
            for e in commit.entries {
                text.clear();
                for m in &e.marks {
                    let Some(source) = commit.source_names.get(m.source as usize) else {
                        continue;
                    };
                    if let Some(Some(pack)) = packs.get_mut(m.source as usize) {
                        pack.push(&e.net, m);
                        continue;
                    }
                    if text.is_empty() {
                        text = net::display_net(&e.net);
                    }
                    ins.execute(params![text, source, m.first_seen, m.last_seen, m.expires])?;
                }
            }
            // Rewrite a feed's blob only when its listing changed; a listing refreshed with the
            // same addresses only moves its two timestamps.
            let mut read = tx.prepare("SELECT data FROM feed_entries WHERE source = ?1")?;
            let mut put = tx.prepare(
                "INSERT INTO feed_entries (source, last_seen, expires, data) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(source) DO UPDATE SET last_seen = ?2, expires = ?3, data = ?4",
            )?;
            let mut touch = tx.prepare(
                "UPDATE feed_entries SET last_seen = ?2, expires = ?3 WHERE source = ?1",
            )?;
            let mut kept: Vec<&str> = Vec::new();
            for (i, pack) in packs.into_iter().enumerate() {
                let (Some(pack), Some(source)) = (pack, commit.source_names.get(i)) else {
                    continue;
                };
                let (last_seen, expires, data) = pack.finish();
                let old: Option<Vec<u8>> = read.query_row([source], |r| r.get(0)).optional()?;
                if old.as_deref() == Some(data.as_slice()) {
                    touch.execute(params![source, last_seen, expires])?;
                } else {
                    put.execute(params![source, last_seen, expires, data])?;
                }
                kept.push(source);
            }
            let mut stale = tx.prepare("SELECT source FROM feed_entries")?;
            let all: Vec<String> = stale
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for s in all.iter().filter(|s| !kept.contains(&s.as_str())) {
                tx.execute("DELETE FROM feed_entries WHERE source = ?1", [s])?;
            }
            let mut feed = tx.prepare(
                "INSERT INTO feeds (name, etag, last_modified, last_attempt, last_success, last_good_count,
                                    consecutive_failures, last_error, cache_size, cache_digest)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT(name) DO UPDATE SET etag = ?2, last_modified = ?3, last_attempt = ?4,
                     last_success = ?5, last_good_count = ?6, consecutive_failures = ?7, last_error = ?8,
                     cache_size = ?9, cache_digest = ?10",
            )?;
            for (name, m) in commit.feeds {
                feed.execute(params![
                    name,
                    m.etag,
                    m.last_modified,
                    m.last_attempt,
                    m.last_success,
                    m.last_good_count.map(|v| v as i64),
                    i64::from(m.consecutive_failures),
                    m.last_error,
                    m.cache_size.map(|v| v as i64),
                    m.cache_digest
                ])?;
            }
            let mut blob = tx.prepare(
                "INSERT INTO blobs (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
            )?;
            for (key, value) in commit.blobs {
                blob.execute(params![key, value])?;
            }
        }
        let stx = StoreTx { tx: &tx };
        if let Some(run) = commit.run {
            stx.record_run(run)?;
        }
        extra(&stx)?;
        tx.commit()
            .with_context(|| format!("committing the run to {}", self.path.display()))?;
        Ok(())
    }
}

/// SQLite's answer when a read-only connection meets a journal it would have to roll back.
fn is_read_only_recovery(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ReadOnly
    )
}

/// One open transaction of the store, handed to a closure by [`Store::transaction`] and
/// [`Store::commit_run_with`]: it offers typed operations only, all written in the
/// transaction, which the store commits when the closure returns `Ok`.
pub struct StoreTx<'a> {
    tx: &'a rusqlite::Transaction<'a>,
}

impl StoreTx<'_> {
    /// Add a row of run history (the oldest beyond the kept number go).
    pub fn record_run(&self, run: &RunRecord) -> Result<()> {
        self.tx.execute(
            "INSERT INTO runs (started, finished, outcome, summary) VALUES (?1, ?2, ?3, ?4)",
            params![run.started, run.finished, run.outcome, run.summary],
        )?;
        self.tx.execute(
            "DELETE FROM runs WHERE id <= (SELECT MAX(id) FROM runs) - ?1",
            [KEEP_RUNS],
        )?;
        Ok(())
    }

    /// The report queue, writing in this transaction.
    pub fn report_queue(&self) -> report_queue::ReportQueue<'_, report_queue::InTransaction> {
        report_queue::ReportQueue::in_transaction(self.tx)
    }
}

/// Everything one run persists.
pub struct RunCommit<'a> {
    pub entries: &'a [Entry],
    pub source_names: &'a [String],
    /// Per source index: store this source's marks packed in one blob (complete feed
    /// listings) rather than as rows. Sources past the end of the slice are stored as rows.
    pub packed: &'a [bool],
    pub feeds: &'a [(String, FeedMeta)],
    pub blobs: &'a [(String, Vec<u8>)],
    pub run: Option<&'a RunRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(net: &str, marks: &[Mark]) -> Entry {
        Entry {
            net: net::parse_net(net).unwrap(),
            marks: marks.into(),
        }
    }

    fn mark(source: u16, first: i64, last: i64, expires: i64) -> Mark {
        Mark {
            source,
            first_seen: first,
            last_seen: last,
            expires,
        }
    }

    /// A truncated or zero-length database is moved aside at open and rebuilt with what
    /// manual.list holds, and the marker says so; a sound one is left alone.
    #[test]
    fn a_damaged_database_is_moved_aside_and_rebuilt_from_manual_list() {
        for damage in ["truncated", "empty"] {
            let dir = tempfile::tempdir().unwrap();
            let names = vec!["f".to_string()];
            let entries: Vec<Entry> = (0..3000u32)
                .map(|i| Entry {
                    net: net::host_net(std::net::IpAddr::V4(std::net::Ipv4Addr::from(
                        0x2d00_0000 + i,
                    ))),
                    marks: smallvec::smallvec![mark(0, 1, 2, 3)],
                })
                .collect();
            let mut s = Store::open(dir.path()).unwrap();
            s.commit_run(&RunCommit {
                entries: &entries,
                source_names: &names,
                packed: &[],
                feeds: &[],
                blobs: &[],
                run: None,
            })
            .unwrap();
            let ban = net::parse_net("45.9.9.9").unwrap();
            s.save_manual_requests(
                manual::SOURCE,
                &[manual::ManualWrite::Ban {
                    net: &ban,
                    at: 10,
                    expires: 99,
                }],
                10,
            )
            .unwrap();
            assert!(s.rebuilt().unwrap().is_none());
            drop(s);
            assert!(Store::open(dir.path())
                .unwrap()
                .rebuilt()
                .unwrap()
                .is_none());
            let db = Store::db_path(dir.path());
            let len = std::fs::metadata(&db).unwrap().len();
            let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
            f.set_len(if damage == "empty" { 0 } else { len / 2 })
                .unwrap();
            drop(f);
            let s = Store::open(dir.path()).unwrap();
            let m = s.rebuilt().unwrap().expect("marker");
            assert!(
                !m.kernel_recovered && m.manual_restored == 1,
                "{damage}: {m:?}"
            );
            let moved = m.moved_to.expect("moved aside");
            assert!(std::path::Path::new(&moved).exists(), "{damage}");
            let loaded = s.load_entries(&[("manual".to_string(), 0)].into()).unwrap();
            assert_eq!(loaded.len(), 1, "{damage}: only the manual ban");
            assert_eq!(loaded[0].marks[0].expires, 99);
        }
    }

    /// A state directory the admin linked elsewhere works; a link at the database's own name
    /// is refused, for a run and a dry run, and its target is left alone.
    #[test]
    fn the_database_is_never_opened_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let linked = dir.path().join("linked");
        std::os::unix::fs::symlink(&real, &linked).unwrap();
        drop(Store::open(&linked).unwrap());
        assert!(real.join(DB_FILE).exists());
        assert!(Store::open_read_only(&linked).unwrap().is_some());

        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let victim = dir.path().join("victim.db");
        std::os::unix::fs::symlink(&victim, Store::db_path(&state)).unwrap();
        for e in [
            Store::open(&state).err(),
            Store::open_read_only(&state).err(),
        ] {
            let e = format!("{:#}", e.expect("refused"));
            assert!(e.contains("is a symbolic link"), "{e}");
        }
        assert!(!victim.exists());
    }

    /// Feed listings are stored packed; rows and packs round-trip to the same entries, in
    /// both the uniform and the full format, and a prefix held by a row source and a packed
    /// source comes back under both.
    #[test]
    fn packed_listings_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec![
            "feed".to_string(),
            "detector".to_string(),
            "other".to_string(),
        ];
        let packed = [true, false, true];
        let entries = vec![
            entry("45.0.0.1", &[mark(0, 5, 10, 100), mark(1, 7, 8, 50)]),
            entry("45.0.1.0/24", &[mark(0, 6, 10, 100)]),
            entry("2001:db8::/48", &[mark(0, 1, 10, 100), mark(2, 2, 3, 4)]),
            entry("2001:db8:1::1", &[mark(2, 9, 9, 99)]),
        ];
        let mut s = Store::open(dir.path()).unwrap();
        let commit = |s: &mut Store, e: &[Entry]| {
            s.commit_run(&RunCommit {
                entries: e,
                source_names: &names,
                packed: &packed,
                feeds: &[],
                blobs: &[],
                run: None,
            })
            .unwrap()
        };
        commit(&mut s, &entries);
        let index: HashMap<String, u16> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u16))
            .collect();
        let mut flat: Vec<(String, Mark)> = s
            .load_entries(&index)
            .unwrap()
            .into_iter()
            .flat_map(|e| {
                e.marks
                    .into_iter()
                    .map(move |m| (net::display_net(&e.net), m))
            })
            .collect();
        flat.sort_by_key(|(n, m)| (n.clone(), m.source));
        let mut want: Vec<(String, Mark)> = entries
            .iter()
            .flat_map(|e| e.marks.iter().map(move |m| (net::display_net(&e.net), *m)))
            .collect();
        want.sort_by_key(|(n, m)| (n.clone(), m.source));
        assert_eq!(flat, want);
        let rows: i64 = s
            .conn
            .query_row("SELECT COUNT(*) FROM entries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1, "only the detector's mark is a row");
        let formats: Vec<u8> = s
            .conn
            .prepare("SELECT substr(data, 1, 1) FROM feed_entries ORDER BY source")
            .unwrap()
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .unwrap()
            .map(|b| b.unwrap()[0])
            .collect();
        assert_eq!(formats, vec![3, 4], "feed is uniform, other is not");
        // A source with no marks left loses its blob.
        commit(&mut s, &entries[..2]);
        let packs: i64 = s
            .conn
            .query_row("SELECT COUNT(*) FROM feed_entries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(packs, 1);
    }

    /// The fast path's lookup sees feeds' packed marks as well as rows, and takes the longest.
    #[test]
    fn longest_expiries_cover_rows_and_packed_listings() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["feed".to_string(), "detector".to_string()];
        let n = |s: &str| net::parse_net(s).unwrap();
        let entries = vec![
            entry("45.0.0.1", &[mark(0, 5, 10, 9000), mark(1, 7, 8, 50)]),
            entry("45.0.0.2", &[mark(1, 7, 8, 60)]),
            entry("45.0.0.3", &[mark(0, 5, 10, 9000)]),
        ];
        let mut s = Store::open(dir.path()).unwrap();
        s.commit_run(&RunCommit {
            entries: &entries,
            source_names: &names,
            packed: &[true, false],
            feeds: &[],
            blobs: &[],
            run: None,
        })
        .unwrap();
        let got = s
            .longest_expiries(&[n("45.0.0.1"), n("45.0.0.2"), n("45.0.0.3"), n("45.0.0.4")])
            .unwrap();
        assert_eq!(got, vec![Some(9000), Some(60), Some(9000), None]);
    }

    /// Listings written by earlier versions (fixed-width formats 1 and 2) still load.
    #[test]
    fn legacy_packed_formats_load() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let le = |v: i64| v.to_le_bytes().to_vec();
        let mut uniform = vec![1u8, 4, 32, 45, 0, 0, 1];
        uniform.extend(le(5));
        uniform.extend([
            6, 48, 0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        uniform.extend(le(6));
        let mut full = vec![2u8, 4, 24, 45, 0, 1, 0];
        full.extend(le(7));
        full.extend(le(8));
        full.extend(le(50));
        let mut put = s
            .conn
            .prepare("INSERT INTO feed_entries VALUES (?1, 10, 100, ?2)")
            .unwrap();
        put.execute(params!["u", uniform]).unwrap();
        put.execute(params!["f", full]).unwrap();
        drop(put);
        let index: HashMap<String, u16> = [("u".to_string(), 0), ("f".to_string(), 1)].into();
        let got: Vec<(String, Mark)> = s
            .load_entries(&index)
            .unwrap()
            .into_iter()
            .map(|e| (net::display_net(&e.net), e.marks[0]))
            .collect();
        assert_eq!(
            got,
            vec![
                ("45.0.0.1".to_string(), mark(0, 5, 10, 100)),
                ("45.0.1.0/24".to_string(), mark(1, 7, 8, 50)),
                ("2001:db8::/48".to_string(), mark(0, 6, 10, 100)),
            ]
        );
    }

    #[test]
    fn a_corrupt_blob_is_dropped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.conn
                        .execute("INSERT INTO feed_entries VALUES ('f', 1, 2, x'010420010203042a00000000000000041800')", [])
            .unwrap();
        let loaded = s.load_entries(&[("f".to_string(), 0)].into()).unwrap();
        assert!(loaded.is_empty());
    }

    /// A run killed mid-commit leaves a hot journal; read-only views must still work.
    #[test]
    fn read_only_open_recovers_from_a_hot_journal() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["a".to_string()];
        let entry = |i: u32| Entry {
            net: net::host_net(std::net::IpAddr::V4(std::net::Ipv4Addr::from(
                0x2d00_0000 + i,
            ))),
            marks: smallvec::smallvec![Mark {
                source: 0,
                first_seen: 1,
                last_seen: 2,
                expires: 3,
            }],
        };
        let first: Vec<Entry> = (0..10).map(entry).collect();
        let mut s = Store::open(dir.path()).unwrap();
        s.commit_run(&RunCommit {
            entries: &first,
            source_names: &names,
            packed: &[],
            feeds: &[],
            blobs: &[],
            run: None,
        })
        .unwrap();
        // A big write in progress with a tiny cache, so pages reach the database file before
        // the commit; snapshot the files at that instant (what a SIGKILL would leave).
        s.conn
            .execute_batch("PRAGMA cache_size = 1; BEGIN;")
            .unwrap();
        for i in 0..20_000u32 {
            s.conn
                .execute(
                    "INSERT INTO entries VALUES (?1, 'a', 1, 2, 3)",
                    [format!("46.0.{}.{}", i / 256, i % 256)],
                )
                .unwrap();
        }
        let crashed = tempfile::tempdir().unwrap();
        for f in ["state.db", "state.db-journal"] {
            std::fs::copy(dir.path().join(f), crashed.path().join(f)).unwrap();
        }
        drop(s);
        let r = Store::open_read_only(crashed.path()).unwrap().unwrap();
        let loaded = r.load_entries(&[("a".to_string(), 0)].into()).unwrap();
        assert_eq!(loaded, first, "the last committed state");
    }

    #[test]
    fn round_trip_and_read_only() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Store::open_read_only(dir.path()).unwrap().is_none());
        let mut s = Store::open(dir.path()).unwrap();
        let names = vec!["a".to_string(), "b".to_string()];
        let entries = vec![
            Entry {
                net: net::parse_net("192.0.2.0/24").unwrap(),
                marks: smallvec::smallvec![
                    Mark {
                        source: 0,
                        first_seen: 1,
                        last_seen: 2,
                        expires: 3,
                    },
                    Mark {
                        source: 1,
                        first_seen: 4,
                        last_seen: 5,
                        expires: 6,
                    },
                ],
            },
            Entry {
                net: net::parse_net("2001:db8::1").unwrap(),
                marks: smallvec::smallvec![Mark {
                    source: 1,
                    first_seen: 7,
                    last_seen: 8,
                    expires: 9,
                }],
            },
        ];
        let meta = FeedMeta {
            etag: Some("\"x\"".into()),
            last_good_count: Some(2),
            cache_size: Some(31),
            cache_digest: Some("ab".repeat(32)),
            ..FeedMeta::default()
        };
        let run = RunRecord {
            started: 1,
            finished: 2,
            outcome: "ok".into(),
            summary: "{}".into(),
        };
        s.commit_run(&RunCommit {
            entries: &entries,
            source_names: &names,
            packed: &[],
            feeds: &[("a".into(), meta.clone())],
            blobs: &[("k".into(), b"v".to_vec())],
            run: Some(&run),
        })
        .unwrap();
        drop(s);
        let r = Store::open_read_only(dir.path()).unwrap().unwrap();
        let map: HashMap<String, u16> = [("a".to_string(), 0), ("b".to_string(), 1)].into();
        assert_eq!(r.load_entries(&map).unwrap(), entries);
        assert_eq!(r.feed_metas().unwrap()["a"], meta);
        assert_eq!(r.blob("k").unwrap().unwrap(), b"v");
        assert_eq!(r.last_run().unwrap().unwrap(), run);
        // Unknown sources map to u16::MAX.
        let only_a: HashMap<String, u16> = [("a".to_string(), 0)].into();
        let loaded = r.load_entries(&only_a).unwrap();
        assert_eq!(loaded[1].marks[0].source, u16::MAX);
    }
}

/// Two entry lists, each in prefix order ([`net::sort_key`]), as one in prefix order.
fn merge_in_order(a: Vec<Entry>, b: Vec<Entry>) -> Vec<Entry> {
    if a.is_empty() {
        return b;
    }
    if b.is_empty() {
        return a;
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let mut a = a.into_iter().peekable();
    let mut b = b.into_iter().peekable();
    while let (Some(x), Some(y)) = (a.peek(), b.peek()) {
        let next = if net::cmp_net(&x.net, &y.net).is_le() {
            a.next()
        } else {
            b.next()
        };
        out.extend(next);
    }
    out.extend(a);
    out.extend(b);
    out
}

/// The packed form of one source's marks: entries in prefix order, each its prefix and
/// `first_seen`; when every mark shares `last_seen` and `expires` (a feed's listing always
/// does) those two live once in the row, otherwise each entry carries them too. Written in
/// the compact encoding of [`crate::pack`] (formats 3 and 4); formats 1 and 2 (fixed-width,
/// little-endian) are still read. Versioned by the first byte.
mod feed_blob {
    use super::{Entry, Mark};
    use ipnet::{IpNet, Ipv4Net, Ipv6Net};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const UNIFORM: u8 = 1;
    const FULL: u8 = 2;
    const PACKED_UNIFORM: u8 = 3;
    const PACKED_FULL: u8 = 4;

    /// What a source's marks look like, learnt in a first pass over the entries, so that the
    /// blob is then written as the marks come (never a copy of the 65,536 marks).
    #[derive(Clone, Copy, Default)]
    pub struct Shape {
        count: usize,
        last_seen: i64,
        expires: i64,
        uniform: bool,
    }

    impl Shape {
        pub fn see(&mut self, mark: &Mark) {
            if self.count == 0 {
                (self.last_seen, self.expires, self.uniform) = (mark.last_seen, mark.expires, true);
            } else if mark.last_seen != self.last_seen || mark.expires != self.expires {
                self.uniform = false;
            }
            self.count += 1;
        }

        pub fn is_empty(&self) -> bool {
            self.count == 0
        }
    }

    /// Writes one source's blob, mark by mark, in the format its [`Shape`] calls for.
    pub struct Builder {
        shape: Shape,
        w: crate::pack::Writer,
        first: i64,
        last: i64,
        exp: i64,
    }

    impl Builder {
        pub fn new(shape: Shape) -> Builder {
            let format = if shape.uniform {
                PACKED_UNIFORM
            } else {
                PACKED_FULL
            };
            Builder {
                shape,
                w: crate::pack::Writer::with_header(&[format], shape.count * 4),
                first: 0,
                last: 0,
                exp: 0,
            }
        }

        pub fn push(&mut self, net: &IpNet, m: &Mark) {
            self.w.net(net);
            self.w.time(m.first_seen, &mut self.first);
            if !self.shape.uniform {
                self.w.time(m.last_seen, &mut self.last);
                self.w.time(m.expires, &mut self.exp);
            }
        }

        /// `(last_seen, expires, data)`.
        pub fn finish(self) -> (i64, i64, Vec<u8>) {
            (self.shape.last_seen, self.shape.expires, self.w.finish())
        }
    }

    /// Append the entries of a blob to `out`, each with one mark of `source`.
    pub fn decode(
        data: &[u8],
        source: u16,
        last_seen: i64,
        expires: i64,
        out: &mut Vec<Entry>,
    ) -> Result<(), String> {
        let (&format, body) = data.split_first().ok_or("empty")?;
        if format == PACKED_UNIFORM || format == PACKED_FULL {
            let mut r = crate::pack::Reader::new(body);
            let (mut p_first, mut p_last, mut p_exp) = (0, 0, 0);
            while !r.is_done() {
                let mut next = || -> Option<Entry> {
                    let net = r.net()?;
                    let first_seen = r.time(&mut p_first)?;
                    let (last_seen, expires) = if format == PACKED_FULL {
                        (r.time(&mut p_last)?, r.time(&mut p_exp)?)
                    } else {
                        (last_seen, expires)
                    };
                    Some(Entry {
                        net: net.trunc(),
                        marks: smallvec::smallvec![Mark {
                            source,
                            first_seen,
                            last_seen,
                            expires,
                        }],
                    })
                };
                out.push(next().ok_or("truncated or malformed")?);
            }
            return Ok(());
        }
        if format != UNIFORM && format != FULL {
            return Err(format!("unknown format {format}"));
        }
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], String> {
            let part = body.get(at..at + n).ok_or("truncated")?;
            at += n;
            Ok(part)
        };
        let i64_of = |b: &[u8]| -> i64 {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            i64::from_le_bytes(a)
        };
        let mut read = 0usize;
        let total = body.len();
        while read < total {
            let head = take(2)?;
            let (family, len) = (head[0], head[1]);
            let (net, size) = match family {
                4 => {
                    let b = take(4)?;
                    let addr = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
                    (
                        IpNet::V4(Ipv4Net::new(addr, len).map_err(|_| "bad prefix length")?),
                        4,
                    )
                }
                6 => {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(take(16)?);
                    (
                        IpNet::V6(
                            Ipv6Net::new(Ipv6Addr::from(a), len)
                                .map_err(|_| "bad prefix length")?,
                        ),
                        16,
                    )
                }
                other => return Err(format!("unknown family {other}")),
            };
            let first_seen = i64_of(take(8)?);
            let (last, exp) = if format == FULL {
                (i64_of(take(8)?), i64_of(take(8)?))
            } else {
                (last_seen, expires)
            };
            read += 2 + size + if format == FULL { 24 } else { 8 };
            out.push(Entry {
                net: net.trunc(),
                marks: smallvec::smallvec![Mark {
                    source,
                    first_seen,
                    last_seen: last,
                    expires: exp,
                }],
            });
        }
        Ok(())
    }
}
