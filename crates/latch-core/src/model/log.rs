use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{ClientId, ConnectionName, LogId, UserId};

/// A log event; `event_type` is an Auth0 log code (`s`, `f`, `slo`, `sapi`, …), see docs/events.md.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEvent {
    pub log_id: LogId,
    pub date: OffsetDateTime,
    pub event_type: String,
    pub description: String,
    pub user_id: Option<UserId>,
    pub client_id: Option<ClientId>,
    pub connection: Option<ConnectionName>,
    pub ip: Option<String>,
    pub details: serde_json::Value,
}

impl LogEvent {
    /// A new event with a fresh time-ordered id; set the optional fields with struct update.
    pub fn new(date: OffsetDateTime, event_type: &str, description: &str) -> Self {
        Self {
            log_id: LogId::new(format!("log_{}", uuid::Uuid::now_v7().simple())),
            date,
            event_type: event_type.to_owned(),
            description: description.to_owned(),
            user_id: None,
            client_id: None,
            connection: None,
            ip: None,
            details: serde_json::Value::Null,
        }
    }
}

/// Longest reason (in characters) a refusal event quotes: reasons can repeat what a caller sent
/// (an undecodable token header, say), so they are cut short before they are logged.
pub const LOG_REASON_MAX: usize = 200;

/// `text` fit for a log event although a caller shaped it: at most `max` characters (then `…`),
/// control characters (line breaks included) blanked.
pub fn log_text(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// A filter over the log, newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogQuery {
    /// One event by its id.
    pub log_id: Option<crate::LogId>,
    pub event_type: Option<String>,
    pub user_id: Option<UserId>,
    pub client_id: Option<ClientId>,
    pub connection: Option<ConnectionName>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    pub page: u32,
    pub per_page: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_text_is_short_and_on_one_line() {
        assert_eq!(log_text("fine", 10), "fine");
        assert_eq!(log_text("two\nlines\u{1b}[31m", 100), "two lines [31m");
        let long = "é".repeat(5000);
        let cut = log_text(&long, LOG_REASON_MAX);
        assert_eq!(cut.chars().count(), LOG_REASON_MAX + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(log_text(&"a".repeat(10), 10), "a".repeat(10));
    }
}
