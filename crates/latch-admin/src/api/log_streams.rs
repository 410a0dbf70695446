//! `/api/v2/log-streams[/{id}]`: log streams, shaped as Auth0's (`type: http` only). Every log
//! event that passes a stream's category filters is POSTed to its `sink.httpEndpoint` in
//! batches, in order, at least once (`latch-logstream`).
//!
//! `sink.httpAuthorization` is a secret: stored encrypted and never answered (Auth0 returns it;
//! Latch leaves it out). A `PATCH` that leaves it out keeps it; `null` removes it; a `PATCH`
//! that moves `httpEndpoint` to another origin (scheme, host or port) must give it (a value or
//! `null`), so a stored secret never goes to a host it was not given for. `sink.httpCustomHeaders`
//! (Auth0's `[{"header", "value"}]`) are secrets too: their values are stored encrypted and never
//! answered (the answer lists the names), and a `PATCH` that moves the endpoint must restate them
//! when the stream has any. Auth0's `isPriority` is accepted and ignored; `JSONOBJECT` is not
//! accepted (only `JSONLINES` and `JSONARRAY` are sent). A `PATCH` changes the
//! status only when it gives one. Each write's `sapi` event names the stream
//! (`details.stream_id`; for a `PATCH`, `details.changed` lists the members given). Scopes are
//! Auth0's: `read:log_streams`, `create:log_streams`, `update:log_streams`,
//! `delete:log_streams`.

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use latch_core::model::{
    CATEGORIES, ContentFormat, DEFAULT_CONTENT_TYPE, LogStream, LogStreamSink, LogStreamStatus,
    OTHER, is_category,
};
use latch_core::{SecretString, validate};
use latch_http::{ApiError, ManagementAuth, StrictJson};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::{Op, op};
use crate::{Deps, audit};

pub(crate) fn routes() -> Vec<Op> {
    vec![
        op(Method::GET, "/log-streams", get_log_streams),
        op(Method::POST, "/log-streams", post_log_stream),
        op(Method::GET, "/log-streams/{id}", get_log_stream),
        op(Method::PATCH, "/log-streams/{id}", patch_log_stream),
        op(Method::DELETE, "/log-streams/{id}", delete_log_stream),
    ]
}

/// Longest `name`.
const MAX_NAME: usize = 128;
/// Longest `httpContentType` and `httpAuthorization`.
const MAX_CONTENT_TYPE: usize = 255;
const MAX_AUTHORIZATION: usize = 4096;
/// Most `filters`.
const MAX_FILTERS: usize = 32;

/// The HTTP sink (Auth0's names). Every member is optional in a `PATCH` (left out: kept).
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SinkInput {
    /// Where events are POSTed: `https://`, or `http://` on a loopback host.
    #[serde(default)]
    http_endpoint: Option<String>,
    /// The requests' `Content-Type` (default `application/json`).
    #[serde(default)]
    http_content_type: Option<String>,
    /// `JSONLINES` (one event per line, the default) or `JSONARRAY` (a JSON array of events).
    #[serde(default)]
    http_content_format: Option<String>,
    /// Sent verbatim as the `Authorization` header (`Bearer …`, `Basic …`). Stored encrypted and
    /// never answered; in a `PATCH`, left out keeps it, `null` removes it, and it is required
    /// (a value or `null`) when `httpEndpoint` moves to another scheme, host or port.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    http_authorization: Option<Option<String>>,
    /// More headers sent with every request (`[{"header": "X-Api-Key", "value": "…"}]`, at most
    /// 20; not `Authorization`, `Content-Type`, `Host`, `Content-Length` or a hop-by-hop
    /// header). The values are stored encrypted and never answered (the answer lists the
    /// names); in a `PATCH`, a list replaces them all, `null` or `[]` removes them, and it is
    /// required when `httpEndpoint` moves to another scheme, host or port while the stream has
    /// any.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<CustomHeader>>)]
    http_custom_headers: Option<Option<Vec<CustomHeader>>>,
}

/// One custom header (Auth0's `{"header", "value"}`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CustomHeader {
    header: String,
    value: String,
}

/// A custom header as answered: its name only.
#[derive(Serialize, ToSchema)]
struct CustomHeaderView {
    header: String,
}

