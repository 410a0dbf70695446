//! Global Token Revocation (draft-parecki-oauth-global-token-revocation), as Okta Universal
//! Logout calls it: `POST /oauth/global-token-revocation/connection/{connection_name}`.
//!
//! One accepted call ends every Latch session of the user, revokes all their refresh tokens
//! (offline ones too), and records back-channel logouts for every app that joined a session or
//! holds a token, through `latch_core::logout::terminate`. Okta reads only the status code, so
//! bodies say nothing that helps an attacker; the log says everything.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{DecodingKey, Header};
use latch_core::logout::{Logout, Target, TokenPolicy, Urgency};
use latch_core::model::{
    Connection, LOG_REASON_MAX, LogEvent, LogoutInitiator, Strategy, User, log_text,
};
use latch_core::session::SessionStore;
use latch_core::store::Store;
use latch_core::{Clock, ConnectionName};
use latch_remote::{
    Expectations, KeySource, Lifetime, REMOTE_ALGORITHMS, RemoteKeys, Typ, VerifyError,
};
use serde_json::{Map, Value, json};

/// The path, with `{connection_name}`.
pub const PATH: &str = latch_core::paths::GLOBAL_TOKEN_REVOCATION;
/// The JOSE `typ` of Okta's request tokens.
pub const TYP: &str = "global-token-revocation+jwt";
/// Largest accepted body.
pub const MAX_BODY: usize = 4096;
/// Clock skew tolerated on `exp`, `iat`, `nbf`.
pub const SKEW: i64 = 60;
/// Longest accepted token lifetime (`exp - iat`); Okta issues five minutes.
pub const MAX_LIFETIME: i64 = 15 * 60;

#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub sessions: Arc<dyn SessionStore>,
    pub clock: Arc<dyn Clock>,
    pub remote: Arc<RemoteKeys>,
    /// The Logout service: ends sessions and tells the apps.
    pub logout: Arc<Logout>,
    /// Latch's issuer, without a trailing slash.
    pub issuer: String,
}

pub fn configure(deps: Deps) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.service(
            web::resource(PATH)
                .wrap(actix_web::middleware::from_fn(count_request))
                .app_data(web::Data::new(deps))
                .app_data(web::Data::new(UnknownConnections::default()))
                .app_data(web::PayloadConfig::new(MAX_BODY))
                .route(web::post().to(post_global_token_revocation)),
        );
    }
}

/// Counts every request the endpoint answers (`latch_gtr_requests_total`), by its status: those
/// refused before the handler runs (a body over [`MAX_BODY`], another method) included.
async fn count_request(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let res = next.call(req).await;
    let status = match &res {
        Ok(r) => r.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    latch_core::metrics::gtr_request(gtr_result(status));
    res
}

/// The `result` label of an answer's status.
pub fn gtr_result(status: StatusCode) -> latch_core::metrics::GtrResult {
    use latch_core::metrics::GtrResult;
    match status.as_u16() {
        200..=299 => GtrResult::Accepted,
        404 => GtrResult::UnknownUser,
        500..=599 => GtrResult::Error,
        _ => GtrResult::Rejected,
    }
}

/// The endpoint URL for a connection: the `aud` its tokens must carry.
pub fn endpoint_url(issuer: &str, connection: &ConnectionName) -> String {
    latch_core::paths::global_token_revocation_url(issuer, connection.as_str())
}

/// Why a request was refused: the status, and a reason for the log only.
#[derive(Debug)]
pub struct Refusal(pub StatusCode, pub String);

fn refuse(status: StatusCode, why: impl Into<String>) -> Refusal {
    Refusal(status, why.into())
}

/// What a connection expects of its GTR tokens.
struct Expect {
    iss: String,
    sub: String,
    jwks: JwksAt,
}

enum JwksAt {
    Url(String),
    Discovery(String),
}

fn opt<'a>(c: &'a Connection, k: &str) -> Option<&'a str> {
    c.options
        .get(k)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
}

