//! Logout with upstream IdPs, whatever their protocol, through the `UpstreamLogout` port.
//!
//! `GET|POST /logout?connection={name}` ([`latch_core::paths::UPSTREAM_LOGOUT`]):
//! - a `SAMLRequest`: the connection's SAML IdP ends a session (IdP-initiated Single Logout). The
//!   request is verified by the connector; the sessions it names (NameID, and SessionIndex when
//!   given) end through the Logout service with the browser waiting; the logout page tells every
//!   app, then continues to Latch's signed LogoutResponse at the IdP.
//! - a `SAMLResponse`, or `state` without SAML fields: the IdP's answer to a federated logout
//!   ([`Login::federated_logout`]), matched to its one-time handle, logged, and followed by the
//!   app's own destination whatever the IdP said (Latch's session ended before the IdP was asked).
//!
//! The handle is not bound to the browser: a cross-site POST from the IdP carries no `SameSite`
//! cookie, and all it can do is send the browser to the app's registered destination.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, web};
use latch_core::connector::{Arrived, LogoutStart};
use latch_core::logout::{
    Continue, Ended, PageRequest, Target, TokenPolicy, UpstreamMatch, Urgency,
};
use latch_core::model::{Connection, LogoutInitiator, Strategy};
use latch_core::session::{LoginTransaction, Session, saml_name_id_key};
use latch_core::{ConnectionName, LoginTxId};
use latch_http::client_ip;
use serde_json::{Value, json};

use crate::{Deps, Login, cookies, events, pages};

/// The kind of the login transaction that holds a federated logout's way back.
const FEDERATED: &str = "federated_logout";

/// Longer connection names or handles are no one's: refused before any lookup.
const MAX_NAME: usize = 200;

/// Refused LogoutRequests logged per connection per minute (anyone can send them; the rest are
/// counted in the request log only).
const FLO_PER_MINUTE: u64 = 20;

/// SAML status codes, as the LogoutResponse to the IdP names them.
const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const STATUS_RESPONDER: &str = "urn:oasis:names:tc:SAML:2.0:status:Responder";
const STATUS_PARTIAL_LOGOUT: &str = "urn:oasis:names:tc:SAML:2.0:status:PartialLogout";

/// What a federated logout did: where the browser goes next, and what the `slo` event says of
/// the upstream (`details.upstream`).
#[derive(Debug, Clone)]
pub struct Federated {
    /// The IdP (its logout endpoint), or `then` when the IdP is not asked.
    pub to: Option<Continue>,
    pub details: Value,
}

