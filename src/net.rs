//! Address and prefix parsing, canonicalisation and set arithmetic.
//!
//! Every address that sipban handles passes through here before it reaches a decision or the
//! `ipset` tool (design invariant 7: ipset resolves text it cannot parse through DNS). The
//! canonical form of a blocklist key is an [`IpNet`] with host bits cleared; IPv4-mapped IPv6
//! addresses (`::ffff:a.b.c.d`) become plain IPv4, so one host never appears under two keys.
//!
//! This module must never do I/O, and never accept a host name: only literal addresses.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Hash maps and sets keyed by prefixes: foldhash's keyed "quality" hasher, several times
/// faster than SipHash on these small keys, and seeded per process, so addresses an attacker
/// chooses (an IPv6 /64 gives them plenty) cannot be aimed at one bucket.
pub type NetMap<V> = std::collections::HashMap<IpNet, V, foldhash::quality::RandomState>;
pub type NetSet = std::collections::HashSet<IpNet, foldhash::quality::RandomState>;

/// An address family; the kernel keeps one set per family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
        }
    }

    /// The full host prefix length for this family (32 or 128).
    pub fn max_prefix(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Why a piece of text is not an address or prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetError {
    Empty,
    NotAnAddress,
    BadPrefixLength,
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetError::Empty => "empty",
            NetError::NotAnAddress => "not an IP address or CIDR prefix",
            NetError::BadPrefixLength => "prefix length out of range",
        })
    }
}

impl std::error::Error for NetError {}

/// Canonical form of a single address: IPv4-mapped IPv6 becomes IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// A single host as a prefix (/32 or /128), canonicalised.
pub fn host_net(ip: IpAddr) -> IpNet {
    match canonical_ip(ip) {
        IpAddr::V4(a) => IpNet::V4(Ipv4Net::from(a)),
        IpAddr::V6(a) => IpNet::V6(Ipv6Net::from(a)),
    }
}

/// Parse a literal address or CIDR prefix (`192.0.2.1`, `192.0.2.0/24`, `2001:db8::/32`,
/// `[2001:db8::1]`, `::ffff:192.0.2.1`). Host bits are cleared (`192.0.2.7/24` becomes
/// `192.0.2.0/24`). Surrounding whitespace is ignored; nothing else is.
pub fn parse_net(text: &str) -> Result<IpNet, NetError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(NetError::Empty);
    }
    // Most of any feed is plain dotted IPv4: parse it without the general machinery.
    if let Some(a) = dotted_quad(t.as_bytes()) {
        return Ok(IpNet::V4(Ipv4Net::from(a)));
    }
    let (addr, len) = match t.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (t, None),
    };
    let addr = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    let ip: IpAddr = addr.parse().map_err(|_| NetError::NotAnAddress)?;
    let Some(len) = len else {
        return Ok(host_net(ip));
    };
    if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NetError::BadPrefixLength);
    }
    let len: u8 = len.parse().map_err(|_| NetError::BadPrefixLength)?;
    let net = match ip {
        IpAddr::V4(a) => IpNet::V4(Ipv4Net::new(a, len).map_err(|_| NetError::BadPrefixLength)?),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            // ::ffff:a.b.c.d/120 is the IPv4 /24 written in IPv6 form.
            Some(v4) if len >= 96 => {
                IpNet::V4(Ipv4Net::new(v4, len - 96).map_err(|_| NetError::BadPrefixLength)?)
            }
            _ => IpNet::V6(Ipv6Net::new(a, len).map_err(|_| NetError::BadPrefixLength)?),
        },
    };
    Ok(net.trunc())
}

/// `a.b.c.d` with each part 0-255 written without leading zeros, exactly as std's parser
/// accepts it; anything else (prefixes, IPv6, junk) is `None` and goes the general way.
fn dotted_quad(b: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut part = 0;
    let mut value: u32 = 0;
    let mut digits = 0;
    for &c in b {
        match c {
            b'0'..=b'9' => {
                if digits == 1 && value == 0 {
                    return None; // a leading zero
                }
                value = value * 10 + u32::from(c - b'0');
                digits += 1;
                if value > 255 {
                    return None;
                }
            }
            b'.' if digits > 0 && part < 3 => {
                octets[part] = value as u8;
                part += 1;
                value = 0;
                digits = 0;
            }
            _ => return None,
        }
    }
    if part != 3 || digits == 0 {
        return None;
    }
    octets[3] = value as u8;
    Some(Ipv4Addr::from(octets))
}

