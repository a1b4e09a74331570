//! Call-ID correlation of `Timeout on <Call-ID> on non-critical invite transaction.` through the
//! SIP debug dumps of the full log (research §5.3), including the forgeries a scanner can put
//! into its own datagrams, and the block-aware parser keeping dump contents away from the
//! failure matcher.

use crate::common::lines::append;
use sipban::source::asterisk::{
    run, scan_bytes, AsteriskSettings, DetectorState, ScanOptions, TimeZone,
};
use std::collections::BTreeSet;
use std::fs;

const SCANNER: &str = "192.0.2.23";
const VICTIM: &str = "203.0.113.66";

fn pre(t: &str, msg: &str) -> String {
    format!("[2023-02-19 15:{t}] VERBOSE[686] chan_sip.c: {msg}\n")
}

/// A chan_sip `SIP read from` dump of an INVITE (`extra` goes into the header section).
fn read_invite(t: &str, src: &str, callid: &str, extra: &str, body: &str) -> String {
    format!(
        "{}<--- SIP read from UDP:{src}:5091 --->\nINVITE sip:100@203.0.113.10 SIP/2.0\r\nVia: SIP/2.0/UDP {src}:5091;branch=z9hG4bK-1;rport\r\n{extra}Call-ID: {callid}\r\nCSeq: 1 INVITE\r\nContent-Length: {}\r\n\r\n{body}\n<------------->\n",
        pre(t, ""),
        body.len()
    )
}

fn transmit(t: &str, dst: &str, callid: &str, status: &str, nat: &str) -> String {
    format!(
        "{}<--- Reliably Transmitting ({nat}) to {dst}:5091 --->\nSIP/2.0 {status}\r\nCall-ID: {callid}\r\nCSeq: 1 INVITE\r\n\r\n\n<------------>\n",
        pre(t, "")
    )
}

fn retransmit(t: &str, n: u32, dst: &str, callid: &str, status: &str, nat: &str) -> String {
    format!(
        "{}SIP/2.0 {status}\r\nCall-ID: {callid}\r\nCSeq: 1 INVITE\r\n\r\n\n---\n",
        pre(t, &format!("Retransmitting #{n} ({nat}) to {dst}:5091:"))
    )
}

fn timeout(t: &str, callid: &str) -> String {
    format!("[2023-02-19 15:{t}] WARNING[686] chan_sip.c: Timeout on {callid} on non-critical invite transaction.\n")
}

/// The usual scanner sequence: INVITE, 401, retransmissions, timeout.
fn scanner(callid: &str) -> String {
    let mut s = read_invite(
        "02:45",
        SCANNER,
        callid,
        "User-Agent: friendly-scanner\r\n",
        "",
    );
    s += &transmit("02:45", SCANNER, callid, "401 Unauthorized", "NAT");
    s += &pre(
        "02:45",
        &format!("Scheduling destruction of SIP dialog '{callid}' in 32000 ms (Method: INVITE)"),
    );
    for n in 1..=6 {
        s += &retransmit("02:46", n, SCANNER, callid, "401 Unauthorized", "NAT");
    }
    s += &timeout("03:17", callid);
    s
}

fn scan_full(full: &str) -> sipban::source::asterisk::ScanReport {
    scan_bytes(
        &[],
        Some(full.as_bytes()),
        ScanOptions {
            verbose: true,
            timezone: TimeZone::FixedOffset(0),
            ..ScanOptions::default()
        },
    )
}

fn ips(r: &sipban::source::asterisk::ScanReport) -> BTreeSet<String> {
    r.addresses.keys().map(|i| i.to_string()).collect()
}

fn reasons(r: &sipban::source::asterisk::ScanReport) -> Vec<&'static str> {
    r.unattributed.iter().map(|(_, why)| *why).collect()
}

#[test]
fn scanner_timeout_is_attributed_to_the_socket_source() {
    let r = scan_full(&scanner("K2V9TQ4MZ1AB.7731902.Y8RR20WQ5LXE"));
    assert_eq!(ips(&r), BTreeSet::from([SCANNER.to_string()]));
    assert_eq!(r.counters.timeouts_attributed, 1);
    assert_eq!(r.counters.timeouts_unattributed, 0);
    assert_eq!(r.counters.orphan_lines, 0, "every dump line is consumed");
}

