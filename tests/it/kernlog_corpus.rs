//! Data-driven tests of the kernel-log detector's parser, filters and port catalogue.
//!
//! * our own cases in `tests/data/kernlog/cases.txt` (add a case = add a line; format in the
//!   README next to it): wrappers, prefixes, IPv4 and IPv6, ICMP errors with embedded
//!   addresses, outbound lines, harmless ports, replies, broadcasts, forged tags;
//! * the CrowdSec hub samples (`shared/corpus/crowdsec-iptables-*.log`): every line is checked
//!   against an oracle written independently of the parser (whitespace tokens), and the
//!   multi-port scan is the one address that crosses a threshold.
//!
//! The third-party corpus is read from `../shared/corpus` next to the repository (or from
//! `$SIPBAN_SHARED_DIR/corpus`: see `common::corpus`). When that
//! folder is missing the corpus tests print a skip notice, except under `CI=true`, where they
//! fail.

use sipban::source::asterisk::TimeZone;
use sipban::source::kernlog::{scan_bytes, Class, KernelLogSettings, ScanReport};
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::common::corpus::dir as corpus_dir;

fn settings() -> KernelLogSettings {
    KernelLogSettings {
        timezone: TimeZone::FixedOffset(0),
        service_hosts: Some(vec!["198.51.100.53".parse().unwrap()]),
        ..KernelLogSettings::default()
    }
}

fn own() -> HashSet<IpAddr> {
    HashSet::from([
        "203.0.113.10".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
    ])
}

fn scan(text: &str) -> ScanReport {
    scan_bytes(&[text.as_bytes()], &settings(), &own()).expect("scan")
}

fn class_name(c: Class) -> &'static str {
    match c {
        Class::Weighted => "weighted",
        Class::Unlisted => "unlisted",
        Class::Harmless => "harmless",
        Class::Reply => "reply",
        Class::Broadcast => "broadcast",
        Class::Accepted => "accepted",
        Class::UnknownRule => "unknown_rule",
    }
}

/// What one line gave, in the notation of `cases.txt`.
fn outcome(r: &ScanReport) -> String {
    let c = &r.counters;
    match r.addresses.as_slice() {
        [] if c.not_inbound > 0 => "not_inbound".into(),
        [] if c.other_protocol > 0 => "other_protocol".into(),
        [] if c.malformed > 0 => "malformed".into(),
        [] if c.refused > 0 => "refused".into(),
        [] if c.unparsed > 0 => "unparsed".into(),
        [] => "-".into(),
        [a] => {
            assert_eq!(a.ports.len(), 1, "one packet, one port: {a:?}");
            let p = &a.ports[0];
            match a.ignored {
                Some(_) => format!("ignored {} {}/{}", a.ip, p.proto, p.port),
                None => format!("{} {}/{} {}", a.ip, p.proto, p.port, class_name(p.class)),
            }
        }
        more => format!("{} addresses", more.len()),
    }
}

#[test]
fn our_cases() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/kernlog/cases.txt");
    let text = std::fs::read_to_string(&path).expect("read cases.txt");
    let mut failures = Vec::new();
    let mut n = 0;
    let mut kinds = HashSet::new();
    for (no, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (exp, log) = line
            .split_once('\t')
            .unwrap_or_else(|| panic!("cases.txt:{}: no TAB", no + 1));
        let log = log.replace("\\r", "\r");
        n += 1;
        let r = scan(&log);
        let got = outcome(&r);
        if got != exp {
            failures.push(format!(
                "cases.txt:{}: expected `{exp}`, got `{got}`",
                no + 1
            ));
        }
        // The counters agree with the listing: a counted packet is counted once.
        let c = &r.counters;
        let counted = c.weighted + c.unlisted;
        let want = u64::from(exp.ends_with(" weighted") || exp.ends_with(" unlisted"));
        if counted != want {
            failures.push(format!(
                "cases.txt:{}: {counted} counted packets, expected {want}",
                no + 1
            ));
        }
        kinds.insert(exp.rsplit(' ').next().unwrap_or(exp).to_string());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(n >= 80, "{n} cases");
    // Every kind of outcome is exercised.
    for k in [
        "weighted",
        "unlisted",
        "harmless",
        "reply",
        "broadcast",
        "accepted",
        "not_inbound",
        "other_protocol",
        "malformed",
        "-",
    ] {
        assert!(kinds.contains(k), "no case for `{k}`");
    }
}

/// The oracle: whitespace tokens of a LOG line (no shared code with the parser).
fn oracle(line: &str) -> Option<(String, String, u16, bool)> {
    let toks: Vec<&str> = line.split_whitespace().collect();
    let tag = toks.iter().position(|t| *t == "kernel:")?;
    let field = |name: &str| {
        toks.iter()
            .find_map(|t| t.strip_prefix(name))
            .map(str::to_string)
    };
    // The interface field may carry a glued prefix; the corpus has none.
    let iface = toks[tag..].iter().find_map(|t| t.strip_prefix("IN="))?;
    let src = field("SRC=")?;
    let proto = field("PROTO=")?.to_lowercase();
    let dpt: u16 = field("DPT=")?.parse().ok()?;
    let accepted = line.contains("[UFW AUDIT]") || line.contains("[UFW ALLOW]");
    let ignored = iface == "lo" || src.starts_with("127.");
    Some((src, proto, dpt, ignored || accepted))
}

