//! CrowdSec against a real Local API (the Debian `crowdsec` 1.4.6 package, no systemd): the
//! pull as a bouncer (issue 17, item 1), the push as a machine (item 2) and the export (item
//! 3). Each test starts its own LAPI inside its own network namespace (see `common::lapi`),
//! so they run in parallel on the same port.

use crate::common::lapi::{self, Lapi};
use crate::common::netns::run_in;
use crate::common::run::{json, sipban, text};
use ipnet::IpNet;
use sipban::backend::ipset::Ipset;
use std::path::Path;

const BOUNCER_KEY: &str = "bouncerK3yForSipbanTests0123456789";
const MACHINE_PW: &str = "machinePassw0rdForSipbanTests42";
const PORT: u16 = 8080;

fn members(set: &str) -> Vec<(String, u32)> {
    let mut v: Vec<(String, u32)> = Ipset::new()
        .read(set)
        .expect("read set")
        .map(|k| {
            k.members
                .into_iter()
                .map(|(n, t)| (sipban::net::display_net(&n), t))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn write_secret(path: &Path, value: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("{value}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A config in `dir` pulling from `url` (and pushing as `pbx-01` when `push`), with `extra`
/// top-level YAML.
fn configure(dir: &Path, url: &str, push: bool, extra: &str) {
    write_secret(&dir.join("bouncer.key"), BOUNCER_KEY);
    write_secret(&dir.join("machine.pw"), MACHINE_PW);
    let machine = if push {
        "  machine_id: pbx-01\n  machine_password_file: machine.pw\n"
    } else {
        ""
    };
    let cfg = format!(
        "state_dir: {}\nsets:\n  v4: {{ name: c4, cap: 65536 }}\n  v6: {{ name: c6, cap: 1024 }}\n\
         crowdsec:\n  lapi_url: {url}\n  bouncer_key_file: bouncer.key\n{machine}{extra}",
        dir.join("state").display()
    );
    std::fs::write(dir.join("config.yaml"), cfg).unwrap();
}

/// Within a second of `ttl` below it (the LAPI counts down from the `cscli` call).
fn near(timeout: u32, ttl: u32) -> bool {
    timeout <= ttl && timeout + 60 >= ttl
}

#[test]
fn ip_and_range_decisions_v4_and_v6_enter_the_sets_with_their_remaining_duration() {
    if !lapi::available() {
        return;
    }
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let lapi = Lapi::start(PORT);
        lapi.add_bouncer("pbx-01", BOUNCER_KEY);
        lapi.ban(&["--ip", "45.67.89.10", "--duration", "2h"]);
        lapi.ban(&["--range", "45.68.1.0/24", "--duration", "1h"]);
        // Written uncompressed: sipban canonicalises it.
        lapi.ban(&["--ip", "2a01:04f8:0000::0001", "--duration", "3h"]);
        lapi.ban(&["--range", "2a02:c7f:aa::/48", "--duration", "90m"]);
        lapi.cscli_ok(&[
            "decisions",
            "add",
            "--ip",
            "45.67.89.11",
            "--duration",
            "1h",
            "--type",
            "captcha",
        ]);
        let dir = tempfile::tempdir().unwrap();
        configure(dir.path(), &lapi.url, false, "");
        let o = sipban(dir.path(), &["sync", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let v4 = members("c4");
        let v6 = members("c6");
        let names: Vec<&str> = v4.iter().chain(&v6).map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "45.67.89.10",
                "45.68.1.0/24",
                "2a01:4f8::1",
                "2a02:c7f:aa::/48"
            ],
            "captcha is not a ban: {}",
            text(&o)
        );
        for ((_, t), ttl) in v4.iter().chain(&v6).zip([7200, 3600, 10_800, 5400]) {
            assert!(near(*t, ttl), "timeout {t} for a decision of {ttl} s");
        }
        let j = json(&o);
        let src = j["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "crowdsec")
            .expect("a crowdsec source");
        assert_eq!(src["crowdsec"]["status"], "ok");
        assert_eq!(src["crowdsec"]["by_scope"]["ip_v4"], 1);
        assert_eq!(src["crowdsec"]["by_scope"]["range_v6"], 1);
        assert_eq!(src["crowdsec"]["ignored"], 1);
    });
}

#[test]
fn a_deletion_is_honoured_even_after_a_dry_run_swallowed_it() {
    if !lapi::available() {
        return;
    }
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let lapi = Lapi::start(PORT);
        lapi.add_bouncer("pbx-01", BOUNCER_KEY);
        lapi.ban(&["--ip", "45.67.89.10", "--duration", "2h"]);
        lapi.ban(&["--ip", "45.67.89.20", "--duration", "2h"]);
        let dir = tempfile::tempdir().unwrap();
        configure(dir.path(), &lapi.url, false, "");
        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(members("c4").len(), 2);
        lapi.delete(&["--ip", "45.67.89.10"]);
        // The dry run moves the key's delta cursor past the deletion.
        let o = sipban(dir.path(), &["sync", "--dry-run"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(members("c4").len(), 2, "a dry run changes nothing");
        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let left: Vec<String> = members("c4").into_iter().map(|(n, _)| n).collect();
        assert_eq!(left, ["45.67.89.20"], "{}", text(&o));
    });
}

#[test]
fn lapi_down_exits_3_and_keeps_the_last_good_entries() {
    if !lapi::available() {
        return;
    }
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let mut lapi = Lapi::start(PORT);
        lapi.add_bouncer("pbx-01", BOUNCER_KEY);
        lapi.ban(&["--ip", "45.67.89.10", "--duration", "2h"]);
        let dir = tempfile::tempdir().unwrap();
        configure(dir.path(), &lapi.url, false, "");
        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        lapi.stop();
        let o = sipban(dir.path(), &["sync", "--json"]);
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        let out = text(&o);
        assert!(out.contains("cannot be reached"), "{out}");
        let left: Vec<String> = members("c4").into_iter().map(|(n, _)| n).collect();
        assert_eq!(left, ["45.67.89.10"], "last good kept");
        let o = sipban(dir.path(), &["status"]);
        let out = text(&o);
        assert!(out.contains("crowdsec"), "{out}");
    });
}

#[test]
fn a_bad_key_is_a_clear_error_and_secrets_never_show() {
    if !lapi::available() {
        return;
    }
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let lapi = Lapi::start(PORT);
        lapi.add_bouncer("pbx-01", "someOtherKeyThanTheOneSipbanHas99");
        lapi.add_machine("pbx-01", MACHINE_PW);
        lapi.ban(&["--ip", "45.67.89.10", "--duration", "2h"]);
        let dir = tempfile::tempdir().unwrap();
        configure(dir.path(), &lapi.url, true, "");
        let mut outputs = Vec::new();
        for args in [
            &["sync", "-vv"][..],
            &["sync", "--dry-run", "--json"],
            &["status"],
            &["status", "--json"],
            &["config", "check"],
        ] {
            let o = sipban(dir.path(), args);
            outputs.push(text(&o));
            if args[0] == "sync" {
                assert_eq!(o.status.code(), Some(3), "{}", text(&o));
            }
        }
        let all = outputs.join("\n");
        assert!(
            all.contains("refused the bouncer key from the bouncer key file")
                && all.contains("HTTP 403"),
            "{all}"
        );
        // Keys and passwords: in no output and nowhere in the state directory.
        for secret in [BOUNCER_KEY, MACHINE_PW] {
            assert!(!all.contains(secret), "a secret in the output: {all}");
            for entry in walk(&dir.path().join("state")) {
                let bytes = std::fs::read(&entry).unwrap_or_default();
                assert!(
                    !String::from_utf8_lossy(&bytes).contains(secret),
                    "a secret in {}",
                    entry.display()
                );
            }
        }
        assert!(members("c4").is_empty());
    });
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[allow(dead_code)]
fn net(s: &str) -> IpNet {
    sipban::net::parse_net(s).unwrap()
}
