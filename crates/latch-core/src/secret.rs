//! Secrets that cannot leak through `Debug`, `Display` or tracing.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::SessionId;

/// A string that must never be printed. `Debug` shows `[redacted]`; read it with [`expose`](Self::expose).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself. Call it only where the value is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// The secret handle of a browser session: the `latch_session` cookie's value, and nowhere else.
/// Latch keeps only its digest, the [`SessionId`] ([`SessionSecret::id`]), so nothing at rest
/// (session store, database, logs) opens a session. `Debug` redacts it, and it has no `Display`
/// or `Serialize`, so it cannot be logged or stored by accident.
#[derive(Clone)]
pub struct SessionSecret(String);

impl SessionSecret {
    /// Wraps a secret: a new random one, or a cookie's value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the cookie (or a value derived from it, such as a CSRF token).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The id the session is stored and looked up under: base64url(SHA-256(secret)). Computed
    /// here and nowhere else.
    pub fn id(&self) -> SessionId {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.0.as_bytes());
        SessionId::new(URL_SAFE_NO_PAD.encode(d))
    }
}

impl fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSecret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_secret_redacts_and_digests() {
        let s = SessionSecret::new("the-cookie-value");
        assert_eq!(format!("{s:?}"), "SessionSecret([redacted])");
        // base64url(SHA-256("the-cookie-value")), as `latch_jose::token_digest` computes it.
        let id = s.id();
        assert_eq!(id.as_str().len(), 43);
        assert_ne!(id.as_str(), s.expose());
        assert_eq!(id, SessionSecret::new("the-cookie-value").id());
        assert_ne!(id, SessionSecret::new("the-cookie-valuf").id());
        assert_eq!(
            SessionSecret::new("abc").id().as_str(),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
    }
}
