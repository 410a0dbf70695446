//! Opaque high-entropy tokens and the digests they are stored under.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latch_core::TokenDigest;

/// A fresh random token of `bytes` bytes, base64url without padding.
///
/// # Panics
/// If the operating system's random number generator fails, which leaves nothing safe to do.
#[allow(clippy::expect_used)]
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buf)
        .expect("system random number generator failed");
    URL_SAFE_NO_PAD.encode(buf)
}

/// A random identifier of `len` characters from `[a-zA-Z0-9]` (Auth0-style client ids).
#[allow(clippy::expect_used)]
pub fn random_alnum(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let rng = SystemRandom::new();
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        rng.fill(&mut buf)
            .expect("system random number generator failed");
        // 248 = 4 * 62: rejecting larger bytes keeps every character equally likely.
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() == len {
                break;
            }
            out.push(ALPHABET[usize::from(*b) % 62] as char);
        }
    }
    out
}

/// The digest a token is stored and looked up under: base64url(SHA-256(token)).
pub fn token_digest(token: &str) -> TokenDigest {
    TokenDigest::new(URL_SAFE_NO_PAD.encode(digest(&SHA256, token.as_bytes())))
}

/// Does `token` hash to `stored`? Compared in constant time.
pub fn verify_token(token: &str, stored: &TokenDigest) -> bool {
    let d = token_digest(token);
    verify_slices_are_equal(d.as_str().as_bytes(), stored.as_str().as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_verify() {
        let a = random_token(32);
        let b = random_token(32);
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        let d = token_digest(&a);
        assert!(verify_token(&a, &d));
        assert!(!verify_token(&b, &d));
        assert_ne!(d.as_str(), a);
    }

    #[test]
    fn alnum_ids() {
        let id = random_alnum(32);
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(id, random_alnum(32));
    }
}

/// PKCE `S256`: base64url(SHA-256(verifier)) (RFC 7636 §4.2).
pub fn pkce_s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()))
}

/// Constant-time string equality.
pub fn constant_eq(a: &str, b: &str) -> bool {
    verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

#[cfg(test)]
mod pkce_tests {
    #[test]
    fn rfc7636_appendix_b() {
        assert_eq!(
            super::pkce_s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
