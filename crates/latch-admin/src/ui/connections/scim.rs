//! A connection's SCIM tab (`/admin/connections/{id}/scim`): SCIM on or off, the base URL an
//! admin gives the SCIM client, `user_id_attribute`, the tokens (created, expires, scopes) with
//! "Revoke", and "Create token", whose token the page shows once. Every change goes through the
//! API's handlers (`api::connections::scim::ops`).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use latch_core::ConnectionId;
use latch_core::model::{Connection, DEFAULT_SCIM_USER_ID_ATTRIBUTE, SCIM_SCOPES};
use latch_http::ApiError;
use serde_json::json;

use super::super::{Admin, Chrome, Form, error_page, html, message, problems, redirect, when};
use crate::Deps;
use crate::api::connections::scim::{MAX_TOKEN_LIFETIME, base_url, ops};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/connections/{id}/scim", web::get().to(page))
        .route("/connections/{id}/scim", web::post().to(save))
        .route("/connections/{id}/scim/delete", web::post().to(turn_off))
        .route(
            "/connections/{id}/scim/tokens",
            web::post().to(create_token),
        )
        .route(
            "/connections/{id}/scim/tokens/{token_id}/delete",
            web::post().to(revoke_token),
        );
}

/// The longest lifetime the form offers, in days (the API's limit).
const MAX_DAYS: i64 = MAX_TOKEN_LIFETIME / 86_400;

pub(crate) struct TokenRow {
    pub token_id: String,
    pub created: String,
    pub expires: String,
    pub expired: bool,
    pub scopes: String,
}

pub(crate) struct ScopeBox {
    pub value: &'static str,
    pub checked: bool,
}

#[derive(Template)]
#[template(path = "admin/connections_scim.html")]
pub(crate) struct ScimPage {
    pub c: Chrome,
    /// The connection's id and name (the tabs use `conn_id`).
    pub conn_id: String,
    pub name: String,
    pub tab: &'static str,
    pub on: bool,
    pub base_url: String,
    pub since: String,
    /// The form's value: as posted after an error, else as stored (or the default).
    pub user_id_attribute: String,
    pub attribute_error: Option<String>,
    pub mapping: Vec<(String, String)>,
    pub tokens: Vec<TokenRow>,
    pub scopes: Vec<ScopeBox>,
    pub scopes_error: Option<String>,
    pub lifetime_days: String,
    pub lifetime_error: Option<String>,
    /// A token just created: shown this once.
    pub new_token: Option<String>,
}

/// The connection, or the page to answer instead (404; a database connection has no SCIM).
async fn connection(deps: &Deps, id: &str) -> Result<Connection, HttpResponse> {
    match deps.store.get_connection(&ConnectionId::new(id)).await {
        Ok(c) if c.strategy.is_enterprise() => Ok(c),
        Ok(_) => Err(message(
            StatusCode::NOT_FOUND,
            "No SCIM here",
            "SCIM provisions users into enterprise connections (Okta, OpenID Connect, SAML) only.",
            Some(("/admin/connections", "Back to connections")),
        )),
        Err(e) => Err(error_page(e.into())),
    }
}

/// The page as stored: the SCIM configuration and tokens.
async fn render(a: &Admin, deps: &Deps, c: &Connection) -> Result<ScimPage, ApiError> {
    let config = deps.store.find_scim_config(&c.id).await?;
    let now = deps.clock.now();
    let tokens = match &config {
        Some(_) => deps
            .store
            .list_scim_tokens(&c.id)
            .await?
            .into_iter()
            .map(|t| TokenRow {
                expired: !t.is_valid(now),
                expires: t.valid_until.map_or_else(|| "Never".to_owned(), when),
                created: when(t.created_at),
                scopes: t.scopes.join(" "),
                token_id: t.token_id,
            })
            .collect(),
        None => vec![],
    };
    let mapping = config
        .as_ref()
        .and_then(|s| s.mapping.as_array())
        .into_iter()
        .flatten()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
            (s("auth0"), s("scim"))
        })
        .collect();
    Ok(ScimPage {
        c: a.chrome("connections"),
        conn_id: c.id.as_str().to_owned(),
        name: c.name.as_str().to_owned(),
        tab: "scim",
        on: config.is_some(),
        base_url: base_url(&deps.issuer, &c.id),
        since: config
            .as_ref()
            .map(|s| when(s.created_at))
            .unwrap_or_default(),
        user_id_attribute: config.as_ref().map_or_else(
            || DEFAULT_SCIM_USER_ID_ATTRIBUTE.to_owned(),
            |s| s.user_id_attribute.clone(),
        ),
        attribute_error: None,
        mapping,
        tokens,
        scopes: SCIM_SCOPES
            .iter()
            .map(|s| ScopeBox {
                value: s,
                checked: true,
            })
            .collect(),
        scopes_error: None,
        lifetime_days: String::new(),
        lifetime_error: None,
        new_token: None,
    })
}

#[derive(serde::Deserialize)]
struct Done {
    done: Option<String>,
}

