//! The scan's listing on disk. Once the listing holds more than its [`Budget`], its slots
//! without an open window are sorted by address, written to an unnamed temporary file as a
//! run, and freed ([`super::Scanner`]'s `spill`). The report is then built from the runs in two
//! merges: by address ([`merge`]: an address's slots from several runs become one, exactly as
//! if it had never left memory), into runs sorted in report order; and those, merged in
//! report order while the report is written ([`Spilled::each`]).
//!
//! Runs are unnamed files (`O_TMPFILE` in the temporary directory: `$TMPDIR`, else /tmp): no
//! name ever exists, so nothing is left behind however the process ends (the release build
//! aborts on panic), and no other process can open or replace one by name. Records are
//! [`crate::pack`]-encoded in blocks of about [`BLOCK`] bytes, each written and read whole at
//! its offset (so the report can be written more than once).
//!
//! This module must never hold more than a block and a record per run, one address's ports
//! and one chunk of [`Budget::addresses`] addresses being sorted, and never change a report:
//! what it writes is what the listing in memory would have written, byte for byte.

use super::{
    port_view, settle, AddrAgg, AddrHead, Budget, Catalogue, Class, FiredScan, PortAgg, PortView,
};
use crate::pack;
use crate::source::kernlog::{key, Crossed, Fired};
use ipnet::IpNet;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

/// Bytes of records written or read at once.
const BLOCK: usize = 16 << 10;

/// Bytes of report-order records sorted in memory at most (besides [`Budget::addresses`]).
const CHUNK_BYTES: usize = 4 << 20;

/// An unnamed file in the temporary directory, readable and writable by this process alone.
fn unnamed_file() -> io::Result<File> {
    let dir = std::env::temp_dir();
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE | libc::O_EXCL | libc::O_CLOEXEC)
        .open(&dir)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "creating an unnamed temporary file in {} (set TMPDIR to a writable directory on a file system with O_TMPFILE): {e}",
                    dir.display()
                ),
            )
        })
}

fn ctx(what: &'static str) -> impl Fn(io::Error) -> io::Error {
    move |e| {
        io::Error::new(
            e.kind(),
            format!(
                "{what} a run in the temporary directory {}: {e}",
                std::env::temp_dir().display()
            ),
        )
    }
}

fn corrupt() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "a run read back is corrupt")
}

/// A block under way: a 4-byte length to fill in, then records.
fn new_block() -> pack::Writer {
    pack::Writer::with_header(&[0; 4], BLOCK + BLOCK / 4)
}

/// Runs, one after another in one unnamed file (created with the first run).
#[derive(Default)]
pub(super) struct Runs {
    file: Option<File>,
    end: u64,
    /// Where each run starts and ends.
    at: Vec<(u64, u64)>,
}

impl Runs {
    pub(super) fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.at.len()
    }

    /// A new run, at the end of the file.
    pub(super) fn writer(&mut self) -> io::Result<RunWriter<'_>> {
        if self.file.is_none() {
            self.file = Some(unnamed_file()?);
        }
        let start = self.end;
        Ok(RunWriter {
            runs: self,
            start,
            block: new_block(),
        })
    }

    /// Readers of the runs `from`, in order.
    fn readers(&self, from: std::ops::Range<usize>) -> Vec<RunReader<'_>> {
        let Some(file) = &self.file else {
            return Vec::new();
        };
        self.at[from]
            .iter()
            .map(|&(off, end)| RunReader {
                file,
                off,
                end,
                buf: Vec::new(),
                cur: pack::Cursor::default(),
            })
            .collect()
    }
}

/// Records into a run, a block at a time.
pub(super) struct RunWriter<'r> {
    runs: &'r mut Runs,
    start: u64,
    block: pack::Writer,
}

