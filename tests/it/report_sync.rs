//! Reporting end to end through the `sipban` binary, in a private network namespace with the
//! real kernel sets: an Asterisk security log, a feed and an allowlist; AbuseIPDB and a webhook
//! collector as local HTTPS stand-ins (trusted through `ca_file`).
//!
//! What must hold: only own detections the sets hold are reported; never feed-only,
//! allowlisted, private or not-banned addresses; UDP-only offenders never reach AbuseIPDB
//! (`include_udp: false`) but do reach the webhook; `sync --dry-run` lists what would be
//! reported and sends nothing; `report status` shows what was sent; the API key and the
//! webhook token never appear in any output or in the state directory.

use crate::common::run::{bin, text};

use crate::common::https::ca_file;
use crate::common::netns::run_in;
use crate::report_common::{FakeAbuseipdb, FakeCollector, KEY};
use sipban::backend::ipset::Ipset;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

const TOKEN: &str = "c0llect0r-T0ken-9f8e7d";

/// A security-log failure at `t` (UTC; sipban runs with TZ=UTC).
fn security_line(t: i64, ip: &str, transport: &str) -> String {
    let stamp = sipban::inspect::fmt_time(t).replace(" UTC", "");
    format!(
        "[{stamp}] SECURITY[4140] res_security_log.c: SecurityEvent=\"InvalidPassword\",EventTV=\"{stamp}\",Severity=\"Error\",Service=\"PJSIP\",EventVersion=\"2\",AccountID=\"3001\",SessionID=\"1a2b\",LocalAddress=\"IPV4/{transport}/192.0.2.1/5060\",RemoteAddress=\"IPV4/{transport}/{ip}/5060\",Challenge=\"17\",ReceivedChallenge=\"17\",ReceivedHash=\"ff\"\n"
    )
}

fn members(set: &str) -> BTreeSet<String> {
    Ipset::new()
        .read(set)
        .expect("read set")
        .map(|k| k.members.keys().map(sipban::net::display_net).collect())
        .unwrap_or_default()
}

fn assert_no_secret_in_dir(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            assert_no_secret_in_dir(&p);
        } else {
            let bytes = std::fs::read(&p).unwrap();
            for secret in [KEY, TOKEN] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "a secret is in {}",
                    p.display()
                );
            }
        }
    }
}

#[test]
fn only_own_tcp_detections_in_the_sets_are_reported() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let now = sipban::pipeline::sync::unix_now();
        let fake = FakeAbuseipdb::new(now);
        let abuse = crate::report_common::serve(&fake);
        let collector = FakeCollector::new(TOKEN);
        let hook = crate::report_common::serve_collector(&collector);

        let key_file = dir.path().join("abuseipdb.key");
        std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let feed = dir.path().join("feed.txt");
        std::fs::write(&feed, "45.5.5.5\n").unwrap();
        let log = dir.path().join("security");
        let mut lines = String::new();
        for i in 0..3 {
            let t = now - 300 + i;
            lines.push_str(&security_line(t, "45.7.7.7", "TCP")); // reported everywhere
            lines.push_str(&security_line(t, "45.8.8.8", "UDP")); // webhook only
            lines.push_str(&security_line(t, "192.168.7.7", "TCP")); // private: nowhere
            lines.push_str(&security_line(t, "45.9.9.9", "TLS")); // allowlisted: nowhere
        }
        lines.push_str(&security_line(now - 200, "45.6.6.6", "TCP")); // below maxretry
        std::fs::write(&log, lines).unwrap();
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "state_dir: {state}
sets:
  v4: {{ name: rp4, cap: 100 }}
  v6: {{ name: rp6, cap: 100 }}
allowlist: [45.9.9.9]
feeds:
  - {{ name: local, url: 'file://{feed}', ttl: 1d }}
asterisk:
  logs: [{log}]
  maxretry: 3
  bantime: 1h
