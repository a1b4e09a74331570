//! `sipban status`, `ban` and `unban` end to end in a private network namespace: the real
//! binary, real `ipset`, real SQLite.

use crate::common::run::{json, sipban, text};

use crate::common::netns::run_in;
use std::path::Path;
use std::process::Output;

fn ok(dir: &Path, args: &[&str]) -> Output {
    let o = sipban(dir, args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
    o
}

fn members(set: &str) -> Vec<String> {
    let mut v: Vec<String> = sipban::backend::ipset::Ipset::new()
        .read(set)
        .unwrap()
        .map(|k| k.members.keys().map(sipban::net::display_net).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn setup(dir: &Path, feed: &[&str]) {
    std::fs::write(dir.join("list.txt"), feed.join("\n") + "\n").unwrap();
    let cfg = format!(
        "state_dir: {}\nsets:\n  v4: {{ name: t4, cap: 100 }}\n  v6: {{ name: t6, cap: 100 }}\nallowlist: [45.9.9.9]\nfeeds:\n  - {{ name: f, url: 'file://{}', ttl: 1d, max_shrink: 100% }}\n",
        dir.join("state").display(),
        dir.join("list.txt").display()
    );
    std::fs::write(dir.join("config.yaml"), cfg).unwrap();
}

#[test]
fn ban_and_unban_change_the_kernel_at_once_and_unban_holds_until_listed_afresh() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        setup(d, &["45.0.0.1", "45.0.0.2"]);
        ok(d, &["sync"]);
        assert_eq!(members("t4"), ["45.0.0.1", "45.0.0.2"]);

        // ban: in the kernel at once, with its TTL, and pinned above every source.
        let o = ok(d, &["ban", "45.5.5.5", "--ttl", "2h"]);
        assert!(text(&o).contains("kernel: added 45.5.5.5"), "{}", text(&o));
        let k = sipban::backend::ipset::Ipset::new()
            .read("t4")
            .unwrap()
            .unwrap();
        let t = k
            .members
            .iter()
            .find(|(n, _)| sipban::net::display_net(n) == "45.5.5.5")
            .map(|(_, t)| *t)
            .expect("banned address in the set");
        assert!(t > 7000 && t <= 7200, "timeout {t}");
        // A ban of an allowlisted address is refused by the gate: nothing saved or applied.
        let o = sipban(d, &["ban", "45.9.9.9"]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(!members("t4").contains(&"45.9.9.9".to_string()));
        // A sync keeps the manual ban (no feed lists it).
        ok(d, &["sync"]);
        assert_eq!(members("t4"), ["45.0.0.1", "45.0.0.2", "45.5.5.5"]);

        let st = json(&ok(d, &["status", "--json"]));
        assert_eq!(st["manual"]["bans"], 1, "{st}");
        assert_eq!(st["last_run"]["outcome"], "ok");
        let t4 = &st["sets"][0];
        assert_eq!(
            (
                t4["name"].as_str(),
                t4["entries"].as_u64(),
                t4["cap"].as_u64()
            ),
            (Some("t4"), Some(3), Some(100))
        );
        let f = st["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "f")
            .unwrap();
        assert_eq!(f["entries"], 2);
        assert!(f["staleness_seconds"].as_i64().unwrap() < 60, "{f}");
        let human = String::from_utf8_lossy(&ok(d, &["status"]).stdout).to_string();
        assert!(
            human.contains("t4") && human.contains("3 of cap 100"),
            "{human}"
        );

        // unban: out at once, and kept out while the feed still lists it.
        let o = ok(d, &["unban", "45.0.0.1"]);
        assert!(
            text(&o).contains("kernel: removed 45.0.0.1"),
            "{}",
            text(&o)
        );
        assert_eq!(members("t4"), ["45.0.0.2", "45.5.5.5"]);
        ok(d, &["sync"]);
        assert_eq!(
            members("t4"),
            ["45.0.0.2", "45.5.5.5"],
            "the feed still lists it: not afresh"
        );
        let x = String::from_utf8_lossy(&ok(d, &["explain", "45.0.0.1"]).stdout).to_string();
        assert!(
            x.contains("unbanned by hand") && x.contains("feeds f must drop it first"),
            "{x}"
        );
        // The feed drops it, then lists it again: afresh, banned again.
        std::fs::write(d.join("list.txt"), "45.0.0.2\n").unwrap();
        ok(d, &["sync"]);
        std::fs::write(d.join("list.txt"), "45.0.0.1\n45.0.0.2\n").unwrap();
        ok(d, &["sync"]);
        assert_eq!(members("t4"), ["45.0.0.1", "45.0.0.2", "45.5.5.5"]);

        // unban --allow: out for good, whatever the feed does.
        ok(d, &["unban", "45.0.0.2", "--allow"]);
        std::fs::write(d.join("list.txt"), "45.0.0.1\n").unwrap();
        ok(d, &["sync"]);
        std::fs::write(d.join("list.txt"), "45.0.0.1\n45.0.0.2\n").unwrap();
        ok(d, &["sync"]);
        assert_eq!(members("t4"), ["45.0.0.1", "45.5.5.5"]);
        let x = String::from_utf8_lossy(&ok(d, &["explain", "45.0.0.2"]).stdout).to_string();
        assert!(x.contains("manual allowlist"), "{x}");
        let st = json(&ok(d, &["status", "--json"]));
        assert_eq!(st["manual"]["allowlist"], 1, "{st}");
    });
}

/// While another writer holds the apply lock past the wait, a request is queued and the next
/// run applies it.
#[test]
fn a_request_made_while_another_writer_holds_the_apply_lock_is_applied_by_the_next_run() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        setup(d, &["45.0.0.1"]);
        ok(d, &["sync"]);
        // Hold the apply lock the way a writer's apply step does.
        let held = sipban::lock::apply(&d.join("state"), std::time::Duration::ZERO).unwrap();
        let started = std::time::Instant::now();
        let o = sipban(d, &["ban", "45.6.6.6"]);
        assert_eq!(o.status.code(), Some(4), "{}", text(&o));
        assert!(text(&o).contains("queued"), "{}", text(&o));
        assert!(started.elapsed() >= sipban::pipeline::manual::APPLY_WAIT);
        assert_eq!(members("t4"), ["45.0.0.1"]);
        drop(held);
        // A process another test is starting may hold a copy of the lock's descriptor until
        // its `exec` (see `common::lock`): the next run starts once the lock is free.
        crate::common::lock::await_released(&d.join("state"), std::time::Duration::from_secs(10));
        ok(d, &["sync"]);
        assert_eq!(members("t4"), ["45.0.0.1", "45.6.6.6"]);
        let st = json(&ok(d, &["status", "--json"]));
        assert_eq!(st["manual"]["queued"], 0);
    });
}

