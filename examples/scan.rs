//! Stand-in for `sipban scan [FILE...] [--full FILE] [--json] [--verbose] [--aggressive]` until
//! the lead wires the `scan` subcommand into `main.rs`; the benchmark script uses it. It only
//! reads the files.

use sipban::source::asterisk::{scan_with, ScanOptions};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut files = Vec::new();
    let mut full = None;
    let mut json = false;
    let mut opts = ScanOptions::default();
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--json") => json = true,
            Some("--verbose") | Some("-v") => opts.verbose = true,
            Some("--aggressive") => opts.aggressive = true,
            Some("--full") => match args.next() {
                Some(f) => full = Some(PathBuf::from(f)),
                None => {
                    eprintln!("scan: --full needs a file");
                    return ExitCode::from(2);
                }
            },
            _ => files.push(PathBuf::from(a)),
        }
    }
    if files.is_empty() && full.is_none() {
        eprintln!("usage: scan FILE... [--full FILE] [--json] [--verbose] [--aggressive]");
        return ExitCode::from(2);
    }
    match scan_with(&files, full.as_deref(), opts) {
        Ok(report) => {
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("scan: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{report}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("scan: {e}");
            ExitCode::FAILURE
        }
    }
}
