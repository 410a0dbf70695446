//! Signing keys and their states, with rotate.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use super::{Admin, Chrome, Form, error_page, html, redirect, when};
use crate::Deps;
use crate::api::keys::ops;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/keys", web::get().to(list))
        .route("/keys/rotate", web::post().to(rotate));
}

struct Row {
    kid: String,
    alg: &'static str,
    state: &'static str,
    created: String,
}

#[derive(Template)]
#[template(path = "admin/keys.html")]
struct Page {
    c: Chrome,
    rows: Vec<Row>,
}

#[derive(serde::Deserialize)]
struct Done {
    done: Option<String>,
}

async fn list(a: Admin, deps: web::Data<Deps>, q: web::Query<Done>) -> HttpResponse {
    let keys = or_page!(deps.store.list_signing_keys().await);
    let mut c = a.chrome("keys");
    if q.done.is_some() {
        c.notice = Some("Keys rotated.".into());
    }
    html(
        StatusCode::OK,
        &Page {
            c,
            rows: keys
                .iter()
                .map(|k| Row {
                    kid: k.kid.as_str().to_owned(),
                    alg: k.alg.as_str(),
                    state: k.state.as_str(),
                    created: when(k.created_at),
                })
                .collect(),
        },
    )
}

async fn rotate(
    a: Admin,
    deps: web::Data<Deps>,
    req: HttpRequest,
    form: web::Form<Form>,
) -> HttpResponse {
    if let Some(r) = a.csrf_refusal(&form) {
        return r;
    }
    match ops::rotate(&deps, a.auth(), &req).await {
        Ok(()) => redirect("/admin/keys?done=1"),
        Err(e) => error_page(e),
    }
}
