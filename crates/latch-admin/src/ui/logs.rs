//! Logs: newest first, filtered by type, user, connection, application and time; one event in
//! full (a Universal Logout call shows its caller, subject, result and counts).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use latch_core::model::LogQuery;
use latch_core::{ClientId, ConnectionName, LogId, UserId};
use serde::Deserialize;
use serde_json::Value;

use super::{Admin, Chrome, error_page, html, when};
use crate::Deps;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/logs", web::get().to(list))
        .route("/logs/{id}", web::get().to(detail));
}

const PER_PAGE: u32 = 50;

#[derive(Deserialize, Default)]
struct Filters {
    #[serde(rename = "type")]
    kind: Option<String>,
    user_id: Option<String>,
    client_id: Option<String>,
    connection: Option<String>,
    from: Option<String>,
    to: Option<String>,
    page: Option<u32>,
}

struct Row {
    id: String,
    date: String,
    kind: String,
    description: String,
    user: String,
    connection: String,
    client: String,
}

#[derive(Template)]
#[template(path = "admin/logs.html")]
struct ListPage {
    c: Chrome,
    f_type: String,
    f_user: String,
    f_client: String,
    f_connection: String,
    f_from: String,
    f_to: String,
    rows: Vec<Row>,
    prev: Option<String>,
    next: Option<String>,
}

fn some(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn instant(v: &Option<String>) -> Result<Option<time::OffsetDateTime>, String> {
    match some(v) {
        None => Ok(None),
        Some(s) => time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
            .map(Some)
            .map_err(|_| format!("{s} is not an RFC 3339 time, e.g. 2026-12-01T00:00:00Z")),
    }
}

async fn list(a: Admin, deps: web::Data<Deps>, f: web::Query<Filters>) -> HttpResponse {
    let mut c = a.chrome("logs");
    let (from, to) = match (instant(&f.from), instant(&f.to)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => {
            c.error = Some(e);
            (None, None)
        }
    };
    let page = f.page.unwrap_or(0);
    let q = LogQuery {
        log_id: None,
        event_type: some(&f.kind),
        user_id: some(&f.user_id).map(UserId::new),
        client_id: some(&f.client_id).map(ClientId::new),
        connection: some(&f.connection).map(ConnectionName::new),
        from,
        to,
        page,
        per_page: PER_PAGE,
    };
    let events = or_page!(deps.store.list_logs(&q).await);
    let keep = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut base = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("type", &f.kind),
        ("user_id", &f.user_id),
        ("client_id", &f.client_id),
        ("connection", &f.connection),
        ("from", &f.from),
        ("to", &f.to),
    ] {
        if let Some(v) = some(v) {
            base.append_pair(k, &v);
        }
    }
    let base = base.finish();
    let full = events.len() == PER_PAGE as usize;
    html(
        StatusCode::OK,
        &ListPage {
            f_type: keep(&f.kind),
            f_user: keep(&f.user_id),
            f_client: keep(&f.client_id),
            f_connection: keep(&f.connection),
            f_from: keep(&f.from),
            f_to: keep(&f.to),
            rows: events
                .iter()
                .map(|e| Row {
                    id: e.log_id.as_str().to_owned(),
                    date: when(e.date),
                    kind: e.event_type.clone(),
                    description: e.description.clone(),
                    user: e
                        .user_id
                        .as_ref()
                        .map(|u| u.as_str().to_owned())
                        .unwrap_or_default(),
                    connection: e
                        .connection
                        .as_ref()
                        .map(|c| c.as_str().to_owned())
                        .unwrap_or_default(),
                    client: e
                        .client_id
                        .as_ref()
                        .map(|c| c.as_str().to_owned())
                        .unwrap_or_default(),
                })
                .collect(),
            prev: (page > 0).then(|| format!("/admin/logs?{base}&page={}", page - 1)),
            next: full.then(|| format!("/admin/logs?{base}&page={}", page + 1)),
            c,
        },
    )
}

#[derive(Template)]
#[template(path = "admin/log.html")]
struct DetailPage {
    c: Chrome,
    id: String,
    date: String,
    kind: String,
    description: String,
    user: String,
    connection: String,
    client: String,
    ip: String,
    /// The facts an admin looks for first, pulled out of `details`.
    summary: Vec<(String, String)>,
    /// The back-channel logout deliveries the event started, as they stand now.
    deliveries: Vec<DeliveryRow>,
    details: String,
}

struct DeliveryRow {
    client: String,
    target: String,
    state: String,
    attempts: i32,
    last_error: String,
}

/// Keys of `details` shown as their own rows (a Universal Logout call's caller, subject,
/// result and counts; a logout's counts; a failure's reason).
const SUMMARY: [(&str, &str); 12] = [
    ("reason", "Reason"),
    ("caller", "Caller"),
    ("subject_format", "Subject format"),
    ("subject", "Subject"),
    ("result", "Result"),
    ("sessions_ended", "Sessions ended"),
    ("refresh_tokens_revoked", "Refresh tokens revoked"),
    ("deliveries_enqueued", "Back-channel deliveries"),
    ("TotalOidcLogoutRequests", "OIDC logout requests"),
    ("TotalSamlLogoutRequests", "SAML logout requests"),
    ("actor", "Acting admin"),
    ("status", "Status"),
];

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn detail(a: Admin, deps: web::Data<Deps>, id: web::Path<String>) -> HttpResponse {
    let found = or_page!(
        deps.store
            .list_logs(&LogQuery {
                log_id: Some(LogId::new(id.into_inner())),
                per_page: 1,
                ..LogQuery::default()
            })
            .await
    );
    let Some(e) = found.into_iter().next() else {
        return error_page(latch_http::ApiError::not_found("log event"));
    };
    let clients = deps.store.list_clients().await.unwrap_or_default();
    let mut deliveries = Vec::new();
    for id in e.details["delivery_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .take(100)
    {
        if let Ok(d) = deps
            .store
            .get_delivery(&latch_core::DeliveryId::new(id))
            .await
        {
            deliveries.push(DeliveryRow {
                client: clients
                    .iter()
                    .find(|c| c.client_id == d.client_id)
                    .map_or_else(|| d.client_id.as_str().to_owned(), |c| c.name.clone()),
                target: d.target.to_string(),
                state: d.state.as_str().to_owned(),
                attempts: d.attempts,
                last_error: d.last_error.unwrap_or_default(),
            });
        }
    }
    let summary = SUMMARY
        .iter()
        .filter_map(|(k, label)| e.details.get(*k).map(|v| ((*label).to_owned(), show(v))))
        .collect();
    html(
        StatusCode::OK,
        &DetailPage {
            c: a.chrome("logs"),
            id: e.log_id.as_str().to_owned(),
            date: when(e.date),
            kind: e.event_type.clone(),
            description: e.description.clone(),
            user: e
                .user_id
                .as_ref()
                .map(|u| u.as_str().to_owned())
                .unwrap_or_default(),
            connection: e
                .connection
                .as_ref()
                .map_or_else(|| "—".into(), |c| c.as_str().to_owned()),
            client: e
                .client_id
                .as_ref()
                .map_or_else(|| "—".into(), |c| c.as_str().to_owned()),
            ip: e.ip.clone().unwrap_or_else(|| "—".into()),
            summary,
            deliveries,
            details: serde_json::to_string_pretty(&e.details).unwrap_or_default(),
        },
    )
}
