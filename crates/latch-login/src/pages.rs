//! Server-rendered pages (askama) of sign-in, shared with the protocols' own pages. Every page is
//! sent with a strict Content-Security-Policy: no scripts, inline styles only; the one exception
//! is the auto-posting form ([`post_page`]), whose one script runs by a per-response nonce.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder};
use askama::Template;

pub const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The CSP of a page whose form, once posted, redirects to `target` (the app's redirect URI):
/// browsers apply `form-action` to the redirects that follow a submission too, so the target's
/// origin is allowed besides Latch's own (a custom-scheme URI of a native app by its scheme).
pub fn csp_with_form_target(target: &str) -> String {
    let source = match url::Url::parse(target) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u.origin().ascii_serialization(),
        Ok(u) => format!("{}:", u.scheme()),
        Err(_) => return PAGE_CSP.to_owned(),
    };
    PAGE_CSP.replace(
        "form-action 'self'",
        &format!("form-action 'self' {source}"),
    )
}

#[derive(Template)]
#[template(path = "login/login.html")]
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
#[template(path = "login/message.html")]
pub struct MessagePage<'a> {
    pub title: &'a str,
    pub message: &'a str,
    pub detail: Option<&'a str>,
    pub is_error: bool,
}

/// The hop from the sign-in form to an IdP (home realm discovery): a navigation, not the form's
/// redirect, since browsers hold a form's redirects to its `form-action`, which names only Latch
/// and the app.
#[derive(Template)]
#[template(path = "login/continue.html")]
pub struct ContinuePage<'a> {
    pub idp: &'a str,
    pub url: &'a str,
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

/// The page for a sign-in whose transaction is gone (expired, used, or never Latch's): an IdP's
/// late answer, or a protocol's state it cannot read.
pub fn expired() -> HttpResponse {
    error(
        StatusCode::BAD_REQUEST,
        "Sign-in expired",
        "This sign-in has expired or was already completed. Go back to the application and start again.",
    )
}

/// An error page for requests that cannot be sent back to an app (unknown client, bad
/// return address, an expired sign-in): never redirect those.
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

/// A form the browser posts on its own (a SAML Response to an ACS, a LogoutRequest or
/// LogoutResponse), with a button for browsers without JavaScript.
#[derive(Template)]
#[template(path = "login/post.html")]
struct PostPage<'a> {
    title: &'a str,
    action: &'a str,
    fields: &'a [(String, String)],
    nonce: &'a str,
}

/// The auto-submitting page that POSTs `fields` to `action`; its CSP allows the one script.
pub fn post_page(title: &str, action: &url::Url, fields: &[(String, String)]) -> HttpResponse {
    let nonce = latch_jose::random_token(16);
    let page = PostPage {
        title,
        action: action.as_str(),
        fields,
        nonce: &nonce,
    };
    // No `form-action`: browsers hold the redirects that follow a submission to it too, and an
    // ACS may send the browser on anywhere (the form's one target is Latch's own, escaped).
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; frame-ancestors 'none'"
    );
    match page.render() {
        Ok(html) => HttpResponse::Ok()
            .insert_header(("Content-Security-Policy", csp))
            .insert_header(("Cache-Control", "no-store"))
            .content_type("text/html; charset=utf-8")
            .body(html),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            HttpResponse::InternalServerError().finish()
        }
    }
}
