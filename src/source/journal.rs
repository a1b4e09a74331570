//! The systemd journal as an input of the log detectors: one match (the kernel transport,
//! Asterisk's unit or identifier) read from a saved [`Position`] through `journalctl -o json`,
//! each entry handed over with the fields journald sets itself.
//!
//! Why `journalctl` and not libsystemd's sd-journal: no `unsafe` and no C library to bind
//! (sd-journal is not thread-safe and would need FFI), and a pure-Rust reader would have to
//! follow the journal file format (zstd COMPACT files since systemd 252) release after
//! release. `journalctl` is the reference reader of every journal the host can write; it runs
//! as a child process whose output is read line by line (one entry a line, memory bounded by
//! the longest entry), and the pass stops it when its read limit is spent.
//!
//! The quirks of Debian 12's systemd 252, measured (research `wave2-facts.md` §5):
//! * a MESSAGE with ESC or non-UTF-8 bytes comes as an array of byte values: [`Entry::message`]
//!   is bytes, whatever form it came in;
//! * a field of 4096 bytes or more comes as `null` unless `--all`: always given;
//! * `--after-cursor` with a match skips the first matching entry when the cursor's own entry
//!   does not satisfy the match (systemd #30288, fixed in 255): the read seeks with
//!   `--cursor=C` instead and drops the entry whose cursor is C. When the first entry is not C,
//!   C is no longer in the journal (rotated away, vacuumed, another journal): the read restarts
//!   with `--since` from the caller's time bound, or from C's own time when that is later, and
//!   says so ([`JournalStats::cursor_lost`]);
//! * `-k` and `--follow` add a current-boot filter: neither is used; the kernel is matched by
//!   `_TRANSPORT=kernel`, so a reboot between two runs loses nothing.
//!
//! This module knows nothing about what the messages mean, and never trusts a field the
//! writer chooses (`SYSLOG_IDENTIFIER`) for more than the caller decides. It must never read
//! the journal files itself, never hold more than one entry in memory, and never write to the
//! journal.

pub use crate::config::journal::JournalSettings;
use crate::source::tail::Budget;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

/// The fields read besides `journalctl`'s own (`__CURSOR`, `__REALTIME_TIMESTAMP`).
const FIELDS: &str = "MESSAGE,_TRANSPORT,SYSLOG_IDENTIFIER,_SYSTEMD_UNIT,_UID,_COMM";
/// How much of `journalctl`'s standard error is kept for an error message.
const STDERR_KEEP: usize = 4096;

/// Where the reading of one match stopped; the detector keeps it in its state blob.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The cursor of the last entry handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// No entry handled yet: read the entries written from this time on (Unix microseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_us: Option<i64>,
}

/// One journal entry, as the detectors see it.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// MESSAGE as bytes (newlines, ESC and non-UTF-8 bytes kept as written).
    pub message: &'a [u8],
    /// `__REALTIME_TIMESTAMP`: when journald received it, Unix microseconds.
    pub realtime_us: i64,
    /// Set by journald: `kernel`, `syslog`, `stdout`, `journal`, `audit`, `driver`.
    pub transport: &'a [u8],
    /// Chosen by the writer (`logger -t NAME`): never proof of anything.
    pub identifier: &'a [u8],
    /// Set by journald from the writer's cgroup: the system unit (`asterisk.service`).
    pub unit: &'a [u8],
    /// Set by journald from the socket's credentials.
    pub uid: Option<u32>,
    /// Set by journald from /proc, but chosen by the writer (its file name, `prctl`).
    pub comm: &'a [u8],
}

impl Entry<'_> {
    /// The entry's time in Unix seconds.
    pub fn time(&self) -> i64 {
        self.realtime_us.div_euclid(1_000_000)
    }
}

/// What one read did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct JournalStats {
    /// Entries handed over.
    pub entries: u64,
    /// Bytes of `journalctl` output read.
    pub bytes: u64,
    /// The pass's read limit was reached: the rest is read next time, from the last entry
    /// handled.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub limited: bool,
    /// The saved cursor is no longer in the journal (rotated away or vacuumed): the read
    /// restarted from `restarted_at` (Unix seconds): the time bound, or the cursor's own time
    /// when that is later.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cursor_lost: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<i64>,
    /// Output lines that were not a journal entry with a cursor and a time (counted, skipped).
    #[serde(skip_serializing_if = "is_zero")]
    pub unreadable: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// A read that failed: `journalctl` missing, or exiting with an error before any entry.
#[derive(Debug)]
pub struct JournalError(pub String);

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JournalError {}

