//! `/api/v2/client-grants`: which clients may get `client_credentials` tokens for the
//! management API, with which scopes (Auth0's client grants).

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use latch_core::model::{AppType, ClientGrant, GrantType};
use latch_core::*;
use latch_http::{ApiError, ManagementAuth, StrictJson, StrictQuery};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{Op, op};
use crate::{Deps, audit};

/// Scopes of the management API.
pub const SCOPES: &[&str] = &[
    "read:clients",
    "create:clients",
    "update:clients",
    "delete:clients",
    "update:client_keys",
    "read:client_grants",
    "create:client_grants",
    "update:client_grants",
    "delete:client_grants",
    "read:connections",
    "create:connections",
    "update:connections",
    "delete:connections",
    // SCIM configuration and tokens (Auth0's): a SCIM token creates and deletes users, so
    // these are their own scopes, not the connections' ones.
    "read:scim_config",
    "create:scim_config",
    "update:scim_config",
    "delete:scim_config",
    "read:scim_token",
    "create:scim_token",
    "delete:scim_token",
    "read:users",
    "create:users",
    "update:users",
    // Changing `app_metadata.roles` (who is an administrator) and setting a password are
    // escalations `update:users` alone must not allow: a grant names them explicitly.
    "update:roles",
    "update:passwords",
    "delete:users",
    "delete:sessions",
    "read:signing_keys",
    "create:signing_keys",
    "read:logs",
    // Log streams (Auth0's).
    "read:log_streams",
    "create:log_streams",
    "update:log_streams",
    "delete:log_streams",
];

pub(crate) fn routes() -> Vec<Op> {
    vec![
        op(Method::GET, "/client-grants", get_client_grants),
        op(Method::POST, "/client-grants", post_client_grant),
        op(Method::PATCH, "/client-grants/{id}", patch_client_grant),
        op(Method::DELETE, "/client-grants/{id}", delete_client_grant),
    ]
}

/// A client allowed `client_credentials` tokens for the management API.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateGrant {
    /// A `non_interactive` client, or one allowed the `client_credentials` grant.
    client_id: String,
    /// The management API: `{issuer}/api/v2/`.
    audience: String,
    /// Management API scopes (`read:users`, …).
    scope: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateGrant {
    /// The new scopes, replacing the old.
    scope: Vec<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    client_id: Option<String>,
    audience: Option<String>,
}

/// A client grant.
#[derive(Serialize, ToSchema)]
struct GrantView {
    id: String,
    client_id: String,
    audience: String,
    scope: Vec<String>,
}

fn view(g: &ClientGrant) -> GrantView {
    GrantView {
        id: g.id.clone(),
        client_id: g.client_id.as_str().to_owned(),
        audience: g.audience.clone(),
        scope: g.scope.clone(),
    }
}

/// Known scopes, each held by the caller: a client may hand out only what it holds itself, or
/// any grant editor could give itself `update:roles` and make an administrator. The operator's
/// token and administrators hold every scope.
fn checked_scopes(auth: &ManagementAuth, scope: Vec<String>) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for (i, s) in scope.into_iter().enumerate() {
        if !SCOPES.contains(&s.as_str()) {
            return Err(ApiError::bad_request(
                format!("scope[{i}]"),
                format!("scope[{i}]: {s} is not a management API scope"),
            ));
        }
        auth.require(&s)?;
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// The client grants, optionally of one client or audience.
#[utoipa::path(get, path = "/api/v2/client-grants", tag = "client-grants",
    params(ListQuery),
    responses((status = 200, description = "The grants.", body = Vec<GrantView>)),
    security(("bearer" = ["read:client_grants"])))]
async fn get_client_grants(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    q: StrictQuery<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    auth.require("read:client_grants")?;
    let items: Vec<GrantView> = deps
        .store
        .list_client_grants()
        .await?
        .iter()
        .filter(|g| {
            q.client_id
                .as_deref()
                .is_none_or(|c| c == g.client_id.as_str())
        })
        .filter(|g| q.audience.as_deref().is_none_or(|a| a == g.audience))
        .map(view)
        .collect();
    Ok(HttpResponse::Ok().json(items))
}

/// Grants a client management API scopes.
#[utoipa::path(post, path = "/api/v2/client-grants", tag = "client-grants",
    request_body = CreateGrant,
    responses(
        (status = 201, description = "The grant.", body = GrantView),
        (status = 409, description = "The client already has a grant for this audience.", body = latch_http::error::ErrorBody),
    ),
    security(("bearer" = ["create:client_grants"])))]
async fn post_client_grant(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    StrictJson(body): StrictJson<CreateGrant>,
) -> Result<HttpResponse, ApiError> {
    auth.require("create:client_grants")?;
    let audience = format!("{}/api/v2/", deps.issuer);
    if body.audience != audience {
        return Err(ApiError::bad_request(
            "audience",
            format!("audience: the only API is the management API, {audience}"),
        ));
    }
    let client = deps
        .store
        .find_client(&ClientId::new(&body.client_id))
        .await?
        .ok_or_else(|| {
            ApiError::bad_request(
                "client_id",
                format!("client_id: no client {} exists", body.client_id),
            )
        })?;
    if client.app_type != AppType::NonInteractive
        && !client.grant_types.contains(&GrantType::ClientCredentials)
    {
        return Err(ApiError::bad_request(
            "client_id",
            "client_id: the client must be non_interactive or allow the client_credentials grant",
        ));
    }
    let g = ClientGrant {
        id: format!("cgr_{}", latch_jose::random_alnum(16)),
        client_id: client.client_id,
        audience,
        scope: checked_scopes(&auth, body.scope)?,
        created_at: deps.clock.now(),
    };
    deps.store.insert_client_grant(&g).await?;
    audit::record(
        &deps,
        &req,
        &auth,
        "Create a client grant",
        Some(&g.client_id),
        None,
    )
    .await;
    Ok(HttpResponse::Created().json(view(&g)))
}

/// Replaces a grant's scopes.
#[utoipa::path(patch, path = "/api/v2/client-grants/{id}", tag = "client-grants",
    params(("id" = String, Path, description = "The grant's `id`.")),
    request_body = UpdateGrant,
    responses((status = 200, description = "The grant.", body = GrantView)),
    security(("bearer" = ["update:client_grants"])))]
async fn patch_client_grant(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    id: web::Path<String>,
    StrictJson(body): StrictJson<UpdateGrant>,
) -> Result<HttpResponse, ApiError> {
    auth.require("update:client_grants")?;
    let mut g = deps
        .store
        .list_client_grants()
        .await?
        .into_iter()
        .find(|g| g.id == *id)
        .ok_or_else(|| ApiError::not_found("client grant"))?;
    g.scope = checked_scopes(&auth, body.scope)?;
    deps.store.update_client_grant(&g).await?;
    audit::record(
        &deps,
        &req,
        &auth,
        "Update a client grant",
        Some(&g.client_id),
        None,
    )
    .await;
    Ok(HttpResponse::Ok().json(view(&g)))
}

/// Deletes a grant.
#[utoipa::path(delete, path = "/api/v2/client-grants/{id}", tag = "client-grants",
    params(("id" = String, Path, description = "The grant's `id`.")),
    responses((status = 204, description = "Deleted.")),
    security(("bearer" = ["delete:client_grants"])))]
async fn delete_client_grant(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require("delete:client_grants")?;
    deps.store.delete_client_grant(&id).await?;
    audit::record(&deps, &req, &auth, "Delete a client grant", None, None).await;
    Ok(HttpResponse::NoContent().finish())
}
