//! The Asterisk log detector: follows Asterisk's log files, finds authentication and dialplan
//! failures (a superset of fail2ban's `asterisk` filter), attributes IP-less chan_sip INVITE
//! timeouts through the SIP debug dumps of the `full` log, and turns `maxretry` failures within
//! `findtime` into [`Sighting`]s.
//!
//! * [`rules`]: line anatomy (prefixes, wrappers, dates) and the rule table.
//! * [`guard`]: the injection guard: which lines may be attacker text (the list of remote
//!   fields Asterisk logs, per version, is in its docs).
//! * [`callid`]: block-aware dump parser and Call-ID correlation.
//! * [`journal`]: Asterisk's entries in the systemd journal (which are trusted, how they are
//!   fed).
//! * this file: settings, the persisted [`DetectorState`], [`run`] (one detector pass for the
//!   pipeline) and [`scan`] (the read-only `sipban scan` report).
//!
//! Per followed file, lines flow: tail ([`crate::source::tail`]) → held by an open record of
//! the injection guard while its attacker field may reach them → dump parser (full log only:
//! dump lines stop here) → anatomy → opener of a record with an attacker field (its head's
//! sender counted, the record opened) or rule → cross-file de-duplication → evidence and ban
//! counting. A record is judged once the next line starts beyond its field's capacity: its
//! real tail's sender is counted, its field text and suspect lines dropped (counted as
//! `injected` and `suspect`), the lines after its tail read again. An open record is kept in
//! the state, so a message read in two runs is judged whole.
//!
//! This module must never resolve names, never take an address from anything but a transport
//! field, never hold a whole file in memory, and never change the files it reads.

pub mod callid;
pub mod guard;
pub mod journal;
pub mod rules;

use crate::net;
use crate::source::input::{self, InputCounts};
use crate::source::kernlog::wrapper::{self, Wrapper};
use crate::source::offences::{self, Offences, Rank};
use crate::source::tail::{self, FileCursor, StartAt, TailStats};
use crate::source::Sighting;
use callid::{CallIdMap, DumpParser, Feed, Unattributed};
use guard::{Judgement, Record, Sender};
use rules::{anatomy, classify, Anatomy, Level, Rule, Stamp, Transport, Verdict};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use crate::config::asterisk::{AsteriskSettings, SecurityServices};
pub use crate::config::values::TimeZone;

