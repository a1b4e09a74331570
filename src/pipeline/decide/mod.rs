//! decide: (previous entries, sightings, allowlist, policies, caps, now) → desired entries.
//!
//! This is where provenance, TTL refresh, prefix sanity, the allowlist, priorities and the hard
//! cap live. It is pure: no I/O, no clock reads, no network. Everything it needs is an argument,
//! so it is tested without a kernel, a clock or a network.
//!
//! Two layers come out of it:
//! - **entries**: what the sources said (address, which sources, first/last seen, expiry),
//!   before the allowlist, so that removing an allowlist rule brings bans back and `explain`
//!   can say "listed by X, protected by Y". They are persisted.
//! - **desired**: what belongs in the kernel sets now: entries minus the allowlist, ranked, cut
//!   to the cap per family. Over the cap the lowest priority goes first, then the address
//!   listed by fewer sources, then the least recently seen; every eviction is counted.

pub use crate::backend::plan;

pub use crate::pipeline::gate as allow;

use crate::net::{self, Family};
use allow::Allowlist;
use ipnet::IpNet;
use serde::Serialize;
use std::collections::BTreeMap;

pub use crate::net::{NetMap, NetSet};

pub use crate::model::{ser_net, Desired, Entry, Mark, Marks, Nets, Sightings};

/// How many candidates per family the state keeps beyond the cap (as a multiple of the cap), so
/// that an evicted address can come back when room frees up, while memory stays bounded.
pub const KEEP_FACTOR: usize = 4;

use super::gate;
pub use super::gate::{Rejection, SourcePolicy};

/// Sort key: higher is kept first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    pub priority: u16,
    pub sources: u16,
    pub last_seen: i64,
}

/// How an entry ranks for the cap, from its sources' priorities.
pub trait Ranked {
    fn rank(&self, policies: &[SourcePolicy]) -> Rank;
}

impl Ranked for Entry {
    fn rank(&self, policies: &[SourcePolicy]) -> Rank {
        let priority = self
            .marks
            .iter()
            .filter_map(|m| policies.get(m.source as usize).map(|p| p.priority))
            .max()
            .unwrap_or(0);
        Rank {
            priority,
            sources: self.marks.len().min(u16::MAX as usize) as u16,
            last_seen: self
                .marks
                .iter()
                .map(|m| m.last_seen)
                .max()
                .unwrap_or(i64::MIN),
        }
    }
}

/// Per-source counters for the plan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SourceCounts {
    /// Sightings this source produced in this run.
    pub listed: usize,
    /// Refused by prefix rules, by reason.
    pub rejected: BTreeMap<Rejection, usize>,
    /// Entries this source holds after the run (before the allowlist).
    pub held: usize,
    /// Of those, fully protected by the allowlist.
    pub allowlisted: usize,
    /// Of those, in a kernel set.
    pub in_set: usize,
    /// Marks that ran out of TTL in this run.
    pub expired: usize,
    /// Marks dropped because a complete listing no longer holds them.
    pub delisted: usize,
    /// Saved marks last seen in the future (beyond `clock::MAX_SKEW`: the clock was ahead
    /// when they were saved), brought back to now with their TTL (see [`fit_to_now`]).
    #[serde(skip_serializing_if = "is_zero")]
    pub future: usize,
    /// Listings the gate refused in this run, the broadest kept (at most
    /// [`gate::KEEP_REFUSED`] after [`SourceCounts::refused_listings`]), for `explain`.
    #[serde(skip)]
    pub refused: Vec<IpNet>,
}

impl SourceCounts {
    /// Remember a refused listing; memory stays bounded whatever a source lists.
    fn note_refused(&mut self, net: IpNet) {
        self.refused.push(net);
        if self.refused.len() >= 2 * gate::KEEP_REFUSED {
            self.refused
                .sort_unstable_by_key(|n| (n.prefix_len(), net::sort_key(n)));
            self.refused.truncate(gate::KEEP_REFUSED);
        }
    }
}

