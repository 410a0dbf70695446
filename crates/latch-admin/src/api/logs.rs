//! `GET /api/v2/logs`: log events newest first, filtered by `type`, `user_id`, `client_id`,
//! `connection`, `from`, `to` (RFC 3339), paged with `page` / `per_page` (Auth0's names).

use actix_web::{HttpResponse, Scope, web};
use latch_core::model::{LogEvent, LogQuery};
use latch_core::*;
use latch_http::{ApiError, ManagementAuth};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Deps;

pub fn scope() -> Scope {
    web::scope("/logs").route("", web::get().to(get_logs))
}

#[derive(Deserialize)]
struct Query {
    #[serde(rename = "type")]
    event_type: Option<String>,
    user_id: Option<String>,
    client_id: Option<String>,
    connection: Option<String>,
    from: Option<String>,
    to: Option<String>,
    page: Option<u32>,
    per_page: Option<u32>,
    #[serde(default)]
    include_totals: bool,
}

fn instant(field: &str, v: Option<&str>) -> Result<Option<OffsetDateTime>, ApiError> {
    v.map(|s| {
        OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
            ApiError::bad_request(field, format!("{field} must be an RFC 3339 date-time"))
        })
    })
    .transpose()
}

fn view(e: &LogEvent) -> Value {
    json!({
        "log_id": e.log_id,
        "date": e.date.format(&Rfc3339).ok(),
        "type": e.event_type,
        "description": e.description,
        "user_id": e.user_id,
        "client_id": e.client_id,
        "connection": e.connection,
        "ip": e.ip,
        "details": e.details,
    })
}

async fn get_logs(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    q: web::Query<Query>,
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
    let items: Vec<Value> = deps
        .store
        .list_logs(&query)
        .await?
        .iter()
        .map(view)
        .collect();
    Ok(HttpResponse::Ok().json(if q.include_totals {
        json!({ "logs": items, "start": query.page * per_page, "limit": per_page, "length": items.len() })
    } else {
        Value::Array(items)
    }))
}
