//! SIP over TCP: per-stream reassembly and message framing, shared by the daemon's live
//! capture and the offline `scan --pcap`. Pure: segments in, whole SIP messages out.
//!
//! * **Streams.** A connection is keyed by its 4-tuple; each direction follows its sequence
//!   numbers from the SYN's ISN + 1. Data already seen (a retransmission, an overlap) is cut
//!   off; a segment ahead of the next expected byte (out of order) is held, at most
//!   [`MAX_HELD`] segments and `max_buffer` bytes per direction, and put in place when the gap
//!   fills; a gap that overflows the holding buffer drops the stream (counted). FIN on both
//!   sides, or an in-window RST, closes the stream.
//! * **Framing** (RFC 3261 18.3): a header block ends at an empty line, then `Content-Length`
//!   (compact `l`) bytes of body; a missing `Content-Length` means 0. CR/LF keep-alives between
//!   messages are skipped. A message larger than `max_buffer`, an invalid or conflicting
//!   `Content-Length`, bytes that cannot start a message, or a message whose start line is not
//!   SIP's (HTTP, a WebSocket upgrade) drop the stream (counted as
//!   malformed; the connection is remembered as dropped, so its later segments are ignored).
//! * **Who may speak** ([`Handshake`]). Live, a stream's data is read only once its three-way
//!   handshake was seen, and an ISN this host chose (a SYN or SYN-ACK it sent, [`Dir::Out`])
//!   was acknowledged by the other side: a sender who forges its source address never sees
//!   that ISN, so it can never open a stream, and never be banned (or name a victim) over TCP.
//!   Offline, captures often start mid-stream: a stream without a captured handshake is read
//!   from its first segment that starts a SIP message, and counted as `midstream` (its source
//!   is taken on trust, as for UDP).
//! * **Bounds, by configuration only.** At most `max_streams` connections: a new handshake
//!   evicts the oldest pending handshake, never an open stream (a SYN flood from forged
//!   sources churns only pending handshakes); a new open stream evicts the least recently
//!   active one (second chance). At most `max_buffer` bytes per direction buffered plus as
//!   much held out of order, and `max_memory` bytes over all streams (a stream that would
//!   pass it is dropped). Idle streams expire after `idle` seconds, pending handshakes after
//!   [`HANDSHAKE_WAIT`]. Work per segment is bounded: the search for the end of a header
//!   block resumes where it stopped, so a message trickled in byte by byte costs linear time.
//!
//! HEP needs none of this: it carries whole messages.
//!
//! This module must never do I/O, keep a message once it is handed out, or take a sender
//! from anything but the segment's addresses.

use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

/// Out-of-order segments held per direction, at most.
pub const MAX_HELD: usize = 16;
/// Seconds a handshake may take before it is forgotten.
pub const HANDSHAKE_WAIT: i64 = 30;
/// Seconds between two walks for idle streams.
const EXPIRE_EVERY: i64 = 5;

use crate::config::wire as defaults;

/// The default bound on streams followed at once.
pub const DEFAULT_MAX_STREAMS: usize = defaults::DEFAULT_MAX_TCP_STREAMS as usize;
/// The default largest SIP message on a stream (and bytes buffered per direction).
pub const DEFAULT_MAX_BUFFER: usize = defaults::DEFAULT_MAX_TCP_BUFFER as usize;
/// The default bound on bytes buffered over all streams.
pub const DEFAULT_MAX_MEMORY: usize = defaults::DEFAULT_MAX_TCP_MEMORY as usize;
/// The default idle timeout, seconds.
pub const DEFAULT_IDLE: i64 = defaults::DEFAULT_TCP_IDLE as i64;

/// Which streams may be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handshake {
    /// Live: only streams whose handshake acknowledged an ISN this host chose.
    Required,
    /// Offline: streams whose handshake was not captured are read too (counted).
    Optional,
}

/// Which way a segment went, as the capture knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Sent by this host (its ISN is one an attacker cannot know), or seen on loopback.
    Out,
    /// Received.
    In,
    /// Unknown (a capture file): every ISN is taken as seen.
    Unknown,
}

