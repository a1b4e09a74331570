//! The bounded offence counter both log detectors keep per source address, in a run and
//! between runs: the Asterisk detector's failure times within `findtime`, the kernel-log
//! detector's probe windows. Each detector owns what a value means and when it makes a ban;
//! this module owns how many are kept and which go when there is no room.
//!
//! **The bound is the cap, never the input.** An address new to a full counter first makes
//! room (a compaction), so the counter never holds more than its cap, during a run as at the
//! save; a log of a million spoofed sources costs the same memory as one of 65,536.
//!
//! **Sources close to a ban are kept.** A compaction drops the expired first (for free: they
//! count for nothing), then the entries with the least progress toward a ban (a detector's
//! [`Rank`]: failures within `findtime`, a probe window's weight), the oldest first among
//! equals, down to 7/8 of the cap. A source one failure short of a ban is evicted only when
//! 7/8 of the cap hold sources at least as far along and newer; one-shot failures from any
//! number of spoofed addresses evict only one-shots. (Stalest-first eviction, as before, let
//! an attacker at `maxretry - 1` reset its own count with a spray of one-shot failures.)
//!
//! Cost: a failure of a known address is one hash lookup, as in a plain map; a new address to
//! a full counter pays for a compaction (ranks in one pass, a linear-time selection) that
//! frees an eighth of the cap, so O(1) amortised per new address. Evictions are counted (the
//! detectors persist the total, `sipban status` and the metrics show it).
//!
//! This module must never decide a ban (the detectors do), never hold more than its cap after
//! an insertion, and never evict an entry while one of lower [`Rank`] is kept.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::net::IpAddr;

/// Addresses a detector remembers at most.
pub const CAP: usize = 65_536;

/// The eviction total kept in a detector state saved as JSON (a field `evictions`, 0 in a
/// state saved before it was kept); `None` for an unreadable blob.
pub fn evictions_in_json(blob: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct Peek {
        #[serde(default)]
        evictions: u64,
    }
    serde_json::from_slice::<Peek>(blob)
        .ok()
        .map(|p| p.evictions)
}

/// How close an entry is to a ban, for eviction: the lowest go first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    /// Progress toward a ban (failures within `findtime`, a window's scaled weight, ...); 0 is
    /// expired: such an entry counts for nothing and is dropped without counting an eviction.
    pub progress: u32,
    /// Unix time of its latest offence: among equal progress, the oldest go first.
    pub last: i64,
}

type Map<V> = HashMap<IpAddr, V, foldhash::quality::RandomState>;

/// Per-address offence state `V`, at most [`Offences::cap`] addresses. Serialised as a plain
/// map from address to `V` (the form the detectors' states always had), so a saved state reads
/// back as it was, and a state saved before this type existed loads unchanged.
#[derive(Clone, Debug)]
pub struct Offences<V> {
    map: Map<V>,
    cap: usize,
    /// Evictions since the last [`Offences::take_evicted`].
    evicted: u64,
}

impl<V> Default for Offences<V> {
    fn default() -> Self {
        Offences::with_cap(CAP)
    }
}

impl<V: PartialEq> PartialEq for Offences<V> {
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl<V> Offences<V> {
    /// An empty counter holding at most `cap` addresses (at least one).
    pub fn with_cap(cap: usize) -> Self {
        Offences {
            map: Map::default(),
            cap: cap.max(1),
            evicted: 0,
        }
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, ip: &IpAddr) -> Option<&V> {
        self.map.get(ip)
    }

    pub fn contains_key(&self, ip: &IpAddr) -> bool {
        self.map.contains_key(ip)
    }

    pub fn remove(&mut self, ip: &IpAddr) -> Option<V> {
        self.map.remove(ip)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&IpAddr, &V)> {
        self.map.iter()
    }

    /// Keep the entries `keep` says yes to (expiry: not counted as evictions).
    pub fn retain(&mut self, mut keep: impl FnMut(&IpAddr, &mut V) -> bool) {
        self.map.retain(|ip, v| keep(ip, v));
    }

    /// Evictions since the last call (the detectors add them to their persisted total).
    pub fn take_evicted(&mut self) -> u64 {
        std::mem::take(&mut self.evicted)
    }

    /// Where a compaction brings a full counter: 7/8 of the cap.
    fn low_water(&self) -> usize {
        self.cap - (self.cap / 8).max(1)
    }

    /// The entry of `ip`, created (default) if new; a new address to a full counter first
    /// makes room by [`Offences::shrink_to`] 7/8 of the cap, ranked by `rank`.
    pub fn entry(&mut self, ip: IpAddr, rank: impl Fn(&V) -> Rank) -> &mut V
    where
        V: Default,
    {
        if self.map.len() >= self.cap && !self.map.contains_key(&ip) {
            self.shrink_to(self.low_water(), &rank);
        }
        self.map.entry(ip).or_default()
    }

    /// Drop the expired (rank 0), then the lowest-ranked entries until at most `target`
    /// remain (`target` is raised to at most the cap). Ties at the cut go in no particular
    /// order: they are equally far from a ban and equally old. Returns the evictions.
    pub fn shrink_to(&mut self, target: usize, rank: &impl Fn(&V) -> Rank) -> u64 {
        let target = target.min(self.cap);
        if self.map.len() <= target {
            return 0;
        }
        self.map.retain(|_, v| rank(v).progress > 0);
        if self.map.len() <= target {
            return 0;
        }
        let drop = self.map.len() - target;
        let mut ranks: Vec<Rank> = self.map.values().map(rank).collect();
        let (lower, pivot, _) = ranks.select_nth_unstable(drop - 1);
        let pivot = *pivot;
        // Everything below the pivot goes, and as many entries equal to it as still needed.
        let mut ties = drop - lower.iter().filter(|r| **r < pivot).count();
        self.map.retain(|_, v| {
            let r = rank(v);
            if r < pivot {
                false
            } else if r == pivot && ties > 0 {
                ties -= 1;
                false
            } else {
                true
            }
        });
        self.evicted += drop as u64;
        drop as u64
    }
}

impl<V> std::ops::Index<&IpAddr> for Offences<V> {
    type Output = V;

