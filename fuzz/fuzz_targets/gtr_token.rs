//! The Global Token Revocation bearer JWT: `latch_gtr::check_header`, then
//! `latch_gtr::check_token` with the fixture key standing in for the issuer's JWKS (the
//! endpoint's own code, minus the key fetch). Input format: `latch_fuzz::token`.
#![no_main]

use latch_fuzz::{CLIENT_ID, GTR_AUDIENCE, ISSUER, NOW, keys, token};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(token) = token(data) else { return };
    let Ok(header) = latch_gtr::check_header(&token) else {
        return;
    };
    let k = keys();
    let want = latch_gtr::Expected {
        iss: ISSUER,
        aud: GTR_AUDIENCE,
        sub: CLIENT_ID,
    };
    let _ = latch_gtr::check_token(&token, &header, &k.jwk, &k.key, &want, NOW);
});
