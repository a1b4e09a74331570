use super::allow::{AllowReason, Allowlist};
use super::*;
use crate::model::Sighting;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr};

/// decide with no allowlist and the default caps.
fn decide_plain(
    previous: Vec<Entry>,
    inputs: Vec<Input>,
    policies: &[SourcePolicy],
    now: i64,
) -> Decision {
    decide(previous, inputs, policies, &Allowlist::new(), CAPS, now)
}

fn n(s: &str) -> IpNet {
    net::parse_net(s).unwrap()
}

fn policy(name: &str, priority: u16) -> SourcePolicy {
    SourcePolicy {
        name: name.into(),
        priority,
        min_prefix_v4: 16,
        min_prefix_v6: 32,
        allow_private: false,
        ban_on_link: false,
        max_ttl: u32::MAX,
    }
}

fn sight(net: IpNet, seen: i64, ttl: u32) -> Sighting {
    Sighting { net, seen, ttl }
}

fn v4(i: u32) -> IpNet {
    // Public space, away from special and private ranges: 45.0.0.0 + i.
    net::host_net(IpAddr::V4(Ipv4Addr::from(0x2d00_0000u32 + i)))
}

const CAPS: Caps = Caps {
    v4: 65_536,
    v6: 65_536,
};

#[test]
fn provenance_and_ttl_refresh() {
    let policies = vec![policy("a", 50), policy("b", 60)];
    let now = 10_000;
    let inputs = vec![
        Input {
            source: 0,
            sightings: vec![sight(n("192.0.2.1"), now, 3600)].into(),
            complete: false,
        },
        Input {
            source: 1,
            sightings: vec![sight(n("192.0.2.1"), now, 7200)].into(),
            complete: false,
        },
    ];
    let d = decide_plain(Vec::new(), inputs, &policies, now);
    assert_eq!(d.entries.len(), 1);
    assert_eq!(d.entries[0].marks.len(), 2);
    assert_eq!(
        d.desired_v4,
        vec![Desired {
            net: n("192.0.2.1"),
            expires: now + 7200
        }]
    );

    // An hour later source a lists it again: its mark is refreshed, first_seen kept.
    let later = now + 3000;
    let inputs = vec![Input {
        source: 0,
        sightings: vec![sight(n("192.0.2.1"), later, 3600)].into(),
        complete: false,
    }];
    let d = decide_plain(d.entries, inputs, &policies, later);
    let a = d.entries[0].marks.iter().find(|m| m.source == 0).unwrap();
    assert_eq!(
        (a.first_seen, a.last_seen, a.expires),
        (now, later, later + 3600)
    );

    // Past every expiry with no new sightings, the entry is gone and counted.
    let d = decide_plain(d.entries, Vec::new(), &policies, now + 100_000);
    assert!(d.entries.is_empty() && d.desired_v4.is_empty());
    assert_eq!(d.per_source[0].expired + d.per_source[1].expired, 2);
}

#[test]
fn a_complete_listing_replaces_the_source_but_not_others() {
    let policies = vec![policy("feed", 50), policy("detector", 100)];
    let first = vec![
        Input {
            source: 0,
            sightings: vec![
                sight(n("192.0.2.1"), 0, 1000),
                sight(n("192.0.2.2"), 0, 1000),
            ]
            .into(),
            complete: true,
        },
        Input {
            source: 1,
            sightings: vec![sight(n("192.0.2.2"), 0, 1000)].into(),
            complete: false,
        },
    ];
    let d = decide_plain(Vec::new(), first, &policies, 0);
    assert_eq!(d.desired_v4.len(), 2);
    // The feed drops both; the detector's mark on .2 stays, .1 goes at once.
    let second = vec![Input {
        source: 0,
        sightings: vec![sight(n("192.0.2.3"), 10, 1000)].into(),
        complete: true,
    }];
    let d = decide_plain(d.entries, second, &policies, 10);
    let nets: Vec<IpNet> = d.desired_v4.iter().map(|x| x.net).collect();
    assert_eq!(nets, vec![n("192.0.2.2"), n("192.0.2.3")]);
    assert_eq!(d.per_source[0].delisted, 2);
    // Re-listing keeps first_seen.
    let third = vec![Input {
        source: 0,
        sightings: vec![sight(n("192.0.2.3"), 20, 1000)].into(),
        complete: true,
    }];
    let d = decide_plain(d.entries, third, &policies, 20);
    let e = d.entries.iter().find(|e| e.net == n("192.0.2.3")).unwrap();
    assert_eq!((e.marks[0].first_seen, e.marks[0].last_seen), (10, 20));
}

