//! A generic, offset-persistent follower of append-only text files (log files).
//!
//! Given a path and the [`FileCursor`] the caller stored after the previous run, [`follow`]
//! hands every new *complete* line to a callback and returns the new cursor. It copes with the
//! ways log files change between two runs:
//!
//! * **rotation by rename** (`messages` → `messages.1`, a new `messages` is created): the tail of
//!   the old file (found as `path.1`, or any sibling whose name starts with the file name and
//!   which has the old device/inode) is read first, then the new file from its start;
//! * **copytruncate** (the file is copied to `path.1` and truncated in place): noticed because
//!   the file is shorter than the stored position, or because the hash of its first line
//!   changed; the copy's tail is read first when its first line matches, then the file from 0;
//! * **replacement** (another file under the same name, no rotated copy): read from its start;
//! * a **partial last line** (no newline yet) is left for the next run;
//! * lines longer than [`MAX_LINE`] are skipped (never buffered whole) and counted.
//!
//! Memory is bounded: one read buffer of a fixed size, whatever the file size. Only regular
//! files are read: a FIFO, a device or a directory at a log's path is an error that names it
//! (a FIFO would block the run, `/dev/zero` would never end). Time is bounded too: a
//! [`Budget`] (bytes and a deadline, shared by all files of one pass) stops the reading at a
//! line boundary, and the cursor keeps the place; the next run reads on from there. A rotated
//! file's tail whose reading the budget cut is read on next time, before the new file.
//!
//! This module knows nothing about what the lines mean (the Asterisk and kernel-log detectors
//! both use it). It must never read a whole file into memory, never write to the files it
//! follows, and never deliver a line twice for the same cursor history.

use serde::{Deserialize, Serialize};
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Lines longer than this (without the newline) are skipped and counted.
pub const MAX_LINE: usize = 64 * 1024;
/// How much of the first line identifies a file (see [`FileCursor::first_line_hash`]).
const ID_BYTES: usize = 1024;
/// Size of one read.
const CHUNK: usize = 256 * 1024;

/// Where the follower stopped in one file. The caller persists it between runs (serde) and
/// hands it back to [`follow`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCursor {
    /// Device of the file that was read.
    pub dev: u64,
    /// Inode of the file that was read.
    pub ino: u64,
    /// Byte offset of the first byte not yet delivered (the start of a partial line, if any).
    pub pos: u64,
    /// FNV-1a hash of the file's first line (at most 1 KiB of it, newline included), or `None`
    /// while the file has no complete first line yet. A change means the file was replaced or
    /// truncated and written again.
    pub first_line_hash: Option<u64>,
    /// How many bytes `first_line_hash` covers.
    #[serde(default)]
    pub first_line_len: u32,
    /// The run stopped inside an over-long line: skip up to the next newline first.
    #[serde(default)]
    pub skipping: bool,
}

/// What happened while following one file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TailStats {
    /// Complete lines delivered.
    pub lines: u64,
    /// Bytes consumed (delivered lines and skipped long lines, newlines included).
    pub bytes: u64,
    /// Lines longer than [`MAX_LINE`] that were skipped.
    pub long_lines: u64,
    /// The rotated file's tail was read (rename or copytruncate).
    pub rotated_tail_read: bool,
    /// The file was rotated but the old file was not found any more: its unread tail is lost.
    pub rotated_tail_lost: bool,
    /// The file was truncated in place (copytruncate) since the last run.
    pub truncated: bool,
    /// A different file now lives under the path (new inode or different first line).
    pub replaced: bool,
    /// The path does not exist (nothing was read from it).
    pub missing: bool,
    /// A rotated copy ended in a partial line, which was dropped.
    pub partial_dropped: bool,
    /// The pass's read budget ran out before the end of the file: the rest is read next run.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub limited: bool,
}

pub use crate::config::values::{ReadLimit, StartAt};

/// What is left of one pass's read allowance: bytes, and a deadline. Checked before each read
/// of at most one chunk, so a pass reads at most one chunk past either.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    bytes_left: u64,
    deadline: Option<Instant>,
}

impl Budget {
    /// A pass's allowance, starting now.
    pub fn new(limit: ReadLimit) -> Budget {
        Budget {
            bytes_left: limit.bytes,
            deadline: Instant::now().checked_add(Duration::from_secs(limit.secs)),
        }
    }

    /// No bound (`scan` reads whole files, as asked).
    pub fn unlimited() -> Budget {
        Budget {
            bytes_left: u64::MAX,
            deadline: None,
        }
    }

