//! sipban: a small, fast blocklist agent for hosts that run a SIP PBX.
//!
//! One run is data flowing through a pipeline (see `design.md` in the shared folder):
//!
//! ```text
//! sources ──► sightings ──► decide ──► plan ──► apply ──► persist
//! ```
//!
//! Module map:
//! - [`net`]: address parsing, canonicalisation and prefix arithmetic; the only way text
//!   becomes an address.
//! - [`source`]: producers of [`source::Sighting`]s (feeds, and later APIBAN and log detectors).
//! - [`firewall`]: the only code that changes the kernel: ipset batches, swaps and read-back.

pub mod firewall;
pub mod net;
pub mod source;
