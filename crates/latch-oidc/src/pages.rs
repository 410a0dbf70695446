//! The provider's own page (the logout confirmation); the rest are sign-in's (`latch_login::pages`).

use askama::Template;
pub use latch_login::pages::{builder, csp_with_form_target, error, render};

#[derive(Template)]
#[template(path = "oidc/logout.html")]
pub struct LogoutPage<'a> {
    pub app_name: Option<&'a str>,
    pub action: &'a str,
    pub tx: &'a str,
}
