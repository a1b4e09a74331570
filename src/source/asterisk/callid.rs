//! Block-aware parsing of SIP debug dumps in the Asterisk `full` log, and attribution of the
//! IP-less chan_sip warning `Timeout on <Call-ID> on non-critical invite transaction.` to the
//! address that sent the INVITE (research `asterisk-logs.md` §5.3).
//!
//! Dumps are blocks: chan_sip `<--- SIP read from TP:ADDR --->` … `<------------->`,
//! `<--- [Reliably ]Transmitting (NAT) to ADDR --->` … `<------------>`, the prefixed
//! `[Reliably ]Transmitting (NAT) to ADDR:` / `Retransmitting #N (NAT) to ADDR:` … `---`, and
//! pjsip `<--- Received SIP request (N bytes) from TP:ADDR --->` followed by exactly N bytes.
//! Every line inside a block is consumed here and never reaches the failure matcher. Per
//! Call-ID the map keeps the socket sources of inbound INVITEs (only from `SIP read from` /
//! `Received ... from` block headers, never from a transmit destination), whether Asterisk sent
//! a 2xx, the status of the last retransmission, and the `(NAT)` destinations.
//!
//! A timeout is attributed only when exactly one source sent that Call-ID's INVITE within the
//! window, no 2xx was sent, the last retransmitted status is >= 400, no `(NAT)` transmission
//! went elsewhere, no malformed block could have hidden a forged one (a chan_sip block that
//! ends inside its header section taints every block that starts within one log message's size
//! after it) and the logger did not report dropping messages. Otherwise it is an "unattributed
//! scanner timeout".
//!
//! This module must never take an address from packet contents (Via, Contact, From, bodies),
//! never let a dump line reach the failure matcher, and never grow without bound.

use super::rules::{parse_addrport, Anatomy, Level};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;

/// One log message is at most this long (`LOGMSG_SIZE`); a dump cannot be longer.
pub const MESSAGE_CAP: i64 = 8192 + 512;
/// How long before its timeout an INVITE may have arrived (64*T1 = 32 s plus margin).
pub const WINDOW_SECS: i64 = 300;
/// Bound on remembered Call-IDs.
pub const MAX_CALLIDS: usize = 16_384;
/// Longest Call-ID remembered (longer ones are never attributed).
const MAX_CALLID_LEN: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Kind {
    /// chan_sip `SIP read from` (inbound).
    Read,
    /// chan_sip `Transmitting ... --->` (ends with 12 dashes).
    TxBracket,
    /// chan_sip `Transmitting ... to ADDR:` (ends with `---`).
    TxColon,
    /// chan_sip `Retransmitting #N ... to ADDR:` (ends with `---`).
    Retx,
    /// pjsip logger, inbound.
    PjIn,
    /// pjsip logger, outbound.
    PjOut,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum First {
    Invite,
    OtherRequest,
    Status(u16),
    Malformed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Block {
    kind: Kind,
    addr: IpAddr,
    /// `(NAT)` transmission (the destination is the real source), for chan_sip transmits.
    nat: bool,
    time: i64,
    /// Bytes left: exact for pjsip blocks, the message cap for chan_sip blocks.
    remaining: i64,
    first: Option<First>,
    in_headers: bool,
    callid: Option<String>,
    /// Started inside the shadow of a malformed block.
    contested: bool,
}

/// Per-file parser state (persisted with the file's cursor).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpParser {
    block: Option<Block>,
    /// Bytes of the stream processed so far (positions for the taint shadow).
    pos: u64,
    /// Blocks starting before this position are contested.
    taint_until: u64,
}

/// Why a timeout was not attributed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unattributed {
    /// No full log configured, or no INVITE with that Call-ID in it.
    NoInvite,
    /// Several sources sent INVITEs with that Call-ID.
    SeveralSources,
    /// A malformed dump could have forged the INVITE.
    Contested,
    /// The INVITE is older than the window.
    Stale,
    /// Asterisk answered with a 2xx (a re-INVITE a phone did not ACK).
    Answered,
    /// The last retransmission was not a final error status.
    NotRejected,
    /// Asterisk's (NAT) transmissions went to another address.
    DestinationMismatch,
    /// The logger reported dropped messages around that time.
    LogLoss,
    /// On the wire, the INVITE carried credentials: a phone that authenticated, not a scanner.
    Authenticated,
    /// On the wire, the sender acknowledged the final response.
    Acked,
}

