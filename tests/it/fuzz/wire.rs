//! The wire parsers under generated input (issue 16): SIP messages, HEP v3 datagrams,
//! pcap/pcapng files and TCP streams (reassembly and framing), each at least a million inputs
//! from a fixed seed.
//!
//! Invariants besides "never panics": every field the SIP parser returns is a slice of the
//! message and a Call-ID holds no blank or control byte; a HEP datagram round-trips, and a
//! mutated one either is refused or yields a payload inside it; a capture reader ends on any
//! bytes, with every payload inside its record.

use super::mutate::{mutate, Gen};
use super::{fuzz, within, Seen};
use sipban::source::wire::{hep, pcap, sip};
use std::net::IpAddr;

const SIP_SEEDS: &[&[u8]] = &[
    b"INVITE sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.9:5061;branch=z9hG4bK-3373549542;rport\r\nMax-Forwards: 70\r\nTo: \"100\"<sip:100@192.0.2.1>\r\nFrom: \"100\"<sip:100@192.0.2.1>;tag=3130300131323334\r\nUser-Agent: friendly-scanner\r\nCall-ID: 2811398231\r\nContact: sip:100@198.51.100.9:5061\r\nCSeq: 1 INVITE\r\nAccept: application/sdp\r\nContent-Length: 0\r\n\r\n",
    b"OPTIONS sip:100@1.1.1.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bK-1;rport\r\nFrom: \"sipvicious\"<sip:100@1.1.1.1>;tag=6336330a\r\nTo: \"sipvicious\"<sip:100@1.1.1.1>\r\nCall-ID: 1234567890123456789012345\r\nCSeq: 1 OPTIONS\r\nUser-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n",
    b"REGISTER sip:pbx.example SIP/2.0\r\nv: SIP/2.0/TLS 10.0.0.5:5061;branch=z9hG4bKabc\r\nf: <sip:201@pbx.example>;tag=x1\r\nt: <sip:201@pbx.example>\r\ni: f81d4fae-7dec@10.0.0.5\r\nCSeq: 2 REGISTER\r\nAuthorization: Digest username=\"201\", realm=\"asterisk\", nonce=\"n\", uri=\"sip:pbx\", response=\"00\"\r\nm: <sip:201@10.0.0.5:5061;transport=tls>\r\nContent-Length: 0\r\n\r\n",
    b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 198.51.100.9:5061;branch=z9hG4bK-3373549542;rport=5061\r\nFrom: \"100\"<sip:100@192.0.2.1>;tag=3130300131323334\r\nTo: \"100\"<sip:100@192.0.2.1>;tag=as5f2c\r\nCall-ID: 2811398231\r\nCSeq: 1  ACK\r\nWWW-Authenticate: Digest realm=\"asterisk\", nonce=\"1\"\r\nContent-Length: 0\r\n\r\n",
];

#[test]
fn sip_messages() {
    let others: Vec<Vec<u8>> = SIP_SEEDS.iter().map(|s| s.to_vec()).collect();
    let seen = fuzz("sip_messages", |g: &mut Gen, parts, seen: &mut Seen| {
        let mut m = g.pick(&others).clone();
        if g.one_in(50) {
            m = {
                let k = g.range(0, 400);
                g.bytes(k)
            };
        } else {
            mutate(g, &mut m, &others, 20, true);
        }
        parts.push(m.clone());
        match sip::parse(&m) {
            Ok(msg) => {
                seen.add("parsed", 1);
                for f in [
                    msg.call_id,
                    msg.branch,
                    msg.user_agent,
                    msg.contact_user,
                    msg.from.user,
                    msg.from.tag,
                    msg.to.user,
                    msg.to.tag,
                    msg.cseq.map(|c| c.1),
                    msg.method(),
                ]
                .into_iter()
                .flatten()
                {
                    assert!(within(f, &m), "a field outside the message");
                }
                if let Some(c) = msg.call_id {
                    assert!(c.iter().all(|&b| b > b' ' && b != 0x7f));
                    seen.add("call-id", 1);
                }
            }
            Err(_) => seen.add("malformed", 1),
        }
        1
    });
    if let Some(s) = seen {
        s.at_least("parsed", 100_000);
        s.at_least("malformed", 100_000);
    }
}

