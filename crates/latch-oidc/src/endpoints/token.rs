//! `POST /oauth/token`: `authorization_code` (single use, PKCE), `refresh_token` (rotation with
//! reuse detection).

use std::task::Poll;

use actix_web::{HttpRequest, HttpResponse, web};
use latch_core::model::{GrantType, RevokeScope};
use latch_http::{OAuthError, OAuthErrorCode, client_ip};
use serde::Deserialize;
use serde_json::json;

use crate::issue::{self, Grant, family_of, has_scope};
use crate::{Deps, client_auth};

#[derive(Deserialize)]
pub struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    scope: Option<String>,
    audience: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn ok(body: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Pragma", "no-cache"))
        .json(body)
}

pub async fn post_token(
    deps: web::Data<Deps>,
    req: HttpRequest,
    form: web::Form<TokenForm>,
) -> Result<HttpResponse, OAuthError> {
    let f = form.into_inner();
    let client = client_auth::authenticate(
        &deps,
        &req,
        f.client_id.as_deref(),
        f.client_secret.as_deref(),
    )
    .await?;
    match f.grant_type.as_deref() {
        Some("authorization_code")
            if client.grant_types.contains(&GrantType::AuthorizationCode) =>
        {
            authorization_code(&deps, &req, &client, f).await
        }
        Some("refresh_token") if client.grant_types.contains(&GrantType::RefreshToken) => {
            refresh(&deps, &req, &client, f).await
        }
        Some("client_credentials")
            if client.grant_types.contains(&GrantType::ClientCredentials)
                && !client.app_type.is_public() =>
        {
            client_credentials(&deps, &req, &client, f).await
        }
        Some("authorization_code" | "refresh_token" | "client_credentials") => {
            Err(OAuthError::new(
                OAuthErrorCode::UnauthorizedClient,
                "This client may not use this grant type.",
            ))
        }
        Some(_) => Err(OAuthError::new(
            OAuthErrorCode::UnsupportedGrantType,
            "Unsupported grant_type.",
        )),
        None => Err(OAuthError::invalid_request("grant_type is required.")),
    }
}

async fn authorization_code(
    deps: &Deps,
    req: &HttpRequest,
    client: &latch_core::model::Client,
    f: TokenForm,
) -> Result<HttpResponse, OAuthError> {
    let code = f
        .code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("code is required."))?;
    let now = deps.clock.now();
    let digest = latch_jose::token_digest(&code);
    let Some(stored) = deps.sessions.take_code(&digest, now).await? else {
        // Unknown, expired, or already used. If it was used, revoke what its first use issued.
        let revoked = deps
            .store
            .revoke_refresh_tokens(&RevokeScope::Family(family_of(&digest)), now)
            .await?;
        if !revoked.is_empty() {
            issue::log(
                deps,
                "feacft",
                "Authorization code reused: its tokens were revoked",
                Some(&revoked[0].user_id),
                Some(&client.client_id),
                None,
                client_ip(req),
                json!({"revoked": revoked.len()}),
            )
            .await;
        }
        return Err(OAuthError::invalid_grant(
            "The authorization code is invalid, expired or already used.",
        ));
    };
    if stored.client_id != client.client_id {
        return Err(OAuthError::invalid_grant(
            "The authorization code was issued to another client.",
        ));
    }
    if f.redirect_uri.as_deref() != Some(stored.redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request.",
        ));
    }
    match (&stored.code_challenge, f.code_verifier.as_deref()) {
        (Some(challenge), Some(verifier)) => {
            let well_formed = (43..=128).contains(&verifier.len())
                && verifier
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            if !well_formed || !latch_jose::constant_eq(&latch_jose::pkce_s256(verifier), challenge)
            {
                return Err(OAuthError::invalid_grant("PKCE verification failed."));
            }
        }
        (Some(_), None) => return Err(OAuthError::invalid_grant("code_verifier is required.")),
        (None, Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "code_verifier given, but the request had no code_challenge.",
            ));
        }
        (None, None) => {}
    }
    let user = deps
        .store
        .find_user(&stored.user_id)
        .await?
        .filter(|u| !u.blocked)
        .ok_or_else(|| OAuthError::invalid_grant("The user cannot sign in."))?;
    let grant = Grant {
        client,
        user: &user,
        scope: &stored.scope,
        nonce: stored.nonce.as_deref(),
        auth_time: stored.auth_time,
        session_id: stored.session_id.as_ref(),
        sid: stored.sid.as_ref(),
        family: family_of(&digest),
        family_expires_at: None,
    };
    let refresh = issue::new_refresh_token(deps, &grant);
    let record = refresh.as_ref().map(|(_, r)| r);
    // The grant is recorded even without a refresh token: logouts revoke it, and with it every
    // access token that carries its id.
    deps.store
        .insert_grant(&issue::new_grant(deps, &grant, record), record)
        .await?;
    // A code outlives nothing: if its session ended (a logout between the redirect and this
    // exchange, or racing it), the grant just recorded is revoked and no token leaves. Checked
    // after the insert, so a logout either sees the grant or has already ended the session.
    if let Some(session_id) = &stored.session_id
        && deps.sessions.find_session(session_id, now).await?.is_none()
    {
        deps.store
            .revoke_refresh_tokens(&RevokeScope::Family(grant.family.clone()), now)
            .await?;
        return Err(OAuthError::invalid_grant(
            "The session this code was issued in has ended.",
        ));
    }
    let body = issue::token_response(deps, &grant, refresh.as_ref().map(|(t, _)| t.as_str()))?;
    issue::log(
        deps,
        "seacft",
        "Authorization code exchanged for tokens",
        Some(&user.user_id),
        Some(&client.client_id),
        None,
        client_ip(req),
        json!({}),
    )
    .await;
    Ok(ok(body))
}