/// Errors of the detector. I/O errors name the file.
#[derive(Debug)]
pub enum AsteriskError {
    NoFiles,
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl fmt::Display for AsteriskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AsteriskError::NoFiles => f.write_str("no Asterisk log file given"),
            AsteriskError::Io { path, source } => {
                write!(f, "reading Asterisk log {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for AsteriskError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AsteriskError::Io { source, .. } => Some(source),
            AsteriskError::NoFiles => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// persisted state

/// Bound on addresses with recent failures (the shared [`Offences`] counter's cap) and on
/// remembered bans.
pub const MAX_ADDRESSES: usize = offences::CAP;
/// Cross-file duplicate detection looks this far back (log seconds).
const DEDUP_SECS: i64 = 300;
const MAX_DEDUP: usize = 65_536;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    pub cursor: Option<FileCursor>,
    #[serde(default)]
    dump: DumpParser,
    #[serde(default)]
    last_time: Option<i64>,
    /// A record whose attacker field may still go on, open at the end of the last run (bounded
    /// by the field's capacity; see [`guard`]).
    #[serde(default)]
    record: Option<Record>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanRecord {
    /// How many times the address was banned (drives the increment).
    pub count: u32,
    /// Unix time of the last ban.
    pub last: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct DedupEntry {
    time: i64,
    /// (stream id, occurrences)
    counts: Vec<(u16, u32)>,
}

/// Recently matched lines by hash, per file, so the same line in two followed files (messages
/// and full carry the same NOTICE) counts once, while repeats inside one file all count.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Dedup {
    entries: HashMap<u64, DedupEntry>,
    newest: i64,
}

impl Dedup {
    /// Whether this occurrence is new (not a copy of one seen in another file).
    fn admit(&mut self, key: u64, time: i64, stream: u16) -> bool {
        self.newest = self.newest.max(time);
        if self.entries.len() >= MAX_DEDUP {
            self.prune();
        }
        let e = self.entries.entry(key).or_insert_with(|| DedupEntry {
            time,
            counts: Vec::new(),
        });
        e.time = e.time.max(time);
        let other = e
            .counts
            .iter()
            .filter(|(s, _)| *s != stream)
            .map(|(_, c)| *c)
            .max()
            .unwrap_or(0);
        let mine = match e.counts.iter_mut().find(|(s, _)| *s == stream) {
            Some((_, c)) => {
                *c += 1;
                *c
            }
            None => {
                e.counts.push((stream, 1));
                1
            }
        };
        mine > other
    }

    fn prune(&mut self) {
        let cutoff = self.newest - DEDUP_SECS;
        self.entries.retain(|_, e| e.time >= cutoff);
        if self.entries.len() >= MAX_DEDUP {
            // A flood inside one window: forget the older half.
            let mut t: Vec<i64> = self.entries.values().map(|e| e.time).collect();
            t.sort_unstable();
            let keep = t[t.len() / 2];
            self.entries.retain(|_, e| e.time > keep);
        }
    }
}

/// Everything the detector remembers between runs. The lead stores it as one blob (serde);
/// every part is bounded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DetectorState {
    /// Per followed file (key: the path as configured): cursor and dump-parser state.
    #[serde(default)]
    pub files: BTreeMap<String, FileState>,
    /// Failure times (Unix) within `findtime`, per address: at most [`MAX_ADDRESSES`], the
    /// addresses with the fewest failures go first when there is no room (see [`offences`]).
    #[serde(default)]
    pub recent: Offences<Vec<i64>>,
    /// Addresses whose failures were dropped from `recent` to make room, in all runs.
    #[serde(default)]
    pub evictions: u64,
    /// Ban counts for the ban-time increment.
    #[serde(default)]
    pub bans: HashMap<IpAddr, BanRecord>,
    #[serde(default)]
    callids: CallIdMap,
    #[serde(default)]
    dedup: Dedup,
    /// The systemd journal's position and streams (`asterisk.journal: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<journal::JournalState>,
}

impl DetectorState {
    /// The eviction total a saved state (its JSON blob) holds, without keeping the rest; `None`
    /// for an unreadable blob (a blob saved before the total was kept reads as 0).
    pub fn saved_evictions(blob: &[u8]) -> Option<u64> {
        offences::evictions_in_json(blob)
    }

    /// The addresses failing now but not yet banned (fail2ban's "Currently failed"): their
    /// failures within `findtime` of `now` (fewer than `maxretry`, or they would be banned), and
    /// the latest one's time.
    pub fn failing(&self, s: &AsteriskSettings, now: i64) -> Vec<(IpAddr, u32, i64)> {
        let horizon = now - i64::from(s.findtime);
        self.recent
            .iter()
            .filter_map(|(ip, times)| {
                let n = times.iter().filter(|t| **t >= horizon).count() as u32;
                let last = times.last().copied()?;
                (n > 0 && n < s.maxretry.max(1)).then_some((*ip, n, last))
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// reports

/// Counters of one run or scan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Lines read (all files).
    pub lines: u64,
    /// Lines that named an offender (failures and attributed timeouts, duplicates excluded).
    pub matched: u64,
    /// Matched lines per rule name.
    pub by_rule: BTreeMap<&'static str, u64>,
    pub timeouts_attributed: u64,
    /// "Unattributed scanner timeouts".
    pub timeouts_unattributed: u64,
    pub unattributed_reasons: BTreeMap<&'static str, u64>,
    /// Lines already counted from another followed file.
    pub duplicates: u64,
    /// Lines that had a rule's shape but were refused (several or invalid addresses).
    pub refused: u64,
    /// Lines the injection guard proved to be attacker text: the field lines of a record
    /// broken by a newline, before its real tail (see [`guard`]).
    pub injected: u64,
    /// Lines the injection guard could not read as genuine: within a field's reach after a
    /// record without a tail (IAX2 user names, dialplan lines) or with an ambiguous one. The
    /// cost of the guard in genuine lines.
    pub suspect: u64,
    /// Records broken by a newline in an attacker field (each an offence of its sender, when
    /// the record names one).
    pub injections: u64,
    /// Lines without an Asterisk prefix outside dumps (continuations, other programs).
    pub orphan_lines: u64,
    /// Of those, lines in no layout sipban knows (another program's syslog or journal line is
    /// not one): counted per input, warned about above a fifth of a file.
    #[serde(default)]
    pub unparsed: u64,
    /// Lines inside SIP debug dumps.
    pub dump_lines: u64,
    /// Lines over 64 KiB, skipped.
    pub long_lines: u64,
}

impl Counters {
    /// The per-input view of these counters.
    pub fn input(&self) -> InputCounts {
        InputCounts {
            read: self.lines,
            parsed: self.lines.saturating_sub(self.unparsed),
            matched: self.matched,
            refused: self.refused + self.injected + self.suspect,
            unparsed: self.unparsed,
        }
    }
}

/// What was seen of one address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// Failure lines plus attributed timeouts.
    pub count: u64,
    pub failures: u64,
    pub timeouts: u64,
    /// Unix seconds of the first and last evidence line.
    pub first: i64,
    pub last: i64,
    pub rules: Vec<&'static str>,
    pub transports: Vec<Transport>,
    /// The last evidence line (at most 512 bytes, lossy UTF-8; contains attacker text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub example: Option<String>,
}

/// Per-file outcome of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FileReport {
    pub path: PathBuf,
    pub full_log: bool,
    pub tail: TailStats,
    /// Lines read, parsed, matched, refused and unparsed in this pass.
    pub counts: InputCounts,
    /// A read error (the file's cursor was left unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A ban decided in this run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ban {
    pub ip: IpAddr,
    /// Unix time of the failure that completed `maxretry`.
    pub seen: i64,
    pub ttl: u32,
    /// 1 for a first ban, 2 for the second (increased) one, ...
    pub nth: u32,
}

/// Result of [`run`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Detections {
    /// One per banned address (the latest ban when an address was banned twice in a run).
    #[serde(skip)]
    pub sightings: Vec<Sighting>,
    pub bans: Vec<Ban>,
    /// `asterisk.priority`, to attach to the sightings in the decide step.
    pub priority: u32,
    pub counters: Counters,
    /// Evidence of every address seen in this run (also those not banned).
    pub evidence: BTreeMap<IpAddr, Evidence>,
    pub files: Vec<FileReport>,
    /// What was read from the systemd journal (`asterisk.journal: true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<journal::JournalReport>,
    /// Addresses whose failures were dropped from the bounded counter in this run to make
    /// room (the fewest failures first), and in all runs.
    pub evicted: u64,
    pub evicted_total: u64,
}

/// Per-file part of a [`ScanReport`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FileScan {
    pub path: PathBuf,
    pub full_log: bool,
    pub lines: u64,
    pub long_lines: u64,
    pub counts: InputCounts,
}

/// Result of [`scan`]: what `sipban scan` prints (human form via `Display`, `--json` via serde).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ScanReport {
    pub files: Vec<FileScan>,
    pub counters: Counters,
    /// Per address: counts, first/last time, rules.
    pub addresses: BTreeMap<IpAddr, Evidence>,
    /// `--verbose`: lines that look like failures but matched no rule (at most 1000).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unmatched: Vec<String>,
    /// `--verbose`: lines refused or swallowed by the injection guard (at most 1000).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suppressed: Vec<String>,
    /// `--verbose`: Call-IDs of unattributed timeouts with the reason (at most 1000).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unattributed: Vec<(String, &'static str)>,
    /// `--verbose`: unparsed lines that look relevant (an address and a failure word).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unparsed: Vec<String>,
}

const VERBOSE_CAP: usize = 1000;

// ---------------------------------------------------------------------------------------------
// time

/// Log dates to Unix time: local-time dates through the configured zone, year-less dates to the
/// most recent such date (shared with the kernel-log detector).
pub(crate) struct Clock {
    tz: TimeZone,
    now: i64,
    now_year: i32,
    cache: Option<(i64, i32)>,
    /// The last civil date turned into days (consecutive lines are mostly of one day).
    day: (i32, u8, u8, i64),
}

fn civil_year(days: i64) -> i32 {
    // Inverse of days_from_civil, year only.
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2)) as i32
}

/// Seconds east of UTC of the host's local time at Unix time `t`.
fn system_offset(t: i64) -> i32 {
    let tt = t as libc::time_t;
    // SAFETY: `tm` is plain old data; localtime_r only writes into it and reads `tt`.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call; localtime_r is thread-safe.
    let r = unsafe { libc::localtime_r(&tt, &mut tm) };
    if r.is_null() {
        0
    } else {
        tm.tm_gmtoff as i32
    }
}

