//! `sipban firewall ...`: the DROP rules that use the sets, and the LOG rule the kernel-log
//! detector reads.
//!
//! This module must never build a rule itself: `firewall::rules` and `firewall::logrule` do;
//! it chooses the options and reports the result.

use super::{out, print_json, Error, Kind, Result};
use crate::backend::ipset::Ipset;
use crate::backend::rules::{self, Backend};
use crate::config::Settings;
use crate::outln;
use crate::source::kernlog::KernelLogSettings;

/// `sipban firewall install|remove`'s options.
pub struct RuleArgs {
    pub backend: Backend,
    pub raw: bool,
    pub dry_run: bool,
    pub json: bool,
}

/// `sipban firewall install` (`install: true`) or `remove`.
pub fn install_or_remove(settings: &Settings, install: bool, a: &RuleArgs) -> Result {
    let opts = rules::Options {
        backend: a.backend,
        raw: a.raw,
        dry_run: a.dry_run,
    };
    let r = if install {
        rules::install(settings, &Ipset::new(), opts)
    } else {
        rules::remove(settings, opts)
    };
    let c = r.map_err(|e| Error::new(Kind::Failed, format!("sipban firewall: {e:#}")))?;
    report(serde_json::to_value(&c), c.to_string(), true, a.json)
}

/// `sipban firewall status`.
pub fn status(settings: &Settings, backend: Option<Backend>, json: bool) -> Result {
    let s = rules::status(settings, &Ipset::new(), backend)
        .map_err(|e| Error::new(Kind::Failed, format!("sipban firewall: {e:#}")))?;
    report(serde_json::to_value(&s), s.to_string(), s.protected(), json)
}

/// `sipban firewall check [--repair]`: the recorded rules are in place (or were put back).
pub fn check(settings: &Settings, repair: bool, json: bool, now: i64) -> Result {
    let c = rules::check(settings, &Ipset::new(), repair, now)
        .map_err(|e| Error::new(Kind::Failed, format!("sipban firewall check: {e:#}")))?;
    let Some(c) = c else {
        let text = "firewall install has not been run: no recorded rule to check\n";
        return report(Ok(serde_json::Value::Null), text.to_string(), true, json);
    };
    if let Some(w) = c.warning() {
        tracing::warn!("{w}");
    }
    // With nft, the `flush ruleset` that removed the chain removed the sets too: the repair
    // recreated them empty, so fill them from the saved state (what `sipban restore` does).
    if c.reinstalled && nft_recorded(settings) {
        let kernel = crate::backend::Kernel::open(settings)
            .map_err(|e| Error::new(Kind::Failed, format!("sipban firewall check: {e:#}")))?;
        let r = crate::pipeline::restore::restore(settings, &kernel, now).map_err(|e| {
            Error::new(
                Kind::Failed,
                format!("sipban firewall check: refilling the sets: {e}"),
            )
        })?;
        for e in &r.errors {
            eprintln!("sipban firewall check: {e}");
        }
    }
    let ok = c.missing.is_empty() || c.reinstalled;
    report(serde_json::to_value(&c), c.to_string(), ok, json)
}

/// Print a result; exit 1 when it says the host is not `ok` (not protected).
fn report(
    value: serde_json::Result<serde_json::Value>,
    text: String,
    ok: bool,
    json: bool,
) -> Result {
    if json {
        match value {
            Ok(v) => print_json(&v)?,
            Err(e) => return Err(Error::failed(format_args!("cannot encode JSON: {e}"))),
        }
    } else {
        out(&text);
    }
    if ok {
        Ok(())
    } else {
        Err(Error::reported(Kind::Failed))
    }
}

/// `sipban firewall log-rule [--backend B] [--apply]`, for the ports of `ks` (`from` says
/// where those settings came from).
pub fn log_rule(backend: Option<&str>, apply: bool, ks: &KernelLogSettings, from: &str) -> Result {
    use crate::backend::logrule::{Backend, LogRule};
    let fail = |e: &dyn std::fmt::Display| format!("sipban firewall log-rule: {e}");
    let backend = match backend.map(str::parse::<Backend>) {
        None => Backend::detect(),
        Some(Ok(b)) => b,
        Some(Err(e)) => return Err(Error::new(Kind::Usage, fail(&e))),
    };
    let cat =
        crate::source::kernlog::catalogue(ks).map_err(|e| Error::new(Kind::Failed, fail(&e)))?;
    let rule = LogRule::new(&cat, backend);
    if !apply {
        outln!("# ports from the catalogue ({from})");
        out(&rule.script());
        return Ok(());
    }
    let steps = rule
        .apply()
        .map_err(|e| Error::new(Kind::Failed, format!("sipban firewall log-rule: {e:#}")))?;
    for s in steps {
        outln!("{}: {}", s.command, s.result);
    }
    Ok(())
}

/// Whether `firewall install` recorded nft rules (the nft backend's sets go with its table).
fn nft_recorded(settings: &Settings) -> bool {
    matches!(
        rules::Marker::load(&settings.state_dir),
        Ok(Some(m)) if m.set_backend == crate::config::sets::BackendChoice::Nft
    )
}
