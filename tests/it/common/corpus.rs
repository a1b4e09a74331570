//! The third-party corpus (`shared/corpus`), read in place: it is GPL/MIT test data kept with
//! its licence notes next to the repository, not copied into it.
//!
//! Its folder is `$SIPBAN_SHARED_DIR/corpus` when that variable is set, else `../shared/corpus`
//! from the repository root. When it is missing the corpus tests print a skip notice, except
//! under `CI=true`, where they fail (`netns::skip`): a CI run must never pass without them.

use std::path::PathBuf;

/// Overrides the `shared` folder (the corpus is its `corpus` subfolder).
pub const SHARED_DIR_ENV: &str = "SIPBAN_SHARED_DIR";

/// The corpus folder, whether or not it exists.
pub fn path() -> PathBuf {
    let shared = std::env::var_os(SHARED_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    shared.join("corpus")
}

/// The corpus folder, or `None` after a skip notice (a panic under `CI=true`).
pub fn dir() -> Option<PathBuf> {
    let dir = path();
    if dir.is_dir() {
        return Some(dir);
    }
    super::netns::skip(&format!(
        "corpus folder {} is missing (check out `shared` next to the repository, or set \
         {SHARED_DIR_ENV})",
        dir.display()
    ));
    None
}
