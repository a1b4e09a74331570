//! nftables sets and chains in sipban's own table `inet sipban`, driven through `nft -f -`.
//!
//! The nftables counterpart of [`super::ipset`] (`backend: nft`): one interval set per family
//! (`type ipv4_addr` / `ipv6_addr`, `flags interval,timeout`, named after the configured set
//! with `-` turned into `_`), and, once `sipban firewall install` ran, sipban's own base chains
//! in the same table that drop their sources with a counter: `input` (priority filter - 10),
//! or `prerouting` (priority raw, before connection tracking) with `--raw`.
//!
//! Every change is one `nft -f -` script, and nft applies a script as one transaction: a full
//! replace (`flush set` + `add element`) or a diff (`delete element` + `add element`) is seen
//! whole or not at all, so the live set is never empty or partial and needs no temporary set.
//!
//! Why JSON to read back (`nft -j list set`): on nft 1.0.6 it is about twice as fast as the
//! text listing (0.38 s against 0.66 s for 65,536 entries), its timeouts are plain seconds,
//! and it is parsed as a stream straight from the pipe (typed, never a whole JSON tree), so a
//! 262,144-entry set costs its entries and not its 19 MB of text.
//!
//! Why a diff with many deletes becomes a full replace: nft 1.0.6 (Debian 12) deletes an
//! element of an interval set in time proportional to the set (about 75 ms each at 65,536
//! entries, measured), so past [`DEL_IN_PLACE_MAX`] deletes a replace of the whole set is
//! faster; it is still one transaction.
//!
//! Rules this file keeps, and must never break:
//! - It touches nothing outside the table `inet sipban`: never `flush ruleset`, never another
//!   table or chain.
//! - Every address written is an [`IpNet`] formatted by [`display_net`]; no other text of
//!   outside origin reaches nft (set names are validated by the config).
//! - Interval sets refuse overlapping members: what it writes is made disjoint first (callers
//!   de-overlap desired entries with [`super::plan::make_disjoint`]; this file drops anything
//!   still covered, keeping the covering prefix).
//! - It never decides what to block and never enforces the cap.

use super::ipset::{read_lossy, IpsetError, SetHeader, SetSpec};
use crate::config::sets::nft_set_name;
use crate::net::{self, display_net, Family, NetMap};
use ipnet::IpNet;
use serde::Deserialize;
use std::ffi::OsString;
use std::io::{self, BufReader, Write};
use std::process::{Command, Stdio};

/// sipban's table (family `inet`).
pub const TABLE: &str = "sipban";
/// The `set_type` of a [`SetHeader`] read from nft: an interval set.
pub const SET_TYPE: &str = "nft interval";
/// Deletes applied in place; a diff with more is applied as a full replace (see the top).
pub const DEL_IN_PLACE_MAX: usize = 16;
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

