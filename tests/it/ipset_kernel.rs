//! `firewall::ipset` against the real kernel and the real `ipset` tool.
//!
//! Every test works in its own fresh network namespace (`common::netns`), so the host's sets and
//! rules are never touched. Without root the tests skip with a message (they fail under
//! `CI=true`). No assertion depends on how fast the machine is.

use crate::common::netns::{require_program, NetNs};
use ipnet::{IpNet, Ipv4Net};
use sipban::backend::ipset::{Ipset, IpsetError, SetSpec};
use sipban::net::{parse_net, Family};
use std::collections::HashMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn n(s: &str) -> IpNet {
    parse_net(s).unwrap()
}

fn ipset_in(ns: &NetNs) -> Ipset {
    Ipset::with_argv(ns.wrap(["ipset"]))
}

fn spec(name: &str, family: Family) -> SetSpec {
    SetSpec {
        name: name.into(),
        family,
        maxelem: 65536,
        hashsize: 1024,
    }
}

/// `count` consecutive IPv4 host prefixes starting at `first`.
fn hosts(first: Ipv4Addr, count: u32) -> Vec<IpNet> {
    let base = u32::from(first);
    (0..count)
        .map(|i| IpNet::V4(Ipv4Net::from(Ipv4Addr::from(base + i))))
        .collect()
}

/// Read `name` and check it holds exactly `want`, each timeout at most the requested value and
/// at most 2 s below it (ipset rounds the remaining time down, plus time spent between calls).
fn assert_exactly(ipset: &Ipset, name: &str, want: &[(IpNet, u32)]) {
    let set = ipset
        .read(name)
        .unwrap()
        .unwrap_or_else(|| panic!("set {name} missing"));
    let want: HashMap<IpNet, u32> = want.iter().copied().collect();
    let mut got_keys: Vec<_> = set.members.keys().collect();
    let mut want_keys: Vec<_> = want.keys().collect();
    got_keys.sort();
    want_keys.sort();
    assert_eq!(got_keys, want_keys, "members of {name}");
    for (net, requested) in &want {
        let left = set.members[net];
        assert!(
            left <= *requested && left + 2 >= *requested,
            "{net}: timeout {left}, requested {requested}"
        );
    }
}

fn out_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn rebuild_into_empty_namespace_creates_v4_set() {
    let ns = netns_or_skip!();
    let ipset = ipset_in(&ns);
    let s = spec("sb4", Family::V4);
    let entries = [
        (n("192.0.2.1"), 3600),
        (n("198.51.100.0/24"), 60),
        (n("203.0.113.128/25"), 86400),
    ];
    ipset.rebuild(&s, &entries).unwrap();
    assert_exactly(&ipset, "sb4", &entries);
    let (header, count) = ipset.header("sb4").unwrap().unwrap();
    assert_eq!(count, 3);
    assert!(header.matches(&s), "{header:?}");
    assert_eq!(ipset.list_names().unwrap(), vec!["sb4".to_string()]);
}

#[test]
fn rebuild_into_empty_namespace_creates_v6_set() {
    let ns = netns_or_skip!();
    let ipset = ipset_in(&ns);
    let s = spec("sb6", Family::V6);
    let entries = [
        (n("2001:db8::bad"), 3600),
        (n("2001:db8:1::/48"), 120),
        (n("2001:db8:2::1"), 7),
    ];
    ipset.rebuild(&s, &entries).unwrap();
    assert_exactly(&ipset, "sb6", &entries);
    let (header, count) = ipset.header("sb6").unwrap().unwrap();
    assert_eq!((header.family, count), (Some(Family::V6), 3));
    assert!(header.matches(&s), "{header:?}");
}

