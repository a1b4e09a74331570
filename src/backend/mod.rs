//! The kernel firewall: the only part of sipban that changes what the kernel blocks.
//!
//! [`ipset`] keeps the kernel sets (one per address family) equal to the blocklist that the
//! decide step produced: small diffs as one batch of adds and deletes, full rebuilds as one
//! batch that fills a temporary set and swaps it in, so the live set is never empty or partial.
//!
//! [`nft`] is the nftables counterpart (`backend: nft`): per family a hash set of addresses
//! and an interval set of prefixes in sipban's own table `inet sipban`; a sync's apply is one
//! `nft -f` transaction for both families (and, when it must refill the sets, the rules).
//! [`Kernel`] is the backend the config chose ([`Kernel::open`] resolves `auto` and refuses
//! to run while the other backend's rules are live).
//!
//! [`rules`] installs, removes and reports the DROP rules that make the kernel use the sets;
//! [`conntrack`] forgets the tracked flows of newly banned sources.
//! [`logrule`] installs sipban's rate-limited `LOG` rule for probes on the port catalogue's
//! ports (it only logs; the kernel-log detector reads what it writes).
//!
//! Nothing here decides *what* to block: callers pass canonical, already-filtered prefixes and
//! enforce the cap. Nothing here may touch a set or rule that sipban's configuration does not
//! name, and nothing here may pass text that was not parsed as an address to a kernel tool.

pub mod conntrack;
pub mod ipset;
pub mod logrule;
pub mod mirror;
pub mod nft;
pub mod nftrules;
pub mod plan;
pub mod rules;

use crate::config::Settings;
use crate::net::Family;
pub use ipset::SetSpec;

/// ipset's largest timeout (seconds).
pub const MAX_TIMEOUT: u32 = 2_147_483;

/// The largest diff applied in place; above it the set is rebuilt and swapped.
pub fn diff_limit(cap: u32) -> u32 {
    (cap / 8).max(1024)
}

/// maxelem of the kernel set for a cap: the cap itself, so the kernel refuses ("Hash is full")
/// any add that would take the live set over it. Callers keep the set under the cap at every
/// instant (a diff deletes before it adds; a rebuild fills a temporary set and swaps it in),
/// so this ceiling is never flow control, only a guarantee. A set created with an older, larger
/// maxelem no longer matches and is rebuilt once (swapped, so rules referencing it keep working).
pub fn maxelem(cap: u32) -> u32 {
    cap
}

/// Initial hash size: a power of two near half the cap, within ipset's sensible range.
pub fn hashsize(cap: u32) -> u32 {
    (cap / 2).clamp(1024, 1 << 18).next_power_of_two()
}

/// The kernel timeout for a ban ending at `expires`.
pub fn timeout_for(expires: i64, now: i64) -> u32 {
    let left = expires.saturating_sub(now).clamp(1, i64::from(MAX_TIMEOUT));
    left as u32
}

/// The kernel set sipban wants for a family, from the config.
pub fn set_spec(settings: &Settings, family: Family) -> SetSpec {
    let s = settings.sets.get(family);
    SetSpec {
        name: s.name.clone(),
        family,
        maxelem: maxelem(s.cap),
        hashsize: hashsize(s.cap),
    }
}

use crate::model::Desired;
use ipnet::IpNet;
use plan::{CurrentSet, FamilyPlan};

/// What a backend saw of every set at once, before planning (headers and counts: the mirror
/// check, and leftover temporary sets for the apply).
pub type Survey = ipset::Snapshot;

