//! CrowdSec against a real Local API (the Debian `crowdsec` 1.4.6 package, no systemd): the
//! pull as a bouncer (issue 17, item 1), the push as a machine (item 2) and the export (item
//! 3). Each test starts its own LAPI inside its own network namespace (see `common::lapi`),
//! so they run in parallel on the same port.

use crate::common::lapi::{self, Lapi};
use crate::common::netns::run_in;
use crate::common::run::{json, sipban, text};
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

/// Run `f` in a fresh network namespace with a LAPI of its own started there (nothing when
/// the `crowdsec` package or namespaces are missing).
fn with_lapi(f: impl FnOnce(Lapi) + Send + 'static) {
    if !lapi::available() {
        return;
    }
    let ns = netns_or_skip!();
    run_in(&ns, || f(Lapi::start(PORT)));
}

/// Within a second of `ttl` below it (the LAPI counts down from the `cscli` call).
fn near(timeout: u32, ttl: u32) -> bool {
    timeout <= ttl && timeout + 60 >= ttl
}

#[test]
fn ip_and_range_decisions_v4_and_v6_enter_the_sets_with_their_remaining_duration() {
    with_lapi(|lapi| {
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
        let prom = dir.path().join("sipban.prom");
        configure(
            dir.path(),
            &lapi.url,
            false,
            &format!("metrics: {{ textfile: {} }}\n", prom.display()),
        );
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
        // Item 4: status and the metrics.
        let o = sipban(dir.path(), &["status", "--json"]);
        let c = &json(&o)["crowdsec"];
        assert_eq!(c["last_pull"]["by_scope"]["range_v4"], 1, "{c}");
        assert!(c["last_success"].is_i64(), "{c}");
        let o = sipban(dir.path(), &["status"]);
        assert!(
            text(&o).contains("last pull: ok (5 decisions"),
            "{}",
            text(&o)
        );
        let m = std::fs::read_to_string(&prom).unwrap();
        assert!(
            m.contains("sipban_crowdsec_decisions{scope=\"range\",family=\"v6\"} 1"),
            "{m}"
        );
        assert!(m.contains("sipban_crowdsec_pull_ok 1"), "{m}");
        // explain names the source of an address inside a pulled Range.
        let o = sipban(dir.path(), &["explain", "45.68.1.7"]);
        assert!(text(&o).contains("crowdsec"), "{}", text(&o));
    });
}

#[test]
fn a_deletion_is_honoured_even_after_a_dry_run_swallowed_it() {
    with_lapi(|lapi| {
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
        // A decision replaced by a shorter one: the kernel timeout follows it down.
        lapi.delete(&["--ip", "45.67.89.20"]);
        lapi.ban(&["--ip", "45.67.89.20", "--duration", "10m"]);
        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let left = members("c4");
        assert_eq!(left.len(), 1);
        assert!(
            near(left[0].1, 600),
            "timeout {} after a 10m decision",
            left[0].1
        );
    });
}

#[test]
fn lapi_down_exits_3_and_keeps_the_last_good_entries() {
    with_lapi(|mut lapi| {
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
        assert!(
            out.contains(
                "last error: crowdsec: the LAPI at http://127.0.0.1:8080 cannot be reached"
            ),
            "{out}"
        );
    });
}

