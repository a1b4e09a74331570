//! The APIBAN wire protocol: build one request, send it, and classify the answer.
//!
//! APIBAN's answers are not typed consistently: `ipaddress` is an array on success and "no new
//! bans", but a plain string in 403/429 bodies (and in some documented "no new bans" bodies).
//! So the HTTP status is looked at first, and `ipaddress` is read as a string or an array.
//!
//! This module must never print or return a URL or an error text that may contain the key
//! (with v1 the key is a path segment): every message it builds goes through
//! [`super::redact`], and reqwest errors are described from their causes, never their URL.

use super::{redact, ApiVersion, ApibanSettings, Secret};
use crate::net;
use serde::Deserialize;
use std::net::IpAddr;

/// The largest answer body read. A page of 250 addresses is about 10 KiB.
pub const MAX_BODY: u64 = 1 << 20;

/// The ID that starts a listing from its oldest addresses (what every official client sends).
pub const START_ID: &str = "100";

/// The `ID` APIBAN sends when there are no new bans. Never stored as a cursor.
const NONE_ID: &str = "none";

/// The body of every APIBAN answer.
#[derive(Debug, Deserialize)]
struct Body {
    #[serde(default)]
    ipaddress: Option<StrOrList>,
    #[serde(rename = "ID", default)]
    id: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StrOrList {
    One(String),
    Many(Vec<serde_json::Value>),
}

impl Body {
    fn id(&self) -> Option<String> {
        match &self.id {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }

    /// The listed strings; non-strings in an array come back as their JSON text.
    fn items(&self) -> Vec<String> {
        match &self.ipaddress {
            None => Vec::new(),
            Some(StrOrList::One(s)) => vec![s.clone()],
            Some(StrOrList::Many(v)) => v
                .iter()
                .map(|x| match x {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
        }
    }
}

/// What one `banned` request came back with.
#[derive(Debug)]
pub enum Answer {
    /// A page of addresses (as sent) and the ID that fetches the next page.
    Page { items: Vec<String>, next: String },
    /// HTTP 400 (or 200) with `ID: "none"`: the listing is caught up.
    NoNewBans,
    /// HTTP 401/403: the key was refused.
    Unauthorized,
    /// HTTP 429.
    RateLimited,
    /// Anything else, worded for the admin (and already redacted).
    Failed(String),
}

/// What `check` said about one address.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CheckAnswer {
    pub listed: bool,
    /// The `ID` APIBAN answered with, when it is not a "none"/"0" placeholder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Whether an ID is safe to store and to put in a v1 URL path.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn set_name(settings: &ApibanSettings) -> &'static str {
    settings.set.as_str()
}

/// Send one request. `v2_body` is the JSON body for v2; `v1_path` the path after
/// `/api/<KEY>/` for v1.
async fn send(
    client: &reqwest::Client,
    settings: &ApibanSettings,
    key: &Secret,
    v2_endpoint: &str,
    v2_body: serde_json::Value,
    v1_path: &str,
) -> Result<reqwest::Response, String> {
    use reqwest::header;
    let req = match settings.api {
        ApiVersion::V2 => {
            let url = format!("{}/api/{v2_endpoint}", settings.base_url);
            tracing::debug!("apiban: POST {url} {v2_body}");
            let mut auth = header::HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                .map_err(|_| "the APIBAN key cannot be sent in a header".to_string())?;
            auth.set_sensitive(true);
            client
                .post(url)
                .header(header::AUTHORIZATION, auth)
                .header(header::CONTENT_TYPE, "application/json")
                .body(v2_body.to_string())
        }
        ApiVersion::V1 => {
            let url = format!("{}/api/{}/{v1_path}", settings.base_url, key.expose());
            tracing::debug!("apiban: GET {}", redact(&url, key));
            client.get(url)
        }
    };
    req.header(header::ACCEPT, "application/json")
        .timeout(settings.timeout)
        .send()
        .await
        .map_err(|e| redact(&describe(&e), key))
}

/// Read a body of at most [`MAX_BODY`] bytes.
async fn read_body(resp: &mut reqwest::Response, key: &Secret) -> Result<Vec<u8>, String> {
    if let Some(len) = resp.content_length() {
        if len > MAX_BODY {
            return Err(format!(
                "the answer is larger than {MAX_BODY} bytes ({len} bytes)"
            ));
        }
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if (body.len() + chunk.len()) as u64 > MAX_BODY {
                    return Err(format!("the answer is larger than {MAX_BODY} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(redact(&describe(&e), key)),
        }
    }
}

fn parse_body(body: &[u8], key: &Secret) -> Result<Body, String> {
    serde_json::from_slice::<Body>(body)
        .map_err(|e| redact(&format!("malformed JSON in the answer: {e}"), key))
}

/// Server-controlled text, shortened and redacted for a message.
fn shown(text: &str, key: &Secret) -> String {
    let t: String = text.chars().take(100).collect();
    redact(&t, key)
}

/// Fetch the page that starts at `id`. Returns the answer and the server's address.
pub async fn get_page(
    client: &reqwest::Client,
    settings: &ApibanSettings,
    key: &Secret,
    id: &str,
) -> (Answer, Option<IpAddr>) {
    let body = serde_json::json!({ "set": set_name(settings), "id": id });
    let mut resp = match send(client, settings, key, "get", body, &format!("banned/{id}")).await {
        Ok(r) => r,
        Err(e) => return (Answer::Failed(e), None),
    };
    let remote = resp.remote_addr().map(|a| net::canonical_ip(a.ip()));
    let status = resp.status().as_u16();
    let answer = match status {
        401 | 403 => Answer::Unauthorized,
        429 => Answer::RateLimited,
        200 | 400 => match read_body(&mut resp, key)
            .await
            .and_then(|b| parse_body(&b, key))
        {
            Err(e) => Answer::Failed(if status == 400 {
                format!("HTTP 400 with an unreadable body: {e}")
            } else {
                e
            }),
            Ok(b) => match b.id() {
                Some(next) if next == NONE_ID => Answer::NoNewBans,
                _ if status == 400 => {
                    Answer::Failed(format!("HTTP 400: {}", shown(&b.items().join(", "), key)))
                }
                None => Answer::Failed("the answer has no ID".into()),
                Some(next) => Answer::Page {
                    items: b.items(),
                    next,
                },
            },
        },
        s => Answer::Failed(format!("HTTP {s}")),
    };
    (answer, remote)
}

/// Why `check` could not answer.
#[derive(Debug)]
pub enum CheckError {
    Unauthorized,
    RateLimited,
    Failed(String),
}

/// Ask APIBAN whether `ip` is listed.
pub async fn check(
    client: &reqwest::Client,
    settings: &ApibanSettings,
    key: &Secret,
    ip: IpAddr,
) -> Result<CheckAnswer, CheckError> {
    let body = serde_json::json!({ "set": set_name(settings), "ipaddress": ip.to_string() });
    let mut resp = send(client, settings, key, "check", body, &format!("check/{ip}"))
        .await
        .map_err(CheckError::Failed)?;
    let status = resp.status().as_u16();
    match status {
        401 | 403 => Err(CheckError::Unauthorized),
        429 => Err(CheckError::RateLimited),
        // Every documented "not listed" answer is a 400 or 404, whatever the body.
        400 | 404 => Ok(CheckAnswer {
            listed: false,
            id: None,
        }),
        200..=299 => {
            let b = read_body(&mut resp, key)
                .await
                .and_then(|b| parse_body(&b, key))
                .map_err(CheckError::Failed)?;
            let items = b.items();
            let not_listed = items.len() == 1
                && matches!(
                    items[0].to_ascii_lowercase().as_str(),
                    "ok" | "not blocked" | "none"
                );
            let id = b.id().filter(|i| !matches!(i.as_str(), NONE_ID | "0"));
            Ok(CheckAnswer {
                listed: !not_listed,
                id: if not_listed { None } else { id },
            })
        }
        s => Err(CheckError::Failed(format!("HTTP {s}"))),
    }
}

/// A reqwest error as one line (see [`crate::http::describe`]; it never holds the URL).
pub fn describe(e: &reqwest::Error) -> String {
    crate::http::describe(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str) -> Body {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn ipaddress_is_a_string_or_an_array() {
        let b = body(r#"{"ipaddress":["192.0.2.1","192.0.2.2"],"ID":"1644910929"}"#);
        assert_eq!(b.items(), ["192.0.2.1", "192.0.2.2"]);
        assert_eq!(b.id().as_deref(), Some("1644910929"));
        let b = body(r#"{"ipaddress":"rate limit exceeded","ID":"unauthorized"}"#);
        assert_eq!(b.items(), ["rate limit exceeded"]);
        let b = body(r#"{"ipaddress":["no new bans"],"ID":"none"}"#);
        assert_eq!(b.id().as_deref(), Some("none"));
        let b = body(r#"{"ipaddress":[1, null, "x"],"ID":12}"#);
        assert_eq!(b.items(), ["1", "null", "x"]);
        assert_eq!(b.id().as_deref(), Some("12"));
        assert!(serde_json::from_str::<Body>(r#"{"ipaddress":{"a":1}}"#).is_err());
    }

    #[test]
    fn ids_are_checked_before_use() {
        assert!(valid_id("100"));
        assert!(valid_id("1663924065"));
        assert!(!valid_id(""));
        assert!(!valid_id("../x"));
        assert!(!valid_id("a b"));
        assert!(!valid_id(&"9".repeat(65)));
    }
}
