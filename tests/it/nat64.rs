//! The network's own NAT64 prefixes (`nat64_prefixes`, RFC 6052), end to end in a private
//! network namespace: an IPv6 address inside one is judged by the IPv4 address it carries, and
//! no source may ban a whole prefix.

use crate::common::netns::run_in;
use crate::common::run::{json, sipban, text};
use std::collections::HashSet;
use std::path::Path;

fn members(set: &str) -> HashSet<String> {
    sipban::backend::ipset::Ipset::new()
        .read(set)
        .expect("read set")
        .map(|k| k.members.keys().map(sipban::net::display_net).collect())
        .unwrap_or_default()
}

fn setup(dir: &Path, nat64: &str, feed: &[&str]) {
    std::fs::write(dir.join("list.txt"), feed.join("\n") + "\n").unwrap();
    let cfg = format!(
        "state_dir: {}\nsets:\n  v4: {{ name: t4, cap: 100 }}\n  v6: {{ name: t6, cap: 100 }}\nallowlist: [192.0.2.1, 198.51.100.0/24]\nnat64_prefixes: [{nat64}]\nfeeds:\n  - {{ name: f, url: 'file://{}', ttl: 1d, max_shrink: 100%, min_prefix: {{ v6: 16 }} }}\n",
        dir.join("state").display(),
        dir.join("list.txt").display()
    );
    std::fs::write(dir.join("config.yaml"), cfg).unwrap();
}

/// A /96 NAT64 prefix: `<prefix>::c000:201` is 192.0.2.1 (allowlisted) and is refused; a
/// /120 that carries the allowlisted /24 is refused whole; the /96 itself is refused as a
/// range that carries IPv4 addresses, naming the prefix; other IPv4 behind it is banned.
#[test]
fn addresses_in_a_configured_nat64_prefix_are_judged_by_the_ipv4_they_carry() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        setup(
            d,
            "'2001:db8:64::/96'",
            &[
                "2001:db8:64::c000:201",
                "2001:db8:64::c633:6400/120",
                "2001:db8:64::/96",
                "2001:db8::/32",
                "2001:db8:64::2d00:1",
                "45.0.0.1",
            ],
        );
        let o = sipban(d, &["sync", "--dry-run", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let j = json(&o);
        assert_eq!(
            j["sources"][0]["counts"]["rejected"]["translation"], 2,
            "the /96 and the /32 that holds it: {j}"
        );

        let o = sipban(d, &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(
            members("t6"),
            HashSet::from(["2001:db8:64::2d00:1".to_string()])
        );
        assert_eq!(members("t4"), HashSet::from(["45.0.0.1".to_string()]));

        let o = sipban(d, &["explain", "2001:db8:64::c000:201"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let x = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(x.contains("192.0.2.1 (allowlist in config)"), "{x}");
        let o = sipban(d, &["explain", "2001:db8:64::/96"]);
        let x = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            x.contains("refused: 2001:db8:64::/96 is a whole IPv6 range that carries IPv4 addresses (NAT64 2001:db8:64::/96")
                && x.contains("nat64_prefixes"),
            "{x}"
        );
        // `ban` asks the same gate.
        for target in ["2001:db8:64::c000:201", "2001:db8:64::/96"] {
            let o = sipban(d, &["ban", target]);
            assert_eq!(o.status.code(), Some(2), "{target}: {}", text(&o));
        }
        assert_eq!(
            sipban(d, &["ban", "2001:db8:64::2d00:2"]).status.code(),
            Some(0)
        );
    });
}

/// A /40 prefix: the IPv4 address sits in bits 40..63 and 72..79, around the u octet; a /44
/// inside it carries 192.0.0.0/4, which holds an allowlisted address, and is refused whole.
#[test]
fn a_short_nat64_prefix_skips_the_u_octet() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // 192.0.2.1 in 2001:db8:1100::/40: c0.00.02 in bits 40..63, 0x01 after the u octet.
        setup(
            d,
            "'2001:db8:1100::/40'",
            &[
                "2001:db8:11c0:2:1::",
                "2001:db8:11c0:2:2::",
                "2001:db8:11c0::/44",
            ],
        );
        let o = sipban(d, &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(
            members("t6"),
            HashSet::from(["2001:db8:11c0:2:2::".to_string()])
        );
        let o = sipban(d, &["explain", "2001:db8:11c0:2:1::"]);
        let x = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(x.contains("192.0.2.1 (allowlist in config)"), "{x}");
    });
}

#[test]
fn a_nat64_prefix_of_a_length_rfc_6052_does_not_define_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (bad, words) in [
        ("'2001:db8::/80'", "/32, /40, /48, /56, /64 or /96"),
        ("'192.0.2.0/24'", "IPv6"),
        ("'2001:db8:0:0:ff00::/96'", "bits 64 to 71"),
    ] {
        setup(d, bad, &["45.0.0.1"]);
        let o = sipban(d, &["config", "check"]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", text(&o));
        assert!(text(&o).contains("line 6"), "{bad}: {}", text(&o));
        assert!(text(&o).contains(words), "{bad}: {}", text(&o));
    }
}
