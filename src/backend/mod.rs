//! The kernel firewall: the only part of sipban that changes what the kernel blocks.
//!
//! [`ipset`] keeps the kernel sets (one per address family) equal to the blocklist that the
//! decide step produced: small diffs as one batch of adds and deletes, full rebuilds as one
//! batch that fills a temporary set and swaps it in, so the live set is never empty or partial.
//!
//! [`rules`] installs, removes and reports the DROP rules that make the kernel use the sets;
//! [`conntrack`] forgets the tracked flows of newly banned sources.
//! [`logrule`] installs sipban's rate-limited `LOG` rule for probes on the port catalogue's
//! ports (it only logs; the kernel-log detector reads what it writes).
//!
//! Nothing here decides *what* to block: callers pass canonical, already-filtered prefixes and
//! enforce the cap. Nothing here may touch a set or rule that sipban's configuration does not
//! name, and nothing here may pass text that was not parsed as an address to a kernel tool.

pub mod conntrack;
pub mod ipset;
pub mod logrule;
pub mod mirror;
pub mod rules;

use crate::config::Settings;
use crate::net::Family;
pub use ipset::SetSpec;

/// ipset's largest timeout (seconds).
pub const MAX_TIMEOUT: u32 = 2_147_483;

/// The largest diff applied in place; above it the set is rebuilt and swapped. It is also the
/// headroom between the cap and the kernel's maxelem, so adds-before-deletes never fill a set.
pub fn diff_limit(cap: u32) -> u32 {
    (cap / 8).max(1024)
}

/// maxelem of the kernel set for a cap (the cap itself is enforced before the kernel sees a batch).
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

/// The kernel set sipban wants for a family, from the config.
pub fn set_spec(settings: &Settings, family: Family) -> SetSpec {
    let s = settings.sets.get(family);
    SetSpec {
        name: s.name.clone(),
        family,
        maxelem: maxelem(s.cap),
        hashsize: hashsize(s.cap),
    }
}
