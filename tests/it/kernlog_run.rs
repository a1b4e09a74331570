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
