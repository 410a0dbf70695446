//! Logout deliveries (every kind the outbox carries: back-channel logout tokens, Global Token
//! Revocation requests), for an administrator's replay:
//! `GET /api/v2/logout-deliveries?user_id=&client_id=&state=` lists them newest first with their
//! attempts, and `POST /api/v2/logout-deliveries/{id}/retry` (also at its first address,
//! `POST /api/v2/logs/deliveries/{id}/retry`) sends one again now, with a fresh token, whether
//! it failed (a 4xx, a redirect, or given up after retrying for `LATCH_BACKCHANNEL_RETRY_FOR`)
//! or waits out its backoff. A delivery's id is the `delivery_id` its log events carry (and
//! `delivery_ids` of the logout that recorded it).

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, web};
use latch_core::model::{Delivery, DeliveryQuery, DeliveryState};
use latch_core::*;
use latch_http::{ApiError, ManagementAuth, StrictQuery};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{Op, op};
use crate::{Deps, audit};

pub(crate) fn routes() -> Vec<Op> {
    vec![
        op(Method::GET, "/logout-deliveries", get_deliveries),
        op(
            Method::POST,
            "/logout-deliveries/{id}/retry",
            post_retry_logout_delivery,
        ),
        op(
            Method::POST,
            "/logs/deliveries/{id}/retry",
            post_retry_delivery,
        ),
    ]
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Deliveries about this user.
    user_id: Option<String>,
    /// Deliveries to this app.
    client_id: Option<String>,
    /// `pending`, `delivered` or `failed`.
    state: Option<String>,
    /// At most this many (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    per_page: Option<u32>,
}

/// Logout deliveries of every kind, newest first, with their attempts so far.
#[utoipa::path(get, path = "/api/v2/logout-deliveries", tag = "logs",
    params(ListQuery),
    responses((status = 200, description = "The deliveries, newest first.", body = Vec<DeliveryView>)),
    security(("bearer" = ["read:logs"])))]
async fn get_deliveries(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    q: StrictQuery<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    auth.require("read:logs")?;
    let state = q
        .state
        .as_deref()
        .map(|s| {
            DeliveryState::parse(s).ok_or_else(|| {
                ApiError::bad_request("state", "state must be pending, delivered or failed")
            })
        })
        .transpose()?;
    let per_page = q.per_page.unwrap_or(100);
    if !(1..=1000).contains(&per_page) {
        return Err(ApiError::bad_request(
            "per_page",
            "per_page must be between 1 and 1000",
        ));
    }
    let query = DeliveryQuery {
        state,
        user_id: q.user_id.as_deref().map(UserId::new),
        client_id: q.client_id.as_deref().map(ClientId::new),
    };
    let items: Vec<DeliveryView> = deps
        .store
        .list_deliveries(&query, per_page)
        .await?
        .iter()
        .map(view)
        .collect();
    Ok(HttpResponse::Ok().json(items))
}

/// A logout delivery, as it stands.
#[derive(Serialize, ToSchema)]
pub(crate) struct DeliveryView {
    id: String,
    /// What is delivered, and so how: `backchannel_logout` or `gtr`.
    kind: String,
    client_id: String,
    /// The user it is about.
    user_id: Option<String>,
    /// Why the session ended (`rp-logout`, `idp-logout`, …).
    initiator: String,
    /// The app's back-channel logout URL or GTR endpoint.
    target: String,
    /// `pending`, `delivered` or `failed`.
    state: String,
    /// Attempts so far.
    attempts: i32,
    #[schema(format = DateTime)]
    created_at: Option<String>,
    #[schema(format = DateTime)]
    next_attempt_at: Option<String>,
    #[schema(format = DateTime)]
    finished_at: Option<String>,
    /// The last attempt's failure.
    last_error: Option<String>,
}

fn view(d: &Delivery) -> DeliveryView {
    let rfc = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    };
    DeliveryView {
        id: d.id.as_str().to_owned(),
        kind: d.kind.as_str().to_owned(),
        client_id: d.client_id.as_str().to_owned(),
        user_id: d.notice.sub.as_ref().map(|u| u.as_str().to_owned()),
        initiator: d.notice.initiator.as_str().to_owned(),
        target: d.target.to_string(),
        state: d.state.as_str().to_owned(),
        attempts: d.attempts,
        created_at: rfc(d.created_at),
        next_attempt_at: rfc(d.next_attempt_at),
        finished_at: d.finished_at.and_then(rfc),
        last_error: d.last_error.clone(),
    }
}

/// Sends a failed logout delivery again now (or one waiting out its backoff), with a fresh
/// token (a new `jti`): it becomes `pending`, due at once. One more failure on a delivery older
/// than the retry window fails it again.
#[utoipa::path(post, path = "/api/v2/logout-deliveries/{id}/retry", tag = "logs",
    params(("id" = String, Path, description = "The delivery's id (`details.delivery_id` of its log events).")),
    responses(
        (status = 200, description = "Pending again, due now.", body = DeliveryView),
        (status = 409, description = "Delivered already, or being attempted right now.", body = latch_http::error::ErrorBody),
    ),
    security(("bearer" = ["delete:sessions"])))]
async fn post_retry_logout_delivery(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(retry(&deps, &auth, &req, &id).await?))
}

/// The first address of [`post_retry_logout_delivery`], kept for the callers that use it.
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
    let jti = Jti::new(uuid::Uuid::new_v4().to_string());
    let Some(d) = deps.store.retry_delivery(&id, now, &jti).await? else {
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
        "Retry a logout delivery",
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
