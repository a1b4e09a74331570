//! The detectors' journal input on real journal files, no journald needed: entries in Journal
//! Export Format are turned into a journal file by `systemd-journal-remote` (Debian package
//! `systemd-journal-remote`), and sipban reads them through `journalctl`, as on a host.
//!
//! Covered: the kernel's entries (`_TRANSPORT=kernel`, never an identifier); Asterisk's by
//! unit (console lines on stdout, with colours) and by identifier (syslog layout, trusted only
//! with the right `_UID`); a newline injected into a syslog message; the cursor across runs
//! (nothing counted twice, nothing missed); a vacuumed cursor; and the daemon following the
//! journal within 1 s.

use crate::common::netns::run_in;
use crate::common::run::bin;
use sipban::config::journal::JournalSettings;
use sipban::source::asterisk::{self, AsteriskSettings, DetectorState, TimeZone};
use sipban::source::kernlog::{self, KernelLogSettings, KernelState};
use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const REMOTE: &str = "/lib/systemd/systemd-journal-remote";
const BOOT: &str = "0123456789abcdef0123456789abcdef";

/// Whether the tools are here (else the test says why and is skipped; CI installs them).
fn tools() -> bool {
    if Path::new(REMOTE).is_file() && crate::common::netns::require_program("journalctl") {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "needs {REMOTE} (apt-get install systemd-journal-remote)"
    );
    eprintln!("skipped: needs {REMOTE} (apt-get install systemd-journal-remote)");
    false
}

/// One journal entry: its time (Unix seconds) and its fields.
struct E {
    t: i64,
    fields: Vec<(&'static str, Vec<u8>)>,
}

impl E {
    fn new(t: i64) -> E {
        E {
            t,
            fields: Vec::new(),
        }
    }
    fn f(mut self, k: &'static str, v: impl AsRef<[u8]>) -> E {
        self.fields.push((k, v.as_ref().to_vec()));
        self
    }
}

/// Journal Export Format (binary-safe form for values with control bytes).
fn export(entries: &[E]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let mut fields = vec![
            (
                "__REALTIME_TIMESTAMP",
                (e.t * 1_000_000 + i as i64).to_string().into_bytes(),
            ),
            // One boot whose monotonic clock started at 2025-01-01.
            (
                "__MONOTONIC_TIMESTAMP",
                ((e.t - 1_735_689_600) * 1_000_000 + i as i64)
                    .to_string()
                    .into_bytes(),
            ),
            ("_BOOT_ID", BOOT.as_bytes().to_vec()),
        ];
        fields.extend(e.fields.iter().cloned());
        for (k, v) in fields {
            if v.iter().any(|b| *b < 0x20 && *b != b'\t') {
                out.extend_from_slice(k.as_bytes());
                out.push(b'\n');
                out.extend_from_slice(&(v.len() as u64).to_le_bytes());
                out.extend_from_slice(&v);
                out.push(b'\n');
            } else {
                out.extend_from_slice(k.as_bytes());
                out.push(b'=');
                out.extend_from_slice(&v);
                out.push(b'\n');
            }
        }
        out.push(b'\n');
    }
    out
}

