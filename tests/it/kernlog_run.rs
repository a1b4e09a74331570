//! The kernel-log detector's run across runs (no kernel needed): the shared tail follower's
//! rotation handling, persisted scoring windows, and bounded state.

use crate::common::lines::append;
use sipban::source::asterisk::{rules::days_from_civil, TimeZone};
use sipban::source::kernlog::{run, KernelLogSettings, KernelState, MAX_ADDRESSES};
use std::collections::HashSet;
use std::path::Path;

/// 2024-05-02 10:00:00 UTC plus `secs`.
fn at(secs: i64) -> i64 {
    days_from_civil(2024, 5, 2) * 86_400 + 36_000 + secs
}

/// A kern.log line (rsyslog RFC 3339 form) for a probe at `at(secs)`.
fn line(secs: i64, src: &str, dpt: u16) -> String {
    let t = at(secs) - days_from_civil(2024, 5, 2) * 86_400;
    format!(
        "2024-05-02T{:02}:{:02}:{:02}+00:00 pbx kernel: [UFW BLOCK] IN=eth0 OUT= MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:08:00 SRC={src} DST=203.0.113.10 LEN=44 TOS=0x00 PREC=0x00 TTL=50 ID=1 PROTO=TCP SPT=40000 DPT={dpt} WINDOW=1024 RES=0x00 SYN URGP=0\n",
        t / 3600,
        t % 3600 / 60,
        t % 60
    )
}

fn settings(log: &Path) -> KernelLogSettings {
    KernelLogSettings {
        files: vec![log.to_path_buf()],
        timezone: TimeZone::FixedOffset(0),
        ..KernelLogSettings::default()
    }
}

/// Through the blob, as sync stores it.
fn roundtrip(state: &KernelState) -> KernelState {
    KernelState::decode(&state.encode().unwrap()).unwrap()
}

#[test]
fn probes_split_across_a_rotation_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("kern.log");
    let s = settings(&log);
    let own = HashSet::new();
    let mut state = KernelState::default();
    // telnet (4) + sunrpc (4): under the threshold.
    append(
        &log,
        &(line(0, "198.51.100.7", 23) + &line(1, "198.51.100.7", 111)),
    );
    let d = run(&s, &mut state, &own, at(10)).unwrap();
    assert!(d.sightings.is_empty());
    let mut state = roundtrip(&state);
    // More is written to the old file, then logrotate renames it and a new file starts.
    append(&log, &line(2, "198.51.100.7", 23)); // a repeat: no weight
    std::fs::rename(&log, dir.path().join("kern.log.1")).unwrap();
    append(&log, &line(3, "198.51.100.7", 1524)); // ingreslock (6): 14 >= 10
    let d = run(&s, &mut state, &own, at(10)).unwrap();
    assert_eq!(
        d.counters.lines, 2,
        "the old file's tail, then the new file"
    );
    assert!(d.files[0].tail.rotated_tail_read);
    assert_eq!(d.sightings.len(), 1);
    assert_eq!(d.sightings[0].net.to_string(), "198.51.100.7/32");
    assert_eq!(d.sightings[0].seen, at(3));
    assert_eq!(d.fired[0].weight, 14);
    // Nothing new: nothing read, nothing fired.
    let mut state = roundtrip(&state);
    let d = run(&s, &mut state, &own, at(20)).unwrap();
    assert_eq!(d.counters.lines, 0);
    assert!(d.fired.is_empty() && d.sightings.is_empty());
}

#[test]
fn probes_older_than_the_ban_make_no_sighting_and_windows_expire() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("kern.log");
    let s = settings(&log);
    let own = HashSet::new();
    let mut state = KernelState::default();
    let mut text = String::new();
    for (i, port) in [23, 111, 1524].iter().enumerate() {
        text += &line(i as i64, "198.51.100.8", *port);
    }
    text += &line(5, "198.51.100.9", 23);
    append(&log, &text);
    // Read two days later: the crossing is in the history, its ban has run out.
    let d = run(&s, &mut state, &own, at(2 * 86_400)).unwrap();
    assert_eq!(d.fired.len(), 1);
    assert!(d.sightings.is_empty());
    assert!(
        state.recent.is_empty(),
        "windows older than `window` are dropped"
    );
}

#[test]
fn state_stays_bounded_under_a_flood_of_sources() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("kern.log");
    let s = settings(&log);
    let own = HashSet::new();
    let mut state = KernelState::default();
    let n = MAX_ADDRESSES + 5_000;
    let mut text = String::with_capacity(n * 260);
    for i in 0..n {
        let a = 0x2d00_0000u32 + i as u32;
        let ip = std::net::Ipv4Addr::from(a).to_string();
        text += &line(i as i64 % 60, &ip, 23);
    }
    append(&log, &text);
    let d = run(&s, &mut state, &own, at(61)).unwrap();
    assert_eq!(d.counters.weighted, n as u64);
    assert!(
        state.recent.len() <= MAX_ADDRESSES,
        "{} windows kept",
        state.recent.len()
    );
    assert!(state.recent.len() >= MAX_ADDRESSES / 2);
}

/// `sipban scan --kernel` with `TMPDIR` set to `tmp`.
fn scan_in(tmp: &Path, log: &Path, json: bool) -> std::process::Output {
    let mut cmd = std::process::Command::new(crate::common::run::bin());
    cmd.args(["scan", "--kernel"]);
    if json {
        cmd.arg("--json");
    }
    cmd.arg(log)
        .arg("--config")
        .arg(tmp.join("no-config.yaml"))
        .env("TMPDIR", tmp)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_scan_of_more_sources_than_its_listing_budget_spills_to_unnamed_files_or_says_why_not() {
    // 70,000 sources, two a second (more than the 65,536 addresses the listing keeps in
    // memory; their windows close as they go), then the first 100 again, crossing.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("kern.log");
    let n = 70_000u32;
    let mut text = String::with_capacity(n as usize * 260);
    for i in 0..n {
        let ip = std::net::Ipv4Addr::from(0x2d00_0000u32 + i * 7).to_string();
        text += &line(i64::from(i / 2), &ip, 23);
    }
    for i in 0..100u32 {
        let ip = std::net::Ipv4Addr::from(0x2d00_0000u32 + i * 7).to_string();
        for (k, p) in [31337, 1524].into_iter().enumerate() {
            text += &line(i64::from(n / 2) + k as i64, &ip, p);
        }
    }
    append(&log, &text);
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let o = scan_in(&tmp, &log, true);
    assert_eq!(o.status.code(), Some(0), "{}", crate::common::run::text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let addrs = v["addresses"].as_array().unwrap();
    assert_eq!(addrs.len(), n as usize);
    let fired: Vec<_> = addrs.iter().take_while(|a| !a["fired"].is_null()).collect();
    assert_eq!(fired.len(), 100);
    assert!(fired
        .iter()
        .all(|a| a["packets"] == 3 && a["ports"].as_array().unwrap().len() == 3));
    let o = scan_in(&tmp, &log, false);
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("\nAddresses: 70000 (100 crossed a threshold)\n"),
        "{}",
        crate::common::run::text(&o)
    );
    // Unnamed: nothing is left behind.
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);

    // No temporary directory to spill to: a clear error, not a panic.
    let gone = dir.path().join("gone");
    let o = scan_in(&gone, &log, false);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}", crate::common::run::text(&o));
    assert!(
        err.contains("unnamed temporary file in") && err.contains("/gone"),
        "{err}"
    );
}
