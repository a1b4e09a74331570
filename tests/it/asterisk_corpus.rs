//! Data-driven tests of the Asterisk detector's rules.
//!
//! * fail2ban's own test log (`shared/corpus/fail2ban-asterisk.log`): every enabled `failJSON`
//!   case must give fail2ban's expected address (also behind the journal test prefix);
//! * the CrowdSec hub samples: every line gives its `RemoteAddress`, the `ChallengeSent` line
//!   gives none; the almon samples give the offenders of their Registration lines;
//! * our own cases in `tests/data/asterisk/{attacks,not_attacks}.txt` (add a case = add a line).
//!
//! The third-party corpus is read from `../shared/corpus` next to the repository (it is not
//! copied into the repository: it is GPL/MIT test data kept there with its licence notes), or
//! from `$SIPBAN_SHARED_DIR/corpus` (see `common::corpus`). When that folder is missing the corpus tests print a skip notice, except under `CI=true`, where
//! they fail.

use sipban::source::asterisk::{scan_bytes, ScanOptions, ScanReport, SecurityServices};
use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::common::corpus::dir as corpus_dir;

fn addresses(r: &ScanReport) -> BTreeSet<String> {
    r.addresses.keys().map(|ip| ip.to_string()).collect()
}

/// The addresses counted in `text`. chan_sip's and the manager's security events
/// (`Service="SIP"`, `"AMI"`) count only with their opt-ins (`security_event_services`: the
/// chan_sip address is the Via `maddr`, the sender's choice; the manager's account can fill the
/// logger's message over HTTP): the third-party corpora expect them, so they are read with
/// them, and [`sip_events_default_off`] checks the default.
fn detect_with(text: &str, aggressive: bool, chan_sip: bool) -> BTreeSet<String> {
    let opts = ScanOptions {
        aggressive,
        security_services: SecurityServices {
            sip: chan_sip,
            pjsip: true,
            ami: chan_sip,
        },
        ..ScanOptions::default()
    };
    addresses(&scan_bytes(&[text.as_bytes()], None, opts))
}

fn detect(text: &str, aggressive: bool) -> BTreeSet<String> {
    detect_with(text, aggressive, true)
}

/// With the defaults, a chan_sip security event names nobody, and every other line of the
/// corpora counts as before.
#[test]
fn sip_events_default_off() {
    let Some(dir) = corpus_dir() else { return };
    let mut sip = 0;
    for f in ["fail2ban-asterisk.log", "crowdsec-asterisk-logs.log"] {
        let text = std::fs::read_to_string(dir.join(f)).expect("read corpus");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let default = detect_with(line, false, false);
            if line.contains("Service=\"SIP\"") || line.contains("Service=\"AMI\"") {
                sip += 1;
                assert!(default.is_empty(), "{f}: {line}");
            } else {
                assert_eq!(default, detect(line, false), "{f}: {line}");
            }
        }
    }
    assert!(
        sip >= 5,
        "the corpora hold chan_sip and manager security events"
    );
}

fn one(ip: &str) -> BTreeSet<String> {
    BTreeSet::from([ip.to_string()])
}

#[test]
fn fail2ban_failjson_cases() {
    let Some(dir) = corpus_dir() else { return };
    let text = std::fs::read_to_string(dir.join("fail2ban-asterisk.log")).expect("read corpus");
    let mut prefix: Option<String> = None;
    let mut pending: Option<serde_json::Value> = None;
    let mut cases = 0;
    let mut failures = Vec::new();
    for (no, line) in text.lines().enumerate() {
        if let Some(j) = line.strip_prefix("# filterOptions:") {
            let v: serde_json::Value = serde_json::from_str(j.trim()).expect("filterOptions JSON");
            prefix = v[0]["test.prefix-line"].as_str().map(str::to_owned);
            continue;
        }
        if let Some(j) = line.strip_prefix("# failJSON:") {
            pending = Some(serde_json::from_str(j.trim()).expect("failJSON"));
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some(case) = pending.take() else { continue };
        cases += 1;
        let expected = match case["match"].as_bool() {
            Some(true) => one(case["host"].as_str().expect("host")),
            _ => BTreeSet::new(),
        };
        let got = detect(line, false);
        if got != expected {
            failures.push(format!(
                "line {}: expected {expected:?}, got {got:?}: {line}",
                no + 1
            ));
        }
        if let Some(p) = &prefix {
            let prefixed = format!("{p}{line}");
            let got = detect(&prefixed, false);
            if got != expected {
                failures.push(format!(
                    "line {} (prefixed): expected {expected:?}, got {got:?}",
                    no + 1
                ));
            }
        }
    }
    assert_eq!(cases, 48, "the corpus has 48 enabled failJSON cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `RemoteAddress="IPV4/UDP/172.17.0.1/54784"` → `172.17.0.1`, written independently of the
/// detector's parser.
fn remote_address(line: &str) -> String {
    let v = line
        .rsplit("RemoteAddress=\"")
        .next()
        .expect("RemoteAddress");
    let v = &v[..v.find('"').expect("closing quote")];
    let parts: Vec<&str> = v.split('/').collect();
    parts[parts.len() - 2].to_string()
}

#[test]
fn crowdsec_samples() {
    let Some(dir) = corpus_dir() else { return };
    let mut n = 0;
    for f in [
        "crowdsec-asterisk-bf.log",
        "crowdsec-asterisk-logs.log",
        "crowdsec-asterisk-syslogs.log",
        "crowdsec-asterisk-user-enum.log",
    ] {
        let text = std::fs::read_to_string(dir.join(f)).expect("read corpus");
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            n += 1;
            let expected = if line.contains("SecurityEvent=\"ChallengeSent\"") {
                BTreeSet::new()
            } else {
                one(&remote_address(line))
            };
            assert_eq!(detect(line, false), expected, "{f}: {line}");
        }
        // The whole file at once gives the same set.
        let all: BTreeSet<String> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.contains("ChallengeSent"))
            .map(remote_address)
            .collect();
        assert_eq!(detect(&text, false), all, "{f}");
    }
    assert_eq!(n, 22);
}

#[test]
fn almon_samples() {
    let Some(dir) = corpus_dir() else { return };
    let text =
        std::fs::read_to_string(dir.join("almon-asterisk-samples.log")).expect("read corpus");
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let expected = if line.contains("Registration from") {
            let a = line.split("failed for '").nth(1).expect("failed for");
            one(&a[..a.find('\'').expect("quote")])
        } else {
            BTreeSet::new()
        };
        assert_eq!(detect(line, false), expected, "{line}");
    }
}

