//! The daemon's wire inputs (`sip_wire:`): a HEP v3 listener (UDP) and a live capture on one
//! or more interfaces ([`capture`]), both feeding one resident wire detector
//! ([`Engine`](crate::source::wire::detect::Engine)); the bans it reaches are handed to the
//! real-time pass's gate and apply path ([`fast::apply_sightings`]).
//!
//! * **HEP.** Datagrams whose source is not in `hep.peers` are ignored and counted, never
//!   decoded: anyone who can reach the port could otherwise name a victim in the inner source
//!   address. A datagram that is not HEP v3, not SIP, or whose SIP does not parse is counted
//!   and dropped.
//! * **Capture.** IPv4/IPv6 packets to or from `capture.ports` over UDP, and (unless
//!   `capture.tcp: false`) TCP segments through one [`Reassembler`]: streams reassembled and
//!   framed into SIP messages, each stream read only once its handshake acknowledged an ISN
//!   this host chose (a forged source never opens one), within `max_tcp_streams`,
//!   `max_tcp_buffer`, `max_tcp_memory` and `tcp_idle`.
//! * **Bounds.** One wake-up reads at most [`MAX_PER_WAKE`] packets into one 64 KiB buffer,
//!   each packet costs one parse and a few hash lookups; the detector remembers at most
//!   `max_clients` clients and a bounded number of transactions.
//!
//! This module must never take the sender from a SIP header or a non-peer's datagram, and
//! never add an address to a set but through [`fast::apply_sightings`].

pub mod capture;

use crate::config::wire::SipWireSettings;
use crate::model::Sighting;
use crate::source::asterisk::callid::CallIdMap;
use crate::source::wire::detect::{Engine, WireSettings};
use crate::source::wire::saved::{self, SavedWire};
use crate::source::wire::tcp::{Handshake, Limits, Reassembler};
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
    /// HEP datagrams from peers without the configured capture password: refused.
    pub hep_unauthenticated: u64,
    /// Captured packets on the SIP ports.
    pub captured: u64,
    /// Payloads that were not SIP the detector can use.
    pub malformed: u64,
    /// Clients dropped from the detector to stay within `max_clients`.
    pub evicted: u64,
    /// TCP streams opened by a handshake this host answered.
    pub tcp_streams: u64,
    /// SIP messages framed out of TCP streams.
    pub tcp_messages: u64,
    /// TCP segments with data on no verified stream (forged, or older than the capture).
    pub tcp_unverified: u64,
    /// TCP streams dropped: not SIP, a message too large, a gap, the memory bound.
    pub tcp_dropped: u64,
    /// TCP streams evicted (or handshakes refused) to stay within `max_tcp_streams`.
    pub tcp_evicted: u64,
}

/// The HEP socket and who may send on it.
struct HepListener {
    sock: UdpSocket,
    peers: Vec<ipnet::IpNet>,
    password: Option<crate::config::secret::Secret>,
}

impl HepListener {
    /// Whether a decoded datagram carries the configured capture password (always, when none
    /// is configured). Compared in constant time.
    fn authentic(&self, key: Option<&[u8]>) -> bool {
        let Some(want) = &self.password else {
            return true;
        };
        let (want, got) = (want.expose().as_bytes(), key.unwrap_or(&[]));
        // Asterisk sends the password as a C string: a trailing NUL is not part of it.
        let got = got.strip_suffix(&[0]).unwrap_or(got);
        want.len() == got.len() && want.iter().zip(got).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
    }
}

