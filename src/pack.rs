//! Compact binary encoding of prefix lists, shared by the packed feed listings (see
//! [`crate::store`]), the kernel mirror (see [`crate::backend::mirror`]) and the kernel-log detector's
//! scoring windows (see [`crate::source::kernlog::KernelState`]).
//!
//! All are rewritten by every run that changes them, and a 65,536-entry list is most of what
//! a run writes to SQLite, so size is time: each prefix is one tag byte (IPv4: the prefix
//! length; IPv6: 64 + the prefix length), its address as the LEB128 difference from the
//! previous address of its family, and each timestamp as the zigzag LEB128 difference from the
//! previous one of its column. Sorted lists of timestamps that mostly agree take about 4 bytes
//! an IPv4 entry instead of 14. Unsorted input still round-trips (differences wrap), it only
//! takes more room.
//!
//! Pure data: it never touches a file or the database, and a malformed input decodes to
//! `None`, never to a panic.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};

/// The tag byte of an IPv6 prefix is this plus its length (IPv4 tags are 0..=32).
const V6_TAG: u8 = 64;

/// Appends prefixes and timestamps to a buffer.
#[derive(Default)]
pub struct Writer {
    out: Vec<u8>,
    prev4: u32,
    prev6: u128,
}

impl Writer {
    /// A writer whose output starts with `header`.
    pub fn with_header(header: &[u8], capacity: usize) -> Writer {
        let mut out = Vec::with_capacity(header.len() + capacity);
        out.extend_from_slice(header);
        Writer {
            out,
            ..Writer::default()
        }
    }

    pub fn net(&mut self, net: &IpNet) {
        match net {
            IpNet::V4(n) => {
                self.out.push(n.prefix_len());
                let a = u32::from(n.addr());
                put_uvar(&mut self.out, u128::from(a.wrapping_sub(self.prev4)));
                self.prev4 = a;
            }
            IpNet::V6(n) => {
                self.out.push(V6_TAG + n.prefix_len());
                let a = u128::from(n.addr());
                put_uvar(&mut self.out, a.wrapping_sub(self.prev6));
                self.prev6 = a;
            }
        }
    }

    /// A timestamp of the column whose previous value is `*prev`.
    pub fn time(&mut self, value: i64, prev: &mut i64) {
        let d = value.wrapping_sub(*prev);
        *prev = value;
        put_uvar(&mut self.out, u128::from(((d << 1) ^ (d >> 63)) as u64));
    }

    /// An unsigned integer (a count, a key), LEB128.
    pub fn uint(&mut self, value: u64) {
        put_uvar(&mut self.out, u128::from(value));
    }

    /// Raw bytes, preceded by their length.
    pub fn bytes(&mut self, data: &[u8]) {
        self.uint(data.len() as u64);
        self.out.extend_from_slice(data);
    }

    pub fn finish(self) -> Vec<u8> {
        self.out
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }
}

/// Where a [`Reader`] stands (its position and the previous address of each family), to go on
/// later over the same bytes: a reader of records one at a time need not borrow its buffer
/// between records.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cursor {
    at: usize,
    prev4: u32,
    prev6: u128,
}

/// Reads what a [`Writer`] wrote, in the same order of calls.
pub struct Reader<'a> {
    data: &'a [u8],
    at: usize,
    prev4: u32,
    prev6: u128,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader {
            data,
            at: 0,
            prev4: 0,
            prev6: 0,
        }
    }

    /// A reader of `data` going on from `c` (see [`Reader::cursor`]).
    pub fn resume(data: &'a [u8], c: Cursor) -> Reader<'a> {
        Reader {
            data,
            at: c.at,
            prev4: c.prev4,
            prev6: c.prev6,
        }
    }

    /// Where this reader stands.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            at: self.at,
            prev4: self.prev4,
            prev6: self.prev6,
        }
    }

    pub fn is_done(&self) -> bool {
        self.at >= self.data.len()
    }

    pub fn net(&mut self) -> Option<IpNet> {
        let tag = *self.data.get(self.at)?;
        self.at += 1;
        let delta = self.uvar()?;
        if tag <= 32 {
            let a = self.prev4.wrapping_add(u32::try_from(delta).ok()?);
            self.prev4 = a;
            Some(IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), tag).ok()?))
        } else if (V6_TAG..=V6_TAG + 128).contains(&tag) {
            let a = self.prev6.wrapping_add(delta);
            self.prev6 = a;
            Some(IpNet::V6(
                Ipv6Net::new(Ipv6Addr::from(a), tag - V6_TAG).ok()?,
            ))
        } else {
            None
        }
    }

    pub fn time(&mut self, prev: &mut i64) -> Option<i64> {
        let z = u64::try_from(self.uvar()?).ok()?;
        let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
        *prev = prev.wrapping_add(d);
        Some(*prev)
    }

    pub fn uint(&mut self) -> Option<u64> {
        u64::try_from(self.uvar()?).ok()
    }

    /// What [`Writer::bytes`] wrote.
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.uint()?).ok()?;
        let end = self.at.checked_add(len)?;
        let data = self.data.get(self.at..end)?;
        self.at = end;
        Some(data)
    }

    fn uvar(&mut self) -> Option<u128> {
        let mut value = 0u128;
        for shift in (0..128).step_by(7) {
            let b = *self.data.get(self.at)?;
            self.at += 1;
            value |= u128::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
}

fn put_uvar(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_net() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (any::<u32>(), 0u8..=32)
                .prop_map(|(a, l)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), l).unwrap())),
            (any::<u128>(), 0u8..=128)
                .prop_map(|(a, l)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), l).unwrap())),
        ]
    }

    proptest! {
        /// Any list of prefixes and timestamps, sorted or not, comes back as it went in.
        #[test]
        fn round_trip(items in proptest::collection::vec((arb_net(), any::<i64>()), 0..200)) {
            let mut w = Writer::with_header(b"h", 0);
            let mut prev = 0;
            for (n, t) in &items {
                w.net(n);
                w.time(*t, &mut prev);
            }
            let data = w.finish();
            prop_assert_eq!(data[0], b'h');
            let mut r = Reader::new(&data[1..]);
            let mut prev = 0;
            for (n, t) in &items {
                prop_assert_eq!(r.net(), Some(*n));
                prop_assert_eq!(r.time(&mut prev), Some(*t));
            }
            prop_assert!(r.is_done());
        }

        /// Garbage never panics.
        #[test]
        fn garbage_is_refused_or_read(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&data);
            let mut prev = 0;
            while !r.is_done() {
                if r.net().is_none() || r.time(&mut prev).is_none() {
                    break;
                }
            }
        }
    }

    #[test]
    fn sorted_ipv4_with_equal_times_is_small() {
        let mut w = Writer::default();
        let mut prev = 0;
        for i in 0..1000u32 {
            w.net(&IpNet::V4(
                Ipv4Net::new(Ipv4Addr::from(0x2D00_0000 + i * 200), 32).unwrap(),
            ));
            w.time(1_800_000_000, &mut prev);
        }
        // Tag, a two-byte difference and a one-byte time per entry, plus the first time.
        assert!(w.finish().len() <= 4 * 1000 + 8);
    }
}