fn expectations(c: &Connection) -> Option<Expect> {
    if c.options.get("global_token_revocation_enabled") != Some(&Value::Bool(true)) {
        return None;
    }
    let base_iss = match c.strategy {
        Strategy::Okta => {
            let url = latch_core::validate::okta_domain("domain", opt(c, "domain")?).ok()?;
            Some(url.as_str().trim_end_matches('/').to_owned())
        }
        Strategy::Oidc => opt(c, "issuer").map(|i| i.trim_end_matches('/').to_owned()),
        Strategy::Samlp => None,
        Strategy::Auth0 => return None,
    };
    let iss = opt(c, "global_token_revocation_jwt_iss")
        .map(|s| s.trim_end_matches('/').to_owned())
        .or(base_iss)?;
    let sub = opt(c, "global_token_revocation_jwt_sub")
        .or_else(|| opt(c, "client_id"))?
        .to_owned();
    let jwks = match (opt(c, "jwks_uri"), c.strategy, opt(c, "discovery_url")) {
        (Some(u), _, _) => JwksAt::Url(u.to_owned()),
        (None, Strategy::Oidc, Some(d)) if opt(c, "global_token_revocation_jwt_iss").is_none() => {
            JwksAt::Discovery(d.to_owned())
        }
        _ => JwksAt::Discovery(format!("{iss}/.well-known/openid-configuration")),
    };
    Some(Expect { iss, sub, jwks })
}

impl Expect {
    fn source(&self) -> KeySource<'_> {
        match &self.jwks {
            JwksAt::Url(u) => KeySource::Jwks(u),
            JwksAt::Discovery(d) => KeySource::Discovery(d),
        }
    }
}

/// Verifies the bearer token with the issuer's keys (`latch_remote`); returns its claims.
async fn verify(
    deps: &Deps,
    req: &HttpRequest,
    conn: &Connection,
    e: &Expect,
) -> Result<Map<String, Value>, Refusal> {
    let token = latch_http::auth::bearer(req)
        .ok_or_else(|| refuse(StatusCode::UNAUTHORIZED, "no bearer token"))?;
    let aud = endpoint_url(&deps.issuer, &conn.name);
    let want = Expected {
        iss: &e.iss,
        aud: &aud,
        sub: &e.sub,
    };
    let now = deps.clock.now().unix_timestamp();
    let claims = deps
        .remote
        .verify(token, e.source(), &rules(&want, now))
        .await
        .map_err(unauthorized)?;
    check_sub(claims, &want)
}

fn unauthorized(e: VerifyError) -> Refusal {
    refuse(StatusCode::UNAUTHORIZED, e.to_string())
}

/// The bearer token's header, checked before any key is fetched: an allowed asymmetric
/// algorithm and `typ: global-token-revocation+jwt`. Pure; `fuzz/` fuzzes it.
pub fn check_header(token: &str) -> Result<Header, Refusal> {
    latch_remote::check_header(token, Typ::Required(TYP), REMOTE_ALGORITHMS).map_err(unauthorized)
}

/// What a connection's GTR tokens must say (see [`check_token`]).
pub struct Expected<'a> {
    pub iss: &'a str,
    /// The endpoint URL ([`endpoint_url`]).
    pub aud: &'a str,
    /// The app instance id.
    pub sub: &'a str,
}

/// Claims every GTR token carries.
const REQUIRED: &[&str] = &["iss", "aud", "exp", "iat", "jti", "sub"];

/// What the shared verifier checks of a GTR token at `now` (Unix seconds): everything but
/// which `sub` ([`check_sub`]).
fn rules<'a>(want: &'a Expected<'a>, now: i64) -> Expectations<'a> {
    Expectations {
        issuers: std::slice::from_ref(&want.iss),
        audiences: std::slice::from_ref(&want.aud),
        typ: Typ::Required(TYP),
        algorithms: REMOTE_ALGORITHMS,
        required: REQUIRED,
        lifetime: Lifetime {
            leeway: SKEW,
            max_age: None,
            max_lifetime: Some(MAX_LIFETIME),
        },
        now,
    }
}

/// Checks a token whose header passed [`check_header`]: the signature by `key` (the issuer's
/// `jwk`, used with its own algorithm), `iss`, `aud`, the times against `now` (Unix seconds),
/// `jti` and `sub`, as `latch_remote` does for every foreign token. Returns the claims. Pure;
/// `fuzz/` fuzzes it.
pub fn check_token(
    token: &str,
    header: &Header,
    jwk: &Jwk,
    key: &DecodingKey,
    want: &Expected<'_>,
    now: i64,
) -> Result<Map<String, Value>, Refusal> {
    latch_remote::check_key_algorithm(jwk, header.alg).map_err(|e| unauthorized(e.into()))?;
    let claims =
        latch_remote::check_claims(token, header, key, &rules(want, now)).map_err(unauthorized)?;
    check_sub(claims, want)
}

