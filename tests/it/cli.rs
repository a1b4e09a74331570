//! The command line as a user meets it: no kernel access needed (everything here runs as a
//! non-root user when the tests run as root).

use crate::common::netns::is_root;
use crate::common::run::{bin, text};

use std::path::Path;
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A world-readable scratch directory holding a copy of the binary, so `nobody` can run it
/// wherever the checkout lives (CI may clone below a directory only root can enter).
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::copy(bin(), dir.path().join("sipban")).unwrap();
        Scratch { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Run the copied sipban as an unprivileged user: `nobody` through setpriv when we are root.
    fn as_user(&self, args: &[&str]) -> Output {
        let exe = self.path().join("sipban");
        let mut cmd = if is_root() {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
                .arg(exe);
            c
        } else {
            Command::new(exe)
        };
        cmd.args(args)
            .current_dir("/")
            .output()
            .expect("run sipban")
    }
}

/// The README's main job: a dry run of the shipped example config by a non-root user.
#[test]
fn dry_run_of_the_example_config_as_a_non_root_user() {
    if is_root() && !crate::common::netns::require_program("setpriv") {
        return;
    }
    // The example config and its sample feed, copied as they ship (the feed path is relative
    // to the config file).
    let scratch = Scratch::new();
    std::fs::copy(
        repo().join("config.example.yaml"),
        scratch.path().join("config.yaml"),
    )
    .unwrap();
    std::fs::create_dir(scratch.path().join("examples")).unwrap();
    std::fs::copy(
        repo().join("examples/sample-feed.txt"),
        scratch.path().join("examples/sample-feed.txt"),
    )
    .unwrap();
    let config = scratch.path().join("config.yaml");
    let o = scratch.as_user(&["sync", "--dry-run", "--config", config.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("NOT applied"), "{}", text(&o));
    assert!(out.contains("+ 203.0.113.10"), "{}", text(&o));
    assert!(out.contains("+ 2001:db8:bad::/48"), "{}", text(&o));
    assert!(
        out.contains("compared against: kernel sets not readable"),
        "says what it diffed against: {}",
        text(&o)
    );
    assert!(
        out.contains("2001:db8::5 protected by 2001:db8::/48"),
        "{}",
        text(&o)
    );
    assert!(!out.contains("0.0.0.0/0 ("), "{}", text(&o));
    // JSON for scripts.
    let o = scratch.as_user(&[
        "sync",
        "--dry-run",
        "--json",
        "--config",
        config.to_str().unwrap(),
    ]);
    let j: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    assert_eq!(j["dry_run"], true);
    assert_eq!(j["sets"][0]["adds"].as_array().unwrap().len(), 5);
    assert_eq!(j["sources"][0]["counts"]["rejected"]["everything"], 1);
}

#[test]
fn dry_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("l.txt");
    std::fs::write(&list, "45.0.0.1\n").unwrap();
    let state = dir.path().join("state");
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir: {}\nfeeds:\n  - {{ name: a, url: 'file://{}' }}\n",
            state.display(),
            list.display()
        ),
    )
    .unwrap();
    let o = Command::new(bin())
        .args(["sync", "--dry-run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!state.exists(), "a dry run created {}", state.display());
}

#[test]
fn config_check_prints_resolved_settings_and_errors_have_positions() {
    let config = repo().join("config.example.yaml");
    let o = Command::new(bin())
        .args(["config", "check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("sipban-v4") && out.contains("sample"),
        "{}",
        text(&o)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "sets:\n  v4: { name: x, cap: 10 }\nfeeds:\n  - name: a\n    url: https://x.org/\n    intervall: 1h\n").unwrap();
    let o = Command::new(bin())
        .args(["config", "check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.yaml") && err.contains("line 6") && err.contains("intervall"),
        "{}",
        text(&o)
    );

    let o = Command::new(bin())
        .args(["sync", "--config"])
        .arg(dir.path().join("missing.yaml"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn explain_and_list_without_state() {
    let scratch = Scratch::new();
    let cfg = scratch.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir: {}\nallowlist: [192.0.2.0/24]\n",
            scratch.path().join("s").display()
        ),
    )
    .unwrap();
    let o = scratch.as_user(&["explain", "192.0.2.7", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("not listed") && out.contains("192.0.2.0/24 (allowlist in config)"),
        "{}",
        text(&o)
    );
    let o = Command::new(bin())
        .args(["explain", "not-an-ip", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = Command::new(bin())
        .args(["list", "--json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "[]",
        "{}",
        text(&o)
    );
}

#[test]
fn feeds_lists_the_catalogue() {
    let o = Command::new(bin()).arg("feeds").output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    for name in [
        "blocklist-de-sip",
        "voipbl",
        "spamhaus-drop-v4",
        "spamhaus-drop-v6",
        "firehol-level1",
    ] {
        assert!(out.contains(name), "{name}: {}", text(&o));
    }
}

/// Stdout whose reader is already gone: every write fails with EPIPE.
fn closed_pipe() -> std::process::Stdio {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) returns.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    std::process::Stdio::from(write)
}

#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    let cfg = repo().join("config.example.yaml");
    let runs: [&[&str]; 4] = [
        &["feeds"],
        &["feeds", "--json"],
        &["config", "check"],
        &["config", "check", "--json"],
    ];
    for args in runs {
        let o = Command::new(bin())
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .stdout(closed_pipe())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?} said something on stderr: {err}");
    }
}

/// Panics if a run's stdout or stderr holds a secret of the feed URLs below.
fn assert_no_feed_secret(o: &Output, what: &str) {
    let all = text(o);
    for secret in ["s3cret", "t0ken"] {
        assert!(!all.contains(secret), "{what} shows `{secret}`: {all}");
    }
}

/// Credentials and tokens in a feed URL are used for the request and shown nowhere: not in
/// the resolved settings (text and JSON), not in the run report (text and JSON), not in a
/// download error (refused connection, HTTP status, a redirect to a URL with secrets), not in
/// a debug log line, and not in a config error about the URL.
#[test]
fn secrets_in_feed_urls_are_never_shown() {
    use crate::common::stub::{Reply, Stub};
    let stub = Stub::start();
    stub.set("/list.txt?token=t0ken&key=x", Reply::ok("45.0.0.1\n"));
    stub.set(
        "/moved.txt?token=t0ken",
        Reply::status(302, "").header("Location", "http://user:s3cret@127.0.0.1:9/x?token=t0ken"),
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    let a = stub.addr;
    std::fs::write(
        &cfg,
        format!(
            "state_dir: {state}
feeds:
  - {{ name: down, url: 'https://user:s3cret@127.0.0.1:9/list.txt?token=t0ken&key=x', retries: 1, connect_timeout: 2s, timeout: 5s }}
  - {{ name: served, url: 'http://user:s3cret@{a}/list.txt?token=t0ken&key=x', retries: 0 }}
  - {{ name: missing, url: 'http://s3cret@{a}/gone.txt?t0ken', retries: 0 }}
  - {{ name: moved, url: 'http://{a}/moved.txt?token=t0ken', retries: 0 }}
",
            state = dir.path().join("state").display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(bin())
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };

    for args in [
        &["config", "check"][..],
        &["config", "check", "--json"],
        &["-vv", "config", "check"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
        assert_no_feed_secret(&o, &format!("{args:?}"));
    }
    let o = run(&["config", "check", "--json"]);
    let j = crate::common::run::json(&o);
    assert_eq!(
        j["feeds"][1]["location"]["location"],
        format!("http://[redacted]@{a}/list.txt?token=[redacted]&key=[redacted]"),
        "{}",
        text(&o)
    );

    for args in [
        &["-vv", "sync", "--dry-run"][..],
        &["-vv", "sync", "--dry-run", "--json"],
    ] {
        let o = run(args);
        assert_no_feed_secret(&o, &format!("{args:?}"));
        let out = String::from_utf8_lossy(&o.stdout);
        // The served feed was fetched with the real URL, and each failure is reported.
        assert!(out.contains("45.0.0.1"), "{args:?}: {}", text(&o));
        let all = text(&o);
        assert!(
            all.contains("connection failed") && all.contains("HTTP 404"),
            "{args:?}: {all}"
        );
    }
    let o = run(&["sync", "--dry-run", "--json"]);
    let j = crate::common::run::json(&o);
    let served = j["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "served")
        .unwrap_or_else(|| panic!("{}", text(&o)));
    assert_eq!(
        served["feed"]["location"],
        format!("http://[redacted]@{a}/list.txt?token=[redacted]&key=[redacted]")
    );
    let requests = stub.requests("/list.txt?token=t0ken&key=x");
    assert!(!requests.is_empty(), "the real URL was not requested");
    for r in requests {
        let auth = r
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"));
        assert_eq!(
            auth.map(|(_, v)| v.as_str()),
            Some("Basic dXNlcjpzM2NyZXQ="),
            "the userinfo is sent as credentials"
        );
    }

    // A config error about a URL, or one whose quoted lines hold it, shows it redacted too.
    for feed in [
        "{ name: a, url: 'https://user:s3cret@/list.txt?token=t0ken' }",
        "{ name: a, url: 'ftp://user:s3cret@example.org/list.txt?token=t0ken' }",
        "{ name: a, url: 'file://user:s3cret@example.org/list.txt?token=t0ken' }",
        "{ name: a, url: 'https://user:s3cret@example.org/list.txt?token=t0ken', intervall: 1h }",
        "{ name: a, url: https://user:s3cret@example.org/list.txt?token=t0ken, retries: [x] }",
    ] {
        std::fs::write(&cfg, format!("feeds:\n  - {feed}\n")).unwrap();
        let o = run(&["config", "check"]);
        assert_eq!(o.status.code(), Some(2), "{feed}: {}", text(&o));
        assert_no_feed_secret(&o, feed);
    }
}

/// Under systemd (`JOURNAL_STREAM` set) every stderr line starts with its syslog priority, so
/// `journalctl -p warning` finds warnings and errors; elsewhere no line does.
#[test]
fn stderr_lines_carry_syslog_priorities_only_under_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("l.txt"), "45.0.0.1\n").unwrap();
    // A state database that is not one: a warning from the logger ("planning without saved
    // state"); a missing feed file: a source error (exit 3), printed by the command.
    std::fs::create_dir(d.join("state")).unwrap();
    std::fs::write(d.join("state/state.db"), "garbage\n").unwrap();
    let cfg = d.join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir: {}\nfeeds:\n  - {{ name: a, url: 'file://{}' }}\n  - {{ name: b, url: 'file://{}' }}\n",
            d.join("state").display(),
            d.join("l.txt").display(),
            d.join("missing.txt").display()
        ),
    )
    .unwrap();
    std::fs::write(d.join("bad.yaml"), "sets: [x\n").unwrap();
    let run = |config: &Path, journal: bool| {
        let mut c = Command::new(bin());
        c.args(["sync", "--dry-run", "--config"]).arg(config);
        c.env_remove("JOURNAL_STREAM");
        if journal {
            c.env("JOURNAL_STREAM", "8:12345");
        }
        c.output().unwrap()
    };
    let o = run(&cfg, true);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<4>") && l.contains("planning without saved state")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<4>sipban: feed b:") && l.contains("missing.txt")),
        "{err}"
    );
    assert!(lines.iter().all(|l| l.starts_with('<')), "{err}");
    let o = run(&d.join("bad.yaml"), true);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).starts_with("<3>"),
        "{}",
        text(&o)
    );

    for config in [cfg.as_path(), &d.join("bad.yaml")] {
        let o = run(config, false);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!err.is_empty(), "{}", text(&o));
        assert!(!err.lines().any(|l| l.starts_with('<')), "{err}");
    }
}
