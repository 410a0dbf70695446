//! User passwords: argon2id with OWASP's parameters (m = 19 MiB, t = 2, p = 1), stored as PHC
//! strings. Slow on purpose: never use it for high-entropy tokens (see [`crate::token`]).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use latch_core::SecretString;

fn hasher() -> Argon2<'static> {
    #[allow(clippy::expect_used)]
    let params = Params::new(19_456, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) for `password`.
pub fn hash(password: &str) -> Result<SecretString, argon2::password_hash::Error> {
    let mut raw = [0u8; 16];
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| argon2::password_hash::Error::Crypto)?;
    let salt = SaltString::encode_b64(&raw)?;
    Ok(SecretString::new(
        hasher()
            .hash_password(password.as_bytes(), &salt)?
            .to_string(),
    ))
}

/// [`hash`] as core's [`latch_core::users::PasswordHasher`] port: on a blocking thread, so the
/// argon2id work (tens of milliseconds of CPU) stays off the async workers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Argon2id;

#[async_trait::async_trait]
impl latch_core::users::PasswordHasher for Argon2id {
    async fn hash(&self, password: &str) -> Result<SecretString, latch_core::users::HashError> {
        let password = SecretString::new(password.to_owned());
        tokio::task::spawn_blocking(move || hash(password.expose()))
            .await
            .map_err(|e| latch_core::users::HashError(Box::new(e)))?
            .map_err(|e| latch_core::users::HashError(e.to_string().into()))
    }
}

/// Checks `password` against a stored PHC string. With `None` (no such account) it still does
/// the work of one check, so timing does not tell whether an account exists.
pub fn verify(password: &str, stored: Option<&SecretString>) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| {
        hash("latch-dummy-password")
            .map(|h| h.expose().to_owned())
            .unwrap_or_default()
    });
    let (phc, real) = match stored {
        Some(s) => (s.expose(), true),
        None => (dummy.as_str(), false),
    };
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    hasher()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
        && real
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash("correct horse battery staple").unwrap();
        assert!(h.expose().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("correct horse battery staple", Some(&h)));
        assert!(!verify("Correct horse battery staple", Some(&h)));
        assert!(!verify("latch-dummy-password", None));
        assert_ne!(hash("x").unwrap(), hash("x").unwrap(), "salted");
    }

    #[tokio::test]
    async fn the_port_hashes_as_hash_does() {
        use latch_core::users::PasswordHasher as _;
        let h = Argon2id.hash("correct horse battery staple").await.unwrap();
        assert!(h.expose().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("correct horse battery staple", Some(&h)));
    }
}