impl SinkInput {
    /// The members given, as the API names them.
    fn members(&self) -> Vec<&'static str> {
        [
            (self.http_endpoint.is_some(), "sink.httpEndpoint"),
            (self.http_content_type.is_some(), "sink.httpContentType"),
            (self.http_content_format.is_some(), "sink.httpContentFormat"),
            (self.http_authorization.is_some(), "sink.httpAuthorization"),
            (self.http_custom_headers.is_some(), "sink.httpCustomHeaders"),
        ]
        .into_iter()
        .filter_map(|(given, name)| given.then_some(name))
        .collect()
    }
}

/// `Some(value)` for a member that is there, `null` included.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// One filter: `{"type": "category", "name": "auth.login.success"}`.
#[derive(Deserialize, Serialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
struct Filter {
    /// `category`.
    #[serde(rename = "type")]
    kind: String,
    /// One of Auth0's categories: `auth.login.success`, `auth.login.fail`,
    /// `auth.logout.success`, `auth.logout.fail`, `auth.token_exchange.success`,
    /// `auth.token_exchange.fail`, `management.success`, `management.fail`, `scim.event`,
    /// `system.notification`, `user.notification`, `other`, …
    name: String,
}

/// A log stream to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"name": "SIEM", "type": "http",
    "sink": {"httpEndpoint": "https://siem.example.com/auth0", "httpContentFormat": "JSONLINES",
        "httpAuthorization": "Bearer 0123456789"},
    "filters": [{"type": "category", "name": "auth.login.fail"}]})))]
struct CreateLogStream {
    name: String,
    /// `http` (the only type Latch sends).
    #[serde(rename = "type")]
    kind: String,
    sink: SinkInput,
    /// Categories of events to send; none (or left out): every event.
    #[serde(default)]
    filters: Option<Vec<Filter>>,
    /// Accepted for Auth0 compatibility and ignored: every Latch stream is sent the same way.
    #[serde(default, rename = "isPriority")]
    _is_priority: Option<bool>,
}

/// What to change; a member left out keeps its value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateLogStream {
    #[serde(default)]
    name: Option<String>,
    /// `active` (a paused or suspended stream resumes: its held events are sent) or `paused`.
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    sink: Option<SinkInput>,
    /// Replaces the filters whole (`[]`: every event).
    #[serde(default)]
    filters: Option<Vec<Filter>>,
    /// Accepted for Auth0 compatibility and ignored.
    #[serde(default, rename = "isPriority")]
    _is_priority: Option<bool>,
}

/// The sink as answered: never the authorization.
#[derive(Serialize, ToSchema)]
struct SinkView {
    #[serde(rename = "httpEndpoint")]
    endpoint: String,
    #[serde(rename = "httpContentType")]
    content_type: String,
    /// `JSONLINES` or `JSONARRAY`.
    #[serde(rename = "httpContentFormat")]
    content_format: String,
    /// The custom headers' names (their values are never answered); left out when none.
    #[serde(rename = "httpCustomHeaders", skip_serializing_if = "Vec::is_empty")]
    custom_headers: Vec<CustomHeaderView>,
}

/// A log stream (Auth0's shape; `httpAuthorization` is never shown).
#[derive(Serialize, ToSchema)]
struct LogStreamView {
    id: String,
    name: String,
    /// `http`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// `active`, `paused` or `suspended` (failed for 24 hours; PATCH `active` resumes it).
    status: String,
    sink: SinkView,
    filters: Vec<Filter>,
    /// Why the stream is suspended (the last delivery error), while it is (Latch's).
    #[serde(skip_serializing_if = "Option::is_none")]
    suspended_reason: Option<String>,
    /// The last delivery error while deliveries fail (Latch's).
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    /// How many events wait to be sent (Latch's); a paused or suspended stream holds them for at
    /// most `LATCH_LOG_RETENTION_DAYS`.
    events_waiting: u64,
}

fn view(s: &LogStream, events_waiting: u64) -> LogStreamView {
    LogStreamView {
        id: s.id.clone(),
        name: s.name.clone(),
        kind: "http",
        status: s.status.as_str().to_owned(),
        sink: SinkView {
            endpoint: s.sink.endpoint.clone(),
            content_type: s.sink.content_type.clone(),
            content_format: s.sink.content_format.as_str().to_owned(),
            custom_headers: s
                .sink
                .headers
                .iter()
                .map(|(n, _)| CustomHeaderView { header: n.clone() })
                .collect(),
        },
        filters: s
            .filters
            .iter()
            .map(|f| Filter {
                kind: "category".into(),
                name: f.clone(),
            })
            .collect(),
        suspended_reason: s.suspended_reason.clone(),
        last_error: s.last_error.clone(),
        events_waiting,
    }
}

