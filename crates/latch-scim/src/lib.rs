//! Inbound SCIM 2.0 (RFC 7643, RFC 7644) per connection, as Auth0 serves it:
//! `{issuer}/scim/v2/connections/{connection_id}` with `ServiceProviderConfig`, `ResourceTypes`,
//! `Schemas` and `Users`. Okta, Entra ID or any SCIM client provisions users into an enterprise
//! connection; a deactivation (`active: false`) or a `DELETE` is a logout everywhere.
//!
//! Every request carries a bearer token of that connection (`POST
//! /api/v2/connections/{id}/scim-configuration/tokens`), found by its SHA-256 digest, unexpired,
//! holding the operation's scope (`get:users`, `post:users`, `put:users`, `patch:users`,
//! `delete:users`). Users are written through the user use-cases (`latch_core::users::scim_*`),
//! one transaction each, and each write is one `sscim` log event naming the token.
//!
//! **Invariants:** another connection's token sees and touches nothing here (401); a refused
//! request changes nothing; a filter is parsed (`scim_v2`, depth-limited) and evaluated in
//! memory, never turned into SQL; bodies over 1 MiB are refused before they are read whole.

pub mod filter;
pub mod patch;
pub mod resource;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use latch_core::logout::Logout;
use latch_core::model::{
    Connection, DEFAULT_SCIM_USER_ID_ATTRIBUTE, LogEvent, ScimConfig, ScimLookup, ScimToken,
    ScimUser, User,
};
use latch_core::store::Store;
use latch_core::users::{self, UserError};
use latch_core::{Clock, ConnectionId, StoreError, UserId};
use serde_json::{Value, json};

/// The core User schema.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// SCIM's media type.
pub const CONTENT_TYPE: &str = "application/scim+json";
/// Largest body accepted (413 above).
pub const MAX_BODY: usize = 1024 * 1024;
/// `count` when the client names none, and the most it may ask for.
pub const DEFAULT_COUNT: u64 = 100;
pub const MAX_COUNT: u64 = 1000;
/// A filter the store cannot narrow is evaluated over at most this many users (else `tooMany`).
pub const MAX_SCAN: u64 = 10_000;

/// The base path, with `{connection_id}`.
pub const BASE: &str = "/scim/v2/connections/{connection_id}";

/// `{issuer}/scim/v2/connections/{connection_id}`: the SCIM base URL an admin gives the client.
pub fn base_url(issuer: &str, connection: &ConnectionId) -> String {
    format!("{issuer}/scim/v2/connections/{connection}")
}

#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    /// Deactivations and deletions end sessions through it.
    pub logout: Arc<Logout>,
    /// Latch's issuer, without a trailing slash.
    pub issuer: String,
}

/// A SCIM error (RFC 7644 §3.12): the status, `scimType` when one applies, and `detail`.
#[derive(Debug)]
pub struct ScimError {
    pub status: StatusCode,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    fn new(status: StatusCode, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type,
            detail: detail.into(),
        }
    }
    pub fn invalid_value(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("invalidValue"), d)
    }
    pub fn invalid_syntax(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("invalidSyntax"), d)
    }
    pub fn invalid_path(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("invalidPath"), d)
    }
    pub fn no_target(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("noTarget"), d)
    }
    pub fn mutability(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("mutability"), d)
    }
    fn invalid_filter(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("invalidFilter"), d)
    }
    fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            None,
            "a valid SCIM token of this connection is required",
        )
    }
    fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, None, "no such resource")
    }
    fn server(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "SCIM request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "the request could not be completed",
        )
    }
}

impl From<StoreError> for ScimError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { field, .. } if field != "version" => Self::new(
                StatusCode::CONFLICT,
                Some("uniqueness"),
                format!("{field} is already used in this connection"),
            ),
            StoreError::Conflict { .. } => Self::new(
                StatusCode::PRECONDITION_FAILED,
                None,
                "the resource changed meanwhile",
            ),
            StoreError::NotFound { .. } => Self::not_found(),
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "SCIM: store unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    "the service is unavailable; retry later",
                )
            }
            e => Self::server(e),
        }
    }
}

