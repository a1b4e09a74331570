//! Source failures stay visible (issue 14, item 9): a feed in back-off, an APIBAN key file that
//! is missing, and a log detector whose file is missing each keep the run at exit 3 while the
//! other sources apply, and `status` says why; `sync --retry-now` (`--force-download`) ignores
//! back-off and intervals for one run. Each test runs the real binary in a private network
//! namespace, with real `ipset`, real SQLite and a local stub feed server.

use crate::common::netns::run_in;
use crate::common::run::{json, sipban, text};
use crate::common::stub::{Reply, Stub};
use std::collections::HashSet;
use std::path::Path;
use std::process::Output;

fn members(set: &str) -> HashSet<String> {
    sipban::backend::ipset::Ipset::new()
        .read(set)
        .expect("read set")
        .map(|k| k.members.keys().map(sipban::net::display_net).collect())
        .unwrap_or_default()
}

/// A config with a file feed `local` listing 45.0.0.1, and `extra` appended (more feeds under
/// `feeds:` when it starts with two spaces, else other sections).
fn write_config(dir: &Path, feeds: &str, sections: &str) {
    std::fs::write(dir.join("list.txt"), "45.0.0.1\n").unwrap();
    let cfg = format!(
        "state_dir: {}\nsets:\n  v4: {{ name: t4, cap: 100 }}\n  v6: {{ name: t6, cap: 100 }}\nfeeds:\n  - {{ name: local, url: 'file://{}', ttl: 1d, max_shrink: 100% }}\n{feeds}{sections}",
        dir.join("state").display(),
        dir.join("list.txt").display(),
    );
    std::fs::write(dir.join("config.yaml"), cfg).unwrap();
}

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `sipban status` (human) and the line of source `name` with the lines under it.
fn status_of(dir: &Path, name: &str) -> String {
    let o = sipban(dir, &["status"]);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    let s = out(&o);
    let mut lines = s
        .lines()
        .skip_while(|l| !l.trim_start().starts_with(&format!("{name} ")));
    let mut block = lines.next().unwrap_or_default().to_string();
    for l in lines.take_while(|l| l.starts_with("   ")) {
        block.push('\n');
        block.push_str(l);
    }
    assert!(!block.is_empty(), "no status line for {name}:\n{s}");
    block
}

#[test]
fn a_missing_apiban_key_file_is_that_sources_failure_and_the_feed_applies() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let key = d.join("no-such.key");
        write_config(d, "", &format!("apiban:\n  key_file: {}\n", key.display()));
        let o = sipban(d, &["sync"]);
        assert_eq!(code(&o), Some(3), "{}", text(&o));
        let all = text(&o);
        assert!(
            all.contains(&format!(
                "key file {}: No such file or directory",
                key.display()
            )),
            "{all}"
        );
        assert_eq!(members("t4"), HashSet::from(["45.0.0.1".to_string()]));
        let st = status_of(d, "apiban");
        assert!(
            st.contains(&format!(
                "key file {}: No such file or directory",
                key.display()
            )),
            "{st}"
        );
        // Still missing: still partial.
        let o = sipban(d, &["sync"]);
        assert_eq!(code(&o), Some(3), "{}", text(&o));
    });
}

#[test]
fn a_feed_in_backoff_keeps_the_run_partial_and_status_says_so() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let stub = Stub::start();
        stub.set("/list", Reply::status(500, "down"));
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_config(
            d,
            &format!(
                "  - {{ name: remote, url: '{}', ttl: 1d, interval: 1h, retries: 0 }}\n",
                stub.url("/list")
            ),
            "",
        );
        let o = sipban(d, &["sync"]);
        assert_eq!(code(&o), Some(3), "{}", text(&o));
        assert_eq!(stub.requests("/list").len(), 1);
        // The next run is within the back-off: no request, and still exit 3, saying why.
        let o = sipban(d, &["sync"]);
        assert_eq!(code(&o), Some(3), "{}", text(&o));
        assert_eq!(stub.requests("/list").len(), 1, "{}", text(&o));
        let all = text(&o);
        assert!(all.contains("feed remote: in backoff until "), "{all}");
        assert!(all.contains("after 1 failures: HTTP 500"), "{all}");
        assert_eq!(members("t4"), HashSet::from(["45.0.0.1".to_string()]));
        let st = status_of(d, "remote");
        assert!(st.contains("in backoff until "), "{st}");
        assert!(st.contains("after 1 failures: HTTP 500"), "{st}");
    });
}