/// Parse a single address (no prefix), canonicalised. Accepts `[v6]` brackets.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    let t = text.trim();
    let t = t
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(t);
    t.parse::<IpAddr>().ok().map(canonical_ip)
}

/// Address space that can never be a meaningful ban target, whatever the source says:
/// unspecified, loopback, link-local, multicast, broadcast and "this network". Returns the
/// name of the range the prefix touches, or `None`.
pub fn special_range(net: &IpNet) -> Option<&'static str> {
    first_overlap(special_ranges(), net)
}

/// Private and shared address space (RFC 1918, RFC 6598 CGNAT, IPv6 ULA). A public feed that
/// lists these would lock a LAN out, so feeds may not ban them unless a feed opts in.
pub fn private_range(net: &IpNet) -> Option<&'static str> {
    first_overlap(private_ranges(), net)
}

/// The name of the first range that overlaps `net`. Integer arithmetic on the raw address:
/// this runs for every entry of every run, so it must be cheap.
fn first_overlap(ranges: &[(IpNet, &'static str)], net: &IpNet) -> Option<&'static str> {
    // Nearly every listed address is IPv4 in a /8 that no range touches: one bit test.
    if let IpNet::V4(n) = net {
        let octet = n.addr().octets()[0];
        if n.prefix_len() >= 8 && v4_octets()[usize::from(octet >> 6)] & (1 << (octet & 63)) == 0 {
            return None;
        }
    }
    scan_overlap(ranges, net)
}

/// [`first_overlap`] without the shortcut.
fn scan_overlap(ranges: &[(IpNet, &'static str)], net: &IpNet) -> Option<&'static str> {
    let (bits, len) = raw(net);
    ranges.iter().find_map(|(range, name)| {
        let (rbits, rlen) = raw(range);
        (Family::of(range) == Family::of(net) && same_prefix(bits, rbits, len.min(rlen)))
            .then_some(*name)
    })
}

/// First octets (a 256-bit mask) of the IPv4 addresses any special or private range holds.
fn v4_octets() -> &'static [u64; 4] {
    use std::sync::OnceLock;
    static M: OnceLock<[u64; 4]> = OnceLock::new();
    M.get_or_init(|| {
        let mut mask = [0u64; 4];
        for (range, _) in special_ranges().iter().chain(private_ranges()) {
            if let IpNet::V4(r) = range {
                let first = usize::from(r.addr().octets()[0]);
                let span = 1usize << 8u8.saturating_sub(r.prefix_len());
                for o in first..(first + span).min(256) {
                    mask[o >> 6] |= 1 << (o & 63);
                }
            }
        }
        mask
    })
}

/// The address as the top bits of a u128 (IPv4 in the highest 32) and the prefix length.
fn raw(net: &IpNet) -> (u128, u8) {
    match net {
        IpNet::V4(n) => ((u128::from(u32::from(n.addr()))) << 96, n.prefix_len()),
        IpNet::V6(n) => (u128::from(n.addr()), n.prefix_len()),
    }
}

/// Whether `a` and `b` agree in their first `len` bits.
fn same_prefix(a: u128, b: u128, len: u8) -> bool {
    len == 0 || (a ^ b) >> (128 - u32::from(len)) == 0
}

/// The order of [`sort_key`], compared without building keys (sorts and merges of 65,536
/// prefixes spend their time here).
pub fn cmp_net(a: &IpNet, b: &IpNet) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (IpNet::V4(x), IpNet::V4(y)) => {
            (u32::from(x.addr()), x.prefix_len()).cmp(&(u32::from(y.addr()), y.prefix_len()))
        }
        (IpNet::V6(x), IpNet::V6(y)) => {
            (u128::from(x.addr()), x.prefix_len()).cmp(&(u128::from(y.addr()), y.prefix_len()))
        }
        (IpNet::V4(_), IpNet::V6(_)) => Ordering::Less,
        (IpNet::V6(_), IpNet::V4(_)) => Ordering::Greater,
    }
}

/// A cheap total order key (family, address bits, prefix length) for sorting prefixes.
pub fn sort_key(net: &IpNet) -> (u8, u128, u8) {
    let (bits, len) = raw(net);
    (Family::of(net) as u8, bits, len)
}

fn special_ranges() -> &'static [(IpNet, &'static str)] {
    use std::sync::OnceLock;
    static R: OnceLock<Vec<(IpNet, &'static str)>> = OnceLock::new();
    R.get_or_init(|| {
        vec![
            (v4(Ipv4Addr::new(0, 0, 0, 0), 8), "this-network 0.0.0.0/8"),
            (v4(Ipv4Addr::new(127, 0, 0, 0), 8), "loopback 127.0.0.0/8"),
            (
                v4(Ipv4Addr::new(169, 254, 0, 0), 16),
                "link-local 169.254.0.0/16",
            ),
            (v4(Ipv4Addr::new(224, 0, 0, 0), 4), "multicast 224.0.0.0/4"),
            (v4(Ipv4Addr::new(255, 255, 255, 255), 32), "broadcast"),
            // Class E (RFC 1112 "reserved for future use"): never routed on the Internet, so
            // no attack comes from it, and a network that uses it inside must not be cut off.
            (
                v4(Ipv4Addr::new(240, 0, 0, 0), 4),
                "reserved 240.0.0.0/4 (class E)",
            ),
            (v6(Ipv6Addr::UNSPECIFIED, 128), "unspecified ::"),
            (v6(Ipv6Addr::LOCALHOST, 128), "loopback ::1"),
            (
                v6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
                "link-local fe80::/10",
            ),
            (
                v6(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
                "multicast ff00::/8",
            ),
        ]
    })
}

fn private_ranges() -> &'static [(IpNet, &'static str)] {
    use std::sync::OnceLock;
    static R: OnceLock<Vec<(IpNet, &'static str)>> = OnceLock::new();
    R.get_or_init(|| {
        vec![
            (v4(Ipv4Addr::new(10, 0, 0, 0), 8), "private 10.0.0.0/8"),
            (
                v4(Ipv4Addr::new(172, 16, 0, 0), 12),
                "private 172.16.0.0/12",
            ),
            (
                v4(Ipv4Addr::new(192, 168, 0, 0), 16),
                "private 192.168.0.0/16",
            ),
            (v4(Ipv4Addr::new(100, 64, 0, 0), 10), "shared 100.64.0.0/10"),
            (
                v6(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),
                "unique-local fc00::/7",
            ),
        ]
    })
}

/// IPv6 ranges whose addresses carry an IPv4 address: the range, its name, and the bit at which
/// the IPv4 address starts (the server's address, for Teredo), if the layout is fixed.
const TRANSLATIONS: [(u128, u8, &str, Option<u8>); 4] = [
    // NAT64, well-known prefix (RFC 6052): 64:ff9b::a.b.c.d.
    (
        0x0064_ff9b_0000_0000_0000_0000_0000_0000,
        96,
        "NAT64 64:ff9b::/96",
        Some(96),
    ),
    // NAT64, local-use prefix (RFC 8215): a network picks its NAT64 prefix inside it, of any
    // RFC 6052 length, so where the IPv4 address sits is only known from `nat64_prefixes`.
    (
        0x0064_ff9b_0001_0000_0000_0000_0000_0000,
        48,
        "NAT64 local-use 64:ff9b:1::/48",
        None,
    ),
    // 6to4 (RFC 3056): 2002:aabb:ccdd::/48 for a.b.c.d.
    (
        0x2002_0000_0000_0000_0000_0000_0000_0000,
        16,
        "6to4 2002::/16",
        Some(16),
    ),
    // Teredo (RFC 4380): 2001:0:<server IPv4>::/64.
    (
        0x2001_0000_0000_0000_0000_0000_0000_0000,
        32,
        "Teredo 2001::/32",
        Some(32),
    ),
];

/// The IPv6 translation range `net` covers whole (NAT64, 6to4, Teredo), if any: banning it
/// would cut off every IPv4 host reached through it. A network's own NAT64 prefixes are
/// [`Nat64`] values, asked separately.
pub fn covers_translation(net: &IpNet) -> Option<&'static str> {
    let IpNet::V6(_) = net else { return None };
    let (bits, len) = raw(net);
    TRANSLATIONS
        .iter()
        .find(|(range, rlen, _, _)| len <= *rlen && same_prefix(bits, *range, len))
        .map(|(_, _, name, _)| *name)
}

/// The IPv4 prefix an IPv6 prefix inside a translation range carries (NAT64, 6to4, Teredo's
/// server), with the range's name: `2002:c000:0201::/48` carries `192.0.2.1/32`, a NAT64 /120
/// carries a /24. `None` outside the ranges, and for a prefix that covers a whole range.
pub fn embedded_v4(net: &IpNet) -> Option<(IpNet, &'static str)> {
    let IpNet::V6(_) = net else { return None };
    let (bits, len) = raw(net);
    let (_, _, name, at) = TRANSLATIONS
        .iter()
        .find(|(range, rlen, _, _)| len > *rlen && same_prefix(bits, *range, *rlen))?;
    let at = (*at)?;
    let addr = (bits >> (96 - u32::from(at))) as u32;
    let known = len.saturating_sub(at).min(32);
    let v4 = Ipv4Net::new(Ipv4Addr::from(addr), known).ok()?.trunc();
    Some((IpNet::V4(v4), name))
}

/// The prefix lengths RFC 6052 defines for a network-specific NAT64 prefix.
pub const NAT64_PREFIX_LENGTHS: [u8; 6] = [32, 40, 48, 56, 64, 96];

/// A network's own NAT64 prefix (RFC 6052 section 2.2, `nat64_prefixes` in the config): an
/// IPv6 address inside it carries an IPv4 address in the 32 bits after the prefix, skipping
/// bits 64..71 (the "u" octet, always zero) when the prefix is shorter than /96. So
/// `2001:db8:64::c000:201` in `2001:db8:64::/96` is 192.0.2.1, and so is
/// `2001:db8:11c0:2:1::` in `2001:db8:1100::/40`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(into = "String")]
pub struct Nat64(Ipv6Net);

impl From<Nat64> for String {
    fn from(p: Nat64) -> String {
        p.0.to_string()
    }
}

impl fmt::Display for Nat64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Nat64 {
    /// An IPv6 prefix of an RFC 6052 length; a /96 must have a zero u octet.
    pub fn new(net: IpNet) -> Result<Nat64, String> {
        let IpNet::V6(p) = net else {
            return Err(format!(
                "`{}` is not an IPv6 prefix (a NAT64 prefix is IPv6)",
                display_net(&net)
            ));
        };
        if !NAT64_PREFIX_LENGTHS.contains(&p.prefix_len()) {
            return Err(format!(
                "`{p}`: a NAT64 prefix is /32, /40, /48, /56, /64 or /96 (RFC 6052)"
            ));
        }
        if p.prefix_len() == 96 && (u128::from(p.network()) >> 56) & 0xff != 0 {
            return Err(format!(
                "`{p}`: bits 64 to 71 of a NAT64 /96 prefix must be zero (RFC 6052)"
            ));
        }
        Ok(Nat64(p))
    }

    pub fn prefix(&self) -> IpNet {
        IpNet::V6(self.0)
    }

    /// Where bit `i` (0 = most significant) of the carried IPv4 address sits in the IPv6
    /// address.
    fn v4_bit_at(&self, i: u8) -> u8 {
        let len = self.0.prefix_len();
        match len + i {
            p if len == 96 || p < 64 => p,
            p => p + 8,
        }
    }

    /// How many leading bits of the IPv4 address a prefix of length `len` inside this one fixes.
    fn known_bits(&self, len: u8) -> u8 {
        (0..32).take_while(|&i| self.v4_bit_at(i) < len).count() as u8
    }

    /// Whether banning `net` would cut off every IPv4 host behind this prefix: `net` holds
    /// the whole prefix, or lies inside it without fixing a single bit of an IPv4 address
    /// (the u octet only).
    pub fn covered_by(&self, net: &IpNet) -> bool {
        let IpNet::V6(_) = net else { return false };
        let (bits, len) = raw(net);
        let (pbits, plen) = raw(&self.prefix());
        if len <= plen {
            return same_prefix(bits, pbits, len);
        }
        same_prefix(bits, pbits, plen) && self.known_bits(len) == 0
    }

    /// The IPv4 prefix `net` carries when it lies inside this prefix and fixes at least one
    /// bit of an IPv4 address.
    pub fn carried(&self, net: &IpNet) -> Option<IpNet> {
        let IpNet::V6(_) = net else { return None };
        let (bits, len) = raw(net);
        let (pbits, plen) = raw(&self.prefix());
        if len <= plen || !same_prefix(bits, pbits, plen) {
            return None;
        }
        let known = self.known_bits(len);
        if known == 0 {
            return None;
        }
        let addr = (0..known).fold(0u32, |acc, i| {
            let bit = (bits >> (127 - u32::from(self.v4_bit_at(i)))) & 1;
            acc | ((bit as u32) << (31 - u32::from(i)))
        });
        let v4 = Ipv4Net::new(Ipv4Addr::from(addr), known).ok()?;
        Some(IpNet::V4(v4))
    }
}

fn v4(a: Ipv4Addr, len: u8) -> IpNet {
    // Constant, valid lengths only: `Ipv4Net::new` cannot fail for len <= 32.
    IpNet::V4(Ipv4Net::new(a, len).unwrap_or_default())
}

fn v6(a: Ipv6Addr, len: u8) -> IpNet {
    IpNet::V6(Ipv6Net::new(a, len).unwrap_or_default())
}

/// Whether two prefixes share at least one address (one contains the other): they are of one
/// family and agree in the bits of the shorter prefix. Integer arithmetic, as it runs for every
/// entry against every allowlist rule.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    let ((abits, alen), (bbits, blen)) = (raw(a), raw(b));
    Family::of(a) == Family::of(b) && same_prefix(abits, bbits, alen.min(blen))
}

