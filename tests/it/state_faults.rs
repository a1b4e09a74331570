//! Faults of the state (issue 14, items 4 and 5), each in its own network namespace against the
//! real kernel and a real SQLite file: a garbage, truncated or zero-length `state.db` is moved
//! aside and rebuilt by a sync (exit 6) and left alone by `restore` (sets untouched, exit 6);
//! manual bans and the manual allowlist survive a lost database through `manual.list`; a full
//! disk (a small tmpfs in a private mount namespace), a read-only state directory and a
//! non-root view of a 0700 state directory are named, exit 5, never the lock code 4.

use crate::common::netns::{run_in, NetNs};
use crate::common::run::{bin, sipban, text};
use sipban::backend::ipset::Ipset;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn write_config(dir: &Path, list: &[String]) {
    std::fs::write(dir.join("list.txt"), list.join("\n") + "\n").unwrap();
    std::fs::create_dir_all(dir.join("metrics")).unwrap();
    let cfg = format!(
        "state_dir: {}\nsets:\n  v4: {{ name: t4, cap: 65536 }}\n  v6: {{ name: t6, cap: 1000 }}\nmetrics: {{ textfile: {}/sipban.prom }}\nfeeds:\n  - {{ name: f, url: 'file://{}', ttl: 1d }}\n",
        dir.join("state").display(),
        dir.join("metrics").display(),
        dir.join("list.txt").display()
    );
    std::fs::write(dir.join("config.yaml"), cfg).unwrap();
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Members of a kernel set and their timeouts (empty when it does not exist).
fn members(set: &str) -> BTreeMap<String, u32> {
    Ipset::new()
        .read(set)
        .expect("read set")
        .map(|k| {
            k.members
                .iter()
                .map(|(n, t)| (sipban::net::display_net(n), *t))
                .collect()
        })
        .unwrap_or_default()
}

fn ipset(args: &[&str]) {
    let o = Command::new("ipset").args(args).output().unwrap();
    assert!(
        o.status.success(),
        "ipset {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    Garbage,
    Truncated,
    ZeroLength,
}

const DAMAGES: [Damage; 3] = [Damage::Garbage, Damage::Truncated, Damage::ZeroLength];

fn damage(db: &Path, how: Damage) {
    let len = std::fs::metadata(db).unwrap().len();
    match how {
        Damage::Garbage => {
            let junk: Vec<u8> = (0..len).map(|i| (i * 7 + 13) as u8).collect();
            std::fs::write(db, junk).unwrap();
        }
        Damage::Truncated => {
            let f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
            f.set_len(len / 2).unwrap();
        }
        Damage::ZeroLength => {
            let f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
            f.set_len(0).unwrap();
        }
    }
}

/// The moved-aside copies in the state directory.
fn corrupt_copies(state: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("state.db.corrupt-"))
        })
        .collect()
}

/// The first sync of a state: the feed, a manual ban, an unban with `--allow` of a listed
/// address, and an entry only the kernel holds (a ban from a log rotated away since).
fn prepare(d: &Path) {
    write_config(d, &lines(&["45.0.0.1", "45.0.0.2"]));
    let o = sipban(d, &["sync"]);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    let o = sipban(d, &["ban", "45.9.9.9"]);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    let o = sipban(d, &["unban", "45.0.0.2", "--allow"]);
    assert_eq!(code(&o), Some(0), "{}", text(&o));
    ipset(&["add", "t4", "45.7.7.7", "timeout", "5000"]);
}

