//! plan: the diff between the desired entries of one family and what its kernel set holds.
//!
//! A plan is either a small diff (adds, deletes and timeout refreshes in one batch) or a
//! rebuild (temporary set, fill, swap). It is also what `--dry-run`, metrics and the run
//! summary count. Pure: the current set contents are an argument, never read here.

use crate::model::Desired;
use crate::net::{self, Family};
use ipnet::IpNet;
use serde::Serialize;

pub use super::{diff_limit, hashsize, maxelem, timeout_for, MAX_TIMEOUT};

/// Whether a kernel entry with `have` seconds left (0 = no timeout) should be re-added with
/// `want`. Timeouts are refreshed only once they have drifted by a quarter (at least a minute),
/// so a feed that lists the same addresses every hour does not rewrite the whole set each run.
pub fn needs_refresh(have: u32, want: u32) -> bool {
    if have == 0 {
        return true;
    }
    let slack = (want / 4).max(60);
    have < want.saturating_sub(slack) || have > want.saturating_add(60)
}

/// What the kernel set holds now (or what the saved state says it should hold).
#[derive(Clone, Debug, Default)]
pub struct CurrentSet {
    pub exists: bool,
    /// Type, family, timeout support and maxelem all fit the configured set.
    pub compatible: bool,
    /// Prefix and seconds left (0 = no timeout), in [`net::sort_key`] order, each prefix once:
    /// the plan merge-joins it with the (equally ordered) desired entries, so a diff needs no
    /// hash map over 65,536 members.
    members: Vec<(IpNet, u32)>,
}

impl CurrentSet {
    /// A set holding `members`, in any order (sorted here; a repeated prefix keeps its first
    /// timeout).
    pub fn new(
        exists: bool,
        compatible: bool,
        members: impl IntoIterator<Item = (IpNet, u32)>,
    ) -> CurrentSet {
        let mut members: Vec<(IpNet, u32)> = members.into_iter().collect();
        if !members.is_sorted_by(|(a, _), (b, _)| net::cmp_net(a, b).is_le()) {
            members.sort_by(|(a, _), (b, _)| net::cmp_net(a, b));
        }
        members.dedup_by_key(|(n, _)| *n);
        CurrentSet {
            exists,
            compatible,
            members,
        }
    }

    /// The members in prefix order.
    pub fn members(&self) -> &[(IpNet, u32)] {
        &self.members
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct FamilyPlan {
    pub family: Family,
    pub set: String,
    pub cap: u32,
    /// Entries before and after.
    pub before: usize,
    pub after: usize,
    #[serde(serialize_with = "ser_pairs")]
    pub adds: Vec<(IpNet, u32)>,
    #[serde(serialize_with = "ser_nets")]
    pub dels: Vec<IpNet>,
    #[serde(serialize_with = "ser_pairs")]
    pub refreshes: Vec<(IpNet, u32)>,
    /// Candidates that did not fit under the cap.
    pub evicted: usize,
    /// Why the set is rebuilt (temporary set + swap) instead of diffed, if it is.
    pub rebuild: Option<String>,
    /// What the set held that the last complete run had not left there, or lacked that it had
    /// (someone changed it by hand, or another tool did): this plan repairs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outside: Option<Outside>,
}

/// Entries changed in a kernel set outside sipban since the last complete run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Outside {
    pub added: usize,
    pub removed: usize,
}

impl Outside {
    pub fn any(&self) -> bool {
        self.added + self.removed > 0
    }
}

impl FamilyPlan {
    pub fn is_noop(&self) -> bool {
        self.rebuild.is_none()
            && self.adds.is_empty()
            && self.dels.is_empty()
            && self.refreshes.is_empty()
    }
}

fn ser_pairs<S: serde::Serializer>(v: &[(IpNet, u32)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(v.len()))?;
    for (n, t) in v {
        seq.serialize_element(&(net::display_net(n), t))?;
    }
    seq.end()
}

fn ser_nets<S: serde::Serializer>(v: &[IpNet], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(net::display_net))
}

