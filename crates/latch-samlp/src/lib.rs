//! Latch as a SAML 2.0 identity provider for apps (Auth0's SAML2 Web App addon: a client with
//! `addons.samlp`), and SAML Single Logout with them. Auth0's URLs:
//!
//! - `GET /samlp/metadata/{client_id}`: the IdP metadata the SP imports;
//! - `GET|POST /samlp/{client_id}`: the SingleSignOnService. An AuthnRequest (HTTP-Redirect or
//!   HTTP-POST; signed with the addon's `signingCert` when one is set) is checked here and handed
//!   to `latch-login` as a protocol-neutral sign-in; [`SamlpCompletion`] answers with a signed
//!   Response POSTed to the ACS by an auto-submitting form;
//! - `GET|POST /samlp/{client_id}/logout`: the SingleLogoutService. A LogoutRequest from the app
//!   ends the session it names through the Logout service, the logout page tells every other app,
//!   and the app gets a signed LogoutResponse; a LogoutResponse (to a LogoutRequest a logout page
//!   sent) is checked and logged.
//!
//! **Invariants:** nothing is read from a message before its signature is verified when the app
//! has a certificate; the ACS is the addon's `recipient` or one of the client's `callbacks`,
//! never a URL only the request names; a LogoutRequest ID is accepted once.

mod completion;
mod metadata;
mod slo;
mod sso;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use latch_core::logout::{FrontChannelPage, Logout};
use latch_core::model::{Client, SamlpAddon};
use latch_core::session::SessionStore;
use latch_core::store::Store;
use latch_core::{ClientId, Clock};
use latch_saml::keys::IdpKeys;

pub use completion::SamlpCompletion;

/// Auth0's URLs, under the issuer.
pub mod paths {
    /// `{client_id}` follows.
    pub const METADATA: &str = "/samlp/metadata/{client_id}";
    pub const SSO: &str = "/samlp/{client_id}";
    pub const SLO: &str = "/samlp/{client_id}/logout";

    pub fn sso(client_id: &str) -> String {
        format!("/samlp/{client_id}")
    }
    pub fn slo(client_id: &str) -> String {
        format!("/samlp/{client_id}/logout")
    }
    pub fn metadata(client_id: &str) -> String {
        format!("/samlp/metadata/{client_id}")
    }
}

/// What the SAML endpoints need.
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub sessions: Arc<dyn SessionStore>,
    pub clock: Arc<dyn Clock>,
    /// The issuer, without a trailing slash; also Latch's IdP entity id.
    pub issuer: String,
    pub keys: Arc<IdpKeys>,
    pub login: latch_login::Login,
    pub logout: Arc<Logout>,
    pub front_channel: Arc<dyn FrontChannelPage>,
    pub secure_cookies: bool,
}

impl Deps {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// The client if it is a SAML app.
    async fn saml_app(
        &self,
        client_id: &str,
    ) -> Result<Option<(Client, SamlpAddon)>, latch_http::ApiError> {
        let Some(client) = self.store.find_client(&ClientId::new(client_id)).await? else {
            return Ok(None);
        };
        Ok(client.addons.samlp.clone().map(|a| (client, a)))
    }
}

/// The largest form the SSO and SLO endpoints read (a POSTed AuthnRequest or logout message,
/// base64 of at most `latch_saml::MAX_MESSAGE_BYTES` of XML, and its RelayState).
pub const MAX_FORM: usize = 512 * 1024;

/// Mounts the metadata, SSO and SLO endpoints.
pub fn configure(deps: Deps) -> impl FnOnce(&mut web::ServiceConfig) {
    let deps = web::Data::new(deps);
    move |cfg| {
        cfg.service(
            web::resource(paths::METADATA)
                .app_data(deps.clone())
                .route(web::get().to(metadata::get_metadata)),
        )
        .service(
            web::resource(paths::SSO)
                .app_data(deps.clone())
                .app_data(web::FormConfig::default().limit(MAX_FORM))
                .route(web::get().to(sso::get_sso))
                .route(web::post().to(sso::post_sso)),
        )
        .service(
            web::resource(paths::SLO)
                .app_data(deps)
                .app_data(web::FormConfig::default().limit(MAX_FORM))
                .route(web::get().to(slo::get_slo))
                .route(web::post().to(slo::post_slo)),
        );
    }
}

/// The longest RelayState Latch carries. SAML bindings §3.4.3 and §3.5.3 say 80 bytes; SPs
/// that put a URL there exceed it, so Latch allows more, but not without bound (it is stored
/// with the sign-in and echoed in URLs).
pub const MAX_RELAY_STATE: usize = 1024;

/// Refuses a message larger than `max` bytes of XML or with an over-long RelayState.
pub(crate) fn bounded(m: &latch_saml::idp::Inbound, max: usize) -> Result<(), &'static str> {
    if m.xml.len() > max {
        return Err("the message is too large");
    }
    if m.relay_state
        .as_ref()
        .is_some_and(|r| r.len() > MAX_RELAY_STATE)
    {
        return Err("RelayState is too long");
    }
    Ok(())
}

/// The XML of `m` Latch may read: with the app's `signingCert`, only what a signature by it
/// covers (an unsigned message is refused: "this application's {what} must be signed"); without
/// one, the message as it came.
pub(crate) fn believed(
    m: &latch_saml::idp::Inbound,
    addon: &SamlpAddon,
    what: &str,
) -> Result<String, String> {
    let Some(pem) = &addon.signing_cert else {
        return Ok(m.xml.clone());
    };
    let cert = latch_saml::parse_certificate(pem).map_err(|e| e.to_string())?;
    if !m.is_signed() {
        return Err(format!("this application's {what} must be signed"));
    }
    m.verified_xml(&cert).map_err(|e| e.to_string())
}

/// A POSTed message sent on to `path` as a GET (303), the XML deflated into the query as the
/// HTTP-Redirect binding carries it, with its enveloped signature (if any) still inside.
pub(crate) fn see_other_with(
    path: &str,
    m: &latch_saml::idp::Inbound,
    field: &str,
    connection: Option<&str>,
) -> HttpResponse {
    let mut query = match m.as_redirect_query(field) {
        Ok(q) => q,
        Err(e) => return refused(path, &e.to_string()),
    };
    if let Some(c) = connection.filter(|c| !c.is_empty()) {
        query.push('&');
        query.push_str(
            &url::form_urlencoded::Serializer::new(String::new())
                .append_pair("connection", c)
                .finish(),
        );
    }
    HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, format!("{path}?{query}")))
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}

/// A 400 page: a SAML request Latch will not act on. The reason is shown (it names what the SP
/// got wrong, never a secret) and logged.
pub(crate) fn refused(client_id: &str, why: &str) -> HttpResponse {
    tracing::info!(client_id, reason = why, "SAML request refused");
    latch_login::pages::error(StatusCode::BAD_REQUEST, "Sign-in failed", why)
}

pub(crate) fn not_a_saml_app() -> HttpResponse {
    latch_login::pages::error(
        StatusCode::NOT_FOUND,
        "Unknown application",
        "No SAML application is registered with this id.",
    )
}
