//! Faults on the kernel side of a sync (issue 14, items 7, 8 and 10), each injected into the
//! real kernel in a fresh network namespace: the real binary, real `ipset`, real SQLite.
//!
//! - the cap is a ceiling at every instant of an apply (deletes before adds; `maxelem` = cap);
//! - a set edited by hand behind sipban's back (same count) is reconciled by the next sync;
//! - firewall rules flushed by another tool are put back by the next sync, loudly.

use crate::common::netns::run_in;
use crate::common::run::{bin, json, sipban, text};
use sipban::backend::ipset::Ipset;
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn write_config(dir: &Path, cap: u32, feeds: &str) {
    let cfg = format!(
        "state_dir: {}\nsets:\n  v4: {{ name: t4, cap: {cap} }}\n  v6: {{ name: t6, cap: {cap} }}\nallowlist: []\nfeeds:\n{feeds}",
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

fn members(set: &str) -> HashSet<String> {
    Ipset::new()
        .read(set)
        .expect("read set")
        .map(|k| k.members.keys().map(sipban::net::display_net).collect())
        .unwrap_or_default()
}

fn ipset_ok(args: &[&str]) {
    let o = Command::new("ipset").args(args).output().unwrap();
    assert!(o.status.success(), "ipset {args:?}: {}", text(&o));
}

/// An `ipset` in front of the real one that appends every `restore` batch it is given to
/// `log`: what sipban asked the kernel to do, line by line, in order.
fn recording_ipset(dir: &Path, log: &Path) -> PathBuf {
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v ipset"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    assert!(!real.is_empty(), "ipset not found");
    let shim_dir = dir.join("shim");
    std::fs::create_dir_all(&shim_dir).unwrap();
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = -exist ] && [ \"$2\" = restore ]; then\n  tee -a '{}' | {real} \"$@\"\n  exit $?\nfi\nexec {real} \"$@\"\n",
        log.display()
    );
    let path = shim_dir.join("ipset");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    shim_dir
}

fn sipban_with_path(dir: &Path, path_first: &Path, args: &[&str]) -> Output {
    let path = format!(
        "{}:{}",
        path_first.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(bin())
        .args(args)
        .arg("--config")
        .arg(dir.join("config.yaml"))
        .env("PATH", path)
        .stdin(Stdio::null())
        .output()
        .expect("run sipban")
}

/// Item 7: a set at its cap with an eighth of it replaced (in place, one batch) never holds
/// more than the cap. The kernel is the witness: `maxelem` is the cap and the set is full, so an
/// add sent before its delete is refused ("Hash is full") and the sync falls back to a rebuild,
/// saying so. The batch goes over netlink (an `ipset` in front of the real one sees none of it).
#[test]
fn an_in_place_update_of_a_full_set_never_exceeds_the_cap() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        const CAP: u32 = 4096;
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        let mut items: Vec<String> = (0..CAP).map(public_v4).collect();
        write_list(&list, &items);
        write_config(dir.path(), CAP, &file_feed("big", &list));
        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let before = members("t4");
        assert_eq!(before.len(), CAP as usize);

        // Replace 500 entries: 1,000 changes, under the in-place limit.
        for (k, i) in (0..CAP as usize).step_by(8).take(500).enumerate() {
            items[i] = public_v4(100_000 + k as u32);
        }
        write_list(&list, &items);
        let log = dir.path().join("restore.log");
        let shim = recording_ipset(dir.path(), &log);
        let o = sipban_with_path(dir.path(), &shim, &["sync", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let v4 = &json(&o)["sets"][0];
        assert!(v4["rebuild"].is_null(), "must be in place: {v4}");
        assert_eq!(v4["adds"].as_array().unwrap().len(), 500);
        assert_eq!(v4["dels"].as_array().unwrap().len(), 500);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            !stderr.contains("is full") && !stderr.contains("rebuilding"),
            "an add reached the full set before its delete: {stderr}"
        );
        let batch = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            !batch
                .lines()
                .any(|l| l.starts_with("add ") || l.starts_with("del ")),
            "the diff went through `ipset restore`, not netlink: {batch}"
        );
        let want: HashSet<String> = items.iter().cloned().collect();
        assert_eq!(members("t4"), want);
        // The kernel enforces the ceiling: an add over the cap is refused, whatever the order.
        let (header, _) = Ipset::new().header("t4").unwrap().unwrap();
        assert_eq!(header.maxelem, Some(CAP), "maxelem must be the cap");
    });
}