fn addr(g: &mut Gen) -> IpAddr {
    if g.one_in(3) {
        IpAddr::from(
            g.u64()
                .to_be_bytes()
                .repeat(2)
                .try_into()
                .unwrap_or([0u8; 16]),
        )
    } else {
        IpAddr::from((g.u64() as u32).to_be_bytes())
    }
}

#[test]
fn hep_datagrams() {
    let seen = fuzz("hep_datagrams", |g: &mut Gen, parts, seen: &mut Seen| {
        let payload = g.pick(SIP_SEEDS).to_vec();
        let (src, dst) = (addr(g), addr(g));
        let key = {
            let k = g.below(4);
            g.bytes(k)
        };
        let h = hep::Hep {
            src,
            dst: if src.is_ipv4() == dst.is_ipv4() {
                dst
            } else {
                src
            },
            sport: g.u64() as u16,
            dport: g.u64() as u16,
            proto: *g.pick(&[17, 6]),
            secs: g.u64() as u32,
            payload_type: hep::SIP,
            capture_id: g.one_in(2).then(|| g.u64() as u32),
            auth_key: (!key.is_empty()).then_some(&key[..]),
            payload: &payload,
        };
        let mut d = hep::encode(&h);
        if g.one_in(4) {
            assert_eq!(hep::decode(&d), Ok(h), "round trip");
            seen.add("round-trip", 1);
        } else {
            // Flip, cut or splice bytes, mostly in the chunk headers.
            for _ in 0..g.range(1, 4) {
                match g.below(3) {
                    0 if !d.is_empty() => {
                        let at = g.below(d.len().min(60));
                        d[at] = g.byte();
                    }
                    1 => d.truncate(g.below(d.len() + 1)),
                    _ => {
                        let at = g.below(d.len() + 1);
                        let b = {
                            let k = g.range(1, 8);
                            g.bytes(k)
                        };
                        d.splice(at..at, b);
                    }
                }
            }
        }
        parts.push(d.clone());
        match hep::decode(&d) {
            Ok(x) => {
                assert!(within(x.payload, &d));
                if let Some(k) = x.auth_key {
                    assert!(within(k, &d));
                }
                seen.add("decoded", 1);
            }
            Err(_) => seen.add("refused", 1),
        }
        1
    });
    if let Some(s) = seen {
        s.at_least("decoded", 200_000);
        s.at_least("refused", 100_000);
    }
}

#[test]
fn pcap_files() {
    let seen = fuzz("pcap_files", |g: &mut Gen, parts, seen: &mut Seen| {
        let n = g.range(1, 4);
        let packets: Vec<_> = (0..n)
            .map(|_| {
                let (a, b) = (addr(g), addr(g));
                (
                    g.u64() as u32 as i64,
                    a,
                    g.u64() as u16,
                    b,
                    5060,
                    g.pick(SIP_SEEDS)[..g.range(0, 60)].to_vec(),
                )
            })
            .collect();
        let mut f = pcap::write_udp_pcap(&packets);
        for _ in 0..g.range(0, 4) {
            match g.below(3) {
                0 if !f.is_empty() => {
                    let at = g.below(f.len());
                    f[at] = g.byte();
                }
                1 => f.truncate(g.below(f.len() + 1)),
                _ => {
                    let at = g.below(f.len() + 1);
                    let b = {
                        let k = g.range(1, 6);
                        g.bytes(k)
                    };
                    f.splice(at..at, b);
                }
            }
        }
        parts.push(f.clone());
        let Ok(mut r) = pcap::Reader::new(&f[..]) else {
            seen.add("bad header", 1);
            return n as u64;
        };
        let mut records = 0;
        loop {
            match r.next_packet() {
                Ok(Some(Ok(p))) => {
                    assert!(p.payload.len() <= f.len());
                    seen.add("packet", 1);
                }
                Ok(Some(Err(_))) => seen.add("skipped", 1),
                Ok(None) => break,
                Err(_) => {
                    seen.add("error", 1);
                    break;
                }
            }
            records += 1;
            assert!(records <= f.len(), "the reader does not end");
        }
        n as u64
    });
    if let Some(s) = seen {
        s.at_least("packet", 300_000);
        s.at_least("error", 10_000);
    }
}