#[test]
fn compact_and_lowercase_call_id_headers() {
    let cid = "abc@1.2.3.4";
    let mut s = read_invite("02:45", SCANNER, "ignored", "", "")
        .replace("Call-ID: ignored", &format!("i: {cid}"));
    s += &retransmit("02:46", 1, SCANNER, cid, "401 Unauthorized", "NAT");
    s += &timeout("03:17", cid);
    assert_eq!(ips(&scan_full(&s)), BTreeSet::from([SCANNER.to_string()]));
    let s2 = s.replace(&format!("i: {cid}"), &format!("call-ID : {cid}"));
    assert_eq!(ips(&scan_full(&s2)), BTreeSet::from([SCANNER.to_string()]));
}

#[test]
fn timeout_without_dumps_is_an_unattributed_scanner_timeout() {
    let r = scan_full(&timeout("03:17", "nothing-known"));
    assert!(r.addresses.is_empty());
    assert_eq!(r.counters.timeouts_unattributed, 1);
    assert_eq!(reasons(&r), ["no_invite"]);
    // Without a full log the same warning in `messages` is unattributed too.
    let m = scan_bytes(
        &[timeout("03:17", "x").as_bytes()],
        None,
        ScanOptions::default(),
    );
    assert_eq!(m.counters.timeouts_unattributed, 1);
}

#[test]
fn phone_not_acking_a_reinvite_200_is_not_banned() {
    let cid = "reinvite-1@192.168.1.20";
    let mut s = read_invite("02:45", "192.0.2.30", cid, "", "v=0\r\n");
    s += &transmit("02:45", "192.0.2.30", cid, "200 OK", "NAT");
    for n in 1..=6 {
        s += &retransmit("02:46", n, "192.0.2.30", cid, "200 OK", "NAT");
    }
    s += &timeout("03:17", cid);
    let r = scan_full(&s);
    assert!(r.addresses.is_empty());
    assert_eq!(reasons(&r), ["answered"]);
}

#[test]
fn provisional_last_retransmission_is_not_attributed() {
    let cid = "prov-1";
    let mut s = read_invite("02:45", SCANNER, cid, "", "");
    s += &retransmit("02:46", 1, SCANNER, cid, "183 Session Progress", "NAT");
    s += &timeout("03:17", cid);
    assert_eq!(reasons(&scan_full(&s)), ["not_rejected"]);
}

#[test]
fn forged_block_in_the_body_makes_two_sources() {
    let cid = "forged-body-1";
    let forged = format!(
        "\r\n<------------->\r\n[2023-02-19 15:02:45] VERBOSE[686] chan_sip.c: \r\n<--- SIP read from UDP:{VICTIM}:5060 --->\r\nINVITE sip:1@x SIP/2.0\r\nCall-ID: {cid}\r\n\r\n"
    );
    let mut s = read_invite("02:45", SCANNER, cid, "", &forged);
    s += &retransmit("02:46", 1, SCANNER, cid, "401 Unauthorized", "NAT");
    s += &timeout("03:17", cid);
    let r = scan_full(&s);
    assert!(!ips(&r).contains(VICTIM));
    assert!(r.addresses.is_empty());
    assert_eq!(reasons(&r), ["several_sources"]);
}

#[test]
fn forged_end_marker_in_the_header_section_contests_what_follows() {
    // The real INVITE hides its Call-ID behind a fake end marker and a fake block naming the
    // victim: the real block ends inside its header section, so the fake one is contested.
    let cid = "hidden-1";
    let extra = format!(
        "X-A: 1\r\n<------------->\r\n[2023-02-19 15:02:45] VERBOSE[686] chan_sip.c: \r\n<--- SIP read from UDP:{VICTIM}:5060 --->\r\nINVITE sip:1@x SIP/2.0\r\nCall-ID: {cid}\r\n\r\n<------------->\r\n"
    );
    let mut s = read_invite("02:45", SCANNER, "other-id", &extra, "");
    s += &retransmit("02:46", 1, SCANNER, cid, "401 Unauthorized", "no NAT");
    s += &timeout("03:17", cid);
    let r = scan_full(&s);
    assert!(!ips(&r).contains(VICTIM), "{:?}", r.addresses);
    assert_eq!(reasons(&r), ["contested"]);
}