#[test]
fn crowdsec_iptables_lines_one_by_one() {
    let Some(dir) = corpus_dir() else { return };
    let mut n = 0;
    for f in [
        "crowdsec-iptables-logs.log",
        "crowdsec-iptables-scan-multi-port.log",
    ] {
        let text = std::fs::read_to_string(dir.join(f)).expect("read corpus");
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            n += 1;
            let r = scan(line);
            let broken = line.contains("XX=");
            match oracle(line) {
                Some((src, proto, dpt, not_scored)) if !broken => {
                    assert_eq!(r.addresses.len(), 1, "{f}: {line}");
                    let a = &r.addresses[0];
                    assert_eq!(a.ip.to_string(), src, "{f}: {line}");
                    assert_eq!(a.ports[0].proto.to_string(), proto, "{f}: {line}");
                    assert_eq!(a.ports[0].port, dpt, "{f}: {line}");
                    let refused = a.ignored.is_some() || a.ports[0].class == Class::Accepted;
                    assert_eq!(refused, not_scored, "{f}: {line}");
                }
                _ => {
                    assert!(r.addresses.is_empty(), "{f}: {line}");
                    assert_eq!(r.counters.packets, 0, "{f}: {line}");
                }
            }
        }
    }
    assert_eq!(n, 53);
}

#[test]
fn crowdsec_multi_port_scan_crosses_the_distinct_port_threshold() {
    let Some(dir) = corpus_dir() else { return };
    let text = std::fs::read_to_string(dir.join("crowdsec-iptables-scan-multi-port.log"))
        .expect("read corpus");
    let r = scan(&text);
    let fired: Vec<String> = r
        .addresses
        .iter()
        .filter(|a| a.fired.is_some())
        .map(|a| a.ip.to_string())
        .collect();
    assert_eq!(fired, vec!["62.34.17.168".to_string()]);
    let a = &r.addresses[0];
    let f = &a.fired.as_ref().unwrap().first;
    assert!(f.crossed.distinct_ports, "{f:?}");
    assert_eq!(f.ports, 8, "fires at the 8th distinct port");
    // 17 distinct ports, of which 80 and 443 are harmless.
    assert_eq!(a.ports.len(), 17);
    assert_eq!(a.distinct_ports, 15);
    // The same log read twice (kern.log and syslog both carry kernel lines) weighs the same.
    let twice = scan_bytes(&[text.as_bytes(), text.as_bytes()], &settings(), &own()).unwrap();
    let b = &twice.addresses[0];
    assert_eq!((b.weight, b.distinct_ports), (a.weight, a.distinct_ports));
    assert_eq!(b.packets, 2 * a.packets);
    assert_eq!(b.fired.as_ref().unwrap().times, 1, "no second crossing");
    // Everything else in the file is loopback audit traffic.
    assert!(r.addresses[1..].iter().all(|a| a.ignored.is_some()));
}

#[test]
fn a_scan_under_the_thresholds_fires_nothing_and_a_config_override_changes_the_weight() {
    let line = |dpt: u16| {
        format!("2024-05-02T10:00:00+00:00 pbx kernel: IN=eth0 OUT= SRC=198.51.100.50 DST=203.0.113.10 LEN=44 PROTO=TCP SPT=40000 DPT={dpt} WINDOW=1024 RES=0x00 SYN URGP=0\n")
    };
    let text = line(23) + &line(111); // 4 + 4
    let r = scan(&text);
    assert!(r.addresses[0].fired.is_none());
    assert_eq!(r.addresses[0].weight, 8);
    // kernel_log.ports: telnet matters more on this box.
    let cfg =
        "kernel_log:\n  ports:\n    - { port: 23, proto: tcp, weight: 6, means: no telnet here }\n";
    let s = sipban::config::load_str(cfg, std::path::Path::new("/etc/sipban/config.yaml"))
        .unwrap()
        .kernel_log
        .unwrap();
    let s = KernelLogSettings {
        timezone: TimeZone::FixedOffset(0),
        ..s
    };
    let r = scan_bytes(&[text.as_bytes()], &s, &own()).unwrap();
    let a = &r.addresses[0];
    assert_eq!(a.weight, 10);
    assert!(a.fired.as_ref().unwrap().first.crossed.weight);
    assert_eq!(a.ports[0].name.as_deref(), Some("configured"));
}

#[test]
fn config_section_errors_are_located() {
    let load =
        |t: &str| sipban::config::load_str(t, std::path::Path::new("/etc/sipban/config.yaml"));
    let e = load("kernel_log:\n  files: [/var/log/kern.log]\n  windw: 10m\n").unwrap_err();
    assert!(e.0.contains("windw") && e.0.contains("line 3"), "{e}");
    let e =
        load("kernel_log:\n  ports:\n    - { port: 70000, proto: tcp, weight: 1 }\n").unwrap_err();
    assert!(e.0.contains("65535") && e.0.contains("line 3"), "{e}");
    let e =
        load("kernel_log:\n  ports:\n    - { port: 23, proto: sctp, weight: 1 }\n").unwrap_err();
    assert!(e.0.contains("line 3"), "{e}");
    let e =
        load("kernel_log:\n  ports:\n    - { port: 23, proto: tcp, weight: 101 }\n").unwrap_err();
    assert!(e.0.contains("weight"), "{e}");
    let e = load("kernel_log:\n  threshold: 0\n  distinct_ports: 0\n").unwrap_err();
    assert!(e.0.contains("kernel_log") && e.0.contains("line 2"), "{e}");
    let s = load("kernel_log:\n  files: [/var/log/kern.log]\n  window: 10m\n  threshold: 10\n  distinct_ports: 8\n  ttl: 1d\n  priority: 90\n")
        .unwrap();
    let k = s.kernel_log.unwrap();
    assert_eq!(
        (k.window, k.threshold, k.distinct_ports, k.ttl, k.priority),
        (600, 10, 8, 86_400, 90)
    );
    assert!(load("kernel_log:\n  priority: 1001\n").is_err());
}
