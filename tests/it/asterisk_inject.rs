//! Forged log lines (issue: "Trust under hostile input"). Asterisk writes some remote fields
//! after URI-decoding them, or raw, so `%0A` in a SIP request (a raw newline in an IAX2 user
//! name) lets the attacker write whole log lines. Each test builds one attack from the exact
//! shape of the record that carries the field, as Asterisk 13, 18 and 20 write it, with the
//! field no longer than Asterisk lets it be, and asserts both that the forged line's victim is
//! never counted and that the real sender is.

use sipban::source::asterisk::{scan_bytes, ScanOptions, ScanReport, SecurityServices, TimeZone};
use std::net::IpAddr;

/// Whom the forged lines name (think: the PBX's own SIP trunk).
const VICTIM: &str = "91.121.1.1";
const VICTIM6: &str = "2a01:4f8:1::1";
/// Who really sent the requests.
const SENDER: &str = "198.51.100.7";

/// The Asterisk versions whose file-log prefixes the attacks are built from.
const VERSIONS: [u8; 3] = [13, 18, 20];

/// The default file logger's prefix: `[date] LEVEL[lwp][C-callid] file: `. Every version's
/// default date format is `%b %e %T`; FreePBX sets `%F %T` (used here for 18).
fn prefix(version: u8, level: &str, file: &str) -> String {
    match version {
        18 => format!("[2026-12-03 08:49:54] {level}[23456][C-0000002a] {file}: "),
        _ => format!("[Dec  3 08:49:54] {level}[23456][C-0000002a] {file}: "),
    }
}

/// Complete forged lines naming `victim`, the shapes that count on their own.
fn forged(version: u8, victim: &str) -> Vec<String> {
    let fam = if victim.contains(':') { "IPV6" } else { "IPV4" };
    let hp = if victim.contains(':') {
        format!("[{victim}]:5060")
    } else {
        format!("{victim}:5060")
    };
    vec![
        prefix(version, "SECURITY", "res_security_log.c")
            + &format!("SecurityEvent=\"InvalidPassword\",EventTV=\"2026-12-03T08:49:54.000+0000\",Severity=\"Error\",Service=\"SIP\",EventVersion=\"2\",AccountID=\"100\",SessionID=\"0x7f0c1c001234\",LocalAddress=\"IPV4/UDP/192.0.2.10/5060\",RemoteAddress=\"{fam}/UDP/{victim}/5060\",Challenge=\"4f3a2b1c\",ReceivedChallenge=\"4f3a2b1c\",ReceivedHash=\"0123456789abcdef0123456789abcdef\""),
        prefix(version, "NOTICE", "chan_sip.c")
            + &format!("Registration from '<sip:100@192.0.2.10>' failed for '{hp}' - Wrong password"),
        // Short enough for an 80-byte extension: no date, no call id.
        format!("NOTICE[1] chan_iax2.c: Host {victim} failed to authenticate as x"),
    ]
}

