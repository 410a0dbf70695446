//! `/api/v2/client-grants`: which clients may get `client_credentials` tokens for the
//! management API, with which scopes (Auth0's client grants).

use actix_web::{HttpRequest, HttpResponse, Scope, web};
use latch_core::model::{AppType, ClientGrant, GrantType};
use latch_core::*;
use latch_http::{ApiError, ManagementAuth, StrictJson};
use serde::Deserialize;
use serde_json::{Value, json};

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
    "read:users",
    "create:users",
    "update:users",
    "delete:users",
    "delete:sessions",
    "read:signing_keys",
    "create:signing_keys",
    "read:logs",
];

pub fn scope() -> Scope {
    web::scope("/client-grants")
        .route("", web::get().to(get_client_grants))
        .route("", web::post().to(post_client_grant))
        .route("/{id}", web::patch().to(patch_client_grant))
        .route("/{id}", web::delete().to(delete_client_grant))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateGrant {
    client_id: String,
    audience: String,
    scope: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateGrant {
    scope: Vec<String>,
}

#[derive(Deserialize)]
struct ListQuery {
    client_id: Option<String>,
    audience: Option<String>,
}

fn view(g: &ClientGrant) -> Value {
    json!({ "id": g.id, "client_id": g.client_id, "audience": g.audience, "scope": g.scope })
}

fn checked_scopes(scope: Vec<String>) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for (i, s) in scope.into_iter().enumerate() {
        if !SCOPES.contains(&s.as_str()) {
            return Err(ApiError::bad_request(
                format!("scope[{i}]"),
                format!("scope[{i}]: {s} is not a management API scope"),
            ));
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

async fn get_client_grants(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    auth.require("read:client_grants")?;
    let items: Vec<Value> = deps
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
        scope: checked_scopes(body.scope)?,
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
    g.scope = checked_scopes(body.scope)?;
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
