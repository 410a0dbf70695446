//! The per-strategy dispatcher: sign-in sees one `RedirectConnector`, this sends each connection
//! to the connector of its strategy.

use std::collections::HashMap;

use async_trait::async_trait;
use latch_core::connector::{FederationError, RedirectConnector, RedirectStart, UpstreamIdentity};
use latch_core::model::{Connection, Strategy};
use serde_json::Value;

use crate::{OidcConnector, SamlConnector};

/// Sends each connection to the connector of its strategy.
pub struct Upstream {
    pub oidc: OidcConnector,
    pub saml: SamlConnector,
}

impl Upstream {
    fn pick(&self, c: &Connection) -> Result<&dyn RedirectConnector, FederationError> {
        match c.strategy {
            Strategy::Okta | Strategy::Oidc => Ok(&self.oidc),
            Strategy::Samlp => Ok(&self.saml),
            Strategy::Auth0 => Err(FederationError::Misconfigured(
                "the database connection does not redirect".into(),
            )),
        }
    }
}

#[async_trait]
impl RedirectConnector for Upstream {
    async fn start(
        &self,
        connection: &Connection,
        latch: &str,
        state: &str,
    ) -> Result<RedirectStart, FederationError> {
        self.pick(connection)?.start(connection, latch, state).await
    }

    async fn finish(
        &self,
        connection: &Connection,
        latch: &str,
        params: &HashMap<String, String>,
        saved: &Value,
    ) -> Result<UpstreamIdentity, FederationError> {
        self.pick(connection)?
            .finish(connection, latch, params, saved)
            .await
    }
}
