//! The firewall rules that make the kernel drop traffic from sipban's sets:
//! `sipban firewall install|remove|status`.
//!
//! sipban fills two ipsets; nothing is blocked until a rule matches them. This file installs,
//! removes and reports one rule per family, `-m set --match-set SET src -m comment --comment
//! sipban -j DROP`, inserted at the top of `filter INPUT` (so it comes before any
//! `ESTABLISHED,RELATED` accept and cuts existing flows too) or, with `--raw`, at the top of
//! `raw PREROUTING` (before connection tracking, so banned UDP scanners do not even keep their
//! conntrack entries alive).
//!
//! Backends: nftables cannot reference an ipset from its own rule language (an nft rule can only
//! match nft sets), so both backends drive iptables tools:
//! - `iptables`: `iptables`/`ip6tables`, whichever variant the system selected (legacy or
//!   nf_tables, see `update-alternatives --display iptables`);
//! - `nft`: `iptables-nft`/`ip6tables-nft` explicitly. The rule lands in the nft ruleset as an
//!   `xt match set` expression (what `nft list ruleset` shows), next to the admin's own nft
//!   tables, whatever `iptables` points to.
//!
//! Rules this file keeps, and must never break:
//! - Idempotent: a rule that is already there (`-C`) is never added again.
//! - Only sipban's own rules are touched, recognised by their exact text (set name, comment,
//!   target). `remove` deletes them and, on nf_tables, the base chains and tables that `install`
//!   had to create (remembered in `state_dir/firewall.json`) when they are empty again, so the
//!   ruleset is exactly what it was before `install`.
//! - Read-only commands (`-C`, `-S`, `nft list`) never create tables or chains.
//! - `--dry-run` prints the commands it would run and changes nothing.
//! - Self-healing ([`check`]): once `install` has run (the record exists), every sync, the
//!   daemon's syncs and `firewall check --repair` (run by `sipban-firewall.service` after
//!   nftables or netfilter-persistent (re)loaded a ruleset) put back recorded rules that another
//!   tool removed, and count it in the record.

use crate::backend::ipset::{Ipset, SetSpec};
use crate::config::sets::BackendChoice;
use crate::config::Settings;
use crate::net::Family;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The comment that marks sipban's rules.
pub const COMMENT: &str = "sipban";
/// Where `install` remembers what it did, for `remove` and for `sipban restore` at boot.
pub const MARKER_FILE: &str = "firewall.json";
/// A rule found this many times is deleted no more often than this (a guard, not a limit that
/// a real ruleset reaches).
const MAX_DUPLICATES: usize = 64;

/// Which tools write the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// `iptables` / `ip6tables` as the system selected them.
    #[default]
    Iptables,
    /// `iptables-nft` / `ip6tables-nft`: rules in the nftables ruleset.
    Nft,
}

impl Backend {
    pub fn tool(self, family: Family) -> &'static str {
        match (self, family) {
            (Backend::Iptables, Family::V4) => "iptables",
            (Backend::Iptables, Family::V6) => "ip6tables",
            (Backend::Nft, Family::V4) => "iptables-nft",
            (Backend::Nft, Family::V6) => "ip6tables-nft",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Backend::Iptables => "iptables",
            Backend::Nft => "nft",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "iptables" => Ok(Backend::Iptables),
            "nft" => Ok(Backend::Nft),
            _ => Err(format!("unknown backend `{s}` (iptables or nft)")),
        }
    }
}

/// Where a rule sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    /// Top of `filter INPUT`.
    Input,
    /// Top of `raw PREROUTING`.
    RawPrerouting,
}

impl Place {
    pub const ALL: [Place; 2] = [Place::Input, Place::RawPrerouting];

    pub fn table(self) -> &'static str {
        match self {
            Place::Input => "filter",
            Place::RawPrerouting => "raw",
        }
    }

    pub fn chain(self) -> &'static str {
        match self {
            Place::Input => "INPUT",
            Place::RawPrerouting => "PREROUTING",
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.table(), self.chain())
    }
}

/// One sipban rule: drop sources in `set`, for `family`, at `place`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    #[serde(with = "family_label")]
    pub family: Family,
    pub place: Place,
    pub set: String,
}

impl Rule {
    /// The match and target, exactly as `iptables -S` prints them back.
    fn spec(&self) -> Vec<String> {
        [
            "-m",
            "set",
            "--match-set",
            &self.set,
            "src",
            "-m",
            "comment",
            "--comment",
            COMMENT,
            "-j",
            "DROP",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// The rule's line in `iptables -S CHAIN` output.
    fn listed(&self) -> String {
        format!("-A {} {}", self.place.chain(), self.spec().join(" "))
    }

    fn argv(&self, backend: Backend, op: &str, position: Option<&str>) -> Vec<String> {
        let mut v = vec![
            backend.tool(self.family).to_string(),
            "-w".to_string(),
            "-t".to_string(),
            self.place.table().to_string(),
            op.to_string(),
            self.place.chain().to_string(),
        ];
        if let Some(p) = position {
            v.push(p.to_string());
        }
        v.extend(self.spec());
        v
    }
}

/// What the admin asked for.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub backend: Backend,
    /// Use `raw PREROUTING` instead of `filter INPUT`.
    pub raw: bool,
    pub dry_run: bool,
}

/// An nf_tables base chain (and its table) that `install` created and `remove` deletes again
/// once it is empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    /// `ip` or `ip6`.
    pub nft_family: String,
    pub table: String,
    pub chain: String,
    pub table_created: bool,
}

