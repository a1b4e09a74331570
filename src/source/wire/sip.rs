//! One SIP message model: the start line and the few headers the wire detector needs, borrowed
//! from the packet (zero-copy), from hostile input.
//!
//! Parsed: the request method and URI user, or the status code; `Call-ID` (`i`), `CSeq`,
//! `From` (`f`) and `To` (`t`) users and tags, the top `Via` (`v`) branch, `User-Agent`,
//! the `Contact` (`m`) user, and whether credentials (`Authorization`,
//! `Proxy-Authorization`) were sent. Header names are matched without regard to case, compact
//! forms included; folded (continued) header lines are refused as malformed.
//!
//! Hand-written rather than a crate: the SIP crates on crates.io (rsip, sip-codec,
//! ezk-sip-types) parse whole messages into owned trees, allocate per header and have fallen
//! behind their dependencies; this detector needs eight fields, no allocation and a hard bound
//! on the work per packet.
//!
//! This module must never keep a body, credentials or a digest (it only notes that credentials
//! were present), never allocate per message, and never read a source address from a header:
//! the sender is the packet's (or the HEP chunk's) business.

/// Most header bytes looked at in one message (a SIP message over UDP is at most 64 KiB; the
/// headers the detector needs come first in any real message).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header lines looked at in one message.
pub const MAX_LINES: usize = 128;

/// The start line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start<'a> {
    /// `METHOD sip:user@host SIP/2.0`: the method, and the Request-URI's user part if any.
    Request {
        method: &'a [u8],
        uri_user: Option<&'a [u8]>,
    },
    /// `SIP/2.0 404 Not Found`.
    Status { code: u16 },
}

/// A `From`/`To`/`Contact` value: the URI's user part and the `tag` parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Party<'a> {
    pub user: Option<&'a [u8]>,
    pub tag: Option<&'a [u8]>,
}

/// What the detector reads of one SIP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub start: Start<'a>,
    pub call_id: Option<&'a [u8]>,
    /// Sequence number and method (`CSeq: 1  ACK` allowed: any run of blanks).
    pub cseq: Option<(u32, &'a [u8])>,
    pub from: Party<'a>,
    pub to: Party<'a>,
    /// The top `Via`'s `branch` parameter.
    pub branch: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    pub contact_user: Option<&'a [u8]>,
    /// An `Authorization` or `Proxy-Authorization` header was present (its content is not kept).
    pub credentials: bool,
}

impl Message<'_> {
    /// The request method, or `None` for a response.
    pub fn method(&self) -> Option<&[u8]> {
        match self.start {
            Start::Request { method, .. } => Some(method),
            Start::Status { .. } => None,
        }
    }

    /// The status code, or `None` for a request.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            Start::Status { code } => Some(code),
            Start::Request { .. } => None,
        }
    }

    /// The method a response answers (from `CSeq`), or the request's own method.
    pub fn cseq_method(&self) -> Option<&[u8]> {
        self.cseq.map(|c| c.1).or(self.method())
    }
}

/// Why a payload is not a SIP message the detector can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Not a SIP start line (not SIP at all, or a keep-alive).
    StartLine,
    /// A header line without a colon, a folded header, or a NUL in the headers.
    Header,
    /// More than [`MAX_LINES`] header lines or [`MAX_HEAD`] bytes before the end of headers.
    TooLong,
    /// A header the detector needs is given twice with different values, or has no valid value
    /// (`Call-ID`, `CSeq`).
    Conflict,
}

impl Malformed {
    pub fn name(self) -> &'static str {
        match self {
            Malformed::StartLine => "not a SIP start line",
            Malformed::Header => "malformed header line",
            Malformed::TooLong => "headers too long",
            Malformed::Conflict => "conflicting or invalid Call-ID/CSeq",
        }
    }
}

/// Parse the start line and headers of `buf` (one SIP message; a body, if any, is ignored).
pub fn parse(buf: &[u8]) -> Result<Message<'_>, Malformed> {
    let mut lines = Lines {
        buf: &buf[..buf.len().min(MAX_HEAD)],
        pos: 0,
        whole: buf.len() <= MAX_HEAD,
        cut: false,
    };
    let first = lines.next_line().ok_or(Malformed::StartLine)?;
    let start = start_line(first).ok_or(Malformed::StartLine)?;
    let mut m = Message {
        start,
        call_id: None,
        cseq: None,
        from: Party::default(),
        to: Party::default(),
        branch: None,
        user_agent: None,
        contact_user: None,
        credentials: false,
    };
    let mut via_seen = false;
    let mut ended = false;
    for _ in 0..MAX_LINES {
        let Some(line) = lines.next_line() else {
            break;
        };
        if lines.cut {
            // The message ends inside this line (a truncated datagram): it is not used.
            break;
        }
        if line.is_empty() {
            ended = true;
            break;
        }
        if matches!(line[0], b' ' | b'\t') || line.contains(&0) {
            return Err(Malformed::Header);
        }
        let colon = memchr::memchr(b':', line).ok_or(Malformed::Header)?;
        let name = trim(&line[..colon]);
        let value = trim(&line[colon + 1..]);
        if name.is_empty() || name.iter().any(|&b| !is_token(b)) {
            return Err(Malformed::Header);
        }
        header(&mut m, name, value, &mut via_seen)?;
    }
    // A message cut inside its headers (a datagram truncated, or past MAX_HEAD) is still
    // usable when what it carries is consistent; one with no end after MAX_LINES lines is not.
    if !ended && lines.pos < lines.buf.len() {
        return Err(Malformed::TooLong);
    }
    if !ended && !lines.whole {
        return Err(Malformed::TooLong);
    }
    Ok(m)
}

