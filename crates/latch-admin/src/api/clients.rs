//! `/api/v2/clients`: create (the secret is returned once), list, get, update, delete, rotate.

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use latch_core::model::*;
use latch_core::net::OutboundPolicy;
use latch_core::validate;
use latch_core::*;
use latch_http::{ApiError, ManagementAuth, StrictJson, StrictQuery};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;
use utoipa::ToSchema;

use super::{Op, TotalsQuery, op};
use crate::{Deps, audit};

pub(crate) fn routes() -> Vec<Op> {
    vec![
        op(Method::GET, "/clients", get_clients),
        op(Method::POST, "/clients", post_client),
        op(Method::GET, "/clients/{id}", get_client),
        op(Method::PATCH, "/clients/{id}", patch_client),
        op(Method::DELETE, "/clients/{id}", delete_client),
        op(
            Method::POST,
            "/clients/{id}/rotate-secret",
            post_rotate_secret,
        ),
    ]
}

/// The strings a core enum's values serialize to, as an OpenAPI enum: the schema follows the
/// type's own serde names.
fn enum_schema<T: Serialize>(values: &[T]) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(
            values.iter().filter_map(|v| serde_json::to_value(v).ok()),
        ))
        .build()
}

fn app_type_schema() -> utoipa::openapi::Object {
    enum_schema(&[
        AppType::RegularWeb,
        AppType::Spa,
        AppType::Native,
        AppType::NonInteractive,
    ])
}

fn auth_method_schema() -> utoipa::openapi::Object {
    enum_schema(&[
        TokenEndpointAuthMethod::ClientSecretBasic,
        TokenEndpointAuthMethod::ClientSecretPost,
        TokenEndpointAuthMethod::None,
    ])
}

fn grant_types_schema() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::Array::new(enum_schema(&[
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
    ]))
}

/// Auth0's `oidc_logout.backchannel_logout_initiators.mode`.
fn initiator_mode_schema() -> utoipa::openapi::Object {
    let mut o = enum_schema(&[INITIATORS_ALL, INITIATORS_CUSTOM]);
    o.description = Some(
        "`all`: every kind of session end, present and future; `custom`: only those in `selected_initiators`."
            .into(),
    );
    o
}

/// The initiators an app may select, by their serde names.
fn selected_initiators_schema() -> utoipa::openapi::schema::Array {
    let mut a = utoipa::openapi::schema::Array::new(enum_schema(&LogoutInitiator::SELECTABLE));
    a.description = Some(
        "With `custom` only (required then): `rp-logout` (an app's logout), `idp-logout` (GTR, upstream back-channel logout, an upstream SAML LogoutRequest), `session-revoked` (an administrator ended sessions), `account-deactivated` (blocked), `account-deleted` (deleted), `password-changed`, `session-expired`. An empty list: told of nothing."
            .into(),
    );
    a
}

const INITIATORS_ALL: &str = "all";
const INITIATORS_CUSTOM: &str = "custom";
const INITIATORS_FIELD: &str = "oidc_logout.backchannel_logout_initiators";

/// The admin UI's own client is Latch's to manage: an API caller that could change its callbacks
/// (`update:clients`) could have administrators' codes sent to a URL of its choosing.
fn not_built_in(id: &ClientId) -> Result<(), ApiError> {
    if id.as_str() == ADMIN_CLIENT_ID {
        return Err(ApiError::new(
            actix_web::http::StatusCode::FORBIDDEN,
            "operation_not_supported",
            "The admin UI's client (latch-admin) is managed by Latch and cannot be changed or deleted.",
        ));
    }
    Ok(())
}

/// Bytes of entropy in a client secret.
const SECRET_BYTES: usize = 48;

/// A client's settings: all of them on creation (`name` required), those to change on update.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"name": "Example app", "callbacks": ["https://app.example.com/callback"],
    "allowed_logout_urls": ["https://app.example.com/"]})))]
