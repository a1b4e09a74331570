//! The file follower and the detector across real renames, truncations and partial lines in a
//! temporary directory, with the cursor persisted (serde round trip) between "runs".

use crate::common::lines::append;
use sipban::config::values::ReadLimit;
use sipban::source::asterisk::{run, AsteriskSettings, DetectorState, TimeZone};
use sipban::source::tail::{follow, Budget, FileCursor, StartAt, TailStats, MAX_LINE};
use std::fs::{self, OpenOptions};
use std::path::Path;

/// One run: follow from the persisted cursor (JSON, like the lead's state blob).
fn run_once(path: &Path, stored: &mut Option<String>) -> (Vec<String>, TailStats) {
    let prev: Option<FileCursor> = stored
        .as_deref()
        .map(|s| serde_json::from_str(s).expect("cursor JSON"));
    let mut lines = Vec::new();
    let (cur, stats) = follow(
        path,
        prev.as_ref(),
        StartAt::Beginning,
        &mut Budget::unlimited(),
        &mut |l| lines.push(String::from_utf8_lossy(l).into_owned()),
    )
    .expect("follow");
    *stored = cur.map(|c| serde_json::to_string(&c).expect("cursor to JSON"));
    (lines, stats)
}

fn copytruncate(path: &Path) {
    let rotated = path.with_file_name(format!(
        "{}.1",
        path.file_name().and_then(|n| n.to_str()).expect("name")
    ));
    fs::copy(path, &rotated).expect("copy");
    OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open")
        .set_len(0)
        .expect("truncate");
}

#[test]
fn rename_rotation_reads_old_tail_first_and_nothing_twice() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("messages");
    let mut c = None;
    append(&p, "a1\na2\n");
    assert_eq!(run_once(&p, &mut c).0, ["a1", "a2"]);
    append(&p, "a3\na4\n"); // written before rotation, not read yet
    fs::rename(&p, d.path().join("messages.1")).expect("rename");
    append(&p, "b1\n");
    let (lines, s) = run_once(&p, &mut c);
    assert_eq!(lines, ["a3", "a4", "b1"]);
    assert!(s.rotated_tail_read && !s.rotated_tail_lost);
    assert!(run_once(&p, &mut c).0.is_empty());
    append(&p, "b2\n");
    assert_eq!(run_once(&p, &mut c).0, ["b2"]);
}

#[test]
fn rename_to_dated_name_is_found_by_inode() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("messages");
    let mut c = None;
    append(&p, "a1\n");
    run_once(&p, &mut c);
    append(&p, "a2\n");
    fs::rename(&p, d.path().join("messages-20240101")).expect("rename");
    append(&p, "b1\n");
    assert_eq!(run_once(&p, &mut c).0, ["a2", "b1"]);
}

#[test]
fn rotation_with_file_missing_in_between() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("messages");
    let mut c = None;
    append(&p, "a1\n");
    run_once(&p, &mut c);
    append(&p, "a2\n");
    fs::rename(&p, d.path().join("messages.1")).expect("rename");
    // A run while the new file does not exist yet: the old tail is read once.
    let (lines, s) = run_once(&p, &mut c);
    assert_eq!(lines, ["a2"]);
    assert!(s.missing);
    append(&p, "b1\n");
    assert_eq!(run_once(&p, &mut c).0, ["b1"]);
}

#[test]
fn copytruncate_reads_copied_tail_then_new_content() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("messages");
    let mut c = None;
    append(&p, "first line of the old file\na2\n");
    run_once(&p, &mut c);
    append(&p, "a3\n");
    copytruncate(&p);
    append(&p, "b1\n");
    let (lines, s) = run_once(&p, &mut c);
    assert_eq!(lines, ["a3", "b1"]);
    assert!(s.truncated && s.rotated_tail_read);
    assert!(run_once(&p, &mut c).0.is_empty());
}

#[test]
fn copytruncate_noticed_when_new_file_already_grew_past_the_offset() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("messages");
    let mut c = None;
    append(&p, "old 1\nold 2\n");
    run_once(&p, &mut c);
    append(&p, "old 3\n");
    copytruncate(&p);
    let new: Vec<String> = (0..20).map(|i| format!("new line number {i}")).collect();
    append(&p, &(new.join("\n") + "\n"));
    let (lines, s) = run_once(&p, &mut c);
    let mut want = vec!["old 3".to_string()];
    want.extend(new);
    assert_eq!(lines, want);
    assert!(s.truncated);
}

#[test]
fn truncation_without_a_copy_reads_from_start_and_reports_the_loss() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("messages");
    let mut c = None;
    append(&p, "a1\na2\n");
    run_once(&p, &mut c);
    OpenOptions::new()
        .write(true)
        .open(&p)
        .expect("open")
        .set_len(0)
        .expect("truncate");
    append(&p, "b\n");
    let (lines, s) = run_once(&p, &mut c);
    assert_eq!(lines, ["b"]);
    assert!(s.truncated && s.rotated_tail_lost);
}