impl Login {
    /// Federated logout (Auth0's `federated`): after Latch ended `session`, sends the browser to
    /// the session's upstream IdP so it ends its own session too (a SAML LogoutRequest, or the
    /// OpenID provider's `end_session_endpoint`), coming back to Latch's upstream logout
    /// endpoint and then going on to `then` (the app's post-logout redirect or LogoutResponse).
    /// When the IdP is not asked (database connection, `disableSignout`, no logout endpoint,
    /// an IdP that cannot be reached), the browser goes to `then` directly; nothing waits on
    /// the IdP.
    pub async fn federated_logout(
        &self,
        req: &HttpRequest,
        session: &Session,
        then: Option<Continue>,
    ) -> Federated {
        let deps = &self.0;
        let not_told = |reason: String, strategy: Option<Strategy>| Federated {
            to: then.clone(),
            details: json!({
                "connection": session.connection.as_str(),
                "strategy": strategy,
                "told": false,
                "reason": reason,
            }),
        };
        let conn = match deps
            .store
            .find_connection_by_name(&session.connection)
            .await
        {
            Ok(Some(c)) => c,
            Ok(None) => return not_told("the connection no longer exists".into(), None),
            Err(e) => {
                tracing::warn!(error = %e, "federated logout: connection unavailable");
                return not_told("the connection could not be read".into(), None);
            }
        };
        let handle = latch_jose::random_token(24);
        let upstream =
            cookies::upstream_from_browser(req, &session.upstream, deps.settings.secure_cookies);
        // Names this federated logout in the `slo` event and in the answer's event (the
        // handle itself is a one-time secret and stays out of the log).
        let logout_id = latch_jose::random_token(12);
        let started = deps
            .upstream_logout
            .start_logout(&conn, &deps.issuer, &upstream, &handle)
            .await;
        let (to, saved, via) = match started {
            Ok(LogoutStart::Send { to, saved, via }) => (to, saved, via),
            Ok(LogoutStart::NotSent(reason)) => return not_told(reason, Some(conn.strategy)),
            Err(e) => {
                tracing::warn!(connection = %conn.name, error = %e, "federated logout not started");
                events::log_with(
                    &*deps.store,
                    &*deps.clock,
                    "federated_logout_failed",
                    "Federated logout could not be started",
                    Some(&session.user_id),
                    None,
                    Some(&conn.name),
                    client_ip(req),
                    json!({"reason": e.to_string(), "strategy": conn.strategy}),
                )
                .await;
                return not_told(e.to_string(), Some(conn.strategy));
            }
        };
        let tx = LoginTransaction {
            id: LoginTxId::new(handle),
            expires_at: deps.clock.now() + deps.settings.login_ttl,
            payload: json!({
                "kind": FEDERATED,
                "connection": conn.name.as_str(),
                "user_id": session.user_id.as_str(),
                "saved": saved,
                "then": then,
                "logout_id": logout_id,
            }),
        };
        if let Err(e) = deps.sessions.insert_login_tx(&tx).await {
            tracing::warn!(error = %e, "federated logout: handle not stored");
            return not_told(
                "the way back could not be stored".into(),
                Some(conn.strategy),
            );
        }
        Federated {
            to: Some(to),
            details: json!({
                "connection": conn.name.as_str(),
                "strategy": conn.strategy,
                "told": true,
                "via": via,
                "upstream_logout_id": logout_id,
            }),
        }
    }
}

impl Login {
    /// The `slo` event's `details.upstream` of a logout that did not ask for federated logout,
    /// for a session that came through an upstream IdP: it was not told. `None` for the
    /// database connection.
    pub async fn upstream_not_asked(&self, session: &Session) -> Option<Value> {
        let c = self
            .0
            .store
            .find_connection_by_name(&session.connection)
            .await
            .ok()
            .flatten()?;
        c.strategy.is_enterprise().then(|| {
            json!({
                "connection": c.name.as_str(),
                "strategy": c.strategy,
                "told": false,
                "reason": "federated logout was not asked for",
            })
        })
    }
}

/// The connection named by `?connection=`, when it has an upstream IdP.
async fn connection(
    deps: &Deps,
    q: &str,
) -> Result<Result<Connection, HttpResponse>, latch_http::ApiError> {
    let name = url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == "connection")
        .map(|(_, v)| v.into_owned())
        .filter(|n| !n.is_empty() && n.len() <= MAX_NAME);
    let Some(name) = name else {
        return Ok(Err(pages::error(
            StatusCode::BAD_REQUEST,
            "Sign-out failed",
            "The connection parameter is required.",
        )));
    };
    Ok(
        match deps
            .store
            .find_connection_by_name(&ConnectionName::new(name))
            .await?
            .filter(|c| c.strategy.is_enterprise())
        {
            Some(c) => Ok(c),
            None => Err(pages::error(
                StatusCode::NOT_FOUND,
                "Unknown connection",
                "No connection with an identity provider has that name.",
            )),
        },
    )
}