/// `state_dir/firewall.json`: what `install` put in place.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// Which sets the rules match: ipset (iptables rules) or nft (sipban's own chains).
    #[serde(default)]
    pub set_backend: crate::config::sets::BackendChoice,
    pub backend: Backend,
    pub raw: bool,
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub created: Vec<Created>,
    /// How many times [`check`] found recorded rules missing and put them back.
    #[serde(default)]
    pub reinstalled: u64,
    /// When it last did (Unix time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reinstalled: Option<i64>,
}

impl Marker {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(MARKER_FILE)
    }

    /// The marker, `Ok(None)` when `install` never ran (or `remove` ran since).
    pub fn load(state_dir: &Path) -> Result<Option<Marker>> {
        let path = Self::path(state_dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{} is not a sipban firewall record", path.display()))
    }

    /// Written like every file sipban keeps: a new temporary file that follows no link,
    /// renamed into place ([`crate::fsio::write_atomic`]).
    fn save(&self, state_dir: &Path) -> Result<()> {
        crate::fsio::create_dir(state_dir)
            .with_context(|| format!("creating state directory {}", state_dir.display()))?;
        let text = serde_json::to_vec_pretty(self).context("encoding the firewall record")?;
        crate::fsio::write_atomic(&Self::path(state_dir), &text)
    }
}

/// Save the record (for the nft rules, [`super::nftrules`]).
pub fn save_marker(marker: &Marker, state_dir: &Path) -> Result<()> {
    marker.save(state_dir)
}

/// One line of what a command did or would do.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// The command, as a shell line.
    pub command: String,
    /// Why (or why not).
    pub note: String,
    /// False when it was only printed (`--dry-run`) or not needed.
    pub ran: bool,
}

/// What `install` or `remove` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Change {
    pub dry_run: bool,
    pub steps: Vec<Step>,
    /// Rules found already in place (install) or already absent (remove).
    pub unchanged: Vec<String>,
    /// What a dry run could not check (not root, for example).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dry_run {
            writeln!(
                f,
                "--dry-run: nothing was changed; these commands would run:"
            )?;
        }
        for s in &self.steps {
            if self.dry_run {
                writeln!(f, "  {}    # {}", s.command, s.note)?;
            } else {
                writeln!(f, "  {}: {}", s.note, s.command)?;
            }
        }
        for u in &self.unchanged {
            writeln!(f, "  unchanged: {u}")?;
        }
        for n in &self.notes {
            writeln!(f, "  note: {n}")?;
        }
        if self.steps.is_empty() {
            writeln!(f, "  nothing to do")?;
        }
        Ok(())
    }
}

/// The rules sipban wants for `settings` and `opts`, v4 then v6.
pub fn wanted(settings: &Settings, raw: bool) -> Vec<Rule> {
    let place = if raw {
        Place::RawPrerouting
    } else {
        Place::Input
    };
    [Family::V4, Family::V6]
        .into_iter()
        .map(|family| Rule {
            family,
            place,
            set: settings.sets.get(family).name.clone(),
        })
        .collect()
}

fn shell_line(argv: &[String]) -> String {
    argv.join(" ")
}

fn run(argv: &[String]) -> Result<Output> {
    let (program, args) = argv
        .split_first()
        .context("internal error: an empty command line")?;
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!(
                    "`{program}` not found: install it (apt-get install {})",
                    if program.starts_with("nft") {
                        "nftables"
                    } else {
                        "iptables"
                    }
                )
            } else {
                anyhow::Error::new(e).context(format!("running {program}"))
            }
        })
}

fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

fn run_ok(argv: &[String]) -> Result<Output> {
    let o = run(argv)?;
    if !o.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            shell_line(argv),
            o.status,
            explain_stderr(&stderr_of(&o))
        );
    }
    Ok(o)
}

/// iptables' own words, plus a hint where the cause is common.
fn explain_stderr(stderr: &str) -> String {
    if stderr.contains("Permission denied") || stderr.contains("you must be root") {
        format!("{stderr} (firewall rules need root or CAP_NET_ADMIN)")
    } else if stderr.contains("doesn't exist") && stderr.contains("Set ") {
        format!("{stderr} (run `sipban sync` or `sipban restore` first to create the sets)")
    } else if stderr.contains("Can't open socket to ipset") {
        format!("{stderr} (iptables' set match needs CAP_NET_RAW as well as CAP_NET_ADMIN)")
    } else if stderr.contains("Couldn't load match") || stderr.contains("No chain/target/match") {
        format!("{stderr} (the kernel lacks the xt_set or xt_comment match)")
    } else {
        stderr.to_string()
    }
}

