//! SIP on the wire in the daemon (issue 16): `sipban run` with `sip_wire:` reads HEP v3
//! datagrams from its peers (and a live capture), and the wire detector's bans reach the
//! kernel set through the real-time pass's gate. Each test in its own network namespace:
//! the real binary, real `ipset`, real sockets.

use crate::common::netns::{run_in, NetNs};
use crate::daemon::{in_set, wait_in_set, Daemon};
use sipban::source::wire::hep;
use std::net::{IpAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The HEP peer (the PBX's capture agent) and a stranger, both on the namespace's loopback interface.
const PEER: &str = "10.200.0.1";
const STRANGER: &str = "10.200.0.2";
/// The PBX address inside the HEP chunks.
const PBX: &str = "10.200.0.1";

fn now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn local_addresses(ns: &NetNs) {
    for a in [PEER, STRANGER] {
        ns.exec_ok(&["ip", "addr", "add", &format!("{a}/32"), "dev", "lo"]);
    }
}

fn config(dir: &Path, sip_wire: &str) {
    let text = format!(
        "state_dir: {state}\nsets:\n  v4: {{ name: t4, cap: 1000 }}\n  v6: {{ name: t6, cap: 1000 }}\ndaemon:\n  sync_schedule: \"0 0 0 1 1 *\"\nsip_wire:\n{sip_wire}",
        state = dir.join("state").display(),
    );
    std::fs::write(dir.join("config.yaml"), text).unwrap();
}

/// A request as a desk phone sends it.
fn req(method: &str, user: &str, callid: &str, cseq: u32, creds: bool, ua: &str) -> Vec<u8> {
    let auth = if creds {
        "Authorization: Digest username=\"201\", realm=\"pbx\", nonce=\"n\", uri=\"sip:pbx\", response=\"0\"\r\n"
    } else {
        ""
    };
    format!(
        "{method} sip:{user}@{PBX} SIP/2.0\r\nVia: SIP/2.0/UDP 45.0.0.1;branch=z9hG4bKPj{callid}{cseq}\r\n\
From: <sip:{user}@{PBX}>;tag=ab{cseq}\r\nTo: <sip:{user}@{PBX}>\r\nCall-ID: {callid}@phone\r\n\
CSeq: {cseq} {method}\r\nUser-Agent: {ua}\r\n{auth}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn resp(code: u16, callid: &str, cseq: u32, method: &str) -> Vec<u8> {
    format!(
        "SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP 45.0.0.1;branch=z9hG4bKPj\r\nFrom: <sip:201@{PBX}>;tag=ab\r\n\
To: <sip:201@{PBX}>;tag=srv\r\nCall-ID: {callid}@phone\r\nCSeq: {cseq} {method}\r\nServer: Asterisk PBX 20.6.0\r\n\r\n"
    )
    .into_bytes()
}

const PHONE: &str = "Yealink SIP-T46S 66.86.0.15";

/// A HEP sender bound to `from`, sending to the daemon's listener.
struct Agent {
    sock: UdpSocket,
    to: String,
}

impl Agent {
    fn new(from: &str, to: &str) -> Agent {
        Agent {
            sock: UdpSocket::bind((from, 0)).unwrap(),
            to: to.to_string(),
        }
    }

    /// One SIP message from `src` to `dst`, as the capture agent saw it.
    fn send(&self, src: &str, dst: &str, sip: &[u8]) {
        self.send_with(src, dst, sip, None)
    }

    /// [`Agent::send`] with an auth key chunk (`capture_password`).
    fn send_keyed(&self, src: &str, dst: &str, sip: &[u8], key: &[u8]) {
        self.send_with(src, dst, sip, Some(key))
    }

    fn send_with(&self, src: &str, dst: &str, sip: &[u8], auth_key: Option<&[u8]>) {
        let h = hep::Hep {
            src: ip(src),
            dst: ip(dst),
            sport: 5060,
            dport: 5060,
            proto: 17,
            secs: now(),
            payload_type: hep::SIP,
            capture_id: Some(2001),
            auth_key,
            payload: sip,
        };
        self.sock.send_to(&hep::encode(&h), &self.to).unwrap();
    }

    /// `client` registers: challenged, then accepted with its digest.
    fn phone_registers(&self, client: &str, round: u32) {
        let c = format!("reg-{client}-{round}");
        self.send(client, PBX, &req("REGISTER", "201", &c, 1, false, PHONE));
        self.send(PBX, client, &resp(401, &c, 1, "REGISTER"));
        self.send(client, PBX, &req("REGISTER", "201", &c, 2, true, PHONE));
        self.send(PBX, client, &resp(200, &c, 2, "REGISTER"));
    }

    /// `client` tries a wrong password: refused with a new challenge.
    fn wrong_password(&self, client: &str, n: u32) {
        let c = format!("crack-{client}-{n}");
        self.send(client, PBX, &req("REGISTER", "201", &c, 2, true, PHONE));
        self.send(PBX, client, &resp(401, &c, 2, "REGISTER"));
    }
}

fn started(dir: &Path) -> Daemon {
    let d = Daemon::start(dir);
    d.wait_log("sip_wire: HEP on udp", Duration::from_secs(10));
    d.wait_log("sync ok", Duration::from_secs(30));
    d
}

/// Wait until the UDP socket on `port` has nothing queued (`ss`'s Recv-Q is 0).
fn await_read(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = Command::new("ss")
            .args(["-Hun", "state", "all", "sport", &format!("= :{port}")])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let queued: Option<u64> = text.split_whitespace().nth(1).and_then(|q| q.parse().ok());
        if queued == Some(0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon does not read its HEP socket: {text}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The highest value of the counter logged as `N<name>` in the daemon's `sip_wire:` lines.
pub(crate) fn counter(log: &str, name: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("sip_wire: ") && l.contains(name))
        .filter_map(|l| {
            let before = l.split(name).next()?;
            before.rsplit([' ', ',']).next()?.parse::<u64>().ok()
        })
        .max()
        .unwrap_or(0)
}

/// The set's members.
fn members(set: &str) -> String {
    let o = Command::new("ipset").args(["list", set]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A password guesser reaching `maxretry` over HEP is in the kernel set within 1 s of its
/// last failure; a phone registering on the same wire, as often, is never banned.
#[test]
fn a_hep_password_guesser_is_banned_within_one_second_and_a_phone_never() {
    let ns = netns_or_skip!();
    local_addresses(&ns);
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        config(
            dir.path(),
            &format!("  hep: {{ listen: \"{PEER}:9060\", peers: [{PEER}] }}\n  maxretry: 5\n  bantime: 1h\n"),
        );
        let d = started(dir.path());
        let agent = Agent::new(PEER, &format!("{PEER}:9060"));
        let (phone, guesser) = ("45.10.0.1", "45.10.0.2");
        for n in 0..4 {
            agent.phone_registers(phone, n);
            agent.wrong_password(guesser, n);
        }
        for n in 4..12 {
            agent.phone_registers(phone, n);
        }
        // The fifth failure: the ban.
        let t = Instant::now();
        agent.wrong_password(guesser, 4);
        let Some(_) = wait_in_set("t4", guesser, Duration::from_secs(5)) else {
            panic!("{guesser} not in the set after 5 s; log:\n{}", d.log());
        };
        let latency = t.elapsed();
        eprintln!("HEP: fifth wrong password -> kernel set in {latency:?}");
        assert!(
            latency < Duration::from_secs(1),
            "took {latency:?} (bound: 1 s); log:\n{}",
            d.log()
        );
        // The phone's messages were all read before the guesser's last one (one socket,
        // in order), and it registered far more often than maxretry.
        assert!(
            !in_set("t4", phone),
            "the phone was banned; log:\n{}",
            d.log()
        );
        // Its line is written once the pass returns (after the kernel has the address).
        d.wait_log("sip_wire: 1 new bans, 1 added", Duration::from_secs(5));
        // The ban is saved as the sip_wire source's.
        let o = crate::common::run::sipban(dir.path(), &["list", "--json"]);
        let text = crate::common::run::text(&o);
        assert!(
            text.contains(guesser) && text.contains("sip_wire"),
            "{text}"
        );
        assert!(d.stop().success());
        // A full sync rebuilds the set from the state, the ban included.
        let o = Command::new("ipset")
            .args(["destroy", "t4"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        let o = crate::common::run::sipban(dir.path(), &["sync"]);
        assert!(o.status.success(), "{}", crate::common::run::text(&o));
        assert!(in_set("t4", guesser), "{}", members("t4"));
    });
}

/// Datagrams from a source that is not a peer are never decoded: a flood of scanner messages
/// naming other addresses bans none of them, and is counted; the same message from the peer
/// bans at once.
#[test]
fn hep_from_a_non_peer_is_ignored_and_counted() {
    let ns = netns_or_skip!();
    local_addresses(&ns);
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        config(
            dir.path(),
            &format!("  hep: {{ listen: \"{PEER}:9060\", peers: [{PEER}] }}\n"),
        );
        let d = started(dir.path());
        let to = format!("{PEER}:9060");
        let stranger = Agent::new(STRANGER, &to);
        let flood = 500u32;
        for i in 0..flood {
            let victim = format!("45.20.{}.{}", i / 250, i % 250 + 1);
            let c = format!("flood{i}");
            stranger.send(
                &victim,
                PBX,
                &req("OPTIONS", "100", &c, 1, false, "friendly-scanner"),
            );
            // In bursts the socket buffer holds (a bigger flood is lost in the kernel, and the
            // test would count less than it sent): wait for the daemon to have read each.
            if i % 50 == 49 {
                await_read(9060);
            }
        }
        // A wrong HEP datagram from the peer is refused and counted too.
        let peer = Agent::new(PEER, &to);
        peer.sock.send_to(b"HEP3\x00\x07x", &to).unwrap();
        // The positive control: the same kind of message from the peer bans its sender.
        peer.send(
            "45.21.0.1",
            PBX,
            &req("OPTIONS", "100", "ctl", 1, false, "friendly-scanner"),
        );
        let Some(_) = wait_in_set("t4", "45.21.0.1", Duration::from_secs(5)) else {
            panic!("the peer's scanner was not banned; log:\n{}", d.log());
        };
        assert!(
            !members("t4").contains("45.20."),
            "a non-peer's datagram banned an address:\n{}",
            members("t4")
        );
        // The counters are logged (at most every 10 s): the flood was seen and ignored.
        let deadline = Instant::now() + Duration::from_secs(15);
        let ignored = loop {
            let log = d.log();
            match counter(&log, " from non-peers ignored") {
                n if n == u64::from(flood) && log.contains("1 HEP refused") => break n,
                _ if Instant::now() > deadline => panic!("no counters logged; log:\n{log}"),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        assert_eq!(ignored, u64::from(flood));
        assert!(d.stop().success());
    });
}

/// Live capture (`sip_wire.capture`, an AF_PACKET socket on the server's interface): Debian's
/// `svwar` attacking Debian's `kamailio` across a veth pair is banned from what the wire shows,
/// and a phone on the same link, challenged as often, is not.
#[test]
fn a_live_capture_bans_sipvicious_and_not_a_phone() {
    use crate::common::netns::require_program;
    use crate::wire_tools::{attack, kamailio, pair, ATTACKER, SERVER};
    if !(require_program("kamailio") && require_program("svwar")) {
        return;
    }
    let Some((a, b)) = pair() else {
        return;
    };
    const PHONE_IP: &str = "10.77.0.3";
    a.exec_ok(&["ip", "addr", "add", &format!("{PHONE_IP}/24"), "dev", "va"]);
    let dir = tempfile::tempdir().unwrap();
    let _server = kamailio(&b, dir.path());
    let path = dir.path().to_path_buf();
    // The attacker and the phone are on the server's own link: bans there are opt-in.
    let d = run_in(&b, move || {
        std::fs::write(
            path.join("config.yaml"),
            format!(
                "state_dir: {state}\nban_on_link: true\nsets:\n  v4: {{ name: t4, cap: 1000 }}\n  v6: {{ name: t6, cap: 1000 }}\ndaemon:\n  sync_schedule: \"0 0 0 1 1 *\"\nsip_wire:\n  capture: {{ interface: vb, ports: [5060] }}\n",
                state = path.join("state").display()
            ),
        )
        .unwrap();
        let d = Daemon::start(&path);
        d.wait_log("sip_wire: capture on vb", Duration::from_secs(10));
        d.wait_log("sync ok", Duration::from_secs(30));
        d
    });
    phone(&a, PHONE_IP);
    attack(
        &a,
        &["svwar", "-e100-110", "-m", "REGISTER", "--force", SERVER],
    );
    run_in(&b, move || {
        let Some(t) = wait_in_set("t4", ATTACKER, Duration::from_secs(10)) else {
            panic!("{ATTACKER} not in the set; log:\n{}", d.log());
        };
        eprintln!("capture: svwar banned {t:?} after it finished");
        d.wait_log("sip_wire: 1 new bans, 1 added", Duration::from_secs(5));
        assert!(
            !in_set("t4", PHONE_IP),
            "the phone was banned; log:\n{}",
            d.log()
        );
        // The counters are logged (at most every 10 s): the SIP packets were captured.
        let deadline = Instant::now() + Duration::from_secs(15);
        while counter(&d.log(), " captured") == 0 {
            assert!(
                Instant::now() < deadline,
                "nothing captured; log:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(d.stop().success());
    });
}

/// A phone at `phone_ip` (in `ns`): challenged REGISTERs (it has no password this server
/// accepts) and OPTIONS keep-alives, each answered before the next.
fn phone(ns: &NetNs, phone_ip: &'static str) {
    use crate::wire_tools::SERVER;
    run_in(ns, move || {
        let s = UdpSocket::bind((phone_ip, 5062)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        for n in 0..12 {
            let c = format!("phone{n}");
            for m in [
                req("REGISTER", "100", &c, 1, false, PHONE),
                req("OPTIONS", "100", &c, 2, false, PHONE),
            ] {
                // Answers go where the top Via says.
                let m = String::from_utf8(m)
                    .unwrap()
                    .replace("45.0.0.1;", &format!("{phone_ip}:5062;rport;"));
                s.send_to(m.as_bytes(), (SERVER, 5060)).unwrap();
                let got = s.recv(&mut buf).expect("kamailio answers the phone");
                assert!(buf[..got].starts_with(b"SIP/2.0 "), "{:?}", &buf[..got]);
            }
        }
    });
}

/// Kamailio's `siptrace` (HEP v3, `trace_mode 1`: every message it receives and sends) feeds
/// the daemon while Debian's `svwar` attacks it: the scanner is banned, and a phone challenged
/// on the same server is not.
#[test]
fn kamailio_siptrace_hep_bans_sipvicious_and_not_a_phone() {
    use crate::common::netns::require_program;
    use crate::wire_tools::{attack, kamailio_with, pair, ATTACKER, SERVER};
    if !(require_program("kamailio") && require_program("svwar")) {
        return;
    }
    let Some((a, b)) = pair() else {
        return;
    };
    const PHONE_IP: &str = "10.77.0.3";
    a.exec_ok(&["ip", "addr", "add", &format!("{PHONE_IP}/24"), "dev", "va"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let d = run_in(&b, move || {
        std::fs::write(
            path.join("config.yaml"),
            format!(
                "state_dir: {state}\nban_on_link: true\nsets:\n  v4: {{ name: t4, cap: 1000 }}\n  v6: {{ name: t6, cap: 1000 }}\ndaemon:\n  sync_schedule: \"0 0 0 1 1 *\"\nsip_wire:\n  hep: {{ listen: \"{SERVER}:9060\", peers: [{SERVER}] }}\n",
                state = path.join("state").display()
            ),
        )
        .unwrap();
        started(&path)
    });
    let _server = kamailio_with(
        &b,
        dir.path(),
        &format!(
            "loadmodule \"siptrace.so\"\nmodparam(\"siptrace\", \"duplicate_uri\", \"sip:{SERVER}:9060\")\n\
modparam(\"siptrace\", \"hep_mode_on\", 1)\nmodparam(\"siptrace\", \"hep_version\", 3)\n\
modparam(\"siptrace\", \"trace_to_database\", 0)\nmodparam(\"siptrace\", \"trace_on\", 1)\n\
modparam(\"siptrace\", \"trace_mode\", 1)\n"
        ),
    );
    phone(&a, PHONE_IP);
    attack(
        &a,
        &["svwar", "-e100-110", "-m", "REGISTER", "--force", SERVER],
    );
    run_in(&b, move || {
        let Some(t) = wait_in_set("t4", ATTACKER, Duration::from_secs(10)) else {
            panic!("{ATTACKER} not in the set; log:\n{}", d.log());
        };
        eprintln!("siptrace: svwar banned {t:?} after it finished");
        d.wait_log("sip_wire: 1 new bans, 1 added", Duration::from_secs(5));
        assert!(
            !in_set("t4", PHONE_IP),
            "the phone was banned; log:\n{}",
            d.log()
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        while counter(&d.log(), " HEP datagrams") == 0 {
            assert!(
                Instant::now() < deadline,
                "no HEP counted; log:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            counter(&d.log(), " from non-peers ignored"),
            0,
            "{}",
            d.log()
        );
        assert!(d.stop().success());
    });
}

/// SIGHUP with a changed `sip_wire` section moves the listener: the old port is closed, the
/// new one is read, and a scanner seen there is banned.
#[test]
fn a_reload_moves_the_hep_listener() {
    let ns = netns_or_skip!();
    local_addresses(&ns);
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let hep = |port: u16| format!("  hep: {{ listen: \"{PEER}:{port}\", peers: [{PEER}] }}\n");
        config(dir.path(), &hep(9060));
        let d = started(dir.path());
        config(dir.path(), &hep(9061));
        d.signal(libc::SIGHUP);
        d.wait_log(
            &format!("sip_wire: HEP on udp {PEER}:9061"),
            Duration::from_secs(10),
        );
        let listening = |port: u16| {
            let o = Command::new("ss")
                .args(["-Hun", "state", "all", "sport", &format!("= :{port}")])
                .output()
                .unwrap();
            !o.stdout.is_empty()
        };
        assert!(!listening(9060), "the old listener is still open");
        let agent = Agent::new(PEER, &format!("{PEER}:9061"));
        agent.send(
            "45.30.0.1",
            PBX,
            &req("OPTIONS", "100", "hup", 1, false, "friendly-scanner"),
        );
        let Some(_) = wait_in_set("t4", "45.30.0.1", Duration::from_secs(5)) else {
            panic!("not banned after the reload; log:\n{}", d.log());
        };
        assert!(d.stop().success());
    });
}

/// With `capture_password` (Asterisk's `hep.conf`), a peer's datagram without it, or with a
/// wrong one, is refused and counted; with it, read. `status` shows the counters the daemon
/// saved, and never the password.
#[test]
fn hep_without_the_capture_password_is_refused_and_counted() {
    let ns = netns_or_skip!();
    local_addresses(&ns);
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        config(
            dir.path(),
            &format!("  hep: {{ listen: \"{PEER}:9060\", peers: [{PEER}], capture_password: \"s3cret-pw\" }}\n"),
        );
        let d = started(dir.path());
        let peer = Agent::new(PEER, &format!("{PEER}:9060"));
        let scanner = |callid: &str| req("OPTIONS", "100", callid, 1, false, "friendly-scanner");
        // No key, a wrong key: a scanner named in them is not banned.
        peer.send("45.22.0.1", PBX, &scanner("nokey"));
        peer.send_keyed("45.22.0.2", PBX, &scanner("wrongkey"), b"s3cret-pX");
        peer.send_keyed("45.22.0.3", PBX, &scanner("prefix"), b"s3cret");
        // The right key (as Asterisk sends it, NUL-terminated): banned at once.
        peer.send_keyed("45.22.0.9", PBX, &scanner("key"), b"s3cret-pw\0");
        let Some(_) = wait_in_set("t4", "45.22.0.9", Duration::from_secs(5)) else {
            panic!("the keyed scanner was not banned; log:\n{}", d.log());
        };
        for refused in ["45.22.0.1", "45.22.0.2", "45.22.0.3"] {
            assert!(
                !in_set("t4", refused),
                "{refused} banned:\n{}",
                members("t4")
            );
        }
        assert!(d.stop().success());
        // Saved when the daemon stopped: status shows the counters.
        let o = crate::common::run::sipban(dir.path(), &["status", "--json"]);
        let j = crate::common::run::json(&o);
        let c = &j["sip_wire"]["counters"];
        assert_eq!(c["hep_unauthenticated"], 3, "{}", j["sip_wire"]);
        assert_eq!(c["hep"], 1, "{}", j["sip_wire"]);
        let o = crate::common::run::sipban(dir.path(), &["status"]);
        let text = crate::common::run::text(&o);
        assert!(text.contains("3 without the capture password"), "{text}");
        let log = d_log_and_state(dir.path());
        assert!(!log.contains("s3cret"), "the password leaked:\n{log}");
    });
}

/// Everything sipban wrote: the daemon's log, `config check`, `status` in both forms, and the
/// state database's bytes (lossy).
fn d_log_and_state(dir: &Path) -> String {
    let mut all = std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
    for args in [
        &["config", "check"][..],
        &["config", "check", "--json"],
        &["status", "--json"],
    ] {
        all += &crate::common::run::text(&crate::common::run::sipban(dir, args));
    }
    all += &String::from_utf8_lossy(&std::fs::read(dir.join("state/state.db")).unwrap_or_default());
    all
}

/// The daemon attributes Asterisk's IP-less `Timeout on <Call-ID>` lines through the Call-IDs
/// it saw over HEP (no SIP debug in any log), across a restart: the scanner's two timeouts
/// (one before the restart, one after, its INVITE seen before) reach the Asterisk detector's
/// maxretry and ban it; a phone that authenticated on its Call-ID is never attributed.
#[test]
fn the_daemon_attributes_timeouts_through_hep_call_ids_across_a_restart() {
    let ns = netns_or_skip!();
    local_addresses(&ns);
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let messages = p.join("messages");
        std::fs::write(&messages, "").unwrap();
        // The wire detector's own thresholds out of reach: only the Timeout lines can ban.
        std::fs::write(
            p.join("config.yaml"),
            format!(
                "state_dir: {state}\nsets:\n  v4: {{ name: t4, cap: 1000 }}\n  v6: {{ name: t6, cap: 1000 }}\ndaemon:\n  sync_schedule: \"0 0 0 1 1 *\"\nasterisk:\n  logs: [{log}]\n  maxretry: 2\nsip_wire:\n  hep: {{ listen: \"{PEER}:9060\", peers: [{PEER}] }}\n  maxretry: 100\n",
                state = p.join("state").display(),
                log = messages.display()
            ),
        )
        .unwrap();
        let d = started(p);
        let agent = Agent::new(PEER, &format!("{PEER}:9060"));
        let (scanner, phone) = ("45.23.0.1", "45.23.0.2");
        // Desk-phone User-Agents: no signature. The scanner's INVITEs are rejected, never
        // authenticated; the phone's carries its digest.
        for c in ["scan-a", "scan-b"] {
            agent.send(scanner, PBX, &req("INVITE", "00441234", c, 1, false, PHONE));
            agent.send(PBX, scanner, &resp(401, c, 1, "INVITE"));
        }
        agent.send(phone, PBX, &req("INVITE", "300", "call-1", 2, true, PHONE));
        agent.send(PBX, phone, &resp(404, "call-1", 2, "INVITE"));
        await_read(9060);
        let timeout = |callid: &str| {
            let stamp = sipban::inspect::fmt_time(i64::from(now())).replace(" UTC", "");
            format!("[{stamp}] WARNING[686] chan_sip.c: Timeout on {callid}@phone on non-critical invite transaction.\n")
        };
        crate::common::lines::append(&messages, &(timeout("scan-a") + &timeout("call-1")));
        // One failure of two: counting, not banned.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let j = crate::common::run::json(&crate::common::run::sipban(p, &["status", "--json"]));
            let failing = &j["detectors"][0]["failing"];
            if failing["total"] == 1 {
                assert_eq!(failing["top"][0]["ip"], scanner, "{failing}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no failure counted: {failing}\nlog:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!in_set("t4", scanner));
        // Restart: the map is saved on SIGTERM and restored.
        assert!(d.stop().success());
        let d = Daemon::start(p);
        d.wait_log("Call-IDs restored from the state", Duration::from_secs(10));
        d.wait_log("sync ok", Duration::from_secs(30));
        crate::common::lines::append(&messages, &timeout("scan-b"));
        let Some(_) = wait_in_set("t4", scanner, Duration::from_secs(5)) else {
            panic!(
                "{scanner} not banned after its second timeout; log:\n{}",
                d.log()
            );
        };
        assert!(!in_set("t4", phone), "the phone was banned");
        let o = crate::common::run::sipban(p, &["explain", scanner]);
        let text = crate::common::run::text(&o);
        assert!(text.contains("listed by asterisk"), "{text}");
        assert!(d.stop().success());
    });
}
