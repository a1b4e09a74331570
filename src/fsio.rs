//! Files sipban writes outside the state database (metrics, run summaries, request files,
//! feed caches, the firewall record): each is written to a new temporary file in its own
//! directory (`O_EXCL | O_NOFOLLOW`, so a planted symlink or a leftover is never followed or
//! reused), synced, and renamed over the target, so a reader sees the old file or the new one,
//! never a torn one. The directories it writes into are created without group or world write
//! access ([`create_dir`]), and one that others may write into is refused ([`check_dir`]):
//! whoever can write there can replace what sipban reads back.
//!
//! This module must never write in place, and never leave its temporary file behind on error.

use anyhow::Result;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Create `dir` and any missing parents with mode 0755 (less the umask): never writable by
/// others, whatever umask sipban was started with.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
}

/// Refuse a directory sipban writes into (`what` names it: "state directory") when others may
/// replace what sipban keeps there: the directory itself is world-writable (sticky or not),
/// or a directory above it is world-writable without the sticky bit (anyone could rename it
/// away and put their own in its place). A directory that does not exist yet is judged by
/// the directories above it. The message names the directory and its mode.
pub fn check_dir(what: &str, dir: &Path) -> std::result::Result<(), String> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mode_of = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .filter(std::fs::Metadata::is_dir)
            .map(|m| m.mode() & 0o7777)
    };
    if let Some(mode) = mode_of(&dir) {
        if mode & 0o002 != 0 {
            return Err(format!(
                "{what} {} is world-writable (mode {mode:04o}): anyone on this host could replace what sipban keeps there; remove the write permission for others (chmod o-w {})",
                dir.display(),
                dir.display()
            ));
        }
    }
    // Above it: the path as written, and where its links lead.
    let mut above: Vec<PathBuf> = dir.ancestors().skip(1).map(Path::to_path_buf).collect();
    if let Some(real) = dir.ancestors().find_map(|a| std::fs::canonicalize(a).ok()) {
        above.extend(real.ancestors().map(Path::to_path_buf));
    }
    for a in above.iter().filter(|a| **a != dir) {
        match mode_of(a) {
            Some(mode) if mode & 0o002 != 0 && mode & 0o1000 == 0 => {
                return Err(format!(
                    "{what} {} is inside {}, which is world-writable (mode {mode:04o}) without the sticky bit: anyone on this host could replace it; remove the write permission for others (chmod o-w {})",
                    dir.display(),
                    a.display(),
                    a.display()
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Replace `path` with `bytes` atomically: write `.<name>.tmp.<pid>` in the same directory,
/// fsync it, rename it over `path`, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// [`write_atomic`] for a file written in pieces by `fill` (a large file is never held whole).
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        // A leftover of this pid (a crash long ago) is ours to replace; never follow a link.
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o644)
            .open(&tmp)?;
        fill(&mut f)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        // The I/O error stays the source, so that a caller can name it (disk full, read-only).
        anyhow::Error::new(e).context(format!("writing {}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn directories_others_may_write_into_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        // Not created yet: judged by what is above it.
        assert_eq!(check_dir("state directory", &state), Ok(()));
        create_dir(&state.join("feeds")).unwrap();
        let mode = std::fs::metadata(&state).unwrap().mode() & 0o777;
        assert_eq!(
            mode & 0o022,
            0,
            "created without group or world write: {mode:o}"
        );
        assert_eq!(check_dir("state directory", &state), Ok(()));
        for m in [0o777, 0o1777, 0o703] {
            chmod(&state, m);
            let e = check_dir("state directory", &state).unwrap_err();
            assert!(
                e.starts_with(&format!(
                    "state directory {} is world-writable (mode {m:04o})",
                    state.display()
                )),
                "{e}"
            );
        }
        // A world-writable parent: refused without the sticky bit, accepted with it.
        chmod(&state, 0o755);
        chmod(dir.path(), 0o777);
        let e = check_dir("feed cache directory", &state.join("feeds")).unwrap_err();
        assert!(
            e.contains(&format!(
                "is inside {}, which is world-writable (mode 0777)",
                dir.path().display()
            )),
            "{e}"
        );
        chmod(dir.path(), 0o1777);
        assert_eq!(
            check_dir("feed cache directory", &state.join("feeds")),
            Ok(())
        );
        chmod(dir.path(), 0o700);
    }

    #[test]
    fn a_link_planted_at_the_temporary_name_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        let path = dir.path().join("out.prom");
        let tmp = dir
            .path()
            .join(format!(".out.prom.tmp.{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert!(!tmp.exists(), "the temporary file is gone");
        // A second write replaces the first.
        write_atomic(&path, b"newer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"newer");
    }
}
