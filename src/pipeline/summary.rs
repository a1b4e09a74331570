//! What a sync did or would do: the [`RunReport`] (`Display` for people, `Serialize` for
//! `--json`), its outcome, and the counts-only summary the run history keeps.
//!
//! Plain data and formatting: this module must never read the kernel or the state, and must
//! print only what the run recorded (every line is true about that run).

use crate::backend::plan::FamilyPlan;
use crate::lock::LockError;
use crate::net;
use crate::pipeline::decide::{AllowHit, SourceCounts};
use crate::pipeline::detect::AsteriskReport;
use crate::source::apiban::ApibanRun;
use crate::source::crowdsec::CrowdsecRun;
use crate::source::feed::FeedStatus;
use crate::source::kernlog;
use serde::Serialize;
use std::fmt;

/// How a run ended; also the process exit code (see the README).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Everything worked.
    Ok,
    /// The sets are right for what could be read, but at least one source failed; its last
    /// good entries were kept.
    Partial,
    /// Nothing could be applied (or the plan could not be made); the live sets are unchanged.
    Failed,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Partial => "partial",
            Outcome::Failed => "failed",
        }
    }
}

/// What the plan was diffed against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineKind {
    Kernel,
    SavedState,
    Empty,
}

#[derive(Clone, Debug, Serialize)]
pub struct SourceReport {
    pub name: String,
    pub kind: &'static str,
    pub priority: u16,
    /// Feeds only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feed: Option<FeedReport>,
    /// APIBAN only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apiban: Option<ApibanRun>,
    /// CrowdSec only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crowdsec: Option<CrowdsecRun>,
    /// Asterisk detector only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asterisk: Option<AsteriskReport>,
    /// Kernel-log detector only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<kernlog::Detections>,
    pub counts: SourceCounts,
}

impl SourceReport {
    /// A log detector's per-input counts (`[{path, read, parsed, matched, refused, unparsed}]`),
    /// `null` for other sources: what `status` and the metrics show per input.
    pub fn inputs(&self) -> serde_json::Value {
        let mut rows: Vec<serde_json::Value> = match (&self.asterisk, &self.kernel) {
            (Some(a), _) => a
                .files
                .iter()
                .map(|f| input_row(&f.path, &f.counts))
                .collect(),
            (None, Some(k)) => k
                .files
                .iter()
                .map(|f| input_row(&f.path, &f.counts))
                .collect(),
            (None, None) => return serde_json::Value::Null,
        };
        // The journal match, when read, is an input like a file (named by journal and match).
        let journal = match (&self.asterisk, &self.kernel) {
            (Some(a), _) => a.journal.as_ref().map(|j| (&j.journal, &j.counts)),
            (None, Some(k)) => k.journal.as_ref().map(|j| (&j.journal, &j.counts)),
            (None, None) => None,
        };
        if let Some((name, counts)) = journal {
            rows.push(input_row(std::path::Path::new(name), counts));
        }
        serde_json::Value::Array(rows)
    }
}

fn input_row(path: &std::path::Path, c: &crate::source::input::InputCounts) -> serde_json::Value {
    let mut v = serde_json::to_value(c).unwrap_or(serde_json::Value::Null);
    if let Some(m) = v.as_object_mut() {
        m.insert("path".into(), path.display().to_string().into());
    }
    v
}

#[derive(Clone, Debug, Serialize)]
pub struct FeedReport {
    pub location: String,
    #[serde(flatten)]
    pub status: FeedStatus,
    pub bytes: u64,
    pub invalid: usize,
    pub invalid_samples: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct AllowSummary {
    pub config: usize,
    pub own_addresses: usize,
    pub resolvers: usize,
    pub feed_hosts: usize,
    /// Networks this host is on (soft rules: see `gate::SourcePolicy::ban_on_link`).
    pub on_link: usize,
    /// Addresses and networks of the peers in Asterisk's configuration.
    pub asterisk_peers: usize,
    /// What could not be protected as configured (an unreadable Asterisk configuration, a
    /// network too broad); the run report lists them under its warnings.
    #[serde(skip)]
    pub notes: Vec<String>,
    pub hits: Vec<AllowHit>,
}

/// Everything a run did or would do. `Display` is for people, `Serialize` for `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub dry_run: bool,
    pub started: i64,
    pub finished: i64,
    pub state: String,
    pub baseline: BaselineKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_note: Option<String>,
    pub sources: Vec<SourceReport>,
    pub allowlist: AllowSummary,
    pub sets: Vec<FamilyPlan>,
    pub entries_held: usize,
    pub forgotten: usize,
    pub dropped_unknown_source: usize,
    pub applied: bool,
    pub errors: Vec<String>,
    /// What the admin should know but did not fail the run: local detections on this host's
    /// own networks, peers that could not be protected.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub outcome: Outcome,
    /// This run found the state database rebuilt after a loss or corruption and took in the
    /// live kernel sets (exit 6 unless something worse happened).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_rebuilt: Option<crate::store::health::Rebuilt>,
    /// The state could not be saved at the end of the run: what had been applied, and why
    /// (exit 5 for disk full, read-only or permission denied, else 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_saved: Option<NotSaved>,
    /// Upstream reporting of this run's own detections (`report:` section).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<crate::report::ReportRun>,
    /// The check of the firewall rules `firewall install` recorded (none before an install).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firewall: Option<crate::backend::rules::Check>,
}

