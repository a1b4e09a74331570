//! Kernel ipsets, read and changed over netlink ([`netlink`]), with the `ipset` command-line tool
//! (`save`, `list -t`, `-exist restore`) as the fallback.
//!
//! This file is the only code in sipban that reads or changes kernel sets. It does three things:
//! read a set back ([`Ipset::read`], [`Ipset::header`]), apply a small diff as one batch
//! ([`Ipset::apply_diff`]), and rebuild a set atomically ([`Ipset::rebuild`]: fill a temporary set,
//! then `swap` it with the live one, all in one batch).
//!
//! A batch is a list of restore lines ([`Batch`]) whichever way it goes. Why netlink for them:
//! `ipset restore` parses each line through `getaddrinfo`, about 0.85 s of its 1 s for 262,144
//! entries, while the kernel's own work is about 0.16 s (`bench/sync.sh`); reading a
//! 65,536-entry set back over netlink moved a 1% diff's plan step from about 160 ms to about
//! 45 ms. Why the tool is kept: sets of types whose members [`netlink`] does not decode,
//! wrappers given to [`Ipset::with_argv`] (tests watch and break batches that way), and a
//! kernel that does not speak the netlink dialect encoded in [`netlink`]: the same batch then
//! goes through the tool, and a warning says why.
//!
//! Rules this file keeps, and must never break:
//! - Every address written to ipset is an [`IpNet`] formatted by [`display_net`], checked for the
//!   set's family first: ipset resolves text it cannot parse through DNS.
//! - One netlink exchange per few hundred entries, or one process per batch; never one per
//!   address. The batch is streamed, never built as one big string.
//! - In a diff, deletes come before adds, so the live set never holds more than the larger of
//!   its sizes before and after the batch: the cap is a ceiling at every instant, and the kernel
//!   enforces it too (`maxelem` is the cap). A batch cut short may leave the set smaller; the
//!   caller checks the count afterwards and rebuilds.
//! - The live set is never destroyed while it can be swapped, and never emptied: a rebuild fills
//!   `<name>-tmp` first. A set that a firewall rule references is never destroyed.
//! - It never decides what to block and never enforces the cap: callers do ("Hash is full" must
//!   never be flow control; the kernel's `maxelem` is only the last guarantee).

use crate::net::{display_net, parse_net, Family};
use ipnet::IpNet;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};

/// Longest timeout ipset accepts, in seconds (about 24.8 days).
pub const MAX_TIMEOUT: u32 = 2_147_483;
// Set names are part of the config schema (checked when the config loads).
pub use crate::config::sets::{validate_set_name, MAX_NAME_LEN, TMP_SUFFIX};

const NO_SUCH_SET: &str = "The set with the given name does not exist";
const IN_USE: &str = "in use by a kernel component";
/// Bytes buffered before a write to ipset's stdin (about 1,500 lines).
const PIPE_BUFFER: usize = 64 * 1024;

/// How to invoke ipset. Default argv `["ipset"]`; tests pass `["ip","netns","exec",NS,"ipset"]`.
#[derive(Clone, Debug)]
pub struct Ipset {
    argv: Vec<OsString>,
    /// Batches go to the kernel over netlink ([`netlink`]) rather than through the program;
    /// only for the plain `ipset` of [`Ipset::new`], so a wrapper given to
    /// [`Ipset::with_argv`] sees every batch.
    netlink: bool,
}

mod netlink;

/// The set sipban wants: always `hash:net` with timeout support (default timeout 0, permanent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetSpec {
    pub name: String,
    pub family: Family,
    pub maxelem: u32,
    pub hashsize: u32,
}

impl SetSpec {
    /// The temporary set a rebuild fills: `name` + `-tmp`. Fits the kernel's limit whenever
    /// `name` passes [`validate_set_name`].
    pub fn tmp_name(&self) -> String {
        format!("{}{TMP_SUFFIX}", self.name)
    }
}

/// A set's header as the kernel reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetHeader {
    /// For example `hash:net` or `hash:ip`.
    pub set_type: String,
    pub family: Option<Family>,
    pub maxelem: Option<u32>,
    /// The kernel's current hash size: it grows with the set, so it is not compared.
    pub hashsize: Option<u32>,
    pub timeout_support: bool,
}

impl SetHeader {
    /// True when this set can simply be updated in place for `spec`: type `hash:net`, the same
    /// family, timeout support and the same maxelem. (The hash size is not compared: the kernel
    /// grows it as the set fills.)
    pub fn matches(&self, spec: &SetSpec) -> bool {
        // An nftables interval set has no maxelem (sipban enforces the cap itself).
        if self.set_type == super::nft::SET_TYPE {
            return self.family == Some(spec.family) && self.timeout_support;
        }
        self.swappable_with(spec) && self.timeout_support && self.maxelem == Some(spec.maxelem)
    }

    /// True when the kernel lets this set be swapped with one created for `spec` (same type and
    /// family; maxelem, hash size and timeout support may differ).
    fn swappable_with(&self, spec: &SetSpec) -> bool {
        self.set_type == "hash:net" && self.family == Some(spec.family)
    }

    fn describe(&self) -> String {
        match self.family {
            Some(f) => format!("{} family {}", self.set_type, family_word(f)),
            None => self.set_type.clone(),
        }
    }
}

/// Header, entry count and reference count (`ipset list -t NAME`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetInfo {
    pub header: SetHeader,
    pub entries: usize,
    /// How many kernel objects (iptables rules, list:set sets) use the set. A referenced set
    /// cannot be destroyed, only swapped.
    pub references: u32,
}

/// Headers and entry counts of all sets at one instant (`ipset list -t`).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Set name → what its block said, or why it could not be read.
    sets: std::collections::HashMap<String, Result<SetInfo, String>>,
}

impl Snapshot {
    fn parse(text: &str) -> Snapshot {
        let mut sets = std::collections::HashMap::new();
        let mut blocks: Vec<(&str, usize)> = Vec::new();
        let mut at = 0;
        for line in text.split_inclusive('\n') {
            if let Some(name) = line.strip_prefix("Name:") {
                blocks.push((name.trim(), at));
            }
            at += line.len();
        }
        for (i, &(name, start)) in blocks.iter().enumerate() {
            let end = blocks.get(i + 1).map_or(text.len(), |b| b.1);
            sets.insert(name.to_string(), parse_list_terse(&text[start..end], name));
        }
        Snapshot { sets }
    }

