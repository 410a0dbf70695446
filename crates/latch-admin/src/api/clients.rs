//! `/api/v2/clients`: create (the secret is returned once), list, get, update, delete, rotate.

use actix_web::{HttpRequest, HttpResponse, Scope, web};
use latch_core::model::*;
use latch_core::validate;
use latch_core::*;
use latch_http::{ApiError, ManagementAuth, StrictJson};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::{ListQuery, collection};
use crate::{Deps, audit};

pub fn scope() -> Scope {
    web::scope("/clients")
        .route("", web::get().to(get_clients))
        .route("", web::post().to(post_client))
        .route("/{id}", web::get().to(get_client))
        .route("/{id}", web::patch().to(patch_client))
        .route("/{id}", web::delete().to(delete_client))
        .route("/{id}/rotate-secret", web::post().to(post_rotate_secret))
}

/// Bytes of entropy in a client secret.
const SECRET_BYTES: usize = 48;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ClientInput {
    name: Option<String>,
    description: Option<String>,
    app_type: Option<AppType>,
    callbacks: Option<Vec<String>>,
    allowed_logout_urls: Option<Vec<String>>,
    web_origins: Option<Vec<String>>,
    grant_types: Option<Vec<GrantType>>,
    token_endpoint_auth_method: Option<TokenEndpointAuthMethod>,
    jwt_configuration: Option<JwtConfiguration>,
    refresh_token: Option<RefreshTokenConfig>,
    oidc_logout: Option<OidcLogoutInput>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct JwtConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alg: Option<String>,
    /// ID token lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lifetime_in_seconds: Option<i64>,
    /// Access token lifetime (a Latch extension: Auth0 keeps it on the API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_token_lifetime_in_seconds: Option<i64>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RefreshTokenConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rotation_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expiration_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_lifetime: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idle_token_lifetime: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OidcLogoutInput {
    #[serde(default)]
    backchannel_logout_urls: Option<Vec<String>>,
    #[serde(default)]
    backchannel_logout_session_required: Option<bool>,
    #[serde(default)]
    frontchannel_logout_url: Option<Option<String>>,
    #[serde(default)]
    frontchannel_logout_session_required: Option<bool>,
}

/// Grants a new client of this type gets when it names none.
pub fn default_grant_types(app_type: AppType) -> Vec<GrantType> {
    match app_type {
        AppType::NonInteractive => vec![GrantType::ClientCredentials],
        AppType::RegularWeb | AppType::Spa | AppType::Native => {
            vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
        }
    }
}

fn urls(field: &str, raw: Vec<String>) -> Result<Vec<Url>, ApiError> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, u) in raw.iter().enumerate() {
        let url = validate::app_url(&format!("{field}[{i}]"), u)?;
        if !out.contains(&url) {
            out.push(url);
        }
    }
    Ok(out)
}

fn lifetime(field: &str, v: i64, max: i64) -> Result<i64, ApiError> {
    if (60..=max).contains(&v) {
        Ok(v)
    } else {
        Err(ApiError::bad_request(
            field,
            format!("{field} must be between 60 and {max} seconds"),
        ))
    }
}