/// TCP reassembly and SIP framing: a stream of (mostly mutated) SIP messages cut into
/// segments, delivered in order or shuffled, duplicated, with stray flags and sequence
/// numbers. Every message handed out is a piece of the stream, memory stays within the
/// bounds, and a clean stream delivered in any order within the holding bound gives back
/// its messages exactly. Each segment counts as one input.
#[test]
fn tcp_streams() {
    use sipban::source::wire::tcp::{self, Dir, Handshake, Limits, Reassembler, Segment};
    let seeds: Vec<Vec<u8>> = SIP_SEEDS.iter().map(|s| s.to_vec()).collect();
    let limits = Limits {
        max_streams: 4,
        max_buffer: 2048,
        max_memory: 8192,
        idle: 60,
        handshake: Handshake::Optional,
    };
    let seen = fuzz("tcp_streams", |g: &mut Gen, parts, seen: &mut Seen| {
        let clean = g.one_in(3);
        let n = g.range(1, 4);
        let msgs: Vec<Vec<u8>> = (0..n)
            .map(|_| {
                let mut m = g.pick(&seeds).clone();
                if !clean {
                    mutate(g, &mut m, &seeds, 6, true);
                }
                m
            })
            .collect();
        let stream = msgs.concat();
        parts.push(stream.clone());
        let mut cuts: Vec<usize> = (0..g.range(0, 8))
            .map(|_| g.below(stream.len() + 1))
            .collect();
        cuts.extend([0, stream.len()]);
        cuts.sort_unstable();
        cuts.dedup();
        let mut segs: Vec<(usize, usize)> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
        if g.one_in(2) && segs.len() > 1 {
            let i = g.below(segs.len() - 1);
            segs.swap(i, i + 1);
        }
        if g.one_in(3) && !segs.is_empty() {
            let i = g.below(segs.len());
            segs.insert(i, segs[i]);
        }
        let mut r = Reassembler::new(limits);
        let (src, dst) = (addr(g), addr(g));
        let isn = g.u64() as u32;
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut feed = |r: &mut Reassembler, seq: u32, flags: u8, data: &[u8]| {
            let s = Segment {
                src,
                dst,
                sport: 40000,
                dport: 5060,
                seq,
                ack: 1,
                flags,
                payload: data,
            };
            r.segment(&s, Dir::Unknown, 100, &mut |_, _, m| out.push(m.to_vec()));
        };
        feed(&mut r, isn, tcp::SYN, b"");
        let synack = Segment {
            src: dst,
            dst: src,
            sport: 5060,
            dport: 40000,
            seq: 9,
            ack: isn.wrapping_add(1),
            flags: tcp::SYN | tcp::ACK,
            payload: b"",
        };
        r.segment(&synack, Dir::Unknown, 100, &mut |_, _, _| {});
        // Sequence numbers that lie place bytes where they say: then the messages need not
        // be pieces of the stream as written.
        let mut lied = false;
        for &(a, b) in &segs {
            let (mut seq, mut flags) = (isn.wrapping_add(1).wrapping_add(a as u32), tcp::ACK);
            if !clean && g.one_in(8) {
                seq = seq.wrapping_add(g.u64() as u32 % 5000);
                lied = true;
            }
            if !clean && g.one_in(10) {
                flags = g.byte();
                lied |= flags & tcp::SYN != 0;
            }
            feed(&mut r, seq, flags, &stream[a..b]);
            assert!(r.buffered() <= 8192 + 2048, "over the memory bound");
            assert!(r.streams() <= 4);
        }
        for m in out.iter().filter(|_| !lied) {
            assert!(
                memchr::memmem::find(&stream, m).is_some(),
                "a message that is not in the stream"
            );
            seen.add("checked", 1);
        }
        if clean {
            assert_eq!(out, msgs, "a clean stream gives back its messages");
            seen.add("clean", 1);
        }
        seen.add("framed", out.len() as u64);
        seen.add("dropped", r.counters.malformed + r.counters.gaps);
        segs.len() as u64 + 2
    });
    if let Some(s) = seen {
        s.at_least("framed", 100_000);
        s.at_least("dropped", 1_000);
        s.at_least("checked", 100_000);
    }
}
