//! Asterisk log line anatomy and the rule table.
//!
//! [`anatomy`] takes one physical line apart: an optional syslog/journald header (the program
//! tag must be `asterisk`), an optional bracketed Asterisk date, the level, the thread id and
//! call identifier, the **source file** and the message. It understands the default formatter
//! (`[date] LEVEL[lwp][C-..] file.c: msg`), the `[plain]` formatter and the syslog channel
//! (`LEVEL[lwp]: file.c:123 [in ]function: msg`) and dialplan `Log()` lines (`Ext. s`).
//!
//! [`classify`] then dispatches on (level, source file, message shape) to a [`Rule`]. The
//! address is taken only from the transport field the C code prints (the socket address, the
//! security event's `RemoteAddress`), validated and canonicalised by [`crate::net`]. A rule is
//! anchored at both ends on server-written text, so text from the dialplan, a SIP header or a
//! URI-decoded extension can neither pick the file (it is bound to the C source file and level)
//! nor move the address.
//!
//! This module must never resolve names, never allocate on the path of a benign line, and
//! never take an address from a user-controlled field (From/To headers, extensions, account
//! names, Call-IDs).

use crate::net;
use memchr::memmem;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Log level of a line (only NOTICE, WARNING and SECURITY lines can name an offender).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Notice,
    Warning,
    Security,
    Verbose,
    Other,
}

/// A date as written in the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stamp {
    /// Local wall-clock time; `year` is `None` for `%b %e %T` dates.
    Local {
        year: Option<i32>,
        month: u8,
        day: u8,
        secs: u32,
    },
    /// An absolute time (RFC 3339 syslog header with an offset), Unix seconds.
    Utc(i64),
}

/// One log line taken apart.
#[derive(Clone, Copy, Debug)]
pub struct Anatomy<'a> {
    /// The syslog header's date, if any.
    pub header_stamp: Option<Stamp>,
    /// The text inside the bracketed Asterisk date (empty when there is none); parsed lazily
    /// by [`Anatomy::stamp`], since most lines never need their time.
    pub date: &'a [u8],
    pub level: Level,
    /// The thread id digits (`[686]`).
    pub lwp: &'a [u8],
    /// Source file as printed (`chan_sip.c`, `res_pjsip/pjsip_distributor.c`, `Ext. s`).
    pub file: &'a [u8],
    pub msg: &'a [u8],
}

impl Anatomy<'_> {
    /// The line's date: the bracketed Asterisk date when it parses, else the syslog header's.
    pub fn stamp(&self) -> Option<Stamp> {
        if !self.date.is_empty() {
            if let Some(s) = bracket_date(self.date) {
                return Some(s);
            }
        }
        self.header_stamp
    }
}

/// Transport an offender used, where the line says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    Ws,
    Wss,
    Sctp,
}

impl Transport {
    fn parse(b: &[u8]) -> Option<Transport> {
        Some(match b {
            b"UDP" | b"udp" => Transport::Udp,
            b"TCP" | b"tcp" => Transport::Tcp,
            b"TLS" | b"tls" => Transport::Tls,
            b"WS" | b"ws" => Transport::Ws,
            b"WSS" | b"wss" => Transport::Wss,
            b"SCTP" | b"sctp" => Transport::Sctp,
            _ => return None,
        })
    }
}

/// The rules (names are stable: they appear in reports and state).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// chan_sip `Registration from '..' failed for 'ADDR' - <reason>`.
    SipRegistration,
    /// chan_sip `Call from '..' (ADDR) to extension '..' rejected because ...`.
    SipCallRejected,
    /// chan_sip `hacking attempt detected 'ADDR'` (old versions).
    SipHackingAttempt,
    /// res_pjsip distributor `Request '..' from '..' failed for 'ADDR' (callid: ..) - <reason>`.
    PjsipRequestFailed,
    /// res_pjsip_session `<name>: Call (TP:ADDR) to extension '..' rejected because ...`.
    PjsipCallRejected,
    /// res_security_log: FailedACL, InvalidAccountID, ChallengeResponseFailed, InvalidPassword.
    SecurityEvent,
    /// res_security_log, `aggressive` only: RequestBadFormat, InvalidTransport,
    /// UnexpectedAddress, AuthMethodNotAllowed, RequestNotAllowed.
    SecurityEventAggressive,
    /// manager.c `IP failed to authenticate as '..'` / `tried to authenticate with nonexistent user`.
    AmiAuthFailed,
    /// chan_iax2 `No registration for peer '..' (from IP)`.
    Iax2NoRegistration,
    /// chan_iax2 `Host ADDR failed MD5 authentication ...` / `failed to authenticate as ...`.
    Iax2AuthFailed,
    /// FreePBX dialplan `Log(WARNING, "Rejecting unknown SIP connection from ${CHANNEL(recvip)}")`.
    FreepbxUnknownConnection,
    /// chan_sip `Timeout on <Call-ID> on non-critical invite transaction.` attributed through
    /// the full log's SIP debug dumps.
    SipInviteTimeout,
}

impl Rule {
    pub const ALL: [Rule; 12] = [
        Rule::SipRegistration,
        Rule::SipCallRejected,
        Rule::SipHackingAttempt,
        Rule::PjsipRequestFailed,
        Rule::PjsipCallRejected,
        Rule::SecurityEvent,
        Rule::SecurityEventAggressive,
        Rule::AmiAuthFailed,
        Rule::Iax2NoRegistration,
        Rule::Iax2AuthFailed,
        Rule::FreepbxUnknownConnection,
        Rule::SipInviteTimeout,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Rule::SipRegistration => "sip_registration",
            Rule::SipCallRejected => "sip_call_rejected",
            Rule::SipHackingAttempt => "sip_hacking_attempt",
            Rule::PjsipRequestFailed => "pjsip_request_failed",
            Rule::PjsipCallRejected => "pjsip_call_rejected",
            Rule::SecurityEvent => "security_event",
            Rule::SecurityEventAggressive => "security_event_aggressive",
            Rule::AmiAuthFailed => "ami_auth_failed",
            Rule::Iax2NoRegistration => "iax2_no_registration",
            Rule::Iax2AuthFailed => "iax2_auth_failed",
            Rule::FreepbxUnknownConnection => "freepbx_unknown_connection",
            Rule::SipInviteTimeout => "sip_invite_timeout",
        }
    }
}

