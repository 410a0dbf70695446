//! The management API (`/api/v2`, shaped as Auth0's Management API v2) and the admin web UI
//! (`/admin`, see [`ui`]).
//!
//! **Boundary:** admin routes are mounted only through [`configure`], under `/api/v2`; handlers
//! reach the stores through `latch_core` traits.

mod api;
mod audit;
pub mod openapi;
mod ui;

use std::sync::Arc;

use actix_web::web;
use latch_core::Clock;
use latch_core::session::SessionStore;
use latch_core::store::Store;

/// What the management API needs.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub sessions: Arc<dyn SessionStore>,
    pub clock: Arc<dyn Clock>,
    pub keys: Arc<latch_jose::KeyRing>,
    /// Hands a delivery an admin retries to the workers.
    pub notifier: Arc<dyn latch_core::logout::Notifier>,
    /// The Logout service: every session an admin (or a deletion, or a block) ends.
    pub logout: Arc<latch_core::logout::Logout>,
    /// The front-channel logout page (`latch_slo`'s) the UI's sign-out answers with when other
    /// apps of the session have a front-channel logout URL.
    pub front_channel: Arc<dyn latch_core::logout::FrontChannelPage>,
    /// The issuer, without a trailing slash; the management API's audience is `{issuer}/api/v2/`.
    pub issuer: String,
    /// URLs an admin supplies must pass it (a 400 naming the field otherwise).
    pub outbound: latch_core::net::OutboundPolicy,
}

/// Mounts `/api/v2` (its routes: `api::routes`, each in the OpenAPI document, [`openapi`]).
/// Authentication is configured separately as `web::Data<latch_http::ManagementAuthConfig>`.
pub fn configure(deps: Deps) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        let scope = web::scope("/api/v2")
            // Every body here is `StrictJson`: read no more than it accepts.
            .app_data(web::PayloadConfig::new(latch_http::json::MAX_BODY))
            // Handlers read queries with `StrictQuery`; should actix's own extractors be used,
            // their failures still answer the JSON error naming the parameter.
            .app_data(web::QueryConfig::default().error_handler(latch_http::query::query_error))
            .app_data(web::PathConfig::default().error_handler(latch_http::query::path_error))
            // An unknown path is the JSON 404 (a known path with another method: 405).
            .default_service(web::to(api::unknown_path));
        cfg.app_data(web::Data::new(deps))
            .service(api::register(scope, api::routes()))
            .service(ui::scope());
    }
}

pub use api::client_grants::SCOPES;
pub use api::clients::default_grant_types;