/// Append `entries` to the journal file `file` (created if missing).
fn write_journal(file: &Path, entries: &[E]) {
    let out = crate::common::run::piped(
        Command::new(REMOTE)
            .arg("--split-mode=none")
            .arg(format!("--output={}", file.display()))
            .arg("-")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
        &export(entries),
    );
    assert!(
        out.status.success(),
        "systemd-journal-remote: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// 2026-12-03 10:00:00 UTC plus `secs`.
fn at(secs: i64) -> i64 {
    1_764_756_000 + secs
}

fn kernel_msg(src: &str, dpt: u16) -> String {
    format!("[UFW BLOCK] IN=eth0 OUT= MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:08:00 SRC={src} DST=203.0.113.10 LEN=44 TOS=0x00 PREC=0x00 TTL=241 ID=1 PROTO=TCP SPT=40000 DPT={dpt} WINDOW=1024 RES=0x00 SYN URGP=0")
}

/// The kernel's own entry.
fn kernel(t: i64, src: &str, dpt: u16) -> E {
    E::new(t)
        .f("_TRANSPORT", "kernel")
        .f("SYSLOG_IDENTIFIER", "kernel")
        .f("PRIORITY", "4")
        .f("MESSAGE", kernel_msg(src, dpt))
}

/// Asterisk's syslog channel (11+ layout): a chan_sip registration failure from `ip`.
fn syslog_msg(ip: &str) -> String {
    format!("NOTICE[4102][C-0000001a]: chan_sip.c:28076 in handle_request_register: Registration from '<sip:100@pbx>' failed for '{ip}:5060' - Wrong password")
}

/// A syslog entry under identifier `asterisk`, written with `uid`.
fn by_identifier(t: i64, uid: &str, msg: impl AsRef<[u8]>) -> E {
    E::new(t)
        .f("_TRANSPORT", "syslog")
        .f("SYSLOG_IDENTIFIER", "asterisk")
        .f("SYSLOG_FACILITY", "16")
        .f("PRIORITY", "5")
        .f("_UID", uid)
        .f("_COMM", "asterisk")
        .f("MESSAGE", msg)
}

/// A console line of `asterisk -f` under asterisk.service (stdout, with colours).
fn by_unit(t: i64, ip: &str) -> E {
    let msg = format!("[2026-12-03 10:00:00] \x1b[1;33mNOTICE\x1b[0m[4102]: \x1b[1;37mchan_sip.c\x1b[0m:\x1b[1;37m28076\x1b[0m \x1b[1;37mhandle_request_register\x1b[0m: Registration from '<sip:100@pbx>' failed for '{ip}:5060' - Wrong password");
    E::new(t)
        .f("_TRANSPORT", "stdout")
        .f("SYSLOG_IDENTIFIER", "asterisk")
        .f("_SYSTEMD_UNIT", "asterisk.service")
        .f("_UID", "112")
        .f("_COMM", "asterisk")
        .f("MESSAGE", msg)
}

fn journal(dir: &Path) -> JournalSettings {
    JournalSettings {
        directory: Some(dir.to_path_buf()),
    }
}

fn asterisk_settings(dir: &Path, maxretry: u32) -> AsteriskSettings {
    AsteriskSettings {
        logs: Vec::new(),
        maxretry,
        journal: Some(journal(dir)),
        timezone: TimeZone::FixedOffset(0),
        ..AsteriskSettings::default()
    }
}

/// The state through its blob, as sync stores it.
fn roundtrip(s: &DetectorState) -> DetectorState {
    serde_json::from_slice(&serde_json::to_vec(s).unwrap()).unwrap()
}

fn banned(d: &asterisk::Detections) -> Vec<String> {
    let mut v: Vec<String> = d.bans.iter().map(|b| b.ip.to_string()).collect();
    v.sort();
    v
}

#[test]
fn kernel_entries_count_and_a_kernel_identifier_from_userspace_does_not() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("system.journal");
    let mut entries = Vec::new();
    for (i, p) in [23, 111, 1524].iter().enumerate() {
        entries.push(kernel(at(i as i64), "198.51.100.7", *p));
        // `logger -t kernel` from any account: syslog transport.
        entries.push(
            E::new(at(i as i64))
                .f("_TRANSPORT", "syslog")
                .f("SYSLOG_IDENTIFIER", "kernel")
                .f("_UID", "1000")
                .f("MESSAGE", kernel_msg("198.51.100.66", *p)),
        );
        entries.push(
            E::new(at(i as i64))
                .f("_TRANSPORT", "stdout")
                .f("SYSLOG_IDENTIFIER", "sshd")
                .f("MESSAGE", "unrelated"),
        );
    }
    write_journal(&file, &entries);
    let s = KernelLogSettings {
        files: Vec::new(),
        journal: Some(journal(dir.path())),
        threshold: 0,
        distinct_ports: 3,
        timezone: TimeZone::FixedOffset(0),
        ..KernelLogSettings::default()
    };
    let mut state = KernelState::default();
    let d = kernlog::run(&s, &mut state, &HashSet::new(), at(60)).unwrap();
    let j = d.journal.as_ref().expect("journal report");
    assert_eq!(j.error, None);
    assert_eq!(j.stats.entries, 3, "{j:?}");
    assert_eq!(d.counters.lines, 3);
    // The journal match is an input like a file: its lines counted (issue 15, item 4).
    let c = j.counts;
    assert_eq!(
        (c.read, c.parsed, c.matched, c.refused, c.unparsed),
        (3, 3, 3, 0, 0),
        "{j:?}"
    );
    let fired: Vec<String> = d.fired.iter().map(|f| f.ip.to_string()).collect();
    assert_eq!(fired, ["198.51.100.7"]);
    // Across runs, through the blob: the next probes are read once.
    let mut state = KernelState::decode(&state.encode().unwrap()).unwrap();
    assert!(state.journal.as_ref().unwrap().position.cursor.is_some());
    write_journal(
        &file,
        &[
            kernel(at(10), "198.51.100.8", 23),
            kernel(at(11), "198.51.100.8", 111),
        ],
    );
    let d = kernlog::run(&s, &mut state, &HashSet::new(), at(60)).unwrap();
    assert_eq!(d.counters.lines, 2);
    assert!(d.fired.is_empty());
    let d = kernlog::run(&s, &mut state, &HashSet::new(), at(60)).unwrap();
    assert_eq!(d.counters.lines, 0, "nothing new, nothing read");
}

#[test]
fn asterisk_by_unit_and_by_trusted_identifier_count_a_forged_identifier_does_not() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("system.journal");
    let forged = |t: i64, ip: &str| {
        // `logger -t asterisk` from a local account, even run as a binary named asterisk.
        by_identifier(t, "1000", syslog_msg(ip)).f("_SYSTEMD_UNIT", "session-4.scope")
    };
    write_journal(
        &file,
        &[
            by_unit(at(1), "198.51.100.1"),
            by_identifier(at(2), "0", syslog_msg("198.51.100.2")),
            forged(at(3), "198.51.100.3"),
            by_unit(at(4), "198.51.100.1"),
            by_identifier(at(5), "0", syslog_msg("198.51.100.2")),
            forged(at(6), "198.51.100.3"),
        ],
    );
    let s = asterisk_settings(dir.path(), 2);
    let mut state = DetectorState::default();
    let d = asterisk::run(&s, &mut state, at(60)).unwrap();
    let j = d.journal.as_ref().unwrap();
    assert_eq!((j.accepted, j.untrusted), (4, 2), "{j:?}");
    // Read: all six; refused: at least the two forged ones; matched: the four failures.
    let c = j.counts;
    assert_eq!((c.read, c.matched, c.unparsed), (6, 4, 0), "{j:?}");
    assert!(c.refused >= 2, "{j:?}");
    assert_eq!(banned(&d), ["198.51.100.1", "198.51.100.2"]);
    // The ban's time is the entry's (syslog layout has no date of its own).
    let b = d.bans.iter().find(|b| b.ip.to_string() == "198.51.100.2");
    assert_eq!(b.unwrap().seen, at(5));
}

