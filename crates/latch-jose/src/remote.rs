//! Keys of other issuers (an upstream IdP, Okta for Universal Logout): discovery and JWKS fetched
//! through the outbound policy (`latch_core::net::Fetch`) and cached. A token whose `kid` is not
//! in the cached set makes the cache refetch that JWKS at once, at most once per `REFETCH_EVERY`
//! per JWKS URL, so a rotated key is picked up without letting garbage tokens hammer the IdP.
//!
//! Failures are cached too: after a failed fetch the URL is not tried again for `REFETCH_EVERY`,
//! doubling with each further failure up to `MAX_BACKOFF`, and every caller meanwhile gets the
//! same error. Callers that need the same URL at the same time share one fetch in flight.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Header};
use latch_core::net::{Fetch, FetchError};
use serde_json::Value;

/// Refetch a JWKS for an unknown `kid`, or a document that failed, at most this often.
pub const REFETCH_EVERY: Duration = Duration::from_secs(30);
/// A JWKS is refreshed after this long even when every `kid` is known.
pub const MAX_AGE: Duration = Duration::from_secs(3600);
/// Longest wait before a URL that keeps failing is tried again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    #[error("fetching {0} failed: {1}")]
    Fetch(String, FetchError),
    /// The answer is not what was expected; the text never quotes the answer.
    #[error("{0} is not {1}")]
    Document(String, &'static str),
    #[error("no key {0:?} in the issuer's JWKS")]
    UnknownKey(Option<String>),
}

type Keys = Arc<Vec<(Option<String>, Jwk)>>;

/// One URL's cache: the last good value, the last attempt and how it went.
struct State<T, E> {
    value: Option<(T, Instant)>,
    attempted: Option<Instant>,
    failures: u32,
    error: Option<E>,
}

impl<T: Clone, E: Clone> State<T, E> {
    /// How long after the last attempt the next may be made.
    fn wait(&self) -> Duration {
        match self.failures {
            0 => REFETCH_EVERY,
            n => REFETCH_EVERY
                .saturating_mul(1 << (n - 1).min(10))
                .min(MAX_BACKOFF),
        }
    }

    fn fresh(&self) -> Option<T> {
        self.value
            .as_ref()
            .filter(|(_, at)| at.elapsed() < MAX_AGE)
            .map(|(v, _)| v.clone())
    }

    /// The fresh value, or the last error; `None` when there is neither.
    fn answer(&self) -> Option<Result<T, E>> {
        match (self.fresh(), &self.error) {
            (Some(v), _) => Some(Ok(v)),
            (None, Some(e)) => Some(Err(e.clone())),
            (None, None) => None,
        }
    }
}

struct Slot<T, E> {
    /// Held while this URL is fetched: concurrent callers wait for that fetch, not their own.
    flight: tokio::sync::Mutex<()>,
    state: Mutex<State<T, E>>,
}

/// Documents of other parties by URL (JWKS, discovery, SAML metadata), each kept [`MAX_AGE`].
/// A URL is fetched by one caller at a time (the others wait for that fetch and share its
/// outcome), and at most once per [`REFETCH_EVERY`] after a success; after a failure the wait
/// doubles with each failure up to [`MAX_BACKOFF`], and callers get the remembered error.
pub struct Cache<T, E> {
    slots: Mutex<HashMap<String, Arc<Slot<T, E>>>>,
}

impl<T: Clone, E: Clone + std::fmt::Display> Default for Cache<T, E> {
    fn default() -> Self {
        Self {
            slots: Mutex::default(),
        }
    }
}

impl<T: Clone, E: Clone + std::fmt::Display> Cache<T, E> {
    fn slot(&self, url: &str) -> Arc<Slot<T, E>> {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(url.to_owned())
            .or_insert_with(|| {
                Arc::new(Slot {
                    flight: tokio::sync::Mutex::new(()),
                    state: Mutex::new(State {
                        value: None,
                        attempted: None,
                        failures: 0,
                        error: None,
                    }),
                })
            })
            .clone()
    }

