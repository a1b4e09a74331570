//! The set backends side by side (`backend: ipset` and `backend: nft`), against the real kernel
//! in network namespaces: every test here runs the same steps and the same checks with both.
//! - a banned source is dropped across a veth pair while another connects (UDP and TCP, both
//!   families), and `firewall remove` lets it through again;
//! - a full replace, a 1% diff and the cap behave the same (and nft's interval sets get
//!   disjoint contents: a host inside a banned prefix is left out, and the plan stays stable);
//! - `sipban restore` after the firewall was wiped (`nft flush ruleset`; for ipset, rules
//!   flushed and sets destroyed) brings back sets and rules; with nft, `firewall check
//!   --repair` (sipban-firewall.service after an nftables reload) refills the sets too;
//! - the two backends never run at once: with the other backend's rules recorded, sync,
//!   restore and install refuse until `firewall remove`.
//! - with nft, a sync's apply is one transaction for both families (a failing v6 part leaves
//!   the v4 sets unchanged), a sync after `nft flush ruleset` brings back table, sets and rules
//!   in that transaction, and a table of the single-set layout is converted by one sync.

use crate::common::netns::run_in;
use crate::common::run::{json, sipban, text};
use crate::firewall_rules::{
    link_or_skip, listen, senders, sipban_ok, tcp_check, udp_banned_dropped, udp_both_pass,
};
use sipban::backend::ipset::Ipset;
use sipban::backend::nft::Nft;
use std::collections::HashSet;
use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Ipset,
    Nft,
}

const BOTH: [Backend; 2] = [Backend::Ipset, Backend::Nft];

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Ipset => "ipset",
            Backend::Nft => "nft",
        }
    }

    /// The members of `set` as display strings (`None` when the set does not exist), read
    /// through `argv_prefix` (empty: in the current namespace).
    fn members_via(self, prefix: &[OsString], set: &str) -> Option<HashSet<String>> {
        let show = |m: &sipban::net::NetMap<u32>| {
            m.keys()
                .map(sipban::net::display_net)
                .collect::<HashSet<_>>()
        };
        let argv = |tool: &str| {
            let mut v = prefix.to_vec();
            v.push(tool.into());
            v
        };
        match self {
            Backend::Ipset => Ipset::with_argv(argv("ipset"))
                .read(set)
                .expect("read set")
                .map(|k| show(&k.members)),
            Backend::Nft => Nft::with_argv(argv("nft"))
                .read(set)
                .expect("read set")
                .map(|k| show(&k.members)),
        }
    }

    fn members(self, set: &str) -> Option<HashSet<String>> {
        self.members_via(&[], set)
    }
}

fn config(dir: &Path, b: Backend, cap: u32, list: &Path) {
    std::fs::write(
        dir.join("config.yaml"),
        format!(
            "state_dir: {}\nbackend: {}\nsets:\n  v4: {{ name: b-4, cap: {cap} }}\n  v6: {{ name: b-6, cap: {cap} }}\nallow_own_addresses: false\nfeeds:\n  - {{ name: f, url: 'file://{}', ttl: 1d, max_shrink: 100% }}\n",
            dir.join("state").display(),
            b.name(),
            list.display()
        ),
    )
    .unwrap();
}

fn public_v4(i: u32) -> String {
    Ipv4Addr::from(0x2d00_0000u32 + i * 7).to_string()
}

fn write_list(path: &Path, items: &[String]) {
    std::fs::write(path, items.join("\n") + "\n").unwrap();
}

fn ok(o: &std::process::Output) {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
}

