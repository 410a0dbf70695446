//! `GET|POST /samlp/{client_id}/logout`: SAML Single Logout with a SAML app.
//!
//! A LogoutRequest from the app ends the Latch session it names (NameID and SessionIndex as
//! Latch issued them; NameID alone: every session in which the app holds that NameID) through
//! the Logout service, with the browser waiting; the logout page then tells every other app of
//! the session and continues to the app's signed LogoutResponse (`Success`, or `Responder` /
//! `PartialLogout` when another SAML app of the session cannot be told). A LogoutResponse is an
//! app's answer to a LogoutRequest a logout page sent: checked and logged.

use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, web};
use latch_core::logout::{Continue, Ended, PageRequest, Target, TokenPolicy, Urgency};
use latch_core::model::{Client, LogoutInitiator, SamlpAddon};
use latch_core::session::Session;
use latch_core::{ClientId, UserId};
use latch_http::client_ip;
use latch_saml::idp::{
    Inbound, Kind, Message, Outbound, STATUS_PARTIAL_LOGOUT, STATUS_RESPONDER, STATUS_SUCCESS,
    logout_response_xml, new_id,
};
use serde_json::json;

use crate::{Deps, not_a_saml_app, paths, refused};

/// Logout messages are small; a larger one is no SP's.
const MAX_LOGOUT_MESSAGE: usize = 32 * 1024;

/// The scope under which accepted LogoutRequest IDs are remembered.
const REPLAY_SCOPE: &str = "samlp_logout_request";

pub(crate) async fn get_slo(
    deps: web::Data<Deps>,
    req: HttpRequest,
    client_id: web::Path<String>,
) -> Result<HttpResponse, latch_http::ApiError> {
    if deps.saml_app(&client_id).await?.is_none() {
        return Ok(not_a_saml_app());
    }
    let raw = req.query_string();
    let (inbound, request) = match Inbound::from_redirect(raw, "SAMLRequest") {
        Ok(Some(i)) => (i, true),
        Ok(None) => match Inbound::from_redirect(raw, "SAMLResponse") {
            Ok(Some(i)) => (i, false),
            Ok(None) => return Ok(refused(&client_id, "no SAMLRequest or SAMLResponse")),
            Err(e) => return Ok(refused(&client_id, &e.to_string())),
        },
        Err(e) => return Ok(refused(&client_id, &e.to_string())),
    };
    handle(&deps, &req, &client_id, inbound, request).await
}

