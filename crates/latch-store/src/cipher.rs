//! Encryption at rest for secrets Latch must be able to read back (upstream client secrets,
//! signing keys): AES-256-GCM with a random 96-bit nonce, as `v1.<base64url(nonce|ciphertext|tag)>`.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The key that protects stored secrets. Build it from the 32-byte master key.
pub struct Cipher {
    key: LessSafeKey,
    rng: SystemRandom,
}

#[derive(Debug, thiserror::Error)]
pub enum CipherError {
    #[error("the master key must be 32 bytes")]
    KeyLength,
    #[error("stored secret is malformed")]
    Malformed,
    #[error("stored secret does not decrypt with this master key (was LATCH_SECRET_KEY changed?)")]
    Decrypt,
    #[error("random number generator failed")]
    Rng,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher([redacted])")
    }
}

impl Cipher {
    pub fn new(master_key: &[u8]) -> Result<Self, CipherError> {
        let unbound =
            UnboundKey::new(&AES_256_GCM, master_key).map_err(|_| CipherError::KeyLength)?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        })
    }

    /// Encrypts `plain`, binding it to `context` (e.g. the row's id) so ciphertexts cannot be
    /// swapped between rows.
    pub fn seal(&self, context: &str, plain: &[u8]) -> Result<String, CipherError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| CipherError::Rng)?;
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| CipherError::Rng)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!("v1.{}", URL_SAFE_NO_PAD.encode(out)))
    }

    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, CipherError> {
        let body = sealed.strip_prefix("v1.").ok_or(CipherError::Malformed)?;
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CipherError::Malformed)?;
        if raw.len() < NONCE_LEN + 16 {
            return Err(CipherError::Malformed);
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CipherError::Malformed)?;
        let mut buf = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| CipherError::Decrypt)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let c = Cipher::new(&[7u8; 32]).unwrap();
        let s = c.seal("con_1", b"hunter2").unwrap();
        assert!(!s.contains("hunter2"));
        assert_eq!(c.open("con_1", &s).unwrap(), b"hunter2");
        assert!(matches!(c.open("con_2", &s), Err(CipherError::Decrypt)));
        let other = Cipher::new(&[8u8; 32]).unwrap();
        assert!(matches!(other.open("con_1", &s), Err(CipherError::Decrypt)));
        assert!(matches!(
            c.open("con_1", "v1.abc"),
            Err(CipherError::Malformed)
        ));
        assert!(Cipher::new(&[0u8; 16]).is_err());
    }
}
