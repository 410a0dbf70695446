//! The key ring: which keys sign, which are published, and verification of Latch's own tokens.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use latch_core::model::{KeyState, SigningAlg, SigningKey};
use latch_core::store::SigningKeyRepo;
use latch_core::{Clock, Kid, StoreError};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use crate::keys::{Signer, sign_jws};

#[derive(Debug, thiserror::Error)]
pub enum JoseError {
    #[error("key error: {0}")]
    Key(&'static str),
    #[error("signing failed")]
    Sign,
    #[error("no current signing key for {0}")]
    NoKey(&'static str),
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Signed by a key this instance has not loaded (see [`KeyRing::verify_reloading`]).
    #[error("invalid token: unknown kid")]
    UnknownKid,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Every algorithm Latch signs with; each has its own key series.
pub const ALGORITHMS: [SigningAlg; 3] = [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA];

struct Current {
    kid: Kid,
    signer: Signer,
}

#[derive(Default)]
struct Loaded {
    current: HashMap<SigningAlg, Arc<Current>>,
    published: Vec<Value>,
    verifiers: HashMap<String, (SigningAlg, DecodingKey)>,
}

/// Signing keys as loaded from the store; cheap to share.
pub struct KeyRing {
    store: Arc<dyn SigningKeyRepo>,
    clock: Arc<dyn Clock>,
    loaded: RwLock<Arc<Loaded>>,
    /// One next-key generation at a time in this process.
    generating: tokio::sync::Mutex<()>,
    /// When the keys were last read from the store (one reload at a time).
    reloaded: tokio::sync::Mutex<std::time::Instant>,
    /// Tokens with an unknown kid waiting for a read of the keys.
    unknown_kid_waiters: tokio::sync::Semaphore,
}

/// Tokens with an unknown kid that may wait for a read of the keys at once.
const UNKNOWN_KID_WAITERS: usize = 4;

/// How often every instance re-reads the keys (the composition root's timer): a rotation, on
/// any instance, is served in every instance's JWKS and signs there within this.
pub const RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// A token naming a `kid` this instance has not loaded makes it read the keys again at once,
/// at most once per this interval (unknown kids cannot turn into a stream of store reads).
pub const UNKNOWN_KID_RELOAD_GAP: std::time::Duration = std::time::Duration::from_secs(1);

/// What to check when verifying one of Latch's own tokens.
#[derive(Debug, Clone)]
pub struct VerifyOptions<'a> {
    pub algs: &'a [SigningAlg],
    pub issuer: &'a str,
    /// Required audience; `None` skips the audience check (the caller checks it).
    pub audience: Option<&'a str>,
    /// `false` for `id_token_hint`, which may have expired.
    pub check_expiry: bool,
    /// Required JOSE `typ`, compared case-insensitively.
    pub typ: Option<&'a str>,
}

fn to_jwt_alg(a: SigningAlg) -> Algorithm {
    match a {
        SigningAlg::RS256 => Algorithm::RS256,
        SigningAlg::ES256 => Algorithm::ES256,
        SigningAlg::EdDSA => Algorithm::EdDSA,
    }
}

impl KeyRing {
    /// Loads the keys, creating a current and a next key for every algorithm that has none.
    pub async fn load_or_init(
        store: Arc<dyn SigningKeyRepo>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, JoseError> {
        let ring = Self::load_current(store, clock).await?;
        ring.publish_missing_next_keys().await?;
        Ok(ring)
    }

    /// Loads the keys, creating only what must sign now: a current key for every algorithm that
    /// has none. The next keys (an RSA key takes a large share of a first start) follow with
    /// [`publish_missing_next_keys`](Self::publish_missing_next_keys), in the background.
    pub async fn load_current(
        store: Arc<dyn SigningKeyRepo>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, JoseError> {
        let ring = Self {
            store,
            clock,
            loaded: RwLock::new(Arc::default()),
            generating: tokio::sync::Mutex::new(()),
            reloaded: tokio::sync::Mutex::new(std::time::Instant::now()),
            unknown_kid_waiters: tokio::sync::Semaphore::new(UNKNOWN_KID_WAITERS),
        };
        let keys = ring.store.list_signing_keys().await?;
        for alg in ALGORITHMS {
            if !keys
                .iter()
                .any(|k| k.alg == alg && k.state == KeyState::Current)
            {
                // Instances started together on a fresh store: one key is stored, the others
                // read it below.
                ring.insert_new_if_absent(alg, KeyState::Current).await?;
            }
        }
        ring.reload().await?;
        Ok(ring)
    }

    /// Generates and publishes a next key for every algorithm that has none (idempotent; calls
    /// in this process take turns). Until it has run, a rotation promotes a fresh key directly.
    pub async fn publish_missing_next_keys(&self) -> Result<(), JoseError> {
        let _turn = self.generating.lock().await;
        let keys = self.store.list_signing_keys().await?;
        let mut added = false;
        for alg in ALGORITHMS {
            if !keys
                .iter()
                .any(|k| k.alg == alg && k.state == KeyState::Next)
            {
                added |= self.insert_new_if_absent(alg, KeyState::Next).await?;
            }
        }
        if added {
            self.reload().await?;
        }
        Ok(())
    }

    async fn insert_new(&self, alg: SigningAlg, state: KeyState) -> Result<SigningKey, JoseError> {
        let key = self.generate(alg, state).await?;
        self.store.insert_signing_key(&key).await?;
        tracing::info!(kid = %key.kid, alg = alg.as_str(), state = state.as_str(), "generated signing key");
        Ok(key)
    }

    /// Stores a new key unless the store already holds one of `alg` in `state` (another
    /// instance made it first); `true` if this one was stored.
    async fn insert_new_if_absent(
        &self,
        alg: SigningAlg,
        state: KeyState,
    ) -> Result<bool, JoseError> {
        let key = self.generate(alg, state).await?;
        let stored = self.store.insert_signing_key_if_absent(&key).await?;
        if stored {
            tracing::info!(kid = %key.kid, alg = alg.as_str(), state = state.as_str(), "generated signing key");
        }
        Ok(stored)
    }

    async fn generate(&self, alg: SigningAlg, state: KeyState) -> Result<SigningKey, JoseError> {
        // Tens to hundreds of milliseconds for RSA: off the async workers.
        let signer = tokio::task::spawn_blocking(move || Signer::generate(alg))
            .await
            .map_err(|_| JoseError::Key("key generation stopped"))??;
        let now = self.clock.now();
        let key = SigningKey {
            kid: signer.thumbprint(),
            alg,
            state,
            private_pem: signer.to_pem()?,
            public_jwk: signer.public_jwk(alg),
            created_at: now,
            updated_at: now,
            publish_until: None,
        };
        Ok(key)
    }

    /// Re-reads the keys from the store (after a rotation here or on another instance).
    pub async fn reload(&self) -> Result<(), JoseError> {
        let mut reloaded = self.reloaded.lock().await;
        let started = std::time::Instant::now();
        let read = self.read_keys().await;
        *reloaded = started;
        read
    }

    /// [`verify`](Self::verify), reading the keys again first when the token names a `kid`
    /// this instance has not loaded (made or rotated on another instance moments ago), at most
    /// once per [`UNKNOWN_KID_RELOAD_GAP`].
    pub async fn verify_reloading(
        &self,
        token: &str,
        opts: &VerifyOptions<'_>,
    ) -> Result<Value, JoseError> {
        let arrived = std::time::Instant::now();
        match self.verify(token, opts) {
            Err(JoseError::UnknownKid) => {}
            other => return other,
        }
        // Few wait at once: forged tokens with made-up kids cannot hold many requests (and
        // their slots) here; beyond that an unknown kid is refused at once.
        let Ok(_waiter) = self.unknown_kid_waiters.try_acquire() else {
            return Err(JoseError::UnknownKid);
        };
        // A read that began after this token arrived has every key stored before it; else
        // read again, once the gap since the last read has passed (waiting for it with no lock
        // held). The keys are read at most once per gap, whether the read succeeds or not.
        let last = *self.reloaded.lock().await;
        if last < arrived {
            let since = last.elapsed();
            if since < UNKNOWN_KID_RELOAD_GAP {
                tokio::time::sleep(UNKNOWN_KID_RELOAD_GAP - since).await;
            }
            let mut reloaded = self.reloaded.lock().await;
            if *reloaded < arrived {
                let started = std::time::Instant::now();
                let read = self.read_keys().await;
                *reloaded = started;
                read?;
            }
        }
        self.verify(token, opts)
    }

    async fn read_keys(&self) -> Result<(), JoseError> {
        let now = self.clock.now();
        let keys = self.store.list_signing_keys().await?;
        let mut loaded = Loaded::default();
        // Newest current key per algorithm signs.
        let mut newest: HashMap<SigningAlg, &SigningKey> = HashMap::new();
        for k in keys.iter().filter(|k| k.state == KeyState::Current) {
            if newest
                .get(&k.alg)
                .is_none_or(|n| n.created_at < k.created_at)
            {
                newest.insert(k.alg, k);
            }
        }
        for (alg, k) in newest {
            let signer = Signer::from_pem(alg, k.private_pem.expose())?;
            loaded.current.insert(
                alg,
                Arc::new(Current {
                    kid: k.kid.clone(),
                    signer,
                }),
            );
        }
        for k in &keys {
            let published = match k.state {
                KeyState::Next | KeyState::Current => true,
                KeyState::Previous => k.publish_until.is_none_or(|t| t > now),
                KeyState::Revoked => false,
            };
            if !published {
                continue;
            }
            loaded.published.push(k.public_jwk.clone());
            if let Ok(jwk) = serde_json::from_value::<Jwk>(k.public_jwk.clone())
                && let Ok(dk) = DecodingKey::from_jwk(&jwk)
            {
                loaded
                    .verifiers
                    .insert(k.kid.as_str().to_owned(), (k.alg, dk));
            }
        }
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
        Ok(())
    }

    fn snapshot(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The JWKS document.
    pub fn jwks(&self) -> Value {
        json!({ "keys": self.snapshot().published })
    }

    /// Signs `claims` with the current key of `alg`, header `typ`.
    pub fn sign(&self, alg: SigningAlg, typ: &str, claims: &Value) -> Result<String, JoseError> {
        let snap = self.snapshot();
        let cur = snap
            .current
            .get(&alg)
            .ok_or(JoseError::NoKey(alg.as_str()))?;
        sign_jws(&cur.signer, alg, &cur.kid, typ, claims)
    }

    /// The kid that signs for `alg` now.
    pub fn current_kid(&self, alg: SigningAlg) -> Option<Kid> {
        self.snapshot().current.get(&alg).map(|c| c.kid.clone())
    }

    /// Verifies a token Latch issued: signature by a published key of an allowed algorithm,
    /// issuer, audience, expiry (60 s leeway), `typ`. Returns the claims.
    pub fn verify(&self, token: &str, opts: &VerifyOptions<'_>) -> Result<Value, JoseError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| JoseError::Invalid(e.to_string()))?;
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| JoseError::Invalid("no kid".into()))?;
        let snap = self.snapshot();
        let (alg, key) = snap.verifiers.get(kid).ok_or(JoseError::UnknownKid)?;
        if !opts.algs.contains(alg) || header.alg != to_jwt_alg(*alg) {
            return Err(JoseError::Invalid("algorithm not allowed".into()));
        }
        if let Some(typ) = opts.typ
            && !header
                .typ
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case(typ))
        {
            return Err(JoseError::Invalid("wrong typ".into()));
        }
        let mut v = Validation::new(to_jwt_alg(*alg));
        v.set_issuer(&[opts.issuer]);
        // Time is checked below against the ring's clock, not the system clock.
        v.validate_exp = false;
        v.validate_nbf = false;
        v.required_spec_claims = ["iss"].into_iter().map(String::from).collect();
        match opts.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        let claims = jsonwebtoken::decode::<Value>(token, key, &v)
            .map_err(|e| JoseError::Invalid(e.to_string()))?
            .claims;
        if opts.check_expiry {
            const LEEWAY: i64 = 60;
            let now = self.clock.now().unix_timestamp();
            let exp = claims["exp"]
                .as_i64()
                .ok_or_else(|| JoseError::Invalid("no exp".into()))?;
            if exp + LEEWAY <= now {
                return Err(JoseError::Invalid("expired".into()));
            }
            if claims["nbf"].as_i64().is_some_and(|nbf| nbf - LEEWAY > now) {
                return Err(JoseError::Invalid("not yet valid".into()));
            }
        }
        Ok(claims)
    }

    /// Rotates every algorithm: `previous` keys past their publication end are withdrawn,
    /// `current` becomes `previous` (published `retire_after` longer, the longest lifetime of
    /// anything it signed), `next` (already published) becomes `current`, and a new `next` is made.
    pub async fn rotate(&self, retire_after: Duration) -> Result<(), JoseError> {
        let now = self.clock.now();
        let keys = self.store.list_signing_keys().await?;
        for mut k in keys.iter().cloned() {
            let new_state = match k.state {
                KeyState::Previous if k.publish_until.is_some_and(|t| t <= now) => {
                    Some((KeyState::Revoked, k.publish_until))
                }
                KeyState::Current => Some((KeyState::Previous, Some(now + retire_after))),
                KeyState::Next => Some((KeyState::Current, None)),
                _ => None,
            };
            if let Some((state, until)) = new_state {
                k.state = state;
                k.publish_until = until;
                k.updated_at = now;
                self.store.update_signing_key(&k).await?;
            }
        }
        for alg in ALGORITHMS {
            if !keys
                .iter()
                .any(|k| k.alg == alg && k.state == KeyState::Next)
            {
                // No next key was published: promote a fresh one directly.
                self.insert_new(alg, KeyState::Current).await?;
            }
            self.insert_new(alg, KeyState::Next).await?;
        }
        self.reload().await
    }

    /// The instant now, from the ring's clock.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use latch_core::clock::ManualClock;

    use super::*;

    #[derive(Default)]
    struct MemKeys(Mutex<Vec<SigningKey>>);

    #[async_trait]
    impl SigningKeyRepo for MemKeys {
        async fn insert_signing_key(&self, k: &SigningKey) -> Result<(), StoreError> {
            self.0.lock().unwrap().push(k.clone());
            Ok(())
        }
        async fn insert_signing_key_if_absent(&self, k: &SigningKey) -> Result<bool, StoreError> {
            let mut v = self.0.lock().unwrap();
            if v.iter().any(|x| x.alg == k.alg && x.state == k.state) {
                return Ok(false);
            }
            v.push(k.clone());
            Ok(true)
        }
        async fn list_signing_keys(&self) -> Result<Vec<SigningKey>, StoreError> {
            Ok(self.0.lock().unwrap().clone())
        }
        async fn update_signing_key(&self, k: &SigningKey) -> Result<(), StoreError> {
            let mut v = self.0.lock().unwrap();
            let slot = v.iter_mut().find(|x| x.kid == k.kid).unwrap();
            *slot = k.clone();
            Ok(())
        }
        async fn get_signing_key(&self, kid: &Kid) -> Result<SigningKey, StoreError> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .find(|k| k.kid == *kid)
                .cloned()
                .ok_or(StoreError::NotFound {
                    entity: "key",
                    id: kid.to_string(),
                })
        }
    }

    const ISS: &str = "https://latch.example.com";

    fn claims(clock: &ManualClock) -> Value {
        let now = clock.now().unix_timestamp();
        json!({ "iss": ISS, "sub": "auth0|1", "aud": "app", "iat": now, "exp": now + 300 })
    }

    fn opts(algs: &[SigningAlg]) -> VerifyOptions<'_> {
        VerifyOptions {
            algs,
            issuer: ISS,
            audience: Some("app"),
            check_expiry: true,
            typ: Some("JWT"),
        }
    }

    #[tokio::test]
    async fn sign_verify_rotate() {
        let clock = ManualClock::new(OffsetDateTime::now_utc());
        let repo = Arc::new(MemKeys::default());
        let ring = KeyRing::load_or_init(repo.clone(), Arc::new(clock.clone()))
            .await
            .unwrap();
        assert_eq!(repo.0.lock().unwrap().len(), 6);
        // Current and next are published for each algorithm.
        assert_eq!(ring.jwks()["keys"].as_array().unwrap().len(), 6);

        let mut old_tokens = Vec::new();
        for alg in ALGORITHMS {
            let t = ring.sign(alg, "JWT", &claims(&clock)).unwrap();
            let got = ring.verify(&t, &opts(&[alg])).unwrap();
            assert_eq!(got["sub"], "auth0|1");
            // Other checks bite.
            let others: Vec<_> = ALGORITHMS.into_iter().filter(|a| *a != alg).collect();
            assert!(ring.verify(&t, &opts(&others)).is_err(), "alg allow-list");
            assert!(
                ring.verify(
                    &t,
                    &VerifyOptions {
                        audience: Some("other"),
                        ..opts(&[alg])
                    }
                )
                .is_err()
            );
            assert!(
                ring.verify(
                    &t,
                    &VerifyOptions {
                        issuer: "https://evil",
                        ..opts(&[alg])
                    }
                )
                .is_err()
            );
            assert!(
                ring.verify(
                    &t,
                    &VerifyOptions {
                        typ: Some("logout+jwt"),
                        ..opts(&[alg])
                    }
                )
                .is_err()
            );
            let mut tampered = t.clone();
            tampered.insert(t.find('.').unwrap() + 2, 'A');
            assert!(ring.verify(&tampered, &opts(&[alg])).is_err());
            old_tokens.push((alg, t));
        }

        // Expiry, with the id_token_hint exception.
        let t = ring
            .sign(SigningAlg::ES256, "JWT", &claims(&clock))
            .unwrap();
        clock.advance(Duration::minutes(10));
        assert!(ring.verify(&t, &opts(&[SigningAlg::ES256])).is_err());
        assert!(
            ring.verify(
                &t,
                &VerifyOptions {
                    check_expiry: false,
                    ..opts(&[SigningAlg::ES256])
                }
            )
            .is_ok()
        );

        // Rotation: the published next key signs; the old one still verifies.
        let next = repo
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|k| k.alg == SigningAlg::RS256 && k.state == KeyState::Next)
            .unwrap()
            .kid
            .clone();
        ring.rotate(Duration::hours(1)).await.unwrap();
        assert_eq!(ring.current_kid(SigningAlg::RS256), Some(next));
        assert_eq!(ring.jwks()["keys"].as_array().unwrap().len(), 9);
        for (alg, t) in &old_tokens {
            assert!(
                ring.verify(
                    t,
                    &VerifyOptions {
                        check_expiry: false,
                        ..opts(&[*alg])
                    }
                )
                .is_ok()
            );
        }
        // Once its publication ends, the old key is withdrawn and its tokens fail.
        clock.advance(Duration::hours(2));
        ring.rotate(Duration::hours(1)).await.unwrap();
        for (alg, t) in &old_tokens {
            assert!(
                ring.verify(
                    t,
                    &VerifyOptions {
                        check_expiry: false,
                        ..opts(&[*alg])
                    }
                )
                .is_err()
            );
        }
    }

