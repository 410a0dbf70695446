//! An upstream IdP's back-channel logout token:
//! `latch_federation::backchannel_in::{check_header, check_token}` with the fixture key standing
//! in for the issuer's JWKS. Input format: `latch_fuzz::token`.
#![no_main]

use latch_federation::backchannel_in::{check_header, check_token};
use latch_fuzz::{CLIENT_ID, ISSUER, NOW, keys, token};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(token) = token(data) else { return };
    let Ok(header) = check_header(&token) else {
        return;
    };
    let _ = check_token(&token, &header, &keys().key, ISSUER, CLIENT_ID, NOW);
});
