//! The generic webhook: one JSON document per batch of queued items, POSTed to the configured
//! https URL with the configured headers.
//!
//! The document:
//!
//! ```json
//! {"source": "sipban", "sipban_version": "0.1.0", "sent_at": "2024-05-01T10:05:00Z",
//!  "reports": [{"id": 17, "address": "45.1.2.3",
//!               "first_seen": "2024-05-01T10:00:00Z", "last_seen": "2024-05-01T10:04:00Z",
//!               "first_seen_unix": 1714557600, "last_seen_unix": 1714557840,
//!               "kinds": ["sip_auth"], "events": 12, "counts": {"sip_auth": 12},
//!               "rules": {"sip_registration": 12}, "transports": ["udp"], "ports": [],
//!               "abuseipdb_categories": [8, 18]}]}
//! ```
//!
//! Delivery is at least once: a batch whose answer was lost is sent again, and `id` (stable
//! per queued item) lets the collector drop repeats. Answers: 2xx delivered; 429, 5xx and
//! network errors keep the items with a backoff; 401/403/404/405 keep them and stop (a
//! configuration problem); any other 4xx drops the batch with the reason logged.
//!
//! This module must never print a header value: they are [`Secret`]s, and every message goes
//! through [`super::redact_all`].

use super::{comment, queue::Item, read_body, redact_all, retry_after, Outcome, WebhookSettings};
use crate::source::apiban::Secret;

/// The JSON document for a batch.
pub fn document(items: &[Item], now: i64) -> serde_json::Value {
    let reports: Vec<serde_json::Value> = items
        .iter()
        .map(|i| {
            serde_json::json!({
                "id": i.id,
                "address": i.ip.to_string(),
                "first_seen": comment::iso8601(i.first),
                "last_seen": comment::iso8601(i.last),
                "first_seen_unix": i.first,
                "last_seen_unix": i.last,
                "kinds": i.detail.kinds.iter().map(|k| k.name()).collect::<Vec<_>>(),
                "events": i.detail.events,
                "rules": i.detail.rules,
                "transports": i.detail.transports,
                "ports": i.detail.ports,
                "abuseipdb_categories": i.detail.categories(),
            })
        })
        .collect();
    serde_json::json!({
        "source": "sipban",
        "sipban_version": env!("CARGO_PKG_VERSION"),
        "sent_at": comment::iso8601(now),
        "reports": reports,
    })
}

fn classify(status: u16, retry: Option<u64>, body: &[u8], secrets: &[&Secret]) -> Outcome {
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    let text = redact_all(text.trim(), secrets);
    let with = |what: &str| {
        if text.is_empty() {
            format!("HTTP {status} {what}")
        } else {
            format!("HTTP {status}: {text}")
        }
    };
    match status {
        200..=299 => Outcome::Accepted,
        429 => Outcome::RateLimited {
            retry_after: retry,
            detail: with("(rate limited)"),
        },
        401 | 403 => Outcome::Unauthorized(with("(refused the headers)")),
        404 | 405 => Outcome::Misconfigured(format!("HTTP {status}: check the webhook url")),
        408 => Outcome::NotDelivered(with("(request timeout)")),
        400..=499 => Outcome::Refused(with("(refused)")),
        500..=599 => Outcome::NotDelivered(format!("HTTP {status} (server error)")),
        _ => Outcome::Unknown(format!("unexpected HTTP {status}")),
    }
}

/// POST one document.
pub async fn post(
    client: &reqwest::Client,
    settings: &WebhookSettings,
    headers: &[(String, Secret)],
    doc: &serde_json::Value,
) -> Outcome {
    use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
    let secrets: Vec<&Secret> = headers.iter().map(|(_, s)| s).collect();
    let mut req = client
        .post(&settings.url)
        .header(CONTENT_TYPE, "application/json")
        .timeout(settings.timeout);
    for (name, value) in headers {
        let (Ok(n), Ok(mut v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value.expose()),
        ) else {
            return Outcome::NotDelivered(format!("the webhook header `{name}` cannot be sent"));
        };
        v.set_sensitive(true);
        req = req.header(n, v);
    }
    tracing::debug!("webhook: POST {}", settings.url);
    match req.body(doc.to_string()).send().await {
        Err(e) => super::send_error(&e, &secrets),
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let retry = retry_after(resp.headers());
            let body = read_body(&mut resp).await;
            classify(status, retry, &body, &secrets)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Detail, OffenceKind, Transport};

    #[test]
    fn the_document_carries_the_documented_fields() {
        let mut d = Detail {
            events: 12,
            ..Detail::default()
        };
        d.kinds.insert(OffenceKind::SipAuth);
        d.rules.insert("sip_registration".into());
        d.transports.insert(Transport::Udp);
        let item = Item {
            id: 17,
            sink: "webhook".into(),
            ip: "45.1.2.3".parse().unwrap(),
            first: 1_714_557_600,
            last: 1_714_557_840,
            detail: d,
            enqueued: 0,
            attempts: 0,
            next_attempt: 0,
            claimed: None,
            last_error: None,
        };
        let v = document(&[item], 1_714_557_900);
        assert_eq!(v["sipban_version"], env!("CARGO_PKG_VERSION"));
        let r = &v["reports"][0];
        assert_eq!(r["id"], 17);
        assert_eq!(r["address"], "45.1.2.3");
        assert_eq!(r["first_seen"], "2024-05-01T10:00:00Z");
        assert_eq!(r["last_seen_unix"], 1_714_557_840);
        assert_eq!(r["kinds"][0], "sip_auth");
        assert_eq!(r["rules"][0], "sip_registration");
        assert_eq!(r["events"], 12);
        assert_eq!(r["transports"][0], "udp");
        assert_eq!(r["abuseipdb_categories"], serde_json::json!([8, 18]));
    }

    #[test]
    fn answers_are_classified_without_secrets() {
        let s = Secret::new("Bearer t0ken", "test");
        assert_eq!(classify(204, None, b"", &[&s]), Outcome::Accepted);
        let o = classify(401, None, b"bad Bearer t0ken", &[&s]);
        assert_eq!(o, Outcome::Unauthorized("HTTP 401: bad [redacted]".into()));
        assert!(matches!(
            classify(422, None, b"no", &[&s]),
            Outcome::Refused(_)
        ));
        assert!(matches!(
            classify(429, Some(5), b"", &[&s]),
            Outcome::RateLimited {
                retry_after: Some(5),
                ..
            }
        ));
    }
}
