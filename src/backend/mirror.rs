//! The kernel mirror: what a kernel set held after the last successful apply, kept in the
//! state so that a run need not read 65,536 entries back from the kernel (`ipset save` plus
//! parsing) just to diff a handful of changes.
//!
//! A mirror is trusted only when all of these hold, and otherwise the set is read back in
//! full, as without a mirror:
//! - no change reached the kernel since the last commit of a mirror: a marker ([`CHANGING_FLAG`],
//!   a flag file beside the state) is raised before any apply and lowered only after the commit
//!   of the run's mirror, so a run killed in between leaves it raised. The marker need not
//!   survive a power loss: the kernel's sets do not either, and a missing set, or one whose
//!   header or count differs, is never trusted. (Older versions kept the marker in the state as
//!   [`DIRTY_KEY`], committed with four fsyncs before every apply; it is still honoured.)
//! - it describes the configured set, and the kernel's header matches the set sipban wants;
//! - the kernel's entry count equals the mirror's count of entries still alive;
//! - no mirrored entry is within [`EXPIRY_SLACK`] seconds of its expiry (the kernel's and our
//!   clocks may round differently at the boundary);
//! - it was verified (by a full read-back or a rebuild) less than [`MAX_AGE`] seconds ago.
//!
//! A count is not content: a hand edit that deletes one entry and adds another keeps it. So a
//! trusted mirror only spares the read-back when the plan against it is a rebuild (which makes
//! the set exact whatever it held). Any other plan is made against the set read back in full,
//! and the mirror is what that read is compared with ([`Mirror::drift`]): entries added or
//! removed outside sipban are reported, and the plan repairs them.
//!
//! Pure data: encoding, decoding, the trust rules and the comparison. It never talks to the
//! kernel itself.

use crate::model::Desired;
use ipnet::IpNet;

/// Re-verify the mirror against a full read-back at least this often (seconds).
pub const MAX_AGE: i64 = 3600;
/// Entries this close to their expiry make the mirror uncertain (seconds).
pub const EXPIRY_SLACK: i64 = 2;
/// The state flag raised while the kernel sets change outside a committed mirror.
pub const CHANGING_FLAG: &str = "kernel-changing";
/// The blob key of the marker older versions committed before an apply ("1") and cleared in
/// their final commit ("0"). Still read, and written "0" with each mirror.
pub const DIRTY_KEY: &str = "kernel.dirty";

/// The blob key of a set's mirror.
pub fn key(set: &str) -> String {
    format!("kernel.mirror.{set}")
}

/// Format 2: [`crate::pack`] after the version byte and `verified_at`. A mirror of another
/// version is not read (the set is read back once instead).
const VERSION: u8 = 2;

/// A decoded mirror.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    /// When the kernel set was last known exactly (full read-back or rebuild).
    pub verified_at: i64,
    /// Entry and the unix time its kernel timeout runs out.
    pub entries: Vec<(IpNet, i64)>,
}

