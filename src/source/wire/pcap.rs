//! Packet captures read offline, streaming: classic pcap (microsecond and nanosecond, either
//! byte order) and pcapng (section header, interface description, enhanced and simple packet
//! blocks; other blocks skipped), and the link, IP and transport layers down to the UDP or TCP
//! payload.
//!
//! Link types: Ethernet (with up to two VLAN tags), Linux cooked v1 and v2, raw IP and BSD
//! loopback. IPv4 and IPv6 (hop-by-hop, routing and destination options skipped); fragments
//! other than a first one without more to come are counted and skipped, as reassembly is not
//! done offline.
//!
//! This module must never hold more than one record in memory, and never trust a length it
//! has not checked against what it read.

use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Largest record accepted (a capture with a larger snap length is cut to this).
pub const MAX_RECORD: usize = 256 * 1024;

/// One captured packet down to its transport payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Capture time, Unix seconds.
    pub secs: i64,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub transport: Transport,
    /// TCP's sequence and acknowledgement numbers and flags (zero for UDP).
    pub tcp: TcpHead,
    pub payload: &'a [u8],
}

/// What TCP reassembly reads of a TCP header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpHead {
    pub seq: u32,
    pub ack: u32,
    /// FIN, SYN, RST, PSH, ACK… (the low byte of the flags).
    pub flags: u8,
}

impl<'a> Packet<'a> {
    /// The packet as a TCP segment for [`super::tcp::Reassembler`].
    pub fn segment(&self) -> super::tcp::Segment<'a> {
        super::tcp::Segment {
            src: self.src,
            dst: self.dst,
            sport: self.sport,
            dport: self.dport,
            seq: self.tcp.seq,
            ack: self.tcp.ack,
            flags: self.tcp.flags,
            payload: self.payload,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Why a record yielded no packet (counted by the caller).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// A link type this reader does not decode.
    LinkType,
    /// Not IPv4/IPv6, or not UDP/TCP.
    NotIp,
    /// A fragment (reassembly is not done offline).
    Fragment,
    /// A header runs past the captured bytes.
    Truncated,
}

/// A capture file being read.
pub struct Reader<R: Read> {
    input: R,
    format: Format,
    buf: Vec<u8>,
}

enum Format {
    Classic {
        big: bool,
        link: u32,
    },
    Ng {
        big: bool,
        /// Per interface: link type and timestamp units per second.
        ifaces: Vec<(u32, u64)>,
    },
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn u16_at(b: &[u8], at: usize, big: bool) -> Option<u16> {
    let a: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
    Some(if big {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    })
}

fn u32_at(b: &[u8], at: usize, big: bool) -> Option<u32> {
    let a: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    })
}

