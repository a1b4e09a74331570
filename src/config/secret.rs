//! Secrets (API keys, webhook header values) as a type that cannot be printed by accident.
//!
//! This module owns the redaction rule. It must never read a secret from anywhere: callers
//! (`source::apiban`, `report`) load them and wrap them here.

use std::fmt;

/// An API key. `Debug` and `Display` print `[redacted]`; only [`Secret::expose`] gives the
/// value, for the one place that sends it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: String,
    origin: String,
}

impl Secret {
    /// `origin` says where the key came from (a file path or the variable name) for messages.
    pub fn new(value: impl Into<String>, origin: impl Into<String>) -> Secret {
        Secret {
            value: value.into(),
            origin: origin.into(),
        }
    }

    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Where the key came from, e.g. `the key file /etc/sipban/apiban.key`.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret([redacted] from {})", self.origin)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `text` with every occurrence of the key replaced by `[redacted]`. Every URL and message
/// that may hold the key goes through this before it is printed or returned.
pub fn redact(text: &str, key: &Secret) -> String {
    if key.value.is_empty() {
        return text.to_string();
    }
    text.replace(&key.value, "[redacted]")
}

/// What sipban shows of a URL, in every output, log line and message: its user info, every
/// query value and the fragment replaced by `[redacted]`
/// (`https://[redacted]@host/list?token=[redacted]&key=[redacted]`); scheme, host, port, path
/// and query keys stay, so a person can still tell which URL it was. A URL with none of
/// these is returned unchanged. The user info ends at the last `@` before the first `/`, `?`
/// or `#` (as the HTTP client reads it); a query value is everything after a parameter's first
/// `=` up to the next `&`, and a parameter without `=` is a value.
pub fn redact_url(url: &str) -> String {
    const R: &str = "[redacted]";
    let (before_fragment, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let (before_query, query) = match before_fragment.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (before_fragment, None),
    };
    let mut out = String::with_capacity(url.len() + 16);
    let rest = match before_query.split_once("://") {
        Some((scheme, rest)) => {
            out.push_str(scheme);
            out.push_str("://");
            rest
        }
        None => before_query,
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, _)) if !userinfo.is_empty() => {
            out.push_str(R);
            out.push_str(&rest[userinfo.len()..]);
        }
        _ => out.push_str(rest),
    }
    if let Some(query) = query {
        out.push('?');
        for (i, param) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match param.split_once('=') {
                Some((key, value)) => {
                    out.push_str(key);
                    out.push('=');
                    if !value.is_empty() {
                        out.push_str(R);
                    }
                }
                None if param.is_empty() => {}
                None => out.push_str(R),
            }
        }
    }
    if let Some(fragment) = fragment {
        out.push('#');
        if !fragment.is_empty() {
            out.push_str(R);
        }
    }
    out
}

