//! The hosts this PBX talks to by its own configuration: the SIP and IAX2 trunks and
//! registrations in Asterisk's `pjsip.conf`, `pjsip_wizard.conf`, `sip.conf` and `iax.conf`.
//! They go on the allowlist (`protect_asterisk_peers`), so neither a forged log line nor a
//! poisoned feed can make the PBX ban its own provider.
//!
//! What counts, per file (templates resolved, `#include`s followed, see [`conf`]):
//! - `pjsip.conf`: registrations' `server_uri` and `outbound_proxy`, endpoints'
//!   `outbound_proxy`, AORs' `contact` and `outbound_proxy`, identifies' `match` (addresses,
//!   networks, names); `pjsip_wizard.conf`: `remote_hosts` and `outbound_proxy`;
//! - `sip.conf`: `register =>` lines, and each peer's `host` (not `dynamic`) and
//!   `outboundproxy`; `iax.conf`: `register =>` lines and each peer's `host`.
//!
//! A host is a literal address or network ([`Host::Net`]) or a name ([`Host::Name`]) that the
//! caller resolves with [`resolve`]. Everything is bounded: names, addresses per name, peers,
//! and how broad a configured network may be. DNS answers are hostile input, but an extra
//! protected address is the fail-safe direction; the bounds keep it small.
//!
//! Read-only: this module must never write anything or run anything (`#exec` is ignored).

pub mod conf;

use crate::net;
use ipnet::IpNet;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

/// At most this many peers are protected (the configuration is the admin's, but bounded).
pub const MAX_PEERS: usize = 4096;
/// At most this many distinct names are resolved.
pub const MAX_NAMES: usize = 64;
/// At most this many addresses of one name are protected.
pub const MAX_ADDRS_PER_NAME: usize = 16;
/// A configured network broader than this (IPv4, IPv6) is not protected automatically.
pub const BROADEST: (u8, u8) = (16, 32);

/// A peer's host as configured.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Host {
    /// A literal address (a /32 or /128) or network (an identify `match`).
    Net(IpNet),
    /// A DNS name, lower case.
    Name(String),
}

/// A host and where the configuration names it (`pjsip.conf [trunk] server_uri`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub host: Host,
    pub what: String,
}

/// The peers of one Asterisk configuration directory, and what could not be used.
#[derive(Clone, Debug, Default)]
pub struct Peers {
    pub peers: Vec<Peer>,
    pub warnings: Vec<String>,
}

impl Peers {
    /// The distinct names, each with the first place that names it, at most [`MAX_NAMES`].
    pub fn names(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = Vec::new();
        for p in &self.peers {
            if let Host::Name(n) = &p.host {
                if !out.iter().any(|(m, _)| m == n) && out.len() < MAX_NAMES {
                    out.push((n, &p.what));
                }
            }
        }
        out
    }

    fn push(&mut self, host: Result<Host, String>, what: String) {
        match host {
            Ok(host) if self.peers.len() < MAX_PEERS => self.peers.push(Peer { host, what }),
            Ok(_) => {}
            Err(e) if e.is_empty() => {}
            Err(e) => self.warnings.push(format!("{what}: {e}")),
        }
    }
}

/// The configuration files read, and how each names its peers.
const FILES: [(&str, Kind); 4] = [
    ("pjsip.conf", Kind::Pjsip),
    ("pjsip_wizard.conf", Kind::Pjsip),
    ("sip.conf", Kind::Sip),
    ("iax.conf", Kind::Iax),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pjsip,
    Sip,
    Iax,
}

/// The peers in the Asterisk configuration directory `dir`. A file that does not exist is
/// skipped; `Err` when the directory itself cannot be read.
pub fn collect(dir: &Path) -> Result<Peers, String> {
    std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut out = Peers::default();
    for (file, kind) in FILES {
        match conf::read(dir, file) {
            Ok(Some(c)) => {
                out.warnings
                    .extend(c.warnings.iter().map(|w| format!("{file}: {w}")));
                peers_of(&c, file, kind, &mut out);
            }
            Ok(None) => {}
            Err(e) => out.warnings.push(e),
        }
    }
    if out.peers.len() >= MAX_PEERS {
        out.warnings.push(format!(
            "more than {MAX_PEERS} peers; the rest are not protected"
        ));
    }
    Ok(out)
}

