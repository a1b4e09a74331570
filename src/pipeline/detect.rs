//! The local detectors behind one [`Detector`] trait: one pass reads what is new in the logs
//! from the saved state blob and returns sightings, the state to save, offences for upstream
//! reports and per-file errors. A sync and the daemon's real-time pass run the same code, on
//! the same state blobs, so no line is ever read twice or judged two ways.
//!
//! This module must never decide anything (the gate and decide do), never write the state (the
//! caller persists the returned blob together with what the pass applied), and never let one
//! detector's failure stop another's pass.

use crate::config::Settings;
use crate::hostaddr;
use crate::model::Sighting;
use crate::report::Offence;
use crate::source::asterisk::callid::CallIdMap;
use crate::source::{asterisk, kernlog};
use serde::Serialize;

/// The source name of the Asterisk log detector.
pub const ASTERISK: &str = "asterisk";
/// The source name of the wire detector in the daemon (`sip_wire`: HEP, live capture).
pub const SIP_WIRE: &str = "sip_wire";
/// The blob key of the Asterisk detector's state (cursors, failure windows, Call-ID map).
pub const ASTERISK_STATE: &str = "asterisk.state";
/// The blob key of the kernel-log detector's state (cursors, scoring windows).
pub const KERNEL_STATE: &str = "kernel.state";

/// What the Asterisk detector did in a run (the evidence itself stays out of the report).
#[derive(Clone, Debug, Serialize)]
pub struct AsteriskReport {
    pub bans: Vec<asterisk::Ban>,
    pub counters: asterisk::Counters,
    pub files: Vec<asterisk::FileReport>,
    /// What was read from the systemd journal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<asterisk::journal::JournalReport>,
    /// Addresses dropped from the bounded failure counter to make room: in this pass, and in
    /// all passes.
    pub evicted: u64,
    pub evicted_total: u64,
}

/// A detector's own account of a pass, for the run report.
#[derive(Clone, Debug)]
pub enum PassReport {
    Asterisk(AsteriskReport),
    Kernel(kernlog::Detections),
}

/// One detector's pass.
pub struct Pass {
    /// The source its sightings are marked with.
    pub source: &'static str,
    pub state_key: &'static str,
    pub sightings: Vec<Sighting>,
    /// The detector's state after the pass, to save with what the pass applied.
    pub blob: Vec<u8>,
    pub offences: Vec<Offence>,
    /// `source: path: error` for each file that could not be read.
    pub file_errors: Vec<String>,
    /// `detector: path: ...` for each file whose reading the pass's read limit cut: the rest
    /// is read by the next pass, from where this one stopped.
    pub limited: Vec<String>,
    /// `source: log path: not found` for each configured file that does not exist (a sync's
    /// errors; the real-time pass, which runs on every write to the other logs, leaves them to
    /// the next sync).
    pub missing: Vec<String>,
    /// Other things the run report says about the inputs (a journal cursor that was lost).
    pub notes: Vec<String>,
    /// `detector: path: N of M lines ... unparsed` for each file over the unparsed share
    /// (`source::input::UNPARSED_WARN_SHARE`) in this pass.
    pub unparsed: Vec<String>,
    pub lines: u64,
    pub report: PassReport,
}

/// A log detector: one pass from its saved state.
pub trait Detector {
    /// The config section (`asterisk`, `kernel_log`).
    fn label(&self) -> &'static str;
    /// The source name its sightings and errors carry (`asterisk`, `kernel`).
    fn source(&self) -> &'static str;
    /// The blob key of its state.
    fn state_key(&self) -> &'static str;
    /// Read what is new, from `saved` (an unreadable state starts afresh, with a warning).
    fn pass(&self, saved: Option<&[u8]>, now: i64) -> Result<Pass, String>;
    /// The total of addresses its bounded offence counter dropped to make room, as its saved
    /// state holds it (`None`: unreadable).
    fn saved_evictions(&self, saved: &[u8]) -> Option<u64>;
    /// The sources it is counting that have not reached a ban, as its saved state holds them
    /// (`None`: unreadable).
    fn failing(&self, saved: &[u8], now: i64) -> Option<Failing>;
}

/// How many failing sources `status` lists by name (the total is always given).
pub const FAILING_SHOWN: usize = 10;

/// The sources a detector is counting that have not reached a ban yet: fail2ban's
/// "Currently failed". Read from the saved state, so it is as of the last pass.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Failing {
    /// What each count is measured against: `maxretry` failures, or the kernel log's weight
    /// `threshold`.
    pub limit: u32,
    /// `failures` or `weight`.
    pub unit: &'static str,
    /// Addresses counting now.
    pub total: u64,
    /// The closest to a ban first (then the latest), at most [`FAILING_SHOWN`].
    pub top: Vec<FailingSource>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct FailingSource {
    pub ip: std::net::IpAddr,
    pub count: u32,
    /// Kernel log: distinct ports probed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<u32>,
    /// Unix time of the latest failure or probe.
    pub last: i64,
}

