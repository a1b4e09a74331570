//! The daemon's wire inputs (`sip_wire:`): a HEP v3 listener (UDP) and a live capture on one
//! interface ([`capture`]), both feeding one resident wire detector
//! ([`Engine`](crate::source::wire::detect::Engine)); the bans it reaches are handed to the
//! real-time pass's gate and apply path ([`fast::apply_sightings`]).
//!
//! * **HEP.** Datagrams whose source is not in `hep.peers` are ignored and counted, never
//!   decoded: anyone who can reach the port could otherwise name a victim in the inner source
//!   address. A datagram that is not HEP v3, not SIP, or whose SIP does not parse is counted
//!   and dropped.
//! * **Capture.** IPv4/IPv6 packets to or from `capture.ports` over UDP, and with
//!   `capture.tcp` TCP segments that each hold whole SIP messages (no stream reassembly: a
//!   message split across segments is not seen; no handshake check: off by default).
//! * **Bounds.** One wake-up reads at most [`MAX_PER_WAKE`] packets into one 64 KiB buffer,
//!   each packet costs one parse and a few hash lookups; the detector remembers at most
//!   `max_clients` clients and a bounded number of transactions.
//!
//! This module must never take the sender from a SIP header or a non-peer's datagram, and
//! never add an address to a set but through [`fast::apply_sightings`].

pub mod capture;

use crate::config::wire::SipWireSettings;
use crate::model::Sighting;
use crate::source::wire::detect::{Engine, WireSettings};
use crate::source::wire::{hep, pcap};
use anyhow::{Context, Result};
use std::net::IpAddr;
use tokio::net::UdpSocket;

/// Packets read in one wake-up at most; the rest wait for the next turn of the loop.
pub const MAX_PER_WAKE: usize = 256;

/// What the wire inputs saw, since the daemon started (or the section was last changed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireStats {
    /// HEP datagrams received from peers.
    pub hep: u64,
    /// Datagrams from sources that are not peers: ignored.
    pub non_peer: u64,
    /// HEP datagrams refused (not HEP v3, lengths, chunks, not SIP).
    pub hep_refused: u64,
    /// Captured packets on the SIP ports.
    pub captured: u64,
    /// Payloads that were not SIP the detector can use.
    pub malformed: u64,
    /// Clients dropped from the detector to stay within `max_clients`.
    pub evicted: u64,
}

/// The wire inputs and their detector.
pub struct WireInput {
    pub settings: SipWireSettings,
    engine: Engine,
    hep: Option<(UdpSocket, Vec<ipnet::IpNet>)>,
    capture: Option<capture::Capture>,
    pub stats: WireStats,
    buf: Vec<u8>,
    /// Bans whose apply failed (the apply lock busy, the state unwritable): tried again at the
    /// next tick, while their ban time lasts.
    retry: Vec<Sighting>,
}

impl WireInput {
    /// Open the configured inputs. Must be called inside a tokio runtime.
    pub fn open(settings: &SipWireSettings) -> Result<WireInput> {
        let hep = match &settings.hep {
            Some(h) => {
                let std = std::net::UdpSocket::bind(h.listen)
                    .with_context(|| format!("sip_wire: listening for HEP on {}", h.listen))?;
                std.set_nonblocking(true)
                    .context("sip_wire: HEP socket non-blocking")?;
                let sock = UdpSocket::from_std(std).context("sip_wire: HEP socket")?;
                Some((sock, h.peers.clone()))
            }
            None => None,
        };
        let capture = match &settings.capture {
            Some(c) => Some(capture::Capture::open(c).with_context(|| {
                format!(
                    "sip_wire: live capture on {} (needs CAP_NET_RAW)",
                    c.interface
                )
            })?),
            None => None,
        };
        let engine = Engine::with_capacity(
            WireSettings {
                maxretry: settings.maxretry,
                findtime: settings.findtime,
                bantime: settings.bantime,
            },
            settings.max_clients as usize,
        );
        Ok(WireInput {
            settings: settings.clone(),
            engine,
            hep,
            capture,
            stats: WireStats::default(),
            buf: vec![0; 1 << 16],
            retry: Vec::new(),
        })
    }

