//! Users: search, detail (identities, sessions, refresh tokens), clear sessions, block/unblock.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use latch_core::UserId;
use latch_core::model::UserQuery;
use serde::Deserialize;
use serde_json::json;

use super::{Admin, Chrome, Form, error_page, html, redirect, when};
use crate::Deps;
use crate::api::users::ops;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/users", web::get().to(list))
        .route("/users/{id}", web::get().to(detail))
        .route("/users/{id}/clear-sessions", web::post().to(clear))
        .route("/users/{id}/block", web::post().to(block))
        .route("/users/{id}/unblock", web::post().to(unblock))
        .route("/users/{id}/admin-role", web::post().to(admin_role));
}

const PER_PAGE: u32 = 50;

struct Row {
    id: String,
    name: String,
    email: String,
    connections: String,
    logins: i64,
    blocked: bool,
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct ListPage {
    c: Chrome,
    q: String,
    rows: Vec<Row>,
    prev: Option<String>,
    next: Option<String>,
}

#[derive(Deserialize)]
struct Search {
    q: Option<String>,
    page: Option<u32>,
}

fn display(u: &latch_core::model::User) -> String {
    u.name
        .clone()
        .or_else(|| u.email.clone())
        .or_else(|| u.nickname.clone())
        .unwrap_or_else(|| u.user_id.as_str().to_owned())
}

async fn list(a: Admin, deps: web::Data<Deps>, s: web::Query<Search>) -> HttpResponse {
    let q = s.q.clone().unwrap_or_default().trim().to_owned();
    let page = s.page.unwrap_or(0);
    let users = or_page!(
        deps.store
            .list_users(&UserQuery {
                q: (!q.is_empty()).then(|| q.clone()),
                page,
                per_page: PER_PAGE + 1,
            })
            .await
    );
    let connections = or_page!(deps.store.list_connections().await);
    let more = users.len() > PER_PAGE as usize;
    let mut rows = Vec::new();
    for u in users.iter().take(PER_PAGE as usize) {
        let ids = deps
            .store
            .list_identities(&u.user_id)
            .await
            .unwrap_or_default();
        let names: Vec<&str> = ids
            .iter()
            .filter_map(|i| connections.iter().find(|c| c.id == i.connection_id))
            .map(|c| c.name.as_str())
            .collect();
        rows.push(Row {
            id: u.user_id.as_str().to_owned(),
            name: display(u),
            email: u.email.clone().unwrap_or_default(),
            connections: names.join(", "),
            logins: u.logins_count,
            blocked: u.blocked,
        });
    }
    let qs: String = url::form_urlencoded::byte_serialize(q.as_bytes()).collect();
    html(
        StatusCode::OK,
        &ListPage {
            c: a.chrome("users"),
            q,
            rows,
            prev: (page > 0).then(|| format!("/admin/users?q={qs}&page={}", page - 1)),
            next: more.then(|| format!("/admin/users?q={qs}&page={}", page + 1)),
        },
    )
}

struct IdentityRow {
    connection: String,
    provider: String,
    subject: String,
    issuer: String,
}

struct SessionRow {
    device: String,
    ip: String,
    started: String,
    last_seen: String,
    apps: String,
    connection: String,
}

struct TokenRow {
    client: String,
    created: String,
    expires: String,
    kind: &'static str,
    state: &'static str,
}

#[derive(Template)]
#[template(path = "admin/user.html")]
struct DetailPage {
    c: Chrome,
    user_id: String,
    name: String,
    email: String,
    blocked: bool,
    roles: String,
    is_admin: bool,
    created: String,
    last_login: String,
    logins: i64,
    identities: Vec<IdentityRow>,
    sessions: Vec<SessionRow>,
    tokens: Vec<TokenRow>,
}

#[derive(Deserialize)]
struct Done {
    done: Option<String>,
}

async fn detail(
    a: Admin,
    deps: web::Data<Deps>,
    id: web::Path<String>,
    q: web::Query<Done>,
) -> HttpResponse {
    let uid = UserId::new(id.into_inner());
    let user = or_page!(deps.store.get_user(&uid).await);
    let shown = or_page!(ops::show(&deps, &user).await);
    let now = deps.clock.now();
    let clients = deps.store.list_clients().await.unwrap_or_default();
    let app_name = |id: &str| {
        clients
            .iter()
            .find(|c| c.client_id.as_str() == id)
            .map_or_else(|| id.to_owned(), |c| c.name.clone())
    };
    let sessions = or_page!(deps.sessions.list_user_sessions(&uid, now).await);
    let tokens = or_page!(deps.store.list_user_refresh_tokens(&uid, now).await);
    let identities = shown["identities"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| IdentityRow {
            connection: i["connection"].as_str().unwrap_or_default().into(),
            provider: i["provider"].as_str().unwrap_or_default().into(),
            subject: i["user_id"].as_str().unwrap_or_default().into(),
            issuer: i["issuer"].as_str().unwrap_or_default().into(),
        })
        .collect();
    let mut c = a.chrome("users");
    c.notice = match q.done.as_deref() {
        Some("cleared") => Some("Sessions cleared.".into()),
        Some("cleared-revoked") => {
            Some("Sessions cleared, refresh tokens revoked, apps notified.".into())
        }
        Some("blocked") => Some("User blocked and signed out everywhere.".into()),
        Some("unblocked") => Some("User unblocked.".into()),
        Some("granted") => Some("Admin role granted: this user can now use the admin UI.".into()),
        Some("revoked") => Some("Admin role removed.".into()),
        _ => None,
    };
    html(
        StatusCode::OK,
        &DetailPage {
            c,
            user_id: user.user_id.as_str().to_owned(),
            name: display(&user),
            email: user.email.clone().unwrap_or_else(|| "—".into()),
            blocked: user.blocked,
            roles: user.roles().collect::<Vec<_>>().join(", "),
            is_admin: user.roles().any(|r| r == latch_core::model::ADMIN_ROLE),
            created: when(user.created_at),
            last_login: user.last_login.map_or_else(|| "never".into(), when),
            logins: user.logins_count,
            identities,
            sessions: sessions
                .iter()
                .map(|s| SessionRow {
                    device: s.user_agent.clone().unwrap_or_else(|| "unknown".into()),
                    ip: s.ip.clone().unwrap_or_else(|| "—".into()),
                    started: when(s.created_at),
                    last_seen: when(s.last_seen_at),
                    apps: s
                        .clients
                        .iter()
                        .map(|c| app_name(c.client_id.as_str()))
                        .collect::<Vec<_>>()
                        .join(", "),
                    connection: s.connection.as_str().to_owned(),
                })
                .collect(),
            tokens: tokens
                .iter()
                .map(|t| TokenRow {
                    client: app_name(t.client_id.as_str()),
                    created: when(t.created_at),
                    expires: when(t.expires_at),
                    kind: if t.offline { "offline" } else { "session" },
                    state: if t.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    },
                })
                .collect(),
        },
    )
}

