//! Users: search, create (database connections), detail (identities, sessions, refresh
//! tokens), reset a password, end one session or all of them, block/unblock, delete.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use latch_core::model::{LogQuery, Strategy, UserQuery};
use latch_core::{LogId, UserId};
use latch_http::ApiError;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Admin, Choice, Chrome, Field, Form, FormPage, Section, error_page, html, problems, redirect,
    when,
};
use crate::Deps;
use crate::api::users::{one_session, ops, ui_ops};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/users", web::get().to(list))
        .route("/users", web::post().to(create))
        .route("/users/new", web::get().to(new))
        .route("/users/{id}", web::get().to(detail))
        .route("/users/{id}/password", web::post().to(password))
        .route("/users/{id}/delete", web::post().to(delete))
        .route(
            "/users/{id}/sessions/{sid}/end",
            web::post().to(end_session),
        )
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
    done: Option<String>,
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
    let mut c = a.chrome("users");
    if s.done.as_deref() == Some("deleted") {
        c.notice =
            Some("User deleted: signed out everywhere, every token revoked, apps told.".into());
    }
    html(
        StatusCode::OK,
        &ListPage {
            c,
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
    sid: String,
    device: String,
    ip: String,
    started: String,
    last_seen: String,
    apps: String,
    connection: String,
    /// The upstream session: its OpenID Connect `sid`, or SAML NameID and SessionIndex.
    upstream: String,
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
    /// The admin looking at their own account (no delete, no block).
    is_self: bool,
    /// The user has a database identity, whose password an admin may set.
    has_password: bool,
    password_error: Option<String>,
}

#[derive(Deserialize)]
struct Done {
    done: Option<String>,
    /// The `slo` event of a logout just done here (its deliveries are counted in the notice).
    event: Option<String>,
}

async fn detail(
    a: Admin,
    deps: web::Data<Deps>,
    id: web::Path<String>,
    q: web::Query<Done>,
) -> HttpResponse {
    let uid = UserId::new(id.into_inner());
    let mut c = a.chrome("users");
    c.notice = match q.done.as_deref() {
        Some("created") => Some("User created.".into()),
        Some("cleared") => Some("Sessions cleared: the tokens of those sessions no longer work; offline tokens kept.".into()),
        Some("cleared-revoked") => Some("Sessions cleared and every token of this user revoked (refresh and access tokens, offline ones included).".into()),
        Some("ended") => Some("Session ended: its tokens no longer work; offline tokens kept.".into()),
        Some("password") => Some("Password changed: the user was signed out everywhere, and their apps were told.".into()),
        Some("blocked") => Some("User blocked and signed out everywhere.".into()),
        Some("unblocked") => Some("User unblocked.".into()),
        Some("granted") => Some("Admin role granted: this user can now use the admin UI.".into()),
        Some("revoked") => Some("Admin role removed.".into()),
        _ => None,
    };
    let ended = matches!(
        q.done.as_deref(),
        Some("cleared" | "cleared-revoked" | "ended")
    );
    if let (true, Some(n)) = (ended, c.notice.as_mut()) {
        n.push(' ');
        match q.event.as_deref() {
            Some(event) => match deliveries_of(&deps, &uid, event).await {
                Some((counts, link)) => {
                    n.push_str(&counts);
                    c.notice_link = Some(link);
                }
                None => n.push_str("Apps in those sessions are being told."),
            },
            None => n.push_str("Apps in those sessions are being told."),
        }
    }
    detail_page(&a, &deps, &uid, c, None).await
}

/// "Back-channel logout: 1 delivered, 1 pending." for the `slo` event `event` of user `uid`,
/// and a link to the event.
async fn deliveries_of(
    deps: &Deps,
    uid: &UserId,
    event: &str,
) -> Option<(String, (String, String))> {
    let e = deps
        .store
        .list_logs(&LogQuery {
            log_id: Some(LogId::new(event)),
            per_page: 1,
            ..LogQuery::default()
        })
        .await
        .ok()?
        .into_iter()
        .next()
        .filter(|e| e.event_type == "slo" && e.user_id.as_ref() == Some(uid))?;
    let (mut delivered, mut pending, mut failed) = (0, 0, 0);
    for id in e.details["delivery_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .take(100)
    {
        match deps
            .store
            .get_delivery(&latch_core::DeliveryId::new(id))
            .await
            .map(|d| d.state)
        {
            Ok(latch_core::model::DeliveryState::Delivered) => delivered += 1,
            Ok(latch_core::model::DeliveryState::Failed) => failed += 1,
            Ok(latch_core::model::DeliveryState::Pending) | Err(_) => pending += 1,
        }
    }
    let counts = if delivered + pending + failed == 0 {
        "No app needed a back-channel logout.".to_owned()
    } else if failed == 0 {
        format!("Back-channel logout: {delivered} delivered, {pending} pending.")
    } else {
        format!("Back-channel logout: {delivered} delivered, {pending} pending, {failed} failed.")
    };
    Some((
        counts,
        (
            format!("/admin/logs/{}", e.log_id),
            "See the logout event".into(),
        ),
    ))
}

/// The user's page, with `c`'s notice, and an error on the password form when given.
async fn detail_page(
    a: &Admin,
    deps: &Deps,
    uid: &UserId,
    c: Chrome,
    password_error: Option<String>,
) -> HttpResponse {
    let user = or_page!(deps.store.get_user(uid).await);
    let shown = or_page!(ops::show(deps, &user).await);
    let now = deps.clock.now();
    let clients = deps.store.list_clients().await.unwrap_or_default();
    let app_name = |id: &str| {
        clients
            .iter()
            .find(|c| c.client_id.as_str() == id)
            .map_or_else(|| id.to_owned(), |c| c.name.clone())
    };
    let sessions = or_page!(deps.sessions.list_user_sessions(uid, now).await);
    let tokens = or_page!(deps.store.list_user_refresh_tokens(uid, now).await);
    let identities: Vec<IdentityRow> = shown["identities"]
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
    let status = if password_error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    html(
        status,
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
            has_password: identities
                .iter()
                .any(|i| i.provider == Strategy::Auth0.as_str()),
            identities,
            sessions: sessions
                .iter()
                .map(|s| SessionRow {
                    sid: s.sid.as_str().to_owned(),
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
                    upstream: upstream_of(&s.upstream),
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
            is_self: a.user.user_id == user.user_id,
            password_error,
        },
    )
}

fn user_path(id: &str, done: &str, event: Option<&LogId>) -> String {
    let id: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    match event {
        Some(e) => format!("/admin/users/{id}?done={done}&event={e}"),
        None => format!("/admin/users/{id}?done={done}"),
    }
}

/// The newest `slo` event this admin's clear of `uid` recorded.
async fn clear_event(deps: &Deps, a: &Admin, uid: &str) -> Option<LogId> {
    deps.store
        .list_logs(&LogQuery {
            event_type: Some("slo".into()),
            user_id: Some(UserId::new(uid)),
            per_page: 5,
            ..LogQuery::default()
        })
        .await
        .ok()?
        .into_iter()
        .find(|e| e.details["actor"].as_str() == Some(a.user.user_id.as_str()))
        .map(|e| e.log_id)
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
        Ok(()) => redirect(&user_path(
            &id,
            if revoke { "cleared-revoked" } else { "cleared" },
            clear_event(&deps, &a, &id).await.as_ref(),
        )),
        Err(e) => error_page(e),
    }
}

/// `POST /admin/users/{id}/sessions/{sid}/end`: ends that one session.
async fn end_session(
    a: Admin,
    deps: web::Data<Deps>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    form: web::Form<Form>,
) -> HttpResponse {
    if let Some(r) = a.csrf_refusal(&form) {
        return r;
    }
    let (id, sid) = path.into_inner();
    match one_session::end_session(&deps, &a.auth(), &req, &id, &sid).await {
        Ok(event) => redirect(&user_path(&id, "ended", Some(&event))),
        Err(e) => error_page(e),
    }
}

/// `POST /admin/users/{id}/password`: a new password (database users only; the connection's
/// policy applies).
async fn password(
    a: Admin,
    deps: web::Data<Deps>,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<Form>,
) -> HttpResponse {
    if let Some(r) = a.csrf_refusal(&form) {
        return r;
    }
    let new = form.get("password").unwrap_or_default();
    match ops::update(&deps, a.auth(), &req, &id, json!({ "password": new })).await {
        Ok(_) => redirect(&user_path(&id, "password", None)),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            let message = problems::words("New password", &e);
            detail_page(
                &a,
                &deps,
                &UserId::new(id.as_str()),
                a.chrome("users"),
                Some(message),
            )
            .await
        }
        Err(e) => error_page(e),
    }
}

/// `POST /admin/users/{id}/delete`: deletes the user (signed out everywhere first).
async fn delete(
    a: Admin,
    deps: web::Data<Deps>,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<Form>,
) -> HttpResponse {
    if let Some(r) = a.csrf_refusal(&form) {
        return r;
    }
    if a.user.user_id.as_str() == id.as_str() {
        return super::message(
            StatusCode::BAD_REQUEST,
            "Not allowed",
            "You cannot delete yourself: you would lose access to the admin.",
            Some(("/admin/users", "Back to users")),
        );
    }
    match ui_ops::delete(&deps, a.auth(), &req, &id).await {
        Ok(()) => redirect("/admin/users?done=deleted"),
        Err(e) => error_page(e),
    }
}

/// The database connections, the built-in one first.
async fn database_connections(
    deps: &Deps,
) -> Result<Vec<latch_core::model::Connection>, latch_core::StoreError> {
    let mut all: Vec<_> = deps
        .store
        .list_connections()
        .await?
        .into_iter()
        .filter(|c| c.strategy == Strategy::Auth0)
        .collect();
    all.sort_by_key(|c| {
        (
            c.name.as_str() != latch_core::model::DATABASE_CONNECTION,
            c.name.clone(),
        )
    });
    Ok(all)
}

fn new_user_page(
    a: &Admin,
    connections: &[latch_core::model::Connection],
    form: Option<&Form>,
) -> FormPage {
    let chosen = form.and_then(|f| f.get("connection"));
    let value = |k: &str| form.and_then(|f| f.get(k)).unwrap_or_default().to_owned();
    FormPage {
        c: a.chrome("users"),
        title: "New user".into(),
        lead: "A user of a database connection, who signs in with an email and a password.".into(),
        back: "/admin/users",
        action: "/admin/users".into(),
        submit: "Create",
        sections: vec![Section {
            id: "user",
            title: "User".into(),
            description: String::new(),
            fields: vec![
                Field::new("select", "connection", "Connection", "").choices(
                    connections
                        .iter()
                        .enumerate()
                        .map(|(i, c)| Choice {
                            value: c.name.as_str().to_owned(),
                            label: c.name.as_str().to_owned(),
                            selected: chosen.map_or(i == 0, |x| x == c.name.as_str()),
                        })
                        .collect(),
                ),
                Field::new("email", "email", "Email", value("email")),
                Field::new("password", "password", "Password", "")
                    .help("The connection's password policy applies (by default at least 8 characters, mixing three of: lower case, upper case, digits, symbols)."),
                Field::new("text", "name", "Name (optional)", value("name")),
            ],
        }],
        problems: vec![],
        shown_secret: None,
        extras: vec![],
    }
}

async fn new(a: Admin, deps: web::Data<Deps>) -> HttpResponse {
    let connections = or_page!(database_connections(&deps).await);
    html(StatusCode::OK, &new_user_page(&a, &connections, None))
}

/// The API body the new-user form stands for.
fn user_body(f: &Form) -> Value {
    let mut b = json!({
        "connection": f.get("connection").unwrap_or_default(),
        "email": f.get("email").unwrap_or_default().trim(),
        "password": f.get("password").unwrap_or_default(),
    });
    if let Some(n) = f.text("name") {
        b["name"] = json!(n);
    }
    b
}

async fn create(
    a: Admin,
    deps: web::Data<Deps>,
    req: HttpRequest,
    form: web::Form<Form>,
) -> HttpResponse {
    if let Some(r) = a.csrf_refusal(&form) {
        return r;
    }
    let b = user_body(&form);
    match ui_ops::create(&deps, a.auth(), &req, b.clone()).await {
        Ok(v) => redirect(&user_path(
            v["user_id"].as_str().unwrap_or_default(),
            "created",
            None,
        )),
        Err(e) => {
            let connections = or_page!(database_connections(&deps).await);
            let mut p = new_user_page(&a, &connections, Some(&form));
            let status = e.status;
            let more: Vec<ApiError> = ui_ops::create_problems(&deps, &b).await;
            p.refused(problems::merge(e, more));
            html(status, &p)
        }
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

/// How the admin UI names an upstream session (never the upstream ID token).
fn upstream_of(u: &latch_core::session::UpstreamSession) -> String {
    match (&u.sid, &u.name_id, &u.session_index) {
        (Some(sid), _, _) => format!("sid {sid}"),
        (None, Some(n), Some(i)) => format!("NameID {n}, SessionIndex {i}"),
        (None, Some(n), None) => format!("NameID {n}"),
        _ => String::new(),
    }
}