    /// Nothing more may be read in this pass.
    pub fn spent(&self) -> bool {
        self.bytes_left == 0 || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Count `n` bytes read.
    pub fn take(&mut self, n: usize) {
        self.bytes_left = self.bytes_left.saturating_sub(n as u64);
    }
}

/// Follow `path` from `prev` (or from `start` when there is no cursor), calling `on_line` for
/// every new complete line (without its `\n`). Returns the cursor to store for the next run.
///
/// A missing file is not an error: the previous cursor is returned (after reading a rotated
/// tail, if one is found) and [`TailStats::missing`] is set. Reading stops when `budget` is
/// spent ([`TailStats::limited`]); the cursor returned resumes there.
pub fn follow(
    path: &Path,
    prev: Option<&FileCursor>,
    start: StartAt,
    budget: &mut Budget,
    on_line: &mut dyn FnMut(&[u8]),
) -> io::Result<(Option<FileCursor>, TailStats)> {
    let mut stats = TailStats::default();
    let mut r = Reader {
        budget,
        stats: &mut stats,
        on_line,
    };
    let cursor = follow_with(path, prev, start, &mut r)?;
    Ok((cursor, stats))
}

/// The per-call context of the readers: the budget, the stats and the line callback.
struct Reader<'a> {
    budget: &'a mut Budget,
    stats: &'a mut TailStats,
    on_line: &'a mut dyn FnMut(&[u8]),
}

fn follow_with(
    path: &Path,
    prev: Option<&FileCursor>,
    start: StartAt,
    r: &mut Reader<'_>,
) -> io::Result<Option<FileCursor>> {
    let meta = match fs::metadata(path) {
        Ok(m) if !m.is_file() => return Err(not_regular(path, m.file_type())),
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(ctx(e, "stat", path)),
    };

    let Some(prev) = prev else {
        let Some(meta) = meta else {
            r.stats.missing = true;
            return Ok(None);
        };
        let id = identify(path, &meta)?;
        let mut cur = FileCursor {
            dev: meta.dev(),
            ino: meta.ino(),
            pos: 0,
            first_line_hash: id.map(|i| i.0),
            first_line_len: id.map(|i| i.1).unwrap_or(0),
            skipping: false,
        };
        if start == StartAt::End {
            cur.pos = meta.len();
            // The file may end in a partial line; it would be read from its middle next time.
            // Back up to the last newline so the next run starts at a line boundary.
            cur.pos = last_line_start(path, meta.len())?;
            return Ok(Some(cur));
        }
        read_from(path, &mut cur, r, true)?;
        return Ok(Some(cur));
    };

    match meta {
        Some(meta) if meta.dev() == prev.dev && meta.ino() == prev.ino => {
            let id = identify(path, &meta)?;
            let same_start = match (prev.first_line_hash, id) {
                (Some(h), Some((h2, l2))) => h == h2 && prev.first_line_len == l2,
                (Some(_), None) => false, // had a first line, now it is shorter than that
                (None, _) => true,        // nothing to compare with
            };
            if meta.len() >= prev.pos && same_start {
                let mut cur = prev.clone();
                if cur.first_line_hash.is_none() {
                    cur.first_line_hash = id.map(|i| i.0);
                    cur.first_line_len = id.map(|i| i.1).unwrap_or(0);
                }
                read_from(path, &mut cur, r, true)?;
                Ok(Some(cur))
            } else {
                // Truncated in place (copytruncate), maybe already written again.
                r.stats.truncated = true;
                // A different first line: another file (the inode number may be reused) or a
                // copytruncate that was written past our old offset.
                r.stats.replaced = !same_start;
                if let Some(copy) = read_copied_tail(path, prev, r)? {
                    // Cut by the budget inside the copy: resume in it next run (the file's
                    // first line differs from the copy's, so it is taken as truncated again).
                    return Ok(Some(copy));
                }
                let mut cur = FileCursor {
                    dev: meta.dev(),
                    ino: meta.ino(),
                    pos: 0,
                    first_line_hash: id.map(|i| i.0),
                    first_line_len: id.map(|i| i.1).unwrap_or(0),
                    skipping: false,
                };
                read_from(path, &mut cur, r, true)?;
                Ok(Some(cur))
            }
        }
        other => {
            // The path names another file now, or nothing: look for the old one by inode.
            let mut old = prev.clone();
            match find_by_inode(path, prev)? {
                Some(rotated) => {
                    read_from(&rotated, &mut old, r, false)?;
                    r.stats.rotated_tail_read = true;
                    if r.stats.limited {
                        // The rest of the old file first, next run (found again by inode).
                        return Ok(Some(old));
                    }
                }
                None => r.stats.rotated_tail_lost = true,
            }
            let Some(meta) = other else {
                r.stats.missing = true;
                r.stats.rotated_tail_lost = false; // not lost yet: it may show up as path.1 later
                return Ok(Some(old));
            };
            if !r.stats.rotated_tail_read {
                r.stats.replaced = true;
            }
            let id = identify(path, &meta)?;
            let mut cur = FileCursor {
                dev: meta.dev(),
                ino: meta.ino(),
                pos: 0,
                first_line_hash: id.map(|i| i.0),
                first_line_len: id.map(|i| i.1).unwrap_or(0),
                skipping: false,
            };
            read_from(path, &mut cur, r, true)?;
            Ok(Some(cur))
        }
    }
}