#[test]
fn a_newline_injected_into_a_syslog_message_forges_no_line() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("system.journal");
    // A PJSIP security event whose account (the From user, 36 bytes at most) carries a
    // newline and a line that names a victim. Split into lines, the second would be read as
    // a whole failure line of its own.
    let forged = "x\nNOTICE[1]: chan_sip.c:1 in f: Registration from '' failed for '203.0.113.99:5060' - Wrong password";
    let msg = format!("SECURITY[4102]: res_security_log.c:213 in security_event_stasis_cb: SecurityEvent=\"InvalidAccountID\",EventTV=\"2026-12-03T10:00:00.000+0000\",Severity=\"Error\",Service=\"PJSIP\",EventVersion=\"1\",AccountID=\"{forged}\",SessionID=\"abc\",LocalAddress=\"IPV4/UDP/203.0.113.10/5060\",RemoteAddress=\"IPV4/UDP/198.51.100.9/5060\"");
    write_journal(&file, &[by_identifier(at(1), "0", msg)]);
    let s = asterisk_settings(dir.path(), 1);
    let mut state = DetectorState::default();
    let d = asterisk::run(&s, &mut state, at(60)).unwrap();
    assert!(
        !banned(&d).contains(&"203.0.113.99".to_string()),
        "a forged line was counted: {:?}",
        d.bans
    );
    assert_eq!(d.counters.lines, 1, "one entry, one message");
}