#[test]
fn replaced_file_is_read_from_its_start() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("messages");
    let mut c = None;
    append(&p, "a1\na2\na3\n");
    run_once(&p, &mut c);
    fs::remove_file(&p).expect("rm");
    append(&p, "z1\n");
    let (lines, s) = run_once(&p, &mut c);
    assert_eq!(lines, ["z1"]);
    assert!(s.replaced);
}

#[test]
fn partial_last_line_waits_for_its_newline() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("messages");
    let mut c = None;
    append(&p, "a1\na2-par");
    assert_eq!(run_once(&p, &mut c).0, ["a1"]);
    assert!(run_once(&p, &mut c).0.is_empty());
    append(&p, "tial\na3");
    assert_eq!(run_once(&p, &mut c).0, ["a2-partial"]);
    // Rotation while a partial line is pending: the partial line of the old file is dropped
    // (Asterisk's append goes to the new file), nothing is duplicated.
    fs::rename(&p, d.path().join("messages.1")).expect("rename");
    append(&p, "b1\n");
    let (lines, s) = run_once(&p, &mut c);
    assert_eq!(lines, ["b1"]);
    assert!(s.partial_dropped);
}

#[test]
fn long_lines_are_skipped_and_counted_across_runs() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("messages");
    let mut c = None;
    append(&p, "a1\n");
    append(&p, &"x".repeat(MAX_LINE + 5));
    let (lines, s1) = run_once(&p, &mut c);
    assert_eq!(lines, ["a1"]);
    append(&p, &"y".repeat(1000));
    append(&p, "\na2\n");
    append(&p, &("z".repeat(3 * MAX_LINE) + "\na3\n"));
    let (lines, s2) = run_once(&p, &mut c);
    assert_eq!(lines, ["a2", "a3"]);
    assert_eq!(s1.long_lines + s2.long_lines, 2);
    // A line of exactly MAX_LINE bytes is still delivered.
    append(&p, &("m".repeat(MAX_LINE) + "\n"));
    assert_eq!(run_once(&p, &mut c).0.len(), 1);
}

#[test]
fn missing_file_then_created() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("security");
    let mut c = None;
    let (lines, s) = run_once(&p, &mut c);
    assert!(lines.is_empty() && s.missing && c.is_none());
    append(&p, "s1\n");
    assert_eq!(run_once(&p, &mut c).0, ["s1"]);
}

// ---------------------------------------------------------------------------------------------
// the detector across rotations

const T0: i64 = 1_714_644_000; // 2024-05-02T10:00:00Z

