//! The kernel's ipset subsystem over netlink: batches (the lines `ipset restore` would read)
//! sent as messages, and sets read from the kernel's listing (what `ipset save` and
//! `ipset list -t` print).
//!
//! Why: at 262,144 entries `ipset restore` spends about 1 s, of which the kernel's own work is
//! about 0.16 s. The rest is the tool parsing each line (it runs `getaddrinfo` per address and
//! `stat`s `/etc/resolv.conf` each time). The same batch as netlink messages costs the kernel
//! time only (`bench/sync.sh`).
//!
//! What it sends is exactly what the tool sends for the batch's lines (`ipset -exist`: no
//! `NLM_F_EXCL`, so re-adding an entry refreshes it and destroying a missing set is not an
//! error), one command per message, entries packed several hundred to a message (the `ADT`
//! attribute, as the tool packs them). Every entry carries its batch line number, which the kernel
//! echoes back on a failure, so errors name the line and quote it as `ipset restore` would.
//!
//! Rules it keeps:
//! - It only encodes lines [`super::Batch`] already checked (family, names, timeouts): it never
//!   decides anything.
//! - It stops at the first error, like the tool; the caller cleans up the temporary set.
//! - Anything that says this kernel speaks another dialect (protocol error, type or revision
//!   unknown, no ipset subsystem) is [`NlError::Unsupported`], and the caller runs the same batch
//!   through `ipset restore` from its start: a rebuild destroys the temporary set first and
//!   changes the live set only at its end, a diff's adds and deletes land the same the second
//!   time.
//! - Reading decodes the members of hash:net and hash:ip sets only ([`NlError::OtherType`] for
//!   the rest, which the tool reads); it never changes a set.

use super::{clamp_timeout, Batch, IpsetError, KernelSet, Line, SetHeader, SetInfo, SetSpec};
use crate::net::Family;
use ipnet::IpNet;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_IPSET: u16 = 6;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_F_NESTED: u16 = 1 << 15;
const NLA_F_NET_BYTEORDER: u16 = 1 << 14;
const SOL_NETLINK: i32 = 270;
const NETLINK_CAP_ACK: i32 = 10;

/// The oldest ipset protocol the kernel accepts, and what `ipset` 6 and 7 speak to it.
const PROTOCOL: u8 = 6;
/// The newest hash:net revision whose attributes this module knows (7 adds `bucketsize`).
const MAX_REVISION: u8 = 7;

// Commands (linux/netfilter/ipset/ip_set.h).
const CMD_CREATE: u8 = 2;
const CMD_DESTROY: u8 = 3;
const CMD_FLUSH: u8 = 4;
const CMD_RENAME: u8 = 5;
const CMD_SWAP: u8 = 6;
const CMD_ADD: u8 = 9;
const CMD_LIST: u8 = 7;
const CMD_DEL: u8 = 10;
const CMD_TYPE: u8 = 13;

// Command-level attributes.
const ATTR_PROTOCOL: u16 = 1;
const ATTR_SETNAME: u16 = 2;
const ATTR_TYPENAME: u16 = 3; // also SETNAME2 (swap, rename)
const ATTR_REVISION: u16 = 4;
const ATTR_FAMILY: u16 = 5;
const ATTR_FLAGS: u16 = 6;
const ATTR_DATA: u16 = 7;
const ATTR_ADT: u16 = 8;
const ATTR_LINENO: u16 = 9;
const ATTR_REVISION_MIN: u16 = 10;

// Data attributes.
const ATTR_IP: u16 = 1;
const ATTR_CIDR: u16 = 3;
const ATTR_TIMEOUT: u16 = 6;
const ATTR_HASHSIZE: u16 = 18;
const ATTR_MAXELEM: u16 = 19;
const ATTR_ELEMENTS: u16 = 24;
const ATTR_REFERENCES: u16 = 25;
const ATTR_IPADDR_IPV4: u16 = 1;
const ATTR_IPADDR_IPV6: u16 = 2;

/// `ipset list -t`: headers only.
const FLAG_LIST_HEADER: u32 = 1 << 2;