/// Whether `rule` is present (`-C`). Never changes anything.
fn present(backend: Backend, rule: &Rule) -> Result<bool> {
    let argv = rule.argv(backend, "-C", None);
    let o = run(&argv)?;
    if o.status.success() {
        return Ok(true);
    }
    let err = stderr_of(&o);
    // No rule can name a set that does not exist, so the rule is absent.
    if err.contains("doesn't exist") && err.contains(&format!("Set {} ", rule.set)) {
        return Ok(false);
    }
    // iptables says "Bad rule (does a matching rule exist in that chain?)" with exit 1 when the
    // rule is simply absent; a missing base chain of an nft table reads "No chain/target/match"
    // on some versions. Everything else (permission, a missing match module) is an error.
    if o.status.code() == Some(1)
        && (err.contains("does a matching rule exist")
            || err.is_empty()
            || err.contains("No chain/target/match by that name"))
    {
        return Ok(false);
    }
    bail!(
        "`{}` failed ({}): {}",
        shell_line(&argv),
        o.status,
        explain_stderr(&err)
    )
}

/// `-S CHAIN` of a table: the policy line and the rules, in order.
pub fn list_chain(backend: Backend, family: Family, place: Place) -> Result<Vec<String>> {
    let argv: Vec<String> = [
        backend.tool(family),
        "-w",
        "-t",
        place.table(),
        "-S",
        place.chain(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let o = run_ok(&argv)?;
    Ok(String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// Whether a rule can be in `place` at all without touching the kernel. iptables-legacy
/// registers a table in a network namespace the first time any command names it (`-S` and `-C`
/// included), and cannot unregister it, so a table that is not registered yet
/// (`/proc/net/ip{,6}_tables_names`) is not read. nf_tables tools never create on reading.
fn may_hold(backend: Backend, family: Family, place: Place) -> Result<bool> {
    if is_nf_tables(backend, family)? {
        return Ok(true);
    }
    let names = match family {
        Family::V4 => "/proc/net/ip_tables_names",
        Family::V6 => "/proc/net/ip6_tables_names",
    };
    Ok(match std::fs::read_to_string(names) {
        Ok(t) => t.lines().any(|l| l.trim() == place.table()),
        // Unreadable (no ip_tables module at all): then no legacy table holds anything.
        Err(_) => false,
    })
}

/// Whether the tool writes nf_tables (its `--version` says `(nf_tables)`).
fn is_nf_tables(backend: Backend, family: Family) -> Result<bool> {
    let argv = vec![backend.tool(family).to_string(), "--version".to_string()];
    let o = run_ok(&argv)?;
    Ok(String::from_utf8_lossy(&o.stdout).contains("nf_tables"))
}

fn nft_family(family: Family) -> &'static str {
    match family {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    }
}

/// The chains of an nft table, `None` when the table does not exist (or `nft` is missing:
/// then nothing can be created or cleaned up through it).
fn nft_chains(nft_family: &str, table: &str) -> Result<Option<Vec<String>>> {
    let argv: Vec<String> = ["nft", "list", "table", nft_family, table]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let o = match run(&argv) {
        Ok(o) => o,
        Err(e) => {
            tracing::debug!("{e:#}");
            return Ok(None);
        }
    };
    if !o.status.success() {
        let err = stderr_of(&o);
        if err.contains("No such file or directory") {
            return Ok(None);
        }
        bail!("`{}` failed: {err}", shell_line(&argv));
    }
    Ok(Some(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                l.strip_prefix("chain ")
                    .and_then(|r| r.strip_suffix('{'))
                    .map(|n| n.trim().to_string())
            })
            .collect(),
    ))
}

fn nft_available() -> bool {
    run(&["nft".to_string(), "--version".to_string()]).is_ok_and(|o| o.status.success())
}

/// Create an empty set for `spec` when it does not exist (an iptables rule cannot name a set
/// that does not exist). Never touches an existing set.
fn ensure_set(ipset: &Ipset, spec: &SetSpec, change: &mut Change) -> Result<()> {
    if ipset
        .info(&spec.name)
        .with_context(|| format!("reading set {}", spec.name))?
        .is_some()
    {
        return Ok(());
    }
    let note = format!(
        "set {} does not exist yet: create it empty (the next sync fills it)",
        spec.name
    );
    let command = format!(
        "ipset create {} hash:net family {} timeout 0 maxelem {} hashsize {}",
        spec.name,
        match spec.family {
            Family::V4 => "inet",
            Family::V6 => "inet6",
        },
        spec.maxelem,
        spec.hashsize
    );
    if !change.dry_run {
        ipset
            .rebuild(spec, &[])
            .with_context(|| format!("creating the empty set {}", spec.name))?;
    }
    change.steps.push(Step {
        command,
        note,
        ran: !change.dry_run,
    });
    Ok(())
}

/// `sipban firewall install`: one DROP rule per family at the top of the chosen chain, unless
/// it is already there. Creates missing sets (empty) first. Remembers what it did in
/// `state_dir/firewall.json`.
pub fn install(settings: &Settings, ipset: &Ipset, opts: Options) -> Result<Change> {
    let chosen = super::resolve(settings.backend);
    if let Some(m) = Marker::load(&settings.state_dir)? {
        if m.set_backend != chosen {
            super::Kernel::for_choice(chosen).refuse_other(settings)?;
        }
    }
    if chosen == BackendChoice::Nft {
        return super::nftrules::install(settings, &super::nft::Nft::new(), opts);
    }
    let mut change = Change {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let rules = wanted(settings, opts.raw);
    let mut marker = Marker::load(&settings.state_dir)?.unwrap_or_default();
    let nft = nft_available();
    for rule in &rules {
        let spec = super::set_spec(settings, rule.family);
        let is_there = if opts.dry_run {
            // A dry run shows the commands even where it cannot read the kernel (not root): a
            // rule it cannot check, or that names a set not created yet, counts as absent.
            match ipset.info(&spec.name) {
                Ok(Some(_)) => present(opts.backend, rule).unwrap_or_else(|e| {
                    change.notes.push(format!("cannot check: {e:#}"));
                    false
                }),
                Ok(None) => {
                    ensure_set(ipset, &spec, &mut change)?;
                    false
                }
                Err(e) => {
                    change
                        .notes
                        .push(format!("cannot read set {}: {e}", spec.name));
                    false
                }
            }
        } else {
            ensure_set(ipset, &spec, &mut change)?;
            present(opts.backend, rule)?
        };
        let at = format!(
            "{} rule for set {} in {}",
            rule.family, rule.set, rule.place
        );
        if is_there {
            // In place, unless something has since put an accept of established traffic above
            // it (then existing flows of banned sources pass): move it back to the top.
            let (_, shadowed_by) = placement(opts.backend, rule)?;
            if shadowed_by.is_empty() {
                change.unchanged.push(format!("{at} is already in place"));
                continue;
            }
            let ins = rule.argv(opts.backend, "-I", Some("1"));
            let del = if opts.dry_run {
                del_last(opts.backend, rule, 1)?
            } else {
                // Insert the new copy first, so the chain is never without the rule.
                run_ok(&ins)?;
                let del = del_last(opts.backend, rule, 0)?;
                run_ok(&del)?;
                del
            };
            for argv in [ins, del] {
                change.steps.push(Step {
                    command: shell_line(&argv),
                    note: format!(
                        "move the {at} above {} rule(s) that accept established traffic",
                        shadowed_by.len()
                    ),
                    ran: !opts.dry_run,
                });
            }
            continue;
        }
        // On nf_tables, note whether the base chain and table exist before iptables creates
        // them, so `remove` can delete them again.
        if !opts.dry_run && nft && is_nf_tables(opts.backend, rule.family)? {
            let fam = nft_family(rule.family);
            let table = rule.place.table();
            let chain = rule.place.chain();
            let chains = nft_chains(fam, table)?;
            let chain_exists = chains
                .as_ref()
                .is_some_and(|c| c.iter().any(|n| n == chain));
            if !chain_exists {
                let already = marker
                    .created
                    .iter()
                    .any(|c| c.nft_family == fam && c.table == table && c.chain == chain);
                if !already {
                    marker.created.push(Created {
                        nft_family: fam.to_string(),
                        table: table.to_string(),
                        chain: chain.to_string(),
                        table_created: chains.is_none(),
                    });
                }
            }
        }
        let argv = rule.argv(opts.backend, "-I", Some("1"));
        if !opts.dry_run {
            run_ok(&argv)?;
        }
        change.steps.push(Step {
            command: shell_line(&argv),
            note: format!("insert the {at}, first in the chain"),
            ran: !opts.dry_run,
        });
    }
    if !opts.dry_run {
        for r in rules {
            if !marker.rules.contains(&r) {
                marker.rules.push(r);
            }
        }
        marker.backend = opts.backend;
        marker.raw = opts.raw;
        marker.save(&settings.state_dir)?;
    }
    Ok(change)
}

/// What [`check`] found and did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Check {
    /// The recorded rules that were missing, described.
    pub missing: Vec<String>,
    /// Whether they were put back.
    pub reinstalled: bool,
    /// Times rules were put back, in all runs (from the record).
    pub reinstalled_total: u64,
}

impl Check {
    /// The warning a run prints when rules were missing.
    pub fn warning(&self) -> Option<String> {
        if self.missing.is_empty() {
            return None;
        }
        let what = self.missing.join("; ");
        Some(if self.reinstalled {
            format!("firewall: {what} missing (another tool reloaded the ruleset?); reinstalled")
        } else {
            format!("firewall: {what} missing: banned sources are not dropped; run `sipban firewall check --repair`")
        })
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.warning() {
            Some(w) => writeln!(f, "{w}")?,
            None => writeln!(f, "firewall: every recorded rule is in place")?,
        }
        writeln!(
            f,
            "rules put back by checks so far: {}",
            self.reinstalled_total
        )
    }
}

fn describe(rule: &Rule) -> String {
    format!(
        "the {} rule for set {} in {}",
        rule.family, rule.set, rule.place
    )
}

/// The check of the recorded rules after an apply that re-declared them in its own
/// transaction ([`super::SetBackend::declares_rules`]): nothing missing, nothing put back.
pub fn declared_by_apply(settings: &Settings) -> Option<Check> {
    let marker = Marker::load(&settings.state_dir).ok()??;
    Some(Check {
        reinstalled_total: marker.reinstalled,
        ..Check::default()
    })
}

/// Whether the rules `install` recorded are in place; with `repair`, put missing ones back
/// (as `install` does, with the recorded backend and place) and count it in the record.
/// `Ok(None)` when `install` never ran: then nothing is expected.
pub fn check(settings: &Settings, ipset: &Ipset, repair: bool, now: i64) -> Result<Option<Check>> {
    let Some(marker) = Marker::load(&settings.state_dir)? else {
        return Ok(None);
    };
    if marker.set_backend == BackendChoice::Nft {
        let nft = super::nft::Nft::new();
        return super::nftrules::check(settings, &nft, marker, repair, now).map(Some);
    }
    let mut c = Check {
        reinstalled_total: marker.reinstalled,
        ..Check::default()
    };
    for rule in wanted(settings, marker.raw) {
        if !present(marker.backend, &rule)? {
            c.missing.push(describe(&rule));
        }
    }
    if c.missing.is_empty() || !repair {
        return Ok(Some(c));
    }
    let opts = Options {
        backend: marker.backend,
        raw: marker.raw,
        dry_run: false,
    };
    install(settings, ipset, opts).context("putting the firewall rules back")?;
    let mut marker = Marker::load(&settings.state_dir)?.unwrap_or(marker);
    marker.reinstalled += 1;
    marker.last_reinstalled = Some(now);
    marker.save(&settings.state_dir)?;
    c.reinstalled = true;
    c.reinstalled_total = marker.reinstalled;
    Ok(Some(c))
}

/// One sipban rule with its counters, as `sipban status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Counted {
    pub family: Family,
    pub place: Place,
    pub set: String,
    pub present: bool,
    pub packets: u64,
    pub bytes: u64,
}

