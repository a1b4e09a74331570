//! Value types that validate themselves while being deserialised (durations, sizes,
//! percentages, prefixes, priorities), and the small vocabulary the resolved settings share
//! with the runtime ([`TimeZone`], [`StartAt`]).
//!
//! This module owns how such a value is written and checked. It must never read a file, the
//! clock or the network: parsing text is all it does.

use crate::net;
use ipnet::IpNet;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A duration written with a unit: `90s`, `10m`, `2h`, `7d` (also `w`). Seconds inside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Dur(pub u64);

impl Dur {
    pub fn parse(text: &str) -> Result<Dur, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| {
            format!("duration `{t}` needs a unit: s, m, h, d or w (e.g. 90s, 10m, 2h, 7d)")
        })?;
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("duration `{t}` must start with a whole number (e.g. 10m)"))?;
        let mult = match unit.trim() {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 604_800,
            other => {
                return Err(format!(
                    "duration `{t}`: unknown unit `{other}` (use s, m, h, d or w)"
                ))
            }
        };
        n.checked_mul(mult)
            .map(Dur)
            .ok_or_else(|| format!("duration `{t}` is too large"))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&human_duration(self.0))
    }
}

/// `7d`, `2h`, `90s`: the largest unit that divides the value.
pub fn human_duration(secs: u64) -> String {
    for (unit, n) in [("w", 604_800), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs >= n && secs.is_multiple_of(n) {
            return format!("{}{}", secs / n, unit);
        }
    }
    format!("{secs}s")
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Dur::parse(&s).map_err(de::Error::custom)
    }
}

/// A size in bytes: `16MiB`, `512KiB`, `1GB`, `4096`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Size(pub u64);

impl Size {
    pub fn parse(text: &str) -> Result<Size, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("size `{t}` must start with a whole number (e.g. 16MiB)"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "kB" | "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            other => {
                return Err(format!(
                    "size `{t}`: unknown unit `{other}` (use B, KiB, MiB, GiB, kB, MB, GB)"
                ))
            }
        };
        n.checked_mul(mult)
            .map(Size)
            .ok_or_else(|| format!("size `{t}` is too large"))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = SizeOrInt::deserialize(d)?;
        match v {
            SizeOrInt::Int(n) => Ok(Size(n)),
            SizeOrInt::Text(s) => Size::parse(&s).map_err(de::Error::custom),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeOrInt {
    Int(u64),
    Text(String),
}

/// A percentage written `50%`; stored as a fraction 0.0..=1.0.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Percent(pub f64);

impl Percent {
    pub fn parse(text: &str) -> Result<Percent, String> {
        let t = text.trim();
        let num = t
            .strip_suffix('%')
            .ok_or_else(|| format!("percentage `{t}` must end with % (e.g. 50%)"))?;
        let v: f64 = num
            .trim()
            .parse()
            .map_err(|_| format!("percentage `{t}` is not a number"))?;
        if !(0.0..=100.0).contains(&v) {
            return Err(format!("percentage `{t}` must be between 0% and 100%"));
        }
        Ok(Percent(v / 100.0))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0 * 100.0)
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Percent::parse(&s).map_err(de::Error::custom)
    }
}

/// All of IPv4, in addresses.
pub const IPV4_ADDRESSES: u64 = 1 << 32;

/// A ceiling on the IPv4 addresses a feed's listing may cover: a count (`16777216`) or a share
/// of IPv4 (`1%`, rounded to whole addresses). At least one address, at most all of IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct V4Coverage(pub u64);

impl V4Coverage {
    pub fn parse(text: &str) -> Result<V4Coverage, String> {
        let t = text.trim();
        let n = if t.ends_with('%') {
            let share = Percent::parse(t)?.0;
            (share * IPV4_ADDRESSES as f64).round() as u64
        } else {
            t.parse::<u64>().map_err(|_| {
                format!("coverage `{t}` must be a number of IPv4 addresses or a percentage of IPv4 (e.g. 16777216 or 1%)")
            })?
        };
        V4Coverage::check(n).map_err(|e| format!("coverage `{t}`: {e}"))
    }