    /// The cached value when it is fresh and `enough`; otherwise `fetch`, unless a fetch was
    /// made meanwhile or within the wait (then the cached value or error).
    pub async fn get<F, Fut>(
        &self,
        url: &str,
        enough: impl Fn(&T) -> bool,
        fetch: F,
    ) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let slot = self.slot(url);
        let seen = {
            let st = slot.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(v) = st.fresh().filter(|v| enough(v)) {
                return Ok(v);
            }
            st.attempted
        };
        let _flight = slot.flight.lock().await;
        {
            let st = slot.state.lock().unwrap_or_else(|p| p.into_inner());
            let fetched_meanwhile = st.attempted != seen;
            let too_soon = st.attempted.is_some_and(|at| at.elapsed() < st.wait());
            if (fetched_meanwhile || too_soon)
                && let Some(answer) = st.answer()
            {
                return answer;
            }
        }
        let result = fetch().await;
        let mut st = slot.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        st.attempted = Some(now);
        match result {
            Ok(v) => {
                st.value = Some((v.clone(), now));
                st.failures = 0;
                st.error = None;
                Ok(v)
            }
            Err(e) => {
                tracing::warn!(url, error = %e, "remote document unavailable");
                st.failures = st.failures.saturating_add(1);
                st.error = Some(e.clone());
                // A fresh value stays usable (a failed refetch for an unknown key).
                st.fresh().ok_or(e)
            }
        }
    }
}

/// Cached discovery documents and key sets of remote issuers.
pub struct RemoteKeys {
    http: Arc<dyn Fetch>,
    jwks: Cache<Keys, RemoteError>,
    discovery: Cache<Value, RemoteError>,
}

impl RemoteKeys {
    pub fn new(http: Arc<dyn Fetch>) -> Self {
        Self {
            http,
            jwks: Cache::default(),
            discovery: Cache::default(),
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

    /// The issuer's discovery document (`{issuer}/.well-known/openid-configuration`), cached an hour.
    pub async fn discovery(&self, discovery_url: &str) -> Result<Value, RemoteError> {
        self.discovery
            .get(discovery_url, |_| true, || self.get_json(discovery_url))
            .await
    }

    async fn fetch_jwks(&self, url: &str) -> Result<Keys, RemoteError> {
        let v = self.get_json(url).await?;
        let set: JwkSet = serde_json::from_value(v)
            .map_err(|_| RemoteError::Document(url.into(), "a JWK set"))?;
        Ok(Arc::new(
            set.keys
                .into_iter()
                .map(|k| (k.common.key_id.clone(), k))
                .collect(),
        ))
    }

    /// The key that signed a token with `header`, from the JWKS at `url`.
    pub async fn key_for(
        &self,
        url: &str,
        header: &Header,
    ) -> Result<(Jwk, DecodingKey), RemoteError> {
        let kid = header.kid.as_deref();
        let keys = self
            .jwks
            .get(
                url,
                |keys| find(keys, kid).is_some(),
                || self.fetch_jwks(url),
            )
            .await?;
        let jwk =
            find(&keys, kid).ok_or_else(|| RemoteError::UnknownKey(kid.map(str::to_owned)))?;
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|_| RemoteError::Document(url.into(), "a usable key"))?;
        Ok((jwk, key))
    }
}

fn find(keys: &[(Option<String>, Jwk)], kid: Option<&str>) -> Option<Jwk> {
    match kid {
        Some(kid) => keys.iter().find(|(k, _)| k.as_deref() == Some(kid)),
        // Without a kid, only an unambiguous set will do.
        None if keys.len() == 1 => keys.first(),
        None => None,
    }
    .map(|(_, j)| j.clone())
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use latch_core::model::SigningAlg;

    use super::*;
    use crate::keys::Signer;

    /// Serves one document (or fails), slowly, counting fetches.
    struct Fake {
        answer: Mutex<Result<Vec<u8>, FetchError>>,
        fetches: AtomicUsize,
    }

    #[async_trait]
    impl Fetch for Fake {
        async fn get(&self, _url: &str, _accept: &str) -> Result<Vec<u8>, FetchError> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.answer.lock().unwrap().clone()
        }
    }