fn header<'a>(
    m: &mut Message<'a>,
    name: &[u8],
    value: &'a [u8],
    via_seen: &mut bool,
) -> Result<(), Malformed> {
    let is = |long: &[u8], short: Option<u8>| {
        name.eq_ignore_ascii_case(long) || (name.len() == 1 && short == Some(name[0] | 0x20))
    };
    if is(b"call-id", Some(b'i')) {
        if value.is_empty() || value.iter().any(|&b| b <= b' ' || b == 0x7f) {
            return Err(Malformed::Conflict);
        }
        set_once(&mut m.call_id, value)?;
    } else if is(b"cseq", None) {
        let c = cseq(value).ok_or(Malformed::Conflict)?;
        match m.cseq {
            Some(old) if old != c => return Err(Malformed::Conflict),
            _ => m.cseq = Some(c),
        }
    } else if is(b"from", Some(b'f')) {
        if m.from == Party::default() {
            m.from = party(value);
        }
    } else if is(b"to", Some(b't')) {
        if m.to == Party::default() {
            m.to = party(value);
        }
    } else if is(b"via", Some(b'v')) {
        if !*via_seen {
            *via_seen = true;
            // The top Via is the first value of the first Via header.
            let first = split_top(value);
            m.branch = param(first, b"branch");
        }
    } else if is(b"user-agent", None) {
        if m.user_agent.is_none() && !value.is_empty() {
            m.user_agent = Some(value);
        }
    } else if is(b"contact", Some(b'm')) {
        if m.contact_user.is_none() {
            m.contact_user = party(split_top(value)).user;
        }
    } else if is(b"authorization", None) || is(b"proxy-authorization", None) {
        m.credentials = true;
    }
    Ok(())
}

fn set_once<'a>(slot: &mut Option<&'a [u8]>, value: &'a [u8]) -> Result<(), Malformed> {
    match *slot {
        Some(old) if old != value => Err(Malformed::Conflict),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

/// Lines ended by LF (a CR before it is dropped), within the bounded head.
struct Lines<'a> {
    buf: &'a [u8],
    pos: usize,
    /// The head is the whole message (it was not cut at [`MAX_HEAD`]).
    whole: bool,
    /// The last line returned had no LF: the message ends inside it.
    cut: bool,
}

impl<'a> Lines<'a> {
    fn next_line(&mut self) -> Option<&'a [u8]> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let (line, used) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], i + 1),
            // A last line with no LF: only when the head is the whole message.
            None if self.whole => {
                self.cut = true;
                (rest, rest.len())
            }
            None => return None,
        };
        self.pos += used;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }
}

fn start_line(line: &[u8]) -> Option<Start<'_>> {
    if let Some(rest) = strip_prefix_ci(line, b"SIP/2.0 ") {
        let code = rest.get(..3)?;
        if !code.iter().all(u8::is_ascii_digit) || rest.get(3).is_some_and(|&b| b != b' ') {
            return None;
        }
        let code = code.iter().fold(0u16, |a, &d| a * 10 + u16::from(d - b'0'));
        return (100..=699)
            .contains(&code)
            .then_some(Start::Status { code });
    }
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next()?;
    let uri = parts.next()?;
    let version = parts.next()?;
    if parts.next().is_some()
        || !version.eq_ignore_ascii_case(b"SIP/2.0")
        || method.is_empty()
        || method.len() > 32
        || !method.iter().all(|&b| b.is_ascii_uppercase() || b == b'-')
        || uri.is_empty()
    {
        return None;
    }
    Some(Start::Request {
        method,
        uri_user: uri_user(uri),
    })
}

/// `1 INVITE` → (1, `INVITE`); blanks between may be more than one.
fn cseq(value: &[u8]) -> Option<(u32, &[u8])> {
    let split = value.iter().position(|&b| b == b' ' || b == b'\t')?;
    let (num, rest) = value.split_at(split);
    if num.is_empty() || num.len() > 10 || !num.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = num.iter().try_fold(0u32, |a, &d| {
        a.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    })?;
    let method = trim(rest);
    (!method.is_empty() && method.iter().all(|&b| b.is_ascii_alphabetic() || b == b'-'))
        .then_some((n, method))
}

