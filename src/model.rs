//! The vocabulary every stage shares: a [`Sighting`] (what a source saw; [`Sightings`] one
//! by one or as a feed's compact listing, [`Nets`]), an [`Entry`] with
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

/// A compact list of prefixes in [`net::cmp_net`] order (IPv4 first, then by address and
/// length): 5 bytes an IPv4 prefix and 17 an IPv6 one, where an `IpNet` takes 18 and a
/// [`Sighting`] 32. A feed's listing is held in this form from its parse to the state commit,
/// so a list of a million addresses costs a few megabytes, not hundreds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Nets {
    v4: Vec<ipnet::Ipv4Net>,
    v6: Vec<ipnet::Ipv6Net>,
    /// Whether a push since the last [`Nets::sort`] may have broken the order.
    unsorted: bool,
}

impl Nets {
    /// Append a prefix; the list is in order again after [`Nets::sort`].
    pub fn push(&mut self, n: IpNet) {
        match n {
            IpNet::V4(p) => {
                self.unsorted |= self.v4.last().is_some_and(|l| key4(l) > key4(&p));
                self.v4.push(p);
            }
            IpNet::V6(p) => {
                self.unsorted |= self.v6.last().is_some_and(|l| key6(l) > key6(&p));
                self.v6.push(p);
            }
        }
    }

    /// Put the list in order (duplicates are kept) and give back spare room.
    pub fn sort(&mut self) {
        if self.unsorted {
            self.v4.sort_unstable_by_key(key4);
            self.v6.sort_unstable_by_key(key6);
            self.unsorted = false;
        }
        self.v4.shrink_to_fit();
        self.v6.shrink_to_fit();
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`th prefix in order (IPv4 first).
    pub fn get(&self, i: usize) -> Option<IpNet> {
        match i.checked_sub(self.v4.len()) {
            None => self.v4.get(i).copied().map(IpNet::V4),
            Some(j) => self.v6.get(j).copied().map(IpNet::V6),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = IpNet> + '_ {
        let v4 = self.v4.iter().copied().map(IpNet::V4);
        v4.chain(self.v6.iter().copied().map(IpNet::V6))
    }

    pub fn v4(&self) -> &[ipnet::Ipv4Net] {
        &self.v4
    }

    pub fn v6(&self) -> &[ipnet::Ipv6Net] {
        &self.v6
    }

    /// Keep the prefixes `keep` says yes to, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&IpNet) -> bool) {
        self.v4.retain(|p| keep(&IpNet::V4(*p)));
        self.v6.retain(|p| keep(&IpNet::V6(*p)));
    }
}

impl FromIterator<IpNet> for Nets {
    /// In order, whatever the order of `iter`.
    fn from_iter<I: IntoIterator<Item = IpNet>>(iter: I) -> Nets {
        let mut nets = Nets::default();
        for n in iter {
            nets.push(n);
        }
        nets.sort();
        nets
    }
}

fn key4(p: &ipnet::Ipv4Net) -> (u32, u8) {
    (u32::from(p.addr()), p.prefix_len())
}

fn key6(p: &ipnet::Ipv6Net) -> (u128, u8) {
    (u128::from(p.addr()), p.prefix_len())
}

/// What one source brought in one run: sightings one by one, or a feed's listing (every
/// prefix seen at the same instant, for the same TTL), shared with the feed's cache writer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sightings {
    Each(Vec<Sighting>),
    Listing {
        nets: std::sync::Arc<Nets>,
        seen: i64,
        ttl: u32,
    },
}

impl Default for Sightings {
    fn default() -> Sightings {
        Sightings::Each(Vec::new())
    }
}

impl From<Vec<Sighting>> for Sightings {
    fn from(v: Vec<Sighting>) -> Sightings {
        Sightings::Each(v)
    }
}

impl FromIterator<Sighting> for Sightings {
    fn from_iter<I: IntoIterator<Item = Sighting>>(iter: I) -> Sightings {
        Sightings::Each(iter.into_iter().collect())
    }
}

impl Sightings {
    /// The sightings one by one, to edit (a listing is spelled out first).
    #[cfg(test)]
    pub fn each_mut(&mut self) -> &mut Vec<Sighting> {
        if let Sightings::Listing { .. } = self {
            *self = Sightings::Each(self.iter().collect());
        }
        match self {
            Sightings::Each(v) => v,
            // Replaced just above.
            Sightings::Listing { .. } => unreachable!("a listing was spelled out"),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Sightings::Each(v) => v.len(),
            Sightings::Listing { nets, .. } => nets.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`th sighting (in prefix order once [`Sightings::sort`] ran).
    pub fn get(&self, i: usize) -> Option<Sighting> {
        match self {
            Sightings::Each(v) => v.get(i).copied(),
            Sightings::Listing { nets, seen, ttl } => nets.get(i).map(|net| Sighting {
                net,
                seen: *seen,
                ttl: *ttl,
            }),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Sighting> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// When every sighting shares one instant (a listing), that instant.
    pub fn listed_at(&self) -> Option<i64> {
        match self {
            Sightings::Each(_) => None,
            Sightings::Listing { seen, .. } => Some(*seen),
        }
    }

    /// Put the sightings in prefix order (a listing is in order already).
    pub fn sort(&mut self) {
        match self {
            Sightings::Each(v) => {
                if !v.is_sorted_by(|a, b| net::cmp_net(&a.net, &b.net).is_le()) {
                    v.sort_unstable_by(|a, b| net::cmp_net(&a.net, &b.net));
                }
            }
            Sightings::Listing { nets, .. } => {
                if nets.unsorted {
                    std::sync::Arc::make_mut(nets).sort();
                }
            }
        }
    }

    /// Keep the sightings `keep` says yes to (a shared listing is copied first).
    pub fn retain(&mut self, mut keep: impl FnMut(&Sighting) -> bool) {
        match self {
            Sightings::Each(v) => v.retain(|s| keep(s)),
            Sightings::Listing { nets, seen, ttl } => {
                let (seen, ttl) = (*seen, *ttl);
                // One verdict per prefix, asked once; the shared listing is copied only when
                // something goes.
                let verdicts: Vec<bool> = nets
                    .iter()
                    .map(|net| keep(&Sighting { net, seen, ttl }))
                    .collect();
                if verdicts.iter().all(|&k| k) {
                    return;
                }
                let mut i = 0;
                std::sync::Arc::make_mut(nets).retain(|_| {
                    i += 1;
                    verdicts[i - 1]
                });
            }
        }
    }
}
