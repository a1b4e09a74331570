//! Unit tests of the report module's selection, settings and evidence mapping.

use super::*;
use crate::config::report::resolve;
use crate::source::asterisk::{Ban, Detections, Evidence};
use std::path::PathBuf;

fn settings(yaml: &str) -> ReportSettings {
    let raw: RawReport = crate::config::parse_yaml(yaml, "test").unwrap();
    resolve(raw, Path::new("/etc/sipban")).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn defaults_and_validation() {
    let s = settings("abuseipdb: {}\n");
    let a = s.abuseipdb.unwrap();
    assert_eq!(a.base_url, "https://api.abuseipdb.com");
    assert_eq!(a.daily_limit, 1000);
    assert_eq!(a.min_interval_per_ip, 86_400);
    assert!(!a.include_udp);
    assert_eq!(a.key_file, PathBuf::from(DEFAULT_ABUSEIPDB_KEY_FILE));
    assert!(s.webhook.is_none());
    let bad = |y: &str| {
        let raw: RawReport = crate::config::parse_yaml(y, "t").unwrap();
        resolve(raw, Path::new("/")).unwrap_err()
    };
    assert!(bad("{}\n").contains("abuseipdb"));
    assert!(bad("abuseipdb: {base_url: 'http://x.org'}\n").contains("https"));
    assert!(bad("abuseipdb: {min_interval_per_ip: 10m}\n").contains("15m"));
    assert!(bad("abuseipdb: {daily_limit: 0}\n").contains("daily_limit"));
    assert!(bad("webhook: {}\n").contains("url"));
    assert!(
        bad("webhook: {url: 'https://h/x', headers: {'Bad Name': x}}\n").contains("header name")
    );
    assert!(bad("webhook: {url: 'https://h/x', headers: {Content-Type: x}}\n").contains("itself"));
    let e = bad("webhook: {url: 'https://h/x', headers: {X-A: \"s3cret\\nX\"}}\n");
    assert!(!e.contains("s3cret"), "{e}");
    assert!(crate::config::parse_yaml::<RawReport>("abuseipdb: {key: x}\n", "t").is_err());
}

#[test]
fn settings_never_serialise_header_values() {
    let s = settings(
        "webhook:\n  url: https://collector.example/hook\n  headers: { Authorization: \"Bearer s3cr3tT0ken\" }\n",
    );
    let json = serde_json::to_string(&s).unwrap();
    assert!(!json.contains("s3cr3tT0ken"), "{json}");
    assert!(
        json.contains("Authorization") && json.contains("[redacted]"),
        "{json}"
    );
    assert!(!format!("{s:?}").contains("s3cr3tT0ken"));
}

#[test]
fn keys_and_header_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut a = settings("abuseipdb: {}\n").abuseipdb.unwrap();
    a.key_file = dir.path().join("k");
    std::fs::write(&a.key_file, "f00dcafe\n").unwrap();
    std::fs::set_permissions(&a.key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = load_abuseipdb_key_with(&a, None).unwrap_err();
    assert!(e.contains("chmod 640") && !e.contains("f00dcafe"), "{e}");
    std::fs::set_permissions(&a.key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        load_abuseipdb_key_with(&a, None).unwrap().expose(),
        "f00dcafe"
    );
    assert_eq!(
        load_abuseipdb_key_with(&a, Some("fromenv".into()))
            .unwrap()
            .expose(),
        "fromenv"
    );
    assert!(load_abuseipdb_key_with(&a, Some("two words".into())).is_err());

    let mut w = settings("webhook: {url: 'https://h/x', headers: {X-A: one}}\n")
        .webhook
        .unwrap();
    let hf = dir.path().join("h");
    w.header_file = Some(hf.clone());
    std::fs::write(&hf, "# comment\nAuthorization: Bearer tok\n").unwrap();
    std::fs::set_permissions(&hf, std::fs::Permissions::from_mode(0o640)).unwrap();
    let h = load_webhook_headers(&w).unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[1].1.expose(), "Bearer tok");
    std::fs::write(&hf, "x-a: again\n").unwrap();
    assert!(load_webhook_headers(&w).unwrap_err().contains("also set"));
    std::fs::write(&hf, "garbage\n").unwrap();
    assert!(load_webhook_headers(&w).unwrap_err().contains("line 1"));
}

