//! Wall-clock time as sipban uses it: Unix seconds, one civil-date conversion for people, and
//! the one rule for a saved timestamp that lies in the future ([`MAX_SKEW`]).
//!
//! It owns no state and must never sleep or schedule: the daemon's schedules live in
//! `daemon::schedule`, and every pipeline step takes `now` as an argument so that it can be
//! tested without a clock. A run reads the wall clock once, at its start, and measures every
//! interval of that run against that one instant.

/// Now, in Unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// How far in the future a saved timestamp may lie before it is distrusted. Wall-clock times
/// saved by one run are read by the next, and the clock may have moved backwards between them:
/// a Raspberry Pi has no real-time clock and boots at the time it last saved, or far off,
/// until NTP steps it. Five minutes absorbs ordinary NTP corrections and clock drift between
/// two runs; a time further ahead was written under a wrong clock, and is treated as unknown
/// (a feed is due now: its conditional GET keeps that cheap) or clamped to now (a ban's expiry,
/// to now plus its source's TTL), with a warning.
pub const MAX_SKEW: i64 = 300;

/// Whether a saved time `t` lies further in the future of `now` than [`MAX_SKEW`].
pub fn is_future(t: i64, now: i64) -> bool {
    t > now.saturating_add(MAX_SKEW)
}

/// Unix seconds as UTC `(year, month, day, hour, minute, second)`: the civil date from days
/// since 1970-01-01 (Howard Hinnant's algorithm). The one date conversion in sipban.
pub fn civil(t: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, secs / 3600, secs % 3600 / 60, secs % 60)
}

/// Unix seconds as `2026-11-21 12:00:00 UTC`.
pub fn fmt_time(t: i64) -> String {
    let (y, m, d, hh, mm, ss) = civil(t);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02} UTC")
}

/// Unix seconds as ISO 8601 UTC, `2026-11-21T12:00:00Z`, written without allocating.
pub struct Iso(pub i64);

impl std::fmt::Display for Iso {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (y, m, d, hh, mm, ss) = civil(self.0);
        write!(f, "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    }
}

/// A span of seconds for people: its two largest units, `6d 23h`, `3h 12m`, `5m 2s`, `45s`
/// (`0s` for none or a negative span). JSON keeps seconds.
pub fn span(secs: i64) -> String {
    let s = secs.max(0);
    let units = [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)];
    let Some(i) = units.iter().position(|&(_, n)| s >= n) else {
        return "0s".into();
    };
    let (u1, n1) = units[i];
    let mut out = format!("{}{u1}", s / n1);
    if let Some(&(u2, n2)) = units.get(i + 1) {
        let rest = s % n1 / n2;
        if rest > 0 {
            out.push_str(&format!(" {rest}{u2}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_in_two_units() {
        assert_eq!(span(0), "0s");
        assert_eq!(span(-5), "0s");
        assert_eq!(span(45), "45s");
        assert_eq!(span(302), "5m 2s");
        assert_eq!(span(3600), "1h");
        assert_eq!(span(11_520), "3h 12m");
        assert_eq!(span(7 * 86_400 - 3600), "6d 23h");
        assert_eq!(span(86_400 + 59), "1d");
    }

    #[test]
    fn a_time_is_in_the_future_only_beyond_the_skew() {
        assert!(!is_future(1000, 1000));
        assert!(!is_future(1000 + MAX_SKEW, 1000));
        assert!(is_future(1001 + MAX_SKEW, 1000));
        assert!(!is_future(0, 1000));
        assert!(!is_future(i64::MAX, i64::MAX));
    }

    #[test]
    fn dates_read_the_same_in_both_forms() {
        assert_eq!(Iso(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(Iso(1_714_644_672).to_string(), "2024-05-02T10:11:12Z");
        assert_eq!(fmt_time(1_714_644_672), "2024-05-02 10:11:12 UTC");
        // Before 1970 and on a leap day.
        assert_eq!(Iso(-1).to_string(), "1969-12-31T23:59:59Z");
        assert_eq!(Iso(951_782_400).to_string(), "2000-02-29T00:00:00Z");
    }
}
