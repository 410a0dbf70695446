//! `/api/v2/keys/signing`: list signing keys (public parts and states) and rotate them.

use actix_web::{HttpRequest, HttpResponse, Scope, web};
use latch_http::{ApiError, ManagementAuth};
use serde_json::{Value, json};

use crate::{Deps, audit};

/// How long a retired key stays published: longer than anything it signed can live (ID and
/// access tokens are capped at 30 days by client validation).
pub const RETIRE_AFTER: time::Duration = time::Duration::days(30);

pub fn scope() -> Scope {
    web::scope("/keys/signing")
        .route("", web::get().to(get_keys))
        .route("/rotate", web::post().to(post_rotate))
}

fn rfc3339(t: time::OffsetDateTime) -> Value {
    t.format(&time::format_description::well_known::Rfc3339)
        .map(Value::String)
        .unwrap_or(Value::Null)
}

async fn get_keys(deps: web::Data<Deps>, auth: ManagementAuth) -> Result<HttpResponse, ApiError> {
    auth.require("read:signing_keys")?;
    let keys: Vec<Value> = deps
        .store
        .list_signing_keys()
        .await?
        .iter()
        .map(|k| {
            json!({
                "kid": k.kid,
                "alg": k.alg.as_str(),
                "state": k.state.as_str(),
                "current": k.state == latch_core::model::KeyState::Current,
                "next": k.state == latch_core::model::KeyState::Next,
                "previous": k.state == latch_core::model::KeyState::Previous,
                "revoked": k.state == latch_core::model::KeyState::Revoked,
                "created_at": rfc3339(k.created_at),
                "publish_until": k.publish_until.map(rfc3339),
                "jwk": k.public_jwk,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(keys))
}

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
    let current: Vec<Value> = latch_jose_current(&deps);
    Ok(HttpResponse::Created().json(json!({ "current": current })))
}

fn latch_jose_current(deps: &Deps) -> Vec<Value> {
    use latch_core::model::SigningAlg;
    [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA]
        .into_iter()
        .filter_map(|a| {
            deps.keys
                .current_kid(a)
                .map(|k| json!({"alg": a.as_str(), "kid": k}))
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