/// `(expected, opt_in_only, text)` cases of one of our data files (`aggr:` and `sip:` mark the
/// cases counted only with `aggressive` or `chan_sip_security_events`).
fn cases(name: &str) -> Vec<(usize, Option<String>, bool, String)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/asterisk")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("read case file");
    let mut out = Vec::new();
    for (no, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (exp, log) = line
            .split_once('\t')
            .unwrap_or_else(|| panic!("{name}:{}: no TAB", no + 1));
        let log = log
            .replace("\\n", "\n")
            .replace("\\r", "\r")
            .replace("\\e", "\x1b");
        let (exp, aggr) = match exp.strip_prefix("aggr:") {
            Some(e) => (e, true),
            None => (exp, false),
        };
        // `sip:`: a chan_sip or manager security event, counted only with its opt-in.
        let (exp, aggr) = match exp.strip_prefix("sip:") {
            Some(e) => (e, true),
            None => (exp, aggr),
        };
        let exp = (exp != "-").then(|| exp.to_string());
        out.push((no + 1, exp, aggr, log));
    }
    out
}

fn check_file(name: &str, want_attacks: bool) -> usize {
    let mut failures = Vec::new();
    let all = cases(name);
    for (no, exp, aggr, log) in &all {
        assert_eq!(
            exp.is_some(),
            want_attacks,
            "{name}:{no}: wrong file for this case"
        );
        let expected: BTreeSet<String> = exp.iter().cloned().collect();
        let got = detect(log, true);
        if got != expected {
            failures.push(format!(
                "{name}:{no} (aggressive): expected {expected:?}, got {got:?}"
            ));
        }
        let expected_default = if *aggr { BTreeSet::new() } else { expected };
        let got = detect_with(log, false, false);
        if got != expected_default {
            failures.push(format!(
                "{name}:{no}: expected {expected_default:?}, got {got:?}"
            ));
        }
        // The same case inside the other file of a messages+full pair is not counted twice.
        let r = scan_bytes(
            &[log.as_bytes(), log.as_bytes()],
            None,
            ScanOptions::default(),
        );
        let single = scan_bytes(&[log.as_bytes()], None, ScanOptions::default());
        if r.counters.matched != single.counters.matched {
            failures.push(format!("{name}:{no}: duplicate file counted twice"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    all.len()
}

#[test]
fn our_attack_cases() {
    let n = check_file("attacks.txt", true);
    assert!(n >= 48, "{n} cases");
}

#[test]
fn our_not_attack_cases() {
    let n = check_file("not_attacks.txt", false);
    assert!(n >= 37, "{n} cases");
}

#[test]
fn repeated_lines_in_one_file_all_count() {
    let line = "[2024-05-02 10:11:12] NOTICE[4102] chan_sip.c: Registration from '<sip:1@x>' failed for '192.0.2.10:5070' - Wrong password\n";
    let text = line.repeat(3);
    let r = scan_bytes(&[text.as_bytes()], None, ScanOptions::default());
    assert_eq!(r.counters.matched, 3);
    // messages and full carry the same lines: still 3.
    let r = scan_bytes(
        &[text.as_bytes()],
        Some(text.as_bytes()),
        ScanOptions::default(),
    );
    assert_eq!(r.counters.matched, 3);
    assert_eq!(r.counters.duplicates, 3);
}
