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
//! What the attacker controls, per form (read from Asterisk 13.38, 18.26, 20.20, 21.12 and
//! 22.10: `main/logger.c`, `res/res_security_log.c`, `main/security_events.c`,
//! `channels/chan_sip.c`, `channels/sip/security_events.c`, `res/res_pjsip*`,
//! `channels/chan_iax2.c`, `main/pbx.c`, `apps/app_verbose.c`, `main/manager.c`). No version
//! escapes anything in the text log: LF, CR and ESC reach the file as they are (only the
//! `[json]` formatter of 14+ escapes). A message holds at most 8,191 bytes; a longer one is cut,
//! and the cut message loses its tail and its final newline.
//!
//! | form | attacker field, decoding, capacity | sender | tail trusted |
//! |---|---|---|---|
//! | security event, `Service="SIP"` | AccountID = To user of a REGISTER, URI-decoded by default (`pedanticsipchecking`), 251 bytes ([`SIP_ACCOUNT`]) | tail `RemoteAddress` (but see below) | yes |
//! | security event, `Service="PJSIP"` | AccountID = unescaped From user, 36 bytes ([`PJSIP_ACCOUNT`]); SessionID = Call-ID, raw, no newline | tail `RemoteAddress` | yes |
//! | security event, `Service="AMI"` | AccountID = `Username:`, raw over TCP (no newline, [`AMI_TCP_ACCOUNT`]), URI-decoded over HTTP (up to a 40,960-byte POST body in 20) | tail `RemoteAddress` | only when the admin counts AMI events (no HTTP manager) |
//! | chan_sip `Call from '..' (ADDR) to extension '<x>` without its tail | Request-URI user, always URI-decoded, bounded by the message only | head (`p->recv`) | no: a long extension cuts the tail off |
//! | res_pjsip_session `Call from '..' (TP:ADDR)` (13) / ` ..: Call (TP:ADDR)` (18.1+) `to extension '<x>' ...` | Request-URI user, unescaped, 79 bytes ([`PJSIP_EXTEN`]) | head | yes |
//! | chan_iax2 `Host ADDR failed to authenticate as <user>` (NOTICE; WARNING from 18.21/20.6) | user name IE, raw, 255 bytes ([`IAX2_USER`]) | head | none: the user ends the message |
//! | chan_iax2 `Host ADDR failed MD5 authentication for '..' (.. != <md5>)` | the MD5 result IE, raw, 255 | head | no |
//! | chan_iax2 `No registration for peer '<user>' (from ADDR)` | user name IE, raw, 255 | tail `(from ADDR)` | yes |
//! | chan_iax2 `Rejected connect attempt from ..` | called number and context IEs, raw | none | no |
//! | manager.c `ADDR failed to authenticate as '<user>`, `.. nonexistent user '<user>` without the closing quote | `Username:`, URI-decoded over HTTP | head | no |
//! | res_pjsip.c `CallerID Name '..' for number '<n>' has invalid UTF-8 ...` (18.17+) | unescaped From user, 79 | none | no |
//! | pbx.c `Executing [<exten>@ctx:prio] App("chan", "<args>")` (VERBOSE), when its first line lacks ` in new stack` | extension (79) and arguments (caller fields such as the decoded From user), up to the message size | none | no |
//! | dialplan `Log()` (`Ext. <exten>: <msg>`, any level, SECURITY from 18.8) and `Verbose()` (`app_verbose.c`) | the message, and the extension in the "file" token, which can itself carry the newline ([`broken_opening`]) | none | no |
//!
//! Not injectable, so not openers: chan_sip's `Registration from '..' failed` (a raw header: no
//! newline), PJSIP's `Request '..' from '..' failed` (re-escaped From, raw Call-ID).
//!
//! Where the field can fill the logger's message (chan_sip's extension, the manager's user
//! name over HTTP, dialplan arguments), a tail cannot be trusted, and holding the next 8 KiB
//! after every such line would leave a busy log unread (a scan from a few addresses writes a
//! `Call from` line every few lines; every verbose dialplan step writes an `Executing` line).
//! So those lines are held only when their first physical line is broken before its tail.
//! The known limit: a field that first completes its own line with a fake tail and then starts
//! a forged line after a newline writes a *perfect* line, which no line reader can tell from a
//! real one (research `asterisk-logs.md` §4.3). Where the field is short (security event
//! accounts, PJSIP extensions, IAX2 user names), every line is held and the fake tail fails.
//!
//! Two attacks no line reader can see, so the rules refuse their source instead:
//! * chan_sip writes the top Via's `maddr` (or the source with the Via port) as a security
//!   event's `RemoteAddress`: an address the sender chooses, in a whole, genuine line. chan_sip
//!   events count only when `asterisk.security_event_services` lists `SIP`; its NOTICE lines
//!   carry the real source.
//! * The logger deletes from an ESC byte to the next `m`: an ESC in a raw field before the
//!   address can delete the real address up to the first `m` of the reason (`... - Not a local
//!   domain`, `... - No matching endpoint found`), leaving a perfect single line. Not handled
//!   here (see the project's issue list).
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
//! A tail is trusted only when the field cannot fill the logger's message: a cut message has no
//! tail, so a fake one inside the field would be taken for it.
//!
//! This module must never credit an address taken from a held line other than the real tail,
//! and never hold more than one field's capacity (plus one line) of text.

