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

/// The man page and completions in packaging/generated/ (what the package ships) are what
/// this tree's `sipban generate-assets` writes: a changed command line fails here until they
/// are regenerated. Needs no package.
#[test]
fn the_man_page_and_completions_are_current() {
    let dir = tempfile::tempdir().unwrap();
    run(&[
        env!("CARGO_BIN_EXE_sipban"),
        "generate-assets",
        dir.path().to_str().unwrap(),
    ]);
    for f in ["sipban.1", "sipban.bash", "_sipban", "sipban.fish"] {
        let fresh = std::fs::read(dir.path().join(f)).unwrap();
        assert!(!fresh.is_empty(), "{f} is empty");
        assert_eq!(
            std::fs::read(root().join("packaging/generated").join(f)).ok(),
            Some(fresh),
            "packaging/generated/{f} is stale: run `cargo run -- generate-assets packaging/generated`"
        );
    }
    let man = std::fs::read_to_string(dir.path().join("sipban.1")).unwrap();
    assert!(man.contains(".TH sipban 1"), "{man}");
    let bash = std::fs::read_to_string(dir.path().join("sipban.bash")).unwrap();
    assert!(bash.contains("complete -F"), "{bash}");
}

#[test]
fn package_ships_the_man_page_completions_and_changelog() {
    let Some(deb) = package() else { return };
    let files = contents(&deb);
    for p in [
        "/usr/share/man/man1/sipban.1.gz",
        "/usr/share/bash-completion/completions/sipban",
        "/usr/share/zsh/vendor-completions/_sipban",
        "/usr/share/fish/vendor_completions.d/sipban.fish",
        "/usr/share/doc/sipban/changelog.Debian.gz",
        "/usr/share/doc/sipban/copyright",
    ] {
        assert!(
            files.iter().any(|(_, _, f)| f == p),
            "no {p} in the package: {files:?}"
        );
    }
}

