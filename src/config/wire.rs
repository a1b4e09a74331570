//! The resolved `sip_wire:` section: where the daemon reads SIP from the wire (a HEP v3
//! listener, a live capture on one or more interfaces, SIP over TCP reassembled within its
//! bounds) and the wire detector's thresholds.
//!
//! This module must never open a socket or read a packet: the daemon does that at run time,
//! from these settings.

use super::raw::{RawCapture, RawHep, RawSipWire};
use super::values::{human_duration, Dur};
use crate::config::secret::Secret;
use ipnet::IpNet;
use serde::Serialize;
use std::net::SocketAddr;

/// The default HEP listen address (Asterisk's and Kamailio's usual capture port, loopback).
pub const DEFAULT_HEP_LISTEN: &str = "127.0.0.1:9060";
/// The default ports a live capture reads SIP on.
pub const DEFAULT_CAPTURE_PORTS: [u16; 2] = [5060, 5061];
/// The default bound on remembered clients.
pub const DEFAULT_MAX_CLIENTS: u32 = 65_536;
/// The default bound on remembered Call-IDs.
pub const DEFAULT_MAX_CALLIDS: u32 = 16_384;
/// The highest `max_clients` (and `max_callids`, `max_tcp_streams`).
pub const MAX_CLIENTS: u32 = 1 << 20;
/// The bounds of `max_tcp_buffer`: a SIP message of 4 KiB must fit; 1 MiB is plenty.
pub const TCP_BUFFER_RANGE: (u32, u32) = (4096, 1 << 20);
/// The default bound on TCP streams followed at once.
pub const DEFAULT_MAX_TCP_STREAMS: u32 = 4096;
/// The default largest SIP message over TCP (and bytes buffered per stream direction).
pub const DEFAULT_MAX_TCP_BUFFER: u32 = 64 * 1024;
/// The default bound on bytes buffered over all TCP streams.
pub const DEFAULT_MAX_TCP_MEMORY: u32 = 16 * 1024 * 1024;
/// The default idle timeout of a TCP stream, seconds (phones send keep-alives more often).
pub const DEFAULT_TCP_IDLE: u32 = 600;
/// The highest `max_tcp_memory` (1 GiB).
pub const MAX_TCP_MEMORY: u32 = 1 << 30;

/// The resolved `sip_wire:` section.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SipWireSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hep: Option<HepSettings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureSettings>,
    pub maxretry: u32,
    /// Seconds.
    #[serde(serialize_with = "ser_secs")]
    pub findtime: u32,
    /// Seconds.
    #[serde(serialize_with = "ser_secs")]
    pub bantime: u32,
    pub priority: u16,
    pub max_clients: u32,
    /// Call-IDs remembered at most (the Call-ID map's memory bound).
    pub max_callids: u32,
    /// TCP reassembly's bounds (the live capture's; `scan --pcap` uses the defaults).
    pub max_tcp_streams: u32,
    /// Bytes per stream direction (and the largest SIP message over TCP).
    pub max_tcp_buffer: u32,
    /// Bytes over all streams.
    pub max_tcp_memory: u32,
    /// Seconds.
    #[serde(serialize_with = "ser_secs")]
    pub tcp_idle: u32,
}

/// `sip_wire.hep`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HepSettings {
    pub listen: SocketAddr,
    /// Datagrams from any other source are ignored (and counted).
    pub peers: Vec<IpNet>,
    /// The auth key every datagram must carry (HEP chunk 14), when configured. Never shown:
    /// `config check` says only whether there is one.
    #[serde(skip)]
    pub capture_password: Option<Secret>,
    /// Whether a capture password is required (for `config check`).
    pub authenticated: bool,
}

/// `sip_wire.capture`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CaptureSettings {
    /// One `AF_PACKET` socket each.
    pub interfaces: Vec<String>,
    pub ports: Vec<u16>,
    /// Read SIP over TCP too (on by default). Streams are reassembled, and read only once
    /// their handshake acknowledged an ISN this host chose, so a forged source address never
    /// gets a message through TCP (UDP has that weakness in any case).
    pub tcp: bool,
}

