//! `/api/v2/connections/{id}/scim-configuration[/tokens[/{token_id}]]`: inbound SCIM on an
//! enterprise connection, shaped as Auth0's API. The configuration (`user_id_attribute`,
//! `mapping`) turns SCIM on; its bearer tokens are shown once, kept as digests, scoped to SCIM
//! operations and bound to the one connection. Turning SCIM off revokes every token.
//!
//! Scopes are Auth0's: `read:scim_config`, `create:scim_config`, `update:scim_config`,
//! `delete:scim_config`, `read:scim_token`, `create:scim_token`, `delete:scim_token`. A token
//! lets its holder create and delete users of the connection, so none of the `*:connections`
//! scopes stands in for them.

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest};
use latch_core::model::{DEFAULT_SCIM_USER_ID_ATTRIBUTE, SCIM_SCOPES, ScimConfig, ScimToken};
use scim_v2::filter::PatchPath;
use serde::de::DeserializeOwned;

use super::*;

pub(crate) fn routes() -> Vec<Op> {
    const CONFIG: &str = "/connections/{id}/scim-configuration";
    const TOKENS: &str = "/connections/{id}/scim-configuration/tokens";
    const TOKEN: &str = "/connections/{id}/scim-configuration/tokens/{token_id}";
    vec![
        op(Method::POST, CONFIG, post_scim_configuration),
        op(Method::GET, CONFIG, get_scim_configuration),
        op(Method::PATCH, CONFIG, patch_scim_configuration),
        op(Method::DELETE, CONFIG, delete_scim_configuration),
        op(Method::POST, TOKENS, post_scim_token),
        op(Method::GET, TOKENS, get_scim_tokens),
        op(Method::DELETE, TOKEN, delete_scim_token),
    ]
}

/// `{issuer}/scim/v2/connections/{connection_id}`: the SCIM base URL an admin gives the SCIM
/// client (served by `latch-scim`, which this crate may not depend on; a test checks both agree).
pub(crate) fn base_url(issuer: &str, connection: &ConnectionId) -> String {
    format!("{issuer}/scim/v2/connections/{connection}")
}

/// The longest `token_lifetime`: ten years, in seconds.
pub(crate) const MAX_TOKEN_LIFETIME: i64 = 10 * 365 * 24 * 60 * 60;

/// The user fields a `mapping` entry may set (`auth0`): the ones the SCIM server reads a
/// User resource into (`latch_scim::resource::read`).
pub(crate) const MAPPED_FIELDS: [&str; 5] =
    ["email", "name", "given_name", "family_name", "nickname"];

/// Attributes that cannot name a user's subject or a mapped value: served by Latch (never
/// kept from a client's body), a flag, or a secret.
const NOT_A_VALUE: [&str; 6] = ["id", "meta", "schemas", "groups", "active", "password"];

/// RFC 7643's core User schema (`latch_scim::USER_SCHEMA`).
const CORE_USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

/// The most `mapping` entries.
const MAX_MAPPING: usize = 32;

/// One entry of Auth0's `mapping`: a Latch user field and the SCIM attribute path it is read
/// from.
#[derive(Deserialize, Serialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
struct MappingItem {
    /// `email`, `name`, `given_name`, `family_name` or `nickname`.
    auth0: String,
    /// A SCIM attribute path of the User resource (`name.givenName`,
    /// `emails[type eq "work"].value`).
    scim: String,
}

/// Turns SCIM on; every member is optional.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"user_id_attribute": "externalId",
    "mapping": [{"auth0": "given_name", "scim": "name.givenName"}]})))]
struct CreateScimConfig {
    /// The SCIM attribute whose value is the user's upstream subject in the connection (default
    /// `externalId`), so a user the SCIM client provisions and who later signs in through the
    /// connection is one user.
    #[serde(default)]
    user_id_attribute: Option<String>,
    /// Which SCIM attribute sets which user field, over Latch's defaults (default: none).
    #[serde(default)]
    mapping: Option<Vec<MappingItem>>,
}

/// What to change; a member left out keeps its value.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
struct UpdateScimConfig {
    #[serde(default)]
    user_id_attribute: Option<String>,
    /// Replaces the mapping whole.
    #[serde(default)]
    mapping: Option<Vec<MappingItem>>,
}

