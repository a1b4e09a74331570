//! systemd credentials (`LoadCredential=`): which file a secret comes from.
//!
//! When `$CREDENTIALS_DIRECTORY` is set (systemd sets it for a unit with `LoadCredential=` or
//! `SetCredential=`) and holds a non-empty file named after the secret ([`APIBAN`],
//! [`ABUSEIPDB`], [`WEBHOOK_HEADERS`]), that file is read instead of the configured `key_file`
//! (`header_file` for the webhook, even when the config names none). A credential of at most
//! one byte (empty, or the lone newline of the units' `SetCredential=NAME:\n` fallback, which
//! keeps a missing `/etc/sipban/*.key` from stopping the unit; systemd 252 refuses an empty
//! value), or none, falls back to the configured file. No key or header line is one byte long.
//! The secret's own environment variable (`SIPBAN_APIBAN_KEY`, `SIPBAN_ABUSEIPDB_KEY`) still
//! wins over both.
//!
//! This module only looks at a credential's size; it never reads a secret.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The directory systemd puts a unit's credentials in.
pub const DIRECTORY_ENV: &str = "CREDENTIALS_DIRECTORY";
/// The APIBAN key (in place of `apiban.key_file`).
pub const APIBAN: &str = "apiban.key";
/// The AbuseIPDB key (in place of `report.abuseipdb.key_file`).
pub const ABUSEIPDB: &str = "abuseipdb.key";
/// The webhook's secret headers, `Name: value` lines (in place of `report.webhook.header_file`).
pub const WEBHOOK_HEADERS: &str = "webhook.headers";
/// The CrowdSec bouncer key (in place of `crowdsec.bouncer_key_file`).
pub const CROWDSEC_BOUNCER: &str = "crowdsec-bouncer.key";
/// The CrowdSec machine password (in place of `crowdsec.machine_password_file`).
pub const CROWDSEC_MACHINE: &str = "crowdsec-machine.key";

/// The credential `name` from `$CREDENTIALS_DIRECTORY`, if there is one longer than a byte.
pub fn credential(name: &str) -> Option<PathBuf> {
    credential_in(std::env::var_os(DIRECTORY_ENV).as_deref(), name)
}

/// [`credential`] with the directory passed in (tests).
pub fn credential_in(dir: Option<&OsStr>, name: &str) -> Option<PathBuf> {
    let dir = dir.filter(|d| !d.is_empty())?;
    let path = Path::new(dir).join(name);
    match std::fs::metadata(&path) {
        Ok(m) if m.len() > 1 => Some(path),
        _ => None,
    }
}

/// The file the secret `name` is read from: its credential if there is one, else `configured`.
pub fn secret_file_in(dir: Option<&OsStr>, name: &str, configured: &Path) -> PathBuf {
    credential_in(dir, name).unwrap_or_else(|| configured.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_empty_credential_wins_over_the_configured_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = Some(dir.path().as_os_str());
        let configured = Path::new("/etc/sipban/apiban.key");
        // No credentials directory, or no such credential: the configured file.
        assert_eq!(secret_file_in(None, APIBAN, configured), configured);
        assert_eq!(
            secret_file_in(Some(OsStr::new("")), APIBAN, configured),
            configured
        );
        assert_eq!(secret_file_in(d, APIBAN, configured), configured);
        // The units' SetCredential= fallback (a newline), or an empty file, counts as none.
        for blank in ["", "\n"] {
            std::fs::write(dir.path().join(APIBAN), blank).unwrap();
            assert_eq!(secret_file_in(d, APIBAN, configured), configured);
        }
        std::fs::write(dir.path().join(APIBAN), "k\n").unwrap();
        assert_eq!(
            secret_file_in(d, APIBAN, configured),
            dir.path().join(APIBAN)
        );
        assert_eq!(credential_in(d, ABUSEIPDB), None);
    }
}
