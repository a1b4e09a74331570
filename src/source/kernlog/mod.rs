//! The kernel-log detector: port probes seen in netfilter `LOG` lines become sightings.
//!
//! * [`parse`]: the LOG line and its syslog/journal wrapper.
//! * [`ports`]: the port catalogue (`feeds/ports.yaml` plus `kernel_log.ports`).
//! * [`journal`]: the kernel's entries in the systemd journal (`_TRANSPORT=kernel`).
//! * `addrindex`: the scan's address index (fetched a packet ahead).
//! * [`mod@scan`]: the read-only `sipban scan --kernel` report (every address, scored as [`run`]
//!   scores, in the memory of its listing and its open windows).
//! * this file: settings, the persisted [`KernelState`], the line engine shared by both, and
//!   [`run`] (one pass for the pipeline).
//!
//! Per followed file, lines flow: tail ([`crate::source::tail`], shared with the Asterisk
//! detector) → parse → filter → classify → score:
//!
//! * **filter**: only inbound TCP/UDP packets (`IN` set, `OUT` empty). Skipped, and counted:
//!   sources that are this host's own addresses, loopback, link-local, multicast or otherwise
//!   special; packets sent to a link-layer broadcast/multicast or a multicast/broadcast IP
//!   (LAN chatter such as NetBIOS and DHCP broadcasts is not aimed at this host); lines whose
//!   log prefix says the packet was accepted (`ALLOW`, `ACCEPT`, `AUDIT`).
//! * **classify**: a packet shaped like an answer (TCP with ACK or RST; UDP from a port below
//!   1024 to 1024 or above) is never counted, whatever its port: it is a late answer to our own
//!   connection or backscatter of a flood sent in our name, and its sender is not a prober.
//!   Otherwise the catalogue gives the port's weight; weight-0 entries are harmless and not
//!   counted; unlisted ports weigh 0 but count as distinct ports.
//! * **score**: per source address, within `window`, each distinct (protocol, port) counts once
//!   (retransmissions and repeats add no weight; the same line read twice, from two files or
//!   after a failed read, changes nothing). When the weights add up to `threshold`, or the
//!   distinct ports reach `distinct_ports`, the address becomes a sighting for `ttl` from the
//!   probe that crossed the line. While it keeps probing within `window` of its last probe it
//!   stays over and its sighting is extended; after a quiet window it has to cross again.
//!
//! Firewalls usually rate-limit their LOG rules (UFW: 3/min), so a log is a *sample* of the
//! probes; distinct-port scoring degrades gracefully under sampling, since a missed repeat costs
//! nothing.
//!
//! This module must never resolve names, never take an address from anything but the packet's
//! `SRC=` field, never hold a whole file in memory, and never change the files it reads. Its
//! state is bounded ([`MAX_ADDRESSES`] addresses, [`MAX_HITS`] ports each), during a run as
//! between runs: the windows live in the shared [`Offences`] counter, which makes room by
//! dropping the windows furthest from a threshold, so a spray of one-probe spoofed sources
//! cannot push out a prober one port short of a ban.

mod addrindex;
pub mod journal;
pub mod parse;
pub mod ports;
pub mod prefix;
pub mod scan;
pub mod wrapper;

use crate::config::kernlog::{Means, UnknownPrefix};
use crate::config::ConfigError;
use crate::net;
use crate::pack;
use crate::source::asterisk::Clock;
use crate::source::input::InputCounts;
use crate::source::journal::JournalSettings;
use crate::source::offences::{self, Offences, Rank};
use crate::source::tail::{self, FileCursor, TailStats};
use crate::source::Sighting;
use parse::{Line, Packet, Parser};
use ports::{Catalogue, Match, Proto};
use prefix::{Prefixes, Verdict};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

/// The source name of the kernel-log detector (reserved in the config).
pub const SOURCE: &str = "kernel";
/// Bound on addresses with an open scoring window (the shared [`Offences`] counter's cap).
pub const MAX_ADDRESSES: usize = offences::CAP;
/// Bound on the ports remembered per address (the oldest go first).
pub const MAX_HITS: usize = 1024;

// ---------------------------------------------------------------------------------------------
// settings: defined by `config` (the whole schema lives there), re-exported for callers.

pub use crate::config::kernlog::{KernelLogSettings, MAX_DISTINCT_PORTS, MAX_THRESHOLD};
pub use crate::config::raw::RawKernelLog;
pub use scan::{
    scan, scan_at, scan_bytes, scan_bytes_at, scan_files, AddressScan, FileScan, FiredScan,
    PortScan, Scan, ScanReport, ScanRules,
};

/// The port catalogue `settings` score with: the built-in entries (unless switched off), then
/// the config's.
pub fn catalogue(settings: &KernelLogSettings) -> Result<Catalogue, ConfigError> {
    let mut entries = if settings.builtin_ports {
        ports::builtin()?
    } else {
        Vec::new()
    };
    entries.extend(settings.ports.iter().cloned());
    Ok(Catalogue::new(entries))
}

/// Errors of the detector. I/O errors name the file.
#[derive(Debug)]
pub enum KernelLogError {
    NoFiles,
    Catalogue(ConfigError),
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A scan's listing could not be spilled to (or read back from) its temporary files.
    Spill(std::io::Error),
}

impl fmt::Display for KernelLogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelLogError::NoFiles => f.write_str("no kernel log file given"),
            KernelLogError::Catalogue(e) => write!(f, "port catalogue: {e}"),
            KernelLogError::Io { path, source } => {
                write!(f, "reading kernel log {}: {source}", path.display())
            }
            KernelLogError::Spill(e) => write!(f, "the scan's listing on disk: {e}"),
        }
    }
}

impl std::error::Error for KernelLogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KernelLogError::Io { source, .. } => Some(source),
            KernelLogError::Spill(e) => Some(e),
            KernelLogError::Catalogue(e) => Some(e),
            KernelLogError::NoFiles => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// state

/// One counted probe in an address's window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hit {
    /// Unix seconds of the latest probe on this port.
    pub time: i64,
    /// `proto << 16 | port`.
    pub key: u32,
    pub weight: u8,
}

/// The counted probes of one address's window. Most addresses never probe more than two
/// ports, so two are kept inline: no allocation, and no second cache miss per packet (the scan
/// of a large log is bound by memory latency). Serialised as a plain list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hits {
    Inline { len: u8, buf: [Hit; 2] },
    Heap(Vec<Hit>),
}

