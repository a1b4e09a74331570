//! `sipban firewall install|remove|status|check` for the nft backend: sipban's own base chain
//! in the table `inet sipban` (`input`, or `prerouting` at raw priority with `--raw`), holding
//! two counted drop rules per family: one matching its hash set of addresses, one its interval
//! set of prefixes (see [`super::nft`]), each counting in a named counter. Every sync's
//! transaction re-declares the same chain and rules itself (counters kept), so a sync needs no
//! rule check after it; `firewall check` and `status` still read them back.
//!
//! The script is one transaction (table, both sets, the chain flushed and filled, the other
//! place's chain deleted), so install and repair are idempotent and never leave a chain half
//! written. `remove` deletes the chains and keeps the sets (as the ipset backend keeps its
//! sets). Everything outside the table `inet sipban` is left alone: an accept in another
//! table's chain cannot undo a drop in this one, so no rule of the admin's can shadow it.
//!
//! The record (`firewall.json`, [`super::rules::Marker`]) says `set_backend: nft`; the checks
//! of every sync and of `sipban-firewall.service` put the table back after a `flush ruleset`.

use super::nft::{self, Nft};
use super::rules::{Change, Check, Marker, Options, Place, Rule, RuleStatus, SetStatus, Status};
use crate::config::sets::{nft_set_name, BackendChoice};
use crate::config::Settings;
use crate::net::Family;
use anyhow::{Context, Result};

fn rules_for(settings: &Settings, raw: bool) -> Vec<Rule> {
    super::rules::wanted(settings, raw)
}

