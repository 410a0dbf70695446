//! `RemoteKeys` against a fake issuer, on a clock the tests move.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latch_core::clock::ManualClock;
use latch_core::net::{Fetch, FetchError};
use serde_json::{Value, json};

use super::*;

const JWKS: &str = "https://idp.example/keys";
const ISS: &str = "https://idp.example";
const AUD: &str = "https://latch.example/endpoint";
const NOW: i64 = 1_800_000_000;

/// Serves documents by URL (404 for others), slowly, counting fetches per URL.
#[derive(Default)]
struct Fake {
    answers: Mutex<HashMap<String, Result<Vec<u8>, FetchError>>>,
    fetches: Mutex<HashMap<String, usize>>,
    total: AtomicUsize,
}

impl Fake {
    fn serve(&self, url: &str, answer: Result<Vec<u8>, FetchError>) {
        self.answers.lock().unwrap().insert(url.into(), answer);
    }

    fn serve_keys(&self, keys: &[&Key]) {
        let set = json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() });
        self.serve(JWKS, Ok(set.to_string().into_bytes()));
    }

    fn fetches(&self, url: &str) -> usize {
        self.fetches.lock().unwrap().get(url).copied().unwrap_or(0)
    }
}

#[async_trait]
impl Fetch for Fake {
    async fn get(&self, url: &str, _accept: &str) -> Result<Vec<u8>, FetchError> {
        *self.fetches.lock().unwrap().entry(url.into()).or_default() += 1;
        self.total.fetch_add(1, Ordering::SeqCst);
        // Slow enough that concurrent callers overlap.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.answers
            .lock()
            .unwrap()
            .get(url)
            .cloned()
            .unwrap_or(Err(FetchError::Status(404)))
    }
}

/// An Ed25519 signing key of the fake issuer.
struct Key {
    pair: Ed25519KeyPair,
    kid: String,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Key {
    fn new(kid: &str) -> Self {
        Self {
            pair: Ed25519KeyPair::generate().unwrap(),
            kid: kid.into(),
        }
    }

    fn jwk(&self) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": self.kid,
               "x": b64(self.pair.public_key().as_ref())})
    }

    fn sign_with(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self.pair.sign(input.as_bytes());
        format!("{input}.{}", b64(sig.as_ref()))
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_with(
            &json!({"alg": "EdDSA", "kid": self.kid, "typ": "test+jwt"}),
            claims,
        )
    }
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "alice", "jti": "j-1", "iat": NOW, "exp": NOW + 300})
}

fn with(k: &str, v: Value) -> Value {
    let mut c = claims();
    c[k] = v;
    c
}

fn without(k: &str) -> Value {
    let mut c = claims();
    c.as_object_mut().unwrap().remove(k);
    c
}

fn want() -> Expectations<'static> {
    Expectations {
        issuers: &[ISS],
        audiences: &[AUD],
        typ: Typ::Required("test+jwt"),
        algorithms: REMOTE_ALGORITHMS,
        required: &["iss", "aud", "exp", "iat", "jti"],
        lifetime: Lifetime {
            leeway: 60,
            max_age: Some(600),
            max_lifetime: Some(900),
        },
        now: NOW,
    }
}

fn setup() -> (Arc<Fake>, Arc<RemoteKeys>, ManualClock) {
    let fake = Arc::new(Fake::default());
    let clock = ManualClock::new(time::OffsetDateTime::from_unix_timestamp(NOW).unwrap());
    let remote = Arc::new(RemoteKeys::new(fake.clone(), Arc::new(clock.clone())));
    (fake, remote, clock)
}

async fn verify(remote: &RemoteKeys, token: &str) -> Result<Claims, VerifyError> {
    remote.verify(token, KeySource::Jwks(JWKS), &want()).await
}

