//! Log streams (`/admin/log-streams`): the streams with their status, what waits in each queue
//! and the last error; "Pause", "Resume" and "Delete" per stream; a form to create one. Every
//! change goes through the API's handlers (`api::log_streams::ops`).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use latch_core::model::{CATEGORIES, ContentFormat, DEFAULT_CONTENT_TYPE, LogStreamStatus, OTHER};
use latch_http::ApiError;
use serde_json::json;

use super::{Admin, Chrome, Form, error_page, html, redirect};
use crate::Deps;
use crate::api::log_streams::ops;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/log-streams", web::get().to(list))
        .route("/log-streams", web::post().to(create))
        .route("/log-streams/{id}/status", web::post().to(set_status))
        .route("/log-streams/{id}/delete", web::post().to(delete));
}

struct Row {
    id: String,
    name: String,
    endpoint: String,
    format: &'static str,
    filters: String,
    status: &'static str,
    pending: String,
    /// The suspension's reason, or the last error while deliveries fail.
    problem: Option<String>,
}

/// One filter checkbox of the create form.
struct CategoryBox {
    value: &'static str,
    checked: bool,
}

/// The create form's values (as posted after an error).
#[derive(Default)]
struct Draft {
    name: String,
    endpoint: String,
    content_type: String,
    jsonarray: bool,
    categories: Vec<String>,
}

#[derive(Template)]
#[template(path = "admin/log_streams.html")]
struct Page {
    c: Chrome,
    rows: Vec<Row>,
    draft: Draft,
    categories: Vec<CategoryBox>,
    /// The field the API refused, and why.
    field: String,
    field_error: Option<String>,
}

#[derive(serde::Deserialize)]
struct Done {
    done: Option<String>,
}

async fn page(
    a: &Admin,
    deps: &Deps,
    draft: Draft,
    refused: Option<ApiError>,
    notice: Option<&str>,
) -> HttpResponse {
    let streams = or_page!(deps.store.list_log_streams().await);
    let mut rows = Vec::with_capacity(streams.len());
    for s in &streams {
        let pending = match deps.store.count_log_stream_events(&s.id).await {
            Ok(n) => n.to_string(),
            Err(_) => "?".into(),
        };
        rows.push(Row {
            id: s.id.clone(),
            name: s.name.clone(),
            endpoint: s.sink.endpoint.clone(),
            format: s.sink.content_format.as_str(),
            filters: if s.filters.is_empty() {
                "every event".into()
            } else {
                s.filters.join(", ")
            },
            status: s.status.as_str(),
            pending,
            problem: s.suspended_reason.clone().or_else(|| s.last_error.clone()),
        });
    }
    let mut c = a.chrome("log-streams");
    c.notice = notice.map(str::to_owned);
    let status = if refused.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let (field, field_error) = match refused {
        Some(e) => (e.field.clone().unwrap_or_default(), Some(e.message.clone())),
        None => (String::new(), None),
    };
    if field_error.is_some() && field.is_empty() {
        c.error = field_error.clone();
    }
    let categories = CATEGORIES
        .iter()
        .chain(std::iter::once(&OTHER))
        .map(|v| CategoryBox {
            value: v,
            checked: draft.categories.iter().any(|c| c == v),
        })
        .collect();
    html(
        status,
        &Page {
            c,
            rows,
            draft,
            categories,
            field,
            field_error,
        },
    )
}

async fn list(a: Admin, deps: web::Data<Deps>, q: web::Query<Done>) -> HttpResponse {
    let notice = match q.done.as_deref() {
        Some("created") => Some("Log stream created."),
        Some("paused") => Some("Log stream paused: its events are held until it resumes."),
        Some("active") => Some("Log stream resumed: held events are being sent."),
        Some("deleted") => Some("Log stream deleted."),
        _ => None,
    };
    let draft = Draft {
        content_type: DEFAULT_CONTENT_TYPE.into(),
        ..Draft::default()
    };
    page(&a, &deps, draft, None, notice).await
}

async fn create(
    a: Admin,
    deps: web::Data<Deps>,
    req: HttpRequest,
    form: web::Form<Form>,
) -> HttpResponse {
    if let Some(r) = a.csrf_refusal(&form) {
        return r;
    }
    let draft = Draft {
        name: form.text("name").unwrap_or_default(),
        endpoint: form.text("endpoint").unwrap_or_default(),
        content_type: form
            .text("content_type")
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into()),
        jsonarray: form.get("format") == Some(ContentFormat::JsonArray.as_str()),
        categories: form.all("filters"),
    };
    let mut sink = json!({
        "httpEndpoint": draft.endpoint,
        "httpContentType": draft.content_type,
        "httpContentFormat": if draft.jsonarray { "JSONARRAY" } else { "JSONLINES" },
    });
    if let Some(auth) = form.get("authorization").filter(|v| !v.is_empty()) {
        sink["httpAuthorization"] = json!(auth);
    }
    let body = json!({
        "name": draft.name,
        "type": "http",
        "sink": sink,
        "filters": draft.categories.iter().map(|c| json!({"type": "category", "name": c})).collect::<Vec<_>>(),
    });
    match ops::create(&deps, a.auth(), &req, body).await {
        Ok(_) => redirect("/admin/log-streams?done=created"),
        Err(e) if e.status.is_client_error() => page(&a, &deps, draft, Some(e), None).await,
        Err(e) => error_page(e),
    }
}

async fn set_status(
    a: Admin,
    deps: web::Data<Deps>,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<Form>,
) -> HttpResponse {
    if let Some(r) = a.csrf_refusal(&form) {
        return r;
    }
    let status = match form.get("status") {
        Some("paused") => LogStreamStatus::Paused,
        _ => LogStreamStatus::Active,
    };
    match ops::update(
        &deps,
        a.auth(),
        &req,
        &id,
        json!({"status": status.as_str()}),
    )
    .await
    {
        Ok(_) => redirect(&format!("/admin/log-streams?done={}", status.as_str())),
        Err(e) => error_page(e),
    }
}

async fn delete(
    a: Admin,
    deps: web::Data<Deps>,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<Form>,
) -> HttpResponse {
    if let Some(r) = a.csrf_refusal(&form) {
        return r;
    }
    match ops::delete(&deps, a.auth(), &req, &id).await {
        Ok(()) => redirect("/admin/log-streams?done=deleted"),
        Err(e) => error_page(e),
    }
}