#[test]
fn apply_diff_adds_and_deletes_exactly() {
    let ns = netns_or_skip!();
    let ipset = ipset_in(&ns);
    let s = spec("sb4", Family::V4);
    let (a, b, c, d) = (
        n("192.0.2.1"),
        n("192.0.2.2"),
        n("198.51.100.0/24"),
        n("203.0.113.7"),
    );
    ipset.rebuild(&s, &[(a, 100), (b, 100), (c, 100)]).unwrap();

    ipset.apply_diff(&s, &[(d, 200)], &[b]).unwrap();
    assert_exactly(&ipset, "sb4", &[(a, 100), (c, 100), (d, 200)]);

    // Re-adding a present entry sets its timeout to the new value, up or down.
    ipset.apply_diff(&s, &[(a, 5000), (c, 10)], &[]).unwrap();
    assert_exactly(&ipset, "sb4", &[(a, 5000), (c, 10), (d, 200)]);

    // Deleting an absent entry is not an error (`-exist`); an empty diff runs nothing.
    ipset.apply_diff(&s, &[], &[b, d]).unwrap();
    ipset.apply_diff(&s, &[], &[]).unwrap();
    assert_exactly(&ipset, "sb4", &[(a, 5000), (c, 10)]);

    let s6 = spec("sb6", Family::V6);
    ipset.rebuild(&s6, &[(n("2001:db8::1"), 100)]).unwrap();
    ipset
        .apply_diff(&s6, &[(n("2001:db8:ffff::/48"), 300)], &[n("2001:db8::1")])
        .unwrap();
    assert_exactly(&ipset, "sb6", &[(n("2001:db8:ffff::/48"), 300)]);
}

