//! The injection guard: which lines of an Asterisk log may be text an attacker wrote.
//!
//! Asterisk writes some remote-controlled fields into its log after URI-decoding them, or raw,
//! so a `%0A` in a SIP request (a raw newline in an IAX2 user name) ends the physical line and
//! the attacker writes the next ones in full: forged failure lines that name a victim. One
//! logger message is written whole (no other message interleaves it), so a record that carries
//! such a field is: its *opener* line (server text up to the field, then the field's first
//! part), any number of lines of field text, and the line where the field ends and the server
//! text (the *tail*) resumes. The field's capacity in bytes bounds how far that can reach.
//!
//! The forms and what the attacker controls in them (Asterisk 13, 18, 20+; the research note
//! `asterisk-injection.md` gives the format strings, versions and buffer sizes):
//!
//! | form | opener (server text) | attacker field, decoding, capacity | sender | tail |
//! |---|---|---|---|---|
//! | security event (`res_security_log.c`) | `SecurityEvent=".."`..`AccountID="` | account: chan_sip To user, URI-decoded, [`SIP_ACCOUNT`]; PJSIP From user, decoded, [`PJSIP_ACCOUNT`]; other services [`LOGGER_MESSAGE`] | `RemoteAddress` in the tail | `",SessionID="`.. |
//! | chan_sip `Call from '..' (ADDR) to extension '` | up to the extension | Request-URI user, decoded, [`SIP_EXTEN`] | in the opener | `' rejected because extension not found in context '..'.` |
//! | res_pjsip_session `..: Call (TP:ADDR) to extension '` | up to the extension | Request-URI user, decoded, [`PJSIP_EXTEN`] | in the opener | as chan_sip |
//! | chan_iax2 `Host ADDR failed to authenticate as ` / `failed MD5 authentication for '` | up to the user | user name, raw, [`IAX2_USER`] (MD5 also prints the received digest) | in the opener | none: the message ends with the field |
//! | chan_iax2 `No registration for peer '` | up to the user | user name, raw, [`IAX2_USER`] | `(from ADDR)` in the tail | `' (from ADDR)` |
//! | pbx.c `Executing [..` (VERBOSE) | the line start | extension and application data (caller fields such as `${CALLERID(num)}`, the decoded From user), [`LOGGER_MESSAGE`] | none | none: a longer message is truncated, so ` in new stack` may never come |
//! | dialplan `Log()` / `Verbose()` (`Ext. ..`, `app_verbose.c`) | the line start | whatever the dialplan logs, [`LOGGER_MESSAGE`] | none | none |
//!
//! Not injectable, so not openers: chan_sip's `Registration from '..' failed` (raw header, no
//! newline), PJSIP's `Request '..' from '..' failed` (re-escaped), the manager's
//! `failed to authenticate as` (a line protocol: no newline in a user name).
//!
//! What the guard decides, per opener: every line that *starts* within the field's capacity
//! (counted in bytes from the field's first byte) may be field text and is held. When the
//! next line starts beyond it, the held lines are judged:
//! * forms with a tail: a held line (or the opener itself) that carries the tail's marker
//!   within the capacity is a *candidate*. The real tail is always a candidate, and field text
//!   never follows it. So when no opener of another record lies between the first and the last
//!   candidate, the last candidate is the real tail: the lines before it are attacker text
//!   (counted `injected`), its sender is credited, and the lines after it are read normally.
//!   With an opener in between (another record, or a forged one, cannot be told apart), or no
//!   candidate, every held line is `suspect` and nobody is credited from the tail;
//! * forms without a tail: every held line is `suspect`.
//!
//! A sender printed in the opener (before the field) is server text, and is credited at once:
//! an injection attempt is an offence of its sender. Held lines that name the record's proven
//! sender are credited too (they cannot harm anyone else); no other held line is ever counted.
//! Openers inside suspect lines whose own reach goes further keep the guard closed (blind:
//! everything suspect) to the end of that reach.
//!
//! This module must never credit an address taken from a held line other than the real tail,
//! and never hold more than one field's capacity (plus one line) of text.