fn ctx(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// What a file that is not a regular file is, for the error that names it.
fn kind_of(t: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

fn not_regular(path: &Path, t: fs::FileType) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is {}: only regular files are read as logs",
            path.display(),
            kind_of(t)
        ),
    )
}

/// Open a log for reading, refusing anything but a regular file: a FIFO would block the run
/// (opened without `O_NONBLOCK`, or read until a writer comes), a device such as `/dev/zero`
/// would never end. The check is on the opened file, so a path swapped after `stat` is caught.
fn open_log(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| ctx(e, "open", path))?;
    let t = f.metadata().map_err(|e| ctx(e, "stat", path))?.file_type();
    if !t.is_file() {
        return Err(not_regular(path, t));
    }
    Ok(f)
}

/// The rotated name `path.1`.
fn dot_one(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".1");
    PathBuf::from(s)
}

/// The old file of `prev` after a rename: `path.1` first, then any sibling whose name starts
/// with the file name (`messages-20240101`, `messages.0`) with the same device and inode.
fn find_by_inode(path: &Path, prev: &FileCursor) -> io::Result<Option<PathBuf>> {
    let one = dot_one(path);
    if let Ok(m) = fs::metadata(&one) {
        if m.dev() == prev.dev && m.ino() == prev.ino {
            return Ok(Some(one));
        }
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(None);
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let name = name.as_encoded_bytes();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(_) => return Ok(None),
    };
    for entry in entries.flatten() {
        let fname = entry.file_name();
        let b = fname.as_encoded_bytes();
        if b.len() <= name.len() || !b.starts_with(name) {
            continue;
        }
        if let Ok(m) = entry.metadata() {
            if m.is_file() && m.dev() == prev.dev && m.ino() == prev.ino {
                return Ok(Some(entry.path()));
            }
        }
    }
    Ok(None)
}

/// After a copytruncate: the copy is `path.1` with a new inode; it is ours when its first line
/// is the one we saw and it is at least as long as our position. `Some(cursor)` when the
/// budget cut the copy's reading: where to resume in it.
fn read_copied_tail(
    path: &Path,
    prev: &FileCursor,
    r: &mut Reader<'_>,
) -> io::Result<Option<FileCursor>> {
    let one = dot_one(path);
    let Ok(m) = fs::metadata(&one) else {
        r.stats.rotated_tail_lost = prev.pos > 0;
        return Ok(None);
    };
    let id = identify(&one, &m)?;
    let matches = match (prev.first_line_hash, id) {
        (Some(h), Some((h2, l2))) => h == h2 && prev.first_line_len == l2,
        _ => false,
    };
    if !matches || m.len() < prev.pos {
        r.stats.rotated_tail_lost = prev.pos > 0;
        return Ok(None);
    }
    let mut old = prev.clone();
    read_from(&one, &mut old, r, false)?;
    r.stats.rotated_tail_read = true;
    Ok(r.stats.limited.then_some(old))
}