/// The kernel side of the pipeline: read what a set holds, apply one family's plan. The ipset
/// backend talks to the kernel; the dry-run backend records what it was asked to do. The
/// caller never knows which (cs-firewall-bouncer's Backend, with the plan handed in whole).
pub trait SetBackend {
    /// For logs and the run report.
    fn name(&self) -> &'static str;
    /// Whether it changes the kernel.
    fn changes_kernel(&self) -> bool;
    /// Start a look at every set; finished by [`PendingSurvey::finish`] (it may run in another
    /// process while the caller decides).
    fn survey_start(&self) -> PendingSurvey;
    /// What the set holds now, exactly (`exists == false` when it does not exist).
    fn read(&self, spec: &SetSpec) -> Result<CurrentSet, ipset::IpsetError>;
    /// The set's header and entry count, when it exists.
    fn header(&self, name: &str) -> Result<Option<(ipset::SetHeader, usize)>, ipset::IpsetError>;
    /// Apply one family's plan, verify the count, and fall back to a rebuild once if a diff
    /// left the set with an unexpected size. `desired` is everything the set should hold (a
    /// rebuild's content); a missing set is created.
    fn apply(
        &self,
        spec: &SetSpec,
        plan: &FamilyPlan,
        desired: &[Desired],
        survey: Option<&Survey>,
        now: i64,
    ) -> anyhow::Result<()>;
    /// Make the set hold exactly `entries`, atomically (a missing set is created): for a set
    /// that does not exist yet, so that a ban or a real-time detection protects at once.
    fn replace(&self, spec: &SetSpec, entries: &[(IpNet, u32)]) -> anyhow::Result<()>;
    /// Delete, then add (or re-time) a few entries in place, in one batch: the real-time path
    /// and manual bans. The caller keeps the result under the cap (deletes go first, so the
    /// live set never holds more than the larger of its size before and after).
    fn change(&self, spec: &SetSpec, adds: &[(IpNet, u32)], dels: &[IpNet]) -> anyhow::Result<()>;
    /// Why this backend applies `plan` (a diff) as a full rebuild instead, if it does.
    fn prefers_replace(&self, _plan: &FamilyPlan) -> Option<String> {
        None
    }
    /// Whether its sets refuse overlapping members (nft interval sets): callers then make the
    /// desired entries disjoint ([`plan::make_disjoint`]) before planning.
    fn disjoint(&self) -> bool {
        false
    }
    /// Apply both families' plans (`specs`, `plans` and `desired` are v4 then v6), one result
    /// per family. By default each family is applied on its own with [`SetBackend::apply`];
    /// nft applies both in one transaction (both fail, or neither).
    fn apply_both(
        &self,
        specs: &[SetSpec; 2],
        plans: &[FamilyPlan],
        desired: [&[Desired]; 2],
        survey: Option<&Survey>,
        now: i64,
    ) -> [anyhow::Result<()>; 2] {
        [0, 1].map(|i| self.apply(&specs[i], &plans[i], desired[i], survey, now))
    }
    /// Whether a diff may be planned against the mirror of the last complete apply without
    /// reading the set back: the backend's diff fails whole (and falls back to a full
    /// replace) when the set is not what the mirror says in a way the diff depends on (nft:
    /// a delete of a member that is gone, or a table that was lost). Entries added or removed
    /// by hand elsewhere are then found by the read-back at least every [`mirror::MAX_AGE`].
    fn diff_checks_itself(&self) -> bool {
        false
    }
    /// Whether a successful [`SetBackend::apply_both`] also put the rules `firewall install`
    /// recorded in place (nft re-declares them in its transaction), so the rule check after
    /// it has nothing to find.
    fn declares_rules(&self) -> bool {
        false
    }
}

/// A survey in progress (ipset's runs in another process), or already done (nft's).
pub struct PendingSurvey(Option<Result<ipset::PendingSnapshot, Survey>>);

impl PendingSurvey {
    pub fn finish(self) -> Option<Survey> {
        match self.0? {
            Err(done) => Some(done),
            Ok(pending) => match pending.finish() {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::debug!("cannot list the kernel sets: {e}");
                    None
                }
            },
        }
    }
}

/// The entries of `desired` with their kernel timeouts.
fn with_timeouts(desired: &[Desired], now: i64) -> Vec<(IpNet, u32)> {
    desired
        .iter()
        .map(|d| (d.net, timeout_for(d.expires, now)))
        .collect()
}