impl RunWriter<'_> {
    /// Where the current record is written.
    pub(super) fn rec(&mut self) -> &mut pack::Writer {
        &mut self.block
    }

    /// The current record is written.
    pub(super) fn end_rec(&mut self) -> io::Result<()> {
        if self.block.len() >= BLOCK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.block.len() <= 4 {
            return Ok(());
        }
        let Some(file) = &self.runs.file else {
            return Err(io::Error::other("internal: a run without its file"));
        };
        let mut b = std::mem::replace(&mut self.block, new_block()).finish();
        let n = u32::try_from(b.len() - 4).map_err(|_| io::Error::other("a block over 4 GiB"))?;
        b[..4].copy_from_slice(&n.to_le_bytes());
        file.write_all_at(&b, self.runs.end)
            .map_err(ctx("writing"))?;
        self.runs.end += b.len() as u64;
        Ok(())
    }

    /// The run is written.
    pub(super) fn finish(mut self) -> io::Result<()> {
        self.flush()?;
        self.runs.at.push((self.start, self.runs.end));
        Ok(())
    }
}

/// Records of a run, a block at a time from its start.
struct RunReader<'f> {
    file: &'f File,
    off: u64,
    end: u64,
    buf: Vec<u8>,
    cur: pack::Cursor,
}

impl RunReader<'_> {
    /// The next record, read by `decode`; `None` at the end of the run.
    fn next<T>(
        &mut self,
        decode: impl FnOnce(&mut pack::Reader<'_>) -> Option<T>,
    ) -> io::Result<Option<T>> {
        if pack::Reader::resume(&self.buf, self.cur).is_done() {
            if self.off >= self.end {
                return Ok(None);
            }
            let mut len = [0u8; 4];
            self.file
                .read_exact_at(&mut len, self.off)
                .map_err(ctx("reading"))?;
            let n = u32::from_le_bytes(len) as usize;
            if self.off + 4 + n as u64 > self.end {
                return Err(corrupt());
            }
            self.buf.clear();
            self.buf.resize(n, 0);
            self.file
                .read_exact_at(&mut self.buf, self.off + 4)
                .map_err(ctx("reading"))?;
            self.off += 4 + n as u64;
            self.cur = pack::Cursor::default();
        }
        let mut r = pack::Reader::resume(&self.buf, self.cur);
        let v = decode(&mut r).ok_or_else(corrupt)?;
        self.cur = r.cursor();
        Ok(Some(v))
    }
}

// ---------------------------------------------------------------------------------------------
// records

const CLASSES: [Class; 7] = [
    Class::Weighted,
    Class::Unlisted,
    Class::Harmless,
    Class::Reply,
    Class::Broadcast,
    Class::Accepted,
    Class::UnknownRule,
];

fn class_code(c: Class) -> u64 {
    CLASSES.iter().position(|x| *x == c).unwrap_or(0) as u64
}

fn put_ip(w: &mut pack::Writer, ip: IpAddr) {
    w.net(&IpNet::from(ip));
}

fn get_ip(r: &mut pack::Reader<'_>) -> Option<IpAddr> {
    Some(r.net()?.addr())
}

fn time(w: &mut pack::Writer, t: i64) {
    w.time(t, &mut 0);
}

fn get_time(r: &mut pack::Reader<'_>) -> Option<i64> {
    r.time(&mut 0)
}

fn get_u32(r: &mut pack::Reader<'_>) -> Option<u32> {
    u32::try_from(r.uint()?).ok()
}

fn put_port(w: &mut pack::Writer, p: &PortAgg) {
    w.uint(u64::from(p.key));
    w.uint(u64::from(p.packets));
    w.uint(u64::from(p.entry));
    w.uint(class_code(p.class));
}

fn get_ports(r: &mut pack::Reader<'_>, into: &mut Vec<PortAgg>) -> Option<()> {
    let n = usize::try_from(r.uint()?).ok()?;
    into.clear();
    for _ in 0..n {
        into.push(PortAgg {
            key: get_u32(r)?,
            packets: get_u32(r)?,
            entry: u16::try_from(r.uint()?).ok()?,
            class: *CLASSES.get(usize::try_from(r.uint()?).ok()?)?,
        });
    }
    Some(())
}