/// What one line means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    Failure {
        rule: Rule,
        ip: IpAddr,
        transport: Option<Transport>,
    },
    /// chan_sip `Timeout on <Call-ID> ...` (no address in the line).
    Timeout {
        callid: &'a [u8],
    },
    /// Looks like the shape of a rule but was refused (several candidate addresses, a bad
    /// address): counted, and shown by `scan --verbose`.
    Refused,
    Nothing,
}

// ---------------------------------------------------------------------------------------------
// anatomy

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

#[inline]
fn month(b: &[u8]) -> Option<u8> {
    // A match on the three bytes: integer compares, where a search of MONTHS calls memcmp.
    let m: [u8; 3] = b.get(..3)?.try_into().ok()?;
    let n = match &m {
        b"Jan" => 1,
        b"Feb" => 2,
        b"Mar" => 3,
        b"Apr" => 4,
        b"May" => 5,
        b"Jun" => 6,
        b"Jul" => 7,
        b"Aug" => 8,
        b"Sep" => 9,
        b"Oct" => 10,
        b"Nov" => 11,
        b"Dec" => 12,
        _ => return None,
    };
    debug_assert_eq!(MONTHS[n as usize - 1], &m);
    Some(n)
}

#[inline]
fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// `HH:MM:SS` at `at`, then an optional `.fraction`. Returns (seconds of day, end).
#[inline]
fn hms(b: &[u8], at: usize) -> Option<(u32, usize)> {
    let h = digits(b, at, 2)?;
    let m = digits(b, at + 3, 2)?;
    let s = digits(b, at + 6, 2)?;
    if b[at + 2] != b':' || b[at + 5] != b':' || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let mut end = at + 8;
    if b.get(end) == Some(&b'.') {
        end += 1;
        while b.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
    }
    Some((h * 3600 + m * 60 + s.min(59), end))
}

/// `Mon dd HH:MM:SS` / `Mon  d HH:MM:SS` / `Mon d ...` at the start of `b`.
pub(crate) fn bsd_date(b: &[u8]) -> Option<(Stamp, usize)> {
    let mon = month(b)?;
    if b.get(3) != Some(&b' ') {
        return None;
    }
    let mut i = 4;
    while b.get(i) == Some(&b' ') && i < 6 {
        i += 1;
    }
    let (day, len) = match digits(b, i, 2) {
        Some(d) => (d, 2),
        None => (digits(b, i, 1)?, 1),
    };
    i += len;
    if b.get(i) != Some(&b' ') || day == 0 || day > 31 {
        return None;
    }
    let (secs, end) = hms(b, i + 1)?;
    Some((
        Stamp::Local {
            year: None,
            month: mon,
            day: day as u8,
            secs,
        },
        end,
    ))
}

