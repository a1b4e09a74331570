//! The command line as clap parses it: the commands, their flags and help texts.
//!
//! This module must never act on what it parses: `main` dispatches to the sibling modules.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "sipban",
    version,
    about = "Blocklist agent for SIP PBX hosts: feeds and detections into kernel ipsets"
)]
pub struct Cli {
    /// Config file.
    #[arg(long, global = true, default_value = crate::config::DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// More log output on stderr (-v info, -vv debug, with per-phase timings).
    #[arg(short = 'v', global = true, action = clap::ArgAction::Count)]
    pub log_verbosity: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Gather, decide and apply once (or, with --dry-run, print the plan and change nothing).
    Sync {
        /// Print the plan; write nothing to the kernel or the state. Works without root.
        #[arg(long)]
        dry_run: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Download every feed now, ignoring its interval and any back-off after failures
        /// (this run only).
        #[arg(long, visible_alias = "force-download")]
        retry_now: bool,
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
    /// Write this host's own detections (the detectors' entries the sets hold, with their
    /// remaining TTL) as a feed another sipban can read; atomically with --out.
    Export {
        /// plain: one address or prefix per line after `#` header lines; json: address,
        /// reason, first seen and expiry of each.
        #[arg(long, value_enum, default_value = "plain")]
        format: crate::config::crowdsec::ExportFormat,
        /// Write this file (replaced atomically) instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Say why an address (or anything in a prefix) is or is not blocked.
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
        /// Whose security events count, comma-separated (see
        /// `asterisk.security_event_services`; default PJSIP).
        #[arg(long, value_delimiter = ',')]
        security_services: Option<Vec<String>>,
        /// The files are kernel logs (kern.log, syslog, `journalctl -k -o short-iso` output):
        /// list every inbound TCP/UDP packet per source address, with the port catalogue's
        /// weights and the threshold it crossed (scored with the config's `kernel_log`, if any).
        /// With `--verbose`, also samples of unparsed lines that look like firewall lines.
        #[arg(long, conflicts_with_all = ["full", "aggressive", "security_services"])]
        kernel: bool,
        /// A packet capture (pcap or pcapng: SIP in UDP/TCP, HEP v3 in UDP) read through the
        /// SIP wire detector; the files, if any, are Asterisk logs whose IP-less scanner
        /// timeouts are attributed through the Call-IDs the capture saw.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["full", "kernel"])]
        pcap: Option<PathBuf>,
    },
    /// Show the built-in feed catalogue.
    Feeds {
        #[arg(long)]
        json: bool,
    },
    /// Write the man page (sipban.1) and the bash, zsh and fish completions into DIR (the
    /// package's copies in packaging/generated/ are made with this).
    #[command(hide = true)]
    GenerateAssets {
        /// Where to write them (created if missing).
        dir: PathBuf,
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
pub enum ReportCommand {
    /// Queue length, reports sent today, last errors (from the saved state; changes nothing).
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum FirewallCommand {
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
    /// Check that the rules `firewall install` recorded are still in place (another tool may
    /// have flushed the ruleset); with --repair, put missing ones back. Exit 1 when rules are
    /// missing and were not put back. Every sync does the same with --repair.
    Check {
        /// Put missing rules back (as install does, with the recorded backend and place).
        #[arg(long)]
        repair: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show where sipban's rules are and whether anything accepts before them.
    Status {
        /// Which tools to read (default: what install recorded, else iptables).
        #[arg(long)]
        backend: Option<crate::backend::rules::Backend>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub struct FirewallArgs {
    /// iptables: `iptables`/`ip6tables` as the system selected them; nft: `iptables-nft`
    /// (the rule lands in the nftables ruleset as an xt set match).
    #[arg(long, default_value = "iptables")]
    pub backend: crate::backend::rules::Backend,
    /// Use the raw table's PREROUTING chain (before connection tracking) instead of INPUT.
    #[arg(long)]
    pub raw: bool,
    /// Print the commands that would run; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate the config and print the resolved settings.
    Check {
        #[arg(long)]
        json: bool,
    },
}
