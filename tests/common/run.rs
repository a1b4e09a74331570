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

/// Exit code, stdout and stderr of a run, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
