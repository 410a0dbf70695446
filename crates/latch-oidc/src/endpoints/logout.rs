//! `GET/POST /oidc/logout`: OpenID Connect RP-Initiated Logout 1.0.
//!
//! The session cookie, not the `id_token_hint`, decides whose session ends. Without a hint that
//! names the signed-in user, the user confirms first (a one-time form bound to the browser).
//! `post_logout_redirect_uri` must equal one of the client's `allowed_logout_urls`.
//! `federated` (Auth0's; its presence, whatever its value) also ends the session at the
//! upstream IdP, after Latch's own ([`latch_login::Login::federated_logout`]).

use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, web};
use latch_core::logout::{Continue, PageRequest, Target, TokenPolicy, Urgency};
use latch_core::model::{Client, LogoutInitiator, SigningAlg};
use latch_core::session::LoginTransaction;
use latch_core::*;
use latch_http::client_ip;
use latch_jose::VerifyOptions;
use serde::{Deserialize, Serialize};
use serde_json::json;
use url::Url;

use crate::issue;
use crate::pages::{self, LogoutPage};
use crate::{Deps, paths};
use latch_login::cookies;
use latch_login::pages::MessagePage;

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct LogoutParams {
    id_token_hint: Option<String>,
    logout_hint: Option<String>,
    client_id: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    ui_locales: Option<String>,
    /// Auth0's `federated`: present (any value) to end the upstream IdP's session too.
    federated: Option<String>,
    /// The confirmation form's one-time token (POST only).
    #[serde(skip_serializing)]
    confirm: Option<String>,
}

/// Where to send the browser afterwards, already validated.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct After {
    redirect: Option<String>,
    state: Option<String>,
    client_id: Option<ClientId>,
    #[serde(default)]
    federated: bool,
}

fn bad(message: &str) -> HttpResponse {
    pages::error(StatusCode::BAD_REQUEST, "Sign-out failed", message)
}

pub async fn get_logout(
    deps: web::Data<Deps>,
    req: HttpRequest,
    q: web::Query<LogoutParams>,
) -> Result<HttpResponse, latch_http::ApiError> {
    handle(&deps, &req, q.into_inner()).await
}

pub async fn post_logout(
    deps: web::Data<Deps>,
    req: HttpRequest,
    f: web::Form<LogoutParams>,
) -> Result<HttpResponse, latch_http::ApiError> {
    let f = f.into_inner();
    match f.confirm.clone() {
        Some(tx) => confirmed(&deps, &req, &tx).await,
        None => handle(&deps, &req, f).await,
    }
}

async fn handle(
    deps: &Deps,
    req: &HttpRequest,
    p: LogoutParams,
) -> Result<HttpResponse, latch_http::ApiError> {
    // 1. The hint, if any, must be an ID token Latch issued (expiry may be past).
    let hint = match p.id_token_hint.as_deref().filter(|h| !h.is_empty()) {
        None => None,
        Some(h) => {
            let opts = VerifyOptions {
                algs: &[SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA],
                issuer: &deps.issuer,
                audience: None,
                check_expiry: false,
                typ: Some("JWT"),
            };
            match deps.keys.verify_reloading(h, &opts).await {
                Ok(c) => Some(c),
                Err(_) => {
                    return Ok(bad(
                        "The id_token_hint is not a valid ID token from this server.",
                    ));
                }
            }
        }
    };
    // 2. The client: named, or the hint's audience; both must agree.
    let hint_aud = hint
        .as_ref()
        .and_then(|c| c["aud"].as_str().map(str::to_owned));
    let client_id = match (
        p.client_id.as_deref().filter(|c| !c.is_empty()),
        hint_aud.as_deref(),
    ) {
        (Some(a), Some(b)) if a != b => {
            return Ok(bad("client_id does not match the id_token_hint."));
        }
        (Some(a), _) => Some(a.to_owned()),
        (None, b) => b.map(str::to_owned),
    };
    let client: Option<Client> = match &client_id {
        Some(id) => match deps.store.find_client(&ClientId::new(id)).await? {
            Some(c) => Some(c),
            None => return Ok(bad("The application is not known.")),
        },
        None => None,
    };
    // 3. The redirect, exactly as registered.
    let redirect = match p
        .post_logout_redirect_uri
        .as_deref()
        .filter(|u| !u.is_empty())
    {
        None => None,
        Some(uri) => {
            let Some(c) = &client else {
                return Ok(bad(
                    "post_logout_redirect_uri needs client_id or id_token_hint.",
                ));
            };
            if !c.allowed_logout_urls.iter().any(|u| u.as_str() == uri) {
                return Ok(bad(
                    "The post_logout_redirect_uri is not registered for this application.",
                ));
            }
            Some(uri.to_owned())
        }
    };
    let after = After {
        redirect,
        state: p.state,
        client_id: client.as_ref().map(|c| c.client_id.clone()),
        federated: p.federated.is_some(),
    };

    // 4. Whose session: the cookie's.
    let now = deps.clock.now();
    let session = match cookies::session(req) {
        Some(secret) => deps.sessions.find_session(&secret.id(), now).await?,
        None => None,
    };
    let Some(session) = session else {
        return Ok(finish(deps, &after));
    };
    let hint_names_user = hint
        .as_ref()
        .is_some_and(|c| c["sub"].as_str() == Some(session.user_id.as_str()));
    if !hint_names_user {
        // Not sure the request is the user's own: ask.
        let (browser, binding) = cookies::new_binding(req, deps.settings.secure_cookies);
        let tx = LoginTransaction {
            id: LoginTxId::new(latch_jose::random_token(24)),
            expires_at: now + deps.settings.login_ttl,
            payload: json!({ "logout": after, "browser": browser }),
        };
        deps.sessions.insert_login_tx(&tx).await?;
        let mut b = pages::builder(StatusCode::OK);
        if let Some(to) = &after.redirect {
            b.insert_header(("Content-Security-Policy", pages::csp_with_form_target(to)));
        }
        b.cookie(binding);
        return Ok(pages::render(
            b,
            &LogoutPage {
                app_name: client.as_ref().map(|c| c.name.as_str()),
                action: paths::LOGOUT,
                tx: tx.id.as_str(),
            },
        ));
    }
    end(deps, req, &session.id, &after).await
}

