//! SIGKILL during draining, at 20 random points: nothing is lost, and nothing is sent twice
//! beyond what the per-IP interval allows. The AbuseIPDB stand-in counts every request per
//! address; the drain runs in a child process (this test binary again) that is killed.

use crate::common::https::ca_file;
use crate::common::rng::Rng;
use crate::report_common::{FakeAbuseipdb, KEY};
use sipban::report::comment::HostIdentity;
use sipban::report::queue::{self, ABUSEIPDB};
use sipban::report::{self, Offence, OffenceKind, RawReport, ReportSettings, Transport};
use sipban::store::Store;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const T0: i64 = 1_714_557_600;
const INTERVAL: i64 = 86_400;
const ITEMS: usize = 60;
const KILLS: usize = 20;
const CHILD_ENV: &str = "SIPBAN_TEST_REPORT_CHILD";

fn addr(i: usize) -> String {
    format!("45.1.{}.{}", i / 250, i % 250 + 1)
}

fn settings(base_url: &str, key_file: &Path, pace_ms: u64) -> ReportSettings {
    let raw: RawReport = sipban::config::parse_yaml(
        &format!(
            "abuseipdb:\n  key_file: {}\n  base_url: {base_url}\n  ca_file: {}\n  min_interval_per_ip: 24h\n",
            key_file.display(),
            ca_file().display()
        ),
        "test",
    )
    .unwrap();
    let mut s = sipban::config::report::resolve(raw, Path::new("/")).unwrap();
    let a = s.abuseipdb.as_mut().unwrap();
    a.pace = Duration::from_millis(pace_ms);
    // Single reports, so that kills land between many requests.
    a.bulk_threshold = 10_000;
    a.timeout = Duration::from_secs(10);
    s
}

/// Not a test on its own: the process the SIGKILL test starts and kills. It drains the queue
/// with a real store, as `sipban sync` does after its commit.
#[test]
#[ignore = "helper process for sigkill_while_draining_loses_nothing_and_repeats_nothing"]
fn child_drain_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let v: serde_json::Value = serde_json::from_str(&spec).unwrap();
    let s = settings(
        v["base_url"].as_str().unwrap(),
        Path::new(v["key_file"].as_str().unwrap()),
        v["pace_ms"].as_u64().unwrap(),
    );
    let mut store = Store::open(Path::new(v["state_dir"].as_str().unwrap())).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let run = rt.block_on(report::drain(
        &s,
        &mut store,
        Vec::new(),
        v["now"].as_i64().unwrap(),
    ));
    println!("child: {run}");
}

