//! `/api/v2/users`: create database users, search, read, block/unblock, delete;
//! `/api/v2/users-by-email`.

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use latch_core::logout::{Target, TokenPolicy, Urgency};
use latch_core::model::*;
use latch_core::users::{NewUser, PasswordHasher as _, UserError};
use latch_core::*;
use latch_http::{ApiError, ManagementAuth, StrictJson, StrictQuery};
use latch_jose::password::Argon2id;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::{Op, op};
use crate::{Deps, audit};

pub(crate) fn routes() -> Vec<Op> {
    vec![
        op(Method::GET, "/users", get_users),
        op(Method::POST, "/users", post_user),
        op(Method::GET, "/users/{id}", get_user),
        op(Method::PATCH, "/users/{id}", patch_user),
        op(Method::DELETE, "/users/{id}", delete_user),
        op(Method::GET, "/users/{id}/sessions", get_user_sessions),
        op(Method::DELETE, "/users/{id}/sessions", delete_user_sessions),
        op(
            Method::DELETE,
            "/users/{id}/sessions/{sid}",
            one_session::delete_user_session,
        ),
        op(
            Method::GET,
            "/users/{id}/refresh-tokens",
            get_user_refresh_tokens,
        ),
        op(Method::GET, "/users-by-email", get_users_by_email),
    ]
}

/// A database user to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"connection": "database", "email": "jane@example.com",
    "password": "Example-Passw0rd!", "name": "Jane Doe"})))]
struct CreateUser {
    connection: String,
    email: String,
    password: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email_verified: Option<bool>,
    #[serde(default)]
    blocked: Option<bool>,
}

/// What to change; every member is optional.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateUser {
    /// `true` also signs the user out everywhere and revokes every refresh token.
    #[serde(default)]
    pub(crate) blocked: Option<bool>,
    /// Merged into the user's `app_metadata` key by key; a `null` removes the key (Auth0).
    /// Changing `roles` (a list of role names) needs the `update:roles` scope.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub(crate) app_metadata: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email_verified: Option<bool>,
    /// Needs the `update:passwords` scope; the user must have a database identity. Setting it
    /// ends every session of the user and tells the apps (initiator `password-changed`); refresh
    /// tokens die with their sessions, `offline_access` ones are kept.
    #[serde(default)]
    password: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SearchQuery {
    /// Case-insensitive substring of the email or name.
    #[serde(default)]
    q: Option<String>,
    /// Page number, from 0.
    #[serde(default)]
    page: Option<u32>,
    /// Users per page (1-100, default 50).
    #[serde(default)]
    per_page: Option<u32>,
    /// Answer `{"start", "limit", "length", "total", "users": [...]}` instead of the bare array.
    #[serde(default)]
    include_totals: bool,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct EmailQuery {
    /// The email address, compared case-insensitively.
    email: String,
}

/// RFC 3339; `None` only for an instant RFC 3339 cannot write (past year 9999).
fn rfc3339(t: time::OffsetDateTime) -> Option<String> {
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// One way the user signs in: a connection and the upstream's subject.
#[derive(Serialize, ToSchema)]
struct IdentityView {
    /// The connection's name (`null` if it was deleted since).
    connection: Option<String>,
    /// The connection's strategy (`auth0`, `okta`, `oidc`, `samlp`).
    provider: Option<String>,
    /// The upstream subject.
    user_id: String,
    /// The upstream issuer.
    issuer: String,
    #[serde(rename = "isSocial")]
    is_social: bool,
}

/// A user as the API shows it.
#[derive(Serialize, ToSchema)]
pub(crate) struct UserView {
    user_id: String,
    email: Option<String>,
    email_verified: bool,
    name: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    nickname: Option<String>,
    picture: Option<String>,
    blocked: bool,
    #[schema(format = DateTime)]
    created_at: Option<String>,
    #[schema(format = DateTime)]
    updated_at: Option<String>,
    #[schema(format = DateTime)]
    last_login: Option<String>,
    logins_count: i64,
    #[schema(value_type = Object)]
    app_metadata: Map<String, Value>,
    identities: Vec<IdentityView>,
}

super::list!(
    /// Users: the array, or with `include_totals=true` a page.
    UserList,
    UserPage,
    users,
    UserView
);

async fn view(deps: &Deps, u: &User) -> Result<UserView, ApiError> {
    let connections = deps.store.list_connections().await?;
    let identities = deps
        .store
        .list_identities(&u.user_id)
        .await?
        .into_iter()
        .map(|i| {
            let c = connections.iter().find(|c| c.id == i.connection_id);
            IdentityView {
                connection: c.map(|c| c.name.as_str().to_owned()),
                provider: c.map(|c| c.strategy.as_str().to_owned()),
                user_id: i.subject,
                issuer: i.issuer,
                is_social: false,
            }
        })
        .collect();
    Ok(UserView {
        user_id: u.user_id.as_str().to_owned(),
        email: u.email.clone(),
        email_verified: u.email_verified,
        name: u.name.clone(),
        given_name: u.given_name.clone(),
        family_name: u.family_name.clone(),
        nickname: u.nickname.clone(),
        picture: u.picture.clone(),
        blocked: u.blocked,
        created_at: rfc3339(u.created_at),
        updated_at: rfc3339(u.updated_at),
        last_login: u.last_login.and_then(rfc3339),
        logins_count: u.logins_count,
        app_metadata: u.app_metadata.clone(),
        identities,
    })
}

/// The connection a create body names (a 400 naming `connection` when there is none); whether
/// users may be created in it is [`latch_core::users::create`]'s rule.
async fn connection_named(deps: &Deps, name: &str) -> Result<Connection, ApiError> {
    deps.store
        .find_connection_by_name(&ConnectionName::new(name))
        .await?
        .ok_or_else(|| {
            ApiError::bad_request(
                "connection",
                format!("connection: no connection named {name}"),
            )
        })
}

/// Creates a user in a database connection.
#[utoipa::path(post, path = "/api/v2/users", tag = "users",
    request_body = CreateUser,
    responses(
        (status = 201, description = "The user.", body = UserView),
        (status = 409, description = "The connection already has a user with this email.", body = latch_http::error::ErrorBody),
    ),
    security(("bearer" = ["create:users"])))]