impl SetBackend for ipset::Ipset {
    fn name(&self) -> &'static str {
        "ipset"
    }

    fn changes_kernel(&self) -> bool {
        true
    }

    fn survey_start(&self) -> PendingSurvey {
        PendingSurvey(Some(Ok(self.snapshot_start())))
    }

    fn read(&self, spec: &SetSpec) -> Result<CurrentSet, ipset::IpsetError> {
        Ok(match ipset::Ipset::read(self, &spec.name)? {
            None => CurrentSet::default(),
            Some(k) => CurrentSet::new(true, k.header.matches(spec), k.members),
        })
    }

    fn header(&self, name: &str) -> Result<Option<(ipset::SetHeader, usize)>, ipset::IpsetError> {
        ipset::Ipset::header(self, name)
    }

    fn apply(
        &self,
        spec: &SetSpec,
        plan: &FamilyPlan,
        desired: &[Desired],
        survey: Option<&Survey>,
        now: i64,
    ) -> anyhow::Result<()> {
        // A rebuild's batch destroys a leftover temporary set itself; an in-place diff would
        // leave one (from a run killed between swap and destroy) lying around, so look for it.
        if plan.rebuild.is_none() {
            let removed = match survey {
                Some(s) => self.destroy_leftover_tmp_in(spec, s)?,
                None => self.destroy_leftover_tmp(spec)?,
            };
            if removed {
                tracing::info!(set = %spec.name, "removed a temporary set left by an interrupted run");
            }
        }
        // Nothing to change: the count was just checked (against the mirror, or by reading
        // the set back), so there is nothing to verify either.
        if plan.is_noop() && plan.before == plan.after {
            return Ok(());
        }
        if plan.rebuild.is_some() {
            match survey.map(|s| s.info(&spec.name)) {
                Some(Ok(live)) => self.rebuild_known(spec, &with_timeouts(desired, now), live)?,
                _ => self.rebuild(spec, &with_timeouts(desired, now))?,
            }
        } else if !plan.is_noop() {
            let mut adds = plan.adds.clone();
            adds.extend_from_slice(&plan.refreshes);
            match self.apply_diff(spec, &adds, &plan.dels) {
                Ok(()) => {}
                // The kernel still counts entries whose timeout ran out and that its garbage
                // collector has not removed yet: at the cap, an add can find the set full. A
                // rebuild holds exactly the desired entries (never more than the cap).
                Err(e) if e.to_string().contains("is full") => {
                    tracing::warn!(set = %spec.name, "{e}; rebuilding the set instead");
                    self.rebuild(spec, &with_timeouts(desired, now))?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let count = ipset::Ipset::header(self, &spec.name)?.map(|(_, n)| n);
        if count == Some(plan.after) {
            return Ok(());
        }
        if plan.rebuild.is_none() {
            tracing::warn!(
                set = %spec.name,
                "after the diff the set holds {count:?} entries, expected {}; rebuilding",
                plan.after
            );
            self.rebuild(spec, &with_timeouts(desired, now))?;
            let count = ipset::Ipset::header(self, &spec.name)?.map(|(_, n)| n);
            if count == Some(plan.after) {
                return Ok(());
            }
        }
        anyhow::bail!(
            "after the rebuild the set holds {count:?} entries, expected {}",
            plan.after
        )
    }

    fn replace(&self, spec: &SetSpec, entries: &[(IpNet, u32)]) -> anyhow::Result<()> {
        Ok(self.rebuild(spec, entries)?)
    }

    fn change(&self, spec: &SetSpec, adds: &[(IpNet, u32)], dels: &[IpNet]) -> anyhow::Result<()> {
        Ok(self.apply_diff(spec, adds, dels)?)
    }
}

/// The recording backend of `--dry-run`: reads through to the kernel when it can (read-only
/// commands need no root), changes nothing, and keeps what it was asked to apply.
pub struct DryRun<'a> {
    pub reader: &'a dyn SetBackend,
    pub recorded: std::cell::RefCell<Vec<String>>,
}

impl<'a> DryRun<'a> {
    pub fn new(reader: &'a dyn SetBackend) -> Self {
        DryRun {
            reader,
            recorded: Default::default(),
        }
    }
}

impl SetBackend for DryRun<'_> {
    fn name(&self) -> &'static str {
        "dry-run"
    }

    fn changes_kernel(&self) -> bool {
        false
    }

    fn survey_start(&self) -> PendingSurvey {
        self.reader.survey_start()
    }

    fn read(&self, spec: &SetSpec) -> Result<CurrentSet, ipset::IpsetError> {
        self.reader.read(spec)
    }

    fn header(&self, name: &str) -> Result<Option<(ipset::SetHeader, usize)>, ipset::IpsetError> {
        self.reader.header(name)
    }

    fn disjoint(&self) -> bool {
        self.reader.disjoint()
    }

    fn diff_checks_itself(&self) -> bool {
        self.reader.diff_checks_itself()
    }

    fn prefers_replace(&self, plan: &FamilyPlan) -> Option<String> {
        self.reader.prefers_replace(plan)
    }

    fn apply(
        &self,
        spec: &SetSpec,
        plan: &FamilyPlan,
        _desired: &[Desired],
        _survey: Option<&Survey>,
        _now: i64,
    ) -> anyhow::Result<()> {
        self.recorded.borrow_mut().push(format!(
            "{}: +{} -{} ~{}{}",
            spec.name,
            plan.adds.len(),
            plan.dels.len(),
            plan.refreshes.len(),
            if plan.rebuild.is_some() {
                " (rebuild)"
            } else {
                ""
            }
        ));
        Ok(())
    }

    fn replace(&self, spec: &SetSpec, entries: &[(IpNet, u32)]) -> anyhow::Result<()> {
        self.recorded
            .borrow_mut()
            .push(format!("{}: = {}", spec.name, entries.len()));
        Ok(())
    }

    fn change(&self, spec: &SetSpec, adds: &[(IpNet, u32)], dels: &[IpNet]) -> anyhow::Result<()> {
        self.recorded
            .borrow_mut()
            .push(format!("{}: +{} -{}", spec.name, adds.len(), dels.len()));
        Ok(())
    }
}