/// One read: the journal, the match (`FIELD=value` terms; `+` between terms is OR, as on
/// `journalctl`'s command line), and the time bound used on a first read and after a lost
/// cursor (Unix seconds).
pub struct Query<'a> {
    pub journal: &'a JournalSettings,
    pub matches: &'a [&'a str],
    pub bound: i64,
}

impl Query<'_> {
    /// How the journal is named in reports.
    pub fn name(&self) -> String {
        let dir = match &self.journal.directory {
            Some(d) => format!("journal {}", d.display()),
            None => "system journal".to_string(),
        };
        format!("{dir} ({})", self.matches.join(" "))
    }
}

/// Read the entries after `pos` (or from the time bound) and hand each to `on_entry`, until
/// the journal's end or the spent `budget`. Returns the position to save: the last entry
/// handled.
pub fn read(
    q: &Query<'_>,
    pos: &Position,
    budget: &mut Budget,
    on_entry: &mut dyn FnMut(&Entry<'_>),
) -> Result<(Position, JournalStats), JournalError> {
    let mut stats = JournalStats::default();
    if budget.spent() {
        // The files before it took the pass's allowance: the journal is read next time.
        stats.limited = true;
        return Ok((pos.clone(), stats));
    }
    let bound_us = q.bound.saturating_mul(1_000_000);
    let Some(cursor) = &pos.cursor else {
        let since = pos.since_us.unwrap_or(bound_us);
        let mut out = Position {
            cursor: None,
            since_us: Some(since),
        };
        run(
            q,
            Seek::Since(since),
            budget,
            &mut stats,
            &mut out,
            on_entry,
        )?;
        return Ok((out, stats));
    };
    let mut out = pos.clone();
    match run(
        q,
        Seek::Cursor(cursor),
        budget,
        &mut stats,
        &mut out,
        on_entry,
    ) {
        Ok(()) => {}
        // A cursor journalctl cannot seek to (malformed, or from a journal it cannot place).
        Err(e) if e.0.contains("cursor") => stats.cursor_lost = true,
        Err(e) => return Err(e),
    }
    if stats.cursor_lost {
        // Read again from the time bound, but never from before the cursor's own time: the
        // entries up to it were handled.
        let since = bound_us.max(cursor_time(cursor).map_or(i64::MIN, |t| t + 1));
        stats.restarted_at = Some(since.div_euclid(1_000_000));
        out = Position {
            cursor: None,
            since_us: Some(since),
        };
        run(
            q,
            Seek::Since(since),
            budget,
            &mut stats,
            &mut out,
            on_entry,
        )?;
    }
    Ok((out, stats))
}

/// The realtime (`t=`, hex microseconds) a cursor carries.
fn cursor_time(cursor: &str) -> Option<i64> {
    let t = cursor.split(';').find_map(|p| p.strip_prefix("t="))?;
    i64::from_str_radix(t, 16).ok()
}

enum Seek<'a> {
    Cursor(&'a str),
    Since(i64),
}

/// The `journalctl` command of one read.
fn command(q: &Query<'_>, seek: &Seek<'_>) -> Command {
    let mut cmd = Command::new("journalctl");
    cmd.args(["--no-pager", "--output=json", "--all"])
        .arg(format!("--output-fields={FIELDS}"));
    if let Some(d) = &q.journal.directory {
        cmd.arg(format!("--directory={}", d.display()));
    }
    match seek {
        Seek::Cursor(c) => cmd.arg(format!("--cursor={c}")),
        Seek::Since(us) => cmd.arg(format!(
            "--since=@{}.{:06}",
            us.div_euclid(1_000_000),
            us.rem_euclid(1_000_000)
        )),
    };
    cmd.arg("--").args(q.matches);
    cmd.env("SYSTEMD_COLORS", "0")
        .env("SYSTEMD_PAGER", "")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Run one `journalctl` and hand over its entries (see [`read`]).
fn run(
    q: &Query<'_>,
    seek: Seek<'_>,
    budget: &mut Budget,
    stats: &mut JournalStats,
    out: &mut Position,
    on_entry: &mut dyn FnMut(&Entry<'_>),
) -> Result<(), JournalError> {
    let mut child = command(q, &seek).spawn().map_err(|e| {
        JournalError(format!(
            "{}: cannot run journalctl ({e}); install systemd's journalctl or turn `journal` off",
            q.name()
        ))
    })?;
    let stderr = drain_stderr(&mut child);
    let Some(stdout) = child.stdout.take() else {
        return Err(JournalError(format!(
            "{}: journalctl has no output",
            q.name()
        )));
    };
    // The entry the cursor names comes first when it is still in the journal.
    let mut expect = match seek {
        Seek::Cursor(c) => Some(c),
        Seek::Since(_) => None,
    };
    let mut reader = BufReader::with_capacity(256 * 1024, stdout);
    let mut line = Vec::with_capacity(4096);
    let mut stopped = false;
    let mut any = false;
    // The cursor of the last entry handled.
    let mut last = String::new();
    loop {
        if budget.spent() {
            stats.limited = true;
            stopped = true;
            break;
        }
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| JournalError(format!("{}: reading journalctl: {e}", q.name())))?;
        if n == 0 {
            break;
        }
        budget.take(n);
        stats.bytes += n as u64;
        let Ok(raw) = serde_json::from_slice::<RawEntry<'_>>(&line) else {
            stats.unreadable += 1;
            continue;
        };
        let (Some(cursor), Some(realtime_us)) = (raw.cursor.as_deref(), raw.realtime()) else {
            stats.unreadable += 1;
            continue;
        };
        any = true;
        if let Some(c) = expect.take() {
            if c == cursor {
                continue; // handled by the previous read
            }
            // The cursor's entry is gone; where journalctl placed the read then is its guess
            // (by sequence number, boot and monotonic time, or realtime): read again by time.
            stats.cursor_lost = true;
            stopped = true;
            break;
        }
        last.clear();
        last.push_str(cursor);
        let e = Entry {
            message: raw.message.bytes(),
            realtime_us,
            transport: raw.transport.bytes(),
            identifier: raw.identifier.bytes(),
            unit: raw.unit.bytes(),
            uid: std::str::from_utf8(raw.uid.bytes())
                .ok()
                .and_then(|s| s.parse().ok()),
            comm: raw.comm.bytes(),
        };
        stats.entries += 1;
        on_entry(&e);
    }
    if !last.is_empty() {
        out.cursor = Some(last);
        out.since_us = None;
    }
    if stopped {
        // The rest is read next time (or by time); this journalctl is not needed any more.
        let _ = child.kill();
    }
    drop(reader);
    let status = child
        .wait()
        .map_err(|e| JournalError(format!("{}: waiting for journalctl: {e}", q.name())))?;
    let err = stderr.join().unwrap_or_default();
    if !stopped && !status.success() && !any {
        let msg = String::from_utf8_lossy(&err);
        let msg = msg.trim();
        return Err(JournalError(format!(
            "{}: journalctl failed ({status}){}{msg}",
            q.name(),
            if msg.is_empty() { "" } else { ": " }
        )));
    }
    Ok(())
}

/// Read `journalctl`'s standard error on a thread (a full pipe would stop it), keeping the
/// first [`STDERR_KEEP`] bytes.
fn drain_stderr(child: &mut Child) -> std::thread::JoinHandle<Vec<u8>> {
    let pipe = child.stderr.take();
    std::thread::spawn(move || {
        let mut keep = Vec::new();
        if let Some(mut p) = pipe {
            let mut buf = [0u8; 4096];
            while let Ok(n) = p.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let room = STDERR_KEEP.saturating_sub(keep.len());
                keep.extend_from_slice(&buf[..n.min(room)]);
            }
        }
        keep
    })
}

