//! Pure JWS checks against another issuer's JWK set: which key signed a token, and whether its
//! signature holds. No I/O; `fuzz/` fuzzes [`verify_with_jwks`].

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Header};

/// Asymmetric algorithms accepted from other issuers. Never `none`, never HMAC (a public key is
/// not a shared secret).
pub const REMOTE_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Why [`verify_with_jwks`] (or [`select_key`]) refused a token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SignatureError {
    #[error("not a compact JWS")]
    Malformed,
    #[error("algorithm {0:?} is not allowed")]
    Algorithm(Algorithm),
    #[error("no key {0:?} in the issuer's JWKS")]
    UnknownKey(Option<String>),
    #[error("the key is not for algorithm {0:?}")]
    KeyAlgorithm(Algorithm),
    #[error("the key cannot be used: {0}")]
    Key(String),
    #[error("bad signature")]
    Invalid,
}

/// The signing key named `kid` in `jwks` (encryption keys never count); without a `kid`, the
/// set's only signing key. `None` when there is no such key: the set may be stale.
pub fn find_key<'a>(jwks: &'a JwkSet, kid: Option<&str>) -> Option<&'a Jwk> {
    let mut signing = jwks
        .keys
        .iter()
        .filter(|k| !matches!(k.common.public_key_use, Some(PublicKeyUse::Encryption)));
    match kid {
        Some(kid) => signing.find(|k| k.common.key_id.as_deref() == Some(kid)),
        // Without a kid, only an unambiguous set will do.
        None => match (signing.next(), signing.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        },
    }
}

/// Checks that `jwk`, when it names an algorithm, names `alg`: a key is used with its own
/// algorithm only.
pub fn check_key_algorithm(jwk: &Jwk, alg: Algorithm) -> Result<(), SignatureError> {
    match jwk.common.key_algorithm {
        Some(ka) if format!("{ka:?}") != format!("{alg:?}") => {
            Err(SignatureError::KeyAlgorithm(alg))
        }
        _ => Ok(()),
    }
}

/// The key in `jwks` that signed a token with `header` ([`find_key`], then
/// [`check_key_algorithm`]).
pub fn select_key<'a>(jwks: &'a JwkSet, header: &Header) -> Result<&'a Jwk, SignatureError> {
    let kid = header.kid.as_deref();
    let jwk =
        find_key(jwks, kid).ok_or_else(|| SignatureError::UnknownKey(kid.map(str::to_owned)))?;
    check_key_algorithm(jwk, header.alg)?;
    Ok(jwk)
}

/// Checks the signature of a compact JWS against a JWK set, the header's `alg` being one of
/// `allowed` and of [`REMOTE_ALGORITHMS`], and the key's own `alg`, when given, the same.
/// Claims are the caller's to check. Uses aws-lc, like every signature check in Latch.
pub fn verify_with_jwks(
    token: &str,
    jwks: &JwkSet,
    allowed: &[Algorithm],
) -> Result<(), SignatureError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SignatureError::Malformed);
    };
    let header = jsonwebtoken::decode_header(token).map_err(|_| SignatureError::Malformed)?;
    if !allowed.contains(&header.alg) || !REMOTE_ALGORITHMS.contains(&header.alg) {
        return Err(SignatureError::Algorithm(header.alg));
    }
    let jwk = select_key(jwks, &header)?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| SignatureError::Key(e.to_string()))?;
    let message = &token[..h.len() + 1 + p.len()];
    match jsonwebtoken::crypto::verify(sig, message.as_bytes(), &key, header.alg) {
        Ok(true) => Ok(()),
        _ => Err(SignatureError::Invalid),
    }
}