/// The reassembler's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_streams: usize,
    pub max_buffer: usize,
    pub max_memory: usize,
    pub idle: i64,
    pub handshake: Handshake,
}

impl Limits {
    /// The configured bounds (the live capture: `handshake` required).
    pub fn from_settings(s: &crate::config::wire::SipWireSettings, handshake: Handshake) -> Limits {
        Limits {
            max_streams: s.max_tcp_streams as usize,
            max_buffer: s.max_tcp_buffer as usize,
            max_memory: s.max_tcp_memory as usize,
            idle: i64::from(s.tcp_idle),
            handshake,
        }
    }

    /// The defaults, with `handshake`.
    pub fn new(handshake: Handshake) -> Limits {
        Limits {
            max_streams: DEFAULT_MAX_STREAMS,
            max_buffer: DEFAULT_MAX_BUFFER,
            max_memory: DEFAULT_MAX_MEMORY,
            idle: DEFAULT_IDLE,
            handshake,
        }
    }
}

/// One TCP segment, as decoded from a packet.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub payload: &'a [u8],
}

/// What the reassembler did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TcpCounters {
    pub segments: u64,
    /// SIP messages framed out of streams.
    pub messages: u64,
    /// Streams opened by a handshake that was seen.
    pub handshakes: u64,
    /// Streams read without a captured handshake (offline only: their source is taken on trust).
    pub midstream: u64,
    /// Segments with data on no verified stream (live: a forged source, or a stream older than
    /// the capture): not read.
    pub unverified: u64,
    /// Segments whose data had all been seen (retransmissions).
    pub retransmitted: u64,
    /// Segments held until a gap before them filled.
    pub out_of_order: u64,
    /// Streams dropped on a gap the holding buffer could not bridge.
    pub gaps: u64,
    /// Streams dropped: a message too large, a bad Content-Length, bytes that are not SIP.
    pub malformed: u64,
    /// Streams dropped to stay within the memory bound.
    pub over_memory: u64,
    /// Streams (and pending handshakes) evicted to stay within `max_streams`.
    pub evicted: u64,
    /// Handshakes refused: every slot held an open stream.
    pub refused: u64,
    /// Streams forgotten after their idle time.
    pub expired: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct End {
    ip: IpAddr,
    port: u16,
}

type Key = (End, End);

/// One direction of a connection.
#[derive(Default)]
struct Half {
    /// The ISN this side chose, and whether this host sent it (or the direction is unknown).
    isn: Option<(u32, bool)>,
    /// The next expected sequence number; `None` until the first SIP start (mid-stream).
    next: Option<u32>,
    buf: Vec<u8>,
    /// Where the search for the end of the current header block resumes.
    scanned: usize,
    held: Vec<(u32, Vec<u8>)>,
    fin: bool,
}

impl Half {
    fn size(&self) -> usize {
        self.buf.len() + self.held.iter().map(|h| h.1.len()).sum::<usize>()
    }

    fn clear(&mut self) {
        self.buf = Vec::new();
        self.held = Vec::new();
        self.scanned = 0;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Handshake,
    Open,
    /// Dropped (malformed, a gap, memory): later segments are ignored until it closes.
    Dropped,
}

struct Conn {
    halves: [Half; 2],
    state: State,
    last: i64,
    /// Matches the one live queue entry for this connection.
    gen: u64,
    touched: bool,
}

/// Why a stream is dropped.
enum Lost {
    Malformed,
    Gap,
    Memory,
}

/// The reassembler.
pub struct Reassembler {
    limits: Limits,
    conns: HashMap<Key, Conn>,
    /// Pending handshakes, oldest first (entries whose `gen` no longer matches are stale).
    pending: VecDeque<(Key, u64)>,
    /// Open (and dropped) streams, least recently queued first.
    open: VecDeque<(Key, u64)>,
    gen: u64,
    bytes: usize,
    expired_at: i64,
    pub counters: TcpCounters,
}

impl Reassembler {
    pub fn new(limits: Limits) -> Reassembler {
        Reassembler {
            limits: Limits {
                max_streams: limits.max_streams.max(1),
                max_buffer: limits.max_buffer.max(1024),
                ..limits
            },
            conns: HashMap::new(),
            pending: VecDeque::new(),
            open: VecDeque::new(),
            gen: 0,
            bytes: 0,
            expired_at: i64::MIN,
            counters: TcpCounters::default(),
        }
    }

