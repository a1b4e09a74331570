//! Protected by default: what sipban refuses to ban without being told, end to end through the
//! binary, each test in its own network namespace with the real kernel sets.
//!
//! - The networks this host is on (each IPv4 interface prefix, the /64 of each global IPv6
//!   address): a feed never bans an address there, and `explain` says why.
//! - The SIP trunks and registrations in Asterisk's own configuration (pjsip.conf, sip.conf,
//!   iax.conf; literals and names): neither a feed nor a forged log line bans them. Names are
//!   resolved through a private `/etc/hosts` (a mount namespace of the sipban process), so the
//!   test needs no DNS.
//! - A local detection of an address on the host's own network (a LAN phone with a wrong
//!   password) is a warning, and a ban only with `ban_on_link: true`.

use crate::common::lines::asterisk_line;
use crate::common::netns::{require_program, run_in};
use crate::common::run::{bin, json, sipban, text};
use sipban::backend::ipset::Ipset;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn members(set: &str) -> BTreeSet<String> {
    Ipset::new()
        .read(set)
        .expect("read set")
        .map(|k| k.members.keys().map(sipban::net::display_net).collect())
        .unwrap_or_default()
}

/// Run `ip` commands in the current thread's namespace, or panic with what went wrong.
fn ip(cmds: &[&str]) {
    for cmd in cmds {
        let argv: Vec<&str> = cmd.split(' ').collect();
        let o = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
        assert!(
            o.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// A veth pair `d0`/`d1` with `d0` on 10.9.8.7/24, 45.67.89.1/24 and 2001:db8:4567::1/64:
/// the host's own networks.
fn lan() {
    ip(&[
        "ip link add d0 type veth peer name d1",
        "ip addr add 10.9.8.7/24 dev d0",
        "ip addr add 45.67.89.1/24 dev d0",
        "ip -6 addr add 2001:db8:4567::1/64 dev d0 nodad",
        "ip link set d0 up",
    ]);
}

fn config(dir: &Path, extra: &str) {
    std::fs::write(
        dir.join("config.yaml"),
        format!(
            "state_dir: {}\nsets:\n  v4: {{ name: t4, cap: 100 }}\n  v6: {{ name: t6, cap: 100 }}\n{extra}",
            dir.join("state").display()
        ),
    )
    .unwrap();
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_feed_cannot_ban_the_hosts_own_networks_and_explain_says_why() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        lan();
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        std::fs::write(
            &list,
            "10.9.8.50\n45.67.89.50\n45.67.88.0/23\n2001:db8:4567::99\n2001:db8:4567:1::5\n45.1.1.1\n",
        )
        .unwrap();
        // allow_private: only the on-link rule keeps 10.9.8.50 out.
        config(
            dir.path(),
            &format!(
                "feeds:\n  - {{ name: f, url: 'file://{}', ttl: 1d, allow_private: true }}\n",
                list.display()
            ),
        );
        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        // The /23 loses the on-link /24 and keeps the rest.
        assert_eq!(
            members("t4"),
            BTreeSet::from(["45.1.1.1".to_string(), "45.67.88.0/24".to_string()]),
            "{}",
            text(&o)
        );
        assert_eq!(
            members("t6"),
            BTreeSet::from(["2001:db8:4567:1::5".to_string()]),
            "{}",
            text(&o)
        );
        for (ip, net) in [
            ("45.67.89.50", "45.67.89.0/24"),
            ("10.9.8.50", "10.9.8.0/24"),
            ("2001:db8:4567::99", "2001:db8:4567::/64"),
        ] {
            let o = sipban(dir.path(), &["explain", ip]);
            assert_eq!(o.status.code(), Some(0), "{}", text(&o));
            let x = out(&o);
            assert!(x.contains("listed by f"), "{ip}: {x}");
            assert!(
                x.contains(&format!("{net} (on-link network of interface d0)")),
                "{ip}: {x}"
            );
            assert!(x.contains("feeds never ban it"), "{ip}: {x}");
            assert!(x.contains("not in set"), "{ip}: {x}");
        }
        // A manual ban is the admin's own decision: the on-link rule does not refuse it.
        let o = sipban(dir.path(), &["explain", "--json", "45.67.89.50"]);
        assert!(json(&o)["ban_refused"].is_null(), "{}", text(&o));
    });
}

/// sipban with `/etc/hosts` replaced by `hosts` for it alone (a private mount namespace).
fn sipban_with_hosts(dir: &Path, hosts: &Path, args: &[&str]) -> Output {
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount --bind \"$0\" /etc/hosts && exec \"$@\"")
        .arg(hosts)
        .arg(bin())
        .args(args)
        .arg("--config")
        .arg(dir.join("config.yaml"))
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .output()
        .expect("run unshare")
}