use super::rules::{self, Anatomy, Level, Rule, Transport};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The logger's message buffer (`BUFSIZ`): a longer message is cut, its tail lost.
pub const LOGGER_MESSAGE: usize = 8192;
/// chan_sip `register_verify()`: the To user is copied into a 256-byte buffer and decoded.
pub const SIP_ACCOUNT: usize = 256;
/// PJSIP endpoint identification: the decoded From user in a UUID-sized buffer.
pub const PJSIP_ACCOUNT: usize = 256;
/// chan_sip `get_destination()`: the Request-URI, copied into a 256-byte buffer, decoded.
pub const SIP_EXTEN: usize = 256;
/// res_pjsip_session: the decoded Request-URI user, `AST_MAX_EXTENSION` (80).
pub const PJSIP_EXTEN: usize = 256;
/// IAX2 information elements carry at most 255 bytes.
pub const IAX2_USER: usize = 256;

/// An injectable record form (stable names: they are stored in the detector state).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    Security,
    SipCall,
    PjsipCall,
    Iax2Auth,
    Iax2NoRegistration,
    Executing,
    DialplanLog,
}

/// Who sent the record, as far as its opener tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sender {
    /// Printed before the field (server text): the record's sender.
    Head(Rule, IpAddr, Option<Transport>),
    /// The head has the rule's shape, but its address is not valid.
    HeadRefused,
    /// Printed in the tail, counted under this rule once the tail is found (`None`: an event
    /// that is not counted, but still carries the field).
    Tail(Option<Rule>),
    /// No address in the record.
    Nobody,
}

/// A line that opens a record with an attacker field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opening {
    pub form: Form,
    /// Where the field starts in the line.
    pub field: usize,
    /// How many bytes the field can carry.
    pub cap: usize,
    pub sender: Sender,
}

fn offset_in(line: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).saturating_sub(line.as_ptr() as usize)
}

/// Whether `a` (taken apart from `line`) opens a record with an attacker field, and which.
pub fn opening(a: &Anatomy<'_>, line: &[u8], aggressive: bool) -> Option<Opening> {
    let base = offset_in(line, a.msg);
    let msg = a.msg;
    if a.file.starts_with(b"Ext. ") || a.file == b"app_verbose.c" {
        // FreePBX's fixed "Rejecting unknown SIP connection from ADDR" carries no caller field.
        if matches!(
            rules::classify(a, aggressive),
            rules::Verdict::Failure { .. }
        ) {
            return None;
        }
        return Some(Opening {
            form: Form::DialplanLog,
            field: base,
            cap: LOGGER_MESSAGE,
            sender: Sender::Nobody,
        });
    }
    match a.level {
        Level::Verbose => {
            let m = msg.trim_ascii_start();
            let m = m.strip_prefix(b"-- ").unwrap_or(m);
            (a.file == b"pbx.c" && m.starts_with(b"Executing [")).then_some(Opening {
                form: Form::Executing,
                field: offset_in(line, m) + 11,
                cap: LOGGER_MESSAGE,
                sender: Sender::Nobody,
            })
        }
        Level::Security if a.file == b"res_security_log.c" => security(msg, base, aggressive),
        Level::Notice | Level::Warning => match a.file {
            b"chan_sip.c" if msg.starts_with(b"Call from '") => {
                call(line, msg, base, Form::SipCall, SIP_EXTEN)
            }
            b"res_pjsip_session.c" => call(line, msg, base, Form::PjsipCall, PJSIP_EXTEN),
            b"chan_iax2.c" => iax2(msg, base),
            _ => None,
        },
        _ => None,
    }
}

