use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

use crate::{ClientId, TokenDigest};

/// Auth0's application types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppType {
    RegularWeb,
    Spa,
    Native,
    NonInteractive,
}

impl AppType {
    pub fn is_public(self) -> bool {
        matches!(self, Self::Spa | Self::Native)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    None,
}

/// JWS algorithms Latch signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlg {
    RS256,
    ES256,
    EdDSA,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::RS256, Self::ES256, Self::EdDSA]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

/// Lifetimes of what Latch issues to a client, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenLifetimes {
    pub id_token: i64,
    pub access_token: i64,
    /// Absolute lifetime of a refresh token family.
    pub refresh_token: i64,
    /// Idle lifetime: a refresh token unused this long expires.
    pub refresh_token_idle: i64,
}

impl Default for TokenLifetimes {
    fn default() -> Self {
        Self {
            id_token: 36_000,
            access_token: 86_400,
            refresh_token: 2_592_000,
            refresh_token_idle: 1_296_000,
        }
    }
}

/// The admin UI's own client: the UI signs admins in through Latch like any app.
pub const ADMIN_CLIENT_ID: &str = "latch-admin";
/// Where the admin UI receives its authorization code (under the issuer).
pub const ADMIN_CALLBACK_PATH: &str = crate::paths::ADMIN_CALLBACK;

/// How a client wants to hear about logouts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OidcLogout {
    pub backchannel_logout_urls: Vec<Url>,
    pub backchannel_logout_session_required: bool,
    pub frontchannel_logout_url: Option<Url>,
    pub frontchannel_logout_session_required: bool,
}

/// A stored client secret: only its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSecret {
    pub digest: TokenDigest,
    pub created_at: OffsetDateTime,
}

/// An application that signs users in through Latch.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    pub client_id: ClientId,
    pub name: String,
    pub description: Option<String>,
    pub app_type: AppType,
    pub callbacks: Vec<Url>,
    pub allowed_logout_urls: Vec<Url>,
    pub web_origins: Vec<Url>,
    pub grant_types: Vec<GrantType>,
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    pub signing_alg: SigningAlg,
    pub lifetimes: TokenLifetimes,
    pub oidc_logout: OidcLogout,
    /// Digests of the client's secrets (none for public clients).
    pub secrets: Vec<ClientSecret>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// Permission for a client to get `client_credentials` tokens for an API (Auth0's client grant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientGrant {
    pub id: String,
    pub client_id: ClientId,
    /// The API's identifier; today only the management API, `{issuer}/api/v2/`.
    pub audience: String,
    pub scope: Vec<String>,
    pub created_at: OffsetDateTime,
}