/// A valid token for another app instance may not revoke here.
fn check_sub(
    claims: Map<String, Value>,
    want: &Expected<'_>,
) -> Result<Map<String, Value>, Refusal> {
    if claims.get("sub").and_then(Value::as_str) != Some(want.sub) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "sub is not this connection's app instance id",
        ));
    }
    Ok(claims)
}

/// The subject identifier (RFC 9493) from Okta's `subject` or the draft's `sub_id`.
#[derive(Debug)]
pub enum Subject {
    IssSub { iss: String, sub: String },
    Email(String),
}

fn subject(req: &HttpRequest, body: &[u8]) -> Result<Subject, Refusal> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    parse_body(ct, body)
}

/// The request body as the endpoint reads it: `application/json`, one of `subject`/`sub_id`,
/// format `iss_sub` or `email`, no extra members. Pure; `fuzz/` fuzzes it.
pub fn parse_body(content_type: Option<&str>, body: &[u8]) -> Result<Subject, Refusal> {
    let bad = |why: &str| refuse(StatusCode::BAD_REQUEST, why.to_owned());
    let ct = content_type.unwrap_or("");
    if ct.split(';').next().map(str::trim) != Some("application/json") {
        return Err(bad("content type is not application/json"));
    }
    let v: Value = serde_json::from_slice(body).map_err(|_| bad("malformed JSON"))?;
    let obj = v.as_object().ok_or_else(|| bad("body is not an object"))?;
    let id = match (obj.get("subject"), obj.get("sub_id")) {
        (Some(s), None) | (None, Some(s)) => s,
        (Some(_), Some(_)) => return Err(bad("both subject and sub_id")),
        (None, None) => return Err(bad("no subject")),
    };
    let id = id
        .as_object()
        .ok_or_else(|| bad("subject is not an object"))?;
    let s = |k: &str| id.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
    let only = |keys: &[&str]| id.keys().all(|k| keys.contains(&k.as_str()));
    match s("format") {
        Some("iss_sub") if only(&["format", "iss", "sub"]) => match (s("iss"), s("sub")) {
            (Some(iss), Some(sub)) => Ok(Subject::IssSub {
                iss: iss.to_owned(),
                sub: sub.to_owned(),
            }),
            _ => Err(bad("iss_sub needs iss and sub")),
        },
        Some("email") if only(&["format", "email"]) => s("email")
            .map(|e| Subject::Email(e.to_lowercase()))
            .ok_or_else(|| bad("email format needs email")),
        Some("iss_sub" | "email") => Err(bad("unknown members in the subject identifier")),
        Some(_) => Err(bad("unsupported subject format")),
        None => Err(bad("subject has no format")),
    }
}

async fn find_user(deps: &Deps, conn: &Connection, s: &Subject) -> Result<Option<User>, Refusal> {
    let err = |e: latch_core::StoreError| refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    match s {
        Subject::IssSub { iss, sub } => {
            let trimmed = iss.trim_end_matches('/');
            let mut found = deps
                .store
                .find_identity_with_user(&conn.id, iss, sub)
                .await
                .map_err(err)?;
            if found.is_none() && trimmed != iss {
                found = deps
                    .store
                    .find_identity_with_user(&conn.id, trimmed, sub)
                    .await
                    .map_err(err)?;
            }
            // A user a SCIM client provisioned who has not signed in yet: their identity's
            // issuer is still SCIM's (the token's `iss` was checked against the connection's).
            if found.is_none() {
                found = deps
                    .store
                    .find_identity_with_user(&conn.id, latch_core::model::SCIM_ISSUER, sub)
                    .await
                    .map_err(err)?;
            }
            Ok(found.map(|(_, u)| u))
        }
        Subject::Email(email) => {
            for u in deps.store.find_users_by_email(email).await.map_err(err)? {
                if deps
                    .store
                    .list_identities(&u.user_id)
                    .await
                    .map_err(err)?
                    .iter()
                    .any(|i| i.connection_id == conn.id)
                {
                    return Ok(Some(u));
                }
            }
            Ok(None)
        }
    }
}

