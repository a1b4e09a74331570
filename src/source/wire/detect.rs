//! The wire detector: per client address, what its SIP traffic says, counted like the log
//! detectors (`maxretry` failures within `findtime` make a ban for `bantime`), and the
//! Call-ID map that attributes Asterisk's IP-less `Timeout on <Call-ID>` lines.
//!
//! The client of a transaction is the sender of its requests: a request's packet source, a
//! response's packet destination. What counts, each with its [`Reason`]:
//!
//! * **a scanner's signature** (a catalogued User-Agent, or a tool fingerprint): a ban at once;
//! * **a wrong password**: 401/407 to a request that carried credentials;
//! * **forbidden**: 403 to a request from a client that never authenticated;
//! * **not found**: 404 to an INVITE or REGISTER without credentials (a misdial by a phone
//!   that authenticated is not an attack);
//! * **enumeration**: challenges (401/407 without credentials) or OPTIONS for more than
//!   [`FREE_USERS`] distinct users, from a client that never authenticated: each further user;
//! * **toll fraud**: an INVITE without credentials to an international or premium-looking
//!   number (`+`, `00`, `011`), refused (>= 400): an IP-authenticated trunk's call is answered,
//!   not refused;
//! * **never acknowledged**: an INVITE without credentials whose final error response got no
//!   ACK within [`ACK_WAIT`] seconds (every SIP stack ACKs; scanners do not, and this is what
//!   Asterisk logs as the IP-less Timeout line).
//!
//! Bounds: clients in the spray-proof [`Offences`] counter; open transactions and the Call-ID
//! map by count and age. Per-packet work is one parse and a few hash lookups.
//!
//! This module must never take an address from a SIP header, keep a body or credentials, or
//! decide a ban anywhere but [`Engine::bans`].

use super::signature;
use super::sip::{Message, Start};
use crate::source::asterisk::callid::CallIdMap;
use crate::source::offences::{Offences, Rank};
use serde::Serialize;
use std::collections::HashMap;
use std::net::IpAddr;

/// Distinct users a client may probe before each further one counts.
pub const FREE_USERS: usize = 3;
/// Seconds an INVITE's final error response may wait for its ACK (64·T1 = 32 s).
pub const ACK_WAIT: i64 = 32;
/// Open transactions remembered at most.
pub const MAX_TXNS: usize = 16_384;
/// Distinct probed users remembered per client.
const MAX_USERS: usize = 32;

/// The thresholds (the `sip_wire` section's, or `scan --pcap`'s defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireSettings {
    pub maxretry: u32,
    /// Seconds.
    pub findtime: u32,
    /// Seconds.
    pub bantime: u32,
}

impl Default for WireSettings {
    fn default() -> Self {
        WireSettings {
            maxretry: 5,
            findtime: 600,
            bantime: 86_400,
        }
    }
}

/// Why a client was counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    ScannerUserAgent,
    ToolFingerprint,
    WrongPassword,
    Forbidden,
    NotFound,
    Enumeration,
    TollFraud,
    NeverAcknowledged,
}

const REASONS: usize = 8;

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::ScannerUserAgent => "scanner user agent",
            Reason::ToolFingerprint => "scanning tool fingerprint",
            Reason::WrongPassword => "wrong password",
            Reason::Forbidden => "forbidden",
            Reason::NotFound => "unknown user",
            Reason::Enumeration => "user enumeration",
            Reason::TollFraud => "toll fraud attempt",
            Reason::NeverAcknowledged => "final response never acknowledged",
        }
    }

    fn all() -> [Reason; REASONS] {
        [
            Reason::ScannerUserAgent,
            Reason::ToolFingerprint,
            Reason::WrongPassword,
            Reason::Forbidden,
            Reason::NotFound,
            Reason::Enumeration,
            Reason::TollFraud,
            Reason::NeverAcknowledged,
        ]
    }
}

#[derive(Clone, Debug, Default)]
struct Client {
    /// The latest failure times within `findtime` (at most `maxretry`), oldest first.
    fails: Vec<i64>,
    counts: [u32; REASONS],
    /// Hashes of the distinct users it probed without authenticating.
    users: Vec<u64>,
    authenticated: bool,
    messages: u64,
    tool: Option<&'static str>,
    /// When it reached a ban, and why (the reason of the failure that completed it).
    banned: Option<(i64, Reason)>,
    user_agent: Option<String>,
}

