//! The pipeline: gather → gate → decide → plan → apply → persist, assembled once.
//!
//! Every entry point that can change a kernel set goes through here: `sync` ([`sync`]), the
//! daemon's real-time pass ([`fast`]), `ban`/`unban` ([`manual`]) and `restore`
//! ([`restore`]); the read-only views (`list`, `explain`, `status`) ask it the same questions
//! through the same [`gate`] and [`decide`], so "why is this address (not) blocked?" has one
//! answer.
//!
//! - [`gate`]: the one admission gate (allowlist, own addresses, address space, prefix guards),
//!   with a verdict and a reason in one wording.
//! - [`decide`]: the pure decision (provenance, TTLs, priorities, cap) and the plan.



//! - [`sync`], [`fast`], [`manual`], [`restore`]: the entry points.
//!
//! This module must never let an address reach a set without the gate's verdict, never hold
//! the apply lock across network I/O, and never write the kernel and the state in an order
//! that a crash could leave claiming more than the kernel holds.

pub mod decide;
pub mod fast;
pub mod gate;
pub mod manual;
pub mod restore;
pub mod sync;
