//! End-to-end `sipban sync` against the real kernel, each test in its own network namespace:
//! the real binary, real `ipset`, real SQLite, and local stub servers for remote feeds.

use crate::common::lines::asterisk_line;
use crate::common::lock;
use crate::common::rng::Rng;
use crate::common::run::{bin, json, sipban, text};

use crate::common::netns::{run_in, NetNs};
use crate::common::stub::{Reply, Stub};
use sipban::backend::ipset::Ipset;
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn write_config(dir: &Path, cap: u32, allowlist: &str, feeds: &str) {
    let cfg = format!(
        "state_dir: {}\nsets:\n  v4: {{ name: t4, cap: {cap} }}\n  v6: {{ name: t6, cap: {cap} }}\nallowlist: [{allowlist}]\nfeeds:\n{feeds}",
        dir.join("state").display()
    );
    std::fs::write(dir.join("config.yaml"), cfg).unwrap();
}

fn file_feed(name: &str, path: &Path) -> String {
    format!(
        "  - {{ name: {name}, url: 'file://{}', ttl: 1d, max_shrink: 100% }}\n",
        path.display()
    )
}

/// `ipset` members of a set as display strings.
fn members(set: &str) -> HashSet<String> {
    Ipset::new()
        .read(set)
        .expect("read set")
        .map(|k| k.members.keys().map(sipban::net::display_net).collect())
        .unwrap_or_default()
}

fn public_v4(i: u32) -> String {
    Ipv4Addr::from(0x2d00_0000u32 + i).to_string()
}

fn write_list(path: &Path, items: &[String]) {
    let mut s = String::with_capacity(items.len() * 16);
    for i in items {
        s.push_str(i);
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn first_sync_creates_both_sets_with_exactly_the_desired_contents() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        std::fs::write(
            &list,
            "45.0.0.1\n45.0.1.0/24\n2001:db8:1::1\n2001:db8:2::/48\n# comment\n",
        )
        .unwrap();
        write_config(dir.path(), 1000, "", &file_feed("f", &list));
        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(
            members("t4"),
            HashSet::from(["45.0.0.1".to_string(), "45.0.1.0/24".to_string()])
        );
        assert_eq!(
            members("t6"),
            HashSet::from(["2001:db8:1::1".to_string(), "2001:db8:2::/48".to_string()])
        );
        // The header is what the config asks for.
        let (header, n) = Ipset::new().header("t4").unwrap().unwrap();
        assert_eq!(
            (header.set_type.as_str(), header.timeout_support, n),
            ("hash:net", true, 2)
        );
        // A second run with nothing new changes nothing.
        let o = sipban(dir.path(), &["sync", "--json"]);
        let j = json(&o);
        for s in j["sets"].as_array().unwrap() {
            assert_eq!(s["adds"].as_array().unwrap().len(), 0);
            assert_eq!(s["dels"].as_array().unwrap().len(), 0);
            assert!(s["rebuild"].is_null(), "{s}");
        }
    });
}

#[test]
fn one_percent_change_to_65536_entries_changes_only_those_entries() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        let mut items: Vec<String> = (0..65_536).map(public_v4).collect();
        write_list(&list, &items);
        write_config(dir.path(), 65_536, "", &file_feed("big", &list));
        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(members("t4").len(), 65_536);
        let before = Ipset::new().read("t4").unwrap().unwrap().members;

        // Replace 1% (656 of them) with new addresses.
        let changed: Vec<usize> = (0..65_536).step_by(100).collect();
        for (k, &i) in changed.iter().enumerate() {
            items[i] = public_v4(100_000 + k as u32);
        }
        write_list(&list, &items);
        let o = sipban(dir.path(), &["-vv", "sync", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("using the kernel mirror"),
            "a run after a clean run trusts the mirror: {}",
            text(&o)
        );
        let j = json(&o);
        let v4 = &j["sets"][0];
        assert!(
            v4["rebuild"].is_null(),
            "a 1% change must be an in-place diff: {}",
            v4["rebuild"]
        );
        assert_eq!(v4["adds"].as_array().unwrap().len(), changed.len());
        assert_eq!(v4["dels"].as_array().unwrap().len(), changed.len());
        assert_eq!(v4["refreshes"].as_array().unwrap().len(), 0);
        let after = Ipset::new().read("t4").unwrap().unwrap().members;
        let want: HashSet<String> = items.iter().cloned().collect();
        let got: HashSet<String> = after.keys().map(sipban::net::display_net).collect();
        assert_eq!(got, want);
        // Untouched entries kept their kernel timeouts (they were not re-added): at most the
        // seconds that passed between the two reads went by.
        let untouched = before.iter().filter(|(n, _)| after.contains_key(*n));
        for (n, t) in untouched {
            assert!(after[n] <= *t, "{n} was re-added: {t} -> {}", after[n]);
        }
    });
}