async fn post_user(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    StrictJson(body): StrictJson<CreateUser>,
) -> Result<HttpResponse, ApiError> {
    auth.require("create:users")?;
    let conn = connection_named(&deps, &body.connection).await?;
    let new = NewUser {
        connection: &conn,
        id: latch_jose::random_alnum(24).to_lowercase(),
        username: None,
        email: Some(&body.email),
        email_verified: body.email_verified.unwrap_or(false),
        password: Some(&body.password),
        password_policy: true,
        name: body.name,
        nickname: None,
        blocked: body.blocked.unwrap_or(false),
        app_metadata: Default::default(),
    };
    let user = latch_core::users::create(&*deps.store, &*deps.clock, &Argon2id, new).await?;
    audit::record(&deps, &req, &auth, "Create a user", None, Some(&conn.name)).await;
    Ok(HttpResponse::Created().json(view(&deps, &user).await?))
}

/// Lists users, newest first, optionally matching a search.
#[utoipa::path(get, path = "/api/v2/users", tag = "users",
    params(SearchQuery),
    responses((status = 200, description = "The users.", body = UserList)),
    security(("bearer" = ["read:users"])))]
async fn get_users(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    q: StrictQuery<SearchQuery>,
) -> Result<HttpResponse, ApiError> {
    auth.require("read:users")?;
    let query = UserQuery {
        q: q.q.clone(),
        page: q.page.unwrap_or(0),
        per_page: q.per_page.unwrap_or(50).clamp(1, 100),
    };
    let users = deps.store.list_users(&query).await?;
    let totals = if q.include_totals {
        let total = deps.store.count_users(&query).await?;
        Some((
            super::start(query.page, query.per_page),
            u64::from(query.per_page),
            total,
        ))
    } else {
        None
    };
    let mut items = Vec::with_capacity(users.len());
    for u in &users {
        items.push(view(&deps, u).await?);
    }
    Ok(HttpResponse::Ok().json(UserList::new(items, totals)))
}

