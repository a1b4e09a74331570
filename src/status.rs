//! `sipban status [--json]`: how sipban is doing, in one screen. It is also the data behind
//! the Prometheus textfile ([`crate::metrics`]), so both always tell the same story.
//!
//! Everything comes from the saved state (last run and its summary, per-source marks, feed
//! metadata, manual bans and unbans) plus, when readable, the kernel sets' headers (one cheap
//! `ipset list -t` per set). This module must never write anything and never touch the network.

use crate::backend::Kernel;
use crate::config::Settings;
use crate::inspect::fmt_time;
use crate::net::Family;
use crate::pipeline::sync::Sources;
use crate::source::input::InputCounts;
use crate::store::Store;
use anyhow::Result;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;

#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub now: i64,
    pub state: String,
    pub has_state: bool,
    pub last_run: Option<LastRun>,
    pub sources: Vec<SourceStatus>,
    pub sets: Vec<SetStatus>,
    pub manual: ManualStatus,
    /// The configured log detectors.
    pub detectors: Vec<DetectorStatus>,
    /// Upstream report sinks that are configured or still hold queued reports.
    pub report_queue: Vec<ReportQueue>,
    /// The state database was rebuilt after it was lost or found corrupt (the last time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_rebuilt: Option<StateRebuilt>,
    /// sipban's DROP rules and their counters.
    pub firewall: FirewallStatus,
    /// The daemon's SIP-on-the-wire inputs, as it last saved them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip_wire: Option<WireStatus>,
    /// The CrowdSec source and push, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crowdsec: Option<CrowdsecStatus>,
}

/// The daemon's wire inputs (HEP, live capture) as it last saved them (every 30 s while
/// packets arrive, and when it stops).
#[derive(Clone, Debug, Serialize)]
pub struct WireStatus {
    pub saved: i64,
    /// The counters run from this time (the daemon opened its inputs).
    pub since: i64,
    pub counters: std::collections::BTreeMap<String, u64>,
    /// Call-IDs held for attributing Asterisk's Timeout lines.
    pub callids: u64,
    /// What the configuration listens on (HEP, the capture's interfaces and ports).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inputs: Option<String>,
}

/// The CrowdSec source (pull) and the push, as `status` shows them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CrowdsecStatus {
    pub lapi_url: String,
    /// The last run's pull: `status`, `decisions`, `deleted`, `by_scope`, `ignored`,
    /// `invalid`, `bytes`, `millis` (see `source::crowdsec::CrowdsecRun`).
    pub last_pull: Option<serde_json::Value>,
    /// When a run last ended with the run history holding no error of the source.
    pub last_success: Option<i64>,
    pub last_error: Option<String>,
    /// The push side is configured (`machine_id`).
    pub push: bool,
    /// Alerts accepted by the LAPI, ever.
    pub pushed_total: i64,
    /// Alerts waiting in the queue.
    pub push_queued: u64,
    /// Alerts dropped (malformed, refused).
    pub push_refused_total: i64,
    pub last_push: Option<i64>,
}

/// sipban's DROP rules as `status` shows them (see `backend::rules`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct FirewallStatus {
    /// `firewall install` has run (its record exists): the rules are expected.
    pub installed: bool,
    pub backend: String,
    /// The recorded rules (present or not), or the rules found when none is recorded.
    pub rules: Vec<crate::backend::rules::Counted>,
    /// Why the rules could not be read (not root, no iptables).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Times a sync or `firewall check --repair` put missing rules back, and the last time.
    pub reinstalled_total: u64,
    pub last_reinstalled: Option<i64>,
}