impl Default for Hits {
    fn default() -> Self {
        Hits::Inline {
            len: 0,
            buf: [Hit::default(); 2],
        }
    }
}

impl Hits {
    pub fn as_slice(&self) -> &[Hit] {
        match self {
            Hits::Inline { len, buf } => &buf[..usize::from(*len)],
            Hits::Heap(v) => v,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [Hit] {
        match self {
            Hits::Inline { len, buf } => &mut buf[..usize::from(*len)],
            Hits::Heap(v) => v,
        }
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&mut self, h: Hit) {
        match self {
            Hits::Inline { len, buf } if usize::from(*len) < buf.len() => {
                buf[usize::from(*len)] = h;
                *len += 1;
            }
            Hits::Inline { buf, .. } => {
                let mut v = Vec::with_capacity(8);
                v.extend_from_slice(buf);
                v.push(h);
                *self = Hits::Heap(v);
            }
            Hits::Heap(v) => v.push(h),
        }
    }

    /// Keep the first `n` (after [`Hits::retain`] or a sort).
    fn truncate(&mut self, n: usize) {
        match self {
            Hits::Inline { len, .. } => *len = (*len).min(n.min(2) as u8),
            Hits::Heap(v) => v.truncate(n),
        }
    }

    fn retain(&mut self, keep: impl Fn(&Hit) -> bool) {
        let s = self.as_mut_slice();
        let mut w = 0;
        for r in 0..s.len() {
            if keep(&s[r]) {
                s[w] = s[r];
                w += 1;
            }
        }
        self.truncate(w);
    }

    fn clear(&mut self) {
        *self = Hits::default();
    }
}

impl Serialize for Hits {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_slice().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Hits {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<Hit>::deserialize(d)?;
        let mut h = Hits::default();
        for x in v.into_iter().take(MAX_HITS) {
            h.push(x);
        }
        Ok(h)
    }
}

/// One address's scoring window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Counted probes within the window (at most [`MAX_HITS`]).
    #[serde(default)]
    pub hits: Hits,
    /// Set once the address crossed a threshold: the time of its latest counted probe since.
    /// While it keeps probing within `window` of that, it stays over (its sighting is
    /// extended) without having to cross again.
    #[serde(default)]
    pub over: Option<i64>,
}

impl Window {
    fn last(&self) -> i64 {
        let h = self
            .hits
            .as_slice()
            .iter()
            .map(|h| h.time)
            .max()
            .unwrap_or(i64::MIN);
        h.max(self.over.unwrap_or(i64::MIN))
    }
}

/// Per followed file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    pub cursor: Option<FileCursor>,
    /// Time of the last dated line (for lines without a date).
    #[serde(default)]
    pub last_time: Option<i64>,
}

/// Everything the detector remembers between runs, stored as one blob; bounded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelState {
    /// Key: the path as configured.
    #[serde(default)]
    pub files: BTreeMap<String, FileState>,
    /// Open scoring windows: at most [`MAX_ADDRESSES`]; the windows furthest from a threshold
    /// go first when there is no room (see [`offences`]).
    #[serde(default)]
    pub recent: Offences<Window>,
    /// Addresses whose windows were dropped from `recent` to make room, in all runs.
    #[serde(default)]
    pub evictions: u64,
    /// The systemd journal's position (`kernel_log.journal: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<journal::JournalState>,
}

/// The first bytes of a [`KernelState::encode`] blob (a JSON blob, the older form, starts with
/// `{`). Version 2 adds the eviction total after the magic; version 1 blobs still load.
const STATE_MAGIC: &[u8] = b"\0ks2";
const STATE_MAGIC_V1: &[u8] = b"\0ks1";

impl KernelState {
    /// The compact blob the state is stored as. The daemon rewrites it on every real-time
    /// pass, so its size is what a port scan costs in CPU and SD-card writes: the windows go
    /// in address order through [`crate::pack`] (about 14 bytes an address with two ports,
    /// against about 120 in JSON); the few file cursors stay JSON.
    pub fn encode(&self) -> serde_json::Result<Vec<u8>> {
        let files = serde_json::to_vec(&self.files)?;
        let mut w = pack::Writer::with_header(STATE_MAGIC, files.len() + 12 * self.recent.len());
        w.uint(self.evictions);
        w.bytes(&files);
        let mut recent: Vec<(&IpAddr, &Window)> = self.recent.iter().collect();
        recent.sort_unstable_by_key(|(ip, _)| **ip);
        w.uint(recent.len() as u64);
        let (mut over_prev, mut time_prev) = (0i64, 0i64);
        for (ip, win) in recent {
            w.net(&net::host_net(*ip));
            match win.over {
                Some(t) => {
                    w.uint(1);
                    w.time(t, &mut over_prev);
                }
                None => w.uint(0),
            }
            let hits = win.hits.as_slice();
            w.uint(hits.len() as u64);
            for h in hits {
                w.time(h.time, &mut time_prev);
                w.uint(u64::from(h.key));
                w.uint(u64::from(h.weight));
            }
        }
        // The journal's position last, and only when there is one: blobs without it are
        // those of earlier versions.
        if let Some(j) = &self.journal {
            w.bytes(&serde_json::to_vec(j)?);
        }
        Ok(w.finish())
    }

    /// The addresses probing now but under the thresholds: their windows still open at `now`
    /// (not over a threshold), as (address, summed weight, distinct ports, latest probe).
    pub fn failing(&self, s: &KernelLogSettings, now: i64) -> Vec<(IpAddr, u32, u32, i64)> {
        let horizon = now - i64::from(s.window);
        self.recent
            .iter()
            .filter(|(_, w)| w.over.is_none() && w.last() >= horizon)
            .map(|(ip, w)| {
                let hits = w.hits.as_slice();
                let sum = hits.iter().map(|h| u32::from(h.weight)).sum();
                (*ip, sum, hits.len() as u32, w.last())
            })
            .collect()
    }

    /// The eviction total a saved blob holds, read from its head alone; `None` for an
    /// unreadable blob (blobs of earlier versions read as 0).
    pub fn saved_evictions(blob: &[u8]) -> Option<u64> {
        if let Some(data) = blob.strip_prefix(STATE_MAGIC) {
            return pack::Reader::new(data).uint();
        }
        if blob.starts_with(STATE_MAGIC_V1) {
            return Some(0);
        }
        offences::evictions_in_json(blob)
    }