/// Item 7, upgrade: a set created with the old, larger maxelem (cap + cap/8) is rebuilt to
/// maxelem = cap, keeping its content, while a rule references it.
#[test]
fn a_set_with_the_old_larger_maxelem_is_swapped_to_the_cap() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        let items: Vec<String> = (0..100).map(public_v4).collect();
        write_list(&list, &items);
        write_config(dir.path(), 2000, &file_feed("f", &list));
        ipset_ok(&[
            "create", "t4", "hash:net", "family", "inet", "hashsize", "1024", "maxelem", "3024",
            "timeout", "0",
        ]);
        ipset_ok(&["add", "t4", &public_v4(0), "timeout", "600"]);
        let rule = Command::new("iptables")
            .args([
                "-I",
                "INPUT",
                "-m",
                "set",
                "--match-set",
                "t4",
                "src",
                "-j",
                "DROP",
            ])
            .output();
        let with_rule = rule.is_ok_and(|o| o.status.success());
        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let (header, n) = Ipset::new().header("t4").unwrap().unwrap();
        assert_eq!((header.maxelem, n), (Some(2000), 100));
        if with_rule {
            let info = Ipset::new().info("t4").unwrap().unwrap();
            assert_eq!(info.references, 1, "the rule still uses the set");
        }
    });
}

/// Item 8: a hand edit that keeps the count (one entry deleted, another added) is found and
/// undone by the next sync, which says so.
#[test]
fn a_hand_edit_with_the_same_count_is_repaired_and_reported() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        let items: Vec<String> = (0..50).map(public_v4).collect();
        write_list(&list, &items);
        write_config(dir.path(), 1000, &file_feed("f", &list));
        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let want: HashSet<String> = items.iter().cloned().collect();
        assert_eq!(members("t4"), want);
        // Same count: one listed address gone, one stranger in.
        ipset_ok(&["del", "t4", &public_v4(7)]);
        ipset_ok(&["add", "t4", "198.51.100.99", "timeout", "600"]);
        ipset_ok(&["add", "t4", "198.51.100.98"]);
        ipset_ok(&["del", "t4", &public_v4(8)]);
        assert_eq!(members("t4").len(), want.len());

        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(members("t4"), want, "the kernel set equals the desired set");
        let all = text(&o);
        assert!(
            all.contains("set t4: 2 entries added and 2 removed outside sipban; repaired"),
            "the run reports the repair: {all}"
        );
        // And the next run finds nothing to repair.
        let o = sipban(dir.path(), &["sync"]);
        assert!(!text(&o).contains("outside sipban"), "{}", text(&o));
    });
}

fn config_with_metrics(dir: &Path, list: &Path) {
    write_config(dir, 1000, &file_feed("f", list));
    let mut cfg = std::fs::read_to_string(dir.join("config.yaml")).unwrap();
    cfg.push_str(&format!(
        "metrics:\n  textfile: {}\n",
        dir.join("sipban.prom").display()
    ));
    std::fs::write(dir.join("config.yaml"), cfg).unwrap();
}

