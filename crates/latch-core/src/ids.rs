//! Every protocol identifier is a newtype: no bare `String` crosses a crate boundary.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A user's id, e.g. `auth0|01J…` or `oidc|01J…`; the `sub` of every token Latch issues.
    UserId
);
string_id!(
    /// A connection's id (`con_…`), stable across renames.
    ConnectionId
);
string_id!(
    /// A connection's unique, URL-safe name (`database`, `acme-okta`): it appears in URLs.
    ConnectionName
);
string_id!(
    /// An OAuth client id.
    ClientId
);
string_id!(
    /// A browser session's id: base64url(SHA-256) of the session's secret (the cookie's value,
    /// [`SessionSecret`](crate::SessionSecret)), from [`SessionSecret::id`](crate::SessionSecret::id).
    /// The session store's key and what refresh tokens and codes record; it does not open the
    /// session, so it may be stored. Never sent to an app.
    SessionId
);
string_id!(
    /// The OIDC session id (`sid` claim) issued to apps for a session.
    Sid
);
string_id!(
    /// A signing key id (`kid`).
    Kid
);
string_id!(
    /// A JWT id (`jti`).
    Jti
);
string_id!(
    /// A log event id.
    LogId
);
string_id!(
    /// An outbox delivery id.
    DeliveryId
);
string_id!(
    /// A refresh token record id (not the token: tokens are stored only as digests).
    RefreshTokenId
);
string_id!(
    /// The rotation family a refresh token belongs to.
    FamilyId
);
string_id!(
    /// A short-lived login transaction (upstream `state`).
    LoginTxId
);
string_id!(
    /// The digest of an opaque token (authorization code, refresh token, client secret).
    TokenDigest
);