/// A line whose Asterisk prefix is cut inside the "file" of a dialplan `Log()` line
/// (`LEVEL[lwp][C-..] Ext. <exten>`: the dialled extension, decoded, carried the newline).
pub fn broken_opening(line: &[u8]) -> Option<Opening> {
    let head = &line[..line.len().min(160)];
    for (pat, fake) in [
        (&b"] Ext. "[..], &b" a.c: m"[..]),
        (&b"]: Ext. "[..], &b": a.c:1 f: m"[..]),
    ] {
        let Some(i) = memchr::memmem::find(head, pat) else {
            continue;
        };
        let probe = [&line[..=i], fake].concat();
        if rules::anatomy(&probe).is_some() {
            return Some(Opening {
                form: Form::DialplanLog,
                field: i + pat.len(),
                cap: LOGGER_MESSAGE,
                sender: Sender::Nobody,
            });
        }
    }
    None
}

const ACCOUNT: &[u8] = b"AccountID=\"";

fn security(msg: &[u8], base: usize, aggressive: bool) -> Option<Opening> {
    msg.strip_prefix(b"SecurityEvent=\"")?;
    let at = memchr::memmem::find(msg, ACCOUNT)?;
    let head = &msg[..at];
    let cap = match memchr::memmem::find(head, b",Service=\"")
        .and_then(|i| head[i + 10..].split(|c| *c == b'"').next())
    {
        Some(b"SIP") => SIP_ACCOUNT,
        Some(b"PJSIP") => PJSIP_ACCOUNT,
        _ => LOGGER_MESSAGE,
    };
    let ty = rules::security_type(msg);
    Some(Opening {
        form: Form::Security,
        field: base + at + ACCOUNT.len(),
        cap,
        sender: Sender::Tail(rules::security_rule(ty, aggressive)),
    })
}

fn call(line: &[u8], msg: &[u8], base: usize, form: Form, cap: usize) -> Option<Opening> {
    let rule = if form == Form::SipCall {
        Rule::SipCallRejected
    } else {
        Rule::PjsipCallRejected
    };
    match rules::call_opener(msg, form == Form::PjsipCall)? {
        rules::CallHead::Parsed { ip, transport, ext } => Some(Opening {
            form,
            field: base + ext,
            cap,
            sender: Sender::Head(rule, ip, transport),
        }),
        rules::CallHead::Unparsed { from } => Some(Opening {
            form,
            field: offset_in(line, &msg[from..]),
            // The name (if it carried the newline) and the extension.
            cap: 2 * cap,
            sender: Sender::HeadRefused,
        }),
    }
}

fn iax2(msg: &[u8], base: usize) -> Option<Opening> {
    const NOREG: &[u8] = b"No registration for peer '";
    if msg.starts_with(NOREG) {
        return Some(Opening {
            form: Form::Iax2NoRegistration,
            field: base + NOREG.len(),
            cap: IAX2_USER,
            sender: Sender::Tail(Some(Rule::Iax2NoRegistration)),
        });
    }
    let rest = msg.strip_prefix(b"Host ")?;
    let sp = memchr::memchr(b' ', rest)?;
    let tail = &rest[sp..];
    let (field, cap) = if tail.starts_with(b" failed to authenticate as ") {
        (5 + sp + 27, IAX2_USER)
    } else if tail.starts_with(b" failed MD5 authentication for '") {
        // The user name, then the digest the peer sent: both remote text.
        (5 + sp + 32, 2 * IAX2_USER)
    } else {
        return None;
    };
    let sender = match rules::parse_addrport(&rest[..sp]) {
        Some(ip) => Sender::Head(Rule::Iax2AuthFailed, ip, Some(Transport::Udp)),
        None => Sender::HeadRefused,
    };
    Some(Opening {
        form: Form::Iax2Auth,
        field: base + field,
        cap,
        sender,
    })
}

