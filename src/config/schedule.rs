//! A cron pattern (UTC) as written and parsed: the value type of `daemon.sync_schedule` and
//! `daemon.feed_schedules`. A pattern that never fires is refused here, at load time.
//!
//! This module must never read the wall clock: [`Schedule::next_after`] is given the time.
//! The timer that sleeps between firings is `daemon::schedule`.

use croner::parser::{CronParser, Seconds};
use croner::Cron;
use serde::{Serialize, Serializer};
use std::fmt;

/// A cron pattern (UTC), as written and parsed.
#[derive(Clone)]
pub struct Schedule {
    text: String,
    cron: Cron,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.text)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl Schedule {
    /// Parse `"sec min hour day-of-month month day-of-week"` (the seconds field may be left
    /// out: then it is 0). The error says what is wrong in words an admin can act on.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let t = text.trim();
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(t)
            .map_err(|e| {
                format!("`{t}` is not a cron pattern ({e}); write `sec min hour day month weekday`, e.g. \"0 */10 * * * *\"")
            })?;
        let s = Schedule {
            text: t.to_string(),
            cron,
        };
        // A pattern that never matches (30 February) would leave the daemon without syncs.
        if s.next_after(0).is_none() {
            return Err(format!("`{t}` never fires"));
        }
        Ok(s)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first firing strictly after `now_ms` (Unix milliseconds, UTC), in Unix milliseconds.
    pub fn next_after(&self, now_ms: i64) -> Option<i64> {
        let now = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(now_ms)?;
        self.cron
            .find_next_occurrence(&now, false)
            .ok()
            .map(|t| t.timestamp_millis())
    }
}