#[derive(serde::Deserialize)]
pub(crate) struct SloForm {
    #[serde(rename = "SAMLRequest")]
    saml_request: Option<String>,
    #[serde(rename = "SAMLResponse")]
    saml_response: Option<String>,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

pub(crate) async fn post_slo(
    deps: web::Data<Deps>,
    req: HttpRequest,
    client_id: web::Path<String>,
    form: web::Form<SloForm>,
) -> Result<HttpResponse, latch_http::ApiError> {
    if deps.saml_app(&client_id).await?.is_none() {
        return Ok(not_a_saml_app());
    }
    let f = form.into_inner();
    let (value, request) = match (f.saml_request, f.saml_response) {
        (Some(v), None) => (v, true),
        (None, Some(v)) => (v, false),
        _ => {
            return Ok(refused(
                &client_id,
                "exactly one of SAMLRequest and SAMLResponse is expected",
            ));
        }
    };
    let inbound = match Inbound::from_post(&value, f.relay_state) {
        Ok(i) => i,
        Err(e) => return Ok(refused(&client_id, &e.to_string())),
    };
    if request {
        // A cross-site POST brings no `SameSite=Lax` session cookie, and the logout must see
        // the browser's session: the message goes on as a GET (see `sso::post_sso`).
        if let Err(why) = crate::bounded(&inbound, MAX_LOGOUT_MESSAGE) {
            return Ok(refused(&client_id, why));
        }
        return Ok(crate::see_other_with(
            &paths::slo(&client_id),
            &inbound,
            "SAMLRequest",
            None,
        ));
    }
    handle(&deps, &req, &client_id, inbound, request).await
}

/// Checks whatever arrived (signature, kind, common checks, issuer) and dispatches.
async fn handle(
    deps: &Deps,
    req: &HttpRequest,
    client_id: &str,
    inbound: Inbound,
    request: bool,
) -> Result<HttpResponse, latch_http::ApiError> {
    let Some((client, addon)) = deps.saml_app(client_id).await? else {
        return Ok(not_a_saml_app());
    };
    if let Err(why) = crate::bounded(&inbound, MAX_LOGOUT_MESSAGE) {
        return Ok(refused(client_id, why));
    }
    let xml = match crate::believed(&inbound, &addon, "logout messages") {
        Ok(x) => x,
        Err(why) => return Ok(refused(client_id, &why)),
    };
    let m = match Message::parse(&xml) {
        Ok(m) => m,
        Err(e) => return Ok(refused(client_id, &e.to_string())),
    };
    let expected = if request {
        Kind::LogoutRequest
    } else {
        Kind::LogoutResponse
    };
    if m.kind != expected {
        return Ok(refused(
            client_id,
            "the message is not the logout message its field names",
        ));
    }
    let now = deps.clock.now();
    if let Err(e) = m.check_common(&deps.url(&paths::slo(client_id)), now) {
        return Ok(refused(client_id, &e.to_string()));
    }
    if m.issuer.as_deref() != Some(addon.audience.as_str()) {
        return Ok(refused(
            client_id,
            "the message's Issuer is not this application's audience",
        ));
    }
    match &addon.signing_cert {
        // SAML bindings §3.4.5.2, §3.5.5.2: a signed message names where it is going.
        Some(_) if m.attr("Destination").is_none() => {
            return Ok(refused(
                client_id,
                "a signed message must carry a Destination",
            ));
        }
        // Unsigned, only the SessionIndex Latch issued (128 random bits, in the app's assertion
        // alone) shows the request comes from the app: a NameID is no secret.
        None if request && m.session_indexes.is_empty() => {
            return Ok(refused(
                client_id,
                "an unsigned LogoutRequest must name the SessionIndex it ends",
            ));
        }
        _ => {}
    }
    if request {
        logout_request(deps, req, &client, &addon, &m, inbound.relay_state).await
    } else {
        Ok(logout_response(deps, req, &client, &m, addon.signing_cert.is_some()).await)
    }
}

/// The sessions a LogoutRequest names: the NameID's user's live sessions in which this app
/// holds that NameID, and, when the request lists SessionIndexes, one of them.
async fn named_sessions(
    deps: &Deps,
    client: &ClientId,
    m: &Message,
) -> Result<Vec<Session>, latch_http::ApiError> {
    let Some(name_id) = m.name_id.as_ref().filter(|n| !n.value.is_empty()) else {
        return Ok(Vec::new());
    };
    let now = deps.clock.now();
    // Whatever Format the SP sends back (some omit it, or say `unspecified` for an email), the
    // NameID is the one Latch issued: a `user_id` or an email. The match below is on the value
    // the session's entry for this app holds.
    let mut users: Vec<UserId> = deps
        .store
        .find_users_by_email(&name_id.value)
        .await?
        .into_iter()
        .map(|u| u.user_id)
        .collect();
    if deps
        .store
        .find_user(&UserId::new(name_id.value.clone()))
        .await?
        .is_some()
    {
        users.push(UserId::new(name_id.value.clone()));
    }
    users.dedup();
    let mut out = Vec::new();
    for user in &users {
        for s in deps.sessions.list_user_sessions(user, now).await? {
            let named = s.clients.iter().any(|c| {
                c.client_id == *client
                    && c.saml.as_ref().is_some_and(|p| {
                        p.name_id == name_id.value
                            && (m.session_indexes.is_empty()
                                || m.session_indexes.contains(&p.session_index))
                    })
            });
            if named {
                out.push(s);
            }
        }
    }
    Ok(out)
}

async fn logout_request(
    deps: &Deps,
    req: &HttpRequest,
    client: &Client,
    addon: &SamlpAddon,
    m: &Message,
    relay_state: Option<String>,
) -> Result<HttpResponse, latch_http::ApiError> {
    let id = client.client_id.as_str();
    let now = deps.clock.now();
    // Accepted once: the ID is remembered as long as the request could be valid.
    let until = now
        + time::Duration::seconds(
            latch_saml::MAX_ISSUE_DELAY_SECONDS + 2 * latch_saml::CLOCK_SKEW_SECONDS,
        );
    let request_id = m.id().unwrap_or_default().to_owned();
    if !deps
        .sessions
        .remember_once(REPLAY_SCOPE, &format!("{id} {request_id}"), until, now)
        .await?
    {
        return Ok(refused(id, "this LogoutRequest was already used"));
    }
    // Only what the request names ends: an unknown SessionIndex ends nothing, even when this
    // browser holds a newer session of the same user (the issue's "another SessionIndex").
    let doomed = named_sessions(deps, &client.client_id, m).await?;
    let mut ended = Ended::default();
    for s in &doomed {
        let out = deps
            .logout
            .end(
                Target::Session(s.id.clone()),
                TokenPolicy::SessionBound,
                LogoutInitiator::RpLogout,
                Urgency::BrowserWaiting,
            )
            .await?;
        ended.sessions.extend(out.sessions);
        ended.revoked_tokens.extend(out.revoked_tokens);
        ended.deliveries.extend(out.deliveries);
        ended.front_channel.extend(out.front_channel);
        ended.saml.extend(out.saml);
        ended.unreachable.extend(out.unreachable);
    }
    // Every other SAML app of the session must be sent a LogoutRequest by the page: those that
    // cannot be (no SingleLogoutService), and those whose request could not be made, make the
    // answer `PartialLogout`. Which ones the page will carry is known before it is rendered:
    // a request that fails to sign is logged and left out, and checked again below.
    let others: Vec<&latch_core::logout::SamlLogoutTarget> = ended
        .saml
        .iter()
        .filter(|t| t.client_id != client.client_id)
        .collect();
    let mut unreachable: Vec<String> = ended
        .unreachable
        .iter()
        .filter(|c| **c != client.client_id)
        .map(|c| c.as_str().to_owned())
        .collect();
    let signable = deps.keys.snapshot().is_ok();
    if !signable {
        unreachable.extend(others.iter().map(|t| t.client_id.as_str().to_owned()));
    }
    let (status, second) = if unreachable.is_empty() {
        (STATUS_SUCCESS, None)
    } else {
        (STATUS_RESPONDER, Some(STATUS_PARTIAL_LOGOUT))
    };
    // The answer to the app: at its SingleLogoutService, in the binding it takes LogoutRequests
    // in, signed.
    let answer = match &addon.logout.callback {
        Some(callback) => {
            let keys = deps.keys.snapshot().map_err(server_error)?;
            let response_id = new_id();
            let xml = logout_response_xml(
                &response_id,
                &deps.issuer,
                callback.as_str(),
                Some(&request_id),
                status,
                second,
                now,
            );
            let out = Outbound::carry(
                &keys.signing,
                &addon.binding,
                callback,
                false,
                &xml,
                &response_id,
                relay_state.as_deref(),
            )
            .map_err(server_error)?;
            Some(out.into_continue())
        }
        None => None,
    };
    // Federated logout when the session's connection asks for it: the IdP first, then the
    // answer to the app.
    // Only for the session of the browser that brought the request: a LogoutRequest (unsigned,
    // from an app without a certificate) naming someone else's session must not make Latch
    // sign an upstream LogoutRequest for their IdP session into this browser.
    let mut federated = None;
    let own = latch_login::cookies::session(req).map(|s| s.id());
    if let Some(s) = ended.sessions.first() {
        let conn = deps.store.find_connection_by_name(&s.connection).await?;
        let wants = conn
            .as_ref()
            .is_some_and(latch_core::connection_options::federated_logout);
        if wants && own.as_ref() == Some(&s.id) {
            federated = Some(deps.login.federated_logout(req, s, answer.clone()).await);
        } else if let (true, Some(c)) = (wants, conn) {
            federated = Some(latch_login::logout::Federated {
                to: answer.clone(),
                details: json!({
                    "connection": c.name.as_str(),
                    "strategy": c.strategy,
                    "told": false,
                    "reason": "the request did not come from the session's browser",
                }),
            });
        }
    }
    let answer = match &federated {
        Some(f) => f.to.clone(),
        None => answer,
    };
    let page = deps.front_channel.render(&PageRequest {
        issuer: &deps.issuer,
        front_channel: &ended.front_channel,
        saml: &ended.saml,
        exclude: Some(&client.client_id),
        continue_to: answer.clone(),
    });
    let saml = page.as_ref().map(|p| p.saml.as_slice()).unwrap_or_default();
    // What the page did not carry (a request that could not be made) was not told either; the
    // answer already went out with the status above, the event says what happened.
    for t in &others {
        let id = t.client_id.as_str().to_owned();
        if !saml.iter().any(|s| s.client_id == t.client_id) && !unreachable.contains(&id) {
            unreachable.push(id);
        }
    }
    let session = ended.sessions.first();
    let upstream = match (&federated, session) {
        (Some(f), _) => Some(f.details.clone()),
        (None, Some(s)) => deps.login.upstream_not_asked(s).await,
        (None, None) => None,
    };
    latch_login::events::log_with(
        &*deps.store,
        &*deps.clock,
        "slo",
        "User successfully logged out",
        session.map(|s| &s.user_id),
        Some(&client.client_id),
        session.map(|s| &s.connection),
        client_ip(req),
        {
            let mut details = ended.browser_event_details(LogoutInitiator::RpLogout, page.as_ref());
            details.insert("protocol".into(), json!("samlp"));
            details.insert("logout_request_id".into(), json!(request_id));
            details.insert("saml_unreachable".into(), json!(unreachable));
            details.insert("status".into(), json!(second.unwrap_or(status)));
            if let Some(u) = upstream {
                details.insert("upstream".into(), u);
            }
            serde_json::Value::Object(details)
        },
    )
    .await;
    // The browser's own session cookie goes when its session ended.
    let own = latch_login::cookies::session(req).map(|s| s.id());
    let clear = own.is_some_and(|id| ended.sessions.iter().any(|s| s.id == id));
    let mut res = match (page, answer) {
        (Some(page), _) => HttpResponse::Ok()
            .insert_header(("Content-Security-Policy", page.content_security_policy))
            .insert_header(("Cache-Control", "no-store"))
            .content_type("text/html; charset=utf-8")
            .body(page.html),
        (None, Some(Continue::Get(url))) => HttpResponse::Found()
            .insert_header((LOCATION, url))
            .insert_header(("Cache-Control", "no-store"))
            .finish(),
        (None, Some(Continue::Post { action, fields })) => {
            latch_login::pages::post_page("Signing out", &action, &fields)
        }
        (None, None) => signed_out("You are signed out. You can close this window."),
    };
    if clear {
        latch_login::cookies::clear_session(&mut res, deps.secure_cookies);
    }
    Ok(res)
}

/// An app's LogoutResponse to a LogoutRequest a logout page sent it: logged (the `slo` event
/// that sent the request lists its ID), answered with a blank page (it loads in a hidden frame).
async fn logout_response(
    deps: &Deps,
    req: &HttpRequest,
    client: &Client,
    m: &Message,
    signed: bool,
) -> HttpResponse {
    let status: Vec<&str> = m.status.iter().map(String::as_str).collect();
    let ok = status.first() == Some(&STATUS_SUCCESS);
    latch_login::events::log_with(
        &*deps.store,
        &*deps.clock,
        "saml_logout_response",
        if ok {
            "SAML application confirmed the logout"
        } else {
            "SAML application reported a failed logout"
        },
        None,
        Some(&client.client_id),
        None,
        client_ip(req),
        json!({
            "in_response_to": m.attr("InResponseTo"),
            "status": status,
            "acknowledged": ok,
            "signed": signed,
        }),
    )
    .await;
    // This page loads in a hidden frame of Latch's own logout page: framing by Latch is allowed.
    let mut res = signed_out("You are signed out of this application.");
    let h = res.headers_mut();
    h.insert(
        actix_web::http::header::CONTENT_SECURITY_POLICY,
        actix_web::http::header::HeaderValue::from_static(FRAMED_CSP),
    );
    h.insert(
        actix_web::http::header::X_FRAME_OPTIONS,
        actix_web::http::header::HeaderValue::from_static("SAMEORIGIN"),
    );
    res
}

/// The CSP of the page answering a LogoutResponse: Latch's page CSP, framed by Latch only.
const FRAMED_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'self'";

fn server_error(e: impl std::fmt::Display) -> latch_http::ApiError {
    tracing::error!(error = %e, "SAML logout answer not made");
    latch_http::ApiError::new(
        actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "the logout answer could not be signed",
    )
}

fn signed_out(message: &str) -> HttpResponse {
    use latch_login::pages;
    pages::render(
        pages::builder(actix_web::http::StatusCode::OK),
        &pages::MessagePage {
            title: "Signed out",
            message,
            detail: None,
            is_error: false,
        },
    )
}