#[test]
fn carried_entries_survive_a_failed_source_until_ttl() {
    let policies = vec![policy("a", 50)];
    let inputs = vec![Input {
        source: 0,
        sightings: vec![sight(n("192.0.2.9"), 0, 1000)].into(),
        complete: false,
    }];
    let d = decide_plain(Vec::new(), inputs, &policies, 0);
    let d = decide_plain(d.entries, Vec::new(), &policies, 999);
    assert_eq!(d.desired_v4.len(), 1);
    let d = decide_plain(d.entries, Vec::new(), &policies, 1000);
    assert!(d.desired_v4.is_empty());
}

#[test]
fn removed_sources_are_dropped() {
    let policies = vec![policy("a", 50), policy("b", 50)];
    let inputs = vec![Input {
        source: 1,
        sightings: vec![sight(n("192.0.2.9"), 0, 1000)].into(),
        complete: false,
    }];
    let d = decide_plain(Vec::new(), inputs, &policies, 0);
    let d = decide_plain(d.entries, Vec::new(), &policies[..1], 1);
    assert!(d.entries.is_empty());
    assert_eq!(d.dropped_unknown, 1);
}

#[test]
fn prefix_rules() {
    let mut p = policy("a", 50);
    let inputs = vec![Input {
        source: 0,
        sightings: [
            "0.0.0.0/0",
            "::/0",
            "45.0.0.0/8",
            "127.0.0.1",
            "10.1.2.3",
            "224.0.0.5",
            "fe80::1",
            "45.1.0.0/16",
            "2001:db8::/16",
            "2001:db8::/32",
        ]
        .iter()
        .map(|s| sight(n(s), 0, 100))
        .collect(),
        complete: false,
    }];
    let d = decide_plain(Vec::new(), inputs.clone(), std::slice::from_ref(&p), 0);
    let r = &d.per_source[0].rejected;
    assert_eq!(r[&Rejection::Everything], 2);
    assert_eq!(r[&Rejection::TooBroad], 2);
    assert_eq!(r[&Rejection::Special], 3);
    assert_eq!(r[&Rejection::Private], 1);
    assert_eq!(d.desired_v4.len() + d.desired_v6.len(), 2);
    p.allow_private = true;
    let d = decide_plain(Vec::new(), inputs, &[p], 0);
    assert!(d.desired_v4.iter().any(|x| x.net == n("10.1.2.3")));
}

#[test]
fn allowlist_splits_and_protects() {
    let policies = vec![policy("a", 50)];
    let mut allow = Allowlist::new();
    allow.add(n("45.1.2.0/24"), AllowReason::Config);
    allow.add(n("45.9.9.9"), AllowReason::OwnAddress("eth0".into()));
    let inputs = vec![Input {
        source: 0,
        sightings: vec![
            sight(n("45.1.0.0/16"), 0, 100),
            sight(n("45.9.9.9"), 0, 100),
        ]
        .into(),
        complete: false,
    }];
    let d = decide(Vec::new(), inputs, &policies, &allow, CAPS, 0);
    assert_eq!(d.desired_v4.len(), 8, "a /16 minus a /24 is 8 prefixes");
    assert!(d
        .desired_v4
        .iter()
        .all(|x| !net::overlaps(&x.net, &n("45.1.2.0/24"))));
    assert!(d.desired_v4.iter().all(|x| x.net != n("45.9.9.9")));
    assert_eq!(d.allow_hits.len(), 2);
    // Both facts are kept, so lifting the allowlist brings them back.
    assert_eq!(d.entries.len(), 2);
    let d = decide_plain(d.entries, Vec::new(), &policies, 1);
    assert_eq!(d.desired_v4.len(), 2);
}

