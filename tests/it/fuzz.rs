//! Fuzz-style runs over the parsers that read text from outside (issue 13): the Asterisk
//! detector (line anatomy and rules; the whole engine over multi-line logs with SIP debug
//! dumps and injection attempts, in memory, from files and across runs), the kernel-log
//! detector (the LOG line parser; the scan, in memory and from files) and the feed parsers
//! (plain, CSV and JSON, and `judge` over raw bytes).
//!
//! Inputs are structure-aware ([`seeds`], [`mutate`]): real lines mutated by truncation,
//! splicing, field replacement, keyword swaps, inserted `\n`/`\r`/NUL/ESC/invalid UTF-8, huge
//! fields (some over the 64 KiB line cap) and address edge forms; now and then plain random
//! bytes. Each test runs at least [`ITERS`] inputs (generated lines: one per case for the line
//! parsers, a log's or a feed body's lines for the others) from a fixed seed, so a run is the
//! same everywhere and takes the same time.
//!
//! * `SIPBAN_FUZZ_ITERS=N` runs N inputs per test instead (longer runs by hand);
//! * `SIPBAN_FUZZ_SEED=S` starts from another seed;
//! * a failing input is printed with its own seed and written under the target's tmp folder;
//!   `SIPBAN_FUZZ_CASE=<that seed>` replays just it.
//!
//! Invariants, besides "never panics": an address the Asterisk rules or engine, or the kernel
//! parser or scan, report is written in the input (in some textual form); a line over the cap
//! is skipped and counted, and what it names is never reported; counters add up; reading the
//! same bytes from memory or from a file gives the same report; a plain or CSV feed never
//! yields more records than it has lines.

mod mutate;
mod seeds;
mod wire;

use mutate::{appears, shown, Gen, SENTINEL};
use sipban::source::asterisk::guard::{self, Sender};
use sipban::source::asterisk::rules::{
    anatomy, classify, has_terminal_bytes, looks_like_failure, parse_addrport, parse_bare_ip,
    strip_terminal, Verdict,
};
use sipban::source::asterisk::{
    self as asterisk, AsteriskSettings, DetectorState, ScanOptions, SecurityServices, TimeZone,
};

/// Every service's security events counted: the widest set of rules.
const ALL_SERVICES: SecurityServices = SecurityServices {
    sip: true,
    pjsip: true,
    ami: true,
};
use sipban::source::kernlog::parse::{kernel_message, parse_addr, Line, Parser};
use sipban::source::kernlog::{self, KernelLogSettings};
use std::collections::HashSet;
use std::io::Write;
use std::net::IpAddr;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::OnceLock;
use std::time::Instant;

/// Inputs per test unless `SIPBAN_FUZZ_ITERS` says otherwise.
const ITERS: u64 = 1_000_000;
/// The base seed unless `SIPBAN_FUZZ_SEED` says otherwise.
const SEED: u64 = 0x5170_ba11_f022_0013;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={v}: {e}")))
}

/// Counts of what the generated inputs made the parsers do, so that a run can show (and
/// assert) it was not vacuous.
#[derive(Default)]
struct Seen {
    counts: std::collections::BTreeMap<&'static str, u64>,
    inputs: u64,
}

impl Seen {
    fn add(&mut self, what: &'static str, n: u64) {
        *self.counts.entry(what).or_default() += n;
    }

    /// That at least `per_million` of `what` came per million inputs.
    fn at_least(&self, what: &str, per_million: u64) {
        let n = self.counts.get(what).copied().unwrap_or(0);
        assert!(
            n * 1_000_000 >= per_million * self.inputs,
            "the generator is vacuous: {n} {what} in {} inputs",
            self.inputs
        );
    }
}