/// A change made outside a sync (here a manual ban) raises the marker beside the state, so the
/// next sync does not trust the mirror even where the count would match; its commit lowers it.
#[test]
fn a_ban_between_syncs_raises_the_marker_and_the_next_sync_lowers_it() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        std::fs::write(&list, "45.0.0.1\n45.0.0.2\n").unwrap();
        write_config(dir.path(), 100, "", &file_feed("f", &list));
        let marker = dir.path().join("state/state.db.kernel-changing");
        assert_eq!(sipban(dir.path(), &["sync"]).status.code(), Some(0));
        assert!(!marker.exists(), "a clean run leaves no marker");
        let o = sipban(dir.path(), &["ban", "45.9.9.9"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(marker.exists(), "the ban changed the kernel: {}", text(&o));
        // The same count again behind sipban's back: only the marker tells the mirror is stale.
        let o = Command::new("ipset")
            .args(["del", "t4", "45.0.0.2"])
            .output()
            .unwrap();
        assert!(o.status.success());
        let o = sipban(dir.path(), &["-vv", "sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(
            !String::from_utf8_lossy(&o.stderr).contains("using the kernel mirror"),
            "{}",
            text(&o)
        );
        assert!(!marker.exists(), "lowered by the commit: {}", text(&o));
        assert_eq!(members("t4").len(), 3);
    });
}

/// The mirror is not trusted blindly: an entry deleted by hand changes the kernel's count, so
/// the next run reads the set back and restores it.
#[test]
fn an_entry_deleted_by_hand_is_restored() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        std::fs::write(&list, "45.0.0.1\n45.0.0.2\n45.0.0.3\n").unwrap();
        write_config(dir.path(), 100, "", &file_feed("f", &list));
        assert_eq!(sipban(dir.path(), &["sync"]).status.code(), Some(0));
        let o = Command::new("ipset")
            .args(["del", "t4", "45.0.0.2"])
            .output()
            .unwrap();
        assert!(o.status.success());
        let o = sipban(dir.path(), &["-vv", "sync", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            !stderr
                .lines()
                .any(|l| l.contains("using the kernel mirror") && l.contains("set=t4")),
            "{}",
            text(&o)
        );
        assert_eq!(json(&o)["sets"][0]["adds"].as_array().unwrap().len(), 1);
        assert_eq!(members("t4").len(), 3);
    });
}

#[test]
fn a_set_destroyed_by_hand_is_recreated() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        std::fs::write(&list, "45.0.0.1\n45.0.0.2\n").unwrap();
        write_config(dir.path(), 100, "", &file_feed("f", &list));
        assert_eq!(sipban(dir.path(), &["sync"]).status.code(), Some(0));
        let o = Command::new("ipset")
            .args(["destroy", "t4"])
            .output()
            .unwrap();
        assert!(o.status.success());
        assert!(members("t4").is_empty());
        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(members("t4").len(), 2);
    });
}

#[test]
fn during_a_65536_entry_rebuild_a_reader_never_sees_the_live_set_empty_or_partial() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        write_list(&list, &(0..65_536).map(public_v4).collect::<Vec<_>>());
        write_config(dir.path(), 65_536, "", &file_feed("big", &list));
        assert_eq!(sipban(dir.path(), &["sync"]).status.code(), Some(0));
        // A wholly different list forces a rebuild.
        write_list(
            &list,
            &(200_000..265_536).map(public_v4).collect::<Vec<_>>(),
        );
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let poller = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let o = Command::new("ipset")
                        .args(["list", "-t", "t4"])
                        .output()
                        .unwrap();
                    let out = String::from_utf8_lossy(&o.stdout);
                    let n = out
                        .lines()
                        .find_map(|l| l.strip_prefix("Number of entries: "))
                        .map(|v| v.trim().parse::<usize>().unwrap());
                    seen.push(n);
                }
                seen
            })
        };
        let o = sipban(dir.path(), &["sync", "--json"]);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let seen = poller.join().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(!json(&o)["sets"][0]["rebuild"].is_null());
        assert!(
            seen.len() >= 3,
            "the poller only looked {} times",
            seen.len()
        );
        assert!(
            seen.iter().all(|n| *n == Some(65_536)),
            "reader saw {:?}",
            seen.iter()
                .filter(|n| **n != Some(65_536))
                .collect::<Vec<_>>()
        );
        assert!(members("t4").contains(&public_v4(200_000)));
    });
}

