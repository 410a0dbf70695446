//! `GET /authorize` and the sign-in form it shows (`POST /login`).
//!
//! Errors follow RFC 6749 §4.1.2.1: while the client or its redirect URI is unknown, an error
//! page (never a redirect); after that, a redirect back to the app with `error` and `state`.

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, LOCATION, RETRY_AFTER};
use actix_web::{HttpRequest, HttpResponse, web};
use latch_core::connector::{Limit, SignInContext, SignInError};
use latch_core::model::{Client, DATABASE_CONNECTION, GrantType, Strategy, User};
use latch_core::session::{LoginTransaction, Session};
use latch_core::*;
use latch_http::client_ip;
use serde::Deserialize;
use serde_json::json;
use url::Url;

use crate::issue::{self, AuthRequest};
use crate::pages::{self, LoginPage};
use crate::{Deps, cookies, paths};

#[derive(Debug, Deserialize)]
pub struct AuthorizeQuery {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    prompt: Option<String>,
    max_age: Option<String>,
    login_hint: Option<String>,
    connection: Option<String>,
    response_mode: Option<String>,
    request: Option<String>,
    request_uri: Option<String>,
}

/// A redirect back to the app with an error (the client and redirect URI are known good).
fn error_redirect(
    redirect_uri: &str,
    error: &str,
    description: &str,
    state: Option<&str>,
) -> HttpResponse {
    let mut u = match Url::parse(redirect_uri) {
        Ok(u) => u,
        Err(_) => {
            return pages::error(
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                "The redirect URI is invalid.",
            );
        }
    };
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("error", error)
            .append_pair("error_description", description);
        if let Some(s) = state {
            q.append_pair("state", s);
        }
    }
    HttpResponse::Found()
        .insert_header((LOCATION, u.as_str()))
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}

fn code_redirect(
    redirect_uri: &str,
    code: &str,
    state: Option<&str>,
    issuer: &str,
) -> HttpResponse {
    let Ok(mut u) = Url::parse(redirect_uri) else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "The redirect URI is invalid.",
        );
    };
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("code", code);
        if let Some(s) = state {
            q.append_pair("state", s);
        }
        // RFC 9207: lets the app check which issuer answered.
        q.append_pair("iss", issuer);
    }
    HttpResponse::Found()
        .insert_header((LOCATION, u.as_str()))
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}

/// Exact, simple string comparison with a registered callback (OAuth 2.0 Security BCP).
pub fn redirect_uri_allowed(client: &Client, uri: &str) -> bool {
    client.callbacks.iter().any(|c| c.as_str() == uri)
}

enum Checked {
    Ok(Box<(AuthRequest, Client)>),
    Page(HttpResponse),
}