use super::rules::{self, Anatomy, Level, Rule, Transport};
use crate::config::asterisk::SecurityServices;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The logger's message buffer (`BUFSIZ`): a longer message is cut, its tail lost.
pub const LOGGER_MESSAGE: usize = 8192;
/// chan_sip `register_verify()`: the To header in `char tmp[256]`, less `sip:`, decoded.
pub const SIP_ACCOUNT: usize = 251;
/// PJSIP `endpoint_lookup()`: the unescaped From user in `char name[AST_UUID_STR_LEN]` (37).
pub const PJSIP_ACCOUNT: usize = 36;
/// res_pjsip_session: the unescaped Request-URI user, `AST_MAX_EXTENSION` (80) with its NUL.
pub const PJSIP_EXTEN: usize = 79;
/// IAX2 information elements carry at most 255 bytes (a one-byte length).
pub const IAX2_USER: usize = 255;
/// The manager over TCP: `Username:` in a 1,025-byte line buffer (no newline possible).
pub const AMI_TCP_ACCOUNT: usize = 1015;

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
    /// Another message that ends with remote text (the manager's user name, an IAX2 called
    /// number, a PJSIP caller number).
    Note,
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
    /// Whether the record's tail can be trusted to end it: false when the field can fill the
    /// logger's message, whose cut end loses the tail.
    pub tail: bool,
    /// A security event that prints remote text after its `RemoteAddress`: every one in the
    /// tail must agree.
    pub strict: bool,
    pub sender: Sender,
}

fn offset_in(line: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).saturating_sub(line.as_ptr() as usize)
}

/// Whether `a` (taken apart from `line`) opens a record with an attacker field, and which.
pub fn opening(
    a: &Anatomy<'_>,
    line: &[u8],
    aggressive: bool,
    services: SecurityServices,
) -> Option<Opening> {
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
            tail: false,
            strict: false,
            sender: Sender::Nobody,
        });
    }
    match a.level {
        Level::Verbose => {
            let m = msg.trim_ascii_start();
            let m = m.strip_prefix(b"-- ").unwrap_or(m);
            // Only a line broken before its ` in new stack` tail: every verbose dialplan step
            // writes one of these, and holding 8 KiB after each would leave a busy full log
            // unread. A fake tail before a newline in the arguments is the known limit.
            let broken = !m.ends_with(b" in new stack");
            (a.file == b"pbx.c" && m.starts_with(b"Executing [") && broken).then_some(Opening {
                form: Form::Executing,
                field: offset_in(line, m) + 11,
                cap: LOGGER_MESSAGE,
                tail: false,
                strict: false,
                sender: Sender::Nobody,
            })
        }
        Level::Security if a.file == b"res_security_log.c" => {
            security(msg, base, aggressive, services)
        }
        Level::Notice | Level::Warning => match a.file {
            // chan_sip decodes the whole Request-URI user: only the message size bounds it, so
            // only a line broken before its tail is held (see the module docs).
            b"chan_sip.c" if msg.starts_with(b"Call from '") && rules::call_tail(msg).is_none() => {
                call(line, msg, base, Form::SipCall, LOGGER_MESSAGE)
            }
            b"res_pjsip_session.c" => call(line, msg, base, Form::PjsipCall, PJSIP_EXTEN),
            b"chan_iax2.c" => iax2(msg, base),
            b"manager.c" => manager(msg, base),
            // The unescaped From user (79 bytes) after the raw display name (79).
            b"res_pjsip.c" if msg.starts_with(b"CallerID Name '") => Some(Opening {
                form: Form::Note,
                field: base + 15,
                cap: 2 * PJSIP_EXTEN + 16,
                tail: false,
                strict: false,
                sender: Sender::Nobody,
            }),
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
                tail: false,
                strict: false,
                sender: Sender::Nobody,
            });
        }
    }
    None
}

const ACCOUNT: &[u8] = b"AccountID=\"";

