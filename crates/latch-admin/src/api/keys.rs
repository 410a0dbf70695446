//! `/api/v2/keys/signing`: list signing keys (public parts and states) and rotate them.

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use latch_http::{ApiError, ManagementAuth};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{Op, op};
use crate::{Deps, audit};

/// How long a retired key stays published: longer than anything it signed can live (ID and
/// access tokens are capped at 30 days by client validation).
pub const RETIRE_AFTER: time::Duration = time::Duration::days(30);

pub(crate) fn routes() -> Vec<Op> {
    vec![
        op(Method::GET, "/keys/signing", get_keys),
        op(Method::POST, "/keys/signing/rotate", post_rotate),
    ]
}

fn rfc3339(t: time::OffsetDateTime) -> Option<String> {
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// A signing key: its public part and where it is in its life.
#[derive(Serialize, ToSchema)]
struct KeyView {
    kid: String,
    /// `RS256`, `ES256` or `EdDSA`.
    alg: String,
    /// `next`, `current`, `previous` or `revoked`.
    state: String,
    current: bool,
    next: bool,
    previous: bool,
    revoked: bool,
    #[schema(format = DateTime)]
    created_at: Option<String>,
    /// A retired key stays in the JWKS until then.
    #[schema(format = DateTime)]
    publish_until: Option<String>,
    /// The public JWK as published.
    #[schema(value_type = Object)]
    jwk: Value,
}

/// The current key of an algorithm.
#[derive(Serialize, ToSchema)]
struct CurrentKey {
    alg: String,
    kid: String,
}

/// The keys signing after a rotation.
#[derive(Serialize, ToSchema)]
struct Rotated {
    current: Vec<CurrentKey>,
}

/// Every signing key, published or not.
#[utoipa::path(get, path = "/api/v2/keys/signing", tag = "keys",
    responses((status = 200, description = "The keys.", body = Vec<KeyView>)),
    security(("bearer" = ["read:signing_keys"])))]
async fn get_keys(deps: web::Data<Deps>, auth: ManagementAuth) -> Result<HttpResponse, ApiError> {
    auth.require("read:signing_keys")?;
    use latch_core::model::KeyState;
    let keys: Vec<KeyView> = deps
        .store
        .list_signing_keys()
        .await?
        .iter()
        .map(|k| KeyView {
            kid: k.kid.as_str().to_owned(),
            alg: k.alg.as_str().to_owned(),
            state: k.state.as_str().to_owned(),
            current: k.state == KeyState::Current,
            next: k.state == KeyState::Next,
            previous: k.state == KeyState::Previous,
            revoked: k.state == KeyState::Revoked,
            created_at: rfc3339(k.created_at),
            publish_until: k.publish_until.and_then(rfc3339),
            jwk: k.public_jwk.clone(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(keys))
}

/// Rotates every algorithm's key: the next key signs, the current one retires (published 30
/// more days), a new next key is made.
#[utoipa::path(post, path = "/api/v2/keys/signing/rotate", tag = "keys",
    responses((status = 201, description = "Rotated.", body = Rotated)),
    security(("bearer" = ["create:signing_keys"])))]
async fn post_rotate(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    auth.require("create:signing_keys")?;
    deps.keys.rotate(RETIRE_AFTER).await.map_err(|e| {
        tracing::error!(error = %e, "key rotation failed");
        ApiError::new(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "Key rotation failed.",
        )
    })?;
    audit::record(&deps, &req, &auth, "Rotate signing keys", None, None).await;
    Ok(HttpResponse::Created().json(Rotated {
        current: latch_jose_current(&deps),
    }))
}

fn latch_jose_current(deps: &Deps) -> Vec<CurrentKey> {
    use latch_core::model::SigningAlg;
    [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA]
        .into_iter()
        .filter_map(|a| {
            deps.keys.current_kid(a).map(|k| CurrentKey {
                alg: a.as_str().to_owned(),
                kid: k.as_str().to_owned(),
            })
        })
        .collect()
}

/// The admin UI's writes go through the API's own handlers (same checks, same audit events).
pub(crate) mod ops {
    use super::*;

    pub(crate) async fn rotate(
        deps: &web::Data<Deps>,
        auth: ManagementAuth,
        req: &HttpRequest,
    ) -> Result<(), ApiError> {
        post_rotate(deps.clone(), auth, req.clone()).await?;
        Ok(())
    }
}