/// The first value of a comma-separated header (commas inside quotes or `<...>` do not split).
fn split_top(value: &[u8]) -> &[u8] {
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    for (i, &b) in value.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'<' if !quoted => angle = true,
            b'>' if !quoted => angle = false,
            b',' if !quoted && !angle => return trim(&value[..i]),
            _ => {}
        }
    }
    value
}

/// `"Name" <sip:user@host;uri-params>;tag=x` or `sip:user@host;tag=x`.
fn party(value: &[u8]) -> Party<'_> {
    // Skip a quoted display name first: it may hold `<`, `>` or `;`.
    let mut i = 0;
    let v = trim(value);
    if v.first() == Some(&b'"') {
        i = 1;
        let mut escaped = false;
        while i < v.len() {
            match v[i] {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => break,
                _ => {}
            }
            i += 1;
        }
        i += 1;
    }
    let rest = v.get(i..).unwrap_or_default();
    let (uri, params) = match memchr::memchr(b'<', rest) {
        Some(lt) => {
            let inner = &rest[lt + 1..];
            match memchr::memchr(b'>', inner) {
                Some(gt) => (&inner[..gt], &inner[gt + 1..]),
                None => (inner, &b""[..]),
            }
        }
        // No angle brackets: parameters after the URI belong to the header.
        None => match memchr::memchr(b';', rest) {
            Some(sc) => (&rest[..sc], &rest[sc..]),
            None => (rest, &b""[..]),
        },
    };
    Party {
        user: uri_user(trim(uri)),
        tag: param(params, b"tag"),
    }
}

/// The user part of a `sip:`/`sips:`/`tel:` URI (`sip:100@host` → `100`), not empty.
fn uri_user(uri: &[u8]) -> Option<&[u8]> {
    let rest = strip_prefix_ci(uri, b"sip:")
        .or_else(|| strip_prefix_ci(uri, b"sips:"))
        .or_else(|| strip_prefix_ci(uri, b"tel:"))?;
    if uri[..3].eq_ignore_ascii_case(b"tel") {
        let end = rest.iter().position(|&b| b == b';').unwrap_or(rest.len());
        return Some(&rest[..end]).filter(|u| !u.is_empty());
    }
    let at = memchr::memchr(b'@', rest)?;
    let user = &rest[..at];
    // A user part ends at `:` (password) or `;` (user parameters in a tel-style user).
    let end = user
        .iter()
        .position(|&b| b == b':' || b == b';')
        .unwrap_or(user.len());
    Some(&user[..end]).filter(|u| !u.is_empty())
}

/// The value of `;name=value` in a parameter list (name without regard to case).
fn param<'a>(params: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    params.split(|&b| b == b';').skip(1).find_map(|p| {
        let eq = memchr::memchr(b'=', p)?;
        let (k, v) = (trim(&p[..eq]), trim(&p[eq + 1..]));
        (k.eq_ignore_ascii_case(name) && !v.is_empty()).then_some(v)
    })
}

fn strip_prefix_ci<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    &s[start..end]
}