pub(crate) async fn get_logout(
    deps: web::Data<Deps>,
    req: HttpRequest,
) -> Result<HttpResponse, latch_http::ApiError> {
    let raw = req.query_string().to_owned();
    let conn = match connection(&deps, &raw).await? {
        Ok(c) => c,
        Err(page) => return Ok(page),
    };
    // The signature of an HTTP-Redirect message covers its parameters as sent: a name that is
    // percent-encoded or repeated could make what is read differ from what is verified.
    if !plain_names(&raw) {
        return Ok(refused(
            &conn,
            "the query names a parameter twice or in an encoded form",
        ));
    }
    let params: HashMap<String, String> = url::form_urlencoded::parse(raw.as_bytes())
        .into_owned()
        .collect();
    let arrived = Arrived::Query(&raw);
    if params.contains_key("SAMLRequest") {
        return idp_logout(&deps, &req, &conn, arrived).await;
    }
    let handle = if params.contains_key("SAMLResponse") {
        params.get("RelayState")
    } else {
        params.get("state")
    };
    match handle {
        Some(h) if h.len() > MAX_NAME => Ok(refused(&conn, "the state is too long")),
        Some(h) => federated_return(&deps, &req, &conn, arrived, h).await,
        None => Ok(refused(
            &conn,
            "expected SAMLRequest, SAMLResponse, or the state of a federated logout",
        )),
    }
}

pub(crate) async fn post_logout(
    deps: web::Data<Deps>,
    req: HttpRequest,
    form: web::Form<HashMap<String, String>>,
) -> Result<HttpResponse, latch_http::ApiError> {
    let conn = match connection(&deps, req.query_string()).await? {
        Ok(c) => c,
        Err(page) => return Ok(page),
    };
    let form = form.into_inner();
    let arrived = Arrived::Form(&form);
    match (
        form.contains_key("SAMLRequest"),
        form.contains_key("SAMLResponse"),
    ) {
        (true, false) => idp_logout(&deps, &req, &conn, arrived).await,
        (false, true) => match form.get("RelayState") {
            Some(h) => federated_return(&deps, &req, &conn, arrived, h).await,
            None => Ok(refused(&conn, "the LogoutResponse carries no RelayState")),
        },
        _ => Ok(refused(
            &conn,
            "exactly one of SAMLRequest and SAMLResponse is expected",
        )),
    }
}

/// Whether every parameter of `raw` is named plainly (no `%` or `+` in a name) and once.
fn plain_names(raw: &str) -> bool {
    let mut seen = std::collections::HashSet::new();
    raw.split('&').filter(|p| !p.is_empty()).all(|p| {
        let name = p.split_once('=').map_or(p, |(k, _)| k);
        !name.contains(['%', '+']) && seen.insert(name)
    })
}

/// A 400 page for a logout message Latch does not act on; the reason is logged and shown (it
/// names the check that failed, never a secret).
fn refused(conn: &Connection, why: &str) -> HttpResponse {
    tracing::info!(connection = %conn.name, reason = why, "upstream logout message refused");
    pages::error(StatusCode::BAD_REQUEST, "Sign-out failed", why)
}

