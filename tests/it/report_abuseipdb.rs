//! The report queue against local HTTPS stand-ins for AbuseIPDB and a webhook collector
//! (`report_common`): the documented success, 422, 429 (per-address and quota, with and
//! without `Retry-After`), 401 and bulk answers; the daily limit across runs; the age limit;
//! network errors; the webhook's batches. Real SQLite, real HTTPS with certificate checks on
//! (the test CA is given as `ca_file`). No timing assertions: time is the `now` passed in,
//! which the stand-in's clock follows.

use crate::common::https::{ca_file, HttpsServer, Reply};
use crate::report_common::{FakeAbuseipdb, FakeCollector, KEY};
use sipban::report::comment::HostIdentity;
use sipban::report::queue::{self, ABUSEIPDB, WEBHOOK};
use sipban::report::{
    self, Offence, OffenceKind, RawReport, ReportRun, ReportSettings, SinkStatus, Transport,
};
use sipban::store::Store;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// 2024-05-01T10:00:00Z.
const T0: i64 = 1_714_557_600;
const DAY: i64 = 86_400;

struct Env {
    dir: tempfile::TempDir,
    key_file: PathBuf,
}

fn env() -> Env {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("abuseipdb.key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    Env { dir, key_file }
}

impl Env {
    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn store(&self) -> Store {
        Store::open(&self.state_dir()).unwrap()
    }
}

fn settings_yaml(yaml: &str) -> ReportSettings {
    let raw: RawReport = sipban::config::parse_yaml(yaml, "test").unwrap();
    let mut s = sipban::config::report::resolve(raw, Path::new("/")).unwrap();
    if let Some(a) = s.abuseipdb.as_mut() {
        a.pace = Duration::from_millis(1);
        a.timeout = Duration::from_secs(10);
    }
    if let Some(w) = s.webhook.as_mut() {
        w.pace = Duration::from_millis(1);
        w.timeout = Duration::from_secs(10);
    }
    s
}

fn abuseipdb_settings(server: &HttpsServer, e: &Env, extra: &str) -> ReportSettings {
    settings_yaml(&format!(
        "abuseipdb:\n  key_file: {}\n  base_url: {}\n  ca_file: {}\n{extra}",
        e.key_file.display(),
        server.base_url(),
        ca_file().display()
    ))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `45.0.x.y` for `i`.
fn addr(i: usize) -> String {
    format!("45.0.{}.{}", i / 250, i % 250 + 1)
}

/// An offence of failed SIP authentications over `transport`, first seen at `first`.
fn offence(address: &str, first: i64, transport: Transport) -> Offence {
    let mut o = Offence::new(ip(address), first, first + 60);
    o.add(OffenceKind::SipAuth, "security_event", 6)
        .transport(transport);
    o
}

/// Queue offences as a run's commit does (selection with everything in the sets).
fn enqueue(store: &mut Store, settings: &ReportSettings, offences: &[Offence], now: i64) {
    let host = HostIdentity::new(vec![ip("203.0.113.5")], &["pbx.example.org"]);
    let c = report::select_with(settings, offences, &|_| true, &host);
    store
        .transaction(|tx| queue::enqueue_all(&tx.report_queue(), settings, &c, now))
        .unwrap();
}

fn drain(settings: &ReportSettings, store: &mut Store, now: i64) -> ReportRun {
    rt().block_on(report::drain(settings, store, Vec::new(), now))
}

fn sink<'a>(run: &'a ReportRun, name: &str) -> &'a report::SinkRun {
    run.sinks.iter().find(|s| s.sink == name).unwrap()
}

fn queued(store: &Store, sink: &str) -> Vec<String> {
    store
        .report_queue()
        .items::<sipban::report::Detail>(sink, 100_000)
        .unwrap()
        .into_iter()
        .map(|i| i.ip.to_string())
        .collect()
}

