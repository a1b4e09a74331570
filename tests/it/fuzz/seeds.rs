//! Seed lines and the input builders: the repository's detector fixtures (compiled in), plus a
//! few dozen lines below in the forms the shared third-party corpus shows (its `[plain]`
//! formatter, syslog and journald wrappers, 1.8-era verbose lines, kern.log LOG lines). The
//! corpus itself is not read: it may be absent, and it is licensed test data kept out of the
//! repository, so these lines are written anew with documentation addresses.

use super::mutate::{huge, mutate, Gen, SENTINEL};
use sipban::source::asterisk::rules::{anatomy, Level};
use std::sync::OnceLock;

/// `EXPECTED<TAB>TEXT` fixture lines, with `\n`, `\r` and `\e` unescaped.
fn fixture(text: &str) -> Vec<Vec<u8>> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once('\t'))
        .map(|(_, t)| {
            t.replace("\\n", "\n")
                .replace("\\r", "\r")
                .replace("\\e", "\x1b")
                .into_bytes()
        })
        .collect()
}

const ASTERISK_EXTRA: &[&str] = &[
    "[Dec 21 12:57:01] SECURITY[77]: res_security_log.c:114 security_event_stasis_cb: SecurityEvent=\"ChallengeResponseFailed\",EventTV=\"2021-12-21T12:57:01.209+0000\",Severity=\"Error\",Service=\"PJSIP\",EventVersion=\"1\",AccountID=\"6001\",SessionID=\"2kOigHiNhyip1cGGyzdgMkqKV9a0F\",LocalAddress=\"IPV4/UDP/192.0.2.2/5060\",RemoteAddress=\"IPV4/UDP/192.0.2.150/54784\",Challenge=\"1640091\",Response=\"9f\",ExpectedResponse=\"\"",
    "[Dec 21 12:56:59] SECURITY[77]: res_security_log.c:114 security_event_stasis_cb: SecurityEvent=\"InvalidAccountID\",EventTV=\"2021-12-21T12:56:59.192+0000\",Severity=\"Error\",Service=\"PJSIP\",EventVersion=\"1\",AccountID=\"netadmin\",SessionID=\"2kOig\",LocalAddress=\"IPV4/UDP/192.0.2.2/5060\",RemoteAddress=\"IPV4/UDP/192.0.2.151/55287\"",
    "[Mar  6 08:44:27] SECURITY[1310] res_security_log.c: SecurityEvent=\"InvalidPassword\",EventTV=\"2022-03-06T08:44:27.151+1100\",Severity=\"Error\",Service=\"SIP\",EventVersion=\"2\",AccountID=\"6001\",SessionID=\"0x7fa52803a000\",LocalAddress=\"IPV4/TLS/192.0.2.2/5061\",RemoteAddress=\"IPV4/TLS/192.0.2.152/56433\",Challenge=\"62790d2c\",ReceivedChallenge=\"62790d2c\",ReceivedHash=\"c3b9d05b\"",
    "Jul 08 22:25:10 alba asterisk[112836]: SECURITY[112882]: res_security_log.c:114 in security_event_stasis_cb: SecurityEvent=\"ChallengeResponseFailed\",EventTV=\"2024-07-08T22:25:10.826-0600\",Severity=\"Error\",Service=\"PJSIP\",EventVersion=\"1\",AccountID=\"<unknown>\",SessionID=\"9860f048-8b50\",LocalAddress=\"IPV4/TCP/192.0.2.2/5060\",RemoteAddress=\"IPV4/TCP/192.0.2.153/33021\",Challenge=\"1\",Response=\"2\",ExpectedResponse=\"\"",
    "Jul 08 22:55:41 alba asterisk[112836]: SECURITY[112882]: res_security_log.c:114 in security_event_stasis_cb: SecurityEvent=\"ChallengeSent\",EventTV=\"2024-07-08T22:55:41.434-0600\",Severity=\"Informational\",Service=\"PJSIP\",EventVersion=\"1\",AccountID=\"<unknown>\",SessionID=\"a79d\",LocalAddress=\"IPV4/TCP/192.0.2.2/5060\",RemoteAddress=\"IPV4/TCP/192.0.2.153/46417\",Challenge=\"x\"",
    "[2011-05-04 17:05:53] NOTICE[23697] chan_sip.c: Registration from '\"01\"<sip:01@192.0.2.3>' failed for '192.0.2.154' - Peer is not supposed to register",
    "[2011-05-04 07:28:08] NOTICE[11223] pbx_spool.c: Call failed to go through, reason (5) Remote end is Busy",
    "[2011-05-04 07:38:02] VERBOSE[11275] logger.c:     -- Attempting call on SIP/13056333258@out for s@fax:1 (Retry 1)",
    "[2011-05-04 07:38:03] ERROR[11275] chan_sip.c: Unable to open socket to 203.0.113.4",
    "[2012-02-13 17:21:54] NOTICE[1638] chan_sip.c: Registration from '<sip:301@example.com>' failed for '192.0.2.155' - Wrong password",
    "[2012-02-13 17:39:20] NOTICE[1638] chan_sip.c: hacking attempt detected '192.0.2.156'",
    "[2012-02-13 17:44:26] NOTICE[1638] chan_iax2.c: Host 192.0.2.157 failed MD5 authentication for 'x' (hash != hash)",
    "[2012-02-13 17:44:26] NOTICE[1638] chan_iax2.c: No registration for peer 'x' (from 192.0.2.158)",
    "[2012-02-13 17:44:26] NOTICE[1638] manager.c: 192.0.2.159 tried to authenticate with nonexistent user 'x'",
    "[2016-05-12 07:10:12] WARNING[2030][C-0000000a] Ext. s: \"Rejecting unknown SIP connection from 192.0.2.160\"",
    "[2024-05-02 10:11:20] WARNING[4102] chan_sip.c: Timeout on 5c1d2e3f4a5b@192.0.2.1:5060 on non-critical invite transaction.",
    "[2024-05-02 10:11:20] WARNING[4102] logger.c: Log queue threshold (1000) exceeded.  Discarding new messages.",
    "[2024-05-02 10:11:12] VERBOSE[4102][C-00000001] pbx.c: Executing [s@from-sip:1] NoOp(\"SIP/x\", \"1\") in new stack",
    "[2024-05-02 10:11:12] VERBOSE[4102][C-00000001] pbx.c: Executing [s@from-sip:1] NoOp(\"SIP/x\", \"1",
    "[2024-05-02 10:11:13] NOTICE[4102][C-00000007] chan_sip.c: Call from '' (192.0.2.161:5060) to extension '1",
    "[2024-05-02 10:11:17] SECURITY[4140] res_security_log.c: SecurityEvent=\"InvalidAccountID\",EventTV=\"x\",Severity=\"Error\",Service=\"SIP\",EventVersion=\"1\",AccountID=\"x",
    "Feb  9 15:03:33 pbx asterisk[1180]: \x1b[1;33mNOTICE\x1b[0m[1206]: \x1b[1;37mchan_sip.c\x1b[0m:29080 \x1b[1;37min handle_request_register\x1b[0m: Registration from '<sip:1@x>' failed for '192.0.2.162:5060' - Wrong password",
    "2023-02-19T15:03:35.412305+01:00 pbx asterisk[1180]: NOTICE[1206]: res_pjsip/pjsip_distributor.c:727 in log_failed_request: Request 'REGISTER' from '<sip:a@b>' failed for '[2001:db8::163]:5060' (callid: q) - No matching endpoint found",
    "[2024-05-02 10:11:16] NOTICE[4133] res_pjsip_session.c:  anonymous: Call (UDP:[2001:db8::164]:5060) to extension '0011' rejected because extension not found in context 'anonymous'.",
    "Registration from '' failed for '203.0.113.66' - Wrong password",
    "",
];