/// The stream as answered, with how many events wait.
async fn view_with_queue(deps: &Deps, s: &LogStream) -> Result<LogStreamView, ApiError> {
    Ok(view(s, deps.store.count_log_stream_events(&s.id).await?))
}

fn name(v: &str) -> Result<String, ApiError> {
    let v = v.trim();
    if v.is_empty() || v.chars().count() > MAX_NAME || v.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "name",
            format!("name: 1-{MAX_NAME} characters, no control characters"),
        ));
    }
    Ok(v.to_owned())
}

/// A header value Latch can send: printable ASCII, spaces and tabs.
fn header_value(field: &str, v: &str, max: usize) -> Result<String, ApiError> {
    if v.is_empty() || v.len() > max || !v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        return Err(ApiError::bad_request(
            field,
            format!("{field}: 1-{max} printable ASCII characters (it is sent as an HTTP header)"),
        ));
    }
    Ok(v.to_owned())
}

fn content_type(v: &str) -> Result<String, ApiError> {
    let v = header_value("sink.httpContentType", v.trim(), MAX_CONTENT_TYPE)?;
    if !v.contains('/') {
        return Err(ApiError::bad_request(
            "sink.httpContentType",
            "sink.httpContentType: a media type such as application/json",
        ));
    }
    Ok(v)
}

fn content_format(v: &str) -> Result<ContentFormat, ApiError> {
    ContentFormat::parse(v).ok_or_else(|| {
        ApiError::bad_request(
            "sink.httpContentFormat",
            format!("sink.httpContentFormat: {v} is not JSONLINES or JSONARRAY"),
        )
    })
}

/// Applies `input` to `sink` (every member checked; the endpoint against the outbound policy).
fn apply_sink(deps: &Deps, sink: &mut LogStreamSink, input: SinkInput) -> Result<(), ApiError> {
    if let Some(e) = input.http_endpoint {
        sink.endpoint =
            validate::outbound_url("sink.httpEndpoint", &e, &deps.outbound)?.to_string();
    }
    if let Some(t) = input.http_content_type {
        sink.content_type = content_type(&t)?;
    }
    if let Some(f) = input.http_content_format {
        sink.content_format = content_format(&f)?;
    }
    match input.http_authorization {
        None => {}
        Some(None) => sink.authorization = None,
        Some(Some(a)) => {
            sink.authorization = Some(SecretString::new(header_value(
                "sink.httpAuthorization",
                &a,
                MAX_AUTHORIZATION,
            )?));
        }
    }
    match input.http_custom_headers {
        None => {}
        Some(None) => sink.headers.clear(),
        Some(Some(list)) => sink.headers = custom_headers(list)?,
    }
    Ok(())
}

/// Headers a custom header may not be: Latch sets them, or they belong to the connection.
const RESERVED_HEADERS: [&str; 13] = [
    "authorization",
    "connection",
    "content-length",
    "content-type",
    "expect",
    "host",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Most custom headers, and the longest name.
const MAX_HEADERS: usize = 20;
const MAX_HEADER_NAME: usize = 64;

/// `httpCustomHeaders` as stored: names are tokens, each once, none Latch sets itself; values
/// as `httpAuthorization`'s.
fn custom_headers(list: Vec<CustomHeader>) -> Result<Vec<(String, SecretString)>, ApiError> {
    if list.len() > MAX_HEADERS {
        return Err(ApiError::bad_request(
            "sink.httpCustomHeaders",
            format!("sink.httpCustomHeaders: at most {MAX_HEADERS}"),
        ));
    }
    let mut out: Vec<(String, SecretString)> = Vec::with_capacity(list.len());
    for (i, h) in list.into_iter().enumerate() {
        let field = format!("sink.httpCustomHeaders[{i}].header");
        let name = h.header.trim();
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || name.len() > MAX_HEADER_NAME || !name.bytes().all(token) {
            return Err(ApiError::bad_request(
                field.clone(),
                format!("{field}: 1-{MAX_HEADER_NAME} characters of an HTTP header name"),
            ));
        }
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("proxy-") {
            return Err(ApiError::bad_request(
                field.clone(),
                format!(
                    "{field}: {name} is set by Latch or the connection (use httpAuthorization \
                     or httpContentType for those)"
                ),
            ));
        }
        if out.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return Err(ApiError::bad_request(
                field.clone(),
                format!("{field}: {name} is given twice"),
            ));
        }
        let value = header_value(
            &format!("sink.httpCustomHeaders[{i}].value"),
            &h.value,
            MAX_AUTHORIZATION,
        )?;
        out.push((name.to_owned(), SecretString::new(value)));
    }
    Ok(out)
}

