//! SIP seen on the wire: the parsers that turn captured bytes into SIP messages with the
//! sender's address taken from the packet, never from a header.
//!
//! - [`pcap`]: classic pcap and pcapng files, link/IP/UDP/TCP decoding (offline `scan --pcap`).
//! - [`hep`]: HEP v3 datagrams (Asterisk's `res_hep`, Kamailio's `siptrace`).
//! - [`sip`]: the one SIP message model, zero-copy, from hostile input.
//! - [`signature`]: scanner User-Agents (`feeds/sip-scanners.txt`) and tool fingerprints.
//! - [`detect`]: the wire detector (per client: signatures and behaviour, maxretry/findtime)
//!   and the Call-ID map that attributes Asterisk's IP-less Timeout lines.
//! - [`tcp`]: SIP over TCP: per-stream reassembly and framing, bounded (capture and scan).
//! - [`scan`]: `sipban scan --pcap`, a capture read offline, with Asterisk logs attributed.
//! - [`saved`]: what the daemon's wire inputs keep across a restart (the Call-ID map, counters).
//!
//! This module must never keep a SIP body, credentials or a digest, and never let a header
//! name the sender.

pub mod detect;
pub mod hep;
pub mod pcap;
pub mod saved;
pub mod scan;
pub mod signature;
pub mod sip;
pub mod tcp;