    fn fake(answer: Result<Vec<u8>, FetchError>) -> Arc<Fake> {
        Arc::new(Fake {
            answer: Mutex::new(answer),
            fetches: AtomicUsize::new(0),
        })
    }

    fn header(kid: &str) -> Header {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(kid.into());
        h
    }

    #[tokio::test]
    async fn a_failing_jwks_is_fetched_once_by_concurrent_and_later_callers() {
        let f = fake(Err(FetchError::Status(500)));
        let remote = Arc::new(RemoteKeys::new(f.clone()));
        let calls = (0..10).map(|_| {
            let r = remote.clone();
            tokio::spawn(async move { r.key_for("https://idp.example/keys", &header("k")).await })
        });
        for c in futures_join(calls).await {
            let e = c.unwrap_err();
            assert!(
                matches!(e, RemoteError::Fetch(_, FetchError::Status(500))),
                "{e}"
            );
        }
        // And later ones within the window.
        assert!(
            remote
                .key_for("https://idp.example/keys", &header("k"))
                .await
                .is_err()
        );
        assert_eq!(f.fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_unknown_kid_refetches_once_within_the_window() {
        let key = Signer::generate(SigningAlg::RS256).unwrap();
        let mut jwk = key.public_jwk(SigningAlg::RS256);
        jwk["kid"] = serde_json::json!("known");
        let f = fake(Ok(serde_json::json!({ "keys": [jwk] })
            .to_string()
            .into_bytes()));
        let remote = Arc::new(RemoteKeys::new(f.clone()));
        assert!(
            remote
                .key_for("https://idp.example/keys", &header("known"))
                .await
                .is_ok()
        );
        let calls = (0..10).map(|_| {
            let r = remote.clone();
            tokio::spawn(async move {
                r.key_for("https://idp.example/keys", &header("other"))
                    .await
            })
        });
        for c in futures_join(calls).await {
            assert!(matches!(c, Err(RemoteError::UnknownKey(_))));
        }
        assert_eq!(
            f.fetches.load(Ordering::SeqCst),
            1,
            "within 30 s of the last fetch"
        );
    }

    #[tokio::test]
    async fn errors_never_quote_the_answer() {
        let f = fake(Ok(b"{\"keys\": \"INTERNAL-SECRET-1234\"}".to_vec()));
        let remote = RemoteKeys::new(f.clone());
        let e = remote
            .key_for("https://idp.example/keys", &header("k"))
            .await
            .unwrap_err()
            .to_string();
        assert!(!e.contains("INTERNAL-SECRET"), "{e}");
        let f = fake(Ok(b"<html>INTERNAL-SECRET-1234</html>".to_vec()));
        let remote = RemoteKeys::new(f.clone());
        let e = remote
            .discovery("https://idp.example/d")
            .await
            .unwrap_err()
            .to_string();
        assert!(!e.contains("INTERNAL-SECRET"), "{e}");
    }

    #[test]
    fn failures_back_off() {
        let mut st = State::<(), ()> {
            value: None,
            attempted: None,
            failures: 0,
            error: None,
        };
        assert_eq!(st.wait(), REFETCH_EVERY);
        st.failures = 1;
        assert_eq!(st.wait(), REFETCH_EVERY);
        st.failures = 2;
        assert_eq!(st.wait(), 2 * REFETCH_EVERY);
        st.failures = 40;
        assert_eq!(st.wait(), MAX_BACKOFF);
    }

    async fn futures_join<T: Send + 'static>(
        handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for h in handles.collect::<Vec<_>>() {
            out.push(h.await.unwrap());
        }
        out
    }
}