/// The filters as stored: categories, each once.
fn filters(list: Vec<Filter>) -> Result<Vec<String>, ApiError> {
    if list.len() > MAX_FILTERS {
        return Err(ApiError::bad_request(
            "filters",
            format!("filters: at most {MAX_FILTERS}"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for (i, f) in list.into_iter().enumerate() {
        if f.kind != "category" {
            let field = format!("filters[{i}].type");
            return Err(ApiError::bad_request(
                field.clone(),
                format!("{field}: {} is not a filter type; use category", f.kind),
            ));
        }
        if !is_category(&f.name) {
            let field = format!("filters[{i}].name");
            return Err(ApiError::bad_request(
                field.clone(),
                format!(
                    "{field}: {} is not a log stream category; one of: {}, {OTHER}",
                    f.name,
                    CATEGORIES.join(", ")
                ),
            ));
        }
        if !out.contains(&f.name) {
            out.push(f.name);
        }
    }
    Ok(out)
}

/// Do two endpoints have the same origin (scheme, host and port)? An endpoint that does not
/// parse has none.
fn same_origin(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin() && a.origin().is_tuple(),
        _ => false,
    }
}

/// The audit event's `details` members for a write to stream `id`: its id, and for a `PATCH`
/// the members it gave (names only: never a value, the authorization's least of all).
fn stream_details(
    id: &str,
    changed: Option<&[&str]>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("stream_id".into(), id.into());
    if let Some(c) = changed {
        m.insert("changed".into(), c.iter().copied().collect());
    }
    m
}

async fn find(deps: &Deps, id: &str) -> Result<LogStream, ApiError> {
    deps.store
        .find_log_stream(id)
        .await?
        .ok_or_else(|| ApiError::not_found("log stream"))
}

/// Creates a log stream (`active`): events recorded from now on that pass its filters are sent.
#[utoipa::path(post, path = "/api/v2/log-streams", tag = "log-streams",
    request_body = CreateLogStream,
    responses((status = 201, description = "The stream.", body = LogStreamView)),
    security(("bearer" = ["create:log_streams"])))]
async fn post_log_stream(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    StrictJson(body): StrictJson<CreateLogStream>,
) -> Result<HttpResponse, ApiError> {
    auth.require("create:log_streams")?;
    let name = name(&body.name)?;
    if body.kind != "http" {
        return Err(ApiError::bad_request(
            "type",
            format!(
                "type: {} is not a stream type Latch sends; use http",
                body.kind
            ),
        ));
    }
    if body.sink.http_endpoint.is_none() {
        return Err(ApiError::bad_request(
            "sink.httpEndpoint",
            "sink.httpEndpoint is required",
        ));
    }
    let mut sink = LogStreamSink {
        endpoint: String::new(),
        content_type: DEFAULT_CONTENT_TYPE.into(),
        content_format: ContentFormat::JsonLines,
        authorization: None,
        headers: Vec::new(),
    };
    apply_sink(&deps, &mut sink, body.sink)?;
    let filters = filters(body.filters.unwrap_or_default())?;
    let now = deps.clock.now();
    let s = LogStream {
        id: format!("lst_{}", latch_jose::random_alnum(16)),
        name,
        status: LogStreamStatus::Active,
        sink,
        filters,
        suspended_reason: None,
        created_at: now,
        updated_at: now,
        failures: 0,
        failing_since: None,
        last_error: None,
        next_attempt_at: None,
    };
    deps.store.insert_log_stream(&s).await?;
    audit::record_with(
        &deps,
        &req,
        &auth,
        "Create a log stream",
        None,
        None,
        stream_details(&s.id, None),
    )
    .await;
    Ok(HttpResponse::Created().json(view_with_queue(&deps, &s).await?))
}

/// The log streams, oldest first.
#[utoipa::path(get, path = "/api/v2/log-streams", tag = "log-streams",
    responses((status = 200, description = "The streams.", body = Vec<LogStreamView>)),
    security(("bearer" = ["read:log_streams"])))]