/// An allowlist rule that stopped a listed prefix (fully or partly).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AllowHit {
    #[serde(serialize_with = "ser_net")]
    pub listed: IpNet,
    #[serde(serialize_with = "ser_net")]
    pub rule: IpNet,
    pub reason: allow::AllowReason,
    /// Whether the listed prefix was split and the rest kept.
    pub partial: bool,
}

/// Caps and keep limits for one family.
#[derive(Clone, Copy, Debug)]
pub struct Caps {
    pub v4: usize,
    pub v6: usize,
}

impl Caps {
    pub fn get(&self, f: Family) -> usize {
        match f {
            Family::V4 => self.v4,
            Family::V6 => self.v6,
        }
    }
}

/// Everything decide produced.
#[derive(Clone, Debug, Default)]
pub struct Decision {
    /// Entries to persist, in prefix order ([`net::sort_key`]).
    pub entries: Vec<Entry>,
    pub desired_v4: Vec<Desired>,
    pub desired_v6: Vec<Desired>,
    /// Candidates over the cap, per family (not in the kernel set).
    pub evicted_v4: usize,
    pub evicted_v6: usize,
    /// Candidates beyond the keep limit, dropped from the state as well.
    pub forgotten: usize,
    pub per_source: Vec<SourceCounts>,
    pub allow_hits: Vec<AllowHit>,
    /// Marks of sources that are no longer configured.
    pub dropped_unknown: usize,
}

impl Decision {
    pub fn desired(&self, f: Family) -> &[Desired] {
        match f {
            Family::V4 => &self.desired_v4,
            Family::V6 => &self.desired_v6,
        }
    }

    /// Whether the sets hold `ip` after this decision.
    pub fn holds(&self, ip: std::net::IpAddr) -> bool {
        let family = if ip.is_ipv4() { Family::V4 } else { Family::V6 };
        self.desired(family).iter().any(|d| d.net.contains(&ip))
    }

    pub fn evicted(&self, f: Family) -> usize {
        match f {
            Family::V4 => self.evicted_v4,
            Family::V6 => self.evicted_v6,
        }
    }
}

/// What a source contributed in this run: sightings to merge, tagged with the source index.
#[derive(Clone, Debug, Default)]
pub struct Input {
    pub source: u16,
    pub sightings: Sightings,
    /// The sightings are the source's complete current list (a feed download): addresses of
    /// this source that it no longer lists are dropped now, not when their TTL runs out, so a
    /// false positive removed upstream is unblocked at the next sync. Additive sources (APIBAN,
    /// log detectors) leave this false and their entries live until their TTL.
    pub complete: bool,
}

/// Sort `items` into prefix order unless they already are (the store loads entries in order;
/// checking costs one pass, sorting 65,536 entries several milliseconds).
fn sort_by_net<T>(items: &mut [T], net: impl Fn(&T) -> &IpNet) {
    if !items.is_sorted_by(|a, b| net::cmp_net(net(a), net(b)).is_le()) {
        items.sort_unstable_by(|a, b| net::cmp_net(net(a), net(b)));
    }
}

