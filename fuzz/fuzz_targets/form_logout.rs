//! The RP-initiated logout form (`POST /oidc/logout`), through actix-web's `web::Form` extractor
//! with the route's limit, into the struct the handler takes.
#![no_main]

use latch_oidc::endpoints::logout::LogoutParams;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = latch_fuzz::form::<LogoutParams>(data, 16 * 1024);
});