/// Run `case` on fresh seeds until it has consumed `ITERS` inputs. `case` generates its input
/// into `parts` (so that a failure can show it), checks it, counts what happened in `seen`,
/// and returns how many inputs it exercised. Returns what was seen, unless the run was a
/// replay or shorter than 100,000 inputs (too short to judge coverage).
fn fuzz(
    name: &str,
    mut case: impl FnMut(&mut Gen, &mut Vec<Vec<u8>>, &mut Seen) -> u64,
) -> Option<Seen> {
    let target = env_u64("SIPBAN_FUZZ_ITERS").unwrap_or(ITERS);
    let base = env_u64("SIPBAN_FUZZ_SEED").unwrap_or(SEED);
    let started = Instant::now();
    let mut parts: Vec<Vec<u8>> = Vec::new();
    let mut seen = Seen::default();
    let mut one = |index: u64, seed: u64, seen: &mut Seen| -> u64 {
        parts.clear();
        let mut g = Gen::new(seed);
        match catch_unwind(AssertUnwindSafe(|| case(&mut g, &mut parts, seen))) {
            Ok(n) => n,
            Err(panic) => {
                failed(name, base, index, seed, &parts);
                resume_unwind(panic)
            }
        }
    };
    if let Some(seed) = env_u64("SIPBAN_FUZZ_CASE") {
        one(0, seed, &mut seen);
        return None;
    }
    let (mut inputs, mut cases) = (0u64, 0u64);
    while inputs < target {
        let seed = base ^ cases.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        inputs += one(cases, seed, &mut seen);
        cases += 1;
    }
    eprintln!(
        "fuzz {name}: {inputs} inputs in {cases} cases, {:.2?} (SIPBAN_FUZZ_SEED={base:#x}); {:?}",
        started.elapsed(),
        seen.counts
    );
    seen.inputs = inputs;
    (inputs >= 100_000).then_some(seen)
}

/// Print a failing case and keep its input in a file.
fn failed(name: &str, base: u64, index: u64, seed: u64, parts: &[Vec<u8>]) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz");
    let _ = std::fs::create_dir_all(&dir);
    eprintln!(
        "\nfuzz {name}: case {index} of base seed {base:#x} failed.\n\
         Replay it alone: SIPBAN_FUZZ_CASE={seed:#x} cargo test --test it fuzz::{name}"
    );
    for (i, p) in parts.iter().enumerate() {
        let file = dir.join(format!("{name}-{seed:x}-{i}.bin"));
        let saved = std::fs::write(&file, p).is_ok();
        eprintln!(
            "--- input part {i} ({} bytes{}):\n{}\n---",
            p.len(),
            if saved {
                format!(", saved in {}", file.display())
            } else {
                String::new()
            },
            shown(p, 4096)
        );
    }
}

fn newlines(b: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', b).count() as u64
}

/// Whether `part` lies inside `whole` (an anatomy field must be a slice of its line).
fn within(part: &[u8], whole: &[u8]) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    part.is_empty() || (p >= w && p + part.len() <= w + whole.len())
}

// ---------------------------------------------------------------------------------------------
// Asterisk

/// The text the Asterisk engine reads: the input, plus every line with terminal bytes as the
/// engine cleans it (escape sequences are removed before matching).
fn asterisk_haystack(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut hay = Vec::new();
    for p in parts {
        hay.extend_from_slice(p);
        hay.push(b'\n');
        for l in p.split(|b| *b == b'\n') {
            if has_terminal_bytes(l) {
                hay.extend_from_slice(&strip_terminal(l));
                hay.push(b'\n');
            }
        }
    }
    hay
}

fn check_verdict(v: &Verdict<'_>, line: &[u8], seen: &mut Seen) {
    match v {
        Verdict::Failure { ip, .. } => {
            assert!(appears(ip, line), "rule reported {ip}");
            seen.add("failure", 1);
        }
        Verdict::Timeout { callid } => {
            assert!(within(callid, line));
            seen.add("timeout", 1);
        }
        Verdict::Refused => seen.add("refused", 1),
        Verdict::Nothing => {}
    }
}