/// The users with this email address (one per connection at most for database users).
#[utoipa::path(get, path = "/api/v2/users-by-email", tag = "users",
    params(EmailQuery),
    responses((status = 200, description = "The users.", body = Vec<UserView>)),
    security(("bearer" = ["read:users"])))]
async fn get_users_by_email(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    q: StrictQuery<EmailQuery>,
) -> Result<HttpResponse, ApiError> {
    auth.require("read:users")?;
    let email = latch_core::users::email(&q.email)?;
    let mut items = Vec::new();
    for u in deps.store.find_users_by_email(&email).await? {
        items.push(view(&deps, &u).await?);
    }
    Ok(HttpResponse::Ok().json(items))
}

/// One user.
#[utoipa::path(get, path = "/api/v2/users/{id}", tag = "users",
    params(("id" = String, Path, description = "The `user_id`.")),
    responses((status = 200, description = "The user.", body = UserView)),
    security(("bearer" = ["read:users"])))]
async fn get_user(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require("read:users")?;
    let u = deps.store.get_user(&UserId::new(id.into_inner())).await?;
    Ok(HttpResponse::Ok().json(view(&deps, &u).await?))
}

/// Changes a user; blocking one ends their sessions and revokes their refresh tokens, and a new
/// password ends their sessions.
#[utoipa::path(patch, path = "/api/v2/users/{id}", tag = "users",
    params(("id" = String, Path, description = "The `user_id`.")),
    request_body = UpdateUser,
    responses((status = 200, description = "The user as changed.", body = UserView)),
    security(("bearer" = ["update:users"])))]
async fn patch_user(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    id: web::Path<String>,
    StrictJson(body): StrictJson<UpdateUser>,
) -> Result<HttpResponse, ApiError> {
    auth.require("update:users")?;
    // Roles decide who administers Latch, and a password decides who signs in as the user:
    // each needs its own scope besides `update:users`, checked before anything is read.
    if body
        .app_metadata
        .as_ref()
        .is_some_and(|m| m.contains_key("roles"))
    {
        auth.require("update:roles")?;
    }
    if body.password.is_some() {
        auth.require("update:passwords")?;
    }
    let mut u = deps.store.get_user(&UserId::new(id.into_inner())).await?;
    let mut new_password = None;
    if let Some(p) = body.password {
        let identities = deps.store.list_identities(&u.user_id).await?;
        let mut target = None;
        for i in identities.into_iter().filter(|i| i.password_hash.is_some()) {
            let c = deps.store.get_connection(&i.connection_id).await?;
            target = Some((i, c));
        }
        let Some((identity, conn)) = target else {
            return Err(ApiError::bad_request(
                "password",
                "password: this user has no database identity",
            ));
        };
        latch_core::validate::password_policy(&conn.options, &p)?;
        new_password = Some((identity, p));
    }
    if body.name.is_some() {
        u.name = latch_core::users::name(body.name)?;
    }
    if let Some(v) = body.email_verified {
        u.email_verified = v;
    }
    if let Some(meta) = body.app_metadata {
        if let Some(roles) = meta.get("roles")
            && !roles.is_null()
            && !roles
                .as_array()
                .is_some_and(|a| a.iter().all(|r| r.as_str().is_some_and(|s| !s.is_empty())))
        {
            return Err(ApiError::bad_request(
                "app_metadata.roles",
                "app_metadata.roles must be a list of role names",
            ));
        }
        for (k, v) in meta {
            if v.is_null() {
                u.app_metadata.remove(&k);
            } else {
                u.app_metadata.insert(k, v);
            }
        }
    }
    let now = deps.clock.now();
    let password_changed = new_password.is_some();
    if let Some((mut identity, p)) = new_password {
        identity.password_hash = Some(Argon2id.hash(&p).await.map_err(UserError::from)?);
        identity.updated_at = now;
        deps.store.update_identity(&identity).await?;
    }
    u.updated_at = now;
    deps.store.update_user(&u).await?;
    // A newly blocked user is signed out everywhere and loses every refresh token.
    let mut newly_blocked = false;
    match body.blocked {
        Some(true) => {
            let b = latch_core::users::block(&*deps.store, &*deps.clock, &deps.logout, &u.user_id)
                .await?;
            newly_blocked = b.newly;
            if b.newly {
                log_account_logout(
                    &deps,
                    &req,
                    &auth,
                    &b.user.user_id,
                    &b.ended,
                    LogoutInitiator::AccountDeactivated,
                    "User blocked: signed out everywhere",
                )
                .await;
            }
            u = b.user;
        }
        Some(false) => {
            u = latch_core::users::unblock(&*deps.store, &*deps.clock, &u.user_id).await?;
        }
        None => {}
    }
    // A new password signs the user out everywhere (Auth0 revokes sessions on a password
    // change), the apps told; refresh tokens die with their sessions, offline ones are kept.
    // Blocking in the same request has ended everything already.
    if password_changed && body.blocked != Some(true) {
        let ended = deps
            .logout
            .end(
                Target::User(u.user_id.clone()),
                TokenPolicy::SessionBound,
                LogoutInitiator::PasswordChanged,
                Urgency::Background,
            )
            .await?;
        log_account_logout(
            &deps,
            &req,
            &auth,
            &u.user_id,
            &ended,
            LogoutInitiator::PasswordChanged,
            "Password changed: signed out everywhere",
        )
        .await;
    }
    audit::record(
        &deps,
        &req,
        &auth,
        if newly_blocked {
            "Block a user"
        } else {
            "Update a user"
        },
        None,
        None,
    )
    .await;
    Ok(HttpResponse::Ok().json(view(&deps, &u).await?))
}