/// SIP debug dump blocks of the full log, with `{A}` for the socket address and `{C}` for the
/// Call-ID.
const DUMPS: &[&str] = &[
    "[2023-02-19 15:02:45] VERBOSE[686] chan_sip.c: \n<--- SIP read from UDP:{A} --->\nINVITE sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.80:5091;branch=z9hG4bK-1;rport\r\nFrom: <sip:x@203.0.113.81>\r\nCall-ID: {C}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n\n<------------->\n",
    "[2023-02-19 15:02:45] VERBOSE[686] chan_sip.c: \n<--- Reliably Transmitting (NAT) to {A} --->\nSIP/2.0 401 Unauthorized\r\nCall-ID: {C}\r\nCSeq: 1 INVITE\r\n\r\n\n<------------>\n",
    "[2023-02-19 15:02:45] VERBOSE[686] chan_sip.c: \n<--- Transmitting (no NAT) to {A} --->\nSIP/2.0 200 OK\r\ni: {C}\r\n\r\n\n<------------>\n",
    "[2023-02-19 15:02:46] VERBOSE[686] chan_sip.c: Retransmitting #1 (NAT) to {A}:\nSIP/2.0 401 Unauthorized\r\nCall-ID: {C}\r\nCSeq: 1 INVITE\r\n\r\n\n---\n",
    "[2023-02-19 15:02:46] VERBOSE[686] chan_sip.c: Reliably Transmitting (NAT) to {A}:\nSIP/2.0 403 Forbidden\r\nCall-ID: {C}\r\n\r\n\n---\n",
    "[2023-02-19 15:02:45] VERBOSE[686] res_pjsip_logger.c: <--- Received SIP request (91 bytes) from UDP:{A} --->\nINVITE sip:100@192.0.2.1 SIP/2.0\r\nCall-ID: {C}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    "[2023-02-19 15:02:45] VERBOSE[686] res_pjsip_logger.c: <--- Transmitting SIP response (60 bytes) to UDP:{A} --->\nSIP/2.0 401 Unauthorized\r\nCall-ID: {C}\r\n\r\n",
    "[2023-02-19 15:03:17] WARNING[686] chan_sip.c: Timeout on {C} on non-critical invite transaction.\n",
    "[2023-02-19 15:02:45] VERBOSE[686] chan_sip.c: Scheduling destruction of SIP dialog '{C}' in 32000 ms (Method: INVITE)\n",
];