/// A sync finds a garbage, truncated or zero-length state.db: it moves it aside, rebuilds the
/// state from the live kernel sets, manual.list and the feeds, exits 6 and says so on stderr,
/// in `status` and in a metric; the next sync is clean.
#[test]
fn a_sync_moves_a_corrupt_state_aside_and_rebuilds_it() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        for how in DAMAGES {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            let state = d.join("state");
            prepare(d);
            damage(&state.join("state.db"), how);

            // Before the sync, `status` says it is corrupt (exit 6) and changes nothing.
            let st = sipban(d, &["status"]);
            assert_eq!(code(&st), Some(6), "{how:?}: {}", text(&st));
            assert!(
                stderr(&st).contains("corrupt state database"),
                "{}",
                text(&st)
            );
            let l = sipban(d, &["list"]);
            assert_eq!(code(&l), Some(6), "{how:?}: {}", text(&l));
            assert!(corrupt_copies(&state).is_empty(), "{how:?}");

            let o = sipban(d, &["sync"]);
            assert_eq!(code(&o), Some(6), "{how:?}: {}", text(&o));
            let err = stderr(&o);
            assert!(
                err.contains("could not be trusted") && err.contains("moved aside"),
                "{how:?}: {}",
                text(&o)
            );
            assert!(
                String::from_utf8_lossy(&o.stdout).contains("STATE REBUILT"),
                "{how:?}: {}",
                text(&o)
            );
            assert_eq!(corrupt_copies(&state).len(), 1, "{how:?}");
            let m = members("t4");
            assert!(m.contains_key("45.0.0.1"), "{how:?}: the feed: {m:?}");
            assert!(m.contains_key("45.9.9.9"), "{how:?}: the manual ban: {m:?}");
            assert!(
                !m.contains_key("45.0.0.2"),
                "{how:?}: the manual allowlist holds: {m:?}"
            );
            let t = m.get("45.7.7.7").copied();
            assert!(
                t.is_some_and(|t| t > 0 && t <= 5000),
                "{how:?}: the kernel-only entry keeps its timeout: {m:?}"
            );

            let st = sipban(d, &["status"]);
            assert_eq!(code(&st), Some(0), "{how:?}: {}", text(&st));
            assert!(text(&st).contains("STATE REBUILT"), "{}", text(&st));
            let prom = std::fs::read_to_string(d.join("metrics/sipban.prom")).unwrap();
            assert!(
                prom.contains("sipban_state_corrupt_timestamp_seconds "),
                "{prom}"
            );
            let l = sipban(d, &["list", "--source", "manual"]);
            assert!(
                String::from_utf8_lossy(&l.stdout).contains("45.9.9.9"),
                "{how:?}: {}",
                text(&l)
            );

            let o = sipban(d, &["sync"]);
            assert_eq!(code(&o), Some(0), "{how:?}: the next sync: {}", text(&o));
            assert!(members("t4").contains_key("45.7.7.7"));
            ipset(&["destroy", "t4"]);
            ipset(&["destroy", "t6"]);
        }
    });
}

/// `restore` at boot with a corrupt state leaves the sets it finds as they are (a fresh
/// namespace with a pre-filled set), creates a missing one empty, and exits 6 with the reason.
#[test]
fn restore_leaves_the_sets_untouched_on_a_corrupt_state() {
    let ns = netns_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let made = d.clone();
    run_in(&ns, move || {
        write_config(&made, &lines(&["45.0.0.1", "45.0.0.2"]));
        let o = sipban(&made, &["sync"]);
        assert_eq!(code(&o), Some(0), "{}", text(&o));
    });
    drop(ns);
    let db = d.join("state/state.db");
    let good = std::fs::read(&db).unwrap();
    for how in DAMAGES {
        std::fs::write(&db, &good).unwrap();
        damage(&db, how);
        let boot = NetNs::new();
        let d = d.clone();
        run_in(&boot, move || {
            ipset(&["create", "t4", "hash:net", "family", "inet", "timeout", "0"]);
            ipset(&["add", "t4", "45.5.5.5", "timeout", "900"]);
            ipset(&["add", "t4", "45.6.0.0/16", "timeout", "900"]);
            let before = members("t4");
            let o = sipban(&d, &["restore"]);
            assert_eq!(code(&o), Some(6), "{how:?}: {}", text(&o));
            assert!(
                stderr(&o).contains("corrupt") && stderr(&o).contains("state.db"),
                "{how:?}: {}",
                text(&o)
            );
            let after = members("t4");
            assert_eq!(
                before.keys().collect::<Vec<_>>(),
                after.keys().collect::<Vec<_>>(),
                "{how:?}: untouched"
            );
            assert!(
                Ipset::new().read("t6").unwrap().is_some(),
                "{how:?}: a missing set is created (empty) so rules naming it load"
            );
            // Nothing was moved or rewritten by the restore.
            assert!(corrupt_copies(&d.join("state")).is_empty());
        });
    }
}