/// Deletes a user after ending their sessions and revoking their refresh tokens.
#[utoipa::path(delete, path = "/api/v2/users/{id}", tag = "users",
    params(("id" = String, Path, description = "The `user_id`.")),
    responses((status = 204, description = "Deleted.")),
    security(("bearer" = ["delete:users"])))]
async fn delete_user(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require("delete:users")?;
    let id = UserId::new(id.into_inner());
    let ended = latch_core::users::delete(&*deps.store, &deps.logout, &id).await?;
    log_account_logout(
        &deps,
        &req,
        &auth,
        &id,
        &ended,
        LogoutInitiator::AccountDeleted,
        "User deleted: signed out everywhere",
    )
    .await;
    audit::record(&deps, &req, &auth, "Delete a user", None, None).await;
    Ok(HttpResponse::NoContent().finish())
}

/// The `slo` event of blocking or deleting a user (initiator `account-deactivated`), or of
/// setting their password (`password-changed`): what ended, whom it told, and the SAML apps no
/// browser could carry a LogoutRequest to.
async fn log_account_logout(
    deps: &Deps,
    req: &HttpRequest,
    auth: &ManagementAuth,
    user: &UserId,
    out: &latch_core::logout::Ended,
    initiator: LogoutInitiator,
    description: &str,
) {
    let mut details = out.background_event_details(initiator);
    details.insert("actor".into(), json!(auth.actor()));
    let event = LogEvent {
        user_id: Some(user.clone()),
        ip: latch_http::client_ip(req).map(|i| i.to_string()),
        details: serde_json::Value::Object(details),
        ..LogEvent::new(deps.clock.now(), "slo", description)
    };
    if let Err(e) = deps.store.insert_log(&event).await {
        tracing::error!(error = %e, "could not record a user's logout");
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ClearQuery {
    /// Also revoke every refresh token, offline ones included.
    #[serde(default)]
    revoke_tokens: bool,
}

/// The device a session was last used from.
#[derive(Serialize, ToSchema)]
struct DeviceView {
    last_ip: Option<String>,
    last_user_agent: Option<String>,
}

/// An app that joined the session, with the `sid` it was given; a SAML app also with the NameID
/// and SessionIndex its assertion carried (what its LogoutRequests name).
#[derive(Serialize, ToSchema)]
struct SessionClientView {
    client_id: String,
    sid: String,
    /// `oidc` or `samlp`.
    protocol: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    saml: Option<SamlParticipantView>,
}

#[derive(Serialize, ToSchema)]
struct SamlParticipantView {
    name_id: String,
    name_id_format: String,
    session_index: String,
}

/// What upstream logout needs (never the upstream ID token).
#[derive(Serialize, ToSchema)]
struct UpstreamView {
    sid: Option<String>,
    name_id: Option<String>,
    name_id_format: Option<String>,
    session_index: Option<String>,
}

/// A live session of the user.
#[derive(Serialize, ToSchema)]
struct SessionView {
    /// The session's `sid`.
    id: String,
    user_id: String,
    connection: String,
    #[schema(format = DateTime)]
    created_at: Option<String>,
    #[schema(format = DateTime)]
    authenticated_at: Option<String>,
    #[schema(format = DateTime)]
    last_interacted_at: Option<String>,
    #[schema(format = DateTime)]
    idle_expires_at: Option<String>,
    #[schema(format = DateTime)]
    expires_at: Option<String>,
    device: DeviceView,
    clients: Vec<SessionClientView>,
    upstream: UpstreamView,
}

#[derive(Serialize, ToSchema)]
struct SessionList {
    sessions: Vec<SessionView>,
}

fn session_view(s: &latch_core::session::Session) -> SessionView {
    SessionView {
        id: s.sid.as_str().to_owned(),
        user_id: s.user_id.as_str().to_owned(),
        connection: s.connection.as_str().to_owned(),
        created_at: rfc3339(s.created_at),
        authenticated_at: rfc3339(s.auth_time),
        last_interacted_at: rfc3339(s.last_seen_at),
        idle_expires_at: rfc3339(s.idle_expires_at),
        expires_at: rfc3339(s.expires_at),
        device: DeviceView {
            last_ip: s.ip.clone(),
            last_user_agent: s.user_agent.clone(),
        },
        clients: s
            .clients
            .iter()
            .map(|c| SessionClientView {
                client_id: c.client_id.as_str().to_owned(),
                sid: c.sid.as_str().to_owned(),
                protocol: if c.saml.is_some() { "samlp" } else { "oidc" },
                saml: c.saml.as_ref().map(|p| SamlParticipantView {
                    name_id: p.name_id.clone(),
                    name_id_format: p.name_id_format.clone(),
                    session_index: p.session_index.clone(),
                }),
            })
            .collect(),
        upstream: UpstreamView {
            sid: s.upstream.sid.clone(),
            name_id: s.upstream.name_id.clone(),
            name_id_format: s.upstream.name_id_format.clone(),
            session_index: s.upstream.session_index.clone(),
        },
    }
}

/// The user's live sessions and the apps in each.
#[utoipa::path(get, path = "/api/v2/users/{id}/sessions", tag = "users",
    params(("id" = String, Path, description = "The `user_id`.")),
    responses((status = 200, description = "The sessions.", body = SessionList)),
    security(("bearer" = ["read:users"])))]
