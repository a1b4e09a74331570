//! `sipban firewall install|remove|status` against the real kernel, with real packets: two
//! network namespaces joined by a veth pair, a "pbx" that runs sipban and a "peer" that sends
//! from a banned and from an allowed address, over IPv4 and IPv6, UDP and TCP.
//!
//! Addresses are documentation prefixes that exist only inside the two private namespaces:
//! the pbx is on 192.0.2.0/24 and 2001:db8:99::/64, the peer's addresses are on another
//! network (198.51.100.0/24, 2001:db8:98::/64) routed over the link, because a feed never
//! bans an address on the pbx's own networks.
//! inside the two private namespaces.

use crate::common::run::{bin, text};

use crate::common::netns::{require_program, run_in, NetNs};
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const PBX4: &str = "192.0.2.1";
const BANNED4: &str = "198.51.100.2";
const ALLOWED4: &str = "198.51.100.3";
const PBX6: &str = "2001:db8:99::1";
const BANNED6: &str = "2001:db8:98::2";
const ALLOWED6: &str = "2001:db8:98::3";
const UDP4: u16 = 5060;
const UDP6: u16 = 5062;
const TCP4: u16 = 5060;
const TCP6: u16 = 5062;

/// Run sipban in `ns` with the config in `dir`.
pub(crate) fn sipban(ns: &NetNs, dir: &Path, args: &[&str]) -> Output {
    let mut argv: Vec<String> = vec![bin().display().to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    argv.push("--config".into());
    argv.push(dir.join("config.yaml").display().to_string());
    ns.exec(&argv)
}

pub(crate) fn sipban_ok(ns: &NetNs, dir: &Path, args: &[&str]) -> String {
    let o = sipban(ns, dir, args);
    assert_eq!(o.status.code(), Some(0), "sipban {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The pbx and the peer, joined by a veth pair; the peer holds a banned and an allowed address
/// of each family, on networks the pbx reaches through the link (not its own).
pub(crate) struct Link {
    pub(crate) pbx: NetNs,
    pub(crate) peer: NetNs,
}

pub(crate) fn link_or_skip() -> Option<Link> {
    let pbx = crate::common::netns::require_netns()?;
    for p in ["iptables", "ip6tables", "iptables-nft", "nft", "ipset"] {
        if !require_program(p) {
            return None;
        }
    }
    let peer = NetNs::new();
    peer.exec_ok(&[
        "ip",
        "link",
        "add",
        "vp",
        "type",
        "veth",
        "peer",
        "name",
        "vb",
        "netns",
        pbx.name(),
    ]);
    for a in [
        vec!["ip", "addr", "add", "192.0.2.1/24", "dev", "vb"],
        vec![
            "ip",
            "-6",
            "addr",
            "add",
            "2001:db8:99::1/64",
            "dev",
            "vb",
            "nodad",
        ],
        vec!["ip", "link", "set", "vb", "up"],
        vec!["ip", "route", "add", "198.51.100.0/24", "dev", "vb"],
        vec!["ip", "-6", "route", "add", "2001:db8:98::/64", "dev", "vb"],
    ] {
        pbx.exec_ok(&a);
    }
    for a in [
        vec!["ip", "addr", "add", "198.51.100.2/24", "dev", "vp"],
        vec!["ip", "addr", "add", "198.51.100.3/24", "dev", "vp"],
        vec![
            "ip",
            "-6",
            "addr",
            "add",
            "2001:db8:98::2/64",
            "dev",
            "vp",
            "nodad",
        ],
        vec![
            "ip",
            "-6",
            "addr",
            "add",
            "2001:db8:98::3/64",
            "dev",
            "vp",
            "nodad",
        ],
        vec!["ip", "link", "set", "vp", "up"],
        vec!["ip", "route", "add", "192.0.2.0/24", "dev", "vp"],
        vec!["ip", "-6", "route", "add", "2001:db8:99::/64", "dev", "vp"],
    ] {
        peer.exec_ok(&a);
    }
    Some(Link { pbx, peer })
}

/// The admin's own ruleset on the pbx: accept established flows first, then SIP, drop the rest
/// (ICMPv6 for neighbour discovery), plus an unrelated nft table of their own.
fn admin_ruleset(pbx: &NetNs) {
    for t in ["iptables", "ip6tables"] {
        pbx.exec_ok(&[
            t,
            "-A",
            "INPUT",
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "ACCEPT",
        ]);
        pbx.exec_ok(&[t, "-A", "INPUT", "-i", "lo", "-j", "ACCEPT"]);
        for proto in ["udp", "tcp"] {
            pbx.exec_ok(&[
                t,
                "-A",
                "INPUT",
                "-p",
                proto,
                "-m",
                "multiport",
                "--dports",
                "5060,5062",
                "-j",
                "ACCEPT",
            ]);
        }
    }
    pbx.exec_ok(&[
        "ip6tables",
        "-A",
        "INPUT",
        "-p",
        "ipv6-icmp",
        "-j",
        "ACCEPT",
    ]);
    for t in ["iptables", "ip6tables"] {
        pbx.exec_ok(&[t, "-P", "INPUT", "DROP"]);
    }
    pbx.exec_ok(&["nft", "add", "table", "inet", "mine"]);
    pbx.exec_ok(&[
        "nft",
        "add chain inet mine c { type filter hook input priority 10 ; policy accept ; }",
    ]);
    pbx.exec_ok(&["nft", "add rule inet mine c udp dport 9999 counter drop"]);
}

/// `iptables-save`, `ip6tables-save` and `nft list ruleset` with counters and timestamps
/// blanked (packets change them; nothing else may change).
fn ruleset(pbx: &NetNs) -> String {
    let mut out = String::new();
    for argv in [
        vec!["iptables-save"],
        vec!["ip6tables-save"],
        vec!["nft", "list", "ruleset"],
    ] {
        let o = pbx.exec_ok(&argv);
        out.push_str(&format!("### {}\n", argv.join(" ")));
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            if line.starts_with('#') {
                continue;
            }
            out.push_str(&blank_counters(line));
            out.push('\n');
        }
    }
    out
}

fn blank_counters(line: &str) -> String {
    // iptables-save chain lines end in `[packets:bytes]`; nft prints `packets N bytes M`.
    let line = match (line.starts_with(':'), line.rfind(" [")) {
        (true, Some(i)) => format!("{} [*]", &line[..i]),
        _ => line.to_string(),
    };
    let mut words: Vec<String> = line.split(' ').map(str::to_string).collect();
    for i in 1..words.len() {
        if (words[i - 1] == "packets" || words[i - 1] == "bytes")
            && words[i].chars().all(|c| c.is_ascii_digit())
        {
            words[i] = "*".into();
        }
    }
    words.join(" ")
}

fn setup_sipban(link: &Link) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(&list, format!("{BANNED4}\n{BANNED6}\n")).unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        format!(
            "state_dir: {}\nsets:\n  v4: {{ name: ban4, cap: 100 }}\n  v6: {{ name: ban6, cap: 100 }}\nfeeds:\n  - {{ name: f, url: 'file://{}', ttl: 1d }}\n",
            dir.path().join("state").display(),
            list.display()
        ),
    )
    .unwrap();
    sipban_ok(&link.pbx, dir.path(), &["sync"]);
    dir
}