/// The last rebuild of the state database (see `store::health`).
#[derive(Clone, Debug, Serialize)]
pub struct StateRebuilt {
    #[serde(flatten)]
    pub marker: crate::store::health::Rebuilt,
    /// Shown loudly until the admin removes the moved-aside copy (`moved_to`).
    pub current: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct LastRun {
    pub started: i64,
    pub finished: i64,
    pub outcome: String,
    pub errors: Vec<String>,
    /// Runs kept in the history.
    pub runs_recorded: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SourceStatus {
    pub name: String,
    pub kind: String,
    pub priority: u16,
    /// Unexpired marks of this source in the state.
    pub entries: u64,
    /// Of the last run's entries, how many were in a kernel set.
    pub in_set: Option<u64>,
    /// The last time the source was read successfully (feeds: downloaded or not modified).
    pub last_success: Option<i64>,
    pub staleness_seconds: Option<i64>,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    /// Feeds: `in backoff until T after N failures: <last error>` while a failed feed waits
    /// out its back-off (runs exit 3 meanwhile; `sync --retry-now` downloads at once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
    /// Feeds: when the next download is due (Unix time; at or before `now`: the next run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_download: Option<i64>,
    /// Asterisk detector: what its injection guard did in the last run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub injection_guard: Option<InjectionGuard>,
}

/// The Asterisk detector's injection guard in the last run (see `source::asterisk::guard`).
#[derive(Clone, Debug, Serialize)]
pub struct InjectionGuard {
    /// Records broken by a newline in an attacker field.
    pub injections: u64,
    /// Lines proven to be attacker text, dropped.
    pub injected: u64,
    /// Lines that may have been attacker text, not read: the guard's cost in genuine lines.
    pub suspect: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SetStatus {
    pub family: Family,
    pub name: String,
    pub cap: u32,
    /// Entries in the kernel set now, or (when it cannot be read) after the last run.
    pub entries: Option<u64>,
    pub from_kernel: bool,
    /// The count is the mirror of the last complete apply (nft; see `mirror_count`), not a
    /// listing: what the kernel holds unless it was changed outside sipban since.
    pub from_mirror: bool,
    /// Candidates that did not fit under the cap in the last run.
    pub evicted: u64,
    /// Kernel objects (firewall rules, list:set sets) that use the set; `None` when unknown.
    pub references: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DetectorStatus {
    /// The config section (`asterisk`, `kernel_log`).
    pub name: String,
    /// Addresses its bounded offence counter dropped to make room (the furthest from a ban
    /// first), in all runs; `None` when its saved state cannot be read.
    pub evictions: Option<u64>,
    /// The sources it is counting that have not reached a ban (`None`: no saved state, or
    /// unreadable).
    pub failing: Option<crate::pipeline::detect::Failing>,
    /// Per followed input, what the last run read of it (nothing is dropped silently).
    pub inputs: Vec<InputStatus>,
}

/// One input of a detector in the last run.
#[derive(Clone, Debug, Serialize)]
pub struct InputStatus {
    pub path: String,
    #[serde(flatten)]
    pub counts: InputCounts,
}

/// A detector's inputs in the last run, from its source's part of the run report.
fn inputs(detector: &str, last_sources: &[serde_json::Value]) -> Vec<InputStatus> {
    let source = match detector {
        crate::pipeline::detect::ASTERISK => crate::pipeline::detect::ASTERISK,
        _ => crate::source::kernlog::SOURCE,
    };
    let Some(last) = last_sources.iter().find(|s| s["name"] == source) else {
        return Vec::new();
    };
    last["inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| {
            Some(InputStatus {
                path: f["path"].as_str()?.to_string(),
                counts: serde_json::from_value(f.clone()).ok()?,
            })
        })
        .collect()
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ManualStatus {
    pub bans: u64,
    pub unbans: u64,
    pub allowlist: u64,
    /// Requests waiting for the lock holder.
    pub queued: u64,
}

/// One upstream report sink (`sipban report status` has the details).
#[derive(Clone, Debug, Serialize)]
pub struct ReportQueue {
    pub sink: String,
    pub queued: u64,
    /// Reports the sink accepted, in all runs.
    pub sent: u64,
    /// Reports it refused (not retried), in all runs.
    pub refused: u64,
}

/// What the Asterisk detector's injection guard did, from a source's part of the last run's
/// report.
fn injection_guard(source: &serde_json::Value) -> Option<InjectionGuard> {
    let c = &source["asterisk"]["counters"];
    Some(InjectionGuard {
        injections: c["injections"].as_u64()?,
        injected: c["injected"].as_u64()?,
        suspect: c["suspect"].as_u64()?,
    })
}

/// The saved state, read-only and checked: a corrupt database is said as such (exit 6),
/// never shown as if it were the state.
fn open_verified(state_dir: &std::path::Path) -> Result<Option<Store>> {
    let store = Store::open_read_only(state_dir)?;
    if let Some(s) = &store {
        s.verify()?;
    }
    Ok(store)
}

/// Gather the status. `ipset` is asked for set headers; without access the last run's
/// numbers are shown instead.
pub fn gather(settings: &Settings, ipset: &Kernel, now: i64) -> Result<Status> {
    let store = open_verified(&settings.state_dir)?;
    let sources = Sources::from_settings(settings);
    let mut st = Status {
        now,
        state: Store::db_path(&settings.state_dir).display().to_string(),
        has_state: store.is_some(),
        last_run: None,
        sources: Vec::new(),
        sets: Vec::new(),
        manual: ManualStatus::default(),
        detectors: Vec::new(),
        report_queue: Vec::new(),
        state_rebuilt: None,
        firewall: FirewallStatus::default(),
        sip_wire: None,
        crowdsec: None,
    };
    let mut summary = serde_json::Value::Null;
    let mut per_source_entries: HashMap<String, u64> = HashMap::new();
    let mut metas = HashMap::new();
    let (mut last_ok, mut failing_runs) = (HashMap::new(), HashMap::new());
    if let Some(s) = &store {
        if let Some(r) = s.last_run()? {
            summary = serde_json::from_str(&r.summary).unwrap_or(serde_json::Value::Null);
            st.last_run = Some(LastRun {
                started: r.started,
                finished: r.finished,
                outcome: r.outcome,
                errors: summary["errors"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|e| e.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
                runs_recorded: s.run_count().unwrap_or(0),
            });
        }
        // Through the store's loader: feeds are kept packed, not as rows.
        let sources = crate::pipeline::sync::Sources::from_settings(settings);
        let names = sources.names();
        for e in s.load_entries(&sources.index())? {
            for m in e.marks.iter().filter(|m| m.expires > now) {
                if let Some(name) = names.get(m.source as usize) {
                    *per_source_entries.entry(name.clone()).or_default() += 1;
                }
            }
        }
        metas = s.feed_metas()?;
        (last_ok, failing_runs) = run_history(s, &sources)?;
        st.manual.bans = per_source_entries
            .get(crate::pipeline::manual::SOURCE)
            .copied()
            .unwrap_or(0);
        (st.manual.unbans, st.manual.allowlist) = s.manual_counts();
        st.state_rebuilt = s.rebuilt()?.map(|marker| StateRebuilt {
            current: marker.is_current(),
            marker,
        });
        st.detectors = detectors(settings, s, now)?;
        st.sip_wire = WireStatus::saved(s)?.map(|mut w| {
            w.inputs = settings.sip_wire.as_ref().map(|c| c.describe());
            w
        });
        st.report_queue = report_sinks(settings, now)?;
    }
    st.manual.queued = queued_requests(settings);

    let last_sources = summary["sources"].as_array().cloned().unwrap_or_default();
    for d in &mut st.detectors {
        d.inputs = inputs(&d.name, &last_sources);
    }
    for (p, kind) in sources.policies.iter().zip(&sources.kinds) {
        let last = last_sources.iter().find(|s| s["name"] == p.name.as_str());
        let in_set = last.and_then(|s| s["counts"]["in_set"].as_u64());
        let (last_success, failures, last_error) = match metas.get(&p.name) {
            Some(m) => (m.last_success, m.consecutive_failures, m.last_error.clone()),
            None if *kind == "manual" || *kind == "recovered" => (None, 0, None),
            None => {
                let prefix = format!("{}:", p.name);
                let err = st
                    .last_run
                    .as_ref()
                    .and_then(|r| r.errors.iter().find(|e| e.starts_with(&prefix)).cloned());
                let runs = failing_runs.get(&p.name).copied().unwrap_or(0);
                (
                    last_ok.get(&p.name).copied(),
                    runs.max(u32::from(err.is_some())),
                    err,
                )
            }
        };
        let feed = settings.feeds.iter().find(|f| f.name == p.name);
        // A local file is read at every run; only downloads wait out an interval.
        let downloaded =
            feed.filter(|f| matches!(f.location, crate::config::FeedLocation::Http(_)));
        let next_download = match (downloaded, metas.get(&p.name)) {
            // A time saved under a clock that was ahead is due now (as the sync treats it).
            (Some(f), Some(m)) => Some(
                crate::source::feed::next_due(f, m)
                    .filter(|&t| !crate::clock::is_future(t, now.saturating_add(f.interval as i64)))
                    .unwrap_or(now),
            ),
            (Some(_), None) => Some(now),
            _ => None,
        };
        let backoff = metas.get(&p.name).and_then(|m| {
            let f = feed?;
            let due = crate::source::feed::next_due(f, m)?;
            (due > now)
                .then(|| crate::pipeline::gather::backoff(f, m))
                .flatten()
        });
        st.sources.push(SourceStatus {
            name: p.name.clone(),
            kind: kind.to_string(),
            priority: p.priority,
            entries: per_source_entries.get(&p.name).copied().unwrap_or(0),
            in_set,
            last_success,
            // Unknown when saved in the future (the clock was ahead): not "fresh".
            staleness_seconds: last_success
                .filter(|&t| !crate::clock::is_future(t, now))
                .map(|t| (now - t).max(0)),
            consecutive_failures: failures,
            last_error,
            backoff,
            next_download,
            injection_guard: last.and_then(injection_guard),
        });
    }

    st.sets = sets(settings, ipset, store.as_ref(), &summary, now);
    st.firewall = firewall(settings);
    st.crowdsec = crowdsec(settings, store.as_ref(), &last_sources, &st.sources, now);
    Ok(st)
}

impl WireStatus {
    /// What the daemon last saved, if it ever ran wire inputs.
    fn saved(s: &Store) -> Result<Option<WireStatus>> {
        Ok(s.blob(crate::source::wire::saved::KEY)?
            .and_then(|b| crate::source::wire::saved::SavedWire::decode(&b).ok())
            .map(|w| WireStatus {
                saved: w.saved,
                since: w.since,
                counters: w.counters,
                callids: w.callids_held,
                inputs: None,
            }))
    }

    fn show(&self, f: &mut fmt::Formatter<'_>, now: i64) -> fmt::Result {
        let c = |k: &str| self.counters.get(k).copied().unwrap_or(0);
        writeln!(
            f,
            "\nsip_wire (saved by the daemon {} ago, counted since {}):\n  {} HEP datagrams, {} from non-peers ignored, {} HEP refused, {} without the capture password, {} packets captured, {} malformed, {} clients evicted; {} Call-IDs held",
            crate::clock::span(now - self.saved),
            fmt_time(self.since),
            c("hep"),
            c("non_peer"),
            c("hep_refused"),
            c("hep_unauthenticated"),
            c("captured"),
            c("malformed"),
            c("evicted"),
            self.callids
        )?;
        let t = |k: &str| self.counters.get(k).copied();
        if let Some(streams) = t("tcp_streams") {
            writeln!(
                f,
                "  TCP: {streams} streams, {} messages, {} unverified segments ignored, {} streams dropped, {} evicted",
                c("tcp_messages"),
                c("tcp_unverified"),
                c("tcp_dropped"),
                c("tcp_evicted")
            )?;
        }
        if let Some(i) = &self.inputs {
            writeln!(f, "  configured: {i}")?;
        }
        Ok(())
    }
}

/// The configured detectors as their saved states hold them (inputs are filled in from the
/// last run's summary).
fn detectors(settings: &Settings, s: &Store, now: i64) -> Result<Vec<DetectorStatus>> {
    let mut out = Vec::new();
    for d in crate::pipeline::detect::configured(settings) {
        let blob = s.blob(d.state_key())?;
        let evictions = match &blob {
            Some(blob) => d.saved_evictions(blob),
            None => Some(0),
        };
        out.push(DetectorStatus {
            name: d.label().to_string(),
            evictions,
            failing: blob.and_then(|b| d.failing(&b, now)),
            inputs: Vec::new(),
        });
    }
    Ok(out)
}

/// The upstream report sinks that are configured or still hold queued reports.
fn report_sinks(settings: &Settings, now: i64) -> Result<Vec<ReportQueue>> {
    Ok(crate::report::status(settings, now)?
        .sinks
        .into_iter()
        .map(|v| ReportQueue {
            sink: v.sink.to_string(),
            queued: v.queue.total as u64,
            sent: v.reported_total.max(0) as u64,
            refused: v.refused_total.max(0) as u64,
        })
        .collect())
}

/// The kernel sets against their caps: read from the kernel, or the last run's numbers when
/// it cannot be read. With nft, the mirror of the last complete apply when there is one (see
/// [`mirror_count`]).
fn sets(
    settings: &Settings,
    ipset: &Kernel,
    store: Option<&Store>,
    summary: &serde_json::Value,
    now: i64,
) -> Vec<SetStatus> {
    let mut out = Vec::new();
    let last_sets = summary["sets"].as_array().cloned().unwrap_or_default();
    for family in [Family::V4, Family::V6] {
        let s = settings.sets.get(family);
        let last = last_sets.iter().find(|x| x["set"] == s.name.as_str());
        let mirrored = mirror_count(ipset, store, &s.name, now);
        let read = match mirrored {
            Some(n) => Ok(Some((n, None))),
            None => ipset.size(&s.name),
        };
        let (entries, from_kernel, references) = match read {
            Ok(Some((n, refs))) => (Some(n as u64), true, refs),
            Ok(None) => (Some(0), true, None),
            Err(_) => (last.and_then(|x| x["after"].as_u64()), false, None),
        };
        out.push(SetStatus {
            family,
            name: s.name.clone(),
            cap: s.cap,
            entries,
            from_kernel,
            from_mirror: mirrored.is_some(),
            evicted: last.and_then(|x| x["evicted"].as_u64()).unwrap_or(0),
            references,
        });
    }
    out
}

/// With nft, a set's entry count as the last complete apply left it (its mirror, entries not
/// yet expired), when no change was made since (the dirty marker is clear): nft counts a set
/// only by listing it whole (4 to 8 s for 262,144 entries on nft 1.0.6, for every `status`
/// and every metrics write). `None` otherwise, and always with ipset (whose count is cheap).
fn mirror_count(ipset: &Kernel, store: Option<&Store>, name: &str, now: i64) -> Option<usize> {
    use crate::backend::mirror;
    if !matches!(ipset, Kernel::Nft(_)) {
        return None;
    }
    let store = store?;
    if crate::pipeline::persist::kernel_changing(store).ok()? {
        return None;
    }
    let m = mirror::Mirror::decode(&store.blob(&mirror::key(name)).ok()??)?;
    let alive = m
        .entries
        .iter()
        .filter(|(_, expires)| *expires > now)
        .count();
    Some(alive)
}

/// The CrowdSec lines: the last run's pull, the source's health, and the push's counters.
fn crowdsec(
    settings: &Settings,
    store: Option<&Store>,
    last_sources: &[serde_json::Value],
    sources: &[SourceStatus],
    now: i64,
) -> Option<CrowdsecStatus> {
    use crate::report::queue;
    let c = settings.crowdsec.as_ref()?;
    let name = crate::source::crowdsec::SOURCE;
    let src = sources.iter().find(|s| s.name == name);
    let mut st = CrowdsecStatus {
        lapi_url: c.lapi_url.clone(),
        last_pull: last_sources
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["crowdsec"].clone())
            .filter(|v| !v.is_null()),
        last_success: src.and_then(|s| s.last_success),
        last_error: src.and_then(|s| s.last_error.clone()),
        push: c.machine_id.is_some(),
        ..CrowdsecStatus::default()
    };
    let q = store
        .map(Store::report_queue)
        .filter(|q| q.has_tables().unwrap_or(false));
    if let Some(q) = q {
        let total = |k: &str| q.state_int(&queue::key(queue::CROWDSEC, k)).ok().flatten();
        st.pushed_total = total("reported_total").unwrap_or(0);
        st.push_refused_total = total("refused_total").unwrap_or(0);
        st.last_push = total("last_success");
        st.push_queued = q
            .stats(queue::CROWDSEC, now, None)
            .map(|s| s.total as u64)
            .unwrap_or(0);
    }
    Some(st)
}

impl CrowdsecStatus {
    fn show(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "
crowdsec: LAPI {}",
            self.lapi_url
        )?;
        match &self.last_pull {
            Some(p) => {
                let s = &p["by_scope"];
                writeln!(
                    f,
                    "  last pull: {} ({} decisions, {} expired or deleted; bans: Ip {} v4 / {} v6, Range {} v4 / {} v6; {} ignored, {} invalid; {} bytes in {} ms)",
                    p["status"].as_str().unwrap_or("?"),
                    p["decisions"], p["deleted"], s["ip_v4"], s["ip_v6"], s["range_v4"],
                    s["range_v6"], p["ignored"], p["invalid"], p["bytes"], p["millis"]
                )?;
            }
            None => writeln!(f, "  last pull: none recorded")?,
        }
        match self.last_success {
            Some(t) => writeln!(f, "  last good pull: {}", fmt_time(t))?,
            None => writeln!(f, "  last good pull: never")?,
        }
        if let Some(e) = &self.last_error {
            writeln!(f, "  last error: {e}")?;
        }
        if self.push {
            writeln!(
                f,
                "  push: {} alerts pushed, {} queued, {} dropped; last push {}",
                self.pushed_total,
                self.push_queued,
                self.push_refused_total,
                self.last_push
                    .map(fmt_time)
                    .unwrap_or_else(|| "never".into())
            )?;
        } else {
            writeln!(f, "  push: off (no machine_id)")?;
        }
        Ok(())
    }
}

/// Manual requests waiting in the request directory for the next run.
fn queued_requests(settings: &Settings) -> u64 {
    let dir = settings
        .state_dir
        .join(crate::pipeline::manual::REQUEST_DIR);
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count() as u64
        })
        .unwrap_or(0)
}

/// From the run history, per non-feed source: the end of the last run whose errors do not name
/// it, and how many of the latest runs in a row named it.
fn run_history(
    s: &Store,
    sources: &Sources,
) -> Result<(HashMap<String, i64>, HashMap<String, u32>)> {
    let mut last_ok: HashMap<String, i64> = HashMap::new();
    let mut failing_runs: HashMap<String, u32> = HashMap::new();
    // Non-feed sources: the last run whose errors do not name them.
    for (finished, text) in s.recent_runs(200)? {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if v["outcome"] == "failed" {
            continue;
        }
        let errors: Vec<&str> = v["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e.as_str()).collect())
            .unwrap_or_default();
        for p in &sources.policies {
            let prefix = format!("{}:", p.name);
            let named = errors.iter().any(|e| e.starts_with(&prefix));
            if !last_ok.contains_key(&p.name) && !named {
                last_ok.insert(p.name.clone(), finished);
            }
            if named && !last_ok.contains_key(&p.name) {
                *failing_runs.entry(p.name.clone()).or_default() += 1;
            }
        }
    }
    Ok((last_ok, failing_runs))
}

/// The rules and their counters; reading them needs root, like the sets.
fn firewall(settings: &Settings) -> FirewallStatus {
    use crate::backend::rules;
    let mut fw = FirewallStatus::default();
    let marker = match rules::Marker::load(&settings.state_dir) {
        Ok(m) => m,
        Err(e) => {
            fw.error = Some(format!("{e:#}"));
            None
        }
    };
    if let Some(m) = &marker {
        fw.installed = true;
        fw.reinstalled_total = m.reinstalled;
        fw.last_reinstalled = m.last_reinstalled;
    }
    fw.backend = marker
        .as_ref()
        .map(|m| m.backend)
        .unwrap_or_default()
        .label()
        .to_string();
    match rules::counted(settings, marker.as_ref()) {
        Ok(r) => fw.rules = r,
        Err(e) => fw.error = Some(format!("{e:#}")),
    }
    fw
}

impl Status {
    /// The sets that exist and that no kernel object references: their entries block nothing.
    pub fn unreferenced_sets(&self) -> Vec<&SetStatus> {
        self.sets
            .iter()
            .filter(|s| s.from_kernel && s.references == Some(0))
            .collect()
    }
}

impl StateRebuilt {
    /// The loud notice `status` shows while the moved-aside database is still there.
    fn show(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.marker;
        writeln!(f, "STATE REBUILT at {}: {}", fmt_time(m.at), m.reason)?;
        writeln!(
            f,
            "  {} manual entries read back from manual.list; {}",
            m.manual_restored,
            if m.kernel_recovered {
                format!(
                    "{} entries taken in from the live kernel sets",
                    m.kernel_entries
                )
            } else {
                "the next sync takes in the live kernel sets".to_string()
            }
        )?;
        if let Some(p) = &m.moved_to {
            writeln!(
                f,
                "  the old database is at {p} (remove it once looked at; this notice goes with it)"
            )?;
        }
        Ok(())
    }
}

impl FirewallStatus {
    fn show(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = if self.installed {
            "recorded by `firewall install`; every sync puts missing ones back"
        } else {
            "`firewall install` has not been run"
        };
        writeln!(f, "\nfirewall ({}, {how}):", self.backend)?;
        if let Some(e) = &self.error {
            writeln!(f, "  rules not readable: {e}")?;
        }
        for r in &self.rules {
            if r.present {
                writeln!(
                    f,
                    "  {} {}: drops set {}: {} packets, {} bytes",
                    r.family, r.place, r.set, r.packets, r.bytes
                )?;
            } else {
                writeln!(
                    f,
                    "  {} {}: rule for set {} MISSING (the next sync puts it back)",
                    r.family, r.place, r.set
                )?;
            }
        }
        if self.rules.is_empty() && self.error.is_none() {
            writeln!(f, "  no sipban rule")?;
        }
        if self.reinstalled_total > 0 {
            writeln!(
                f,
                "  rules were removed by another tool and put back {} time(s), last at {}",
                self.reinstalled_total,
                self.last_reinstalled
                    .map(fmt_time)
                    .unwrap_or_else(|| "?".into())
            )?;
        }
        Ok(())
    }
}

/// A count in its unit: `3 failures`, `weight 5`.
struct Measure(&'static str, u32);

impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            "weight" => write!(f, "weight {}", self.1),
            unit if self.1 == 1 => write!(f, "1 {}", unit.trim_end_matches('s')),
            unit => write!(f, "{} {unit}", self.1),
        }
    }
}

