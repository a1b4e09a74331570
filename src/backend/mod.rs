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