async fn check(deps: &Deps, q: AuthorizeQuery) -> Result<Checked, latch_http::ApiError> {
    let bad_page = |m: &str| {
        Ok(Checked::Page(pages::error(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            m,
        )))
    };
    let Some(client_id) = q.client_id.filter(|c| !c.is_empty()) else {
        return bad_page("The request has no client_id.");
    };
    let Some(client) = deps.store.find_client(&ClientId::new(client_id)).await? else {
        return bad_page("The application is not known.");
    };
    let Some(redirect_uri) = q.redirect_uri else {
        return bad_page("The request has no redirect_uri.");
    };
    if !redirect_uri_allowed(&client, &redirect_uri) {
        return bad_page("The redirect_uri is not registered for this application.");
    }
    let state = q.state.as_deref();
    let back = |e: &str, d: &str| Ok(Checked::Page(error_redirect(&redirect_uri, e, d, state)));
    if q.request.is_some() {
        return back(
            "request_not_supported",
            "The request parameter is not supported.",
        );
    }
    if q.request_uri.is_some() {
        return back(
            "request_uri_not_supported",
            "The request_uri parameter is not supported.",
        );
    }
    if q.response_mode.as_deref().is_some_and(|m| m != "query") {
        return back("invalid_request", "Only response_mode=query is supported.");
    }
    match q.response_type.as_deref() {
        Some("code") => {}
        None => return back("invalid_request", "response_type is required."),
        Some(_) => {
            return back(
                "unsupported_response_type",
                "Only response_type=code is supported.",
            );
        }
    }
    if !client.grant_types.contains(&GrantType::AuthorizationCode) {
        return back(
            "unauthorized_client",
            "This application may not use the authorization code flow.",
        );
    }
    match (
        q.code_challenge.as_deref(),
        q.code_challenge_method.as_deref(),
    ) {
        (Some(_), Some("S256")) => {}
        (Some(_), _) => return back("invalid_request", "code_challenge_method must be S256."),
        (None, Some(_)) => {
            return back(
                "invalid_request",
                "code_challenge is required with code_challenge_method.",
            );
        }
        (None, None) if client.app_type.is_public() => {
            return back(
                "invalid_request",
                "PKCE (code_challenge with S256) is required for this application.",
            );
        }
        (None, None) => {}
    }
    if let Some(c) = &q.code_challenge
        && (c.len() != 43
            || !c
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        return back(
            "invalid_request",
            "code_challenge must be a base64url SHA-256 digest.",
        );
    }
    let scope = q.scope.unwrap_or_default();
    let known = ["openid", "profile", "email", "offline_access"];
    let scope: Vec<&str> = scope
        .split_whitespace()
        .filter(|s| known.contains(s))
        .collect();
    let scope = scope.join(" ");
    let max_age = match q.max_age.as_deref() {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => return back("invalid_request", "max_age must be a non-negative integer."),
        },
    };
    let prompt = q.prompt.filter(|p| !p.is_empty());
    if let Some(p) = &prompt {
        let values: Vec<&str> = p.split_whitespace().collect();
        if values.contains(&"none") && values.len() > 1 {
            return back(
                "invalid_request",
                "prompt=none cannot be combined with other values.",
            );
        }
        if values
            .iter()
            .any(|v| !["none", "login", "consent", "select_account"].contains(v))
        {
            return back("invalid_request", "Unsupported prompt value.");
        }
    }
    // The connection: named; else the one whose domain aliases match the login hint's email;
    // else the database connection; else an enterprise one.
    let chosen = q.connection.is_none();
    let name = match q.connection {
        Some(n) => ConnectionName::new(n),
        None => match choose_connection(deps, &client.client_id, q.login_hint.as_deref()).await? {
            Some(c) => c.name,
            None => {
                return back(
                    "invalid_request",
                    "No connection is enabled for this application.",
                );
            }
        },
    };
    let connection = deps.store.find_connection_by_name(&name).await?;
    let Some(connection) = connection.filter(|c| c.enabled_clients.contains(&client.client_id))
    else {
        return back(
            "invalid_request",
            "The connection is not enabled for this application.",
        );
    };
    Ok(Checked::Ok(Box::new((
        AuthRequest {
            client_id: client.client_id.clone(),
            redirect_uri,
            scope,
            state: q.state,
            nonce: q.nonce,
            code_challenge: q.code_challenge,
            prompt,
            max_age,
            login_hint: q.login_hint,
            connection: connection.name,
            chosen,
        },
        client,
    ))))
}

/// Connections enabled for a client that a user can sign in through today, by name.
async fn sign_in_connections(
    deps: &Deps,
    client: &ClientId,
) -> Result<Vec<latch_core::model::Connection>, latch_http::ApiError> {
    let mut v: Vec<_> = deps
        .store
        .list_connections()
        .await?
        .into_iter()
        .filter(|c| c.enabled_clients.contains(client))
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(v)
}

