//! Other issuers (an upstream IdP, Okta for Universal Logout): their discovery documents and
//! JWKS, fetched through the outbound policy (`latch_core::net::Fetch`) and cached on the
//! `Clock`, and the verification of the JWTs they sign.
//!
//! **Invariant:** every foreign token Latch accepts is checked here ([`RemoteKeys::verify`], or
//! [`RemoteKeys::verify_signature`] for ID tokens whose claims openidconnect checks): a
//! signature with an allow-listed asymmetric algorithm ([`REMOTE_ALGORITHMS`]) by a key of the
//! issuer's JWKS used with its own algorithm, then `iss`, `aud`, `typ`, the required claims
//! (`jti` among them where replay matters) and the lifetime ([`Expectations`]). A token whose
//! `kid` is not in the cached set, or whose signature fails under the cached key, makes the cache
//! refetch that JWKS, at most once per [`REFETCH_EVERY`] per URL and one fetch at a time, so a
//! rotated key is picked up without letting garbage tokens hammer the issuer. Failures are cached
//! too, with backoff up to [`MAX_BACKOFF`] ([`Cache`]). Nothing fetched is quoted in an error.

mod cache;
mod claims;
mod jws;
mod keys;

pub use cache::{Cache, MAX_AGE, MAX_BACKOFF, REFETCH_EVERY};
pub use claims::{Claims, Expectations, Lifetime, Typ, VerifyError, check_claims, check_header};
pub use jws::{
    REMOTE_ALGORITHMS, SignatureError, check_key_algorithm, find_key, select_key, verify_with_jwks,
};
pub use keys::{KeySource, RemoteError, RemoteKeys};

#[cfg(test)]
mod tests;