/// Applies `input` to `c`, validating every field; on error `c` is left half-changed, so callers
/// apply to a copy.
fn apply(c: &mut Client, input: ClientInput, creating: bool) -> Result<(), ApiError> {
    if let Some(name) = input.name {
        if name.trim().is_empty() || name.len() > 128 {
            return Err(ApiError::bad_request(
                "name",
                "name must be 1-128 characters",
            ));
        }
        c.name = name;
    } else if creating {
        return Err(ApiError::bad_request("name", "name is required"));
    }
    if let Some(d) = input.description {
        if d.len() > 1024 {
            return Err(ApiError::bad_request(
                "description",
                "description must be at most 1024 characters",
            ));
        }
        c.description = Some(d).filter(|d| !d.is_empty());
    }
    if let Some(t) = input.app_type {
        c.app_type = t;
        if creating {
            c.grant_types = default_grant_types(t);
            c.token_endpoint_auth_method = if t.is_public() {
                TokenEndpointAuthMethod::None
            } else {
                TokenEndpointAuthMethod::ClientSecretBasic
            };
        }
    }
    if let Some(v) = input.callbacks {
        c.callbacks = urls("callbacks", v)?;
    }
    if let Some(v) = input.allowed_logout_urls {
        c.allowed_logout_urls = urls("allowed_logout_urls", v)?;
    }
    if let Some(v) = input.web_origins {
        let origins = urls("web_origins", v)?;
        if let Some(i) = origins
            .iter()
            .position(|u| u.path() != "/" || u.query().is_some())
        {
            return Err(ApiError::bad_request(
                format!("web_origins[{i}]"),
                "web_origins must be origins, without a path",
            ));
        }
        c.web_origins = origins;
    }
    if let Some(mut g) = input.grant_types {
        g.dedup();
        c.grant_types = g;
    }
    if let Some(m) = input.token_endpoint_auth_method {
        c.token_endpoint_auth_method = m;
    }
    if let Some(j) = input.jwt_configuration {
        if let Some(alg) = j.alg {
            c.signing_alg = SigningAlg::parse(&alg).ok_or_else(|| {
                ApiError::bad_request(
                    "jwt_configuration.alg",
                    "jwt_configuration.alg must be RS256, ES256 or EdDSA",
                )
            })?;
        }
        if let Some(v) = j.lifetime_in_seconds {
            c.lifetimes.id_token = lifetime("jwt_configuration.lifetime_in_seconds", v, 2_592_000)?;
        }
        if let Some(v) = j.access_token_lifetime_in_seconds {
            c.lifetimes.access_token = lifetime(
                "jwt_configuration.access_token_lifetime_in_seconds",
                v,
                2_592_000,
            )?;
        }
    }
    if let Some(r) = input.refresh_token {
        if r.rotation_type.as_deref().is_some_and(|t| t != "rotating") {
            return Err(ApiError::bad_request(
                "refresh_token.rotation_type",
                "refresh_token.rotation_type must be rotating: Latch always rotates refresh tokens",
            ));
        }
        if r.expiration_type
            .as_deref()
            .is_some_and(|t| t != "expiring")
        {
            return Err(ApiError::bad_request(
                "refresh_token.expiration_type",
                "refresh_token.expiration_type must be expiring",
            ));
        }
        if let Some(v) = r.token_lifetime {
            c.lifetimes.refresh_token = lifetime("refresh_token.token_lifetime", v, 31_536_000)?;
        }
        if let Some(v) = r.idle_token_lifetime {
            c.lifetimes.refresh_token_idle =
                lifetime("refresh_token.idle_token_lifetime", v, 31_536_000)?;
        }
    }
    if c.lifetimes.refresh_token_idle > c.lifetimes.refresh_token {
        return Err(ApiError::bad_request(
            "refresh_token.idle_token_lifetime",
            "refresh_token.idle_token_lifetime must not exceed refresh_token.token_lifetime",
        ));
    }
    if let Some(o) = input.oidc_logout {
        if let Some(v) = o.backchannel_logout_urls {
            let list = urls("oidc_logout.backchannel_logout_urls", v)?;
            if list.len() > 1 {
                return Err(ApiError::bad_request(
                    "oidc_logout.backchannel_logout_urls",
                    "oidc_logout.backchannel_logout_urls takes one URL",
                ));
            }
            c.oidc_logout.backchannel_logout_urls = list;
        }
        if let Some(v) = o.backchannel_logout_session_required {
            c.oidc_logout.backchannel_logout_session_required = v;
        }
        if let Some(v) = o.frontchannel_logout_url {
            c.oidc_logout.frontchannel_logout_url = match v {
                Some(u) => Some(validate::app_url(
                    "oidc_logout.frontchannel_logout_url",
                    &u,
                )?),
                None => None,
            };
        }
        if let Some(v) = o.frontchannel_logout_session_required {
            c.oidc_logout.frontchannel_logout_session_required = v;
        }
    }
    // Rules across fields.
    let public = c.token_endpoint_auth_method == TokenEndpointAuthMethod::None;
    if public != c.app_type.is_public() {
        return Err(ApiError::bad_request(
            "token_endpoint_auth_method",
            "spa and native clients are public and use none; regular_web and non_interactive clients use client_secret_basic or client_secret_post",
        ));
    }
    if public && c.grant_types.contains(&GrantType::ClientCredentials) {
        return Err(ApiError::bad_request(
            "grant_types",
            "a public client cannot use client_credentials",
        ));
    }
    if c.grant_types.is_empty() {
        return Err(ApiError::bad_request(
            "grant_types",
            "grant_types must name at least one grant",
        ));
    }
    Ok(())
}