    /// A snapshot of the given sets (the nft backend's survey, [`super::nft::Nft::survey`]).
    pub fn from_infos(infos: impl IntoIterator<Item = (String, SetInfo)>) -> Snapshot {
        Snapshot {
            sets: infos.into_iter().map(|(n, i)| (n, Ok(i))).collect(),
        }
    }

    /// Whether a set of this name exists.
    pub fn has(&self, name: &str) -> bool {
        self.sets.contains_key(name)
    }

    /// Header, entry count and references of `name`; `Ok(None)` when there is no such set.
    pub fn info(&self, name: &str) -> Result<Option<&SetInfo>, IpsetError> {
        match self.sets.get(name) {
            None => Ok(None),
            Some(Ok(info)) => Ok(Some(info)),
            Some(Err(e)) => Err(IpsetError::Parse(e.clone())),
        }
    }
}

/// A set read back from the kernel (`ipset save NAME`).
#[derive(Clone, Debug, Default)]
pub struct KernelSet {
    pub header: SetHeader,
    /// net -> remaining timeout seconds (0 = no timeout)
    pub members: crate::net::NetMap<u32>,
}

/// What went wrong talking to ipset, worded for the admin who has to fix it.
#[derive(Debug)]
pub enum IpsetError {
    /// The `ipset` program is not installed (or not on `PATH`).
    NotInstalled,
    /// The kernel refused: not root and no CAP_NET_ADMIN. Holds ipset's message.
    PermissionDenied(String),
    /// ipset ran and failed, or sipban refused to run it. `line` is the batch line ipset named.
    Failed {
        command: String,
        line: Option<usize>,
        message: String,
    },
    /// Starting ipset or talking to it through its pipes failed.
    Io(io::Error),
    /// ipset printed something this module does not understand.
    Parse(String),
}

impl fmt::Display for IpsetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpsetError::NotInstalled => {
                f.write_str("ipset not found: install it (apt-get install ipset)")
            }
            IpsetError::PermissionDenied(m) => write!(
                f,
                "ipset was refused ({m}): sipban needs root or CAP_NET_ADMIN to change kernel sets"
            ),
            IpsetError::Failed {
                command,
                line: Some(n),
                message,
            } => write!(f, "{command} failed at line {n}: {message}"),
            IpsetError::Failed {
                command,
                line: None,
                message,
            } => write!(f, "{command} failed: {message}"),
            IpsetError::Io(e) => write!(f, "running ipset: {e}"),
            IpsetError::Parse(m) => write!(f, "unexpected output from ipset: {m}"),
        }
    }
}

impl std::error::Error for IpsetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IpsetError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl Default for Ipset {
    fn default() -> Self {
        Self::new()
    }
}

impl Ipset {
    /// The kernel over netlink, with `ipset` from `PATH` as the fallback.
    pub fn new() -> Self {
        Self {
            argv: vec![OsString::from("ipset")],
            netlink: true,
        }
    }

    /// Run ipset through another command line, for example
    /// `["ip", "netns", "exec", NS, "ipset"]`. Arguments are appended to it.
    pub fn with_argv(argv: Vec<OsString>) -> Self {
        Self {
            argv,
            netlink: false,
        }
    }

    /// The set's header and members (over netlink, or `ipset save NAME` parsed). `Ok(None)` when
    /// the set does not exist.
    pub fn read(&self, name: &str) -> Result<Option<KernelSet>, IpsetError> {
        let what = format!("ipset save {name}");
        check_any_name(&what, name)?;
        if self.netlink {
            if let Some(done) = through_netlink(netlink::list(name, true)) {
                return done.map(|found| found.map(|l| l.set));
            }
        }
        let (done, parsed) = self.run_reading(&["save", name], |out| {
            let mut parser = SaveParser::new(name);
            let mut buf = Vec::with_capacity(128);
            loop {
                buf.clear();
                match out.read_until(b'\n', &mut buf) {
                    Ok(0) => break,
                    Ok(_) => parser.line(&String::from_utf8_lossy(&buf)),
                    Err(e) => return Err(IpsetError::Io(e)),
                }
            }
            Ok(parser)
        })?;
        if !done.status.success() {
            if done.stderr.contains(NO_SUCH_SET) {
                return Ok(None);
            }
            return Err(classify(&what, &done.stderr, done.status, None));
        }
        parsed?.finish().map(Some).map_err(IpsetError::Parse)
    }

    /// Header and member count only (`ipset list -t NAME`); `Ok(None)` when missing.
    pub fn header(&self, name: &str) -> Result<Option<(SetHeader, usize)>, IpsetError> {
        Ok(self.info(name)?.map(|i| (i.header, i.entries)))
    }

    /// Header, member count and reference count (over netlink, or `ipset list -t NAME`);
    /// `Ok(None)` when missing.
    pub fn info(&self, name: &str) -> Result<Option<SetInfo>, IpsetError> {
        let what = format!("ipset list -t {name}");
        check_any_name(&what, name)?;
        if self.netlink {
            if let Some(done) = through_netlink(netlink::list(name, false)) {
                return done.map(|found| found.map(|l| l.info));
            }
        }
        let out = self.output(&["list", "-t", name])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            if stderr.contains(NO_SUCH_SET) {
                return Ok(None);
            }
            return Err(classify(&what, &stderr, out.status, None));
        }
        parse_list_terse(&String::from_utf8_lossy(&out.stdout), name)
            .map(Some)
            .map_err(IpsetError::Parse)
    }

    /// Every set's header and entry count from one listing (over netlink, or one `ipset list -t`
    /// for all the sets a run looks at, instead of one per set and question).
    pub fn snapshot(&self) -> Result<Snapshot, IpsetError> {
        self.snapshot_start().finish()
    }

    /// Start [`Ipset::snapshot`] now and read it later. Over netlink it is read at once (about a
    /// millisecond); through the tool, `ipset list -t` runs on another core while the caller
    /// works.
    pub fn snapshot_start(&self) -> PendingSnapshot {
        if self.netlink {
            if let Some(done) = through_netlink(netlink::list_all()) {
                return PendingSnapshot(Pending::Done(done.map(Snapshot::from_infos)));
            }
        }
        let started = self.command(&["list", "-t"]).and_then(|mut c| {
            c.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(spawn_error)
        });
        PendingSnapshot(match started {
            Ok(child) => Pending::Running(child),
            Err(e) => Pending::Done(Err(e)),
        })
    }
}