/// A SCIM token to create; every member is optional.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"scopes": ["get:users", "post:users", "patch:users"], "token_lifetime": 31536000})))]
struct CreateScimToken {
    /// A non-empty subset of `get:users`, `post:users`, `put:users`, `patch:users`,
    /// `delete:users` (default: all five).
    #[serde(default)]
    scopes: Option<Vec<String>>,
    /// Seconds until the token expires: 1 to 315360000 (ten years). Left out or `null`: it never
    /// expires.
    #[serde(default)]
    token_lifetime: Option<i64>,
}

/// A connection's SCIM configuration (Auth0's fields).
#[derive(Serialize, ToSchema)]
struct ScimConfigView {
    connection_id: String,
    connection_name: String,
    /// `okta`, `oidc` or `samlp`.
    strategy: String,
    user_id_attribute: String,
    mapping: Vec<MappingItem>,
    created_at: String,
    updated_on: String,
}

/// A SCIM token as listed: never the token itself.
#[derive(Serialize, ToSchema)]
struct ScimTokenView {
    token_id: String,
    scopes: Vec<String>,
    created_at: String,
    /// Left out when the token does not expire.
    #[serde(skip_serializing_if = "Option::is_none")]
    valid_until: Option<String>,
}

/// A new SCIM token: `token` appears here only, never again.
#[derive(Serialize, ToSchema)]
struct CreatedScimToken {
    token_id: String,
    /// The bearer token for the SCIM client. Latch keeps only its digest.
    token: String,
    scopes: Vec<String>,
    created_at: String,
    /// Left out when the token does not expire.
    #[serde(skip_serializing_if = "Option::is_none")]
    valid_until: Option<String>,
}

/// A JSON body that may be left out (no body, or an empty one, stands for `T::default()`);
/// otherwise exactly [`StrictJson`].
pub(crate) struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default + 'static> FromRequest for OptionalJson<T> {
    type Error = ApiError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        // Read within the scope's `PayloadConfig` limit, as `StrictJson` does.
        let bytes = web::Bytes::from_request(&req, payload);
        Box::pin(async move {
            let bytes = bytes.await.map_err(|e| {
                if e.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        "The body is too large.",
                    )
                } else {
                    ApiError::bad_request("body", "The body could not be read.")
                }
            })?;
            if bytes.is_empty() {
                return Ok(Self(T::default()));
            }
            let mut again = Payload::from(bytes);
            let StrictJson(v) = StrictJson::<T>::from_request(&req, &mut again).await?;
            Ok(Self(v))
        })
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The configuration as the API shows it.
fn config_view(c: &Connection, s: &ScimConfig) -> ScimConfigView {
    ScimConfigView {
        connection_id: c.id.as_str().to_owned(),
        connection_name: c.name.as_str().to_owned(),
        strategy: c.strategy.as_str().to_owned(),
        user_id_attribute: s.user_id_attribute.clone(),
        // Stored as written by `mapping` below; anything else reads as none.
        mapping: serde_json::from_value(s.mapping.clone()).unwrap_or_default(),
        created_at: rfc3339(s.created_at),
        updated_on: rfc3339(s.updated_at),
    }
}

fn token_view(t: &ScimToken) -> ScimTokenView {
    ScimTokenView {
        token_id: t.token_id.clone(),
        scopes: t.scopes.clone(),
        created_at: rfc3339(t.created_at),
        valid_until: t.valid_until.map(rfc3339),
    }
}

/// A SCIM attribute path (RFC 7644 §3.5.2, as `scim_v2` parses PATCH paths) that can hold a
/// user's value; `what` names it in the error.
fn attribute_path(field: &str, path: &str) -> Result<(), ApiError> {
    let bad = |why: &str| ApiError::bad_request(field, format!("{field}: {why}"));
    if path.is_empty() || path.len() > 256 {
        return Err(bad("must be a SCIM attribute path of 1-256 characters"));
    }
    let parsed: PatchPath = path.parse().map_err(|_| {
        bad("is not a SCIM attribute path (such as externalId, userName, name.givenName or emails[type eq \"work\"].value)")
    })?;
    let attr = match &parsed {
        PatchPath::Attr(a) => a,
        PatchPath::Value(v) => &v.attr,
    };
    // The SCIM server reads attributes of the core User schema (a schema URI, if any, must be
    // that one's).
    if attr
        .uri
        .as_deref()
        .is_some_and(|u| !u.eq_ignore_ascii_case(CORE_USER_SCHEMA))
    {
        return Err(bad(&format!(
            "only attributes of the core User schema ({}) are read",
            CORE_USER_SCHEMA
        )));
    }
    let name = &attr.name;
    if NOT_A_VALUE.iter().any(|n| n.eq_ignore_ascii_case(name)) {
        return Err(bad(&format!(
            "{name} cannot identify a user or set a field"
        )));
    }
    Ok(())
}