/// The enterprise connection whose `domain_aliases` contain the email's domain.
fn by_email_domain<'a>(
    conns: &'a [latch_core::model::Connection],
    email: &str,
) -> Option<&'a latch_core::model::Connection> {
    let domain = email.rsplit_once('@')?.1.trim().to_ascii_lowercase();
    conns
        .iter()
        .filter(|c| c.strategy.is_enterprise())
        .find(|c| {
            c.options
                .get("domain_aliases")
                .and_then(serde_json::Value::as_array)
                .is_some_and(|a| {
                    a.iter()
                        .any(|d| d.as_str().is_some_and(|d| d.eq_ignore_ascii_case(&domain)))
                })
        })
}

async fn choose_connection(
    deps: &Deps,
    client: &ClientId,
    login_hint: Option<&str>,
) -> Result<Option<latch_core::model::Connection>, latch_http::ApiError> {
    let conns = sign_in_connections(deps, client).await?;
    if let Some(c) = login_hint.and_then(|h| by_email_domain(&conns, h)) {
        return Ok(Some(c.clone()));
    }
    Ok(conns
        .iter()
        .find(|c| c.name.as_str() == DATABASE_CONNECTION && c.strategy == Strategy::Auth0)
        .or_else(|| conns.first())
        .cloned())
}

/// "Continue with …" links for the other connections a user may pick (only when the app did
/// not name one).
async fn alternatives(
    deps: &Deps,
    req: &HttpRequest,
    r: &AuthRequest,
) -> Result<Vec<(String, String)>, latch_http::ApiError> {
    if !r.chosen {
        return Ok(vec![]);
    }
    Ok(sign_in_connections(deps, &r.client_id)
        .await?
        .iter()
        .filter(|c| c.strategy.is_enterprise() && c.name != r.connection)
        .map(|c| choice(req, c))
        .collect())
}

/// A "Continue with …" entry: the connection's label, and this authorization request again
/// with `connection` set to it.
fn choice(req: &HttpRequest, c: &latch_core::model::Connection) -> (String, String) {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes())
        .filter(|(k, _)| k != "connection")
    {
        query.append_pair(&k, &v);
    }
    query.append_pair("connection", c.name.as_str());
    let label = c.display_name.clone().unwrap_or_else(|| c.name.to_string());
    (label, format!("{}?{}", paths::AUTHORIZE, query.finish()))
}

/// The live session of this browser, if any.
pub async fn current_session(
    deps: &Deps,
    req: &HttpRequest,
) -> Result<Option<Session>, latch_http::ApiError> {
    let Some(secret) = cookies::session(req) else {
        return Ok(None);
    };
    let now = deps.clock.now();
    Ok(deps
        .sessions
        .touch_session(&secret.id(), now, deps.settings.session_idle)
        .await?)
}

/// Shows the sign-in form for `r`, bound to this browser by a one-time transaction.
#[allow(clippy::too_many_arguments)]
async fn login_form(
    deps: &Deps,
    req: &HttpRequest,
    r: &AuthRequest,
    client: &Client,
    email: &str,
    error: Option<&str>,
    status: StatusCode,
    alternatives: &[(String, String)],
) -> Result<HttpResponse, latch_http::ApiError> {
    let (browser, binding) = cookies::new_binding(req, deps.settings.secure_cookies);
    let now = deps.clock.now();
    let tx = LoginTransaction {
        id: LoginTxId::new(latch_jose::random_token(24)),
        expires_at: now + deps.settings.login_ttl,
        payload: json!({ "request": r, "browser": browser }),
    };
    deps.sessions.insert_login_tx(&tx).await?;
    let mut b = pages::builder(status);
    b.insert_header((
        "Content-Security-Policy",
        pages::csp_with_form_target(r.redirect_uri.as_str()),
    ));
    b.cookie(binding);
    let action = paths::LOGIN;
    Ok(pages::render(
        b,
        &LoginPage {
            app_name: &client.name,
            action,
            tx: tx.id.as_str(),
            email,
            error,
            show_form: true,
            alternatives,
        },
    ))
}

