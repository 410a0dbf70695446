//! Upstream back-channel logout: an `okta` or `oidc` connection's IdP POSTs an OpenID Connect
//! Back-Channel Logout token to `POST /login/backchannel-logout/{connection_name}`; Latch ends
//! the matching sessions (the `sub`'s sessions through that connection, narrowed to the upstream
//! `sid` when the token has one; with a `sid` and no `sub`, the session store's upstream-sid
//! index names the user) and tells its own apps.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use jsonwebtoken::{DecodingKey, Header};
use latch_core::connection_options::OidcOptions;
use latch_core::logout::{Logout, Target, TokenPolicy, Urgency};
use latch_core::model::{
    Connection, LOG_REASON_MAX, LogEvent, LogoutInitiator, Strategy, log_text,
};
use latch_core::session::SessionStore;
use latch_core::store::Store;
use latch_core::{Clock, ConnectionName};
use latch_remote::{Expectations, KeySource, Lifetime, REMOTE_ALGORITHMS, RemoteKeys, Typ};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The path, with `{connection_name}`.
pub const PATH: &str = latch_core::paths::BACKCHANNEL_LOGOUT;
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
const SKEW: i64 = 120;
/// Oldest accepted `iat`, in seconds before now.
const MAX_AGE: i64 = 600;

#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub sessions: Arc<dyn SessionStore>,
    pub clock: Arc<dyn Clock>,
    pub remote: Arc<RemoteKeys>,
    /// The Logout service: ends sessions and tells the apps.
    pub logout: Arc<Logout>,
}

pub fn configure(deps: Deps) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.service(
            web::resource(PATH)
                .app_data(web::Data::new(deps))
                .app_data(web::FormConfig::default().limit(16 * 1024))
                .route(web::post().to(post_backchannel_logout)),
        );
    }
}

/// The URL an admin gives the IdP for a connection.
pub fn url_for(issuer: &str, connection: &ConnectionName) -> String {
    latch_core::paths::backchannel_logout_url(issuer, connection.as_str())
}

#[derive(Deserialize)]
pub struct Form {
    logout_token: Option<String>,
}

/// Latch could not carry out a logout it accepted (or could not check one): a 503, so the IdP
/// retries, logged once with what failed.
fn unavailable(conn: &ConnectionName, step: &str, e: &dyn std::fmt::Display) -> HttpResponse {
    tracing::error!(connection = %conn, step, error = %e, "upstream back-channel logout failed");
    HttpResponse::ServiceUnavailable()
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}

/// Every refusal, whatever its cause (an unknown connection, one without back-channel logout, a
/// missing, invalid or replayed token): the spec's 400 with `Cache-Control: no-store`, and one
/// body, so the answer does not tell which connections exist.
fn refused() -> HttpResponse {
    HttpResponse::BadRequest()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({
            "error": "invalid_request",
            "error_description": "the logout token is invalid",
        }))
}

/// The `typ` of logout tokens: recommended, not required; when present, `logout+jwt` (or `JWT`).
const TYP: Typ<'static> = Typ::IfPresent(&["logout+jwt", "JWT"]);
/// Claims every logout token carries (`exp` is optional; a `sub` or a `sid`, see
/// [`check_logout_claims`]).
const REQUIRED: &[&str] = &["iss", "aud", "iat", "jti"];

/// What the shared verifier checks of a logout token at `now` (Unix seconds): `issuers` (the
/// connection's issuer, with and without a trailing slash), `audiences` (its `client_id`), `iat`
/// at most [`MAX_AGE`] old, `exp` when present, a `jti`.
fn expectations<'a>(
    issuers: &'a [&'a str],
    audiences: &'a [&'a str],
    now: i64,
) -> Expectations<'a> {
    Expectations {
        issuers,
        audiences,
        typ: TYP,
        algorithms: REMOTE_ALGORITHMS,
        required: REQUIRED,
        lifetime: Lifetime {
            leeway: SKEW,
            max_age: Some(MAX_AGE),
            max_lifetime: None,
        },
        now,
    }
}