#[derive(Clone, Copy, Debug)]
struct Txn {
    client: IpAddr,
    invite: bool,
    credentials: bool,
    time: i64,
    /// The final error status and when it was sent (INVITE only).
    refused: Option<(u16, i64)>,
    acked: bool,
    international: bool,
    /// Hash of the user it was for (To user of a REGISTER, Request-URI user otherwise).
    user: Option<u64>,
}

/// Counts for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub messages: u64,
    pub requests: u64,
    pub responses: u64,
    /// Payloads that were not SIP messages the detector can use.
    pub malformed: u64,
    /// Transactions dropped to stay within [`MAX_TXNS`].
    pub txns_dropped: u64,
}

/// A ban decided from the wire.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WireBan {
    pub ip: IpAddr,
    /// When the ban was reached.
    pub seen: i64,
    pub ttl: u32,
    pub reason: Reason,
    /// The tool, for a signature ban.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<&'static str>,
}

/// What the detector saw of one client (for `scan --pcap` and `explain`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClientReport {
    pub ip: IpAddr,
    pub messages: u64,
    pub failures: u32,
    pub reasons: Vec<(Reason, u32)>,
    pub authenticated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ban: Option<WireBan>,
}

/// The detector's working state.
pub struct Engine {
    s: WireSettings,
    clients: Offences<Client>,
    txns: HashMap<(u64, u32), Txn>,
    pub callids: CallIdMap,
    pub counters: Counters,
    newest: i64,
    /// Clients that reached a ban since the last [`Engine::take_fresh`] (at most
    /// [`MAX_FRESH`]; past that, `fresh_overflow` makes the next take scan every client).
    fresh: Vec<IpAddr>,
    fresh_overflow: bool,
    /// The input time of the last [`Engine::expire`] walk.
    expired_at: i64,
}

/// Fresh bans queued between two takes, at most.
pub const MAX_FRESH: usize = 4096;

fn hash(b: &[u8]) -> u64 {
    crate::source::tail::fnv1a(b)
}

fn international(user: &[u8]) -> bool {
    let digits = |d: &[u8]| d.len() >= 6 && d.iter().all(u8::is_ascii_digit);
    user.strip_prefix(b"+").is_some_and(digits)
        || user.strip_prefix(b"011").is_some_and(digits)
        || user.strip_prefix(b"00").is_some_and(digits)
}

impl Engine {
    pub fn new(s: WireSettings) -> Engine {
        Engine {
            s,
            clients: Offences::default(),
            txns: HashMap::new(),
            callids: CallIdMap::default(),
            counters: Counters::default(),
            newest: i64::MIN,
            fresh: Vec::new(),
            fresh_overflow: false,
            expired_at: i64::MIN,
        }
    }

    /// A detector that remembers at most `max_clients` clients (the daemon's memory bound).
    pub fn with_capacity(s: WireSettings, max_clients: usize) -> Engine {
        Engine {
            clients: Offences::with_cap(max_clients),
            ..Engine::new(s)
        }
    }

    /// The bans reached since the last take (for a resident detector: the daemon applies
    /// them as they come).
    pub fn take_fresh(&mut self, now: i64) -> Vec<WireBan> {
        if std::mem::take(&mut self.fresh_overflow) {
            self.fresh.clear();
            return self.bans(now);
        }
        let mut ips = std::mem::take(&mut self.fresh);
        ips.sort_unstable();
        ips.dedup();
        self.bans(now)
            .into_iter()
            .filter(|b| ips.binary_search(&b.ip).is_ok())
            .collect()
    }

    /// Whether a ban was reached since the last [`Engine::take_fresh`].
    pub fn has_fresh(&self) -> bool {
        !self.fresh.is_empty() || self.fresh_overflow
    }

    /// Clients remembered, and the total dropped to make room.
    pub fn clients_held(&mut self) -> (usize, u64) {
        (self.clients.len(), self.clients.take_evicted())
    }

    fn rank(&self) -> impl Fn(&Client) -> Rank {
        let horizon = self.newest - i64::from(self.s.findtime);
        let max = self.s.maxretry;
        move |c: &Client| Rank {
            progress: if c.banned.is_some() {
                max
            } else {
                c.fails.iter().filter(|t| **t >= horizon).count() as u32
            },
            last: c.fails.last().copied().unwrap_or(i64::MIN),
        }
    }

