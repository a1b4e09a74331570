//! `sipban ban` and `sipban unban`: hand the request to the manual queue and say what became
//! of it.
//!
//! This module must never write the sets or the state itself: `manual::submit` does.

use super::{show, Error, Kind, Result};
use crate::config::{Dur, Settings};
use crate::pipeline::manual::{self, Outcome, Request};

/// `sipban ban IP [--ttl D] [--json]`.
pub fn ban(settings: &Settings, ip: &str, ttl: Option<&str>, json: bool, now: i64) -> Result {
    let net = manual::parse_target(ip).map_err(Error::usage)?;
    let ttl = match ttl.map(Dur::parse) {
        None => manual::DEFAULT_TTL,
        Some(Ok(d)) if d.0 > 0 && d.0 <= u64::from(u32::MAX) => d.0 as u32,
        Some(Ok(_)) => return Err(Error::usage("--ttl must be between 1s and 136 years")),
        Some(Err(e)) => return Err(Error::usage(format_args!("--ttl: {e}"))),
    };
    submit(settings, &Request::Ban { net, ttl, at: now }, now, json)
}

/// `sipban unban IP [--allow] [--json]`.
pub fn unban(settings: &Settings, ip: &str, allow: bool, json: bool, now: i64) -> Result {
    let net = manual::parse_target(ip).map_err(Error::usage)?;
    submit(
        settings,
        &Request::Unban {
            net,
            allow,
            at: now,
        },
        now,
        json,
    )
}

/// Submit the request and say what became of it: refused by the gate, exit 2 (nothing was
/// saved); queued behind another writer's apply step, exit 4.
fn submit(settings: &Settings, req: &Request, now: i64, json: bool) -> Result {
    let kernel = crate::backend::Kernel::open(settings)
        .map_err(|e| Error::new(Kind::Failed, format!("sipban: {e:#}")))?;
    let o = manual::submit(settings, req, kernel.as_backend(), now)
        .map_err(|e| super::state_error(&e, &settings.state_dir))?;
    show(&o, json);
    match o {
        Outcome::Queued { .. } => Err(Error::reported(Kind::Locked)),
        Outcome::Refused { .. } => Err(Error::reported(Kind::Usage)),
        Outcome::Applied(_) => Ok(()),
    }
}