/// Manual bans and the manual allowlist live in manual.list too, and come back when the
/// database is lost (deleted) or corrupt.
#[test]
fn manual_bans_and_allowlist_survive_a_lost_database() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        for lose in ["delete", "garbage"] {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            let state = d.join("state");
            prepare(d);
            let list = std::fs::read_to_string(state.join("manual.list")).unwrap();
            assert!(
                list.lines().any(|l| l.starts_with("ban 45.9.9.9 "))
                    && list.lines().any(|l| l.starts_with("allow 45.0.0.2 "))
                    && list.lines().any(|l| l.starts_with("unban 45.0.0.2 ")),
                "{list}"
            );
            // The kernel forgets the ban too (a reboot with a lost state), so only manual.list
            // can bring it back.
            ipset(&["del", "t4", "45.9.9.9"]);
            if lose == "delete" {
                std::fs::remove_file(state.join("state.db")).unwrap();
            } else {
                damage(&state.join("state.db"), Damage::Garbage);
            }
            let o = sipban(d, &["sync"]);
            assert_eq!(code(&o), Some(6), "{lose}: {}", text(&o));
            let m = members("t4");
            assert!(m.contains_key("45.9.9.9"), "{lose}: {m:?}");
            assert!(!m.contains_key("45.0.0.2"), "{lose}: allowlisted: {m:?}");
            let l = sipban(d, &["list", "--source", "manual"]);
            assert!(
                String::from_utf8_lossy(&l.stdout).contains("45.9.9.9"),
                "{lose}: {}",
                text(&l)
            );
            ipset(&["destroy", "t4"]);
            ipset(&["destroy", "t6"]);
        }
    });
}

/// Run `f` on a thread in `ns` and in a private mount namespace of its own (mounts made
/// there, and by the processes it starts, never reach the host).
fn run_in_mounts<R: Send + 'static>(ns: &NetNs, f: impl FnOnce() -> R + Send + 'static) -> R {
    let path = format!("/run/netns/{}", ns.name());
    let handle = std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: plain syscalls on this thread only: enter the network namespace, take a
        // mount namespace (and fs struct) of its own, and make every mount in it private.
        unsafe {
            assert_eq!(libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET), 0);
            assert_eq!(
                libc::unshare(libc::CLONE_NEWNS | libc::CLONE_FS),
                0,
                "unshare: {}",
                std::io::Error::last_os_error()
            );
            assert_eq!(
                libc::mount(
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null()
                ),
                0,
                "mount --make-rprivate /: {}",
                std::io::Error::last_os_error()
            );
        }
        f()
    });
    match handle.join() {
        Ok(r) => r,
        Err(p) => std::panic::resume_unwind(p),
    }
}

fn mount(args: &[&str]) {
    let o = Command::new("mount")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "mount {args:?}: {}", stderr(&o));
}

/// Files a failed write must not leave behind: temporary files and SQLite's journal.
fn leftovers(state: &Path) -> Vec<String> {
    std::fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.contains(".tmp.") || n.ends_with("-journal") || n.starts_with(".sipban-probe")
        })
        .collect()
}

