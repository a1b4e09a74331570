//! nftables sets and chains in sipban's own table `inet sipban`, driven through `nft -f -`.
//!
//! The nftables counterpart of [`super::ipset`] (`backend: nft`). Each configured set is two
//! nft sets of its family (`type ipv4_addr` / `ipv6_addr`): single addresses in a hash set
//! `<name>_addr` (`flags timeout`), prefixes in an interval set `<name>` (`flags
//! interval,timeout`), named after the configured set with `-` turned into `_`. Once `sipban
//! firewall install` ran, sipban's own base chain in the same table drops the sources of all
//! four sets with a counter: `input` (priority filter - 10), or `prerouting` (priority raw,
//! before connection tracking) with `--raw`. Each rule counts in a named counter
//! (`<set>_drops`), a table object that outlives the rule.
//!
//! A sync's apply is one `nft -f -` script for both families
//! ([`super::SetBackend::apply_both`]), and nft applies a script as one transaction: a full
//! replace (`flush set` + `add element`) or a diff (`delete element` + `add element`) of
//! either family is seen whole, with the other family's, or not at all, so a set is never
//! empty or partial and needs no temporary set. The script also proves the table was not
//! lost since the last complete apply (a mark element in the set [`MARK_SET`] is deleted and
//! re-added; the delete fails in a table `nft flush ruleset` removed), and when that fails
//! one more transaction refills every set. With `firewall install` recorded, both re-declare
//! the chain and its rules (counters kept, see above), so the rules are in place after every
//! apply by construction, and after a flush one script brings back table, sets and rules at
//! once. (The rule check after a sync would cost more than the sync: on nft 1.0.6 listing a
//! chain loads every element of the table first, 2-3 s at 262,144.)
//!
//! Why two sets per family instead of one interval set: on nft 1.0.6 (Debian 12) any command
//! on an interval set first loads all its elements, and a delete costs time in proportion to
//! the set. Measured in a namespace (one `nft -f` each): 1% of 65,536 addresses deleted and
//! 1% added takes 36-44 s in an interval set and 0.02-0.03 s in a hash set; one `add element` takes
//! 0.42 s (65,536) and 13 s (262,144) against 0.004 s and 0.008 s; a full replace 0.95 s /
//! 6.0 s against 0.27 s / 1.2 s. Addresses from detections and feeds are nearly all single
//! addresses, so the common diff costs its size, and prefixes (a few hundred, from feeds) stay
//! in the interval set, which refuses overlaps and merges nothing. The drop rules match both.
//!
//! Why JSON to read back (`nft -j list set`): on nft 1.0.6 it is about twice as fast as the
//! text listing, its timeouts are plain seconds, and it is parsed as a stream straight from
//! the pipe (typed, never a whole JSON tree), so a 262,144-entry set costs its entries and not
//! its 19 MB of text. A read costs more than a full replace of a hash set (0.46 s against
//! 0.27 s at 65,536), which is why a sync diffs against the mirror of its last apply
//! ([`super::SetBackend::diff_checks_itself`]): a delete of a member that is gone fails the
//! transaction, and the mark check catches a lost table; either way the fallback is a full
//! replace.
//!
//! An install of the single-set layout (before the hash sets) migrates by itself: its table
//! has no mark, so the first sync's transaction falls back to the full replace, which empties
//! the interval set of single addresses, fills the hash set and re-declares the rules, in one
//! transaction (the host is never unprotected).
//!
//! Rules this file keeps, and must never break:
//! - It touches nothing outside the table `inet sipban`: never `flush ruleset`, never another
//!   table or chain.
//! - Every address written is an [`IpNet`] formatted as [`net::display_net`] formats it (a
//!   single address as its address); no other text of outside origin reaches nft (set names
//!   are validated by the config).
//! - Interval sets refuse overlapping members: what it writes is made disjoint first (callers
//!   de-overlap desired entries with [`super::plan::make_disjoint`]; this file drops anything
//!   still covered, keeping the covering prefix).
//! - It never decides what to block and never enforces the cap.
//! - The mark is set afresh ([`Mark::Set`]) only by a transaction that replaced every set; a
//!   change of one family leaves it alone, so a table it cannot vouch for is refilled.

use super::ipset::{read_lossy, IpsetError, SetHeader, SetSpec};
use crate::config::sets::nft_set_name;
use crate::net::{self, Family, NetMap};
use ipnet::IpNet;
use serde::Deserialize;
use std::ffi::OsString;
use std::io::{self, BufReader, Write};
use std::process::{Command, Stdio};

