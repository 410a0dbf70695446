//! `POST /api/v2/logs/deliveries/{id}/retry`: an administrator's "retry now" for a back-channel
//! logout delivery that failed (a 4xx, a redirect, or given up after retrying for
//! `LATCH_BACKCHANNEL_RETRY_FOR`) or that waits out its backoff. The delivery's id is the
//! `delivery_id` its log events carry (and `delivery_ids` of the logout that recorded it).

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, web};
use latch_core::model::{Delivery, DeliveryState};
use latch_core::*;
use latch_http::{ApiError, ManagementAuth};
use serde::Serialize;
use utoipa::ToSchema;

use super::{Op, op};
use crate::{Deps, audit};

pub(crate) fn routes() -> Vec<Op> {
    vec![op(
        Method::POST,
        "/logs/deliveries/{id}/retry",
        post_retry_delivery,
    )]
}

/// A back-channel logout delivery, as it stands.
#[derive(Serialize, ToSchema)]
pub(crate) struct DeliveryView {
    id: String,
    /// What is delivered, and so how: `backchannel_logout` (the only kind so far).
    kind: String,
    client_id: String,
    /// The app's back-channel logout URL.
    target: String,
    /// `pending`, `delivered` or `failed`.
    state: String,
    attempts: i32,
    #[schema(format = DateTime)]
    next_attempt_at: Option<String>,
    last_error: Option<String>,
}

fn view(d: &Delivery) -> DeliveryView {
    DeliveryView {
        id: d.id.as_str().to_owned(),
        kind: d.kind.as_str().to_owned(),
        client_id: d.client_id.as_str().to_owned(),
        target: d.target.to_string(),
        state: d.state.as_str().to_owned(),
        attempts: d.attempts,
        next_attempt_at: d
            .next_attempt_at
            .format(&time::format_description::well_known::Rfc3339)
            .ok(),
        last_error: d.last_error.clone(),
    }
}

/// Sends a failed back-channel logout delivery again now (or one waiting out its backoff): it
/// becomes `pending`, due at once, with the same logout token `jti`. One more failure on a
/// delivery older than the retry window fails it again.
#[utoipa::path(post, path = "/api/v2/logs/deliveries/{id}/retry", tag = "logs",
    params(("id" = String, Path, description = "The delivery's id (`details.delivery_id` of its log events).")),
    responses(
        (status = 200, description = "Pending again, due now.", body = DeliveryView),
        (status = 409, description = "Delivered already, or being attempted right now.", body = latch_http::error::ErrorBody),
    ),
    security(("bearer" = ["delete:sessions"])))]
async fn post_retry_delivery(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(retry(&deps, &auth, &req, &id).await?))
}

async fn retry(
    deps: &Deps,
    auth: &ManagementAuth,
    req: &HttpRequest,
    id: &str,
) -> Result<DeliveryView, ApiError> {
    // Re-sending a logout is part of ending sessions.
    auth.require("delete:sessions")?;
    let id = DeliveryId::new(id);
    let now = deps.clock.now();
    let Some(d) = deps.store.retry_delivery(&id, now).await? else {
        let d = deps.store.get_delivery(&id).await?;
        let mut e = ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            if d.state == DeliveryState::Delivered {
                "This delivery succeeded already."
            } else {
                "This delivery is being attempted right now."
            },
        );
        e.field = Some("id".into());
        return Err(e);
    };
    // Unreserved: a worker claims it at once.
    deps.notifier.dispatch(std::slice::from_ref(&d));
    audit::record(
        deps,
        req,
        auth,
        "Retry a back-channel logout delivery",
        Some(&d.client_id),
        None,
    )
    .await;
    Ok(view(&d))
}

/// For the admin UI.
pub(crate) mod ops {
    use super::*;

    /// Retries the delivery now.
    pub(crate) async fn retry(
        deps: &Deps,
        auth: &ManagementAuth,
        req: &HttpRequest,
        id: &str,
    ) -> Result<(), ApiError> {
        super::retry(deps, auth, req, id).await.map(|_| ())
    }
}