fn user_id_attribute(v: Option<String>) -> Result<Option<String>, ApiError> {
    match v {
        Some(a) => {
            attribute_path("user_id_attribute", &a)?;
            Ok(Some(a))
        }
        None => Ok(None),
    }
}

/// The mapping as stored: each entry checked, no user field twice.
fn mapping(items: Vec<MappingItem>) -> Result<Value, ApiError> {
    if items.len() > MAX_MAPPING {
        return Err(ApiError::bad_request(
            "mapping",
            format!("mapping: at most {MAX_MAPPING} entries"),
        ));
    }
    for (i, m) in items.iter().enumerate() {
        if !MAPPED_FIELDS.contains(&m.auth0.as_str()) {
            let field = format!("mapping[{i}].auth0");
            return Err(ApiError::bad_request(
                field.clone(),
                format!(
                    "{field}: {} is not a field SCIM sets; one of: {}",
                    m.auth0,
                    MAPPED_FIELDS.join(", ")
                ),
            ));
        }
        if items[..i].iter().any(|o| o.auth0 == m.auth0) {
            let field = format!("mapping[{i}].auth0");
            return Err(ApiError::bad_request(
                field.clone(),
                format!("{field}: {} is mapped twice", m.auth0),
            ));
        }
        attribute_path(&format!("mapping[{i}].scim"), &m.scim)?;
    }
    Ok(serde_json::to_value(items).unwrap_or_else(|_| Value::Array(vec![])))
}

/// The token's scopes: known, at least one, each once, in [`SCIM_SCOPES`]' order.
fn token_scopes(asked: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    let Some(asked) = asked else {
        return Ok(SCIM_SCOPES.iter().map(|s| (*s).to_owned()).collect());
    };
    if asked.is_empty() {
        return Err(ApiError::bad_request(
            "scopes",
            "scopes: name at least one scope (or leave scopes out for all of them)",
        ));
    }
    if let Some(unknown) = asked.iter().find(|s| !SCIM_SCOPES.contains(&s.as_str())) {
        return Err(ApiError::bad_request(
            "scopes",
            format!(
                "scopes: {unknown} is not a SCIM scope; one of: {}",
                SCIM_SCOPES.join(", ")
            ),
        ));
    }
    Ok(SCIM_SCOPES
        .iter()
        .filter(|s| asked.iter().any(|a| a == *s))
        .map(|s| (*s).to_owned())
        .collect())
}

fn token_lifetime(v: Option<i64>) -> Result<Option<time::Duration>, ApiError> {
    match v {
        None => Ok(None),
        Some(s) if (1..=MAX_TOKEN_LIFETIME).contains(&s) => Ok(Some(time::Duration::seconds(s))),
        Some(_) => Err(ApiError::bad_request(
            "token_lifetime",
            format!(
                "token_lifetime: seconds from 1 to {MAX_TOKEN_LIFETIME} (ten years); leave it out for a token that does not expire"
            ),
        )),
    }
}

/// The configuration as stored (the answer shows what a later read shows: the store keeps
/// times to the millisecond).
async fn stored(deps: &Deps, c: &Connection) -> Result<ScimConfig, ApiError> {
    deps.store
        .find_scim_config(&c.id)
        .await?
        .ok_or_else(|| ApiError::not_found("SCIM configuration"))
}

/// The connection, and its SCIM configuration (404 when SCIM is off).
async fn configured(deps: &Deps, id: &str) -> Result<(Connection, ScimConfig), ApiError> {
    let c = find(deps, id).await?;
    match deps.store.find_scim_config(&c.id).await? {
        Some(s) => Ok((c, s)),
        None => Err(ApiError::not_found("SCIM configuration")),
    }
}