async fn verify(deps: &Deps, conn: &Connection, token: &str) -> Result<Map<String, Value>, String> {
    let o = OidcOptions::from_connection(conn).map_err(|e| e.to_string())?;
    let (issuer, client_id) = (o.issuer.as_str(), o.client_id.as_str());
    // The well-known path is the standard's, the one Latch serves too.
    let discovery = o
        .discovery_url
        .unwrap_or_else(|| format!("{issuer}{}", latch_core::paths::DISCOVERY));
    let source = match &o.jwks_uri {
        Some(u) => KeySource::Jwks(u),
        None => KeySource::Discovery(&discovery),
    };
    let slash = format!("{issuer}/");
    let issuers = [issuer, slash.as_str()];
    let now = deps.clock.now().unix_timestamp();
    let claims = deps
        .remote
        .verify(token, source, &expectations(&issuers, &[client_id], now))
        .await
        .map_err(|e| e.to_string())?;
    check_logout_claims(claims)
}

/// A logout token's header, checked before any key is fetched: an allowed asymmetric
/// algorithm, and `typ` (recommended, not required) `logout+jwt` when present. Pure; `fuzz/`
/// fuzzes it.
pub fn check_header(token: &str) -> Result<Header, String> {
    latch_remote::check_header(token, TYP, REMOTE_ALGORITHMS).map_err(|e| e.to_string())
}

/// Checks a logout token whose header passed [`check_header`]: the signature by `key`, `iss`
/// (the connection's `issuer`), `aud` (its `client_id`), `iat` and `exp` against `now` (Unix
/// seconds), a `jti` (as `latch_remote` does for every foreign token), then
/// [`check_logout_claims`]. Returns the claims. Pure; `fuzz/` fuzzes it.
pub fn check_token(
    token: &str,
    header: &Header,
    key: &DecodingKey,
    issuer: &str,
    client_id: &str,
    now: i64,
) -> Result<Map<String, Value>, String> {
    let slash = format!("{issuer}/");
    let (issuers, audiences) = ([issuer, slash.as_str()], [client_id]);
    let want = expectations(&issuers, &audiences, now);
    let claims =
        latch_remote::check_claims(token, header, key, &want).map_err(|e| e.to_string())?;
    check_logout_claims(claims)
}

/// What makes a verified token a logout token: the back-channel event, no `nonce`, a `sub` or a
/// `sid`.
fn check_logout_claims(c: Map<String, Value>) -> Result<Map<String, Value>, String> {
    if c.get("events")
        .and_then(|e| e.get(EVENT))
        .is_none_or(|e| !e.is_object())
    {
        return Err("no back-channel logout event".into());
    }
    if c.contains_key("nonce") {
        return Err("a logout token must not have a nonce".into());
    }
    if c.get("sub").is_none() && c.get("sid").is_none() {
        return Err("neither sub nor sid".into());
    }
    Ok(c)
}

