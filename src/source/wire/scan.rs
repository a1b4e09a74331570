//! `sipban scan --pcap FILE [ASTERISK-LOGS…]`: a capture read offline through the wire
//! detector (SIP in UDP and TCP, HEP v3 in UDP), and, given Asterisk logs, their scanner
//! timeouts attributed through the Call-IDs the capture saw.
//!
//! TCP goes through the same reassembler as the live capture ([`super::tcp`]), with one
//! difference: a capture often starts after a connection opened, so a stream whose handshake
//! was not captured is read too, from its first message start, and counted (`midstream`).
//!
//! This module must never change anything: it reads and reports.

use super::detect::{ClientReport, Counters, Engine, WireBan, WireSettings};
use super::hep;
use super::pcap::{Reader, Skip, Transport};
use super::tcp::{Dir, Handshake, Limits, Reassembler, TcpCounters};
use crate::source::asterisk::{self, ScanOptions, ScanReport};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a capture held, and what the detector made of it.
#[derive(Clone, Debug, Serialize)]
pub struct PcapReport {
    pub file: PathBuf,
    /// Records read.
    pub records: u64,
    /// SIP messages by carrier: `udp`, `tcp`, `hep`.
    pub carriers: BTreeMap<&'static str, u64>,
    /// Records that held no SIP or HEP, by why.
    pub skipped: BTreeMap<&'static str, u64>,
    /// HEP datagrams refused (bad lengths, missing chunks, not SIP).
    pub hep_refused: u64,
    /// TCP reassembly: streams, messages framed, what was dropped.
    pub tcp: TcpCounters,
    pub counters: Counters,
    pub clients: Vec<ClientReport>,
    pub bans: Vec<WireBan>,
    /// The Asterisk logs given, scanned with the capture's Call-ID map.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asterisk: Option<ScanReport>,
}

fn skip_name(s: Skip) -> &'static str {
    match s {
        Skip::LinkType => "link type not decoded",
        Skip::NotIp => "not UDP/TCP over IP",
        Skip::Fragment => "IP fragment",
        Skip::Truncated => "truncated",
    }
}

/// Whether a payload may be SIP: a start line begins with an upper-case method or `SIP/`.
fn looks_like_sip(p: &[u8]) -> bool {
    p.first().is_some_and(u8::is_ascii_uppercase)
}

/// Read `path` through the detector; `logs` are Asterisk logs to attribute timeouts in.
pub fn scan_pcap(
    path: &Path,
    settings: WireSettings,
    logs: &[PathBuf],
    opts: ScanOptions,
) -> Result<PcapReport, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !file.metadata().map(|m| m.is_file()).unwrap_or(false) {
        return Err(format!("{}: not a regular file", path.display()));
    }
    let mut reader = Reader::new(std::io::BufReader::with_capacity(1 << 16, file))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut e = Engine::new(settings);
    let mut r = PcapReport {
        file: path.to_path_buf(),
        records: 0,
        carriers: BTreeMap::new(),
        skipped: BTreeMap::new(),
        hep_refused: 0,
        tcp: TcpCounters::default(),
        counters: Counters::default(),
        clients: Vec::new(),
        bans: Vec::new(),
        asterisk: None,
    };
    let mut tcp = Reassembler::new(Limits::new(Handshake::Optional));
    let mut last = 0i64;
    loop {
        let packet = match reader.next_packet() {
            Ok(None) => break,
            Ok(Some(p)) => p,
            Err(err) => {
                return Err(format!(
                    "{}: record {}: {err}",
                    path.display(),
                    r.records + 1
                ))
            }
        };
        r.records += 1;
        let p = match packet {
            Ok(p) => p,
            Err(s) => {
                *r.skipped.entry(skip_name(s)).or_default() += 1;
                continue;
            }
        };
        last = last.max(p.secs);
        if p.transport == Transport::Tcp {
            let carriers = &mut r.carriers;
            tcp.segment(&p.segment(), Dir::Unknown, p.secs, &mut |src, dst, m| {
                *carriers.entry("tcp").or_default() += 1;
                e.payload(src, dst, p.secs, m);
            });
        } else if p.transport == Transport::Udp && p.payload.starts_with(b"HEP3") {
            match hep::decode(p.payload) {
                Ok(h) if h.payload_type == hep::SIP => {
                    *r.carriers.entry("hep").or_default() += 1;
                    let t = if h.secs > 0 {
                        i64::from(h.secs)
                    } else {
                        p.secs
                    };
                    e.payload(h.src, h.dst, t, h.payload);
                }
                _ => r.hep_refused += 1,
            }
        } else if looks_like_sip(p.payload) {
            *r.carriers.entry("udp").or_default() += 1;
            e.payload(p.src, p.dst, p.secs, p.payload);
        } else if !p.payload.is_empty() {
            *r.skipped.entry("not SIP").or_default() += 1;
        }
    }
    // The end of the capture: every open INVITE has had its chance to be acknowledged.
    let end = last + super::detect::ACK_WAIT + 1;
    e.tick(end);
    r.clients = e.clients(end);
    r.bans = e.bans(end);
    r.counters = e.counters.clone();
    r.tcp = tcp.counters.clone();
    if !logs.is_empty() {
        let rep =
            asterisk::scan_with_wire(logs, opts, &mut e.callids).map_err(|err| err.to_string())?;
        r.asterisk = Some(rep);
    }
    Ok(r)
}