#[test]
fn single_reports_carry_the_documented_fields() {
    let e = env();
    let fake = FakeAbuseipdb::new(T0);
    let server = crate::report_common::serve(&fake);
    let s = abuseipdb_settings(&server, &e, "");
    let mut store = e.store();
    let offences = [
        offence("45.0.0.1", T0 - 600, Transport::Tcp),
        offence("45.0.0.2", T0 - 300, Transport::Tls),
        offence("2a01:4f8::7", T0 - 100, Transport::Wss),
    ];
    enqueue(&mut store, &s, &offences, T0);
    let run = drain(&s, &mut store, T0);
    let a = sink(&run, ABUSEIPDB);
    assert_eq!((a.sent, a.requests, a.bulk_uploads), (3, 3, 0), "{run}");
    assert_eq!(a.status, SinkStatus::Ok);
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    let acc = fake.accepted();
    assert_eq!(
        acc.iter().map(|a| a.ip.as_str()).collect::<Vec<_>>(),
        ["45.0.0.1", "45.0.0.2", "2a01:4f8::7"],
        "oldest evidence first"
    );
    for (a, o) in acc.iter().zip(&offences) {
        assert_eq!(a.categories, [8, 18]);
        assert_eq!(a.timestamp, report::comment::iso8601(o.first));
        assert!(a.comment.len() <= 1024, "{}", a.comment);
        assert!(
            a.comment.contains("failed SIP/IAX2 authentications"),
            "{}",
            a.comment
        );
        assert!(
            a.comment
                .contains(&format!("first seen {}", report::comment::iso8601(o.first))),
            "{}",
            a.comment
        );
    }
    // The documented request shape.
    let reqs = server.requests();
    for r in &reqs {
        assert_eq!(r.path, "/api/v2/report");
        assert_eq!(r.header("key"), Some(KEY));
        assert_eq!(r.header("accept"), Some("application/json"));
        assert_eq!(
            r.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
    }
    assert!(reqs[2].body_text().contains("ip=2a01%3A4f8%3A%3A7"));
    assert!(queued(&store, ABUSEIPDB).is_empty());
    let day = store
        .report_queue()
        .day_use(ABUSEIPDB, queue::day_of(T0))
        .unwrap();
    assert_eq!((day.used, day.reports), (3, 3));
    // Nothing is due again: the next run sends nothing.
    let run = drain(&s, &mut store, T0 + 60);
    assert_eq!(sink(&run, ABUSEIPDB).requests, 0);
}

#[test]
fn a_422_drops_the_item_with_its_reason_and_the_rest_goes_on() {
    let e = env();
    let fake = FakeAbuseipdb::new(T0);
    fake.refuse("45.0.0.2");
    let server = crate::report_common::serve(&fake);
    let s = abuseipdb_settings(&server, &e, "");
    let mut store = e.store();
    let offences: Vec<Offence> = (1..=3)
        .map(|i| offence(&format!("45.0.0.{i}"), T0 - 100 + i as i64, Transport::Tcp))
        .collect();
    enqueue(&mut store, &s, &offences, T0);
    let run = drain(&s, &mut store, T0);
    let a = sink(&run, ABUSEIPDB);
    assert_eq!((a.sent, a.refused, a.retry), (2, 1, 0), "{run}");
    assert_eq!(fake.accepted_ips(), ["45.0.0.1", "45.0.0.3"]);
    assert!(queued(&store, ABUSEIPDB).is_empty(), "dropped, not kept");
    let ev = store.report_queue().events(10).unwrap();
    assert_eq!(ev[0].what, "refused");
    assert_eq!(ev[0].ip.as_deref(), Some("45.0.0.2"));
    assert!(
        ev[0]
            .detail
            .contains("HTTP 422: The ip address must be a valid"),
        "{ev:?}"
    );
    // Its address is not held back by the per-IP interval: the claim was given back.
    enqueue(
        &mut store,
        &s,
        &[offence("45.0.0.2", T0, Transport::Tcp)],
        T0 + 10,
    );
    let st = store
        .report_queue()
        .stats(ABUSEIPDB, T0 + 10, Some(86_400))
        .unwrap();
    assert_eq!((st.total, st.due), (1, 1));
}

#[test]
fn the_15_minute_refusal_keeps_the_item_and_it_is_sent_after_the_window() {
    let e = env();
    let fake = FakeAbuseipdb::new(T0);
    // Someone else with this key reported 45.0.0.2 a minute ago.
    fake.reported_at("45.0.0.2", T0 - 60);
    let server = crate::report_common::serve(&fake);
    let s = abuseipdb_settings(&server, &e, "");
    let mut store = e.store();
    let offences: Vec<Offence> = (1..=3)
        .map(|i| offence(&format!("45.0.0.{i}"), T0 - 100 + i as i64, Transport::Tcp))
        .collect();
    enqueue(&mut store, &s, &offences, T0);
    let run = drain(&s, &mut store, T0);
    let a = sink(&run, ABUSEIPDB);
    assert_eq!((a.sent, a.retry, a.refused), (2, 1, 0), "{run}");
    assert_eq!(
        a.status,
        SinkStatus::Ok,
        "a per-address refusal does not stop the run"
    );
    assert_eq!(queued(&store, ABUSEIPDB), ["45.0.0.2"]);
    let item = &store
        .report_queue()
        .items::<sipban::report::Detail>(ABUSEIPDB, 1)
        .unwrap()[0];
    assert_eq!(item.next_attempt, T0 + 900, "waits the 15 minutes");
    assert_eq!(item.claimed, None);
    // Ten minutes later it is not due yet; after the window it goes.
    fake.set_clock(T0 + 600);
    assert_eq!(
        sink(&drain(&s, &mut store, T0 + 600), ABUSEIPDB).requests,
        0
    );
    fake.set_clock(T0 + 901);
    let run = drain(&s, &mut store, T0 + 901);
    assert_eq!(sink(&run, ABUSEIPDB).sent, 1, "{run}");
    assert_eq!(fake.tried()["45.0.0.2"], 2);
    assert!(queued(&store, ABUSEIPDB).is_empty());
}

#[test]
fn a_quota_429_with_retry_after_pauses_the_sink_and_keeps_everything() {
    let e = env();
    let fake = FakeAbuseipdb::new(T0);
    *fake.quota.lock().unwrap() = 2;
    let server = crate::report_common::serve(&fake);
    let s = abuseipdb_settings(&server, &e, "");
    let mut store = e.store();
    let offences: Vec<Offence> = (0..5)
        .map(|i| offence(&addr(i), T0 - 100 + i as i64, Transport::Tcp))
        .collect();
    enqueue(&mut store, &s, &offences, T0);
    let run = drain(&s, &mut store, T0);
    let a = sink(&run, ABUSEIPDB);
    assert_eq!((a.sent, a.requests, a.retry), (2, 3, 1), "{run}");
    assert!(
        matches!(a.status, SinkStatus::RateLimited(ref d) if d.contains("Daily rate limit")),
        "{run}"
    );
    assert!(
        run.errors.iter().any(|e| e.contains("rate limited")),
        "{:?}",
        run.errors
    );
    assert_eq!(queued(&store, ABUSEIPDB).len(), 3);
    let until = (T0 / DAY + 1) * DAY;
    assert_eq!(
        store
            .report_queue()
            .state_int("abuseipdb.paused_until")
            .unwrap(),
        Some(until),
        "Retry-After is honoured"
    );
    // Within the pause: no request at all.
    let before = server.request_count();
    let run = drain(&s, &mut store, T0 + 3600);
    assert!(matches!(
        sink(&run, ABUSEIPDB).status,
        SinkStatus::RateLimited(_)
    ));
    assert_eq!(server.request_count(), before);
    // After it (the next day): the rest goes.
    fake.set_clock(until + 1);
    let run = drain(&s, &mut store, until + 1);
    assert_eq!(sink(&run, ABUSEIPDB).sent, 2, "quota 2 again");
    fake.set_clock(until + 2 * DAY);
    drain(&s, &mut store, until + 2 * DAY);
    assert_eq!(fake.accepted().len(), 5);
    assert!(queued(&store, ABUSEIPDB).is_empty());
}

#[test]
fn a_429_without_retry_after_backs_off() {
    let e = env();
    let fake = FakeAbuseipdb::new(T0);
    fake.fault(1, crate::report_common::rate_limited());
    let server = crate::report_common::serve(&fake);
    let s = abuseipdb_settings(&server, &e, "");
    let mut store = e.store();
    enqueue(
        &mut store,
        &s,
        &[
            offence("45.0.0.1", T0 - 10, Transport::Tcp),
            offence("45.0.0.2", T0 - 5, Transport::Tcp),
        ],
        T0,
    );
    let run = drain(&s, &mut store, T0);
    let a = sink(&run, ABUSEIPDB);
    assert_eq!((a.sent, a.requests), (0, 1), "stops at the 429: {run}");
    let paused = store
        .report_queue()
        .state_int("abuseipdb.paused_until")
        .unwrap()
        .unwrap();
    assert_eq!(paused, T0 + 60, "first backoff step");
    let item = &store
        .report_queue()
        .items::<sipban::report::Detail>(ABUSEIPDB, 1)
        .unwrap()[0];
    assert_eq!((item.attempts, item.next_attempt), (1, T0 + 60));
    // A second 429 in a row doubles the wait.
    fake.fault(2, crate::report_common::rate_limited());
    drain(&s, &mut store, T0 + 60);
    assert_eq!(
        store
            .report_queue()
            .state_int("abuseipdb.paused_until")
            .unwrap(),
        Some(T0 + 60 + 120)
    );
    let run = drain(&s, &mut store, T0 + 180);
    assert_eq!(sink(&run, ABUSEIPDB).sent, 2, "{run}");
}

#[test]
fn network_errors_keep_items_and_unknown_fates_wait_for_the_interval() {
    let e = env();
    let fake = FakeAbuseipdb::new(T0);
    // The first request: the connection drops after the request was read (fate unknown).
    fake.fault(1, Reply::Drop);
    let server = crate::report_common::serve(&fake);
    let s = abuseipdb_settings(&server, &e, "  min_interval_per_ip: 1h\n");
    let mut store = e.store();
    enqueue(
        &mut store,
        &s,
        &[
            offence("45.0.0.1", T0 - 10, Transport::Tcp),
            offence("45.0.0.2", T0 - 5, Transport::Tcp),
        ],
        T0,
    );
    let run = drain(&s, &mut store, T0);
    let a = sink(&run, ABUSEIPDB);
    assert_eq!((a.sent, a.requests, a.retry), (0, 1, 1), "{run}");
    assert!(
        matches!(a.status, SinkStatus::Failed(ref d) if d.contains("may have arrived")),
        "{run}"
    );
    let st = store
        .report_queue()
        .stats(ABUSEIPDB, T0, Some(3600))
        .unwrap();
    assert_eq!((st.total, st.in_flight, st.waiting_interval), (2, 1, 1));
    // After the backoff the other item goes; the unknown one waits for the interval.
    let run = drain(&s, &mut store, T0 + 60);
    assert_eq!(sink(&run, ABUSEIPDB).sent, 1);
    assert_eq!(fake.accepted_ips(), ["45.0.0.2"]);
    fake.set_clock(T0 + 3600);
    let run = drain(&s, &mut store, T0 + 3600);
    assert_eq!(sink(&run, ABUSEIPDB).sent, 1, "{run}");
    assert!(queued(&store, ABUSEIPDB).is_empty());

    // A server that cannot be reached: the request never left, the claim is given back.
    let port = server.port();
    drop(server);
    enqueue(
        &mut store,
        &s,
        &[offence("45.0.0.3", T0 + 3600, Transport::Tcp)],
        T0 + 3600,
    );
    let mut s2 = s.clone();
    s2.abuseipdb.as_mut().unwrap().base_url = format!("https://localhost:{port}");
    let run = drain(&s2, &mut store, T0 + 3700);
    let a = sink(&run, ABUSEIPDB);
    assert!(matches!(a.status, SinkStatus::Failed(_)), "{run}");
    let st = store
        .report_queue()
        .stats(ABUSEIPDB, T0 + 3760, Some(3600))
        .unwrap();
    assert_eq!(
        (st.total, st.due, st.in_flight),
        (1, 1, 0),
        "due again after the backoff"
    );
}

#[test]
fn the_daily_limit_holds_across_runs_and_the_rest_waits_for_the_next_day() {
    let e = env();
    let fake = FakeAbuseipdb::new(T0);
    let server = crate::report_common::serve(&fake);
    let s = abuseipdb_settings(&server, &e, "  daily_limit: 5\n");
    let mut store = e.store();
    let offences: Vec<Offence> = (0..12)
        .map(|i| offence(&addr(i), T0 - 100 + i as i64, Transport::Tcp))
        .collect();
    // Four items now, four more at each of two later runs the same day.
    for run in 0..3 {
        let now = T0 + run * 3600;
        fake.set_clock(now);
        let batch = &offences[run as usize * 4..run as usize * 4 + 4];
        enqueue(&mut store, &s, batch, now);
        let r = drain(&s, &mut store, now);
        let a = sink(&r, ABUSEIPDB);
        assert!(a.used_today.unwrap() <= 5, "{r}");
        if run > 0 {
            assert_eq!(a.status, SinkStatus::DailyLimit, "{r}");
        }
    }
    assert_eq!(fake.accepted().len(), 5, "the limit holds over three runs");
    assert_eq!(queued(&store, ABUSEIPDB).len(), 7);
    // The next UTC day: five more, then the last two the day after.
    let next = (T0 / DAY + 1) * DAY + 60;
    fake.set_clock(next);
    let r = drain(&s, &mut store, next);
    assert_eq!(sink(&r, ABUSEIPDB).sent, 5, "{r}");
    fake.set_clock(next + DAY);
    drain(&s, &mut store, next + DAY);
    let mut got = fake.accepted_ips();
    got.sort();
    let mut want: Vec<String> = (0..12).map(addr).collect();
    want.sort();
    assert_eq!(got, want, "each sent exactly once");
}

#[test]
fn a_backlog_above_the_threshold_goes_as_one_bulk_csv() {
    let e = env();
    let fake = FakeAbuseipdb::new(T0);
    fake.reported_at(&addr(3), T0 - 30); // the 15-minute refusal, as a bulk row
    fake.bulk_invalid(&addr(7), "Invalid Category");
    let server = crate::report_common::serve(&fake);
    let mut s = abuseipdb_settings(&server, &e, "");
    s.abuseipdb.as_mut().unwrap().bulk_threshold = 10;
    let mut store = e.store();
    let offences: Vec<Offence> = (0..30)
        .map(|i| offence(&addr(i), T0 - 100 + i as i64, Transport::Tcp))
        .collect();
    enqueue(&mut store, &s, &offences, T0);
    let run = drain(&s, &mut store, T0);
    let a = sink(&run, ABUSEIPDB);
    assert_eq!(
        (a.requests, a.bulk_uploads, a.sent, a.retry, a.refused),
        (1, 1, 28, 1, 1),
        "{run}"
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/api/v2/bulk-report");
    assert!(reqs[0]
        .header("content-type")
        .unwrap()
        .starts_with("multipart/form-data; boundary="));
    let csv = crate::report_common::csv_part(&reqs[0]).unwrap();
    let rows = crate::report_common::parse_csv(&csv);
    assert_eq!(rows[0], ["IP", "Categories", "ReportDate", "Comment"]);
    assert_eq!(rows.len(), 31);
    assert_eq!(rows[1][1], "8,18");
    assert!(fake.accepted().iter().all(|a| a.bulk));
    assert_eq!(queued(&store, ABUSEIPDB), [addr(3)]);
    let day = store
        .report_queue()
        .day_use(ABUSEIPDB, queue::day_of(T0))
        .unwrap();
    assert_eq!((day.used, day.bulk, day.reports), (30, 1, 28));
    let ev = store.report_queue().events(10).unwrap();
    assert!(
        ev.iter()
            .any(|e| e.what == "refused" && e.detail.contains("Invalid Category")),
        "{ev:?}"
    );
    // The duplicate row goes later, as a single report.
    fake.set_clock(T0 + 901);
    let run = drain(&s, &mut store, T0 + 901);
    assert_eq!(sink(&run, ABUSEIPDB).sent, 1, "{run}");
    assert!(!fake.accepted().last().unwrap().bulk);
}

#[test]
fn a_refused_bulk_file_falls_back_to_single_reports() {
    let e = env();
    let fake = FakeAbuseipdb::new(T0);
    fake.fault(
        1,
        Reply::json(
            422,
            r#"{"errors":[{"detail":"The csv field is required.","status":422,"source":{"parameter":"csv"}}]}"#,
        ),
    );
    let server = crate::report_common::serve(&fake);
    let mut s = abuseipdb_settings(&server, &e, "");
    s.abuseipdb.as_mut().unwrap().bulk_threshold = 2;
    let mut store = e.store();
    let offences: Vec<Offence> = (0..4)
        .map(|i| offence(&addr(i), T0 - 100 + i as i64, Transport::Tcp))
        .collect();
    enqueue(&mut store, &s, &offences, T0);
    let run = drain(&s, &mut store, T0);
    let a = sink(&run, ABUSEIPDB);
    assert_eq!((a.requests, a.sent, a.refused), (5, 4, 0), "{run}");
    assert!(fake.accepted().iter().all(|a| !a.bulk));
    let day = store
        .report_queue()
        .day_use(ABUSEIPDB, queue::day_of(T0))
        .unwrap();
    assert_eq!(day.used, 8, "the refused file's rows count too");
}

#[test]
fn items_older_than_60_days_are_dropped_and_counted() {
    let e = env();
    let fake = FakeAbuseipdb::new(T0);
    let server = crate::report_common::serve(&fake);
    let s = abuseipdb_settings(&server, &e, "");
    let mut store = e.store();
    enqueue(
        &mut store,
        &s,
        &[
            offence("45.0.0.1", T0 - 61 * DAY, Transport::Tcp),
            offence("45.0.0.2", T0 - 59 * DAY, Transport::Tcp),
        ],
        T0 - 59 * DAY,
    );
    let run = drain(&s, &mut store, T0);
    let a = sink(&run, ABUSEIPDB);
    assert_eq!((a.expired, a.sent), (1, 1), "{run}");
    assert_eq!(fake.accepted_ips(), ["45.0.0.2"]);
    assert_eq!(
        store
            .report_queue()
            .state_int("abuseipdb.expired_total")
            .unwrap(),
        Some(1)
    );
}

#[test]
fn a_refused_key_keeps_the_queue_and_is_never_printed() {
    let e = env();
    std::fs::write(&e.key_file, "not-the-key-0123456789\n").unwrap();
    let fake = FakeAbuseipdb::new(T0);
    let server = crate::report_common::serve(&fake);
    let s = abuseipdb_settings(&server, &e, "");
    let mut store = e.store();
    enqueue(
        &mut store,
        &s,
        &[offence("45.0.0.1", T0, Transport::Tcp)],
        T0,
    );
    let run = drain(&s, &mut store, T0);
    let a = sink(&run, ABUSEIPDB);
    assert!(
        matches!(a.status, SinkStatus::Unauthorized(ref d) if d.contains("APIv2")),
        "{run}"
    );
    assert_eq!(queued(&store, ABUSEIPDB).len(), 1);
    let shown = format!(
        "{run}{:?}{}",
        run.errors,
        serde_json::to_string(&run).unwrap()
    );
    assert!(!shown.contains("not-the-key-0123456789"), "{shown}");
    // A missing key file names the file and the variable.
    std::fs::remove_file(&e.key_file).unwrap();
    let run = drain(&s, &mut store, T0 + 10_000);
    assert!(
        run.errors
            .iter()
            .any(|m| m.contains("abuseipdb.key") && m.contains("SIPBAN_ABUSEIPDB_KEY")),
        "{:?}",
        run.errors
    );
}

// ---------------------------------------------------------------------------------------------
// Webhook.

const TOKEN: &str = "wh-t0ken-5ecret-0123";

fn webhook_settings(server: &HttpsServer, extra: &str) -> ReportSettings {
    settings_yaml(&format!(
        "webhook:\n  url: {}/hook\n  headers: {{ Authorization: \"Bearer {TOKEN}\" }}\n  ca_file: {}\n{extra}",
        server.base_url(),
        ca_file().display()
    ))
}

#[test]
fn the_webhook_gets_one_json_document_per_batch() {
    let e = env();
    let c = FakeCollector::new(TOKEN);
    let server = crate::report_common::serve_collector(&c);
    let mut s = webhook_settings(&server, "");
    s.webhook.as_mut().unwrap().batch = 4;
    let mut store = e.store();
    // UDP-only offenders go to the webhook (AbuseIPDB's policy is AbuseIPDB's).
    let offences: Vec<Offence> = (0..10)
        .map(|i| offence(&addr(i), T0 - 100 + i as i64, Transport::Udp))
        .collect();
    enqueue(&mut store, &s, &offences, T0);
    let run = drain(&s, &mut store, T0);
    let w = sink(&run, WEBHOOK);
    assert_eq!((w.requests, w.sent), (3, 10), "{run}");
    let docs = c.docs.lock().unwrap().clone();
    assert_eq!(docs.len(), 3);
    let r = &docs[0]["reports"][0];
    assert_eq!(docs[0]["sipban_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(r["address"], addr(0));
    assert_eq!(r["first_seen"], report::comment::iso8601(T0 - 100));
    assert_eq!(r["last_seen_unix"], T0 - 40);
    assert_eq!(r["kinds"], serde_json::json!(["sip_auth"]));
    assert_eq!(r["events"], 6);
    assert_eq!(r["rules"], serde_json::json!(["security_event"]));
    assert_eq!(r["transports"], serde_json::json!(["udp"]));
    let mut got = c.addresses();
    got.sort();
    let mut want: Vec<String> = (0..10).map(addr).collect();
    want.sort();
    assert_eq!(got, want);
    assert!(queued(&store, WEBHOOK).is_empty());
}

#[test]
fn the_webhook_keeps_on_429_and_5xx_and_drops_on_422() {
    let e = env();
    let c = FakeCollector::new(TOKEN);
    c.script.lock().unwrap().extend([
        Reply::Full {
            status: 429,
            headers: vec![("Retry-After".into(), "120".into())],
            body: Vec::new(),
            content_length: true,
        },
        Reply::json(503, "{}"),
        Reply::json(422, r#"{"error":"schema"}"#),
    ]);
    let server = crate::report_common::serve_collector(&c);
    let s = webhook_settings(&server, "");
    let mut store = e.store();
    enqueue(
        &mut store,
        &s,
        &[offence("45.0.0.1", T0, Transport::Tcp)],
        T0,
    );
    let run = drain(&s, &mut store, T0);
    assert!(
        matches!(sink(&run, WEBHOOK).status, SinkStatus::RateLimited(_)),
        "{run}"
    );
    assert_eq!(queued(&store, WEBHOOK).len(), 1);
    let run = drain(&s, &mut store, T0 + 60);
    assert_eq!(sink(&run, WEBHOOK).requests, 0, "paused for Retry-After");
    let run = drain(&s, &mut store, T0 + 120);
    assert!(
        matches!(sink(&run, WEBHOOK).status, SinkStatus::Failed(_)),
        "{run}"
    );
    assert_eq!(queued(&store, WEBHOOK).len(), 1);
    let run = drain(&s, &mut store, T0 + 1000);
    assert_eq!(sink(&run, WEBHOOK).refused, 1, "{run}");
    assert!(queued(&store, WEBHOOK).is_empty());
    let ev = store.report_queue().events(10).unwrap();
    assert!(ev[0].detail.contains("HTTP 422"), "{ev:?}");
    // No header value anywhere.
    let all = format!("{run}{ev:?}");
    assert!(!all.contains(TOKEN));
}

#[test]
fn a_webhook_token_it_refuses_keeps_the_queue() {
    let e = env();
    let c = FakeCollector::new("other-token");
    let server = crate::report_common::serve_collector(&c);
    let s = webhook_settings(&server, "");
    let mut store = e.store();
    enqueue(
        &mut store,
        &s,
        &[offence("45.0.0.1", T0, Transport::Tcp)],
        T0,
    );
    let run = drain(&s, &mut store, T0);
    assert!(
        matches!(sink(&run, WEBHOOK).status, SinkStatus::Unauthorized(_)),
        "{run}"
    );
    assert_eq!(queued(&store, WEBHOOK).len(), 1);
    assert!(!format!("{run}{:?}", run.errors).contains(TOKEN));
}