// Errors beyond errno (ip_set.h and ip_set_hash.h).
const ERR_PROTOCOL: i32 = 4097;
const ERR_FIND_TYPE: i32 = 4098;
const ERR_MAX_SETS: i32 = 4099;
const ERR_BUSY: i32 = 4100;
const ERR_EXIST_SETNAME2: i32 = 4101;
const ERR_TYPE_MISMATCH: i32 = 4102;
const ERR_EXIST: i32 = 4103;
const ERR_INVALID_CIDR: i32 = 4104;
const ERR_INVALID_FAMILY: i32 = 4106;
const ERR_TIMEOUT: i32 = 4107;
const ERR_REFERENCED: i32 = 4108;
const ERR_HASH_FULL: i32 = 4352;

/// How errors name what failed: a batch like `ipset restore`'s, with the same line numbers.
const COMMAND: &str = "ipset batch over netlink";

/// Payload bytes per add message: about 1,000 IPv4 entries. The kernel handles any size the
/// socket buffer takes; this keeps an echoed error (the whole message) small.
const MESSAGE_BUDGET: usize = 32 * 1024;

/// Why a batch did not go through.
#[derive(Debug)]
pub(super) enum NlError {
    /// This kernel does not speak the netlink dialect encoded here; `ipset restore` may.
    Unsupported(String),
    /// The kernel refused a line, or the socket failed: the batch's own error.
    Ipset(IpsetError),
    /// A set whose members this module does not decode (only hash:net and hash:ip): the tool
    /// reads it.
    OtherType,
}

/// Send the batch's lines in order, stopping at the first error. Line numbers count from 1, as
/// `ipset restore` counts them, and an error quotes the line it names.
pub(super) fn run(batch: &Batch<'_>) -> Result<(), NlError> {
    send_lines(batch).map_err(|e| match e {
        Refused::At(kernel, number, cmd) => {
            let quoted = batch.line(number).unwrap_or_default();
            kernel.into_error(number, &quoted, cmd)
        }
        Refused::Other(e) => e,
    })
}

/// Why [`send_lines`] stopped.
enum Refused {
    /// The kernel refused line `number` (a `cmd`).
    At(Kernel, usize, u8),
    Other(NlError),
}

impl From<NlError> for Refused {
    fn from(e: NlError) -> Self {
        Refused::Other(e)
    }
}

fn send_lines(batch: &Batch<'_>) -> Result<(), Refused> {
    let mut sock = Socket::open().map_err(|e| NlError::Unsupported(e.to_string()))?;
    let mut adt: Option<Adt> = None;
    for (index, line) in batch.lines().enumerate() {
        let number = index + 1;
        let entry = match line {
            Line::Add(set, net, t) => Some((CMD_ADD, set, net, Some(clamp_timeout(t)))),
            Line::Del(set, net) => Some((CMD_DEL, set, net, None)),
            _ => None,
        };
        let Some((cmd, set, net, timeout)) = entry else {
            if let Some(a) = adt.take() {
                a.send(&mut sock)?;
            }
            command(&mut sock, number, line)?;
            continue;
        };
        let joins = adt
            .as_ref()
            .is_some_and(|a| a.cmd == cmd && a.set == set && a.msg.len() < MESSAGE_BUDGET);
        if !joins {
            if let Some(a) = adt.take() {
                a.send(&mut sock)?;
            }
        }
        adt.get_or_insert_with(|| Adt::new(cmd, set, net, number))
            .push(number, net, timeout);
    }
    if let Some(a) = adt.take() {
        a.send(&mut sock)?;
    }
    Ok(())
}

/// One line that is not an add or a delete.
fn command(sock: &mut Socket, number: usize, line: Line<'_>) -> Result<(), Refused> {
    let (cmd, mut msg) = match line {
        Line::Destroy(set) => (CMD_DESTROY, Msg::new(CMD_DESTROY, Family::V4, set)),
        Line::Flush(set) => (CMD_FLUSH, Msg::new(CMD_FLUSH, Family::V4, set)),
        Line::Swap(a, b) | Line::Rename(a, b) => {
            let cmd = if matches!(line, Line::Swap(..)) {
                CMD_SWAP
            } else {
                CMD_RENAME
            };
            let mut m = Msg::new(cmd, Family::V4, a);
            m.str_attr(ATTR_TYPENAME, b);
            (cmd, m)
        }
        Line::Create(_, spec) => (CMD_CREATE, create_msg(sock, number, &line, spec)?),
        Line::Add(..) | Line::Del(..) => return Ok(()),
    };
    match sock.call(&mut msg, |_| {}) {
        Ok(()) => Ok(()),
        // `-exist`: destroying a set that is not there is not an error.
        Err(Kernel::Errno(libc::ENOENT, _)) if cmd == CMD_DESTROY => Ok(()),
        Err(k) => Err(Refused::At(k, number, cmd)),
    }
}