/// `YYYY-MM-DD[ T]HH:MM:SS[.frac]` at the start of `b`.
fn iso_date(b: &[u8]) -> Option<(i32, u8, u8, u32, usize)> {
    let y = digits(b, 0, 4)?;
    let mo = digits(b, 5, 2)?;
    let d = digits(b, 8, 2)?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b.get(10), Some(b' ' | b'T')) {
        return None;
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let (secs, end) = hms(b, 11)?;
    Some((y as i32, mo as u8, d as u8, secs, end))
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub fn days_from_civil(y: i32, m: u8, d: u8) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date inside `[...]`: ISO or BSD form.
fn bracket_date(inner: &[u8]) -> Option<Stamp> {
    if let Some((y, mo, d, secs, _)) = iso_date(inner) {
        return Some(Stamp::Local {
            year: Some(y),
            month: mo,
            day: d,
            secs,
        });
    }
    bsd_date(inner).map(|(s, _)| s)
}

/// RFC 3339 syslog timestamp at the start of `b`; returns (Unix seconds, end).
pub(crate) fn rfc3339(b: &[u8]) -> Option<(i64, usize)> {
    let (y, mo, d, secs, mut end) = iso_date(b)?;
    if b[10] != b'T' {
        return None;
    }
    let offset: i64 = match b.get(end)? {
        b'Z' => {
            end += 1;
            0
        }
        &c @ (b'+' | b'-') => {
            let hh = digits(b, end + 1, 2)?;
            let (mm, len) = if b.get(end + 3) == Some(&b':') {
                (digits(b, end + 4, 2)?, 6)
            } else {
                (digits(b, end + 3, 2)?, 5)
            };
            end += len;
            let o = i64::from(hh * 3600 + mm * 60);
            if c == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    Some((
        days_from_civil(y, mo, d) * 86_400 + i64::from(secs) - offset,
        end,
    ))
}

/// After a syslog date: ` host asterisk[pid]: ` (or `asterisk: `). Returns the end.
fn syslog_rest(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b' ') {
        return None;
    }
    host_tag(b, i + 1)
}

/// `host asterisk[pid]: ` starting at `i` (a syslog header without its date, as journald's
/// `-o cat`-style exports and fail2ban's journal tests write it). Returns the end.
fn host_tag(b: &[u8], mut i: usize) -> Option<usize> {
    let host_end = i + memchr::memchr(b' ', b.get(i..)?)?;
    if host_end == i {
        return None;
    }
    i = host_end + 1;
    let tag = b.get(i..)?;
    if !tag.starts_with(b"asterisk") {
        return None;
    }
    i += 8;
    if b.get(i) == Some(&b'[') {
        let close = i + memchr::memchr(b']', b.get(i..(i + 12).min(b.len()))?)?;
        if close == i + 1 || !b[i + 1..close].iter().all(u8::is_ascii_digit) {
            return None;
        }
        i = close + 1;
    }
    if b.get(i) != Some(&b':') || b.get(i + 1) != Some(&b' ') {
        return None;
    }
    Some(i + 2)
}

fn level_of(b: &[u8]) -> Level {
    match b {
        b"NOTICE" => Level::Notice,
        b"WARNING" => Level::Warning,
        b"SECURITY" => Level::Security,
        b"VERBOSE" => Level::Verbose,
        _ => Level::Other,
    }
}

/// Take one line apart (see the module doc). `None` when the line is not an Asterisk log line
/// (a continuation line, a dump line, another program's syslog line).
pub fn anatomy(line: &[u8]) -> Option<Anatomy<'_>> {
    let first = *line.first()?;
    if first.is_ascii_uppercase() && line.get(3) == Some(&b' ') {
        if let Some((s, end)) = bsd_date(line) {
            return match syslog_rest(line, end) {
                Some(p) => after_header(line, p, Some(s)),
                // Asterisk 1.2's file log: the date without brackets
                // (`Jan 27 11:19:34 NOTICE[11211]: chan_sip.c:11672 func: msg`).
                None => after_header(line, bare_date_end(line, end)?, Some(s)),
            };
        }
    } else if first.is_ascii_digit() {
        return match rfc3339(line) {
            Some((t, end)) => after_header(line, syslog_rest(line, end)?, Some(Stamp::Utc(t))),
            // Asterisk 1.2 with `dateformat=%F %T`: `2012-02-13 17:21:54 NOTICE[..]: ..`.
            None => {
                let (y, month, day, secs, end) = iso_date(line)?;
                let s = Stamp::Local {
                    year: Some(y),
                    month,
                    day,
                    secs,
                };
                after_header(line, bare_date_end(line, end)?, Some(s))
            }
        };
    }
    match after_header(line, 0, None) {
        Some(a) => Some(a),
        // `host asterisk[pid]: ...` without a date.
        None if first != b'[' => after_header(line, host_tag(line, 0)?, None),
        None => None,
    }
}

/// After a bracketless Asterisk date: one space, then the level (an upper-case letter).
fn bare_date_end(line: &[u8], end: usize) -> Option<usize> {
    (line.get(end) == Some(&b' ') && line.get(end + 1).is_some_and(u8::is_ascii_uppercase))
        .then_some(end + 1)
}

/// The length of a syslog or journal header (`Feb 19 15:03:31 pbx asterisk[1180]: `, the
/// RFC 3339 form, `host asterisk[pid]: `) at the start of `line`; 0 without one. The injection
/// guard counts a held line's field bytes after it: the header is the log writer's, not text
/// from Asterisk's message.
pub fn header_len(line: &[u8]) -> usize {
    let Some(&first) = line.first() else {
        return 0;
    };
    let end = if first.is_ascii_uppercase() {
        bsd_date(line).and_then(|(_, end)| syslog_rest(line, end))
    } else if first.is_ascii_digit() {
        rfc3339(line).and_then(|(_, end)| syslog_rest(line, end))
    } else {
        None
    };
    end.or_else(|| (first != b'[').then(|| host_tag(line, 0)).flatten())
        .unwrap_or(0)
}

/// The Asterisk part of a line, from `p` (after any syslog header).
fn after_header(line: &[u8], mut p: usize, header_stamp: Option<Stamp>) -> Option<Anatomy<'_>> {
    let mut date: &[u8] = &[];
    if line.get(p) == Some(&b'[') {
        let close = p + memchr::memchr(b']', line.get(p..(p + 48).min(line.len()))?)?;
        date = &line[p + 1..close];
        if line.get(close + 1) != Some(&b' ') {
            return None;
        }
        p = close + 2;
    }
    // LEVEL
    let lstart = p;
    while line.get(p).is_some_and(u8::is_ascii_uppercase) {
        p += 1;
    }
    if p == lstart || p - lstart > 12 {
        return None;
    }
    let level = level_of(&line[lstart..p]);
    if line.get(p) == Some(&b' ') {
        p += 1;
    }
    // [lwp]
    if line.get(p) != Some(&b'[') {
        return None;
    }
    let lwp_start = p + 1;
    p = lwp_start;
    while line.get(p).is_some_and(u8::is_ascii_digit) {
        p += 1;
    }
    if p == lwp_start || line.get(p) != Some(&b']') {
        return None;
    }
    let lwp = &line[lwp_start..p];
    p += 1;
    // [C-xxxxxxxx]
    if line.get(p) == Some(&b'[')
        && line.get(p + 1) == Some(&b'C')
        && line.get(p + 2) == Some(&b'-')
    {
        let mut q = p + 3;
        while line.get(q).is_some_and(u8::is_ascii_hexdigit) {
            q += 1;
        }
        if line.get(q) != Some(&b']') {
            return None;
        }
        p = q + 1;
    }
    match line.get(p) {
        Some(b' ') => {
            // default formatter: `file.c: msg`
            p += 1;
            let colon = p + memchr::memchr(b':', &line[p..])?;
            let file = &line[p..colon];
            if !valid_file(file) {
                return None;
            }
            let msg = match line.get(colon + 1) {
                None => &line[colon + 1..],
                Some(b' ') => &line[colon + 2..],
                Some(_) => return None,
            };
            Some(Anatomy {
                header_stamp,
                date,
                level,
                lwp,
                file,
                msg,
            })
        }
        Some(b':') if line.get(p + 1) == Some(&b' ') => {
            // plain formatter / syslog: `file.c:123 [in ]function: msg`
            p += 2;
            let colon = p + memchr::memchr(b':', &line[p..])?;
            let file = &line[p..colon];
            if !valid_file(file) {
                return None;
            }
            let mut q = colon + 1;
            let dstart = q;
            while line.get(q).is_some_and(u8::is_ascii_digit) {
                q += 1;
            }
            if q == dstart || line.get(q) != Some(&b' ') {
                return None;
            }
            q += 1;
            if line[q..].starts_with(b"in ") {
                q += 3;
            }
            let fstart = q;
            if line.get(q) == Some(&b'@') {
                // dialplan Log(): "@ context"
                q += 1;
                if line.get(q) != Some(&b' ') {
                    return None;
                }
                q += 1;
                while line.get(q).is_some_and(|c| *c != b':' && *c != b' ') {
                    q += 1;
                }
            } else {
                while line
                    .get(q)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                {
                    q += 1;
                }
            }
            if q == fstart || line.get(q) != Some(&b':') {
                return None;
            }
            let msg = match line.get(q + 1) {
                None => &line[q + 1..],
                Some(b' ') => &line[q + 2..],
                Some(_) => return None,
            };
            Some(Anatomy {
                header_stamp,
                date,
                level,
                lwp,
                file,
                msg,
            })
        }
        _ => None,
    }
}

