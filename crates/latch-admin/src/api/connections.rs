//! `/api/v2/connections`: create, list, get, update, delete, the enabled clients, and SCIM
//! ([`scim`]).

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use latch_core::model::{Connection, DATABASE_CONNECTION, Strategy};
use latch_core::validate;
use latch_core::*;
use latch_http::{ApiError, ManagementAuth, StrictJson, StrictQuery};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::{Op, op};
use crate::{Deps, audit};

pub(crate) fn routes() -> Vec<Op> {
    vec![
        op(Method::GET, "/connections", get_connections),
        op(Method::POST, "/connections", post_connection),
        op(Method::GET, "/connections/{id}", get_connection),
        op(Method::PATCH, "/connections/{id}", patch_connection),
        op(Method::DELETE, "/connections/{id}", delete_connection),
        op(
            Method::GET,
            "/connections/{id}/clients",
            get_connection_clients,
        ),
        op(
            Method::PATCH,
            "/connections/{id}/clients",
            patch_connection_clients,
        ),
    ]
    .into_iter()
    .chain(scim::routes())
    .collect()
}

/// A connection to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"name": "acme-oidc", "strategy": "oidc", "options": {
    "issuer": "https://idp.example.com", "client_id": "latch", "client_secret": "example-secret"}})))]
struct CreateConnection {
    /// 1-128 letters, digits and single hyphens.
    name: String,
    /// `auth0`, `okta`, `oidc` or `samlp`.
    strategy: String,
    #[serde(default)]
    display_name: Option<String>,
    /// The strategy's options (unknown keys are refused).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    options: Option<Map<String, Value>>,
    /// The `client_id`s of the apps the connection serves.
    #[serde(default)]
    enabled_clients: Option<Vec<String>>,
}

/// What to change; `options` replaces the options whole (a secret left out keeps its value).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateConnection {
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    options: Option<Map<String, Value>>,
    #[serde(default)]
    enabled_clients: Option<Vec<String>>,
}

/// Whether the connection serves an app.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ClientStatus {
    client_id: String,
    status: bool,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ConnectionQuery {
    /// Only connections of this strategy.
    #[serde(default)]
    strategy: Option<String>,
    /// Only the connection of this name.
    #[serde(default)]
    name: Option<String>,
    /// Answer `{"start", "limit", "length", "total", "connections": [...]}` instead of the bare
    /// array.
    #[serde(default)]
    include_totals: bool,
}

/// A connection as the API shows it: secrets never appear.
#[derive(Serialize, ToSchema)]
pub(crate) struct ConnectionView {
    id: String,
    name: String,
    display_name: String,
    /// `auth0`, `okta`, `oidc` or `samlp`.
    strategy: String,
    /// The strategy's options without secrets; a `samlp` connection's also show Latch's SP
    /// metadata URL, entity id, ACS URL and SingleLogoutService (`sp_metadata_url`,
    /// `sp_entity_id`, `sp_acs_url`, `sp_single_logout_url`).
    #[schema(value_type = Object)]
    options: Map<String, Value>,
    enabled_clients: Vec<String>,
    realms: Vec<String>,
    is_domain_connection: bool,
    /// `okta` and `oidc`: where the IdP sends back-channel logout tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    backchannel_logout_url: Option<String>,
    /// Enterprise connections: where the IdP sends Universal Logout (GTR) requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    global_token_revocation_endpoint: Option<String>,
    /// `okta` and `oidc`: the `post_logout_redirect_uri` Latch gives the IdP in a federated
    /// logout (register it at the IdP).
    #[serde(skip_serializing_if = "Option::is_none")]
    federated_logout_return_url: Option<String>,
}

super::list!(
    /// Connections: the array, or with `include_totals=true` a page.
    ConnectionList,
    ConnectionPage,
    connections,
    ConnectionView
);

