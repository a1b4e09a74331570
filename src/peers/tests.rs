use super::*;

fn n(t: &str) -> Host {
    Host::Net(net::parse_net(t).unwrap())
}

fn name(t: &str) -> Host {
    Host::Name(t.into())
}

#[test]
fn sip_uris() {
    for (uri, want) in [
        ("sip:trunk.example.com", name("trunk.example.com")),
        (
            "sips:1234@Trunk.Example.com:5061;transport=tls",
            name("trunk.example.com"),
        ),
        ("<sip:user@[2001:db8::1]:5060>", n("2001:db8::1")),
        ("\"Trunk\" <sip:[2001:db8::2]>;q=1", n("2001:db8::2")),
        ("sip:45.1.2.3:5060", n("45.1.2.3")),
        ("SIP:45.1.2.4", n("45.1.2.4")),
        ("proxy.example.com:5060", name("proxy.example.com")),
        ("sip:proxy.example.com;lr", name("proxy.example.com")),
        (
            "sip:u@host.example.com?X-Header=a@b",
            name("host.example.com"),
        ),
        ("2001:db8::3", n("2001:db8::3")),
        ("45.1.2.5", n("45.1.2.5")),
        ("trunk.example.com.", name("trunk.example.com")),
    ] {
        assert_eq!(uri_host(uri), Ok(want), "{uri}");
    }
    for bad in [
        "tel:+123456",
        "http://example.com/",
        "sip:",
        "sip:a b",
        "sip:1.2.3",
    ] {
        assert!(uri_host(bad).is_err_and(|e| !e.is_empty()), "{bad}");
    }
    // Loopback and other special space: silently not a peer.
    assert_eq!(uri_host("sip:127.0.0.1:5080"), Err(String::new()));
    assert_eq!(uri_host("sip:[::1]"), Err(String::new()));
}

#[test]
fn register_lines() {
    for (line, want) in [
        ("1000:secret@45.30.0.1:5060/100", n("45.30.0.1")),
        (
            "mypeer?udp://user@domain.example:secret:authuser@Host.Example.com:5080/ext~3600",
            name("host.example.com"),
        ),
        ("user:p@ss@45.1.1.1", n("45.1.1.1")),
        ("user@[2001:db8::9]:5060", n("2001:db8::9")),
        ("user:[mykey]@iax.example.net", name("iax.example.net")),
        ("tls://user:pw@sip.example.org", name("sip.example.org")),
    ] {
        assert_eq!(register_host(line), Ok(want), "{line}");
    }
    assert!(register_host("nohost").is_err());
    assert!(register_host("user@").is_err());
}