/// Whether a line carries terminal output that `term_strip()` would have removed in a file
/// log: ANSI escape sequences (console capture by journald), the same escaped by rsyslog
/// (`#033[1;33m`, NethServer 8), or verbose "magic" bytes. One pass over the line.
pub fn has_terminal_bytes(line: &[u8]) -> bool {
    line.first().is_some_and(|b| *b >= 0xF5)
        || memchr::memchr2_iter(0x1b, b'#', line)
            .any(|i| line[i] == 0x1b || line[i + 1..].starts_with(b"033["))
}

/// The length of a colour sequence (SGR: `ESC [` digits and `;` `m`, or rsyslog's `#033[..m`)
/// at the start of `b`, if one is there. Only complete SGR sequences are removed: an ESC (or
/// `#033`) that an attacker wrote into a field and that is not closed by `m` right after its
/// digits stays, so it can never swallow the server text after the field (a sender's address,
/// say) the way a terminal would.
fn sgr_len(b: &[u8]) -> Option<usize> {
    let body = if b.first() == Some(&0x1b) {
        1
    } else if b.starts_with(b"#033") {
        4
    } else {
        return None;
    };
    if b.get(body) != Some(&b'[') {
        return None;
    }
    let n = b[body + 1..]
        .iter()
        .take(16)
        .take_while(|c| c.is_ascii_digit() || **c == b';')
        .count();
    (b.get(body + 1 + n) == Some(&b'm')).then_some(body + 2 + n)
}

/// `line` without colour sequences (see [`sgr_len`]) and leading verbose magic bytes
/// (0xF5-0xFF).
pub fn strip_terminal(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() && line[i] >= 0xF5 {
        i += 1;
    }
    while i < line.len() {
        if matches!(line[i], 0x1b | b'#') {
            if let Some(n) = sgr_len(&line[i..]) {
                i += n;
                continue;
            }
        }
        out.push(line[i]);
        i += 1;
    }
    out
}

/// A source file token: `name.c` (with an optional directory) or a dialplan `Ext. <exten>`.
fn valid_file(f: &[u8]) -> bool {
    if f.starts_with(b"Ext. ") {
        return true;
    }
    f.len() > 2
        && f.ends_with(b".c")
        && f.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'/' | b'-'))
}

// ---------------------------------------------------------------------------------------------
// addresses

fn addr_chars(b: &[u8]) -> bool {
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_hexdigit() || *c == b':' || *c == b'.')
}

fn port_ok(b: &[u8]) -> bool {
    !b.is_empty()
        && b.len() <= 5
        && b.iter().all(u8::is_ascii_digit)
        && b.iter().fold(0u32, |v, c| v * 10 + u32::from(c - b'0')) <= 65_535
}

fn ip_text(b: &[u8]) -> Option<IpAddr> {
    if !addr_chars(b) {
        return None;
    }
    // addr_chars guarantees ASCII.
    net::parse_ip(std::str::from_utf8(b).ok()?)
}

/// A bare address as `ast_sockaddr_stringify_addr` prints it: `1.2.3.4` or `2001:db8::1`
/// (brackets tolerated).
pub fn parse_bare_ip(b: &[u8]) -> Option<IpAddr> {
    if let Some(inner) = b.strip_prefix(b"[").and_then(|r| r.strip_suffix(b"]")) {
        return ip_text(inner);
    }
    ip_text(b)
}

/// An address as `ast_sockaddr_stringify`/`pj_sockaddr_print` print it: `1.2.3.4`,
/// `1.2.3.4:5060`, `[2001:db8::1]`, `[2001:db8::1]:5060`.
pub fn parse_addrport(b: &[u8]) -> Option<IpAddr> {
    if let Some(rest) = b.strip_prefix(b"[") {
        let close = memchr::memchr(b']', rest)?;
        let after = &rest[close + 1..];
        if !after.is_empty() {
            let port = after.strip_prefix(b":")?;
            if !port_ok(port) {
                return None;
            }
        }
        return ip_text(&rest[..close]);
    }
    match memchr::memchr(b':', b) {
        None => ip_text(b),
        Some(i) => {
            if !port_ok(&b[i + 1..]) {
                return None;
            }
            let host = &b[..i];
            if !host.iter().all(|c| c.is_ascii_digit() || *c == b'.') {
                return None;
            }
            ip_text(host)
        }
    }
}

/// `[TP:]ADDR` inside `( )` of the call-rejected lines.
fn transport_addr(b: &[u8]) -> Option<(IpAddr, Option<Transport>)> {
    if let Some(i) = memchr::memchr(b':', b) {
        if let Some(tp) = Transport::parse(&b[..i]) {
            return parse_addrport(&b[i + 1..]).map(|ip| (ip, Some(tp)));
        }
    }
    parse_addrport(b).map(|ip| (ip, None))
}

// ---------------------------------------------------------------------------------------------
// rules

