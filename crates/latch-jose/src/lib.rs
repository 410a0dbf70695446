//! Latch's cryptography, on aws-lc-rs (one crypto stack for the product):
//! - [`token`]: opaque high-entropy tokens (client secrets, refresh tokens, codes, session
//!   handles) and the SHA-256 digests they are stored under;
//! - [`keys`] and [`KeyRing`]: signing keys (RS256, ES256, EdDSA), rotation, the JWKS, JWS
//!   signing with key pairs parsed once, and verification through `jsonwebtoken`;
//! - [`password`]: argon2id for user passwords (and only for them).

pub mod keys;
pub mod password;
mod ring;
mod sealed;
pub mod token;

pub use ring::{JoseError, KeyRing, RELOAD_EVERY, UNKNOWN_KID_RELOAD_GAP, VerifyOptions};
pub use sealed::TokenSealer;
pub use token::{constant_eq, pkce_s256, random_alnum, random_token, token_digest, verify_token};
