//! `sipban scan --pcap`: a capture read offline through the SIP wire detector (issue 16).
//! Captures are built here, byte for byte, as a switch port would see them: SIPVicious
//! enumerating with its own User-Agent, an INVITE scanner posing as a desk phone that never
//! ACKs, a real phone registering and calling (and misdialling), and the same traffic mirrored
//! by a PBX as HEP v3. With an Asterisk log, every IP-less Timeout line is attributed to the
//! scanner whose INVITE it was, and none to the phone.

use sipban::source::wire::hep;
use sipban::source::wire::pcap::{write_udp_pcap, UdpRecord};
use std::net::IpAddr;

const PBX: &str = "192.0.2.1";
const SVWAR: &str = "198.51.100.9";
const POSER: &str = "198.51.100.10";
const PHONE: &str = "203.0.113.5";
/// 2024-05-02T10:00:00Z
const T0: i64 = 1_714_644_000;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn request(
    method: &str,
    user: &str,
    callid: &str,
    cseq: u32,
    ua: &str,
    creds: bool,
    branch: &str,
) -> Vec<u8> {
    let auth = if creds {
        "Authorization: Digest username=\"201\", response=\"0\"\r\n"
    } else {
        ""
    };
    format!(
        "{method} sip:{user}@{PBX} SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch={branch}\r\n\
From: <sip:{user}@{PBX}>;tag=f{cseq}\r\nTo: <sip:{user}@{PBX}>\r\nCall-ID: {callid}\r\n\
CSeq: {cseq} {method}\r\nUser-Agent: {ua}\r\n{auth}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn response(code: u16, callid: &str, cseq: u32, method: &str) -> Vec<u8> {
    format!(
        "SIP/2.0 {code} Whatever\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKx\r\nFrom: <sip:x@{PBX}>;tag=f\r\n\
To: <sip:x@{PBX}>;tag=as1\r\nCall-ID: {callid}\r\nCSeq: {cseq} {method}\r\nServer: Asterisk PBX 16\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// The conversation, in order: (time, from, to, message).
fn traffic() -> Vec<(i64, &'static str, &'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let mut t = T0;
    // SIPVicious svwar: REGISTER per extension, answered 401 (alwaysauthreject).
    for ext in 100..110 {
        let c = format!("{}", 3_000_000_000u64 + ext);
        out.push((
            t,
            SVWAR,
            PBX,
            request(
                "REGISTER",
                &ext.to_string(),
                &c,
                1,
                "friendly-scanner",
                false,
                &format!("z9hG4bK-{}", 1000 + ext),
            ),
        ));
        out.push((t, PBX, SVWAR, response(401, &c, 1, "REGISTER")));
        t += 1;
    }
    // An INVITE scanner posing as a Yealink: INVITEs answered 401/404, never ACKed.
    for n in 0..6 {
        let c = format!("poser-{n}@198.51.100.10");
        out.push((
            t,
            POSER,
            PBX,
            request(
                "INVITE",
                "100",
                &c,
                1,
                "Yealink SIP-T46S 66.86.0.15",
                false,
                &format!("z9hG4bKPj{n}"),
            ),
        ));
        out.push((
            t,
            PBX,
            POSER,
            response(if n % 2 == 0 { 401 } else { 404 }, &c, 1, "INVITE"),
        ));
        t += 1;
    }
    // A real phone: registers with a challenge, calls, misdials; ACKs everything.
    for n in 0..6 {
        let c = format!("phone-{n}@203.0.113.5");
        out.push((
            t,
            PHONE,
            PBX,
            request(
                "REGISTER",
                "201",
                &c,
                1,
                "Yealink SIP-T46S 66.86.0.15",
                false,
                "z9hG4bKPjr1",
            ),
        ));
        out.push((t, PBX, PHONE, response(401, &c, 1, "REGISTER")));
        out.push((
            t,
            PHONE,
            PBX,
            request(
                "REGISTER",
                "201",
                &c,
                2,
                "Yealink SIP-T46S 66.86.0.15",
                true,
                "z9hG4bKPjr2",
            ),
        ));
        out.push((t, PBX, PHONE, response(200, &c, 2, "REGISTER")));
        let call = format!("call-{n}@203.0.113.5");
        let number = format!("{}", 5550 + n);
        out.push((
            t,
            PHONE,
            PBX,
            request(
                "INVITE",
                &number,
                &call,
                1,
                "Yealink SIP-T46S 66.86.0.15",
                false,
                "z9hG4bKPji1",
            ),
        ));
        out.push((t, PBX, PHONE, response(401, &call, 1, "INVITE")));
        out.push((
            t,
            PHONE,
            PBX,
            request(
                "ACK",
                &number,
                &call,
                1,
                "Yealink SIP-T46S 66.86.0.15",
                false,
                "z9hG4bKPji1",
            ),
        ));
        out.push((
            t,
            PHONE,
            PBX,
            request(
                "INVITE",
                &number,
                &call,
                2,
                "Yealink SIP-T46S 66.86.0.15",
                true,
                "z9hG4bKPji2",
            ),
        ));
        out.push((t, PBX, PHONE, response(404, &call, 2, "INVITE")));
        out.push((
            t,
            PHONE,
            PBX,
            request(
                "ACK",
                &number,
                &call,
                2,
                "Yealink SIP-T46S 66.86.0.15",
                false,
                "z9hG4bKPji2",
            ),
        ));
        t += 1;
    }
    out
}

fn plain_pcap() -> Vec<u8> {
    let records: Vec<UdpRecord> = traffic()
        .into_iter()
        .map(|(t, a, b, m)| {
            (
                t,
                ip(a),
                if a == PBX { 5060 } else { 5062 },
                ip(b),
                if b == PBX { 5060 } else { 5062 },
                m,
            )
        })
        .collect();
    write_udp_pcap(&records)
}

/// The same messages as a PBX mirrors them to a HEP collector on 127.0.0.1:9060.
fn hep_pcap() -> Vec<u8> {
    let records: Vec<UdpRecord> = traffic()
        .into_iter()
        .map(|(t, a, b, m)| {
            let h = hep::Hep {
                src: ip(a),
                dst: ip(b),
                sport: 5060,
                dport: 5060,
                proto: 17,
                secs: t as u32,
                payload_type: hep::SIP,
                capture_id: Some(2001),
                auth_key: None,
                payload: &m,
            };
            (t, ip(PBX), 40000, ip("127.0.0.1"), 9060, hep::encode(&h))
        })
        .collect();
    write_udp_pcap(&records)
}

/// chan_sip's Timeout line for each INVITE error response, 32 s after it: for the scanner's
/// (which Asterisk would write) and for the phone's (which it would not, as the phone ACKed:
/// such a line must not be pinned on the phone).
fn timeout_log() -> String {
    let mut log = String::new();
    for (t, from, _, m) in traffic() {
        if from != PBX
            || !m.starts_with(b"SIP/2.0 4")
            || !String::from_utf8_lossy(&m).contains(" INVITE\r\n")
        {
            continue;
        }
        let text = String::from_utf8_lossy(&m).into_owned();
        let callid = text
            .lines()
            .find_map(|l| l.strip_prefix("Call-ID: "))
            .expect("call-id");
        let at = t + 32 - 1_714_608_000;
        log.push_str(&format!(
            "[2024-05-02 {:02}:{:02}:{:02}] WARNING[4102] chan_sip.c: Timeout on {callid} on non-critical invite transaction.\n",
            at / 3600,
            at % 3600 / 60,
            at % 60
        ));
    }
    log
}

fn scan(pcap: &[u8], log: Option<&str>) -> serde_json::Value {
    let d = tempfile::tempdir().expect("tempdir");
    let file = d.path().join("capture.pcap");
    std::fs::write(&file, pcap).expect("write pcap");
    let mut cmd = std::process::Command::new(crate::common::run::bin());
    cmd.env("TZ", "UTC")
        .args(["scan", "--json", "--pcap"])
        .arg(&file);
    if let Some(log) = log {
        let l = d.path().join("messages");
        std::fs::write(&l, log).expect("write log");
        cmd.arg(&l);
    }
    let o = cmd.output().expect("run sipban");
    let text = crate::common::run::text(&o);
    assert!(o.status.success(), "{text}");
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn banned(r: &serde_json::Value) -> Vec<(String, String)> {
    r["bans"]
        .as_array()
        .expect("bans")
        .iter()
        .map(|b| {
            (
                b["ip"].as_str().expect("ip").to_owned(),
                b["reason"].as_str().expect("reason").to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_capture_names_the_scanners_and_spares_the_phone() {
    for (what, pcap) in [("plain", plain_pcap()), ("hep", hep_pcap())] {
        let r = scan(&pcap, None);
        let bans = banned(&r);
        assert!(
            bans.contains(&(SVWAR.into(), "scanner_user_agent".into())),
            "{what}: {bans:?}"
        );
        assert!(
            bans.contains(&(POSER.into(), "never_acknowledged".into())),
            "{what}: {bans:?}"
        );
        assert!(
            bans.iter().all(|(ip, _)| ip != PHONE && ip != PBX),
            "{what}: {bans:?}"
        );
        let carrier = if what == "hep" { "hep" } else { "udp" };
        assert!(
            r["carriers"][carrier].as_u64().unwrap_or(0) > 0,
            "{what}: {r}"
        );
    }
}

#[test]
fn asterisk_timeouts_are_attributed_through_the_capture() {
    let log = timeout_log();
    let expected = log.lines().filter(|l| l.contains("poser-")).count() as u64;
    let phone = log.lines().filter(|l| l.contains("call-")).count() as u64;
    assert_eq!((expected, phone), (6, 12), "{log}");
    let r = scan(&plain_pcap(), Some(&log));
    let a = &r["asterisk"];
    assert_eq!(
        a["counters"]["timeouts_attributed"].as_u64(),
        Some(expected),
        "{a}"
    );
    assert_eq!(
        a["counters"]["unattributed_reasons"]["authenticated"].as_u64(),
        Some(phone),
        "{a}"
    );
    let addresses = a["addresses"].as_object().expect("addresses");
    assert_eq!(addresses.keys().collect::<Vec<_>>(), vec![POSER], "{a}");
    assert_eq!(addresses[POSER]["timeouts"].as_u64(), Some(expected));
    // Without the capture, the same lines are unattributed.
    let d = tempfile::tempdir().expect("tempdir");
    let l = d.path().join("messages");
    std::fs::write(&l, &log).expect("write");
    let o = std::process::Command::new(crate::common::run::bin())
        .env("TZ", "UTC")
        .args(["scan", "--json"])
        .arg(&l)
        .output()
        .expect("run");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["counters"]["timeouts_attributed"].as_u64(), Some(0));
}

#[test]
fn a_damaged_capture_is_an_error_naming_it() {
    let mut pcap = plain_pcap();
    pcap.truncate(pcap.len() - 7);
    let d = tempfile::tempdir().expect("tempdir");
    let file = d.path().join("cut.pcap");
    std::fs::write(&file, &pcap).expect("write");
    let o = std::process::Command::new(crate::common::run::bin())
        .args(["scan", "--pcap"])
        .arg(&file)
        .output()
        .expect("run");
    let text = crate::common::run::text(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("cut.pcap") && text.contains("ends inside a record"),
        "{text}"
    );
}

/// A capture made with the real tools, kept as test data: `tests/it/wire_tools.rs` run with
/// `SIPBAN_KEEP_PCAP` (Debian's svwar, svcrack and svmap against Debian's Kamailio across a
/// veth pair, recorded by tcpdump on the server's side). svwar ACKs every INVITE but its first
/// probe (answered 404), for which Asterisk would write `Timeout on 896093194` 32 s later: the
/// log beside it has that line, one for a Call-ID the capture never saw, and one (forged: a
/// transaction the scanner ACKed times out in no Asterisk) for an ACKed INVITE.
#[test]
fn a_kept_sipvicious_capture_attributes_its_timeout_and_refuses_the_rest() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wire");
    let o = std::process::Command::new(crate::common::run::bin())
        .args(["scan", "--json", "--pcap"])
        .arg(data.join("sipvicious-kamailio.pcap"))
        .arg(data.join("sipvicious-kamailio.messages"))
        .env("TZ", "UTC")
        .output()
        .expect("run sipban");
    let text = crate::common::run::text(&o);
    assert!(o.status.success(), "{text}");
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let bans = r["bans"].as_array().expect("bans");
    assert_eq!(bans.len(), 1, "{text}");
    assert_eq!(bans[0]["ip"], "10.77.0.2", "{text}");
    let a = &r["asterisk"];
    assert_eq!(a["counters"]["timeouts_attributed"], 1, "{text}");
    assert_eq!(a["counters"]["timeouts_unattributed"], 2, "{text}");
    assert_eq!(
        a["counters"]["unattributed_reasons"]["no_invite"], 1,
        "{text}"
    );
    assert_eq!(a["counters"]["unattributed_reasons"]["acked"], 1, "{text}");
    let who: Vec<&String> = a["addresses"]
        .as_object()
        .expect("addresses")
        .keys()
        .collect();
    assert_eq!(who, ["10.77.0.2"], "{text}");
}