impl Unattributed {
    pub fn name(self) -> &'static str {
        match self {
            Unattributed::NoInvite => "no_invite",
            Unattributed::SeveralSources => "several_sources",
            Unattributed::Contested => "contested",
            Unattributed::Stale => "stale",
            Unattributed::Answered => "answered",
            Unattributed::NotRejected => "not_rejected",
            Unattributed::DestinationMismatch => "destination_mismatch",
            Unattributed::LogLoss => "log_loss",
            Unattributed::Authenticated => "authenticated",
            Unattributed::Acked => "acked",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    last: i64,
    src: Option<IpAddr>,
    several: bool,
    invite_time: i64,
    sent_2xx: bool,
    last_retx: Option<u16>,
    nat_dest: Option<IpAddr>,
    nat_several: bool,
    contested: bool,
    /// Seen on the wire: an INVITE with credentials on this Call-ID.
    #[serde(default)]
    authenticated: bool,
    /// Seen on the wire: an ACK from the INVITE's sender.
    #[serde(default)]
    acked: bool,
}

/// Call-ID → what the dumps said about it. Bounded by [`MAX_CALLIDS`] (or the daemon's
/// `sip_wire.max_callids`, see [`CallIdMap::with_cap`]) and by age.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallIdMap {
    entries: HashMap<String, Entry>,
    /// Times at which the logger said it was dropping messages.
    loss: Vec<i64>,
    newest: i64,
    /// The bound on entries (not saved: the configuration sets it).
    #[serde(skip, default = "default_cap")]
    cap: usize,
}

fn default_cap() -> usize {
    MAX_CALLIDS
}

impl Default for CallIdMap {
    fn default() -> Self {
        CallIdMap {
            entries: HashMap::new(),
            loss: Vec::new(),
            newest: 0,
            cap: MAX_CALLIDS,
        }
    }
}

impl CallIdMap {
    /// An empty map holding at most `cap` Call-IDs (at least 16).
    pub fn with_cap(cap: usize) -> CallIdMap {
        CallIdMap {
            cap: cap.max(16),
            ..CallIdMap::default()
        }
    }

