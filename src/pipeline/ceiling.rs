//! The ceiling on what all sources together may cover (`max_total_coverage`). Each feed has
//! its own guard (`max_coverage`, judged in `source::feed` as it downloads); this one stops
//! the sum, which no single feed's guard sees: many feeds each under their own ceiling, or one
//! feed allowed a wide ceiling, must still not ban a large part of the Internet together.
//!
//! Coverage is counted like the per-feed guard: IPv4 addresses, and IPv6 /64 networks (a
//! longer prefix counts as the /64 it lies in), overlaps once, only what the gate's address
//! space rules admit, before the allowlist. Each family has its own ceiling.
//!
//! This run's feed downloads (complete listings) are taken one at a time in source order,
//! each judged against what every other source holds at that point: its new listing if it was
//! taken already, else its entries from earlier runs (still within their TTL), with the
//! additive sources' sightings of this run (APIBAN, the log detectors, manual bans). A
//! download that takes the total over a ceiling, and grows it, is refused: its feed keeps its
//! last good entries, like after any failed download. A download that does not grow the total
//! is taken even when the total is already over (the ceiling was lowered), so the feeds keep
//! converging; the caller is told the total is over. Additive sources are never refused here.
//!
//! This module is pure: no I/O, no clock; it must never refuse a source that is not a
//! complete listing.

use super::decide::{Entry, Input, SourcePolicy};
use crate::config::TotalCoverage;
use crate::source::feed::{self, thousands, v4_share, Coverage};
use ipnet::IpNet;

/// A download refused by the ceiling: the source's index, and why (the coverage with it and
/// the ceiling).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub source: u16,
    pub reason: String,
}

/// What the ceiling decided for this run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub refused: Vec<Refused>,
    /// Set when the sources together are over the ceiling after the refusals (a lowered
    /// ceiling, or additive sources): nothing this run grew it, but the admin should know.
    pub over: Option<String>,
}

/// Judge this run's complete listings against the ceiling (see the module doc).
pub fn check(
    previous: &[Entry],
    inputs: &[Input],
    policies: &[SourcePolicy],
    ceiling: TotalCoverage,
    now: i64,
) -> Verdict {
    let n = policies.len();
    let admitted = |s: usize, net: &IpNet| policies[s].reject(net).is_none();
    let mut complete = vec![false; n];
    for i in inputs.iter().filter(|i| i.complete) {
        if let Some(c) = complete.get_mut(i.source as usize) {
            *c = true;
        }
    }
    // The common case, in one pass without sorting: the sizes of everything this run brings
    // added up (overlaps counted as often as they are listed) are within the ceiling.
    let mut bound = Coverage::default();
    for e in previous {
        let held = e.marks.iter().any(|m| {
            let s = m.source as usize;
            m.expires > now && s < n && !complete[s] && admitted(s, &e.net)
        });
        if held {
            add_size(&mut bound, &e.net);
        }
    }
    for input in inputs.iter().filter(|i| (i.source as usize) < n) {
        let s = input.source as usize;
        for x in input.sightings.iter().filter(|x| admitted(s, &x.net)) {
            add_size(&mut bound, &x.net);
        }
    }
    if over(&bound, ceiling).is_none() {
        return Verdict::default();
    }
    // What each source held before this run (plus an additive source's new sightings), and
    // what a complete source listed now.
    let mut old: Vec<Vec<IpNet>> = vec![Vec::new(); n];
    let mut new: Vec<Vec<IpNet>> = vec![Vec::new(); n];
    for e in previous {
        for m in e.marks.iter().filter(|m| m.expires > now) {
            let s = m.source as usize;
            if s < n && admitted(s, &e.net) {
                old[s].push(e.net);
            }
        }
    }
    for input in inputs {
        let s = input.source as usize;
        if s >= n {
            continue;
        }
        let to = if input.complete {
            &mut new[s]
        } else {
            &mut old[s]
        };
        to.extend(
            input
                .sightings
                .iter()
                .map(|x| x.net)
                .filter(|net| admitted(s, net)),
        );
    }

    // Overlaps merged: everything this run brought may still fit together.
    let all = cover((0..n).map(|s| if complete[s] { &new[s] } else { &old[s] }));
    if over(&all, ceiling).is_none() {
        return Verdict::default();
    }
    let mut verdict = Verdict::default();
    let mut taken = vec![false; n];
    for s in (0..n).filter(|&s| complete[s]) {
        let held = |t: usize| if taken[t] { &new[t] } else { &old[t] };
        let others = (0..n).filter(|&t| t != s).map(held);
        let with = cover(others.clone().chain([&new[s]]));
        let without = cover(others.chain([&old[s]]));
        match grows_over(&with, &without, ceiling) {
            Some(reason) => verdict.refused.push(Refused {
                source: s as u16,
                reason,
            }),
            None => taken[s] = true,
        }
    }
    let total = cover((0..n).map(|s| if taken[s] { &new[s] } else { &old[s] }));
    verdict.over = over(&total, ceiling);
    verdict
}

