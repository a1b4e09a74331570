//! The wrappers that carry a kernel message into a text log, and what each one is.
//!
//! | form | written by | example head |
//! |---|---|---|
//! | RFC 3164, with hostname | rsyslog `RSYSLOG_TraditionalFileFormat` (Debian/Ubuntu `kern.log` before Debian 12), syslog-ng, sysklogd | `Feb 19 15:03:17 pbx kernel: ` |
//! | RFC 3164, no hostname | rsyslog/syslog-ng templates without `%HOSTNAME%`, RFC 3164 §4.1.2 relays | `Feb 19 15:03:17 kernel: ` |
//! | facility.level after the host | busybox `syslogd` (Alpine, embedded), OpenWrt `logread` (with a ctime date) | `Feb 19 15:03:17 router kern.warn kernel: `, `Mon Feb 19 15:03:17 2024 kern.warn kernel: ` |
//! | RFC 3339 date | rsyslog `RSYSLOG_FileFormat` (Debian 12+ rsyslog default), `journalctl -o short-iso(-precise)` | `2023-02-19T15:03:32.412305+01:00 pbx kernel: ` |
//! | leading `<PRI>` | syslog received on a socket and written raw (`nc -lu`, syslog-ng `$MSG` with `flags(no-parse)`, UniFi/OpenWrt remote syslog captures) | `<4>Feb 19 15:03:17 pbx kernel: ` |
//! | RFC 5424 | rsyslog `RSYSLOG_SyslogProtocol23Format`, syslog-ng `syslog()` driver files | `<4>1 2023-02-19T15:03:17.412305+01:00 pbx kernel - - - ` |
//! | journalctl short, zero-padded day | `journalctl -k` (systemd) | `Feb 09 15:03:19 pbx kernel: ` |
//! | journalctl short-precise | `journalctl -o short-precise` | `Feb 19 15:03:17.123456 pbx kernel: ` |
//! | journalctl short-full | `journalctl -o short-full` (systemd 236+) | `Mon 2024-02-19 15:03:17 CET pbx kernel: ` |
//! | journalctl short-unix | `journalctl -o short-unix` (systemd 236+) | `1708351397.123456 pbx kernel: ` |
//! | journalctl short-monotonic | `journalctl -o short-monotonic` | `[ 1234.567890] pbx kernel: ` |
//! | localised month | `journalctl` under a non-English `LC_TIME` (`de_DE`: `Mär`, `fr_FR`: `févr.`, `es_ES`: `ene`) | `Mär 19 15:03:17 pbx kernel: ` |
//! | journalctl marker | `journalctl` | `-- Boot 0123... --` (another program's line, not unparsed) |
//!
//! Trust is the same in every form: the program tag must be exactly `kernel` (`kernel[123]:`
//! is a user program). Lines without a tag (`dmesg` output: `[ 1234.567890] IN=...`, `[Mon Feb
//! 19 15:03:17 2024] IN=...`) are not read: in a syslog file such a line can only be the
//! continuation of some program's multi-line message. They count as unparsed.
//!
//! A line in none of these forms is *unparsed*: it is counted as such, never silently taken
//! for another program's line.
//!
//! This module must never allocate, and never look past the wrapper into the message.

use crate::source::asterisk::rules::{bsd_date, days_from_civil, rfc3339, Stamp};

/// What the wrapper of one line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wrapper<'a> {
    /// A kernel message: its date (when the wrapper has one) and the message.
    Kernel(Option<Stamp>, &'a [u8]),
    /// A recognised wrapper around another program's message.
    Other(&'a [u8]),
    /// No wrapper this module knows.
    Unparsed,
}

/// Take the wrapper off one line.
pub fn unwrap(line: &[u8]) -> Wrapper<'_> {
    let Some(&first) = line.first() else {
        return Wrapper::Unparsed;
    };
    // The usual forms first: `Feb 19 ...` and `2023-02-19T...`.
    if first.is_ascii_uppercase() {
        if let Some((s, end)) = bsd_date(line) {
            return after_date(line, end, Some(s));
        }
    } else if first.is_ascii_digit() {
        if let Some((t, end)) = rfc3339(line) {
            return after_date(line, end, Some(Stamp::Utc(t)));
        }
    }
    unusual(line)
}

