//! The units in `systemd/`: `systemd-analyze verify` accepts every one of them without a single
//! warning, `systemd-analyze security --offline=yes` rates each service's exposure at 2.5 or
//! lower, and the settings the service design depends on are really there.
//!
//! `verify` insists that `ExecStart=` names an existing executable, and `/usr/bin/sipban` exists
//! only once the package is installed, so the units are verified from a copy whose only change
//! is that path (pointed at the binary cargo built). `tests/deb.rs` checks that the package
//! installs the binary at `/usr/bin/sipban`.

use crate::common::netns::require_program;
use std::path::{Path, PathBuf};
use std::process::Command;

const UNITS: [&str; 5] = [
    "sipban.service",
    "sipban.timer",
    "sipban-restore.service",
    "sipban-daemon.service",
    "sipban-firewall.service",
];
const SERVICES: [&str; 4] = [
    "sipban.service",
    "sipban-restore.service",
    "sipban-daemon.service",
    "sipban-firewall.service",
];
const MAX_EXPOSURE: f64 = 2.5;

fn unit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd")
}

fn unit(name: &str) -> String {
    std::fs::read_to_string(unit_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The values of `key=` in `text` (every occurrence, in order).
fn values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
        .collect()
}

fn one(text: &str, key: &str) -> String {
    let v = values(text, key);
    assert_eq!(v.len(), 1, "{key}= should appear once: {v:?}");
    v[0].clone()
}

/// Copies of the units with `/usr/bin/sipban` replaced by the built binary.
fn units_for_verify() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_sipban");
    for u in UNITS {
        let text = unit(u).replace("/usr/bin/sipban", bin);
        std::fs::write(dir.path().join(u), text).unwrap();
    }
    dir
}

/// `systemd-analyze` is there, or the test skips (fails under `CI=true`).
fn have_systemd_analyze() -> bool {
    require_program("systemd-analyze")
}

#[test]
fn systemd_analyze_verify_accepts_every_unit_without_a_warning() {
    if !have_systemd_analyze() {
        return;
    }
    let dir = units_for_verify();
    let paths: Vec<PathBuf> = UNITS.iter().map(|u| dir.path().join(u)).collect();
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&paths)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    // verify exits 0 on unknown keys and unparsable values and only warns: any line about our
    // units is a failure. (Lines about the host's own units are not ours to judge.)
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("sipban")).collect();
    assert!(
        o.status.success() && ours.is_empty(),
        "systemd-analyze verify ({}):\n{stderr}",
        o.status
    );
}