async fn join_all<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_good_token_verifies_with_one_fetch() {
    let (fake, remote, _) = setup();
    let key = Key::new("k1");
    fake.serve_keys(&[&key]);
    for _ in 0..3 {
        let c = verify(&remote, &key.sign(&claims())).await.unwrap();
        assert_eq!(c["sub"], "alice");
    }
    assert_eq!(fake.fetches(JWKS), 1);
}

#[tokio::test]
async fn an_unknown_kid_triggers_one_refetch() {
    let (fake, remote, clock) = setup();
    let (old, new) = (Key::new("old"), Key::new("new"));
    fake.serve_keys(&[&old]);
    verify(&remote, &old.sign(&claims())).await.unwrap();
    // The issuer rolls its key; past the window, the first token under the new kid refetches.
    fake.serve_keys(&[&new]);
    clock.advance(time::Duration::seconds(31));
    let calls = (0..10).map(|_| {
        let (r, t) = (remote.clone(), new.sign(&claims()));
        tokio::spawn(async move { verify(&r, &t).await })
    });
    for r in join_all(calls).await {
        assert!(r.is_ok(), "{r:?}");
    }
    assert_eq!(
        fake.fetches(JWKS),
        2,
        "one refetch, shared by concurrent callers"
    );
    // A kid the issuer never published: no fetch within the window, a refusal.
    let other = Key::new("other");
    let r = verify(&remote, &other.sign(&claims())).await;
    assert!(
        matches!(r, Err(VerifyError::UnknownKey(Some(ref k))) if k == "other"),
        "{r:?}"
    );
    assert_eq!(fake.fetches(JWKS), 2);
}

#[tokio::test]
async fn refetches_are_limited_to_every_30_seconds() {
    let (fake, remote, clock) = setup();
    let (old, new) = (Key::new("old"), Key::new("new"));
    fake.serve_keys(&[&old]);
    verify(&remote, &old.sign(&claims())).await.unwrap();
    fake.serve_keys(&[&new]);
    // Within 30 s of the last fetch, an unknown kid is refused without a fetch.
    for _ in 0..5 {
        let r = verify(&remote, &new.sign(&claims())).await;
        assert!(matches!(r, Err(VerifyError::UnknownKey(_))), "{r:?}");
        clock.advance(time::Duration::seconds(5));
    }
    assert_eq!(fake.fetches(JWKS), 1);
    clock.advance(time::Duration::seconds(4));
    assert!(verify(&remote, &new.sign(&claims())).await.is_err(), "29 s");
    assert_eq!(fake.fetches(JWKS), 1);
    clock.advance(time::Duration::seconds(1));
    verify(&remote, &new.sign(&claims())).await.unwrap();
    assert_eq!(fake.fetches(JWKS), 2, "30 s after the last fetch");
    // And the same for a garbage kid right after.
    assert!(
        verify(&remote, &Key::new("x").sign(&claims()))
            .await
            .is_err()
    );
    assert_eq!(fake.fetches(JWKS), 2);
}

#[tokio::test]
async fn a_failed_signature_under_a_known_kid_refetches_once() {
    let (fake, remote, clock) = setup();
    let (first, replaced) = (Key::new("k"), Key::new("k"));
    fake.serve_keys(&[&first]);
    verify(&remote, &first.sign(&claims())).await.unwrap();
    // The issuer replaced the key under the same kid.
    fake.serve_keys(&[&replaced]);
    let r = verify(&remote, &replaced.sign(&claims())).await;
    assert!(matches!(r, Err(VerifyError::Signature)), "{r:?}");
    assert_eq!(fake.fetches(JWKS), 1, "within the window");
    clock.advance(time::Duration::seconds(30));
    verify(&remote, &replaced.sign(&claims())).await.unwrap();
    assert_eq!(fake.fetches(JWKS), 2);
}

