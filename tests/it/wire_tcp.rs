//! SIP over TCP on the wire (issue 16): streams reassembled per connection, bounded, the same
//! way offline (`sipban scan --pcap`, classic pcap and pcapng) and live (the daemon's capture).
//!
//! - A capture written here byte for byte: REGISTERs split across segments, two in one
//!   segment, retransmitted, out of order, keep-alives between; a second stream that began
//!   before the capture (read, and said so).
//! - Debian's `kamailio` listening on TCP, a scanner over TCP (messages split across writes),
//!   `tcpdump` on the server's side: `scan --pcap` names it (the capture is kept as
//!   `tests/data/wire/tcp-kamailio.pcap`, read again without root).
//! - The daemon's live capture bans the TCP scanner, and never a source that forges TCP
//!   segments without the handshake (raw packets with a spoofed source, even a forged
//!   SYN-ACK).

use crate::common::netns::{require_program, run_in, NetNs};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const PBX: &str = "192.0.2.1";
const SCANNER: &str = "198.51.100.20";
const LATE: &str = "198.51.100.21";
/// 2024-05-02T10:00:00Z
const T0: i64 = 1_714_644_000;
const DESK_PHONE: &str = "Yealink SIP-T46S 66.86.0.15";

fn v4(s: &str) -> Ipv4Addr {
    s.parse().expect("address")
}

