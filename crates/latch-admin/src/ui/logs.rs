//! Logs: newest first, filtered by type, user, connection, application and day; users and
//! applications by name beside their ids; the attempts of one back-channel delivery folded into
//! one row. One event in full (a Universal Logout call shows its caller, subject, result and
//! counts), with its back-channel deliveries and "retry now" for one that failed.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use latch_core::model::{Delivery, DeliveryState, LogEvent, LogQuery};
use latch_core::{ClientId, ConnectionName, DeliveryId, LogId, UserId};
use serde::Deserialize;
use serde_json::Value;

use super::{Admin, Chrome, Form, error_page, html, redirect, when};
use crate::Deps;
use crate::api::deliveries;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/logs", web::get().to(list))
        .route("/logs/{id}", web::get().to(detail))
        .route("/deliveries", web::get().to(delivery_list))
        .route("/deliveries/{id}/retry", web::post().to(retry));
}

#[derive(Deserialize, Default)]
struct DeliveryFilters {
    user_id: Option<String>,
    client_id: Option<String>,
    state: Option<String>,
    done: Option<String>,
}

struct DeliveryLine {
    id: String,
    created: String,
    kind: String,
    client: String,
    client_name: String,
    user: String,
    initiator: String,
    target: String,
    state: String,
    error: String,
    attempts: i32,
    retry: bool,
}

#[derive(Template)]
#[template(path = "admin/deliveries.html")]
struct DeliveriesPage {
    c: Chrome,
    clients: Vec<super::Choice>,
    states: Vec<super::Choice>,
    f_user: String,
    rows: Vec<DeliveryLine>,
}

/// Logout deliveries of every kind, filtered by user, app and state, with "retry now" (the
/// management API's `GET /api/v2/logout-deliveries`).
async fn delivery_list(
    a: Admin,
    deps: web::Data<Deps>,
    f: web::Query<DeliveryFilters>,
) -> HttpResponse {
    let mut c = a.chrome("deliveries");
    match f.done.as_deref() {
        Some("retried") => {
            c.notice = Some("Delivery queued again: it is being sent now.".into());
        }
        Some("busy") => {
            c.error =
                Some("That delivery succeeded already, or is being attempted right now.".into());
        }
        _ => {}
    }
    let state = some(&f.state).and_then(|s| latch_core::model::DeliveryState::parse(&s));
    let q = latch_core::model::DeliveryQuery {
        state,
        user_id: some(&f.user_id).map(UserId::new),
        client_id: some(&f.client_id).map(ClientId::new),
    };
    let found = or_page!(deps.store.list_deliveries(&q, 200).await);
    let mut clients = deps.store.list_clients().await.unwrap_or_default();
    clients.sort_by(|x, y| x.name.cmp(&y.name));
    let client_filter = some(&f.client_id).unwrap_or_default();
    let rows = found
        .iter()
        .map(|d| DeliveryLine {
            id: d.id.as_str().to_owned(),
            created: when(d.created_at),
            kind: d.kind.as_str().to_owned(),
            client: d.client_id.as_str().to_owned(),
            client_name: clients
                .iter()
                .find(|c| c.client_id == d.client_id)
                .map(|c| c.name.clone())
                .unwrap_or_default(),
            user: d
                .notice
                .sub
                .as_ref()
                .map(|u| u.as_str().to_owned())
                .unwrap_or_default(),
            initiator: d.notice.initiator.as_str().to_owned(),
            target: d.target.to_string(),
            state: d.state.as_str().to_owned(),
            error: d.last_error.clone().unwrap_or_default(),
            attempts: d.attempts,
            retry: d.state != latch_core::model::DeliveryState::Delivered,
        })
        .collect();
    html(
        StatusCode::OK,
        &DeliveriesPage {
            c,
            clients: clients
                .iter()
                .map(|x| super::Choice {
                    value: x.client_id.as_str().to_owned(),
                    label: x.name.clone(),
                    selected: x.client_id.as_str() == client_filter,
                })
                .collect(),
            states: ["pending", "delivered", "failed"]
                .iter()
                .map(|s| super::Choice {
                    value: (*s).to_owned(),
                    label: (*s).to_owned(),
                    selected: state.is_some_and(|x| x.as_str() == *s),
                })
                .collect(),
            f_user: some(&f.user_id).unwrap_or_default(),
            rows,
        },
    )
}

const PER_PAGE: u32 = 50;

