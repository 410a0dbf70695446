//! Applications (clients): list, create (the secret shown once), edit, the connections users
//! sign in with, rotate the secret, delete.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use latch_core::model::{ADMIN_CLIENT_ID, Client, Connection, DATABASE_CONNECTION};
use latch_http::ApiError;
use serde_json::{Value, json};

use super::{
    Admin, Choice, Chrome, Extra, Field, Form, FormPage, Section, error_page, html, problems,
    redirect,
};
use crate::Deps;
use crate::api::clients::{ops, ui_ops};
use crate::api::connections::ui_ops as connection_ops;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/applications", web::get().to(list))
        .route("/applications", web::post().to(create))
        .route("/applications/new", web::get().to(new))
        .route("/applications/{id}", web::get().to(edit))
        .route("/applications/{id}", web::post().to(update))
        .route("/applications/{id}/rotate-secret", web::post().to(rotate))
        .route("/applications/{id}/delete", web::post().to(delete));
}

struct Row {
    id: String,
    name: String,
    app_type: &'static str,
    backchannel: bool,
}

#[derive(Template)]
#[template(path = "admin/applications.html")]
struct ListPage {
    c: Chrome,
    rows: Vec<Row>,
}

#[derive(serde::Deserialize)]
struct Done {
    done: Option<String>,
}

const APP_TYPES: [(&str, &str); 4] = [
    ("regular_web", "Regular web application"),
    ("spa", "Single-page application"),
    ("native", "Native application"),
    ("non_interactive", "Machine to machine"),
];
const GRANTS: [(&str, &str); 3] = [
    ("authorization_code", "Authorization code"),
    ("refresh_token", "Refresh token"),
    ("client_credentials", "Client credentials"),
];
const AUTH_METHODS: [(&str, &str); 3] = [
    ("client_secret_basic", "Client secret (Basic)"),
    ("client_secret_post", "Client secret (POST)"),
    ("none", "None (public client, PKCE)"),
];
const ALGS: [&str; 3] = ["RS256", "ES256", "EdDSA"];

fn type_label(v: &Value) -> &'static str {
    APP_TYPES
        .iter()
        .find(|(k, _)| v.as_str() == Some(*k))
        .map_or("—", |(_, l)| *l)
}

async fn list(a: Admin, deps: web::Data<Deps>, q: web::Query<Done>) -> HttpResponse {
    let mut all = or_page!(deps.store.list_clients().await);
    all.sort_by(|x, y| x.name.cmp(&y.name));
    let rows = all
        .iter()
        .map(|c| {
            let v = ops::show(c);
            Row {
                id: c.client_id.as_str().to_owned(),
                name: c.name.clone(),
                app_type: type_label(&v["app_type"]),
                backchannel: !c.oidc_logout.backchannel_logout_urls.is_empty(),
            }
        })
        .collect();
    let mut c = a.chrome("applications");
    if q.done.as_deref() == Some("deleted") {
        c.notice = Some("Application deleted.".into());
    }
    html(StatusCode::OK, &ListPage { c, rows })
}

