//! The commands behind `sipban`'s command line: each takes the resolved settings and plain
//! arguments, prints its human or JSON view on stdout, and ends with `Ok(())` or an [`Error`]
//! that says which exit code it means. `main` parses, loads the settings once, dispatches
//! here and turns the [`Error`] into the exit code in one place.
//!
//! Layout: [`sync`] (`sync`, `run`, `restore`), [`manual`] (`ban`, `unban`), [`views`]
//! (read-only: `config check`, `list`, `explain`, `check`, `status`, `report status`,
//! `feeds`, `scan`), [`firewall`] (`firewall ...`).
//!
//! Stdout goes through [`out`]: a reader that goes away (`sipban list | head -1`) ends the
//! output quietly and the command still finishes (a sync has already changed the kernel and
//! the state by the time it prints, so it must not die of SIGPIPE half-way through its
//! bookkeeping; and a killed process would lose the exit code that says what happened).
//!
//! This module must never decide policy or touch the kernel, the state or the network itself:
//! it calls the library and presents what it returns.

pub mod args;
pub mod assets;
pub mod firewall;
pub mod manual;
pub mod sync;
pub mod views;

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Why a command did not end with exit code 0. `main` maps each kind to its code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The run failed; nothing was changed (or the command could not do its work).
    Failed,
    /// Bad command line or bad configuration.
    Usage,
    /// The run completed, but at least one source failed.
    Partial,
    /// Another run holds the lock.
    Locked,
    /// The state could not be read or written (disk full, read-only, permission denied).
    Storage,
    /// The state database was corrupt and was moved aside.
    Corrupt,
}

/// How a command failed: the kind, and the message for stderr (`None` when the command has
/// already said everything, e.g. a report printed before a partial outcome).
#[derive(Debug)]
pub struct Error {
    pub kind: Kind,
    pub message: Option<String>,
}

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: Some(message.into()),
        }
    }

    /// `sipban: {message}`, exit 1.
    pub fn failed(message: impl fmt::Display) -> Error {
        Error::new(Kind::Failed, format!("sipban: {message}"))
    }

    /// `sipban: {message}`, exit 2.
    pub fn usage(message: impl fmt::Display) -> Error {
        Error::new(Kind::Usage, format!("sipban: {message}"))
    }

    /// A non-zero end whose explanation is already printed.
    pub fn reported(kind: Kind) -> Error {
        Error {
            kind,
            message: None,
        }
    }
}

/// A command's failure to read or write the state, named: disk full, read-only file system
/// or permission denied (`sipban: permission denied: <path> (...)`, exit 5), a corrupt
/// database (exit 6), anything else (exit 1).
pub fn state_error(e: &anyhow::Error, state_dir: &std::path::Path) -> Error {
    let db = crate::store::Store::db_path(state_dir);
    match crate::store::health::fault(e, &db) {
        Some(f) if f.is_storage() => Error::new(Kind::Storage, format!("sipban: {f} ({e:#})")),
        Some(f) => Error::new(
            Kind::Corrupt,
            format!("sipban: {f} ({e:#}); the next `sipban sync` moves it aside and rebuilds it"),
        ),
        None => Error::failed(format_args!("{e:#}")),
    }
}

/// The result of a command.
pub type Result = std::result::Result<(), Error>;

/// Refuse (exit 2) settings whose state, feed cache, manual request or metrics directory
/// others may write into: every command that writes there asks this first.
pub fn check_dirs(settings: &crate::config::Settings) -> Result {
    crate::pipeline::dirs::check(settings).map_err(Error::usage)
}

/// Set once stdout's reader has gone away: later output is dropped.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Write to stdout. A closed pipe ends the output quietly (the command carries on and keeps
/// its exit code); other write errors are ignored as well, as a terminal that went away is
/// no reason to abandon a run that has already changed the state.
pub fn out(text: &str) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
    }
}

/// [`out`] with a newline, formatted like `println!`.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => { $crate::cli::out(&format!("{}\n", format_args!($($arg)*))) };
}

/// Print `value` as pretty JSON.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result {
    match serde_json::to_string_pretty(value) {
        Ok(s) => {
            out(&format!("{s}\n"));
            Ok(())
        }
        Err(e) => Err(Error::failed(format_args!("cannot encode JSON: {e}"))),
    }
}

/// Print `value` as JSON, or its `Display` text.
pub fn print<T: serde::Serialize + fmt::Display>(value: &T, json: bool) -> Result {
    if json {
        print_json(value)
    } else {
        out(&value.to_string());
        Ok(())
    }
}

/// The one runtime of a command: current-thread (design: one core's worth of work beside a
/// PBX).
pub fn runtime() -> std::result::Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::failed(format_args!("cannot start the runtime: {e}")))
}

/// Print `value` like [`print`] where the command's exit code does not depend on it: a JSON
/// encoding failure is said on stderr and the command goes on.
pub fn show<T: serde::Serialize + fmt::Display>(value: &T, json: bool) {
    if let Err(Error {
        message: Some(m), ..
    }) = print(value, json)
    {
        eprintln!("{m}");
    }
}