/// The state could not be saved after the apply step.
#[derive(Clone, Debug, Serialize)]
pub struct NotSaved {
    /// What was applied and why it was not saved, in one sentence.
    pub message: String,
    /// Disk full, read-only or permission denied (exit 5); otherwise exit 1.
    pub storage: bool,
}

/// A run that could not start or plan at all.
#[derive(Debug)]
pub enum SyncError {
    Locked(LockError),
    Fatal(anyhow::Error),
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Locked(e) => write!(f, "{e}"),
            SyncError::Fatal(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for SyncError {}

impl From<anyhow::Error> for SyncError {
    fn from(e: anyhow::Error) -> Self {
        SyncError::Fatal(e)
    }
}

impl RunReport {
    /// Counts only (no address lists): what the run history stores.
    pub fn summary_json(&self) -> serde_json::Value {
        serde_json::json!({
            "dry_run": self.dry_run,
            "outcome": self.outcome,
            "baseline": self.baseline,
            "entries_held": self.entries_held,
            "errors": self.errors,
            "sources": self.sources.iter().map(|s| serde_json::json!({
                "name": s.name,
                "kind": s.kind,
                "status": s.feed.as_ref().map(|f| &f.status),
                "apiban": s.apiban,
                "crowdsec": s.crowdsec,
                "counts": s.counts,
                "inputs": s.inputs(),
            })).collect::<Vec<_>>(),
            "sets": self.sets.iter().map(|p| serde_json::json!({
                "family": p.family,
                "set": p.set,
                "cap": p.cap,
                "before": p.before,
                "after": p.after,
                "added": p.adds.len(),
                "deleted": p.dels.len(),
                "refreshed": p.refreshes.len(),
                "evicted": p.evicted,
                "rebuild": p.rebuild,
                "outside": p.outside,
            })).collect::<Vec<_>>(),
        })
    }
}

/// How many addresses of each list the human output shows.
const SHOW: usize = 25;

impl RunReport {
    fn fmt_head(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dry_run {
            writeln!(
                f,
                "sipban sync --dry-run: the plan below was NOT applied; nothing was changed."
            )?;
        } else if let Some(n) = &self.not_saved {
            writeln!(f, "sipban sync: STATE NOT SAVED: {}", n.message)?;
        } else {
            writeln!(
                f,
                "sipban sync: {}",
                match self.outcome {
                    Outcome::Ok => "done",
                    Outcome::Partial =>
                        "done, with source errors (their last good entries were kept)",
                    Outcome::Failed => "FAILED: the live sets were left as they were",
                }
            )?;
        }
        if let Some(r) = &self.state_rebuilt {
            writeln!(
                f,
                "STATE REBUILT: {} ({}); {} manual entries read back from manual.list, {} entries taken in from the live kernel sets, every feed downloaded afresh{}",
                crate::clock::fmt_time(r.at),
                r.reason,
                r.manual_restored,
                r.kernel_entries,
                r.moved_to
                    .as_deref()
                    .map(|p| format!("; the old database is at {p}"))
                    .unwrap_or_default()
            )?;
        }
        match (&self.baseline, &self.baseline_note) {
            (_, Some(note)) => writeln!(f, "compared against: {note}")?,
            (BaselineKind::Kernel, None) => writeln!(f, "compared against: the kernel sets")?,
            (b, None) => writeln!(f, "compared against: {b:?}")?,
        }
        Ok(())
    }

    fn fmt_sources(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "\nsources:")?;
        for s in &self.sources {
            let c = &s.counts;
            let status = match &s.feed {
                Some(fr) => match &fr.status {
                    FeedStatus::Fresh => format!("fresh ({} bytes)", fr.bytes),
                    FeedStatus::NotModified => "not modified (cached copy)".to_string(),
                    FeedStatus::NotDue { next_in } => {
                        format!(
                            "not due (next download in {})",
                            crate::clock::span(*next_in as i64)
                        )
                    }
                    FeedStatus::Failed(r) => format!("FAILED: {r}"),
                },
                None if s.kernel.is_some() => {
                    s.kernel.as_ref().map(|k| k.summary()).unwrap_or_default()
                }
                None if s.crowdsec.is_some() => s
                    .crowdsec
                    .as_ref()
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                None => match (&s.apiban, &s.asterisk) {
                    (Some(a), _) => a.to_string(),
                    (None, Some(a)) => {
                        let mut s = format!(
                            "{} lines read, {} failures matched, {} new bans, {} unattributed scanner timeouts, {} suspect lines not read (injection guard)",
                            a.counters.lines,
                            a.counters.matched,
                            a.bans.len(),
                            a.counters.timeouts_unattributed,
                            a.counters.suspect
                        );
                        if a.evicted > 0 {
                            s += &format!(
                                ", {} addresses evicted from the bounded failure counter (fewest failures first)",
                                a.evicted
                            );
                        }
                        s
                    }
                    (None, None) => String::new(),
                },
            };
            let head = format!(
                "  {:<20} {:<5} prio {:<4} {status}",
                s.name, s.kind, s.priority
            );
            writeln!(f, "{}", head.trim_end())?;
            let rejected: usize = c.rejected.values().sum();
            let mut line = format!(
                "  {:<20} listed {}, holds {}, in set {}",
                "", c.listed, c.held, c.in_set
            );
            if c.allowlisted > 0 {
                line.push_str(&format!(", allowlisted {}", c.allowlisted));
            }
            if c.expired > 0 {
                line.push_str(&format!(", expired {}", c.expired));
            }
            if c.delisted > 0 {
                line.push_str(&format!(", delisted {}", c.delisted));
            }
            if rejected > 0 {
                let why: Vec<String> = c
                    .rejected
                    .iter()
                    .map(|(r, n)| format!("{n} {}", r.describe()))
                    .collect();
                line.push_str(&format!(", rejected {rejected} ({})", why.join(", ")));
            }
            if let Some(fr) = &s.feed {
                if fr.invalid > 0 {
                    line.push_str(&format!(
                        ", {} unreadable lines (e.g. `{}`)",
                        fr.invalid,
                        fr.invalid_samples.first().map(String::as_str).unwrap_or("")
                    ));
                }
            }
            writeln!(f, "{line}")?;
        }
        if self.sources.is_empty() {
            writeln!(f, "  (none configured)")?;
        }
        Ok(())
    }

    fn fmt_allowlist(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.allowlist;
        writeln!(
            f,
            "\nallowlist: {} from config, {} own addresses, {} on-link networks, {} DNS resolvers, {} Asterisk peers, {} feed servers",
            a.config, a.own_addresses, a.on_link, a.resolvers, a.asterisk_peers, a.feed_hosts
        )?;
        for h in a.hits.iter().take(SHOW) {
            writeln!(
                f,
                "  {} {} by {} ({})",
                net::display_net(&h.listed),
                if h.partial {
                    "partly protected (the rest is kept)"
                } else {
                    "protected"
                },
                net::display_net(&h.rule),
                h.reason
            )?;
        }
        if a.hits.len() > SHOW {
            writeln!(f, "  ... and {} more", a.hits.len() - SHOW)?;
        }
        Ok(())
    }

    fn fmt_sets(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "\nsets:")?;
        for p in &self.sets {
            writeln!(
                f,
                "  {} ({}): {} -> {} of cap {}: +{} added, -{} deleted, {} timeouts refreshed, {} evicted over the cap",
                p.set,
                p.family,
                p.before,
                p.after,
                p.cap,
                p.adds.len(),
                p.dels.len(),
                p.refreshes.len(),
                p.evicted
            )?;
            match &p.rebuild {
                Some(why) => writeln!(f, "    method: full rebuild, atomic ({why})")?,
                None if p.is_noop() => writeln!(f, "    method: nothing to change")?,
                None => writeln!(f, "    method: one in-place batch")?,
            }
            for (n, t) in p.adds.iter().take(SHOW) {
                writeln!(
                    f,
                    "    + {} (for {})",
                    net::display_net(n),
                    crate::clock::span(i64::from(*t))
                )?;
            }
            if p.adds.len() > SHOW {
                writeln!(
                    f,
                    "    + ... and {} more (--json lists all)",
                    p.adds.len() - SHOW
                )?;
            }
            for n in p.dels.iter().take(SHOW) {
                writeln!(f, "    - {}", net::display_net(n))?;
            }
            if p.dels.len() > SHOW {
                writeln!(
                    f,
                    "    - ... and {} more (--json lists all)",
                    p.dels.len() - SHOW
                )?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_head(f)?;
        self.fmt_sources(f)?;
        if !self.warnings.is_empty() {
            writeln!(f, "\nwarnings:")?;
            for w in &self.warnings {
                writeln!(f, "  {w}")?;
            }
        }
        self.fmt_allowlist(f)?;
        self.fmt_sets(f)?;
        if self.forgotten > 0 {
            writeln!(
                f,
                "\n{} candidates far below the cap were dropped from the state",
                self.forgotten
            )?;
        }
        if let Some(u) = &self.upstream {
            write!(f, "\n{u}")?;
        }
        if !self.errors.is_empty() {
            writeln!(f, "\nerrors:")?;
            for e in &self.errors {
                writeln!(f, "  {e}")?;
            }
        }
        Ok(())
    }
}