#[test]
fn sigkill_while_draining_loses_nothing_and_repeats_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("abuseipdb.key");
    std::fs::write(&key_file, KEY).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let state_dir: PathBuf = dir.path().join("state");
    let fake = FakeAbuseipdb::new(T0);
    let server = crate::report_common::serve(&fake);
    let base_url = server.base_url();

    // The queue a run's commit left: 60 offences over TCP.
    {
        let s = settings(&base_url, &key_file, 1);
        let offences: Vec<Offence> = (0..ITEMS)
            .map(|i| {
                let mut o = Offence::new(addr(i).parse().unwrap(), T0 - 1000 + i as i64, T0);
                o.add(OffenceKind::SipAuth, "security_event", 5)
                    .transport(Transport::Tcp);
                o
            })
            .collect();
        let host = HostIdentity::default();
        let c = report::select_with(&s, &offences, &|_| true, &host);
        let mut store = Store::open(&state_dir).unwrap();
        store
            .transaction(|tx| queue::enqueue_all(&tx.report_queue(), &s, &c, T0))
            .unwrap();
    }

    let mut rng = Rng::seeded("sigkill test");
    let exe = std::env::current_exe().unwrap();
    let spawn = |now: i64, pace_ms: u64| {
        let spec = serde_json::json!({
            "key_file": key_file, "base_url": base_url, "state_dir": state_dir,
            "now": now, "pace_ms": pace_ms,
        });
        std::process::Command::new(&exe)
            .args([
                "--exact",
                crate::common::run::test_name(module_path!(), "child_drain_process").as_str(),
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
    // What the state says: queued addresses (rolled back to the last commit, as the next run
    // would see it).
    let queued = || -> BTreeSet<String> {
        let store = Store::open(&state_dir).unwrap();
        store
            .report_queue()
            .items::<sipban::report::Detail>(ABUSEIPDB, 10_000)
            .unwrap()
            .into_iter()
            .map(|i| i.ip.to_string())
            .collect()
    };
    let all: BTreeSet<String> = (0..ITEMS).map(addr).collect();
    let at_most_once = |what: &str| {
        for (ip, n) in fake.tried() {
            assert!(
                n <= 1,
                "{what}: {ip} was sent {n} times within the interval"
            );
        }
    };

    let mut mid_run = 0;
    let mut accepted_at_kill = Vec::new();
    for run in 0..KILLS {
        let now = T0 + run as i64 * 10;
        fake.set_clock(now);
        let first_request = server.request_count();
        let mut child = spawn(now, 15);
        // Kill after 1-3 more requests reached the stand-in, plus 0-30 ms: while a report is in
        // flight, being settled, or while the pacer waits.
        let target = first_request + 1 + (rng.next() % 3) as usize;
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.request_count() < target && Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(rng.next() % 30));
        if child.try_wait().unwrap().is_none() {
            mid_run += 1;
        }
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();

        at_most_once(&format!("kill {run}"));
        let accepted: BTreeSet<String> = fake.accepted_ips().into_iter().collect();
        let q = queued();
        // Nothing lost: every address is either accepted by the stand-in or still queued.
        let covered: BTreeSet<String> = accepted.union(&q).cloned().collect();
        assert_eq!(covered, all, "kill {run}: an item was lost");
        accepted_at_kill.push(accepted.len());
    }
    eprintln!("accepted after each kill: {accepted_at_kill:?}");
    assert!(
        mid_run >= 15,
        "only {mid_run} of {KILLS} kills landed mid-run"
    );
    assert!(
        accepted_at_kill.last() < Some(&ITEMS),
        "the queue must still be draining at the last kill"
    );

    // A last run, not killed, the same day: everything not in doubt goes; nothing twice.
    fake.set_clock(T0 + 1000);
    assert!(spawn(T0 + 1000, 1).wait().unwrap().success());
    at_most_once("final run");
    let in_doubt = queued();
    let accepted: BTreeSet<String> = fake.accepted_ips().into_iter().collect();
    assert_eq!(
        accepted.union(&in_doubt).cloned().collect::<BTreeSet<_>>(),
        all
    );
    {
        let store = Store::open(&state_dir).unwrap();
        for item in store
            .report_queue()
            .items::<sipban::report::Detail>(ABUSEIPDB, 10_000)
            .unwrap()
        {
            assert!(
                item.claimed.is_some(),
                "{}: only items a kill left in doubt may wait",
                item.ip
            );
        }
    }
    eprintln!(
        "{} items in doubt after the kills (sent again after the interval)",
        in_doubt.len()
    );

    // After the per-IP interval, the items in doubt go too, and the queue is empty.
    let later = T0 + 1000 + INTERVAL;
    fake.set_clock(later);
    assert!(spawn(later, 1).wait().unwrap().success());
    assert!(queued().is_empty());
    let mut per_ip: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for a in fake.accepted() {
        per_ip.entry(a.ip).or_default().push(a.at);
    }
    assert_eq!(per_ip.keys().cloned().collect::<BTreeSet<_>>(), all);
    for (ip, times) in &per_ip {
        for w in times.windows(2) {
            assert!(
                w[1] - w[0] >= INTERVAL,
                "{ip} was reported twice within the interval: {times:?}"
            );
        }
        // One request each; a second only for an item a kill left in doubt, a day later.
        let tried = fake.tried()[ip];
        assert!(
            tried <= 1 + u32::from(in_doubt.contains(ip)),
            "{ip}: {tried} requests"
        );
    }
    // The key never reached the state.
    for f in std::fs::read_dir(&state_dir).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        assert!(!bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()));
    }
}