async fn get_user_sessions(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require("read:users")?;
    let user = deps.store.get_user(&UserId::new(id.into_inner())).await?;
    let sessions = deps
        .sessions
        .list_user_sessions(&user.user_id, deps.clock.now())
        .await?;
    Ok(HttpResponse::Ok().json(SessionList {
        sessions: sessions.iter().map(session_view).collect(),
    }))
}

/// Ends every session of the user and tells the apps; with `?revoke_tokens=true` also revokes
/// every refresh token, offline ones included (Okta's "Clear User Sessions" checkbox).
#[utoipa::path(delete, path = "/api/v2/users/{id}/sessions", tag = "users",
    params(("id" = String, Path, description = "The `user_id`."), ClearQuery),
    responses((status = 204, description = "The sessions are ended; apps are being told.")),
    security(("bearer" = ["delete:sessions"]), ("bearer" = ["update:users"])))]
async fn delete_user_sessions(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    id: web::Path<String>,
    q: StrictQuery<ClearQuery>,
) -> Result<HttpResponse, ApiError> {
    auth.require("delete:sessions")
        .or_else(|_| auth.require("update:users"))?;
    let user = deps.store.get_user(&UserId::new(id.into_inner())).await?;
    let tokens = if q.revoke_tokens {
        TokenPolicy::AllOfUser
    } else {
        TokenPolicy::SessionBound
    };
    let out = deps
        .logout
        .end(
            Target::User(user.user_id.clone()),
            tokens,
            LogoutInitiator::SessionRevoked,
            Urgency::Background,
        )
        .await?;
    audit::record(&deps, &req, &auth, "Clear user sessions", None, None).await;
    let event = LogEvent {
        user_id: Some(user.user_id.clone()),
        ip: latch_http::client_ip(&req).map(|i| i.to_string()),
        details: json!({
            "actor": auth.actor(),
            "initiator": LogoutInitiator::SessionRevoked,
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
            "User sessions cleared by an administrator",
        )
    };
    let _ = deps.store.insert_log(&event).await;
    Ok(HttpResponse::NoContent().finish())
}

/// A live refresh token (never the token itself).
#[derive(Serialize, ToSchema)]
struct RefreshTokenView {
    id: String,
    user_id: String,
    client_id: String,
    /// Dies with its session (no `offline_access`).
    bound_to_session: bool,
    offline: bool,
    scope: String,
    #[schema(format = DateTime)]
    created_at: Option<String>,
    #[schema(format = DateTime)]
    expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct RefreshTokenList {
    refresh_tokens: Vec<RefreshTokenView>,
}

/// The user's live refresh tokens.
#[utoipa::path(get, path = "/api/v2/users/{id}/refresh-tokens", tag = "users",
    params(("id" = String, Path, description = "The `user_id`.")),
    responses((status = 200, description = "The refresh tokens.", body = RefreshTokenList)),
    security(("bearer" = ["read:users"])))]