impl SetBackend for nft::Nft {
    fn name(&self) -> &'static str {
        "nft"
    }

    fn changes_kernel(&self) -> bool {
        true
    }

    /// See [`nft::Nft::survey`]: what the sets should be, without running nft.
    fn survey_start(&self) -> PendingSurvey {
        match self.survey() {
            Ok(s) => PendingSurvey(Some(Err(s))),
            Err(e) => {
                tracing::debug!("cannot list table inet {}: {e}", nft::TABLE);
                PendingSurvey(None)
            }
        }
    }

    fn read(&self, spec: &SetSpec) -> Result<CurrentSet, ipset::IpsetError> {
        Ok(match nft::Nft::read(self, &spec.name)? {
            None => CurrentSet::default(),
            Some(k) => CurrentSet::new(true, k.header.matches(spec), k.members),
        })
    }

    fn header(&self, name: &str) -> Result<Option<(ipset::SetHeader, usize)>, ipset::IpsetError> {
        nft::Nft::header(self, name)
    }

    /// One family in one transaction: a full replace for a rebuild, else the diff; a diff
    /// that fails (an entry timed out since the read) is applied as a full replace instead.
    /// A sync applies both families at once ([`SetBackend::apply_both`]).
    fn apply(
        &self,
        spec: &SetSpec,
        plan: &FamilyPlan,
        desired: &[Desired],
        _survey: Option<&Survey>,
        now: i64,
    ) -> anyhow::Result<()> {
        match nft_part(plan, desired, now) {
            nft::Part::Keep => Ok(()),
            nft::Part::Replace(all) => Ok(nft::Nft::replace(self, spec, &all)?),
            nft::Part::Diff { adds, dels } => {
                if let Err(e) = self.diff(spec, &adds, &dels) {
                    tracing::warn!(set = %spec.name, "{e}; replacing the set instead");
                    nft::Nft::replace(self, spec, &with_timeouts(desired, now))?;
                }
                Ok(())
            }
        }
    }

    /// Both families in one `nft -f` transaction, which also checks the table's mark (see
    /// [`nft`]) and, with `firewall install` recorded, re-declares the chain and its rules;
    /// when it fails, one more transaction (the same rules) replaces every set and sets the
    /// mark.
    fn apply_both(
        &self,
        specs: &[SetSpec; 2],
        plans: &[FamilyPlan],
        desired: [&[Desired]; 2],
        _survey: Option<&Survey>,
        now: i64,
    ) -> [anyhow::Result<()>; 2] {
        let parts: Vec<(&SetSpec, nft::Part)> = (0..2)
            .map(|i| (&specs[i], nft_part(&plans[i], desired[i], now)))
            .collect();
        let chains = self.chains();
        let first = self.transaction("nft -f - (apply)", &parts, nft::Mark::Check, chains);
        let Err(e) = first else {
            return [Ok(()), Ok(())];
        };
        match (e.to_string().contains(nft::MARK_SET), chains) {
            // The rules were recorded, so the table was there: something removed it.
            (true, Some(_)) => tracing::warn!(
                "table inet {} was removed or emptied outside sipban (`nft flush ruleset`?): \
                 refilling every set and putting the drop rules back",
                nft::TABLE
            ),
            (true, None) => tracing::info!(
                "table inet {} was not filled by sipban since it was created (first run, an \
                 upgrade, or `nft flush ruleset`): replacing every set",
                nft::TABLE
            ),
            (false, _) => tracing::warn!("{e}; replacing every set instead"),
        }
        let parts: Vec<(&SetSpec, nft::Part)> = (0..2)
            .map(|i| {
                (
                    &specs[i],
                    nft::Part::Replace(with_timeouts(desired[i], now)),
                )
            })
            .collect();
        let what = "nft -f - (replace every set)";
        let done = self.transaction(what, &parts, nft::Mark::Set, chains);
        let done = done.map_err(|e| {
            specs
                .iter()
                .find_map(|s| self.refuse_incompatible(s).err())
                .unwrap_or(e)
                .to_string()
        });
        [0, 1].map(|_| done.clone().map_err(anyhow::Error::msg))
    }

    fn replace(&self, spec: &SetSpec, entries: &[(IpNet, u32)]) -> anyhow::Result<()> {
        Ok(nft::Nft::replace(self, spec, entries)?)
    }

    fn change(&self, spec: &SetSpec, adds: &[(IpNet, u32)], dels: &[IpNet]) -> anyhow::Result<()> {
        if self.diff(spec, adds, dels).is_ok() {
            return Ok(());
        }
        // An add inside (or around) a member, or a delete of a member that timed out: the
        // same change fitted to what the set holds now.
        Ok(self.diff_against_current(spec, adds, dels)?)
    }

    fn disjoint(&self) -> bool {
        true
    }

    fn diff_checks_itself(&self) -> bool {
        true
    }

    fn declares_rules(&self) -> bool {
        self.chains().is_some()
    }
}