/// A sync that holds the run lock (downloading, say) does not hold up a ban: the ban takes only
/// the apply lock, and is in the kernel set when the command returns.
#[test]
fn a_ban_does_not_wait_for_a_sync_that_holds_the_run_lock() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        setup(d, &["45.0.0.1"]);
        ok(d, &["sync"]);
        let _run = sipban::lock::acquire(&d.join("state")).unwrap();
        let started = std::time::Instant::now();
        let o = ok(d, &["ban", "45.6.6.6"]);
        assert!(text(&o).contains("kernel: added 45.6.6.6"), "{}", text(&o));
        // It never waited out a lock (that takes APPLY_WAIT, then exits 4).
        assert!(started.elapsed() < sipban::pipeline::manual::APPLY_WAIT);
        assert_eq!(members("t4"), ["45.0.0.1", "45.6.6.6"]);
    });
}

/// `ban` on a fresh state (no sync ever ran, no set exists) protects at once: the set is
/// created, and the message names the right family's set.
#[test]
fn a_ban_on_a_fresh_state_is_in_the_kernel_set_at_once() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        setup(d, &["45.0.0.1"]);
        let o = ok(d, &["ban", "45.9.9.8"]);
        assert!(text(&o).contains("kernel: added 45.9.9.8"), "{}", text(&o));
        assert!(!text(&o).contains("t6"), "names the IPv6 set: {}", text(&o));
        assert_eq!(members("t4"), ["45.9.9.8"]);
        let o = ok(d, &["ban", "2001:db8:5::1"]);
        assert!(
            text(&o).contains("kernel: added 2001:db8:5::1"),
            "{}",
            text(&o)
        );
        assert_eq!(members("t6"), ["2001:db8:5::1"]);
        // The next sync keeps both and adds the feed.
        ok(d, &["sync"]);
        assert_eq!(members("t4"), ["45.0.0.1", "45.9.9.8"]);
    });
}