impl Status {
    /// The kernel sets against their caps.
    fn show_sets(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "\nsets:")?;
        for s in &self.sets {
            let n = s
                .entries
                .map(|n| n.to_string())
                .unwrap_or_else(|| "?".into());
            let fill = match s.entries {
                Some(e) if s.cap > 0 => format!(" ({}% full)", e * 100 / u64::from(s.cap)),
                _ => String::new(),
            };
            writeln!(
                f,
                "  {:<16} {} of cap {}{fill}{}{}",
                s.name,
                n,
                s.cap,
                if s.from_mirror {
                    " (as the last sync left it)"
                } else if s.from_kernel {
                    ""
                } else {
                    " (from the last run: kernel not readable)"
                },
                if s.evicted > 0 {
                    format!(", {} evicted over the cap", s.evicted)
                } else {
                    String::new()
                }
            )?;
        }
        Ok(())
    }

    /// A detector's failing sources below a ban, the closest first.
    fn show_failing(
        &self,
        f: &mut fmt::Formatter<'_>,
        fl: &crate::pipeline::detect::Failing,
    ) -> fmt::Result {
        if fl.total == 0 {
            return writeln!(f, "    currently failing: none");
        }
        writeln!(
            f,
            "    currently failing (below a ban at {}): {} address{}{}",
            Measure(fl.unit, fl.limit),
            fl.total,
            if fl.total == 1 { "" } else { "es" },
            if fl.total > fl.top.len() as u64 {
                format!(", the {} closest to a ban:", fl.top.len())
            } else {
                String::new()
            }
        )?;
        for x in &fl.top {
            let ports = x
                .ports
                .map(|p| format!(" on {p} port{}", if p == 1 { "" } else { "s" }))
                .unwrap_or_default();
            writeln!(
                f,
                "      {:<39} {} of {}{ports}, last {} ago",
                x.ip.to_string(),
                Measure(fl.unit, x.count),
                fl.limit,
                crate::clock::span(self.now - x.last)
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.has_state {
            writeln!(
                f,
                "no saved state at {} yet: run `sipban sync` first",
                self.state
            )?;
        }
        if let Some(r) = self.state_rebuilt.as_ref().filter(|r| r.current) {
            r.show(f)?;
        }
        match &self.last_run {
            Some(r) => {
                writeln!(
                    f,
                    "last run: {} at {} ({} ago), took {}s",
                    r.outcome,
                    fmt_time(r.finished),
                    crate::clock::span(self.now - r.finished),
                    (r.finished - r.started).max(0)
                )?;
                for e in &r.errors {
                    writeln!(f, "  error: {e}")?;
                }
            }
            None => writeln!(f, "last run: none recorded")?,
        }
        self.show_sets(f)?;
        writeln!(f, "\nsources:")?;
        // The source of entries taken in from the kernel after a state rebuild: only once
        // there was one.
        let shown = self
            .sources
            .iter()
            .filter(|s| s.kind != "recovered" || s.entries > 0 || self.state_rebuilt.is_some());
        for s in shown {
            let fresh = match (s.last_success, s.staleness_seconds) {
                (Some(_), Some(age)) => format!("last good {} ago", crate::clock::span(age)),
                (Some(t), None) => format!(
                    "last good saved as {}, in the future (the clock was ahead)",
                    fmt_time(t)
                ),
                _ if s.kind == "manual" => "set by hand".to_string(),
                _ if s.kind == "recovered" => {
                    "taken in from the kernel sets after a state rebuild".to_string()
                }
                _ => "never read successfully".to_string(),
            };
            let next = match s.next_download {
                Some(t) if t > self.now => {
                    format!(", next download in {}", crate::clock::span(t - self.now))
                }
                Some(_) => ", next download at the next run".to_string(),
                None => String::new(),
            };
            writeln!(
                f,
                "  {:<20} {:<8} prio {:<4} {} entr{}{}, {fresh}{next}",
                s.name,
                s.kind,
                s.priority,
                s.entries,
                if s.entries == 1 { "y" } else { "ies" },
                s.in_set
                    .map(|n| format!(" ({n} in set after the last run)"))
                    .unwrap_or_default()
            )?;
            if let Some(g) = &s.injection_guard {
                writeln!(
                    f,
                    "  {:<20} injection guard (last run): {} records broken by a newline, {} attacker lines dropped, {} suspect lines not read",
                    "", g.injections, g.injected, g.suspect
                )?;
            }
            if let Some(b) = &s.backoff {
                writeln!(f, "  {:<20} FAILING: {b}", "")?;
            } else if s.consecutive_failures > 0 {
                writeln!(
                    f,
                    "  {:<20} FAILING ({} in a row): {}",
                    "",
                    s.consecutive_failures,
                    s.last_error.as_deref().unwrap_or("?")
                )?;
            }
        }
        if let Some(c) = &self.crowdsec {
            c.show(f)?;
        }
        self.firewall.show(f)?;
        for s in self.unreferenced_sets() {
            writeln!(
                f,
                "  NO FIREWALL RULE REFERENCES SET {}: its {} entries block nothing; run `sipban firewall install`",
                s.name,
                s.entries.unwrap_or(0)
            )?;
        }
        if !self.detectors.is_empty() {
            writeln!(f, "\ndetectors:")?;
        }
        for d in &self.detectors {
            match d.evictions {
                Some(0) => writeln!(f, "  {:<20} no addresses evicted", d.name)?,
                Some(n) => writeln!(
                    f,
                    "  {:<20} {n} addresses evicted from the offence counter (full: the furthest from a ban went first)",
                    d.name
                )?,
                None => writeln!(f, "  {:<20} saved state unreadable", d.name)?,
            }
            if let Some(fl) = &d.failing {
                self.show_failing(f, fl)?;
            }
            for i in &d.inputs {
                let c = &i.counts;
                writeln!(
                    f,
                    "    {}: last run {} lines read, {} parsed, {} matched, {} refused, {} unparsed",
                    i.path, c.read, c.parsed, c.matched, c.refused, c.unparsed
                )?;
            }
        }
        if let Some(w) = &self.sip_wire {
            w.show(f, self.now)?;
        }
        let m = &self.manual;
        writeln!(
            f,
            "\nmanual: {} bans, {} unbans holding, {} allowlisted, {} requests queued",
            m.bans, m.unbans, m.allowlist, m.queued
        )?;
        for q in &self.report_queue {
            writeln!(
                f,
                "reports to {}: {} queued, {} sent, {} refused (`sipban report status` for more)",
                q.sink, q.queued, q.sent, q.refused
            )?;
        }
        Ok(())
    }
}