impl Clock {
    pub(crate) fn new(tz: TimeZone, now: i64) -> Clock {
        let mut c = Clock {
            tz,
            now,
            now_year: 1970,
            cache: None,
            day: (1970, 1, 1, 0),
        };
        let off = c.offset_at(now);
        c.now_year = civil_year((now + i64::from(off)).div_euclid(86_400));
        c
    }

    fn offset_at(&self, t: i64) -> i32 {
        match self.tz {
            TimeZone::FixedOffset(o) => o,
            TimeZone::System => system_offset(t),
        }
    }

    /// [`rules::days_from_civil`], remembering the last date.
    fn days(&mut self, y: i32, m: u8, d: u8) -> i64 {
        let (cy, cm, cd, days) = self.day;
        if (cy, cm, cd) == (y, m, d) {
            return days;
        }
        let days = rules::days_from_civil(y, m, d);
        self.day = (y, m, d, days);
        days
    }

    /// Local wall-clock seconds (as if UTC) to Unix seconds.
    fn local_to_unix(&mut self, naive: i64) -> i64 {
        let hour = naive.div_euclid(3600);
        if let Some((h, off)) = self.cache {
            if h == hour {
                return naive - i64::from(off);
            }
        }
        let off1 = self.offset_at(naive);
        let off = self.offset_at(naive - i64::from(off1));
        self.cache = Some((hour, off));
        naive - i64::from(off)
    }