async fn get_log_streams(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
) -> Result<HttpResponse, ApiError> {
    auth.require("read:log_streams")?;
    let list = deps.store.list_log_streams().await?;
    let mut views = Vec::with_capacity(list.len());
    for s in &list {
        views.push(view_with_queue(&deps, s).await?);
    }
    Ok(HttpResponse::Ok().json(views))
}

/// One log stream.
#[utoipa::path(get, path = "/api/v2/log-streams/{id}", tag = "log-streams",
    params(("id" = String, Path, description = "The stream's `id`.")),
    responses((status = 200, description = "The stream.", body = LogStreamView)),
    security(("bearer" = ["read:log_streams"])))]
async fn get_log_stream(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require("read:log_streams")?;
    let s = find(&deps, &id).await?;
    Ok(HttpResponse::Ok().json(view_with_queue(&deps, &s).await?))
}

/// Changes a log stream: pauses it (its events are held), resumes it (`active`: the held
/// events are sent, a suspended stream's too), or changes its name, sink or filters.
#[utoipa::path(patch, path = "/api/v2/log-streams/{id}", tag = "log-streams",
    params(("id" = String, Path, description = "The stream's `id`.")),
    request_body = UpdateLogStream,
    responses((status = 200, description = "The stream as changed.", body = LogStreamView)),
    security(("bearer" = ["update:log_streams"])))]
async fn patch_log_stream(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    id: web::Path<String>,
    StrictJson(body): StrictJson<UpdateLogStream>,
) -> Result<HttpResponse, ApiError> {
    auth.require("update:log_streams")?;
    let mut s = find(&deps, &id).await?;
    // What the PATCH names (never a value), for the audit event.
    let mut changed: Vec<&str> = Vec::new();
    if let Some(n) = &body.name {
        s.name = name(n)?;
        changed.push("name");
    }
    let status = match body.status.as_deref() {
        None => None,
        Some("active") => Some(LogStreamStatus::Active),
        Some("paused") => Some(LogStreamStatus::Paused),
        Some(other) => {
            return Err(ApiError::bad_request(
                "status",
                format!("status: {other} cannot be set; use active or paused"),
            ));
        }
    };
    if status.is_some() {
        changed.push("status");
    }
    if let Some(sink) = body.sink {
        changed.extend(sink.members());
        let was = s.sink.endpoint.clone();
        let had_headers = !s.sink.headers.is_empty();
        let restated = (
            sink.http_authorization.is_some(),
            sink.http_custom_headers.is_some(),
        );
        apply_sink(&deps, &mut s.sink, sink)?;
        // The stored secrets were given for the old endpoint's host: they are never sent to
        // another unless the same PATCH says so (a value, or null for none).
        if !same_origin(&was, &s.sink.endpoint) {
            if !restated.0 {
                return Err(ApiError::bad_request(
                    "sink.httpAuthorization",
                    "sink.httpAuthorization: required (a value, or null for none) when \
                     sink.httpEndpoint moves to another scheme, host or port; the stored one \
                     was given for the old endpoint",
                ));
            }
            if had_headers && !restated.1 {
                return Err(ApiError::bad_request(
                    "sink.httpCustomHeaders",
                    "sink.httpCustomHeaders: required (a list, or null for none) when \
                     sink.httpEndpoint moves to another scheme, host or port; the stored \
                     values were given for the old endpoint",
                ));
            }
        }
    }
    if let Some(f) = body.filters {
        s.filters = filters(f)?;
        changed.push("filters");
    }
    s.updated_at = deps.clock.now();
    // The status only when the PATCH gives one: a suspension the workers wrote since the read
    // above stands through a change of name, sink or filters.
    deps.store.update_log_stream(&s, status).await?;
    audit::record_with(
        &deps,
        &req,
        &auth,
        "Update a log stream",
        None,
        None,
        stream_details(&s.id, Some(&changed)),
    )
    .await;
    let s = find(&deps, &s.id).await?;
    Ok(HttpResponse::Ok().json(view_with_queue(&deps, &s).await?))
}