fn rule_in_place(tool: &str, set: &str) -> bool {
    Command::new(tool)
        .args([
            "-w",
            "-C",
            "INPUT",
            "-m",
            "set",
            "--match-set",
            set,
            "src",
            "-m",
            "comment",
            "--comment",
            "sipban",
            "-j",
            "DROP",
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Item 10: rules flushed by another tool (`iptables -F`, then `nft flush ruleset` as
/// nftables.service does on a restart) are put back by the next sync, with a warning, a metric
/// and a status line.
#[test]
fn rules_flushed_by_another_tool_are_put_back_by_the_next_sync() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        write_list(&list, &[public_v4(1), "2001:db8:1::1".to_string()]);
        config_with_metrics(dir.path(), &list);
        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let o = sipban(dir.path(), &["firewall", "install"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(rule_in_place("iptables", "t4") && rule_in_place("ip6tables", "t6"));

        // Another tool flushes the chains.
        for tool in ["iptables", "ip6tables"] {
            assert!(Command::new(tool)
                .args(["-w", "-F", "INPUT"])
                .status()
                .unwrap()
                .success());
        }
        assert!(!rule_in_place("iptables", "t4"));
        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let all = text(&o);
        assert!(
            all.contains("the v4 rule for set t4 in filter INPUT") && all.contains("reinstalled"),
            "the run warns: {all}"
        );
        assert!(rule_in_place("iptables", "t4") && rule_in_place("ip6tables", "t6"));
        let prom = std::fs::read_to_string(dir.path().join("sipban.prom")).unwrap();
        assert!(prom.contains("sipban_rules_reinstalled_total 1"), "{prom}");
        assert!(
            prom.contains(
                "sipban_rules_present{set=\"t4\",family=\"v4\",place=\"filter INPUT\"} 1"
            ),
            "{prom}"
        );
        let o = sipban(dir.path(), &["status"]);
        let st = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(st.contains("put back 1 time(s)"), "{st}");
        assert!(st.contains("v4 filter INPUT: drops set t4:"), "{st}");

        // nftables.service's restart: `flush ruleset` (iptables-nft's tables go too).
        let nft = Command::new("nft").args(["flush", "ruleset"]).output();
        if nft.is_ok_and(|o| o.status.success()) {
            assert!(!rule_in_place("iptables", "t4"));
            // `firewall check` sees it without changing anything, and fails.
            let o = sipban(dir.path(), &["firewall", "check"]);
            assert_eq!(o.status.code(), Some(1), "{}", text(&o));
            assert!(text(&o).contains("missing"), "{}", text(&o));
            assert!(!rule_in_place("iptables", "t4"));
            let o = sipban(dir.path(), &["sync"]);
            assert_eq!(o.status.code(), Some(0), "{}", text(&o));
            assert!(text(&o).contains("reinstalled"), "{}", text(&o));
            assert!(rule_in_place("iptables", "t4") && rule_in_place("ip6tables", "t6"));
            let prom = std::fs::read_to_string(dir.path().join("sipban.prom")).unwrap();
            assert!(prom.contains("sipban_rules_reinstalled_total 2"), "{prom}");
        }
        // Nothing missing: a quiet sync, and `firewall check` passes.
        let o = sipban(dir.path(), &["sync"]);
        assert!(!text(&o).contains("reinstalled"), "{}", text(&o));
        let o = sipban(dir.path(), &["firewall", "check"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    });
}

/// Item 10: `firewall check --repair` (what sipban-firewall.service runs after a ruleset
/// reload) puts the rules back by itself.
#[test]
fn firewall_check_repair_puts_the_rules_back() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        write_list(&list, &[public_v4(1)]);
        write_config(dir.path(), 1000, &file_feed("f", &list));
        let o = sipban(dir.path(), &["firewall", "check"]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "nothing recorded yet: {}",
            text(&o)
        );
        assert_eq!(sipban(dir.path(), &["sync"]).status.code(), Some(0));
        assert_eq!(
            sipban(dir.path(), &["firewall", "install"]).status.code(),
            Some(0)
        );
        assert!(Command::new("iptables")
            .args(["-w", "-F", "INPUT"])
            .status()
            .unwrap()
            .success());
        let o = sipban(dir.path(), &["firewall", "check", "--repair"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(text(&o).contains("reinstalled"), "{}", text(&o));
        assert!(rule_in_place("iptables", "t4"));
    });
}

/// Item 10: `status` says loudly when no rule references the sets (their entries block
/// nothing), and shows the rule with its counters once one does.
#[test]
fn status_says_loudly_when_no_rule_references_the_sets() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        write_list(&list, &[public_v4(1), public_v4(2)]);
        write_config(dir.path(), 1000, &file_feed("f", &list));
        assert_eq!(sipban(dir.path(), &["sync"]).status.code(), Some(0));
        let o = sipban(dir.path(), &["status"]);
        let st = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            st.contains("NO FIREWALL RULE REFERENCES SET t4: its 2 entries block nothing"),
            "{st}"
        );
        let j = json(&sipban(dir.path(), &["status", "--json"]));
        assert_eq!(j["sets"][0]["references"], 0, "{j}");
        assert_eq!(
            sipban(dir.path(), &["firewall", "install"]).status.code(),
            Some(0)
        );
        let o = sipban(dir.path(), &["status"]);
        let st = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(!st.contains("NO FIREWALL RULE REFERENCES SET t4"), "{st}");
        assert!(
            st.contains("v4 filter INPUT: drops set t4: 0 packets, 0 bytes"),
            "{st}"
        );
    });
}