    fn client(&mut self, ip: IpAddr) -> &mut Client {
        let rank = self.rank();
        self.clients.entry(ip, rank)
    }

    /// Count a failure of `ip` at `t`; a signature reason bans at once.
    fn fail(&mut self, ip: IpAddr, t: i64, why: Reason) {
        let (findtime, maxretry) = (i64::from(self.s.findtime), self.s.maxretry as usize);
        let bantime = i64::from(self.s.bantime);
        let c = self.client(ip);
        // A ban that ran out: counting starts again (a resident detector outlives its bans).
        if c.banned.is_some_and(|(at, _)| at + bantime <= t) {
            c.banned = None;
            c.fails.clear();
        }
        c.counts[why as usize] = c.counts[why as usize].saturating_add(1);
        c.fails.retain(|x| *x >= t - findtime);
        // Only the latest `maxretry` times can make a ban: the list stays that short,
        // whatever the rate.
        if c.fails.len() >= maxretry.max(1) {
            c.fails.remove(0);
        }
        c.fails.push(t);
        let signature = matches!(why, Reason::ScannerUserAgent | Reason::ToolFingerprint);
        if c.banned.is_none() && (signature || c.fails.len() >= maxretry) {
            c.banned = Some((t, why));
            if self.fresh.len() < MAX_FRESH {
                self.fresh.push(ip);
            } else {
                self.fresh_overflow = true;
            }
        }
    }

    /// A payload from `src` to `dst` at `t` (the packet's or the HEP chunk's addresses).
    pub fn payload(&mut self, src: IpAddr, dst: IpAddr, t: i64, payload: &[u8]) {
        match super::sip::parse(payload) {
            Ok(m) => self.message(src, dst, t, &m),
            Err(_) => self.counters.malformed += 1,
        }
    }

    /// One parsed message.
    pub fn message(&mut self, src: IpAddr, dst: IpAddr, t: i64, m: &Message<'_>) {
        self.counters.messages += 1;
        self.newest = self.newest.max(t);
        self.expire(t);
        match m.start {
            Start::Request { method, uri_user } => {
                self.counters.requests += 1;
                self.request(src, t, m, method, uri_user);
            }
            Start::Status { code } => {
                self.counters.responses += 1;
                self.response(dst, t, m, code);
            }
        }
    }

    fn request(&mut self, src: IpAddr, t: i64, m: &Message<'_>, method: &[u8], uri: Option<&[u8]>) {
        let c = self.client(src);
        c.messages += 1;
        if c.user_agent.is_none() {
            c.user_agent = m
                .user_agent
                .map(|u| String::from_utf8_lossy(&u[..u.len().min(64)]).into_owned());
        }
        if let Some(tool) = m.user_agent.and_then(signature::user_agent) {
            self.client(src).tool = Some(tool);
            self.fail(src, t, Reason::ScannerUserAgent);
        } else if let Some(tool) = signature::fingerprint(m) {
            self.client(src).tool = Some(tool);
            self.fail(src, t, Reason::ToolFingerprint);
        }
        let Some(callid) = m.call_id else {
            return;
        };
        let cseq = m.cseq.map_or(0, |c| c.0);
        let key = (hash(callid), cseq);
        match method {
            b"ACK" => {
                if let Some(x) = self.txns.get_mut(&key) {
                    if x.client == src {
                        x.acked = true;
                    }
                }
                self.callids.wire_ack(callid, src, t);
            }
            b"OPTIONS" => {
                if let Some(u) = uri {
                    self.probe(src, t, u);
                }
            }
            b"INVITE" | b"REGISTER" | b"SUBSCRIBE" | b"MESSAGE" => {
                let invite = method == b"INVITE";
                if invite {
                    self.callids.wire_invite(callid, src, t, m.credentials);
                }
                if self.txns.len() >= MAX_TXNS && !self.txns.contains_key(&key) {
                    self.counters.txns_dropped += 1;
                    return;
                }
                let user = if method == b"REGISTER" {
                    m.to.user
                } else {
                    uri.or(m.to.user)
                };
                self.txns.insert(
                    key,
                    Txn {
                        client: src,
                        invite,
                        credentials: m.credentials,
                        time: t,
                        refused: None,
                        acked: false,
                        international: invite && user.is_some_and(international),
                        user: user.map(hash),
                    },
                );
            }
            _ => {}
        }
    }