#[test]
fn retry_now_downloads_despite_backoff_and_interval() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let stub = Stub::start();
        stub.set("/list", Reply::status(500, "down"));
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_config(
            d,
            &format!(
                "  - {{ name: remote, url: '{}', ttl: 1d, interval: 1h, retries: 0 }}\n",
                stub.url("/list")
            ),
            "",
        );
        let o = sipban(d, &["sync"]);
        assert_eq!(code(&o), Some(3), "{}", text(&o));
        stub.set("/list", Reply::ok("45.0.0.2\n"));
        // In back-off: --retry-now downloads anyway, and the run recovers.
        let o = sipban(d, &["sync", "--retry-now"]);
        assert_eq!(code(&o), Some(0), "{}", text(&o));
        assert_eq!(stub.requests("/list").len(), 2);
        assert!(members("t4").contains("45.0.0.2"));
        // Within the interval: a plain sync does not download, --force-download does.
        let o = sipban(d, &["sync", "--json"]);
        assert_eq!(code(&o), Some(0), "{}", text(&o));
        assert_eq!(json(&o)["sources"][1]["feed"]["status"], "not_due");
        assert_eq!(stub.requests("/list").len(), 2);
        let o = sipban(d, &["sync", "--force-download"]);
        assert_eq!(code(&o), Some(0), "{}", text(&o));
        assert_eq!(stub.requests("/list").len(), 3);
        let st = status_of(d, "remote");
        assert!(!st.contains("backoff") && !st.contains("FAILING"), "{st}");
    });
}

/// A missing log of a detector (`section`, with `files_key` naming its list of files) is a
/// failure of that source until the file appears.
fn missing_log_is_partial_until_it_appears(section: &str, files_key: &str, source: &str) {
    let ns = netns_or_skip!();
    let (section, files_key, source) = (
        section.to_string(),
        files_key.to_string(),
        source.to_string(),
    );
    run_in(&ns, move || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let log = d.join("missing.log");
        write_config(
            d,
            "",
            &format!("{section}:\n  {files_key}: [{}]\n", log.display()),
        );
        let o = sipban(d, &["sync"]);
        assert_eq!(code(&o), Some(3), "{}", text(&o));
        let all = text(&o);
        let want = format!("log {}: not found", log.display());
        assert!(all.contains(&want), "{all}");
        assert_eq!(members("t4"), HashSet::from(["45.0.0.1".to_string()]));
        let st = status_of(d, &source);
        assert!(st.contains(&want), "{st}");
        // The log appears (empty): the detector reads it and the run is whole again.
        std::fs::write(&log, "").unwrap();
        let o = sipban(d, &["sync"]);
        assert_eq!(code(&o), Some(0), "{}", text(&o));
        let st = status_of(d, &source);
        assert!(!st.contains("not found"), "{st}");
    });
}

#[test]
fn a_missing_asterisk_log_keeps_the_run_partial_and_status_names_it() {
    missing_log_is_partial_until_it_appears("asterisk", "logs", "asterisk");
}

#[test]
fn a_missing_kernel_log_keeps_the_run_partial_and_status_names_it() {
    missing_log_is_partial_until_it_appears("kernel_log", "files", "kernel");
}

/// The daemon's syncs count the same failures: a missing log makes each one partial, logged
/// as such with the path.
#[test]
fn the_daemon_logs_a_sync_with_a_missing_log_as_partial() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let log = d.join("missing.log");
        write_config(
            d,
            "",
            &format!(
                "asterisk:\n  logs: [{}]\ndaemon:\n  sync_schedule: \"* * * * * *\"\n",
                log.display()
            ),
        );
        let stderr = d.join("daemon.log");
        let mut child = std::process::Command::new(crate::common::run::bin())
            .args(["run", "-v", "--config"])
            .arg(d.join("config.yaml"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let want = format!("sync: asterisk: log {}: not found", log.display());
        let t = std::time::Instant::now();
        let mut text = String::new();
        while t.elapsed() < std::time::Duration::from_secs(30) {
            text = std::fs::read_to_string(&stderr).unwrap_or_default();
            if text.contains("sync partial: 1 source errors") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(text.contains("sync partial: 1 source errors"), "{text}");
        assert!(text.contains(&want), "{text}");
        assert_eq!(members("t4"), HashSet::from(["45.0.0.1".to_string()]));
    });
}
