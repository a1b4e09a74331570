//! This host's own addresses: every interface address and the default gateways, IPv4 and IPv6,
//! the DNS resolvers it uses, and the networks it is on (each IPv4 interface prefix, the /64 of
//! each IPv6 address). They go on the allowlist (when `allow_own_addresses` is on) so no feed
//! or log line can ever lock the box out of itself, its router, its LAN, or the resolver it
//! needs to find its feed servers.
//!
//! Read-only: interface addresses and netmasks come from getifaddrs (through `if-addrs`),
//! gateways from
//! `/proc/net/route` and `/proc/net/ipv6_route`, resolvers from `/etc/resolv.conf` and
//! systemd-resolved's upstream list. This module must never change anything.

use crate::net;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address of this host and where it was found (interface name or "default gateway").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnAddress {
    pub ip: IpAddr,
    pub what: String,
}

/// The own addresses alone, as a set (what the kernel-log detector never scores).
pub fn own_ips() -> std::collections::HashSet<IpAddr> {
    own_addresses().into_iter().map(|a| a.ip).collect()
}

/// All own addresses. Errors reading one source are logged and skipped: a partial list is
/// still better than none, and the config allowlist stays in force regardless.
pub fn own_addresses() -> Vec<OwnAddress> {
    let mut out = Vec::new();
    match if_addrs::get_if_addrs() {
        Ok(ifaces) => {
            for i in ifaces {
                out.push(OwnAddress {
                    ip: net::canonical_ip(i.ip()),
                    what: format!("interface {}", i.name),
                });
            }
        }
        Err(e) => tracing::warn!("cannot list interface addresses: {e}"),
    }
    if let Ok(text) = std::fs::read_to_string("/proc/net/route") {
        for ip in gateways_v4(&text) {
            out.push(OwnAddress {
                ip: IpAddr::V4(ip),
                what: "default gateway".into(),
            });
        }
    }
    if let Ok(text) = std::fs::read_to_string("/proc/net/ipv6_route") {
        for ip in gateways_v6(&text) {
            out.push(OwnAddress {
                ip: IpAddr::V6(ip),
                what: "default gateway".into(),
            });
        }
    }
    out.dedup_by(|a, b| a.ip == b.ip);
    out
}

/// A network this host is on, and the interface it is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnLink {
    pub net: IpNet,
    pub iface: String,
}

/// The networks of every interface but loopback: each IPv4 address's prefix, the /64 of each
/// IPv6 address (link-local and other special space left out: no source bans it anyway).
pub fn on_link() -> Vec<OnLink> {
    let mut out: Vec<OnLink> = Vec::new();
    match if_addrs::get_if_addrs() {
        Ok(ifaces) => {
            for i in ifaces {
                let len = match &i.addr {
                    if_addrs::IfAddr::V4(a) => a.prefixlen,
                    if_addrs::IfAddr::V6(a) => a.prefixlen,
                };
                if let Some(net) = on_link_net(i.ip(), len) {
                    if !out.iter().any(|o| o.net == net) {
                        out.push(OnLink { net, iface: i.name });
                    }
                }
            }
        }
        Err(e) => tracing::warn!("cannot list interface networks: {e}"),
    }
    out
}

/// The network an interface address with prefix length `len` is on: its IPv4 prefix (none
/// broader than /8: a netmask that wide is a mistake, not a LAN), or the /64 of an IPv6
/// address. `None` for loopback and other special space.
pub fn on_link_net(ip: IpAddr, len: u8) -> Option<IpNet> {
    let ip = net::canonical_ip(ip);
    if ip.is_loopback() || net::special_range(&net::host_net(ip)).is_some() {
        return None;
    }
    let net = match ip {
        IpAddr::V4(a) if len >= 8 => IpNet::V4(ipnet::Ipv4Net::new(a, len.min(32)).ok()?),
        IpAddr::V4(_) => return None,
        IpAddr::V6(a) => IpNet::V6(ipnet::Ipv6Net::new(a, 64).ok()?),
    };
    Some(net.trunc())
}

/// Gateways of default routes in `/proc/net/route` (hex, little-endian addresses).
pub fn gateways_v4(text: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (Ok(dest), Ok(gw), Ok(mask)) = (
            u32::from_str_radix(f[1], 16),
            u32::from_str_radix(f[2], 16),
            u32::from_str_radix(f[7], 16),
        ) else {
            continue;
        };
        if dest == 0 && mask == 0 && gw != 0 {
            out.push(Ipv4Addr::from(u32::from_be(gw)));
        }
    }
    out
}

