//! The network phase of a sync: every remote source behind one [`RemoteSource`] trait, gathered
//! in order without the apply lock. What they bring waits in memory ([`Remote`]) for the apply
//! step; the servers they were fetched from are remembered so the gate never bans them.
//!
//! A remote source returns sightings and its own bookkeeping (feed metadata and cached copies,
//! APIBAN's run report) and nothing else. APIBAN commits each page as it arrives; that commit
//! takes the apply lock for the page alone (see `store::apiban`).
//!
//! This module must never take the apply lock across an await, and never let one source's
//! failure stop another's download.

use super::decide::Input;
use super::summary::{FeedReport, SyncError};
use super::Sources;
use crate::config::{FeedLocation, Settings};
use crate::http;
use crate::model::{Nets, Sightings};
use crate::net;
use crate::source::apiban::{self, ApibanRun};
use crate::source::crowdsec::{self, CrowdsecRun};
use crate::source::feed::{self, FeedMeta, FeedStatus};
use crate::store::Store;
use ipnet::IpNet;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// What the network phase brought, held until the apply step.
#[derive(Default)]
pub struct Remote {
    /// Servers we download from: never banned.
    pub hosts: Vec<(IpAddr, String)>,
    pub inputs: Vec<Input>,
    pub feed_reports: Vec<FeedReport>,
    pub new_metas: Vec<(String, FeedMeta)>,
    /// New last good copies of feeds (the listing shared with its input).
    pub cache_writes: Vec<(PathBuf, Arc<Nets>)>,
    pub apiban: Option<ApibanRun>,
    pub crowdsec: Option<CrowdsecRun>,
    pub errors: Vec<String>,
    /// What the admin should know but did not fail a source (a saved time in the future).
    pub warnings: Vec<String>,
    /// Feed metadata as saved before this run, so a download refused later (by the ceiling
    /// on all sources together) can be counted as a failure instead.
    pub saved_metas: HashMap<String, FeedMeta>,
    /// The peer names in Asterisk's configuration, resolved (when protected).
    pub peers: Option<super::protect::Lookups>,
}

impl Remote {
    /// Refuse the fresh listing of feed `index` (a feed's index among the sources is its
    /// index in `settings.feeds`) after the fact: its listing is not applied (the caller drops
    /// its input), its last good copy is not replaced, its metadata counts a failure, and its
    /// report says why.
    pub fn refuse_feed(&mut self, settings: &Settings, index: u16, reason: &str, now: i64) {
        let Some(f) = settings.feeds.get(index as usize) else {
            return;
        };
        let cache_file = feed::cache_path(&settings.state_dir, &f.name);
        self.cache_writes.retain(|(path, _)| *path != cache_file);
        let mut meta = self.saved_metas.get(&f.name).cloned().unwrap_or_default();
        if matches!(f.location, FeedLocation::Http(_)) {
            meta.last_attempt = Some(now);
        }
        feed::count_failure(&mut meta, reason);
        match self.new_metas.iter_mut().find(|(name, _)| *name == f.name) {
            Some((_, m)) => *m = meta,
            None => self.new_metas.push((f.name.clone(), meta)),
        }
        if let Some(r) = self.feed_reports.get_mut(index as usize) {
            r.status = FeedStatus::Failed(reason.to_string());
        }
    }
}

/// What a remote source works with.
pub struct Context<'a> {
    pub settings: &'a Settings,
    pub store: Option<&'a mut Store>,
    /// Saved feed metadata (ETag, Last-Modified, last success), by feed name.
    pub metas: HashMap<String, FeedMeta>,
    pub client: Option<reqwest::Client>,
    pub dry_run: bool,
    pub now: i64,
    pub remote: Remote,
}

/// A boxed future on the current thread.
pub type Gathering<'a> = Pin<Box<dyn Future<Output = Result<(), SyncError>> + 'a>>;

/// A source fetched over the network (or read from a file) in the network phase.
pub trait RemoteSource {
    /// The source's name (a feed's name, `apiban`).
    fn name(&self) -> &str;
    /// Fetch, and add what was found to `cx.remote` under the source index `index`.
    fn gather<'a>(&'a self, index: Option<u16>, cx: &'a mut Context<'_>) -> Gathering<'a>;
}

/// The configured remote sources, in source order.
fn configured(settings: &Settings) -> Vec<Box<dyn RemoteSource + '_>> {
    let mut out: Vec<Box<dyn RemoteSource + '_>> = Vec::new();
    for f in &settings.feeds {
        out.push(Box::new(Feed(f)));
    }
    if let Some(a) = &settings.apiban {
        out.push(Box::new(Apiban(a)));
    }
    if let Some(c) = &settings.crowdsec {
        out.push(Box::new(Crowdsec(c)));
    }
    out
}