struct ClientInput {
    /// 1-128 characters.
    name: Option<String>,
    description: Option<String>,
    /// `spa` and `native` clients are public (no secret).
    #[schema(schema_with = app_type_schema)]
    app_type: Option<AppType>,
    /// Redirect URIs, compared exactly: `https://`, or `http://` on loopback hosts.
    callbacks: Option<Vec<String>>,
    /// Where RP-initiated logout may send the browser, compared exactly.
    allowed_logout_urls: Option<Vec<String>>,
    /// Origins (no path) allowed for browser-based requests.
    web_origins: Option<Vec<String>>,
    #[schema(schema_with = grant_types_schema)]
    grant_types: Option<Vec<GrantType>>,
    #[schema(schema_with = auth_method_schema)]
    token_endpoint_auth_method: Option<TokenEndpointAuthMethod>,
    jwt_configuration: Option<JwtConfiguration>,
    refresh_token: Option<RefreshTokenConfig>,
    oidc_logout: Option<OidcLogoutInput>,
    addons: Option<AddonsInput>,
    /// Where Latch sends Global Token Revocation for this app on every user-wide logout;
    /// `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<GtrInput>)]
    global_token_revocation: Option<Option<GtrInput>>,
}

/// Latch's `global_token_revocation` client field.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct GtrInput {
    /// The app's GTR endpoint (`https://`, or `http://` on loopback; no query or fragment):
    /// the request is POSTed there, and it is the token's `aud`.
    endpoint: String,
    /// `iss_sub` (the default: Latch's issuer and the `user_id`) or `email`.
    #[serde(default)]
    subject_format: Option<String>,
}

/// Auth0's addons: `samlp` makes the client a SAML app (Latch is its SAML IdP).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AddonsInput {
    /// The SAML2 Web App addon, replaced whole; `null` removes it. Fields (Auth0's):
    /// `audience` (required), `recipient`, `nameIdentifierFormat`, `signResponse`,
    /// `signatureAlgorithm`, `digestAlgorithm`, `lifetimeInSeconds`, `mappings`, `signingCert`,
    /// `logout` (`callback`, `slo_enabled`), `binding`, `allowIdpInitiated`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    samlp: Option<Option<SamlpAddon>>,
}

/// Signing algorithm and token lifetimes.
#[derive(Deserialize, Serialize, ToSchema)]
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

/// Refresh tokens always rotate and expire.
#[derive(Deserialize, Serialize, ToSchema)]
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

/// How the client hears about logouts.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct OidcLogoutInput {
    /// At most one URL: where back-channel logout tokens are POSTed.
    #[serde(default)]
    backchannel_logout_urls: Option<Vec<String>>,
    #[serde(default)]
    backchannel_logout_session_required: Option<bool>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    frontchannel_logout_url: Option<Option<String>>,
    #[serde(default)]
    frontchannel_logout_session_required: Option<bool>,
    /// Which kinds of session end the app is sent a back-channel logout token for (Auth0's);
    /// replaced whole. Default `{"mode": "all"}`.
    #[serde(default)]
    backchannel_logout_initiators: Option<InitiatorsInput>,
}

/// Auth0's `backchannel_logout_initiators`: `{"mode": "all"}`, or `{"mode": "custom",
/// "selected_initiators": [...]}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"mode": "custom", "selected_initiators": ["rp-logout", "password-changed"]})))]
struct InitiatorsInput {
    /// `all` or `custom` (the schema's description says what each means).
    #[schema(schema_with = initiator_mode_schema)]
    mode: String,
    /// Required with `custom`, refused with `all`.
    #[serde(default)]
    #[schema(schema_with = selected_initiators_schema, required = false)]
    selected_initiators: Option<Vec<String>>,
}

/// The app's choice of initiators as `input` says, or a 400 naming the member at fault.
fn initiators(input: InitiatorsInput) -> Result<BackchannelLogoutInitiators, ApiError> {
    let list_field = format!("{INITIATORS_FIELD}.selected_initiators");
    match (input.mode.as_str(), input.selected_initiators) {
        (INITIATORS_ALL, None) => Ok(BackchannelLogoutInitiators::All),
        (INITIATORS_ALL, Some(_)) => Err(ApiError::bad_request(
            list_field.clone(),
            format!("{list_field} applies only to mode custom"),
        )),
        (INITIATORS_CUSTOM, None) => Err(ApiError::bad_request(
            list_field.clone(),
            format!("{list_field} is required with mode custom"),
        )),
        (INITIATORS_CUSTOM, Some(names)) => {
            let mut selected = Vec::with_capacity(names.len());
            for (i, name) in names.iter().enumerate() {
                let Some(v) = LogoutInitiator::parse_selectable(name) else {
                    let known: Vec<&str> = LogoutInitiator::SELECTABLE
                        .iter()
                        .map(|i| i.as_str())
                        .collect();
                    return Err(ApiError::bad_request(
                        format!("{list_field}[{i}]"),
                        format!("{list_field}[{i}] must be one of {}", known.join(", ")),
                    ));
                };
                if !selected.contains(&v) {
                    selected.push(v);
                }
            }
            Ok(BackchannelLogoutInitiators::Custom {
                selected_initiators: selected,
            })
        }
        _ => Err(ApiError::bad_request(
            format!("{INITIATORS_FIELD}.mode"),
            format!("{INITIATORS_FIELD}.mode must be all or custom"),
        )),
    }
}