/// `text` with every `scheme://…` URL in it shown through [`redact_url`]: for messages that
/// may quote a URL (an HTTP client's error, a redirect target). A URL ends at whitespace or
/// a quote.
pub fn redact_urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(sep) = rest.find("://") {
        let start = rest[..sep]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let len = rest[sep..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(rest.len() - sep);
        let end = sep + len;
        out.push_str(&rest[..start]);
        out.push_str(&redact_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::{redact_url, redact_urls_in};

    #[test]
    fn user_info_is_redacted_with_or_without_a_password() {
        assert_eq!(
            redact_url("https://user:pass@host/list.txt"),
            "https://[redacted]@host/list.txt"
        );
        assert_eq!(
            redact_url("https://t0ken@host:8443/list.txt"),
            "https://[redacted]@host:8443/list.txt"
        );
        assert_eq!(
            redact_url("http://user:@[2001:db8::1]:80/x"),
            "http://[redacted]@[2001:db8::1]:80/x"
        );
        // A password holding `@` (legal before the last one): all of it goes.
        assert_eq!(
            redact_url("https://u:p@ss@host/x"),
            "https://[redacted]@host/x"
        );
        // No path at all.
        assert_eq!(redact_url("https://u:p@host"), "https://[redacted]@host");
    }

    #[test]
    fn every_query_value_is_redacted_and_the_keys_stay() {
        assert_eq!(
            redact_url("https://host/list?token=abc&key=x"),
            "https://host/list?token=[redacted]&key=[redacted]"
        );
        assert_eq!(
            redact_url("https://u:p@host/list?a=1&b=&c&=d&&e=f=g"),
            "https://[redacted]@host/list?a=[redacted]&b=&[redacted]&=[redacted]&&e=[redacted]"
        );
        assert_eq!(
            redact_url("https://host?token=abc"),
            "https://host?token=[redacted]"
        );
        assert_eq!(redact_url("https://host/list?"), "https://host/list?");
    }

    #[test]
    fn the_fragment_is_redacted_and_does_not_hide_the_query() {
        assert_eq!(
            redact_url("https://host/list?token=abc#access_token=xyz"),
            "https://host/list?token=[redacted]#[redacted]"
        );
        assert_eq!(
            redact_url("https://host/list#v4"),
            "https://host/list#[redacted]"
        );
        // A `?` after the `#` is part of the fragment.
        assert_eq!(
            redact_url("https://host/list#frag?token=abc"),
            "https://host/list#[redacted]"
        );
        assert_eq!(redact_url("https://host/list#"), "https://host/list#");
    }

    #[test]
    fn a_url_without_secrets_is_unchanged() {
        for url in [
            "https://lists.blocklist.de/lists/sip.txt",
            "https://www.voipbl.org/update/",
            "http://[2001:db8::1]:8080/x.txt",
            "http://127.0.0.1:9/list.txt",
            "https://host/path@with-at/list.txt",
            "https://@host/x",
            "",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn an_at_sign_in_the_query_or_fragment_is_not_user_info() {
        assert_eq!(
            redact_url("https://host/list?mail=a@b.org&k=v"),
            "https://host/list?mail=[redacted]&k=[redacted]"
        );
        assert_eq!(
            redact_url("https://host?mail=a@b.org"),
            "https://host?mail=[redacted]"
        );
        assert_eq!(
            redact_url("https://host/x#a@b"),
            "https://host/x#[redacted]"
        );
        assert_eq!(
            redact_url("https://u:p@host/x?mail=a@b.org"),
            "https://[redacted]@host/x?mail=[redacted]"
        );
    }

    #[test]
    fn percent_encoded_forms_are_redacted_whole() {
        // An encoded `@`, `:` or `&` is part of the user info or value, not a delimiter.
        assert_eq!(
            redact_url("https://us%40er:p%3Ass%26@host/x"),
            "https://[redacted]@host/x"
        );
        assert_eq!(
            redact_url("https://host/x?tok%65n=a%26key%3Db&k%3D=%40"),
            "https://host/x?tok%65n=[redacted]&k%3D=[redacted]"
        );
        // Encoded `?` and `#` in the path do not start a query or a fragment.
        assert_eq!(
            redact_url("https://host/a%3Fb%23c?t=s3cret"),
            "https://host/a%3Fb%23c?t=[redacted]"
        );
    }

    #[test]
    fn urls_inside_a_message_are_redacted() {
        // A URL runs to the next space or quote: the `):` after it goes with the last value.
        assert_eq!(
            redact_urls_in(
                "error sending request for url (https://u:p@host/x?token=abc): connection refused"
            ),
            "error sending request for url (https://[redacted]@host/x?token=[redacted] connection refused"
        );
        assert_eq!(
            redact_urls_in("redirect to `http://a:b@h/` then 'https://h/?k=v' failed"),
            "redirect to `http://[redacted]@h/` then 'https://h/?k=[redacted]' failed"
        );
        assert_eq!(redact_urls_in("HTTP 404 Not Found"), "HTTP 404 Not Found");
        assert_eq!(redact_urls_in("a :// b"), "a :// b");
    }
}