#[tokio::test]
async fn a_missing_or_empty_jti_is_refused() {
    let (fake, remote, _) = setup();
    let key = Key::new("k");
    fake.serve_keys(&[&key]);
    for c in [
        without("jti"),
        with("jti", json!("")),
        with("jti", json!(42)),
    ] {
        let r = verify(&remote, &key.sign(&c)).await;
        assert!(
            matches!(r, Err(VerifyError::Missing(ref k)) if k == "jti"),
            "{c}: {r:?}"
        );
    }
    // Required by the expectations, not by default.
    let lax = Expectations {
        required: &["iss", "aud"],
        lifetime: Lifetime {
            max_age: None,
            max_lifetime: None,
            ..want().lifetime
        },
        ..want()
    };
    let r = remote
        .verify(&key.sign(&without("jti")), KeySource::Jwks(JWKS), &lax)
        .await;
    assert!(r.is_ok(), "{r:?}");
}

#[tokio::test]
async fn wrong_typ_issuer_or_audience_is_refused() {
    let (fake, remote, _) = setup();
    let key = Key::new("k");
    fake.serve_keys(&[&key]);
    let header = |typ: Option<&str>| {
        let mut h = json!({"alg": "EdDSA", "kid": "k"});
        if let Some(t) = typ {
            h["typ"] = json!(t);
        }
        h
    };
    for typ in [None, Some("JWT"), Some("logout+jwt")] {
        let r = verify(&remote, &key.sign_with(&header(typ), &claims())).await;
        assert!(matches!(r, Err(VerifyError::Typ(_))), "{typ:?}: {r:?}");
    }
    let r = verify(
        &remote,
        &key.sign_with(&header(Some("TEST+JWT")), &claims()),
    )
    .await;
    assert!(r.is_ok(), "typ is case-insensitive: {r:?}");
    for c in [
        with("iss", json!("https://evil.example")),
        with("aud", json!("https://latch.example/other")),
        with("aud", json!(["https://latch.example/other"])),
        without("iss"),
        without("aud"),
    ] {
        let r = verify(&remote, &key.sign(&c)).await;
        assert!(matches!(r, Err(VerifyError::Invalid(_))), "{c}: {r:?}");
    }
    // A typ rule that allows its absence.
    let optional = Expectations {
        typ: Typ::IfPresent(&["logout+jwt", "JWT"]),
        ..want()
    };
    for (typ, ok) in [(None, true), (Some("jwt"), true), (Some("test+jwt"), false)] {
        let r = remote
            .verify(
                &key.sign_with(&header(typ), &claims()),
                KeySource::Jwks(JWKS),
                &optional,
            )
            .await;
        assert_eq!(r.is_ok(), ok, "{typ:?}: {r:?}");
    }
}

#[tokio::test]
async fn expired_early_old_or_long_lived_tokens_are_refused() {
    let (fake, remote, _) = setup();
    let key = Key::new("k");
    fake.serve_keys(&[&key]);
    let times = |iat: i64, exp: i64| {
        let mut c = claims();
        c["iat"] = json!(iat);
        c["exp"] = json!(exp);
        c
    };
    let cases = [
        (times(NOW - 500, NOW - 60), "expired"),
        (times(NOW + 61, NOW + 300), "issued in the future"),
        (times(NOW - 601, NOW + 100), "issued too long ago"),
        (times(NOW, NOW + 901), "lifetime too long"),
        // jsonwebtoken reads `exp` as an unsigned number: a negative one is no `exp` at all.
        (
            times(NOW, i64::MIN),
            "invalid token: Missing required claim: exp",
        ),
        (times(i64::MIN, i64::MAX), "issued too long ago"),
        (with("nbf", json!(NOW + 61)), "not yet valid"),
        (with("nbf", json!("soon")), "nbf is not a number"),
        (
            with("exp", json!("tomorrow")),
            "invalid token: Missing required claim: exp",
        ),
        (with("iat", json!(1.5)), "iat is not a number"),
        (without("exp"), "invalid token: Missing required claim: exp"),
        (without("iat"), "no iat"),
    ];
    for (c, why) in cases {
        let r = verify(&remote, &key.sign(&c)).await;
        assert_eq!(
            r.map_err(|e| e.to_string()).err().as_deref(),
            Some(why),
            "{c}"
        );
    }
    // Within the leeway, accepted.
    for c in [
        times(NOW - 500, NOW - 59),
        times(NOW + 60, NOW + 300),
        with("nbf", json!(NOW + 60)),
    ] {
        assert!(verify(&remote, &key.sign(&c)).await.is_ok(), "{c}");
    }
}