/// sipban's table (family `inet`).
pub const TABLE: &str = "sipban";
/// The `set_type` of a [`SetHeader`] read from nft: the pair of a hash set of addresses and an
/// interval set of prefixes (see the top).
pub const SET_TYPE: &str = "nft addr+interval";
/// The set whose one element marks a table that sipban filled completely (see the top).
pub const MARK_SET: &str = "sipban_mark";
/// Suffix of the hash set holding a configured set's single addresses.
pub const ADDR_SUFFIX: &str = "_addr";
/// The entry count of a set in the nft survey: unknown (nft has no count short of a listing).
pub const ENTRIES_UNKNOWN: usize = usize::MAX;
/// Elements per `add element` line (nft quotes a failing line whole in its error).
const PER_LINE: usize = 256;

/// How to invoke nft. Default argv `["nft"]`.
#[derive(Clone, Debug)]
pub struct Nft {
    argv: Vec<OsString>,
    /// The configured names of the sets, v4 then v6 (for the survey); empty: no survey.
    names: Vec<String>,
    /// Where `firewall install` records its rules (`Nft::with_record`): read when a
    /// transaction refills every set, so a daemon follows a later install or remove.
    record_dir: Option<std::path::PathBuf>,
}

impl Default for Nft {
    fn default() -> Self {
        Self::new()
    }
}

/// A set read back: its header and members (prefix → seconds left, 0 = no timeout).
#[derive(Clone, Debug, Default)]
pub struct NftSet {
    pub header: SetHeader,
    pub members: NetMap<u32>,
}

fn set_type(family: Family) -> &'static str {
    match family {
        Family::V4 => "ipv4_addr",
        Family::V6 => "ipv6_addr",
    }
}

fn saddr(family: Family) -> &'static str {
    match family {
        Family::V4 => "ip saddr",
        Family::V6 => "ip6 saddr",
    }
}

/// The nft name of the hash set holding a configured set's single addresses.
pub fn addr_set_name(name: &str) -> String {
    format!("{}{ADDR_SUFFIX}", nft_set_name(name))
}

/// The nft names of a configured set's two sets: addresses (hash), prefixes (interval).
pub fn set_names(name: &str) -> [String; 2] {
    [addr_set_name(name), nft_set_name(name)]
}

/// A single address (it goes to the hash set), not a prefix.
fn is_host(n: &IpNet) -> bool {
    n.prefix_len() == n.max_prefix_len()
}

/// `add table` and `add set` lines for a configured set's two sets: idempotent, they create
/// what is missing.
pub fn declare_set(out: &mut dyn Write, name: &str, family: Family) -> io::Result<()> {
    let [addr, nets] = set_names(name);
    let ty = set_type(family);
    writeln!(
        out,
        "add table inet {TABLE}\n\
         add set inet {TABLE} {addr} {{ type {ty}; flags timeout; }}\n\
         add set inet {TABLE} {nets} {{ type {ty}; flags interval,timeout; }}"
    )
}

/// The mark set's declaration.
fn declare_mark(out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "add table inet {TABLE}\nadd set inet {TABLE} {MARK_SET} {{ type inet_service; }}"
    )
}

/// One family's part of a transaction.
pub enum Part {
    /// Declared only: the set is left as it is.
    Keep,
    /// Flushed and filled with exactly these entries.
    Replace(Vec<(IpNet, u32)>),
    /// These deletes, then these adds (or re-timings).
    Diff {
        adds: Vec<(IpNet, u32)>,
        dels: Vec<IpNet>,
    },
}

/// What a transaction does with the mark (see the top).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// Not touched: a change of one family (`ban`, the real-time pass, `restore`).
    Leave,
    /// Deleted and added back: the transaction fails if the table lost it.
    Check,
    /// Set afresh: every set was replaced.
    Set,
}

/// The element of the mark set.
const MARK: u16 = 1;

/// Elements as `add element` (with timeouts) or `delete element` lines.
fn write_elements(
    out: &mut dyn Write,
    verb: &str,
    set: &str,
    items: &mut dyn Iterator<Item = (IpNet, Option<u32>)>,
) -> io::Result<()> {
    let mut n = 0;
    for (net, timeout) in items {
        if n % PER_LINE == 0 {
            if n > 0 {
                writeln!(out, " }}")?;
            }
            write!(out, "{verb} element inet {TABLE} {set} {{ ")?;
        } else {
            write!(out, ", ")?;
        }
        // A single address as its address (what `display_net` writes, without a String).
        let shown: &dyn std::fmt::Display = if is_host(&net) { &net.addr() } else { &net };
        match timeout {
            Some(t) if t > 0 => write!(out, "{shown} timeout {t}s")?,
            _ => write!(out, "{shown}")?,
        }
        n += 1;
    }
    if n > 0 {
        writeln!(out, " }}")?;
    }
    Ok(())
}

