//! Proptest settings shared by the property tests.

use proptest::test_runner::{Config, FileFailurePersistence};

/// `config` with failing cases saved in (and replayed from) `<source>.proptest-regressions`
/// next to the test's source file, e.g. `tests/it/asterisk_prop.proptest-regressions`.
///
/// Proptest's default (`SourceParallel`) climbs from the source file to the first folder
/// holding a `main.rs` or `lib.rs`: with the tests in one binary that is `tests/it`, and the
/// file would move to `tests/proptest-regressions/<name>.txt`, away from its source.
pub fn regressions_beside_source(config: Config) -> Config {
    Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..config
    }
}