    fn response(&mut self, client: IpAddr, t: i64, m: &Message<'_>, code: u16) {
        let Some(callid) = m.call_id else {
            return;
        };
        let cseq = m.cseq.map_or(0, |c| c.0);
        let Some(x) = self.txns.get(&(hash(callid), cseq)).copied() else {
            return;
        };
        if x.client != client || code < 200 {
            return; // not an answer to that client, or provisional
        }
        if x.invite {
            self.callids.wire_response(callid, code, client, t);
        }
        let key = (hash(callid), cseq);
        if x.credentials && !matches!(code, 401 | 403 | 407) {
            // Credentials were accepted (whatever became of the call).
            self.client(client).authenticated = true;
        }
        if code < 300 {
            self.txns.remove(&key);
            return;
        }
        if x.invite {
            if let Some(tx) = self.txns.get_mut(&key) {
                tx.refused = Some((code, t));
            }
        } else {
            self.txns.remove(&key);
        }
        let authenticated = self.clients.get(&client).is_some_and(|c| c.authenticated);
        match code {
            401 | 407 if x.credentials => self.fail(client, t, Reason::WrongPassword),
            401 | 407 => {
                if let Some(u) = x.user {
                    self.probed(client, t, u);
                }
            }
            403 if !authenticated => self.fail(client, t, Reason::Forbidden),
            404 if !x.credentials => self.fail(client, t, Reason::NotFound),
            _ => {}
        }
        if x.international && !x.credentials && code >= 400 && x.refused.is_none() {
            self.fail(client, t, Reason::TollFraud);
        }
    }

    /// An OPTIONS for `user`.
    fn probe(&mut self, client: IpAddr, t: i64, user: &[u8]) {
        self.probed(client, t, hash(user));
    }

    /// `client` probed `user` without authenticating: beyond [`FREE_USERS`] distinct ones,
    /// each new one counts.
    fn probed(&mut self, client: IpAddr, t: i64, user: u64) {
        let c = self.client(client);
        if c.authenticated || c.users.contains(&user) {
            return;
        }
        if c.users.len() < MAX_USERS {
            c.users.push(user);
        }
        if c.users.len() > FREE_USERS {
            self.fail(client, t, Reason::Enumeration);
        }
    }

    /// Close INVITE transactions whose error response went unacknowledged for [`ACK_WAIT`],
    /// and forget the rest after twice that.
    fn expire(&mut self, now: i64) {
        // What is due depends on `now` alone (whole seconds): once per second of input time
        // does the same work as once per message, where a busy second would walk every open
        // transaction for each of its messages.
        if self.txns.is_empty() || now <= self.expired_at {
            return;
        }
        self.expired_at = now;
        let mut unacked = Vec::new();
        self.txns.retain(|_, x| match x.refused {
            Some((_, at)) if now - at > ACK_WAIT => {
                if !x.acked && !x.credentials {
                    unacked.push((x.client, at + ACK_WAIT));
                }
                false
            }
            _ => now - x.time <= 4 * ACK_WAIT,
        });
        for (ip, at) in unacked {
            self.fail(ip, at, Reason::NeverAcknowledged);
        }
    }

    /// The end of the input (offline) or a tick (live): expire what is due at `now`.
    pub fn tick(&mut self, now: i64) {
        self.expire(now);
    }

    /// Clients whose ban has not run out at `now`.
    pub fn bans(&self, now: i64) -> Vec<WireBan> {
        let mut out: Vec<WireBan> = self
            .clients
            .iter()
            .filter_map(|(ip, c)| {
                let (seen, reason) = c.banned?;
                (seen + i64::from(self.s.bantime) > now).then_some(WireBan {
                    ip: *ip,
                    seen,
                    ttl: self.s.bantime,
                    reason,
                    tool: c.tool,
                })
            })
            .collect();
        out.sort_by_key(|b| b.ip);
        out
    }