/// A feed that fails in any of the documented ways leaves the live set and the state for that
/// feed as they were, and the run exits non-zero naming the feed and the reason.
#[test]
fn a_failing_feed_keeps_the_live_set_and_its_state() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let stub = Stub::start();
        let dir = tempfile::tempdir().unwrap();
        let good: String = (0..50).map(|i| format!("{}\n", public_v4(i))).collect();
        stub.set("/list", Reply::ok(good.clone()));
        let feeds = format!(
            "  - {{ name: web, url: '{}', interval: 1s, timeout: 2s, retries: 0, max_bytes: 4KiB }}\n",
            stub.url("/list")
        );
        write_config(dir.path(), 1000, "", &feeds);
        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let set_before = members("t4");
        assert_eq!(set_before.len(), 50);
        // The saved entries, without `ttl_left` (a view of `expires` against the clock, which
        // moves between runs).
        let saved = |dir: &std::path::Path| {
            let mut v = json(&sipban(dir, &["list", "--json", "--source", "web"]));
            for row in v.as_array_mut().unwrap() {
                row.as_object_mut().unwrap().remove("ttl_left");
            }
            v
        };
        let state_before = saved(dir.path());
        let cache = dir.path().join("state/feeds/web.list");
        let cache_before = std::fs::read(&cache).unwrap();

        let cases: Vec<(&str, Reply, &str)> = vec![
            ("HTTP 500", Reply::status(500, "boom"), "HTTP 500"),
            (
                "a stalled server",
                Reply::ok(good.clone()).delayed(Duration::from_secs(6)),
                "timed out",
            ),
            (
                "an HTML page",
                Reply::ok("<!DOCTYPE html><html><body>Login</body></html>")
                    .header("Content-Type", "text/html"),
                "HTML",
            ),
            (
                "HTML without the content type",
                Reply::ok("\n<html><body>maintenance</body></html>"),
                "HTML",
            ),
            ("an empty body", Reply::ok(""), "empty body"),
            (
                "a body over max_bytes",
                Reply::ok("45.1.1.1\n".repeat(1000)),
                "max_bytes",
            ),
            ("a shrunken list", Reply::ok("45.1.1.1\n"), "shrink guard"),
        ];
        for (what, reply, reason) in cases {
            std::thread::sleep(Duration::from_millis(1100)); // past the 1 s interval
            stub.set("/list", reply);
            let started = Instant::now();
            let o = sipban(dir.path(), &["sync"]);
            assert_eq!(o.status.code(), Some(3), "{what}: {}", text(&o));
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert!(
                stderr.contains("feed web") && stderr.contains(reason),
                "{what}: {}",
                text(&o)
            );
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{what}: the timeout did not hold"
            );
            assert_eq!(members("t4"), set_before, "{what}: the live set changed");
            let state = saved(dir.path());
            assert_eq!(
                state, state_before,
                "{what}: the state for the feed changed"
            );
            assert_eq!(
                std::fs::read(&cache).unwrap(),
                cache_before,
                "{what}: the last good copy changed"
            );
        }
        // And it recovers.
        std::thread::sleep(Duration::from_millis(1100));
        stub.set("/list", Reply::ok(format!("{good}45.9.9.9\n")));
        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(members("t4").len(), 51);
    });
}

#[test]
fn a_feed_listing_every_16_cannot_ban_the_internet() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        let good: Vec<String> = (0..5).map(public_v4).collect();
        write_list(&list, &good);
        write_config(dir.path(), 65_536, "", &file_feed("poisoned", &list));
        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let last_good: HashSet<String> = good.iter().cloned().collect();
        assert_eq!(members("t4"), last_good);

        // The feed is replaced by every IPv4 /16 (the measured attack: 92.5% of IPv4 banned).
        let all: Vec<String> = (0..65_536u32)
            .map(|i| format!("{}/16", Ipv4Addr::from(i << 16)))
            .collect();
        write_list(&list, &all);
        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            stderr.contains("feed poisoned")
                && stderr.contains("coverage guard")
                && stderr.contains("max_coverage")
                && stderr.contains("keeping its last good entries"),
            "{}",
            text(&o)
        );
        assert_eq!(
            members("t4"),
            last_good,
            "the set holds exactly the last good entries"
        );
        assert!(members("t6").is_empty());
    });
}