#[test]
fn the_cursor_carries_across_runs_nothing_twice_nothing_missed() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("system.journal");
    let ip = "198.51.100.20";
    let other = |t: i64| {
        E::new(t)
            .f("_TRANSPORT", "syslog")
            .f("SYSLOG_IDENTIFIER", "cron")
            .f("_UID", "0")
            .f("MESSAGE", "(root) CMD (true)")
    };
    // Three failures, other programs between them (the cursor's entry matches; the entries
    // after it do not, then one does: systemd #30288's case).
    write_journal(
        &file,
        &[
            by_identifier(at(1), "0", syslog_msg(ip)),
            other(at(1)),
            by_identifier(at(2), "0", syslog_msg(ip)),
            by_identifier(at(3), "0", syslog_msg(ip)),
            other(at(3)),
        ],
    );
    let s = asterisk_settings(dir.path(), 5);
    let mut state = DetectorState::default();
    let d = asterisk::run(&s, &mut state, at(60)).unwrap();
    assert_eq!(d.counters.matched, 3);
    assert!(d.bans.is_empty());
    let mut state = roundtrip(&state);
    // Nothing new: nothing read.
    let d = asterisk::run(&s, &mut state, at(61)).unwrap();
    assert_eq!(d.counters.lines, 0);
    write_journal(
        &file,
        &[
            other(at(4)),
            by_identifier(at(5), "0", syslog_msg(ip)),
            other(at(6)),
            by_identifier(at(7), "0", syslog_msg(ip)),
        ],
    );
    let mut state = roundtrip(&state);
    let d = asterisk::run(&s, &mut state, at(62)).unwrap();
    assert_eq!(d.counters.matched, 2, "exactly the two new failures");
    assert_eq!(banned(&d), [ip], "3 + 2 = maxretry 5");
    let j = d.journal.unwrap();
    assert!(!j.stats.cursor_lost, "{j:?}");
}

#[test]
fn a_vacuumed_cursor_restarts_from_findtime_and_says_so() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("system.journal");
    write_journal(
        &file,
        &[
            by_identifier(at(0), "0", syslog_msg("198.51.100.30")),
            by_identifier(at(1), "0", syslog_msg("198.51.100.30")),
        ],
    );
    let mut s = asterisk_settings(dir.path(), 2);
    s.findtime = 600;
    let mut state = DetectorState::default();
    let d = asterisk::run(&s, &mut state, at(10)).unwrap();
    assert_eq!(banned(&d), ["198.51.100.30"]);
    // The journal is vacuumed: the file with the cursor's entry is gone, a new one holds
    // entries from before the time bound and after it.
    std::fs::remove_file(&file).unwrap();
    let now = at(2_000);
    write_journal(
        &dir.path().join("system@new.journal"),
        &[
            by_identifier(now - 900, "0", syslog_msg("198.51.100.31")),
            by_identifier(now - 100, "0", syslog_msg("198.51.100.32")),
            by_identifier(now - 50, "0", syslog_msg("198.51.100.32")),
        ],
    );
    let mut state = roundtrip(&state);
    let d = asterisk::run(&s, &mut state, now).unwrap();
    let j = d.journal.as_ref().unwrap();
    assert!(j.stats.cursor_lost, "{j:?}");
    assert_eq!(j.stats.restarted_at, Some(now - 600));
    assert_eq!(d.counters.matched, 2);
    assert_eq!(banned(&d), ["198.51.100.32"]);
    // The run report says so.
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir: {}\njournal: {{ directory: {} }}\nasterisk: {{ journal: true }}\n",
            dir.path().join("state").display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let settings = sipban::config::load(&cfg).unwrap();
    let mut state = roundtrip(&state);
    state.journal.as_mut().unwrap().position.cursor =
        Some("s=d16e9b4edadb46c5834902238aa131ef;i=4;b=0123456789abcdef0123456789abcdef;m=2dcaa8;t=6450a3517b6c0;x=b76f8347b526a46d".into());
    let blob = serde_json::to_vec(&state).unwrap();
    let det = sipban::pipeline::detect::configured(&settings);
    let pass = det[0].pass(Some(&blob), now + 1).unwrap();
    assert!(
        pass.notes
            .iter()
            .any(|n| n.contains("no longer in the journal")),
        "{:?}",
        pass.notes
    );
}