/// The IdP ends sessions: verify, end what the request names, tell every app, answer the IdP.
async fn idp_logout(
    deps: &Deps,
    req: &HttpRequest,
    conn: &Connection,
    arrived: Arrived<'_>,
) -> Result<HttpResponse, latch_http::ApiError> {
    let request = match deps
        .upstream_logout
        .logout_request(conn, &deps.issuer, arrived)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            let why = e.to_string();
            // Anyone can send these: at most FLO_PER_MINUTE events per connection a minute.
            let now = deps.clock.now();
            let window = now + time::Duration::minutes(1);
            let hits = deps
                .sessions
                .count_hit(&format!("flo:{}", conn.name), window, now)
                .await
                .unwrap_or(u64::MAX);
            if hits <= FLO_PER_MINUTE {
                events::log_with(
                    &*deps.store,
                    &*deps.clock,
                    "flo",
                    "Identity provider's logout request refused",
                    None,
                    None,
                    Some(&conn.name),
                    client_ip(req),
                    json!({
                        "initiator": LogoutInitiator::IdpLogout,
                        "reason": latch_core::model::log_text(&why, 200),
                    }),
                )
                .await;
            }
            // What a check refused is shown; Latch's own trouble (an IdP's metadata that could
            // not be had, a store) is not the caller's to read.
            let shown = match &e {
                latch_core::connector::FederationError::Rejected(r) => r.as_str(),
                _ => "The identity provider's settings cannot be used right now.",
            };
            return Ok(refused(conn, shown));
        }
    };
    let now = deps.clock.now();
    let user = deps
        .sessions
        .user_of_upstream(&conn.name, &saml_name_id_key(&request.name_id), now)
        .await?;
    let ended = match &user {
        Some(user) => {
            deps.logout
                .end(
                    Target::UserAtConnection {
                        user: user.clone(),
                        connection: conn.name.clone(),
                        upstream: Some(UpstreamMatch::Saml {
                            name_id: request.name_id.clone(),
                            session_indexes: request.session_indexes.clone(),
                        }),
                    },
                    TokenPolicy::SessionBound,
                    LogoutInitiator::IdpLogout,
                    Urgency::BrowserWaiting,
                )
                .await?
        }
        // A valid request naming no live session: nothing is left to end (Success).
        None => Ended::default(),
    };
    // A SAML app of the ended sessions without Single Logout cannot be told, nor one whose
    // LogoutRequest the page could not make (a probe render, without the answer, says which
    // the page carries): PartialLogout.
    let carried = if ended.saml.is_empty() {
        0
    } else {
        deps.front_channel
            .render(&PageRequest {
                issuer: &deps.issuer,
                front_channel: &[],
                saml: &ended.saml,
                exclude: None,
                continue_to: None,
            })
            .map_or(0, |p| p.saml.len())
    };
    let (status, second) = if ended.unreachable.is_empty() && carried == ended.saml.len() {
        (STATUS_SUCCESS, None)
    } else {
        (STATUS_RESPONDER, Some(STATUS_PARTIAL_LOGOUT))
    };
    let answer = match deps
        .upstream_logout
        .logout_response(conn, &deps.issuer, &request, status, second)
        .await
    {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!(connection = %conn.name, error = %e, "LogoutResponse to the IdP not made");
            None
        }
    };
    let page = deps.front_channel.render(&PageRequest {
        issuer: &deps.issuer,
        front_channel: &ended.front_channel,
        saml: &ended.saml,
        exclude: None,
        continue_to: answer.clone(),
    });
    let mut details = ended.browser_event_details(LogoutInitiator::IdpLogout, page.as_ref());
    details.insert(
        "upstream".into(),
        json!({
            "protocol": "saml",
            "name_id": request.name_id,
            "session_indexes": request.session_indexes,
            "logout_request_id": request.request_id,
            "answered": answer.as_ref().map(|_| second.unwrap_or(status)),
        }),
    );
    events::log_with(
        &*deps.store,
        &*deps.clock,
        "slo",
        "User logged out by the identity provider",
        user.as_ref(),
        None,
        Some(&conn.name),
        client_ip(req),
        Value::Object(details),
    )
    .await;
    let own = cookies::session(req).map(|s| s.id());
    let clear = own.is_some_and(|id| ended.sessions.iter().any(|s| s.id == id));
    let mut res = match page {
        Some(page) => HttpResponse::Ok()
            .insert_header(("Content-Security-Policy", page.content_security_policy))
            .insert_header(("Cache-Control", "no-store"))
            .content_type("text/html; charset=utf-8")
            .body(page.html),
        None => go(
            answer.as_ref(),
            "You are signed out. You can close this window.",
        ),
    };
    // IdPs that tell their SPs from hidden frames of their own page (Okta does) must be able to
    // frame this answer: the IdP's origin, and only it, may.
    if let Some(origin) = answer
        .as_ref()
        .and_then(|a| url::Url::parse(a.target()).ok())
        .map(|u| u.origin().ascii_serialization())
    {
        framed_by(&mut res, &origin);
    }
    if clear {
        cookies::clear_session(&mut res, deps.settings.secure_cookies);
    }
    Ok(res)
}