#[test]
fn apply_diff_on_missing_set_names_the_line() {
    let ns = netns_or_skip!();
    let ipset = ipset_in(&ns);
    let err = ipset
        .apply_diff(&spec("nope", Family::V4), &[(n("192.0.2.1"), 60)], &[])
        .unwrap_err();
    match &err {
        IpsetError::Failed { line, message, .. } => {
            assert_eq!(*line, Some(1));
            assert!(message.contains("does not exist"), "{message}");
            assert!(
                message.contains("add nope 192.0.2.1 timeout 60"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(err
        .to_string()
        .starts_with("ipset restore failed at line 1"));
}

#[test]
fn ipset_stopping_early_reports_its_own_error_not_a_broken_pipe() {
    let ns = netns_or_skip!();
    let ipset = ipset_in(&ns);
    // About 3 MB of batch: far more than a pipe holds, so ipset exits (missing set) long before
    // sipban has written it all, and the write fails with EPIPE.
    let adds: Vec<_> = hosts(Ipv4Addr::new(10, 0, 0, 0), 65_536)
        .into_iter()
        .map(|n| (n, 60))
        .collect();
    let err = ipset
        .apply_diff(&spec("nope", Family::V4), &adds, &[])
        .unwrap_err();
    match &err {
        IpsetError::Failed {
            line: Some(_),
            message,
            ..
        } => {
            assert!(message.contains("does not exist"), "{message}");
        }
        other => panic!("expected ipset's own error with a line number, got {other:?}"),
    }
}

#[test]
fn leftover_tmp_set_never_reaches_the_live_set() {
    let ns = netns_or_skip!();
    let ipset = ipset_in(&ns);
    let s = spec("sb4", Family::V4);
    let entries = [(n("192.0.2.1"), 600), (n("192.0.2.2"), 600)];

    // No live set; the "killed run" left a tmp set of another type with junk in it.
    ns.exec_ok(&["ipset", "create", "sb4-tmp", "hash:ip", "maxelem", "8"]);
    ns.exec_ok(&["ipset", "add", "sb4-tmp", "10.9.9.9"]);
    ipset.rebuild(&s, &entries).unwrap();
    assert_exactly(&ipset, "sb4", &entries);
    assert!(ipset.read("sb4-tmp").unwrap().is_none());

    // A live set exists; the leftover tmp set has the very same type and junk members.
    ns.exec_ok(&[
        "ipset", "create", "sb4-tmp", "hash:net", "family", "inet", "hashsize", "1024", "maxelem",
        "65536", "timeout", "0",
    ]);
    ns.exec_ok(&["ipset", "add", "sb4-tmp", "10.8.0.0/16"]);
    let entries = [(n("192.0.2.3"), 600)];
    ipset.rebuild(&s, &entries).unwrap();
    assert_exactly(&ipset, "sb4", &entries);
    assert_eq!(ipset.list_names().unwrap(), vec!["sb4".to_string()]);
}

#[test]
fn rebuild_swaps_a_set_an_iptables_rule_references() {
    let ns = netns_or_skip!();
    if !require_program("iptables") {
        return;
    }
    let ipset = ipset_in(&ns);
    let s = spec("sb4", Family::V4);
    ipset.rebuild(&s, &[(n("192.0.2.1"), 600)]).unwrap();
    let rule = ["-m", "set", "--match-set", "sb4", "src", "-j", "DROP"];
    let mut insert = vec!["iptables", "-I", "INPUT"];
    insert.extend(rule);
    ns.exec_ok(&insert);
    assert_eq!(ipset.info("sb4").unwrap().unwrap().references, 1);

    // Another maxelem: only a swap can change it while the rule holds the set.
    let s2 = SetSpec {
        maxelem: 131072,
        ..s.clone()
    };
    let entries = [(n("198.51.100.0/24"), 900), (n("203.0.113.5"), 900)];
    ipset.rebuild(&s2, &entries).unwrap();
    assert_exactly(&ipset, "sb4", &entries);
    let info = ipset.info("sb4").unwrap().unwrap();
    assert!(info.header.matches(&s2), "{:?}", info.header);
    assert_eq!(info.references, 1, "the rule follows the swapped-in set");
    let mut check = vec!["iptables", "-C", "INPUT"];
    check.extend(rule);
    ns.exec_ok(&check);
    assert_eq!(ipset.list_names().unwrap(), vec!["sb4".to_string()]);
}

#[test]
fn live_set_of_another_type_is_replaced_when_unreferenced() {
    let ns = netns_or_skip!();
    let ipset = ipset_in(&ns);
    let entries = [(n("192.0.2.0/24"), 600), (n("203.0.113.1"), 600)];

    ns.exec_ok(&["ipset", "create", "sb4", "hash:ip"]);
    ns.exec_ok(&["ipset", "add", "sb4", "10.1.1.1"]);
    let s = spec("sb4", Family::V4);
    ipset.rebuild(&s, &entries).unwrap();
    assert_exactly(&ipset, "sb4", &entries);
    assert!(ipset.header("sb4").unwrap().unwrap().0.matches(&s));

    // Same type, other family: cannot be swapped either.
    ns.exec_ok(&["ipset", "create", "sb6", "hash:net", "family", "inet"]);
    let s6 = spec("sb6", Family::V6);
    ipset.rebuild(&s6, &[(n("2001:db8::1"), 60)]).unwrap();
    assert_exactly(&ipset, "sb6", &[(n("2001:db8::1"), 60)]);
    let mut names = ipset.list_names().unwrap();
    names.sort();
    assert_eq!(names, ["sb4", "sb6"]);
}

#[test]
fn live_set_of_another_type_that_is_referenced_is_an_error() {
    let ns = netns_or_skip!();
    let ipset = ipset_in(&ns);
    ns.exec_ok(&["ipset", "create", "sb4", "hash:ip"]);
    ns.exec_ok(&["ipset", "add", "sb4", "10.1.1.1"]);
    // A reference the kernel counts like a rule's; iptables is used when it is installed.
    if require_program("iptables") {
        ns.exec_ok(&[
            "iptables",
            "-I",
            "INPUT",
            "-m",
            "set",
            "--match-set",
            "sb4",
            "src",
            "-j",
            "DROP",
        ]);
    } else {
        ns.exec_ok(&["ipset", "create", "holder", "list:set"]);
        ns.exec_ok(&["ipset", "add", "holder", "sb4"]);
    }

    let err = ipset
        .rebuild(&spec("sb4", Family::V4), &[(n("192.0.2.1"), 60)])
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("sb4"), "{text}");
    assert!(text.contains("referenced"), "{text}");
    assert!(text.contains("hash:ip"), "{text}");

    // Nothing changed: the old set and its member are intact, no tmp set left behind.
    let old = ipset.read("sb4").unwrap().unwrap();
    assert_eq!(old.header.set_type, "hash:ip");
    assert_eq!(old.members.keys().collect::<Vec<_>>(), [&n("10.1.1.1")]);
    assert!(ipset.read("sb4-tmp").unwrap().is_none());
}

/// Parse `ipset list -t` the way an outside observer would: (maxelem, number of entries).
fn observe(ns: &NetNs, name: &str) -> Result<(u32, usize), String> {
    let out = ns.exec(&["ipset", "list", "-t", name]);
    let text = out_text(&out);
    if !out.status.success() {
        return Err(text);
    }
    let maxelem = text
        .lines()
        .find_map(|l| l.strip_prefix("Header: "))
        .and_then(|h| {
            let mut t = h.split_whitespace();
            t.position(|w| w == "maxelem")?;
            t.next()?.parse().ok()
        });
    let entries = text
        .lines()
        .find_map(|l| l.strip_prefix("Number of entries: "))
        .and_then(|v| v.trim().parse().ok());
    match (maxelem, entries) {
        (Some(m), Some(e)) => Ok((m, e)),
        _ => Err(text),
    }
}

#[test]
fn concurrent_reader_never_sees_a_partial_set_during_rebuild() {
    let ns = netns_or_skip!();
    let ipset = ipset_in(&ns);
    const COUNT: u32 = 65_536;
    // The two generations differ in maxelem, so the poller can tell old from new.
    let old = SetSpec {
        name: "sb4".into(),
        family: Family::V4,
        maxelem: 131_072,
        hashsize: 1024,
    };
    let new = SetSpec {
        maxelem: 262_144,
        hashsize: 65_536,
        ..old.clone()
    };
    let old_entries: Vec<_> = hosts(Ipv4Addr::new(10, 0, 0, 0), COUNT)
        .into_iter()
        .map(|n| (n, 3600))
        .collect();
    let new_entries: Vec<_> = hosts(Ipv4Addr::new(172, 16, 0, 0), COUNT)
        .into_iter()
        .map(|n| (n, 7200))
        .collect();
    ipset.rebuild(&old, &old_entries).unwrap();
    assert_eq!(observe(&ns, "sb4"), Ok((131_072, COUNT as usize)));

    let stop = AtomicBool::new(false);
    let rebuilding = AtomicBool::new(false);
    let polls = AtomicUsize::new(0);
    let during = AtomicUsize::new(0);
    let seen = Mutex::new(Vec::new());
    let elapsed = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let started_during = rebuilding.load(Ordering::SeqCst);
                let seen_now = observe(&ns, "sb4");
                if started_during {
                    during.fetch_add(1, Ordering::SeqCst);
                }
                polls.fetch_add(1, Ordering::SeqCst);
                seen.lock().unwrap().push(seen_now);
            }
        });
        while polls.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        rebuilding.store(true, Ordering::SeqCst);
        let t0 = Instant::now();
        let result = ipset.rebuild(&new, &new_entries);
        let elapsed = t0.elapsed();
        stop.store(true, Ordering::SeqCst);
        result.unwrap();
        elapsed
    });

    let seen = seen.into_inner().unwrap();
    for s in &seen {
        assert!(
            matches!(s, Ok((131_072, c)) | Ok((262_144, c)) if *c == COUNT as usize),
            "a reader saw {s:?}"
        );
    }
    let during = during.into_inner();
    assert!(
        during >= 3,
        "the reader polled only {during} times during the rebuild"
    );
    assert_eq!(observe(&ns, "sb4"), Ok((262_144, COUNT as usize)));
    let set = ipset.read("sb4").unwrap().unwrap();
    assert_eq!(set.members.len(), COUNT as usize);
    assert!(set.members.contains_key(&n("172.16.255.255")));
    assert!(!set.members.contains_key(&n("10.0.0.1")));
    assert!(ipset.read("sb4-tmp").unwrap().is_none());
    let _ = writeln!(
        std::io::stderr(),
        "rebuild of {COUNT} entries over a live set: {elapsed:?}; {during} reads during it, \
         all of a complete set"
    );
}