/// Read exactly `n` bytes into `buf`, or `Ok(false)` at a clean end of file before the first.
fn fill(input: &mut impl Read, buf: &mut Vec<u8>, n: usize) -> io::Result<bool> {
    buf.resize(n, 0);
    let mut got = 0;
    while got < n {
        match input.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(bad("the capture ends inside a record")),
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

const NG_SHB: u32 = 0x0A0D_0D0A;

impl<R: Read> Reader<R> {
    /// Read the file header; an error names what is wrong with it.
    pub fn new(mut input: R) -> io::Result<Reader<R>> {
        let mut buf = Vec::with_capacity(64 * 1024);
        if !fill(&mut input, &mut buf, 4)? {
            return Err(bad("empty file: not a pcap or pcapng capture"));
        }
        let magic = [buf[0], buf[1], buf[2], buf[3]];
        let classic = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] => Some((false, false)),
            [0xa1, 0xb2, 0xc3, 0xd4] => Some((true, false)),
            [0x4d, 0x3c, 0xb2, 0xa1] => Some((false, true)),
            [0xa1, 0xb2, 0x3c, 0x4d] => Some((true, true)),
            _ => None,
        };
        // Nanosecond files differ only in the fraction, which is not used.
        if let Some((big, _nanos)) = classic {
            if !fill(&mut input, &mut buf, 20)? {
                return Err(bad("truncated pcap header"));
            }
            let link = u32_at(&buf, 16, big).unwrap_or(0) & 0x0fff_ffff;
            return Ok(Reader {
                input,
                format: Format::Classic { big, link },
                buf,
            });
        }
        if u32::from_le_bytes(magic) != NG_SHB {
            return Err(bad("not a pcap or pcapng capture (unknown magic number)"));
        }
        let mut r = Reader {
            input,
            format: Format::Ng {
                big: false,
                ifaces: Vec::new(),
            },
            buf,
        };
        r.section_header()?;
        Ok(r)
    }

    /// The rest of a section header block whose type was just read.
    fn section_header(&mut self) -> io::Result<()> {
        if !fill(&mut self.input, &mut self.buf, 8)? {
            return Err(bad("truncated pcapng section header"));
        }
        let big = match self.buf[4..8] {
            [0x1a, 0x2b, 0x3c, 0x4d] => true,
            [0x4d, 0x3c, 0x2b, 0x1a] => false,
            _ => return Err(bad("pcapng section header with a bad byte-order magic")),
        };
        let len = u32_at(&self.buf, 0, big).unwrap_or(0) as usize;
        if !(28..=MAX_RECORD).contains(&len) || !len.is_multiple_of(4) {
            return Err(bad(format!("pcapng section header of bad length {len}")));
        }
        // Skip the rest: version, section length, options, trailing length.
        if !fill(&mut self.input, &mut self.buf, len - 12)? {
            return Err(bad("truncated pcapng section header"));
        }
        self.format = Format::Ng {
            big,
            ifaces: Vec::new(),
        };
        Ok(())
    }

    /// The next record: `Ok(None)` at the end of the file; `Ok(Some(Err(skip)))` for a record
    /// that holds no UDP/TCP packet.
    pub fn next_packet(&mut self) -> io::Result<Option<Result<Packet<'_>, Skip>>> {
        if let Format::Classic { big, link, .. } = self.format {
            if !fill(&mut self.input, &mut self.buf, 16)? {
                return Ok(None);
            }
            let secs = u32_at(&self.buf, 0, big).unwrap_or(0);
            let incl = u32_at(&self.buf, 8, big).unwrap_or(0) as usize;
            if incl > MAX_RECORD {
                return Err(bad(format!("pcap record of {incl} bytes is too large")));
            }
            if !fill(&mut self.input, &mut self.buf, incl)? && incl > 0 {
                return Err(bad("the capture ends inside a record"));
            }
            return Ok(Some(decode_link(link, &self.buf, i64::from(secs))));
        }
        loop {
            match self.ng_block()? {
                Ng::End => return Ok(None),
                Ng::Other => {}
                Ng::Packet {
                    link,
                    start,
                    end,
                    secs,
                } => return Ok(Some(decode_link(link, &self.buf[start..end], secs))),
            }
        }
    }

    /// One pcapng block.
    fn ng_block(&mut self) -> io::Result<Ng> {
        let Format::Ng { big, .. } = self.format else {
            return Ok(Ng::End);
        };
        if !fill(&mut self.input, &mut self.buf, 8)? {
            return Ok(Ng::End);
        }
        let kind = u32_at(&self.buf, 0, big).unwrap_or(0);
        if kind == NG_SHB {
            self.section_header()?;
            return Ok(Ng::Other);
        }
        let len = u32_at(&self.buf, 4, big).unwrap_or(0) as usize;
        if !(12..=MAX_RECORD).contains(&len) || !len.is_multiple_of(4) {
            return Err(bad(format!("pcapng block of bad length {len}")));
        }
        if !fill(&mut self.input, &mut self.buf, len - 8)? {
            return Err(bad("the capture ends inside a block"));
        }
        let body_len = len - 12;
        let Format::Ng { ifaces, .. } = &mut self.format else {
            return Ok(Ng::End);
        };
        let body = &self.buf[..body_len];
        match kind {
            1 => {
                let link = u32::from(u16_at(body, 0, big).unwrap_or(0));
                ifaces.push((link, tsresol(body.get(8..).unwrap_or_default(), big)));
                Ok(Ng::Other)
            }
            6 => {
                let iface = u32_at(body, 0, big).unwrap_or(u32::MAX) as usize;
                let Some(&(link, units)) = ifaces.get(iface) else {
                    return Err(bad("pcapng packet for an undescribed interface"));
                };
                let hi = u64::from(u32_at(body, 4, big).unwrap_or(0));
                let lo = u64::from(u32_at(body, 8, big).unwrap_or(0));
                let cap = u32_at(body, 12, big).unwrap_or(0) as usize;
                if 20 + cap > body_len {
                    return Err(bad("pcapng packet longer than its block"));
                }
                let secs = ((hi << 32 | lo) / units.max(1)) as i64;
                Ok(Ng::Packet {
                    link,
                    start: 20,
                    end: 20 + cap,
                    secs,
                })
            }
            3 => {
                let Some(&(link, _)) = ifaces.first() else {
                    return Err(bad("pcapng packet for an undescribed interface"));
                };
                let orig = u32_at(body, 0, big).unwrap_or(0) as usize;
                let start = 4.min(body_len);
                Ok(Ng::Packet {
                    link,
                    start,
                    end: start + orig.min(body_len - start),
                    secs: 0,
                })
            }
            _ => Ok(Ng::Other),
        }
    }
}