/// A family's plan as its part of an nft transaction.
fn nft_part(plan: &FamilyPlan, desired: &[Desired], now: i64) -> nft::Part {
    if plan.rebuild.is_some() {
        return nft::Part::Replace(with_timeouts(desired, now));
    }
    if plan.is_noop() {
        return nft::Part::Keep;
    }
    let mut adds = plan.adds.clone();
    adds.extend_from_slice(&plan.refreshes);
    nft::Part::Diff {
        adds,
        dels: plan.dels.clone(),
    }
}

/// The kernel backend the config chose: ipset or nft.
#[derive(Clone, Debug)]
pub enum Kernel {
    Ipset(ipset::Ipset),
    Nft(nft::Nft),
}

impl Kernel {
    /// The backend for `settings`: `auto` resolved on this host (see [`detect`]). Refuses when
    /// the other backend's rules are live (recorded by `firewall install`): the two must never
    /// drop from the same bans at once, so switching goes through `sipban firewall remove`.
    pub fn open(settings: &Settings) -> anyhow::Result<Kernel> {
        let kernel = match Kernel::for_choice(resolve(settings.backend)) {
            // With nft rules recorded, a transaction that refills every set re-declares them
            // too (see `nft`).
            Kernel::Nft(n) => Kernel::Nft(
                n.for_sets(vec![
                    settings.sets.v4.name.clone(),
                    settings.sets.v6.name.clone(),
                ])
                .with_record(&settings.state_dir),
            ),
            k => k,
        };
        kernel.refuse_other(settings)?;
        Ok(kernel)
    }

    /// The backend the config selects, for commands that only read the sets (`status`,
    /// `explain`, the metrics): `auto` resolved, without [`Kernel::open`]'s refusal (a read
    /// changes nothing, and it should still show what is there).
    pub fn reader(settings: &Settings) -> Kernel {
        match Kernel::for_choice(resolve(settings.backend)) {
            Kernel::Nft(n) => Kernel::Nft(n.for_sets(vec![
                settings.sets.v4.name.clone(),
                settings.sets.v6.name.clone(),
            ])),
            k => k,
        }
    }