/// Where the server text after the field starts in `line[from..]` (an offset into `line`):
/// the marker every real tail of `form` carries.
pub fn tail_marker(form: Form, line: &[u8], from: usize) -> Option<usize> {
    let hay = line.get(from..)?;
    let first = |needles: &[&[u8]]| {
        needles
            .iter()
            .filter_map(|n| memchr::memmem::find(hay, n))
            .min()
    };
    let at = match form {
        Form::Security => first(&[
            b"\",SessionID=\"",
            b"\",SessionTV=\"",
            b"\",LocalAddress=\"",
            b"\",RemoteAddress=\"",
        ]),
        Form::SipCall | Form::PjsipCall => first(&[rules::CTX_TAIL]),
        Form::Iax2NoRegistration => first(&[b"' (from "]),
        Form::Iax2Auth | Form::Executing | Form::DialplanLog => None,
    }?;
    Some(from + at)
}

/// The sender named by the real tail `line` of a record, whose server text starts at `marker`.
pub fn tail_sender(
    form: Form,
    opener: &[u8],
    line: &[u8],
    marker: usize,
) -> Option<(IpAddr, Option<Transport>)> {
    let rest = line.get(marker..)?;
    match form {
        Form::Security => {
            let msg = rules::anatomy(opener)?.msg;
            rules::security_tail(rest, rules::security_type(msg))
        }
        Form::Iax2NoRegistration => {
            // The server's `' (from ADDR)` ends the message: the last one.
            let body = rest.strip_suffix(b")")?;
            let at = memchr::memmem::rfind(body, b"' (from ")?;
            rules::parse_bare_ip(&body[at + 8..]).map(|ip| (ip, Some(Transport::Udp)))
        }
        _ => None,
    }
}

/// The lines held after an opener, while they may still be field text. Persisted with the
/// detector state, so a record written across two runs is judged whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub form: Form,
    pub cap: usize,
    pub sender: Sender,
    /// The opener line (capped at the logger's message size) and where its field starts.
    pub opener: Vec<u8>,
    pub field: usize,
    /// The opener's time and cross-file key, for the tail's credit.
    pub time: i64,
    pub key: u64,
    /// Bytes from the field's first byte to the start of the next line.
    pub offset: usize,
    /// Held lines, each with its start (bytes from the field's first byte).
    pub lines: Vec<(usize, Vec<u8>)>,
    /// Reopened for a record found inside suspect lines: everything held is suspect.
    pub blind: bool,
}

impl Record {
    pub fn new(op: &Opening, line: &[u8], time: i64, key: u64) -> Record {
        let field = op.field.min(line.len());
        Record {
            form: op.form,
            cap: op.cap,
            sender: op.sender,
            opener: line[..line.len().min(LOGGER_MESSAGE + field)].to_vec(),
            field,
            time,
            key,
            offset: line.len() - field + 1,
            lines: Vec::new(),
            blind: false,
        }
    }

    /// Whether a line starting now may still be field text.
    pub fn reaches_next(&self) -> bool {
        self.offset <= self.cap
    }

    pub fn hold(&mut self, line: &[u8]) {
        self.lines.push((self.offset, line.to_vec()));
        self.offset += line.len() + 1;
    }

    /// The candidates for the real tail: `None` is the opener, `Some(i)` held line `i`; each
    /// with its marker's offset in that line.
    fn candidates(&self) -> Vec<(Option<usize>, usize)> {
        let mut out = Vec::new();
        if let Some(m) = tail_marker(self.form, &self.opener, self.field) {
            if m - self.field <= self.cap {
                out.push((None, m));
            }
        }
        for (i, (start, l)) in self.lines.iter().enumerate() {
            if let Some(m) = tail_marker(self.form, l, 0) {
                if start + m <= self.cap {
                    out.push((Some(i), m));
                }
            }
        }
        out
    }

    /// Judge the held lines; `is_opener` tells whether a held line opens a record of its own.
    pub fn judge(&self, is_opener: impl Fn(&[u8]) -> bool) -> Judgement {
        if self.blind {
            return Judgement::Suspect;
        }
        let cands = self.candidates();
        let (Some(first), Some(last)) = (cands.first(), cands.last()) else {
            return Judgement::Suspect;
        };
        let lo = first.0.map_or(0, |i| i + 1);
        let hi = last.0.unwrap_or(0);
        if (lo..hi).any(|i| is_opener(&self.lines[i].1)) {
            return Judgement::Ambiguous;
        }
        // A real tail that starts like a whole log line means the field's last line was made
        // to look like one; a forged line taken for the tail means the field was longer than
        // its capacity. Neither can be told from the other: nothing here is genuine.
        if let Some(i) = last.0 {
            if rules::anatomy(&self.lines[i].1).is_some() {
                return Judgement::Ambiguous;
            }
        }
        Judgement::Tail {
            line: last.0,
            marker: last.1,
        }
    }