/// What one pcapng block was.
enum Ng {
    End,
    Other,
    Packet {
        link: u32,
        start: usize,
        end: usize,
        secs: i64,
    },
}

/// Timestamp units per second from an interface block's options (`if_tsresol`, code 9).
fn tsresol(mut opts: &[u8], big: bool) -> u64 {
    while opts.len() >= 4 {
        let code = u16_at(opts, 0, big).unwrap_or(0);
        let len = usize::from(u16_at(opts, 2, big).unwrap_or(0));
        if code == 0 {
            break;
        }
        let padded = (len + 3) & !3;
        if code == 9 && len == 1 {
            if let Some(&v) = opts.get(4) {
                let exp = u32::from(v & 0x7f);
                let base: u64 = if v & 0x80 != 0 { 2 } else { 10 };
                return base.checked_pow(exp).unwrap_or(1_000_000);
            }
        }
        opts = opts.get(4 + padded..).unwrap_or_default();
    }
    1_000_000
}

/// Link layer → IP.
pub fn decode_link(link: u32, data: &[u8], secs: i64) -> Result<Packet<'_>, Skip> {
    let ip = match link {
        // Ethernet
        1 => {
            let mut at = 12;
            let mut ethertype = u16_at(data, at, true).ok_or(Skip::Truncated)?;
            for _ in 0..2 {
                if ethertype == 0x8100 || ethertype == 0x88a8 {
                    at += 4;
                    ethertype = u16_at(data, at, true).ok_or(Skip::Truncated)?;
                }
            }
            if !matches!(ethertype, 0x0800 | 0x86dd) {
                return Err(Skip::NotIp);
            }
            &data[at + 2..]
        }
        // Linux cooked capture v1 and v2
        113 => data.get(16..).ok_or(Skip::Truncated)?,
        276 => data.get(20..).ok_or(Skip::Truncated)?,
        // Raw IP (LINKTYPE_RAW, and the IPv4/IPv6 ones)
        101 | 228 | 229 | 12 | 14 => data,
        // BSD loopback: a 4-byte family in host order.
        0 | 108 => data.get(4..).ok_or(Skip::Truncated)?,
        _ => return Err(Skip::LinkType),
    };
    decode_ip(ip, secs)
}

