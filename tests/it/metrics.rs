//! The node_exporter textfile and `last-run.json` after real syncs (in a private network
//! namespace): the textfile passes `promtool check metrics` (Prometheus's own parser and
//! linter, Debian package `prometheus`) and is replaced atomically (a new inode each time, and
//! a reader never sees half a file).

use crate::common::run::bin;

use crate::common::netns::run_in;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn sync(dir: &Path) {
    let o = Command::new(bin())
        .args(["sync", "--config"])
        .arg(dir.join("config.yaml"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
}

/// `promtool check metrics` on `text`: whether it passed, and what it printed (lint warnings
/// included).
pub(crate) fn promtool_check(text: &str) -> (bool, String) {
    let o = crate::common::run::piped(
        Command::new("promtool")
            .args(["check", "metrics"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        text.as_bytes(),
    );
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn textfile_parses_as_prometheus_text_and_is_replaced_atomically() {
    if !crate::common::netns::require_program("promtool") {
        return;
    }
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let prom = d.join("textfile").join("sipban.prom");
        std::fs::create_dir_all(prom.parent().unwrap()).unwrap();
        let list: String = (0..300)
            .map(|i| format!("45.0.{}.{}\n", i / 256, i % 256))
            .collect();
        std::fs::write(d.join("list.txt"), list).unwrap();
        std::fs::write(
            d.join("config.yaml"),
            format!(
                "state_dir: {}\nsets:\n  v4: {{ name: t4, cap: 200 }}\n  v6: {{ name: t6, cap: 100 }}\nfeeds:\n  - {{ name: f, url: 'file://{}', ttl: 1d }}\nmetrics:\n  textfile: {}\n",
                d.join("state").display(),
                d.join("list.txt").display(),
                prom.display()
            ),
        )
        .unwrap();
        sync(&d);
        let text = std::fs::read_to_string(&prom).unwrap();
        let (good, out) = promtool_check(&text);
        assert!(good, "promtool check metrics:\n{out}\n--- file\n{text}");
        assert!(out.trim().is_empty(), "promtool lint findings:\n{out}");
        for want in [
            "sipban_set_entries{set=\"t4\",family=\"v4\"} 200",
            "sipban_set_max_entries{set=\"t4\",family=\"v4\"} 200",
            "sipban_set_evicted_entries{set=\"t4\",family=\"v4\"} 100",
            "sipban_source_entries{source=\"f\",kind=\"feed\"} 300",
            "sipban_source_consecutive_failures{source=\"f\"} 0",
            "sipban_last_run_outcome{outcome=\"ok\"} 1",
            "sipban_source_staleness_seconds{source=\"f\"} ",
            "sipban_last_run_duration_seconds ",
        ] {
            assert!(text.contains(want), "missing `{want}` in:\n{text}");
        }
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join("state/last-run.json")).unwrap()).unwrap();
        assert_eq!(summary["outcome"], "ok");
        assert!(summary["duration_seconds"].as_f64().unwrap() > 0.0);

        // Atomic replacement: a reader polling the file during ten syncs only ever sees a
        // whole file, and every write is a new inode (rename), never a rewrite in place.
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (prom.clone(), stop.clone());
        let last_family = "sipban_manual_allowlist_entries 0\n";
        let reader = std::thread::spawn(move || {
            let (mut reads, mut torn) = (0u64, 0u64);
            while !s.load(Ordering::Relaxed) {
                if let Ok(t) = std::fs::read_to_string(&p) {
                    reads += 1;
                    if !t.ends_with(last_family) {
                        torn += 1;
                    }
                }
            }
            (reads, torn)
        });
        let mut inodes = vec![std::fs::metadata(&prom).unwrap().ino()];
        for _ in 0..10 {
            sync(&d);
            inodes.push(std::fs::metadata(&prom).unwrap().ino());
        }
        stop.store(true, Ordering::Relaxed);
        let (reads, torn) = reader.join().unwrap();
        eprintln!("{reads} reads during 10 syncs, {torn} torn");
        assert!(reads > 10);
        assert_eq!(torn, 0);
        for w in inodes.windows(2) {
            assert_ne!(
                w[0], w[1],
                "the textfile was rewritten in place: {inodes:?}"
            );
        }
        // No temporary files are left in node_exporter's directory.
        let names: Vec<_> = std::fs::read_dir(prom.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("sipban.prom")]);
    });
}
