//! `sipban scan --kernel`: read kernel logs once, change nothing, and list every inbound TCP/UDP
//! packet per source address (ports hit, how each counts, summed weight, distinct ports, and
//! which threshold fired), scored as [`super::run`] would.
//!
//! Memory is bounded by the open scoring windows and a fixed budget, not by the number of
//! sources seen:
//!
//! * per address with an open window, the window, in a slab: a window whose latest probe is
//!   older than the newest packet by more than the window (plus [`SLACK`]) can no longer count
//!   with a later probe, so it is dropped. Logs are read in time order almost always; should a
//!   line come older than a dropped window could still count with (files given newest first,
//!   a clock stepped back by more than the slack), the scan starts over keeping every window,
//!   so the report is always what scoring every window to the end would give;
//! * per address in the listing, one compact slot (its packets, first and last time, its ports
//!   in the order first hit and how each counts; two ports inline, the rest in a short list or
//!   an ordered map). Past its [`Budget`] (65,536 slots, or 262,144 ports beyond the inline
//!   ones), the slots without an open window are sorted by address, written to an unnamed
//!   temporary file as a run, and freed, and the address index with them ([`spill`]); an
//!   address seen again gets a fresh slot. The report merges the runs back by address (counts
//!   add up, the first crossing and each port's first class stay, the first [`SCAN_PORTS`]
//!   ports hit are listed and the rest counted, as in memory), sorts them into report order
//!   in runs of the same budget, and merges those as it writes: byte for byte the report the
//!   listing in memory would write. A slot spilled may have had its window dropped: an address
//!   seen again after a spill counts as such (a line older than a dropped window then starts
//!   the scan over, which changes nothing in the report). Starting over drops the runs (their
//!   files are unnamed: closing them frees them). The pass that keeps every window keeps the
//!   slots of every counted address in memory with them (that rare case is bounded by the
//!   windows it keeps, as before).
//!
//! Lines are parsed and classified by the line engine shared with [`super::run`] (the parsing
//! side), which hands the packets to the scoring side (listing and windows). Logs of 4 MiB or
//! more are parsed in a thread of its own: the calling thread reads the logs, hands the lines
//! over in blocks and scores the packets that come back (a couple of blocks in flight each
//! way); smaller logs are read, parsed and scored in one thread.
//!
//! The report is sorted and rendered one address at a time from the listing or its runs (text
//! or JSON): a scan of a large log lists tens of thousands of addresses, and building the
//! whole report at once would cost several times the listing.
//!
//! This module must never change the files it reads, never hold a whole file in memory (nor
//! a slot per source ever seen), and never score differently from [`super::run`].

use super::addrindex::Table;
use super::{
    catalogue, Class, Counters, Engine, Fired, KernelLogError, KernelLogSettings, Rules, Score,
    Seen, Window,
};
use crate::clock::Iso;
use crate::config::human_duration;
use crate::source::input::InputCounts;
use crate::source::kernlog::ports::{Catalogue, Match, Proto};
use crate::source::tail::{self, StartAt};
use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

mod spill;

/// Ports listed per address in a scan.
pub const SCAN_PORTS: usize = 4096;

/// How much older than the newest packet (beyond the window) a window must be to be dropped:
/// lines a little out of order (two files' tails interleaved, a clock stepped back at boot)
/// never make the scan start over.
pub const SLACK: i64 = 3600;

/// One port of one address in a [`ScanReport`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PortScan {
    pub proto: Proto,
    pub port: u16,
    pub packets: u64,
    pub class: Class,
    /// The catalogue entry that named the port, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub weight: u8,
}

/// When and how an address crossed a threshold during the scan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FiredScan {
    /// The first crossing.
    pub first: Fired,
    /// How many times the address crossed a threshold (once over, it stays over while it keeps
    /// probing within the window; after a quiet window it has to cross again).
    pub times: u32,
    /// Its last counted probe while over a threshold (a sighting would be seen then).
    pub until: i64,
}

/// One source address in a [`ScanReport`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AddressScan {
    pub ip: IpAddr,
    pub packets: u64,
    pub first: i64,
    pub last: i64,
    /// Why the address is never scored (own, loopback, ...), if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<&'static str>,
    /// Summed weight of its distinct weighted ports over the whole scan.
    pub weight: u32,
    /// Its distinct counted ports over the whole scan.
    pub distinct_ports: u32,
    pub ports: Vec<PortScan>,
    /// Ports beyond the per-address listing cap.
    #[serde(skip_serializing_if = "is_zero")]
    pub more_ports: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fired: Option<FiredScan>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// An address as the report shows it, but for its ports (borrowed from the listing or from
/// an [`AddressScan`]: both are written by the same code).
struct AddrHead<'a> {
    ip: IpAddr,
    packets: u64,
    first: i64,
    last: i64,
    ignored: Option<&'static str>,
    weight: u32,
    distinct_ports: u32,
    more_ports: u64,
    fired: Option<&'a FiredScan>,
}

/// A [`PortScan`], its name borrowed.
#[derive(Clone, Copy)]
struct PortView<'a> {
    proto: Proto,
    port: u16,
    packets: u64,
    class: Class,
    name: Option<&'a str>,
    weight: u8,
    /// Its catalogue entry (`u16::MAX`: unlisted, or not known).
    entry: u16,
}

impl PortView<'_> {
    fn owned(&self) -> PortScan {
        PortScan {
            proto: self.proto,
            port: self.port,
            packets: self.packets,
            class: self.class,
            name: self.name.map(str::to_string),
            weight: self.weight,
        }
    }
}

impl AddressScan {
    fn head(&self) -> AddrHead<'_> {
        AddrHead {
            ip: self.ip,
            packets: self.packets,
            first: self.first,
            last: self.last,
            ignored: self.ignored,
            weight: self.weight,
            distinct_ports: self.distinct_ports,
            more_ports: self.more_ports,
            fired: self.fired.as_ref(),
        }
    }

    fn port_views(&self) -> Vec<PortView<'_>> {
        self.ports
            .iter()
            .map(|p| PortView {
                proto: p.proto,
                port: p.port,
                packets: p.packets,
                class: p.class,
                name: p.name.as_deref(),
                weight: p.weight,
                entry: u16::MAX,
            })
            .collect()
    }
}

/// Per-file part of a [`ScanReport`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FileScan {
    pub path: PathBuf,
    pub lines: u64,
    pub long_lines: u64,
    pub counts: InputCounts,
}

/// The scoring a scan applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScanRules {
    pub window: String,
    pub threshold: u32,
    pub distinct_ports: u32,
    /// Where they came from (a config file, or the built-in defaults).
    pub from: String,
}

/// Result of [`scan`]: what `sipban scan --kernel` prints, every address built.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScanReport {
    pub files: Vec<FileScan>,
    pub rules: ScanRules,
    pub counters: Counters,
    /// Sorted: crossed a threshold first, then by weight, distinct ports, packets.
    pub addresses: Vec<AddressScan>,
    /// Unparsed lines that look relevant (a netfilter field and an address), at most 20.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unparsed_samples: Vec<String>,
}

/// Result of [`scan_files`]: the same report as [`ScanReport`] (its text and JSON are
/// identical), with the addresses built one at a time as they are written.
pub struct Scan {
    pub files: Vec<FileScan>,
    pub rules: ScanRules,
    pub counters: Counters,
    pub unparsed_samples: Vec<String>,
    listing: Listed,
}

// ---------------------------------------------------------------------------------------------
// the listing

/// No index (window slab, fired list).
const NONE: u32 = u32::MAX;
/// An address's `win` when it may have been spilled with its window dropped (it is not a slot:
/// the slab never grows that large).
const SPILLED: u32 = u32::MAX - 1;

/// How much of the listing stays in memory: past `addresses` slots (or `ports` ports beyond
/// the two inline), the slots without an open window are spilled to disk (see [`spill`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    pub addresses: usize,
    pub ports: usize,
}

impl Budget {
    /// 65,536 slots (about 6 MiB) and 262,144 ports beyond the inline ones (3 to 8 MiB; every
    /// TCP and UDP port of two addresses).
    /// Half as many slots would make `bench/kernlog.sh`'s million lines (56,575 sources, most
    /// of them back every few hours for a week) spill 8 times, each address coming back as a
    /// new slot, and the scan about 25% slower; with these, that log never spills (its 16,000
    /// scanners' ports beyond the inline ones are about 160,000).
    pub const DEFAULT: Budget = Budget {
        addresses: 65_536,
        ports: 262_144,
    };
}

/// How one port of an address counts, and its packets. The catalogue entry is `u16::MAX` when
/// unlisted (the catalogue's ids stop below it: its lookup tables hold `id + 1` in a `u16`).
#[derive(Clone, Copy)]
struct PortAgg {
    key: u32,
    packets: u32,
    entry: u16,
    class: Class,
}

fn entry_of(m: Match) -> u16 {
    match m {
        Match::Entry(id) => id,
        Match::Unlisted => u16::MAX,
    }
}

fn match_of(e: u16) -> Match {
    match e {
        u16::MAX => Match::Unlisted,
        id => Match::Entry(id),
    }
}

/// An address's ports beyond the two inline, in the order they were first hit: a list searched
/// in order while short (a scanner of a dozen ports costs a third of a map), a list and a map
/// of positions in it beyond [`REST_LIST`].
enum Rest {
    List(Vec<PortAgg>),
    // Boxed: the list is the common case, and the enum stays as small as a Vec.
    Map(Box<Ordered>),
}

/// Ports in the order they were first hit, and where each is.
struct Ordered {
    list: Vec<PortAgg>,
    at: HashMap<u32, u32, foldhash::fast::RandomState>,
}

/// Ports an address's [`Rest`] keeps in a list.
const REST_LIST: usize = 32;

impl Rest {
    fn len(&self) -> usize {
        match self {
            Rest::List(v) => v.len(),
            Rest::Map(m) => m.list.len(),
        }
    }

    fn get_mut(&mut self, k: u32) -> Option<&mut PortAgg> {
        match self {
            Rest::List(v) => v.iter_mut().find(|p| p.key == k),
            Rest::Map(m) => {
                let i = *m.at.get(&k)?;
                m.list.get_mut(i as usize)
            }
        }
    }