    /// Read a blob written by [`KernelState::encode`], or the JSON of earlier versions.
    pub fn decode(blob: &[u8]) -> Result<KernelState, String> {
        let bad = || "truncated or malformed kernel-log state".to_string();
        let (mut r, evictions) = if let Some(data) = blob.strip_prefix(STATE_MAGIC) {
            let mut r = pack::Reader::new(data);
            let evictions = r.uint().ok_or_else(bad)?;
            (r, evictions)
        } else if let Some(data) = blob.strip_prefix(STATE_MAGIC_V1) {
            (pack::Reader::new(data), 0)
        } else {
            return serde_json::from_slice(blob).map_err(|e| e.to_string());
        };
        let files = serde_json::from_slice(r.bytes().ok_or_else(bad)?)
            .map_err(|e| format!("kernel-log state, file cursors: {e}"))?;
        let count = usize::try_from(r.uint().ok_or_else(bad)?).map_err(|_| bad())?;
        if count > 2 * MAX_ADDRESSES {
            return Err(format!("kernel-log state holds {count} addresses"));
        }
        let mut recent: Vec<(IpAddr, Window)> = Vec::with_capacity(count);
        let (mut over_prev, mut time_prev) = (0i64, 0i64);
        for _ in 0..count {
            let ip = r.net().ok_or_else(bad)?.addr();
            let over = match r.uint().ok_or_else(bad)? {
                0 => None,
                1 => Some(r.time(&mut over_prev).ok_or_else(bad)?),
                _ => return Err(bad()),
            };
            let n = usize::try_from(r.uint().ok_or_else(bad)?).map_err(|_| bad())?;
            if n > MAX_HITS {
                return Err(bad());
            }
            let mut hits = Hits::default();
            for _ in 0..n {
                let time = r.time(&mut time_prev).ok_or_else(bad)?;
                let key = u32::try_from(r.uint().ok_or_else(bad)?).map_err(|_| bad())?;
                let weight = u8::try_from(r.uint().ok_or_else(bad)?).map_err(|_| bad())?;
                hits.push(Hit { time, key, weight });
            }
            recent.push((ip, Window { hits, over }));
        }
        let journal = if r.is_done() {
            None
        } else {
            let j = serde_json::from_slice(r.bytes().ok_or_else(bad)?)
                .map_err(|e| format!("kernel-log state, journal position: {e}"))?;
            if !r.is_done() {
                return Err(bad());
            }
            Some(j)
        };
        Ok(KernelState {
            files,
            recent: recent.into_iter().collect(),
            evictions,
            journal,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// classification and scoring

/// Counters of one run or scan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Lines read.
    pub lines: u64,
    /// Netfilter LOG lines (any direction and protocol).
    pub firewall_lines: u64,
    /// Outbound or forwarded packets.
    pub not_inbound: u64,
    /// ICMP, ESP, fragments without ports, ...
    pub other_protocol: u64,
    /// LOG lines whose addresses or ports did not parse.
    pub malformed: u64,
    /// Inbound TCP/UDP packets.
    pub packets: u64,
    /// Packets from this host's own or special (loopback, link-local, multicast) addresses.
    pub ignored_source: u64,
    /// Packets to a broadcast or multicast destination.
    pub broadcast: u64,
    /// Packets logged by an accepting rule (`ALLOW`/`ACCEPT`/`AUDIT` prefix).
    pub accepted: u64,
    /// Answer-shaped packets (never counted).
    pub replies: u64,
    /// Packets on weight-0 catalogue ports.
    pub harmless: u64,
    /// Packets on weighted catalogue ports.
    pub weighted: u64,
    /// Packets on ports outside the catalogue.
    pub unlisted: u64,
    /// Lines over 64 KiB, skipped.
    pub long_lines: u64,
    /// Lines in no wrapper sipban knows (see [`wrapper`]): counted, never dropped silently.
    pub unparsed: u64,
    /// Netfilter-looking lines under another program's tag (`kernel[123]:`, `logger -t ..`):
    /// refused, since any local user may write them.
    pub refused: u64,
}

impl Counters {
    /// The per-input view of these counters.
    pub fn input(&self) -> InputCounts {
        InputCounts {
            read: self.lines,
            parsed: self.lines.saturating_sub(self.unparsed),
            matched: self.weighted + self.unlisted,
            refused: self.refused,
            unparsed: self.unparsed,
        }
    }
}

/// Which threshold an address crossed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Crossed {
    /// The summed weight reached `threshold`.
    pub weight: bool,
    /// The distinct ports reached `distinct_ports`.
    pub distinct_ports: bool,
}

impl fmt::Display for Crossed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match (self.weight, self.distinct_ports) {
            (true, true) => "weight and distinct ports",
            (true, false) => "weight",
            _ => "distinct ports",
        })
    }
}

/// An address that crossed a threshold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fired {
    pub ip: IpAddr,
    /// Unix time of the probe that crossed it.
    pub at: i64,
    /// Weight and distinct ports in the window at that moment.
    pub weight: u32,
    pub ports: u32,
    pub crossed: Crossed,
}

/// How one packet counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// A weighted catalogue port: adds its weight and a distinct port.
    Weighted,
    /// Outside the catalogue: a distinct port, no weight.
    Unlisted,
    /// A weight-0 catalogue port: not counted.
    Harmless,
    /// Answer-shaped: not counted.
    Reply,
    /// To a broadcast or multicast destination: not counted.
    Broadcast,
    /// Logged by an accepting rule: not counted.
    Accepted,
    /// Logged by a rule whose prefix no rule names, with `kernel_log.unknown_prefix: ignore`.
    UnknownRule,
}

impl Class {
    pub fn counted(self) -> bool {
        matches!(self, Class::Weighted | Class::Unlisted)
    }

    fn label(self) -> &'static str {
        match self {
            Class::Weighted => "weighted",
            Class::Unlisted => "unlisted",
            Class::Harmless => "harmless",
            Class::Reply => "reply",
            Class::Broadcast => "broadcast",
            Class::Accepted => "accepted",
            Class::UnknownRule => "unknown_rule",
        }
    }
}

fn key(proto: Proto, port: u16) -> u32 {
    let p = match proto {
        Proto::Tcp => 6u32,
        Proto::Udp => 17u32,
    };
    p << 16 | u32::from(port)
}

/// Scoring parameters.
#[derive(Clone, Copy, Debug)]
struct Rules {
    window: i64,
    threshold: u32,
    distinct: u32,
}

impl Rules {
    fn of(s: &KernelLogSettings) -> Rules {
        Rules {
            window: i64::from(s.window),
            threshold: s.threshold,
            distinct: s.distinct_ports,
        }
    }