async fn clear(
    a: Admin,
    deps: web::Data<Deps>,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<Form>,
) -> HttpResponse {
    if let Some(r) = a.csrf_refusal(&form) {
        return r;
    }
    let revoke = form.checked("revoke_tokens");
    match ops::clear_sessions(&deps, a.auth(), &req, &id, revoke).await {
        Ok(()) => redirect(&format!(
            "/admin/users/{}?done={}",
            url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>(),
            if revoke { "cleared-revoked" } else { "cleared" }
        )),
        Err(e) => error_page(e),
    }
}

async fn set_blocked(
    a: Admin,
    deps: web::Data<Deps>,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<Form>,
    blocked: bool,
) -> HttpResponse {
    if let Some(r) = a.csrf_refusal(&form) {
        return r;
    }
    if blocked && a.user.user_id.as_str() == id.as_str() {
        return super::message(
            StatusCode::BAD_REQUEST,
            "Not allowed",
            "You cannot block yourself: you would lose access to the admin.",
            Some(("/admin/users", "Back to users")),
        );
    }
    match ops::update(&deps, a.auth(), &req, &id, json!({ "blocked": blocked })).await {
        Ok(_) => redirect(&format!(
            "/admin/users/{}?done={}",
            url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>(),
            if blocked { "blocked" } else { "unblocked" }
        )),
        Err(e) => error_page(e),
    }
}

async fn block(
    a: Admin,
    deps: web::Data<Deps>,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<Form>,
) -> HttpResponse {
    set_blocked(a, deps, req, id, form, true).await
}

async fn unblock(
    a: Admin,
    deps: web::Data<Deps>,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<Form>,
) -> HttpResponse {
    set_blocked(a, deps, req, id, form, false).await
}

/// `POST /admin/users/{id}/admin-role` (`grant=true|false`): the role that opens this UI, kept in
/// `app_metadata.roles` (so it also works for users of enterprise connections).
async fn admin_role(
    a: Admin,
    deps: web::Data<Deps>,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<Form>,
) -> HttpResponse {
    if let Some(r) = a.csrf_refusal(&form) {
        return r;
    }
    let grant = form.get("grant") == Some("true");
    if !grant && a.user.user_id.as_str() == id.as_str() {
        return super::message(
            StatusCode::BAD_REQUEST,
            "Not allowed",
            "You cannot remove your own admin role.",
            Some(("/admin/users", "Back to users")),
        );
    }
    let user = or_page!(deps.store.get_user(&UserId::new(id.as_str())).await);
    let mut roles: Vec<String> = user
        .roles()
        .filter(|r| *r != latch_core::model::ADMIN_ROLE)
        .map(str::to_owned)
        .collect();
    if grant {
        roles.push(latch_core::model::ADMIN_ROLE.into());
    }
    match ops::update(
        &deps,
        a.auth(),
        &req,
        &id,
        json!({ "app_metadata": { "roles": roles } }),
    )
    .await
    {
        Ok(_) => redirect(&format!(
            "/admin/users/{}?done={}",
            url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>(),
            if grant { "granted" } else { "revoked" }
        )),
        Err(e) => error_page(e),
    }
}
