//! The run lock (`state_dir/sipban.lock`, an `flock`) as the kill tests see it.
//!
//! A SIGKILLed run's lock is released when the last descriptor of its open file closes, and
//! reaping the killed process (`Child::wait`) is not always that moment: a child it was
//! starting (`ipset`, `conntrack`) holds a copy of every descriptor from `fork`/`clone` until
//! its `exec` closes them (they are close-on-exec), and that child is not killed with its
//! parent. On a loaded machine the window is long enough for the test's next run to find the
//! lock held and exit with code 4 ("another sipban run holds ..."), which is right for sipban
//! and wrong for a test that means "the next run after the kill".

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::time::Duration;

/// Block until nobody holds the run lock in `state_dir` (or there is no lock file), or panic
/// after `limit` naming the processes that still have it open. Returns what held it when
/// this was called (empty when it was already free), for the test's log.
///
/// The wait is a blocking `flock` on a helper thread, not a poll. The lock is given back with
/// an explicit `LOCK_UN` before the file is closed: a process another test is starting at the
/// same instant may hold a copy of this descriptor until its `exec`, and must not keep the
/// lock alive the way the killed run's children do.
pub fn await_released(state_dir: &Path, limit: Duration) -> Vec<String> {
    let path = state_dir.join("sipban.lock");
    let file = match OpenOptions::new().read(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("open {}: {e}", path.display()),
    };
    match file.try_lock() {
        Ok(()) => {
            unlock(&file);
            return Vec::new();
        }
        Err(TryLockError::WouldBlock) => {}
        Err(TryLockError::Error(e)) => panic!("flock {}: {e}", path.display()),
    }
    let held_by = holders(&path);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = file.lock().map(|()| unlock(&file));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(())) => held_by,
        Ok(Err(e)) => panic!("flock {}: {e}", path.display()),
        Err(_) => panic!(
            "{} still locked {limit:?} after its run was killed and reaped; held then by \
             {held_by:?}, now by {:?}",
            path.display(),
            holders(&path)
        ),
    }
}

fn unlock(file: &File) {
    file.unlock().expect("flock LOCK_UN");
}

/// `pid (command line)` of every process with `path` open, from `/proc/*/fd`.
pub fn holders(path: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let name = p.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if pid == std::process::id().to_string() {
            continue; // this test process, which has just opened it to wait
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let open = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == path));
        if open {
            let cmd = std::fs::read(p.path().join("cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .trim()
                        .to_string()
                })
                .unwrap_or_default();
            out.push(format!("{pid} ({cmd})"));
        }
    }
    out
}
