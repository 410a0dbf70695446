//! Signing in, whatever protocol the app speaks.
//!
//! A protocol's front door (`/authorize` in `latch-oidc`; a SAML AuthnRequest in the planned
//! `latch-samlp`) checks the app's request in its own terms, turns it into a protocol-neutral
//! [`LoginRequest`] and calls [`Login::begin`]. From there this crate does everything that is
//! not the protocol's: single sign-on from a live session, choosing the connection (named, by
//! the login hint's domain, or by the user), the password form, the redirect to an upstream IdP
//! and its callback (the SAML ACS included), provisioning, and the new session. It ends through
//! the [`Completion`] port of the request's [`Protocol`], which turns the session into the app's
//! answer (OpenID Connect: a code and a redirect) or a refusal (`login_required`).
//!
//! **Invariants:** a sign-in form or callback completes only in the browser that started it
//! (one-time login transactions bound to the `latch_browser` cookie); a completed sign-in always
//! gets a new session (one a different user may have left in this browser is ended through the
//! Logout service); upstream connectors are reached only through the `latch_core::connector`
//! ports, so no strategy is known here.

pub mod cookies;
pub mod events;
mod flow;
pub mod logout;
pub mod pages;
mod password;
mod request;
mod upstream;

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::web;
use latch_core::Clock;
use latch_core::connector::{PasswordConnector, RedirectConnector, UpstreamLogout};
use latch_core::logout::{FrontChannelPage, Logout};
use latch_core::session::SessionStore;
use latch_core::store::Store;
use time::Duration;

pub use request::{Completion, Issued, LoginRequest, Prompt, Protocol, Refusal};

/// Paths this crate serves (Auth0's), from [`latch_core::paths`]: the password form posts to
/// `LOGIN`; upstream IdPs send the browser back to `CALLBACK`, whose `POST` is the SAML
/// AssertionConsumerService.
pub mod paths {
    pub use latch_core::paths::{CALLBACK, LOGIN, UPSTREAM_LOGOUT};
}

/// Lifetimes and cookie settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A session unused this long ends (Auth0's default: 3 days).
    pub session_idle: Duration,
    /// A session ends this long after sign-in, however busy (Auth0's default: 7 days).
    pub session_absolute: Duration,
    /// How long a sign-in form or an upstream round trip may take.
    pub login_ttl: Duration,
    /// `Secure` cookies: on whenever the issuer is https.
    pub secure_cookies: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            session_idle: Duration::days(3),
            session_absolute: Duration::days(7),
            login_ttl: Duration::minutes(15),
            secure_cookies: false,
        }
    }
}

/// What sign-in needs.
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub sessions: Arc<dyn SessionStore>,
    pub clock: Arc<dyn Clock>,
    /// The issuer, without a trailing slash.
    pub issuer: String,
    /// The `auth0` (database) strategy.
    pub database: Arc<dyn PasswordConnector>,
    /// Connections that redirect to an IdP (`okta`, `oidc`, `samlp`).
    pub upstream: Arc<dyn RedirectConnector>,
    /// Ends the session a new sign-in replaces, and those an upstream IdP's logout names.
    pub logout: Arc<Logout>,
    /// Logout with upstream IdPs: their SAML Single Logout, and federated logout.
    pub upstream_logout: Arc<dyn UpstreamLogout>,
    /// The logout page an upstream IdP's LogoutRequest is answered with.
    pub front_channel: Arc<dyn FrontChannelPage>,
    /// How each protocol answers its app.
    pub completions: HashMap<Protocol, Arc<dyn Completion>>,
    pub settings: Settings,
}

impl Deps {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// The completion of the request's protocol. A protocol without one cannot have begun a
    /// sign-in here, so a missing one is Latch's misconfiguration: a 500 with a log line.
    pub(crate) fn completion(
        &self,
        r: &LoginRequest,
    ) -> Result<&Arc<dyn Completion>, latch_http::ApiError> {
        self.completions.get(&r.protocol).ok_or_else(|| {
            tracing::error!(protocol = ?r.protocol, "no completion registered for the protocol");
            latch_http::ApiError::new(
                actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "sign-in cannot complete for this protocol",
            )
        })
    }
}

/// The handle protocols hold: starts sign-ins.
#[derive(Clone)]
pub struct Login(pub Arc<Deps>);

impl Login {
    pub fn new(deps: Deps) -> Self {
        Self(Arc::new(deps))
    }

    /// Signs the browser in for `r` (checked by its protocol): single sign-on when a live
    /// session serves it, else the form, a connection chooser or the IdP; `prompt=none` without
    /// a usable session is the protocol's `login_required`. `named` is the connection the app
    /// asked for, if any.
    pub async fn begin(
        &self,
        req: &actix_web::HttpRequest,
        r: request::Begin,
    ) -> Result<actix_web::HttpResponse, latch_http::ApiError> {
        flow::begin(&self.0, req, r).await
    }

    /// Mounts `POST /login`, `/login/callback` and `/logout` (upstream logout).
    pub fn configure(&self) -> impl FnOnce(&mut web::ServiceConfig) + use<> {
        let deps = web::Data::from(self.0.clone());
        move |cfg| {
            cfg.service(
                // POST only: another method finds no route (404), as every sign-in path.
                web::resource(paths::LOGIN)
                    .guard(actix_web::guard::Post())
                    .app_data(deps.clone())
                    .app_data(web::FormConfig::default().limit(16 * 1024))
                    .route(web::post().to(password::post_login)),
            )
            .service(
                // Logout messages are small (Latch refuses XML over 32 KiB).
                web::resource(paths::UPSTREAM_LOGOUT)
                    .app_data(deps.clone())
                    .app_data(web::FormConfig::default().limit(64 * 1024))
                    .route(web::get().to(logout::get_logout))
                    .route(web::post().to(logout::post_logout)),
            )
            .service(
                // The SAML ACS takes a signed Response in a form: larger than other forms.
                web::resource(paths::CALLBACK)
                    .app_data(deps)
                    .app_data(web::FormConfig::default().limit(512 * 1024))
                    .route(web::get().to(upstream::get_callback))
                    .route(web::post().to(upstream::post_callback)),
            );
        }
    }
}

pub use password::LoginForm;
pub use request::Begin;
pub use upstream::AcsForm;
