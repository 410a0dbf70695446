//! `POST /oauth/revoke` (RFC 7009) and `POST /oauth/introspect` (RFC 7662). Both authenticate
//! the client and only act on tokens issued to it.

use actix_web::{HttpRequest, HttpResponse, web};
use latch_core::model::RevokeScope;
use latch_core::*;
use latch_http::{OAuthError, OAuthErrorCode, client_ip};
use serde::Deserialize;
use serde_json::json;

use crate::endpoints::userinfo::verify_access_token;
use crate::issue;
use crate::{Deps, client_auth};

#[derive(Deserialize)]
pub struct TokenForm {
    token: Option<String>,
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

pub async fn post_revoke(
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
    let token = f
        .token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("token is required."))?;
    if let Some(h) = f.token_type_hint.as_deref()
        && h != "refresh_token"
        && h != "access_token"
    {
        return Err(OAuthError::new(
            OAuthErrorCode::UnsupportedTokenType,
            "Only refresh and access tokens can be revoked.",
        ));
    }
    let now = deps.clock.now();
    // A refresh token revokes its family (and the access tokens of that grant).
    let family = match deps
        .store
        .find_refresh_token(&latch_jose::token_digest(&token))
        .await?
    {
        Some(rt) if rt.client_id == client.client_id => Some(rt.family_id),
        Some(_) => None,
        None => match verify_access_token(&deps, &token).await {
            Some(c) if c["client_id"].as_str() == Some(client.client_id.as_str()) => {
                c["gid"].as_str().map(FamilyId::new)
            }
            _ => None,
        },
    };
    if let Some(family) = family {
        let revoked = deps
            .store
            .revoke_refresh_tokens(&RevokeScope::Family(family.clone()), now)
            .await?;
        if let Some(t) = revoked.first() {
            issue::log(
                &deps,
                "srrt",
                "Refresh token revoked",
                Some(&t.user_id),
                Some(&client.client_id),
                None,
                client_ip(&req),
                json!({"family": family, "revoked": revoked.len()}),
            )
            .await;
        }
    }
    // RFC 7009 §2.2: 200 whether or not the token was known.
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .finish())
}

pub async fn post_introspect(
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
    if client.app_type.is_public() {
        return Err(OAuthError::invalid_client().detail("public clients may not introspect"));
    }
    let token = f
        .token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("token is required."))?;
    let now = deps.clock.now();
    let inactive = || {
        HttpResponse::Ok()
            .insert_header(("Cache-Control", "no-store"))
            .json(json!({ "active": false }))
    };
    if let Some(rt) = deps
        .store
        .find_refresh_token(&latch_jose::token_digest(&token))
        .await?
    {
        if rt.client_id != client.client_id || !rt.is_usable(now) {
            return Ok(inactive());
        }
        return Ok(HttpResponse::Ok()
            .insert_header(("Cache-Control", "no-store"))
            .json(json!({
                "active": true,
                "token_type": "refresh_token",
                "client_id": rt.client_id,
                "sub": rt.user_id,
                "scope": rt.scope,
                "iat": rt.created_at.unix_timestamp(),
                "exp": rt.expires_at.unix_timestamp(),
                "iss": deps.issuer,
            })));
    }
    match verify_access_token(&deps, &token).await {
        Some(c) if c["client_id"].as_str() == Some(client.client_id.as_str()) => {
            Ok(HttpResponse::Ok()
                .insert_header(("Cache-Control", "no-store"))
                .json(json!({
                    "active": true,
                    "token_type": "access_token",
                    "client_id": c["client_id"],
                    "sub": c["sub"],
                    "scope": c["scope"],
                    "iat": c["iat"],
                    "exp": c["exp"],
                    "iss": c["iss"],
                    "aud": c["aud"],
                    "jti": c["jti"],
                })))
        }
        _ => Ok(inactive()),
    }
}
