//! The SAML ACS form (`POST /login/callback`), through actix-web's `web::Form` extractor with the
//! route's limit, into the struct the handler takes.
#![no_main]

use latch_login::AcsForm;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = latch_fuzz::form::<AcsForm>(data, 512 * 1024);
});
