//! The kernel-log detector end to end, against the real kernel: `sipban firewall log-rule
//! --apply` installs the LOG rule in a private "PBX" namespace, a second namespace probes
//! catalogue ports across a veth pair (IPv4 and IPv6), the kernel's own LOG lines are read back
//! from `/dev/kmsg`, and `sipban sync` turns the prober into a set entry.
//!
//! The namespace trap: the kernel writes LOG lines for packets of a non-initial network
//! namespace only when the host-wide sysctl `net.netfilter.nf_log_all_netns` is 1 (it affects
//! logging only, nothing is filtered differently). [`LogAllNetns`] sets it for the test's
//! duration and restores the previous value on drop, under an exclusive lock file so two test
//! processes never restore it under each other's feet. (The alternative, `log group N` through
//! nfnetlink_log, works per namespace but writes another format through ulogd, not the kernel
//! lines this detector reads.) A test killed mid-run leaves the sysctl at 1, which only means
//! more log lines; the value before is printed when it is changed.
//!
//! The lines are picked out of the kernel log by sipban's prefix *and* the test's own veth name
//! (unique per process), so parallel tests and other hosts' traffic cannot mix in. They are
//! written to a file exactly as `journalctl -k -o short-iso` would print them: an ISO date, the
//! host name, `kernel:`, and the kernel's message verbatim.

use crate::common::run::{bin, text};

use crate::common::netns::{require_program, run_in, NetNs};
use sipban::backend::ipset::Ipset;
use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const SYSCTL: &str = "/proc/sys/net/netfilter/nf_log_all_netns";
const PREFIX: &str = sipban::backend::logrule::PREFIX;

static VETH: AtomicUsize = AtomicUsize::new(0);

/// `nf_log_all_netns = 1` while alive; the old value comes back on drop.
struct LogAllNetns {
    old: String,
    _lock: std::fs::File,
}

impl LogAllNetns {
    fn enable() -> LogAllNetns {
        let dir = if Path::new("/run/lock").is_dir() {
            "/run/lock"
        } else {
            "/tmp"
        };
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(format!("{dir}/sipban-test-nf_log_all_netns.lock"))
            .expect("open the sysctl lock file");
        // SAFETY: flock on a file descriptor we own; blocks until the other holder is done.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
        let old = std::fs::read_to_string(SYSCTL)
            .unwrap_or_else(|e| panic!("read {SYSCTL}: {e}"))
            .trim()
            .to_string();
        std::fs::write(SYSCTL, "1").unwrap_or_else(|e| panic!("write {SYSCTL}: {e}"));
        eprintln!("note: {SYSCTL} set to 1 for this test (was {old}); restored afterwards");
        LogAllNetns { old, _lock: lock }
    }
}

impl Drop for LogAllNetns {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(SYSCTL, &self.old) {
            eprintln!("warning: could not restore {SYSCTL} to {}: {e}", self.old);
        }
    }
}

/// `/dev/kmsg` opened at its end: only records written from now on are read.
struct Kmsg(std::fs::File);

impl Kmsg {
    fn open_at_end() -> Kmsg {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .expect("open /dev/kmsg");
        f.seek(SeekFrom::End(0)).expect("seek /dev/kmsg to its end");
        Kmsg(f)
    }

    /// The messages of the records available now (one record per read).
    fn drain(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match self.0.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let rec = String::from_utf8_lossy(&buf[..n]);
                    // "prio,seq,usec,flags;message\n" plus " KEY=value" continuation lines.
                    if let Some((_, msg)) = rec.lines().next().and_then(|l| l.split_once(';')) {
                        out.push(msg.to_string());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // EPIPE: records were overwritten before we read them; go on with the next.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(e) => panic!("read /dev/kmsg: {e}"),
            }
        }
        out
    }
}