/// A member that may be `null`: absent is `None` (unchanged, by `#[serde(default)]`), `null` is
/// `Some(None)` (removed), a value is `Some(Some(v))`. Plain `Option<Option<T>>` reads `null` as
/// absent.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
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

/// URLs of a list field. `fetched` (Latch itself connects to them: the back-channel URL) puts
/// them through the outbound address policy; URLs only a browser visits (callbacks, logout URLs,
/// origins, the front-channel URL) may be on an intranet.
fn urls(
    field: &str,
    raw: Vec<String>,
    fetched: Option<&OutboundPolicy>,
) -> Result<Vec<Url>, ApiError> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, u) in raw.iter().enumerate() {
        let field = format!("{field}[{i}]");
        let url = match fetched {
            Some(policy) => validate::outbound_url(&field, u, policy)?,
            None => validate::app_url(&field, u)?,
        };
        if !out.contains(&url) {
            out.push(url);
        }
    }
    Ok(out)
}

/// A GTR endpoint is fetched (the outbound policy) and is the token's exact `aud`: no query,
/// no fragment.
fn gtr_target(g: GtrInput, policy: &OutboundPolicy) -> Result<GtrTarget, ApiError> {
    const FIELD: &str = "global_token_revocation.endpoint";
    let endpoint = validate::outbound_url(FIELD, &g.endpoint, policy)?;
    if endpoint.query().is_some() || endpoint.fragment().is_some() {
        return Err(ApiError::bad_request(
            FIELD,
            format!("{FIELD} must have no query or fragment"),
        ));
    }
    let subject_format = match g.subject_format.as_deref() {
        None | Some("iss_sub") => GtrSubjectFormat::IssSub,
        Some("email") => GtrSubjectFormat::Email,
        Some(_) => {
            return Err(ApiError::bad_request(
                "global_token_revocation.subject_format",
                "global_token_revocation.subject_format must be iss_sub or email",
            ));
        }
    };
    Ok(GtrTarget {
        endpoint,
        subject_format,
    })
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
fn apply(
    c: &mut Client,
    input: ClientInput,
    creating: bool,
    policy: &OutboundPolicy,
) -> Result<(), ApiError> {
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
        c.callbacks = urls("callbacks", v, None)?;
    }
    if let Some(v) = input.allowed_logout_urls {
        c.allowed_logout_urls = urls("allowed_logout_urls", v, None)?;
    }
    if let Some(v) = input.web_origins {
        let origins = urls("web_origins", v, None)?;
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
            let list = urls("oidc_logout.backchannel_logout_urls", v, Some(policy))?;
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
        if let Some(v) = o.backchannel_logout_initiators {
            c.oidc_logout.backchannel_logout_initiators = initiators(v)?;
        }
    }
    if let Some(a) = input.addons
        && let Some(samlp) = a.samlp
    {
        c.addons.samlp = samlp;
    }
    if let Some(g) = input.global_token_revocation {
        c.global_token_revocation = g.map(|g| gtr_target(g, policy)).transpose()?;
    }
    // Rules across fields.
    if let Some(samlp) = &c.addons.samlp {
        validate::samlp_addon(samlp, &c.callbacks)?;
    }
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

/// How the client hears about logouts.
#[derive(Serialize, ToSchema)]
struct OidcLogoutView {
    #[schema(value_type = Vec<String>)]
    backchannel_logout_urls: Vec<Url>,
    backchannel_logout_session_required: bool,
    #[schema(value_type = Option<String>)]
    frontchannel_logout_url: Option<Url>,
    frontchannel_logout_session_required: bool,
    backchannel_logout_initiators: InitiatorsView,
}

/// Which kinds of session end the app is sent a back-channel logout token for.
#[derive(Serialize, ToSchema)]
struct InitiatorsView {
    /// `all` or `custom`.
    #[schema(schema_with = initiator_mode_schema)]
    mode: &'static str,
    /// With `custom` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = selected_initiators_schema, required = false)]
    selected_initiators: Option<Vec<&'static str>>,
}

fn initiators_view(i: &BackchannelLogoutInitiators) -> InitiatorsView {
    match i {
        BackchannelLogoutInitiators::All => InitiatorsView {
            mode: INITIATORS_ALL,
            selected_initiators: None,
        },
        BackchannelLogoutInitiators::Custom {
            selected_initiators,
        } => InitiatorsView {
            mode: INITIATORS_CUSTOM,
            selected_initiators: Some(selected_initiators.iter().map(|i| i.as_str()).collect()),
        },
    }
}

/// A client as the API shows it.
#[derive(Serialize, ToSchema)]
pub(crate) struct ClientView {
    client_id: String,
    name: String,
    description: Option<String>,
    #[schema(schema_with = app_type_schema)]
    app_type: AppType,
    is_first_party: bool,
    oidc_conformant: bool,
    #[schema(value_type = Vec<String>)]
    callbacks: Vec<Url>,
    #[schema(value_type = Vec<String>)]
    allowed_logout_urls: Vec<Url>,
    #[schema(value_type = Vec<String>)]
    web_origins: Vec<Url>,
    #[schema(schema_with = grant_types_schema)]
    grant_types: Vec<GrantType>,
    #[schema(schema_with = auth_method_schema)]
    token_endpoint_auth_method: TokenEndpointAuthMethod,
    jwt_configuration: JwtConfiguration,
    refresh_token: RefreshTokenConfig,
    oidc_logout: OidcLogoutView,
    /// `samlp` for a SAML app (its IdP metadata: `GET /samlp/metadata/{client_id}`).
    #[schema(value_type = Object)]
    addons: ClientAddons,
    /// Where Latch sends Global Token Revocation (`endpoint`, `subject_format`), when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    global_token_revocation: Option<GtrTarget>,
    /// Shown only when made: on creation, rotation, or a public client turned confidential.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
}

super::list!(
    /// Clients: the array, or with `include_totals=true` a page.
    ClientList,
    ClientPage,
    clients,
    ClientView
);

fn view(c: &Client, secret: Option<&str>) -> ClientView {
    ClientView {
        client_id: c.client_id.as_str().to_owned(),
        name: c.name.clone(),
        description: c.description.clone(),
        app_type: c.app_type,
        is_first_party: true,
        oidc_conformant: true,
        callbacks: c.callbacks.clone(),
        allowed_logout_urls: c.allowed_logout_urls.clone(),
        web_origins: c.web_origins.clone(),
        grant_types: c.grant_types.clone(),
        token_endpoint_auth_method: c.token_endpoint_auth_method,
        jwt_configuration: JwtConfiguration {
            alg: Some(c.signing_alg.as_str().to_owned()),
            lifetime_in_seconds: Some(c.lifetimes.id_token),
            access_token_lifetime_in_seconds: Some(c.lifetimes.access_token),
        },
        refresh_token: RefreshTokenConfig {
            rotation_type: Some("rotating".into()),
            expiration_type: Some("expiring".into()),
            token_lifetime: Some(c.lifetimes.refresh_token),
            idle_token_lifetime: Some(c.lifetimes.refresh_token_idle),
        },
        oidc_logout: OidcLogoutView {
            backchannel_logout_urls: c.oidc_logout.backchannel_logout_urls.clone(),
            backchannel_logout_session_required: c.oidc_logout.backchannel_logout_session_required,
            frontchannel_logout_url: c.oidc_logout.frontchannel_logout_url.clone(),
            frontchannel_logout_session_required: c
                .oidc_logout
                .frontchannel_logout_session_required,
            backchannel_logout_initiators: initiators_view(
                &c.oidc_logout.backchannel_logout_initiators,
            ),
        },
        addons: c.addons.clone(),
        global_token_revocation: c.global_token_revocation.clone(),
        client_secret: secret.map(str::to_owned),
    }
}

fn new_secret(now: time::OffsetDateTime) -> (String, ClientSecret) {
    let secret = latch_jose::random_token(SECRET_BYTES);
    let stored = ClientSecret {
        digest: latch_jose::token_digest(&secret),
        created_at: now,
    };
    (secret, stored)
}

/// Every client.
#[utoipa::path(get, path = "/api/v2/clients", tag = "clients",
    params(TotalsQuery),
    responses((status = 200, description = "The clients.", body = ClientList)),
    security(("bearer" = ["read:clients"])))]