fn addresses(r: &ScanReport) -> Vec<IpAddr> {
    r.addresses.keys().copied().collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// Scan with every service's security events counted (the opt-ins): the injection guard must
/// hold with every rule on.
const ALL: SecurityServices = SecurityServices {
    sip: true,
    pjsip: true,
    ami: true,
};

fn scan(log: &str) -> ScanReport {
    scan_bytes(
        &[log.as_bytes()],
        None,
        ScanOptions {
            aggressive: true,
            verbose: true,
            security_services: ALL,
            timezone: TimeZone::FixedOffset(0),
        },
    )
}

/// `victim` never counted, `sender` counted (when `Some`).
fn check(what: &str, log: &str, victim: &str, sender: Option<&str>) {
    let r = scan(log);
    assert!(
        !r.addresses.contains_key(&ip(victim)),
        "{what}: the forged victim {victim} was counted: {:?}\n--- log ---\n{log}",
        addresses(&r)
    );
    if let Some(s) = sender {
        assert!(
            r.addresses.contains_key(&ip(s)),
            "{what}: the real sender {s} was not counted: {:?} {:?}\n--- log ---\n{log}",
            addresses(&r),
            r.counters
        );
    }
}

/// Field text: `before` filler lines, the forged line, `after` filler lines; no longer than
/// `cap` bytes (`None` when the attack does not fit the field).
fn field(forged: &str, before: usize, after: usize, cap: usize) -> Option<String> {
    let f = format!(
        "x\n{}{forged}\n{}y",
        "a\n".repeat(before),
        "b\n".repeat(after)
    );
    (f.len() <= cap).then_some(f)
}

/// Filler shapes: none, a little, the most the field holds on one side, then the other.
fn fillers(forged: &str, cap: usize) -> Vec<String> {
    let mut out = Vec::new();
    let room = cap.saturating_sub(forged.len() + 4) / 2;
    for (b, a) in [
        (0, 0),
        (1, 1),
        (room, 0),
        (0, room),
        (room / 2, room / 2),
        (257, 257),
    ] {
        if let Some(f) = field(forged, b, a, cap) {
            out.push(f);
        }
    }
    out
}

fn security_record(version: u8, service: &str, account: &str, sender: &str) -> String {
    prefix(version, "SECURITY", "res_security_log.c")
        + &format!("SecurityEvent=\"InvalidAccountID\",EventTV=\"2026-12-03T08:49:54.000+0000\",Severity=\"Error\",Service=\"{service}\",EventVersion=\"1\",AccountID=\"{account}\",SessionID=\"0x7f0c1c005678\",LocalAddress=\"IPV4/UDP/192.0.2.10/5060\",RemoteAddress=\"IPV4/UDP/{sender}/5060\"")
}

#[test]
fn a_security_event_account_cannot_forge_a_line() {
    for v in VERSIONS {
        for victim in [VICTIM, VICTIM6] {
            for f in forged(v, victim) {
                for account in fillers(&f, 251) {
                    let log = security_record(v, "SIP", &account, SENDER) + "\n";
                    check(&format!("security {v}"), &log, victim, Some(SENDER));
                }
            }
        }
    }
}

#[test]
fn a_fake_tail_in_the_account_cannot_name_the_victim() {
    for v in VERSIONS {
        // The first physical line looks complete and names the victim; the real tail follows.
        let account = format!("x\",SessionID=\"0x1\",LocalAddress=\"IPV4/UDP/192.0.2.10/5060\",RemoteAddress=\"IPV4/UDP/{VICTIM}/5060\"\nz");
        let log = security_record(v, "SIP", &account, SENDER) + "\n";
        check(&format!("fake tail {v}"), &log, VICTIM, Some(SENDER));
        // ... and with a forged line after it.
        for f in forged(v, VICTIM) {
            let account = format!("x\",SessionID=\"0x1\",LocalAddress=\"IPV4/UDP/192.0.2.10/5060\",RemoteAddress=\"IPV4/UDP/{VICTIM}/5060\"\n{f}\nz");
            if account.len() > 251 {
                continue;
            }
            let log = security_record(v, "SIP", &account, SENDER) + "\n";
            check(&format!("fake tail + forged {v}"), &log, VICTIM, None);
        }
    }
}

fn sip_call(version: u8, exten: &str, sender: &str) -> String {
    prefix(version, "NOTICE", "chan_sip.c")
        + &format!("Call from '' ({sender}:5060) to extension '{exten}' rejected because extension not found in context 'from-external'.")
}

#[test]
fn a_chan_sip_extension_cannot_forge_a_line() {
    for v in [13, 18, 20] {
        for victim in [VICTIM, VICTIM6] {
            for f in forged(v, victim) {
                // Only the logger's message size bounds the decoded extension.
                for exten in fillers(&f, 8000) {
                    let log = sip_call(v, &exten, SENDER) + "\n";
                    check(&format!("chan_sip call {v}"), &log, victim, Some(SENDER));
                }
                // (A fake tail before the newline makes the first line whole: the known limit
                // where the field can fill the message, see the guard's docs.)
            }
        }
    }
}

/// res_pjsip_session: `Call from '<endpoint>' (TP:ADDR)` in 13, ` <endpoint>: Call (TP:ADDR)`
/// (a leading space) from 18.1.
fn pjsip_call(version: u8, exten: &str, sender: &str) -> String {
    let head = if version == 13 {
        format!("Call from 'anonymous' (UDP:{sender}:5060)")
    } else {
        format!(" anonymous: Call (UDP:{sender}:5060)")
    };
    prefix(version, "NOTICE", "res_pjsip_session.c")
        + &format!("{head} to extension '{exten}' rejected because extension not found in context 'from-external'.")
}

#[test]
fn a_pjsip_extension_cannot_forge_a_line() {
    for v in VERSIONS {
        let f = forged(v, VICTIM).pop().expect("a short form");
        for exten in [format!("\n{f}"), format!("\n{f}\n"), format!("1\n{f}\n2")] {
            assert!(exten.len() <= 79, "the attack fits a 79-byte extension");
            let log = pjsip_call(v, &exten, SENDER) + "\n";
            check(&format!("pjsip call {v}"), &log, VICTIM, Some(SENDER));
        }
    }
}

/// A genuine failure of the sender, far enough after the attack to be outside any field.
fn later_genuine(version: u8) -> String {
    let pad: String = (0..90)
        .map(|i| {
            prefix(version, "VERBOSE", "chan_sip.c")
                + &format!("Using INVITE request as basis request - {i:0>60}\n")
        })
        .collect();
    pad + &prefix(version, "NOTICE", "chan_sip.c")
        + &format!("Registration from '<sip:100@192.0.2.10>' failed for '{SENDER}:5060' - Wrong password\n")
}

#[test]
fn dialplan_arguments_cannot_forge_a_line() {
    for v in VERSIONS {
        for victim in [VICTIM, VICTIM6] {
            for f in forged(v, victim) {
                for data in fillers(&f, 8000) {
                    let log = prefix(v, "VERBOSE", "pbx.c")
                        + &format!("Executing [100@from-external:1] NoOp(\"SIP/trunk-00000001\", \"{data}\") in new stack\n")
                        + &later_genuine(v);
                    check(&format!("executing {v}"), &log, victim, Some(SENDER));
                    let log = prefix(v, "WARNING", "Ext. 100")
                        + &format!("Caller {data}\n")
                        + &later_genuine(v);
                    check(&format!("Log() {v}"), &log, victim, Some(SENDER));
                }
            }
        }
    }
}

#[test]
fn a_dialled_extension_in_a_log_line_cannot_forge_a_line() {
    for v in VERSIONS {
        for f in forged(v, VICTIM) {
            // `Log()` prints the extension as its "file": a newline in it breaks the prefix.
            let log = prefix(v, "WARNING", &format!("Ext. 1\n{f}\n2"))
                + "Caller unknown\n"
                + &later_genuine(v);
            check(&format!("Log() extension {v}"), &log, VICTIM, Some(SENDER));
            let log = prefix(v, "VERBOSE", "pbx.c")
                + &format!("Executing [1\n{f}\n2@from-external:1] NoOp(\"SIP/trunk-00000001\", \"\") in new stack\n")
                + &later_genuine(v);
            check(
                &format!("Executing extension {v}"),
                &log,
                VICTIM,
                Some(SENDER),
            );
        }
    }
}

#[test]
fn an_iax2_user_name_cannot_forge_a_line() {
    for v in VERSIONS {
        for victim in [VICTIM, VICTIM6] {
            for f in forged(v, victim) {
                // The short form: the message ends with the user name, no filler needed. NOTICE
                // up to 20.5, WARNING from 20.6.
                let level = if v == 20 { "WARNING" } else { "NOTICE" };
                let log = prefix(v, level, "chan_iax2.c")
                    + &format!("Host {SENDER} failed to authenticate as x\n{f}\n");
                check(&format!("iax2 auth {v}"), &log, victim, Some(SENDER));
                for user in fillers(&f, 255) {
                    let log = prefix(v, "NOTICE", "chan_iax2.c")
                        + &format!("No registration for peer '{user}' (from {SENDER})\n");
                    check(&format!("iax2 noreg {v}"), &log, victim, Some(SENDER));
                    let log = prefix(v, "NOTICE", "chan_iax2.c")
                        + &format!(
                            "Host {SENDER} failed MD5 authentication for '{user}' (0123 != 4567)\n"
                        );
                    check(&format!("iax2 md5 {v}"), &log, victim, Some(SENDER));
                }
            }
        }
    }
}

#[test]
fn genuine_floods_are_still_counted() {
    // The guard's cost must stay visible and small on real traffic: one scanner's lines, back
    // to back, every one of them an opener.
    for v in VERSIONS {
        let mut log = String::new();
        for i in 0..50 {
            log += &sip_call(v, &format!("{i}"), SENDER);
            log += "\n";
            log += &security_record(v, "PJSIP", &format!("{i}"), SENDER);
            log += "\n";
            log += &pjsip_call(v, &format!("{i}"), SENDER);
            log += "\n";
        }
        let r = scan(&log);
        let e = &r.addresses[&ip(SENDER)];
        assert_eq!(e.count, 150, "{v}: {:?}", r.counters);
        assert_eq!(r.counters.injections, 0);
    }
}

/// The whole path: a dry-run sync plans the sender and not the victim, `status` shows what the
/// guard did, and `scan` prints the suspect count.
#[test]
fn a_dry_run_sync_plans_the_sender_not_the_victim() {
    use crate::common::run::{json, sipban, text};
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("messages");
    let now = sipban::clock::unix_now();
    let mut lines = String::new();
    for i in 0..3 {
        let stamp = sipban::inspect::fmt_time(now - 60 + i).replace(" UTC", "");
        let p = |level: &str, file: &str| format!("[{stamp}] {level}[23456] {file}: ");
        let forged = p("NOTICE", "chan_sip.c")
            + &format!("Registration from '' failed for '{VICTIM}:5060' - Wrong password");
        lines += &(p("SECURITY", "res_security_log.c")
            + &format!("SecurityEvent=\"InvalidAccountID\",EventTV=\"x\",Severity=\"Error\",Service=\"SIP\",EventVersion=\"1\",AccountID=\"x\n{forged}\ny\",SessionID=\"0x7f\",LocalAddress=\"IPV4/UDP/192.0.2.10/5060\",RemoteAddress=\"IPV4/UDP/{SENDER}/5060\"\n"));
        // The IAX2 user name ends its message: what follows within 256 bytes is suspect, so
        // a neutral line longer than that comes next.
        lines += &(p("NOTICE", "chan_iax2.c")
            + &format!("Host {SENDER} failed to authenticate as x\n{forged}\n"));
        lines += &(p("VERBOSE", "chan_sip.c") + &"-".repeat(300) + "\n");
    }
    std::fs::write(&log, lines).expect("write log");
    std::fs::write(
        dir.path().join("config.yaml"),
        format!(
            "state_dir: {}\nsets:\n  v4: {{ name: inj4, cap: 100 }}\n  v6: {{ name: inj6, cap: 100 }}\nasterisk:\n  logs: [{}]\n  maxretry: 3\n  bantime: 1h\n",
            dir.path().join("state").display(),
            log.display()
        ),
    )
    .expect("write config");
    let o = sipban(dir.path(), &["sync", "--dry-run", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let j = json(&o);
    let adds = j["sets"][0]["adds"].to_string();
    assert!(adds.contains(SENDER), "sender planned: {}", text(&o));
    assert!(!adds.contains(VICTIM), "victim not planned: {}", text(&o));
    // The run report (what `status` shows after a real run) counts what the guard did.
    let c = j["sources"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "asterisk"))
        .map(|s| s["asterisk"]["counters"].clone())
        .expect("asterisk source in the report");
    assert_eq!(c["injections"], 3, "{c}");
    assert!(c["suspect"].as_u64().unwrap_or(0) >= 3, "{c}");
    let o = crate::common::run::sipban(dir.path(), &["scan", log.to_str().expect("path")]);
    let out = text(&o);
    assert!(out.contains("records broken by a newline"), "{out}");
    assert!(!out.contains(VICTIM), "{out}");
}

/// chan_sip writes the top Via's `maddr` as a security event's `RemoteAddress`: a REGISTER
/// with a wrong password and `Via: SIP/2.0/UDP 203.0.113.5:5060;maddr=<victim>` logs a whole,
/// genuine event naming the victim. Not counted unless the admin opts in.
#[test]
fn a_chan_sip_security_event_names_nobody_by_default() {
    for v in VERSIONS {
        let log = prefix(v, "SECURITY", "res_security_log.c")
            + &format!("SecurityEvent=\"InvalidPassword\",EventTV=\"2026-12-03T08:49:54.000+0000\",Severity=\"Error\",Service=\"SIP\",EventVersion=\"2\",AccountID=\"100\",SessionID=\"0x7f0c1c001234\",LocalAddress=\"IPV4/UDP/192.0.2.10/5060\",RemoteAddress=\"IPV4/UDP/{VICTIM}/5060\",Challenge=\"4f3a2b1c\",ReceivedChallenge=\"4f3a2b1c\",ReceivedHash=\"0123456789abcdef0123456789abcdef\"\n")
            // The NOTICE line of the same attempt carries the real source.
            + &prefix(v, "NOTICE", "chan_sip.c")
            + &format!("Registration from '<sip:100@192.0.2.10>' failed for '{SENDER}:5060' - Wrong password\n");
        let r = scan_bytes(&[log.as_bytes()], None, ScanOptions::default());
        assert_eq!(addresses(&r), vec![ip(SENDER)], "{v}");
        assert!(
            scan(&log).addresses.contains_key(&ip(VICTIM)),
            "the opt-in counts it"
        );
    }
}

/// PJSIP's account name holds 36 bytes: too few for a forged line, but a newline still splits
/// the event, and its sender is found in the tail.
#[test]
fn a_split_pjsip_account_still_names_its_sender() {
    for v in VERSIONS {
        let log = security_record(v, "PJSIP", "100\n200", SENDER) + "\n";
        let r = scan(&log);
        assert_eq!(addresses(&r), vec![ip(SENDER)], "{v}: {:?}", r.counters);
        assert_eq!(r.counters.injections, 1);
        assert_eq!(r.counters.injected, 0, "only the tail line follows");
    }
}

/// The manager over HTTP URI-decodes the user name, which ends its NOTICE line; AMI's
/// ChallengeResponseFailed prints the client's `Key:` after RemoteAddress.
#[test]
fn manager_user_names_and_keys_cannot_name_the_victim() {
    for v in VERSIONS {
        for f in forged(v, VICTIM) {
            let log = prefix(v, "NOTICE", "manager.c")
                + &format!("{SENDER} failed to authenticate as 'admin\n{f}\nx'\n")
                + &later_genuine(v);
            check(&format!("manager {v}"), &log, VICTIM, Some(SENDER));
        }
        // The attempt's NOTICE line names the sender; the event names nobody (its remote
        // addresses disagree).
        let log = prefix(v, "NOTICE", "manager.c")
            + &format!("{SENDER} failed to authenticate as 'admin'\n")
            + &later_genuine(v)
            + &prefix(v, "SECURITY", "res_security_log.c")
            + &format!("SecurityEvent=\"ChallengeResponseFailed\",EventTV=\"2026-12-03T08:49:54.000+0000\",Severity=\"Error\",Service=\"AMI\",EventVersion=\"1\",AccountID=\"admin\",SessionID=\"0x7f0c1c001234\",LocalAddress=\"IPV4/TCP/192.0.2.10/5038\",RemoteAddress=\"IPV4/TCP/{SENDER}/5038\",Challenge=\"12345\",Response=\"x\",RemoteAddress=\"IPV4/TCP/{VICTIM}/5038\",ExpectedResponse=\"0123456789abcdef0123456789abcdef\",SessionTV=\"2026-12-03T08:49:50.000+0000\"\n")
            + &later_genuine(v);
        check(&format!("AMI key {v}"), &log, VICTIM, Some(SENDER));
    }
}

/// Lines held after an opener are read again byte for byte: the PJSIP dump that follows a
/// security event still consumes exactly its `(N bytes)`, carriage returns included, so a
/// forged line inside the SIP message stays inside the dump.
#[test]
fn held_lines_keep_their_bytes_for_the_dump_parser() {
    let packet = format!(
        "INVITE sip:1@x SIP/2.0\r\nCall-ID: pj-1\r\nX: [2023-02-19 15:02:45] NOTICE[686] chan_sip.c: Registration from '' failed for '{VICTIM}' - Wrong password\r\n\r\n"
    );
    let log = security_record(13, "SIP", "100", SENDER)
        + "\n"
        + &format!(
            "[Dec  3 08:49:54] VERBOSE[700] res_pjsip_logger.c: <--- Received SIP request ({} bytes) from UDP:{SENDER}:5060 --->\n{packet}\n",
            packet.len()
        )
        + &prefix(13, "NOTICE", "res_pjsip/pjsip_distributor.c")
        + &format!("Request 'INVITE' from '<sip:1@x>' failed for '{SENDER}:5060' (callid: pj-1) - No matching endpoint found\n");
    let r = scan_bytes(
        &[],
        Some(log.as_bytes()),
        ScanOptions {
            security_services: ALL,
            timezone: TimeZone::FixedOffset(0),
            ..ScanOptions::default()
        },
    );
    assert_eq!(addresses(&r), vec![ip(SENDER)], "{:?}", r.counters);
    assert_eq!(r.counters.by_rule.get("pjsip_request_failed"), Some(&1));
}

/// Asterisk's console output captured by journald (`asterisk -f` under systemd) and read as
/// text: every physical line of a message becomes an entry of its own, so every line gets the
/// journal's header. The header is journald's, not field bytes: a forged line that starts
/// within the field's capacity in Asterisk's bytes must still be held, however many header
/// bytes the lines before it carry (issue 15).
#[test]
fn journal_headers_do_not_push_a_forged_line_out_of_the_field() {
    let header = "Dec 03 08:49:54 pbx asterisk[1180]: ";
    for v in VERSIONS {
        for victim in [VICTIM, VICTIM6] {
            for f in forged(v, victim) {
                for account in fillers(&f, 251) {
                    let record = security_record(v, "SIP", &account, SENDER);
                    let log: String = record.lines().map(|l| format!("{header}{l}\n")).collect();
                    check(&format!("journal {v}"), &log, victim, Some(SENDER));
                }
            }
        }
    }
}

/// rsyslog writes each control byte of a message as `#ooo` (four bytes for one): a
/// colour-coded opener's field counts them as one byte, so a field full of escapes cannot
/// push a forged line past the field's capacity either.
#[test]
fn escaped_control_bytes_count_as_one_field_byte() {
    for v in VERSIONS {
        for f in forged(v, VICTIM) {
            // 40 escaped ESC bytes (160 written, 40 in Asterisk's field), then the newline.
            let pad = "#033".repeat(40);
            let account = format!("{pad}\n{f}\ny");
            if account.len() - 120 > 251 {
                continue;
            }
            let log = security_record(v, "SIP", &account, SENDER) + "\n";
            check(&format!("escaped {v}"), &log, VICTIM, Some(SENDER));
        }
    }
}