/// The network phase: every remote source in order.
pub async fn gather(
    settings: &Settings,
    store: Option<&mut Store>,
    sources: &Sources,
    dry_run: bool,
    now: i64,
) -> Result<Remote, SyncError> {
    let metas = match store.as_deref() {
        Some(s) => s.feed_metas()?,
        None => HashMap::new(),
    };
    let needs_http = settings
        .feeds
        .iter()
        .any(|f| matches!(f.location, FeedLocation::Http(_)));
    let client = if needs_http {
        let t = http::Timeouts {
            connect: Duration::from_secs(10),
            total: Duration::from_secs(300),
        };
        Some(http::client(t, None)?)
    } else {
        None
    };
    let mut cx = Context {
        settings,
        store,
        metas,
        client,
        dry_run,
        now,
        remote: Remote {
            hosts: feed_host_addresses(settings).await,
            peers: super::protect::lookup(settings).await,
            ..Remote::default()
        },
    };
    let index = sources.index();
    for source in configured(settings) {
        let i = index.get(source.name()).copied();
        source.gather(i, &mut cx).await?;
    }
    let mut remote = cx.remote;
    remote.saved_metas = cx.metas;
    Ok(remote)
}

/// Resolve the hosts of http(s) feeds (a few seconds at most each; failures are skipped: the
/// download would fail too, and its address is added from the connection if it succeeds).
async fn feed_host_addresses(settings: &Settings) -> Vec<(IpAddr, String)> {
    let mut out = Vec::new();
    for f in &settings.feeds {
        let FeedLocation::Http(url) = &f.location else {
            continue;
        };
        let Some(host) = url.host() else {
            continue;
        };
        if let Some(ip) = net::parse_ip(host) {
            out.push((ip, f.name.clone()));
            continue;
        }
        let lookup = tokio::net::lookup_host((host.to_string(), 443));
        match tokio::time::timeout(Duration::from_secs(3), lookup).await {
            Ok(Ok(addrs)) => {
                for a in addrs {
                    out.push((net::canonical_ip(a.ip()), f.name.clone()));
                }
            }
            Ok(Err(e)) => tracing::debug!(feed = %f.name, "cannot resolve {host}: {e}"),
            Err(_) => tracing::debug!(feed = %f.name, "resolving {host} timed out"),
        }
    }
    out
}

/// A configured feed: a complete listing (HTTP with conditional GET, or a local file).
struct Feed<'s>(&'s crate::config::FeedSettings);

impl RemoteSource for Feed<'_> {
    fn name(&self) -> &str {
        &self.0.name
    }

    fn gather<'a>(&'a self, index: Option<u16>, cx: &'a mut Context<'_>) -> Gathering<'a> {
        Box::pin(async move {
            let f = self.0;
            let mut meta = cx.metas.get(&f.name).cloned().unwrap_or_default();
            // Logged with the run's other warnings.
            cx.remote
                .warnings
                .extend(distrust_future(f, &mut meta, cx.now));
            let cache_file = feed::cache_path(&cx.settings.state_dir, &f.name);
            // The last good copy matters for remote feeds (a 304 lists it again); a local file
            // is its own copy, so it is neither read nor written for file feeds.
            let cache = match f.location {
                FeedLocation::Http(_) => Some(cache_file.as_path()),
                FeedLocation::File(_) => None,
            };
            // The coverage guard counts what the gate's rules would admit from this feed.
            let policy = super::gate::SourcePolicy::for_feed(f);
            let admitted = |n: &IpNet| policy.reject(n).is_none();
            let result =
                feed::run_feed(cx.client.as_ref(), f, &meta, cache, cx.now, &admitted).await;
            let remote = &mut cx.remote;
            if let Some(ip) = result.remote_addr {
                remote.hosts.push((ip, f.name.clone()));
            }
            if let FeedStatus::Failed(reason) = &result.status {
                remote.errors.push(format!(
                    "feed {}: {reason}; keeping its last good entries",
                    f.name
                ));
            }
            let (invalid, invalid_samples) = result
                .listing
                .as_ref()
                .map(|l| (l.invalid, l.invalid_samples.clone()))
                .unwrap_or_default();
            if let (Some(listing), Some(i)) = (result.listing, index) {
                let nets = Arc::new(listing.nets);
                if result.cache_update {
                    remote.cache_writes.push((cache_file, Arc::clone(&nets)));
                }
                remote.inputs.push(Input {
                    source: i,
                    sightings: Sightings::Listing {
                        nets,
                        seen: cx.now,
                        ttl: f.ttl,
                    },
                    complete: true,
                });
            }
            let mut status = result.status;
            if matches!(status, FeedStatus::NotDue { .. }) {
                // Not due and failing: still a failure until a download succeeds.
                if let Some(why) = backoff(f, &meta) {
                    remote.errors.push(format!(
                        "feed {}: {why}; keeping its last good entries",
                        f.name
                    ));
                    status = FeedStatus::Failed(why);
                }
            } else {
                remote.new_metas.push((f.name.clone(), result.meta));
            }
            remote.feed_reports.push(FeedReport {
                location: f.location.to_string(),
                status,
                bytes: result.bytes,
                invalid,
                invalid_samples,
            });
            Ok(())
        })
    }
}