/// FNV-1a, 64 bit: stable across Rust versions (the hash is persisted).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Hash and length of the file's identifying start: its first line (newline included) or its
/// first [`ID_BYTES`] bytes when the line is longer. `None` while neither is complete.
fn identify(path: &Path, meta: &Metadata) -> io::Result<Option<(u64, u32)>> {
    if meta.len() == 0 {
        return Ok(None);
    }
    let mut f = open_log(path)?;
    let mut buf = [0u8; ID_BYTES];
    let mut n = 0;
    while n < buf.len() {
        let k = f.read(&mut buf[n..]).map_err(|e| ctx(e, "read", path))?;
        if k == 0 {
            break;
        }
        n += k;
    }
    let take = match memchr::memchr(b'\n', &buf[..n]) {
        Some(i) => i + 1,
        None if n == ID_BYTES => n,
        None => return Ok(None),
    };
    // `take` <= ID_BYTES (1024), so the cast is lossless.
    Ok(Some((fnv1a(&buf[..take]), take as u32)))
}

/// Offset just after the last newline before `len` (0 if there is none).
fn last_line_start(path: &Path, len: u64) -> io::Result<u64> {
    let mut f = open_log(path)?;
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))
            .map_err(|e| ctx(e, "seek", path))?;
        f.read_exact(&mut buf[..n])
            .map_err(|e| ctx(e, "read", path))?;
        if let Some(i) = memchr::memrchr(b'\n', &buf[..n]) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Read `path` from `cur.pos` to its end, delivering complete lines and advancing `cur.pos` past
