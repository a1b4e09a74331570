//! The wire detector against real tools (issue 16): Debian's `sipvicious` (svwar, svcrack,
//! svmap) attacks Debian's `kamailio` across a veth pair between two private network
//! namespaces, `tcpdump` records the server's side, and `sipban scan --pcap` must name the
//! attacker, and only it, from what SIPVicious really sends.

use crate::common::netns::{require_netns, require_program, NetNs};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub(crate) const SERVER: &str = "10.77.0.1";
pub(crate) const ATTACKER: &str = "10.77.0.2";

/// A child process, started in a process group of its own, killed with that whole group (and
/// reaped) on drop: kamailio's worker processes outlived a kill of the main one alone.
pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // SAFETY: signals the process group this test started (see `spawn`).
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ip(ns: &NetNs, args: &[&str]) {
    let mut argv = vec!["ip"];
    argv.extend_from_slice(args);
    ns.exec_ok(&argv);
}

/// Two namespaces joined by a veth pair: the attacker's and the server's.
pub(crate) fn pair() -> Option<(NetNs, NetNs)> {
    let a = require_netns()?;
    let b = require_netns()?;
    let out = Command::new("ip")
        .args([
            "link",
            "add",
            "va",
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            "vb",
            "netns",
            b.name(),
        ])
        .output()
        .expect("ip link add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ip(&a, &["addr", "add", &format!("{ATTACKER}/24"), "dev", "va"]);
    ip(&b, &["addr", "add", &format!("{SERVER}/24"), "dev", "vb"]);
    ip(&a, &["link", "set", "va", "up"]);
    ip(&b, &["link", "set", "vb", "up"]);
    Some((a, b))
}

fn spawn(ns: &NetNs, argv: &[&str]) -> Child {
    use std::os::unix::process::CommandExt;
    let full = ns.wrap(argv);
    Command::new(&full[0])
        .args(&full[1..])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {argv:?}: {e}"))
}

/// Start kamailio in `ns` and wait until its socket is bound.
pub(crate) fn kamailio(ns: &NetNs, dir: &std::path::Path) -> Running {
    kamailio_with(ns, dir, "")
}

/// Start kamailio in `ns` with `modules` (config lines) loaded after the test config's own.
pub(crate) fn kamailio_with(ns: &NetNs, dir: &std::path::Path, modules: &str) -> Running {
    let cfg = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wire/kamailio.cfg"),
    )
    .expect("kamailio.cfg")
    .replace("LISTEN", SERVER)
    .replace(
        "loadmodule \"auth.so\"\n",
        &format!("loadmodule \"auth.so\"\n{modules}"),
    );
    let path = dir.join("kamailio.cfg");
    std::fs::write(&path, cfg).expect("write cfg");
    let run = Running(spawn(
        ns,
        &[
            "kamailio",
            "-f",
            path.to_str().expect("path"),
            "-DD",
            "-E",
            "-m",
            "32",
            "-M",
            "4",
            "-Y",
            dir.to_str().expect("dir"),
        ],
    ));
    // Bound when `ss` lists the socket (kamailio prints nothing reliable when ready).
    for _ in 0..500 {
        let o = ns.exec(&["ss", "-Hlun", "sport", "= :5060"]);
        if String::from_utf8_lossy(&o.stdout).contains(SERVER) {
            return run;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("kamailio did not bind {SERVER}:5060");
}

/// Start tcpdump in `ns` writing `file`, and wait for it to say it is listening.
fn tcpdump(ns: &NetNs, file: &std::path::Path) -> Running {
    tcpdump_filter(ns, file, &["udp", "port", "5060"])
}

/// Start tcpdump in `ns` on `vb` with `filter`, writing `file`; wait until it listens.
pub(crate) fn tcpdump_filter(ns: &NetNs, file: &std::path::Path, filter: &[&str]) -> Running {
    let mut argv = vec![
        "tcpdump",
        "-i",
        "vb",
        "-U",
        "-n",
        "-w",
        file.to_str().expect("path"),
    ];
    argv.extend_from_slice(filter);
    let mut child = spawn(ns, &argv);
    let err = child.stderr.take().expect("stderr");
    let mut line = String::new();
    BufReader::new(err)
        .read_line(&mut line)
        .expect("tcpdump stderr");
    assert!(line.contains("listening on"), "tcpdump: {line}");
    Running(child)
}

pub(crate) fn attack(ns: &NetNs, argv: &[&str]) {
    let mut full = vec!["timeout", "60"];
    full.extend_from_slice(argv);
    let o = ns.exec(&full);
    assert_ne!(o.status.code(), Some(124), "{argv:?} hung");
}

#[test]
fn sipvicious_against_kamailio_is_named_from_the_capture() {
    if !(require_program("kamailio") && require_program("svwar") && require_program("tcpdump")) {
        return;
    }
    let Some((a, b)) = pair() else {
        return;
    };
    let d = tempfile::tempdir().expect("tempdir");
    let _server = kamailio(&b, d.path());
    let file = d.path().join("capture.pcap");
    let mut dump = tcpdump(&b, &file);
    attack(
        &a,
        &["svwar", "-e100-110", "-m", "REGISTER", "--force", SERVER],
    );
    attack(
        &a,
        &["svwar", "-e100-106", "-m", "INVITE", "--force", SERVER],
    );
    attack(&a, &["svcrack", "-u100", "-r1-4", SERVER]);
    attack(&a, &["svmap", SERVER]);
    // SIGINT: tcpdump flushes and exits.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(dump.0.id() as i32, libc::SIGINT) };
    let status = dump.0.wait().expect("tcpdump exit");
    assert!(status.success() || status.code() == Some(0) || status.code().is_none());
    // How tests/data/wire/sipvicious-kamailio.pcap was made: this capture, kept.
    if let Some(keep) = std::env::var_os("SIPBAN_KEEP_PCAP") {
        std::fs::copy(&file, keep).expect("keep the capture");
    }

    let o = Command::new(crate::common::run::bin())
        .args(["scan", "--json", "--pcap"])
        .arg(&file)
        .output()
        .expect("run sipban");
    let text = crate::common::run::text(&o);
    assert!(o.status.success(), "{text}");
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let bans = r["bans"].as_array().expect("bans");
    assert_eq!(bans.len(), 1, "{text}");
    assert_eq!(bans[0]["ip"], ATTACKER, "{text}");
    assert_eq!(bans[0]["reason"], "scanner_user_agent", "{text}");
    let attacker = r["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .find(|c| c["ip"] == ATTACKER)
        .expect("the attacker is a client");
    let reasons: Vec<&str> = attacker["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .filter_map(|p| p[0].as_str())
        .collect();
    // Besides its User-Agent, what it did: svwar's unknown extensions (404) and enumeration
    // of challenged ones, svcrack's refused passwords (this server answers them 403).
    for want in [
        "scanner_user_agent",
        "not_found",
        "forbidden",
        "enumeration",
    ] {
        assert!(reasons.contains(&want), "{want} missing: {text}");
    }
    // The server never appears as a client.
    assert!(
        r["clients"]
            .as_array()
            .expect("clients")
            .iter()
            .all(|c| c["ip"] != SERVER),
        "{text}"
    );
}
