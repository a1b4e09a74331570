//! sipban: a small, fast blocklist agent for hosts that run a SIP PBX.
//!
//! One run is data flowing through a pipeline (see `design.md` in the shared folder):
//!
//! ```text
//! sources ──► sightings ──► decide ──► plan ──► apply ──► persist
//! ```
//!
//! Module map:
//! - [`config`]: the YAML schema (what the admin wrote) and the resolved [`config::Settings`].
//! - [`catalogue`]: built-in feed definitions from `feeds/*.yaml`.
//! - [`net`]: address parsing, canonicalisation and prefix arithmetic; the only way text
//!   becomes an address.
//! - [`decide`]: the pure policy step (allowlist, prefix rules, provenance, cap) and the plan.
//! - [`http`]: the HTTPS client every remote source uses (rustls, system roots).
//! - [`source`]: producers of [`source::Sighting`]s (feeds, and later APIBAN and log detectors).

pub mod catalogue;
pub mod config;
pub mod decide;
pub mod hostaddr;
pub mod http;
pub mod net;
pub mod source;
pub mod store;