/// A full disk during a sync: with no space at all, nothing is changed and it says so; with
/// room for the apply marker but not for the new state, it says exactly what it applied and
/// that the state was not saved; both exit 5, leave no temporary file or journal, and the
/// next run with space reconciles.
#[test]
fn a_full_disk_is_named_and_the_next_run_reconciles() {
    let ns = netns_or_skip!();
    run_in_mounts(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let state = d.join("state");
        std::fs::create_dir(&state).unwrap();
        mount(&[
            "-t",
            "tmpfs",
            "-o",
            "size=2m,mode=0755",
            "tmpfs",
            state.to_str().unwrap(),
        ]);
        write_config(d, &lines(&["45.0.0.1", "45.0.0.2"]));
        let o = sipban(d, &["sync"]);
        assert_eq!(code(&o), Some(0), "{}", text(&o));
        // Fill the disk.
        let filler = state.join("filler");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&filler).unwrap();
            let chunk = vec![0u8; 4096];
            while f.write_all(&chunk).is_ok() {}
        }
        let big: Vec<String> = (1..=40_000u32)
            .map(|i| format!("45.{}.{}.{}", 1 + (i >> 16), (i >> 8) & 255, i & 255))
            .collect();
        write_config(d, &big);

        let o = sipban(d, &["sync"]);
        assert_eq!(code(&o), Some(5), "no space at all: {}", text(&o));
        let err = stderr(&o);
        assert!(
            err.contains("no space left on device") && err.contains("nothing was changed"),
            "{}",
            text(&o)
        );
        assert_eq!(members("t4").len(), 2, "the kernel was not changed");
        assert_eq!(leftovers(&state), Vec::<String>::new());

        // Room for the apply marker, not for the new state.
        let len = std::fs::metadata(&filler).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&filler)
            .unwrap()
            .set_len(len - 64 * 1024)
            .unwrap();
        let o = sipban(d, &["sync"]);
        assert_eq!(code(&o), Some(5), "room for little: {}", text(&o));
        let all = text(&o);
        assert!(
            all.contains("the kernel sets were updated (+40000/-2) but the state could not be saved: no space left on device")
                && all.contains("the next run reconciles"),
            "{all}"
        );
        assert_eq!(members("t4").len(), 40_000, "{all}");
        assert_eq!(leftovers(&state), Vec::<String>::new());
        // The kernel changed and no mirror describes it: the marker stays raised.
        let marker = state.join("state.db.kernel-changing");
        assert!(marker.exists(), "{all}");

        std::fs::remove_file(&filler).unwrap();
        let o = sipban(d, &["-vv", "sync"]);
        assert_eq!(code(&o), Some(0), "with space again: {}", text(&o));
        assert!(
            !stderr(&o).contains("using the kernel mirror"),
            "the marker was raised: {}",
            text(&o)
        );
        assert!(!marker.exists(), "lowered after the commit: {}", text(&o));
        assert_eq!(members("t4").len(), 40_000);
        let l = sipban(d, &["list", "--source", "f"]);
        assert_eq!(code(&l), Some(0), "{}", text(&l));
        assert_eq!(String::from_utf8_lossy(&l.stdout).lines().count(), 40_000);
    });
}

/// A read-only state directory is named and exits 5, not 4 ("another run holds the lock"),
/// for a sync and for a ban; reading it still works.
#[test]
fn a_read_only_state_directory_exits_5_not_4() {
    let ns = netns_or_skip!();
    run_in_mounts(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let state = d.join("state");
        std::fs::create_dir(&state).unwrap();
        let at = state.to_str().unwrap();
        mount(&["-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", at]);
        write_config(d, &lines(&["45.0.0.1"]));
        let o = sipban(d, &["sync"]);
        assert_eq!(code(&o), Some(0), "{}", text(&o));
        // A ban whose request directory already exists, and one that must create it.
        let o = sipban(d, &["ban", "45.8.8.8"]);
        assert_eq!(code(&o), Some(0), "{}", text(&o));
        mount(&["-o", "remount,ro", at]);
        for args in [&["sync"][..], &["ban", "45.9.9.9"][..]] {
            let o = sipban(d, args);
            assert_eq!(code(&o), Some(5), "{args:?}: {}", text(&o));
            assert!(
                stderr(&o).contains("read-only file system"),
                "{args:?}: {}",
                text(&o)
            );
        }
        // The daemon too: it stops at once with the storage code (under `timeout`, so that a
        // daemon that wrongly starts fails the test instead of hanging it).
        let o = std::process::Command::new("timeout")
            .args(["20"])
            .arg(crate::common::run::bin())
            .args(["run", "--config"])
            .arg(d.join("config.yaml"))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(code(&o), Some(5), "run: {}", text(&o));
        assert!(
            stderr(&o).contains("read-only file system"),
            "run: {}",
            text(&o)
        );
        let o = sipban(d, &["status"]);
        assert_eq!(code(&o), Some(0), "{}", text(&o));
    });
}

/// `status` and `list` as a user who may not enter the 0700 state directory say "permission
/// denied" with the path and exit 5, not "no saved state".
#[test]
fn a_non_root_view_of_a_private_state_says_permission_denied() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        write_config(d, &lines(&["45.0.0.1"]));
        let o = sipban(d, &["sync"]);
        assert_eq!(code(&o), Some(0), "{}", text(&o));
        let state = d.join("state");
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        // A copy of the binary nobody can run wherever the checkout lives.
        let exe = d.join("sipban");
        std::fs::copy(bin(), &exe).unwrap();
        for args in [&["status"][..], &["list"][..]] {
            let o = Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(&exe)
                .args(args)
                .arg("--config")
                .arg(d.join("config.yaml"))
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert_eq!(code(&o), Some(5), "{args:?}: {}", text(&o));
            assert!(
                stderr(&o).contains(&format!("permission denied: {}", state.display())),
                "{args:?}: {}",
                text(&o)
            );
        }
    });
}