/// sipban's rules with their packet and byte counters: the recorded place (both places when
/// `install` never ran, listing only the rules found there). Reads only (`-v -S`).
pub fn counted(settings: &Settings, recorded: Option<&Marker>) -> Result<Vec<Counted>> {
    let nft = match recorded {
        Some(m) => m.set_backend == BackendChoice::Nft,
        None => super::resolve(settings.backend) == BackendChoice::Nft,
    };
    if nft {
        let places = recorded.map_or(vec![false, true], |m| vec![m.raw]);
        let mut out = Vec::new();
        for raw in places {
            let found = super::nftrules::counters(settings, &super::nft::Nft::new(), raw)?;
            for (family, place, set, c) in found {
                if c.is_none() && recorded.is_none() {
                    continue;
                }
                let (packets, bytes) = c.unwrap_or((0, 0));
                out.push(Counted {
                    family,
                    place,
                    set,
                    present: c.is_some(),
                    packets,
                    bytes,
                });
            }
        }
        return Ok(out);
    }
    let backend = recorded.map(|m| m.backend).unwrap_or_default();
    let places: Vec<bool> = match recorded {
        Some(m) => vec![m.raw],
        None => vec![false, true],
    };
    let mut out = Vec::new();
    for raw in places {
        for rule in wanted(settings, raw) {
            let found = if may_hold(backend, rule.family, rule.place)? {
                find_counted(backend, &rule)?
            } else {
                None
            };
            if found.is_none() && recorded.is_none() {
                continue;
            }
            let (packets, bytes) = found.unwrap_or((0, 0));
            out.push(Counted {
                family: rule.family,
                place: rule.place,
                set: rule.set.clone(),
                present: found.is_some(),
                packets,
                bytes,
            });
        }
    }
    Ok(out)
}

