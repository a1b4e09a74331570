//! What one input (a followed log file) gave in one pass, so that nothing is dropped silently:
//! lines read, parsed (in a layout the detector knows), matched (named an offender or counted
//! as a probe), refused (had a rule's shape but a trust rule turned them down: forged tags,
//! injected or suspect lines, bad addresses) and unparsed (in no layout the detector knows).
//!
//! This module must never read a file: the detectors fill the counts, the run report carries
//! them to `status` and the metrics.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Above this share of unparsed lines in one pass, an input is named in a warning.
pub const UNPARSED_WARN_SHARE: f64 = 0.20;
/// Fewer lines than this in one pass never warn (a handful of odd lines says little).
pub const UNPARSED_WARN_MIN_LINES: u64 = 20;

/// The counts of one input in one pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputCounts {
    pub read: u64,
    pub parsed: u64,
    pub matched: u64,
    pub refused: u64,
    pub unparsed: u64,
}

impl InputCounts {
    /// `self - before`, field by field (counts taken around one file of a pass).
    pub fn since(self, before: InputCounts) -> InputCounts {
        InputCounts {
            read: self.read.saturating_sub(before.read),
            parsed: self.parsed.saturating_sub(before.parsed),
            matched: self.matched.saturating_sub(before.matched),
            refused: self.refused.saturating_sub(before.refused),
            unparsed: self.unparsed.saturating_sub(before.unparsed),
        }
    }

    /// The warning for an input whose unparsed share is over [`UNPARSED_WARN_SHARE`].
    pub fn warning(&self, who: &str, path: &Path) -> Option<String> {
        if self.read < UNPARSED_WARN_MIN_LINES
            || (self.unparsed as f64) <= UNPARSED_WARN_SHARE * self.read as f64
        {
            return None;
        }
        Some(format!(
            "{who}: {}: {} of {} lines ({:.0}%) are in no layout sipban knows and were not read; `sipban scan{} --verbose {}` shows samples",
            path.display(),
            self.unparsed,
            self.read,
            100.0 * self.unparsed as f64 / self.read as f64,
            if who == "kernel_log" { " --kernel" } else { "" },
            path.display()
        ))
    }
}

/// Whether an unparsed line looks like one a detector should have read: an address (IPv4
/// dotted quad or an IPv6 group) and one of `words`.
pub fn looks_relevant(line: &[u8], words: &[&[u8]]) -> bool {
    let has_addr = line.windows(4).any(|w| {
        w[0].is_ascii_digit() && w[1] == b'.' && w[2].is_ascii_digit()
            || w[0].is_ascii_hexdigit() && w[1] == b':' && w[2].is_ascii_hexdigit() && w[3] != b':'
    });
    has_addr
        && words.iter().any(|word| {
            line.windows(word.len())
                .any(|w| w.eq_ignore_ascii_case(word))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_above_a_fifth() {
        let c = InputCounts {
            read: 100,
            parsed: 79,
            unparsed: 21,
            ..InputCounts::default()
        };
        let w = c
            .warning("asterisk", Path::new("/var/log/asterisk/messages"))
            .unwrap();
        assert!(
            w.contains("/var/log/asterisk/messages") && w.contains("21 of 100"),
            "{w}"
        );
        let c = InputCounts { unparsed: 20, ..c };
        assert!(c.warning("asterisk", Path::new("x")).is_none());
        let few = InputCounts {
            read: 10,
            unparsed: 10,
            ..InputCounts::default()
        };
        assert!(few.warning("asterisk", Path::new("x")).is_none());
    }

    #[test]
    fn relevance() {
        let w: &[&[u8]] = &[b"failed"];
        assert!(looks_relevant(b"xx Registration failed for 192.0.2.1", w));
        assert!(!looks_relevant(b"xx Registration failed for someone", w));
        assert!(!looks_relevant(b"xx 192.0.2.1 said hello", w));
    }
}
