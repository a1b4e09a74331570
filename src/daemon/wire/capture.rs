//! Live capture: one `AF_PACKET` socket (`SOCK_DGRAM`: the kernel strips the link header) per
//! configured interface, each bound to its interface (so traffic on other interfaces never
//! wakes the daemon), read without a BPF program; the ports are filtered in userspace.
//! Needs `CAP_NET_RAW`.
//!
//! UDP always; TCP unless `capture.tcp: false`, as segments with their direction: a packet
//! this host sent ([`Dir::Out`], `PACKET_OUTGOING`) carries an ISN no forger can know, which
//! is what [`crate::source::wire::tcp`] needs to read only streams whose handshake was real.
//!
//! Both directions are read (requests in, responses out); on a loopback interface each
//! packet passes twice, and the outgoing copy is dropped (every packet there is this host's:
//! [`Dir::Out`]).
//!
//! This module must never write to a socket or put an interface in promiscuous mode.

use crate::config::wire::CaptureSettings;
use crate::source::wire::pcap::Transport;
use crate::source::wire::tcp::Dir;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::task::Poll;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// An open capture: a socket per interface.
pub struct Capture {
    socks: Vec<AsyncFd<OwnedFd>>,
    ports: Vec<u16>,
    tcp: bool,
}

const ARPHRD_LOOPBACK: u16 = 772;

/// An `AF_PACKET` socket bound to the interface `name`.
fn open_one(name: &str) -> io::Result<AsyncFd<OwnedFd>> {
    let cname = CString::new(name.as_bytes())
        .map_err(|_| io::Error::other("interface name with a NUL byte"))?;
    // SAFETY: a NUL-terminated name; returns 0 when there is no such interface.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        return Err(io::Error::other(format!(
            "no interface {name:?}: {}",
            io::Error::last_os_error()
        )));
    }
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain arguments; returns a new descriptor or -1.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::c_int::from(proto),
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = i32::try_from(index).map_err(io::Error::other)?;
    // SAFETY: `sll` is a valid sockaddr_ll and its size is given.
    let rc = unsafe {
        libc::bind(
            owned.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: an OwnedFd keeps its descriptor open and unchanged until it is dropped, which
    // happens only with the AsyncFd.
    unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }
        .map_err(|e| io::Error::other(e.to_string()))
}

impl Capture {
    /// Open a capture on each of `s.interfaces`. Must be called inside a tokio runtime.
    pub fn open(s: &CaptureSettings) -> io::Result<Capture> {
        let socks = s
            .interfaces
            .iter()
            .map(|name| {
                open_one(name).map_err(|e| io::Error::new(e.kind(), format!("{name}: {e}")))
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Capture {
            socks,
            ports: s.ports.clone(),
            tcp: s.tcp,
        })
    }

    /// The number of sockets (one per interface).
    pub fn sockets(&self) -> usize {
        self.socks.len()
    }

    /// Wait until a socket has a packet.
    pub async fn readable(&self) -> io::Result<()> {
        // Readiness is cleared by `recv` when it finds nothing (through `try_io`).
        std::future::poll_fn(|cx| {
            for s in &self.socks {
                match s.poll_read_ready(cx) {
                    Poll::Ready(Ok(_)) => return Poll::Ready(Ok(())),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }
            Poll::Pending
        })
        .await
    }

    /// One packet from socket `i` into `buf`: `Ok(Some((len, dir)))` (the IP packet, cut to
    /// `buf`, and which way it went), `Ok(None)` for a packet that is not read (the outgoing
    /// copy on a loopback interface), `WouldBlock` when nothing waits.
    pub fn recv(&self, i: usize, buf: &mut [u8]) -> io::Result<Option<(usize, Dir)>> {
        let Some(sock) = self.socks.get(i) else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        sock.try_io(Interest::READABLE, |fd| {
            // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: `buf` and `from` are valid for writes of the lengths given.
            let n = unsafe {
                libc::recvfrom(
                    fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let outgoing = from.sll_pkttype == libc::PACKET_OUTGOING;
            let dir = if from.sll_hatype == ARPHRD_LOOPBACK {
                if outgoing {
                    return Ok(None);
                }
                Dir::Out
            } else if outgoing {
                Dir::Out
            } else {
                Dir::In
            };
            // MSG_TRUNC returns the packet's real length; only `buf.len()` bytes were kept.
            Ok(Some(((n as usize).min(buf.len()), dir)))
        })
    }

    /// Whether a packet between these ports, over `transport`, is SIP traffic to read.
    pub fn wanted(&self, transport: Transport, sport: u16, dport: u16) -> bool {
        wanted(&self.ports, self.tcp, transport, sport, dport)
    }
}

fn wanted(ports: &[u16], tcp: bool, transport: Transport, sport: u16, dport: u16) -> bool {
    (transport == Transport::Udp || tcp) && (ports.contains(&sport) || ports.contains(&dport))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_userspace_filter_reads_the_sip_ports_and_tcp_unless_turned_off() {
        let ports = [5060, 5061];
        assert!(wanted(&ports, false, Transport::Udp, 40000, 5060));
        assert!(wanted(&ports, false, Transport::Udp, 5061, 40000));
        assert!(!wanted(&ports, false, Transport::Udp, 40000, 53));
        assert!(!wanted(&ports, false, Transport::Tcp, 40000, 5060));
        assert!(wanted(&ports, true, Transport::Tcp, 40000, 5060));
    }
}
