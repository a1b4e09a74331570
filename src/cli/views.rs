//! The read-only commands: `config check`, `list`, `explain`, `check`, `status`,
//! `report status`, `feeds` and `scan`. They print the library's views as text or JSON.
//!
//! This module must never change anything: no kernel, no state, no queue.

use super::{out, print, print_json, runtime, show, Error, Kind, Result};
use crate::backend::Kernel;
use crate::config::Settings;
use crate::outln;
use crate::source::kernlog::KernelLogSettings;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// What `config check` says about the inputs as they are on this host (the config itself
/// does no I/O): the kernel's journal read instead of a missing default kern.log.
fn input_notes(settings: &Settings) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(k) = &settings.kernel_log {
        if let (_, Some(j)) = crate::source::kernlog::inputs(k) {
            if k.journal.is_none() {
                let from = match &j.directory {
                    Some(d) => format!("the journal in {}", d.display()),
                    None => "the system journal".to_string(),
                };
                notes.push(format!(
                    "kernel_log: {} does not exist and no `files` are given: the kernel's lines are read from {from} (_TRANSPORT=kernel)",
                    k.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    if let Some(c) = settings.sip_wire.as_ref().and_then(|w| w.capture.as_ref()) {
        notes.push(format!(
            "sip_wire: the live capture on {} needs CAP_NET_RAW and AF_PACKET sockets in `sipban run` (sipban-daemon.service refuses AF_PACKET unless a drop-in allows it: see README, \"SIP on the wire\")",
            c.interfaces.join(", ")
        ));
    }
    notes
}

/// `sipban config check [--json]`.
pub fn config_check(settings: &Settings, json: bool) -> Result {
    let mut notes = input_notes(settings);
    let (backend_line, suggestion) = backend_notes(settings);
    notes.insert(0, backend_line);
    notes.extend(suggestion);
    if json {
        let mut v = serde_json::to_value(settings)
            .map_err(|e| Error::failed(format_args!("encoding the settings: {e}")))?;
        if let (Some(o), false) = (v.as_object_mut(), notes.is_empty()) {
            o.insert("notes".into(), serde_json::json!(notes));
        }
        return print_json(&v);
    }
    outln!("{}: OK", settings.config_path.display());
    for n in &notes {
        outln!("note: {n}");
    }
    match serde_saphyr::to_string(settings) {
        Ok(text) => out(&text),
        Err(_) => outln!("{settings:#?}"),
    }
    Ok(())
}

/// Which set backend is in use (and, for `auto`, why); a suggestion of `nft` on a host whose
/// firewall is nftables only while the config uses ipset. Reads only.
fn backend_notes(settings: &Settings) -> (String, Option<String>) {
    use crate::config::sets::BackendChoice;
    let choice = settings.backend;
    let detected = crate::backend::detect();
    let line = match choice {
        BackendChoice::Auto => format!(
            "backend: {} (auto: {})",
            detected.choice.label(),
            detected.why
        ),
        c => format!("backend: {}", c.label()),
    };
    let suggestion = (choice == BackendChoice::Ipset && detected.nftables_only).then(|| {
        "this host's firewall is nftables with no iptables-legacy rule: `backend: nft` puts the \
         sets and drop rules in sipban's own table `inet sipban`, where nft rules can match them"
            .to_string()
    });
    (line, suggestion)
}

/// `sipban list [--source S] [--json]`.
pub fn list(settings: &Settings, source: Option<&str>, json: bool, now: i64) -> Result {
    let rows = crate::inspect::list(settings, source, now)
        .map_err(|e| super::state_error(&e, &settings.state_dir))?;
    if json {
        return print_json(&rows);
    }
    for r in &rows {
        let state = match (r.state, &r.refused_by) {
            ("in_set_in_part", Some(why)) => format!("in set in part, split around {why}"),
            ("refused", Some(why)) => format!("refused: {why}"),
            (s, _) => s.replace('_', " "),
        };
        outln!(
            "{:<40} {:<10} expires in {:<8} {}  [{state}]",
            r.net,
            r.sources.join(","),
            crate::clock::span(r.ttl_left),
            crate::inspect::fmt_time(r.expires),
        );
    }
    eprintln!("{} entries", rows.len());
    Ok(())
}

/// `sipban export [--format plain|json] [--out FILE]`: from the saved state, as a sync would
/// decide it now.
pub fn export(
    settings: &Settings,
    format: crate::config::crowdsec::ExportFormat,
    out_file: Option<&Path>,
    now: i64,
) -> Result {
    let v = crate::inspect::view(settings, now)
        .map_err(|e| super::state_error(&e, &settings.state_dir))?;
    let own = crate::pipeline::export::own_detections(&v.sources, &v.decision, now);
    match out_file {
        Some(path) => {
            crate::pipeline::export::write(path, &own, format, now)
                .map_err(|e| Error::failed(format_args!("{e:#}")))?;
            eprintln!("{} entries written to {}", own.len(), path.display());
        }
        None => out(&String::from_utf8_lossy(&crate::pipeline::export::render(
            &own, format, now,
        ))),
    }
    Ok(())
}

fn parse_ip(ip: &str) -> std::result::Result<IpAddr, Error> {
    crate::net::parse_ip(ip)
        .ok_or_else(|| Error::usage(format_args!("`{ip}` is not an IP address")))
}

/// `sipban explain IP|PREFIX [--json]`.
pub fn explain(settings: &Settings, target: &str, json: bool, now: i64) -> Result {
    let net = crate::net::parse_net(target)
        .map_err(|e| Error::usage(format_args!("`{target}` is not an address or prefix: {e}")))?;
    let x = crate::inspect::explain(settings, net, &Kernel::reader(settings), now)
        .map_err(|e| super::state_error(&e, &settings.state_dir))?;
    print(&x, json)
}

/// `sipban check IP [--json]`: APIBAN (when configured) and the local state.
pub fn check(settings: &Settings, ip: &str, json: bool, now: i64) -> Result {
    use crate::source::apiban::RemoteCheck;
    let addr = parse_ip(ip)?;
    let rt = runtime()?;
    let report = rt.block_on(crate::inspect::check_report(
        settings,
        addr,
        &Kernel::reader(settings),
        now,
    ));
    show(&report, json);
    if report.local.is_none() {
        Err(Error::reported(Kind::Failed))
    } else if matches!(report.apiban, RemoteCheck::Error { .. }) {
        Err(Error::reported(Kind::Partial))
    } else {
        Ok(())
    }
}

/// `sipban status [--json]`.
pub fn status(settings: &Settings, json: bool, now: i64) -> Result {
    let st = crate::status::gather(settings, &Kernel::reader(settings), now)
        .map_err(|e| super::state_error(&e, &settings.state_dir))?;
    print(&st, json)
}

/// `sipban report status [--json]`.
pub fn report_status(settings: &Settings, json: bool, now: i64) -> Result {
    let st = crate::report::status(settings, now)
        .map_err(|e| super::state_error(&e, &settings.state_dir))?;
    print(&st, json)
}

/// `sipban feeds [--json]`: the built-in catalogue.
pub fn feeds(json: bool) -> Result {
    let all: Vec<_> = crate::config::catalogue::all().collect();
    if json {
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
    Ok(())
}

/// What `sipban scan` was asked for.
pub struct ScanArgs<'a> {
    pub files: &'a [PathBuf],
    pub full: Option<&'a Path>,
    pub json: bool,
    pub verbose: bool,
    pub aggressive: bool,
    pub security_services: Option<&'a [String]>,
    /// `--pcap FILE`: a capture through the wire detector; `files` are then Asterisk logs
    /// whose scanner timeouts it attributes.
    pub pcap: Option<&'a Path>,
}

/// `sipban scan FILES [--full F] [--json] [--verbose] [--aggressive]`: Asterisk logs.
pub fn scan(a: ScanArgs<'_>) -> Result {
    if a.files.is_empty() && a.full.is_none() && a.pcap.is_none() {
        return Err(Error::new(
            Kind::Usage,
            "sipban scan: give at least one log file (or --full FILE)",
        ));
    }
    let opts = crate::source::asterisk::ScanOptions {
        verbose: a.verbose,
        aggressive: a.aggressive,
        security_services: match a.security_services {
            Some(list) => crate::config::asterisk::SecurityServices::parse(list)
                .map_err(|e| Error::new(Kind::Usage, format!("sipban scan: {e}")))?,
            None => Default::default(),
        },
        ..Default::default()
    };
    if let Some(pcap) = a.pcap {
        let report = crate::source::wire::scan::scan_pcap(pcap, Default::default(), a.files, opts)
            .map_err(|e| Error::new(Kind::Failed, format!("sipban scan --pcap: {e}")))?;
        return print(&report, a.json);
    }
    let report = crate::source::asterisk::scan_with(a.files, a.full, opts)
        .map_err(|e| Error::new(Kind::Failed, format!("sipban scan: {e}")))?;
    print(&report, a.json)
}

/// `sipban scan --kernel FILES [--json] [--verbose]`, scored with `ks` (`from` says where they came from).
pub fn scan_kernel(
    files: &[PathBuf],
    ks: &KernelLogSettings,
    from: &str,
    json: bool,
    verbose: bool,
) -> Result {
    use std::io::Write;
    if files.is_empty() {
        return Err(Error::new(
            Kind::Usage,
            "sipban scan --kernel: give at least one kernel log file",
        ));
    }
    let own = crate::hostaddr::own_ips();
    let mut report = crate::source::kernlog::scan_files(files, ks, &own, from)
        .map_err(|e| Error::new(Kind::Failed, format!("sipban scan: {e}")))?;
    if !verbose {
        report.unparsed_samples.clear();
    }
    // Streamed: a scan of a large log lists tens of thousands of addresses.
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let written = if json {
        serde_json::to_writer_pretty(&mut w, &report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(w))
    } else {
        report.write_text(&mut w)
    };
    match written.and_then(|()| w.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::new(
            Kind::Failed,
            format!("sipban scan: writing the report: {e}"),
        )),
    }
}