/// One line through the anatomy and the rules, as the engine reads it (terminal bytes
/// removed); one line in eight also through the other line-level functions, raw and cleaned.
#[test]
fn asterisk_lines() {
    let seen = fuzz("asterisk_lines", |g, parts, seen| {
        parts.push(seeds::line(g, &seeds::seeds().asterisk, 85, 2000, true));
        let raw = &parts[0];
        let clean = has_terminal_bytes(raw).then(|| strip_terminal(raw));
        let line = clean.as_deref().unwrap_or(raw);
        assert!(line.len() <= raw.len());
        let aggressive = g.one_in(2);
        if let Some(a) = anatomy(line) {
            seen.add("anatomy", 1);
            check_verdict(&classify(&a, aggressive), line, seen);
            // A record with an attacker field: its head's sender is in the line, its field
            // starts inside it.
            if let Some(op) = guard::opening(&a, line, aggressive, ALL_SERVICES) {
                assert!(op.field <= line.len(), "field past the line");
                if let Sender::Head(_, ip, _) = op.sender {
                    assert!(appears(&ip, line), "opener head named {ip}");
                }
                seen.add("opener", 1);
            }
        }
        if g.one_in(8) {
            for line in [&raw[..], line] {
                for form in [
                    guard::Form::Security,
                    guard::Form::SipCall,
                    guard::Form::PjsipCall,
                    guard::Form::Iax2NoRegistration,
                ] {
                    if let Some(m) = guard::tail_marker(form, line, 0) {
                        assert!(m <= line.len());
                        for strict in [false, true] {
                            if let Some((ip, _)) = guard::tail_sender(form, strict, line, m) {
                                assert!(appears(&ip, line), "tail named {ip}");
                            }
                        }
                    }
                }
                let _ = guard::broken_opening(line);
                for ip in [parse_bare_ip(line), parse_addrport(line)]
                    .into_iter()
                    .flatten()
                {
                    assert!(appears(&ip, line), "address parser returned {ip}");
                }
                let Some(a) = anatomy(line) else { continue };
                for f in [a.date, a.lwp, a.file, a.msg] {
                    assert!(within(f, line), "anatomy field outside its line");
                }
                a.stamp();
                looks_like_failure(&a);
                check_verdict(&classify(&a, !aggressive), line, &mut Seen::default());
            }
        }
        1
    });
    if let Some(seen) = seen {
        seen.at_least("anatomy", 300_000);
        seen.at_least("failure", 50_000);
        seen.at_least("opener", 10_000);
        seen.at_least("refused", 5_000);
        seen.at_least("timeout", 1_000);
    }
}

fn asterisk_opts(g: &mut Gen) -> ScanOptions {
    ScanOptions {
        verbose: g.one_in(4),
        aggressive: g.one_in(2),
        security_services: if g.one_in(2) {
            ALL_SERVICES
        } else {
            SecurityServices::default()
        },
        timezone: if g.one_in(4) {
            TimeZone::System
        } else {
            TimeZone::FixedOffset(g.range(0, 2 * 50_400) as i32 - 50_400)
        },
    }
}

/// What holds for any scan report over `parts` (the normal logs, then the full log).
fn check_asterisk_report(r: &asterisk::ScanReport, parts: &[Vec<u8>], long: &[usize]) {
    assert_eq!(r.files.len(), parts.len());
    for ((f, p), l) in r.files.iter().zip(parts).zip(long) {
        assert_eq!(
            f.long_lines,
            *l as u64,
            "lines over the cap in {}",
            f.path.display()
        );
        assert_eq!(
            f.lines + f.long_lines,
            newlines(p),
            "lines read from {}",
            f.path.display()
        );
    }
    let c = &r.counters;
    assert_eq!(c.matched, c.by_rule.values().sum::<u64>());
    assert_eq!(
        c.matched,
        r.addresses.values().map(|e| e.count).sum::<u64>()
    );
    assert!(c.timeouts_attributed <= c.matched);
    assert!(r.unmatched.len() <= 1000 && r.suppressed.len() <= 1000);
    let hay = asterisk_haystack(parts);
    for ip in r.addresses.keys() {
        assert!(
            appears(ip, &hay),
            "the engine reported {ip}, not in the input"
        );
        assert_ne!(ip.to_string(), SENTINEL, "a line over the cap was read");
    }
}