report:
  abuseipdb:
    key_file: {key}
    base_url: {abuse}
    ca_file: {ca}
  webhook:
    url: {hook}/hook
    headers: {{ Authorization: \"Bearer {TOKEN}\" }}
    ca_file: {ca}
",
                state = dir.path().join("state").display(),
                feed = feed.display(),
                log = log.display(),
                key = key_file.display(),
                abuse = abuse.base_url(),
                hook = hook.base_url(),
                ca = ca_file().display(),
            ),
        )
        .unwrap();
        let mut outputs = String::new();
        let mut sipban = |args: &[&str]| -> Output {
            let o = Command::new(bin())
                .arg("--config")
                .arg(&config)
                .args(args)
                .env("TZ", "UTC")
                .env_remove(sipban::report::ABUSEIPDB_KEY_ENV)
                .output()
                .unwrap();
            outputs.push_str(&format!("$ sipban {}\n{}\n", args.join(" "), text(&o)));
            o
        };

        // A dry run lists what would be reported, and sends and writes nothing.
        let o = sipban(&["-vv", "sync", "--dry-run"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(out.contains("upstream reports (dry run"), "{out}");
        let line_of = |ip: &str| {
            out.lines()
                .find(|l| l.trim_start().starts_with(&format!("{ip} [categories")))
                .unwrap_or_else(|| panic!("no line for {ip} in\n{out}"))
                .to_string()
        };
        assert!(
            line_of("45.7.7.7").contains("AbuseIPDB: would queue; webhook: would queue"),
            "{out}"
        );
        assert!(
            line_of("45.8.8.8").contains("AbuseIPDB: not reported (seen only over UDP"),
            "{out}"
        );
        assert!(
            line_of("45.8.8.8").contains("webhook: would queue"),
            "{out}"
        );
        assert!(
            line_of("192.168.7.7").contains("private address space"),
            "{out}"
        );
        assert!(
            line_of("45.9.9.9").contains("not in the kernel set"),
            "{out}"
        );
        assert!(
            !out.contains("45.5.5.5 ["),
            "feed addresses are not candidates: {out}"
        );
        assert!(!out.contains("45.6.6.6 ["), "{out}");
        assert!(
            out.contains("AbuseIPDB: would send 1 in 1 requests"),
            "{out}"
        );
        assert_eq!(abuse.request_count() + hook.request_count(), 0);
        assert!(!dir.path().join("state/state.db").exists());

        // The real run.
        let o = sipban(&["-vv", "sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(
            members("rp4"),
            ["192.168.7.7", "45.5.5.5", "45.7.7.7", "45.8.8.8"]
                .into_iter()
                .map(String::from)
                .collect()
        );
        assert_eq!(fake.accepted_ips(), ["45.7.7.7"]);
        let acc = &fake.accepted()[0];
        assert_eq!(acc.categories, [8, 18]);
        assert!(acc.comment.contains("over TCP"), "{}", acc.comment);
        for leak in ["3001", "192.0.2.1", "sip:"] {
            assert!(!acc.comment.contains(leak), "{leak} in {}", acc.comment);
        }
        let mut hooked = collector.addresses();
        hooked.sort();
        assert_eq!(hooked, ["45.7.7.7", "45.8.8.8"]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(out.contains("AbuseIPDB: sent 1 in 1 requests"), "{out}");
        assert!(out.contains("webhook: sent 2 in 1 requests"), "{out}");

        // Status.
        let o = sipban(&["report", "status"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(out.contains("sent today (UTC): 1 reports"), "{out}");
        assert!(out.contains("queue: 0"), "{out}");
        let o = sipban(&["report", "status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["sinks"][0]["sink"], "abuseipdb");
        assert_eq!(v["sinks"][0]["today"]["reports"], 1);
        assert_eq!(v["sinks"][1]["today"]["reports"], 2);

        // Nothing new: nothing sent again.
        let before = (abuse.request_count(), hook.request_count());
        let o = sipban(&["sync", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["upstream"]["candidates"], serde_json::json!([]));
        assert_eq!((abuse.request_count(), hook.request_count()), before);

        // Secrets never shown or stored.
        sipban(&["config", "check"]);
        sipban(&["config", "check", "--json"]);
        sipban(&["-vv", "sync", "--dry-run", "--json"]);
        for secret in [KEY, TOKEN] {
            assert!(
                !outputs.contains(secret),
                "a secret was printed:\n{outputs}"
            );
        }
        assert!(
            outputs.contains("[redacted]"),
            "the header is shown redacted"
        );
        assert_no_secret_in_dir(&dir.path().join("state"));
    });
}