/// The Internet checksum of `data`, folded into `sum`.
fn checksum(data: &[u8], mut sum: u32) -> u16 {
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 packet holding one TCP segment, checksums correct.
#[allow(clippy::too_many_arguments)]
fn ipv4_tcp(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut tcp = Vec::with_capacity(20 + payload.len());
    tcp.extend_from_slice(&sport.to_be_bytes());
    tcp.extend_from_slice(&dport.to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&ack.to_be_bytes());
    tcp.extend_from_slice(&[5 << 4, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
    tcp.extend_from_slice(payload);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(&tcp);
    let sum = checksum(&pseudo, 0);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let sum = checksum(&ip, 0);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(&tcp);
    ip
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// IP packets with their capture times, written as classic pcap or pcapng (Ethernet).
struct Capture(Vec<(i64, Vec<u8>)>);

impl Capture {
    fn frame(ip: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        f.extend_from_slice(ip);
        f
    }

    fn classic(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        out.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&65_535u32.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        for (t, ip) in &self.0 {
            let f = Self::frame(ip);
            out.extend_from_slice(&(*t as u32).to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&(f.len() as u32).to_le_bytes());
            out.extend_from_slice(&(f.len() as u32).to_le_bytes());
            out.extend_from_slice(&f);
        }
        out
    }

    fn ng(&self) -> Vec<u8> {
        fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
            let len = (12 + body.len()) as u32;
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(&len.to_le_bytes());
        }
        let mut out = Vec::new();
        let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
        shb.extend_from_slice(&[1, 0, 0, 0]);
        shb.extend_from_slice(&u64::MAX.to_le_bytes());
        block(&mut out, 0x0A0D_0D0A, &shb);
        block(&mut out, 1, &[1, 0, 0, 0, 0, 0, 0, 0]);
        for (t, ip) in &self.0 {
            let f = Self::frame(ip);
            let ts = (*t as u64) * 1_000_000;
            let mut epb = 0u32.to_le_bytes().to_vec();
            epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
            epb.extend_from_slice(&(ts as u32).to_le_bytes());
            epb.extend_from_slice(&(f.len() as u32).to_le_bytes());
            epb.extend_from_slice(&(f.len() as u32).to_le_bytes());
            epb.extend_from_slice(&f);
            while !epb.len().is_multiple_of(4) {
                epb.push(0);
            }
            block(&mut out, 6, &epb);
        }
        out
    }
}

fn register(server: &str, ext: u32, ua: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:{server} SIP/2.0\r\nVia: SIP/2.0/TCP 10.9.9.9:40000;branch=z9hG4bKtcp{ext}\r\n\
Max-Forwards: 70\r\nFrom: <sip:{ext}@{server}>;tag=t{ext}\r\nTo: <sip:{ext}@{server}>\r\n\
Call-ID: tcp-{ext}@10.9.9.9\r\nCSeq: 1 REGISTER\r\nContact: <sip:{ext}@10.9.9.9:40000;transport=tcp>\r\n\
User-Agent: {ua}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn not_found(ext: u32) -> Vec<u8> {
    format!(
        "SIP/2.0 404 Not Found\r\nVia: SIP/2.0/TCP 10.9.9.9:40000;branch=z9hG4bKtcp{ext}\r\n\
From: <sip:{ext}@{PBX}>;tag=t{ext}\r\nTo: <sip:{ext}@{PBX}>;tag=srv\r\nCall-ID: tcp-{ext}@10.9.9.9\r\n\
CSeq: 1 REGISTER\r\nServer: Asterisk PBX 20.6.0\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// One TCP conversation being written into a capture.
struct Talk<'a> {
    cap: &'a mut Capture,
    client: Ipv4Addr,
    sport: u16,
    c: u32,
    s: u32,
    t: i64,
}

impl Talk<'_> {
    fn client_at(&mut self, seq: u32, flags: u8, data: &[u8]) {
        let ip = ipv4_tcp(
            self.client,
            self.sport,
            v4(PBX),
            5060,
            seq,
            self.s,
            flags,
            data,
        );
        self.cap.0.push((self.t, ip));
    }

    /// Client data at its next sequence number.
    fn client(&mut self, data: &[u8]) {
        self.client_at(self.c, ACK | PSH, data);
        self.c = self.c.wrapping_add(data.len() as u32);
    }

    fn server(&mut self, data: &[u8]) {
        let ip = ipv4_tcp(
            v4(PBX),
            5060,
            self.client,
            self.sport,
            self.s,
            self.c,
            ACK | PSH,
            data,
        );
        self.cap.0.push((self.t, ip));
        self.s = self.s.wrapping_add(data.len() as u32);
        self.t += 1;
    }
}

/// The scanner's stream (with its handshake), every way a stream can cut its messages, and a
/// stream whose start the capture missed.
fn tcp_capture() -> Capture {
    let mut cap = Capture(Vec::new());
    let (c0, s0) = (0xffff_ff00u32, 7_000u32);
    let mut k = Talk {
        cap: &mut cap,
        client: v4(SCANNER),
        sport: 40_000,
        c: c0,
        s: s0,
        t: T0,
    };
    k.client_at(c0, SYN, b"");
    let synack = ipv4_tcp(
        v4(PBX),
        5060,
        v4(SCANNER),
        40_000,
        s0,
        c0 + 1,
        SYN | ACK,
        b"",
    );
    k.cap.0.push((T0, synack));
    (k.c, k.s) = (c0 + 1, s0 + 1);
    k.client_at(k.c, ACK, b"");
    let r = |ext| register(PBX, ext, DESK_PHONE);
    // Split inside the Call-ID header (the sequence numbers wrap here too).
    let m = r(200);
    k.client(&m[..150]);
    k.client(&m[150..]);
    k.server(&not_found(200));
    // Three pieces, the last before the middle (out of order).
    let m = r(201);
    let start = k.c;
    k.client_at(start, ACK | PSH, &m[..40]);
    k.client_at(start.wrapping_add(120), ACK | PSH, &m[120..]);
    k.client_at(start.wrapping_add(40), ACK | PSH, &m[40..120]);
    k.c = start.wrapping_add(m.len() as u32);
    k.server(&not_found(201));
    // Two in one segment, and both answers in one.
    k.client(&[r(202), r(203)].concat());
    k.server(&[not_found(202), not_found(203)].concat());
    // Retransmitted whole, then again overlapping.
    let m = r(204);
    let start = k.c;
    k.client(&m);
    k.client_at(start, ACK | PSH, &m);
    k.client_at(start.wrapping_add(10), ACK | PSH, &m[10..]);
    k.server(&not_found(204));
    // One byte, then the rest; keep-alives between messages.
    let m = r(205);
    k.client(&m[..1]);
    k.client(&m[1..]);
    k.server(&not_found(205));
    k.client(b"\r\n\r\n");
    k.client(&r(206));
    k.server(&not_found(206));
    k.client_at(k.c, ACK | FIN, b"");
    // A phone whose connection opened before the capture started: the capture begins in the
    // middle of a message body, then an OPTIONS and its answer.
    let mut late = Talk {
        cap: &mut cap,
        client: v4(LATE),
        sport: 41_000,
        c: 90_000,
        s: 30_000,
        t: T0 + 20,
    };
    late.client(b"a=rtpmap:0 PCMU/8000\r\n");
    let opt = String::from_utf8(register(PBX, 100, DESK_PHONE))
        .unwrap()
        .replace("REGISTER", "OPTIONS");
    late.client(opt.as_bytes());
    late.server(
        String::from_utf8(not_found(100))
            .unwrap()
            .replace("404 Not Found", "200 OK")
            .replace("REGISTER", "OPTIONS")
            .as_bytes(),
    );
    cap
}

fn scan_json(file: &Path) -> (serde_json::Value, String) {
    let o = Command::new(crate::common::run::bin())
        .args(["scan", "--json", "--pcap"])
        .arg(file)
        .output()
        .expect("run sipban");
    let text = crate::common::run::text(&o);
    assert!(o.status.success(), "{text}");
    (serde_json::from_slice(&o.stdout).expect("json"), text)
}

#[test]
fn scan_reassembles_sip_over_tcp_in_pcap_and_pcapng() {
    let cap = tcp_capture();
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [("tcp.pcap", cap.classic()), ("tcp.pcapng", cap.ng())] {
        let file = dir.path().join(name);
        std::fs::write(&file, bytes).unwrap();
        let (r, text) = scan_json(&file);
        // 7 REGISTERs and 7 answers, the OPTIONS and its answer: each whole, once.
        assert_eq!(r["carriers"]["tcp"], 16, "{name}: {text}");
        assert_eq!(r["counters"]["malformed"], 0, "{name}: {text}");
        let t = &r["tcp"];
        assert_eq!(t["messages"], 16, "{name}: {text}");
        assert_eq!(t["handshakes"], 1, "{name}: {text}");
        assert_eq!(t["midstream"], 1, "{name}: {text}");
        assert_eq!(t["retransmitted"], 2, "{name}: {text}");
        assert_eq!(t["out_of_order"], 1, "{name}: {text}");
        let bans = r["bans"].as_array().expect("bans");
        assert_eq!(bans.len(), 1, "{name}: {text}");
        assert_eq!(bans[0]["ip"], SCANNER, "{name}: {text}");
        let clients = r["clients"].as_array().expect("clients");
        let scanner = clients
            .iter()
            .find(|c| c["ip"] == SCANNER)
            .expect("scanner");
        assert_eq!(scanner["messages"], 7, "{name}: {text}");
        assert!(clients.iter().any(|c| c["ip"] == LATE), "{name}: {text}");
    }
    // The text report says which streams were taken on trust.
    let o = Command::new(crate::common::run::bin())
        .args(["scan", "--pcap"])
        .arg(dir.path().join("tcp.pcap"))
        .output()
        .unwrap();
    let text = crate::common::run::text(&o);
    assert!(
        text.contains("1 streams with their handshake, 1 picked up mid-stream"),
        "{text}"
    );
    assert!(text.contains("no handshake seen"), "{text}");
}

/// A SIP scanner over TCP: REGISTERs for extensions that do not exist (a desk phone's
/// User-Agent: caught by behaviour), each written in two pieces cut inside a header, the last
/// two in one write; every answer read before the next.
fn tcp_scanner(server: &'static str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match TcpStream::connect((server, 5060)) {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "kamailio on tcp: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let read_answers = |s: &mut TcpStream, n: usize| {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.windows(4).filter(|w| w == b"\r\n\r\n").count() < n {
            let k = s.read(&mut buf).expect("kamailio answers");
            assert!(k > 0, "kamailio closed the connection");
            got.extend_from_slice(&buf[..k]);
        }
        assert!(
            got.starts_with(b"SIP/2.0 404"),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
    };
    for ext in 300..308 {
        let m = register(server, ext, DESK_PHONE);
        let cut = m.windows(7).position(|w| w == b"Call-ID").unwrap() + 3;
        s.write_all(&m[..cut]).unwrap();
        s.write_all(&m[cut..]).unwrap();
        read_answers(&mut s, 1);
    }
    let two = [
        register(server, 308, DESK_PHONE),
        register(server, 309, DESK_PHONE),
    ]
    .concat();
    s.write_all(&two).unwrap();
    read_answers(&mut s, 2);
}

/// TCP segments with data in the capture `file` (so far).
fn data_segments(file: &Path) -> usize {
    let bytes = std::fs::read(file).unwrap_or_default();
    let Ok(mut r) = sipban::source::wire::pcap::Reader::new(&bytes[..]) else {
        return 0;
    };
    let mut n = 0;
    while let Ok(Some(p)) = r.next_packet() {
        n += usize::from(p.is_ok_and(|p| !p.payload.is_empty()));
    }
    n
}

const KAMAILIO_TCP: &str = "listen=tcp:10.77.0.1:5060\n";

fn check_kamailio_capture(file: &Path) {
    use crate::wire_tools::{ATTACKER, SERVER};
    let (r, text) = scan_json(file);
    let bans = r["bans"].as_array().expect("bans");
    assert_eq!(bans.len(), 1, "{text}");
    assert_eq!(bans[0]["ip"], ATTACKER, "{text}");
    assert!(r["tcp"]["handshakes"].as_u64() >= Some(1), "{text}");
    assert_eq!(r["tcp"]["malformed"], 0, "{text}");
    // Ten REGISTERs and ten answers, each read whole and once (the two written together, and
    // kamailio's answers however it wrote them).
    assert_eq!(r["carriers"]["tcp"], 20, "{text}");
    assert_eq!(r["counters"]["requests"], 10, "{text}");
    assert_eq!(r["counters"]["malformed"], 0, "{text}");
    let clients = r["clients"].as_array().expect("clients");
    let a = clients
        .iter()
        .find(|c| c["ip"] == ATTACKER)
        .expect("attacker");
    assert_eq!(a["messages"], 10, "{text}");
    assert!(clients.iter().all(|c| c["ip"] != SERVER), "{text}");
}

/// Debian's kamailio on TCP, a TCP scanner, tcpdump on the server's side: `scan --pcap` names
/// the scanner from the reassembled streams.
#[test]
fn a_tcp_scanner_against_kamailio_is_named_from_the_capture() {
    use crate::wire_tools::{kamailio_with, pair, tcpdump_filter, SERVER};
    if !(require_program("kamailio") && require_program("tcpdump")) {
        return;
    }
    let Some((a, b)) = pair() else {
        return;
    };
    let d = tempfile::tempdir().expect("tempdir");
    let _server = kamailio_with(&b, d.path(), KAMAILIO_TCP);
    let file = d.path().join("capture.pcap");
    let mut dump = tcpdump_filter(&b, &file, &["--immediate-mode", "tcp", "port", "5060"]);
    run_in(&a, || tcp_scanner(SERVER));
    // tcpdump has written what the scanner sent (17 segments) and the answers (9 at least).
    let deadline = Instant::now() + Duration::from_secs(10);
    while data_segments(&file) < 26 {
        assert!(
            Instant::now() < deadline,
            "tcpdump wrote {} segments",
            data_segments(&file)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(dump.0.id() as i32, libc::SIGINT) };
    let _ = dump.0.wait();
    // How tests/data/wire/tcp-kamailio.pcap was made: this capture, kept.
    if let Some(keep) = std::env::var_os("SIPBAN_KEEP_TCP_PCAP") {
        std::fs::copy(&file, keep).expect("keep the capture");
    }
    check_kamailio_capture(&file);
}

#[test]
fn the_kept_tcp_capture_of_kamailio_names_the_scanner() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wire/tcp-kamailio.pcap");
    check_kamailio_capture(&file);
}

/// Raw IPv4 packets sent from `ns` (IP_HDRINCL: the source is whatever the packet says).
fn send_raw(ns: &NetNs, packets: Vec<Vec<u8>>) {
    run_in(ns, move || {
        // SAFETY: plain arguments; returns a new descriptor or -1.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        for p in packets {
            // SAFETY: sockaddr_in is plain data.
            let mut to: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            to.sin_family = libc::AF_INET as u16;
            to.sin_addr.s_addr = u32::from_ne_bytes([p[16], p[17], p[18], p[19]]);
            // SAFETY: `p` and `to` are valid for the lengths given.
            let n = unsafe {
                libc::sendto(
                    fd,
                    p.as_ptr().cast(),
                    p.len(),
                    0,
                    (&to as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as u32,
                )
            };
            assert_eq!(n, p.len() as isize, "{}", std::io::Error::last_os_error());
        }
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
    });
}

/// The daemon's live capture on the server's interface: a scanner over TCP (messages split
/// across segments) is banned; a source that forges TCP segments (no handshake; a SYN and a
/// guessed ACK; even a forged SYN-ACK) with a scanner's User-Agent is not, and is counted.
#[test]
fn a_live_capture_bans_a_tcp_scanner_and_never_a_forged_tcp_source() {
    use crate::daemon::{in_set, wait_in_set, Daemon};
    use crate::wire_live::counter;
    use crate::wire_tools::{kamailio_with, pair, ATTACKER, SERVER};
    const FORGED: &str = "10.77.0.66";
    if !require_program("kamailio") {
        return;
    }
    let Some((a, b)) = pair() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let _server = kamailio_with(&b, dir.path(), KAMAILIO_TCP);
    let path = dir.path().to_path_buf();
    let d = run_in(&b, move || {
        std::fs::write(
            path.join("config.yaml"),
            format!(
                "state_dir: {state}\nban_on_link: true\nsets:\n  v4: {{ name: t4, cap: 1000 }}\n  v6: {{ name: t6, cap: 1000 }}\ndaemon:\n  sync_schedule: \"0 0 0 1 1 *\"\nsip_wire:\n  capture: {{ interfaces: [lo, vb], ports: [5060], tcp: true }}\n",
                state = path.join("state").display()
            ),
        )
        .unwrap();
        let d = Daemon::start(&path);
        d.wait_log(
            "sip_wire: capture on lo, vb ports [5060] over UDP and TCP",
            Duration::from_secs(10),
        );
        d.wait_log("sync ok", Duration::from_secs(30));
        d
    });
    // The forged source's frames must reach the server's link: its address resolves there.
    let mac = String::from_utf8(b.exec_ok(&["cat", "/sys/class/net/vb/address"]).stdout).unwrap();
    a.exec_ok(&[
        "ip",
        "neigh",
        "replace",
        FORGED,
        "lladdr",
        mac.trim(),
        "dev",
        "va",
    ]);
    let (f, srv) = (v4(FORGED), v4(SERVER));
    let scanner = register(SERVER, 100, "friendly-scanner");
    send_raw(
        &a,
        vec![
            // Data with no handshake at all.
            ipv4_tcp(f, 40001, srv, 5060, 1000, 1, ACK | PSH, &scanner),
            // A SYN, then an ACK that guesses the server's ISN, with data.
            ipv4_tcp(f, 40002, srv, 5060, 5000, 0, SYN, b""),
            ipv4_tcp(f, 40002, srv, 5060, 5001, 12_345, ACK | PSH, &scanner),
            // The whole handshake forged, the SYN-ACK too ("from" the server).
            ipv4_tcp(f, 40003, srv, 5060, 8000, 0, SYN, b""),
            ipv4_tcp(srv, 5060, f, 40003, 600, 8001, SYN | ACK, b""),
            ipv4_tcp(f, 40003, srv, 5060, 8001, 601, ACK, b""),
            ipv4_tcp(f, 40003, srv, 5060, 8001, 601, ACK | PSH, &scanner),
        ],
    );
    // Then a real scanner over TCP: once it is banned, the forged packets (sent before it)
    // have been read.
    run_in(&a, || tcp_scanner(SERVER));
    run_in(&b, move || {
        let Some(t) = wait_in_set("t4", ATTACKER, Duration::from_secs(10)) else {
            panic!("{ATTACKER} not in the set; log:\n{}", d.log());
        };
        eprintln!("capture: the TCP scanner banned {t:?} after it finished");
        assert!(
            !in_set("t4", FORGED),
            "a forged TCP source was banned; log:\n{}",
            d.log()
        );
        // The counters are logged (at most every 10 s): the forged data was seen and ignored.
        let deadline = Instant::now() + Duration::from_secs(15);
        while counter(&d.log(), " unverified segments ignored") < 3 {
            assert!(
                Instant::now() < deadline,
                "forged segments not counted; log:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(counter(&d.log(), " streams, ") >= 1, "{}", d.log());
        assert!(d.stop().success());
    });
    // `status` (the counters the daemon saved when it stopped) and `config check` name both
    // interfaces and the TCP counts.
    let path = dir.path().to_path_buf();
    let text = run_in(&b, move || {
        crate::common::run::text(&crate::common::run::sipban(&path, &["status"]))
    });
    assert!(
        text.contains("configured: capture on lo, vb ports [5060] over UDP and TCP"),
        "{text}"
    );
    assert!(text.contains("unverified segments ignored"), "{text}");
    let o = crate::common::run::sipban(dir.path(), &["config", "check"]);
    let text = crate::common::run::text(&o);
    assert!(
        text.contains("the live capture on lo, vb needs CAP_NET_RAW"),
        "{text}"
    );
}
