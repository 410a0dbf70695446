//! `POST /login`: the password form (and home realm discovery from it).

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, LOCATION, RETRY_AFTER};
use actix_web::{HttpRequest, HttpResponse, web};
use latch_core::connector::{Limit, SignInContext, SignInError};
use latch_core::model::{Client, User};
use latch_core::*;
use latch_http::client_ip;
use serde::Deserialize;
use serde_json::json;

use crate::events::log;
use crate::flow::{
    by_email_domain, complete_sign_in, login_form, sign_in_connections, upstream_redirect,
};
use crate::pages;
use crate::request::LoginRequest;
use crate::{Deps, cookies};

/// The sign-in form.
#[derive(Deserialize)]
pub struct LoginForm {
    tx: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

/// Checks the posted email and password through the connection's `PasswordConnector`; an email
/// of a federated domain is sent to its IdP instead (when Latch chose the connection).
pub(crate) async fn post_login(
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
    let Ok(r) = serde_json::from_value::<LoginRequest>(tx.payload["request"].clone()) else {
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
                log(
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
            use latch_core::metrics::{SigninResult, signin};
            match &e {
                SignInError::InvalidCredentials | SignInError::Blocked => {
                    signin(connection.strategy, SigninResult::Failure);
                    failed(e.to_string()).await
                }
                SignInError::Store(_) | SignInError::Session(_) => {
                    signin(connection.strategy, SigninResult::Error);
                    failed("unavailable".into()).await
                }
                SignInError::TooManyAttempts { until, limit, .. } => {
                    signin(connection.strategy, SigninResult::Throttled);
                    throttled(&deps, &client, &connection.name, &email, ip, *limit, *until).await
                }
            }
            if let SignInError::Session(_) = &e {
                // A new form needs a new login transaction, in the store that just failed:
                // answer at once rather than wait for it a second time.
                return Ok(pages::error(status, "Sign-in unavailable", &msg));
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
        &connection,
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
    log(
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