async fn confirmed(
    deps: &Deps,
    req: &HttpRequest,
    tx: &str,
) -> Result<HttpResponse, latch_http::ApiError> {
    let now = deps.clock.now();
    let Some(tx) =
        cookies::take_bound_tx(&*deps.sessions, req, tx, now, deps.settings.secure_cookies).await?
    else {
        return Ok(bad(
            "This sign-out form has expired. Sign out again from the application.",
        ));
    };
    let after: Option<After> = serde_json::from_value(tx.payload["logout"].clone()).ok();
    let Some(after) = after else {
        return Ok(bad(
            "This sign-out form has expired. Sign out again from the application.",
        ));
    };
    match cookies::session(req) {
        Some(secret) => end(deps, req, &secret.id(), &after).await,
        None => Ok(finish(deps, &after)),
    }
}

async fn end(
    deps: &Deps,
    req: &HttpRequest,
    id: &SessionId,
    after: &After,
) -> Result<HttpResponse, latch_http::ApiError> {
    // A browser goes back to the app next: the back-channel logouts are tried first (bounded),
    // so the app does not see the user come back before its logout arrives.
    let out = deps
        .logout
        .end(
            Target::Session(id.clone()),
            TokenPolicy::SessionBound,
            LogoutInitiator::RpLogout,
            Urgency::BrowserWaiting,
        )
        .await?;
    let session = out.sessions.first();
    let then = continue_to(after).map(Continue::Get);
    // Federated: the browser goes to the upstream IdP next, which sends it back to Latch and on
    // to `then`.
    let federated = match (after.federated, session) {
        (true, Some(s)) => Some(deps.login.federated_logout(req, s, then.clone()).await),
        _ => None,
    };
    let next = match &federated {
        Some(f) => f.to.clone(),
        None => then,
    };
    // The other apps of the session with a front-channel logout URL are loaded in hidden frames
    // of a logout page, which then continues where the redirect would have gone.
    let page = deps.front_channel.render(&PageRequest {
        issuer: &deps.issuer,
        front_channel: &out.front_channel,
        saml: &out.saml,
        exclude: after.client_id.as_ref(),
        continue_to: next.clone(),
    });
    let mut details = out.browser_event_details(LogoutInitiator::RpLogout, page.as_ref());
    let upstream = match (&federated, session) {
        (Some(f), _) => Some(f.details.clone()),
        (None, Some(s)) => deps.login.upstream_not_asked(s).await,
        (None, None) => None,
    };
    if let Some(u) = upstream {
        details.insert("upstream".into(), u);
    }
    issue::log(
        deps,
        "slo",
        "User successfully logged out",
        session.map(|s| &s.user_id),
        after.client_id.as_ref(),
        session.map(|s| &s.connection),
        client_ip(req),
        serde_json::Value::Object(details),
    )
    .await;
    Ok(match (page, federated) {
        (Some(page), _) => {
            let mut res = HttpResponse::Ok()
                .insert_header(("Content-Security-Policy", page.content_security_policy))
                .insert_header(("Cache-Control", "no-store"))
                .content_type("text/html; charset=utf-8")
                .body(page.html);
            cookies::clear_session(&mut res, deps.settings.secure_cookies);
            res
        }
        (None, Some(_)) => {
            let mut res = latch_login::logout::go(
                next.as_ref(),
                "You are signed out. You can close this window.",
            );
            cookies::clear_session(&mut res, deps.settings.secure_cookies);
            res
        }
        (None, None) => finish(deps, after),
    })
}

/// Where the browser goes after the logout: the post-logout redirect with `state`, or (`None`)
/// the signed-out page.
fn continue_to(after: &After) -> Option<String> {
    let mut u = Url::parse(after.redirect.as_deref()?).ok()?;
    if let Some(s) = &after.state {
        u.query_pairs_mut().append_pair("state", s);
    }
    Some(u.into())
}

/// Clears the cookies and sends the browser on.
fn finish(deps: &Deps, after: &After) -> HttpResponse {
    let mut res = match &after.redirect {
        Some(_) => {
            let Some(u) = continue_to(after) else {
                return bad("The post_logout_redirect_uri is invalid.");
            };
            HttpResponse::Found()
                .insert_header((LOCATION, u))
                .insert_header(("Cache-Control", "no-store"))
                .finish()
        }
        None => pages::render(
            pages::builder(StatusCode::OK),
            &MessagePage {
                title: "Signed out",
                message: "You are signed out. You can close this window.",
                detail: None,
                is_error: false,
            },
        ),
    };
    cookies::clear_session(&mut res, deps.settings.secure_cookies);
    res
}