impl From<UserError> for ScimError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::Store(s) => s.into(),
            UserError::InvalidEmail => Self::invalid_value("emails: not an email address"),
            UserError::InvalidName => Self::invalid_value("displayName must be 1-300 characters"),
            UserError::NotEnterprise => Self::new(
                StatusCode::NOT_FOUND,
                None,
                "SCIM serves enterprise connections only",
            ),
            e => Self::server(e),
        }
    }
}

impl actix_web::ResponseError for ScimError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t);
        }
        let mut b = HttpResponse::build(self.status);
        b.insert_header((header::CONTENT_TYPE, CONTENT_TYPE));
        if self.status == StatusCode::UNAUTHORIZED {
            b.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"scim\""));
        }
        b.body(body.to_string())
    }
}

impl std::fmt::Display for ScimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.detail)
    }
}

/// Mounts the SCIM server.
pub fn configure(deps: Deps) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.service(
            web::scope(BASE)
                .app_data(web::Data::new(deps))
                .app_data(
                    web::QueryConfig::default().error_handler(|e, _| {
                        ScimError::invalid_value(format!("query: {e}")).into()
                    }),
                )
                .default_service(web::to(|| async {
                    Err::<HttpResponse, _>(ScimError::not_found())
                }))
                // Each endpoint answers 405 (a SCIM error) to a method it does not take.
                .service(only(
                    "/ServiceProviderConfig",
                    vec![web::get().to(service_provider_config)],
                ))
                .service(only("/ResourceTypes", vec![web::get().to(resource_types)]))
                .service(only(
                    "/ResourceTypes/{id}",
                    vec![web::get().to(resource_type)],
                ))
                .service(only("/Schemas", vec![web::get().to(schemas)]))
                .service(only("/Schemas/{id}", vec![web::get().to(schema)]))
                // Searching with POST (RFC 7644 §3.4.3): at the root, Users are the only type.
                .service(only("/.search", vec![web::post().to(search_users)]))
                .service(only("/Users/.search", vec![web::post().to(search_users)]))
                .service(only(
                    "/Users",
                    vec![web::get().to(list_users), web::post().to(post_user)],
                ))
                .service(only(
                    "/Users/{id}",
                    vec![
                        web::get().to(get_user),
                        web::put().to(put_user),
                        web::patch().to(patch_user),
                        web::delete().to(delete_user),
                    ],
                )),
        );
    }
}

/// A resource that answers `routes`, and 405 to any other method.
fn only(path: &str, routes: Vec<actix_web::Route>) -> actix_web::Resource {
    routes
        .into_iter()
        .fold(web::resource(path), |r, route| r.route(route))
        .default_service(web::to(|| async {
            Err::<HttpResponse, _>(ScimError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                None,
                "this endpoint does not take that method",
            ))
        }))
}

/// The caller, once its token checks out.
struct Caller {
    token: ScimToken,
    connection: Connection,
    config: ScimConfig,
}

/// The bearer token of this connection, valid, holding `scope` (403 without it).
async fn authorize(
    deps: &Deps,
    req: &HttpRequest,
    connection_id: &str,
    scope: Option<&str>,
) -> Result<Caller, ScimError> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 512)
        .ok_or_else(ScimError::unauthorized)?;
    // The token and its connection's configuration in one read; the connection from the
    // store's cache (its id is fixed, and a deleted connection takes its configuration along).
    let (found, config) = deps
        .store
        .find_scim_caller(&latch_jose::token_digest(token))
        .await?
        .filter(|(t, _)| t.connection_id.as_str() == connection_id && t.is_valid(deps.clock.now()))
        .ok_or_else(ScimError::unauthorized)?;
    let connection = match deps.store.get_connection_cached(&found.connection_id).await {
        Ok(c) => c,
        Err(StoreError::NotFound { .. }) => return Err(ScimError::unauthorized()),
        Err(e) => return Err(e.into()),
    };
    if let Some(s) = scope
        && !found.allows(s)
    {
        return Err(ScimError::new(
            StatusCode::FORBIDDEN,
            None,
            format!("the token lacks the {s} scope"),
        ));
    }
    Ok(Caller {
        token: found,
        connection,
        config,
    })
}

