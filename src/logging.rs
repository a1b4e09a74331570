//! Log output on stderr. Under systemd (`$JOURNAL_STREAM` set: stderr is a journal stream)
//! each line starts with its syslog priority, `<3>` error, `<4>` warning, `<6>` info, `<7>`
//! debug, which journald takes as the entry's PRIORITY (so `journalctl -p warning` finds the
//! warnings) and strips; the timestamp is left to the journal. Elsewhere lines are plain
//! (`2026-01-01T00:00:00Z  WARN message`).
//!
//! This module must not log anything itself, nor read anything but the environment.

use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Whether stderr goes to the journal (systemd sets `$JOURNAL_STREAM` for a service whose
/// stderr is connected to it).
pub fn under_journal() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some_and(|v| !v.is_empty())
}

/// The syslog priority of a tracing level.
pub fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// `<N>` (syslog priority `prio`) before a message printed on stderr outside tracing (a
/// command's final error) when stderr is the journal, else nothing.
pub fn journal_prefix(prio: u8) -> String {
    if under_journal() {
        format!("<{prio}>")
    } else {
        String::new()
    }
}

/// Another event formatter, with the event's syslog priority in front.
struct Prioritised<F>(F);

impl<S, N, F> FormatEvent<S, N> for Prioritised<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Install the stderr logger: warnings and errors by default, info with `-v` (or `default_info`,
/// the daemon: its bans and syncs are its only output), debug with `-vv`.
pub fn init(verbose: u8, default_info: bool) {
    let level = match (verbose, default_info) {
        (0, false) => Level::WARN,
        (0, true) | (1, _) => Level::INFO,
        _ => Level::DEBUG,
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .with_ansi(false);
    if under_journal() {
        let format = tracing_subscriber::fmt::format()
            .without_time()
            .with_target(false)
            .with_ansi(false);
        builder.event_format(Prioritised(format)).init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_are_syslogs() {
        assert_eq!(priority(Level::ERROR), 3);
        assert_eq!(priority(Level::WARN), 4);
        assert_eq!(priority(Level::INFO), 6);
        assert_eq!(priority(Level::DEBUG), 7);
    }
}