/// The create message for `spec`, at the newest revision of hash:net that both this kernel and
/// this module know (what the tool picks).
fn create_msg(
    sock: &mut Socket,
    number: usize,
    line: &Line<'_>,
    spec: &SetSpec,
) -> Result<Msg, Refused> {
    let Line::Create(set, _) = *line else {
        return Err(NlError::Unsupported("a create without a set".to_owned()).into());
    };
    let family = spec.family;
    let mut query = Msg::bare(CMD_TYPE, family);
    query.str_attr(ATTR_TYPENAME, "hash:net");
    query.u8_attr(ATTR_FAMILY, nfproto(family));
    let mut newest: Option<u8> = None;
    let mut oldest: Option<u8> = None;
    sock.call(&mut query, |attrs| {
        for (kind, value) in Attrs(attrs) {
            match (kind, value.first()) {
                (ATTR_REVISION, Some(&r)) => newest = Some(r),
                (ATTR_REVISION_MIN, Some(&r)) => oldest = Some(r),
                _ => {}
            }
        }
    })
    .map_err(|k| Refused::At(k, number, CMD_TYPE))?;
    let newest = newest.ok_or_else(|| {
        NlError::Unsupported("the kernel named no revision for hash:net".to_owned())
    })?;
    let revision = newest.min(MAX_REVISION);
    if let Some(o) = oldest.filter(|&o| o > revision) {
        return Err(NlError::Unsupported(format!(
            "this kernel's hash:net starts at revision {o}, newer than {MAX_REVISION}"
        ))
        .into());
    }
    let mut m = Msg::new(CMD_CREATE, family, set);
    m.str_attr(ATTR_TYPENAME, "hash:net");
    m.u8_attr(ATTR_REVISION, revision);
    m.u8_attr(ATTR_FAMILY, nfproto(family));
    let data = m.open(ATTR_DATA | NLA_F_NESTED);
    m.be32_attr(ATTR_HASHSIZE, spec.hashsize);
    m.be32_attr(ATTR_MAXELEM, spec.maxelem);
    m.be32_attr(ATTR_TIMEOUT, 0);
    m.close(data);
    Ok(m)
}

fn nfproto(family: Family) -> u8 {
    match family {
        Family::V4 => libc::NFPROTO_IPV4 as u8,
        Family::V6 => libc::NFPROTO_IPV6 as u8,
    }
}

/// An add or delete message being filled: `ADT` holds one `DATA` per entry. Its entries are
/// consecutive batch lines, from `first`.
struct Adt<'a> {
    cmd: u8,
    set: &'a str,
    msg: Msg,
    adt: usize,
    first: usize,
}

impl<'a> Adt<'a> {
    fn new(cmd: u8, set: &'a str, net: IpNet, first: usize) -> Self {
        let family = if net.addr().is_ipv4() {
            Family::V4
        } else {
            Family::V6
        };
        let mut msg = Msg::new(cmd, family, set);
        // Present so the kernel reports the failing entry's line (and required with ADT).
        msg.u32_attr(ATTR_LINENO, 0);
        let adt = msg.open(ATTR_ADT | NLA_F_NESTED);
        Adt {
            cmd,
            set,
            msg,
            adt,
            first,
        }
    }

    fn push(&mut self, number: usize, net: IpNet, timeout: Option<u32>) {
        let m = &mut self.msg;
        let data = m.open(ATTR_DATA | NLA_F_NESTED);
        let ip = m.open(ATTR_IP | NLA_F_NESTED);
        let net = net.trunc();
        match net {
            IpNet::V4(n) => m.attr(ATTR_IPADDR_IPV4 | NLA_F_NET_BYTEORDER, &n.addr().octets()),
            IpNet::V6(n) => m.attr(ATTR_IPADDR_IPV6 | NLA_F_NET_BYTEORDER, &n.addr().octets()),
        }
        m.close(ip);
        if net.prefix_len() < net.max_prefix_len() {
            m.u8_attr(ATTR_CIDR, net.prefix_len());
        }
        if let Some(t) = timeout {
            m.be32_attr(ATTR_TIMEOUT, t);
        }
        m.u32_attr(ATTR_LINENO, u32::try_from(number).unwrap_or(u32::MAX));
        m.close(data);
    }

