//! Wake-ups when followed log files change, without polling: Linux inotify through `libc`
//! (already a dependency), registered with tokio's reactor via `AsyncFd`.
//!
//! The *directories* of the followed files are watched (not the files), for writes, creations
//! and renames of entries whose name is one of the followed files, so rotation by rename, by
//! copytruncate and files that do not exist yet are all seen. What changed is not reported:
//! the daemon only learns "something was written" and lets the file follower
//! ([`crate::source::tail`]) read from its cursors.
//!
//! Chosen over the `notify` crate (several dependencies and a thread of its own) and the
//! `inotify` crate (small, but this is about 100 lines of plain syscalls). This module must
//! never read the files themselves.

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use tokio::io::unix::AsyncFd;

const MASK: u32 = libc::IN_MODIFY
    | libc::IN_CLOSE_WRITE
    | libc::IN_CREATE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_DELETE
    | libc::IN_ATTRIB;

/// An inotify instance watching the directories of some files.
pub struct LogWatch {
    fd: AsyncFd<OwnedFd>,
    /// Watch descriptor → (directory, names followed in it).
    dirs: HashMap<i32, (PathBuf, HashSet<OsString>)>,
    /// Directories that could not be watched (missing), with why; the daemon still works
    /// through its scheduled syncs.
    pub unwatched: Vec<(PathBuf, String)>,
}

impl LogWatch {
    /// Watch the directories of `files`, and every entry of `whole_dirs` (reported as the
    /// directory itself). Must be called inside a tokio runtime.
    pub fn new(files: &[PathBuf], whole_dirs: &[PathBuf]) -> io::Result<LogWatch> {
        // SAFETY: inotify_init1 takes flags only and returns a new fd or -1.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an OwnedFd keeps its descriptor open and unchanged until it is dropped, which
        // happens only with the AsyncFd.
        let fd = unsafe { AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE) }
            .map_err(|e| io::Error::other(e.to_string()))?;
        let mut by_dir: HashMap<PathBuf, HashSet<OsString>> = HashMap::new();
        for f in files {
            let dir = match f.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if let Some(name) = f.file_name() {
                by_dir.entry(dir).or_default().insert(name.to_os_string());
            }
        }
        for d in whole_dirs {
            by_dir.entry(d.clone()).or_default();
        }
        let mut w = LogWatch {
            fd,
            dirs: HashMap::new(),
            unwatched: Vec::new(),
        };
        for (dir, names) in by_dir {
            match add_watch(w.fd.get_ref().as_raw_fd(), &dir) {
                Ok(wd) => {
                    w.dirs.insert(wd, (dir, names));
                }
                Err(e) => w.unwatched.push((dir, e.to_string())),
            }
        }
        Ok(w)
    }

    /// How many directories are watched.
    pub fn watched(&self) -> usize {
        self.dirs.len()
    }

    /// Wait until at least one followed file changed, then drain what is queued. Returns the
    /// paths that changed (possibly empty when only other files of a watched directory did;
    /// the caller waits again).
    pub async fn changed(&self) -> io::Result<Vec<PathBuf>> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| read_events(fd.get_ref().as_raw_fd())) {
                Ok(Ok(events)) => return Ok(self.match_events(&events)),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Drain queued events without waiting (after a batch window), returning changed paths.
    pub fn drain(&self) -> io::Result<Vec<PathBuf>> {
        match read_events(self.fd.get_ref().as_raw_fd()) {
            Ok(events) => Ok(self.match_events(&events)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    fn match_events(&self, events: &[(i32, u32, OsString)]) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for (wd, mask, name) in events {
            if mask & libc::IN_Q_OVERFLOW != 0 {
                // Events were lost: treat every followed file as changed.
                for (dir, names) in self.dirs.values() {
                    out.extend(names.iter().map(|n| dir.join(n)));
                }
                continue;
            }
            let Some((dir, names)) = self.dirs.get(wd) else {
                continue;
            };
            if names.is_empty() {
                if !out.contains(dir) {
                    out.push(dir.clone());
                }
                continue;
            }
            // A rotated copy (`messages.1`) or the file itself.
            let hit = names.iter().find(|n| {
                name == *n || name.as_bytes().starts_with(n.as_bytes()) && name.len() > n.len()
            });
            if let Some(n) = hit {
                let p = dir.join(n);
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        out
    }
}

fn add_watch(fd: RawFd, dir: &Path) -> io::Result<i32> {
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: `fd` is our inotify descriptor and `c` a valid NUL-terminated path.
    let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), MASK) };
    if wd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(wd)
}

/// Read every queued event: (watch descriptor, mask, name).
fn read_events(fd: RawFd) -> io::Result<Vec<(i32, u32, OsString)>> {
    // Aligned for inotify_event; large enough for many events with names.
    let mut buf = vec![0u64; 4096 / 8];
    let mut out = Vec::new();
    loop {
        // SAFETY: the buffer is valid for writes of its byte length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len() * 8) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock && !out.is_empty() {
                return Ok(out);
            }
            return Err(e);
        }
        let n = n as usize;
        // SAFETY: u64s viewed as bytes; `n` bytes were written by the kernel.
        let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
        let head = std::mem::size_of::<libc::inotify_event>();
        let mut off = 0;
        while off + head <= n {
            let wd = i32::from_ne_bytes(bytes[off..off + 4].try_into().unwrap_or([0; 4]));
            let mask = u32::from_ne_bytes(bytes[off + 4..off + 8].try_into().unwrap_or([0; 4]));
            let len =
                u32::from_ne_bytes(bytes[off + 12..off + 16].try_into().unwrap_or([0; 4])) as usize;
            let name_end = (off + head + len).min(n);
            let raw = &bytes[off + head..name_end];
            let name = raw.split(|&b| b == 0).next().unwrap_or(&[]).to_vec();
            out.push((wd, mask, OsString::from_vec(name)));
            off += head + len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    #[tokio::test(flavor = "current_thread")]
    async fn sees_appends_creation_and_rotation_of_followed_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("messages");
        let w = LogWatch::new(std::slice::from_ref(&log), &[]).unwrap();
        assert_eq!(w.watched(), 1);
        // Another file in the directory: no followed path reported.
        std::fs::write(dir.path().join("queue_log"), "x\n").unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), w.changed())
            .await
            .unwrap()
            .unwrap();
        assert!(got.is_empty(), "{got:?}");
        // Creation and appends.
        std::fs::write(&log, "a\n").unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), w.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, vec![log.clone()]);
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(b"b\n").unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), w.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, vec![log.clone()]);
        // Rotation by rename.
        std::fs::rename(&log, dir.path().join("messages.1")).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), w.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, vec![log.clone()]);
        assert!(w.drain().unwrap().len() <= 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_missing_directory_is_reported_not_fatal() {
        let w = LogWatch::new(&[PathBuf::from("/nonexistent-sipban-dir/messages")], &[]).unwrap();
        assert_eq!(w.watched(), 0);
        assert_eq!(w.unwatched.len(), 1);
    }
}
