//! The state's health: the storage faults that keep it from being read or written (disk full,
//! read-only file system, permission denied: exit 5) and a corrupt database (exit 6).
//!
//! - [`fault`] names what an error chain means for the state, from the I/O error or SQLite's
//!   code in it (SQLite's "read-only" and "cannot open" are told apart by a probe of the path,
//!   which SQLite does not report).
//! - [`check`] is the integrity check a read-write open runs: a zero-length file (SQLite would
//!   take it for a new, empty database and silently drop everything) or a failed
//!   `PRAGMA quick_check` is corruption. `quick_check` rather than `integrity_check`: it
//!   verifies every page, record and freelist (what a torn or overwritten file breaks) in one
//!   pass over the file, without cross-checking every index against its table, which is the
//!   costly part and would add nothing for our few small tables.
//! - [`move_aside`] renames a corrupt database (and its journal, `-wal`, `-shm`) to
//!   `state.db.corrupt-<RFC 3339 time>`, never deleting anything, and [`Rebuilt`] is the marker
//!   the fresh database keeps: what happened, when, where the old file went, and whether a
//!   sync has yet taken the live kernel sets in.
//!
//! This module must never delete a database or open one through a link.

use rusqlite::{Connection, ErrorCode};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// The blob key of the [`Rebuilt`] marker.
pub const REBUILT_KEY: &str = "state_rebuilt";

/// What keeps the state from being used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// ENOSPC, EDQUOT, SQLITE_FULL.
    Full,
    /// EROFS.
    ReadOnly,
    /// EACCES, EPERM.
    Denied,
    /// SQLITE_CORRUPT, SQLITE_NOTADB, or a failed integrity check.
    Corrupt,
}

/// A named fault and the path it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub path: PathBuf,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            FaultKind::Full => "no space left on device",
            FaultKind::ReadOnly => "read-only file system",
            FaultKind::Denied => "permission denied",
            FaultKind::Corrupt => "corrupt state database",
        };
        write!(f, "{what}: {}", self.path.display())
    }
}

impl Fault {
    /// Disk full, read-only or permission denied (exit 5), as opposed to corruption (exit 6).
    pub fn is_storage(&self) -> bool {
        self.kind != FaultKind::Corrupt
    }
}

/// The fault of one OS error number.
fn errno_kind(errno: i32) -> Option<FaultKind> {
    match errno {
        libc::ENOSPC | libc::EDQUOT => Some(FaultKind::Full),
        libc::EROFS => Some(FaultKind::ReadOnly),
        libc::EACCES | libc::EPERM => Some(FaultKind::Denied),
        _ => None,
    }
}

/// What stops writing `path` (a file, or with `dir` a directory), found by trying: the file is
/// opened for writing without creating or truncating it, a directory gets a probe file that is
/// removed at once. `None` when nothing stops it.
fn probe(path: &Path) -> Option<FaultKind> {
    use std::os::unix::fs::OpenOptionsExt;
    let result = if path.is_dir() {
        let p = path.join(format!(".sipban-probe.{}", std::process::id()));
        let r = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&p);
        if r.is_ok() {
            let _ = std::fs::remove_file(&p);
        }
        r.map(drop)
    } else if path.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map(drop)
    } else {
        return path.parent().and_then(probe);
    };
    result
        .err()
        .and_then(|e| e.raw_os_error())
        .and_then(errno_kind)
}

/// What an error chain means for the state at `path` (the database, or the state directory),
/// or `None` for any other failure. An I/O error is judged by its number; SQLite's codes by
/// their meaning, with "read-only" and "cannot open" probed on `path` to say why.
pub fn fault(e: &anyhow::Error, path: &Path) -> Option<Fault> {
    let mut at = path.to_path_buf();
    for cause in e.chain() {
        let kind = if let Some(crate::lock::LockError::Io { path, error }) = cause.downcast_ref() {
            at = path.clone();
            error.raw_os_error().and_then(errno_kind)
        } else if cause.downcast_ref::<Corrupt>().is_some() {
            Some(FaultKind::Corrupt)
        } else if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            io.raw_os_error().and_then(errno_kind)
        } else if let Some(rusqlite::Error::SqliteFailure(f, _)) =
            cause.downcast_ref::<rusqlite::Error>()
        {
            match f.code {
                ErrorCode::DiskFull => Some(FaultKind::Full),
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => Some(FaultKind::Corrupt),
                ErrorCode::PermissionDenied => Some(FaultKind::Denied),
                ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::SystemIoFailure => {
                    probe(&at).or((f.code == ErrorCode::ReadOnly).then_some(FaultKind::ReadOnly))
                }
                _ => None,
            }
        } else {
            None
        };
        if let Some(kind) = kind {
            return Some(Fault { kind, path: at });
        }
    }
    None
}