fn connection_view(c: &Connection, issuer: &str) -> ConnectionView {
    let mut options = c.options.clone();
    if c.strategy == Strategy::Samlp {
        let sp = latch_core::connector::SamlSp::of(c, issuer);
        options.insert("sp_metadata_url".into(), Value::String(sp.metadata_url));
        options.insert("sp_entity_id".into(), Value::String(sp.entity_id));
        options.insert("sp_acs_url".into(), Value::String(sp.acs_url));
        options.insert("sp_single_logout_url".into(), Value::String(sp.slo_url));
    }
    ConnectionView {
        id: c.id.as_str().to_owned(),
        name: c.name.as_str().to_owned(),
        display_name: c
            .display_name
            .clone()
            .unwrap_or_else(|| c.name.as_str().to_owned()),
        strategy: c.strategy.as_str().to_owned(),
        options,
        enabled_clients: c
            .enabled_clients
            .iter()
            .map(|id| id.as_str().to_owned())
            .collect(),
        realms: vec![c.name.as_str().to_owned()],
        is_domain_connection: false,
        // Read-only URLs an admin gives the IdP.
        backchannel_logout_url: matches!(c.strategy, Strategy::Okta | Strategy::Oidc)
            .then(|| latch_core::paths::backchannel_logout_url(issuer, c.name.as_str())),
        global_token_revocation_endpoint: c
            .strategy
            .is_enterprise()
            .then(|| latch_core::paths::global_token_revocation_url(issuer, c.name.as_str())),
        federated_logout_return_url: matches!(c.strategy, Strategy::Okta | Strategy::Oidc)
            .then(|| latch_core::paths::upstream_logout_url(issuer, c.name.as_str())),
    }
}

/// A connection as the API shows it, for the admin UI.
pub(crate) fn view(c: &Connection, issuer: &str) -> Value {
    serde_json::to_value(connection_view(c, issuer)).unwrap_or(Value::Null)
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

/// The connections, optionally of one strategy or name.
#[utoipa::path(get, path = "/api/v2/connections", tag = "connections",
    params(ConnectionQuery),
    responses((status = 200, description = "The connections.", body = ConnectionList)),
    security(("bearer" = ["read:connections"])))]
async fn get_connections(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    q: StrictQuery<ConnectionQuery>,
) -> Result<HttpResponse, ApiError> {
    auth.require("read:connections")?;
    let all = deps.store.list_connections().await?;
    let items: Vec<ConnectionView> = all
        .iter()
        .filter(|c| {
            q.strategy
                .as_deref()
                .is_none_or(|s| s == c.strategy.as_str())
        })
        .filter(|c| q.name.as_deref().is_none_or(|n| n == c.name.as_str()))
        .map(|c| connection_view(c, &deps.issuer))
        .collect();
    // Not paged: one page holds them all.
    let n = items.len() as u64;
    Ok(HttpResponse::Ok().json(ConnectionList::new(
        items,
        q.include_totals.then_some((0, n, n)),
    )))
}

/// Creates a connection. Its IdP need not be reachable: discovery, metadata and keys are
/// fetched on first use.
#[utoipa::path(post, path = "/api/v2/connections", tag = "connections",
    request_body = CreateConnection,
    responses(
        (status = 201, description = "The connection.", body = ConnectionView),
        (status = 409, description = "A connection has this name.", body = latch_http::error::ErrorBody),
    ),
    security(("bearer" = ["create:connections"])))]
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
    let (options, secrets) = validate::connection_options(
        strategy,
        body.options.unwrap_or_default(),
        None,
        &deps.outbound,
    )?;
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
    Ok(HttpResponse::Created().json(connection_view(&c, &deps.issuer)))
}

/// One connection.
#[utoipa::path(get, path = "/api/v2/connections/{id}", tag = "connections",
    params(("id" = String, Path, description = "The connection's `id`.")),
    responses((status = 200, description = "The connection.", body = ConnectionView)),
    security(("bearer" = ["read:connections"])))]
async fn get_connection(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require("read:connections")?;
    Ok(HttpResponse::Ok().json(connection_view(&find(&deps, &id).await?, &deps.issuer)))
}

