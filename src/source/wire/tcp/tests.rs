use super::*;
use proptest::prelude::*;

const CLIENT: [u8; 4] = [198, 51, 100, 9];
const SERVER: [u8; 4] = [192, 0, 2, 1];
const CISN: u32 = 0xffff_fff0; // wraps during the stream
const SISN: u32 = 77;

fn msg(n: u32, body: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:10{n}@pbx SIP/2.0\r\nVia: SIP/2.0/TCP 198.51.100.9;branch=z9hG4bK{n}\r\nCall-ID: c{n}\r\nCSeq: {n} REGISTER\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A reassembler and one client's connection.
struct Conn {
    r: Reassembler,
    sport: u16,
    /// Next client and server sequence numbers.
    c: u32,
    s: u32,
    out: Vec<(IpAddr, Vec<u8>)>,
}

impl Conn {
    fn new(limits: Limits) -> Conn {
        Conn {
            r: Reassembler::new(limits),
            sport: 40000,
            c: CISN.wrapping_add(1),
            s: SISN.wrapping_add(1),
            out: Vec::new(),
        }
    }

    fn seg(&mut self, from_client: bool, seq: u32, ack: u32, flags: u8, data: &[u8], dir: Dir) {
        let (c, s) = (IpAddr::from(CLIENT), IpAddr::from(SERVER));
        let seg = if from_client {
            Segment {
                src: c,
                dst: s,
                sport: self.sport,
                dport: 5060,
                seq,
                ack,
                flags,
                payload: data,
            }
        } else {
            Segment {
                src: s,
                dst: c,
                sport: 5060,
                dport: self.sport,
                seq,
                ack,
                flags,
                payload: data,
            }
        };
        let out = &mut self.out;
        self.r.segment(&seg, dir, 100, &mut |src, _dst, m| {
            out.push((src, m.to_vec()))
        });
    }

    /// The handshake as the server's capture sees it (the SYN-ACK is this host's).
    fn handshake(&mut self) {
        self.seg(true, CISN, 0, SYN, b"", Dir::In);
        self.seg(false, SISN, CISN.wrapping_add(1), SYN | ACK, b"", Dir::Out);
        self.seg(true, self.c, self.s, ACK, b"", Dir::In);
    }

    /// Client data at its next sequence number.
    fn send(&mut self, data: &[u8]) {
        self.seg(true, self.c, self.s, ACK, data, Dir::In);
        self.c = self.c.wrapping_add(data.len() as u32);
    }

    fn messages(&self) -> Vec<Vec<u8>> {
        self.out.iter().map(|m| m.1.clone()).collect()
    }
}

fn live() -> Conn {
    let mut c = Conn::new(Limits::new(Handshake::Required));
    c.handshake();
    c
}

#[test]
fn whole_messages_split_anywhere_come_out_whole() {
    let mut stream = msg(1, "");
    stream.extend(msg(2, "v=0\r\no=- 1 1 IN IP4 x\r\n"));
    let want = vec![msg(1, ""), msg(2, "v=0\r\no=- 1 1 IN IP4 x\r\n")];
    for cut in 0..=stream.len() {
        let mut c = live();
        c.send(&stream[..cut]);
        c.send(&stream[cut..]);
        assert_eq!(c.messages(), want, "cut at {cut}");
        assert!(c.out.iter().all(|m| m.0 == IpAddr::from(CLIENT)));
        assert_eq!(c.r.buffered(), 0);
    }
}

#[test]
fn two_messages_in_one_segment_and_keep_alives_between() {
    let mut c = live();
    let mut data = b"\r\n\r\n".to_vec();
    data.extend(msg(1, "body"));
    data.extend(b"\r\n");
    data.extend(msg(2, ""));
    c.send(&data);
    c.send(b"\r\n\r\n");
    c.send(b"\r\n");
    assert_eq!(c.messages(), vec![msg(1, "body"), msg(2, "")]);
    assert_eq!(c.r.counters.messages, 2);
    assert_eq!(c.r.counters.malformed, 0);
}

#[test]
fn compact_and_missing_content_length() {
    let mut c = live();
    let m1 = b"OPTIONS sip:x SIP/2.0\r\ni: a\r\nl:  3\r\n\r\nabc".to_vec();
    let m2 = b"OPTIONS sip:x SIP/2.0\r\ni: b\r\n\r\n".to_vec();
    let m3 = b"SIP/2.0 200 OK\nl: 0\n\n".to_vec();
    c.send(&[m1.clone(), m2.clone(), m3.clone()].concat());
    assert_eq!(c.messages(), vec![m1, m2, m3]);
}

#[test]
fn retransmissions_and_overlaps_are_read_once() {
    let mut c = live();
    let m = msg(1, "0123456789");
    let start = c.c;
    c.send(&m[..30]);
    // The same segment again, then one overlapping it.
    c.seg(true, start, c.s, ACK, &m[..30], Dir::In);
    c.seg(true, start.wrapping_add(10), c.s, ACK, &m[10..50], Dir::In);
    c.c = start.wrapping_add(50);
    c.send(&m[50..]);
    c.seg(true, start, c.s, ACK, &m, Dir::In);
    assert_eq!(c.messages(), vec![m]);
    assert_eq!(c.r.counters.retransmitted, 2);
}

#[test]
fn out_of_order_segments_are_held_until_the_gap_fills() {
    let mut c = live();
    let m = [msg(1, "x"), msg(2, "yy")].concat();
    let start = c.c;
    let (a, b, d) = (&m[..20], &m[20..70], &m[70..]);
    c.seg(true, start.wrapping_add(70), c.s, ACK, d, Dir::In);
    c.seg(true, start.wrapping_add(20), c.s, ACK, b, Dir::In);
    // A held segment retransmitted is not held twice.
    c.seg(true, start.wrapping_add(20), c.s, ACK, b, Dir::In);
    assert_eq!(c.r.counters.retransmitted, 1);
    assert!(c.out.is_empty());
    c.seg(true, start, c.s, ACK, a, Dir::In);
    assert_eq!(c.messages(), vec![msg(1, "x"), msg(2, "yy")]);
    assert_eq!(c.r.counters.out_of_order, 2);
    assert_eq!(c.r.buffered(), 0);
}

#[test]
fn a_gap_that_never_fills_drops_the_stream() {
    let mut c = live();
    let start = c.c;
    for i in 0..=MAX_HELD as u32 {
        c.seg(
            true,
            start.wrapping_add(100 + 10 * i),
            c.s,
            ACK,
            b"0123456789",
            Dir::In,
        );
    }
    assert_eq!(c.r.counters.gaps, 1);
    assert_eq!(c.r.buffered(), 0);
    // Dropped: even the missing bytes now read nothing.
    c.send(&msg(1, ""));
    assert!(c.out.is_empty());
}

#[test]
fn oversized_and_garbage_streams_are_dropped_as_malformed() {
    let limits = Limits {
        max_buffer: 4096,
        ..Limits::new(Handshake::Required)
    };
    // A header block that never ends.
    let mut c = Conn::new(limits);
    c.handshake();
    c.send(b"INVITE sip:x SIP/2.0\r\n");
    for _ in 0..500 {
        c.send(b"X-Pad: 0123456789\r\n");
    }
    assert_eq!(c.r.counters.malformed, 1);
    assert_eq!(c.r.buffered(), 0);
    // A body too large.
    let mut c = Conn::new(limits);
    c.handshake();
    c.send(b"INVITE sip:x SIP/2.0\r\nContent-Length: 999999\r\n\r\n");
    assert_eq!(c.r.counters.malformed, 1);
    // Bytes that cannot start a message (TLS on the SIP port).
    let mut c = Conn::new(limits);
    c.handshake();
    c.send(&[0x16, 3, 1, 0, 200]);
    c.send(&msg(1, ""));
    assert_eq!(c.r.counters.malformed, 1);
    assert!(c.out.is_empty());
    // HTTP on the port (a WebSocket upgrade): framed alike, but not SIP.
    let mut c = Conn::new(limits);
    c.handshake();
    c.send(b"GET /ws HTTP/1.1\r\nHost: pbx\r\nUpgrade: websocket\r\n\r\n");
    c.send(&msg(1, ""));
    assert_eq!(c.r.counters.malformed, 1);
    assert!(c.out.is_empty());
    // Conflicting lengths.
    let mut c = Conn::new(limits);
    c.handshake();
    c.send(b"INVITE sip:x SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\nab");
    assert_eq!(c.r.counters.malformed, 1);
    assert!(c.out.is_empty());
}

#[test]
fn a_message_trickled_byte_by_byte_is_framed() {
    let mut c = live();
    let m = msg(7, "hello");
    for b in &m {
        c.send(std::slice::from_ref(b));
    }
    assert_eq!(c.messages(), vec![m]);
}

#[test]
fn live_data_without_a_handshake_this_host_answered_is_never_read() {
    // No handshake at all (a forged source).
    let mut c = Conn::new(Limits::new(Handshake::Required));
    c.send(&msg(1, ""));
    assert!(c.out.is_empty());
    assert_eq!(c.r.counters.unverified, 1);
    assert_eq!(c.r.streams(), 0);
    // A forged SYN, the host's real SYN-ACK (to the forged source), and a forged ACK that
    // guesses the ISN wrong.
    let mut c = Conn::new(Limits::new(Handshake::Required));
    c.seg(true, CISN, 0, SYN, b"", Dir::In);
    c.seg(false, SISN, CISN.wrapping_add(1), SYN | ACK, b"", Dir::Out);
    c.seg(true, c.c, 12345, ACK, &msg(1, ""), Dir::In);
    assert!(c.out.is_empty());
    assert_eq!(c.r.counters.handshakes, 0);
    // All three forged, the SYN-ACK too (it comes in: not this host's ISN).
    let mut c = Conn::new(Limits::new(Handshake::Required));
    c.seg(true, CISN, 0, SYN, b"", Dir::In);
    c.seg(false, SISN, CISN.wrapping_add(1), SYN | ACK, b"", Dir::In);
    c.send(b"");
    c.send(&msg(1, ""));
    assert!(c.out.is_empty());
    assert_eq!(c.r.counters.handshakes, 0);
    // The same with the SYN-ACK sent by this host: read.
    let mut c = live();
    c.send(&msg(1, ""));
    assert_eq!(c.messages(), vec![msg(1, "")]);
    assert_eq!(c.r.counters.handshakes, 1);
}

#[test]
fn an_outbound_connection_is_verified_by_the_answer_to_this_hosts_syn() {
    let mut c = Conn::new(Limits::new(Handshake::Required));
    // This host (CLIENT here) connects out; the far side's SYN-ACK acknowledges our ISN.
    c.seg(true, CISN, 0, SYN, b"", Dir::Out);
    c.seg(false, SISN, CISN.wrapping_add(1), SYN | ACK, b"", Dir::In);
    let s = c.s;
    c.seg(false, s, c.c, ACK, &msg(3, ""), Dir::In);
    assert_eq!(c.out, vec![(IpAddr::from(SERVER), msg(3, ""))]);
}

#[test]
fn offline_streams_are_read_mid_stream_from_the_first_message_start() {
    let mut c = Conn::new(Limits::new(Handshake::Optional));
    // The capture starts inside a message: its tail is skipped.
    c.send(b"o=- 1 1 IN IP4 x\r\n");
    c.send(&msg(1, ""));
    c.send(&msg(2, "")[..10]);
    c.send(&msg(2, "")[10..]);
    assert_eq!(c.messages(), vec![msg(1, ""), msg(2, "")]);
    assert_eq!(c.r.counters.midstream, 1);
    assert_eq!(c.r.counters.handshakes, 0);
    // With the handshake captured, it is counted as such.
    let mut c = Conn::new(Limits::new(Handshake::Optional));
    c.seg(true, CISN, 0, SYN, b"", Dir::Unknown);
    c.seg(
        false,
        SISN,
        CISN.wrapping_add(1),
        SYN | ACK,
        b"",
        Dir::Unknown,
    );
    c.send(&msg(1, ""));
    assert_eq!(c.messages(), vec![msg(1, "")]);
    assert_eq!((c.r.counters.handshakes, c.r.counters.midstream), (1, 0));
}

#[test]
fn fin_on_both_sides_and_rst_close_the_stream() {
    let mut c = live();
    c.send(&msg(1, ""));
    c.seg(true, c.c, c.s, ACK | FIN, b"", Dir::In);
    let (cc, s) = (c.c.wrapping_add(1), c.s);
    c.seg(false, s, cc, ACK | FIN, b"", Dir::Out);
    assert_eq!(c.r.streams(), 0);
    let mut c = live();
    c.send(&msg(1, "")[..20]);
    // An RST far outside the window is ignored; one at the next byte closes.
    c.seg(true, c.c.wrapping_add(1 << 30), 0, RST, b"", Dir::In);
    assert_eq!(c.r.streams(), 1);
    c.seg(true, c.c, 0, RST, b"", Dir::In);
    assert_eq!((c.r.streams(), c.r.buffered()), (0, 0));
}

#[test]
fn a_syn_flood_from_forged_sources_stays_within_the_cap_and_evicts_no_open_stream() {
    let limits = Limits {
        max_streams: 256,
        ..Limits::new(Handshake::Required)
    };
    let mut c = Conn::new(limits);
    c.handshake();
    c.send(&msg(1, "")[..30]);
    let mut seen = 0usize;
    for i in 0..200_000u32 {
        let seg = Segment {
            src: IpAddr::from(i.to_be_bytes()),
            dst: IpAddr::from(SERVER),
            sport: (i % 60000) as u16 + 1024,
            dport: 5060,
            seq: i.wrapping_mul(2_654_435_761),
            ack: 0,
            flags: if i % 3 == 0 { ACK } else { SYN },
            payload: if i % 3 == 0 {
                b"INVITE sip:x SIP/2.0\r\n"
            } else {
                b""
            },
        };
        c.r.segment(&seg, Dir::In, 100, &mut |_, _, _| seen += 1);
        assert!(c.r.streams() <= 256);
        assert!(c.pending_len() <= 2 * 256 + 64 + 1);
    }
    assert_eq!(seen, 0);
    assert!(c.r.counters.evicted > 100_000, "{:?}", c.r.counters);
    // The real client's stream is still there and still read.
    c.c = c.c.wrapping_sub(30);
    let m = msg(1, "");
    c.c = c.c.wrapping_add(30);
    c.send(&m[30..]);
    assert_eq!(c.messages(), vec![m]);
}

#[test]
fn fake_streams_offline_stay_within_the_stream_and_memory_caps() {
    let limits = Limits {
        max_streams: 128,
        max_buffer: 4096,
        max_memory: 64 * 1024,
        idle: 600,
        handshake: Handshake::Optional,
    };
    let mut r = Reassembler::new(limits);
    let part = b"INVITE sip:x SIP/2.0\r\nX: 0123456789012345678901234567890123456789\r\n";
    for i in 0..50_000u32 {
        let seg = Segment {
            src: IpAddr::from(i.to_be_bytes()),
            dst: IpAddr::from(SERVER),
            sport: 5060,
            dport: 5060,
            seq: 1,
            ack: 0,
            flags: ACK,
            payload: part,
        };
        r.segment(&seg, Dir::Unknown, 100, &mut |_, _, _| {});
        assert!(r.streams() <= 128);
        assert!(r.buffered() <= 64 * 1024);
    }
    assert!(r.counters.evicted > 40_000);
}

#[test]
fn idle_streams_expire() {
    let mut c = live();
    c.send(&msg(1, "")[..20]);
    c.r.expire(100 + DEFAULT_IDLE + 1);
    assert_eq!((c.r.streams(), c.r.buffered()), (0, 0));
    assert_eq!(c.r.counters.expired, 1);
}

impl Conn {
    fn pending_len(&self) -> usize {
        self.r.pending.len()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any split of a stream of messages into segments, any order of delivery within the
    /// holding bound, and any retransmissions yield the messages whole, in order.
    #[test]
    fn any_segmentation_gives_the_same_messages(
        bodies in proptest::collection::vec("[a-z]{0,40}", 1..5),
        cuts in proptest::collection::vec(0usize..400, 0..12),
        swaps in proptest::collection::vec(0usize..16, 0..4),
        dups in proptest::collection::vec(0usize..16, 0..4),
    ) {
        let want: Vec<Vec<u8>> = bodies.iter().enumerate().map(|(i, b)| msg(i as u32, b)).collect();
        let stream = want.concat();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.push(0);
        cuts.push(stream.len());
        cuts.sort_unstable();
        cuts.dedup();
        let mut segs: Vec<(usize, usize)> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
        for s in swaps {
            if segs.len() > 1 {
                let i = s % (segs.len() - 1);
                segs.swap(i, i + 1);
            }
        }
        for d in dups {
            if !segs.is_empty() {
                let i = d % segs.len();
                segs.insert(i, segs[i]);
            }
        }
        let mut c = live();
        let start = c.c;
        for (a, b) in segs {
            let s = c.s;
            c.seg(true, start.wrapping_add(a as u32), s, ACK, &stream[a..b], Dir::In);
        }
        prop_assert_eq!(c.messages(), want);
        prop_assert_eq!(c.r.buffered(), 0);
    }

    /// Arbitrary bytes on a stream never panic, and never hold more than the bounds.
    #[test]
    fn arbitrary_segments_stay_bounded(
        segs in proptest::collection::vec((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..300), any::<u8>()), 0..40),
    ) {
        let mut c = Conn::new(Limits { max_buffer: 1024, ..Limits::new(Handshake::Optional) });
        let start = c.c;
        for (off, data, flags) in segs {
            let s = c.s;
            c.seg(off % 2 == 0, start.wrapping_add(u32::from(off)), s, flags, &data, Dir::Unknown);
            prop_assert!(c.r.buffered() <= 4 * 1024 + 2 * 300);
        }
    }
}