fn scim_json(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, CONTENT_TYPE))
        .body(body.to_string())
}

fn location(deps: &Deps, c: &Caller, user: &UserId) -> String {
    format!(
        "{}/Users/{}",
        base_url(&deps.issuer, &c.connection.id),
        user
    )
}

fn user_response(
    deps: &Deps,
    c: &Caller,
    status: StatusCode,
    s: &ScimUser,
    u: &User,
) -> HttpResponse {
    let loc = location(deps, c, &u.user_id);
    let body = resource::served(s, u, &loc);
    let mut res = scim_json(status, &body);
    if let Ok(v) = HeaderValue::from_str(&resource::etag(s.version)) {
        res.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED
        && let Ok(v) = HeaderValue::from_str(&loc)
    {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// Reads a JSON body: SCIM's media type (or plain JSON), at most [`MAX_BODY`].
async fn body(req: &HttpRequest, mut payload: web::Payload) -> Result<Value, ScimError> {
    use futures_util::StreamExt as _;
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if !matches!(ct.as_deref(), Some(CONTENT_TYPE | "application/json")) {
        return Err(ScimError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
            format!("the body must be {CONTENT_TYPE}"),
        ));
    }
    if req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > MAX_BODY)
    {
        return Err(too_large());
    }
    let mut buf = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| ScimError::invalid_syntax("the body could not be read"))?;
        if buf.len() + chunk.len() > MAX_BODY {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&buf).map_err(|e| ScimError::invalid_syntax(format!("not JSON: {e}")))
}

fn too_large() -> ScimError {
    ScimError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        None,
        "the body is larger than 1 MiB",
    )
}

/// Logs a SCIM write (`sscim`), naming the token.
async fn audit(deps: &Deps, c: &Caller, req: &HttpRequest, user: Option<&UserId>, what: &str) {
    let e = LogEvent {
        user_id: user.cloned(),
        connection: Some(c.connection.name.clone()),
        ip: latch_http::client_ip(req).map(|i| i.to_string()),
        details: json!({
            "request": format!("{} {}", req.method(), req.path()),
            "token_id": c.token.token_id,
        }),
        ..LogEvent::new(deps.clock.now(), "sscim", what)
    };
    if let Err(err) = deps.store.insert_log(&e).await {
        tracing::error!(error = %err, "could not record the sscim event");
    }
}

/// Logs the logout a deactivation or deletion ran (`slo`, as blocking or deleting a user through
/// the management API does), naming the token.
async fn audit_logout(
    deps: &Deps,
    c: &Caller,
    req: &HttpRequest,
    user: &UserId,
    ended: &latch_core::logout::Ended,
    initiator: latch_core::model::LogoutInitiator,
    what: &str,
) {
    let mut details = ended.background_event_details(initiator);
    details.insert("token_id".into(), json!(c.token.token_id));
    let e = LogEvent {
        user_id: Some(user.clone()),
        connection: Some(c.connection.name.clone()),
        ip: latch_http::client_ip(req).map(|i| i.to_string()),
        details: Value::Object(details),
        ..LogEvent::new(deps.clock.now(), "slo", what)
    };
    if let Err(err) = deps.store.insert_log(&e).await {
        tracing::error!(error = %err, "could not record the SCIM logout");
    }
}

/// The version an `If-Match` names, if any (`*` matches anything).
fn if_match(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| *v != "*")
        .map(str::to_owned)
}

