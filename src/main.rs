//! The `sipban` command line: parse arguments, load the config, call the library, map the
//! outcome to an exit code. No logic of its own lives here.

use clap::{Parser, Subcommand};
use sipban::config::{self, Settings};
use sipban::exit;
use sipban::firewall::ipset::Ipset;
use sipban::sync::{self, Outcome, SyncError};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "sipban",
    version,
    about = "Blocklist agent for SIP PBX hosts: feeds and detections into kernel ipsets"
)]
struct Cli {
    /// Config file.
    #[arg(long, global = true, default_value = config::DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// More log output on stderr (-v info, -vv debug, with per-phase timings).
    #[arg(short = 'v', global = true, action = clap::ArgAction::Count)]
    log_verbosity: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Gather, decide and apply once (or, with --dry-run, print the plan and change nothing).
    Sync {
        /// Print the plan; write nothing to the kernel or the state. Works without root.
        #[arg(long)]
        dry_run: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// List the entries a sync would hold in the sets, from the saved state.
    List {
        /// Only entries listed by this source.
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Say why an address is or is not blocked.
    Explain {
        ip: String,
        #[arg(long)]
        json: bool,
    },
    /// Ask APIBAN (when configured) and the local state whether an address is listed.
    Check {
        ip: String,
        #[arg(long)]
        json: bool,
    },
    /// Scan Asterisk logs once, in the spirit of fail2ban-regex: matched lines per rule,
    /// per-address counts, attributed and unattributed scanner timeouts. Changes nothing.
    Scan {
        /// Asterisk log files (messages, security, ...).
        files: Vec<PathBuf>,
        /// The full log with SIP debug dumps, for Call-ID correlation of scanner timeouts.
        #[arg(long)]
        full: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Also list lines that look like failures but matched no rule, and refused lines.
        #[arg(long)]
        verbose: bool,
        /// Count the opt-in security events too (see `asterisk.aggressive`).
        #[arg(long)]
        aggressive: bool,
        /// The files are kernel logs (kern.log, syslog, `journalctl -k -o short-iso` output):
        /// list every inbound TCP/UDP packet per source address, with the port catalogue's
        /// weights and the threshold it crossed (scored with the config's `kernel_log`, if any).
        #[arg(long, conflicts_with_all = ["full", "aggressive", "verbose"])]
        kernel: bool,
    },
    /// Show the built-in feed catalogue.
    Feeds {
        #[arg(long)]
        json: bool,
    },
    /// Run as a daemon: scheduled syncs (daemon.sync_schedule, UTC), real-time Asterisk log
    /// detections, SIGHUP reloads the config, SIGTERM stops. Holds the run lock throughout.
    Run,
    /// Last run, per-source freshness and counts, set sizes against caps, manual bans.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Ban an address or prefix by hand (pinned: above every source's priority).
    Ban {
        ip: String,
        /// How long (e.g. 12h, 30d); default a year.
        #[arg(long)]
        ttl: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Remove an address from the sets and keep it out until a source lists it afresh.
    Unban {
        ip: String,
        /// Also add it to the persistent manual allowlist (never banned again).
        #[arg(long)]
        allow: bool,
        #[arg(long)]
        json: bool,
    },
    /// Upstream reporting (AbuseIPDB, webhook).
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Rebuild both sets from the saved state, with no network (what sipban-restore.service
    /// runs at boot), then put back the firewall rules `firewall install` recorded.
    Restore {
        #[arg(long)]
        json: bool,
    },
    /// The firewall rules that drop traffic from the sets.
    Firewall {
        #[command(subcommand)]
        command: FirewallCommand,
    },
}

#[derive(Subcommand)]
enum ReportCommand {
    /// Queue length, reports sent today, last errors (from the saved state; changes nothing).
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum FirewallCommand {
    /// Print (or with --apply install, idempotently) a rate-limited LOG rule for new inbound
    /// connections to the port catalogue's weighted ports, for the `kernel_log` detector.
    LogRule {
        /// iptables (also ip6tables) or nft; default: iptables when installed, else nft.
        #[arg(long, value_parser = ["iptables", "nft"])]
        backend: Option<String>,
        /// Install the rule now (root).
        #[arg(long)]
        apply: bool,
    },
    /// Insert one DROP rule per family first in INPUT (or raw PREROUTING with --raw), unless
    /// it is already there; creates missing sets empty.
    Install(FirewallArgs),
    /// Delete sipban's rules in INPUT and raw PREROUTING (and the empty nf_tables chains
    /// install created), with the backend install recorded (else --backend); keeps the sets.
    Remove(FirewallArgs),
    /// Show where sipban's rules are and whether anything accepts before them.
    Status {
        /// Which tools to read (default: what install recorded, else iptables).
        #[arg(long)]
        backend: Option<sipban::firewall::rules::Backend>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct FirewallArgs {
    /// iptables: `iptables`/`ip6tables` as the system selected them; nft: `iptables-nft`
    /// (the rule lands in the nftables ruleset as an xt set match).
    #[arg(long, default_value = "iptables")]
    backend: sipban::firewall::rules::Backend,
    /// Use the raw table's PREROUTING chain (before connection tracking) instead of INPUT.
    #[arg(long)]
    raw: bool,
    /// Print the commands that would run; change nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the config and print the resolved settings.
    Check {
        #[arg(long)]
        json: bool,
    },
}

/// `println!` that ignores a closed stdout.
macro_rules! outln {
    ($($arg:tt)*) => { out(&format!("{}\n", format_args!($($arg)*))) };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_verbosity);
    ExitCode::from(run(cli))
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .with_ansi(false);
    if under_systemd {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

/// The `kernel_log` settings for the tools that work without a run (`scan --kernel`,
/// `firewall log-rule`): the config's section when the config file exists and has one, else the
/// built-in defaults; and a note saying which.
fn kernel_log_settings(
    cli: &Cli,
) -> Result<(sipban::source::kernlog::KernelLogSettings, String), u8> {
    if !cli.config.exists() {
        return Ok((Default::default(), "built-in defaults".into()));
    }
    let settings = load(cli)?;
    Ok(match settings.kernel_log {
        Some(k) => (k, format!("kernel_log in {}", cli.config.display())),
        None => (
            Default::default(),
            format!(
                "built-in defaults; {} has no kernel_log",
                cli.config.display()
            ),
        ),
    })
}

/// `sipban firewall log-rule`.
fn log_rule(cli: &Cli, backend: Option<&str>, apply: bool) -> u8 {
    use sipban::firewall::logrule::{Backend, LogRule};
    let backend = match backend.map(str::parse::<Backend>) {
        None => Backend::detect(),
        Some(Ok(b)) => b,
        Some(Err(e)) => {
            eprintln!("sipban firewall log-rule: {e}");
            return exit::USAGE;
        }
    };
    let (ks, from) = match kernel_log_settings(cli) {
        Ok(k) => k,
        Err(code) => return code,
    };
    let cat = match sipban::source::kernlog::catalogue(&ks) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sipban firewall log-rule: {e}");
            return exit::FAILED;
        }
    };
    let rule = LogRule::new(&cat, backend);
    if !apply {
        outln!("# ports from the catalogue ({from})");
        out(&rule.script());
        return exit::OK;
    }
    match rule.apply() {
        Ok(steps) => {
            for s in steps {
                outln!("{}: {}", s.command, s.result);
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("sipban firewall log-rule: {e:#}");
            exit::FAILED
        }
    }
}

fn load(cli: &Cli) -> Result<Settings, u8> {
    config::load(&cli.config).map_err(|e| {
        eprintln!("sipban: {e}");
        exit::USAGE
    })
}

/// The one runtime of a command: current-thread (design: one core's worth of work beside a
/// PBX).
fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("sipban: cannot start the runtime: {e}");
            exit::FAILED
        })
}

/// Write to stdout; a closed pipe (`sipban list | head`) is not an error worth a panic.
fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

fn print_json<T: serde::Serialize>(value: &T) -> u8 {
    match serde_json::to_string_pretty(value) {
        Ok(s) => {
            out(&format!("{s}\n"));
            exit::OK
        }
        Err(e) => {
            eprintln!("sipban: cannot encode JSON: {e}");
            exit::FAILED
        }
    }
}

fn run(cli: Cli) -> u8 {
    let now = sync::unix_now();
    match &cli.command {
        Command::Restore { json } => restore(&cli, *json, now),
        Command::Firewall { command } => firewall(&cli, command),
        Command::Sync { dry_run, json } => {
            let settings = match load(&cli) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            let ipset = Ipset::new();
            let started = std::time::Instant::now();
            match rt.block_on(sync::run(&settings, &ipset, *dry_run, now)) {
                Ok(report) => {
                    if !*dry_run {
                        let secs = started.elapsed().as_secs_f64();
                        if let Err(e) = sipban::metrics::after_run(&settings, &report, secs, &ipset)
                        {
                            eprintln!("sipban: metrics: {e:#}");
                        }
                    }
                    if *json {
                        print_json(&report);
                    } else {
                        out(&report.to_string());
                    }
                    for e in &report.errors {
                        eprintln!("sipban: {e}");
                    }
                    match report.outcome {
                        Outcome::Ok => exit::OK,
                        Outcome::Partial => exit::PARTIAL,
                        Outcome::Failed => exit::FAILED,
                    }
                }
                Err(SyncError::Locked(e)) => {
                    eprintln!("sipban: {e}");
                    exit::LOCKED
                }
                Err(e) => {
                    eprintln!("sipban: {e}");
                    if !*dry_run {
                        eprintln!("sipban: nothing was changed (use `sipban sync --dry-run` to preview without root)");
                    }
                    exit::FAILED
                }
            }
        }
        Command::Config {
            command: ConfigCommand::Check { json },
        } => {
            let settings = match load(&cli) {
                Ok(s) => s,
                Err(code) => return code,
            };
            if *json {
                return print_json(&settings);
            }
            outln!("{}: OK", cli.config.display());
            match serde_saphyr::to_string(&settings) {
                Ok(text) => out(&text),
                Err(_) => outln!("{settings:#?}"),
            }
            exit::OK
        }
        Command::List { source, json } => {
            let settings = match load(&cli) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let rows = match sipban::inspect::list(&settings, source.as_deref(), now) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("sipban: {e:#}");
                    return exit::FAILED;
                }
            };
            if *json {
                return print_json(&rows);
            }
            for r in &rows {
                outln!(
                    "{:<40} {:<7} expires {}  {}",
                    r.net,
                    if r.in_set { "in-set" } else { "evicted" },
                    sipban::inspect::fmt_time(r.expires),
                    r.sources.join(",")
                );
            }
            eprintln!("{} entries", rows.len());
            exit::OK
        }
        Command::Explain { ip, json } => {
            let settings = match load(&cli) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let Some(addr) = sipban::net::parse_ip(ip) else {
                eprintln!("sipban: `{ip}` is not an IP address");
                return exit::USAGE;
            };
            match sipban::inspect::explain(&settings, addr, &Ipset::new(), now) {
                Ok(x) if *json => print_json(&x),
                Ok(x) => {
                    out(&x.to_string());
                    exit::OK
                }
                Err(e) => {
                    eprintln!("sipban: {e:#}");
                    exit::FAILED
                }
            }
        }
        Command::Check { ip, json } => {
            let settings = match load(&cli) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let Some(addr) = sipban::net::parse_ip(ip) else {
                eprintln!("sipban: `{ip}` is not an IP address");
                return exit::USAGE;
            };
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            use sipban::source::apiban::{self, RemoteCheck};
            let report = rt.block_on(apiban::check_report(&settings, addr, &Ipset::new(), now));
            if *json {
                print_json(&report);
            } else {
                print!("{report}");
            }
            if report.local.is_none() {
                exit::FAILED
            } else if matches!(report.apiban, RemoteCheck::Error { .. }) {
                exit::PARTIAL
            } else {
                exit::OK
            }
        }
        Command::Scan {
            files,
            full,
            json,
            verbose,
            aggressive,
            kernel,
        } => {
            if *kernel {
                if files.is_empty() {
                    eprintln!("sipban scan --kernel: give at least one kernel log file");
                    return exit::USAGE;
                }
                let (ks, from) = match kernel_log_settings(&cli) {
                    Ok(k) => k,
                    Err(code) => return code,
                };
                let own = sipban::hostaddr::own_ips();
                return match sipban::source::kernlog::scan(files, &ks, &own, &from) {
                    // Streamed: a scan of a large log lists tens of thousands of addresses.
                    Ok(report) => {
                        use std::io::Write;
                        let stdout = std::io::stdout();
                        let mut w = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
                        let written = if *json {
                            serde_json::to_writer_pretty(&mut w, &report)
                                .map_err(std::io::Error::from)
                                .and_then(|()| writeln!(w))
                        } else {
                            write!(w, "{report}")
                        };
                        match written.and_then(|()| w.flush()) {
                            Ok(()) => exit::OK,
                            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
                            Err(e) => {
                                eprintln!("sipban scan: writing the report: {e}");
                                exit::FAILED
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("sipban scan: {e}");
                        exit::FAILED
                    }
                };
            }
            if files.is_empty() && full.is_none() {
                eprintln!("sipban scan: give at least one log file (or --full FILE)");
                return exit::USAGE;
            }
            let opts = sipban::source::asterisk::ScanOptions {
                verbose: *verbose,
                aggressive: *aggressive,
                ..Default::default()
            };
            match sipban::source::asterisk::scan_with(files, full.as_deref(), opts) {
                Ok(report) if *json => print_json(&report),
                Ok(report) => {
                    out(&report.to_string());
                    exit::OK
                }
                Err(e) => {
                    eprintln!("sipban scan: {e}");
                    exit::FAILED
                }
            }
        }
        Command::Run => {
            let settings = match load(&cli) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            rt.block_on(sipban::daemon::run(&cli.config, settings))
        }
        Command::Status { json } => {
            let settings = match load(&cli) {
                Ok(s) => s,
                Err(code) => return code,
            };
            match sipban::status::gather(&settings, &Ipset::new(), now) {
                Ok(st) if *json => print_json(&st),
                Ok(st) => {
                    out(&st.to_string());
                    exit::OK
                }
                Err(e) => {
                    eprintln!("sipban: {e:#}");
                    exit::FAILED
                }
            }
        }
        Command::Ban { ip, ttl, json } => {
            let settings = match load(&cli) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let net = match sipban::manual::parse_target(ip) {
                Ok(n) => n,
                Err(e) => {
                    eprintln!("sipban: {e}");
                    return exit::USAGE;
                }
            };
            let ttl = match ttl.as_deref().map(config::Dur::parse) {
                None => sipban::manual::DEFAULT_TTL,
                Some(Ok(d)) if d.0 > 0 && d.0 <= u64::from(u32::MAX) => d.0 as u32,
                Some(Ok(_)) => {
                    eprintln!("sipban: --ttl must be between 1s and 136 years");
                    return exit::USAGE;
                }
                Some(Err(e)) => {
                    eprintln!("sipban: --ttl: {e}");
                    return exit::USAGE;
                }
            };
            let req = sipban::manual::Request::Ban { net, ttl, at: now };
            manual(&settings, &req, now, *json)
        }
        Command::Unban { ip, allow, json } => {
            let settings = match load(&cli) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let net = match sipban::manual::parse_target(ip) {
                Ok(n) => n,
                Err(e) => {
                    eprintln!("sipban: {e}");
                    return exit::USAGE;
                }
            };
            let req = sipban::manual::Request::Unban {
                net,
                allow: *allow,
                at: now,
            };
            manual(&settings, &req, now, *json)
        }
        Command::Report {
            command: ReportCommand::Status { json },
        } => {
            let settings = match load(&cli) {
                Ok(s) => s,
                Err(code) => return code,
            };
            match sipban::report::status(&settings, now) {
                Ok(st) if *json => print_json(&st),
                Ok(st) => {
                    out(&st.to_string());
                    exit::OK
                }
                Err(e) => {
                    eprintln!("sipban: {e:#}");
                    exit::FAILED
                }
            }
        }
        Command::Feeds { json } => {
            let all: Vec<_> = sipban::config::catalogue::all().collect();
            if *json {
                let v: Vec<serde_json::Value> = all
                    .iter()
                    .map(|f| {
                        serde_json::json!({
                            "name": f.name, "url": f.url, "format": f.format,
                            "interval": f.interval.map(|d| d.to_string()),
                            "description": f.description, "licence": f.licence, "homepage": f.homepage,
                        })
                    })
                    .collect();
                return print_json(&v);
            }
            for f in all {
                outln!("{}", f.name.as_deref().unwrap_or("?"));
                outln!("  {}", f.description.as_deref().unwrap_or(""));
                outln!("  url: {}", f.url.as_deref().unwrap_or(""));
                if let Some(i) = f.interval {
                    outln!("  polite interval: {i}");
                }
                outln!("  licence: {}", f.licence.as_deref().unwrap_or(""));
            }
            exit::OK
        }
    }
}

/// `ban`/`unban`: submit the request and say what became of it.
fn manual(settings: &Settings, req: &sipban::manual::Request, now: i64, json: bool) -> u8 {
    match sipban::manual::submit(settings, req, now) {
        Ok(o) => {
            let code = match &o {
                sipban::manual::Outcome::Queued { .. } => exit::LOCKED,
                _ => exit::OK,
            };
            if json {
                print_json(&o);
            } else {
                out(&o.to_string());
            }
            code
        }
        Err(e) => {
            eprintln!("sipban: {e:#}");
            exit::FAILED
        }
    }
}

/// `sipban restore`.
fn restore(cli: &Cli, json: bool, now: i64) -> u8 {
    use sipban::restore::RestoreError;
    let settings = match load(cli) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match sipban::restore::restore(&settings, &Ipset::new(), now) {
        Ok(report) => {
            if json {
                print_json(&report);
            } else {
                out(&report.to_string());
            }
            for e in &report.errors {
                eprintln!("sipban restore: {e}");
            }
            if report.errors.is_empty() {
                exit::OK
            } else {
                exit::FAILED
            }
        }
        Err(RestoreError::Locked(e)) => {
            eprintln!("sipban restore: {e}");
            exit::LOCKED
        }
        Err(e) => {
            eprintln!("sipban restore: {e}");
            exit::FAILED
        }
    }
}

/// `sipban firewall ...`.
fn firewall(cli: &Cli, command: &FirewallCommand) -> u8 {
    use sipban::firewall::rules;
    if let FirewallCommand::LogRule { backend, apply } = command {
        // Needs no config of its own beyond `kernel_log` (defaults without a config file).
        return log_rule(cli, backend.as_deref(), *apply);
    }
    let settings = match load(cli) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let ipset = Ipset::new();
    let (result, json) = match command {
        FirewallCommand::Install(a) | FirewallCommand::Remove(a) => {
            let opts = rules::Options {
                backend: a.backend,
                raw: a.raw,
                dry_run: a.dry_run,
            };
            let r = if matches!(command, FirewallCommand::Install(_)) {
                rules::install(&settings, &ipset, opts)
            } else {
                rules::remove(&settings, opts)
            };
            (
                r.map(|c| (serde_json::to_value(&c), c.to_string(), true)),
                a.json,
            )
        }
        FirewallCommand::LogRule { backend, apply } => {
            return log_rule(cli, backend.as_deref(), *apply)
        }
        FirewallCommand::Status { backend, json } => (
            rules::status(&settings, &ipset, *backend)
                .map(|s| (serde_json::to_value(&s), s.to_string(), s.protected())),
            *json,
        ),
    };
    match result {
        Ok((value, text, ok)) => {
            if json {
                match value {
                    Ok(v) => print_json(&v),
                    Err(e) => {
                        eprintln!("sipban: cannot encode JSON: {e}");
                        return exit::FAILED;
                    }
                };
            } else {
                out(&text);
            }
            if ok {
                exit::OK
            } else {
                exit::FAILED
            }
        }
        Err(e) => {
            eprintln!("sipban firewall: {e:#}");
            exit::FAILED
        }
    }
}
