//! `/api/v2/users`: create database users, search, read, block/unblock, delete;
//! `/api/v2/users-by-email`.

use actix_web::{HttpRequest, HttpResponse, Scope, web};
use latch_core::connector::DATABASE_ISSUER;
use latch_core::logout::{Target, Terminate, TokenPolicy, terminate};
use latch_core::model::*;
use latch_core::*;
use latch_http::{ApiError, ManagementAuth, StrictJson};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Deps, audit};

pub fn scope() -> Scope {
    web::scope("/users")
        .route("", web::get().to(get_users))
        .route("", web::post().to(post_user))
        .route("/{id}", web::get().to(get_user))
        .route("/{id}", web::patch().to(patch_user))
        .route("/{id}", web::delete().to(delete_user))
        .route("/{id}/sessions", web::get().to(get_user_sessions))
        .route("/{id}/sessions", web::delete().to(delete_user_sessions))
        .route(
            "/{id}/refresh-tokens",
            web::get().to(get_user_refresh_tokens),
        )
}

pub fn by_email_scope() -> Scope {
    web::scope("/users-by-email").route("", web::get().to(get_users_by_email))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateUser {
    #[serde(default)]
    pub(crate) blocked: Option<bool>,
    /// Merged into the user's `app_metadata` key by key; a `null` removes the key (Auth0).
    #[serde(default)]
    pub(crate) app_metadata: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email_verified: Option<bool>,
    #[serde(default)]
    password: Option<String>,
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    page: Option<u32>,
    #[serde(default)]
    per_page: Option<u32>,
    #[serde(default)]
    include_totals: bool,
}

#[derive(Deserialize)]
struct EmailQuery {
    email: String,
}

fn rfc3339(t: time::OffsetDateTime) -> Value {
    t.format(&time::format_description::well_known::Rfc3339)
        .map(Value::String)
        .unwrap_or(Value::Null)
}

async fn view(deps: &Deps, u: &User) -> Result<Value, ApiError> {
    let connections = deps.store.list_connections().await?;
    let identities: Vec<Value> = deps
        .store
        .list_identities(&u.user_id)
        .await?
        .iter()
        .map(|i| {
            let c = connections.iter().find(|c| c.id == i.connection_id);
            json!({
                "connection": c.map(|c| c.name.as_str()),
                "provider": c.map(|c| c.strategy.as_str()),
                "user_id": i.subject,
                "issuer": i.issuer,
                "isSocial": false,
            })
        })
        .collect();
    Ok(json!({
        "user_id": u.user_id,
        "email": u.email,
        "email_verified": u.email_verified,
        "name": u.name,
        "given_name": u.given_name,
        "family_name": u.family_name,
        "nickname": u.nickname,
        "picture": u.picture,
        "blocked": u.blocked,
        "created_at": rfc3339(u.created_at),
        "updated_at": rfc3339(u.updated_at),
        "last_login": u.last_login.map(rfc3339),
        "logins_count": u.logins_count,
        "app_metadata": u.app_metadata,
        "identities": identities,
    }))
}

fn valid_email(field: &str, e: &str) -> Result<String, ApiError> {
    let e = e.trim();
    let ok = e.len() <= 254
        && e.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
        })
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(e.to_lowercase())
    } else {
        Err(ApiError::bad_request(
            field,
            format!("{field} must be an email address"),
        ))
    }
}

fn valid_name(n: Option<String>) -> Result<Option<String>, ApiError> {
    match n {
        Some(n) if n.trim().is_empty() || n.len() > 300 => Err(ApiError::bad_request(
            "name",
            "name must be 1-300 characters",
        )),
        other => Ok(other),
    }
}

async fn database_connection(deps: &Deps, name: &str) -> Result<Connection, ApiError> {
    let c = deps
        .store
        .find_connection_by_name(&ConnectionName::new(name))
        .await?
        .ok_or_else(|| {
            ApiError::bad_request(
                "connection",
                format!("connection: no connection named {name}"),
            )
        })?;
    if c.strategy != Strategy::Auth0 {
        return Err(ApiError::bad_request(
            "connection",
            "connection: users with passwords are created only in database (auth0) connections; enterprise users are created at their first sign-in",
        ));
    }
    Ok(c)
}

async fn hash_password(password: String) -> Result<SecretString, ApiError> {
    let hashed = web::block(move || latch_jose::password::hash(&password))
        .await
        .map_err(|_| {
            ApiError::new(
                actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "Internal error.",
            )
        })?;
    hashed.map_err(|_| {
        ApiError::new(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "Internal error.",
        )
    })
}