#[derive(serde::Deserialize, Default)]
struct ListQuery {
    filter: Option<String>,
    #[serde(rename = "startIndex")]
    start_index: Option<i64>,
    count: Option<i64>,
    attributes: Option<String>,
    #[serde(rename = "excludedAttributes")]
    excluded_attributes: Option<String>,
}

/// A SearchRequest body (RFC 7644 §3.4.3): the query parameters as JSON, `attributes` as lists.
#[derive(serde::Deserialize)]
struct SearchRequest {
    #[serde(default)]
    schemas: Vec<String>,
    filter: Option<String>,
    #[serde(rename = "startIndex")]
    start_index: Option<i64>,
    count: Option<i64>,
    #[serde(default)]
    attributes: Vec<String>,
    #[serde(rename = "excludedAttributes", default)]
    excluded_attributes: Vec<String>,
}

const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

async fn search_users(
    deps: web::Data<Deps>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ScimError> {
    let c = authorize(&deps, &req, &path, Some("get:users")).await?;
    let r: SearchRequest = serde_json::from_value(body(&req, payload).await?)
        .map_err(|e| ScimError::invalid_syntax(format!("not a SearchRequest: {e}")))?;
    if !r.schemas.iter().any(|s| s == SEARCH_REQUEST) {
        return Err(ScimError::invalid_syntax(format!(
            "schemas must be [{SEARCH_REQUEST}]"
        )));
    }
    let join = |v: Vec<String>| (!v.is_empty()).then(|| v.join(","));
    let q = ListQuery {
        filter: r.filter,
        start_index: r.start_index,
        count: r.count,
        attributes: join(r.attributes),
        excluded_attributes: join(r.excluded_attributes),
    };
    list(&deps, &c, &q).await
}

#[derive(serde::Deserialize)]
struct ProjectionQuery {
    attributes: Option<String>,
    #[serde(rename = "excludedAttributes")]
    excluded_attributes: Option<String>,
}

async fn list_users(
    deps: web::Data<Deps>,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ScimError> {
    let c = authorize(&deps, &req, &path, Some("get:users")).await?;
    list(&deps, &c, &q).await
}

/// A page of the connection's users matching `q` (GET `/Users` and POST `.search`).
async fn list(deps: &Deps, c: &Caller, q: &ListQuery) -> Result<HttpResponse, ScimError> {
    let start = q.start_index.unwrap_or(1).max(1) as u64;
    let count = q
        .count
        .unwrap_or(DEFAULT_COUNT as i64)
        .clamp(0, MAX_COUNT as i64) as u64;
    let parsed: Option<scim_v2::filter::Filter> = match q.filter.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(f) if f.len() > 4096 => {
            return Err(ScimError::invalid_filter("the filter is too long"));
        }
        Some(f) => Some(
            normalise_filter(f)
                .parse()
                .map_err(|_| ScimError::invalid_filter("the filter is not a SCIM filter"))?,
        ),
    };
    let loc = |u: &UserId| location(deps, c, u);
    let lookup = parsed.as_ref().map_or(ScimLookup::All, filter::lookup);
    // A filter that is exactly the store's lookup pages in the store; any other is evaluated
    // over every user the lookup finds.
    let exact = match (&parsed, &lookup) {
        (None, _) => true,
        (Some(f), ScimLookup::UserName(_) | ScimLookup::ExternalId(_)) => {
            matches!(
                f,
                scim_v2::filter::Filter::Attr(scim_v2::filter::AttrExp::Comparison(..))
            )
        }
        _ => false,
    };
    let (page, total): (Vec<Value>, u64) = if exact {
        let (rows, total) = deps
            .store
            .list_scim_users(&c.connection.id, &lookup, start - 1, count)
            .await?;
        (
            rows.iter()
                .map(|(s, u)| resource::served(s, u, &loc(&u.user_id)))
                .collect(),
            total,
        )
    } else {
        let (rows, total) = deps
            .store
            .list_scim_users(&c.connection.id, &lookup, 0, MAX_SCAN)
            .await?;
        if total > MAX_SCAN {
            return Err(ScimError::new(
                StatusCode::BAD_REQUEST,
                Some("tooMany"),
                "the filter would be evaluated over too many users; filter on userName, externalId or an email",
            ));
        }
        let matching: Vec<Value> = rows
            .iter()
            .map(|(s, u)| resource::served(s, u, &loc(&u.user_id)))
            .filter(|v| parsed.as_ref().is_none_or(|f| filter::matches(v, f)))
            .collect();
        let total = matching.len() as u64;
        (
            matching
                .into_iter()
                .skip((start - 1) as usize)
                .take(count as usize)
                .collect(),
            total,
        )
    };
    let resources: Vec<Value> = page
        .into_iter()
        .map(|v| resource::project(v, q.attributes.as_deref(), q.excluded_attributes.as_deref()))
        .collect();
    Ok(scim_json(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": total,
            "startIndex": start,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        }),
    ))
}

