//! Asterisk's entries in the systemd journal (`asterisk.journal: true`): which entries are
//! Asterisk's, and how they reach the engine.
//!
//! **Trust.** `SYSLOG_IDENTIFIER` is whatever the writer says (`logger -t asterisk` from any
//! local account), and `_COMM` is the writer's own file name or `prctl` choice. An entry
//! counts only when a field journald sets from the kernel proves it Asterisk's:
//! * `_SYSTEMD_UNIT=asterisk.service`: the writer runs in that system unit's cgroup, which only
//!   root can arrange (a user manager's units are `_SYSTEMD_USER_UNIT`, under `user@UID`), or
//! * `SYSLOG_IDENTIFIER=asterisk` written with `_UID` 0 or the uid of the `asterisk` account
//!   (from `/etc/passwd`): the socket credentials, which no other account can forge.
//!
//! Everything else the match brings is counted as `untrusted` and never read.
//!
//! **Messages.** One journal entry is one message of the writer:
//! * syslog (and native) entries hold one whole logger message, as Asterisk's syslog channel
//!   sends it (`LEVEL[lwp][C-…]: file:line in func: msg`; the time is the entry's). A newline
//!   inside it came from a remote field and cannot start a message of its own: the entry is
//!   fed as one line, newlines kept, and an injection record it opens is judged at its end
//!   (its real tail is the message's end, so nothing is held into the next entry);
//! * stdout entries (`asterisk -f` under the unit, the console layout) are single lines that
//!   journald split at each newline, as a file's lines: they go through the injection guard
//!   across entries, as the lines of a followed file do.
//!
//! Call-ID correlation needs the `full` log's SIP dumps; the journal does not feed it.
//!
//! This module must never count an entry the trust rule refuses, and never split a syslog
//! entry into lines.

use super::{Engine, Hit, Record, Stream};
use crate::source::journal::{self, Entry, JournalSettings, JournalStats, Position, Query};
use crate::source::tail::Budget;
use serde::{Deserialize, Serialize};

/// The system unit whose entries are Asterisk's.
pub const UNIT: &str = "asterisk.service";
/// The syslog identifier Asterisk writes under (trusted only with the right `_UID`).
pub const IDENTIFIER: &str = "asterisk";
/// The journal match: the unit, or the identifier.
pub const MATCHES: [&str; 3] = [
    "_SYSTEMD_UNIT=asterisk.service",
    "+",
    "SYSLOG_IDENTIFIER=asterisk",
];

/// One stream's engine state (see [`Stream`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamState {
    #[serde(default)]
    dump: super::DumpParser,
    #[serde(default)]
    last_time: Option<i64>,
    #[serde(default)]
    record: Option<Record>,
}

/// What the detector keeps of the journal between runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalState {
    #[serde(default)]
    pub position: Position,
    /// Console lines (`_TRANSPORT=stdout`): a record may span entries.
    #[serde(default)]
    console: StreamState,
    /// Whole messages (syslog, native): each judged alone.
    #[serde(default)]
    messages: StreamState,
}

/// What a pass read from the journal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct JournalReport {
    /// Which journal and match.
    pub journal: String,
    #[serde(flatten)]
    pub stats: JournalStats,
    /// Entries the trust rule accepted (fed to the engine).
    pub accepted: u64,
    /// Entries the match brought whose trusted fields do not prove them Asterisk's.
    pub untrusted: u64,
    /// Lines read, parsed, matched, refused and unparsed, as for a file (untrusted entries
    /// count as read and refused).
    pub counts: crate::source::input::InputCounts,
    /// A read error (the position was left unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether an entry is Asterisk's (see the module doc); `asterisk_uid` is the `asterisk`
/// account's uid, if there is one.
pub fn trusted(e: &Entry<'_>, asterisk_uid: Option<u32>) -> bool {
    e.unit == UNIT.as_bytes()
        || (e.identifier == IDENTIFIER.as_bytes()
            && e.uid.is_some_and(|u| u == 0 || Some(u) == asterisk_uid))
}

