//! The sign-in form (`POST /login`), through actix-web's `web::Form` extractor with the route's
//! limit, into the struct the handler takes.
#![no_main]

use latch_login::LoginForm;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = latch_fuzz::form::<LoginForm>(data, 16 * 1024);
});