/// The counters of `rule` in `-v -S` output (`-A CHAIN match -c PACKETS BYTES -j DROP`),
/// summed over copies; `None` when the chain does not hold it.
fn find_counted(backend: Backend, rule: &Rule) -> Result<Option<(u64, u64)>> {
    let argv: Vec<String> = [
        backend.tool(rule.family),
        "-w",
        "-t",
        rule.place.table(),
        "-v",
        "-S",
        rule.place.chain(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let o = run_ok(&argv)?;
    let listed = rule.listed();
    let mut found: Option<(u64, u64)> = None;
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        if let Some((plain, p, b)) = strip_counters(line) {
            if plain == listed {
                let (tp, tb) = found.unwrap_or((0, 0));
                found = Some((tp + p, tb + b));
            }
        }
    }
    Ok(found)
}

/// `... -c 12 3456 -j DROP` -> (`... -j DROP`, 12, 3456).
fn strip_counters(line: &str) -> Option<(String, u64, u64)> {
    let at = line.find(" -c ")?;
    let rest = &line[at + 4..];
    let mut parts = rest.splitn(3, ' ');
    let p = parts.next()?.parse().ok()?;
    let b = parts.next()?.parse().ok()?;
    let tail = parts.next().map(|t| format!(" {t}")).unwrap_or_default();
    Some((format!("{}{tail}", &line[..at]), p, b))
}

/// `sipban firewall remove`: delete every sipban rule (both places, both families, the
/// configured set names and those `install` recorded), then the nf_tables chains and tables
/// that `install` created, when they are empty. Leaves the sets alone.
pub fn remove(settings: &Settings, opts: Options) -> Result<Change> {
    let marker = Marker::load(&settings.state_dir)?;
    // The recorded backend's rules go, whatever the config says now (that is how a switch of
    // backend starts).
    let nft = match &marker {
        Some(m) => m.set_backend == BackendChoice::Nft,
        None => super::resolve(settings.backend) == BackendChoice::Nft,
    };
    if nft {
        return super::nftrules::remove(settings, &super::nft::Nft::new(), opts);
    }
    let mut change = Change {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let mut candidates: Vec<Rule> = Vec::new();
    for r in wanted(settings, false)
        .into_iter()
        .chain(wanted(settings, true))
        .chain(marker.iter().flat_map(|m| m.rules.iter().cloned()))
    {
        if !candidates.contains(&r) {
            candidates.push(r);
        }
    }
    let backend = marker.as_ref().map_or(opts.backend, |m| m.backend);
    for rule in &candidates {
        let at = format!(
            "{} rule for set {} in {}",
            rule.family, rule.set, rule.place
        );
        let count = if !may_hold(backend, rule.family, rule.place)? {
            0
        } else if opts.dry_run {
            usize::from(chain_holds(backend, rule)?)
        } else {
            let mut n = 0;
            while n < MAX_DUPLICATES && present(backend, rule)? {
                run_ok(&rule.argv(backend, "-D", None))?;
                n += 1;
            }
            n
        };
        if count == 0 {
            continue;
        }
        change.steps.push(Step {
            command: shell_line(&rule.argv(backend, "-D", None)),
            note: if count > 1 {
                format!("delete the {at} ({count} copies)")
            } else {
                format!("delete the {at}")
            },
            ran: !opts.dry_run,
        });
    }
    if let Some(m) = &marker {
        for c in &m.created {
            cleanup_created(c, &mut change)?;
        }
    }
    if change.steps.is_empty() {
        change
            .unchanged
            .push("no sipban rule is installed".to_string());
    }
    if !opts.dry_run && marker.is_some() {
        let path = Marker::path(&settings.state_dir);
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(change)
}

/// Whether the chain lists the rule (for dry runs: `-S` works where `-C` needs the set).
fn chain_holds(backend: Backend, rule: &Rule) -> Result<bool> {
    let listed = rule.listed();
    Ok(list_chain(backend, rule.family, rule.place)?.contains(&listed))
}

/// Delete a base chain (and its table) that `install` created, if it holds no rule now and its
/// policy is still accept.
fn cleanup_created(c: &Created, change: &mut Change) -> Result<()> {
    let Some(chains) = nft_chains(&c.nft_family, &c.table)? else {
        return Ok(());
    };
    if !chains.contains(&c.chain) {
        return Ok(());
    }
    // A dry run deleted nothing, so the chain still holds sipban's rules: show the command
    // with the condition it would run under.
    if change.dry_run {
        let what = if c.table_created && chains.len() == 1 {
            format!("nft delete table {} {}", c.nft_family, c.table)
        } else {
            format!("nft delete chain {} {} {}", c.nft_family, c.table, c.chain)
        };
        change.steps.push(Step {
            command: what,
            note: "remove what install created, if it is empty once the rules are deleted"
                .to_string(),
            ran: false,
        });
        return Ok(());
    }
    let argv: Vec<String> = ["nft", "list", "chain", &c.nft_family, &c.table, &c.chain]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let text = String::from_utf8_lossy(&run_ok(&argv)?.stdout).to_string();
    // An empty base chain lists as `table … { chain … { type … policy accept; } }`: only
    // braces, the type/policy line and the headers.
    let body: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && *l != "}" && !l.starts_with("table ") && !l.starts_with("chain ")
        })
        .collect();
    let empty =
        body.len() == 1 && body[0].starts_with("type ") && body[0].contains("policy accept;");
    if !empty {
        tracing::info!(
            "{} {} {} holds other rules now; leaving it",
            c.nft_family,
            c.table,
            c.chain
        );
        return Ok(());
    }
    let only_chain = chains.len() == 1;
    let argv: Vec<String> = if c.table_created && only_chain {
        ["nft", "delete", "table", &c.nft_family, &c.table]
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        ["nft", "delete", "chain", &c.nft_family, &c.table, &c.chain]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    run_ok(&argv)?;
    change.steps.push(Step {
        command: shell_line(&argv),
        note: "remove what install created (it is empty again)".to_string(),
        ran: true,
    });
    Ok(())
}

/// One rule as `status` sees it.
#[derive(Clone, Debug, Serialize)]
pub struct RuleStatus {
    pub family: Family,
    pub place: Place,
    pub set: String,
    /// 1-based position in the chain, `None` when absent.
    pub position: Option<usize>,
    /// Rules before it that accept established traffic (they let existing flows of a banned
    /// source through).
    pub shadowed_by: Vec<String>,
}

/// A set the rules name.
#[derive(Clone, Debug, Serialize)]
pub struct SetStatus {
    pub name: String,
    /// Entries it holds; `None` when it does not exist.
    pub entries: Option<usize>,
}

/// `sipban firewall status`.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub backend: Backend,
    /// Which sets the rules match (`nft`: sipban's own chains in table `inet sipban`).
    pub set_backend: BackendChoice,
    pub rules: Vec<RuleStatus>,
    pub sets: Vec<SetStatus>,
    pub recorded: Option<Marker>,
}

impl Status {
    /// Each family has a rule in at least one place, with nothing accepting before it.
    pub fn protected(&self) -> bool {
        [Family::V4, Family::V6].iter().all(|f| {
            self.rules
                .iter()
                .any(|r| r.family == *f && r.position.is_some() && r.shadowed_by.is_empty())
        }) && self.sets.iter().all(|s| s.entries.is_some())
    }
}

/// The command that deletes the last copy of `rule` in its chain, by number (after a new copy
/// went in at the top, `-D` with the rule's text would delete that one). `shift` is added to the
/// number: 1 when the new copy is not inserted yet (a dry run).
fn del_last(backend: Backend, rule: &Rule, shift: usize) -> Result<Vec<String>> {
    let listed = rule.listed();
    let lines = list_chain(backend, rule.family, rule.place)?;
    let appended: Vec<&String> = lines.iter().filter(|l| l.starts_with("-A ")).collect();
    let n = appended
        .iter()
        .rposition(|l| **l == listed)
        .context("internal error: the rule to move is gone")?;
    Ok(vec![
        backend.tool(rule.family).to_string(),
        "-w".to_string(),
        "-t".to_string(),
        rule.place.table().to_string(),
        "-D".to_string(),
        rule.place.chain().to_string(),
        (n + 1 + shift).to_string(),
    ])
}

/// Where `rule` sits in its chain (1-based) and the rules before it that accept established
/// traffic. Reads only.
fn placement(backend: Backend, rule: &Rule) -> Result<(Option<usize>, Vec<String>)> {
    let lines = if may_hold(backend, rule.family, rule.place)? {
        list_chain(backend, rule.family, rule.place)?
    } else {
        Vec::new()
    };
    let listed = rule.listed();
    let appended: Vec<&String> = lines.iter().filter(|l| l.starts_with("-A ")).collect();
    let Some(position) = appended.iter().position(|l| **l == listed) else {
        return Ok((None, Vec::new()));
    };
    let shadowed_by = appended[..position]
        .iter()
        .filter(|l| accepts_established(l))
        .map(|l| l.to_string())
        .collect();
    Ok((Some(position + 1), shadowed_by))
}

/// Read the rules of both places and both families. Never changes anything.
pub fn status(settings: &Settings, ipset: &Ipset, backend: Option<Backend>) -> Result<Status> {
    let recorded = Marker::load(&settings.state_dir)?;
    let nft = match &recorded {
        Some(m) => m.set_backend == BackendChoice::Nft,
        None => super::resolve(settings.backend) == BackendChoice::Nft,
    };
    if nft {
        return super::nftrules::status(settings, &super::nft::Nft::new());
    }
    let backend = backend
        .or(recorded.as_ref().map(|m| m.backend))
        .unwrap_or_default();
    let mut rules = Vec::new();
    for raw in [false, true] {
        for rule in wanted(settings, raw) {
            let (position, shadowed_by) = placement(backend, &rule)?;
            rules.push(RuleStatus {
                family: rule.family,
                place: rule.place,
                set: rule.set,
                position,
                shadowed_by,
            });
        }
    }
    let mut sets = Vec::new();
    for family in [Family::V4, Family::V6] {
        let name = settings.sets.get(family).name.clone();
        let n = ipset
            .header(&name)
            .with_context(|| format!("reading set {name}"))?
            .map(|(_, n)| n);
        sets.push(SetStatus { name, entries: n });
    }
    Ok(Status {
        backend,
        set_backend: BackendChoice::Ipset,
        rules,
        sets,
        recorded,
    })
}

/// A rule that accepts (or returns) traffic of existing connections.
fn accepts_established(line: &str) -> bool {
    let target_lets_through = line.ends_with("-j ACCEPT") || line.ends_with("-j RETURN");
    target_lets_through && (line.contains("ESTABLISHED") || line.contains("RELATED"))
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.set_backend == BackendChoice::Nft {
            writeln!(f, "backend: nft (sipban's own table inet sipban)")?;
        } else {
            writeln!(f, "backend: {}", self.backend.label())?;
        }
        for r in &self.rules {
            let place = match (self.set_backend, r.place) {
                (BackendChoice::Nft, Place::Input) => "inet sipban input".to_string(),
                (BackendChoice::Nft, Place::RawPrerouting) => "inet sipban prerouting".to_string(),
                (_, p) => p.to_string(),
            };
            match r.position {
                Some(p) if r.shadowed_by.is_empty() => writeln!(
                    f,
                    "  {} {}: drops set {} (rule {p})",
                    r.family, place, r.set
                )?,
                Some(p) => writeln!(
                    f,
                    "  {} {}: drops set {} (rule {p}) but AFTER {} rule(s) that accept existing flows ({}); `sipban firewall install` moves it back on top",
                    r.family,
                    place,
                    r.set,
                    r.shadowed_by.len(),
                    r.shadowed_by.join("; ")
                )?,
                None => writeln!(f, "  {} {}: no sipban rule", r.family, place)?,
            }
        }
        for SetStatus { name, entries } in &self.sets {
            match entries {
                Some(n) => writeln!(f, "  set {name}: {n} entries")?,
                None => writeln!(
                    f,
                    "  set {name}: MISSING (run `sipban restore` or `sipban sync`)"
                )?,
            }
        }
        if self.protected() {
            writeln!(f, "banned sources are dropped")
        } else {
            writeln!(
                f,
                "banned sources are NOT dropped for every family: run `sipban firewall install`"
            )
        }
    }
}

