//! Spray-proof offence counting (issue 13, item 5), for both log detectors: an attacker one
//! failure short of a ban sprays one-shot failures from 70,000 spoofed sources (more than the
//! detectors remember) to push its own count out of the bounded state. Its next failure must
//! still ban it, whether the spray comes in the same run or in a run of its own; the state
//! stays within its cap, and what had to be dropped is counted.

use crate::common::lines::{append, asterisk_line, kernel_line};
use sipban::source::asterisk::{self, AsteriskSettings, DetectorState, TimeZone};
use sipban::source::kernlog::{self, KernelLogSettings, KernelState};
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::Path;

/// Sources in a spray: more than either detector remembers.
const SPRAY: u32 = 70_000;
/// 2024-05-02 10:00:00 UTC.
const T0: i64 = 1_714_644_000;
const ATTACKER: &str = "45.66.0.1";

/// The `i`-th spoofed source (45.128.0.0 upwards).
fn spoofed(i: u32) -> String {
    Ipv4Addr::from(0x2d80_0000u32 + i).to_string()
}

/// Spray times: newer than the attacker's failures, all within 10 minutes of `T0 + 400`.
fn spray_time(i: u32) -> i64 {
    T0 + 10 + i64::from(i / 200)
}

// --- Asterisk ----------------------------------------------------------------------------------

fn ast_settings(dir: &Path) -> AsteriskSettings {
    AsteriskSettings {
        logs: vec![dir.join("messages")],
        full_log: None,
        timezone: TimeZone::FixedOffset(0),
        ..AsteriskSettings::default() // maxretry 5, findtime 10 min
    }
}

/// Through the blob, as sync stores it.
fn ast_persist(st: &DetectorState) -> DetectorState {
    serde_json::from_slice(&serde_json::to_vec(st).unwrap()).unwrap()
}

fn ast_spray() -> String {
    (0..SPRAY)
        .map(|i| asterisk_line(spray_time(i), &spoofed(i)))
        .collect()
}

/// The attacker's first `maxretry - 1` failures.
fn ast_attacker_short_of_a_ban() -> String {
    (0..4).map(|i| asterisk_line(T0 + i, ATTACKER)).collect()
}

fn ast_banned(d: &asterisk::Detections) -> bool {
    d.bans.iter().any(|b| b.ip.to_string() == ATTACKER)
}

#[test]
fn asterisk_a_spray_in_the_same_run_does_not_reset_the_attackers_count() {
    let dir = tempfile::tempdir().unwrap();
    let s = ast_settings(dir.path());
    let log = dir.path().join("messages");
    let mut state = DetectorState::default();
    append(&log, &(ast_attacker_short_of_a_ban() + &ast_spray()));
    let d = asterisk::run(&s, &mut state, T0 + 400).unwrap();
    assert!(d.bans.is_empty(), "{:?}", &d.bans[..d.bans.len().min(3)]);
    assert_eq!(d.counters.matched, 4 + u64::from(SPRAY));
    let mut state = ast_persist(&state);
    append(&log, &asterisk_line(T0 + 401, ATTACKER));
    let d = asterisk::run(&s, &mut state, T0 + 402).unwrap();
    assert!(
        ast_banned(&d),
        "the attacker's count was evicted by the spray"
    );
}

#[test]
fn asterisk_a_spray_in_a_run_of_its_own_does_not_reset_the_attackers_count() {
    let dir = tempfile::tempdir().unwrap();
    let s = ast_settings(dir.path());
    let log = dir.path().join("messages");
    let mut state = DetectorState::default();
    append(&log, &ast_attacker_short_of_a_ban());
    asterisk::run(&s, &mut state, T0 + 5).unwrap();
    let mut state = ast_persist(&state);
    append(&log, &ast_spray());
    let d = asterisk::run(&s, &mut state, T0 + 400).unwrap();
    assert!(d.bans.is_empty());
    let mut state = ast_persist(&state);
    append(&log, &asterisk_line(T0 + 401, ATTACKER));
    let d = asterisk::run(&s, &mut state, T0 + 402).unwrap();
    assert!(
        ast_banned(&d),
        "the attacker's count was evicted by the spray"
    );
}