const KERNEL_EXTRA: &[&str] = &[
    "Jun  8 14:34:33 sd-1 kernel: [50028442.088484] IN=enp1s0 OUT= MAC=00:08:a2:0c:1f:12:00:c8:8b:e2:d6:87:08:00 SRC=198.51.100.30 DST=203.0.113.10 LEN=40 TOS=0x00 PREC=0x00 TTL=245 ID=37308 PROTO=TCP SPT=8080 DPT=8123 WINDOW=1024 RES=0x00 SYN URGP=0",
    "Jun  8 14:34:33 sd-1 kernel: [50028442.088484] IN=enp.1s0 OUT= MAC=00:08:a2:0c:1f:12:00:c8:8b:e2:d6:87:08:00 SRC=198.51.100.31 DST=203.0.113.10 LEN=40 TOS=0x00 PREC=0x00 TTL=245 ID=37308 PROTO=TCP SPT=8080 DPT=8123 WINDOW=1024 RES=0x00 SYN URGP=0",
    "Jun  8 14:34:33 sd-1 kernel: [50028442.088484] XX=enp1s0 OUT= MAC=00:08:a2:0c:1f:12:00:c8:8b:e2:d6:87:08:00 SRC=198.51.100.32 DST=203.0.113.10 LEN=40 TOS=0x00 PREC=0x00 TTL=245 ID=37308 PROTO=TCP SPT=8080 DPT=8123 WINDOW=1024 RES=0x00 SYN URGP=0",
    "Sep 27 20:56:38 focal kernel: [  203.842973] IPTABLES-DROP: IN=lo OUT= MAC=00:00:00:00:00:00:00:00:00:00:00:00:08:00 SRC=127.0.0.1 DST=127.0.0.53 LEN=76 TOS=0x00 PREC=0x00 TTL=64 ID=25029 DF PROTO=UDP SPT=49007 DPT=53 LEN=56 ",
    "Sep 30 10:09:23 scw-1 kernel: [19955416.516358] IN=ens2 OUT= MAC=de:1c:88:64:10:19:5e:e1:a4:3b:cf:f0:08:00 SRC=198.51.100.33 DST=10.73.140.49 LEN=44 TOS=0x00 PREC=0x00 TTL=43 ID=25313 PROTO=TCP SPT=52220 DPT=80 WINDOW=1024 RES=0x00 SYN URGP=0",
    "Sep 30 10:09:24 scw-1 kernel: [19955417.1] [UFW AUDIT] IN=lo OUT= MAC=00:00:00:00:00:00:00:00:00:00:00:00:08:00 SRC=127.0.0.1 DST=127.0.0.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=41234 DPT=631 WINDOW=65495 RES=0x00 SYN URGP=0",
    "2024-02-19T15:03:17+0100 pbx kernel: IN=eth0 OUT= MAC=52:54:00:ab:cd:ef:00:1a:2b:3c:4d:5e:86:dd SRC=2001:0db8:0bad:0000:0000:0000:0000:0034 DST=2001:0db8:0000:0000:0000:0000:0000:0001 LEN=80 TC=0 HOPLIMIT=57 FLOWLBL=0 PROTO=TCP SPT=47133 DPT=23 WINDOW=1024 RES=0x00 SYN URGP=0",
    "2024-02-19T15:03:17+0100 pbx kernel: IN=eth0 OUT= MAC=52:54:00:ab:cd:ef:00:1a:2b:3c:4d:5e:86:dd SRC=2001:db8:bad::35 DST=2001:db8::1 LEN=80 PROTO=UDP SPT=40000 DPT=31337 LEN=28",
    "Feb  9 15:03:19 pbx kernel: IN=eth0 OUT= MAC=52:54:00:ab:cd:ef:00:1a:2b:3c:4d:5e:08:00 SRC=198.51.100.36 DST=203.0.113.10 LEN=96 TOS=0x00 PREC=0xC0 TTL=62 ID=1 PROTO=ICMP TYPE=3 CODE=3 [SRC=203.0.113.10 DST=198.51.100.36 LEN=68 TOS=0x00 PREC=0x00 TTL=63 ID=2 PROTO=UDP SPT=5060 DPT=31337 LEN=48 ]",
    "Feb  9 15:03:19 pbx kernel: IN=eth0 OUT= ARP HTYPE=1 PTYPE=0x0800 OPCODE=1 MACSRC=00:1a:2b:3c:4d:5e IPSRC=198.51.100.37 MACDST=00:00:00:00:00:00 IPDST=203.0.113.10",
    "Feb  9 15:03:19 pbx kernel: IN= OUT=eth0 SRC=203.0.113.10 DST=198.51.100.38 LEN=44 PROTO=TCP SPT=1 DPT=2 WINDOW=1 RES=0x00 SYN URGP=0",
    "Feb  9 15:03:19 pbx kernel: IN=eth0 OUT= MAC=52:54:00:ab:cd:ef:00:1a:2b:3c:4d:5e:08:00 SRC=198.51.100.39 DST=203.0.113.10 LEN=1500 TOS=0x00 PREC=0x00 TTL=50 ID=7 MF FRAG:185 PROTO=UDP ",
    "Feb  9 15:03:19 pbx kernel[123]: IN=eth0 OUT= MAC=52:54:00:ab:cd:ef:00:1a:2b:3c:4d:5e:08:00 SRC=203.0.113.66 DST=203.0.113.10 LEN=44 PROTO=TCP SPT=1 DPT=23 WINDOW=1 RES=0x00 SYN URGP=0",
    "Feb  9 15:03:19 pbx sshd[1]: kernel: IN=eth0 OUT= SRC=203.0.113.66 DST=203.0.113.10 LEN=44 PROTO=TCP SPT=1 DPT=23 WINDOW=1 RES=0x00 SYN URGP=0",
    "Feb  9 15:03:19 pbx kernel: [ 1.5] IN=eth0 OUT= MAC=52:54:00:ab:cd:ef:00:1a:2b:3c:4d:5e:08:00 SRC=198.51.100.40 DST=203.0.113.10 LEN=44 PROTO=TCP SPT=65535 DPT=65535 WINDOW=1 RES=0x00 ECE CWR FIN PSH URG AE SYN URGP=0 OPT (020405B4) UID=0 GID=0",
    "-- Boot 1a2b3c --",
    "",
];

