//! Property: no report (AbuseIPDB comment, bulk CSV line, webhook document) contains this
//! host's addresses, host name, user names or extensions, whatever the evidence says; and the
//! scrubber removes them from raw log lines (attacker text included) as well.
//!
//! Evidence is generated: this host's IPv4/IPv6 addresses and name, account names and
//! extensions, embedded in Asterisk log lines of every shape the detector reads (chan_sip,
//! PJSIP distributor, security log, AMI, dialplan, syslog prefix), plus attacker junk.

use proptest::prelude::*;
use sipban::report::comment::{self, HostIdentity};
use sipban::report::queue::Item;
use sipban::report::{self, abuseipdb, Offence, OffenceKind, RawReport, Transport};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const RULES: &[&str] = &[
    "sip_registration",
    "sip_call_rejected",
    "pjsip_request_failed",
    "security_event",
    "ami_auth_failed",
    "sip_invite_timeout",
    "port_probe",
];

const KINDS: &[OffenceKind] = &[
    OffenceKind::SipAuth,
    OffenceKind::SipCall,
    OffenceKind::SipScan,
    OffenceKind::AmiAuth,
    OffenceKind::PortScan,
];

const TRANSPORTS: &[Transport] = &[
    Transport::Udp,
    Transport::Tcp,
    Transport::Tls,
    Transport::Ws,
    Transport::Wss,
    Transport::Sctp,
    Transport::Syn,
];

#[derive(Clone, Debug)]
struct Case {
    own4: Ipv4Addr,
    own6: Ipv6Addr,
    hostname: String,
    user: String,
    ext: String,
    offender: IpAddr,
    first: i64,
    span: i64,
    counts: Vec<(usize, usize, u64)>,
    transports: Vec<usize>,
    ports: Vec<u16>,
    template: usize,
    junk: String,
    tid: u32,
}

fn case() -> impl Strategy<Value = Case> {
    (
        (
            any::<u32>(),
            any::<u128>(),
            // Host names like pbx01.example.org (a digit keeps them apart from fixed words).
            "[a-z]{2,6}[0-9]{1,3}(\\.[a-z]{2,8}){0,2}",
            "[a-z]{2,6}[0-9]{1,3}[a-z]{1,4}",
            "[1-9][0-9]{2,6}",
            prop_oneof![
                any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from(v))),
                any::<u128>().prop_map(|v| IpAddr::V6(Ipv6Addr::from(v))),
            ],
        ),
        (
            1_500_000_000i64..2_000_000_000,
            0i64..200_000,
            prop::collection::vec((0..7usize, 0..5usize, 1u64..100_000), 1..6),
            prop::collection::vec(0..7usize, 0..4),
            prop::collection::vec(any::<u16>(), 0..5),
            0..8usize,
            "[ -~]{0,60}",
            10_000u32..99_999,
        ),
    )
        .prop_map(
            |(
                (own4, own6, hostname, user, ext, offender),
                (first, span, counts, transports, ports, template, junk, tid),
            )| Case {
                own4: Ipv4Addr::from(own4),
                own6: Ipv6Addr::from(own6),
                hostname,
                user,
                ext,
                offender,
                first,
                span,
                counts,
                transports,
                ports,
                template,
                junk,
                tid,
            },
        )
}

/// A raw evidence line of one of the shapes the detector reads, carrying the identifiers.
fn line(c: &Case) -> String {
    let off = match c.offender {
        IpAddr::V4(a) => format!("{a}:5060"),
        IpAddr::V6(a) => format!("[{a}]:5060"),
    };
    let (h, u, e, o4, o6, j, t) = (&c.hostname, &c.user, &c.ext, c.own4, c.own6, &c.junk, c.tid);
    let d = "[2024-05-02 10:11:12]";
    match c.template {
        0 => format!("{d} NOTICE[{t}] chan_sip.c: Registration from '\"{e}\" <sip:{e}@{o4}>' failed for '{off}' - Wrong password"),
        1 => format!("{d} SECURITY[{t}] res_security_log.c: SecurityEvent=\"InvalidPassword\",Severity=\"Error\",Service=\"PJSIP\",AccountID=\"{u}\",SessionID=\"{j}\",LocalAddress=\"IPV6/TCP/{o6}/5061\",RemoteAddress=\"IPV4/TCP/{off}\""),
        2 => format!("{d} NOTICE[{t}] res_pjsip/pjsip_distributor.c: Request 'REGISTER' from '<sip:{u}@{h}>' failed for '{off}' (callid: {j}) - No matching endpoint found"),
        3 => format!("{d} NOTICE[{t}][C-0000] chan_sip.c: Call from '{u}' ({off}) to extension '{e}' rejected because extension not found in context 'from-{u}'."),
        4 => format!("{d} NOTICE[{t}] manager.c: {off} failed to authenticate as '{u}'"),
        5 => format!("{d} VERBOSE[{t}] pbx.c: Executing [{e}@from-internal:1] Dial(\"PJSIP/{e}-0001\", \"PJSIP/{e}@{h},30\") in new stack"),
        6 => format!("May  2 10:11:19 {h} asterisk[{t}]: NOTICE[{t}]: chan_sip.c:29080 Registration from '<sip:{u}@{o4}>' failed for '{off}' - No matching peer found {j} {u}@{h} sips:{e}@{o6}"),
        _ => format!("{j} {u}@{o4} <sip:{e}@{h}> {o6} {h} '{j}"),
    }
}

fn offence(c: &Case) -> Offence {
    let mut o = Offence::new(c.offender, c.first, c.first + c.span);
    for (rule, kind, n) in &c.counts {
        o.add(KINDS[*kind], RULES[*rule], *n);
    }
    for t in &c.transports {
        o.transport(TRANSPORTS[*t]);
    }
    for p in &c.ports {
        o.port(*p);
    }
    o.example = Some(line(c));
    o
}

