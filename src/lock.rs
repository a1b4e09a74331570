//! The run lock: one `sipban` run at a time per state directory (design invariant 5).
//!
//! An exclusive `flock` on `state_dir/sipban.lock`, released by the kernel when the process
//! exits, however it exits (so a SIGKILLed run never leaves a stale lock). The loser does not
//! wait: it exits at once with its own exit code and a message naming the holder's pid.
//! This module must never remove the lock file (that would let two runs lock different inodes).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "sipban.lock";

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

/// Take the lock or fail at once.
pub fn acquire(state_dir: &Path) -> Result<RunLock, LockError> {
    let path = state_dir.join(LOCK_FILE);
    let io = |error| LockError::Io {
        path: path.clone(),
        error,
    };
    std::fs::create_dir_all(state_dir).map_err(io)?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
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
    // Record our pid for the loser's message; failure to do so is harmless.
    let _ = file.set_len(0);
    let _ = file.seek(SeekFrom::Start(0));
    let _ = writeln!(file, "{}", std::process::id());
    Ok(RunLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