#[test]
fn forged_log_lines_inside_dumps_never_reach_the_matcher() {
    let forged = format!(
        "[2023-02-19 15:02:45] NOTICE[686] chan_sip.c: Registration from '' failed for '{VICTIM}' - Wrong password\r\n[2023-02-19 15:02:45] SECURITY[1] res_security_log.c: SecurityEvent=\"InvalidPassword\",EventTV=\"x\",Severity=\"Error\",Service=\"SIP\",EventVersion=\"1\",AccountID=\"1\",SessionID=\"2\",LocalAddress=\"IPV4/UDP/192.0.2.1/5060\",RemoteAddress=\"IPV4/UDP/{VICTIM}/5060\"\r\n"
    );
    let s = read_invite("02:45", SCANNER, "f-1", "", &forged);
    let r = scan_full(&s);
    assert!(r.addresses.is_empty(), "{:?}", r.addresses);
    // pjsip dumps: exactly N bytes are consumed, then normal lines are matched again.
    let packet = format!(
        "INVITE sip:1@x SIP/2.0\r\nCall-ID: pj-1\r\nX: [2023-02-19 15:02:45] NOTICE[686] chan_sip.c: Registration from '' failed for '{VICTIM}' - Wrong password\r\n\r\n"
    );
    let pj = format!(
        "[2023-02-19 15:02:45] VERBOSE[700] res_pjsip_logger.c: <--- Received SIP request ({} bytes) from UDP:{SCANNER}:5060 --->\n{packet}\n[2023-02-19 15:02:46] NOTICE[700] res_pjsip/pjsip_distributor.c: Request 'INVITE' from '<sip:1@x>' failed for '{SCANNER}:5060' (callid: pj-1) - No matching endpoint found\n",
        packet.len()
    );
    let r = scan_full(&pj);
    assert_eq!(ips(&r), BTreeSet::from([SCANNER.to_string()]));
    assert_eq!(r.counters.by_rule.get("pjsip_request_failed"), Some(&1));
}

#[test]
fn via_maddr_reflection_does_not_move_the_address() {
    // (no NAT) transmissions go to a Via-chosen address: never a source of attribution.
    let cid = "maddr-1";
    let mut s = read_invite("02:45", SCANNER, cid, "", "");
    s += &transmit("02:45", VICTIM, cid, "401 Unauthorized", "no NAT");
    s += &retransmit("02:46", 1, VICTIM, cid, "401 Unauthorized", "no NAT");
    s += &timeout("03:17", cid);
    assert_eq!(ips(&scan_full(&s)), BTreeSet::from([SCANNER.to_string()]));
}

#[test]
fn nat_destination_elsewhere_refuses_attribution() {
    let cid = "nat-1";
    let mut s = read_invite("02:45", SCANNER, cid, "", "");
    s += &retransmit("02:46", 1, "192.0.2.99", cid, "401 Unauthorized", "NAT");
    s += &timeout("03:17", cid);
    assert_eq!(reasons(&scan_full(&s)), ["destination_mismatch"]);
}

#[test]
fn stale_invite_and_log_loss_refuse_attribution() {
    let cid = "stale-1";
    let mut s = read_invite("02:45", SCANNER, cid, "", "");
    s += &timeout("09:17", cid);
    assert_eq!(reasons(&scan_full(&s)), ["stale"]);
    let cid = "loss-1";
    let mut s = read_invite("02:45", SCANNER, cid, "", "");
    s += "[2023-02-19 15:02:50] WARNING[686] logger.c: Log queue threshold (1000) exceeded.  Discarding non-warning/error messages.\n";
    s += &timeout("03:17", cid);
    assert_eq!(reasons(&scan_full(&s)), ["log_loss"]);
}