    /// Add a counted probe to `ip`'s window `w`.
    fn score(&self, w: &mut Window, ip: IpAddr, t: i64, key: u32, weight: u8) -> Score {
        if weight == 0 && self.distinct == 0 {
            return Score::Below; // an unlisted port counts only towards distinct ports
        }
        if let Some(over) = w.over {
            if t > over + self.window {
                // Quiet for longer than the window: it has to cross again.
                w.over = None;
            } else if t >= over - self.window {
                let at = over.max(t);
                w.over = Some(at);
                return Score::Still(at);
            } else {
                return Score::Below; // an old line read late
            }
        }
        match w.hits.as_mut_slice().iter_mut().find(|h| h.key == key) {
            Some(h) => h.time = h.time.max(t),
            None => w.hits.push(Hit {
                time: t,
                key,
                weight,
            }),
        }
        let newest = w.last();
        w.hits.retain(|h| h.time >= newest - self.window);
        if w.hits.len() > MAX_HITS {
            w.hits
                .as_mut_slice()
                .sort_unstable_by_key(|h| std::cmp::Reverse(h.time));
            w.hits.truncate(MAX_HITS);
        }
        let sum: u32 = w.hits.as_slice().iter().map(|h| u32::from(h.weight)).sum();
        let n = w.hits.len() as u32; // at most MAX_HITS
        let crossed = Crossed {
            weight: self.threshold > 0 && sum >= self.threshold,
            distinct_ports: self.distinct > 0 && n >= self.distinct,
        };
        if !(crossed.weight || crossed.distinct_ports) {
            return Score::Below;
        }
        w.hits.clear();
        w.over = Some(newest);
        Score::Crossed(Fired {
            ip,
            at: newest,
            weight: sum,
            ports: n,
            crossed,
        })
    }
}

impl Rules {
    /// A window ranked for eviction (as of the newest probe seen): expired windows count for
    /// nothing; an address over a threshold (its ban is extended while it probes) ranks above
    /// any; the others by how far they are towards a threshold (the larger share of weight or
    /// of distinct ports, in thousandths), then by their latest probe.
    fn rank(self, newest: i64) -> impl Fn(&Window) -> Rank {
        move |w| {
            let last = w.last();
            if last < newest.saturating_sub(self.window) {
                return Rank { progress: 0, last };
            }
            if w.over.is_some() {
                return Rank {
                    progress: u32::MAX,
                    last,
                };
            }
            let hits = w.hits.as_slice();
            let sum: u32 = hits.iter().map(|h| u32::from(h.weight)).sum();
            let share = |x: u32, of: u32| match of {
                0 => 0,
                _ => (u64::from(x) * 1000 / u64::from(of)).min(1000) as u32,
            };
            Rank {
                progress: 1 + share(sum, self.threshold)
                    .max(share(hits.len() as u32, self.distinct)),
                last,
            }
        }
    }
}

/// What a counted probe did to its address.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Score {
    /// Still under the thresholds.
    Below,
    /// It crossed a threshold now.
    Crossed(Fired),
    /// It was over already and keeps probing: over until this time.
    Still(i64),
}

/// Forget windows older than `newest - window`; above [`MAX_ADDRESSES`], those furthest from
/// a threshold go (see [`Rules::rank`]).
fn prune(recent: &mut Offences<Window>, newest: i64, rules: Rules) {
    recent.retain(|_, w| w.last() >= newest - rules.window);
    recent.shrink_to(MAX_ADDRESSES, &rules.rank(newest));
}

/// What the engine made of one line.
enum Seen<'a> {
    Nothing,
    /// An inbound TCP/UDP packet, its time and how it counts; `ignored` names why its source
    /// is not scored at all.
    Packet {
        p: Packet<'a>,
        t: i64,
        class: Class,
        entry: Match,
        ignored: Option<&'static str>,
    },
}

/// Line → packet → class, shared by run and scan.
struct Engine<'a> {
    parser: Parser,
    cat: &'a Catalogue,
    /// This host's addresses: a handful, so a list beats hashing every packet's source.
    own: Vec<IpAddr>,
    prefixes: Prefixes,
    /// The default gateways and resolvers: their service answers are not probes.
    services: Vec<IpAddr>,
    clock: Clock,
    now: i64,
    counters: Counters,
    /// Unparsed lines that look relevant (an address and a netfilter field), for `--verbose`.
    samples: Vec<String>,
}

/// Source ports of the service answers that are never probes when they come from the default
/// gateway, a resolver or the LAN: DNS, NTP, SSDP (UPnP), mDNS.
pub const SERVICE_PORTS: [u16; 4] = [53, 123, 1900, 5353];

/// Unparsed lines kept as samples per run or scan.
const SAMPLES: usize = 20;

/// Whether an unparsed line looks like one the detector should have read: a netfilter field
/// and something shaped like an address.
fn relevant(line: &[u8]) -> bool {
    (memchr::memmem::find(line, b"SRC=").is_some() || memchr::memmem::find(line, b"DPT=").is_some())
        && line
            .windows(2)
            .any(|w| w[0].is_ascii_digit() && (w[1] == b'.' || w[1] == b':'))
}