#[tokio::test]
async fn disallowed_algorithms_and_foreign_signatures_are_refused_before_or_without_a_fetch() {
    let (fake, remote, _) = setup();
    let key = Key::new("k");
    fake.serve_keys(&[&key]);
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "test+jwt"})
            .to_string()
            .as_bytes()),
        b64(claims().to_string().as_bytes())
    );
    assert!(matches!(
        verify(&remote, &none).await,
        Err(VerifyError::Malformed(_))
    ));
    let hs = format!(
        "{}.{}.c2ln",
        b64(json!({"alg": "HS256", "typ": "test+jwt", "kid": "k"})
            .to_string()
            .as_bytes()),
        b64(claims().to_string().as_bytes())
    );
    let r = verify(&remote, &hs).await;
    assert!(matches!(r, Err(VerifyError::Algorithm(_))), "{r:?}");
    assert_eq!(
        fake.fetches(JWKS),
        0,
        "the header is checked before any fetch"
    );
    // A token whose payload was swapped after signing.
    let good = key.sign(&claims());
    let mut parts: Vec<&str> = good.split('.').collect();
    let swapped = b64(with("sub", json!("mallory")).to_string().as_bytes());
    parts[1] = &swapped;
    let r = verify(&remote, &parts.join(".")).await;
    assert!(matches!(r, Err(VerifyError::Signature)), "{r:?}");
    // The key names EdDSA; a header naming another algorithm is refused.
    let other_alg = key.sign_with(
        &json!({"alg": "ES256", "kid": "k", "typ": "test+jwt"}),
        &claims(),
    );
    let r = verify(&remote, &other_alg).await;
    assert!(matches!(r, Err(VerifyError::KeyAlgorithm)), "{r:?}");
}

#[tokio::test]
async fn keys_from_a_discovery_document() {
    let (fake, remote, _) = setup();
    let key = Key::new("k");
    fake.serve_keys(&[&key]);
    let d = "https://idp.example/.well-known/openid-configuration";
    fake.serve(
        d,
        Ok(json!({"issuer": ISS, "jwks_uri": JWKS})
            .to_string()
            .into_bytes()),
    );
    for _ in 0..2 {
        let r = remote
            .verify(&key.sign(&claims()), KeySource::Discovery(d), &want())
            .await;
        assert!(r.is_ok(), "{r:?}");
    }
    assert_eq!((fake.fetches(d), fake.fetches(JWKS)), (1, 1));
    let bare = "https://bare.example/.well-known/openid-configuration";
    fake.serve(bare, Ok(b"{}".to_vec()));
    let r = remote
        .verify(&key.sign(&claims()), KeySource::Discovery(bare), &want())
        .await;
    assert!(matches!(r, Err(VerifyError::NoJwksUri)), "{r:?}");
}

#[tokio::test]
async fn signature_only_for_id_tokens() {
    let (fake, remote, _) = setup();
    let key = Key::new("k");
    fake.serve_keys(&[&key]);
    // Claims are not looked at: an expired token with any typ passes.
    let t = key.sign_with(&json!({"alg": "EdDSA", "kid": "k"}), &with("exp", json!(0)));
    assert!(
        remote
            .verify_signature(&t, KeySource::Jwks(JWKS), &[jsonwebtoken::Algorithm::EdDSA])
            .await
            .is_ok()
    );
    let r = remote
        .verify_signature(&t, KeySource::Jwks(JWKS), &[jsonwebtoken::Algorithm::RS256])
        .await;
    assert!(matches!(r, Err(VerifyError::Algorithm(_))), "{r:?}");
    let other = Key::new("k");
    let forged = other.sign_with(&json!({"alg": "EdDSA", "kid": "k"}), &claims());
    let r = remote
        .verify_signature(&forged, KeySource::Jwks(JWKS), REMOTE_ALGORITHMS)
        .await;
    assert!(matches!(r, Err(VerifyError::Signature)), "{r:?}");
}