/// Runs of ASCII digits.
fn digit_tokens(s: &str) -> Vec<String> {
    s.split(|ch: char| !ch.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// Identifiers that must not appear in `text` (case-insensitive for the host name).
fn assert_clean(
    text: &str,
    c: &Case,
    allowed_digits: Option<&[String]>,
) -> Result<(), TestCaseError> {
    let lower = text.to_ascii_lowercase();
    prop_assert!(
        !text.contains(&c.own4.to_string()),
        "own IPv4 {} in {text}",
        c.own4
    );
    prop_assert!(
        !lower.contains(&c.own6.to_string()),
        "own IPv6 {} in {text}",
        c.own6
    );
    prop_assert!(
        !lower.contains(&c.hostname),
        "host name {} in {text}",
        c.hostname
    );
    prop_assert!(!text.contains(&c.user), "user {} in {text}", c.user);
    prop_assert!(
        !lower.contains("sip:") || !lower.contains("@"),
        "a SIP URI in {text}"
    );
    match allowed_digits {
        // A structured text: every number in it is one sipban computed.
        Some(allowed) => {
            for t in digit_tokens(text) {
                prop_assert!(allowed.contains(&t), "number {t} in {text}");
            }
        }
        None => {
            prop_assert!(
                !digit_tokens(text).contains(&c.ext),
                "extension {} in {text}",
                c.ext
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(crate::common::prop::regressions_beside_source(ProptestConfig { cases: 512, ..ProptestConfig::default() }))]

    #[test]
    fn reports_never_leak_this_hosts_identifiers(c in case()) {
        let offender_text = c.offender.to_string();
        let own = [IpAddr::V4(c.own4), IpAddr::V6(c.own6)];
        prop_assume!(!own.contains(&c.offender));
        // The identifiers must not be fixed words or numbers of any text by themselves.
        prop_assume!(!offender_text.contains(&c.own4.to_string()));
        prop_assume!(!offender_text.to_ascii_lowercase().contains(&c.hostname));
        prop_assume!(!offender_text.contains(&c.user));
        prop_assume!(!c.junk.contains(&c.user) && !c.junk.to_ascii_lowercase().contains(&c.hostname));
        prop_assume!(!c.hostname.contains(&c.user) && !c.user.contains(&c.hostname));
        let template_numbers = [c.tid.to_string(), "2024".into(), "5060".into(), "5061".into(), "29080".into(), "0001".into()];
        prop_assume!(!template_numbers.contains(&c.ext) && !digit_tokens(&c.junk).contains(&c.ext));
        prop_assume!(!digit_tokens(&offender_text).contains(&c.ext));

        let host = HostIdentity::new(own.to_vec(), &[&c.hostname]);
        let o = offence(&c);
        let raw: RawReport = sipban::config::parse_yaml(
            "abuseipdb: {include_udp: true}\nwebhook: {url: 'https://collector.example/hook'}\n",
            "t",
        ).unwrap();
        let settings = sipban::config::report::resolve(raw, std::path::Path::new("/")).unwrap();
        let cand = report::select_with(&settings, std::slice::from_ref(&o), &|_| true, &host);
        prop_assert_eq!(cand.len(), 1);
        let cand = &cand[0];

        // Numbers a structured text may hold: the count, ports, times, the offender.
        let mut allowed: Vec<String> = vec![o.detail.events.to_string()];
        allowed.extend(o.detail.ports.iter().map(u16::to_string));
        allowed.extend(digit_tokens(&comment::iso8601(o.first)));
        allowed.extend(digit_tokens(&comment::iso8601(o.last)));
        allowed.extend(digit_tokens(&offender_text));
        allowed.extend(["2".to_string()]); // "SIP/IAX2"

        // The AbuseIPDB comment and its bulk CSV line.
        prop_assert!(cand.comment.len() <= 1024);
        prop_assert!(!cand.comment.contains(['"', '\\', '\n', '\r']));
        assert_clean(&cand.comment, &c, Some(&allowed))?;
        let r = abuseipdb::Report {
            ip: cand.ip,
            categories: cand.categories.clone(),
            timestamp: cand.first,
            comment: cand.comment.clone(),
        };
        let csv_line = abuseipdb::csv_line(&r);
        let mut csv_allowed = allowed.clone();
        csv_allowed.extend(cand.categories.iter().map(u8::to_string));
        assert_clean(&csv_line, &c, Some(&csv_allowed))?;
        // The first evidence time is in it.
        let first_seen = format!("first seen {}", comment::iso8601(o.first));
        prop_assert!(cand.comment.contains(&first_seen));

        // The webhook document.
        let item = Item {
            id: 1,
            sink: "webhook".into(),
            ip: cand.ip,
            first: cand.first,
            last: cand.last,
            detail: cand.detail.clone(),
            enqueued: 0,
            attempts: 0,
            next_attempt: 0,
            claimed: None,
            last_error: None,
        };
        let doc = report::webhook::document(&[item], c.first).to_string();
        let mut doc_allowed = csv_allowed.clone();
        doc_allowed.extend([
            c.first.to_string(),
            (c.first + c.span).to_string(),

            "1".into(),
        ]);
        doc_allowed.extend(digit_tokens(env!("CARGO_PKG_VERSION")));
        assert_clean(&doc, &c, Some(&doc_allowed))?;

        // The scrubber on the raw line itself (attacker text and all).
        let scrubbed = comment::scrub(o.example.as_deref().unwrap_or(""), &host, c.offender);
        prop_assert!(scrubbed.len() <= 1024);
        assert_clean(&scrubbed, &c, None)?;
    }
}