    /// Bound the map to `cap` Call-IDs (at least 16), dropping the oldest when it holds more.
    pub fn set_cap(&mut self, cap: usize) {
        self.cap = cap.max(16);
        if self.entries.len() >= self.cap {
            self.prune();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn entry(&mut self, callid: &str, time: i64) -> &mut Entry {
        self.newest = self.newest.max(time);
        if self.entries.len() >= self.cap && !self.entries.contains_key(callid) {
            self.prune();
        }
        let e = self.entries.entry(callid.to_owned()).or_default();
        e.last = e.last.max(time);
        e
    }

    /// Drop entries older than twice the window, then the oldest ones above the bound.
    pub fn prune(&mut self) {
        let cutoff = self.newest - 2 * WINDOW_SECS;
        self.entries.retain(|_, e| e.last >= cutoff);
        self.loss.retain(|t| *t >= cutoff);
        if self.entries.len() >= self.cap {
            let mut times: Vec<i64> = self.entries.values().map(|e| e.last).collect();
            times.sort_unstable();
            let keep_from = times[times.len() - self.cap / 2];
            self.entries.retain(|_, e| e.last >= keep_from);
            // Still too many (all at the same second): drop arbitrary ones.
            while self.entries.len() >= self.cap {
                let Some(k) = self.entries.keys().next().cloned() else {
                    break;
                };
                self.entries.remove(&k);
            }
        }
    }

    /// The logger said it is throwing messages away (`Log queue threshold ... exceeded`).
    pub fn log_loss(&mut self, time: i64) {
        if self.loss.len() < 1024 {
            self.loss.push(time);
        }
    }

    fn record_invite(&mut self, callid: &str, src: IpAddr, time: i64, contested: bool) {
        let e = self.entry(callid, time);
        match e.src {
            None => e.src = Some(src),
            Some(s) if s != src => e.several = true,
            Some(_) => {}
        }
        e.invite_time = e.invite_time.max(time);
        e.contested |= contested;
    }

    fn record_sent(
        &mut self,
        callid: &str,
        status: u16,
        retx: bool,
        nat_dest: Option<IpAddr>,
        time: i64,
    ) {
        let e = self.entry(callid, time);
        if (200..300).contains(&status) {
            e.sent_2xx = true;
        }
        if retx {
            e.last_retx = Some(status);
        }
        if let Some(d) = nat_dest {
            match e.nat_dest {
                None => e.nat_dest = Some(d),
                Some(x) if x != d => e.nat_several = true,
                Some(_) => {}
            }
        }
    }

    /// An INVITE seen on the wire from `src` (the packet's or HEP chunk's source).
    pub fn wire_invite(&mut self, callid: &[u8], src: IpAddr, time: i64, credentials: bool) {
        let key = String::from_utf8_lossy(callid);
        self.record_invite(&key, src, time, false);
        if credentials {
            self.entry(&key, time).authenticated = true;
        }
    }

    /// A final response to an INVITE seen on the wire, sent to `dst`.
    pub fn wire_response(&mut self, callid: &[u8], status: u16, dst: IpAddr, time: i64) {
        let key = String::from_utf8_lossy(callid);
        self.record_sent(&key, status, true, Some(dst), time);
    }

    /// An ACK seen on the wire from `src`.
    pub fn wire_ack(&mut self, callid: &[u8], src: IpAddr, time: i64) {
        let key = String::from_utf8_lossy(callid);
        let e = self.entry(&key, time);
        if e.src == Some(src) {
            e.acked = true;
        }
    }

    fn contest(&mut self, callid: &str, time: i64) {
        self.entry(callid, time).contested = true;
    }

    /// Attribute a `Timeout on <callid>` seen at `time` (research §5.3).
    pub fn attribute(&self, callid: &[u8], time: i64) -> Result<IpAddr, Unattributed> {
        let key = String::from_utf8_lossy(callid);
        let Some(e) = self.entries.get(key.as_ref()) else {
            return Err(Unattributed::NoInvite);
        };
        if e.contested {
            return Err(Unattributed::Contested);
        }
        let Some(src) = e.src else {
            return Err(Unattributed::NoInvite);
        };
        if e.several {
            return Err(Unattributed::SeveralSources);
        }
        if e.invite_time < time - WINDOW_SECS || e.invite_time > time + 1 {
            return Err(Unattributed::Stale);
        }
        if e.sent_2xx {
            return Err(Unattributed::Answered);
        }
        if e.authenticated {
            return Err(Unattributed::Authenticated);
        }
        if e.acked {
            return Err(Unattributed::Acked);
        }
        if matches!(e.last_retx, Some(s) if s < 400) {
            return Err(Unattributed::NotRejected);
        }
        if e.nat_several || matches!(e.nat_dest, Some(d) if d != src) {
            return Err(Unattributed::DestinationMismatch);
        }
        if self
            .loss
            .iter()
            .any(|t| *t <= time && *t >= e.invite_time - WINDOW_SECS)
        {
            return Err(Unattributed::LogLoss);
        }
        Ok(src)
    }
}

// ---------------------------------------------------------------------------------------------
// block starts

const READ_END: &[u8] = b"<------------->";
const TX_END: &[u8] = b"<------------>";

/// `[TP:]ADDR` of a block header.
fn tp_addr(b: &[u8]) -> Option<IpAddr> {
    if let Some(i) = memchr::memchr(b':', b) {
        let tp = &b[..i];
        if !tp.is_empty() && tp.iter().all(u8::is_ascii_alphanumeric) && !tp[0].is_ascii_digit() {
            return parse_addrport(&b[i + 1..]);
        }
    }
    parse_addrport(b)
}

/// `(NAT) to ADDR` / `(no NAT) to ADDR` → (nat, addr bytes).
fn nat_to(b: &[u8]) -> Option<(bool, &[u8])> {
    if let Some(r) = b.strip_prefix(b"(NAT) to ") {
        Some((true, r))
    } else {
        b.strip_prefix(b"(no NAT) to ").map(|r| (false, r))
    }
}

/// A raw (unprefixed) block start line.
fn raw_start(line: &[u8], time: i64) -> Option<Block> {
    let inner = line.strip_prefix(b"<--- ")?.strip_suffix(b" --->")?;
    if let Some(a) = inner.strip_prefix(b"SIP read from ") {
        return Some(Block::new(
            Kind::Read,
            tp_addr(a)?,
            false,
            time,
            MESSAGE_CAP,
        ));
    }
    let t = inner.strip_prefix(b"Reliably ").unwrap_or(inner);
    let (nat, a) = nat_to(t.strip_prefix(b"Transmitting ")?)?;
    Some(Block::new(
        Kind::TxBracket,
        parse_addrport(a)?,
        nat,
        time,
        MESSAGE_CAP,
    ))
}

/// A block start in the message of a prefixed VERBOSE line.
fn msg_start(file: &[u8], msg: &[u8], time: i64) -> Option<Block> {
    match file {
        b"chan_sip.c" => {
            let body = msg.strip_suffix(b":")?;
            if let Some(r) = body.strip_prefix(b"Retransmitting #") {
                let sp = memchr::memchr(b' ', r)?;
                if sp == 0 || !r[..sp].iter().all(u8::is_ascii_digit) {
                    return None;
                }
                let (nat, a) = nat_to(&r[sp + 1..])?;
                return Some(Block::new(
                    Kind::Retx,
                    parse_addrport(a)?,
                    nat,
                    time,
                    MESSAGE_CAP,
                ));
            }
            let t = body.strip_prefix(b"Reliably ").unwrap_or(body);
            let (nat, a) = nat_to(t.strip_prefix(b"Transmitting ")?)?;
            Some(Block::new(
                Kind::TxColon,
                parse_addrport(a)?,
                nat,
                time,
                MESSAGE_CAP,
            ))
        }
        b"res_pjsip_logger.c" => {
            let inner = msg.strip_prefix(b"<--- ")?.strip_suffix(b" --->")?;
            let (inbound, r) = if let Some(r) = inner.strip_prefix(b"Received SIP ") {
                (true, r)
            } else {
                (false, inner.strip_prefix(b"Transmitting SIP ")?)
            };
            let r = r
                .strip_prefix(b"request (")
                .or_else(|| r.strip_prefix(b"response ("))?;
            let sp = memchr::memchr(b' ', r)?;
            if sp == 0 || sp > 9 || !r[..sp].iter().all(u8::is_ascii_digit) {
                return None;
            }
            let n: i64 = r[..sp]
                .iter()
                .fold(0i64, |v, c| v * 10 + i64::from(c - b'0'));
            let r = r[sp..].strip_prefix(b" bytes) ")?;
            let a = if inbound {
                r.strip_prefix(b"from ")?
            } else {
                r.strip_prefix(b"to ")?
            };
            let kind = if inbound { Kind::PjIn } else { Kind::PjOut };
            // A dump longer than one log message was cut by the logger: count the cap.
            Some(Block::new(
                kind,
                tp_addr(a)?,
                false,
                time,
                (n + 1).min(MESSAGE_CAP),
            ))
        }
        _ => None,
    }
}

impl Block {
    fn new(kind: Kind, addr: IpAddr, nat: bool, time: i64, remaining: i64) -> Block {
        Block {
            kind,
            addr,
            nat,
            time,
            remaining,
            first: None,
            in_headers: true,
            callid: None,
            contested: false,
        }
    }
}

fn first_line(line: &[u8]) -> First {
    if let Some(r) = line.strip_prefix(b"SIP/2.0 ") {
        let code = r.get(..3).filter(|c| c.iter().all(u8::is_ascii_digit));
        return match code {
            Some(c) => First::Status(c.iter().fold(0u16, |v, d| v * 10 + u16::from(d - b'0'))),
            None => First::Malformed,
        };
    }
    if line.ends_with(b" SIP/2.0") {
        if line.starts_with(b"INVITE ") {
            return First::Invite;
        }
        if line.first().is_some_and(u8::is_ascii_uppercase) {
            return First::OtherRequest;
        }
    }
    First::Malformed
}

/// `Call-ID: value` or compact `i: value`, names case-insensitive.
fn callid_header(line: &[u8]) -> Option<&[u8]> {
    let colon = memchr::memchr(b':', line)?;
    let name = line[..colon].trim_ascii_end();
    if !(name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i")) {
        return None;
    }
    let v = line[colon + 1..].trim_ascii();
    (!v.is_empty()).then_some(v)
}

/// What the dump parser did with a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    /// Part of a dump (or its header): never give it to the failure matcher.
    Consumed,
    /// A normal log line.
    Pass,
}

impl DumpParser {
    pub fn in_block(&self) -> bool {
        self.block.is_some()
    }