impl<'a> Engine<'a> {
    fn new(
        cat: &'a Catalogue,
        own: &'a HashSet<IpAddr>,
        settings: &KernelLogSettings,
        now: i64,
    ) -> Engine<'a> {
        let tz = settings.timezone;
        Engine {
            parser: Parser::new(),
            cat,
            own: own.iter().copied().collect(),
            prefixes: Prefixes::new(&settings.log_prefixes, settings.unknown_prefix),
            services: match &settings.service_hosts {
                Some(h) => h.clone(),
                None => crate::hostaddr::service_hosts(),
            },
            clock: Clock::new(tz, now),
            now,
            counters: Counters::default(),
            samples: Vec::new(),
        }
    }

    #[inline]
    fn line<'l>(&mut self, raw: &'l [u8], last_time: &mut Option<i64>) -> Seen<'l> {
        self.counters.lines += 1;
        let parsed = self.parser.parse(raw);
        self.seen(raw, parsed, last_time)
    }

    /// A message without a wrapper (a journal entry's MESSAGE), at `last_time`.
    fn message<'l>(&mut self, msg: &'l [u8], last_time: &mut Option<i64>) -> Seen<'l> {
        self.counters.lines += 1;
        let parsed = self.parser.message(None, msg);
        self.seen(msg, parsed, last_time)
    }

    fn seen<'l>(&mut self, raw: &[u8], parsed: Line<'l>, last_time: &mut Option<i64>) -> Seen<'l> {
        let p = match parsed {
            Line::Packet(p) => p,
            Line::NotKernel | Line::NotFirewall => return Seen::Nothing,
            Line::Unparsed => {
                self.counters.unparsed += 1;
                if self.samples.len() < SAMPLES && relevant(raw) {
                    self.samples
                        .push(String::from_utf8_lossy(&raw[..raw.len().min(512)]).into_owned());
                }
                return Seen::Nothing;
            }
            Line::Refused => {
                self.counters.refused += 1;
                return Seen::Nothing;
            }
            other => {
                self.counters.firewall_lines += 1;
                match other {
                    Line::NotInbound => self.counters.not_inbound += 1,
                    Line::OtherProtocol => self.counters.other_protocol += 1,
                    _ => self.counters.malformed += 1,
                }
                return Seen::Nothing;
            }
        };
        self.counters.firewall_lines += 1;
        self.counters.packets += 1;
        let t = match p.stamp {
            Some(s) => {
                let t = self.clock.unix(s);
                *last_time = Some(t);
                t
            }
            None => last_time.unwrap_or(self.now),
        }
        .min(self.now);
        let ignored = self.ignored_source(&p);
        let (class, entry) = self.classify(&p);
        if ignored.is_some() {
            self.counters.ignored_source += 1;
        } else {
            let c = &mut self.counters;
            match class {
                Class::Weighted => c.weighted += 1,
                Class::Unlisted => c.unlisted += 1,
                Class::Harmless => c.harmless += 1,
                Class::Reply => c.replies += 1,
                Class::Broadcast => c.broadcast += 1,
                Class::Accepted | Class::UnknownRule => c.accepted += 1,
            }
        }
        Seen::Packet {
            p,
            t,
            class,
            entry,
            ignored,
        }
    }

    /// A UDP answer from a service (DNS, NTP, SSDP/UPnP, mDNS) sent by the default gateway, a
    /// resolver, or a host on a private network: replies and LAN announcements, not probes.
    fn service_answer(&self, p: &Packet<'_>) -> bool {
        if p.proto != Proto::Udp || !SERVICE_PORTS.contains(&p.spt) {
            return false;
        }
        self.services.contains(&p.src) || net::private_range(&net::host_net(p.src)).is_some()
    }

    fn ignored_source(&self, p: &Packet<'_>) -> Option<&'static str> {
        if p.iface == b"lo" {
            return Some("loopback interface");
        }
        if self.own.contains(&p.src) {
            return Some("this host's own address");
        }
        // A cheap test first: most sources are ordinary unicast addresses.
        let maybe_special = match p.src {
            IpAddr::V4(a) => {
                let o = a.octets()[0];
                o == 0 || o == 127 || o >= 224 || (o == 169 && a.octets()[1] == 254)
            }
            IpAddr::V6(a) => {
                let s0 = a.segments()[0];
                s0 == 0 || s0 & 0xffc0 == 0xfe80 || s0 & 0xff00 == 0xff00
            }
        };
        if !maybe_special {
            return None;
        }
        net::special_range(&net::host_net(p.src))
    }

    fn classify(&self, p: &Packet<'_>) -> (Class, Match) {
        let verdict = self.prefixes.verdict(p.prefix);
        match verdict {
            Verdict::Known(Means::Accept) => return (Class::Accepted, Match::Unlisted),
            Verdict::Unknown if self.prefixes.unknown == UnknownPrefix::Ignore => {
                return (Class::UnknownRule, Match::Unlisted)
            }
            _ => {}
        }
        let dst_group = match p.dst {
            IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
            IpAddr::V6(a) => a.is_multicast(),
        };
        if p.link_group || dst_group {
            return (Class::Broadcast, self.cat.probe(p.proto, p.dpt));
        }
        if p.reply_shaped() {
            return (Class::Reply, self.cat.reply(p.proto, p.dpt));
        }
        if self.service_answer(p) {
            return (Class::Reply, self.cat.reply(p.proto, p.dpt));
        }
        let m = self.cat.probe(p.proto, p.dpt);
        let dropped = verdict == Verdict::Known(Means::Drop);
        let class = match m {
            Match::Unlisted => Class::Unlisted,
            m if self.cat.only_dropped(m) && !dropped => Class::Harmless,
            m if self.cat.weight(m) > 0 => Class::Weighted,
            _ => Class::Harmless,
        };
        (class, m)
    }
}

// ---------------------------------------------------------------------------------------------
// run

/// Per-file outcome of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FileReport {
    pub path: PathBuf,
    pub tail: TailStats,
    /// Lines read, parsed, matched (counted probes), refused and unparsed in this pass.
    pub counts: InputCounts,
    /// A read error (the file's cursor was left unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Result of [`run`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Detections {
    /// One per address over a threshold in this run (crossed now, or crossed before and still
    /// probing) whose ban has not run out yet, seen at its latest probe.
    #[serde(skip)]
    pub sightings: Vec<Sighting>,
    /// The crossings of this run (the latest per address).
    pub fired: Vec<Fired>,
    /// Addresses that were over a threshold already and kept probing (their ban is extended).
    pub still_probing: usize,
    /// Addresses whose windows were dropped from the bounded state in this run to make room
    /// (the furthest from a threshold first), and in all runs.
    pub evicted: u64,
    pub evicted_total: u64,
    pub counters: Counters,
    pub files: Vec<FileReport>,
    /// What was read from the systemd journal (`kernel_log.journal: true`, or instead of a
    /// missing default kern.log).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<journal::JournalReport>,
}

impl Detections {
    /// One line for the sync report.
    pub fn summary(&self) -> String {
        let c = &self.counters;
        let mut s = format!(
            "{} lines read, {} inbound packets ({} weighted, {} unlisted ports), {} addresses crossed a threshold, {} still probing, {} recent enough to ban",
            c.lines,
            c.packets,
            c.weighted,
            c.unlisted,
            self.fired.len(),
            self.still_probing,
            self.sightings.len()
        );
        if self.evicted > 0 {
            s += &format!(
                ", {} addresses evicted from the bounded state (furthest from a threshold first)",
                self.evicted
            );
        }
        s
    }
}

