//! The one way sipban builds an HTTPS client.
//!
//! rustls with the ring provider, certificate roots from the platform verifier (the system
//! store, which honours `SSL_CERT_FILE`), plus an optional extra CA file. Certificate checks are
//! never switched off: there is deliberately no option for it. No OpenSSL.

use anyhow::{Context, Result};
use std::path::Path;
use std::time::Duration;

/// `sipban/<version>`, sent with every request so feed operators can tell who polls them.
pub const USER_AGENT: &str = concat!("sipban/", env!("CARGO_PKG_VERSION"));

/// Install the ring crypto provider for rustls. Safe to call more than once.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Timeouts for one client.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    pub total: Duration,
}

/// Build a client that trusts the system store and, if given, the CAs in `ca_file` (PEM).
pub fn client(timeouts: Timeouts, ca_file: Option<&Path>) -> Result<reqwest::Client> {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.total)
        .redirect(reqwest::redirect::Policy::limited(5));
    if let Some(path) = ca_file {
        let pem =
            std::fs::read(path).with_context(|| format!("reading ca_file {}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("ca_file {} holds no PEM certificate", path.display()))?;
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().context("building the HTTPS client")
}

/// A reqwest error as one line a person can act on: its kind and its chain of causes, never
/// its URL (a URL may hold a key, as APIBAN's v1 paths do). Every HTTPS client in sipban words
/// its errors through this.
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "reading the answer failed"
    } else {
        "request failed"
    };
    let mut msg = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}
