//! The sign-in flow: single sign-on, connection choice, the form or the IdP, and the end of
//! every successful sign-in.

use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse};
use latch_core::model::{Client, Connection, DATABASE_CONNECTION, Strategy, User};
use latch_core::session::{LoginTransaction, Session, UpstreamSession};
use latch_core::*;
use latch_http::{ApiError, client_ip};
use serde_json::json;

use crate::events::log;
use crate::pages::{self, LoginPage};
use crate::request::{Begin, LoginRequest, Refusal};
use crate::{Deps, cookies, paths};

pub(crate) async fn begin(
    deps: &Deps,
    req: &HttpRequest,
    b: Begin,
) -> Result<HttpResponse, ApiError> {
    let client = b.client;
    let chosen = b.connection.is_none();
    let mut r = LoginRequest {
        protocol: b.protocol,
        client_id: client.client_id.clone(),
        return_to: b.return_to,
        prompt: b.prompt,
        max_age: b.max_age,
        login_hint: b.login_hint,
        connection: ConnectionName::new(""),
        chosen,
        protocol_state: b.protocol_state,
    };
    let completion = deps.completion(&r)?.clone();
    // The connection: named; else the one whose domain aliases match the login hint's email;
    // else the database connection; else an enterprise one.
    let name = match b.connection {
        Some(n) => n,
        None => match choose_connection(deps, &client.client_id, r.login_hint.as_deref()).await? {
            Some(c) => c.name,
            None => {
                let why = Refusal::InvalidRequest(
                    "No connection is enabled for this application.".into(),
                );
                return Ok(completion.refuse(&r, why));
            }
        },
    };
    let connection = deps.store.find_connection_by_name(&name).await?;
    let Some(connection) = connection.filter(|c| c.enabled_clients.contains(&client.client_id))
    else {
        let why =
            Refusal::InvalidRequest("The connection is not enabled for this application.".into());
        return Ok(completion.refuse(&r, why));
    };
    r.connection = connection.name.clone();

    let now = deps.clock.now();
    if let Some(session) = touch_current_session(deps, req).await? {
        // Checked arithmetic: `max_age` is the caller's number (up to i64::MAX seconds), and an
        // instant plus that overflows. The session's age never does.
        let fresh = r
            .max_age
            .is_none_or(|m| now - session.auth_time <= time::Duration::seconds(m));
        // Auth0's rule: a session serves any app its connection is enabled for, unless the app
        // named another connection. When Latch chose the connection, the session's decides.
        // The strategy of the session's connection when it may serve, `None` when not.
        let serving = if session.connection == r.connection {
            Some(connection.strategy)
        } else if r.chosen {
            deps.store
                .find_connection_by_name(&session.connection)
                .await?
                .filter(|c| c.enabled_clients.contains(&client.client_id))
                .map(|c| c.strategy)
        } else {
            None
        };
        let user = deps.store.find_user(&session.user_id).await?;
        if let Some(user) = user.filter(|u| !u.blocked)
            && fresh
            && let Some(strategy) = serving
            && !r.prompt.login
        {
            return single_sign_on(deps, req, &r, &session, &user, strategy).await;
        }
    }
    if r.prompt.none {
        return Ok(completion.refuse(&r, Refusal::LoginRequired));
    }
    if connection.strategy.is_enterprise() {
        // Latch picked it, no hint decided, and there are others: let the user choose.
        let hinted = r.login_hint.as_deref().is_some_and(|h| h.contains('@'));
        let others = alternatives(deps, req, &r).await?;
        if r.chosen && !hinted && !others.is_empty() {
            let mut all = others;
            all.insert(0, choice(completion.as_ref(), req, &r, &connection));
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
        return upstream_redirect(deps, req, &r, &connection).await;
    }
    let hint = r.login_hint.clone().unwrap_or_default();
    let others = alternatives(deps, req, &r).await?;
    login_form(deps, req, &r, &client, &hint, None, StatusCode::OK, &others).await
}

/// A live session serves the request: the app joins it and gets its answer.
async fn single_sign_on(
    deps: &Deps,
    req: &HttpRequest,
    r: &LoginRequest,
    session: &Session,
    user: &User,
    strategy: Strategy,
) -> Result<HttpResponse, ApiError> {
    let now = deps.clock.now();
    let completion = deps.completion(r)?;
    let joined;
    let session = if session.clients.iter().any(|c| c.client_id == r.client_id) {
        session
    } else {
        let entry = completion.join(r, &session.sid, user, now);
        // The session as stored now, with this app's entry (the first one, should two sign-ins
        // of the same app race).
        match deps
            .sessions
            .add_session_client(&session.id, &entry, now)
            .await?
        {
            Some(s) => {
                joined = s;
                &joined
            }
            None => return Ok(pages::expired()),
        }
    };
    let issued = match completion.issue(r, session, user, now) {
        Ok(i) => i,
        Err(page) => return Ok(*page),
    };
    if let Some(code) = &issued.code {
        deps.sessions.insert_code(code).await?;
    }
    latch_core::metrics::signin(strategy, latch_core::metrics::SigninResult::Sso);
    log(
        deps,
        "s",
        "Single sign-on",
        Some(&user.user_id),
        Some(&r.client_id),
        Some(&session.connection),
        client_ip(req),
        json!({"sso": true}),
    )
    .await;
    Ok(issued.response)
}

/// Connections enabled for a client that a user can sign in through today, by name.
pub(crate) async fn sign_in_connections(
    deps: &Deps,
    client: &ClientId,
) -> Result<Vec<Connection>, ApiError> {
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
pub(crate) fn by_email_domain<'a>(conns: &'a [Connection], email: &str) -> Option<&'a Connection> {
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

/// Latch's choice when the app names no connection (flow 13 in ARCHITECTURE.md).
async fn choose_connection(
    deps: &Deps,
    client: &ClientId,
    login_hint: Option<&str>,
) -> Result<Option<Connection>, ApiError> {
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
    r: &LoginRequest,
) -> Result<Vec<(String, String)>, ApiError> {
    if !r.chosen {
        return Ok(vec![]);
    }
    let completion = deps.completion(r)?;
    Ok(sign_in_connections(deps, &r.client_id)
        .await?
        .iter()
        .filter(|c| c.strategy.is_enterprise() && c.name != r.connection)
        .map(|c| choice(completion.as_ref(), req, r, c))
        .collect())
}

/// A "Continue with …" entry: the connection's label, and the app's request started again
/// through it (the protocol knows how).
fn choice(
    completion: &dyn crate::Completion,
    req: &HttpRequest,
    r: &LoginRequest,
    c: &Connection,
) -> (String, String) {
    let label = c.display_name.clone().unwrap_or_else(|| c.name.to_string());
    (label, completion.restart_with(req, r, &c.name))
}

/// The live session of this browser, if any; using it moves its idle expiry.
pub(crate) async fn touch_current_session(
    deps: &Deps,
    req: &HttpRequest,
) -> Result<Option<Session>, ApiError> {
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
pub(crate) async fn login_form(
    deps: &Deps,
    req: &HttpRequest,
    r: &LoginRequest,
    client: &Client,
    email: &str,
    error: Option<&str>,
    status: StatusCode,
    alternatives: &[(String, String)],
) -> Result<HttpResponse, ApiError> {
    let (browser, binding) = cookies::new_binding(req, deps.settings.secure_cookies);
    let now = deps.clock.now();
    let tx = LoginTransaction {
        id: LoginTxId::new(latch_jose::random_token(24)),
        expires_at: now + deps.settings.login_ttl,
        payload: json!({ "request": r, "browser": browser }),
    };
    deps.sessions.insert_login_tx(&tx).await?;
    let mut b = pages::builder(status);
    let target = deps.completion(r)?.form_target(r);
    b.insert_header((
        "Content-Security-Policy",
        pages::csp_with_form_target(target),
    ));
    b.cookie(binding);
    Ok(pages::render(
        b,
        &LoginPage {
            app_name: &client.name,
            action: paths::LOGIN,
            tx: tx.id.as_str(),
            email,
            error,
            show_form: true,
            alternatives,
        },
    ))
}

/// Sends the browser to the connection's IdP; the login transaction (its id is the upstream
/// `state`) keeps the request, the connector's nonce and PKCE verifier, and the browser binding.
pub(crate) async fn upstream_redirect(
    deps: &Deps,
    req: &HttpRequest,
    r: &LoginRequest,
    connection: &Connection,
) -> Result<HttpResponse, ApiError> {
    let (browser, binding) = cookies::new_binding(req, deps.settings.secure_cookies);
    let tx_id = LoginTxId::new(latch_jose::random_token(24));
    let start = match deps
        .upstream
        .start(connection, &deps.issuer, tx_id.as_str())
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(connection = %connection.name, error = %e, "upstream sign-in could not start");
            latch_core::metrics::signin(
                connection.strategy,
                latch_core::metrics::SigninResult::Error,
            );
            log(
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

/// The end of every successful sign-in: a new session (never one a different user may have left
/// in this browser), the app's answer through its protocol, the `s` event, the cookie.
pub(crate) async fn complete_sign_in(
    deps: &Deps,
    req: &HttpRequest,
    r: &LoginRequest,
    user: &User,
    connection: &Connection,
    upstream: UpstreamSession,
    details: serde_json::Value,
) -> Result<HttpResponse, ApiError> {
    use latch_core::logout::{Target, TokenPolicy, Urgency};
    let completion = deps.completion(r)?.clone();
    if let Some(old) = touch_current_session(deps, req).await? {
        deps.logout
            .end(
                Target::Session(old.id.clone()),
                TokenPolicy::SessionBound,
                latch_core::model::LogoutInitiator::SessionReplaced,
                Urgency::Background,
            )
            .await?;
    }
    let now = deps.clock.now();
    let s = &deps.settings;
    let sid = Sid::new(latch_jose::random_token(16));
    let secret = SessionSecret::new(latch_jose::random_token(32));
    // A sealed upstream ID token rides in the browser beside the session cookie, not in the
    // session store (see `cookies::upstream_to_browser`).
    let (upstream, upstream_cookie) =
        cookies::upstream_to_browser(req, upstream, deps.settings.secure_cookies);
    let session = Session {
        id: secret.id(),
        sid: sid.clone(),
        user_id: user.user_id.clone(),
        connection: connection.name.clone(),
        created_at: now,
        auth_time: now,
        last_seen_at: now,
        idle_expires_at: (now + s.session_idle).min(now + s.session_absolute),
        expires_at: now + s.session_absolute,
        ip: client_ip(req).map(|i| i.to_string()),
        user_agent: req
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(256).collect()),
        upstream,
        clients: vec![completion.join(r, &sid, user, now)],
    };
    let issued = match completion.issue(r, &session, user, now) {
        Ok(i) => i,
        Err(page) => return Ok(*page),
    };
    // The session and the app's code in one write.
    match &issued.code {
        Some(code) => {
            deps.sessions
                .insert_session_with_code(&session, code)
                .await?
        }
        None => deps.sessions.insert_session(&session).await?,
    }
    latch_core::metrics::signin(
        connection.strategy,
        latch_core::metrics::SigninResult::Success,
    );
    log(
        deps,
        "s",
        "Successful login",
        Some(&user.user_id),
        Some(&r.client_id),
        Some(&connection.name),
        client_ip(req),
        details,
    )
    .await;
    let mut res = issued.response;
    let cookie = cookies::make(
        cookies::SESSION,
        secret.expose().to_owned(),
        deps.settings.secure_cookies,
        None,
    );
    let _ = res.add_cookie(&cookie);
    if let Some(c) = upstream_cookie {
        let _ = res.add_cookie(&c);
    }
    Ok(res)
}