    /// Streams followed now (pending handshakes included).
    pub fn streams(&self) -> usize {
        self.conns.len()
    }

    /// Bytes buffered now over all streams.
    pub fn buffered(&self) -> usize {
        self.bytes
    }

    /// One segment seen at `now` going `dir`; every whole SIP message it completes is handed
    /// to `emit` with its sender and receiver.
    pub fn segment(
        &mut self,
        s: &Segment<'_>,
        dir: Dir,
        now: i64,
        emit: &mut dyn FnMut(IpAddr, IpAddr, &[u8]),
    ) {
        self.counters.segments += 1;
        self.expire(now);
        let (a, b) = (
            End {
                ip: s.src,
                port: s.sport,
            },
            End {
                ip: s.dst,
                port: s.dport,
            },
        );
        let (key, side) = if a <= b { ((a, b), 0) } else { ((b, a), 1) };
        if s.flags & RST != 0 {
            self.reset(&key, side, s.seq);
            return;
        }
        if s.flags & SYN != 0 {
            self.syn(key, side, s, dir, now);
            return;
        }
        let Some(c) = self.conns.get_mut(&key) else {
            if !s.payload.is_empty() {
                self.unknown(key, side, s, now, emit);
            }
            return;
        };
        c.last = now;
        c.touched = true;
        if c.state == State::Handshake && !self.verify(&key, side, s.ack) {
            if !s.payload.is_empty() {
                match self.limits.handshake {
                    Handshake::Required => self.counters.unverified += 1,
                    Handshake::Optional => {
                        self.forget(&key);
                        self.unknown(key, side, s, now, emit);
                    }
                }
            }
            return;
        }
        self.data(key, side, s, emit);
    }

    /// A SYN (a client's) or a SYN-ACK (a server's).
    fn syn(&mut self, key: Key, side: usize, s: &Segment<'_>, dir: Dir, now: i64) {
        let trusted = dir != Dir::In;
        if s.flags & ACK == 0 {
            if let Some(c) = self.conns.get(&key) {
                if c.halves[side].isn.map(|i| i.0) == Some(s.seq) {
                    return; // a retransmitted SYN
                }
                // The 4-tuple is used again: a new connection.
                self.forget(&key);
            }
            let mut c = Conn {
                halves: [Half::default(), Half::default()],
                state: State::Handshake,
                last: now,
                gen: 0,
                touched: false,
            };
            c.halves[side].isn = Some((s.seq, trusted));
            self.insert(key, c, true);
            return;
        }
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        let client = &c.halves[1 - side];
        if c.state != State::Handshake
            || client.isn.map(|i| i.0.wrapping_add(1)) != Some(s.ack)
            || c.halves[side].isn.is_some_and(|i| i.0 != s.seq)
        {
            return;
        }
        c.halves[side].isn = Some((s.seq, trusted));
        c.last = now;
        // Outbound: the SYN was this host's, and the other side acknowledged it.
        self.verify(&key, side, s.ack);
    }

    /// Whether a segment from `side` acknowledging `ack` completes the handshake: it
    /// acknowledges the other side's trusted ISN, and both ISNs are known. Opens the stream.
    fn verify(&mut self, key: &Key, side: usize, ack: u32) -> bool {
        let Some(c) = self.conns.get_mut(key) else {
            return false;
        };
        let (Some((mine, _)), Some((theirs, trusted))) =
            (c.halves[side].isn, c.halves[1 - side].isn)
        else {
            return false;
        };
        if !trusted || ack != theirs.wrapping_add(1) {
            return false;
        }
        c.state = State::Open;
        c.halves[side].next = Some(mine.wrapping_add(1));
        c.halves[1 - side].next = Some(theirs.wrapping_add(1));
        self.counters.handshakes += 1;
        self.gen += 1;
        c.gen = self.gen;
        c.touched = false;
        self.open.push_back((*key, self.gen));
        self.compact();
        true
    }

