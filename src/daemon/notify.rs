//! systemd's notification protocol (sd_notify(3)), without libsystemd: one datagram of
//! `KEY=value` lines to the unix socket named by `$NOTIFY_SOCKET` (a path, or an abstract
//! socket name written with a leading `@`). Without `$NOTIFY_SOCKET` every call does nothing.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where notifications go, from `$NOTIFY_SOCKET`; `None` when it is unset or empty.
fn socket_addr(value: &std::ffi::OsStr) -> io::Result<Option<SocketAddr>> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = value.as_bytes();
    match bytes.first() {
        None => Ok(None),
        Some(b'@') => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(&bytes[1..]).map(Some)
        }
        Some(b'/') => SocketAddr::from_pathname(std::path::Path::new(value)).map(Some),
        Some(_) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is neither an absolute path nor an abstract name (@...)",
        )),
    }
}

/// Send `state` (newline-separated `KEY=value` assignments) to `$NOTIFY_SOCKET`, if set.
pub fn send(state: &str) -> io::Result<()> {
    let Some(value) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let Some(addr) = socket_addr(&value)? else {
        return Ok(());
    };
    let sock = UnixDatagram::unbound()?;
    let sent = sock.send_to_addr(state.as_bytes(), &addr)?;
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!(
                "short write to NOTIFY_SOCKET: {sent} of {} bytes",
                state.len()
            ),
        ));
    }
    Ok(())
}

/// Send `state`; a failure is logged at debug level (systemd may have gone away; the daemon
/// goes on).
pub fn notify(state: &str) {
    if let Err(e) = send(state) {
        tracing::debug!("sd_notify {:?}: {e}", state.lines().next().unwrap_or(""));
    }
}

/// `RELOADING=1` with the `MONOTONIC_USEC=` systemd asks for alongside it.
pub fn reloading() -> String {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return "RELOADING=1".to_string();
    }
    let usec = (ts.tv_sec as u64)
        .saturating_mul(1_000_000)
        .saturating_add(ts.tv_nsec as u64 / 1000);
    format!("RELOADING=1\nMONOTONIC_USEC={usec}")
}

/// The watchdog period systemd asks for (`$WATCHDOG_USEC`), if it is meant for this process
/// (`$WATCHDOG_PID` unset or ours).
pub fn watchdog_period() -> Option<Duration> {
    watchdog_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn watchdog_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(p) = pid {
        if p.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    match usec?.trim().parse::<u64>() {
        Ok(0) | Err(_) => None,
        Ok(us) => Some(Duration::from_micros(us)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn the_watchdog_period_is_for_this_pid_only() {
        let s = Some(Duration::from_secs(30));
        assert_eq!(watchdog_from(Some("30000000"), None, 7), s);
        assert_eq!(watchdog_from(Some("30000000"), Some("7"), 7), s);
        assert_eq!(watchdog_from(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_from(Some("x"), None, 7), None);
        assert_eq!(watchdog_from(None, None, 7), None);
    }

    #[test]
    fn notify_socket_names_a_path_or_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let a = socket_addr(OsStr::new("@sd/notify")).unwrap().unwrap();
        assert_eq!(a.as_abstract_name(), Some(&b"sd/notify"[..]));
        let p = socket_addr(OsStr::new("/run/systemd/notify"))
            .unwrap()
            .unwrap();
        assert_eq!(
            p.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        assert!(socket_addr(OsStr::new("")).unwrap().is_none());
        assert!(socket_addr(OsStr::new("relative")).is_err());
    }

    #[test]
    fn reloading_carries_the_monotonic_time() {
        let r = reloading();
        let mut lines = r.lines();
        assert_eq!(lines.next(), Some("RELOADING=1"));
        let usec = lines
            .next()
            .unwrap()
            .strip_prefix("MONOTONIC_USEC=")
            .unwrap();
        assert!(usec.parse::<u64>().unwrap() > 0);
    }
}