/// Acceptance: cap 1,000, 5,000 candidates from three feeds of different priorities. The set
/// holds exactly 1,000, chosen by priority, then multiplicity, then recency; 4,000 evictions.
#[test]
fn cap_keeps_priority_then_multiplicity_then_recency() {
    let policies = vec![policy("high", 80), policy("mid", 50), policy("low", 20)];
    let now = 1_000_000;
    // high: 0..600. mid: 600..3100 (2,500). low: 3100..5000 (1,900) plus 300 of mid's
    // (2800..3100), which therefore have two sources.
    let mut inputs = vec![
        Input {
            source: 0,
            ..Input::default()
        },
        Input {
            source: 1,
            ..Input::default()
        },
        Input {
            source: 2,
            ..Input::default()
        },
    ];
    for i in 0..600 {
        inputs[0]
            .sightings
            .each_mut()
            .push(sight(v4(i), now - 10_000 + i64::from(i), 86_400));
    }
    for i in 600..3100 {
        // Recency grows with i.
        inputs[1]
            .sightings
            .each_mut()
            .push(sight(v4(i), now - 10_000 + i64::from(i), 86_400));
    }
    for i in 2800..5000 {
        inputs[2]
            .sightings
            .each_mut()
            .push(sight(v4(i), now - 10_000 + i64::from(i), 86_400));
    }
    let caps = Caps { v4: 1000, v6: 1000 };
    let d = decide(Vec::new(), inputs, &policies, &Allowlist::new(), caps, now);
    assert_eq!(d.desired_v4.len(), 1000);
    assert_eq!(d.evicted_v4, 4000);
    let got: std::collections::HashSet<IpNet> = d.desired_v4.iter().map(|x| x.net).collect();
    // All 600 of the highest priority.
    assert!((0..600).all(|i| got.contains(&v4(i))));
    // 400 slots left among mid (priority 50): first the 300 listed twice (2800..3100)...
    assert!((2800..3100).all(|i| got.contains(&v4(i))));
    // ...then the 100 most recent single-source ones (2700..2800).
    assert!((2700..2800).all(|i| got.contains(&v4(i))));
    assert!(!got.contains(&v4(2699)));
    // Nothing from low-only.
    assert!((3100..5000).all(|i| !got.contains(&v4(i))));
    assert_eq!(d.per_source[0].in_set, 600);
}

#[test]
fn keep_limit_bounds_the_state() {
    let policies = vec![policy("a", 50)];
    let inputs = vec![Input {
        source: 0,
        sightings: (0..100).map(|i| sight(v4(i), i64::from(i), 1000)).collect(),
        complete: false,
    }];
    let caps = Caps { v4: 10, v6: 10 };
    let d = decide(Vec::new(), inputs, &policies, &Allowlist::new(), caps, 200);
    assert_eq!(d.desired_v4.len(), 10);
    assert_eq!(d.entries.len(), 10 * KEEP_FACTOR);
    assert_eq!(d.forgotten, 100 - 10 * KEEP_FACTOR);
}

fn arb_net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        // Anywhere in IPv4 with any prefix, including /0 and special space.
        (any::<u32>(), 0u8..=32)
            .prop_map(
                |(a, l)| IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(a), l).unwrap()).trunc()
            ),
        // Concentrated near the allowlist so overlaps happen often.
        (0u32..1024, 20u8..=32).prop_map(|(a, l)| IpNet::V4(
            ipnet::Ipv4Net::new(Ipv4Addr::from(0xC000_0200u32 + a), l).unwrap()
        )
        .trunc()),
        (any::<u128>(), 0u8..=128).prop_map(|(a, l)| IpNet::V6(
            ipnet::Ipv6Net::new(std::net::Ipv6Addr::from(a), l).unwrap()
        )
        .trunc()),
        Just(n("0.0.0.0/0")),
        Just(n("::/0")),
        Just(n("127.0.0.1")),
        Just(n("192.0.2.10")),
        Just(n("::1")),
    ]
}