/// each consumed line. A trailing partial line stays unread when `keep_partial` (the file is
/// still being written); otherwise it is dropped and counted.
fn read_from(
    path: &Path,
    cur: &mut FileCursor,
    r: &mut Reader<'_>,
    keep_partial: bool,
) -> io::Result<()> {
    let Reader {
        budget,
        stats,
        on_line,
    } = r;
    let mut f = open_log(path)?;
    f.seek(SeekFrom::Start(cur.pos))
        .map_err(|e| ctx(e, "seek", path))?;
    let mut buf = vec![0u8; CHUNK + MAX_LINE + 1];
    let mut start = 0usize; // first unconsumed byte in buf
    let mut end = 0usize; // end of valid data in buf
    loop {
        if end == buf.len() {
            // Compact; the unconsumed part is at most MAX_LINE bytes (checked below).
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        if budget.spent() {
            // Stop at the last complete line; the cursor resumes there next run.
            stats.limited = true;
            break;
        }
        let n = match f.read(&mut buf[end..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ctx(e, "read", path)),
        };
        if n == 0 {
            break;
        }
        budget.take(n);
        let scan_from = end;
        end += n;
        let mut search = scan_from;
        while let Some(i) = memchr::memchr(b'\n', &buf[search..end]) {
            let nl = search + i;
            let len = (nl - start) as u64 + 1;
            if cur.skipping {
                cur.skipping = false;
                stats.long_lines += 1;
            } else if nl - start > MAX_LINE {
                stats.long_lines += 1;
            } else {
                on_line(&buf[start..nl]);
                stats.lines += 1;
            }
            stats.bytes += len;
            cur.pos += len;
            start = nl + 1;
            search = start;
        }
        if end - start > MAX_LINE {
            // An over-long line: drop what we have of it and skip to its newline.
            let dropped = (end - start) as u64;
            cur.pos += dropped;
            stats.bytes += dropped;
            cur.skipping = true;
            start = end;
        }
        if start == end {
            start = 0;
            end = 0;
        }
    }
    if stats.limited {
        // Not the end of the file: what is buffered is read again next run.
        return Ok(());
    }
    if end > start && !keep_partial {
        // A rotated file ending in a partial line: deliver nothing, move past it.
        stats.partial_dropped = true;
        cur.pos += (end - start) as u64;
    }
    if cur.skipping && !keep_partial {
        cur.skipping = false;
        stats.long_lines += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn collect(
        path: &Path,
        prev: Option<&FileCursor>,
    ) -> (Vec<String>, Option<FileCursor>, TailStats) {
        collect_with(path, prev, &mut Budget::unlimited())
    }

    fn collect_with(
        path: &Path,
        prev: Option<&FileCursor>,
        budget: &mut Budget,
    ) -> (Vec<String>, Option<FileCursor>, TailStats) {
        let mut out = Vec::new();
        let (c, s) = follow(path, prev, StartAt::Beginning, budget, &mut |l| {
            out.push(String::from_utf8_lossy(l).into_owned())
        })
        .unwrap();
        (out, c, s)
    }

    fn bytes(n: u64) -> Budget {
        Budget {
            bytes_left: n,
            deadline: None,
        }
    }

    /// `count` lines of 1,000 bytes (newline included), numbered from `from`.
    fn lines(from: usize, count: usize) -> Vec<String> {
        (from..from + count).map(|i| format!("{i:0>999}")).collect()
    }

    fn write_lines(f: &mut File, l: &[String]) {
        for x in l {
            writeln!(f, "{x}").unwrap();
        }
    }

    #[test]
    fn a_spent_budget_stops_at_a_line_and_the_next_run_resumes_there() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let all = lines(0, 2_000);
        write_lines(&mut File::create(&p).unwrap(), &all);
        let (first, c, s) = collect_with(&p, None, &mut bytes(300_000));
        assert!(s.limited);
        assert!(
            !first.is_empty() && first.len() < all.len(),
            "{}",
            first.len()
        );
        assert_eq!(c.as_ref().unwrap().pos, first.len() as u64 * 1_000);
        let (rest, _, s) = collect(&p, c.as_ref());
        assert!(!s.limited);
        assert_eq!([first, rest].concat(), all);
    }

    #[test]
    fn a_deadline_in_the_past_reads_nothing_and_keeps_the_place() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        fs::write(&p, b"a\nb\n").unwrap();
        let mut late = Budget {
            bytes_left: u64::MAX,
            deadline: Some(Instant::now()),
        };
        let (l, c, s) = collect_with(&p, None, &mut late);
        assert!(l.is_empty() && s.limited);
        assert_eq!(c.as_ref().unwrap().pos, 0);
        assert_eq!(collect(&p, c.as_ref()).0, vec!["a", "b"]);
    }

    #[test]
    fn a_rotated_tail_cut_by_the_budget_is_finished_before_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut f = File::create(&p).unwrap();
        write_lines(&mut f, &lines(0, 10));
        let (_, c, _) = collect(&p, None);
        let tail = lines(10, 2_000);
        write_lines(&mut f, &tail);
        drop(f);
        fs::rename(&p, dir.path().join("log.1")).unwrap();
        fs::write(&p, b"new\n").unwrap();
        let (first, c, s) = collect_with(&p, c.as_ref(), &mut bytes(300_000));
        assert!(s.limited && s.rotated_tail_read);
        assert!(!first.is_empty() && first.len() < tail.len());
        let (rest, _, s) = collect(&p, c.as_ref());
        assert!(!s.limited);
        let mut want = tail.clone();
        want.push("new".into());
        assert_eq!([first, rest].concat(), want);
    }

    #[test]
    fn a_copy_cut_by_the_budget_is_finished_before_the_truncated_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut f = File::create(&p).unwrap();
        write_lines(&mut f, &lines(0, 10));
        let (_, c, _) = collect(&p, None);
        let tail = lines(10, 2_000);
        write_lines(&mut f, &tail);
        drop(f);
        // copytruncate, then the file is written again.
        fs::copy(&p, dir.path().join("log.1")).unwrap();
        fs::write(&p, b"after the truncation\n").unwrap();
        let (first, c, s) = collect_with(&p, c.as_ref(), &mut bytes(300_000));
        assert!(s.limited && s.truncated);
        assert!(!first.is_empty() && first.len() < tail.len());
        let (rest, _, s) = collect(&p, c.as_ref());
        assert!(!s.limited);
        let mut want = tail.clone();
        want.push("after the truncation".into());
        assert_eq!([first, rest].concat(), want);
    }

    #[test]
    fn partial_lines_wait_and_long_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut f = File::create(&p).unwrap();
        f.write_all(b"a\nb").unwrap();
        let (l, c, _) = collect(&p, None);
        assert_eq!(l, vec!["a"]);
        assert_eq!(c.as_ref().unwrap().pos, 2);
        f.write_all(b"c\n").unwrap();
        let long = vec![b'x'; MAX_LINE + 10];
        f.write_all(&long).unwrap();
        let (l, c, s) = collect(&p, c.as_ref());
        assert_eq!(l, vec!["bc"]);
        assert!(c.as_ref().unwrap().skipping);
        f.write_all(b"yyy\nd\n").unwrap();
        let (l, _c, s2) = collect(&p, c.as_ref());
        assert_eq!(l, vec!["d"]);
        assert_eq!(s.long_lines + s2.long_lines, 1);
    }

    #[test]
    fn start_at_end_skips_history() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        fs::write(&p, b"old\npart").unwrap();
        let (c, _) = follow(
            &p,
            None,
            StartAt::End,
            &mut Budget::unlimited(),
            &mut |_| panic!("no lines"),
        )
        .unwrap();
        assert_eq!(c.unwrap().pos, 4);
    }
}
