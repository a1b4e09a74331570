//! Log lines for the detectors' end-to-end tests, stamped at a given Unix time in UTC (the
//! tests run sipban with TZ=UTC), and appending text to a log file.
#![allow(dead_code)]

/// A chan_sip registration failure from `ip` in Asterisk's default `%F %T` format at `t`.
pub fn asterisk_line(t: i64, ip: &str) -> String {
    let stamp = sipban::inspect::fmt_time(t).replace(" UTC", "");
    format!("[{stamp}] NOTICE[4102] chan_sip.c: Registration from '<sip:100@pbx>' failed for '{ip}:5060' - Wrong password\n")
}

/// A netfilter LOG line (UFW's prefix) in `kern.log`'s short-iso form: a SYN from `src` to
/// port `dpt` at `t`.
pub fn kernel_line(t: i64, src: &str, dpt: u16) -> String {
    let stamp = sipban::inspect::fmt_time(t)
        .replace(" UTC", "+00:00")
        .replacen(' ', "T", 1);
    format!("{stamp} pbx kernel: [UFW BLOCK] IN=eth0 OUT= MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:08:00 SRC={src} DST=203.0.113.10 LEN=44 TOS=0x00 PREC=0x00 TTL=241 ID=1 PROTO=TCP SPT=40000 DPT={dpt} WINDOW=1024 RES=0x00 SYN URGP=0\n")
}

/// Append `text` to the log file at `path` (created if missing), as a logger would.
pub fn append(path: &std::path::Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {} for append: {e}", path.display()));
    f.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
}