    fn send(mut self, sock: &mut Socket) -> Result<(), Refused> {
        self.msg.close(self.adt);
        sock.call(&mut self.msg, |_| {}).map_err(|k| {
            // The entry the kernel named, or the message's first when it named none.
            let at = match k {
                Kernel::Errno(_, Some(n)) => n as usize,
                _ => self.first,
            };
            Refused::At(k, at, self.cmd)
        })
    }
}

/// What the kernel answered instead of an acknowledgement.
enum Kernel {
    /// A negative errno or ipset error code, made positive, and the line number the kernel
    /// wrote into the echoed request, if any.
    Errno(i32, Option<u32>),
    Io(io::Error),
}

impl Kernel {
    /// The error of batch line `number` (`line` is its text), in ipset's words.
    fn into_error(self, number: usize, line: &str, cmd: u8) -> NlError {
        let code = match self {
            Kernel::Errno(c, _) => c,
            Kernel::Io(e) => {
                return NlError::Ipset(IpsetError::Io(io::Error::new(
                    e.kind(),
                    format!("talking to the kernel's ipset over netlink: {e}"),
                )))
            }
        };
        match code {
            ERR_PROTOCOL | ERR_FIND_TYPE => {
                return NlError::Unsupported(format!(
                    "the kernel refused the message for `{line}` (ipset error {code})"
                ))
            }
            libc::EPROTONOSUPPORT | libc::EAFNOSUPPORT | libc::EOPNOTSUPP => {
                return NlError::Unsupported(format!(
                    "no ipset subsystem over netlink: {}",
                    io::Error::from_raw_os_error(code)
                ))
            }
            libc::EPERM | libc::EACCES => {
                return NlError::Ipset(IpsetError::PermissionDenied(
                    "Kernel error received: Operation not permitted".to_owned(),
                ))
            }
            _ => {}
        }
        NlError::Ipset(IpsetError::Failed {
            command: COMMAND.to_owned(),
            line: Some(number),
            message: format!("{} (input: `{line}`)", message(cmd, code)),
        })
    }
}

impl Kernel {
    /// The error of a listing of `name` (a missing set is not one: see [`list`]).
    fn into_read_error(self, name: &str) -> NlError {
        let code = match self {
            Kernel::Errno(c, _) => c,
            Kernel::Io(e) => {
                return NlError::Ipset(IpsetError::Io(io::Error::new(
                    e.kind(),
                    format!("listing set {name} over netlink: {e}"),
                )))
            }
        };
        match code {
            ERR_PROTOCOL | libc::EPROTONOSUPPORT | libc::EAFNOSUPPORT | libc::EOPNOTSUPP => {
                NlError::Unsupported(format!("listing set {name}: kernel error {code}"))
            }
            libc::EPERM | libc::EACCES => NlError::Ipset(IpsetError::PermissionDenied(
                "Kernel error received: Operation not permitted".to_owned(),
            )),
            _ => NlError::Ipset(IpsetError::Failed {
                command: format!("listing set {name} over netlink"),
                line: None,
                message: message(CMD_LIST, code),
            }),
        }
    }
}

/// The words `ipset` prints for a kernel error code, so callers and admins see one vocabulary
/// whichever way a batch went.
fn message(cmd: u8, code: i32) -> String {
    let fixed = match (code, cmd) {
        (libc::ENOENT, _) => "The set with the given name does not exist",
        (ERR_BUSY, CMD_DESTROY) => "Set cannot be destroyed: it is in use by a kernel component",
        (ERR_BUSY, _) => "Set is in use by a kernel component",
        (ERR_EXIST_SETNAME2, CMD_RENAME) => {
            "Set cannot be renamed: a set with the new name already exists"
        }
        (ERR_EXIST_SETNAME2, _) => "The second set does not exist",
        (ERR_TYPE_MISMATCH, _) => "The sets cannot be swapped: their type does not match",
        (ERR_EXIST, CMD_CREATE) => "Set cannot be created: set with the same name already exists",
        (ERR_EXIST, _) => "Element cannot be added to the set: it's already added",
        (ERR_REFERENCED, _) => "Set cannot be renamed: it is in use by another system",
        (ERR_MAX_SETS, _) => {
            "Kernel error received: maximal number of sets reached, cannot create more."
        }
        (ERR_INVALID_CIDR, _) => "The value of the CIDR parameter of the IP address is invalid",
        (ERR_INVALID_FAMILY, _) => "Protocol family not supported by the set type",
        (ERR_TIMEOUT, _) => "Timeout cannot be used: set was created without timeout support",
        (ERR_HASH_FULL, _) => "Hash is full, cannot add more elements",
        (c, _) if c < 4096 => {
            return format!("Kernel error received: {}", io::Error::from_raw_os_error(c))
        }
        (c, _) => return format!("Kernel error received: ipset error code {c}"),
    };
    fixed.to_owned()
}

