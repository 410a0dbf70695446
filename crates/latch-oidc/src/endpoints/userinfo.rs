//! `GET/POST /userinfo` with a Bearer access token.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use latch_core::model::SigningAlg;
use latch_core::*;
use latch_jose::VerifyOptions;
use serde_json::{Value, json};

use crate::issue::user_claims;
use crate::{Deps, paths};

fn unauthorized(error: &str, description: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::UNAUTHORIZED)
        .insert_header((
            "WWW-Authenticate",
            format!(
                "Bearer realm=\"latch\", error=\"{error}\", error_description=\"{description}\""
            ),
        ))
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({ "error": error, "error_description": description }))
}

/// Verifies one of Latch's access tokens and that its grant still stands: an opaque (sealed)
/// one, or a JWT one of an earlier release still within its lifetime.
pub async fn verify_access_token(deps: &Deps, token: &str) -> Option<Value> {
    let audience = deps.url(paths::USERINFO);
    let claims = if latch_jose::TokenSealer::is_sealed(token) {
        let c = deps.sealer.open(token)?;
        let now = deps.clock.now().unix_timestamp();
        let for_us = c["iss"] == deps.issuer.as_str()
            && c["aud"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == audience.as_str()));
        if !for_us || c["exp"].as_i64().is_none_or(|exp| exp <= now) {
            return None;
        }
        c
    } else {
        let opts = VerifyOptions {
            algs: &[SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA],
            issuer: &deps.issuer,
            audience: Some(&audience),
            check_expiry: true,
            typ: Some("at+jwt"),
        };
        deps.keys.verify_reloading(token, &opts).await.ok()?
    };
    // A user's token stands only while its grant does: a logout, a refresh token's reuse, a
    // code's replay or a revocation ends the grant and, with it, every token carrying its id.
    // A token without a grant on record is refused (fail closed).
    let gid = claims["gid"].as_str()?;
    let grant = deps.store.find_grant(&FamilyId::new(gid)).await.ok()??;
    let is_users = claims["sub"].as_str() == Some(grant.user_id.as_str())
        && claims["client_id"].as_str() == Some(grant.client_id.as_str());
    (is_users && grant.revoked_at.is_none()).then_some(claims)
}

pub async fn get_userinfo(deps: web::Data<Deps>, req: HttpRequest) -> HttpResponse {
    let Some(token) = latch_http::auth::bearer(&req) else {
        return unauthorized("invalid_request", "An access token is required");
    };
    let Some(claims) = verify_access_token(&deps, token).await else {
        return unauthorized("invalid_token", "The access token is invalid or expired");
    };
    let Some(sub) = claims["sub"].as_str() else {
        return unauthorized("invalid_token", "No subject");
    };
    let user = match deps.store.find_user(&UserId::new(sub)).await {
        Ok(Some(u)) if !u.blocked => u,
        Ok(_) => return unauthorized("invalid_token", "The user is no longer active"),
        Err(e) => return actix_web::ResponseError::error_response(&latch_http::ApiError::from(e)),
    };
    let mut out = serde_json::Map::new();
    out.insert("sub".into(), json!(user.user_id));
    user_claims(&user, claims["scope"].as_str().unwrap_or(""), &mut out);
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(Value::Object(out))
}