#[test]
fn a_banned_source_is_dropped_across_a_veth_pair_while_another_connects() {
    for b in BOTH {
        let Some(link) = link_or_skip() else { return };
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        std::fs::write(&list, "198.51.100.2\n2001:db8:98::2\n").unwrap();
        config(dir.path(), b, 100, &list);
        sipban_ok(&link.pbx, dir.path(), &["sync"]);
        let listeners = listen(&link.pbx);
        let s = senders(&link.peer);
        udp_both_pass(&listeners, &s);
        sipban_ok(&link.pbx, dir.path(), &["firewall", "install"]);
        udp_banned_dropped(&listeners, &s);
        tcp_check(&link.peer, true);
        if b == Backend::Nft {
            // sipban's own table, nothing else: no iptables rule, no ipset.
            let rs = link.pbx.exec_ok(&["nft", "list", "ruleset"]);
            let rs = String::from_utf8_lossy(&rs.stdout).to_string();
            assert!(rs.contains("table inet sipban"), "{rs}");
            assert!(!rs.contains("table ip filter"), "{rs}");
            let sets = link.pbx.exec_ok(&["ipset", "list", "-n"]);
            assert!(sets.stdout.is_empty(), "nft backend made ipsets");
            let st = sipban_ok(&link.pbx, dir.path(), &["firewall", "status"]);
            assert!(st.contains("banned sources are dropped"), "{st}");
            // The early drop before connection tracking works the same.
            sipban_ok(&link.pbx, dir.path(), &["firewall", "install", "--raw"]);
            let rs = link
                .pbx
                .exec_ok(&["nft", "list", "table", "inet", "sipban"]);
            let rs = String::from_utf8_lossy(&rs.stdout).to_string();
            assert!(
                rs.contains("chain prerouting") && !rs.contains("chain input"),
                "{rs}"
            );
            udp_banned_dropped(&listeners, &s);
            // The rules' counters are named objects: a sync re-declares the rules in its
            // transaction (a chain emptied by hand is filled again) and they keep counting.
            let dropped = || {
                let o = link.pbx.exec_ok(&[
                    "nft",
                    "list",
                    "counter",
                    "inet",
                    "sipban",
                    "b_4_addr_drops",
                ]);
                let t = String::from_utf8_lossy(&o.stdout).to_string();
                let w: Vec<&str> = t.split_whitespace().collect();
                let i = w.iter().position(|x| *x == "packets").expect("packets");
                w[i + 1].parse::<u64>().unwrap()
            };
            let before = dropped();
            assert!(before > 0, "nothing counted");
            link.pbx
                .exec_ok(&["nft", "flush", "chain", "inet", "sipban", "prerouting"]);
            sipban_ok(&link.pbx, dir.path(), &["sync"]);
            udp_banned_dropped(&listeners, &s);
            assert!(dropped() > before, "the counter started again");
            sipban_ok(&link.pbx, dir.path(), &["firewall", "check"]);
        }
        sipban_ok(&link.pbx, dir.path(), &["firewall", "remove"]);
        udp_both_pass(&listeners, &s);
        // Remove leaves the sets.
        let prefix = link.pbx.wrap(Vec::<String>::new());
        assert_eq!(
            b.members_via(&prefix, "b-4"),
            Some(HashSet::from(["198.51.100.2".to_string()])),
            "{b:?}"
        );
    }
}