    /// Feed one line (without `\n`; `orig_len` is its length before `\r` was stripped).
    /// `anat` is the line's anatomy when it has a log prefix; `time` the current log time.
    pub fn feed(
        &mut self,
        map: &mut CallIdMap,
        line: &[u8],
        orig_len: usize,
        anat: Option<&Anatomy<'_>>,
        time: i64,
    ) -> Feed {
        let start_pos = self.pos;
        self.pos += orig_len as u64 + 1;
        if let Some(mut b) = self.block.take() {
            b.remaining -= orig_len as i64 + 1;
            let pj = matches!(b.kind, Kind::PjIn | Kind::PjOut);
            let end_marker = match b.kind {
                Kind::Read => line == READ_END,
                Kind::TxBracket => line == TX_END,
                Kind::TxColon | Kind::Retx => line == b"---",
                Kind::PjIn | Kind::PjOut => false,
            };
            if end_marker {
                self.close(map, b, false);
                return Feed::Consumed;
            }
            match b.first {
                None => b.first = Some(first_line(line)),
                Some(_) if b.in_headers => {
                    if line.is_empty() {
                        b.in_headers = false;
                    } else if b.callid.is_none() {
                        if let Some(v) = callid_header(line) {
                            if v.len() <= MAX_CALLID_LEN {
                                b.callid = Some(String::from_utf8_lossy(v).into_owned());
                            }
                        }
                    }
                }
                Some(_) => {}
            }
            if b.remaining <= 0 {
                // pjsip: exactly consumed. chan_sip: longer than any message can be.
                self.close(map, b, !pj);
            } else {
                self.block = Some(b);
            }
            return Feed::Consumed;
        }
        let started = match anat {
            None => raw_start(line, time),
            Some(a) if a.level == Level::Verbose => msg_start(a.file, a.msg, time),
            Some(_) => None,
        };
        match started {
            Some(mut b) => {
                b.contested = start_pos < self.taint_until;
                self.block = Some(b);
                Feed::Consumed
            }
            None => Feed::Pass,
        }
    }

