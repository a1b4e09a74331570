//! The corpus tests cannot pass vacuously in CI: with the corpus folder missing they skip on a
//! developer's machine but fail under `CI=true`. Checked by running this test binary again on
//! just those tests, with `SIPBAN_SHARED_DIR` pointing at a folder that has no corpus.

use crate::common::corpus::SHARED_DIR_ENV;
use crate::common::run::text;
use std::process::{Command, Output};

/// Every test that reads the third-party corpus.
const CORPUS_TESTS: &[&str] = &[
    "asterisk_corpus::fail2ban_failjson_cases",
    "asterisk_corpus::crowdsec_samples",
    "asterisk_corpus::almon_samples",
    "kernlog_corpus::crowdsec_iptables_lines_one_by_one",
    "kernlog_corpus::crowdsec_multi_port_scan_crosses_the_distinct_port_threshold",
];

/// This binary, running only the corpus tests, with `CI` set to `ci` (or unset).
fn run_corpus_tests(shared: &std::path::Path, ci: Option<&str>) -> Output {
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary's path"));
    cmd.args(CORPUS_TESTS)
        .args(["--exact", "--test-threads=1"])
        .env(SHARED_DIR_ENV, shared)
        .env_remove("CI");
    if let Some(ci) = ci {
        cmd.env("CI", ci);
    }
    cmd.output().expect("run the test binary")
}

#[test]
fn a_missing_corpus_fails_the_corpus_tests_under_ci_and_skips_them_otherwise() {
    let shared = tempfile::tempdir().unwrap(); // no `corpus` folder in it
    let missing = shared.path().join("corpus");
    assert!(!missing.exists());
    let n = CORPUS_TESTS.len();

    let o = run_corpus_tests(shared.path(), Some("true"));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_ne!(o.status.code(), Some(0), "CI=true: {}", text(&o));
    for t in CORPUS_TESTS {
        assert!(
            out.contains(&format!("test {t} ... FAILED")),
            "CI=true: {t} did not fail: {}",
            text(&o)
        );
    }
    assert!(
        out.contains(&format!("0 passed; {n} failed")),
        "CI=true: {}",
        text(&o)
    );
    let why = format!("corpus folder {} is missing", missing.display());
    assert!(out.contains(&why), "CI=true: no `{why}`: {}", text(&o));

    // The same run outside CI skips (passes), so the failure above is CI=true's doing.
    let o = run_corpus_tests(shared.path(), None);
    assert_eq!(o.status.code(), Some(0), "without CI: {}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("{n} passed; 0 failed")),
        "without CI: {}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&why),
        "without CI: no skip notice: {}",
        text(&o)
    );
}