fn reg_line(t: i64, ip: &str) -> String {
    let s = t - 1_714_608_000; // seconds since 2024-05-02T00:00:00Z
    format!(
        "[2024-05-02 {:02}:{:02}:{:02}] NOTICE[4102] chan_sip.c: Registration from '<sip:1@x>' failed for '{ip}:5060' - Wrong password\n",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

fn settings(dir: &Path) -> AsteriskSettings {
    AsteriskSettings {
        logs: vec![dir.join("messages"), dir.join("security")],
        full_log: None,
        timezone: TimeZone::FixedOffset(0),
        ..AsteriskSettings::default()
    }
}

#[test]
fn detector_counts_each_line_once_across_runs_and_rotations() {
    let d = tempfile::tempdir().expect("tempdir");
    let s = settings(d.path());
    let p = d.path().join("messages");
    let mut state = DetectorState::default();
    let persist = |st: &DetectorState| -> DetectorState {
        serde_json::from_str(&serde_json::to_string(st).expect("state to JSON")).expect("state")
    };
    append(
        &p,
        &(reg_line(T0, "192.0.2.7") + &reg_line(T0 + 1, "192.0.2.7")),
    );
    let r = run(&s, &mut state, T0 + 2).expect("run");
    assert_eq!(r.counters.matched, 2);
    assert!(r.sightings.is_empty());
    state = persist(&state);
    // Two more, then a rename rotation, then a fifth in the new file: the ban needs all five.
    append(
        &p,
        &(reg_line(T0 + 3, "192.0.2.7") + &reg_line(T0 + 4, "192.0.2.7")),
    );
    fs::rename(&p, d.path().join("messages.1")).expect("rename");
    append(&p, &reg_line(T0 + 5, "192.0.2.7"));
    let r = run(&s, &mut state, T0 + 6).expect("run");
    assert_eq!(r.counters.matched, 3);
    assert_eq!(r.sightings.len(), 1);
    assert_eq!(r.sightings[0].ttl, 7200);
    assert_eq!(r.sightings[0].seen, T0 + 5);
    assert_eq!(r.bans[0].nth, 1);
    state = persist(&state);
    // Nothing new: nothing counted.
    let r = run(&s, &mut state, T0 + 7).expect("run");
    assert_eq!(r.counters.matched, 0);
    // Copytruncate, five more: second ban, doubled ban time.
    append(&p, &reg_line(T0 + 8, "192.0.2.7"));
    copytruncate(&p);
    for i in 9..13 {
        append(&p, &reg_line(T0 + i, "192.0.2.7"));
    }
    let r = run(&s, &mut state, T0 + 13).expect("run");
    assert_eq!(r.counters.matched, 5);
    assert_eq!(r.bans.len(), 1);
    assert_eq!((r.bans[0].nth, r.bans[0].ttl), (2, 14_400));
}

#[test]
fn detector_ignores_failures_older_than_findtime_and_spread_out_ones() {
    let d = tempfile::tempdir().expect("tempdir");
    let s = settings(d.path());
    let p = d.path().join("messages");
    let mut state = DetectorState::default();
    // Five failures an hour before "now": history, no ban.
    let text: String = (0..5).map(|i| reg_line(T0 + i, "192.0.2.8")).collect();
    append(&p, &text);
    let r = run(&s, &mut state, T0 + 3600).expect("run");
    assert_eq!(r.counters.matched, 5);
    assert!(r.bans.is_empty());
    // Five failures 4 minutes apart: never 5 within 10 minutes.
    let now = T0 + 7200;
    let text: String = (0..5)
        .map(|i| reg_line(now - 1200 + i * 240, "192.0.2.9"))
        .collect();
    append(&p, &text);
    let r = run(&s, &mut state, now).expect("run");
    assert!(r.bans.is_empty(), "{:?}", r.bans);
    assert_eq!(r.evidence.len(), 1);
}

#[test]
fn detector_same_line_in_messages_and_full_counts_once() {
    let d = tempfile::tempdir().expect("tempdir");
    let mut s = settings(d.path());
    s.full_log = Some(d.path().join("full"));
    s.maxretry = 3;
    let text: String = (0..3).map(|i| reg_line(T0 + i, "192.0.2.10")).collect();
    append(&d.path().join("messages"), &text);
    append(&d.path().join("full"), &text);
    let mut state = DetectorState::default();
    let r = run(&s, &mut state, T0 + 5).expect("run");
    assert_eq!(r.counters.matched, 3);
    assert_eq!(r.counters.duplicates, 3);
    assert_eq!(r.bans.len(), 1);
    // The full log's copy arrives one run later: still a duplicate.
    append(&d.path().join("messages"), &reg_line(T0 + 6, "192.0.2.10"));
    let r = run(&s, &mut state, T0 + 7).expect("run");
    assert_eq!(r.counters.matched, 1);
    append(&d.path().join("full"), &reg_line(T0 + 6, "192.0.2.10"));
    let r = run(&s, &mut state, T0 + 8).expect("run");
    assert_eq!((r.counters.matched, r.counters.duplicates), (0, 1));
}

/// A FIFO, a device or a directory at a log's path is an error naming it, at once: the run is
/// never blocked (a FIFO without a writer) nor spun forever (`/dev/zero`). Checked through the
/// follower and through `sipban scan` for both detectors, bounded by `timeout` so a hang fails
/// the test instead of stalling the suite.
#[test]
fn only_regular_files_are_read_as_logs() {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let d = tempfile::tempdir().expect("tempdir");
    let fifo = d.path().join("messages");
    let c = CString::new(fifo.as_os_str().as_bytes()).expect("path");
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    for (path, kind) in [
        (fifo.as_path(), "a FIFO"),
        (Path::new("/dev/zero"), "a device"),
        (d.path(), "a directory"),
    ] {
        let e = follow(
            path,
            None,
            StartAt::Beginning,
            &mut Budget::unlimited(),
            &mut |_| {},
        )
        .expect_err("not a file");
        let msg = e.to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains(kind),
            "{msg}"
        );
        for kernel in [false, true] {
            let mut args = vec![
                "20".to_string(),
                crate::common::run::bin().display().to_string(),
            ];
            args.extend(["--config", "/nonexistent/sipban.yaml", "scan"].map(String::from));
            if kernel {
                args.push("--kernel".into());
            }
            args.push(path.display().to_string());
            let o = std::process::Command::new("timeout")
                .args(&args)
                .stdin(std::process::Stdio::null())
                .output()
                .expect("run sipban");
            let text = crate::common::run::text(&o);
            assert_ne!(o.status.code(), Some(124), "hung on {kind}: {text}");
            assert!(!o.status.success(), "{text}");
            assert!(text.contains(kind), "{text}");
        }
    }
}

/// A sync whose Asterisk and kernel logs are FIFOs ends (it used to block forever, holding the
/// lock) and names them in its report.
#[test]
fn a_sync_with_fifo_logs_ends_and_names_them() {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let d = tempfile::tempdir().expect("tempdir");
    let fifo = d.path().join("messages");
    let c = CString::new(fifo.as_os_str().as_bytes()).expect("path");
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    fs::write(
        d.path().join("config.yaml"),
        format!(
            "state_dir: {}\nsets:\n  v4: {{ name: ff4, cap: 100 }}\n  v6: {{ name: ff6, cap: 100 }}\nasterisk:\n  logs: [{f}]\nkernel_log:\n  files: [{f}]\n",
            d.path().join("state").display(),
            f = fifo.display()
        ),
    )
    .expect("config");
    let o = std::process::Command::new("timeout")
        .arg("30")
        .arg(crate::common::run::bin())
        .args(["sync", "--dry-run", "--json", "--config"])
        .arg(d.path().join("config.yaml"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run sipban");
    let text = crate::common::run::text(&o);
    assert_ne!(o.status.code(), Some(124), "the sync hung: {text}");
    assert_eq!(
        text.matches("is a FIFO: only regular files are read as logs")
            .count()
            .min(2),
        2,
        "both detectors name the FIFO: {text}"
    );
}

/// A backlog bigger than one pass's read limit is read in slices, one per run, from where the
/// last stopped: the pass says it was cut, and every line counts exactly once.
#[test]
fn a_backlog_over_the_read_limit_is_read_across_runs_and_counted_once() {
    let d = tempfile::tempdir().expect("tempdir");
    let s = AsteriskSettings {
        read_limit: ReadLimit {
            bytes: 1 << 20,
            secs: 3600,
        },
        ..settings(d.path())
    };
    let p = d.path().join("messages");
    // 3 MiB of lines no rule matches, with a failure every 600 lines.
    let noise = "[2024-05-02 10:00:00] VERBOSE[4102] pbx.c: Executing [s@default:1] NoOp(\"SIP/x\", \"padding padding padding\") in new stack\n";
    let mut text = String::new();
    let mut failures = 0;
    let mut i = 0;
    while text.len() < 3 << 20 {
        if i % 600 == 599 {
            text.push_str(&reg_line(T0 + failures, "192.0.2.7"));
            failures += 1;
        } else {
            text.push_str(noise);
        }
        i += 1;
    }
    append(&p, &text);
    let mut state = DetectorState::default();
    let (mut matched, mut runs, mut banned) = (0, 0, false);
    loop {
        let r = run(&s, &mut state, T0 + 60).expect("run");
        matched += r.counters.matched;
        banned |= !r.sightings.is_empty();
        runs += 1;
        let cut = r.files.iter().any(|f| f.tail.limited);
        if !cut {
            break;
        }
        assert!(runs < 10, "the reading never ends");
        state = serde_json::from_str(&serde_json::to_string(&state).expect("json")).expect("state");
    }
    assert!(
        runs >= 3,
        "a 3 MiB backlog takes several 1 MiB passes: {runs}"
    );
    assert_eq!(
        matched, failures as u64,
        "each failure line counted exactly once"
    );
    assert!(banned);
}

/// A log that would take very long to read (a sparse 1 TiB file: all NULs, no newline) is cut
/// by the pass's time limit: the sync ends, and says so.
#[test]
fn a_sync_stops_reading_a_huge_log_at_its_time_limit_and_says_so() {
    let d = tempfile::tempdir().expect("tempdir");
    let log = d.path().join("messages");
    let f = fs::File::create(&log).expect("create");
    if f.set_len(1 << 40).is_err() {
        eprintln!("this file system cannot hold a sparse 1 TiB file; skipped");
        return;
    }
    drop(f);
    fs::write(
        d.path().join("config.yaml"),
        format!(
            "state_dir: {}\nsets:\n  v4: {{ name: tl4, cap: 100 }}\n  v6: {{ name: tl6, cap: 100 }}\nasterisk:\n  logs: [{}]\n  max_read_per_run: 1000000GiB\n  max_read_time: 1s\n",
            d.path().join("state").display(),
            log.display()
        ),
    )
    .expect("config");
    let o = std::process::Command::new("timeout")
        .arg("120")
        .arg(crate::common::run::bin())
        .args(["sync", "--dry-run", "--json", "--config"])
        .arg(d.path().join("config.yaml"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run sipban");
    let text = crate::common::run::text(&o);
    assert_ne!(
        o.status.code(),
        Some(124),
        "the sync did not stop reading: {text}"
    );
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(
        text.contains("messages: read limit reached"),
        "the report names the file that was cut: {text}"
    );
}
