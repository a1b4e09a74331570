//! The kernel mirror: what a kernel set held after the last successful apply, kept in the
//! state so that a run need not read 65,536 entries back from the kernel (`ipset save` plus
//! parsing) just to diff a handful of changes.
//!
//! A mirror is trusted only when all of these hold, and otherwise the set is read back in
//! full, as without a mirror:
//! - the previous run finished its commit (a "dirty" marker is committed before any apply and
//!   cleared in the final commit, so a run killed in between leaves it set);
//! - it describes the configured set, and the kernel's header matches the set sipban wants;
//! - the kernel's entry count equals the mirror's count of entries still alive;
//! - no mirrored entry is within [`EXPIRY_SLACK`] seconds of its expiry (the kernel's and our
//!   clocks may round differently at the boundary);
//! - it was verified (by a full read-back or a rebuild) less than [`MAX_AGE`] seconds ago, so
//!   a manual change that kept the count equal is reconciled within the hour.
//!
//! Pure data: encoding, decoding and the trust rules. It never talks to the kernel itself.

use crate::model::Desired;
use ipnet::IpNet;

/// Re-verify the mirror against a full read-back at least this often (seconds).
pub const MAX_AGE: i64 = 3600;
/// Entries this close to their expiry make the mirror uncertain (seconds).
pub const EXPIRY_SLACK: i64 = 2;
/// The blob key of the marker that an apply is under way.
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
    pub fn members_if_trusted(&self, kernel_count: usize, now: i64) -> Option<Vec<(IpNet, u32)>> {
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
        (members.len() == kernel_count).then_some(members)
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
        let members = m.members_if_trusted(3, 1100).unwrap();
        assert!(members.contains(&(n("45.0.0.1"), 3900)));
        // The kernel holds another number of entries.
        assert!(m.members_if_trusted(2, 1100).is_none());
        // Too old.
        assert!(m.members_if_trusted(3, 1000 + MAX_AGE).is_none());
        // An entry at its expiry boundary.
        assert!(m.members_if_trusted(3, 5001).is_none());
        // Expired entries are gone from the kernel too.
        let later = Mirror {
            verified_at: 5000,
            ..m.clone()
        };
        assert_eq!(later.members_if_trusted(2, 6000).unwrap().len(), 2);
        // Garbage never decodes into a mirror.
        assert!(Mirror::decode(b"").is_none());
        assert!(Mirror::decode(&[1, 0, 0, 0, 0, 0, 0, 0, 0]).is_none());
        let mut cut = m.encode();
        cut.truncate(cut.len() - 3);
        assert!(Mirror::decode(&cut).is_none());
    }
}