/// A snapshot under way (see [`Ipset::snapshot_start`]): an `ipset list -t` running, or a
/// netlink listing already read. Dropped unread, a running listing is stopped and reaped (a
/// daemon must not collect zombies).
pub struct PendingSnapshot(Pending);

enum Pending {
    Running(std::process::Child),
    Done(Result<Snapshot, IpsetError>),
    Taken,
}

impl Drop for PendingSnapshot {
    fn drop(&mut self) {
        if let Pending::Running(mut child) = std::mem::replace(&mut self.0, Pending::Taken) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl PendingSnapshot {
    /// Wait for the listing and parse it.
    pub fn finish(mut self) -> Result<Snapshot, IpsetError> {
        let child = match std::mem::replace(&mut self.0, Pending::Taken) {
            Pending::Running(child) => child,
            Pending::Done(done) => return done,
            Pending::Taken => {
                return Err(IpsetError::Io(io::Error::other(
                    "the listing was already read",
                )))
            }
        };
        let out = child.wait_with_output().map_err(IpsetError::Io)?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(classify("ipset list -t", &stderr, out.status, None));
        }
        Ok(Snapshot::parse(&String::from_utf8_lossy(&out.stdout)))
    }
}

impl Ipset {
    /// Destroy the leftover temporary set of `spec` when `snapshot` shows one (from a run
    /// killed between swap and destroy). Never touches the live set.
    pub fn destroy_leftover_tmp_in(
        &self,
        spec: &SetSpec,
        snapshot: &Snapshot,
    ) -> Result<bool, IpsetError> {
        let tmp = spec.tmp_name();
        if !snapshot.has(&tmp) {
            return Ok(false);
        }
        self.destroy_tmp(&tmp)
    }

    /// Destroy the leftover temporary set of `spec` (from a run killed between swap and
    /// destroy), if there is one. Never touches the live set.
    pub fn destroy_leftover_tmp(&self, spec: &SetSpec) -> Result<bool, IpsetError> {
        let tmp = spec.tmp_name();
        check_any_name("cleanup", &tmp)?;
        if !self.list_names()?.contains(&tmp) {
            return Ok(false);
        }
        self.destroy_tmp(&tmp)
    }

    fn destroy_tmp(&self, tmp: &str) -> Result<bool, IpsetError> {
        check_any_name("cleanup", tmp)?;
        self.destroy_exist(tmp)?;
        Ok(true)
    }

    /// Destroy set `name` if it exists (`-exist`): one batch of one line.
    fn destroy_exist(&self, name: &str) -> Result<(), IpsetError> {
        self.run_batch(&Batch {
            head: vec![Line::Destroy(name)],
            set: name,
            adds: &[],
            dels: &[],
            tail: Vec::new(),
        })
    }

    /// The names of every set (over netlink, or `ipset list -n`).
    pub fn list_names(&self) -> Result<Vec<String>, IpsetError> {
        if self.netlink {
            if let Some(done) = through_netlink(netlink::list_all()) {
                return done.map(|sets| sets.into_iter().map(|(name, _)| name).collect());
            }
        }
        let out = self.output(&["list", "-n"])?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(classify("ipset list -n", &stderr, out.status, None));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// One `ipset -exist restore` batch on stdin: all `dels` first, then all `adds` (each
    /// `add NAME net timeout T`), so the set never holds more than the larger of its sizes
    /// before and after. Re-adding a present entry sets its timeout to the new value. The
    /// caller guarantees the set exists with a compatible type and that current - dels + adds
    /// stays within maxelem. Nothing runs when both lists
    /// are empty. Timeouts are clamped to 1..=[`MAX_TIMEOUT`] (see [`clamp_timeout`]); every
    /// entry is checked against the spec's family before ipset starts.
    pub fn apply_diff(
        &self,
        spec: &SetSpec,
        adds: &[(IpNet, u32)],
        dels: &[IpNet],
    ) -> Result<(), IpsetError> {
        let what = format!("update of set {}", spec.name);
        check_spec(&what, spec)?;
        check_entries(&what, spec, adds.iter().map(|(n, _)| n).chain(dels))?;
        if adds.is_empty() && dels.is_empty() {
            return Ok(());
        }
        let batch = Batch {
            head: Vec::new(),
            set: &spec.name,
            adds,
            dels,
            tail: Vec::new(),
        };
        self.run_batch(&batch)
    }

    /// Atomic rebuild in one `ipset -exist restore` batch: destroy a leftover `<name>-tmp`, create
    /// it afresh (hash:net, the spec's family, maxelem and hashsize, timeout support), add every
    /// entry, then `swap` it with the live set and destroy it, or `rename` it when there is no
    /// live set. The live set is never empty or partial at any instant.
    ///
    /// A live set that cannot be swapped (another type such as hash:ip, or another family) is
    /// destroyed right before the rename, in the same batch, when nothing references it; when a
    /// firewall rule references it the rebuild stops before changing anything, with an error
    /// naming the set. If the batch fails, the live set is left as it was and the temporary set
    /// is removed (best effort).
    ///
    /// `entries` is the whole new content: an empty slice leaves an empty live set, so callers
    /// must not rebuild from a failed fetch. Timeouts are clamped as in [`Ipset::apply_diff`].
    pub fn rebuild(&self, spec: &SetSpec, entries: &[(IpNet, u32)]) -> Result<(), IpsetError> {
        let live = self.info(&spec.name)?;
        self.rebuild_known(spec, entries, live.as_ref())
    }

    /// [`Ipset::rebuild`] when the live set's header is already known (from a
    /// [`Snapshot`] taken this run): one `ipset list` process fewer.
    pub fn rebuild_known(
        &self,
        spec: &SetSpec,
        entries: &[(IpNet, u32)],
        live_info: Option<&SetInfo>,
    ) -> Result<(), IpsetError> {
        let what = format!("rebuild of set {}", spec.name);
        check_spec(&what, spec)?;
        check_entries(&what, spec, entries.iter().map(|(n, _)| n))?;
        let tmp = spec.tmp_name();
        let live = spec.name.as_str();
        let tail = match live_info {
            None => vec![Line::Rename(&tmp, live)],
            Some(info) if info.header.swappable_with(spec) => {
                vec![Line::Swap(&tmp, live), Line::Destroy(&tmp)]
            }
            Some(info) if info.references > 0 => {
                return Err(IpsetError::Failed {
                    command: what,
                    line: None,
                    message: format!(
                        "set {live} is {} and cannot be swapped with a hash:net family {} \
                         set, and it cannot be replaced because it is referenced by a \
                         firewall rule or a list:set ({} reference(s)). Remove the rule that uses \
                         {live} (for example `iptables -D INPUT -m set --match-set {live} src -j \
                         DROP`), or configure another set name, and run again",
                        info.header.describe(),
                        family_word(spec.family),
                        info.references
                    ),
                });
            }
            Some(_) => vec![Line::Destroy(live), Line::Rename(&tmp, live)],
        };
        let batch = Batch {
            head: vec![
                Line::Destroy(&tmp),
                Line::Create(&tmp, spec),
                Line::Flush(&tmp),
            ],
            set: &tmp,
            adds: entries,
            dels: &[],
            tail,
        };
        let err = match self.run_batch(&batch) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let IpsetError::Failed {
            command,
            line,
            mut message,
        } = err
        else {
            return Err(err);
        };
        if message.contains(IN_USE) {
            let culprit = line.and_then(|n| batch.line(n));
            let set = if culprit.as_deref() == Some(format!("destroy {live}").as_str()) {
                live
            } else {
                tmp.as_str()
            };
            message.push_str(&format!(
                ". Set {set} is referenced by a firewall rule, so it cannot be destroyed; remove \
                 the rule that uses it and run again"
            ));
        }
        // Best effort: the batch stopped before or at the swap, so the live set is untouched and
        // the temporary set only holds a partial copy.
        let _ = self.destroy_exist(&tmp);
        Err(IpsetError::Failed {
            command,
            line,
            message,
        })
    }

    fn command(&self, args: &[&str]) -> Result<Command, IpsetError> {
        let (program, rest) = self.argv.split_first().ok_or_else(|| {
            IpsetError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the command line for ipset is empty",
            ))
        })?;
        let mut cmd = Command::new(program);
        cmd.args(rest).args(args);
        Ok(cmd)
    }