#[test]
fn read_and_header_of_a_missing_set_are_none() {
    let ns = netns_or_skip!();
    let ipset = ipset_in(&ns);
    assert!(ipset.read("absent").unwrap().is_none());
    assert!(ipset.header("absent").unwrap().is_none());
    assert!(ipset.list_names().unwrap().is_empty());
}

#[test]
fn missing_ipset_program_is_not_installed() {
    let ipset = Ipset::with_argv(vec!["/nonexistent/ipset".into()]);
    assert!(matches!(ipset.read("x"), Err(IpsetError::NotInstalled)));
    assert!(matches!(ipset.list_names(), Err(IpsetError::NotInstalled)));
    let err = ipset
        .rebuild(&spec("x", Family::V4), &[(n("192.0.2.1"), 1)])
        .unwrap_err();
    assert!(matches!(err, IpsetError::NotInstalled), "{err:?}");
    assert!(err.to_string().contains("apt-get install ipset"));

    // The same when a wrapper (here `ip netns exec`) is what fails to find it.
    let ns = netns_or_skip!();
    let wrapped = Ipset::with_argv(ns.wrap(["/nonexistent/ipset"]));
    assert!(matches!(wrapped.read("x"), Err(IpsetError::NotInstalled)));
}

#[test]
fn unprivileged_ipset_is_permission_denied() {
    let ns = netns_or_skip!();
    if !require_program("setpriv") {
        return;
    }
    let nobody = Ipset::with_argv(ns.wrap([
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "ipset",
    ]));
    let err = nobody.read("x").unwrap_err();
    assert!(matches!(err, IpsetError::PermissionDenied(_)), "{err:?}");
    assert!(err.to_string().contains("CAP_NET_ADMIN"), "{err}");
    let err = nobody
        .apply_diff(&spec("x", Family::V4), &[(n("192.0.2.1"), 1)], &[])
        .unwrap_err();
    assert!(matches!(err, IpsetError::PermissionDenied(_)), "{err:?}");
}