// ---------------------------------------------------------------------------------------------
// one line of `journalctl -o json`

/// A field's value: text (borrowed from the line when it has no escapes), bytes (a JSON array
/// of numbers), or absent, `null` or several values (none of which is trusted).
#[derive(Debug, Default)]
enum Value<'a> {
    #[default]
    Absent,
    Text(Cow<'a, [u8]>),
    Other,
}

impl Value<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Value::Text(b) => b,
            _ => &[],
        }
    }
}

#[derive(Debug, Default)]
struct RawEntry<'a> {
    cursor: Option<Cow<'a, str>>,
    realtime: Value<'a>,
    message: Value<'a>,
    transport: Value<'a>,
    identifier: Value<'a>,
    unit: Value<'a>,
    uid: Value<'a>,
    comm: Value<'a>,
}

impl RawEntry<'_> {
    fn realtime(&self) -> Option<i64> {
        std::str::from_utf8(self.realtime.bytes())
            .ok()?
            .parse()
            .ok()
    }
}

impl<'de> Deserialize<'de> for RawEntry<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawEntry<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a journal entry")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<RawEntry<'de>, A::Error> {
                let mut e = RawEntry::default();
                while let Some(k) = m.next_key::<Key>()? {
                    let slot = match k {
                        Key::Cursor => {
                            if let Value::Text(b) = m.next_value::<Value<'de>>()? {
                                e.cursor = match b {
                                    Cow::Borrowed(b) => std::str::from_utf8(b).ok().map(Cow::from),
                                    Cow::Owned(b) => String::from_utf8(b).ok().map(Cow::from),
                                };
                            }
                            continue;
                        }
                        Key::Realtime => &mut e.realtime,
                        Key::Message => &mut e.message,
                        Key::Transport => &mut e.transport,
                        Key::Identifier => &mut e.identifier,
                        Key::Unit => &mut e.unit,
                        Key::Uid => &mut e.uid,
                        Key::Comm => &mut e.comm,
                        Key::Other => {
                            m.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    // A field given twice is not one value.
                    *slot = match (std::mem::take(slot), m.next_value::<Value<'de>>()?) {
                        (Value::Absent, v) => v,
                        _ => Value::Other,
                    };
                }
                Ok(e)
            }
        }
        d.deserialize_map(V)
    }
}