pub async fn get_authorize(
    deps: web::Data<Deps>,
    req: HttpRequest,
    q: web::Query<AuthorizeQuery>,
) -> Result<HttpResponse, latch_http::ApiError> {
    let (r, client) = match check(&deps, q.into_inner()).await? {
        Checked::Ok(b) => *b,
        Checked::Page(p) => return Ok(p),
    };
    let now = deps.clock.now();
    let prompt_login = r
        .prompt
        .as_deref()
        .is_some_and(|p| p.split_whitespace().any(|v| v == "login"));
    let prompt_none = r.prompt.as_deref() == Some("none");
    if let Some(session) = current_session(&deps, &req).await? {
        // Checked arithmetic: `max_age` is the caller's number (up to i64::MAX seconds), and an
        // instant plus that overflows. The session's age never does.
        let fresh = r
            .max_age
            .is_none_or(|m| now - session.auth_time <= time::Duration::seconds(m));
        // Auth0's rule: a session serves any app its connection is enabled for, unless the app
        // named another connection. When Latch chose the connection, the session's decides.
        let same_connection = session.connection == r.connection
            || (r.chosen
                && deps
                    .store
                    .find_connection_by_name(&session.connection)
                    .await?
                    .is_some_and(|c| c.enabled_clients.contains(&client.client_id)));
        let user = deps.store.find_user(&session.user_id).await?;
        if let Some(user) = user.filter(|u| !u.blocked)
            && fresh
            && same_connection
            && !prompt_login
        {
            let code = issue::issue_code(&deps, &session, &r)
                .await
                .map_err(oauth_to_api)?;
            issue::log(
                &deps,
                "s",
                "Single sign-on",
                Some(&user.user_id),
                Some(&client.client_id),
                Some(&session.connection),
                client_ip(&req),
                json!({"sso": true}),
            )
            .await;
            return Ok(code_redirect(
                &r.redirect_uri,
                &code,
                r.state.as_deref(),
                &deps.issuer,
            ));
        }
    }
    if prompt_none {
        return Ok(error_redirect(
            &r.redirect_uri,
            "login_required",
            "The user is not signed in.",
            r.state.as_deref(),
        ));
    }
    let connection = deps.store.find_connection_by_name(&r.connection).await?;
    if let Some(c) = connection.filter(|c| c.strategy.is_enterprise()) {
        // Latch picked it, no hint decided, and there are others: let the user choose.
        let hinted = r.login_hint.as_deref().is_some_and(|h| h.contains('@'));
        let others = alternatives(&deps, &req, &r).await?;
        if r.chosen && !hinted && !others.is_empty() {
            let mut all = others;
            all.insert(0, choice(&req, &c));
            let page = LoginPage {
                app_name: &client.name,
                action: paths::LOGIN,
                tx: "",
                email: "",
                error: None,
                show_form: false,
                alternatives: &all,
            };
            return Ok(pages::render(pages::builder(StatusCode::OK), &page));
        }
        return upstream_redirect(&deps, &req, &r, &c).await;
    }
    let hint = r.login_hint.clone().unwrap_or_default();
    let others = alternatives(&deps, &req, &r).await?;
    login_form(
        &deps,
        &req,
        &r,
        &client,
        &hint,
        None,
        StatusCode::OK,
        &others,
    )
    .await
}

