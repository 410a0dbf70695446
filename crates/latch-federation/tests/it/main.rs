//! `latch_federation`'s pure request checks, on inputs the fuzz targets (`fuzz/`) found or look
//! for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use jsonwebtoken::DecodingKey;
use latch_core::Kid;
use latch_core::model::SigningAlg;
use latch_federation::backchannel_in::{check_header, check_token};
use latch_jose::keys::{Signer, sign_jws};
use serde_json::{Value, json};

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://idp.example";
const CLIENT_ID: &str = "latch-at-idp";

fn check(signer: &Signer, key: &DecodingKey, claims: &Value) -> Result<(), String> {
    let token = sign_jws(
        signer,
        SigningAlg::ES256,
        &Kid::new("k"),
        "logout+jwt",
        claims,
    )
    .unwrap();
    let header = check_header(&token)?;
    check_token(&token, &header, key, ISS, CLIENT_ID, NOW).map(|_| ())
}

fn claims(iat: i64, exp: Option<i64>) -> Value {
    let mut c = json!({"iss": ISS, "aud": CLIENT_ID, "iat": iat, "jti": "j", "sub": "u",
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}}});
    if let Some(exp) = exp {
        c["exp"] = json!(exp);
    }
    c
}

/// Time claims at the edges of i64 overflowed the skew arithmetic: a panic in checked builds
/// (the handler's, in tests), a wrapped comparison in release.
#[test]
fn logout_token_times_at_the_edges_of_i64_are_refused_not_overflowed() {
    let signer = Signer::generate(SigningAlg::ES256).unwrap();
    let key = DecodingKey::from_jwk(
        &serde_json::from_value(signer.public_jwk(SigningAlg::ES256)).unwrap(),
    )
    .unwrap();
    check(&signer, &key, &claims(NOW, Some(NOW + 120))).unwrap();
    for (what, c) in [
        ("iat = i64::MIN", claims(i64::MIN, None)),
        ("iat = i64::MAX", claims(i64::MAX, None)),
        ("exp = i64::MAX", claims(NOW, Some(i64::MAX))),
        ("exp = i64::MIN", claims(NOW, Some(i64::MIN))),
    ] {
        let r = std::panic::catch_unwind(|| check(&signer, &key, &c))
            .unwrap_or_else(|_| panic!("{what}: the check panicked"));
        // exp = i64::MAX is far in the future, not wrong: only the arithmetic must hold.
        if what != "exp = i64::MAX" {
            assert!(r.is_err(), "{what}: accepted");
        }
    }
}