/// A veth pair between the two namespaces, addressed; returns the PBX side's name.
fn wire(pbx: &NetNs, prober: &NetNs) -> String {
    let n = VETH.fetch_add(1, Ordering::Relaxed);
    let a = format!("sk{}x{n}a", std::process::id() % 100_000);
    let b = format!("sk{}x{n}b", std::process::id() % 100_000);
    let out = Command::new("ip")
        .args(["link", "add", &a, "netns", pbx.name(), "type", "veth"])
        .args(["peer", "name", &b, "netns", prober.name()])
        .output()
        .expect("run ip");
    assert!(out.status.success(), "ip link add: {}", text(&out));
    for (ns, dev, v4, v6) in [
        (pbx, &a, "198.51.100.1/24", "2001:db8:51::1/64"),
        (prober, &b, "198.51.100.7/24", "2001:db8:51::7/64"),
    ] {
        ns.exec_ok(&["ip", "addr", "add", v4, "dev", dev]);
        ns.exec_ok(&["ip", "addr", "add", v6, "dev", dev, "nodad"]);
        ns.exec_ok(&["ip", "link", "set", dev, "up"]);
    }
    a
}

fn sipban_in(ns: &NetNs, args: &[&str], config: &Path) -> Output {
    let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let config = config.to_path_buf();
    run_in(ns, move || {
        Command::new(bin())
            .args(&argv)
            .arg("--config")
            .arg(&config)
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .output()
            .expect("run sipban")
    })
}

/// Probe the PBX: TCP connects (refused at once: nothing listens) and UDP datagrams.
fn probe(prober: &NetNs) {
    run_in(prober, || {
        let tcp = |addr: &str, ports: &[u16]| {
            for &p in ports {
                let sa: SocketAddr = format!("{addr}:{p}").parse().unwrap();
                let _ = TcpStream::connect_timeout(&sa, Duration::from_secs(2));
            }
        };
        // IPv4: telnet 4 + ingreslock 6 + Back Orifice 6 + sunrpc 4 = 20 >= 10.
        tcp("198.51.100.1", &[23, 1524, 31337, 111]);
        // IPv6: NetBus 6 + tcpmux 5 = 11 >= 10.
        tcp("[2001:db8:51::1]", &[12345, 1]);
        // Not in the rule (weight 0): never logged.
        tcp("198.51.100.1", &[80]);
        let udp = UdpSocket::bind("198.51.100.7:0").unwrap();
        udp.send_to(b"ping", "198.51.100.1:31789").unwrap();
    });
}

fn members(ns: &NetNs, set: &str) -> HashSet<String> {
    let set = set.to_string();
    run_in(ns, move || {
        Ipset::new()
            .read(&set)
            .expect("read set")
            .map(|k| k.members.keys().map(sipban::net::display_net).collect())
            .unwrap_or_default()
    })
}

/// Now as `journalctl -o short-iso` prints it (UTC).
fn short_iso_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    sipban::inspect::fmt_time(now)
        .replace(" UTC", "+0000")
        .replacen(' ', "T", 1)
}