const FEED_PLAIN: &[&str] = &[
    "# Spamhaus-like header ; with a comment",
    "192.0.2.1",
    "198.51.100.0/24 ; SBL123",
    "  203.0.113.9   # trailing",
    "2001:db8::1",
    "2001:db8::/32",
    "::ffff:192.0.2.7",
    "::ffff:192.0.2.0/120",
    "[2001:db8::5]",
    "10.0.0.1 10.0.0.2",
    "not-an-ip",
    "0.0.0.0/0",
    "192.0.2.7/24",
    "192.0.2.7/33",
    "1.2.3.4/",
    "1.2.3.4/0024",
    "\u{feff}192.0.2.8",
    "<!DOCTYPE html><html><body>Oops</body></html>",
];

const FEED_CSV: &[&str] = &[
    "id,ip,when",
    "1,192.0.2.1,2024-01-01",
    "2,\"198.51.100.7\",y",
    "3,bogus,z",
    "4",
    "\"a,b\",\"2001:db8::9\",\"x\"",
    "5,\"192.0.2.0/24\"",
    ",,,",
    "\"\"\"\",192.0.2.3",
    "# comment,192.0.2.4",
];

const FEED_JSON: &[&str] = &[
    r#"{"cidr":"1.10.16.0/20","sblid":"SBL256894","rir":"apnic"}"#,
    r#"{"type":"metadata","timestamp":1700000000,"size":2,"records":2,"copyright":"(c) Spamhaus"}"#,
    r#"{"data":{"ip":["192.0.2.1","198.51.100.0/24",5]}}"#,
    r#"{"data":[{"ip":"192.0.2.1"},{"ip":"192.0.2.2"},{"ip":null},{"x":1}]}"#,
    r#"["192.0.2.5","2001:db8::7",{"a":"b"},[1,2],true,1e400,-0]"#,
    r#"{"a/b":{"~":"192.0.2.9"},"0":["192.0.2.10"]}"#,
    r#""192.0.2.11""#,
    r#"{"cidr":"\u0031\u0039\u0032.0.2.12","s":"\ud800"}"#,
    r#"{"cidr":"192.0.2.13\u0000"}"#,
    "{\"cidr\": \"2001:db8::14/64\"}\n{\"cidr\":\"bad\"}\n",
];