    /// The set's entry count and, where the backend knows it, how many kernel objects use it
    /// (ipset's references; nft's rules live in sipban's own table, see `firewall status`).
    pub fn size(&self, name: &str) -> Result<Option<(usize, Option<u32>)>, ipset::IpsetError> {
        match self {
            Kernel::Ipset(i) => Ok(i.info(name)?.map(|x| (x.entries, Some(x.references)))),
            Kernel::Nft(n) => Ok(n.header(name)?.map(|(_, count)| (count, None))),
        }
    }

    /// The backend for a resolved choice, without the check.
    pub fn for_choice(choice: BackendChoice) -> Kernel {
        match choice {
            BackendChoice::Nft => Kernel::Nft(nft::Nft::new()),
            _ => Kernel::Ipset(ipset::Ipset::new()),
        }
    }

    pub fn choice(&self) -> BackendChoice {
        match self {
            Kernel::Ipset(_) => BackendChoice::Ipset,
            Kernel::Nft(_) => BackendChoice::Nft,
        }
    }

    pub fn as_backend(&self) -> &dyn SetBackend {
        match self {
            Kernel::Ipset(i) => i,
            Kernel::Nft(n) => n,
        }
    }

    /// The ipset tool (for the ipset rules' own set checks; with nft a default one).
    pub fn ipset(&self) -> ipset::Ipset {
        match self {
            Kernel::Ipset(i) => i.clone(),
            Kernel::Nft(_) => ipset::Ipset::new(),
        }
    }

    /// An error when `firewall install` recorded rules of the other backend.
    pub fn refuse_other(&self, settings: &Settings) -> anyhow::Result<()> {
        let marker = rules::Marker::load(&settings.state_dir)?;
        match marker {
            Some(m) if m.set_backend != self.choice() => anyhow::bail!(
                "the firewall rules recorded by `sipban firewall install` use the {} backend, \
                 but the config selects {}: the two backends never run at once; run \
                 `sipban firewall remove` (it removes the recorded {} rules), then \
                 `sipban firewall install` with the new backend",
                m.set_backend.label(),
                self.choice().label(),
                m.set_backend.label()
            ),
            _ => Ok(()),
        }
    }
}

use crate::config::sets::BackendChoice;

/// `auto` decided on this host; `ipset` and `nft` as they are.
pub fn resolve(choice: BackendChoice) -> BackendChoice {
    match choice {
        BackendChoice::Auto => detect().choice,
        c => c,
    }
}

/// What `auto` found on this host.
#[derive(Clone, Debug)]
pub struct Detected {
    pub choice: BackendChoice,
    /// Why, in a sentence.
    pub why: String,
    /// The host's firewall is nftables and no iptables-legacy rule exists.
    pub nftables_only: bool,
}

/// `auto`: nft when `nft list ruleset` works and `iptables-legacy-save` (when installed) shows
/// no rule; ipset otherwise. Reads only.
pub fn detect() -> Detected {
    let nft = std::process::Command::new("nft")
        .args(["list", "tables"])
        .stdin(std::process::Stdio::null())
        .output();
    let nft_ok = matches!(&nft, Ok(o) if o.status.success());
    let legacy_rules = ["iptables-legacy-save", "ip6tables-legacy-save"]
        .iter()
        .filter_map(|tool| {
            std::process::Command::new(tool)
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .output()
                .ok()
        })
        .any(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.starts_with("-A ") || l.starts_with("-I "))
        });
    let (choice, why) = match (nft_ok, legacy_rules) {
        (true, false) => (
            BackendChoice::Nft,
            "the firewall is nftables and no iptables-legacy rule exists".to_string(),
        ),
        (true, true) => (
            BackendChoice::Ipset,
            "iptables-legacy rules exist next to nftables".to_string(),
        ),
        (false, _) => (
            BackendChoice::Ipset,
            "nft is not usable here (not installed, or not root)".to_string(),
        ),
    };
    Detected {
        choice,
        why,
        nftables_only: nft_ok && !legacy_rules,
    }
}