/// The uid of the `asterisk` account in `/etc/passwd`, if any.
pub fn asterisk_uid() -> Option<u32> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd_uid(&text, IDENTIFIER)
}

fn passwd_uid(passwd: &str, user: &str) -> Option<u32> {
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == user).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

impl Engine<'_> {
    /// One journal entry's message at the entry's time: a whole message (its injection record
    /// judged at its end) or a console line (see the module doc).
    fn feed_entry(&mut self, st: &mut Stream<'_>, e: &Entry<'_>, whole: bool) {
        *st.last_time = Some(e.time());
        let msg = e.message;
        let msg = if whole {
            let end = msg.iter().rposition(|b| *b != b'\n').map_or(0, |i| i + 1);
            &msg[..end]
        } else {
            msg
        };
        self.feed(st, msg);
        if whole {
            self.resolve(st);
        }
    }

    /// Read the journal from `state` (left unchanged on an error); returns the report and the
    /// hits to count. `bound`: where a first read, or one after a lost cursor, starts.
    pub(super) fn follow_journal(
        &mut self,
        settings: &JournalSettings,
        state: &mut JournalState,
        (first_id, bound): (u16, i64),
        budget: &mut Budget,
    ) -> (JournalReport, Vec<Hit>) {
        let q = Query {
            journal: settings,
            matches: &MATCHES,
            bound,
        };
        let mut report = JournalReport {
            journal: q.name(),
            ..JournalReport::default()
        };
        let uid = asterisk_uid();
        let mut work = state.clone();
        let mut hits = Vec::new();
        let JournalState {
            position,
            console,
            messages,
        } = &mut work;
        let r = journal::read(&q, position, budget, &mut |e| {
            if !trusted(e, uid) {
                report.untrusted += 1;
                return;
            }
            report.accepted += 1;
            let whole = e.transport != b"stdout";
            let (id, s) = if whole {
                (first_id + 1, &mut *messages)
            } else {
                (first_id, &mut *console)
            };
            let mut st = Stream {
                id,
                full: false,
                dump: &mut s.dump,
                last_time: &mut s.last_time,
                record: &mut s.record,
            };
            self.feed_entry(&mut st, e, whole);
            if self.hits.len() >= 4096 {
                hits.append(&mut self.hits);
            }
        });
        hits.append(&mut self.hits);
        match r {
            Ok((pos, stats)) => {
                work.position = pos;
                *state = work;
                report.stats = stats;
                (report, hits)
            }
            Err(e) => {
                report.error = Some(e.to_string());
                (report, Vec::new())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(unit: &'a str, ident: &'a str, uid: Option<u32>) -> Entry<'a> {
        Entry {
            message: b"x",
            realtime_us: 0,
            transport: b"syslog",
            identifier: ident.as_bytes(),
            unit: unit.as_bytes(),
            uid,
            comm: b"asterisk",
        }
    }

    #[test]
    fn only_fields_journald_sets_prove_an_entry_asterisks() {
        assert!(trusted(&entry("asterisk.service", "", Some(1000)), None));
        assert!(trusted(&entry("", "asterisk", Some(0)), None));
        assert!(trusted(&entry("", "asterisk", Some(112)), Some(112)));
        // `logger -t asterisk` from another account, whatever its command name.
        assert!(!trusted(&entry("", "asterisk", Some(1000)), Some(112)));
        assert!(!trusted(&entry("session-3.scope", "asterisk", None), None));
        assert!(!trusted(&entry("user@1000.service", "x", Some(1000)), None));
    }

    #[test]
    fn passwd_lookup() {
        let p = "root:x:0:0:root:/root:/bin/bash\nasterisk:x:112:118:Asterisk PBX daemon:/var/lib/asterisk:/usr/sbin/nologin\n";
        assert_eq!(passwd_uid(p, "asterisk"), Some(112));
        assert_eq!(passwd_uid(p, "nobody"), None);
    }
}