/// Gateways of default routes in `/proc/net/ipv6_route` (32 hex digits per address).
pub fn gateways_v6(text: &str) -> Vec<Ipv6Addr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 {
            continue;
        }
        let (Ok(dest), Ok(plen), Ok(gw)) = (
            u128::from_str_radix(f[0], 16),
            u8::from_str_radix(f[1], 16),
            u128::from_str_radix(f[4], 16),
        ) else {
            continue;
        };
        if dest == 0 && plen == 0 && gw != 0 {
            out.push(Ipv6Addr::from(gw));
        }
    }
    out
}

/// The default gateways and the resolvers: hosts whose service answers (DNS, NTP, UPnP, mDNS)
/// reach this host unasked. Unreadable sources are skipped.
pub fn service_hosts() -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = resolvers().into_iter().map(|r| r.ip).collect();
    if let Ok(text) = std::fs::read_to_string("/proc/net/route") {
        out.extend(gateways_v4(&text).into_iter().map(IpAddr::V4));
    }
    if let Ok(text) = std::fs::read_to_string("/proc/net/ipv6_route") {
        out.extend(gateways_v6(&text).into_iter().map(IpAddr::V6));
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Where the resolvers are listed: the resolver configuration, and systemd-resolved's list of
/// its upstream servers (when `/etc/resolv.conf` points at its local stub, 127.0.0.53).
pub const RESOLV_FILES: [&str; 2] = ["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"];

/// The DNS resolvers this host uses, each with the file that names it. Unreadable files are
/// skipped (a box without systemd-resolved has no second one).
pub fn resolvers() -> Vec<OwnAddress> {
    let mut out: Vec<OwnAddress> = Vec::new();
    for path in RESOLV_FILES {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        for ip in nameservers(&text) {
            if !out.iter().any(|o| o.ip == ip) {
                out.push(OwnAddress {
                    ip,
                    what: path.to_string(),
                });
            }
        }
    }
    out
}

/// The `nameserver` addresses of a resolv.conf text (an IPv6 zone suffix `%eth0` is dropped).
pub fn nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(a)) => {
                    net::parse_ip(a.split('%').next().unwrap_or(a)).map(net::canonical_ip)
                }
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn nameservers_are_read_from_resolv_conf_text() {
        let text = "# generated\nsearch lan\nnameserver 10.255.255.53\nnameserver  fe80::1%eth0\n\
                    nameserver ::ffff:192.0.2.53\noptions edns0\nnameserver bogus\n";
        let got: Vec<String> = super::nameservers(text)
            .iter()
            .map(|i| i.to_string())
            .collect();
        assert_eq!(got, ["10.255.255.53", "fe80::1", "192.0.2.53"]);
    }

    use super::*;

    #[test]
    fn parses_proc_routes() {
        let v4 =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                  eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(gateways_v4(v4), vec![Ipv4Addr::new(192, 168, 1, 1)]);
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n\
                  20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n";
        assert_eq!(
            gateways_v6(v6),
            vec!["fe80::1".parse::<Ipv6Addr>().unwrap()]
        );
    }

    #[test]
    fn on_link_networks_of_interface_addresses() {
        let on =
            |ip: &str, len: u8| on_link_net(ip.parse().unwrap(), len).map(|n| net::display_net(&n));
        assert_eq!(on("192.168.1.20", 24).as_deref(), Some("192.168.1.0/24"));
        assert_eq!(on("45.67.89.1", 32).as_deref(), Some("45.67.89.1"));
        assert_eq!(on("10.1.2.3", 4), None);
        assert_eq!(on("127.0.0.1", 8), None);
        assert_eq!(on("169.254.3.4", 16), None);
        assert_eq!(
            on("2001:db8:1:2::5", 128).as_deref(),
            Some("2001:db8:1:2::/64")
        );
        assert_eq!(on("fd00::2", 64).as_deref(), Some("fd00::/64"));
        assert_eq!(on("fe80::1", 64), None);
        assert_eq!(on("::1", 128), None);
        for o in on_link() {
            assert!(
                o.net.prefix_len() >= 8 && !o.net.addr().is_loopback(),
                "{o:?}"
            );
        }
    }

    #[test]
    fn own_addresses_are_canonical() {
        for a in own_addresses() {
            assert_eq!(a.ip, net::canonical_ip(a.ip));
        }
    }
}