#[test]
fn conditional_get_and_the_polite_interval() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let stub = Stub::start();
        let dir = tempfile::tempdir().unwrap();
        stub.set(
            "/l",
            Reply::ok("45.0.0.1\n45.0.0.2\n").header("ETag", "\"v1\""),
        );
        let feeds = format!(
            "  - {{ name: web, url: '{}', interval: 4s }}\n",
            stub.url("/l")
        );
        write_config(dir.path(), 100, "", &feeds);
        assert_eq!(sipban(dir.path(), &["sync"]).status.code(), Some(0));
        // Within the interval: no request at all.
        assert_eq!(sipban(dir.path(), &["sync"]).status.code(), Some(0));
        assert_eq!(stub.requests("/l").len(), 1);
        std::thread::sleep(Duration::from_millis(4100));
        stub.set("/l", Reply::status(304, ""));
        let o = sipban(dir.path(), &["sync", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let reqs = stub.requests("/l");
        assert_eq!(reqs.len(), 2);
        assert!(reqs[1]
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("if-none-match") && v == "\"v1\""));
        assert_eq!(json(&o)["sources"][0]["feed"]["status"], "not_modified");
        assert_eq!(
            members("t4").len(),
            2,
            "a 304 keeps listing the cached copy"
        );
    });
}

/// Whatever a feed lists, no allowlisted address and none of the host's own addresses (its
/// interfaces, its default gateway, loopback) ends up in the kernel set.
#[test]
fn hostile_feed_cannot_ban_own_or_allowlisted_addresses() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        for cmd in [
            "ip link add d0 type veth peer name d1",
            "ip addr add 203.0.113.1/24 dev d0",
            "ip -6 addr add 2001:db8:77::1/64 dev d0 nodad",
            "ip link set d0 up",
            "ip route add default via 203.0.113.254",
        ] {
            let argv: Vec<&str> = cmd.split(' ').collect();
            let o = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
            assert!(
                o.status.success(),
                "{cmd}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("evil.txt");
        std::fs::write(
            &list,
            "0.0.0.0/0\n::/0\n127.0.0.1\n::1\n203.0.113.1\n203.0.113.254\n203.0.113.0/24\n2001:db8:77::1\n2001:db8:77::/48\n\
             198.51.100.77\n198.51.100.0/25\n198.51.0.0/16\n10.0.0.1\n192.168.0.0/16\n224.0.0.1\nfe80::1\n\
             garbage\n45.1.2.3\n",
        )
        .unwrap();
        let feeds = format!(
            "  - {{ name: evil, url: 'file://{}', min_prefix: {{ v4: 8, v6: 16 }}, max_invalid: 50% }}\n",
            list.display()
        );
        write_config(dir.path(), 1000, "198.51.100.0/24", &feeds);
        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let protected = [
            "203.0.113.1",
            "203.0.113.254",
            "127.0.0.1",
            "198.51.100.0/24",
            "2001:db8:77::1",
            "::1",
        ];
        for set in ["t4", "t6"] {
            for m in Ipset::new().read(set).unwrap().unwrap().members.keys() {
                for p in protected {
                    let p = sipban::net::parse_net(p).unwrap();
                    assert!(
                        !sipban::net::overlaps(m, &p),
                        "{m} in {set} overlaps protected {p}"
                    );
                }
                assert!(m.prefix_len() > 0);
                assert!(
                    sipban::net::special_range(m).is_none()
                        && sipban::net::private_range(m).is_none(),
                    "{m}"
                );
            }
        }
        let v4 = members("t4");
        assert!(v4.contains("45.1.2.3"));
        // The /24 around our own address is this host's own network: a feed bans none of it.
        let lan = sipban::net::parse_net("203.0.113.0/24").unwrap();
        let covered: u32 = Ipset::new()
            .read("t4")
            .unwrap()
            .unwrap()
            .members
            .keys()
            .filter(|m| lan.contains(*m))
            .map(|m| 1u32 << (32 - m.prefix_len()))
            .sum();
        assert_eq!(covered, 0, "none of the on-link 203.0.113.0/24");
        assert!(!v4.iter().any(|m| m == "203.0.113.0/24"));
        // explain names the rule.
        let o = sipban(dir.path(), &["explain", "203.0.113.1"]);
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("own address"),
            "{}",
            text(&o)
        );
        let o = sipban(dir.path(), &["explain", "198.51.100.77"]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains("allowlist") && out.contains("listed by evil"),
            "{}",
            text(&o)
        );
    });
}

