//! `sipban run`: the daemon. Scheduled full syncs, real-time log detections, manual requests,
//! signals and systemd notifications, on one current-thread tokio runtime.
//!
//! * **Locks.** The daemon takes the run lock at start and holds it for its lifetime, so a
//!   `sipban sync` started by cron or the timer while it runs exits at once with code 4; its
//!   own syncs run inside that lock ([`sync::run_holding`]). Each apply step (a sync's, a
//!   real-time pass, queued manual requests) takes the apply lock for that step only, so
//!   `sipban ban` from a shell is applied by the command itself, between two steps.
//! * **Schedules** ([`schedule`]): `daemon.sync_schedule` (default every ten minutes) starts a
//!   full run; `daemon.feed_schedules` starts a full run in which that feed is downloaded
//!   whatever its `interval` says (the other feeds follow their intervals, as in any run).
//!   All in UTC. A firing while a run is in progress is kept and runs right after it.
//! * **Real time** ([`inotify`], [`fast`]): writes to the followed Asterisk logs and kernel
//!   logs wake the daemon; after a short batch window ([`BATCH`]) the new lines go through the
//!   detectors and new bans reach the kernel set in one small batch. Idle, the process sleeps
//!   in the kernel (inotify, signals, one timer capped at a minute): no polling.
//!   With `journal: true` (or the kernel's journal instead of a missing kern.log), the journal
//!   directories are watched the same way ([`journal_dirs`]).
//! * **SIP on the wire** ([`wire`], with `sip_wire:`): a HEP v3 listener and a live capture
//!   feed the resident wire detector; the bans it reaches go through the real-time pass's gate
//!   and apply path ([`fast::apply_sightings`]) after the same batch window. With the section
//!   configured, a one-second tick closes un-ACKed INVITEs and logs the inputs' counters.
//! * **Manual requests** (`sipban ban/unban`): request files in `state_dir/manual/` are
//!   watched too, and applied under the daemon's lock.
//! * **Signals.** SIGHUP reloads the config; a config that does not load keeps the old one and
//!   the reason is logged. SIGTERM/SIGINT stop the daemon between two steps: a step that
//!   changes the kernel never awaits, so it always completes; a run still downloading is
//!   dropped before it changed anything (runs are crash-safe by design anyway).
//! * **systemd** ([`notify`], the protocol without libsystemd): `READY=1` once the lock is
//!   held and the watches are set, `WATCHDOG=1` at half the watchdog interval (the timer runs
//!   while a sync downloads), `RELOADING=1` then `READY=1` around a SIGHUP reload (whether or
//!   not the new config was taken), `STATUS=` after each run, `STOPPING=1` on the way out.
//!
//! This module must never change the kernel or the state without holding the apply lock, and
//! never run two syncs at once. A real-time pass may run while a sync downloads, never inside
//! its apply step (that step does not await).

pub mod inotify;
pub mod notify;
pub mod schedule;
pub mod wire;

use crate::backend::Kernel;
use crate::config::{self, Settings};
use crate::exit;
use crate::lock::{self, RunLock};
use crate::pipeline::fast;
use crate::pipeline::sync::{self, Outcome, RunReport, SyncError};
use crate::source::asterisk::callid::CallIdMap;
use schedule::Timer;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// How long a burst of log writes is collected before one pass (bounded latency: the window
/// starts at the first write and is not extended).
pub const BATCH: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------------------------
// settings

pub use crate::config::daemon::{DaemonSettings, DEFAULT_SYNC_SCHEDULE};
pub use crate::config::raw::RawDaemon;

// ---------------------------------------------------------------------------------------------
// the loop

/// What a schedule starts.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Job {
    Sync,
    Feed(String),
}

type RunFuture = Pin<Box<dyn Future<Output = (Result<RunReport, SyncError>, f64)>>>;

fn timer_for(settings: &Settings) -> Timer<Job> {
    let mut jobs = vec![(Job::Sync, settings.daemon.sync_schedule.clone())];
    for (name, s) in &settings.daemon.feed_schedules {
        jobs.push((Job::Feed(name.clone()), s.clone()));
    }
    Timer::new(jobs, schedule::wall_ms())
}

fn followed_files(settings: &Settings) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(a) = &settings.asterisk {
        files.extend(a.logs.iter().cloned());
        files.extend(a.full_log.iter().cloned());
    }
    if let Some(k) = &settings.kernel_log {
        files.extend(k.files.iter().cloned());
    }
    files
}