/// `net` minus every prefix in `holes`, as a list of disjoint prefixes (empty when a hole
/// covers `net`). Prefixes of another family are ignored. The result never holds an address of
/// a hole and holds every other address of `net`.
pub fn subtract(net: IpNet, holes: &[IpNet]) -> Vec<IpNet> {
    let mut out = Vec::new();
    let relevant: Vec<IpNet> = holes
        .iter()
        .filter(|h| Family::of(h) == Family::of(&net) && overlaps(h, &net))
        .copied()
        .collect();
    subtract_into(net, &relevant, &mut out);
    out
}

fn subtract_into(net: IpNet, holes: &[IpNet], out: &mut Vec<IpNet>) {
    if holes.iter().any(|h| h.contains(&net)) {
        return;
    }
    let inner: Vec<IpNet> = holes.iter().filter(|h| net.contains(*h)).copied().collect();
    if inner.is_empty() {
        out.push(net);
        return;
    }
    // Split in two halves and recurse; depth is bounded by the prefix length (<= 128). A host
    // prefix cannot be split, but it never gets here: a hole inside it also contains it.
    if let Ok(halves) = net.subnets(net.prefix_len() + 1) {
        for half in halves {
            let hs: Vec<IpNet> = inner
                .iter()
                .filter(|h| overlaps(h, &half))
                .copied()
                .collect();
            subtract_into(half, &hs, out);
        }
    }
}

