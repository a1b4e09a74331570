//! The report queue commits with the run: a run's queue items and the detector state that
//! found them (its log cursors) are written in one transaction, so a run that dies before
//! its commit leaves neither (the next run reads the same lines and queues them once), and a
//! run that commits leaves both (the lines are never read again, their offences are queued).

use sipban::report::comment::HostIdentity;
use sipban::report::queue::{self, ABUSEIPDB, WEBHOOK};
use sipban::report::{self, Offence, OffenceKind, RawReport, Transport};
use sipban::store::{RunCommit, Store};

fn settings() -> report::ReportSettings {
    let raw: RawReport = sipban::config::parse_yaml(
        "abuseipdb: {}\nwebhook: {url: 'https://collector.example/hook'}\n",
        "t",
    )
    .unwrap();
    sipban::config::report::resolve(raw, std::path::Path::new("/")).unwrap()
}

fn candidates(s: &report::ReportSettings) -> Vec<report::Candidate> {
    let mut o = Offence::new("45.2.0.1".parse().unwrap(), 100, 200);
    o.add(OffenceKind::SipAuth, "security_event", 5)
        .transport(Transport::Tcp);
    report::select_with(s, &[o], &|_| true, &HostIdentity::default())
}

fn commit<'a>(blobs: &'a [(String, Vec<u8>)]) -> RunCommit<'a> {
    RunCommit {
        entries: &[],
        source_names: &[],
        packed: &[],
        feeds: &[],
        blobs,
        run: None,
    }
}

#[test]
fn queue_items_and_detector_cursors_commit_together() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings();
    let c = candidates(&s);
    let mut store = Store::open(dir.path()).unwrap();
    let blobs = vec![(
        "asterisk.state".to_string(),
        b"cursor after the lines".to_vec(),
    )];

    // The enqueue fails after writing: nothing of the run is saved.
    let r = store.commit_run_with(&commit(&blobs), |tx| {
        queue::enqueue_all(&tx.report_queue(), &s, &c, 1000)?;
        anyhow::bail!("disk full")
    });
    assert!(r.is_err());
    assert_eq!(store.blob("asterisk.state").unwrap(), None);
    assert!(
        !store.report_queue().has_tables().unwrap()
            || store
                .report_queue()
                .items::<sipban::report::Detail>(ABUSEIPDB, 10)
                .unwrap()
                .is_empty()
    );

    // It succeeds: both are there.
    store
        .commit_run_with(&commit(&blobs), |tx| {
            queue::enqueue_all(&tx.report_queue(), &s, &c, 1000)
        })
        .unwrap();
    drop(store);
    let store = Store::open_read_only(dir.path()).unwrap().unwrap();
    assert_eq!(
        store.blob("asterisk.state").unwrap().as_deref(),
        Some(&b"cursor after the lines"[..])
    );
    for sink in [ABUSEIPDB, WEBHOOK] {
        let items = store
            .report_queue()
            .items::<sipban::report::Detail>(sink, 10)
            .unwrap();
        assert_eq!(items.len(), 1, "{sink}");
        assert_eq!(items[0].ip.to_string(), "45.2.0.1");
        assert_eq!(items[0].detail.events, 5);
    }
}
