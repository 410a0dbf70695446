//! Latch as an OpenID Connect provider.
//!
//! One module per endpoint under [`endpoints`]; protocol rules live in plain functions over
//! domain types. Upstream sign-in goes through `latch_core::connector` ports only, so this crate
//! never knows which strategy signed a user in.

mod client_auth;
mod cookies;
pub mod endpoints;
mod issue;
mod pages;

use std::sync::Arc;

use actix_web::web;
use latch_core::Clock;
use latch_core::connector::PasswordConnector;
use latch_core::session::SessionStore;
use latch_core::store::Store;
use latch_jose::KeyRing;
use time::Duration;

/// Paths Latch serves (Auth0's where Auth0 has one).
pub mod paths {
    pub const DISCOVERY: &str = "/.well-known/openid-configuration";
    pub const JWKS: &str = "/.well-known/jwks.json";
    pub const AUTHORIZE: &str = "/authorize";
    pub const LOGIN: &str = "/login";
    pub const TOKEN: &str = "/oauth/token";
    pub const USERINFO: &str = "/userinfo";
    pub const REVOKE: &str = "/oauth/revoke";
    pub const INTROSPECT: &str = "/oauth/introspect";
    pub const LOGOUT: &str = "/oidc/logout";
    /// Where upstream IdPs send the browser back (Auth0's path).
    pub const CALLBACK: &str = "/login/callback";
}

/// Lifetimes and cookie settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A session unused this long ends (Auth0's default: 3 days).
    pub session_idle: Duration,
    /// A session ends this long after sign-in, however busy (Auth0's default: 7 days).
    pub session_absolute: Duration,
    pub code_ttl: Duration,
    pub login_ttl: Duration,
    /// `Secure` cookies: on whenever the issuer is https.
    pub secure_cookies: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            session_idle: Duration::days(3),
            session_absolute: Duration::days(7),
            code_ttl: Duration::seconds(60),
            login_ttl: Duration::minutes(15),
            secure_cookies: false,
        }
    }
}

/// What the provider needs.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub sessions: Arc<dyn SessionStore>,
    pub clock: Arc<dyn Clock>,
    pub keys: Arc<KeyRing>,
    /// Seals the opaque access tokens whose audience is `/userinfo`.
    pub sealer: Arc<latch_jose::TokenSealer>,
    /// The issuer, without a trailing slash.
    pub issuer: String,
    pub database: Arc<dyn PasswordConnector>,
    /// Connections that redirect to an IdP (`okta`, `oidc`).
    pub upstream: Arc<dyn latch_core::connector::RedirectConnector>,
    /// Back-channel logout, tried before the browser is sent back after a logout.
    pub notifier: Arc<dyn latch_core::logout::Notifier>,
    pub settings: Settings,
}

impl Deps {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }
}

/// Mounts the provider's public routes.
pub fn configure(deps: Deps) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(deps))
            .app_data(web::FormConfig::default().limit(16 * 1024))
            .route(
                paths::DISCOVERY,
                web::get().to(endpoints::discovery::get_discovery),
            )
            .route(paths::JWKS, web::get().to(endpoints::discovery::get_jwks))
            .route(
                paths::AUTHORIZE,
                web::get().to(endpoints::authorize::get_authorize),
            )
            .route(
                paths::LOGIN,
                web::post().to(endpoints::authorize::post_login),
            )
            .service(
                // The SAML ACS takes a signed Response in a form: larger than other forms.
                web::resource(paths::CALLBACK)
                    .app_data(web::FormConfig::default().limit(512 * 1024))
                    .route(web::get().to(endpoints::authorize::get_callback))
                    .route(web::post().to(endpoints::authorize::post_callback)),
            )
            .route(paths::TOKEN, web::post().to(endpoints::token::post_token))
            .route(
                paths::USERINFO,
                web::get().to(endpoints::userinfo::get_userinfo),
            )
            .route(
                paths::USERINFO,
                web::post().to(endpoints::userinfo::get_userinfo),
            )
            .route(
                paths::REVOKE,
                web::post().to(endpoints::revoke::post_revoke),
            )
            .route(
                paths::INTROSPECT,
                web::post().to(endpoints::revoke::post_introspect),
            )
            .route(paths::LOGOUT, web::get().to(endpoints::logout::get_logout))
            .route(
                paths::LOGOUT,
                web::post().to(endpoints::logout::post_logout),
            );
    }
}
