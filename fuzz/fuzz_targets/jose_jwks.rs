//! JWS verification with remote keys (`latch_remote`): first byte even → the rest is a
//! token checked by `verify_with_jwks` against the fixture JWKS (how upstream ID tokens are
//! checked); odd → the rest is a JWKS document as an issuer serves it, read as `RemoteKeys`
//! reads one (JSON, `JwkSet`, `DecodingKey::from_jwk` per key) and used to verify a token the
//! fixture key signed.
#![no_main]

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;
use latch_fuzz::{keys, sign};
use latch_remote::{REMOTE_ALGORITHMS, verify_with_jwks};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let Ok(token) = std::str::from_utf8(rest) else {
            return;
        };
        let _ = verify_with_jwks(token, &keys().jwks, REMOTE_ALGORITHMS);
        return;
    }
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(rest) else {
        return;
    };
    let Ok(set) = serde_json::from_value::<JwkSet>(doc) else {
        return;
    };
    for jwk in &set.keys {
        let _ = DecodingKey::from_jwk(jwk);
    }
    let kid = keys().jwk.common.key_id.clone().unwrap_or_default();
    let token = sign(
        format!(r#"{{"alg":"ES256","kid":"{kid}","typ":"JWT"}}"#).as_bytes(),
        br#"{"iss":"https://idp.fuzz.example","sub":"fuzz"}"#,
    );
    let _ = verify_with_jwks(&token, &set, REMOTE_ALGORITHMS);
});