/// Sends the browser to the connection's IdP; the login transaction (its id is the upstream
/// `state`) keeps the app's request, the connector's nonce and PKCE verifier, and the browser
/// binding.
async fn upstream_redirect(
    deps: &Deps,
    req: &HttpRequest,
    r: &AuthRequest,
    connection: &latch_core::model::Connection,
) -> Result<HttpResponse, latch_http::ApiError> {
    let (browser, binding) = cookies::new_binding(req, deps.settings.secure_cookies);
    let tx_id = LoginTxId::new(latch_jose::random_token(24));
    let start = match deps
        .upstream
        .start(connection, &deps.url(paths::CALLBACK), tx_id.as_str())
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(connection = %connection.name, error = %e, "upstream sign-in could not start");
            issue::log(
                deps,
                "f",
                "Failed login: identity provider unavailable",
                None,
                Some(&r.client_id),
                Some(&connection.name),
                client_ip(req),
                json!({"reason": e.to_string()}),
            )
            .await;
            return Ok(pages::error(
                StatusCode::BAD_GATEWAY,
                "Sign-in unavailable",
                "The identity provider for this sign-in cannot be reached. Try again later.",
            ));
        }
    };
    let tx = LoginTransaction {
        id: tx_id,
        expires_at: deps.clock.now() + deps.settings.login_ttl,
        payload: json!({ "request": r, "browser": browser, "upstream": start.saved }),
    };
    deps.sessions.insert_login_tx(&tx).await?;
    Ok(HttpResponse::Found()
        .cookie(binding)
        .insert_header((LOCATION, start.url))
        .insert_header(("Cache-Control", "no-store"))
        .finish())
}

/// `GET /login/callback`: the IdP sends the browser back. Every failure ends on a page and a log
/// event, never in a session.
pub async fn get_callback(
    deps: web::Data<Deps>,
    req: HttpRequest,
    q: web::Query<std::collections::HashMap<String, String>>,
) -> Result<HttpResponse, latch_http::ApiError> {
    let params = q.into_inner();
    let now = deps.clock.now();
    let state = params.get("state").map(String::as_str).unwrap_or_default();
    let Some(tx) = cookies::take_bound_tx(
        &*deps.sessions,
        &req,
        state,
        now,
        deps.settings.secure_cookies,
    )
    .await?
    else {
        return Ok(callback_expired());
    };
    let Ok(r) = serde_json::from_value::<AuthRequest>(tx.payload["request"].clone()) else {
        return Ok(callback_expired());
    };
    let Some(connection) = deps.store.find_connection_by_name(&r.connection).await? else {
        return Ok(callback_expired());
    };
    let ip = client_ip(&req);
    let fail = |reason: String| upstream_failed(&deps, &r, &connection.name, ip, reason);
    // A SAML answer was checked when the IdP posted it (see `post_callback`).
    let verified = tx
        .payload
        .get("identity")
        .map(|v| serde_json::from_value::<latch_core::connector::UpstreamIdentity>(v.clone()));
    let identity = match verified {
        Some(Ok(i)) => i,
        Some(Err(_)) => return Ok(callback_expired()),
        None => match deps
            .upstream
            .finish(
                &connection,
                &deps.url(paths::CALLBACK),
                &params,
                &tx.payload["upstream"],
            )
            .await
        {
            Ok(i) => i,
            Err(e) => return Ok(fail(e.to_string()).await),
        },
    };
    let new_id = || latch_jose::random_alnum(24).to_lowercase();
    let user = match latch_core::provision::provision(
        &*deps.store,
        &*deps.clock,
        &connection,
        &identity,
        new_id,
    )
    .await
    {
        Ok(u) => u,
        Err(latch_core::provision::ProvisionError::Blocked) => {
            return Ok(fail("the user is blocked".into()).await);
        }
        Err(latch_core::provision::ProvisionError::Store(e)) => return Err(e.into()),
    };
    complete_sign_in(
        &deps,
        &req,
        &r,
        &user,
        &connection.name,
        identity.session.clone(),
        json!({"upstream_issuer": identity.issuer}),
    )
    .await
}

#[derive(Deserialize)]
pub struct AcsForm {
    #[serde(rename = "SAMLResponse")]
    saml_response: String,
    #[serde(rename = "RelayState", default)]
    relay_state: String,
}

#[derive(Deserialize)]
pub struct AcsQuery {
    connection: Option<String>,
}