fn put_fired(w: &mut pack::Writer, f: Option<&FiredScan>) {
    let Some(f) = f else {
        w.uint(0);
        return;
    };
    w.uint(1);
    put_ip(w, f.first.ip);
    time(w, f.first.at);
    w.uint(u64::from(f.first.weight));
    w.uint(u64::from(f.first.ports));
    w.uint(u64::from(f.first.crossed.weight) | u64::from(f.first.crossed.distinct_ports) << 1);
    w.uint(u64::from(f.times));
    time(w, f.until);
}

fn get_fired(r: &mut pack::Reader<'_>) -> Option<Option<FiredScan>> {
    if r.uint()? == 0 {
        return Some(None);
    }
    let ip = get_ip(r)?;
    let at = get_time(r)?;
    let weight = get_u32(r)?;
    let ports = get_u32(r)?;
    let crossed = r.uint()?;
    Some(Some(FiredScan {
        first: Fired {
            ip,
            at,
            weight,
            ports,
            crossed: Crossed {
                weight: crossed & 1 != 0,
                distinct_ports: crossed & 2 != 0,
            },
        },
        times: get_u32(r)?,
        until: get_time(r)?,
    }))
}

/// Where each port of an address being merged is (once it has more than [`FEW_PORTS`]).
type PortIndex = HashMap<u32, usize, foldhash::fast::RandomState>;

/// Ports of an address being merged searched in order.
const FEW_PORTS: usize = 16;

/// One address's slot as spilled: what it saw between its first packet and its spill.
struct Seg {
    ip: IpAddr,
    first: i64,
    last: i64,
    packets: u32,
    ignored: u8,
    /// In the order first hit.
    ports: Vec<PortAgg>,
    fired: Option<FiredScan>,
}

/// A listing slot, as a run's record.
pub(super) fn put_seg(w: &mut pack::Writer, a: &AddrAgg, fired: Option<&FiredScan>) {
    put_ip(w, a.ip);
    time(w, a.first);
    time(w, a.last);
    w.uint(u64::from(a.packets));
    w.uint(u64::from(a.ignored));
    w.uint(a.ports_len() as u64);
    for p in a.ports() {
        put_port(w, p);
    }
    put_fired(w, fired);
}

/// A merged slot, as a run's record (as [`put_seg`] writes it).
fn put_merged(w: &mut pack::Writer, s: &Seg) {
    put_ip(w, s.ip);
    time(w, s.first);
    time(w, s.last);
    w.uint(u64::from(s.packets));
    w.uint(u64::from(s.ignored));
    w.uint(s.ports.len() as u64);
    for p in &s.ports {
        put_port(w, p);
    }
    put_fired(w, s.fired.as_ref());
}

fn get_seg(r: &mut pack::Reader<'_>) -> Option<Seg> {
    let ip = get_ip(r)?;
    let first = get_time(r)?;
    let last = get_time(r)?;
    let packets = get_u32(r)?;
    let ignored = u8::try_from(r.uint()?).ok()?;
    let mut ports = Vec::new();
    get_ports(r, &mut ports)?;
    Some(Seg {
        ip,
        first,
        last,
        packets,
        ignored,
        ports,
        fired: get_fired(r)?,
    })
}