/// The wire inputs and their detector.
pub struct WireInput {
    pub settings: SipWireSettings,
    engine: Engine,
    hep: Option<HepListener>,
    capture: Option<capture::Capture>,
    /// SIP over TCP from the capture.
    tcp: Reassembler,
    pub stats: WireStats,
    buf: Vec<u8>,
    /// Bans whose apply failed (the apply lock busy, the state unwritable): tried again at the
    /// next tick, while their ban time lasts.
    retry: Vec<Sighting>,
    /// When the inputs were opened (the counters run from then).
    since: i64,
    /// Something was read since the last save.
    dirty: bool,
    saved_at: i64,
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
                Some(HepListener {
                    sock,
                    peers: h.peers.clone(),
                    password: h.capture_password.clone(),
                })
            }
            None => None,
        };
        let capture = match &settings.capture {
            Some(c) => Some(capture::Capture::open(c).with_context(|| {
                format!(
                    "sip_wire: live capture on {} (needs CAP_NET_RAW)",
                    c.interfaces.join(", ")
                )
            })?),
            None => None,
        };
        let mut engine = Engine::with_capacity(
            WireSettings {
                maxretry: settings.maxretry,
                findtime: settings.findtime,
                bantime: settings.bantime,
            },
            settings.max_clients as usize,
        );
        engine.callids = CallIdMap::with_cap(settings.max_callids as usize);
        Ok(WireInput {
            settings: settings.clone(),
            engine,
            hep,
            capture,
            tcp: Reassembler::new(Limits::from_settings(settings, Handshake::Required)),
            stats: WireStats::default(),
            buf: vec![0; 1 << 16],
            retry: Vec::new(),
            since: crate::clock::unix_now(),
            dirty: false,
            saved_at: crate::clock::unix_now(),
        })
    }

    /// The Call-ID map the wire keeps: the Asterisk detector attributes scanner timeouts
    /// through it.
    pub fn callids(&self) -> &CallIdMap {
        &self.engine.callids
    }

    /// What is listened on, for the start-up line.
    pub fn describe(&self) -> String {
        self.settings.describe()
    }

    /// Wait until an input has something to read.
    pub async fn readable(&self) -> std::io::Result<()> {
        let hep = async {
            match &self.hep {
                Some(h) => h.sock.readable().await,
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
        self.dirty = true;
        let before = self.engine.counters.malformed;
        if let Some(hl) = &self.hep {
            for _ in 0..MAX_PER_WAKE {
                let (n, from) = match hl.sock.try_recv_from(&mut self.buf) {
                    Ok(x) => x,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        tracing::warn!("sip_wire: HEP socket: {e}");
                        break;
                    }
                };
                if !hl.peers.iter().any(|p| p.contains(&canonical(from.ip()))) {
                    self.stats.non_peer += 1;
                    continue;
                }
                match hep::decode(&self.buf[..n]) {
                    Ok(h) if !hl.authentic(h.auth_key) => self.stats.hep_unauthenticated += 1,
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
            for i in 0..c.sockets() {
                read_capture(
                    c,
                    i,
                    &mut self.buf,
                    &mut self.tcp,
                    &mut self.engine,
                    &mut self.stats,
                    now,
                );
            }
            self.stats.tcp_from(&self.tcp.counters);
        }
        self.stats.malformed += self.engine.counters.malformed - before;
        self.engine.has_fresh()
    }

    /// Close what is due at `now` (un-ACKed INVITEs); returns whether a ban was reached.
    pub fn tick(&mut self, now: i64) -> bool {
        self.engine.tick(now);
        self.tcp.expire(now);
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

/// Read what waits on capture socket `i` (at most [`MAX_PER_WAKE`] packets): UDP payloads
/// to the detector, TCP segments through the reassembler.
fn read_capture(
    c: &capture::Capture,
    i: usize,
    buf: &mut [u8],
    tcp: &mut Reassembler,
    engine: &mut Engine,
    stats: &mut WireStats,
    now: i64,
) {
    for _ in 0..MAX_PER_WAKE {
        let (n, dir) = match c.recv(i, buf) {
            Ok(Some(x)) => x,
            Ok(None) => continue, // a packet this side does not read
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => {
                tracing::warn!("sip_wire: capture: {e}");
                break;
            }
        };
        let Ok(p) = pcap::decode_ip(&buf[..n], now) else {
            continue;
        };
        if !c.wanted(p.transport, p.sport, p.dport) {
            continue;
        }
        match p.transport {
            pcap::Transport::Udp if p.payload.is_empty() => {}
            pcap::Transport::Udp => {
                stats.captured += 1;
                engine.payload(p.src, p.dst, now, p.payload);
            }
            pcap::Transport::Tcp => {
                stats.captured += 1;
                tcp.segment(&p.segment(), dir, now, &mut |src, dst, m| {
                    engine.payload(src, dst, now, m)
                });
            }
        }
    }
}

/// An IPv4-mapped IPv6 source (a dual-stack socket) as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl WireStats {
    /// The TCP counters from the reassembler's (both count from when the inputs opened).
    fn tcp_from(&mut self, t: &crate::source::wire::tcp::TcpCounters) {
        self.tcp_streams = t.handshakes;
        self.tcp_messages = t.messages;
        self.tcp_unverified = t.unverified;
        self.tcp_dropped = t.gaps + t.malformed + t.over_memory;
        self.tcp_evicted = t.evicted + t.refused;
    }

    /// The counters by name, as the state keeps them for `status` and the metrics.
    pub fn by_name(&self) -> std::collections::BTreeMap<String, u64> {
        [
            ("hep", self.hep),
            ("non_peer", self.non_peer),
            ("hep_refused", self.hep_refused),
            ("hep_unauthenticated", self.hep_unauthenticated),
            ("captured", self.captured),
            ("malformed", self.malformed),
            ("evicted", self.evicted),
            ("tcp_streams", self.tcp_streams),
            ("tcp_messages", self.tcp_messages),
            ("tcp_unverified", self.tcp_unverified),
            ("tcp_dropped", self.tcp_dropped),
            ("tcp_evicted", self.tcp_evicted),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

impl std::fmt::Display for WireStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} HEP datagrams, {} from non-peers ignored, {} HEP refused, {} without the capture password, {} captured, {} malformed, {} clients evicted; TCP: {} streams, {} messages, {} unverified segments ignored, {} streams dropped, {} evicted",
            self.hep, self.non_peer, self.hep_refused, self.hep_unauthenticated, self.captured, self.malformed, self.evicted,
            self.tcp_streams, self.tcp_messages, self.tcp_unverified, self.tcp_dropped, self.tcp_evicted
        )
    }
}

/// The wire inputs `settings` asks for, or `None` (none configured, or they cannot be opened:
/// logged, and the rest of the daemon runs on).
pub fn open_configured(settings: &crate::config::Settings) -> Option<WireInput> {
    let s = settings.sip_wire.as_ref()?;
    match WireInput::open(s) {
        Ok(mut w) => {
            tracing::info!("sip_wire: {}", w.describe());
            restore(&mut w, &settings.state_dir);
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
        if let Some(w) = current.as_mut() {
            save(settings, w, crate::clock::unix_now());
        }
        // Close first: the new listener may take the same port.
        *current = None;
        *current = open_configured(settings);
    }
}

/// How often the Call-ID map and the counters are saved while packets arrive.
pub const SAVE_EVERY: i64 = 30;

/// Save the Call-ID map and the counters into the state (under the apply lock), so that a
/// restart keeps the INVITEs a later Timeout line needs, and `status` shows the counters.
/// A failure is logged; the daemon goes on.
pub fn save(settings: &crate::config::Settings, w: &mut WireInput, now: i64) {
    w.engine.callids.prune();
    let saved = SavedWire {
        saved: now,
        since: w.since,
        counters: w.stats.by_name(),
        callids_held: w.engine.callids.len() as u64,
        callids: w.engine.callids.clone(),
    };
    let r = (|| -> Result<()> {
        let blob = saved.encode().context("encoding the wire state")?;
        let _held = crate::lock::apply(&settings.state_dir, crate::lock::APPLY_WAIT)?;
        let mut store = crate::store::Store::open(&settings.state_dir)?;
        store.put_blob(saved::KEY, &blob)
    })();
    match r {
        Ok(()) => {
            w.dirty = false;
            w.saved_at = now;
        }
        Err(e) => tracing::warn!("sip_wire: saving the Call-ID map: {e:#}"),
    }
}

/// [`save`] when packets arrived and [`SAVE_EVERY`] seconds passed since the last save.
pub fn save_if_due(settings: &crate::config::Settings, w: &mut WireInput, now: i64) {
    if w.dirty && (now - w.saved_at >= SAVE_EVERY || now < w.saved_at) {
        save(settings, w, now);
    }
}

/// The Call-ID map saved by the last daemon, if the state has one (a restart within the
/// attribution window keeps attributing).
fn restore(w: &mut WireInput, state_dir: &std::path::Path) {
    let blob = match crate::store::Store::open_read_only(state_dir) {
        Ok(Some(store)) => store.blob(saved::KEY),
        _ => return,
    };
    match blob.map(|b| b.map(|b| SavedWire::decode(&b))) {
        Ok(Some(Ok(s))) => {
            w.engine.callids = s.callids;
            w.engine.callids.set_cap(w.settings.max_callids as usize);
            tracing::info!(
                "sip_wire: {} Call-IDs restored from the state",
                w.engine.callids.len()
            );
        }
        Ok(Some(Err(e))) => {
            tracing::warn!("sip_wire: the saved Call-ID map is unreadable ({e}); starting afresh")
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("sip_wire: reading the saved Call-ID map: {e:#}"),
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

/// Once a second: close what is due, log the counters (at most every 10 s), save the map
/// when due. Returns whether a ban was reached.
pub fn on_tick(
    settings: &crate::config::Settings,
    w: &mut WireInput,
    logged: &mut (WireStats, i64),
    now: i64,
) -> bool {
    let ban = w.tick(now);
    log_stats(w, logged, now, 10);
    save_if_due(settings, w, now);
    ban
}

/// Log the counters when they changed, at most every `every` seconds.
pub fn log_stats(w: &WireInput, last: &mut (WireStats, i64), now: i64, every: i64) {
    if w.stats != last.0 && now - last.1 >= every {
        tracing::info!("sip_wire: {}", w.stats);
        *last = (w.stats, now);
    }
}