/// IPv4/IPv6 → UDP/TCP payload.
pub fn decode_ip(ip: &[u8], secs: i64) -> Result<Packet<'_>, Skip> {
    let version = ip.first().ok_or(Skip::Truncated)? >> 4;
    let (src, dst, mut proto, mut at, end) = match version {
        4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ihl < 20 || ip.len() < ihl {
                return Err(Skip::Truncated);
            }
            let total = usize::from(u16_at(ip, 2, true).ok_or(Skip::Truncated)?);
            let frag = u16_at(ip, 6, true).ok_or(Skip::Truncated)?;
            if frag & 0x3fff != 0 {
                return Err(Skip::Fragment);
            }
            let s: [u8; 4] = ip[12..16].try_into().map_err(|_| Skip::Truncated)?;
            let d: [u8; 4] = ip[16..20].try_into().map_err(|_| Skip::Truncated)?;
            (
                IpAddr::V4(Ipv4Addr::from(s)),
                IpAddr::V4(Ipv4Addr::from(d)),
                ip[9],
                ihl,
                total.clamp(ihl, ip.len()),
            )
        }
        6 => {
            if ip.len() < 40 {
                return Err(Skip::Truncated);
            }
            let plen = usize::from(u16_at(ip, 4, true).ok_or(Skip::Truncated)?);
            let s: [u8; 16] = ip[8..24].try_into().map_err(|_| Skip::Truncated)?;
            let d: [u8; 16] = ip[24..40].try_into().map_err(|_| Skip::Truncated)?;
            (
                IpAddr::V6(Ipv6Addr::from(s)),
                IpAddr::V6(Ipv6Addr::from(d)),
                ip[6],
                40,
                (40 + plen).min(ip.len()),
            )
        }
        _ => return Err(Skip::NotIp),
    };
    if version == 6 {
        // Extension headers before the transport (a few at most).
        for _ in 0..8 {
            match proto {
                0 | 43 | 60 => {
                    let next = *ip.get(at).ok_or(Skip::Truncated)?;
                    let len = (usize::from(*ip.get(at + 1).ok_or(Skip::Truncated)?) + 1) * 8;
                    proto = next;
                    at += len;
                }
                44 => return Err(Skip::Fragment),
                _ => break,
            }
        }
    }
    let l4 = ip.get(at..end).ok_or(Skip::Truncated)?;
    let mut tcp = TcpHead::default();
    let (transport, sport, dport, payload) = match proto {
        17 => {
            let len = usize::from(u16_at(l4, 4, true).ok_or(Skip::Truncated)?);
            let end = len.clamp(8, l4.len().max(8));
            (
                Transport::Udp,
                u16_at(l4, 0, true).ok_or(Skip::Truncated)?,
                u16_at(l4, 2, true).ok_or(Skip::Truncated)?,
                l4.get(8..end.min(l4.len())).ok_or(Skip::Truncated)?,
            )
        }
        6 => {
            let off = usize::from(*l4.get(12).ok_or(Skip::Truncated)? >> 4) * 4;
            if off < 20 {
                return Err(Skip::Truncated);
            }
            tcp = TcpHead {
                seq: u32_at(l4, 4, true).ok_or(Skip::Truncated)?,
                ack: u32_at(l4, 8, true).ok_or(Skip::Truncated)?,
                flags: *l4.get(13).ok_or(Skip::Truncated)?,
            };
            (
                Transport::Tcp,
                u16_at(l4, 0, true).ok_or(Skip::Truncated)?,
                u16_at(l4, 2, true).ok_or(Skip::Truncated)?,
                l4.get(off..).ok_or(Skip::Truncated)?,
            )
        }
        _ => return Err(Skip::NotIp),
    };
    Ok(Packet {
        secs,
        src,
        dst,
        sport,
        dport,
        transport,
        tcp,
        payload,
    })
}

/// One UDP datagram to write: time, source and port, destination and port, payload.
pub type UdpRecord = (i64, IpAddr, u16, IpAddr, u16, Vec<u8>);