enum Key {
    Cursor,
    Realtime,
    Message,
    Transport,
    Identifier,
    Unit,
    Uid,
    Comm,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                Ok(match s {
                    "__CURSOR" => Key::Cursor,
                    "__REALTIME_TIMESTAMP" => Key::Realtime,
                    "MESSAGE" => Key::Message,
                    "_TRANSPORT" => Key::Transport,
                    "SYSLOG_IDENTIFIER" => Key::Identifier,
                    "_SYSTEMD_UNIT" => Key::Unit,
                    "_UID" => Key::Uid,
                    "_COMM" => Key::Comm,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

impl<'de> Deserialize<'de> for Value<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a journal field value")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Value<'de>, E> {
                Ok(Value::Text(Cow::Borrowed(s.as_bytes())))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Value<'de>, E> {
                Ok(Value::Text(Cow::Owned(s.as_bytes().to_vec())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Value<'de>, E> {
                Ok(Value::Other)
            }
            fn visit_none<E: de::Error>(self) -> Result<Value<'de>, E> {
                Ok(Value::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Value<'de>, E> {
                Ok(Value::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Value<'de>, A::Error> {
                // Bytes ([27, 91, ...]), or several values of one field (["a", "b"]).
                let mut bytes = Vec::new();
                let mut several = false;
                while let Some(el) = s.next_element::<Element>()? {
                    match el {
                        Element::Byte(b) if !several => bytes.push(b),
                        _ => several = true,
                    }
                }
                Ok(if several {
                    Value::Other
                } else {
                    Value::Text(Cow::Owned(bytes))
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// One element of an array value: a byte, or anything else.
enum Element {
    Byte(u8),
    Other,
}

impl<'de> Deserialize<'de> for Element {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Element;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte or a value")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Element, E> {
                Ok(u8::try_from(v).map_or(Element::Other, Element::Byte))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Element, E> {
                Ok(Element::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Element, E> {
                Ok(Element::Other)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Element, E> {
                Ok(Element::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Element, E> {
                Ok(Element::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Element, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Element::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Element, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Element::Other)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> RawEntry<'_> {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn message_as_text_bytes_null_or_several() {
        let e = parse(
            r#"{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1764760000000001","MESSAGE":"a \"b\"","_UID":"0","_TRANSPORT":"kernel","X":[1,2]}"#,
        );
        assert_eq!(e.cursor.as_deref(), Some("s=1;i=2"));
        assert_eq!(e.realtime(), Some(1_764_760_000_000_001));
        assert_eq!(e.message.bytes(), b"a \"b\"");
        assert_eq!(e.transport.bytes(), b"kernel");
        let e = parse(r#"{"MESSAGE":[27,91,49,109,10,255]}"#);
        assert_eq!(e.message.bytes(), b"\x1b[1m\n\xff");
        let e = parse(r#"{"MESSAGE":null}"#);
        assert_eq!(e.message.bytes(), b"");
        let e = parse(r#"{"_SYSTEMD_UNIT":["asterisk.service","x.service"]}"#);
        assert_eq!(e.unit.bytes(), b"");
        // A trusted field given twice in one object is no value at all.
        let e = parse(r#"{"_TRANSPORT":"kernel","_TRANSPORT":"kernel"}"#);
        assert_eq!(e.transport.bytes(), b"");
    }

    #[test]
    fn cursor_time_is_hex_microseconds() {
        assert_eq!(
            cursor_time("s=d1;i=4;b=01;m=2dcaa8;t=6450a3517b6c0;x=b7"),
            Some(0x6450a3517b6c0)
        );
        assert_eq!(cursor_time("garbage"), None);
    }
}
