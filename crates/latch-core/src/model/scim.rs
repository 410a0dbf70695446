//! Inbound SCIM 2.0 per connection (Auth0's `scim-configuration` API): a connection's SCIM
//! configuration, its bearer tokens, and what Latch keeps of each user a SCIM client
//! provisioned (RFC 7643 `User`: `userName`, `externalId`, the rest of the resource as sent).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{ConnectionId, TokenDigest, UserId};

/// The scopes a SCIM token may hold (Auth0's).
pub const SCIM_SCOPES: [&str; 5] = [
    "get:users",
    "post:users",
    "put:users",
    "patch:users",
    "delete:users",
];

/// The default `user_id_attribute`: the SCIM attribute whose value is the user's upstream
/// subject in the connection.
pub const DEFAULT_SCIM_USER_ID_ATTRIBUTE: &str = "externalId";

/// The issuer recorded on an identity a SCIM client created before the user's first sign-in
/// (the connection's upstream issuer may not be known yet: a SAML IdP's entity id comes from its
/// metadata). The first sign-in through the connection with the same subject claims it.
pub const SCIM_ISSUER: &str = "urn:latch:scim";

/// SCIM on one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScimConfig {
    pub connection_id: ConnectionId,
    /// `externalId` (default), `userName`, or another attribute path of the User resource.
    pub user_id_attribute: String,
    /// Auth0's `mapping`: `[{"auth0": "<user field>", "scim": "<SCIM attribute path>"}]`.
    pub mapping: serde_json::Value,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A SCIM bearer token of one connection; only its digest is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimToken {
    pub token_id: String,
    pub connection_id: ConnectionId,
    pub digest: TokenDigest,
    pub scopes: Vec<String>,
    pub created_at: OffsetDateTime,
    /// `None`: does not expire.
    pub valid_until: Option<OffsetDateTime>,
}

impl ScimToken {
    pub fn is_valid(&self, now: OffsetDateTime) -> bool {
        self.valid_until.is_none_or(|t| t > now)
    }

    pub fn allows(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// What Latch keeps of a SCIM-provisioned user of one connection, beside the [`User`] and its
/// [`Identity`](super::Identity).
///
/// [`User`]: super::User
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimUser {
    pub connection_id: ConnectionId,
    pub user_id: UserId,
    /// As sent; unique within the connection, case-insensitively (RFC 7643 §4.1.1).
    pub user_name: String,
    /// Unique within the connection when set (case-sensitive).
    pub external_id: Option<String>,
    pub active: bool,
    /// The rest of the resource as the client sent it (`name`, `displayName`, `emails`, …),
    /// without `id`, `meta` and `schemas`.
    pub resource: serde_json::Map<String, serde_json::Value>,
    /// Bumped on every write: `meta.version` and the `ETag`.
    pub version: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// The one attribute equality a SCIM user search uses (what `Users?filter=` reduces to when it
/// names one of these; other filters are evaluated over the page in memory by the SCIM server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScimLookup {
    /// Every user of the connection.
    All,
    /// `userName eq "…"` (case-insensitive).
    UserName(String),
    /// `externalId eq "…"`.
    ExternalId(String),
    /// `emails[…].value eq "…"` / `emails.value eq "…"`: the user's email (case-insensitive).
    Email(String),
}
