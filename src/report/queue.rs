//! The report queue: which sinks there are, and how a run's candidates enter the queue.
//!
//! The tables (`report_queue`, `report_sent`, `report_daily`, `report_events`,
//! `report_state`) and the transactions that make delivery survive a kill at any instant live
//! in the store ([`crate::store::report_queue`]); this module re-exports its types, with the
//! item detail fixed to [`Detail`]. Rows hold addresses, times, counts and fixed words: never a
//! key, a header value or a raw log line.

use super::{Candidate, Detail, ReportSettings};
use anyhow::Result;

pub use crate::store::report_queue::{
    day_of, key, Claim, DayUse, Event, InTransaction, QueueDetail, ReportQueue, Standalone, Stats,
};

pub const ABUSEIPDB: &str = "abuseipdb";
pub const WEBHOOK: &str = "webhook";
pub const CROWDSEC: &str = super::crowdsec::SINK;

/// Most items per sink. Items merge per address, so this is reached only when a sink has been
/// unreachable for long under a flood of distinct attackers; the oldest go first.
pub const MAX_ITEMS: usize = 100_000;

/// One queued item.
pub type Item = crate::store::report_queue::Item<Detail>;

impl QueueDetail for Detail {
    fn merge_into(&mut self, other: &Self) {
        self.merge(other);
    }
}

/// Add this run's candidates to the queue, through `queue` (in a run's commit, the handle of
/// its transaction).
pub fn enqueue_all<M>(
    queue: &ReportQueue<'_, M>,
    settings: &ReportSettings,
    candidates: &[Candidate],
    now: i64,
) -> Result<()> {
    queue.ensure_schema()?;
    for (sink, on) in [
        (ABUSEIPDB, settings.abuseipdb.is_some()),
        (WEBHOOK, settings.webhook.is_some()),
        (CROWDSEC, settings.crowdsec.is_some()),
    ] {
        if !on {
            continue;
        }
        // An old item is dropped before new evidence could merge into it (AbuseIPDB refuses
        // attacks older than 60 days; a webhook item that old is of no use either).
        queue.expire(sink, now - super::ABUSEIPDB_MAX_AGE, now)?;
        for c in candidates.iter().filter(|c| c.queued_for(sink)) {
            queue.enqueue(sink, c.ip, c.first, c.last, &c.detail, now)?;
        }
        queue.trim(sink, MAX_ITEMS, now)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::OffenceKind;
    use crate::store::Store;
    use std::net::IpAddr;

    fn detail(n: u64) -> Detail {
        let mut d = Detail {
            events: n,
            ..Detail::default()
        };
        d.kinds.insert(OffenceKind::SipAuth);
        d.rules.insert("sip_registration".into());
        d
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn enqueue_merges_per_address() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let q = store.report_queue();
        q.ensure_schema().unwrap();
        q.enqueue(ABUSEIPDB, ip("45.0.0.1"), 100, 200, &detail(3), 1000)
            .unwrap();
        q.enqueue(ABUSEIPDB, ip("45.0.0.1"), 50, 150, &detail(2), 2000)
            .unwrap();
        q.enqueue(WEBHOOK, ip("45.0.0.1"), 50, 150, &detail(2), 2000)
            .unwrap();
        let items: Vec<Item> = q.items(ABUSEIPDB, 10).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!((items[0].first, items[0].last), (50, 200));
        assert_eq!(items[0].detail.events, 5);
        assert_eq!(items[0].enqueued, 1000);
    }

    #[test]
    fn claims_block_the_address_until_given_back_or_the_interval_passes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let q = store.report_queue();
        q.ensure_schema().unwrap();
        q.enqueue(ABUSEIPDB, ip("45.0.0.1"), 100, 200, &detail(3), 1000)
            .unwrap();
        let it: Vec<Item> = q.due(ABUSEIPDB, 1000, Some(3600), 10).unwrap();
        assert_eq!(it.len(), 1);
        let c = Claim {
            used: 1,
            bulk: false,
            per_ip: true,
            request_ms: 0,
        };
        q.claim(ABUSEIPDB, &[it[0].id], 1000, c).unwrap();
        assert!(q
            .due::<Detail>(ABUSEIPDB, 1000, Some(3600), 10)
            .unwrap()
            .is_empty());
        let s = q.stats(ABUSEIPDB, 1000, Some(3600)).unwrap();
        assert_eq!((s.total, s.waiting_interval, s.in_flight), (1, 1, 1));
        // Unknown fate: the claim stays; only the interval frees it.
        q.retry(ABUSEIPDB, &[it[0].id], 1000, &|_| 60, "timed out", false)
            .unwrap();
        assert!(q
            .due::<Detail>(ABUSEIPDB, 1100, Some(3600), 10)
            .unwrap()
            .is_empty());
        assert_eq!(
            q.due::<Detail>(ABUSEIPDB, 4600, Some(3600), 10)
                .unwrap()
                .len(),
            1
        );
        // A second claim, then a sure failure: given back to the first claim's time.
        q.claim(ABUSEIPDB, &[it[0].id], 4600, c).unwrap();
        q.retry(ABUSEIPDB, &[it[0].id], 4600, &|_| 60, "HTTP 503", true)
            .unwrap();
        assert_eq!(
            q.due::<Detail>(ABUSEIPDB, 4660, Some(3600), 10)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(q.day_use(ABUSEIPDB, 0).unwrap().used, 2);
        q.delivered(ABUSEIPDB, &[it[0].id], 4660).unwrap();
        assert_eq!(q.stats(ABUSEIPDB, 4660, Some(3600)).unwrap().total, 0);
        assert_eq!(q.day_use(ABUSEIPDB, 0).unwrap().reports, 1);
        assert_eq!(q.events(10).unwrap().len(), 2);
    }

    #[test]
    fn the_queue_is_bounded_and_old_items_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let q = store.report_queue();
        q.ensure_schema().unwrap();
        for i in 0..10u8 {
            let a = IpAddr::from([45, 0, 0, i]);
            q.enqueue(WEBHOOK, a, 100 + i64::from(i), 200, &detail(1), 1000)
                .unwrap();
        }
        assert_eq!(q.trim(WEBHOOK, 4, 1000).unwrap(), 6);
        let left: Vec<String> = q
            .items::<Detail>(WEBHOOK, 100)
            .unwrap()
            .into_iter()
            .map(|i| i.ip.to_string())
            .collect();
        assert_eq!(left, ["45.0.0.6", "45.0.0.7", "45.0.0.8", "45.0.0.9"]);
        assert_eq!(q.expire(WEBHOOK, 108, 1000).unwrap(), 2);
        assert_eq!(q.state_int("webhook.overflow_total").unwrap(), Some(6));
        assert_eq!(q.state_int("webhook.expired_total").unwrap(), Some(2));
    }
}