fn probes_reach_the_kernel_set(backend: &str) {
    let pbx = netns_or_skip!();
    for p in ["ip", "ipset", "iptables", "ip6tables", "nft"] {
        if !require_program(p) {
            return;
        }
    }
    if !Path::new(SYSCTL).exists() {
        crate::common::netns::skip(&format!("{SYSCTL} is missing (kernel without nf_log)"));
        return;
    }
    let prober = NetNs::new();
    let veth = wire(&pbx, &prober);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let kern_log = dir.path().join("kern.log");
    std::fs::write(
        &config,
        format!(
            // The prober is on the PBX's own network (one veth link): the detector bans there
            // only when the admin opts in.
            "state_dir: {}\nban_on_link: true\nsets:\n  v4: {{ name: t4, cap: 100 }}\n  v6: {{ name: t6, cap: 100 }}\nkernel_log:\n  files: [{}]\n  ttl: 1h\n",
            dir.path().join("state").display(),
            kern_log.display()
        ),
    )
    .unwrap();

    // The rule, twice: the second run changes nothing.
    let listing = |ns: &NetNs| -> String {
        match backend {
            "nft" => String::from_utf8_lossy(
                &ns.exec_ok(&["nft", "list", "table", "inet", "sipban_log"])
                    .stdout,
            )
            .into_owned(),
            _ => ["iptables", "ip6tables"]
                .iter()
                .map(|t| String::from_utf8_lossy(&ns.exec_ok(&[*t, "-S"]).stdout).into_owned())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    };
    let o = sipban_in(
        &pbx,
        &["firewall", "log-rule", "--apply", "--backend", backend],
        &config,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let first = listing(&pbx);
    let o = sipban_in(
        &pbx,
        &["firewall", "log-rule", "--apply", "--backend", backend],
        &config,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(listing(&pbx), first, "a second --apply changes nothing");
    if backend == "iptables" {
        assert_eq!(
            first.matches("-A INPUT -j sipban-log").count(),
            2,
            "{first}"
        );
    }

    let lines = {
        let _logging = LogAllNetns::enable();
        let mut kmsg = Kmsg::open_at_end();
        probe(&prober);
        // The kernel's lines for our interface, with sipban's prefix.
        let tag = format!("{PREFIX}IN={veth} ");
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            got.extend(kmsg.drain().into_iter().filter(|m| m.starts_with(&tag)));
            if got.len() >= 7 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        got
    };
    let joined = lines.join("\n");
    // 4 TCP v4 + 2 TCP v6 + 1 UDP; SYN retransmissions may add lines, port 80 never shows.
    assert!(lines.len() >= 7, "kernel lines:\n{joined}");
    assert!(!joined.contains("DPT=80 "), "{joined}");
    assert!(
        joined.contains("SRC=198.51.100.7 DST=198.51.100.1 "),
        "{joined}"
    );
    // The kernel prints IPv6 uncompressed: the trap the parser has to handle is real.
    assert!(
        joined.contains("SRC=2001:0db8:0051:0000:0000:0000:0000:0007 "),
        "{joined}"
    );
    let host = "pbx";
    let mut file = std::fs::File::create(&kern_log).unwrap();
    for l in &lines {
        writeln!(file, "{} {host} kernel: {l}", short_iso_now()).unwrap();
    }
    drop(file);

    // What the detector makes of them, read-only.
    let o = sipban_in(
        &pbx,
        &["scan", "--kernel", "--json", kern_log.to_str().unwrap()],
        &config,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let scan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let fired: HashSet<String> = scan["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| !a["fired"].is_null())
        .map(|a| a["ip"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        fired,
        HashSet::from(["198.51.100.7".to_string(), "2001:db8:51::7".to_string()]),
        "{}",
        text(&o)
    );

    // And the run: the prober becomes a sighting and a set entry.
    let o = sipban_in(&pbx, &["sync", "--json"], &config);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let src = j["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "kernel")
        .unwrap_or_else(|| panic!("no kernel source: {j}"));
    assert_eq!(src["kernel"]["fired"].as_array().unwrap().len(), 2, "{src}");
    // A ban on the PBX's own network is always said out loud.
    let warned = j["warnings"].to_string();
    assert!(
        warned.contains("kernel detected 198.51.100.7 on this host's own network 198.51.100.0/24")
            && warned.contains("banned (ban_on_link: true)"),
        "{j}"
    );
    assert_eq!(
        members(&pbx, "t4"),
        HashSet::from(["198.51.100.7".to_string()])
    );
    assert_eq!(
        members(&pbx, "t6"),
        HashSet::from(["2001:db8:51::7".to_string()])
    );
    // The next run reads nothing new and keeps the entries.
    let o = sipban_in(&pbx, &["sync", "--json"], &config);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["sources"][0]["kernel"]["counters"]["lines"], 0, "{j}");
    assert_eq!(
        members(&pbx, "t4"),
        HashSet::from(["198.51.100.7".to_string()])
    );
}

#[test]
fn iptables_log_rule_probes_become_a_sighting() {
    probes_reach_the_kernel_set("iptables");
}

#[test]
fn nft_log_rule_probes_become_a_sighting() {
    probes_reach_the_kernel_set("nft");
}