fn lines(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn choices(all: &[(&str, &str)], selected: &[String]) -> Vec<Choice> {
    all.iter()
        .map(|(v, l)| Choice {
            value: (*v).into(),
            label: (*l).into(),
            selected: selected.iter().any(|s| s == v),
        })
        .collect()
}

/// The form, from the client as the API shows it (edit) or from what was posted.
/// `connections`: every connection, and whether it serves this application.
fn sections(
    shown: Option<&Value>,
    form: Option<&Form>,
    connections: &[(Connection, bool)],
) -> Vec<Section> {
    let s = shown.cloned().unwrap_or(Value::Null);
    let text = |name: &str, stored: String| match form {
        Some(f) => f.get(name).unwrap_or_default().to_owned(),
        None => stored,
    };
    let one = |name: &str, stored: Option<&str>| -> Vec<String> {
        match form {
            Some(f) => f.all(name),
            None => stored.map(|v| vec![v.to_owned()]).unwrap_or_default(),
        }
    };
    let grants: Vec<String> = match form {
        Some(f) => f.all("grant_types"),
        None => s["grant_types"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_else(|| vec!["authorization_code".into(), "refresh_token".into()]),
    };
    let alg = one(
        "alg",
        s["jwt_configuration"]["alg"].as_str().or(Some("RS256")),
    );
    let method = one(
        "token_endpoint_auth_method",
        s["token_endpoint_auth_method"]
            .as_str()
            .or(Some("client_secret_basic")),
    );
    let app_type = one("app_type", s["app_type"].as_str().or(Some("regular_web")));
    let bc = s["oidc_logout"]["backchannel_logout_urls"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let bc_sid = match form {
        Some(f) => f.checked("backchannel_logout_session_required"),
        None => s["oidc_logout"]["backchannel_logout_session_required"] == Value::Bool(true),
    };
    let fc = s["oidc_logout"]["frontchannel_logout_url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // A new application asks for `iss` and `sid` (the API's default too).
    let fc_sid = match form {
        Some(f) => f.checked("frontchannel_logout_session_required"),
        None => s["oidc_logout"]["frontchannel_logout_session_required"] != Value::Bool(false),
    };
    vec![
        Section {
            id: "general",
            title: "General".into(),
            description: String::new(),
            fields: vec![
                Field::new(
                    "text",
                    "name",
                    "Name",
                    text("name", s["name"].as_str().unwrap_or_default().into()),
                ),
                Field::new("select", "app_type", "Application type", "")
                    .choices(choices(&APP_TYPES, &app_type)),
            ],
        },
        Section {
            id: "urls",
            title: "URLs".into(),
            description: "Exact matches only; https://, or http:// on loopback for development."
                .into(),
            fields: vec![
                Field::new(
                    "textarea",
                    "callbacks",
                    "Allowed callback URLs",
                    text("callbacks", lines(&s["callbacks"])),
                )
                .help("One per line."),
                Field::new(
                    "textarea",
                    "allowed_logout_urls",
                    "Allowed logout URLs",
                    text("allowed_logout_urls", lines(&s["allowed_logout_urls"])),
                )
                .help("Where the app may send users after logout. One per line."),
            ],
        },
        Section {
            id: "logout",
            title: "Logout".into(),
            description: "How Latch tells this app that a user's session ended.".into(),
            fields: vec![
                Field::new(
                    "url",
                    "backchannel_logout_url",
                    "Back-channel logout URL",
                    text("backchannel_logout_url", bc),
                )
                .help(
                    "Latch POSTs a signed logout token here (OpenID Connect Back-Channel Logout).",
                ),
                Field::new(
                    "checkbox",
                    "backchannel_logout_session_required",
                    "Logout token must carry sid",
                    "",
                )
                .checked(bc_sid),
                Field::new(
                    "url",
                    "frontchannel_logout_url",
                    "Front-channel logout URL",
                    text("frontchannel_logout_url", fc),
                )
                .help(
                    "When a user signs out with their browser at Latch, Latch loads this URL in a hidden frame (OpenID Connect Front-Channel Logout).",
                ),
                Field::new(
                    "checkbox",
                    "frontchannel_logout_session_required",
                    "Front-channel URL gets iss and sid",
                    "",
                )
                .checked(fc_sid),
            ],
        },
        Section {
            id: "connections",
            title: "Connections".into(),
            description: "How this application's users may sign in.".into(),
            fields: vec![
                Field::new("checkboxes", "connections", "Enabled connections", "").choices(
                    connections
                        .iter()
                        .map(|(c, on)| Choice {
                            value: c.id.as_str().to_owned(),
                            label: format!(
                                "{} ({})",
                                c.display_name.as_deref().unwrap_or(c.name.as_str()),
                                c.strategy.as_str()
                            ),
                            selected: match form {
                                Some(f) => f.all("connections").iter().any(|x| x == c.id.as_str()),
                                None => *on,
                            },
                        })
                        .collect(),
                ),
            ],
        },
        Section {
            id: "advanced",
            title: "Tokens".into(),
            description: String::new(),
            fields: vec![
                Field::new("checkboxes", "grant_types", "Grant types", "")
                    .choices(choices(&GRANTS, &grants)),
                Field::new(
                    "select",
                    "token_endpoint_auth_method",
                    "Token endpoint authentication",
                    "",
                )
                .choices(choices(&AUTH_METHODS, &method)),
                Field::new("select", "alg", "Signing algorithm", "").choices(
                    ALGS.iter()
                        .map(|a| Choice {
                            value: (*a).into(),
                            label: (*a).into(),
                            selected: alg.iter().any(|x| x == a),
                        })
                        .collect(),
                ),
            ],
        },
    ]
}

fn body(f: &Form) -> Value {
    let bc = f.text("backchannel_logout_url");
    json!({
        "name": f.get("name").unwrap_or_default().trim(),
        "app_type": f.get("app_type").unwrap_or("regular_web"),
        "callbacks": f.list("callbacks", false),
        "allowed_logout_urls": f.list("allowed_logout_urls", false),
        "grant_types": f.all("grant_types"),
        "token_endpoint_auth_method": f.get("token_endpoint_auth_method").unwrap_or("client_secret_basic"),
        "jwt_configuration": { "alg": f.get("alg").unwrap_or("RS256") },
        "oidc_logout": {
            "backchannel_logout_urls": bc.into_iter().collect::<Vec<_>>(),
            "backchannel_logout_session_required": f.checked("backchannel_logout_session_required"),
            "frontchannel_logout_url": f.text("frontchannel_logout_url"),
            "frontchannel_logout_session_required": f.checked("frontchannel_logout_session_required"),
        },
    })
}

fn page(a: &Admin, title: String, action: String, sections: Vec<Section>) -> FormPage {
    FormPage {
        c: a.chrome("applications"),
        title,
        lead: String::new(),
        back: "/admin/applications",
        action,
        submit: "Save",
        sections,
        problems: vec![],
        shown_secret: None,
        extras: vec![],
    }
}

/// Every connection, and whether it serves the application `id` (`None`: a new one, which the
/// API enables on the database connection).
async fn connections_of(
    deps: &Deps,
    id: Option<&str>,
) -> Result<Vec<(Connection, bool)>, latch_core::StoreError> {
    let mut all = deps.store.list_connections().await?;
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all
        .into_iter()
        .map(|c| {
            let on = match id {
                Some(id) => c.enabled_clients.iter().any(|x| x.as_str() == id),
                None => c.name.as_str() == DATABASE_CONNECTION,
            };
            (c, on)
        })
        .collect())
}

/// Turns each connection on or off for the application as the form says, through the API
/// (`PATCH /api/v2/connections/{id}/clients`), changing only those that differ.
async fn apply_connections(
    a: &Admin,
    deps: &web::Data<Deps>,
    req: &HttpRequest,
    client_id: &str,
    form: &Form,
) -> Result<(), ApiError> {
    let chosen = form.all("connections");
    for (c, on) in connections_of(deps, Some(client_id)).await? {
        let want = chosen.iter().any(|x| x == c.id.as_str());
        if want != on {
            connection_ops::set_client(deps, a.auth(), req, c.id.as_str(), client_id, want).await?;
        }
    }
    Ok(())
}

fn edit_page(
    a: &Admin,
    shown: &Value,
    form: Option<&Form>,
    connections: &[(Connection, bool)],
) -> FormPage {
    let id = shown["client_id"].as_str().unwrap_or_default();
    let mut p = page(
        a,
        shown["name"].as_str().unwrap_or("Application").to_owned(),
        format!("/admin/applications/{id}"),
        sections(Some(shown), form, connections),
    );
    p.lead = format!("Client ID: {id}");
    let confidential = shown["token_endpoint_auth_method"].as_str() != Some("none");
    if confidential {
        p.extras.push(Extra {
            action: format!("/admin/applications/{id}/rotate-secret"),
            label: "Rotate client secret",
            class: "secondary",
            confirm: "Rotate the client secret? The current secret stops working at once.".into(),
        });
    }
    // The admin UI's own client is Latch's (the API refuses to delete it).
    if id != ADMIN_CLIENT_ID {
        p.extras.push(Extra {
            action: format!("/admin/applications/{id}/delete"),
            label: "Delete application",
            class: "danger",
            confirm: format!(
                "Delete the application {}? It can no longer sign users in; its tokens stop working.",
                shown["name"].as_str().unwrap_or(id)
            ),
        });
    }
    p
}

async fn new(a: Admin, deps: web::Data<Deps>) -> HttpResponse {
    let connections = or_page!(connections_of(&deps, None).await);
    let mut p = page(
        &a,
        "New application".into(),
        "/admin/applications".into(),
        sections(None, None, &connections),
    );
    p.submit = "Create";
    html(StatusCode::OK, &p)
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
    let b = body(&form);
    match ops::create(&deps, a.auth(), &req, b.clone()).await {
        Ok(v) => {
            let id = v["client_id"].as_str().unwrap_or_default().to_owned();
            let linked = apply_connections(&a, &deps, &req, &id, &form).await;
            let connections = or_page!(connections_of(&deps, Some(&id)).await);
            // The secret is shown on this answer only.
            let mut p = edit_page(&a, &v, None, &connections);
            p.shown_secret = v["client_secret"].as_str().map(str::to_owned);
            p.c.notice = Some("Application created.".into());
            if let Err(e) = linked {
                p.refused(vec![e]);
            }
            html(StatusCode::CREATED, &p)
        }
        Err(e) => {
            let connections = or_page!(connections_of(&deps, None).await);
            let mut p = page(
                &a,
                "New application".into(),
                "/admin/applications".into(),
                sections(None, Some(&form), &connections),
            );
            p.submit = "Create";
            let status = e.status;
            p.refused(problems::merge(
                e,
                ui_ops::problems(None, &b, &deps.outbound),
            ));
            html(status, &p)
        }
    }
}

async fn find(deps: &Deps, id: &str) -> Result<Client, ApiError> {
    deps.store
        .find_client(&latch_core::ClientId::new(id))
        .await?
        .ok_or_else(|| ApiError::not_found("application"))
}

#[derive(serde::Deserialize)]
struct Saved {
    saved: Option<String>,
}

async fn edit(
    a: Admin,
    deps: web::Data<Deps>,
    id: web::Path<String>,
    q: web::Query<Saved>,
) -> HttpResponse {
    let c = or_page!(find(&deps, &id).await);
    let connections = or_page!(connections_of(&deps, Some(c.client_id.as_str())).await);
    let mut p = edit_page(&a, &ops::show(&c), None, &connections);
    if q.saved.is_some() {
        p.c.notice = Some("Changes saved.".into());
    }
    html(StatusCode::OK, &p)
}

async fn update(
    a: Admin,
    deps: web::Data<Deps>,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<Form>,
) -> HttpResponse {
    if let Some(r) = a.csrf_refusal(&form) {
        return r;
    }
    let c = or_page!(find(&deps, &id).await);
    let id = c.client_id.as_str();
    let b = body(&form);
    let saved: Result<(), Vec<ApiError>> =
        match ops::update(&deps, a.auth(), &req, id, b.clone()).await {
            Ok(_) => apply_connections(&a, &deps, &req, id, &form)
                .await
                .map_err(|e| vec![e]),
            Err(e) => Err(problems::merge(
                e,
                ui_ops::problems(Some(&c), &b, &deps.outbound),
            )),
        };
    match saved {
        Ok(()) => redirect(&format!("/admin/applications/{id}?saved=1")),
        Err(errors) => {
            let connections = or_page!(connections_of(&deps, Some(id)).await);
            let mut p = edit_page(&a, &ops::show(&c), Some(&form), &connections);
            let status = errors.first().map_or(StatusCode::BAD_REQUEST, |e| e.status);
            p.refused(errors);
            html(status, &p)
        }
    }
}
async fn rotate(
    a: Admin,
    deps: web::Data<Deps>,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<Form>,
) -> HttpResponse {
    if let Some(r) = a.csrf_refusal(&form) {
        return r;
    }
    match ops::rotate_secret(&deps, a.auth(), &req, &id).await {
        Ok(v) => {
            let connections = or_page!(connections_of(&deps, Some(&id)).await);
            let mut p = edit_page(&a, &v, None, &connections);
            p.shown_secret = v["client_secret"].as_str().map(str::to_owned);
            p.c.notice = Some("New secret issued; the old one no longer works.".into());
            html(StatusCode::OK, &p)
        }
        Err(e) => error_page(e),
    }
}

/// `POST /admin/applications/{id}/delete` (`DELETE /api/v2/clients/{id}`; the UI's own client
/// is refused there).
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
    match ui_ops::delete(&deps, a.auth(), &req, &id).await {
        Ok(()) => redirect("/admin/applications?done=deleted"),
        Err(e) if e.status == StatusCode::FORBIDDEN => super::message(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "The admin UI's own application (latch-admin) is managed by Latch and cannot be deleted.",
            Some(("/admin/applications", "Back to applications")),
        ),
        Err(e) => error_page(e),
    }
}