/// RFC 3261 `token` characters (header names).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SVWAR_INVITE: &[u8] = b"INVITE sip:100@192.0.2.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.9:5061;branch=z9hG4bK-3373549542;rport\r\n\
Max-Forwards: 70\r\n\
To: \"100\"<sip:100@192.0.2.1>\r\n\
From: \"100\"<sip:100@192.0.2.1>;tag=3130300131323334\r\n\
User-Agent: friendly-scanner\r\n\
Call-ID: 2811398231\r\n\
Contact: sip:100@198.51.100.9:5061\r\n\
CSeq: 1 INVITE\r\n\
Accept: application/sdp\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn a_sipvicious_invite() {
        let m = parse(SVWAR_INVITE).unwrap();
        assert_eq!(m.method(), Some(&b"INVITE"[..]));
        assert_eq!(
            m.start,
            Start::Request {
                method: b"INVITE",
                uri_user: Some(b"100")
            }
        );
        assert_eq!(m.call_id, Some(&b"2811398231"[..]));
        assert_eq!(m.cseq, Some((1, &b"INVITE"[..])));
        assert_eq!(m.from.user, Some(&b"100"[..]));
        assert_eq!(m.from.tag, Some(&b"3130300131323334"[..]));
        assert_eq!(m.to.tag, None);
        assert_eq!(m.branch, Some(&b"z9hG4bK-3373549542"[..]));
        assert_eq!(m.user_agent, Some(&b"friendly-scanner"[..]));
        assert_eq!(m.contact_user, Some(&b"100"[..]));
        assert!(!m.credentials);
    }

    #[test]
    fn responses_compact_forms_and_odd_spacing() {
        let r = b"SIP/2.0 401 Unauthorized\n\
v: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK776asdhds , SIP/2.0/UDP x;branch=other\n\
f: <sip:alice@atlanta.example>;tag=1928301774\n\
t: Bob <sip:bob@biloxi.example>;tag=a6c85cf\n\
i: a84b4c76e66710@pc33.atlanta.example\n\
CSeq: 1  ACK\n\
Content-Length: 0\n\n";
        let m = parse(r).unwrap();
        assert_eq!(m.status(), Some(401));
        assert_eq!(m.branch, Some(&b"z9hG4bK776asdhds"[..]));
        assert_eq!(m.from.user, Some(&b"alice"[..]));
        assert_eq!(m.to.user, Some(&b"bob"[..]));
        assert_eq!(m.to.tag, Some(&b"a6c85cf"[..]));
        assert_eq!(m.call_id, Some(&b"a84b4c76e66710@pc33.atlanta.example"[..]));
        assert_eq!(m.cseq_method(), Some(&b"ACK"[..]));
    }

    #[test]
    fn display_names_cannot_fake_the_uri_or_the_tag() {
        let v = br#""<sip:admin@evil>;tag=forged" <sip:200@host>;tag=real"#;
        let p = party(v);
        assert_eq!(p.user, Some(&b"200"[..]));
        assert_eq!(p.tag, Some(&b"real"[..]));
        let p = party(br#""a \" <sip:x@y>" <sip:300@h>"#);
        assert_eq!(p.user, Some(&b"300"[..]));
        // Without brackets, parameters belong to the header.
        let p = party(b"sip:400@h;tag=t1");
        assert_eq!((p.user, p.tag), (Some(&b"400"[..]), Some(&b"t1"[..])));
    }

    #[test]
    fn credentials_are_noted_not_kept() {
        let m = parse(b"REGISTER sip:h SIP/2.0\r\nAuthorization: Digest username=\"1\", response=\"abc\"\r\nCall-ID: x\r\nCSeq: 2 REGISTER\r\n\r\n").unwrap();
        assert!(m.credentials);
        assert_eq!(
            m.start,
            Start::Request {
                method: b"REGISTER",
                uri_user: None
            }
        );
    }

    #[test]
    fn hostile_and_broken_messages_are_refused() {
        for (bad, why) in [
            (&b"hello"[..], Malformed::StartLine),
            (b"\r\n\r\n", Malformed::StartLine),
            (b"INVITE sip:x@y SIP/3.0\r\n\r\n", Malformed::StartLine),
            (b"invite sip:x@y SIP/2.0\r\n\r\n", Malformed::StartLine),
            (b"SIP/2.0 99 Low\r\n\r\n", Malformed::StartLine),
            (b"SIP/2.0 2000 OK\r\n\r\n", Malformed::StartLine),
            (
                b"OPTIONS sip:x@y SIP/2.0\r\nno colon\r\n\r\n",
                Malformed::Header,
            ),
            (
                b"OPTIONS sip:x@y SIP/2.0\r\nCall-ID: a\r\n b\r\n\r\n",
                Malformed::Header,
            ),
            (
                b"OPTIONS sip:x@y SIP/2.0\r\nCall-ID: a\r\ni: b\r\n\r\n",
                Malformed::Conflict,
            ),
            (
                b"OPTIONS sip:x@y SIP/2.0\r\nCSeq: x OPTIONS\r\n\r\n",
                Malformed::Conflict,
            ),
            (
                b"OPTIONS sip:x@y SIP/2.0\r\nCSeq: 99999999999 OPTIONS\r\n\r\n",
                Malformed::Conflict,
            ),
            (
                b"OPTIONS sip:x@y SIP/2.0\r\nCall-ID: a\0b\r\n\r\n",
                Malformed::Header,
            ),
        ] {
            assert_eq!(parse(bad), Err(why), "{}", String::from_utf8_lossy(bad));
        }
        let mut many = b"OPTIONS sip:x@y SIP/2.0\r\n".to_vec();
        for _ in 0..=MAX_LINES {
            many.extend_from_slice(b"X-A: b\r\n");
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many), Err(Malformed::TooLong));
        let mut long = b"OPTIONS sip:x@y SIP/2.0\r\nX-A: ".to_vec();
        long.resize(MAX_HEAD + 10, b'a');
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse(&long), Err(Malformed::TooLong));
    }

    #[test]
    fn a_message_cut_in_its_headers_is_used_when_consistent() {
        let cut = &SVWAR_INVITE[..SVWAR_INVITE.len() - 40];
        let m = parse(cut).unwrap();
        assert_eq!(m.call_id, Some(&b"2811398231"[..]));
    }
}