impl SipWireSettings {
    /// What is listened on, in words: the daemon's start-up line, `status`, `config check`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(h) = &self.hep {
            parts.push(format!("HEP on udp {}", h.listen));
        }
        if let Some(c) = &self.capture {
            let over = if c.tcp {
                format!(
                    "UDP and TCP (streams reassembled after a handshake this host answered; at most {} streams)",
                    self.max_tcp_streams
                )
            } else {
                "UDP".to_owned()
            };
            parts.push(format!(
                "capture on {} ports {:?} over {over}",
                c.interfaces.join(", "),
                c.ports
            ));
        }
        parts.join(", ")
    }
}

fn ser_secs<S: serde::Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&human_duration(u64::from(*v)))
}

fn hep(raw: RawHep) -> Result<HepSettings, String> {
    let listen = match raw.listen {
        Some(l) => l.0,
        None => DEFAULT_HEP_LISTEN
            .parse()
            .map_err(|e| format!("internal: default listen address: {e}"))?,
    };
    if listen.port() == 0 {
        return Err("hep.listen needs a port (e.g. 127.0.0.1:9060)".into());
    }
    let peers: Vec<IpNet> = match raw.peers {
        Some(p) => p.into_iter().map(|c| c.0).collect(),
        // The PBX on this host.
        None => vec![
            IpNet::from(std::net::IpAddr::from([127, 0, 0, 1])),
            IpNet::from(std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
        ],
    };
    if peers.is_empty() {
        return Err("hep.peers is empty: no datagram would ever be read".into());
    }
    if let Some(all) = peers.iter().find(|p| p.prefix_len() == 0) {
        return Err(format!(
            "hep.peers: {all} would let anyone send HEP datagrams that name a victim; list the PBX's addresses"
        ));
    }
    let capture_password = match raw.capture_password {
        Some(p) if p.is_empty() => {
            return Err("hep.capture_password is empty: leave it out, or set Asterisk's".into())
        }
        Some(p) => Some(Secret::new(p, "sip_wire.hep.capture_password")),
        None => None,
    };
    Ok(HepSettings {
        listen,
        peers,
        authenticated: capture_password.is_some(),
        capture_password,
    })
}

/// Whether `name` can be a network interface's name.
fn interface_name(name: &str) -> bool {
    // IFNAMSIZ is 16 with its NUL; the kernel refuses '/', ':' and white space in a name.
    !name.is_empty()
        && name.len() <= 15
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b.is_ascii_control())
}

/// Most interfaces one capture opens.
pub const MAX_INTERFACES: usize = 64;

fn capture(raw: RawCapture) -> Result<CaptureSettings, String> {
    let interfaces = match (raw.interfaces, raw.interface) {
        (Some(_), Some(_)) => {
            return Err(
                "capture: give `interfaces: [...]` or its shorthand `interface:`, not both".into(),
            )
        }
        (Some(list), None) => list,
        (None, Some(one)) => vec![one],
        (None, None) => return Err("capture needs `interfaces` (e.g. interfaces: [eth0])".into()),
    };
    if interfaces.is_empty() || interfaces.len() > MAX_INTERFACES {
        return Err(format!(
            "capture.interfaces needs between 1 and {MAX_INTERFACES} interfaces"
        ));
    }
    if let Some(bad) = interfaces.iter().find(|i| !interface_name(i)) {
        return Err(format!(
            "capture.interfaces: {bad:?} is not a network interface name"
        ));
    }
    let mut sorted = interfaces.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != interfaces.len() {
        return Err("capture.interfaces names an interface twice".into());
    }
    let ports = raw.ports.unwrap_or_else(|| DEFAULT_CAPTURE_PORTS.to_vec());
    if ports.is_empty() || ports.contains(&0) {
        return Err("capture.ports needs at least one port, none of them 0".into());
    }
    Ok(CaptureSettings {
        interfaces,
        ports,
        tcp: raw.tcp.unwrap_or(true),
    })
}