/// A forward searcher for a fixed needle, built once (building one costs more than a search
/// in a short line).
macro_rules! fwd {
    ($needle:expr) => {{
        static F: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| memchr::memmem::Finder::new($needle));
        &*F
    }};
}
pub(crate) use fwd;

/// A reverse searcher for a fixed needle, built once.
macro_rules! rev {
    ($needle:expr) => {{
        static F: std::sync::LazyLock<memchr::memmem::FinderRev<'static>> =
            std::sync::LazyLock::new(|| memchr::memmem::FinderRev::new($needle));
        &*F
    }};
}
pub(crate) use rev;

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memmem::find(hay, needle)
}

const REG_REASONS: [&[u8]; 7] = [
    b"Wrong password",
    b"Username/auth name mismatch",
    b"No matching peer found",
    b"Not a local domain",
    b"Device does not match ACL",
    b"Peer is not supposed to register",
    b"ACL error (permit/deny)",
];

fn sip_registration(msg: &[u8]) -> Verdict<'_> {
    let Some(sep) = rev!(b"' - ").rfind(msg) else {
        return Verdict::Nothing;
    };
    if !REG_REASONS.contains(&&msg[sep + 4..]) {
        return Verdict::Nothing;
    }
    let head = &msg[..sep];
    let Some(i) = rev!(b"' failed for '").rfind(head) else {
        return Verdict::Nothing;
    };
    match parse_addrport(&head[i + 14..]) {
        Some(ip) => Verdict::Failure {
            rule: Rule::SipRegistration,
            ip,
            transport: None,
        },
        None => Verdict::Refused,
    }
}

pub const CTX_TAIL: &[u8] = b"' rejected because extension not found in context '";

/// Where a call-rejected message's tail starts, if it has one.
pub fn call_tail(msg: &[u8]) -> Option<usize> {
    extension_tail(msg)
}

/// The server-written tail `' rejected because extension not found in context '<ctx>'.`:
/// returns where it starts.
fn extension_tail(line: &[u8]) -> Option<usize> {
    let body = line.strip_suffix(b"'.")?;
    let i = rev!(CTX_TAIL).rfind(body)?;
    if memchr::memchr(b'\'', &body[i + CTX_TAIL.len()..]).is_some() {
        return None;
    }
    Some(i)
}

/// `(ADDR) to extension '` right after the name, parsed left to right: the extension (user
/// data) comes after the address and cannot move it.
fn call_head(rest: &[u8]) -> Option<(IpAddr, Option<Transport>, usize)> {
    let rest2 = rest.strip_prefix(b"(")?;
    let close = memchr::memchr(b')', rest2)?;
    let (ip, tp) = transport_addr(&rest2[..close])?;
    let after = &rest2[close..];
    if !after.starts_with(b") to extension '") {
        return None;
    }
    Some((ip, tp, 1 + close + 16))
}

/// The head of a call-rejected line, for the injection guard.
pub enum CallHead {
    /// The address parsed; the extension (attacker text) starts at `ext` in the message.
    Parsed {
        ip: IpAddr,
        transport: Option<Transport>,
        ext: usize,
    },
    /// The head did not parse (a name carried the newline, or a bad address): the remote text
    /// starts at `from` in the message.
    Unparsed { from: usize },
}

/// Whether `msg` starts a call-rejected message (chan_sip `Call from '`, res_pjsip_session
/// `<endpoint>: Call (` or its 13 form), and its head.
pub fn call_opener(msg: &[u8], pjsip: bool) -> Option<CallHead> {
    let (rest, from) = if let Some(r) = msg.strip_prefix(b"Call from '") {
        let Some(q) = memchr::memchr(b'\'', r) else {
            return Some(CallHead::Unparsed { from: 11 });
        };
        match r[q + 1..].strip_prefix(b" ") {
            Some(rest) => (rest, 11),
            None => return Some(CallHead::Unparsed { from: 11 }),
        }
    } else if pjsip {
        let lead = msg.len() - msg.trim_ascii_start().len();
        let t = &msg[lead..];
        let i = fwd!(b": Call (").find(t)?;
        if i == 0 || t[..i].contains(&b' ') {
            return None;
        }
        (&t[i + 7..], lead + i + 7)
    } else {
        return None;
    };
    match call_head(rest) {
        Some((ip, transport, len)) => Some(CallHead::Parsed {
            ip,
            transport,
            ext: msg.len() - rest.len() + len,
        }),
        None => Some(CallHead::Unparsed { from }),
    }
}

fn call_rejected(msg: &[u8], rule: Rule, pjsip: bool) -> Verdict<'_> {
    // chan_sip and res_pjsip_session (13): "Call from '<name>' (ADDR) to extension ..."
    // res_pjsip_session (16+): " <name>: Call (TP:ADDR) to extension ..."
    let rest = if let Some(r) = msg.strip_prefix(b"Call from '") {
        let Some(q) = memchr::memchr(b'\'', r) else {
            return Verdict::Nothing;
        };
        let Some(r) = r[q + 1..].strip_prefix(b" ") else {
            return Verdict::Nothing;
        };
        r
    } else if pjsip {
        let t = msg.trim_ascii_start();
        let Some(i) = fwd!(b": Call (").find(t) else {
            return Verdict::Nothing;
        };
        if i == 0 || t[..i].contains(&b' ') {
            return Verdict::Nothing;
        }
        &t[i + 7..]
    } else {
        return Verdict::Nothing;
    };
    let Some((ip, transport, _)) = call_head(rest) else {
        return if rest.starts_with(b"(") && fwd!(b") to extension '").find(rest).is_some() {
            Verdict::Refused
        } else {
            Verdict::Nothing
        };
    };
    if extension_tail(msg).is_none() {
        // The extension went on over a newline: an opener for the injection guard.
        return Verdict::Nothing;
    }
    Verdict::Failure {
        rule,
        ip,
        transport,
    }
}