proptest! {
    /// Whatever the sources list, nothing that overlaps an allowlisted or own address, and no
    /// special-purpose address, is ever desired in a kernel set; the cap always holds.
    #[test]
    fn never_bans_allowlisted_or_special(
        lists in proptest::collection::vec(proptest::collection::vec(arb_net(), 0..60), 1..4),
        cap in 1usize..50,
        allow_private in any::<bool>(),
    ) {
        let policies: Vec<SourcePolicy> = (0..lists.len())
            .map(|i| SourcePolicy { allow_private, min_prefix_v4: 1, min_prefix_v6: 1, ..policy(&format!("s{i}"), i as u16 * 10) })
            .collect();
        let mut allow = Allowlist::new();
        allow.add(n("192.0.2.0/26"), AllowReason::Config);
        allow.add(n("192.0.2.10"), AllowReason::OwnAddress("eth0".into()));
        allow.add(n("2001:db8::/32"), AllowReason::Config);
        let inputs: Vec<Input> = lists
            .iter()
            .enumerate()
            .map(|(i, l)| Input { source: i as u16, sightings: l.iter().map(|&x| sight(x, 0, 100)).collect(), complete: false })
            .collect();
        let caps = Caps { v4: cap, v6: cap };
        let d = decide(Vec::new(), inputs, &policies, &allow, caps, 1);
        prop_assert!(d.desired_v4.len() <= cap && d.desired_v6.len() <= cap);
        for x in d.desired_v4.iter().chain(d.desired_v6.iter()) {
            prop_assert!(x.net.prefix_len() > 0);
            prop_assert!(net::special_range(&x.net).is_none(), "{} is special", x.net);
            for rule in allow.rules() {
                prop_assert!(!net::overlaps(&rule.net, &x.net), "{} overlaps allowlisted {}", x.net, rule.net);
            }
            if !allow_private {
                prop_assert!(net::private_range(&x.net).is_none());
            }
        }
        // And the same holds when the stored entries are fed back in.
        let again = decide(d.entries, Vec::new(), &policies, &allow, caps, 2);
        for x in again.desired_v4.iter().chain(again.desired_v6.iter()) {
            for rule in allow.rules() {
                prop_assert!(!net::overlaps(&rule.net, &x.net));
            }
        }
    }
}

proptest! {
    /// The merge visits prefixes in sorted order; the result must not depend on the order in
    /// which entries and sightings arrive, nor on duplicates within one input.
    #[test]
    fn decision_does_not_depend_on_input_order(
        prev in proptest::collection::vec((arb_net(), 0u16..3, 0i64..100, 1i64..400), 0..40),
        lists in proptest::collection::vec((proptest::collection::vec((arb_net(), 0i64..100), 0..40), any::<bool>()), 1..4),
        seed in any::<u64>(),
    ) {
        let policies: Vec<SourcePolicy> = (0..4)
            .map(|i| SourcePolicy { min_prefix_v4: 1, min_prefix_v6: 1, ..policy(&format!("s{i}"), (i * 7 % 5) as u16) })
            .collect();
        let mut by_net: std::collections::BTreeMap<IpNet, Vec<Mark>> = Default::default();
        for (net, source, seen, life) in &prev {
            let marks = by_net.entry(*net).or_default();
            if !marks.iter().any(|m| m.source == *source) {
                marks.push(Mark { source: *source, first_seen: *seen, last_seen: *seen, expires: seen + life });
            }
        }
        let previous: Vec<Entry> = by_net.into_iter().map(|(net, marks)| Entry { net, marks: marks.into() }).collect();
        let inputs: Vec<Input> = lists
            .iter()
            .enumerate()
            .map(|(i, (l, complete))| Input {
                source: i as u16,
                sightings: l.iter().map(|&(n, seen)| sight(n, seen, 300)).collect(),
                complete: *complete,
            })
            .collect();
        let caps = Caps { v4: 10, v6: 10 };
        let mut allow = Allowlist::new();
        allow.add(n("192.0.2.0/26"), AllowReason::Config);
        let a = decide(previous.clone(), inputs.clone(), &policies, &allow, caps, 50);
        // Shuffle everything (deterministically from `seed`) and decide again.
        let mut rng = seed | 1;
        let mut next = move || { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; rng };
        let mut prev2 = previous;
        for i in (1..prev2.len()).rev() { let j = (next() % (i as u64 + 1)) as usize; prev2.swap(i, j); }
        let mut inputs2 = inputs;
        for input in &mut inputs2 {
            for i in (1..input.sightings.len()).rev() { let j = (next() % (i as u64 + 1)) as usize; input.sightings.each_mut().swap(i, j); }
        }
        let b = decide(prev2, inputs2, &policies, &allow, caps, 50);
        prop_assert_eq!(&a.entries, &b.entries);
        prop_assert_eq!(&a.desired_v4, &b.desired_v4);
        prop_assert_eq!(&a.desired_v6, &b.desired_v6);
        prop_assert_eq!(&a.per_source, &b.per_source);
        // Entries come out in prefix order, each prefix once.
        for w in a.entries.windows(2) {
            prop_assert!(net::sort_key(&w[0].net) < net::sort_key(&w[1].net));
        }
    }
}