/// A set as a netlink listing describes it: what `ipset list -t NAME` shows and, when asked,
/// the members as `ipset save NAME` shows them (every entry, `nomatch` ones included; the
/// remaining timeout, 0 for none). `Ok(None)` when there is no such set.
pub(super) fn list(name: &str, members: bool) -> Result<Option<KernelListing>, NlError> {
    let mut sock = Socket::open().map_err(|e| NlError::Unsupported(e.to_string()))?;
    let mut msg = Msg::new(CMD_LIST, Family::V4, name);
    msg.set_flags(NLM_F_REQUEST | NLM_F_DUMP);
    if !members {
        msg.be32_attr(ATTR_FLAGS, FLAG_LIST_HEADER);
    }
    let mut listing = Decoder::default();
    match sock.dump(&mut msg, |attrs| listing.message(name, attrs, members)) {
        Ok(()) => {}
        Err(Kernel::Errno(libc::ENOENT, _)) => return Ok(None),
        Err(k) => return Err(k.into_read_error(name)),
    }
    listing.finish(name).map(Some)
}

/// Every set's header, entry count and reference count at one instant (what `ipset list -t`
/// shows).
pub(super) fn list_all() -> Result<Vec<(String, SetInfo)>, NlError> {
    let mut sock = Socket::open().map_err(|e| NlError::Unsupported(e.to_string()))?;
    let mut msg = Msg::bare(CMD_LIST, Family::V4);
    msg.set_flags(NLM_F_REQUEST | NLM_F_DUMP);
    msg.be32_attr(ATTR_FLAGS, FLAG_LIST_HEADER);
    let mut sets = Vec::new();
    let mut error = None;
    let dumped = sock.dump(&mut msg, |attrs| {
        if error.is_some() {
            return;
        }
        // A header-only listing describes each set in one message.
        let Some(name) = Attrs(attrs).find_map(|(k, v)| (k == ATTR_SETNAME).then(|| c_str(v)))
        else {
            return;
        };
        let mut one = Decoder::default();
        one.message(&name, attrs, false);
        match one.finish(&name) {
            Ok(l) => sets.push((name, l.info)),
            Err(e) => error = Some(e),
        }
    });
    dumped.map_err(|k| k.into_read_error("(all)"))?;
    match error {
        Some(e) => Err(e),
        None => Ok(sets),
    }
}