/// The rarer forms (see the module doc).
fn unusual(line: &[u8]) -> Wrapper<'_> {
    let Some(&first) = line.first() else {
        return Wrapper::Unparsed;
    };
    match first {
        b'<' => pri(line),
        // journalctl's markers: `-- Boot 0123... --`, `-- No entries --`, `-- Logs begin at ..`.
        b'-' if line.starts_with(b"-- ") => Wrapper::Other(&line[3..]),
        b'[' => bracketed(line),
        b'0'..=b'9' => {
            if let Some((t, end)) = unix_time(line) {
                return after_date(line, end, Some(Stamp::Utc(t)));
            }
            Wrapper::Unparsed
        }
        _ => {
            // OpenWrt `logread`: `Mon Feb 19 15:03:17 2024 kern.warn kernel: `.
            if let Some((s, end)) = ctime(line) {
                return after_date(line, end, Some(s));
            }
            if let Some((s, end)) = short_full(line) {
                return after_date(line, end, Some(s));
            }
            if let Some((s, end)) = local_date(line) {
                return after_date(line, end, s);
            }
            Wrapper::Unparsed
        }
    }
}

/// After the date: ` host kernel: `, ` kernel: ` (no hostname) or ` host prog...: `.
fn after_date(line: &[u8], end: usize, stamp: Option<Stamp>) -> Wrapper<'_> {
    let Some(rest) = line.get(end..).and_then(|r| r.strip_prefix(b" ")) else {
        return Wrapper::Unparsed;
    };
    tagged(rest, stamp)
}

/// `host kernel: msg` or `kernel: msg`, or another program's tag.
fn tagged(rest: &[u8], stamp: Option<Stamp>) -> Wrapper<'_> {
    if let Some(msg) = rest.strip_prefix(b"kernel: ") {
        return Wrapper::Kernel(stamp, skip_printk_time(msg));
    }
    let Some(host_len) = space(rest) else {
        return Wrapper::Unparsed;
    };
    if host_len == 0 {
        return Wrapper::Unparsed;
    }
    let mut tail = &rest[host_len + 1..];
    if let Some(msg) = tail.strip_prefix(b"kernel: ") {
        return Wrapper::Kernel(stamp, skip_printk_time(msg));
    }
    // busybox syslogd and OpenWrt print the facility and level: `kern.warn kernel: `.
    if let Some(n) = facility_level(tail) {
        tail = &tail[n..];
        if let Some(msg) = tail.strip_prefix(b"kernel: ") {
            return Wrapper::Kernel(stamp, skip_printk_time(msg));
        }
    }
    // `host` was in fact the tag of a header without hostname (`prog[pid]: ` / `prog: `).
    if rest[..host_len].ends_with(b":") {
        return Wrapper::Other(tail);
    }
    match tag_end(tail) {
        Some(e) => Wrapper::Other(&tail[e..]),
        None => Wrapper::Unparsed,
    }
}

/// `kern.warn ` (a facility and a level, as busybox syslogd writes them): its length.
fn facility_level(b: &[u8]) -> Option<usize> {
    let n = space(&b[..b.len().min(24)])?;
    let dot = b[..n].iter().position(|&c| c == b'.')?;
    let ok = |w: &[u8]| {
        !w.is_empty()
            && w.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    (ok(&b[..dot]) && ok(&b[dot + 1..n])).then_some(n + 1)
}

/// The end of a `prog[pid]: ` / `prog: ` tag at the start of `b`.
fn tag_end(b: &[u8]) -> Option<usize> {
    let n = b.iter().take(64).position(|&c| c == b':')?;
    if n == 0 || b[..n].contains(&b' ') || b.get(n + 1).is_some_and(|&c| c != b' ') {
        return None;
    }
    Some((n + 2).min(b.len()))
}

/// `<PRI>` then RFC 3164 or, with a `1 ` version, RFC 5424.
fn pri(line: &[u8]) -> Wrapper<'_> {
    let close = match line.iter().take(5).position(|&c| c == b'>') {
        Some(c) if c > 1 && line[1..c].iter().all(u8::is_ascii_digit) => c,
        _ => return Wrapper::Unparsed,
    };
    let rest = &line[close + 1..];
    match rest.strip_prefix(b"1 ") {
        Some(r) => rfc5424(r),
        None => unwrap(rest),
    }
}

