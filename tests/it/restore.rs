//! `sipban restore` (what sipban-restore.service runs at boot) against the real kernel, each
//! test in its own network namespace: state from an earlier run, sets gone as after a reboot,
//! no network at all (even `lo` is down), and the sets must come back with the saved entries
//! and their remaining TTLs.

use crate::common::run::{bin, sipban, text};

use crate::common::netns::run_in;
use sipban::backend::ipset::Ipset;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn write_config(dir: &Path, feed_url: &str, allowlist: &str) {
    std::fs::write(
        dir.join("config.yaml"),
        format!(
            "state_dir: {}\nsets:\n  v4: {{ name: r4, cap: 100 }}\n  v6: {{ name: r6, cap: 100 }}\nallowlist: [{allowlist}]\nfeeds:\n  - {{ name: f, url: '{feed_url}', ttl: 7d }}\n",
            dir.join("state").display()
        ),
    )
    .unwrap();
}

fn now() -> i64 {
    sipban::pipeline::sync::unix_now()
}

/// Members of a set with their remaining kernel timeouts.
fn members(set: &str) -> Option<HashMap<String, u32>> {
    Ipset::new().read(set).expect("read set").map(|k| {
        k.members
            .iter()
            .map(|(n, t)| (sipban::net::display_net(n), *t))
            .collect()
    })
}

fn destroy_sets() {
    for s in ["r4", "r6"] {
        let o = Command::new("ipset").args(["destroy", s]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

/// Set each listed entry's expiry in the saved state (as if time had passed since the sync),
/// through the store itself: feed listings are stored packed, not as rows.
fn set_expiry(dir: &Path, expiries: &[(&str, i64)]) {
    let settings = sipban::config::load(&dir.join("config.yaml")).unwrap();
    let sources = sipban::pipeline::sync::Sources::from_settings(&settings);
    let mut store = sipban::store::Store::open(&dir.join("state")).unwrap();
    let mut entries = store.load_entries(&sources.index()).unwrap();
    for (net, expires) in expiries {
        let n = sipban::net::parse_net(net).unwrap();
        let e = entries.iter_mut().find(|e| e.net == n);
        let e = e.unwrap_or_else(|| panic!("no saved entry {net}"));
        for m in &mut e.marks {
            m.expires = *expires;
        }
    }
    store
        .commit_run(&sipban::store::RunCommit {
            entries: &entries,
            source_names: &sources.names(),
            packed: &sources.packed(),
            feeds: &[],
            blobs: &[],
            run: None,
        })
        .unwrap();
}

/// The remaining TTL in the kernel is what the state says is left: never more, and less only by
/// the seconds the test itself took (a generous bound, not a timing assertion).
fn assert_ttl(got: &HashMap<String, u32>, net: &str, expires: i64, restored_at: i64) {
    let t = *got
        .get(net)
        .unwrap_or_else(|| panic!("{net} not restored: {got:?}"));
    let want = expires - restored_at;
    assert!(
        i64::from(t) <= want && i64::from(t) >= want - 120,
        "{net}: kernel timeout {t}, expected about {want}"
    );
}

#[test]
fn restore_after_a_reboot_recreates_both_sets_with_remaining_ttls_and_no_network() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        std::fs::write(
            &list,
            "45.0.0.1\n45.0.1.0/24\n45.0.2.2\n45.0.3.3\n2001:db8:1::1\n2001:db8:2::/48\n",
        )
        .unwrap();
        write_config(dir.path(), &format!("file://{}", list.display()), "");
        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let t = now();
        let exp = [
            ("45.0.0.1", t + 3_600),
            ("45.0.1.0/24", t + 600_000),
            ("45.0.2.2", t - 10),
            ("2001:db8:1::1", t + 86_400),
            ("2001:db8:2::/48", t + 120_000),
        ];
        set_expiry(dir.path(), &exp);

        // The reboot: no sets, no feed file, no network; the config now names a remote feed
        // (under the same source name) that cannot be reached, and allowlists one address.
        destroy_sets();
        std::fs::remove_file(&list).unwrap();
        write_config(dir.path(), "https://feeds.invalid/list.txt", "45.0.3.3");
        let lo = Command::new("ip")
            .args(["link", "set", "lo", "down"])
            .status()
            .unwrap();
        assert!(lo.success());

        let restored_at = now();
        let o = sipban(dir.path(), &["restore"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("r4 (v4): missing -> 2 entries"), "{out}");
        assert!(out.contains("r6 (v6): missing -> 2 entries"), "{out}");

        let v4 = members("r4").expect("r4 exists");
        let v6 = members("r6").expect("r6 exists");
        // The expired entry and the now-allowlisted one stay out.
        let mut keys: Vec<&String> = v4.keys().collect();
        keys.sort();
        assert_eq!(keys, ["45.0.0.1", "45.0.1.0/24"], "{v4:?}");
        assert_eq!(v6.len(), 2, "{v6:?}");
        for (net, expires) in exp.iter().filter(|(n, _)| *n != "45.0.2.2") {
            let got = if net.contains(':') { &v6 } else { &v4 };
            assert_ttl(got, net, *expires, restored_at);
        }
        // The sets are sipban's own kind, so the next sync diffs instead of rebuilding.
        let (h, _) = Ipset::new().header("r4").unwrap().unwrap();
        assert_eq!((h.set_type.as_str(), h.timeout_support), ("hash:net", true));

        // Restore never writes the state: the entries are as the test left them.
        let settings = sipban::config::load(&dir.path().join("config.yaml")).unwrap();
        let sources = sipban::pipeline::sync::Sources::from_settings(&settings);
        let store = sipban::store::Store::open_read_only(&dir.path().join("state"))
            .unwrap()
            .unwrap();
        assert_eq!(store.load_entries(&sources.index()).unwrap().len(), 6);

        // Restore again with the sets present: the same contents (an atomic swap).
        let o = sipban(dir.path(), &["restore", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(j["sets"][0]["before"], 2, "{j}");
        assert_eq!(j["sets"][0]["after"], 2, "{j}");
        assert_eq!(members("r4").unwrap().len(), 2);
    });
}

#[test]
fn restore_without_saved_state_creates_empty_sets() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), "https://feeds.invalid/list.txt", "");
        let o = sipban(dir.path(), &["restore"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("no saved state"));
        assert_eq!(members("r4").map(|m| m.len()), Some(0));
        assert_eq!(members("r6").map(|m| m.len()), Some(0));
    });
}