async fn get_clients(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    q: StrictQuery<TotalsQuery>,
) -> Result<HttpResponse, ApiError> {
    auth.require("read:clients")?;
    let items: Vec<ClientView> = deps
        .store
        .list_clients()
        .await?
        .iter()
        .map(|c| view(c, None))
        .collect();
    // Not paged: one page holds them all.
    let n = items.len() as u64;
    Ok(HttpResponse::Ok().json(ClientList::new(
        items,
        q.include_totals.then_some((0, n, n)),
    )))
}

/// Creates a client; a confidential one's secret is in this answer and never again.
#[utoipa::path(post, path = "/api/v2/clients", tag = "clients",
    request_body = ClientInput,
    responses((status = 201, description = "The client, with `client_secret` when confidential.", body = ClientView)),
    security(("bearer" = ["create:clients"])))]
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
        // Front-channel logout sends `iss` and `sid` unless the app says otherwise.
        oidc_logout: OidcLogout {
            frontchannel_logout_session_required: true,
            ..OidcLogout::default()
        },
        addons: ClientAddons::default(),
        global_token_revocation: None,
        secrets: vec![],
        created_at: now,
        updated_at: now,
    };
    apply(&mut c, input, true, &deps.outbound)?;
    let secret = if c.app_type.is_public() {
        None
    } else {
        let (plain, stored) = new_secret(now);
        c.secrets.push(stored);
        Some(plain)
    };
    deps.store.insert_client(&c).await?;
    // The built-in database connection serves every new client unless an admin turns it off.
    // One row added in place: another instance enabling its own new client at the same moment
    // keeps its row too (a whole-list write from a cached copy lost one).
    if let Some(db) = deps
        .store
        .find_connection_by_name(&ConnectionName::new(DATABASE_CONNECTION))
        .await?
    {
        deps.store
            .enable_client_on_connection(&db.id, &c.client_id)
            .await?;
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

/// One client.
#[utoipa::path(get, path = "/api/v2/clients/{id}", tag = "clients",
    params(("id" = String, Path, description = "The `client_id`.")),
    responses((status = 200, description = "The client.", body = ClientView)),
    security(("bearer" = ["read:clients"])))]
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