    /// Data on a connection never seen opening.
    fn unknown(
        &mut self,
        key: Key,
        side: usize,
        s: &Segment<'_>,
        now: i64,
        emit: &mut dyn FnMut(IpAddr, IpAddr, &[u8]),
    ) {
        if self.limits.handshake == Handshake::Required {
            self.counters.unverified += 1;
            return;
        }
        let c = Conn {
            halves: [Half::default(), Half::default()],
            state: State::Open,
            last: now,
            gen: 0,
            touched: false,
        };
        if !self.insert(key, c, false) {
            return;
        }
        self.counters.midstream += 1;
        self.data(key, side, s, emit);
    }

    /// An RST closes the connection when it is in the window (at the next expected byte, or
    /// anywhere before the stream is open).
    fn reset(&mut self, key: &Key, side: usize, seq: u32) {
        let Some(c) = self.conns.get(key) else {
            return;
        };
        let next = c.halves[side].next;
        let in_window = match next {
            Some(n) if c.state == State::Open => {
                seq.wrapping_sub(n) < self.limits.max_buffer as u32
            }
            _ => true,
        };
        if in_window {
            self.forget(key);
        }
    }

    /// Remove a connection and its bytes.
    fn forget(&mut self, key: &Key) {
        if let Some(c) = self.conns.remove(key) {
            self.bytes -= c.halves[0].size() + c.halves[1].size();
        }
    }

    /// Make room and insert; `false` when the connection was refused.
    fn insert(&mut self, key: Key, mut c: Conn, pending: bool) -> bool {
        if self.conns.len() >= self.limits.max_streams {
            let made_room = self.evict_from(true) || (!pending && self.evict_from(false));
            if !made_room {
                self.counters.refused += 1;
                return false;
            }
        }
        self.gen += 1;
        c.gen = self.gen;
        self.conns.insert(key, c);
        if pending {
            self.pending.push_back((key, self.gen));
        } else {
            self.open.push_back((key, self.gen));
        }
        self.compact();
        true
    }

    /// Evict the oldest pending handshake (`pending`) or the least recently active stream.
    fn evict_from(&mut self, pending: bool) -> bool {
        let rounds = 2 * self.conns.len() + 2;
        for _ in 0..rounds {
            let queue = if pending {
                &mut self.pending
            } else {
                &mut self.open
            };
            let Some((key, gen)) = queue.pop_front() else {
                return false;
            };
            let Some(c) = self.conns.get_mut(&key) else {
                continue;
            };
            if c.gen != gen {
                continue;
            }
            if !pending && c.touched {
                // A second chance: active since it was queued.
                c.touched = false;
                self.gen += 1;
                c.gen = self.gen;
                self.open.push_back((key, self.gen));
                continue;
            }
            self.forget(&key);
            self.counters.evicted += 1;
            return true;
        }
        false
    }

    /// Drop the stale entries of a queue grown past twice the streams.
    fn compact(&mut self) {
        let limit = 2 * self.limits.max_streams + 64;
        let conns = &self.conns;
        for q in [&mut self.pending, &mut self.open] {
            if q.len() > limit {
                q.retain(|(k, g)| conns.get(k).is_some_and(|c| c.gen == *g));
            }
        }
    }

