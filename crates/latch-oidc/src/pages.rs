//! Server-rendered pages (askama). Every page is sent with a strict Content-Security-Policy: no
//! scripts at all, inline styles only.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder};
use askama::Template;

pub const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'";

#[derive(Template)]
#[template(path = "oidc/login.html")]
pub struct LoginPage<'a> {
    pub app_name: &'a str,
    pub action: &'a str,
    pub tx: &'a str,
    pub email: &'a str,
    pub error: Option<&'a str>,
    /// The email and password form (off on a page that only lists connections).
    pub show_form: bool,
    /// Other ways to sign in: (label, link).
    pub alternatives: &'a [(String, String)],
}

#[derive(Template)]
#[template(path = "oidc/message.html")]
pub struct MessagePage<'a> {
    pub title: &'a str,
    pub message: &'a str,
    pub detail: Option<&'a str>,
    pub is_error: bool,
}

#[derive(Template)]
#[template(path = "oidc/logout.html")]
pub struct LogoutPage<'a> {
    pub app_name: Option<&'a str>,
    pub action: &'a str,
    pub tx: &'a str,
}

pub fn builder(status: StatusCode) -> HttpResponseBuilder {
    let mut b = HttpResponse::build(status);
    b.insert_header(("Content-Security-Policy", PAGE_CSP))
        .insert_header(("Cache-Control", "no-store"))
        .content_type("text/html; charset=utf-8");
    b
}

pub fn render(mut b: HttpResponseBuilder, t: &impl Template) -> HttpResponse {
    match t.render() {
        Ok(html) => b.body(html),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            HttpResponse::InternalServerError().finish()
        }
    }
}

/// An error page for requests that cannot be sent back to an app (unknown client, bad
/// redirect URI): never redirect those.
pub fn error(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    render(
        builder(status),
        &MessagePage {
            title,
            message,
            detail: None,
            is_error: true,
        },
    )
}