impl Failing {
    fn of(limit: u32, unit: &'static str, mut all: Vec<FailingSource>) -> Failing {
        let total = all.len() as u64;
        all.sort_unstable_by(|a, b| (b.count, b.last, a.ip).cmp(&(a.count, a.last, b.ip)));
        all.truncate(FAILING_SHOWN);
        Failing {
            limit,
            unit,
            total,
            top: all,
        }
    }
}

/// The configured detectors, in source order.
pub fn configured(settings: &Settings) -> Vec<Box<dyn Detector + '_>> {
    configured_with_wire(settings, None)
}

/// [`configured`] in the daemon: the Asterisk detector attributes scanner timeouts through
/// the Call-ID map of its wire inputs too (see `asterisk::run_with_wire`).
pub fn configured_with_wire<'a>(
    settings: &'a Settings,
    wire: Option<&'a CallIdMap>,
) -> Vec<Box<dyn Detector + 'a>> {
    let mut out: Vec<Box<dyn Detector + 'a>> = Vec::new();
    if let Some(a) = &settings.asterisk {
        out.push(Box::new(AsteriskDetector(a, wire)));
    }
    if let Some(k) = &settings.kernel_log {
        out.push(Box::new(KernelDetector(k)));
    }
    out
}

/// Decode a saved state, or start afresh (loudly) when it is unreadable.
fn decode_or_default<T: Default, E: std::fmt::Display>(
    saved: Option<&[u8]>,
    what: &str,
    decode: impl Fn(&[u8]) -> Result<T, E>,
) -> T {
    match saved.map(decode) {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            tracing::warn!("the saved {what} state is unreadable ({e}); starting afresh");
            T::default()
        }
        None => T::default(),
    }
}

/// `who: path: ...` for each file whose reading the read limit cut.
fn limited<'a>(
    who: &str,
    limit: crate::config::values::ReadLimit,
    files: impl Iterator<Item = (&'a std::path::PathBuf, &'a crate::source::tail::TailStats)>,
) -> Vec<String> {
    files
        .filter(|(_, t)| t.limited)
        .map(|(path, _)| {
            format!(
                "{who}: {}: read limit reached (max_read_per_run {} MiB, max_read_time {} s); the rest is read next time, from here",
                path.display(),
                limit.bytes >> 20,
                limit.secs
            )
        })
        .collect()
}

/// `who: path: ...` for each file whose unparsed share in this pass is over the limit.
fn unparsed<'a>(
    who: &str,
    files: impl Iterator<
        Item = (
            &'a std::path::PathBuf,
            &'a crate::source::input::InputCounts,
        ),
    >,
) -> Vec<String> {
    files.filter_map(|(path, c)| c.warning(who, path)).collect()
}

/// What a detector's journal read adds to its pass: an error, the read limit, a lost cursor.
fn journal_notes(
    who: &str,
    limit: crate::config::values::ReadLimit,
    journal: &str,
    error: Option<&String>,
    stats: &crate::source::journal::JournalStats,
    pass: &mut Pass,
) {
    if let Some(e) = error {
        pass.file_errors.push(format!("{who}: {e}"));
    }
    if stats.limited {
        pass.limited.push(format!(
            "{who}: {journal}: read limit reached (max_read_per_run {} MiB, max_read_time {} s); the rest is read next time, from here",
            limit.bytes >> 20,
            limit.secs
        ));
    }
    if stats.cursor_lost {
        let from = stats
            .restarted_at
            .map_or_else(String::new, |t| format!(" from {}", crate::clock::Iso(t)));
        pass.notes.push(format!(
            "{who}: {journal}: the saved cursor is no longer in the journal (rotated or vacuumed); read again{from}"
        ));
    }
}

/// `source: path: error` for each file a detector could not read (the source name leads, so
/// `status` finds the line).
fn file_errors<'a>(
    source: &str,
    files: impl Iterator<Item = (&'a std::path::PathBuf, &'a Option<String>)>,
) -> Vec<String> {
    files
        .filter_map(|(path, error)| {
            error
                .as_ref()
                .map(|e| format!("{source}: {}: {e}", path.display()))
        })
        .collect()
}

/// `source: log path: not found` for each configured file that does not exist: a wrong path
/// would otherwise detect nothing without a word. A sync counts it as the source's failure
/// (exit 3) until the file is there. (A log renamed by logrotate and not yet created again
/// counts too, for the one run that falls in that moment.)
fn missing<'a>(
    source: &str,
    files: impl Iterator<Item = (&'a std::path::PathBuf, bool)>,
) -> Vec<String> {
    files
        .filter(|(_, missing)| *missing)
        .map(|(path, _)| format!("{source}: log {}: not found", path.display()))
        .collect()
}

struct AsteriskDetector<'a>(&'a asterisk::AsteriskSettings, Option<&'a CallIdMap>);