/// systemd credentials ($CREDENTIALS_DIRECTORY) win over the configured files; an empty one
/// (the units' `SetCredential=NAME:\\n` fallback) does not; the variables win over both.
#[test]
fn credentials_win_over_key_and_header_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    let c = Some(creds.as_os_str());
    let mut a = settings("abuseipdb: {}\n").abuseipdb.unwrap();
    a.key_file = dir.path().join("k");
    std::fs::write(&a.key_file, "fromfile\n").unwrap();
    std::fs::set_permissions(&a.key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cred = creds.join("abuseipdb.key");
    std::fs::write(&cred, "\n").unwrap();
    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o400)).unwrap();
    let k = load_abuseipdb_key_in(&a, None, c).unwrap();
    assert_eq!(k.expose(), "fromfile");
    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&cred, "fromcred\n").unwrap();
    let k = load_abuseipdb_key_in(&a, None, c).unwrap();
    assert_eq!(k.expose(), "fromcred");
    let k = load_abuseipdb_key_in(&a, Some("fromenv".into()), c).unwrap();
    assert_eq!(k.expose(), "fromenv");
    // A credential is checked like a key file.
    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = load_abuseipdb_key_in(&a, None, c).unwrap_err();
    assert!(
        e.contains("abuseipdb.key") && e.contains("chmod 640"),
        "{e}"
    );

    // The webhook's credential is read even when the config names no header_file.
    let w = settings("webhook: {url: 'https://h/x'}\n").webhook.unwrap();
    assert!(w.header_file.is_none());
    assert!(load_webhook_headers_in(&w, c).unwrap().is_empty());
    let hc = creds.join("webhook.headers");
    std::fs::write(&hc, "Authorization: Bearer cred\n").unwrap();
    std::fs::set_permissions(&hc, std::fs::Permissions::from_mode(0o400)).unwrap();
    let h = load_webhook_headers_in(&w, c).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].1.expose(), "Bearer cred");
}

fn offence(ipt: &str, transports: &[Transport]) -> Offence {
    let mut o = Offence::new(ip(ipt), 1000, 2000);
    o.add(OffenceKind::SipAuth, "sip_registration", 7);
    for t in transports {
        o.transport(*t);
    }
    o
}

#[test]
fn selection_applies_every_rule() {
    let s = settings("abuseipdb: {}\nwebhook: {url: 'https://h/x'}\n");
    let host = comment::HostIdentity::new(vec![ip("45.9.9.9")], &["pbx"]);
    let offences = vec![
        offence("45.0.0.1", &[Transport::Tcp]),
        offence("45.0.0.2", &[Transport::Udp]),
        offence("45.0.0.3", &[]),
        offence("45.0.0.4", &[Transport::Tls]),
        offence("192.168.1.50", &[Transport::Tcp]),
        offence("100.64.0.1", &[Transport::Tcp]),
        offence("127.0.0.1", &[Transport::Tcp]),
        offence("fe80::1", &[Transport::Tcp]),
        offence("45.9.9.9", &[Transport::Tcp]),
        // Merged with the first by address.
        offence("45.0.0.1", &[Transport::Udp]),
    ];
    let in_sets = |a: IpAddr| a != ip("45.0.0.4");
    let c = select_with(&s, &offences, &in_sets, &host);
    let v: BTreeMap<String, (Option<Verdict>, Option<Verdict>)> = c
        .iter()
        .map(|c| (c.ip.to_string(), (c.abuseipdb.clone(), c.webhook.clone())))
        .collect();
    let q = Some(Verdict::Queue);
    let skip = |s| Some(Verdict::Skip(s));
    assert_eq!(v["45.0.0.1"], (q.clone(), q.clone()));
    assert_eq!(v["45.0.0.2"], (skip(Skip::Spoofable), q.clone()));
    assert_eq!(v["45.0.0.3"], (skip(Skip::Spoofable), q.clone()));
    assert_eq!(v["45.0.0.4"], (skip(Skip::NotInSet), skip(Skip::NotInSet)));
    assert_eq!(v["192.168.1.50"].0, skip(Skip::Private));
    assert_eq!(v["100.64.0.1"].0, skip(Skip::Private));
    assert_eq!(v["127.0.0.1"].1, skip(Skip::Special));
    assert_eq!(v["fe80::1"].0, skip(Skip::Special));
    assert_eq!(v["45.9.9.9"].0, skip(Skip::Own));
    let first = c.iter().find(|c| c.ip == ip("45.0.0.1")).unwrap();
    assert_eq!(first.detail.events, 14);
    assert_eq!(first.categories, vec![8, 18]);
    // With include_udp, UDP and unknown transports go to AbuseIPDB too.
    let s = settings("abuseipdb: {include_udp: true}\n");
    let c = select_with(&s, &offences, &in_sets, &host);
    assert_eq!(
        c.iter().find(|c| c.ip == ip("45.0.0.2")).unwrap().abuseipdb,
        q
    );
    assert!(c.iter().all(|c| c.webhook.is_none()));
}