/// `entries` in a scrambled (but deterministic) order: nft 1.0.6 loads an interval set from
/// elements in address order 2 to 4 times slower than from the same elements unordered
/// (262,144 entries: 20-24 s against 6-11 s, measured), so prefixes are never written sorted.
/// (A hash set loads as fast either way: 65,536 addresses in 0.30 s sorted or not, measured;
/// single addresses are written in address order, which spares this sort.)
fn scrambled(mut entries: Vec<(IpNet, u32)>) -> Vec<(IpNet, u32)> {
    entries.sort_unstable_by_key(|(n, _)| {
        let (_, bits, len) = net::sort_key(n);
        (bits ^ u128::from(len)).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835) >> 64
    });
    entries
}

/// `entries` of `family` only, sorted, each once, and disjoint (a prefix inside another listed
/// one is dropped; the covering one stays).
fn disjoint(family: Family, entries: &[(IpNet, u32)]) -> Vec<(IpNet, u32)> {
    let mut v: Vec<(IpNet, u32)> = entries
        .iter()
        .filter(|(n, _)| Family::of(n) == family)
        .map(|&(n, t)| (n.trunc(), t))
        .collect();
    v.sort_by(|a, b| net::cmp_net(&a.0, &b.0));
    v.dedup_by_key(|x| x.0);
    let mut kept: Option<IpNet> = None;
    v.retain(|(n, _)| {
        if let Some(k) = kept {
            if net::overlaps(&k, n) && k.prefix_len() <= n.prefix_len() {
                return false;
            }
        }
        kept = Some(*n);
        true
    });
    v
}

impl Nft {
    pub fn new() -> Self {
        Self::with_argv(vec![OsString::from("nft")])
    }

    /// Run nft through another command line (`["ip","netns","exec",NS,"nft"]`).
    pub fn with_argv(argv: Vec<OsString>) -> Self {
        Self {
            argv,
            names: Vec::new(),
            record_dir: None,
        }
    }

    fn command(&self, args: &[&str]) -> Result<Command, IpsetError> {
        let (program, rest) = self
            .argv
            .split_first()
            .ok_or_else(|| failed("nft", "the command line for nft is empty"))?;
        let mut cmd = Command::new(program);
        cmd.args(rest).args(args);
        Ok(cmd)
    }