    fn check(n: u64) -> Result<V4Coverage, String> {
        if n == 0 || n > IPV4_ADDRESSES {
            return Err(format!(
                "an IPv4 coverage must be between 1 and {IPV4_ADDRESSES} addresses (100%)"
            ));
        }
        Ok(V4Coverage(n))
    }
}

impl<'de> Deserialize<'de> for V4Coverage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match SizeOrInt::deserialize(d)? {
            SizeOrInt::Int(n) => V4Coverage::check(n).map_err(de::Error::custom),
            SizeOrInt::Text(s) => V4Coverage::parse(&s).map_err(de::Error::custom),
        }
    }
}

/// A ceiling on the IPv6 /64 networks a feed's listing may cover (a prefix longer than /64
/// counts as the /64 it lies in). At least one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct V6Coverage(pub u64);

impl<'de> Deserialize<'de> for V6Coverage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        if n == 0 {
            return Err(de::Error::custom(
                "an IPv6 coverage is a number of /64 networks, at least 1",
            ));
        }
        Ok(V6Coverage(n))
    }
}

/// A CIDR prefix or single address, canonicalised by [`net::parse_net`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr(pub IpNet);

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        net::parse_net(&s)
            .map(Cidr)
            .map_err(|e| de::Error::custom(format!("`{s}`: {e} (host names are not accepted)")))
    }
}

/// A NAT64 prefix of the network (`nat64_prefixes`): IPv6, of a length RFC 6052 defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nat64Prefix(pub net::Nat64);

impl<'de> Deserialize<'de> for Nat64Prefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Cidr(n) = Cidr::deserialize(d)?;
        net::Nat64::new(n)
            .map(Nat64Prefix)
            .map_err(de::Error::custom)
    }
}

/// A priority, 0..=1000. Higher survives eviction longer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Priority(pub u16);

/// The highest priority a configured source may have; `sipban ban` pins above it.
pub const MAX_PRIORITY: u16 = 1000;

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        if v > u64::from(MAX_PRIORITY) {
            return Err(de::Error::custom(format!(
                "priority {v} is above the maximum {MAX_PRIORITY}"
            )));
        }
        Ok(Priority(v as u16))
    }
}

/// How local-time log dates become Unix time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimeZone {
    /// The host's time zone (`localtime_r`, honours `TZ` and `/etc/localtime`).
    #[default]
    System,
    /// A fixed offset east of UTC, in seconds (tests, containers logging in UTC).
    FixedOffset(i32),
}

/// How much of its logs a detector may read in one run (`max_read_per_run`,
/// `max_read_time`): a huge backlog, or a file that grows as fast as it is read, never holds
/// the run. What is left is read by the next run, from where this one stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ReadLimit {
    pub bytes: u64,
    /// Seconds.
    pub secs: u64,
}

impl Default for ReadLimit {
    fn default() -> Self {
        // 64 MiB is about 400,000 Asterisk lines: a few seconds on a Raspberry Pi, and a
        // bounded number of failure hits held while one file is read.
        ReadLimit {
            bytes: 64 << 20,
            secs: 60,
        }
    }
}

impl ReadLimit {
    /// The limit with the section's `max_read_per_run` and `max_read_time` applied.
    pub fn resolve(bytes: Option<Size>, time: Option<Dur>) -> Result<ReadLimit, String> {
        let mut l = ReadLimit::default();
        if let Some(b) = bytes {
            if b.0 < 1 << 20 {
                return Err("max_read_per_run must be at least 1MiB".into());
            }
            l.bytes = b.0;
        }
        if let Some(t) = time {
            if t.0 == 0 || t.0 > 3600 {
                return Err("max_read_time must be between 1s and 1h".into());
            }
            l.secs = t.0;
        }
        Ok(l)
    }
}

/// How to start on a file that has no cursor yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StartAt {
    /// Read the whole file (the detector filters old lines by their time).
    #[default]
    Beginning,
    /// Only lines written from now on.
    End,
}

/// A UDP address to listen on (`sip_wire.hep.listen`): `IP:port`, never a host name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddr(pub std::net::SocketAddr);

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<std::net::SocketAddr>()
            .map(ListenAddr)
            .map_err(|_| {
                de::Error::custom(format!(
                    "`{s}`: not an IP:port (e.g. 127.0.0.1:9060 or [::1]:9060; host names are not accepted)"
                ))
            })
    }
}
