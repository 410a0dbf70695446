use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::SigningAlg;
use crate::{Kid, SecretString};

/// Where a key is in its rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published in JWKS, not yet signing.
    Next,
    /// Signing (one per algorithm).
    Current,
    /// No longer signing, still published until what it signed has expired.
    Previous,
    /// Withdrawn from JWKS.
    Revoked,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Current => "current",
            Self::Previous => "previous",
            Self::Revoked => "revoked",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Next, Self::Current, Self::Previous, Self::Revoked]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// A signing key pair; the private half is encrypted at rest by the store.
#[derive(Debug, Clone, PartialEq)]
pub struct SigningKey {
    pub kid: Kid,
    pub alg: SigningAlg,
    pub state: KeyState,
    /// PKCS#8 PEM.
    pub private_pem: SecretString,
    /// The public JWK as published.
    pub public_jwk: serde_json::Value,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// When a `previous` key may leave the JWKS.
    pub publish_until: Option<OffsetDateTime>,
}