/// Every address the admission gate refuses is refused by `ban` too, with the gate's reason,
/// a non-zero exit, and nothing saved.
#[test]
fn a_ban_of_a_refused_address_exits_non_zero_with_the_gates_reason() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        setup(d, &["45.0.0.1"]);
        for (target, why) in [
            ("0.0.0.0/0", "is the whole address space"),
            ("127.0.0.1", "loopback"),
            ("224.0.0.1", "multicast"),
            ("45.9.9.9", "is protected by 45.9.9.9 (allowlist in config)"),
            (
                "45.0.0.0/4",
                "broader than the source's min_prefix (/8 for manual)",
            ),
        ] {
            let o = sipban(d, &["ban", target]);
            assert_eq!(o.status.code(), Some(2), "{target}: {}", text(&o));
            assert!(
                text(&o).contains("refused: ") && text(&o).contains(why),
                "{target}: {}",
                text(&o)
            );
            assert!(
                text(&o).contains("nothing was saved"),
                "{target}: {}",
                text(&o)
            );
        }
        let st = json(&ok(d, &["status", "--json"]));
        assert_eq!(st["manual"]["bans"], 0, "{st}");
        assert!(members("t4").is_empty());
        // The same reason, in the same words, from explain.
        let x = String::from_utf8_lossy(&ok(d, &["explain", "127.0.0.1"]).stdout).to_string();
        assert!(x.contains("loopback"), "{x}");
    });
}

/// `explain` of an address inside a feed prefix that the gate refused names the refusal.
#[test]
fn explain_names_the_gates_refusal_of_a_feed_prefix() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        setup(d, &["45.0.0.1", "8.0.0.0/7"]);
        ok(d, &["sync"]);
        assert_eq!(members("t4"), ["45.0.0.1"]);
        let o = ok(d, &["explain", "8.8.8.8"]);
        let x = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            x.contains("8.0.0.0/7")
                && x.contains("refused: 8.0.0.0/7 is broader than the source's min_prefix (/"),
            "{x}"
        );
        assert!(!x.contains("not listed by any source"), "{x}");
        let j = json(&ok(d, &["explain", "8.8.8.8", "--json"]));
        assert_eq!(j["refused"][0]["source"], "f", "{j}");
        // A prefix can be asked about too: the refused listing itself, and the listings in it.
        let x = String::from_utf8_lossy(&ok(d, &["explain", "8.0.0.0/7"]).stdout).to_string();
        assert!(x.starts_with("8.0.0.0/7:"), "{x}");
        assert!(x.contains("refused: 8.0.0.0/7 is broader than"), "{x}");
        let x = String::from_utf8_lossy(&ok(d, &["explain", "45.0.0.0/24"]).stdout).to_string();
        assert!(x.contains("listed by f as 45.0.0.1"), "{x}");
        assert!(x.contains("in set t4 as 45.0.0.1"), "{x}");
        assert!(
            x.contains("the live set holds entries that overlap it"),
            "{x}"
        );
        let j = json(&ok(d, &["explain", "45.0.0.0/24", "--json"]));
        assert_eq!(j["target"], "45.0.0.0/24", "{j}");
        let o = sipban(d, &["explain", "not-an-address"]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    });
}