impl Mirror {
    pub fn from_desired(desired: &[Desired], verified_at: i64) -> Mirror {
        Mirror {
            verified_at,
            entries: desired.iter().map(|d| (d.net, d.expires)).collect(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut header = [0u8; 9];
        header[0] = VERSION;
        header[1..].copy_from_slice(&self.verified_at.to_le_bytes());
        let mut w = crate::pack::Writer::with_header(&header, self.entries.len() * 4);
        let mut prev = 0;
        for (net, expires) in &self.entries {
            w.net(net);
            w.time(*expires, &mut prev);
        }
        w.finish()
    }

    /// `None` for anything malformed: the caller then reads the kernel back.
    pub fn decode(data: &[u8]) -> Option<Mirror> {
        let (&version, rest) = data.split_first()?;
        if version != VERSION {
            return None;
        }
        let verified_at = i64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
        let mut r = crate::pack::Reader::new(rest.get(8..)?);
        let mut entries = Vec::new();
        let mut prev = 0;
        while !r.is_done() {
            let net = r.net()?;
            entries.push((net.trunc(), r.time(&mut prev)?));
        }
        Some(Mirror {
            verified_at,
            entries,
        })
    }

    /// The mirror as current set members (seconds left), if it can be trusted for a kernel set
    /// that reports `kernel_count` entries at `now`.
    /// Members come in the mirror's order (the prefix order it was written in).
    /// `kernel_count` is `None` for a backend that cannot count a set without listing it
    /// (nft): the mirror is then trusted on its age and expiries alone, which is enough for
    /// what it is used for: sparing the read-back of a rebuild, which makes the set exact.
    pub fn members_if_trusted(
        &self,
        kernel_count: Option<usize>,
        now: i64,
    ) -> Option<Vec<(IpNet, u32)>> {
        if now.saturating_sub(self.verified_at) >= MAX_AGE || self.verified_at > now {
            return None;
        }
        let mut members = Vec::with_capacity(self.entries.len());
        for &(net, expires) in &self.entries {
            if (expires - now).abs() <= EXPIRY_SLACK {
                return None;
            }
            if expires > now {
                members.push((net, super::timeout_for(expires, now)));
            }
        }
        kernel_count
            .is_none_or(|n| members.len() == n)
            .then_some(members)
    }
}

impl Mirror {
    /// What `kernel` (prefix order, as [`super::plan::CurrentSet::members`] gives it) holds that
    /// the mirror does not expect at `now`, and what it lacks. Entries within [`EXPIRY_SLACK`]
    /// of their expiry count either way.
    pub fn drift(&self, kernel: &[(IpNet, u32)], now: i64) -> super::plan::Outside {
        use std::cmp::Ordering;
        // (prefix, expected present: Some(true) alive, Some(false) expired, None uncertain)
        let mut expected: Vec<(IpNet, Option<bool>)> = self
            .entries
            .iter()
            .map(|&(net, expires)| {
                let state = if (expires - now).abs() <= EXPIRY_SLACK {
                    None
                } else {
                    Some(expires > now)
                };
                (net, state)
            })
            .collect();
        if !expected.is_sorted_by(|a, b| crate::net::cmp_net(&a.0, &b.0).is_le()) {
            expected.sort_by(|a, b| crate::net::cmp_net(&a.0, &b.0));
        }
        let mut out = super::plan::Outside::default();
        let (mut i, mut j) = (0, 0);
        loop {
            let order = match (expected.get(i), kernel.get(j)) {
                (Some(e), Some(k)) => crate::net::cmp_net(&e.0, &k.0),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => break,
            };
            match order {
                Ordering::Less => {
                    out.removed += usize::from(expected[i].1 == Some(true));
                    i += 1;
                }
                Ordering::Greater => {
                    out.added += 1;
                    j += 1;
                }
                Ordering::Equal => {
                    out.added += usize::from(expected[i].1 == Some(false));
                    i += 1;
                    j += 1;
                }
            }
        }
        out
    }
}

/// Display helper for logs.
pub fn describe(m: &Mirror) -> String {
    format!(
        "{} entries verified at {}",
        m.entries.len(),
        crate::clock::fmt_time(m.verified_at)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net;

    fn n(s: &str) -> IpNet {
        net::parse_net(s).unwrap()
    }

    #[test]
    fn round_trip_and_trust_rules() {
        let m = Mirror {
            verified_at: 1000,
            entries: vec![
                (n("45.0.0.1"), 5000),
                (n("45.1.0.0/16"), 9000),
                (n("2001:db8::/48"), 7000),
            ],
        };
        let back = Mirror::decode(&m.encode()).unwrap();
        assert_eq!(back, m);
        // Trusted: fresh, counts agree.
        let members = m.members_if_trusted(Some(3), 1100).unwrap();
        assert!(members.contains(&(n("45.0.0.1"), 3900)));
        // The kernel holds another number of entries.
        assert!(m.members_if_trusted(Some(2), 1100).is_none());
        // Too old.
        assert!(m.members_if_trusted(Some(3), 1000 + MAX_AGE).is_none());
        // An entry at its expiry boundary.
        assert!(m.members_if_trusted(Some(3), 5001).is_none());
        // Expired entries are gone from the kernel too.
        let later = Mirror {
            verified_at: 5000,
            ..m.clone()
        };
        assert_eq!(later.members_if_trusted(Some(2), 6000).unwrap().len(), 2);
        // Garbage never decodes into a mirror.
        assert!(Mirror::decode(b"").is_none());
        assert!(Mirror::decode(&[1, 0, 0, 0, 0, 0, 0, 0, 0]).is_none());
        let mut cut = m.encode();
        cut.truncate(cut.len() - 3);
        assert!(Mirror::decode(&cut).is_none());
    }

    #[test]
    fn drift_counts_what_changed_outside() {
        use super::super::plan::Outside;
        let m = Mirror {
            verified_at: 1000,
            entries: vec![
                (n("45.0.0.1"), 5000),
                (n("45.0.0.2"), 5000),
                (n("45.0.0.3"), 1500),
                (n("45.0.0.4"), 2001),
            ],
        };
        let k = |v: &[&str]| {
            let mut v: Vec<(IpNet, u32)> = v.iter().map(|s| (n(s), 100)).collect();
            v.sort_by(|a, b| net::cmp_net(&a.0, &b.0));
            v
        };
        // As expected at 2000: .3 expired, .4 at its boundary either way.
        let same = k(&["45.0.0.1", "45.0.0.2"]);
        assert_eq!(m.drift(&same, 2000), Outside::default());
        assert_eq!(
            m.drift(&k(&["45.0.0.1", "45.0.0.2", "45.0.0.4"]), 2000),
            Outside::default()
        );
        // One gone, one stranger, one expired entry back: same count, three changes.
        let edited = k(&["45.0.0.1", "45.0.0.3", "45.0.0.9"]);
        assert_eq!(
            m.drift(&edited, 2000),
            Outside {
                added: 2,
                removed: 1
            }
        );
    }
}