/// The files and the journal a pass reads: as configured, or the journal instead of the
/// default kern.log when that file does not exist and the section names neither `files` nor
/// `journal` (Debian 12 and 13 have no rsyslog, so no kern.log, by default).
pub fn inputs(s: &KernelLogSettings) -> (&[PathBuf], Option<&JournalSettings>) {
    if let Some(j) = &s.journal {
        return (&s.files, Some(j));
    }
    match (&s.journal_fallback, s.files.as_slice()) {
        (Some(j), [default]) if !default.exists() => (&[], Some(j)),
        _ => (&s.files, None),
    }
}

/// What a pass scores into: the windows, the crossings and who is over a threshold.
struct Scoring<'a> {
    cat: &'a Catalogue,
    rules: Rules,
    recent: Offences<Window>,
    fired: BTreeMap<IpAddr, Fired>,
    /// Every address over a threshold in this run, and its latest probe.
    over: BTreeMap<IpAddr, i64>,
    newest: i64,
}

impl Scoring<'_> {
    fn take(&mut self, seen: Seen<'_>) {
        let Seen::Packet {
            p,
            t,
            class,
            ignored: None,
            entry,
        } = seen
        else {
            return;
        };
        self.newest = self.newest.max(t);
        if !class.counted() {
            return;
        }
        let w = self.cat.weight(entry);
        let win = self.recent.entry(p.src, self.rules.rank(self.newest));
        match self.rules.score(win, p.src, t, key(p.proto, p.dpt), w) {
            Score::Below => {}
            Score::Crossed(f) => {
                let at = self.over.entry(f.ip).or_insert(f.at);
                *at = (*at).max(f.at);
                self.fired.insert(f.ip, f);
            }
            Score::Still(t) => {
                let at = self.over.entry(p.src).or_insert(t);
                *at = (*at).max(t);
            }
        }
    }
}