/// `add table` and `add set` lines: idempotent, they create what is missing.
pub fn declare_set(out: &mut dyn Write, name: &str, family: Family) -> io::Result<()> {
    writeln!(
        out,
        "add table inet {TABLE}\nadd set inet {TABLE} {} {{ type {}; flags interval,timeout; }}",
        nft_set_name(name),
        set_type(family)
    )
}

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
        match timeout {
            Some(t) if t > 0 => write!(out, "{} timeout {t}s", display_net(&net))?,
            _ => write!(out, "{}", display_net(&net))?,
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
/// (262,144 entries: 20-24 s against 6-11 s, measured), so what is written is never sorted.
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
    /// plan against the mirror spares the read-back only when it is a full replace, which
    /// declares the table and set and makes the set exact whatever the kernel held.
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

    /// `nft -j list set inet sipban NAME`, parsed as it streams. `Ok(None)` when the table
    /// or the set does not exist.
    pub fn read(&self, name: &str) -> Result<Option<NftSet>, IpsetError> {
        let set = nft_set_name(name);
        let what = format!("nft -j list set inet {TABLE} {set}");
        let mut child = self
            .command(&["-j", "list", "set", "inet", TABLE, &set])?
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

    /// Make the set hold exactly `entries` in one transaction: declare table and set, flush
    /// the set, add everything. A set of another type is refused with what to do.
    pub fn replace(&self, spec: &SetSpec, entries: &[(IpNet, u32)]) -> Result<(), IpsetError> {
        let entries = scrambled(disjoint(spec.family, entries));
        let set = nft_set_name(&spec.name);
        let done = self.run_script(&format!("nft -f - (replace set {set})"), |w| {
            declare_set(w, &spec.name, spec.family)?;
            writeln!(w, "flush set inet {TABLE} {set}")?;
            write_elements(
                w,
                "add",
                &set,
                &mut entries.iter().map(|&(n, t)| (n, Some(t))),
            )
        });
        // Only after a failure: is it a set of another type (then say what to do)?
        done.or_else(|e| self.refuse_incompatible(spec).and(Err(e)))
    }

    fn refuse_incompatible(&self, spec: &SetSpec) -> Result<(), IpsetError> {
        // Cheap when the table is missing; a listing otherwise, but only on this rare path's
        // callers (replace), whose own cost is a full listing's order anyway.
        let set = nft_set_name(&spec.name);
        let Some(text) = self.output(&["-t", "list", "set", "inet", TABLE, &set])? else {
            return Ok(());
        };
        let ok = text.contains(&format!("type {}", set_type(spec.family)))
            && text.contains("flags interval,timeout");
        if ok {
            return Ok(());
        }
        Err(failed(
            &format!("nft set {set}"),
            &format!(
                "set {set} in table inet {TABLE} exists with another type or flags; \
                 run `sipban firewall remove` and `nft delete set inet {TABLE} {set}`, then \
                 `sipban sync` recreates it"
            ),
        ))
    }

    /// Delete `dels`, then add (or re-time) `adds`, in one transaction.
    pub fn diff(
        &self,
        spec: &SetSpec,
        adds: &[(IpNet, u32)],
        dels: &[IpNet],
    ) -> Result<(), IpsetError> {
        let adds = scrambled(disjoint(spec.family, adds));
        let dels: Vec<IpNet> = dels
            .iter()
            .filter(|n| Family::of(n) == spec.family)
            .map(IpNet::trunc)
            .collect();
        if adds.is_empty() && dels.is_empty() {
            return Ok(());
        }
        let set = nft_set_name(&spec.name);
        self.run_script(&format!("nft -f - (diff of set {set})"), |w| {
            declare_set(w, &spec.name, spec.family)?;
            write_elements(w, "delete", &set, &mut dels.iter().map(|&n| (n, None)))?;
            write_elements(w, "add", &set, &mut adds.iter().map(|&(n, t)| (n, Some(t))))
        })
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
            set_type: if interval {
                SET_TYPE.to_string()
            } else {
                format!("nft {}", self.ty)
            },
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

/// The drop rule line of a chain for a family's set (what `nft list chain` prints back, minus
/// its counter values).
pub fn rule_line(family: Family, set_name: &str) -> String {
    format!(
        "{} @{} counter drop comment \"sipban\"",
        saddr(family),
        nft_set_name(set_name)
    )
}

/// The chain sipban's rules live in: `input`, or `prerouting` with `raw`.
pub fn chain_name(raw: bool) -> &'static str {
    if raw {
        "prerouting"
    } else {
        "input"
    }
}

/// The script `firewall install` runs: table, both sets, the chain with both rules (flushed
/// first, so it is idempotent), and the other place's chain deleted if it exists.
pub fn rules_script(out: &mut dyn Write, v4: &str, v6: &str, raw: bool) -> io::Result<()> {
    declare_set(out, v4, Family::V4)?;
    declare_set(out, v6, Family::V6)?;
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
        writeln!(out, "add rule inet {TABLE} {chain} {}", rule_line(f, name))?;
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

/// Each drop rule found in `chain_text` (`nft list chain` output) for `set_name`: packets and
/// bytes of its counter. `None` when the rule is not there.
pub fn find_rule(chain_text: &str, family: Family, set_name: &str) -> Option<(u64, u64)> {
    let want = format!("{} @{} counter", saddr(family), nft_set_name(set_name));
    for line in chain_text.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix(&want) else {
            continue;
        };
        if !line.contains(" drop") {
            continue;
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        let num = |key: &str| {
            words
                .iter()
                .position(|w| *w == key)
                .and_then(|i| words.get(i + 1))
                .and_then(|v| v.parse().ok())
        };
        return Some((num("packets").unwrap_or(0), num("bytes").unwrap_or(0)));
    }
    None
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
        assert_eq!(set.header.set_type, SET_TYPE);
        assert_eq!(set.header.family, Some(Family::V4));
        assert!(set.header.timeout_support);
        assert_eq!(set.members[&n("45.0.0.1/32")], 86398);
        assert_eq!(set.members[&n("45.1.0.0/24")], 1);
        assert_eq!(set.members[&n("45.2.0.1/32")], 0);
    }

    #[test]
    fn a_rule_is_found_with_its_counters() {
        let text = "table inet sipban {\n\tchain input {\n\t\ttype filter hook input priority filter - 10; policy accept;\n\t\tip saddr @sipban_v4 counter packets 3 bytes 180 drop comment \"sipban\"\n\t}\n}\n";
        assert_eq!(find_rule(text, Family::V4, "sipban-v4"), Some((3, 180)));
        assert_eq!(find_rule(text, Family::V6, "sipban-v6"), None);
    }
}
