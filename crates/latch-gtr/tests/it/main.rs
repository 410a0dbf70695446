//! `latch_gtr`'s pure request checks, on inputs the fuzz targets (`fuzz/`) found or look for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::Jwk;
use latch_core::Kid;
use latch_core::model::SigningAlg;
use latch_jose::keys::{Signer, sign_jws};
use serde_json::{Value, json};

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://acme.okta.example";
const AUD: &str = "https://login.example/oauth/global-token-revocation/connection/okta";
const SUB: &str = "0oaAPP";

struct Key {
    signer: Signer,
    jwk: Jwk,
    key: DecodingKey,
}

fn key() -> Key {
    let signer = Signer::generate(SigningAlg::ES256).unwrap();
    let jwk: Jwk = serde_json::from_value(signer.public_jwk(SigningAlg::ES256)).unwrap();
    let key = DecodingKey::from_jwk(&jwk).unwrap();
    Key { signer, jwk, key }
}

fn check(k: &Key, claims: &Value) -> Result<(), latch_gtr::Refusal> {
    let token = sign_jws(
        &k.signer,
        SigningAlg::ES256,
        &Kid::new("k"),
        latch_gtr::TYP,
        claims,
    )
    .unwrap();
    let header = latch_gtr::check_header(&token)?;
    let want = latch_gtr::Expected {
        iss: ISS,
        aud: AUD,
        sub: SUB,
    };
    latch_gtr::check_token(&token, &header, &k.jwk, &k.key, &want, NOW).map(|_| ())
}

fn claims(iat: i64, exp: i64, nbf: Option<i64>) -> Value {
    let mut c = json!({"iss": ISS, "aud": AUD, "sub": SUB, "jti": "j", "iat": iat, "exp": exp});
    if let Some(nbf) = nbf {
        c["nbf"] = json!(nbf);
    }
    c
}

#[test]
fn a_valid_token_passes() {
    let k = key();
    check(&k, &claims(NOW, NOW + 300, Some(NOW - 300))).unwrap();
}

/// Time claims at the edges of i64 overflowed the skew and lifetime arithmetic: a panic in
/// checked builds, and in release a wrapped `exp - iat` that let a never-expiring token through.
#[test]
fn time_claims_at_the_edges_of_i64_are_refused_not_overflowed() {
    let k = key();
    for (what, c, accepted) in [
        ("iat = i64::MIN", claims(i64::MIN, NOW + 300, None), false),
        ("exp = i64::MAX", claims(NOW, i64::MAX, None), false),
        (
            "exp - iat beyond i64",
            claims(-(1 << 62), i64::MAX - 60, None),
            false,
        ),
        (
            "exp - iat = i64::MAX",
            claims(-1, i64::MAX - 1, None),
            false,
        ),
        // Long ago is a fine `nbf`.
        (
            "nbf = i64::MIN",
            claims(NOW, NOW + 300, Some(i64::MIN)),
            true,
        ),
    ] {
        let r = std::panic::catch_unwind(|| check(&k, &c))
            .unwrap_or_else(|_| panic!("{what}: the check panicked"));
        match r {
            Ok(()) => assert!(accepted, "{what}: accepted"),
            Err(refusal) => {
                assert!(!accepted, "{what}: refused: {refusal:?}");
                assert_eq!(refusal.0, 401, "{what}: {refusal:?}");
            }
        }
    }
}
