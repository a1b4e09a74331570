//! Forget the connection-tracking entries of newly banned sources.
//!
//! A DROP rule in `filter INPUT` stops every packet of a banned source, but its conntrack
//! entries live on until they time out, and replies that the PBX keeps sending (OPTIONS
//! qualifies, RTP) keep them alive. After a sync adds addresses to the sets, [`forget_sources`]
//! lists the conntrack table once, picks the flows whose original source lies in an added
//! prefix, and deletes those sources in one `conntrack -R -` batch: two or three processes
//! per run, never one per banned address.
//!
//! Optional by design: without the `conntrack` tool (package `conntrack`) it reports that it
//! skipped and changes nothing. It never deletes a flow whose source was not just banned, and
//! it never passes text that was not parsed as an address to the tool.

use crate::net::{self, Family};
use anyhow::{bail, Context, Result};
use ipnet::IpNet;
use serde::Serialize;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::process::{Command, Stdio};

/// How many flows the kernel tracks in this network namespace.
const COUNT_FILE: &str = "/proc/sys/net/netfilter/nf_conntrack_count";

/// What [`forget_sources`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Forgotten {
    /// Tracked flows whose source was just banned.
    pub flows: usize,
    /// Distinct sources whose flows were deleted.
    pub sources: usize,
    /// Why nothing was done (no conntrack tool), if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// Added prefixes, grouped by prefix length so a flow's source is looked up once per length.
struct Prefixes {
    lengths: BTreeSet<(u8, u8)>,
    /// Sorted, for binary search: a sync may add 65,536 prefixes, and a sorted vector holds
    /// them in a fraction of a hash set's memory.
    keys: Vec<(u8, u8, u128)>,
}

fn bits(ip: IpAddr) -> (u8, u128) {
    match ip {
        IpAddr::V4(a) => (4, u128::from(u32::from(a))),
        IpAddr::V6(a) => (6, u128::from(a)),
    }
}

fn mask(family: u8, value: u128, len: u8) -> u128 {
    let width: u32 = if family == 4 { 32 } else { 128 };
    let len = u32::from(len).min(width);
    if len == 0 {
        return 0;
    }
    let keep = width - len;
    (value >> keep) << keep
}

impl Prefixes {
    fn new(adds: &[IpNet]) -> Prefixes {
        let mut lengths = BTreeSet::new();
        let mut keys = Vec::with_capacity(adds.len());
        for n in adds {
            let (f, v) = bits(n.network());
            let len = n.prefix_len();
            lengths.insert((f, len));
            keys.push((f, len, mask(f, v, len)));
        }
        keys.sort_unstable();
        keys.dedup();
        Prefixes { lengths, keys }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let (f, v) = bits(net::canonical_ip(ip));
        self.lengths
            .iter()
            .filter(|(lf, _)| *lf == f)
            .any(|&(_, len)| self.keys.binary_search(&(f, len, mask(f, v, len))).is_ok())
    }
}

/// The original-direction source of a `conntrack -L` line (the first `src=`).
pub fn flow_source(line: &str) -> Option<IpAddr> {
    line.split_ascii_whitespace()
        .find_map(|w| w.strip_prefix("src="))
        .and_then(net::parse_ip)
}

/// The sources among `lines` that fall in `adds`, and how many flows they have.
pub fn matching_sources<'a>(
    lines: impl Iterator<Item = &'a str>,
    adds: &[IpNet],
) -> (BTreeSet<IpAddr>, usize) {
    let prefixes = Prefixes::new(adds);
    let mut sources = BTreeSet::new();
    let mut flows = 0;
    for l in lines {
        if let Some(src) = flow_source(l) {
            if prefixes.contains(src) {
                flows += 1;
                sources.insert(net::canonical_ip(src));
            }
        }
    }
    (sources, flows)
}