fn security(
    msg: &[u8],
    base: usize,
    aggressive: bool,
    services: SecurityServices,
) -> Option<Opening> {
    msg.strip_prefix(b"SecurityEvent=\"")?;
    let at = rules::fwd!(ACCOUNT).find(msg)?;
    let head = &msg[..at];
    let service = rules::fwd!(b",Service=\"")
        .find(head)
        .and_then(|i| head[i + 10..].split(|c| *c == b'"').next())
        .unwrap_or_default();
    // chan_sip: the decoded To user; PJSIP: the unescaped From user; the manager's user name:
    // raw over TCP (no newline, 1,015 bytes), URI-decoded over HTTP, as long as a request body
    // (beyond the message size, so the tail can be cut off). An admin who counts AMI events
    // says the manager is not reachable over HTTP.
    let cap = match service {
        b"SIP" => SIP_ACCOUNT,
        b"PJSIP" => PJSIP_ACCOUNT,
        b"AMI" if services.ami => AMI_TCP_ACCOUNT,
        _ => LOGGER_MESSAGE,
    };
    let ty = rules::security_type(msg);
    let rule = rules::security_rule(ty, aggressive).filter(|_| services.counts(service));
    Some(Opening {
        form: Form::Security,
        field: base + at + ACCOUNT.len(),
        cap,
        tail: cap < LOGGER_MESSAGE,
        strict: rules::security_strict(ty),
        sender: Sender::Tail(rule),
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
            tail: cap < LOGGER_MESSAGE,
            strict: false,
            sender: Sender::Head(rule, ip, transport),
        }),
        rules::CallHead::Unparsed { from } => Some(Opening {
            form,
            field: offset_in(line, &msg[from..]),
            // The name (if it carried the newline) and the extension.
            cap: (2 * cap).min(LOGGER_MESSAGE),
            tail: false,
            strict: false,
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
            tail: true,
            strict: false,
            sender: Sender::Tail(Some(Rule::Iax2NoRegistration)),
        });
    }
    // The called number and context of a refused call: raw, no address counted.
    const REJECTED: &[u8] = b"Rejected connect attempt from ";
    if msg.starts_with(REJECTED) {
        return Some(Opening {
            form: Form::Note,
            field: base + REJECTED.len(),
            cap: 2 * IAX2_USER + 64,
            tail: false,
            strict: false,
            sender: Sender::Nobody,
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
        tail: false,
        strict: false,
        sender,
    })
}

