//! Nothing dropped silently (issue 15, item 4): per followed input, a sync counts lines read,
//! parsed, matched, refused and unparsed; a file whose unparsed share is over a fifth is named
//! in a warning; `status` shows the counts, the metrics textfile exposes them (checked by
//! `promtool`), and `scan --verbose` shows samples of unparsed lines that look relevant.
//! Runs the real binary in a private network namespace.

use crate::common::netns::run_in;
use crate::common::run::{json, sipban, text};
use std::path::Path;

/// An Asterisk log of 40 lines: 10 failures, 25 lines in a layout sipban does not know (one of
/// them naming an address and a failure), and 5 lines of another program (not unparsed).
fn asterisk_log() -> String {
    let mut s = String::new();
    for i in 0..10 {
        s += &format!("[2026-12-03 08:49:5{i}] NOTICE[4102] chan_sip.c: Registration from '<sip:1@x>' failed for '198.51.100.7:5060' - Wrong password\n");
    }
    s += "03/12/2026 08:49:59 | NOTICE | chan_sip.c | Registration from '<sip:1@x>' failed for '198.51.100.9:5060' - Wrong password\n";
    for i in 0..24 {
        s += &format!("some other layout, line {i}\n");
    }
    for i in 0..5 {
        s += &format!("Dec  3 08:49:5{i} pbx sshd[42]: session opened for user root\n");
    }
    s
}

fn kernel_log() -> String {
    (0..30)
        .map(|i| format!("Dec  3 08:49:5{} pbx kernel: [UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:ab:cd:ef:00:1a:2b:3c:4d:5e:08:00 SRC=198.51.100.20 DST=192.0.2.10 LEN=44 TOS=0x00 PREC=0x00 TTL=241 ID=1 PROTO=TCP SPT=40000 DPT={} WINDOW=1024 RES=0x00 SYN URGP=0 \n", i % 10, 20 + i))
        .collect()
}

fn setup(dir: &Path) {
    std::fs::write(dir.join("messages"), asterisk_log()).unwrap();
    std::fs::write(dir.join("kern.log"), kernel_log()).unwrap();
    std::fs::create_dir_all(dir.join("textfile")).unwrap();
    let cfg = format!(
        "state_dir: {d}/state\nsets:\n  v4: {{ name: t4, cap: 100 }}\n  v6: {{ name: t6, cap: 100 }}\nasterisk:\n  logs: [{d}/messages]\nkernel_log:\n  files: [{d}/kern.log]\nmetrics:\n  textfile: {d}/textfile/sipban.prom\n",
        d = dir.display()
    );
    std::fs::write(dir.join("config.yaml"), cfg).unwrap();
}

#[test]
fn unparsed_lines_are_counted_named_and_exposed() {
    let ns = netns_or_skip!();
    run_in(&ns, || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        setup(d);
        let o = sipban(d, &["sync"]);
        let out = text(&o);
        let messages = d.join("messages").display().to_string();
        assert!(
            out.contains(&format!("asterisk: {messages}: 25 of 40 lines")),
            "no warning naming the file: {out}"
        );
        assert!(!out.contains("kern.log: "), "the kernel log is fine: {out}");

        let st = json(&sipban(d, &["status", "--json"]));
        let inputs = |name: &str| {
            st["detectors"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["name"] == name)
                .unwrap_or_else(|| panic!("{name} in {st}"))["inputs"]
                .clone()
        };
        let a = &inputs("asterisk")[0];
        assert_eq!(a["path"], messages.as_str());
        assert_eq!(
            (
                a["read"].as_u64(),
                a["parsed"].as_u64(),
                a["matched"].as_u64(),
                a["unparsed"].as_u64()
            ),
            (Some(40), Some(15), Some(10), Some(25)),
            "{a}"
        );
        let k = &inputs("kernel_log")[0];
        assert_eq!(
            (
                k["read"].as_u64(),
                k["unparsed"].as_u64(),
                k["matched"].as_u64()
            ),
            (Some(30), Some(0), Some(30)),
            "{k}"
        );
        let human = text(&sipban(d, &["status"]));
        assert!(
            human.contains("40 lines read, 15 parsed, 10 matched, 0 refused, 25 unparsed"),
            "{human}"
        );

        let prom = std::fs::read_to_string(d.join("textfile/sipban.prom")).unwrap();
        let want = format!("sipban_detector_input_lines{{detector=\"asterisk\",input=\"{messages}\",outcome=\"unparsed\"}} 25");
        assert!(prom.contains(&want), "{want} not in\n{prom}");
        if crate::common::netns::require_program("promtool") {
            let (ok, out) = crate::metrics::promtool_check(&prom);
            assert!(ok && out.is_empty(), "promtool: {out}\n{prom}");
        }

        // scan --verbose: the one relevant unparsed line, not the filler.
        let scan = text(&sipban(d, &["scan", "--verbose", &messages]));
        assert!(
            scan.contains("Unparsed lines that look like failures"),
            "{scan}"
        );
        assert!(scan.contains("03/12/2026 08:49:59 | NOTICE"), "{scan}");
        assert!(!scan.contains("some other layout"), "{scan}");

        // scan --kernel --verbose: the unparsed line that looks like a firewall line, not the
        // other unparsed line; without --verbose, only the counts.
        let odd = d.join("odd-kern.log");
        let mut k = kernel_log();
        k += "garbled: SRC=198.51.100.21 DST=192.0.2.10 PROTO=UDP DPT=5060\n";
        k += "just noise\n";
        std::fs::write(&odd, k).unwrap();
        let odd = odd.display().to_string();
        let scan = text(&sipban(d, &["scan", "--kernel", "--verbose", &odd]));
        assert!(
            scan.contains("32 lines: 30 parsed, 30 counted probes, 0 refused, 2 unparsed"),
            "{scan}"
        );
        assert!(scan.contains("garbled: SRC=198.51.100.21"), "{scan}");
        assert!(!scan.contains("just noise"), "{scan}");
        let quiet = text(&sipban(d, &["scan", "--kernel", &odd]));
        assert!(
            quiet.contains("2 unparsed") && !quiet.contains("garbled"),
            "{quiet}"
        );
    });
}