#[test]
fn systemd_analyze_verify_catches_a_typo() {
    // The check above can fail: a misspelt key in a copy is reported.
    if !have_systemd_analyze() {
        return;
    }
    let dir = units_for_verify();
    let p = dir.path().join("sipban.timer");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("Persistent=", "Persistant=");
    std::fs::write(&p, text).unwrap();
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&p)
        .arg(dir.path().join("sipban.service"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Unknown key 'Persistant'"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `Overall exposure level for NAME: 2.0 OK` → 2.0.
fn exposure(output: &str) -> Option<f64> {
    let line = output
        .lines()
        .find(|l| l.contains("Overall exposure level for"))?;
    let after = line.split(": ").nth(1)?;
    after.split_whitespace().next()?.parse().ok()
}

#[test]
fn every_service_is_rated_at_most_2_5_by_systemd_analyze_security() {
    if !have_systemd_analyze() {
        return;
    }
    let mut report = String::new();
    let mut worst: f64 = 0.0;
    for s in SERVICES {
        let o = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(unit_dir().join(s))
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        let Some(score) = exposure(&out) else {
            panic!(
                "no exposure level for {s} ({}):\n{out}\n{}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            );
        };
        report.push_str(&format!("{s}: {score}\n"));
        worst = worst.max(score);
    }
    eprintln!("systemd-analyze security --offline=yes:\n{report}");
    assert!(
        worst <= MAX_EXPOSURE,
        "exposure over {MAX_EXPOSURE}:\n{report}"
    );
}

#[test]
fn exposure_parser_reads_the_overall_line() {
    assert_eq!(
        exposure("x\n→ Overall exposure level for sipban.service: 2.2 OK 🙂\n"),
        Some(2.2)
    );
    assert_eq!(exposure("nothing"), None);
}

#[test]
fn services_keep_the_hardening_the_design_relies_on() {
    for s in SERVICES {
        let text = unit(s);
        let caps = one(&text, "CapabilityBoundingSet");
        let allowed = ["CAP_NET_ADMIN", "CAP_NET_RAW"];
        assert!(
            caps.split_whitespace().all(|c| allowed.contains(&c)) && caps.contains("CAP_NET_ADMIN"),
            "{s}: CapabilityBoundingSet={caps}"
        );
        for (k, v) in [
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("StateDirectory", "sipban"),
            ("ConfigurationDirectory", "sipban"),
            (
                "RestrictAddressFamilies",
                "AF_INET AF_INET6 AF_NETLINK AF_UNIX",
            ),
            ("SystemCallFilter", "@system-service"),
        ] {
            assert_eq!(one(&text, k), v, "{s}: {k}");
        }
        let mem = one(&text, "MemoryMax");
        let mib: u32 = mem.trim_end_matches('M').parse().expect("MemoryMax in M");
        assert!(mib <= 128, "{s}: MemoryMax={mem} is too much for a Pi");
        assert!(
            one(&text, "ExecStart").starts_with("/usr/bin/sipban "),
            "{s}"
        );
    }
}

#[test]
fn timer_restore_and_daemon_are_wired_as_documented() {
    let svc = unit("sipban.service");
    assert_eq!(one(&svc, "Type"), "oneshot");
    assert_eq!(one(&svc, "ExecStart"), "/usr/bin/sipban sync");
    let timer = unit("sipban.timer");
    for k in ["OnBootSec", "OnUnitActiveSec", "RandomizedDelaySec"] {
        assert_eq!(values(&timer, k).len(), 1, "sipban.timer lacks {k}=");
    }
    assert_eq!(one(&timer, "Persistent"), "true");
    assert!(one(&timer, "Conflicts").contains("sipban-daemon.service"));
    // The README states the timer's period.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let period = one(&timer, "OnUnitActiveSec");
    assert!(
        readme.contains(&format!("OnUnitActiveSec={period}")),
        "README does not state the timer period {period}"
    );

    let restore = unit("sipban-restore.service");
    assert_eq!(one(&restore, "ExecStart"), "/usr/bin/sipban restore");
    assert!(one(&restore, "Before").contains("network-pre.target"));
    // With `backend: nft` restore writes the table `inet sipban`: after nftables.service's
    // `flush ruleset`, never before it.
    assert!(one(&restore, "After").contains("nftables.service"));
    assert!(!one(&restore, "Before").contains("nftables.service"));
    assert!(one(&restore, "Wants").contains("network-pre.target"));
    assert_eq!(one(&restore, "DefaultDependencies"), "no");
    assert_eq!(
        one(&restore, "IPAddressDeny"),
        "any",
        "restore needs no network"
    );
    assert_eq!(one(&restore, "RemainAfterExit"), "yes");

    let daemon = unit("sipban-daemon.service");
    assert_eq!(one(&daemon, "ExecStart"), "/usr/bin/sipban run");
    assert!(one(&daemon, "Conflicts").contains("sipban.timer"));

    // The rules come back after nftables or netfilter-persistent (re)loaded a ruleset: started
    // after them, restarted with them, re-run on their reload.
    let fw = unit("sipban-firewall.service");
    assert_eq!(
        one(&fw, "ExecStart"),
        "/usr/bin/sipban firewall check --repair"
    );
    assert_eq!(
        one(&fw, "ExecReload"),
        "/usr/bin/sipban firewall check --repair"
    );
    for key in ["After", "PartOf", "ReloadPropagatedFrom", "WantedBy"] {
        let v = one(&fw, key);
        for other in ["nftables.service", "netfilter-persistent.service"] {
            assert!(
                v.contains(other),
                "sipban-firewall.service: {key}={v} lacks {other}"
            );
        }
    }
    assert!(one(&fw, "After").contains("sipban-restore.service"));
    assert_eq!(one(&fw, "RemainAfterExit"), "yes");
}

#[test]
fn the_commands_the_units_run_exist() {
    // `run` is the daemon's command (issue 7, other half); sync and restore are checked here.
    for sub in [&["sync"][..], &["restore"], &["firewall", "check"]] {
        let o = Command::new(crate::common::run::bin())
            .args(sub)
            .arg("--help")
            .output()
            .unwrap();
        assert!(o.status.success(), "sipban {sub:?} --help: {o:?}");
    }
}

/// `setpriv` arguments that give a process what a unit's `CapabilityBoundingSet=` and
/// `NoNewPrivileges=` leave root with.
fn setpriv_like(unit_name: &str) -> Vec<String> {
    let text = unit(unit_name);
    let caps: Vec<String> = one(&text, "CapabilityBoundingSet")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let mut v = vec![
        "setpriv".to_string(),
        "--bounding-set".to_string(),
        format!("-all,{}", caps.join(",")),
        "--inh-caps".to_string(),
        "-all".to_string(),
    ];
    assert_eq!(one(&text, "NoNewPrivileges"), "yes");
    v.push("--no-new-privs".to_string());
    v
}

fn run_capped(prefix: &[String], dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(&prefix[0])
        .args(&prefix[1..])
        .arg(crate::common::run::bin())
        .args(args)
        .arg("--config")
        .arg(dir.join("config.yaml"))
        .output()
        .unwrap()
}

fn shown(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\n{}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_capabilities_each_unit_keeps_are_enough_for_what_it_runs() {
    let ns = netns_or_skip!();
    if !require_program("setpriv") {
        return;
    }
    crate::common::netns::run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        std::fs::write(&list, "45.0.0.1\n2001:db8:1::1\n").unwrap();
        std::fs::write(
            dir.path().join("config.yaml"),
            format!(
                "state_dir: {}\nsets:\n  v4: {{ name: u4, cap: 100 }}\n  v6: {{ name: u6, cap: 100 }}\nfeeds:\n  - {{ name: f, url: 'file://{}', ttl: 1d }}\n",
                dir.path().join("state").display(),
                list.display()
            ),
        )
        .unwrap();
        // The timer's sync: sets, state, conntrack, with sipban.service's capabilities only.
        let o = run_capped(&setpriv_like("sipban.service"), dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
        // The admin installs the rules (as root); then a reboot empties the kernel.
        let o = run_capped(&["env".to_string()], dir.path(), &["firewall", "install"]);
        assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
        let reboot = || {
            for t in ["iptables", "ip6tables"] {
                assert!(Command::new(t)
                    .args(["-F", "INPUT"])
                    .status()
                    .unwrap()
                    .success());
            }
            for s in ["u4", "u6"] {
                assert!(Command::new("ipset")
                    .args(["destroy", s])
                    .status()
                    .unwrap()
                    .success());
            }
        };
        reboot();
        // With CAP_NET_ADMIN alone the rules cannot come back (the control: this test can fail).
        let net_admin_only: Vec<String> = [
            "setpriv",
            "--bounding-set",
            "-all,+net_admin",
            "--inh-caps",
            "-all",
            "--no-new-privs",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let o = run_capped(&net_admin_only, dir.path(), &["restore"]);
        assert_eq!(o.status.code(), Some(1), "{}", shown(&o));
        assert!(shown(&o).contains("CAP_NET_RAW"), "{}", shown(&o));
        // With sipban-restore.service's capabilities: sets and rules are back.
        let o = run_capped(
            &setpriv_like("sipban-restore.service"),
            dir.path(),
            &["restore"],
        );
        assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
        let o = run_capped(&["env".to_string()], dir.path(), &["firewall", "status"]);
        assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
        // Another tool flushes the rules: the timer's sync, with sipban.service's capabilities,
        // puts them back; so does sipban-firewall.service's check.
        let flush = || {
            for t in ["iptables", "ip6tables"] {
                assert!(Command::new(t)
                    .args(["-F", "INPUT"])
                    .status()
                    .unwrap()
                    .success());
            }
        };
        flush();
        let o = run_capped(&setpriv_like("sipban.service"), dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
        assert!(shown(&o).contains("reinstalled"), "{}", shown(&o));
        let o = run_capped(&["env".to_string()], dir.path(), &["firewall", "status"]);
        assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
        flush();
        let o = run_capped(
            &setpriv_like("sipban-firewall.service"),
            dir.path(),
            &["firewall", "check", "--repair"],
        );
        assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
        let o = run_capped(&["env".to_string()], dir.path(), &["firewall", "status"]);
        assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
    });
}

#[test]
fn the_daemon_is_a_notify_service_with_a_watchdog_and_reload() {
    let daemon = unit("sipban-daemon.service");
    assert_eq!(one(&daemon, "Type"), "notify");
    assert_eq!(one(&daemon, "NotifyAccess"), "main");
    assert!(!one(&daemon, "WatchdogSec").is_empty());
    // SIGHUP is what `sipban run` reloads on (tests/it/daemon.rs).
    assert_eq!(one(&daemon, "ExecReload"), "/bin/kill -HUP $MAINPID");
}

/// The services that read secrets get them as credentials, each with a stand-in so a missing
/// file does not stop the unit (src/config/credentials.rs), and may write the metrics
/// textfile's directory (optional: `-`).
#[test]
fn secrets_come_as_credentials_and_the_metrics_directory_is_writable() {
    for s in ["sipban.service", "sipban-daemon.service"] {
        let text = unit(s);
        let load = values(&text, "LoadCredential");
        let set = values(&text, "SetCredential");
        for name in ["apiban.key", "abuseipdb.key", "webhook.headers"] {
            assert!(
                load.contains(&format!("{name}:/etc/sipban/{name}")),
                "{s}: no LoadCredential= for {name}: {load:?}"
            );
            assert!(
                set.contains(&format!("{name}:\\n")),
                "{s}: no SetCredential= stand-in for {name}: {set:?}"
            );
        }
        let rw = values(&text, "ReadWritePaths");
        assert!(
            rw.iter().any(|v| v == "-/var/lib/prometheus/node-exporter"),
            "{s}: {rw:?}"
        );
    }
    // The directory is the one the README's metrics example writes to.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(readme.contains("textfile: /var/lib/prometheus/node-exporter/"));
}

/// The same with `backend: nft`: the units' capabilities are enough to fill sipban's table,
/// restore it after `nft flush ruleset` (a reboot or nftables.service's start), and have
/// sipban-firewall.service put it back with its sets after a reload.
#[test]
fn the_units_capabilities_are_enough_for_the_nft_backend() {
    let ns = netns_or_skip!();
    if !require_program("setpriv") || !require_program("nft") {
        return;
    }
    crate::common::netns::run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        std::fs::write(&list, "45.0.0.1\n2001:db8:1::1\n").unwrap();
        std::fs::write(
            dir.path().join("config.yaml"),
            format!(
                "state_dir: {}\nbackend: nft\nsets:\n  v4: {{ name: u4, cap: 100 }}\n  v6: {{ name: u6, cap: 100 }}\nfeeds:\n  - {{ name: f, url: 'file://{}', ttl: 1d }}\n",
                dir.path().join("state").display(),
                list.display()
            ),
        )
        .unwrap();
        let o = run_capped(&setpriv_like("sipban.service"), dir.path(), &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
        let o = run_capped(&["env".to_string()], dir.path(), &["firewall", "install"]);
        assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
        let flush = || {
            assert!(Command::new("nft")
                .args(["flush", "ruleset"])
                .status()
                .unwrap()
                .success());
        };
        let dropped = || {
            let o = run_capped(&["env".to_string()], dir.path(), &["firewall", "status"]);
            assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
            assert!(shown(&o).contains("set u4: 1 entries"), "{}", shown(&o));
        };
        for (unit, args) in [
            ("sipban-restore.service", &["restore"][..]),
            (
                "sipban-firewall.service",
                &["firewall", "check", "--repair"][..],
            ),
            ("sipban.service", &["sync"][..]),
        ] {
            flush();
            let o = run_capped(&setpriv_like(unit), dir.path(), args);
            assert_eq!(o.status.code(), Some(0), "{unit}: {}", shown(&o));
            dropped();
        }
    });
}