#[test]
fn unreadable_state_still_creates_missing_sets_and_fails_loudly() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), "https://feeds.invalid/list.txt", "");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(state.join("state.db"), vec![0x5au8; 4096]).unwrap();
        let o = sipban(dir.path(), &["restore"]);
        // A corrupt state database: exit 6 (issue 14).
        assert_eq!(o.status.code(), Some(6), "{}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("cannot read the saved state"),
            "{}",
            text(&o)
        );
        assert_eq!(members("r4").map(|m| m.len()), Some(0));
        assert_eq!(members("r6").map(|m| m.len()), Some(0));
    });
}

#[test]
fn restore_puts_back_the_firewall_rules_install_recorded() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        std::fs::write(&list, "45.0.0.1\n2001:db8:1::1\n").unwrap();
        write_config(dir.path(), &format!("file://{}", list.display()), "");
        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let o = sipban(dir.path(), &["firewall", "install", "--raw"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let rules_before = save_rules();
        // The reboot: an empty ruleset and no sets.
        let o = Command::new("nft")
            .args(["flush", "ruleset"])
            .output()
            .unwrap();
        assert!(o.status.success());
        for t in ["raw", "filter"] {
            for cmd in ["iptables", "ip6tables"] {
                let _ = Command::new(cmd).args(["-t", t, "-F"]).output();
            }
        }
        destroy_sets();
        let o = sipban(dir.path(), &["restore"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(members("r4").unwrap().len(), 1);
        assert_eq!(save_rules(), rules_before);
        let o = sipban(dir.path(), &["firewall", "status"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    });
}

/// Restore takes only the apply lock: a sync that holds the run lock (downloading) does not
/// keep it from running; a writer in its apply step past the wait does, and nothing changes.
#[test]
fn restore_runs_beside_a_sync_and_changes_nothing_when_an_apply_holds_the_lock() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), "https://feeds.invalid/list.txt", "");
        let state = dir.path().join("state");
        let held = sipban::lock::apply(&state, std::time::Duration::ZERO).unwrap();
        let o = sipban(dir.path(), &["restore"]);
        assert_eq!(o.status.code(), Some(4), "{}", text(&o));
        assert!(
            members("r4").is_none(),
            "a locked-out restore created a set"
        );
        drop(held);
        let _run = sipban::lock::acquire(&state).unwrap();
        let o = sipban(dir.path(), &["restore"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(members("r4").is_some(), "restore did not create the set");
    });
}

/// The sipban rules of both families (the lines that name a sipban set).
fn save_rules() -> Vec<String> {
    let mut out = Vec::new();
    for t in ["iptables-save", "ip6tables-save"] {
        let o = Command::new(t).output().unwrap();
        out.extend(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.contains("--match-set"))
                .map(str::to_string),
        );
    }
    assert_eq!(out.len(), 2, "{out:?}");
    out
}

/// Run a copy of the binary as an unprivileged user (nobody when the tests run as root).
fn sipban_unprivileged(dir: &Path, args: &[&str]) -> Output {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let copy = dir.join("sipban");
    if !copy.exists() {
        std::fs::copy(bin(), &copy).unwrap();
    }
    for p in [dir, copy.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(
        dir.join("config.yaml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let mut cmd = Command::new(&copy);
    cmd.args(args)
        .arg("--config")
        .arg(dir.join("config.yaml"))
        .stdin(Stdio::null());
    if crate::common::netns::is_root() {
        cmd.uid(65534).gid(65534);
    }
    cmd.output().expect("run sipban")
}

#[test]
fn without_privileges_restore_fails_and_a_dry_run_install_still_prints_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "https://feeds.invalid/list.txt", "");
    // The state directory belongs to root (as under systemd): nobody cannot lock it.
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    // Permission denied is a storage fault (exit 5, issue 14), named with the path.
    let o = sipban_unprivileged(dir.path(), &["restore"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(
        text(&o).contains("permission denied: ") && text(&o).contains("sipban.apply.lock"),
        "{}",
        text(&o)
    );
    let o = sipban_unprivileged(dir.path(), &["firewall", "install", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("iptables -w -t filter -I INPUT 1 -m set --match-set r4 src"),
        "{out}"
    );
    assert!(
        out.contains("ip6tables -w -t filter -I INPUT 1 -m set --match-set r6 src"),
        "{out}"
    );
}