#[test]
fn a_full_replace_a_one_percent_diff_and_the_cap_behave_the_same() {
    for b in BOTH {
        let Some(ns) = crate::common::netns::require_netns() else {
            return;
        };
        run_in(&ns, move || {
            let dir = tempfile::tempdir().unwrap();
            let list = dir.path().join("list.txt");
            let n = 10_000u32;
            let mut items: Vec<String> = (0..n).map(public_v4).collect();
            write_list(&list, &items);
            config(dir.path(), b, n, &list);
            ok(&sipban(dir.path(), &["sync"]));
            let want: HashSet<String> = items.iter().cloned().collect();
            assert_eq!(b.members("b-4"), Some(want), "{b:?}: first sync");

            // 1%: an in-place diff in the plan, exactly those entries changed.
            let changed: Vec<usize> = (0..n as usize).step_by(100).collect();
            for (k, &i) in changed.iter().enumerate() {
                items[i] = Ipv4Addr::from(0x2e00_0000u32 + k as u32).to_string();
            }
            write_list(&list, &items);
            let o = sipban(dir.path(), &["sync", "--json"]);
            ok(&o);
            let j = json(&o);
            let v4 = &j["sets"][0];
            // In place with both (nft: single addresses sit in a hash set, whose deletes cost
            // what they delete).
            assert!(v4["rebuild"].is_null(), "{b:?}: {}", v4["rebuild"]);
            assert_eq!(v4["adds"].as_array().unwrap().len(), changed.len());
            assert_eq!(v4["dels"].as_array().unwrap().len(), changed.len());
            let want: HashSet<String> = items.iter().cloned().collect();
            assert_eq!(b.members("b-4"), Some(want), "{b:?}: after the diff");

            // A few changes: one in-place batch with both backends (nft: delete element +
            // add element in one transaction), untouched entries keep their timeouts.
            for (k, i) in (0..5).enumerate() {
                items[i * 7 + 1] = Ipv4Addr::from(0x2f00_0000u32 + k as u32).to_string();
            }
            write_list(&list, &items);
            let o = sipban(dir.path(), &["sync", "--json"]);
            ok(&o);
            let v4 = &json(&o)["sets"][0];
            assert!(v4["rebuild"].is_null(), "{b:?}: {}", v4["rebuild"]);
            assert_eq!(v4["dels"].as_array().unwrap().len(), 5, "{b:?}");
            let want: HashSet<String> = items.iter().cloned().collect();
            assert_eq!(b.members("b-4"), Some(want), "{b:?}: after the small diff");

            // A full replace: an entirely new list. After a clean run it trusts the mirror
            // and reads nothing back (nft has no count, but a replace makes the set exact).
            items = (n..2 * n).map(public_v4).collect();
            write_list(&list, &items);
            let o = sipban(dir.path(), &["-vv", "sync"]);
            ok(&o);
            assert!(
                String::from_utf8_lossy(&o.stderr).contains("a rebuild needs no read-back"),
                "{b:?}: {}",
                text(&o)
            );
            let want: HashSet<String> = items.iter().cloned().collect();
            assert_eq!(b.members("b-4"), Some(want), "{b:?}: after the replace");

            // The cap: a list over it fills the set to exactly the cap.
            let more: Vec<String> = (0..n + 500).map(public_v4).collect();
            write_list(&list, &more);
            let o = sipban(dir.path(), &["sync", "--json"]);
            ok(&o);
            assert_eq!(json(&o)["sets"][0]["evicted"], 500, "{b:?}");
            assert_eq!(b.members("b-4").unwrap().len(), n as usize, "{b:?}: cap");
            // status and explain read the sets through the configured backend.
            let st = json(&sipban(dir.path(), &["status", "--json"]));
            assert_eq!(st["sets"][0]["entries"], n, "{b:?}: {}", st["sets"]);
            assert_eq!(st["sets"][0]["from_kernel"], true, "{b:?}: {}", st["sets"]);
            // nft counts a set only by listing it whole: status takes the mirror of the last
            // complete apply instead.
            assert_eq!(
                st["sets"][0]["from_mirror"],
                b == Backend::Nft,
                "{b:?}: {}",
                st["sets"]
            );
            let x = json(&sipban(dir.path(), &["explain", &more[0], "--json"]));
            assert_eq!(x["kernel"], true, "{b:?}: {x}");

            // Nested prefixes: nft keeps the covering one only; ipset holds both. Either way a
            // second run has nothing to change.
            write_list(
                &list,
                &[
                    "45.9.1.0/24".to_string(),
                    "45.9.1.7".to_string(),
                    "45.9.2.1".to_string(),
                ],
            );
            ok(&sipban(dir.path(), &["sync"]));
            let got = b.members("b-4").unwrap();
            let mut want = HashSet::from(["45.9.1.0/24".to_string(), "45.9.2.1".to_string()]);
            if b == Backend::Ipset {
                want.insert("45.9.1.7".to_string());
            }
            assert_eq!(got, want, "{b:?}: nested prefixes");
            let o = sipban(dir.path(), &["sync", "--json"]);
            ok(&o);
            let v4 = &json(&o)["sets"][0];
            assert_eq!(v4["adds"].as_array().unwrap().len(), 0, "{b:?}: {v4}");
            assert_eq!(v4["dels"].as_array().unwrap().len(), 0, "{b:?}: {v4}");
        });
    }
}

