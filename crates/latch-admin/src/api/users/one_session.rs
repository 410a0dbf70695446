//! `DELETE /api/v2/users/{id}/sessions/{sid}`: ends one of the user's sessions, as the session's
//! own logout would (apps in it are told; its refresh tokens are revoked, offline ones spared).
//!
//! Auth0 names a session by itself (`DELETE /api/v2/sessions/{id}`); the session store indexes
//! sessions by user and by the cookie secret's digest, not by `sid`, so the route names the user
//! and the session is found among theirs.

use super::*;

/// Ends one session of the user: the one whose `sid` (the `id` of `GET
/// /api/v2/users/{id}/sessions`) is given. The apps in it are told (back-channel logout); the
/// refresh tokens and grants bound to it are revoked, `offline_access` ones spared.
#[utoipa::path(delete, path = "/api/v2/users/{id}/sessions/{sid}", tag = "users",
    params(
        ("id" = String, Path, description = "The `user_id`."),
        ("sid" = String, Path, description = "The session's `id` (its `sid`)."),
    ),
    responses((status = 204, description = "The session is ended; apps are being told.")),
    security(("bearer" = ["delete:sessions"]), ("bearer" = ["update:users"])))]
pub(crate) async fn delete_user_session(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (user, sid) = path.into_inner();
    end_session(&deps, &auth, &req, &user, &sid).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Ends the session; the id of the `slo` event that records it (the admin UI links to it).
pub(crate) async fn end_session(
    deps: &Deps,
    auth: &ManagementAuth,
    req: &HttpRequest,
    user: &str,
    sid: &str,
) -> Result<LogId, ApiError> {
    auth.require("delete:sessions")
        .or_else(|_| auth.require("update:users"))?;
    let user = deps.store.get_user(&UserId::new(user)).await?;
    let now = deps.clock.now();
    let Some(session) = deps
        .sessions
        .list_user_sessions(&user.user_id, now)
        .await?
        .into_iter()
        .find(|s| s.sid.as_str() == sid)
    else {
        return Err(ApiError::not_found("session"));
    };
    let out = deps
        .logout
        .end(
            Target::Session(session.id),
            TokenPolicy::SessionBound,
            LogoutInitiator::SessionRevoked,
            Urgency::Background,
        )
        .await?;
    if out.sessions.is_empty() {
        // It ended meanwhile (its own logout, another admin): nothing was done here.
        return Err(ApiError::not_found("session"));
    }
    audit::record(deps, req, auth, "End a user session", None, None).await;
    let event = LogEvent {
        user_id: Some(user.user_id.clone()),
        connection: Some(session.connection.clone()),
        ip: latch_http::client_ip(req).map(|i| i.to_string()),
        details: json!({
            "actor": auth.actor(),
            "initiator": LogoutInitiator::SessionRevoked,
            "sid": session.sid,
            "sessions_ended": out.sessions.len(),
            "refresh_tokens_revoked": out.revoked_tokens.len(),
            "TotalOidcLogoutRequests": latch_core::logout::oidc_logout_requests(&out.deliveries),
            "TotalGtrRequests": latch_core::logout::gtr_requests(&out.deliveries),
            "delivery_ids": out.deliveries.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            "TotalSamlLogoutRequests": 0,
            "saml_unreachable": out.saml_unreachable_without_browser(),
        }),
        ..LogEvent::new(
            deps.clock.now(),
            "slo",
            "User session ended by an administrator",
        )
    };
    let id = event.log_id.clone();
    if let Err(e) = deps.store.insert_log(&event).await {
        tracing::error!(error = %e, "could not record a session's end");
    }
    Ok(id)
}
