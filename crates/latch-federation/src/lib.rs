//! Upstream connections: the database connection (strategy `auth0`, Latch's own users with
//! argon2id passwords), Okta and generic OpenID Connect IdPs (`okta`, `oidc`) and SAML IdPs
//! (`samlp`). Each implements a `latch_core::connector` port, so the login flow
//! never knows which strategy it talks to.

pub mod backchannel_in;
pub mod database;
pub mod oidc;
pub mod saml;
mod upstream;

pub use database::DatabaseConnector;
pub use oidc::OidcConnector;
pub use saml::SamlConnector;
pub use upstream::Upstream;