/// Delete the conntrack entries whose original source lies in one of `adds` (the prefixes a
/// sync just added to the sets). Without the `conntrack` tool this does nothing and says so.
pub fn forget_sources(adds: &[IpNet]) -> Result<Forgotten> {
    if adds.is_empty() {
        return Ok(Forgotten::default());
    }
    // The kernel counts the tracked flows of this network namespace: with none (or without
    // connection tracking at all) there is nothing to forget, and no `conntrack` to start
    // (it costs ~7 ms, more than the rest of a small diff's apply).
    match std::fs::read_to_string(COUNT_FILE) {
        Ok(n) if n.trim() == "0" => {
            return Ok(Forgotten {
                skipped: Some("no tracked flows".into()),
                ..Forgotten::default()
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Forgotten {
                skipped: Some("connection tracking is not loaded".into()),
                ..Forgotten::default()
            })
        }
        _ => {}
    }
    // Built at the first tracked flow: an empty table costs nothing.
    let mut prefixes: Option<Prefixes> = None;
    let mut sources = BTreeSet::new();
    let mut flows = 0;
    for family in [Family::V4, Family::V6] {
        if !adds.iter().any(|n| Family::of(n) == family) {
            continue;
        }
        let flag = match family {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        };
        let mut child = match Command::new("conntrack")
            .args(["-L", "-f", flag])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Forgotten {
                    skipped: Some(
                        "the conntrack tool is not installed (apt-get install conntrack)"
                            .to_string(),
                    ),
                    ..Default::default()
                })
            }
            Err(e) => return Err(e).context("running conntrack -L"),
        };
        let stdout = child
            .stdout
            .take()
            .context("internal error: conntrack stdout not captured")?;
        for line in BufReader::new(stdout).lines() {
            let line = line.context("reading conntrack -L")?;
            if let Some(src) = flow_source(&line) {
                if prefixes
                    .get_or_insert_with(|| Prefixes::new(adds))
                    .contains(src)
                {
                    flows += 1;
                    sources.insert(net::canonical_ip(src));
                }
            }
        }
        let out = child.wait_with_output().context("running conntrack -L")?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            bail!(
                "conntrack -L -f {flag} failed ({}): {}{}",
                out.status,
                err.trim(),
                if err.contains("Operation not permitted") {
                    " (needs root or CAP_NET_ADMIN)"
                } else {
                    ""
                }
            );
        }
    }
    if sources.is_empty() {
        return Ok(Forgotten {
            flows,
            ..Default::default()
        });
    }
    let mut child = Command::new("conntrack")
        .args(["-R", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running conntrack -R")?;
    {
        let mut stdin = child
            .stdin
            .take()
            .context("internal error: conntrack stdin not captured")?;
        let mut batch = String::new();
        for s in &sources {
            batch.push_str(&format!("-D -s {s}\n"));
        }
        stdin
            .write_all(batch.as_bytes())
            .context("writing to conntrack -R")?;
    }
    let out = child.wait_with_output().context("running conntrack -R")?;
    if !out.status.success() {
        bail!(
            "conntrack -R failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(Forgotten {
        flows,
        sources: sources.len(),
        skipped: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_flows_from_added_prefixes_only() {
        let listing = "\
udp      17 99 src=45.0.0.1 dst=10.0.0.1 sport=5060 dport=5060 [UNREPLIED] src=10.0.0.1 dst=45.0.0.1 sport=5060 dport=5060 mark=0 use=1
udp      17 99 src=45.0.1.7 dst=10.0.0.1 sport=5060 dport=5060 [UNREPLIED] src=10.0.0.1 dst=45.0.1.7 sport=5060 dport=5060 mark=0 use=1
tcp      6 99 ESTABLISHED src=10.0.0.1 dst=45.0.0.9 sport=40000 dport=5060 src=45.0.0.9 dst=10.0.0.1 sport=5060 dport=40000 mark=0 use=1
udp      17 99 src=2001:db8::5 dst=2001:db8::1 sport=5060 dport=5060 src=2001:db8::1 dst=2001:db8::5 sport=5060 dport=5060 mark=0 use=1
udp      17 99 src=2001:db9::5 dst=2001:db8::1 sport=5060 dport=5060 src=2001:db8::1 dst=2001:db9::5 sport=5060 dport=5060 mark=0 use=1
garbage line
";
        let adds: Vec<IpNet> = ["45.0.0.1/32", "45.0.1.0/24", "2001:db8::/64"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let (sources, flows) = matching_sources(listing.lines(), &adds);
        assert_eq!(flows, 3);
        let got: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        // 45.0.0.9 is only the reply source of an outgoing flow: not banned traffic's origin.
        assert_eq!(got, ["45.0.0.1", "45.0.1.7", "2001:db8::5"]);
    }

    #[test]
    fn nothing_to_do_without_adds() {
        assert_eq!(forget_sources(&[]).unwrap(), Forgotten::default());
    }
}