    /// Run `nft -f -` with the script `write` produces (streamed, one transaction).
    pub fn run_script(
        &self,
        what: &str,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(), IpsetError> {
        let child = self
            .command(&["-f", "-"])?
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        let fed = super::ipset::feed(child, "nft", |w| write(w))?;
        if !fed.status.success() {
            return Err(classify(what, &fed.stderr));
        }
        fed.written
            .map_err(|e| failed(what, &format!("writing the script to nft: {e}")))
    }

    /// The survey of the sets this backend was opened for ([`Nft::for_sets`]), made without
    /// running nft: on nft 1.0.6 every command, even `nft list tables` or a terse listing,
    /// loads every element of every set first (about as long as a read-back: 13 s for
    /// 262,144 entries on a loaded machine), so a survey would cost what it saves. It states
    /// what the sets should be, count unknown; that is safe for its one use, the mirror: a
    /// plan against the mirror is either a full replace, which declares the table and sets
    /// and makes them exact whatever the kernel held, or a diff in the one transaction of
    /// [`super::SetBackend::apply_both`], which fails whole (and falls back to a full
    /// replace) when the table lost its mark or a deleted member is gone.
    pub fn survey(&self) -> Result<super::ipset::Snapshot, IpsetError> {
        let infos = self
            .names
            .iter()
            .zip([Family::V4, Family::V6])
            .map(|(n, f)| {
                (
                    n.clone(),
                    super::ipset::SetInfo {
                        header: SetHeader {
                            set_type: SET_TYPE.to_string(),
                            family: Some(f),
                            maxelem: None,
                            hashsize: None,
                            timeout_support: true,
                        },
                        entries: ENTRIES_UNKNOWN,
                        references: 0,
                    },
                )
            });
        Ok(super::ipset::Snapshot::from_infos(infos))
    }

    /// The same backend, knowing the configured names of its sets (for [`Nft::survey`]).
    pub fn for_sets(mut self, names: Vec<String>) -> Self {
        self.names = names;
        self
    }

    /// The same backend, re-declaring sipban's chain in a transaction that refills every set
    /// when `firewall install` recorded nft rules in `state_dir`; needs [`Nft::for_sets`].
    pub fn with_record(mut self, state_dir: &std::path::Path) -> Self {
        self.record_dir = Some(state_dir.to_path_buf());
        self
    }

    /// The chain to re-declare with the sets, as recorded now: v4 name, v6 name, raw.
    pub fn chains(&self) -> Option<(&str, &str, bool)> {
        let dir = self.record_dir.as_deref()?;
        let marker = super::rules::Marker::load(dir).ok()??;
        if marker.set_backend != crate::config::sets::BackendChoice::Nft {
            return None;
        }
        match self.names.as_slice() {
            [v4, v6] => Some((v4.as_str(), v6.as_str(), marker.raw)),
            _ => None,
        }
    }

    /// Run nft with `args` and return its stdout (small outputs: chains, tables).
    pub fn output(&self, args: &[&str]) -> Result<Option<String>, IpsetError> {
        let what = format!("nft {}", args.join(" "));
        let o = self
            .command(args)?
            .stdin(Stdio::null())
            .output()
            .map_err(spawn_error)?;
        let stderr = String::from_utf8_lossy(&o.stderr);
        if o.status.success() {
            return Ok(Some(String::from_utf8_lossy(&o.stdout).into_owned()));
        }
        if stderr.contains("No such file or directory") {
            return Ok(None);
        }
        Err(classify(&what, &stderr))
    }

    /// The configured set `name` read back: its two nft sets merged (see the top). `Ok(None)`
    /// when neither exists. The header says [`SET_TYPE`] only for the layout sipban writes:
    /// both sets there with the right type and flags, and no single address in the interval
    /// set (an install of the single-set layout reads as incompatible, and is replaced).
    pub fn read(&self, name: &str) -> Result<Option<NftSet>, IpsetError> {
        let [addr, nets] = set_names(name);
        let (a, n) = (self.read_one(&addr)?, self.read_one(&nets)?);
        if a.is_none() && n.is_none() {
            return Ok(None);
        }
        let family = a.iter().chain(&n).find_map(|s| s.header.family);
        let hosts_in_nets = n.as_ref().is_some_and(|s| s.members.keys().any(is_host));
        let layout = matches!((&a, &n), (Some(a), Some(n))
            if a.header.set_type == "nft hash"
                && n.header.set_type == "nft interval"
                && a.header.family == n.header.family
                && a.header.timeout_support
                && n.header.timeout_support)
            && !hosts_in_nets;
        let mut members = NetMap::default();
        for s in [a, n].into_iter().flatten() {
            members.extend(s.members);
        }
        let header = SetHeader {
            set_type: if layout {
                SET_TYPE.to_string()
            } else {
                "nft (another layout)".to_string()
            },
            family,
            maxelem: None,
            hashsize: None,
            timeout_support: layout,
        };
        Ok(Some(NftSet { header, members }))
    }

    /// `nft -j list set inet sipban SET` (an nft name), parsed as it streams. `Ok(None)` when
    /// the table or the set does not exist.
    fn read_one(&self, set: &str) -> Result<Option<NftSet>, IpsetError> {
        let what = format!("nft -j list set inet {TABLE} {set}");
        let mut child = self
            .command(&["-j", "list", "set", "inet", TABLE, set])?
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let (status, stderr, parsed) = std::thread::scope(|scope| {
            let errors = scope.spawn(move || read_lossy(stderr));
            let parsed = stdout.map(|pipe| {
                let mut r = BufReader::with_capacity(64 * 1024, pipe);
                let parsed: serde_json::Result<JTop> = serde_json::from_reader(&mut r);
                let _ = io::copy(&mut r, &mut io::sink());
                parsed
            });
            let status = child.wait().map_err(IpsetError::Io)?;
            Ok::<_, IpsetError>((status, errors.join().unwrap_or_default(), parsed))
        })?;
        if !status.success() {
            if stderr.contains("No such file or directory") {
                return Ok(None);
            }
            return Err(classify(&what, &stderr));
        }
        let top = match parsed {
            Some(Ok(t)) => t,
            Some(Err(e)) => return Err(failed(&what, &format!("unexpected output: {e}"))),
            None => return Err(failed(&what, "stdout was not captured")),
        };
        let jset = top
            .nftables
            .into_iter()
            .find_map(|i| i.set)
            .ok_or_else(|| failed(&what, "the listing holds no set"))?;
        jset.into_set().map(Some).map_err(|e| failed(&what, &e))
    }

    /// The set's header and entry count (a full listing: nft has no cheaper count).
    pub fn header(&self, name: &str) -> Result<Option<(SetHeader, usize)>, IpsetError> {
        Ok(self.read(name)?.map(|s| {
            let n = s.members.len();
            (s.header, n)
        }))
    }

    /// Make the set hold exactly `entries` in one transaction: declare table and sets, flush
    /// them, add everything. A set of another type is refused with what to do.
    pub fn replace(&self, spec: &SetSpec, entries: &[(IpNet, u32)]) -> Result<(), IpsetError> {
        let what = format!("nft -f - (replace set {})", nft_set_name(&spec.name));
        let parts = [(spec, Part::Replace(entries.to_vec()))];
        self.transaction(&what, &parts, Mark::Leave, None)
            .or_else(|e| self.refuse_incompatible(spec).and(Err(e)))
    }

    /// One transaction over `parts`, with the `mark` step first and, with `chains` (v4 name,
    /// v6 name, raw), sipban's chain and rules re-declared last.
    pub fn transaction(
        &self,
        what: &str,
        parts: &[(&SetSpec, Part)],
        mark: Mark,
        chains: Option<(&str, &str, bool)>,
    ) -> Result<(), IpsetError> {
        self.run_script(what, |w| {
            if mark != Mark::Leave {
                declare_mark(w)?;
            }
            for (spec, _) in parts {
                declare_set(w, &spec.name, spec.family)?;
            }
            match mark {
                Mark::Leave => {}
                Mark::Check => writeln!(
                    w,
                    "delete element inet {TABLE} {MARK_SET} {{ {MARK} }}\n\
                     add element inet {TABLE} {MARK_SET} {{ {MARK} }}"
                )?,
                Mark::Set => writeln!(
                    w,
                    "flush set inet {TABLE} {MARK_SET}\nadd element inet {TABLE} {MARK_SET} {{ {MARK} }}"
                )?,
            }
            for (spec, part) in parts {
                write_part(w, spec, part)?;
            }
            match chains {
                Some((v4, v6, raw)) => write_chains(w, v4, v6, raw),
                None => Ok(()),
            }
        })
    }

    /// An error saying what to do when one of `spec`'s sets exists with another type or flags.
    pub fn refuse_incompatible(&self, spec: &SetSpec) -> Result<(), IpsetError> {
        // Only after a failure (a listing of the hash set costs what its elements cost).
        for (set, flags) in set_names(&spec.name)
            .into_iter()
            .zip(["flags timeout", "flags interval,timeout"])
        {
            let Some(text) = self.output(&["-t", "list", "set", "inet", TABLE, &set])? else {
                continue;
            };
            let ok = text.contains(&format!("type {}", set_type(spec.family)))
                && text.lines().any(|l| l.trim() == flags);
            if !ok {
                return Err(failed(
                    &format!("nft set {set}"),
                    &format!(
                        "set {set} in table inet {TABLE} exists with another type or flags; \
                         run `sipban firewall remove` and `nft delete set inet {TABLE} {set}`, \
                         then `sipban sync` recreates it"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Delete `dels`, then add (or re-time) `adds`, in one transaction.
    pub fn diff(
        &self,
        spec: &SetSpec,
        adds: &[(IpNet, u32)],
        dels: &[IpNet],
    ) -> Result<(), IpsetError> {
        if adds.is_empty() && dels.is_empty() {
            return Ok(());
        }
        let what = format!("nft -f - (diff of set {})", nft_set_name(&spec.name));
        let part = Part::Diff {
            adds: adds.to_vec(),
            dels: dels.to_vec(),
        };
        self.transaction(&what, &[(spec, part)], Mark::Leave, None)
    }

    /// A diff that cannot fail on what the set holds now: deletes of entries that are gone
    /// (timed out since the read) are left out, adds inside a kept member are left out (they
    /// are dropped already), and members inside an add are deleted with it.
    pub fn diff_against_current(
        &self,
        spec: &SetSpec,
        adds: &[(IpNet, u32)],
        dels: &[IpNet],
    ) -> Result<(), IpsetError> {
        let current = self
            .read(&spec.name)?
            .map(|s| s.members)
            .unwrap_or_default();
        let mut dels: Vec<IpNet> = dels
            .iter()
            .map(IpNet::trunc)
            .filter(|n| current.contains_key(n))
            .collect();
        let gone: std::collections::HashSet<IpNet> = dels.iter().copied().collect();
        // Only prefixes can hold another member (single addresses sit in their own set).
        let kept: Vec<IpNet> = current
            .keys()
            .filter(|n| !gone.contains(n))
            .copied()
            .collect();
        let mut out = Vec::new();
        for &(n, t) in &disjoint(spec.family, adds) {
            if kept.iter().any(|k| *k != n && k.contains(&n)) {
                continue;
            }
            for k in kept.iter().filter(|k| **k != n && n.contains(*k)) {
                if !dels.contains(k) {
                    dels.push(*k);
                }
            }
            out.push((n, t));
        }
        self.diff(spec, &out, &dels)
    }
}

/// One family's part of a script: its sets flushed and filled, or its deletes and adds, each
/// element to the set of its kind (addresses to the hash set, prefixes to the interval set).
fn write_part(w: &mut dyn Write, spec: &SetSpec, part: &Part) -> io::Result<()> {
    let [addr, nets] = set_names(&spec.name);
    // Addresses in address order, prefixes scrambled (see [`scrambled`]).
    let add_both = |w: &mut dyn Write, entries: Vec<(IpNet, u32)>| -> io::Result<()> {
        let mut hosts = entries.iter().filter(|(n, _)| is_host(n));
        write_elements(
            w,
            "add",
            &addr,
            &mut hosts.by_ref().map(|&(n, t)| (n, Some(t))),
        )?;
        let prefixes = entries.into_iter().filter(|(n, _)| !is_host(n)).collect();
        let prefixes = scrambled(prefixes);
        write_elements(
            w,
            "add",
            &nets,
            &mut prefixes.iter().map(|&(n, t)| (n, Some(t))),
        )
    };
    match part {
        Part::Keep => Ok(()),
        Part::Replace(entries) => {
            writeln!(
                w,
                "flush set inet {TABLE} {addr}\nflush set inet {TABLE} {nets}"
            )?;
            add_both(w, disjoint(spec.family, entries))
        }
        Part::Diff { adds, dels } => {
            let dels: Vec<IpNet> = dels
                .iter()
                .filter(|n| Family::of(n) == spec.family)
                .map(IpNet::trunc)
                .collect();
            for (set, host) in [(&addr, true), (&nets, false)] {
                let mut d = dels
                    .iter()
                    .filter(|n| is_host(n) == host)
                    .map(|&n| (n, None));
                write_elements(w, "delete", set, &mut d)?;
            }
            add_both(w, disjoint(spec.family, adds))
        }
    }
}

/// `nft -j list set` as far as sipban reads it; other keys are skipped by serde.
#[derive(Deserialize)]
struct JTop {
    nftables: Vec<JItem>,
}

#[derive(Deserialize)]
struct JItem {
    #[serde(default)]
    set: Option<JSet>,
}

#[derive(Deserialize)]
struct JSet {
    #[serde(rename = "type")]
    ty: serde_json::Value,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    elem: Vec<JElem>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JElem {
    Timed { elem: JTimed },
    Bare(JVal),
}

#[derive(Deserialize)]
struct JTimed {
    val: JVal,
    #[serde(default)]
    expires: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JVal {
    Addr(String),
    Prefix { prefix: JPrefix },
    Range { range: (String, String) },
}

#[derive(Deserialize)]
struct JPrefix {
    addr: String,
    len: u8,
}

impl JVal {
    fn net(&self) -> Result<IpNet, String> {
        match self {
            JVal::Addr(a) => net::parse_net(a).map_err(|e| format!("bad element {a:?}: {e}")),
            JVal::Prefix { prefix } => {
                let text = format!("{}/{}", prefix.addr, prefix.len);
                net::parse_net(&text).map_err(|e| format!("bad element {text:?}: {e}"))
            }
            JVal::Range { range } => Err(format!(
                "range element {}-{} (added outside sipban; sipban writes prefixes only)",
                range.0, range.1
            )),
        }
    }
}

impl JSet {
    fn into_set(self) -> Result<NftSet, String> {
        let family = match self.ty.as_str() {
            Some("ipv4_addr") => Some(Family::V4),
            Some("ipv6_addr") => Some(Family::V6),
            _ => None,
        };
        let interval = self.flags.iter().any(|f| f == "interval");
        let timeout_support = self.flags.iter().any(|f| f == "timeout");
        let header = SetHeader {
            set_type: if interval { "nft interval" } else { "nft hash" }.to_string(),
            family,
            maxelem: None,
            hashsize: None,
            timeout_support,
        };
        let mut members = NetMap::default();
        members.reserve(self.elem.len());
        for e in &self.elem {
            let (v, left) = match e {
                JElem::Timed { elem } => (&elem.val, elem.expires.unwrap_or(0)),
                JElem::Bare(v) => (v, 0),
            };
            // A member about to expire reads as 0 s left; 0 means "no timeout", so count 1.
            let left = match (e, left) {
                (JElem::Timed { elem }, 0) if elem.expires.is_some() => 1,
                (_, l) => u32::try_from(l).unwrap_or(u32::MAX),
            };
            members.insert(v.net()?, left);
        }
        Ok(NftSet { header, members })
    }
}

fn failed(what: &str, message: &str) -> IpsetError {
    IpsetError::Failed {
        command: what.to_string(),
        line: None,
        message: message.to_string(),
    }
}

fn spawn_error(e: io::Error) -> IpsetError {
    if e.kind() == io::ErrorKind::NotFound {
        failed(
            "nft",
            "nft not found: install it (apt-get install nftables)",
        )
    } else {
        IpsetError::Io(e)
    }
}

/// nft's stderr as an error: its first lines (a failing line is quoted whole, so long lines
/// are cut).
fn classify(what: &str, stderr: &str) -> IpsetError {
    let mut message: String = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == ' '))
        .take(4)
        .collect::<Vec<_>>()
        .join("; ");
    if message.contains("exec of") && message.contains("No such file or directory") {
        return failed(what, "nft not found: install it (apt-get install nftables)");
    }
    if message.contains("Operation not permitted") {
        return IpsetError::PermissionDenied(message);
    }
    if message.len() > 600 {
        let mut cut = 600;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str(" ...");
    }
    if message.is_empty() {
        message = "nft failed and printed nothing".to_string();
    }
    failed(what, &message)
}

/// The named counter of the drop rule matching nft set `set`: a table object, so the
/// rule can be re-declared by every sync without losing what it counted.
pub fn counter_name(set: &str) -> String {
    format!("{set}_drops")
}

/// The drop rule lines of a chain for a family's configured set, one per nft set (addresses,
/// prefixes), as `nft list chain` prints them back.
pub fn rule_lines(family: Family, set_name: &str) -> [String; 2] {
    set_names(set_name).map(|s| {
        format!(
            "{} @{s} counter name \"{}\" drop comment \"sipban\"",
            saddr(family),
            counter_name(&s)
        )
    })
}

/// The chain sipban's rules live in: `input`, or `prerouting` with `raw`.
pub fn chain_name(raw: bool) -> &'static str {
    if raw {
        "prerouting"
    } else {
        "input"
    }
}

/// The script `firewall install` runs: table, both families' sets, the chain with its rules
/// (flushed first, so it is idempotent), and the other place's chain deleted if it exists.
pub fn rules_script(out: &mut dyn Write, v4: &str, v6: &str, raw: bool) -> io::Result<()> {
    declare_set(out, v4, Family::V4)?;
    declare_set(out, v6, Family::V6)?;
    write_chains(out, v4, v6, raw)
}

/// sipban's chain re-declared with its four rules (the sets must be declared before), and the
/// other place's chain deleted. The counters are declared (`add` keeps an existing one's
/// values), so re-declaring the rules loses nothing they counted.
fn write_chains(out: &mut dyn Write, v4: &str, v6: &str, raw: bool) -> io::Result<()> {
    for name in [v4, v6] {
        for set in set_names(name) {
            writeln!(out, "add counter inet {TABLE} {}", counter_name(&set))?;
        }
    }
    let (chain, other) = (chain_name(raw), chain_name(!raw));
    let hook = |c: &str| match c {
        "prerouting" => "type filter hook prerouting priority raw; policy accept;",
        _ => "type filter hook input priority filter - 10; policy accept;",
    };
    // `add` then `delete`: deletes the other chain whether or not it exists.
    writeln!(out, "add chain inet {TABLE} {other} {{ {} }}", hook(other))?;
    writeln!(out, "delete chain inet {TABLE} {other}")?;
    writeln!(out, "add chain inet {TABLE} {chain} {{ {} }}", hook(chain))?;
    writeln!(out, "flush chain inet {TABLE} {chain}")?;
    for (f, name) in [(Family::V4, v4), (Family::V6, v6)] {
        for line in rule_lines(f, name) {
            writeln!(out, "add rule inet {TABLE} {chain} {line}")?;
        }
    }
    Ok(())
}

/// The script `firewall remove` runs: both chains deleted (if they exist); the sets stay.
pub fn remove_script(out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "add table inet {TABLE}")?;
    for raw in [false, true] {
        let c = chain_name(raw);
        let hook = if raw {
            "type filter hook prerouting priority raw; policy accept;"
        } else {
            "type filter hook input priority filter - 10; policy accept;"
        };
        writeln!(out, "add chain inet {TABLE} {c} {{ {hook} }}")?;
        writeln!(out, "delete chain inet {TABLE} {c}")?;
    }
    Ok(())
}

/// The drop rules found in `table_text` (`nft -t list table inet sipban`: the chains and the
/// counters) in `chain`, for `set_name`: packets and bytes of their counters added up. `None`
/// unless both (addresses, prefixes) are there.
pub fn find_rule(
    table_text: &str,
    chain: &str,
    family: Family,
    set_name: &str,
) -> Option<(u64, u64)> {
    let chain_text = block(table_text, &format!("chain {chain} {{"))?;
    let mut total = (0, 0);
    for set in set_names(set_name) {
        let want = format!("{} @{set} counter", saddr(family));
        let line = chain_text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(&want) && l.contains(" drop"))?;
        let counted = |text: &str| {
            let words: Vec<&str> = text.split_whitespace().collect();
            let num = |key: &str| -> Option<u64> {
                let i = words.iter().position(|w| *w == key)?;
                words.get(i + 1)?.parse().ok()
            };
            (num("packets").unwrap_or(0), num("bytes").unwrap_or(0))
        };
        // A named counter's values are in its own block; an anonymous one's in the rule.
        let name = counter_name(&set);
        let (p, b) = if line.contains(&format!("counter name \"{name}\"")) {
            counted(block(table_text, &format!("counter {name} {{")).unwrap_or(""))
        } else {
            counted(line)
        };
        total = (total.0 + p, total.1 + b);
    }
    Some(total)
}

/// The text of the block that `header` opens in an `nft list` output, up to its closing brace
/// (one tab in: a table's object).
fn block<'a>(text: &'a str, header: &str) -> Option<&'a str> {
    let mut from = None;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if from.is_none() && line.trim() == header {
            from = Some(at);
        } else if from.is_some() && line.trim_end() == "\t}" {
            return text.get(from?..at + line.len());
        }
        at += line.len();
    }
    text.get(from?..)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn elements_are_written_in_lines_with_timeouts() {
        let mut out = Vec::new();
        let items: Vec<(IpNet, Option<u32>)> = (0..300u32)
            .map(|i| {
                (
                    IpNet::from(ipnet::Ipv4Net::from(std::net::Ipv4Addr::from(
                        0x2d00_0000 + i,
                    ))),
                    Some(60),
                )
            })
            .collect();
        write_elements(&mut out, "add", "s4", &mut items.into_iter()).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.starts_with(
            "add element inet sipban s4 { 45.0.0.0 timeout 60s, 45.0.0.1 timeout 60s"
        ));
    }