    fn insert(&mut self, pa: PortAgg) {
        match self {
            Rest::List(v) if v.len() < REST_LIST => {
                if v.len() == v.capacity() {
                    // Grown by half, not doubled: a scanner's dozen ports fill their list.
                    v.reserve_exact((v.len() / 2).max(2));
                }
                v.push(pa);
            }
            Rest::List(v) => {
                let mut list = std::mem::take(v);
                list.push(pa);
                let at = list
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (p.key, i as u32))
                    .collect();
                *self = Rest::Map(Box::new(Ordered { list, at }));
            }
            Rest::Map(m) => {
                m.at.insert(pa.key, m.list.len() as u32);
                m.list.push(pa);
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = &PortAgg> {
        match self {
            Rest::List(v) => v.iter(),
            Rest::Map(m) => m.list.iter(),
        }
    }
}

/// One address's listing: most addresses hit one or two ports, kept inline (no allocation,
/// no second cache miss); the rest in a [`Rest`]. Every port is kept, in the order first hit:
/// the report lists the first [`SCAN_PORTS`] and counts the packets of the rest (the
/// listing's budget bounds the ports in memory, see [`Budget`]).
struct AddrAgg {
    first: i64,
    last: i64,
    inline: [PortAgg; 2],
    /// Boxed: 8 bytes in every slot; most addresses never need it.
    rest: Option<Box<Rest>>,
    packets: u32,
    /// Its open window in the slab, or [`NONE`] (or [`SPILLED`]).
    win: u32,
    /// Its crossings in [`Listing::fired`], or [`NONE`].
    fired: u32,
    ip: IpAddr,
    n_inline: u8,
    /// Why it is never scored: 1 + an index into [`Listing::reasons`], or 0.
    ignored: u8,
}

impl AddrAgg {
    fn ports_len(&self) -> usize {
        usize::from(self.n_inline) + self.rest.as_ref().map_or(0, |r| r.len())
    }

    fn port_mut(&mut self, k: u32) -> Option<&mut PortAgg> {
        let n = usize::from(self.n_inline);
        if let Some(pa) = self.inline[..n].iter_mut().find(|p| p.key == k) {
            return Some(pa);
        }
        self.rest.as_mut()?.get_mut(k)
    }

    fn insert(&mut self, pa: PortAgg) {
        let n = usize::from(self.n_inline);
        if n < self.inline.len() {
            self.inline[n] = pa;
            self.n_inline += 1;
        } else {
            match &mut self.rest {
                Some(r) => r.insert(pa),
                None => self.rest = Some(Box::new(Rest::List(vec![pa]))),
            }
        }
    }

    /// Its ports in the order first hit.
    fn ports(&self) -> impl Iterator<Item = &PortAgg> {
        self.inline[..usize::from(self.n_inline)]
            .iter()
            .chain(self.rest.iter().flat_map(|r| r.iter()))
    }
}

/// A window in the slab, and whose it is ([`NONE`] when the slot is free). An address whose
/// `win` names a slot it does not own had its window dropped (see [`Scanner::sweep`]).
struct Slot {
    owner: u32,
    window: Window,
}

/// Everything the report needs once the logs are read.
struct Listing {
    cat: Catalogue,
    aggs: Vec<AddrAgg>,
    fired: Vec<FiredScan>,
    reasons: Vec<&'static str>,
    /// Indices into `aggs` in report order (see [`Listing::sort`]).
    order: Vec<u32>,
    fired_count: usize,
}

impl Listing {
    /// The counted ports' summed weight and number (an ignored address has none).
    fn score(&self, a: &AddrAgg) -> (u32, u32) {
        if a.ignored != 0 {
            return (0, 0);
        }
        a.ports()
            .take(SCAN_PORTS)
            .filter(|p| p.class.counted())
            .fold((0, 0), |(w, n), p| {
                (w + u32::from(self.cat.weight(match_of(p.entry))), n + 1)
            })
    }

    /// Crossed a threshold first, then by weight, distinct ports, packets, and address.
    fn sort(&mut self) {
        // (crossed, weight, distinct ports) in one word: the weight is at most 4,096 ports of
        // weight 255 (20 bits), the distinct ports at most 4,096 (13 bits).
        const _: () = assert!(SCAN_PORTS * 255 < 1 << 20 && SCAN_PORTS < 1 << 13);
        let mut keys: Vec<(u64, u32, u32)> = self
            .aggs
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let (w, n) = self.score(a);
                let hi = u64::from(a.fired != NONE) << 33 | u64::from(w) << 13 | u64::from(n);
                (hi, a.packets, i as u32)
            })
            .collect();
        let aggs = &self.aggs;
        keys.sort_unstable_by(|x, y| {
            (y.0, y.1)
                .cmp(&(x.0, x.1))
                .then_with(|| aggs[x.2 as usize].ip.cmp(&aggs[y.2 as usize].ip))
        });
        self.fired_count = self.fired.len();
        self.order = keys.into_iter().map(|(_, _, i)| i).collect();
    }

    /// The `i`-th address of the report, its ports (sorted) into `ports`.
    fn view<'a>(&'a self, i: usize, ports: &mut Vec<PortView<'a>>) -> Option<AddrHead<'a>> {
        let a = &self.aggs[*self.order.get(i)? as usize];
        let ignored = match a.ignored {
            0 => None,
            r => self.reasons.get(usize::from(r) - 1).copied(),
        };
        let (weight, distinct_ports, more) = settle(&self.cat, a.ports(), ignored.is_some(), ports);
        Some(AddrHead {
            ip: a.ip,
            packets: u64::from(a.packets),
            first: a.first,
            last: a.last,
            ignored,
            weight,
            distinct_ports,
            more_ports: u64::from(more),
            fired: self.fired.get(a.fired as usize),
        })
    }
}

/// A port as the report shows it.
fn port_view<'a>(cat: &'a Catalogue, pa: &PortAgg) -> PortView<'a> {
    let port = (pa.key & 0xffff) as u16;
    let proto = if pa.key >> 16 == 6 {
        Proto::Tcp
    } else {
        Proto::Udp
    };
    let (name, weight) = match match_of(pa.entry) {
        Match::Entry(id) => (
            cat.entry(id).map(|e| e.name()),
            cat.weight(Match::Entry(id)),
        ),
        Match::Unlisted => (None, 0),
    };
    PortView {
        proto,
        port,
        packets: u64::from(pa.packets),
        class: pa.class,
        name,
        weight,
        entry: pa.entry,
    }
}

/// An address's ports (in the order first hit) as the report lists them: the first
/// [`SCAN_PORTS`] into `out`, sorted (counted first, then by weight, port, protocol); returns
/// their summed weight and number counted (none when the address is `ignored`), and the
/// packets of the ports beyond the cap.
fn settle<'a, 'p>(
    cat: &'a Catalogue,
    ports: impl Iterator<Item = &'p PortAgg>,
    ignored: bool,
    out: &mut Vec<PortView<'a>>,
) -> (u32, u32, u32) {
    out.clear();
    let mut more = 0u32;
    for (n, pa) in ports.enumerate() {
        if n < SCAN_PORTS {
            out.push(port_view(cat, pa));
        } else {
            more = more.saturating_add(pa.packets);
        }
    }
    out.sort_unstable_by(|x, y| {
        y.class
            .counted()
            .cmp(&x.class.counted())
            .then(y.weight.cmp(&x.weight))
            .then(x.port.cmp(&y.port))
            .then(x.proto.cmp(&y.proto))
    });
    let counted = |p: &&PortView<'_>| !ignored && p.class.counted();
    let weight = out
        .iter()
        .filter(counted)
        .map(|p| u32::from(p.weight))
        .sum();
    (weight, out.iter().filter(counted).count() as u32, more)
}

// ---------------------------------------------------------------------------------------------
// the scanner

/// The scoring side: packets → listing and windows. A packet costs one index lookup, one
/// listing slot and, when it counts, one window. A large log's sources are too many to stay
/// in cache, so packets go through in three steps, each [`AHEAD`] packets behind the one
/// before: the index slot of its source is fetched, then its listing slot, then the listing
/// and the window are updated (in log order).
struct Scanner<'a> {
    cat: &'a Catalogue,
    rules: Rules,
    budget: Budget,
    /// Spill once the listing reaches this many slots, or this many ports beyond the inline.
    spill_at: (usize, usize),
    /// Ports beyond the inline ones in the listing.
    rest_ports: usize,
    /// The listing's runs on disk, in the order spilled.
    runs: spill::Runs,
    /// Spilling failed: the scan stops with this error.
    failed: Option<std::io::Error>,
    /// Per family, so that the common IPv4 index has 8-byte slots.
    index4: Table<u32>,
    index6: Table<u128>,
    aggs: Vec<AddrAgg>,
    fired: Vec<FiredScan>,
    slab: Vec<Slot>,
    free: Vec<u32>,
    /// Packets whose index slots are being fetched, and packets whose listing slots are.
    hashed: VecDeque<Hashed>,
    pending: VecDeque<Pending>,
    /// Drop windows that can no longer count (false: keep every window to the end).
    drop_windows: bool,
    /// The newest packet's time, and when to look for windows to drop next.
    newest: i64,
    next_sweep: i64,
    /// Latest time a dropped window could still have counted with a probe.
    horizon: i64,
    /// A probe came that a dropped window could have counted with: the scan must start over,
    /// keeping every window.
    again: bool,
}

impl<'a> Scanner<'a> {
    fn new(cat: &'a Catalogue, settings: &KernelLogSettings, opts: PassOpts) -> Self {
        let budget = opts.budget;
        let drop_windows = opts.drop_windows;
        Scanner {
            cat,
            rules: Rules::of(settings),
            budget,
            spill_at: (budget.addresses.max(1), budget.ports),
            rest_ports: 0,
            runs: spill::Runs::default(),
            failed: None,
            index4: Table::new(),
            index6: Table::new(),
            aggs: Vec::new(),
            fired: Vec::new(),
            slab: Vec::new(),
            free: Vec::new(),
            hashed: VecDeque::with_capacity(AHEAD + 1),
            pending: VecDeque::with_capacity(AHEAD + 1),
            drop_windows,
            newest: i64::MIN,
            next_sweep: i64::MIN,
            horizon: i64::MIN,
            again: false,
        }
    }
}

