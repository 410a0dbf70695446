//! A signing certificate as an admin pastes it (PEM, base64 DER, base64 of PEM):
//! `latch_saml::parse_certificate`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = latch_saml::parse_certificate(text);
    }
});