#[test]
fn asterisk_the_attackers_last_failure_after_the_spray_in_one_run_bans() {
    let dir = tempfile::tempdir().unwrap();
    let s = ast_settings(dir.path());
    let log = dir.path().join("messages");
    let mut state = DetectorState::default();
    append(
        &log,
        &(ast_attacker_short_of_a_ban() + &ast_spray() + &asterisk_line(T0 + 401, ATTACKER)),
    );
    let d = asterisk::run(&s, &mut state, T0 + 402).unwrap();
    assert!(
        ast_banned(&d),
        "the attacker's count was evicted by the spray"
    );
    assert_eq!(d.bans.len(), 1);
}

// --- kernel log --------------------------------------------------------------------------------

fn kern_settings(dir: &Path) -> KernelLogSettings {
    KernelLogSettings {
        files: vec![dir.join("kern.log")],
        timezone: TimeZone::FixedOffset(0),
        ..KernelLogSettings::default() // threshold 10, distinct ports 8, window 10 min
    }
}

fn kern_persist(st: &KernelState) -> KernelState {
    KernelState::decode(&st.encode().unwrap()).unwrap()
}

/// One telnet probe (weight 4) from each spoofed source.
fn kern_spray() -> String {
    (0..SPRAY)
        .map(|i| kernel_line(spray_time(i), &spoofed(i), 23))
        .collect()
}

/// telnet (4) + sunrpc (4): 8, short of the threshold of 10.
fn kern_attacker_short_of_a_ban() -> String {
    kernel_line(T0, ATTACKER, 23) + &kernel_line(T0 + 1, ATTACKER, 111)
}

/// ingreslock (6): 14, over.
fn kern_attacker_last_probe() -> String {
    kernel_line(T0 + 401, ATTACKER, 1524)
}

fn kern_banned(d: &kernlog::Detections) -> bool {
    d.fired.iter().any(|f| f.ip.to_string() == ATTACKER)
}

#[test]
fn kernel_a_spray_in_the_same_run_does_not_reset_the_attackers_score() {
    let dir = tempfile::tempdir().unwrap();
    let s = kern_settings(dir.path());
    let log = dir.path().join("kern.log");
    let own = HashSet::new();
    let mut state = KernelState::default();
    append(&log, &(kern_attacker_short_of_a_ban() + &kern_spray()));
    let d = kernlog::run(&s, &mut state, &own, T0 + 400).unwrap();
    assert!(d.fired.is_empty());
    assert_eq!(d.counters.weighted, 2 + u64::from(SPRAY));
    let mut state = kern_persist(&state);
    append(&log, &kern_attacker_last_probe());
    let d = kernlog::run(&s, &mut state, &own, T0 + 402).unwrap();
    assert!(
        kern_banned(&d),
        "the attacker's score was evicted by the spray"
    );
}

#[test]
fn kernel_a_spray_in_a_run_of_its_own_does_not_reset_the_attackers_score() {
    let dir = tempfile::tempdir().unwrap();
    let s = kern_settings(dir.path());
    let log = dir.path().join("kern.log");
    let own = HashSet::new();
    let mut state = KernelState::default();
    append(&log, &kern_attacker_short_of_a_ban());
    kernlog::run(&s, &mut state, &own, T0 + 5).unwrap();
    let mut state = kern_persist(&state);
    append(&log, &kern_spray());
    let d = kernlog::run(&s, &mut state, &own, T0 + 400).unwrap();
    assert!(d.fired.is_empty());
    let mut state = kern_persist(&state);
    append(&log, &kern_attacker_last_probe());
    let d = kernlog::run(&s, &mut state, &own, T0 + 402).unwrap();
    assert!(
        kern_banned(&d),
        "the attacker's score was evicted by the spray"
    );
}

#[test]
fn kernel_the_attackers_last_probe_after_the_spray_in_one_run_bans() {
    let dir = tempfile::tempdir().unwrap();
    let s = kern_settings(dir.path());
    let log = dir.path().join("kern.log");
    let own = HashSet::new();
    let mut state = KernelState::default();
    append(
        &log,
        &(kern_attacker_short_of_a_ban() + &kern_spray() + &kern_attacker_last_probe()),
    );
    let d = kernlog::run(&s, &mut state, &own, T0 + 402).unwrap();
    assert!(
        kern_banned(&d),
        "the attacker's score was evicted by the spray"
    );
    assert_eq!(d.fired.len(), 1);
}