    #[test]
    fn pem_round_trip_and_thumbprint() {
        for alg in ALGORITHMS {
            let s = Signer::generate(alg).unwrap();
            let pem = s.to_pem().unwrap();
            let back = Signer::from_pem(alg, pem.expose()).unwrap();
            assert_eq!(s.thumbprint(), back.thumbprint());
            assert_eq!(s.public_jwk(alg)["kid"], s.thumbprint().as_str());
        }
    }

    #[test]
    fn rfc7638_thumbprint_example() {
        // RFC 7638 section 3.1: the members in lexicographic order, no whitespace.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let canonical = format!("{{\"e\":\"AQAB\",\"kty\":\"RSA\",\"n\":\"{n}\"}}");
        assert_eq!(
            json!({"kty": "RSA", "n": n, "e": "AQAB"}).to_string(),
            canonical
        );
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        use base64::Engine;
        assert_eq!(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    /// Two instances on one store: started together they sign with the same first keys; a
    /// token signed after a rotation at one verifies at the other before its timer reloads.
    #[tokio::test]
    async fn instances_share_keys_and_reload_on_an_unknown_kid() {
        let clock = ManualClock::new(OffsetDateTime::now_utc());
        let repo = Arc::new(MemKeys::default());
        let (a, b) = tokio::join!(
            KeyRing::load_current(repo.clone(), Arc::new(clock.clone())),
            KeyRing::load_current(repo.clone(), Arc::new(clock.clone()))
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        for alg in ALGORITHMS {
            assert_eq!(a.current_kid(alg), b.current_kid(alg));
        }
        assert_eq!(repo.0.lock().unwrap().len(), 3);
        a.rotate(Duration::days(1)).await.unwrap();
        let t = a.sign(SigningAlg::ES256, "JWT", &claims(&clock)).unwrap();
        assert!(matches!(
            b.verify(&t, &opts(&[SigningAlg::ES256])),
            Err(JoseError::UnknownKid)
        ));
        let got = b
            .verify_reloading(&t, &opts(&[SigningAlg::ES256]))
            .await
            .unwrap();
        assert_eq!(got["sub"], "auth0|1");
        assert_eq!(b.jwks(), a.jwks());
        // A kid no store holds stays unknown.
        let forged = {
            let (h, rest) = t.split_once('.').unwrap();
            let mut header: Value = serde_json::from_slice(
                &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, h)
                    .unwrap(),
            )
            .unwrap();
            header["kid"] = json!("nobody");
            let h = base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                serde_json::to_vec(&header).unwrap(),
            );
            format!("{h}.{rest}")
        };
        let started = std::time::Instant::now();
        assert!(matches!(
            b.verify_reloading(&forged, &opts(&[SigningAlg::ES256]))
                .await,
            Err(JoseError::UnknownKid)
        ));
        assert!(started.elapsed() <= UNKNOWN_KID_RELOAD_GAP + std::time::Duration::from_secs(1));
    }
}