/// The set named `name` as `ipset list -t` describes it: its header lines, without the ones
/// that differ between two equal sets (name, memory size, the random initval).
fn list_header(name: &str) -> Vec<String> {
    let o = std::process::Command::new("ipset")
        .args(["list", "-t", name])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out_text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.starts_with("Name:") && !l.starts_with("Size in memory:"))
        .map(|l| match l.find(" initval ") {
            Some(at) => l[..at].to_string(),
            None => l.to_string(),
        })
        .collect()
}

/// Sets of another namespace's `ipset list -n`.
fn set_names() -> Vec<String> {
    let o = std::process::Command::new("ipset")
        .args(["list", "-n"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The netlink path (`Ipset::new`, as the binary uses it) and `ipset restore` (a wrapper) build
/// the same sets: the same header and revision, the same members, the same timeouts, for both
/// families, prefixes and clamped timeouts, across several netlink messages; and a second
/// rebuild swaps new content in and leaves no temporary set.
#[test]
fn a_netlink_rebuild_builds_what_ipset_restore_builds() {
    let ns = netns_or_skip!();
    crate::common::netns::run_in(&ns, || {
        let nl = Ipset::new();
        let tool = Ipset::with_argv(vec!["ipset".into()]);
        let mut v4: Vec<(IpNet, u32)> = hosts(Ipv4Addr::new(45, 1, 0, 0), 2500)
            .into_iter()
            .enumerate()
            .map(|(i, n)| (n, 60 + (i as u32 * 7) % 5000))
            .collect();
        v4.push((n("198.51.100.0/24"), 600));
        v4.push((n("203.0.113.128/25"), u32::MAX)); // clamped to MAX_TIMEOUT
        v4.push((n("100.64.0.0/10"), 3600));
        let v6 = vec![
            (n("2001:db8::1"), 300),
            (n("2001:db8:1::/48"), 900),
            (n("2001:db8:2::/64"), 1200),
            (n("2001:db8:3::8/125"), 1500),
        ];
        for (label, ipset) in [("nl", &nl), ("tool", &tool)] {
            ipset
                .rebuild(&spec(&format!("{label}4"), Family::V4), &v4)
                .unwrap();
            ipset
                .rebuild(&spec(&format!("{label}6"), Family::V6), &v6)
                .unwrap();
        }
        for family in ["4", "6"] {
            let (a, b) = (format!("nl{family}"), format!("tool{family}"));
            assert_eq!(list_header(&a), list_header(&b), "headers of {a} and {b}");
            let a = tool.read(&a).unwrap().unwrap();
            let b = tool.read(&b).unwrap().unwrap();
            let mut keys: Vec<_> = a.members.keys().collect();
            let mut other: Vec<_> = b.members.keys().collect();
            keys.sort();
            other.sort();
            assert_eq!(keys, other, "members of nl{family} and tool{family}");
            for (net, left) in a.members.iter() {
                assert!(
                    left.abs_diff(b.members[net]) <= 2,
                    "{net}: {left} vs {}",
                    b.members[net]
                );
            }
        }
        assert_eq!(
            tool.read("nl4").unwrap().unwrap().members.len(),
            v4.len(),
            "every entry arrived"
        );
        let again: Vec<(IpNet, u32)> = hosts(Ipv4Addr::new(45, 2, 0, 0), 1200)
            .into_iter()
            .map(|n| (n, 300))
            .collect();
        nl.rebuild(&spec("nl4", Family::V4), &again).unwrap();
        assert_exactly(&nl, "nl4", &again);
        assert!(
            !set_names().iter().any(|s| s.ends_with("-tmp")),
            "{:?}",
            set_names()
        );
    });
}

/// A batch the kernel refuses over netlink reads exactly as `ipset restore` reports it (the same
/// line, message and quoted input), and leaves the live set as it was and no temporary set.
#[test]
fn netlink_errors_read_as_ipset_restore_errors() {
    let ns = netns_or_skip!();
    crate::common::netns::run_in(&ns, || {
        let nl = Ipset::new();
        let tool = Ipset::with_argv(vec!["ipset".into()]);
        let small = SetSpec {
            maxelem: 100,
            ..spec("p4", Family::V4)
        };
        let live: Vec<(IpNet, u32)> = hosts(Ipv4Addr::new(45, 3, 0, 0), 10)
            .into_iter()
            .map(|n| (n, 600))
            .collect();
        let over: Vec<(IpNet, u32)> = hosts(Ipv4Addr::new(45, 4, 0, 0), 150)
            .into_iter()
            .map(|n| (n, 600))
            .collect();
        let mut errors = Vec::new();
        for ipset in [&tool, &nl] {
            ipset.rebuild(&small, &live).unwrap();
            let err = ipset.rebuild(&small, &over).unwrap_err();
            assert!(matches!(err, IpsetError::Failed { .. }), "{err:?}");
            assert_exactly(&tool, "p4", &live);
            assert_eq!(set_names(), ["p4"]);
            let missing = ipset
                .apply_diff(&spec("nope", Family::V4), &[(n("192.0.2.1"), 60)], &[])
                .unwrap_err();
            for e in [err, missing] {
                match e {
                    IpsetError::Failed { line, message, .. } => errors.push((line, message)),
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(errors[..2], errors[2..], "ipset restore, then netlink");
        assert_eq!(errors[2].0, Some(104));
        assert_eq!(
            errors[2].1,
            "Hash is full, cannot add more elements (input: `add p4-tmp 45.4.0.100 timeout 600`)"
        );
        assert_eq!(errors[3].0, Some(1));
    });
}

/// Without CAP_NET_ADMIN the kernel refuses a netlink batch, and that reads as a permission
/// problem (what the admin must fix), not as a failed line.
#[test]
fn netlink_without_cap_net_admin_is_permission_denied() {
    let ns = netns_or_skip!();
    crate::common::netns::run_in(&ns, || {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let mut header = Header {
            version: 0x2008_0522,
            pid: 0,
        };
        let mut data = [Data::default(); 2];
        // SAFETY: valid pointers to a capability header and two data blocks (version 3).
        let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
        assert_eq!(rc, 0, "capget: {}", std::io::Error::last_os_error());
        data[0].effective &= !(1 << 12); // CAP_NET_ADMIN, in this thread only
                                         // SAFETY: as above; capset on pid 0 changes only the calling thread.
        let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
        assert_eq!(rc, 0, "capset: {}", std::io::Error::last_os_error());
        let err = Ipset::new()
            .rebuild_known(&spec("x4", Family::V4), &[(n("192.0.2.1"), 60)], None)
            .unwrap_err();
        assert!(matches!(err, IpsetError::PermissionDenied(_)), "{err:?}");
        assert!(err.to_string().contains("CAP_NET_ADMIN"), "{err}");
    });
}

/// Reading over netlink (`Ipset::new`, as the binary reads) gives what the tool's `save` and
/// `list -t` give, for the kinds of set a box may hold: hash:net of both families with prefixes,
/// timeouts, a permanent and a `nomatch` entry, across several netlink messages; hash:ip with
/// and without timeouts, counters and comments; a bitmap and a list:set (read by the tool), and
/// a set's reference count; and the listing of every set at once.
#[test]
fn netlink_reads_what_the_tool_reads() {
    let ns = netns_or_skip!();
    crate::common::netns::run_in(&ns, || {
        let mut batch = String::from(
            "create a4 hash:net family inet hashsize 1024 maxelem 5000 timeout 0\n\
             create a6 hash:net family inet6 hashsize 1024 maxelem 100\n\
             create h4 hash:ip family inet\n\
             create h6 hash:ip family inet6 timeout 300 counters comment\n\
             create p bitmap:port range 1-1000\n\
             create l list:set\n\
             add a4 198.51.100.0/24 timeout 0\n\
             add a4 203.0.113.0/25 nomatch timeout 900\n\
             add a6 2001:db8::/32\n\
             add a6 2001:db8:1::1\n\
             add h4 192.0.2.7\n\
             add h6 2001:db8::7 timeout 120 comment \"a b\"\n\
             add p 80\n\
             add l a4\n",
        );
        for (i, net) in hosts(Ipv4Addr::new(45, 5, 0, 0), 3000).iter().enumerate() {
            batch.push_str(&format!("add a4 {net} timeout {}\n", 100 + i));
        }
        let mut child = std::process::Command::new("ipset")
            .arg("restore")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(batch.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
        let nl = Ipset::new();
        let tool = Ipset::with_argv(vec!["ipset".into()]);
        let (ours, theirs) = (nl.snapshot().unwrap(), tool.snapshot().unwrap());
        for name in ["a4", "a6", "h4", "h6", "p", "l", "missing"] {
            assert_eq!(nl.info(name).unwrap(), tool.info(name).unwrap(), "{name}");
            let snapped = ours.info(name).unwrap();
            assert_eq!(
                snapped,
                theirs.info(name).unwrap(),
                "{name} in the snapshots"
            );
            assert_eq!(snapped.is_some(), name != "missing", "{name}");
            let (a, b) = match (nl.read(name), tool.read(name)) {
                (Ok(Some(a)), Ok(Some(b))) => (a, b),
                (Ok(None), Ok(None)) => continue,
                // The bitmap's members are ports: both read it the tool's way, and fail alike.
                (Err(a), Err(b)) if a.to_string() == b.to_string() => continue,
                (a, b) => panic!("{name}: {a:?} vs {b:?}"),
            };
            assert_eq!(a.header, b.header, "{name}");
            assert_eq!(a.members.len(), b.members.len(), "{name}");
            for (net, left) in &a.members {
                let other = b.members.get(net).copied();
                assert!(
                    other.is_some_and(|o| o.abs_diff(*left) <= 2),
                    "{name} {net}: {left} vs {other:?}"
                );
            }
        }
        assert_eq!(nl.info("a4").unwrap().unwrap().references, 1);
        assert_eq!(nl.read("a4").unwrap().unwrap().members.len(), 3002);
    });
}

/// Over netlink too, a leftover temporary set (of another type, or of the same type with junk)
/// never reaches the live set, and `destroy_leftover_tmp` removes one and leaves the live set.
#[test]
fn netlink_leftover_tmp_set_never_reaches_the_live_set() {
    let ns = netns_or_skip!();
    crate::common::netns::run_in(&ns, || {
        let ipset_ok = |args: &[&str]| {
            let o = std::process::Command::new("ipset")
                .args(args)
                .output()
                .unwrap();
            assert!(o.status.success(), "ipset {args:?}: {}", out_text(&o));
        };
        let nl = Ipset::new();
        let s = spec("sb4", Family::V4);
        let entries = [(n("192.0.2.1"), 600), (n("192.0.2.2"), 600)];
        ipset_ok(&["create", "sb4-tmp", "hash:ip", "maxelem", "8"]);
        ipset_ok(&["add", "sb4-tmp", "10.9.9.9"]);
        nl.rebuild(&s, &entries).unwrap();
        assert_exactly(&nl, "sb4", &entries);
        assert_eq!(nl.list_names().unwrap(), ["sb4"]);

        ipset_ok(&[
            "create", "sb4-tmp", "hash:net", "family", "inet", "hashsize", "1024", "maxelem",
            "65536", "timeout", "0",
        ]);
        ipset_ok(&["add", "sb4-tmp", "10.8.0.0/16"]);
        let entries = [(n("192.0.2.3"), 600)];
        nl.rebuild(&s, &entries).unwrap();
        assert_exactly(&nl, "sb4", &entries);
        assert_eq!(nl.list_names().unwrap(), ["sb4"]);

        ipset_ok(&["create", "sb4-tmp", "hash:ip", "maxelem", "8"]);
        assert!(nl.destroy_leftover_tmp(&s).unwrap());
        assert!(!nl.destroy_leftover_tmp(&s).unwrap());
        assert_eq!(nl.list_names().unwrap(), ["sb4"]);
        assert_exactly(&nl, "sb4", &entries);
    });
}