/// Turns SCIM on for an enterprise connection (`okta`, `oidc`, `samlp`).
#[utoipa::path(post, path = "/api/v2/connections/{id}/scim-configuration", tag = "connections",
    params(("id" = String, Path, description = "The connection's `id`.")),
    request_body(content = Option<CreateScimConfig>, description = "Optional."),
    responses(
        (status = 201, description = "SCIM is on.", body = ScimConfigView),
        (status = 409, description = "SCIM is already on.", body = latch_http::error::ErrorBody),
    ),
    security(("bearer" = ["create:scim_config"])))]
async fn post_scim_configuration(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    id: web::Path<String>,
    OptionalJson(body): OptionalJson<CreateScimConfig>,
) -> Result<HttpResponse, ApiError> {
    auth.require("create:scim_config")?;
    let c = find(&deps, &id).await?;
    if !c.strategy.is_enterprise() {
        return Err(ApiError::bad_request(
            "id",
            "SCIM provisions users into enterprise connections (okta, oidc, samlp) only.",
        ));
    }
    let attribute = user_id_attribute(body.user_id_attribute)?
        .unwrap_or_else(|| DEFAULT_SCIM_USER_ID_ATTRIBUTE.to_owned());
    let mapping = mapping(body.mapping.unwrap_or_default())?;
    if deps.store.find_scim_config(&c.id).await?.is_some() {
        return Err(ApiError::conflict(format!(
            "SCIM is already on for the connection {}.",
            c.name
        )));
    }
    // Turning SCIM on starts without tokens: one created while an earlier configuration was
    // being deleted must not come back to life with this one.
    for t in deps.store.list_scim_tokens(&c.id).await? {
        deps.store.delete_scim_token(&c.id, &t.token_id).await?;
    }
    let now = deps.clock.now();
    let s = ScimConfig {
        connection_id: c.id.clone(),
        user_id_attribute: attribute,
        mapping,
        created_at: now,
        updated_at: now,
    };
    deps.store.put_scim_config(&s).await?;
    audit::record(
        &deps,
        &req,
        &auth,
        "Create a SCIM configuration",
        None,
        Some(&c.name),
    )
    .await;
    let s = stored(&deps, &c).await?;
    Ok(HttpResponse::Created().json(config_view(&c, &s)))
}

/// The connection's SCIM configuration (404 while SCIM is off).
#[utoipa::path(get, path = "/api/v2/connections/{id}/scim-configuration", tag = "connections",
    params(("id" = String, Path, description = "The connection's `id`.")),
    responses((status = 200, description = "The configuration.", body = ScimConfigView)),
    security(("bearer" = ["read:scim_config"])))]
async fn get_scim_configuration(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require("read:scim_config")?;
    let (c, s) = configured(&deps, &id).await?;
    Ok(HttpResponse::Ok().json(config_view(&c, &s)))
}

/// Changes the SCIM configuration.
#[utoipa::path(patch, path = "/api/v2/connections/{id}/scim-configuration", tag = "connections",
    params(("id" = String, Path, description = "The connection's `id`.")),
    request_body = UpdateScimConfig,
    responses((status = 200, description = "The configuration as changed.", body = ScimConfigView)),
    security(("bearer" = ["update:scim_config"])))]
async fn patch_scim_configuration(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    id: web::Path<String>,
    StrictJson(body): StrictJson<UpdateScimConfig>,
) -> Result<HttpResponse, ApiError> {
    auth.require("update:scim_config")?;
    let (c, mut s) = configured(&deps, &id).await?;
    if let Some(a) = user_id_attribute(body.user_id_attribute)? {
        s.user_id_attribute = a;
    }
    if let Some(m) = body.mapping {
        s.mapping = mapping(m)?;
    }
    s.updated_at = deps.clock.now();
    deps.store.put_scim_config(&s).await?;
    audit::record(
        &deps,
        &req,
        &auth,
        "Update a SCIM configuration",
        None,
        Some(&c.name),
    )
    .await;
    let s = stored(&deps, &c).await?;
    Ok(HttpResponse::Ok().json(config_view(&c, &s)))
}

/// Turns SCIM off: every token of the connection is revoked. The users it provisioned stay.
#[utoipa::path(delete, path = "/api/v2/connections/{id}/scim-configuration", tag = "connections",
    params(("id" = String, Path, description = "The connection's `id`.")),
    responses((status = 204, description = "SCIM is off; its tokens are revoked.")),
    security(("bearer" = ["delete:scim_config"])))]