#[test]
fn on_link_entries_are_banned_only_for_a_source_that_may_ban_there() {
    let detector = SourcePolicy {
        ban_on_link: true,
        ..policy("detector", 100)
    };
    let policies = vec![policy("feed", 50), detector];
    let mut allow = Allowlist::new();
    allow.add(n("45.67.89.0/24"), AllowReason::OnLink("eth0".into()));
    let input = |source: u16, nets: &[&str]| Input {
        source,
        sightings: nets.iter().map(|t| sight(n(t), 0, 1000)).collect(),
        complete: false,
    };
    let d = decide(
        Vec::new(),
        vec![
            input(0, &["45.67.89.5", "45.67.89.6", "45.67.88.0/23"]),
            input(1, &["45.67.89.6", "45.67.89.7"]),
        ],
        &policies,
        &allow,
        CAPS,
        0,
    );
    let desired: Vec<String> = d
        .desired_v4
        .iter()
        .map(|x| net::display_net(&x.net))
        .collect();
    // The feed's own listing there is kept out (and its /23 split); the detector's bans stand,
    // also where the feed lists the same address.
    assert_eq!(desired, ["45.67.88.0/24", "45.67.89.6", "45.67.89.7"]);
    assert_eq!(d.per_source[0].allowlisted, 1);
    // The fact is kept: the entry comes back if the rule goes.
    assert!(d.entries.iter().any(|e| e.net == n("45.67.89.5")));
    assert!(d
        .allow_hits
        .iter()
        .any(|h| h.listed == n("45.67.89.5") && !h.partial));
}

#[test]
fn marks_and_sightings_from_a_clock_that_was_ahead_expire_within_their_ttl() {
    // Source a asks for a day; manual (no configured TTL) was given an hour.
    let a = SourcePolicy {
        max_ttl: 86_400,
        ..policy("a", 50)
    };
    let policies = vec![a, policy("manual", 60)];
    let now = 1_800_000_000;
    let ahead = now + 365 * 86_400;
    let mark = |source, last_seen: i64, ttl: i64| Mark {
        source,
        first_seen: last_seen,
        last_seen,
        expires: last_seen + ttl,
    };
    let previous = vec![
        Entry {
            net: v4(1),
            marks: smallvec::smallvec![mark(0, ahead, 86_400)],
        },
        Entry {
            net: v4(2),
            marks: smallvec::smallvec![mark(1, ahead, 3600)],
        },
        // Seen now, but expiring later than its source's TTL allows.
        Entry {
            net: v4(3),
            marks: smallvec::smallvec![mark(0, now, 10 * 86_400)],
        },
    ];
    // A sighting stamped in the future (a log written under the wrong clock).
    let inputs = vec![Input {
        source: 0,
        sightings: vec![sight(v4(4), ahead, 86_400)].into(),
        complete: false,
    }];
    let d = decide_plain(previous, inputs, &policies, now);
    let expires: Vec<i64> = d.desired_v4.iter().map(|x| x.expires).collect();
    assert_eq!(
        expires,
        vec![now + 86_400, now + 3600, now + 86_400, now + 86_400]
    );
    for e in &d.entries {
        for m in &e.marks {
            assert!(m.first_seen <= now && m.last_seen <= now, "{m:?}");
        }
    }
    // Two saved marks came from the future; the one merely too long did not.
    assert_eq!((d.per_source[0].future, d.per_source[1].future), (1, 1));
}

/// `n` public IPv4 hosts and prefixes in 45.0.0.0/16 (dense, so that sources overlap).
fn dense_v4(r: &mut impl FnMut() -> u64, n: usize) -> Vec<IpNet> {
    (0..n)
        .map(|_| {
            let a = 0x2d00_0000u32 + (r() % 4096) as u32;
            let len = [32u8, 32, 32, 30, 28][(r() % 5) as usize];
            IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(a), len).unwrap()).trunc()
        })
        .collect()
}