async fn post_user(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    StrictJson(body): StrictJson<CreateUser>,
) -> Result<HttpResponse, ApiError> {
    auth.require("create:users")?;
    let conn = database_connection(&deps, &body.connection).await?;
    let email = valid_email("email", &body.email)?;
    latch_core::validate::password_policy(&conn.options, &body.password)?;
    let name = valid_name(body.name)?;
    // One account per email in a database connection.
    for u in deps.store.find_users_by_email(&email).await? {
        if deps
            .store
            .list_identities(&u.user_id)
            .await?
            .iter()
            .any(|i| i.connection_id == conn.id)
        {
            let mut e = ApiError::conflict("The user already exists.");
            e.field = Some("email".into());
            return Err(e);
        }
    }
    let password_hash = hash_password(body.password).await?;
    let now = deps.clock.now();
    let subject = latch_jose::random_alnum(24).to_lowercase();
    let user = User {
        user_id: UserId::new(format!("auth0|{subject}")),
        email: Some(email.clone()),
        email_verified: body.email_verified.unwrap_or(false),
        nickname: email.split('@').next().map(str::to_owned),
        name: name.or(Some(email)),
        given_name: None,
        family_name: None,
        picture: None,
        profile: Default::default(),
        blocked: body.blocked.unwrap_or(false),
        created_at: now,
        updated_at: now,
        last_login: None,
        logins_count: 0,
        app_metadata: Default::default(),
    };
    deps.store.insert_user(&user).await?;
    let identity = Identity {
        user_id: user.user_id.clone(),
        connection_id: conn.id.clone(),
        issuer: DATABASE_ISSUER.into(),
        subject,
        password_hash: Some(password_hash),
        profile: Default::default(),
        created_at: now,
        updated_at: now,
    };
    if let Err(e) = deps.store.insert_identity(&identity).await {
        let _ = deps.store.delete_user(&user.user_id).await;
        return Err(e.into());
    }
    audit::record(&deps, &req, &auth, "Create a user", None, Some(&conn.name)).await;
    Ok(HttpResponse::Created().json(view(&deps, &user).await?))
}

async fn get_users(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    q: web::Query<SearchQuery>,
) -> Result<HttpResponse, ApiError> {
    auth.require("read:users")?;
    let query = UserQuery {
        q: q.q.clone(),
        page: q.page.unwrap_or(0),
        per_page: q.per_page.unwrap_or(50).clamp(1, 100),
    };
    let users = deps.store.list_users(&query).await?;
    let mut items = Vec::with_capacity(users.len());
    for u in &users {
        items.push(view(&deps, u).await?);
    }
    Ok(HttpResponse::Ok().json(if q.include_totals {
        json!({ "users": items, "start": query.page * query.per_page, "limit": query.per_page, "length": users.len() })
    } else {
        Value::Array(items)
    }))
}

async fn get_users_by_email(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    q: web::Query<EmailQuery>,
) -> Result<HttpResponse, ApiError> {
    auth.require("read:users")?;
    let email = valid_email("email", &q.email)?;
    let mut items = Vec::new();
    for u in deps.store.find_users_by_email(&email).await? {
        items.push(view(&deps, &u).await?);
    }
    Ok(HttpResponse::Ok().json(items))
}

async fn get_user(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require("read:users")?;
    let u = deps.store.get_user(&UserId::new(id.into_inner())).await?;
    Ok(HttpResponse::Ok().json(view(&deps, &u).await?))
}