/// `parts` written to files and scanned: the same report as from memory.
fn asterisk_from_files(parts: &[Vec<u8>], full: bool, opts: ScanOptions) -> asterisk::ScanReport {
    let d = tempfile::tempdir().expect("tempdir");
    let paths: Vec<_> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let path = d.path().join(format!("log{i}"));
            std::fs::write(&path, p).expect("write log");
            path
        })
        .collect();
    let (logs, full) = if full {
        (&paths[..paths.len() - 1], paths.last().map(|p| p.as_path()))
    } else {
        (&paths[..], None)
    };
    asterisk::scan_with(logs, full, opts).expect("scan files")
}

/// `parts` (normal logs only) appended in pieces, one detector run after each, with the state
/// through JSON in between.
fn asterisk_runs(g: &mut Gen, parts: &[Vec<u8>]) {
    let d = tempfile::tempdir().expect("tempdir");
    let paths: Vec<_> = (0..parts.len())
        .map(|i| d.path().join(format!("log{i}")))
        .collect();
    let settings = AsteriskSettings {
        logs: paths.clone(),
        full_log: None,
        aggressive: g.one_in(2),
        timezone: TimeZone::FixedOffset(0),
        ..AsteriskSettings::default()
    };
    let mut files: Vec<std::fs::File> = paths
        .iter()
        .map(|p| std::fs::File::create(p).expect("create log"))
        .collect();
    let mut written = vec![0; parts.len()];
    let hay = asterisk_haystack(parts);
    let mut state = DetectorState::default();
    for _ in 0..g.range(1, 5) {
        for (i, p) in parts.iter().enumerate() {
            let to = g.range(written[i], p.len());
            files[i].write_all(&p[written[i]..to]).expect("append");
            written[i] = to;
        }
        let blob = serde_json::to_string(&state).expect("state to JSON");
        state = serde_json::from_str(&blob).expect("state from JSON");
        let r = asterisk::run(&settings, &mut state, 1_714_644_000).expect("run");
        for ip in r.evidence.keys() {
            assert!(appears(ip, &hay), "a run reported {ip}, not in the input");
            assert_ne!(ip.to_string(), SENTINEL, "a line over the cap was read");
        }
    }
}