proptest! {
    /// A feed's listing is bounded in merge (`Bound`): the decision must be the one of the
    /// same sightings given one by one, with entries held by other sources, older marks of
    /// the feed itself, an allowlist that splits and covers some prefixes, and caps far
    /// below the listing.
    #[test]
    fn a_bounded_listing_decides_like_its_sightings(
        seed in any::<u64>(),
        big in 200usize..2500,
        cap4 in 0usize..120,
        cap6 in 0usize..20,
        priorities in (0u16..3, 0u16..3, 0u16..3),
    ) {
        let mut rng = seed | 1;
        let mut r = move || { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; rng };
        let now = 10_000;
        let policies = vec![
            policy("feed", priorities.0),
            policy("other", priorities.1),
            SourcePolicy { ban_on_link: true, ..policy("additive", priorities.2) },
        ];
        let mut listing = dense_v4(&mut r, big);
        listing.extend((0..big / 10).map(|_| {
            let a = (0x2a00_1450u128 << 96) + u128::from(r() % 512);
            IpNet::V6(ipnet::Ipv6Net::new(std::net::Ipv6Addr::from(a), 128).unwrap())
        }));
        // Earlier entries: the feed's own (older), another feed's, both.
        let mut by_net: std::collections::BTreeMap<IpNet, Vec<Mark>> = Default::default();
        for (i, net) in dense_v4(&mut r, big / 4).into_iter().enumerate() {
            let source = (i % 3) as u16;
            let seen = now - 100 - (r() % 50) as i64;
            let marks = by_net.entry(net).or_default();
            if !marks.iter().any(|m| m.source == source) {
                marks.push(Mark { source, first_seen: seen, last_seen: seen, expires: seen + 86_400 });
            }
        }
        let previous: Vec<Entry> = by_net.into_iter().map(|(net, marks)| Entry { net, marks: marks.into() }).collect();
        let others: Vec<Sighting> = dense_v4(&mut r, big / 5).into_iter().map(|x| sight(x, now - 5, 3600)).collect();
        let mut allow = Allowlist::new();
        allow.add(n("45.0.3.0/26"), AllowReason::Config);
        allow.add(n("45.0.8.17"), AllowReason::OwnAddress("eth0".into()));
        allow.add(n("2a00:1450::100/120"), AllowReason::Config);
        let caps = Caps { v4: cap4, v6: cap6 };
        let inputs = |feed: Sightings| vec![
            Input { source: 0, sightings: feed, complete: true },
            Input { source: 2, sightings: others.clone().into(), complete: false },
        ];
        let each: Vec<Sighting> = listing.iter().map(|&x| sight(x, now, 86_400)).collect();
        let nets: Nets = listing.iter().copied().collect();
        let listed = Sightings::Listing { nets: std::sync::Arc::new(nets), seen: now, ttl: 86_400 };
        let a = decide(previous.clone(), inputs(each.into()), &policies, &allow, caps, now);
        let b = decide(previous, inputs(listed), &policies, &allow, caps, now);
        let only = |x: &Decision, y: &Decision| -> Vec<Entry> { x.entries.iter().filter(|e| !y.entries.contains(e)).cloned().collect() };
        prop_assert!(a.entries == b.entries, "only one by one: {:?}\nonly bounded: {:?}", only(&a, &b), only(&b, &a));
        prop_assert_eq!(&a.desired_v4, &b.desired_v4);
        prop_assert_eq!(&a.desired_v6, &b.desired_v6);
        prop_assert_eq!(&a.per_source, &b.per_source);
        prop_assert_eq!(&a.allow_hits, &b.allow_hits);
        prop_assert_eq!((a.evicted_v4, a.evicted_v6, a.forgotten), (b.evicted_v4, b.evicted_v6, b.forgotten));
    }
}

/// The bound at work: a listing of 10,000 against a cap of 10 keeps 40 entries, not 10,000,
/// and counts the rest.
#[test]
fn a_large_listing_keeps_only_what_the_cap_could_keep() {
    let policies = vec![policy("feed", 0)];
    let nets: Nets = (0..10_000).map(v4).collect();
    let input = Input {
        source: 0,
        sightings: Sightings::Listing {
            nets: std::sync::Arc::new(nets),
            seen: 100,
            ttl: 3600,
        },
        complete: true,
    };
    let caps = Caps { v4: 10, v6: 10 };
    let d = decide(
        Vec::new(),
        vec![input],
        &policies,
        &Allowlist::new(),
        caps,
        100,
    );
    assert_eq!(d.entries.len(), 10 * KEEP_FACTOR);
    assert_eq!(d.desired_v4.len(), 10);
    assert_eq!(d.desired_v4[0].net, v4(0));
    assert_eq!(d.evicted_v4, 10_000 - 10);
    assert_eq!(d.forgotten, 10_000 - 10 * KEEP_FACTOR);
    assert_eq!(d.per_source[0].listed, 10_000);
    assert_eq!(d.per_source[0].held, 10 * KEEP_FACTOR);
    assert_eq!(d.per_source[0].in_set, 10);
}