/// The pure decision. `previous` marks must refer to `policies` by index; marks with an index
/// out of range (a source removed from the config) are dropped and counted. The inputs are
/// consumed: sorted in place, merged, and freed before the next steps allocate.
pub fn decide(
    previous: Vec<Entry>,
    inputs: Vec<Input>,
    policies: &[SourcePolicy],
    allowlist: &Allowlist,
    caps: Caps,
    now: i64,
) -> Decision {
    let mut d = Decision {
        per_source: vec![SourceCounts::default(); policies.len()],
        ..Decision::default()
    };
    // 1.–4. One merge pass over the previous entries and this run's sightings, keeping of
    //    each feed listing only what the cap could keep.
    let mut bound = Bound::new(&inputs, policies.len(), caps);
    let mut entries = merge(
        previous,
        inputs,
        (policies, allowlist),
        now,
        &mut bound,
        &mut d,
    );

    // 5. Subtract the allowlist and rank per family.
    let mut cands = candidates(&entries, policies, allowlist, &mut d);

    // 6. Cap: keep the best `cap` per family; remember up to KEEP_FACTOR×cap.
    let mut kept = Kept {
        keep: vec![false; entries.len()],
        in_set: vec![false; entries.len()],
    };
    for family in [Family::V4, Family::V6] {
        let fam = family as usize;
        let (desired, evicted) = cap_family(
            std::mem::take(&mut cands.nets[fam]),
            std::mem::take(&mut cands.origins[fam]),
            cands.split,
            caps.get(family),
            (&entries, policies),
            &mut kept,
        );
        // The listings' entries that merge left out were candidates over the cap too.
        let evicted = evicted + bound.left_out[fam];
        match family {
            Family::V4 => {
                d.desired_v4 = desired;
                d.evicted_v4 = evicted;
            }
            Family::V6 => {
                d.desired_v6 = desired;
                d.evicted_v6 = evicted;
            }
        }
    }
    drop(cands);

    // 7. Entries to persist.
    retain_kept(&mut entries, policies, allowlist, &kept, &mut d);
    d.entries = entries;
    d
}

/// What merge may leave out of a feed's listing, so that memory follows the cap and not the
/// size of the list (a feed of a million addresses against a 65,536-entry set).
///
/// An entry that only a listing of this run holds (one mark, last seen when the listing was
/// taken) and that the allowlist does not touch is a candidate of its own, ranked exactly like
/// every other such entry of that listing (its source's priority, one source, the same
/// instant). Among equals the lower prefix goes first, and merge meets them in prefix order: so
/// once `keep` of them (per family) have been met, every later one has `keep` candidates ranked
/// above it and can be neither in the set nor kept in the state. It is left out as it comes,
/// and counted (forgotten, and evicted from its family).
struct Bound {
    /// Per source: the instant its listing of this run was taken (a complete input whose
    /// sightings share it), if any.
    listed_at: Vec<Option<i64>>,
    /// Per source and family: such entries met so far.
    met: Vec<[usize; 2]>,
    /// Per family: how many of them the cap could keep (`KEEP_FACTOR`×cap).
    keep: [usize; 2],
    /// Per family: entries left out.
    left_out: [usize; 2],
}

impl Bound {
    fn new(inputs: &[Input], sources: usize, caps: Caps) -> Bound {
        let mut listed_at = vec![None; sources];
        for input in inputs.iter().filter(|i| i.complete) {
            if let (Some(at), Some(slot)) = (
                input.sightings.listed_at(),
                listed_at.get_mut(input.source as usize),
            ) {
                *slot = Some(at);
            }
        }
        let keep = |cap: usize| cap.saturating_mul(KEEP_FACTOR).max(cap);
        Bound {
            listed_at,
            met: vec![[0; 2]; sources],
            keep: [keep(caps.v4), keep(caps.v6)],
            left_out: [0; 2],
        }
    }

    /// Whether the entry (`net`, `marks`) is one of the above, beyond what the cap could keep.
    fn leaves_out(
        &mut self,
        net: &IpNet,
        marks: &Marks,
        (policies, allowlist): (&[SourcePolicy], &Allowlist),
    ) -> bool {
        let [m] = marks.as_slice() else {
            return false;
        };
        let s = m.source as usize;
        let (Some(Some(at)), Some(policy)) = (self.listed_at.get(s), policies.get(s)) else {
            return false;
        };
        if m.last_seen != *at || allowlist.subtract_for(net, policy.ban_on_link).is_some() {
            return false;
        }
        // A prefix whose parent the allowlist touches may also be a piece of a wider entry
        // the allowlist splits; the cap counts such a prefix once, whoever brings it, so it
        // is not counted as a candidate of its own here.
        if net
            .supernet()
            .is_some_and(|p| allowlist.subtract_for(&p, false).is_some())
        {
            return false;
        }
        let fam = Family::of(net) as usize;
        self.met[s][fam] += 1;
        if self.met[s][fam] <= self.keep[fam] {
            return false;
        }
        self.left_out[fam] += 1;
        true
    }
}

