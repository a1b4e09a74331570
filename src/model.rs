//! The vocabulary every stage shares: a [`Sighting`] (what a source saw), an [`Entry`] with
//! its [`Mark`]s (an address and who listed it until when), and a [`Desired`] prefix (what
//! belongs in a kernel set). Sources produce sightings, the store keeps entries, decide turns
//! both into desired prefixes, and a backend applies them.
//!
//! Plain data only: this module must never do I/O or hold policy (that is the gate's and
//! decide's job, in [`crate::pipeline`]).

use crate::net;
use ipnet::IpNet;

/// Serialise a prefix in sipban's canonical text form.
pub fn ser_net<S: serde::Serializer>(n: &IpNet, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&net::display_net(n))
}

/// One fact from one source: "this source listed or saw `net` at `seen`; keep it `ttl` seconds
/// after that unless it is seen again". Addresses are canonical (see [`crate::net`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sighting {
    pub net: IpNet,
    /// Unix seconds.
    pub seen: i64,
    /// Seconds the entry lives after `seen`.
    pub ttl: u32,
}

/// One source's claim on an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    /// Index into the source policies of the run (see `pipeline::Sources`).
    pub source: u16,
    pub first_seen: i64,
    pub last_seen: i64,
    pub expires: i64,
}

/// The marks of one entry. Nearly every address is listed by one source, so one mark lives
/// inline: 65,536 entries are one allocation, not 65,537.
pub type Marks = smallvec::SmallVec<[Mark; 1]>;

/// An address with its provenance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub net: IpNet,
    pub marks: Marks,
}

impl Entry {
    pub fn expires(&self) -> i64 {
        self.marks
            .iter()
            .map(|m| m.expires)
            .max()
            .unwrap_or(i64::MIN)
    }
}

/// A prefix that belongs in a kernel set, with the instant its ban ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desired {
    pub net: IpNet,
    pub expires: i64,
}