    /// Run with no input and capture the (small) output.
    fn output(&self, args: &[&str]) -> Result<Output, IpsetError> {
        self.command(args)?
            .stdin(Stdio::null())
            .output()
            .map_err(spawn_error)
    }

    /// Run with no input, passing stdout to `consume` as it arrives (stderr is collected on a
    /// second thread so neither pipe can fill up and stall ipset).
    fn run_reading<T>(
        &self,
        args: &[&str],
        consume: impl FnOnce(&mut dyn BufRead) -> T,
    ) -> Result<(Finished, T), IpsetError> {
        let mut child = self
            .command(args)?
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        std::thread::scope(|scope| {
            let errors = scope.spawn(move || read_lossy(stderr));
            let value = match stdout {
                Some(pipe) => {
                    let mut reader = BufReader::new(pipe);
                    let value = consume(&mut reader);
                    // Drain whatever `consume` left, so ipset never blocks on a full pipe.
                    let _ = io::copy(&mut reader, &mut io::sink());
                    value
                }
                None => consume(&mut io::empty()),
            };
            let status = child.wait().map_err(IpsetError::Io)?;
            let stderr = errors.join().unwrap_or_default();
            Ok((Finished { status, stderr }, value))
        })
    }

    /// A batch over netlink when this is the plain `ipset`; through the program when a wrapper
    /// was given, or when this kernel does not speak the dialect [`netlink`] encodes (a warning
    /// says why).
    fn run_batch(&self, batch: &Batch<'_>) -> Result<(), IpsetError> {
        if !self.netlink {
            return self.run_restore(batch);
        }
        match through_netlink(netlink::run(batch)) {
            Some(done) => done,
            None => self.run_restore(batch),
        }
    }

    /// Stream `batch` into one `ipset -exist restore`. If ipset stops early (its stdin closes and
    /// our write fails with EPIPE), its own message, with the line number, is what is reported.
    fn run_restore(&self, batch: &Batch<'_>) -> Result<(), IpsetError> {
        let what = "ipset restore";
        let child = self
            .command(&["-exist", "restore"])?
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        let fed = feed(child, "ipset", |w| batch.write_to(w))?;
        if !fed.status.success() {
            return Err(classify(what, &fed.stderr, fed.status, Some(batch)));
        }
        fed.written.map_err(|e| {
            IpsetError::Io(io::Error::new(
                e.kind(),
                format!("writing the batch to ipset restore: {e}"),
            ))
        })
    }
}

/// What a netlink call did, or `None` when the tool must do it instead (a set type whose
/// members [`netlink`] does not decode, quietly; a kernel that speaks another dialect, with a
/// warning).
fn through_netlink<T>(result: Result<T, netlink::NlError>) -> Option<Result<T, IpsetError>> {
    match result {
        Ok(v) => Some(Ok(v)),
        Err(netlink::NlError::Ipset(e)) => Some(Err(e)),
        Err(netlink::NlError::OtherType) => None,
        Err(netlink::NlError::Unsupported(why)) => {
            tracing::warn!(
                "kernel ipset over netlink is not usable here ({why}); using the ipset tool"
            );
            None
        }
    }
}

/// What a tool fed on its stdin did: its exit status, its stderr, and whether writing to it
/// succeeded (a tool that stops early closes the pipe; its own message then says why).
pub(super) struct Fed {
    pub status: ExitStatus,
    pub stderr: String,
    pub written: io::Result<()>,
}

/// Stream what `write` produces into a spawned `child`'s stdin (buffered; the pipe is closed
/// when `write` returns, which ends the tool's input) while its stderr is read on a second
/// thread, so that neither side can block the other; then wait for it. `tool` names it in
/// the one error of our own.
pub(super) fn feed(
    mut child: Child,
    tool: &str,
    write: impl FnOnce(&mut BufWriter<ChildStdin>) -> io::Result<()>,
) -> Result<Fed, IpsetError> {
    let stdin = child.stdin.take();
    let stderr = child.stderr.take();
    std::thread::scope(|scope| {
        let errors = scope.spawn(move || read_lossy(stderr));
        let written = match stdin {
            Some(pipe) => {
                let mut w = BufWriter::with_capacity(PIPE_BUFFER, pipe);
                write(&mut w).and_then(|()| w.flush())
                // `w` drops here, closing the pipe.
            }
            None => Err(io::Error::other(format!("{tool}'s stdin was not captured"))),
        };
        let status = child.wait().map_err(IpsetError::Io)?;
        Ok(Fed {
            status,
            stderr: errors.join().unwrap_or_default(),
            written,
        })
    })
}

struct Finished {
    status: ExitStatus,
    stderr: String,
}