async fn refresh(
    deps: &Deps,
    req: &HttpRequest,
    client: &latch_core::model::Client,
    f: TokenForm,
) -> Result<HttpResponse, OAuthError> {
    let token = f
        .refresh_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required."))?;
    let now = deps.clock.now();
    let invalid = || OAuthError::invalid_grant("The refresh token is invalid, expired or revoked.");
    // The token and its user in one read.
    let Some((rt, user)) = deps
        .store
        .find_refresh_token_with_user(&latch_jose::token_digest(&token))
        .await?
    else {
        return Err(invalid());
    };
    if rt.client_id != client.client_id {
        return Err(invalid());
    }
    let reuse = |rt: latch_core::model::RefreshToken| async move {
        // A rotated token came back: someone holds a copy. The whole family dies.
        let revoked = deps
            .store
            .revoke_refresh_tokens(&RevokeScope::Family(rt.family_id.clone()), now)
            .await?;
        issue::log(
            deps,
            "ferrt",
            "Refresh token reuse detected: token family revoked",
            Some(&rt.user_id),
            Some(&rt.client_id),
            None,
            client_ip(req),
            json!({"family": rt.family_id, "revoked": revoked.len()}),
        )
        .await;
        Err::<HttpResponse, OAuthError>(invalid())
    };
    if rt.rotated_at.is_some() {
        return reuse(rt).await;
    }
    if !rt.is_usable(now) {
        issue::log(
            deps,
            "fertft",
            "Failed refresh token exchange",
            Some(&rt.user_id),
            Some(&rt.client_id),
            None,
            client_ip(req),
            json!({"reason": "expired or revoked"}),
        )
        .await;
        return Err(invalid());
    }
    // A narrower scope may be asked for; never a wider one.
    let scope = match f.scope.as_deref() {
        None | Some("") => rt.scope.clone(),
        Some(s) => {
            if s.split_whitespace().any(|x| !has_scope(&rt.scope, x)) {
                return Err(OAuthError::new(
                    OAuthErrorCode::InvalidScope,
                    "The scope exceeds the original grant.",
                ));
            }
            s.split_whitespace().collect::<Vec<_>>().join(" ")
        }
    };
    let user = user.filter(|u| !u.blocked).ok_or_else(invalid)?;
    // The sid stays while the session lives. A session store that cannot answer is a 503 that
    // changes nothing (the token is not spent), so the app's retry works once it is back.
    let session = match &rt.session_id {
        Some(id) => deps.sessions.find_session(id, now).await?,
        None => None,
    };
    // A session-bound grant ends with its session, also when the session simply expired (no
    // logout came to revoke it).
    if session.is_none() && rt.session_id.is_some() && !rt.offline {
        deps.store
            .revoke_refresh_tokens(&RevokeScope::Family(rt.family_id.clone()), now)
            .await?;
        issue::log(
            deps,
            "fertft",
            "Failed refresh token exchange",
            Some(&rt.user_id),
            Some(&rt.client_id),
            None,
            client_ip(req),
            json!({"reason": "the session ended"}),
        )
        .await;
        return Err(invalid());
    }
    let sid = session
        .as_ref()
        .and_then(|s| s.clients.iter().find(|c| c.client_id == client.client_id))
        .map(|c| c.sid.clone());
    let grant = Grant {
        client,
        user: &user,
        scope: &scope,
        nonce: None,
        auth_time: session.as_ref().map_or(rt.created_at, |s| s.auth_time),
        session_id: rt.session_id.as_ref(),
        sid: sid.as_ref(),
        family: rt.family_id.clone(),
        family_expires_at: Some(rt.family_expires_at),
    };
    // Rotation and the successor in one step; of two concurrent exchanges of the same token
    // only one wins, the other is reuse.
    let Some((new_token, record)) = issue::new_refresh_token(deps, &grant) else {
        return Err(invalid());
    };
    // The tokens are signed while the rotation's batch is written: its first poll queues it,
    // the signature takes this thread meanwhile, and the answer leaves only once the rotation
    // has committed and won (a lost race throws the signed tokens away).
    let mut rotation = std::pin::pin!(deps.store.rotate_refresh_token(&rt.id, &record, now));
    let queued = std::future::poll_fn(|cx| Poll::Ready(rotation.as_mut().poll(cx))).await;
    let body = issue::token_response(deps, &grant, Some(&new_token));
    let rotated = match queued {
        Poll::Ready(rotated) => rotated,
        Poll::Pending => rotation.await,
    };
    if !rotated? {
        return reuse(rt.clone()).await;
    }
    let body = body?;
    issue::log(
        deps,
        "sertft",
        "Refresh token exchanged",
        Some(&user.user_id),
        Some(&client.client_id),
        None,
        client_ip(req),
        json!({}),
    )
    .await;
    Ok(ok(body))
}

