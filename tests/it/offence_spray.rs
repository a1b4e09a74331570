//! Spray-proof offence counting (issue 13, item 5), for both log detectors: an attacker one
//! failure short of a ban sprays one-shot failures from 70,000 spoofed sources (more than the
//! detectors remember) to push its own count out of the bounded state. Its next failure must
//! still ban it, whether the spray comes in the same run or in a run of its own; the state
//! stays within its cap, and what had to be dropped is counted.

use crate::common::lines::{append, asterisk_line, kernel_line};
use crate::common::netns::run_in;
use crate::common::run::{json, sipban, text};
use sipban::source::asterisk::{self, AsteriskSettings, DetectorState, TimeZone};
use sipban::source::kernlog::{self, KernelLogSettings, KernelState};
use sipban::source::offences::CAP;
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
    // Bounded, and every address that had to go is counted (none expired: all are recent).
    assert!(
        state.recent.len() <= CAP,
        "{} addresses",
        state.recent.len()
    );
    assert_eq!(d.evicted, u64::from(SPRAY) + 1 - state.recent.len() as u64);
    assert_eq!((d.evicted_total, state.evictions), (d.evicted, d.evicted));
    let mut state = ast_persist(&state);
    assert_eq!(
        state.evictions, d.evicted,
        "the total is saved with the state"
    );
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
    assert!(state.recent.len() <= CAP && d.evicted > 0);
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
    assert!(state.recent.len() <= CAP);
}

#[test]
fn asterisk_a_state_saved_before_evictions_were_counted_still_loads() {
    let old = br#"{"files":{},"recent":{"45.66.0.1":[1714644000,1714644001]},"bans":{}}"#;
    let st: DetectorState = serde_json::from_slice(old).unwrap();
    assert_eq!(st.evictions, 0);
    assert_eq!(st.recent[&ATTACKER.parse().unwrap()], [T0, T0 + 1]);
    assert_eq!(DetectorState::saved_evictions(old), Some(0));
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
    assert!(
        state.recent.len() <= CAP,
        "{} addresses",
        state.recent.len()
    );
    assert_eq!(d.evicted, u64::from(SPRAY) + 1 - state.recent.len() as u64);
    assert_eq!((d.evicted_total, state.evictions), (d.evicted, d.evicted));
    assert!(d.summary().contains("evicted"), "{}", d.summary());
    let mut state = kern_persist(&state);
    assert_eq!(
        state.evictions, d.evicted,
        "the total is saved with the state"
    );
    assert_eq!(
        KernelState::saved_evictions(&state.encode().unwrap()),
        Some(d.evicted)
    );
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
    assert!(state.recent.len() <= CAP && d.evicted > 0);
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
    assert!(state.recent.len() <= CAP);
}

// --- visible: sync, status, metrics ---------------------------------------------------------------

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A real sync over both sprays: the evictions are in the run report, `sipban status` (text
/// and JSON) and the metrics textfile, per detector.
#[test]
fn evictions_show_in_the_sync_report_status_and_metrics() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (msgs, kern) = (d.join("messages"), d.join("kern.log"));
        let now = unix_now();
        let t = |i: u32| now - 300 + i64::from(i / 400);
        let ast: String = (0..SPRAY)
            .map(|i| asterisk_line(t(i), &spoofed(i)))
            .collect();
        let probes: String = (0..SPRAY)
            .map(|i| kernel_line(t(i), &spoofed(i), 23))
            .collect();
        append(&msgs, &ast);
        append(&kern, &probes);
        let prom = d.join("sipban.prom");
        std::fs::write(
            d.join("config.yaml"),
            format!(
                "state_dir: {}\nsets:\n  v4: {{ name: os4, cap: 100 }}\n  v6: {{ name: os6, cap: 100 }}\nasterisk:\n  logs: [{}]\nkernel_log:\n  files: [{}]\nmetrics:\n  textfile: {}\n",
                d.join("state").display(),
                msgs.display(),
                kern.display(),
                prom.display()
            ),
        )
        .unwrap();
        let o = sipban(d, &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains("addresses evicted from the bounded failure counter"),
            "{out}"
        );
        assert!(
            out.contains("addresses evicted from the bounded state"),
            "{out}"
        );

        let evicted = u64::from(SPRAY) - CAP as u64;
        let st = json(&sipban(d, &["status", "--json"]));
        let det = |name: &str| -> u64 {
            st["detectors"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["name"] == name))
                .and_then(|x| x["evictions"].as_u64())
                .unwrap_or_else(|| panic!("no {name} in {st}"))
        };
        // At least the spray over the cap; a compaction frees an eighth of it at a time.
        assert!(det("asterisk") >= evicted, "{st}");
        assert!(det("kernel_log") >= evicted, "{st}");
        let o = sipban(d, &["status"]);
        let status = String::from_utf8_lossy(&o.stdout);
        assert!(
            status.contains(&format!("{} addresses evicted", det("asterisk"))),
            "{status}"
        );
        let metrics = std::fs::read_to_string(&prom).unwrap();
        for (name, n) in [
            ("asterisk", det("asterisk")),
            ("kernel_log", det("kernel_log")),
        ] {
            let want = format!("sipban_detector_evictions_total{{detector=\"{name}\"}} {n}\n");
            assert!(metrics.contains(&want), "missing `{want}` in:\n{metrics}");
        }
    });
}