fn hacking(msg: &[u8]) -> Verdict<'_> {
    let Some(a) = msg
        .strip_prefix(b"hacking attempt detected '")
        .and_then(|r| r.strip_suffix(b"'"))
    else {
        return Verdict::Nothing;
    };
    match parse_addrport(a) {
        Some(ip) => Verdict::Failure {
            rule: Rule::SipHackingAttempt,
            ip,
            transport: None,
        },
        None => Verdict::Refused,
    }
}

const PJ_REASONS: [&[u8]; 5] = [
    b"No matching endpoint found",
    b"Not match Endpoint ACL",
    b"Not match Endpoint Contact ACL",
    b"Failed to authenticate",
    b"Error to authenticate",
];

/// `<reason>` or `<reason> after N tries in X.Y ms`.
fn pj_reason_ok(r: &[u8]) -> bool {
    for reason in PJ_REASONS {
        if let Some(rest) = r.strip_prefix(reason) {
            if rest.is_empty() {
                return true;
            }
            let Some(rest) = rest.strip_prefix(b" after ") else {
                continue;
            };
            let n = rest.iter().take_while(|c| c.is_ascii_digit()).count();
            let Some(rest) = rest.get(n..).and_then(|r| r.strip_prefix(b" tries in ")) else {
                continue;
            };
            let n2 = rest
                .iter()
                .take_while(|c| c.is_ascii_digit() || **c == b'.')
                .count();
            if n > 0 && n2 > 0 && &rest[n2..] == b" ms" {
                return true;
            }
        }
    }
    false
}

fn pjsip_request(msg: &[u8]) -> Verdict<'_> {
    let Some(rest) = msg.strip_prefix(b"Request ") else {
        return Verdict::Nothing;
    };
    let rest = if let Some(r) = rest.strip_prefix(b"'") {
        let Some(q) = memchr::memchr(b'\'', r) else {
            return Verdict::Nothing;
        };
        match r[q + 1..].strip_prefix(b" ") {
            Some(r) => r,
            None => return Verdict::Nothing,
        }
    } else {
        rest
    };
    if !rest.starts_with(b"from '") {
        return Verdict::Nothing;
    }
    let Some(sep) = rev!(b") - ").rfind(msg) else {
        return Verdict::Nothing;
    };
    if !pj_reason_ok(&msg[sep + 4..]) {
        return Verdict::Nothing;
    }
    // From (before) and Call-ID (after) are both user data: every "' failed for 'ADDR' (callid: "
    // segment is a candidate, and there must be exactly one distinct address.
    let mut found: Option<IpAddr> = None;
    let mut any = false;
    for i in fwd!(b"' failed for '").find_iter(msg) {
        let seg = &msg[i + 14..];
        let Some(q) = memchr::memchr(b'\'', seg) else {
            continue;
        };
        if !seg[q..].starts_with(b"' (callid: ") {
            continue;
        }
        any = true;
        match parse_addrport(&seg[..q]) {
            Some(ip) => match found {
                None => found = Some(ip),
                Some(f) if f == ip => {}
                Some(_) => return Verdict::Refused,
            },
            None => return Verdict::Refused,
        }
    }
    match found {
        Some(ip) => Verdict::Failure {
            rule: Rule::PjsipRequestFailed,
            ip,
            transport: None,
        },
        None if any => Verdict::Refused,
        None => Verdict::Nothing,
    }
}

const SEC_DEFAULT: [&[u8]; 4] = [
    b"FailedACL",
    b"InvalidAccountID",
    b"ChallengeResponseFailed",
    b"InvalidPassword",
];
const SEC_AGGRESSIVE: [&[u8]; 5] = [
    b"RequestBadFormat",
    b"InvalidTransport",
    b"UnexpectedAddress",
    b"AuthMethodNotAllowed",
    b"RequestNotAllowed",
];
/// Event types that print user-controlled fields *after* RemoteAddress (digest response,
/// received challenge/hash, request parameters): there, every RemoteAddress in the line must
/// name the same address.
const SEC_USER_TAIL: [&[u8]; 7] = [
    b"ChallengeResponseFailed",
    b"InvalidPassword",
    b"RequestBadFormat",
    b"InvalidTransport",
    b"UnexpectedAddress",
    b"AuthMethodNotAllowed",
    b"RequestNotAllowed",
];

const RA: &[u8] = b",RemoteAddress=\"";

/// `IPV4/UDP/1.2.3.4/5060` or `IPV6/2001:db8::1/5060` (transport optional).
fn ra_value(v: &[u8]) -> Option<(IpAddr, Option<Transport>)> {
    let rest = v
        .strip_prefix(b"IPV4/")
        .or_else(|| v.strip_prefix(b"IPV6/"))?;
    let last = memchr::memrchr(b'/', rest)?;
    if !port_ok(&rest[last + 1..]) {
        return None;
    }
    let mid = &rest[..last];
    let (tp, addr) = match memchr::memchr(b'/', mid) {
        Some(i) => (Some(Transport::parse(&mid[..i])?), &mid[i + 1..]),
        None => (None, mid),
    };
    Some((ip_text(addr)?, tp))
}

/// `(,\w+="[^"]*")*` to the end, without another RemoteAddress.
fn well_formed_tail(mut t: &[u8]) -> bool {
    while !t.is_empty() {
        let Some(r) = t.strip_prefix(b",") else {
            return false;
        };
        let n = r
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
            .count();
        if n == 0 || &r[..n] == b"RemoteAddress" {
            return false;
        }
        let Some(v) = r[n..].strip_prefix(b"=\"") else {
            return false;
        };
        let Some(q) = memchr::memchr(b'"', v) else {
            return false;
        };
        t = &v[q + 1..];
    }
    true
}

