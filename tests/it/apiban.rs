//! The APIBAN source against a local HTTPS stand-in for apiban.org.
//!
//! The stand-in (`Fake`) reproduces APIBAN's documented answers: pages of 250 addresses, oldest
//! first, each with the `ID` of the next page; `400 {"ipaddress":["no new bans"],"ID":"none"}`
//! at the end; `403 {"ipaddress":"none","ID":"unauthorized"}` for a bad key and
//! `429 {"ipaddress":"rate limit exceeded","ID":"unauthorized"}` (a string `ipaddress`). Faults
//! are injected by request number. Certificate checks stay on: clients get the test CA through
//! `ca_file` (or `SSL_CERT_FILE`). The only timing assertion is the pacing property.

use crate::common::https::{ca_file, HttpsServer, Reply, Request};
use crate::common::rng::Rng;
use sipban::source::apiban::{
    self, ApiVersion, ApibanSettings, PullStatus, RawApiban, RefreshState, Secret, Target,
};
use sipban::store::Store;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "k3yT3stAPIBAN0123456789abcdefXYZ";
const FIRST_ID: &str = "100";

fn id_for(page: usize) -> String {
    if page == 0 {
        FIRST_ID.to_string()
    } else {
        (1_600_000_000 + page).to_string()
    }
}

fn page_of(id: &str) -> Option<usize> {
    if id == FIRST_ID {
        return Some(0);
    }
    id.parse::<usize>().ok()?.checked_sub(1_600_000_000)
}

/// `pages` pages of 250 distinct public addresses; `salt` changes which.
fn dataset(pages: usize, salt: u8) -> Vec<Vec<String>> {
    (0..pages)
        .map(|p| {
            (0..250)
                .map(|i| {
                    let n = p * 250 + i;
                    format!("198.{}.{}.{}", 18 + salt, n / 250 % 256, n % 250 + 1)
                })
                .collect()
        })
        .collect()
}

/// A stand-in for apiban.org.
struct Fake {
    key: String,
    pages: Mutex<Vec<Vec<String>>>,
    /// Faults by request number (1-based, counted over the server's life).
    faults: Mutex<HashMap<usize, Reply>>,
    served: Mutex<usize>,
    /// Answers to `check`, by address.
    listed: Mutex<BTreeSet<String>>,
}

impl Fake {
    fn new(pages: Vec<Vec<String>>) -> Arc<Fake> {
        Arc::new(Fake {
            key: KEY.to_string(),
            pages: Mutex::new(pages),
            faults: Mutex::new(HashMap::new()),
            served: Mutex::new(0),
            listed: Mutex::new(BTreeSet::new()),
        })
    }

    fn fault(&self, request: usize, reply: Reply) {
        self.faults.lock().unwrap().insert(request, reply);
    }

    fn set_pages(&self, pages: Vec<Vec<String>>) {
        *self.pages.lock().unwrap() = pages;
    }