/// The TCP line: streams, and what was dropped.
fn write_tcp(f: &mut std::fmt::Formatter<'_>, t: &TcpCounters) -> std::fmt::Result {
    write!(
        f,
        "  TCP: {} segments, {} messages framed, {} streams with their handshake, {} picked up mid-stream",
        t.segments, t.messages, t.handshakes, t.midstream
    )?;
    let dropped: Vec<String> = [
        (t.retransmitted, "retransmitted segments"),
        (t.out_of_order, "segments out of order"),
        (t.gaps, "streams dropped on a gap"),
        (t.malformed, "streams dropped as not SIP or too large"),
        (t.over_memory, "streams dropped over the memory bound"),
        (t.evicted, "streams evicted"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if !dropped.is_empty() {
        write!(f, "; {}", dropped.join(", "))?;
    }
    writeln!(f)?;
    if t.midstream > 0 {
        writeln!(
            f,
            "  note: {} TCP streams began before the capture (no handshake seen): their sources are taken on trust, as for UDP; the live capture would not read them",
            t.midstream
        )?;
    }
    Ok(())
}

impl std::fmt::Display for PcapReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}: {} records", self.file.display(), self.records)?;
        let carriers: Vec<String> = self
            .carriers
            .iter()
            .map(|(k, v)| format!("{v} over {k}"))
            .collect();
        writeln!(
            f,
            "SIP messages: {} ({}), {} requests, {} responses, {} malformed",
            self.counters.messages,
            if carriers.is_empty() {
                "none".to_owned()
            } else {
                carriers.join(", ")
            },
            self.counters.requests,
            self.counters.responses,
            self.counters.malformed
        )?;
        for (why, n) in &self.skipped {
            writeln!(f, "  skipped: {n} {why}")?;
        }
        if self.hep_refused > 0 {
            writeln!(f, "  HEP datagrams refused: {}", self.hep_refused)?;
        }
        if self.tcp.segments > 0 {
            write_tcp(f, &self.tcp)?;
        }
        writeln!(f, "\nclients ({}):", self.clients.len())?;
        for c in &self.clients {
            let reasons: Vec<String> = c
                .reasons
                .iter()
                .map(|(r, n)| format!("{n} {}", r.name()))
                .collect();
            write!(f, "  {:<39} {:>6} messages", c.ip.to_string(), c.messages)?;
            if !reasons.is_empty() {
                write!(f, "; {}", reasons.join(", "))?;
            }
            if c.authenticated {
                write!(f, "; authenticated")?;
            }
            if let Some(ua) = &c.user_agent {
                write!(f, "; User-Agent {ua:?}")?;
            }
            writeln!(f)?;
        }
        writeln!(f, "\nwould ban ({}):", self.bans.len())?;
        for b in &self.bans {
            write!(
                f,
                "  {} for {}: {}",
                b.ip,
                crate::clock::span(i64::from(b.ttl)),
                b.reason.name()
            )?;
            if let Some(t) = b.tool {
                write!(f, " ({t})")?;
            }
            writeln!(f)?;
        }
        if let Some(a) = &self.asterisk {
            writeln!(
                f,
                "\nAsterisk logs: {} lines; scanner timeouts: {} attributed through the capture, {} not",
                a.counters.lines, a.counters.timeouts_attributed, a.counters.timeouts_unattributed
            )?;
            for (why, n) in &a.counters.unattributed_reasons {
                writeln!(f, "  not attributed: {n} {why}")?;
            }
            for (ip, ev) in &a.addresses {
                if ev.timeouts > 0 {
                    writeln!(f, "  {ip}: {} timeouts", ev.timeouts)?;
                }
            }
        }
        Ok(())
    }
}