/// An inbound TCP/UDP packet as the parsing side hands it to the scoring side: its source,
/// time, `proto << 16 | port`, catalogue entry (`u16::MAX`: unlisted), how it counts, and why
/// its source is never scored (1 + an index into [`Parse::reasons`], or 0).
#[derive(Clone, Copy)]
struct Rec {
    t: i64,
    src: IpAddr,
    k: u32,
    entry: u16,
    class: Class,
    ignored: u8,
}

/// How many packets each step of the scoring side runs ahead of the next: far enough for a
/// slot fetched from memory to arrive before it is read.
const AHEAD: usize = 4;

/// A packet whose source is hashed (and its index slot being fetched).
#[derive(Clone, Copy)]
struct Hashed {
    h: u64,
    rec: Rec,
}

/// A packet whose listing slot is known (and being fetched) but not yet updated.
#[derive(Clone, Copy)]
struct Pending {
    i: usize,
    t: i64,
    k: u32,
    class: Class,
    entry: u16,
    ignored: bool,
}

/// Ask the CPU to start loading `v`'s cache lines (a hint: it never faults and changes
/// nothing; a no-op where no stable prefetch instruction is available).
#[inline(always)]
pub(super) fn prefetch<T>(v: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p: *const i8 = (v as *const T).cast();
        for off in (0..std::mem::size_of::<T>()).step_by(64) {
            // SAFETY: prefetch is a hint that never faults; `p + off` stays within `*v`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

impl Scanner<'_> {
    /// Take a batch of packets (in log order).
    fn take(&mut self, recs: &[Rec]) {
        for r in recs {
            if self.halted() {
                return; // the scan starts over, or failed
            }
            self.feed(*r);
        }
    }

    /// No more packets are wanted: the scan starts over, or spilling failed.
    fn halted(&self) -> bool {
        self.again || self.failed.is_some()
    }

    fn feed(&mut self, rec: Rec) {
        if self.aggs.len() >= self.spill_at.0 || self.rest_ports >= self.spill_at.1 {
            self.flush();
            if let Err(e) = self.spill() {
                self.failed = Some(e);
                return;
            }
        }
        let h = match rec.src {
            IpAddr::V4(a) => {
                let h = self.index4.hash(u32::from(a));
                self.index4.prefetch(h);
                h
            }
            IpAddr::V6(a) => {
                let h = self.index6.hash(u128::from(a));
                self.index6.prefetch(h);
                h
            }
        };
        self.hashed.push_back(Hashed { h, rec });
        if self.hashed.len() > AHEAD {
            if let Some(prev) = self.hashed.pop_front() {
                self.resolve(prev);
            }
        }
    }

    /// Find (or make) the packet's listing slot and ask for it; apply the packet before it.
    fn resolve(&mut self, Hashed { h, rec }: Hashed) {
        let next = self.aggs.len() as u32;
        let i = match rec.src {
            IpAddr::V4(a) => self.index4.get_or_insert(u32::from(a), h, next),
            IpAddr::V6(a) => self.index6.get_or_insert(u128::from(a), h, next),
        } as usize;
        if i == self.aggs.len() {
            let none = PortAgg {
                key: 0,
                packets: 0,
                entry: u16::MAX,
                class: Class::Unlisted,
            };
            self.aggs.push(AddrAgg {
                first: rec.t,
                last: rec.t,
                inline: [none; 2],
                rest: None,
                packets: 0,
                // Spilled before, it may have had a window since dropped.
                win: if self.runs.is_empty() { NONE } else { SPILLED },
                fired: NONE,
                ip: rec.src,
                n_inline: 0,
                ignored: rec.ignored,
            });
        }
        prefetch(&self.aggs[i]);
        let now = Pending {
            i,
            t: rec.t,
            k: rec.k,
            class: rec.class,
            entry: rec.entry,
            ignored: rec.ignored != 0,
        };
        self.pending.push_back(now);
        if self.pending.len() > AHEAD {
            if let Some(prev) = self.pending.pop_front() {
                self.apply(prev);
            }
        }
    }

    /// Apply the packets still in flight (at the end of a file).
    fn flush(&mut self) {
        while let Some(h) = self.hashed.pop_front() {
            self.resolve(h);
        }
        while let Some(p) = self.pending.pop_front() {
            self.apply(p);
        }
    }

    fn apply(&mut self, pk: Pending) {
        let Pending {
            i,
            t,
            k,
            class,
            entry,
            ignored,
        } = pk;
        if t > self.newest {
            self.newest = t;
            if self.drop_windows && t >= self.next_sweep {
                self.sweep();
            }
        }
        let a = &mut self.aggs[i];
        a.packets = a.packets.saturating_add(1);
        a.first = a.first.min(t);
        a.last = a.last.max(t);
        match a.port_mut(k) {
            Some(pa) => pa.packets = pa.packets.saturating_add(1),
            None => {
                a.insert(PortAgg {
                    key: k,
                    packets: 1,
                    entry,
                    class,
                });
                if a.n_inline == 2 && a.rest.is_some() {
                    self.rest_ports += 1;
                }
            }
        }
        if ignored || !class.counted() {
            return;
        }
        let w = self.cat.weight(match_of(entry));
        let owned = self
            .slab
            .get(a.win as usize)
            .is_some_and(|s| s.owner == i as u32);
        let slot = match a.win {
            s if owned => s,
            had => {
                if had != NONE && t <= self.horizon {
                    // Its dropped window could have counted with this probe.
                    self.again = true;
                    return;
                }
                let slot = Slot {
                    owner: i as u32,
                    window: Window::default(),
                };
                let s = match self.free.pop() {
                    Some(s) => {
                        self.slab[s as usize] = slot;
                        s
                    }
                    None => {
                        self.slab.push(slot);
                        (self.slab.len() - 1) as u32
                    }
                };
                a.win = s;
                s
            }
        };
        let ip = a.ip;
        let window = &mut self.slab[slot as usize].window;
        let fired = &mut self.aggs[i].fired;
        match self.rules.score(window, ip, t, k, w) {
            Score::Below => {}
            Score::Crossed(f) => match self.fired.get_mut(*fired as usize) {
                Some(fs) => {
                    fs.times += 1;
                    fs.until = fs.until.max(f.at);
                }
                None => {
                    *fired = self.fired.len() as u32;
                    self.fired.push(FiredScan {
                        until: f.at,
                        first: f,
                        times: 1,
                    });
                }
            },
            Score::Still(at) => {
                if let Some(fs) = self.fired.get_mut(*fired as usize) {
                    fs.until = fs.until.max(at);
                }
            }
        }
    }

    /// Drop the windows that no probe at or after `newest - SLACK` can count with: a probe
    /// later than a window's latest by more than the window finds it as a new window would.
    fn sweep(&mut self) {
        let window = self.rules.window;
        let cut = self.newest.saturating_sub(SLACK).saturating_sub(window);
        for (s, slot) in self.slab.iter_mut().enumerate() {
            if slot.owner == NONE {
                continue;
            }
            let last = slot.window.last();
            if last < cut {
                // The address keeps `win`: the slot is no longer its own.
                self.horizon = self.horizon.max(last.saturating_add(window));
                slot.owner = NONE;
                slot.window = Window::default();
                self.free.push(s as u32);
            }
        }
        // A sweep reads every open window: once a quarter of the slack at most.
        self.next_sweep = self.newest.saturating_add(window.max(SLACK / 4));
    }

    /// Write the listing's slots without an open window to a run on disk, sorted by address,
    /// and free them; the rest (and their crossings) stay, renumbered. Nothing is in flight.
    fn spill(&mut self) -> std::io::Result<()> {
        let slab = &self.slab;
        let open = |i: usize, a: &AddrAgg| {
            slab.get(a.win as usize)
                .is_some_and(|s| s.owner == i as u32)
        };
        // Sorted by address (IPv4 first, as `IpAddr` orders them), on keys side by side.
        let mut out: Vec<((bool, u128), u32)> = (0..self.aggs.len() as u32)
            .filter(|&i| !open(i as usize, &self.aggs[i as usize]))
            .map(|i| (spill::order_key(self.aggs[i as usize].ip), i))
            .collect();
        out.sort_unstable();
        let mut run = self.runs.writer()?;
        for &(_, i) in &out {
            let a = &self.aggs[i as usize];
            spill::put_seg(run.rec(), a, self.fired.get(a.fired as usize));
            run.end_rec()?;
        }
        run.finish()?;
        tracing::debug!(
            "kernel-log scan: {} addresses spilled to disk (run {}), {} kept with an open window",
            out.len(),
            self.runs.len(),
            self.aggs.len() - out.len()
        );
        drop(out);
        // Keep the slots with an open window, renumbered, and their crossings.
        let mut i = 0;
        self.aggs.retain(|a| {
            let keep = open(i, a);
            i += 1;
            keep
        });
        let old = std::mem::take(&mut self.fired);
        self.index4 = Table::new();
        self.index6 = Table::new();
        self.rest_ports = 0;
        for (j, a) in self.aggs.iter_mut().enumerate() {
            self.slab[a.win as usize].owner = j as u32;
            if let Some(f) = old.get(a.fired as usize) {
                a.fired = self.fired.len() as u32;
                self.fired.push(f.clone());
            }
            match a.ip {
                IpAddr::V4(v) => {
                    let k = u32::from(v);
                    self.index4.get_or_insert(k, self.index4.hash(k), j as u32);
                }
                IpAddr::V6(v) => {
                    let k = u128::from(v);
                    self.index6.get_or_insert(k, self.index6.hash(k), j as u32);
                }
            };
            self.rest_ports += a.ports_len().saturating_sub(2);
        }
        self.spill_at = (
            self.aggs.len() + self.budget.addresses.max(1),
            self.rest_ports + self.budget.ports,
        );
        Ok(())
    }

    /// Apply what is still in flight: the listing and the crossings, the windows dropped.
    fn finish(mut self) -> Finished {
        self.flush();
        Finished {
            aggs: self.aggs,
            fired: self.fired,
            windows: self.slab.len(),
            runs: self.runs,
        }
    }
}

/// The scoring side's result: the listing still in memory, its runs on disk, and the most
/// windows open at once.
struct Finished {
    aggs: Vec<AddrAgg>,
    fired: Vec<FiredScan>,
    windows: usize,
    runs: spill::Runs,
}

impl Scanner<'_> {}

// ---------------------------------------------------------------------------------------------
// the parsing side, and the passes

/// Packets scored at a time in one thread.
const BATCH: usize = 4096;
/// Bytes of whole lines handed to the parsing thread at a time.
const BLOCK: usize = 256 << 10;
/// Blocks in flight each way between the threads (memory stays bounded: about 1 MiB of
/// lines and their packets).
const IN_FLIGHT: usize = 2;
/// Logs smaller than this in all are scanned in one thread (a thread would cost more than it
/// saves).
const THREAD_FROM: u64 = 4 << 20;

/// The parsing side: lines → packets (collected in `batch`), the line counters, and one
/// [`FileScan`] per log read.
struct Parse<'a> {
    engine: Engine<'a>,
    /// Why sources are never scored (a handful of static strings).
    reasons: Vec<&'static str>,
    batch: Vec<Rec>,
    /// The time of the current log's last dated line (for lines without a date).
    last_time: Option<i64>,
    files: Vec<FileScan>,
    /// The counters when the current log began.
    before: (u64, InputCounts),
}