/// One detector pass: read what is new in every configured file from its saved cursor, score
/// the probes, and return the addresses that crossed a threshold as sightings. `own` are this
/// host's addresses (never scored). A file that cannot be read is reported and keeps its
/// cursor; the others go on. Re-reading lines (after a failed read, or the same kernel lines in
/// kern.log and syslog) changes nothing: each port counts once per window, and an address
/// already over a threshold is only kept over.
pub fn run(
    settings: &KernelLogSettings,
    state: &mut KernelState,
    own: &HashSet<IpAddr>,
    now: i64,
) -> Result<Detections, KernelLogError> {
    let (files, journal) = inputs(settings);
    if files.is_empty() && journal.is_none() {
        return Err(KernelLogError::NoFiles);
    }
    let cat = catalogue(settings).map_err(KernelLogError::Catalogue)?;
    let rules = Rules::of(settings);
    let mut engine = Engine::new(&cat, own, settings, now);
    let mut sc = Scoring {
        cat: &cat,
        rules,
        recent: std::mem::take(&mut state.recent),
        fired: BTreeMap::new(),
        over: BTreeMap::new(),
        newest: i64::MIN,
    };
    let mut reports = Vec::new();
    let mut budget = tail::Budget::new(settings.read_limit);
    for path in files {
        let fs = state.files.entry(path.display().to_string()).or_default();
        let prev = fs.cursor.clone();
        let mut last_time = fs.last_time;
        let before = engine.counters.input();
        let r = tail::follow(path, prev.as_ref(), settings.start, &mut budget, &mut |l| {
            sc.take(engine.line(l, &mut last_time));
        });
        let mut report = FileReport {
            path: path.clone(),
            counts: engine.counters.input().since(before),
            ..FileReport::default()
        };
        match r {
            Ok((cursor, stats)) => {
                engine.counters.long_lines += stats.long_lines;
                fs.cursor = cursor;
                fs.last_time = last_time;
                report.tail = stats;
            }
            Err(e) => {
                tracing::warn!("kernel-log detector: {e}");
                report.error = Some(e.to_string());
            }
        }
        reports.push(report);
    }
    let journal_report = match journal {
        Some(j) => {
            let before = engine.counters.input();
            let mut report = journal::follow(
                j,
                state.journal.get_or_insert_with(Default::default),
                now - i64::from(settings.window),
                &mut budget,
                &mut |msg, last_time| sc.take(engine.message(msg, last_time)),
            );
            report.counts = engine.counters.input().since(before);
            Some(report)
        }
        None => {
            state.journal = None;
            None
        }
    };
    let Scoring {
        mut recent,
        fired,
        over,
        ..
    } = sc;
    prune(&mut recent, now, rules);
    let evicted = recent.take_evicted();
    state.recent = recent;
    state.evictions = state.evictions.saturating_add(evicted);
    let keep: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    state.files.retain(|k, _| keep.contains(k));
    let ttl = settings.ttl;
    let sightings = over
        .iter()
        .filter(|(_, at)| **at + i64::from(ttl) > now)
        .map(|(ip, at)| Sighting {
            net: net::host_net(*ip),
            seen: *at,
            ttl,
        })
        .collect();
    let still_probing = over.keys().filter(|ip| !fired.contains_key(ip)).count();
    Ok(Detections {
        sightings,
        fired: fired.into_values().collect(),
        still_probing,
        counters: engine.counters,
        files: reports,
        journal: journal_report,
        evicted,
        evicted_total: state.evictions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::kernlog::resolve;
    use crate::source::asterisk::TimeZone;
    use proptest::prelude::*;
    use std::collections::HashMap;

    type AddrMap<V> = HashMap<IpAddr, V, foldhash::quality::RandomState>;

    fn arb_window() -> impl Strategy<Value = Window> {
        let hit = (any::<i64>(), any::<u32>(), any::<u8>()).prop_map(|(time, key, weight)| Hit {
            time,
            key,
            weight,
        });
        (proptest::collection::vec(hit, 0..6), any::<Option<i64>>()).prop_map(|(hs, over)| {
            let mut hits = Hits::default();
            for h in hs {
                hits.push(h);
            }
            Window { hits, over }
        })
    }

    fn arb_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|a| net::canonical_ip(IpAddr::from(a.to_be_bytes()))),
            any::<u128>().prop_map(|a| net::canonical_ip(IpAddr::from(a.to_be_bytes()))),
        ]
    }

    proptest! {
        /// Any state comes back from its blob as it went in.
        #[test]
        fn state_blob_round_trips(
            recent in proptest::collection::hash_map(arb_ip(), arb_window(), 0..50),
            last_time in any::<Option<i64>>(),
            evictions in any::<u64>(),
        ) {
            let mut files = BTreeMap::new();
            files.insert("/var/log/kern.log".to_string(), FileState { cursor: None, last_time });
            let st = KernelState { files, recent: recent.into_iter().collect(), evictions, journal: None };
            prop_assert_eq!(KernelState::decode(&st.encode().unwrap()).unwrap(), st);
        }

        /// A damaged blob never panics the decoder.
        #[test]
        fn damaged_state_blobs_are_refused(tail in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut blob = STATE_MAGIC.to_vec();
            blob.extend_from_slice(&tail);
            let _ = KernelState::decode(&blob);
        }
    }

    #[test]
    fn state_blobs_of_earlier_versions_still_load() {
        let json = br#"{"files":{"/var/log/kern.log":{"cursor":null,"last_time":1714644000}},"recent":{"198.51.100.7":{"hits":[{"time":1714644000,"key":65559,"weight":4}],"over":null}}}"#;
        let st = KernelState::decode(json).unwrap();
        assert_eq!(st.files["/var/log/kern.log"].last_time, Some(1_714_644_000));
        let w = &st.recent[&"198.51.100.7".parse::<IpAddr>().unwrap()];
        assert_eq!(w.hits.as_slice()[0].key, 65_559);
        // And a truncated new-style blob is an error, not an empty state.
        let blob = st.encode().unwrap();
        assert!(KernelState::decode(&blob[..blob.len() - 1]).is_err());
        assert_eq!(KernelState::saved_evictions(json), Some(0));
    }

    #[test]
    fn version_1_blobs_without_the_eviction_total_still_load() {
        let mut st = KernelState {
            recent: [(
                "198.51.100.7".parse::<IpAddr>().unwrap(),
                Window {
                    hits: Hits::default(),
                    over: Some(1_714_644_000),
                },
            )]
            .into_iter()
            .collect(),
            ..KernelState::default()
        };
        // Version 2 with a total of 0 is version 1 with one more byte (the total) after the
        // magic.
        let v2 = st.encode().unwrap();
        assert_eq!((&v2[..4], v2[4]), (STATE_MAGIC, 0));
        let v1 = [STATE_MAGIC_V1, &v2[5..]].concat();
        assert_eq!(KernelState::decode(&v1).unwrap(), st);
        assert_eq!(KernelState::saved_evictions(&v1), Some(0));
        st.evictions = 4465;
        let v2 = st.encode().unwrap();
        assert_eq!(KernelState::decode(&v2).unwrap().evictions, 4465);
        assert_eq!(KernelState::saved_evictions(&v2), Some(4465));
        assert_eq!(KernelState::saved_evictions(b"\0ks9junk"), None);
    }

    #[test]
    fn a_port_scan_state_is_small() {
        // 6,000 addresses with two ports each, as the shipped LOG rule can log in a window.
        let mut recent = HashMap::new();
        for i in 0..6000u32 {
            let mut hits = Hits::default();
            for (k, key) in [(0, 65_559u32), (1, 65_647)] {
                hits.push(Hit {
                    time: 1_800_000_000 + i64::from(i) / 10 + k,
                    key,
                    weight: 4,
                });
            }
            recent.insert(
                IpAddr::from((0x2D00_0000 + i * 97).to_be_bytes()),
                Window { hits, over: None },
            );
        }
        let st = KernelState {
            files: BTreeMap::new(),
            recent: recent.into_iter().collect(),
            evictions: 0,
            journal: None,
        };
        let blob = st.encode().unwrap();
        let json = serde_json::to_vec(&st).unwrap();
        eprintln!(
            "6,000 windows: {} bytes packed, {} bytes JSON",
            blob.len(),
            json.len()
        );
        assert!(blob.len() <= 6000 * 16, "{} bytes", blob.len());
    }

    fn settings() -> KernelLogSettings {
        KernelLogSettings {
            timezone: TimeZone::FixedOffset(0),
            ..KernelLogSettings::default()
        }
    }

    fn line(t: &str, src: &str, proto: &str, dpt: u16) -> String {
        let tail = if proto == "TCP" {
            "WINDOW=1024 RES=0x00 SYN URGP=0"
        } else {
            "LEN=20"
        };
        format!("2024-05-02T{t}+00:00 pbx kernel: [UFW BLOCK] IN=eth0 OUT= MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:08:00 SRC={src} DST=203.0.113.10 LEN=44 TOS=0x00 PREC=0x00 TTL=241 ID=1 PROTO={proto} SPT=40000 DPT={dpt} {tail}\n")
    }

    fn rules() -> Rules {
        Rules::of(&settings())
    }

    #[test]
    fn sizes_stay_small() {
        // The scan is bound by memory latency: a window must stay within a cache line (the
        // scan's listing slot is checked in `scan`).
        assert!(std::mem::size_of::<Window>() <= 64);
    }

    #[test]
    fn hits_spill_from_inline_to_heap_and_back() {
        let mut h = Hits::default();
        for i in 0..5 {
            h.push(Hit {
                time: i,
                key: i as u32,
                weight: 1,
            });
        }
        assert!(matches!(h, Hits::Heap(_)));
        h.retain(|x| x.time % 2 == 0);
        assert_eq!(
            h.as_slice().iter().map(|x| x.time).collect::<Vec<_>>(),
            [0, 2, 4]
        );
        let json = serde_json::to_string(&h).unwrap();
        let back: Hits = serde_json::from_str(&json).unwrap();
        assert_eq!(back.as_slice(), h.as_slice());
        let mut small = Hits::default();
        small.push(Hit::default());
        let back: Hits = serde_json::from_str(&serde_json::to_string(&small).unwrap()).unwrap();
        assert!(matches!(back, Hits::Inline { len: 1, .. }));
        h.clear();
        assert!(h.is_empty());
    }

    #[test]
    fn weight_threshold_counts_each_port_once() {
        let r = rules();
        let mut m = AddrMap::default();
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        // telnet (4) three times: still 4.
        for t in 0..3 {
            assert_eq!(
                r.score(m.entry(ip).or_default(), ip, t, key(Proto::Tcp, 23), 4),
                Score::Below
            );
        }
        assert_eq!(
            r.score(m.entry(ip).or_default(), ip, 5, key(Proto::Tcp, 111), 4),
            Score::Below
        );
        let Score::Crossed(f) = r.score(m.entry(ip).or_default(), ip, 9, key(Proto::Tcp, 1524), 6)
        else {
            panic!("crossed")
        };
        assert!(f.crossed.weight && !f.crossed.distinct_ports);
        assert_eq!((f.weight, f.ports, f.at), (14, 3, 9));
        // Probing on keeps it over; the same lines again change nothing.
        assert_eq!(
            r.score(m.entry(ip).or_default(), ip, 300, key(Proto::Tcp, 23), 4),
            Score::Still(300)
        );
        assert_eq!(
            r.score(m.entry(ip).or_default(), ip, 9, key(Proto::Tcp, 1524), 6),
            Score::Still(300)
        );
        // After a quiet window it has to cross again.
        assert_eq!(
            r.score(m.entry(ip).or_default(), ip, 901, key(Proto::Tcp, 23), 4),
            Score::Below
        );
        assert_eq!(m[&ip].over, None);
    }

    #[test]
    fn window_forgets_old_probes_and_distinct_ports_fire() {
        let r = rules();
        let mut m = AddrMap::default();
        let ip: IpAddr = "198.51.100.8".parse().unwrap();
        let below = Score::Below;
        assert_eq!(
            r.score(m.entry(ip).or_default(), ip, 0, key(Proto::Tcp, 1524), 6),
            below
        );
        // 601 s later the backdoor probe is out of the 10-minute window.
        assert_eq!(
            r.score(m.entry(ip).or_default(), ip, 601, key(Proto::Tcp, 31337), 6),
            below
        );
        assert_eq!(m[&ip].hits.len(), 1);
        for (i, port) in (2000..2007).enumerate() {
            let f = r.score(
                m.entry(ip).or_default(),
                ip,
                602 + i as i64,
                key(Proto::Tcp, port),
                0,
            );
            if i < 6 {
                assert_eq!(f, below, "{i}");
            } else {
                assert!(matches!(f, Score::Crossed(f) if f.crossed.distinct_ports));
            }
        }
    }

    #[test]
    fn resolve_checks_values() {
        let raw = |t: Option<u32>, d: Option<u32>| RawKernelLog {
            threshold: t,
            distinct_ports: d,
            ..RawKernelLog::default()
        };
        assert!(resolve(raw(Some(0), Some(0))).is_err());
        assert!(resolve(raw(None, Some(1))).is_err());
        assert!(resolve(raw(None, Some(5000))).is_err());
        let s = resolve(raw(Some(0), None)).unwrap();
        assert_eq!((s.threshold, s.distinct_ports, s.ttl), (0, 8, 86_400));
        let e = resolve(RawKernelLog {
            files: Some(vec![]),
            ..RawKernelLog::default()
        });
        assert!(e.is_err());
    }

    #[test]
    fn scan_bytes_skips_lines_over_the_cap_like_a_file_scan() {
        // A LOG line padded past 64 KiB inside its printk time, then an ordinary one.
        let long = line("10:00:00", "198.51.100.99", "TCP", 23).replacen(
            "kernel: ",
            &format!("kernel: [{}] ", "1".repeat(tail::MAX_LINE)),
            1,
        );
        let log = long + &line("10:00:01", "198.51.100.7", "TCP", 23);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kern.log");
        std::fs::write(&path, &log).unwrap();
        let own = HashSet::new();
        let memory = scan_bytes(&[log.as_bytes()], &settings(), &own).unwrap();
        let file = scan(&[path], &settings(), &own, "test settings").unwrap();
        assert_eq!(memory.counters.long_lines, 1);
        assert_eq!(memory.files[0].long_lines, 1);
        assert_eq!(memory.counters, file.counters);
        assert_eq!(memory.addresses, file.addresses);
    }

    #[test]
    fn scan_lists_every_inbound_packet_per_address() {
        let mut log = String::new();
        log += &line("10:00:00", "198.51.100.7", "TCP", 23);
        log += &line("10:00:01", "198.51.100.7", "TCP", 31337);
        log += &line("10:00:02", "198.51.100.7", "UDP", 67);
        log += &line("10:00:03", "198.51.100.7", "TCP", 8123);
        log += &line("10:00:04", "198.51.100.7", "TCP", 1524);
        log += &line("10:00:05", "203.0.113.10", "TCP", 23); // own address
        let own = HashSet::from(["203.0.113.10".parse().unwrap()]);
        let r = scan_bytes(&[log.as_bytes()], &settings(), &own).unwrap();
        assert_eq!(r.counters.packets, 6);
        assert_eq!(r.addresses.len(), 2);
        let a = &r.addresses[0];
        assert_eq!(a.ip.to_string(), "198.51.100.7");
        assert_eq!(a.ports.len(), 5, "{a:?}");
        assert_eq!(a.weight, 16);
        assert_eq!(a.distinct_ports, 4);
        let fired = a.fired.as_ref().unwrap();
        assert!(fired.first.crossed.weight);
        assert!(r.addresses[1].ignored.is_some());
        let text = r.to_string();
        assert!(text.contains("FIRED (weight"), "{text}");
        assert!(text.contains("67/udp (dhcp, harmless)"), "{text}");
    }

    #[test]
    fn run_follows_files_and_keeps_windows() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("kern.log");
        let s = KernelLogSettings {
            files: vec![log.clone()],
            ..settings()
        };
        let now = crate::source::asterisk::rules::days_from_civil(2024, 5, 2) * 86_400 + 36_100;
        std::fs::write(
            &log,
            line("10:00:00", "198.51.100.7", "TCP", 23)
                + &line("10:00:01", "198.51.100.7", "TCP", 111),
        )
        .unwrap();
        let own = HashSet::new();
        let mut st = KernelState::default();
        let d = run(&s, &mut st, &own, now).unwrap();
        assert!(d.sightings.is_empty());
        assert_eq!(st.recent.len(), 1);
        let mut st = KernelState::decode(&st.encode().unwrap()).unwrap();
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(line("10:01:00", "198.51.100.7", "TCP", 31337).as_bytes())
            .unwrap();
        let d = run(&s, &mut st, &own, now).unwrap();
        assert_eq!(d.counters.lines, 1, "only the new line");
        assert_eq!(d.sightings.len(), 1);
        assert_eq!(d.sightings[0].ttl, 86_400);
        assert_eq!(d.fired[0].weight, 14);
        assert_eq!(st.recent.len(), 1, "over, until a quiet window passes");
        // Still probing in the next run: the sighting is extended, with no new crossing.
        f.write_all(line("10:01:30", "198.51.100.7", "TCP", 8123).as_bytes())
            .unwrap();
        let d = run(&s, &mut st, &own, now).unwrap();
        assert!(d.fired.is_empty());
        assert_eq!(d.still_probing, 1);
        assert_eq!(d.sightings[0].seen, now - 10);
    }
}