/// Diff `desired` against `current`: one merge pass over both, in prefix order. `desired` is
/// in [`net::sort_key`] order as decide produces it (it is sorted here if not).
pub fn plan_family(
    family: Family,
    set: &str,
    cap: u32,
    desired: &[Desired],
    evicted: usize,
    current: &CurrentSet,
    now: i64,
) -> FamilyPlan {
    use std::cmp::Ordering;
    let sorted_copy;
    let desired = if desired.is_sorted_by(|a, b| net::cmp_net(&a.net, &b.net).is_le()) {
        desired
    } else {
        let mut v = desired.to_vec();
        v.sort_by_key(|d| net::sort_key(&d.net));
        sorted_copy = v;
        &sorted_copy[..]
    };
    let mut adds = Vec::new();
    let mut refreshes = Vec::new();
    let mut dels = Vec::new();
    let have = current.members();
    let (mut i, mut j) = (0, 0);
    loop {
        let order = match (desired.get(i), have.get(j)) {
            (Some(d), Some((c, _))) => net::cmp_net(&d.net, c),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => break,
        };
        match order {
            Ordering::Less => {
                let d = &desired[i];
                adds.push((d.net, timeout_for(d.expires, now)));
                i += 1;
            }
            Ordering::Greater => {
                dels.push(have[j].0);
                j += 1;
            }
            Ordering::Equal => {
                let d = &desired[i];
                let want = timeout_for(d.expires, now);
                if needs_refresh(have[j].1, want) {
                    refreshes.push((d.net, want));
                }
                i += 1;
                j += 1;
            }
        }
    }
    let changes = adds.len() + dels.len() + refreshes.len();
    let rebuild = if !current.exists {
        Some("the set does not exist yet".to_string())
    } else if !current.compatible {
        Some("the set has another type, family or size".to_string())
    } else if changes > diff_limit(cap) as usize {
        Some(format!(
            "{changes} changes, more than the in-place limit of {}",
            diff_limit(cap)
        ))
    } else {
        None
    };
    FamilyPlan {
        family,
        set: set.to_string(),
        cap,
        before: current.members.len(),
        after: desired.len(),
        adds,
        dels,
        refreshes,
        evicted,
        rebuild,
        outside: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        net::parse_net(s).unwrap()
    }

    #[test]
    fn limits() {
        assert_eq!(diff_limit(65_536), 8192);
        assert_eq!(diff_limit(1000), 1024);
        assert_eq!(maxelem(65_536), 65_536);
        assert_eq!(hashsize(65_536), 32_768);
        assert_eq!(hashsize(10), 1024);
        assert_eq!(timeout_for(100, 200), 1);
        assert_eq!(timeout_for(i64::MAX, 0), MAX_TIMEOUT);
    }

    #[test]
    fn refresh_only_after_drift() {
        assert!(!needs_refresh(604_800, 604_800));
        assert!(!needs_refresh(500_000, 604_800));
        assert!(needs_refresh(400_000, 604_800));
        assert!(needs_refresh(0, 604_800));
        assert!(needs_refresh(7200, 3600));
    }

    #[test]
    fn diff_and_rebuild_reasons() {
        let now = 1000;
        let desired = vec![
            Desired {
                net: n("192.0.2.1"),
                expires: now + 3600,
            },
            Desired {
                net: n("192.0.2.2"),
                expires: now + 3600,
            },
        ];
        let mut cur = CurrentSet::new(true, true, [(n("192.0.2.3"), 3600), (n("192.0.2.2"), 3600)]);
        let p = plan_family(Family::V4, "s", 10, &desired, 0, &cur, now);
        assert_eq!(p.adds, vec![(n("192.0.2.1"), 3600)]);
        assert_eq!(p.dels, vec![n("192.0.2.3")]);
        assert!(p.refreshes.is_empty() && p.rebuild.is_none());
        let p = plan_family(
            Family::V4,
            "s",
            10,
            &desired,
            0,
            &CurrentSet::default(),
            now,
        );
        assert!(p.rebuild.is_some());
        cur.compatible = false;
        assert!(plan_family(Family::V4, "s", 10, &desired, 0, &cur, now)
            .rebuild
            .is_some());
    }

    proptest::proptest! {
        /// The merge-join plan equals a hash-map model of the diff, whatever the order of its
        /// inputs: every desired prefix not held is added, every held prefix not desired is
        /// deleted, and a held one is refreshed exactly when its timeout drifted.
        #[test]
        fn merge_equals_model(
            want in proptest::collection::vec((0u32..300, 24u8..=32, 0i64..10_000), 0..120),
            have in proptest::collection::vec((0u32..300, 24u8..=32, 0u32..10_000), 0..120),
        ) {
            use std::collections::{HashMap, HashSet};
            let net = |a: u32, l: u8| {
                IpNet::V4(ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(0x2D00_0000 + a), l).unwrap()).trunc()
            };
            let now = 100;
            let mut seen = HashSet::new();
            let desired: Vec<Desired> = want
                .iter()
                .map(|&(a, l, e)| Desired { net: net(a, l), expires: now + e })
                .filter(|d| seen.insert(d.net))
                .collect();
            let members: Vec<(IpNet, u32)> = have.iter().map(|&(a, l, t)| (net(a, l), t)).collect();
            let current = CurrentSet::new(true, true, members.clone());
            let p = plan_family(Family::V4, "s", 1 << 20, &desired, 0, &current, now);
            // The model: first timeout per prefix wins, as in CurrentSet::new.
            let mut held: HashMap<IpNet, u32> = HashMap::new();
            for (n, t) in members {
                held.entry(n).or_insert(t);
            }
            let wanted: HashSet<IpNet> = desired.iter().map(|d| d.net).collect();
            let mut adds: Vec<(IpNet, u32)> = desired
                .iter()
                .filter(|d| !held.contains_key(&d.net))
                .map(|d| (d.net, timeout_for(d.expires, now)))
                .collect();
            let mut refreshes: Vec<(IpNet, u32)> = desired
                .iter()
                .filter(|d| held.get(&d.net).is_some_and(|&h| needs_refresh(h, timeout_for(d.expires, now))))
                .map(|d| (d.net, timeout_for(d.expires, now)))
                .collect();
            let mut dels: Vec<IpNet> = held.keys().filter(|n| !wanted.contains(n)).copied().collect();
            adds.sort_by_key(|(n, _)| net::sort_key(n));
            refreshes.sort_by_key(|(n, _)| net::sort_key(n));
            dels.sort_by_key(net::sort_key);
            proptest::prop_assert_eq!(p.adds, adds);
            proptest::prop_assert_eq!(p.refreshes, refreshes);
            proptest::prop_assert_eq!(p.dels, dels);
            proptest::prop_assert_eq!(p.before, held.len());
        }
    }
}