    /// End of a block: record what it said.
    fn close(&mut self, map: &mut CallIdMap, b: Block, overrun: bool) {
        let malformed_read = b.kind == Kind::Read
            && (overrun
                || b.in_headers
                || !matches!(
                    b.first,
                    Some(First::Invite | First::OtherRequest | First::Status(_))
                ));
        if malformed_read {
            // Whatever follows within one message's size may be text from inside this packet.
            self.taint_until = self.pos + MESSAGE_CAP as u64;
        }
        let Some(cid) = b.callid.as_deref() else {
            return;
        };
        if b.contested || malformed_read {
            map.contest(cid, b.time);
            return;
        }
        match (b.kind, b.first) {
            (Kind::Read | Kind::PjIn, Some(First::Invite)) => {
                map.record_invite(cid, b.addr, b.time, false)
            }
            (
                Kind::TxBracket | Kind::TxColon | Kind::Retx | Kind::PjOut,
                Some(First::Status(s)),
            ) => {
                let nat = (b.nat && b.kind != Kind::PjOut).then_some(b.addr);
                map.record_sent(cid, s, b.kind == Kind::Retx, nat, b.time)
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_bounds_the_map_whatever_arrives() {
        let mut m = CallIdMap::with_cap(32);
        for i in 0..1000u32 {
            m.wire_invite(
                format!("c{i}").as_bytes(),
                "45.0.0.1".parse().unwrap(),
                1000,
                false,
            );
            assert!(m.len() <= 32, "{} at {i}", m.len());
        }
        // Restored from a save (the cap is not saved): the configuration bounds it again.
        let mut back: CallIdMap =
            serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        back.set_cap(16);
        assert!(back.len() < 16, "{}", back.len());
    }
    use crate::source::asterisk::rules::anatomy;

    fn run(lines: &[&str]) -> (CallIdMap, Vec<bool>) {
        let mut p = DumpParser::default();
        let mut m = CallIdMap::default();
        let mut consumed = Vec::new();
        for l in lines {
            let a = anatomy(l.as_bytes());
            consumed.push(p.feed(&mut m, l.as_bytes(), l.len(), a.as_ref(), 100) == Feed::Consumed);
        }
        (m, consumed)
    }

    #[test]
    fn attributes_a_scanner_invite() {
        let (m, c) = run(&[
            "[2023-02-19 15:02:45] VERBOSE[686] chan_sip.c: ",
            "<--- SIP read from UDP:192.0.2.23:5091 --->",
            "INVITE sip:100@203.0.113.10 SIP/2.0",
            "Via: SIP/2.0/UDP 192.0.2.23:5091;branch=z9hG4bK-5e0a41bb27;rport",
            "Call-ID: K2V9",
            "",
            "<------------->",
            "[2023-02-19 15:02:45] VERBOSE[686] chan_sip.c: Retransmitting #1 (NAT) to 192.0.2.23:5091:",
            "SIP/2.0 401 Unauthorized",
            "Call-ID: K2V9",
            "",
            "---",
        ]);
        assert_eq!(
            c,
            vec![false, true, true, true, true, true, true, true, true, true, true, true]
        );
        assert_eq!(m.attribute(b"K2V9", 120), Ok("192.0.2.23".parse().unwrap()));
        assert_eq!(m.attribute(b"nope", 120), Err(Unattributed::NoInvite));
    }
}
