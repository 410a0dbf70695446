use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{ConnectionId, SecretString, UserId};

/// A person known to Latch.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub user_id: UserId,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub nickname: Option<String>,
    pub picture: Option<String>,
    /// Extra profile claims from the upstream (JSON object).
    pub profile: serde_json::Map<String, serde_json::Value>,
    pub blocked: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub last_login: Option<OffsetDateTime>,
    pub logins_count: i64,
}

/// How a user is known to one connection: keyed by (connection, upstream issuer, upstream subject).
/// Email is an attribute, never a key.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub user_id: UserId,
    pub connection_id: ConnectionId,
    /// The upstream issuer (`iss`, SAML IdP entity id, or Latch's own issuer for the database).
    pub issuer: String,
    /// The upstream subject (`sub` or SAML NameID).
    pub subject: String,
    /// Argon2id PHC string for database-connection identities; `None` for federated ones.
    pub password_hash: Option<SecretString>,
    pub profile: serde_json::Map<String, serde_json::Value>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A search over users.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UserQuery {
    /// Matches email or name (case-insensitive substring).
    pub q: Option<String>,
    pub page: u32,
    pub per_page: u32,
}