/// Make `desired` (in [`net::cmp_net`] order) disjoint for a backend whose sets refuse
/// overlapping members (nftables interval sets): an entry inside another, larger one is
/// dropped, and the covering prefix keeps its own expiry (the covered entry stays in the saved
/// state, so once the covering prefix leaves the set the next run adds it back). Returns how
/// many entries it dropped.
pub fn make_disjoint(desired: &mut Vec<Desired>) -> usize {
    let before = desired.len();
    let mut kept: Option<IpNet> = None;
    desired.retain(|d| {
        if let Some(k) = kept {
            // Sorted by address then length: a covering prefix comes before what it covers,
            // and among disjoint kept prefixes only the last one can cover `d`.
            if net::overlaps(&k, &d.net) && k.prefix_len() <= d.net.prefix_len() {
                return false;
            }
        }
        kept = Some(d.net);
        true
    });
    before - desired.len()
}

#[cfg(test)]
mod disjoint_tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str, expires: i64) -> Desired {
        Desired {
            net: net::parse_net(s).unwrap(),
            expires,
        }
    }

    #[test]
    fn covered_entries_are_dropped_and_the_cover_keeps_its_expiry() {
        let mut v = vec![
            d("45.0.0.0/16", 10),
            d("45.0.1.0/24", 20),
            d("45.0.1.7", 30),
            d("45.1.0.1", 40),
            d("45.1.0.2", 50),
        ];
        assert_eq!(make_disjoint(&mut v), 2);
        let nets: Vec<String> = v.iter().map(|x| net::display_net(&x.net)).collect();
        assert_eq!(nets, ["45.0.0.0/16", "45.1.0.1", "45.1.0.2"]);
        assert_eq!(v[0].expires, 10);
    }

    proptest! {
        /// Whatever the (sorted, distinct) input, the output is pairwise disjoint, a subset
        /// of the input, and covers every input address.
        #[test]
        fn output_is_disjoint_and_covers_the_input(
            raw in proptest::collection::vec((0u32..64, 26u8..=32), 0..60)
        ) {
            let mut v: Vec<Desired> = raw
                .iter()
                .map(|&(a, len)| {
                    let n = ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(0x2d00_0000 + a), len)
                        .unwrap()
                        .trunc();
                    Desired { net: IpNet::V4(n), expires: 1 }
                })
                .collect();
            v.sort_by(|a, b| net::cmp_net(&a.net, &b.net));
            v.dedup_by_key(|x| x.net);
            let input = v.clone();
            make_disjoint(&mut v);
            for (i, a) in v.iter().enumerate() {
                for b in &v[i + 1..] {
                    prop_assert!(!net::overlaps(&a.net, &b.net), "{} overlaps {}", a.net, b.net);
                }
                prop_assert!(input.iter().any(|x| x.net == a.net));
            }
            for x in &input {
                prop_assert!(v.iter().any(|k| k.net.contains(&x.net)), "{} is lost", x.net);
            }
        }
    }
}
