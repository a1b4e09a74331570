//! Snapshot tests of the text that admins read (issue 18, item 4): `status`, `list` and
//! `explain` for one fixed state, compared line by line with `tests/it/snapshots/*.txt`.
//!
//! The state is made by the real binary in a private network namespace (real `ipset`, real
//! SQLite) under a frozen wall clock (libfaketime; the monotonic clock stays real so no wait
//! hangs): a feed with an allowlisted address and more entries than the cap, Asterisk failures
//! (one source banned, two still counting), a downloaded feed, kernel-log probes under the threshold, a manual
//! ban. Every age and TTL in the output is then a fixed number.
//!
//! When the output changes on purpose, run the test with `SIPBAN_BLESS=1` to rewrite the
//! files, and review the diff like code.

use crate::common::netns::run_in;
use crate::common::run::{bin, faketime, libfaketime, text};
use crate::common::stub::{Reply, Stub};
use std::path::Path;
use std::process::{Output, Stdio};

/// 2026-06-01 12:00:00 UTC: the sync.
const T: i64 = 1_780_315_200;

fn stamp(t: i64) -> String {
    sipban::inspect::fmt_time(t).replace(" UTC", "")
}

/// sipban at a frozen wall-clock time `t`.
fn at(dir: &Path, t: i64, args: &[&str]) -> Output {
    let o = faketime(&stamp(t), bin())
        .expect("libfaketime")
        .args(args)
        .arg("--config")
        .arg(dir.join("config.yaml"))
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .output()
        .expect("run sipban under libfaketime");
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
    o
}

fn write_inputs(d: &Path, url: &str) {
    use crate::common::lines::{asterisk_line, kernel_line};
    let mut messages = String::new();
    for i in 0..5 {
        messages += &asterisk_line(T - 600 + i * 10, "45.10.0.1"); // banned (maxretry 5)
    }
    for i in 0..3 {
        messages += &asterisk_line(T - 300 + i * 10, "45.10.0.2"); // 3 of 5
    }
    messages += &asterisk_line(T - 120, "45.10.0.3"); // 1 of 5
    std::fs::write(d.join("messages"), messages).unwrap();
    let kern = kernel_line(T - 200, "45.20.0.1", 22) + &kernel_line(T - 190, "45.20.0.1", 23);
    std::fs::write(d.join("kern.log"), kern).unwrap();
    // Seven IPv4 entries for a cap of 6, one of them allowlisted; one IPv6 entry.
    std::fs::write(
        d.join("list.txt"),
        "45.0.0.1\n45.0.0.2\n45.0.0.3\n45.0.0.4\n45.9.9.9\n45.3.0.0/24\n2001:db8:45::1\n",
    )
    .unwrap();
    let cfg = format!(
        "state_dir: {d}/state\nsets:\n  v4: {{ name: snap4, cap: 6 }}\n  v6: {{ name: snap6, cap: 100 }}\nallowlist: [45.9.9.9]\nfeeds:\n  - {{ name: community, url: 'file://{d}/list.txt', ttl: 1d, interval: 1h, max_shrink: 100% }}\n  - {{ name: remote, url: '{url}', ttl: 2d, interval: 1h, retries: 0 }}\nasterisk:\n  logs: [{d}/messages]\n  maxretry: 5\n  findtime: 10m\n  bantime: 2h\nkernel_log:\n  files: [{d}/kern.log]\nmetrics:\n  textfile: {d}/sipban.prom\n",
        d = d.display()
    );
    std::fs::write(d.join("config.yaml"), cfg).unwrap();
}

/// Compare `actual` (with the temporary directory replaced by `<DIR>`) with the snapshot
/// `name`, or rewrite it under `SIPBAN_BLESS=1`.
fn check(d: &Path, name: &str, o: &Output) {
    let actual = String::from_utf8_lossy(&o.stdout).replace(&d.display().to_string(), "<DIR>");
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("SIPBAN_BLESS").is_some() {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e} (run with SIPBAN_BLESS=1)", file.display()));
    if expected != actual {
        let mut diff = String::new();
        let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
        for i in 0..e.len().max(a.len()) {
            let (x, y) = (e.get(i).copied(), a.get(i).copied());
            if x != y {
                diff += &format!(
                    "line {}:\n  expected: {}\n  actual:   {}\n",
                    i + 1,
                    x.unwrap_or("<none>"),
                    y.unwrap_or("<none>")
                );
            }
        }
        panic!(
            "`{name}` output differs from {} (SIPBAN_BLESS=1 rewrites it):\n{diff}\n--- actual\n{actual}",
            file.display()
        );
    }
}

#[test]
fn status_list_and_explain_text_for_a_fixed_state() {
    if libfaketime().is_none() {
        crate::common::netns::skip("needs libfaketime (Debian package `faketime`)");
        return;
    }
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let stub = Stub::start();
        stub.set("/list", Reply::ok("45.30.0.1\n"));
        write_inputs(d, &stub.url("/list"));
        at(d, T, &["sync"]);
        at(d, T + 60, &["ban", "45.5.5.5", "--ttl", "2h"]);
        // Five minutes after the sync: the two counting sources are still within findtime.
        let later = T + 300;
        check(d, "status", &at(d, later, &["status"]));
        check(d, "list", &at(d, later, &["list"]));
        check(
            d,
            "explain-banned",
            &at(d, later, &["explain", "45.10.0.1"]),
        );
        check(
            d,
            "explain-allowlisted",
            &at(d, later, &["explain", "45.9.9.9"]),
        );
        // The metrics tell the same story: the sources still counting, per detector.
        let prom = std::fs::read_to_string(d.join("sipban.prom")).unwrap();
        for want in [
            "sipban_detector_failing_sources{detector=\"asterisk\"} 2",
            "sipban_detector_failing_sources{detector=\"kernel_log\"} 1",
        ] {
            assert!(prom.contains(want), "no `{want}` in:\n{prom}");
        }
        let (ok, out) = crate::metrics::promtool_check(&prom);
        assert!(ok, "{out}");
    });
}
