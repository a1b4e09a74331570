//! Private network namespaces for tests that touch the kernel firewall.
//!
//! Every test that creates sets or rules runs inside its own [`NetNs`], so the host's sets and
//! rules are never read or changed. Tests that cannot get a namespace (not root, no `ip netns`)
//! skip with a message on stderr, except under `CI=true`, where skipping would hide a broken
//! test and they panic instead.
//!
//! Dependency-free on purpose: std and the `ip` tool only.

#![allow(dead_code)] // each test file uses its own subset

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A named network namespace (`ip netns add sbt-<pid>-<n>`) with `lo` up, deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Create a namespace or panic (use [`require_netns`] to skip instead when not root).
    pub fn new() -> NetNs {
        NetNs::try_new().unwrap_or_else(|e| panic!("cannot create a network namespace: {e}"))
    }

    /// Create a namespace; the error says which command failed and what it printed.
    pub fn try_new() -> Result<NetNs, String> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("sbt-{}-{n}", std::process::id());
        let add = |name: &str| run(&["ip", "netns", "add", name]);
        if add(&name).is_err() {
            // A leftover from a killed run that had the same pid: remove it and retry once.
            let _ = run(&["ip", "netns", "delete", &name]);
            add(&name)?;
        }
        let ns = NetNs { name };
        run(&[
            "ip", "netns", "exec", &ns.name, "ip", "link", "set", "lo", "up",
        ])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `["ip", "netns", "exec", NAME, argv...]`.
    pub fn wrap<I, S>(&self, argv: I) -> Vec<OsString>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut out: Vec<OsString> = ["ip", "netns", "exec", &self.name]
            .iter()
            .map(OsString::from)
            .collect();
        out.extend(argv.into_iter().map(|a| a.as_ref().to_os_string()));
        out
    }

    /// Run `argv` inside the namespace and return its output (whatever its exit status).
    pub fn exec<S: AsRef<OsStr>>(&self, argv: &[S]) -> Output {
        let full = self.wrap(argv);
        Command::new(&full[0])
            .args(&full[1..])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run `ip netns exec {}`: {e}", self.name))
    }

    /// Like [`NetNs::exec`], but panic with the command's stderr unless it succeeds.
    pub fn exec_ok<S: AsRef<OsStr>>(&self, argv: &[S]) -> Output {
        let out = self.exec(argv);
        if !out.status.success() {
            let shown: Vec<_> = argv.iter().map(|a| a.as_ref().to_string_lossy()).collect();
            panic!(
                "`{}` in namespace {} failed ({}): {}",
                shown.join(" "),
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        out
    }
}

/// Run `f` on a new thread that has entered `ns` (setns), so every socket it opens and every
/// process it starts (without `ip netns exec`) lives in the namespace: in-process stub
/// servers, the `sipban` binary and `ipset` then all see the same private network. The
/// calling thread's namespace is never changed. A panic in `f` is re-raised here.
pub fn run_in<R: Send + 'static>(ns: &NetNs, f: impl FnOnce() -> R + Send + 'static) -> R {
    let path = format!("/run/netns/{}", ns.name);
    let handle = std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: setns on a valid namespace fd only changes this thread's network namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
        f()
    });
    match handle.join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = run(&["ip", "netns", "delete", &self.name]) {
            eprintln!(
                "warning: could not delete test namespace {}: {e}",
                self.name
            );
        }
    }
}

fn run(argv: &[&str]) -> Result<(), String> {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`{}`: {e}", argv.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed ({}): {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// True under `CI=true`: there a test that cannot run must fail, not skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Print a skip notice straight to stderr (past the test harness's capture, so it shows), or
/// panic with the same text under `CI=true`.
pub fn skip(why: &str) {
    let test = std::thread::current()
        .name()
        .map(|t| format!(" {t}"))
        .unwrap_or_default();
    let text = format!("skipped{test}: {why}");
    if in_ci() {
        panic!("{text} (CI=true: tests must run, not skip)");
    }
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// The effective uid from `/proc/self/status` (`None` when it cannot be read).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    effective_uid() == Some(0)
}

/// A fresh namespace, or `None` after printing "skipped: needs root for a private network
/// namespace" (a panic under `CI=true`).
pub fn require_netns() -> Option<NetNs> {
    if !is_root() {
        skip("needs root for a private network namespace");
        return None;
    }
    match NetNs::try_new() {
        Ok(ns) => Some(ns),
        Err(e) => {
            skip(&format!(
                "needs root for a private network namespace (`ip netns` failed: {e})"
            ));
            None
        }
    }
}

/// Whether `program` can be started from `PATH`; otherwise print why the test is skipped (a
/// panic under `CI=true`).
pub fn require_program(program: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    if !found {
        skip(&format!("needs `{program}`, which is not installed"));
    }
    found
}

/// `let ns = netns_or_skip!();` gives a fresh [`NetNs`], or returns from the test after
/// printing why (panics under `CI=true`).
#[macro_export]
macro_rules! netns_or_skip {
    () => {
        match $crate::common::netns::require_netns() {
            Some(ns) => ns,
            None => return,
        }
    };
}