#[test]
fn asterisk_bans_become_offences() {
    let mut det = Detections::default();
    det.bans.push(Ban {
        ip: ip("45.0.0.1"),
        seen: 1500,
        ttl: 7200,
        nth: 1,
    });
    det.evidence.insert(
        ip("45.0.0.1"),
        Evidence {
            count: 9,
            failures: 7,
            timeouts: 2,
            first: 1000,
            last: 1500,
            rules: vec![
                "sip_registration",
                "sip_call_rejected",
                "sip_invite_timeout",
            ],
            transports: vec![asterisk::rules::Transport::Tls],
            example: Some("Registration from '\"100\" <sip:100@pbx>' ...".into()),
        },
    );
    // Evidence of an address that was not banned is not an offence.
    det.evidence.insert(ip("45.0.0.2"), Evidence::default());
    let o = from_asterisk(&det);
    assert_eq!(o.len(), 1);
    let d = &o[0].detail;
    assert_eq!(d.events, 9, "the detector's exact count");
    assert_eq!(
        d.kinds.iter().copied().collect::<Vec<_>>(),
        [
            OffenceKind::SipAuth,
            OffenceKind::SipCall,
            OffenceKind::SipScan
        ]
    );
    assert_eq!(d.rules.len(), 3);
    assert_eq!(d.categories(), vec![8, 14, 18]);
    assert!(d.connection_proven());
    assert_eq!((o[0].first, o[0].last), (1000, 1500));
}

#[test]
fn detail_round_trips_through_json() {
    let mut o = offence("45.0.0.1", &[Transport::Syn, Transport::Wss]);
    o.port(5060).add(OffenceKind::PortScan, "Port-Probe!", 3);
    let j = serde_json::to_string(&o.detail).unwrap();
    let back: Detail = serde_json::from_str(&j).unwrap();
    assert_eq!(back, o.detail);
    assert!(back.rules.contains("portprobe"), "{j}");
}

#[test]
fn config_section_errors_are_located() {
    let load = |t: &str| crate::config::load_str(t, Path::new("/etc/sipban/config.yaml"));
    assert!(load("state_dir: /x\n").unwrap().report.is_none());
    let s = load("report:\n  abuseipdb:\n    key_file: keys/a.key\n    daily_limit: 900\n")
        .unwrap()
        .report
        .unwrap();
    let a = s.abuseipdb.unwrap();
    assert_eq!(a.key_file, PathBuf::from("/etc/sipban/keys/a.key"));
    assert_eq!(a.daily_limit, 900);
    let e =
        load("state_dir: /x\nreport:\n  abuseipdb:\n    min_interval_per_ip: 5m\n").unwrap_err();
    assert!(e.0.contains("line 3") && e.0.contains("15m"), "{e}");
    let e = load("report:\n  abuseipdb:\n    colour: red\n").unwrap_err();
    assert!(e.0.contains("line 3") && e.0.contains("colour"), "{e}");
    let e = load("report:\n  webhook:\n    url: http://h/x\n").unwrap_err();
    assert!(e.0.contains("https"), "{e}");
}

/// Port probes from the kernel-log detector become PortScan offences marked spoofable (the LOG
/// rule logs TCP SYNs and new UDP flows), one per address, spanning its crossings.
#[test]
fn kernel_crossings_become_spoofable_port_scans() {
    use crate::source::kernlog::{Crossed, Detections, Fired};
    let ip: IpAddr = "45.9.0.1".parse().unwrap();
    let fired = |at, ports| Fired {
        ip,
        at,
        weight: 12,
        ports,
        crossed: Crossed {
            weight: true,
            distinct_ports: false,
        },
    };
    let det = Detections {
        fired: vec![fired(100, 3), fired(250, 9)],
        ..Detections::default()
    };
    let out = from_kernel(&det);
    assert_eq!(out.len(), 1);
    let o = &out[0];
    assert_eq!((o.ip, o.first, o.last), (ip, 100, 250));
    assert!(o.detail.kinds.contains(&OffenceKind::PortScan));
    assert_eq!(
        o.detail.transports.iter().copied().collect::<Vec<_>>(),
        vec![Transport::Syn]
    );
    assert!(Transport::Syn.spoofable());
}