/// The host's DNS resolver is protected by default: a feed (even one allowed to ban private
/// space) cannot ban it, and `explain` names why. Uses the real `/etc/resolv.conf`.
#[test]
fn a_feed_cannot_ban_the_hosts_dns_resolver() {
    let ns = netns_or_skip!();
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let Some(resolver) = sipban::hostaddr::nameservers(&text)
        .into_iter()
        .map(|ip| sipban::net::display_net(&sipban::net::host_net(ip)))
        .find(|ip| {
            let n = sipban::net::parse_net(ip).unwrap();
            sipban::net::special_range(&n).is_none()
        })
    else {
        eprintln!("skipped: /etc/resolv.conf names no resolver outside loopback/link-local");
        return;
    };
    run_in(&ns, move || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        setup(d, &["45.0.0.1", &resolver]);
        let cfg = std::fs::read_to_string(d.join("config.yaml"))
            .unwrap()
            .replace(
                "max_shrink: 100% }",
                "max_shrink: 100%, allow_private: true }",
            );
        std::fs::write(d.join("config.yaml"), cfg).unwrap();
        ok(d, &["sync"]);
        assert_eq!(
            members("t4"),
            ["45.0.0.1"],
            "the resolver {resolver} was banned"
        );
        let x = String::from_utf8_lossy(&ok(d, &["explain", &resolver]).stdout).to_string();
        assert!(x.contains("DNS resolver in /etc/resolv.conf"), "{x}");
    });
}

/// `list` labels each entry by its real state: in the set, in the set in part (split around an
/// allowlisted address), refused by the allowlist (with the reason), or evicted over the cap;
/// TTLs are human-readable in text and seconds in JSON.
#[test]
fn list_labels_entries_by_their_real_state() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        setup(d, &["45.0.0.1", "45.9.9.9", "45.9.9.8/30"]);
        ok(d, &["sync"]);
        let v = json(&ok(d, &["list", "--json"]));
        let row = |net: &str| {
            v.as_array()
                .unwrap()
                .iter()
                .find(|r| r["net"] == net)
                .unwrap_or_else(|| panic!("{net} in {v}"))
                .clone()
        };
        assert_eq!(row("45.0.0.1")["state"], "in_set", "{v}");
        assert_eq!(row("45.9.9.8/30")["state"], "in_set_in_part", "{v}");
        let refused = row("45.9.9.9");
        assert_eq!(refused["state"], "refused", "{v}");
        assert!(
            refused["refused_by"]
                .as_str()
                .unwrap()
                .contains("allowlist in config"),
            "{v}"
        );
        let ttl = row("45.0.0.1")["ttl_left"].as_i64().unwrap();
        assert!(ttl > 86_000 && ttl <= 86_400, "{v}");
        let out = String::from_utf8_lossy(&ok(d, &["list"]).stdout).to_string();
        let line = |net: &str| {
            out.lines()
                .find(|l| l.starts_with(&format!("{net} ")))
                .unwrap_or_else(|| panic!("{net} in {out}"))
                .to_string()
        };
        assert!(line("45.0.0.1").contains("[in set]"), "{out}");
        let l = line("45.0.0.1");
        assert!(
            l.contains("expires in 1d ") || l.contains("expires in 23h 59m"),
            "{out}"
        );
        assert!(
            line("45.9.9.9").contains("[refused: allowlist in config"),
            "{out}"
        );
        assert!(!out.contains("evicted"), "{out}");

        // Over the cap: the lower-ranked entry is evicted, and says so.
        let cfg = std::fs::read_to_string(d.join("config.yaml")).unwrap();
        std::fs::write(
            d.join("config.yaml"),
            cfg.replace("name: t4, cap: 100", "name: t4, cap: 1"),
        )
        .unwrap();
        std::fs::write(d.join("list.txt"), "45.0.0.1\n45.0.0.2\n").unwrap();
        ok(d, &["sync"]);
        let v = json(&ok(d, &["list", "--json"]));
        let states: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["state"].as_str())
            .collect();
        assert!(
            states.contains(&"in_set") && states.contains(&"evicted"),
            "{v}"
        );
    });
}
