//! Latch as an OpenID Connect provider.
//!
//! One module per endpoint under [`endpoints`]; protocol rules live in plain functions over
//! domain types. Signing the user in is `latch_login`'s: `/authorize` checks the request and
//! hands it over, and sign-in answers through [`OidcCompletion`].

mod client_auth;
pub mod endpoints;
mod issue;
mod pages;

use std::sync::Arc;

use actix_web::web;
use latch_core::Clock;
use latch_core::session::SessionStore;
use latch_core::store::Store;
use latch_jose::KeyRing;
use time::Duration;

/// Paths the provider serves (Auth0's where Auth0 has one), from [`latch_core::paths`].
pub mod paths {
    pub use latch_core::paths::OIDC_LOGOUT as LOGOUT;
    pub use latch_core::paths::{AUTHORIZE, DISCOVERY, INTROSPECT, JWKS, REVOKE, TOKEN, USERINFO};
}

/// Lifetimes and cookie settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub code_ttl: Duration,
    pub login_ttl: Duration,
    /// `Secure` cookies: on whenever the issuer is https.
    pub secure_cookies: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
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
    /// Signs users in; `/authorize` hands its checked requests to it.
    pub login: latch_login::Login,
    /// The Logout service (RP-initiated logout, a session replaced at sign-in).
    pub logout: Arc<latch_core::logout::Logout>,
    /// The front-channel logout page (`latch_slo`'s) a logout answers with when other apps of
    /// the ended session have a front-channel logout URL.
    pub front_channel: Arc<dyn latch_core::logout::FrontChannelPage>,
    pub settings: Settings,
}

pub use endpoints::authorize::OidcCompletion;

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
