//! Sources of offenders. Every source turns what it read (a feed body, an API page, a log
//! line) into [`Sighting`]s and nothing else: no source knows about the allowlist, the cap or
//! the firewall. That keeps the decide step the single place where policy lives.
//!
//! - [`tail`]: generic offset-persistent file follower (rotation, truncation, partial lines).
//! - [`journal`]: the systemd journal read through `journalctl -o json` from a saved cursor
//!   (lost cursors, byte messages, the read limit).
//! - [`asterisk`]: the Asterisk log detector (failure rules, Call-ID correlation, bans).
//! - [`kernlog`]: the kernel-log detector (netfilter LOG lines, port catalogue, probe scoring).
//! - [`input`]: per-input line counts (read, parsed, matched, refused, unparsed).
//! - [`offences`]: the bounded per-address offence counter both detectors keep (spray-proof
//!   eviction: the sources closest to a ban are kept).
//! - [`wire`]: SIP on the wire: pcap/pcapng files, HEP v3, the SIP message parser.
//! - [`apiban`], [`crowdsec`], [`feed`]: the remote sources (APIBAN pages, a CrowdSec LAPI's
//!   decisions, blocklist feeds).

pub mod asterisk;
pub mod input;
pub mod journal;
pub mod kernlog;
pub mod offences;
pub mod tail;
pub mod wire;

pub use crate::model::Sighting;

pub mod apiban;
pub mod crowdsec;
pub mod feed;