/// A NUL-terminated string attribute.
fn c_str(value: &[u8]) -> String {
    let bytes = value.split(|&b| b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(bytes).into_owned()
}

/// What [`list`] read.
pub(super) struct KernelListing {
    pub info: SetInfo,
    pub set: KernelSet,
}

/// Decodes the messages of one set's listing as they arrive.
#[derive(Default)]
struct Decoder {
    header: SetHeader,
    entries: Option<usize>,
    references: u32,
    members: crate::net::NetMap<u32>,
    error: Option<NlError>,
}

impl Decoder {
    fn message(&mut self, name: &str, attrs: &[u8], members: bool) {
        if self.error.is_some() {
            return;
        }
        let mut adt = None;
        for (kind, value) in Attrs(attrs) {
            match kind {
                ATTR_SETNAME if c_str(value) != name => {
                    self.error = Some(parse_error(name, "a listing of another set"));
                    return;
                }
                ATTR_TYPENAME => self.header.set_type = c_str(value),
                ATTR_FAMILY => {
                    self.header.family = match value.first().map(|&f| i32::from(f)) {
                        Some(libc::NFPROTO_IPV4) => Some(Family::V4),
                        Some(libc::NFPROTO_IPV6) => Some(Family::V6),
                        _ => None,
                    }
                }
                ATTR_DATA => self.header_data(value),
                ATTR_ADT => adt = Some(value),
                _ => {}
            }
        }
        if let (Some(adt), true) = (adt, members) {
            if !matches!(self.header.set_type.as_str(), "hash:net" | "hash:ip") {
                self.error = Some(NlError::OtherType);
                return;
            }
            for (kind, data) in Attrs(adt) {
                if kind != ATTR_DATA {
                    continue;
                }
                match entry(data) {
                    Some((net, timeout)) => {
                        self.members.insert(net, timeout);
                    }
                    None => {
                        self.error = Some(parse_error(name, "a member without a valid address"));
                        return;
                    }
                }
            }
        }
    }

    fn header_data(&mut self, data: &[u8]) {
        for (kind, value) in Attrs(data) {
            let be32 = value
                .get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            match kind {
                ATTR_HASHSIZE => self.header.hashsize = be32,
                ATTR_MAXELEM => self.header.maxelem = be32,
                ATTR_TIMEOUT => self.header.timeout_support = true,
                ATTR_ELEMENTS => self.entries = be32.map(|n| n as usize),
                ATTR_REFERENCES => self.references = be32.unwrap_or(0),
                _ => {}
            }
        }
    }

    fn finish(self, name: &str) -> Result<KernelListing, NlError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.header.set_type.is_empty() {
            return Err(parse_error(name, "no set type"));
        }
        // Kernels before ipset 7 do not count entries: the tool says so in its own words.
        let entries = self.entries.ok_or_else(|| {
            NlError::Unsupported("the kernel's listing has no entry count".to_owned())
        })?;
        Ok(KernelListing {
            info: SetInfo {
                header: self.header.clone(),
                entries,
                references: self.references,
            },
            set: KernelSet {
                header: self.header,
                members: self.members,
            },
        })
    }
}

/// One member: its address and prefix (the host prefix when there is none, as in hash:ip) and
/// its remaining timeout (0 for none).
fn entry(data: &[u8]) -> Option<(IpNet, u32)> {
    let mut addr = None;
    let mut cidr = None;
    let mut timeout = 0;
    for (kind, value) in Attrs(data) {
        match kind {
            ATTR_IP => {
                addr = Attrs(value).find_map(|(k, v)| match (k, v.len()) {
                    (ATTR_IPADDR_IPV4, 4) => {
                        let b: [u8; 4] = v.try_into().ok()?;
                        Some(std::net::IpAddr::from(b))
                    }
                    (ATTR_IPADDR_IPV6, 16) => {
                        let b: [u8; 16] = v.try_into().ok()?;
                        Some(std::net::IpAddr::from(b))
                    }
                    _ => None,
                })
            }
            ATTR_CIDR => cidr = value.first().copied(),
            ATTR_TIMEOUT => {
                timeout = u32::from_be_bytes(value.get(..4)?.try_into().ok()?);
            }
            _ => {}
        }
    }
    let addr = addr?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    IpNet::new(addr, cidr.unwrap_or(max))
        .ok()
        .map(|n| (n, timeout))
}

fn parse_error(name: &str, what: &str) -> NlError {
    NlError::Ipset(IpsetError::Parse(format!(
        "the kernel's listing of set {name} over netlink: {what}"
    )))
}

/// A netlink message being built: header, nfgenmsg, attributes.
struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    /// A message for `cmd` that names `set`.
    fn new(cmd: u8, family: Family, set: &str) -> Self {
        let mut m = Msg::bare(cmd, family);
        m.str_attr(ATTR_SETNAME, set);
        m
    }

    /// Header, nfgenmsg and the protocol attribute every ipset message carries.
    fn bare(cmd: u8, family: Family) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&[0; 16]); // nlmsghdr, completed by `finish`
        buf.extend_from_slice(&[nfproto(family), 0, 0, 0]); // family, NFNETLINK_V0, res_id
        let kind = (NFNL_SUBSYS_IPSET << 8) | u16::from(cmd);
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        let mut m = Msg { buf };
        m.u8_attr(ATTR_PROTOCOL, PROTOCOL);
        m
    }

    fn set_flags(&mut self, flags: u16) {
        self.buf[6..8].copy_from_slice(&flags.to_ne_bytes());
    }

    fn len(&self) -> usize {
        self.buf.len()
    }

    fn attr(&mut self, kind: u16, value: &[u8]) {
        let len = 4 + value.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn u8_attr(&mut self, kind: u16, v: u8) {
        self.attr(kind, &[v]);
    }

    fn u32_attr(&mut self, kind: u16, v: u32) {
        self.attr(kind, &v.to_ne_bytes());
    }

    fn be32_attr(&mut self, kind: u16, v: u32) {
        self.attr(kind | NLA_F_NET_BYTEORDER, &v.to_be_bytes());
    }

    fn str_attr(&mut self, kind: u16, s: &str) {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.attr(kind, &v);
    }

    /// Start a nested attribute; returns where its header is, for [`Msg::close`].
    fn open(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        at
    }

    fn close(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// Fill in the header's length and sequence number.
    fn finish(&mut self, seq: u32) -> &[u8] {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        &self.buf
    }
}

/// The attributes in `bytes`, as (type without flags, value).
struct Attrs<'b>(&'b [u8]);