async fn patch_user(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    id: web::Path<String>,
    StrictJson(body): StrictJson<UpdateUser>,
) -> Result<HttpResponse, ApiError> {
    auth.require("update:users")?;
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
        u.name = valid_name(body.name)?;
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
    let newly_blocked = body.blocked == Some(true) && !u.blocked;
    if let Some(b) = body.blocked {
        u.blocked = b;
    }
    let now = deps.clock.now();
    if let Some((mut identity, p)) = new_password {
        identity.password_hash = Some(hash_password(p).await?);
        identity.updated_at = now;
        deps.store.update_identity(&identity).await?;
    }
    u.updated_at = now;
    deps.store.update_user(&u).await?;
    if newly_blocked {
        // A blocked user is signed out everywhere and loses every refresh token.
        let req_t = Terminate {
            target: Target::User(u.user_id.clone()),
            tokens: TokenPolicy::AllOfUser,
            initiator: LogoutInitiator::AccountDeactivated,
            reserved_until: deps.notifier.reserve_until(),
        };
        let out = terminate(&*deps.store, &*deps.sessions, &*deps.clock, &req_t).await?;
        deps.notifier.dispatch(&out.deliveries);
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

async fn delete_user(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require("delete:users")?;
    let id = UserId::new(id.into_inner());
    deps.store.get_user(&id).await?;
    let req_t = Terminate {
        target: Target::User(id.clone()),
        tokens: TokenPolicy::AllOfUser,
        initiator: LogoutInitiator::AccountDeactivated,
        reserved_until: deps.notifier.reserve_until(),
    };
    let out = terminate(&*deps.store, &*deps.sessions, &*deps.clock, &req_t).await?;
    deps.notifier.dispatch(&out.deliveries);
    deps.store.delete_user(&id).await?;
    audit::record(&deps, &req, &auth, "Delete a user", None, None).await;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
struct ClearQuery {
    #[serde(default)]
    revoke_tokens: bool,
}

fn session_view(s: &latch_core::session::Session) -> Value {
    json!({
        "id": s.sid,
        "user_id": s.user_id,
        "connection": s.connection,
        "created_at": rfc3339(s.created_at),
        "authenticated_at": rfc3339(s.auth_time),
        "last_interacted_at": rfc3339(s.last_seen_at),
        "idle_expires_at": rfc3339(s.idle_expires_at),
        "expires_at": rfc3339(s.expires_at),
        "device": { "last_ip": s.ip, "last_user_agent": s.user_agent },
        "clients": s.clients.iter().map(|c| json!({ "client_id": c.client_id, "sid": c.sid })).collect::<Vec<_>>(),
        // What upstream logout needs (never the upstream ID token).
        "upstream": {
            "sid": s.upstream.sid,
            "name_id": s.upstream.name_id,
            "name_id_format": s.upstream.name_id_format,
            "session_index": s.upstream.session_index,
        },
    })
}

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
    Ok(HttpResponse::Ok()
        .json(json!({ "sessions": sessions.iter().map(session_view).collect::<Vec<_>>() })))
}

/// Ends every session of the user and tells the apps; with `?revoke_tokens=true` also revokes
/// every refresh token, offline ones included (Okta's "Clear User Sessions" checkbox).
async fn delete_user_sessions(
    deps: web::Data<Deps>,
    auth: ManagementAuth,
    req: HttpRequest,
    id: web::Path<String>,
    q: web::Query<ClearQuery>,
) -> Result<HttpResponse, ApiError> {
    auth.require("delete:sessions")
        .or_else(|_| auth.require("update:users"))?;
    let user = deps.store.get_user(&UserId::new(id.into_inner())).await?;
    let t = Terminate {
        target: Target::User(user.user_id.clone()),
        tokens: if q.revoke_tokens {
            TokenPolicy::AllOfUser
        } else {
            TokenPolicy::SessionBound
        },
        initiator: LogoutInitiator::SessionRevoked,
        reserved_until: deps.notifier.reserve_until(),
    };
    let out = terminate(&*deps.store, &*deps.sessions, &*deps.clock, &t).await?;
    deps.notifier.dispatch(&out.deliveries);
    audit::record(&deps, &req, &auth, "Clear user sessions", None, None).await;
    let event = LogEvent {
        user_id: Some(user.user_id.clone()),
        ip: req
            .connection_info()
            .realip_remote_addr()
            .map(str::to_owned),
        details: json!({
            "actor": auth.actor(),
            "sessions_ended": out.sessions.len(),
            "refresh_tokens_revoked": out.revoked_tokens.len(),
            "TotalOidcLogoutRequests": out.deliveries.len(),
            "delivery_ids": out.deliveries.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            "TotalSamlLogoutRequests": 0,
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
    let items: Vec<Value> = tokens
        .iter()
        .map(|t| {
            json!({
                "id": t.id,
                "user_id": t.user_id,
                "client_id": t.client_id,
                "bound_to_session": t.session_id.is_some(),
                "offline": t.offline,
                "scope": t.scope,
                "created_at": rfc3339(t.created_at),
                "expires_at": rfc3339(t.expires_at),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "refresh_tokens": items })))
}

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
            web::Query(ClearQuery { revoke_tokens }),
        )
        .await?;
        Ok(())
    }

    /// A user as the API shows it (identities included).
    pub(crate) async fn show(deps: &Deps, u: &User) -> Result<Value, ApiError> {
        view(deps, u).await
    }
}