pub(super) fn read_lossy(pipe: Option<impl Read>) -> String {
    let mut buf = Vec::new();
    if let Some(mut p) = pipe {
        let _ = p.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn spawn_error(e: io::Error) -> IpsetError {
    if e.kind() == io::ErrorKind::NotFound {
        IpsetError::NotInstalled
    } else {
        IpsetError::Io(e)
    }
}

/// Turn a failed run's stderr into an error. `batch` (for restores) lets the message quote the
/// line ipset stopped at.
fn classify(what: &str, stderr: &str, status: ExitStatus, batch: Option<&Batch<'_>>) -> IpsetError {
    let message = stderr
        .lines()
        .map(strip_version_prefix)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    // `ip netns exec` (and similar wrappers) report a missing program this way.
    if message.contains("exec of") && message.contains("No such file or directory") {
        return IpsetError::NotInstalled;
    }
    if message.contains("Operation not permitted") || message.contains("Permission denied") {
        return IpsetError::PermissionDenied(message);
    }
    if message.is_empty() {
        return IpsetError::Failed {
            command: what.to_owned(),
            line: None,
            message: format!("ipset exited with {status} and printed nothing"),
        };
    }
    if let Some((line, rest)) = error_in_line(&message) {
        let quoted = batch.and_then(|b| b.line(line));
        let message = match quoted {
            Some(input) => format!("{rest} (input: `{input}`)"),
            None => rest.to_owned(),
        };
        return IpsetError::Failed {
            command: what.to_owned(),
            line: Some(line),
            message,
        };
    }
    IpsetError::Failed {
        command: what.to_owned(),
        line: None,
        message,
    }
}

/// `ipset v7.17: message` -> `message`.
fn strip_version_prefix(line: &str) -> &str {
    match line
        .strip_prefix("ipset v")
        .and_then(|r| r.split_once(": "))
    {
        Some((_, rest)) => rest,
        None => line,
    }
}

/// `Error in line 12: message` -> `(12, "message")`.
fn error_in_line(message: &str) -> Option<(usize, &str)> {
    let start = message.find("Error in line ")? + "Error in line ".len();
    let (number, rest) = message[start..].split_once(':')?;
    Some((number.trim().parse().ok()?, rest.trim()))
}

/// Names that reach ipset as arguments: any existing set may be read, so this is looser than
/// [`validate_set_name`], but never empty, too long, an option, or blank-separated.
fn check_any_name(what: &str, name: &str) -> Result<(), IpsetError> {
    let bad = if name.is_empty() {
        Some("the set name is empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("the set name is longer than the kernel's 31 bytes")
    } else if name.starts_with('-') {
        Some("the set name starts with '-'")
    } else if name
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        Some("the set name contains blanks or control characters")
    } else {
        None
    };
    match bad {
        Some(why) => Err(not_run(what, format!("{why}: {name:?}"))),
        None => Ok(()),
    }
}

fn check_spec(what: &str, spec: &SetSpec) -> Result<(), IpsetError> {
    validate_set_name(&spec.name).map_err(|m| not_run(what, m))?;
    if spec.maxelem == 0 || spec.hashsize == 0 {
        return Err(not_run(
            what,
            format!(
                "set {} needs maxelem and hashsize above 0 (got maxelem {}, hashsize {})",
                spec.name, spec.maxelem, spec.hashsize
            ),
        ));
    }
    Ok(())
}

/// Every entry must fit the set before a line is written: a wrong-family address would make
/// ipset try a DNS lookup, and hash:net cannot hold a /0.
fn check_entries<'e>(
    what: &str,
    spec: &SetSpec,
    nets: impl Iterator<Item = &'e IpNet>,
) -> Result<(), IpsetError> {
    for net in nets {
        if Family::of(net) != spec.family {
            return Err(not_run(
                what,
                format!(
                    "{} is an {} prefix but set {} is family {}",
                    display_net(net),
                    Family::of(net),
                    spec.name,
                    family_word(spec.family)
                ),
            ));
        }
        if net.prefix_len() == 0 {
            return Err(not_run(
                what,
                format!(
                    "{} cannot be stored in hash:net set {} (a /0 is not allowed)",
                    net, spec.name
                ),
            ));
        }
    }
    Ok(())
}

fn not_run(what: &str, message: String) -> IpsetError {
    IpsetError::Failed {
        command: what.to_owned(),
        line: None,
        message: format!("not run: {message}"),
    }
}

/// ipset's word for a family.
fn family_word(f: Family) -> &'static str {
    match f {
        Family::V4 => "inet",
        Family::V6 => "inet6",
    }
}

/// A timeout as ipset accepts it: 1..=[`MAX_TIMEOUT`] seconds (0 would mean "permanent").
pub fn clamp_timeout(seconds: u32) -> u32 {
    seconds.clamp(1, MAX_TIMEOUT)
}

/// One line of a restore batch.
#[derive(Clone, Copy, Debug)]
enum Line<'a> {
    Destroy(&'a str),
    Create(&'a str, &'a SetSpec),
    Flush(&'a str),
    Add(&'a str, IpNet, u32),
    Del(&'a str, IpNet),
    Swap(&'a str, &'a str),
    Rename(&'a str, &'a str),
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Line::Destroy(s) => write!(f, "destroy {s}"),
            Line::Create(s, spec) => write!(
                f,
                "create {s} hash:net family {} hashsize {} maxelem {} timeout 0",
                family_word(spec.family),
                spec.hashsize,
                spec.maxelem
            ),
            Line::Flush(s) => write!(f, "flush {s}"),
            Line::Add(s, net, t) => write!(
                f,
                "add {s} {} timeout {}",
                display_net(&net.trunc()),
                clamp_timeout(t)
            ),
            Line::Del(s, net) => write!(f, "del {s} {}", display_net(&net.trunc())),
            Line::Swap(a, b) => write!(f, "swap {a} {b}"),
            Line::Rename(a, b) => write!(f, "rename {a} {b}"),
        }
    }
}

/// A restore batch: `head`, then every delete and every add on `set`, then `tail`. Lines are
/// produced on the fly, so a 65,536-entry batch never exists as one string.
struct Batch<'a> {
    head: Vec<Line<'a>>,
    set: &'a str,
    adds: &'a [(IpNet, u32)],
    dels: &'a [IpNet],
    tail: Vec<Line<'a>>,
}