/// A saved last download attempt in the future (beyond [`crate::clock::MAX_SKEW`]: the clock
/// was ahead when it was saved) is unknown: the feed is due now. Returns the warning.
fn distrust_future(
    f: &crate::config::FeedSettings,
    meta: &mut FeedMeta,
    now: i64,
) -> Option<String> {
    let t = meta
        .last_attempt
        .filter(|&t| crate::clock::is_future(t, now))?;
    meta.last_attempt = None;
    Some(format!(
        "feed {}: its last download is saved as {}, in the future (the clock was ahead, or is behind now); downloading it now",
        f.name,
        crate::clock::fmt_time(t)
    ))
}

/// Why a feed that is not due is still failing: it waits out its back-off after failures.
/// The words `status` shows too.
pub fn backoff(f: &crate::config::FeedSettings, meta: &FeedMeta) -> Option<String> {
    if meta.consecutive_failures == 0 {
        return None;
    }
    let until = feed::next_due(f, meta)?;
    Some(format!(
        "in backoff until {} after {} failures: {}",
        crate::clock::fmt_time(until),
        meta.consecutive_failures,
        meta.last_error.as_deref().unwrap_or("?")
    ))
}

/// APIBAN: paged, resumable, additive.
struct Apiban<'s>(&'s crate::config::apiban::ApibanSettings);

impl RemoteSource for Apiban<'_> {
    fn name(&self) -> &str {
        apiban::SOURCE
    }

    fn gather<'a>(&'a self, index: Option<u16>, cx: &'a mut Context<'_>) -> Gathering<'a> {
        Box::pin(async move {
            // A key file that cannot be read is this source's failure: the others still apply.
            // A key that is refused (readable by others, a placeholder) fails the run.
            let key = match apiban::load_key(self.0) {
                Ok(k) => k,
                Err(e) if !e.unreadable => return Err(SyncError::Fatal(anyhow::anyhow!(e))),
                Err(e) => {
                    let run = ApibanRun::failed(e.message);
                    cx.remote.errors.extend(run.error());
                    cx.remote.apiban = Some(run);
                    return Ok(());
                }
            };
            let target = match cx.store.as_deref_mut() {
                Some(s) if !cx.dry_run => apiban::Target::Apply(s),
                s => apiban::Target::DryRun(s.map(|s| &*s)),
            };
            let mut run = apiban::pull(self.0, &key, target, cx.now).await;
            let remote = &mut cx.remote;
            if let Some(ip) = run.remote_addr {
                remote.hosts.push((ip, apiban::SOURCE.to_string()));
            }
            remote.errors.extend(run.error());
            if let Some(i) = index {
                remote.inputs.push(Input {
                    source: i,
                    sightings: std::mem::take(&mut run.sightings).into(),
                    complete: false,
                });
            }
            remote.apiban = Some(run);
            Ok(())
        })
    }
}

/// CrowdSec: the LAPI's full state, authoritative for the source.
struct Crowdsec<'s>(&'s crate::config::crowdsec::CrowdsecSettings);

impl RemoteSource for Crowdsec<'_> {
    fn name(&self) -> &str {
        crowdsec::SOURCE
    }

    fn gather<'a>(&'a self, index: Option<u16>, cx: &'a mut Context<'_>) -> Gathering<'a> {
        Box::pin(async move {
            // As for APIBAN: an unreadable key fails the source, a refused one the run.
            let key = match crowdsec::load_key(self.0) {
                Ok(k) => k,
                Err(e) if !e.unreadable => return Err(SyncError::Fatal(anyhow::anyhow!(e))),
                Err(e) => {
                    let run = CrowdsecRun::failed(e.message);
                    cx.remote.errors.extend(run.error());
                    cx.remote.crowdsec = Some(run);
                    return Ok(());
                }
            };
            // A dry run pulls the same full state: it moves the server's delta cursor, which
            // no run of sipban ever reads.
            let mut run = crowdsec::pull(self.0, &key, cx.now).await;
            let remote = &mut cx.remote;
            if let Some(ip) = run.remote_addr {
                remote.hosts.push((ip, crowdsec::SOURCE.to_string()));
            }
            remote.errors.extend(run.error());
            // Only a successful pull is the complete list; a failed one leaves the entries
            // already applied until they expire (last good kept).
            if let (Some(i), crowdsec::PullStatus::Ok) = (index, &run.status) {
                remote.inputs.push(Input {
                    source: i,
                    sightings: std::mem::take(&mut run.sightings).into(),
                    complete: true,
                });
            }
            remote.crowdsec = Some(run);
            Ok(())
        })
    }
}