/// The JSON pointers the fuzz tries (the catalogue's and odd ones).
pub const POINTERS: &[&str] = &[
    "/cidr",
    "/data/ip",
    "/data/*/ip",
    "/*",
    "",
    "/",
    "/a~1b/~0",
    "/0",
    "/*/*",
    "/data/99999999999999999999",
    "/~",
];

pub struct Seeds {
    pub asterisk: Vec<Vec<u8>>,
    pub kernel: Vec<Vec<u8>>,
    pub plain: Vec<Vec<u8>>,
    pub csv: Vec<Vec<u8>>,
    pub json: Vec<Vec<u8>>,
}

pub fn seeds() -> &'static Seeds {
    static S: OnceLock<Seeds> = OnceLock::new();
    S.get_or_init(|| {
        let mut asterisk = fixture(include_str!("../../data/asterisk/attacks.txt"));
        asterisk.extend(fixture(include_str!("../../data/asterisk/not_attacks.txt")));
        asterisk.extend(ASTERISK_EXTRA.iter().map(|l| l.as_bytes().to_vec()));
        let mut kernel = fixture(include_str!("../../data/kernlog/cases.txt"));
        kernel.extend(KERNEL_EXTRA.iter().map(|l| l.as_bytes().to_vec()));
        let v = |l: &[&str]| l.iter().map(|s| s.as_bytes().to_vec()).collect();
        Seeds {
            asterisk,
            kernel,
            plain: v(FEED_PLAIN),
            csv: v(FEED_CSV),
            json: v(FEED_JSON),
        }
    })
}

