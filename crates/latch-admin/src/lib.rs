//! The management API (`/api/v2`, shaped as Auth0's Management API v2) and the admin web UI
//! (`/admin`, see [`ui`]).
//!
//! **Boundary:** admin routes are mounted only through [`configure`], under `/api/v2`; handlers
//! reach the stores through `latch_core` traits.

mod api;
mod audit;
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
    pub notifier: Arc<dyn latch_core::logout::Notifier>,
    /// The issuer, without a trailing slash; the management API's audience is `{issuer}/api/v2/`.
    pub issuer: String,
}

/// Mounts `/api/v2`. Authentication is configured separately as
/// `web::Data<latch_http::ManagementAuthConfig>`.
pub fn configure(deps: Deps) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(deps))
            .service(
                web::scope("/api/v2")
                    .service(api::connections::scope())
                    .service(api::clients::scope())
                    .service(api::users::scope())
                    .service(api::users::by_email_scope())
                    .service(api::keys::scope())
                    .service(api::client_grants::scope())
                    .service(api::logs::scope()),
            )
            .service(ui::scope());
    }
}

pub use api::client_grants::SCOPES;
pub use api::clients::default_grant_types;
