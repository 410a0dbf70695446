//! The per-strategy dispatcher: sign-in sees one `RedirectConnector` and logout one
//! `UpstreamLogout`; this sends each connection to the connector of its strategy.

use std::collections::HashMap;

use async_trait::async_trait;
use latch_core::connector::{
    Arrived, FederationError, LogoutStart, RedirectConnector, RedirectStart, UpstreamAnswer,
    UpstreamIdentity, UpstreamLogout, UpstreamLogoutRequest,
};
use latch_core::logout::Continue;
use latch_core::model::{Connection, Strategy};
use latch_core::session::UpstreamSession;
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

impl Upstream {
    fn pick_logout(&self, c: &Connection) -> Option<&dyn UpstreamLogout> {
        match c.strategy {
            Strategy::Okta | Strategy::Oidc => Some(&self.oidc),
            Strategy::Samlp => Some(&self.saml),
            Strategy::Auth0 => None,
        }
    }
}

fn no_upstream() -> FederationError {
    FederationError::Misconfigured("the database connection has no upstream IdP".into())
}

#[async_trait]
impl UpstreamLogout for Upstream {
    async fn logout_request(
        &self,
        c: &Connection,
        latch: &str,
        arrived: Arrived<'_>,
    ) -> Result<UpstreamLogoutRequest, FederationError> {
        self.pick_logout(c)
            .ok_or_else(no_upstream)?
            .logout_request(c, latch, arrived)
            .await
    }

    async fn logout_response(
        &self,
        c: &Connection,
        latch: &str,
        request: &UpstreamLogoutRequest,
        status: &str,
        second: Option<&str>,
    ) -> Result<Continue, FederationError> {
        self.pick_logout(c)
            .ok_or_else(no_upstream)?
            .logout_response(c, latch, request, status, second)
            .await
    }

    async fn start_logout(
        &self,
        c: &Connection,
        latch: &str,
        upstream: &UpstreamSession,
        state: &str,
    ) -> Result<LogoutStart, FederationError> {
        match self.pick_logout(c) {
            Some(l) => l.start_logout(c, latch, upstream, state).await,
            None => Ok(LogoutStart::NotSent(
                "the database connection has no upstream session".into(),
            )),
        }
    }

    async fn finish_logout(
        &self,
        c: &Connection,
        latch: &str,
        arrived: Arrived<'_>,
        saved: &Value,
    ) -> Result<UpstreamAnswer, FederationError> {
        self.pick_logout(c)
            .ok_or_else(no_upstream)?
            .finish_logout(c, latch, arrived, saved)
            .await
    }
}