    /// Forget idle streams and stale handshakes (a walk every few seconds of input time).
    pub fn expire(&mut self, now: i64) {
        // A capture's clock may step back a little (merged interfaces): no walk per segment
        // then, only after a real jump back.
        let due = now >= self.expired_at.saturating_add(EXPIRE_EVERY)
            || now < self.expired_at.saturating_sub(HANDSHAKE_WAIT);
        if !due {
            return;
        }
        self.expired_at = now;
        let (idle, mut freed, mut n) = (self.limits.idle, 0, 0);
        self.conns.retain(|_, c| {
            let wait = if c.state == State::Handshake {
                HANDSHAKE_WAIT.min(idle)
            } else {
                idle
            };
            let keep = c.last.saturating_add(wait) > now && c.last <= now.saturating_add(wait);
            if !keep {
                freed += c.halves[0].size() + c.halves[1].size();
                n += 1;
            }
            keep
        });
        self.bytes -= freed;
        self.counters.expired += n;
        let limit = self.limits.max_streams + 64;
        let conns = &self.conns;
        for q in [&mut self.pending, &mut self.open] {
            if q.len() > limit {
                q.retain(|(k, g)| conns.get(k).is_some_and(|c| c.gen == *g));
            }
        }
    }

    /// Data (and FIN) on an open or dropped stream.
    fn data(
        &mut self,
        key: Key,
        side: usize,
        s: &Segment<'_>,
        emit: &mut dyn FnMut(IpAddr, IpAddr, &[u8]),
    ) {
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        if c.state == State::Dropped {
            if s.flags & FIN != 0 {
                self.forget(&key);
            }
            return;
        }
        let (src, dst) = if side == 0 {
            (key.0.ip, key.1.ip)
        } else {
            (key.1.ip, key.0.ip)
        };
        let before = c.halves[side].size();
        let room = self
            .limits
            .max_memory
            .saturating_sub(self.bytes - before)
            .min(2 * self.limits.max_buffer);
        let half = &mut c.halves[side];
        let r = feed(
            half,
            s.seq,
            s.payload,
            self.limits.max_buffer,
            room,
            &mut self.counters,
            &mut |m| emit(src, dst, m),
        );
        let after = half.size();
        self.bytes = self.bytes - before + after;
        if let Err(why) = r {
            match why {
                Lost::Malformed => self.counters.malformed += 1,
                Lost::Gap => self.counters.gaps += 1,
                Lost::Memory => self.counters.over_memory += 1,
            }
            self.bytes -= c.halves[0].size() + c.halves[1].size();
            c.halves[0].clear();
            c.halves[1].clear();
            c.state = State::Dropped;
            return;
        }
        if s.flags & FIN != 0 {
            c.halves[side].fin = true;
            if c.halves[1 - side].fin {
                self.forget(&key);
            }
        }
    }
}

/// Whether `p` begins a SIP message: its first line starts with an upper-case letter and
/// holds `SIP/2.0` (the whole line is searched: a padded Request-URI does not hide it).
fn starts_message(p: &[u8]) -> bool {
    let line = memchr::memchr(b'\n', p).map_or(p, |n| &p[..n]);
    line.first().is_some_and(u8::is_ascii_uppercase)
        && memchr::memmem::find(line, b"SIP/2.0").is_some()
}

/// One segment's data into a direction: in order, cut of what was seen, or held; then framed.
fn feed(
    h: &mut Half,
    seq: u32,
    payload: &[u8],
    max: usize,
    room: usize,
    counters: &mut TcpCounters,
    emit: &mut dyn FnMut(&[u8]),
) -> Result<(), Lost> {
    if payload.is_empty() {
        return Ok(());
    }
    let next = match h.next {
        Some(n) => n,
        // Mid-stream: read from the first segment that starts a message.
        None if starts_message(payload) => seq,
        None => return Ok(()),
    };
    let ahead = seq.wrapping_sub(next) as i32;
    if ahead > 0 {
        if h.held
            .iter()
            .any(|(s, d)| *s == seq && d.len() >= payload.len())
        {
            // A retransmission of a segment already held.
            counters.retransmitted += 1;
            return Ok(());
        }
        let held: usize = h.held.iter().map(|x| x.1.len()).sum();
        if ahead as usize > max || h.held.len() >= MAX_HELD || held + payload.len() > max {
            return Err(Lost::Gap);
        }
        if h.size() + payload.len() > room {
            return Err(Lost::Memory);
        }
        h.held.push((seq, payload.to_vec()));
        counters.out_of_order += 1;
        return Ok(());
    }
    let skip = ahead.unsigned_abs() as usize;
    if skip >= payload.len() {
        counters.retransmitted += 1;
        return Ok(());
    }
    let mut next = append(h, next, &payload[skip..], room)?;
    // Held segments the new data reached.
    while let Some(i) = h
        .held
        .iter()
        .position(|(s, _)| (s.wrapping_sub(next) as i32) <= 0)
    {
        let (s, data) = h.held.swap_remove(i);
        let skip = next.wrapping_sub(s) as usize;
        if skip < data.len() {
            next = append(h, next, &data[skip..], room)?;
        }
    }
    h.next = Some(next);
    frame(h, max, counters, emit)
}

fn append(h: &mut Half, next: u32, data: &[u8], room: usize) -> Result<u32, Lost> {
    if h.size() + data.len() > room {
        return Err(Lost::Memory);
    }
    h.buf.extend_from_slice(data);
    Ok(next.wrapping_add(data.len() as u32))
}

/// Hand out every whole message at the front of the buffer.
fn frame(
    h: &mut Half,
    max: usize,
    counters: &mut TcpCounters,
    emit: &mut dyn FnMut(&[u8]),
) -> Result<(), Lost> {
    let mut at = 0;
    let r = loop {
        while at < h.buf.len() && matches!(h.buf[at], b'\r' | b'\n') {
            at += 1;
        }
        let rest = &h.buf[at..];
        if rest.is_empty() {
            break Ok(());
        }
        if !rest[0].is_ascii_uppercase() {
            break Err(Lost::Malformed);
        }
        let Some(head) = header_end(rest, &mut h.scanned, max) else {
            if rest.len() > max {
                break Err(Lost::Malformed);
            }
            break Ok(());
        };
        // HTTP (a WebSocket upgrade), RTSP…: framed alike, but not SIP.
        if !starts_message(rest) {
            break Err(Lost::Malformed);
        }
        let Some(body) = content_length(&rest[..head]) else {
            break Err(Lost::Malformed);
        };
        let total = head.saturating_add(body);
        if total > max {
            break Err(Lost::Malformed);
        }
        if rest.len() < total {
            break Ok(());
        }
        emit(&rest[..total]);
        counters.messages += 1;
        at += total;
        h.scanned = 0;
    };
    if at > 0 {
        h.buf.drain(..at);
        if h.buf.is_empty() && h.buf.capacity() > 8192 {
            h.buf = Vec::new();
        }
    }
    r
}

/// The length of the header block (through its empty line: CRLF CRLF, or bare LFs), searched
/// from `*scanned` on; `*scanned` records how far it looked.
fn header_end(rest: &[u8], scanned: &mut usize, max: usize) -> Option<usize> {
    let look = &rest[..rest.len().min(max.saturating_add(4))];
    let mut from = scanned.saturating_sub(3).min(look.len());
    while let Some(n) = memchr::memchr(b'\n', &look[from..]) {
        let i = from + n;
        match look.get(i + 1..) {
            Some([b'\n', ..]) => return Some(i + 2),
            Some([b'\r', b'\n', ..]) => return Some(i + 3),
            _ => {}
        }
        from = i + 1;
    }
    *scanned = look.len();
    None
}

/// `Content-Length` (or `l`) of a header block: 0 when absent, `None` when invalid or given
/// twice with different values.
fn content_length(head: &[u8]) -> Option<usize> {
    let mut found: Option<usize> = None;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let v = line[colon + 1..].trim_ascii();
        if v.is_empty() || v.len() > 9 || !v.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = v.iter().fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
        if found.is_some_and(|f| f != n) {
            return None;
        }
        found = Some(n);
    }
    Some(found.unwrap_or(0))
}

#[cfg(test)]
mod tests;
