//! Metrics after each run: a node_exporter textfile (Prometheus text format 0.0.4) and a JSON
//! run summary (`state_dir/last-run.json`), both replaced atomically (a temporary file in the
//! same directory, fsync, rename), so a scraper never reads half a file.
//!
//! Names follow Prometheus conventions: `sipban_` prefix, base units in the name (`_seconds`,
//! `_timestamp_seconds`), `_total` only on counters, one `# HELP`/`# TYPE` per family. The
//! numbers come from [`crate::status`], so `sipban status` and the metrics agree.
//!
//! This module must never put a secret, an address list or free text other than source and
//! set names into a metric (label values are escaped).

use crate::pipeline::sync::RunReport;
use crate::status::Status;
use anyhow::{Context, Result};
use std::fmt::Write as _;

/// The JSON run summary in the state directory.
pub const LAST_RUN_FILE: &str = "last-run.json";

pub use crate::config::metrics::MetricsSettings;
pub use crate::config::raw::RawMetrics;

pub use crate::fsio::write_atomic;

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", esc(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// The textfile for a status; `duration` is the last run's precise duration when the caller
/// measured it (otherwise whole seconds from the run history).
pub fn render(st: &Status, duration: Option<f64>) -> String {
    let mut o = Out(String::new());
    last_run(&mut o, st, duration);
    o.family(
        "sipban_source_entries",
        "gauge",
        "Unexpired entries each source holds in the state (before the allowlist and the cap).",
    );
    for s in &st.sources {
        o.sample(
            "sipban_source_entries",
            &[("source", &s.name), ("kind", &s.kind)],
            s.entries as f64,
        );
    }
    o.family(
        "sipban_source_in_set_entries",
        "gauge",
        "Entries of each source that were in a kernel set after the last run.",
    );
    for s in &st.sources {
        if let Some(n) = s.in_set {
            o.sample(
                "sipban_source_in_set_entries",
                &[("source", &s.name)],
                n as f64,
            );
        }
    }
    o.family(
        "sipban_source_last_success_timestamp_seconds",
        "gauge",
        "When each source was last read successfully (Unix time).",
    );
    for s in &st.sources {
        if let Some(t) = s.last_success {
            o.sample(
                "sipban_source_last_success_timestamp_seconds",
                &[("source", &s.name)],
                t as f64,
            );
        }
    }
    o.family(
        "sipban_source_staleness_seconds",
        "gauge",
        "Seconds since each source was last read successfully.",
    );
    for s in &st.sources {
        if let Some(a) = s.staleness_seconds {
            o.sample(
                "sipban_source_staleness_seconds",
                &[("source", &s.name)],
                a as f64,
            );
        }
    }
    o.family(
        "sipban_source_consecutive_failures",
        "gauge",
        "Failed fetches or reads of each source since its last success.",
    );
    for s in &st.sources {
        o.sample(
            "sipban_source_consecutive_failures",
            &[("source", &s.name)],
            f64::from(s.consecutive_failures),
        );
    }
    detectors(&mut o, st);
    firewall(&mut o, st);
    sets_manual_reports(&mut o, st);
    crowdsec(&mut o, st);
    if let Some(r) = &st.state_rebuilt {
        o.family(
            "sipban_state_corrupt_timestamp_seconds",
            "gauge",
            "When the state database was last found corrupt or lost, moved aside and rebuilt (Unix time); absent if never.",
        );
        o.sample(
            "sipban_state_corrupt_timestamp_seconds",
            &[],
            r.marker.at as f64,
        );
    }
    o.0
}