    /// The entry of `ip`; panics when there is none (as a map's index does).
    fn index(&self, ip: &IpAddr) -> &V {
        &self.map[ip]
    }
}

impl<V> FromIterator<(IpAddr, V)> for Offences<V> {
    /// A counter with the default cap holding `iter` (as loaded: the next insertion or
    /// [`Offences::shrink_to`] brings an oversized one back under the cap).
    fn from_iter<I: IntoIterator<Item = (IpAddr, V)>>(iter: I) -> Self {
        Offences {
            map: iter.into_iter().collect(),
            ..Offences::default()
        }
    }
}

impl<V: Serialize> Serialize for Offences<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.map.serialize(s)
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Offences<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = Map::<V>::deserialize(d)?;
        Ok(Offences {
            map,
            ..Offences::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(i: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x2d00_0000 + i))
    }

    /// `(count, last)`: failures and the latest one's time.
    fn rank(v: &(u32, i64)) -> Rank {
        Rank {
            progress: v.0,
            last: v.1,
        }
    }

    fn hit(o: &mut Offences<(u32, i64)>, a: IpAddr, t: i64) {
        let v = o.entry(a, rank);
        v.0 += 1;
        v.1 = t;
    }

    #[test]
    fn never_over_the_cap_and_a_spray_of_one_shots_evicts_only_one_shots() {
        let mut o = Offences::with_cap(1000);
        let attacker = ip(999_999);
        for t in 0..4 {
            hit(&mut o, attacker, t);
        }
        // A few sources with two failures, older than the spray.
        for i in 0..100 {
            hit(&mut o, ip(500_000 + i), 5);
            hit(&mut o, ip(500_000 + i), 6);
        }
        for i in 0..100_000 {
            hit(&mut o, ip(i), 10 + i64::from(i));
            assert!(o.len() <= 1000, "{} entries after {i}", o.len());
        }
        assert_eq!(o.get(&attacker), Some(&(4, 3)));
        assert!((0..100).all(|i| o.get(&ip(500_000 + i)) == Some(&(2, 6))));
        let evicted = o.take_evicted();
        assert_eq!(evicted, 100_000 + 101 - o.len() as u64);
        assert_eq!(o.take_evicted(), 0);
        // The newest one-shots were kept, the oldest went.
        assert!(o.contains_key(&ip(99_999)) && !o.contains_key(&ip(0)));
    }

    #[test]
    fn expired_entries_go_first_and_are_not_evictions() {
        let mut o: Offences<(u32, i64)> = Offences::with_cap(16);
        for i in 0..16 {
            hit(&mut o, ip(i), i64::from(i));
        }
        // Rank 0 for everything older than 8: expired.
        let r = |v: &(u32, i64)| Rank {
            progress: if v.1 < 8 { 0 } else { v.0 },
            last: v.1,
        };
        assert_eq!(o.shrink_to(10, &r), 0);
        assert_eq!(o.len(), 8);
        assert_eq!(o.shrink_to(6, &r), 2);
        assert!(!o.contains_key(&ip(8)) && !o.contains_key(&ip(9)));
        assert!(o.contains_key(&ip(10)));
        assert_eq!(o.take_evicted(), 2);
    }

    #[test]
    fn ties_at_the_cut_drop_exactly_what_is_needed() {
        let mut o: Offences<(u32, i64)> = Offences::with_cap(100);
        for i in 0..100 {
            hit(&mut o, ip(i), 7);
        }
        assert_eq!(o.shrink_to(60, &rank), 40);
        assert_eq!(o.len(), 60);
    }

    #[test]
    fn serialises_as_the_plain_map_it_replaces() {
        let mut o: Offences<Vec<i64>> = Offences::default();
        o.entry(ip(1), |_| Rank {
            progress: 1,
            last: 0,
        })
        .push(5);
        let json = serde_json::to_string(&o).unwrap();
        assert_eq!(json, r#"{"45.0.0.1":[5]}"#);
        let old: HashMap<IpAddr, Vec<i64>> = serde_json::from_str(&json).unwrap();
        let back: Offences<Vec<i64>> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, o);
        assert_eq!(back.cap(), CAP);
        assert_eq!(old.get(&ip(1)), back.get(&ip(1)));
    }
}