#[test]
fn a_second_concurrent_run_exits_at_once_with_its_own_code() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let stub = Stub::start();
        let dir = tempfile::tempdir().unwrap();
        stub.set(
            "/slow",
            Reply::ok("45.0.0.1\n").delayed(Duration::from_secs(3)),
        );
        let feeds = format!("  - {{ name: slow, url: '{}' }}\n", stub.url("/slow"));
        write_config(dir.path(), 100, "", &feeds);
        let mut first = Command::new(bin())
            .args(["sync", "--config"])
            .arg(dir.path().join("config.yaml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the first run is waiting on the feed (it holds the lock by then).
        let t = Instant::now();
        while stub.requests("/slow").is_empty() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let started = Instant::now();
        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(4), "{}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("another sipban run"),
            "{}",
            text(&o)
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the loser must not wait"
        );
        assert_eq!(first.wait().unwrap().code(), Some(0));
        assert_eq!(members("t4").len(), 1);
    });
}

/// Set equality with a short report (sizes and a few differences) instead of two huge sets.
fn assert_same(got: &HashSet<String>, want: &HashSet<String>, what: &str) {
    if got != want {
        let missing: Vec<_> = want.difference(got).take(5).collect();
        let extra: Vec<_> = got.difference(want).take(5).collect();
        panic!(
            "{what}: {} entries, want {}; missing {} (e.g. {missing:?}), extra {} (e.g. {extra:?})",
            got.len(),
            want.len(),
            want.difference(got).count(),
            got.difference(want).count()
        );
    }
}

/// SIGKILL at random instants of a sync, many times: the next run always converges to the
/// right set and state.
#[test]
fn sigkill_at_random_instants_then_the_next_run_converges() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        let a: Vec<String> = (0..20_000).map(public_v4).collect();
        let b: Vec<String> = (5_000..25_000).map(public_v4).collect(); // 25% different: a rebuild
        let c: Vec<String> = (0..20_000)
            .map(|i| public_v4(if i % 97 == 0 { 50_000 + i } else { i }))
            .collect(); // small diff
        write_config(dir.path(), 30_000, "", &file_feed("f", &list));
        let mut rng = Rng::seeded("kill test");
        write_list(&list, &a);
        assert_eq!(sipban(dir.path(), &["sync"]).status.code(), Some(0));
        // The rounds cycle a→b (rebuild), b→c (rebuild), c→a (small diff), and every round
        // ends converged on its target, so each kind of round starts from the same state. Time
        // one uninterrupted run of each kind to spread that kind's kills over it: a small diff
        // takes a fraction of a rebuild, and one span for all would let most kills land after
        // the fast runs had finished.
        let targets = [&b, &c, &a];
        let mut span = [0u64; 3];
        for (kind, target) in targets.iter().enumerate() {
            write_list(&list, target);
            let t = Instant::now();
            assert_eq!(sipban(dir.path(), &["sync"]).status.code(), Some(0));
            span[kind] = t.elapsed().as_micros().max(1000) as u64;
        }
        let mut killed_mid_run = 0;
        for round in 0..24 {
            let kind = round % 3;
            let target = targets[kind];
            write_list(&list, target);
            let mut child = Command::new(bin())
                .args(["sync", "--config"])
                .arg(dir.path().join("config.yaml"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_micros(rng.next() % (span[kind] * 11 / 10)));
            let _ = child.kill(); // SIGKILL
            let status = child.wait().unwrap();
            if status.code().is_none() {
                killed_mid_run += 1;
            } else {
                // The timed run was slower than this one (a loaded machine): aim earlier.
                span[kind] = (span[kind] * 3 / 4).max(1000);
            }
            // The killed run is gone only once a child it was starting has reached `exec`
            // (which closes its copy of the lock): see `common::lock`.
            let held = lock::await_released(&dir.path().join("state"), Duration::from_secs(10));
            if !held.is_empty() {
                eprintln!("round {round}: waited for the killed run's lock, held by {held:?}");
            }
            // The next run converges...
            let o = sipban(dir.path(), &["sync"]);
            assert!(
                matches!(o.status.code(), Some(0)),
                "round {round}: {}",
                text(&o)
            );
            let want: HashSet<String> = target.iter().cloned().collect();
            assert_same(&members("t4"), &want, &format!("round {round}: kernel set"));
            // ...and so does the state: a dry run plans nothing, and list shows the same.
            let j = json(&sipban(dir.path(), &["sync", "--dry-run", "--json"]));
            assert_eq!(j["baseline"], "kernel");
            for s in j["sets"].as_array().unwrap() {
                assert_eq!(
                    s["adds"].as_array().unwrap().len() + s["dels"].as_array().unwrap().len(),
                    0,
                    "round {round}: {s}"
                );
            }
            let rows = json(&sipban(dir.path(), &["list", "--json"]));
            let listed: HashSet<String> = rows
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["net"].as_str().unwrap().to_string())
                .collect();
            assert_same(&listed, &want, &format!("round {round}: state"));
            // No temporary set is left behind.
            let names = Ipset::new().list_names().unwrap();
            assert!(
                names.iter().all(|n| !n.ends_with("-tmp")),
                "round {round}: leftover {names:?}"
            );
        }
        eprintln!("{killed_mid_run} of 24 kills landed mid-run");
        assert!(
            killed_mid_run >= 10,
            "only {killed_mid_run} of 24 kills landed mid-run; the test proves little"
        );
    });
}