/// The journal directories to watch when a detector reads the journal: the configured one or
/// the system journal's (`/run/log/journal`, `/var/log/journal`), and their machine-id
/// subdirectories. journald truncates a journal file to its own size after each write so that
/// inotify sees it (writes through mmap raise no event); each wake-up is one pass, which reads
/// the matching entries from its saved cursor.
fn journal_dirs(settings: &Settings) -> Vec<PathBuf> {
    let mut journals = Vec::new();
    if let Some(j) = settings.asterisk.as_ref().and_then(|a| a.journal.as_ref()) {
        journals.push(j);
    }
    if let Some(j) = settings
        .kernel_log
        .as_ref()
        .and_then(|k| crate::source::kernlog::inputs(k).1)
    {
        journals.push(j);
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    for j in journals {
        let tops = match &j.directory {
            Some(d) => vec![d.clone()],
            None => vec![
                PathBuf::from("/run/log/journal"),
                PathBuf::from("/var/log/journal"),
            ],
        };
        for top in tops {
            if j.directory.is_none() && !top.is_dir() {
                continue; // no persistent (or no volatile) journal on this host
            }
            let subs = std::fs::read_dir(&top)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir());
            for d in std::iter::once(top.clone()).chain(subs) {
                if !dirs.contains(&d) {
                    dirs.push(d);
                }
            }
        }
    }
    dirs
}

fn manual_dir(settings: &Settings) -> PathBuf {
    settings
        .state_dir
        .join(crate::pipeline::manual::REQUEST_DIR)
}

fn watch_for(settings: &Settings) -> std::io::Result<inotify::LogWatch> {
    let files = followed_files(settings);
    let mdir = manual_dir(settings);
    if let Err(e) = crate::fsio::create_dir(&mdir) {
        tracing::warn!("cannot create {}: {e}", mdir.display());
    }
    let mut whole = vec![mdir];
    whole.extend(journal_dirs(settings));
    let w = inotify::LogWatch::new(&files, &whole)?;
    for (dir, why) in &w.unwatched {
        tracing::warn!(
            "cannot watch {} ({why}): its logs are read at the scheduled syncs only",
            dir.display()
        );
    }
    Ok(w)
}

/// `STATUS=` for systemctl status (one line: a newline would start another assignment).
fn set_status(text: &str) {
    notify::notify(&format!("STATUS={}", text.replace('\n', " ")));
}

/// Give freed heap back to the kernel after a run (a 65,536-entry run allocates tens of MiB
/// for a moment; glibc keeps freed memory otherwise).
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Start a run for `job`.
fn start_run(
    job: &Job,
    settings: &Rc<Settings>,
    held: &Rc<RunLock>,
    ipset: &Rc<Kernel>,
) -> RunFuture {
    let mut s: Settings = (**settings).clone();
    if let Job::Feed(name) = job {
        if let Some(f) = s.feeds.iter_mut().find(|f| &f.name == name) {
            f.interval = 0; // due now, whatever its interval says
        }
    }
    let (held, ipset) = (held.clone(), ipset.clone());
    Box::pin(async move {
        let t = Instant::now();
        let r = sync::run_holding(&held, &s, &ipset, sync::unix_now()).await;
        (r, t.elapsed().as_secs_f64())
    })
}

/// Take the run lock for the daemon's lifetime; on failure, say why and give the exit code.
fn acquire(state_dir: &Path) -> Result<RunLock, u8> {
    match lock::acquire(state_dir) {
        Ok(l) => Ok(l),
        Err(e @ lock::LockError::Busy { .. }) => {
            eprintln!("{}sipban run: {e}", crate::logging::journal_prefix(4));
            Err(exit::LOCKED)
        }
        Err(e) => {
            // A read-only, full or forbidden state directory is a storage fault (exit 5), as
            // for a sync; never the lock code.
            let text = e.to_string();
            match crate::store::health::fault(&anyhow::Error::new(e), state_dir) {
                Some(f) => {
                    eprintln!(
                        "{}sipban run: {f} ({text})",
                        crate::logging::journal_prefix(3)
                    );
                    Err(exit::STORAGE)
                }
                None => {
                    eprintln!("{}sipban run: {text}", crate::logging::journal_prefix(3));
                    Err(exit::FAILED)
                }
            }
        }
    }
}

/// The SIGTERM, SIGINT and SIGHUP streams, or None if one cannot be installed.
fn signals() -> Option<(Signal, Signal, Signal)> {
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(a), Ok(b), Ok(c)) => Some((a, b, c)),
        _ => None,
    }
}

/// The configured set backend, or `None` after saying why not (the other backend's rules are
/// live).
fn open_kernel(settings: &Settings) -> Option<Rc<Kernel>> {
    match Kernel::open(settings) {
        Ok(k) => Some(Rc::new(k)),
        Err(e) => {
            eprintln!("{}sipban run: {e:#}", crate::logging::journal_prefix(3));
            None
        }
    }
}

