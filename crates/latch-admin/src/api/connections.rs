//! `/api/v2/connections`: create, list, get, update, delete, and the enabled clients.

use actix_web::{HttpRequest, HttpResponse, Scope, web};
use latch_core::model::{Connection, DATABASE_CONNECTION, Strategy};
use latch_core::validate;
use latch_core::*;
use latch_http::{ApiError, ManagementAuth, StrictJson};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{ListQuery, collection};
use crate::{Deps, audit};

pub fn scope() -> Scope {
    web::scope("/connections")
        .route("", web::get().to(get_connections))
        .route("", web::post().to(post_connection))
        .route("/{id}", web::get().to(get_connection))
        .route("/{id}", web::patch().to(patch_connection))
        .route("/{id}", web::delete().to(delete_connection))
        .route("/{id}/clients", web::get().to(get_connection_clients))
        .route("/{id}/clients", web::patch().to(patch_connection_clients))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateConnection {
    name: String,
    strategy: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    options: Option<Map<String, Value>>,
    #[serde(default)]
    enabled_clients: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateConnection {
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    options: Option<Map<String, Value>>,
    #[serde(default)]
    enabled_clients: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientStatus {
    client_id: String,
    status: bool,
}

/// A connection as the API shows it: secrets never appear.
#[derive(Serialize)]
pub(crate) struct ConnectionView<'a> {
    id: &'a str,
    name: &'a str,
    display_name: &'a str,
    strategy: &'a str,
    options: &'a Map<String, Value>,
    enabled_clients: &'a [ClientId],
    realms: [&'a str; 1],
    is_domain_connection: bool,
}

pub(crate) fn view(c: &Connection, issuer: &str) -> Value {
    let v = ConnectionView {
        id: c.id.as_str(),
        name: c.name.as_str(),
        display_name: c.display_name.as_deref().unwrap_or(c.name.as_str()),
        strategy: c.strategy.as_str(),
        options: &c.options,
        enabled_clients: &c.enabled_clients,
        realms: [c.name.as_str()],
        is_domain_connection: false,
    };
    let mut out = serde_json::to_value(v).unwrap_or(Value::Null);
    // Read-only URLs an admin gives the IdP.
    if let Some(o) = out.as_object_mut()
        && matches!(c.strategy, Strategy::Okta | Strategy::Oidc)
    {
        o.insert(
            "backchannel_logout_url".into(),
            Value::String(format!("{issuer}/login/backchannel-logout/{}", c.name)),
        );
    }
    if c.strategy == Strategy::Samlp
        && let Some(o) = out.get_mut("options").and_then(Value::as_object_mut)
    {
        let sp = latch_core::connector::SamlSp::of(c, issuer);
        o.insert("sp_metadata_url".into(), Value::String(sp.metadata_url));
        o.insert("sp_entity_id".into(), Value::String(sp.entity_id));
        o.insert("sp_acs_url".into(), Value::String(sp.acs_url));
    }
    if let Some(o) = out.as_object_mut()
        && c.strategy.is_enterprise()
    {
        o.insert(
            "global_token_revocation_endpoint".into(),
            Value::String(format!(
                "{issuer}/oauth/global-token-revocation/connection/{}",
                c.name
            )),
        );
    }
    out
}

fn display_name(v: Option<String>) -> Result<Option<String>, ApiError> {
    match v {
        Some(d) if d.trim().is_empty() || d.len() > 128 => Err(ApiError::bad_request(
            "display_name",
            "display_name must be 1-128 characters",
        )),
        other => Ok(other),
    }
}

/// Checks each client id exists; returns them sorted and deduplicated.
async fn existing_clients(
    deps: &Deps,
    field: &str,
    ids: Vec<String>,
) -> Result<Vec<ClientId>, ApiError> {
    let mut out = Vec::with_capacity(ids.len());
    for (i, id) in ids.into_iter().enumerate() {
        let id = ClientId::new(id);
        if deps.store.find_client(&id).await?.is_none() {
            return Err(ApiError::bad_request(
                format!("{field}[{i}]"),
                format!("{field}[{i}]: no client {id} exists"),
            ));
        }
        out.push(id);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

async fn find(deps: &Deps, id: &str) -> Result<Connection, ApiError> {
    Ok(deps.store.get_connection(&ConnectionId::new(id)).await?)
}

async fn get_connections(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    auth.require("read:connections")?;
    let all = deps.store.list_connections().await?;
    let items = all
        .iter()
        .filter(|c| {
            q.strategy
                .as_deref()
                .is_none_or(|s| s == c.strategy.as_str())
        })
        .filter(|c| q.name.as_deref().is_none_or(|n| n == c.name.as_str()))
        .map(|c| view(c, &deps.issuer))
        .collect();
    Ok(HttpResponse::Ok().json(collection("connections", items, q.include_totals)))
}

async fn post_connection(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    StrictJson(body): StrictJson<CreateConnection>,
) -> Result<HttpResponse, ApiError> {
    auth.require("create:connections")?;
    validate::connection_name("name", &body.name)?;
    let strategy = Strategy::parse(&body.strategy).ok_or_else(|| {
        ApiError::bad_request(
            "strategy",
            "strategy must be one of: auth0, oidc, okta, samlp",
        )
    })?;
    let (options, secrets) =
        validate::connection_options(strategy, body.options.unwrap_or_default(), None)?;
    let display_name = display_name(body.display_name)?;
    let enabled_clients = existing_clients(
        &deps,
        "enabled_clients",
        body.enabled_clients.unwrap_or_default(),
    )
    .await?;
    let name = ConnectionName::new(body.name);
    if deps.store.find_connection_by_name(&name).await?.is_some() {
        let mut e = ApiError::conflict(format!("A connection named {name} already exists."));
        e.field = Some("name".into());
        return Err(e);
    }
    let now = deps.clock.now();
    let c = Connection {
        id: ConnectionId::new(format!("con_{}", latch_jose::random_alnum(16))),
        name,
        display_name,
        strategy,
        options,
        secrets,
        enabled_clients,
        created_at: now,
        updated_at: now,
    };
    deps.store.insert_connection(&c).await?;
    audit::record(
        &deps,
        &req,
        &auth,
        "Create a connection",
        None,
        Some(&c.name),
    )
    .await;
    Ok(HttpResponse::Created().json(view(&c, &deps.issuer)))
}

async fn get_connection(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require("read:connections")?;
    Ok(HttpResponse::Ok().json(view(&find(&deps, &id).await?, &deps.issuer)))
}

async fn patch_connection(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    id: web::Path<String>,
    StrictJson(body): StrictJson<UpdateConnection>,
) -> Result<HttpResponse, ApiError> {
    auth.require("update:connections")?;
    let mut c = find(&deps, &id).await?;
    if let Some(options) = body.options {
        // Auth0 semantics: `options` is replaced whole (a secret left out is kept).
        let (options, secrets) =
            validate::connection_options(c.strategy, options, Some(&c.secrets))?;
        c.options = options;
        c.secrets = secrets;
    }
    if body.display_name.is_some() {
        c.display_name = display_name(body.display_name)?;
    }
    if let Some(ids) = body.enabled_clients {
        c.enabled_clients = existing_clients(&deps, "enabled_clients", ids).await?;
    }
    c.updated_at = deps.clock.now();
    deps.store.update_connection(&c).await?;
    audit::record(
        &deps,
        &req,
        &auth,
        "Update a connection",
        None,
        Some(&c.name),
    )
    .await;
    Ok(HttpResponse::Ok().json(view(&c, &deps.issuer)))
}

async fn delete_connection(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require("delete:connections")?;
    let c = find(&deps, &id).await?;
    if c.name.as_str() == DATABASE_CONNECTION && c.strategy == Strategy::Auth0 {
        return Err(ApiError::bad_request(
            "id",
            "The built-in database connection cannot be deleted; disable it for clients instead.",
        ));
    }
    deps.store.delete_connection(&c.id).await?;
    audit::record(
        &deps,
        &req,
        &auth,
        "Delete a connection",
        None,
        Some(&c.name),
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

async fn get_connection_clients(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require("read:connections")?;
    let c = find(&deps, &id).await?;
    let clients: Vec<_> = c
        .enabled_clients
        .iter()
        .map(|id| serde_json::json!({ "client_id": id }))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "clients": clients })))
}

async fn patch_connection_clients(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    id: web::Path<String>,
    StrictJson(body): StrictJson<Vec<ClientStatus>>,
) -> Result<HttpResponse, ApiError> {
    auth.require("update:connections")?;
    let mut c = find(&deps, &id).await?;
    let ids = existing_clients(
        &deps,
        "body",
        body.iter().map(|s| s.client_id.clone()).collect(),
    )
    .await?;
    for (status, id) in body
        .iter()
        .map(|s| s.status)
        .zip(body.iter().map(|s| ClientId::new(s.client_id.clone())))
    {
        debug_assert!(ids.contains(&id));
        c.enabled_clients.retain(|x| *x != id);
        if status {
            c.enabled_clients.push(id);
        }
    }
    c.enabled_clients.sort();
    c.updated_at = deps.clock.now();
    deps.store.update_connection(&c).await?;
    audit::record(
        &deps,
        &req,
        &auth,
        "Update the clients of a connection",
        None,
        Some(&c.name),
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

/// The admin UI's writes go through the API's own handlers (same checks, same audit events).
pub(crate) mod ops {
    use super::*;

    pub(crate) async fn create(
        deps: &web::Data<Deps>,
        auth: ManagementAuth,
        req: &HttpRequest,
        body: Value,
    ) -> Result<Value, ApiError> {
        let res = post_connection(
            deps.clone(),
            auth,
            req.clone(),
            StrictJson(super::super::body(body)?),
        )
        .await?;
        super::super::answer(res).await
    }

    pub(crate) async fn update(
        deps: &web::Data<Deps>,
        auth: ManagementAuth,
        req: &HttpRequest,
        id: &str,
        body: Value,
    ) -> Result<Value, ApiError> {
        let res = patch_connection(
            deps.clone(),
            auth,
            req.clone(),
            web::Path::from(id.to_owned()),
            StrictJson(super::super::body(body)?),
        )
        .await?;
        super::super::answer(res).await
    }

    pub(crate) async fn delete(
        deps: &web::Data<Deps>,
        auth: ManagementAuth,
        req: &HttpRequest,
        id: &str,
    ) -> Result<(), ApiError> {
        delete_connection(
            deps.clone(),
            auth,
            req.clone(),
            web::Path::from(id.to_owned()),
        )
        .await?;
        Ok(())
    }
}
