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
    /// What admins say about the user (Auth0's `app_metadata`); never changed by a sign-in.
    /// `roles` containing `"admin"` opens the admin UI.
    pub app_metadata: serde_json::Map<String, serde_json::Value>,
}

/// The role that opens the admin UI.
pub const ADMIN_ROLE: &str = "admin";
/// The username of the admin created on first start (the subject of its database identity).
pub const ADMIN_USERNAME: &str = "admin";

impl User {
    pub fn roles(&self) -> impl Iterator<Item = &str> {
        self.app_metadata
            .get("roles")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
    }

    pub fn is_admin(&self) -> bool {
        !self.blocked && self.roles().any(|r| r == ADMIN_ROLE)
    }
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