/// Append the text form of [`display_net`] to `out` without allocating: this runs once per
/// entry when a batch for ipset, a feed cache or the state is written.
pub fn push_net(out: &mut Vec<u8>, net: &IpNet) {
    match net {
        IpNet::V4(n) => {
            let [a, b, c, d] = n.addr().octets();
            for (i, octet) in [a, b, c, d].into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_u32(out, u32::from(octet));
            }
        }
        IpNet::V6(n) => {
            use std::io::Write;
            // Writing to a Vec cannot fail.
            let _ = write!(out, "{}", n.addr());
        }
    }
    if net.prefix_len() != net.max_prefix_len() {
        out.push(b'/');
        push_u32(out, u32::from(net.prefix_len()));
    }
}

/// Append a decimal number.
pub fn push_u32(out: &mut Vec<u8>, mut v: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Text form used everywhere (state, plans, the ipset batch): a host prefix is written as a
/// bare address, anything broader in CIDR form.
pub fn display_net(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        parse_net(s).unwrap()
    }

    #[test]
    fn parses_and_canonicalises() {
        assert_eq!(display_net(&n("192.0.2.7/24")), "192.0.2.0/24");
        assert_eq!(display_net(&n(" 192.0.2.7 ")), "192.0.2.7");
        assert_eq!(display_net(&n("::ffff:192.0.2.7")), "192.0.2.7");
        assert_eq!(display_net(&n("::ffff:192.0.2.7/120")), "192.0.2.0/24");
        assert_eq!(display_net(&n("[2001:db8::1]")), "2001:db8::1");
        assert_eq!(
            display_net(&n("2001:0db8:0000:0000:0000:0000:0000:0bad")),
            "2001:db8::bad"
        );
        assert_eq!(parse_net("example.org"), Err(NetError::NotAnAddress));
        assert_eq!(parse_net("10.0.0.999"), Err(NetError::NotAnAddress));
        assert_eq!(parse_net("10.0.0.0/33"), Err(NetError::BadPrefixLength));
        assert_eq!(parse_net("10.0.0.0/"), Err(NetError::BadPrefixLength));
        assert_eq!(parse_net("10.0.0.0/+8"), Err(NetError::BadPrefixLength));
        assert_eq!(parse_net(""), Err(NetError::Empty));
    }

    #[test]
    fn push_net_matches_display_net() {
        for s in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.0/8",
            "192.0.2.7",
            "45.1.2.0/24",
            "2001:db8::/32",
            "::1",
            "2001:db8::1",
        ] {
            let mut out = Vec::new();
            push_net(&mut out, &n(s));
            assert_eq!(String::from_utf8(out).unwrap(), display_net(&n(s)));
        }
        let mut out = Vec::new();
        push_u32(&mut out, 4_294_967_295);
        push_u32(&mut out, 0);
        assert_eq!(out, b"42949672950");
    }

    #[test]
    fn the_ipv4_fast_path_agrees_with_std() {
        for s in [
            "1.2.3.4",
            "0.0.0.0",
            "255.255.255.255",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "1..2.3",
            ".1.2.3",
            "1.2.3.",
            "1.2.3.4a",
            "10.0.0.00",
        ] {
            assert_eq!(dotted_quad(s.as_bytes()), s.parse::<Ipv4Addr>().ok(), "{s}");
        }
    }

    proptest::proptest! {
        /// `overlaps` agrees with ipnet's containment, host bits set or not.
        #[test]
        fn overlaps_is_containment(a in 0u32..64, al in 24u8..=32, b in 0u32..64, bl in 24u8..=32,
                                   v6 in proptest::bool::ANY) {
            let make = |x: u32, l: u8| -> IpNet {
                if v6 {
                    IpNet::V6(Ipv6Net::new(Ipv6Addr::from(0x2001_0db8u128 << 96 | u128::from(x)), l + 96).unwrap())
                } else {
                    IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0x2D00_0000 + x), l).unwrap())
                }
            };
            let (x, y) = (make(a, al), make(b, bl));
            proptest::prop_assert_eq!(overlaps(&x, &y), x.contains(&y) || y.contains(&x));
            let other = IpNet::V6(Ipv6Net::new(Ipv6Addr::UNSPECIFIED, 0).unwrap());
            proptest::prop_assert_eq!(overlaps(&IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), al).unwrap()), &other), false);
        }
    }

    #[test]
    fn cmp_net_is_the_sort_key_order() {
        let nets: Vec<IpNet> = [
            "0.0.0.0/0",
            "1.2.3.4",
            "1.2.3.0/24",
            "1.2.3.4/31",
            "255.255.255.255",
            "45.0.0.1",
            "::/0",
            "::1",
            "2001:db8::/32",
            "2001:db8::1",
            "ffff::/16",
            "ffff::",
        ]
        .iter()
        .map(|t| parse_net(t).unwrap())
        .collect();
        for a in &nets {
            for b in &nets {
                assert_eq!(cmp_net(a, b), sort_key(a).cmp(&sort_key(b)), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn octet_shortcut_agrees_with_the_scan() {
        for octet in 0..=255u32 {
            for len in [8u8, 9, 10, 12, 16, 24, 32] {
                for low in [0u32, 0x00FF_FFFF, 0x0040_0000, 0x00A8_0101, 0x0010_0000] {
                    let addr = Ipv4Addr::from((octet << 24) | low);
                    let net = IpNet::V4(Ipv4Net::new(addr, len).unwrap()).trunc();
                    for ranges in [special_ranges(), private_ranges()] {
                        assert_eq!(
                            first_overlap(ranges, &net),
                            scan_overlap(ranges, &net),
                            "{net}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn special_and_private() {
        assert!(special_range(&n("127.0.0.1")).is_some());
        assert!(special_range(&n("0.0.0.0/0")).is_some());
        assert!(special_range(&n("::/0")).is_some());
        assert!(special_range(&n("::1")).is_some());
        assert!(special_range(&n("192.0.2.1")).is_none());
        assert_eq!(
            special_range(&n("240.1.2.3")),
            Some("reserved 240.0.0.0/4 (class E)")
        );
        assert_eq!(special_range(&n("255.255.255.255")), Some("broadcast"));
        assert!(special_range(&n("239.255.255.255")).is_some());
        assert!(special_range(&n("223.255.255.255")).is_none());
        assert!(private_range(&n("192.168.1.1")).is_some());
        assert!(private_range(&n("192.0.0.0/8")).is_some());
        assert!(private_range(&n("193.0.0.0/8")).is_none());
    }

    #[test]
    fn configured_nat64_prefixes_carry_ipv4_around_the_u_octet() {
        let v4 = "192.0.2.1";
        // RFC 6052 section 2.4's examples of 192.0.2.33, one per prefix length.
        for (prefix, addr) in [
            ("2001:db8::/32", "2001:db8:c000:221::"),
            ("2001:db8:100::/40", "2001:db8:1c0:2:21::"),
            ("2001:db8:122::/48", "2001:db8:122:c000:2:2100::"),
            ("2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"),
            ("2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"),
            ("2001:db8:122:344::/96", "2001:db8:122:344::192.0.2.33"),
        ] {
            let p = Nat64::new(n(prefix)).unwrap();
            assert_eq!(p.carried(&n(addr)), Some(n("192.0.2.33")), "{prefix}");
            assert!(p.covered_by(&n(prefix)), "{prefix}");
            assert!(!p.covered_by(&n(addr)), "{prefix}");
            assert_eq!(p.carried(&n(v4)), None);
            assert_eq!(p.carried(&n(prefix)), None);
        }
        // A shorter prefix inside carries the IPv4 bits it fixes; the u octet alone fixes none.
        let p = Nat64::new(n("2001:db8:122:344::/64")).unwrap();
        assert_eq!(
            p.carried(&n("2001:db8:122:344:c0::/80")),
            Some(n("192.0.0.0/8"))
        );
        assert!(p.covered_by(&n("2001:db8:122:344::/72")));
        assert!(p.covered_by(&n("2001:db8::/32")));
        assert!(!p.covered_by(&n("2001:db8:122:345::/64")));
        assert_eq!(p.carried(&n("2001:db8:122:345::1")), None);
        // Only RFC 6052 lengths, IPv6, and a zero u octet for a /96.
        assert!(Nat64::new(n("2001:db8::/80")).is_err());
        assert!(Nat64::new(n("192.0.2.0/24")).is_err());
        assert!(Nat64::new(n("2001:db8:0:0:ff00::/96")).is_err());
        // The local-use range (RFC 8215) is never banned whole.
        assert_eq!(
            covers_translation(&n("64:ff9b:1::/48")),
            Some("NAT64 local-use 64:ff9b:1::/48")
        );
        assert_eq!(embedded_v4(&n("64:ff9b:1::c000:201")), None);
    }

    #[test]
    fn subtract_splits_around_holes() {
        let out = subtract(n("192.0.0.0/16"), &[n("192.0.2.0/24")]);
        assert_eq!(out.len(), 8);
        assert!(out.iter().all(|p| !overlaps(p, &n("192.0.2.0/24"))));
        let total: u64 = out.iter().map(|p| 1u64 << (32 - p.prefix_len())).sum();
        assert_eq!(total, 65536 - 256);
        assert!(subtract(n("192.0.2.1"), &[n("192.0.2.0/24")]).is_empty());
        assert_eq!(
            subtract(n("192.0.2.1"), &[n("2001:db8::/32")]),
            vec![n("192.0.2.1")]
        );
    }
}
