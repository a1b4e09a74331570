//! A feed's last good copy stands in for a download only when it is exactly what was written:
//! a 304 over a copy that was emptied, truncated, replaced or made unreadable must not empty
//! the set. Each test: a first sync downloads 1,000 addresses from a server that answers 304
//! to every conditional request; the copy is damaged; the second sync must keep the 1,000
//! entries, by one unconditional download.

use crate::common::netns::run_in;
use crate::common::run::{json, sipban, text};
use crate::common::stub::{Reply, Stub};
use sipban::backend::ipset::Ipset;
use std::net::Ipv4Addr;
use std::path::Path;

const ENTRIES: usize = 1000;

fn in_set(set: &str) -> usize {
    Ipset::new()
        .read(set)
        .expect("read set")
        .map(|k| k.members.len())
        .unwrap_or(0)
}

/// Sync, damage the cached copy with `damage`, sync again.
fn survives(damage: fn(&Path)) {
    let ns = netns_or_skip!();
    run_in(&ns, move || {
        let stub = Stub::start();
        let dir = tempfile::tempdir().unwrap();
        let body: String = (0..ENTRIES as u32)
            .map(|i| format!("{}\n", Ipv4Addr::from(0x2d00_0000u32 + i)))
            .collect();
        stub.set(
            "/l",
            Reply::ok(body)
                .header("ETag", "\"v1\"")
                .header("Last-Modified", "Tue, 01 Dec 2026 00:00:00 GMT")
                .unchanged_when_asked(),
        );
        let state = dir.path().join("state");
        let cfg = format!(
            "state_dir: {}\nsets:\n  v4: {{ name: c4, cap: 65536 }}\n  v6: {{ name: c6, cap: 1024 }}\nfeeds:\n  - {{ name: web, url: '{}', interval: 0s, ttl: 1d }}\n",
            state.display(),
            stub.url("/l")
        );
        std::fs::write(dir.path().join("config.yaml"), cfg).unwrap();
        let o = sipban(dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(in_set("c4"), ENTRIES);
        let copy = state.join("feeds/web.list");
        assert!(copy.is_file());

        damage(&copy);
        let o = sipban(dir.path(), &["sync", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(
            in_set("c4"),
            ENTRIES,
            "the set keeps its entries: {}",
            text(&o)
        );
        let reqs = stub.requests("/l");
        assert_eq!(reqs.len(), 2, "one download in each run");
        assert!(!reqs[0].conditional());
        assert!(
            !reqs[1].conditional(),
            "a damaged copy is never offered for a 304: {:?}",
            reqs[1].headers
        );
        assert_eq!(json(&o)["sources"][0]["feed"]["status"], "fresh");
        // The new copy is written, and the next run may ask conditionally again.
        let o = sipban(dir.path(), &["sync", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(json(&o)["sources"][0]["feed"]["status"], "not_modified");
        assert!(stub.requests("/l")[2].conditional());
        assert_eq!(in_set("c4"), ENTRIES);
    });
}

#[test]
fn a_304_over_an_emptied_copy_downloads_once() {
    survives(|p| std::fs::write(p, b"").unwrap());
}

#[test]
fn a_304_over_a_truncated_copy_downloads_once() {
    survives(|p| {
        let len = std::fs::metadata(p).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(p)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
    });
}

#[test]
fn a_304_over_a_copy_replaced_by_garbage_downloads_once() {
    survives(|p| {
        let len = std::fs::metadata(p).unwrap().len() as usize;
        // Text, so that it reads (a disk that returns junk, not an I/O error).
        let garbage: Vec<u8> = (0..len).map(|i| b"x7#q:~ \n"[i * 7919 % 8]).collect();
        std::fs::write(p, garbage).unwrap();
    });
}

/// Same size, other addresses: only the digest tells.
#[test]
fn a_304_over_a_copy_listing_other_addresses_downloads_once() {
    survives(|p| {
        let text = std::fs::read_to_string(p).unwrap().replace("45.", "46.");
        std::fs::write(p, text).unwrap();
    });
}

/// As root nothing is unreadable by mode: a directory at the copy's path.
#[test]
fn a_304_over_an_unreadable_copy_downloads_once() {
    survives(|p| {
        std::fs::remove_file(p).unwrap();
        std::fs::create_dir(p).unwrap();
    });
}

/// Handled like a deleted copy before the copy was verified; kept as a guard.
#[test]
fn a_304_over_a_dangling_link_downloads_once() {
    survives(|p| {
        std::fs::remove_file(p).unwrap();
        std::os::unix::fs::symlink("/nonexistent/web.list", p).unwrap();
    });
}