/// sipban's DROP rules: present or not, their counters, how often they were put back, and
/// what references each set.
fn firewall(o: &mut Out, st: &Status) {
    o.family(
        "sipban_set_references",
        "gauge",
        "Kernel objects (firewall rules, list:set sets) that use each set; 0 means its entries block nothing.",
    );
    for s in &st.sets {
        if let Some(r) = s.references {
            o.sample(
                "sipban_set_references",
                &[("set", &s.name), ("family", s.family.label())],
                f64::from(r),
            );
        }
    }
    let fw = &st.firewall;
    if fw.error.is_none() {
        o.family(
            "sipban_rules_present",
            "gauge",
            "1 for each sipban DROP rule in place, 0 for a recorded rule that is missing.",
        );
        for r in &fw.rules {
            let place = r.place.to_string();
            let labels = [
                ("set", r.set.as_str()),
                ("family", r.family.label()),
                ("place", place.as_str()),
            ];
            o.sample(
                "sipban_rules_present",
                &labels,
                f64::from(u8::from(r.present)),
            );
        }
        for (name, help) in [
            (
                "sipban_rule_packets_total",
                "Packets each sipban DROP rule dropped (the kernel's rule counter).",
            ),
            (
                "sipban_rule_bytes_total",
                "Bytes each sipban DROP rule dropped (the kernel's rule counter).",
            ),
        ] {
            o.family(name, "counter", help);
            for r in fw.rules.iter().filter(|r| r.present) {
                let place = r.place.to_string();
                let labels = [
                    ("set", r.set.as_str()),
                    ("family", r.family.label()),
                    ("place", place.as_str()),
                ];
                let v = if name.contains("packets") {
                    r.packets
                } else {
                    r.bytes
                };
                o.sample(name, &labels, v as f64);
            }
        }
    }
    if fw.installed {
        o.family(
            "sipban_rules_reinstalled_total",
            "counter",
            "Times a sync or `firewall check --repair` found recorded rules missing and put them back.",
        );
        o.sample(
            "sipban_rules_reinstalled_total",
            &[],
            fw.reinstalled_total as f64,
        );
    }
}

/// The log detectors' offence counters (absent when no detector is configured).
fn detectors(o: &mut Out, st: &Status) {
    if !st.detectors.is_empty() {
        o.family(
            "sipban_detector_evictions_total",
            "counter",
            "Addresses each log detector's bounded offence counter dropped to make room (the furthest from a ban first).",
        );
    }
    for d in &st.detectors {
        if let Some(n) = d.evictions {
            o.sample(
                "sipban_detector_evictions_total",
                &[("detector", &d.name)],
                n as f64,
            );
        }
    }
    if let Some(w) = &st.sip_wire {
        o.family(
            "sipban_wire_events_total",
            "counter",
            "What the daemon's SIP-on-the-wire inputs saw since they were opened, by kind (as last saved).",
        );
        for (k, v) in &w.counters {
            o.sample("sipban_wire_events_total", &[("kind", k)], *v as f64);
        }
        o.family(
            "sipban_wire_callids",
            "gauge",
            "Call-IDs the daemon holds for attributing Asterisk's Timeout lines.",
        );
        o.sample("sipban_wire_callids", &[], w.callids as f64);
    }
    if st.detectors.iter().any(|d| d.failing.is_some()) {
        o.family(
            "sipban_detector_failing_sources",
            "gauge",
            "Addresses each log detector is counting that have not reached a ban (as of its last pass).",
        );
    }
    for d in &st.detectors {
        if let Some(fl) = &d.failing {
            o.sample(
                "sipban_detector_failing_sources",
                &[("detector", &d.name)],
                fl.total as f64,
            );
        }
    }
    if st.detectors.iter().any(|d| !d.inputs.is_empty()) {
        o.family(
            "sipban_detector_input_lines",
            "gauge",
            "Lines of each followed input in the last run, by outcome (read, parsed, matched, refused, unparsed: in no layout sipban knows).",
        );
    }
    for d in &st.detectors {
        for i in &d.inputs {
            let c = &i.counts;
            for (outcome, n) in [
                ("read", c.read),
                ("parsed", c.parsed),
                ("matched", c.matched),
                ("refused", c.refused),
                ("unparsed", c.unparsed),
            ] {
                o.sample(
                    "sipban_detector_input_lines",
                    &[
                        ("detector", &d.name),
                        ("input", &i.path),
                        ("outcome", outcome),
                    ],
                    n as f64,
                );
            }
        }
    }
}