/// One line: a seed, mutated `mutated` percent of the time (one in twenty of those is random
/// bytes instead).
pub fn line(
    g: &mut Gen,
    pool: &[Vec<u8>],
    mutated: usize,
    huge_every: usize,
    over_cap: bool,
) -> Vec<u8> {
    if g.below(100) >= mutated {
        return g.pick(pool).clone();
    }
    if g.one_in(20) {
        let n = g.range(0, 160);
        return g.bytes(n);
    }
    let mut l = g.pick(pool).clone();
    mutate(g, &mut l, pool, huge_every, over_cap);
    l
}

/// How much of an input is mutated: most inputs are heavily mutated, some barely, so that both
/// the error paths and the paths of well-formed input (detections, good listings) are run.
pub fn mutation_rate(g: &mut Gen) -> usize {
    *g.pick(&[5, 20, 80, 80])
}

/// A line over the 64 KiB line cap that would otherwise name [`SENTINEL`].
pub fn over_cap_line(g: &mut Gen, kernel: bool) -> Vec<u8> {
    let n = g.range(64 * 1024 + 1, 66 * 1024);
    let pad = huge(g, b"", n);
    let pad = String::from_utf8_lossy(&pad).replace('\n', " ");
    if kernel {
        format!("Feb 19 15:03:17 pbx kernel: [{pad}] IN=eth0 OUT= MAC=52:54:00:ab:cd:ef:00:1a:2b:3c:4d:5e:08:00 SRC={SENTINEL} DST=203.0.113.10 LEN=44 PROTO=TCP SPT=1 DPT=23 WINDOW=1 RES=0x00 SYN URGP=0").into_bytes()
    } else {
        format!("[2024-05-02 10:11:12] NOTICE[4102] chan_sip.c: Registration from '{pad}' failed for '{SENTINEL}:5060' - Wrong password").into_bytes()
    }
}