/// `client_credentials`: an access token for an API the client was granted (today the
/// management API, `{issuer}/api/v2/`), with the granted scopes or the asked-for subset.
async fn client_credentials(
    deps: &Deps,
    req: &HttpRequest,
    client: &latch_core::model::Client,
    f: TokenForm,
) -> Result<HttpResponse, OAuthError> {
    let audience = f
        .audience
        .filter(|a| !a.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("audience is required."))?;
    let Some(grant) = deps
        .store
        .find_client_grant(&client.client_id, &audience)
        .await?
    else {
        issue::log(
            deps,
            "fcc",
            "Client credentials exchange refused: no grant for this audience",
            None,
            Some(&client.client_id),
            None,
            client_ip(req),
            json!({"audience": audience}),
        )
        .await;
        return Err(OAuthError::new(
            OAuthErrorCode::AccessDenied,
            "The client has not been granted access to this audience.",
        ));
    };
    let scope: Vec<String> = match f.scope.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => grant.scope.clone(),
        Some(asked) => {
            let asked: Vec<String> = asked.split_whitespace().map(str::to_owned).collect();
            if asked.iter().any(|s| !grant.scope.contains(s)) {
                return Err(OAuthError::new(
                    OAuthErrorCode::InvalidScope,
                    "The scope exceeds what the client was granted.",
                ));
            }
            asked
        }
    };
    let now = deps.clock.now().unix_timestamp();
    let life = client.lifetimes.access_token;
    let claims = json!({
        "iss": deps.issuer,
        "sub": format!("{}@clients", client.client_id),
        "aud": audience,
        "client_id": client.client_id,
        "iat": now,
        "exp": now + life,
        "jti": latch_jose::random_token(16),
        "scope": scope.join(" "),
        "gty": "client-credentials",
    });
    let token = deps
        .keys
        .sign(client.signing_alg, "at+jwt", &claims)
        .map_err(|e| OAuthError::server_error().detail(e.to_string()))?;
    issue::log(
        deps,
        "seccft",
        "Client credentials exchanged for an access token",
        None,
        Some(&client.client_id),
        None,
        client_ip(req),
        json!({"audience": audience}),
    )
    .await;
    Ok(ok(
        json!({ "access_token": token, "token_type": "Bearer", "expires_in": life, "scope": scope.join(" ") }),
    ))
}
