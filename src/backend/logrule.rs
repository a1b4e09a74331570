//! The probe-logging rule: a rate-limited `LOG` rule for new inbound connections to the port
//! catalogue's weighted ports, so that the kernel-log detector has lines to read.
//!
//! [`LogRule::script`] is a shell script an admin can read and run; [`LogRule::apply`] runs
//! exactly the same commands. Both are idempotent:
//!
//! * **iptables** (and ip6tables): two chains of sipban's own, `sipban-log` (the port matches)
//!   and `sipban-log-emit` (one shared rate limit, then `LOG`), rewritten atomically by one
//!   `iptables-restore --noflush` batch (declaring a chain there flushes it), and one jump
//!   inserted at the top of `INPUT` unless `iptables -C` finds it already;
//! * **nft**: a table of sipban's own, `inet sipban_log`, with an input hook at priority -10 (so
//!   probes are logged before the admin's filter decides), replaced atomically by one `nft -f`
//!   transaction (`table` + `delete table` + the new table).
//!
//! Only TCP SYNs (connection attempts) and new UDP flows are logged, at most 10 lines a second
//! (bursts of 50) across all sources, with the prefix [`PREFIX`]. The limit keeps a flood from
//! filling the disk; the detector counts distinct ports, so a sample is enough.
//!
//! This file must never touch a chain or table that it does not name itself, never drop or
//! accept a packet (it only logs), and never pass anything to the tools but port numbers it
//! formatted from the catalogue.

use crate::source::kernlog::ports::{Catalogue, PortRange, Proto};
use anyhow::{bail, Context};
use std::fmt;
use std::io::Write;
use std::process::{Command, Stdio};
use std::str::FromStr;

/// The log prefix of sipban's rule (kernel lines read `sipban-probe: IN=...`).
pub const PREFIX: &str = "sipban-probe: ";
/// iptables chains (created and owned by sipban).
pub const CHAIN: &str = "sipban-log";
pub const EMIT_CHAIN: &str = "sipban-log-emit";
/// The nftables table (family inet, created and owned by sipban).
pub const NFT_TABLE: &str = "sipban_log";
/// Shared rate limit of the LOG rule.
pub const RATE_PER_SECOND: u32 = 10;
pub const BURST: u32 = 50;
/// iptables `multiport` takes at most 15 ports per rule, a range counting as two.
const MULTIPORT_SLOTS: usize = 15;

/// Which firewall front end writes the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Iptables,
    Nft,
}

impl Backend {
    /// `iptables` when the `iptables` program is installed (it then also covers IPv6 through
    /// `ip6tables`), otherwise `nft`.
    pub fn detect() -> Backend {
        if on_path("iptables") {
            Backend::Iptables
        } else {
            Backend::Nft
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Backend::Iptables => "iptables",
            Backend::Nft => "nft",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "iptables" => Ok(Backend::Iptables),
            "nft" | "nftables" => Ok(Backend::Nft),
            other => Err(format!("unknown backend `{other}` (use iptables or nft)")),
        }
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// The rule for a catalogue: which ports it watches, per protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRule {
    pub backend: Backend,
    pub tcp: Vec<PortRange>,
    pub udp: Vec<PortRange>,
}

/// One step of [`LogRule::apply`], for the report.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    pub command: String,
    pub result: String,
}

impl LogRule {
    /// Watch the catalogue's weighted probe ports.
    pub fn new(cat: &Catalogue, backend: Backend) -> LogRule {
        LogRule {
            backend,
            tcp: cat.watched(Proto::Tcp),
            udp: cat.watched(Proto::Udp),
        }
    }

    /// The iptables-restore batch for the two chains.
    pub fn iptables_batch(&self) -> String {
        let mut b = String::from("*filter\n");
        b.push_str(&format!(":{CHAIN} - [0:0]\n:{EMIT_CHAIN} - [0:0]\n"));
        for (proto, ranges) in [("tcp", &self.tcp), ("udp", &self.udp)] {
            let syn = if proto == "tcp" { " --syn" } else { "" };
            for chunk in multiport_chunks(ranges) {
                b.push_str(&format!(
                    "-A {CHAIN} -p {proto}{syn} -m multiport --dports {chunk} -m conntrack --ctstate NEW -g {EMIT_CHAIN}\n"
                ));
            }
        }
        b.push_str(&format!(
            "-A {EMIT_CHAIN} -m limit --limit {RATE_PER_SECOND}/sec --limit-burst {BURST} -j LOG --log-prefix \"{PREFIX}\" --log-level 4\n"
        ));
        b.push_str("COMMIT\n");
        b
    }

