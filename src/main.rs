//! The `sipban` command line: parse the arguments, load the settings once, dispatch to
//! [`sipban::cli`], and turn its one error type into the exit code (the README's table, in
//! [`exit_code`]). No logic of its own lives here.

use clap::Parser;
use sipban::cli::args::{Cli, Command, ConfigCommand, FirewallCommand, ReportCommand};
use sipban::cli::{self, firewall, manual, views, Error, Kind};
use sipban::config::{self, Settings};
use sipban::exit;
use sipban::source::kernlog::KernelLogSettings;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon logs its syncs and bans at info by default: the journal is its only output.
    sipban::logging::init(cli.log_verbosity, matches!(cli.command, Command::Run));
    let code = match run(cli) {
        Ok(()) => exit::OK,
        Err(e) => {
            if let Some(message) = &e.message {
                // A partial run or a held lock is a warning; everything else an error.
                let prio = match e.kind {
                    Kind::Partial | Kind::Locked => 4,
                    _ => 3,
                };
                eprintln!("{}{message}", sipban::logging::journal_prefix(prio));
            }
            exit_code(e.kind)
        }
    };
    ExitCode::from(code)
}

/// The exit code of each way a command can fail (README: 1 failed, 2 usage/config,
/// 3 partial, 4 locked, 5 storage, 6 corrupt state).
fn exit_code(kind: Kind) -> u8 {
    match kind {
        Kind::Failed => exit::FAILED,
        Kind::Usage => exit::USAGE,
        Kind::Partial => exit::PARTIAL,
        Kind::Locked => exit::LOCKED,
        Kind::Storage => exit::STORAGE,
        Kind::Corrupt => exit::CORRUPT,
    }
}

/// What a command needs of the config file.
enum Needs {
    /// Nothing (`feeds`, `scan` of Asterisk logs).
    Nothing,
    /// Its `kernel_log` section when the file exists, else the built-in defaults.
    KernelLog,
    /// The whole resolved settings.
    Settings,
}

fn needs(command: &Command) -> Needs {
    match command {
        Command::Feeds { .. } | Command::GenerateAssets { .. } => Needs::Nothing,
        // An empty file list is refused before the config is read.
        Command::Scan {
            kernel: true,
            files,
            ..
        } if !files.is_empty() => Needs::KernelLog,
        Command::Scan { .. } => Needs::Nothing,
        Command::Firewall {
            command: FirewallCommand::LogRule { .. },
        } => Needs::KernelLog,
        _ => Needs::Settings,
    }
}

/// Whether a command writes into the state or metrics directories (or, for `config check`
/// and dry runs, says whether a real run could): those refuse directories others may write.
fn writes_files(command: &Command) -> bool {
    matches!(
        command,
        Command::Sync { .. }
            | Command::Run
            | Command::Restore { .. }
            | Command::Ban { .. }
            | Command::Unban { .. }
            | Command::Config {
                command: ConfigCommand::Check { .. }
            }
            | Command::Firewall {
                command: FirewallCommand::Install(_)
                    | FirewallCommand::Remove(_)
                    | FirewallCommand::Check { repair: true, .. }
            }
    )
}

/// The settings, loaded once for the commands that need them.
struct Loaded {
    settings: Option<Settings>,
    /// `kernel_log` and where it came from, for `scan --kernel` and `firewall log-rule`.
    kernel_log: (KernelLogSettings, String),
}

fn load(cli: &Cli) -> Result<Loaded, Error> {
    let path = &cli.config;
    let read = || config::load(path).map_err(Error::usage);
    let defaults = || {
        (
            KernelLogSettings::default(),
            "built-in defaults".to_string(),
        )
    };
    Ok(match needs(&cli.command) {
        Needs::Nothing => Loaded {
            settings: None,
            kernel_log: defaults(),
        },
        Needs::KernelLog if !path.exists() => Loaded {
            settings: None,
            kernel_log: defaults(),
        },
        Needs::KernelLog => {
            let kernel_log = match read()?.kernel_log {
                Some(k) => (k, format!("kernel_log in {}", path.display())),
                None => (
                    KernelLogSettings::default(),
                    format!("built-in defaults; {} has no kernel_log", path.display()),
                ),
            };
            Loaded {
                settings: None,
                kernel_log,
            }
        }
        Needs::Settings => Loaded {
            settings: Some(read()?),
            kernel_log: defaults(),
        },
    })
}

fn run(cli: Cli) -> cli::Result {
    let now = sipban::pipeline::sync::unix_now();
    let Loaded {
        settings,
        kernel_log: (ks, from),
    } = load(&cli)?;
    let s = || {
        settings
            .as_ref()
            .ok_or_else(|| Error::failed("no settings loaded"))
    };
    if writes_files(&cli.command) {
        cli::check_dirs(s()?)?;
    }
    match &cli.command {
        Command::Sync {
            dry_run,
            json,
            retry_now,
        } => cli::sync::sync(s()?, *dry_run, *json, *retry_now, now),
        Command::Run => {
            let settings = settings.ok_or_else(|| Error::failed("no settings loaded"))?;
            cli::sync::run(&cli.config, settings)
        }
        Command::Restore { json } => cli::sync::restore(s()?, *json, now),
        Command::Config {
            command: ConfigCommand::Check { json },
        } => views::config_check(s()?, *json),
        Command::List { source, json } => views::list(s()?, source.as_deref(), *json, now),
        Command::Export { format, out } => views::export(s()?, *format, out.as_deref(), now),
        Command::Explain { ip, json } => views::explain(s()?, ip, *json, now),
        Command::Check { ip, json } => views::check(s()?, ip, *json, now),
        Command::Status { json } => views::status(s()?, *json, now),
        Command::Report {
            command: ReportCommand::Status { json },
        } => views::report_status(s()?, *json, now),
        Command::Feeds { json } => views::feeds(*json),
        Command::GenerateAssets { dir } => cli::assets::generate(dir),
        Command::Scan {
            files,
            json,
            verbose,
            kernel: true,
            ..
        } => views::scan_kernel(files, &ks, &from, *json, *verbose),
        Command::Scan {
            files,
            full,
            json,
            verbose,
            aggressive,
            security_services,
            pcap,
            ..
        } => views::scan(views::ScanArgs {
            files,
            full: full.as_deref(),
            json: *json,
            verbose: *verbose,
            aggressive: *aggressive,
            security_services: security_services.as_deref(),
            pcap: pcap.as_deref(),
        }),
        Command::Ban { ip, ttl, json } => manual::ban(s()?, ip, ttl.as_deref(), *json, now),
        Command::Unban { ip, allow, json } => manual::unban(s()?, ip, *allow, *json, now),
        Command::Firewall { command } => match command {
            FirewallCommand::LogRule { backend, apply } => {
                firewall::log_rule(backend.as_deref(), *apply, &ks, &from)
            }
            FirewallCommand::Install(a) | FirewallCommand::Remove(a) => {
                let install = matches!(command, FirewallCommand::Install(_));
                let args = firewall::RuleArgs {
                    backend: a.backend,
                    raw: a.raw,
                    dry_run: a.dry_run,
                    json: a.json,
                };
                firewall::install_or_remove(s()?, install, &args)
            }
            FirewallCommand::Status { backend, json } => firewall::status(s()?, *backend, *json),
            FirewallCommand::Check { repair, json } => firewall::check(s()?, *repair, *json, now),
        },
    }
}
