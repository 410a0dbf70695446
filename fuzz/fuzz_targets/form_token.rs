//! The token endpoint's form (`POST /oauth/token`), through actix-web's `web::Form` extractor with
//! the route's limit, into the struct the handler takes.
#![no_main]

use latch_oidc::endpoints::token::TokenForm;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = latch_fuzz::form::<TokenForm>(data, 16 * 1024);
});