impl<'a> Batch<'a> {
    fn lines(&self) -> impl Iterator<Item = Line<'a>> + '_ {
        let set = self.set;
        self.head
            .iter()
            .copied()
            .chain(self.dels.iter().map(move |&n| Line::Del(set, n)))
            .chain(self.adds.iter().map(move |&(n, t)| Line::Add(set, n, t)))
            .chain(self.tail.iter().copied())
    }

    fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        // Adds and deletes are most of a batch: format them without `fmt` machinery.
        let mut buf = Vec::with_capacity(128);
        for line in self.lines() {
            buf.clear();
            match line {
                Line::Add(set, net, t) => {
                    buf.extend_from_slice(b"add ");
                    buf.extend_from_slice(set.as_bytes());
                    buf.push(b' ');
                    crate::net::push_net(&mut buf, &net.trunc());
                    buf.extend_from_slice(b" timeout ");
                    crate::net::push_u32(&mut buf, clamp_timeout(t));
                }
                Line::Del(set, net) => {
                    buf.extend_from_slice(b"del ");
                    buf.extend_from_slice(set.as_bytes());
                    buf.push(b' ');
                    crate::net::push_net(&mut buf, &net.trunc());
                }
                other => {
                    // Writing to a Vec cannot fail.
                    let _ = write!(buf, "{other}");
                }
            }
            buf.push(b'\n');
            w.write_all(&buf)?;
        }
        Ok(())
    }

    /// The text of 1-based line `number`, as ipset counts them in "Error in line N".
    fn line(&self, number: usize) -> Option<String> {
        let index = number.checked_sub(1)?;
        self.lines().nth(index).map(|l| l.to_string())
    }
}

/// Parses `ipset save NAME` output line by line; lines of other sets are ignored.
struct SaveParser<'n> {
    name: &'n str,
    header: Option<SetHeader>,
    members: crate::net::NetMap<u32>,
    line_no: usize,
    error: Option<String>,
}

impl<'n> SaveParser<'n> {
    fn new(name: &'n str) -> Self {
        Self {
            name,
            header: None,
            members: crate::net::NetMap::default(),
            line_no: 0,
            error: None,
        }
    }

    fn line(&mut self, line: &str) {
        self.line_no += 1;
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.parse_line(line) {
            self.error = Some(format!("ipset save, line {}: {e}", self.line_no));
        }
    }

