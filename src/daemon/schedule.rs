//! Cron schedules for the daemon, in UTC, driven by a monotonic sleep loop.
//!
//! A [`Schedule`] is a cron pattern with seconds (`"0 */10 * * * *"`; a five-field pattern
//! means second 0), parsed by `croner` and always evaluated in UTC, so DST changes cannot
//! shift, skip or repeat a firing. A [`Timer`] holds one next firing per schedule and tells
//! the daemon how long to sleep; the sleep itself is `tokio::time::sleep` (the monotonic
//! clock), capped at [`MAX_SLEEP`] so a wall-clock jump (NTP setting the clock of a Raspberry
//! Pi, which has no RTC, some time after boot) is noticed within a minute.
//!
//! Why not tokio-cron-scheduler (the design card's choice): its repeated jobs compute the next
//! tick from the previous one, so a tick noticed more than one interval late (a busy runtime)
//! yields a next tick earlier than the last one and the job never fires again (upstream issue
//! #113, PR #114 unmerged; reproduced by `bench/cron_defect.sh`), and its scheduler wakes every
//! 500 ms even when nothing is due. Here the next firing is always computed from the current
//! time, after the firing, so it is never in the past, and occurrences missed while the
//! daemon was busy collapse into one firing.
//!
//! This module must never read the wall clock itself (the caller passes `now`), so it is
//! tested without sleeping.

use std::time::Duration;

/// The longest single sleep: a wall-clock jump is noticed within this time.
pub const MAX_SLEEP: Duration = Duration::from_secs(60);

pub use crate::config::schedule::Schedule;

/// Next firings of a set of schedules. `K` names what a schedule triggers.
#[derive(Debug)]
pub struct Timer<K> {
    jobs: Vec<(K, Schedule, Option<i64>)>,
    /// The wall time of the last [`Timer::poll`], to notice the clock going backwards.
    last_now: Option<i64>,
}

impl<K: Clone> Timer<K> {
    /// Schedules, each first firing after `now_ms`.
    pub fn new(jobs: Vec<(K, Schedule)>, now_ms: i64) -> Timer<K> {
        let jobs = jobs
            .into_iter()
            .map(|(k, s)| {
                let next = s.next_after(now_ms);
                (k, s, next)
            })
            .collect();
        Timer {
            jobs,
            last_now: Some(now_ms),
        }
    }

    /// What is due at `now_ms` (each due job once, however many of its occurrences were missed)
    /// and the next firing of each due job recomputed from `now_ms`, so never in the past.
    /// When the wall clock went backwards since the last call, every next firing is recomputed
    /// from `now_ms` first (otherwise a job would wait for the clock to catch up).
    pub fn poll(&mut self, now_ms: i64) -> Vec<K> {
        if self.went_back(now_ms) {
            for (_, s, next) in &mut self.jobs {
                *next = s.next_after(now_ms);
            }
        }
        self.last_now = Some(now_ms);
        let mut due = Vec::new();
        for (k, s, next) in &mut self.jobs {
            if next.is_some_and(|n| n <= now_ms) {
                due.push(k.clone());
                *next = s.next_after(now_ms);
            }
        }
        due
    }

    /// How long to sleep from `now_ms` until the next firing (at most [`MAX_SLEEP`]; at least
    /// 1 ms, so a loop never spins). When the wall clock went backwards since the last
    /// [`Timer::poll`], 1 ms: the poll then recomputes the firings at once, rather than after
    /// a capped sleep towards firings that are now days away.
    pub fn sleep_for(&self, now_ms: i64) -> Duration {
        if self.went_back(now_ms) {
            return Duration::from_millis(1);
        }
        let next = self.jobs.iter().filter_map(|(_, _, n)| *n).min();
        match next {
            None => MAX_SLEEP,
            Some(n) => Duration::from_millis(n.saturating_sub(now_ms).clamp(1, 60_000) as u64),
        }
    }

    /// Whether the wall clock is more than a second behind the last poll.
    fn went_back(&self, now_ms: i64) -> bool {
        self.last_now.is_some_and(|last| now_ms + 1000 < last)
    }

    /// Next firing of each schedule (Unix milliseconds), for `status` and logs.
    pub fn next_firings(&self) -> impl Iterator<Item = (&K, &Schedule, Option<i64>)> {
        self.jobs.iter().map(|(k, s, n)| (k, s, *n))
    }
}

/// Wall-clock Unix milliseconds.
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_270_000_000; // 2026-11-21 14:06:40 UTC

    #[test]
    fn parses_with_and_without_seconds_and_rejects_nonsense() {
        let s = Schedule::parse("0 */10 * * * *").unwrap();
        // 14:06:40 → 14:10:00
        assert_eq!(s.next_after(T0), Some(T0 + 200_000));
        let five = Schedule::parse("*/10 * * * *").unwrap();
        assert_eq!(five.next_after(T0), Some(T0 + 200_000));
        assert!(Schedule::parse("every ten minutes").is_err());
        assert!(
            Schedule::parse("0 0 0 30 2 *").is_err(),
            "30 February never comes"
        );
        let e = Schedule::parse("61 * * * * *").unwrap_err();
        assert!(e.contains("sec min hour"), "{e}");
    }

    #[test]
    fn a_late_poll_fires_once_and_the_next_firing_is_in_the_future() {
        let s = Schedule::parse("* * * * * *").unwrap();
        let mut t = Timer::new(vec![("sync", s)], T0);
        assert_eq!(t.poll(T0 + 999), Vec::<&str>::new());
        assert_eq!(t.poll(T0 + 1000), vec!["sync"]);
        // The runtime was blocked for 5.5 s: one firing, not five, and the next is ahead.
        assert_eq!(t.poll(T0 + 6500), vec!["sync"]);
        assert_eq!(t.sleep_for(T0 + 6500), Duration::from_millis(500));
        assert_eq!(t.poll(T0 + 7000), vec!["sync"]);
    }

    #[test]
    fn keeps_firing_through_many_late_ticks() {
        // The defect being guarded against: after late ticks a job must still fire.
        let s = Schedule::parse("* * * * * *").unwrap();
        let mut t = Timer::new(vec![((), s)], T0);
        let mut now = T0;
        let mut fired = 0;
        for i in 0..1000 {
            // Alternate on-time and very late wake-ups.
            now += if i % 3 == 0 {
                4_321
            } else {
                t.sleep_for(now).as_millis() as i64
            };
            fired += t.poll(now).len();
        }
        assert!(fired >= 990, "{fired}");
        assert!(t.next_firings().all(|(_, _, n)| n.unwrap() > now));
    }

    #[test]
    fn a_clock_jumping_back_does_not_stall_the_schedule() {
        let s = Schedule::parse("0 */10 * * * *").unwrap();
        let mut t = Timer::new(vec![("sync", s)], T0);
        // The clock is set back by a day (NTP after a boot with a wrong clock).
        let back = T0 - 86_400_000;
        // Noticed before the next poll: no capped sleep towards a firing a day away.
        assert_eq!(t.sleep_for(back), Duration::from_millis(1));
        assert!(t.poll(back).is_empty());
        assert_eq!(t.sleep_for(back), Duration::from_secs(60));
        assert_eq!(t.next_firings().next().unwrap().2, Some(back + 200_000));
    }

    #[test]
    fn sleeps_are_capped() {
        let s = Schedule::parse("0 0 0 1 1 *").unwrap();
        let t = Timer::new(vec![((), s)], T0);
        assert_eq!(t.sleep_for(T0), MAX_SLEEP);
    }
}
