//! The Debian package that `cargo deb` builds (scripts/test.sh builds it before the tests run):
//! its file list, control fields, conffiles and maintainer scripts, and that what it ships is
//! what this tree holds (so a stale package fails here instead of passing).
//!
//! The package is looked for at `target/debian/sipban_<version>-1_<arch>.deb`. Without it the
//! tests skip, except under `CI=true`, where they fail.

use crate::common::netns::{require_program, skip};
use std::path::{Path, PathBuf};
use std::process::Command;

const UNITS: [&str; 5] = [
    "sipban.service",
    "sipban.timer",
    "sipban-restore.service",
    "sipban-daemon.service",
    "sipban-firewall.service",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(argv: &[&str]) -> String {
    let o = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(
        o.status.success(),
        "{argv:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The package, or `None` after a skip notice (a panic under `CI=true`).
fn package() -> Option<PathBuf> {
    if !require_program("dpkg-deb") || !require_program("dpkg") {
        return None;
    }
    let arch = run(&["dpkg", "--print-architecture"]).trim().to_string();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let deb = target
        .join("debian")
        .join(format!("sipban_{}-1_{arch}.deb", env!("CARGO_PKG_VERSION")));
    if !deb.is_file() {
        skip(&format!(
            "no package at {} (scripts/test.sh builds it with `cargo deb`)",
            deb.display()
        ));
        return None;
    }
    Some(deb)
}

/// `dpkg-deb -c` as (mode, owner, path) rows, paths without the leading `.`.
fn contents(deb: &Path) -> Vec<(String, String, String)> {
    run(&["dpkg-deb", "-c", deb.to_str().unwrap()])
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // mode owner size date time path
            let path = f.get(5)?.trim_start_matches('.').to_string();
            Some((f[0].to_string(), f[1].to_string(), path))
        })
        .collect()
}

/// Where the package puts units: /usr/lib/systemd/system or /lib/systemd/system.
fn unit_path(files: &[(String, String, String)], unit: &str) -> Option<String> {
    ["/usr/lib/systemd/system/", "/lib/systemd/system/"]
        .iter()
        .map(|d| format!("{d}{unit}"))
        .find(|p| files.iter().any(|(_, _, f)| f == p))
}

#[test]
fn package_lists_the_binary_units_conffile_and_docs() {
    let Some(deb) = package() else { return };
    let files = contents(&deb);
    let listing: Vec<String> = files
        .iter()
        .map(|(m, o, p)| format!("{m} {o} {p}"))
        .collect();
    let listing = listing.join("\n");
    let find = |path: &str| files.iter().find(|(_, _, p)| p == path);

    let (mode, owner, _) = find("/usr/bin/sipban").unwrap_or_else(|| panic!("{listing}"));
    assert_eq!((mode.as_str(), owner.as_str()), ("-rwxr-xr-x", "0/0"));
    for u in UNITS {
        let p = unit_path(&files, u).unwrap_or_else(|| panic!("no {u}:\n{listing}"));
        let (mode, _, _) = find(&p).unwrap();
        assert_eq!(mode, "-rw-r--r--", "{p}");
    }
    // Exactly our units: no stray copies under other names.
    let units: Vec<&String> = files
        .iter()
        .map(|(_, _, p)| p)
        .filter(|p| p.contains("/systemd/system/") && !p.ends_with('/'))
        .collect();
    assert_eq!(units.len(), UNITS.len(), "{listing}");
    assert!(find("/etc/sipban/config.yaml").is_some(), "{listing}");
    assert!(
        find("/usr/share/doc/sipban/README.md").is_some(),
        "{listing}"
    );
    assert!(
        find("/usr/share/doc/sipban/examples/config.example.yaml").is_some(),
        "{listing}"
    );
}

#[test]
fn control_depends_on_ipset_and_marks_the_config_as_conffile() {
    let Some(deb) = package() else { return };
    let control = run(&["dpkg-deb", "-f", deb.to_str().unwrap()]);
    let field = |name: &str| {
        control
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name}:\n{control}"))
            .to_string()
    };
    assert_eq!(field("Package"), "sipban");
    assert_eq!(field("Version"), format!("{}-1", env!("CARGO_PKG_VERSION")));
    let depends: Vec<String> = field("Depends")
        .split(',')
        .map(|d| d.trim().to_string())
        .collect();
    assert!(
        depends
            .iter()
            .any(|d| d == "ipset" || d.starts_with("ipset ")),
        "{depends:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let ctl = dir.path().join("DEBIAN");
    run(&[
        "dpkg-deb",
        "-e",
        deb.to_str().unwrap(),
        ctl.to_str().unwrap(),
    ]);
    let conffiles = std::fs::read_to_string(ctl.join("conffiles")).expect("a conffiles file");
    assert_eq!(
        conffiles.lines().collect::<Vec<_>>(),
        ["/etc/sipban/config.yaml"]
    );

    // Install enables the timer and the boot restore, starts nothing (the admin reviews the
    // config first), and leaves the daemon (the timer's alternative) disabled.
    let postinst = std::fs::read_to_string(ctl.join("postinst")).expect("a postinst");
    for unit in [
        "sipban.timer",
        "sipban-restore.service",
        "sipban-firewall.service",
    ] {
        assert!(
            postinst.contains(&format!("deb-systemd-helper enable {unit}")),
            "{unit} not enabled:\n{postinst}"
        );
    }
    // (cargo-deb's "dont-enable" script: enable again only what the admin had enabled.)
    assert!(
        postinst.contains("if deb-systemd-helper debian-installed sipban-daemon.service"),
        "the daemon must only be re-enabled when the admin enabled it:\n{postinst}"
    );
    assert!(
        !postinst.contains("debian-installed sipban.timer"),
        "the timer must be enabled on install:\n{postinst}"
    );
    assert!(
        !postinst.contains("deb-systemd-invoke start") && !postinst.contains("_dh_action=start"),
        "install must not start units:\n{postinst}"
    );
}

#[test]
fn package_ships_this_tree_and_its_config_is_valid() {
    let Some(deb) = package() else { return };
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path();
    run(&["dpkg-deb", "-x", deb.to_str().unwrap(), x.to_str().unwrap()]);
    let files = contents(&deb);
    for u in UNITS {
        let p = unit_path(&files, u).unwrap();
        assert_eq!(
            std::fs::read(x.join(p.trim_start_matches('/'))).unwrap(),
            std::fs::read(root().join("systemd").join(u)).unwrap(),
            "{u} in the package differs from systemd/{u}: rebuild it with `cargo deb`"
        );
    }
    assert_eq!(
        std::fs::read(x.join("etc/sipban/config.yaml")).unwrap(),
        std::fs::read(root().join("packaging/config.yaml")).unwrap(),
        "the conffile differs from packaging/config.yaml: rebuild with `cargo deb`"
    );
    let bin = x.join("usr/bin/sipban");
    let version = run(&[bin.to_str().unwrap(), "--version"]);
    assert_eq!(
        version.trim(),
        format!("sipban {}", env!("CARGO_PKG_VERSION"))
    );
    // The packaged binary knows the commands its units run.
    for sub in ["sync", "restore"] {
        run(&[bin.to_str().unwrap(), sub, "--help"]);
    }
    // A fresh install's config passes the packaged binary's own check (no network needed).
    let conf = x.join("etc/sipban/config.yaml");
    let out = run(&[
        bin.to_str().unwrap(),
        "config",
        "check",
        "--config",
        conf.to_str().unwrap(),
    ]);
    assert!(out.contains("OK"), "{out}");
    assert!(out.contains("state_dir: /var/lib/sipban"), "{out}");
}
