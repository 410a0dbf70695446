//! Keys of other issuers (an upstream IdP, Okta for Universal Logout): discovery and JWKS fetched
//! over HTTP and cached. A token whose `kid` is not in the cached set makes the cache refetch that
//! JWKS at once, at most once per `REFETCH_EVERY` per JWKS URL, so a rotated key is picked up
//! without letting garbage tokens hammer the IdP.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Header};
use serde_json::Value;

/// Refetch a JWKS for an unknown `kid` at most this often.
pub const REFETCH_EVERY: Duration = Duration::from_secs(30);
/// A JWKS is refreshed after this long even when every `kid` is known.
pub const MAX_AGE: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("fetching {0} failed: {1}")]
    Fetch(String, String),
    #[error("{0} is not a valid document: {1}")]
    Document(String, String),
    #[error("no key {0:?} in the issuer's JWKS")]
    UnknownKey(Option<String>),
}

struct Entry {
    keys: Vec<(Option<String>, Jwk)>,
    fetched: Instant,
}

/// Cached discovery documents and key sets of remote issuers.
pub struct RemoteKeys {
    http: reqwest::Client,
    jwks: Mutex<HashMap<String, Entry>>,
    discovery: Mutex<HashMap<String, (Instant, Value)>>,
}

impl RemoteKeys {
    pub fn new(http: reqwest::Client) -> Self {
        Self {
            http,
            jwks: Mutex::default(),
            discovery: Mutex::default(),
        }
    }

    async fn get_json(&self, url: &str) -> Result<Value, RemoteError> {
        let res = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| RemoteError::Fetch(url.into(), e.without_url().to_string()))?;
        if !res.status().is_success() {
            return Err(RemoteError::Fetch(
                url.into(),
                format!("HTTP {}", res.status().as_u16()),
            ));
        }
        res.json()
            .await
            .map_err(|e| RemoteError::Document(url.into(), e.without_url().to_string()))
    }

    /// The issuer's discovery document (`{issuer}/.well-known/openid-configuration`), cached an hour.
    pub async fn discovery(&self, discovery_url: &str) -> Result<Value, RemoteError> {
        if let Some((at, v)) = self
            .discovery
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(discovery_url)
            && at.elapsed() < MAX_AGE
        {
            return Ok(v.clone());
        }
        let v = self.get_json(discovery_url).await?;
        self.discovery
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(discovery_url.into(), (Instant::now(), v.clone()));
        Ok(v)
    }

    async fn fetch_jwks(&self, url: &str) -> Result<(), RemoteError> {
        let v = self.get_json(url).await?;
        let set: JwkSet = serde_json::from_value(v)
            .map_err(|e| RemoteError::Document(url.into(), e.to_string()))?;
        let keys = set
            .keys
            .into_iter()
            .map(|k| (k.common.key_id.clone(), k))
            .collect();
        self.jwks.lock().unwrap_or_else(|p| p.into_inner()).insert(
            url.into(),
            Entry {
                keys,
                fetched: Instant::now(),
            },
        );
        Ok(())
    }

    fn find(&self, url: &str, kid: Option<&str>) -> Option<(Jwk, Instant)> {
        let map = self.jwks.lock().unwrap_or_else(|p| p.into_inner());
        let e = map.get(url)?;
        let k = match kid {
            Some(kid) => e.keys.iter().find(|(k, _)| k.as_deref() == Some(kid)),
            // Without a kid, only an unambiguous set will do.
            None if e.keys.len() == 1 => e.keys.first(),
            None => None,
        };
        k.map(|(_, j)| (j.clone(), e.fetched))
    }

    /// The key that signed a token with `header`, from the JWKS at `url`.
    pub async fn key_for(
        &self,
        url: &str,
        header: &Header,
    ) -> Result<(Jwk, DecodingKey), RemoteError> {
        let kid = header.kid.as_deref();
        let age = self
            .jwks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(url)
            .map(|e| e.fetched.elapsed());
        let stale = age.is_none_or(|a| a > MAX_AGE);
        let mut found = if stale { None } else { self.find(url, kid) };
        if found.is_none() {
            let may_refetch = age.is_none_or(|a| a > REFETCH_EVERY) || stale;
            if may_refetch {
                self.fetch_jwks(url).await?;
            }
            found = self.find(url, kid);
        }
        let (jwk, _) = found.ok_or_else(|| RemoteError::UnknownKey(kid.map(str::to_owned)))?;
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| RemoteError::Document(url.into(), e.to_string()))?;
        Ok((jwk, key))
    }
}

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

/// Why [`verify_with_jwks`] refused a token.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("not a compact JWS")]
    Malformed,
    #[error("algorithm {0:?} is not allowed")]
    Algorithm(Algorithm),
    #[error("no key {0:?} in the issuer's JWKS")]
    UnknownKey(Option<String>),
    #[error("the key cannot be used: {0}")]
    Key(String),
    #[error("bad signature")]
    Invalid,
}

/// Checks the signature of a compact JWS against a JWK set (as JSON), the header's `alg` being
/// one of `allowed` (which must hold asymmetric algorithms only) and the key's own `alg`, when
/// given, the same. Claims are the caller's to check. Uses aws-lc, like every signature check
/// in Latch.
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
    let kid = header.kid.as_deref();
    let candidates: Vec<&Jwk> = jwks
        .keys
        .iter()
        .filter(|k| {
            !matches!(
                k.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            )
        })
        .collect();
    let jwk = match kid {
        Some(kid) => candidates
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid))
            .copied(),
        None if candidates.len() == 1 => candidates.first().copied(),
        None => None,
    }
    .ok_or_else(|| SignatureError::UnknownKey(kid.map(str::to_owned)))?;
    if let Some(key_alg) = jwk.common.key_algorithm
        && key_alg.to_string() != format!("{:?}", header.alg)
    {
        return Err(SignatureError::Algorithm(header.alg));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| SignatureError::Key(e.to_string()))?;
    let message = &token[..h.len() + 1 + p.len()];
    match jsonwebtoken::crypto::verify(sig, message.as_bytes(), &key, header.alg) {
        Ok(true) => Ok(()),
        _ => Err(SignatureError::Invalid),
    }
}