/// What the parsing side ends with.
struct Parsed {
    files: Vec<FileScan>,
    counters: Counters,
    samples: Vec<String>,
    reasons: Vec<&'static str>,
}

impl<'a> Parse<'a> {
    fn new(
        cat: &'a Catalogue,
        own: &'a HashSet<IpAddr>,
        settings: &KernelLogSettings,
        now: i64,
    ) -> Self {
        Parse {
            engine: Engine::new(cat, own, settings, now),
            reasons: Vec::new(),
            batch: Vec::with_capacity(BATCH),
            last_time: None,
            files: Vec::new(),
            before: (0, InputCounts::default()),
        }
    }

    fn line(&mut self, raw: &[u8]) {
        let Seen::Packet {
            p,
            t,
            class,
            entry,
            ignored,
        } = self.engine.line(raw, &mut self.last_time)
        else {
            return;
        };
        let ignored = match ignored {
            None => 0,
            Some(why) => self.reason(why),
        };
        self.batch.push(Rec {
            t,
            src: p.src,
            k: super::key(p.proto, p.dpt),
            entry: entry_of(entry),
            class,
            ignored,
        });
    }

    /// 1 + the index of `why` in the reasons table.
    fn reason(&mut self, why: &'static str) -> u8 {
        let at = match self.reasons.iter().position(|r| *r == why) {
            Some(at) => at,
            None => {
                self.reasons.push(why);
                self.reasons.len() - 1
            }
        };
        u8::try_from(at + 1).unwrap_or(u8::MAX)
    }

    /// The current log is read: its [`FileScan`], and the next starts undated.
    fn file_done(&mut self, path: PathBuf, long_lines: u64) {
        let c = &mut self.engine.counters;
        c.long_lines += long_lines;
        self.files.push(FileScan {
            path,
            lines: c.lines - self.before.0,
            long_lines,
            counts: c.input().since(self.before.1),
        });
        self.before = (c.lines, c.input());
        self.last_time = None;
    }

    fn done(self) -> Parsed {
        Parsed {
            files: self.files,
            counters: self.engine.counters,
            samples: self.engine.samples,
            reasons: self.reasons,
        }
    }
}

/// The logs a pass reads: files, or logs in memory (tests).
#[derive(Clone, Copy)]
enum Logs<'l> {
    Files(&'l [PathBuf]),
    Bytes(&'l [&'l [u8]]),
}

/// Where [`walk`] hands the lines of the logs.
trait Lines {
    fn line(&mut self, raw: &[u8]);
    /// A log is read to its end (`long_lines` over [`tail::MAX_LINE`] skipped).
    fn file_done(&mut self, path: PathBuf, long_lines: u64);
    /// No more lines are wanted (the scan starts over, or failed).
    fn stopped(&self) -> bool;
}

/// Every line of every log, in order, into `to`.
fn walk(logs: Logs<'_>, to: &mut dyn Lines) -> Result<(), KernelLogError> {
    match logs {
        Logs::Files(files) => {
            for path in files {
                // A missing file is an error here (the follower would wait for it); anything
                // but a regular file is refused by the follower, with what it is.
                if let Err(e) = std::fs::metadata(path) {
                    return Err(KernelLogError::Io {
                        path: path.clone(),
                        source: e,
                    });
                }
                let (_, stats) = tail::follow(
                    path,
                    None,
                    StartAt::Beginning,
                    &mut tail::Budget::unlimited(),
                    &mut |l| to.line(l),
                )
                .map_err(|source| KernelLogError::Io {
                    path: path.clone(),
                    source,
                })?;
                to.file_done(path.clone(), stats.long_lines);
                if to.stopped() {
                    break;
                }
            }
        }
        Logs::Bytes(logs) => {
            for (i, data) in logs.iter().enumerate() {
                let body = data.strip_suffix(b"\n").unwrap_or(data);
                let mut long = 0;
                if !data.is_empty() {
                    for line in body.split(|b| *b == b'\n') {
                        if line.len() > tail::MAX_LINE {
                            long += 1;
                            continue;
                        }
                        to.line(line);
                    }
                }
                to.file_done(PathBuf::from(format!("<memory {i}>")), long);
            }
        }
    }
    Ok(())
}

/// Both sides in one thread: a batch is scored as soon as it is full.
struct Here<'p, 's, 'a> {
    parse: &'p mut Parse<'a>,
    scanner: &'s mut Scanner<'a>,
}

impl Lines for Here<'_, '_, '_> {
    fn line(&mut self, raw: &[u8]) {
        if self.scanner.halted() {
            return;
        }
        self.parse.line(raw);
        if self.parse.batch.len() >= BATCH {
            self.scanner.take(&self.parse.batch);
            self.parse.batch.clear();
        }
    }

    fn file_done(&mut self, path: PathBuf, long_lines: u64) {
        self.parse.file_done(path, long_lines);
    }

    fn stopped(&self) -> bool {
        self.scanner.halted()
    }
}

/// Whole lines on their way to the parsing thread: the bytes, where each line ends, and the
/// log they end, if they do.
#[derive(Default)]
struct Block {
    data: Vec<u8>,
    ends: Vec<u32>,
    file_done: Option<(PathBuf, u64)>,
}

/// The two-thread form: this thread reads and scores, the parsing thread parses. Lines are
/// copied into blocks for the parser; the packets come back with the emptied block. This side
/// never blocks on a full queue to the parser without taking the parser's output first, so
/// neither side can wait for the other forever.
struct Feeder<'s, 'a> {
    scanner: &'s mut Scanner<'a>,
    block: Block,
    to_parser: SyncSender<Block>,
    from_parser: Receiver<(Vec<Rec>, Block)>,
    spare: Vec<Block>,
    /// The parser is gone (it failed): nothing more is sent.
    gone: bool,
}

impl Feeder<'_, '_> {
    /// Score one batch back from the parser (waiting for it); `false` when there is none.
    fn take_one(&mut self, wait: bool) -> bool {
        let got = if wait {
            self.from_parser.recv().ok()
        } else {
            self.from_parser.try_recv().ok()
        };
        match got {
            Some((recs, block)) => {
                self.scanner.take(&recs);
                self.spare.push(block);
                true
            }
            None => false,
        }
    }

    /// Send the current block; while the parser's queue is full, score what it sent back.
    fn ship(&mut self) {
        let next = self.spare.pop().unwrap_or_default();
        let mut block = std::mem::replace(&mut self.block, next);
        loop {
            match self.to_parser.try_send(block) {
                Ok(()) => break,
                Err(TrySendError::Full(b)) => {
                    block = b;
                    if !self.take_one(true) {
                        self.gone = true;
                        break;
                    }
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.gone = true;
                    break;
                }
            }
        }
        while self.take_one(false) {}
    }
}

impl Lines for Feeder<'_, '_> {
    fn line(&mut self, raw: &[u8]) {
        if self.scanner.halted() || self.gone {
            return;
        }
        self.block.data.extend_from_slice(raw);
        self.block.ends.push(self.block.data.len() as u32);
        if self.block.data.len() >= BLOCK {
            self.ship();
        }
    }

    fn file_done(&mut self, path: PathBuf, long_lines: u64) {
        self.block.file_done = Some((path, long_lines));
        self.ship();
    }

    fn stopped(&self) -> bool {
        self.scanner.halted() || self.gone
    }
}

/// The parsing thread: blocks in, packets (and the emptied blocks) out, until the reading
/// side hangs up.
fn parse_blocks(
    mut p: Parse<'_>,
    blocks: Receiver<Block>,
    back: SyncSender<(Vec<Rec>, Block)>,
) -> Parsed {
    for mut b in blocks.iter() {
        let mut start = 0;
        for &end in &b.ends {
            p.line(&b.data[start..end as usize]);
            start = end as usize;
        }
        if let Some((path, long)) = b.file_done.take() {
            p.file_done(path, long);
        }
        b.data.clear();
        b.ends.clear();
        let recs = std::mem::replace(&mut p.batch, Vec::with_capacity(BATCH));
        if back.send((recs, b)).is_err() {
            break; // the reading side is gone: the scan starts over or failed
        }
    }
    p.done()
}

/// How a pass runs.
#[derive(Clone, Copy)]
struct PassOpts {
    /// Drop windows that can no longer count (false: keep every window to the end).
    drop_windows: bool,
    /// Parse in a thread of its own while this one reads and scores.
    threaded: bool,
    /// How much of the listing stays in memory.
    budget: Budget,
    /// The scan's one "now" (a date ahead of it is taken as now), the same in every pass.
    now: i64,
}

