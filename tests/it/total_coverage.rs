//! The ceiling on what all sources together may cover (`max_total_coverage`), end to end in a
//! private network namespace: the real binary, real `ipset`, real SQLite, file feeds.

use crate::common::netns::run_in;
use crate::common::run::{json, sipban, text};
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::Path;

fn write_config(dir: &Path, extra: &str, feeds: &[(&str, &Path, &str)]) {
    let mut cfg = format!(
        "state_dir: {}\nsets:\n  v4: {{ name: t4, cap: 1000 }}\n  v6: {{ name: t6, cap: 1000 }}\n{extra}feeds:\n",
        dir.join("state").display()
    );
    for (name, path, more) in feeds {
        cfg.push_str(&format!(
            "  - {{ name: {name}, url: 'file://{}', ttl: 1d, max_shrink: 100%{more} }}\n",
            path.display()
        ));
    }
    std::fs::write(dir.join("config.yaml"), cfg).unwrap();
}

fn members(set: &str) -> HashSet<String> {
    sipban::backend::ipset::Ipset::new()
        .read(set)
        .expect("read set")
        .map(|k| k.members.keys().map(sipban::net::display_net).collect())
        .unwrap_or_default()
}

fn set(items: &[&str]) -> HashSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Two feeds share a ceiling of 100,000 IPv4 addresses. The download that takes the total over
/// it is refused (exit 3, a message naming the feed, the coverage and the ceiling) and that
/// feed's last good entries stay; the other feed's new entries are applied in the same run.
#[test]
fn the_download_that_takes_all_sources_over_the_ceiling_is_refused() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (a, b) = (d.join("a.txt"), d.join("b.txt"));
        std::fs::write(&a, "45.0.0.0/16\n").unwrap();
        std::fs::write(&b, "46.0.0.0/24\n").unwrap();
        write_config(
            d,
            "max_total_coverage: { v4: 100000 }\n",
            &[("a", &a, ""), ("b", &b, "")],
        );
        let o = sipban(d, &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(members("t4"), set(&["45.0.0.0/16", "46.0.0.0/24"]));

        // a grows a little (still under the ceiling with b's last good copy); b then lists a
        // whole /16 on top, which takes the total to 131,073.
        std::fs::write(&a, "45.0.0.0/16\n47.0.0.1\n").unwrap();
        std::fs::write(&b, "46.0.0.0/16\n").unwrap();
        for args in [&["sync", "--dry-run"][..], &["sync"][..]] {
            let o = sipban(d, args);
            assert_eq!(o.status.code(), Some(3), "{args:?}: {}", text(&o));
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert!(
                stderr.contains("feed b")
                    && stderr.contains("131,073 IPv4 addresses")
                    && stderr.contains("max_total_coverage 100,000")
                    && stderr.contains("keeping its last good entries"),
                "{args:?}: {}",
                text(&o)
            );
            assert!(!stderr.contains("feed a"), "{args:?}: {}", text(&o));
        }
        assert_eq!(
            members("t4"),
            set(&["45.0.0.0/16", "46.0.0.0/24", "47.0.0.1"]),
            "b's last good entries stay, a's new entry is applied"
        );
        // The next run still refuses it and keeps the entries; the feed report says why.
        let o = sipban(d, &["sync", "--json"]);
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        let j = json(&o);
        let b_report = &j["sources"][1]["feed"];
        assert_eq!(b_report["status"], "failed", "{j}");
        assert!(
            b_report["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("max_total_coverage"),
            "{j}"
        );
        assert_eq!(
            members("t4"),
            set(&["45.0.0.0/16", "46.0.0.0/24", "47.0.0.1"])
        );

        // Once b shrinks back under the ceiling, its download is taken again.
        std::fs::write(&b, "46.0.1.0/24\n").unwrap();
        let o = sipban(d, &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(
            members("t4"),
            set(&["45.0.0.0/16", "46.0.1.0/24", "47.0.0.1"])
        );
    });
}

/// A feed allowed by its own guard to cover all of IPv4 (`max_coverage: { v4: 100% }`) still
/// meets the default ceiling on all sources together.
#[test]
fn the_default_ceiling_refuses_all_of_ipv4() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let list = d.join("all.txt");
        let every_8: String = (1..=223u32)
            .map(|o| format!("{}/8\n", Ipv4Addr::from(o << 24)))
            .collect();
        std::fs::write(&list, every_8).unwrap();
        write_config(
            d,
            "",
            &[(
                "wide",
                &list,
                ", min_prefix: { v4: 8 }, max_coverage: { v4: '100%' }",
            )],
        );
        let o = sipban(d, &["sync"]);
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            stderr.contains("feed wide") && stderr.contains("max_total_coverage"),
            "{}",
            text(&o)
        );
        assert!(members("t4").is_empty());
    });
}

/// An HTTP feed refused by the ceiling keeps its last good copy on disk, and its validators:
/// the next request asks for the list afresh (`If-None-Match` of the last good copy), so a
/// `304` can never turn the refused list into the cached one.
#[test]
fn a_refused_http_download_keeps_the_last_good_copy_and_its_validators() {
    use crate::common::stub::{Reply, Stub};
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let stub = Stub::start();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let a = d.join("a.txt");
        std::fs::write(&a, "45.0.0.0/16\n").unwrap();
        stub.set("/l", Reply::ok("46.0.0.0/24\n").header("ETag", "\"v1\""));
        let mut cfg = String::new();
        cfg.push_str(&format!(
            "state_dir: {}\nsets:\n  v4: {{ name: t4, cap: 1000 }}\n  v6: {{ name: t6, cap: 1000 }}\n",
            d.join("state").display()
        ));
        cfg.push_str("max_total_coverage: { v4: 100000 }\nfeeds:\n");
        cfg.push_str(&format!(
            "  - {{ name: a, url: 'file://{}', ttl: 1d }}\n  - {{ name: web, url: '{}', ttl: 1d, interval: 1s, max_shrink: 100% }}\n",
            a.display(),
            stub.url("/l")
        ));
        std::fs::write(d.join("config.yaml"), cfg).unwrap();
        let o = sipban(d, &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let cache = d.join("state/feeds/web.list");
        assert_eq!(std::fs::read_to_string(&cache).unwrap(), "46.0.0.0/24\n");

        stub.set("/l", Reply::ok("46.0.0.0/16\n").header("ETag", "\"v2\""));
        for run in 1..=2 {
            // The feed's polite interval (1 s) must pass before it is downloaded again.
            std::thread::sleep(std::time::Duration::from_millis(1100));
            let o = sipban(d, &["sync"]);
            assert_eq!(o.status.code(), Some(3), "run {run}: {}", text(&o));
            assert!(
                text(&o).contains("feed web: total coverage guard")
                    && text(&o).contains("max_total_coverage 100,000"),
                "run {run}: {}",
                text(&o)
            );
            assert_eq!(std::fs::read_to_string(&cache).unwrap(), "46.0.0.0/24\n");
            assert_eq!(members("t4"), set(&["45.0.0.0/16", "46.0.0.0/24"]));
        }
        let reqs = stub.requests("/l");
        assert_eq!(reqs.len(), 3);
        assert!(
            reqs[2]
                .headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("if-none-match") && v == "\"v1\""),
            "the refused download's ETag was not kept: {:?}",
            reqs[2].headers
        );
        let st = json(&sipban(d, &["status", "--json"]));
        assert!(st.to_string().contains("max_total_coverage"), "{st}");
    });
}
