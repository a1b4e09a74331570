//! Clock jumps (issue 14, item 6): one sync under a clock a year ahead (libfaketime, as a Pi
//! without a real-time clock can boot), then the clock is right again; and a daemon whose clock
//! is stepped two days either way while it runs. Timestamps saved in the future must not stall
//! a feed, and kernel timeouts must stay within the TTL that was asked for. The real binary in
//! a private network namespace, with real `ipset`.

use crate::common::netns::run_in;
use crate::common::run::{bin, faketime, json, libfaketime, sipban, text};
use crate::common::stub::{Reply, Stub};
use std::path::Path;
use std::process::{Command, Stdio};

fn write_config(dir: &Path, url: &str) {
    std::fs::write(dir.join("list.txt"), "45.0.0.1\n45.0.0.2\n").unwrap();
    let cfg = format!(
        "state_dir: {}\nsets:\n  v4: {{ name: t4, cap: 100 }}\n  v6: {{ name: t6, cap: 100 }}\nfeeds:\n  - {{ name: local, url: 'file://{}', ttl: 1d, max_shrink: 100% }}\n  - {{ name: remote, url: '{url}', ttl: 1d, interval: 1h, retries: 0 }}\n",
        dir.join("state").display(),
        dir.join("list.txt").display(),
    );
    std::fs::write(dir.join("config.yaml"), cfg).unwrap();
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn a_sync_under_a_clock_a_year_ahead_neither_stalls_feeds_nor_lengthens_timeouts() {
    if libfaketime().is_none() {
        crate::common::netns::skip("needs libfaketime (Debian package `faketime`)");
        return;
    }
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let stub = Stub::start();
        stub.set("/list", Reply::ok("45.1.0.1\n45.1.0.2\n"));
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_config(d, &stub.url("/list"));

        // 1. A sync with the clock a year ahead.
        let o = faketime("+365d", bin())
            .expect("libfaketime")
            .args(["sync", "--json", "--config"])
            .arg(d.join("config.yaml"))
            .stdin(Stdio::null())
            .output()
            .expect("run faketime");
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let started = json(&o)["started"].as_i64().unwrap();
        assert!(
            started > now() + 364 * 86_400,
            "faketime did not move the clock: started {started}"
        );
        assert_eq!(stub.requests("/list").len(), 1);
        // `status` at the right time does not call a success dated a year ahead fresh.
        let o = sipban(d, &["status", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let remote = &json(&o)["sources"][1];
        assert_eq!(remote["name"], "remote");
        assert!(remote["last_success"].as_i64().is_some(), "{remote}");
        assert!(remote["staleness_seconds"].is_null(), "{remote}");

        // 2. The clock is right again: the hourly feed is due (its saved last download is in
        //    the future, so unknown), with a warning naming it.
        let o = sipban(d, &["sync", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let j = json(&o);
        assert_eq!(j["sources"][1]["name"], "remote");
        assert_ne!(
            j["sources"][1]["feed"]["status"], "not_due",
            "{}",
            j["sources"][1]
        );
        assert_eq!(stub.requests("/list").len(), 2);
        let warned = j["warnings"].as_array().is_some_and(|w| {
            w.iter().any(|w| {
                w.as_str()
                    .is_some_and(|w| w.contains("feed remote") && w.contains("future"))
            })
        });
        assert!(warned, "no warning naming the feed: {}", text(&o));

        // 3. Entries with a 1-day TTL carry at most a day in the kernel.
        let set = sipban::backend::ipset::Ipset::new()
            .read("t4")
            .unwrap()
            .expect("set t4");
        assert_eq!(set.members.len(), 4, "{:?}", set.members);
        for (net, timeout) in &set.members {
            assert!(
                *timeout <= 86_400,
                "{} has a kernel timeout of {timeout} s for a 1-day TTL",
                sipban::net::display_net(net)
            );
        }
        // And the saved state says so too: nothing expires more than a day from now.
        let o = sipban(d, &["list", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let listed = json(&o);
        let text_all = listed.to_string();
        let limit = now() + 86_400 + 60;
        let mut checked = 0;
        visit_expires(&listed, &mut |t| {
            checked += 1;
            assert!(
                t <= limit,
                "an entry expires at {t}, after {limit}: {text_all}"
            );
        });
        assert!(checked >= 4, "no expiry found in `list --json`: {text_all}");
    });
}

/// Call `f` with every integer under a key named `expires` in `v`.
fn visit_expires(v: &serde_json::Value, f: &mut dyn FnMut(i64)) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x.as_i64()) {
                    ("expires", Some(t)) => f(t),
                    _ => visit_expires(x, f),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| visit_expires(x, f)),
        _ => {}
    }
}

/// The daemon under a wall clock that the test moves (libfaketime reads the offset from
/// `offset` at every call; the monotonic clock is left alone, as a real clock step leaves it).
struct Daemon {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Daemon {
    fn start(dir: &Path, offset: &Path) -> Option<Daemon> {
        let Some(lib) = libfaketime() else {
            crate::common::netns::skip("needs libfaketime (Debian package `faketime`)");
            return None;
        };
        let log = dir.join("daemon.log");
        let child = Command::new(bin())
            .args(["run", "-v", "--config"])
            .arg(dir.join("config.yaml"))
            .env("LD_PRELOAD", lib)
            .env("FAKETIME_TIMESTAMP_FILE", offset)
            .env("FAKETIME_NO_CACHE", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Some(Daemon { child, log })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the daemon has finished `n` syncs in all.
    fn wait_syncs(&self, n: usize) {
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_secs(60) {
            if self.log().matches("sync ok in").count() >= n {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("fewer than {n} syncs; daemon log:\n{}", self.log());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The members of `set` and their kernel timeouts.
fn timeouts(set: &str) -> Vec<(String, u32)> {
    sipban::backend::ipset::Ipset::new()
        .read(set)
        .unwrap()
        .map(|k| {
            k.members
                .iter()
                .map(|(n, t)| (sipban::net::display_net(n), *t))
                .collect()
        })
        .unwrap_or_default()
}

/// A running daemon whose wall clock is stepped (as NTP steps a Pi's clock after boot) keeps
/// its feeds fresh: two days ahead, the hourly feed is downloaded before its entries run out;
/// two days back (behind the saved last download), it is due at once rather than in two days,
/// and its entries keep a 1-day timeout.
#[test]
fn the_daemon_keeps_feeds_fresh_when_the_clock_is_stepped() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let stub = Stub::start();
        stub.set("/list", Reply::ok("45.1.0.1\n"));
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let offset = d.join("faketime");
        std::fs::write(&offset, "+0\n").unwrap();
        std::fs::write(
            d.join("config.yaml"),
            format!(
                "state_dir: {}\nsets:\n  v4: {{ name: t4, cap: 100 }}\n  v6: {{ name: t6, cap: 100 }}\nfeeds:\n  - {{ name: remote, url: '{}', ttl: 1d, interval: 1h, retries: 0 }}\ndaemon:\n  sync_schedule: \"* * * * * *\"\n",
                d.join("state").display(),
                stub.url("/list")
            ),
        )
        .unwrap();
        let Some(daemon) = Daemon::start(d, &offset) else {
            return;
        };
        daemon.wait_syncs(1);
        assert_eq!(stub.requests("/list").len(), 1, "{}", daemon.log());
        for (step, downloads) in [("+2d", 2), ("-2d", 3)] {
            // Atomically: libfaketime reads the file at every clock call.
            let tmp = d.join("faketime.new");
            std::fs::write(&tmp, format!("{step}\n")).unwrap();
            std::fs::rename(&tmp, &offset).unwrap();
            let seen = daemon.log().matches("sync ok in").count();
            daemon.wait_syncs(seen + 2);
            let log = daemon.log();
            assert_eq!(stub.requests("/list").len(), downloads, "{step}: {log}");
            let held = timeouts("t4");
            assert_eq!(held.len(), 1, "{step}: {held:?}\n{log}");
            assert!(held[0].1 <= 86_400, "{step}: {held:?}\n{log}");
        }
        assert!(
            daemon
                .log()
                .contains("feed remote: its last download is saved as"),
            "{}",
            daemon.log()
        );
    });
}