/// `POST /login/callback?connection={name}`: the SAML AssertionConsumerService (HTTP-POST
/// binding). `RelayState` names the login transaction, which holds the AuthnRequest ID the
/// answer must be `InResponseTo` (so IdP-initiated answers are refused). The IdP posts
/// cross-site, so the `SameSite=Lax` browser-binding cookie is not sent here: the checked answer
/// is parked in a new one-time transaction and the browser comes back with a same-site `GET
/// /login/callback?state=…`, where the binding is checked as for OpenID Connect.
pub async fn post_callback(
    deps: web::Data<Deps>,
    req: HttpRequest,
    q: web::Query<AcsQuery>,
    form: web::Form<AcsForm>,
) -> Result<HttpResponse, latch_http::ApiError> {
    let form = form.into_inner();
    let now = deps.clock.now();
    let state = form.relay_state.as_str();
    if state.is_empty() || state.len() > 128 {
        issue::log(
            &deps,
            "f",
            "Failed login",
            None,
            None,
            q.connection.as_deref().map(ConnectionName::new).as_ref(),
            client_ip(&req),
            json!({"reason": "SAML response without a login transaction (unsolicited)"}),
        )
        .await;
        return Ok(callback_expired());
    }
    let Some(tx) = deps
        .sessions
        .take_login_tx(&LoginTxId::new(state), now)
        .await?
    else {
        return Ok(callback_expired());
    };
    let Ok(r) = serde_json::from_value::<AuthRequest>(tx.payload["request"].clone()) else {
        return Ok(callback_expired());
    };
    let Some(connection) = deps.store.find_connection_by_name(&r.connection).await? else {
        return Ok(callback_expired());
    };
    let fail =
        |reason: String| upstream_failed(&deps, &r, &connection.name, client_ip(&req), reason);
    if connection.strategy != Strategy::Samlp
        || q.connection
            .as_deref()
            .is_some_and(|n| n != connection.name.as_str())
    {
        return Ok(fail("SAML response for another connection".into()).await);
    }
    let params = std::collections::HashMap::from([("SAMLResponse".to_owned(), form.saml_response)]);
    let identity = match deps
        .upstream
        .finish(
            &connection,
            &deps.url(paths::CALLBACK),
            &params,
            &tx.payload["upstream"],
        )
        .await
    {
        Ok(i) => i,
        Err(e) => return Ok(fail(e.to_string()).await),
    };
    let next = LoginTransaction {
        id: LoginTxId::new(latch_jose::random_token(24)),
        expires_at: now + time::Duration::minutes(2),
        payload: json!({
            "request": r,
            "browser": tx.payload["browser"],
            "identity": identity,
        }),
    };
    deps.sessions.insert_login_tx(&next).await?;
    let mut to = deps.url(paths::CALLBACK);
    to.push_str("?state=");
    to.push_str(next.id.as_str());
    Ok(HttpResponse::SeeOther()
        .insert_header((LOCATION, to))
        .insert_header(("Cache-Control", "no-store"))
        .finish())
}

/// The page for an IdP's answer whose login transaction is gone (expired, used, or never ours).
fn callback_expired() -> HttpResponse {
    pages::error(
        StatusCode::BAD_REQUEST,
        "Sign-in expired",
        "This sign-in has expired or was already completed. Go back to the application and start again.",
    )
}

/// An upstream answer Latch refused: an `f` event with the reason, a page without it.
async fn upstream_failed(
    deps: &Deps,
    r: &AuthRequest,
    connection: &ConnectionName,
    ip: Option<std::net::IpAddr>,
    reason: String,
) -> HttpResponse {
    issue::log(
        deps,
        "f",
        "Failed login",
        None,
        Some(&r.client_id),
        Some(connection),
        ip,
        json!({"reason": reason}),
    )
    .await;
    pages::error(
        StatusCode::BAD_REQUEST,
        "Sign-in failed",
        "The identity provider's answer could not be accepted. Go back to the application and try again.",
    )
}