    pub(crate) fn unix(&mut self, s: Stamp) -> i64 {
        match s {
            Stamp::Utc(t) => t,
            Stamp::Local {
                year,
                month,
                day,
                secs,
            } => {
                let naive =
                    |c: &mut Clock, y: i32| c.days(y, month, day) * 86_400 + i64::from(secs);
                match year {
                    Some(y) => {
                        let n = naive(self, y);
                        self.local_to_unix(n)
                    }
                    None => {
                        // No year in the line: the most recent such date not in the future.
                        let n = naive(self, self.now_year);
                        let t = self.local_to_unix(n);
                        if t > self.now + 2 * 86_400 {
                            let n = naive(self, self.now_year - 1);
                            self.local_to_unix(n)
                        } else {
                            t
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// the engine shared by run and scan

/// Per-file processing state for one pass.
struct Stream<'a> {
    id: u16,
    full: bool,
    dump: &'a mut DumpParser,
    last_time: &'a mut Option<i64>,
    record: &'a mut Option<Record>,
}

/// A matched offender line handed to the ban logic.
struct Hit {
    ip: IpAddr,
    time: i64,
}

struct Engine<'a> {
    aggressive: bool,
    /// Whose security events count.
    services: SecurityServices,
    verbose: bool,
    /// Several streams: de-duplicate across them.
    multi: bool,
    /// A full log is followed: timeouts are attributed only from it.
    full_mode: bool,
    /// The Call-ID map was filled from SIP seen on the wire: a timeout in any file is
    /// attributed through it.
    wire: bool,
    keep_examples: bool,
    /// The whole input has been read (scan): close an open injection window at the end.
    /// Otherwise (run) it stays open into the next run, so a message written in several
    /// pieces is still judged whole.
    resolve_at_eof: bool,
    clock: Clock,
    callids: &'a mut CallIdMap,
    /// The daemon's Call-ID map from SIP on the wire: a timeout the dumps cannot attribute
    /// is attributed through it (see [`run_with_wire`]).
    wire_map: Option<&'a CallIdMap>,
    dedup: &'a mut Dedup,
    counters: Counters,
    evidence: HashMap<IpAddr, Evidence>,
    unmatched: Vec<String>,
    suppressed: Vec<String>,
    unattributed: Vec<(String, &'static str)>,
    unparsed: Vec<String>,
    hits: Vec<Hit>,
}

fn lossy(line: &[u8], cap: usize) -> String {
    String::from_utf8_lossy(&line[..line.len().min(cap)]).into_owned()
}

impl Engine<'_> {
    fn feed(&mut self, st: &mut Stream<'_>, raw: &[u8]) {
        self.counters.lines += 1;
        self.take(st, raw);
    }

    /// One physical line, as read (its bytes count toward a field's reach, and the dump
    /// parser counts them): held while an open record's field may still reach it, else read.
    fn take(&mut self, st: &mut Stream<'_>, raw: &[u8]) {
        loop {
            match st.record.as_mut() {
                Some(r) if r.reaches_next() => {
                    r.hold(raw);
                    return;
                }
                // Judging may read lines again, and one of them may open a new record.
                Some(_) => self.resolve(st),
                None => break,
            }
        }
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let stripped;
        let line = if rules::has_terminal_bytes(line) && !(st.full && st.dump.in_block()) {
            stripped = rules::strip_terminal(line);
            &stripped[..]
        } else {
            line
        };
        self.process(st, line, raw.len());
    }

    /// Whether a held line may start a record of its own (an opener, or any security event).
    fn starts_record(&self, l: &[u8]) -> bool {
        let l = guard::text(l);
        self.opening(l).is_some()
            || anatomy(l)
                .is_some_and(|a| a.level == Level::Security && a.file == b"res_security_log.c")
    }

    /// The record a line opens, if any.
    fn opening(&self, l: &[u8]) -> Option<guard::Opening> {
        match anatomy(l) {
            Some(a) => guard::opening(&a, l, self.aggressive, self.services),
            None => guard::broken_opening(l),
        }
    }

    /// Judge an open record (see [`guard`]): credit the sender of its real tail, drop its
    /// field text and suspect lines, read the lines after its tail again.
    fn resolve(&mut self, st: &mut Stream<'_>) {
        let Some(r) = st.record.take() else {
            return;
        };
        let judgement = r.judge(|l| self.starts_record(l));
        let mut proven = match r.sender {
            Sender::Head(_, ip, _) => Some(ip),
            _ => r.proven,
        };
        let mut tail_line = None;
        let cut = match judgement {
            Judgement::Tail { line, marker } => {
                tail_line = line;
                if let Sender::Tail(Some(rule)) = r.sender {
                    match guard::tail_sender(r.form, r.strict, r.line(line), marker) {
                        Some((ip, tp)) => {
                            proven = Some(ip);
                            self.credit(st.id, rule, ip, tp, r.time, r.key, &r.opener);
                        }
                        None => self.counters.refused += 1,
                    }
                }
                let cut = line.map_or(0, |i| i + 1);
                if cut > 0 {
                    self.counters.injections += 1;
                }
                // The lines before the tail are field text; the tail line ends the record.
                self.counters.injected += cut.saturating_sub(1) as u64;
                cut
            }
            Judgement::Ambiguous | Judgement::Suspect => {
                if judgement == Judgement::Ambiguous {
                    self.counters.injections += 1;
                }
                self.counters.suspect += r.lines.len() as u64;
                if !r.lines.is_empty() {
                    *st.record = self.reopen(&r, proven);
                }
                r.lines.len()
            }
        };
        for (i, (_, l)) in r.lines[..cut].iter().enumerate() {
            if self.verbose && self.suppressed.len() < VERBOSE_CAP {
                self.suppressed.push(lossy(l, 512));
            }
            if tail_line == Some(i) {
                continue; // the real tail: credited above
            }
            // A held line naming the record's proven sender harms nobody else.
            let l = guard::text(l);
            if let (Some(p), Some(a)) = (proven, anatomy(l)) {
                if let Verdict::Failure {
                    rule,
                    ip,
                    transport,
                } = classify(&a, self.aggressive)
                {
                    if ip == p {
                        let t = self.time_of(st, &a);
                        let key = self.key(&a, t);
                        self.credit(st.id, rule, ip, transport, t, key, l);
                    }
                }
            }
        }
        for (_, l) in r.lines.into_iter().skip(cut) {
            self.take(st, &l);
        }
    }

    /// After suspect lines: the record opened by one of them whose field reaches furthest,
    /// if it reaches past them, held blind (everything suspect) to its end.
    fn reopen(&self, r: &Record, proven: Option<IpAddr>) -> Option<Record> {
        let mut best: Option<Record> = None;
        for (start, l) in &r.lines {
            let l = guard::text(l);
            let Some(op) = self.opening(l) else {
                continue;
            };
            let field_at = start + op.field;
            if field_at + op.cap < r.offset {
                continue;
            }
            let mut n = Record::new(&op, l, r.time, 0);
            n.offset = r.offset - field_at.min(r.offset);
            n.blind = true;
            n.sender = Sender::Nobody;
            n.proven = proven;
            if best
                .as_ref()
                .is_none_or(|b| b.cap - b.offset < n.cap - n.offset)
            {
                best = Some(n);
            }
        }
        best
    }

    /// The cross-file key of a line, when several files are followed (else unused).
    fn key(&self, a: &Anatomy<'_>, t: i64) -> u64 {
        if self.multi {
            line_key(a, t)
        } else {
            0
        }
    }

    /// A record that is its opener line alone: credit the sender its tail names.
    fn credit_one_line(
        &mut self,
        stream: u16,
        op: &guard::Opening,
        rule: Rule,
        line: &[u8],
        t: i64,
        key: u64,
    ) {
        let Some(m) = guard::tail_marker(op.form, line, op.field) else {
            return;
        };
        if m - op.field > op.cap {
            return;
        }
        match guard::tail_sender(op.form, op.strict, line, m) {
            Some((ip, tp)) => self.credit(stream, rule, ip, tp, t, key, line),
            None => self.counters.refused += 1,
        }
    }

    /// Count a failure of `ip`, once across followed files.
    #[allow(clippy::too_many_arguments)]
    fn credit(
        &mut self,
        stream: u16,
        rule: Rule,
        ip: IpAddr,
        transport: Option<Transport>,
        t: i64,
        key: u64,
        line: &[u8],
    ) {
        if self.multi && !self.dedup.admit(key, t, stream) {
            self.counters.duplicates += 1;
            return;
        }
        self.hit(ip, rule, transport, t, line);
    }

    fn time_of(&mut self, st: &mut Stream<'_>, a: &Anatomy<'_>) -> i64 {
        match a.stamp() {
            Some(s) => {
                let t = self.clock.unix(s);
                *st.last_time = Some(t);
                t
            }
            None => st.last_time.unwrap_or(self.clock.now),
        }
    }

    fn process(&mut self, st: &mut Stream<'_>, line: &[u8], orig_len: usize) {
        if st.full && st.dump.in_block() {
            let t = st.last_time.unwrap_or(self.clock.now);
            st.dump.feed(self.callids, line, orig_len, None, t);
            self.counters.dump_lines += 1;
            return;
        }
        // Trailing blanks (some syslog templates and copy-pasted logs add them) are no part
        // of the message; the guard's byte counts only get smaller, which is safe.
        let full_line = line;
        let line = line.trim_ascii_end();
        let anat = anatomy(line);
        if st.full {
            let t = match &anat {
                Some(a) => self.time_of(st, a),
                None => st.last_time.unwrap_or(self.clock.now),
            };
            if st
                .dump
                .feed(self.callids, full_line, orig_len, anat.as_ref(), t)
                == Feed::Consumed
            {
                self.counters.dump_lines += 1;
                return;
            }
        }
        let Some(a) = anat else {
            if let Some(op) = guard::broken_opening(line) {
                let t = st.last_time.unwrap_or(self.clock.now);
                *st.record = Some(Record::new(&op, line, t, 0));
            } else if !line.is_empty() {
                self.counters.orphan_lines += 1;
                if !foreign_program(line) {
                    self.counters.unparsed += 1;
                    if self.verbose
                        && self.unparsed.len() < VERBOSE_CAP
                        && input::looks_relevant(line, &FAILURE_WORDS)
                    {
                        self.unparsed.push(lossy(line, 1024));
                    }
                }
            }
            return;
        };
        if let Some(op) = guard::opening(&a, line, self.aggressive, self.services) {
            // Time and key only for a record that names a sender (most openers name none).
            let (t, key) = match op.sender {
                Sender::Head(..) | Sender::Tail(Some(_)) => {
                    let t = self.time_of(st, &a);
                    (t, self.key(&a, t))
                }
                _ => (st.last_time.unwrap_or(self.clock.now), 0),
            };
            match op.sender {
                Sender::Head(rule, ip, tp) => self.credit(st.id, rule, ip, tp, t, key, line),
                Sender::HeadRefused => self.counters.refused += 1,
                Sender::Tail(_) | Sender::Nobody => {}
            }
            if line.len() - op.field.min(line.len()) < op.cap {
                *st.record = Some(Record::new(&op, line, t, key));
            } else if let Sender::Tail(Some(rule)) = op.sender {
                // No later line can start inside the field: the record is this line, judged
                // now (the common case, without a copy).
                if op.tail {
                    self.credit_one_line(st.id, &op, rule, line, t, key);
                }
            }
            return;
        }
        if !matches!(a.level, Level::Notice | Level::Warning | Level::Security) {
            return;
        }
        let verdict = classify(&a, self.aggressive);
        match verdict {
            Verdict::Nothing => {
                if a.file == b"logger.c" && a.msg.starts_with(b"Log queue threshold") {
                    let t = self.time_of(st, &a);
                    self.callids.log_loss(t);
                } else if self.verbose
                    && self.unmatched.len() < VERBOSE_CAP
                    && rules::looks_like_failure(&a)
                {
                    self.unmatched.push(lossy(line, 1024));
                }
            }
            Verdict::Refused => {
                self.counters.refused += 1;
                if self.verbose && self.suppressed.len() < VERBOSE_CAP {
                    self.suppressed.push(lossy(line, 1024));
                }
            }
            Verdict::Failure {
                rule,
                ip,
                transport,
            } => {
                if a.level == Level::Security
                    && !self.services.counts(rules::security_service(a.msg))
                {
                    return;
                }
                let t = self.time_of(st, &a);
                let key = self.key(&a, t);
                self.credit(st.id, rule, ip, transport, t, key, line);
            }
            Verdict::Timeout { callid } => {
                let t = self.time_of(st, &a);
                if self.wire_map.is_some() && (st.full || !self.full_mode) {
                    if !st.full && self.multi && !self.dedup.admit(line_key(&a, t), t, st.id) {
                        self.counters.duplicates += 1;
                        return;
                    }
                    match self.attribute_with_wire(callid, t, st.full) {
                        Ok(ip) => self.hit(ip, Rule::SipInviteTimeout, None, t, line),
                        Err(why) => self.unattributed(callid, why),
                    }
                } else if st.full || (self.wire && !self.full_mode) {
                    if !st.full && self.multi && !self.dedup.admit(line_key(&a, t), t, st.id) {
                        self.counters.duplicates += 1;
                        return;
                    }
                    match self.callids.attribute(callid, t) {
                        Ok(ip) => self.hit(ip, Rule::SipInviteTimeout, None, t, line),
                        Err(why) => self.unattributed(callid, why),
                    }
                } else if !self.full_mode {
                    if self.multi && !self.dedup.admit(line_key(&a, t), t, st.id) {
                        self.counters.duplicates += 1;
                        return;
                    }
                    self.unattributed(callid, Unattributed::NoInvite);
                }
            }
        }
    }

    /// A timeout through the dumps of the full log (for its lines) and then the wire's map:
    /// the wire answers only what the dumps do not know (no INVITE with that Call-ID in them).
    fn attribute_with_wire(
        &self,
        callid: &[u8],
        t: i64,
        full: bool,
    ) -> Result<IpAddr, Unattributed> {
        let dumps = if full {
            self.callids.attribute(callid, t)
        } else {
            Err(Unattributed::NoInvite)
        };
        match (dumps, self.wire_map) {
            (Err(Unattributed::NoInvite), Some(w)) => w.attribute(callid, t),
            (r, _) => r,
        }
    }

    fn unattributed(&mut self, callid: &[u8], why: Unattributed) {
        self.counters.timeouts_unattributed += 1;
        *self
            .counters
            .unattributed_reasons
            .entry(why.name())
            .or_default() += 1;
        if self.verbose && self.unattributed.len() < VERBOSE_CAP {
            self.unattributed.push((lossy(callid, 256), why.name()));
        }
    }

    fn hit(&mut self, ip: IpAddr, rule: Rule, transport: Option<Transport>, t: i64, line: &[u8]) {
        self.counters.matched += 1;
        *self.counters.by_rule.entry(rule.name()).or_default() += 1;
        let timeout = rule == Rule::SipInviteTimeout;
        if timeout {
            self.counters.timeouts_attributed += 1;
        }
        let e = self.evidence.entry(ip).or_insert_with(|| Evidence {
            first: t,
            last: t,
            ..Evidence::default()
        });
        e.count += 1;
        if timeout {
            e.timeouts += 1;
        } else {
            e.failures += 1;
        }
        e.first = e.first.min(t);
        e.last = e.last.max(t);
        if !e.rules.contains(&rule.name()) {
            e.rules.push(rule.name());
        }
        if let Some(tp) = transport {
            if !e.transports.contains(&tp) {
                e.transports.push(tp);
            }
        }
        if self.keep_examples {
            e.example = Some(lossy(line, 512));
        }
        self.hits.push(Hit { ip, time: t });
    }

    /// Follow one file through the engine.
    fn follow_file(
        &mut self,
        path: &Path,
        id: u16,
        full: bool,
        fs: &mut FileState,
        (start, budget): (StartAt, &mut tail::Budget),
        on_hits: &mut dyn FnMut(&mut Vec<Hit>),
    ) -> std::io::Result<TailStats> {
        let prev = fs.cursor.clone();
        let mut st = Stream {
            id,
            full,
            dump: &mut fs.dump,
            last_time: &mut fs.last_time,
            record: &mut fs.record,
        };
        let (cursor, stats) = tail::follow(path, prev.as_ref(), start, budget, &mut |l| {
            self.feed(&mut st, l);
            if self.hits.len() >= 4096 {
                on_hits(&mut self.hits);
            }
        })?;
        if self.resolve_at_eof {
            self.resolve(&mut st);
        }
        on_hits(&mut self.hits);
        self.counters.long_lines += stats.long_lines;
        fs.cursor = cursor;
        Ok(stats)
    }
}

/// Words of a failure line, for samples of unparsed lines that look relevant.
const FAILURE_WORDS: [&[u8]; 8] = [
    b"fail",
    b"reject",
    b"wrong password",
    b"invalid",
    b"unauthorized",
    b"denied",
    b"no matching",
    b"authenticat",
];

/// Another program's syslog or journal line (a known wrapper, a tag that is not Asterisk's):
/// not an unparsed Asterisk line.
fn foreign_program(line: &[u8]) -> bool {
    match wrapper::unwrap(line) {
        Wrapper::Kernel(..) => true,
        Wrapper::Other(msg) => {
            let head = &line[..line.len() - msg.len()];
            memchr::memmem::find(head, b"asterisk").is_none()
        }
        Wrapper::Unparsed => false,
    }
}

/// Key for cross-file de-duplication: thread, source file, message and time.
fn line_key(a: &Anatomy<'_>, t: i64) -> u64 {
    let mut h = tail::fnv1a(a.lwp);
    h ^= tail::fnv1a(a.file).rotate_left(21);
    h ^= tail::fnv1a(a.msg).rotate_left(42);
    h ^ (t as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

// ---------------------------------------------------------------------------------------------
// run

/// Ban logic: `maxretry` failures within `findtime` → a ban with an increasing ban time.
struct Bans<'a> {
    s: &'a AsteriskSettings,
    now: i64,
    recent: &'a mut Offences<Vec<i64>>,
    records: &'a mut HashMap<IpAddr, BanRecord>,
    out: BTreeMap<IpAddr, Ban>,
}

impl Bans<'_> {
    fn ttl(&self, nth: u32) -> u32 {
        let f = self.s.increment_factor.max(1.0);
        let t = f64::from(self.s.bantime) * f.powi(nth.saturating_sub(1).min(64) as i32);
        let max = f64::from(self.s.increment_max.max(self.s.bantime));
        t.min(max) as u32
    }

    fn failure(&mut self, ip: IpAddr, t: i64) {
        let findtime = i64::from(self.s.findtime);
        let t = t.min(self.now);
        if t < self.now - findtime {
            return; // too old to count (history read on a first run)
        }
        let v = self.recent.entry(ip, failure_rank(self.now - findtime));
        let at = v.partition_point(|x| *x <= t);
        v.insert(at, t);
        let newest = v.last().copied().unwrap_or(t);
        v.retain(|x| *x >= newest - findtime);
        let in_window = v.iter().filter(|x| **x >= t - findtime && **x <= t).count();
        if in_window < self.s.maxretry.max(1) as usize {
            return;
        }
        self.recent.remove(&ip);
        let rec = self.records.entry(ip).or_default();
        rec.count = rec.count.saturating_add(1);
        rec.last = rec.last.max(t);
        let nth = rec.count;
        let ttl = self.ttl(nth);
        self.out.insert(
            ip,
            Ban {
                ip,
                seen: t,
                ttl,
                nth,
            },
        );
    }
}

/// An address's failure times ranked for eviction: the failures since `horizon` (now minus
/// `findtime`), then the latest one's time.
fn failure_rank(horizon: i64) -> impl Fn(&Vec<i64>) -> Rank {
    move |v| Rank {
        progress: v.iter().filter(|t| **t >= horizon).count() as u32,
        last: v.last().copied().unwrap_or(i64::MIN),
    }
}

fn prune_state(state: &mut DetectorState, s: &AsteriskSettings, now: i64) {
    let findtime = i64::from(s.findtime);
    state
        .recent
        .retain(|_, v| v.last().is_some_and(|t| *t >= now - findtime));
    // Bounded during the run already; a state saved larger is brought under the cap here.
    state
        .recent
        .shrink_to(MAX_ADDRESSES, &failure_rank(now - findtime));
    let forget = i64::from(s.increment_max.max(s.bantime));
    state.bans.retain(|_, r| r.last >= now - forget);
    if state.bans.len() > MAX_ADDRESSES {
        let mut lasts: Vec<i64> = state.bans.values().map(|r| r.last).collect();
        lasts.sort_unstable();
        let keep = lasts[lasts.len() - MAX_ADDRESSES];
        state.bans.retain(|_, r| r.last > keep);
    }
    state.callids.prune();
    state.dedup.prune();
    // Forget files no longer configured.
    let mut keep: Vec<String> = s.logs.iter().map(|p| p.display().to_string()).collect();
    if let Some(f) = &s.full_log {
        keep.push(f.display().to_string());
    }
    state.files.retain(|k, _| keep.contains(k));
}

/// One detector pass: read what is new in every configured file, match, correlate, count, and
/// return the bans as sightings plus evidence and counters. `now` is Unix seconds. A file that
/// cannot be read is reported in [`Detections::files`] and keeps its cursor; the others go on.
pub fn run(
    settings: &AsteriskSettings,
    state: &mut DetectorState,
    now: i64,
) -> Result<Detections, AsteriskError> {
    run_with_wire(settings, state, now, None)
}

/// [`run`] in the daemon, with the Call-ID map its wire inputs (HEP, live capture) keep: a
/// `Timeout on <Call-ID>` line in any followed file is attributed through it when the full
/// log's dumps (if one is followed) do not know that Call-ID. The map is only read.
pub fn run_with_wire(
    settings: &AsteriskSettings,
    state: &mut DetectorState,
    now: i64,
    wire: Option<&CallIdMap>,
) -> Result<Detections, AsteriskError> {
    if settings.logs.is_empty() && settings.full_log.is_none() && settings.journal.is_none() {
        return Err(AsteriskError::NoFiles);
    }
    let mut files: Vec<(PathBuf, bool)> =
        settings.logs.iter().map(|p| (p.clone(), false)).collect();
    if let Some(f) = &settings.full_log {
        files.push((f.clone(), true));
    }
    let DetectorState {
        files: file_states,
        recent,
        bans,
        callids,
        dedup,
        journal: journal_state,
        ..
    } = state;
    let mut engine = Engine {
        aggressive: settings.aggressive,
        services: settings.security_services,
        multi: files.len() + 2 * usize::from(settings.journal.is_some()) > 1,
        full_mode: settings.full_log.is_some(),
        keep_examples: true,
        wire_map: wire,
        ..Engine::new(Clock::new(settings.timezone, now), callids, dedup)
    };
    let mut ban = Bans {
        s: settings,
        now,
        recent,
        records: bans,
        out: BTreeMap::new(),
    };
    let mut reports = Vec::new();
    let mut budget = tail::Budget::new(settings.read_limit);
    for (i, (path, full)) in files.iter().enumerate() {
        let key = path.display().to_string();
        let fs = file_states.entry(key).or_default();
        // Hits are applied only when the read succeeded (to its end, or to where the read
        // limit cut it, which is where the cursor now stands): a failed read leaves the cursor
        // where it was, and the same lines will be read (and counted) again.
        let mut file_hits: Vec<Hit> = Vec::new();
        let mut on_hits = |hits: &mut Vec<Hit>| file_hits.append(hits);
        // Work on a copy so that a failed read leaves the stored state untouched.
        let mut work = fs.clone();
        let before = engine.counters.input();
        let r = engine.follow_file(
            path,
            i as u16,
            *full,
            &mut work,
            (settings.start, &mut budget),
            &mut on_hits,
        );
        let mut report = FileReport {
            path: path.clone(),
            full_log: *full,
            counts: engine.counters.input().since(before),
            ..FileReport::default()
        };
        match r {
            Ok(stats) => {
                *fs = work;
                report.tail = stats;
                for h in file_hits.drain(..) {
                    ban.failure(h.ip, h.time);
                }
            }
            Err(e) => {
                tracing::warn!("asterisk detector: {e}");
                report.error = Some(e.to_string());
            }
        }
        reports.push(report);
    }
    let mut journal_report = None;
    match &settings.journal {
        Some(j) => {
            let before = engine.counters.input();
            let (mut report, hits) = engine.follow_journal(
                j,
                journal_state.get_or_insert_with(Default::default),
                (files.len() as u16, now - i64::from(settings.findtime)),
                &mut budget,
            );
            for h in hits {
                ban.failure(h.ip, h.time);
            }
            let mut counts = engine.counters.input().since(before);
            counts.read += report.untrusted;
            counts.parsed += report.untrusted;
            counts.refused += report.untrusted;
            report.counts = counts;
            journal_report = Some(report);
        }
        None => *journal_state = None,
    }
    let counters = std::mem::take(&mut engine.counters);
    let evidence: BTreeMap<IpAddr, Evidence> = engine.evidence.drain().collect();
    let out = std::mem::take(&mut ban.out);
    drop(engine);
    drop(ban);
    prune_state(state, settings, now);
    let evicted = state.recent.take_evicted();
    state.evictions = state.evictions.saturating_add(evicted);
    let mut sightings = Vec::new();
    let mut bans_out = Vec::new();
    for (ip, b) in out {
        if b.seen + i64::from(b.ttl) > now {
            sightings.push(Sighting {
                net: net::host_net(ip),
                seen: b.seen,
                ttl: b.ttl,
            });
        }
        bans_out.push(b);
    }
    Ok(Detections {
        sightings,
        bans: bans_out,
        priority: settings.priority,
        counters,
        evidence,
        files: reports,
        journal: journal_report,
        evicted,
        evicted_total: state.evictions,
    })
}

// ---------------------------------------------------------------------------------------------
// scan

/// Options of [`scan_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanOptions {
    pub verbose: bool,
    pub aggressive: bool,
    /// See `asterisk.security_event_services`.
    pub security_services: SecurityServices,
    pub timezone: TimeZone,
}

/// Read `files` (and the SIP-debug `full` log) once from the start, change nothing, and report
/// what the rules find: matched lines per rule, per-address counts, attributed and unattributed
/// timeouts, and with `verbose` the lines that look like failures but matched no rule.
pub fn scan(
    files: &[PathBuf],
    full: Option<&Path>,
    verbose: bool,
) -> Result<ScanReport, AsteriskError> {
    scan_with(
        files,
        full,
        ScanOptions {
            verbose,
            ..ScanOptions::default()
        },
    )
}

impl<'a> Engine<'a> {
    /// An engine with every option off and nothing found yet; callers set their options.
    fn new(clock: Clock, callids: &'a mut CallIdMap, dedup: &'a mut Dedup) -> Engine<'a> {
        Engine {
            aggressive: false,
            services: SecurityServices::default(),
            verbose: false,
            multi: false,
            full_mode: false,
            wire: false,
            keep_examples: false,
            resolve_at_eof: false,
            clock,
            callids,
            wire_map: None,
            dedup,
            counters: Counters::default(),
            evidence: HashMap::new(),
            unmatched: Vec::new(),
            suppressed: Vec::new(),
            unattributed: Vec::new(),
            unparsed: Vec::new(),
            hits: Vec::new(),
        }
    }

    /// An engine for a one-off, read-only scan (`sipban scan`): every file read whole, an open
    /// injection window closed at the end, the clock's "now" read from the system.
    fn for_scan(
        opts: &ScanOptions,
        multi: bool,
        full_mode: bool,
        callids: &'a mut CallIdMap,
        dedup: &'a mut Dedup,
    ) -> Engine<'a> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Engine {
            aggressive: opts.aggressive,
            services: opts.security_services,
            verbose: opts.verbose,
            multi,
            full_mode,
            resolve_at_eof: true,
            ..Engine::new(Clock::new(opts.timezone, now), callids, dedup)
        }
    }

    /// What a scan found, moved into `report` (which holds the per-file lines).
    fn finish_scan(self, mut report: ScanReport) -> ScanReport {
        report.counters = self.counters;
        report.addresses = self.evidence.into_iter().collect();
        report.unmatched = self.unmatched;
        report.suppressed = self.suppressed;
        report.unattributed = self.unattributed;
        report.unparsed = self.unparsed;
        report
    }
}

/// [`scan`] with all options.
pub fn scan_with(
    files: &[PathBuf],
    full: Option<&Path>,
    opts: ScanOptions,
) -> Result<ScanReport, AsteriskError> {
    scan_files(files, full, opts, &mut CallIdMap::default(), false)
}

/// [`scan_with`] for logs whose scanner timeouts are attributed through `callids`, a Call-ID
/// map filled from SIP seen on the wire (`scan --pcap`).
pub fn scan_with_wire(
    files: &[PathBuf],
    opts: ScanOptions,
    callids: &mut CallIdMap,
) -> Result<ScanReport, AsteriskError> {
    scan_files(files, None, opts, callids, true)
}

fn scan_files(
    files: &[PathBuf],
    full: Option<&Path>,
    opts: ScanOptions,
    callids: &mut CallIdMap,
    wire: bool,
) -> Result<ScanReport, AsteriskError> {
    if files.is_empty() && full.is_none() {
        return Err(AsteriskError::NoFiles);
    }
    let mut list: Vec<(PathBuf, bool)> = files.iter().map(|p| (p.clone(), false)).collect();
    if let Some(f) = full {
        list.push((f.to_path_buf(), true));
    }
    let mut dedup = Dedup::default();
    let mut engine = Engine::for_scan(&opts, list.len() > 1, full.is_some(), callids, &mut dedup);
    engine.wire = wire;
    let mut report = ScanReport::default();
    for (i, (path, is_full)) in list.iter().enumerate() {
        // A missing file is an error here (the follower would wait for it); anything but a
        // regular file is refused by the follower, with what it is.
        if let Err(e) = std::fs::metadata(path) {
            return Err(AsteriskError::Io {
                path: path.clone(),
                source: e,
            });
        }
        let mut fs = FileState::default();
        let before = engine.counters.lines;
        let before_counts = engine.counters.input();
        let stats = engine
            .follow_file(
                path,
                i as u16,
                *is_full,
                &mut fs,
                (StartAt::Beginning, &mut tail::Budget::unlimited()),
                &mut |h| h.clear(),
            )
            .map_err(|source| AsteriskError::Io {
                path: path.clone(),
                source,
            })?;
        report.files.push(FileScan {
            path: path.clone(),
            full_log: *is_full,
            lines: engine.counters.lines - before,
            long_lines: stats.long_lines,
            counts: engine.counters.input().since(before_counts),
        });
    }
    Ok(engine.finish_scan(report))
}

/// [`scan_with`] over in-memory logs (tests, fuzzing): `logs` are the contents of the normal
/// log files, `full` that of the SIP-debug full log. A last line without a newline counts as
/// complete.
pub fn scan_bytes(logs: &[&[u8]], full: Option<&[u8]>, opts: ScanOptions) -> ScanReport {
    let mut list: Vec<(&[u8], bool)> = logs.iter().map(|d| (*d, false)).collect();
    if let Some(f) = full {
        list.push((f, true));
    }
    let (mut callids, mut dedup) = (CallIdMap::default(), Dedup::default());
    let mut engine = Engine::for_scan(
        &opts,
        list.len() > 1,
        full.is_some(),
        &mut callids,
        &mut dedup,
    );
    let mut report = ScanReport::default();
    for (i, (data, is_full)) in list.iter().enumerate() {
        let mut fs = FileState::default();
        let mut st = Stream {
            id: i as u16,
            full: *is_full,
            dump: &mut fs.dump,
            last_time: &mut fs.last_time,
            record: &mut fs.record,
        };
        let before = engine.counters.lines;
        let before_counts = engine.counters.input();
        let mut long = 0;
        // The empty piece `split` yields after a final newline is not a line: never fed (an
        // open injection window or dump block would take it as one).
        let body = data.strip_suffix(b"\n").unwrap_or(data);
        for line in body.split(|b| *b == b'\n').filter(|_| !data.is_empty()) {
            if line.len() > tail::MAX_LINE {
                long += 1;
                continue;
            }
            engine.feed(&mut st, line);
        }
        engine.resolve(&mut st);
        engine.hits.clear();
        engine.counters.long_lines += long;
        report.files.push(FileScan {
            path: PathBuf::from(format!("<memory {i}>")),
            full_log: *is_full,
            lines: engine.counters.lines - before,
            long_lines: long,
            counts: engine.counters.input().since(before_counts),
        });
    }
    engine.finish_scan(report)
}

fn fmt_time(t: i64) -> String {
    crate::clock::Iso(t).to_string()
}

impl fmt::Display for ScanReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counters;
        writeln!(f, "Files:")?;
        for file in &self.files {
            let n = &file.counts;
            writeln!(
                f,
                "  {}{}: {} lines: {} parsed, {} matched, {} refused, {} unparsed{}",
                file.path.display(),
                if file.full_log { " (full log)" } else { "" },
                file.lines,
                n.parsed,
                n.matched,
                n.refused,
                n.unparsed,
                if file.long_lines > 0 {
                    format!(", {} over 64 KiB skipped", file.long_lines)
                } else {
                    String::new()
                }
            )?;
        }
        if !self.unparsed.is_empty() {
            writeln!(
                f,
                "\nUnparsed lines that look like failures (in no layout sipban knows):"
            )?;
            for l in &self.unparsed {
                writeln!(f, "  {l}")?;
            }
        }
        writeln!(
            f,
            "\nLines: {} read, {} matched, {} duplicates, {} refused, {} in SIP dumps, {} without prefix",
            c.lines, c.matched, c.duplicates, c.refused, c.dump_lines, c.orphan_lines
        )?;
        writeln!(
            f,
            "Injection guard: {} records broken by a newline, {} lines of attacker text dropped, {} suspect lines not read (the guard's cost in genuine lines)",
            c.injections, c.injected, c.suspect
        )?;
        writeln!(f, "\nMatched lines per rule:")?;
        if c.by_rule.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for (rule, n) in &c.by_rule {
            writeln!(f, "  {rule:<28} {n:>9}")?;
        }
        writeln!(
            f,
            "\nINVITE timeouts: {} attributed, {} unattributed scanner timeouts",
            c.timeouts_attributed, c.timeouts_unattributed
        )?;
        for (why, n) in &c.unattributed_reasons {
            writeln!(f, "  unattributed, {why:<20} {n:>9}")?;
        }
        let mut addrs: Vec<(&IpAddr, &Evidence)> = self.addresses.iter().collect();
        addrs.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        writeln!(f, "\nAddresses: {}", addrs.len())?;
        for (ip, e) in addrs {
            writeln!(
                f,
                "  {:<39} {:>7}  {} .. {}  {}{}",
                ip.to_string(),
                e.count,
                fmt_time(e.first),
                fmt_time(e.last),
                e.rules.join(","),
                if e.timeouts > 0 {
                    format!(" ({} timeouts)", e.timeouts)
                } else {
                    String::new()
                }
            )?;
        }
        if !self.unmatched.is_empty() {
            writeln!(f, "\nLines that look like failures but matched no rule:")?;
            for l in &self.unmatched {
                writeln!(f, "  {l}")?;
            }
        }
        if !self.suppressed.is_empty() {
            writeln!(f, "\nRefused or suppressed lines:")?;
            for l in &self.suppressed {
                writeln!(f, "  {l}")?;
            }
        }
        if !self.unattributed.is_empty() {
            writeln!(f, "\nUnattributed timeouts (Call-ID, reason):")?;
            for (cid, why) in &self.unattributed {
                writeln!(f, "  {cid}  {why}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_and_time_format() {
        assert_eq!(fmt_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(fmt_time(1_676_815_415), "2023-02-19T14:03:35Z");
        assert_eq!(civil_year(rules::days_from_civil(2024, 12, 31)), 2024);
        assert_eq!(civil_year(rules::days_from_civil(2024, 1, 1)), 2024);
    }

    #[test]
    fn year_inference_and_offsets() {
        let now = rules::days_from_civil(2024, 1, 2) * 86_400; // 2024-01-02T00:00Z
        let mut c = Clock::new(TimeZone::FixedOffset(3600), now);
        let dec = Stamp::Local {
            year: None,
            month: 12,
            day: 31,
            secs: 3600,
        };
        assert_eq!(c.unix(dec), rules::days_from_civil(2023, 12, 31) * 86_400);
        let jan = Stamp::Local {
            year: None,
            month: 1,
            day: 1,
            secs: 0,
        };
        assert_eq!(
            c.unix(jan),
            rules::days_from_civil(2024, 1, 1) * 86_400 - 3600
        );
    }

    #[test]
    fn dedup_counts_repeats_in_one_file_but_not_copies() {
        let mut d = Dedup::default();
        assert!(d.admit(1, 10, 0));
        assert!(d.admit(1, 10, 0));
        assert!(!d.admit(1, 10, 1));
        assert!(!d.admit(1, 10, 1));
        assert!(d.admit(1, 10, 1));
    }
}