/// `TIMESTAMP HOST APP PROCID MSGID SD MSG` (after `<PRI>1 `).
fn rfc5424(r: &[u8]) -> Wrapper<'_> {
    let mut fields = [&r[..0]; 5];
    let mut at = 0;
    for f in &mut fields {
        let Some(n) = space(&r[at..]) else {
            return Wrapper::Unparsed;
        };
        *f = &r[at..at + n];
        at += n + 1;
    }
    let [ts, _host, app, procid, _msgid] = fields;
    let stamp = match rfc3339(ts) {
        Some((t, end)) if end == ts.len() => Some(Stamp::Utc(t)),
        _ if ts == b"-" => None,
        _ => return Wrapper::Unparsed,
    };
    // Structured data: `-` or one or more `[...]` elements.
    let sd = &r[at..];
    let msg_at = if sd.starts_with(b"-") {
        1
    } else if sd.starts_with(b"[") {
        let mut i = 0;
        let mut quoted = false;
        let mut depth = 0u32;
        let mut end = None;
        while i < sd.len() {
            match sd[i] {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b'[' if !quoted => depth += 1,
                b']' if !quoted => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 && sd.get(i + 1) != Some(&b'[') {
                        end = Some(i + 1);
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        match end {
            Some(e) => e,
            None => return Wrapper::Unparsed,
        }
    } else {
        return Wrapper::Unparsed;
    };
    let msg = sd[msg_at..].strip_prefix(b" ").unwrap_or(&sd[msg_at..]);
    let msg = msg.strip_prefix("\u{feff}".as_bytes()).unwrap_or(msg);
    if app == b"kernel" && procid == b"-" {
        Wrapper::Kernel(stamp, skip_printk_time(msg))
    } else {
        Wrapper::Other(msg)
    }
}

/// `[ 1234.567890] ` (printk time: dmesg, or journalctl short-monotonic before a host) or
/// `[Mon Feb 19 15:03:17 2024] ` (dmesg -T).
fn bracketed(line: &[u8]) -> Wrapper<'_> {
    let Some(close) = line.iter().take(40).position(|&c| c == b']') else {
        return Wrapper::Unparsed;
    };
    let inner = &line[1..close];
    let Some(rest) = line[close + 1..].strip_prefix(b" ") else {
        return Wrapper::Unparsed;
    };
    let stamp = if printk_time(inner) {
        None
    } else if let Some((s, end)) = ctime(inner) {
        if end != inner.len() {
            return Wrapper::Unparsed;
        }
        Some(s)
    } else {
        return Wrapper::Unparsed;
    };
    // journalctl short-monotonic: `[ 1234.567890] host prog: `, always with a hostname. A
    // bare dmesg line (`[ 1234.567890] IN=...`) is not read: in a syslog file such a line can
    // only be the continuation of a program's multi-line message, which anyone may write.
    tagged(rest, stamp)
}

/// `journalctl -o short-unix`: `1708351397.123456`.
fn unix_time(line: &[u8]) -> Option<(i64, usize)> {
    let n = line
        .iter()
        .take(12)
        .take_while(|c| c.is_ascii_digit())
        .count();
    if !(9..=11).contains(&n) || line.get(n) != Some(&b'.') {
        return None;
    }
    let f = line[n + 1..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if f == 0 {
        return None;
    }
    let mut v: i64 = 0;
    for &c in &line[..n] {
        v = v * 10 + i64::from(c - b'0');
    }
    Some((v, n + 1 + f))
}

/// `journalctl -o short-full`: `Mon 2024-02-19 15:03:17 CET` (the zone name is not read:
/// the configured time zone applies).
fn short_full(line: &[u8]) -> Option<(Stamp, usize)> {
    if line.get(3) != Some(&b' ') || !line[..3].iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    let d = &line[4..];
    let (y, mo, day) = ymd(d)?;
    if d.get(10) != Some(&b' ') {
        return None;
    }
    let (secs, end) = hms(d, 11)?;
    let mut end = 4 + end;
    // The zone: a word, or an offset.
    if line.get(end) == Some(&b' ') {
        let z = space(&line[end + 1..]).unwrap_or(line.len() - end - 1);
        if z > 0
            && z <= 6
            && line[end + 1..end + 1 + z]
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'-')
        {
            end += 1 + z;
        }
    }
    Some((
        Stamp::Local {
            year: Some(y),
            month: mo,
            day,
            secs,
        },
        end,
    ))
}

/// `Mon Feb 19 15:03:17 2024` (ctime: OpenWrt `logread`, `dmesg -T`): the date and its end.
fn ctime(b: &[u8]) -> Option<(Stamp, usize)> {
    if b.get(3) != Some(&b' ') || !b[..3].iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    let (s, end) = bsd_date(&b[4..])?;
    let at = 4 + end;
    let y = b.get(at + 1..at + 5)?;
    if b[at] != b' ' || !y.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let year = y.iter().fold(0i32, |v, &c| v * 10 + i32::from(c - b'0'));
    match s {
        Stamp::Local {
            month, day, secs, ..
        } => Some((
            Stamp::Local {
                year: Some(year),
                month,
                day,
                secs,
            },
            at + 5,
        )),
        Stamp::Utc(_) => None,
    }
}

/// A BSD-style date whose month is not English: `Mär 19 15:03:17`, `févr. 19 15:03:17`. An
/// unknown month word still yields the end of the date (the line is then undated: `None`).
fn local_date(line: &[u8]) -> Option<(Option<Stamp>, usize)> {
    let w = space(&line[..line.len().min(12)])?;
    if w == 0 || line[..w].iter().any(|c| c.is_ascii_digit() || *c == b':') {
        return None;
    }
    let mut i = w;
    while line.get(i) == Some(&b' ') && i < w + 3 {
        i += 1;
    }
    let dn = line[i..]
        .iter()
        .take(3)
        .take_while(|c| c.is_ascii_digit())
        .count();
    if dn == 0 || dn > 2 || line.get(i + dn) != Some(&b' ') {
        return None;
    }
    let day = line[i..i + dn]
        .iter()
        .fold(0u8, |v, &c| v * 10 + (c - b'0'));
    let (secs, end) = hms(line, i + dn + 1)?;
    let stamp = local_month(&line[..w]).and_then(|month| {
        (1..=31).contains(&day).then_some(Stamp::Local {
            year: None,
            month,
            day,
            secs,
        })
    });
    Some((stamp, end))
}

/// Month abbreviations as `strftime("%b")` writes them in common locales (glibc), lower case,
/// without a trailing dot: de, fr, es, it, nl, pt, sv/da/nb, pl, ru.
const LOCAL_MONTHS: [&[&str]; 12] = [
    &["jan", "janv", "ene", "gen", "sty", "янв"],
    &["feb", "févr", "fev", "lut", "фев"],
    &["mär", "mar", "mars", "mrt", "маp", "мар"],
    &["apr", "avr", "abr", "kwi", "апр"],
    &["mai", "may", "mag", "mei", "maj", "мая", "май"],
    &["jun", "juin", "giu", "cze", "июн"],
    &["jul", "juil", "lug", "lip", "июл"],
    &["aug", "août", "ago", "sie", "авг"],
    &["sep", "sept", "set", "wrz", "сен"],
    &["okt", "oct", "ott", "out", "paź", "окт"],
    &["nov", "lis", "ноя"],
    &["dez", "déc", "dic", "dec", "des", "gru", "дек"],
];

fn local_month(word: &[u8]) -> Option<u8> {
    let w = word.strip_suffix(b".").unwrap_or(word);
    let s = std::str::from_utf8(w).ok()?;
    let lower = s.to_lowercase();
    LOCAL_MONTHS
        .iter()
        .position(|names| names.iter().any(|n| *n == lower))
        .map(|i| i as u8 + 1)
}

/// `YYYY-MM-DD`.
fn ymd(d: &[u8]) -> Option<(i32, u8, u8)> {
    let n = |a: usize, len: usize| -> Option<u32> {
        let s = d.get(a..a + len)?;
        s.iter()
            .all(u8::is_ascii_digit)
            .then(|| s.iter().fold(0u32, |v, &c| v * 10 + u32::from(c - b'0')))
    };
    let (y, mo, day) = (n(0, 4)?, n(5, 2)?, n(8, 2)?);
    if d[4] != b'-' || d[7] != b'-' || !(1..=12).contains(&mo) || !(1..=31).contains(&day) {
        return None;
    }
    let _ = days_from_civil; // the same calendar as the other date forms
    Some((y as i32, mo as u8, day as u8))
}

/// `HH:MM:SS[.frac]` at `at`: (seconds of the day, end).
fn hms(b: &[u8], at: usize) -> Option<(u32, usize)> {
    let t = b.get(at..at + 8)?;
    let d = |i: usize| -> Option<u32> {
        let (x, y) = (t[i], t[i + 1]);
        (x.is_ascii_digit() && y.is_ascii_digit())
            .then(|| u32::from(x - b'0') * 10 + u32::from(y - b'0'))
    };
    if t[2] != b':' || t[5] != b':' {
        return None;
    }
    let (h, m, s) = (d(0)?, d(3)?, d(6)?);
    if h > 23 || m > 59 || s > 60 {
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

/// The first space in a short field.
fn space(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b' ')
}

/// Whether the text inside `[...]` is a printk time (`    5.123456`).
fn printk_time(inner: &[u8]) -> bool {
    !inner.is_empty()
        && inner.iter().any(u8::is_ascii_digit)
        && inner
            .iter()
            .all(|&b| b.is_ascii_digit() || b == b'.' || b == b' ')
}

/// `[ 1234.567890] ` at the start of a kernel message (rsyslog's imklog keeps it).
pub fn skip_printk_time(msg: &[u8]) -> &[u8] {
    if msg.first() != Some(&b'[') {
        return msg;
    }
    // One pass over what [`printk_time`] accepts, up to the `]` within 32 bytes (a plain
    // index loop: an iterator chain here kept its state in memory).
    let end = msg.len().min(32);
    let mut digit = false;
    let mut i = 1;
    while i < end {
        match msg[i] {
            b'0'..=b'9' => digit = true,
            b'.' | b' ' => {}
            b']' if digit => {
                let rest = &msg[i + 1..];
                return rest.strip_prefix(b" ").unwrap_or(rest);
            }
            _ => return msg,
        }
        i += 1;
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The printk time as the bracketed form reads it: the `]`, then what is inside.
    fn skip_printk_time_by_parts(msg: &[u8]) -> &[u8] {
        if msg.first() != Some(&b'[') {
            return msg;
        }
        let Some(close) = msg.iter().take(32).position(|&b| b == b']') else {
            return msg;
        };
        if printk_time(&msg[1..close]) {
            msg[close + 1..]
                .strip_prefix(b" ")
                .unwrap_or(&msg[close + 1..])
        } else {
            msg
        }
    }

    proptest! {
        #[test]
        fn printk_time_is_skipped_in_one_pass_as_by_parts(
            msg in proptest::collection::vec(proptest::sample::select(b"[] .09xI".to_vec()), 0..40),
        ) {
            let mut m = msg.clone();
            if !m.is_empty() {
                m[0] = b'[';
            }
            for x in [&msg, &m] {
                prop_assert_eq!(skip_printk_time(x), skip_printk_time_by_parts(x));
            }
        }
    }

    fn kernel(line: &str) -> (Option<Stamp>, String) {
        match unwrap(line.as_bytes()) {
            Wrapper::Kernel(s, m) => (s, String::from_utf8_lossy(m).into_owned()),
            other => panic!("{other:?}: {line}"),
        }
    }

    #[test]
    fn forms() {
        for l in [
            "Feb 19 15:03:17 pbx kernel: IN=x",
            "Feb 19 15:03:17 kernel: IN=x",
            "<4>Feb 19 15:03:17 pbx kernel: IN=x",
            "<4>1 2023-02-19T15:03:17.412305+01:00 pbx kernel - - - IN=x",
            "<4>1 2023-02-19T15:03:17Z pbx kernel - - [meta sequenceId=\"1\"] IN=x",
            "Mon 2024-02-19 15:03:17 CET pbx kernel: IN=x",
            "Mon Feb 19 15:03:17 2024 kern.warn kernel: [ 1234.567890] IN=x",
            "Feb 19 15:03:17 router kern.warn kernel: IN=x",
            "1708351397.123456 pbx kernel: IN=x",
            "[ 1234.567890] pbx kernel: IN=x",
            "[Mon Feb 19 15:03:17 2024] pbx kernel: IN=x",
            "Mär 19 15:03:17 pbx kernel: IN=x",
            "févr. 19 15:03:17 pbx kernel: IN=x",
            "Feb 19 15:03:17 pbx kernel: [ 5.1] IN=x",
        ] {
            assert_eq!(kernel(l).1, "IN=x", "{l}");
        }
        assert!(matches!(
            kernel("Mär 19 15:03:17 pbx kernel: IN=x").0,
            Some(Stamp::Local {
                month: 3,
                day: 19,
                ..
            })
        ));
        // An unknown month word: a kernel line without a date.
        assert_eq!(kernel("Xyz 19 15:03:17 pbx kernel: IN=x").0, None);
    }

    #[test]
    fn other_programs_and_unparsed() {
        for l in [
            "Feb 19 15:03:17 pbx kernel[12]: IN=x",
            "Feb 19 15:03:17 pbx myapp: IN=x",
            "Feb 19 15:03:17 myapp[3]: IN=x",
            "<13>1 2023-02-19T15:03:17Z pbx kernel 4242 - - IN=x",
        ] {
            assert!(matches!(unwrap(l.as_bytes()), Wrapper::Other(_)), "{l}");
        }
        assert!(matches!(unwrap(b"-- Boot 1234 --"), Wrapper::Other(_)));
        for l in [
            "IN=x",
            "garbage",
            "",
            "<x>Feb",
            "[ 1234.567890] IN=x",
            "[Mon Feb 19 15:03:17 2024] IN=x",
            "4,1234,5678,-;IN=x",
        ] {
            assert_eq!(unwrap(l.as_bytes()), Wrapper::Unparsed, "{l}");
        }
    }
}
