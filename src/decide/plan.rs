//! plan: the diff between the desired entries of one family and what its kernel set holds.
//!
//! A plan is either a small diff (adds, deletes and timeout refreshes in one batch) or a
//! rebuild (temporary set, fill, swap). It is also what `--dry-run`, metrics and the run
//! summary count. Pure: the current set contents are an argument, never read here.

use super::Desired;
use crate::net::{self, Family};
use ipnet::IpNet;
use serde::Serialize;

/// ipset's largest timeout (seconds).
pub const MAX_TIMEOUT: u32 = 2_147_483;

/// The largest diff applied in place; above it the set is rebuilt and swapped. It is also the
/// headroom between the cap and the kernel's maxelem, so adds-before-deletes never fill a set.
pub fn diff_limit(cap: u32) -> u32 {
    (cap / 8).max(1024)
}

/// maxelem of the kernel set for a cap (the cap itself is enforced by decide).
pub fn maxelem(cap: u32) -> u32 {
    cap.saturating_add(diff_limit(cap))
}

/// Initial hash size: a power of two near half the cap, within ipset's sensible range.
pub fn hashsize(cap: u32) -> u32 {
    (cap / 2).clamp(1024, 1 << 18).next_power_of_two()
}

/// The kernel timeout for a ban ending at `expires`.
pub fn timeout_for(expires: i64, now: i64) -> u32 {
    let left = expires.saturating_sub(now).clamp(1, i64::from(MAX_TIMEOUT));
    left as u32
}

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
    /// Prefix → seconds left (0 = no timeout).
    pub members: crate::net::NetMap<u32>,
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

/// Diff `desired` against `current`.
pub fn plan_family(
    family: Family,
    set: &str,
    cap: u32,
    desired: &[Desired],
    evicted: usize,
    current: &CurrentSet,
    now: i64,
) -> FamilyPlan {
    let mut adds = Vec::new();
    let mut refreshes = Vec::new();
    for d in desired {
        let want = timeout_for(d.expires, now);
        match current.members.get(&d.net) {
            None => adds.push((d.net, want)),
            Some(&have) if needs_refresh(have, want) => refreshes.push((d.net, want)),
            Some(_) => {}
        }
    }
    let wanted: crate::net::NetSet = desired.iter().map(|d| d.net).collect();
    let mut dels: Vec<IpNet> = current
        .members
        .keys()
        .filter(|n| !wanted.contains(*n))
        .copied()
        .collect();
    // Deletes are applied (and read) one by one only in a diff; a rebuild replaces everything.
    if dels.len() <= diff_limit(cap) as usize {
        dels.sort_unstable_by_key(net::sort_key);
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
        assert_eq!(maxelem(65_536), 73_728);
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
        let mut cur = CurrentSet {
            exists: true,
            compatible: true,
            members: crate::net::NetMap::default(),
        };
        cur.members.insert(n("192.0.2.2"), 3600);
        cur.members.insert(n("192.0.2.3"), 3600);
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
}