/// Asterisk's configuration: trunks in pjsip.conf (with an include and a template),
/// sip.conf and iax.conf, by literal address and by name.
fn asterisk_conf(dir: &Path) {
    std::fs::create_dir_all(dir.join("pjsip.d")).unwrap();
    std::fs::write(
        dir.join("pjsip.conf"),
        "; the provider\n[global]\ntype=global\n\n#include pjsip.d/*.conf\n\n\
         [6001]\ntype=endpoint\naors=6001\n[6001]\ntype=aor\nmax_contacts=1\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("pjsip.d/trunk.conf"),
        "[trunk-tmpl](!)\ntype=registration\nretry_interval=60\n\n\
         [trunk](trunk-tmpl)\nserver_uri=sip:trunk.example.test:5060\n\
         client_uri=sip:1234@trunk.example.test\n\n\
         [trunk-aor]\ntype=aor\ncontact=sip:1234@[2001:db8:5050::1]:5060\n\n\
         [trunk-id]\ntype=identify\nendpoint=trunk\nmatch=45.20.0.0/28, 45.20.1.1:5060 ; both sides\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("sip.conf"),
        "[general]\nregister => 1000:secret@45.30.0.1:5060/100\n\n\
         [old-trunk]\ntype=peer\nhost=45.30.0.2\n[phone]\ntype=friend\nhost=dynamic\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("iax.conf"),
        "[general]\nregister => user:pass@iax.example.test\n[iaxpeer]\ntype=peer\nhost=45.40.0.2\n",
    )
    .unwrap();
}

#[test]
fn neither_a_feed_nor_a_forged_line_bans_an_asterisk_trunk() {
    let ns = netns_or_skip!();
    for p in ["unshare", "mount"] {
        if !require_program(p) {
            return;
        }
    }
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let ast = dir.path().join("asterisk");
        asterisk_conf(&ast);
        let hosts = dir.path().join("hosts");
        std::fs::write(
            &hosts,
            "127.0.0.1 localhost\n45.50.0.1 trunk.example.test\n45.60.0.1 iax.example.test\n",
        )
        .unwrap();
        let trunks = [
            "45.50.0.1",
            "45.60.0.1",
            "2001:db8:5050::1",
            "45.20.0.5",
            "45.20.1.1",
            "45.30.0.1",
            "45.30.0.2",
            "45.40.0.2",
        ];
        let list = dir.path().join("list.txt");
        let mut listed = trunks.join("\n");
        listed.push_str("\n45.1.1.1\n");
        std::fs::write(&list, listed).unwrap();
        // Forged log lines blame two trunks; a real attacker fails too.
        let log = dir.path().join("messages");
        let now = sipban::pipeline::sync::unix_now();
        let mut lines = String::new();
        for i in 0..5 {
            for ip in ["45.50.0.1", "45.30.0.2", "45.3.3.3"] {
                lines.push_str(&asterisk_line(now - 60 + i, ip));
            }
        }
        std::fs::write(&log, lines).unwrap();
        config(
            dir.path(),
            &format!(
                "asterisk_config_dir: {}\nfeeds:\n  - {{ name: f, url: 'file://{}', ttl: 1d }}\nasterisk:\n  logs: [{}]\n",
                ast.display(),
                list.display(),
                log.display()
            ),
        );
        let o = sipban_with_hosts(dir.path(), &hosts, &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(
            members("t4"),
            BTreeSet::from(["45.1.1.1".to_string(), "45.3.3.3".to_string()]),
            "{}",
            text(&o)
        );
        assert_eq!(members("t6"), BTreeSet::new(), "{}", text(&o));
        // explain reads the names as the last sync resolved them: no lookup of its own.
        let o = sipban(dir.path(), &["explain", "45.50.0.1"]);
        let x = out(&o);
        assert!(
            x.contains("Asterisk peer") && x.contains("trunk.example.test"),
            "{}",
            text(&o)
        );
        let o = sipban(dir.path(), &["explain", "45.30.0.2"]);
        assert!(
            out(&o).contains("sip.conf [old-trunk] host"),
            "{}",
            text(&o)
        );
        // A sync that cannot resolve the names keeps the last addresses they had.
        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(
            members("t4"),
            BTreeSet::from(["45.1.1.1".to_string(), "45.3.3.3".to_string()]),
            "{}",
            text(&o)
        );
        // `protect_asterisk_peers: false` lifts it: the feed's listings come back.
        config(
            dir.path(),
            &format!(
                "asterisk_config_dir: {}\nprotect_asterisk_peers: false\nfeeds:\n  - {{ name: f, url: 'file://{}', ttl: 1d }}\n",
                ast.display(),
                list.display()
            ),
        );
        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(members("t4").contains("45.30.0.2"), "{}", text(&o));
    });
}