impl Detector for AsteriskDetector<'_> {
    fn label(&self) -> &'static str {
        ASTERISK
    }

    fn source(&self) -> &'static str {
        ASTERISK
    }

    fn state_key(&self) -> &'static str {
        ASTERISK_STATE
    }

    fn pass(&self, saved: Option<&[u8]>, now: i64) -> Result<Pass, String> {
        let mut state: asterisk::DetectorState =
            decode_or_default(saved, "Asterisk detector", |b: &[u8]| {
                serde_json::from_slice(b)
            });
        let det =
            asterisk::run_with_wire(self.0, &mut state, now, self.1).map_err(|e| e.to_string())?;
        let blob = serde_json::to_vec(&state)
            .map_err(|e| format!("encoding the Asterisk detector state: {e}"))?;
        let mut pass = Pass {
            source: ASTERISK,
            state_key: ASTERISK_STATE,
            offences: crate::report::from_asterisk(&det),
            file_errors: file_errors(ASTERISK, det.files.iter().map(|f| (&f.path, &f.error))),
            limited: limited(
                ASTERISK,
                self.0.read_limit,
                det.files.iter().map(|f| (&f.path, &f.tail)),
            ),
            missing: missing(
                ASTERISK,
                det.files.iter().map(|f| (&f.path, f.tail.missing)),
            ),
            unparsed: unparsed("asterisk", det.files.iter().map(|f| (&f.path, &f.counts))),
            lines: det.counters.lines,
            sightings: det.sightings,
            blob,
            notes: Vec::new(),
            report: PassReport::Asterisk(AsteriskReport {
                bans: det.bans,
                counters: det.counters,
                files: det.files,
                journal: det.journal,
                evicted: det.evicted,
                evicted_total: det.evicted_total,
            }),
        };
        if let PassReport::Asterisk(AsteriskReport {
            journal: Some(j), ..
        }) = &pass.report
        {
            let (name, error, stats) = (j.journal.clone(), j.error.clone(), j.stats.clone());
            let warning = j.counts.warning("asterisk", std::path::Path::new(&name));
            pass.unparsed.extend(warning);
            journal_notes(
                ASTERISK,
                self.0.read_limit,
                &name,
                error.as_ref(),
                &stats,
                &mut pass,
            );
        }
        Ok(pass)
    }

    fn saved_evictions(&self, saved: &[u8]) -> Option<u64> {
        asterisk::DetectorState::saved_evictions(saved)
    }

    fn failing(&self, saved: &[u8], now: i64) -> Option<Failing> {
        let state: asterisk::DetectorState = serde_json::from_slice(saved).ok()?;
        let all = state
            .failing(self.0, now)
            .into_iter()
            .map(|(ip, count, last)| FailingSource {
                ip,
                count,
                ports: None,
                last,
            })
            .collect();
        Some(Failing::of(self.0.maxretry, "failures", all))
    }
}

struct KernelDetector<'a>(&'a kernlog::KernelLogSettings);

impl Detector for KernelDetector<'_> {
    fn label(&self) -> &'static str {
        "kernel_log"
    }

    fn source(&self) -> &'static str {
        kernlog::SOURCE
    }

    fn state_key(&self) -> &'static str {
        KERNEL_STATE
    }

    fn pass(&self, saved: Option<&[u8]>, now: i64) -> Result<Pass, String> {
        let mut state =
            decode_or_default(saved, "kernel-log detector", kernlog::KernelState::decode);
        let own = hostaddr::own_ips();
        let det = kernlog::run(self.0, &mut state, &own, now).map_err(|e| e.to_string())?;
        let blob = state
            .encode()
            .map_err(|e| format!("encoding the kernel-log detector state: {e}"))?;
        let journal = det.journal.clone();
        let mut pass = Pass {
            source: kernlog::SOURCE,
            state_key: KERNEL_STATE,
            offences: crate::report::from_kernel(&det),
            file_errors: file_errors(
                kernlog::SOURCE,
                det.files.iter().map(|f| (&f.path, &f.error)),
            ),
            limited: limited(
                kernlog::SOURCE,
                self.0.read_limit,
                det.files.iter().map(|f| (&f.path, &f.tail)),
            ),
            missing: missing(
                kernlog::SOURCE,
                det.files.iter().map(|f| (&f.path, f.tail.missing)),
            ),
            unparsed: unparsed("kernel_log", det.files.iter().map(|f| (&f.path, &f.counts))),
            lines: det.counters.lines,
            sightings: det.sightings.clone(),
            blob,
            notes: Vec::new(),
            report: PassReport::Kernel(det),
        };
        if let Some(j) = journal {
            let warning = j
                .counts
                .warning("kernel_log", std::path::Path::new(&j.journal));
            pass.unparsed.extend(warning);
            journal_notes(
                kernlog::SOURCE,
                self.0.read_limit,
                &j.journal,
                j.error.as_ref(),
                &j.stats,
                &mut pass,
            );
        }
        Ok(pass)
    }

    fn saved_evictions(&self, saved: &[u8]) -> Option<u64> {
        kernlog::KernelState::saved_evictions(saved)
    }

    fn failing(&self, saved: &[u8], now: i64) -> Option<Failing> {
        let state = kernlog::KernelState::decode(saved).ok()?;
        let all = state
            .failing(self.0, now)
            .into_iter()
            .map(|(ip, count, ports, last)| FailingSource {
                ip,
                count,
                ports: Some(ports),
                last,
            })
            .collect();
        Some(Failing::of(self.0.threshold, "weight", all))
    }
}