/// The last `RemoteAddress` of a security event line, when it and the rest of the line are
/// well-formed.
fn last_remote_address(line: &[u8]) -> Option<(IpAddr, Option<Transport>)> {
    let i = rev!(RA).rfind(line)?;
    let v = &line[i + RA.len()..];
    let q = memchr::memchr(b'"', v)?;
    if !well_formed_tail(&v[q + 1..]) {
        return None;
    }
    ra_value(&v[..q])
}

/// The rule a security event type counts under, if any.
/// The `Service` of a security event message (server text before the account).
pub fn security_service(msg: &[u8]) -> &[u8] {
    let head = match fwd!(b"AccountID=\"").find(msg) {
        Some(i) => &msg[..i],
        None => msg,
    };
    fwd!(b",Service=\"")
        .find(head)
        .and_then(|i| head[i + 10..].split(|c| *c == b'"').next())
        .unwrap_or_default()
}

/// The event type of a security event message (`SecurityEvent="<type>"...`).
pub fn security_type(msg: &[u8]) -> &[u8] {
    let rest = msg.strip_prefix(b"SecurityEvent=\"").unwrap_or_default();
    rest.split(|c| *c == b'"').next().unwrap_or_default()
}

/// Whether events of type `ty` print remote text after `RemoteAddress` (see [`security_tail`]).
pub fn security_strict(ty: &[u8]) -> bool {
    SEC_USER_TAIL.contains(&ty)
}

pub fn security_rule(ty: &[u8], aggressive: bool) -> Option<Rule> {
    if SEC_DEFAULT.contains(&ty) {
        Some(Rule::SecurityEvent)
    } else if aggressive && SEC_AGGRESSIVE.contains(&ty) {
        Some(Rule::SecurityEventAggressive)
    } else {
        None
    }
}

/// The sender named by a security event of type `ty` whose server text after the account is
/// `rest`: its last `RemoteAddress`, well-formed to the end of the line. For types that print
/// remote text after it (a digest, a request), every `RemoteAddress` in `rest` must name the
/// same address: the raw fields (a PJSIP Call-ID before it, a digest after it) may carry
/// decoys.
pub fn security_tail(rest: &[u8], strict: bool) -> Option<(IpAddr, Option<Transport>)> {
    let (ip, tp) = last_remote_address(rest)?;
    if !strict {
        return Some((ip, tp));
    }
    for i in fwd!(RA).find_iter(rest) {
        let v = &rest[i + RA.len()..];
        let q = memchr::memchr(b'"', v)?;
        match ra_value(&v[..q]) {
            Some((other, _)) if other == ip => {}
            _ => return None,
        }
    }
    Some((ip, tp))
}

fn security(msg: &[u8], aggressive: bool) -> Verdict<'_> {
    let Some(rest) = msg.strip_prefix(b"SecurityEvent=\"") else {
        return Verdict::Nothing;
    };
    let Some(q) = memchr::memchr(b'"', rest) else {
        return Verdict::Nothing;
    };
    let ty = &rest[..q];
    let Some((ip, transport)) = last_remote_address(msg) else {
        return Verdict::Nothing;
    };
    let Some(rule) = security_rule(ty, aggressive) else {
        return Verdict::Nothing;
    };
    if SEC_USER_TAIL.contains(&ty) {
        for i in fwd!(RA).find_iter(msg) {
            let v = &msg[i + RA.len()..];
            if let Some(q) = memchr::memchr(b'"', v) {
                if let Some((other, _)) = ra_value(&v[..q]) {
                    if other != ip {
                        return Verdict::Refused;
                    }
                }
            }
        }
    }
    Verdict::Failure {
        rule,
        ip,
        transport,
    }
}

fn ami(msg: &[u8]) -> Verdict<'_> {
    let Some(sp) = memchr::memchr(b' ', msg) else {
        return Verdict::Nothing;
    };
    let rest = &msg[sp..];
    let shaped = (rest.starts_with(b" failed to authenticate as '")
        || rest.starts_with(b" tried to authenticate with nonexistent user '"))
        && rest.ends_with(b"'");
    if !shaped {
        return Verdict::Nothing;
    }
    match parse_bare_ip(&msg[..sp]) {
        Some(ip) => Verdict::Failure {
            rule: Rule::AmiAuthFailed,
            ip,
            transport: Some(Transport::Tcp),
        },
        None => Verdict::Refused,
    }
}

fn iax2(msg: &[u8]) -> Verdict<'_> {
    let udp = Some(Transport::Udp);
    if msg.starts_with(b"No registration for peer '") {
        let Some(body) = msg.strip_suffix(b")") else {
            return Verdict::Nothing;
        };
        let Some(i) = rev!(b"' (from ").rfind(body) else {
            return Verdict::Nothing;
        };
        return match parse_bare_ip(&body[i + 8..]) {
            Some(ip) => Verdict::Failure {
                rule: Rule::Iax2NoRegistration,
                ip,
                transport: udp,
            },
            None => Verdict::Refused,
        };
    }
    if let Some(rest) = msg.strip_prefix(b"Host ") {
        let Some(sp) = memchr::memchr(b' ', rest) else {
            return Verdict::Nothing;
        };
        let tail = &rest[sp..];
        let md5 = tail.starts_with(b" failed MD5 authentication for '") && tail.ends_with(b")");
        let plain = tail.starts_with(b" failed to authenticate as ");
        if !(md5 || plain) {
            return Verdict::Nothing;
        }
        return match parse_addrport(&rest[..sp]) {
            Some(ip) => Verdict::Failure {
                rule: Rule::Iax2AuthFailed,
                ip,
                transport: udp,
            },
            None => Verdict::Refused,
        };
    }
    Verdict::Nothing
}

fn freepbx(msg: &[u8]) -> Verdict<'_> {
    let Some(a) = msg
        .strip_prefix(b"\"Rejecting unknown SIP connection from ")
        .and_then(|r| r.strip_suffix(b"\""))
    else {
        return Verdict::Nothing;
    };
    match parse_bare_ip(a).or_else(|| parse_addrport(a)) {
        Some(ip) => Verdict::Failure {
            rule: Rule::FreepbxUnknownConnection,
            ip,
            transport: None,
        },
        None => Verdict::Refused,
    }
}

