//! Log streams (Auth0's): every log event that passes a stream's category filters is POSTed to
//! the stream's HTTP endpoint, in batches, at least once, in order, from a durable queue.
//!
//! What is pure lives here: the stream, its statuses and sink, Auth0's filter categories and the
//! one mapping of Latch's event types onto them ([`category_of`]), and the shape an event is
//! sent in ([`LogEvent::api_json`], the event as `GET /api/v2/logs` shows it).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::SecretString;
use crate::model::LogEvent;

/// Auth0's log stream filter categories (`{"type": "category", "name": …}`). Latch emits events
/// in some of them only; the others are accepted so a filter list copied from Auth0 works.
pub const CATEGORIES: [&str; 20] = [
    "auth.ancillary.fail",
    "auth.ancillary.success",
    "auth.login.fail",
    "auth.login.notification",
    "auth.login.success",
    "auth.logout.fail",
    "auth.logout.success",
    "auth.signup.fail",
    "auth.signup.success",
    "auth.silent_auth.fail",
    "auth.silent_auth.success",
    "auth.token_exchange.fail",
    "auth.token_exchange.success",
    "management.fail",
    "management.success",
    "scim.event",
    "system.notification",
    "user.fail",
    "user.notification",
    "user.success",
];

/// The category of events of no other category.
pub const OTHER: &str = "other";

/// Is `name` a category a filter may name ([`CATEGORIES`] or [`OTHER`])?
pub fn is_category(name: &str) -> bool {
    name == OTHER || CATEGORIES.contains(&name)
}

/// The category of a Latch event type (docs/events.md), as Auth0 files the same codes; `None`
/// for a type Latch does not know (such events stream as [`OTHER`]).
pub fn known_category(event_type: &str) -> Option<&'static str> {
    Some(match event_type {
        "s" => "auth.login.success",
        "f" => "auth.login.fail",
        // Auth0's "Blocked Account" and "Blocked IP Address".
        "limit_wc" | "limit_mu" => "system.notification",
        "slo"
        | "oidc_backchannel_logout_succeeded"
        | "universal_logout_succeeded"
        | "federated_logout_succeeded"
        | "saml_logout_response"
        | "gtr_delivery_succeeded" => "auth.logout.success",
        "flo"
        | "oidc_backchannel_logout_failed"
        | "universal_logout_failed"
        | "federated_logout_failed"
        | "gtr_delivery_failed" => "auth.logout.fail",
        "seacft" | "sertft" | "seccft" | "srrt" => "auth.token_exchange.success",
        "feacft" | "fertft" | "ferrt" | "fcc" => "auth.token_exchange.fail",
        "sapi" => "management.success",
        "fapi" => "management.fail",
        "sscim" => "scim.event",
        LOG_STREAM_FAILED => "system.notification",
        _ => return None,
    })
}

/// The category an event of `event_type` streams as.
pub fn category_of(event_type: &str) -> &'static str {
    known_category(event_type).unwrap_or(OTHER)
}

/// Latch's own event type: a log stream's delivery started failing (the first failure of a
/// streak; `details.status` `active`), or it was suspended after failing too long (`details.status`
/// `suspended`).
pub const LOG_STREAM_FAILED: &str = "log_stream_failed";

/// `active` (sending), `paused` (by an admin: events are held), `suspended` (failed for too long:
/// events are held until an admin sets it `active` again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStreamStatus {
    Active,
    Paused,
    Suspended,
}

impl LogStreamStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Suspended => "suspended",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "paused" => Some(Self::Paused),
            "suspended" => Some(Self::Suspended),
            _ => None,
        }
    }
}

/// `JSONLINES`: one event object per line; `JSONARRAY`: a JSON array of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentFormat {
    JsonLines,
    JsonArray,
}

impl ContentFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JsonLines => "JSONLINES",
            Self::JsonArray => "JSONARRAY",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "JSONLINES" => Some(Self::JsonLines),
            "JSONARRAY" => Some(Self::JsonArray),
            _ => None,
        }
    }

    /// A batch's body: each item (`{"log_id", "data"}`, already JSON) in this format.
    pub fn body(self, items: &[String]) -> String {
        match self {
            Self::JsonLines => {
                let mut out = String::with_capacity(items.iter().map(|i| i.len() + 1).sum());
                for i in items {
                    out.push_str(i);
                    out.push('\n');
                }
                out
            }
            Self::JsonArray => format!("[{}]", items.join(",")),
        }
    }
}

/// The default `httpContentType`.
pub const DEFAULT_CONTENT_TYPE: &str = "application/json";

/// Where an HTTP stream sends (Auth0's `sink` of a `type: http` stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStreamSink {
    /// `httpEndpoint`: https, or http on loopback (checked when saved and when sent).
    pub endpoint: String,
    /// `httpContentType`.
    pub content_type: String,
    /// `httpContentFormat`.
    pub content_format: ContentFormat,
    /// `httpAuthorization`: the `Authorization` header's value, sent verbatim. Stored encrypted,
    /// never shown by the API.
    pub authorization: Option<SecretString>,
    /// `httpCustomHeaders`: more headers sent with every request, as (name, value), in order.
    /// The values are stored encrypted and never shown by the API (they often hold a key); the
    /// names are shown.
    pub headers: Vec<(String, SecretString)>,
}

/// A log stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStream {
    /// `lst_…`.
    pub id: String,
    pub name: String,
    pub status: LogStreamStatus,
    pub sink: LogStreamSink,
    /// Category names ([`is_category`]), each once; empty: every event.
    pub filters: Vec<String>,
    /// Why the stream was suspended (the last delivery error), while it is.
    pub suspended_reason: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// Delivery state, written by the workers only: failed attempts in a row, since when, the
    /// last error, and when the next attempt is due (`None`: now).
    pub failures: i32,
    pub failing_since: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<OffsetDateTime>,
}