/// Run the daemon until SIGTERM/SIGINT. Returns the process exit code.
pub async fn run(config_path: &Path, settings: Settings) -> u8 {
    let held = match acquire(&settings.state_dir) {
        Ok(l) => Rc::new(l),
        Err(code) => return code,
    };
    let Some((mut term, mut int, mut hup)) = signals() else {
        eprintln!(
            "{}sipban run: cannot install signal handlers",
            crate::logging::journal_prefix(3)
        );
        return exit::FAILED;
    };
    let mut settings = Rc::new(settings);
    let Some(ipset) = open_kernel(&settings) else {
        return exit::FAILED;
    };
    let mut watch = match watch_for(&settings) {
        Ok(w) => w,
        Err(e) => {
            eprintln!(
                "{}sipban run: cannot set up inotify: {e}",
                crate::logging::journal_prefix(3)
            );
            return exit::FAILED;
        }
    };
    let mut timer = timer_for(&settings);
    let mut wire = wire::open_configured(&settings);
    let mut wire_at: Option<tokio::time::Instant> = None;
    let mut wire_logged = (wire::WireStats::default(), 0i64);
    let mut wire_tick = tokio::time::interval(Duration::from_secs(1));
    wire_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watchdog = notify::watchdog_period().map(|d| d / 2);
    let mut dog = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    dog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    tracing::info!(
        "sipban daemon started (pid {}): full sync {} UTC, {} feed schedules, {} log directories watched",
        std::process::id(),
        settings.daemon.sync_schedule,
        settings.daemon.feed_schedules.len(),
        watch.watched()
    );
    notify::notify("READY=1\nSTATUS=started; first sync running");

    let mut running: Option<RunFuture> = None;
    let mut pending: Option<Job> = Some(Job::Sync);
    let mut logs_dirty = false;
    let mut manual_dirty = true;
    let mut batch_at: Option<tokio::time::Instant> = Some(tokio::time::Instant::now());

    loop {
        if running.is_none() {
            if let Some(job) = pending.take() {
                tracing::info!("starting a full sync ({job:?})");
                running = Some(start_run(&job, &settings, &held, &ipset));
            }
        }
        let sleep = timer.sleep_for(schedule::wall_ms());
        // Real-time passes go on while a sync downloads: the sync's own apply step never
        // awaits, so the two never overlap, and a pass waits for no feed server.
        let batch_ready = batch_at;
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = hup.recv() => {
                // systemd (`systemctl reload`) waits for READY=1 after RELOADING=1.
                notify::notify(&notify::reloading());
                let switched = reload(config_path, &mut settings, &mut timer, &mut watch);
                notify::notify("READY=1");
                if switched {
                    wire::reopen(&mut wire, &settings);
                    logs_dirty = true;
                    batch_at.get_or_insert_with(tokio::time::Instant::now);
                }
            }
            _ = dog.tick(), if watchdog.is_some() => notify::notify("WATCHDOG=1"),
            (result, secs) = async { match running.as_mut() { Some(f) => f.await, None => std::future::pending().await } }, if running.is_some() => {
                running = None;
                finished_run(&settings, &ipset, result, secs);
                trim_heap();
                if logs_dirty || manual_dirty {
                    batch_at.get_or_insert_with(tokio::time::Instant::now);
                }
            }
            changed = watch.changed() => {
                match changed {
                    Ok(paths) => {
                        mark_dirty(&paths, &manual_dir(&settings), &mut logs_dirty, &mut manual_dirty);
                        if !paths.is_empty() {
                            batch_at.get_or_insert_with(|| tokio::time::Instant::now() + BATCH);
                        }
                    }
                    Err(e) => {
                        tracing::error!("inotify: {e}; log lines are read at the scheduled syncs only until a reload");
                        watch = match inotify::LogWatch::new(&[], &[]) { Ok(w) => w, Err(_) => break };
                    }
                }
            }
            _ = async { match batch_ready { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } }, if batch_ready.is_some() => {
                batch_at = None;
                batch_pass(&settings, &ipset, &watch, (&mut logs_dirty, &mut manual_dirty), &mut pending, wire.as_ref().map(|w| w.callids()));
                if logs_dirty {
                    batch_at = Some(tokio::time::Instant::now() + BATCH);
                }
            }
            r = async { match wire.as_ref() { Some(w) => w.readable().await, None => std::future::pending().await } } => {
                match (r, wire.as_mut()) {
                    (Ok(()), Some(w)) => if w.drain(sync::unix_now()) {
                        wire_at.get_or_insert_with(|| tokio::time::Instant::now() + BATCH);
                    },
                    (Err(e), _) => {
                        tracing::error!("sip_wire: {e}; SIP on the wire is not read until a reload");
                        wire = None;
                    }
                    (Ok(()), None) => {}
                }
            }
            _ = wire_tick.tick(), if wire.is_some() => {
                if wire.as_mut().is_some_and(|w| wire::on_tick(&settings, w, &mut wire_logged, sync::unix_now())) {
                    wire_at.get_or_insert_with(tokio::time::Instant::now);
                }
            }
            _ = async { match wire_at { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } }, if wire_at.is_some() => {
                wire_at = None;
                if let Some(w) = wire.as_mut() {
                    if wire::apply(&settings, ipset.as_backend(), w, sync::unix_now()) {
                        pending.get_or_insert(Job::Sync);
                    }
                }
            }
            _ = tokio::time::sleep(sleep) => {
                for job in timer.poll(schedule::wall_ms()) {
                    match &pending {
                        Some(Job::Sync) => {}
                        _ => pending = Some(job),
                    }
                }
            }
        }
    }
    notify::notify("STOPPING=1");
    drop(running);
    if let Some(w) = wire.as_mut() {
        wire::save(&settings, w, sync::unix_now());
    }
    tracing::info!("sipban daemon stopped");
    exit::OK
}