/// The `sipban_last_run_*` families (absent before the first run).
fn last_run(o: &mut Out, st: &Status, duration: Option<f64>) {
    if let Some(r) = &st.last_run {
        o.family(
            "sipban_last_run_timestamp_seconds",
            "gauge",
            "When the last sync run finished (Unix time).",
        );
        o.sample("sipban_last_run_timestamp_seconds", &[], r.finished as f64);
        o.family(
            "sipban_last_run_duration_seconds",
            "gauge",
            "How long the last sync run took.",
        );
        o.sample(
            "sipban_last_run_duration_seconds",
            &[],
            duration.unwrap_or((r.finished - r.started).max(0) as f64),
        );
        o.family(
            "sipban_last_run_outcome",
            "gauge",
            "Outcome of the last sync run: 1 for the outcome it had (ok, partial: a source failed, failed: nothing applied).",
        );
        for oc in ["ok", "partial", "failed"] {
            let v = if r.outcome == oc { 1.0 } else { 0.0 };
            o.sample("sipban_last_run_outcome", &[("outcome", oc)], v);
        }
    }
}

/// Set sizes against caps, manual bans and the report queue.
fn sets_manual_reports(o: &mut Out, st: &Status) {
    o.family(
        "sipban_set_entries",
        "gauge",
        "Entries in each kernel set (from the last run when the kernel cannot be read).",
    );
    for s in &st.sets {
        if let Some(n) = s.entries {
            o.sample(
                "sipban_set_entries",
                &[("set", &s.name), ("family", s.family.label())],
                n as f64,
            );
        }
    }
    o.family(
        "sipban_set_max_entries",
        "gauge",
        "The cap of each kernel set, enforced by sipban before the kernel sees a batch.",
    );
    for s in &st.sets {
        o.sample(
            "sipban_set_max_entries",
            &[("set", &s.name), ("family", s.family.label())],
            f64::from(s.cap),
        );
    }
    o.family(
        "sipban_set_evicted_entries",
        "gauge",
        "Candidates left out of each set over its cap in the last run.",
    );
    for s in &st.sets {
        o.sample(
            "sipban_set_evicted_entries",
            &[("set", &s.name), ("family", s.family.label())],
            s.evicted as f64,
        );
    }
    o.family(
        "sipban_manual_bans",
        "gauge",
        "Unexpired manual bans (sipban ban).",
    );
    o.sample("sipban_manual_bans", &[], st.manual.bans as f64);
    o.family(
        "sipban_manual_unbans",
        "gauge",
        "Manual unbans still keeping an address out (sipban unban).",
    );
    o.sample("sipban_manual_unbans", &[], st.manual.unbans as f64);
    o.family(
        "sipban_manual_allowlist_entries",
        "gauge",
        "Entries of the manual allowlist (sipban unban --allow).",
    );
    o.sample(
        "sipban_manual_allowlist_entries",
        &[],
        st.manual.allowlist as f64,
    );
    if !st.report_queue.is_empty() {
        o.family(
            "sipban_reports_queued",
            "gauge",
            "Upstream reports waiting to be sent, per sink.",
        );
        for q in &st.report_queue {
            o.sample(
                "sipban_reports_queued",
                &[("sink", &q.sink)],
                q.queued as f64,
            );
        }
        o.family(
            "sipban_reports_sent_total",
            "counter",
            "Upstream reports the sink accepted, per sink.",
        );
        for q in &st.report_queue {
            o.sample(
                "sipban_reports_sent_total",
                &[("sink", &q.sink)],
                q.sent as f64,
            );
        }
    }
}