/// On removal prerm takes the rules and sets down while the binary is there; on purge postrm
/// removes the state and what is left in /etc/sipban; cargo-deb's unit handling is merged in.
#[test]
fn removal_takes_the_rules_and_sets_and_purge_the_state() {
    let Some(deb) = package() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ctl = dir.path().join("DEBIAN");
    run(&[
        "dpkg-deb",
        "-e",
        deb.to_str().unwrap(),
        ctl.to_str().unwrap(),
    ]);
    let prerm = std::fs::read_to_string(ctl.join("prerm")).expect("a prerm");
    let postrm = std::fs::read_to_string(ctl.join("postrm")).expect("a postrm");
    for (name, text) in [("prerm", &prerm), ("postrm", &postrm)] {
        assert!(
            !text.contains("#DEBHELPER#"),
            "{name} kept the token:\n{text}"
        );
        run(&["sh", "-n", ctl.join(name).to_str().unwrap()]);
    }
    // The units are stopped (cargo-deb's part) before the rules and sets go.
    let stop = prerm
        .find("deb-systemd-invoke stop")
        .expect("units stopped in prerm");
    let remove = prerm
        .find("/usr/bin/sipban firewall remove")
        .expect("rules removed in prerm");
    assert!(stop < remove, "{prerm}");
    assert!(prerm.contains(r#"[ "$1" = remove ]"#), "{prerm}");
    assert!(prerm.contains("ipset destroy"), "{prerm}");
    assert!(postrm.contains(r#"[ "$1" = purge ]"#), "{postrm}");
    assert!(
        postrm.contains("rm -rf /var/lib/sipban /etc/sipban"),
        "{postrm}"
    );
}

/// The set names prerm destroys come from `sipban config check`'s output: the sed in prerm
/// must find exactly the packaged config's two sets in it.
#[test]
fn prerm_finds_the_set_names_in_config_check() {
    let prerm = std::fs::read_to_string(root().join("systemd/prerm")).unwrap();
    let sed = prerm
        .lines()
        .find_map(|l| l.trim().strip_prefix("| sed -n '"))
        .and_then(|l| l.split('\'').next())
        .expect("the sed program in systemd/prerm");
    let check = run(&[
        env!("CARGO_BIN_EXE_sipban"),
        "config",
        "check",
        "--config",
        root().join("packaging/config.yaml").to_str().unwrap(),
    ]);
    let out = crate::common::run::piped(
        Command::new("sed")
            .args(["-n", sed])
            .stdout(std::process::Stdio::piped()),
        check.as_bytes(),
    );
    let names = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        names.split_whitespace().collect::<Vec<_>>(),
        ["sipban-v4", "sipban-v6"],
        "{check}"
    );
}

/// lintian finds no error in the package (warnings are listed in the output).
#[test]
fn lintian_reports_no_errors() {
    let Some(deb) = package() else { return };
    if !require_program("lintian") {
        return;
    }
    let o = Command::new("lintian")
        .args(["--no-tag-display-limit", "--display-info"])
        .arg(&deb)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    eprintln!("lintian:\n{out}{}", String::from_utf8_lossy(&o.stderr));
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("E: ")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{}", errors.join("\n"));
    assert!(
        o.status.success(),
        "lintian failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The packaged postrm, run for real in a private mount namespace whose /etc is a copy and
/// whose /var/lib is empty: `remove` keeps /etc/sipban and /var/lib/sipban, `purge` deletes
/// both. Needs root (mount namespaces).
#[test]
fn postrm_purge_deletes_the_state_and_config_and_remove_keeps_them() {
    let Some(deb) = package() else { return };
    if !crate::common::netns::is_root() {
        skip("postrm run: needs root for a private mount namespace");
        return;
    }
    if !require_program("unshare") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ctl = dir.path().join("DEBIAN");
    run(&[
        "dpkg-deb",
        "-e",
        deb.to_str().unwrap(),
        ctl.to_str().unwrap(),
    ]);
    let etc = dir.path().join("etc");
    run(&["cp", "-a", "/etc", etc.to_str().unwrap()]);
    for (arg, kept) in [("remove", true), ("purge", false)] {
        let script = format!(
            "set -e\nmount --bind {etc} /etc\nmount -t tmpfs tmpfs /var/lib\n\
             mkdir -p /etc/sipban /var/lib/sipban\n\
             echo k > /etc/sipban/apiban.key\necho x > /var/lib/sipban/state.db\n\
             sh {postrm} {arg} >/dev/null 2>&1\n\
             for p in /etc/sipban/apiban.key /var/lib/sipban/state.db; do\n\
             if [ -e $p ]; then echo kept $p; else echo gone $p; fi\ndone\n",
            etc = etc.display(),
            postrm = ctl.join("postrm").display(),
        );
        let out = run(&[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ]);
        let want = if kept { "kept" } else { "gone" };
        assert_eq!(
            out.lines().filter(|l| l.starts_with(want)).count(),
            2,
            "postrm {arg}: {out}"
        );
    }
}

/// The packaged binary links Debian's libsqlite3 (security updates apply) and the package
/// depends on it; `cargo build`'s binary has SQLite compiled in.
#[test]
fn the_package_links_the_system_sqlite() {
    let Some(deb) = package() else { return };
    if !require_program("readelf") {
        return;
    }
    let control = run(&["dpkg-deb", "-f", deb.to_str().unwrap(), "Depends"]);
    assert!(control.contains("libsqlite3-0"), "Depends: {control}");
    let dir = tempfile::tempdir().unwrap();
    run(&[
        "dpkg-deb",
        "-x",
        deb.to_str().unwrap(),
        dir.path().to_str().unwrap(),
    ]);
    let needed = |bin: &str| {
        run(&["readelf", "-d", bin])
            .lines()
            .filter(|l| l.contains("(NEEDED)"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let packaged = dir.path().join("usr/bin/sipban");
    let n = needed(packaged.to_str().unwrap());
    assert!(n.iter().any(|l| l.contains("libsqlite3.so")), "{n:?}");
    let n = needed(env!("CARGO_BIN_EXE_sipban"));
    assert!(!n.iter().any(|l| l.contains("libsqlite3.so")), "{n:?}");
}

/// The packaged binary (on the system SQLite) runs a real sync into a private network
/// namespace's kernel sets and reads its saved state back.
#[test]
fn the_packaged_binary_syncs_and_reads_its_state() {
    let Some(deb) = package() else { return };
    let ns = crate::netns_or_skip!();
    crate::common::netns::run_in(&ns, move || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        run(&[
            "dpkg-deb",
            "-x",
            deb.to_str().unwrap(),
            d.join("x").to_str().unwrap(),
        ]);
        let bin = d.join("x/usr/bin/sipban");
        std::fs::write(d.join("l.txt"), "45.0.0.1\n").unwrap();
        let cfg = d.join("c.yaml");
        std::fs::write(
            &cfg,
            format!(
                "state_dir: {}\nsets:\n  v4: {{ name: pk4, cap: 100 }}\n  v6: {{ name: pk6, cap: 100 }}\nfeeds:\n  - {{ name: a, url: 'file://{}' }}\n",
                d.join("state").display(),
                d.join("l.txt").display()
            ),
        )
        .unwrap();
        let (b, c) = (bin.to_str().unwrap(), cfg.to_str().unwrap());
        run(&[b, "sync", "--config", c]);
        let status = run(&[b, "status", "--config", c]);
        assert!(status.contains("last run: ok"), "{status}");
        let listed = run(&["ipset", "list", "pk4"]);
        assert!(listed.contains("45.0.0.1"), "{listed}");
    });
}

/// The packaged prerm, run for real on `remove` in a private network namespace (and a mount
/// namespace whose /etc is a copy holding the config): the sets and rules the packaged binary
/// made are gone afterwards. Its `/usr/bin/sipban` points at the extracted binary.
#[test]
fn prerm_remove_takes_the_rules_and_sets_down() {
    let Some(deb) = package() else { return };
    if !require_program("unshare") || !require_program("iptables") {
        return;
    }
    let ns = crate::netns_or_skip!();
    crate::common::netns::run_in(&ns, move || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let x = d.join("x");
        run(&["dpkg-deb", "-x", deb.to_str().unwrap(), x.to_str().unwrap()]);
        run(&[
            "dpkg-deb",
            "-e",
            deb.to_str().unwrap(),
            d.join("ctl").to_str().unwrap(),
        ]);
        let bin = x.join("usr/bin/sipban").display().to_string();
        let prerm = std::fs::read_to_string(d.join("ctl/prerm"))
            .unwrap()
            .replace("/usr/bin/sipban", &bin);
        std::fs::write(d.join("prerm"), prerm).unwrap();
        let etc = d.join("etc");
        run(&["cp", "-a", "/etc", etc.to_str().unwrap()]);
        std::fs::create_dir_all(etc.join("sipban")).unwrap();
        std::fs::write(d.join("l.txt"), "45.0.0.1\n").unwrap();
        std::fs::write(
            etc.join("sipban/config.yaml"),
            format!(
                "state_dir: {}\nsets:\n  v4: {{ name: pr4, cap: 100 }}\n  v6: {{ name: pr6, cap: 100 }}\nfeeds:\n  - {{ name: a, url: 'file://{}' }}\n",
                d.join("state").display(),
                d.join("l.txt").display()
            ),
        )
        .unwrap();
        let script = format!(
            "set -e\nmount --bind {etc} /etc\n{bin} sync >/dev/null\n{bin} firewall install >/dev/null\n\
             echo before; ipset list -n; iptables -S INPUT\n\
             sh {prerm} remove\necho after; ipset list -n; iptables -S INPUT\n",
            etc = etc.display(),
            prerm = d.join("prerm").display(),
        );
        let out = run(&[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ]);
        let (before, after) = out.split_once("after").expect("both halves");
        assert!(before.contains("pr4") && before.contains("pr6"), "{out}");
        assert!(before.contains("pr4 src"), "no rule installed: {out}");
        assert!(!after.contains("pr4") && !after.contains("pr6"), "{out}");
    });
}