/// SIGHUP: load the configuration again and, if it loads and keeps the same `state_dir`,
/// switch to it with a new timer and new watches. Returns whether it was switched (the
/// caller then rereads the followed logs).
fn reload(
    config_path: &Path,
    settings: &mut Rc<Settings>,
    timer: &mut Timer<Job>,
    watch: &mut inotify::LogWatch,
) -> bool {
    match config::load(config_path) {
        Err(e) => {
            tracing::error!(
                "SIGHUP: the new configuration does not load; keeping the running one: {e}"
            );
            set_status("config reload FAILED; running on the old configuration");
            false
        }
        Ok(new) if new.state_dir != settings.state_dir => {
            tracing::error!(
                "SIGHUP: state_dir changed ({} -> {}); keeping the running configuration (restart the daemon to move the state)",
                settings.state_dir.display(), new.state_dir.display()
            );
            false
        }
        Ok(new) => {
            if let Err(e) = crate::pipeline::dirs::check(&new) {
                tracing::error!("SIGHUP: {e}; keeping the running configuration");
                set_status("config reload FAILED; running on the old configuration");
                return false;
            }
            *settings = Rc::new(new);
            *timer = timer_for(settings);
            match watch_for(settings) {
                Ok(w) => *watch = w,
                Err(e) => tracing::error!(
                    "SIGHUP: cannot renew the log watches ({e}); keeping the old ones"
                ),
            }
            tracing::info!(
                "SIGHUP: configuration reloaded from {}",
                config_path.display()
            );
            set_status("configuration reloaded");
            true
        }
    }
}

/// The batch window closed: drain the queued watch events, apply waiting manual requests if
/// `manual_dirty`, run the real-time pass if `logs_dirty` (both flags are cleared), and queue
/// a full sync if the pass asks for one.
fn batch_pass(
    settings: &Settings,
    ipset: &Kernel,
    watch: &inotify::LogWatch,
    (logs_dirty, manual_dirty): (&mut bool, &mut bool),
    pending: &mut Option<Job>,
    wire: Option<&CallIdMap>,
) {
    // Events queued since the window opened are covered by this pass, so they are
    // drained here rather than waking a second pass. They must still count: this
    // pass may have been started for another reason (the manual requests marked
    // at start, a reload, the end of a run) with `logs_dirty` false, and a log
    // line appended just before it would otherwise have its only wake-up consumed
    // here and wait for the next write or the next full sync.
    match watch.drain() {
        Ok(paths) => mark_dirty(&paths, &manual_dir(settings), logs_dirty, manual_dirty),
        Err(e) => {
            tracing::warn!("inotify: draining events failed ({e}); reading every followed file");
            *logs_dirty = true;
            *manual_dirty = true;
        }
    }
    let now = sync::unix_now();
    if std::mem::take(manual_dirty) {
        match crate::pipeline::manual::apply_waiting(settings, ipset.as_backend(), now) {
            Ok(Some(a)) => tracing::info!("manual: {}", a.requests.join("; ")),
            Ok(None) => {}
            Err(e) => tracing::error!("manual requests: {e:#}"),
        }
    }
    if std::mem::take(logs_dirty) {
        // A pass cut by the read limit leaves the flag set: the caller opens another window.
        *logs_dirty = real_time_pass(settings, ipset, now, pending, wire);
    }
}