fn oauth_to_api(e: latch_http::OAuthError) -> latch_http::ApiError {
    latch_http::ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        e.description,
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    tx: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

pub async fn post_login(
    deps: web::Data<Deps>,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, latch_http::ApiError> {
    let form = form.into_inner();
    let now = deps.clock.now();
    let expired = || {
        pages::error(
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            "This sign-in form has expired or was already used. Go back to the application and start again.",
        )
    };
    // One use per form: a replayed or forged post finds nothing.
    let Some(tx) = cookies::take_bound_tx(
        &*deps.sessions,
        &req,
        &form.tx,
        now,
        deps.settings.secure_cookies,
    )
    .await?
    else {
        return Ok(expired());
    };
    let Ok(r) = serde_json::from_value::<AuthRequest>(tx.payload["request"].clone()) else {
        return Ok(expired());
    };
    let Some(client) = deps.store.find_client(&r.client_id).await? else {
        return Ok(expired());
    };
    let Some(connection) = deps.store.find_connection_by_name(&r.connection).await? else {
        return Ok(expired());
    };
    let ip = client_ip(&req);
    let ctx = SignInContext { ip };
    let email = form.email.trim().to_owned();
    // Home realm discovery: an email of a federated domain goes to its IdP.
    if r.chosen
        && let Some(c) = by_email_domain(&sign_in_connections(&deps, &r.client_id).await?, &email)
    {
        let mut to_idp = r.clone();
        to_idp.connection = c.name.clone();
        to_idp.login_hint = Some(email.clone());
        let hop = upstream_redirect(&deps, &req, &to_idp, c).await?;
        let Some(to) = hop
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
        else {
            return Ok(hop);
        };
        let mut page = pages::builder(StatusCode::OK);
        for cookie in hop.cookies() {
            page.cookie(cookie.into_owned());
        }
        let idp = c.display_name.clone().unwrap_or_else(|| c.name.to_string());
        return Ok(pages::render(
            page,
            &pages::ContinuePage {
                idp: &idp,
                url: &to,
            },
        ));
    }
    if email.is_empty() || form.password.is_empty() {
        return login_form(
            &deps,
            &req,
            &r,
            &client,
            &email,
            Some("Enter your email address and password."),
            StatusCode::BAD_REQUEST,
            &[],
        )
        .await;
    }
    let user: User = match deps
        .database
        .sign_in(&connection, &email, &form.password, &ctx)
        .await
    {
        Ok(u) => u,
        Err(e) => {
            let (msg, status) = match &e {
                SignInError::InvalidCredentials | SignInError::Blocked => {
                    ("Wrong email or password.".to_owned(), StatusCode::OK)
                }
                SignInError::TooManyAttempts { retry_after, .. } => {
                    let secs = retry_after.whole_seconds().max(1);
                    let unit = if secs == 1 { "second" } else { "seconds" };
                    (
                        format!("Too many failed attempts; try again in {secs} {unit}."),
                        StatusCode::TOO_MANY_REQUESTS,
                    )
                }
                SignInError::Store(_) | SignInError::Session(_) => {
                    tracing::error!(error = %e, "sign-in failed");
                    (
                        "Sign-in is unavailable right now. Try again later.".to_owned(),
                        StatusCode::SERVICE_UNAVAILABLE,
                    )
                }
            };
            let failed = |reason: String| {
                issue::log(
                    &deps,
                    "f",
                    "Failed login",
                    None,
                    Some(&client.client_id),
                    Some(&connection.name),
                    ip,
                    json!({"reason": reason, "email": email}),
                )
            };
            match &e {
                SignInError::InvalidCredentials | SignInError::Blocked => {
                    failed(e.to_string()).await
                }
                SignInError::Store(_) | SignInError::Session(_) => {
                    failed("unavailable".into()).await
                }
                SignInError::TooManyAttempts { until, limit, .. } => {
                    throttled(&deps, &client, &connection.name, &email, ip, *limit, *until).await
                }
            }
            let mut res =
                login_form(&deps, &req, &r, &client, &email, Some(&msg), status, &[]).await?;
            if let SignInError::TooManyAttempts { retry_after, .. } = &e {
                // The page says it; `Retry-After` says it to machines.
                res.headers_mut().insert(
                    RETRY_AFTER,
                    HeaderValue::from(retry_after.whole_seconds().max(1)),
                );
            }
            return Ok(res);
        }
    };
    let mut updated = user.clone();
    updated.last_login = Some(now);
    updated.logins_count += 1;
    deps.store.update_user(&updated).await?;
    complete_sign_in(
        &deps,
        &req,
        &r,
        &user,
        &connection.name,
        Default::default(),
        json!({}),
    )
    .await
}

/// An attempt refused unchecked while a throttle key waits: Auth0's `limit_wc` ("blocked
/// account": failures on this account) or `limit_mu` ("blocked IP address": failures from this
/// address), once per delay, not once per refused attempt.
async fn throttled(
    deps: &Deps,
    client: &Client,
    connection: &ConnectionName,
    email: &str,
    ip: Option<std::net::IpAddr>,
    limit: Limit,
    until: time::OffsetDateTime,
) {
    let (code, description, scope, key) = match limit {
        Limit::AccountFromIp => (
            "limit_wc",
            "Blocked Account",
            "account_from_ip",
            format!("{connection}\n{email}\n{ip:?}"),
        ),
        Limit::Account => (
            "limit_wc",
            "Blocked Account",
            "account",
            format!("{connection}\n{email}"),
        ),
        Limit::Ip => ("limit_mu", "Blocked IP Address", "ip", format!("{ip:?}")),
    };
    let once = latch_jose::token_digest(&format!("{scope}\n{key}\n{}", until.unix_timestamp()));
    let now = deps.clock.now();
    match deps
        .sessions
        // The key names the delay's end, so remembering it longer (against clock skew between
        // instances and the store) suppresses nothing else.
        .remember_once(
            "throttle-event",
            once.as_str(),
            until.max(now) + time::Duration::minutes(5),
            now,
        )
        .await
    {
        Ok(false) => return,
        Ok(true) => {}
        Err(e) => tracing::warn!(error = %e, "throttle event deduplication failed"),
    }
    issue::log(
        deps,
        code,
        description,
        None,
        Some(&client.client_id),
        Some(connection),
        ip,
        json!({
            "limit": scope,
            "email": email,
            "retry_after": (until - now).whole_seconds().max(1),
        }),
    )
    .await;
}

/// The end of every successful sign-in: a new session (never one a different user may have left
/// in this browser), the code for the app, the `s` event, the cookie, the redirect.
async fn complete_sign_in(
    deps: &Deps,
    req: &HttpRequest,
    r: &AuthRequest,
    user: &User,
    connection: &ConnectionName,
    upstream: latch_core::session::UpstreamSession,
    details: serde_json::Value,
) -> Result<HttpResponse, latch_http::ApiError> {
    if let Some(old) = current_session(deps, req).await? {
        let t = latch_core::logout::Terminate {
            target: latch_core::logout::Target::Session(old.id.clone()),
            tokens: latch_core::logout::TokenPolicy::SessionBound,
            initiator: latch_core::model::LogoutInitiator::RpLogout,
            reserved_until: deps.notifier.reserve_until(),
        };
        let out =
            latch_core::logout::terminate(&*deps.store, &*deps.sessions, &*deps.clock, &t).await?;
        deps.notifier.dispatch(&out.deliveries);
    }
    let (_, secret, code) = issue::new_session_with_code(deps, user, connection, upstream, r, req)
        .await
        .map_err(oauth_to_api)?;
    issue::log(
        deps,
        "s",
        "Successful login",
        Some(&user.user_id),
        Some(&r.client_id),
        Some(connection),
        client_ip(req),
        details,
    )
    .await;
    let mut res = code_redirect(&r.redirect_uri, &code, r.state.as_deref(), &deps.issuer);
    let cookie = cookies::make(
        cookies::SESSION,
        secret.expose().to_owned(),
        deps.settings.secure_cookies,
        None,
    );
    let _ = res.add_cookie(&cookie);
    Ok(res)
}