/// The peers one parsed file names.
fn peers_of(c: &conf::Conf, file: &str, kind: Kind, out: &mut Peers) {
    // `register =>` lines sit in [general] (or before any section).
    if kind != Kind::Pjsip {
        let general = c.top.iter().map(|o| ("general", o));
        let sections = c
            .sections
            .iter()
            .flat_map(|s| s.opts.iter().map(move |o| (s.name.as_str(), o)));
        for (section, o) in general.chain(sections) {
            if o.key == "register" {
                let what = format!("{file} [{section}] register");
                out.push(register_host(&o.value), what);
            }
        }
    }
    let index = c.index();
    for s in c.objects() {
        let opts = c.effective(&index, s);
        let ty = opts
            .iter()
            .rev()
            .find(|o| o.key == "type")
            .map(|o| o.value.to_ascii_lowercase())
            .unwrap_or_default();
        for o in opts {
            let what = format!("{file} [{}] {}", s.name, o.key);
            let key = o.key.as_str();
            match kind {
                Kind::Pjsip => match (ty.as_str(), key) {
                    ("registration", "server_uri" | "outbound_proxy")
                    | ("endpoint", "outbound_proxy")
                    | ("aor", "contact" | "outbound_proxy")
                    | ("wizard", "outbound_proxy") => {
                        for part in list(&o.value) {
                            out.push(uri_host(part), what.clone());
                        }
                    }
                    ("identify", "match") | ("wizard", "remote_hosts") => {
                        for part in list(&o.value) {
                            out.push(match_host(part), what.clone());
                        }
                    }
                    _ => {}
                },
                Kind::Sip | Kind::Iax if s.name.eq_ignore_ascii_case("general") => {}
                Kind::Sip | Kind::Iax => match key {
                    "host" if !o.value.eq_ignore_ascii_case("dynamic") => {
                        out.push(host(strip_port(&o.value)), what);
                    }
                    "outboundproxy" if kind == Kind::Sip => out.push(uri_host(&o.value), what),
                    _ => {}
                },
            }
        }
    }
}

/// A comma-separated list, items trimmed, empty ones dropped.
fn list(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|p| !p.is_empty())
}

/// The host of a SIP URI (`sip:`/`sips:`, optional `<>`, `user@`, `:port`, `;params`,
/// `?headers`, IPv6 in brackets) or of a bare `host[:port]`.
pub fn uri_host(v: &str) -> Result<Host, String> {
    let mut t = v.trim();
    if let Some(start) = t.find('<') {
        t = &t[start + 1..];
        t = t.split('>').next().unwrap_or(t);
    }
    let lower = t.to_ascii_lowercase();
    if lower.starts_with("sips:") {
        t = &t[5..];
    } else if lower.starts_with("sip:") {
        t = &t[4..];
    } else if net::parse_ip(t).is_none() && other_scheme(t) {
        return Err(format!("`{v}` is not a SIP URI"));
    }
    let t = t.split([';', '?']).next().unwrap_or(t);
    let t = t.rsplit('@').next().unwrap_or(t);
    host(strip_port(t))
}

/// `tel:...`, `http://...`: a scheme that is not SIP (`host:5060` is a port, not a scheme).
fn other_scheme(t: &str) -> bool {
    t.split_once(':').is_some_and(|(scheme, rest)| {
        !scheme.is_empty()
            && scheme.bytes().all(|b| b.is_ascii_alphabetic())
            && !rest.bytes().next().is_some_and(|b| b.is_ascii_digit())
    })
}

/// The host of a chan_sip/chan_iax2 `register =>` line:
/// `[peer?][transport://]user[@domain][:secret[:authuser]]@host[:port][/extension][~expiry]`.
pub fn register_host(v: &str) -> Result<Host, String> {
    let t = v.trim();
    let Some(at) = t.rfind('@') else {
        return Err(format!("`{v}` names no host"));
    };
    let t = &t[at + 1..];
    let t = t.split(['/', '~']).next().unwrap_or(t);
    host(strip_port(t))
}