/// The CrowdSec source and push.
fn crowdsec(o: &mut Out, st: &Status) {
    let Some(c) = &st.crowdsec else { return };
    if let Some(p) = &c.last_pull {
        o.family(
            "sipban_crowdsec_decisions",
            "gauge",
            "Ban decisions taken in from the CrowdSec LAPI at the last pull, by scope and family.",
        );
        for (scope, family, key) in [
            ("ip", "v4", "ip_v4"),
            ("ip", "v6", "ip_v6"),
            ("range", "v4", "range_v4"),
            ("range", "v6", "range_v6"),
        ] {
            let n = p["by_scope"][key].as_f64().unwrap_or(0.0);
            o.sample(
                "sipban_crowdsec_decisions",
                &[("scope", scope), ("family", family)],
                n,
            );
        }
        o.family(
            "sipban_crowdsec_pull_duration_seconds",
            "gauge",
            "How long the last pull of the LAPI's full state took.",
        );
        let ms = p["millis"].as_f64().unwrap_or(0.0);
        o.sample("sipban_crowdsec_pull_duration_seconds", &[], ms / 1000.0);
        o.family(
            "sipban_crowdsec_pull_ok",
            "gauge",
            "1 when the last pull of the LAPI succeeded.",
        );
        let ok = f64::from(u8::from(p["status"] == "ok"));
        o.sample("sipban_crowdsec_pull_ok", &[], ok);
    }
    if c.push {
        o.family(
            "sipban_crowdsec_alerts_pushed_total",
            "counter",
            "Alerts of own detections the CrowdSec LAPI accepted.",
        );
        o.sample(
            "sipban_crowdsec_alerts_pushed_total",
            &[],
            c.pushed_total as f64,
        );
        o.family(
            "sipban_crowdsec_alerts_queued",
            "gauge",
            "Alerts waiting to be pushed.",
        );
        o.sample("sipban_crowdsec_alerts_queued", &[], c.push_queued as f64);
    }
}

/// After a real run: `state_dir/last-run.json`, and the textfile when configured. Failures are
/// returned for the caller to log; they never change the run's outcome.
pub fn after_run(
    settings: &crate::config::Settings,
    report: &RunReport,
    duration: f64,
    ipset: &crate::backend::Kernel,
) -> Result<()> {
    let mut summary = report.summary_json();
    if let Some(m) = summary.as_object_mut() {
        m.insert("started".into(), report.started.into());
        m.insert("finished".into(), report.finished.into());
        m.insert(
            "duration_seconds".into(),
            serde_json::Value::from((duration * 1000.0).round() / 1000.0),
        );
    }
    let json = serde_json::to_vec_pretty(&summary).context("encoding the run summary")?;
    write_atomic(&settings.state_dir.join(LAST_RUN_FILE), &json)?;
    write_textfile(settings, Some(duration), ipset)
}

/// Write the textfile from the current status (when `metrics.textfile` is set).
pub fn write_textfile(
    settings: &crate::config::Settings,
    duration: Option<f64>,
    ipset: &crate::backend::Kernel,
) -> Result<()> {
    let Some(path) = &settings.metrics.textfile else {
        return Ok(());
    };
    let st = crate::status::gather(settings, ipset, crate::pipeline::sync::unix_now())?;
    write_atomic(path, render(&st, duration).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::metrics::resolve;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.prom");
        write_atomic(&p, b"one\n").unwrap();
        write_atomic(&p, b"two\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(write_atomic(&dir.path().join("missing/x.prom"), b"").is_err());
    }

    #[test]
    fn textfile_settings_are_checked() {
        assert!(resolve(Some(RawMetrics {
            textfile: Some("rel.prom".into())
        }))
        .is_err());
        assert!(resolve(Some(RawMetrics {
            textfile: Some("/x/sipban.txt".into())
        }))
        .is_err());
        assert!(resolve(None).unwrap().textfile.is_none());
    }
}
