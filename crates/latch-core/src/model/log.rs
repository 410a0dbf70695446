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