#[test]
fn a_detection_on_the_hosts_own_network_is_a_warning_unless_opted_in() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        lan();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("messages");
        let now = sipban::pipeline::sync::unix_now();
        let mut lines = String::new();
        for i in 0..5 {
            lines.push_str(&asterisk_line(now - 60 + i, "10.9.8.50"));
            lines.push_str(&asterisk_line(now - 60 + i, "45.3.3.3"));
        }
        std::fs::write(&log, lines).unwrap();
        let detector = format!("asterisk:\n  logs: [{}]\n", log.display());
        config(dir.path(), &detector);
        let warning = "asterisk detected 10.9.8.50 on this host's own network 10.9.8.0/24 (interface d0): not banned";

        let o = sipban(dir.path(), &["sync", "--dry-run"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(out(&o).contains(warning), "{}", text(&o));
        assert!(out(&o).contains("ban_on_link: true"), "{}", text(&o));

        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(out(&o).contains(warning), "the run summary: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(warning),
            "the log: {}",
            text(&o)
        );
        assert_eq!(
            members("t4"),
            BTreeSet::from(["45.3.3.3".to_string()]),
            "{}",
            text(&o)
        );
        let o = sipban(dir.path(), &["sync", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(
            members("t4"),
            BTreeSet::from(["45.3.3.3".to_string()]),
            "{}",
            text(&o)
        );

        // Opted in: the detection the state kept is banned now.
        config(dir.path(), &format!("ban_on_link: true\n{detector}"));
        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(
            members("t4"),
            BTreeSet::from(["10.9.8.50".to_string(), "45.3.3.3".to_string()]),
            "{}",
            text(&o)
        );
        // And a fresh detection says it was banned.
        let fresh = tempfile::tempdir().unwrap();
        config(fresh.path(), &format!("ban_on_link: true\n{detector}"));
        // Sets of its own, so the plan shows the add.
        let cfg = fresh.path().join("config.yaml");
        let yaml = std::fs::read_to_string(&cfg).unwrap();
        std::fs::write(
            &cfg,
            yaml.replace("name: t4", "name: f4")
                .replace("name: t6", "name: f6"),
        )
        .unwrap();
        let o = sipban(fresh.path(), &["sync", "--dry-run"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(
            out(&o).contains("asterisk detected 10.9.8.50 on this host's own network 10.9.8.0/24 (interface d0): banned (ban_on_link: true)"),
            "{}",
            text(&o)
        );
        assert!(out(&o).contains("+ 10.9.8.50"), "{}", text(&o));
    });
}

#[test]
fn config_check_shows_the_protection_switches() {
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), "");
    let o = sipban(dir.path(), &["config", "check", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j = json(&o);
    assert_eq!(j["ban_on_link"], false, "{j}");
    assert_eq!(j["protect_asterisk_peers"], "auto", "{j}");
    assert_eq!(j["asterisk_config_dir"], "/etc/asterisk", "{j}");
    let o = sipban(dir.path(), &["config", "check"]);
    assert!(
        out(&o).contains("protect_asterisk_peers: auto"),
        "{}",
        text(&o)
    );
}
