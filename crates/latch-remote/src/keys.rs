//! [`RemoteKeys`]: other issuers' discovery documents and JWKS, fetched through the core
//! [`Fetch`] port and cached ([`Cache`]), and the one verification of the tokens they sign.

use std::sync::Arc;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Header};
use latch_core::Clock;
use latch_core::net::{Fetch, FetchError};
use serde_json::Value;

use crate::cache::Cache;
use crate::claims::{Claims, Expectations, Typ, VerifyError, check_claims, check_header};
use crate::jws::{find_key, select_key, verify_with_jwks};

/// Why a document of another issuer could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    #[error("fetching {0} failed: {1}")]
    Fetch(String, FetchError),
    /// The answer is not what was expected; the text never quotes the answer.
    #[error("{0} is not {1}")]
    Document(String, &'static str),
}

/// Where an issuer's signing keys are published.
#[derive(Debug, Clone, Copy)]
pub enum KeySource<'a> {
    /// At this JWKS URL.
    Jwks(&'a str),
    /// At the `jwks_uri` of the discovery document at this URL.
    Discovery(&'a str),
}

/// Cached discovery documents and key sets of other issuers (upstream IdPs, Okta for Universal
/// Logout), and the checks of the tokens they sign. **Invariant:** a token's key comes from the
/// cached set, refetched (at most every [`REFETCH_EVERY`](crate::REFETCH_EVERY) per URL, one
/// fetch at a time) when the set does not hold the token's `kid` or the signature fails under
/// the cached key; nothing fetched is quoted in an error.
pub struct RemoteKeys {
    http: Arc<dyn Fetch>,
    jwks: Cache<Arc<JwkSet>, RemoteError>,
    discovery: Cache<Value, RemoteError>,
}

impl RemoteKeys {
    /// Fetching through `http` (the outbound policy), caching on `clock`.
    pub fn new(http: Arc<dyn Fetch>, clock: Arc<dyn Clock>) -> Self {
        Self {
            http,
            jwks: Cache::new(clock.clone()),
            discovery: Cache::new(clock),
        }
    }

    async fn get_json(&self, url: &str) -> Result<Value, RemoteError> {
        let body = self
            .http
            .get(url, "application/json")
            .await
            .map_err(|e| RemoteError::Fetch(url.into(), e))?;
        serde_json::from_slice(&body).map_err(|_| RemoteError::Document(url.into(), "JSON"))
    }

    /// The discovery document at `discovery_url` (`{issuer}/.well-known/openid-configuration`),
    /// cached an hour.
    pub async fn discovery(&self, discovery_url: &str) -> Result<Value, RemoteError> {
        self.discovery
            .get(discovery_url, |_| true, || self.get_json(discovery_url))
            .await
    }

    async fn fetch_jwks(&self, url: &str) -> Result<Arc<JwkSet>, RemoteError> {
        let v = self.get_json(url).await?;
        let set: JwkSet = serde_json::from_value(v)
            .map_err(|_| RemoteError::Document(url.into(), "a JWK set"))?;
        Ok(Arc::new(set))
    }

    /// The JWK set at `url`, cached an hour (fetched when not cached). For callers that want a
    /// broken or refused JWKS to fail early (the OpenID Connect connector's discovery); tokens are
    /// checked with [`verify`](Self::verify) or [`verify_signature`](Self::verify_signature).
    pub async fn jwks(&self, url: &str) -> Result<Arc<JwkSet>, RemoteError> {
        self.jwks.get(url, |_| true, || self.fetch_jwks(url)).await
    }

    /// The JWKS URL `source` names.
    pub async fn jwks_url(&self, source: KeySource<'_>) -> Result<String, VerifyError> {
        match source {
            KeySource::Jwks(u) => Ok(u.to_owned()),
            KeySource::Discovery(d) => {
                self.discovery(d).await.map_err(VerifyError::Keys)?["jwks_uri"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or(VerifyError::NoJwksUri)
            }
        }
    }

    /// Verifies a token of another issuer: its header ([`check_header`]) before any fetch, the
    /// key from `source` ([`select_key`]: the `kid`, the key's own algorithm), then the signature
    /// and every expectation ([`check_claims`]). Returns the claims.
    pub async fn verify(
        &self,
        token: &str,
        source: KeySource<'_>,
        want: &Expectations<'_>,
    ) -> Result<Claims, VerifyError> {
        let header = check_header(token, want.typ, want.algorithms)?;
        let url = self.jwks_url(source).await?;
        self.with_keys(&url, &header, |set| {
            let jwk = select_key(set, &header)?;
            let key = DecodingKey::from_jwk(jwk).map_err(|_| VerifyError::Key)?;
            check_claims(token, &header, &key, want)
        })
        .await
    }

    /// Checks only the signature of a token of another issuer, by a key from `source`, its
    /// algorithm among `algorithms` ([`verify_with_jwks`]); the claims are the caller's to
    /// check (the OpenID Connect connector's ID tokens, whose claims openidconnect checks).
    pub async fn verify_signature(
        &self,
        token: &str,
        source: KeySource<'_>,
        algorithms: &[Algorithm],
    ) -> Result<(), VerifyError> {
        let header = check_header(token, Typ::Any, algorithms)?;
        let url = self.jwks_url(source).await?;
        self.with_keys(&url, &header, |set| {
            verify_with_jwks(token, set, algorithms).map_err(VerifyError::from)
        })
        .await
    }

    /// Runs `check` on the JWKS at `url`: the cached set when it holds the token's key, else a
    /// refetched one; when `check` fails in a way fresher keys could change, once more on a
    /// refetched set (each refetch subject to the cache's limits).
    async fn with_keys<T>(
        &self,
        url: &str,
        header: &Header,
        check: impl Fn(&JwkSet) -> Result<T, VerifyError>,
    ) -> Result<T, VerifyError> {
        let kid = header.kid.as_deref();
        let fetch = || self.fetch_jwks(url);
        let keys = self
            .jwks
            .get(url, |set| find_key(set, kid).is_some(), fetch)
            .await
            .map_err(VerifyError::Keys)?;
        match check(&keys) {
            Err(e) if e.keys_may_be_stale() => {
                let fresh = self
                    .jwks
                    .get(url, |_| false, fetch)
                    .await
                    .map_err(VerifyError::Keys)?;
                if Arc::ptr_eq(&fresh, &keys) {
                    Err(e)
                } else {
                    check(&fresh)
                }
            }
            other => other,
        }
    }
}