    /// Every client, most failures first.
    pub fn clients(&self, now: i64) -> Vec<ClientReport> {
        let bans = self.bans(now);
        let mut out: Vec<ClientReport> = self
            .clients
            .iter()
            .map(|(ip, c)| ClientReport {
                ip: *ip,
                messages: c.messages,
                failures: c.counts.iter().sum(),
                reasons: Reason::all()
                    .into_iter()
                    .filter(|r| c.counts[*r as usize] > 0)
                    .map(|r| (r, c.counts[r as usize]))
                    .collect(),
                authenticated: c.authenticated,
                user_agent: c.user_agent.clone(),
                ban: bans.iter().find(|b| b.ip == *ip).cloned(),
            })
            .collect();
        out.sort_by(|a, b| b.failures.cmp(&a.failures).then(a.ip.cmp(&b.ip)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PBX: &str = "192.0.2.1";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A request as a desk phone would send it (PJSIP-style branch, UUID-like Call-ID).
    fn req(method: &str, user: &str, callid: &str, cseq: u32, creds: bool, ua: &str) -> Vec<u8> {
        let auth = if creds {
            "Authorization: Digest username=\"201\", response=\"0\"\r\n"
        } else {
            ""
        };
        format!(
            "{method} sip:{user}@{PBX} SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKPj{callid}{cseq}\r\n\
From: <sip:201@{PBX}>;tag=ab{cseq}\r\nTo: <sip:{user}@{PBX}>\r\nCall-ID: {callid}@phone\r\n\
CSeq: {cseq} {method}\r\nUser-Agent: {ua}\r\n{auth}Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn resp(code: u16, callid: &str, cseq: u32, method: &str) -> Vec<u8> {
        format!(
            "SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKPj\r\nFrom: <sip:201@{PBX}>;tag=ab\r\n\
To: <sip:x@{PBX}>;tag=srv\r\nCall-ID: {callid}@phone\r\nCSeq: {cseq} {method}\r\n\r\n"
        )
        .into_bytes()
    }

    const PHONE_UA: &str = "Yealink SIP-T46S 66.86.0.15";

    struct Wire {
        e: Engine,
        t: i64,
    }

    impl Wire {
        fn new() -> Wire {
            Wire {
                e: Engine::new(WireSettings::default()),
                t: 1_000_000,
            }
        }
        /// `client` sends `m` to the PBX.
        fn up(&mut self, client: &str, m: &[u8]) {
            self.t += 1;
            self.e.payload(ip(client), ip(PBX), self.t, m);
        }
        /// The PBX answers `client`.
        fn down(&mut self, client: &str, m: &[u8]) {
            self.e.payload(ip(PBX), ip(client), self.t, m);
        }
        fn ban(&mut self, client: &str) -> Option<WireBan> {
            self.e.tick(self.t + 100);
            self.e
                .bans(self.t + 100)
                .into_iter()
                .find(|b| b.ip == ip(client))
        }
    }

    #[test]
    fn a_phone_registering_calling_and_misdialling_is_never_counted() {
        let mut w = Wire::new();
        let p = "203.0.113.5";
        for round in 0..20u32 {
            let c = format!("reg{round}");
            w.up(p, &req("REGISTER", "201", &c, 1, false, PHONE_UA));
            w.down(p, &resp(401, &c, 1, "REGISTER"));
            w.up(p, &req("REGISTER", "201", &c, 2, true, PHONE_UA));
            w.down(p, &resp(200, &c, 2, "REGISTER"));
            // A call to a number that does not exist: challenged, then 404 after auth.
            let c = format!("call{round}");
            let number = format!("{}", 5000 + round);
            w.up(p, &req("INVITE", &number, &c, 1, false, PHONE_UA));
            w.down(p, &resp(401, &c, 1, "INVITE"));
            w.up(p, &req("ACK", &number, &c, 1, false, PHONE_UA));
            w.up(p, &req("INVITE", &number, &c, 2, true, PHONE_UA));
            w.down(p, &resp(404, &c, 2, "INVITE"));
            w.up(p, &req("ACK", &number, &c, 2, false, PHONE_UA));
        }
        assert_eq!(w.ban(p), None);
        let r = &w.e.clients(w.t)[0];
        assert_eq!(r.failures, 0, "{r:?}");
        assert!(r.authenticated);
    }

    #[test]
    fn register_enumeration_behind_alwaysauthreject_is_caught_by_behaviour() {
        let mut w = Wire::new();
        let s = "198.51.100.9";
        for u in 100..120 {
            let c = format!("e{u}");
            w.up(s, &req("REGISTER", &u.to_string(), &c, 1, false, PHONE_UA));
            w.down(s, &resp(401, &c, 1, "REGISTER"));
        }
        let b = w.ban(s).expect("banned");
        assert_eq!(b.reason, Reason::Enumeration);
    }

    #[test]
    fn an_invite_scanner_with_a_desk_phone_user_agent_is_caught_by_its_missing_acks() {
        let mut w = Wire::new();
        let s = "198.51.100.10";
        for n in 0..5 {
            let c = format!("inv{n}");
            w.up(s, &req("INVITE", "100", &c, 1, false, PHONE_UA));
            w.down(s, &resp(401, &c, 1, "INVITE"));
        }
        let b = w.ban(s).expect("banned");
        assert_eq!(b.reason, Reason::NeverAcknowledged);
        // The Call-ID map attributes the Timeout line Asterisk would write.
        assert_eq!(w.e.callids.attribute(b"inv0@phone", w.t + 30), Ok(ip(s)));
    }

    #[test]
    fn one_message_with_a_scanner_user_agent_bans() {
        let mut w = Wire::new();
        let s = "198.51.100.11";
        w.up(
            s,
            &req("OPTIONS", "100", "o1", 1, false, "friendly-scanner"),
        );
        let b = w.ban(s).expect("banned");
        assert_eq!(b.reason, Reason::ScannerUserAgent);
        assert!(b.tool.is_some());
    }

    #[test]
    fn wrong_passwords_and_toll_fraud() {
        let mut w = Wire::new();
        let s = "198.51.100.12";
        for n in 0..5 {
            let c = format!("crack{n}");
            w.up(s, &req("REGISTER", "201", &c, 2, true, PHONE_UA));
            w.down(s, &resp(401, &c, 2, "REGISTER"));
        }
        assert_eq!(w.ban(s).expect("banned").reason, Reason::WrongPassword);
        let f = "198.51.100.13";
        for n in 0..5 {
            let c = format!("toll{n}");
            w.up(f, &req("INVITE", "00972599123456", &c, 1, false, PHONE_UA));
            w.down(f, &resp(403, &c, 1, "INVITE"));
            w.up(f, &req("ACK", "00972599123456", &c, 1, false, PHONE_UA));
        }
        let r = w.e.clients(w.t);
        let r = r.iter().find(|c| c.ip == ip(f)).unwrap();
        assert!(r.reasons.contains(&(Reason::TollFraud, 5)), "{r:?}");
        assert!(r.ban.is_some());
    }

    #[test]
    fn a_response_to_someone_else_never_counts_against_the_client() {
        let mut w = Wire::new();
        let s = "198.51.100.14";
        for n in 0..10 {
            let c = format!("x{n}");
            w.up(s, &req("REGISTER", "201", &c, 2, true, PHONE_UA));
            // The 401 goes to another address: not an answer to this client.
            w.down("203.0.113.99", &resp(401, &c, 2, "REGISTER"));
        }
        assert_eq!(w.ban(s), None);
        assert_eq!(w.ban("203.0.113.99"), None);
    }

    #[test]
    fn fresh_bans_are_handed_out_once_and_a_ban_that_ran_out_can_come_again() {
        let mut w = Wire::new();
        let s = "198.51.100.15";
        w.up(
            s,
            &req("OPTIONS", "100", "f1", 1, false, "friendly-scanner"),
        );
        let fresh = w.e.take_fresh(w.t);
        assert_eq!(fresh.len(), 1);
        assert_eq!(fresh[0].ip, ip(s));
        w.up(
            s,
            &req("OPTIONS", "100", "f2", 1, false, "friendly-scanner"),
        );
        assert!(
            w.e.take_fresh(w.t).is_empty(),
            "the same ban handed out twice"
        );
        // After the ban time, the same scanner is banned again.
        w.t += i64::from(WireSettings::default().bantime) + 1;
        w.up(
            s,
            &req("OPTIONS", "100", "f3", 1, false, "friendly-scanner"),
        );
        assert_eq!(w.e.take_fresh(w.t).len(), 1);
    }
}
