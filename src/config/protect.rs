//! The protections sipban derives from the host itself, set with top-level keys:
//! `ban_on_link` (may the log detectors ban an address on this host's own networks),
//! `protect_asterisk_peers` (`auto`, `true` or `false`) and `asterisk_config_dir` (where
//! Asterisk's configuration is read from).
//!
//! This module must never read the Asterisk configuration or the interfaces: `peers` and
//! `hostaddr` do that at run time.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// Where Asterisk keeps its configuration unless `asterisk_config_dir` says otherwise.
pub const DEFAULT_ASTERISK_CONFIG_DIR: &str = "/etc/asterisk";

/// `auto`, `true` or `false`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Toggle {
    /// On when the thing it needs is there (for Asterisk peers: a readable configuration
    /// directory), off without a word otherwise.
    #[default]
    Auto,
    /// On; a warning at each run when it cannot be done.
    On,
    Off,
}

impl Serialize for Toggle {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        match self {
            Toggle::Auto => ser.serialize_str("auto"),
            Toggle::On => ser.serialize_bool(true),
            Toggle::Off => ser.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for Toggle {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Toggle;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or auto")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Toggle, E> {
                Ok(if v { Toggle::On } else { Toggle::Off })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Toggle, E> {
                match v {
                    "auto" => Ok(Toggle::Auto),
                    other => Err(E::custom(format!(
                        "`{other}`: expected true, false or auto"
                    ))),
                }
            }
        }
        de.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toggles_read_and_print_as_written() {
        for (text, want) in [
            ("auto", Toggle::Auto),
            ("true", Toggle::On),
            ("false", Toggle::Off),
        ] {
            let got: Toggle = crate::config::parse_yaml(text, "t").unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(serde_saphyr::to_string(&got).unwrap().trim(), text);
        }
        for bad in ["yes", "on", "1", "maybe"] {
            assert!(
                crate::config::parse_yaml::<Toggle>(bad, "t").is_err(),
                "{bad}"
            );
        }
    }
}