fn view(c: &Client, secret: Option<&str>) -> Value {
    let mut v = serde_json::json!({
        "client_id": c.client_id,
        "name": c.name,
        "description": c.description,
        "app_type": c.app_type,
        "is_first_party": true,
        "oidc_conformant": true,
        "callbacks": c.callbacks,
        "allowed_logout_urls": c.allowed_logout_urls,
        "web_origins": c.web_origins,
        "grant_types": c.grant_types,
        "token_endpoint_auth_method": c.token_endpoint_auth_method,
        "jwt_configuration": JwtConfiguration {
            alg: Some(c.signing_alg.as_str().to_owned()),
            lifetime_in_seconds: Some(c.lifetimes.id_token),
            access_token_lifetime_in_seconds: Some(c.lifetimes.access_token),
        },
        "refresh_token": RefreshTokenConfig {
            rotation_type: Some("rotating".into()),
            expiration_type: Some("expiring".into()),
            token_lifetime: Some(c.lifetimes.refresh_token),
            idle_token_lifetime: Some(c.lifetimes.refresh_token_idle),
        },
        "oidc_logout": {
            "backchannel_logout_urls": c.oidc_logout.backchannel_logout_urls,
            "backchannel_logout_session_required": c.oidc_logout.backchannel_logout_session_required,
            "frontchannel_logout_url": c.oidc_logout.frontchannel_logout_url,
            "frontchannel_logout_session_required": c.oidc_logout.frontchannel_logout_session_required,
        },
    });
    if let (Some(s), Some(obj)) = (secret, v.as_object_mut()) {
        obj.insert("client_secret".into(), Value::String(s.to_owned()));
    }
    v
}

fn new_secret(now: time::OffsetDateTime) -> (String, ClientSecret) {
    let secret = latch_jose::random_token(SECRET_BYTES);
    let stored = ClientSecret {
        digest: latch_jose::token_digest(&secret),
        created_at: now,
    };
    (secret, stored)
}

async fn get_clients(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    auth.require("read:clients")?;
    let items = deps
        .store
        .list_clients()
        .await?
        .iter()
        .map(|c| view(c, None))
        .collect();
    Ok(HttpResponse::Ok().json(collection("clients", items, q.include_totals)))
}

