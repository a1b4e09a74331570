//! Secrets (API keys, webhook header values) as a type that cannot be printed by accident.
//!
//! This module owns the redaction rule. It must never read a secret from anywhere: callers
//! (`source::apiban`, `report`) load them and wrap them here.

use std::fmt;

/// An API key. `Debug` and `Display` print `[redacted]`; only [`Secret::expose`] gives the
/// value, for the one place that sends it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: String,
    origin: String,
}

impl Secret {
    /// `origin` says where the key came from (a file path or the variable name) for messages.
    pub fn new(value: impl Into<String>, origin: impl Into<String>) -> Secret {
        Secret {
            value: value.into(),
            origin: origin.into(),
        }
    }

    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Where the key came from, e.g. `the key file /etc/sipban/apiban.key`.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret([redacted] from {})", self.origin)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `text` with every occurrence of the key replaced by `[redacted]`. Every URL and message
/// that may hold the key goes through this before it is printed or returned.
pub fn redact(text: &str, key: &Secret) -> String {
    if key.value.is_empty() {
        return text.to_string();
    }
    text.replace(&key.value, "[redacted]")
}
