//! `/login/callback`: upstream IdPs send the browser back (`GET`), and SAML IdPs post their
//! Response to the AssertionConsumerService (`POST`).

use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, web};
use latch_core::model::Strategy;
use latch_core::session::LoginTransaction;
use latch_core::*;
use latch_http::client_ip;
use serde::Deserialize;
use serde_json::json;

use crate::events::log;
use crate::flow::complete_sign_in;
use crate::pages;
use crate::request::LoginRequest;
use crate::{Deps, cookies, paths};

/// `GET /login/callback`: the IdP sends the browser back. Every failure ends on a page and a log
/// event, never in a session.
pub(crate) async fn get_callback(
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
        return Ok(pages::expired());
    };
    let Ok(r) = serde_json::from_value::<LoginRequest>(tx.payload["request"].clone()) else {
        return Ok(pages::expired());
    };
    let Some(connection) = deps.store.find_connection_by_name(&r.connection).await? else {
        return Ok(pages::expired());
    };
    let ip = client_ip(&req);
    let fail = |reason: String| upstream_failed(&deps, &r, &connection, ip, reason);
    // A SAML answer was checked when the IdP posted it (see `post_callback`).
    let verified = tx
        .payload
        .get("identity")
        .map(|v| serde_json::from_value::<latch_core::connector::UpstreamIdentity>(v.clone()));
    let identity = match verified {
        Some(Ok(i)) => i,
        Some(Err(_)) => return Ok(pages::expired()),
        None => match deps
            .upstream
            .finish(&connection, &deps.issuer, &params, &tx.payload["upstream"])
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
        &connection,
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
pub(crate) async fn post_callback(
    deps: web::Data<Deps>,
    req: HttpRequest,
    q: web::Query<AcsQuery>,
    form: web::Form<AcsForm>,
) -> Result<HttpResponse, latch_http::ApiError> {
    let form = form.into_inner();
    let now = deps.clock.now();
    let state = form.relay_state.as_str();
    if state.is_empty() || state.len() > 128 {
        // Only SAML IdPs post here.
        latch_core::metrics::signin(Strategy::Samlp, latch_core::metrics::SigninResult::Failure);
        log(
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
        return Ok(pages::expired());
    }
    let Some(tx) = deps
        .sessions
        .take_login_tx(&LoginTxId::new(state), now)
        .await?
    else {
        return Ok(pages::expired());
    };
    let Ok(r) = serde_json::from_value::<LoginRequest>(tx.payload["request"].clone()) else {
        return Ok(pages::expired());
    };
    let Some(connection) = deps.store.find_connection_by_name(&r.connection).await? else {
        return Ok(pages::expired());
    };
    let fail = |reason: String| upstream_failed(&deps, &r, &connection, client_ip(&req), reason);
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
        .finish(&connection, &deps.issuer, &params, &tx.payload["upstream"])
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

/// An upstream answer Latch refused: an `f` event with the reason, a page without it.
async fn upstream_failed(
    deps: &Deps,
    r: &LoginRequest,
    connection: &latch_core::model::Connection,
    ip: Option<std::net::IpAddr>,
    reason: String,
) -> HttpResponse {
    latch_core::metrics::signin(
        connection.strategy,
        latch_core::metrics::SigninResult::Failure,
    );
    log(
        deps,
        "f",
        "Failed login",
        None,
        Some(&r.client_id),
        Some(&connection.name),
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