async fn post_client(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    StrictJson(input): StrictJson<ClientInput>,
) -> Result<HttpResponse, ApiError> {
    auth.require("create:clients")?;
    let now = deps.clock.now();
    let mut c = Client {
        client_id: ClientId::new(latch_jose::random_alnum(32)),
        name: String::new(),
        description: None,
        app_type: AppType::RegularWeb,
        callbacks: vec![],
        allowed_logout_urls: vec![],
        web_origins: vec![],
        grant_types: default_grant_types(AppType::RegularWeb),
        token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretBasic,
        signing_alg: SigningAlg::RS256,
        lifetimes: TokenLifetimes::default(),
        oidc_logout: OidcLogout::default(),
        secrets: vec![],
        created_at: now,
        updated_at: now,
    };
    apply(&mut c, input, true)?;
    let secret = if c.app_type.is_public() {
        None
    } else {
        let (plain, stored) = new_secret(now);
        c.secrets.push(stored);
        Some(plain)
    };
    deps.store.insert_client(&c).await?;
    // The built-in database connection serves every new client unless an admin turns it off.
    if let Some(mut db) = deps
        .store
        .find_connection_by_name(&ConnectionName::new(DATABASE_CONNECTION))
        .await?
    {
        db.enabled_clients.push(c.client_id.clone());
        db.enabled_clients.sort();
        db.enabled_clients.dedup();
        deps.store.update_connection(&db).await?;
    }
    audit::record(
        &deps,
        &req,
        &auth,
        "Create a client",
        Some(&c.client_id),
        None,
    )
    .await;
    Ok(HttpResponse::Created().json(view(&c, secret.as_deref())))
}

async fn get_client(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require("read:clients")?;
    let c = deps
        .store
        .get_client(&ClientId::new(id.into_inner()))
        .await?;
    Ok(HttpResponse::Ok().json(view(&c, None)))
}

async fn patch_client(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    id: web::Path<String>,
    StrictJson(input): StrictJson<ClientInput>,
) -> Result<HttpResponse, ApiError> {
    auth.require("update:clients")?;
    let mut c = deps
        .store
        .get_client(&ClientId::new(id.into_inner()))
        .await?;
    let was_public = c.app_type.is_public();
    apply(&mut c, input, false)?;
    let mut secret = None;
    if was_public && !c.app_type.is_public() && c.secrets.is_empty() {
        // A public client that becomes confidential needs a secret: it is returned this once.
        let (plain, stored) = new_secret(deps.clock.now());
        c.secrets.push(stored);
        secret = Some(plain);
    }
    if c.app_type.is_public() {
        c.secrets.clear();
    }
    c.updated_at = deps.clock.now();
    deps.store.update_client(&c).await?;
    audit::record(
        &deps,
        &req,
        &auth,
        "Update a client",
        Some(&c.client_id),
        None,
    )
    .await;
    Ok(HttpResponse::Ok().json(view(&c, secret.as_deref())))
}

async fn delete_client(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require("delete:clients")?;
    let id = ClientId::new(id.into_inner());
    deps.store.delete_client(&id).await?;
    audit::record(&deps, &req, &auth, "Delete a client", Some(&id), None).await;
    Ok(HttpResponse::NoContent().finish())
}

async fn post_rotate_secret(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require("update:client_keys")?;
    let mut c = deps
        .store
        .get_client(&ClientId::new(id.into_inner()))
        .await?;
    if c.app_type.is_public() {
        return Err(ApiError::bad_request(
            "app_type",
            "A public client has no secret to rotate.",
        ));
    }
    let now = deps.clock.now();
    let (plain, stored) = new_secret(now);
    c.secrets = vec![stored];
    c.updated_at = now;
    deps.store.update_client(&c).await?;
    audit::record(
        &deps,
        &req,
        &auth,
        "Rotate a client secret",
        Some(&c.client_id),
        None,
    )
    .await;
    Ok(HttpResponse::Ok().json(view(&c, Some(&plain))))
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
        let res = post_client(
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
        let res = patch_client(
            deps.clone(),
            auth,
            req.clone(),
            web::Path::from(id.to_owned()),
            StrictJson(super::super::body(body)?),
        )
        .await?;
        super::super::answer(res).await
    }

    pub(crate) async fn rotate_secret(
        deps: &web::Data<Deps>,
        auth: ManagementAuth,
        req: &HttpRequest,
        id: &str,
    ) -> Result<Value, ApiError> {
        let res = post_rotate_secret(
            deps.clone(),
            auth,
            req.clone(),
            web::Path::from(id.to_owned()),
        )
        .await?;
        super::super::answer(res).await
    }

    /// A client as the API shows it.
    pub(crate) fn show(c: &Client) -> Value {
        view(c, None)
    }
}