/// The event types Latch records (`docs/events.md`), for the type filter.
const TYPES: [(&str, &str); 26] = [
    ("s", "Sign-in succeeded"),
    ("f", "Sign-in failed"),
    ("limit_wc", "Sign-in refused: account waiting out a delay"),
    ("limit_mu", "Sign-in refused: address waiting out a delay"),
    ("slo", "Logout"),
    ("flo", "Upstream IdP's logout request refused"),
    ("saml_logout_response", "SAML app's logout answer"),
    ("sapi", "Management API change"),
    ("sscim", "SCIM change"),
    ("seacft", "Code exchanged for tokens"),
    ("feacft", "Used code came back (tokens revoked)"),
    ("sertft", "Refresh token exchanged"),
    ("fertft", "Refresh token refused"),
    ("ferrt", "Refresh token reuse (family revoked)"),
    ("srrt", "Refresh token revoked"),
    ("seccft", "Client credentials exchanged"),
    ("fcc", "Client credentials refused"),
    (
        "oidc_backchannel_logout_succeeded",
        "Back-channel logout delivered",
    ),
    (
        "oidc_backchannel_logout_failed",
        "Back-channel logout failed",
    ),
    (
        "gtr_delivery_succeeded",
        "Global Token Revocation delivered",
    ),
    ("gtr_delivery_failed", "Global Token Revocation failed"),
    ("universal_logout_succeeded", "Universal Logout accepted"),
    ("universal_logout_failed", "Universal Logout refused"),
    (
        "federated_logout_succeeded",
        "Upstream IdP ended its session",
    ),
    (
        "federated_logout_failed",
        "Upstream logout refused or failed",
    ),
    ("log_stream_failed", "Log stream delivery failed"),
];

/// Events that are attempts of one logout delivery (`details.delivery_id`): back-channel
/// logout tokens and Global Token Revocation requests.
fn delivery_of(e: &LogEvent) -> Option<&str> {
    (e.event_type.starts_with("oidc_backchannel_logout_")
        || e.event_type.starts_with("gtr_delivery_"))
    .then(|| e.details["delivery_id"].as_str())
    .flatten()
}

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

struct Attempt {
    date: String,
    state: String,
    error: String,
}

struct Row {
    id: String,
    date: String,
    kind: String,
    description: String,
    user: String,
    user_name: String,
    connection: String,
    client: String,
    client_name: String,
    /// The attempts of one back-channel delivery, newest first (empty for other events).
    attempts: Vec<Attempt>,
}