/// One pass over `logs`; `None` when it must start over keeping every window.
fn pass(
    logs: Logs<'_>,
    cat: &Catalogue,
    own: &HashSet<IpAddr>,
    settings: &KernelLogSettings,
    opts: PassOpts,
) -> Result<Option<Done>, KernelLogError> {
    let mut sc = Scanner::new(cat, settings, opts);
    let parsed = if opts.threaded {
        let (to_parser, blocks) = sync_channel::<Block>(IN_FLIGHT);
        let (back, from_parser) = sync_channel::<(Vec<Rec>, Block)>(IN_FLIGHT);
        std::thread::scope(|scope| {
            let parser = scope.spawn(move || {
                parse_blocks(Parse::new(cat, own, settings, opts.now), blocks, back)
            });
            let mut f = Feeder {
                scanner: &mut sc,
                block: Block::default(),
                to_parser,
                from_parser,
                spare: Vec::new(),
                gone: false,
            };
            let read = walk(logs, &mut f);
            // Hang up: the parser ends once it has sent what it has; take it all.
            let Feeder {
                scanner,
                to_parser,
                from_parser,
                ..
            } = f;
            drop(to_parser);
            for (recs, _) in from_parser.iter() {
                scanner.take(&recs);
            }
            let parsed = parser
                .join()
                .map_err(|_| internal("the kernel-log scan's parsing thread panicked"));
            read.and(parsed)
        })?
    } else {
        let mut p = Parse::new(cat, own, settings, opts.now);
        walk(
            logs,
            &mut Here {
                parse: &mut p,
                scanner: &mut sc,
            },
        )?;
        sc.take(&p.batch);
        p.done()
    };
    sc.flush();
    if let Some(e) = sc.failed.take() {
        return Err(KernelLogError::Spill(e));
    }
    if sc.again {
        return Ok(None);
    }
    let rules = ScanRules {
        window: human_duration(sc.rules.window as u64),
        threshold: sc.rules.threshold,
        distinct_ports: sc.rules.distinct,
        from: String::new(),
    };
    let fin = sc.finish();
    Ok(Some(Done {
        files: parsed.files,
        rules,
        counters: parsed.counters,
        unparsed_samples: parsed.samples,
        aggs: fin.aggs,
        fired: fin.fired,
        reasons: parsed.reasons,
        windows: fin.windows,
        runs: fin.runs,
    }))
}

/// Both passes if need be: dropping windows, then (should a line come that a dropped window
/// could have counted with) keeping them all.
#[cfg(test)]
fn scan_logs(
    logs: Logs<'_>,
    settings: &KernelLogSettings,
    own: &HashSet<IpAddr>,
    from: &str,
    threaded: bool,
    budget: Budget,
) -> Result<Scan, KernelLogError> {
    let now = crate::clock::unix_now();
    scan_logs_at(logs, settings, own, from, (threaded, budget), now)
}

/// [`scan_logs`] as of `now`.
fn scan_logs_at(
    logs: Logs<'_>,
    settings: &KernelLogSettings,
    own: &HashSet<IpAddr>,
    from: &str,
    (threaded, budget): (bool, Budget),
    now: i64,
) -> Result<Scan, KernelLogError> {
    let cat = catalogue(settings).map_err(KernelLogError::Catalogue)?;
    let mut opts = PassOpts {
        drop_windows: true,
        threaded,
        budget,
        now,
    };
    let mut done = pass(logs, &cat, own, settings, opts)?;
    if done.is_none() {
        // The first pass's runs are gone with its scanner (unnamed files, closed).
        opts.drop_windows = false;
        done = pass(logs, &cat, own, settings, opts)?;
    }
    let mut done =
        done.ok_or_else(|| internal("a kernel-log scan keeping every window started over"))?;
    done.rules.from = from.to_string();
    done.with(cat, budget)
}

/// A scan that went wrong inside, not in what it read: an error, never a guess.
fn internal(what: &str) -> KernelLogError {
    KernelLogError::Io {
        path: PathBuf::new(),
        source: std::io::Error::other(format!("internal: {what}")),
    }
}

/// A finished pass, before it gets its catalogue back (the scanner borrowed it).
struct Done {
    files: Vec<FileScan>,
    rules: ScanRules,
    counters: Counters,
    unparsed_samples: Vec<String>,
    aggs: Vec<AddrAgg>,
    fired: Vec<FiredScan>,
    reasons: Vec<&'static str>,
    /// Windows open at most at once (the slab's size; tests check it).
    #[cfg_attr(not(test), allow(dead_code))]
    windows: usize,
    /// The listing's runs on disk (none: it is all in memory).
    runs: spill::Runs,
}

impl Done {
    /// The report to write: from the listing in memory, or (if any of it was spilled) merged
    /// from its runs and the rest.
    fn with(self, cat: Catalogue, budget: Budget) -> Result<Scan, KernelLogError> {
        let listing = if self.runs.is_empty() {
            let mut listing = Listing {
                cat,
                aggs: self.aggs,
                fired: self.fired,
                reasons: self.reasons,
                order: Vec::new(),
                fired_count: 0,
            };
            listing.sort();
            Listed::Memory(listing)
        } else {
            let mut runs = self.runs;
            spill::last_run(&mut runs, self.aggs, &self.fired).map_err(KernelLogError::Spill)?;
            Listed::Disk(
                spill::merge(cat, self.reasons, runs, budget).map_err(KernelLogError::Spill)?,
            )
        };
        Ok(Scan {
            files: self.files,
            rules: self.rules,
            counters: self.counters,
            unparsed_samples: self.unparsed_samples,
            listing,
        })
    }
}

/// Where a [`Scan`]'s addresses are.
enum Listed {
    Memory(Listing),
    Disk(spill::Spilled),
}

/// Read kernel logs once from their start, change nothing, and report every inbound TCP/UDP
/// packet per source address: ports hit, how each counts, summed weight and distinct ports, and
/// which threshold fired (scored as [`super::run`] would, with `settings`). `from` says where
/// the settings came from (shown in the report).
pub fn scan(
    files: &[PathBuf],
    settings: &KernelLogSettings,
    own: &HashSet<IpAddr>,
    from: &str,
) -> Result<ScanReport, KernelLogError> {
    scan_at(files, settings, own, from, crate::clock::unix_now())
}

/// [`scan`] as of `now`: two scans given the same `now` read the same log the same way (a
/// date ahead of the clock is taken as `now`).
pub fn scan_at(
    files: &[PathBuf],
    settings: &KernelLogSettings,
    own: &HashSet<IpAddr>,
    from: &str,
    now: i64,
) -> Result<ScanReport, KernelLogError> {
    scan_files_at(files, settings, own, from, now)?.into_report()
}

/// [`scan`], with the addresses built as they are written (what `sipban scan --kernel` runs).
/// Large logs are parsed in a thread of their own while this one scores.
pub fn scan_files(
    files: &[PathBuf],
    settings: &KernelLogSettings,
    own: &HashSet<IpAddr>,
    from: &str,
) -> Result<Scan, KernelLogError> {
    scan_files_at(files, settings, own, from, crate::clock::unix_now())
}

fn scan_files_at(
    files: &[PathBuf],
    settings: &KernelLogSettings,
    own: &HashSet<IpAddr>,
    from: &str,
    now: i64,
) -> Result<Scan, KernelLogError> {
    if files.is_empty() {
        return Err(KernelLogError::NoFiles);
    }
    let size: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    scan_logs_at(
        Logs::Files(files),
        settings,
        own,
        from,
        (size >= THREAD_FROM, Budget::DEFAULT),
        now,
    )
}

/// [`scan`] over in-memory logs (tests): a last line without a newline counts as complete;
/// lines over [`tail::MAX_LINE`] are skipped and counted, as when reading a file.
pub fn scan_bytes(
    logs: &[&[u8]],
    settings: &KernelLogSettings,
    own: &HashSet<IpAddr>,
) -> Result<ScanReport, KernelLogError> {
    scan_bytes_at(logs, settings, own, crate::clock::unix_now())
}

/// [`scan_bytes`] as of `now` (see [`scan_at`]).
pub fn scan_bytes_at(
    logs: &[&[u8]],
    settings: &KernelLogSettings,
    own: &HashSet<IpAddr>,
    now: i64,
) -> Result<ScanReport, KernelLogError> {
    let scan = scan_logs_at(
        Logs::Bytes(logs),
        settings,
        own,
        "test settings",
        (false, Budget::DEFAULT),
        now,
    )?;
    scan.into_report()
}

// ---------------------------------------------------------------------------------------------
// the report

impl Listed {
    /// How many addresses, and how many of them crossed a threshold.
    fn counts(&self) -> (usize, usize) {
        match self {
            Listed::Memory(l) => (l.order.len(), l.fired_count),
            Listed::Disk(d) => (d.count, d.fired),
        }
    }

    /// Every address in report order, with its ports (as the report lists them), into `f`;
    /// `on_io` says how a failure to read the listing back from disk is reported.
    fn each<E>(
        &self,
        on_io: impl Fn(std::io::Error) -> E,
        mut f: impl FnMut(&AddrHead<'_>, &[PortView<'_>]) -> Result<(), E>,
    ) -> Result<(), E> {
        match self {
            Listed::Memory(l) => {
                let mut ports = Vec::new();
                for i in 0..l.order.len() {
                    let Some(h) = l.view(i, &mut ports) else {
                        break;
                    };
                    f(&h, &ports)?;
                }
                Ok(())
            }
            Listed::Disk(d) => d.each(on_io, f),
        }
    }
}

/// An address of the report, built.
fn built(h: &AddrHead<'_>, ports: &[PortView<'_>]) -> AddressScan {
    AddressScan {
        ip: h.ip,
        packets: h.packets,
        first: h.first,
        last: h.last,
        ignored: h.ignored,
        weight: h.weight,
        distinct_ports: h.distinct_ports,
        ports: ports.iter().map(PortView::owned).collect(),
        more_ports: h.more_ports,
        fired: h.fired.cloned(),
    }
}

impl Scan {
    /// Every address built at once (an error only if the listing cannot be read back from
    /// disk).
    pub fn into_report(self) -> Result<ScanReport, KernelLogError> {
        let mut addresses = Vec::new();
        self.listing.each(KernelLogError::Spill, |h, p| {
            addresses.push(built(h, p));
            Ok(())
        })?;
        Ok(ScanReport {
            files: self.files,
            rules: self.rules,
            counters: self.counters,
            addresses,
            unparsed_samples: self.unparsed_samples,
        })
    }
}

