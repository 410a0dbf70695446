//! The Global Token Revocation request body (`latch_gtr::parse_body`): Okta's `subject` or the
//! draft's `sub_id`, as the endpoint reads it after the bearer token passed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = latch_gtr::parse_body(Some("application/json"), data);
});
