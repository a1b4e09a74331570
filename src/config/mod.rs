//! The whole configuration schema: what the admin wrote ([`raw`], every field optional) and
//! what sipban decided from it ([`resolved`], [`Settings`]): ripgrep's LowArgs → HiArgs split.
//!
//! Parsing is strict: unknown keys, duplicate keys, `yes`/`on` as booleans, bad durations,
//! sizes, percentages and addresses are errors naming the file, line and column. Values are
//! validated while they are deserialised (the newtypes of [`values`]), so serde-saphyr attaches
//! the position of the offending node. Cross-field rules are checked afterwards with the span
//! of the enclosing entry.
//!
//! Layout: [`raw`] (the YAML types as written), [`values`] (self-validating values and the
//! small vocabulary shared with the runtime), [`resolved`] (the top-level [`Settings`] and
//! [`resolve`]), one module per section for its resolved settings ([`sets`], [`feed`],
//! [`apiban`], [`asterisk`], [`kernlog`], [`journal`], [`ports`], [`protect`], [`daemon`], [`schedule`], [`metrics`], [`wire`],
//! [`report`], [`crowdsec`], [`secret`]), [`catalogue`] (the built-in feeds, compiled in) and [`credentials`]
//! (systemd's `LoadCredential=` files in place of key files).
//!
//! Every other module depends on this one, never the reverse: `config` imports no crate module
//! but `net`, which is the leaf vocabulary of addresses (parsing and canonicalisation of
//! prefixes, address families; it imports nothing of the crate). Runtime modules receive the
//! resolved settings and may re-export the types of their section.
//!
//! This module must never read anything but the config file (key and header files are only
//! recorded as paths; [`credentials`] only checks a credential's size): no network, no state, no kernel.

pub mod apiban;
pub mod asterisk;
pub mod catalogue;
pub mod credentials;
pub mod crowdsec;
pub mod daemon;
pub mod feed;
pub mod journal;
pub mod kernlog;
pub mod metrics;
pub mod ports;
pub mod protect;
pub mod raw;
pub mod report;
pub mod resolved;
pub mod schedule;
pub mod secret;
pub mod sets;
pub mod values;
pub mod wire;

pub use feed::{
    url_host, FeedFormat, FeedLocation, FeedSettings, FeedUrl, DEFAULT_MAX_COVERAGE_V4,
    DEFAULT_MAX_COVERAGE_V6, RESERVED_SOURCE_NAMES,
};
pub use raw::{
    FeedFormatName, RawAsterisk, RawConfig, RawFeed, RawIncrement, RawMaxCoverage, RawMinPrefix,
    RawSet, RawSets,
};
pub use resolved::{
    resolve, Settings, TotalCoverage, DEFAULT_MAX_TOTAL_COVERAGE_V4, DEFAULT_MAX_TOTAL_COVERAGE_V6,
};
pub use secret::{redact_url, redact_urls_in};
pub use sets::{SetSettings, SetsSettings};
pub use values::{
    human_duration, Cidr, Dur, Nat64Prefix, Percent, Priority, Size, V4Coverage, V6Coverage,
    IPV4_ADDRESSES, MAX_PRIORITY,
};

use serde::Deserialize;
use std::fmt;
use std::path::Path;

/// Where sipban looks for its config when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/sipban/config.yaml";

/// A configuration problem, already worded for the admin (file, line, column where known).
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Read, parse and resolve a config file.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{}: cannot read config: {e}", path.display())))?;
    load_str(&text, path)
}

/// Parse and resolve config text; `path` names it in errors and anchors relative file feeds.
pub fn load_str(text: &str, path: &Path) -> Result<Settings, ConfigError> {
    let raw: RawConfig = parse_yaml(text, &path.display().to_string())?;
    resolve(raw, path)
}