fn timeout(msg: &[u8]) -> Verdict<'_> {
    match msg
        .strip_prefix(b"Timeout on ")
        .and_then(|r| r.strip_suffix(b" on non-critical invite transaction."))
    {
        Some(cid) if !cid.is_empty() => Verdict::Timeout { callid: cid },
        _ => Verdict::Nothing,
    }
}

/// Dispatch on (level, source file, message shape).
pub fn classify<'a>(a: &Anatomy<'a>, aggressive: bool) -> Verdict<'a> {
    let msg = a.msg;
    match a.level {
        Level::Security => {
            if a.file == b"res_security_log.c" {
                security(msg, aggressive)
            } else {
                Verdict::Nothing
            }
        }
        Level::Notice | Level::Warning => match a.file {
            b"chan_sip.c" => match msg.first() {
                Some(b'R') if msg.starts_with(b"Registration from '") => sip_registration(msg),
                Some(b'C') => call_rejected(msg, Rule::SipCallRejected, false),
                Some(b'h') => hacking(msg),
                Some(b'T') if a.level == Level::Warning => timeout(msg),
                _ => Verdict::Nothing,
            },
            b"res_pjsip/pjsip_distributor.c" | b"pjsip_distributor.c" => pjsip_request(msg),
            b"res_pjsip_session.c" => call_rejected(msg, Rule::PjsipCallRejected, true),
            b"manager.c" if a.level == Level::Notice => ami(msg),
            b"chan_iax2.c" => iax2(msg),
            f if f.starts_with(b"Ext. ") && a.level == Level::Warning => freepbx(msg),
            _ => Verdict::Nothing,
        },
        _ => Verdict::Nothing,
    }
}

/// Words that make a NOTICE/WARNING/SECURITY line look like a failure (for `scan --verbose`:
/// lines that look like failures but matched no rule).
pub fn looks_like_failure(a: &Anatomy<'_>) -> bool {
    if !matches!(a.level, Level::Notice | Level::Warning | Level::Security) {
        return false;
    }
    let m = a.msg;
    if m.starts_with(b"SecurityEvent=\"") {
        return !(m.starts_with(b"SecurityEvent=\"SuccessfulAuth\"")
            || m.starts_with(b"SecurityEvent=\"ChallengeSent\""));
    }
    const WORDS: [&[u8]; 9] = [
        b"failed for",
        b"ailed to auth",
        b"rejected",
        b"Wrong password",
        b"No matching",
        b"hacking",
        b"Rejecting",
        b"nonexistent user",
        b"not allowed",
    ];
    WORDS.iter().any(|w| find(m, w).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_by_their_english_abbreviation_only() {
        for (i, m) in MONTHS.iter().enumerate() {
            assert_eq!(month(&m[..]), Some(i as u8 + 1));
        }
        for bad in [&b"jan"[..], b"JAN", b"Ja", b"", b"Mai", b"Jan"] {
            assert_eq!(month(bad), (bad == b"Jan").then_some(1), "{bad:?}");
        }
        assert_eq!(month(b"Dec 31"), Some(12));
    }

    #[test]
    fn anatomy_forms() {
        let a = anatomy(b"[2012-02-13 17:21:54] NOTICE[1638] chan_sip.c: hello").unwrap();
        assert_eq!(a.level, Level::Notice);
        assert_eq!(a.file, b"chan_sip.c");
        assert_eq!(a.msg, b"hello");
        let a = anatomy(b"[Jan 18 17:39:50] NOTICE[12049]: res_pjsip_session.c:2337 new_invite: x")
            .unwrap();
        assert_eq!(a.file, b"res_pjsip_session.c");
        assert_eq!(a.msg, b"x");
        let a = anatomy(b"Nov 4 18:30:40 localhost asterisk[32229]: NOTICE[32257]: chan_sip.c:23417 in handle_request_register: y").unwrap();
        assert_eq!(a.msg, b"y");
        let a = anatomy(b"Mar  1 15:35:53 pbx asterisk[2350]: WARNING[1195][C-00000b43]: Ext. s:6 in @ from-sip-external: \"z\"").unwrap();
        assert_eq!(a.file, b"Ext. s");
        assert_eq!(a.msg, b"\"z\"");
        let a = anatomy(b"2023-02-19T15:03:35.412305+01:00 pbx asterisk[1180]: NOTICE[1206]: res_pjsip/pjsip_distributor.c:727 in log_failed_request: m").unwrap();
        assert_eq!(a.stamp(), Some(Stamp::Utc(1_676_815_415)));
        assert!(anatomy(b"Feb 19 15:03:31 pbx sshd[1]: NOTICE[1]: chan_sip.c:1 in f: m").is_none());
        let a = anatomy(b"[2016-06-09 00:01:02] NOTICE [22382] manager.c: m").unwrap();
        assert_eq!(a.file, b"manager.c");
        let a = anatomy(b"[2023-02-19 15:02:45] VERBOSE[686] chan_sip.c: ").unwrap();
        assert_eq!(a.msg, b"");
        assert!(anatomy(b"<--- SIP read from UDP:1.2.3.4:5060 --->").is_none());
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_addrport(b"1.2.3.4:5060"), "1.2.3.4".parse().ok());
        assert_eq!(
            parse_addrport(b"[2001:db8::1]:5060"),
            "2001:db8::1".parse().ok()
        );
        assert_eq!(
            parse_addrport(b"[::ffff:1.2.3.4]:5060"),
            "1.2.3.4".parse().ok()
        );
        assert_eq!(parse_addrport(b"1.2.3.4:99999"), None);
        assert_eq!(parse_addrport(b" 1.2.3.4"), None);
        assert_eq!(parse_addrport(b"evil.example.com"), None);
        assert_eq!(parse_addrport(b"198.51.100.300"), None);
    }
}