/// The read errors of the last real-time pass (see [`real_time_pass`]).
static LOGGED_ERRORS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// One real-time pass over the followed logs; logs what it did and queues a full sync in
/// `pending` if the pass asks for one. `true` when the read limit cut it (more to read).
fn real_time_pass(
    settings: &Settings,
    ipset: &Kernel,
    now: i64,
    pending: &mut Option<Job>,
    wire: Option<&CallIdMap>,
) -> bool {
    let mut more = false;
    match fast::detect_and_apply(settings, ipset.as_backend(), now, wire) {
        Ok(r) => {
            // The daemon's own log lines land in the journal it may watch: an error logged on
            // every pass would wake the next pass. Each error is logged when it starts.
            let mut logged = LOGGED_ERRORS.lock().unwrap_or_else(|p| p.into_inner());
            for e in r.file_errors.iter().filter(|e| !logged.contains(e)) {
                tracing::warn!("{e}");
            }
            *logged = r.file_errors.clone();
            drop(logged);
            for l in &r.limited {
                tracing::warn!("real time: {l}");
            }
            more = !r.limited.is_empty();
            if !r.added.is_empty() || r.bans > 0 {
                tracing::info!(
                    "real time: {} lines, {} new bans, {} added to the kernel ({}), {} refused, {:.1} ms",
                    r.lines, r.bans, r.added.len(),
                    r.added.iter().map(crate::net::display_net).collect::<Vec<_>>().join(" "),
                    r.refused, r.millis
                );
            }
            if let Some(why) = r.needs_sync {
                tracing::info!("real time: {why}; starting a full sync");
                pending.get_or_insert(Job::Sync);
            }
        }
        Err(e) => {
            tracing::error!("real-time detection failed: {e:#}; the next sync retries");
        }
    }
    more
}

/// Turn changed paths reported by the watch into the pass's dirty flags.
fn mark_dirty(paths: &[PathBuf], mdir: &Path, logs_dirty: &mut bool, manual_dirty: &mut bool) {
    for p in paths {
        if p == mdir {
            *manual_dirty = true;
        } else {
            *logs_dirty = true;
        }
    }
}

/// Log a finished run and write its metrics.
fn finished_run(
    settings: &Settings,
    ipset: &Kernel,
    result: Result<RunReport, SyncError>,
    secs: f64,
) {
    match result {
        Ok(report) => {
            for e in &report.errors {
                tracing::warn!("sync: {e}");
            }
            let sets: Vec<String> = report
                .sets
                .iter()
                .map(|p| format!("{} {}/{}", p.set, p.after, p.cap))
                .collect();
            tracing::info!(
                "sync {} in {:.2} s: {}",
                report.outcome.label(),
                secs,
                sets.join(", ")
            );
            if let Err(e) = crate::metrics::after_run(settings, &report, secs, ipset) {
                tracing::warn!("metrics: {e:#}");
            }
            let status = format!(
                "last sync {} ({}); {}",
                report.outcome.label(),
                crate::inspect::fmt_time(report.finished),
                sets.join(", ")
            );
            set_status(&status);
            match report.outcome {
                Outcome::Failed => {
                    tracing::error!("sync failed: the live sets were left as they were")
                }
                // As `sipban sync` exits 3: a source in back-off, without its key or its log
                // keeps every run partial until it recovers.
                Outcome::Partial => tracing::warn!(
                    "sync partial: {} source errors (above); their last good entries were kept",
                    report.errors.len()
                ),
                Outcome::Ok => {}
            }
        }
        Err(e) => {
            tracing::error!("sync failed: {e}; the live sets were left as they were");
            set_status("last sync FAILED");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::daemon::resolve;

    #[test]
    fn default_schedule_parses() {
        assert_eq!(
            DaemonSettings::default().sync_schedule.as_str(),
            DEFAULT_SYNC_SCHEDULE
        );
    }

    #[test]
    fn feed_schedules_must_name_configured_feeds() {
        let raw = RawDaemon {
            sync_schedule: Some("*/5 * * * * *".into()),
            feed_schedules: Some([("nope".to_string(), "0 0 * * * *".to_string())].into()),
        };
        let e = resolve(Some(raw), &[]).unwrap_err();
        assert!(e.contains("`nope` is not a configured feed"), "{e}");
        let raw = RawDaemon {
            sync_schedule: Some("often".into()),
            feed_schedules: None,
        };
        assert!(resolve(Some(raw), &[])
            .unwrap_err()
            .starts_with("sync_schedule:"));
    }
}