    /// The text of the real tail line chosen by [`Record::judge`].
    pub fn line(&self, which: Option<usize>) -> &[u8] {
        match which {
            None => &self.opener,
            Some(i) => &self.lines[i].1,
        }
    }
}

/// What the held lines are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// The real tail is this line (`None`: the opener; the record was one line), its server
    /// text starting at `marker`; the held lines before it are field text, those after it are
    /// genuine.
    Tail { line: Option<usize>, marker: usize },
    /// Several tails with another record's opener between them: every held line is suspect.
    Ambiguous,
    /// No tail (the form has none, or none was found): every held line is suspect.
    Suspect,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(line: &[u8]) -> Option<Opening> {
        let a = rules::anatomy(line)?;
        opening(&a, line, false)
    }

    #[test]
    fn openers_and_fields() {
        let l = b"[2024-05-02 10:11:12] NOTICE[1][C-00000001] chan_sip.c: Call from '' (198.51.100.7:5060) to extension 'x";
        let op = open(l).unwrap();
        assert_eq!(op.form, Form::SipCall);
        assert_eq!(&l[op.field..], b"x");
        assert!(matches!(op.sender, Sender::Head(Rule::SipCallRejected, ..)));
        let l = b"[2024-05-02 10:11:12] SECURITY[1] res_security_log.c: SecurityEvent=\"InvalidPassword\",EventTV=\"x\",Severity=\"Error\",Service=\"SIP\",EventVersion=\"2\",AccountID=\"ab";
        let op = open(l).unwrap();
        assert_eq!(&l[op.field..], b"ab");
        assert_eq!(op.cap, SIP_ACCOUNT);
        let l = b"[2024-05-02 10:11:12] NOTICE[1] chan_iax2.c: Host 198.51.100.7 failed to authenticate as bob";
        let op = open(l).unwrap();
        assert_eq!(&l[op.field..], b"bob");
        let l = b"[2024-05-02 10:11:12] NOTICE[1] chan_sip.c: Registration from '' failed for '198.51.100.7:5060' - Wrong password";
        assert!(open(l).is_none());
        let l = b"[2024-05-02 10:11:12] VERBOSE[1][C-00000001] pbx.c: Executing [s@x:1] NoOp(\"SIP/a\", \"b\") in new stack";
        assert_eq!(open(l).unwrap().form, Form::Executing);
    }

    #[test]
    fn the_last_tail_wins_unless_another_opener_is_between() {
        let opener = b"[2024-05-02 10:11:12] NOTICE[1] chan_iax2.c: No registration for peer 'a";
        let op = open(opener).unwrap();
        let mut r = Record::new(&op, opener, 0, 0);
        r.hold(b"' (from 203.0.113.66)");
        r.hold(b"x' (from 198.51.100.7)");
        let j = r.judge(|_| false);
        assert_eq!(
            j,
            Judgement::Tail {
                line: Some(1),
                marker: 1
            }
        );
        assert_eq!(
            r.judge(|l| l.starts_with(b"'")),
            Judgement::Tail {
                line: Some(1),
                marker: 1
            }
        );
        let mut r2 = Record::new(&op, opener, 0, 0);
        r2.hold(b"' (from 203.0.113.66)");
        r2.hold(b"NOTICE[1] chan_iax2.c: No registration for peer 'b");
        r2.hold(b"x' (from 198.51.100.7)");
        assert_eq!(r2.judge(|l| l.starts_with(b"NOTICE")), Judgement::Ambiguous);
    }
}