/// Steps 1–4: the previous entries and each input's sightings, merged into entries in prefix
/// order. Expired, delisted and refused marks are dropped and counted in `d`; what `bound`
/// says the cap cannot keep is left out and counted as forgotten.
fn merge(
    mut previous: Vec<Entry>,
    mut inputs: Vec<Input>,
    (policies, allowlist): (&[SourcePolicy], &Allowlist),
    now: i64,
    bound: &mut Bound,
    d: &mut Decision,
) -> Vec<Entry> {
    // 1. Everything in prefix order: the previous entries, and each input's sightings (sorted
    //    in place). One merge pass then visits each prefix once, with no hash map: entries
    //    come out sorted, and memory stays at the size of the data.
    sort_by_net(&mut previous, |e| &e.net);
    for input in inputs.iter_mut() {
        input.sightings.sort();
    }
    // Sources whose input this run is their complete list.
    let mut complete = vec![false; policies.len()];
    for input in inputs.iter().filter(|i| i.complete) {
        if let Some(c) = complete.get_mut(input.source as usize) {
            *c = true;
        }
    }
    let mut cursors = vec![0usize; inputs.len()];
    let mut prev = Previous::new(previous);
    let mut entries: Vec<Entry> = Vec::new();
    let mut listed_here: Vec<u16> = Vec::new();
    while let Some(key) = next_key(prev.peek(), &inputs, &cursors) {
        // 2. What is still valid from the previous run at this prefix.
        let (net, mut marks) = previous_marks(&mut prev, key, (policies, allowlist), now, d);

        // 3. This run's sightings at this prefix, refusing what a source may not ban.
        listed_here.clear();
        let sighted = add_sightings(
            (&inputs, &mut cursors),
            key,
            (policies, allowlist),
            now,
            (&mut marks, &mut listed_here),
            &mut d.per_source,
        );
        let net = sighted.or(net);

        // 4. A complete listing replaces what its source listed before.
        marks.retain(|m| {
            let drop = complete.get(m.source as usize).copied().unwrap_or(false)
                && !listed_here.contains(&m.source);
            if drop {
                d.per_source[m.source as usize].delisted += 1;
            }
            !drop
        });
        if let (Some(net), false) = (net, marks.is_empty()) {
            if bound.leaves_out(&net, &marks, (policies, allowlist)) {
                d.forgotten += 1;
                continue;
            }
            marks.sort_unstable_by_key(|m| m.source);
            entries.push(Entry { net, marks });
        }
    }

    // The merge is done: give back the consumed previous entries and the sightings before
    // the next steps allocate (a run's peak memory is here).
    drop(prev);
    drop(inputs);
    entries.shrink_to_fit();
    entries
}

/// The previous entries, taken in prefix order, their memory given back as they are taken (a
/// run that reloads a quarter of a million entries does not hold them twice while it merges).
struct Previous {
    /// In reverse prefix order: the next one is last.
    rest: Vec<Entry>,
    taken: usize,
}

impl Previous {
    /// Give memory back every this many entries taken.
    const GIVE_BACK: usize = 16 * 1024;

    /// `entries` in prefix order.
    fn new(mut entries: Vec<Entry>) -> Previous {
        entries.reverse();
        Previous {
            rest: entries,
            taken: 0,
        }
    }

    fn peek(&self) -> Option<&Entry> {
        self.rest.last()
    }

    fn next(&mut self) -> Option<Entry> {
        let e = self.rest.pop()?;
        self.taken += 1;
        if self.taken.is_multiple_of(Self::GIVE_BACK) {
            self.rest.shrink_to_fit();
        }
        Some(e)
    }
}