/// A database found corrupt by sipban's own checks (a zero-length file, a failed
/// `quick_check`): [`fault`] names it [`FaultKind::Corrupt`].
#[derive(Debug)]
pub struct Corrupt(pub String);

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Corrupt {}

/// Why the database at `path` (open as `conn`) cannot be trusted, or `None` when it passes
/// `PRAGMA quick_check`. An error running the check is returned as such (a caller classifies
/// it with [`fault`]: "not a database" is corruption too).
pub fn check(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let verdict: String = conn.query_row("PRAGMA quick_check(1)", [], |r| r.get(0))?;
    Ok((verdict != "ok").then_some(verdict))
}

/// Whether the database file at `path` exists and is empty (zero bytes): SQLite would open it
/// as a new database, which is how a lost state used to go unnoticed.
pub fn is_empty_file(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0)
}

/// The marker a rebuilt database keeps (blob [`REBUILT_KEY`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rebuilt {
    /// When the corruption was found (Unix seconds).
    pub at: i64,
    /// Why the old database was not trusted.
    pub reason: String,
    /// Where it was moved (`None` when there was nothing to move: the database was missing).
    pub moved_to: Option<String>,
    /// Manual bans, unbans and allowlist entries read back from `manual.list`.
    pub manual_restored: usize,
    /// Whether a sync has taken in the live kernel sets' entries since (`false`: the next one
    /// does).
    pub kernel_recovered: bool,
    /// How many entries it took in.
    #[serde(default)]
    pub kernel_entries: usize,
}

impl Rebuilt {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(b: &[u8]) -> Option<Rebuilt> {
        serde_json::from_slice(b).ok()
    }

    /// Whether `status` still shows it: until the admin removes the moved-aside copy, having
    /// looked at it (a rebuild with nothing moved aside shows until the next rebuild).
    pub fn is_current(&self) -> bool {
        self.moved_to
            .as_deref()
            .is_none_or(|p| std::fs::symlink_metadata(p).is_ok())
    }
}

/// Move the database at `path` and its companions (`-journal`, `-wal`, `-shm`) aside to
/// `<path>.corrupt-<time>` (a repeat in the same second gets `.1`, `.2`, ...). Returns the
/// new path of the database.
pub fn move_aside(path: &Path, now: i64) -> std::io::Result<PathBuf> {
    let base = format!("{}.corrupt-{}", path.display(), crate::clock::Iso(now));
    let mut to = PathBuf::from(&base);
    let mut n = 1;
    while std::fs::symlink_metadata(&to).is_ok() {
        to = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    std::fs::rename(path, &to)?;
    for suffix in ["-journal", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", path.display()));
        if std::fs::symlink_metadata(&from).is_ok() {
            std::fs::rename(&from, format!("{}{suffix}", to.display()))?;
        }
    }
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_named_by_their_cause() {
        let p = Path::new("/x/state.db");
        let io = |n| anyhow::Error::new(std::io::Error::from_raw_os_error(n)).context("writing");
        assert_eq!(fault(&io(libc::ENOSPC), p).unwrap().kind, FaultKind::Full);
        assert_eq!(fault(&io(libc::EDQUOT), p).unwrap().kind, FaultKind::Full);
        assert_eq!(
            fault(&io(libc::EROFS), p).unwrap().kind,
            FaultKind::ReadOnly
        );
        assert_eq!(fault(&io(libc::EACCES), p).unwrap().kind, FaultKind::Denied);
        assert_eq!(fault(&io(libc::EIO), p), None);
        assert_eq!(
            fault(&io(libc::ENOSPC), p).unwrap().to_string(),
            "no space left on device: /x/state.db"
        );
    }

    #[test]
    fn garbage_and_empty_files_are_found_and_moved_aside_with_their_journal() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        std::fs::write(&db, b"").unwrap();
        assert!(is_empty_file(&db));
        std::fs::write(&db, vec![0x5a; 8192]).unwrap();
        let conn = Connection::open(&db).unwrap();
        let e = anyhow::Error::new(check(&conn).unwrap_err());
        assert_eq!(fault(&e, &db).unwrap().kind, FaultKind::Corrupt);
        drop(conn);
        std::fs::write(dir.path().join("state.db-journal"), b"j").unwrap();
        let to = move_aside(&db, 0).unwrap();
        assert_eq!(to, dir.path().join("state.db.corrupt-1970-01-01T00:00:00Z"));
        assert!(!db.exists());
        assert_eq!(
            std::fs::read(format!("{}-journal", to.display())).unwrap(),
            b"j"
        );
        std::fs::write(&db, b"x").unwrap();
        let again = move_aside(&db, 0).unwrap();
        assert_eq!(
            again,
            dir.path().join("state.db.corrupt-1970-01-01T00:00:00Z.1")
        );
    }
}