/// Lets `origin` frame a page whose CSP says `frame-ancestors 'none'` (CSP's `frame-ancestors`
/// takes precedence over `X-Frame-Options` in browsers).
fn framed_by(res: &mut HttpResponse, origin: &str) {
    use actix_web::http::header::{CONTENT_SECURITY_POLICY, HeaderValue, X_FRAME_OPTIONS};
    let Some(csp) = res
        .headers()
        .get(CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.replace(
                "frame-ancestors 'none'",
                &format!("frame-ancestors {origin}"),
            )
        })
    else {
        return;
    };
    if let Ok(v) = HeaderValue::from_str(&csp) {
        res.headers_mut().insert(CONTENT_SECURITY_POLICY, v);
        res.headers_mut()
            .insert(X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
    }
}

/// The browser goes on: a redirect, an auto-posted form, or the signed-out page.
pub fn go(to: Option<&Continue>, message: &str) -> HttpResponse {
    match to {
        Some(Continue::Get(url)) => HttpResponse::Found()
            .insert_header((LOCATION, url.as_str()))
            .insert_header(("Cache-Control", "no-store"))
            .finish(),
        Some(Continue::Post { action, fields }) => pages::post_page("Signing out", action, fields),
        None => pages::render(
            pages::builder(StatusCode::OK),
            &pages::MessagePage {
                title: "Signed out",
                message,
                detail: None,
                is_error: false,
            },
        ),
    }
}

/// The IdP's answer to a federated logout: logged, then the browser goes where the app said.
async fn federated_return(
    deps: &Deps,
    req: &HttpRequest,
    conn: &Connection,
    arrived: Arrived<'_>,
    handle: &str,
) -> Result<HttpResponse, latch_http::ApiError> {
    let now = deps.clock.now();
    let tx = deps
        .sessions
        .take_login_tx(&LoginTxId::new(handle), now)
        .await?
        .filter(|t| {
            t.payload["kind"] == FEDERATED && t.payload["connection"] == conn.name.as_str()
        });
    let Some(tx) = tx else {
        return Ok(refused(
            conn,
            "this sign-out is unknown, was already completed, or has expired",
        ));
    };
    let then: Option<Continue> = serde_json::from_value(tx.payload["then"].clone()).ok();
    let user = tx.payload["user_id"].as_str().map(latch_core::UserId::new);
    let answer = deps
        .upstream_logout
        .finish_logout(conn, &deps.issuer, arrived, &tx.payload["saved"])
        .await;
    let id = &tx.payload["logout_id"];
    // SAML answers carry status codes; an OpenID provider's return has none.
    let status = |s: &Vec<String>| (!s.is_empty()).then(|| s.clone());
    let (kind, description, details) = match &answer {
        Ok(a) if a.ok => (
            "federated_logout_succeeded",
            "The identity provider ended its session",
            json!({"strategy": conn.strategy, "status": status(&a.status), "upstream_logout_id": id}),
        ),
        Ok(a) => (
            "federated_logout_failed",
            "The identity provider did not end its session",
            json!({"strategy": conn.strategy, "status": status(&a.status), "upstream_logout_id": id}),
        ),
        Err(e) => (
            "federated_logout_failed",
            "The identity provider's answer was refused",
            json!({"strategy": conn.strategy, "reason": e.to_string(), "upstream_logout_id": id}),
        ),
    };
    events::log_with(
        &*deps.store,
        &*deps.clock,
        kind,
        description,
        user.as_ref(),
        None,
        Some(&conn.name),
        client_ip(req),
        details,
    )
    .await;
    Ok(go(
        then.as_ref(),
        "You are signed out. You can close this window.",
    ))
}