/// Apply defaults and validate the `sip_wire:` section.
pub fn resolve(raw: RawSipWire) -> Result<SipWireSettings, String> {
    let hep = raw.hep.map(hep).transpose()?;
    let capture = raw.capture.map(capture).transpose()?;
    if hep.is_none() && capture.is_none() {
        return Err("needs `hep` (a HEP v3 listener), `capture` (a live capture) or both".into());
    }
    let maxretry = raw.maxretry.unwrap_or(5);
    if maxretry == 0 {
        return Err("maxretry must be at least 1".into());
    }
    let secs = |d: Option<Dur>, default: u32, what: &str| -> Result<u32, String> {
        match d {
            None => Ok(default),
            Some(d) => u32::try_from(d.0)
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| format!("{what} must be between 1s and 136 years")),
        }
    };
    let max_clients = raw.max_clients.unwrap_or(DEFAULT_MAX_CLIENTS);
    if !(64..=MAX_CLIENTS).contains(&max_clients) {
        return Err(format!("max_clients must be between 64 and {MAX_CLIENTS}"));
    }
    let max_callids = raw.max_callids.unwrap_or(DEFAULT_MAX_CALLIDS);
    if !(256..=MAX_CLIENTS).contains(&max_callids) {
        return Err(format!("max_callids must be between 256 and {MAX_CLIENTS}"));
    }
    let max_tcp_streams = raw.max_tcp_streams.unwrap_or(DEFAULT_MAX_TCP_STREAMS);
    if !(16..=MAX_CLIENTS).contains(&max_tcp_streams) {
        return Err(format!(
            "max_tcp_streams must be between 16 and {MAX_CLIENTS}"
        ));
    }
    let max_tcp_buffer = raw.max_tcp_buffer.unwrap_or(DEFAULT_MAX_TCP_BUFFER);
    let (lo, hi) = TCP_BUFFER_RANGE;
    if !(lo..=hi).contains(&max_tcp_buffer) {
        return Err(format!(
            "max_tcp_buffer must be between {lo} and {hi} bytes"
        ));
    }
    let max_tcp_memory = raw.max_tcp_memory.unwrap_or(DEFAULT_MAX_TCP_MEMORY);
    if !(max_tcp_buffer..=MAX_TCP_MEMORY).contains(&max_tcp_memory) {
        return Err(format!(
            "max_tcp_memory must be between max_tcp_buffer ({max_tcp_buffer}) and {MAX_TCP_MEMORY} bytes"
        ));
    }
    Ok(SipWireSettings {
        hep,
        capture,
        maxretry,
        findtime: secs(raw.findtime, 600, "findtime")?,
        bantime: secs(raw.bantime, 86_400, "bantime")?,
        priority: raw.priority.map_or(100, |p| p.0),
        max_clients,
        max_callids,
        max_tcp_streams,
        max_tcp_buffer,
        max_tcp_memory,
        tcp_idle: secs(raw.tcp_idle, DEFAULT_TCP_IDLE, "tcp_idle")?,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;
    use std::path::Path;

    fn load(text: &str) -> Result<crate::config::Settings, String> {
        load_str(text, Path::new("/etc/sipban/test.yaml")).map_err(|e| e.0)
    }

    #[test]
    fn a_full_section_resolves() {
        let s = load(
            "sip_wire:\n  hep: { listen: \"127.0.0.1:9060\", peers: [127.0.0.1, 10.0.0.0/24] }\n  capture: { interface: eth0, ports: [5060, 5061] }\n  maxretry: 3\n  findtime: 5m\n  bantime: 1h\n  priority: 95\n",
        )
        .unwrap();
        let w = s.sip_wire.unwrap();
        let h = w.hep.unwrap();
        assert_eq!(h.listen.to_string(), "127.0.0.1:9060");
        assert_eq!(h.peers.len(), 2);
        let c = w.capture.unwrap();
        assert_eq!(c.ports, [5060, 5061]);
        assert_eq!(c.interfaces, ["eth0"]);
        assert!(c.tcp, "TCP is read by default");
        assert_eq!(w.max_tcp_streams, 4096);
        assert_eq!(w.tcp_idle, 600);
        assert_eq!(
            (w.maxretry, w.findtime, w.bantime, w.priority),
            (3, 300, 3600, 95)
        );
        assert_eq!(w.max_clients, super::DEFAULT_MAX_CLIENTS);
        assert_eq!(w.max_callids, super::DEFAULT_MAX_CALLIDS);
        let e = load("sip_wire:\n  hep: {}\n  max_callids: 10\n").unwrap_err();
        assert!(e.contains("max_callids must be between"), "{e}");
    }

    #[test]
    fn a_capture_on_several_interfaces_and_tcp_bounds() {
        let w = load("sip_wire:\n  capture: { interfaces: [eth1, eth0], ports: [5060], tcp: false }\n  max_tcp_streams: 100\n  max_tcp_buffer: 8192\n  max_tcp_memory: 1048576\n  tcp_idle: 2m\n")
            .unwrap()
            .sip_wire
            .unwrap();
        let c = w.capture.as_ref().unwrap();
        assert_eq!(c.interfaces, ["eth1", "eth0"]);
        assert!(!c.tcp);
        assert_eq!(
            (
                w.max_tcp_streams,
                w.max_tcp_buffer,
                w.max_tcp_memory,
                w.tcp_idle
            ),
            (100, 8192, 1 << 20, 120)
        );
    }

    #[test]
    fn a_capture_password_is_kept_and_never_shown() {
        let s = load("sip_wire:\n  hep: { capture_password: \"pw-1234\" }\n").unwrap();
        let h = s.sip_wire.as_ref().unwrap().hep.as_ref().unwrap();
        assert_eq!(h.capture_password.as_ref().unwrap().expose(), "pw-1234");
        assert!(h.authenticated);
        let shown = serde_json::to_string(&s.sip_wire).unwrap() + &format!("{h:?}");
        assert!(!shown.contains("pw-1234"), "{shown}");
        let e = load("sip_wire:\n  hep: { capture_password: \"\" }\n").unwrap_err();
        assert!(e.contains("capture_password is empty"), "{e}");
    }

    #[test]
    fn defaults_are_the_local_pbx() {
        let w = load("sip_wire:\n  hep: {}\n").unwrap().sip_wire.unwrap();
        let h = w.hep.unwrap();
        assert_eq!(h.listen.to_string(), super::DEFAULT_HEP_LISTEN);
        assert!(h.peers.iter().all(|p| p.addr().is_loopback()), "{h:?}");
        assert!(w.capture.is_none());
        assert_eq!((w.maxretry, w.findtime, w.bantime), (5, 600, 86_400));
    }

    #[test]
    fn bad_values_are_located() {
        for (text, line, words) in [
            ("sip_wire: {}\n", 1, "needs `hep`"),
            (
                "state_dir: /x\nsip_wire:\n  hep: { listen: pbx.example:9060 }\n",
                3,
                "IP:port",
            ),
            (
                "sip_wire:\n  hep: { listen: \"127.0.0.1:0\" }\n",
                2,
                "needs a port",
            ),
            ("sip_wire:\n  hep: { peers: [] }\n", 2, "empty"),
            ("sip_wire:\n  hep: { peers: [0.0.0.0/0] }\n", 2, "anyone"),
            (
                "sip_wire:\n  hep: { peers: [pbx.example] }\n",
                2,
                "host names",
            ),
            ("sip_wire:\n  capture: { ports: [5060] }\n", 2, "interface"),
            (
                "sip_wire:\n  capture: { interface: eth0, interfaces: [eth1] }\n",
                2,
                "not both",
            ),
            (
                "sip_wire:\n  capture: { interfaces: [] }\n",
                2,
                "between 1 and",
            ),
            (
                "sip_wire:\n  capture: { interfaces: [eth0, eth0] }\n",
                2,
                "twice",
            ),
            (
                "sip_wire:\n  capture: { interfaces: [eth0, \"a b\"] }\n",
                2,
                "interface name",
            ),
            (
                "sip_wire:\n  hep: {}\n  max_tcp_buffer: 10\n",
                2,
                "max_tcp_buffer",
            ),
            (
                "sip_wire:\n  hep: {}\n  max_tcp_streams: 1\n",
                2,
                "max_tcp_streams",
            ),
            (
                "sip_wire:\n  capture: { interface: \"eth0/x\" }\n",
                2,
                "interface name",
            ),
            (
                "sip_wire:\n  capture: { interface: eth0, ports: [] }\n",
                2,
                "at least one port",
            ),
            (
                "sip_wire:\n  capture: { interface: eth0, ports: [70000] }\n",
                2,
                "",
            ),
            ("sip_wire:\n  hep: {}\n  maxretry: 0\n", 2, "maxretry"),
            ("sip_wire:\n  hep: {}\n  bantime: 7\n", 3, "unit"),
            ("sip_wire:\n  hep: {}\n  max_clients: 1\n", 2, "max_clients"),
            ("sip_wire:\n  hep: {}\n  colour: red\n", 3, "colour"),
        ] {
            let e = load(text).unwrap_err();
            assert!(
                e.contains("test.yaml") && e.contains(&format!("line {line}")) && e.contains(words),
                "{text:?}: {e}"
            );
        }
    }
}