/// `emails[type eq "work"].value eq "x"` (Okta's, outside RFC 7644's grammar) as the grammar
/// says it: `emails[type eq "work" and value eq "x"]`.
fn normalise_filter(f: &str) -> String {
    let Some(close) = f.find("].") else {
        return f.to_owned();
    };
    let Some(open) = f[..close].rfind('[') else {
        return f.to_owned();
    };
    // Only the whole-filter form `attr[inner].sub rest`.
    if f[..open].contains(['(', ' ']) || f[close..].contains(['[', '(']) {
        return f.to_owned();
    }
    let (attr, inner, rest) = (&f[..open], &f[open + 1..close], &f[close + 2..]);
    format!("{attr}[({inner}) and {rest}]")
}

async fn find(deps: &Deps, c: &Caller, id: &str) -> Result<(ScimUser, User), ScimError> {
    deps.store
        .find_scim_user(&c.connection.id, &UserId::new(id))
        .await?
        .ok_or_else(ScimError::not_found)
}

async fn get_user(
    deps: web::Data<Deps>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    q: web::Query<ProjectionQuery>,
) -> Result<HttpResponse, ScimError> {
    let (conn, id) = path.into_inner();
    let c = authorize(&deps, &req, &conn, Some("get:users")).await?;
    let (s, u) = find(&deps, &c, &id).await?;
    let tag = resource::etag(s.version);
    if req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == tag)
    {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, tag))
            .finish());
    }
    let mut res = user_response(&deps, &c, StatusCode::OK, &s, &u);
    if q.attributes.is_some() || q.excluded_attributes.is_some() {
        let v = resource::served(&s, &u, &location(&deps, &c, &u.user_id));
        let v = resource::project(v, q.attributes.as_deref(), q.excluded_attributes.as_deref());
        let etag = res.headers().get(header::ETAG).cloned();
        res = scim_json(StatusCode::OK, &v);
        if let Some(e) = etag {
            res.headers_mut().insert(header::ETAG, e);
        }
    }
    Ok(res)
}

