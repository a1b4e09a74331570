//! HEP v3 (the Homer Encapsulation Protocol), decoded by hand: a small TLV format.
//!
//! A datagram is `HEP3`, its total length (u16, big-endian), then chunks: vendor (u16), type
//! (u16), length (u16, the 6-byte chunk header included), value. The chunks read here are all
//! vendor 0: 1 IP family, 2 IP protocol, 3/4 IPv4 source/destination, 5/6 IPv6
//! source/destination, 7/8 source/destination port, 9/10 seconds/microseconds, 11 payload type
//! (1 = SIP), 12 capture agent id, 14 auth key, 15 the payload. Other vendors' chunks and
//! unknown types are skipped.
//!
//! The outer datagram comes from the capture agent (the PBX); the SIP client is the inner
//! source address. This module must never take an address from the payload, and never accept
//! a datagram whose declared lengths disagree with its size.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What the detector needs from one HEP v3 datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hep<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    /// IP protocol of the captured packet (17 UDP, 6 TCP, ...).
    pub proto: u8,
    /// Capture time, Unix seconds (0 when absent).
    pub secs: u32,
    /// Payload type (1 = SIP).
    pub payload_type: u8,
    pub capture_id: Option<u32>,
    /// The auth key chunk (Asterisk's `capture_password`), if sent.
    pub auth_key: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

/// Why a datagram was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HepError {
    /// Not `HEP3`, or shorter than its header.
    NotHep,
    /// The total length or a chunk length disagrees with the datagram.
    Length,
    /// A chunk the detector needs is missing or has the wrong size.
    Chunk,
}

impl HepError {
    pub fn name(self) -> &'static str {
        match self {
            HepError::NotHep => "not a HEP v3 datagram",
            HepError::Length => "HEP lengths disagree with the datagram",
            HepError::Chunk => "HEP chunk missing or malformed",
        }
    }
}

/// Payload type of SIP.
pub const SIP: u8 = 1;

/// Decode one datagram.
pub fn decode(buf: &[u8]) -> Result<Hep<'_>, HepError> {
    if buf.len() < 6 || &buf[..4] != b"HEP3" {
        return Err(HepError::NotHep);
    }
    let total = usize::from(u16::from_be_bytes([buf[4], buf[5]]));
    if total < 6 || total > buf.len() {
        return Err(HepError::Length);
    }
    let mut rest = &buf[6..total];
    let (mut src4, mut dst4, mut src6, mut dst6) = (None, None, None, None);
    let (mut sport, mut dport, mut proto, mut family) = (None, None, None, None);
    let (mut secs, mut payload_type, mut capture_id, mut auth_key, mut payload) =
        (0u32, None, None, None, None);
    while !rest.is_empty() {
        if rest.len() < 6 {
            return Err(HepError::Length);
        }
        let vendor = u16::from_be_bytes([rest[0], rest[1]]);
        let kind = u16::from_be_bytes([rest[2], rest[3]]);
        let len = usize::from(u16::from_be_bytes([rest[4], rest[5]]));
        if len < 6 || len > rest.len() {
            return Err(HepError::Length);
        }
        let v = &rest[6..len];
        rest = &rest[len..];
        if vendor != 0 {
            continue;
        }
        match kind {
            1 => family = Some(byte(v)?),
            2 => proto = Some(byte(v)?),
            3 => src4 = Some(Ipv4Addr::from(array::<4>(v)?)),
            4 => dst4 = Some(Ipv4Addr::from(array::<4>(v)?)),
            5 => src6 = Some(Ipv6Addr::from(array::<16>(v)?)),
            6 => dst6 = Some(Ipv6Addr::from(array::<16>(v)?)),
            7 => sport = Some(u16::from_be_bytes(array::<2>(v)?)),
            8 => dport = Some(u16::from_be_bytes(array::<2>(v)?)),
            9 => secs = u32::from_be_bytes(array::<4>(v)?),
            11 => payload_type = Some(byte(v)?),
            12 => capture_id = Some(u32::from_be_bytes(array::<4>(v)?)),
            14 => auth_key = Some(v),
            15 => payload = Some(v),
            _ => {}
        }
    }
    // The family chunk says which pair of address chunks is the packet's.
    let (src, dst) = match family {
        Some(2) => (src4.map(IpAddr::V4), dst4.map(IpAddr::V4)),
        Some(10) => (src6.map(IpAddr::V6), dst6.map(IpAddr::V6)),
        _ => return Err(HepError::Chunk),
    };
    Ok(Hep {
        src: src.ok_or(HepError::Chunk)?,
        dst: dst.ok_or(HepError::Chunk)?,
        sport: sport.ok_or(HepError::Chunk)?,
        dport: dport.ok_or(HepError::Chunk)?,
        proto: proto.ok_or(HepError::Chunk)?,
        secs,
        payload_type: payload_type.ok_or(HepError::Chunk)?,
        capture_id,
        auth_key,
        payload: payload.ok_or(HepError::Chunk)?,
    })
}

