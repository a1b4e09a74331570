//! Reproduces (or not) tokio-cron-scheduler's open defect: a repeated job stops firing for good
//! once a tick is noticed more than one interval late (the scheduler then computes
//! `next_tick = old_next_tick + interval`, which is earlier than `last_tick`, and its
//! `must_run` test excludes the job forever). sipban's daemon runs on a current-thread tokio
//! runtime and applies batches synchronously, so a slow apply is exactly such a delay.
//!
//! Jobs: a 1 s repeated job and a per-second cron job. Load: every 3 s a task blocks the
//! runtime thread for 1.6 s (like a synchronous 65,536-entry ipset rebuild on a Pi). Afterwards
//! `cron-defect idle` leaves a scheduler with one 10-minute cron job alone and counts the
//! process's voluntary context switches (how often an idle scheduler wakes up).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_cron_scheduler::{Job, JobScheduler};

fn ctx_switches() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("voluntary_ctxt_switches"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let arg = std::env::args().nth(1).unwrap_or_default();
    if arg == "idle" {
        return idle().await;
    }
    let secs: u64 = arg.parse().unwrap_or(20);
    let start = Instant::now();
    let mut sched = JobScheduler::new().await.expect("scheduler");
    let repeated = Arc::new(AtomicU32::new(0));
    let cron = Arc::new(AtomicU32::new(0));
    let (r, c) = (repeated.clone(), cron.clone());
    sched
        .add(
            Job::new_repeated(Duration::from_secs(1), move |_, _| {
                let n = r.fetch_add(1, Ordering::Relaxed) + 1;
                println!(
                    "{:6.2}s repeated job fired ({n})",
                    start.elapsed().as_secs_f64()
                );
            })
            .expect("job"),
        )
        .await
        .expect("add");
    sched
        .add(
            Job::new("* * * * * *", move |_, _| {
                let n = c.fetch_add(1, Ordering::Relaxed) + 1;
                println!(
                    "{:6.2}s cron job fired ({n})",
                    start.elapsed().as_secs_f64()
                );
            })
            .expect("job"),
        )
        .await
        .expect("add");
    sched.start().await.expect("start");
    // Load: block the only runtime thread now and then.
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(3)).await;
            println!(
                "{:6.2}s load: blocking the runtime for 1.6 s",
                start.elapsed().as_secs_f64()
            );
            std::thread::sleep(Duration::from_millis(1600));
        }
    });
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (rn, cn) = (
        repeated.load(Ordering::Relaxed),
        cron.load(Ordering::Relaxed),
    );
    // Did either stop? Watch 5 more seconds without load... the load task still runs, so look
    // at whether the counters move at all in the last stretch.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rn2, cn2) = (
        repeated.load(Ordering::Relaxed),
        cron.load(Ordering::Relaxed),
    );
    println!("after {secs} s under load: repeated fired {rn}, cron fired {cn}");
    println!(
        "in the next 5 s: repeated fired {} more, cron fired {} more",
        rn2 - rn,
        cn2 - cn
    );
    println!(
        "RESULT repeated_job_stopped={} cron_job_stopped={}",
        rn2 == rn,
        cn2 == cn
    );
    let _ = sched.shutdown().await;
}

/// Idle wake-ups: a fresh scheduler with one job every 10 minutes and nothing else.
async fn idle() {
    let idle = JobScheduler::new().await.expect("scheduler");
    idle.add(Job::new("0 */10 * * * *", |_, _| {}).expect("job"))
        .await
        .expect("add");
    idle.start().await.expect("start");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = ctx_switches();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = ctx_switches();
    println!(
        "RESULT idle_wakeups_per_s={:.1} (voluntary context switches over 10 s with one 10-minute cron job)",
        (after - before) as f64 / 10.0
    );
}