async fn delete_scim_configuration(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require("delete:scim_config")?;
    let c = find(&deps, &id).await?;
    if !deps.store.delete_scim_config(&c.id).await? {
        return Err(ApiError::not_found("SCIM configuration"));
    }
    audit::record(
        &deps,
        &req,
        &auth,
        "Delete a SCIM configuration",
        None,
        Some(&c.name),
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

/// Creates a SCIM bearer token for the connection. The token is in this answer only.
#[utoipa::path(post, path = "/api/v2/connections/{id}/scim-configuration/tokens", tag = "connections",
    params(("id" = String, Path, description = "The connection's `id`.")),
    request_body(content = Option<CreateScimToken>, description = "Optional."),
    responses((status = 201, description = "The token, shown only now.", body = CreatedScimToken)),
    security(("bearer" = ["create:scim_token"])))]
async fn post_scim_token(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    id: web::Path<String>,
    OptionalJson(body): OptionalJson<CreateScimToken>,
) -> Result<HttpResponse, ApiError> {
    auth.require("create:scim_token")?;
    let scopes = token_scopes(body.scopes)?;
    let lifetime = token_lifetime(body.token_lifetime)?;
    let (c, _) = configured(&deps, &id).await?;
    let now = deps.clock.now();
    let token = latch_jose::random_token(32);
    let t = ScimToken {
        token_id: format!("tok_{}", latch_jose::random_alnum(16)),
        connection_id: c.id.clone(),
        digest: latch_jose::token_digest(&token),
        scopes,
        created_at: now,
        valid_until: lifetime.map(|l| now + l),
    };
    deps.store.insert_scim_token(&t).await?;
    audit::record(
        &deps,
        &req,
        &auth,
        "Create a SCIM token",
        None,
        Some(&c.name),
    )
    .await;
    // As stored (times to the store's precision), so the list shows the same.
    let t = deps
        .store
        .find_scim_token(&t.digest)
        .await?
        .ok_or_else(|| ApiError::not_found("SCIM token"))?;
    let v = token_view(&t);
    Ok(HttpResponse::Created()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(CreatedScimToken {
            token_id: v.token_id,
            token,
            scopes: v.scopes,
            created_at: v.created_at,
            valid_until: v.valid_until,
        }))
}

/// The connection's SCIM tokens, oldest first, without the tokens themselves.
#[utoipa::path(get, path = "/api/v2/connections/{id}/scim-configuration/tokens", tag = "connections",
    params(("id" = String, Path, description = "The connection's `id`.")),
    responses((status = 200, description = "The tokens.", body = Vec<ScimTokenView>)),
    security(("bearer" = ["read:scim_token"])))]
async fn get_scim_tokens(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require("read:scim_token")?;
    let (c, _) = configured(&deps, &id).await?;
    let tokens = deps.store.list_scim_tokens(&c.id).await?;
    Ok(HttpResponse::Ok().json(tokens.iter().map(token_view).collect::<Vec<_>>()))
}

/// Revokes a SCIM token of the connection.
#[utoipa::path(delete, path = "/api/v2/connections/{id}/scim-configuration/tokens/{token_id}", tag = "connections",
    params(
        ("id" = String, Path, description = "The connection's `id`."),
        ("token_id" = String, Path, description = "The token's `token_id`."),
    ),
    responses((status = 204, description = "Revoked.")),
    security(("bearer" = ["delete:scim_token"])))]