/// Wipe what a reboot or an nftables reload wipes: for nft `flush ruleset`; for ipset the
/// INPUT rules and the sets.
fn wipe(b: Backend) {
    let run = |argv: &[&str]| {
        let o = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
        assert!(
            o.status.success(),
            "{argv:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    match b {
        Backend::Nft => run(&["nft", "flush", "ruleset"]),
        Backend::Ipset => {
            run(&["iptables", "-w", "-F", "INPUT"]);
            run(&["ip6tables", "-w", "-F", "INPUT"]);
            run(&["ipset", "destroy", "b-4"]);
            run(&["ipset", "destroy", "b-6"]);
        }
    }
}

#[test]
fn restore_after_the_ruleset_was_flushed_brings_back_sets_and_rules() {
    for b in BOTH {
        let Some(ns) = crate::common::netns::require_netns() else {
            return;
        };
        run_in(&ns, move || {
            let dir = tempfile::tempdir().unwrap();
            let list = dir.path().join("list.txt");
            write_list(
                &list,
                &[
                    "45.0.0.1".into(),
                    "45.1.0.0/16".into(),
                    "2001:db8:5::/48".into(),
                ],
            );
            config(dir.path(), b, 100, &list);
            ok(&sipban(dir.path(), &["sync"]));
            ok(&sipban(dir.path(), &["firewall", "install"]));
            let v4 = b.members("b-4").unwrap();
            let v6 = b.members("b-6").unwrap();
            assert_eq!(v4.len(), 2);

            wipe(b);
            assert_eq!(b.members("b-4"), None, "{b:?}: wiped");
            let o = sipban(dir.path(), &["firewall", "check"]);
            assert_eq!(o.status.code(), Some(1), "{b:?}: {}", text(&o));
            ok(&sipban(dir.path(), &["restore"]));
            assert_eq!(b.members("b-4").as_ref(), Some(&v4), "{b:?}");
            assert_eq!(b.members("b-6").as_ref(), Some(&v6), "{b:?}");
            ok(&sipban(dir.path(), &["firewall", "check"]));

            if b == Backend::Nft {
                // sipban-firewall.service after an nftables reload: `check --repair` puts the
                // table back with its sets filled from the saved state.
                wipe(b);
                let o = sipban(dir.path(), &["firewall", "check", "--repair"]);
                ok(&o);
                assert!(text(&o).contains("reinstalled"), "{}", text(&o));
                assert_eq!(b.members("b-4").as_ref(), Some(&v4));
                assert_eq!(b.members("b-6").as_ref(), Some(&v6));
                // And a sync after a flush does the same by itself, in its own transaction:
                // the rule check after it finds nothing to put back.
                wipe(b);
                let o = sipban(dir.path(), &["sync", "--json"]);
                ok(&o);
                let fw = &json(&o)["firewall"];
                assert_eq!(fw["reinstalled"], false, "{}", text(&o));
                assert_eq!(fw["missing"].as_array().map(Vec::len), Some(0), "{fw}");
                assert_eq!(b.members("b-4").as_ref(), Some(&v4));
                assert_eq!(b.members("b-6").as_ref(), Some(&v6));
                ok(&sipban(dir.path(), &["firewall", "check"]));
                // Without recorded rules, the refill brings back the sets only.
                ok(&sipban(dir.path(), &["firewall", "remove"]));
                wipe(b);
                ok(&sipban(dir.path(), &["sync"]));
                assert_eq!(b.members("b-4").as_ref(), Some(&v4));
                let rs = nft_list(&["list", "ruleset"]);
                assert!(!rs.contains("chain"), "{rs}");
            }
        });
    }
}

#[test]
fn the_two_backends_never_run_at_once() {
    for (from, to) in [
        (Backend::Ipset, Backend::Nft),
        (Backend::Nft, Backend::Ipset),
    ] {
        let Some(ns) = crate::common::netns::require_netns() else {
            return;
        };
        run_in(&ns, move || {
            let dir = tempfile::tempdir().unwrap();
            let list = dir.path().join("list.txt");
            write_list(&list, &["45.0.0.1".into(), "2001:db8:5::1".into()]);
            config(dir.path(), from, 100, &list);
            ok(&sipban(dir.path(), &["sync"]));
            ok(&sipban(dir.path(), &["firewall", "install"]));

            // The config now says the other backend: everything that would fill or drop
            // through it refuses, and nothing of it appears.
            config(dir.path(), to, 100, &list);
            for args in [
                &["sync"][..],
                &["restore"][..],
                &["firewall", "install"][..],
                &["ban", "45.0.0.9"][..],
            ] {
                let o = sipban(dir.path(), args);
                assert_ne!(
                    o.status.code(),
                    Some(0),
                    "{from:?}->{to:?} {args:?}: {}",
                    text(&o)
                );
                assert!(
                    text(&o).contains("never run at once")
                        && text(&o).contains("sipban firewall remove"),
                    "{args:?}: {}",
                    text(&o)
                );
            }
            assert_eq!(
                to.members("b-4"),
                None,
                "{from:?}->{to:?}: the other backend ran"
            );

            // `firewall remove` removes the recorded backend's rules; then the switch works.
            ok(&sipban(dir.path(), &["firewall", "remove"]));
            let o = sipban(dir.path(), &["firewall", "check"]);
            ok(&o);
            ok(&sipban(dir.path(), &["sync"]));
            ok(&sipban(dir.path(), &["firewall", "install"]));
            assert_eq!(
                to.members("b-4"),
                Some(HashSet::from(["45.0.0.1".to_string()]))
            );
            // The old backend's rules are gone: iptables holds no sipban rule, or the nft
            // table has no chain.
            let ipt = Command::new("iptables")
                .args(["-w", "-S", "INPUT"])
                .output()
                .unwrap();
            let nft = Command::new("nft")
                .args(["list", "ruleset"])
                .output()
                .unwrap();
            let ipt = String::from_utf8_lossy(&ipt.stdout).to_string();
            let nft = String::from_utf8_lossy(&nft.stdout).to_string();
            match to {
                Backend::Nft => assert!(!ipt.contains("match-set"), "{ipt}"),
                Backend::Ipset => assert!(!nft.contains("chain input"), "{nft}"),
            }
        });
    }
}

#[test]
fn auto_picks_nft_on_an_nftables_only_host_and_ipset_next_to_iptables_legacy_rules() {
    let Some(ns) = crate::common::netns::require_netns() else {
        return;
    };
    if !crate::common::netns::require_program("iptables-legacy") {
        return;
    }
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        write_list(&list, &["45.0.0.1".into()]);
        let cfg = |b: &str| {
            config(dir.path(), Backend::Nft, 100, &list);
            let p = dir.path().join("config.yaml");
            let s = std::fs::read_to_string(&p).unwrap();
            std::fs::write(&p, s.replace("backend: nft", &format!("backend: {b}"))).unwrap();
        };
        // A namespace has an empty nftables ruleset and no legacy rule: nftables only.
        cfg("ipset");
        let o = sipban(dir.path(), &["config", "check"]);
        ok(&o);
        assert!(text(&o).contains("note: backend: ipset"), "{}", text(&o));
        assert!(
            text(&o).contains("`backend: nft`"),
            "the suggestion: {}",
            text(&o)
        );
        cfg("auto");
        let o = sipban(dir.path(), &["config", "check"]);
        assert!(text(&o).contains("backend: nft (auto:"), "{}", text(&o));
        ok(&sipban(dir.path(), &["sync"]));
        assert_eq!(Backend::Nft.members("b-4").map(|m| m.len()), Some(1));
        assert_eq!(Backend::Ipset.members("b-4"), None);

        // An iptables-legacy rule: auto keeps ipset, and no suggestion is made.
        let o = Command::new("iptables-legacy")
            .args(["-w", "-A", "INPUT", "-s", "192.0.2.9", "-j", "ACCEPT"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = sipban(dir.path(), &["config", "check"]);
        assert!(text(&o).contains("backend: ipset (auto:"), "{}", text(&o));
        cfg("ipset");
        let o = sipban(dir.path(), &["config", "check"]);
        assert!(!text(&o).contains("`backend: nft`"), "{}", text(&o));
    });
}

/// `nft -f` of `script` in the current namespace, which must succeed.
fn nft_script(script: &str) {
    let o = crate::common::run::piped(
        Command::new("nft")
            .args(["-f", "-"])
            .stderr(std::process::Stdio::piped()),
        script.as_bytes(),
    );
    assert!(o.status.success(), "{script}: {}", text(&o));
}

fn nft_list(args: &[&str]) -> String {
    let o = Command::new("nft").args(args).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A sync's apply is one transaction for both families: when the v6 part cannot be applied
/// (its address set was recreated with another type), the v4 sets keep what they held, and
/// the run says what to do.
#[test]
fn with_nft_a_failing_v6_part_leaves_the_v4_sets_unchanged() {
    let Some(ns) = crate::common::netns::require_netns() else {
        return;
    };
    run_in(&ns, || {
        let b = Backend::Nft;
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        let first: Vec<String> = vec![
            "45.0.0.1".into(),
            "45.1.0.0/16".into(),
            "2001:db8:5::1".into(),
        ];
        write_list(&list, &first);
        config(dir.path(), b, 100, &list);
        ok(&sipban(dir.path(), &["sync"]));
        let v4 = b.members("b-4").unwrap();
        assert_eq!(v4.len(), 2);

        // The v6 address set, made incompatible (a set of IPv4 addresses under its name).
        nft_script(
            "delete set inet sipban b_6_addr\nadd set inet sipban b_6_addr { type ipv4_addr; flags timeout; }\n",
        );
        // A diff for v4 (one address and one prefix each way) and for v6.
        write_list(
            &list,
            &[
                "45.0.0.2".into(),
                "45.2.0.0/16".into(),
                "2001:db8:5::2".into(),
            ],
        );
        let o = sipban(dir.path(), &["sync"]);
        assert_ne!(o.status.code(), Some(0), "{}", text(&o));
        assert!(
            text(&o).contains("b_6_addr") && text(&o).contains("another type"),
            "{}",
            text(&o)
        );
        assert_eq!(b.members("b-4"), Some(v4), "the v4 part was applied alone");

        // Once the admin removed the odd set, the next sync makes both families right.
        nft_script("delete set inet sipban b_6_addr\n");
        ok(&sipban(dir.path(), &["sync"]));
        let want = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<HashSet<_>>());
        assert_eq!(b.members("b-4"), want(&["45.0.0.2", "45.2.0.0/16"]));
        assert_eq!(b.members("b-6"), want(&["2001:db8:5::2"]));
    });
}

/// A table of the single-set layout (one interval set per family holding addresses and
/// prefixes, one rule each) is converted by the next sync in one transaction: addresses move
/// to the hash sets, the interval sets keep the prefixes, and the chain gets the four rules.
#[test]
fn with_nft_a_sync_migrates_the_single_set_layout_in_one_transaction() {
    let Some(ns) = crate::common::netns::require_netns() else {
        return;
    };
    run_in(&ns, || {
        let b = Backend::Nft;
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        write_list(
            &list,
            &[
                "45.0.0.1".into(),
                "45.1.0.0/16".into(),
                "2001:db8:5::1".into(),
            ],
        );
        config(dir.path(), b, 100, &list);
        ok(&sipban(dir.path(), &["sync"]));
        ok(&sipban(dir.path(), &["firewall", "install"]));
        let (v4, v6) = (b.members("b-4").unwrap(), b.members("b-6").unwrap());

        // What an install of the single-set layout holds.
        Command::new("nft")
            .args(["flush", "ruleset"])
            .status()
            .unwrap();
        nft_script(concat!(
            "add table inet sipban\n",
            "add set inet sipban b_4 { type ipv4_addr; flags interval,timeout; }\n",
            "add set inet sipban b_6 { type ipv6_addr; flags interval,timeout; }\n",
            "add element inet sipban b_4 { 45.0.0.1 timeout 1h, 45.1.0.0/16 timeout 1h }\n",
            "add element inet sipban b_6 { 2001:db8:5::1 timeout 1h }\n",
            "add chain inet sipban input { type filter hook input priority filter - 10; policy accept; }\n",
            "add rule inet sipban input ip saddr @b_4 counter drop comment \"sipban\"\n",
            "add rule inet sipban input ip6 saddr @b_6 counter drop comment \"sipban\"\n",
        ));
        let o = sipban(dir.path(), &["sync", "--json"]);
        ok(&o);
        // The rules were right after the apply: the check after it put nothing back.
        let fw = &json(&o)["firewall"];
        assert_eq!(fw["reinstalled"], false, "{}", text(&o));
        assert_eq!(b.members("b-4").as_ref(), Some(&v4));
        assert_eq!(b.members("b-6").as_ref(), Some(&v6));
        let nets = nft_list(&["list", "set", "inet", "sipban", "b_4"]);
        assert!(
            nets.contains("45.1.0.0/16") && !nets.contains("45.0.0.1"),
            "{nets}"
        );
        let addrs = nft_list(&["list", "set", "inet", "sipban", "b_4_addr"]);
        assert!(addrs.contains("45.0.0.1"), "{addrs}");
        let chain = nft_list(&["list", "chain", "inet", "sipban", "input"]);
        for set in ["@b_4_addr", "@b_4 ", "@b_6_addr", "@b_6 "] {
            assert_eq!(chain.matches(set).count(), 1, "{set}: {chain}");
        }
        ok(&sipban(dir.path(), &["firewall", "check"]));
    });
}