fn script_text(settings: &Settings, raw: bool) -> String {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = nft::rules_script(
        &mut out,
        &settings.sets.v4.name,
        &settings.sets.v6.name,
        raw,
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// The drop rules found in `chain` (packets, bytes), per family; `None` for a family whose
/// rule (or the chain, or the table) is missing.
fn found(nft: &Nft, settings: &Settings, raw: bool) -> Result<[Option<(u64, u64)>; 2]> {
    let chain = nft::chain_name(raw);
    // Terse: the chains and the counters, without the sets' elements.
    let text = nft
        .output(&["-t", "list", "table", "inet", nft::TABLE])
        .with_context(|| format!("listing table inet {}", nft::TABLE))?
        .unwrap_or_default();
    Ok([Family::V4, Family::V6]
        .map(|f| nft::find_rule(&text, chain, f, &settings.sets.get(f).name)))
}

/// `sipban firewall install` with `backend: nft`.
pub fn install(settings: &Settings, nft: &Nft, opts: Options) -> Result<Change> {
    let mut change = Change {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let script = script_text(settings, opts.raw);
    let command = format!("nft -f - <<'EOF'\n{script}EOF");
    let place = nft::chain_name(opts.raw);
    let present = found(nft, settings, opts.raw).unwrap_or_else(|e| {
        change.notes.push(format!("cannot check: {e:#}"));
        [None, None]
    });
    if present.iter().all(Option::is_some) {
        change.unchanged.push(format!(
            "table inet {} chain {place}: both drop rules are already in place",
            nft::TABLE
        ));
    } else {
        if !opts.dry_run {
            nft.run_script("nft -f - (firewall install)", |w| {
                w.write_all(script.as_bytes())
            })?;
        }
        change.steps.push(super::rules::Step {
            command,
            note: format!(
                "create table inet {} with sets {} and {} and chain {place} dropping their sources",
                nft::TABLE,
                nft_set_name(&settings.sets.v4.name),
                nft_set_name(&settings.sets.v6.name)
            ),
            ran: !opts.dry_run,
        });
    }
    if !opts.dry_run {
        let mut marker = Marker::load(&settings.state_dir)?.unwrap_or_default();
        marker.set_backend = BackendChoice::Nft;
        marker.backend = super::rules::Backend::Nft;
        marker.raw = opts.raw;
        marker.rules = rules_for(settings, opts.raw);
        marker.created.clear();
        super::rules::save_marker(&marker, &settings.state_dir)?;
    }
    Ok(change)
}

/// `sipban firewall remove` with `backend: nft`: both chains go, the sets stay.
pub fn remove(settings: &Settings, nft: &Nft, opts: Options) -> Result<Change> {
    let mut change = Change {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let mut out = Vec::new();
    let _ = nft::remove_script(&mut out);
    let script = String::from_utf8_lossy(&out).into_owned();
    let any = [false, true]
        .into_iter()
        .map(|raw| found(nft, settings, raw))
        .collect::<Result<Vec<_>>>()?
        .iter()
        .any(|f| f.iter().any(Option::is_some));
    if any {
        if !opts.dry_run {
            nft.run_script("nft -f - (firewall remove)", |w| {
                w.write_all(script.as_bytes())
            })?;
        }
        change.steps.push(super::rules::Step {
            command: format!("nft -f - <<'EOF'\n{script}EOF"),
            note: format!(
                "delete sipban's chains in table inet {} (the sets stay)",
                nft::TABLE
            ),
            ran: !opts.dry_run,
        });
    } else {
        change
            .unchanged
            .push("no sipban rule is installed".to_string());
    }
    if !opts.dry_run {
        let path = Marker::path(&settings.state_dir);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    Ok(change)
}

/// The recorded nft rules are in place; with `repair`, the install script runs again (one
/// transaction: it recreates the table and sets a `flush ruleset` removed, and the chain).
pub fn check(
    settings: &Settings,
    nft: &Nft,
    marker: Marker,
    repair: bool,
    now: i64,
) -> Result<Check> {
    let mut c = Check {
        reinstalled_total: marker.reinstalled,
        ..Check::default()
    };
    let present = found(nft, settings, marker.raw)?;
    for (f, p) in [Family::V4, Family::V6].into_iter().zip(present) {
        if p.is_none() {
            c.missing.push(format!(
                "the {f} rule for set {} in table inet {} chain {}",
                nft_set_name(&settings.sets.get(f).name),
                nft::TABLE,
                nft::chain_name(marker.raw)
            ));
        }
    }
    if c.missing.is_empty() || !repair {
        return Ok(c);
    }
    let script = script_text(settings, marker.raw);
    nft.run_script("nft -f - (firewall repair)", |w| {
        w.write_all(script.as_bytes())
    })
    .context("putting the nft firewall rules back")?;
    let mut marker = marker;
    marker.reinstalled += 1;
    marker.last_reinstalled = Some(now);
    super::rules::save_marker(&marker, &settings.state_dir)?;
    c.reinstalled = true;
    c.reinstalled_total = marker.reinstalled;
    Ok(c)
}

/// `sipban firewall status` with `backend: nft`. Reads only.
pub fn status(settings: &Settings, nft: &Nft) -> Result<Status> {
    let recorded = Marker::load(&settings.state_dir)?;
    let mut rules = Vec::new();
    for raw in [false, true] {
        let present = found(nft, settings, raw)?;
        for (f, p) in [Family::V4, Family::V6].into_iter().zip(present) {
            rules.push(RuleStatus {
                family: f,
                place: if raw {
                    Place::RawPrerouting
                } else {
                    Place::Input
                },
                set: nft_set_name(&settings.sets.get(f).name),
                position: p.map(|_| 1),
                shadowed_by: Vec::new(),
            });
        }
    }
    let mut sets = Vec::new();
    for family in [Family::V4, Family::V6] {
        let name = settings.sets.get(family).name.clone();
        let n = nft
            .header(&name)
            .with_context(|| format!("reading set {name}"))?
            .map(|(_, n)| n);
        sets.push(SetStatus {
            name: nft_set_name(&name),
            entries: n,
        });
    }
    Ok(Status {
        backend: super::rules::Backend::Nft,
        set_backend: BackendChoice::Nft,
        rules,
        sets,
        recorded,
    })
}

/// Packets and bytes each recorded nft rule dropped (for `status`): family, place, set,
/// counters; `None` counters for a missing rule.
/// One rule's family, place, set and counters (`None`: missing).
pub type RuleCounters = (Family, Place, String, Option<(u64, u64)>);

pub fn counters(settings: &Settings, nft: &Nft, raw: bool) -> Result<Vec<RuleCounters>> {
    let present = found(nft, settings, raw)?;
    let place = if raw {
        Place::RawPrerouting
    } else {
        Place::Input
    };
    Ok([Family::V4, Family::V6]
        .into_iter()
        .zip(present)
        .map(|(f, p)| (f, place, nft_set_name(&settings.sets.get(f).name), p))
        .collect())
}