    /// The nft script (one atomic transaction).
    pub fn nft_script(&self) -> String {
        let set = |r: &[PortRange]| -> String {
            r.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut s = format!("table inet {NFT_TABLE} {{\n}}\ndelete table inet {NFT_TABLE}\n");
        s.push_str(&format!("table inet {NFT_TABLE} {{\n"));
        s.push_str("\tchain input {\n\t\ttype filter hook input priority -10; policy accept;\n");
        if !self.tcp.is_empty() {
            s.push_str(&format!(
                "\t\tct state new tcp flags & (fin | syn | rst | ack) == syn tcp dport {{ {} }} jump emit\n",
                set(&self.tcp)
            ));
        }
        if !self.udp.is_empty() {
            s.push_str(&format!(
                "\t\tct state new udp dport {{ {} }} jump emit\n",
                set(&self.udp)
            ));
        }
        s.push_str("\t}\n\tchain emit {\n");
        s.push_str(&format!(
            "\t\tlimit rate {RATE_PER_SECOND}/second burst {BURST} packets log prefix \"{PREFIX}\" level warn\n"
        ));
        s.push_str("\t}\n}\n");
        s
    }

    /// The shell script that installs the rule; [`LogRule::apply`] runs the same commands.
    pub fn script(&self) -> String {
        let mut s = format!(
            "# sipban: log new inbound connections to the port catalogue's weighted ports\n\
             # ({} TCP and {} UDP port ranges), at most {RATE_PER_SECOND} lines a second, prefix \"{PREFIX}\".\n\
             # Idempotent: running it again rewrites sipban's own rules and nothing else.\n",
            self.tcp.len(),
            self.udp.len()
        );
        match self.backend {
            Backend::Iptables => {
                let batch = self.iptables_batch();
                for tool in ["iptables", "ip6tables"] {
                    s.push_str(&format!("{tool}-restore --noflush <<'EOF'\n{batch}EOF\n"));
                    s.push_str(&format!(
                        "{tool} -C INPUT -j {CHAIN} 2>/dev/null || {tool} -I INPUT 1 -j {CHAIN}\n"
                    ));
                }
            }
            Backend::Nft => {
                s.push_str(&format!("nft -f - <<'EOF'\n{}EOF\n", self.nft_script()));
            }
        }
        s
    }

    /// Install the rule (root only). Returns what each command did.
    pub fn apply(&self) -> anyhow::Result<Vec<Step>> {
        let mut steps = Vec::new();
        match self.backend {
            Backend::Iptables => {
                let batch = self.iptables_batch();
                for tool in ["iptables", "ip6tables"] {
                    let restore = format!("{tool}-restore");
                    run_with_stdin(&restore, &["--noflush"], &batch)
                        .with_context(|| format!("installing the {CHAIN} chains with {restore}"))?;
                    steps.push(Step {
                        command: format!("{restore} --noflush"),
                        result: format!("chains {CHAIN} and {EMIT_CHAIN} written"),
                    });
                    let present = Command::new(tool)
                        .args(["-C", "INPUT", "-j", CHAIN])
                        .stdin(Stdio::null())
                        .output()
                        .with_context(|| format!("cannot run {tool}"))?
                        .status
                        .success();
                    if present {
                        steps.push(Step {
                            command: format!("{tool} -C INPUT -j {CHAIN}"),
                            result: "jump already at INPUT".into(),
                        });
                    } else {
                        run_with_stdin(tool, &["-I", "INPUT", "1", "-j", CHAIN], "")
                            .with_context(|| format!("adding the jump to {CHAIN} in INPUT"))?;
                        steps.push(Step {
                            command: format!("{tool} -I INPUT 1 -j {CHAIN}"),
                            result: "jump added at the top of INPUT".into(),
                        });
                    }
                }
            }
            Backend::Nft => {
                run_with_stdin("nft", &["-f", "-"], &self.nft_script())
                    .with_context(|| format!("installing table inet {NFT_TABLE} with nft"))?;
                steps.push(Step {
                    command: "nft -f -".into(),
                    result: format!("table inet {NFT_TABLE} written"),
                });
            }
        }
        Ok(steps)
    }
}

/// Run `program args` with `input` on stdin; an error carries its stderr.
fn run_with_stdin(program: &str, args: &[&str], input: &str) -> anyhow::Result<()> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {program} (is it installed, and are you root?)"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .with_context(|| format!("writing to {program}"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("waiting for {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Port lists for `-m multiport --dports`, at most 15 slots each (a range takes two).
fn multiport_chunks(ranges: &[PortRange]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    let mut used = 0;
    for r in ranges {
        let cost = if r.lo == r.hi { 1 } else { 2 };
        if used + cost > MULTIPORT_SLOTS {
            out.push(cur.join(","));
            cur.clear();
            used = 0;
        }
        cur.push(if r.lo == r.hi {
            r.lo.to_string()
        } else {
            format!("{}:{}", r.lo, r.hi)
        });
        used += cost;
    }
    if !cur.is_empty() {
        out.push(cur.join(","));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::kernlog::ports;

    fn rule(b: Backend) -> LogRule {
        LogRule::new(&Catalogue::new(ports::builtin().unwrap()), b)
    }

    #[test]
    fn multiport_chunks_respect_the_slot_limit() {
        let r: Vec<PortRange> = (0..20)
            .map(|i| PortRange {
                lo: i * 10,
                hi: i * 10 + (i % 2),
            })
            .collect();
        let chunks = multiport_chunks(&r);
        for c in &chunks {
            let slots: usize = c
                .split(',')
                .map(|p| if p.contains(':') { 2 } else { 1 })
                .sum();
            assert!(slots <= MULTIPORT_SLOTS, "{c}");
        }
        assert_eq!(chunks.join(",").split(',').count(), 20);
    }

    #[test]
    fn scripts_name_only_sipbans_own_objects_and_weighted_ports() {
        let ipt = rule(Backend::Iptables).script();
        assert!(ipt.contains("iptables-restore --noflush"));
        assert!(ipt.contains("ip6tables -C INPUT -j sipban-log"));
        assert!(ipt.contains("1524"), "{ipt}");
        assert!(
            !ipt.contains("5060"),
            "SIP counts only from dropping rules, never watched by the LOG rule: {ipt}"
        );
        assert!(!ipt.contains(" -F ") && !ipt.contains(" -X "), "{ipt}");
        let nft = rule(Backend::Nft).script();
        assert!(nft.contains("delete table inet sipban_log"));
        assert!(nft.contains("32770-32900"), "{nft}");
        assert!(!nft.contains("flush ruleset"));
        assert_eq!("nft".parse::<Backend>(), Ok(Backend::Nft));
        assert!("ufw".parse::<Backend>().is_err());
    }
}