async fn post_user(
    deps: web::Data<Deps>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ScimError> {
    let c = authorize(&deps, &req, &path, Some("post:users")).await?;
    let w = resource::read(body(&req, payload).await?, &c.config)?;
    // A user who signed in through this OpenID connection before SCIM was on, with this
    // subject, is this one: linked, not made again.
    if let Some(existing) = signed_in_before(&deps, &c, &w.subject).await? {
        let done = users::scim_link(
            &*deps.store,
            &*deps.clock,
            &deps.logout,
            &c.connection,
            existing,
            w,
        )
        .await?;
        audit(
            &deps,
            &c,
            &req,
            Some(&done.user.user_id),
            "SCIM user linked to an existing user",
        )
        .await;
        return Ok(user_response(
            &deps,
            &c,
            StatusCode::CREATED,
            &done.scim,
            &done.user,
        ));
    }
    let (s, u) = users::scim_create(
        &*deps.store,
        &*deps.clock,
        &c.connection,
        latch_jose::random_alnum(24).to_lowercase(),
        w,
    )
    .await?;
    audit(&deps, &c, &req, Some(&u.user_id), "SCIM user created").await;
    Ok(user_response(&deps, &c, StatusCode::CREATED, &s, &u))
}

/// The user who signed in through `c`'s OpenID Connect IdP as `subject` and has no SCIM record
/// in the connection yet. (A SAML connection's identities carry the IdP's entity id, which
/// Latch knows only from its metadata: they are not matched.)
async fn signed_in_before(
    deps: &Deps,
    c: &Caller,
    subject: &str,
) -> Result<Option<User>, ScimError> {
    let Ok(o) = latch_core::connection_options::OidcOptions::from_connection(&c.connection) else {
        return Ok(None);
    };
    let Some((_, user)) = deps
        .store
        .find_identity_with_user(&c.connection.id, &o.issuer, subject)
        .await?
    else {
        return Ok(None);
    };
    let linked = deps
        .store
        .find_scim_user(&c.connection.id, &user.user_id)
        .await?
        .is_some();
    Ok((!linked).then_some(user))
}

/// Writes a new state of a user: `next` computes it from the current one. Retried when another
/// write came between the read and the write, unless the client named the version it saw.
async fn write(
    deps: &Deps,
    req: &HttpRequest,
    c: &Caller,
    id: &str,
    next: impl Fn(&ScimUser, &User) -> Result<Value, ScimError>,
) -> Result<HttpResponse, ScimError> {
    let expected = if_match(req);
    for _ in 0..3 {
        let (s, u) = find(deps, c, id).await?;
        if let Some(e) = &expected
            && *e != resource::etag(s.version)
        {
            return Err(ScimError::new(
                StatusCode::PRECONDITION_FAILED,
                None,
                "the resource's version is not the one named by If-Match",
            ));
        }
        let w = resource::read(next(&s, &u)?, &c.config)?;
        let was_active = s.active;
        match users::scim_update(&*deps.store, &*deps.clock, &deps.logout, (s, u), w).await {
            Ok(done) => {
                let what = match (was_active, done.scim.active) {
                    (true, false) => "SCIM user deactivated: signed out everywhere",
                    (false, true) => "SCIM user reactivated",
                    _ => "SCIM user updated",
                };
                audit(deps, c, req, Some(&done.user.user_id), what).await;
                if let Some(ended) = &done.ended
                    && (was_active || !ended.sessions.is_empty())
                {
                    audit_logout(
                        deps,
                        c,
                        req,
                        &done.user.user_id,
                        ended,
                        latch_core::model::LogoutInitiator::AccountDeactivated,
                        "SCIM user deactivated: signed out everywhere",
                    )
                    .await;
                }
                return Ok(user_response(
                    deps,
                    c,
                    StatusCode::OK,
                    &done.scim,
                    &done.user,
                ));
            }
            Err(UserError::Store(StoreError::Conflict {
                field: "version", ..
            })) if expected.is_none() => {
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ScimError::new(
        StatusCode::CONFLICT,
        None,
        "the resource kept changing; retry",
    ))
}

async fn put_user(
    deps: web::Data<Deps>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, ScimError> {
    let (conn, id) = path.into_inner();
    let c = authorize(&deps, &req, &conn, Some("put:users")).await?;
    let sent = body(&req, payload).await?;
    // `id` is immutable: a PUT naming another is refused.
    if let Some(other) = sent.get("id").and_then(Value::as_str)
        && other != id
    {
        return Err(ScimError::mutability("id cannot be changed"));
    }
    write(&deps, &req, &c, &id, |_, _| Ok(sent.clone())).await
}

async fn patch_user(
    deps: web::Data<Deps>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, ScimError> {
    let (conn, id) = path.into_inner();
    let c = authorize(&deps, &req, &conn, Some("patch:users")).await?;
    let sent = body(&req, payload).await?;
    let p: patch::PatchRequest = serde_json::from_value(sent)
        .map_err(|e| ScimError::invalid_syntax(format!("not a PatchOp request: {e}")))?;
    if !p.schemas.iter().any(|s| s == patch::PATCH_OP) {
        return Err(ScimError::invalid_syntax(format!(
            "schemas must be [{}]",
            patch::PATCH_OP
        )));
    }
    let ops = p.operations;
    write(&deps, &req, &c, &id, |s, u| {
        let served = resource::served(s, u, "");
        let Value::Object(mut m) = served else {
            return Err(ScimError::server("a served user is not an object"));
        };
        m.remove("meta");
        m.remove("id");
        let ops: Vec<patch::Operation> = ops
            .iter()
            .map(|o| patch::Operation {
                op: o.op.clone(),
                path: o.path.clone(),
                value: o.value.clone(),
            })
            .collect();
        patch::apply(&mut m, ops)?;
        m.insert("schemas".into(), json!([USER_SCHEMA]));
        Ok(Value::Object(m))
    })
    .await
}

async fn delete_user(
    deps: web::Data<Deps>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ScimError> {
    let (conn, id) = path.into_inner();
    let c = authorize(&deps, &req, &conn, Some("delete:users")).await?;
    let (s, _) = find(&deps, &c, &id).await?;
    if let Some(e) = if_match(&req)
        && e != resource::etag(s.version)
    {
        return Err(ScimError::new(
            StatusCode::PRECONDITION_FAILED,
            None,
            "the resource's version is not the one named by If-Match",
        ));
    }
    let ended = users::delete(&*deps.store, &deps.logout, &s.user_id).await?;
    audit_logout(
        &deps,
        &c,
        &req,
        &s.user_id,
        &ended,
        latch_core::model::LogoutInitiator::AccountDeleted,
        "SCIM user deleted: signed out everywhere",
    )
    .await;
    audit(
        &deps,
        &c,
        &req,
        Some(&s.user_id),
        "SCIM user deleted: signed out everywhere",
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

// Discovery (RFC 7644 §4): what this server supports.

async fn service_provider_config(
    deps: web::Data<Deps>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ScimError> {
    let c = authorize(&deps, &req, &path, None).await?;
    let base = base_url(&deps.issuer, &c.connection.id);
    Ok(scim_json(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": "https://github.com/latch-idp/latch#scim",
            "patch": {"supported": true},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": true, "maxResults": MAX_COUNT},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": true},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "A SCIM token of this connection (Latch management API: scim-configuration/tokens)",
                "primary": true
            }],
            "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")}
        }),
    ))
}

fn user_resource_type(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "User Account",
        "schema": USER_SCHEMA,
        "schemaExtensions": [],
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")}
    })
}