/// `sipban run` follows the journal: an entry written to a journal file reaches the kernel
/// set within 1 s.
#[test]
fn the_daemon_follows_the_journal_within_one_second() {
    if !tools() {
        return;
    }
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let jdir = dir.path().join("journal");
        std::fs::create_dir(&jdir).unwrap();
        let file = jdir.join("system.journal");
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64
        };
        write_journal(&file, &[by_identifier(now(), "0", "VERBOSE[1]: start")]);
        let cfg = dir.path().join("config.yaml");
        std::fs::write(
            &cfg,
            format!(
                "state_dir: {}\nsets:\n  v4: {{ name: j4, cap: 1000 }}\n  v6: {{ name: j6, cap: 1000 }}\njournal: {{ directory: {} }}\nasterisk:\n  journal: true\n  maxretry: 1\n  bantime: 1h\nkernel_log:\n  journal: true\n  threshold: 0\n  distinct_ports: 2\ndaemon:\n  sync_schedule: \"0 0 0 1 1 *\"\n",
                dir.path().join("state").display(),
                jdir.display()
            ),
        )
        .unwrap();
        let log = dir.path().join("daemon.log");
        let mut child = Command::new(bin())
            .args(["run", "-vv", "--config"])
            .arg(&cfg)
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
        let wait = |what: &dyn Fn() -> bool, limit: Duration| -> Option<Duration> {
            let t = Instant::now();
            while t.elapsed() < limit {
                if what() {
                    return Some(t.elapsed());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            None
        };
        let in_set = |ip: &str| {
            Command::new("ipset")
                .args(["test", "j4", ip])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success()
        };
        if wait(&|| read_log().contains("sync ok"), Duration::from_secs(30)).is_none() {
            let _ = child.kill();
            panic!("no first sync; log:\n{}", read_log());
        }
        let mut lat = Vec::new();
        for i in 1..=5 {
            let ip = format!("45.30.0.{i}");
            let t = Instant::now();
            write_journal(&file, &[by_identifier(now(), "0", syslog_msg(&ip))]);
            if wait(&|| in_set(&ip), Duration::from_secs(5)).is_none() {
                let _ = child.kill();
                panic!("{ip} not in the set after 5 s; log:\n{}", read_log());
            }
            lat.push(t.elapsed());
        }
        // The kernel's entries too.
        let t = Instant::now();
        write_journal(
            &file,
            &[
                kernel(now(), "45.31.0.1", 23),
                kernel(now(), "45.31.0.1", 111),
            ],
        );
        if wait(&|| in_set("45.31.0.1"), Duration::from_secs(5)).is_none() {
            let _ = child.kill();
            panic!(
                "kernel probes not in the set after 5 s; log:\n{}",
                read_log()
            );
        }
        lat.push(t.elapsed());
        let _ = child.kill();
        let _ = child.wait();
        eprintln!("journal entry -> kernel set: {lat:?}");
        let slowest = lat.iter().max().unwrap();
        assert!(
            *slowest < Duration::from_secs(1),
            "slowest took {slowest:?} (bound: 1 s); all: {lat:?}; log:\n{}",
            read_log()
        );
    });
}

/// The pass's read limit bounds a journal read as it bounds a file's: the pass stops after
/// the limit, the cursor at the last entry handled, and the next pass reads on from there.
#[test]
fn the_read_limit_cuts_a_journal_pass_and_the_next_reads_on() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("system.journal");
    let entries: Vec<E> = (0..40)
        .map(|i| by_identifier(at(i), "0", syslog_msg(&format!("198.51.100.{}", 100 + i))))
        .collect();
    write_journal(&file, &entries);
    let mut s = asterisk_settings(dir.path(), 100);
    // About 500 bytes of JSON an entry: a few entries a pass.
    s.read_limit = sipban::config::values::ReadLimit {
        bytes: 2_000,
        secs: 60,
    };
    let mut state = DetectorState::default();
    let mut total = 0;
    let mut passes = 0;
    loop {
        let d = asterisk::run(&s, &mut state, at(60)).unwrap();
        let j = d.journal.as_ref().unwrap();
        total += d.counters.matched;
        passes += 1;
        assert!(passes <= 40, "no progress");
        if !j.stats.limited {
            break;
        }
        assert!(j.stats.entries > 0 && j.stats.entries < 40, "{j:?}");
        state = roundtrip(&state);
    }
    assert!(passes > 2, "{passes} passes");
    assert_eq!(total, 40, "every entry once");
}

/// `config check` says when the kernel's lines come from the journal because the default
/// kern.log does not exist.
#[test]
fn config_check_says_when_the_journal_replaces_a_missing_kern_log() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir: {}\nkernel_log: {{ threshold: 5 }}\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let o = Command::new(bin())
        .args(["config", "check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    let said = text.contains("read from the system journal (_TRANSPORT=kernel)");
    // Whether it applies depends on this host: the default path is fixed.
    assert_eq!(said, !Path::new("/var/log/kern.log").exists(), "{text}");
    // Files given: never.
    std::fs::write(
        &cfg,
        format!(
            "state_dir: {}\nkernel_log: {{ files: [{}] }}\n",
            dir.path().join("state").display(),
            dir.path().join("none.log").display()
        ),
    )
    .unwrap();
    let o = Command::new(bin())
        .args(["config", "check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&o.stdout).contains("note: kernel_log"));
}