/// A key that orders addresses as `IpAddr` does (every IPv4 address before every IPv6 one).
pub(super) fn order_key(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

/// What is left of the listing in memory at the end, as the last run.
pub(super) fn last_run(
    runs: &mut Runs,
    mut aggs: Vec<AddrAgg>,
    fired: &[FiredScan],
) -> io::Result<()> {
    aggs.sort_unstable_by_key(|a| a.ip);
    let mut run = runs.writer()?;
    for a in &aggs {
        put_seg(run.rec(), a, fired.get(a.fired as usize));
        run.end_rec()?;
    }
    run.finish()
}

impl Seg {
    /// Add a later slot of the same address: as if its packets had come to this slot (the
    /// first crossing and each port's first class stay, counts add up).
    fn add(&mut self, later: Seg, at: &mut PortIndex) {
        self.packets = self.packets.saturating_add(later.packets);
        self.first = self.first.min(later.first);
        self.last = self.last.max(later.last);
        self.fired = match (self.fired.take(), later.fired) {
            (Some(mut f), Some(g)) => {
                f.times = f.times.saturating_add(g.times);
                f.until = f.until.max(g.until);
                Some(f)
            }
            (f, g) => f.or(g),
        };
        for p in later.ports {
            // A few ports are searched in order; more, through `at`.
            let found = if at.is_empty() && self.ports.len() < FEW_PORTS {
                self.ports.iter().position(|q| q.key == p.key)
            } else {
                if at.is_empty() {
                    at.extend(self.ports.iter().enumerate().map(|(i, p)| (p.key, i)));
                }
                at.get(&p.key).copied()
            };
            match found {
                Some(i) => {
                    let q = &mut self.ports[i];
                    q.packets = q.packets.saturating_add(p.packets);
                }
                None => {
                    if !at.is_empty() {
                        at.insert(p.key, self.ports.len());
                    }
                    self.ports.push(p);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// the merges

/// The report's addresses on disk, in runs sorted in report order.
pub(super) struct Spilled {
    cat: Catalogue,
    reasons: Vec<&'static str>,
    /// At most [`FAN_IN`] of them.
    runs: Runs,
    /// Addresses, and how many crossed a threshold.
    pub(super) count: usize,
    pub(super) fired: usize,
}

/// Report order: crossed a threshold first, then by weight, distinct ports, packets (that is
/// `hi` and `packets`, descending), and address.
type Key = (Reverse<u64>, Reverse<u32>, IpAddr);

/// Addresses settled, gathered to be sorted into report order and written as a run.
struct Chunk {
    keys: Vec<(Key, u32, u32)>,
    bytes: Vec<u8>,
    runs: Runs,
    limit: usize,
}

impl Chunk {
    fn push(&mut self, key: Key, rec: &[u8]) -> io::Result<()> {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(rec);
        self.keys.push((key, start, self.bytes.len() as u32));
        if self.keys.len() >= self.limit || self.bytes.len() >= CHUNK_BYTES {
            self.write()?;
        }
        Ok(())
    }

    fn write(&mut self) -> io::Result<()> {
        if self.keys.is_empty() {
            return Ok(());
        }
        self.keys.sort_unstable_by_key(|k| k.0);
        let mut run = self.runs.writer()?;
        for (key, s, e) in self.keys.drain(..) {
            put_head(run.rec(), key, &self.bytes[s as usize..e as usize]);
            run.end_rec()?;
        }
        self.bytes.clear();
        run.finish()
    }
}

/// An address's slots, merged, as the report shows it: its key and its record.
fn settled<'a>(cat: &'a Catalogue, s: &Seg, views: &mut Vec<PortView<'a>>) -> (Key, Vec<u8>) {
    let (weight, distinct, more) = settle(cat, s.ports.iter(), s.ignored != 0, views);
    let hi = u64::from(s.fired.is_some()) << 33 | u64::from(weight) << 13 | u64::from(distinct);
    let mut w = pack::Writer::default();
    time(&mut w, s.first);
    time(&mut w, s.last);
    w.uint(u64::from(s.ignored));
    w.uint(u64::from(weight));
    w.uint(u64::from(distinct));
    w.uint(u64::from(more));
    // The listed ports, in the order the report lists them.
    let listed = views.iter().map(|v| PortAgg {
        key: key(v.proto, v.port),
        packets: u32::try_from(v.packets).unwrap_or(u32::MAX),
        entry: v.entry,
        class: v.class,
    });
    w.uint(views.len() as u64);
    for p in listed {
        put_port(&mut w, &p);
    }
    put_fired(&mut w, s.fired.as_ref());
    ((Reverse(hi), Reverse(s.packets), s.ip), w.finish())
}

/// Runs merged at once at most: a merge holds a block and a record of each.
const FAN_IN: usize = 64;

/// The addresses of the runs `from` (spilled in that order) in address order, each address's
/// records merged into one (earlier runs first), into `sink`.
fn merge_segs(
    runs: &Runs,
    from: std::ops::Range<usize>,
    sink: &mut dyn FnMut(Seg) -> io::Result<()>,
) -> io::Result<()> {
    let mut readers = runs.readers(from);
    let mut heads: Vec<Option<Seg>> = Vec::with_capacity(readers.len());
    // The next address of each run (and the run: an address's earlier records come first).
    let mut heap = BinaryHeap::new();
    for (i, r) in readers.iter_mut().enumerate() {
        let s = r.next(get_seg)?;
        if let Some(s) = &s {
            heap.push(Reverse((s.ip, i)));
        }
        heads.push(s);
    }
    let mut at = PortIndex::default();
    let mut acc: Option<Seg> = None;
    while let Some(Reverse((ip, i))) = heap.pop() {
        let seg = heads[i].take().ok_or_else(corrupt)?;
        heads[i] = readers[i].next(get_seg)?;
        if let Some(s) = &heads[i] {
            heap.push(Reverse((s.ip, i)));
        }
        match &mut acc {
            Some(a) if a.ip == ip => a.add(seg, &mut at),
            _ => {
                if let Some(a) = acc.replace(seg) {
                    at.clear();
                    sink(a)?;
                }
            }
        }
    }
    match acc {
        Some(a) => sink(a),
        None => Ok(()),
    }
}

/// Merge consecutive runs, [`FAN_IN`] at a time, into fewer, until at most [`FAN_IN`] are
/// left; `merge` merges a range of runs into a writer.
fn narrow(
    mut runs: Runs,
    merge: impl Fn(&Runs, std::ops::Range<usize>, &mut RunWriter<'_>) -> io::Result<()>,
) -> io::Result<Runs> {
    while runs.len() > FAN_IN {
        let mut next = Runs::default();
        for start in (0..runs.len()).step_by(FAN_IN) {
            let mut w = next.writer()?;
            merge(&runs, start..(start + FAN_IN).min(runs.len()), &mut w)?;
            w.finish()?;
        }
        // The wider level's file is closed (and gone) here.
        runs = next;
    }
    Ok(runs)
}

/// Merge the listing's runs (in the order spilled; the last is what stayed in memory) by
/// address, and sort the addresses into report order, in runs of at most `budget` addresses.
pub(super) fn merge(
    cat: Catalogue,
    reasons: Vec<&'static str>,
    runs: Runs,
    budget: Budget,
) -> io::Result<Spilled> {
    let runs = narrow(runs, |runs, from, w| {
        merge_segs(runs, from, &mut |s| {
            put_merged(w.rec(), &s);
            w.end_rec()
        })
    })?;
    let mut chunk = Chunk {
        keys: Vec::new(),
        bytes: Vec::new(),
        runs: Runs::default(),
        limit: budget.addresses.max(1),
    };
    let (mut count, mut fired) = (0, 0);
    let mut views = Vec::new();
    merge_segs(&runs, 0..runs.len(), &mut |a| {
        count += 1;
        fired += usize::from(a.fired.is_some());
        let (k, rec) = settled(&cat, &a, &mut views);
        chunk.push(k, &rec)
    })?;
    drop(views);
    drop(runs);
    chunk.write()?;
    let runs = narrow(chunk.runs, |runs, from, w| {
        merge_heads(runs, from, |k, body| {
            put_head(w.rec(), k, body);
            w.end_rec()
        })
    })?;
    Ok(Spilled {
        cat,
        reasons,
        runs,
        count,
        fired,
    })
}

/// A report-order record: its key, then its body.
fn put_head(w: &mut pack::Writer, (Reverse(hi), Reverse(packets), ip): Key, body: &[u8]) {
    w.uint(hi);
    w.uint(u64::from(packets));
    put_ip(w, ip);
    w.bytes(body);
}

/// A report-order record's key, its body copied into `body`.
fn get_head(r: &mut pack::Reader<'_>, body: &mut Vec<u8>) -> Option<Key> {
    let hi = r.uint()?;
    let packets = get_u32(r)?;
    let ip = get_ip(r)?;
    body.clear();
    body.extend_from_slice(r.bytes()?);
    Some((Reverse(hi), Reverse(packets), ip))
}

/// The report-order records of the runs `from`, merged in report order, into `sink`.
fn merge_heads<E, F>(runs: &Runs, from: std::ops::Range<usize>, mut sink: F) -> Result<(), E>
where
    E: From<io::Error>,
    F: FnMut(Key, &[u8]) -> Result<(), E>,
{
    let mut readers = runs.readers(from);
    let mut bodies: Vec<Vec<u8>> = vec![Vec::new(); readers.len()];
    let mut heap = BinaryHeap::new();
    for (i, r) in readers.iter_mut().enumerate() {
        let body = &mut bodies[i];
        if let Some(k) = r.next(|r| get_head(r, body))? {
            heap.push(Reverse((k, i)));
        }
    }
    while let Some(Reverse((k, i))) = heap.pop() {
        sink(k, &bodies[i])?;
        let body = &mut bodies[i];
        if let Some(k) = readers[i].next(|r| get_head(r, body))? {
            heap.push(Reverse((k, i)));
        }
    }
    Ok(())
}

impl Spilled {
    /// Every address in report order, with its ports as the report lists them, into `f`.
    pub(super) fn each<E>(
        &self,
        on_io: impl Fn(io::Error) -> E,
        mut f: impl FnMut(&AddrHead<'_>, &[PortView<'_>]) -> Result<(), E>,
    ) -> Result<(), E> {
        /// An error of `f`, or of reading the runs.
        enum Failed<E> {
            Io(io::Error),
            Sink(E),
        }
        impl<E> From<io::Error> for Failed<E> {
            fn from(e: io::Error) -> Self {
                Failed::Io(e)
            }
        }
        let mut ports = Vec::new();
        let mut views = Vec::new();
        let done = merge_heads(&self.runs, 0..self.runs.len(), |k, body| {
            let (head, fired) = self.body(k, body, &mut ports).ok_or_else(corrupt)?;
            views.clear();
            views.extend(ports.iter().map(|p| port_view(&self.cat, p)));
            let head = AddrHead {
                fired: fired.as_ref(),
                ..head
            };
            f(&head, &views).map_err(Failed::Sink)
        });
        match done {
            Ok(()) => Ok(()),
            Err(Failed::Io(e)) => Err(on_io(e)),
            Err(Failed::Sink(e)) => Err(e),
        }
    }

    /// An address's record: its head (but its crossings), its listed ports, its crossings.
    fn body(
        &self,
        (Reverse(_), Reverse(packets), ip): Key,
        body: &[u8],
        ports: &mut Vec<PortAgg>,
    ) -> Option<(AddrHead<'static>, Option<FiredScan>)> {
        let mut r = pack::Reader::new(body);
        let first = get_time(&mut r)?;
        let last = get_time(&mut r)?;
        let ignored = match r.uint()? {
            0 => None,
            n => Some(*self.reasons.get(usize::try_from(n).ok()? - 1)?),
        };
        let weight = get_u32(&mut r)?;
        let distinct_ports = get_u32(&mut r)?;
        let more = get_u32(&mut r)?;
        get_ports(&mut r, ports)?;
        let fired = get_fired(&mut r)?;
        let head = AddrHead {
            ip,
            packets: u64::from(packets),
            first,
            last,
            ignored,
            weight,
            distinct_ports,
            more_ports: u64::from(more),
            fired: None,
        };
        Some((head, fired))
    }
}
