//! The two locks, per state directory (design invariant 5): each an exclusive `flock`, released
//! by the kernel when the process exits, however it exits (so a SIGKILLed run never leaves a
//! stale lock).
//!
//! - The **run lock** (`sipban.lock`): one `sync` (or one daemon) at a time, for the whole run,
//!   downloads included. The loser does not wait: it exits at once with its own exit code and a
//!   message naming the holder's pid.
//! - The **apply lock** (`sipban.apply.lock`): the short step that reads the saved state, changes
//!   the kernel sets and writes the state back. Every writer takes it for that step only: a
//!   sync after its downloads, the daemon's real-time pass, `ban`/`unban`, `restore`, and each
//!   APIBAN page commit. A waiter waits up to [`APPLY_WAIT`]; no holder ever keeps it across
//!   network I/O, so that wait is one apply at most, and a slow feed never blocks a ban.
//!
//! This module must never remove a lock file (that would let two runs lock different inodes).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "sipban.lock";
pub const APPLY_LOCK_FILE: &str = "sipban.apply.lock";
/// How long a writer waits for the apply lock: one apply of a large set is well under this.
pub const APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Held for the apply-and-persist step.
#[derive(Debug)]
pub struct ApplyLock {
    _file: File,
}

/// Held for the life of a run.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

#[derive(Debug)]
pub enum LockError {
    /// Another run holds the lock.
    Busy { path: PathBuf, holder: Option<u32> },
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Busy {
                path,
                holder: Some(pid),
            } => write!(
                f,
                "another sipban run (pid {pid}) holds {}; this run changed nothing and exits",
                path.display()
            ),
            LockError::Busy { path, holder: None } => write!(
                f,
                "another sipban run holds {}; this run changed nothing and exits",
                path.display()
            ),
            LockError::Io { path, error } => write!(f, "cannot lock {}: {error}", path.display()),
        }
    }
}

impl std::error::Error for LockError {}

// Both locks are given back with an explicit unlock when dropped, not only by closing the
// file: a child process being started at that instant holds a copy of the descriptor until
// its `exec` closes it (close-on-exec), and would otherwise keep the lock alive a moment
// longer. (A SIGKILLed process cannot unlock; then the kernel releases the lock when the last
// copy closes.)
impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = self._file.unlock();
    }
}

impl Drop for ApplyLock {
    fn drop(&mut self) {
        let _ = self._file.unlock();
    }
}

/// Take the run lock or fail at once.
pub fn acquire(state_dir: &Path) -> Result<RunLock, LockError> {
    take(state_dir, LOCK_FILE, None).map(|file| RunLock { _file: file })
}

/// Take the apply lock, waiting up to `wait` for its holder to finish its step.
pub fn apply(state_dir: &Path, wait: std::time::Duration) -> Result<ApplyLock, LockError> {
    take(state_dir, APPLY_LOCK_FILE, Some(wait)).map(|file| ApplyLock { _file: file })
}

/// The apply lock of the state database at `db_path` (the lock lives in its directory): for
/// writers that hold only the database, such as APIBAN's page commits.
pub fn apply_for_db(db_path: &Path) -> Result<ApplyLock, LockError> {
    let dir = match db_path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    apply(dir, APPLY_WAIT)
}

fn take(
    state_dir: &Path,
    name: &str,
    wait: Option<std::time::Duration>,
) -> Result<File, LockError> {
    let path = state_dir.join(name);
    let io = |error| LockError::Io {
        path: path.clone(),
        error,
    };
    crate::fsio::create_dir(state_dir).map_err(io)?;
    // A link planted at the lock's name is never followed (the pid is written into the file).
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(io)?;
    let deadline = wait.map(|w| std::time::Instant::now() + w);
    loop {
        match file.try_lock() {
            Ok(()) => break,
            // The holder's step is short: look again every few milliseconds until the deadline.
            Err(TryLockError::WouldBlock)
                if deadline.is_some_and(|d| std::time::Instant::now() < d) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Busy {
                    path,
                    holder: text.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
    }
    // Record our pid for the loser's message; failure to do so is harmless.
    let _ = file.set_len(0);
    let _ = file.seek(SeekFrom::Start(0));
    let _ = writeln!(file, "{}", std::process::id());
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_planted_at_the_lock_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(LOCK_FILE)).unwrap();
        match acquire(dir.path()) {
            Err(LockError::Io { path, .. }) => assert_eq!(path, dir.path().join(LOCK_FILE)),
            other => panic!("expected an error, got {other:?}"),
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    }

    #[test]
    fn second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path()).unwrap();
        match acquire(dir.path()) {
            Err(LockError::Busy { holder, .. }) => assert_eq!(holder, Some(std::process::id())),
            other => panic!("expected Busy, got {other:?}"),
        }
        drop(first);
        assert!(acquire(dir.path()).is_ok());
    }

    #[test]
    fn the_apply_lock_is_apart_from_the_run_lock_and_waits_for_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let _run = acquire(dir.path()).unwrap();
        let held = apply(dir.path(), std::time::Duration::ZERO).unwrap();
        let t = std::time::Instant::now();
        match apply(dir.path(), std::time::Duration::from_millis(50)) {
            Err(LockError::Busy { .. }) => assert!(t.elapsed().as_millis() >= 50),
            other => panic!("expected Busy, got {other:?}"),
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let d = dir.path().to_path_buf();
        let waiter = std::thread::spawn(move || {
            tx.send(()).unwrap();
            apply(&d, std::time::Duration::from_secs(30)).map(|_| ())
        });
        rx.recv().unwrap();
        drop(held);
        assert!(waiter.join().unwrap().is_ok());
    }
}
