//! The port catalogue's schema: what an entry of `feeds/ports.yaml` or of `kernel_log.ports`
//! says (a port or range, protocols, a weight, a name), and the built-in list, compiled in.
//!
//! This module owns how an entry is written and checked. It must never build the lookup or
//! score a packet: `source::kernlog::ports` does that from these entries.

use super::{parse_yaml, ConfigError};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The built-in catalogue text.
pub const BUILTIN: &str = include_str!("../../feeds/ports.yaml");

/// Highest weight an entry may have.
pub const MAX_WEIGHT: u8 = 100;

/// A transport protocol of a logged packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn label(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Which protocols an entry covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtoSel {
    Tcp,
    Udp,
    Both,
}

impl ProtoSel {
    pub fn covers(self, p: Proto) -> bool {
        matches!(
            (self, p),
            (ProtoSel::Both, _) | (ProtoSel::Tcp, Proto::Tcp) | (ProtoSel::Udp, Proto::Udp)
        )
    }
}

/// Which packets an entry matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Traffic {
    /// Packets that start a conversation (the usual case).
    #[default]
    Probes,
    /// Packets shaped like answers (see `source::kernlog::parse::Packet::reply_shaped`).
    /// They are never counted; the entry only names them.
    Replies,
}

/// A port or an inclusive range, written `23` or `"32770-32900"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub fn parse(text: &str) -> Result<PortRange, String> {
        let t = text.trim();
        let num = |s: &str| -> Result<u16, String> {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "port `{t}` must be a number 0-65535 or a range like 32770-32900"
                ));
            }
            s.parse::<u16>()
                .map_err(|_| format!("port `{t}` is above 65535"))
        };
        let (lo, hi) = match t.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let p = num(t)?;
                (p, p)
            }
        };
        if lo > hi {
            return Err(format!("port range `{t}` runs backwards"));
        }
        Ok(PortRange { lo, hi })
    }

    pub fn contains(self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

impl Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.lo == self.hi {
            s.serialize_u16(self.lo)
        } else {
            s.serialize_str(&self.to_string())
        }
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum NumOrText {
            Num(u64),
            Text(String),
        }
        match NumOrText::deserialize(d)? {
            NumOrText::Num(n) => u16::try_from(n)
                .map(|p| PortRange { lo: p, hi: p })
                .map_err(|_| de::Error::custom(format!("port {n} is above 65535"))),
            NumOrText::Text(t) => PortRange::parse(&t).map_err(de::Error::custom),
        }
    }
}

/// A weight 0..=100.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Weight(pub u8);

impl<'de> Deserialize<'de> for Weight {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        if v > u64::from(MAX_WEIGHT) {
            return Err(de::Error::custom(format!(
                "weight {v} is above the maximum {MAX_WEIGHT}"
            )));
        }
        Ok(Weight(v as u8))
    }
}

/// One catalogue entry as written (built-in file or `kernel_log.ports`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PortEntry {
    pub port: PortRange,
    pub proto: ProtoSel,
    /// Optional in the config (`configured` when left out); required in the built-in list.
    #[serde(default)]
    pub name: Option<String>,
    pub weight: Weight,
    #[serde(default)]
    pub traffic: Traffic,
    /// One line: what a probe here usually means.
    #[serde(default)]
    pub means: Option<String>,
    /// Counted only from lines whose log prefix says the packet was dropped or rejected
    /// (`[UFW BLOCK]`, `..._DROP`, ...): a port this host serves (SIP, the web) is probed only
    /// when its firewall turned the packet away. sipban's own LOG rule never watches it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub only_dropped: bool,
}

impl PortEntry {
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("configured")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    ports: Vec<PortEntry>,
}

/// The built-in entries, parsed and checked (every entry named and described).
pub fn builtin() -> Result<Vec<PortEntry>, ConfigError> {
    let file: CatalogueFile = parse_yaml(BUILTIN, "feeds/ports.yaml")?;
    for e in &file.ports {
        if e.name.is_none() || e.means.is_none() {
            return Err(ConfigError(format!(
                "feeds/ports.yaml: the entry for port {} needs `name` and `means`",
                e.port
            )));
        }
    }
    Ok(file.ports)
}