/// The whole engine over generated logs: one log, a full log with dumps, two copies of a log
/// (cross-file de-duplication) or a log and a full log; now and then from files, and across
/// runs.
#[test]
fn asterisk_engine() {
    let seen = fuzz("asterisk_engine", |g, parts, seen| {
        let over_cap = g.one_in(20);
        let (data, long) = seeds::asterisk_log(g, 160, over_cap);
        let mode = g.below(4);
        let mut longs = vec![long];
        parts.push(data);
        match mode {
            2 => {
                // A second log holding a subset of the same lines.
                let mut copy = Vec::with_capacity(parts[0].len());
                for l in parts[0].split_inclusive(|b| *b == b'\n') {
                    if !g.one_in(4) {
                        copy.extend_from_slice(l);
                    }
                }
                let long = copy
                    .split(|b| *b == b'\n')
                    .filter(|l| l.len() > sipban::source::tail::MAX_LINE)
                    .count();
                parts.push(copy);
                longs.push(long);
            }
            3 => {
                let (full, long) = seeds::asterisk_log(g, 80, false);
                parts.push(full);
                longs.push(long);
            }
            _ => {}
        }
        let full = matches!(mode, 1 | 3);
        let opts = asterisk_opts(g);
        let refs: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
        let r = if full {
            let (logs, last) = refs.split_at(refs.len() - 1);
            asterisk::scan_bytes(logs, Some(last[0]), opts)
        } else {
            asterisk::scan_bytes(&refs, None, opts)
        };
        check_asterisk_report(&r, parts, &longs);
        let c = &r.counters;
        seen.add("addresses", r.addresses.len() as u64);
        seen.add("matched", c.matched);
        seen.add("refused", c.refused);
        seen.add("guarded", c.injected + c.suspect);
        seen.add("injections", c.injections);
        seen.add("dump_lines", c.dump_lines);
        seen.add("timeouts_attributed", c.timeouts_attributed);
        seen.add("timeouts_unattributed", c.timeouts_unattributed);
        seen.add("duplicates", c.duplicates);
        seen.add("long_lines", c.long_lines);
        if g.one_in(25) {
            let f = asterisk_from_files(parts, full, opts);
            check_asterisk_report(&f, parts, &longs);
            assert_eq!(f.counters, r.counters, "files and memory disagree");
            // A line without a date takes the scan's "now", which may tick between the two
            // scans: compare everything but the times.
            let untimed = |r: &asterisk::ScanReport| {
                r.addresses
                    .iter()
                    .map(|(ip, e)| (*ip, e.count, e.failures, e.timeouts, e.rules.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(untimed(&f), untimed(&r), "files and memory disagree");
            seen.add("read_from_files", 1);
        }
        if !full && g.one_in(50) {
            asterisk_runs(g, parts);
            seen.add("read_across_runs", 1);
        }
        parts.iter().map(|p| newlines(p)).sum()
    });
    if let Some(seen) = seen {
        for (what, least) in [
            ("matched", 25_000),
            ("guarded", 10_000),
            ("injections", 100),
            ("dump_lines", 10_000),
            ("timeouts_attributed", 20),
            ("timeouts_unattributed", 1_000),
            ("duplicates", 2_000),
            ("long_lines", 100),
            ("read_from_files", 50),
            ("read_across_runs", 20),
        ] {
            seen.at_least(what, least);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// kernel log

/// One line through the LOG parser; one in eight also through the wrapper and the address
/// parser on a random piece of it.
#[test]
fn kernel_lines() {
    let parser = Parser::new();
    let seen = fuzz("kernel_lines", |g, parts, seen| {
        parts.push(seeds::line(g, &seeds::seeds().kernel, 85, 2000, true));
        let line = &parts[0];
        let parsed = parser.parse(line);
        seen.add(
            match parsed {
                Line::NotKernel | Line::Unparsed | Line::Refused => "not_kernel",
                Line::NotFirewall => "not_firewall",
                Line::NotInbound => "not_inbound",
                Line::OtherProtocol => "other_protocol",
                Line::Malformed => "malformed",
                Line::Packet(_) => "packet",
            },
            1,
        );
        if let Line::Packet(p) = parsed {
            assert!(appears(&p.src, line), "SRC {} not in the line", p.src);
            assert!(appears(&p.dst, line), "DST {} not in the line", p.dst);
            assert!(within(p.prefix, line) && within(p.iface, line));
            assert!(!p.iface.is_empty() && p.iface.len() <= 16 && !p.iface.contains(&b' '));
            p.reply_shaped();
            p.accepted();
        }
        if g.one_in(8) {
            if let Some((_, msg)) = kernel_message(line) {
                assert!(within(msg, line));
            }
            if !line.is_empty() {
                let s = g.below(line.len());
                let e = g.range(s, line.len().min(s + 50));
                if let Some(a) = parse_addr(&line[s..e]) {
                    assert!(appears(&a, &line[s..e]), "parse_addr returned {a}");
                }
            }
        }
        1
    });
    if let Some(seen) = seen {
        seen.at_least("packet", 100_000);
        for what in [
            "not_kernel",
            "not_firewall",
            "not_inbound",
            "other_protocol",
            "malformed",
        ] {
            seen.at_least(what, 5_000);
        }
    }
}

fn kernel_settings(g: &mut Gen) -> KernelLogSettings {
    let threshold = *g.pick(&[0, 1, 3, 10, kernlog::MAX_THRESHOLD]);
    let distinct = *g.pick(&[1, 2, 8, kernlog::MAX_DISTINCT_PORTS]);
    // The built-in catalogue parsed once (`scan_bytes` would parse its YAML on every call).
    static BUILTIN: OnceLock<Vec<sipban::config::ports::PortEntry>> = OnceLock::new();
    let ports = BUILTIN.get_or_init(|| sipban::config::ports::builtin().expect("built-in ports"));
    KernelLogSettings {
        builtin_ports: false,
        ports: ports.clone(),
        window: *g.pick(&[1, 60, 600, 86_400]),
        threshold,
        distinct_ports: if threshold > 0 && g.one_in(3) {
            0
        } else {
            distinct
        },
        timezone: if g.one_in(4) {
            TimeZone::System
        } else {
            TimeZone::FixedOffset(0)
        },
        ..KernelLogSettings::default()
    }
}

fn check_kernel_report(r: &kernlog::ScanReport, input: &[u8], lines: u64) {
    let c = &r.counters;
    assert_eq!(c.lines, lines, "lines read");
    assert_eq!(
        c.firewall_lines,
        c.not_inbound + c.other_protocol + c.malformed + c.packets
    );
    assert_eq!(
        c.packets,
        c.ignored_source
            + c.broadcast
            + c.accepted
            + c.replies
            + c.harmless
            + c.weighted
            + c.unlisted
    );
    assert_eq!(
        c.packets,
        r.addresses.iter().map(|a| a.packets).sum::<u64>()
    );
    let sources = mutate::addresses_after(input, b"SRC=");
    for a in &r.addresses {
        assert!(
            sources.contains(&a.ip) || appears(&a.ip, input),
            "the scan reported {}",
            a.ip
        );
        assert_ne!(a.ip.to_string(), SENTINEL, "a line over the cap was read");
    }
}

/// The scan over generated kernel logs, from memory; now and then with lines over the cap and
/// also from a file, which must give the same report.
#[test]
fn kernel_scan() {
    let own: HashSet<IpAddr> = ["203.0.113.10", "2001:db8::1"]
        .iter()
        .map(|a| a.parse().expect("address"))
        .collect();
    let seen = fuzz("kernel_scan", |g, parts, seen| {
        let settings = kernel_settings(g);
        let from_file = g.one_in(20);
        let (data, long) = seeds::kernel_log(g, 1000, from_file);
        parts.push(data);
        let data = &parts[0];
        let lines = newlines(data) - long as u64;
        // One "now" for both scans: a date ahead of the clock is taken as now, and the two
        // must not straddle a second.
        let now = sipban::clock::unix_now();
        let r = kernlog::scan_bytes_at(&[data], &settings, &own, now).expect("scan");
        assert_eq!(r.counters.long_lines, long as u64, "lines over the cap");
        check_kernel_report(&r, data, lines);
        if from_file {
            let d = tempfile::tempdir().expect("tempdir");
            let path = d.path().join("kern.log");
            std::fs::write(&path, data).expect("write log");
            let f = kernlog::scan_at(&[path], &settings, &own, "fuzz", now).expect("scan file");
            assert_eq!(f.files[0].long_lines, long as u64, "lines over the cap");
            check_kernel_report(&f, data, lines);
            assert_eq!(f.counters, r.counters, "file and memory disagree");
            assert_eq!(f.addresses, r.addresses, "file and memory disagree");
            seen.add("read_from_files", 1);
            seen.add("long_lines", long as u64);
        }
        let c = &r.counters;
        seen.add("packets", c.packets);
        seen.add("weighted", c.weighted);
        seen.add("ignored_source", c.ignored_source);
        seen.add("malformed", c.malformed);
        seen.add(
            "fired",
            r.addresses.iter().filter(|a| a.fired.is_some()).count() as u64,
        );
        newlines(data)
    });
    if let Some(seen) = seen {
        for (what, least) in [
            ("packets", 100_000),
            ("weighted", 50_000),
            ("ignored_source", 10_000),
            ("malformed", 10_000),
            ("fired", 2_000),
            ("read_from_files", 20),
            ("long_lines", 100),
        ] {
            seen.at_least(what, least);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// feeds

use sipban::config::{FeedFormat, FeedSettings};
use sipban::source::feed;

fn feed_settings(extra: &str) -> FeedSettings {
    let cfg = format!("feeds:\n  - name: fuzz\n    url: https://example.org/x\n{extra}");
    sipban::config::load_str(&cfg, std::path::Path::new("/fuzz.yaml"))
        .expect("feed config")
        .feeds
        .remove(0)
}

/// `parse` in `format`, and one body in four through `judge` on the raw bytes: no panic,
/// bounded output. Returns the body's lines (the inputs it exercised).
fn check_feed(
    format: &FeedFormat,
    settings: &FeedSettings,
    g: &mut Gen,
    seen: &mut Seen,
    body: &[u8],
) -> u64 {
    let lines = newlines(body) + u64::from(!body.ends_with(b"\n"));
    if let Ok(text) = std::str::from_utf8(body) {
        let parsed = feed::parse(format, text);
        seen.add(if parsed.is_ok() { "parsed" } else { "refused" }, 1);
        if let Ok(l) = parsed {
            seen.add("nets", l.nets.len() as u64);
            seen.add("invalid", l.invalid as u64);
            let records = l.nets.len() + l.invalid;
            match format {
                FeedFormat::Json { .. } => assert!(records <= text.len(), "{records} records"),
                _ => assert!(
                    records <= text.lines().count(),
                    "{records} records from {} lines",
                    text.lines().count()
                ),
            }
            assert!(l.invalid_samples.len() <= l.invalid.min(feed::MAX_SAMPLES));
            assert!(l.invalid_samples.iter().all(|s| s.chars().count() <= 80));
            assert!(l.nets.iter().all(|n| n == n.trunc()));
        }
    }
    if g.one_in(4) {
        let policy = sipban::pipeline::gate::SourcePolicy::for_feed(settings);
        let admitted = |n: &ipnet::IpNet| policy.reject(n).is_none();
        let last = [None, Some(0), Some(1), Some(3), Some(u64::MAX)];
        match feed::judge(settings, body, *g.pick(&last), &admitted) {
            Ok(l) => {
                assert!(!l.nets.is_empty(), "a judged listing without addresses");
                seen.add("judged_good", 1);
            }
            Err(_) => seen.add("judged_bad", 1),
        }
    }
    lines
}

fn check_feed_seen(seen: Option<Seen>, json: bool) {
    if let Some(seen) = seen {
        for what in ["parsed", "nets", "invalid", "judged_good", "judged_bad"] {
            seen.at_least(what, 1_000);
        }
        if json {
            seen.at_least("refused", 10_000);
        }
    }
}

/// Plain bodies (inputs: lines).
#[test]
fn feed_plain() {
    let settings = feed_settings("");
    let seen = fuzz("feed_plain", |g, parts, seen| {
        let n = g.range(1, 12);
        parts.push(seeds::feed_body(
            g,
            &seeds::seeds().plain,
            seeds::Records::Plain,
            n,
        ));
        check_feed(&FeedFormat::Plain, &settings, g, seen, &parts[0])
    });
    check_feed_seen(seen, false);
}

/// CSV bodies, any column (inputs: lines).
#[test]
fn feed_csv() {
    let settings = feed_settings("    format: csv\n    column: 2\n");
    let seen = fuzz("feed_csv", |g, parts, seen| {
        let n = g.range(1, 12);
        parts.push(seeds::feed_body(
            g,
            &seeds::seeds().csv,
            seeds::Records::Csv,
            n,
        ));
        let column = *g.pick(&[0, 1, 2, 2, 3, 7, usize::MAX]);
        check_feed(&FeedFormat::Csv { column }, &settings, g, seen, &parts[0])
    });
    check_feed_seen(seen, false);
}

/// JSON documents and JSON lines, any pointer (inputs: lines).
#[test]
fn feed_json() {
    let settings = [
        feed_settings("    format: json\n    pointer: /cidr\n"),
        feed_settings("    format: json\n    pointer: /data/*/ip\n"),
    ];
    let seen = fuzz("feed_json", |g, parts, seen| {
        parts.push(seeds::json_body(g));
        let pointer = g.pick(seeds::POINTERS).to_string();
        let s = g.pick(&settings);
        check_feed(&FeedFormat::Json { pointer }, s, g, seen, &parts[0])
    });
    check_feed_seen(seen, true);
}