#[test]
fn a_bad_key_is_a_clear_error_and_secrets_never_show() {
    with_lapi(|lapi| {
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

/// A security-log failure at `t` (UTC; sipban runs with TZ=UTC).
fn security_line(t: i64, ip: &str) -> String {
    let stamp = sipban::inspect::fmt_time(t).replace(" UTC", "");
    format!(
        "[{stamp}] SECURITY[4140] res_security_log.c: SecurityEvent=\"InvalidPassword\",EventTV=\"{stamp}\",Severity=\"Error\",Service=\"PJSIP\",EventVersion=\"2\",AccountID=\"3001\",SessionID=\"1a2b\",LocalAddress=\"IPV4/TCP/192.0.2.1/5060\",RemoteAddress=\"IPV4/TCP/{ip}/5060\",Challenge=\"17\",ReceivedChallenge=\"17\",ReceivedHash=\"ff\"\n"
    )
}

/// Run sipban in `dir` under TZ=UTC, without the secrets' variables.
fn run_utc(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(crate::common::run::bin())
        .args(args)
        .arg("--config")
        .arg(dir.join("config.yaml"))
        .env("TZ", "UTC")
        .env_remove("SIPBAN_CROWDSEC_KEY")
        .env_remove("SIPBAN_CROWDSEC_MACHINE_PASSWORD")
        .output()
        .unwrap()
}

/// The alerts machine `id` pushed.
fn alerts_of(lapi: &Lapi, id: &str) -> Vec<serde_json::Value> {
    lapi.alerts()
        .into_iter()
        .filter(|a| a["machine_id"] == id)
        .collect()
}

#[test]
fn own_detections_are_pushed_once_and_pulled_or_feed_entries_never() {
    with_lapi(|lapi| {
        lapi.add_bouncer("pbx-01", BOUNCER_KEY);
        lapi.add_bouncer("pbx-02", "bouncerKeyOfTheSecondPbx0123456789");
        lapi.add_machine("pbx-01", MACHINE_PW);
        // Another box's decision, pulled by this one: never pushed back.
        lapi.ban(&["--ip", "45.67.89.30", "--duration", "2h"]);
        let dir = tempfile::tempdir().unwrap();
        let now = sipban::pipeline::sync::unix_now();
        let log = dir.path().join("security");
        let mut lines = String::new();
        for i in 0..4 {
            lines.push_str(&security_line(now - 300 + i, "45.7.7.7"));
        }
        std::fs::write(&log, lines).unwrap();
        let feed = dir.path().join("feed.txt");
        std::fs::write(&feed, "45.5.5.5\n").unwrap();
        let extra = format!(
            "feeds:\n  - {{ name: local, url: 'file://{}', ttl: 1d }}\n\
             asterisk:\n  logs: [{}]\n  maxretry: 3\n  bantime: 1h\n",
            feed.display(),
            log.display()
        );
        configure(dir.path(), &lapi.url, true, &extra);

        // A dry run pushes nothing.
        let o = run_utc(dir.path(), &["sync", "--dry-run"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(text(&o).contains("CrowdSec: would queue"), "{}", text(&o));
        assert!(alerts_of(&lapi, "pbx-01").is_empty());

        let o = run_utc(dir.path(), &["sync", "--json", "-vv"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        for secret in [BOUNCER_KEY, MACHINE_PW] {
            assert!(!text(&o).contains(secret), "a secret in the output");
        }
        let names: Vec<String> = members("c4").into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["45.5.5.5", "45.67.89.30", "45.7.7.7"]);
        let pushed = alerts_of(&lapi, "pbx-01");
        assert_eq!(pushed.len(), 1, "{pushed:#?}\n{}", text(&o));
        let a = &pushed[0];
        assert_eq!(a["scenario"], "sipban/asterisk-bruteforce");
        assert_eq!(a["source"]["scope"], "Ip");
        assert_eq!(a["source"]["value"], "45.7.7.7");
        assert_eq!(a["events_count"], 4);
        let d = &a["decisions"][0];
        assert_eq!(
            (d["origin"].as_str(), d["type"].as_str()),
            (Some("sipban"), Some("ban"))
        );
        let secs =
            sipban::source::crowdsec::duration::parse_go_duration(d["duration"].as_str().unwrap())
                .unwrap();
        // The LAPI counts the duration from the alert's last event (297 s ago), as sipban
        // counts its own ban: both end together.
        assert!(
            secs > 3600.0 - 297.0 - 60.0 && secs <= 3600.0 - 296.0,
            "bantime 1h: {d}"
        );

        // The next runs pull this box's own decision back: nothing is pushed again.
        for _ in 0..2 {
            let o = run_utc(dir.path(), &["sync"]);
            assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        }
        assert_eq!(alerts_of(&lapi, "pbx-01").len(), 1, "pushed exactly once");
        for entry in walk(&dir.path().join("state")) {
            let text = String::from_utf8_lossy(&std::fs::read(&entry).unwrap()).to_string();
            for secret in [BOUNCER_KEY, MACHINE_PW] {
                assert!(!text.contains(secret), "a secret in {}", entry.display());
            }
        }
        let o = run_utc(dir.path(), &["report", "status"]);
        assert!(text(&o).contains("CrowdSec"), "{}", text(&o));
        let o = run_utc(dir.path(), &["status"]);
        assert!(
            text(&o).contains("push: 1 alerts pushed, 0 queued"),
            "{}",
            text(&o)
        );

        // A second box of the fleet sees the detection at its next sync.
        let other = tempfile::tempdir().unwrap();
        write_secret(
            &other.path().join("bouncer.key"),
            "bouncerKeyOfTheSecondPbx0123456789",
        );
        std::fs::write(
            other.path().join("config.yaml"),
            format!(
                "state_dir: {}\nsets:\n  v4: {{ name: d4, cap: 100 }}\n  v6: {{ name: d6, cap: 100 }}\n\
                 crowdsec:\n  lapi_url: {}\n  bouncer_key_file: bouncer.key\n",
                other.path().join("state").display(),
                lapi.url
            ),
        )
        .unwrap();
        let o = sipban(other.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let names: Vec<String> = members("d4").into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["45.67.89.30", "45.7.7.7"]);
    });
}

/// The queue's side of "exactly once": an item claimed by a run killed mid-request is not sent
/// again within a bantime; a malformed alert is dropped before it is sent (the LAPI would
/// answer 500, like an outage); the rest goes out in one batch.
#[test]
fn a_claimed_item_is_not_sent_again_and_a_malformed_one_is_dropped_unsent() {
    use sipban::report::{self, queue, Detail, OffenceKind};
    with_lapi(|lapi| {
        lapi.add_machine("pbx-01", MACHINE_PW);
        let dir = tempfile::tempdir().unwrap();
        configure(dir.path(), &lapi.url, true, "");
        let settings = sipban::config::load(&dir.path().join("config.yaml")).unwrap();
        let r = settings.report.clone().expect("the push is a report sink");
        let mut store = sipban::store::Store::open(&dir.path().join("state")).unwrap();
        let now = sipban::pipeline::sync::unix_now();
        let good = |n: u64| {
            let mut d = Detail {
                events: n,
                ..Detail::default()
            };
            d.kinds.insert(OffenceKind::SipScan);
            d
        };
        let q = store.report_queue();
        q.ensure_schema().unwrap();
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        q.enqueue(
            queue::CROWDSEC,
            ip("45.1.1.1"),
            now - 60,
            now - 10,
            &good(5),
            now,
        )
        .unwrap();
        // No kind: no scenario, a malformed alert.
        q.enqueue(
            queue::CROWDSEC,
            ip("45.1.1.2"),
            now - 60,
            now - 10,
            &Detail::default(),
            now,
        )
        .unwrap();
        q.enqueue(
            queue::CROWDSEC,
            ip("45.1.1.3"),
            now - 60,
            now - 10,
            &good(2),
            now,
        )
        .unwrap();
        let claimed: Vec<queue::Item> = q.items(queue::CROWDSEC, 10).unwrap();
        let id3 = claimed.iter().find(|i| i.ip == ip("45.1.1.3")).unwrap().id;
        // A run killed after claiming 45.1.1.3, its request's fate unknown.
        q.claim(
            queue::CROWDSEC,
            &[id3],
            now,
            queue::Claim {
                used: 1,
                bulk: false,
                per_ip: true,
                request_ms: 0,
            },
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let run = rt.block_on(report::drain(&r, &mut store, Vec::new(), now));
        let sink = run
            .sinks
            .iter()
            .find(|s| s.sink == queue::CROWDSEC)
            .unwrap();
        assert_eq!(
            (sink.sent, sink.refused, sink.requests),
            (1, 1, 1),
            "{run:#?}"
        );
        let pushed = alerts_of(&lapi, "pbx-01");
        let values: Vec<&str> = pushed
            .iter()
            .map(|a| a["source"]["value"].as_str().unwrap())
            .collect();
        assert_eq!(values, ["45.1.1.1"]);
        assert_eq!(pushed[0]["scenario"], "sipban/sip-scanner");
        // Again: nothing left to send within the bantime.
        let run = rt.block_on(report::drain(&r, &mut store, Vec::new(), now + 60));
        let sink = run
            .sinks
            .iter()
            .find(|s| s.sink == queue::CROWDSEC)
            .unwrap();
        assert_eq!(sink.requests, 0, "{run:#?}");
        assert_eq!(alerts_of(&lapi, "pbx-01").len(), 1);
    });
}

/// Run `cmd` (split on spaces), or panic with its stderr.
fn sh(cmd: &str) {
    let argv: Vec<&str> = cmd.split(' ').collect();
    let o = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Item 3: box A writes its own detections (not its feed's entries) to the `export:` file
/// after its sync; a web server on A serves it; box B, in another network namespace, reads it
/// as an ordinary feed.
#[test]
fn the_export_is_consumed_by_a_second_sipban_across_two_namespaces() {
    let a = netns_or_skip!();
    let b = netns_or_skip!();
    sh(&format!(
        "ip netns exec {} ip link add xa type veth peer name xb netns {}",
        a.name(),
        b.name()
    ));
    for (ns, dev, addr) in [(&a, "xa", "10.99.0.1/24"), (&b, "xb", "10.99.0.2/24")] {
        sh(&format!(
            "ip netns exec {} ip addr add {addr} dev {dev}",
            ns.name()
        ));
        sh(&format!("ip netns exec {} ip link set {dev} up", ns.name()));
    }
    let dir_a = tempfile::tempdir().unwrap();
    let pa = dir_a.path().to_path_buf();
    let (stub, json_export) = run_in(&a, move || {
        let now = sipban::pipeline::sync::unix_now();
        let log = pa.join("security");
        let mut lines = String::new();
        for i in 0..3 {
            lines.push_str(&security_line(now - 300 + i, "45.7.7.7"));
        }
        std::fs::write(&log, lines).unwrap();
        std::fs::write(pa.join("feed.txt"), "45.5.5.5\n").unwrap();
        let export = pa.join("www/sipban.txt");
        std::fs::create_dir_all(pa.join("www")).unwrap();
        std::fs::write(
            pa.join("config.yaml"),
            format!(
                "state_dir: {}\nsets:\n  v4: {{ name: a4, cap: 100 }}\n  v6: {{ name: a6, cap: 100 }}\n\
                 feeds:\n  - {{ name: local, url: 'file://{}', ttl: 1d }}\n\
                 asterisk:\n  logs: [{}]\n  maxretry: 3\n  bantime: 1h\n\
                 export: {{ path: {}, format: plain }}\n",
                pa.join("state").display(),
                pa.join("feed.txt").display(),
                log.display(),
                export.display()
            ),
        )
        .unwrap();
        let o = run_utc(&pa, &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let body = std::fs::read_to_string(&export).unwrap();
        let lines: Vec<&str> = body.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines, ["45.7.7.7"], "own detections only: {body}");
        assert!(body.starts_with("# sipban export"), "{body}");
        let o = run_utc(&pa, &["export", "--format", "json"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let stub = crate::common::stub::Stub::start_on("10.99.0.1:0");
        stub.set("/sipban.txt", crate::common::stub::Reply::ok(body));
        stub.set(
            "/sipban.json",
            crate::common::stub::Reply::ok(o.stdout.clone()),
        );
        (stub, json(&o))
    });
    let e = &json_export["entries"][0];
    assert_eq!(e["address"], "45.7.7.7");
    assert_eq!(e["reason"], serde_json::json!(["asterisk"]));
    let left = e["ttl_left"].as_i64().unwrap();
    assert!(left > 3000 && left <= 3600 - 297, "{e}");
    assert_eq!(json_export["entries"].as_array().unwrap().len(), 1);

    let dir_b = tempfile::tempdir().unwrap();
    let pb = dir_b.path().to_path_buf();
    let url = stub.url("/sipban.txt");
    let url_json = stub.url("/sipban.json");
    run_in(&b, move || {
        std::fs::write(
            pb.join("config.yaml"),
            format!(
                "state_dir: {}\nsets:\n  v4: {{ name: b4, cap: 100 }}\n  v6: {{ name: b6, cap: 100 }}\n\
                 feeds:\n  - {{ name: pbx-a, url: '{url}', ttl: 1h }}\n\
                 \x20 - {{ name: pbx-a-json, url: '{url_json}', ttl: 1h, format: json, pointer: /entries/*/address }}\n",
                pb.join("state").display(),
            ),
        )
        .unwrap();
        let o = sipban(&pb, &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let names: Vec<String> = members("b4").into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["45.7.7.7"]);
        let o = sipban(&pb, &["list", "--json"]);
        let rows = json(&o);
        assert_eq!(
            rows[0]["sources"],
            serde_json::json!(["pbx-a", "pbx-a-json"]),
            "the plain and the JSON forms both read: {rows}"
        );
        let out = pb.join("out.json");
        let o = sipban(&pb, &["export", "--out", out.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let body = std::fs::read_to_string(&out).unwrap();
        assert!(
            body.lines().all(|l| l.starts_with('#')),
            "a feed's entries are not B's own detections: {body}"
        );
    });
    assert_eq!(stub.requests("/sipban.txt").len(), 1);
}