/// The netns helper itself: a namespace exists and has only loopback.
#[test]
fn test_namespace_is_private() {
    let ns = netns_or_skip!();
    let o = ns.exec(&["ip", "-o", "link"]);
    let links = String::from_utf8_lossy(&o.stdout);
    assert_eq!(links.lines().count(), 1, "{links}");
    let _: &NetNs = &ns;
}

/// The Asterisk detector end to end: failures in a followed log put the address in the kernel
/// set through `sync`; the cursor is persisted so the next run does not count them again.
#[test]
fn asterisk_detections_reach_the_kernel_set() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("messages");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut lines = String::new();
        for i in 0..3 {
            lines.push_str(&asterisk_line(now - 30 + i, "45.7.7.7"));
        }
        lines.push_str(&asterisk_line(now - 20, "45.8.8.8")); // below maxretry
        std::fs::write(&log, &lines).unwrap();
        let cfg = format!(
            "state_dir: {}\nsets:\n  v4: {{ name: t4, cap: 100 }}\n  v6: {{ name: t6, cap: 100 }}\nasterisk:\n  logs: [{}]\n  maxretry: 3\n  bantime: 1h\n",
            dir.path().join("state").display(),
            log.display()
        );
        std::fs::write(dir.path().join("config.yaml"), cfg).unwrap();
        let run = || {
            Command::new(bin())
                .args(["sync", "--json", "--config"])
                .arg(dir.path().join("config.yaml"))
                .env("TZ", "UTC")
                .output()
                .unwrap()
        };
        let o = run();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(members("t4"), HashSet::from(["45.7.7.7".to_string()]));
        let j = json(&o);
        let src = &j["sources"][0];
        assert_eq!(src["name"], "asterisk");
        assert_eq!(src["asterisk"]["bans"].as_array().unwrap().len(), 1);
        // Two more failures of the second address: with the persisted cursor and failure window
        // it reaches maxretry now, and the first lines are not read again.
        let mut more = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        use std::io::Write;
        more.write_all(asterisk_line(now - 10, "45.8.8.8").as_bytes())
            .unwrap();
        more.write_all(asterisk_line(now - 9, "45.8.8.8").as_bytes())
            .unwrap();
        let o = run();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let j = json(&o);
        assert_eq!(
            j["sources"][0]["asterisk"]["counters"]["lines"], 2,
            "only the new lines are read"
        );
        assert_eq!(
            members("t4"),
            HashSet::from(["45.7.7.7".to_string(), "45.8.8.8".to_string()])
        );
        let (_, kernel_timeout) = Ipset::new()
            .read("t4")
            .unwrap()
            .unwrap()
            .members
            .into_iter()
            .find(|(n, _)| sipban::net::display_net(n) == "45.7.7.7")
            .unwrap();
        assert!(
            kernel_timeout <= 3600 && kernel_timeout > 3500,
            "bantime 1h from the failure: {kernel_timeout}"
        );
    });
}