impl<'b> Iterator for Attrs<'b> {
    type Item = (u16, &'b [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let b = self.0;
        if b.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        let kind = u16::from_ne_bytes([b[2], b[3]]) & !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);
        if len < 4 || len > b.len() {
            return None;
        }
        let value = &b[4..len];
        self.0 = &b[((len + 3) & !3).min(b.len())..];
        Some((kind, value))
    }
}

/// A NETLINK_NETFILTER socket that sends one request at a time and waits for its answer.
struct Socket {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Socket {
    fn open() -> io::Result<Socket> {
        // SAFETY: plain arguments; returns a new descriptor or -1.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        // SAFETY: `one` outlives the call and its size is passed. Acknowledgements then carry
        // only the header of the request, not the whole request.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                SOL_NETLINK,
                NETLINK_CAP_ACK,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        Ok(Socket {
            fd,
            seq: 0,
            // An error for an add message echoes the message: room for the largest one.
            buf: vec![0; MESSAGE_BUDGET * 2 + 4096],
        })
    }

    /// Send `msg` and read until its acknowledgement, passing the attributes of any reply (past
    /// nfgenmsg) to `reply`.
    fn call(&mut self, msg: &mut Msg, mut reply: impl FnMut(&[u8])) -> Result<(), Kernel> {
        let seq = self.send(msg)?;
        loop {
            let n = self.recv()?;
            let mut rest = &self.buf[..n];
            while let Some((kind, got, body, next)) = split_message(rest) {
                rest = next;
                if got != seq {
                    continue;
                }
                if kind == NLMSG_ERROR {
                    return match error_of(body) {
                        None => Ok(()),
                        Some(k) => Err(k),
                    };
                }
                if body.len() >= 4 {
                    reply(&body[4..]);
                }
            }
        }
    }

    /// Send `msg` with the next sequence number, which is returned.
    fn send(&mut self, msg: &mut Msg) -> Result<u32, Kernel> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let bytes = msg.finish(seq);
        // SAFETY: `bytes` is a live slice and its length is passed.
        let sent =
            unsafe { libc::send(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
        if sent < 0 {
            return Err(Kernel::Io(io::Error::last_os_error()));
        }
        Ok(seq)
    }

    /// Read one datagram into `buf`; its length. A datagram longer than `buf` (which the kernel
    /// never sends for ipset, whose messages stay under 32 KiB) is an error, never half read.
    fn recv(&mut self) -> Result<usize, Kernel> {
        loop {
            // SAFETY: `buf` is a live, writable buffer and its length is passed. With MSG_TRUNC
            // the call returns the datagram's whole length, even when it was cut.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    libc::MSG_TRUNC,
                )
            };
            if n >= 0 {
                let n = n as usize;
                if n > self.buf.len() {
                    return Err(Kernel::Io(io::Error::other(format!(
                        "a netlink message of {n} bytes, larger than the {} expected",
                        self.buf.len()
                    ))));
                }
                return Ok(n);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(Kernel::Io(e));
            }
        }
    }
}

impl Socket {
    /// Send a dump request and pass the attributes of each message of the answer (past
    /// nfgenmsg) to `reply`, until the kernel says it is done.
    fn dump(&mut self, msg: &mut Msg, mut reply: impl FnMut(&[u8])) -> Result<(), Kernel> {
        let seq = self.send(msg)?;
        loop {
            let n = self.recv()?;
            let mut rest = &self.buf[..n];
            while let Some((kind, got, body, next)) = split_message(rest) {
                rest = next;
                if got != seq {
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => match error_of(body) {
                        Some(k) => return Err(k),
                        None => return Ok(()),
                    },
                    _ if body.len() >= 4 => reply(&body[4..]),
                    _ => {}
                }
            }
        }
    }
}