/// The lowest prefix any list holds next: the previous entries' head or an input's cursor.
fn next_key(prev: Option<&Entry>, inputs: &[Input], cursors: &[usize]) -> Option<IpNet> {
    let mut next: Option<IpNet> = prev.map(|e| e.net);
    for (k, input) in inputs.iter().enumerate() {
        if let Some(s) = input.sightings.get(cursors[k]) {
            if next.is_none_or(|n| net::cmp_net(&s.net, &n).is_lt()) {
                next = Some(s.net);
            }
        }
    }
    next
}

/// Step 2: consumes the previous entries at `key` and joins their still valid marks. Returns
/// the prefix (if any entry was there) and the marks.
fn previous_marks(
    prev: &mut Previous,
    key: IpNet,
    (policies, allowlist): (&[SourcePolicy], &Allowlist),
    now: i64,
    d: &mut Decision,
) -> (Option<IpNet>, Marks) {
    let mut net = None;
    let mut marks = Marks::new();
    // The same prefix may come more than once (sources stored apart): join their marks.
    while prev.peek().is_some_and(|e| e.net == key) {
        if let Some(mut entry) = prev.next() {
            net = Some(entry.net);
            entry.marks.retain(|m| {
                let Some(policy) = policies.get(m.source as usize) else {
                    d.dropped_unknown += 1;
                    return false;
                };
                if fit_to_now(m, policy.max_ttl, now) {
                    d.per_source[m.source as usize].future += 1;
                }
                if m.expires <= now {
                    d.per_source[m.source as usize].expired += 1;
                    return false;
                }
                // A policy that got stricter since the entry was stored drops it.
                gate::rule(policy, allowlist, &entry.net).is_none()
            });
            if marks.is_empty() {
                marks = entry.marks;
                continue;
            }
            for m in entry.marks {
                match marks.iter_mut().find(|x| x.source == m.source) {
                    Some(x) => {
                        x.first_seen = x.first_seen.min(m.first_seen);
                        x.last_seen = x.last_seen.max(m.last_seen);
                        x.expires = x.expires.max(m.expires);
                    }
                    None => marks.push(m),
                }
            }
        }
    }
    (net, marks)
}

