use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{ClientId, ConnectionId, ConnectionName, SecretString};

/// How a connection signs users in. Names are Auth0's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Latch's own username/password database.
    Auth0,
    /// Any OpenID Connect provider.
    Oidc,
    /// Okta Workforce Identity.
    Okta,
    /// Any SAML 2.0 identity provider.
    Samlp,
}

impl Strategy {
    pub const ALL: [Strategy; 4] = [Self::Auth0, Self::Oidc, Self::Okta, Self::Samlp];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth0 => "auth0",
            Self::Oidc => "oidc",
            Self::Okta => "okta",
            Self::Samlp => "samlp",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Enterprise connections federate to an upstream IdP (and may enable Universal Logout).
    pub fn is_enterprise(self) -> bool {
        !matches!(self, Self::Auth0)
    }

    /// Option keys whose values are secrets: write-only, encrypted at rest, never returned.
    pub fn secret_option_keys(self) -> &'static [&'static str] {
        match self {
            Self::Oidc | Self::Okta => &["client_secret"],
            Self::Auth0 | Self::Samlp => &[],
        }
    }
}

/// An upstream source of users.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub id: ConnectionId,
    pub name: ConnectionName,
    pub display_name: Option<String>,
    pub strategy: Strategy,
    /// Strategy options without the secret ones (JSON object).
    pub options: serde_json::Map<String, serde_json::Value>,
    /// Secret options (`client_secret`), kept apart so they cannot be rendered by accident.
    pub secrets: BTreeMap<String, SecretString>,
    /// Clients this connection serves.
    pub enabled_clients: Vec<ClientId>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// The built-in database connection's name.
pub const DATABASE_CONNECTION: &str = "database";
