//! Running the `sipban` binary from a test: its path, a run with the config in a directory,
//! and an `Output` worded for an assertion message.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `sipban` binary cargo built for this test run.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sipban"))
}

/// Run sipban (in the current thread's namespace) with `args` and the config in `dir`.
pub fn sipban(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .arg("--config")
        .arg(dir.join("config.yaml"))
        .stdin(Stdio::null())
        .output()
        .expect("run sipban")
}

/// The name libtest gives the test function `name` of the module whose `module_path!()` is
/// `module` (`it::apiban` → `apiban::name`): to run this binary again on that one test with
/// `--exact`, as the kill tests do with their helper processes.
pub fn test_name(module: &str, name: &str) -> String {
    match module.split_once("::") {
        Some((_crate, path)) => format!("{path}::{name}"),
        None => name.to_string(),
    }
}

/// A run's stdout as JSON, or a panic showing the whole run.
pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {}", text(o)))
}

/// Exit code, stdout and stderr of a run, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Run `cmd` with `input` on its standard input (its output captured unless the caller set
/// stdout or stderr), to its end.
pub fn piped(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input)
        .unwrap_or_else(|e| panic!("write to {cmd:?}: {e}"));
    child.wait_with_output().expect("wait")
}

/// libfaketime's library, wherever this architecture keeps it (Debian package `faketime`).
pub fn libfaketime() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.is_file())
}

/// `program` under libfaketime with the clock `spec` (`FAKETIME`: "2026-06-01 12:00:00"
/// frozen, "+365d" ahead), the monotonic clock left real. The library is preloaded directly,
/// not through the `faketime` wrapper: the wrapper names a POSIX semaphore after its PID,
/// leaves it behind when it dies, and a later wrapper with that PID (pid_max is 32,768 here)
/// then fails with "sem_open: File exists".
pub fn faketime(spec: &str, program: impl AsRef<std::ffi::OsStr>) -> Option<Command> {
    let lib = libfaketime()?;
    let mut cmd = Command::new(program);
    cmd.env("LD_PRELOAD", lib)
        .env("FAKETIME", spec)
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    Some(cmd)
}