async fn get_user_refresh_tokens(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require("read:users")?;
    let user = deps.store.get_user(&UserId::new(id.into_inner())).await?;
    let tokens = deps
        .store
        .list_user_refresh_tokens(&user.user_id, deps.clock.now())
        .await?;
    let items = tokens
        .iter()
        .map(|t| RefreshTokenView {
            id: t.id.as_str().to_owned(),
            user_id: t.user_id.as_str().to_owned(),
            client_id: t.client_id.as_str().to_owned(),
            bound_to_session: t.session_id.is_some(),
            offline: t.offline,
            scope: t.scope.clone(),
            created_at: rfc3339(t.created_at),
            expires_at: rfc3339(t.expires_at),
        })
        .collect();
    Ok(HttpResponse::Ok().json(RefreshTokenList {
        refresh_tokens: items,
    }))
}

pub(crate) mod one_session;
pub(crate) mod ui_ops;

/// The admin UI's writes go through the API's own handlers (same checks, same audit events).
pub(crate) mod ops {
    use super::*;

    pub(crate) async fn update(
        deps: &web::Data<Deps>,
        auth: ManagementAuth,
        req: &HttpRequest,
        id: &str,
        body: Value,
    ) -> Result<Value, ApiError> {
        let res = patch_user(
            deps.clone(),
            auth,
            req.clone(),
            web::Path::from(id.to_owned()),
            StrictJson(super::super::body(body)?),
        )
        .await?;
        super::super::answer(res).await
    }

    pub(crate) async fn clear_sessions(
        deps: &web::Data<Deps>,
        auth: ManagementAuth,
        req: &HttpRequest,
        id: &str,
        revoke_tokens: bool,
    ) -> Result<(), ApiError> {
        delete_user_sessions(
            deps.clone(),
            auth,
            req.clone(),
            web::Path::from(id.to_owned()),
            StrictQuery(ClearQuery { revoke_tokens }),
        )
        .await?;
        Ok(())
    }

    /// A user as the API shows it (identities included).
    pub(crate) async fn show(deps: &Deps, u: &User) -> Result<Value, ApiError> {
        Ok(serde_json::to_value(view(deps, u).await?).unwrap_or(Value::Null))
    }
}