    fn unauthorized() -> Reply {
        Reply::json(403, r#"{"ipaddress":"none","ID":"unauthorized"}"#)
    }

    fn handle(&self, req: &Request) -> Reply {
        let n = {
            let mut s = self.served.lock().unwrap();
            *s += 1;
            *s
        };
        if let Some(r) = self.faults.lock().unwrap().remove(&n) {
            return r;
        }
        // v2: POST /api/get|check with a Bearer key and a JSON body; v1: GET /api/KEY/...
        let (endpoint, arg) = if req.method == "POST" {
            if req.header("authorization") != Some(&format!("Bearer {}", self.key)) {
                return Fake::unauthorized();
            }
            let body = req.json().unwrap_or_default();
            match req.path.as_str() {
                "/api/get" => ("banned", body["id"].as_str().unwrap_or("").to_string()),
                "/api/check" => (
                    "check",
                    body["ipaddress"].as_str().unwrap_or("").to_string(),
                ),
                _ => return Reply::json(404, "{}"),
            }
        } else {
            let parts: Vec<&str> = req.path.split('/').collect();
            // ["", "api", KEY, "banned"|"check", ARG]
            if parts.len() != 5 || parts[1] != "api" {
                return Reply::json(404, "{}");
            }
            if parts[2] != self.key {
                return Fake::unauthorized();
            }
            match parts[3] {
                "banned" => ("banned", parts[4].to_string()),
                "check" => ("check", parts[4].to_string()),
                _ => return Reply::json(404, "{}"),
            }
        };
        if endpoint == "check" {
            return if self.listed.lock().unwrap().contains(&arg) {
                Reply::json(
                    200,
                    &format!(r#"{{"ipaddress":["{arg}"],"ID":"987654321"}}"#),
                )
            } else {
                Reply::json(400, r#"{"ipaddress":["not blocked"],"ID":"none"}"#)
            };
        }
        let pages = self.pages.lock().unwrap();
        match page_of(&arg) {
            Some(p) if p < pages.len() => Reply::json(
                200,
                &serde_json::json!({ "ipaddress": pages[p], "ID": id_for(p + 1) }).to_string(),
            ),
            _ => Reply::json(400, r#"{"ipaddress":["no new bans"],"ID":"none"}"#),
        }
    }
}

fn serve(fake: &Arc<Fake>) -> HttpsServer {
    let f = fake.clone();
    HttpsServer::start(move |req| f.handle(req))
}

/// Settings for the server: the test CA, a fast pace (tests that check pacing set their own).
fn settings_for(server: &HttpsServer, api: ApiVersion, key_file: &Path) -> ApibanSettings {
    let raw = RawApiban {
        key_file: Some(key_file.to_path_buf()),
        api: Some(api),
        base_url: Some(server.base_url()),
        ca_file: Some(ca_file()),
        requests_per_2min: Some(5),
        ..RawApiban::default()
    };
    let mut s = sipban::config::apiban::resolve(raw, Path::new("/")).unwrap();
    s.window = Duration::from_millis(50);
    s.timeout = Duration::from_secs(10);
    s
}

fn key() -> Secret {
    Secret::new(KEY, "the key file /etc/sipban/apiban.key")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn pull(settings: &ApibanSettings, store: &mut Store, now: i64) -> apiban::ApibanRun {
    rt().block_on(apiban::pull(settings, &key(), Target::Apply(store), now))
}

/// The APIBAN marks in `entries`: net → (first_seen, last_seen, expires).
fn marks(store: &Store) -> BTreeMap<String, (i64, i64, i64)> {
    let mut st = store
        .raw_connection_for_tests()
        .prepare("SELECT net, first_seen, last_seen, expires FROM entries WHERE source = 'apiban'")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn saved(store: &Store, key: &str) -> Option<String> {
    let state = store.apiban_state().ok()?;
    match key {
        "cursor" => state.cursor,
        "staging_cursor" => state.staging_cursor,
        other => panic!("no typed APIBAN state key {other}"),
    }
}

/// The ID each request asked for (v2 body or v1 path).
fn requested_ids(reqs: &[Request]) -> Vec<String> {
    reqs.iter()
        .map(|r| match r.json() {
            Some(b) => b["id"].as_str().unwrap_or("?").to_string(),
            None => r.path.rsplit('/').next().unwrap_or("?").to_string(),
        })
        .collect()
}

fn addresses(pages: &[Vec<String>]) -> BTreeSet<String> {
    pages.iter().flatten().cloned().collect()
}

struct Env {
    dir: tempfile::TempDir,
    key_file: PathBuf,
}

fn env() -> Env {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("apiban.key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o640)).unwrap();
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

const T0: i64 = 1_800_000_000;

#[test]
fn backlog_of_20_pages_with_a_429_after_page_7_resumes_at_page_8() {
    let e = env();
    let data = dataset(20, 0);
    let fake = Fake::new(data.clone());
    fake.fault(
        8,
        Reply::json(
            429,
            r#"{"ipaddress":"rate limit exceeded","ID":"unauthorized"}"#,
        ),
    );
    let server = serve(&fake);
    let s = settings_for(&server, ApiVersion::V2, &e.key_file);
    let mut store = e.store();

    let run = pull(&s, &mut store, T0);
    assert_eq!(run.status, PullStatus::RateLimited);
    assert_eq!(
        (run.requests, run.pages_fetched, run.pages_applied),
        (8, 7, 7)
    );
    assert!(run.error().unwrap().contains("429"));
    assert_eq!(server.request_count(), 8);
    let applied: BTreeSet<String> = marks(&store).into_keys().collect();
    assert_eq!(applied, addresses(&data[..7]));
    assert_eq!(saved(&store, "cursor"), Some(id_for(7)));

    let run = pull(&s, &mut store, T0 + 300);
    assert_eq!(run.status, PullStatus::CaughtUp);
    let reqs = server.requests();
    let second: Vec<String> = requested_ids(&reqs[8..]);
    let want: Vec<String> = (7..=20).map(id_for).collect();
    assert_eq!(
        second, want,
        "the second run fetches pages 8-20 and the end only"
    );
    assert_eq!(run.pages_fetched, 13);
    assert_eq!(run.sightings.len(), 13 * 250);
    let all = marks(&store);
    assert_eq!(
        all.keys().cloned().collect::<BTreeSet<_>>(),
        addresses(&data)
    );
    assert_eq!(all[&data[0][0]], (T0, T0, T0 + 7 * 86_400));
    assert_eq!(
        all[&data[19][0]],
        (T0 + 300, T0 + 300, T0 + 300 + 7 * 86_400)
    );
    assert_eq!(
        saved(&store, "cursor"),
        Some(id_for(20)),
        "the cursor is the last page's ID, never \"none\""
    );
    // Every request was an authenticated v2 POST with the set and the ID.
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/api/get");
        assert_eq!(r.json().unwrap()["set"], "sip");
    }
}

/// Any `n + 1` consecutive requests must span at least the window.
fn assert_paced(times: &[Instant], n: usize, window: Duration) {
    assert!(times.len() > n, "too few requests to judge the pace");
    for i in 0..times.len() - n {
        let span = times[i + n] - times[i];
        assert!(
            span >= window,
            "requests {i}..={} came within {span:?}, more than {n} in {window:?}",
            i + n
        );
    }
}

#[test]
fn pacing_never_exceeds_the_limit_across_a_backlog_and_back_to_back_runs() {
    let e = env();
    let fake = Fake::new(dataset(20, 0));
    // The first run is stopped by a 429 at request 9; the second starts at once.
    fake.fault(
        9,
        Reply::json(
            429,
            r#"{"ipaddress":"rate limit exceeded","ID":"unauthorized"}"#,
        ),
    );
    let server = serve(&fake);
    let mut s = settings_for(&server, ApiVersion::V2, &e.key_file);
    s.requests_per_2min = 5;
    // 420 ms between requests; the 5 % margin leaves 100 ms of slack per 5 requests for jitter.
    s.window = Duration::from_secs(2);
    let mut store = e.store();
    let first = pull(&s, &mut store, T0);
    assert_eq!(first.status, PullStatus::RateLimited);
    let second = pull(&s, &mut store, T0 + 1);
    assert_eq!(second.status, PullStatus::CaughtUp);
    let times: Vec<Instant> = server.requests().iter().map(|r| r.at).collect();
    assert_eq!(times.len(), 9 + 13);
    assert_paced(&times, 5, s.window);
}

#[test]
fn a_full_refresh_interrupted_at_page_10_changes_nothing_then_completes() {
    let e = env();
    let old = dataset(20, 0);
    let fake = Fake::new(old.clone());
    let server = serve(&fake);
    let s = settings_for(&server, ApiVersion::V2, &e.key_file);
    let mut store = e.store();
    assert_eq!(pull(&s, &mut store, T0).status, PullStatus::CaughtUp);
    let before = marks(&store);
    assert_eq!(before.len(), 5000);

    // A week later APIBAN lists a different set: pages 0-9 as before, pages 10-19 new.
    let mut new = old[..10].to_vec();
    new.extend(dataset(20, 1)[10..].iter().cloned());
    fake.set_pages(new.clone());
    let week = T0 + 7 * 86_400;
    let n = server.request_count();
    // The refresh fetches pages 1-9, and the request for page 10 dies.
    fake.fault(n + 10, Reply::Drop);
    let run = pull(&s, &mut store, week);
    assert!(
        matches!(run.status, PullStatus::Failed(_)),
        "{:?}",
        run.status
    );
    assert_eq!(run.refresh, RefreshState::InProgress);
    assert_eq!(run.pages_applied, 9);
    assert!(run.sightings.is_empty(), "staged pages are not live");
    let reqs = server.requests();
    assert_eq!(
        requested_ids(&reqs[n..])[0],
        FIRST_ID,
        "a refresh starts at ID 100"
    );
    assert_eq!(
        marks(&store),
        before,
        "an interrupted refresh changes nothing live"
    );
    assert_eq!(saved(&store, "cursor"), Some(id_for(20)));
    assert_eq!(saved(&store, "staging_cursor"), Some(id_for(9)));

    // The next run continues the staged backlog at page 10 and swaps.
    let n = server.request_count();
    let run = pull(&s, &mut store, week + 300);
    assert_eq!(run.status, PullStatus::CaughtUp);
    assert_eq!(
        run.refresh,
        RefreshState::Completed {
            entries: 5000,
            dropped: 2500
        }
    );
    let ids = requested_ids(&server.requests()[n..]);
    assert_eq!(ids, (9..=20).map(id_for).collect::<Vec<_>>());
    let after = marks(&store);
    assert_eq!(
        after.keys().cloned().collect::<BTreeSet<_>>(),
        addresses(&new)
    );
    // Listed before and again: first seen is kept; listed again: refreshed.
    let kept = &new[0][0];
    assert_eq!(after[kept].0, T0);
    assert_eq!(after[kept].1, week);
    assert_eq!(saved(&store, "cursor"), Some(id_for(20)));
    assert_eq!(saved(&store, "staging_cursor"), None);

    // Back to normal paging: one request, "no new bans".
    let n = server.request_count();
    let run = pull(&s, &mut store, week + 600);
    assert_eq!(run.status, PullStatus::CaughtUp);
    assert_eq!(run.refresh, RefreshState::NotDue);
    assert_eq!(requested_ids(&server.requests()[n..]), [id_for(20)]);
}

/// Run one pull against a fake with two pages, then a second pull whose first request gets
/// `reply`; return the second run, checking it changed neither entries nor cursor.
fn second_pull_fails(
    reply: Reply,
    api: ApiVersion,
    tweak: impl Fn(&mut ApibanSettings),
) -> apiban::ApibanRun {
    let e = env();
    let fake = Fake::new(dataset(2, 0));
    let server = serve(&fake);
    let mut s = settings_for(&server, api, &e.key_file);
    tweak(&mut s);
    let mut store = e.store();
    assert_eq!(pull(&s, &mut store, T0).status, PullStatus::CaughtUp);
    let before = marks(&store);
    let cursor = saved(&store, "cursor");
    fake.set_pages(dataset(4, 0));
    fake.fault(server.request_count() + 1, reply);
    let run = pull(&s, &mut store, T0 + 300);
    assert_eq!(marks(&store), before, "a failed pull changes no entry");
    assert_eq!(
        saved(&store, "cursor"),
        cursor,
        "a failed pull keeps the cursor"
    );
    assert_eq!(run.pages_applied, 0);
    let text = format!("{run} {:?} {}", run.status, run.error().unwrap_or_default());
    assert!(!text.contains(KEY), "{text}");
    run
}

fn failure(run: &apiban::ApibanRun) -> String {
    match &run.status {
        PullStatus::Failed(m) => m.clone(),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn unauthorized_names_the_key_file_never_the_key() {
    let run = second_pull_fails(Fake::unauthorized(), ApiVersion::V2, |_| {});
    match &run.status {
        PullStatus::Unauthorized(m) => {
            assert!(
                m.contains("/etc/sipban/apiban.key") && m.contains("403"),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(run.error().unwrap().contains("kept"));
}

#[test]
fn a_wrong_key_is_refused_by_the_stand_in_v1_and_v2() {
    for api in [ApiVersion::V1, ApiVersion::V2] {
        let e = env();
        let fake = Fake::new(dataset(1, 0));
        let server = serve(&fake);
        let s = settings_for(&server, api, &e.key_file);
        let mut store = e.store();
        let wrong = Secret::new("WRONGkey", "the key file /x.key");
        let run = rt().block_on(apiban::pull(&s, &wrong, Target::Apply(&mut store), T0));
        assert!(
            matches!(run.status, PullStatus::Unauthorized(_)),
            "{api:?}: {:?}",
            run.status
        );
        assert!(marks(&store).is_empty());
    }
}

#[test]
fn malformed_json_keeps_the_last_good_entries() {
    let run = second_pull_fails(
        Reply::json(200, r#"{"ipaddress":["198.18.9.9","#),
        ApiVersion::V2,
        |_| {},
    );
    assert!(failure(&run).contains("malformed JSON"), "{run}");
    assert!(run.error().unwrap().contains("kept"));
}

#[test]
fn a_stalled_connection_times_out() {
    let run = second_pull_fails(Reply::Stall, ApiVersion::V2, |s| {
        s.timeout = Duration::from_secs(1)
    });
    assert!(failure(&run).contains("timed out"), "{run}");
    let run = second_pull_fails(
        Reply::StallBody {
            status: 200,
            declared: 5000,
            sent: br#"{"ipaddress":["198.18.9.9","#.to_vec(),
        },
        ApiVersion::V2,
        |s| s.timeout = Duration::from_secs(1),
    );
    assert!(failure(&run).contains("timed out"), "{run}");
}

#[test]
fn an_oversized_body_is_refused() {
    let huge = {
        let mut b = br#"{"ipaddress":["#.to_vec();
        while b.len() < 2 << 20 {
            b.extend_from_slice(br#""198.18.1.1","#);
        }
        b.extend_from_slice(br#""198.18.1.2"],"ID":"1600000099"}"#);
        b
    };
    for content_length in [true, false] {
        let reply = Reply::Full {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: huge.clone(),
            content_length,
        };
        let run = second_pull_fails(reply, ApiVersion::V2, |_| {});
        assert!(failure(&run).contains("larger than"), "{run}");
    }
}

#[test]
fn a_dropped_connection_is_a_network_error_and_v1_urls_are_redacted() {
    let run = second_pull_fails(Reply::Drop, ApiVersion::V1, |_| {});
    let m = failure(&run);
    assert!(!m.contains(KEY), "{m}");
    assert!(!m.is_empty());
}

#[test]
fn string_ipaddress_bodies() {
    let e = env();
    let fake = Fake::new(dataset(1, 0));
    // A page whose ipaddress is one string, then "no new bans" as a string (beta docs).
    fake.fault(
        1,
        Reply::json(200, r#"{"ipaddress":"198.18.200.1","ID":"1600000001"}"#),
    );
    fake.fault(
        2,
        Reply::json(400, r#"{"ipaddress":"no new bans","ID":"none"}"#),
    );
    let server = serve(&fake);
    let s = settings_for(&server, ApiVersion::V2, &e.key_file);
    let mut store = e.store();
    let run = pull(&s, &mut store, T0);
    assert_eq!(run.status, PullStatus::CaughtUp);
    assert_eq!(run.addresses, 1);
    assert_eq!(
        marks(&store).into_keys().collect::<Vec<_>>(),
        ["198.18.200.1"]
    );
    assert_eq!(saved(&store, "cursor"), Some(id_for(1)));
    // A 400 that is not "no new bans" is an error, not the end.
    fake.fault(
        3,
        Reply::json(400, r#"{"ipaddress":"bad request","ID":"x"}"#),
    );
    let run = pull(&s, &mut store, T0 + 1);
    assert!(failure(&run).contains("bad request"), "{run}");
}

#[test]
fn v1_pages_put_the_key_in_the_path() {
    let e = env();
    let data = dataset(3, 0);
    let fake = Fake::new(data.clone());
    let server = serve(&fake);
    let s = settings_for(&server, ApiVersion::V1, &e.key_file);
    let mut store = e.store();
    let run = pull(&s, &mut store, T0);
    assert_eq!(run.status, PullStatus::CaughtUp);
    assert_eq!(marks(&store).len(), 750);
    let reqs = server.requests();
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].path, format!("/api/{KEY}/banned/100"));
    assert_eq!(reqs.len(), 4);
}

#[test]
fn an_untrusted_certificate_is_refused() {
    let e = env();
    let fake = Fake::new(dataset(1, 0));
    let server = serve(&fake);
    let mut s = settings_for(&server, ApiVersion::V2, &e.key_file);
    s.ca_file = None;
    let mut store = e.store();
    let run = pull(&s, &mut store, T0);
    let m = failure(&run);
    assert!(m.to_lowercase().contains("certificate"), "{m}");
    assert_eq!(
        server.request_count(),
        0,
        "no request may reach an unverified server"
    );
    assert!(marks(&store).is_empty());
}

#[test]
fn a_dry_run_writes_nothing_and_returns_sightings() {
    let e = env();
    let data = dataset(3, 0);
    let fake = Fake::new(data.clone());
    let server = serve(&fake);
    let s = settings_for(&server, ApiVersion::V2, &e.key_file);
    // A saved cursor after page 1.
    {
        let mut store = e.store();
        fake.set_pages(data[..1].to_vec());
        assert_eq!(pull(&s, &mut store, T0).status, PullStatus::CaughtUp);
        fake.set_pages(data.clone());
    }
    let path = Store::db_path(&e.state_dir());
    let bytes = std::fs::read(&path).unwrap();
    let ro = Store::open_read_only(&e.state_dir()).unwrap().unwrap();
    let n = server.request_count();
    let run = rt().block_on(apiban::pull(&s, &key(), Target::DryRun(Some(&ro)), T0 + 60));
    assert_eq!(run.status, PullStatus::CaughtUp);
    assert_eq!(run.pages_applied, 0);
    assert_eq!(run.sightings.len(), 500);
    assert_eq!(
        requested_ids(&server.requests()[n..]),
        [id_for(1), id_for(2), id_for(3)],
        "a dry run starts at the saved cursor"
    );
    drop(ro);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "a dry run wrote to the state"
    );
}

#[test]
fn check_asks_the_check_endpoint() {
    for api in [ApiVersion::V2, ApiVersion::V1] {
        let e = env();
        let fake = Fake::new(Vec::new());
        fake.listed.lock().unwrap().insert("198.18.0.7".into());
        let server = serve(&fake);
        let s = settings_for(&server, api, &e.key_file);
        let ask = |ip: &str| rt().block_on(apiban::check(&s, &key(), ip.parse().unwrap()));
        let yes = ask("198.18.0.7").unwrap();
        assert!(yes.listed);
        assert_eq!(yes.id.as_deref(), Some("987654321"));
        assert!(!ask("198.18.0.8").unwrap().listed);
        let reqs = server.requests();
        match api {
            ApiVersion::V2 => {
                assert_eq!(reqs[0].path, "/api/check");
                assert_eq!(reqs[0].json().unwrap()["ipaddress"], "198.18.0.7");
            }
            ApiVersion::V1 => assert_eq!(reqs[0].path, format!("/api/{KEY}/check/198.18.0.7")),
        }
        let bad = rt()
            .block_on(apiban::check(
                &s,
                &Secret::new("nope", "the key file /k"),
                "198.18.0.7".parse().unwrap(),
            ))
            .unwrap_err();
        assert!(bad.0.contains("/k") && bad.0.contains("403"), "{bad}");
    }
}

// ---------------------------------------------------------------------------------------------
// SIGKILL at random points of a backlog.

const CHILD_ENV: &str = "SIPBAN_TEST_APIBAN_CHILD";

/// Not a test on its own: the process `sigkill_during_a_backlog_...` starts (this test binary
/// again) and kills. It pulls with a real store, like `sipban sync` does.
#[test]
#[ignore = "helper process for sigkill_during_a_backlog_resumes_without_loss_or_repeat"]
fn child_pull_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let v: serde_json::Value = serde_json::from_str(&spec).unwrap();
    let raw = RawApiban {
        key_file: Some(PathBuf::from(v["key_file"].as_str().unwrap())),
        base_url: Some(v["base_url"].as_str().unwrap().to_string()),
        ca_file: Some(ca_file()),
        requests_per_2min: Some(5),
        ..RawApiban::default()
    };
    let mut s = sipban::config::apiban::resolve(raw, Path::new("/")).unwrap();
    s.window = Duration::from_millis(300);
    let key = apiban::load_key(&s).unwrap();
    let mut store = Store::open(Path::new(v["state_dir"].as_str().unwrap())).unwrap();
    let now = v["now"].as_i64().unwrap();
    let run = rt().block_on(apiban::pull(&s, &key, Target::Apply(&mut store), now));
    println!("child: {run}");
}

#[test]
fn sigkill_during_a_backlog_resumes_without_loss_or_repeat() {
    const PAGES: usize = 60;
    const KILLS: usize = 20;
    let e = env();
    let data = dataset(PAGES, 0);
    let fake = Fake::new(data.clone());
    let server = serve(&fake);
    let mut rng = Rng::seeded("sigkill test");
    let exe = std::env::current_exe().unwrap();
    let spawn = |now: i64| {
        let spec = serde_json::json!({
            "key_file": e.key_file, "base_url": server.base_url(),
            "state_dir": e.state_dir(), "now": now,
        });
        std::process::Command::new(&exe)
            .args([
                "--exact",
                crate::common::run::test_name(module_path!(), "child_pull_process").as_str(),
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, spec.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // (cursor page, applied addresses) as the state says, or nothing yet.
    // Opened read-write, as the next run would: that rolls back a transaction the kill cut.
    let snapshot = || -> (usize, BTreeSet<String>) {
        let store = Store::open(&e.state_dir()).unwrap();
        let cursor: Option<String> = store.apiban_state().ok().and_then(|s| s.cursor);
        let page = cursor.map(|c| page_of(&c).unwrap()).unwrap_or(0);
        let applied = store
            .raw_connection_for_tests()
            .prepare("SELECT net FROM entries WHERE source = 'apiban'")
            .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
            .unwrap_or_default();
        (page, applied)
    };
    let mut pages_at_kill = Vec::new();
    for run in 0..KILLS {
        let (page_before, _) = snapshot();
        let first_request = server.request_count();
        let mut child = spawn(T0 + run as i64 * 10);
        // Kill after 1-3 more requests have reached the server, plus 0-40 ms: while a page is
        // in flight, being parsed, committed, or while the pacer waits.
        let target = first_request + 1 + (rng.next() % 3) as usize;
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.request_count() < target && Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(rng.next() % 40));
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();

        let (page, applied) = snapshot();
        pages_at_kill.push(page);
        assert_eq!(
            applied,
            addresses(&data[..page]),
            "kill {run}: the entries must be exactly the pages before the saved cursor"
        );
        assert!(page >= page_before, "kill {run}: the cursor went back");
        let ids = requested_ids(&server.requests()[first_request..]);
        if let Some(first) = ids.first() {
            assert_eq!(
                first,
                &id_for(page_before),
                "kill {run}: the run must resume from the last applied page"
            );
        }
        // Requests of one run ask for consecutive pages.
        for w in ids.windows(2) {
            assert_eq!(
                page_of(&w[1]),
                page_of(&w[0]).map(|p| p + 1),
                "kill {run}: {ids:?}"
            );
        }
    }
    eprintln!("cursor page after each kill: {pages_at_kill:?}");
    let (last_killed, _) = snapshot();
    assert!(
        last_killed < PAGES,
        "the backlog must still be running at the last kill"
    );
    assert!(
        pages_at_kill.iter().collect::<BTreeSet<_>>().len() > 3,
        "the kills should land at several points of the backlog: {pages_at_kill:?}"
    );

    // A last run, not killed, completes the backlog.
    let first_request = server.request_count();
    let status = spawn(T0 + 1000).wait().unwrap();
    assert!(status.success());
    let ids = requested_ids(&server.requests()[first_request..]);
    assert_eq!(ids.first(), Some(&id_for(last_killed)));
    assert_eq!(ids.len(), PAGES - last_killed + 1);
    let store = Store::open_read_only(&e.state_dir()).unwrap().unwrap();
    let all = marks(&store);
    assert_eq!(
        all.keys().cloned().collect::<BTreeSet<_>>(),
        addresses(&data)
    );
    // Each address is listed once by the stand-in, so it was applied once: by one run, whose
    // `now` is both its first and last seen.
    for (net, (first, last, _)) in &all {
        assert_eq!(first, last, "{net} was applied by two runs");
    }
    assert_eq!(saved(&store, "cursor"), Some(id_for(PAGES)));
    // The key never reached the state.
    assert_no_key_in_dir(&e.state_dir());
}

fn assert_no_key_in_dir(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            assert!(
                !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
                "the key is in {}",
                p.display()
            );
        } else if p.is_dir() {
            assert_no_key_in_dir(&p);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The `sipban` binary: output, `check`, trust, key hygiene.

/// A config for the binary. `ca_file: None` leaves trust to the system store.
fn write_config(e: &Env, server: &HttpsServer, api: &str, ca_file: Option<&Path>) -> PathBuf {
    let mut text = format!(
        "state_dir: {}\nallow_own_addresses: false\nsets:\n  v4: {{name: sbt-apiban-v4}}\n  v6: {{name: sbt-apiban-v6}}\napiban:\n  key_file: {}\n  api: {api}\n  base_url: {}\n  requests_per_2min: 1000\n",
        e.state_dir().display(),
        e.key_file.display(),
        server.base_url()
    );
    if let Some(ca) = ca_file {
        text.push_str(&format!("  ca_file: {}\n", ca.display()));
    }
    let path = e.dir.path().join("config.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Run `sipban` with `PATH` pointing at an empty directory (no `ipset`, `iptables` or
/// `conntrack` program). sipban reaches kernel sets over netlink without the tool, so a test
/// whose runs may touch them runs in a private network namespace (`run_in`).
fn sipban(e: &Env, config: &Path, args: &[&str], extra_env: &[(&str, &Path)]) -> Ran {
    let empty = e.dir.path().join("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let mut cmd = std::process::Command::new(crate::common::run::bin());
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env("PATH", &empty)
        .env_remove(apiban::KEY_ENV)
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn the_key_never_appears_in_any_output_or_the_state() {
    for api in ["v1", "v2"] {
        // A real sync changes kernel sets: those of a fresh private namespace, never the host's.
        let ns = netns_or_skip!();
        crate::common::netns::run_in(&ns, move || key_never_appears(api));
    }
}

fn key_never_appears(api: &'static str) {
    let e = env();
    let fake = Fake::new(dataset(3, 0));
    fake.listed.lock().unwrap().insert("198.18.250.7".into());
    let server = serve(&fake);
    let config = write_config(&e, &server, api, Some(&ca_file()));
    let mut outputs: Vec<(String, Ran)> = Vec::new();
    let mut run = |args: &[&str]| {
        let r = sipban(&e, &config, args, &[]);
        outputs.push((args.join(" "), r));
        outputs
            .last()
            .map(|(_, r)| (r.code, r.stdout.clone(), r.stderr.clone()))
            .unwrap()
    };
    // A dry run with no state yet: the plan adds what APIBAN lists.
    let (code, stdout, stderr) = run(&["sync", "--dry-run"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("apiban") && stdout.contains("caught up"),
        "{stdout}"
    );
    assert!(stdout.contains("+ 198.18.0.1 "), "{stdout}");
    assert!(
        !Store::db_path(&e.state_dir()).exists(),
        "a dry run wrote the state"
    );
    // A real sync applies the pages to the state and to the namespace's kernel set.
    let (code, _, stderr) = run(&["-vv", "sync"]);
    assert_eq!(code, 0, "{stderr}");
    let set = sipban::backend::ipset::Ipset::new().header("sbt-apiban-v4");
    assert_eq!(set.unwrap().map(|(_, n)| n), Some(750));
    let (code, stdout, _) = run(&["-vv", "sync", "--dry-run", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let src = &v["sources"][0];
    assert_eq!(src["name"], "apiban");
    assert_eq!(src["apiban"]["status"], "caught_up");
    assert_eq!(src["counts"]["held"], 750);
    let (code, stdout, stderr) = run(&["-vv", "check", "198.18.250.7"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("LISTED") && stdout.contains("not listed by any source"),
        "{stdout}"
    );
    let (code, stdout, _) = run(&["check", "198.18.0.1", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["apiban"]["answer"], "not_listed");
    assert_eq!(v["local"]["listings"][0]["source"], "apiban");
    run(&["config", "check"]);
    run(&["config", "check", "--json"]);
    // Failures: a dropped connection, a 403, a 429.
    for reply in [
        Reply::Drop,
        Fake::unauthorized(),
        Reply::json(
            429,
            r#"{"ipaddress":"rate limit exceeded","ID":"unauthorized"}"#,
        ),
    ] {
        fake.fault(server.request_count() + 1, reply.clone());
        let (code, stdout, stderr) = run(&["-vv", "sync", "--dry-run"]);
        assert_eq!(code, 3, "{stdout}{stderr}");
        assert!(stderr.contains("apiban:"), "{stderr}");
        fake.fault(server.request_count() + 1, reply);
        let (code, _, _) = run(&["-vv", "check", "198.18.250.7"]);
        assert_eq!(code, 3);
    }
    let all: String = outputs
        .iter()
        .map(|(a, r)| format!("$ sipban {a}\n{}{}", r.stdout, r.stderr))
        .collect();
    assert!(!all.contains(KEY), "the key was printed:\n{all}");
    if api == "v1" {
        assert!(
            all.contains("/api/[redacted]/banned/"),
            "v1 URLs are logged redacted:\n{all}"
        );
    }
    assert!(Store::db_path(&e.state_dir()).exists());
    assert_no_key_in_dir(&e.state_dir());
}

#[test]
fn a_key_file_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let e = env();
    let fake = Fake::new(dataset(1, 0));
    let server = serve(&fake);
    let config = write_config(&e, &server, "v2", Some(&ca_file()));
    std::fs::set_permissions(&e.key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = sipban(&e, &config, &["sync", "--dry-run"], &[]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("chmod 640") && r.stderr.contains(&e.key_file.display().to_string()),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(KEY) && !r.stdout.contains(KEY));
    assert_eq!(server.request_count(), 0);
    let r = sipban(&e, &config, &["check", "198.18.0.7"], &[]);
    assert_eq!(r.code, 3);
    assert!(r.stdout.contains("chmod 640"), "{}", r.stdout);
}

#[test]
fn trust_comes_from_the_system_store_which_honours_ssl_cert_file() {
    let e = env();
    let fake = Fake::new(Vec::new());
    fake.listed.lock().unwrap().insert("198.18.0.7".into());
    let server = serve(&fake);
    let config = write_config(&e, &server, "v2", None);
    // Without the test CA the server's certificate is refused, and nothing is sent.
    let r = sipban(&e, &config, &["check", "198.18.0.7"], &[]);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.to_lowercase().contains("certificate"),
        "{}",
        r.stdout
    );
    assert_eq!(server.request_count(), 0);
    // With SSL_CERT_FILE naming it, as for other tools on the box, it is trusted.
    let ca = ca_file();
    let r = sipban(
        &e,
        &config,
        &["check", "198.18.0.7"],
        &[("SSL_CERT_FILE", &ca)],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("LISTED"), "{}", r.stdout);
}
