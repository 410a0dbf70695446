//! IdP metadata as an admin pastes it or its URL serves it: `latch_saml::parse_idp_metadata`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(xml) = std::str::from_utf8(data) {
        let _ = latch_saml::parse_idp_metadata(xml);
    }
});