    #[test]
    fn disjoint_keeps_covering_prefixes_and_its_family() {
        let v = disjoint(
            Family::V4,
            &[
                (n("45.0.1.7/32"), 1),
                (n("45.0.0.0/16"), 2),
                (n("2001:db8::/32"), 3),
                (n("45.1.0.0/24"), 4),
            ],
        );
        assert_eq!(v, vec![(n("45.0.0.0/16"), 2), (n("45.1.0.0/24"), 4)]);
    }

    #[test]
    fn the_json_listing_is_parsed() {
        let text = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"set": {"family": "inet", "name": "t4", "table": "sipban", "type": "ipv4_addr", "handle": 1, "flags": ["interval", "timeout"], "elem": [{"elem": {"val": "45.0.0.1", "timeout": 86400, "expires": 86398}}, {"elem": {"val": {"prefix": {"addr": "45.1.0.0", "len": 24}}, "timeout": 60, "expires": 0}}, "45.2.0.1"]}}]}"#;
        let top: JTop = serde_json::from_str(text).unwrap();
        let set = top
            .nftables
            .into_iter()
            .find_map(|i| i.set)
            .unwrap()
            .into_set()
            .unwrap();
        assert_eq!(set.header.set_type, "nft interval");
        assert_eq!(set.header.family, Some(Family::V4));
        assert!(set.header.timeout_support);
        assert_eq!(set.members[&n("45.0.0.1/32")], 86398);
        assert_eq!(set.members[&n("45.1.0.0/24")], 1);
        assert_eq!(set.members[&n("45.2.0.1/32")], 0);
    }

    #[test]
    fn a_rule_is_found_with_its_counters() {
        let text = "table inet sipban {\n\tcounter sipban_v4_addr_drops {\n\t\tpackets 2 bytes 100\n\t}\n\n\tcounter sipban_v4_drops {\n\t\tpackets 3 bytes 180\n\t}\n\n\tchain input {\n\t\ttype filter hook input priority filter - 10; policy accept;\n\t\tip saddr @sipban_v4_addr counter name \"sipban_v4_addr_drops\" drop comment \"sipban\"\n\t\tip saddr @sipban_v4 counter name \"sipban_v4_drops\" drop comment \"sipban\"\n\t}\n}\n";
        assert_eq!(
            find_rule(text, "input", Family::V4, "sipban-v4"),
            Some((5, 280))
        );
        assert_eq!(find_rule(text, "input", Family::V6, "sipban-v6"), None);
        assert_eq!(find_rule(text, "prerouting", Family::V4, "sipban-v4"), None);
        // The single-set layout's one rule (an anonymous counter) is not enough.
        let old = "table inet sipban {\n\tchain input {\n\t\tip saddr @sipban_v4 counter packets 3 bytes 180 drop comment \"sipban\"\n\t}\n}\n";
        assert_eq!(find_rule(old, "input", Family::V4, "sipban-v4"), None);
        let script = {
            let mut out = Vec::new();
            rules_script(&mut out, "sipban-v4", "sipban-v6", false).unwrap();
            String::from_utf8(out).unwrap()
        };
        for set in ["sipban_v4_addr", "sipban_v4", "sipban_v6_addr", "sipban_v6"] {
            assert!(script.contains(&format!("add counter inet sipban {set}_drops\n")));
            assert!(script.contains(&format!("@{set} counter name \"{set}_drops\" drop")));
        }
    }
}