/// Listening sockets on the pbx (they stay in its namespace after the thread that made them
/// ends).
pub(crate) struct Listeners {
    udp4: UdpSocket,
    udp6: UdpSocket,
    _tcp4: TcpListener,
    _tcp6: TcpListener,
}

pub(crate) fn listen(pbx: &NetNs) -> Listeners {
    run_in(pbx, || {
        let udp4 = UdpSocket::bind((PBX4, UDP4)).unwrap();
        let udp6 = UdpSocket::bind((PBX6, UDP6)).unwrap();
        for u in [&udp4, &udp6] {
            // Only a guard against a hang when a test is broken; no assert depends on it.
            u.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        }
        Listeners {
            udp4,
            udp6,
            _tcp4: TcpListener::bind((PBX4, TCP4)).unwrap(),
            _tcp6: TcpListener::bind((PBX6, TCP6)).unwrap(),
        }
    })
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// The peer's sockets, one bound to each of its addresses, per family.
pub(crate) struct Senders {
    banned4: UdpSocket,
    allowed4: UdpSocket,
    banned6: UdpSocket,
    allowed6: UdpSocket,
}

pub(crate) fn senders(peer: &NetNs) -> Senders {
    run_in(peer, || Senders {
        banned4: UdpSocket::bind((BANNED4, 0)).unwrap(),
        allowed4: UdpSocket::bind((ALLOWED4, 0)).unwrap(),
        banned6: UdpSocket::bind((BANNED6, 0)).unwrap(),
        allowed6: UdpSocket::bind((ALLOWED6, 0)).unwrap(),
    })
}

/// Send one datagram from `banned` and then one from `allowed` to `to`, and return the source
/// of the first datagram `listener` receives. The veth pair and the socket queue keep order, so
/// when the banned datagram is not dropped it is the one received first: no waiting for
/// something not to happen.
fn first_arrival(
    listener: &UdpSocket,
    banned: &UdpSocket,
    allowed: &UdpSocket,
    to: SocketAddr,
) -> SocketAddr {
    banned.send_to(b"banned", to).unwrap();
    allowed.send_to(b"allowed", to).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = listener
        .recv_from(&mut buf)
        .expect("a datagram reaches the pbx");
    let first = from;
    let body = String::from_utf8_lossy(&buf[..n]).to_string();
    if body == "banned" {
        // Drain the allowed one so the next round starts empty.
        let _ = listener.recv_from(&mut buf);
    }
    first
}

pub(crate) fn udp_both_pass(l: &Listeners, s: &Senders) {
    // Before the rule: everything arrives, the banned datagram first.
    assert_eq!(
        first_arrival(&l.udp4, &s.banned4, &s.allowed4, addr(PBX4, UDP4)).ip(),
        BANNED4.parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(
        first_arrival(&l.udp6, &s.banned6, &s.allowed6, addr(PBX6, UDP6)).ip(),
        BANNED6.parse::<std::net::IpAddr>().unwrap()
    );
}

pub(crate) fn udp_banned_dropped(l: &Listeners, s: &Senders) {
    assert_eq!(
        first_arrival(&l.udp4, &s.banned4, &s.allowed4, addr(PBX4, UDP4)).ip(),
        ALLOWED4.parse::<std::net::IpAddr>().unwrap(),
        "the banned IPv4 datagram arrived"
    );
    assert_eq!(
        first_arrival(&l.udp6, &s.banned6, &s.allowed6, addr(PBX6, UDP6)).ip(),
        ALLOWED6.parse::<std::net::IpAddr>().unwrap(),
        "the banned IPv6 datagram arrived"
    );
    // Nothing else is queued: the banned datagrams did not come late either.
    for u in [&l.udp4, &l.udp6] {
        u.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        let e = u.recv_from(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock);
        u.set_nonblocking(false).unwrap();
    }
}

/// TCP from `src` to `to`: the peer's route to the pbx names the source address, so the kernel
/// uses it for the connection.
fn tcp_connect(peer: &NetNs, src: &str, to: SocketAddr, timeout: Duration) -> std::io::Result<()> {
    let (v, plen) = if to.is_ipv4() {
        ("-4", 32)
    } else {
        ("-6", 128)
    };
    peer.exec_ok(&[
        "ip",
        v,
        "route",
        "replace",
        &format!("{}/{plen}", to.ip()),
        "dev",
        "vp",
        "src",
        src,
    ]);
    run_in(peer, move || {
        TcpStream::connect_timeout(&to, timeout).map(|_| ())
    })
}

pub(crate) fn tcp_check(peer: &NetNs, banned_dropped: bool) {
    for (banned, allowed, to) in [
        (BANNED4, ALLOWED4, addr(PBX4, TCP4)),
        (BANNED6, ALLOWED6, addr(PBX6, TCP6)),
    ] {
        tcp_connect(peer, allowed, to, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("allowed {allowed} -> {to}: {e}"));
        let r = tcp_connect(peer, banned, to, Duration::from_secs(2));
        if banned_dropped {
            // A dropped SYN times out (a reject would be refused instead).
            let e = r.expect_err("the banned source connected");
            assert_eq!(e.kind(), ErrorKind::TimedOut, "{banned} -> {to}: {e}");
        } else {
            r.unwrap_or_else(|e| panic!("{banned} -> {to} before the rule: {e}"));
        }
    }
}

#[test]
fn install_drops_banned_udp_and_tcp_first_in_input_and_remove_restores_the_ruleset() {
    let Some(link) = link_or_skip() else { return };
    admin_ruleset(&link.pbx);
    let dir = setup_sipban(&link);
    let listeners = listen(&link.pbx);
    let s = senders(&link.peer);
    let original = ruleset(&link.pbx);

    // The sets hold the banned addresses, but no rule uses them yet.
    udp_both_pass(&listeners, &s);
    tcp_check(&link.peer, false);
    // An established UDP flow from the banned source: the pbx answers it.
    for (l, b) in [(&listeners.udp4, &s.banned4), (&listeners.udp6, &s.banned6)] {
        l.send_to(b"reply", b.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 16];
        b.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        b.recv_from(&mut buf).expect("the reply reaches the peer");
    }

    let dry = sipban_ok(&link.pbx, dir.path(), &["firewall", "install", "--dry-run"]);
    assert!(dry.contains("iptables -w -t filter -I INPUT 1"), "{dry}");
    assert_eq!(
        ruleset(&link.pbx),
        original,
        "--dry-run changed the ruleset"
    );

    sipban_ok(&link.pbx, dir.path(), &["firewall", "install"]);
    let installed = ruleset(&link.pbx);
    for (tool, set) in [("iptables", "ban4"), ("ip6tables", "ban6")] {
        let o = link.pbx.exec_ok(&[tool, "-S", "INPUT"]);
        let listing = String::from_utf8_lossy(&o.stdout).to_string();
        let first = listing.lines().nth(1).unwrap_or("");
        assert_eq!(
            first,
            format!("-A INPUT -m set --match-set {set} src -m comment --comment sipban -j DROP"),
            "not first in INPUT:\n{listing}"
        );
    }
    // The banned source is cut, its established flow included; others pass.
    udp_banned_dropped(&listeners, &s);
    tcp_check(&link.peer, true);

    // Twice adds nothing.
    let again = sipban_ok(&link.pbx, dir.path(), &["firewall", "install"]);
    assert!(again.contains("already in place"), "{again}");
    assert_eq!(
        ruleset(&link.pbx),
        installed,
        "a second install changed the ruleset"
    );

    let status = sipban_ok(&link.pbx, dir.path(), &["firewall", "status", "--json"]);
    let j: serde_json::Value = serde_json::from_str(&status).unwrap();
    let input: Vec<_> = j["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["place"] == "input")
        .collect();
    assert_eq!(input.len(), 2, "{status}");
    for r in input {
        assert_eq!(r["position"], 1, "{status}");
        assert_eq!(r["shadowed_by"].as_array().unwrap().len(), 0, "{status}");
    }

    sipban_ok(&link.pbx, dir.path(), &["firewall", "remove"]);
    assert_eq!(
        ruleset(&link.pbx),
        original,
        "remove did not restore the ruleset"
    );
    udp_both_pass(&listeners, &s);
    // Remove leaves the sets (a sync keeps filling them).
    assert!(link
        .pbx
        .exec(&["ipset", "list", "-n"])
        .stdout
        .starts_with(b"ban4"));
    // A remove with nothing installed changes nothing and says so.
    let none = sipban_ok(&link.pbx, dir.path(), &["firewall", "remove"]);
    assert!(none.contains("no sipban rule is installed"), "{none}");
    assert_eq!(ruleset(&link.pbx), original);
}

#[test]
fn raw_prerouting_with_the_nft_backend_drops_and_remove_deletes_the_tables_it_created() {
    let Some(link) = link_or_skip() else { return };
    // A box whose own firewall is nft only, with no raw table and no iptables tables at all.
    link.pbx.exec_ok(&["nft", "add", "table", "inet", "mine"]);
    link.pbx.exec_ok(&[
        "nft",
        "add chain inet mine c { type filter hook input priority 10 ; policy accept ; }",
    ]);
    link.pbx
        .exec_ok(&["nft", "add rule inet mine c ct state established accept"]);
    let dir = setup_sipban(&link);
    let listeners = listen(&link.pbx);
    let s = senders(&link.peer);
    let original = ruleset(&link.pbx);
    udp_both_pass(&listeners, &s);

    sipban_ok(
        &link.pbx,
        dir.path(),
        &["firewall", "install", "--raw", "--backend", "nft"],
    );
    let nft =
        String::from_utf8_lossy(&link.pbx.exec_ok(&["nft", "list", "ruleset"]).stdout).to_string();
    assert!(
        nft.contains("table ip raw") && nft.contains("table ip6 raw"),
        "{nft}"
    );
    assert!(
        nft.contains("xt match \"set\"") || nft.contains("xt match set"),
        "{nft}"
    );
    let installed = ruleset(&link.pbx);
    udp_banned_dropped(&listeners, &s);
    tcp_check(&link.peer, true);

    sipban_ok(
        &link.pbx,
        dir.path(),
        &["firewall", "install", "--raw", "--backend", "nft"],
    );
    assert_eq!(
        ruleset(&link.pbx),
        installed,
        "a second install changed the ruleset"
    );

    // Status reads what install recorded (the nft backend) by itself.
    let status = sipban_ok(&link.pbx, dir.path(), &["firewall", "status"]);
    assert!(status.contains("backend: nft"), "{status}");
    assert!(
        status.contains("v4 raw PREROUTING: drops set ban4 (rule 1)"),
        "{status}"
    );

    let dry = sipban_ok(&link.pbx, dir.path(), &["firewall", "remove", "--dry-run"]);
    for line in [
        "iptables-nft -w -t raw -D PREROUTING -m set --match-set ban4 src",
        "nft delete table ip raw",
        "nft delete table ip6 raw",
    ] {
        assert!(dry.contains(line), "{dry}");
    }
    assert_eq!(
        ruleset(&link.pbx),
        installed,
        "--dry-run changed the ruleset"
    );

    sipban_ok(&link.pbx, dir.path(), &["firewall", "remove"]);
    assert_eq!(
        ruleset(&link.pbx),
        original,
        "remove did not restore the ruleset"
    );
    udp_both_pass(&listeners, &s);
}

#[test]
fn status_says_when_an_established_accept_comes_first_and_install_moves_the_rule_back() {
    let Some(link) = link_or_skip() else { return };
    let dir = setup_sipban(&link);
    sipban_ok(&link.pbx, dir.path(), &["firewall", "install"]);
    let ok = sipban(&link.pbx, dir.path(), &["firewall", "status"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    // The admin later puts an established accept above it.
    link.pbx.exec_ok(&[
        "iptables",
        "-I",
        "INPUT",
        "1",
        "-m",
        "conntrack",
        "--ctstate",
        "ESTABLISHED,RELATED",
        "-j",
        "ACCEPT",
    ]);
    let o = sipban(&link.pbx, dir.path(), &["firewall", "status"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("v4 filter INPUT: drops set ban4 (rule 2) but AFTER 1 rule(s)"),
        "{out}"
    );
    // install puts it back on top, with no second copy, and says so.
    let dry = sipban_ok(&link.pbx, dir.path(), &["firewall", "install", "--dry-run"]);
    assert!(dry.contains("iptables -w -t filter -D INPUT 3"), "{dry}");
    let moved = sipban_ok(&link.pbx, dir.path(), &["firewall", "install"]);
    assert!(moved.contains("move the v4 rule"), "{moved}");
    let o = link.pbx.exec_ok(&["iptables", "-S", "INPUT"]);
    let listing = String::from_utf8_lossy(&o.stdout).to_string();
    let rules: Vec<&str> = listing.lines().filter(|l| l.starts_with("-A ")).collect();
    assert_eq!(
        rules,
        [
            "-A INPUT -m set --match-set ban4 src -m comment --comment sipban -j DROP",
            "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        ]
    );
    let o = sipban(&link.pbx, dir.path(), &["firewall", "status"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_sync_forgets_the_conntrack_entries_of_newly_banned_sources() {
    let Some(link) = link_or_skip() else { return };
    if !require_program("conntrack") {
        return;
    }
    // Connection tracking runs in a namespace once a rule uses it.
    admin_ruleset(&link.pbx);
    let listeners = listen(&link.pbx);
    let s = senders(&link.peer);
    // Real flows from both peer addresses, answered by the pbx.
    for (l, b, a, to) in [
        (&listeners.udp4, &s.banned4, &s.allowed4, addr(PBX4, UDP4)),
        (&listeners.udp6, &s.banned6, &s.allowed6, addr(PBX6, UDP6)),
    ] {
        first_arrival(l, b, a, to);
        l.send_to(b"reply", b.local_addr().unwrap()).unwrap();
        l.send_to(b"reply", a.local_addr().unwrap()).unwrap();
    }
    let flows = |ns: &NetNs| -> String {
        let o = ns.exec(&["conntrack", "-L"]);
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let before = flows(&link.pbx);
    for ip in [BANNED4, ALLOWED4, BANNED6, ALLOWED6] {
        assert!(
            before.contains(&format!("src={ip} ")),
            "{ip} not tracked:\n{before}"
        );
    }
    // A sync that bans the two banned addresses forgets their flows, and only theirs.
    let _dir = setup_sipban(&link);
    let after = flows(&link.pbx);
    for ip in [BANNED4, BANNED6] {
        assert!(
            !after.contains(&format!("src={ip} ")),
            "{ip} still tracked:\n{after}"
        );
    }
    for ip in [ALLOWED4, ALLOWED6] {
        assert!(
            after.contains(&format!("src={ip} ")),
            "{ip} was forgotten too:\n{after}"
        );
    }
}

/// sipban with `iptables`/`ip6tables` on `PATH` pointing at the legacy (x_tables) variants, as
/// on a box whose alternatives select iptables-legacy.
fn sipban_legacy(link: &Link, dir: &Path, args: &[&str]) -> String {
    let shim = dir.join("legacy-bin");
    if !shim.exists() {
        std::fs::create_dir_all(&shim).unwrap();
        for (name, target) in [
            ("iptables", "/usr/sbin/iptables-legacy"),
            ("ip6tables", "/usr/sbin/ip6tables-legacy"),
        ] {
            std::os::unix::fs::symlink(target, shim.join(name)).unwrap();
        }
    }
    let path = format!(
        "{}:{}",
        shim.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut argv: Vec<String> = vec![bin().display().to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    argv.push("--config".into());
    argv.push(dir.join("config.yaml").display().to_string());
    let full = link.pbx.wrap(&argv);
    let o = Command::new(&full[0])
        .args(&full[1..])
        .env("PATH", path)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "sipban {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn legacy_ruleset(pbx: &NetNs) -> String {
    let mut out = String::new();
    for t in ["iptables-legacy-save", "ip6tables-legacy-save"] {
        let o = pbx.exec_ok(&[t]);
        out.push_str(&format!("### {t}\n"));
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            if !line.starts_with('#') {
                out.push_str(&blank_counters(line));
                out.push('\n');
            }
        }
    }
    out
}

#[test]
fn with_iptables_legacy_install_drops_and_remove_restores_the_ruleset() {
    let Some(link) = link_or_skip() else { return };
    for p in [
        "iptables-legacy",
        "ip6tables-legacy",
        "iptables-legacy-save",
    ] {
        if !require_program(p) {
            return;
        }
    }
    for t in ["iptables-legacy", "ip6tables-legacy"] {
        link.pbx.exec_ok(&[
            t,
            "-A",
            "INPUT",
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "ACCEPT",
        ]);
    }
    let dir = setup_sipban(&link);
    let listeners = listen(&link.pbx);
    let s = senders(&link.peer);
    let original = legacy_ruleset(&link.pbx);
    udp_both_pass(&listeners, &s);

    sipban_legacy(&link, dir.path(), &["firewall", "install"]);
    let installed = legacy_ruleset(&link.pbx);
    assert!(
        installed.contains("-A INPUT -m set --match-set ban4 src -m comment --comment sipban -j DROP\n-A INPUT -m conntrack"),
        "{installed}"
    );
    udp_banned_dropped(&listeners, &s);
    tcp_check(&link.peer, true);
    sipban_legacy(&link, dir.path(), &["firewall", "install"]);
    assert_eq!(legacy_ruleset(&link.pbx), installed);
    let status = sipban_legacy(&link, dir.path(), &["firewall", "status"]);
    assert!(
        status.contains("v6 filter INPUT: drops set ban6 (rule 1)"),
        "{status}"
    );

    sipban_legacy(&link, dir.path(), &["firewall", "remove"]);
    // Exactly as before: status and remove did not even register the raw table.
    assert_eq!(legacy_ruleset(&link.pbx), original);
    udp_both_pass(&listeners, &s);
}

#[test]
fn an_empty_conntrack_table_is_not_listed() {
    let Some(ns) = crate::common::netns::require_netns() else {
        return;
    };
    // A fresh namespace tracks no flows: nothing to forget, and no `conntrack` process.
    let added: Vec<ipnet::IpNet> = vec!["192.0.2.7/32".parse().unwrap()];
    let f = run_in(&ns, move || {
        sipban::backend::conntrack::forget_sources(&added).unwrap()
    });
    assert_eq!(f.flows, 0);
    let why = f.skipped.unwrap_or_default();
    assert!(
        why == "no tracked flows" || why == "connection tracking is not loaded",
        "{why:?}"
    );
}