/// Add the size of `net` (IPv4 addresses, IPv6 /64s) to `c`, overlaps not merged.
fn add_size(c: &mut Coverage, net: &IpNet) {
    match net {
        IpNet::V4(p) => c.v4 = c.v4.saturating_add(1u64 << (32 - p.prefix_len())),
        IpNet::V6(p) => c.v6 = c.v6.saturating_add(1u128 << (64 - p.prefix_len().min(64))),
    }
}

/// The coverage of the union of some sources' prefixes.
fn cover<'a>(lists: impl Iterator<Item = &'a Vec<IpNet>>) -> Coverage {
    let all: crate::model::Nets = lists.flatten().copied().collect();
    feed::coverage(&all, &|_| true)
}

/// Why `c` is over the ceiling, if it is.
fn over(c: &Coverage, ceiling: TotalCoverage) -> Option<String> {
    if c.v4 > ceiling.v4 {
        return Some(format!(
            "all sources together cover {} IPv4 addresses ({}% of IPv4), over max_total_coverage {}",
            thousands(u128::from(c.v4)),
            v4_share(c.v4),
            thousands(u128::from(ceiling.v4))
        ));
    }
    if c.v6 > u128::from(ceiling.v6) {
        return Some(format!(
            "all sources together cover {} IPv6 /64s, over max_total_coverage {} /64s",
            thousands(c.v6),
            thousands(u128::from(ceiling.v6))
        ));
    }
    None
}