/// Strict YAML parsing shared by the config and the feed catalogue.
pub fn parse_yaml<T: for<'de> Deserialize<'de>>(
    text: &str,
    origin: &str,
) -> Result<T, ConfigError> {
    if text.trim().is_empty() {
        // An empty file is an empty mapping: all defaults.
        return parse_yaml("{}", origin);
    }
    let options = serde_saphyr::options! {
        strict_booleans: true,
    };
    serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        // The message quotes the lines around the error, which may hold a feed URL.
        let msg = redact_urls_in(&e.to_string())
            .replace("<input>", origin)
            .replace(", set DuplicateKeyPolicy in Options if acceptable", "");
        ConfigError(format!("{origin}: {msg}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn load(text: &str) -> Result<Settings, ConfigError> {
        load_str(text, Path::new("/etc/sipban/test.yaml"))
    }

    #[test]
    fn empty_config_gets_defaults() {
        let s = load("").unwrap();
        assert_eq!(s.state_dir, PathBuf::from("/var/lib/sipban"));
        assert_eq!(s.sets.v4.name, "sipban-v4");
        assert_eq!(s.sets.v6.cap, 65_536);
        assert!(s.allow_own_addresses);
        assert!(s.feeds.is_empty());
    }

    #[test]
    fn the_nft_sets_of_v4_and_v6_must_not_collide() {
        // Each set is `NAME` and `NAME_addr` in nftables (`-` becomes `_`).
        let e = load("sets:\n  v4: { name: b }\n  v6: { name: b-addr }\n").unwrap_err();
        assert!(e.to_string().contains("must differ"), "{e}");
        let e = load("sets:\n  v4: { name: sipban-mark }\n").unwrap_err();
        assert!(e.to_string().contains("sipban_mark"), "{e}");
        load("sets:\n  v4: { name: b4 }\n  v6: { name: b6 }\n").unwrap();
    }

    #[test]
    fn durations_sizes_percentages() {
        assert_eq!(Dur::parse("90s").unwrap().0, 90);
        assert_eq!(Dur::parse("10m").unwrap().0, 600);
        assert_eq!(Dur::parse("2h").unwrap().0, 7200);
        assert_eq!(Dur::parse("7d").unwrap().0, 604_800);
        assert!(Dur::parse("7").is_err());
        assert!(Dur::parse("7x").is_err());
        assert!(Dur::parse("-1s").is_err());
        assert_eq!(Size::parse("16MiB").unwrap().0, 16 << 20);
        assert!(Size::parse("16Mb").is_err());
        assert_eq!(Percent::parse("50%").unwrap().0, 0.5);
        assert!(Percent::parse("150%").is_err());
        assert_eq!(human_duration(604_800), "1w");
        assert_eq!(human_duration(90), "90s");
    }

    #[test]
    fn full_feed_and_catalogue_use() {
        let s = load(
            "feeds:\n  - name: my-list\n    url: https://example.org/list.txt\n    format: csv\n    column: 2\n    ttl: 1d\n    priority: 70\n    min_prefix: { v4: 20 }\n    max_shrink: 25%\n  - use: blocklist-de-sip\n    priority: 90\n",
        )
        .unwrap();
        assert_eq!(s.feeds.len(), 2);
        assert_eq!(s.feeds[0].format, FeedFormat::Csv { column: 2 });
        assert_eq!(s.feeds[0].min_prefix_v4, 20);
        assert_eq!(s.feeds[0].min_prefix_v6, 32);
        assert_eq!(s.feeds[1].name, "blocklist-de-sip");
        assert_eq!(s.feeds[1].priority, 90);
        assert!(matches!(s.feeds[1].location, FeedLocation::Http(_)));
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let e = load("state_dir: /tmp/x\nsets:\n  v4: { name: a, cap: 10, colour: red }\n")
            .unwrap_err();
        assert!(e.0.contains("test.yaml"), "{e}");
        assert!(e.0.contains("colour"), "{e}");
        assert!(e.0.contains("line 3"), "{e}");
    }

    #[test]
    fn duplicate_key_is_an_error() {
        let e = load("state_dir: /a\nstate_dir: /b\n").unwrap_err();
        assert!(e.0.to_lowercase().contains("duplicate"), "{e}");
        assert!(e.0.contains("line 2"), "{e}");
    }

    #[test]
    fn bad_values_are_located() {
        let e = load("allowlist: [192.168.1.0/24, example.org]\n").unwrap_err();
        assert!(e.0.contains("example.org") && e.0.contains("line 1"), "{e}");
        let e = load("feeds:\n  - name: a\n    url: https://x.org/\n    ttl: 7\n").unwrap_err();
        assert!(e.0.contains("unit") && e.0.contains("line 4"), "{e}");
        let e = load("allow_own_addresses: yes\n").unwrap_err();
        assert!(e.0.contains("line 1"), "{e}");
        let e = load("feeds:\n  - name: a\n  - name: b\n    url: https://x.org\n").unwrap_err();
        assert!(e.0.contains("line 2") && e.0.contains("url"), "{e}");
        let e = load("feeds:\n  - use: nope\n").unwrap_err();
        assert!(e.0.contains("catalogue"), "{e}");
        let e = load("feeds:\n  - name: asterisk\n    url: https://x.org\n").unwrap_err();
        assert!(e.0.contains("reserved"), "{e}");
        let e = load(
            "feeds:\n  - {name: a, url: 'https://x.org'}\n  - {name: a, url: 'https://y.org'}\n",
        )
        .unwrap_err();
        assert!(e.0.contains("twice") && e.0.contains("line 3"), "{e}");
        let e = load("feeds:\n  - {name: a, url: 'https://bücher.example/x'}\n").unwrap_err();
        assert!(e.0.contains("xn--") && e.0.contains("line 2"), "{e}");
        let e = load("sets:\n  v4: { name: ok4, cap: 0 }\n").unwrap_err();
        assert!(
            e.0.contains("line 2 column 25") && e.0.contains("cap"),
            "{e}"
        );
        let e = load("sets:\n  v6:\n    name: 'bad name!'\n").unwrap_err();
        assert!(
            e.0.contains("line 3 column 11") && e.0.contains("name"),
            "{e}"
        );
        let e = load("sets:\n  v4: { name: same }\n  v6: { name: same }\n").unwrap_err();
        assert!(e.0.contains("line 3") && e.0.contains("different"), "{e}");
    }

    #[test]
    fn max_coverage_parses_counts_and_percentages() {
        let s = load(
            "feeds:\n  - name: a\n    url: https://x.org/\n    max_coverage: { v4: 65536, v6: 4096 }\n  - name: b\n    url: https://x.org/\n    max_coverage: { v4: 1% }\n  - name: c\n    url: https://x.org/\n    max_coverage: { v4: '100%' }\n",
        )
        .unwrap();
        assert_eq!(
            (s.feeds[0].max_coverage_v4, s.feeds[0].max_coverage_v6),
            (65_536, 4096)
        );
        assert_eq!(s.feeds[1].max_coverage_v4, 42_949_673);
        assert_eq!(s.feeds[1].max_coverage_v6, DEFAULT_MAX_COVERAGE_V6);
        assert_eq!(s.feeds[2].max_coverage_v4, 1 << 32);
        assert_eq!(V4Coverage::parse("0.5%").unwrap().0, 21_474_836);
    }

    #[test]
    fn max_coverage_defaults_and_catalogue() {
        let s = load(
            "feeds:\n  - {name: a, url: 'https://x.org/'}\n  - use: spamhaus-drop-v4\n  - use: firehol-level1\n    max_coverage: { v6: 7 }\n  - use: spamhaus-drop-v6\n  - use: blocklist-de-sip\n  - use: voipbl\n  - use: spamhaus-drop-v4\n    name: drop-tight\n    max_coverage: { v4: 1000 }\n",
        )
        .unwrap();
        let got: Vec<(&str, u64, u64)> = s
            .feeds
            .iter()
            .map(|f| (f.name.as_str(), f.max_coverage_v4, f.max_coverage_v6))
            .collect();
        assert_eq!(
            got,
            [
                ("a", 1 << 24, 1 << 40),
                ("spamhaus-drop-v4", 1 << 26, 1 << 40),
                ("firehol-level1", 1 << 26, 7),
                ("spamhaus-drop-v6", 1 << 24, 1 << 48),
                ("blocklist-de-sip", 1 << 24, 1 << 40),
                ("voipbl", 1 << 24, 1 << 40),
                ("drop-tight", 1000, 1 << 40),
            ]
        );
        assert_eq!(DEFAULT_MAX_COVERAGE_V4, 16_777_216);
    }

    #[test]
    fn bad_max_coverage_is_located() {
        let feed = |mc: &str| {
            load(&format!(
                "feeds:\n  - name: a\n    url: https://x.org/\n    max_coverage: {mc}\n"
            ))
            .unwrap_err()
            .0
        };
        for (mc, words) in [
            ("{ v4: 0 }", "between 1 and 4294967296"),
            ("{ v4: 4294967297 }", "between 1 and 4294967296"),
            ("{ v4: 150% }", "between 0% and 100%"),
            ("{ v4: 0% }", "between 1 and 4294967296"),
            ("{ v4: lots }", "percentage of IPv4"),
            ("{ v6: 0 }", "at least 1"),
            ("{ v6: -1 }", ""),
            ("{ v6: 5% }", ""),
            ("{ v5: 1 }", "v5"),
            ("65536", ""),
        ] {
            let e = feed(mc);
            assert!(
                e.contains("test.yaml") && e.contains("line 4") && e.contains(words),
                "{mc}: {e}"
            );
        }
    }

    #[test]
    fn max_total_coverage_and_nat64_prefixes() {
        let s = load("").unwrap();
        assert_eq!(
            (s.max_total_coverage.v4, s.max_total_coverage.v6),
            (DEFAULT_MAX_TOTAL_COVERAGE_V4, DEFAULT_MAX_TOTAL_COVERAGE_V6)
        );
        assert!(s.nat64_prefixes.is_empty());
        let s = load(
            "max_total_coverage: { v4: 10% }
nat64_prefixes: ['64:ff9b:1:ab::/64']
",
        )
        .unwrap();
        assert_eq!(s.max_total_coverage.v4, 429_496_730);
        assert_eq!(s.max_total_coverage.v6, DEFAULT_MAX_TOTAL_COVERAGE_V6);
        assert_eq!(s.nat64_prefixes[0].to_string(), "64:ff9b:1:ab::/64");
        let e = load(
            "state_dir: /x
max_total_coverage: { v4: 0 }
",
        )
        .unwrap_err();
        assert!(e.0.contains("line 2") && e.0.contains("between 1"), "{e}");
        let e = load(
            "nat64_prefixes: ['2001:db8::/80']
",
        )
        .unwrap_err();
        assert!(e.0.contains("line 1") && e.0.contains("RFC 6052"), "{e}");
    }

    #[test]
    fn relative_file_feeds_follow_the_config() {
        let s = load("feeds:\n  - {name: a, url: 'file:examples/x.txt'}\n  - {name: b, url: 'file:///srv/y.txt'}\n").unwrap();
        assert_eq!(
            s.feeds[0].location,
            FeedLocation::File(PathBuf::from("/etc/sipban/examples/x.txt"))
        );
        assert_eq!(
            s.feeds[1].location,
            FeedLocation::File(PathBuf::from("/srv/y.txt"))
        );
        assert!(load("feeds:\n  - {name: a, url: 'file://rel.txt'}\n").is_err());
        assert!(load("feeds:\n  - {name: a, url: 'ftp://x.org/a'}\n").is_err());
    }

    #[test]
    fn hosts_of_urls() {
        assert_eq!(
            url_host("https://lists.blocklist.de/lists/sip.txt"),
            Some("lists.blocklist.de")
        );
        assert_eq!(url_host("https://u:p@h.org:8443/x"), Some("h.org"));
        assert_eq!(url_host("http://[2001:db8::1]:80/x"), Some("2001:db8::1"));
    }
}