async fn delete_scim_token(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    auth.require("delete:scim_token")?;
    let (id, token_id) = path.into_inner();
    let c = find(&deps, &id).await?;
    if !deps.store.delete_scim_token(&c.id, &token_id).await? {
        return Err(ApiError::not_found("SCIM token"));
    }
    audit::record(
        &deps,
        &req,
        &auth,
        "Delete a SCIM token",
        None,
        Some(&c.name),
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

/// The admin UI's SCIM writes, through the handlers above (same checks, same audit events).
pub(crate) mod ops {
    use super::*;

    fn path(id: &str) -> web::Path<String> {
        web::Path::from(id.to_owned())
    }

    pub(crate) async fn create(
        deps: &web::Data<Deps>,
        auth: ManagementAuth,
        req: &HttpRequest,
        id: &str,
        body: Value,
    ) -> Result<Value, ApiError> {
        let res = post_scim_configuration(
            deps.clone(),
            auth,
            req.clone(),
            path(id),
            OptionalJson(crate::api::body(body)?),
        )
        .await?;
        crate::api::answer(res).await
    }

    pub(crate) async fn update(
        deps: &web::Data<Deps>,
        auth: ManagementAuth,
        req: &HttpRequest,
        id: &str,
        body: Value,
    ) -> Result<Value, ApiError> {
        let res = patch_scim_configuration(
            deps.clone(),
            auth,
            req.clone(),
            path(id),
            StrictJson(crate::api::body(body)?),
        )
        .await?;
        crate::api::answer(res).await
    }

    pub(crate) async fn delete(
        deps: &web::Data<Deps>,
        auth: ManagementAuth,
        req: &HttpRequest,
        id: &str,
    ) -> Result<(), ApiError> {
        delete_scim_configuration(deps.clone(), auth, req.clone(), path(id)).await?;
        Ok(())
    }

    pub(crate) async fn create_token(
        deps: &web::Data<Deps>,
        auth: ManagementAuth,
        req: &HttpRequest,
        id: &str,
        body: Value,
    ) -> Result<Value, ApiError> {
        let res = post_scim_token(
            deps.clone(),
            auth,
            req.clone(),
            path(id),
            OptionalJson(crate::api::body(body)?),
        )
        .await?;
        crate::api::answer(res).await
    }

    pub(crate) async fn delete_token(
        deps: &web::Data<Deps>,
        auth: ManagementAuth,
        req: &HttpRequest,
        id: &str,
        token_id: &str,
    ) -> Result<(), ApiError> {
        delete_scim_token(
            deps.clone(),
            auth,
            req.clone(),
            web::Path::from((id.to_owned(), token_id.to_owned())),
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn attribute_paths() {
        for ok in [
            "externalId",
            "userName",
            "name.givenName",
            "emails[type eq \"work\"].value",
            "urn:ietf:params:scim:schemas:core:2.0:User:externalId",
        ] {
            assert!(attribute_path("f", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "emails[type eq",
            "a b",
            "id",
            "ID",
            "meta.created",
            "password",
            "active",
            "groups[value eq \"x\"].display",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
            &"a".repeat(257),
        ] {
            let e = attribute_path("user_id_attribute", bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("user_id_attribute"), "{bad}");
        }
    }

    #[test]
    fn scopes_and_lifetimes() {
        assert_eq!(token_scopes(None).unwrap(), SCIM_SCOPES.to_vec());
        assert_eq!(
            token_scopes(Some(vec![
                "patch:users".into(),
                "get:users".into(),
                "get:users".into()
            ]))
            .unwrap(),
            ["get:users", "patch:users"]
        );
        for bad in [
            vec![],
            vec!["get:users".to_owned(), "read:users".to_owned()],
        ] {
            assert_eq!(
                token_scopes(Some(bad)).unwrap_err().field.as_deref(),
                Some("scopes")
            );
        }
        assert_eq!(token_lifetime(None).unwrap(), None);
        assert_eq!(
            token_lifetime(Some(MAX_TOKEN_LIFETIME)).unwrap(),
            Some(time::Duration::seconds(MAX_TOKEN_LIFETIME))
        );
        for bad in [0, -1, MAX_TOKEN_LIFETIME + 1, i64::MAX] {
            assert_eq!(
                token_lifetime(Some(bad)).unwrap_err().field.as_deref(),
                Some("token_lifetime"),
                "{bad}"
            );
        }
    }

    #[test]
    fn mappings() {
        let m = |a: &str, s: &str| MappingItem {
            auth0: a.into(),
            scim: s.into(),
        };
        assert_eq!(
            mapping(vec![m("given_name", "name.givenName")]).unwrap(),
            json!([{"auth0": "given_name", "scim": "name.givenName"}])
        );
        assert_eq!(mapping(vec![]).unwrap(), json!([]));
        let field = |items| mapping(items).unwrap_err().field.unwrap();
        assert_eq!(field(vec![m("user_id", "userName")]), "mapping[0].auth0");
        assert_eq!(
            field(vec![m("email", "emails.value"), m("email", "userName")]),
            "mapping[1].auth0"
        );
        assert_eq!(
            field(vec![m("email", "emails.value"), m("name", "x[")]),
            "mapping[1].scim"
        );
        assert_eq!(field(vec![m("name", "password")]), "mapping[0].scim");
    }
}