fn byte(v: &[u8]) -> Result<u8, HepError> {
    match v {
        [b] => Ok(*b),
        _ => Err(HepError::Chunk),
    }
}

fn array<const N: usize>(v: &[u8]) -> Result<[u8; N], HepError> {
    v.try_into().map_err(|_| HepError::Chunk)
}

/// Encode a datagram (tests, benchmarks and the `scan` fixtures): IPv4 or IPv6 by `src`.
pub fn encode(h: &Hep<'_>) -> Vec<u8> {
    let mut out = b"HEP3\0\0".to_vec();
    let mut chunk = |kind: u16, v: &[u8]| {
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&((v.len() + 6) as u16).to_be_bytes());
        out.extend_from_slice(v);
    };
    match (h.src, h.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            chunk(1, &[2]);
            chunk(3, &s.octets());
            chunk(4, &d.octets());
        }
        (s, d) => {
            chunk(1, &[10]);
            chunk(5, &v6(s).octets());
            chunk(6, &v6(d).octets());
        }
    }
    chunk(2, &[h.proto]);
    chunk(7, &h.sport.to_be_bytes());
    chunk(8, &h.dport.to_be_bytes());
    chunk(9, &h.secs.to_be_bytes());
    chunk(10, &0u32.to_be_bytes());
    chunk(11, &[h.payload_type]);
    if let Some(id) = h.capture_id {
        chunk(12, &id.to_be_bytes());
    }
    if let Some(k) = h.auth_key {
        chunk(14, k);
    }
    chunk(15, h.payload);
    let len = out.len() as u16;
    out[4..6].copy_from_slice(&len.to_be_bytes());
    out
}

fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V4(v) => v.to_ipv6_mapped(),
        IpAddr::V6(v) => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(payload: &'a [u8]) -> Hep<'a> {
        Hep {
            src: "198.51.100.9".parse().unwrap(),
            dst: "192.0.2.1".parse().unwrap(),
            sport: 5061,
            dport: 5060,
            proto: 17,
            secs: 1_700_000_000,
            payload_type: SIP,
            capture_id: Some(2001),
            auth_key: None,
            payload,
        }
    }

    #[test]
    fn round_trip_v4_and_v6() {
        let h = sample(b"OPTIONS sip:x SIP/2.0\r\n\r\n");
        assert_eq!(decode(&encode(&h)).unwrap(), h);
        let h6 = Hep {
            src: "2001:db8::9".parse().unwrap(),
            dst: "2001:db8::1".parse().unwrap(),
            auth_key: Some(b"secret"),
            ..h
        };
        assert_eq!(decode(&encode(&h6)).unwrap(), h6);
    }

    #[test]
    fn lengths_that_lie_are_refused() {
        let h = sample(b"x");
        let good = encode(&h);
        let mut long = good.clone();
        long[5] = long[5].wrapping_add(1); // total one past the end
        assert_eq!(decode(&long), Err(HepError::Length));
        let mut chunk = good.clone();
        chunk[11] = 0xff; // first chunk's length
        assert_eq!(decode(&chunk), Err(HepError::Length));
        assert_eq!(decode(&good[..good.len() - 1]), Err(HepError::Length));
        assert_eq!(decode(b"HEP2\0\x06"), Err(HepError::NotHep));
        // Trailing bytes past the declared total are ignored (a padded datagram).
        let mut padded = good.clone();
        padded.extend_from_slice(b"\0\0");
        assert_eq!(decode(&padded).unwrap(), h);
    }

    #[test]
    fn the_family_chooses_the_address_pair() {
        // Family 2 with only IPv6 addresses: refused, never a guess.
        let h = sample(b"x");
        let mut buf = encode(&h);
        // chunk 1's value is at offset 6 + 6.
        assert_eq!(buf[12], 2);
        buf[12] = 10;
        assert_eq!(decode(&buf), Err(HepError::Chunk));
    }
}
