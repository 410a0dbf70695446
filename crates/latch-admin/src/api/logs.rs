//! `GET /api/v2/logs`: log events newest first, filtered by `type`, `user_id`, `client_id`,
//! `connection`, `from`, `to` (RFC 3339), paged with `page` / `per_page` (Auth0's names).

use actix_web::http::Method;
use actix_web::{HttpResponse, web};
use latch_core::model::{LogEvent, LogQuery};
use latch_core::*;
use latch_http::{ApiError, ManagementAuth, StrictQuery};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};

use super::{Op, op};
use crate::Deps;

pub(crate) fn routes() -> Vec<Op> {
    vec![op(Method::GET, "/logs", get_logs)]
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct Query {
    /// The event code (`s`, `slo`, `sapi`, … see docs/events.md).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    event_type: Option<String>,
    user_id: Option<String>,
    client_id: Option<String>,
    /// The connection's name.
    connection: Option<String>,
    /// Events at or after this instant (RFC 3339).
    #[param(format = DateTime)]
    from: Option<String>,
    /// Events at or before this instant (RFC 3339).
    #[param(format = DateTime)]
    to: Option<String>,
    /// Page number, from 0.
    page: Option<u32>,
    /// Events per page (1-100, default 50).
    #[param(minimum = 1, maximum = 100)]
    per_page: Option<u32>,
    /// Answer `{"start", "limit", "length", "total", "logs": [...]}` instead of the bare array.
    #[serde(default)]
    include_totals: bool,
}

/// A log event (Auth0's shape).
#[derive(Serialize, ToSchema)]
struct LogView {
    log_id: String,
    #[schema(format = DateTime)]
    date: Option<String>,
    #[serde(rename = "type")]
    event_type: String,
    description: String,
    user_id: Option<String>,
    client_id: Option<String>,
    connection: Option<String>,
    ip: Option<String>,
    /// What the event records beyond the columns (an object, or `null`); it depends on the
    /// type.
    #[schema(value_type = Value)]
    details: Value,
}

super::list!(
    /// Log events: the array, or with `include_totals=true` a page.
    LogList,
    LogPage,
    logs,
    LogView
);

fn instant(field: &str, v: Option<&str>) -> Result<Option<OffsetDateTime>, ApiError> {
    v.map(|s| {
        OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
            ApiError::bad_request(field, format!("{field} must be an RFC 3339 date-time"))
        })
    })
    .transpose()
}

fn view(e: &LogEvent) -> LogView {
    LogView {
        log_id: e.log_id.as_str().to_owned(),
        date: e.date.format(&Rfc3339).ok(),
        event_type: e.event_type.clone(),
        description: e.description.clone(),
        user_id: e.user_id.as_ref().map(|u| u.as_str().to_owned()),
        client_id: e.client_id.as_ref().map(|c| c.as_str().to_owned()),
        connection: e.connection.as_ref().map(|c| c.as_str().to_owned()),
        ip: e.ip.clone(),
        details: e.details.clone(),
    }
}

/// Log events, newest first.
#[utoipa::path(get, path = "/api/v2/logs", tag = "logs",
    params(Query),
    responses((status = 200, description = "The events.", body = LogList)),
    security(("bearer" = ["read:logs"])))]
async fn get_logs(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    q: StrictQuery<Query>,
) -> Result<HttpResponse, ApiError> {
    auth.require("read:logs")?;
    let per_page = q.per_page.unwrap_or(50);
    if !(1..=100).contains(&per_page) {
        return Err(ApiError::bad_request(
            "per_page",
            "per_page must be from 1 to 100",
        ));
    }
    let query = LogQuery {
        log_id: None,
        event_type: q.event_type.clone().filter(|t| !t.is_empty()),
        user_id: q.user_id.clone().map(UserId::new),
        client_id: q.client_id.clone().map(ClientId::new),
        connection: q.connection.clone().map(ConnectionName::new),
        from: instant("from", q.from.as_deref())?,
        to: instant("to", q.to.as_deref())?,
        page: q.page.unwrap_or(0),
        per_page,
    };
    let items = deps
        .store
        .list_logs(&query)
        .await?
        .iter()
        .map(view)
        .collect();
    let totals = if q.include_totals {
        let total = deps.store.count_logs(&query).await?;
        Some((
            super::start(query.page, per_page),
            u64::from(per_page),
            total,
        ))
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(LogList::new(items, totals)))
}