/// Changes a connection.
#[utoipa::path(patch, path = "/api/v2/connections/{id}", tag = "connections",
    params(("id" = String, Path, description = "The connection's `id`.")),
    request_body = UpdateConnection,
    responses((status = 200, description = "The connection as changed.", body = ConnectionView)),
    security(("bearer" = ["update:connections"])))]
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
            validate::connection_options(c.strategy, options, Some(&c.secrets), &deps.outbound)?;
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
    Ok(HttpResponse::Ok().json(connection_view(&c, &deps.issuer)))
}

/// Deletes a connection (not the built-in database connection: a 400).
#[utoipa::path(delete, path = "/api/v2/connections/{id}", tag = "connections",
    params(("id" = String, Path, description = "The connection's `id`.")),
    responses((status = 204, description = "Deleted.")),
    security(("bearer" = ["delete:connections"])))]
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
    // The sessions that came through it end, their apps told: before the deletion, so a
    // failure can be retried (the connection is still there); then once more after it, for a
    // sign-in through it that completed meanwhile (best effort: the connection is gone).
    let users = deps.store.list_connection_users(&c.id).await?;
    let end = |users: Vec<UserId>| {
        let target = latch_core::logout::Target::UsersAtConnection {
            users,
            connection: c.name.clone(),
        };
        deps.logout.end(
            target,
            latch_core::logout::TokenPolicy::SessionBound,
            latch_core::model::LogoutInitiator::SessionRevoked,
            latch_core::logout::Urgency::Background,
        )
    };
    let mut out = end(users.clone()).await?;
    deps.store.delete_connection(&c.id).await?;
    match end(users).await {
        Ok(late) => {
            out.sessions.extend(late.sessions);
            out.revoked_tokens.extend(late.revoked_tokens);
            out.deliveries.extend(late.deliveries);
        }
        Err(e) => tracing::error!(connection = %c.name, error = %e,
            "sessions that began during the connection's deletion could not be ended"),
    }
    if !out.sessions.is_empty() {
        let event = latch_core::model::LogEvent {
            connection: Some(c.name.clone()),
            ip: latch_http::client_ip(&req).map(|i| i.to_string()),
            details: serde_json::json!({
                "actor": auth.actor(),
                "initiator": latch_core::model::LogoutInitiator::SessionRevoked,
                "sessions_ended": out.sessions.len(),
                "refresh_tokens_revoked": out.revoked_tokens.len(),
                "TotalOidcLogoutRequests": latch_core::logout::oidc_logout_requests(&out.deliveries),
            "TotalGtrRequests": latch_core::logout::gtr_requests(&out.deliveries),
                "delivery_ids": out.deliveries.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
                "TotalSamlLogoutRequests": 0,
            "saml_unreachable": out.saml_unreachable_without_browser(),
            }),
            ..latch_core::model::LogEvent::new(
                deps.clock.now(),
                "slo",
                "Sessions ended: their connection was deleted",
            )
        };
        if let Err(e) = deps.store.insert_log(&event).await {
            tracing::error!(error = %e, "could not record the sessions a deletion ended");
        }
    }
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

#[derive(Serialize, ToSchema)]
struct EnabledClient {
    client_id: String,
}

/// The apps a connection serves.
#[derive(Serialize, ToSchema)]
struct EnabledClients {
    clients: Vec<EnabledClient>,
}

/// The apps the connection serves.
#[utoipa::path(get, path = "/api/v2/connections/{id}/clients", tag = "connections",
    params(("id" = String, Path, description = "The connection's `id`.")),
    responses((status = 200, description = "The enabled clients.", body = EnabledClients)),
    security(("bearer" = ["read:connections"])))]
async fn get_connection_clients(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require("read:connections")?;
    let c = find(&deps, &id).await?;
    let clients = c
        .enabled_clients
        .iter()
        .map(|id| EnabledClient {
            client_id: id.as_str().to_owned(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(EnabledClients { clients }))
}

/// Turns the connection on or off for each app listed.
#[utoipa::path(patch, path = "/api/v2/connections/{id}/clients", tag = "connections",
    params(("id" = String, Path, description = "The connection's `id`.")),
    request_body = Vec<ClientStatus>,
    responses((status = 204, description = "Changed.")),
    security(("bearer" = ["update:connections"])))]
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

pub(crate) mod scim;
pub(crate) mod ui_ops;

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