impl LogStream {
    /// Does an event of `event_type` pass the filters?
    pub fn accepts(&self, event_type: &str) -> bool {
        accepts(&self.filters, event_type)
    }
}

/// Do `filters` (category names; none: everything) let an event of `event_type` through?
pub fn accepts(filters: &[String], event_type: &str) -> bool {
    filters.is_empty() || {
        let c = category_of(event_type);
        filters.iter().any(|f| f == c)
    }
}

/// One queued event of a stream: its place in the stream's queue, and the event as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStreamEvent {
    pub seq: i64,
    pub log_id: String,
    /// The event as `GET /api/v2/logs` shows it ([`LogEvent::api_json`]), as JSON text.
    pub payload: String,
}

impl LogStreamEvent {
    /// `{"log_id": …, "data": {…}}`, as JSON text.
    pub fn item(&self) -> String {
        let id = serde_json::Value::String(self.log_id.clone());
        format!("{{\"log_id\":{id},\"data\":{}}}", self.payload)
    }
}

/// The outcome of a failed attempt, as a worker records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStreamFailure {
    /// Failed attempts in a row, this one included.
    pub failures: i32,
    /// When the streak began.
    pub failing_since: OffsetDateTime,
    pub error: String,
    pub next_attempt_at: OffsetDateTime,
    /// Failed too long: the stream becomes `suspended` with `error` as the reason (unless an
    /// admin changed its status meanwhile).
    pub suspend: bool,
}

impl LogEvent {
    /// The event as `GET /api/v2/logs` answers it (Auth0's shape): `log_id`, `date` (RFC 3339),
    /// `type`, `description`, `user_id`, `client_id`, `connection`, `ip`, `details`.
    pub fn api_json(&self) -> serde_json::Value {
        serde_json::json!({
            "log_id": self.log_id.as_str(),
            "date": self.date.format(&Rfc3339).ok(),
            "type": self.event_type,
            "description": self.description,
            "user_id": self.user_id.as_ref().map(|u| u.as_str()),
            "client_id": self.client_id.as_ref().map(|c| c.as_str()),
            "connection": self.connection.as_ref().map(|c| c.as_str()),
            "ip": self.ip,
            "details": self.details,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every type in docs/events.md's table (`| \`type\` |` or `| \`a\` / \`b\` |`).
    fn documented_types() -> Vec<String> {
        let doc = include_str!("../../../../docs/events.md");
        let mut out = Vec::new();
        for line in doc.lines() {
            let Some(first) = line.strip_prefix("| ").and_then(|l| l.split(" |").next()) else {
                continue;
            };
            for part in first.split(" / ") {
                let part = part.split(" (").next().unwrap_or(part).trim();
                if let Some(t) = part.strip_prefix('`').and_then(|p| p.strip_suffix('`')) {
                    out.push(t.to_owned());
                }
            }
        }
        out
    }

    #[test]
    fn every_documented_type_has_a_category() {
        let types = documented_types();
        assert!(types.len() >= 20, "{types:?}");
        for t in &types {
            let c = known_category(t);
            assert!(
                c.is_some(),
                "{t} has no log stream category: add it to known_category"
            );
            assert!(is_category(c.unwrap_or_default()), "{t}: {c:?}");
        }
        assert!(types.iter().any(|t| t == LOG_STREAM_FAILED));
    }

    #[test]
    fn categories_of_the_main_types() {
        assert_eq!(category_of("s"), "auth.login.success");
        assert_eq!(category_of("f"), "auth.login.fail");
        assert_eq!(category_of("slo"), "auth.logout.success");
        assert_eq!(category_of("flo"), "auth.logout.fail");
        assert_eq!(category_of("sapi"), "management.success");
        assert_eq!(category_of("sscim"), "scim.event");
        assert_eq!(category_of("seacft"), "auth.token_exchange.success");
        assert_eq!(category_of("ferrt"), "auth.token_exchange.fail");
        assert_eq!(category_of("something_new"), OTHER);
        assert!(is_category("other") && is_category("user.notification"));
        assert!(!is_category("auth.login") && !is_category(""));
    }

    #[test]
    fn filters() {
        let none: Vec<String> = vec![];
        assert!(accepts(&none, "s") && accepts(&none, "whatever"));
        let login = vec!["auth.login.success".to_owned()];
        assert!(accepts(&login, "s") && !accepts(&login, "slo"));
        let other = vec![OTHER.to_owned()];
        assert!(accepts(&other, "unknown") && !accepts(&other, "s"));
    }

    #[test]
    fn bodies() {
        let e = LogStreamEvent {
            seq: 1,
            log_id: "log_1".into(),
            payload: r#"{"type":"s"}"#.into(),
        };
        let item = e.item();
        assert_eq!(item, r#"{"log_id":"log_1","data":{"type":"s"}}"#);
        let items = vec![item.clone(), item.clone()];
        assert_eq!(
            ContentFormat::JsonLines.body(&items),
            format!("{item}\n{item}\n")
        );
        let arr: serde_json::Value =
            serde_json::from_str(&ContentFormat::JsonArray.body(&items)).unwrap_or_default();
        assert_eq!(arr.as_array().map(Vec::len), Some(2));
        assert_eq!(
            ContentFormat::parse("JSONLINES"),
            Some(ContentFormat::JsonLines)
        );
        assert_eq!(ContentFormat::parse("JSONOBJECT"), None);
    }
}