fn answer(status: StatusCode) -> HttpResponse {
    let mut r = HttpResponse::build(status);
    r.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    if status == StatusCode::UNAUTHORIZED {
        r.insert_header((
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"latch\", error=\"invalid_token\""),
        ));
    }
    if status.is_client_error() || status.is_server_error() {
        let code = match status.as_u16() {
            400 => "invalid_request",
            401 => "invalid_token",
            403 => "insufficient_scope",
            404 => "not_found",
            413 => "invalid_request",
            _ => "server_error",
        };
        return r.json(json!({ "error": code }));
    }
    r.finish()
}

/// Refusals for connections that do not exist are counted, not logged one by one (the name is
/// the caller's to choose, so each call could otherwise write a row of its text): the first
/// refusal, then at most one per this interval, is logged as a `universal_logout_failed` event
/// carrying the count since the previous one.
pub const UNKNOWN_CONNECTION_LOG_INTERVAL: time::Duration = time::Duration::minutes(1);

/// The count of refusals for unknown connections not yet logged (per application instance).
#[derive(Default)]
pub struct UnknownConnections(std::sync::Mutex<UnknownTally>);

#[derive(Default)]
struct UnknownTally {
    logged_at: Option<time::OffsetDateTime>,
    pending: u64,
}

impl UnknownConnections {
    /// Counts one refusal at `now`; the count to log (this refusal included) when an event is
    /// due.
    fn count(&self, now: time::OffsetDateTime) -> Option<u64> {
        let mut t = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        t.pending += 1;
        if t.logged_at
            .is_some_and(|at| now < at + UNKNOWN_CONNECTION_LOG_INTERVAL)
        {
            return None;
        }
        t.logged_at = Some(now);
        Some(std::mem::take(&mut t.pending))
    }

    async fn refused(&self, deps: &Deps, req: &HttpRequest, name: &str) {
        let Some(n) = self.count(deps.clock.now()) else {
            return;
        };
        tracing::info!(
            refusals = n,
            "global token revocation refused for unknown connections"
        );
        // A sample of the names called, only when it could be a connection name (1-128 letters,
        // digits and hyphens): enough to spot a misconfigured IdP, too little to break or flood
        // the log.
        let sample = latch_core::validate::connection_name("connection", name)
            .is_ok()
            .then_some(name);
        log(
            deps,
            req,
            "universal_logout_failed",
            "Global token revocation refused: unknown connection",
            None,
            None,
            json!({
                "status": StatusCode::UNAUTHORIZED.as_u16(),
                "reason": "unknown connection",
                "unknown_connection_refusals": n,
                "sample_connection": sample,
            }),
        )
        .await;
    }
}

async fn log(
    deps: &Deps,
    req: &HttpRequest,
    kind: &str,
    description: &str,
    conn: Option<&ConnectionName>,
    user: Option<&User>,
    details: Value,
) {
    let e = LogEvent {
        user_id: user.map(|u| u.user_id.clone()),
        connection: conn.cloned(),
        ip: latch_http::client_ip(req).map(|i| i.to_string()),
        details,
        ..LogEvent::new(deps.clock.now(), kind, description)
    };
    let _ = deps.store.insert_log(&e).await;
}

pub async fn post_global_token_revocation(
    deps: web::Data<Deps>,
    unknown: web::Data<UnknownConnections>,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let name = name.into_inner();
    // An unknown connection, or one without Universal Logout, looks like a bad credential. A
    // name no connection can have is not looked up.
    let found = match latch_core::validate::connection_name("connection", &name) {
        Ok(()) => {
            deps.store
                .find_connection_by_name(&ConnectionName::new(&name))
                .await
        }
        Err(_) => Ok(None),
    };
    let conn = match found {
        Ok(Some(conn)) => conn,
        Ok(None) => {
            unknown.refused(&deps, &req, &name).await;
            return answer(StatusCode::UNAUTHORIZED);
        }
        Err(e) => {
            tracing::warn!(error = %e, "global token revocation: connection lookup failed");
            return answer(StatusCode::SERVICE_UNAVAILABLE);
        }
    };
    match handle(&deps, &req, &conn, &body).await {
        Ok(resp) => resp,
        Err(Refusal(status, why)) => {
            // A known connection's refusals are its admin's signal: each one is logged.
            let why = log_text(&why, LOG_REASON_MAX);
            tracing::info!(connection = %conn.name, status = status.as_u16(), reason = %why, "global token revocation refused");
            log(
                &deps,
                &req,
                "universal_logout_failed",
                "Global token revocation refused",
                Some(&conn.name),
                None,
                json!({ "status": status.as_u16(), "reason": why }),
            )
            .await;
            answer(status)
        }
    }
}

