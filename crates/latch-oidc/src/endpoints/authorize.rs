//! `GET /authorize`: OpenID Connect's front door to sign-in, and its [`OidcCompletion`].
//!
//! The request is checked here in OpenID Connect's terms and handed to `latch_login` as a
//! protocol-neutral request; sign-in answers through [`OidcCompletion`] (a code redirect).
//! Errors follow RFC 6749 §4.1.2.1: while the client or its redirect URI is unknown, an error
//! page (never a redirect); after that, a redirect back to the app with `error` and `state`.

use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, web};
use latch_core::model::{Client, GrantType};
use latch_core::session::{AuthCode, Session};
use latch_core::*;
use latch_login::{Begin, Completion, Issued, LoginRequest, Prompt, Protocol, Refusal, pages};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use url::Url;

use crate::Deps;

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

/// What OpenID Connect needs back when sign-in completes (`LoginRequest::protocol_state`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OidcState {
    /// The granted scopes Latch knows, space-separated.
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
}

enum Checked {
    Ok(Box<Begin>),
    Page(HttpResponse),
}

/// Checks an authorization request in OpenID Connect's terms.
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
    let values: Vec<&str> = prompt
        .as_deref()
        .map(|p| p.split_whitespace().collect())
        .unwrap_or_default();
    let state = OidcState {
        scope,
        state: q.state,
        nonce: q.nonce,
        code_challenge: q.code_challenge,
    };
    Ok(Checked::Ok(Box::new(Begin {
        protocol: Protocol::Oidc,
        return_to: redirect_uri,
        prompt: Prompt {
            none: values == ["none"],
            login: values.contains(&"login"),
        },
        max_age,
        login_hint: q.login_hint,
        connection: q.connection.map(ConnectionName::new),
        protocol_state: serde_json::to_value(state).unwrap_or_default(),
        client,
    })))
}

pub async fn get_authorize(
    deps: web::Data<Deps>,
    req: HttpRequest,
    q: web::Query<AuthorizeQuery>,
) -> Result<HttpResponse, latch_http::ApiError> {
    match check(&deps, q.into_inner()).await? {
        Checked::Ok(b) => deps.login.begin(&req, *b).await,
        Checked::Page(p) => Ok(p),
    }
}

/// OpenID Connect's answer to a sign-in: an authorization code for the session, sent to the
/// redirect URI with `state` and `iss` (RFC 9207); refusals as RFC 6749 error redirects.
pub struct OidcCompletion {
    /// The issuer, without a trailing slash.
    pub issuer: String,
    pub code_ttl: Duration,
}

impl OidcCompletion {
    fn state(r: &LoginRequest) -> Option<OidcState> {
        serde_json::from_value(r.protocol_state.clone()).ok()
    }
}

impl Completion for OidcCompletion {
    fn issue(
        &self,
        r: &LoginRequest,
        session: &Session,
        _user: &latch_core::model::User,
        now: OffsetDateTime,
    ) -> Result<Issued, Box<HttpResponse>> {
        let Some(p) = Self::state(r) else {
            // Only this crate writes the state; one it cannot read is not a request it made.
            return Err(Box::new(pages::expired()));
        };
        let code = latch_jose::random_token(32);
        let stored = AuthCode {
            digest: latch_jose::token_digest(&code),
            client_id: r.client_id.clone(),
            user_id: session.user_id.clone(),
            session_id: Some(session.id.clone()),
            sid: Some(session.sid.clone()),
            redirect_uri: r.return_to.clone(),
            scope: p.scope,
            nonce: p.nonce,
            code_challenge: p.code_challenge,
            auth_time: session.auth_time,
            expires_at: now + self.code_ttl,
        };
        Ok(Issued {
            code: Some(stored),
            response: code_redirect(&r.return_to, &code, p.state.as_deref(), &self.issuer),
        })
    }

    /// This authorization request again (the query `/authorize` was called with), with
    /// `connection` set.
    fn restart_with(
        &self,
        req: &HttpRequest,
        _r: &LoginRequest,
        connection: &ConnectionName,
    ) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes())
            .filter(|(k, _)| k != "connection")
        {
            query.append_pair(&k, &v);
        }
        query.append_pair("connection", connection.as_str());
        format!("{}?{}", crate::paths::AUTHORIZE, query.finish())
    }

    fn refuse(&self, r: &LoginRequest, why: Refusal) -> HttpResponse {
        let state = Self::state(r).and_then(|p| p.state);
        let (error, description) = match &why {
            Refusal::LoginRequired => ("login_required", "The user is not signed in."),
            Refusal::InvalidRequest(d) => ("invalid_request", d.as_str()),
        };
        error_redirect(&r.return_to, error, description, state.as_deref())
    }
}
