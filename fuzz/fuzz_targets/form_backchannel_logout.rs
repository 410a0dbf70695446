//! The upstream back-channel logout form (`POST /login/backchannel-logout/{connection}`), through
//! actix-web's `web::Form` extractor with the route's limit.
#![no_main]

use latch_federation::backchannel_in::Form;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = latch_fuzz::form::<Form>(data, 16 * 1024);
});