/// `Family` as `"v4"`/`"v6"` in the record file.
mod family_label {
    use crate::net::Family;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(f: &Family, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(f.label())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Family, D::Error> {
        match String::deserialize(d)?.as_str() {
            "v4" => Ok(Family::V4),
            "v6" => Ok(Family::V6),
            other => Err(serde::de::Error::custom(format!(
                "unknown family `{other}` (v4 or v6)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_is_written_through_no_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        // Links at the record's name and at any temporary name it could be written through.
        for name in [
            "firewall.json.tmp".to_string(),
            format!(".firewall.json.tmp.{}", std::process::id()),
        ] {
            std::os::unix::fs::symlink(&victim, dir.path().join(name)).unwrap();
        }
        std::os::unix::fs::symlink(&victim, Marker::path(dir.path())).unwrap();
        let m = Marker {
            raw: true,
            ..Marker::default()
        };
        m.save(dir.path()).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        assert_eq!(Marker::load(dir.path()).unwrap(), Some(m));
        assert!(!std::fs::symlink_metadata(Marker::path(dir.path()))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn rule_text_matches_iptables_listing() {
        let r = Rule {
            family: Family::V4,
            place: Place::Input,
            set: "sipban-v4".into(),
        };
        assert_eq!(
            r.listed(),
            "-A INPUT -m set --match-set sipban-v4 src -m comment --comment sipban -j DROP"
        );
        assert_eq!(
            shell_line(&r.argv(Backend::Nft, "-I", Some("1"))),
            "iptables-nft -w -t filter -I INPUT 1 -m set --match-set sipban-v4 src -m comment --comment sipban -j DROP"
        );
    }

    #[test]
    fn counters_are_read_off_the_verbose_listing() {
        let (plain, p, b) = strip_counters(
            "-A INPUT -m set --match-set t4 src -m comment --comment sipban -c 12 3456 -j DROP",
        )
        .unwrap();
        assert_eq!(
            plain,
            "-A INPUT -m set --match-set t4 src -m comment --comment sipban -j DROP"
        );
        assert_eq!((p, b), (12, 3456));
        assert!(strip_counters("-A INPUT -j DROP").is_none());
    }

    #[test]
    fn established_accepts_are_recognised() {
        assert!(accepts_established(
            "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        ));
        assert!(accepts_established(
            "-A INPUT -m state --state ESTABLISHED -j ACCEPT"
        ));
        assert!(!accepts_established("-A INPUT -p tcp --dport 22 -j ACCEPT"));
        assert!(!accepts_established(
            "-A INPUT -m conntrack --ctstate INVALID -j DROP"
        ));
    }

    #[test]
    fn backend_names() {
        assert_eq!("nft".parse::<Backend>(), Ok(Backend::Nft));
        assert!("pf".parse::<Backend>().is_err());
        assert_eq!(Backend::Iptables.tool(Family::V6), "ip6tables");
    }
}
