//! The files sipban writes: a directory others may write into is refused before anything is
//! read or written there, and a link planted where the state database belongs is not followed.

use crate::common::netns::run_in;
use crate::common::run::{sipban, text};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn write_config(dir: &Path, extra: &str) {
    std::fs::write(dir.join("list.txt"), "45.0.0.1\n").unwrap();
    let cfg = format!(
        "state_dir: {}\nsets:\n  v4: {{ name: t4, cap: 100 }}\n  v6: {{ name: t6, cap: 100 }}\n{extra}feeds:\n  - {{ name: f, url: 'file://{}', ttl: 1d }}\n",
        dir.join("state").display(),
        dir.join("list.txt").display()
    );
    std::fs::write(dir.join("config.yaml"), cfg).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The state directory, the feed cache directory in it and the metrics directory: each,
/// when world-writable, is refused with exit 2 and a message naming it and its mode, by
/// every command that writes there (and by `config check` and a dry run, which say so early).
#[test]
fn a_world_writable_directory_sipban_writes_into_is_refused() {
    // In a namespace of its own: without the check, `ban` would reach the kernel.
    let ns = netns_or_skip!();
    run_in(&ns, world_writable_directories_are_refused);
}

fn world_writable_directories_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let state = d.join("state");
    let metrics = d.join("metrics");
    std::fs::create_dir_all(state.join("feeds")).unwrap();
    std::fs::create_dir_all(&metrics).unwrap();
    write_config(
        d,
        &format!(
            "metrics: {{ textfile: {}/sipban.prom }}\n",
            metrics.display()
        ),
    );
    let ok = sipban(d, &["config", "check"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));

    for (what, path, mode) in [
        ("state directory", state.clone(), 0o777),
        ("state directory", state.clone(), 0o1777),
        ("feed cache directory", state.join("feeds"), 0o777),
        ("metrics directory", metrics.clone(), 0o757),
    ] {
        chmod(&path, mode);
        for args in [
            &["sync", "--dry-run"][..],
            &["config", "check"][..],
            &["ban", "45.1.1.1"][..],
        ] {
            let o = sipban(d, args);
            assert_eq!(o.status.code(), Some(2), "{what} {args:?}: {}", text(&o));
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert!(
                stderr.contains(&format!("{} is world-writable", path.display()))
                    && stderr.contains(&format!("mode {mode:04o}"))
                    && stderr.contains(what),
                "{what} {args:?}: {}",
                text(&o)
            );
        }
        chmod(&path, 0o755);
    }
    // Nothing was created in the state directory by the refused commands.
    assert!(!state.join("state.db").exists());
    assert!(!state.join("manual").exists());
}

/// A symbolic link planted where the state database belongs (by anyone who could write the
/// state directory once) is not followed: the run fails, names the link, and the file it
/// points at is neither created nor changed.
#[test]
fn a_link_planted_at_the_state_database_is_not_followed() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_config(d, "");
        let state = d.join("state");
        std::fs::create_dir_all(&state).unwrap();
        let victim = d.join("victim");
        std::os::unix::fs::symlink(&victim, state.join("state.db")).unwrap();

        let o = sipban(d, &["sync"]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(
            text(&o).contains("state.db") && text(&o).contains("symbolic link"),
            "{}",
            text(&o)
        );
        assert!(!victim.exists(), "the link's target was created");

        // A link to an existing file: that file is not opened as the database either.
        std::fs::write(&victim, b"precious").unwrap();
        let o = sipban(d, &["sync"]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        let o = sipban(d, &["sync", "--dry-run"]);
        assert!(
            text(&o).contains("symbolic link"),
            "a dry run says so too: {}",
            text(&o)
        );
    });
}