    fn parse_line(&mut self, line: &str) -> Result<(), String> {
        let mut tokens = line.split_ascii_whitespace();
        match (tokens.next(), tokens.next()) {
            (Some("create"), Some(set)) if set == self.name => {
                let set_type = tokens
                    .next()
                    .ok_or_else(|| format!("`create {set}` without a set type"))?;
                self.header = Some(parse_header(set_type, tokens)?);
            }
            (Some("add"), Some(set)) if set == self.name => {
                let elem = tokens
                    .next()
                    .ok_or_else(|| format!("`add {set}` without a member"))?;
                let net =
                    parse_net(elem).map_err(|e| format!("member {elem:?} of set {set}: {e}"))?;
                let mut timeout = 0;
                while let Some(token) = tokens.next() {
                    match token {
                        "timeout" => timeout = number("timeout", tokens.next())?,
                        // A comment is quoted free text: nothing after it is an option.
                        "comment" => break,
                        _ => {}
                    }
                }
                self.members.insert(net, timeout);
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(self) -> Result<KernelSet, String> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let header = self
            .header
            .ok_or_else(|| format!("ipset save printed no `create {}` line", self.name))?;
        Ok(KernelSet {
            header,
            members: self.members,
        })
    }
}

/// `family inet hashsize 1024 maxelem 65536 timeout 0 bucketsize 12 initval 0x...` (the options
/// of a `create` line or of the `Header:` of `ipset list`). Unknown flags are skipped.
fn parse_header<'t>(
    set_type: &str,
    mut tokens: impl Iterator<Item = &'t str>,
) -> Result<SetHeader, String> {
    let mut header = SetHeader {
        set_type: set_type.to_owned(),
        ..SetHeader::default()
    };
    while let Some(key) = tokens.next() {
        match key {
            "family" => {
                header.family = match tokens.next() {
                    Some("inet") => Some(Family::V4),
                    Some("inet6") => Some(Family::V6),
                    _ => None,
                }
            }
            "hashsize" => header.hashsize = Some(number(key, tokens.next())?),
            "maxelem" => header.maxelem = Some(number(key, tokens.next())?),
            "timeout" => {
                number(key, tokens.next())?;
                header.timeout_support = true;
            }
            // Options with a value that sipban does not use.
            "bucketsize" | "initval" | "netmask" | "bitmask" | "markmask" | "range" | "size" => {
                tokens.next();
            }
            // Flags such as counters, comment, skbinfo, forceadd.
            _ => {}
        }
    }
    Ok(header)
}

fn number(key: &str, value: Option<&str>) -> Result<u32, String> {
    let v = value.ok_or_else(|| format!("`{key}` without a value"))?;
    v.parse()
        .map_err(|_| format!("`{key} {v}`: not a number ipset would print"))
}

/// `ipset list -t NAME` output.
fn parse_list_terse(text: &str, name: &str) -> Result<SetInfo, String> {
    let mut set_type = None;
    let mut options = None;
    let mut references = None;
    let mut entries = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "Name" if value != name => {
                return Err(format!("ipset list -t {name} described set {value:?}"));
            }
            "Type" => set_type = Some(value),
            "Header" => options = Some(value),
            "References" => references = Some(number("References", Some(value))?),
            "Number of entries" => {
                entries = Some(number("Number of entries", Some(value))? as usize)
            }
            "Members" => break,
            _ => {}
        }
    }
    let set_type = set_type.ok_or_else(|| format!("ipset list -t {name}: no `Type:` line"))?;
    let header = parse_header(set_type, options.unwrap_or("").split_ascii_whitespace())?;
    Ok(SetInfo {
        header,
        entries: entries.ok_or_else(|| {
            format!("ipset list -t {name}: no `Number of entries:` line (ipset older than 7?)")
        })?,
        references: references.unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn n(s: &str) -> IpNet {
        parse_net(s).unwrap()
    }

    fn spec(name: &str, family: Family) -> SetSpec {
        SetSpec {
            name: name.into(),
            family,
            maxelem: 65536,
            hashsize: 1024,
        }
    }

    fn parse_save(text: &str, name: &str) -> Result<KernelSet, String> {
        let mut p = SaveParser::new(name);
        for line in text.lines() {
            p.line(line);
        }
        p.finish()
    }

    fn render(batch: &Batch<'_>) -> String {
        let mut out = Vec::new();
        batch.write_to(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn parses_save_v4_with_timeouts() {
        let text = "create bl hash:net family inet hashsize 1024 maxelem 65536 timeout 0 \
                    bucketsize 12 initval 0x6bb76933\n\
                    add bl 192.0.2.7 timeout 0\n\
                    add bl 203.0.113.0/25 timeout 2147482\n\
                    add bl 192.0.2.0/24 timeout 3599\n\
                    create other hash:ip family inet hashsize 1024 maxelem 10\n\
                    add other 198.51.100.1\n";
        let set = parse_save(text, "bl").unwrap();
        assert_eq!(
            set.header,
            SetHeader {
                set_type: "hash:net".into(),
                family: Some(Family::V4),
                maxelem: Some(65536),
                hashsize: Some(1024),
                timeout_support: true,
            }
        );
        assert_eq!(set.members.len(), 3);
        assert_eq!(set.members[&n("192.0.2.7")], 0);
        assert_eq!(set.members[&n("192.0.2.0/24")], 3599);
        assert_eq!(set.members[&n("203.0.113.0/25")], 2147482);
        assert!(set.header.matches(&spec("bl", Family::V4)));
    }

    #[test]
    fn parses_save_v6_and_sets_without_timeouts() {
        let text = "create b6 hash:net family inet6 hashsize 2048 maxelem 1000 timeout 0 \
                    bucketsize 12 initval 0xe5076d76\n\
                    add b6 2001:db8::bad timeout 7\n\
                    add b6 2001:db8::/32 timeout 100\n";
        let set = parse_save(text, "b6").unwrap();
        assert_eq!(set.header.family, Some(Family::V6));
        assert_eq!(set.header.hashsize, Some(2048));
        assert_eq!(set.members[&n("2001:db8::bad")], 7);
        assert_eq!(set.members[&n("2001:db8::/32")], 100);
        // maxelem differs from the spec: not usable in place.
        assert!(!set.header.matches(&spec("b6", Family::V6)));

        let text = "create old hash:net family inet hashsize 1024 maxelem 65536 counters \
                    comment bucketsize 12 initval 0x1\n\
                    add old 1.2.3.0/24 packets 0 bytes 0 comment \"timeout 5 x\"\n\
                    add old 1.2.4.0/24 nomatch\n";
        let set = parse_save(text, "old").unwrap();
        assert!(!set.header.timeout_support);
        assert!(!set.header.matches(&spec("old", Family::V4)));
        assert_eq!(set.members[&n("1.2.3.0/24")], 0);
        assert_eq!(set.members.len(), 2);
    }

    #[test]
    fn save_parse_errors_name_the_line() {
        let err = parse_save("create x hash:net family inet\nadd x not-an-ip\n", "x").unwrap_err();
        assert!(err.contains("line 2") && err.contains("not-an-ip"), "{err}");
        let err = parse_save("add x 1.2.3.4\n", "x").unwrap_err();
        assert!(err.contains("no `create x` line"), "{err}");
        let err = parse_save("create x hash:net maxelem lots\n", "x").unwrap_err();
        assert!(err.contains("maxelem lots"), "{err}");
    }

    #[test]
    fn snapshot_of_all_sets() {
        // `ipset list -t` of three sets, as ipset 7 prints it.
        let text = "Name: a\nType: hash:net\nRevision: 7\nHeader: family inet hashsize 1024 \
                    maxelem 65536 timeout 0 bucketsize 12 initval 0x0457b96b\nSize in memory: 456\n\
                    References: 0\nNumber of entries: 7\n\nName: b\nType: bitmap:port\n\
                    Revision: 3\nHeader: range 0-1024\nSize in memory: 208\nReferences: 0\n\
                    Number of entries: 0\n\nName: a-tmp\nType: hash:net\nRevision: 7\nHeader: \
                    family inet6 hashsize 1024 maxelem 9 timeout 0\nSize in memory: 1\n\
                    References: 0\nNumber of entries: 3\n";
        let snap = Snapshot::parse(text);
        let a = snap.info("a").unwrap().unwrap();
        assert_eq!(a.entries, 7);
        assert!(a.header.matches(&spec("a", Family::V4)));
        assert!(snap.has("b") && snap.has("a-tmp") && !snap.has("c"));
        assert_eq!(snap.info("a-tmp").unwrap().unwrap().entries, 3);
        assert_eq!(
            snap.info("a-tmp").unwrap().unwrap().header.family,
            Some(Family::V6)
        );
        assert!(snap.info("c").unwrap().is_none());
        assert!(Snapshot::parse("").info("a").unwrap().is_none());
        // A block without its count is an error for that set only.
        let snap = Snapshot::parse(
            "Name: x\nType: hash:net\nHeader: family inet\n\nName: y\n\
                                    Type: hash:net\nHeader: family inet\nNumber of entries: 1\n",
        );
        assert!(snap.info("x").is_err());
        assert_eq!(snap.info("y").unwrap().unwrap().entries, 1);
    }

    #[test]
    fn parses_list_terse() {
        let text = "Name: bl\nType: hash:ip\nRevision: 6\nHeader: family inet hashsize 1024 \
                    maxelem 65536 bucketsize 12 initval 0x5e6b1c2a\nSize in memory: 456\n\
                    References: 1\nNumber of entries: 42\n";
        let info = parse_list_terse(text, "bl").unwrap();
        assert_eq!(info.entries, 42);
        assert_eq!(info.references, 1);
        assert_eq!(info.header.set_type, "hash:ip");
        assert_eq!(info.header.maxelem, Some(65536));
        assert!(!info.header.timeout_support);
        assert!(!info.header.swappable_with(&spec("bl", Family::V4)));

        let text = "Name: b6\nType: hash:net\nRevision: 7\nHeader: family inet6 hashsize 1024 \
                    maxelem 65536 timeout 0 bucketsize 12 initval 0x1\nSize in memory: 1\n\
                    References: 0\nNumber of entries: 0\nMembers:\n";
        let info = parse_list_terse(text, "b6").unwrap();
        assert!(info.header.matches(&spec("b6", Family::V6)));
        assert!(!info.header.swappable_with(&spec("b6", Family::V4)));
        assert!(parse_list_terse("Name: b6\nType: hash:net\n", "b6").is_err());
        assert!(parse_list_terse(text, "other").is_err());
    }

    #[test]
    fn diff_batch_deletes_first_then_adds_with_clamped_timeouts() {
        let adds = [
            (n("192.0.2.1"), 0),
            (n("198.51.100.0/24"), 3600),
            (n("203.0.113.9"), u32::MAX),
        ];
        let dels = [n("192.0.2.2"), n("10.1.0.0/16")];
        let batch = Batch {
            head: vec![],
            set: "bl",
            adds: &adds,
            dels: &dels,
            tail: vec![],
        };
        assert_eq!(
            render(&batch),
            "del bl 192.0.2.2\n\
             del bl 10.1.0.0/16\n\
             add bl 192.0.2.1 timeout 1\n\
             add bl 198.51.100.0/24 timeout 3600\n\
             add bl 203.0.113.9 timeout 2147483\n"
        );
        assert_eq!(batch.line(1).as_deref(), Some("del bl 192.0.2.2"));
        assert_eq!(batch.line(3).as_deref(), Some("add bl 192.0.2.1 timeout 1"));
        assert_eq!(batch.line(0), None);
        assert_eq!(batch.line(6), None);
    }

    #[test]
    fn rebuild_batch_formats_v6_and_set_lines() {
        let s = SetSpec {
            name: "bl6".into(),
            family: Family::V6,
            maxelem: 1000,
            hashsize: 64,
        };
        // A non-canonical prefix still goes out with host bits cleared.
        let bad_host_bits: IpNet = "2001:db8::1/32".parse().unwrap();
        let adds = [(n("2001:0db8::0bad"), 60), (bad_host_bits, 2_147_484)];
        let batch = Batch {
            head: vec![
                Line::Destroy("bl6-tmp"),
                Line::Create("bl6-tmp", &s),
                Line::Flush("bl6-tmp"),
            ],
            set: "bl6-tmp",
            adds: &adds,
            dels: &[],
            tail: vec![Line::Swap("bl6-tmp", "bl6"), Line::Destroy("bl6-tmp")],
        };
        assert_eq!(
            render(&batch),
            "destroy bl6-tmp\n\
             create bl6-tmp hash:net family inet6 hashsize 64 maxelem 1000 timeout 0\n\
             flush bl6-tmp\n\
             add bl6-tmp 2001:db8::bad timeout 60\n\
             add bl6-tmp 2001:db8::/32 timeout 2147483\n\
             swap bl6-tmp bl6\n\
             destroy bl6-tmp\n"
        );
    }

    #[test]
    fn entries_are_checked_before_anything_runs() {
        let s = spec("bl", Family::V4);
        let err = check_entries("update of set bl", &s, [n("2001:db8::1")].iter()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("2001:db8::1") && text.contains("inet"),
            "{text}"
        );
        assert!(check_entries("x", &s, [n("0.0.0.0/0")].iter()).is_err());
        assert!(check_entries("x", &s, [n("192.0.2.0/24")].iter()).is_ok());
    }

    #[test]
    fn set_names() {
        assert!(validate_set_name("sipban-v4").is_ok());
        assert!(validate_set_name(&"a".repeat(27)).is_ok());
        let err = validate_set_name(&"a".repeat(28)).unwrap_err();
        assert!(err.contains("at most 27"), "{err}");
        assert!(validate_set_name("").is_err());
        assert!(validate_set_name("bad name").is_err());
        assert!(validate_set_name("-v4").is_err());
        assert!(validate_set_name("a;b").is_err());
        assert_eq!(spec("bl", Family::V4).tmp_name(), "bl-tmp");
        assert!(check_any_name("x", &"a".repeat(31)).is_ok());
        assert!(check_any_name("x", &"a".repeat(32)).is_err());
        assert!(check_any_name("x", "-n").is_err());
    }

    /// A stand-in for ipset: `list -t` describes an unreferenced hash:ip set, and `restore`
    /// fails on the line that destroys it, as when a rule appears between the check and the batch.
    #[test]
    fn in_use_live_set_during_rebuild_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("fake-ipset");
        std::fs::write(
            &script,
            "#!/bin/sh\n\
             case \"$1 $2\" in\n\
             'list -t') printf 'Name: %s\\nType: hash:ip\\nHeader: family inet hashsize 1024 \
             maxelem 65536\\nReferences: 0\\nNumber of entries: 1\\n' \"$3\" ;;\n\
             '-exist restore') echo 'ipset v7.17: Error in line 6: Set cannot be destroyed: \
             it is in use by a kernel component' >&2; exit 1 ;;\n\
             '-exist destroy') exit 0 ;;\n\
             *) exit 2 ;;\n\
             esac\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let ipset = Ipset::with_argv(vec![script.into()]);
        let entries = [(n("192.0.2.1"), 60), (n("192.0.2.2"), 60)];
        let err = ipset
            .rebuild(&spec("sb4", Family::V4), &entries)
            .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("ipset restore failed at line 6"), "{text}");
        assert!(text.contains("`destroy sb4`"), "{text}");
        assert!(
            text.contains("Set sb4 is referenced by a firewall rule"),
            "{text}"
        );
    }

    #[test]
    fn classifies_ipset_messages() {
        let failed = ExitStatus::from_raw(1 << 8);
        let adds = [(n("192.0.2.1"), 5), (n("192.0.2.2"), 5)];
        let batch = Batch {
            head: vec![],
            set: "bl",
            adds: &adds,
            dels: &[],
            tail: vec![],
        };
        let err = classify(
            "ipset restore",
            "ipset v7.17: Error in line 2: The set with the given name does not exist\n",
            failed,
            Some(&batch),
        );
        match &err {
            IpsetError::Failed { line, message, .. } => {
                assert_eq!(*line, Some(2));
                assert!(message.contains("add bl 192.0.2.2 timeout 5"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(err
            .to_string()
            .starts_with("ipset restore failed at line 2: The set with the given name"));

        let err = classify(
            "ipset save bl",
            "ipset v7.17: Kernel error received: Operation not permitted\n",
            failed,
            None,
        );
        assert!(matches!(err, IpsetError::PermissionDenied(_)));
        assert!(err.to_string().contains("CAP_NET_ADMIN"));
        let err = classify(
            "ipset save bl",
            "exec of \"ipset\" failed: No such file or directory\n",
            failed,
            None,
        );
        assert!(matches!(err, IpsetError::NotInstalled));
        assert!(err.to_string().contains("apt-get install ipset"));
        let err = classify("ipset list -n", "", failed, None);
        assert!(err.to_string().contains("printed nothing"), "{err}");
    }
}