/// manager.c `ADDR failed to authenticate as '<user>'` and `ADDR tried to authenticate with
/// nonexistent user '<user>'`: over HTTP the user name is URI-decoded, and it ends the message.
fn manager(msg: &[u8], base: usize) -> Option<Opening> {
    // Held only when broken before the closing quote (see the module docs).
    if msg.ends_with(b"'") {
        return None;
    }
    let sp = memchr::memchr(b' ', msg)?;
    let rest = &msg[sp..];
    let head = [
        &b" failed to authenticate as '"[..],
        b" tried to authenticate with nonexistent user '",
        b" failed to pass IP ACL as '",
    ]
    .into_iter()
    .find(|h| rest.starts_with(h))?;
    let sender = match rules::parse_bare_ip(&msg[..sp]) {
        Some(ip) if head != b" failed to pass IP ACL as '" => {
            Sender::Head(Rule::AmiAuthFailed, ip, Some(Transport::Tcp))
        }
        Some(_) => Sender::Nobody,
        None => Sender::HeadRefused,
    };
    Some(Opening {
        form: Form::Note,
        field: base + sp + head.len(),
        cap: LOGGER_MESSAGE,
        tail: false,
        strict: false,
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
        // The first `",<server field>="` (one pass: the account is usually short).
        Form::Security => rules::fwd!(b"\",").find_iter(hay).find(|&i| {
            let r = &hay[i + 2..];
            [
                &b"SessionID=\""[..],
                b"SessionTV=\"",
                b"LocalAddress=\"",
                b"RemoteAddress=\"",
            ]
            .iter()
            .any(|n| r.starts_with(n))
        }),
        Form::SipCall | Form::PjsipCall => first(&[rules::CTX_TAIL]),
        Form::Iax2NoRegistration => first(&[b"' (from "]),
        Form::Iax2Auth | Form::Executing | Form::DialplanLog | Form::Note => None,
    }?;
    Some(from + at)
}

/// The sender named by the real tail `line` of a record, whose server text starts at `marker`.
pub fn tail_sender(
    form: Form,
    strict: bool,
    line: &[u8],
    marker: usize,
) -> Option<(IpAddr, Option<Transport>)> {
    let rest = line.get(marker..)?;
    match form {
        Form::Security => rules::security_tail(rest, strict),
        Form::Iax2NoRegistration => {
            // The server's `' (from ADDR)` ends the message: the last one.
            let body = rest.strip_suffix(b")")?;
            let at = rules::rev!(b"' (from ").rfind(body)?;
            rules::parse_bare_ip(&body[at + 8..]).map(|ip| (ip, Some(Transport::Udp)))
        }
        _ => None,
    }
}

/// How many bytes of Asterisk's message `b` stands for: rsyslog writes each control byte as
/// four (`#033`, `#011`), so those count as one. Counting fewer bytes than were written only
/// lets the guard hold more; counting more would let a line it should hold go.
pub fn field_bytes(b: &[u8]) -> usize {
    let escapes = memchr::memchr_iter(b'#', b)
        .filter(|&i| {
            b.get(i + 1..i + 4)
                .is_some_and(|o| o.iter().all(|c| (b'0'..=b'7').contains(c)))
        })
        .count();
    b.len() - 3 * escapes
}

/// A held physical line without its carriage return, as the rules read it.
pub fn text(l: &[u8]) -> &[u8] {
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// The lines held after an opener, while they may still be field text. Persisted with the
/// detector state, so a record written across two runs is judged whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub form: Form,
    pub cap: usize,
    /// Whether the form's tail can end the record (see [`Opening::tail`]).
    #[serde(default)]
    pub tail: bool,
    #[serde(default)]
    pub strict: bool,
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
    /// The proven sender of the record this one was reopened from: held lines naming it are
    /// still counted.
    #[serde(default)]
    pub proven: Option<IpAddr>,
}

impl Record {
    pub fn new(op: &Opening, line: &[u8], time: i64, key: u64) -> Record {
        let field = op.field.min(line.len());
        Record {
            form: op.form,
            cap: op.cap,
            tail: op.tail,
            strict: op.strict,
            sender: op.sender,
            opener: line[..line.len().min(LOGGER_MESSAGE + field)].to_vec(),
            field,
            time,
            key,
            offset: field_bytes(&line[field..]) + 1,
            lines: Vec::new(),
            blind: false,
            proven: None,
        }
    }

    /// Whether a line starting now may still be field text.
    pub fn reaches_next(&self) -> bool {
        self.offset <= self.cap
    }

    pub fn hold(&mut self, line: &[u8]) {
        self.lines.push((self.offset, line.to_vec()));
        // A syslog or journal header in front of a held line is the log writer's (journald
        // writes one per line of Asterisk's console output), not field bytes.
        let l = text(line);
        self.offset += field_bytes(&l[rules::header_len(l)..]) + 1;
    }

    /// The candidates for the real tail: `None` is the opener, `Some(i)` held line `i`; each
    /// with its marker's offset in that line.
    fn candidates(&self) -> Vec<(Option<usize>, usize)> {
        let mut out = Vec::new();
        if let Some(m) = tail_marker(self.form, &self.opener, self.field) {
            if field_bytes(&self.opener[self.field..m]) <= self.cap {
                out.push((None, m));
            }
        }
        for (i, (start, l)) in self.lines.iter().enumerate() {
            // Field bytes start after the log writer's header, as in `hold`.
            let l = text(l);
            let h = rules::header_len(l);
            if let Some(m) = tail_marker(self.form, l, h) {
                if start + field_bytes(&l[h..m]) <= self.cap {
                    out.push((Some(i), m));
                }
            }
        }
        out
    }

    /// Judge the held lines; `is_opener` tells whether a held line opens a record of its own.
    pub fn judge(&self, is_opener: impl Fn(&[u8]) -> bool) -> Judgement {
        if self.blind || !self.tail {
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
            if rules::anatomy(text(&self.lines[i].1)).is_some() {
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
            Some(i) => text(&self.lines[i].1),
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
        opening(&a, line, false, SecurityServices::default())
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
        // A dialplan line is held only when broken before its tail; so is a chan_sip call.
        let l = b"[2024-05-02 10:11:12] VERBOSE[1][C-00000001] pbx.c: Executing [s@x:1] NoOp(\"SIP/a\", \"b";
        assert_eq!(open(l).unwrap().form, Form::Executing);
        let l = b"[2024-05-02 10:11:12] VERBOSE[1][C-00000001] pbx.c: Executing [s@x:1] NoOp(\"SIP/a\", \"b\") in new stack";
        assert!(open(l).is_none());
        let l = b"[2024-05-02 10:11:12] NOTICE[1][C-00000001] chan_sip.c: Call from '' (198.51.100.7:5060) to extension 'x' rejected because extension not found in context 'p'.";
        assert!(open(l).is_none());
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