/// Changes a client (not the admin UI's own, `latch-admin`: a 403).
#[utoipa::path(patch, path = "/api/v2/clients/{id}", tag = "clients",
    params(("id" = String, Path, description = "The `client_id`.")),
    request_body = ClientInput,
    responses((status = 200, description = "The client as changed (with a new `client_secret` when it became confidential).", body = ClientView)),
    security(("bearer" = ["update:clients"])))]
async fn patch_client(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    id: web::Path<String>,
    StrictJson(input): StrictJson<ClientInput>,
) -> Result<HttpResponse, ApiError> {
    auth.require("update:clients")?;
    let id = ClientId::new(id.into_inner());
    not_built_in(&id)?;
    let mut c = deps.store.get_client(&id).await?;
    let was_public = c.app_type.is_public();
    apply(&mut c, input, false, &deps.outbound)?;
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

/// Deletes a client (not `latch-admin`: a 403).
#[utoipa::path(delete, path = "/api/v2/clients/{id}", tag = "clients",
    params(("id" = String, Path, description = "The `client_id`.")),
    responses((status = 204, description = "Deleted.")),
    security(("bearer" = ["delete:clients"])))]
async fn delete_client(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require("delete:clients")?;
    let id = ClientId::new(id.into_inner());
    not_built_in(&id)?;
    deps.store.delete_client(&id).await?;
    audit::record(&deps, &req, &auth, "Delete a client", Some(&id), None).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Replaces a confidential client's secret; the new one is in this answer and never again.
#[utoipa::path(post, path = "/api/v2/clients/{id}/rotate-secret", tag = "clients",
    params(("id" = String, Path, description = "The `client_id`.")),
    responses((status = 200, description = "The client with its new `client_secret`.", body = ClientView)),
    security(("bearer" = ["update:client_keys"])))]
async fn post_rotate_secret(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require("update:client_keys")?;
    let id = ClientId::new(id.into_inner());
    not_built_in(&id)?;
    // Whoever rotates a secret can act as that client: only with every scope it holds.
    for g in deps.store.list_client_grants().await? {
        if g.client_id == id {
            for scope in &g.scope {
                auth.require(scope)?;
            }
        }
    }
    let mut c = deps.store.get_client(&id).await?;
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
        serde_json::to_value(view(c, None)).unwrap_or(Value::Null)
    }
}