async fn handle(
    deps: &Deps,
    req: &HttpRequest,
    conn: &Connection,
    body: &[u8],
) -> Result<HttpResponse, Refusal> {
    let expect = expectations(conn).ok_or_else(|| {
        refuse(
            StatusCode::UNAUTHORIZED,
            "Universal Logout is not enabled on this connection",
        )
    })?;
    let claims = verify(deps, req, conn, &expect).await?;
    let subject = subject(req, body)?;
    // Replay: each jti once, remembered until the token could no longer be accepted.
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    let remember_until = time::OffsetDateTime::from_unix_timestamp(exp.saturating_add(SKEW))
        .unwrap_or(deps.clock.now());
    let replay_scope = format!("gtr-jti:{}", conn.id);
    let format = match &subject {
        Subject::IssSub { .. } => "iss_sub",
        Subject::Email(_) => "email",
    };
    // The replay check and the user's read (a read only: nothing changes before both are
    // known) at the same time.
    let remember = async {
        deps.sessions
            .remember_once(&replay_scope, jti, remember_until, deps.clock.now())
            .await
            .map_err(|e| refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
    };
    let (first, found) = tokio::join!(remember, find_user(deps, conn, &subject));
    let first = first?;
    // Past this point a 503 is Latch's failure, not the token's: the `jti` is forgotten again so
    // Okta's retry of the same token is not refused as a replay.
    let unavailable = |why: String| async {
        let _ = deps.sessions.forget_once(&replay_scope, jti).await;
        refuse(StatusCode::SERVICE_UNAVAILABLE, why)
    };
    if !first {
        return Err(refuse(StatusCode::UNAUTHORIZED, "replayed jti"));
    }
    let found = match found {
        Err(Refusal(status, why)) if status == StatusCode::SERVICE_UNAVAILABLE => {
            return Err(unavailable(why).await);
        }
        other => other?,
    };
    let Some(user) = found else {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            format!("no user for the {format} subject in this connection"),
        ));
    };
    let ended = deps
        .logout
        .end(
            Target::User(user.user_id.clone()),
            TokenPolicy::AllOfUser,
            LogoutInitiator::IdpLogout,
            Urgency::Background,
        )
        .await;
    let out = match ended {
        Ok(out) => out,
        Err(e) => return Err(unavailable(e.to_string()).await),
    };
    log(
        deps,
        req,
        "universal_logout_succeeded",
        "Global token revocation: user signed out everywhere",
        Some(&conn.name),
        Some(&user),
        json!({
            "caller": { "iss": claims.get("iss"), "sub": claims.get("sub"), "jti": jti },
            "subject_format": format,
            "subject": match &subject {
                Subject::IssSub { iss, sub } => json!({"format": "iss_sub", "iss": iss, "sub": sub}),
                Subject::Email(e) => json!({"format": "email", "email": e}),
            },
            "result": "204: sessions ended, tokens revoked, apps notified",
            "sessions_ended": out.sessions.len(),
            "refresh_tokens_revoked": out.revoked_tokens.len(),
            "deliveries_enqueued": out.deliveries.len(),
            "delivery_ids": out.deliveries.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            "TotalOidcLogoutRequests": latch_core::logout::oidc_logout_requests(&out.deliveries),
            "TotalGtrRequests": latch_core::logout::gtr_requests(&out.deliveries),
            "initiator": latch_core::model::LogoutInitiator::IdpLogout,
            "TotalSamlLogoutRequests": 0,
            "saml_unreachable": out.saml_unreachable_without_browser(),
        }),
    )
    .await;
    Ok(answer(StatusCode::NO_CONTENT))
}