/// An identify `match` or wizard `remote_hosts` item: an address, a network (`/len` or
/// `/dotted.mask`), or a name, each with an optional `:port`.
pub fn match_host(v: &str) -> Result<Host, String> {
    let t = v.trim();
    if let Some((addr, mask)) = t.split_once('/') {
        let len = match mask.parse::<u8>() {
            Ok(l) => l,
            Err(_) => dotted_mask(mask).ok_or_else(|| format!("`{v}`: a bad netmask"))?,
        };
        return net::parse_net(&format!("{}/{len}", addr.trim()))
            .map_err(|e| format!("`{v}`: {e}"))
            .and_then(literal);
    }
    host(strip_port(t))
}

/// `255.255.255.0` → 24 (contiguous masks only).
fn dotted_mask(mask: &str) -> Option<u8> {
    let m: std::net::Ipv4Addr = mask.trim().parse().ok()?;
    let bits = u32::from(m);
    let len = bits.leading_ones();
    (bits.checked_shl(len).unwrap_or(0) == 0).then_some(len as u8)
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address → the host alone.
pub fn strip_port(t: &str) -> &str {
    let t = t.trim();
    if let Some(inner) = t.strip_prefix('[') {
        return inner.split(']').next().unwrap_or(inner);
    }
    match t.matches(':').count() {
        1 => t.split(':').next().unwrap_or(t),
        _ => t,
    }
}

/// A host text as an address or a name. `Err("")` for what is silently not a peer
/// (loopback and other special space, which no source may ban anyway).
fn host(t: &str) -> Result<Host, String> {
    let t = t.trim().trim_end_matches('.');
    if t.is_empty() {
        return Err("no host".into());
    }
    if let Some(ip) = net::parse_ip(t) {
        return literal(net::host_net(ip));
    }
    let name = t.to_ascii_lowercase();
    let labels_ok = name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    // A last label of digits alone is a mistyped address, which the resolver might read as
    // one (`1.2.3` is 1.2.0.3 to inet_aton).
    let numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if !labels_ok || numeric {
        return Err(format!("`{t}` is neither an address nor a host name"));
    }
    Ok(Host::Name(name))
}

/// A literal network, unless it is broader than [`BROADEST`] or special space (silently).
fn literal(n: IpNet) -> Result<Host, String> {
    let broadest = match n {
        IpNet::V4(_) => BROADEST.0,
        IpNet::V6(_) => BROADEST.1,
    };
    if n.prefix_len() < broadest {
        return Err(format!(
            "{} is broader than /{broadest}: not protected automatically (list it under allowlist: if you mean it)",
            net::display_net(&n)
        ));
    }
    if net::special_range(&n).is_some() {
        return Err(String::new());
    }
    Ok(Host::Net(n))
}

/// Resolve `names` at once, each within `timeout`. `None` for a name that did not resolve
/// (the caller keeps what it had). Addresses are canonical, without special space, at most
/// [`MAX_ADDRS_PER_NAME`] per name.
pub async fn resolve(names: &[String], timeout: Duration) -> Vec<(String, Option<Vec<IpAddr>>)> {
    let mut set = tokio::task::JoinSet::new();
    for (i, name) in names.iter().take(MAX_NAMES).enumerate() {
        let name = name.clone();
        set.spawn(async move {
            let lookup = tokio::net::lookup_host((name.clone(), 5060));
            let got = match tokio::time::timeout(timeout, lookup).await {
                Ok(Ok(addrs)) => Some(addresses(addrs.map(|a| a.ip()))),
                Ok(Err(e)) => {
                    tracing::debug!("cannot resolve Asterisk peer {name}: {e}");
                    None
                }
                Err(_) => {
                    tracing::debug!("resolving Asterisk peer {name} timed out");
                    None
                }
            };
            (i, name, got)
        });
    }
    let mut out: Vec<(usize, String, Option<Vec<IpAddr>>)> = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok(r) = joined {
            out.push(r);
        }
    }
    out.sort_by_key(|r| r.0);
    out.into_iter().map(|(_, n, a)| (n, a)).collect()
}

/// What a resolver answered, made safe to keep: canonical, deduplicated, no special space,
/// bounded.
pub fn addresses(answer: impl Iterator<Item = IpAddr>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in answer.map(net::canonical_ip) {
        if out.len() >= MAX_ADDRS_PER_NAME {
            break;
        }
        if !out.contains(&ip) && net::special_range(&net::host_net(ip)).is_none() {
            out.push(ip);
        }
    }
    out
}

#[cfg(test)]
mod tests;