async fn resource_types(
    deps: web::Data<Deps>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ScimError> {
    let c = authorize(&deps, &req, &path, None).await?;
    let base = base_url(&deps.issuer, &c.connection.id);
    Ok(scim_json(
        StatusCode::OK,
        &json!({"schemas": [LIST_SCHEMA], "totalResults": 1, "startIndex": 1, "itemsPerPage": 1,
                "Resources": [user_resource_type(&base)]}),
    ))
}

async fn resource_type(
    deps: web::Data<Deps>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ScimError> {
    let (conn, id) = path.into_inner();
    let c = authorize(&deps, &req, &conn, None).await?;
    if id != "User" {
        return Err(ScimError::not_found());
    }
    Ok(scim_json(
        StatusCode::OK,
        &user_resource_type(&base_url(&deps.issuer, &c.connection.id)),
    ))
}

async fn schemas(
    deps: web::Data<Deps>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ScimError> {
    let c = authorize(&deps, &req, &path, None).await?;
    let base = base_url(&deps.issuer, &c.connection.id);
    Ok(scim_json(
        StatusCode::OK,
        &json!({"schemas": [LIST_SCHEMA], "totalResults": 1, "startIndex": 1, "itemsPerPage": 1,
                "Resources": [user_schema(&base)]}),
    ))
}

async fn schema(
    deps: web::Data<Deps>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ScimError> {
    let (conn, id) = path.into_inner();
    let c = authorize(&deps, &req, &conn, None).await?;
    if id != USER_SCHEMA {
        return Err(ScimError::not_found());
    }
    Ok(scim_json(
        StatusCode::OK,
        &user_schema(&base_url(&deps.issuer, &c.connection.id)),
    ))
}

/// The core User schema as Latch serves it (the attributes it reads or keeps).
fn user_schema(base: &str) -> Value {
    let attr = |name: &str,
                ty: &str,
                multi: bool,
                required: bool,
                case_exact: bool,
                mutability: &str,
                uniqueness: &str| {
        json!({"name": name, "type": ty, "multiValued": multi, "description": name,
               "required": required, "caseExact": case_exact, "mutability": mutability,
               "returned": "default", "uniqueness": uniqueness})
    };
    let sub = |name: &str, ty: &str| attr(name, ty, false, false, false, "readWrite", "none");
    let mut name = attr("name", "complex", false, false, false, "readWrite", "none");
    name["subAttributes"] = json!([
        sub("formatted", "string"),
        sub("familyName", "string"),
        sub("givenName", "string"),
        sub("middleName", "string"),
        sub("honorificPrefix", "string"),
        sub("honorificSuffix", "string")
    ]);
    let mut emails = attr("emails", "complex", true, false, false, "readWrite", "none");
    emails["subAttributes"] = json!([
        sub("value", "string"),
        sub("display", "string"),
        sub("type", "string"),
        sub("primary", "boolean")
    ]);
    let mut phones = attr(
        "phoneNumbers",
        "complex",
        true,
        false,
        false,
        "readWrite",
        "none",
    );
    phones["subAttributes"] = json!([
        sub("value", "string"),
        sub("type", "string"),
        sub("primary", "boolean")
    ]);
    let mut id = attr("id", "string", false, false, true, "readOnly", "server");
    id["returned"] = json!("always");
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": USER_SCHEMA,
        "name": "User",
        "description": "User Account",
        "attributes": [
            id,
            attr("userName", "string", false, true, false, "readWrite", "server"),
            attr("externalId", "string", false, false, true, "readWrite", "none"),
            name,
            attr("displayName", "string", false, false, false, "readWrite", "none"),
            attr("nickName", "string", false, false, false, "readWrite", "none"),
            attr("title", "string", false, false, false, "readWrite", "none"),
            attr("userType", "string", false, false, false, "readWrite", "none"),
            attr("preferredLanguage", "string", false, false, false, "readWrite", "none"),
            attr("locale", "string", false, false, false, "readWrite", "none"),
            attr("timezone", "string", false, false, false, "readWrite", "none"),
            attr("active", "boolean", false, false, false, "readWrite", "none"),
            emails,
            phones,
        ],
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{USER_SCHEMA}")}
    })
}

/// The default `user_id_attribute`, re-exported for the management API.
pub const DEFAULT_USER_ID_ATTRIBUTE: &str = DEFAULT_SCIM_USER_ID_ATTRIBUTE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oktas_value_path_filter_becomes_the_grammars() {
        assert_eq!(
            normalise_filter(r#"emails[type eq "work"].value eq "a@b.c""#),
            r#"emails[(type eq "work") and value eq "a@b.c"]"#
        );
        let f: scim_v2::filter::Filter =
            normalise_filter(r#"emails[type eq "work"].value eq "a@b.c""#)
                .parse()
                .unwrap();
        assert_eq!(filter::lookup(&f), ScimLookup::Email("a@b.c".into()));
        assert_eq!(normalise_filter(r#"userName eq "a""#), r#"userName eq "a""#);
    }
}