#[derive(Template)]
#[template(path = "admin/logs.html")]
struct ListPage {
    c: Chrome,
    types: Vec<super::Choice>,
    clients: Vec<super::Choice>,
    connections: Vec<super::Choice>,
    f_user: String,
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

/// A day (`2026-12-01`, from `<input type=date>`: its first instant, or with `end` its last) or an
/// RFC 3339 time, in UTC.
fn instant(v: &Option<String>, end: bool) -> Result<Option<time::OffsetDateTime>, String> {
    let Some(s) = some(v) else {
        return Ok(None);
    };
    let day = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(&s, &day) {
        let t = if end {
            d.with_hms_milli(23, 59, 59, 999)
        } else {
            d.with_hms(0, 0, 0)
        };
        return t
            .map(|t| Some(t.assume_utc()))
            .map_err(|_| format!("{s} is not a day"));
    }
    time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
        .map(Some)
        .map_err(|_| format!("{s} is not a day, e.g. 2026-12-01"))
}

/// User ids → names (`Ada Lovelace <ada@example.com>`), for the users these events name.
async fn user_names(deps: &Deps, events: &[LogEvent]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for id in events.iter().filter_map(|e| e.user_id.as_ref()) {
        if out.contains_key(id.as_str()) {
            continue;
        }
        let name = match deps.store.find_user(id).await {
            Ok(Some(u)) => match (u.name, u.email) {
                (Some(n), Some(e)) if n != e => format!("{n} <{e}>"),
                (Some(n), _) => n,
                (None, Some(e)) => e,
                (None, None) => String::new(),
            },
            // Deleted since, or unreadable: the id alone.
            _ => String::new(),
        };
        out.insert(id.as_str().to_owned(), name);
    }
    out
}

async fn list(a: Admin, deps: web::Data<Deps>, f: web::Query<Filters>) -> HttpResponse {
    let mut c = a.chrome("logs");
    let (from, to) = match (instant(&f.from, false), instant(&f.to, true)) {
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
    let mut clients = deps.store.list_clients().await.unwrap_or_default();
    clients.sort_by(|x, y| x.name.cmp(&y.name));
    let mut connections = deps.store.list_connections().await.unwrap_or_default();
    connections.sort_by(|x, y| x.name.cmp(&y.name));
    let users = user_names(&deps, &events).await;
    let client_name = |id: &str| {
        clients
            .iter()
            .find(|c| c.client_id.as_str() == id)
            .map(|c| c.name.clone())
            .unwrap_or_default()
    };
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
    // One row per event, except the attempts of one delivery: one row, the newest, holding all.
    let mut rows: Vec<Row> = Vec::new();
    let mut row_of_delivery: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        let attempt = || Attempt {
            date: when(e.date),
            state: e.details["state"].as_str().unwrap_or_default().to_owned(),
            error: e.details["error"].as_str().unwrap_or_default().to_owned(),
        };
        if let Some(d) = delivery_of(e) {
            if let Some(&i) = row_of_delivery.get(d) {
                rows[i].attempts.push(attempt());
                continue;
            }
            row_of_delivery.insert(d.to_owned(), rows.len());
        }
        let user = e
            .user_id
            .as_ref()
            .map(|u| u.as_str().to_owned())
            .unwrap_or_default();
        let client = e
            .client_id
            .as_ref()
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default();
        rows.push(Row {
            id: e.log_id.as_str().to_owned(),
            date: when(e.date),
            kind: e.event_type.clone(),
            description: e.description.clone(),
            user_name: users.get(&user).cloned().unwrap_or_default(),
            user,
            connection: e
                .connection
                .as_ref()
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default(),
            client_name: client_name(&client),
            client,
            attempts: delivery_of(e).map(|_| vec![attempt()]).unwrap_or_default(),
        });
    }
    let chosen = some(&f.kind).unwrap_or_default();
    let mut types: Vec<super::Choice> = TYPES
        .iter()
        .map(|(v, l)| super::Choice {
            value: (*v).into(),
            label: format!("{l} ({v})"),
            selected: chosen == *v,
        })
        .collect();
    if !chosen.is_empty() && !TYPES.iter().any(|(v, _)| *v == chosen) {
        types.push(super::Choice {
            value: chosen.clone(),
            label: chosen.clone(),
            selected: true,
        });
    }
    let client_filter = some(&f.client_id).unwrap_or_default();
    let connection_filter = some(&f.connection).unwrap_or_default();
    html(
        StatusCode::OK,
        &ListPage {
            types,
            clients: clients
                .iter()
                .map(|x| super::Choice {
                    value: x.client_id.as_str().to_owned(),
                    label: x.name.clone(),
                    selected: x.client_id.as_str() == client_filter,
                })
                .collect(),
            connections: connections
                .iter()
                .map(|x| super::Choice {
                    value: x.name.as_str().to_owned(),
                    label: x.name.as_str().to_owned(),
                    selected: x.name.as_str() == connection_filter,
                })
                .collect(),
            f_user: some(&f.user_id).unwrap_or_default(),
            f_from: some(&f.from).unwrap_or_default(),
            f_to: some(&f.to).unwrap_or_default(),
            rows,
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
    user_name: String,
    connection: String,
    client: String,
    client_name: String,
    ip: String,
    /// The facts an admin looks for first, pulled out of `details`.
    summary: Vec<(String, String)>,
    /// The back-channel logout deliveries the event started (or the one it is an attempt of),
    /// as they stand now.
    deliveries: Vec<DeliveryRow>,
    /// A logout's front-channel frames and SAML LogoutRequests, per app, with what is known of
    /// their outcome.
    told: Vec<ToldRow>,
    details: String,
}

struct ToldRow {
    client: String,
    channel: &'static str,
    /// What was sent (a SAML LogoutRequest's ID).
    sent: String,
    /// `acknowledged`, `refused`, `no answer yet`, `not known` (a frame's load is not reported
    /// back), or `not reachable`.
    outcome: String,
}

struct DeliveryRow {
    id: String,
    client: String,
    target: String,
    state: String,
    attempts: i32,
    last_error: String,
    /// Failed, or waiting out its backoff with no worker on it: "Retry now" is offered.
    retry: bool,
}

/// Keys of `details` shown as their own rows (a Universal Logout call's caller, subject,
/// result and counts; a logout's counts; a failure's reason).
const SUMMARY: [(&str, &str); 13] = [
    ("initiator", "Initiator"),
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

/// Whether an admin may ask for another attempt now (what the store's `retry_delivery` allows).
fn retryable(d: &Delivery, now: time::OffsetDateTime) -> bool {
    match d.state {
        DeliveryState::Failed => true,
        DeliveryState::Pending => {
            d.next_attempt_at > now && d.locked_until.is_none_or(|l| l <= now)
        }
        DeliveryState::Delivered => false,
    }
}

#[derive(Deserialize)]
struct Done {
    done: Option<String>,
}

async fn detail(
    a: Admin,
    deps: web::Data<Deps>,
    id: web::Path<String>,
    q: web::Query<Done>,
) -> HttpResponse {
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
    let name_of = |id: &ClientId| {
        clients
            .iter()
            .find(|c| &c.client_id == id)
            .map(|c| c.name.clone())
    };
    let now = deps.clock.now();
    let ids: Vec<&str> = match delivery_of(&e) {
        Some(one) => vec![one],
        None => e.details["delivery_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .take(100)
            .collect(),
    };
    let mut deliveries = Vec::new();
    for id in ids {
        if let Ok(d) = deps.store.get_delivery(&DeliveryId::new(id)).await {
            deliveries.push(DeliveryRow {
                id: d.id.as_str().to_owned(),
                client: name_of(&d.client_id).unwrap_or_else(|| d.client_id.as_str().to_owned()),
                target: d.target.to_string(),
                state: d.state.as_str().to_owned(),
                attempts: d.attempts,
                retry: retryable(&d, now),
                last_error: d.last_error.unwrap_or_default(),
            });
        }
    }
    let mut told = Vec::new();
    let list = |k: &str| -> Vec<Value> {
        e.details[k]
            .as_array()
            .map(|a| a.iter().take(100).cloned().collect())
            .unwrap_or_default()
    };
    for f in list("frontchannel") {
        if let Some(id) = f.as_str() {
            let id = ClientId::new(id);
            told.push(ToldRow {
                client: name_of(&id).unwrap_or_else(|| id.as_str().to_owned()),
                channel: "front-channel (iframe)",
                sent: String::new(),
                outcome: "not known: a frame's load is not reported back".into(),
            });
        }
    }
    for r in list("saml") {
        let (Some(client), Some(request_id)) = (r["client_id"].as_str(), r["request_id"].as_str())
        else {
            continue;
        };
        let client = ClientId::new(client);
        // The app's LogoutResponse, if it came: logged as `saml_logout_response`.
        let answers = deps
            .store
            .list_logs(&LogQuery {
                event_type: Some("saml_logout_response".into()),
                client_id: Some(client.clone()),
                from: Some(e.date),
                per_page: 100,
                ..LogQuery::default()
            })
            .await
            .unwrap_or_default();
        let outcome = match answers
            .iter()
            .find(|a| a.details["in_response_to"].as_str() == Some(request_id))
        {
            Some(a) if a.details["acknowledged"] == Value::Bool(true) => "acknowledged".into(),
            Some(a) => format!("refused ({})", show(&a.details["status"])),
            None => "no answer yet".into(),
        };
        told.push(ToldRow {
            client: name_of(&client).unwrap_or_else(|| client.as_str().to_owned()),
            channel: "SAML LogoutRequest",
            sent: request_id.to_owned(),
            outcome,
        });
    }
    for u in list("saml_unreachable") {
        if let Some(id) = u.as_str() {
            let id = ClientId::new(id);
            told.push(ToldRow {
                client: name_of(&id).unwrap_or_else(|| id.as_str().to_owned()),
                channel: "SAML",
                sent: String::new(),
                outcome: "not reachable (no Single Logout URL, or no browser to carry it)".into(),
            });
        }
    }
    // The upstream IdP: told in a federated logout (its answer, if it came, is the
    // `federated_logout_*` event naming the same `upstream_logout_id`), or, for an IdP's own
    // LogoutRequest, Latch's answer to it.
    let up = &e.details["upstream"];
    if e.event_type == "slo" && up.is_object() {
        let connection = e
            .connection
            .as_ref()
            .map_or_else(|| "upstream IdP".to_owned(), |c| c.as_str().to_owned());
        if up["protocol"] == "saml" {
            told.push(ToldRow {
                client: connection,
                channel: "SAML LogoutResponse to the IdP",
                sent: show(&up["logout_request_id"]),
                outcome: match up["answered"].as_str() {
                    Some(s) => format!("answered {s}"),
                    None => "no answer could be made".into(),
                },
            });
        } else if up["told"] == Value::Bool(true) {
            let id = up["upstream_logout_id"].as_str().unwrap_or_default();
            let answers = deps
                .store
                .list_logs(&LogQuery {
                    user_id: e.user_id.clone(),
                    connection: e.connection.clone(),
                    from: Some(e.date),
                    per_page: 100,
                    ..LogQuery::default()
                })
                .await
                .unwrap_or_default();
            let outcome = match answers.iter().find(|a| {
                a.event_type.starts_with("federated_logout_")
                    && !id.is_empty()
                    && a.details["upstream_logout_id"].as_str() == Some(id)
            }) {
                Some(a) if a.event_type == "federated_logout_succeeded" => {
                    "ended its session".to_owned()
                }
                Some(a) => format!("failed: {}", a.description),
                None => "no answer yet (the browser has not come back)".into(),
            };
            told.push(ToldRow {
                client: connection,
                channel: if up["via"] == "end_session_endpoint" {
                    "federated logout (end_session_endpoint)"
                } else {
                    "federated logout (SAML LogoutRequest)"
                },
                sent: String::new(),
                outcome,
            });
        } else {
            told.push(ToldRow {
                client: connection,
                channel: "federated logout",
                sent: String::new(),
                outcome: format!("not sent: {}", show(&up["reason"])),
            });
        }
    }
    let summary = SUMMARY
        .iter()
        .filter_map(|(k, label)| e.details.get(*k).map(|v| ((*label).to_owned(), show(v))))
        .collect();
    let users = user_names(&deps, std::slice::from_ref(&e)).await;
    let mut c = a.chrome("logs");
    match q.done.as_deref() {
        Some("retried") => {
            c.notice = Some("Delivery queued again: it is being sent now.".into());
        }
        Some("busy") => {
            c.error =
                Some("That delivery succeeded already, or is being attempted right now.".into());
        }
        _ => {}
    }
    let user = e
        .user_id
        .as_ref()
        .map(|u| u.as_str().to_owned())
        .unwrap_or_default();
    html(
        StatusCode::OK,
        &DetailPage {
            c,
            id: e.log_id.as_str().to_owned(),
            date: when(e.date),
            kind: e.event_type.clone(),
            description: e.description.clone(),
            user_name: users.get(&user).cloned().unwrap_or_default(),
            user,
            connection: e
                .connection
                .as_ref()
                .map_or_else(|| "—".into(), |c| c.as_str().to_owned()),
            client_name: e.client_id.as_ref().and_then(name_of).unwrap_or_default(),
            client: e
                .client_id
                .as_ref()
                .map_or_else(|| "—".into(), |c| c.as_str().to_owned()),
            ip: e.ip.clone().unwrap_or_else(|| "—".into()),
            summary,
            deliveries,
            told,
            details: serde_json::to_string_pretty(&e.details).unwrap_or_default(),
        },
    )
}

/// `POST /admin/deliveries/{id}/retry` (`event`: the event page to come back to).
async fn retry(
    a: Admin,
    deps: web::Data<Deps>,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<Form>,
) -> HttpResponse {
    if let Some(r) = a.csrf_refusal(&form) {
        return r;
    }
    let back = |done: &str| {
        if form.get("from") == Some("deliveries") {
            return redirect(&format!("/admin/deliveries?done={done}"));
        }
        let event: String =
            url::form_urlencoded::byte_serialize(form.get("event").unwrap_or_default().as_bytes())
                .collect();
        redirect(&format!("/admin/logs/{event}?done={done}"))
    };
    match deliveries::ops::retry(&deps, &a.auth(), &req, &id).await {
        Ok(()) => back("retried"),
        Err(e) if e.status == StatusCode::CONFLICT => back("busy"),
        Err(e) => error_page(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The type filter offers every type `docs/events.md` catalogues.
    #[test]
    fn type_filter_knows_every_documented_type() {
        let doc = include_str!("../../../../docs/events.md");
        let mut documented = Vec::new();
        for line in doc.lines().filter(|l| l.starts_with("| `")) {
            let first = line.split('|').nth(1).unwrap_or_default();
            let before_note = first.split('(').next().unwrap_or_default();
            documented.extend(before_note.split('`').skip(1).step_by(2).map(str::to_owned));
        }
        assert!(documented.len() >= 10, "{documented:?}");
        for t in &documented {
            assert!(
                TYPES.iter().any(|(v, _)| v == t),
                "{t} is in docs/events.md but not in the type filter"
            );
        }
    }

    #[test]
    fn days_and_times() {
        let from = instant(&Some("2026-12-01".into()), false).unwrap().unwrap();
        let to = instant(&Some("2026-12-01".into()), true).unwrap().unwrap();
        assert_eq!(
            to - from,
            time::Duration::days(1) - time::Duration::milliseconds(1)
        );
        assert_eq!(from.offset(), time::UtcOffset::UTC);
        assert!(
            instant(&Some("2026-12-01T10:00:00Z".into()), false)
                .unwrap()
                .is_some()
        );
        assert!(instant(&Some("yesterday".into()), false).is_err());
        assert_eq!(instant(&Some("  ".into()), false), Ok(None));
    }
}