/// The addresses of a [`Scan`] as a JSON array, built one at a time.
struct Addresses<'a>(&'a Listed);

impl Serialize for Addresses<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let mut seq = s.serialize_seq(Some(self.0.counts().0))?;
        self.0.each(
            |e| S::Error::custom(format_args!("the scan's listing on disk: {e}")),
            |h, p| seq.serialize_element(&built(h, p)),
        )?;
        seq.end()
    }
}

/// As [`ScanReport`]'s derived form, field for field.
impl Serialize for Scan {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let samples = !self.unparsed_samples.is_empty();
        let mut st = s.serialize_struct("ScanReport", 4 + usize::from(samples))?;
        st.serialize_field("files", &self.files)?;
        st.serialize_field("rules", &self.rules)?;
        st.serialize_field("counters", &self.counters)?;
        st.serialize_field("addresses", &Addresses(&self.listing))?;
        if samples {
            st.serialize_field("unparsed_samples", &self.unparsed_samples)?;
        } else {
            st.skip_field("unparsed_samples")?;
        }
        st.end()
    }
}

/// Everything before the addresses.
fn write_head(
    f: &mut fmt::Formatter<'_>,
    files: &[FileScan],
    samples: &[String],
    r: &ScanRules,
    c: &Counters,
    (addresses, fired): (usize, usize),
) -> fmt::Result {
    writeln!(f, "Files:")?;
    for file in files {
        let n = &file.counts;
        write!(
            f,
            "  {}: {} lines: {} parsed, {} counted probes, {} refused, {} unparsed",
            file.path.display(),
            file.lines,
            n.parsed,
            n.matched,
            n.refused,
            n.unparsed
        )?;
        if file.long_lines > 0 {
            write!(f, ", {} over 64 KiB skipped", file.long_lines)?;
        }
        writeln!(f)?;
    }
    if !samples.is_empty() {
        writeln!(f, "Unparsed lines that look like firewall lines (samples):")?;
        for l in samples {
            writeln!(f, "  {l}")?;
        }
    }
    let onoff = |v: u32, what: &str| {
        if v == 0 {
            format!("{what} off")
        } else {
            format!("{what} {v}")
        }
    };
    writeln!(
        f,
        "\nScoring ({}): {} or {} within {}; each distinct port counts once",
        r.from,
        onoff(r.threshold, "weight"),
        onoff(r.distinct_ports, "distinct ports"),
        r.window
    )?;
    writeln!(
        f,
        "\nLines: {} read, {} firewall log lines: {} inbound TCP/UDP packets, {} outbound or forwarded, {} other protocols, {} malformed",
        c.lines, c.firewall_lines, c.packets, c.not_inbound, c.other_protocol, c.malformed
    )?;
    writeln!(
        f,
        "Packets: {} on weighted ports, {} on unlisted ports (counted as distinct ports); not counted: {} harmless ports, {} replies, {} broadcast/multicast, {} accepted by the firewall, {} from own or special addresses",
        c.weighted, c.unlisted, c.harmless, c.replies, c.broadcast, c.accepted, c.ignored_source
    )?;
    writeln!(
        f,
        "\nAddresses: {} ({} crossed a threshold)",
        addresses, fired
    )
}

/// Decimal digits of `v`, right-aligned in `width` (the `{:>width$}` of `fmt`, without its
/// machinery: a scan's report is tens of thousands of these lines).
fn push_num(out: &mut String, v: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = v;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let n = digits.len() - i;
    for _ in n..width {
        out.push(' ');
    }
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
}

/// `v` as `width` zero-padded digits (`v` fits).
fn push_pad0(out: &mut String, v: i64, width: u32) {
    let mut div = 10i64.pow(width - 1);
    while div > 0 {
        out.push(char::from(b'0' + (v / div % 10) as u8));
        div /= 10;
    }
}

/// [`Iso`], written by hand for the years 0 to 9999 (the rest through `fmt`).
fn push_iso(out: &mut String, t: i64) {
    use std::fmt::Write;
    let (y, m, d, hh, mm, ss) = crate::clock::civil(t);
    if !(0..=9999).contains(&y) {
        let _ = write!(out, "{}", Iso(t));
        return;
    }
    push_pad0(out, y, 4);
    out.push('-');
    push_pad0(out, m, 2);
    out.push('-');
    push_pad0(out, d, 2);
    out.push('T');
    push_pad0(out, hh, 2);
    out.push(':');
    push_pad0(out, mm, 2);
    out.push(':');
    push_pad0(out, ss, 2);
    out.push('Z');
}

/// One address into `out`: its line, then its ports (the first 40).
fn render_address(out: &mut String, a: &AddrHead<'_>, ports: &[PortView<'_>]) {
    use std::fmt::Write;
    out.push_str("  ");
    let at = out.len();
    match a.ip {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_num(out, u64::from(o), 0);
            }
        }
        ip => {
            let _ = write!(out, "{ip}");
        }
    }
    for _ in out.len() - at..39 {
        out.push(' ');
    }
    out.push_str(" weight ");
    push_num(out, u64::from(a.weight), 3);
    out.push_str(", ");
    push_num(out, u64::from(a.distinct_ports), 3);
    out.push_str(" ports, ");
    push_num(out, a.packets, 6);
    out.push_str(" packets, ");
    push_iso(out, a.first);
    out.push_str(" .. ");
    push_iso(out, a.last);
    match (&a.ignored, &a.fired) {
        (Some(why), _) => {
            out.push_str("  IGNORED: ");
            out.push_str(why);
        }
        (None, Some(fs)) => {
            let _ = write!(
                out,
                "  FIRED ({}: weight {}, {} ports within the window) at ",
                fs.first.crossed, fs.first.weight, fs.first.ports,
            );
            push_iso(out, fs.first.at);
            if fs.until > fs.first.at {
                out.push_str(", still probing until ");
                push_iso(out, fs.until);
            }
            if fs.times > 1 {
                let _ = write!(out, ", crossed {} times", fs.times);
            }
        }
        (None, None) => {}
    }
    out.push_str("\n     ");
    for (i, p) in ports.iter().take(40).enumerate() {
        out.push_str(if i == 0 { " " } else { ", " });
        push_num(out, u64::from(p.port), 0);
        out.push('/');
        out.push_str(p.proto.label());
        out.push_str(" (");
        match (p.class, p.name) {
            (Class::Weighted, n) => {
                out.push_str(n.unwrap_or(""));
                out.push(' ');
                push_num(out, u64::from(p.weight), 0);
            }
            (Class::Unlisted, _) => out.push_str("unlisted"),
            (Class::Harmless, n) => {
                out.push_str(n.unwrap_or(""));
                out.push_str(", harmless");
            }
            (other, Some(n)) => {
                out.push_str(other.label());
                out.push_str(", ");
                out.push_str(n);
            }
            (other, None) => out.push_str(other.label()),
        }
        out.push(')');
        if p.packets > 1 {
            out.push_str(" x");
            push_num(out, p.packets, 0);
        }
    }
    let more = ports.len().saturating_sub(40) as u64 + a.more_ports;
    if more > 0 {
        let _ = write!(out, ", ... and {more} more ports (--json lists them)");
    }
    out.push('\n');
}

impl fmt::Display for ScanReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fired = self.addresses.iter().filter(|a| a.fired.is_some()).count();
        write_head(
            f,
            &self.files,
            &self.unparsed_samples,
            &self.rules,
            &self.counters,
            (self.addresses.len(), fired),
        )?;
        let mut buf = String::with_capacity(4096);
        for a in &self.addresses {
            buf.clear();
            render_address(&mut buf, &a.head(), &a.port_views());
            f.write_str(&buf)?;
        }
        Ok(())
    }
}

/// A [`Scan`]'s text before its addresses.
struct Head<'a>(&'a Scan);

impl fmt::Display for Head<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        write_head(
            f,
            &s.files,
            &s.unparsed_samples,
            &s.rules,
            &s.counters,
            s.listing.counts(),
        )
    }
}

impl Scan {
    /// The text report (as [`fmt::Display`] writes it) into `w`; an error says what failed,
    /// writing or reading the listing back from disk.
    pub fn write_text(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        write!(w, "{}", Head(self))?;
        let mut buf = String::with_capacity(4096);
        self.listing.each(
            |e| std::io::Error::new(e.kind(), format!("the scan's listing on disk: {e}")),
            |h, ports| {
                buf.clear();
                render_address(&mut buf, h, ports);
                w.write_all(buf.as_bytes())
            },
        )
    }
}