/// `GET /admin/connections/{id}/scim`.
async fn page(
    a: Admin,
    deps: web::Data<Deps>,
    id: web::Path<String>,
    q: web::Query<Done>,
) -> HttpResponse {
    let c = match connection(&deps, &id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut p = or_page!(render(&a, &deps, &c).await);
    p.c.notice = match q.done.as_deref() {
        Some("on") => Some("SCIM is on. Create a token for your SCIM client.".into()),
        Some("saved") => Some("Changes saved.".into()),
        Some("off") => Some("SCIM is off; every token of this connection is revoked.".into()),
        Some("revoked") => Some("Token revoked.".into()),
        _ => None,
    };
    html(StatusCode::OK, &p)
}

/// `POST /admin/connections/{id}/scim`: turns SCIM on, or saves `user_id_attribute`.
async fn save(
    a: Admin,
    deps: web::Data<Deps>,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<Form>,
) -> HttpResponse {
    if let Some(r) = a.csrf_refusal(&form) {
        return r;
    }
    let c = match connection(&deps, &id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let attribute = form.text("user_id_attribute").unwrap_or_default();
    let body = json!({ "user_id_attribute": attribute });
    let on = or_page!(deps.store.find_scim_config(&c.id).await).is_some();
    let done = if on {
        ops::update(&deps, a.auth(), &req, c.id.as_str(), body)
            .await
            .map(|_| "saved")
    } else {
        ops::create(&deps, a.auth(), &req, c.id.as_str(), body)
            .await
            .map(|_| "on")
    };
    match done {
        Ok(done) => redirect(&format!("/admin/connections/{}/scim?done={done}", c.id)),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            let mut p = or_page!(render(&a, &deps, &c).await);
            p.user_id_attribute = attribute;
            p.attribute_error = Some(problems::words("User ID attribute", &e));
            html(e.status, &p)
        }
        Err(e) if e.status == StatusCode::CONFLICT => {
            // Turned on meanwhile (another tab): show it as it is now.
            redirect(&format!("/admin/connections/{}/scim", c.id))
        }
        Err(e) => error_page(e),
    }
}

/// `POST /admin/connections/{id}/scim/delete`: turns SCIM off (every token revoked).
async fn turn_off(
    a: Admin,
    deps: web::Data<Deps>,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<Form>,
) -> HttpResponse {
    if let Some(r) = a.csrf_refusal(&form) {
        return r;
    }
    match ops::delete(&deps, a.auth(), &req, &id).await {
        Ok(()) => redirect(&format!("/admin/connections/{id}/scim?done=off")),
        Err(e) => error_page(e),
    }
}

/// The lifetime field in days, as the API's `token_lifetime` in seconds (`None`: never expires).
fn lifetime(days: &str) -> Result<Option<i64>, String> {
    let days = days.trim();
    if days.is_empty() {
        return Ok(None);
    }
    match days.parse::<i64>() {
        Ok(d) if (1..=MAX_DAYS).contains(&d) => Ok(Some(d * 86_400)),
        _ => Err(format!(
            "Lifetime must be a whole number of days from 1 to {MAX_DAYS}, or empty for a token that does not expire."
        )),
    }
}

/// `POST /admin/connections/{id}/scim/tokens`: a new token, shown on the answer only.
async fn create_token(
    a: Admin,
    deps: web::Data<Deps>,
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<Form>,
) -> HttpResponse {
    if let Some(r) = a.csrf_refusal(&form) {
        return r;
    }
    let c = match connection(&deps, &id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let chosen = form.all("scopes");
    let days = form.get("lifetime_days").unwrap_or_default().to_owned();
    let refused = |mut p: ScimPage, scopes: Option<String>, life: Option<String>| {
        p.scopes = SCIM_SCOPES
            .iter()
            .map(|s| ScopeBox {
                value: s,
                checked: chosen.iter().any(|c| c == s),
            })
            .collect();
        p.lifetime_days.clone_from(&days);
        p.scopes_error = scopes;
        p.lifetime_error = life;
        html(StatusCode::BAD_REQUEST, &p)
    };
    let seconds = match lifetime(&days) {
        Ok(s) if !chosen.is_empty() => s,
        checked => {
            // Both fields' problems at once (the API would name only its first).
            let p = or_page!(render(&a, &deps, &c).await);
            let scopes = chosen
                .is_empty()
                .then(|| "Scopes: choose at least one.".to_owned());
            return refused(p, scopes, checked.err());
        }
    };
    let mut body = json!({ "scopes": chosen });
    if let Some(s) = seconds {
        body["token_lifetime"] = json!(s);
    }
    match ops::create_token(&deps, a.auth(), &req, c.id.as_str(), body).await {
        Ok(v) => {
            let mut p = or_page!(render(&a, &deps, &c).await);
            p.new_token = v["token"].as_str().map(str::to_owned);
            html(StatusCode::OK, &p)
        }
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            let p = or_page!(render(&a, &deps, &c).await);
            match e.field.as_deref() {
                Some("token_lifetime") => {
                    let m = problems::words("Lifetime", &e);
                    refused(p, None, Some(m))
                }
                _ => {
                    let m = problems::words("Scopes", &e);
                    refused(p, Some(m), None)
                }
            }
        }
        Err(e) => error_page(e),
    }
}

/// `POST /admin/connections/{id}/scim/tokens/{token_id}/delete`: revokes one token.
async fn revoke_token(
    a: Admin,
    deps: web::Data<Deps>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    form: web::Form<Form>,
) -> HttpResponse {
    if let Some(r) = a.csrf_refusal(&form) {
        return r;
    }
    let (id, token_id) = path.into_inner();
    match ops::delete_token(&deps, a.auth(), &req, &id, &token_id).await {
        Ok(()) => redirect(&format!("/admin/connections/{id}/scim?done=revoked")),
        Err(e) => error_page(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_in_days() {
        assert_eq!(lifetime(""), Ok(None));
        assert_eq!(lifetime(" 30 "), Ok(Some(30 * 86_400)));
        assert_eq!(lifetime("3650"), Ok(Some(MAX_TOKEN_LIFETIME)));
        for bad in ["0", "-1", "3651", "1.5", "ten", "99999999999999999999"] {
            assert!(lifetime(bad).is_err(), "{bad}");
        }
    }
}
