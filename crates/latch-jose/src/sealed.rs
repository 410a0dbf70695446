//! Opaque access tokens: the claims sealed with AES-256-GCM-SIV under a key derived (HKDF-SHA256)
//! from Latch's master key, so every instance sharing that key can open them and nobody else can
//! read or forge them. Auth0's convention: an access token whose only audience is Latch's own
//! `/userinfo` is opaque; tokens for an API stay JWTs (RFC 9068). One seal costs a microsecond,
//! where an RS256 signature costs hundreds.
//!
//! Format: `lat1.` + base64url(nonce ‖ ciphertext ‖ tag). GCM-SIV keeps a repeated random nonce
//! from being catastrophic.

use aws_lc_rs::aead::{AES_256_GCM_SIV, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

const PREFIX: &str = "lat1.";
const INFO: &[u8] = b"latch access token v1";
/// Tokens longer than this are not even decoded.
const MAX_LEN: usize = 8 * 1024;

pub struct TokenSealer {
    key: RandomizedNonceKey,
}

impl std::fmt::Debug for TokenSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSealer([redacted])")
    }
}

struct Len(usize);

impl aws_lc_rs::hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

impl TokenSealer {
    /// Derives the sealing key from the 32-byte master key.
    pub fn derive(master_key: &[u8]) -> Self {
        Self::derive_for(master_key, INFO)
    }

    /// A key for another purpose (`info` names it, HKDF-SHA256): what one key seals, another
    /// does not open.
    pub fn derive_for(master_key: &[u8], info: &[u8]) -> Self {
        let prk = Salt::new(HKDF_SHA256, b"latch").extract(master_key);
        let mut raw = [0u8; 32];
        prk.expand(&[info], Len(32))
            .and_then(|okm| okm.fill(&mut raw))
            .expect("HKDF output of 32 bytes");
        let key = RandomizedNonceKey::new(&AES_256_GCM_SIV, &raw).expect("a 256-bit key");
        Self { key }
    }

    /// Seals `claims` into an opaque token.
    pub fn seal(&self, claims: &Value) -> String {
        let mut buf = serde_json::to_vec(claims).expect("JSON claims serialise");
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(PREFIX.as_bytes()), &mut buf)
            .expect("sealing cannot fail with a valid key");
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&buf);
        let mut s = String::from(PREFIX);
        URL_SAFE_NO_PAD.encode_string(out, &mut s);
        s
    }

    /// The claims of a token this key sealed, or `None` for anything else. Expiry and audience
    /// are the caller's to check.
    pub fn open(&self, token: &str) -> Option<Value> {
        if token.len() > MAX_LEN {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(token.strip_prefix(PREFIX)?).ok()?;
        if raw.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(PREFIX.as_bytes()), &mut buf)
            .ok()?;
        serde_json::from_slice(plain).ok()
    }

    /// Whether `token` looks like one of these (before any check).
    pub fn is_sealed(token: &str) -> bool {
        token.starts_with(PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_and_nothing_else_opens() {
        let a = TokenSealer::derive(&[7u8; 32]);
        let b = TokenSealer::derive(&[8u8; 32]);
        let claims = json!({"sub": "auth0|x", "exp": 10});
        let t = a.seal(&claims);
        assert!(TokenSealer::is_sealed(&t));
        assert_eq!(a.open(&t), Some(claims.clone()));
        // Two seals of the same claims differ (random nonce).
        assert_ne!(a.seal(&claims), t);
        // Another key, a flipped byte, a truncation, a foreign string: nothing.
        assert_eq!(b.open(&t), None);
        let mut bytes = t.clone().into_bytes();
        let last = bytes.len() - 5;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(a.open(&String::from_utf8(bytes).unwrap_or_default()), None);
        assert_eq!(a.open(&t[..t.len() - 4]), None);
        assert_eq!(a.open("eyJhbGciOiJub25lIn0.e30."), None);
        assert_eq!(a.open("lat1."), None);
    }
}
