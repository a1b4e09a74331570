//! The built-in feed catalogue: the YAML files in `feeds/`, compiled into the binary so that
//! `use: blocklist-de-sip` works on a box with nothing but the binary installed.
//!
//! Each entry carries its source URL, format, polite polling interval and a licence note. The
//! catalogue is data only: it must never fetch anything or hold code paths of its own.

use super::parse_yaml;
use super::raw::RawFeed;
use std::sync::OnceLock;

/// (file name, text) of every catalogue entry. A test checks this list against `feeds/`.
pub const FILES: &[(&str, &str)] = &[
    (
        "blocklist-de-sip.yaml",
        include_str!("../../feeds/blocklist-de-sip.yaml"),
    ),
    ("voipbl.yaml", include_str!("../../feeds/voipbl.yaml")),
    (
        "spamhaus-drop-v4.yaml",
        include_str!("../../feeds/spamhaus-drop-v4.yaml"),
    ),
    (
        "spamhaus-drop-v6.yaml",
        include_str!("../../feeds/spamhaus-drop-v6.yaml"),
    ),
    (
        "firehol-level1.yaml",
        include_str!("../../feeds/firehol-level1.yaml"),
    ),
];

fn entries() -> &'static [(String, RawFeed)] {
    static E: OnceLock<Vec<(String, RawFeed)>> = OnceLock::new();
    E.get_or_init(|| {
        FILES
            .iter()
            .filter_map(|(file, text)| {
                // A broken catalogue file is a build defect caught by the test below; at run
                // time it is skipped rather than taking the whole config down.
                let raw: RawFeed = parse_yaml(text, file).ok()?;
                Some((raw.name.clone()?, raw))
            })
            .collect()
    })
}

/// The catalogue entry called `name`.
pub fn get(name: &str) -> Option<RawFeed> {
    entries()
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, f)| f.clone())
}

/// Names of all catalogue entries.
pub fn names() -> Vec<&'static str> {
    entries().iter().map(|(n, _)| n.as_str()).collect()
}

/// All entries, for `sipban feeds` style listings.
pub fn all() -> impl Iterator<Item = &'static RawFeed> {
    entries().iter().map(|(_, f)| f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, FeedLocation};
    use std::path::Path;

    #[test]
    fn every_catalogue_file_parses_and_resolves() {
        for (file, text) in FILES {
            let raw: RawFeed = parse_yaml(text, file).unwrap_or_else(|e| panic!("{e}"));
            let name = raw.name.clone().unwrap();
            assert_eq!(
                format!("{name}.yaml"),
                *file,
                "file name matches the entry name"
            );
            assert!(raw.licence.is_some(), "{file} needs a licence note");
            assert!(raw.interval.is_some(), "{file} needs a polite interval");
            let cfg = format!("feeds:\n  - use: {name}\n");
            let s = load_str(&cfg, Path::new("/etc/sipban/config.yaml")).unwrap();
            assert!(
                matches!(s.feeds[0].location, FeedLocation::Http(ref u) if u.secret_str().starts_with("https://"))
            );
        }
        assert_eq!(names().len(), FILES.len());
    }

    #[test]
    fn catalogue_list_matches_the_feeds_folder() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("feeds");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml") && n != "ports.yaml")
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = FILES.iter().map(|(f, _)| f.to_string()).collect();
        listed.sort();
        assert_eq!(
            on_disk, listed,
            "add new feeds/*.yaml files to catalogue::FILES"
        );
    }
}