#[test]
fn identify_matches() {
    for (m, want) in [
        ("45.20.0.0/28", n("45.20.0.0/28")),
        ("45.20.0.0/255.255.255.240", n("45.20.0.0/28")),
        ("45.20.1.1:5060", n("45.20.1.1")),
        ("[2001:db8::1]:5060", n("2001:db8::1")),
        ("2001:db8::/48", n("2001:db8::/48")),
        ("sip.example.com", name("sip.example.com")),
        ("sip.example.com:5060", name("sip.example.com")),
    ] {
        assert_eq!(match_host(m), Ok(want), "{m}");
    }
    for bad in [
        "45.0.0.0/8",
        "0.0.0.0/0",
        "2001:db8::/16",
        "1.2.3.0/255.0.255.0",
        "1.2.3",
    ] {
        assert!(match_host(bad).is_err_and(|e| !e.is_empty()), "{bad}");
    }
    assert!(match_host("45.0.0.0/8")
        .unwrap_err()
        .contains("broader than /16"));
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

fn hosts(p: &Peers) -> Vec<(String, String)> {
    p.peers
        .iter()
        .map(|p| {
            let h = match &p.host {
                Host::Net(n) => net::display_net(n),
                Host::Name(s) => s.clone(),
            };
            (h, p.what.clone())
        })
        .collect()
}

#[test]
fn the_peers_of_a_configuration_directory() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("pjsip.d")).unwrap();
    write(
        d.path(),
        "pjsip.conf",
        "[transport-udp]\ntype=transport\nbind=0.0.0.0\n#include pjsip.d/*.conf\n\
         [6001](!)\ntype=endpoint\noutbound_proxy=sip:unused.example.com\n\
         [6001-real](6001)\n\
         [unused](!)\ntype=registration\nserver_uri=sip:template-only.example.com\n",
    );
    write(
        d.path().join("pjsip.d").as_path(),
        "trunk.conf",
        "[reg-tmpl](!)\ntype=registration\noutbound_proxy=sip:proxy.example.com\\;lr\n\
         [trunk](reg-tmpl)\nserver_uri=sip:trunk.example.com:5060\n\
         [trunk]\ntype=aor\ncontact=sip:1@45.2.2.2:5060, sip:[2001:db8:5::1]\n\
         [trunk]\ntype=identify\nendpoint=trunk\nmatch = 45.3.3.0/24,45.3.4.4 ; the provider\n\
         match=45.0.0.0/8\n",
    );
    write(
        d.path(),
        "pjsip_wizard.conf",
        "[wiz](!)\ntype=wizard\n[mytrunk](wiz)\nremote_hosts=45.4.4.4:5060, wiz.example.com\n",
    );
    write(
        d.path(),
        "sip.conf",
        "[general]\nbindaddr=0.0.0.0\nregister => 1000:secret@45.5.5.5:5060/100\n\
         [peer-tmpl](!)\ntype=peer\nhost=45.6.6.6\n[old-trunk](peer-tmpl)\n\
         [phone]\ntype=friend\nhost=dynamic\n[proxy]\ntype=peer\nhost=sip.example.net\n\
         outboundproxy=outproxy.example.net:5060\n",
    );
    write(
        d.path(),
        "iax.conf",
        "register => user:pass@iax.example.org\n[general]\nregister=u@45.7.7.7:4569\n\
         [iaxpeer]\ntype=peer\nhost=45.8.8.8\n[iaxphone]\nhost=dynamic\n",
    );
    let p = collect(d.path()).unwrap();
    let got = hosts(&p);
    let want: Vec<(String, String)> = [
        ("proxy.example.com", "pjsip.conf [trunk] outbound_proxy"),
        ("trunk.example.com", "pjsip.conf [trunk] server_uri"),
        ("45.2.2.2", "pjsip.conf [trunk] contact"),
        ("2001:db8:5::1", "pjsip.conf [trunk] contact"),
        ("45.3.3.0/24", "pjsip.conf [trunk] match"),
        ("45.3.4.4", "pjsip.conf [trunk] match"),
        (
            "unused.example.com",
            "pjsip.conf [6001-real] outbound_proxy",
        ),
        ("45.4.4.4", "pjsip_wizard.conf [mytrunk] remote_hosts"),
        (
            "wiz.example.com",
            "pjsip_wizard.conf [mytrunk] remote_hosts",
        ),
        ("45.5.5.5", "sip.conf [general] register"),
        ("45.6.6.6", "sip.conf [old-trunk] host"),
        ("sip.example.net", "sip.conf [proxy] host"),
        ("outproxy.example.net", "sip.conf [proxy] outboundproxy"),
        ("iax.example.org", "iax.conf [general] register"),
        ("45.7.7.7", "iax.conf [general] register"),
        ("45.8.8.8", "iax.conf [iaxpeer] host"),
    ]
    .iter()
    .map(|(h, w)| (h.to_string(), w.to_string()))
    .collect();
    assert_eq!(got, want);
    let w = p.warnings.join("\n");
    assert!(
        w.contains("pjsip.conf [trunk] match: 45.0.0.0/8 is broader than /16"),
        "{w}"
    );
    assert_eq!(p.warnings.len(), 1, "{w}");
    let names: Vec<&str> = p.names().iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "proxy.example.com",
            "trunk.example.com",
            "unused.example.com",
            "wiz.example.com",
            "sip.example.net",
            "outproxy.example.net",
            "iax.example.org"
        ]
    );
    // A directory that cannot be read is an error; one without these files has no peers.
    assert!(collect(&d.path().join("absent")).is_err());
    let empty = tempfile::tempdir().unwrap();
    assert!(collect(empty.path()).unwrap().peers.is_empty());
}

#[test]
fn resolver_answers_are_bounded_and_never_special() {
    let answer = (0..100u32)
        .map(|i| IpAddr::from(std::net::Ipv4Addr::from(0x2d00_0000 + i)))
        .chain(
            ["127.0.0.1", "0.0.0.0", "::ffff:45.0.0.1"]
                .iter()
                .map(|a| a.parse().unwrap()),
        );
    let got = addresses(answer);
    assert_eq!(got.len(), MAX_ADDRS_PER_NAME);
    let got = addresses(
        [
            "127.0.0.1",
            "::",
            "::ffff:45.0.0.1",
            "45.0.0.1",
            "2001:db8::1",
        ]
        .iter()
        .map(|a| a.parse().unwrap()),
    );
    let got: Vec<String> = got.iter().map(|i| i.to_string()).collect();
    assert_eq!(got, ["45.0.0.1", "2001:db8::1"]);
}

#[test]
fn names_are_resolved_through_the_system_resolver() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // localhost comes from /etc/hosts; its loopback answer is never kept.
    let got = rt.block_on(resolve(&["localhost".to_string()], Duration::from_secs(5)));
    assert_eq!(got, vec![("localhost".to_string(), Some(Vec::new()))]);
}