/// The first message in `bytes`: its type, sequence number, body, and what follows it.
fn split_message(bytes: &[u8]) -> Option<(u16, u32, &[u8], &[u8])> {
    let len = u32::from_ne_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    if len < 16 || len > bytes.len() {
        return None;
    }
    let kind = u16::from_ne_bytes([bytes[4], bytes[5]]);
    let seq = u32::from_ne_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let next = ((len + 3) & !3).min(bytes.len());
    Some((kind, seq, &bytes[16..len], &bytes[next..]))
}

/// The error in an NLMSG_ERROR body (`None` for an acknowledgement), with the line number the
/// kernel wrote into the echoed request, if it echoed one.
fn error_of(body: &[u8]) -> Option<Kernel> {
    let code = i32::from_ne_bytes(body.get(0..4)?.try_into().ok()?);
    if code == 0 {
        return None;
    }
    let code = code.checked_neg().unwrap_or(i32::MAX);
    // The echoed request: nlmsghdr (16), nfgenmsg (4), then its attributes.
    let lineno = body.get(4 + 20..).and_then(|attrs| {
        Attrs(attrs)
            .find(|(k, v)| *k == ATTR_LINENO && v.len() == 4)
            .map(|(_, v)| u32::from_ne_bytes([v[0], v[1], v[2], v[3]]))
    });
    Some(Kernel::Errno(code, lineno.filter(|&n| n > 0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        crate::net::parse_net(s).unwrap()
    }

    /// What `push` writes decodes back through `entry`: address, prefix and timeout.
    #[test]
    fn an_entry_round_trips() {
        for (text, timeout) in [
            ("192.0.2.7", Some(60)),
            ("198.51.100.0/24", Some(super::super::MAX_TIMEOUT)),
            ("2001:db8::/32", None),
            ("2001:db8::1", Some(1)),
        ] {
            let mut a = Adt::new(CMD_ADD, "s", net(text), 4);
            a.push(4, net(text), timeout);
            a.msg.close(a.adt);
            let attrs = &a.msg.buf[20..];
            let adt = Attrs(attrs).find(|(k, _)| *k == ATTR_ADT).unwrap().1;
            let (kind, data) = Attrs(adt).next().unwrap();
            assert_eq!(kind, ATTR_DATA);
            assert_eq!(
                entry(data),
                Some((net(text), timeout.unwrap_or(0))),
                "{text}"
            );
            let lineno = Attrs(data).find(|(k, _)| *k == ATTR_LINENO).unwrap().1;
            assert_eq!(lineno, 4u32.to_ne_bytes());
        }
    }

    /// Attributes whose length runs past the buffer, or is under a header, end the walk: the
    /// decoder never reads out of bounds or loops.
    #[test]
    fn malformed_attributes_end_the_walk() {
        assert_eq!(Attrs(&[8, 0, 1, 0, 1, 2]).count(), 0);
        assert_eq!(Attrs(&[2, 0, 1, 0, 0, 0, 0, 0]).count(), 0);
        assert_eq!(Attrs(&[5, 0, 1, 0, 9, 0, 0, 0, 4, 0, 2, 0]).count(), 2);
        assert_eq!(split_message(&[40, 0, 0, 0, 2, 0]), None);
        assert_eq!(entry(&[]), None);
    }

    /// An error echoes the request with the failing entry's line written into it.
    #[test]
    fn an_error_carries_the_echoed_line() {
        let mut m = Msg::new(CMD_ADD, Family::V4, "s");
        m.u32_attr(ATTR_LINENO, 104);
        let request = m.finish(7).to_vec();
        let mut body = (-ERR_HASH_FULL).to_ne_bytes().to_vec();
        body.extend_from_slice(&request);
        match error_of(&body) {
            Some(Kernel::Errno(ERR_HASH_FULL, Some(104))) => {}
            _ => panic!("not decoded"),
        }
        assert!(
            error_of(&0i32.to_ne_bytes()).is_none(),
            "an acknowledgement"
        );
        assert_eq!(
            message(CMD_ADD, ERR_HASH_FULL),
            "Hash is full, cannot add more elements"
        );
        assert_eq!(
            message(CMD_DESTROY, libc::ENOENT),
            "The set with the given name does not exist"
        );
    }
}