    /// What is listened on, for the start-up line.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(h) = &self.settings.hep {
            parts.push(format!("HEP on udp {}", h.listen));
        }
        if let Some(c) = &self.settings.capture {
            let over = if c.tcp { "UDP and TCP" } else { "UDP" };
            parts.push(format!(
                "capture on {} ports {:?} over {over}",
                c.interface, c.ports
            ));
        }
        parts.join(", ")
    }

    /// Wait until an input has something to read.
    pub async fn readable(&self) -> std::io::Result<()> {
        let hep = async {
            match &self.hep {
                Some((s, _)) => s.readable().await,
                None => std::future::pending().await,
            }
        };
        let cap = async {
            match &self.capture {
                Some(c) => c.readable().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = hep => r,
            r = cap => r,
        }
    }

    /// Read what is waiting (at most [`MAX_PER_WAKE`] packets per input) through the
    /// detector. Returns whether a ban was reached.
    pub fn drain(&mut self, now: i64) -> bool {
        let before = self.engine.counters.malformed;
        if let Some((sock, peers)) = &self.hep {
            for _ in 0..MAX_PER_WAKE {
                let (n, from) = match sock.try_recv_from(&mut self.buf) {
                    Ok(x) => x,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        tracing::warn!("sip_wire: HEP socket: {e}");
                        break;
                    }
                };
                if !peers.iter().any(|p| p.contains(&canonical(from.ip()))) {
                    self.stats.non_peer += 1;
                    continue;
                }
                match hep::decode(&self.buf[..n]) {
                    Ok(h) if h.payload_type == hep::SIP => {
                        self.stats.hep += 1;
                        // The capture agent's clock, unless it is far from ours.
                        let t = i64::from(h.secs);
                        let t = if (t - now).abs() <= 60 { t } else { now };
                        self.engine.payload(h.src, h.dst, t, h.payload);
                    }
                    _ => self.stats.hep_refused += 1,
                }
            }
        }
        if let Some(c) = &self.capture {
            for _ in 0..MAX_PER_WAKE {
                let n = match c.recv(&mut self.buf) {
                    Ok(Some(n)) => n,
                    Ok(None) => continue, // a packet this side does not read
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        tracing::warn!("sip_wire: capture: {e}");
                        break;
                    }
                };
                let Ok(p) = pcap::decode_ip(&self.buf[..n], now) else {
                    continue;
                };
                if !c.wanted(p.transport, p.sport, p.dport) || p.payload.is_empty() {
                    continue;
                }
                self.stats.captured += 1;
                self.engine.payload(p.src, p.dst, now, p.payload);
            }
        }
        self.stats.malformed += self.engine.counters.malformed - before;
        self.engine.has_fresh()
    }

    /// Close what is due at `now` (un-ACKed INVITEs); returns whether a ban was reached.
    pub fn tick(&mut self, now: i64) -> bool {
        self.engine.tick(now);
        self.stats.evicted += self.engine.clients_held().1;
        self.engine.has_fresh() || !self.retry.is_empty()
    }

    /// The bans reached since the last take (and those to retry), as sightings of the
    /// `sip_wire` source.
    pub fn take_sightings(&mut self, now: i64) -> Vec<Sighting> {
        let mut out = std::mem::take(&mut self.retry);
        out.retain(|s| s.seen.saturating_add(i64::from(s.ttl)) > now);
        out.extend(self.engine.take_fresh(now).into_iter().map(|b| Sighting {
            net: crate::net::host_net(b.ip),
            seen: b.seen,
            ttl: b.ttl,
        }));
        out
    }
}

/// An IPv4-mapped IPv6 source (a dual-stack socket) as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl std::fmt::Display for WireStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} HEP datagrams, {} from non-peers ignored, {} HEP refused, {} captured, {} malformed, {} clients evicted",
            self.hep, self.non_peer, self.hep_refused, self.captured, self.malformed, self.evicted
        )
    }
}

/// The wire inputs `settings` asks for, or `None` (none configured, or they cannot be opened:
/// logged, and the rest of the daemon runs on).
pub fn open_configured(settings: &crate::config::Settings) -> Option<WireInput> {
    let s = settings.sip_wire.as_ref()?;
    match WireInput::open(s) {
        Ok(w) => {
            tracing::info!("sip_wire: {}", w.describe());
            Some(w)
        }
        Err(e) => {
            tracing::error!("{e:#}; SIP on the wire is not read until a reload");
            None
        }
    }
}

/// After a reload: keep the inputs (and what the detector has counted) when the section is
/// the same, else close them and open the new ones.
pub fn reopen(current: &mut Option<WireInput>, settings: &crate::config::Settings) {
    let same = match (current.as_ref(), settings.sip_wire.as_ref()) {
        (Some(w), Some(s)) => w.settings == *s,
        (None, None) => true,
        _ => false,
    };
    if !same {
        // Close first: the new listener may take the same port.
        *current = None;
        *current = open_configured(settings);
    }
}

/// Apply the bans the detector reached, through the real-time pass's gate and apply path;
/// `true` when a full sync must follow (the cap, a missing set).
pub fn apply(
    settings: &crate::config::Settings,
    backend: &dyn crate::backend::SetBackend,
    w: &mut WireInput,
    now: i64,
) -> bool {
    let sightings = w.take_sightings(now);
    if sightings.is_empty() {
        return false;
    }
    match crate::pipeline::fast::apply_sightings(
        settings,
        backend,
        crate::pipeline::detect::SIP_WIRE,
        sightings.clone(),
        now,
    ) {
        Ok(r) => {
            tracing::info!(
                "sip_wire: {} new bans, {} added to the kernel ({}), {} refused, {:.1} ms",
                r.bans,
                r.added.len(),
                r.added
                    .iter()
                    .map(crate::net::display_net)
                    .collect::<Vec<_>>()
                    .join(" "),
                r.refused,
                r.millis
            );
            if let Some(why) = &r.needs_sync {
                tracing::info!("sip_wire: {why}; starting a full sync");
            }
            r.needs_sync.is_some()
        }
        Err(e) => {
            tracing::error!(
                "sip_wire: applying {} bans failed: {e:#}; retrying in a second",
                sightings.len()
            );
            // Bounded: a ban is queued once by the detector, and dropped when it runs out.
            w.retry = sightings;
            false
        }
    }
}

/// Log the counters when they changed, at most every `every` seconds.
pub fn log_stats(w: &WireInput, last: &mut (WireStats, i64), now: i64, every: i64) {
    if w.stats != last.0 && now - last.1 >= every {
        tracing::info!("sip_wire: {}", w.stats);
        *last = (w.stats, now);
    }
}