/// Bring a saved mark within what its source asked for, whatever clock saved it: a mark never
/// expires more than `max_ttl` after now, and one last seen after now (saved under a clock that
/// was ahead) is moved back to now with the TTL it was given (`expires - last_seen`, which a
/// mark carries without a field). Kernel timeouts, computed from `expires`, then never exceed
/// the TTL asked for. Returns whether the mark was seen beyond [`crate::clock::MAX_SKEW`] in
/// the future (the caller warns).
pub fn fit_to_now(m: &mut Mark, max_ttl: u32, now: i64) -> bool {
    let far = crate::clock::is_future(m.last_seen, now);
    if m.last_seen > now {
        let ttl = m.expires.saturating_sub(m.last_seen).max(0);
        m.last_seen = now;
        m.expires = now.saturating_add(ttl);
    }
    m.first_seen = m.first_seen.min(m.last_seen);
    m.expires = m.expires.min(now.saturating_add(i64::from(max_ttl)));
    far
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Step 3: consumes every input's sightings at `key` into `marks`, advancing the cursors;
/// complete inputs that list `key` go to `listed_here`. Returns the prefix if any sighting
/// was there.
fn add_sightings(
    (inputs, cursors): (&[Input], &mut [usize]),
    key: IpNet,
    (policies, allowlist): (&[SourcePolicy], &Allowlist),
    now: i64,
    (marks, listed_here): (&mut Marks, &mut Vec<u16>),
    per_source: &mut [SourceCounts],
) -> Option<IpNet> {
    let mut net = None;
    // Per source touched at this prefix in this run: (source, saved expiry, this run's
    // longest, whether a complete list named it). A complete list says how long the entry
    // lives now (CrowdSec's remaining duration may be shorter than what was saved), so then
    // the saved expiry no longer counts; otherwise the longest wins. Order-independent.
    let mut touched: smallvec::SmallVec<[(u16, i64, i64, bool); 2]> = smallvec::SmallVec::new();
    for (k, input) in inputs.iter().enumerate() {
        while let Some(s) = input.sightings.get(cursors[k]) {
            if s.net != key {
                break;
            }
            cursors[k] += 1;
            net = Some(s.net);
            let Some(policy) = policies.get(input.source as usize) else {
                continue;
            };
            if input.complete {
                listed_here.push(input.source);
            }
            let counts = &mut per_source[input.source as usize];
            counts.listed += 1;
            if let Some(why) = gate::rule(policy, allowlist, &s.net) {
                *counts.rejected.entry(why).or_default() += 1;
                counts.note_refused(s.net);
                continue;
            }
            // A sighting is never later than now (a log line written under a clock that was
            // ahead): its ban runs `ttl` from now at most.
            let seen = s.seen.min(now);
            let expires = seen.saturating_add(i64::from(s.ttl));
            if expires <= now {
                continue;
            }
            let mark = marks.iter_mut().find(|m| m.source == input.source);
            let i = match touched.iter().position(|t| t.0 == input.source) {
                Some(i) => i,
                None => {
                    let saved = mark.as_ref().map_or(i64::MIN, |m| m.expires);
                    touched.push((input.source, saved, i64::MIN, false));
                    touched.len() - 1
                }
            };
            let t = &mut touched[i];
            t.2 = t.2.max(expires);
            t.3 |= input.complete;
            let expires = if t.3 { t.2 } else { t.1.max(t.2) };
            match mark {
                Some(m) => {
                    m.first_seen = m.first_seen.min(seen);
                    m.last_seen = m.last_seen.max(seen);
                    m.expires = expires;
                }
                None => marks.push(Mark {
                    source: input.source,
                    first_seen: seen,
                    last_seen: seen,
                    expires,
                }),
            }
        }
    }
    net
}

/// Kernel prefixes per family (indexed by `Family as usize`) with the index of the entry each
/// comes from, in two parallel vectors, so that when everything fits the prefixes become
/// `desired` without a copy; a rank is computed only when the cap is reached.
struct Candidates {
    nets: [Vec<Desired>; 2],
    origins: [Vec<u32>; 2],
    /// Whether the allowlist split some entry (pieces of different entries may then coincide).
    split: bool,
}

/// Which entries the cap keeps in the state, and which are in a kernel set, by entry index.
struct Kept {
    keep: Vec<bool>,
    in_set: Vec<bool>,
}

/// Whether a source that listed `entry` may ban on this host's own networks (the on-link
/// rules then do not apply to it; see [`SourcePolicy::ban_on_link`]).
fn on_link_ok(entry: &Entry, policies: &[SourcePolicy]) -> bool {
    entry.marks.iter().any(|m| {
        policies
            .get(m.source as usize)
            .is_some_and(|p| p.ban_on_link)
    })
}

/// Step 5: the entries minus the allowlist, as candidates per family; records allowlist hits
/// and fully allowlisted marks in `d`.
fn candidates(
    entries: &[Entry],
    policies: &[SourcePolicy],
    allowlist: &Allowlist,
    d: &mut Decision,
) -> Candidates {
    let mut c = Candidates {
        nets: [Vec::new(), Vec::new()],
        origins: [Vec::new(), Vec::new()],
        split: false,
    };
    for (idx, entry) in entries.iter().enumerate() {
        let idx = idx as u32;
        let expires = entry.expires();
        let fam = Family::of(&entry.net) as usize;
        let on_link_ok = on_link_ok(entry, policies);
        match allowlist.subtract_for(&entry.net, on_link_ok) {
            None => {
                c.nets[fam].push(Desired {
                    net: entry.net,
                    expires,
                });
                c.origins[fam].push(idx);
            }
            Some(pieces) => {
                if let Some(rule) = allowlist.hit_for(&entry.net, on_link_ok) {
                    d.allow_hits.push(AllowHit {
                        listed: entry.net,
                        rule: rule.net,
                        reason: rule.reason.clone(),
                        partial: !pieces.is_empty(),
                    });
                }
                if pieces.is_empty() {
                    for m in &entry.marks {
                        d.per_source[m.source as usize].allowlisted += 1;
                    }
                }
                c.split |= !pieces.is_empty();
                for piece in pieces {
                    c.nets[fam].push(Desired {
                        net: piece,
                        expires,
                    });
                    c.origins[fam].push(idx);
                }
            }
        }
    }
    c
}

/// Step 6 for one family: the best `cap` candidates in prefix order, and how many were
/// evicted. Marks in `kept` the entries in the set and those within KEEP_FACTOR×cap.
fn cap_family(
    nets: Vec<Desired>,
    origins: Vec<u32>,
    split: bool,
    cap: usize,
    (entries, policies): (&[Entry], &[SourcePolicy]),
    kept: &mut Kept,
) -> (Vec<Desired>, usize) {
    if !split && nets.len() <= cap {
        // Everything fits, in prefix order already: the candidates are the set.
        for &idx in &origins {
            kept.in_set[idx as usize] = true;
            kept.keep[idx as usize] = true;
        }
        drop(origins);
        return (nets, 0);
    }
    // The candidates are chosen through their positions (4 bytes each), not copies.
    let rank_of = |i: u32| entries[origins[i as usize] as usize].rank(policies);
    let key_of = |i: u32| net::sort_key(&nets[i as usize].net);
    let mut cands: Vec<u32> = (0..nets.len() as u32).collect();
    if split {
        // Coinciding pieces of different entries: keep the best-ranked one per prefix, and of
        // equals the first entry in prefix order (whatever else was left out before).
        cands.sort_unstable_by_key(|&i| {
            (
                key_of(i),
                std::cmp::Reverse(rank_of(i)),
                origins[i as usize],
            )
        });
        cands.dedup_by_key(|i| nets[*i as usize].net);
    }
    let keep = cap.saturating_mul(KEEP_FACTOR).max(cap);
    // Best first: higher rank, then the lower prefix, a total order, so the choice is
    // deterministic. Only the cut matters, so partition instead of sorting: O(n).
    let better = |a: &u32, b: &u32| {
        rank_of(*b)
            .cmp(&rank_of(*a))
            .then_with(|| key_of(*a).cmp(&key_of(*b)))
    };
    if cands.len() > cap {
        cands.select_nth_unstable_by(cap, better);
        if cands.len() > keep {
            cands[cap..].select_nth_unstable_by(keep - cap, better);
        }
    }
    let mut desired = Vec::with_capacity(cap.min(cands.len()));
    for (n, &i) in cands.iter().enumerate() {
        let idx = origins[i as usize] as usize;
        if n < cap {
            desired.push(nets[i as usize]);
            kept.in_set[idx] = true;
        }
        if n < keep {
            kept.keep[idx] = true;
        }
    }
    let evicted = cands.len().saturating_sub(cap);
    // Candidates come in prefix order; only splitting and the cut above disturb it.
    if split || evicted > 0 {
        desired.sort_unstable_by_key(|d| net::sort_key(&d.net));
    }
    (desired, evicted)
}

/// Step 7: keeps the entries to persist, those `kept` plus fully allowlisted ones (so lifting
/// the allowlist rule brings them back before they expire), filtered in place: no second
/// copy. Counts held, in-set and forgotten in `d`.
fn retain_kept(
    entries: &mut Vec<Entry>,
    policies: &[SourcePolicy],
    allowlist: &Allowlist,
    kept: &Kept,
    d: &mut Decision,
) {
    let mut idx = 0;
    entries.retain(|entry| {
        let i = idx;
        idx += 1;
        let allowlisted = allowlist
            .subtract_for(&entry.net, on_link_ok(entry, policies))
            .is_some_and(|p| p.is_empty());
        if kept.keep[i] || allowlisted {
            for m in &entry.marks {
                let c = &mut d.per_source[m.source as usize];
                c.held += 1;
                if kept.in_set[i] {
                    c.in_set += 1;
                }
            }
            true
        } else {
            d.forgotten += 1;
            false
        }
    });
}

#[cfg(test)]
mod tests;