/// Deletes a log stream and the events it had yet to send.
#[utoipa::path(delete, path = "/api/v2/log-streams/{id}", tag = "log-streams",
    params(("id" = String, Path, description = "The stream's `id`.")),
    responses((status = 204, description = "Deleted.")),
    security(("bearer" = ["delete:log_streams"])))]
async fn delete_log_stream(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require("delete:log_streams")?;
    if !deps.store.delete_log_stream(&id).await? {
        return Err(ApiError::not_found("log stream"));
    }
    audit::record_with(
        &deps,
        &req,
        &auth,
        "Delete a log stream",
        None,
        None,
        stream_details(&id, None),
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

/// The admin UI's log stream writes, through the handlers above (same checks, same events).
pub(crate) mod ops {
    use serde_json::Value;

    use super::*;

    pub(crate) async fn create(
        deps: &web::Data<Deps>,
        auth: ManagementAuth,
        req: &HttpRequest,
        body: Value,
    ) -> Result<Value, ApiError> {
        let res = post_log_stream(
            deps.clone(),
            auth,
            req.clone(),
            StrictJson(crate::api::body(body)?),
        )
        .await?;
        crate::api::answer(res).await
    }

    pub(crate) async fn update(
        deps: &web::Data<Deps>,
        auth: ManagementAuth,
        req: &HttpRequest,
        id: &str,
        body: Value,
    ) -> Result<Value, ApiError> {
        let res = patch_log_stream(
            deps.clone(),
            auth,
            req.clone(),
            web::Path::from(id.to_owned()),
            StrictJson(crate::api::body(body)?),
        )
        .await?;
        crate::api::answer(res).await
    }

    pub(crate) async fn delete(
        deps: &web::Data<Deps>,
        auth: ManagementAuth,
        req: &HttpRequest,
        id: &str,
    ) -> Result<(), ApiError> {
        delete_log_stream(
            deps.clone(),
            auth,
            req.clone(),
            web::Path::from(id.to_owned()),
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_categories_each_once() {
        let f = |kind: &str, name: &str| Filter {
            kind: kind.into(),
            name: name.into(),
        };
        assert_eq!(
            filters(vec![
                f("category", "auth.login.success"),
                f("category", "other"),
                f("category", "auth.login.success"),
            ])
            .ok(),
            Some(vec!["auth.login.success".to_owned(), "other".to_owned()])
        );
        let e = filters(vec![
            f("category", "auth.login.success"),
            f("category", "nope"),
        ])
        .err()
        .map(|e| e.field);
        assert_eq!(e, Some(Some("filters[1].name".to_owned())));
        let e = filters(vec![f("type", "auth.login.success")])
            .err()
            .map(|e| e.field);
        assert_eq!(e, Some(Some("filters[0].type".to_owned())));
    }

    #[test]
    fn origins() {
        assert!(same_origin(
            "https://a.example/x",
            "https://A.example:443/y?z"
        ));
        assert!(same_origin(
            "http://127.0.0.1:8080/a",
            "http://127.0.0.1:8080/b"
        ));
        assert!(!same_origin("https://a.example/x", "http://a.example/x"));
        assert!(!same_origin(
            "https://a.example/x",
            "https://a.example:8443/x"
        ));
        assert!(!same_origin("https://a.example/x", "https://b.example/x"));
        assert!(!same_origin(
            "https://a.example/x",
            "https://a.example.b.example/x"
        ));
        assert!(!same_origin("not a url", "not a url"));
    }

    #[test]
    fn header_values_are_printable_ascii() {
        assert!(header_value("f", "Bearer abc", 100).is_ok());
        assert!(header_value("f", "", 100).is_err());
        assert!(header_value("f", "a\r\nX-Evil: 1", 100).is_err());
        assert!(header_value("f", "é", 100).is_err());
        assert!(header_value("f", &"a".repeat(101), 100).is_err());
        assert!(content_type("application/x-ndjson").is_ok());
        assert!(content_type("json").is_err());
        assert!(content_format("JSONOBJECT").is_err());
    }
}