impl fmt::Display for Scan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Head(self))?;
        // Each address rendered into one buffer and written at once, its ports borrowed. A
        // listing that cannot be read back from disk fails the write (`write_text` says why).
        let mut buf = String::with_capacity(4096);
        self.listing.each(
            |_| fmt::Error,
            |h, ports| {
                buf.clear();
                render_address(&mut buf, h, ports);
                f.write_str(&buf)
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::Crossed;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_listing_slot_stays_small() {
        // The scan is bound by memory latency, and the listing is most of its memory: one
        // address's slot must stay within a cache line and a half.
        assert!(
            std::mem::size_of::<AddrAgg>() <= 96,
            "{}",
            std::mem::size_of::<AddrAgg>()
        );
        assert!(std::mem::size_of::<Slot>() <= 64);
    }

    fn settings() -> KernelLogSettings {
        KernelLogSettings {
            timezone: crate::source::asterisk::TimeZone::FixedOffset(0),
            ..KernelLogSettings::default()
        }
    }

    /// A probe from `src` to `dpt`, `t` seconds after 2024-05-02 00:00:00 UTC.
    fn line(t: i64, src: &str, dpt: u16) -> String {
        let d = crate::source::asterisk::rules::days_from_civil(2024, 5, 2) * 86_400 + t;
        format!("{} pbx kernel: [UFW BLOCK] IN=eth0 OUT= MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:08:00 SRC={src} DST=203.0.113.10 LEN=44 TOS=0x00 PREC=0x00 TTL=241 ID=1 PROTO=TCP SPT=40000 DPT={dpt} WINDOW=1024 RES=0x00 SYN URGP=0\n", Iso(d))
    }

    /// Two days of probes: 5,000 sources, one every 30 s, each back a day later on other
    /// ports; a scanner crossing the threshold now and then.
    fn two_days() -> String {
        let mut log = String::new();
        for i in 0..5760i64 {
            let t = i * 30;
            let n = i % 2880;
            log += &line(
                t,
                &format!("198.51.{}.{}", n / 250, n % 250),
                [23, 111][(i / 2880) as usize],
            );
            if i % 500 == 0 {
                for (k, p) in [31337, 12345, 1524].into_iter().enumerate() {
                    log += &line(t + k as i64, "192.0.2.99", p);
                }
            }
        }
        log
    }

    fn pass(logs: &[&[u8]], drop_windows: bool) -> Option<(Done, usize)> {
        let s = settings();
        let cat = catalogue(&s).unwrap();
        let opts = PassOpts {
            drop_windows,
            threaded: false,
            budget: Budget::DEFAULT,
            now: crate::clock::unix_now(),
        };
        let done = super::pass(Logs::Bytes(logs), &cat, &HashSet::new(), &s, opts).unwrap()?;
        let windows = done.windows;
        Some((done, windows))
    }

    fn report(d: Done) -> ScanReport {
        let s = settings();
        d.with(catalogue(&s).unwrap(), Budget::DEFAULT)
            .unwrap()
            .into_report()
            .unwrap()
    }

    #[test]
    fn windows_that_can_no_longer_count_are_dropped_and_the_report_is_the_same() {
        let log = two_days();
        let (dropping, windows) = pass(&[log.as_bytes()], true).unwrap();
        let (keeping, all) = pass(&[log.as_bytes()], false).unwrap();
        // 2,880 sources a day, one every 30 s: the window (10 min) and the slack (an hour)
        // hold about 140 of them.
        assert!(windows < 200, "{windows} windows open");
        assert!(all > 2880, "{all}");
        let (a, b) = (report(dropping), report(keeping));
        assert_eq!(a, b);
        assert_eq!(a.addresses.len(), 2881);
        assert!(a.addresses[0].fired.as_ref().is_some_and(|f| f.times == 12));
    }

    #[test]
    fn a_line_older_than_a_dropped_window_starts_the_scan_over() {
        // One probe early on the first day (telnet, weight 4); after two days, another from
        // the same source 10 s after it (back-orifice, 6): within one window, 10 in all.
        let log = line(30, "198.51.100.1", 23) + &two_days();
        let late = line(40, "198.51.100.1", 31337);
        let logs = [log.as_bytes(), late.as_bytes()];
        assert!(pass(&logs, true).is_none(), "not started over");
        let (keeping, _) = pass(&logs, false).unwrap();
        let r = scan_bytes(&logs, &settings(), &HashSet::new()).unwrap();
        let mut want = report(keeping);
        want.files = r.files.clone();
        want.rules = r.rules.clone();
        assert_eq!(r, want);
        let a = r
            .addresses
            .iter()
            .find(|a| a.ip.to_string() == "198.51.100.1")
            .unwrap();
        assert_eq!(a.fired.as_ref().map(|f| f.first.weight), Some(10), "{a:?}");
        // A line a little out of order (within the slack) does not start it over.
        let near = line(2 * 86_400 - 600, "198.51.0.7", 31337);
        assert!(pass(&[log.as_bytes(), near.as_bytes()], true).is_some());
    }

    /// The address lines as `fmt` writes them (what [`render_address`] does by hand).
    fn reference(a: &AddressScan) -> String {
        use std::fmt::Write;
        let mut f = String::new();
        let iso = Iso;
        write!(
            f,
            "  {:<39} weight {:>3}, {:>3} ports, {:>6} packets, {} .. {}",
            a.ip,
            a.weight,
            a.distinct_ports,
            a.packets,
            iso(a.first),
            iso(a.last)
        )
        .unwrap();
        match (&a.ignored, &a.fired) {
            (Some(why), _) => write!(f, "  IGNORED: {why}").unwrap(),
            (None, Some(fs)) => {
                write!(
                    f,
                    "  FIRED ({}: weight {}, {} ports within the window) at {}",
                    fs.first.crossed,
                    fs.first.weight,
                    fs.first.ports,
                    iso(fs.first.at)
                )
                .unwrap();
                if fs.until > fs.first.at {
                    write!(f, ", still probing until {}", iso(fs.until)).unwrap();
                }
                if fs.times > 1 {
                    write!(f, ", crossed {} times", fs.times).unwrap();
                }
            }
            (None, None) => {}
        }
        writeln!(f).unwrap();
        f.push_str("     ");
        for (i, p) in a.ports.iter().take(40).enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{}/{} (", p.port, p.proto).unwrap();
            let name = p.name.as_deref();
            match (p.class, name) {
                (Class::Weighted, n) => write!(f, "{} {}", n.unwrap_or(""), p.weight).unwrap(),
                (Class::Unlisted, _) => f.push_str("unlisted"),
                (Class::Harmless, n) => write!(f, "{}, harmless", n.unwrap_or("")).unwrap(),
                (other, Some(n)) => write!(f, "{}, {n}", other.label()).unwrap(),
                (other, None) => f.push_str(other.label()),
            }
            f.push(')');
            if p.packets > 1 {
                write!(f, " x{}", p.packets).unwrap();
            }
        }
        let more = a.ports.len().saturating_sub(40) as u64 + a.more_ports;
        if more > 0 {
            write!(f, ", ... and {more} more ports (--json lists them)").unwrap();
        }
        writeln!(f).unwrap();
        f
    }

    fn arb_address() -> impl Strategy<Value = AddressScan> {
        let classes = [
            Class::Weighted,
            Class::Unlisted,
            Class::Harmless,
            Class::Reply,
            Class::Broadcast,
            Class::Accepted,
            Class::UnknownRule,
        ];
        let port = (
            any::<bool>(),
            any::<u16>(),
            prop_oneof![Just(1u64), any::<u64>()],
            0..classes.len(),
            proptest::option::of("[a-z-]{0,12}"),
            any::<u8>(),
        )
            .prop_map(move |(tcp, port, packets, c, name, weight)| PortScan {
                proto: if tcp { Proto::Tcp } else { Proto::Udp },
                port,
                packets,
                class: classes[c],
                name,
                weight,
            });
        let time = prop_oneof![
            1_600_000_000i64..1_900_000_000,
            -100_000_000_000i64..400_000_000_000,
        ];
        let fired = (
            time.clone(),
            any::<u32>(),
            any::<u32>(),
            any::<(bool, bool)>(),
            any::<u32>(),
            0i64..100_000,
        )
            .prop_map(|(at, weight, ports, (w, d), times, later)| FiredScan {
                first: Fired {
                    ip: IpAddr::from([192, 0, 2, 1]),
                    at,
                    weight,
                    ports,
                    crossed: Crossed {
                        weight: w,
                        distinct_ports: d,
                    },
                },
                times,
                until: at + later,
            });
        let ip = prop_oneof![
            any::<u32>().prop_map(|a| IpAddr::from(a.to_be_bytes())),
            any::<u128>().prop_map(|a| IpAddr::from(a.to_be_bytes())),
        ];
        (
            ip,
            (any::<u64>(), any::<u32>(), any::<u32>(), any::<u64>()),
            (time.clone(), time),
            proptest::option::of(Just("this host's own address")),
            proptest::collection::vec(port, 0..45),
            proptest::option::of(fired),
        )
            .prop_map(
                |(
                    ip,
                    (packets, weight, distinct_ports, more_ports),
                    (first, last),
                    ignored,
                    ports,
                    fired,
                )| {
                    AddressScan {
                        ip,
                        packets,
                        first,
                        last,
                        ignored,
                        weight,
                        distinct_ports,
                        ports,
                        more_ports,
                        fired,
                    }
                },
            )
    }

    proptest! {
        /// The hand-written address lines are `fmt`'s, byte for byte.
        #[test]
        fn address_lines_are_written_as_fmt_writes_them(a in arb_address()) {
            let mut out = String::new();
            render_address(&mut out, &a.head(), &a.port_views());
            prop_assert_eq!(out, reference(&a));
        }
    }

    #[test]
    fn an_address_of_many_ports_lists_each_once_with_its_packets() {
        // Two inline, then a list, then (past 32 more) a map.
        let mut log = String::new();
        for round in 0..3 {
            for p in 0..40u16 {
                log += &line(i64::from(round * 40 + p), "198.51.100.9", 20_000 + p);
            }
        }
        let r = scan_bytes(&[log.as_bytes()], &settings(), &HashSet::new()).unwrap();
        let a = &r.addresses[0];
        assert_eq!((a.packets, a.ports.len(), a.distinct_ports), (120, 40, 40));
        assert!(a.ports.iter().all(|p| p.packets == 3), "{a:?}");
        let mut ports: Vec<u16> = a.ports.iter().map(|p| p.port).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports, (20_000..20_040).collect::<Vec<_>>());
    }

    #[test]
    fn the_streamed_report_is_the_built_one() {
        let log = two_days() + &line(50, "2001:db8::7", 5060) + &line(51, "203.0.113.10", 22);
        let own = HashSet::from(["203.0.113.10".parse().unwrap()]);
        let streamed = scan_logs(
            Logs::Bytes(&[log.as_bytes()]),
            &settings(),
            &own,
            "x",
            false,
            Budget::DEFAULT,
        )
        .unwrap();
        let (text, json) = (
            streamed.to_string(),
            serde_json::to_string_pretty(&streamed).unwrap(),
        );
        let built = streamed.into_report().unwrap();
        assert_eq!(text, built.to_string());
        assert_eq!(json, serde_json::to_string_pretty(&built).unwrap());
        assert!(text.contains("IGNORED"), "{text}");
    }

    #[test]
    fn a_scan_parsed_in_a_thread_of_its_own_is_the_same() {
        let log = two_days() + &line(51, "203.0.113.10", 22);
        let own = HashSet::from(["203.0.113.10".parse().unwrap()]);
        let s = settings();
        let logs = [log.as_bytes(), log.as_bytes()];
        let b = Budget::DEFAULT;
        let here = scan_logs(Logs::Bytes(&logs), &s, &own, "x", false, b).unwrap();
        let there = scan_logs(Logs::Bytes(&logs), &s, &own, "x", true, b).unwrap();
        assert_eq!(here.into_report().unwrap(), there.into_report().unwrap());
        // Started over (the second copy is older than the windows dropped after the first),
        // in a thread as here.
        let (_, windows) = pass(&logs[..1], true).unwrap();
        assert!(windows < 200);
        assert!(pass(&logs, true).is_none());
        let late = line(30, "198.51.100.1", 23) + &log;
        let after = line(40, "198.51.100.1", 31337);
        let again = [late.as_bytes(), after.as_bytes()];
        let here = scan_logs(Logs::Bytes(&again), &s, &own, "x", false, b)
            .unwrap()
            .into_report()
            .unwrap();
        let there = scan_logs(Logs::Bytes(&again), &s, &own, "x", true, b)
            .unwrap()
            .into_report()
            .unwrap();
        assert_eq!(here, there);
        assert!(here
            .addresses
            .iter()
            .any(|a| a.ip.to_string() == "198.51.100.1"
                && a.fired.as_ref().is_some_and(|f| f.first.weight == 10)));
    }

    // -----------------------------------------------------------------------------------------
    // the listing on disk

    /// A packet from `src` (`tcp` or UDP) to `dpt`, `t` seconds after 2024-05-02 00:00:00 UTC.
    fn line_p(t: i64, src: &str, tcp: bool, dpt: u16) -> String {
        let d = crate::source::asterisk::rules::days_from_civil(2024, 5, 2) * 86_400 + t;
        let proto = if tcp { "TCP" } else { "UDP" };
        format!("{} pbx kernel: [UFW BLOCK] IN=eth0 OUT= MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:08:00 SRC={src} DST=203.0.113.10 LEN=44 TOS=0x00 PREC=0x00 TTL=241 ID=1 PROTO={proto} SPT=40000 DPT={dpt} LEN=24\n", Iso(d))
    }

    /// Text, JSON and the built report of a scan with `budget`, and how many runs the first
    /// pass spilled (0: all in memory).
    fn scan_with(logs: &[&[u8]], budget: Budget, threaded: bool) -> (String, String, ScanReport) {
        let own = HashSet::from(["203.0.113.10".parse().unwrap()]);
        let scan = scan_logs(Logs::Bytes(logs), &settings(), &own, "x", threaded, budget).unwrap();
        let text = scan.to_string();
        let mut written = Vec::new();
        scan.write_text(&mut written).unwrap();
        assert_eq!(text.as_bytes(), written);
        let json = serde_json::to_string_pretty(&scan).unwrap();
        // Written twice: the runs are read from their start each time.
        assert_eq!(text, scan.to_string());
        (text, json, scan.into_report().unwrap())
    }

    fn runs_spilled(logs: &[&[u8]], budget: Budget) -> usize {
        let s = settings();
        let cat = catalogue(&s).unwrap();
        let opts = PassOpts {
            drop_windows: true,
            threaded: false,
            budget,
            now: crate::clock::unix_now(),
        };
        let own = HashSet::from(["203.0.113.10".parse().unwrap()]);
        let done = super::pass(Logs::Bytes(logs), &cat, &own, &s, opts).unwrap();
        done.map_or(0, |d| d.runs.len())
    }

    /// Spilled with `budget` and all in memory, the report is the same, byte for byte.
    fn same_spilled(logs: &[&[u8]], budget: Budget) -> (String, ScanReport) {
        let (text, json, report) = scan_with(logs, Budget::DEFAULT, false);
        let (t2, j2, r2) = scan_with(logs, budget, false);
        assert_eq!(text, t2);
        assert_eq!(json, j2);
        assert_eq!(report, r2);
        (text, report)
    }

    const TINY: Budget = Budget {
        addresses: 3,
        ports: 8,
    };

    /// Sources seen over and over (each in many runs), IPv4 and IPv6, own; weighted, harmless
    /// and unlisted ports, TCP and UDP; a scanner crossing the threshold again and again; a
    /// source of more ports than a scan lists, hit in a shuffled order each round.
    fn busy_log() -> String {
        let mut log = String::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let weighted = [23u16, 22, 3389, 5060, 1524, 12345, 31337, 445, 113, 123, 80];
        let mut t = 0i64;
        for i in 0..6000u64 {
            t += (rnd() % 20) as i64;
            let r = rnd();
            let src = match r % 10 {
                0..=5 => format!("198.51.{}.{}", r % 3, (r >> 8) % 200),
                6 | 7 => format!("2001:db8::{:x}", (r >> 8) % 150),
                8 => "203.0.113.10".to_string(),
                _ => format!("192.0.2.{}", (r >> 8) % 4),
            };
            let port = match (r >> 16) % 3 {
                0 => weighted[((r >> 20) % weighted.len() as u64) as usize],
                _ => 1024 + ((r >> 24) % 20_000) as u16,
            };
            log += &line_p(t, &src, (r >> 40) % 4 != 0, port);
            if i % 700 == 0 {
                for (k, p) in [31337, 12345, 1524, 23].into_iter().enumerate() {
                    log += &line_p(t + k as i64, "192.0.2.99", true, p);
                }
            }
        }
        // 5,000 distinct ports (more than a scan lists), twice, shuffled each time, with hours
        // between (its window dropped, it is spilled while others come).
        for round in 0..2 {
            t += 3 * 3600;
            for k in 0..20 {
                log += &line_p(t, &format!("198.51.8.{}", k + 20 * round), true, 23);
            }
            let mut ports: Vec<u16> = (0..5000u16).map(|p| 2000 + p).collect();
            for i in (1..ports.len()).rev() {
                ports.swap(i, (rnd() % (i as u64 + 1)) as usize);
            }
            for (k, p) in ports.into_iter().enumerate() {
                t += 1;
                log += &line_p(t, "2001:db8:ffff::1", p % 2 == 0, p);
                if k % 97 == 0 {
                    log += &line_p(t, &format!("198.51.9.{}", k % 250), round == 0, 5060);
                }
            }
        }
        log
    }

    #[test]
    fn a_listing_spilled_to_disk_reports_what_memory_would_byte_for_byte() {
        let log = busy_log();
        let logs = [log.as_bytes()];
        assert_eq!(runs_spilled(&logs, Budget::DEFAULT), 0);
        assert!(
            runs_spilled(&logs, TINY) > 100,
            "{}",
            runs_spilled(&logs, TINY)
        );
        let (text, report) = same_spilled(&logs, TINY);
        for budget in [
            Budget {
                addresses: 1,
                ports: 0,
            },
            Budget {
                addresses: 64,
                ports: 1 << 20,
            },
            Budget {
                addresses: 1 << 20,
                ports: 100,
            },
        ] {
            same_spilled(&logs, budget);
        }
        // The cases it must cover are there.
        let many = report
            .addresses
            .iter()
            .find(|a| a.ip.to_string() == "2001:db8:ffff::1")
            .unwrap();
        // The first 4,096 of the first round listed, each hit in both; the rest counted.
        assert_eq!((many.ports.len(), many.more_ports), (SCAN_PORTS, 2 * 904));
        assert!(many.ports.iter().all(|p| p.packets == 2), "{many:?}");
        let scanner = report
            .addresses
            .iter()
            .find(|a| a.ip.to_string() == "192.0.2.99")
            .unwrap();
        assert!(
            scanner.fired.as_ref().is_some_and(|f| f.times > 3),
            "{scanner:?}"
        );
        assert!(text.contains("IGNORED"), "no own address");
        assert!(report
            .addresses
            .iter()
            .any(|a| a.ip.is_ipv6() && a.fired.is_none()));
        // Threaded, and spilled, the same.
        let (t2, _, _) = scan_with(&logs, TINY, true);
        assert_eq!(text, t2);
    }

    #[test]
    fn a_scan_that_starts_over_spills_afresh() {
        // As in `a_line_older_than_a_dropped_window_starts_the_scan_over`, spilled.
        let log = line(30, "198.51.100.1", 23) + &two_days();
        let late = line(40, "198.51.100.1", 31337);
        let logs = [log.as_bytes(), late.as_bytes()];
        let budget = Budget {
            addresses: 50,
            ports: 1000,
        };
        assert!(runs_spilled(&logs[..1], budget) > 10);
        let (_, report) = same_spilled(&logs, budget);
        let a = report
            .addresses
            .iter()
            .find(|a| a.ip.to_string() == "198.51.100.1")
            .unwrap();
        assert_eq!(a.fired.as_ref().map(|f| f.first.weight), Some(10), "{a:?}");
        // The second copy of the log is older than the windows dropped after the first.
        let log = two_days();
        same_spilled(&[log.as_bytes(), log.as_bytes()], budget);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Any log, spilled after every few addresses or not at all, reports the same.
        #[test]
        fn any_log_spilled_or_not_reports_the_same(
            pkts in proptest::collection::vec(
                (-30i64..200, 0u8..24, any::<bool>(), any::<bool>(), 0usize..14),
                0..300,
            ),
            addresses in 1usize..6,
            ports in 0usize..12,
        ) {
            let ports_at = [23u16, 22, 3389, 5060, 1524, 31337, 113, 123, 67, 40000, 40001, 40002, 9, 7];
            let mut t = 0;
            let mut log = String::new();
            for (dt, src, v6, tcp, p) in pkts {
                t += dt;
                let src = match (src, v6) {
                    (0, _) => "203.0.113.10".to_string(),
                    (s, false) => format!("198.51.100.{s}"),
                    (s, true) => format!("2001:db8::{s:x}"),
                };
                log += &line_p(t, &src, tcp, ports_at[p]);
            }
            let logs = [log.as_bytes()];
            let budget = Budget { addresses, ports };
            let (a, b) = (scan_with(&logs, Budget::DEFAULT, false), scan_with(&logs, budget, false));
            prop_assert_eq!(a.0, b.0);
            prop_assert_eq!(a.1, b.1);
        }
    }
}