pub async fn post_backchannel_logout(
    deps: web::Data<Deps>,
    name: web::Path<String>,
    form: web::Form<Form>,
) -> HttpResponse {
    // A name no connection can have is not looked up.
    if latch_core::validate::connection_name("connection", &name).is_err() {
        return refused();
    }
    let name = ConnectionName::new(name.into_inner());
    let conn = match deps.store.find_connection_by_name(&name).await {
        Ok(Some(c)) => c,
        Ok(None) => return refused(),
        Err(e) => return unavailable(&name, "reading the connection", &e),
    };
    if !matches!(conn.strategy, Strategy::Okta | Strategy::Oidc) {
        return refused();
    }
    let Some(token) = form.into_inner().logout_token.filter(|t| !t.is_empty()) else {
        return refused();
    };
    let claims = match verify(&deps, &conn, &token).await {
        Ok(c) => c,
        Err(why) => {
            // The reason can quote the token (an undecodable header): cut short.
            let why = log_text(&why, LOG_REASON_MAX);
            tracing::info!(connection = %name, reason = %why, "upstream back-channel logout refused");
            log(
                &deps,
                &name,
                "federated_logout_failed",
                "Upstream back-channel logout refused",
                None,
                json!({"reason": why}),
            )
            .await;
            return refused();
        }
    };
    // Each token once: its `jti` (unique per issuer, RFC 7519), remembered for as long as the
    // token could be accepted (until `exp`, at most `MAX_AGE` after `iat`), plus the skew.
    let str_claim = |k: &str| claims.get(k).and_then(Value::as_str);
    let (Some(iss), Some(jti), Some(iat)) = (
        str_claim("iss"),
        str_claim("jti"),
        claims.get("iat").and_then(Value::as_i64),
    ) else {
        return refused();
    };
    let accepted_until = claims
        .get("exp")
        .and_then(Value::as_i64)
        .map_or(iat + MAX_AGE, |exp| {
            exp.saturating_add(SKEW).min(iat + MAX_AGE)
        });
    let until = time::OffsetDateTime::from_unix_timestamp(accepted_until + SKEW)
        .unwrap_or_else(|_| deps.clock.now() + time::Duration::seconds(MAX_AGE + 2 * SKEW));
    let replay_scope = format!("upstream-bcl:{}", iss.trim_end_matches('/'));
    // Past this point a 503 is Latch's failure, not the token's: the `jti` is forgotten again so
    // the IdP's retry of the same token is not refused as a replay.
    let failed = |step: &'static str, e: &dyn std::fmt::Display| {
        let e = e.to_string();
        let (deps, scope, name) = (&deps, &replay_scope, &name);
        async move {
            let _ = deps.sessions.forget_once(scope, jti).await;
            unavailable(name, step, &e)
        }
    };
    match deps
        .sessions
        .remember_once(&replay_scope, jti, until, deps.clock.now())
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            log(
                &deps,
                &name,
                "federated_logout_failed",
                "Upstream back-channel logout refused",
                None,
                json!({"reason": "replayed jti"}),
            )
            .await;
            return refused();
        }
        Err(e) => return unavailable(&name, "remembering the jti", &e),
    }
    let sid = claims.get("sid").and_then(Value::as_str);
    let now = deps.clock.now();
    let user_id = match (claims.get("sub").and_then(Value::as_str), sid) {
        (Some(sub), _) => {
            let iss = claims
                .get("iss")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_owned();
            match deps.store.find_identity(&conn.id, &iss, sub).await {
                Ok(i) => i.map(|i| i.user_id),
                Err(e) => return failed("finding the identity", &e).await,
            }
        }
        // A `sid` alone: the session store's upstream-sid index names the user.
        (None, Some(sid)) => match deps.sessions.user_of_upstream(&conn.name, sid, now).await {
            Ok(u) => u,
            Err(e) => return failed("finding the upstream sid's user", &e).await,
        },
        (None, None) => return refused(),
    };
    // An unknown user (or sid) has no sessions: nothing to do, and that is a success.
    let Some(user_id) = user_id else {
        return HttpResponse::Ok()
            .insert_header(("Cache-Control", "no-store"))
            .finish();
    };

    let target = Target::UserAtConnection {
        user: user_id.clone(),
        connection: conn.name.clone(),
        upstream: sid.map(|s| latch_core::logout::UpstreamMatch::Sid(s.to_owned())),
    };
    let out = match deps
        .logout
        .end(
            target,
            TokenPolicy::SessionBound,
            LogoutInitiator::IdpLogout,
            Urgency::Background,
        )
        .await
    {
        Ok(out) => out,
        Err(e) => return failed("ending the sessions", &e).await,
    };
    let (ended, notified) = (out.sessions.len(), out.deliveries.len());
    log(&deps, &name, "slo", "Upstream back-channel logout", Some(&user_id), json!({
        "initiator": LogoutInitiator::IdpLogout,
        "upstream_sid": sid, "sessions_ended": ended, "TotalOidcLogoutRequests": notified, "TotalSamlLogoutRequests": 0,
        "saml_unreachable": out.saml_unreachable_without_browser(),
    }))
    .await;
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}

async fn log(
    deps: &Deps,
    conn: &ConnectionName,
    kind: &str,
    description: &str,
    user: Option<&latch_core::UserId>,
    details: Value,
) {
    let e = LogEvent {
        user_id: user.cloned(),
        connection: Some(conn.clone()),
        details,
        ..LogEvent::new(deps.clock.now(), kind, description)
    };
    let _ = deps.store.insert_log(&e).await;
}