/// Why a download is refused: with it, a family is over its ceiling and larger than without.
fn grows_over(with: &Coverage, without: &Coverage, ceiling: TotalCoverage) -> Option<String> {
    if with.v4 > ceiling.v4 && with.v4 > without.v4 {
        return Some(format!(
            "total coverage guard: with this download all sources together would cover {} IPv4 addresses ({}% of IPv4), over max_total_coverage {}",
            thousands(u128::from(with.v4)),
            v4_share(with.v4),
            thousands(u128::from(ceiling.v4))
        ));
    }
    if with.v6 > u128::from(ceiling.v6) && with.v6 > without.v6 {
        return Some(format!(
            "total coverage guard: with this download all sources together would cover {} IPv6 /64s, over max_total_coverage {} /64s",
            thousands(with.v6),
            thousands(u128::from(ceiling.v6))
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Mark, Sighting};
    use crate::net::parse_net;

    fn policy(name: &str) -> SourcePolicy {
        SourcePolicy {
            name: name.into(),
            priority: 50,
            min_prefix_v4: 8,
            min_prefix_v6: 16,
            allow_private: false,
            ban_on_link: false,
            max_ttl: u32::MAX,
        }
    }

    fn input(source: u16, complete: bool, nets: &[&str]) -> Input {
        Input {
            source,
            complete,
            sightings: nets
                .iter()
                .map(|t| Sighting {
                    net: parse_net(t).unwrap(),
                    seen: 100,
                    ttl: 1000,
                })
                .collect(),
        }
    }

    fn entry(net: &str, source: u16, expires: i64) -> Entry {
        Entry {
            net: parse_net(net).unwrap(),
            marks: smallvec::smallvec![Mark {
                source,
                first_seen: 0,
                last_seen: 0,
                expires,
            }],
        }
    }

    const CEILING: TotalCoverage = TotalCoverage {
        v4: 100_000,
        v6: 1 << 20,
    };

    #[test]
    fn the_download_that_grows_the_total_over_the_ceiling_is_refused() {
        let policies = [policy("a"), policy("b"), policy("apiban")];
        let previous = [entry("45.0.0.0/16", 0, 500), entry("46.0.0.0/24", 1, 500)];
        // Under the ceiling together: nothing refused, and no work beyond one count.
        let fits = [
            input(0, true, &["45.0.0.0/16", "47.0.0.1"]),
            input(1, true, &["46.0.0.0/20"]),
        ];
        assert_eq!(
            check(&previous, &fits, &policies, CEILING, 100),
            Verdict::default()
        );
        // b's download takes the total to 131,073: b is refused, a is taken.
        let inputs = [
            input(0, true, &["45.0.0.0/16", "47.0.0.1"]),
            input(1, true, &["46.0.0.0/16"]),
            input(2, false, &["48.0.0.1"]),
        ];
        let v = check(&previous, &inputs, &policies, CEILING, 100);
        assert_eq!(v.refused.len(), 1, "{v:?}");
        assert_eq!(v.refused[0].source, 1);
        assert!(
            v.refused[0].reason.contains(
                "131,074 IPv4 addresses (0.003% of IPv4), over max_total_coverage 100,000"
            ),
            "{v:?}"
        );
        assert_eq!(v.over, None);
        // Expired entries do not count: with a's entries run out, b's download fits.
        let expired = [entry("45.0.0.0/16", 0, 100), entry("46.0.0.0/24", 1, 500)];
        let v = check(&expired, &inputs[1..], &policies, CEILING, 100);
        assert_eq!(v, Verdict::default());
    }

    #[test]
    fn a_total_already_over_the_ceiling_takes_downloads_that_do_not_grow_it() {
        let policies = [policy("a"), policy("b")];
        // The ceiling was lowered below what the sources held.
        let previous = [entry("45.0.0.0/16", 0, 500), entry("46.0.0.0/16", 1, 500)];
        let inputs = [
            input(0, true, &["45.0.0.0/16"]),
            input(1, true, &["46.0.0.0/16", "46.0.0.0/17"]),
        ];
        let v = check(&previous, &inputs, &policies, CEILING, 100);
        assert!(v.refused.is_empty(), "{v:?}");
        assert!(
            v.over
                .as_deref()
                .is_some_and(|o| o.contains("cover 131,072 IPv4")),
            "{v:?}"
        );
        // Growing it further is refused.
        let inputs = [input(0, true, &["45.0.0.0/15"])];
        let v = check(&previous, &inputs, &policies, CEILING, 100);
        assert_eq!(v.refused.iter().map(|r| r.source).collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn each_family_has_its_own_ceiling_and_refused_space_does_not_count() {
        let policies = [policy("a")];
        // 2^20 /64s is a /44; a /43 is over, a /44 is not.
        let v = check(
            &[],
            &[input(0, true, &["2001:db8::/43"])],
            &policies,
            CEILING,
            0,
        );
        assert!(
            v.refused[0]
                .reason
                .contains("2,097,152 IPv6 /64s, over max_total_coverage 1,048,576 /64s"),
            "{v:?}"
        );
        let v = check(
            &[],
            &[input(0, true, &["2001:db8::/44"])],
            &policies,
            CEILING,
            0,
        );
        assert!(v.refused.is_empty(), "{v:?}");
        // Private space the gate refuses from this source does not count.
        let v = check(
            &[],
            &[input(0, true, &["10.0.0.0/8"])],
            &policies,
            CEILING,
            0,
        );
        assert!(v.refused.is_empty(), "{v:?}");
    }

    #[test]
    fn the_default_ceiling_takes_the_catalogue_together_and_refuses_all_of_ipv4() {
        use crate::config::{
            load_str, DEFAULT_MAX_TOTAL_COVERAGE_V4, DEFAULT_MAX_TOTAL_COVERAGE_V6,
        };
        // Every catalogue feed at its own ceiling at once, with no overlap, still fits.
        let all = crate::config::catalogue::names()
            .iter()
            .map(|n| format!("  - use: {n}\n"))
            .collect::<String>();
        let s = load_str(&format!("feeds:\n{all}"), std::path::Path::new("/x.yaml")).unwrap();
        let v4: u64 = s.feeds.iter().map(|f| f.max_coverage_v4).sum();
        let v6: u64 = s.feeds.iter().map(|f| f.max_coverage_v6).sum();
        assert!(v4 <= DEFAULT_MAX_TOTAL_COVERAGE_V4, "{v4}");
        assert!(v6 <= DEFAULT_MAX_TOTAL_COVERAGE_V6, "{v6}");
        assert_eq!(s.max_total_coverage.v4, DEFAULT_MAX_TOTAL_COVERAGE_V4);
        // All public IPv4 /8s from one feed are refused.
        let every_8: Vec<String> = (1..=223u32)
            .map(|o| format!("{}/8", std::net::Ipv4Addr::from(o << 24)))
            .collect();
        let nets: Vec<&str> = every_8.iter().map(String::as_str).collect();
        let v = check(
            &[],
            &[input(0, true, &nets)],
            &[policy("wide")],
            s.max_total_coverage,
            0,
        );
        assert_eq!(v.refused.len(), 1, "{v:?}");
    }
}