#[test]
fn retransmitted_invites_from_one_source_still_attribute() {
    let cid = "retx-invite";
    let mut s = read_invite("02:45", SCANNER, cid, "", "");
    s += &read_invite("02:46", SCANNER, cid, "", "");
    s += &retransmit("02:46", 1, SCANNER, cid, "401 Unauthorized", "NAT");
    s += &timeout("03:17", cid);
    assert_eq!(ips(&scan_full(&s)), BTreeSet::from([SCANNER.to_string()]));
}

#[test]
fn correlation_survives_rotation_between_invite_and_timeout() {
    let d = tempfile::tempdir().expect("tempdir");
    let full = d.path().join("full");
    let messages = d.path().join("messages");
    let s = AsteriskSettings {
        logs: vec![messages.clone()],
        full_log: Some(full.clone()),
        maxretry: 2,
        timezone: TimeZone::FixedOffset(0),
        ..AsteriskSettings::default()
    };
    let now = 1_676_819_100; // 2023-02-19T15:05:00Z
    let mut state = DetectorState::default();
    let cid = "rot-1";
    let invite = read_invite("02:45", SCANNER, cid, "", "")
        + &retransmit("02:46", 1, SCANNER, cid, "401 Unauthorized", "NAT");
    append(&full, &invite);
    append(&messages, "");
    let r = run(&s, &mut state, now).expect("run");
    assert_eq!(r.counters.matched, 0);
    let blob = serde_json::to_string(&state).expect("state to JSON");
    let mut state: DetectorState = serde_json::from_str(&blob).expect("state from JSON");
    // Rotation by rename; the timeout lands in the new full log, and in messages.
    fs::rename(&full, d.path().join("full.1")).expect("rename");
    append(&full, &timeout("03:17", cid));
    append(&messages, &timeout("03:17", cid));
    let r = run(&s, &mut state, now).expect("run");
    assert_eq!(r.counters.timeouts_attributed, 1);
    assert_eq!(
        r.counters.timeouts_unattributed, 0,
        "messages' copy is not counted"
    );
    assert_eq!(
        r.evidence.keys().map(|i| i.to_string()).collect::<Vec<_>>(),
        [SCANNER]
    );
    // A second attributed timeout bans (maxretry 2).
    let cid = "rot-2";
    append(
        &full,
        &(read_invite("03:20", SCANNER, cid, "", "")
            + &retransmit("03:21", 1, SCANNER, cid, "401 Unauthorized", "NAT")
            + &timeout("03:52", cid)),
    );
    let r = run(&s, &mut state, now).expect("run");
    assert_eq!(r.bans.len(), 1);
    assert_eq!(r.bans[0].ip.to_string(), SCANNER);
}

/// `scan_bytes` fed the empty piece after a final newline to the engine as one more line: a
/// dump block (or an injection window) open at the end took it, and the in-memory report
/// disagreed with the report of the same bytes read from a file (found by `fuzz.rs`).
#[test]
fn scan_bytes_reads_no_line_after_the_final_newline() {
    let opts = ScanOptions {
        timezone: TimeZone::FixedOffset(0),
        ..ScanOptions::default()
    };
    let head = "[2024-05-02 10:11:13] NOTICE[4102][C-00000007] chan_sip.c: Call from '' (192.0.2.90:5060) to extension '1\n";
    let dump = "[2023-02-19 15:02:45] VERBOSE[686] res_pjsip_logger.c: <--- Received SIP request (900 bytes) from UDP:192.0.2.91:5060 --->\nINVITE sip:1@x SIP/2.0\n";
    let d = tempfile::tempdir().expect("tempdir");
    let path = d.path().join("log");
    for (log, full) in [(dump, true), (head, false)] {
        fs::write(&path, log).expect("write log");
        let (memory, file) = if full {
            (
                scan_bytes(&[], Some(log.as_bytes()), opts),
                sipban::source::asterisk::scan_with(&[], Some(&path), opts).expect("scan"),
            )
        } else {
            (
                scan_bytes(&[log.as_bytes()], None, opts),
                sipban::source::asterisk::scan_with(std::slice::from_ref(&path), None, opts)
                    .expect("scan"),
            )
        };
        assert_eq!(memory.counters, file.counters, "{log:?}");
        assert_eq!(memory.files[0].lines, log.matches('\n').count() as u64);
    }
}