/// Build a classic pcap (Ethernet, microseconds) of UDP datagrams: tests and benchmarks.
pub fn write_udp_pcap(packets: &[UdpRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (secs, src, sport, dst, dport, payload) in packets {
        let mut frame = vec![0u8; 12];
        let mut ip = Vec::new();
        let udp_len = (payload.len() + 8) as u16;
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                frame.extend_from_slice(&0x0800u16.to_be_bytes());
                ip.extend_from_slice(&[0x45, 0]);
                ip.extend_from_slice(&(20 + udp_len).to_be_bytes());
                ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
                ip.extend_from_slice(&s.octets());
                ip.extend_from_slice(&d.octets());
            }
            (s, d) => {
                let v6 = |a: &IpAddr| match a {
                    IpAddr::V4(v) => v.to_ipv6_mapped(),
                    IpAddr::V6(v) => *v,
                };
                frame.extend_from_slice(&0x86ddu16.to_be_bytes());
                ip.extend_from_slice(&[0x60, 0, 0, 0]);
                ip.extend_from_slice(&udp_len.to_be_bytes());
                ip.extend_from_slice(&[17, 64]);
                ip.extend_from_slice(&v6(s).octets());
                ip.extend_from_slice(&v6(d).octets());
            }
        }
        ip.extend_from_slice(&sport.to_be_bytes());
        ip.extend_from_slice(&dport.to_be_bytes());
        ip.extend_from_slice(&udp_len.to_be_bytes());
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(payload);
        frame.extend_from_slice(&ip);
        out.extend_from_slice(&(*secs as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_pcap_round_trip_v4_and_v6() {
        let a: IpAddr = "198.51.100.9".parse().unwrap();
        let b: IpAddr = "192.0.2.1".parse().unwrap();
        let a6: IpAddr = "2001:db8::9".parse().unwrap();
        let b6: IpAddr = "2001:db8::1".parse().unwrap();
        let file = write_udp_pcap(&[
            (100, a, 5061, b, 5060, b"OPTIONS".to_vec()),
            (101, a6, 5062, b6, 5060, b"REGISTER".to_vec()),
        ]);
        let mut r = Reader::new(&file[..]).unwrap();
        let p = r.next_packet().unwrap().unwrap().unwrap();
        assert_eq!(
            (p.secs, p.src, p.sport, p.dst, p.dport),
            (100, a, 5061, b, 5060)
        );
        assert_eq!(p.payload, b"OPTIONS");
        let p = r.next_packet().unwrap().unwrap().unwrap();
        assert_eq!((p.src, p.payload), (a6, &b"REGISTER"[..]));
        assert!(r.next_packet().unwrap().is_none());
    }

    #[test]
    fn truncated_and_lying_files_are_errors_not_panics() {
        let a: IpAddr = "198.51.100.9".parse().unwrap();
        let file = write_udp_pcap(&[(1, a, 1, a, 2, b"x".to_vec())]);
        for cut in 0..file.len() {
            let Ok(mut r) = Reader::new(&file[..cut]) else {
                continue;
            };
            while let Ok(Some(_)) = r.next_packet() {}
        }
        let mut huge = file.clone();
        huge[24 + 8..24 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut r = Reader::new(&huge[..]).unwrap();
        assert!(r.next_packet().is_err());
        assert!(Reader::new(&b"not a capture"[..]).is_err());
    }

    #[test]
    fn pcapng_with_an_interface_and_an_enhanced_packet() {
        let a: IpAddr = "198.51.100.9".parse().unwrap();
        let classic = write_udp_pcap(&[(7, a, 5061, a, 5060, b"BYE".to_vec())]);
        let frame = &classic[24 + 16..];
        let mut ng = Vec::new();
        let block = |ng: &mut Vec<u8>, kind: u32, body: &[u8]| {
            let len = (12 + body.len()) as u32;
            ng.extend_from_slice(&kind.to_le_bytes());
            ng.extend_from_slice(&len.to_le_bytes());
            ng.extend_from_slice(body);
            ng.extend_from_slice(&len.to_le_bytes());
        };
        let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
        shb.extend_from_slice(&[1, 0, 0, 0]);
        shb.extend_from_slice(&u64::MAX.to_le_bytes());
        block(&mut ng, NG_SHB, &shb);
        let mut idb = vec![1, 0, 0, 0];
        idb.extend_from_slice(&0u32.to_le_bytes());
        block(&mut ng, 1, &idb);
        let mut epb = 0u32.to_le_bytes().to_vec();
        let ts: u64 = 7_000_000;
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(frame);
        while !epb.len().is_multiple_of(4) {
            epb.push(0);
        }
        block(&mut ng, 6, &epb);
        let mut r = Reader::new(&ng[..]).unwrap();
        let p = r.next_packet().unwrap().unwrap().unwrap();
        assert_eq!((p.secs, p.payload), (7, &b"BYE"[..]));
        assert!(r.next_packet().unwrap().is_none());
    }
}
