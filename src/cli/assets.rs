//! `sipban generate-assets DIR` (hidden): the man page and shell completions, generated from
//! the clap definitions in [`args`](super::args) so they never disagree with `--help`.
//!
//! The package ships the copies in `packaging/generated/` (cargo-deb takes assets as files that
//! exist before it runs, so `cargo deb` alone keeps working; tests/it/deb.rs fails when the
//! copies are stale and says how to regenerate them).
//!
//! This module must never read the config or touch the state or the kernel.

use super::args::Cli;
use super::{Error, Result};
use clap::CommandFactory;
use clap_complete::Shell;
use std::path::Path;

/// The files written, relative to DIR: man page, then the bash, zsh and fish completions.
pub const FILES: [&str; 4] = ["sipban.1", "sipban.bash", "_sipban", "sipban.fish"];

/// Write [`FILES`] into `dir`.
pub fn generate(dir: &Path) -> Result {
    let write_err = |what: &str, e: std::io::Error| Error::failed(format!("writing {what}: {e}"));
    std::fs::create_dir_all(dir).map_err(|e| write_err(&dir.display().to_string(), e))?;
    let mut man = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut man)
        .map_err(|e| write_err("the man page", e))?;
    let path = dir.join(FILES[0]);
    std::fs::write(&path, man).map_err(|e| write_err(&path.display().to_string(), e))?;
    for (shell, file) in [
        (Shell::Bash, FILES[1]),
        (Shell::Zsh, FILES[2]),
        (Shell::Fish, FILES[3]),
    ] {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "sipban", &mut text);
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(|e| write_err(&path.display().to_string(), e))?;
    }
    Ok(())
}