#[tokio::test]
async fn a_failing_jwks_is_fetched_once_by_concurrent_and_later_callers() {
    let (fake, remote, clock) = setup();
    fake.serve(JWKS, Err(FetchError::Status(500)));
    let key = Key::new("k");
    let calls = (0..10).map(|_| {
        let (r, t) = (remote.clone(), key.sign(&claims()));
        tokio::spawn(async move { verify(&r, &t).await })
    });
    for r in join_all(calls).await {
        assert!(
            matches!(
                r,
                Err(VerifyError::Keys(RemoteError::Fetch(
                    _,
                    FetchError::Status(500)
                )))
            ),
            "{r:?}"
        );
    }
    assert!(
        verify(&remote, &key.sign(&claims())).await.is_err(),
        "later, within the window"
    );
    assert_eq!(fake.fetches(JWKS), 1);
    // Backoff: 30 s after the first failure, then 60 s after the second.
    clock.advance(time::Duration::seconds(30));
    assert!(verify(&remote, &key.sign(&claims())).await.is_err());
    assert_eq!(fake.fetches(JWKS), 2);
    clock.advance(time::Duration::seconds(30));
    assert!(verify(&remote, &key.sign(&claims())).await.is_err());
    assert_eq!(fake.fetches(JWKS), 2, "the second failure waits 60 s");
    fake.serve_keys(&[&key]);
    clock.advance(time::Duration::seconds(30));
    assert!(verify(&remote, &key.sign(&claims())).await.is_ok());
    assert_eq!(fake.fetches(JWKS), 3);
}

#[tokio::test]
async fn errors_never_quote_the_answer() {
    let (fake, remote, _) = setup();
    let key = Key::new("k");
    fake.serve(JWKS, Ok(b"{\"keys\": \"INTERNAL-SECRET-1234\"}".to_vec()));
    let e = verify(&remote, &key.sign(&claims()))
        .await
        .unwrap_err()
        .to_string();
    assert!(!e.contains("INTERNAL-SECRET"), "{e}");
    let d = "https://idp.example/d";
    fake.serve(d, Ok(b"<html>INTERNAL-SECRET-1234</html>".to_vec()));
    let e = remote.discovery(d).await.unwrap_err().to_string();
    assert!(!e.contains("INTERNAL-SECRET"), "{e}");
    let e = remote
        .verify(&key.sign(&claims()), KeySource::Discovery(d), &want())
        .await
        .unwrap_err()
        .to_string();
    assert!(!e.contains("INTERNAL-SECRET"), "{e}");
}

#[test]
fn a_cached_value_outlives_neither_max_age_nor_the_clock() {
    let clock = ManualClock::new(time::OffsetDateTime::from_unix_timestamp(NOW).unwrap());
    let cache: Cache<u32, String> = Cache::new(Arc::new(clock.clone()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let fetches = AtomicUsize::new(0);
    let get = || {
        rt.block_on(cache.get(
            "u",
            |_| true,
            || async { Ok(fetches.fetch_add(1, Ordering::SeqCst) as u32) },
        ))
    };
    assert_eq!(get(), Ok(0));
    clock.advance(time::Duration::seconds(MAX_AGE.as_secs() as i64 - 1));
    assert_eq!(get(), Ok(0));
    clock.advance(time::Duration::seconds(1));
    assert_eq!(get(), Ok(1), "refreshed after MAX_AGE");
}