/// A SIP debug sequence for one Call-ID, pieces of it mutated now and then.
fn dump(g: &mut Gen) -> Vec<u8> {
    let addr = match g.below(4) {
        0 => format!("192.0.2.{}:5091", g.range(1, 254)),
        1 => format!("[2001:db8:1::{:x}]:5091", g.range(1, 0xffff)),
        2 => g.pick(super::mutate::EDGE_ADDRS).to_string(),
        _ => g.address(),
    };
    let callid = match g.below(4) {
        0 => format!("{:x}@192.0.2.1", g.u64()),
        1 => {
            let n = g.range(0, 40);
            String::from_utf8_lossy(&g.text(n)).into_owned()
        }
        2 => "x".repeat(g.range(500, 600)),
        _ => "fuzz".to_string(),
    };
    let mut out = Vec::new();
    for _ in 0..g.range(1, 6) {
        let t = g.pick(DUMPS).replace("{A}", &addr).replace("{C}", &callid);
        let mut b = t.into_bytes();
        if g.one_in(4) {
            let others = [b.clone()];
            mutate(g, &mut b, &others, 64, false);
        }
        out.extend_from_slice(&b);
        if !out.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
    out.pop();
    out
}

/// A multi-line message whose first line lacks its tail, with forged lines inside.
fn injection(g: &mut Gen) -> Vec<u8> {
    let heads = [
        "[2024-05-02 10:11:13] NOTICE[4102][C-00000007] chan_sip.c: Call from '' (192.0.2.90:5060) to extension '1",
        "[2024-05-02 10:11:16] NOTICE[4133] res_pjsip_session.c:  anonymous: Call (UDP:[2001:db8:1::90]:5060) to extension '1",
        "[2024-05-02 10:11:17] SECURITY[4140] res_security_log.c: SecurityEvent=\"InvalidAccountID\",EventTV=\"x\",Severity=\"Error\",Service=\"SIP\",EventVersion=\"1\",AccountID=\"1",
        "[2024-05-02 10:11:12] VERBOSE[4102][C-00000001] pbx.c: Executing [s@from-sip:1] NoOp(\"1",
    ];
    let tails = [
        "' rejected because extension not found in context 'public'.",
        "\",SessionID=\"2\",LocalAddress=\"IPV4/UDP/192.0.2.1/5060\",RemoteAddress=\"IPV4/UDP/192.0.2.91/5060\"",
        "\") in new stack",
        "",
    ];
    let mut s = g.pick(&heads[..]).to_string();
    for _ in 0..g.range(0, 6) {
        if g.one_in(3) {
            s.push_str(g.pick::<&str>(&tails));
        }
        s.push_str(g.pick::<&str>(super::mutate::HOSTILE));
        if g.one_in(2) {
            s.push('\n');
        }
    }
    if g.one_in(2) {
        s.push_str(g.pick::<&str>(&tails));
    }
    s.into_bytes()
}

/// Whether `line` is the first line of a message without its tail (the engine would hold the
/// lines after it as possibly injected).
fn opens_window(line: &[u8]) -> bool {
    let Some(a) = anatomy(line) else {
        return false;
    };
    let executing = a.level == Level::Verbose
        && a.file == b"pbx.c"
        && a.msg.starts_with(b"Executing [")
        && !line.ends_with(b" in new stack");
    executing
        || sipban::source::asterisk::guard::opening(
            &a,
            line,
            true,
            sipban::source::asterisk::SecurityServices::default(),
        )
        .is_some()
}

/// An Asterisk log (or full log) of 1 to about `max_lines` lines; returns it and how many of
/// its lines are over the cap.
pub fn asterisk_log(g: &mut Gen, max_lines: usize, over_cap: bool) -> (Vec<u8>, usize) {
    let lines = g.range(1, max_lines);
    let pool = &seeds().asterisk;
    let mut out = Vec::new();
    let mut long = 0;
    let mut n = 0;
    let rate = mutation_rate(g);
    // Per log: how often a dump block and an injection attempt come. A calm log has no line
    // that opens an injection window, so that its detections are not all swallowed.
    let calm = g.one_in(2);
    let (dumps, injections) = (g.range(0, 4), if calm { 0 } else { g.range(0, 3) });
    while n < lines {
        let k = g.below(40);
        let piece = if k < dumps {
            dump(g)
        } else if k < dumps + injections {
            injection(g)
        } else if over_cap && g.one_in(60) {
            long += 1;
            over_cap_line(g, false)
        } else {
            let l = line(g, pool, rate, 400, false);
            if calm && l.split(|b| *b == b'\n').any(opens_window) {
                continue;
            }
            l
        };
        n += 1 + memchr::memchr_iter(b'\n', &piece).count();
        out.extend_from_slice(&piece);
        out.push(b'\n');
    }
    (out, long)
}

/// A kernel log of 1 to `max_lines` lines; returns it and how many of its lines are over the
/// cap.
pub fn kernel_log(g: &mut Gen, max_lines: usize, over_cap: bool) -> (Vec<u8>, usize) {
    let lines = g.range(1, max_lines);
    let pool = &seeds().kernel;
    let mut out = Vec::new();
    let mut long = 0;
    let rate = mutation_rate(g);
    for _ in 0..lines {
        let mut l = if over_cap && g.one_in(50) {
            long += 1;
            over_cap_line(g, true)
        } else {
            line(g, pool, rate, 400, false)
        };
        // One generated line is one log line.
        if memchr::memchr(b'\n', &l).is_some() {
            l.retain(|b| *b != b'\n');
        }
        out.extend_from_slice(&l);
        out.push(b'\n');
    }
    (out, long)
}

/// The record formats of the feeds.
#[derive(Clone, Copy)]
pub enum Records {
    Plain,
    Csv,
    JsonLines,
}

/// A well-formed feed record: an address or prefix (mostly public, mostly /16 or longer).
fn record(g: &mut Gen, kind: Records) -> Vec<u8> {
    let a = std::net::Ipv4Addr::from(g.u64() as u32);
    let prefix = match g.below(6) {
        0 => format!("{a}/{}", g.range(16, 32)),
        1 => format!(
            "2a0{:x}:{:x}::/{}",
            g.below(16),
            g.u64() as u16,
            g.range(32, 128)
        ),
        2 => format!(
            "2a0{:x}:{:x}::{:x}",
            g.below(16),
            g.u64() as u16,
            g.u64() as u16
        ),
        _ => a.to_string(),
    };
    match kind {
        Records::Plain => prefix,
        Records::Csv => match g.below(3) {
            0 => format!("{},\"{prefix}\",x", g.below(1000)),
            _ => format!("{},{prefix},{}", g.below(1000), g.below(1000)),
        },
        Records::JsonLines => format!(
            "{{\"cidr\":\"{prefix}\",\"sblid\":\"SBL{}\"}}",
            g.below(99_999)
        ),
    }
    .into_bytes()
}

/// A feed body of up to `lines` records: well-formed ones and lines drawn from `pool`, as
/// mutated as the body's mutation rate says.
pub fn feed_body(g: &mut Gen, pool: &[Vec<u8>], kind: Records, lines: usize) -> Vec<u8> {
    let mut out = Vec::new();
    if g.one_in(20) {
        out.extend_from_slice("\u{feff}".as_bytes());
    }
    let rate = mutation_rate(g);
    for i in 0..lines {
        let l = if g.one_in(3) {
            line(g, pool, rate, 2000, false)
        } else {
            let mut r = record(g, kind);
            if g.below(100) < rate {
                mutate(g, &mut r, pool, 2000, false);
            }
            r
        };
        out.extend_from_slice(&l);
        if i + 1 < lines || g.one_in(2) {
            out.extend_from_slice(if g.one_in(8) { b"\r\n" } else { b"\n" });
        }
    }
    out
}

/// A JSON value of at most `depth` levels, its strings mostly addresses.
fn json_value(g: &mut Gen, depth: usize, out: &mut String) {
    let k = if depth == 0 { g.below(4) } else { g.below(7) };
    match k {
        0 | 1 => {
            let a = if g.one_in(2) {
                g.address()
            } else {
                g.pick(super::mutate::EDGE_ADDRS).to_string()
            };
            out.push_str(&serde_json::Value::String(a).to_string());
        }
        2 => out.push_str(g.pick::<&str>(&[
            "0",
            "-1",
            "1e400",
            "18446744073709551616",
            "true",
            "null",
            "0.5",
        ])),
        3 => out.push_str(g.pick::<&str>(&[r#""\ud800""#, r#""\u0000""#, r#""""#, r#""\"\\""#])),
        4 | 5 => {
            out.push('[');
            for i in 0..g.range(0, 5) {
                if i > 0 {
                    out.push(',');
                }
                json_value(g, depth - 1, out);
            }
            out.push(']');
        }
        _ => {
            out.push('{');
            for i in 0..g.range(0, 4) {
                if i > 0 {
                    out.push(',');
                }
                let key = *g.pick(&["cidr", "ip", "data", "a/b", "~", "0", "*", ""]);
                out.push_str(&format!("\"{key}\":"));
                json_value(g, depth - 1, out);
            }
            out.push('}');
        }
    }
}

/// A JSON feed body: a generated document, JSON lines, deep nesting, or mutated seeds.
pub fn json_body(g: &mut Gen) -> Vec<u8> {
    match g.below(6) {
        0 | 1 => {
            let mut s = String::new();
            json_value(g, 4, &mut s);
            let mut b = s.into_bytes();
            if g.one_in(3) {
                let pool = &seeds().json;
                mutate(g, &mut b, pool, 2000, false);
            }
            b
        }
        2 => {
            let mut s = String::new();
            for _ in 0..g.range(1, 8) {
                s.push_str(&format!("{{\"cidr\":\"{}\"}}\n", g.address()));
            }
            s.into_bytes()
        }
        3 if g.one_in(10) => {
            let d = g.range(100, 3000);
            let mut s = "[".repeat(d);
            s.push_str(&"]".repeat(g.range(0, d)));
            s.into_bytes()
        }
        _ => {
            let n = g.range(1, 6);
            feed_body(g, &seeds().json, Records::JsonLines, n)
        }
    }
}
